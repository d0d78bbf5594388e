"""PyMC's own loop: the reference implementation.

Marginalised models get NUTS; latent models get :class:`~mixtures.engines.steps.AssignmentGibbs` for
the assignments, the exact conjugate steps where they apply (``latent_sampler="gibbs"``) and
NUTS for whatever is left. The compiled steps are kept by the engine object (that is, by a
:class:`~mixtures.CompiledMixture` handle the user holds) and read the model's ``pm.Data`` at
every call; each fit restarts them from their fresh state, so a refit equals a first fit.
"""

from __future__ import annotations

import time

import numpy as np
import pymc as pm
from pymc.blocking import DictToArrayBijection
from pymc.initial_point import make_initial_point_fns_per_chain
from pymc.step_methods.hmc import quadpotential

from mixtures.engines.base import EngineBase, RawDraws
from mixtures.engines.seeds import SEED_BOUND, chain_seeds
from mixtures.engines.steps.assignment import AssignmentGibbs
from mixtures.engines.steps.conjugate import (
    ConjugateMixtureGibbs,
    MvConjugateGibbs,
    conjugate_vars,
    mv_conjugate_vars,
)
from mixtures.progress import LineProgress, stderr_is_terminal

__all__ = ["PymcEngine", "is_latent"]


def is_latent(model: pm.Model) -> bool:
    """Whether `model` keeps its assignments as the free variable ``assignment``."""
    return "assignment" in model.named_vars and model["assignment"] in model.free_RVs


def latent_steps(model, latent_sampler, target_accept=0.8, compile_kwargs=None):
    """Return the steps :func:`mixtures.sample` gives a latent model, and their description."""
    steps = [AssignmentGibbs([model["assignment"]])]
    names = "AssignmentGibbs[assignment]"
    gibbs, step_class = [], None
    if latent_sampler == "gibbs":
        gibbs, step_class = conjugate_vars(model), ConjugateMixtureGibbs
        if not gibbs:
            gibbs, step_class = mv_conjugate_vars(model), MvConjugateGibbs
    if gibbs:
        steps.append(step_class(gibbs))
        names += f" + {step_class.__name__}[{', '.join(v.name for v in gibbs)}]"
    taken = {"assignment", *(v.name for v in gibbs)}
    rest = [
        model.values_to_rvs[v]
        for v in model.continuous_value_vars
        if model.values_to_rvs[v].name not in taken
    ]
    if rest:
        steps.append(pm.NUTS(rest, target_accept=target_accept, compile_kwargs=compile_kwargs))
        names += f" + NUTS[{', '.join(v.name for v in rest)}]"
    return steps, names


