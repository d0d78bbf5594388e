"""The JAX path on a GPU: NumPyro's NUTS (``sampler="numpyro"``) against our Gibbs engine.

Run on a machine with a CUDA GPU and JAX (the device machine of this project):
``python bench/gpu_numpyro.py OUT_DIR [INDICES]`` (INDICES: a comma-separated subset of the plan). For N = 1e4, 1e5, 1e6 points from three Gaussians,
``full_mixture(y, 3)`` (marginalised), 4 chains x (500 + 500):

- ``numpyro`` on the GPU, chains vectorised (first call: JIT compilation included; second call);
- ``numpyro`` with JAX on the CPU (N = 1e4, 1e5 only);
- our Gibbs engine on the same machine's CPU cores, without and with the default tempering.

Figures go to OUT_DIR/gpu_numpyro.json and stdout; they are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

SNIPPET = r"""
import json, os, sys, time, warnings
warnings.simplefilter("ignore")
os.environ["MIXTURES_PROGRESSBAR"] = "0"
import numpy as np, jax, mixtures
n, sampler, tempering = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = np.random.default_rng(0)
k = rng.choice(3, n, p=[0.4, 0.25, 0.35])
y = rng.normal(np.array([9.0, 21.0, 35.0])[k], 2.0)
model = mixtures.full_mixture(y, 3)
times = []
for seed in (1, 2):
    t0 = time.perf_counter()
    kw = dict(draws=500, tune=500, chains=4, random_seed=seed, progressbar=False, warn=False,
              log_likelihood=False)
    if sampler == "numpyro":
        kw["nuts_sampler_kwargs"] = {"chain_method": "vectorized"}
    else:
        kw["tempering"] = None if tempering == "none" else "auto"
    idata = mixtures.sample(model, sampler=sampler, **kw)
    times.append(time.perf_counter() - t0)
means = idata.posterior["means"].mean(("chain", "draw")).values.round(3).tolist()
print(json.dumps({"n": n, "sampler": sampler, "tempering": tempering,
                  "backend": jax.default_backend(), "first_s": round(times[0], 2),
                  "second_s": round(times[1], 2), "means": means}))
"""


def run(n, sampler, tempering="none", env=None):
    env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", SNIPPET, str(n), sampler, tempering],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"n": n, "sampler": sampler, "error": proc.stderr[-1500:]}
    return json.loads(lines[-1])


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    warnings.simplefilter("ignore")
    import jax

    res = {
        "devices": [str(d) for d in jax.devices()],
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "runs": [],
    }
    print(res, flush=True)
    plan = [
        (1e4, "numpyro", "none", None),
        (1e5, "numpyro", "none", None),
        (1e6, "numpyro", "none", None),
        (1e4, "numpyro", "none", {"JAX_PLATFORMS": "cpu"}),
        (1e5, "numpyro", "none", {"JAX_PLATFORMS": "cpu"}),
        (1e4, "gibbs", "none", None),
        (1e5, "gibbs", "none", None),
        (1e6, "gibbs", "none", None),
        (1e5, "gibbs", "auto", None),
    ]
    if len(sys.argv) > 2:  # a subset of the plan, by index (the device time is short)
        plan = [plan[int(i)] for i in sys.argv[2].split(",")]
        res["runs"] = []
    for n, sampler, temp, env in plan:
        t0 = time.perf_counter()
        r = run(int(n), sampler, temp, env)
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        r["env"] = env
        res["runs"].append(r)
        print(r, flush=True)
        (out / "gpu_numpyro.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
