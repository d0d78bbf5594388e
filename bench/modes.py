"""The right mode at every size, converged by default (issue 20): the targets in one run.

Sections (each fit in this process, one after the other; the machine is shared, so times are
indicative and the old way is measured beside the new in the same run):

1. **three well-separated Gaussians** (means 9, 21, 35, sd 2, weights 0.4 / 0.25 / 0.35),
   ``full_mixture(y, 3)``, defaults, at N = 1e4 and 1e5 (``--big`` adds 1e6), seeds 1-4: each
   chain's posterior means against the truth, the worst r_hat, draws run, seconds from model
   to summary table. Beside it, the old default at that size (random starts; N k <= 60,000:
   16 temperatures, above: none; tune = draws = 1000), for seed 1 at the sizes ``--old``.
2. **galaxies** (/1000, K = 3), defaults, seeds 3, 11, 21: worst r_hat, least ESS, draws run,
   and the mass of the dominant mode (w[1] > 0.7, the test in ``tests/test_gibbs.py``).
3. **defaults end converged**: galaxies K = 3, 4 and three_gaussians K = 2, 3, 4, seed 1:
   r_hat, bulk and tail ESS, warnings, seconds; beside each, the same fit with
   ``moves=False`` (the default before the relocation move, same random streams) unless
   ``--no-compare``.

Run: ``python bench/modes.py [--quick] [--big] [--sections large galaxies converged]``;
figures go to stdout and ``bench/modes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

os.environ.setdefault("MIXTURES_PROGRESSBAR", "0")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402

import mixtures  # noqa: E402

HERE = Path(__file__).parent
TRUTH = np.array([9.0, 21.0, 35.0])
NAMES = ["weights", "means", "sigma"]


def three_gaussians(n_obs: int, seed: int) -> np.ndarray:
    """Draw the issue's data set: means 9, 21, 35, sd 2, weights 0.4 / 0.25 / 0.35."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, n_obs, p=[0.4, 0.25, 0.35])
    return TRUTH[z] + 2.0 * rng.standard_normal(n_obs)


def fit(y, k: int, seed: int, **kwargs) -> dict:
    """Model to summary table; return the run's figures."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mixtures.full_mixture(y, k)
        idata = mixtures.sample(model, random_seed=seed, **kwargs)
        summary = mixtures.summary_table(idata)
    seconds = time.perf_counter() - t0
    attrs = idata.posterior.attrs
    rhat = float(az.rhat(idata, var_names=NAMES).to_array().max())
    bulk = float(az.ess(idata, var_names=NAMES, method="bulk").to_array().min())
    tail = float(az.ess(idata, var_names=NAMES, method="tail").to_array().min())
    return {
        "seconds": round(seconds, 2),
        "sampling_seconds": round(float(attrs["mixtures_sampling_seconds"]), 2),
        "rhat": round(rhat, 4),
        "ess_bulk": round(bulk),
        "ess_tail": round(tail),
        "draws_run": int(idata.posterior.sizes["draw"]),
        "tune": attrs.get("mixtures_tune"),
        "tempering": attrs["mixtures_tempering"],
        "starts": attrs.get("mixtures_starts", "random"),
        "reason": attrs.get("mixtures_draws_reason", ""),
        "warnings": [str(w.message) for w in caught if "Convergence" in type(w.message).__name__],
        "chain_means": idata.posterior["means"].mean("draw").values.round(3).tolist(),
        "weights": idata.posterior["weights"].values,
        "summary_rows": len(summary),
    }


def large_n(sizes, seeds, old_runs) -> list[dict]:
    rows = []
    for n_obs in sizes:
        for seed in seeds:
            y = three_gaussians(n_obs, seed)
            for way in ("new", "old") if (n_obs, seed) in old_runs else ("new",):
                kwargs = {"log_likelihood": False}
                if way == "old":
                    temps = 16 if n_obs * 3 <= 60_000 else False
                    kwargs.update(draws=1000, tune=1000, tempering=temps, init="random")
                res = fit(y, 3, seed, **kwargs)
                off = np.abs(np.array(res.pop("chain_means")) - TRUTH).max(axis=1)
                res.pop("weights")
                res.update(n_obs=n_obs, seed=seed, way=way, worst_chain_error=off.round(3).tolist())
                res["all_chains_right"] = bool((off < 0.1).all())
                print(json.dumps(res), flush=True)
                rows.append(res)
    return rows


def galaxies(seeds) -> list[dict]:
    y = mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000
    rows = []
    for seed in seeds:
        res = fit(y, 3, seed)
        w = res.pop("weights")
        res.pop("chain_means")
        res.update(seed=seed, dominant_mode_mass=round(float(np.mean(w[..., 1] > 0.7)), 3))
        print(json.dumps(res), flush=True)
        rows.append(res)
    return rows


def converged_by_default(compare: bool) -> list[dict]:
    gal = mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000
    three = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    rows = []
    for name, y, ks in (("galaxies", gal, (3, 4)), ("three_gaussians", three, (2, 3, 4))):
        for k in ks:
            for moves in (True, False) if compare else (True,):
                res = fit(y, k, 1, moves=moves)
                res.pop("weights"), res.pop("chain_means")
                res.update(data=name, k=k, moves=moves)
                print(json.dumps(res), flush=True)
                rows.append(res)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e4 only, seed 1")
    parser.add_argument("--big", action="store_true", help="add N = 1e6 (the same seeds)")
    parser.add_argument(
        "--old", type=float, nargs="*", default=[1e5],
        help="sizes at which the old default also runs (seed 1); 1e4 takes minutes",
    )  # fmt: skip
    parser.add_argument(
        "--sections", nargs="*", default=["large", "galaxies", "converged"],
        help="sections to run; the others keep their figures in the json file",
    )  # fmt: skip
    parser.add_argument(
        "--no-compare", action="store_true",
        help="section 3 without the moves=False runs beside the defaults",
    )  # fmt: skip
    args = parser.parse_args()
    sizes, seeds = ([10_000], [1]) if args.quick else ([10_000, 100_000], [1, 2, 3, 4])
    path = HERE / ("modes_quick.json" if args.quick else "modes.json")
    out = json.loads(path.read_text()) if path.exists() else {}
    out["machine"] = f"{platform.node()} ({os.cpu_count()} cores, shared)"
    if "large" in args.sections:
        out["large_n"] = large_n(sizes, seeds, {(int(n), 1) for n in args.old})
        if args.big:
            out["large_n"] += large_n([1_000_000], seeds, set())
    if "galaxies" in args.sections:
        out["galaxies"] = galaxies([3] if args.quick else [3, 11, 21])
    if "converged" in args.sections and not args.quick:
        out["converged_by_default"] = converged_by_default(not args.no_compare)
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
