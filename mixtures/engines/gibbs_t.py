"""The Gibbs engine's Student-t family: its state, prior arrays, records and kernel.

The univariate engine (:mod:`mixtures.engines.gibbs`) runs every family through the same
loop; a family other than Normal contributes this module's five functions (its registry line
is ``FAMILY_HOOKS["t"]`` there). The kernel is :func:`mixtures._kernels_t.run_t`.
"""

from __future__ import annotations

import numpy as np

from mixtures._kernels import scale_prior
from mixtures._kernels_t import TConfig, TState, run_t
from mixtures.model.prior_codes import FIXED

__all__ = ["initial_state", "kernel_config", "outputs", "posterior", "run"]

run = run_t

#: Where the degrees of freedom start when they are sampled (moved into the prior's support).
NU_START = 10.0


def initial_state(spec, known, n_rep: int, n_obs: int, rng) -> TState:
    """Return the start of the family's own state: nu (n_rep, k) and lam (n_rep, n_obs)."""
    k = spec.k
    if "nu" in known:
        nu = np.broadcast_to(known["nu"], (n_rep, k)).copy()
    else:
        nu = NU_START * np.exp(0.3 * rng.standard_normal((n_rep, k)))
        prior = spec.priors["nu"]
        bad = ~np.isfinite(prior.logpdf(nu))
        if bad.any():  # e.g. outside a Uniform's support
            draws = np.asarray(prior.scipy().rvs(size=nu.shape, random_state=rng), dtype=float)
            nu = np.where(bad, np.broadcast_to(draws, nu.shape), nu)
    return TState(nu=np.ascontiguousarray(nu), lam=np.ones((n_rep, n_obs)))


def kernel_config(spec) -> TConfig:
    """Return the nu prior for the kernel (code -1: nu fixed)."""
    k = spec.k
    if "nu" not in spec.priors:
        return TConfig(nu_code=FIXED, nu_p0=np.ones(k), nu_p1=np.ones(k))
    return TConfig(*scale_prior(spec.priors["nu"], k))


def outputs(chains: int, n: int, k: int, n_store: int) -> tuple:
    """Allocate the records: nu (chains, n, k), weights (chains, n or 0, n_store), acceptance."""
    return (
        np.empty((chains, n, k)),
        np.empty((chains, n if n_store else 0, n_store)),
        np.zeros((chains, n)),
    )


def posterior(merged: dict, spec, posterior_vars: dict, stats: dict) -> None:
    """Add the family's draws to a run's posterior and sample-stats dicts (in place)."""
    if "nu" in spec.free:
        posterior_vars["nu"] = merged["nu"]
        stats["nu_accept"] = merged["nu_accept"]
    lam = merged["precision_weights"]
    if lam.shape[1] and lam.shape[1] == merged["weights"].shape[1]:
        posterior_vars["precision_weights"] = lam
