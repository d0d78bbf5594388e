r"""Which component each point belongs to: responsibilities, predictions, co-clustering.

For draw :math:`s` of the parameters, the probability that observation :math:`i` came from
component :math:`j` is the responsibility

.. math:: r^{(s)}_{ij} = \frac{w^{(s)}_j f(y_i \mid \theta^{(s)}_j)}
                              {\sum_l w^{(s)}_l f(y_i \mid \theta^{(s)}_l)},

and its posterior probability is the average of :math:`r^{(s)}_{ij}` over draws (marginalised
models) or the frequency of :math:`z_i = j` among the sampled assignments (latent models).
Both are label-dependent: average over chains only when the chains agree on the labels (see
:func:`mixtures.label_switching` and :func:`mixtures.relabel`). The co-clustering
probabilities :math:`P(z_i = z_j)` and the number of occupied components do not depend on the
labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from mixtures.model.components import family_of, fit_components

__all__ = [
    "assignment_probabilities",
    "coclustering",
    "occupied_components",
    "plot_coclustering",
    "predict",
    "predict_proba",
]

_BLOCK = 2_000_000  # draws x observations x components per block of the log-densities


def flat_draws(da: xr.DataArray) -> np.ndarray:
    """Return the values of `da` with (chain, draw, ...) flattened to (chain * draw, ...)."""
    da = da.transpose("chain", "draw", ...)
    return da.values.reshape(-1, *da.shape[2:])


def check_fit(idata) -> None:
    """Refuse anything but an InferenceData whose posterior holds a mixture's ``weights``."""
    if not hasattr(idata, "groups") or "posterior" not in idata.groups():
        raise ValueError(
            f"`idata` should be an InferenceData with a posterior, but got {type(idata).__name__}"
        )
    if "weights" not in idata.posterior:
        raise ValueError("`idata` should hold `weights` in its posterior (a mixtures fit)")


def _observations(idata, y):
    """Observations as an array: `y`, or the fit's observed data."""
    if y is None:
        return np.asarray(idata.observed_data["y"].transpose("obs_id", ...).values, dtype=float)
    multivariate = family_of(idata).multivariate
    arr = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y, dtype=float)
    if multivariate:
        d = idata.posterior["means"].sizes["feature"]
        arr = np.atleast_2d(arr)
        if arr.ndim != 2 or arr.shape[1] != d:
            raise ValueError(
                f"`new_data` should have shape (n, {d}) for this model, but got {arr.shape}"
            )
    else:
        arr = np.atleast_1d(arr)
        if arr.ndim != 1:
            raise ValueError(f"`new_data` should be one-dimensional, but got shape {arr.shape}")
    if multivariate:  # missing cells (NaN): the observed cells' marginal
        if np.isinf(arr).any() or np.isnan(arr).all(axis=1).any():
            raise ValueError(
                "`new_data` should be finite, with at least one observed (non-NaN) value per "
                "row, but got infinite values or a row of NaN"
            )
    elif not np.all(np.isfinite(arr)):
        raise ValueError("`new_data` should be finite, but got NaN or infinite values")
    return arr


def component_logdensity(idata, y=None, *, draws=None):
    r"""Yield blocks of :math:`\log w_j + \log f(y_i \mid \theta_j)`, shape (draws, n, k).

    The fit's family's :meth:`~mixtures.model.components.ComponentFamily.weighted_logpdf`; on
    the fit's own observations a known label masks the other components (-inf).

    Parameters
    ----------
    idata : arviz.InferenceData
    y : array-like, optional
        Observations; default the fit's own.
    draws : slice or array of int, optional
        Flat draw indices (chain-major) to use; default all.

    Yields
    ------
    (numpy.ndarray, numpy.ndarray)
        The flat draw indices of the block and its log-densities.
    """
    x = _observations(idata, y)
    fit = fit_components(idata)
    n_draws, k = fit.weights.shape
    idx = np.arange(n_draws) if draws is None else np.arange(n_draws)[draws]
    labels = fit.labels if y is None else None
    block = max(1, _BLOCK // max(1, x.shape[0] * k))
    for start in range(0, idx.size, block):
        sel = idx[start : start + block]
        yield sel, np.ascontiguousarray(fit.weighted_logpdf(x, sel, labels))


def responsibilities(idata, y=None, *, draws=None) -> np.ndarray:
    """Per-draw responsibilities, shape (draws, n, k) (flat draws, chain-major)."""
    blocks = []
    for _, logd in component_logdensity(idata, y, draws=draws):
        logd -= logsumexp(logd, axis=-1, keepdims=True)
        blocks.append(np.exp(logd))
    return np.concatenate(blocks)


def _mean_responsibilities(idata, y) -> np.ndarray:
    total, count = 0.0, 0
    for sel, logd in component_logdensity(idata, y):
        logd -= logsumexp(logd, axis=-1, keepdims=True)
        total = total + np.exp(logd).sum(axis=0)
        count += sel.size
    return total / count


def _table(prob: np.ndarray, obs_index, components) -> xr.Dataset:
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(prob > 0, prob * np.log(prob), 0.0), axis=1)
    coords = {"obs_id": obs_index, "component": components}
    return xr.Dataset(
        {
            "probability": (("obs_id", "component"), prob),
            "label": (("obs_id",), components[np.argmax(prob, axis=1)]),
            "label_probability": (("obs_id",), prob.max(axis=1)),
            "entropy": (("obs_id",), ent),
        },
        coords=coords,
    )


