"""Many fits: fits per minute, serial vs local processes vs a running LocalCluster (issue 12).

One model (``full_mixture(y, 3)`` on three_gaussians, N = 215), bootstrap data sets, the
default sampler settings of ``mixtures.sample`` (Gibbs, 4 chains x (1000 + 1000), tempering
"auto"), fitted by:

1. the plain-PyMC way: a loop of ``pm.set_data`` + ``pm.sample`` on one model (few fits,
   extrapolated per minute);
2. ``fit_many(backend="serial")``: this process;
3. ``fit_many(backend="processes")``: a LocalCluster started and closed by the call (its start
   and the workers' imports are included);
4. ``fit_many(client=...)`` on an already running ``LocalCluster`` (2 workers, 1 thread each).

Overhead per fit = (wall time - sum of the fits' own sampling seconds / workers) / fits.

Run: ``python bench/many_fits.py [--fits 60]``; figures to stdout and ``bench/many_fits.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent


def plain_pymc(y, boots):
    import pymc as pm

    from mixtures.model.univariate import full_mixture

    model = full_mixture(y, 3)  # the same priors as ours; PyMC's own sampler
    t0 = time.perf_counter()
    for b in boots:
        with model:
            pm.set_data({"y_data": b})
            pm.sample(1000, tune=1000, chains=4, cores=1, progressbar=False, random_seed=1)
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fits", type=int, default=60)
    parser.add_argument("--pymc-fits", type=int, default=3)
    args = parser.parse_args()
    os.environ["MIXTURES_PROGRESSBAR"] = "0"
    warnings.simplefilter("ignore")
    import logging

    import numpy as np
    from distributed import Client, LocalCluster

    import mixtures

    logging.getLogger("pymc").setLevel(logging.ERROR)
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    rng = np.random.default_rng(0)
    boots = [rng.choice(y, y.size) for _ in range(args.fits)]
    model = mixtures.full_mixture(y, 3)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "fits": args.fits}

    def record(name, wall, fits, workers):
        sampling = float(fits.fits["seconds"].sum())
        res[name] = {
            "wall_s": round(wall, 2),
            "fits_per_minute": round(60 * len(fits) / wall, 1),
            "mean_fit_s": round(sampling / len(fits), 3),
            "overhead_per_fit_s": round((wall - sampling / workers) / len(fits), 3),
            "failed": len(fits.failed),
        }
        print(name, res[name], flush=True)

    # warm Numba's on-disk cache for this process (as a user's first fit would)
    mixtures.fit_many(model, boots[:1], backend="serial", progressbar=False, random_seed=0)

    t0 = time.perf_counter()
    serial = mixtures.fit_many(model, boots, backend="serial", progressbar=False, random_seed=1)
    record("serial", time.perf_counter() - t0, serial, 1)

    t0 = time.perf_counter()
    procs = mixtures.fit_many(model, boots, backend="processes", progressbar=False, random_seed=1)
    record("processes (LocalCluster started by the call)", time.perf_counter() - t0, procs, 2)

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        mixtures.fit_many(model, boots[:2], client=client, progressbar=False, random_seed=0)
        t0 = time.perf_counter()
        dask = mixtures.fit_many(model, boots, client=client, progressbar=False, random_seed=1)
        record("client (running LocalCluster, warm workers)", time.perf_counter() - t0, dask, 2)
    same = all(
        np.array_equal(serial[i].posterior["means"].values, dask[i].posterior["means"].values)
        for i in range(args.fits)
    )
    res["same_draws_serial_vs_dask"] = bool(same)
    print("same draws serial vs dask:", same)

    wall = plain_pymc(y, boots[: args.pymc_fits])
    res["plain PyMC loop (pm.set_data + pm.sample, cores=1)"] = {
        "fits": args.pymc_fits,
        "wall_s": round(wall, 1),
        "fits_per_minute": round(60 * args.pymc_fits / wall, 2),
    }
    print("plain pymc", res["plain PyMC loop (pm.set_data + pm.sample, cores=1)"])
    (HERE / "many_fits.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
