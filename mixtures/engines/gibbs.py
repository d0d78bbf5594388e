r"""Our own Gibbs engine: every chain (and every temperature) advances as one batch of arrays.

For the univariate factories with a Dirichlet weight prior and a Normal (or known) mean prior,
any positive sd prior, latent or marginalised, the engine samples the assignments explicitly
(data augmentation; for a marginalised model only the continuous parameters are kept, whose
posterior is the marginal model's). One iteration is

1. one fused pass over the data (:mod:`mixtures._kernels`): draw every assignment
   from its exact conditional and accumulate counts and centred sums;
2. exact draws of the weights, :math:`w \mid z \sim \text{Dirichlet}(a + n)`, and the means,
   Normal (restricted to increasing vectors when ordered: joint rejection, then
   one-at-a-time truncated Normals);
3. a Metropolis-within-Gibbs move of the sds: an independence proposal from the likelihood's
   Gamma kernel in the precision (accepted with the prior ratio alone), or a random walk on
   :math:`\log\sigma` when a component has too few points;
4. replica exchange between adjacent temperatures (below).

**Tempering.** Replica t targets
:math:`p(\theta)\,p(z \mid w)\,p(y \mid z, \theta)^{\beta_t}` with
:math:`0 = \beta_0 < \dots < \beta_{T-1} = 1`: at small :math:`\beta` the assignments are
nearly free of the data, chains cross between modes, and swaps (even-odd scheme) carry those
states up to :math:`\beta = 1`, which alone is stored. (Tempering :math:`p(z \mid w)` too
was tried and measured worse on the galaxies: r_hat 1.47 against 1.01.) The ladder is adapted
during tuning so that every adjacent pair swaps equally often (Syed et al. 2021). The
complete-data log-likelihood at every rung gives the log marginal likelihood by stepping-stone
sampling (:func:`mixtures.log_evidence`).

Nothing is cached between calls: the data are read from the model's ``pm.Data`` and the
priors from its spec (:func:`mixtures.spec_of`) on every call. The Numba kernels are compiled
once per machine (cached on disk).
"""

from __future__ import annotations

import time

import numpy as np

from mixtures._kernels import run, run_threaded
from mixtures.engines.gibbs_mv import sample_mv
from mixtures.progress import progress_bar

__all__ = ["GibbsEngine", "default_ladder"]

_PARALLEL_MIN = 200_000  # replicas x observations from which the sweep uses threads
_N_BLOCKS = 8
_MAX_STORED_ASSIGNMENTS = 50_000_000


class DegenerateDataError(ValueError):
    """The posterior is improper for these data (an sd can collapse onto tied values)."""


def default_ladder(n_temps: int) -> np.ndarray:
    """Inverse temperatures ``(t / (T - 1)) ** (1 / 0.3)``: quantiles of Beta(0.3, 1).

    The ladder of Xie et al. (2011) for stepping-stone sampling, dense near the prior.
    """
    if n_temps == 1:
        return np.ones(1)
    return (np.arange(n_temps) / (n_temps - 1)) ** (1 / 0.3)


