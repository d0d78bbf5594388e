"""Where the Student-t sweep's time goes (issue 23): each stage alone, beside the Normal sweep.

At N = 2e4 and 1e5 (or the sizes given), K = 3, one replica on one thread, nu = 4 (shape 2.5),
the stages of ``mixtures._kernels_t.sweep_t`` are timed alone over its block layout:

- ``z draw``: the K logs of the t marginal's log-weights, their maximum and the pick
  (``_block_logits`` + ``block_pick``), as the nu-fixed pass runs them;
- ``lambda draw``: each point's component values (``_block_select``), the paired Box-Muller
  Normals, Marsaglia-Tsang's squeeze, the log test and redraws of the few it leaves, and the
  weights (``_block_candidates``, ``_decide``, ``_block_lambda``);
- ``statistics``: the masked lane sums of count, lambda, lambda d, lambda d**2 and log lambda
  (``_block_acc``);
- ``nu move``: the collapsed Metropolis moves of nu (``_nu_moves``: two passes of one log per
  point), its current sums coming from the assignment pass;
- the whole sweep with nu fixed and nu sampled, and the Normal family's sweep
  (``mixtures._kernels.sweep``) on the same data;
- the primitives: the branch-free log, a counter-based uniform.

Rounds are interleaved and the best kept; thread CPU time per point. Run:
``python bench/t_stages.py [N ...]``; prints a table and ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from numba import njit
from scipy.special import gammaln

from mixtures import _kernels as K
from mixtures import _kernels_t as T
from mixtures.model.prior_codes import SCALE_CODES

B = K.BLOCK


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_z(y, fixed, coef, mu, key, z):
    work = T._sweep_t_work(3)
    a, c, h, e = coef
    (lp, top, tot, u, pick), lq = work[0], work[1]
    n = 0
    for i0 in range(0, y.shape[0], B):
        i1 = min(i0 + B, y.shape[0])
        T._block_logits(y[i0:i1], 0, a, c, h, e, mu, lp, lq, top)
        n += K.block_pick(fixed[i0:i1], z[0, i0:i1], i0, key, lp, top, tot, u, pick)
    return n


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_lambda(y, z, coef, mu, key, state, lam):
    work = T._sweep_t_work(3)
    a, c, h, e = coef
    pick, sel, (xs, g, loglam, shape), mt = work[0][4], work[2], work[3], work[6]
    small = T._mt_constants(0, e, mt)
    for i0 in range(0, y.shape[0], B):
        i1 = min(i0 + B, y.shape[0])
        m, zb = i1 - i0, z[0, i0:i1]
        for b in range(m):
            pick[b] = zb[b]
        T._block_select(y[i0:i1], pick, 0, c, h, e, mu, mt, small, sel)
        if T._block_candidates(m, key, i0, sel[3], sel[4], xs, g):
            for b in range(m):
                shape[b] = mt[2, pick[b]]
            T._decide(m, key, i0, sel[3], sel[4], shape, xs, g, state, 0)
        T._block_lambda(m, key, i0, small, g, sel, lam[0, i0:i1], loglam)


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_stats(y, z, mu, lam):
    work = T._sweep_t_work(3)
    pick, db, loglam, acc = work[0][4], work[2][1], work[3][2], work[4]
    T._clear(acc)
    for i0 in range(0, y.shape[0], B):
        i1 = min(i0 + B, y.shape[0])
        zb, yb = z[0, i0:i1], y[i0:i1]
        for b in range(i1 - i0):
            pick[b] = zb[b]
            db[b] = yb[b] - mu[0, zb[b]]
        T._block_acc(pick, db, lam[0, i0:i1], loglam, False, acc)
    return acc[1].sum()


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_d_only(y, z, mu):
    """The ``y - mu`` fill of ``stage_stats`` alone (subtracted from it)."""
    work = T._sweep_t_work(3)
    pick, db = work[0][4], work[2][1]
    s = 0.0
    for i0 in range(0, y.shape[0], B):
        i1 = min(i0 + B, y.shape[0])
        zb, yb = z[0, i0:i1], y[i0:i1]
        for b in range(i1 - i0):
            pick[b] = zb[b]
            db[b] = yb[b] - mu[0, zb[b]]
        s += db[0]
    return s


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_nu(z, v, counts, coef, nu, nu_model, state):
    work = T._sweep_t_work(3)
    nu_work = work[8]
    nu_work[1][:] = 0.0
    return T._nu_moves(0, z, v, counts, coef, nu, nu_model, state, nu_work)


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def prim_log(x, out, reps):
    for _ in range(reps):
        for i in range(x.shape[0]):
            out[i] += T.log(x[i])


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def prim_uniform(out, reps):
    for r in range(reps):
        for i in range(out.shape[0]):
            out[i] += K.counter_uniform(np.uint64(r), i)


def inputs(n):
    """three_gaussians' proportions, means 9, 21, 35, sd 2; nu = 4 for every component."""
    rng = np.random.default_rng(0)
    w = np.array([90, 50, 75]) / 215
    mu = np.array([[9.0, 21.0, 35.0]])
    y = rng.normal(mu[0, rng.choice(3, size=n, p=w)], 2.0)
    h = np.full((1, 3), 2.0)
    e = h + 0.5
    c = np.full((1, 3), 0.5 / 4.0)
    a = np.log(w) - np.log(2.0) + gammaln(e) - gammaln(h) + h * np.log(h)
    return y, (a, c, h, e), mu


