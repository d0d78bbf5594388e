r"""Exact Gibbs updates for the continuous parameters of a latent univariate mixture.

Given the assignments :math:`z`, with :math:`n_j` points and sum :math:`s_j` in component j:

* ``weights``: :math:`w \mid z \sim \text{Dirichlet}(a + n)`, exactly (the prior is Dirichlet).
* ``means`` under a Normal prior :math:`N(m_j, s_j^2)`: each :math:`\mu_j` is Normal with
  precision :math:`1/s_j^2 + n_j/\sigma_j^2` and mean
  :math:`(m_j/s_j^2 + s_j^{y}/\sigma_j^2) / \text{precision}`. With ordered means the
  conditional of :math:`\mu_j` is that Normal truncated to :math:`(\mu_{j-1}, \mu_{j+1})`, drawn
  one component at a time.
* ``sigma`` under any positive prior: given the means, the components' sds are independent with
  log-conditional :math:`\log p(\sigma_j) - n_j \log \sigma_j - S_j / (2\sigma_j^2)`, where
  :math:`S_j = \sum_{z_i = j} (y_i - \mu_j)^2`. They are updated together by slice sampling
  (Neal 2003) in the variable's unconstrained space. The prior term is the model's own compiled
  log-density, so any family works, and each evaluation costs O(K).

Each update is an exact draw, or an exact-invariant slice move, from a full conditional, so
sweeping them with :class:`~mixtures.AssignmentGibbs` is a valid Gibbs sampler with no NUTS
trajectory at all.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.distributions.transforms import Ordered
from pymc.step_methods.compound import BlockedStep, Competence, StepMethodState
from pymc.step_methods.state import dataclass_state
from pymc.util import get_random_generator, get_value_vars_from_user_vars
from pytensor.tensor.random.basic import CategoricalRV, DirichletRV, NormalRV
from scipy.special import ndtr, ndtri

__all__ = ["ConjugateMixtureGibbs", "conjugate_vars"]

_SLICE_WIDTH = 1.0
_MAX_STEP_OUT = 50


@dataclass_state
class ConjugateMixtureGibbsState(StepMethodState):
    """Sampling state: only the random generator."""


def _op(model, name):
    return model[name].owner.op if model[name].owner is not None else None


def conjugate_vars(model: pm.Model) -> list:
    """Return the free variables of a latent mixture that :class:`ConjugateMixtureGibbs` can take.

    ``weights`` (Dirichlet) always; ``means`` when their prior is Normal; ``sigma`` when free.
    An empty list means the model is not a latent univariate mixture of the expected form.
    """
    free = {v.name for v in model.free_RVs}
    if not {"weights", "assignment"} <= free or "y" not in model.named_vars:
        return []
    if not isinstance(_op(model, "assignment"), CategoricalRV):
        return []
    if not isinstance(_op(model, "y"), NormalRV) or model.potentials:
        return []
    if free - {"weights", "assignment", "means", "sigma"}:
        return []
    if not isinstance(_op(model, "weights"), DirichletRV):
        return []
    out = [model["weights"]]
    if "means" in free and isinstance(_op(model, "means"), NormalRV):
        out.append(model["means"])
    if "sigma" in free:
        out.append(model["sigma"])
    return out


def _truncated_normal(mean, sd, lo, hi, rng):
    """One draw from N(mean, sd^2) truncated to (lo, hi), by the inverse CDF on the far tail."""
    a, b = (lo - mean) / sd, (hi - mean) / sd
    if a > 0:  # work in the upper tail by symmetry, where ndtr keeps its precision
        a, b, sign = -b, -a, -1.0
    else:
        sign = 1.0
    pa, pb = ndtr(a), ndtr(b)
    x = ndtri(pa + rng.random() * (pb - pa)) if pb > pa else (a if np.isfinite(a) else b)
    x = float(np.clip(x, a, b))
    return mean + sign * sd * x


class ConjugateMixtureGibbs(BlockedStep):
    """Exact Gibbs updates of ``weights``, ``means`` and ``sigma`` given the assignments.

    For latent models built by :func:`known_params_mixture`, :func:`shared_sd_mixture` or
    :func:`full_mixture`; use together with :class:`~mixtures.AssignmentGibbs`.
    :func:`conjugate_vars` says which variables of a model it can take.

    Parameters
    ----------
    vars : list
        Some of ``weights``, ``means`` (Normal prior only), ``sigma``.
    model : pymc.Model, optional
        Taken from the context if omitted.
    rng : int or numpy.random.Generator, optional
        Source of randomness (:func:`pymc.sample` resets it from ``random_seed``).

    Raises
    ------
    ValueError
        If the model is not a latent univariate mixture of that form, or a variable is not
        one this step can update.
    """

    name = "conjugate_mixture_gibbs"
    default_blocked = True
    stats_dtypes_shapes = {"slice_evals": (np.int64, [])}
    _state_class = ConjugateMixtureGibbsState

    def __init__(self, vars, *, model=None, rng=None, blocked=True):
        model = pm.modelcontext(model)
        eligible = {v.name for v in conjugate_vars(model)}
        value_vars = get_value_vars_from_user_vars(vars, model)
        rvs = [model.values_to_rvs[v] for v in value_vars]
        bad = [rv.name for rv in rvs if rv.name not in eligible]
        if bad or not eligible:
            raise ValueError(
                f"`vars` should be among the conjugate variables {sorted(eligible)} of a latent "
                f"mixture, but got {bad or [rv.name for rv in rvs]}"
            )
        self.vars = value_vars
        self.blocked = blocked
        self.rng = get_random_generator(rng)
        names = {rv.name for rv in rvs}
        self._update = {n: n in names for n in ("weights", "means", "sigma")}
        self._ordered = "means" in model.named_vars and isinstance(
            model.rvs_to_transforms.get(model["means"]), Ordered
        )
        self._value_name = {rv.name: model.rvs_to_values[rv].name for rv in rvs}

        # Constant inputs: Dirichlet concentration, Normal prior of the means, the data.
        (a,) = model["weights"].owner.op.dist_params(model["weights"].owner)
        k = int(pt.as_tensor(a).shape[-1].eval())
        self.k = k
        self._a = np.broadcast_to(pt.as_tensor(a).eval(), (k,)).astype(float)
        if self._update["means"]:
            m0, s0 = model["means"].owner.op.dist_params(model["means"].owner)
            self._m0 = np.broadcast_to(pt.as_tensor(m0).eval(), (k,)).astype(float)
            self._s0 = np.broadcast_to(pt.as_tensor(s0).eval(), (k,)).astype(float)
        self._y = pytensor.function([], model.rvs_to_values[model["y"]])

        # value space <-> constrained space, compiled once
        value_inputs = [v for v in model.value_vars if v.name != model["assignment"].name]
        params = [model[n] for n in ("means", "sigma") if n in model.named_vars]
        self._param_names = [p.name for p in params]
        self._value_input_names = [v.name for v in value_inputs]
        self._constrained = pytensor.function(
            value_inputs, model.replace_rvs_by_values(params), on_unused_input="ignore"
        )
        self._forward = {}
        for rv in rvs:
            if rv.name == "sigma":
                continue
            c = pt.vector(f"{rv.name}_constrained")
            transform = model.rvs_to_transforms.get(rv)
            out = c if transform is None else transform.forward(c, *rv.owner.inputs)
            self._forward[rv.name] = pytensor.function([c], out)
        if self._update["sigma"]:
            sigma = model["sigma"]
            u = model.rvs_to_values[sigma]
            (prior,) = model.logp(vars=[sigma], sum=False, jacobian=True)
            (sigma_c,) = model.replace_rvs_by_values([sigma])
            try:
                self._sigma_fn = pytensor.function([u], [prior, sigma_c])
            except Exception as err:
                raise ValueError(
                    "`sigma` should have a prior with fixed parameters, "
                    f"but compiling it failed: {err}"
                ) from err
            self._shared_sd = sigma.ndim == 0

    # -- the three updates ------------------------------------------------------------------

    def _weights(self, counts):
        w = self.rng.dirichlet(self._a + counts)
        w = np.maximum(w, np.finfo(float).tiny)
        return w / w.sum()

    def _means(self, mu, sd, counts, sums):
        prec = 1.0 / self._s0**2 + counts / sd**2
        mean = (self._m0 / self._s0**2 + sums / sd**2) / prec
        std = 1.0 / np.sqrt(prec)
        if not self._ordered:
            return mean + std * self.rng.standard_normal(self.k)
        mu = mu.copy()
        for j in range(self.k):
            lo = mu[j - 1] if j > 0 else -np.inf
            hi = mu[j + 1] if j < self.k - 1 else np.inf
            mu[j] = _truncated_normal(mean[j], std[j], lo, hi, self.rng)
        return mu

    def _sigma(self, u0, n, ss):
        """Vectorised slice sampling of the (independent) sds in their value space."""
        shape = np.shape(u0)
        u0 = np.atleast_1d(np.asarray(u0, dtype=float))
        evals = 0

        def logf(u):
            nonlocal evals
            evals += 1
            prior, sd = self._sigma_fn(u.reshape(shape))
            sd = np.atleast_1d(sd)
            return np.atleast_1d(prior) - n * np.log(sd) - ss / (2 * sd**2)

        level = logf(u0) - self.rng.exponential(size=u0.shape)
        left = u0 - _SLICE_WIDTH * self.rng.random(u0.shape)
        right = left + _SLICE_WIDTH
        for _ in range(_MAX_STEP_OUT):
            out = logf(left) > level
            if not out.any():
                break
            left = np.where(out, left - _SLICE_WIDTH, left)
        for _ in range(_MAX_STEP_OUT):
            out = logf(right) > level
            if not out.any():
                break
            right = np.where(out, right + _SLICE_WIDTH, right)
        u1 = u0.copy()
        pending = np.ones(u0.shape, dtype=bool)
        while pending.any():
            cand = left + self.rng.random(u0.shape) * (right - left)
            ok = pending & (logf(cand) > level)
            u1[ok] = cand[ok]
            pending &= ~ok
            left = np.where(pending & (cand < u0), cand, left)
            right = np.where(pending & (cand >= u0), cand, right)
        return u1.reshape(shape), evals

    def step(self, point):
        """One sweep: weights, then means, then sigma, each from its full conditional."""
        z = point["assignment"]
        y = self._y()
        counts = np.bincount(z, minlength=self.k).astype(float)
        new = dict(point)
        if self._update["weights"]:
            new[self._value_name["weights"]] = self._forward["weights"](self._weights(counts))
        params = dict(
            zip(self._param_names, self._constrained(*[point[n] for n in self._value_input_names]))
        )
        mu = np.asarray(params["means"], dtype=float)
        sd = np.broadcast_to(np.asarray(params["sigma"], dtype=float), (self.k,))
        if self._update["means"]:
            sums = np.bincount(z, weights=y, minlength=self.k)
            mu = self._means(mu, sd, counts, sums)
            new[self._value_name["means"]] = self._forward["means"](mu)
        evals = 0
        if self._update["sigma"]:
            resid2 = (y - mu[z]) ** 2
            if self._shared_sd:
                n, ss = float(len(y)), resid2.sum()
            else:
                n, ss = counts, np.bincount(z, weights=resid2, minlength=self.k)
            name = self._value_name["sigma"]
            new[name], evals = self._sigma(point[name], n, ss)
        return new, [{"slice_evals": evals}]

    def reset_tuning(self):
        """Nothing to tune."""

    @staticmethod
    def competence(var, has_grad):
        """Never chosen automatically by PyMC; :func:`mixtures.sample` assigns it."""
        return Competence.INCOMPATIBLE
