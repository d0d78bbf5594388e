"""The MFM's spec: the prior on K, the weights given K, and :class:`MFMSpec`.

Shared by the univariate (:mod:`mixtures.model.mfm`) and the multivariate
(:mod:`mixtures.model.mfm_mv`)
factories and by the telescoping sampler (:mod:`mixtures.engines.mfm`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from mixtures.model.spec import MixtureSpec, Prior
from mixtures.model.validation import check_integer

__all__ = [
    "DEFAULT_K_MAX",
    "K_PRIORS",
    "MFM_WEIGHTS",
    "MFMSpec",
    "check_gamma",
    "check_k_max",
    "k_prior_pmf",
    "mfm_spec",
    "mfm_weights",
]

#: Named priors on K: ``K - 1`` follows the SciPy family, with these default parameters.
#: ``"bnb"`` is the beta-negative-binomial BNB(alpha, a, b) of Frühwirth-Schnatter et al.
#: (2021), whose recommended default is BNB(1, 4, 3); ``"poisson"`` the shifted Poisson;
#: ``"geometric"`` K ~ Geometric(p) on 1, 2, ...; ``"uniform"`` is uniform on 1..k_max.
K_PRIORS = {
    "bnb": ({"alpha": 1.0, "a": 4.0, "b": 3.0}, lambda alpha, a, b: stats.betanbinom(alpha, a, b)),
    "poisson": ({"mu": 3.0}, lambda mu: stats.poisson(mu)),
    "geometric": ({"p": 0.1}, lambda p: stats.geom(p, loc=-1)),
    "uniform": ({}, None),
}
DEFAULT_K_MAX = 30
#: The name of the weights prior in an MFM spec: Dirichlet(gamma_K) given K. A distinct name,
#: so that engines for fixed-k models refuse the spec.
MFM_WEIGHTS = "MFMDirichlet"


@dataclass(frozen=True, eq=False)
class MFMSpec(MixtureSpec):
    """The resolved spec of a mixture of finite mixtures (see :class:`~mixtures.MixtureSpec`).

    ``k`` is ``k_max``, the largest number of components the sampler considers; the component
    priors (``priors["means"]``, ``priors["sigma"]``, or ``priors["wishart"]``) are those of
    one component (scalars), shared by all. ``priors["weights"]`` holds ``gamma``.

    Attributes
    ----------
    k_prior : tuple of float
        p(K = 1), ..., p(K = k_max), normalised.
    k_prior_name : str
        How the prior was given, e.g. ``"bnb(alpha=1.0, a=4.0, b=3.0)"`` or ``"array"``.
    gamma : float
        The Dirichlet parameter (static) or its numerator (dynamic).
    dynamic : bool
        Dirichlet(gamma / K) weights (dynamic MFM) instead of Dirichlet(gamma).
    """

    k_prior: tuple = ()
    k_prior_name: str = ""
    gamma: float = 1.0
    dynamic: bool = False

    @property
    def kind(self) -> str:
        """``"mfm"`` (univariate) or ``"mfm_mv"``."""
        return "mfm_mv" if self.family == "mfm_mvnormal" else "mfm"

    @property
    def free(self) -> tuple[str, ...]:
        """Names of the free continuous parameters."""
        return tuple(n for n in ("weights", "means", "sigma", "wishart") if n in self.priors)

    def gamma_k(self, k) -> np.ndarray:
        """Return the Dirichlet parameter given K = `k` (array-like)."""
        k = np.asarray(k, dtype=float)
        return self.gamma / k if self.dynamic else np.full_like(k, self.gamma)

    def to_dict(self) -> dict:
        """JSON-ready form, with the MFM's fields."""
        out = super().to_dict()
        out.update(
            k_prior=list(self.k_prior),
            k_prior_name=self.k_prior_name,
            gamma=self.gamma,
            dynamic=self.dynamic,
        )
        return out

    def replace(self, **changes) -> MFMSpec:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def k_prior_pmf(k_prior, k_max: int | None = None) -> tuple[np.ndarray, str]:
    """Resolve a prior on K to its pmf on 1..k_max.

    Parameters
    ----------
    k_prior : str, dict or array-like
        A name of :data:`K_PRIORS` (default parameters), a dict ``{"dist": name, **params}``,
        or the pmf of K = 1, 2, ..., len(k_prior) (normalised here).
    k_max : int, optional
        Truncation of a named prior (default 30); an array's length is its own k_max (a
        different `k_max` is refused).

    Returns
    -------
    (numpy.ndarray, str)
        The pmf (sums to 1) and a description.
    """
    if isinstance(k_prior, str | Mapping):
        entry = {"dist": k_prior} if isinstance(k_prior, str) else dict(k_prior)
        name = entry.pop("dist", None)
        if name not in K_PRIORS:
            raise ValueError(f"`k_prior` should name one of {list(K_PRIORS)}, but got {name!r}")
        defaults, family = K_PRIORS[name]
        unknown = sorted(set(entry) - set(defaults))
        if unknown:
            raise ValueError(
                f"`k_prior` parameters should be among {sorted(defaults)} for {name!r}, "
                f"but got {unknown}"
            )
        params = {**defaults, **{k: float(v) for k, v in entry.items()}}
        k_max = DEFAULT_K_MAX if k_max is None else check_k_max(k_max)
        if family is None:
            pmf = np.ones(k_max)
        else:
            pmf = np.asarray(family(**params).pmf(np.arange(k_max)), dtype=float)
        desc = f"{name}({', '.join(f'{k}={v}' for k, v in params.items())}), k_max={k_max}"
    else:
        pmf = np.asarray(k_prior, dtype=float)
        if pmf.ndim != 1 or pmf.size < 1:
            raise ValueError(
                f"`k_prior` should be a 1-D pmf of K = 1, 2, ..., but got shape {pmf.shape}"
            )
        if k_max is not None and check_k_max(k_max) != pmf.size:
            raise ValueError(
                f"`k_max` should be len(k_prior) = {pmf.size} for an array prior, but got {k_max}"
            )
        desc = "array"
    if not np.isfinite(pmf).all() or (pmf < 0).any() or pmf.sum() <= 0:
        raise ValueError(
            f"`k_prior` should be finite, >= 0 and not all 0, but got {np.round(pmf, 6).tolist()}"
        )
    return pmf / pmf.sum(), desc