class GibbsEngine:
    """The batched Gibbs sampler for the univariate factories (see the module docstring)."""

    name = "gibbs"

    @staticmethod
    def supports(model, spec) -> tuple[bool, str]:
        """Whether this engine samples `spec`'s model, and why (not)."""
        if spec is None:
            return False, "not built by a mixtures factory"
        if spec.family != "normal":
            if "wishart" not in spec.priors:
                return False, (
                    "multivariate model with LKJ covariances (no exact update; "
                    "covariance_prior='wishart' has one)"
                )
            if spec.priors["weights"].dist != "Dirichlet":
                return False, "weights prior is not Dirichlet"
            return True, "multivariate mixture with the inverse-Wishart prior: our Gibbs engine"
        if spec.priors["weights"].dist != "Dirichlet":
            return False, "weights prior is not Dirichlet"
        if "means" in spec.priors and spec.priors["means"].dist != "Normal":
            return False, f"means prior is {spec.priors['means'].dist}, not Normal"
        return True, "univariate mixture with conjugate weights and means: our Gibbs engine"

    def __init__(self, model, spec):
        self.model = model
        self.spec = spec
        self.compile_seconds = 0.0

    # ---------------------------------------------------------------- state at call time
    def _read(self):
        """Read the model's current data and known parameters (on every call)."""
        model, spec = self.model, self.spec
        y = np.ascontiguousarray(model["y_data"].get_value(), dtype=np.float64)
        known = {}
        for name in spec.known:
            known[name] = np.asarray(model[name].get_value(), dtype=float)
        return y, known

    def _init(self, y, known, n_rep, rng):
        k, spec = self.spec.k, self.spec
        scale = float(np.std(y)) or 1.0
        logw = np.full((n_rep, k), -np.log(k))
        if "means" in known:
            mu = np.broadcast_to(known["means"], (n_rep, k)).copy()
        else:
            mu = np.sort(rng.choice(y, size=(n_rep, k)), axis=1)
            mu += scale * 1e-3 * rng.standard_normal((n_rep, k))
            if spec.ordered:
                mu = np.sort(mu, axis=1)
                for j in range(1, k):
                    mu[:, j] = np.maximum(mu[:, j], mu[:, j - 1] + scale * 1e-3)
        if "sigma" in known:
            sd = np.broadcast_to(known["sigma"], (n_rep, k)).copy()
        else:
            shape = (n_rep, 1) if spec.shared_sd else (n_rep, k)
            sd = scale / np.sqrt(k) * np.exp(0.2 * rng.standard_normal(shape))
            prior = spec.priors["sigma"]
            bad = ~np.isfinite(prior.logpdf(sd))
            if bad.any():  # e.g. outside a Uniform's support: start inside it
                draws = np.asarray(prior.scipy().rvs(size=shape, random_state=rng), dtype=float)
                sd = np.where(bad, np.broadcast_to(draws, shape), sd)
            sd = np.maximum(sd, 1.5 * spec.sigma_floor)
            sd = np.broadcast_to(sd, (n_rep, k)).copy()
        return logw, mu, sd

    # ---------------------------------------------------------------- the run
    def sample(
        self,
        *,
        draws,
        tune,
        chains,
        random_seed,
        progressbar,
        tempering="auto",
        store_assignments="auto",
    ):
        """Run the sampler; return ``(posterior, sample_stats, attrs, steps)``."""
        t_start = time.perf_counter()
        spec = self.spec
        if spec.family != "normal":
            x = np.ascontiguousarray(self.model["y_data"].get_value(), dtype=np.float64)
            betas = _ladder(tempering, x.shape[0], spec.k)
            adapt = isinstance(tempering, str) or isinstance(tempering, int | np.integer)
            return sample_mv(
                self,
                x,
                betas,
                adapt,
                _adaptation_rounds,
                adapt_ladder,
                draws=draws,
                tune=tune,
                chains=chains,
                rng=np.random.default_rng(random_seed),
                progressbar=progressbar,
                store_assignments=store_assignments,
            )
        y, known = self._read()
        betas = _ladder(tempering, y.shape[0], spec.k)
        adapt = isinstance(tempering, str) or isinstance(tempering, int | np.integer)
        n_temps = betas.size
        rng = np.random.default_rng(random_seed)
        n_rep, k, n_obs = chains * n_temps, spec.k, y.shape[0]
        logw, mu, sd = self._init(y, known, n_rep, rng)
        z = np.full((n_rep, n_obs), -1, dtype=np.int8 if k < 127 else np.int32)
        state = rng.integers(0, 2**63, size=n_rep, dtype=np.uint64)
        swap_state = rng.integers(0, 2**63, size=chains, dtype=np.uint64)
        temp_of = np.tile(np.arange(n_temps), chains)
        rep_at = np.arange(n_rep).reshape(chains, n_temps)
        latent = not spec.marginalized
        if store_assignments == "auto":
            store_assignments = latent and chains * draws * n_obs <= _MAX_STORED_ASSIGNMENTS
        store_z = bool(store_assignments) and latent
        free = spec.free
        out_w, out_mu, out_sd = (np.empty((chains, draws, k)) for _ in range(3))
        out_z = np.empty((chains, draws if store_z else 0, n_obs), dtype=z.dtype)
        st = {
            "n_changed": np.zeros((chains, draws), dtype=np.int64),
            "complete_loglik": np.empty((chains, draws)),
            "tempered_loglik": np.empty((chains, draws, n_temps)),
            "swap_accept": np.full((chains, draws, max(n_temps - 1, 0)), np.nan),
            "sigma_accept": np.zeros((chains, draws)),
        }
        prior_a = np.array(spec.priors["weights"].params["a"], dtype=float)
        if "means" in free:
            m0 = np.array(spec.priors["means"].params["mu"], dtype=float)
            s0 = np.array(spec.priors["means"].params["sigma"], dtype=float)
        else:
            m0 = s0 = np.ones(k)
        code, p0, p1 = -1, np.ones(k), np.ones(k)
        if "sigma" in free:
            prior = spec.priors["sigma"]
            code = prior.family.code
            values = [np.broadcast_to(v, (k,)) for v in prior.params.values()]
            p0 = np.ascontiguousarray(values[0], dtype=float)
            p1 = np.ascontiguousarray(values[1] if len(values) > 1 else np.zeros(k), dtype=float)
        flags = np.array(
            ["means" in free, "sigma" in free, spec.shared_sd, spec.ordered, store_z],
            dtype=np.bool_,
        )
        floor = float(spec.sigma_floor) if "sigma" in free else 0.0
        scale = float(np.std(y)) or 1.0
        model = (prior_a, m0, s0, code, p0, p1, flags, floor, 1e-10 * scale)
        n_tries = max(n_temps - 1, 1)
        tries, accepts = np.zeros(n_tries, np.int64), np.zeros(n_tries, np.int64)
        state_arrays = [logw, mu, sd, z, state, swap_state, temp_of, rep_at, betas, tries, accepts]
        out = (out_w, out_mu, out_sd, out_z)
        stats = tuple(
            st[name]
            for name in (
                "n_changed",
                "complete_loglik",
                "tempered_loglik",
                "swap_accept",
                "sigma_accept",
            )
        )
        threaded = n_rep * n_obs >= _PARALLEL_MIN
        total = tune + draws
        rounds = _adaptation_rounds(tune) if adapt and n_temps > 2 else []
        it, chunk = 0, 10
        label = f"Gibbs: {chains} chains x {n_temps} temperatures"
        with progress_bar(total, progressbar, label) as bar:
            while it < total:
                # chunks of about 0.1 s: the bar moves and Ctrl-C is answered promptly
                stop = min([total, it + chunk, *(r for r in rounds if r > it)])
                t0 = time.perf_counter()
                args = (y, it, stop, tune, model, tuple(state_arrays), out, stats)
                collapsed = run_threaded(*args, _N_BLOCKS) if threaded else run(*args)
                if collapsed >= 0:
                    raise DegenerateDataError(_collapse_message(collapsed, scale))
                per_iteration = (time.perf_counter() - t0) / (stop - it)
                chunk = int(np.clip(0.1 / max(per_iteration, 1e-9), 1, 100_000))
                bar.advance(stop - it)
                if stop in rounds:  # equalise the swap rejection between adjacent rungs
                    rejection = 1.0 - accepts / np.maximum(tries, 1)
                    state_arrays[8] = betas = adapt_ladder(betas, rejection)
                    tries[:], accepts[:] = 0, 0
                it = stop
        posterior = {"weights": out_w}
        if "means" in free:
            posterior["means"] = out_mu
        if "sigma" in free:
            posterior["sigma"] = out_sd[:, :, 0] if spec.shared_sd else out_sd
        if store_z:
            posterior["assignment"] = out_z
        if "sigma" not in free:
            del st["sigma_accept"]
        if n_temps == 1:
            del st["tempered_loglik"], st["swap_accept"]
        attrs = {
            "mixtures_betas": betas.tolist(),
            "mixtures_tempering": (
                f"{n_temps} temperatures" + (" (ladder adapted during tuning)" if rounds else "")
                if n_temps > 1
                else "off"
            ),
            "mixtures_assignments_stored": str(store_z),
            "mixtures_sampling_seconds": time.perf_counter() - t_start,
        }
        steps = "Gibbs[assignment, weights" + (", means" if "means" in free else "")
        steps += ", sigma (MH)" if "sigma" in free else ""
        steps += "]" + (f" + replica exchange ({n_temps} temperatures)" if n_temps > 1 else "")
        return posterior, st, attrs, steps


