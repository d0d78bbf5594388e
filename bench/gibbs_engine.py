"""Our Gibbs engine against the plain-PyMC way, side by side in one run (issue 10's targets).

Sections (each timed measurement in a fresh process, so caches and peak memory are its own):

1. **per iteration** at N = 215, K = 3: PyMC's default steps on the latent model
   (CategoricalGibbsMetropolis + NUTS) against ours (one chain, no tempering; and 4 chains with
   the default tempering, per chain-iteration).
2. **model to summary table** at N = 215, warm caches: ``mixtures.sample`` (defaults: Gibbs,
   tempering "auto") + ``summary_table`` against a hand-written model + ``pm.sample()`` +
   ``az.summary``. Then the same with **empty compile caches** (fresh PYTENSOR compiledir and
   NUMBA_CACHE_DIR).
3. **refit** of a kept handle on new data of the same size, 4 x (1000 + 1000), with the default
   tempering and without.
4. **N = 1e6**, 2 x (500 + 500): wall time and peak memory; the sweep against its floor.
5. **2-D**: old_faithful (K = 2), three_clusters_2d (K = 3, against PyMC's LKJ/NUTS at 2 x
   (300 + 300) and scikit-learn's ARI), four_clusters_2d (K = 10, sparse Dirichlet), with the
   inverse-Wishart prior on our engine.

6. **sweep** (``--sweep``, issue 21; runs only this and section 4): the sweep alone at N = 1e6,
   K = 3, one chain on one thread, in ns per point, beside NumPy's ``np.exp(x, out=buf)`` per
   value (interleaved rounds, the best of each); then each of its stages alone and the
   assembly census (``bench/sweep_stages.py``).
7. **ESS per second at N = 2e4** (``--ess``, issue 21): ours at the defaults against
   ``pm.sample()`` on the marginalised model, same data, min bulk ESS over weights, means and
   sigma per second of wall time (model to draws), and per second of CPU.
8. **the ladder** (``--ladder``, issue 21): N = 215, K = 3 model to summary with the default
   ladder (32 temperatures), 16, 8 and none; galaxies K = 4 and three_gaussians K = 2 at the
   default and at 16 temperatures, seeds 1-3 (r_hat, bulk and tail ESS, draws run).

9. **t** (``--t [N]``, issue 23; runs only this): one Gibbs iteration of a K = 3 Student-t
   mixture (nu fixed; nu sampled) beside the Normal mixture's, on the same data (N = 1e5 by
   default), one chain, no tempering: the time of 250 draws minus that of 50 (fixed costs
   cancel), best of interleaved rounds.
10. **missing cells** (``--missing [N]``, issue 23; runs only this): the multivariate sweep per
   iteration (K = 3, one chain, no tempering) on three_clusters_2d resampled to N rows with 20%
   of the cells deleted at random, beside the same rows complete; interleaved rounds, the best
   of each, and their ratio. ``--missing-d 4``: two more features (linear mixtures of the two,
   plus noise; about 59% of the rows incomplete, 14 patterns).
11. **multivariate t** (``--mvt [N]``, issue 23; runs only this): one Gibbs iteration of a
   K = 3 bivariate t mixture (nu fixed; nu sampled) beside the bivariate Normal mixture's, on
   three_clusters_2d resampled to N rows (2e4 by default), one chain, no tempering; as ``--t``.
12. **sparse 2-D** (``--sparse2d SEEDS``, issue 21; runs only this): four_clusters_2d, K = 10,
   Dirichlet(1e-5) weights, model to summary (build, sampling, summary) and every chain's
   share of draws at each number of filled components (weight > 0.01), the old start
   (``init="random"``, 16 temperatures: the old defaults at this size) for the first seed, the
   new default for every seed. ``--sparse2d-evidence``: the log evidence (bridge sampling) of
   the k = 1..5 fits, turned into the sparse prior's posterior of the number of filled
   components (the reference the chains' shares should match).

Run: ``python bench/gibbs_engine.py [--quick | --sweep --ess --ladder | --t [N] | --missing N |
--mvt [N] | --sparse2d SEEDS | --sparse2d-evidence]``; figures go to stdout and
``bench/gibbs_engine.json`` (``gibbs_engine_quick.json``; ``gibbs_engine_<flags>.json``;
``gibbs_engine_t.json``; ``gibbs_engine_missing.json``; ``gibbs_engine_mvt.json``;
``gibbs_engine_sparse2d.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).parent

PRELUDE = textwrap.dedent(
    """
    import json, os, resource, sys, time, warnings
    warnings.simplefilter("ignore")
    os.environ["MIXTURES_PROGRESSBAR"] = "0"
    import numpy as np, pymc as pm, arviz as az, mixtures
    import logging; logging.getLogger("pymc").setLevel(logging.ERROR)
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()

    def plain_model(y):
        scale = float(np.std(y))
        coords = {"component": np.arange(3), "obs_id": np.arange(len(y))}
        with pm.Model(coords=coords) as model:
            w = pm.Dirichlet("weights", a=np.ones(3), dims="component")
            mu = pm.Normal("means", mu=float(np.mean(y)), sigma=2 * scale, dims="component",
                           transform=pm.distributions.transforms.ordered,
                           initval=np.quantile(y, [1 / 6, 1 / 2, 5 / 6]))
            sd = pm.HalfNormal("sigma", sigma=scale, dims="component")
            pm.NormalMixture("y", w=w, mu=mu, sigma=sd, observed=y, dims="obs_id")
        return model

    def cpu_all():  # this process, its threads and its waited-for children (PyMC's workers)
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def out(**kw):
        kw["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(kw))
    """
)

SNIPPETS = {
    "ours_summary": """
        t0, c0 = time.perf_counter(), cpu_all()
        model = mixtures.full_mixture(y, 3)
        idata = mixtures.sample(model, random_seed=1)
        table = mixtures.summary_table(idata)
        out(seconds=time.perf_counter() - t0, cpu_seconds=cpu_all() - c0,
            min_ess=float(table["ess_bulk"].min()), max_rhat=float(table["r_hat"].max()),
            tempering=idata.posterior.attrs["mixtures_tempering"])
    """,
    "plain_summary": """
        t0, c0 = time.perf_counter(), cpu_all()
        model = plain_model(y)
        with model:
            idata = pm.sample(random_seed=1, progressbar=False)
        table = az.summary(idata, var_names=["weights", "means", "sigma"])
        out(seconds=time.perf_counter() - t0, cpu_seconds=cpu_all() - c0,
            min_ess=float(table["ess_bulk"].min()),
            max_rhat=float(table["r_hat"].max()))
    """,
    "per_iteration": """
        lat = mixtures.full_mixture(y, 3, marginalized=False)
        with lat:  # PyMC's default steps: CategoricalGibbsMetropolis + NUTS
            t0 = time.perf_counter()
            idata = pm.sample(draws=40, tune=0, chains=1, random_seed=1, progressbar=False,
                              compute_convergence_checks=False)
        pymc_per_it = idata.posterior.attrs["sampling_time"] / 40
        one = mixtures.sample(lat, draws=20000, tune=0, chains=1, tempering=False,
                              random_seed=1, warn=False, log_likelihood=False)
        ours_per_it = one.posterior.attrs["mixtures_sampling_seconds"] / 20000
        four = mixtures.sample(lat, draws=1000, tune=1000, chains=4, random_seed=1, warn=False,
                               log_likelihood=False)
        temps = len(four.posterior.attrs["mixtures_betas"])
        ours_tempered = four.posterior.attrs["mixtures_sampling_seconds"] / (4 * 2000)
        out(pymc_default_steps_s=pymc_per_it, ours_one_chain_s=ours_per_it,
            ours_tempered_per_chain_iteration_s=ours_tempered, temperatures=temps)
    """,
    "refit": """
        model = mixtures.full_mixture(y, 3)
        handle = mixtures.compile_model(model)
        rng = np.random.default_rng(0)
        res = {}
        # bootstrap draws with a little noise: resampled data have exact ties, on which an sd
        # can collapse (an improper posterior that the engine stops with a clear error)
        boot = lambda: rng.choice(y, y.size) + rng.normal(0, 0.05, y.size)  # noqa: E731
        for label, kw in (("default", {}), ("no_tempering", {"tempering": False})):
            handle.sample(boot(), random_seed=0, warn=False, **kw)  # warm
            times = []
            for r in range(3):
                t0 = time.perf_counter()
                handle.sample(boot(), random_seed=r, warn=False, **kw)
                times.append(time.perf_counter() - t0)
            res[label] = times
        out(**res)
    """,
    "million": """
        rng = np.random.default_rng(0)
        comp = rng.choice(3, size=1_000_000, p=np.array([90, 50, 75]) / 215)
        big = rng.normal(np.array([9.0, 21.0, 35.0])[comp], 2.0)
        t0, c0 = time.perf_counter(), time.process_time()
        model = mixtures.full_mixture(big, 3)
        idata = mixtures.sample(model, draws=500, tune=500, chains=2, random_seed=1, warn=False)
        table = mixtures.summary_table(idata)
        total = time.perf_counter() - t0
        cpu = time.process_time() - c0  # all threads: what a shared machine cannot inflate
        sampling = idata.posterior.attrs["mixtures_sampling_seconds"]
        # the floor: 2 exponentials per point and chain (K - 1), vectorised by NumPy
        x = rng.random(4_000_000)
        t1 = time.perf_counter(); np.exp(x); floor = (time.perf_counter() - t1)
        out(seconds=total, cpu_seconds=cpu, load_average=os.getloadavg()[0],
            sampling_seconds=sampling, per_sweep_s=sampling / 1000,
            numpy_exp_of_2x2e6_s=floor, max_rhat=float(table["r_hat"].max()),
            means=idata.posterior["means"].mean(("chain", "draw")).values.tolist())
    """,
    "sweep": """
        # the sweep alone, one thread, one chain, at N = 1e6, K = 3, beside NumPy's exp into a
        # preallocated buffer; interleaved rounds, the best of each
        from mixtures import _kernels
        rng = np.random.default_rng(0)
        n_obs, k = 1_000_000, 3
        comp = rng.choice(k, size=n_obs, p=np.array([90, 50, 75]) / 215)
        big = rng.normal(np.array([9.0, 21.0, 35.0])[comp], 2.0)
        logw, mu, sd = np.log(np.array([90, 50, 75]) / 215), np.array([9.0, 21.0, 35.0]), 2.0
        a = (logw - np.log(sd) * np.ones(k))[None, :].copy()
        c = np.full((1, k), -0.5 / sd**2)
        mus = mu[None, :].copy()
        fixed = np.full(n_obs, -1, dtype=np.int32)
        z = np.zeros((1, n_obs), dtype=np.int8)
        n, s1, s2 = (np.zeros((1, k)) for _ in range(3))
        changed = np.zeros(1, dtype=np.int64)
        x = rng.uniform(-40.0, 0.0, n_obs)
        buf = np.empty(n_obs)
        def sweep():
            keys = rng.integers(0, 2**63, size=1, dtype=np.uint64)
            _kernels.sweep(big, fixed, a, c, mus, keys, z, n, s1, s2, changed)
        # the tempered N = 215 fit's sweep: 128 replicas (4 chains x 32 temperatures) of 215
        # points, per point and replica (the lane sums' reduction is paid per replica)
        n_s, r_s = 215, 128
        y_s = big[:n_s].copy()
        state_s = [np.tile(v, (r_s, 1)) for v in (a, c, mus)]
        fixed_s = np.full(n_s, -1, dtype=np.int32)
        z_s = np.zeros((r_s, n_s), dtype=np.int8)
        sums_s = [np.zeros((r_s, k)) for _ in range(3)]
        changed_s = np.zeros(r_s, dtype=np.int64)
        def sweep_215():
            keys = rng.integers(0, 2**63, size=r_s, dtype=np.uint64)
            for _ in range(36):  # ~1e6 point-replica updates per timing
                _kernels.sweep(y_s, fixed_s, *state_s, keys, z_s, *sums_s, changed_s)
        jobs = {"sweep": sweep, "numpy_exp_out": lambda: np.exp(x, out=buf),
                "our_exp_array": lambda: _kernels.exp_array(x, buf), "sweep_215": sweep_215}
        best = {name: np.inf for name in jobs}
        best_cpu = dict(best)
        for name, job in jobs.items():
            job()  # compile / warm
        for _ in range(15):
            for name, job in jobs.items():
                t0, c0 = time.perf_counter(), time.thread_time()
                job()
                best[name] = min(best[name], time.perf_counter() - t0)
                best_cpu[name] = min(best_cpu[name], time.thread_time() - c0)
        per = {name: n_obs for name in jobs}
        per["sweep_215"] = 36 * n_s * r_s
        ns = {f"{name}_ns": 1e9 * t / per[name] for name, t in best.items()}
        ns.update({f"{name}_cpu_ns": 1e9 * t / per[name] for name, t in best_cpu.items()})
        out(**ns, ratio=ns["sweep_ns"] / ns["numpy_exp_out_ns"],
            ratio_cpu=ns["sweep_cpu_ns"] / ns["numpy_exp_out_cpu_ns"],
            load_average=os.getloadavg()[0])
    """,
    "ess_2e4": """
        # N = 2e4, K = 3: min bulk ESS over weights / means / sigma per second of wall time
        # (model to draws), ours at the defaults against pm.sample() on the marginalised model
        from time import process_time
        rng = np.random.default_rng(0)
        comp = rng.choice(3, size=20_000, p=np.array([90, 50, 75]) / 215)
        data = rng.normal(np.array([9.0, 21.0, 35.0])[comp], 2.0)
        names = ["weights", "means", "sigma"]
        def cpu():  # this process, its threads, and its waited-for children (PyMC's workers)
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system
        res = {}
        # warm: our kernels load from Numba's cache (compiled once per machine); PyMC's
        # compile cache is warm from earlier sections
        mixtures.sample(mixtures.full_mixture(data, 3), draws=20, tune=20, chains=1,
                        random_seed=0, warn=False)
        for way in ("ours", "pymc"):
            t0, c0 = time.perf_counter(), cpu()
            if way == "ours":
                idata = mixtures.sample(mixtures.full_mixture(data, 3), random_seed=1, warn=False)
            else:
                with plain_model(data):
                    idata = pm.sample(random_seed=1, progressbar=False,
                                      compute_convergence_checks=False)
            wall, used = time.perf_counter() - t0, cpu() - c0
            ess = float(az.ess(idata, var_names=names, method="bulk").to_array().min())
            res[way] = {"seconds": wall, "cpu_seconds": used, "min_ess_bulk": ess,
                        "ess_per_s": ess / wall, "ess_per_cpu_s": ess / used,
                        "draws": int(idata.posterior.sizes["draw"]),
                        "chains": int(idata.posterior.sizes["chain"]),
                        "max_rhat": float(az.rhat(idata, var_names=names).to_array().max())}
            if way == "ours":
                res[way]["tempering"] = idata.posterior.attrs["mixtures_tempering"]
        out(**res, ratio=res["ours"]["ess_per_s"] / res["pymc"]["ess_per_s"],
            ratio_cpu=res["ours"]["ess_per_cpu_s"] / res["pymc"]["ess_per_cpu_s"],
            load_average=os.getloadavg()[0])
    """,
    "ladder": """
        # what the ladder costs at N = 215, K = 3 (32 temperatures: the default there) and
        # whether 16 would still converge on the small multimodal sets of issue 20
        names = ["weights", "means", "sigma"]
        gal = mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000
        def fit(data, k, seed, tempering):
            t0 = time.perf_counter()
            idata = mixtures.sample(mixtures.full_mixture(data, k), random_seed=seed, warn=False,
                                    tempering=tempering)
            mixtures.summary_table(idata)
            attrs = idata.posterior.attrs
            return {"seconds": time.perf_counter() - t0,
                    "sampling_seconds": float(attrs["mixtures_sampling_seconds"]),
                    "draws_run": int(idata.posterior.sizes["draw"]),
                    "rhat": float(az.rhat(idata, var_names=names).to_array().max()),
                    "ess_bulk": float(az.ess(idata, var_names=names, method="bulk").to_array().min()),
                    "ess_tail": float(az.ess(idata, var_names=names, method="tail").to_array().min()),
                    "tempering": attrs["mixtures_tempering"]}
        fit(y, 3, 1, "auto")  # warm
        res = {"three_k3": {str(t): fit(y, 3, 1, t) for t in ("auto", 16, 8, False)}}
        for label, data, k in (("galaxies_k4", gal, 4), ("three_k2", y, 2)):
            res[label] = {f"{t}_seed{s}": fit(data, k, s, t) for t in ("auto", 16)
                          for s in (1, 2, 3)}
        out(**res)
    """,
    "t_sweep": """
        # per iteration: Normal, t with fixed nu, t with sampled nu; same data, one chain
        n_obs = int(os.environ.get("BENCH_T_N", "100000"))
        rng = np.random.default_rng(0)
        comp = rng.choice(3, size=n_obs, p=np.array([90, 50, 75]) / 215)
        big = rng.normal(np.array([9.0, 21.0, 35.0])[comp], 2.0)
        models = {
            "normal": mixtures.full_mixture(big, 3),
            "t_fixed_nu": mixtures.full_mixture(big, 3, family="t", nu=4.0),
            "t_sampled_nu": mixtures.full_mixture(big, 3, family="t"),
        }
        def timed(model, draws):
            t0 = time.perf_counter()
            mixtures.sample(model, draws=draws, tune=0, chains=1, tempering=False, init="random",
                            random_seed=1, warn=False, log_likelihood=False,
                            store_assignments=False)
            return time.perf_counter() - t0
        for m in models.values():
            timed(m, 5)  # compile / warm
        best = {name: np.inf for name in models}
        for _ in range(3):
            for name, m in models.items():
                best[name] = min(best[name], (timed(m, 250) - timed(m, 50)) / 200)
        out(n_obs=n_obs, **{f"{k}_ms": 1e3 * v for k, v in best.items()},
            ratio_fixed=best["t_fixed_nu"] / best["normal"],
            ratio_sampled=best["t_sampled_nu"] / best["normal"],
            load_average=os.getloadavg()[0])
    """,
    "mvt_sweep": """
        # per iteration: mv Normal, mv t with fixed nu, with sampled nu; same data, one chain
        n_obs = int(os.environ.get("BENCH_MVT_N", "20000"))
        rng = np.random.default_rng(0)
        base = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
        X = base[rng.integers(len(base), size=n_obs)] + 0.05 * rng.standard_normal((n_obs, 2))
        models = {
            "normal": mixtures.mv_mixture(X, 3),
            "t_fixed_nu": mixtures.mv_mixture(X, 3, family="t", nu=4.0),
            "t_sampled_nu": mixtures.mv_mixture(X, 3, family="t"),
        }
        def timed(model, draws):
            t0 = time.perf_counter()
            mixtures.sample(model, draws=draws, tune=0, chains=1, tempering=False, init="random",
                            random_seed=1, warn=False, log_likelihood=False,
                            store_assignments=False)
            return time.perf_counter() - t0
        for m in models.values():
            timed(m, 5)  # compile / warm
        best = {name: np.inf for name in models}
        for _ in range(3):
            for name, m in models.items():
                best[name] = min(best[name], (timed(m, 250) - timed(m, 50)) / 200)
        out(n_obs=n_obs, **{f"{k}_ms": 1e3 * v for k, v in best.items()},
            ratio_fixed=best["t_fixed_nu"] / best["normal"],
            ratio_sampled=best["t_sampled_nu"] / best["normal"],
            load_average=os.getloadavg()[0])
    """,
    "two_d": """
        from sklearn.metrics import adjusted_rand_score
        from sklearn.mixture import GaussianMixture
        from scipy import stats
        res = {}
        X = mixtures.load_dataset("old_faithful")
        t0 = time.perf_counter()
        idata = mixtures.sample(mixtures.mv_mixture(X, 2, covariance_prior="wishart"), random_seed=1)
        table = mixtures.summary_table(idata)
        res["old_faithful_s"] = time.perf_counter() - t0
        res["old_faithful_max_rhat"] = float(table["r_hat"].max())
        D = mixtures.load_dataset("three_clusters_2d")
        X3, labels = D[["x1", "x2"]], D["component"].to_numpy()
        t0 = time.perf_counter()
        ours = mixtures.sample(mixtures.mv_mixture(X3, 3, covariance_prior="wishart"), random_seed=1)
        mixtures.summary_table(ours)
        res["three_ours_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lkj = mixtures.sample(mixtures.mv_mixture(X3, 3, covariance_prior="lkj"), draws=300,
                              tune=300, chains=2, random_seed=5, warn=False)
        mixtures.summary_table(lkj)
        res["three_lkj_nuts_2x300_s"] = time.perf_counter() - t0
        def ari(idata):
            w = idata.posterior["weights"].mean(("chain", "draw")).values
            mu = idata.posterior["means"].mean(("chain", "draw")).values
            chol = idata.posterior["chol_cov"].values
            cov = (chol @ np.swapaxes(chol, -1, -2)).mean(axis=(0, 1))
            logp = np.stack([np.log(w[j]) + stats.multivariate_normal(mu[j], cov[j]).logpdf(X3)
                             for j in range(3)])
            return adjusted_rand_score(labels, logp.argmax(axis=0))
        res["three_ari_ours"] = ari(ours)
        res["three_ari_lkj"] = ari(lkj)
        res["three_ari_sklearn"] = adjusted_rand_score(
            labels, GaussianMixture(3, n_init=5, random_state=0).fit(X3).predict(X3))
        F = mixtures.load_dataset("four_clusters_2d")[["x1", "x2"]]
        t0 = time.perf_counter()
        m4 = mixtures.mv_mixture(F, 10, ordered_by=None, covariance_prior="wishart",
                                 priors={"weights": {"a": 1e-5}})
        i4 = mixtures.sample(m4, random_seed=1, warn=False)
        res["four_s"] = time.perf_counter() - t0
        counts = mixtures.effective_components(i4)
        res["four_share_at_4_per_chain"] = [float((counts.sel(chain=c) == 4).mean())
                                            for c in range(counts.sizes["chain"])]
        out(**res)
    """,
    "missing": """
        n_rows = int(os.environ.get("BENCH_MISSING_N", "20000"))
        rng = np.random.default_rng(0)
        base = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
        if os.environ.get("BENCH_MISSING_D", "2") == "4":  # two more features, correlated
            base = np.column_stack([base, base @ [[0.6, -0.3], [0.2, 0.8]]])
        X = base[rng.integers(len(base), size=n_rows)]
        X = X + 0.05 * rng.standard_normal(X.shape)
        Xm = X.copy()
        gone = rng.random(X.shape) < 0.2
        gone[gone.all(axis=1), 0] = False
        Xm[gone] = np.nan
        models = {"complete": mixtures.mv_mixture(X, 3), "missing": mixtures.mv_mixture(Xm, 3)}
        kw = dict(draws=300, tune=0, chains=1, tempering=None, init="random", warn=False,
                  log_likelihood=False, random_seed=1)
        for m in models.values():  # compile / warm
            mixtures.sample(m, **{**kw, "draws": 5})
        best = {name: float("inf") for name in models}
        for _ in range(3):  # interleaved rounds
            for name, m in models.items():
                idata = mixtures.sample(m, **kw)
                best[name] = min(best[name], idata.posterior.attrs["sampling_time"] / 300)
        out(n_rows=n_rows, d=X.shape[1], missing_cells=int(gone.sum()),
            incomplete_rows=int(gone.any(axis=1).sum()),
            per_iteration_complete_ms=best["complete"] * 1e3,
            per_iteration_missing_ms=best["missing"] * 1e3,
            ratio=best["missing"] / best["complete"])
    """,
    "sparse2d": """
        seed = int(os.environ["BENCH_SPARSE_SEED"])
        way = os.environ["BENCH_SPARSE_WAY"]
        # before: the old defaults at this size (16 temperatures, random starts), explicitly
        kw = dict(init="random", tempering=16) if way == "before" else {}
        F = mixtures.load_dataset("four_clusters_2d")[["x1", "x2"]]
        t0 = time.perf_counter()
        m4 = mixtures.mv_mixture(F, 10, ordered_by=None, covariance_prior="wishart",
                                 priors={"weights": {"a": 1e-5}})
        t1 = time.perf_counter()
        i4 = mixtures.sample(m4, random_seed=seed, warn=False, **kw)
        t2 = time.perf_counter()
        mixtures.summary_table(i4)
        t3 = time.perf_counter()
        filled = (i4.posterior["weights"].values > 0.01).sum(axis=-1)  # (chain, draw)
        shares = [{int(m): float((row == m).mean()) for m in np.unique(row)} for row in filled]
        from mixtures.analysis.diagnostics import convergence_table
        table = convergence_table(i4)
        a = i4.posterior.attrs
        out(way=way, seed=seed, seconds=t3 - t0, build_s=t1 - t0, sample_s=t2 - t1,
            sampling_time_s=float(a["sampling_time"]), summary_s=t3 - t2,
            draws_run=int(a["mixtures_draws_run"]), reason=a["mixtures_draws_reason"],
            starts=a["mixtures_starts"], tempering=a["mixtures_tempering"],
            share_at_4_per_chain=[s.get(4, 0.0) for s in shares],
            filled_shares_per_chain=shares, max_rhat=float(table["r_hat"].max()),
            load_average=os.getloadavg()[0])
    """,
    "sparse2d_evidence": """
        from scipy.special import gammaln
        from mixtures.analysis.evidence import log_evidence
        F = mixtures.load_dataset("four_clusters_2d")[["x1", "x2"]]
        n_obs, big_k, res = len(F), 10, {}
        for k in range(1, 6):
            idata = mixtures.sample(mixtures.mv_mixture(F, k, ordered_by=0), draws=2000,
                                    random_seed=3, warn=False)
            ev = log_evidence(idata)
            n = n_obs * idata.posterior["weights"].mean(("chain", "draw")).values
            # Dirichlet(1) over k labels -> Dirichlet(a) over 10 labels, partitions of sizes n
            dir1 = gammaln(k + 1) + gammaln(k) - gammaln(n_obs + k) + gammaln(n + 1).sum()
            row = {"log_evidence": ev.estimate, "se": ev.se}
            for a in (1e-5, 1e-2):
                sparse = (gammaln(big_k + 1) - gammaln(big_k - k + 1) + gammaln(big_k * a)
                          - gammaln(n_obs + big_k * a) + (gammaln(n + a) - gammaln(a)).sum())
                row[f"sparse_{a:g}"] = float(ev.estimate + sparse - dir1)
            res[k] = row
        for a in (1e-5, 1e-2):
            logs = np.array([res[k][f"sparse_{a:g}"] for k in res])
            post = np.exp(logs - logs.max())
            for k, p in zip(res, post / post.sum()):
                res[k][f"p_filled_{a:g}"] = float(p)
        out(by_k=res)
    """,
}


def run(name: str, env_extra: dict | None = None) -> dict:
    code = PRELUDE + textwrap.dedent(SNIPPETS[name])
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")


def print_million(m: dict) -> None:
    """Print the N = 1e6 section's figures."""
    print(
        f"N=1e6, 2 x (500 + 500): {m['seconds']:.1f} s to summary, {m.get('cpu_seconds', 0):.1f} s CPU "
        f"(load average {m.get('load_average', 0):.1f}; {m['sampling_seconds']:.1f} s "
        f"sampling, {m['per_sweep_s'] * 1e3:.1f} ms per iteration), peak {m['peak_rss_mb']:.0f} MB; "
        f"NumPy exp of 4e6 values {m['numpy_exp_of_2x2e6_s'] * 1e3:.1f} ms"
    )


def sweep_section(results: dict) -> None:
    """Issue 21: the sweep per point and chain beside NumPy's exp; N = 1e6 model to summary."""
    results["sweep"] = s = run("sweep")
    print(
        f"sweep at N=1e6, K=3, one thread: {s['sweep_ns']:.2f} ns per point and chain; "
        f"np.exp(x, out=buf) {s['numpy_exp_out_ns']:.2f} ns per value (ratio {s['ratio']:.2f}); "
        f"our exp {s['our_exp_array_ns']:.2f} ns per value. Thread CPU time: sweep "
        f"{s['sweep_cpu_ns']:.2f} ns, np.exp {s['numpy_exp_out_cpu_ns']:.2f} ns (ratio "
        f"{s['ratio_cpu']:.2f}); load average {s['load_average']:.1f}"
    )
    print(
        f"sweep at N=215, 128 replicas, one thread: {s['sweep_215_cpu_ns']:.2f} ns of thread CPU "
        f"per point and replica (N=1e6: {s['sweep_cpu_ns']:.2f})"
    )
    proc = subprocess.run(
        [sys.executable, str(HERE / "sweep_stages.py")], capture_output=True, text=True, check=True
    )
    results["stages"] = st = json.loads(proc.stdout.split("RESULT ", 1)[1])
    print(
        "stages alone, ns of thread CPU per point and chain: "
        + ", ".join(f"{name} {t:.2f}" for name, t in st["ns_cpu"].items())
    )
    print(f"asm census of _sweep_part: {st['asm']['sweep (_sweep_part)']}")
    results["million"] = m = run("million")
    print_million(m)
    floor = s["sweep_cpu_ns"] * 1e-9 * 1e6 * 2 * 1000  # 2 chains x 1,000 sweeps of 1e6 points
    print(
        f"the floor of N=1e6, 2 x (500 + 500): 2e9 point-chain updates at {s['sweep_cpu_ns']:.2f} "
        f"ns = {floor:.1f} s of CPU for the sweeps alone ({floor / 2:.1f} s on both cores); "
        f"measured {m['cpu_seconds']:.1f} s CPU, {m['seconds']:.1f} s wall"
    )
    results["million_floor_cpu_s"] = floor


def ess_section(results: dict) -> None:
    """Issue 21: ESS per second at N = 2e4, ours at the defaults against plain ``pm.sample()``."""
    results["ess_2e4"] = e = run("ess_2e4")
    for way in ("ours", "pymc"):
        r = e[way]
        print(
            f"N=2e4 {way}: {r['chains']} x {r['draws']} draws, {r['seconds']:.1f} s wall, "
            f"{r['cpu_seconds']:.1f} s CPU, min bulk ESS {r['min_ess_bulk']:.0f}, "
            f"{r['ess_per_s']:.1f} ESS/s ({r['ess_per_cpu_s']:.1f} per CPU s), "
            f"max r_hat {r['max_rhat']:.3f}"
        )
    print(
        f"N=2e4 ESS per second: ours / pm.sample() = {e['ratio']:.1f}x wall, "
        f"{e['ratio_cpu']:.1f}x CPU (load average {e['load_average']:.1f})"
    )


def summary_section(results: dict) -> None:
    """Issue 21: N = 215 model to summary at the defaults, warm, ours against pm.sample()."""
    run("ours_summary")  # warm the caches
    run("plain_summary")
    warm = {way: [run(f"{way}_summary") for _ in range(2)] for way in ("ours", "plain")}
    results["summary_warm"] = warm
    o = min(x["seconds"] for x in warm["ours"])
    p = min(x["seconds"] for x in warm["plain"])
    oc = min(x["cpu_seconds"] for x in warm["ours"])
    pc = min(x["cpu_seconds"] for x in warm["plain"])
    print(
        f"model to summary, N=215, warm: ours {o:.2f} s ({warm['ours'][0]['tempering']}), "
        f"plain pm.sample() {p:.2f} s (x{p / o:.1f}); CPU ours {oc:.2f} s, plain {pc:.2f} s "
        f"(x{pc / oc:.1f}); load average {os.getloadavg()[0]:.1f}"
    )


def ladder_section(results: dict) -> None:
    """Issue 21: the ladder's cost at N = 215, and 16 against 32 temperatures on small sets."""
    results["ladder"] = lad = run("ladder")
    for label, rows in lad.items():
        if label == "peak_rss_mb":
            continue
        for key, r in rows.items():
            print(
                f"{label} tempering={key}: {r['seconds']:.2f} s to summary "
                f"({r['sampling_seconds']:.2f} s sampling, {r['draws_run']} draws), "
                f"r_hat {r['rhat']:.3f}, bulk ESS {r['ess_bulk']:.0f}, tail ESS "
                f"{r['ess_tail']:.0f} [{r['tempering']}]"
            )


def t_section(results: dict, n_obs: int) -> None:
    """Issue 23: a t mixture's Gibbs iteration beside the Normal mixture's."""
    results["t"] = t = run("t_sweep", {"BENCH_T_N": str(n_obs)})
    print(
        f"per iteration at N={t['n_obs']}, K=3, one chain: Normal {t['normal_ms']:.2f} ms; "
        f"t, nu fixed {t['t_fixed_nu_ms']:.2f} ms (x{t['ratio_fixed']:.2f}); t, nu sampled "
        f"{t['t_sampled_nu_ms']:.2f} ms (x{t['ratio_sampled']:.2f}); load average "
        f"{t['load_average']:.1f}"
    )
    out = HERE / "gibbs_engine_t.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


def mvt_section(results: dict, n_obs: int) -> None:
    """Issue 23: a multivariate t mixture's Gibbs iteration beside the multivariate Normal's."""
    results["mvt"] = t = run("mvt_sweep", {"BENCH_MVT_N": str(n_obs)})
    print(
        f"per iteration at N={t['n_obs']}, d=2, K=3, one chain: mv Normal {t['normal_ms']:.2f} "
        f"ms; mv t, nu fixed {t['t_fixed_nu_ms']:.2f} ms (x{t['ratio_fixed']:.2f}); mv t, nu "
        f"sampled {t['t_sampled_nu_ms']:.2f} ms (x{t['ratio_sampled']:.2f}); load average "
        f"{t['load_average']:.1f}"
    )
    out = HERE / "gibbs_engine_mvt.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


def sparse2d_section(results: dict, seeds: list[int]) -> None:
    """Issue 21: four_clusters_2d, K = 10, Dirichlet(1e-5): old start (first seed) and new."""
    rows = [run("sparse2d", {"BENCH_SPARSE_SEED": str(seeds[0]), "BENCH_SPARSE_WAY": "before"})]
    for seed in seeds:
        rows.append(run("sparse2d", {"BENCH_SPARSE_SEED": str(seed), "BENCH_SPARSE_WAY": "after"}))
    results["sparse2d"] = rows
    for r in rows:
        shares = " / ".join(
            ", ".join(f"{m}: {p:.3f}" for m, p in sorted(c.items()))
            for c in r["filled_shares_per_chain"]
        )
        print(
            f"four_clusters_2d K=10 sparse, {r['way']}, seed {r['seed']}: {r['seconds']:.2f} s "
            f"model to summary (build {r['build_s']:.2f}, sample {r['sample_s']:.2f} of which "
            f"sampling {r['sampling_time_s']:.2f}, summary {r['summary_s']:.2f}), "
            f"{r['draws_run']} draws, max label-free r_hat {r['max_rhat']:.3f}; share at 4 "
            f"filled per chain {[round(x, 3) for x in r['share_at_4_per_chain']]}; "
            f"filled components per chain {shares}; starts {r['starts']}; tempering "
            f"{r['tempering']}; load average {r['load_average']:.1f}; {r['reason'][:160]}"
        )


def sparse2d_evidence_section(results: dict) -> None:
    """Issue 21: the posterior of the number of filled components, from the k-fits' evidence."""
    results["sparse2d_evidence"] = e = run("sparse2d_evidence")
    for k, row in e["by_k"].items():
        print(
            f"k={k}: log evidence (Dirichlet(1), bridge) {row['log_evidence']:.2f} +- "
            f"{row['se']:.2f}; sparse Dirichlet(1e-5): {row['sparse_1e-05']:.2f}, P(filled) "
            f"{row['p_filled_1e-05']:.3f}; Dirichlet(0.01): {row['sparse_0.01']:.2f}, "
            f"P(filled) {row['p_filled_0.01']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip N = 1e6 and the 2-D section")
    parser.add_argument(
        "--sweep", action="store_true", help="only the sweep against NumPy's exp, and N = 1e6"
    )
    parser.add_argument(
        "--ess", action="store_true", help="only N = 2e4 ESS per second against pm.sample()"
    )
    parser.add_argument(
        "--ladder", action="store_true", help="only the tempering ladder's cost and 16 vs 32"
    )
    parser.add_argument(
        "--summary", action="store_true", help="only N = 215 model to summary, warm"
    )
    parser.add_argument(
        "--t",
        nargs="?",
        type=int,
        const=100_000,
        default=None,
        metavar="N",
        help="only the Student-t iteration against the Normal one (N points, default 1e5)",
    )
    parser.add_argument(
        "--missing", type=int, default=0, metavar="N", help="only the missing-cells sweep at N rows"
    )
    parser.add_argument(
        "--mvt",
        nargs="?",
        type=int,
        const=20_000,
        default=None,
        metavar="N",
        help="only the multivariate t iteration against the mv Normal one (N rows, default 2e4)",
    )
    parser.add_argument(
        "--sparse2d",
        default=None,
        metavar="SEEDS",
        help="only the four_clusters_2d K = 10 sparse fit, old start (first seed) and new "
        "(every seed), e.g. 1,2,3,4",
    )
    parser.add_argument(
        "--sparse2d-evidence",
        action="store_true",
        help="only the bridge-sampling evidence of four_clusters_2d at k = 1..5 (minutes)",
    )
    parser.add_argument(
        "--missing-d", type=int, default=2, choices=[2, 4], help="features of --missing's data"
    )
    args = parser.parse_args()
    if args.sparse2d or args.sparse2d_evidence:
        results = {"machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
        if args.sparse2d:
            sparse2d_section(results, [int(s) for s in args.sparse2d.split(",")])
        if args.sparse2d_evidence:
            sparse2d_evidence_section(results)
        out = HERE / "gibbs_engine_sparse2d.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"written {out}")
        return
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    parts = [
        ("sweep", sweep_section),
        ("summary", summary_section),
        ("ladder", ladder_section),
        ("ess", ess_section),
    ]
    if any(getattr(args, flag) for flag, _ in parts):
        for flag, section in parts:
            if getattr(args, flag):
                section(results)
        name = "_".join(flag for flag, _ in parts if getattr(args, flag))
        out = HERE / f"gibbs_engine_{name}.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"written {out}")
        return
    if args.t is not None:
        t_section(results, args.t)
        return
    if args.mvt is not None:
        mvt_section(results, args.mvt)
        return
    if args.missing:
        env = {"BENCH_MISSING_N": str(args.missing), "BENCH_MISSING_D": str(args.missing_d)}
        results["missing"] = m = run("missing", env)
        print(
            f"missing cells, N={m['n_rows']}, d={args.missing_d}, K=3, one chain: complete "
            f"{m['per_iteration_complete_ms']:.3f} ms per iteration, 20% of cells missing "
            f"({m['incomplete_rows']} incomplete rows) {m['per_iteration_missing_ms']:.3f} ms "
            f"(ratio {m['ratio']:.2f})"
        )
        out = HERE / f"gibbs_engine_missing{'' if args.missing_d == 2 else '_d4'}.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"written {out}")
        return
    results["per_iteration"] = run("per_iteration")
    r = results["per_iteration"]
    print(
        f"per iteration, N=215: PyMC default steps {r['pymc_default_steps_s'] * 1e3:.1f} ms; "
        f"ours {r['ours_one_chain_s'] * 1e6:.1f} us (x{r['pymc_default_steps_s'] / r['ours_one_chain_s']:.0f}); "
        f"ours tempered ({r['temperatures']} temps) {r['ours_tempered_per_chain_iteration_s'] * 1e6:.0f} us per chain-iteration"
    )
    run("ours_summary")  # warm the caches
    run("plain_summary")
    warm = {
        "ours": [run("ours_summary") for _ in range(2)],
        "plain": [run("plain_summary") for _ in range(2)],
    }
    results["summary_warm"] = warm
    o = min(x["seconds"] for x in warm["ours"])
    p = min(x["seconds"] for x in warm["plain"])
    print(f"model to summary, warm: ours {o:.2f} s, plain PyMC {p:.2f} s (x{p / o:.1f})")
    with tempfile.TemporaryDirectory() as tmp:
        cold_ours = run(
            "ours_summary",
            {"NUMBA_CACHE_DIR": f"{tmp}/numba", "PYTENSOR_FLAGS": f"compiledir={tmp}/pt_ours"},
        )
        cold_plain = run("plain_summary", {"PYTENSOR_FLAGS": f"compiledir={tmp}/pt_plain"})
    results["summary_cold"] = {"ours": cold_ours, "plain": cold_plain}
    print(
        f"first fit, empty caches: ours {cold_ours['seconds']:.1f} s, plain PyMC "
        f"{cold_plain['seconds']:.1f} s (x{cold_plain['seconds'] / cold_ours['seconds']:.1f})"
    )
    results["refit"] = run("refit")
    print(
        "refit 4 x (1000 + 1000), N=215: default "
        + ", ".join(f"{t:.2f}" for t in results["refit"]["default"])
        + " s; no tempering "
        + ", ".join(f"{t:.3f}" for t in results["refit"]["no_tempering"])
        + " s"
    )
    if not args.quick:
        results["million"] = run("million")
        print_million(results["million"])
        results["two_d"] = run("two_d")
        print("2-D:", json.dumps(results["two_d"], indent=1))
    out = HERE / ("gibbs_engine_quick.json" if args.quick else "gibbs_engine.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
