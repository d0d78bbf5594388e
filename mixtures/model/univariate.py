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

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.distributions.transforms import Ordered

from mixtures._docs import fill_doc
from mixtures.model.dask_data import from_dask, is_dask_data
from mixtures.model.spec import (
    UNIVARIATE_FAMILIES,
    MixtureSpec,
    Prior,
    attach,
    auto_floor_applies,
    resolve_priors,
)
from mixtures.model.validation import (
    check_k,
    check_labels,
    check_observations,
    check_positive_vector,
    check_vector,
)

__all__ = [
    "NU_PRIOR",
    "OrderedGaps",
    "build_model",
    "check_sigma_floor",
    "default_priors",
    "full_mixture",
    "known_params_mixture",
    "shared_sd_mixture",
    "tie_floor",
]


def default_priors(y: np.ndarray, k: int = 1, *, shared_sd: bool = False) -> dict[str, Prior]:
    r"""Return the default, weakly informative priors scaled to the data `y`, as numbers.

    With :math:`\bar y` and :math:`s_y` the mean and sd of the data:

    .. math::

        \text{weights} \sim \text{Dirichlet}(1, \dots, 1), \quad
        \text{means}_k \sim N(\bar y, (2 s_y)^2), \quad
        \text{sigma}_k \sim \text{HalfNormal}(s_y)

    These are resolved once, when a factory builds a model, and kept in its spec
    (:func:`mixtures.spec_of`); nothing re-derives them from later data.

    Parameters
    ----------
    y : numpy.ndarray of shape (n_obs,)
        The observations.
    k : int, default 1
        Number of components (the parameters are broadcast to it).
    shared_sd : bool, default False
        One sd for all components (a scalar ``sigma`` prior).

    Returns
    -------
    dict of str to Prior
        ``{"weights": ..., "means": ..., "sigma": ...}``.
    """
    scale = float(np.std(y))
    if scale == 0.0:
        scale = 1.0
    sd_shape = () if shared_sd else (k,)
    return {
        "weights": Prior("Dirichlet", {"a": np.ones(k)}),
        "means": Prior(
            "Normal", {"mu": np.full(k, float(np.mean(y))), "sigma": np.full(k, 2.0 * scale)}
        ),
        "sigma": Prior("HalfNormal", {"sigma": np.full(sd_shape, scale)}),
    }


#: Default prior of a t family's degrees of freedom: Gamma(2, 0.1) (Juárez and Steel 2010),
#: mean 20, mode 10, 90% of its mass between 3.6 and 47.
NU_PRIOR = Prior("Gamma", {"alpha": 2.0, "beta": 0.1})


def check_family(family, nu, k: int) -> dict[str, np.ndarray]:
    """Check `family` and `nu`; return ``{"nu": (k,) array}`` for a fixed nu, else ``{}``."""
    if family not in UNIVARIATE_FAMILIES:
        raise ValueError(
            f"`family` should be one of {list(UNIVARIATE_FAMILIES)}, but got {family!r}"
        )
    if family == "normal":
        if nu is not None:
            raise ValueError(
                f"`nu` should be None with family='normal' (it is the t family's degrees of "
                f"freedom), but got {nu!r}"
            )
        return {}
    if nu is None:
        return {}
    if np.ndim(nu) == 0 and not isinstance(nu, bool | str) and np.isreal(nu):
        nu = np.full(k, nu, dtype=float)
    return {"nu": check_positive_vector(nu, "nu", k)}


def _prior_rv(name: str, prior: Prior, **rv_kwargs):
    """Create the random variable `name` from a resolved prior inside the model context."""
    return getattr(pm, prior.dist)(name, **dict(prior.params), **rv_kwargs)


def increasing_start(y: np.ndarray, k: int) -> np.ndarray:
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
        self.start = increasing_start(y, self.start.shape[-1])

    def forward(self, value, *inputs):
        """Map strictly increasing `value` to (first, log gaps); anything else to `start`'s."""
        value = pt.as_tensor(value)
        increasing = pt.all(pt.gt(pt.diff(value, axis=-1), 0))
        start = pt.broadcast_to(self._start.astype(value.dtype), value.shape)
        return super().forward(pt.switch(increasing, value, start), *inputs)


