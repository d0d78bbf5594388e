"""The workers' side of :mod:`mixtures.engines.distributed`: sweep one chunk of the data.

Kept apart from the engine so that a worker imports NumPy and the Numba kernels only (not
PyMC): a task's function is imported on the worker by its module's name.
"""

from __future__ import annotations

import time

import numpy as np

from mixtures._kernels import mv_sweep_part, offset_keys, sweep_part

__all__ = ["chunk_moments", "chunk_rows", "forget_run", "sweep_chunk"]

#: Per worker process: (run, chunk) -> (iteration, assignments, known labels) of that chunk.
#: The run's own state, kept where its chunk lives, dropped at the end of the run
#: (:func:`forget_run`); a missing or stale entry is rebuilt from the parameters
#: (:func:`sweep_chunk`).
_CHUNK_STATE: dict = {}


def _sweep_block(block, offset, args, z, fixed):
    """Sweep every replica over one chunk; return (n, s1, s2, changed) for this chunk."""
    keys = offset_keys(args[-1], offset)
    n_rep, k = args[0].shape
    changed = np.zeros(n_rep, dtype=np.int64)
    n = np.zeros((n_rep, k))
    if len(args) == 4:  # univariate: a, c, mu, keys
        s1, s2 = np.zeros((n_rep, k)), np.zeros((n_rep, k))
        sweep_part(block, fixed, 0, block.shape[0], *args[:3], keys, z, n, s1, s2, changed)
    else:  # multivariate: a, beta, mu, fac, keys
        d = args[2].shape[2]
        s1, s2 = np.zeros((n_rep, k, d)), np.zeros((n_rep, k, d, d))
        mv_sweep_part(block, fixed, 0, block.shape[0], *args[:4], keys, z, n, s1, s2, changed)
    return n, s1, s2, changed


def sweep_chunk(block, offset, run, index, it, now, before):
    """Sweep one chunk at iteration `it`; return its (n, s1, s2, changed) and the seconds.

    `now` holds the sweep's coefficients, means (and precision factors) and keys of iteration
    `it`, `before` those of iteration ``it - 1`` (None at the first). The chunk's assignments
    are kept here between iterations; if they are missing or not those of ``it - 1`` (the
    chunk was recomputed on another worker after a loss, or the task is a rerun), they are
    rebuilt first by sweeping with `before` (the assignments of an iteration depend on its
    parameters and the counters only), so the result never depends on where the task ran.
    """
    t0 = time.perf_counter()
    block = np.ascontiguousarray(block)
    entry = _CHUNK_STATE.get((run, index))
    if entry is not None and entry[0] == it - 1:
        z, fixed = entry[1], entry[2]
    else:  # first sweep, or this chunk's worker was lost: rebuild z from the last parameters
        k = now[0].shape[1]
        z = np.full((now[0].shape[0], block.shape[0]), -1, dtype=np.int8 if k < 127 else np.int32)
        fixed = np.full(block.shape[0], -1, dtype=np.int32)
        if before is not None:
            _sweep_block(block, offset, before, z, fixed)
    stats = _sweep_block(block, offset, now, z, fixed)
    _CHUNK_STATE[(run, index)] = (it, z, fixed)
    return stats, time.perf_counter() - t0


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
