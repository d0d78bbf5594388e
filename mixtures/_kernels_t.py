r"""Numba kernels of the Gibbs engine for Student-t components (``family="t"``).

A t component is a scale mixture of Normals: :math:`y_i \mid z_i = j, \lambda_i \sim
N(\mu_j, \sigma_j^2 / \lambda_i)` with a precision weight :math:`\lambda_i \sim
\text{Gamma}(\nu_j / 2, \nu_j / 2)`. One iteration of replica r (inverse temperature
:math:`\beta`, which powers the augmented likelihood :math:`p(y \mid z, \lambda, \theta)`) is

1. a pass over the data that draws, per point, the component :math:`z_i` from its conditional
   with :math:`\lambda_i` integrated out (at :math:`\beta = 1`, the t marginal):

   .. math::

       p(z_i = j \mid \theta) \propto w_j \sigma_j^{-\beta}
           \frac{\Gamma(e_j)\, h_j^{h_j}}{\Gamma(h_j)}
           \Big(h_j + \frac{\beta (y_i - \mu_j)^2}{2 \sigma_j^2}\Big)^{-e_j},
       \qquad h_j = \frac{\nu_j}2, \; e_j = h_j + \frac\beta2,

   then :math:`\lambda_i \mid z_i \sim \text{Gamma}(e_j, h_j + \beta (y_i - \mu_j)^2 /
   (2\sigma_j^2))`: together an exact draw of :math:`(z, \lambda)` from their joint
   conditional (blocked, so it mixes better than alternating the two). The pass accumulates
   the counts :math:`n_j` and the weighted sums :math:`\sum \lambda`, :math:`\sum \lambda d`,
   :math:`\sum \lambda d^2` (``d`` centred on the current means) and :math:`\sum \log\lambda`
   (the complete-data log-likelihood);
2. the Normal family's exact updates with the weighted statistics (:mod:`mixtures._kernels`):
   weights :math:`\text{Dirichlet}(a + n)`; means Normal with precision
   :math:`1/s_0^2 + \beta \sum\lambda / \sigma^2`; the sds' Metropolis move on the counts and
   the weighted sum of squares;
3. replica exchange on the augmented complete-data log-likelihood.

**Degrees of freedom.** Sampled :math:`\nu_j` are updated inside the pass, between the
assignments and the weights: random-walk Metropolis on :math:`\log \nu_j` (``_NU_STEPS``
moves, every component at once) from :math:`p(\nu \mid z, \theta)` with the weights summed
out (the t likelihood of the component's points), then the weights are drawn given the new
:math:`\nu`: a collapsed, blocked Gibbs step. Given the weights instead, :math:`\nu` moves
only as far as they let it (the classic slow mixing of data augmentation): measured on
``with_outliers``, r_hat 1.26 and bulk ESS 6 of 1000 draws for :math:`\nu` and the
weights, where the collapsed move mixes. A move costs one pass over the points (one log
each, vectorised; the current sums come from the assignment pass's logs); the step,
:math:`\min(1, 2.4 / \sqrt{0.2 n_j + 1})`, depends on :math:`n_j` alone, so the proposal
stays symmetric. A slice sampler needs no step, but a
varying number of passes per move; Metropolis keeps the cost per iteration fixed.

**Layout.** As the Normal sweep's: blocks of ``BLOCK`` points, struct-of-arrays scratch,
every step a loop of arithmetic, comparisons and selects that LLVM vectorises. With nu fixed,
each block's weights are drawn right after its assignments (one pass over the data); with nu
sampled, the weights take a second pass after the move. The Gamma draws are Marsaglia-Tsang's
with counter-based uniforms: Box-Muller Normals in pairs (cosine and sine of one angle), a
squeeze without a log that decides ~98% of the candidates at shape 2.5, the log test and the
redraws (from the replica's stream) for the rest, one point at a time; the weight is
``G / rate`` (no log or exp), and the sums of log lambda are logs of per-lane products.

The logits use :func:`log`, a branch-free logarithm (plain arithmetic on the bits, so the
block loops vectorise as the Normal sweep's :func:`mixtures._kernels.exp` does). The loop
kernels are compiled with ``error_model="numpy"``: under Numba's default (Python's), every
float division checks its divisor for zero, and no loop with a division vectorises.

Numba's disk cache checks only this file: after changing a function of
:mod:`mixtures._kernels` that these kernels call, touch this file too.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from mixtures._kernels import (
    BLOCK,
    LOG_2PI,
    as_float,
    as_int,
    block_max,
    block_pick,
    counter_uniform,
    exchange,
    exp,
    lane_total,
    next_bits,
    normal,
    normal_work,
    record_normal,
    scale_logpdf,
    uniform,
    update_normal,
)

__all__ = [
    "TConfig",
    "TState",
    "block_weights",
    "clear_lanes",
    "cos2pi",
    "cos2pi_array",
    "lane_totals",
    "log",
    "log_array",
    "mt_constants",
    "nu_moves",
    "record_t",
    "run_t",
    "select_pair",
    "sweep_t",
]


class TConfig(NamedTuple):
    """What the t family adds to a run's :class:`mixtures._kernels.KernelConfig`.

    Attributes
    ----------
    nu_code : int
        The scale family of the prior of the degrees of freedom
        (:data:`mixtures.model.prior_codes.SCALE_CODES`); -1: nu fixed.
    nu_p0, nu_p1 : ndarray of shape (k,)
        Its parameters (``nu_p1`` unused by one-parameter families).
    """

    nu_code: int
    nu_p0: np.ndarray
    nu_p1: np.ndarray


class TState(NamedTuple):
    """What the t family adds to a run's :class:`mixtures._kernels.ChainState`.

    Attributes
    ----------
    nu : ndarray of shape (n_rep, k)
        Every replica's degrees of freedom.
    lam : ndarray of shape (n_rep, n_obs)
        Every replica's precision weights of the points.
    """

    nu: np.ndarray
    lam: np.ndarray


_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_SQRT2 = 1.4142135623730951
_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE = np.int64(0x3FF0000000000000)
_TWO52_BITS = np.uint64(0x4330000000000000)  # the bits of 2**52
_S52 = np.uint64(52)
_TWO52_PLUS_BIAS = 4503599627370496.0 + 1023.0
_NU_STEPS = 2
_TINY = 2.2250738585072014e-308  # the smallest normal float64: a weight is kept above it


@njit(inline="always", fastmath={"contract"})
def log(x):
    """Return ln x for a positive, finite, normal float64, in plain arithmetic (vectorises).

    ``x = m 2**e`` with ``m`` in [sqrt(1/2), sqrt(2)) read off the bits; ``ln m = 2
    atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| <= 0.1716``, by its odd series to
    ``s**21`` (truncation < 1e-17 relative); ``e ln 2`` with ln 2 split in two. Zero,
    subnormal, negative, inf and nan arguments are not handled (the kernels never pass them).
    """
    bits = as_int(x)
    # the biased exponent as a float without an int-to-float conversion (which kept LLVM from
    # vectorising): its bits under those of 2**52 give 2**52 + exponent exactly
    top = np.uint64(bits) >> _S52  # a logical shift (AVX2 has no 64-bit arithmetic one)
    ef = as_float(np.int64(top | _TWO52_BITS)) - _TWO52_PLUS_BIAS
    m = as_float((bits & _MANTISSA) | _ONE)  # in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    ef = ef + 1.0 if big else ef
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = s2 * (1.0 / 21.0) + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    return ef * _LN2_HI + (2.0 * s + 2.0 * s * s2 * p + ef * _LN2_LO)


@njit(inline="always", fastmath={"contract"})
def cos2pi(u):
    """Return cos(2 pi u) for u in [0, 1), in plain arithmetic (vectorises; abs error < 1e-15).

    Reduced by symmetry to ``x = 2 pi q``, q in [0, 1/4], then Taylor's series to x**20.
    """
    s = abs(u - 0.5)  # cos(2 pi u) = -cos(2 pi s)
    far = s > 0.25
    q = 0.5 - s if far else s  # cos(2 pi s) = -cos(2 pi q) where far
    x = 2.0 * math.pi * q
    x2 = x * x
    p = x2 * (1.0 / 2432902008176640000.0) - 1.0 / 6402373705728000.0
    p = p * x2 + 1.0 / 20922789888000.0
    p = p * x2 - 1.0 / 87178291200.0
    p = p * x2 + 1.0 / 479001600.0
    p = p * x2 - 1.0 / 3628800.0
    p = p * x2 + 1.0 / 40320.0
    p = p * x2 - 1.0 / 720.0
    p = p * x2 + 1.0 / 24.0
    p = p * x2 - 0.5
    p = p * x2 + 1.0
    return p if far else -p


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def cos2pi_array(u, out):
    """Write :func:`cos2pi` of every value of `u` into `out` (a vectorised loop; for tests)."""
    for i in range(u.shape[0]):
        out[i] = cos2pi(u[i])


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def log_array(x, out):
    """Write :func:`log` of every value of the 1-D array `x` into `out` (a vectorised loop)."""
    for i in range(x.shape[0]):
        out[i] = log(x[i])


@njit(inline="always", fastmath={"contract"})
def sin2pi(u):
    """Return sin(2 pi u) for u in [0, 1): :func:`cos2pi` a quarter turn back (vectorises)."""
    return cos2pi(u - 0.25 if u >= 0.25 else u + 0.75)


@njit(inline="always")
def _block_logits(yb, r, a, c, h, e, mu, lp, lq, top):
    """Set a block's log-weights ``lp[j, b] = a_j - e_j lq[j, b]`` and ``top``, their max.

    ``lq[j, b] = log(h_j + c_j d**2)``, ``d = y_b - mu_j`` (kept: the nu move's log terms).
    """
    k, m = a.shape[1], yb.shape[0]
    for j in range(k):
        aj, cj, hj, ej, mj = a[r, j], c[r, j], h[r, j], e[r, j], mu[r, j]
        row, lrow = lp[j], lq[j]
        for b in range(m):
            d = yb[b] - mj
            q = log(hj + cj * d * d)
            lrow[b] = q
            row[b] = aj - ej * q
    block_max(lp, top, k, m)


@njit(inline="always")
def _block_select(yb, pick, r, c, h, e, mu, mt, small, sel):
    """Set each point's values of its component (selects only).

    ``sel``: the Gamma rate ``h + c (y - mu)**2``, ``y - mu``, the shape ``e`` (only if some
    shape is below 1, ``small``), Marsaglia-Tsang's ``d`` and ``c`` (``mt``: per component).

    Two outputs per loop: with more, LLVM's runtime overlap checks give up and the loop stays
    scalar.
    """
    qb, db, eb, mdb, mcb = sel
    k, m = c.shape[1], yb.shape[0]
    for j in range(k):
        cj, hj, mj = c[r, j], h[r, j], mu[r, j]
        for b in range(m):
            hit = pick[b] == j or j == 0
            d = yb[b] - mj
            qb[b] = hj + cj * d * d if hit else qb[b]
            db[b] = d if hit else db[b]
    _select_pair(pick, mt[0], mt[1], mdb, mcb, m)
    if small:
        _select_pair(pick, e[r], e[r], eb, eb, m)


@njit(inline="always")
def _select_pair(pick, p, q, pb, qb, m):
    """``pb[b], qb[b] = p[j], q[j]`` of each point's component ``j = pick[b]`` (selects)."""
    for j in range(p.shape[0]):
        pj, qj = p[j], q[j]
        for b in range(m):
            hit = pick[b] == j or j == 0
            pb[b] = pj if hit else pb[b]
            qb[b] = qj if hit else qb[b]


@njit(inline="always")
def _mt_constants(r, e, mt):
    """Set Marsaglia-Tsang's constants of replica r's shapes ``e[r]``; return if one is < 1.

    Rows of ``mt``: ``d = s - 1/3``, ``c = 1 / sqrt(9 d)`` and ``s``, the shape drawn (a shape
    below 1 is drawn plus 1, then boosted).
    """
    small = False
    for j in range(e.shape[1]):
        ej = e[r, j]
        small |= ej < 1.0
        s = ej + 1.0 if ej < 1.0 else ej
        mt[0, j] = s - 1.0 / 3.0
        mt[1, j] = 1.0 / math.sqrt(9.0 * mt[0, j])
        mt[2, j] = s
    return small


@njit(inline="always")
def _block_candidates(m, key, i0, mdb, mcb, xs, g):
    """First Marsaglia-Tsang candidates of a block's Gamma draws; return how many undecided.

    The Normals are Box-Muller's in pairs: point b < half takes the cosine, b + half the sine
    of the same radius and angle (uniforms 4 (i0 + b) and 4 (i0 + b) + 1: independent
    standard Normals); uniform 4 (i0 + b) + 2 is point b's acceptance uniform. ``g[b] = d
    t**3`` where the squeeze accepts, -1 where it does not decide (or ``t <= 0``):
    :func:`_decide` settles those.

    The squeeze is a lower bound of the acceptance test's right side (no log): with ``y = c
    x`` the test is ``log u < 3 d (log(1 + y) - y + y**2/2 - y**3/3)``, and the bracket is
    >= ``-y**4 / (4 min(1, 1 + y))`` (its series: the remainder after ``y**3``), so ``u <
    1 - x**4 / (108 d min(1, t))`` (``d c**4 = 1 / (81 d)``; ``e**a >= 1 + a``) implies
    acceptance. It leaves about ``0.03 / d`` of the candidates to the log test (1.3% at
    shape 2.5), against 10% for Marsaglia-Tsang's own ``1 - 0.0331 x**4``.
    """
    half = (m + 1) // 2
    for b in range(half):
        i = 4 * (i0 + b)
        rad = math.sqrt(-2.0 * log(1.0 - counter_uniform(key, i)))
        u2 = counter_uniform(key, i + 1)
        xs[b] = rad * cos2pi(u2)
        xs[b + half] = rad * sin2pi(u2)
    undecided = 0
    for b in range(m):
        x = xs[b]
        t = 1.0 + mcb[b] * x
        x2 = x * x
        d = mdb[b]
        lo = min(t, 1.0)
        u = counter_uniform(key, 4 * (i0 + b) + 2)
        ok = (t > 0.0) & (u * lo * (108.0 * d) < lo * (108.0 * d) - x2 * x2)
        g[b] = d * (t * t * t) if ok else -1.0
        undecided += 0 if ok else 1
    return undecided


@njit
def _decide(m, key, i0, mdb, mcb, shape, xs, g, state, r):
    """Settle the candidates the squeeze left (``g[b] < 0``) by Marsaglia-Tsang's log test.

    A rejected one is redrawn from replica r's stream (``shape[b]``: the shape drawn, >= 1).
    """
    for b in range(m):
        if g[b] >= 0.0:
            continue
        x, d = xs[b], mdb[b]
        t = 1.0 + mcb[b] * x
        if t > 0.0:
            v = t * t * t
            u = counter_uniform(key, 4 * (i0 + b) + 2)
            if u == 0.0 or log(u) < 0.5 * x * x + d - d * v + d * log(v):
                g[b] = d * v
                continue
        g[b] = _redraw_gamma(shape[b], state, r)


@njit
def _redraw_gamma(shape, state, r):
    """Return a Gamma(shape, 1) draw, shape >= 1, from replica r's stream (Marsaglia-Tsang).

    :func:`mixtures._kernels.log_gamma`'s algorithm with the branch-free log and cosine (a
    few times faster than the library's calls, which the rejected candidates pay for).
    """
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:  # acceptance >= 0.95 per try
        x = math.sqrt(-2.0 * log(uniform(state, r))) * cos2pi(uniform(state, r))
        t = 1.0 + c * x
        if t <= 0.0:
            continue
        v = t * t * t
        if log(uniform(state, r)) < 0.5 * x * x + d - d * v + d * log(v):
            return d * v


@njit(inline="always")
def _block_lambda(m, key, i0, small, g, sel, lamb, loglam):
    """Set the weights ``lambda = G / (h + v)`` from the Gamma draws ``g``.

    Where a shape is below 1 (``small``), ``G`` is boosted by ``U**(1 / e)`` (uniform
    4 (i0 + b) + 3) and the weight computed in logs (a tiny shape can underflow ``G``), its
    log kept in ``loglam``; otherwise the sums take the log of products (:func:`_block_acc`).
    """
    qb, eb = sel[0], sel[2]
    if small:
        for b in range(m):
            e = eb[b]
            boost = log(1.0 - counter_uniform(key, 4 * (i0 + b) + 3)) / e if e < 1.0 else 0.0
            ll = log(max(g[b], _TINY)) + boost - log(qb[b])
            lamb[b] = exp(ll)
            loglam[b] = ll
    else:
        for b in range(m):
            lamb[b] = max(g[b] / qb[b], _TINY)  # below _TINY: probability < 1e-300


@njit(nogil=True, fastmath={"contract"}, error_model="numpy")  # a call: compiled once
def _block_weights(pick, i0, r, key, state, small, mt, sel, lamb, draw, acc):
    """Draw a block's precision weights given their components; add them to the lane sums.

    ``sel``: the components' values (:func:`_block_select`); ``acc[0..4, j, b]``: count, sum
    of lambda, of lambda d, of lambda d**2, of log lambda, ``d = y - mu``.
    """
    xs, g, loglam, shape = draw
    db, mdb, mcb = sel[1], sel[3], sel[4]
    k, m = acc.shape[1], lamb.shape[0]  # acc: the lane sums (:func:`_block_acc`)
    if _block_candidates(m, key, i0, mdb, mcb, xs, g):
        for j in range(k):  # the drawn shapes, for the rare redraws
            sj = mt[2, j]
            for b in range(m):
                shape[b] = sj if pick[b] == j else shape[b]
        _decide(m, key, i0, mdb, mcb, shape, xs, g, state, r)
    _block_lambda(m, key, i0, small, g, sel, lamb, loglam)
    _block_acc(pick, db, lamb, loglam, small, acc)


@njit(inline="always")
def _block_acc(pick, db, lamb, loglam, small, acc):
    """Add a block's points to the lane sums ``acc[0..6, j, b]`` of their components.

    Count, lambda, lambda d, lambda d**2 and log lambda (from ``loglam`` if ``small``), masked
    per lane; at most two sums per loop (more outputs, and LLVM's overlap checks give up
    vectorising). Without ``small``, the logs are summed as a product per lane: its mantissa
    in ``acc[5]``, its exponent added to ``acc[6]`` after each point, so it neither
    overflows nor underflows, and no log is taken per point (:func:`_lane_totals`).
    """
    k, m = acc.shape[1], lamb.shape[0]
    for j in range(k):
        cn, c1 = acc[0, j], acc[1, j]
        for b in range(m):
            hit = pick[b] == j
            cn[b] += 1.0 if hit else 0.0
            c1[b] += lamb[b] if hit else 0.0
        c2, c3 = acc[2, j], acc[3, j]
        for b in range(m):
            hit = pick[b] == j
            wd = lamb[b] * db[b]
            c2[b] += wd if hit else 0.0
            c3[b] += wd * db[b] if hit else 0.0
        if small:
            c4 = acc[4, j]
            for b in range(m):
                c4[b] += loglam[b] if pick[b] == j else 0.0
        else:
            pr, ex = acc[5, j], acc[6, j]
            for b in range(m):
                bits = as_int(pr[b] * (lamb[b] if pick[b] == j else 1.0))
                top = np.uint64(bits) >> _S52  # as in log(): the exponent, then the mantissa
                ex[b] += as_float(np.int64(top | _TWO52_BITS)) - _TWO52_PLUS_BIAS
                pr[b] = as_float((bits & _MANTISSA) | _ONE)


@njit(inline="always")
def _clear(acc):
    """Zero the lane sums, products set to 1."""
    acc[:] = 0.0
    acc[5] = 1.0


@njit(inline="always")
def _lane_totals(acc, out):
    """``out[q, j]``: the totals of the lane sums (``q = 4``: plus the logs of the products)."""
    for q in range(5):
        for j in range(acc.shape[1]):
            out[q, j] = lane_total(acc[q, j], acc.shape[2])  # BLOCK lanes: a power of two
    for j in range(acc.shape[1]):
        pr, ex = acc[5, j], acc[6, j]
        for b in range(pr.shape[0]):
            out[4, j] += ex[b] * _LN2_HI + (log(pr[b]) + ex[b] * _LN2_LO)


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def gamma_array(shape, key, state, out):
    """Write Gamma(shape, 1) draws into `out` by the sweep's block sampler (for tests).

    The same path as the sweep's weights (rate 1): paired Box-Muller Normals, the squeeze,
    the log test, the redraws from ``state[0]``, and the boost of a shape below 1.
    """
    e = np.full((1, 1), shape)
    work = _sweep_t_work(1)
    pick, sel, draw, acc, mt = work[0][4], work[2], work[3], work[4], work[6]
    small = _mt_constants(0, e, mt)
    pick[:] = 0
    _clear(acc)
    n = out.shape[0]
    for i0 in range(0, n, BLOCK):
        m = min(BLOCK, n - i0)
        sel[0][:] = 1.0
        sel[1][:] = 0.0
        _select_pair(pick, mt[0], mt[1], sel[3], sel[4], m)
        _select_pair(pick, e[0], e[0], sel[2], sel[2], m)
        _block_weights(pick, i0, 0, key, state, small, mt, sel, out[i0 : i0 + m], draw, acc)


@njit(inline="always")
def _nu_sums(zr, vr, hr, lanes, out):
    """``out[j] = sum over the points of component j of log(h_j + v_i)`` (lane accumulators)."""
    k, n_obs, width = hr.shape[0], vr.shape[0], lanes.shape[1]
    for j in range(k):
        row = lanes[j]
        for b in range(width):
            row[b] = 0.0
    hb, lb = lanes[k], lanes[k + 1]  # scratch rows: each point's h, then its log term
    for i0 in range(0, n_obs, width):
        i1 = min(i0 + width, n_obs)
        zb, vb = zr[i0:i1], vr[i0:i1]
        m = i1 - i0
        for j in range(k):
            hj = hr[j]
            for b in range(m):
                hb[b] = hj if zb[b] == j or j == 0 else hb[b]
        for b in range(m):
            lb[b] = log(hb[b] + vb[b])
        for j in range(k):
            row = lanes[j]
            for b in range(m):
                row[b] += lb[b] if zb[b] == j else 0.0
    for j in range(k):
        out[j] = lanes[j].sum()


@njit(inline="always")
def _nu_marginal(nu, n, log_sum, half_beta, code, p0, p1):
    """Log conditional of log nu_j given the assignments, the precision weights summed out.

    ``n`` points, ``log_sum`` = sum of log(nu / 2 + v_i); includes the prior and the Jacobian.
    """
    h = 0.5 * nu
    e = h + half_beta
    lik = n * (h * math.log(h) + math.lgamma(e) - math.lgamma(h)) - e * log_sum
    return scale_logpdf(code, nu, p0, p1) + lik + math.log(nu)


@njit(inline="always")
def _nu_moves(r, z, v, counts, coef, nu, nu_model, state, work):
    """Random-walk Metropolis on every log nu_j of replica r (``_NU_STEPS`` moves, all j at once).

    Returns the fraction accepted. ``work[1]`` holds the current sums of log(h_j + v_i) (from
    the assignment pass's logs); each move costs one pass over the points (a log each).
    """
    a, c, h, e = coef
    code, p0, p1 = nu_model
    k = nu.shape[1]
    lanes, cur_sum, prop_sum, hr, prop = work
    accepted = 0.0
    for _ in range(_NU_STEPS):
        for j in range(k):
            step = min(1.0, 2.4 / math.sqrt(0.2 * counts[j] + 1.0))
            prop[j] = nu[r, j] * math.exp(step * normal(state, r))
            hr[j] = 0.5 * prop[j]
        _nu_sums(z[r], v, hr, lanes, prop_sum)
        for j in range(k):
            hb = e[r, j] - h[r, j]
            new = _nu_marginal(prop[j], counts[j], prop_sum[j], hb, code, p0[j], p1[j])
            old = _nu_marginal(nu[r, j], counts[j], cur_sum[j], hb, code, p0[j], p1[j])
            if math.log(uniform(state, r)) < new - old:
                nu[r, j], cur_sum[j] = prop[j], prop_sum[j]
                h[r, j], e[r, j] = 0.5 * prop[j], 0.5 * prop[j] + hb
                accepted += 1.0
    return accepted / (k * _NU_STEPS)


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def sweep_t(y, fixed, coef, mu, keys, state, z, lam, sums, changed, nu, nu_model, nu_acc):
    """Draw every replica's assignments, degrees of freedom and precision weights.

    Per replica: the assignments from their conditional with the weights summed out; then,
    if nu is sampled (``nu_model[0] >= 0``), Metropolis moves of log nu given the
    assignments (weights summed out: far better mixing than given the weights); then every
    weight from its Gamma conditional. Each draw is from a conditional of the joint
    posterior, in an order that keeps it invariant (a collapsed, blocked Gibbs sampler).
    With nu fixed, each block's weights are drawn right after its assignments (one pass);
    with nu sampled, the assignment pass also sums the current log terms of the nu move, and
    the weights take a second pass after the move.

    Parameters
    ----------
    y : ndarray of shape (n_obs,)
    fixed : ndarray of int32, shape (n_obs,)
        Known labels; -1 where unknown.
    coef : tuple of 4 ndarrays of shape (n_rep, k)
        ``(a, c, h, e)``: replica r's log-weight of component j at y is
        ``a - e log(h + c (y - mu)**2)``, with ``h = nu / 2``, ``e = h + beta / 2``,
        ``c = beta / (2 sd**2)`` and ``a = log w - beta log sd + lgamma(e) - lgamma(h) +
        h log h``; the weight's conditional is Gamma(e, h + c (y - mu)**2). ``h`` and ``e``
        are updated with nu.
    mu : ndarray of shape (n_rep, k)
    keys : ndarray of uint64, shape (n_rep,)
        This sweep's key of each replica (the counter-based uniforms of the picks).
    state : ndarray of uint64, shape (n_rep,)
        The replicas' random streams (nu's moves, the Gamma draws' key and rare redraws).
    z : ndarray of int8 or int32, shape (n_rep, n_obs)
        Assignments, overwritten.
    lam : ndarray of shape (n_rep, n_obs)
        Precision weights, overwritten.
    sums : ndarray of shape (n_rep, 5, k)
        Output: per component the count, and the sums of lambda, lambda d, lambda d**2 and
        log lambda, ``d = y - mu``.
    changed : ndarray of int64, shape (n_rep,)
        Output: how many assignments changed.
    nu : ndarray of shape (n_rep, k)
        Degrees of freedom, updated in place when sampled.
    nu_model : TConfig or tuple
        ``(nu_code, nu_p0, nu_p1)``: the nu prior's scale family (-1: nu fixed) and its
        parameters (k,) (:class:`TConfig`).
    nu_acc : ndarray of shape (n_rep,)
        Output: the fraction of nu moves accepted.
    """
    k = mu.shape[1]
    work = _sweep_t_work(k)
    acc, mt, counts, nu_work = work[4], work[6], work[7], work[8]
    for r in range(mu.shape[0]):
        _clear(acc)
        sampled = nu_model[0] >= 0
        gkey = keys[r] if sampled else next_bits(state, r)  # nu fixed: the weights' key
        small = _mt_constants(r, coef[3], mt)
        changed[r] = _assign_t(
            y, fixed, r, coef, mu, keys[r], gkey, state, z, lam, small, sampled, work
        )
        if sampled:  # lam[r] holds each point's c (y - mu)**2 until the weights are drawn
            for j in range(k):
                counts[j] = acc[0, j].sum()
            _clear(acc)
            nu_acc[r] = _nu_moves(r, z, lam[r], counts, coef, nu, nu_model, state, nu_work)
            key = next_bits(state, r)
            small = _mt_constants(r, coef[3], mt)
            _draw_weights(y, r, z, coef, mu, key, state, lam, small, work)
        _lane_totals(acc, sums[r])


@njit(inline="always")
def _sweep_t_work(k):
    """Return the scratch of :func:`sweep_t`.

    The picks', the components' values, the Gamma draws', the lane sums, the nu move's
    current log terms, Marsaglia-Tsang's constants, the counts and the nu move's own.
    """
    pick_work = (
        np.empty((2 * k, BLOCK)),  # rows k..2k-1: block_pick's scratch
        np.empty(BLOCK),
        np.empty(BLOCK),
        np.empty(BLOCK),
        np.empty(BLOCK, dtype=np.int64),
    )
    sel = (np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK))
    draw = (np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK))
    nu_work = (np.empty((k + 2, BLOCK)), np.empty(k), np.empty(k), np.empty(k), np.empty(k))
    lq, acc, cur = np.empty((k, BLOCK)), np.empty((7, k, BLOCK)), np.empty((k, BLOCK))
    return pick_work, lq, sel, draw, acc, cur, np.empty((3, k)), np.empty(k), nu_work


