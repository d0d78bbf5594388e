"""Convergence checks after sampling, and the up-front check for degenerate data."""

from __future__ import annotations

import inspect
import os
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from mixtures.analysis.summaries import DEFAULT_VARS, summary_posterior
from mixtures.model.spec import PROPER_AT_ZERO

__all__ = [
    "ConvergenceWarning",
    "check_degenerate",
    "convergence_table",
    "is_sparse",
    "label_free_table",
    "series_table",
    "sparse_quantities",
    "sparse_table",
    "user_stacklevel",
    "warn_convergence",
]

#: Thresholds of Vehtari et al. (2021), as used by PyMC and ArviZ: r_hat at most 1.01, bulk
#: and tail ESS at least 400.
RHAT_MAX = 1.01
ESS_MIN = 400
#: A weight prior is sparse (an overfitted mixture whose extra components empty out, Rousseau
#: and Mengersen 2011) when every Dirichlet concentration is at most this; Malsiner-Walli et
#: al. (2016) use 0.01 or less, as :func:`mixtures.choose_k`'s sparse fit does.
SPARSE_CONCENTRATION = 0.1
#: Share of the data above which a component counts as filled (as
#: :func:`mixtures.effective_components`).
FILLED_SHARE = 0.01
#: ``posterior.attrs["mixtures_convergence_check"]`` of a fit checked on label-free quantities.
LABEL_FREE_CHECK = "label-free: filled components, their sorted weights, complete_loglik"


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics fall short of the usual reliability thresholds."""


def check_degenerate(y: np.ndarray, spec) -> None:
    """Refuse data on which the posterior is improper: too few distinct values for the sds.

    With per-component sds, a component holding two or more tied values alone has a
    likelihood that grows without bound as its sd goes to 0, and under a prior with positive
    density at 0 the posterior is improper (samplers spin there). The case is detected up
    front when the data have fewer than 2 k distinct values (k or fewer for a shared sd), and
    the sd prior is not truncated away from 0 (``sigma_floor``; tied data with at least two
    distinct values get one by default) and does not vanish at 0 itself.

    Raises
    ------
    ValueError
        Naming the cause and what to do.
    """
    if spec is None or not spec.univariate or "sigma" not in spec.priors:
        return
    if spec.sigma_floor > 0:  # the sd prior is truncated: the posterior is proper
        return
    prior = spec.priors["sigma"]
    if prior.dist in PROPER_AT_ZERO or (
        prior.dist == "Uniform" and (prior.params["lower"] > 0).all()
    ):
        return
    distinct = np.unique(y).size
    k = spec.k
    limit = k if spec.shared_sd else 2 * k - 1
    if distinct <= limit:
        what = "a shared sd" if spec.shared_sd else "their own sds"
        raise ValueError(
            f"`y` should have more than {limit} distinct values for k = {k} components with "
            f"{what}, but got {distinct}: with tied values an sd can shrink to 0, where the "
            "likelihood grows without bound and the posterior is improper. Use fewer "
            "components, a sigma prior that vanishes at 0 (priors={'sigma': {'dist': "
            "'InverseGamma', 'alpha': 3, 'beta': 1}} or a Uniform with lower > 0), or known "
            "sds (sigma=...)"
        )


def convergence_table(idata: az.InferenceData) -> pd.DataFrame:
    """Return r_hat, bulk ESS and tail ESS of every scalar parameter, unrounded.

    The parameters are those of :func:`mixtures.summary_table` (``weights``, ``means``,
    ``sigma`` and, for multivariate models, the correlations). Quantities fixed by
    construction (the weight of a one-component model) are left out: they have no r_hat.

    Returns
    -------
    pandas.DataFrame
        Indexed by ArviZ's labels (``means[0]``), columns ``r_hat``, ``ess_bulk``,
        ``ess_tail``; r_hat is NaN for a single chain.
    """
    if "K_plus" in idata.posterior:  # a varying number of components: label-free checks
        return label_free_table(idata)
    if idata.posterior.attrs.get("mixtures_convergence_check") == LABEL_FREE_CHECK:
        return sparse_table(idata)
    posterior = summary_posterior(idata)
    names = [n for n in DEFAULT_VARS if n in posterior]
    if not names:
        return pd.DataFrame(columns=["r_hat", "ess_bulk", "ess_tail"], dtype=float)
    data = posterior[names]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant chains give NaN
        columns = {
            "r_hat": az.rhat(data) if data.sizes["chain"] > 1 else xr.full_like(data, np.nan),
            "ess_bulk": az.ess(data, method="bulk"),
            "ess_tail": az.ess(data, method="tail"),
        }
    rows = {}
    for name in names:
        var = data[name]
        spread = np.ptp(var.values.reshape(-1, *var.shape[2:]), axis=0).ravel()
        for i, label in enumerate(_labels(name, var)):
            if spread[i] == 0:
                continue
            rows[label] = [float(np.ravel(columns[c][name].values)[i]) for c in columns]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(columns))


def label_free_table(idata, *, pairs: int = 5, random_seed=0) -> pd.DataFrame:
    """Return r_hat and ESS of label-free quantities, for fits whose K varies (MFM).

    ``K``, ``K_plus``, the log-likelihood of each draw (``sample_stats["loglik"]``) and the
    co-clustering indicator 1(z_i = z_j) of `pairs` random pairs of observations (when the
    assignments are stored). Constant quantities are left out.
    """
    post = idata.posterior
    series = {name: post[name].values for name in ("K", "K_plus") if name in post}
    if "sample_stats" in idata.groups() and "loglik" in idata.sample_stats:
        series["loglik"] = idata.sample_stats["loglik"].transpose("chain", "draw").values
    if "assignment" in post and pairs > 0:
        z = post["assignment"].transpose("chain", "draw", "obs_id").values
        rng = np.random.default_rng(random_seed)
        for _ in range(pairs if z.shape[-1] > 1 else 0):
            i, j = rng.choice(z.shape[-1], 2, replace=False)
            series[f"cocluster[{i}, {j}]"] = (z[..., i] == z[..., j]).astype(float)
    return series_table(series)


def series_table(series: dict) -> pd.DataFrame:
    """Return r_hat, bulk and tail ESS of each array of shape (chain, draw); constants left out."""
    rows = {}
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, arr in series.items():
            arr = np.asarray(arr, dtype=float)
            if np.ptp(arr) == 0:
                continue
            r_hat = float(az.rhat(arr)) if arr.shape[0] > 1 else np.nan
            ess = [float(az.ess(arr, method=m)) for m in ("bulk", "tail")]
            rows[name] = [r_hat, *ess]
    return pd.DataFrame.from_dict(rows, orient="index", columns=["r_hat", "ess_bulk", "ess_tail"])


def is_sparse(spec) -> bool:
    """Whether `spec` has a sparse Dirichlet weight prior (:data:`SPARSE_CONCENTRATION`), k > 1."""
    if spec is None or spec.k < 2 or "weights" not in spec.priors:
        return False
    prior = spec.priors["weights"]
    return prior.dist == "Dirichlet" and bool(np.all(prior.params["a"] <= SPARSE_CONCENTRATION))


def sparse_quantities(weights: np.ndarray, loglik: np.ndarray) -> dict:
    """Return the label-free quantities that check a sparse (overfitted) fit.

    The number of filled components (weight > :data:`FILLED_SHARE`), the weights sorted in
    decreasing order, as many as the most frequent number of filled components (the empty
    components' weights and parameters follow their prior and say nothing about convergence),
    and the complete-data log-likelihood of each draw.

    Parameters
    ----------
    weights : ndarray of shape (chain, draw, k)
    loglik : ndarray of shape (chain, draw)

    Returns
    -------
    dict of str to ndarray of shape (chain, draw)
    """
    filled = (weights > FILLED_SHARE).sum(axis=-1)
    m = int(np.bincount(filled.ravel()).argmax())
    top = -np.sort(-weights, axis=-1)[..., :m]
    series = {"filled_components": filled.astype(float)}
    series.update({f"sorted_weights[{i}]": top[..., i] for i in range(m)})
    series["complete_loglik"] = np.asarray(loglik, dtype=float)
    return series


def sparse_table(idata: az.InferenceData) -> pd.DataFrame:
    """Return r_hat and ESS of a sparse fit's label-free quantities (:func:`sparse_quantities`)."""
    weights = idata.posterior["weights"].transpose("chain", "draw", ...).values
    loglik = idata.sample_stats["complete_loglik"].transpose("chain", "draw").values
    return series_table(sparse_quantities(weights, loglik))


def _labels(name: str, var: xr.DataArray) -> list[str]:
    """ArviZ's labels of a variable's scalars, in C order: ``name[c1, c2]``."""
    dims = [d for d in var.dims if d not in ("chain", "draw")]
    if not dims:
        return [name]
    grids = np.meshgrid(*[var[d].values for d in dims], indexing="ij")
    return [
        f"{name}[{', '.join(str(g) for g in combo)}]"
        for combo in zip(*(g.ravel() for g in grids), strict=True)
    ]


def warn_convergence(idata: az.InferenceData, **table_kwargs) -> list[str]:
    """Warn about r_hat > 1.01, bulk or tail ESS < 400, and divergences.

    The values are compared unrounded (ArviZ's summary table rounds to two decimals, so
    r_hat 1.0149 would pass as 1.01). The warning points at the caller's line outside
    `mixtures`. Fits with a varying number of components (MFM) are checked on label-free
    quantities (:func:`label_free_table`; `table_kwargs` go there).

    Parameters
    ----------
    idata : arviz.InferenceData
        A sampled posterior.

    Returns
    -------
    list of str
        The problems found (empty if none); each is also issued as a
        :class:`ConvergenceWarning`.
    """
    if table_kwargs:  # label-free checks with the caller's pairs (MFM)
        table = label_free_table(idata, **table_kwargs)
    else:
        table = convergence_table(idata)
    problems = []
    if idata.posterior.sizes["chain"] > 1:
        bad = table.index[~(table["r_hat"] <= RHAT_MAX)].tolist()
        if bad:
            worst = float(table["r_hat"].max())
            problems.append(f"r_hat > {RHAT_MAX} (up to {worst:.4f}) for {', '.join(bad)}")
    for kind in ("bulk", "tail"):
        column = table[f"ess_{kind}"]
        bad = table.index[~(column >= ESS_MIN)].tolist()
        if bad:
            problems.append(
                f"{kind} ESS < {ESS_MIN} (down to {float(column.min()):.0f}) for {', '.join(bad)}"
            )
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        n_div = int(idata.sample_stats["diverging"].sum())
        if n_div:
            problems.append(f"{n_div} divergent transition(s) after tuning")
    for problem in problems:
        warnings.warn(problem, ConvergenceWarning, stacklevel=user_stacklevel())
    return problems


def user_stacklevel() -> int:
    """Return the ``stacklevel`` that makes a warning point at the first frame outside mixtures.

    Counted from the caller of this function (as pandas' ``find_stack_level``), so every
    path (``mixtures.sample``, a handle, ``fit_many``'s serial backend) points at the user's
    line.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # mixtures/
    frame = inspect.currentframe()
    level = 0
    try:
        frame = frame.f_back  # the caller, which calls warnings.warn
        while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
            frame = frame.f_back
            level += 1
    finally:
        del frame
    return level + 1
