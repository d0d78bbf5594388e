"""NumPyro's NUTS (JAX) through ``pm.sample(nuts_sampler="numpyro")``; marginalised models."""

from __future__ import annotations

import importlib.util

import pymc as pm

from mixtures.engines.base import EngineBase, RawDraws
from mixtures.engines.pymc import is_latent

__all__ = ["NumpyroEngine"]


class NumpyroEngine(EngineBase):
    """NumPyro NUTS; JAX re-traces the model at each call (about 10 s on a CPU)."""

    name = "numpyro"
    auto = False  # JAX re-traces the model at every call: asked for by name only

    @staticmethod
    def installed() -> bool:
        """Whether numpyro can be imported."""
        return importlib.util.find_spec("numpyro") is not None

    @staticmethod
    def supports(model, spec, *, latent_sampler="gibbs", auto=False) -> tuple[bool, str]:
        """Marginalised models with numpyro installed."""
        if is_latent(model):
            return False, "latent model (NUTS has no discrete steps): use marginalized=True"
        if not NumpyroEngine.installed():
            return False, "numpyro is not installed: pip install 'mixtures[fast]'"
        return True, "marginalised model: NumPyro NUTS"

    def sample(self, *, draws, tune, chains, random_seed, progressbar, **kwargs) -> RawDraws:
        """Run NumPyro's NUTS; return its trace."""
        kwargs.setdefault("compute_convergence_checks", False)
        with self.model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=random_seed,
                progressbar=progressbar,
                nuts_sampler="numpyro",
                **kwargs,
            )
        return RawDraws(trace=idata, steps="numpyro NUTS (JAX)")
