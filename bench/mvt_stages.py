"""Where the multivariate Student-t sweep's time goes (issue 23): each stage alone, beside the
multivariate Normal sweep.

three_clusters_2d resampled to N rows (2e4 by default, as ``gibbs_engine.py --mvt``), d = 2,
K = 3, the components' means and covariances those of the data's labels, nu = 4 (the weights'
Gamma shape nu / 2 + d / 2 = 3), one replica on one thread. The stages of
``mixtures._kernels_mvt.mvt_sweep`` are timed alone over its block layout:

- ``Mahalanobis``: the K distances per row (``block_maha``, the Normal sweep's too);
- ``z draw``: the distances, the K logs of the t marginal's log-weights, their maximum, the
  pick and each row's ``beta m / 2`` of its component (``_block_assign``);
- ``lambda draw``: each row's component values (``_block_select``), the univariate kernel's
  Gamma draws (paired Box-Muller Normals, the squeeze, the log test and the redraws of the
  few it leaves) and the weights ``G / (h + v)`` (``_block_candidates``, ``_decide``,
  ``_block_lambda`` of ``mixtures._kernels_t``);
- ``statistics``: the masked lane sums of count, lambda, log lambda and the weighted first
  and second moments (``_block_acc`` for feature 0, ``_block_moments`` for the others);
- ``nu move``: the collapsed Metropolis moves of nu (``nu_moves``: two passes of one log per
  row), its current sums coming from the assignment pass;
- the whole sweep with nu fixed and nu sampled, and the Normal family's sweep
  (``mixtures._kernels._mv_sweep_serial``) on the same data and parameters;
- the primitives: the branch-free log, a counter-based uniform, a Gamma(3) draw by the block
  sampler (``mixtures._kernels_t.gamma_array``).

Rounds are interleaved and the best kept; thread CPU time per row. Run:
``python bench/mvt_stages.py [N ...]``; prints a table and ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from numba import njit
from scipy.special import gammaln

import mixtures
from mixtures import _kernels as K
from mixtures import _kernels_mvt as M
from mixtures import _kernels_t as T
from mixtures.model.prior_codes import SCALE_CODES

B = M._block_size(3, 2)  # the sweep's block at K = 3, d = 2


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_maha(xt, mu, fac):
    k = mu.shape[1]
    maha, u = np.empty((k, B)), np.empty(B)
    s = 0.0
    for i0 in range(0, xt.shape[1], B):
        i1 = min(i0 + B, xt.shape[1])
        K.block_maha(xt, i0, i1, 0, mu, fac, maha, u)
        s += maha[0, 0]
    return s


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_z(xt, fixed, coef, mu, fac, key, z, v):
    work = M._sweep_work(mu.shape[1], mu.shape[2])
    n = 0
    for i0 in range(0, xt.shape[1], B):
        i1 = min(i0 + B, xt.shape[1])
        n += M._block_assign(xt, fixed, i0, i1, 0, coef, mu, fac, key, z[0], v[i0:i1], work)
    return n


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_lambda(xt, z, v, coef, mu, key, state, lam):
    work = M._sweep_work(mu.shape[1], mu.shape[2])
    pick = work[0][4]
    sel, dif, (xs, g, loglam, shape), acc, mt = work[2]
    small = T.mt_constants(0, coef[3], mt)
    for i0 in range(0, xt.shape[1], B):
        i1 = min(i0 + B, xt.shape[1])
        m, zb = i1 - i0, z[0, i0:i1]
        for b in range(m):
            pick[b] = zb[b]
        M._block_select(xt, i0, m, pick, 0, coef, mu, v[i0:i1], mt, small, sel, dif)
        if T._block_candidates(m, key, i0, sel[3], sel[4], xs, g):
            for b in range(m):
                shape[b] = mt[2, pick[b]]
            T._decide(m, key, i0, sel[3], sel[4], shape, xs, g, state, 0)
        T._block_lambda(m, key, i0, small, g, sel, lam[0, i0:i1], loglam)


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_stats(xt, z, mu, lam):
    """The lane sums given the weights (with the rows' ``x - mu`` of their component)."""
    work = M._sweep_work(mu.shape[1], mu.shape[2])
    pick = work[0][4]
    dif, loglam, acc = work[2][1], work[2][2][2], work[2][3]
    wd, mom_1, mom_2 = work[3][:3]
    T.clear_lanes(acc)
    mom_1[:] = 0.0
    mom_2[:] = 0.0
    k, d = mu.shape[1], mu.shape[2]
    for i0 in range(0, xt.shape[1], B):
        i1 = min(i0 + B, xt.shape[1])
        m, zb, lamb = i1 - i0, z[0, i0:i1], lam[0, i0:i1]
        for b in range(m):
            pick[b] = zb[b]
        for row in range(d):
            dr, xr = dif[row], xt[row, i0:i1]
            for j in range(k):
                mj = mu[0, j, row]
                for b in range(m):
                    dr[b] = xr[b] - mj if pick[b] == j or j == 0 else dr[b]
        T._block_acc(pick, dif[0], lamb, loglam, False, acc)
        M._block_moments(pick, m, dif, lamb, wd, mom_1, mom_2)
    return acc[1].sum() + mom_2.sum()


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")
def stage_nu(z, v, counts, cur, coef, nu, nu_model, state):
    nu_work = M._sweep_work(nu.shape[1], 2)[4]
    nu_work[1][:] = cur
    return T.nu_moves(0, z, v, counts, coef, nu, nu_model, state, nu_work)


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


def inputs(n: int):
    """Rows, the t sweep's ``(a, c, h, e)``, the Normal sweep's ``a``, means, factors, nu."""
    rng = np.random.default_rng(0)
    data = mixtures.load_dataset("three_clusters_2d")
    base, lab = data[["x1", "x2"]].to_numpy(), data["component"].to_numpy()
    x = base[rng.integers(len(base), size=n)] + 0.05 * rng.standard_normal((n, 2))
    k, d = 3, 2
    w = np.bincount(lab, minlength=k) / len(lab)
    mu = np.stack([base[lab == j].mean(0) for j in range(k)])[None]
    cov = np.stack([np.cov(base[lab == j].T) for j in range(k)])
    fac = np.linalg.cholesky(np.linalg.inv(cov))[None]
    logdet = -np.linalg.slogdet(cov)[1][None]
    nu = np.full((1, k), 4.0)
    h = 0.5 * nu
    e = h + 0.5 * d
    c = np.full((1, k), 0.5)
    a = np.log(w)[None] + 0.5 * logdet + gammaln(e) - gammaln(h) + h * np.log(h)
    return x, (a, c, h, e), np.log(w)[None] + 0.5 * logdet, mu, fac, nu


def measure(n: int, rounds: int = 7) -> dict:
    x, coef, an, mu, fac, nu = inputs(n)
    xt = np.ascontiguousarray(x.T)
    k, d = mu.shape[1], mu.shape[2]
    fixed = np.full(n, -1, dtype=np.int32)
    z, zn = np.zeros((1, n), dtype=np.int8), np.zeros((1, n), dtype=np.int8)
    lam, v = np.ones((1, n)), np.empty(n)
    state, keys = np.array([7], dtype=np.uint64), np.array([12345], dtype=np.uint64)
    sums = (np.zeros((1, k)), np.zeros((1, k)), np.zeros((1, k, d)), np.zeros((1, k, d, d)))
    sums += (np.zeros((1, k)),)
    nsums = (np.zeros((1, k)), np.zeros((1, k, d)), np.zeros((1, k, d, d)))
    changed, nu_acc, beta = np.zeros(1, dtype=np.int64), np.zeros(1), np.ones(1)
    sampled = (SCALE_CODES["Gamma"], np.full(k, 2.0), np.full(k, 0.1))
    held = (-1, np.ones(k), np.ones(k))
    stage_z(xt, fixed, coef, mu, fac, np.uint64(1), z, v)
    counts = np.bincount(z[0], minlength=k).astype(float)
    cur = np.array([np.log(coef[2][0, j] + v[z[0] == j]).sum() for j in range(k)])
    xl, out = np.exp(np.linspace(-5, 5, B)), np.zeros(B)
    gam = np.empty(n)

    def copies():
        return tuple(q.copy() for q in coef)

    def normal():
        K._mv_sweep_serial(x, fixed, an, beta, mu, fac, keys, zn, *nsums, changed)

    def t_sweep(nu_model):
        t_nu, t_coef = nu.copy(), copies()
        M.mvt_sweep(
            xt, fixed, t_coef, mu, fac, keys, state, z.copy(), lam, sums, changed, t_nu,
            nu_model, nu_acc,
        )  # fmt: skip

    jobs = {
        "mv normal sweep": normal,
        "mv t sweep, nu fixed": lambda: t_sweep(held),
        "mv t sweep, nu sampled": lambda: t_sweep(sampled),
        "Mahalanobis (both sweeps)": lambda: stage_maha(xt, mu, fac),
        "z draw (maha, K logs, pick)": lambda: stage_z(
            xt, fixed, coef, mu, fac, np.uint64(1), z, v
        ),
        "lambda draw": lambda: stage_lambda(xt, z, v, coef, mu, np.uint64(3), state, lam),
        "statistics (+ x - mu)": lambda: stage_stats(xt, z, mu, lam),
        "nu move (2 passes)": lambda: stage_nu(
            z, v, counts, cur, copies(), nu.copy(), sampled, state
        ),
        "log (per value)": lambda: prim_log(xl, out, n // B),
        "counter uniform (per value)": lambda: prim_uniform(out, n // B),
        "Gamma(3) draw (per value)": lambda: T.gamma_array(3.0, np.uint64(5), state, gam),
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
    sizes = [int(a) for a in sys.argv[1:]] or [20_000]
    res = {}
    for n in sizes:
        res[n] = ns = measure(n)
        print(f"N = {n}, d = 2, K = 3: ns of thread CPU per row (best of 7 interleaved rounds)")
        for name, t in ns.items():
            print(f"  {name:30s} {t:7.2f}")
        normal = ns["mv normal sweep"]
        for name in ("mv t sweep, nu fixed", "mv t sweep, nu sampled"):
            print(f"  {name} / mv normal sweep: {ns[name] / normal:.2f}x")
    res["load_average"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
