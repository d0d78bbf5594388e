r"""One weighted log-density per component family, and the parameters of a fit by family.

A family object answers, for a batch of parameter draws, the component log-densities
:math:`\log f(y_i \mid \theta_j)` and the weighted ones
:math:`\log w_j + \log f(y_i \mid \theta_j)` (scikit-learn's ``_estimate_weighted_log_prob``),
with one rule for known labels: a labelled observation's other components are masked out
(:math:`-\infty`), so that the mixture log-density :math:`\log \sum_j w_j f(y_i \mid \theta_j)`
of a labelled point is the joint :math:`\log w_{z_i} + \log f(y_i \mid \theta_{z_i})`. The
pointwise log-likelihood, the assignments and predictions, EM's E-step, bridge sampling and the
2-D plot all call these; the densities themselves are in :mod:`mixtures.model.densities`.

The sufficient statistics and conjugate updates of each family live in the Gibbs engine's Numba
kernels (:mod:`mixtures._kernels` for Normal and multivariate Normal components,
:mod:`mixtures._kernels_t` for Student-t ones), which evaluate the same densities in compiled
loops and are tested against these.

Shapes: a univariate family's parameters have shape ``batch + (k,)`` (``batch`` any leading
shape, e.g. (chain, draw)), the multivariate families' ``means`` ``batch + (k, d)`` and
``chol_cov`` ``batch + (k, d, d)`` (the multivariate t's ``nu`` ``batch + (k,)``); weights
``batch + (k,)``. Observations are ``(n_obs,)`` or
``(n_obs, d)`` (NaN marks a missing cell: its row gets the observed cells' marginal). Results
have shape ``batch + (n_obs, k)``.

Adding a family: its density in :mod:`~mixtures.model.densities`, a subclass of
:class:`ComponentFamily` here, its entry in :data:`COMPONENT_FAMILIES`, and its kernel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from mixtures.model.densities import mvnormal_logpdf, mvt_logpdf, normal_logpdf, student_t_logpdf

__all__ = [
    "COMPONENT_FAMILIES",
    "ComponentFamily",
    "FitComponents",
    "MvNormal",
    "MvStudentT",
    "Normal",
    "StudentT",
    "family_of",
    "fit_components",
    "fit_family",
    "known_labels",
    "log_mixture",
    "mask_known_labels",
    "posterior_nu",
    "posterior_param",
]


class ComponentFamily:
    """A component family: its parameters' names and its (weighted) log-densities.

    Subclasses set :attr:`name`, :attr:`param_names` and :attr:`multivariate` and implement
    :meth:`logpdf`.

    Attributes
    ----------
    name : str
        The key in :data:`COMPONENT_FAMILIES` (and ``MixtureSpec.family``).
    param_names : tuple of str
        The names of the component parameters in a fit's posterior (or constant_data), in the
        order :meth:`logpdf` reads them from its `params` mapping.
    multivariate : bool
        Whether one observation is a vector (shape (n_obs, d)) rather than a number.
    """

    name: str = ""
    param_names: tuple[str, ...] = ()
    multivariate: bool = False

    def logpdf(self, y, params) -> np.ndarray:
        """Return log f(y_i | theta_j) for every observation and component of a batch of draws.

        Parameters
        ----------
        y : array-like of shape (n_obs,) or (n_obs, d)
        params : mapping of str to array-like
            :attr:`param_names` to arrays of shape ``batch + (k,)`` (multivariate:
            ``batch + (k, d)`` and ``batch + (k, d, d)``), broadcastable with each other.

        Returns
        -------
        numpy.ndarray of shape batch + (n_obs, k)
        """
        raise NotImplementedError

    def weighted_logpdf(self, y, weights, params, labels=None, *, log_weights=False):
        """Return log w_j + log f(y_i | theta_j), the known labels masked.

        Parameters
        ----------
        y : array-like of shape (n_obs,) or (n_obs, d)
        weights : array-like of shape batch + (k,)
            Mixture weights (a weight that underflowed to 0 gives -inf), or their logarithms
            if `log_weights`.
        params : mapping of str to array-like
            As in :meth:`logpdf`.
        labels : array-like of int of shape (n_obs,), optional
            Known components, -1 where unknown: see :func:`mask_known_labels`.
        log_weights : bool, default False
            `weights` holds log w (keeps weights below the smallest float finite).

        Returns
        -------
        numpy.ndarray of shape batch + (n_obs, k)
        """
        out = self.logpdf(y, params)
        log_w = np.asarray(weights, dtype=float)
        if not log_weights:
            with np.errstate(divide="ignore"):  # an empty component's weight can underflow
                log_w = np.log(log_w)
        out += log_w[..., None, :]
        if labels is not None:
            mask_known_labels(out, labels)
        return out

    def mixture_logpdf(self, y, weights, params, labels=None, *, log_weights=False):
        """Return log sum_j w_j f(y_i | theta_j) (a labelled point's: its joint with the label).

        Parameters are those of :meth:`weighted_logpdf`.

        Returns
        -------
        numpy.ndarray of shape batch + (n_obs,)
        """
        weighted = self.weighted_logpdf(y, weights, params, labels, log_weights=log_weights)
        return log_mixture(weighted)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _component_last(comp: np.ndarray) -> np.ndarray:
    """(..., k, n) computed with contiguous observations, seen as (..., n, k)."""
    return np.moveaxis(comp, -2, -1)


class Normal(ComponentFamily):
    """Normal components, parameters ``means`` and ``sigma``.

    Density :func:`mixtures.model.densities.normal_logpdf`; Gibbs kernels in
    :mod:`mixtures._kernels` (conjugate Normal / scale updates).
    """

    name = "normal"
    param_names = ("means", "sigma")

    def logpdf(self, y, params) -> np.ndarray:  # noqa: D102 (the base class's docstring)
        y = np.asarray(y, dtype=float)
        mu, sd = np.broadcast_arrays(params["means"], params["sigma"])
        return _component_last(normal_logpdf(y, mu[..., None], sd[..., None]))


class StudentT(ComponentFamily):
    """Student-t components, parameters ``means``, ``sigma`` and ``nu`` (degrees of freedom).

    Density :func:`mixtures.model.densities.student_t_logpdf`; Gibbs kernels (scale-mixture
    augmentation) in :mod:`mixtures._kernels_t`.
    """

    name = "t"
    param_names = ("means", "sigma", "nu")

    def logpdf(self, y, params) -> np.ndarray:  # noqa: D102 (the base class's docstring)
        y = np.asarray(y, dtype=float)
        mu, sd, nu = np.broadcast_arrays(params["means"], params["sigma"], params["nu"])
        return _component_last(student_t_logpdf(y, mu[..., None], sd[..., None], nu[..., None]))


class MvNormal(ComponentFamily):
    """Multivariate Normal components, parameters ``means`` and ``chol_cov`` (Cholesky factors).

    Density :func:`mixtures.model.densities.mvnormal_logpdf` (rows with missing cells: the
    observed cells' marginal); Gibbs kernels (Normal-inverse-Wishart updates) in
    :mod:`mixtures._kernels`.
    """

    name = "mvnormal"
    param_names = ("means", "chol_cov")
    multivariate = True

    def logpdf(self, y, params) -> np.ndarray:  # noqa: D102 (the base class's docstring)
        return _component_last(mvnormal_logpdf(y, params["means"], params["chol_cov"]))


class MvStudentT(ComponentFamily):
    """Multivariate Student-t components: ``means``, ``chol_cov`` and ``nu`` (per component).

    ``chol_cov`` holds the Cholesky factors of the *scale* matrices (the covariance is
    nu / (nu - 2) times the scale matrix for nu > 2). Density
    :func:`mixtures.model.densities.mvt_logpdf` (rows with missing cells: the observed cells'
    marginal, a t of the same nu); Gibbs kernels (scale mixture of Normals,
    Normal-inverse-Wishart updates on weighted sums) in :mod:`mixtures._kernels_mvt`.
    """

    name = "mvt"
    param_names = ("means", "chol_cov", "nu")
    multivariate = True

    def logpdf(self, y, params) -> np.ndarray:  # noqa: D102 (the base class's docstring)
        mean, chol = np.asarray(params["means"]), np.asarray(params["chol_cov"])
        nu = np.broadcast_to(np.asarray(params["nu"], dtype=float), mean.shape[:-1])
        return _component_last(mvt_logpdf(y, mean, chol, nu))


#: The component families by name (``MixtureSpec.family``); MFM specs (``"mfm_normal"``,
#: ``"mfm_mvnormal"``) use the family after the prefix.
COMPONENT_FAMILIES: dict[str, ComponentFamily] = {
    "normal": Normal(),
    "t": StudentT(),
    "mvnormal": MvNormal(),
    "mvt": MvStudentT(),
}


def mask_known_labels(weighted: np.ndarray, labels) -> np.ndarray:
    """Set, in place, a labelled observation's other components to -inf; return `weighted`.

    The one rule for known labels: observation i with label z_i >= 0 keeps only component
    z_i, so its responsibilities are the indicator of z_i and its mixture log-density is
    log w_{z_i} + log f(y_i | theta_{z_i}), the likelihood of (y_i, z_i).

    Parameters
    ----------
    weighted : numpy.ndarray of shape (..., n_obs, k)
    labels : array-like of int of shape (n_obs,)
        -1 where unknown.

    Returns
    -------
    numpy.ndarray
        `weighted`, modified.
    """
    labels = np.asarray(labels, dtype=int)
    rows = np.flatnonzero(labels >= 0)
    if rows.size:
        k = weighted.shape[-1]
        mask = np.where(np.arange(k)[None, :] == labels[rows, None], 0.0, -np.inf)
        weighted[..., rows, :] += mask
    return weighted


def log_mixture(weighted: np.ndarray) -> np.ndarray:
    """Return the log-sum-exp over the last (component) axis; `weighted` is overwritten.

    Max-shifted, in place (no copy of the (..., n_obs, k) block); an observation whose every
    component is -inf gets -inf.
    """
    top = weighted.max(axis=-1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    weighted -= top
    np.exp(weighted, out=weighted)
    with np.errstate(divide="ignore"):
        return top[..., 0] + np.log(weighted.sum(axis=-1))


# ------------------------------------------------------------- a fit's parameters by family
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
    """Return a t fit's degrees of freedom (posterior draws or the fixed values), else None.

    Univariate and multivariate t fits alike.
    """
    if fit_family(idata) not in ("t", "mvt"):
        return None
    return posterior_param(idata, "nu")


def family_of(obj) -> ComponentFamily:
    """Return the component family of a fit, a spec or a family name.

    Parameters
    ----------
    obj : arviz.InferenceData, MixtureSpec, dict or str
        A fit (its recorded spec's family; without one, multivariate if its posterior holds
        ``chol_cov``, Student-t if it has a ``nu``), a :class:`~mixtures.MixtureSpec` or its
        dict, or a name (``"normal"``, ``"t"``, ``"mvnormal"``, ``"mvt"``, or an MFM spec's
        ``"mfm_normal"`` / ``"mfm_mvnormal"``).

    Returns
    -------
    ComponentFamily
    """
    if isinstance(obj, str):
        name = obj
    elif isinstance(obj, dict):
        name = obj.get("family", "normal")
    elif hasattr(obj, "groups"):
        name = fit_family(obj)
        if "mixtures_spec" not in obj.posterior.attrs and "chol_cov" in obj.posterior:
            name = "mvt" if name == "t" else "mvnormal"
    else:
        name = obj.family
    family = COMPONENT_FAMILIES.get(name.removeprefix("mfm_"))
    if family is None:
        raise ValueError(
            f"the component family should be one of {list(COMPONENT_FAMILIES)}, but got {name!r}"
        )
    return family


@dataclass(frozen=True)
class FitComponents:
    """A fit's mixture parameters by family, flat over draws (chain-major).

    Attributes
    ----------
    family : ComponentFamily
    weights : numpy.ndarray of shape (n_draws, k)
    params : dict of str to numpy.ndarray
        The family's parameters, shape (n_draws, k) (multivariate: (n_draws, k, d) and
        (n_draws, k, d, d)); known values (constant_data) and a shared sd are repeated.
    labels : numpy.ndarray of int of shape (n_obs,) or None
        The fit's known labels (-1: unknown), None without.
    shape : tuple of int
        (chain, draw).
    """

    family: ComponentFamily
    weights: np.ndarray
    params: dict
    labels: np.ndarray | None
    shape: tuple

    def take(self, draws) -> tuple[np.ndarray, dict]:
        """Return the weights and parameters of the flat draws `draws` (a slice or indices)."""
        return self.weights[draws], {n: p[draws] for n, p in self.params.items()}

    def weighted_logpdf(self, y, draws=slice(None), labels=None) -> np.ndarray:
        """:meth:`ComponentFamily.weighted_logpdf` at flat draws `draws`, shape (draws, n, k)."""
        weights, params = self.take(draws)
        return self.family.weighted_logpdf(y, weights, params, labels)


def known_labels(idata) -> np.ndarray | None:
    """Return a fit's known labels (``constant_data["labels"]``, -1: unknown), else None."""
    if "constant_data" in idata.groups() and "labels" in idata.constant_data:
        return np.asarray(idata.constant_data["labels"].values, dtype=int)
    return None


def fit_components(idata) -> FitComponents:
    """Return a fit's component family and its parameter draws (see :class:`FitComponents`).

    Parameters
    ----------
    idata : arviz.InferenceData
        A mixtures fit: ``weights`` in the posterior, the family's parameters in the
        posterior or (known values) in constant_data.

    Returns
    -------
    FitComponents
    """
    family = family_of(idata)
    weights = idata.posterior["weights"]
    das = [posterior_param(idata, name) for name in family.param_names]
    if not family.multivariate:
        das = [
            da.expand_dims(component=weights["component"].values)
            if "component" not in da.dims  # a shared sd
            else da
            for da in das
        ]
    weights, *das = xr.broadcast(weights, *das, exclude=("feature", "feature_bis"))
    shape = (weights.sizes["chain"], weights.sizes["draw"])
    arrays = [da.transpose("chain", "draw", "component", ...).values for da in (weights, *das)]
    flat = [a.reshape(shape[0] * shape[1], *a.shape[2:]) for a in arrays]
    params = dict(zip(family.param_names, flat[1:], strict=True))
    return FitComponents(family, flat[0], params, known_labels(idata), shape)