class PymcEngine(EngineBase):
    """PyMC's sampler on the model itself; its compiled steps are kept for the next call."""

    name = "pymc"

    @staticmethod
    def supports(model, spec, *, latent_sampler="gibbs", auto=False) -> tuple[bool, str]:
        """PyMC samples every model."""
        if is_latent(model):
            return True, "latent model: AssignmentGibbs, conjugate steps and NUTS in PyMC's loop"
        return True, "PyMC's NUTS"

    def __init__(self, model, spec, *, latent_sampler="gibbs"):
        super().__init__(model, spec, latent_sampler=latent_sampler)
        self._steps = None
        self._step_key = None

    def _build_steps(self, target_accept, compile_kwargs):
        model = self.model
        t0 = time.perf_counter()
        with model:
            if is_latent(model):
                steps, names = latent_steps(
                    model, self.latent_sampler, target_accept, compile_kwargs
                )
            else:
                steps = [pm.NUTS(target_accept=target_accept, compile_kwargs=compile_kwargs)]
                names = "NUTS"
        self.compile_seconds += time.perf_counter() - t0
        self._steps, self._step_names = steps, names
        # PyMC leaves a step in its tuned state after a run; each fit starts from this one.
        self._fresh_states = [step.sampling_state for step in steps]
        self._fresh_potentials = [getattr(step, "potential", None) for step in steps]

    def sample(
        self, *, draws, tune, chains, random_seed, progressbar, callback=None, **kwargs
    ) -> RawDraws:
        """Run :func:`pymc.sample` with the kept steps (or the user's ``step=``).

        `callback` is :func:`pymc.sample`'s. Where stderr is not a terminal, PyMC's bar would
        show nothing until the end: a line every few seconds is printed instead
        (:class:`mixtures.progress.LineProgress`).
        """
        model = self.model
        _refresh_start(model)
        if progressbar and not stderr_is_terminal():
            callback = _line_callback(chains * (draws + tune), callback)
            progressbar = False
        if callback is not None:
            kwargs["callback"] = callback
        kwargs.setdefault("compute_convergence_checks", False)
        run = dict(draws=draws, tune=tune, chains=chains, random_seed=random_seed)
        if "step" in kwargs:  # the user's own steps: PyMC's loop as it is
            with model:
                idata = pm.sample(**run, progressbar=progressbar, **kwargs)
            return RawDraws(trace=idata, steps="user-given steps", reason="user-given steps")
        target_accept = kwargs.pop("target_accept", 0.8)
        compile_kwargs = kwargs.pop("compile_kwargs", None)
        key = (target_accept, repr(compile_kwargs))
        if self._steps is None or self._step_key != key:
            self._build_steps(target_accept, compile_kwargs)
            self._step_key = key
        steps = self._steps
        for step, state, potential in zip(steps, self._fresh_states, self._fresh_potentials):
            if potential is not None:  # the object the saved state belongs to
                step.potential = step.integrator._potential = potential
            step.sampling_state = state
        initvals = kwargs.pop("initvals", None)
        if len(steps) == 1 and isinstance(steps[0], pm.NUTS):
            initvals = self._nuts_init(steps[0], chain_seeds(random_seed, chains), initvals)
        with model:
            idata = pm.sample(
                **run,
                progressbar=progressbar,
                step=steps if len(steps) > 1 else steps[0],
                initvals=initvals,
                **kwargs,
            )
        return RawDraws(trace=idata, steps=self._step_names)

    def _nuts_init(self, step, seeds, overrides=None):
        """PyMC's ``jitter+adapt_diag`` start, reusing the compiled step (no new compile)."""
        model = self.model
        ipfns = make_initial_point_fns_per_chain(
            model=model, overrides=overrides, jitter_rvs=set(model.free_RVs), chains=len(seeds)
        )
        step._logp_dlogp_func.set_extra_values({})
        points = []
        for ipfn, seed in zip(ipfns, seeds):
            rng = np.random.default_rng(seed)
            for _ in range(20):
                point = ipfn(seed)
                if np.isfinite(step._logp_dlogp_func(DictToArrayBijection.map(point))[0]):
                    break
                seed = int(rng.integers(SEED_BOUND))
            points.append(point)
        data = np.array([DictToArrayBijection.map(p).data for p in points])
        mean = data.mean(axis=0)
        step.potential = quadpotential.QuadPotentialDiagAdapt(
            mean.size, mean, np.ones_like(mean), 10, rng=seeds[0]
        )
        step.integrator._potential = step.potential
        return [self._constrained(p) for p in points]

    def _constrained(self, point):
        """Map a point of value variables back to the random variables' own (named) values."""
        if not hasattr(self, "_backward_fn"):
            model = self.model
            self._backward_fn = model.compile_fn(
                model.replace_rvs_by_values(model.free_RVs),
                inputs=model.value_vars,
                on_unused_input="ignore",
            )
        values = self._backward_fn(point)
        return {rv.name: v for rv, v in zip(self.model.free_RVs, values)}


def _line_callback(total: int, inner=None):
    """Return a ``pm.sample`` callback that counts draws into progress lines, then calls `inner`."""
    lines = LineProgress(total, "PyMC sampling (draws of all chains, tuning included)")

    def callback(trace, draw):
        lines.advance()
        if lines.done == total:
            lines.close()
        if inner is not None:
            inner(trace=trace, draw=draw)

    return callback


def _refresh_start(model) -> None:
    """Point the ordered means' fallback start at the current data's quantiles."""
    y = model["y_data"].get_value()
    if "means" in model.named_vars and model["means"] in model.free_RVs:
        transform = model.rvs_to_transforms.get(model["means"])
        if hasattr(transform, "set_start_from"):
            transform.set_start_from(y)  # OrderedColumn picks its own column of 2-D data
