r"""Mixtures of finite mixtures (MFM): a prior on the number of components, sampled in one run.

A mixture of finite mixtures (Miller and Harrison 2018; Frühwirth-Schnatter, Malsiner-Walli
and Grün 2021) puts a prior on the number of components :math:`K` and answers "how many
components?" in one posterior:

.. math::

    K \sim p(K), \quad w \mid K \sim \text{Dirichlet}_K(\gamma_K, \dots, \gamma_K), \quad
    \theta_k \overset{iid}{\sim} p(\theta), \quad
    y_i \mid K, w, \theta \sim \sum_{k=1}^{K} w_k\, N(y_i \mid \theta_k)

with :math:`\gamma_K = \gamma` (static MFM) or :math:`\gamma_K = \gamma / K` (dynamic MFM).
:math:`K_+`, the number of components that hold data, is reported beside :math:`K`.

:func:`mfm_mixture` builds the model (a plain :class:`pymc.Model` of the MFM truncated at
``k_max``, with the spec :class:`MFMSpec`); :func:`mixtures.sample` samples it with the
telescoping sampler (:mod:`mixtures.engines.mfm`). The helpers here read the result:
:func:`k_posterior` (the p(K | y) and p(K+ | y) table), :func:`plot_k_posterior`,
:func:`filled_components` (the filled components' parameters on common labels) and
:func:`mfm_diagnostics` (r_hat and ESS of the label-free quantities).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm

from mixtures._docs import fill_doc
from mixtures.model.mfm_spec import K_PRIORS, MFMSpec, k_prior_pmf, mfm_spec, mfm_weights
from mixtures.model.spec import PROPER_AT_ZERO, Prior, attach, resolve_priors
from mixtures.model.univariate import check_sigma_floor, default_priors
from mixtures.model.validation import check_observations

__all__ = [
    "K_PRIORS",
    "MFMSpec",
    "filled_components",
    "k_posterior",
    "k_prior_pmf",
    "mfm_choice",
    "mfm_diagnostics",
    "mfm_mixture",
    "plot_k_posterior",
]


@fill_doc
def mfm_mixture(
    y,
    k_prior="bnb",
    *,
    gamma: float = 1.0,
    dynamic: bool = False,
    k_max: int | None = None,
    priors=None,
    sigma_floor="auto",
) -> pm.Model:
    r"""Build a mixture of finite mixtures: a prior on the number of components K.

    .. math::

        K \sim p(K), \quad w \mid K \sim \text{Dirichlet}_K(\gamma_K), \quad
        \mu_k \sim N(m, s^2), \quad \sigma_k \sim p(\sigma), \quad
        y_i \sim \sum_{k \le K} w_k N(\mu_k, \sigma_k^2)

    with :math:`\gamma_K = \gamma` (static) or :math:`\gamma / K` (``dynamic=True``). The
    component priors are exactly :func:`mixtures.full_mixture`'s data-scaled defaults (sd
    floor included) and take the same ``priors=`` overrides (scalars: the components are
    exchangeable, so there is no ordering). 2-D `y` gives the multivariate model with
    :func:`mixtures.mv_mixture`'s inverse-Wishart defaults (see :mod:`mixtures.model.mfm_mv`).
    Sample it with :func:`mixtures.sample` (the telescoping sampler); the posterior holds
    ``K`` and ``K_plus`` (the components holding data) per draw.

    Parameters
    ----------
    y : array-like of shape (n_obs,) or (n_obs, n_features)
        Observations; must be finite.
    %(mfm_k)s
    priors : dict, optional
        Overrides of the component priors, keys ``means`` and ``sigma`` (univariate), as in
        :func:`mixtures.full_mixture`.
    sigma_floor : "auto" or float, default "auto"
        As in :func:`mixtures.full_mixture`.

    Returns
    -------
    pymc.Model
        The MFM truncated at k_max: ``K`` (via ``k_minus_one``), per-slot Gamma draws that
        normalise to ``weights`` over the first K slots (zero beyond), ``means``, ``sigma``
        for all k_max slots (those beyond K follow their prior), and the observed ``y``.

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("galaxies")["velocity"] / 1000
    >>> model = mixtures.mfm_mixture(y, k_prior=[0.2] * 5)
    >>> mixtures.spec_of(model).k
    5
    """
    if np.ndim(y) == 2:
        from mixtures.model.mfm_mv import mfm_mv_mixture

        X = check_observations(y, ndim=2)
        return mfm_mv_mixture(X, k_prior, gamma=gamma, dynamic=dynamic, k_max=k_max, priors=priors)
    y = check_observations(y)
    spec = _normal_spec(y, priors, sigma_floor, k_prior, k_max, gamma, dynamic)
    return build_mfm_model(y, spec)


def _normal_spec(y, priors, sigma_floor, k_prior, k_max, gamma, dynamic) -> MFMSpec:
    """Return the univariate MFM's spec (Normal components, full_mixture's priors)."""
    resolved = _component_priors(y, priors)
    return mfm_spec(
        "mfm_normal", resolved, k_prior, k_max, gamma, dynamic,
        built_on={"n_obs": int(y.shape[0]), "mean": float(np.mean(y)), "sd": float(np.std(y))},
        sigma_floor=_sd_floor(sigma_floor, y, resolved["sigma"]),
    )  # fmt: skip


def _sd_floor(sigma_floor, y: np.ndarray, prior: Prior) -> float:
    """Return the sd floor by full_mixture's rule; refuse all-tied data without one."""
    floor = check_sigma_floor(sigma_floor, y, prior)
    if np.unique(y).size < 2 and floor == 0 and prior.dist not in PROPER_AT_ZERO:
        raise ValueError(
            "`y` should have at least 2 distinct values (a component holding tied values "
            f"alone has an unbounded likelihood), but got all equal to {y[0]!r}: give a "
            "sigma_floor > 0 or an InverseGamma / LogNormal sigma prior"
        )
    return floor