@njit(inline="always")
def _assign_t(y, fixed, r, coef, mu, key, gkey, state, z, lam, small, sampled, work):
    """Draw replica r's assignments (weights summed out); return how many changed.

    nu fixed (``sampled`` False): each block's weights are drawn right after its assignments
    (``gkey``: the key of their uniforms). nu sampled: sets ``lam[r, i] = c (y_i - mu_j)**2``
    of each point's new component j, the counts' lanes ``work[4][0]`` and the nu move's
    current sums of log(h_j + v_i) (``work[8][1]``).
    """
    a, c, h, e = coef
    pick_work, lq, sel, draw, acc, cur, mt = work[:7]
    lp, top, tot, u, pick = pick_work
    n_obs = y.shape[0]
    cur[:] = 0.0
    count = 0
    for i0 in range(0, n_obs, BLOCK):
        i1 = min(i0 + BLOCK, n_obs)
        yb = y[i0:i1]
        _block_logits(yb, r, a, c, h, e, mu, lp, lq, top)
        count += block_pick(fixed[i0:i1], z[r, i0:i1], i0, key, lp, top, tot, u, pick)
        if sampled:
            _block_move_terms(yb, pick, r, c, mu, lq, lam[r, i0:i1], cur, acc)
        else:
            _block_select(yb, pick, r, c, h, e, mu, mt, small, sel)
            _block_weights(pick, i0, r, gkey, state, small, mt, sel, lam[r, i0:i1], draw, acc)
    for j in range(a.shape[1]):
        work[8][1][j] = cur[j].sum()
    return count


