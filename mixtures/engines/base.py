"""The engine contract: what every engine declares, takes and returns.

An engine is a class in :data:`mixtures.engines.registry.REGISTRY`. The class says whether it
can run here (:meth:`Engine.installed`), whether it samples a model and why not
(:meth:`Engine.supports`, where each engine writes its own rules, also those of the
``"auto"`` choice) and, once built for one model, samples it (:meth:`Engine.sample`) into one
raw type, :class:`RawDraws`, that :func:`mixtures.engines.finish.finish` turns into the
library's InferenceData. :class:`EngineBase` holds the defaults an engine may inherit.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from mixtures.engines.extend import AUTO_TUNE, DEFAULT_DRAWS

__all__ = ["Engine", "EngineBase", "RawDraws", "takes_option"]


@dataclass
class RawDraws:
    """An engine's draws before they become an InferenceData.

    Exactly one of `trace` (a PyMC-based engine's InferenceData) and `posterior` (arrays of
    our own engines) is given.

    Attributes
    ----------
    steps : str
        The steps that drew them, recorded as ``posterior.attrs["mixtures_steps"]``.
    trace : arviz.InferenceData, optional
        The ``posterior`` and ``sample_stats`` groups of a PyMC, nutpie or NumPyro run (its
        other groups are rebuilt by :func:`~mixtures.engines.finish.finish`).
    posterior : dict of str to numpy.ndarray, optional
        Arrays of shape (chains, draws, ...) by variable name (``weights``, ``means``,
        ``sigma``, ``chol_cov``, ``assignment``, ...).
    stats : dict of str to numpy.ndarray, optional
        The sample stats, shape (chains, draws, ...); with `posterior` only.
    attrs : dict, default {}
        Extra ``posterior.attrs`` (e.g. ``mixtures_sampling_seconds``, the ladder).
    reason : str, optional
        Replaces the engine's reason for this run (e.g. ``"user-given steps"``).
    """

    steps: str
    trace: Any = None
    posterior: dict | None = None
    stats: dict | None = None
    attrs: dict = field(default_factory=dict)
    reason: str | None = None

    def __post_init__(self):
        if (self.trace is None) == (self.posterior is None):
            raise ValueError(
                "`RawDraws` should hold either `trace` or `posterior`, but got "
                f"{'both' if self.trace is not None else 'neither'}"
            )
        if self.posterior is not None and self.stats is None:
            self.stats = {}


@runtime_checkable
class Engine(Protocol):
    """What every engine class provides (see the module docstring).

    Attributes
    ----------
    name : str
        Its key in the registry and in ``sampler=``.
    auto : bool
        Whether ``sampler="auto"`` may choose it at all.
    default_draws, default_tune : int or None
        What ``draws=None`` and ``tune=None`` become; None leaves them to the engine.
    announce : bool
        Whether a run with the progress bar on says which engine runs, and why.
    any_missing_pattern : bool
        Whether it samples data whose missing cells differ from those the model was built on.
    compile_seconds : float
        Seconds spent compiling so far (on the instance).
    """

    name: ClassVar[str]
    auto: ClassVar[bool]
    default_draws: ClassVar[int | None]
    default_tune: ClassVar[int | None]
    announce: ClassVar[bool]
    any_missing_pattern: ClassVar[bool]
    compile_seconds: float

    @staticmethod
    def installed() -> bool:
        """Whether the engine's packages can be imported."""

    @staticmethod
    def supports(model, spec, *, latent_sampler: str = "gibbs", auto: bool = False):
        """Return ``(ok, why)``: whether it samples `model`, and why (not).

        With ``auto=True``, also whether ``"auto"`` should choose it for this model (e.g. a
        minimum data size); `latent_sampler` is what the user asked for latent models.
        """

    def sample(self, *, draws, tune, chains, random_seed, progressbar, **kwargs) -> RawDraws:
        """Sample the model's current data; `random_seed` is an int or None."""


class EngineBase:
    """Defaults for an engine class: always installed, open to ``"auto"``, 1,000 + 1,000.

    Parameters
    ----------
    model : pymc.Model
    spec : MixtureSpec or None
        The model's spec (that of :func:`mixtures.mfm_mixture` models included; None for a
        model not built by a `mixtures` factory).
    latent_sampler : {"gibbs", "nuts"}, default "gibbs"
        How a latent model's continuous parameters are updated (PyMC's loop only).
    """

    name: ClassVar[str] = ""
    auto: ClassVar[bool] = True
    default_draws: ClassVar[int | None] = DEFAULT_DRAWS
    default_tune: ClassVar[int | None] = AUTO_TUNE
    announce: ClassVar[bool] = True
    any_missing_pattern: ClassVar[bool] = False

    def __init__(self, model, spec, *, latent_sampler: str = "gibbs"):
        self.model = model
        self.spec = spec
        self.latent_sampler = latent_sampler
        self.compile_seconds = 0.0

    @staticmethod
    def installed() -> bool:
        """Whether the engine can run here (its packages are always installed)."""
        return True


def takes_option(engine, option: str) -> bool:
    """Whether `engine`'s ``sample`` names `option` among its parameters (not ``**kwargs``).

    Parameters
    ----------
    engine : Engine class or instance
    option : str

    Returns
    -------
    bool
    """
    params = inspect.signature(engine.sample).parameters
    return option in params and params[option].kind is not inspect.Parameter.VAR_KEYWORD
