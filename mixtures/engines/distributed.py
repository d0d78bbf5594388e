r"""The Gibbs sweep where the data live: one data set on a Dask cluster.

For a model built on a ``dask.array`` (:mod:`mixtures.model.dask_data`),
``mixtures.sample(model, client=client)`` runs the Gibbs engine's iteration split in two:

* **the workers** hold the data's chunks in memory for the whole run (one future per chunk,
  computed once, and one Dask actor per worker, :class:`~mixtures.dask_sweep.ChunkSweeper`,
  holding that worker's chunks) and, every iteration, sweep every chain over their chunks
  with the local engine's kernel (:func:`mixtures._kernels.sweep_part` /
  ``mv_sweep_part``), keyed by the chunk's global offset
  (:func:`mixtures._kernels.offset_keys`), so each point draws the uniform it draws in one
  process; each chunk keeps its assignments (one byte per point and chain) and returns only
  the K-sized sufficient statistics per chain (counts, sums, sums of squares; K x D x D
  scatter sums for 2-D data);
* **the client** holds the parameters and the random streams, sums the chunks' statistics
  and runs the local engine's own functions for everything else (``prepare``,
  ``after_sweep``: the exact conditional draws of the weights, means, sds or precisions).

So with the same seed the draws equal those of :func:`mixtures.sample` on the same data in
one process (the local Gibbs engine with ``tempering=False``), up to the order of the
floating-point sums. Per iteration only O(K D^2) numbers per chunk and chain cross the
network, whatever N is.

**Faults.** An iteration's assignments are a function of that iteration's parameters and
the counters alone. Every sweep call carries the parameters of its iteration and of the one
before. When a worker is lost, its actor's call fails; Dask recomputes the lost chunks from
their graph (the client holds their futures), a new actor is made for them, and it first
re-sweeps the previous iteration to rebuild their assignments, then sweeps: a lost worker
changes neither the draws nor the sample stats (``lost`` in the run's timing record counts
these). With ``backend="tasks"`` Dask reruns the lost chunk's task itself, with the same
rebuild.

**Starts** are the local engine's: EM (best of 6 runs) on a 2,000-point subsample drawn with
the same random generator (only those rows are fetched), or random data points. Tempering is
off (``tempering="auto"`` turns it off from N k = 60,000; ``False`` is accepted, anything
else refused), and no pointwise log-likelihood is stored (N x draws values). Known labels
and stored assignments are not supported at this size.
"""

from __future__ import annotations

import json
import math
import time
import uuid

import arviz as az
import numpy as np
import pymc as pm
from distributed import wait

from mixtures._kernels import (
    ChainState,
    MvChainState,
    after_sweep,
    chain_state,
    mv_after_sweep,
    mv_prepare,
    prepare,
    relocation_accept,
    relocation_proposals,
)
from mixtures.analysis.diagnostics import warn_convergence
from mixtures.dask_sweep import (
    ChunkSweeper,
    chunk_change,
    chunk_moments,
    chunk_rows,
    forget_run,
    sweep_chunk,
)
from mixtures.engines.extend import AUTO_TUNE, EM_TUNE, run_draws
from mixtures.engines.gibbs import (
    DegenerateDataError,
    GibbsEngine,
    collapse_message,
    kernel_config,
    uses_moves,
    with_moves,
)
from mixtures.engines.gibbs_mv import mv_kernel_config, mv_posterior
from mixtures.engines.handle import check_draws
from mixtures.engines.seeds import one_seed
from mixtures.engines.starts import (
    em_optima,
    multivariate_starts,
    univariate_starts,
    uses_em_starts,
)
from mixtures.engines.tempering import (
    drive,
    replica_state,
    run_record,
    sample_stats_arrays,
)
from mixtures.interrupt import stop_on_interrupt
from mixtures.model.dask_data import dask_data_of
from mixtures.model.spec import spec_of
from mixtures.progress import default_progressbar

__all__ = ["sample_distributed"]

