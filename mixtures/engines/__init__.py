"""Sampling engines: a registry, the ``"auto"`` rule, and handles that refit without recompiling.

One module per engine; each engine class follows one contract
(:class:`~mixtures.engines.base.Engine`: ``installed``, ``supports``, ``sample`` returning
:class:`~mixtures.engines.base.RawDraws`) and says whether it supports a model (and why not).
:data:`REGISTRY` (:mod:`mixtures.engines.registry`) lists them in the order ``"auto"`` walks:

``"gibbs"`` (:mod:`mixtures.engines.gibbs`)
    Our own batched Gibbs sampler with replica exchange, for the univariate factories with a
    Dirichlet weight prior and Normal (or known) means; latent and marginalised alike.
``"mfm"`` (:mod:`mixtures.engines.mfm`)
    The telescoping sampler, for :func:`mixtures.mfm_mixture` models only (a prior on the
    number of components); the other engines refuse or cannot sample them well.
``"nutpie"`` (:mod:`mixtures.engines.nutpie`)
    Marginalised models from N = 2,000 when nutpie is installed (its faster gradient repays
    its compile time there; ``bench/speed.py``).
``"pymc"`` (:mod:`mixtures.engines.pymc`)
    Everything else: PyMC's loop, the reference implementation.

``"numpyro"`` is never chosen by ``"auto"``; variational inference is :func:`mixtures.fit_advi`
(:mod:`mixtures.engines.advi`).

The other modules: :mod:`~mixtures.engines.handle` (:class:`CompiledMixture`,
:func:`compile_model` and the argument checks), :mod:`~mixtures.engines.finish` (raw draws to
InferenceData), :mod:`~mixtures.engines.seeds`, and :mod:`~mixtures.engines.sampling` (the
public :func:`mixtures.sample`).

Nothing here is cached behind the user's back: :func:`mixtures.sample` builds a fresh handle per
call (the Gibbs engine compiles nothing per model; PyTensor and Numba cache compiled code on
disk, keyed by the code itself). To refit without recompiling, keep the handle that
:func:`compile_model` returns; it reads the model's current data and its spec at every call.

The names below are imported on first use (PEP 562), so importing one engine's module does
not import every engine.
"""

from __future__ import annotations

import importlib

__all__ = [
    "REGISTRY",
    "SAMPLERS",
    "CompiledMixture",
    "Engine",
    "EngineBase",
    "RawDraws",
    "available_samplers",
    "check_draws",
    "check_model",
    "choose_sampler",
    "compile_model",
    "is_latent",
    "one_seed",
]

#: Public names and the module each lives in.
_LAZY = {
    "Engine": "mixtures.engines.base",
    "EngineBase": "mixtures.engines.base",
    "RawDraws": "mixtures.engines.base",
    "REGISTRY": "mixtures.engines.registry",
    "SAMPLERS": "mixtures.engines.registry",
    "available_samplers": "mixtures.engines.registry",
    "choose_sampler": "mixtures.engines.registry",
    "CompiledMixture": "mixtures.engines.handle",
    "check_draws": "mixtures.engines.handle",
    "check_model": "mixtures.engines.handle",
    "compile_model": "mixtures.engines.handle",
    "one_seed": "mixtures.engines.seeds",
    "is_latent": "mixtures.engines.pymc",
    "GibbsEngine": "mixtures.engines.gibbs",
    "MFMEngine": "mixtures.engines.mfm",
    "NumpyroEngine": "mixtures.engines.numpyro",
    "NutpieEngine": "mixtures.engines.nutpie",
    "PymcEngine": "mixtures.engines.pymc",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mixtures.engines' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})
