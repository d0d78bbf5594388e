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
4. replica exchange between adjacent temperatures (below);
5. the relocation move (``moves=True``, :func:`mixtures._kernels.relocate`): in each chain's
   untempered replica, a component with weight below 0.5 / k gets a mean proposed from its
   prior, accepted by the ratio of the likelihoods with the assignments summed out (an exact
   Metropolis-Hastings move on the marginal posterior; the next sweep redraws the
   assignments). An almost empty component of an over-fitted k thus jumps between the
   clusters instead of crossing them point by point.

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
from numba import get_num_threads

from mixtures._kernels import (
    ChainState,
    KernelConfig,
    chain_state,
    run,
    run_threaded,
    scale_prior,
)
from mixtures.analysis.diagnostics import is_sparse
from mixtures.engines import gibbs_t
from mixtures.engines.base import EngineBase, RawDraws
from mixtures.engines.chain_threads import run_chain_groups, run_family_groups
from mixtures.engines.extend import AUTO_DRAWS, AUTO_TUNE, EM_TUNE, run_draws
from mixtures.engines.gibbs_mv import mv_data, sample_mv, sparse_concentration
from mixtures.engines.starts import choose_ladder, em_optima, univariate_starts, uses_em_starts
from mixtures.engines.tempering import (
    adaptation_rounds,
    replica_state,
    run_record,
    run_segment,
    sample_stats_arrays,
    stores_assignments,
)
from mixtures.model.prior_codes import FIXED

__all__ = ["DegenerateDataError", "GibbsEngine"]

_PARALLEL_MIN = 200_000  # replicas x observations from which the sweep runs in _N_BLOCKS ranges
_N_BLOCKS = 8

#: Univariate component families other than Normal: the module with each one's state, prior
#: arrays, records and kernel (:mod:`mixtures.engines.gibbs_t`). Normal is built in.
FAMILY_HOOKS = {"t": gibbs_t}


class DegenerateDataError(ValueError):
    """The posterior is improper for these data (an sd can collapse onto tied values)."""