def check_k_max(k_max) -> int:
    """Return `k_max` as an int >= 1, or raise."""
    return check_integer(k_max, "k_max")


def check_gamma(gamma) -> float:
    """Return `gamma` as a float > 0, or raise."""
    if isinstance(gamma, bool) or not np.isscalar(gamma) or not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"`gamma` should be a number > 0, but got {gamma!r}")
    return float(gamma)


def mfm_spec(family: str, priors: dict, k_prior, k_max, gamma, dynamic, **fields) -> MFMSpec:
    """Return the spec of an MFM whose component `priors` are resolved (one per component).

    Parameters
    ----------
    family : str
        ``"mfm_normal"`` or ``"mfm_mvnormal"``.
    priors : dict of str to Prior
        The resolved component priors; the weights' (``MFM_WEIGHTS``, `gamma`) is added here.
    k_prior, k_max, gamma, dynamic
        As :func:`mixtures.mfm_mixture` takes them (checked here).
    **fields
        The other fields of :class:`MFMSpec` (``built_on``, ``sigma_floor``, ...).

    Returns
    -------
    MFMSpec
    """
    pmf, desc = k_prior_pmf(k_prior, k_max)
    gamma = check_gamma(gamma)
    return MFMSpec(
        family=family,
        k=int(pmf.size),
        marginalized=True,
        ordered=False,
        shared_sd=False,
        priors={**priors, "weights": Prior(MFM_WEIGHTS, {"a": gamma})},
        k_prior=tuple(float(p) for p in pmf),
        k_prior_name=desc,
        gamma=gamma,
        dynamic=bool(dynamic),
        **fields,
    )


def mfm_weights(spec: MFMSpec):
    """Add ``K`` and the MFM's ``weights`` (zero beyond K) to the model in context."""
    k_max = spec.k
    k_minus_one = pm.Categorical("k_minus_one", p=np.asarray(spec.k_prior))
    k = pm.Deterministic("K", k_minus_one + 1)
    a = spec.gamma / k if spec.dynamic else spec.gamma
    raw = pm.Gamma("weights_raw", alpha=a, beta=1.0, dims="component")
    used = pt.lt(pt.arange(k_max), k)
    kept = pt.switch(used, raw, 0.0)
    return pm.Deterministic("weights", kept / kept.sum(), dims="component")
