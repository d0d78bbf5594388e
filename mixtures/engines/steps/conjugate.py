r"""Exact Gibbs updates for the continuous parameters of a latent univariate mixture.

Given the assignments :math:`z`, with :math:`n_j` points and sum :math:`s_j` in component j:

* ``weights``: :math:`w \mid z \sim \text{Dirichlet}(a + n)`, exactly (the prior is Dirichlet).
* ``means`` under a Normal prior :math:`N(m_j, s_j^2)`: each :math:`\mu_j` is Normal with
  precision :math:`1/s_j^2 + n_j/\sigma_j^2` and mean
  :math:`(m_j/s_j^2 + s_j^{y}/\sigma_j^2) / \text{precision}`. Ordered means follow the product
  of these Normals restricted to increasing vectors. They are drawn jointly by rejection (an exact
  draw, whose success chance does not depend on the current state), and after a few failures by a
  sweep of one-at-a-time truncated Normals between the neighbours. Both moves leave the
  conditional invariant.
* ``sigma`` under any positive prior: given the means, the components' sds are independent with
  log-conditional :math:`\log p(\sigma_j) - n_j \log \sigma_j - S_j / (2\sigma_j^2)`, where
  :math:`S_j = \sum_{z_i = j} (y_i - \mu_j)^2`. In precision :math:`\tau = \sigma^{-2}` the
  likelihood part is a Gamma((n_j - 1)/2, S_j/2) kernel, so an independence Metropolis-Hastings
  move proposing from it accepts with the prior ratio alone, which is near 1 unless the prior
  dominates. Components with n_j < 2 (or S_j = 0) use slice sampling (Neal 2003) in the
  variable's unconstrained space instead. Either way the prior is the model's own compiled
  log-density, so any family works.

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
from pytensor.tensor.random.basic import CategoricalRV, DirichletRV, MvNormalRV, NormalRV
from scipy.special import ndtr, ndtri

from mixtures.engines.steps.assignment import observed_reader

__all__ = ["ConjugateMixtureGibbs", "MvConjugateGibbs", "conjugate_vars", "mv_conjugate_vars"]

_SLICE_WIDTH = 1.0
_MAX_STEP_OUT = 50
_JOINT_TRIES = 5  # joint rejection draws of ordered means before the one-at-a-time sweep


def checked_vars(vars, model, eligible: list, what: str) -> tuple[list, list]:
    """Return the value and random variables of `vars` after checking each is in `eligible`.

    Raises "`vars` should be among the conjugate variables [...] of `what`, but got [...]" when
    one is not, or when there is none (an empty `vars` or a model with no conjugate variable).
    """
    names = sorted(v.name for v in eligible)
    value_vars = get_value_vars_from_user_vars(vars, model)
    rvs = [model.values_to_rvs[v] for v in value_vars]
    bad = [rv.name for rv in rvs if rv.name not in names]
    if bad or not names or not rvs:
        raise ValueError(
            f"`vars` should be among the conjugate variables {names} of {what}, but got "
            f"{bad or [rv.name for rv in rvs]}"
        )
    return value_vars, rvs


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
    stats_dtypes_shapes = {"sigma_accepted": (np.float64, [])}
    _state_class = ConjugateMixtureGibbsState

    def __init__(self, vars, *, model=None, rng=None, blocked=True):
        model = pm.modelcontext(model)
        rvs = self._check_vars(vars, model)
        self.blocked = blocked
        self.rng = get_random_generator(rng)
        names = {rv.name for rv in rvs}
        self._update = {n: n in names for n in ("weights", "means", "sigma")}
        self._ordered = "means" in model.named_vars and isinstance(
            model.rvs_to_transforms.get(model["means"]), Ordered
        )
        self._value_name = {rv.name: model.rvs_to_values[rv].name for rv in rvs}
        self._read_constants(model)
        self._compile_transforms(model, rvs)
        if self._update["sigma"]:
            self._compile_sigma(model)

    def _check_vars(self, vars, model) -> list:
        """Set ``self.vars`` (value variables); return the random variables, all conjugate."""
        self.vars, rvs = checked_vars(vars, model, conjugate_vars(model), "a latent mixture")
        return rvs

    def _read_constants(self, model) -> None:
        """Read the constants: Dirichlet concentration, Normal prior of the means, the data."""
        (a,) = model["weights"].owner.op.dist_params(model["weights"].owner)
        k = int(pt.as_tensor(a).shape[-1].eval())
        self.k = k
        self._a = np.broadcast_to(pt.as_tensor(a).eval(), (k,)).astype(float)
        if self._update["means"]:
            m0, s0 = model["means"].owner.op.dist_params(model["means"].owner)
            self._m0 = np.broadcast_to(pt.as_tensor(m0).eval(), (k,)).astype(float)
            self._s0 = np.broadcast_to(pt.as_tensor(s0).eval(), (k,)).astype(float)
        self._y = observed_reader(model)

    def _compile_transforms(self, model, rvs) -> None:
        """Compile the maps between value space and constrained space of the parameters."""
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
            self._forward[rv.name].trust_input = True  # called with float64 vectors only

    def _compile_sigma(self, model) -> None:
        """Compile the sd prior's log-density (with and without the Jacobian) and transform."""
        sigma = model["sigma"]
        u = model.rvs_to_values[sigma]
        (prior,) = model.logp(vars=[sigma], sum=False, jacobian=True)
        (prior_sigma,) = model.logp(vars=[sigma], sum=False, jacobian=False)
        (sigma_c,) = model.replace_rvs_by_values([sigma])
        transform = model.rvs_to_transforms.get(sigma)
        s_in = pt.tensor("sigma_in", shape=sigma.type.shape, dtype=sigma.dtype)
        to_value = s_in if transform is None else transform.forward(s_in, *sigma.owner.inputs)
        try:
            self._sigma_fn = pytensor.function([u], [prior, sigma_c])
            # prior density of sigma itself (no Jacobian) at a value, and at a given sigma
            self._sigma_prior = pytensor.function([u], prior_sigma)
            at_sigma = pytensor.clone_replace(prior_sigma, {u: to_value})
            self._sigma_propose = pytensor.function([s_in], [to_value, at_sigma])
            for fn in (self._sigma_fn, self._sigma_prior, self._sigma_propose):
                fn.trust_input = True  # called with float64 arrays of the right shape only
        except Exception as err:
            raise ValueError(
                f"`sigma` should have a prior with fixed parameters, but compiling it failed: {err}"
            ) from err
        self._shared_sd = sigma.ndim == 0
        self._prior_cache = None  # (value, prior of sigma at it) after the last update

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
        for _ in range(_JOINT_TRIES):
            draw = mean + std * self.rng.standard_normal(self.k)
            if np.all(np.diff(draw) > 0):
                return draw
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
            prior, sd = self._sigma_fn(np.asarray(u.reshape(shape), dtype=float))
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

    def _sigma_mh(self, u0, n, ss):
        """Independence MH from the likelihood's Gamma form in precision; slice where n < 2."""
        shape = np.shape(u0)
        u0 = np.atleast_1d(np.asarray(u0, dtype=float))
        n = np.broadcast_to(np.asarray(n, dtype=float), u0.shape)
        ss = np.broadcast_to(np.asarray(ss, dtype=float), u0.shape)
        usable = (n >= 2) & (ss > 0)
        u1 = u0.copy()
        accepted = np.zeros(u0.shape, dtype=bool)
        if usable.any():
            rate = np.where(usable, ss / 2, 1.0)
            tau = self.rng.gamma(np.where(usable, (n - 1) / 2, 1.0), 1.0, size=u0.shape) / rate
            u_prop, prior_prop = self._sigma_propose((1.0 / np.sqrt(tau)).reshape(shape))
            u_prop, prior_prop = np.atleast_1d(u_prop), np.atleast_1d(prior_prop)
            if self._prior_cache is not None and np.array_equal(self._prior_cache[0], u0):
                prior_cur = self._prior_cache[1]
            else:
                prior_cur = np.atleast_1d(self._sigma_prior(u0.reshape(shape)))
            accepted = usable & (np.log(self.rng.random(u0.shape)) < prior_prop - prior_cur)
            u1[accepted] = u_prop[accepted]
            self._prior_cache = (u1.copy(), np.where(accepted, prior_prop, prior_cur))
        if not usable.all():
            sliced, _ = self._sigma(u0.reshape(shape), n.reshape(shape), ss.reshape(shape))
            sliced = np.atleast_1d(sliced)
            u1[~usable] = sliced[~usable]
            self._prior_cache = None
        return u1.reshape(shape), float(accepted[usable].mean()) if usable.any() else np.nan

    def step(self, point):
        """One sweep: weights, then means, then sigma, each from its full conditional."""
        z = point["assignment"]
        y = self._y()
        counts = np.bincount(z, minlength=self.k).astype(float)
        new = dict(point)
        if self._update["weights"]:
            new[self._value_name["weights"]] = self._forward["weights"](self._weights(counts))
        values = [np.asarray(point[n]) for n in self._value_input_names]
        params = dict(zip(self._param_names, self._constrained(*values)))
        mu = np.asarray(params["means"], dtype=float)
        sd = np.broadcast_to(np.asarray(params["sigma"], dtype=float), (self.k,))
        if self._update["means"]:
            sums = np.bincount(z, weights=y, minlength=self.k)
            mu = self._means(mu, sd, counts, sums)
            new[self._value_name["means"]] = self._forward["means"](mu)
        accepted = np.nan
        if self._update["sigma"]:
            resid2 = (y - mu[z]) ** 2
            if self._shared_sd:
                n, ss = float(len(y)), resid2.sum()
            else:
                n, ss = counts, np.bincount(z, weights=resid2, minlength=self.k)
            name = self._value_name["sigma"]
            new[name], accepted = self._sigma_mh(point[name], n, ss)
        return new, [{"sigma_accepted": accepted}]

    def reset_tuning(self):
        """Nothing to tune."""

    @staticmethod
    def competence(var, has_grad):
        """Never chosen automatically by PyMC; :func:`mixtures.sample` assigns it."""
        return Competence.INCOMPATIBLE