class GibbsEngine(EngineBase):
    """The batched Gibbs sampler for the univariate factories (see the module docstring)."""

    name = "gibbs"
    default_draws = default_tune = None  # extends the chains until converged; EM_TUNE or not
    announce = False  # the default engine: no line saying which engine runs
    any_missing_pattern = True  # reads the missing cells at every call

    @staticmethod
    def supports(model, spec, *, latent_sampler="gibbs", auto=False) -> tuple[bool, str]:
        """Whether this engine samples `spec`'s model, and why (not).

        ``"auto"`` leaves a latent model to PyMC when `latent_sampler` asks for NUTS.
        """
        ok, why = GibbsEngine._supports_spec(spec)
        if ok and auto and latent_sampler != "gibbs":
            return False, "latent_sampler='nuts' asks for NUTS"
        return ok, why

    @staticmethod
    def _supports_spec(spec) -> tuple[bool, str]:
        if spec is None:
            return False, "not built by a mixtures factory"
        if not spec.univariate:
            if "wishart" not in spec.priors:
                return False, (
                    "multivariate model with LKJ covariances (no exact update; "
                    "covariance_prior='wishart' has one)"
                )
            if spec.priors["weights"].dist != "Dirichlet":
                return False, "weights prior is not Dirichlet"
            if spec.family == "mvt":
                return True, (
                    "multivariate t mixture with the inverse-Wishart prior (scale mixture of "
                    "Normals): our Gibbs engine"
                )
            return True, "multivariate mixture with the inverse-Wishart prior: our Gibbs engine"
        if spec.priors["weights"].dist != "Dirichlet":
            return False, "weights prior is not Dirichlet"
        if "means" in spec.priors and spec.priors["means"].dist != "Normal":
            return False, f"means prior is {spec.priors['means'].dist}, not Normal"
        if spec.family == "t":
            return True, "univariate t mixture (scale mixture of Normals): our Gibbs engine"
        return True, "univariate mixture with conjugate weights and means: our Gibbs engine"

    # ---------------------------------------------------------------- state at call time
    def _read(self):
        """Read the model's current data and known parameters (on every call)."""
        model, spec = self.model, self.spec
        y = np.ascontiguousarray(model["y_data"].get_value(), dtype=np.float64)
        known = {}
        for name in spec.known:
            known[name] = np.asarray(model[name].get_value(), dtype=float)
        return y, known

    def _labels(self, n_obs: int) -> np.ndarray:
        """Known labels (-1: unknown), read from the model at every call."""
        if not self.spec.labelled:
            return np.full(n_obs, -1, dtype=np.int32)
        labels = np.asarray(self.model["labels"].get_value(), dtype=np.int32)
        if labels.shape[0] != n_obs:
            raise ValueError(
                f"`labels` should have one entry per observation ({n_obs}), but the model's "
                f"has {labels.shape[0]}: set both with pm.set_data"
            )
        return np.ascontiguousarray(labels)

    def _init(self, y, known, n_rep, rng):
        """Random starts: means at data points, sds near sd(y) / sqrt(k)."""
        k, spec = self.spec.k, self.spec
        scale = float(np.std(y)) or 1.0
        logw = np.full((n_rep, k), -np.log(k))
        if "means" in known:
            mu = np.broadcast_to(known["means"], (n_rep, k)).copy()
        else:
            mu = np.sort(rng.choice(y, size=(n_rep, k)), axis=1)
            mu += scale * 1e-3 * rng.standard_normal((n_rep, k))
            mu = self._order(mu, scale)
        shape = (n_rep, 1) if spec.shared_sd else (n_rep, k)
        sd = scale / np.sqrt(k) * np.exp(0.2 * rng.standard_normal(shape))
        return logw, mu, self._admissible_sd(sd, known, rng)

    def _em_init(self, opt, y, known, n_rep, rng):
        """Start around the EM optimum `opt` (see ``starts.univariate_starts``)."""
        logw, mu, sd = univariate_starts(opt, n_rep, y.shape[0], rng)
        if self.spec.shared_sd:
            sd = np.sqrt((np.exp(logw) * sd**2).sum(axis=1, keepdims=True))
        scale = float(np.std(y)) or 1.0
        sd = np.maximum(sd, 1e-3 * scale)  # EM may end on a near-collapsed component
        return logw, self._order(mu, scale), self._admissible_sd(sd, known, rng)

    def _order(self, mu, scale):
        if self.spec.ordered:
            mu = np.sort(mu, axis=1)
            for j in range(1, mu.shape[1]):
                mu[:, j] = np.maximum(mu[:, j], mu[:, j - 1] + scale * 1e-3)
        return mu

    def _admissible_sd(self, sd, known, rng):
        """Known sds, or `sd` moved into the prior's support and above the floor; (n_rep, k)."""
        n_rep, k = sd.shape[0], self.spec.k
        if "sigma" in known:
            return np.broadcast_to(known["sigma"], (n_rep, k)).copy()
        prior = self.spec.priors["sigma"]
        bad = ~np.isfinite(prior.logpdf(sd))
        if bad.any():  # e.g. outside a Uniform's support: start inside it
            draws = np.asarray(prior.scipy().rvs(size=sd.shape, random_state=rng), dtype=float)
            sd = np.where(bad, np.broadcast_to(draws, sd.shape), sd)
        sd = np.maximum(sd, 1.5 * self.spec.sigma_floor)
        return np.broadcast_to(sd, (n_rep, k)).copy()

    def _starts(self, y, known, n_rep, rng, optima, em_starts: bool):
        """Chain starts: around the best EM optimum if `em_starts` (and one is found)."""
        if em_starts and "means" not in known and not self.spec.labelled:
            optima = optima or em_optima(y[:, None], self.spec.k, rng)
            if optima:
                return self._em_init(optima[0], y, known, n_rep, rng), "EM (best of several)"
        return self._init(y, known, n_rep, rng), "random"

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
        init="auto",
        budget=None,
        moves=True,
    ):
        """Run the sampler; return its :class:`~mixtures.engines.base.RawDraws`.

        ``draws=None`` extends the chains until the diagnostics pass or `budget` (draws per
        chain, seconds; default :data:`~mixtures.engines.extend.MAX_DRAWS`,
        :data:`~mixtures.engines.extend.MAX_SECONDS`) is spent (:mod:`mixtures.engines.extend`).
        ``tune=None``: :data:`~mixtures.engines.extend.EM_TUNE` for chains started from EM
        and untempered, :data:`~mixtures.engines.extend.AUTO_TUNE` otherwise.
        ``init``: ``"auto"``, ``"em"`` or ``"random"`` starts
        (:func:`mixtures.engines.starts.uses_em_starts`).
        ``moves``: the relocation move of almost empty components (univariate models with free
        means and no known labels; :func:`mixtures._kernels.relocate`), on by default.
        """
        t_start = time.perf_counter()
        spec = self.spec
        rng = np.random.default_rng(random_seed)
        if not spec.univariate:
            plan = {"tempering": tempering, "init": init, "budget": budget}
            run = dict(draws=draws, tune=tune, chains=chains, progressbar=progressbar)
            return self._sample_multivariate(rng, plan, store_assignments=store_assignments, **run)
        y, known = self._read()
        betas, optima = choose_ladder(tempering, y[:, None], spec.k, rng)
        options = dict(tune=tune, chains=chains, init=init, tempering=tempering, moves=moves)
        options.update(draws=draws, store_assignments=store_assignments)
        runner, start = self._runner(y, known, betas, optima, rng, progressbar, options)
        merged, record = run_draws(
            draws, runner.segment, _checked, t_start=t_start, budget=budget,
            label_free=is_sparse(spec),
        )  # fmt: skip
        posterior, st, attrs = runner.results(merged, t_start)
        attrs.update(record, mixtures_starts=start, mixtures_tune=runner.tune)
        steps = _steps(spec, runner.moves, betas.size)
        return RawDraws(posterior=posterior, stats=st, attrs=attrs, steps=steps)

    def _sample_multivariate(self, rng, plan, **run):
        """Run :func:`~mixtures.engines.gibbs_mv.sample_mv` on the model's data.

        Parameters
        ----------
        rng : numpy.random.Generator
            The run's generator (the ladder's EM fits draw from it first).
        plan : dict
            ``tempering``, ``init`` and ``budget`` as :meth:`sample` got them; the EM
            ``optima``, ``sparse`` and the missing cells' ``mask`` are added here.
        **run
            ``draws``, ``tune``, ``chains``, ``progressbar``, ``store_assignments``.

        Returns
        -------
        RawDraws
        """
        x, mask = mv_data(self.model)  # missing cells at their column's mean
        sparse = sparse_concentration(self.spec, plan["init"])
        betas, optima = choose_ladder(plan["tempering"], x, self.spec.k, rng, sparse=sparse)
        plan = {**plan, "optima": optima, "sparse": sparse is not None, "mask": mask}
        return sample_mv(self, x, betas, plan, rng=rng, **run)

    def _runner(self, y, known, betas, optima, rng, progressbar, options):
        """Return the run's :class:`_Runner` on its starting state, and how it started."""
        spec, chains = self.spec, options["chains"]
        n_temps, n_obs = betas.size, y.shape[0]
        n_rep = chains * n_temps
        em_starts = uses_em_starts(options["init"], n_temps, n_obs, spec.k)
        tune = options["tune"]
        if tune is None:
            tune = EM_TUNE if em_starts else AUTO_TUNE
        (logw, mu, sd), start = self._starts(y, known, n_rep, rng, optima, em_starts)
        replicas = replica_state(rng, chains, n_temps, n_obs, spec.k)
        params = {"logw": logw, "mu": mu, "sd": sd}
        chain = chain_state(ChainState, params, replicas, betas, self._labels(n_obs))
        runner = _Runner(self, y, chain, tune, chains, progressbar)
        runner.moves = bool(options["moves"]) and uses_moves(spec)
        family = FAMILY_HOOKS.get(spec.family)
        if family is not None:
            runner.family = family
            runner.family_state = family.initial_state(spec, known, n_rep, n_obs, rng)
        adapts = _adapts(options["tempering"]) and n_temps > 2
        runner.rounds = adaptation_rounds(tune) if adapts else []
        rule = options["store_assignments"]
        runner.store_z = stores_assignments(
            rule, spec, chains * (options["draws"] or AUTO_DRAWS) * n_obs
        )
        runner.store_rule = (rule, chains * n_obs)
        return runner, start


