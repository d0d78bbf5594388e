r"""A vectorised Gibbs step for the latent ``Categorical`` assignments of a mixture.

Given every other parameter, the assignments :math:`z_1, \dots, z_N` of a mixture are
conditionally independent, each with full conditional

.. math::

    p(z_i = j \mid \cdot) \propto \exp\big(\ell_{ij}\big), \qquad
    \ell_{ij} = \log p(z_i = j \mid w) + \log p(y_i \mid z_i = j, \theta),

so all N of them can be drawn at once from the (K, N) matrix :math:`\ell` in O(N K). PyMC's
default :class:`~pymc.step_methods.CategoricalGibbsMetropolis` instead loops over the N
elements and evaluates the whole model's log-density for each candidate: O(N^2 K) a sweep.

:class:`AssignmentGibbs` builds :math:`\ell` symbolically from the model (the log-density
terms that depend on the assignment, evaluated elementwise), vectorises it over the K
candidate values and compiles it once.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.step_methods.compound import BlockedStep, Competence, StepMethodState
from pymc.step_methods.state import dataclass_state
from pymc.util import get_random_generator, get_value_vars_from_user_vars
from pytensor.graph.replace import vectorize_graph
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.basic import CategoricalRV

from mixtures.model.densities import normal_logpdf

__all__ = ["AssignmentGibbs", "observed_reader"]

_N_PROBES = 8


@dataclass_state
class AssignmentGibbsState(StepMethodState):
    """Sampling state: only the random generator (the step keeps no tuning state)."""


def observed_reader(model, name: str = "y"):
    """Return a cheap zero-argument callable giving the current observed data of `name`.

    Reads the ``pm.Data`` shared variable directly, so it follows ``pm.set_data``.
    """
    observed = model.rvs_to_values[model[name]]
    if hasattr(observed, "get_value"):
        return lambda: observed.get_value(borrow=True)
    return lambda: observed.data


def _draw_categorical(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one category per column of a (K, N) matrix of unnormalised log-probabilities."""
    probs = np.exp(logits - logits.max(axis=0, keepdims=True))
    cdf = np.cumsum(probs, axis=0)
    u = rng.random(logits.shape[1]) * cdf[-1]
    # Number of categories whose cumulative mass is <= u is the drawn index.
    return np.minimum((cdf <= u).sum(axis=0), logits.shape[0] - 1)