#: Chunks per worker thread above which the data are rechunked (each chunk is one task per
#: iteration, and the scheduler's cost per task is what the per-iteration overhead is made of).
MAX_CHUNKS_PER_THREAD = 4
_EM_POINTS = em_optima.__kwdefaults__["max_points"]  # the local engine's subsample size
_NO_LABELS = np.full(0, -1, dtype=np.int32)  # known labels are not supported on a cluster


# ------------------------------------------------------------------ the chunks
class ChunkedData:
    """The data's chunks in the workers' memory, and one sweep of all of them per call.

    Parameters
    ----------
    client : distributed.Client
    data : dask.array.Array
        Rows chunked; rechunked to at most :data:`MAX_CHUNKS_PER_THREAD` chunks per thread.
    backend : {"actors", "tasks"}
        ``"actors"`` (default): one :class:`~mixtures.dask_sweep.ChunkSweeper` actor per
        worker, holding the chunks that worker computed, called directly by the client
        every iteration (one message each way per worker); a call that fails because its
        worker is gone makes a new actor for those chunks (Dask recomputes them from their
        graph) and reruns the sweep there. ``"tasks"``: one
        ``client.submit`` per chunk and iteration, through the scheduler (Dask reschedules
        lost work itself). Actors were measured several times faster per iteration
        (``bench/big_data.py``).
    """

    def __init__(self, client, data, backend: str = "actors"):
        threads = max(1, sum(client.nthreads().values()))
        if data.numblocks[0] > MAX_CHUNKS_PER_THREAD * threads:
            rows = math.ceil(data.shape[0] / (MAX_CHUNKS_PER_THREAD * threads))
            data = data.rechunk({0: rows})
        self.client, self.run = client, uuid.uuid4().hex
        self.workers, self.threads = len(client.nthreads()), threads
        self.sizes = np.asarray(data.chunks[0], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.row_shape = data.shape[1:]
        self.blocks = client.compute(list(data.to_delayed().ravel()))
        self.lost, self.backend, self.groups, self.actors = 0, backend, [], []
        if backend == "actors":  # one actor per worker, holding the chunks it computed
            wait(self.blocks)
            where = client.who_has(self.blocks)
            by_worker = {}
            for i, block in enumerate(self.blocks):
                by_worker.setdefault(where[block.key][0], []).append(i)
            self.groups = list(by_worker.values())
            self.actors = [None] * len(self.groups)
            for g, worker in enumerate(by_worker):
                self._recover(g, nthreads=client.nthreads()[worker])
        self.timing = {"iterations": 0, "wall": 0.0, "kernel_max": 0.0, "kernel_sum": 0.0}
        self.timing.update(prepare=0.0, cluster=0.0, reduce=0.0, draw=0.0, moves=0.0)

    def sweep(self, it, now, before):
        """Sweep iteration `it` on every chunk; return the summed (n, s1, s2, changed)."""
        t0 = time.perf_counter()
        parts = (
            self._actor_sweep(it, now, before) if self.actors else self._task_sweep(it, now, before)
        )
        t1 = time.perf_counter()
        total = [part.copy() for part in parts[0][0]]
        for stats, _, _ in parts[1:]:
            for acc, value in zip(total, stats, strict=True):
                acc += value
        per_worker = {}
        for _, seconds, pid in parts:
            per_worker[pid] = per_worker.get(pid, 0.0) + seconds
        timing = self.timing
        timing["cluster"] += t1 - t0
        timing["reduce"] += time.perf_counter() - t1
        timing["kernel_max"] += max(per_worker.values())
        timing["kernel_sum"] += sum(per_worker.values())
        return total

    def _task_sweep(self, it, now, before):
        futures = [
            self.client.submit(
                sweep_chunk,
                block,
                int(off),
                self.run,
                i,
                it,
                now,
                before,
                key=f"mixtures-sweep-{self.run}-{it}-{i}",
            )  # fmt: skip
            for i, (block, off) in enumerate(zip(self.blocks, self.offsets, strict=True))
        ]
        return self.client.gather(futures)

    def _actor(self, g, nthreads=1):
        """Make the sweeper actor of chunk group `g`, where its chunks are (or are recomputed)."""
        chunks = self.groups[g]
        future = self.client.submit(
            ChunkSweeper, [int(self.offsets[i]) for i in chunks], nthreads,
            *(self.blocks[i] for i in chunks), actor=True,
            key=f"mixtures-chunks-{self.run}-{g}-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        return future, future.result()

    def _actor_sweep(self, it, now, before):
        """One call per worker, straight to it; a lost actor is made again and rerun."""
        calls = [self._call(actor, it, now, before) for _, actor in self.actors]
        parts = []
        for i, call in enumerate(calls):
            try:
                if call is None:
                    raise OSError("the actor's worker is gone")
                parts.append(call.result())
            except (OSError, RuntimeError):  # its worker is gone: the chunk is recomputed
                parts.append(self._recover(i, it, now, before))
        return parts

    @staticmethod
    def _call(actor, it, now, before):
        try:
            return actor.sweep(it, now, before)
        except (OSError, RuntimeError):  # Dask: "Worker holding Actor was lost"
            return None

    def _recover(self, g, it=None, now=None, before=None, tries: int = 3, nthreads=1):
        """Make group `g`'s actor (again: where Dask recomputes its chunks); sweep there."""
        for attempt in range(tries):
            try:
                self.actors[g] = self._actor(g, nthreads)
                if now is None:  # the group's first actor
                    return None
                self.lost += 1
                return self.actors[g][1].sweep(it, now, before).result()
            except (OSError, RuntimeError):
                if attempt == tries - 1:
                    raise
                time.sleep(0.5)  # the scheduler has not yet seen the worker go
        raise AssertionError("unreachable")  # pragma: no cover

    def take(self, idx):
        """Return the rows at global indices `idx` (any shape), fetching only those rows."""
        flat = np.asarray(idx, dtype=np.int64).ravel()
        out = np.empty((flat.size, *self.row_shape))
        which = np.searchsorted(self.offsets, flat, side="right") - 1
        jobs = []
        for b in np.unique(which):
            pos = np.flatnonzero(which == b)
            local = flat[pos] - self.offsets[b]
            jobs.append((pos, self.client.submit(chunk_rows, self.blocks[b], local, pure=False)))
        for pos, job in jobs:
            out[pos] = job.result()
        return out.reshape(*np.shape(idx), *self.row_shape)

    def change(self, proposal, logw, mu, sd) -> np.ndarray:
        """Sum the relocation move's log-likelihood change over every chunk (one per chain).

        One call per worker (actors) or per chunk (tasks); a lost actor's chunks are
        recomputed by Dask and summed by tasks (its next sweep makes the actor again).
        """
        t0 = time.perf_counter()
        args = (proposal, logw, mu, sd)
        if self.actors:
            calls = [self._call_change(actor, args) for _, actor in self.actors]
            parts = []
            for g, call in enumerate(calls):
                try:
                    if call is None:
                        raise OSError("the actor's worker is gone")
                    parts.append(call.result())
                except (OSError, RuntimeError):
                    parts.append(self._tasks_change(self.groups[g], args))
        else:
            parts = [self._tasks_change(range(len(self.blocks)), args)]
        self.timing["moves"] += time.perf_counter() - t0
        return np.sum(parts, axis=0)

    @staticmethod
    def _call_change(actor, args):
        try:
            return actor.change(*args)
        except (OSError, RuntimeError):
            return None

    def _tasks_change(self, chunks, args) -> np.ndarray:
        jobs = [self.client.submit(chunk_change, self.blocks[i], *args, pure=False) for i in chunks]
        return np.sum(self.client.gather(jobs), axis=0)

    def covariance(self) -> np.ndarray:
        """Return the data's covariance (ddof 1), reduced from per-chunk moments."""
        parts = self.client.gather([self.client.submit(chunk_moments, b) for b in self.blocks])
        n = sum(p[0] for p in parts)
        total = sum(p[1] for p in parts)
        cross = sum(p[2] for p in parts)
        mean = total / n
        return (cross - n * np.outer(mean, mean)) / (n - 1)

    def close(self) -> None:
        """Release the chunks and the run's state on the workers."""
        self.client.cancel(self.blocks + [a[0] for a in self.actors if a is not None])
        try:
            self.client.run(forget_run, self.run)
        except Exception:  # noqa: BLE001 - best effort: a worker may be gone
            pass

    def timing_record(self) -> dict:
        """Milliseconds per iteration of each part, and the overhead over the kernels."""
        t = self.timing
        its = max(t["iterations"], 1)
        per = {name: 1e3 * t[name] / its for name in t if name != "iterations"}
        per["overhead"] = per["wall"] - per["kernel_max"]
        per = {name: round(v, 3) for name, v in per.items()}
        record = {"backend": self.backend, "chunks": int(self.sizes.size), "lost": self.lost}
        return {**record, "iterations": t["iterations"], **per}


# ------------------------------------------------------------------ the drivers
class _Driver(GibbsEngine):
    """What the univariate and the multivariate runs share: segments of draws on the cluster."""

    names: tuple = ()

    def __init__(self, model, spec, chunks, chains, progressbar):
        super().__init__(model, spec)
        self.chunks, self.chains, self.progressbar = chunks, chains, progressbar
        self.n_obs = int(spec.built_on["n_obs"])
        self.done, self.tune, self.before = 0, 0, None
        self.moves = False

    def _subsample(self, rng):
        """Return the local engine's EM subsample (same generator calls; only these rows)."""
        if self.n_obs > _EM_POINTS:
            return self.chunks.take(rng.choice(self.n_obs, _EM_POINTS, replace=False))
        return self.chunks.take(np.arange(self.n_obs))

    def segment(self, n: int) -> dict:
        """Run `n` more draws of every chain (tuning first, on the first call)."""
        out, st, step = self._arrays(n)
        stats = tuple(st.values())
        offset = self.tune + self.done

        def run_chunk(start, stop):
            for it in range(start, stop):
                t0 = time.perf_counter()
                step(it, offset, out, stats)
                self.chunks.timing["wall"] += time.perf_counter() - t0
                self.chunks.timing["iterations"] += 1

        label = f"Gibbs on Dask: {self.chains} chains, {self.chunks.sizes.size} chunks"
        first = 0 if self.done == 0 else offset
        drive(offset + n, [], self.progressbar, label, run_chunk, None, start=first)
        self.done += n
        return dict(zip(self.names, out), **st)

    def _sweep(self, it, now):
        """Sweep on the cluster (keeping `now` for the next iteration's fault recovery)."""
        now = tuple(np.array(a, copy=True) for a in now)  # the kernels update theirs in place
        sums = self.chunks.sweep(it, now, self.before)
        self.before = now
        return sums


class _Univariate(_Driver):
    names = ("weights", "means", "sd", "assignment")

    def start(self, rng, init):
        """Chain starts as the local engine's ``_starts`` (the same generator calls)."""
        spec, k, n_rep = self.spec, self.spec.k, self.chains
        _, known = self._read()  # the known parameters (y_data is an empty placeholder)
        scale = float(spec.built_on["sd"]) or 1.0
        if uses_em_starts(init, 1, self.n_obs, k) and "means" not in known:
            optima = em_optima(self._subsample(rng)[:, None], k, rng)
            if optima:
                logw, mu, sd = univariate_starts(optima[0], n_rep, self.n_obs, rng)
                if spec.shared_sd:
                    sd = np.sqrt((np.exp(logw) * sd**2).sum(axis=1, keepdims=True))
                sd = np.maximum(sd, 1e-3 * scale)
                params = logw, self._order(mu, scale), self._admissible_sd(sd, known, rng)
                return self._chain(params, rng), "EM (best of several)"
        logw = np.full((n_rep, k), -np.log(k))
        if "means" in known:
            mu = np.broadcast_to(known["means"], (n_rep, k)).copy()
        else:
            mu = np.sort(self.chunks.take(rng.integers(0, self.n_obs, size=(n_rep, k))), axis=1)
            mu += scale * 1e-3 * rng.standard_normal((n_rep, k))
            mu = self._order(mu, scale)
        shape = (n_rep, 1) if spec.shared_sd else (n_rep, k)
        sd = scale / np.sqrt(k) * np.exp(0.2 * rng.standard_normal(shape))
        return self._chain((logw, mu, self._admissible_sd(sd, known, rng)), rng), "random"

    def _chain(self, params, rng):
        replicas = replica_state(rng, self.chains, 1, 0, self.spec.k)
        params = dict(zip(("logw", "mu", "sd"), params, strict=True))
        self.state = chain_state(ChainState, params, replicas, np.ones(1), _NO_LABELS)
        k = self.spec.k
        self.work = (np.empty((self.chains, k)), np.empty((self.chains, k)))
        self.work += (np.empty(self.chains, dtype=np.uint64),)
        return self.state

    def _arrays(self, n):
        chains, k, spec = self.chains, self.spec.k, self.spec
        scale = float(spec.built_on["sd"]) or 1.0
        config = kernel_config(spec, False, collapse_at=1e-10 * scale)
        config = with_moves(config, self.moves, self.state.sd)
        out = tuple(np.empty((chains, n, k)) for _ in range(3))
        out += (np.empty((chains, 0, 0), dtype=self.state.z.dtype),)
        st = sample_stats_arrays(chains, n, 1, sigma_accept=True)
        chain = self.state
        a, c, keys = self.work
        move = self._relocation(config, chain) if self.moves else None
        timing = self.chunks.timing

        def step(it, offset, out, stats):
            t0 = time.perf_counter()
            prepare(chain, a, c, keys)
            timing["prepare"] += time.perf_counter() - t0
            n_, s1, s2, changed = self._sweep(it, (a, c, chain.mu, keys))
            t1 = time.perf_counter()
            ok = after_sweep(it, offset, config, chain, out, stats, n_, s1, s2, changed)
            timing["draw"] += time.perf_counter() - t1
            if not ok:
                raise DegenerateDataError(collapse_message(it, scale))
            if move is not None:
                move()

        return out, st, step

    def _relocation(self, config, chain):
        """Make the local engine's relocation move, its likelihood change summed on the workers.

        Proposals and acceptance use the chain's own random streams on the client, as
        :func:`mixtures._kernels.relocate` does in one process; only the change of the
        log-likelihood, a sum over the rows, is computed where the rows are.
        """
        logw, mu, sd = chain.logw, chain.mu, chain.sd
        prior = (config.mean_loc, config.mean_scale, config.ordered, config.exchangeable)

        def move():
            rep, jump, x, log_u = relocation_proposals(logw, mu, chain.state, chain.rep_at, *prior)
            if (jump >= 0).any():
                delta = self.chunks.change((rep, jump, x), logw, mu, sd)
                relocation_accept(rep, jump, x, log_u, delta, logw, mu, sd, config.ordered)

        return move

    def posterior(self, merged):
        spec = self.spec
        posterior = {"weights": merged["weights"]}
        if "means" in spec.free:
            posterior["means"] = merged["means"]
        if "sigma" in spec.free:
            posterior["sigma"] = merged["sd"][:, :, 0] if spec.shared_sd else merged["sd"]
        names = ["n_changed", "complete_loglik", "tempered_loglik", "swap_accept"]
        names += ["sigma_accept"] if "sigma" in spec.free else []
        return posterior, {name: merged[name] for name in names}

    def checked(self, merged):
        return {"weights": merged["weights"], "means": merged["means"], "sigma": merged["sd"]}

    def steps(self):
        free = self.spec.free
        steps = "Gibbs[assignment, weights" + (", means" if "means" in free else "")
        steps += (", sigma (MH)" if "sigma" in free else "") + "]"
        return steps + (" + relocation (MH)" if self.moves else "")


class _Multivariate(_Driver):
    names = ("weights", "means", "precision", "assignment")

    def start(self, rng, init):
        """Chain starts as ``gibbs_mv``'s ``_starts`` (the same generator calls)."""
        spec, k, n_rep = self.spec, self.spec.k, self.chains
        sd = np.asarray(spec.built_on["sd"], dtype=float)
        d = sd.size
        start = "random"
        if uses_em_starts(init, 1, self.n_obs, k):
            optima = em_optima(self._subsample(rng), k, rng)
            if optima:
                opt = optima[0]
                logw, mu, cov = multivariate_starts(opt, n_rep, self.n_obs, rng)
                if spec.ordered_by is not None:
                    order = np.argsort(opt.means[:, spec.ordered_by])
                    logw, mu, cov = logw[:, order], mu[:, order], cov[:, order]
                cov = cov + 1e-6 * np.mean(sd**2) * np.eye(d)
                start = "EM (best of several)"
        if start == "random":
            logw = np.full((n_rep, k), -np.log(k))
            mu = self.chunks.take(rng.choice(self.n_obs, size=(n_rep, k)))
            cov = self.chunks.covariance().reshape(d, d) / k + 1e-9 * np.eye(d)
            cov = np.broadcast_to(cov, (n_rep, k, d, d))
        mu = self._order_mv(mu, sd)
        fac = np.linalg.cholesky(np.linalg.inv(cov))
        logdet = 2 * np.log(np.diagonal(fac, axis1=-2, axis2=-1)).sum(-1)
        fac, logdet = np.ascontiguousarray(fac), np.ascontiguousarray(logdet)
        replicas = replica_state(rng, self.chains, 1, 0, k)
        params = {"logw": logw, "mu": mu, "fac": fac, "logdet": logdet}
        self.state = chain_state(MvChainState, params, replicas, np.ones(1), _NO_LABELS)
        self.work = (np.empty((n_rep, k)), np.empty(n_rep), np.empty(n_rep, dtype=np.uint64))
        return self.state, start

    def _order_mv(self, mu, sd):
        """Means sorted and strictly increasing along ``ordered_by`` (``gibbs_mv._order``)."""
        by = self.spec.ordered_by
        if by is None:
            return np.ascontiguousarray(mu)
        order = np.argsort(mu[:, :, by], axis=1)
        mu = np.take_along_axis(mu, order[:, :, None], axis=1)
        step = 1e-3 * (sd[by] or 1.0)
        for j in range(1, mu.shape[1]):
            mu[:, j, by] = np.maximum(mu[:, j, by], mu[:, j - 1, by] + step)
        return np.ascontiguousarray(mu)

    def _arrays(self, n):
        chains, spec = self.chains, self.spec
        k, d = spec.k, spec.n_features
        config = mv_kernel_config(spec, False)
        out = (np.empty((chains, n, k)), np.empty((chains, n, k, d)))
        out += (np.empty((chains, n, k, d, d)),)
        out += (np.empty((chains, 0, 0), dtype=self.state.z.dtype),)
        st = sample_stats_arrays(chains, n, 1, sigma_accept=False)
        chain = self.state
        a, beta, keys = self.work

        timing = self.chunks.timing

        no_shift = np.zeros(chains)  # no missing cells: no reference density in the log-likelihood

        def step(it, offset, out, stats):
            t0 = time.perf_counter()
            mv_prepare(chain, a, beta, keys)
            timing["prepare"] += time.perf_counter() - t0
            n_, s1, s2, changed = self._sweep(it, (a, beta, chain.mu, chain.fac, keys))
            t1 = time.perf_counter()
            mv_after_sweep(it, offset, config, chain, out, stats, n_, s1, s2, changed, no_shift)
            timing["draw"] += time.perf_counter() - t1

        return out, st, step

    def posterior(self, merged):
        posterior = mv_posterior(merged)  # stores no assignments: none is added
        names = ("n_changed", "complete_loglik", "tempered_loglik", "swap_accept")
        return posterior, {name: merged[name] for name in names}

    def checked(self, merged):
        sigma = np.sqrt(np.diagonal(np.linalg.inv(merged["precision"]), axis1=-2, axis2=-1))
        return {"weights": merged["weights"], "means": merged["means"], "sigma": sigma}

    def steps(self):
        return "Gibbs[assignment, weights, means, precisions (Wishart)]"


# ------------------------------------------------------------------ the public entry
def _check(model, client, sampler, tempering, log_likelihood, kwargs):
    """Refuse what the distributed engine does not do, with what to do instead."""
    from distributed import Client

    if not isinstance(client, Client):
        raise ValueError(
            f"`client` should be a dask.distributed.Client, but got {type(client).__name__}"
        )
    if not isinstance(model, pm.Model) or dask_data_of(model) is None:
        raise ValueError(
            "`model` should be built on a dask.array with `client=` (e.g. "
            "mixtures.full_mixture(da.from_zarr(...), 3)), but got a model that holds its data "
            "in this process: sample it without `client=`"
        )
    spec = spec_of(model)
    ok, why = GibbsEngine.supports(model, spec)
    if not ok:
        raise ValueError(f"`model` cannot be sampled on a Dask cluster: {why}")
    if spec.labelled:
        raise ValueError("`labels` are not supported with dask data")
    if sampler not in ("auto", "gibbs"):
        raise ValueError(
            f"`sampler` should be 'auto' or 'gibbs' with `client=`, but got {sampler!r}"
        )
    if not (tempering is False or tempering is None or tempering == "auto" or tempering == 1):
        raise ValueError(
            f"`tempering` should be 'auto' or False with `client=` (off at this size), "
            f"but got {tempering!r}"
        )
    if log_likelihood is True:
        raise ValueError(
            "`log_likelihood` should be 'auto' or False with `client=`: the pointwise "
            "log-likelihood has N x draws values, but got True"
        )
    unknown = sorted(set(kwargs) - {"init", "budget", "moves", "backend"})
    if unknown:
        raise ValueError(
            "`client=` takes the Gibbs engine's options 'init', 'budget' and 'moves' (and "
            f"'backend'), but got {unknown}"
        )
    if kwargs.get("backend", "actors") not in ("actors", "tasks"):
        raise ValueError(f"`backend` should be 'actors' or 'tasks', but got {kwargs['backend']!r}")
    return spec


def sample_distributed(
    model,
    client,
    *,
    draws=None,
    tune=None,
    chains: int = 4,
    random_seed=None,
    progressbar=None,
    sampler: str = "auto",
    log_likelihood="auto",
    tempering="auto",
    warn: bool = True,
    **kwargs,
) -> az.InferenceData:
    """Run the Gibbs engine on `client`'s workers for a model built on a ``dask.array``.

    The arguments are those of :func:`mixtures.sample` (which calls this for ``client=``);
    ``init`` and ``budget`` as for the local Gibbs engine, and ``backend`` ("actors", the
    default, or "tasks"; see :class:`ChunkedData`). See the module docstring.

    Returns
    -------
    arviz.InferenceData
        ``posterior`` and ``sample_stats`` as the local Gibbs engine's, and ``constant_data``
        with the known parameters; no ``observed_data`` or ``log_likelihood`` (the data stay
        on the cluster). ``posterior.attrs["mixtures_cluster"]`` records the workers, chunks
        and milliseconds per iteration (wall, prepare, cluster round trip, reduce, parameter
        draws, the slowest worker's kernel time, the overhead over it).
    """
    spec = _check(model, client, sampler, tempering, log_likelihood, kwargs)
    check_draws(draws, tune, chains)
    progressbar = default_progressbar() if progressbar is None else progressbar
    t_start = time.perf_counter()
    # the seed CompiledMixture.sample hands the local engine, so that the draws are its
    seed = one_seed(random_seed)
    rng = np.random.default_rng(seed)
    driver, merged, record, start = _run(
        model, client, spec, chains, progressbar, rng, kwargs, (draws, tune, t_start)
    )
    posterior, stats = driver.posterior(merged)
    attrs = run_record(stats, np.ones(1), False, False, t_start)
    attrs.update(record, mixtures_starts=start, mixtures_tune=driver.tune)
    idata = _inference_data(model, spec, posterior, stats)
    _annotate(idata, spec, driver, attrs, t_start)
    if warn:
        warn_convergence(idata)
    return idata


def _annotate(idata, spec, driver, attrs, t_start) -> None:
    """Record the run (sampler, steps, cluster timing, seconds) in the posterior's attrs."""
    chunks = driver.chunks
    attrs["mixtures_cluster"] = json.dumps(
        {"workers": chunks.workers, "threads": chunks.threads, **chunks.timing_record()}
    )
    idata.posterior.attrs.update(
        mixtures_sampler="gibbs",
        mixtures_sampler_reason="data on a Dask cluster: the Gibbs sweep where the data live",
        mixtures_steps=driver.steps() + f" on a Dask cluster ({chunks.workers} workers)",
        mixtures_seconds=time.perf_counter() - t_start,
        sampling_time=attrs["mixtures_sampling_seconds"],
        mixtures_spec=spec.to_json(),
        mixtures_log_likelihood=(
            "not stored: the data stay on the cluster "
            f"({spec.built_on['n_obs']:,} observations x draws values)"
        ),
        **{k: v if not isinstance(v, list) else np.asarray(v) for k, v in attrs.items()},
    )


def _run(model, client, spec, chains, progressbar, rng, kwargs, run):
    """Run the draws on the cluster; return the driver, the merged draws, their record, the start.

    ``run`` = (draws, tune, t_start). The chunks are released on the workers at the end.
    """
    draws, tune, t_start = run
    chunks = None
    try:
        with (
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
            stop_on_interrupt("Sampling on the Dask cluster"),
        ):
            chunks = ChunkedData(client, dask_data_of(model), kwargs.get("backend", "actors"))
            kind = _Multivariate if not spec.univariate else _Univariate
            driver = kind(model, spec, chunks, chains, progressbar)
            driver.moves = bool(kwargs.get("moves", True)) and uses_moves(spec)
            _, start = driver.start(rng, kwargs.get("init", "auto"))
            driver.tune = (EM_TUNE if start != "random" else AUTO_TUNE) if tune is None else tune
            merged, record = run_draws(
                draws, driver.segment, driver.checked, t_start=t_start, budget=kwargs.get("budget")
            )
    finally:
        if chunks is not None:
            chunks.close()
    return driver, merged, record, start


def _inference_data(model, spec, posterior, stats) -> az.InferenceData:
    """Return the posterior and sample_stats groups; the known parameters as constants."""
    coords = {"component": np.asarray(model.coords["component"])}
    dims = {"weights": ["component"], "means": ["component"]}
    dims["sigma"] = ["component"] if posterior.get("sigma", np.empty((1, 1))).ndim == 3 else []
    if "chol_cov" in posterior:
        for name in ("feature", "feature_bis"):
            coords[name] = np.asarray(model.coords[name])
        dims.update(means=["component", "feature"], sigma=["component", "feature"])
        dims["chol_cov"] = ["component", "feature", "feature_bis"]
    idata = az.from_dict(posterior=posterior, sample_stats=stats, coords=coords, dims=dims)
    if spec.known:
        constants = {name: model[name].get_value() for name in spec.known}
        cdims = {name: list(model.named_vars_to_dims.get(name, ())) for name in constants}
        constant = az.dict_to_dataset(
            constants, coords=coords, dims=cdims, library=pm, default_dims=[]
        )
        idata.add_groups(constant_data=constant)
    return idata
