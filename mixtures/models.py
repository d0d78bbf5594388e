r"""Model factories for univariate Gaussian mixtures.

Each factory returns a plain :class:`pymc.Model` with coords ``component`` and ``obs_id`` and
the same variable names in every variant:

========== ==========================================================================
name       meaning
========== ==========================================================================
weights    mixture weights, Dirichlet, dims ``component``
means      component means (ordered by default), dims ``component``
sigma      component sd: dims ``component``, or a scalar in :func:`shared_sd_mixture`
assignment latent component of each observation, Categorical, dims ``obs_id``
           (latent variant only, ``marginalized=False``)
y          the observed data, dims ``obs_id``
========== ==========================================================================

The observations enter through ``pm.Data("y_data", ...)``, so a model can be refitted on new
data, of any length, without being rebuilt::

    with model:
        pm.set_data({"y_data": y_new}, coords={"obs_id": np.arange(len(y_new))})
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.distributions.transforms import Ordered

from mixtures._validation import (
    check_k,
    check_observations,
    check_positive_vector,
    check_vector,
)

__all__ = ["OrderedGaps", "full_mixture", "known_params_mixture", "shared_sd_mixture"]

#: Distribution families a prior may name, per parameter.
PRIOR_FAMILIES = {
    "weights": ("Dirichlet",),
    "means": ("Normal", "StudentT"),
    "sigma": (
        "HalfNormal",
        "HalfCauchy",
        "HalfStudentT",
        "Exponential",
        "Gamma",
        "InverseGamma",
        "LogNormal",
    ),
}


def default_priors(y: np.ndarray) -> dict[str, dict]:
    r"""Return the default, weakly informative priors scaled to the data `y`.

    With :math:`\bar y` and :math:`s_y` the mean and sd of the data:

    .. math::

        \text{weights} \sim \text{Dirichlet}(1, \dots, 1), \quad
        \text{means}_k \sim N(\bar y, (2 s_y)^2), \quad
        \text{sigma}_k \sim \text{HalfNormal}(s_y)

    Parameters
    ----------
    y : numpy.ndarray of shape (n_obs,)
        The observations.

    Returns
    -------
    dict
        ``{"weights": {...}, "means": {...}, "sigma": {...}}``; each value holds ``dist`` (the
        PyMC distribution's name) and its keyword arguments.
    """
    scale = float(np.std(y))
    if scale == 0.0:
        scale = 1.0
    return {
        "weights": {"dist": "Dirichlet", "a": 1.0},
        "means": {"dist": "Normal", "mu": float(np.mean(y)), "sigma": 2.0 * scale},
        "sigma": {"dist": "HalfNormal", "sigma": scale},
    }


def _merge_priors(y: np.ndarray, priors: dict | None, allowed: tuple[str, ...]) -> dict:
    """Merge user priors over the defaults; validate keys and families.

    A user entry without ``dist`` updates the default's parameters; one naming ``dist``
    replaces the default entry whole.
    """
    defaults = {key: val for key, val in default_priors(y).items() if key in allowed}
    if priors is None:
        return defaults
    if not isinstance(priors, dict):
        raise ValueError(f"`priors` should be a dict, but got {type(priors).__name__}")
    unknown = sorted(set(priors) - set(allowed))
    if unknown:
        raise ValueError(
            f"`priors` keys should be among {list(allowed)}, but got unknown key(s) {unknown}"
        )
    merged = dict(defaults)
    for key, spec in priors.items():
        if not isinstance(spec, dict):
            raise ValueError(
                f"`priors[{key!r}]` should be a dict of distribution parameters, "
                f"but got {type(spec).__name__}"
            )
        spec = dict(spec)  # never keep a reference to the caller's dict
        family = spec.get("dist", defaults[key]["dist"])
        if family not in PRIOR_FAMILIES[key]:
            raise ValueError(
                f"`priors[{key!r}]['dist']` should be one of {list(PRIOR_FAMILIES[key])}, "
                f"but got {family!r}"
            )
        merged[key] = {**defaults[key], **spec} if "dist" not in spec else spec
    return merged


def _prior_rv(name: str, spec: dict, **rv_kwargs):
    """Create the random variable `name` from a prior spec inside the model context."""
    params = {k: v for k, v in spec.items() if k != "dist"}
    dist = getattr(pm, spec["dist"])
    try:
        return dist(name, **params, **rv_kwargs)
    except TypeError as err:
        raise ValueError(
            f"`priors[{name!r}]` should hold parameters of {spec['dist']}, but got "
            f"{sorted(params)} ({err})"
        ) from err


def _increasing_start(y: np.ndarray, k: int) -> np.ndarray:
    """Strictly increasing starting means: the data's quantiles at (j + 0.5) / k."""
    start = np.quantile(y, (np.arange(k) + 0.5) / k)
    # Ties (heavily repeated values) would make the ordered transform's start -inf.
    step = max(float(np.std(y)), 1.0) * 1e-3
    for j in range(1, k):
        start[j] = max(start[j], start[j - 1] + step)
    return start


class OrderedGaps(Ordered):
    """PyMC's ordered transform, first value plus cumulative positive gaps, needing no initval.

    The unconstrained value is ``(mu_0, log(mu_1 - mu_0), ..., log(mu_{k-1} - mu_{k-2}))``, as
    in :class:`pymc.distributions.transforms.Ordered`, and ``backward`` (hence the model's
    density) is PyMC's own. Only ``forward`` differs, and only on inputs that are not strictly
    increasing, which have no image (PyMC returns ``-inf`` gaps there): those map to
    ``forward(start)``. So a prior whose means are all equal (its support point is then not
    increasing) still gives the model a finite default start, without the ``initval`` that
    JAX-based samplers and ``pymc_extras.marginalize`` refuse.

    Parameters
    ----------
    start : array-like of shape (k,)
        A strictly increasing vector, used as the start when the prior's is not increasing.
        It is held in a shared variable, so assigning ``transform.start`` (as a refit on new
        data does) reaches functions compiled before.
    """

    name = "ordered"

    def __init__(self, start):
        super().__init__()
        self._start = pytensor.shared(np.asarray(start, dtype=float), name="ordered_start")

    @property
    def start(self) -> np.ndarray:
        """The fallback start (strictly increasing)."""
        return self._start.get_value()

    @start.setter
    def start(self, value) -> None:
        self._start.set_value(np.asarray(value, dtype=float))

    def set_start_from(self, y: np.ndarray) -> None:
        """Reset the fallback start to the quantiles of new data `y` (a refit does this)."""
        self.start = _increasing_start(y, self.start.shape[-1])

    def forward(self, value, *inputs):
        """Map strictly increasing `value` to (first, log gaps); anything else to `start`'s."""
        value = pt.as_tensor(value)
        increasing = pt.all(pt.gt(pt.diff(value, axis=-1), 0))
        start = pt.broadcast_to(self._start.astype(value.dtype), value.shape)
        return super().forward(pt.switch(increasing, value, start), *inputs)


class ModelSpec(NamedTuple):
    """How a factory built a model: enough to rebuild it (e.g. its latent twin) on new data."""

    factory: Callable
    args: tuple
    kwargs: dict


#: Factory specs of the models built here, by model (weak: a spec dies with its model).
_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_spec(model: pm.Model) -> ModelSpec | None:
    """Return how a `mixtures` factory built `model`, or None for any other model."""
    return _SPECS.get(model)


def rebuild(model: pm.Model, y=None, *, marginalized: bool | None = None) -> pm.Model:
    """Build `model`'s factory again, on data `y` (default: the model's current data).

    Parameters
    ----------
    model : pymc.Model
        A model from a `mixtures` factory.
    y : array-like, optional
        The observations; default ``model["y_data"]``'s current value.
    marginalized : bool, optional
        Override the variant (e.g. False for the latent twin of a marginalised model).

    Returns
    -------
    pymc.Model
    """
    spec = model_spec(model)
    if spec is None:
        raise ValueError("`model` should be built by a mixtures factory, but got another model")
    if y is None:
        y = model["y_data"].get_value()
    kwargs = dict(spec.kwargs)
    if marginalized is not None:
        kwargs["marginalized"] = marginalized
    return spec.factory(y, *spec.args, **kwargs)


def _model_frame(y: np.ndarray, k: int) -> pm.Model:
    coords = {"component": np.arange(k), "obs_id": np.arange(y.shape[0])}
    return pm.Model(coords=coords)


def _weights(spec: dict, k: int):
    a = np.broadcast_to(np.asarray(spec.get("a", 1.0), dtype=float), (k,)).copy()
    return _prior_rv("weights", {**spec, "a": a}, dims="component")


def _means(y: np.ndarray, k: int, spec: dict, ordered: bool):
    kwargs = {"dims": "component"}
    if ordered and k > 1:
        kwargs["transform"] = OrderedGaps(_increasing_start(y, k))
    return _prior_rv("means", spec, **kwargs)


def _observe(y_data, weights, means, sigma, marginalized: bool):
    """Add the likelihood: marginalised NormalMixture, or explicit latent assignments."""
    if marginalized:
        return pm.NormalMixture(
            "y", w=weights, mu=means, sigma=sigma, observed=y_data, dims="obs_id"
        )
    assignment = pm.Categorical("assignment", p=weights, dims="obs_id")
    sd = sigma[assignment] if sigma.ndim == 1 else sigma
    return pm.Normal("y", mu=means[assignment], sigma=sd, observed=y_data, dims="obs_id")


def known_params_mixture(y, means, sds, *, marginalized: bool = False, priors=None) -> pm.Model:
    r"""Mixture with known component means and sds; unknown weights (and assignments).

    .. math::

        w \sim \text{Dirichlet}(a), \quad z_i \sim \text{Categorical}(w), \quad
        y_i \mid z_i \sim N(\mu_{z_i}, \sigma_{z_i}^2)

    with :math:`\mu` and :math:`\sigma` fixed (stored as data ``means`` and ``sigma``).

    Parameters
    ----------
    y : array-like of shape (n_obs,)
        Observations; must be finite.
    means : array-like of shape (k,)
        Known component means.
    sds : array-like of shape (k,)
        Known component standard deviations, all > 0.
    marginalized : bool, default False
        If True, sum the assignments out (``y`` is a ``NormalMixture``); otherwise keep them as
        the ``Categorical`` variable ``assignment``.
    priors : dict, optional
        ``{"weights": {"a": ...}}``: Dirichlet concentration (scalar or length k, default 1).

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.known_params_mixture(y, means=[10, 20, 35], sds=[2, 2, 2])
    >>> sorted(model.named_vars)
    ['assignment', 'means', 'sigma', 'weights', 'y', 'y_data']
    """
    y = check_observations(y)
    if np.ndim(means) != 1:
        raise ValueError(
            f"`means` should be a 1-D array of shape (k,), but got shape {np.shape(means)}"
        )
    k = check_k(np.shape(means)[0], y.shape[0])
    means = check_vector(means, "means", k)
    sds = check_positive_vector(sds, "sds", k)
    spec = _merge_priors(y, priors, allowed=("weights",))
    with _model_frame(y, k) as model:
        y_data = pm.Data("y_data", y, dims="obs_id")
        mu = pm.Data("means", means, dims="component")
        sd = pm.Data("sigma", sds, dims="component")
        weights = _weights(spec["weights"], k)
        _observe(y_data, weights, mu, sd, marginalized)
    _SPECS[model] = ModelSpec(
        known_params_mixture,
        (),
        {"means": means, "sds": sds, "marginalized": marginalized, "priors": copy.deepcopy(priors)},
    )
    return model


def _unknown_params_mixture(y, k, marginalized, ordered, priors, shared_sd) -> pm.Model:
    y = check_observations(y)
    k = check_k(k, y.shape[0])
    spec = _merge_priors(y, priors, allowed=("weights", "means", "sigma"))
    with _model_frame(y, k) as model:
        y_data = pm.Data("y_data", y, dims="obs_id")
        weights = _weights(spec["weights"], k)
        means = _means(y, k, spec["means"], ordered)
        if shared_sd:
            sigma = _prior_rv("sigma", spec["sigma"])
        else:
            sigma = _prior_rv("sigma", spec["sigma"], dims="component")
        _observe(y_data, weights, means, pt.as_tensor(sigma), marginalized)
    _SPECS[model] = ModelSpec(
        shared_sd_mixture if shared_sd else full_mixture,
        (k,),
        {"marginalized": marginalized, "ordered": ordered, "priors": copy.deepcopy(priors)},
    )
    return model


def shared_sd_mixture(
    y, k: int, *, marginalized: bool = False, ordered: bool = True, priors=None
) -> pm.Model:
    r"""Mixture with unknown means and one standard deviation shared by all components.

    .. math::

        w \sim \text{Dirichlet}(a), \quad \mu_j \sim N(m, s^2), \quad \sigma \sim p(\sigma),
        \quad z_i \sim \text{Categorical}(w), \quad y_i \mid z_i \sim N(\mu_{z_i}, \sigma^2)

    Parameters
    ----------
    y : array-like of shape (n_obs,)
        Observations; must be finite.
    k : int
        Number of components, 1 <= k <= n_obs.
    marginalized : bool, default False
        Sum the assignments out (NUTS-only model) instead of keeping ``assignment``.
    ordered : bool, default True
        Constrain ``means`` to increase with the component index (identifies the labels),
        through :class:`OrderedGaps` (first mean plus cumulative positive gaps). No
        ``initval`` is needed: where the prior's means are not increasing, the start is the
        data's quantiles.
    priors : dict, optional
        Overrides of :func:`default_priors`, keys ``weights``, ``means``, ``sigma``. An entry
        without ``dist`` updates the default's parameters; one with ``dist`` replaces it. The
        book's choices read
        ``{"means": {"mu": [10, 20, 35], "sigma": 2}, "sigma": {"dist": "HalfCauchy", "beta": 5}}``.

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.shared_sd_mixture(y, 3, marginalized=True)
    >>> model["sigma"].ndim
    0
    """
    return _unknown_params_mixture(y, k, marginalized, ordered, priors, shared_sd=True)


def full_mixture(
    y, k: int, *, marginalized: bool = False, ordered: bool = True, priors=None
) -> pm.Model:
    r"""Dirichlet-Categorical-Normal mixture with per-component means and sds.

    .. math::

        w \sim \text{Dirichlet}(a), \quad \mu_j \sim N(m, s^2), \quad \sigma_j \sim p(\sigma),
        \quad z_i \sim \text{Categorical}(w), \quad y_i \mid z_i \sim N(\mu_{z_i}, \sigma_{z_i}^2)

    Parameters
    ----------
    y : array-like of shape (n_obs,)
        Observations; must be finite.
    k : int
        Number of components, 1 <= k <= n_obs.
    marginalized : bool, default False
        Sum the assignments out (NUTS-only model) instead of keeping ``assignment``.
    ordered : bool, default True
        Constrain ``means`` to increase with the component index, as in
        :func:`shared_sd_mixture` (no ``initval`` needed).
    priors : dict, optional
        Overrides of :func:`default_priors` (see :func:`shared_sd_mixture`).

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.full_mixture(y, 3, marginalized=True)
    >>> model.coords["component"]
    (np.int64(0), np.int64(1), np.int64(2))
    """
    return _unknown_params_mixture(y, k, marginalized, ordered, priors, shared_sd=False)
