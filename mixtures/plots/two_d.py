"""Plots of 2-D mixtures: components as ellipses, predictive checks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse
from scipy.special import logsumexp

from mixtures.analysis.em import EMResult
from mixtures.model.components import COMPONENT_FAMILIES, posterior_nu
from mixtures.model.missing import check_with_missing
from mixtures.model.validation import check_integer
from mixtures.plots.em import plot_em_history  # re-exported: mixtures.plots2d's old path

__all__ = ["PPC_2D_MAX_POINTS", "plot_em_history", "plot_mixture_2d", "plot_ppc_2d"]

_MAX_DRAWS_FOR_LABELS = 200
_BLOCK = 2_000_000  # draws x observations x components per block of log-densities
#: ``plot_ppc_2d``'s default cap on the points of one KDE (the data's, the pooled draws').
PPC_2D_MAX_POINTS = 5_000


def _ellipse(mean, cov, scale, **kwargs) -> Ellipse:
    """Return the ellipse at `scale` standard deviations of N(mean, cov)."""
    vals, vecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    width, height = 2 * scale * np.sqrt(vals[::-1])
    return Ellipse(mean, width, height, angle=angle, **kwargs)


def _posterior_draws(idata, features, rng):
    """Weights (S, k), means (S, k, 2), covariances (S, k, 2, 2) of the posterior."""
    if isinstance(idata, EMResult):
        cov = idata.covariances[:, features][:, :, features]
        return idata.weights[None], idata.means[None][:, :, features], cov[None]
    post = idata.posterior
    for name in ("weights", "means", "chol_cov"):
        if name not in post:
            raise ValueError(
                f"`idata` should come from mixtures.mv_mixture (posterior `{name}`), "
                "but it does not hold it"
            )
    w = post["weights"].transpose("chain", "draw", "component").values
    mu = post["means"].transpose("chain", "draw", "component", "feature").values
    chol = post["chol_cov"].transpose("chain", "draw", "component", ...).values
    s = w.shape[0] * w.shape[1]
    w, mu, chol = w.reshape(s, -1), mu.reshape(s, *mu.shape[2:]), chol.reshape(s, *chol.shape[2:])
    cov = chol @ np.swapaxes(chol, -1, -2)
    cov = cov[:, :, features][:, :, :, features]
    return w, mu[:, :, features], cov


def plot_mixture_2d(
    idata,
    X,
    *,
    scale: float = 2.0,
    ax=None,
    num_draws: int = 20,
    weight_threshold: float = 0.01,
    features=(0, 1),
    random_seed=None,
    relabel: bool = True,
):
    """Plot the data coloured by most probable component, and each component as ellipses.

    Each component gets a thick ellipse at `scale` standard deviations of its posterior mean
    covariance, centred on its posterior mean, and thin ellipses from `num_draws` posterior
    draws (the uncertainty); the legend gives each component's posterior mean weight.
    Components whose posterior mean weight is below `weight_threshold` are not drawn (with a
    sparse prior they are the unused ones); the title says how many. The draws are first
    relabelled to common labels (:func:`mixtures.relabel`), lest chains that call a cluster
    by different numbers be averaged into ellipses between clusters.

    Parameters
    ----------
    idata : arviz.InferenceData or EMResult
        A fit of :func:`mixtures.mv_mixture` (``weights``, ``means``, ``chol_cov``), or the
        result of :func:`mixtures.em` (a point estimate: no thin ellipses). For t components
        (``family="t"``) the ellipses are those of the scale matrices and the colours use the
        t densities.
    X : array-like of shape (n_obs, n_features)
        The data. Rows with a missing cell (NaN) on one of the two axes are drawn as ticks
        on the axis of their observed coordinate, coloured by their most probable component
        given that coordinate.
    scale : float, default 2
        Ellipses at this many standard deviations (BayesPy's ``scale=2``).
    ax : matplotlib.axes.Axes, optional
    num_draws : int, default 20
        Posterior draws shown as thin ellipses per component.
    weight_threshold : float, default 0.01
        Posterior mean weight below which a component is not drawn.
    features : tuple of two ints, default (0, 1)
        The features on the axes (the marginal of the mixture on them is drawn).
    random_seed : int, optional
        Which posterior draws are shown.
    relabel : bool, default True
        Relabel the draws first (Stephens' algorithm). False trusts the fit's labels.

    Returns
    -------
    matplotlib.axes.Axes
    """
    x2, features, columns = _check_mixture_2d(X, features, scale)
    rng = np.random.default_rng(random_seed)
    if relabel and not isinstance(idata, EMResult):
        idata = _relabelled(idata)
    w, mu, cov = _posterior_draws(idata, features, rng)
    labels = _most_probable(x2, w, mu, cov, rng, _posterior_dof(idata, w.shape))
    ax = plt.subplots(figsize=(6, 5))[1] if ax is None else ax
    shown = {"scale": scale, "num_draws": num_draws, "weight_threshold": weight_threshold}
    names = _axis_names(idata, columns, features)
    _draw_mixture_2d(ax, x2, labels, (w, mu, cov), rng, names=names, **shown)
    return ax


def _check_mixture_2d(X, features, scale):
    """Return the data's two columns (n_obs, 2), the features as a list, the column names."""
    columns = list(X.columns) if hasattr(X, "columns") else None
    X, _ = check_with_missing(X, "X")
    features = list(features)
    if len(features) != 2 or not all(0 <= f < X.shape[1] for f in features):
        raise ValueError(
            f"`features` should be two feature indices in [0, {X.shape[1]}), but got {features}"
        )
    if not scale > 0:
        raise ValueError(f"`scale` should be > 0, but got {scale!r}")
    return X[:, features], features, columns


def _relabelled(idata):
    from mixtures.analysis.labels import relabel

    return relabel(idata)


def _axis_names(idata, columns, features) -> list[str]:
    """Return the data's column names, else the fit's feature coordinate, else x1, x2."""
    if columns is not None:
        return [str(columns[f]) for f in features]
    if not isinstance(idata, EMResult):
        return _feature_names(idata, features)
    return [f"x{f + 1}" for f in features]


def _draw_mixture_2d(ax, x2, labels, draws, rng, *, names, scale, num_draws, weight_threshold):
    """Draw the points coloured by `labels`, the ellipses, the missing-cell ticks, the titles."""
    w, mu, cov = draws
    colors = [f"C{j % 10}" for j in range(w.shape[1])]
    both = ~np.isnan(x2).any(axis=1)
    ax.scatter(*x2[both].T, c=[colors[j] for j in labels[both]], s=12, alpha=0.6, lw=0)
    unused = _draw_ellipses(ax, w, mu, cov, colors, scale, num_draws, weight_threshold, rng)
    low, high = np.nanmin(x2, axis=0), np.nanmax(x2, axis=0)
    pad = 0.1 * (high - low)
    ax.set(xlim=(low[0] - pad[0], high[0] + pad[0]), ylim=(low[1] - pad[1], high[1] + pad[1]))
    _missing_ticks(ax, x2, [colors[j] for j in labels], low - pad)
    title = f"components at {scale:g} sd"
    if unused:
        title += f" ({unused} unused, weight < {weight_threshold:g}, not drawn)"
    ax.set(xlabel=names[0], ylabel=names[1], title=title)
    ax.legend(loc="best", fontsize="small")


def _posterior_dof(idata, shape) -> np.ndarray | None:
    """Return a multivariate t fit's degrees of freedom as (S, k), else None."""
    if isinstance(idata, EMResult):
        return None
    nu = posterior_nu(idata)
    if nu is None:
        return None
    if "chain" in nu.dims:  # sampled: (chain, draw, component), flat chain-major as `w`
        return nu.transpose("chain", "draw", "component").values.reshape(shape)
    return np.broadcast_to(nu.values, shape)  # fixed: (component,)


def _most_probable(x2, w, mu, cov, rng, nu=None) -> np.ndarray:
    """Most probable component of each row: responsibilities averaged over (some) draws.

    The responsibilities are the multivariate Normal family's, or with `nu` (S, k) the
    multivariate t's (a row with one coordinate missing: that coordinate's marginal), in
    blocks of draws.
    """
    idx = rng.choice(w.shape[0], min(w.shape[0], _MAX_DRAWS_FOR_LABELS), replace=False)
    resp = np.zeros((x2.shape[0], w.shape[1]))
    block = max(1, _BLOCK // max(1, x2.size * w.shape[1]))
    for start in range(0, idx.size, block):
        sel = idx[start : start + block]
        params = {"means": mu[sel], "chol_cov": np.linalg.cholesky(cov[sel])}
        family = COMPONENT_FAMILIES["mvnormal" if nu is None else "mvt"]
        if nu is not None:
            params["nu"] = nu[sel]
        logp = family.weighted_logpdf(x2, w[sel], params)
        resp += np.exp(logp - logsumexp(logp, axis=-1, keepdims=True)).sum(axis=0)
    return resp.argmax(axis=1)


def _draw_ellipses(ax, w, mu, cov, colors, scale, num_draws, weight_threshold, rng) -> int:
    """Draw each used component's mean ellipse (thick) and draws' (thin); return the unused."""
    mean_w = w.mean(axis=0)
    thin = (
        rng.choice(w.shape[0], min(num_draws, w.shape[0]), replace=False) if w.shape[0] > 1 else []
    )
    unused = 0
    for j in range(w.shape[1]):
        if mean_w[j] < weight_threshold:  # an unused component's draws are its (wide) prior
            unused += 1
            continue
        for s in thin:
            ax.add_patch(
                _ellipse(mu[s, j], cov[s, j], scale, fill=False, lw=0.5, ec=colors[j], alpha=0.3)
            )
        ax.add_patch(
            _ellipse(mu[:, j].mean(0), cov[:, j].mean(0), scale, fill=False, lw=2,
                     ec=colors[j], label=f"component {j}: w = {mean_w[j]:.2f}")
        )  # fmt: skip
    return unused


def _missing_ticks(ax, x2, colors, corner) -> None:
    """Rows with one of the two coordinates missing: ticks on the axis of the observed one."""
    colors = np.asarray(colors)
    only_x = ~np.isnan(x2[:, 0]) & np.isnan(x2[:, 1])
    only_y = np.isnan(x2[:, 0]) & ~np.isnan(x2[:, 1])
    if only_x.any():
        ax.scatter(x2[only_x, 0], np.full(only_x.sum(), corner[1]), c=colors[only_x], marker="|",
                   s=60, lw=1, label=f"{only_x.sum()} rows, y missing")  # fmt: skip
    if only_y.any():
        ax.scatter(np.full(only_y.sum(), corner[0]), x2[only_y, 1], c=colors[only_y], marker="_",
                   s=60, lw=1, label=f"{only_y.sum()} rows, x missing")  # fmt: skip


def _kde_2d(points: np.ndarray, grid: np.ndarray, kernel_cov: np.ndarray) -> np.ndarray:
    """Gaussian KDE of `points` (n, 2) on `grid` (m, 2) with one fixed kernel covariance."""
    chol = np.linalg.cholesky(kernel_cov)
    white_pts = np.linalg.solve(chol, points.T).T
    white_grid = np.linalg.solve(chol, grid.T).T
    out = np.zeros(grid.shape[0])
    step = max(1, 4_000_000 // max(1, points.shape[0]))
    for start in range(0, grid.shape[0], step):
        g = white_grid[start : start + step]
        d2 = ((g[:, None, :] - white_pts[None, :, :]) ** 2).sum(-1)
        out[start : start + step] = np.exp(-0.5 * d2).mean(axis=1)
    return out / (2 * np.pi * np.prod(np.diag(chol)))


def ppc_densities_2d(data: np.ndarray, pooled: np.ndarray, *, bw_adjust: float = 1.0, n_grid=100):
    """KDEs of the data and of pooled predictive draws on one grid, with the data's kernel.

    The kernel covariance is Scott's rule for the data, ``(bw_adjust * n**(-1/6))**2`` times
    the data's covariance, for both: the two densities then differ only where the data sets
    differ. The grid covers the data's range plus 15% on each side.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Grid coordinates ``gx``, ``gy`` and the densities of the data and of the draws there.
    """
    factor = bw_adjust * data.shape[0] ** (-1.0 / 6.0)
    kernel_cov = factor**2 * np.cov(data.T)
    pad = 0.15 * (data.max(0) - data.min(0))
    lo, hi = data.min(0) - pad, data.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n_grid), np.linspace(lo[1], hi[1], n_grid))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    z_data = _kde_2d(data, grid, kernel_cov).reshape(gx.shape)
    z_pred = _kde_2d(pooled, grid, kernel_cov).reshape(gx.shape)
    return gx, gy, z_data, z_pred


def _feature_names(idata, features) -> list[str]:
    """Return the data's column names when the fit kept them, else x1, x2, ..."""
    coord = idata.observed_data["y"]["feature"].values if "feature" in idata.observed_data else []
    if len(coord) and all(isinstance(c, str) for c in coord):
        return [str(coord[f]) for f in features]
    return [f"x{f + 1}" for f in features]


def plot_ppc_2d(
    idata,
    *,
    num_draws: int = 20,
    ax=None,
    random_seed=None,
    features=(0, 1),
    bw_adjust: float = 1.0,
    max_points: int = PPC_2D_MAX_POINTS,
):
    """Posterior predictive check in 2-D: density contours of predictive draws against data.

    Draws `num_draws` predictive data sets; shows their pooled points (faint) and the KDE
    contours of the pooled predictive (colour) and of the data (black), with the same kernel
    (see :func:`ppc_densities_2d`), at the levels that enclose about 90%, 75%, 50% and 25% of
    the data.

    The cost is bounded whatever the size of the data: the data and the pooled draws are each
    represented by at most `max_points` points (seeded random subsets when there are more;
    Scott's rule then uses n = `max_points`), so a KDE costs at most 10,000 grid points x
    `max_points`, and the level of the contours at most `max_points` squared. Only the draws
    shown are read from the predictive.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``posterior_predictive`` (see :func:`mixtures.sample_posterior_predictive`) and
        ``observed_data`` ``y`` of dims (obs_id, feature).
    num_draws : int, default 20
    ax : matplotlib.axes.Axes, optional
    random_seed : int, optional
    features : tuple of two ints, default (0, 1)
    bw_adjust : float, default 1
        Multiplies Scott's rule for the data's kernel.
    max_points : int, default 5,000
        The most points a KDE (and the scatter) uses; :data:`PPC_2D_MAX_POINTS`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check_ppc_2d(idata, bw_adjust, num_draws, max_points)
    features = list(features)
    rng = np.random.default_rng(random_seed)
    data, pooled, n_chosen = _ppc_points_2d(idata, features, num_draws, max_points, rng)
    ax = plt.subplots(figsize=(6, 5))[1] if ax is None else ax
    _draw_ppc_2d(ax, data, pooled, n_chosen, bw_adjust, _feature_names(idata, features))
    return ax


def _check_ppc_2d(idata, bw_adjust, num_draws, max_points) -> None:
    """Refuse a fit without a predictive, and bad counts or bandwidth factors."""
    if "posterior_predictive" not in idata.groups():
        raise ValueError(
            "`idata` should hold a posterior_predictive group; "
            "call mixtures.sample_posterior_predictive first"
        )
    if not bw_adjust > 0:
        raise ValueError(f"`bw_adjust` should be > 0, but got {bw_adjust!r}")
    for name, value in (("num_draws", num_draws), ("max_points", max_points)):
        check_integer(value, name)


def _draw_ppc_2d(ax, data, pooled, n_chosen: int, bw_adjust: float, names) -> None:
    """Draw the pooled draws, the two KDEs' contours at the data's levels, and the data."""
    ax.scatter(pooled[:, 0], pooled[:, 1], s=2, alpha=0.15, color="C0", lw=0,
               label=f"{n_chosen} predictive draws")  # fmt: skip
    gx, gy, z_data, z_pred = ppc_densities_2d(data, pooled, bw_adjust=bw_adjust)
    # contours that enclose about 90%, 75%, 50% and 25% of the data (its density at its points)
    factor = bw_adjust * data.shape[0] ** (-1.0 / 6.0)
    at_data = _kde_2d(data, data, factor**2 * np.cov(data.T))
    levels = np.quantile(at_data, [0.1, 0.25, 0.5, 0.75])
    ax.contour(gx, gy, z_pred, levels=levels, colors="C0", linewidths=1.5)
    ax.contour(gx, gy, z_data, levels=levels, colors="k", linewidths=1.0)
    ax.scatter(data[:, 0], data[:, 1], s=6, color="k", label="data")
    ax.set(xlabel=names[0], ylabel=names[1], xlim=(gx.min(), gx.max()), ylim=(gy.min(), gy.max()))
    ax.set_title("posterior predictive (blue) vs data (black), same kernel")
    ax.legend(loc="best", fontsize="small")


def _ppc_points_2d(idata, features, num_draws: int, max_points: int, rng):
    """Return the data (m, 2) and pooled draws (p, 2), m, p <= max_points, and the draw count.

    Only the chosen draws are read; the pooled points are a random subset of their
    (draw, observation) pairs when there are more than `max_points`.
    """
    data = idata.observed_data["y"].transpose("obs_id", "feature").values[:, features]
    data = data[~np.isnan(data).any(axis=1)]  # rows with both coordinates observed
    pred = idata.posterior_predictive["y"].transpose("chain", "draw", "obs_id", "feature")
    chains, n_draws, n_obs, _ = pred.shape
    chosen = rng.choice(chains * n_draws, min(num_draws, chains * n_draws), replace=False)
    values = pred.values  # in memory: the indexing below copies only what is used
    if chosen.size * n_obs > max_points:
        pairs = rng.choice(chosen.size * n_obs, max_points, replace=False)
        draw, obs = chosen[pairs // n_obs], pairs % n_obs
        pooled = values[draw // n_draws, draw % n_draws, obs][:, features]
    else:
        pooled = values[chosen // n_draws, chosen % n_draws][..., features].reshape(-1, 2)
    if data.shape[0] > max_points:
        data = data[np.sort(rng.choice(data.shape[0], max_points, replace=False))]
    return data, pooled, chosen.size
