"""Where `mixtures demo`'s time goes, stage by stage, in one fresh process (issue 21).

Run from a fresh shell with warm caches (Numba's kernels and PyTensor's compile cache built by an
earlier run): ``python bench/demo_stages.py``. Prints seconds per stage: the imports (matplotlib,
numba, PyMC), building the model, the probe xarray makes for dask at the first InferenceData
(it imports ``dask.array`` whenever dask is installed), the fit at the defaults, the predictive,
the summary table and the figure, as ``mixtures demo`` runs them.
"""

import time

T0 = time.perf_counter()
marks = []


def mark(stage: str) -> None:
    marks.append((stage, time.perf_counter()))


import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402, F401

mark("import matplotlib")
import numba  # noqa: E402, F401

mark("import numba")
import pymc  # noqa: E402, F401

mark("import pymc")
import mixtures  # noqa: E402

mark("import mixtures")
data = mixtures.load_dataset("three_gaussians")
model = mixtures.full_mixture(data["x"], 3)
mark("data and model")
import dask.array  # noqa: E402, F401

mark("dask.array (xarray's probe at the first InferenceData)")
idata = mixtures.sample(model, random_seed=2017, progressbar=False)
mark("sample (defaults)")
mixtures.sample_posterior_predictive(model, idata, num_draws=50, random_seed=2017)
mark("predictive")
mixtures.summary_table(idata, fmt="markdown")
mark("summary table")
ax = mixtures.plot_ppc(idata, random_seed=2017, figsize=(7, 4))
ax.figure.savefig("/tmp/mixtures_demo_stages.png")
mark("figure")
prev = T0
for stage, t in marks:
    print(f"{stage:55s} {t - prev:6.2f} s")
    prev = t
print(f"total {prev - T0:.2f} s; sampling {idata.posterior.attrs['mixtures_sampling_seconds']:.2f} s")
