"""The Gibbs engine for multivariate mixtures with the inverse-Wishart covariance prior.

Same scheme as the univariate engine (:mod:`mixtures.engines.gibbs`): one fused pass over the
data per iteration draws every assignment and accumulates counts, sums and scatter matrices;
then exact draws of the weights (Dirichlet), the means (Normal given the precisions, restricted
to the order along ``ordered_by`` when set) and the precisions (Wishart given the means, by
Bartlett's decomposition), and replica exchange over powers of the likelihood.

**Missing cells** (``mv_mixture(..., missing="model")``): the complete rows keep the fused
pass; the incomplete rows follow it (:func:`mixtures._kernels.mv_missing_sweep`): each draws
its component from its observed cells' marginal, then its missing cells from their
conditional Normal given the observed cells and that component, and adds the completed row to
the sums. The cold chains' draws of the missing cells are stored as ``imputed`` (dim
``missing_cell``). Rows are reordered (complete first, then the incomplete ones grouped by
missingness pattern, :func:`missing_rows`) inside the run and restored after.
"""

from __future__ import annotations

import time

import numpy as np
from numba import get_num_threads

from mixtures._kernels import (
    MissingRows,
    MvChainState,
    MvKernelConfig,
    chain_state,
    mv_run,
    mv_run_missing,
    mv_run_missing_threaded,
    mv_run_threaded,
)
from mixtures.analysis.diagnostics import is_sparse
from mixtures.engines import gibbs_mvt
from mixtures.engines.base import RawDraws
from mixtures.engines.chain_threads import run_chain_groups, run_family_groups
from mixtures.engines.extend import AUTO_DRAWS, AUTO_TUNE, EM_TUNE, run_draws
from mixtures.engines.starts import (
    em_optima,
    multivariate_starts,
    sparse_starts,
    uses_em_starts,
)
from mixtures.engines.tempering import (
    adaptation_rounds,
    replica_state,
    run_record,
    run_segment,
    sample_stats_arrays,
    stores_assignments,
)
from mixtures.model.mfm_mv import draw_inverse_wishart

__all__ = [
    "FAMILY_HOOKS",
    "missing_rows",
    "mv_data",
    "mv_kernel_config",
    "sample_mv",
    "sparse_concentration",
]

#: Multivariate component families other than the Normal: the module with each one's state,
#: prior arrays, records and kernel (:mod:`mixtures.engines.gibbs_mvt`).
FAMILY_HOOKS = {"mvt": gibbs_mvt}

_PARALLEL_MIN = 100_000
# Draw missing cells from their conditional given the observed cells (the only correct choice;
# the calibration test sets it False, the marginal, as a negative control that must fail).
_CONDITIONAL = True
_N_BLOCKS = 8