@njit(inline="always")
def _block_move_terms(yb, pick, r, c, mu, lq, vb, cur, acc):
    """Per point ``vb = c (y - mu)**2`` of its component; add its log term and 1 to the lanes."""
    for j in range(c.shape[1]):
        cj, mj, lrow, crow, cn = c[r, j], mu[r, j], lq[j], cur[j], acc[0, j]
        for b in range(yb.shape[0]):
            hit = pick[b] == j
            d = yb[b] - mj
            vb[b] = cj * d * d if hit else vb[b]
            crow[b] += lrow[b] if hit else 0.0
            cn[b] += 1.0 if hit else 0.0


@njit(inline="always")
def _draw_weights(y, r, z, coef, mu, key, state, lam, small, work):
    """Draw every point's precision weight given its component, block by block (nu sampled)."""
    a, c, h, e = coef
    pick, sel, draw, acc, mt = work[0][4], work[2], work[3], work[4], work[6]
    n_obs = y.shape[0]
    for i0 in range(0, n_obs, BLOCK):
        i1 = min(i0 + BLOCK, n_obs)
        zb = z[r, i0:i1]
        for b in range(i1 - i0):
            pick[b] = zb[b]
        _block_select(y[i0:i1], pick, r, c, h, e, mu, mt, small, sel)
        _block_weights(pick, i0, r, key, state, small, mt, sel, lam[r, i0:i1], draw, acc)


