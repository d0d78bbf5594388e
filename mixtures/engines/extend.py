"""Converged by default: continue the Gibbs chains until the diagnostics pass or a budget is spent.

When the user leaves ``draws=None`` (the default of :func:`mixtures.sample`), the Gibbs engine
runs :data:`AUTO_DRAWS` (500) draws per chain, then checks the unrounded rank-normalised split r_hat
(``az.rhat``) and the bulk and tail ESS (``az.ess``) of every scalar in ``weights``,
``means`` and ``sigma``. If r_hat > 1.01 or an ESS < 400 somewhere, the same chains continue
from their current state (assignments, parameters, random streams, the adapted ladder) for
more draws, appended to the first: the draws of a run extended to D per chain are the draws a
run with ``draws=D`` gives with the same seed. The budget: :data:`MAX_DRAWS` draws per chain in
all and :data:`MAX_SECONDS` seconds of sampling; an extension is cut to what the budget still
allows (at the pace measured so far), and none shorter than :data:`MIN_EXTENSION` is run.

``draws=N`` runs exactly N draws. What was run and why is recorded in the posterior's attrs:
``mixtures_draws_requested`` ("auto" or N), ``mixtures_draws_run`` (per chain),
``mixtures_draws_reason`` and ``mixtures_convergence_check``, the check used.

**Sparse (overfitted) fits.** With a sparse Dirichlet weight prior
(:func:`mixtures.analysis.diagnostics.is_sparse`: every concentration at most 0.1) the extra
components are empty, and their parameters follow the prior, labelled differently in each
chain: their r_hat never passes however long the chains run. Such fits are checked on label-free
quantities instead (:func:`mixtures.analysis.diagnostics.sparse_quantities`: the number of filled
components, their sorted weights and the complete-data log-likelihood), and so is the warning
:func:`mixtures.sample` issues at the end (``mixtures_convergence_check`` says which).
When every chain sits at its own number of filled components and they differ
(:func:`fixed_filled`: chains started at competing numbers, which Gibbs chains at a small
concentration hardly ever change), the run stops instead of extending: more draws would not
make them agree, and the final warning reports the r_hat.
"""

from __future__ import annotations

import math
import time

import arviz as az
import numpy as np

from mixtures.analysis.diagnostics import (
    ESS_MIN,
    FILLED_SHARE,
    LABEL_FREE_CHECK,
    RHAT_MAX,
    convergence_table,
    series_table,
    sparse_quantities,
)

__all__ = [
    "AUTO_DRAWS",
    "AUTO_TUNE",
    "CHECKED",
    "DEFAULT_DRAWS",
    "EM_TUNE",
    "ESS_MIN",
    "MAX_DRAWS",
    "MAX_SECONDS",
    "MIN_EXTENSION",
    "PARAMETER_CHECK",
    "RHAT_MAX",
    "fixed_filled",
    "run_draws",
    "shortfalls",
]

#: Draws per chain run first when ``draws=None`` (4 chains of them give a bulk ESS near 3,000
#: on well-separated data at large N; extensions add what is missing).
AUTO_DRAWS = 500
#: Draws per chain of the engines that do not extend (PyMC, nutpie, NumPyro) when ``draws=None``.
DEFAULT_DRAWS = 1000
#: Tuning iterations when ``tune=None``: the ladder's adaptation, or burn-in from random starts.
AUTO_TUNE = 1000
#: Tuning iterations when ``tune=None`` and the chains start from an EM fit, untempered:
#: burn-in from the mode the posterior sits in (r_hat checks it).
EM_TUNE = 200
#: Most draws per chain an automatic run extends to.
MAX_DRAWS = 8000
#: Most seconds of sampling (tuning included) after which no extension is started.
MAX_SECONDS = 60.0
#: Shortest extension worth running (draws per chain).
MIN_EXTENSION = 100
#: The parameters the diagnostics are checked on.
CHECKED = ("weights", "means", "sigma")
#: ``posterior.attrs["mixtures_convergence_check"]`` of a fit checked on its parameters.
PARAMETER_CHECK = "parameters: " + ", ".join(CHECKED)


def shortfalls(posterior: dict, *, label_free: bool = False) -> tuple[list[str], float]:
    """Check r_hat <= 1.01 and bulk and tail ESS >= 400 on every varying scalar.

    Parameters
    ----------
    posterior : dict of str to numpy.ndarray
        Draws of shape (chain, draw, ...); only :data:`CHECKED` names are looked at.
    label_free : bool, default False
        Check the label-free quantities of a sparse fit instead
        (:func:`mixtures.analysis.diagnostics.sparse_quantities`), from ``weights`` and
        ``complete_loglik`` (draws of shape (chain, draw)).

    Returns
    -------
    (list of str, float)
        The problems (empty when all pass), and the factor by which the draws should grow to
        reach the ESS target (1 when it is met).
    """
    if label_free:
        table = series_table(sparse_quantities(posterior["weights"], posterior["complete_loglik"]))
        n_chains = posterior["weights"].shape[0]
    else:
        data = {n: posterior[n] for n in CHECKED if n in posterior}
        if not data:
            return [], 1.0
        table = convergence_table(az.from_dict(posterior=data))  # the check sample() warns on
        n_chains = next(iter(data.values())).shape[0]
    if table.empty:  # nothing varies (fixed by construction)
        return [], 1.0
    problems = []
    worst_rhat = float(np.nanmax(np.where(np.isnan(table["r_hat"]), np.inf, table["r_hat"])))
    if n_chains > 1 and worst_rhat > RHAT_MAX:
        problems.append(f"r_hat {worst_rhat:.3f} > {RHAT_MAX}")
    ess = table[["ess_bulk", "ess_tail"]].to_numpy()
    least_ess = float(np.min(np.where(np.isnan(ess), 0.0, ess))) if ess.size else math.inf
    if least_ess < ESS_MIN:
        problems.append(f"ESS {least_ess:.0f} < {ESS_MIN}")
    return problems, ESS_MIN / max(least_ess, 1.0) if least_ess < ESS_MIN else 1.0