def _collapse_message(it, scale):
    return (
        f"`sigma` of a component collapsed below {1e-10 * scale:.3g} (1e-10 x the data sd) at "
        f"iteration {it}: a component sits on tied values, where the likelihood grows without "
        "bound. Use fewer components, a sigma prior that vanishes at 0 (e.g. InverseGamma, or "
        "Uniform with lower > 0), or known sds (sigma=...)"
    )


def _adaptation_rounds(tune: int) -> list[int]:
    """Tuning iterations after which the ladder is adapted: 50, 100, 200, ... < 0.8 tune."""
    rounds, at = [], 50
    while at < 0.8 * tune:
        rounds.append(at)
        at *= 2
    return rounds


def adapt_ladder(betas: np.ndarray, rejection: np.ndarray) -> np.ndarray:
    r"""Place the rungs so that each pair has the same swap rejection (Syed et al. 2021).

    The cumulative rejection along the ladder estimates the communication barrier
    :math:`\Lambda(\beta)`; the new rungs sit at equal steps of it (piecewise-linear inverse).
    """
    barrier = np.concatenate([[0.0], np.cumsum(np.maximum(rejection, 1e-3))])
    targets = np.linspace(0.0, barrier[-1], betas.size)
    new = np.interp(targets, barrier, betas)
    new[0], new[-1] = betas[0], 1.0
    return np.maximum.accumulate(new)


