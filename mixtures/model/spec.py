r"""The resolved spec of a mixture model: one source of truth, fixed when the model is built.

A factory resolves everything it needs (the component family, ``k``, the variant, the ordering,
and every prior **as numbers**, data-scaled defaults included) into one frozen
:class:`MixtureSpec`, builds the :class:`pymc.Model` from it, and keeps it with the model.
:func:`spec_of` reads it back. Engines, summaries and refits read the spec (and the model's
current ``pm.Data``), never the factory again, so a prior cannot be re-derived from later data
and every engine samples the same model.

Prior families are one table (:data:`PRIOR_TABLE`): each entry names its PyMC distribution,
its parameters, which of them must be positive, the family's own checks (a Uniform's bounds, an
inverse-Wishart's degrees of freedom and scale matrix), an unnormalised NumPy log-density (used
by the Gibbs engine's Metropolis steps) and its SciPy counterpart (used by simulators and
tests). Each model parameter admits some of them (:data:`PRIOR_FAMILIES` for the univariate
models, :data:`MV_PRIOR_FAMILIES` for the multivariate ones), and :func:`resolve_priors`
merges and checks the user's priors of every model the same way. Adding a family is one entry.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pymc as pm
from scipy import stats

from mixtures._kernels import scale_logpdf_ufunc
from mixtures.model.prior_codes import SCALE_CODES

__all__ = [
    "PRIOR_TABLE",
    "MV_PRIOR_FAMILIES",
    "PRIOR_FAMILIES",
    "UNIVARIATE_FAMILIES",
    "MixtureSpec",
    "Prior",
    "PriorFamily",
    "resolve_priors",
    "spec_of",
]

#: sd priors whose density vanishes fast enough at 0 to keep the posterior proper on tied data.
PROPER_AT_ZERO = ("InverseGamma", "LogNormal")


def auto_floor_applies(dist: str | None) -> bool:
    """Whether ``sigma_floor="auto"`` floors an sd prior of family `dist` on tied data.

    Not under the families of :data:`PROPER_AT_ZERO` (they keep the posterior proper) nor
    under a HalfStudentT (PyMC cannot truncate it); None (no sd prior) has no floor.
    """
    return dist is not None and dist not in PROPER_AT_ZERO and dist != "HalfStudentT"


#: The attribute of a ``pm.Model`` that holds its spec (set by the factories).
SPEC_ATTR = "mixture_spec"


@dataclass(frozen=True)
class PriorFamily:
    """A prior family: PyMC name, canonical parameters, and its densities.

    Attributes
    ----------
    name : str
        The PyMC distribution (``getattr(pm, name)``).
    params : tuple of str
        Canonical parameter names, in PyMC's spelling.
    positive : tuple of str
        Parameters that must be > 0.
    logpdf : callable
        ``logpdf(x, **params)``: the log-density up to a constant in `x`, NumPy only.
    scipy : callable
        ``scipy(**params)``: the frozen SciPy distribution (for simulation and tests).
    aliases : dict
        Other parameter spellings PyMC accepts, each mapped to a converter to the canonical ones.
    code : int
        Scale families: the family's number in :func:`scale_logpdf` (-1 for the others).
    defaults : dict
        Parameter values a user entry naming this family may leave out (e.g. a stick-breaking
        prior's ``alpha``).
    prepare : callable or None
        ``prepare(name, params, shapes) -> params``: the family's canonical form of checked
        parameters, before they are broadcast (an inverse-Wishart's diagonal ``psi`` becomes
        its matrix).
    check : callable or None
        ``check(name, params)``: the family's own rules on the broadcast parameters, beyond
        finiteness and positivity (raises ValueError).
    """

    name: str
    params: tuple[str, ...]
    positive: tuple[str, ...]
    logpdf: Callable | None = None
    scipy: Callable | None = None
    aliases: Mapping[frozenset, Callable] = field(default_factory=dict)
    code: int = -1
    defaults: Mapping[str, float] = field(default_factory=dict)
    prepare: Callable | None = None
    check: Callable | None = None


class _HalfT:
    """|T| with `nu` degrees of freedom and scale `sigma` (SciPy has no half-t)."""

    def __init__(self, nu, sigma):
        self._t = stats.t(df=nu, scale=sigma)

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        return np.where(x >= 0, np.log(2.0) + self._t.logpdf(x), -np.inf)

    def rvs(self, size=None, random_state=None):
        return np.abs(self._t.rvs(size=size, random_state=random_state))


def _scale_family(name, params, positive, scipy, aliases=None, check=None):
    code = SCALE_CODES[name]  # the kernels' code for this family (model/prior_codes.py)

    def logpdf(x, **p):
        values = [p[key] for key in params] + [0.0] * (2 - len(params))
        return scale_logpdf_ufunc(code, np.asarray(x, dtype=float), *values)

    return PriorFamily(name, params, positive, logpdf, scipy, aliases or {}, code, check=check)


def _check_uniform_scale(name: str, params: dict) -> None:
    """Check a Uniform prior on a scale: 0 <= lower < upper."""
    if not (params["lower"] >= 0).all():
        raise ValueError(
            f"`priors[{name!r}]['lower']` should be >= 0 (a scale is positive), "
            f"but got {params['lower'].tolist()}"
        )
    if not (params["upper"] > params["lower"]).all():
        raise ValueError(
            f"`priors[{name!r}]['upper']` should be > lower, but got "
            f"upper={params['upper'].tolist()} and lower={params['lower'].tolist()}"
        )


#: Families for scale parameters (``sigma``): any positive continuous family.
SCALE_FAMILIES = {
    f.name: f
    for f in (
        _scale_family(
            "HalfNormal",
            ("sigma",),
            ("sigma",),
            lambda sigma: stats.halfnorm(scale=sigma),
            {frozenset({"tau"}): lambda tau: {"sigma": 1.0 / np.sqrt(tau)}},
        ),
        _scale_family(
            "HalfCauchy", ("beta",), ("beta",), lambda beta: stats.halfcauchy(scale=beta)
        ),
        _scale_family(
            "HalfStudentT",
            ("nu", "sigma"),
            ("nu", "sigma"),
            lambda nu, sigma: _HalfT(nu, sigma),
        ),
        _scale_family(
            "Exponential",
            ("lam",),
            ("lam",),
            lambda lam: stats.expon(scale=1.0 / lam),
            {frozenset({"scale"}): lambda scale: {"lam": 1.0 / np.asarray(scale, dtype=float)}},
        ),
        _scale_family(
            "Gamma",
            ("alpha", "beta"),
            ("alpha", "beta"),
            lambda alpha, beta: stats.gamma(a=alpha, scale=1.0 / beta),
            {
                frozenset({"mu", "sigma"}): lambda mu, sigma: {
                    "alpha": (np.asarray(mu, float) / sigma) ** 2,
                    "beta": np.asarray(mu, float) / np.asarray(sigma, float) ** 2,
                }
            },
        ),
        _scale_family(
            "InverseGamma",
            ("alpha", "beta"),
            ("alpha", "beta"),
            lambda alpha, beta: stats.invgamma(a=alpha, scale=beta),
        ),
        _scale_family(
            "LogNormal",
            ("mu", "sigma"),
            ("sigma",),
            lambda mu, sigma: stats.lognorm(s=sigma, scale=np.exp(mu)),
        ),
        _scale_family(
            "Uniform",
            ("lower", "upper"),
            ("upper",),
            lambda lower, upper: stats.uniform(loc=lower, scale=np.asarray(upper) - lower),
            check=_check_uniform_scale,
        ),
    )
}

#: Families for the component means.
MEAN_FAMILIES = {
    f.name: f
    for f in (
        PriorFamily(
            "Normal",
            ("mu", "sigma"),
            ("sigma",),
            lambda x, mu, sigma: -0.5 * ((x - mu) / sigma) ** 2,
            lambda mu, sigma: stats.norm(loc=mu, scale=sigma),
        ),
        PriorFamily(
            "StudentT",
            ("nu", "mu", "sigma"),
            ("nu", "sigma"),
            lambda x, nu, mu, sigma: -0.5 * (nu + 1.0) * np.log1p(((x - mu) / sigma) ** 2 / nu),
            lambda nu, mu, sigma: stats.t(df=nu, loc=mu, scale=sigma),
        ),
    )
}

#: Families for the weights.
WEIGHT_FAMILIES = {
    "Dirichlet": PriorFamily(
        "Dirichlet",
        ("a",),
        ("a",),
        lambda x, a: np.sum((a - 1.0) * np.log(x), axis=-1),
        lambda a: stats.dirichlet(alpha=a),
    )
}


def _prepare_inverse_wishart(name: str, params: dict, shapes: dict) -> dict:
    """Take a diagonal ``psi`` as its matrix; refuse any other shape than (d, d)."""
    psi = params["psi"]
    psi = np.diag(psi) if psi.ndim == 1 else psi
    if psi.shape != shapes["psi"]:
        d = shapes["psi"][0]
        raise ValueError(
            f"`priors[{name!r}]['psi']` should be a symmetric positive-definite "
            f"({d}, {d}) matrix (or its diagonal), but got {psi.tolist()}"
        )
    return {**params, "psi": psi}


def _check_inverse_wishart(name: str, params: dict) -> None:
    """Check an inverse-Wishart on (d, d) covariances: nu > d - 1, psi positive-definite."""
    psi = params["psi"]
    d = psi.shape[0]
    nu = float(params["nu"])
    if not nu > d - 1:
        raise ValueError(f"`priors[{name!r}]['nu']` should be > {d - 1}, but got {nu}")
    if not np.allclose(psi, psi.T) or np.any(np.linalg.eigvalsh(psi) <= 0):
        raise ValueError(
            f"`priors[{name!r}]['psi']` should be a symmetric positive-definite "
            f"({d}, {d}) matrix (or its diagonal), but got {psi.tolist()}"
        )


#: Families of the multivariate models only: stick-breaking weights, LKJ correlations and
#: inverse-Wishart covariances.
MV_ONLY_FAMILIES = {
    f.name: f
    for f in (
        PriorFamily(
            "StickBreaking",
            ("alpha",),
            ("alpha",),
            scipy=lambda alpha: stats.beta(1.0, alpha),  # each stick proportion
            defaults={"alpha": 1.0},
        ),
        PriorFamily("LKJ", ("eta",), ("eta",)),
        PriorFamily(
            "InverseWishart",
            ("nu", "psi"),
            (),
            scipy=lambda nu, psi: stats.invwishart(df=float(nu), scale=psi),
            prepare=_prepare_inverse_wishart,
            check=_check_inverse_wishart,
        ),
    )
}

#: Every prior family, by its PyMC name.
PRIOR_TABLE = {**WEIGHT_FAMILIES, **MEAN_FAMILIES, **SCALE_FAMILIES, **MV_ONLY_FAMILIES}


def _admits(*names: str) -> dict[str, PriorFamily]:
    return {name: PRIOR_TABLE[name] for name in names}


#: Prior families per parameter of the univariate models (``nu``: Student-t components).
PRIOR_FAMILIES = {
    "weights": WEIGHT_FAMILIES,
    "means": MEAN_FAMILIES,
    "sigma": SCALE_FAMILIES,
    "nu": SCALE_FAMILIES,
}

#: Prior families per parameter of the multivariate models: ``sigma`` (the HalfNormal scale of
#: the sds) and ``corr`` (LKJ) with ``covariance_prior="lkj"``, ``wishart`` with the
#: inverse-Wishart prior.
MV_PRIOR_FAMILIES = {
    "weights": _admits("Dirichlet", "StickBreaking"),
    "means": _admits("Normal"),
    "sigma": _admits("HalfNormal"),
    "corr": _admits("LKJ"),
    "wishart": _admits("InverseWishart"),
    "nu": SCALE_FAMILIES,  # family="t"
}

#: Univariate component families (``MixtureSpec.family``).
UNIVARIATE_FAMILIES = ("normal", "t")


def _readonly(value) -> np.ndarray:
    arr = np.array(value, dtype=float, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Prior:
    """A resolved prior: a family name and its canonical parameters as numbers.

    Attributes
    ----------
    dist : str
        The PyMC distribution's name.
    params : mapping of str to numpy.ndarray
        Canonical parameters, broadcast to the parameter's shape (read-only arrays).
    """

    dist: str
    params: Mapping[str, np.ndarray]

    def __post_init__(self):
        params = {k: _readonly(v) for k, v in self.params.items()}
        object.__setattr__(self, "params", MappingProxyType(params))

    @property
    def family(self) -> PriorFamily:
        """The :class:`PriorFamily` entry of :data:`PRIOR_TABLE`."""
        return PRIOR_TABLE[self.dist]

    def logpdf(self, x) -> np.ndarray:
        """Unnormalised log-density at `x` (NumPy; the Gibbs engine's Metropolis steps)."""
        return self.family.logpdf(x, **self.params)

    def scipy(self):
        """Return the frozen SciPy distribution (elementwise, broadcast over the parameters)."""
        return self.family.scipy(**self.params)

    def __eq__(self, other) -> bool:
        return isinstance(other, Prior) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict:
        """JSON-ready form: ``{"dist": ..., <param>: list or float}``."""
        out = {"dist": self.dist}
        for key, val in self.params.items():
            out[key] = val.tolist()
        return out


@dataclass(frozen=True, eq=False)
class MixtureSpec:
    """Everything a factory decided about a model, resolved to numbers at build time.

    Attributes
    ----------
    family : str
        Component family: ``"normal"`` or ``"t"`` (Student-t; univariate), or ``"mvnormal"``
        or ``"mvt"`` (multivariate Student-t). A t spec's degrees of freedom are
        ``known["nu"]`` (fixed, one per component) or have the prior ``priors["nu"]``
        (sampled, one per component).
    k : int
        Number of components.
    marginalized : bool
        Whether the assignments are summed out of the model.
    ordered : bool
        Univariate: whether the means are ordered. Multivariate: whether `ordered_by` is set.
    shared_sd : bool
        One sd for all components (univariate).
    priors : mapping of str to Prior
        The resolved priors of the free parameters (``weights``, ``means``, ``sigma``, and
        ``nu`` for t components with sampled degrees of freedom; the multivariate model adds
        ``corr``).
    known : mapping of str to numpy.ndarray
        Parameters fixed by the user (``means``, ``sigma``, a t family's ``nu``), stored in the
        model as data.
    n_features : int or None
        Multivariate models: the number of features.
    covariance : str or None
        Multivariate models: ``"full"``, ``"diag"`` or ``"tied"``.
    ordered_by : int or None
        Multivariate models: the feature whose means are ordered across components.
    built_on : mapping
        Facts of the data the model was built on (``n_obs``, ``mean``, ``sd``): a record, not
        an input; nothing re-derives priors from it.
    sigma_floor : float
        Lower bound of the sds (their prior is truncated there); 0 for none. See
        :func:`mixtures.model.univariate.tie_floor`.
    labelled : bool
        Some observations have known labels (the model's data ``labels``, -1 for unknown):
        they are observed, not sampled.
    missing : str or None
        Multivariate models: ``"model"`` (NaN cells are missing at random; the model's data
        ``observed_cells`` marks the observed ones, ``built_on`` counts the missing) or
        ``"refuse"``; None for the univariate models.
    """

    family: str
    k: int
    marginalized: bool
    ordered: bool
    shared_sd: bool
    priors: Mapping[str, Prior]
    known: Mapping[str, np.ndarray] = field(default_factory=dict)
    n_features: int | None = None
    covariance: str | None = None
    ordered_by: int | None = None
    built_on: Mapping[str, object] = field(default_factory=dict)
    sigma_floor: float = 0.0
    labelled: bool = False
    missing: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "priors", MappingProxyType(dict(self.priors)))
        known = {k: _readonly(v) for k, v in self.known.items()}
        object.__setattr__(self, "known", MappingProxyType(known))
        object.__setattr__(self, "built_on", MappingProxyType(dict(self.built_on)))

    @property
    def kind(self) -> str:
        """Short name of the model: ``known``, ``known_sd``, ``shared_sd``, ``full``, ``mv``."""
        if self.family in ("mvnormal", "mvt"):
            return "mv"
        if "means" in self.known:
            return "known"
        if "sigma" in self.known:
            return "known_sd"
        return "shared_sd" if self.shared_sd else "full"

    @property
    def univariate(self) -> bool:
        """Whether the components are univariate (``family`` "normal" or "t")."""
        return self.family in UNIVARIATE_FAMILIES

    @property
    def free(self) -> tuple[str, ...]:
        """Names of the free continuous parameters."""
        names = ("weights", "means", "sigma", "nu")
        return tuple(name for name in names if name in self.priors)

    def replace(self, **changes) -> MixtureSpec:
        """Return a copy with some fields changed (e.g. ``marginalized=False``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready form (for run records and ``posterior.attrs``)."""
        return {
            "family": self.family,
            "kind": self.kind,
            "k": self.k,
            "marginalized": self.marginalized,
            "ordered": self.ordered,
            "shared_sd": self.shared_sd,
            "priors": {name: p.to_dict() for name, p in self.priors.items()},
            "known": {name: v.tolist() for name, v in self.known.items()},
            "n_features": self.n_features,
            "covariance": self.covariance,
            "ordered_by": self.ordered_by,
            "built_on": dict(self.built_on),
            "sigma_floor": self.sigma_floor,
            "labelled": self.labelled,
        } | ({"missing": self.missing} if self.missing is not None else {})

    def __eq__(self, other) -> bool:
        return isinstance(other, MixtureSpec) and self.to_dict() == other.to_dict()

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string (InferenceData attrs must be str or numbers)."""
        return json.dumps(self.to_dict())


def spec_of(model: pm.Model) -> MixtureSpec:
    """Return the resolved :class:`MixtureSpec` of a model built by a `mixtures` factory.

    Parameters
    ----------
    model : pymc.Model

    Returns
    -------
    MixtureSpec

    Raises
    ------
    ValueError
        If `model` was not built by a `mixtures` factory.

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> spec = mixtures.spec_of(mixtures.full_mixture(y, 3))
    >>> spec.kind, spec.priors["sigma"].dist
    ('full', 'HalfNormal')
    """
    if not isinstance(model, pm.Model):
        raise ValueError(f"`model` should be a pymc.Model, but got {type(model).__name__}")
    spec = getattr(model, SPEC_ATTR, None)
    if spec is None:
        raise ValueError(
            "`model` should be built by a mixtures factory (it carries a MixtureSpec), "
            "but got a model without one"
        )
    return spec


def has_spec(model) -> bool:
    """Whether `model` carries a :class:`MixtureSpec`."""
    return isinstance(getattr(model, SPEC_ATTR, None), MixtureSpec)


def attach(model: pm.Model, spec: MixtureSpec) -> pm.Model:
    """Keep `spec` with `model` (an attribute of the model object itself; no global registry)."""
    setattr(model, SPEC_ATTR, spec)
    return model


# --------------------------------------------------------------------------- prior resolution


def _check_number_array(value, where: str) -> np.ndarray:
    if isinstance(value, bool) or (
        not isinstance(value, numbers.Number) and not hasattr(value, "__len__")
    ):
        raise ValueError(f"`{where}` should be a number or an array of numbers, but got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`{where}` should be a number or an array of numbers, but got {value!r}"
        ) from err
    if not np.isfinite(arr).all():
        raise ValueError(f"`{where}` should be finite, but got {arr.tolist()}")
    return arr


def _entry_params(name: str, entry, default: Prior, families: Mapping) -> tuple:
    """Return the family a user entry names and its parameters merged over the default."""
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"`priors[{name!r}]` should be a dict of distribution parameters, "
            f"but got {type(entry).__name__}"
        )
    entry = dict(entry)  # never keep the caller's dict
    dist = entry.pop("dist", None)
    if dist is not None and dist not in families:
        raise ValueError(
            f"`priors[{name!r}]['dist']` should be one of {list(families)}, but got {dist!r}"
        )
    family = families[dist or default.dist]
    if dist is not None and dist != default.dist:
        return family, {**family.defaults, **entry}
    params = dict(default.params)
    # a user spelling such as tau= replaces the canonical parameter it stands for
    if any(alias <= set(entry) for alias in family.aliases):
        params = {}
    return family, {**params, **entry}


def _canonical(name: str, family: PriorFamily, params: dict) -> dict:
    """Convert an alias spelling to the canonical parameters; refuse any other set."""
    keys = frozenset(params)
    if keys != frozenset(family.params):
        for alias, convert in family.aliases.items():
            rest = keys - alias
            if alias <= keys and rest <= set(family.params):
                params = {
                    **{k: params[k] for k in rest},
                    **convert(**{k: params[k] for k in alias}),
                }
                break
    if frozenset(params) != frozenset(family.params):
        spellings = [list(family.params)] + [sorted(a) for a in family.aliases]
        raise ValueError(
            f"`priors[{name!r}]` should hold the parameters {' or '.join(map(str, spellings))} "
            f"of {family.name}, but got {sorted(params)}"
        )
    return params


def _checked_values(name: str, family: PriorFamily, params: dict, shapes: dict) -> dict:
    """Check every parameter (finite, > 0 where it must be) and broadcast it to its shape."""
    out = {}
    for key in family.params:
        arr = _check_number_array(params[key], f"priors[{name!r}][{key!r}]")
        if key in family.positive and not (arr > 0).all():
            raise ValueError(f"`priors[{name!r}][{key!r}]` should be > 0, but got {arr.tolist()}")
        out[key] = arr
    if family.prepare is not None:
        out = family.prepare(name, out, shapes)
    for key, arr in out.items():
        try:
            out[key] = np.broadcast_to(arr, shapes[key]).copy()
        except ValueError:
            raise ValueError(
                f"`priors[{name!r}][{key!r}]` should be a scalar or have shape {shapes[key]}, "
                f"but got shape {arr.shape}"
            ) from None
    if family.check is not None:
        family.check(name, out)
    return out


def _resolve_one(name: str, entry, default: Prior, families: Mapping, shape) -> Prior:
    """Merge one user entry over its default and check it; return the resolved Prior."""
    family, params = _entry_params(name, entry, default, families)
    params = _canonical(name, family, params)
    shapes = shape if isinstance(shape, Mapping) else dict.fromkeys(family.params, shape)
    return Prior(family.name, _checked_values(name, family, params, shapes))


def resolve_priors(
    priors,
    defaults: dict[str, Prior],
    shapes: dict[str, tuple],
    families: Mapping[str, Mapping[str, PriorFamily]] = PRIOR_FAMILIES,
) -> dict[str, Prior]:
    """Merge user `priors` over `defaults` (precedence user > data-derived default).

    An entry without ``dist`` updates the default's parameters; one naming another ``dist``
    replaces the entry whole (over that family's own defaults). Unknown keys, unknown
    families, missing or extra parameters, non-finite values, non-positive scales and what a
    family refuses itself (:attr:`PriorFamily.check`) are refused here, at build time.

    Parameters
    ----------
    priors : dict or None
        The user's overrides, e.g. ``{"sigma": {"dist": "HalfCauchy", "beta": 5}}``.
    defaults : dict of str to Prior
        The resolved defaults, one per free parameter.
    shapes : dict of str to tuple or dict
        The shape each parameter's prior parameters broadcast to: one shape for all of them,
        or one per prior parameter (e.g. ``{"nu": (), "psi": (d, d)}``).
    families : dict, default :data:`PRIOR_FAMILIES`
        The families each parameter admits (:data:`MV_PRIOR_FAMILIES` for the multivariate
        models).

    Returns
    -------
    dict of str to Prior
    """
    if priors is None:
        return dict(defaults)
    if not isinstance(priors, Mapping):
        raise ValueError(f"`priors` should be a dict, but got {type(priors).__name__}")
    unknown = sorted(set(priors) - set(defaults))
    if unknown:
        raise ValueError(
            f"`priors` keys should be among {list(defaults)}, but got unknown key(s) {unknown}"
        )
    out = dict(defaults)
    for name, entry in priors.items():
        out[name] = _resolve_one(name, entry, defaults[name], families[name], shapes[name])
    return out