def measure(n: int, rounds: int = 7) -> dict:
    y, coef, mu = inputs(n)
    fixed = np.full(n, -1, dtype=np.int32)
    z, zn = np.zeros((1, n), dtype=np.int8), np.zeros((1, n), dtype=np.int8)
    lam, v = np.ones((1, n)), np.empty(n)
    state, keys = np.array([7], dtype=np.uint64), np.array([12345], dtype=np.uint64)
    sums, changed, nu_acc = np.zeros((1, 5, 3)), np.zeros(1, dtype=np.int64), np.zeros(1)
    nu = np.full((1, 3), 4.0)
    sampled = (SCALE_CODES["Gamma"], np.full(3, 2.0), np.full(3, 0.1))
    held = (-1, np.ones(3), np.ones(3))
    an = np.log(np.array([90, 50, 75]) / 215)[None] - np.log(2.0)  # the Normal sweep's
    cn = np.full((1, 3), -0.5 / 4.0)
    n_s = [np.zeros((1, 3)) for _ in range(3)]
    stage_z(y, fixed, coef, mu, np.uint64(1), z)
    v[:] = coef[1][0, z[0]] * (y - mu[0, z[0]]) ** 2
    counts = np.bincount(z[0], minlength=3).astype(float)
    x, out = np.exp(np.linspace(-5, 5, B)), np.zeros(B)

    def copies():
        return tuple(a.copy() for a in coef)

    def sweep_sampled():
        t_state = (z.copy(), lam, sums, changed, nu.copy(), sampled, nu_acc)
        T.sweep_t(y, fixed, copies(), mu, keys, state, *t_state)

    jobs = {
        "normal sweep": lambda: K.sweep(y, fixed, an, cn, mu, keys, zn, *n_s, changed),
        "t sweep, nu fixed": lambda: T.sweep_t(
            y, fixed, coef, mu, keys, state, z, lam, sums, changed, nu, held, nu_acc
        ),
        "t sweep, nu sampled": sweep_sampled,
        "z draw": lambda: stage_z(y, fixed, coef, mu, np.uint64(1), z),
        "lambda draw": lambda: stage_lambda(y, z, coef, mu, np.uint64(3), state, lam),
        "statistics (+ y - mu)": lambda: stage_stats(y, z, mu, lam),
        "  y - mu alone": lambda: stage_d_only(y, z, mu),
        "nu move (2 passes)": lambda: stage_nu(z, v, counts, copies(), nu.copy(), sampled, state),
        "log (per value)": lambda: prim_log(x, out, n // B),
        "counter uniform (per value)": lambda: prim_uniform(out, n // B),
    }
    for call in jobs.values():
        call()  # compile / warm
    best = {name: np.inf for name in jobs}
    for _ in range(rounds):
        for name, call in jobs.items():
            c0 = time.thread_time()
            call()
            best[name] = min(best[name], time.thread_time() - c0)
    return {name: 1e9 * t / n for name, t in best.items()}


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [20_000, 100_000]
    res = {}
    for n in sizes:
        res[n] = ns = measure(n)
        print(f"N = {n}, K = 3: ns of thread CPU per point (best of 7 interleaved rounds)")
        for name, t in ns.items():
            print(f"  {name:30s} {t:7.2f}")
    res["load_average"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