def assignment_probabilities(idata, *, as_frame: bool = False):
    """Posterior probability of each component for every observation of a fit.

    Latent fits: the frequency of each value of ``assignment``; marginalised fits: the
    responsibilities averaged over draws. Label-dependent: for an unordered fit whose chains
    disagree on labels, :func:`mixtures.relabel` it first.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit by :func:`mixtures.sample` (univariate or multivariate, either variant).
    as_frame : bool, default False
        Return a pandas DataFrame (one row per observation) instead of an xarray Dataset.

    Returns
    -------
    xarray.Dataset or pandas.DataFrame
        ``probability`` (obs_id, component); ``label`` (the most probable component),
        ``label_probability`` (its probability) and ``entropy`` (nats; 0 = certain,
        log k = no idea) per observation.

    Examples
    --------
    >>> probs = mixtures.assignment_probabilities(idata)  # doctest: +SKIP
    >>> probs["label"].to_series().value_counts()  # doctest: +SKIP
    """
    check_fit(idata)
    components = idata.posterior["weights"]["component"].values
    obs = idata.observed_data["obs_id"].values
    if "assignment" in idata.posterior:
        z = flat_draws(idata.posterior["assignment"]).astype(int)
        prob = np.stack([(z == j).mean(axis=0) for j in range(components.size)], axis=1)
    else:
        prob = _mean_responsibilities(idata, None)
    out = _table(prob, obs, components)
    return _frame(out) if as_frame else out


def _frame(ds: xr.Dataset) -> pd.DataFrame:
    wide = ds["probability"].to_pandas()
    wide.columns = [f"p_{c}" for c in wide.columns]
    for name in ("label", "label_probability", "entropy"):
        wide[name] = ds[name].to_pandas()
    return wide


def predict_proba(idata, new_data) -> np.ndarray:
    """Posterior predictive probability of each component for new observations.

    The responsibilities of `new_data` under every posterior draw, averaged (scikit-learn's
    ``predict_proba``).

    Parameters
    ----------
    idata : arviz.InferenceData
    new_data : array-like
        Shape (n,) for univariate fits, (n, n_features) for multivariate ones, where NaN
        marks a missing cell: such a row's probabilities use its observed cells' marginal.

    Returns
    -------
    numpy.ndarray of shape (n, k)
    """
    check_fit(idata)
    return _mean_responsibilities(idata, new_data)


def predict(idata, new_data) -> np.ndarray:
    """Most probable component of each new observation (scikit-learn's ``predict``)."""
    components = idata.posterior["weights"]["component"].values
    return components[np.argmax(predict_proba(idata, new_data), axis=1)]


def _allocations(idata, rng, max_draws: int | None = None) -> np.ndarray:
    """Allocations per draw (draws, n): sampled ones, or one draw from the responsibilities."""
    if "assignment" in idata.posterior:
        z = flat_draws(idata.posterior["assignment"]).astype(int)
        sel = _thin(z.shape[0], max_draws)
        return z[sel]
    n_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    out = []
    for _, logd in component_logdensity(idata, None, draws=_thin(n_draws, max_draws)):
        logd -= logsumexp(logd, axis=-1, keepdims=True)
        cum = np.cumsum(np.exp(logd), axis=-1)
        u = rng.uniform(size=cum.shape[:2] + (1,))
        out.append(np.minimum((u > cum).sum(axis=-1), cum.shape[-1] - 1))
    return np.concatenate(out)