def fixed_filled(weights: np.ndarray, *, share: float = 0.99) -> str | None:
    """Say whether the chains sit at different numbers of filled components, each at its own.

    At a small concentration a Gibbs chain hardly ever changes its number of filled components
    (:mod:`mixtures.engines.starts`), so chains started at different numbers (a sparse fit's
    EM starts) stay there, and extending them does not make r_hat pass.

    Parameters
    ----------
    weights : numpy.ndarray of shape (chain, draw, k)
    share : float, default 0.99
        Share of a chain's draws at its most frequent number for it to count as fixed there.

    Returns
    -------
    str or None
        The chains' numbers ("2 / 3 / 4 / 2") when every chain is fixed and they are not all
        equal; None otherwise.
    """
    filled = (weights > FILLED_SHARE).sum(axis=-1)
    modes = []
    for row in filled:
        counts = np.bincount(row)
        if counts.max() < share * row.size:
            return None
        modes.append(int(counts.argmax()))
    return " / ".join(map(str, modes)) if len(set(modes)) > 1 else None


def _merge(parts: list[dict]) -> dict:
    """Concatenate the segments' arrays along the draw axis (axis 1)."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts], axis=1) for name in parts[0]}


def _next_length(done: int, grow: float, per_draw: float, elapsed: float, budget) -> int:
    """Return the next extension's draws per chain (0: the budget is spent).

    Enough for the ESS target, at least half of what was run, within the draws and seconds left.
    """
    max_draws, max_seconds = budget
    room = min(max_draws - done, int((max_seconds - elapsed) / max(per_draw, 1e-12)))
    want = max(done // 2, math.ceil(done * (1.2 * grow - 1.0)), MIN_EXTENSION)
    length = min(room, want)
    return length if length >= MIN_EXTENSION else 0


def _check_budget(budget) -> tuple[int, float]:
    if budget is None:
        return MAX_DRAWS, MAX_SECONDS
    try:
        max_draws, max_seconds = budget
        ok = int(max_draws) == max_draws and max_draws >= 1 and float(max_seconds) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"`budget` should be (most draws per chain >= 1, most seconds >= 0), but got {budget!r}"
        )
    return int(max_draws), float(max_seconds)


def run_draws(draws, run_segment, posterior_of, *, t_start: float, budget=None, label_free=False):
    """Run `draws` per chain, or (``draws=None``) extend until the diagnostics pass.

    Parameters
    ----------
    draws : int or None
        None for the automatic run (see the module docstring).
    run_segment : callable
        ``run_segment(n)`` runs `n` more draws of every chain, continuing its state, and
        returns a dict of arrays of shape (chain, n, ...).
    posterior_of : callable
        Maps the merged dict to the parameters to check (``weights``, ``means``, ``sigma``).
    t_start : float
        ``time.perf_counter()`` when the sampling began.
    budget : (int, float), optional
        Draws per chain and seconds; default (:data:`MAX_DRAWS`, :data:`MAX_SECONDS`).
    label_free : bool, default False
        Check the label-free quantities of a sparse fit (see the module docstring); the
        merged dict must then hold ``weights`` and ``complete_loglik``.

    Returns
    -------
    (dict, dict)
        The merged arrays, and the attrs that record the run.
    """
    check = {"mixtures_convergence_check": LABEL_FREE_CHECK if label_free else PARAMETER_CHECK}
    if draws is not None:
        record = {"mixtures_draws_requested": int(draws), "mixtures_draws_run": int(draws)}
        record["mixtures_draws_reason"] = "draws fixed by the user"
        return run_segment(draws), {**record, **check}
    merged, done, reason = _extend(
        run_segment, posterior_of, t_start, _check_budget(budget), label_free
    )
    record = {"mixtures_draws_requested": "auto", "mixtures_draws_run": done}
    record["mixtures_draws_reason"] = reason
    return merged, {**record, **check}


def _extend(run_segment, posterior_of, t_start: float, budget, label_free: bool):
    """Run :data:`AUTO_DRAWS` draws, then extend until the diagnostics pass or the budget is spent.

    Parameters
    ----------
    run_segment, posterior_of, t_start, label_free
        As in :func:`run_draws`.
    budget : (int, float)
        Draws per chain and seconds, checked.

    Returns
    -------
    (dict, int, str)
        The merged arrays, the draws per chain run, and why the run stopped (with the
        shortfalls that made it extend).
    """
    t0 = time.perf_counter()
    parts, done = [run_segment(AUTO_DRAWS)], AUTO_DRAWS
    per_draw = (time.perf_counter() - t0) / AUTO_DRAWS
    history = []
    while True:
        merged = _merge(parts)
        problems, grow = shortfalls(
            merged if label_free else posterior_of(merged), label_free=label_free
        )
        if not problems:
            reason = "diagnostics passed"
            break
        history.append(f"{done}: {', '.join(problems)}")
        fixed = fixed_filled(merged["weights"]) if label_free else None
        if fixed:
            reason = f"chains fixed at {fixed} filled components (extending would not mix them)"
            break
        length = _next_length(done, grow, per_draw, time.perf_counter() - t_start, budget)
        if not length:
            reason = f"budget spent ({budget[0]} draws per chain, {budget[1]:g} s)"
            break
        t0 = time.perf_counter()
        parts = [merged, run_segment(length)]
        per_draw = (time.perf_counter() - t0) / length
        done += length
    if history:
        reason += "; extended after " + "; ".join(history)
    return merged, done, reason
