"""NumPyro's NUTS (JAX) through ``pm.sample(nuts_sampler="numpyro")``; marginalised models."""

from __future__ import annotations

import importlib.util

import pymc as pm

from mixtures.engines.pymc import is_latent

__all__ = ["NumpyroEngine"]


class NumpyroEngine:
    """NumPyro NUTS; JAX re-traces the model at each call (about 10 s on a CPU)."""

    name = "numpyro"

    @staticmethod
    def installed() -> bool:
        """Whether numpyro can be imported."""
        return importlib.util.find_spec("numpyro") is not None

    @staticmethod
    def supports(model, spec) -> tuple[bool, str]:
        """Marginalised models with numpyro installed."""
        if is_latent(model):
            return False, "latent model (NUTS has no discrete steps): use marginalized=True"
        if not NumpyroEngine.installed():
            return False, "numpyro is not installed: pip install 'mixtures[fast]'"
        return True, "marginalised model: NumPyro NUTS"

    def __init__(self, model, spec):
        self.model, self.spec = model, spec
        self.compile_seconds = 0.0

    def sample(self, *, draws, tune, chains, random_seed, progressbar, **kwargs):
        """Run NumPyro's NUTS; return ``(idata, steps)``."""
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
        return idata, "numpyro NUTS (JAX)"
