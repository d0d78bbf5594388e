r"""Multivariate Gaussian mixtures: :func:`mv_mixture` and what it needs.

The model, for observations :math:`x_i \in \mathbb R^D`:

.. math::

    w \sim \text{Dirichlet}(a) \;\text{or}\; \text{StickBreaking}(\alpha), \quad
    \mu_j \sim N(m, \text{diag}(s^2)), \quad \Sigma_j = L_j L_j^\top, \quad
    z_i \sim \text{Categorical}(w), \quad x_i \mid z_i \sim N(\mu_{z_i}, \Sigma_{z_i})

with, per `covariance`: an inverse-Wishart prior on each :math:`\Sigma_j` (``"full"``, the
default ``covariance_prior="wishart"``, which our Gibbs engine samples exactly) or an LKJ
Cholesky prior on each :math:`L_j` (``"full"`` with ``covariance_prior="lkj"``); one shared
LKJ :math:`L` (``"tied"``); or diagonal :math:`L_j` with HalfNormal sds (``"diag"``).

Names and dims, shared by the latent and marginalised variants:

========== =========================================================================
name       meaning
========== =========================================================================
weights    mixture weights, dims ``component``
means      component means, dims (``component``, ``feature``)
chol_cov   Cholesky factors of the covariances, dims (``component``, ``feature``,
           ``feature_bis``)
sigma      component sds per feature (the diagonal of the covariances), dims
           (``component``, ``feature``)
assignment latent component of each observation (latent variant only), dims ``obs_id``
y          the observations, dims (``obs_id``, ``feature``)
========== =========================================================================
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pymc.logprob.transforms import Transform

from mixtures._docs import fill_doc
from mixtures.analysis.loglik import mv_pointwise_loglik  # re-exported: it lives there
from mixtures.model.dask_data import from_dask, is_dask_data
from mixtures.model.missing import (
    check_missing,
    check_with_missing,
    latent_pattern_logp,
    mixture_random,
    pattern_groups,
    pattern_mixture_logp,
)
from mixtures.model.spec import MV_PRIOR_FAMILIES, MixtureSpec, Prior, attach, resolve_priors
from mixtures.model.univariate import NU_PRIOR, check_family, increasing_start, label_weights
from mixtures.model.validation import check_k, check_labels, check_observations

__all__ = [
    "COVARIANCES",
    "COVARIANCE_PRIORS",
    "DEFAULT_COVARIANCE_PRIOR",
    "OrderedColumn",
    "default_mv_priors",
    "effective_components",
    "mv_mixture",
    "mv_pointwise_loglik",
    "resolve_mv_priors",
    "wishart_chol",
]

COVARIANCES = ("full", "diag", "tied")
COVARIANCE_PRIORS = ("auto", "wishart", "lkj")
#: What ``covariance_prior="auto"`` resolves to, per `covariance`: the conjugate
#: inverse-Wishart where it exists (our Gibbs engine samples it exactly, in seconds), and the
#: LKJ / HalfNormal priors, sampled with NUTS, where it does not.
DEFAULT_COVARIANCE_PRIOR = {"full": "wishart", "diag": "lkj", "tied": "lkj"}


class OrderedColumn(Transform):
    """Order the rows of a (k, d) matrix by one column: identification across components.

    Column `column` becomes first value plus cumulative positive gaps (PyMC's ordered transform
    applied down that column); the other columns are left as they are. PyMC's own ordered
    transform works on the last axis, i.e. it would order the coordinates *within* each mean.
    As in :class:`~mixtures.OrderedGaps`, a non-increasing column (a prior whose means are all
    equal) maps to the fallback `start`, so no initval is needed.

    Parameters
    ----------
    column : int
        The column ordered across rows.
    start : array-like of shape (k,)
        Strictly increasing fallback start for that column.
    """

    name = "ordered_column"

    def __init__(self, column: int, start):
        self.column = int(column)
        self._start = pytensor.shared(np.asarray(start, dtype=float), name="ordered_column_start")

    @property
    def start(self) -> np.ndarray:
        """The fallback start of the ordered column."""
        return self._start.get_value()

    def set_start_from(self, x: np.ndarray) -> None:
        """Reset the fallback start to the quantiles of column `column` of new data `x`."""
        self._start.set_value(increasing_start(x[:, self.column], self.start.shape[0]))

    def backward(self, value, *inputs):
        """Unconstrained (first, log gaps) in the column to increasing values."""
        col = value[..., :, self.column]
        steps = pt.concatenate([col[..., :1], pt.exp(col[..., 1:])], axis=-1)
        return pt.set_subtensor(value[..., :, self.column], pt.cumsum(steps, axis=-1))

    def forward(self, value, *inputs):
        """Increasing column to (first, log gaps); a non-increasing one to `start`'s."""
        value = pt.as_tensor(value)
        col = value[..., :, self.column]
        increasing = pt.all(pt.gt(pt.diff(col, axis=-1), 0))
        col = pt.switch(increasing, col, pt.broadcast_to(self._start, col.shape))
        free = pt.concatenate([col[..., :1], pt.log(pt.diff(col, axis=-1))], axis=-1)
        return pt.set_subtensor(value[..., :, self.column], free)

    def log_jac_det(self, value, *inputs):
        """Elementwise log-Jacobian: the log gaps of the ordered column, zero elsewhere."""
        jac = pt.zeros_like(value)
        return pt.set_subtensor(jac[..., 1:, self.column], value[..., 1:, self.column])


