"""The workers' side of :mod:`mixtures.engines.distributed`: sweep one chunk of the data.

Kept apart from the engine so that a worker imports NumPy and the Numba kernels only (not
PyMC): a task's function is imported on the worker by its module's name.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mixtures._kernels import mv_sweep_part, offset_keys, relocation_change, sweep_part

__all__ = [
    "ChunkSweeper",
    "chunk_change",
    "chunk_moments",
    "chunk_rows",
    "forget_run",
    "sweep_chunk",
]

#: Per worker process, for the task backend: (run, chunk) -> that chunk's :class:`ChunkSweeper`,
#: dropped at the end of the run (:func:`forget_run`).
_CHUNK_STATE: dict = {}


def _sweep_block(block, offset, args, z, fixed):
    """Sweep every replica over one chunk; return (n, s1, s2, changed) for this chunk.

    `args` are the sweep's coefficients of this iteration: ``(a, c, mu, keys)`` for rows of
    one value (`block` of shape (m,)), ``(a, beta, mu, fac, keys)`` for rows of d values
    (shape (m, d)); see :func:`mixtures._kernels.sweep_part` and ``mv_sweep_part``.
    """
    keys = offset_keys(args[-1], offset)
    n_rep, k = args[0].shape
    changed = np.zeros(n_rep, dtype=np.int64)
    n = np.zeros((n_rep, k))
    if block.ndim == 1:  # univariate: a, c, mu, keys
        s1, s2 = np.zeros((n_rep, k)), np.zeros((n_rep, k))
        sweep_part(block, fixed, 0, block.shape[0], *args[:3], keys, z, n, s1, s2, changed)
    else:  # multivariate: a, beta, mu, fac, keys
        d = args[2].shape[2]
        s1, s2 = np.zeros((n_rep, k, d)), np.zeros((n_rep, k, d, d))
        mv_sweep_part(block, fixed, 0, block.shape[0], *args[:4], keys, z, n, s1, s2, changed)
    return n, s1, s2, changed


class _Chunk:
    """One chunk's rows, its global offset and its assignments (see :meth:`sweep`)."""

    def __init__(self, block, offset):
        self.block = np.ascontiguousarray(block)
        self.offset = int(offset)
        self.iteration, self.z, self.fixed = None, None, None

    def sweep(self, it, now, before):
        """Sweep the chunk at iteration `it`; return its (n, s1, s2, changed).

        `now` holds the sweep's coefficients, means (and precision factors) and keys of
        iteration `it`, `before` those of iteration ``it - 1`` (None at the first). The
        assignments are kept between iterations; if they are not those of ``it - 1`` (a new
        sweeper after its worker was lost, or a rerun), they are rebuilt first by sweeping
        with `before` (an iteration's assignments depend on its parameters and the counters
        only), so the result never depends on where or how often the sweep ran.
        """
        if self.z is None or self.iteration != it - 1:
            k, m = now[0].shape[1], self.block.shape[0]
            self.z = np.full((now[0].shape[0], m), -1, dtype=np.int8 if k < 127 else np.int32)
            self.fixed = np.full(m, -1, dtype=np.int32)
            if before is not None:
                _sweep_block(self.block, self.offset, before, self.z, self.fixed)
        stats = _sweep_block(self.block, self.offset, now, self.z, self.fixed)
        self.iteration = it
        return stats


class ChunkSweeper:
    """The chunks of the data one worker holds, and their assignments.

    A Dask actor (the default backend: the client calls :meth:`sweep` on the worker
    directly, once per worker and iteration), or one per chunk in the worker's
    :data:`_CHUNK_STATE` (:func:`sweep_chunk`, the task backend).

    Parameters
    ----------
    offsets : sequence of int
        The global index of each chunk's first row (the uniforms' counter).
    threads : int
        Threads to sweep the chunks on (the kernels release the GIL).
    *blocks : numpy.ndarray of shape (m,) or (m, d)
        The chunks' rows.
    """

    def __init__(self, offsets, threads, *blocks):
        self.chunks = [_Chunk(b, o) for b, o in zip(blocks, offsets, strict=True)]
        self.threads = max(1, min(int(threads), len(self.chunks)))
        self._pool = None

    def sweep(self, it, now, before):
        """Sweep every chunk at iteration `it` (see ``_Chunk.sweep``).

        Returns the summed (n, s1, s2, changed), the seconds it took and this process's id.
        """
        t0 = time.perf_counter()
        if self.threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads)
            parts = list(self._pool.map(lambda c: c.sweep(it, now, before), self.chunks))
        else:
            parts = [chunk.sweep(it, now, before) for chunk in self.chunks]
        total = parts[0]
        for stats in parts[1:]:
            for acc, value in zip(total, stats, strict=True):
                acc += value
        return total, time.perf_counter() - t0, os.getpid()

    def change(self, proposal, logw, mu, sd):
        """Return the relocation move's log-likelihood change on these chunks (per chain).

        `proposal` is ``(rep, jump, x)`` of :func:`mixtures._kernels.relocation_proposals`;
        `logw`, `mu` and `sd` are the current parameters of every replica.
        """
        total = np.zeros(proposal[0].size)
        for chunk in self.chunks:
            total += relocation_change(chunk.block, *proposal, logw, mu, sd)
        return total


def sweep_chunk(block, offset, run, index, it, now, before):
    """Task backend: :meth:`ChunkSweeper.sweep` on chunk `index` of `run`, kept on this worker."""
    sweeper = _CHUNK_STATE.get((run, index))
    if sweeper is None:
        sweeper = _CHUNK_STATE[(run, index)] = ChunkSweeper([offset], 1, block)
    return sweeper.sweep(it, now, before)


def chunk_change(block, proposal, logw, mu, sd):
    """Task backend: the relocation move's log-likelihood change on one chunk (per chain)."""
    return relocation_change(np.ascontiguousarray(block), *proposal, logw, mu, sd)


def forget_run(run):
    """Drop a run's chunk state on this worker."""
    for key in [key for key in _CHUNK_STATE if key[0] == run]:
        del _CHUNK_STATE[key]


def chunk_rows(block, local):
    """Return the rows `local` (indices within the chunk) of one chunk."""
    return np.asarray(block)[local]


def chunk_moments(block):
    """Return a chunk's rows, column sums and cross-product matrix."""
    block = np.asarray(block)
    return block.shape[0], block.sum(axis=0), block.T @ block
