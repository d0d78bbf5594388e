"""The pointwise log-likelihood of a fitted mixture, with the assignments summed out.

``log sum_j w_j f(y_i | theta_j)`` for every draw and observation, for any component family
(Normal, Student-t, multivariate Normal with missing cells): the same for the latent and the
marginalised variant, so LOO / WAIC compare them on an equal footing. The weighted component
log-densities are the family's (:meth:`mixtures.model.components.ComponentFamily.weighted_logpdf`,
known labels masked there), evaluated block by block of draws, for memory.
:func:`~mixtures.model.components.fit_family` and :func:`~mixtures.model.components.posterior_nu`
(re-exported here) say which family a fit has.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from mixtures.model.components import (
    fit_components,
    fit_family,
    log_mixture,
    posterior_nu,
    posterior_param,
)

__all__ = [
    "LOGLIK_MAX_VALUES",
    "add_log_likelihood",
    "fit_family",
    "mv_pointwise_loglik",
    "pointwise_loglik",
    "posterior_nu",
    "posterior_param",
]

_LOGLIK_CHUNK = 2_000_000  # draws x n_obs x k floats per block when computing the log-likelihood
LOGLIK_MAX_VALUES = 50_000_000  # log_likelihood="auto" stores at most this many (400 MB)


def add_log_likelihood(idata: az.InferenceData, log_likelihood) -> None:
    """Store the pointwise log-likelihood in `idata` unless `log_likelihood` says not to."""
    post = idata.posterior
    n_values = post.sizes["chain"] * post.sizes["draw"] * idata.observed_data["y"].sizes["obs_id"]
    if log_likelihood is True or (log_likelihood == "auto" and n_values <= LOGLIK_MAX_VALUES):
        idata.add_groups(log_likelihood=pointwise_loglik(idata))
    else:
        post.attrs["mixtures_log_likelihood"] = (
            f"not stored: {n_values:,} values (log_likelihood={log_likelihood!r}); "
            "add it with mixtures.analysis.loglik.add_log_likelihood(idata, True) if needed"
        )


def pointwise_loglik(idata: az.InferenceData) -> xr.Dataset:
    """Return the assignment-marginal pointwise log-likelihood of ``y`` for every draw.

    A point with a known label (``constant_data["labels"]`` >= 0) gets the likelihood of the
    point and its label, log w_z + log f(y_i | theta_z).

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``weights`` in the posterior, the family's parameters (``means`` / ``sigma``
        [/ ``nu``], or ``means`` / ``chol_cov``) in the posterior or in constant_data, and
        ``y`` in observed_data (dims ``obs_id`` [, ``feature``]).

    Returns
    -------
    xarray.Dataset
        Variable ``y`` with dims (chain, draw, obs_id).
    """
    fit = fit_components(idata)
    y = idata.observed_data["y"]
    x = np.asarray(y.transpose("obs_id", ...).values, dtype=float)
    n_draws, k = fit.weights.shape
    out = np.empty((n_draws, x.shape[0]))
    block = max(1, _LOGLIK_CHUNK // max(1, x.shape[0] * k))
    for start in range(0, n_draws, block):
        sl = slice(start, start + block)
        out[sl] = log_mixture(fit.weighted_logpdf(x, sl, fit.labels))
    post = idata.posterior
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "obs_id": y["obs_id"]}
    out = out.reshape(*fit.shape, -1)
    return xr.Dataset({"y": (("chain", "draw", "obs_id"), out)}, coords=coords)


def mv_pointwise_loglik(idata) -> xr.Dataset:
    """Return log sum_j w_j N(x_i | mu_j, Sigma_j) for every draw and observation.

    The multivariate case of :func:`pointwise_loglik` (which it calls).

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``weights``, ``means``, ``chol_cov`` in the posterior and ``y`` in observed_data.

    Returns
    -------
    xarray.Dataset
        Variable ``y`` with dims (chain, draw, obs_id).
    """
    return pointwise_loglik(idata)