@njit(cache=True, nogil=True)
def _prepare_t(chain, nu, coef, keys):
    """Set the sweep's coefficients ``(a, c, h, e)`` of every replica, and its random keys.

    ``chain``: a :class:`mixtures._kernels.ChainState`; ``nu`` (n_rep, k): the degrees of
    freedom; ``coef`` and ``keys``: as in :func:`sweep_t`.
    """
    logw, sd, state, temp_of, betas = chain.logw, chain.sd, chain.state, chain.temp_of, chain.betas
    a, c, h, e = coef
    n_rep, k = sd.shape
    for r in range(n_rep):
        beta = betas[temp_of[r]]
        for j in range(k):
            hj = 0.5 * nu[r, j]
            ej = hj + 0.5 * beta
            h[r, j], e[r, j] = hj, ej
            c[r, j] = 0.5 * beta / (sd[r, j] * sd[r, j])
            a[r, j] = (
                logw[r, j]
                - beta * math.log(sd[r, j])
                + math.lgamma(ej)
                - math.lgamma(hj)
                + hj * math.log(hj)
            )
        keys[r] = next_bits(state, r)


@njit
def _record_t(d, config, chain, t_state, t_out, nuacc):
    """Store the cold replicas' degrees of freedom, nu acceptance (and weights) as draw `d`."""
    out_nu, out_lam, st_nuacc = t_out
    nu, lam, rep_at = t_state.nu, t_state.lam, chain.rep_at
    chains, n_temps = rep_at.shape
    for ch in range(chains):
        cold = rep_at[ch, n_temps - 1]
        for j in range(nu.shape[1]):
            out_nu[ch, d, j] = nu[cold, j]
        st_nuacc[ch, d] = nuacc[cold]
        if config.store_z:
            for i in range(lam.shape[1]):
                out_lam[ch, d, i] = lam[cold, i]