def tie_floor(y: np.ndarray) -> float:
    r"""Return the default sd floor: the sd of rounding to the data's resolution, if tied.

    Data rounded to a resolution :math:`h` (the smallest gap between distinct values) carry
    no information about spreads below the rounding error, whose sd is :math:`h/\sqrt{12}`;
    and with per-component sds the posterior is improper on tied data (a component holding
    tied values alone has a likelihood that grows without bound as its sd goes to 0). So
    ``sigma_floor="auto"`` truncates the sd prior at :math:`h/\sqrt{12}` when the data have
    ties, and at 0 (no floor) when they have none.

    Parameters
    ----------
    y : numpy.ndarray of shape (n_obs,)

    Returns
    -------
    float
    """
    distinct = np.unique(y)
    if distinct.size == y.size or distinct.size < 2:
        return 0.0
    return float(np.min(np.diff(distinct)) / np.sqrt(12.0))


def check_sigma_floor(sigma_floor, y: np.ndarray, prior: Prior | None) -> float:
    """Resolve and check `sigma_floor` ("auto" or a number >= 0) for the sd prior `prior`.

    ``"auto"`` is :func:`tie_floor` where :func:`~mixtures.model.spec.auto_floor_applies`,
    else 0. Every factory with sampled sds (the MFM's too) resolves its floor here.
    """
    if isinstance(sigma_floor, str):
        if sigma_floor != "auto":
            raise ValueError(
                f"`sigma_floor` should be 'auto' or a number >= 0, but got {sigma_floor!r}"
            )
        return tie_floor(y) if auto_floor_applies(prior and prior.dist) else 0.0
    if (
        isinstance(sigma_floor, bool)
        or not np.isscalar(sigma_floor)
        or not np.isfinite(sigma_floor)
        or sigma_floor < 0
    ):
        raise ValueError(
            f"`sigma_floor` should be 'auto' or a number >= 0, but got {sigma_floor!r}"
        )
    if sigma_floor > 0 and prior is not None and prior.dist == "HalfStudentT":
        raise ValueError(
            "`sigma_floor` should be 0 with a HalfStudentT sigma prior (PyMC cannot truncate "
            f"it), but got {sigma_floor}"
        )
    return float(sigma_floor)


def _resolve(
    y,
    k,
    *,
    shared_sd,
    ordered,
    marginalized,
    priors,
    known,
    sigma_floor="auto",
    labelled=False,
    family="normal",
) -> MixtureSpec:
    """Resolve a univariate spec: defaults scaled to `y`, user priors merged over them."""
    defaults = default_priors(y, k, shared_sd=shared_sd)
    if family == "t":
        defaults["nu"] = Prior(
            NU_PRIOR.dist, {p: np.full(k, v) for p, v in NU_PRIOR.params.items()}
        )
    for name in known:
        defaults.pop(name, None)
    shapes = {"weights": (k,), "means": (k,), "sigma": () if shared_sd else (k,), "nu": (k,)}
    resolved = resolve_priors(priors, defaults, shapes)
    floor = check_sigma_floor(sigma_floor, y, resolved.get("sigma"))
    return MixtureSpec(
        family=family,
        k=k,
        marginalized=bool(marginalized),
        ordered=bool(ordered) and "means" not in known and k > 1,
        shared_sd=shared_sd,
        priors=resolved,
        known=known,
        built_on={"n_obs": int(y.shape[0]), "mean": float(np.mean(y)), "sd": float(np.std(y))},
        sigma_floor=floor,
        labelled=bool(labelled),
    )


