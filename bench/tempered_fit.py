"""One tempered fit, timed: three_gaussians K = 3, 4 x (1000 + 1000), default ladder.

Prints the min and median of 5 warm fits (after one untimed fit) and the sampling seconds of
the last. Used to compare two trees of the code side by side, each in its own process,
alternating (the redesign check in ``bench/RESULTS.md``)::

    for t in OLD NEW OLD NEW; do (cd $t && PYTHONPATH=$PWD python bench/tempered_fit.py); done
"""

import json
import os
import time

os.environ.setdefault("MIXTURES_PROGRESSBAR", "0")

import mixtures  # noqa: E402

y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
run = dict(progressbar=False, warn=False, random_seed=1, draws=1000, tune=1000)
model = mixtures.full_mixture(y, 3)
mixtures.sample(model, **run)
times = []
for _ in range(5):
    t0 = time.perf_counter()
    idata = mixtures.sample(model, **run)
    times.append(time.perf_counter() - t0)
print(json.dumps({
    "tree": mixtures.__file__,
    "min": round(min(times), 3),
    "median": round(sorted(times)[2], 3),
    "sampling_s": round(float(idata.posterior.attrs["mixtures_sampling_seconds"]), 3),
}))  # fmt: skip
