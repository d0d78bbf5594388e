"""The Gibbs engine for multivariate mixtures with the inverse-Wishart covariance prior.

Same scheme as the univariate engine (:mod:`mixtures.engines.gibbs`): one fused pass over the
data per iteration draws every assignment and accumulates counts, sums and scatter matrices;
then exact draws of the weights (Dirichlet), the means (Normal given the precisions, restricted
to the order along ``ordered_by`` when set) and the precisions (Wishart given the means, by
Bartlett's decomposition), and replica exchange over powers of the likelihood.
"""

from __future__ import annotations

import time

import numpy as np

from mixtures._kernels import mv_run, mv_run_threaded
from mixtures.engines.tempering import (
    adapt_ladder,
    adaptation_rounds,
    drive,
    replica_state,
    run_record,
    sample_stats_arrays,
    stores_assignments,
)

__all__ = ["sample_mv"]

_PARALLEL_MIN = 100_000
_N_BLOCKS = 8


def _init(x, spec, n_rep, rng):
    k, d = spec.k, x.shape[1]
    logw = np.full((n_rep, k), -np.log(k))
    mu = x[rng.choice(x.shape[0], size=(n_rep, k))]  # data points as starting means
    if spec.ordered_by is not None:
        order = np.argsort(mu[:, :, spec.ordered_by], axis=1)
        mu = np.take_along_axis(mu, order[:, :, None], axis=1)
        step = 1e-3 * (np.std(x[:, spec.ordered_by]) or 1.0)
        for j in range(1, k):
            col = mu[:, j, spec.ordered_by]
            mu[:, j, spec.ordered_by] = np.maximum(col, mu[:, j - 1, spec.ordered_by] + step)
    cov = np.cov(x, rowvar=False).reshape(d, d) / k + 1e-9 * np.eye(d)
    prec_chol = np.linalg.cholesky(np.linalg.inv(cov))
    fac = np.broadcast_to(prec_chol, (n_rep, k, d, d)).copy()
    logdet = np.full((n_rep, k), 2 * np.log(np.diag(prec_chol)).sum())
    return logw, np.ascontiguousarray(mu), fac, logdet


def sample_mv(
    engine,
    x,
    betas,
    adapt,
    *,
    draws,
    tune,
    chains,
    rng,
    progressbar,
    store_assignments,
):
    """Run the multivariate sampler; return ``(posterior, sample_stats, attrs, steps)``."""
    t_start = time.perf_counter()
    spec = engine.spec
    k, d, n_obs = spec.k, x.shape[1], x.shape[0]
    n_temps = betas.size
    n_rep = chains * n_temps
    logw, mu, fac, logdet = _init(x, spec, n_rep, rng)
    z, state, swap_state, temp_of, rep_at = replica_state(rng, chains, n_temps, n_obs, k)
    store_z = stores_assignments(store_assignments, spec, chains * draws * n_obs)
    out_w = np.empty((chains, draws, k))
    out_mu = np.empty((chains, draws, k, d))
    out_lam = np.empty((chains, draws, k, d, d))
    out_z = np.empty((chains, draws if store_z else 0, n_obs), dtype=z.dtype)
    st = sample_stats_arrays(chains, draws, n_temps, sigma_accept=False)
    prior_a = np.array(spec.priors["weights"].params["a"], dtype=float)
    m0 = np.array(spec.priors["means"].params["mu"], dtype=float)
    s0 = np.array(spec.priors["means"].params["sigma"], dtype=float)
    nu = float(spec.priors["wishart"].params["nu"])
    psi = np.array(spec.priors["wishart"].params["psi"], dtype=float)
    ordered_by = -1 if spec.ordered_by is None else int(spec.ordered_by)
    model = (prior_a, m0, s0, nu, psi, ordered_by, store_z)
    n_tries = max(n_temps - 1, 1)
    tries, accepts = np.zeros(n_tries, np.int64), np.zeros(n_tries, np.int64)
    chain = [logw, mu, fac, logdet, z, swap_state, temp_of, rep_at, betas, tries, accepts, state]
    chain.append(engine._labels(x.shape[0]))  # known labels (-1: unknown)
    out = (out_w, out_mu, out_lam, out_z)
    stats = tuple(st.values())
    threaded = n_rep * n_obs >= _PARALLEL_MIN
    rounds = adaptation_rounds(tune) if adapt and n_temps > 2 else []

    def run_chunk(start, stop):
        args = (x, start, stop, tune, model, tuple(chain), out, stats)
        if threaded:
            mv_run_threaded(*args, _N_BLOCKS)
        else:
            mv_run(*args)

    def adapt_round():
        chain[8] = adapt_ladder(chain[8], 1.0 - accepts / np.maximum(tries, 1))
        tries[:], accepts[:] = 0, 0

    label = f"Gibbs: {chains} chains x {n_temps} temperatures"
    drive(tune + draws, rounds, progressbar, label, run_chunk, adapt_round)
    cov = np.linalg.inv(out_lam)
    chol = np.linalg.cholesky(cov)
    posterior = {
        "weights": out_w,
        "means": out_mu,
        "chol_cov": chol,
        "sigma": np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)),
    }
    if store_z:
        posterior["assignment"] = out_z
    attrs = run_record(st, chain[8], bool(rounds), store_z, t_start)
    steps = "Gibbs[assignment, weights, means, precisions (Wishart)]"
    steps += f" + replica exchange ({n_temps} temperatures)" if n_temps > 1 else ""
    return posterior, st, attrs, steps