def _component_priors(y: np.ndarray, priors) -> dict[str, Prior]:
    """One component's priors: :func:`mixtures.full_mixture`'s defaults, user's merged over."""
    defaults = default_priors(y, 1)
    defaults = {
        name: Prior(defaults[name].dist, {k: v[0] for k, v in defaults[name].params.items()})
        for name in ("means", "sigma")
    }
    return resolve_priors(priors, defaults, {"means": (), "sigma": ()})


def build_mfm_model(y: np.ndarray, spec: MFMSpec) -> pm.Model:
    """Build the univariate MFM's :class:`pymc.Model` (truncated at ``spec.k``) from `spec`."""
    k_max = spec.k
    coords = {"component": np.arange(k_max), "obs_id": np.arange(y.shape[0])}
    with pm.Model(coords=coords) as model:
        y_data = pm.Data("y_data", y, dims="obs_id")
        weights = mfm_weights(spec)
        mp = spec.priors["means"]
        means = pm.Normal("means", **dict(mp.params), dims="component")
        sp = spec.priors["sigma"]
        if spec.sigma_floor > 0:
            base = getattr(pm, sp.dist).dist(**dict(sp.params), shape=(k_max,))
            sigma = pm.Truncated("sigma", base, lower=spec.sigma_floor, dims="component")
        else:
            sigma = getattr(pm, sp.dist)("sigma", **dict(sp.params), dims="component")
        pm.NormalMixture("y", w=weights, mu=means, sigma=sigma, observed=y_data, dims="obs_id")
    return attach(model, spec)


# --------------------------------------------------------------------------- results


def _is_mfm(idata) -> None:
    if "K" not in idata.posterior or "K_plus" not in idata.posterior:
        raise ValueError(
            "`idata` should be a fit of mfm_mixture (posterior `K` and `K_plus`), but got "
            f"posterior variables {list(idata.posterior.data_vars)}"
        )