@njit(cache=True, nogil=True)
def _after_sweep_t(it, tune, config, chain, t_state, out, t_out, stats, sums, changed, nuacc):
    """Parameter updates, replica exchange and recording after the sweep of iteration `it`.

    ``config``, ``chain``, ``out``, ``stats``: as in :func:`mixtures._kernels.run`;
    ``t_state``, ``t_out``: as in :func:`run_t`; ``sums`` (n_rep, 5, k): the sweep's
    weighted sums (:func:`sweep_t`); ``changed``, ``nuacc`` (n_rep,): its changed assignments
    and nu acceptance. The Normal family's updates run on the weighted sums
    (:func:`mixtures._kernels.update_normal`). Returns False if an sd fell below the collapse
    threshold.
    """
    n_rep, k = chain.mu.shape
    sd = chain.sd
    counts, wsum, wsum1, wsum2 = sums[:, 0, :], sums[:, 1, :], sums[:, 2, :], sums[:, 3, :]
    loglik, sigacc = np.empty(n_rep), np.zeros(n_rep)
    work = normal_work(k)
    ss = work[0]
    for r in range(n_rep):
        beta = chain.betas[chain.temp_of[r]]
        ok, accepted = update_normal(r, beta, config, chain, counts, wsum, wsum1, wsum2, work)
        sigacc[r] = accepted
        if not ok:
            return False
        ll = 0.0
        for j in range(k):
            ll += 0.5 * sums[r, 4, j] - ss[j] / (2.0 * sd[r, j] ** 2)
            ll -= counts[r, j] * (math.log(sd[r, j]) + 0.5 * LOG_2PI)
        loglik[r] = ll
    d = it - tune
    exchange(it, d, chain, loglik, changed, stats)
    if d >= 0:
        record_normal(d, config, chain, out, stats, loglik, sigacc)
        _record_t(d, config, chain, t_state, t_out, nuacc)
    return True


