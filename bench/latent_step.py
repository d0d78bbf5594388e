"""Latent-assignment sampling: mixtures' AssignmentGibbs against PyMC's default step.

Same model, same seed, in one run, at N = 215 (three_gaussians), 2,000 and 20,000:

* time per sweep of the assignment step alone, ours against PyMC's
  ``CategoricalGibbsMetropolis`` (measured where it fits in the time cap; at larger N it is
  extrapolated as N x one model-logp evaluation, which is what its sweep does, and labelled so);
* whole-iteration time and minimum bulk ESS (over weights, means, sigma) per second of sampling
  for the latent model sampled four ways: ours by default (AssignmentGibbs + conjugate Gibbs),
  ours with NUTS on the continuous part (``latent_sampler="nuts"``), PyMC's default
  (CategoricalGibbsMetropolis + NUTS, capped in time), and the marginalised model with NUTS;
* the book's two latent models (known means; shared sd) at 10,000 draws: wall time of
  ``mixtures.sample`` from model to InferenceData.

Run: ``python bench/latent_step.py [--quick]``; the figures go to stdout and to
``bench/latent_step.json``. Progress bars are off so that timing is not disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pymc as pm

import mixtures

PARAMS = ["weights", "means", "sigma"]


def make_data(n: int, seed: int = 0) -> np.ndarray:
    if n == 215:
        return mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    rng = np.random.default_rng(seed)
    comp = rng.choice(3, size=n, p=np.array([90, 50, 75]) / 215)
    return rng.normal(np.array([9.0, 21.0, 35.0])[comp], 2.0)


def time_calls(fn, min_time: float = 1.0, max_calls: int = 10_000) -> float:
    fn()  # warm
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time and calls < max_calls:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def sweep_times(y: np.ndarray, cap: float) -> dict:
    model = mixtures.full_mixture(y, 3)
    point = model.initial_point()
    with model:
        ours = mixtures.AssignmentGibbs([model["assignment"]], rng=1)
        theirs = pm.CategoricalGibbsMetropolis([model["assignment"]], rng=1)
    out = {"ours_sweep_s": time_calls(lambda: ours.step(point))}
    logp = model.compile_logp()
    t_logp = time_calls(lambda: logp(point))
    out["pymc_sweep_extrapolated_s"] = len(y) * t_logp
    if out["pymc_sweep_extrapolated_s"] < cap:
        out["pymc_sweep_s"] = time_calls(lambda: theirs.step(point), min_time=cap, max_calls=20)
    return out


def min_ess_per_s(idata) -> tuple[float, float]:
    names = [v for v in PARAMS if v in idata.posterior]
    ess = az.ess(idata, var_names=names, method="bulk")
    min_ess = min(float(ess[v].min()) for v in names)
    seconds = float(idata.posterior.attrs["sampling_time"])
    return min_ess, seconds


def fit(model, draws, tune, step=None, seed=1, **extra):
    kwargs = dict(draws=draws, tune=tune, chains=2, cores=1, random_seed=seed, progressbar=False)
    kwargs.update(extra)
    if step is not None:
        kwargs["step"] = step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixtures.ConvergenceWarning)
        return mixtures.sample(model, **kwargs)


def run(sizes, pymc_iters, cap):
    rows = []
    for n in sizes:
        y = make_data(n)
        row = {"n": n, **sweep_times(y, cap)}
        latent = mixtures.full_mixture(y, 3)
        idata = fit(latent, 1000, 1000)
        ess, secs = min_ess_per_s(idata)
        row.update(ours_iter_s=secs / 4000, ours_min_ess=ess, ours_ess_per_s=ess / secs)
        idata = fit(latent, 1000, 1000, latent_sampler="nuts")
        ess, secs = min_ess_per_s(idata)
        row.update(nuts_iter_s=secs / 4000, nuts_min_ess=ess, nuts_ess_per_s=ess / secs)
        marginal = mixtures.full_mixture(y, 3, marginalized=True)
        idata = fit(marginal, 1000, 1000)
        ess, secs = min_ess_per_s(idata)
        row.update(marg_iter_s=secs / 4000, marg_min_ess=ess, marg_ess_per_s=ess / secs)
        if row["pymc_sweep_extrapolated_s"] * 2 * pymc_iters < 3 * cap:
            with latent:
                step = [pm.CategoricalGibbsMetropolis([latent["assignment"]])]
            idata = fit(latent, pymc_iters // 2, pymc_iters // 2, step=step)
            ess, secs = min_ess_per_s(idata)
            row.update(
                pymc_iter_s=secs / (2 * pymc_iters), pymc_min_ess=ess, pymc_ess_per_s=ess / secs
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def book_models(draws):
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    book_priors = {
        "means": {"mu": [10, 20, 35], "sigma": 2},
        "sigma": {"dist": "HalfCauchy", "beta": 5},
    }
    out = {}
    for name, build in [
        ("known means", lambda: mixtures.known_params_mixture(y, [10, 20, 35], [2, 2, 2])),
        ("shared sd", lambda: mixtures.shared_sd_mixture(y, 3, priors=book_priors)),
    ]:
        start = time.perf_counter()
        idata = fit(build(), draws, 1000)
        wall = time.perf_counter() - start
        ess, secs = min_ess_per_s(idata)
        out[name] = {"draws_per_chain": draws, "chains": 2, "wall_s": wall, "min_ess": ess}
        print(name, json.dumps(out[name]), flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 215 only, fewer PyMC iterations")
    args = parser.parse_args()
    sizes = [215] if args.quick else [215, 2000, 20000]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": {"pymc": pm.__version__, "arviz": az.__version__},
        "sizes": run(sizes, pymc_iters=100 if args.quick else 400, cap=60.0),
        "book": book_models(10_000),
    }
    path = Path(__file__).with_name("latent_step.json")
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