def _k_prior_of(idata) -> np.ndarray:
    import json

    spec = json.loads(idata.posterior.attrs["mixtures_spec"])
    return np.asarray(spec["k_prior"], dtype=float)


def _share_and_se(values: np.ndarray, k: int) -> tuple[float, float]:
    """Posterior share of draws with value `k` and its Monte Carlo se (ArviZ's mcse)."""
    ind = (values == k).astype(float)
    share = float(ind.mean())
    if share in (0.0, 1.0):
        return share, 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        se = float(np.ravel(az.mcse(ind, method="mean"))[0])
    return share, se


def k_posterior(idata) -> pd.DataFrame:
    """Tabulate p(K | y) and p(K+ | y) with their Monte Carlo standard errors, and p(K).

    The se of each share is ArviZ's MCSE of the mean of the indicator (K = k), which accounts
    for the autocorrelation within chains (and, through the rank-normalised ESS, the spread
    between chains).

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit of :func:`mfm_mixture`.

    Returns
    -------
    pandas.DataFrame
        Indexed by k = 1..k_max; columns ``prior``, ``p_K``, ``se_K``, ``p_K_plus``,
        ``se_K_plus``.
    """
    _is_mfm(idata)
    prior = _k_prior_of(idata)
    post = idata.posterior
    kk = post["K"].transpose("chain", "draw").values
    kp = post["K_plus"].transpose("chain", "draw").values
    rows = {}
    for k in range(1, prior.size + 1):
        rows[k] = [prior[k - 1], *_share_and_se(kk, k), *_share_and_se(kp, k)]
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["prior", "p_K", "se_K", "p_K_plus", "se_K_plus"]
    )
    table.index.name = "k"
    return table