def mv_conjugate_vars(model: pm.Model) -> list:
    """Free variables of a latent :func:`mixtures.mv_mixture` that :class:`MvConjugateGibbs` takes.

    ``weights`` when Dirichlet; ``means`` when their Normal prior is not ordered (an ordered
    column has no closed-form conditional; NUTS keeps it) and the components are Normal (t
    components' means have none given the assignments alone). Empty if the model is not a
    latent multivariate mixture, or if its data have missing cells (the conjugate updates read
    complete rows).
    """
    free = {v.name for v in model.free_RVs}
    if "assignment" not in free or "y" not in model.named_vars or "chol_cov" not in model:
        return []
    if model["y"].ndim != 2 or not isinstance(_op(model, "assignment"), CategoricalRV):
        return []
    if model.potentials or "observed_cells" in model.named_vars:  # missing cells: no closed form
        return []
    out = []
    if "weights" in free and isinstance(_op(model, "weights"), DirichletRV):
        out.append(model["weights"])
    means = model["means"]
    normal = isinstance(_op(model, "y"), MvNormalRV)
    if normal and "means" in free and isinstance(_op(model, "means"), NormalRV):
        if model.rvs_to_transforms.get(means) is None:
            out.append(means)
    return out


@dataclass_state
class MvConjugateGibbsState(StepMethodState):
    """Sampling state: only the random generator."""


