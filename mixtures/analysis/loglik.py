"""The pointwise log-likelihood of a fitted mixture, with the assignments summed out.

``log sum_j w_j N(y_i | mu_j, sigma_j)`` for every draw and observation (Student-t components:
``t_nu_j(y_i | mu_j, sigma_j)``): the same for the latent and the marginalised variant, so LOO /
WAIC compare them on an equal footing. The component log-density is
:func:`mixtures.model.densities.component_logpdf`, evaluated block by block, for memory;
:func:`posterior_nu` is how every caller finds the fit's family.
"""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import xarray as xr

from mixtures.model.densities import component_logpdf
from mixtures.model.multivariate import mv_pointwise_loglik

__all__ = [
    "LOGLIK_MAX_VALUES",
    "add_log_likelihood",
    "fit_family",
    "pointwise_loglik",
    "posterior_nu",
]

_PARAMS = ("weights", "means", "sigma")
_LOGLIK_CHUNK = 2_000_000  # draws x n_obs x k floats per block when computing the log-likelihood
LOGLIK_MAX_VALUES = 50_000_000  # log_likelihood="auto" stores at most this many (400 MB)


def add_log_likelihood(idata: az.InferenceData, log_likelihood) -> None:
    """Store the pointwise log-likelihood in `idata` unless `log_likelihood` says not to."""
    post = idata.posterior
    n_values = post.sizes["chain"] * post.sizes["draw"] * idata.observed_data["y"].sizes["obs_id"]
    if log_likelihood is True or (log_likelihood == "auto" and n_values <= LOGLIK_MAX_VALUES):
        if idata.observed_data["y"].ndim == 2:
            idata.add_groups(log_likelihood=mv_pointwise_loglik(idata))
        else:
            idata.add_groups(log_likelihood=pointwise_loglik(idata))
    else:
        post.attrs["mixtures_log_likelihood"] = (
            f"not stored: {n_values:,} values (log_likelihood={log_likelihood!r}); "
            "add it with mixtures.analysis.loglik.add_log_likelihood(idata, True) if needed"
        )


def posterior_param(idata, name) -> xr.DataArray:
    """Return the posterior draws of a parameter, or its known value from constant_data."""
    if name in idata.posterior:
        return idata.posterior[name]
    if "constant_data" in idata.groups() and name in idata.constant_data:
        return idata.constant_data[name]
    raise KeyError(f"`{name}` is neither in the posterior nor in constant_data")


def fit_family(idata) -> str:
    """Return the component family of a fit: its recorded spec's, else ``"t"`` if it has a nu."""
    text = idata.posterior.attrs.get("mixtures_spec")
    if text:
        return json.loads(text).get("family", "normal")
    has_nu = "nu" in idata.posterior or (
        "constant_data" in idata.groups() and "nu" in idata.constant_data
    )
    return "t" if has_nu else "normal"


def posterior_nu(idata) -> xr.DataArray | None:
    """Return a t fit's degrees of freedom (posterior draws or the fixed values), else None."""
    if fit_family(idata) != "t":
        return None
    return posterior_param(idata, "nu")


def _known_labels(idata) -> np.ndarray | None:
    if "constant_data" in idata.groups() and "labels" in idata.constant_data:
        return np.asarray(idata.constant_data["labels"].values, dtype=int)
    return None


def pointwise_loglik(idata: az.InferenceData) -> xr.Dataset:
    """Return the assignment-marginal pointwise log-likelihood of ``y`` for every draw.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``weights`` in the posterior, ``means`` / ``sigma`` in the posterior or in
        constant_data, and ``y`` in observed_data.

    Returns
    -------
    xarray.Dataset
        Variable ``y`` with dims (chain, draw, obs_id).
    """
    post = idata.posterior
    y = idata.observed_data["y"]
    n_obs = y.sizes["obs_id"]
    weights, means, sigma = (posterior_param(idata, n) for n in _PARAMS)
    if "component" not in sigma.dims:  # shared sd
        sigma = sigma.expand_dims(component=weights["component"].values).transpose(..., "component")
    nu_da = posterior_nu(idata)
    params = (weights, means, sigma) + (() if nu_da is None else (nu_da,))
    full = xr.broadcast(*params, exclude=())
    w, mu, sd, *nu = (a.transpose("chain", "draw", "component").values for a in full)
    chains, draws, k = w.shape
    yv = y.values
    out = np.empty((chains, draws, n_obs))
    block = max(1, _LOGLIK_CHUNK // max(1, n_obs * k))
    # log w_j + log N(y | mu_j, sd_j), then a max-shifted logsumexp over the components, one
    # block of draws at a time; the component axis comes first so that the reductions run over
    # contiguous (draw, obs) slabs
    sd = np.moveaxis(sd, -1, 0)[..., None]  # (k, chain, draw, 1)
    mu = np.moveaxis(mu, -1, 0)[..., None]
    nu = np.moveaxis(nu[0], -1, 0)[..., None] if nu else None
    with np.errstate(divide="ignore"):  # an empty component's weight can underflow to 0
        log_w = np.moveaxis(np.log(w), -1, 0)[..., None]
    for c in range(chains):
        for start in range(0, draws, block):
            sl = slice(start, start + block)
            nu_c = None if nu is None else nu[:, c, sl]
            comp = component_logpdf(yv, mu[:, c, sl], sd[:, c, sl], nu_c)  # (k, block, n_obs)
            comp += log_w[:, c, sl]
            top = comp.max(axis=0)
            comp -= top
            np.exp(comp, out=comp)
            out[c, sl] = top + np.log(comp.sum(axis=0))
    labels = _known_labels(idata)
    if labels is not None:  # a labelled point's likelihood is that of (y_i, z_i)
        rows = np.flatnonzero(labels >= 0)
        lab = labels[rows]
        nu_lab = None if nu is None else nu[lab, :, :, 0]
        dens = component_logpdf(yv[rows, None, None], mu[lab, :, :, 0], sd[lab, :, :, 0], nu_lab)
        out[:, :, rows] = np.moveaxis(dens + log_w[lab, :, :, 0], 0, -1)
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "obs_id": y["obs_id"]}
    return xr.Dataset({"y": (("chain", "draw", "obs_id"), out)}, coords=coords)