def _steps(spec, moves: bool, n_temps: int) -> str:
    """Return the run's steps, as recorded in the posterior's attrs."""
    steps = "Gibbs[assignment, weights" + (", means" if "means" in spec.free else "")
    steps += ", sigma (MH)" if "sigma" in spec.free else ""
    steps += ", precision weights" if spec.family == "t" else ""
    steps += ", nu (MH on log nu)" if "nu" in spec.free else ""
    steps += "]" + (" + relocation (MH)" if moves else "")
    steps += f" + replica exchange ({n_temps} temperatures)" if n_temps > 1 else ""
    return steps


class _Runner:
    """Runs segments of draws on a kept :class:`~mixtures._kernels.ChainState`.

    The chains continue across segments; between segments only the ladder (``betas``) is
    replaced, by its adaptation during tuning.
    """

    def __init__(self, engine, y, chain, tune, chains, progressbar):
        self.engine, self.y, self.state = engine, y, chain
        self.tune, self.chains, self.progressbar = tune, chains, progressbar
        self.done, self.rounds, self.store_z, self.store_rule = 0, [], False, ("auto", 0)
        self.moves = False
        self.scale = float(np.std(y)) or 1.0
        self.family, self.family_state = None, None

    def results(self, merged: dict, t_start: float) -> tuple[dict, dict, dict]:
        """Return the posterior, the sample stats and the attrs of the run's merged segments."""
        spec = self.engine.spec
        posterior, st = _split(merged, spec)
        if self.family is not None:
            self.family.posterior(merged, spec, posterior, st)
        store_z = "assignment" in posterior
        return posterior, st, run_record(st, self.state.betas, bool(self.rounds), store_z, t_start)

    def _keep_storing(self, n: int) -> bool:
        rule, per_draw = self.store_rule
        total = (self.done + n) * per_draw
        return self.store_z and stores_assignments(rule, self.engine.spec, total)

    def segment(self, n: int) -> dict:
        """Run `n` more draws of every chain (tuning first, on the first call)."""
        spec, chains, k = self.engine.spec, self.chains, self.engine.spec.k
        self.store_z = self._keep_storing(n)
        config = kernel_config(spec, self.store_z, collapse_at=1e-10 * self.scale)
        config = with_moves(config, self.moves, self.state.sd)
        n_temps = self.state.betas.size
        out = tuple(np.empty((chains, n, k)) for _ in range(3))
        z = self.state.z
        out += (np.empty((chains, n if self.store_z else 0, z.shape[1]), dtype=z.dtype),)
        st = sample_stats_arrays(chains, n, n_temps, sigma_accept=True)
        stats = tuple(st.values())
        offset = self.tune + self.done  # the iteration of this segment's first draw
        threaded = self.state.logw.shape[0] * self.y.shape[0] >= _PARALLEL_MIN
        family = self.family
        if family is not None:
            fam_config = family.kernel_config(spec)
            fam_out = family.outputs(chains, n, k, self.y.shape[0] if self.store_z else 0)

        def run_chunk(start, stop):
            args = (self.y, start, stop, offset, config, self.state, out, stats)
            if family is not None:  # the family's kernel: chains on threads, at any size
                collapsed = run_family_groups(
                    family.run, fam_config, self.family_state, fam_out, args, get_num_threads()
                )
            elif threaded and chains % get_num_threads():  # the sweep's ranges on threads
                collapsed = run_threaded(*args, _N_BLOCKS)
            else:  # whole chains on threads; at large N in the threaded sweep's ranges
                blocks = _N_BLOCKS if threaded else 1
                collapsed = run_chain_groups(
                    run, *args, get_num_threads(), lambda *_: (blocks,)
                )
            if collapsed >= 0:
                raise DegenerateDataError(_collapse_message(collapsed, self.scale))

        label = f"Gibbs: {chains} chains x {n_temps} temperatures"
        run_segment(self, offset, n, label, run_chunk)
        names = ("weights", "means", "sd", "assignment")
        result = dict(zip(names, out), **st)
        if family is not None:
            result["precision_weights"] = fam_out[1]
            if "nu" in spec.free:  # a fixed nu is no draw (nor a diagnostic)
                result.update(nu=fam_out[0], nu_accept=fam_out[2])
        return result