def build_model(y: np.ndarray, spec: MixtureSpec, labels: np.ndarray | None = None) -> pm.Model:
    """Build the univariate :class:`pymc.Model` that `spec` describes, on data `y`.

    Both variants of a model come from here (``spec.replace(marginalized=...)``), so they share
    their priors by construction. The returned model carries `spec` (see
    :func:`mixtures.spec_of`).

    Parameters
    ----------
    y : numpy.ndarray of shape (n_obs,)
        Checked observations.
    spec : MixtureSpec
        A resolved univariate spec.
    labels : numpy.ndarray of int, optional
        Known labels (-1: unknown), required when ``spec.labelled``.

    Returns
    -------
    pymc.Model
    """
    if spec.labelled and labels is None:
        raise ValueError("`labels` should be given for a spec with known labels, but got None")
    k = spec.k
    coords = {"component": np.arange(k), "obs_id": np.arange(y.shape[0])}
    with pm.Model(coords=coords) as model:
        y_data = pm.Data("y_data", y, dims="obs_id")
        weights = _prior_rv("weights", spec.priors["weights"], dims="component")
        if "means" in spec.known:
            means = pm.Data("means", spec.known["means"], dims="component")
        else:
            kwargs = {"dims": "component"}
            if spec.ordered:
                kwargs["transform"] = OrderedGaps(increasing_start(y, k))
            means = _prior_rv("means", spec.priors["means"], **kwargs)
        sd_dims = {} if spec.shared_sd else {"dims": "component"}
        if "sigma" in spec.known:
            sigma = pm.Data("sigma", spec.known["sigma"], **sd_dims)
        elif spec.sigma_floor > 0:
            prior = spec.priors["sigma"]
            shape = () if spec.shared_sd else (k,)
            base = getattr(pm, prior.dist).dist(**dict(prior.params), shape=shape)
            sigma = pm.Truncated("sigma", base, lower=spec.sigma_floor, **sd_dims)
        else:
            sigma = _prior_rv("sigma", spec.priors["sigma"], **sd_dims)
        obs_weights = label_weights(weights, labels, k) if spec.labelled else weights
        if spec.family == "t":
            if "nu" in spec.known:
                nu = pm.Data("nu", spec.known["nu"], dims="component")
            else:
                nu = _prior_rv("nu", spec.priors["nu"], dims="component")
            _observe_t(y_data, obs_weights, means, pt.as_tensor(sigma), nu, spec.marginalized)
        else:
            _observe(y_data, obs_weights, means, pt.as_tensor(sigma), spec.marginalized)
    return attach(model, spec)


def label_weights(weights, labels: np.ndarray, k: int):
    """Known labels: the labelled points' component is observed (``known_labels``).

    Per observation, the mixture weights are the model's for unlabelled points and the
    indicator of the label for labelled ones; the labels themselves are observed
    Categorical(weights) draws, so they inform the weights as they should.
    """
    labels_data = pm.Data("labels", labels, dims="obs_id")
    pm.Data("label_values", labels[labels >= 0])
    known = pt.ge(labels_data, 0)
    onehot = pt.eq(labels_data[:, None], pt.arange(k)[None, :])
    pm.Categorical("known_labels", p=weights, observed=pm.modelcontext(None)["label_values"])
    return pt.switch(known[:, None], onehot, weights[None, :])


def _observe(y_data, weights, means, sigma, marginalized: bool):
    """Add the likelihood: marginalised NormalMixture, or explicit latent assignments."""
    if marginalized:
        return pm.NormalMixture(
            "y", w=weights, mu=means, sigma=sigma, observed=y_data, dims="obs_id"
        )
    assignment = pm.Categorical("assignment", p=weights, dims="obs_id")  # weights may be (n, k)
    sd = sigma[assignment] if sigma.ndim == 1 else sigma
    return pm.Normal("y", mu=means[assignment], sigma=sd, observed=y_data, dims="obs_id")


