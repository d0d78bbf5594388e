"""The registry of engines and the ``"auto"`` rule that walks it.

Each engine joins by one line in :data:`REGISTRY` and states its own rules in its class's
``supports`` (:class:`mixtures.engines.base.Engine`); the walk below knows no engine by name.
"""

from __future__ import annotations

import pymc as pm

from mixtures.engines.gibbs import GibbsEngine
from mixtures.engines.mfm import MFMEngine
from mixtures.engines.numpyro import NumpyroEngine
from mixtures.engines.nutpie import NutpieEngine
from mixtures.engines.pymc import PymcEngine
from mixtures.model.spec import has_spec, spec_of

__all__ = ["REGISTRY", "SAMPLERS", "available_samplers", "choose_sampler", "spec_or_none"]

#: The engines, in the order ``"auto"`` considers them.
REGISTRY = {
    "gibbs": GibbsEngine,  # refuses mfm_mixture models (their weights prior is "MFMDirichlet")
    "mfm": MFMEngine,  # takes only mfm_mixture models; before the engines that take any model
    "nutpie": NutpieEngine,
    "pymc": PymcEngine,
    "numpyro": NumpyroEngine,  # never chosen by "auto" (NumpyroEngine.auto is False)
}
SAMPLERS = ("auto", *REGISTRY)


def available_samplers() -> dict[str, bool]:
    """Return which engines can run here (``nutpie`` and ``numpyro`` are optional extras)."""
    return {name: engine.installed() for name, engine in REGISTRY.items()}


def spec_or_none(model: pm.Model):
    """Return `model`'s spec, or None for a model not built by a `mixtures` factory."""
    return spec_of(model) if has_spec(model) else None


def choose_sampler(model: pm.Model, *, latent_sampler: str = "gibbs") -> tuple[str, str]:
    """Pick the engine for ``sampler="auto"`` and say why.

    Walks :data:`REGISTRY` and takes the first engine open to ``"auto"`` whose ``supports``
    accepts the model under the auto rules: ``"gibbs"`` if it supports the model (and
    ``latent_sampler`` is ``"gibbs"``); ``"mfm"`` for :func:`mixtures.mfm_mixture` models;
    ``"nutpie"`` for a marginalised model with N >= 2,000 when installed; ``"pymc"``
    otherwise. The rule's figures are in ``bench/RESULTS.md``.

    Parameters
    ----------
    model : pymc.Model
    latent_sampler : {"gibbs", "nuts"}
        ``"nuts"`` asks for NUTS on the continuous parameters, which only PyMC's loop does.

    Returns
    -------
    (str, str)
        The engine's name and the reason, as recorded in ``posterior.attrs``.
    """
    spec = spec_or_none(model)
    reasons = []
    for name, engine in REGISTRY.items():
        if not engine.auto:
            continue
        ok, why = engine.supports(model, spec, latent_sampler=latent_sampler, auto=True)
        if ok:
            not_first = "; ".join(reasons)
            return name, why + (f" (not {not_first})" if not_first else "")
        reasons.append(f"{name}: {why}")
    raise AssertionError("the pymc engine supports every model")  # pragma: no cover