def _ladder(tempering, n_obs: int, k: int) -> np.ndarray:
    """Resolve the ``tempering`` argument to inverse temperatures ending at 1."""
    if tempering is None or tempering is False:
        return np.ones(1)
    if isinstance(tempering, str):
        if tempering != "auto":
            raise ValueError(
                f"`tempering` should be 'auto', False, an int or an increasing array of inverse "
                f"temperatures ending at 1, but got {tempering!r}"
            )
        if k == 1:
            return np.ones(1)
        return default_ladder(auto_temperatures(n_obs)) if n_obs * k <= 60_000 else np.ones(1)
    if isinstance(tempering, int | np.integer) and not isinstance(tempering, bool):
        if tempering < 1:
            raise ValueError(f"`tempering` should be an int >= 1, but got {tempering}")
        return default_ladder(int(tempering))
    betas = np.asarray(tempering, dtype=float)
    if (
        betas.ndim != 1
        or betas.size < 1
        or betas[-1] != 1.0
        or np.any(np.diff(betas) <= 0)
        or betas[0] < 0
    ):
        raise ValueError(
            "`tempering` should be an increasing array of inverse temperatures in [0, 1] "
            f"ending at 1, but got {np.asarray(tempering).tolist()}"
        )
    return betas


def auto_temperatures(n_obs: int) -> int:
    """Return the number of temperatures of ``tempering="auto"``: 16.

    Measured on the multimodal sets (``bench/RESULTS.md``): with the adapted ladder, 10-12
    temperatures already make chains agree on the galaxies, but the within-mode mixing of the
    far-group set needs 16 for a bulk ESS >= 400 at the default draws; 24 gained little more.
    """
    del n_obs
    return 16
