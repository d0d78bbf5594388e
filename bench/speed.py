"""Speed at every size: ``mixtures.sample(sampler="auto")`` against plain ``pm.sample()``.

Same model, same seed, side by side in one run. The model is the marginalised
Dirichlet-Categorical-Normal mixture with 3 components, ordered means and the data-scaled
default priors (``mixtures.full_mixture(y, 3, marginalized=True)``); "plain PyMC" is the same
model written by hand the way the FIELD_NOTES and the PyMC docs do it (``NormalMixture``, the
ordered transform with an ``initval`` of data quantiles) and sampled with ``pm.sample()`` at
its defaults. Data: ``three_gaussians`` at N = 215, seeded draws from the same law at larger N.

Sections

1. **time to summary**: wall time from model build to ``az.summary`` (compile and sampling
   included), min bulk ESS over weights/means/sigma, ESS per second of that time and of the
   sampling alone, and peak memory (max RSS of a fresh process per run) at N = 215, 1e4,
   1e5, plus N = 1e6 for ours.
2. **refit** of a compiled model at N = 215 (``compile_model(...).sample(y_boot)``), against
   building and sampling afresh.
3. **gradient** at N = 1e5: one log-density + gradient evaluation of the same model compiled
   by PyTensor's C backend (``pm.sample``'s), its Numba and JAX backends (the latter is what
   ``sampler="numpyro"`` and nutpie's JAX backend run), against a hand-fused JAX kernel.
4. **engines on a non-conjugate model** (StudentT prior on the means, so no Gibbs): PyMC,
   nutpie (Numba and JAX backends) and NumPyro at N = 215 and 1e4; the evidence for the
   ``"auto"`` rule's NUTS branch.

Run: ``python bench/speed.py [--quick]``; figures go to stdout and ``bench/speed.json``.
Each measurement runs in its own process (``--one``), so peak memory is per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PARAMS = ["weights", "means", "sigma"]
HERE = Path(__file__).parent


def make_data(n: int, seed: int = 0) -> np.ndarray:
    import mixtures

    if n == 215:
        return mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    rng = np.random.default_rng(seed)
    comp = rng.choice(3, size=n, p=np.array([90, 50, 75]) / 215)
    return rng.normal(np.array([9.0, 21.0, 35.0])[comp], 2.0)


def plain_pymc_model(y: np.ndarray, studentt: bool = False):
    """The model as a PyMC user writes it by hand (same priors as mixtures' defaults)."""
    import pymc as pm

    scale = float(np.std(y))
    start = np.quantile(y, [1 / 6, 1 / 2, 5 / 6])
    coords = {"component": np.arange(3), "obs_id": np.arange(len(y))}
    with pm.Model(coords=coords) as model:
        weights = pm.Dirichlet("weights", a=np.ones(3), dims="component")
        kw = dict(transform=pm.distributions.transforms.ordered, initval=start, dims="component")
        if studentt:
            means = pm.StudentT("means", nu=3, mu=float(np.mean(y)), sigma=2 * scale, **kw)
        else:
            means = pm.Normal("means", mu=float(np.mean(y)), sigma=2 * scale, **kw)
        sigma = pm.HalfNormal("sigma", sigma=scale, dims="component")
        pm.NormalMixture("y", w=weights, mu=means, sigma=sigma, observed=y, dims="obs_id")
    return model


def min_ess(idata) -> float:
    import arviz as az

    return float(az.ess(idata, var_names=PARAMS).to_array().min())


def run_one(engine: str, n: int, draws: int, tune: int, chains: int, studentt: bool) -> dict:
    """One fit in this process: build, sample, summarise; time and memory."""
    import arviz as az
    import pymc as pm

    import mixtures

    y = make_data(n)
    priors = {"means": {"dist": "StudentT", "nu": 3}} if studentt else None
    if studentt:
        priors["means"].update(mu=float(np.mean(y)), sigma=2 * float(np.std(y)))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if engine == "plain":
            model = plain_pymc_model(y, studentt)
            with model:
                t1 = time.perf_counter()
                idata = pm.sample(
                    draws=draws, tune=tune, chains=chains, random_seed=1, progressbar=False
                )
            sampling = time.perf_counter() - t1
            chosen = "pm.sample()"
        else:
            model = mixtures.full_mixture(y, 3, marginalized=True, priors=priors)
            t1 = time.perf_counter()
            kw = {}
            if engine.startswith("nutpie-"):
                engine, kw["backend"] = "nutpie", engine.split("-")[1]
            idata = mixtures.sample(
                model,
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=1,
                progressbar=False,
                sampler=engine,
                **kw,
            )
            sampling = time.perf_counter() - t1
            attrs = idata.posterior.attrs
            chosen = f"{attrs['mixtures_sampler']}: {attrs['mixtures_steps']}"
        table = az.summary(idata, var_names=PARAMS)
    total = time.perf_counter() - t0
    ess = min_ess(idata)
    if "sampling_time" in idata.sample_stats.attrs:
        sampling = float(idata.sample_stats.attrs["sampling_time"])
    return {
        "n": n,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "engine": chosen,
        "time_to_summary_s": total,
        "sampling_s": sampling,
        "min_bulk_ess": ess,
        "ess_per_s_total": ess / total,
        "ess_per_s_sampling": ess / sampling,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "means": table.loc[[f"means[{j}]" for j in range(3)], "mean"].tolist(),
        "max_r_hat": float(table["r_hat"].max()),
    }


def run_refit(n_refits: int = 3) -> dict:
    """Compile once at N = 215, refit on bootstrap resamples; against fresh build + fit."""
    import arviz as az

    import mixtures

    y = make_data(215)
    rng = np.random.default_rng(0)
    kw = dict(random_seed=1, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        compiled = mixtures.compile_model(mixtures.full_mixture(y, 3, marginalized=True))
        compiled.sample(**kw)
        first = time.perf_counter() - t0
        refits = []
        for _ in range(n_refits):
            boot = rng.choice(y, y.size)
            t0 = time.perf_counter()
            idata = compiled.sample(boot, **kw)
            az.summary(idata, var_names=PARAMS)
            refits.append(time.perf_counter() - t0)
        fresh = []
        for _ in range(n_refits):
            boot = rng.choice(y, y.size)
            t0 = time.perf_counter()
            idata = mixtures.sample(mixtures.full_mixture(boot, 3, marginalized=True), **kw)
            az.summary(idata, var_names=PARAMS)
            fresh.append(time.perf_counter() - t0)
        # the plain-PyMC way of refitting: rebuild and pm.sample again
        import pymc as pm

        plain = []
        for _ in range(1):
            boot = rng.choice(y, y.size)
            t0 = time.perf_counter()
            with plain_pymc_model(boot):
                idata = pm.sample(random_seed=1, progressbar=False)
            az.summary(idata, var_names=PARAMS)
            plain.append(time.perf_counter() - t0)
    return {
        "engine": compiled.sampler,
        "first_fit_s": first,
        "refit_s": refits,
        "fresh_build_and_fit_s": fresh,
        "plain_pymc_rebuild_and_fit_s": plain,
    }


def run_gradient(n: int = 100_000) -> dict:
    """Per-evaluation time of log-density + gradient: PyTensor backends vs a fused JAX kernel."""
    import jax
    import jax.numpy as jnp
    from pymc.blocking import DictToArrayBijection

    import mixtures

    jax.config.update("jax_enable_x64", True)
    y = make_data(n)
    model = mixtures.full_mixture(y, 3, marginalized=True)
    q0 = DictToArrayBijection.map(model.initial_point()).data
    rng = np.random.default_rng(0)
    qs = [q0 + rng.normal(0, 0.05, q0.shape) for _ in range(50)]
    out = {"n": n}
    values, fns = {}, {}
    for mode in ("FAST_RUN", "NUMBA", "JAX"):
        t0 = time.perf_counter()
        fn = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
        fn.set_extra_values({})
        np.asarray(fn(q0)[1])
        out[mode] = {"compile_s": time.perf_counter() - t0}
        values[mode] = float(np.asarray(fn(qs[0])[0]))
        fns[mode] = lambda q, fn=fn: np.asarray(fn(q)[1])

    yj = jnp.asarray(y)
    mu_prior, sd_prior, sigma_scale = float(np.mean(y)), 2 * float(np.std(y)), float(np.std(y))

    def fused_logp(q):
        # the model's parameter count and constraints: 2 free weight coordinates (softmax
        # against a zero; PyMC's simplex transform differs only in O(k) terms), ordered means
        # as first + cumsum(exp(log gaps)), log sigma; the same likelihood, written fused
        w = jax.nn.softmax(jnp.concatenate([q[:2], jnp.zeros(1)]))
        means = q[2] + jnp.concatenate([jnp.zeros(1), jnp.cumsum(jnp.exp(q[3:5]))])
        log_s = q[5:8]
        s = jnp.exp(log_s)
        comp = jnp.log(w) - log_s - 0.5 * ((yj[:, None] - means) / s) ** 2
        loglik = jax.scipy.special.logsumexp(comp, axis=1).sum() - 0.5 * n * jnp.log(2 * jnp.pi)
        prior = jax.scipy.stats.norm.logpdf(means, mu_prior, sd_prior).sum() + jnp.sum(q[3:5])
        prior += (jax.scipy.stats.norm.logpdf(s, 0, sigma_scale) + log_s).sum()
        return loglik + prior + jnp.sum(jnp.log(w))

    vg = jax.jit(jax.value_and_grad(fused_logp))
    t0 = time.perf_counter()
    vg(jnp.asarray(q0))[1].block_until_ready()
    out["fused_jax"] = {"compile_s": time.perf_counter() - t0}
    fns["fused_jax"] = lambda q: vg(q)[1].block_until_ready()
    qj = [jnp.asarray(q) for q in qs]
    # interleaved rounds, median per evaluation: the machine is shared and noisy
    per = {name: [] for name in fns}
    for _ in range(7):
        for name, fn in fns.items():
            batch = qj if name == "fused_jax" else qs
            t0 = time.perf_counter()
            for q in batch:
                fn(q)
            per[name].append((time.perf_counter() - t0) / len(batch) * 1e3)
    for name, times in per.items():
        out[name]["ms_per_eval"] = float(np.median(times))
        out[name]["ms_rounds"] = times
    out["backends_agree"] = bool(np.isclose(values["JAX"], values["FAST_RUN"], rtol=1e-9))
    for mode in ("FAST_RUN", "NUMBA", "JAX"):
        out[mode]["ratio_to_fused"] = out[mode]["ms_per_eval"] / out["fused_jax"]["ms_per_eval"]
    return out


def child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--one", *args]
    env = {**os.environ, "MIXTURES_PROGRESSBAR": "0"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"error": res.stderr[-2000:], "args": args}
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 215 only, short sections")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind = args.one[0]
        if kind == "fit":
            engine, n, draws, tune, chains, studentt = args.one[1:]
            out = run_one(engine, int(n), int(draws), int(tune), int(chains), studentt == "1")
        elif kind == "refit":
            out = run_refit()
        else:
            out = run_gradient()
        print(json.dumps(out))
        return

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    results = {"machine": f"{machine}, Python {platform.python_version()}", "fits": []}
    # (N, draws, tune, chains): PyMC's defaults where plain PyMC finishes in minutes; fewer
    # draws where it would take hours (both sides get the same settings at each N).
    sizes = [(215, 1000, 1000, 4)]
    if not args.quick:
        sizes += [(10_000, 1000, 1000, 4), (100_000, 300, 300, 2)]
    for n, draws, tune, chains in sizes:
        for engine in ("auto", "plain"):
            r = child(["fit", engine, str(n), str(draws), str(tune), str(chains), "0"])
            r["side"] = "ours" if engine == "auto" else "plain PyMC"
            results["fits"].append(r)
            print(json.dumps(r), flush=True)
    if not args.quick:
        r = child(["fit", "auto", "1000000", "300", "300", "2", "0"])
        r["side"] = "ours"
        results["fits"].append(r)
        print(json.dumps(r), flush=True)
    results["refit"] = child(["refit"])
    print(json.dumps(results["refit"]), flush=True)
    results["gradient"] = child(["gradient"])
    print(json.dumps(results["gradient"]), flush=True)
    results["non_conjugate"] = []
    for n in (215,) if args.quick else (215, 10_000):
        for engine in ("pymc", "nutpie-numba", "nutpie-jax", "numpyro"):
            draws = 1000
            r = child(["fit", engine, str(n), str(draws), "1000", "4", "1"])
            r["side"] = engine
            results["non_conjugate"].append(r)
            print(json.dumps(r), flush=True)
    out = HERE / ("speed_quick.json" if args.quick else "speed.json")
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")
    print(
        "\n| N | side | engine | time to summary (s) | sampling (s) | min bulk ESS | ESS/s "
        "(total) | peak RSS (MB) |"
    )
    for r in results["fits"]:
        if "error" in r:
            print("error", r)
            continue
        print(
            f"| {r['n']:,} | {r['side']} | {r['engine']} | {fmt(r['time_to_summary_s'])} | "
            f"{fmt(r['sampling_s'])} | {fmt(r['min_bulk_ess'], 0)} | "
            f"{fmt(r['ess_per_s_total'])} | {fmt(r['peak_rss_mb'], 0)} |"
        )


if __name__ == "__main__":
    main()