def default_mv_priors(X: np.ndarray) -> dict[str, dict]:
    r"""Return the default priors of :func:`mv_mixture`, scaled to the data `X`.

    With :math:`\bar x_d` and :math:`s_d` the mean and sd of feature d (of its observed
    cells, when some are missing):
    weights ~ Dirichlet(1); means[:, d] ~ N(:math:`\bar x_d`, :math:`(2 s_d)^2`);
    sds[:, d] ~ HalfNormal(:math:`s_d`); correlations ~ LKJ(eta=2).

    With ``covariance_prior="wishart"``: covariances ~ InverseWishart(nu = d + 2, psi =
    diag(:math:`s_d^2`) / 4), whose mean is psi / (nu - d - 1) = diag(:math:`s_d^2`) / 4.

    With ``family="t"`` and a sampled nu: nu ~ Gamma(2, 0.1) per component (the univariate t's
    default, :data:`~mixtures.model.univariate.NU_PRIOR`).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features)

    Returns
    -------
    dict
        Keys ``weights``, ``means``, ``sigma``, ``corr``, ``wishart``, ``nu``.
    """
    scale = np.nanstd(X, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    d = X.shape[1]
    return {
        "weights": {"dist": "Dirichlet", "a": 1.0},
        "means": {"mu": np.nanmean(X, axis=0), "sigma": 2.0 * scale},
        "sigma": {"sigma": scale},
        "corr": {"eta": 2.0},
        # covariance_prior="wishart": Sigma_j ~ InverseWishart(nu, psi), E[Sigma_j] = psi / 4
        "wishart": {"nu": d + 2.0, "psi": np.diag(scale**2) / 4.0},
        "nu": dict(NU_PRIOR.params),  # family="t" with nu sampled
    }


#: The PyMC family of each default prior of :func:`default_mv_priors`.
_DEFAULT_DISTS = {
    "weights": "Dirichlet",
    "means": "Normal",
    "sigma": "HalfNormal",
    "corr": "LKJ",
    "wishart": "InverseWishart",
    "nu": NU_PRIOR.dist,
}


def _prior_shapes(k: int | None, d: int) -> dict:
    """Return the shapes the priors broadcast to (`k` None: one component)."""
    lead = () if k is None else (k,)
    return {
        "weights": {"a": lead, "alpha": ()},
        "means": lead + (d,),
        "sigma": (d,),
        "corr": (),
        "wishart": {"nu": (), "psi": (d, d)},
        "nu": lead,
    }


def resolve_mv_priors(X: np.ndarray, priors, keys, k: int | None = None) -> dict[str, Prior]:
    """Resolve the priors `keys` of a multivariate model: defaults scaled to `X`, user's over.

    The defaults are :func:`default_mv_priors`; the user's `priors` are merged and checked by
    :func:`mixtures.model.spec.resolve_priors` with the families of
    :data:`~mixtures.model.spec.MV_PRIOR_FAMILIES`.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features)
    priors : dict or None
        The user's overrides.
    keys : sequence of str
        The free parameters of the model (e.g. ``["weights", "means", "wishart"]``).
    k : int, optional
        Number of components; None for the priors of one component (the MFM's).

    Returns
    -------
    dict of str to Prior
    """
    raw = default_mv_priors(X)
    shapes = _prior_shapes(k, X.shape[1])
    defaults = {}
    for name in keys:
        params = {key: v for key, v in raw[name].items() if key != "dist"}
        shape = shapes[name]
        defaults[name] = Prior(
            _DEFAULT_DISTS[name],
            {
                key: np.broadcast_to(v, shape[key] if isinstance(shape, dict) else shape)
                for key, v in params.items()
            },
        )
    return resolve_priors(priors, defaults, {n: shapes[n] for n in keys}, MV_PRIOR_FAMILIES)


def _prior_keys(priors, covariance_prior: str, nu_sampled: bool = False) -> list[str]:
    """Return the prior keys of `covariance_prior` (and ``nu`` if sampled); refuse others."""
    keys = ["weights", "means"] + (
        ["wishart"] if covariance_prior == "wishart" else ["sigma", "corr"]
    )
    keys += ["nu"] if nu_sampled else []
    unknown = sorted(set(priors) - set(keys)) if isinstance(priors, Mapping) else []
    if unknown:
        other = "lkj" if covariance_prior == "wishart" else "wishart"
        hint = ""
        if set(unknown) <= ({"sigma", "corr"} if other == "lkj" else {"wishart"}):
            hint = f" (they belong to covariance_prior={other!r})"
        raise ValueError(
            f"`priors` keys should be among {keys} with covariance_prior="
            f"{covariance_prior!r}, but got unknown key(s) {unknown}{hint}"
        )
    return keys


def _mv_spec(X, k, priors, covariance, marginalized, ordered_by, known=None) -> MixtureSpec:
    """Return the multivariate spec: every prior as numbers, fixed at build time.

    `known`: ``{"nu": (k,)}`` for t components with fixed degrees of freedom, ``{}`` for
    sampled ones, None for Normal components.
    """
    return MixtureSpec(
        family="mvnormal" if known is None else "mvt",
        known=known or {},
        k=k,
        marginalized=bool(marginalized),
        ordered=ordered_by is not None,
        shared_sd=covariance == "tied",
        priors=priors,
        n_features=X.shape[1],
        covariance=covariance,
        ordered_by=ordered_by,
        built_on={
            "n_obs": int(X.shape[0]),
            "mean": np.nanmean(X, axis=0).tolist(),
            "sd": np.nanstd(X, axis=0).tolist(),
            "n_missing": int(np.isnan(X).sum()),
            "n_incomplete_rows": int(np.isnan(X).any(axis=1).sum()),
        },
    )


def wishart_chol(prior: Prior, k: int, d: int):
    """Cholesky factors of covariances with an inverse-Wishart prior, by Bartlett's method.

    The precision Lambda_j = L A_j A_j^T L^T, with L L^T = psi^-1, is Wishart(nu, psi^-1)
    when the diagonal of the lower-triangular A_j holds square roots of chi^2(nu - i) and its
    lower part standard Normals; so Sigma_j = Lambda_j^-1 is inverse-Wishart(nu, psi). Free
    variables: ``wishart_c`` (k, d) and ``wishart_z`` (k, d (d - 1) / 2); the factors are the
    model's ``chol_cov``, dims (``component``, ``feature``, ``feature_bis``).

    Parameters
    ----------
    prior : Prior
        The resolved ``InverseWishart`` prior (``nu``, ``psi``).
    k, d : int
        Components and features.

    Returns
    -------
    pytensor.tensor.TensorVariable of shape (k, d, d)
    """
    nu = float(prior.params["nu"])
    low = np.linalg.cholesky(np.linalg.inv(prior.params["psi"]))
    c = pm.ChiSquared(
        "wishart_c", nu=np.broadcast_to(nu - np.arange(d), (k, d)), dims=("component", "feature")
    )
    a = pt.zeros((k, d, d))
    diag = np.arange(d)
    a = pt.set_subtensor(a[:, diag, diag], pt.sqrt(c))
    if d > 1:
        rows, cols = np.tril_indices(d, -1)
        zs = pm.Normal("wishart_z", 0.0, 1.0, dims=("component", "tril"))
        a = pt.set_subtensor(a[:, rows, cols], zs)
    prec_chol = pt.matmul(low[None], a)  # the Cholesky factor of the precision
    precision = pt.matmul(prec_chol, pt.swapaxes(prec_chol, -1, -2))
    chol = pt.stack([pt.linalg.cholesky(pt.linalg.inv(precision[j])) for j in range(k)])
    return pm.Deterministic("chol_cov", chol, dims=("component", "feature", "feature_bis"))


def _sds(chol) -> None:
    """Add ``sigma``, the component sds per feature (the diagonal of the covariances)."""
    pm.Deterministic("sigma", pt.sqrt(pt.sum(chol**2, axis=-1)), dims=("component", "feature"))


def _check_ordered_by(ordered_by, n_features: int):
    if ordered_by is None:
        return None
    if isinstance(ordered_by, bool) or not isinstance(ordered_by, numbers.Integral):
        raise ValueError(
            f"`ordered_by` should be None or a feature index in [0, {n_features}), "
            f"but got {ordered_by!r}"
        )
    if not 0 <= ordered_by < n_features:
        raise ValueError(
            f"`ordered_by` should be a feature index in [0, {n_features}), but got {ordered_by}"
        )
    return int(ordered_by)


def _stick_breaking(v):
    """Weights from k - 1 stick proportions: w_j = v_j prod_{i<j} (1 - v_i), last the rest."""
    rest = pt.concatenate([pt.ones(1), pt.cumprod(1 - v)])
    return pt.concatenate([v, pt.ones(1)]) * rest


def _weights(prior: Prior, k: int):
    if prior.dist == "StickBreaking":
        if k == 1:
            return pm.Deterministic("weights", pt.ones(1), dims="component")
        v = pm.Beta("stick_proportions", alpha=1.0, beta=float(prior.params["alpha"]), dims="stick")
        return pm.Deterministic("weights", _stick_breaking(v), dims="component")
    return pm.Dirichlet("weights", a=np.array(prior.params["a"]), dims="component")


def _lkj_chol(name: str, d: int, eta: float, sd_scale: np.ndarray):
    sd_dist = pm.HalfNormal.dist(sigma=sd_scale, shape=d)
    return pm.LKJCholeskyCov(name, n=d, eta=eta, sd_dist=sd_dist, compute_corr=True)[0]


def _covariances(priors: dict, k: int, d: int, covariance: str):
    """Return the (k, d, d) Cholesky factors; adds ``chol_cov`` and ``sigma`` to the model."""
    if "wishart" in priors:
        chol = wishart_chol(priors["wishart"], k, d)
        _sds(chol)
        return chol
    sd_scale = np.array(priors["sigma"].params["sigma"])
    eta = float(priors["corr"].params["eta"])
    if covariance == "diag":
        sds = pm.HalfNormal("sigma", sigma=sd_scale, dims=("component", "feature"))
        chol = pt.eye(d)[None, :, :] * sds[:, None, :]
        chol = pm.Deterministic("chol_cov", chol, dims=("component", "feature", "feature_bis"))
        return chol
    if d == 1:  # LKJ needs n >= 2; one feature is a per-component (or tied) sd
        shape_dims = ("component", "feature") if covariance == "full" else ("feature",)
        sds = pm.HalfNormal("sd", sigma=sd_scale, dims=shape_dims)
        sds = pt.broadcast_to(sds, (k, 1))
        chol = sds[:, :, None]
    elif covariance == "tied":
        one = _lkj_chol("chol_cov_tied", d, eta, sd_scale)
        chol = pt.broadcast_to(one, (k, d, d))
    else:
        chol = pt.stack([_lkj_chol(f"chol_cov_{j}", d, eta, sd_scale) for j in range(k)])
    chol = pm.Deterministic("chol_cov", chol, dims=("component", "feature", "feature_bis"))
    _sds(chol)
    return chol


def _check_structure(covariance, ordered_by, covariance_prior, n_features: int) -> tuple:
    """Check `covariance` and `ordered_by`; resolve `covariance_prior` (``"auto"``)."""
    if covariance not in COVARIANCES:
        raise ValueError(
            f"`covariance` should be one of {list(COVARIANCES)}, but got {covariance!r}"
        )
    ordered_by = _check_ordered_by(ordered_by, n_features)
    return ordered_by, _check_covariance_prior(covariance_prior, covariance)


def _check_covariance_prior(covariance_prior, covariance: str) -> str:
    """Resolve ``"auto"`` per `covariance`; refuse a Wishart prior on tied or diagonal ones."""
    if covariance_prior not in COVARIANCE_PRIORS:
        raise ValueError(
            f"`covariance_prior` should be one of {list(COVARIANCE_PRIORS)}, "
            f"but got {covariance_prior!r}"
        )
    if covariance_prior == "auto":
        return DEFAULT_COVARIANCE_PRIOR[covariance]
    if covariance_prior == "wishart" and covariance != "full":
        raise ValueError(
            f"`covariance` should be 'full' with covariance_prior='wishart', but got "
            f"{covariance!r} (the tied and diagonal covariances take covariance_prior='lkj', "
            "the default for them)"
        )
    return covariance_prior


@fill_doc
def mv_mixture(
    X,
    k: int,
    *,
    covariance: str = "full",
    marginalized: bool = True,
    ordered_by: int | None = 0,
    priors=None,
    covariance_prior: str = "auto",
    labels=None,
    missing: str = "model",
    family: str = "normal",
    nu=None,
) -> pm.Model:
    """Mixture of `k` multivariate Gaussians (or Student-t's) for `X` of shape (n_obs, n_features).

    Parameters
    ----------
    %(X)s
    k : int
        Number of components, 1 <= k <= n_obs. With a sparse weight prior, an upper bound
        ("K large enough"; see :func:`effective_components`).
    %(covariance)s
    marginalized : bool, default True
        Sum the assignments out (a ``pm.Mixture`` of ``MvNormal``, for NUTS / ADVI) or keep
        them as the ``Categorical`` variable ``assignment``.
    %(ordered_by)s
    %(covariance_prior)s
    %(mv_priors)s
    labels : array-like of int, optional
        Known components of some observations (-1 or NaN for unknown): observed, not
        sampled. With ``ordered_by``, label j is the component with the j-th smallest mean of
        that feature.
    %(missing)s
    family : {"normal", "t"}, default "normal"
        Component family. ``"t"``: each component a multivariate Student-t with location
        ``means``, scale matrix ``chol_cov @ chol_cov.T`` and degrees of freedom ``nu``
        (dims ``component``); the marginalised model is a ``pm.Mixture`` of ``pm.MvStudentT``,
        the latent one ``MvStudentT`` given ``assignment`` (the Gibbs engine also stores the
        per-row precision weights ``precision_weights`` of the latent variant). NaN cells
        are refused with it.
    nu : float, array-like of shape (k,) or None, default None
        The t family's degrees of freedom: fixed (one number or one per component, stored as
        data ``nu``), or None to sample them under ``priors["nu"]`` (default Gamma(2, 0.1)).

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import mixtures
    >>> X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]]
    >>> model = mixtures.mv_mixture(X, 3)
    >>> model.named_vars_to_dims["means"]
    ('component', 'feature')
    """
    if is_dask_data(X):  # the data stay on the cluster (mixtures.model.dask_data)
        kwargs = {"covariance": covariance, "marginalized": marginalized, "priors": priors}
        kwargs.update(ordered_by=ordered_by, covariance_prior=covariance_prior, labels=labels)
        return _mv_mixture_on_dask(X, k, family, **kwargs)
    names = list(X.columns) if hasattr(X, "columns") else None
    X, observed = _observations(X, check_missing(missing))
    k = check_k(k, X.shape[0])
    known = _check_mv_family(family, nu, k, observed)
    labels = check_labels(labels, X.shape[0], k)
    ordered_by, covariance_prior = _check_structure(
        covariance, ordered_by, covariance_prior, X.shape[1]
    )
    keys = _prior_keys(priors, covariance_prior, known == {})
    resolved = resolve_mv_priors(X, priors, keys, k)
    spec = _mv_spec(X, k, resolved, covariance, marginalized, ordered_by, known)
    spec = spec.replace(labelled=labels is not None, missing=missing)
    return attach(_mv_graph(X, observed, spec, labels, names), spec)


def _mv_mixture_on_dask(X, k, family: str, **kwargs) -> pm.Model:
    """Return :func:`mv_mixture` of data in a dask array (:mod:`mixtures.model.dask_data`).

    Parameters
    ----------
    X : dask.array.Array of shape (n_obs, n_features)
        The data, left on the cluster.
    k : int
        Number of components.
    family : str
        Must be ``"normal"``: the distributed engine sweeps Normal components only.
    **kwargs
        The other arguments of :func:`mv_mixture`.

    Returns
    -------
    pymc.Model
    """
    if family != "normal":
        raise ValueError(
            f"`family` should be 'normal' for data in a dask array (the distributed engine "
            f"sweeps Normal components only), but got {family!r}"
        )
    return from_dask(mv_mixture, X, k, **kwargs)


def _check_mv_family(family: str, nu, k: int, observed: np.ndarray) -> dict | None:
    """Check :func:`mv_mixture`'s `family` and `nu`; refuse missing cells with the t family.

    Parameters
    ----------
    family : str
        As in :func:`mv_mixture`.
    nu : float, array-like of shape (k,) or None
        As in :func:`mv_mixture` (refused with ``family="normal"``).
    k : int
        Number of components, checked.
    observed : numpy.ndarray of bool, shape (n_obs, n_features)
        Which cells of the data are observed.

    Returns
    -------
    dict or None
        None for Normal components; for t components ``{"nu": (k,) array}`` when `nu` is
        fixed, ``{}`` when it is sampled.
    """
    known = check_family(family, nu, k)  # refuses a nu with family="normal"
    known = None if family == "normal" else known
    if known is not None and not observed.all():
        raise ValueError(
            f"`X` should have no missing cells with family='t' (missing cells are modelled "
            f"for Normal components only), but got {int((~observed).sum())} NaN cell(s): drop "
            "the incomplete rows or use family='normal'"
        )
    return known


def _mv_graph(X, observed, spec: MixtureSpec, labels, names) -> pm.Model:
    """Build the PyMC model of a resolved multivariate `spec` on data `X` (NaN: missing)."""
    (n, d), k = X.shape, spec.k
    coords = {
        "component": np.arange(k),
        "stick": np.arange(max(k - 1, 0)),
        "feature": names if names is not None else np.arange(d),
        "feature_bis": names if names is not None else np.arange(d),
        "obs_id": np.arange(n),
        "tril": np.arange(d * (d - 1) // 2),
    }
    with pm.Model(coords=coords) as model:
        x_data = pm.Data("y_data", np.where(observed, X, 0.0), dims=("obs_id", "feature"))
        if not observed.all():
            pm.Data("observed_cells", observed.astype(np.int8), dims=("obs_id", "feature"))
        weights = _weights(spec.priors["weights"], k)
        kwargs = {}
        if spec.ordered_by is not None and k > 1:
            column = X[observed[:, spec.ordered_by], spec.ordered_by]
            kwargs["transform"] = OrderedColumn(spec.ordered_by, increasing_start(column, k))
        prior = spec.priors["means"].params
        means = pm.Normal(
            "means", mu=np.array(prior["mu"]), sigma=np.array(prior["sigma"]),
            dims=("component", "feature"), **kwargs,
        )  # fmt: skip
        chol = _covariances(spec.priors, k, d, spec.covariance)
        if labels is not None:
            weights = label_weights(weights, labels, k)
        if spec.family == "mvt":
            _t_likelihood(x_data, weights, means, chol, _t_dof(spec), spec.marginalized, k)
        else:
            _likelihood(x_data, weights, means, chol, observed, spec.marginalized, k)
    return model


def _t_dof(spec: MixtureSpec):
    """Return the t family's degrees of freedom: data ``nu`` (fixed) or a prior variable."""
    if "nu" in spec.known:
        return pm.Data("nu", spec.known["nu"], dims="component")
    prior = spec.priors["nu"]
    return getattr(pm, prior.dist)("nu", **dict(prior.params), dims="component")


def _t_likelihood(x_data, weights, means, chol, nu, marginalized: bool, k: int) -> None:
    """Add the observed ``y`` of t components (the precision weights summed out)."""
    dims = ("obs_id", "feature")
    if marginalized and k == 1:
        pm.MvStudentT("y", nu=nu[0], mu=means[0], chol=chol[0], observed=x_data, dims=dims)
    elif marginalized:
        comps = [pm.MvStudentT.dist(nu=nu[j], mu=means[j], chol=chol[j]) for j in range(k)]
        pm.Mixture("y", w=weights, comp_dists=comps, observed=x_data, dims=dims)
    else:
        z = pm.Categorical("assignment", p=weights, dims="obs_id")
        pm.MvStudentT("y", nu=nu[z], mu=means[z], chol=chol[z], observed=x_data, dims=dims)


def _likelihood(x_data, weights, means, chol, observed, marginalized: bool, k: int) -> None:
    """Add the observed ``y``: complete rows, or each row over its observed cells."""
    dims = ("obs_id", "feature")
    if not observed.all():
        _incomplete_likelihood(x_data, weights, means, chol, observed, marginalized, k)
    elif marginalized and k == 1:  # pm.Mixture would read one component as a batch of them
        pm.MvNormal("y", mu=means[0], chol=chol[0], observed=x_data, dims=dims)
    elif marginalized:
        comps = [pm.MvNormal.dist(mu=means[j], chol=chol[j]) for j in range(k)]
        pm.Mixture("y", w=weights, comp_dists=comps, observed=x_data, dims=dims)
    else:
        z = pm.Categorical("assignment", p=weights, dims="obs_id")
        pm.MvNormal("y", mu=means[z], chol=chol[z], observed=x_data, dims=dims)


def _observations(X, missing: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the checked data (NaN where missing) and the mask of observed cells."""
    if missing == "refuse":
        X = check_observations(X, "X", ndim=2)
        return X, np.ones(X.shape, dtype=bool)
    return check_with_missing(X, "X")


def _incomplete_likelihood(x_data, weights, means, chol, observed, marginalized, k) -> None:
    """Observed ``y``: each row's density over its observed cells (grouped by pattern)."""
    groups = pattern_groups(observed)
    n, d = observed.shape
    dims = ("obs_id", "feature")
    if marginalized:
        logp = functools.partial(pattern_mixture_logp, groups=groups, n_obs=n, k=k)
        pm.CustomDist(
            "y", weights, means, chol, logp=logp, random=mixture_random,
            signature="(k),(k,d),(k,d,d)->(d)", observed=x_data, dims=dims,
        )  # fmt: skip
        return
    z = pm.Categorical("assignment", p=weights, dims="obs_id")
    logp = functools.partial(latent_pattern_logp, groups=groups, n_obs=n, d=d)
    pm.CustomDist(
        "y", z, means, chol, logp=logp, random=_latent_random,
        signature="(),(k,d),(k,d,d)->(d)", observed=x_data, dims=dims,
    )  # fmt: skip


def _latent_random(z, means, chol, rng=None, size=None):
    means, chol = np.asarray(means), np.asarray(chol)
    k, d = means.shape[-2], means.shape[-1]
    z = np.asarray(z).reshape(-1)
    eps = rng.standard_normal((z.size, d))
    x = means.reshape(-1, k, d)[0][z] + np.einsum(
        "nde,ne->nd", chol.reshape(-1, k, d, d)[0][z], eps
    )
    return x.reshape(tuple(size[:-1]) + (d,)) if size is not None else x


def effective_components(idata, *, threshold: float = 0.01) -> xr.DataArray:
    """Posterior of the number of components holding more than `threshold` of the data.

    A component's share of the data is its weight (the expected fraction of observations it
    generates). With a sparse prior and a generous `k`, this is the number of clusters the
    data support.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``weights`` in the posterior.
    threshold : float, default 0.01
        Share of the data (0 < threshold < 1) above which a component counts.

    Returns
    -------
    xarray.DataArray
        Integer counts, dims (chain, draw), named ``effective_components``.

    Examples
    --------
    >>> counts = effective_components(idata)  # doctest: +SKIP
    >>> counts.to_series().value_counts(normalize=True)  # doctest: +SKIP
    """
    if not 0 < threshold < 1:
        raise ValueError(f"`threshold` should be in (0, 1), but got {threshold!r}")
    if "posterior" not in idata.groups() or "weights" not in idata.posterior:
        raise ValueError("`idata` should hold `weights` in its posterior, but it does not")
    counts = (idata.posterior["weights"] > threshold).sum("component")
    return counts.rename("effective_components")