def plot_k_posterior(idata, *, ax=None, figsize=None, max_k: int | None = None, **kwargs):
    """Bars of p(K | y) and p(K+ | y) side by side, with the prior p(K) as points.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit of :func:`mfm_mixture`.
    ax : matplotlib.axes.Axes, optional
    figsize : tuple, optional
    max_k : int, optional
        Largest k shown; default the largest with posterior or prior mass above 0.001.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.bar`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    table = k_posterior(idata)
    if max_k is None:
        mass = table[["prior", "p_K", "p_K_plus"]].max(axis=1)
        max_k = int(mass.index[mass > 1e-3].max())
    table = table.loc[:max_k]
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    x = table.index.to_numpy()
    ax.bar(x - 0.2, table["p_K"], width=0.4, label="p(K | y)", **kwargs)
    ax.bar(x + 0.2, table["p_K_plus"], width=0.4, label="p(K+ | y)", **kwargs)
    ax.plot(x, table["prior"], "k.", label="p(K)")
    ax.set_xticks(x)
    ax.set_xlabel("number of components")
    ax.set_ylabel("probability")
    ax.legend()
    return ax


def _flat(da) -> np.ndarray:
    return da.transpose("chain", "draw", ...).values.reshape(-1, *da.shape[2:])


def filled_components(idata, k_plus: int | None = None, *, method: str = "stephens"):
    """Return the filled components' parameters on common labels, in the draws with K+ = `k_plus`.

    The draws whose number of filled components is `k_plus` (default: the most probable
    K+) are pooled into one chain; their first `k_plus` components (the filled ones: the
    sampler puts them first) are kept and relabelled with :func:`mixtures.relabel`. The
    weights are those of the MFM (the empty components hold the rest of the mass).

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit of :func:`mfm_mixture`.
    k_plus : int, optional
        Default: the most probable K+.
    method : {"stephens", "ecr"}
        Passed to :func:`mixtures.relabel`.

    Returns
    -------
    arviz.InferenceData
        One chain of the selected draws, ``component`` of length `k_plus`.
    """
    from mixtures.analysis.labels import relabel

    _is_mfm(idata)
    post = idata.posterior
    kp = _flat(post["K_plus"])
    if k_plus is None:
        values, counts = np.unique(kp, return_counts=True)
        k_plus = int(values[np.argmax(counts)])
    sel = np.flatnonzero(kp == k_plus)
    if sel.size == 0:
        raise ValueError(f"`k_plus` should be a value K+ takes in the draws, but got {k_plus}")
    data = {}
    for name, da in post.data_vars.items():
        if "component" not in da.dims:
            continue
        arr = _flat(da.transpose("chain", "draw", "component", ...))[sel, :k_plus]
        data[name] = arr[None]
    dims = {n: list(post[n].transpose("chain", "draw", "component", ...).dims[2:]) for n in data}
    coords = {d: post[d].values for n in dims for d in dims[n] if d != "component"}
    coords["component"] = np.arange(k_plus)
    if "assignment" in post:
        data["assignment"] = _flat(post["assignment"])[sel][None]
        dims["assignment"] = ["obs_id"]
        coords["obs_id"] = post["obs_id"].values
    sub = az.from_dict(posterior=data, coords=coords, dims=dims)
    sub.posterior.attrs.update({k: v for k, v in post.attrs.items()})
    sub.add_groups(observed_data=idata.observed_data)
    if "constant_data" in idata.groups():
        sub.add_groups(constant_data=idata.constant_data)
    return relabel(sub, method=method) if k_plus > 1 else sub


def mfm_diagnostics(idata, *, pairs: int = 5, warn: bool = True, random_seed=0) -> pd.DataFrame:
    """r_hat and ESS of the quantities whose meaning does not depend on labels or on K.

    ``K``, ``K_plus``, the log-likelihood of each draw (``sample_stats["loglik"]``) and the
    co-clustering indicator 1(z_i = z_j) of `pairs` pairs of observations (drawn at random,
    when the assignments are stored). Component parameters are not checked: their number and
    labels change from draw to draw. :func:`mixtures.sample` runs this check on every MFM
    fit (:func:`mixtures.analysis.diagnostics.convergence_table`).

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit of :func:`mfm_mixture`.
    pairs : int, default 5
        Number of pairs of observations whose co-clustering is checked.
    warn : bool, default True
        Issue a :class:`~mixtures.ConvergenceWarning` naming the quantities with r_hat > 1.01
        or bulk / tail ESS < 400.
    random_seed : int, default 0
        Chooses the pairs.

    Returns
    -------
    pandas.DataFrame
        Indexed by quantity; columns ``r_hat``, ``ess_bulk``, ``ess_tail``.
    """
    from mixtures.analysis.diagnostics import label_free_table, warn_convergence

    _is_mfm(idata)
    if warn:
        warn_convergence(idata, pairs=pairs, random_seed=random_seed)
    return label_free_table(idata, pairs=pairs, random_seed=random_seed)


def mfm_choice(y, ks=None, *, k_prior="bnb", random_seed=None, **sample_kwargs):
    """p(K | y) and p(K+ | y) for :func:`mixtures.choose_k`'s ``method="mfm"`` column.

    Fits :func:`mfm_mixture` once (default priors) and returns :func:`k_posterior`'s table,
    restricted to `ks` if given.

    Parameters
    ----------
    y : array-like of shape (n_obs,) or (n_obs, n_features)
    ks : iterable of int, optional
        The k of the other criteria (rows kept); default all of 1..k_max.
    k_prior : see :func:`mfm_mixture`
    random_seed : int, optional
    **sample_kwargs
        Passed to :func:`mixtures.sample` (``draws``, ``tune``, ``chains``, ...).

    Returns
    -------
    (pandas.DataFrame, arviz.InferenceData)
        :func:`k_posterior`'s table (rows `ks`) and the fit.
    """
    from mixtures.engines.sampling import sample

    idata = sample(mfm_mixture(y, k_prior), random_seed=random_seed, **sample_kwargs)
    table = k_posterior(idata)
    if ks is not None:
        table = table.reindex(list(ks))
    return table, idata