@njit(cache=True, nogil=True)
def run_t(y, it0, it1, tune, config, t_config, chain, t_state, out, t_out, stats):
    """Run iterations it0..it1-1 of every replica of a t mixture; record from `tune` on.

    As :func:`mixtures._kernels.run` (same `config`, `chain`, `out` and `stats`), with
    ``t_config``: a :class:`TConfig` (the prior of nu, or nu fixed); ``t_state``: a
    :class:`TState` (degrees of freedom and precision weights, updated in place); ``t_out =
    (nu, lam, nu_accept)``: their records (lam only with the assignments). Returns the
    iteration at which an sd collapsed, or -1.
    """
    nu, lam = t_state.nu, t_state.lam
    n_rep, k = chain.mu.shape
    coef = (np.empty((n_rep, k)), np.empty((n_rep, k)), np.empty((n_rep, k)), np.empty((n_rep, k)))
    keys = np.empty(n_rep, dtype=np.uint64)
    sums = np.zeros((n_rep, 5, k))
    changed = np.zeros(n_rep, dtype=np.int64)
    nu_acc = np.zeros(n_rep)
    for it in range(it0, it1):
        _prepare_t(chain, nu, coef, keys)
        sweep_t(
            y, chain.fixed, coef, chain.mu, keys, chain.state, chain.z, lam, sums, changed, nu,
            t_config, nu_acc,
        )  # fmt: skip
        if not _after_sweep_t(
            it, tune, config, chain, t_state, out, t_out, stats, sums, changed, nu_acc
        ):
            return it
    return -1


# Public names for the multivariate t kernel (:mod:`mixtures._kernels_mvt`), which draws its
# precision weights as this kernel does: Marsaglia-Tsang's constants, the selects, the block's
# Gamma draws with the lane sums of count, lambda, lambda d, lambda d**2 and log lambda (d: its
# first feature), the lanes' clearing and totals; nu's collapsed Metropolis moves (``h`` and
# ``e - h = beta d / 2`` read from ``coef``) and the records of nu and the precision weights.
mt_constants = _mt_constants
select_pair = _select_pair
block_weights = _block_weights
clear_lanes = _clear
lane_totals = _lane_totals
nu_moves = _nu_moves
record_t = _record_t
