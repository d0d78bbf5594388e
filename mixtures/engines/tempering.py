"""Replica exchange: the temperature ladder, its adaptation, and the chunked driver loop.

Shared by the univariate and the multivariate Gibbs samplers (:mod:`mixtures.engines.gibbs`,
:mod:`mixtures.engines.gibbs_mv`).
"""

from __future__ import annotations

import time

import numpy as np

from mixtures.progress import progress_bar

__all__ = [
    "run_segment",
    "adapt_ladder",
    "default_ladder",
    "drive",
    "replica_state",
    "resolve_ladder",
    "run_record",
    "sample_stats_arrays",
    "stores_assignments",
]

_MAX_STORED_ASSIGNMENTS = 50_000_000


def replica_state(rng, chains: int, n_temps: int, n_obs: int, k: int):
    """Return the unset assignments, random streams and temperature bookkeeping of the replicas.

    Replica r starts at temperature r % T of chain r // T; ``rep_at[c, t]`` is the replica at
    temperature t of chain c and ``temp_of`` its inverse.
    """
    n_rep = chains * n_temps
    z = np.full((n_rep, n_obs), -1, dtype=np.int8 if k < 127 else np.int32)
    state = rng.integers(0, 2**63, size=n_rep, dtype=np.uint64)
    swap_state = rng.integers(0, 2**63, size=chains, dtype=np.uint64)
    temp_of = np.tile(np.arange(n_temps), chains)
    rep_at = np.arange(n_rep).reshape(chains, n_temps)
    return z, state, swap_state, temp_of, rep_at


def sample_stats_arrays(chains: int, draws: int, n_temps: int, *, sigma_accept: bool) -> dict:
    """Allocate the per-draw statistics the kernels record, in the kernels' order."""
    out = {
        "n_changed": np.zeros((chains, draws), dtype=np.int64),
        "complete_loglik": np.empty((chains, draws)),
        "tempered_loglik": np.empty((chains, draws, n_temps)),
        "swap_accept": np.full((chains, draws, max(n_temps - 1, 0)), np.nan),
    }
    if sigma_accept:
        out["sigma_accept"] = np.zeros((chains, draws))
    return out


def run_record(stats: dict, betas, adapted: bool, store_z: bool, t_start: float) -> dict:
    """Drop the tempering statistics of an untempered run; return the run's attrs."""
    n_temps = len(betas)
    if n_temps == 1:
        del stats["tempered_loglik"], stats["swap_accept"]
    tempering = "off"
    if n_temps > 1:
        tempering = f"{n_temps} temperatures" + (
            " (ladder adapted during tuning)" if adapted else ""
        )
    return {
        "mixtures_betas": np.asarray(betas).tolist(),
        "mixtures_tempering": tempering,
        "mixtures_assignments_stored": str(store_z),
        "mixtures_sampling_seconds": time.perf_counter() - t_start,
    }


def stores_assignments(store_assignments, spec, n_values: int) -> bool:
    """Whether the draws of the assignments are kept: latent models, up to 50 million values."""
    latent = not spec.marginalized
    if store_assignments == "auto":
        return latent and n_values <= _MAX_STORED_ASSIGNMENTS
    return bool(store_assignments) and latent


def default_ladder(n_temps: int) -> np.ndarray:
    """Inverse temperatures ``(t / (T - 1)) ** (1 / 0.3)``: quantiles of Beta(0.3, 1).

    The ladder of Xie et al. (2011) for stepping-stone sampling, dense near the prior.
    """
    if n_temps == 1:
        return np.ones(1)
    return (np.arange(n_temps) / (n_temps - 1)) ** (1 / 0.3)


def adaptation_rounds(tune: int) -> list[int]:
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


def resolve_ladder(tempering, n_obs: int, k: int) -> np.ndarray:
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
        return default_ladder(auto_temperatures(n_obs, k)) if n_obs * k <= 60_000 else np.ones(1)
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


def auto_temperatures(n_obs: int, k: int = 3) -> int:
    """Return the number of temperatures of ``tempering="auto"``: 32 when N k <= 1,000, else 16.

    Measured on the multimodal sets (``bench/RESULTS.md``): with the adapted ladder, 10-12
    temperatures already make chains agree on the galaxies, but the within-mode mixing of the
    far-group set needs 16 for a bulk ESS >= 400 at the default draws. On the smallest sets
    (N k <= 1,000, where 32 replicas cost less than 16 do at N k = 2,000) 32 temperatures let
    the chains cross modes that 16 do not (``bench/modes.py``: three_gaussians with K = 2 had
    one chain in the other merge and bulk ESS 20 at 16, r_hat 1.00 and ESS 1,466 at 32;
    galaxies K = 4 reached ESS 400 only with 32).
    """
    return 32 if n_obs * k <= 1_000 else 16


def run_segment(runner, offset: int, n: int, label: str, run_chunk) -> None:
    """Run the next `n` iterations of `runner`'s chains, from iteration `offset`.

    On the runner's first segment the chains start at iteration 0 (tuning) and the ladder is
    re-spaced at ``runner.rounds`` so that adjacent rungs swap equally often (the swap
    counters restart after each round); ``runner.state`` is a kernel chain state with
    ``betas``, ``swap_tries`` and ``swap_accepts``, replaced by the adapted one.
    """

    def adapt_round():
        state = runner.state
        tries, accepts = state.swap_tries, state.swap_accepts
        betas = adapt_ladder(state.betas, 1.0 - accepts / np.maximum(tries, 1))
        runner.state = state._replace(betas=betas)
        tries[:], accepts[:] = 0, 0

    first = 0 if runner.done == 0 else offset
    rounds = runner.rounds if runner.done == 0 else []
    drive(offset + n, rounds, runner.progressbar, label, run_chunk, adapt_round, start=first)
    runner.done += n


def drive(
    total: int, rounds: list[int], progressbar: bool, label: str, run_chunk, adapt, start: int = 0
) -> None:
    """Run iterations start..total-1 in chunks of about 0.1 s, with a progress bar.

    ``run_chunk(start, stop)`` runs the compiled kernel on those iterations; chunks end at each
    adaptation round, after which ``adapt()`` re-spaces the ladder. Between chunks Python
    regains control, so the bar moves and one Ctrl-C is answered promptly.
    """
    it, chunk = start, 10
    with progress_bar(total - start, progressbar, label) as bar:
        while it < total:
            stop = min([total, it + chunk, *(r for r in rounds if r > it)])
            t0 = time.perf_counter()
            run_chunk(it, stop)
            per_iteration = (time.perf_counter() - t0) / (stop - it)
            chunk = int(np.clip(0.1 / max(per_iteration, 1e-9), 1, 100_000))
            bar.advance(stop - it)
            if stop in rounds:
                adapt()
            it = stop
