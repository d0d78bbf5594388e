"""One data set larger than a machine: the Gibbs sweep on a Dask cluster (issue 22).

Three measurements, each on ``LocalCluster``s of worker processes with one thread each:

1. **Same draws**: the local Gibbs engine and ``mixtures.sample(model, client=...)`` on the
   same data (N = ``--check-n``, 1e5 by default; univariate K = 3 and bivariate K = 3,
   inverse-Wishart), same seed; the largest relative difference of every parameter.
2. **Overhead per iteration** over the pure compute of the sweep, split into the client's
   parts (prepare, cluster round trip, reduce, parameter draws) and the slowest chunk's kernel
   time, for both ways of holding the chunks (Dask actors, the default; a task per chunk and
   iteration), at 2 and 8 chunks (a per-chunk cost and a fixed cost, for the cost model).
3. **Scale**: N = ``--n`` rows (1e8 for the issue's target; the data generated chunk by
   chunk on the workers, never on the client), univariate K = 3, 2 chains x (200 + 200), on
   2 workers x 1 thread against 1 worker: wall time (model build, i.e. the Dask reductions of
   the data-scaled priors, and sampling), peak memory (RSS) per worker, speed-up.

Run: ``python bench/big_data.py [--n 1e8] [--check-n 1e5] [--skip-check]``; figures to stdout
and ``bench/big_data.json``. At N = 1e8 this takes about 10 minutes and 2-3 GB per worker on a
quiet machine with two free cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
MEANS = np.array([-3.0, 2.0, 6.0])
SDS = np.array([1.0, 0.7, 1.5])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def mixture_block(block_info=None, seed=0):
    """One chunk of the univariate K = 3 data, generated on the worker from (seed, chunk)."""
    info = block_info[None]
    ((lo, hi),) = info["array-location"]
    rng = np.random.default_rng([seed, info["chunk-location"][0]])
    comp = rng.choice(3, size=hi - lo, p=WEIGHTS)
    return rng.normal(MEANS[comp], SDS[comp])


def dask_mixture(n: int, chunk: int, seed: int):
    """A lazy dask.array of N rows: nothing is generated until a worker computes a chunk."""
    import dask.array as da

    sizes = (chunk,) * (n // chunk) + ((n % chunk,) if n % chunk else ())
    return da.map_blocks(mixture_block, chunks=(sizes,), dtype=float, seed=seed, meta=np.array(()))


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), MB (run on each worker)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cluster(workers: int):
    from distributed import Client, LocalCluster

    lc = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return lc, Client(lc)


def max_rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300)))


def same_draws(client, n: int, draws: int) -> dict:
    """(1) The local engine against the cluster, univariate and bivariate."""
    import dask.array as da

    import mixtures

    rng = np.random.default_rng(5)
    y = np.asarray(dask_mixture(n, max(n // 4, 1), 5).compute())
    cov = np.array([[1.0, 0.3], [0.3, 0.8]])
    centres = MEANS[:, None] * [1.0, 0.5]
    x = np.concatenate([rng.multivariate_normal(m, cov, n // 3 + 1) for m in centres])
    x = rng.permutation(x[:n])
    run = {"draws": draws, "tune": draws, "chains": 2, "random_seed": 3, "warn": False}
    out = {}
    for name, factory, data, chunks in (
        ("univariate", mixtures.full_mixture, y, n // 4),
        ("bivariate", mixtures.mv_mixture, x, (n // 4, 2)),
    ):
        t0 = time.perf_counter()
        local = mixtures.sample(factory(data, 3), tempering=False, progressbar=False, **run)
        t1 = time.perf_counter()
        model = factory(da.from_array(data, chunks=chunks), 3)
        remote = mixtures.sample(model, client=client, progressbar=False, **run)
        t2 = time.perf_counter()
        names = [v for v in ("weights", "means", "sigma", "chol_cov") if v in local.posterior]
        diffs = {v: max_rel(local.posterior[v].values, remote.posterior[v].values) for v in names}
        same_z = bool(
            (local.sample_stats.n_changed.values == remote.sample_stats.n_changed.values).all()
        )
        out[name] = {
            "n": n,
            "draws": f"2 x ({draws} + {draws})",
            "max_relative_difference": diffs,
            "n_changed_identical": same_z,
            "local_seconds": round(t1 - t0, 2),
            "cluster_seconds": round(t2 - t1, 2),
        }
        print(name, json.dumps(out[name]))
    return out


def overhead(client, n: int, iterations: int) -> list:
    """(2) Milliseconds per iteration: the split, for both backends, at 2 and 8 chunks."""
    import mixtures

    rows = []
    for chunks in (2, 8):
        model = mixtures.full_mixture(dask_mixture(n, -(-n // chunks), 11), 3)
        for backend in ("actors", "tasks"):
            idata = mixtures.sample(
                model, client=client, draws=iterations, tune=0, chains=2, random_seed=1,
                progressbar=False, warn=False, backend=backend,
            )  # fmt: skip
            rec = json.loads(idata.posterior.attrs["mixtures_cluster"])
            rec.update(n=n)
            rows.append(rec)
            print("overhead", json.dumps(rec))
    return rows


def scale(n: int, workers: int, seed: int = 1) -> dict:
    """(3) N rows generated on the workers; 2 chains x (200 + 200); wall time and memory."""
    import mixtures

    lc, client = cluster(workers)
    try:
        client.run(lambda: None)  # the workers are up
        t0 = time.perf_counter()
        chunk = -(-n // 8)  # the same 8 chunks (so the same data) for 1 and 2 workers
        model = mixtures.full_mixture(dask_mixture(n, chunk, seed), 3)
        t1 = time.perf_counter()
        idata = mixtures.sample(
            model, client=client, draws=200, tune=200, chains=2, random_seed=seed, warn=False,
            progressbar=False,
        )  # fmt: skip
        t2 = time.perf_counter()
        peaks = client.run(peak_rss_mb)
        post = idata.posterior
        rec = {
            "n": n,
            "workers": workers,
            "build_seconds": round(t1 - t0, 2),
            "sample_seconds": round(t2 - t1, 2),
            "wall_seconds": round(t2 - t0, 2),
            "peak_rss_mb_per_worker": sorted(round(v, 1) for v in peaks.values()),
            "client_peak_rss_mb": round(peak_rss_mb(), 1),
            "means": post["means"].mean(("chain", "draw")).values.round(4).tolist(),
            "weights": post["weights"].mean(("chain", "draw")).values.round(4).tolist(),
            "cluster": json.loads(post.attrs["mixtures_cluster"]),
        }
        print("scale", json.dumps(rec))
        return rec, post["means"].values
    finally:
        client.close()
        lc.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=float, default=1e8, help="rows of the scale run")
    parser.add_argument("--check-n", type=float, default=1e5, help="rows of the same-draws check")
    parser.add_argument("--check-draws", type=int, default=200)
    parser.add_argument("--overhead-n", type=float, default=1e5)
    parser.add_argument("--overhead-iterations", type=int, default=200)
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument("--out", default=str(HERE / "big_data.json"))
    args = parser.parse_args()
    os.environ["MIXTURES_PROGRESSBAR"] = "0"
    warnings.simplefilter("ignore")
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    result = {
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    lc, client = cluster(2)
    try:
        if not args.skip_check:
            result["same_draws"] = same_draws(client, int(args.check_n), args.check_draws)
        result["overhead_ms_per_iteration"] = overhead(
            client, int(args.overhead_n), args.overhead_iterations
        )
    finally:
        client.close()
        lc.close()
    (two, means2), (one, means1) = scale(int(args.n), 2), scale(int(args.n), 1)
    result["scale"] = {"two_workers": two, "one_worker": one}
    result["scale"]["means_max_relative_difference_1_vs_2_workers"] = max_rel(means1, means2)
    result["speed_up"] = round(one["sample_seconds"] / two["sample_seconds"], 3)
    result["load_average_at_end"] = os.getloadavg()
    print("speed-up (sampling, 1 worker / 2 workers):", result["speed_up"])
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
