"""nutpie's NUTS (``pip install mixtures[fast]``) on marginalised models.

The compiled model is kept by the engine object and refitted with ``with_data`` on the model's
current ``y_data`` at every call (no recompilation).
"""

from __future__ import annotations

import importlib.util
import time

from mixtures.engines.base import EngineBase, RawDraws
from mixtures.engines.pymc import is_latent

__all__ = ["NUTPIE_MIN_N", "NutpieEngine"]

#: ``"auto"`` chooses nutpie from this many observations (below, PyMC's NUTS is faster).
NUTPIE_MIN_N = 2000


class NutpieEngine(EngineBase):
    """nutpie, Numba (default) or JAX backend."""

    name = "nutpie"

    @staticmethod
    def installed() -> bool:
        """Whether nutpie can be imported."""
        return importlib.util.find_spec("nutpie") is not None

    @staticmethod
    def supports(model, spec, *, latent_sampler="gibbs", auto=False) -> tuple[bool, str]:
        """Marginalised models with nutpie installed; for ``"auto"``, from N = 2,000."""
        if is_latent(model):
            return False, "latent model (NUTS has no discrete steps): use marginalized=True"
        if not NutpieEngine.installed():
            return False, "nutpie is not installed: pip install 'mixtures[fast]'"
        n_obs = int(model["y_data"].get_value().shape[0])
        if auto and n_obs < NUTPIE_MIN_N:
            return False, f"N = {n_obs} < {NUTPIE_MIN_N}, where PyMC's NUTS is faster"
        return True, "marginalised model: nutpie NUTS"

    def __init__(self, model, spec, *, latent_sampler="gibbs"):
        super().__init__(model, spec, latent_sampler=latent_sampler)
        self._compiled = None

    def sample(self, *, draws, tune, chains, random_seed, progressbar, **kwargs) -> RawDraws:
        """Run ``nutpie.sample`` (``backend="numba"`` or ``"jax"``); return its trace."""
        import nutpie

        backend = kwargs.pop("backend", "numba")
        if self._compiled is None or self._compiled[0] != backend:
            t0 = time.perf_counter()
            compiled = nutpie.compile_pymc_model(
                self.model,
                backend=backend,
                gradient_backend="jax" if backend == "jax" else "pytensor",
                freeze_model=False,  # keep y_data a data variable, for with_data refits
            )
            self.compile_seconds += time.perf_counter() - t0
            self._compiled = (backend, compiled)
        compiled = self._compiled[1].with_data(y_data=self.model["y_data"].get_value())
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=random_seed,
            progress_bar=progressbar,
            save_warmup=False,
            **kwargs,
        )
        return RawDraws(trace=idata, steps=f"nutpie NUTS ({backend})")