class MvConjugateGibbs(BlockedStep):
    """Exact Gibbs updates of a multivariate mixture's ``weights`` and ``means`` given the rest.

    ``weights | z ~ Dirichlet(a + n)``, exact for any concentration (a = 1e-5 included, where
    NUTS on the simplex fails), and, for each component j,
    ``means_j | z, Sigma_j ~ N(m, P^-1)`` with ``P = diag(1 / s0^2) + n_j Sigma_j^-1`` and
    ``m = P^-1 (diag(1 / s0^2) m0 + Sigma_j^-1 sum_{z_i = j} x_i)``. The covariances stay
    with NUTS (their LKJ prior has no conjugate form). Use with
    :class:`~mixtures.AssignmentGibbs`; :func:`mv_conjugate_vars` says what it can take.

    Parameters
    ----------
    vars : list
        ``weights`` and / or ``means`` of a latent :func:`mixtures.mv_mixture`.
    model : pymc.Model, optional
    rng : int or numpy.random.Generator, optional
    """

    name = "mv_conjugate_gibbs"
    default_blocked = True
    stats_dtypes_shapes = {}
    _state_class = MvConjugateGibbsState

    def __init__(self, vars, *, model=None, rng=None, blocked=True):
        model = pm.modelcontext(model)
        eligible = mv_conjugate_vars(model)
        self.vars, rvs = checked_vars(vars, model, eligible, "a latent multivariate mixture")
        self.blocked = blocked
        self.rng = get_random_generator(rng)
        names = {rv.name for rv in rvs}
        self._update = {n: n in names for n in ("weights", "means")}
        self._value_name = {rv.name: model.rvs_to_values[rv].name for rv in rvs}
        self.k, self.d = (int(s) for s in model["means"].shape.eval())
        if self._update["weights"]:
            (a,) = model["weights"].owner.op.dist_params(model["weights"].owner)
            self._a = np.broadcast_to(pt.as_tensor(a).eval(), (self.k,)).astype(float)
            c = pt.vector("weights_constrained")
            transform = model.rvs_to_transforms.get(model["weights"])
            out = c if transform is None else transform.forward(c, *model["weights"].owner.inputs)
            self._forward_weights = pytensor.function([c], out)
        if self._update["means"]:
            m0, s0 = model["means"].owner.op.dist_params(model["means"].owner)
            shape = (self.k, self.d)
            self._m0 = np.broadcast_to(pt.as_tensor(m0).eval(), shape).astype(float)
            self._s0 = np.broadcast_to(pt.as_tensor(s0).eval(), shape).astype(float)
            inputs = [v for v in model.value_vars if v.name != model["assignment"].name]
            self._chol_inputs = [v.name for v in inputs]
            (chol,) = model.replace_rvs_by_values([model["chol_cov"]])
            self._chol = pytensor.function(inputs, chol, on_unused_input="ignore")
        self._x = observed_reader(model)

    def _draw_means(self, z, chol):
        x = self._x()
        out = np.empty((self.k, self.d))
        for j in range(self.k):
            members = x[z == j]
            prior_prec = 1.0 / self._s0[j] ** 2
            inv_l = np.linalg.inv(chol[j])
            sigma_inv = inv_l.T @ inv_l
            prec = np.diag(prior_prec) + members.shape[0] * sigma_inv
            rhs = prior_prec * self._m0[j] + sigma_inv @ members.sum(axis=0)
            chol_prec = np.linalg.cholesky(prec)
            mean = np.linalg.solve(prec, rhs)
            # mean + L^-T e has covariance (L L^T)^-1 = prec^-1
            noise = np.linalg.solve(chol_prec.T, self.rng.standard_normal(self.d))
            out[j] = mean + noise
        return out

    def step(self, point):
        """One sweep: weights, then each component's mean, from their full conditionals."""
        z = point["assignment"]
        new = dict(point)
        if self._update["weights"]:
            counts = np.bincount(z, minlength=self.k).astype(float)
            w = self.rng.dirichlet(self._a + counts)
            w = np.maximum(w, np.finfo(float).tiny)
            new[self._value_name["weights"]] = self._forward_weights(w / w.sum())
        if self._update["means"]:
            chol = self._chol(*[point[n] for n in self._chol_inputs])
            new[self._value_name["means"]] = self._draw_means(z, chol)
        return new, [{}]

    def reset_tuning(self):
        """Nothing to tune."""

    @staticmethod
    def competence(var, has_grad):
        """Never chosen automatically by PyMC; :func:`mixtures.sample` assigns it."""
        return Competence.INCOMPATIBLE