def mv_data(model) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the model's data, missing cells at their column's mean, and the observed mask.

    The mask is None when every cell is observed (the model has no ``observed_cells``).
    """
    x = np.ascontiguousarray(model["y_data"].get_value(), dtype=np.float64)
    if "observed_cells" not in model.named_vars:
        return x, None
    mask = np.asarray(model["observed_cells"].get_value(), dtype=bool)
    if mask.all():
        return x, None
    if mask.shape != x.shape:
        raise ValueError(
            f"`observed_cells` should have the shape of `y_data` {x.shape}, but got "
            f"{mask.shape}: set both with pm.set_data"
        )
    counts = np.maximum(mask.sum(axis=0), 1)
    fill = np.where(mask, x, 0.0).sum(axis=0) / counts
    return np.ascontiguousarray(np.where(mask, x, fill)), mask


def missing_rows(
    xi: np.ndarray,
    mask: np.ndarray,
    n_rep: int,
    ref_mean: np.ndarray,
    ref_var: np.ndarray,
    conditional: bool = True,
) -> tuple[MissingRows, np.ndarray]:
    """Lay out incomplete rows for :func:`mixtures._kernels.mv_missing_sweep`, by pattern.

    Parameters
    ----------
    xi : numpy.ndarray of shape (n_inc, d)
        The incomplete rows (their missing cells are the completions' starting values).
    mask : numpy.ndarray of bool, shape (n_inc, d)
        True where a cell is observed.
    n_rep : int
        Replicas (chains x temperatures): one completion of the rows each.
    ref_mean, ref_var : numpy.ndarray of shape (d,)
        The reference density of the missing cells (tempering).
    conditional : bool, default True
        False only for the calibration test's negative control (marginal draws).

    Returns
    -------
    rows : MissingRows
        The kernel's layout: rows grouped by missingness pattern.
    order : numpy.ndarray of int64, shape (n_inc,)
        ``order[i]`` is the row of `xi` at the kernel's position i.
    """
    n_inc, d = xi.shape
    patterns, pat_of = np.unique(mask, axis=0, return_inverse=True)
    pat_of = pat_of.reshape(-1)
    order = np.argsort(pat_of, kind="stable").astype(np.int64)
    starts = np.searchsorted(pat_of[order], np.arange(len(patterns) + 1)).astype(np.int64)
    pats = np.empty(patterns.shape, dtype=np.int64)  # observed features, then missing
    xo = np.zeros((d, n_inc))
    for p, row in enumerate(patterns):
        pats[p] = np.concatenate([np.flatnonzero(row), np.flatnonzero(~row)])
        block = xi[order[starts[p] : starts[p + 1]]]
        xo[: row.sum(), starts[p] : starts[p + 1]] = block[:, row].T
    xc = np.array(np.broadcast_to(xi[order].T, (n_rep, d, n_inc)))  # writable, one per replica
    rows = MissingRows(
        xo=xo,
        xc=xc,
        starts=starts,
        pats=pats,
        n_o=patterns.sum(axis=1).astype(np.int64),
        ref_mean=np.asarray(ref_mean, dtype=np.float64),
        ref_var=np.asarray(ref_var, dtype=np.float64),
        conditional=bool(conditional),
    )
    return rows, order


class _Missing:
    """The incomplete rows' layout for :func:`mixtures._kernels.mv_run_missing`."""

    def __init__(self, x, mask, n_rep):
        incomplete = ~mask.all(axis=1)
        mi = mask[incomplete]
        obs = np.where(mask, x, np.nan)
        ref_mean = np.nanmean(obs, axis=0)  # the reference density of the missing cells
        ref_var = np.nanvar(obs, axis=0)
        ref_var = np.where(ref_var > 0, ref_var, 1.0)
        xi = np.ascontiguousarray(x[incomplete])
        self.kernel, inc_order = missing_rows(xi, mi, n_rep, ref_mean, ref_var, _CONDITIONAL)
        inc_rows = np.flatnonzero(incomplete)
        self.order = np.concatenate([np.flatnonzero(~incomplete), inc_rows[inc_order]])
        self.n_c = int((~incomplete).sum())
        position = np.empty_like(inc_order)
        position[inc_order] = np.arange(inc_order.size)
        rows, cols = np.nonzero(~mi)  # cells in row-major order of the original rows
        self.cells = np.ascontiguousarray(np.stack([position[rows], cols], axis=1).astype(np.int64))
        self.rows = inc_rows[rows]
        self.features = cols

    def restore(self, z: np.ndarray) -> np.ndarray:
        """Return the assignments of the reordered rows in the data's order."""
        out = np.empty_like(z)
        out[..., self.order] = z
        return out


def _init(x, spec, n_rep, rng):
    """Random starts: means at data points, every covariance cov(x) / k."""
    k, d = spec.k, x.shape[1]
    logw = np.full((n_rep, k), -np.log(k))
    mu = x[rng.choice(x.shape[0], size=(n_rep, k))]  # data points as starting means
    cov = np.cov(x, rowvar=False).reshape(d, d) / k + 1e-9 * np.eye(d)
    return logw, _order(mu, x, spec), np.broadcast_to(cov, (n_rep, k, d, d))


def _em_init(opt, x, spec, n_rep, rng):
    """Start around the EM optimum `opt` (:func:`~mixtures.engines.starts.multivariate_starts`)."""
    logw, mu, cov = multivariate_starts(opt, n_rep, x.shape[0], rng)
    if spec.ordered_by is not None:  # components by the EM means' order along ordered_by
        order = np.argsort(opt.means[:, spec.ordered_by])
        logw, mu, cov = logw[:, order], mu[:, order], cov[:, order]
    d = x.shape[1]
    floor = 1e-6 * np.mean(np.var(x, axis=0)) * np.eye(d)
    return logw, _order(mu, x, spec), cov + floor


def _order(mu, x, spec):
    """Means sorted and strictly increasing along feature ``ordered_by`` (when set)."""
    if spec.ordered_by is None:
        return np.ascontiguousarray(mu)
    by = spec.ordered_by
    order = np.argsort(mu[:, :, by], axis=1)
    mu = np.take_along_axis(mu, order[:, :, None], axis=1)
    step = 1e-3 * (np.std(x[:, by]) or 1.0)
    for j in range(1, mu.shape[1]):
        mu[:, j, by] = np.maximum(mu[:, j, by], mu[:, j - 1, by] + step)
    return np.ascontiguousarray(mu)


def _precision_factors(cov):
    """Cholesky factors F of the precisions (Lambda = F F^T) and log |Lambda|."""
    fac = np.linalg.cholesky(np.linalg.inv(cov))
    logdet = 2 * np.log(np.diagonal(fac, axis1=-2, axis2=-1)).sum(-1)
    return np.ascontiguousarray(fac), np.ascontiguousarray(logdet)


def sparse_concentration(spec, init: str) -> float | None:
    """Return the mean weight concentration of a sparse fit started from EM, else None.

    Sparse fits (:func:`~mixtures.analysis.diagnostics.is_sparse`) without known labels start
    from :func:`~mixtures.engines.starts.sparse_starts` unless ``init="random"``.
    """
    if init == "random" or spec.labelled or not is_sparse(spec):
        return None
    return float(np.mean(spec.priors["weights"].params["a"]))


def _prior_draws(spec, d):
    """Return ``empty(shape, rng)``: means and covariances drawn from the spec's prior."""
    loc = np.asarray(spec.priors["means"].params["mu"], dtype=float)
    scale = np.asarray(spec.priors["means"].params["sigma"], dtype=float)
    nu = float(spec.priors["wishart"].params["nu"])
    psi = np.asarray(spec.priors["wishart"].params["psi"], dtype=float)

    def empty(shape, rng):
        mu = loc + scale * rng.standard_normal(shape + (d,))
        chol = draw_inverse_wishart(np.full(shape, nu), np.broadcast_to(psi, shape + (d, d)), rng)
        return mu, chol @ np.swapaxes(chol, -1, -2)

    return empty


def _sparse_init(candidates, x, spec, n_rep, n_temps, rng):
    """Sparse starts (:func:`~mixtures.engines.starts.sparse_starts`), sorted if ordered."""
    empty = _prior_draws(spec, x.shape[1])
    logw, mu, cov = sparse_starts(candidates, spec.k, n_rep, n_temps, x.shape[0], empty, rng)
    if spec.ordered_by is not None:  # every array in the means' order along ordered_by
        order = np.argsort(mu[:, :, spec.ordered_by], axis=1)
        logw = np.take_along_axis(logw, order, axis=1)
        mu = np.take_along_axis(mu, order[:, :, None], axis=1)
        cov = np.take_along_axis(cov, order[:, :, None, None], axis=1)
    d = x.shape[1]
    floor = 1e-6 * np.mean(np.var(x, axis=0)) * np.eye(d)
    return logw, _order(mu, x, spec), cov + floor


def _starts(engine, x, n_rep, rng, plan, n_temps):
    spec = engine.spec
    if plan.get("sparse") and plan["optima"]:
        start = _sparse_init(plan["optima"], x, spec, n_rep, n_temps, rng)
        filled = sorted({opt.weights.size for opt in plan["optima"]})
        return start, f"EM, sparse ({len(plan['optima'])} candidates, k' = {filled})"
    if uses_em_starts(plan["init"], n_temps, x.shape[0], spec.k) and not spec.labelled:
        optima = plan["optima"] or em_optima(x, spec.k, rng)
        if optima:
            return _em_init(optima[0], x, spec, n_rep, rng), "EM (best of several)"
    return _init(x, spec, n_rep, rng), "random"


def sample_mv(
    engine,
    x,
    betas,
    plan,
    *,
    draws,
    tune,
    chains,
    rng,
    progressbar,
    store_assignments,
):
    """Run the multivariate sampler; return its :class:`~mixtures.engines.base.RawDraws`.

    ``plan`` holds ``tempering`` (as the user gave it), ``init``, the EM ``optima`` found
    while choosing the ladder and the extension ``budget``; ``draws=None`` extends the chains
    (:mod:`mixtures.engines.extend`).
    """
    t_start = time.perf_counter()
    spec = engine.spec
    options = dict(draws=draws, tune=tune, chains=chains, store_assignments=store_assignments)
    runner, start = _mv_runner(engine, x, betas, plan, rng, progressbar, options)
    merged, record = run_draws(
        draws,
        runner.segment,
        _checked,
        t_start=t_start,
        budget=plan["budget"],
        label_free=is_sparse(spec),
    )
    posterior, st = _results(merged, runner.missing)
    if runner.family is not None:
        runner.family.posterior(merged, spec, posterior, st)
    attrs = run_record(
        st, runner.state.betas, bool(runner.rounds), "assignment" in posterior, t_start
    )
    attrs.update(record, mixtures_starts=start, mixtures_tune=runner.tune)
    steps = _mv_steps(spec, runner.family is not None, runner.missing is not None, betas.size)
    return RawDraws(posterior=posterior, stats=st, attrs=attrs, steps=steps)


def _mv_runner(engine, x, betas, plan, rng, progressbar, options):
    """Return the run's :class:`_MvRunner` on its starting state, and how it started.

    Parameters
    ----------
    engine : GibbsEngine
        The engine (its spec, model and known labels).
    x : numpy.ndarray of shape (n_obs, n_features)
        The data, missing cells at their column's mean.
    betas : numpy.ndarray
        The inverse temperatures.
    plan : dict
        As in :func:`sample_mv`.
    rng : numpy.random.Generator
        Draws the starts, the replicas' streams and the family's state, in that order.
    progressbar : bool or None
        As in :func:`sample_mv`.
    options : dict
        ``draws``, ``tune`` (None: by the start), ``chains`` and ``store_assignments``.

    Returns
    -------
    (_MvRunner, str)
        The runner (its ``tune``, ``missing`` and ``family`` set) and the starts' description.
    """
    spec, chains = engine.spec, options["chains"]
    n_obs, n_temps = x.shape[0], betas.size
    missing = _Missing(x, plan["mask"], chains * n_temps) if plan.get("mask") is not None else None
    (logw, mu, cov), start = _starts(engine, x, chains * n_temps, rng, plan, n_temps)
    tune = options["tune"]
    if tune is None:
        tune = EM_TUNE if start != "random" else AUTO_TUNE
    chain = _chain_state(logw, mu, cov, betas, engine._labels(n_obs), missing, chains, rng)
    x_run = x if missing is None else np.ascontiguousarray(x[missing.order[: missing.n_c]])
    runner = _MvRunner(spec, x_run, chain, tune, chains, progressbar)
    runner.missing = missing
    family = FAMILY_HOOKS.get(spec.family)
    if family is not None:
        known = {"nu": np.asarray(engine.model["nu"].get_value())} if "nu" in spec.known else {}
        runner.family = family
        runner.family_state = family.initial_state(spec, known, chain.z.shape[0], n_obs, rng)
    adapt = isinstance(plan["tempering"], str | int | np.integer)
    runner.rounds = adaptation_rounds(tune) if adapt and n_temps > 2 else []
    rule = options["store_assignments"]
    runner.store_z = stores_assignments(
        rule, spec, chains * (options["draws"] or AUTO_DRAWS) * n_obs
    )
    runner.store_rule = (rule, chains * n_obs)
    return runner, start


def _mv_steps(spec, t_family: bool, missing: bool, n_temps: int) -> str:
    """Return the multivariate run's steps, as recorded in the posterior's attrs.

    Parameters
    ----------
    spec : MixtureSpec
        The model's spec (which parameters are free).
    t_family : bool
        Student-t components (precision weights drawn).
    missing : bool
        Missing cells drawn.
    n_temps : int
        Number of temperatures.

    Returns
    -------
    str
    """
    steps = "Gibbs[assignment, weights, means, precisions (Wishart)"
    steps += ", precision weights" if t_family else ""
    steps += ", nu (MH on log nu)" if "nu" in spec.free else ""
    steps += ", missing cells]" if missing else "]"
    steps += f" + replica exchange ({n_temps} temperatures)" if n_temps > 1 else ""
    return steps


def _chain_state(logw, mu, cov, betas, labels, missing, chains, rng) -> MvChainState:
    """Return the run's starting state (the incomplete rows' labels last, as their rows)."""
    n_temps, k = betas.size, mu.shape[1]
    fac, logdet = _precision_factors(cov)
    replicas = replica_state(rng, chains, n_temps, labels.size, k)
    fixed = labels if missing is None else np.ascontiguousarray(labels[missing.order])
    params = {"logw": logw, "mu": mu, "fac": fac, "logdet": logdet}
    return chain_state(MvChainState, params, replicas, betas, fixed)


def _results(merged: dict, missing) -> tuple[dict, dict]:
    """Return the posterior (rows in the data's order) and the sample stats of a run."""
    posterior = mv_posterior(merged)
    if missing is not None:
        if "assignment" in posterior:
            posterior["assignment"] = missing.restore(posterior["assignment"])
        posterior["imputed"] = merged["imputed"]
    st = {name: merged[name] for name in ("n_changed", "complete_loglik", "tempered_loglik")}
    st["swap_accept"] = merged["swap_accept"]
    return posterior, st


def mv_kernel_config(spec, store_z: bool) -> MvKernelConfig:
    """Return the spec's priors as the multivariate kernel's config."""
    return MvKernelConfig(
        weight_conc=np.array(spec.priors["weights"].params["a"], dtype=float),
        mean_loc=np.array(spec.priors["means"].params["mu"], dtype=float),
        mean_scale=np.array(spec.priors["means"].params["sigma"], dtype=float),
        wishart_nu=float(spec.priors["wishart"].params["nu"]),
        wishart_psi=np.array(spec.priors["wishart"].params["psi"], dtype=float),
        ordered_by=-1 if spec.ordered_by is None else int(spec.ordered_by),
        store_z=bool(store_z),
    )


class _MvRunner:
    """Runs segments of draws on kept state arrays (see the univariate ``_Runner``)."""

    def __init__(self, spec, x, chain, tune, chains, progressbar):
        self.spec, self.x, self.state = spec, x, chain
        self.tune, self.chains, self.progressbar = tune, chains, progressbar
        self.done, self.rounds, self.store_z, self.store_rule = 0, [], False, ("auto", 0)
        self.missing = None
        self.family, self.family_state = None, None

    def segment(self, n: int) -> dict:
        """Run `n` more draws of every chain (tuning first, on the first call)."""
        spec, chains, k, d = self.spec, self.chains, self.spec.k, self.x.shape[1]
        rule, per_draw = self.store_rule
        total = (self.done + n) * per_draw
        self.store_z = self.store_z and stores_assignments(rule, spec, total)
        config = mv_kernel_config(spec, self.store_z)
        z, n_temps, miss = self.state.z, self.state.betas.size, self.missing
        out = (np.empty((chains, n, k)), np.empty((chains, n, k, d)))
        out += (np.empty((chains, n, k, d, d)),)
        out += (np.empty((chains, n if self.store_z else 0, z.shape[1]), dtype=z.dtype),)
        imputed = np.empty((chains, n, 0 if miss is None else miss.cells.shape[0]))
        st = sample_stats_arrays(chains, n, n_temps, sigma_accept=False)
        stats = tuple(st.values())
        offset = self.tune + self.done
        threaded = self.state.logw.shape[0] * self.x.shape[0] >= _PARALLEL_MIN
        family = self.family
        if family is not None:
            fam_config = family.kernel_config(spec)
            fam_out = family.outputs(chains, n, k, self.x.shape[0] if self.store_z else 0)

        def run_chunk(start, stop):
            args = (self.x, start, stop, offset, config, self.state, out, stats)
            if family is not None:  # the family's kernel: chains on threads, at any size
                run_family_groups(
                    family.run, fam_config, self.family_state, fam_out, args, get_num_threads()
                )
                return
            if miss is not None and not threaded:  # the chains on threads, as below

                def extra(c0, c1, r0, r1):
                    rows = miss.kernel._replace(xc=miss.kernel.xc[r0:r1])
                    return rows, miss.cells, imputed[c0:c1]

                run_chain_groups(mv_run_missing, *args, get_num_threads(), extra)
                return
            if miss is not None:
                args += (miss.kernel, miss.cells, imputed)
                mv_run_missing_threaded(*args, _N_BLOCKS)
            elif threaded and chains % get_num_threads():  # the sweep's ranges on threads
                mv_run_threaded(*args, _N_BLOCKS)
            else:  # whole chains on threads (at large N in the threaded sweep's ranges)
                blocks = _N_BLOCKS if threaded else 1
                run_chain_groups(mv_run, *args, get_num_threads(), lambda *_: (blocks,))

        label = f"Gibbs: {chains} chains x {n_temps} temperatures"
        run_segment(self, offset, n, label, run_chunk)
        names = ("weights", "means", "precision", "assignment")
        result = dict(zip(names, out), imputed=imputed, **st)
        if family is not None:
            result["precision_weights"] = fam_out[1]
            if "nu" in spec.free:  # a fixed nu is no draw (nor a diagnostic)
                result.update(nu=fam_out[0], nu_accept=fam_out[2])
        return result


def mv_posterior(merged: dict) -> dict:
    """Return the posterior dict: covariances from the precisions, sds from their diagonals."""
    cov = np.linalg.inv(merged["precision"])
    posterior = {
        "weights": merged["weights"],
        "means": merged["means"],
        "chol_cov": np.linalg.cholesky(cov),
        "sigma": np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)),
    }
    z = merged["assignment"]
    if z.shape[1] and z.shape[1] == merged["weights"].shape[1]:
        posterior["assignment"] = z  # dropped if storing stopped during an extension
    return posterior


def _checked(merged: dict) -> dict:
    """Return the parameters whose diagnostics decide an automatic run."""
    sigma = np.sqrt(np.diagonal(np.linalg.inv(merged["precision"]), axis1=-2, axis2=-1))
    out = {"weights": merged["weights"], "means": merged["means"], "sigma": sigma}
    if "nu" in merged:
        out["nu"] = merged["nu"]
    return out