class AssignmentGibbs(BlockedStep):
    """Draw all assignments of a mixture at once from their exact full conditional.

    A proper PyMC step method: it combines with NUTS (or any step) in a compound step, runs
    on several chains and cores, takes ``random_seed`` through :func:`pymc.sample`, and
    pickles with cloudpickle (as PyMC's own steps do, which is how PyMC ships them to worker
    processes).

    Parameters
    ----------
    vars : list of one variable
        The ``Categorical`` assignment variable, shape (n_obs,).
    model : pymc.Model, optional
        Taken from the context if omitted.
    rng : int or numpy.random.Generator, optional
        Source of randomness (:func:`pymc.sample` resets it from ``random_seed``).
    compile_kwargs : dict, optional
        Passed to :func:`pytensor.function`.

    Raises
    ------
    ValueError
        If the variable is not a 1-D ``Categorical``, or if the assignments are not
        conditionally independent given the other variables (a log-density term that
        depends on them is not elementwise in them, or changing one assignment changes the
        conditional of another). A wrong model is refused rather than sampled wrongly.

    Examples
    --------
    >>> import pymc as pm, mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.full_mixture(y, 3)
    >>> with model:
    ...     step = mixtures.AssignmentGibbs([model["assignment"]])
    """

    name = "assignment_gibbs"
    default_blocked = True
    stats_dtypes_shapes = {"n_changed": (np.int64, [])}
    _state_class = AssignmentGibbsState

    def __init__(self, vars, *, model=None, rng=None, compile_kwargs=None, blocked=True):
        model = pm.modelcontext(model)
        value_vars = get_value_vars_from_user_vars(vars, model)
        if len(value_vars) != 1:
            raise ValueError(
                f"`vars` should hold exactly one Categorical variable, but got {len(value_vars)}"
            )
        (value,) = value_vars
        rv = model.values_to_rvs[value]
        if not isinstance(rv.owner.op, CategoricalRV):
            raise ValueError(f"`{rv.name}` should be a Categorical variable, but got {rv.owner.op}")
        if rv.ndim != 1:
            raise ValueError(
                f"`{rv.name}` should be 1-D (one per observation), but got {rv.ndim}-D"
            )

        self.vars = [value]
        self.blocked = blocked
        self.rng = get_random_generator(rng)
        self._name = value.name

        terms = self._dependent_terms(model, value, rv.name)
        elementwise = terms[0]
        for term in terms[1:]:
            elementwise = elementwise + term
        # Evaluate the elementwise log-density for a whole batch of assignment vectors.
        batch = pt.matrix(f"{value.name}_batch", dtype=value.dtype)
        batched = vectorize_graph(elementwise, {value: batch})
        inputs = [v for v in model.value_vars if v is not value and v in set(ancestors([batched]))]
        self._input_names = [v.name for v in inputs]
        self._fn = pytensor.function(
            [*inputs, batch], batched, on_unused_input="ignore", **(compile_kwargs or {})
        )
        point = model.initial_point()
        self.k = self._n_categories(model, rv, point)
        self._probe_independence(point, rv.name)
        self._fast = self._normal_mixture_fast_path(model, value, point)

    @staticmethod
    def _dependent_terms(model, value, name):
        """Log-density terms that depend on the assignment; each must be elementwise in it."""
        terms = []
        all_terms = model.logp(vars=model.basic_RVs, sum=False, jacobian=False)  # one pass
        for var, term in zip(model.basic_RVs, all_terms):
            if value in set(ancestors([term])):
                terms.append((var.name, term))
        for pot, pot_graph in zip(model.potentials, model.replace_rvs_by_values(model.potentials)):
            if value in set(ancestors([pot_graph])):
                raise ValueError(
                    f"`{name}` should enter the model only through per-observation densities, "
                    f"but the Potential `{pot.name}` depends on it: its conditional is not "
                    "known to factorise, use pymc.CategoricalGibbsMetropolis instead"
                )
        bad = [n for n, t in terms if t.ndim != value.ndim]
        if bad:
            raise ValueError(
                f"`{name}` should be conditionally independent across observations, but the "
                f"log-density of {bad} depends on all of it jointly (not elementwise); use "
                "pymc.CategoricalGibbsMetropolis instead"
            )
        return [t for _, t in terms]

    @staticmethod
    def _n_categories(model, rv, point) -> int:
        (p,) = model.replace_rvs_by_values([rv.owner.inputs[-1].shape[-1]])
        return int(model.compile_fn(p, inputs=model.value_vars, on_unused_input="ignore")(point))

    def _probe_independence(self, point, name):
        """Change one assignment at a time; only that observation's term may move."""
        z0 = np.asarray(point[self._name])
        n = z0.shape[0]
        if n < 2:
            return
        rng = np.random.default_rng(0)
        positions = np.unique(np.r_[0, n - 1, rng.integers(0, n, _N_PROBES - 2)])
        batch = np.repeat(z0[None, :], positions.size + 1, axis=0)
        batch[np.arange(1, positions.size + 1), positions] = (z0[positions] + 1) % self.k
        try:
            out = self._fn(*[point[v] for v in self._input_names], batch)
        except Exception as err:  # shape mismatch: some term is not one-per-observation
            raise ValueError(
                f"`{name}` should map one-to-one onto the observations, but evaluating its "
                f"conditional failed: {err}"
            ) from err
        for row, pos in enumerate(positions, start=1):
            moved = np.flatnonzero(~np.isclose(out[row], out[0], rtol=0, atol=1e-12))
            if moved.size and not np.array_equal(moved, [pos]):
                raise ValueError(
                    f"`{name}` should be conditionally independent across observations, but "
                    f"changing element {pos} changed the conditional of element(s) "
                    f"{moved[moved != pos][:5].tolist()}; use pymc.CategoricalGibbsMetropolis"
                )

    def _normal_mixture_fast_path(self, model, value, point):
        """NumPy logits for a univariate Normal mixture, used only where verified identical.

        If the model has ``weights``, ``means``, ``sigma`` and observed ``y`` and its conditional
        logits equal log w_j + log N(y_i | mu_j, sigma_j) at the initial point and at three
        random points (rtol 1e-9), compute them in NumPy: ~10x fewer microseconds than the
        generic compiled graph at small N. Otherwise return None (generic path).
        """
        names = ("weights", "means", "sigma", "y")
        if not all(n in model.named_vars for n in names) or model["y"] not in model.observed_RVs:
            return None
        if model["y"].ndim != 1:  # multivariate observations: the generic path
            return None
        params = model.replace_rvs_by_values([model[n] for n in names[:3]])
        inputs = [v for v in model.value_vars if v is not value]
        try:
            fast = {
                "params": pytensor.function(inputs, params, on_unused_input="ignore"),
                "y": observed_reader(model),
                "inputs": [v.name for v in inputs],
            }
        except Exception:  # e.g. parameters that depend on the assignment itself
            return None
        rng = np.random.default_rng(1)
        for trial in range(4):
            probe = dict(point)
            if trial:
                for v in inputs:
                    probe[v.name] = point[v.name] + rng.normal(0, 0.5, np.shape(point[v.name]))
            generic = self.conditional_logits(probe, fast=None)
            if not np.allclose(self.conditional_logits(probe, fast=fast), generic, rtol=1e-9):
                return None
        return fast

    def conditional_logits(self, point, fast="auto") -> np.ndarray:
        """Return the (K, n_obs) matrix of unnormalised full-conditional log-probabilities."""
        fast = self._fast if fast == "auto" else fast
        if fast is not None:
            w, mu, sd = fast["params"](*[point[n] for n in fast["inputs"]])
            y = fast["y"]()
            sd = np.broadcast_to(sd, mu.shape)[:, None]
            return np.log(w)[:, None] + normal_logpdf(y[None, :], mu[:, None], sd)
        n = np.shape(point[self._name])[0]
        candidates = np.broadcast_to(
            np.arange(self.k, dtype=point[self._name].dtype)[:, None], (self.k, n)
        )
        return self._fn(*[point[v] for v in self._input_names], np.ascontiguousarray(candidates))

    def step(self, point):
        """Draw every assignment from its full conditional given the rest of `point`."""
        old = point[self._name]
        new = _draw_categorical(self.conditional_logits(point), self.rng).astype(old.dtype)
        point = {**point, self._name: new}
        return point, [{"n_changed": int((new != old).sum())}]

    def reset_tuning(self):
        """Nothing to tune."""

    @staticmethod
    def competence(var, has_grad):
        """Never chosen automatically by PyMC; :func:`mixtures.sample` assigns it."""
        return Competence.INCOMPATIBLE