def _thin(n_draws: int, max_draws: int | None) -> np.ndarray:
    if max_draws is None or n_draws <= max_draws:
        return np.arange(n_draws)
    return np.linspace(0, n_draws - 1, max_draws).round().astype(int)


def coclustering(idata, *, max_draws: int = 1000) -> xr.DataArray:
    r"""Posterior probability that two observations share a component, P(z_i = z_j).

    Label-free: it needs no relabelling. Marginalised fits use
    :math:`\sum_k r_{ik} r_{jk}` per draw (the exact conditional probability); latent fits,
    the frequency of equal sampled assignments.

    Parameters
    ----------
    idata : arviz.InferenceData
    max_draws : int, default 1000
        Evenly thinned draws used.

    Returns
    -------
    xarray.DataArray
        Dims (obs_id, obs_id_bis).
    """
    check_fit(idata)
    n_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    sel = _thin(n_draws, max_draws)
    obs = idata.observed_data["obs_id"].values
    if "assignment" in idata.posterior:
        z = flat_draws(idata.posterior["assignment"]).astype(int)[sel]
        k = idata.posterior.sizes["component"]
        onehot = np.eye(k)[z]  # (draws, n, k)
        total = np.einsum("sik,sjk->ij", onehot, onehot)
    else:
        total = 0.0
        for _, logd in component_logdensity(idata, None, draws=sel):
            logd -= logsumexp(logd, axis=-1, keepdims=True)
            r = np.exp(logd)
            total = total + np.einsum("sik,sjk->ij", r, r)
    total = np.array(total, dtype=float)
    np.fill_diagonal(total, sel.size)  # an observation always shares its own component
    prob = np.clip(total / sel.size, 0.0, 1.0)
    return xr.DataArray(
        prob,
        dims=("obs_id", "obs_id_bis"),
        coords={"obs_id": obs, "obs_id_bis": obs},
        name="coclustering",
    )


def coclustering_order(prob) -> np.ndarray:
    """Return an ordering of the observations that puts co-clustered ones side by side."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    dist = 1.0 - np.asarray(prob)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    return leaves_list(linkage(squareform(dist, checks=False), method="average"))


def plot_coclustering(idata_or_prob, *, ax=None, cmap="viridis"):
    """Heat map of the co-clustering matrix, observations ordered so that clusters are blocks.

    Parameters
    ----------
    idata_or_prob : arviz.InferenceData or xarray.DataArray
        A fit, or the output of :func:`coclustering`.
    ax : matplotlib.axes.Axes, optional
    cmap : str, default "viridis"

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    prob = idata_or_prob if isinstance(idata_or_prob, xr.DataArray) else coclustering(idata_or_prob)
    order = coclustering_order(prob.values)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 4))
    image = ax.imshow(prob.values[np.ix_(order, order)], cmap=cmap, vmin=0, vmax=1)
    ax.figure.colorbar(image, ax=ax, label="P(same component)")
    ax.set_xlabel("observation (reordered)")
    ax.set_ylabel("observation (reordered)")
    ax.set_title("Co-clustering probabilities")
    return ax


def occupied_components(idata, *, random_seed=None, max_draws: int | None = None) -> pd.Series:
    """Posterior distribution of the number of components that hold at least one observation.

    Latent fits count the distinct sampled assignments per draw; marginalised fits draw one
    allocation per draw from the responsibilities (with `random_seed`).

    Parameters
    ----------
    idata : arviz.InferenceData
    random_seed : int, optional
    max_draws : int, optional
        Evenly thinned draws used (default: all).

    Returns
    -------
    pandas.Series
        Probability of each count, indexed by the count.
    """
    check_fit(idata)
    z = _allocations(idata, np.random.default_rng(random_seed), max_draws)
    k = idata.posterior.sizes["component"]
    occupied = (np.eye(k, dtype=bool)[z].any(axis=1)).sum(axis=1)
    counts = pd.Series(occupied).value_counts(normalize=True).sort_index()
    counts.index.name = "occupied_components"
    return counts.rename("probability")
