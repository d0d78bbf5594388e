"""Run a kernel's chains on threads, a group of whole chains per thread.

The kernels (:func:`mixtures._kernels.run`, :func:`mixtures._kernels.mv_run`) run every
replica of every chain on one thread. When the data are too small for the sweep to be split
over threads (a few hundred points, where one sweep takes microseconds), the chains are
split instead: chain ``c`` owns replicas ``c * T .. (c + 1) * T - 1`` of a run with ``T``
temperatures (:func:`mixtures.engines.tempering.replica_state`), and nothing of a chain is
read or written by another (its parameters, assignments and random streams are its own;
the replica exchange is within a chain). So each thread runs the same compiled kernel on
views of its chains, and the draws are those of the one-thread run, bit for bit; only the
ladder's swap counts, which every chain adds to, are kept per thread and added at the end.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["chain_groups", "run_chain_groups", "run_family_groups"]

_SHARED = ("betas", "fixed")  # read by every chain, written by none
_COUNTS = ("swap_tries", "swap_accepts")  # added to by every chain
_PER_CHAIN = ("swap_state",)  # one entry per chain


def chain_groups(chains: int, n_threads: int) -> list[tuple[int, int]]:
    """Return up to `n_threads` contiguous ranges ``(c0, c1)`` of chains, as even as can be."""
    n = max(1, min(chains, n_threads))
    edges = np.linspace(0, chains, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _view(state, c0: int, c1: int):
    """Return the part of `state` (a kernel's chain-state NamedTuple) that chains c0..c1-1 own.

    Replica arrays are views (updated in place); ``rep_at`` is a copy renumbered from 0
    and the swap counts are fresh zeros (both written back by :func:`_merge`).
    """
    n_temps = state.rep_at.shape[1]
    r0, r1 = c0 * n_temps, c1 * n_temps
    fields = {}
    for name, value in state._asdict().items():
        if name in _SHARED:
            fields[name] = value
        elif name in _COUNTS:
            fields[name] = np.zeros_like(value)
        elif name in _PER_CHAIN:
            fields[name] = value[c0:c1]
        elif name == "rep_at":
            fields[name] = value[c0:c1] - r0
        else:
            fields[name] = value[r0:r1]
    return type(state)(**fields)


def _merge(state, part, c0: int) -> None:
    """Write a group's ladder back into the whole run's `state` (see :func:`_view`)."""
    n_temps = state.rep_at.shape[1]
    state.rep_at[c0 : c0 + part.rep_at.shape[0]] = part.rep_at + c0 * n_temps
    for name in _COUNTS:
        getattr(state, name)[:] += getattr(part, name)


def run_chain_groups(
    kernel, data, it0, it1, tune, config, state, out, stats, n_threads, extra=None
):
    """Run ``kernel(data, it0, it1, tune, config, state, out, stats)`` with chains on threads.

    `kernel` must release the GIL (``nogil=True``) and return -1 or the iteration at which a
    chain failed (the univariate kernel) or None (the multivariate one); `out` and `stats`
    are the records, each of shape (chains, ...). `extra`: None, or a function of
    ``(c0, c1, r0, r1)`` returning the kernel's further arguments for chains c0..c1-1 (replicas
    r0..r1-1), e.g. the missing cells' per-replica completions. Returns the smallest failing
    iteration, or -1 (None if the kernel returns None).
    """
    groups = chain_groups(state.rep_at.shape[0], n_threads)
    parts = [_view(state, c0, c1) for c0, c1 in groups]

    n_temps = state.rep_at.shape[1]

    def more(c0, c1):
        return () if extra is None else tuple(extra(c0, c1, c0 * n_temps, c1 * n_temps))

    def one(g):
        (c0, c1), part = groups[g], parts[g]
        return kernel(
            data, it0, it1, tune, config, part, tuple(a[c0:c1] for a in out),
            tuple(a[c0:c1] for a in stats), *more(c0, c1),
        )  # fmt: skip

    if len(groups) == 1:
        c1 = state.rep_at.shape[0]
        return kernel(data, it0, it1, tune, config, state, out, stats, *more(0, c1))
    with ThreadPoolExecutor(len(groups)) as pool:
        results = list(pool.map(one, range(len(groups))))
    for (c0, _), part in zip(groups, parts):
        _merge(state, part, c0)
    if results[0] is None:
        return None
    failed = [r for r in results if r >= 0]
    return min(failed) if failed else -1


def run_family_groups(family_run, fam_config, fam_state, fam_out, args, n_threads):
    """Run a component family's kernel with chains on threads (see :func:`run_chain_groups`).

    `family_run` has the signature of the families' kernels (:mod:`mixtures.engines.gibbs_t`,
    :mod:`mixtures.engines.gibbs_mvt`): ``run(data, it0, it1, tune, config, fam_config, state,
    fam_state, out, fam_out, stats)``; `args` = ``(data, it0, it1, tune, config, state, out,
    stats)``. Every field of `fam_state` has one row per replica, every array of `fam_out` one
    per chain.
    """

    def kernel(data, it0, it1, tune, config, state, out, stats, part_state, part_out):
        return family_run(
            data, it0, it1, tune, config, fam_config, state, part_state, out, part_out, stats
        )

    def extra(c0, c1, r0, r1):
        part = type(fam_state)(**{name: v[r0:r1] for name, v in fam_state._asdict().items()})
        return part, tuple(a[c0:c1] for a in fam_out)

    return run_chain_groups(kernel, *args, n_threads, extra)