def _checked(merged: dict) -> dict:
    """Return the parameters whose diagnostics decide an automatic run."""
    out = {"weights": merged["weights"], "means": merged["means"], "sigma": merged["sd"]}
    if "nu" in merged:
        out["nu"] = merged["nu"]
    return out


def _split(merged: dict, spec) -> tuple[dict, dict]:
    """Return the posterior and sample-stats dicts of a run's merged segments."""
    posterior = {"weights": merged["weights"]}
    if "means" in spec.free:
        posterior["means"] = merged["means"]
    if "sigma" in spec.free:
        posterior["sigma"] = merged["sd"][:, :, 0] if spec.shared_sd else merged["sd"]
    z = merged["assignment"]
    if z.shape[1] and z.shape[1] == merged["weights"].shape[1]:
        posterior["assignment"] = z  # dropped if storing stopped during an extension
    names = ("n_changed", "complete_loglik", "tempered_loglik", "swap_accept", "sigma_accept")
    st = {name: merged[name] for name in names}
    if "sigma" not in spec.free:
        del st["sigma_accept"]
    return posterior, st


def _adapts(tempering) -> bool:
    """Whether the ladder is ours to adapt (an explicit array of temperatures is kept as is)."""
    return isinstance(tempering, str) or isinstance(tempering, int | np.integer)