def _observe_t(y_data, weights, means, sigma, nu, marginalized: bool):
    """Add the t family's likelihood: StudentT components, or explicit latent assignments.

    The precision weights of the scale-mixture representation are summed out in both.
    """
    k = means.shape[0]
    sd = pt.broadcast_to(sigma, (k,)) if sigma.ndim == 0 else sigma
    if marginalized:
        comps = pm.StudentT.dist(nu=nu, mu=means, sigma=sd, shape=(k,))
        return pm.Mixture("y", w=weights, comp_dists=comps, observed=y_data, dims="obs_id")
    assignment = pm.Categorical("assignment", p=weights, dims="obs_id")
    return pm.StudentT(
        "y",
        nu=nu[assignment],
        mu=means[assignment],
        sigma=sd[assignment],
        observed=y_data,
        dims="obs_id",
    )


def _known_sigma(sigma, k: int, shared_sd: bool) -> np.ndarray:
    if shared_sd:
        arr = np.asarray(sigma, dtype=float) if np.ndim(sigma) == 0 else None
        if arr is None or not np.isfinite(arr) or arr <= 0:
            raise ValueError(f"`sigma` should be one number > 0 (the shared sd), but got {sigma!r}")
        return arr
    if np.ndim(sigma) == 0:
        sigma = np.full(k, sigma, dtype=float) if np.isreal(sigma) else sigma
    return check_positive_vector(sigma, "sigma", k)


def _known_params(means, sds, n_obs: int) -> dict[str, np.ndarray]:
    """Check known component means and sds; return them as ``{"means", "sigma"}``."""
    if np.ndim(means) != 1:
        raise ValueError(
            f"`means` should be a 1-D array of shape (k,), but got shape {np.shape(means)}"
        )
    k = check_k(np.shape(means)[0], n_obs)
    return {
        "means": check_vector(means, "means", k),
        "sigma": check_positive_vector(sds, "sds", k),
    }


@fill_doc
def known_params_mixture(
    y, means, sds, *, marginalized: bool = True, priors=None, labels=None
) -> pm.Model:
    r"""Mixture with known component means and sds; unknown weights (and assignments).

    .. math::

        w \sim \text{Dirichlet}(a), \quad z_i \sim \text{Categorical}(w), \quad
        y_i \mid z_i \sim N(\mu_{z_i}, \sigma_{z_i}^2)

    with :math:`\mu` and :math:`\sigma` fixed (stored as data ``means`` and ``sigma``).

    Parameters
    ----------
    %(y)s
    means : array-like of shape (k,)
        Known component means.
    sds : array-like of shape (k,)
        Known component standard deviations, all > 0.
    marginalized : bool, default True
        Sum the assignments out (``y`` is a ``NormalMixture``); if False, keep them as the
        ``Categorical`` variable ``assignment``. Every engine samples both variants; the
        default Gibbs engine samples the assignments of either by data augmentation.
    priors : dict, optional
        ``{"weights": {"a": ...}}``: Dirichlet concentration (scalar or length k, default 1).
    labels : array-like of int, optional
        Known components of some observations (-1 or NaN for unknown): observed, not sampled.

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.known_params_mixture(y, means=[10, 20, 35], sds=[2, 2, 2])
    >>> sorted(model.named_vars)
    ['means', 'sigma', 'weights', 'y', 'y_data']
    """
    if is_dask_data(y):  # the data stay on the cluster (mixtures.model.dask_data)
        kwargs = {"means": means, "sds": sds, "priors": priors, "labels": labels}
        return from_dask(known_params_mixture, y, marginalized=marginalized, **kwargs)
    y = check_observations(y)
    known = _known_params(means, sds, y.shape[0])
    k = known["means"].shape[0]
    labels = check_labels(labels, y.shape[0], k)
    spec = _resolve(
        y,
        k,
        shared_sd=False,
        ordered=False,
        marginalized=marginalized,
        priors=priors,
        known=known,
        labelled=labels is not None,
    )
    return build_model(y, spec, labels)


