"""Plots of fitted mixtures: posterior predictive overlays and traces."""

from __future__ import annotations

import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

from mixtures.model.validation import check_integer

__all__ = ["PPC_MAX_POINTS", "plot_ppc", "plot_trace"]

_GRID_POINTS = 256
_KDE_BLOCK = 1_000_000  # grid points x data points per block of a KDE
#: ``plot_ppc``'s default cap on the points of one KDE (the data's and each draw's).
PPC_MAX_POINTS = 10_000


def _kde(values: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian KDE of `values` on `grid` with a fixed absolute `bandwidth`.

    The mean over the points of N(grid | value, bandwidth), in blocks of points: plain NumPy
    (scipy's ``gaussian_kde`` goes through a triangular solve per call, which is most of a
    fresh process's figure time).
    """
    out = np.zeros(grid.shape[0])
    step = max(1, _KDE_BLOCK // grid.shape[0])
    for start in range(0, values.shape[0], step):
        z = (grid[:, None] - values[None, start : start + step]) / bandwidth
        out += np.exp(-0.5 * z * z).sum(axis=1)
    return out / (values.shape[0] * bandwidth * np.sqrt(2.0 * np.pi))


def plot_ppc(
    idata,
    *,
    num_draws: int = 50,
    ax=None,
    figsize=None,
    random_seed=None,
    color: str = "C0",
    alpha: float = 0.15,
    bw_adjust: float = 0.5,
    data_kwargs: dict | None = None,
    max_points: int = PPC_MAX_POINTS,
    **kwargs,
):
    """Overlay the KDE of each posterior predictive draw (thin) on the KDE of the data (thick).

    Gaussian KDEs, all with one bandwidth taken from the data, ``bw_adjust`` times Scott's rule
    (:math:`n^{-1/5} s_y`), and evaluated on one grid that extends past the data: differences
    between the curves are then differences between data sets, not between bandwidths.

    The cost is bounded whatever the size of the data: at most `num_draws` curves, each the
    KDE of at most `max_points` points. With more observations than that, the data and every
    drawn data set are represented by the same seeded random subset of `max_points`
    observations, and Scott's rule uses :math:`n` = `max_points`: the curves then vary as data
    sets of that size would, and the data's curve as much as the draws'. Only the draws shown
    are read from the predictive, so
    ``mixtures.sample_posterior_predictive(model, idata, num_draws=num_draws)`` is enough.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``posterior_predictive`` (see :func:`mixtures.sample_posterior_predictive`) and
        ``observed_data`` groups holding ``y``.
    num_draws : int, default 50
        Number of predictive draws to show, picked at random across chains.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    figsize : tuple of float, optional
        Size of the new figure (ignored when `ax` is given).
    random_seed : int or numpy.random.Generator, optional
        Which draws are picked.
    color : str, default "C0"
        Colour of the predictive lines.
    alpha : float, default 0.15
        Opacity of the predictive lines.
    bw_adjust : float, default 0.5
        Multiplies Scott's bandwidth (as in seaborn); Scott's rule alone blurs well-separated
        modes together.
    data_kwargs : dict, optional
        Line properties of the data's KDE (default: black, linewidth 2).
    max_points : int, default 10,000
        The most observations a KDE uses (see above); :data:`PPC_MAX_POINTS`.
    **kwargs
        Line properties of the predictive KDEs.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check_ppc(idata, num_draws, max_points, bw_adjust)
    rng = np.random.default_rng(random_seed)
    draws, data = _picked_draws(idata, num_draws, max_points, rng)
    ax = plt.subplots(figsize=figsize)[1] if ax is None else ax
    line_kwargs = {"color": color, "alpha": alpha, "linewidth": 1, **kwargs}
    data_line = {"color": "k", "linewidth": 2, "label": "data", **(data_kwargs or {})}
    _draw_ppc(ax, draws, data, bw_adjust, line_kwargs, data_line)
    return ax


def _check_ppc(idata, num_draws, max_points, bw_adjust) -> None:
    """Refuse a fit without a predictive, and bad counts or bandwidth factors."""
    if "posterior_predictive" not in idata.groups() or "y" not in idata.posterior_predictive:
        raise ValueError(
            "`idata` should have a posterior_predictive group with `y` "
            "(run mixtures.sample_posterior_predictive first), but got groups "
            f"{idata.groups()}"
        )
    for name, value in (("num_draws", num_draws), ("max_points", max_points)):
        check_integer(value, name)
    if not bw_adjust > 0:
        raise ValueError(f"`bw_adjust` should be > 0, but got {bw_adjust}")


def _draw_ppc(ax, draws, data, bw_adjust, line_kwargs, data_line) -> None:
    """Draw the KDE of every predictive draw and of the data, one bandwidth, one grid."""
    bandwidth = bw_adjust * data.shape[0] ** -0.2 * data.std(ddof=1)
    lo = min(data.min(), draws.min()) - 3 * bandwidth
    hi = max(data.max(), draws.max()) + 3 * bandwidth
    grid = np.linspace(lo, hi, _GRID_POINTS)
    for i, draw in enumerate(draws):
        label = "posterior predictive" if i == 0 else None
        ax.plot(grid, _kde(draw, grid, bandwidth), label=label, **line_kwargs)
    ax.plot(grid, _kde(data, grid, bandwidth), **data_line)
    ax.set_xlabel("y", style="italic")  # not "$y$": mathtext's parser costs ~0.5 s to build
    ax.set_ylabel("density")
    ax.legend(loc="best")


def _picked_draws(idata, num_draws: int, max_points: int, rng):
    """Return (num_draws, m) predictive values and the (m,) data values: m <= max_points."""
    pred = idata.posterior_predictive["y"].transpose("chain", "draw", "obs_id")
    chains, n_draws, n_obs = pred.shape
    picks = rng.choice(chains * n_draws, size=min(num_draws, chains * n_draws), replace=False)
    values = pred.values  # in memory: indexing below copies only the picked draws
    draws = values[picks // n_draws, picks % n_draws]
    data = np.asarray(idata.observed_data["y"].values, dtype=float)
    if n_obs > max_points:
        cols = np.sort(rng.choice(n_obs, size=max_points, replace=False))
        draws, data = draws[:, cols], data[cols]
    return draws, data


def plot_trace(idata, *, var_names=None, figsize=None, **kwargs):
    """Trace and marginal posterior of the mixture parameters (ArviZ's ``plot_trace``).

    Parameters
    ----------
    idata : arviz.InferenceData
        A sampled posterior.
    var_names : list of str, optional
        Default: those of ``weights``, ``means``, ``sigma`` in the posterior.
    figsize : tuple of float, optional
        Figure size.
    **kwargs
        Passed to :func:`arviz.plot_trace` (``compact``, ``axes``, ...).

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
        Shape (n_vars, 2).

    Notes
    -----
    In the compact layout (the default) colour is the component and line style the chain;
    each row's legend says which is which. Multivariate parameters get one row per feature
    (``means (waiting)``), each on its own scale.
    """
    if var_names is None:
        var_names = [v for v in ("weights", "means", "sigma") if v in idata.posterior]
    kwargs.setdefault("compact", True)
    posterior = idata.posterior
    if kwargs["compact"]:
        posterior, var_names = per_feature(posterior, var_names)
    with warnings.catch_warnings():
        # ArviZ 0.23 calls a matplotlib API that 3.11 deprecates; harmless, and not ours.
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        axes = az.plot_trace(posterior, var_names=var_names, figsize=figsize, **kwargs)
    if kwargs["compact"] and np.ndim(axes) == 2:
        _component_legends(posterior, var_names, axes)
    fig = np.ravel(axes)[0].figure
    fig.set_layout_engine("constrained")  # no overlapping titles
    return axes


def per_feature(posterior, var_names: list[str]):
    """Split each variable with a ``feature`` dim into one variable per feature.

    In ArviZ's compact trace plot every variable is one row with one x-axis; a multivariate
    ``means`` would put every feature on one scale (one feature's density a spike) and
    colour only by component. Split, each feature gets its row, named ``means (waiting)``.

    Returns
    -------
    (xarray.Dataset, list of str)
        The posterior with the split variables, and the new variable names in order.
    """
    out, names = {}, []
    for name in var_names:
        var = posterior[name]
        if "feature" not in var.dims:
            out[name] = var
            names.append(name)
            continue
        for feature in var["feature"].values:
            label = f"{name} ({feature})"
            out[label] = var.sel(feature=feature, drop=True)
            names.append(label)
    return posterior[[]].assign(out), names


def _component_legends(posterior, var_names, axes) -> None:
    from matplotlib.lines import Line2D

    chains = posterior.sizes["chain"]
    styles = ["-", ":", "--", "-."]
    for row, name in zip(axes, var_names, strict=True):
        da = posterior[name]
        handles = []
        if "component" in da.dims:
            for j, comp in enumerate(da["component"].values):
                handles.append(Line2D([], [], color=f"C{j % 10}", label=f"component {comp}"))
        if chains > 1:
            for c in range(min(chains, len(styles))):
                handles.append(Line2D([], [], color="0.3", ls=styles[c], label=f"chain {c}"))
        if handles:
            row[0].legend(handles=handles, fontsize="x-small", ncols=2, loc="best")