def kernel_config(spec, store_z: bool, collapse_at: float) -> KernelConfig:
    """Return the spec's priors and switches as the univariate kernel's config (moves off)."""
    k, free = spec.k, spec.free
    weight_conc = np.array(spec.priors["weights"].params["a"], dtype=float)
    m0 = s0 = np.ones(k)
    if "means" in free:
        m0 = np.array(spec.priors["means"].params["mu"], dtype=float)
        s0 = np.array(spec.priors["means"].params["sigma"], dtype=float)
    code, p0, p1 = FIXED, np.ones(k), np.ones(k)
    if "sigma" in free:
        code, p0, p1 = scale_prior(spec.priors["sigma"], k)
    return KernelConfig(
        weight_conc=weight_conc,
        mean_loc=m0,
        mean_scale=s0,
        sd_code=code,
        sd_p0=p0,
        sd_p1=p1,
        sd_floor=float(spec.sigma_floor) if "sigma" in free else 0.0,
        collapse_at=collapse_at,
        means_free="means" in free,
        sd_free="sigma" in free,
        shared_sd=bool(spec.shared_sd),
        ordered=bool(spec.ordered),
        store_z=bool(store_z),
    )


def _collapse_message(it, scale):
    return (
        f"`sigma` of a component collapsed below {1e-10 * scale:.3g} (1e-10 x the data sd) at "
        f"iteration {it}: a component sits on tied values, where the likelihood grows without "
        "bound. Use fewer components, a sigma prior that vanishes at 0 (e.g. InverseGamma, or "
        "Uniform with lower > 0), or known sds (sigma=...)"
    )


def uses_moves(spec) -> bool:
    """Whether the relocation move applies: Normal components, free means, k >= 2, no labels.

    The move's likelihood ratio (:func:`mixtures._kernels.mixture_loglik_change`) is the Normal
    mixture's; the Student-t family's kernel (:mod:`mixtures.engines.gibbs_t`) runs without it.
    """
    normal = spec.family == "normal"
    return normal and "means" in spec.free and spec.k >= 2 and not spec.labelled


def with_moves(config: KernelConfig, moves: bool, sd: np.ndarray) -> KernelConfig:
    """Return `config` with the relocation move on or off, and whether the prior is exchangeable.

    Exchangeable: the same prior for every component (weights, means, sd prior or known sds
    `sd`), so a move may relabel the components by sorting their means
    (:func:`mixtures._kernels.relocate`).
    """
    same = [config.weight_conc, config.mean_loc, config.mean_scale, config.sd_p0, config.sd_p1]
    same += [] if config.sd_free else [sd[0]]
    exchangeable = all(np.all(v == v[0]) for v in same)
    return config._replace(moves=bool(moves), exchangeable=bool(exchangeable))


# Public name for mixtures.engines.distributed, which drives the same kernels from a Dask client.
collapse_message = _collapse_message
