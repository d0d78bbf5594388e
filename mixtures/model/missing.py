r"""Missing cells (missing at random) in multivariate data: validation, patterns, imputations.

A row of :func:`mixtures.mv_mixture`'s data may have some cells missing (NaN). Under missing at
random the likelihood of a row is the mixture density of its **observed** cells: for a row with
observed features :math:`o` and missing :math:`m`,

.. math::

    p(x_{i,o} \mid \theta) = \sum_j w_j\, N(x_{i,o} \mid \mu_{j,o}, \Sigma_{j,oo}),

and, given its component :math:`j`, the missing cells are Normal given the observed ones:

.. math::

    x_{i,m} \mid x_{i,o}, z_i = j \sim N\big(\mu_{j,m} + \Sigma_{j,mo}\Sigma_{j,oo}^{-1}
    (x_{i,o} - \mu_{j,o}),\; \Sigma_{j,mm} - \Sigma_{j,mo}\Sigma_{j,oo}^{-1}\Sigma_{j,om}\big).

The PyMC model evaluates the first, grouped by missingness pattern (rows with the same observed
features share one vectorised sub-density); the Gibbs engine draws the missing cells from the
second each iteration and stores them as the posterior variable ``imputed`` (dim
``missing_cell``); :func:`imputations` summarises them.

The model keeps its data as ``y_data`` with the missing cells set to 0 (PyMC refuses NaN in
``pm.Data``) and the mask ``observed_cells`` (1: observed); the InferenceData's observed_data
shows the missing cells as NaN again.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from mixtures.model.validation import check_observations

__all__ = [
    "MISSING",
    "check_missing",
    "check_with_missing",
    "imputations",
    "missing_cells",
    "pattern_groups",
    "pattern_mixture_logp",
]

#: Values of ``mv_mixture(..., missing=...)``.
MISSING = ("model", "refuse")
_SHOWN = 10


def check_missing(missing) -> str:
    """Check the `missing` argument of :func:`mixtures.mv_mixture`."""
    if not isinstance(missing, str) or missing not in MISSING:
        raise ValueError(f"`missing` should be one of {list(MISSING)}, but got {missing!r}")
    return missing


def refuse_empty_rows(X: np.ndarray, name: str = "X") -> None:
    """Refuse rows with no observed cell (their row numbers in the message)."""
    empty = np.flatnonzero(np.isnan(X).all(axis=1))
    if empty.size:
        shown = ", ".join(str(i) for i in empty[:_SHOWN])
        more = f" and {empty.size - _SHOWN} more" if empty.size > _SHOWN else ""
        raise ValueError(
            f"`{name}` should have at least one observed value per row, but got "
            f"{empty.size} row(s) with every value missing (row {shown}{more}); drop them"
        )


def check_with_missing(X, name: str = "X") -> tuple[np.ndarray, np.ndarray]:
    """Check 2-D data whose NaN cells are missing; return it (NaN kept) and the observed mask.

    Every check of :func:`mixtures.model.validation.check_observations` applies to the observed
    cells; rows with no observed cell are refused.
    """
    arr = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    nan = np.isnan(arr) if arr.dtype.kind == "f" and arr.ndim == 2 else np.zeros(arr.shape, bool)
    if nan.any():
        refuse_empty_rows(arr, name)
    X = check_observations(np.where(nan, 0.0, arr), name, ndim=2)  # every other check
    X[nan] = np.nan
    return X, ~nan


def pattern_groups(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group rows by missingness pattern.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (n_obs, n_features)
        True where a cell is observed.

    Returns
    -------
    list of (rows, features)
        Per distinct pattern, its rows and its observed features (int arrays), complete rows
        first when there are any.
    """
    mask = np.asarray(mask, dtype=bool)
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(-patterns.sum(axis=1), kind="stable")
    return [(np.flatnonzero(inverse == p), np.flatnonzero(patterns[p])) for p in order]