def _unknown_params_mixture(
    y, k, marginalized, ordered, priors, shared_sd, sigma, sigma_floor, labels, family, nu
) -> pm.Model:
    if is_dask_data(y):  # the data stay on the cluster (mixtures.model.dask_data)
        if family != "normal":
            raise ValueError(
                f"`family` should be 'normal' for data in a dask array (the distributed engine "
                f"sweeps Normal components only), but got {family!r}"
            )
        kwargs = {"marginalized": marginalized, "ordered": ordered, "priors": priors}
        kwargs.update(sigma=sigma, sigma_floor=sigma_floor, labels=labels)
        return from_dask(shared_sd_mixture if shared_sd else full_mixture, y, k, **kwargs)
    y = check_observations(y)
    k = check_k(k, y.shape[0])
    labels = check_labels(labels, y.shape[0], k)
    known = {} if sigma is None else {"sigma": _known_sigma(sigma, k, shared_sd)}
    known.update(check_family(family, nu, k))
    spec = _resolve(
        y,
        k,
        shared_sd=shared_sd,
        ordered=ordered,
        marginalized=marginalized,
        priors=priors,
        known=known,
        sigma_floor=sigma_floor,
        labelled=labels is not None,
        family=family,
    )
    return build_model(y, spec, labels)


@fill_doc
def shared_sd_mixture(
    y,
    k: int,
    *,
    marginalized: bool = True,
    ordered: bool = True,
    priors=None,
    sigma=None,
    sigma_floor="auto",
    labels=None,
    family: str = "normal",
    nu=None,
) -> pm.Model:
    r"""Mixture with unknown means and one standard deviation shared by all components.

    .. math::

        w \sim \text{Dirichlet}(a), \quad \mu_j \sim N(m, s^2), \quad \sigma \sim p(\sigma),
        \quad z_i \sim \text{Categorical}(w), \quad y_i \mid z_i \sim N(\mu_{z_i}, \sigma^2)

    Parameters
    ----------
    %(y)s
    %(k)s
    %(marginalized)s
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
        ``sigma`` takes any positive family of :data:`mixtures.model.spec.SCALE_FAMILIES`
        (``Uniform`` with ``lower >= 0`` included).
    sigma : float, optional
        A known shared sd: the means are then the only unknowns besides the weights.
    %(sigma_floor)s
    %(labels)s
    %(family)s
    %(nu)s

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.shared_sd_mixture(y, 3)
    >>> model["sigma"].ndim
    0
    """
    return _unknown_params_mixture(
        y, k, marginalized, ordered, priors, True, sigma, sigma_floor, labels, family, nu
    )


@fill_doc
def full_mixture(
    y,
    k: int,
    *,
    marginalized: bool = True,
    ordered: bool = True,
    priors=None,
    sigma=None,
    sigma_floor="auto",
    labels=None,
    family: str = "normal",
    nu=None,
) -> pm.Model:
    r"""Dirichlet-Categorical-Normal mixture with per-component means and sds.

    .. math::

        w \sim \text{Dirichlet}(a), \quad \mu_j \sim N(m, s^2), \quad \sigma_j \sim p(\sigma),
        \quad z_i \sim \text{Categorical}(w), \quad y_i \mid z_i \sim N(\mu_{z_i}, \sigma_{z_i}^2)

    Parameters
    ----------
    %(y)s
    %(k)s
    %(marginalized)s
    ordered : bool, default True
        Constrain ``means`` to increase with the component index, as in
        :func:`shared_sd_mixture` (no ``initval`` needed).
    priors : dict, optional
        Overrides of :func:`default_priors` (see :func:`shared_sd_mixture`).
    sigma : float or array-like of shape (k,), optional
        Known component sds (the model ``normal_mixture`` of the Stan reference set with
        known scales): the means and weights are then the unknowns.
    %(sigma_floor)s
    %(labels)s
    %(family)s
    %(nu)s

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.full_mixture(y, 3)
    >>> model.coords["component"]
    (np.int64(0), np.int64(1), np.int64(2))
    """
    return _unknown_params_mixture(
        y, k, marginalized, ordered, priors, False, sigma, sigma_floor, labels, family, nu
    )