def missing_cells(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and features of the missing cells, row by row (the order of ``missing_cell``)."""
    rows, cols = np.nonzero(~np.asarray(mask, dtype=bool))
    return rows, cols


def _first(param, ndim: int):
    """Drop the leading broadcast dims PyMC gives a CustomDist's parameters."""
    return param[(0,) * (param.ndim - ndim)] if param.ndim > ndim else param


def pattern_mixture_logp(value, weights, means, chol, *, groups, n_obs: int, k: int):
    """Per-row log-likelihood of a multivariate Normal mixture over each row's observed cells.

    Parameters
    ----------
    value : TensorVariable of shape (n_obs, d)
        The data (missing cells hold any finite value: they are never read).
    weights, means, chol : TensorVariable
        Shapes (k,), (k, d), (k, d, d) (leading broadcast dims are dropped).
    groups : list of (rows, features)
        From :func:`pattern_groups`.
    n_obs, k : int
        Observations and components.

    Returns
    -------
    TensorVariable of shape (n_obs,)
    """
    weights, means, chol = _first(weights, 1), _first(means, 2), _first(chol, 3)
    cov = pt.matmul(chol, pt.swapaxes(chol, -1, -2))
    d = max(cols.size for _, cols in groups)
    out = pt.zeros(n_obs)
    for rows, cols in groups:
        xs = value[rows][:, cols]
        comps = []
        for j in range(k):
            if cols.size == d:  # a complete row's pattern: the full density
                dist = pm.MvNormal.dist(mu=means[j], chol=chol[j])
            else:
                dist = pm.MvNormal.dist(mu=means[j][cols], cov=cov[j][cols][:, cols])
            comps.append(pt.log(weights[j]) + pm.logp(dist, xs))
        out = pt.set_subtensor(out[rows], pt.logsumexp(pt.stack(comps), axis=0))
    return out


def latent_pattern_logp(value, z, means, chol, *, groups, n_obs: int, d: int):
    """As :func:`pattern_mixture_logp` given the components `z` (the latent model)."""
    z, means, chol = _first(z, 1), _first(means, 2), _first(chol, 3)
    cov = pt.matmul(chol, pt.swapaxes(chol, -1, -2))
    out = pt.zeros(n_obs)
    for rows, cols in groups:
        zr = z[rows]
        xs = value[rows][:, cols]
        if cols.size == d:
            lp = pm.logp(pm.MvNormal.dist(mu=means[zr], chol=chol[zr]), xs)
        else:
            sub = cov[zr][:, cols][:, :, cols]
            lp = pm.logp(pm.MvNormal.dist(mu=means[zr][:, cols], cov=sub), xs)
        out = pt.set_subtensor(out[rows], lp)
    return out


def mixture_random(weights, means, chol, rng=None, size=None):
    """Draw complete rows from the mixture (the posterior predictive of every row)."""
    weights = np.asarray(weights)
    means, chol = np.asarray(means), np.asarray(chol)
    k, d = means.shape[-2], means.shape[-1]
    weights = weights.reshape(-1, k)[0]
    means = means.reshape(-1, k, d)[0]
    chol = chol.reshape(-1, k, d, d)[0]
    n = int(np.prod(size[:-1])) if size is not None and len(size) > 1 else 1
    z = rng.choice(k, size=n, p=weights / weights.sum())
    eps = rng.standard_normal((n, d))
    x = means[z] + np.einsum("nde,ne->nd", chol[z], eps)
    return x.reshape(tuple(size[:-1]) + (d,)) if size is not None else x[0]


def imputations(idata, *, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Summarise the posterior draws of the missing cells: one row per missing cell.

    Parameters
    ----------
    idata : arviz.InferenceData
        From the Gibbs engine on a :func:`mixtures.mv_mixture` model whose data had missing
        cells (posterior variable ``imputed``, dim ``missing_cell``).
    hdi_prob : float, default 0.94
        Probability mass of the highest-density interval (ArviZ's default).

    Returns
    -------
    pandas.DataFrame
        Columns ``row`` (the observation), ``column`` (the feature's name), ``mean``, ``sd``,
        ``hdi_<lo>%`` and ``hdi_<hi>%`` (e.g. ``hdi_3%``, ``hdi_97%``).

    Examples
    --------
    >>> import numpy as np, mixtures
    >>> X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
    >>> X[::10, 1] = np.nan
    >>> idata = mixtures.sample(mixtures.mv_mixture(X, 3), random_seed=1)  # doctest: +SKIP
    >>> mixtures.imputations(idata).head()  # doctest: +SKIP
    """
    if not 0 < hdi_prob < 1:
        raise ValueError(f"`hdi_prob` should be in (0, 1), but got {hdi_prob!r}")
    if "posterior" not in idata.groups() or "imputed" not in idata.posterior:
        raise ValueError(
            "`idata` should hold the draws of missing cells (posterior variable `imputed`, "
            "from the Gibbs engine on data with missing cells), but it does not"
        )
    draws = idata.posterior["imputed"]
    hdi = az.hdi(draws, hdi_prob=hdi_prob)["imputed"].values
    lo, hi = (1 - hdi_prob) / 2 * 100, (1 + hdi_prob) / 2 * 100
    return pd.DataFrame(
        {
            "row": draws["missing_row"].values.astype(int),
            "column": draws["missing_feature"].values,
            "mean": draws.mean(("chain", "draw")).values,
            "sd": draws.std(("chain", "draw"), ddof=1).values,
            f"hdi_{lo:g}%": hdi[:, 0],
            f"hdi_{hi:g}%": hdi[:, 1],
        }
    )
