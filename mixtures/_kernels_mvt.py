r"""Numba kernels of the Gibbs engine for multivariate Student-t components.

``mv_mixture(..., family="t")`` with the inverse-Wishart prior on the scale matrices.

A component is a scale mixture of Normals: :math:`x_i \mid z_i = j, \lambda_i \sim
N(\mu_j, \Lambda_j^{-1} / \lambda_i)` with :math:`\lambda_i \sim \text{Gamma}(\nu_j / 2,
\nu_j / 2)`, :math:`\Lambda_j` the precision (inverse scale matrix). With :math:`m_{ij} =
(x_i - \mu_j)^\top \Lambda_j (x_i - \mu_j)`, one iteration of replica r (inverse temperature
:math:`\beta`, which powers the augmented likelihood :math:`p(x \mid z, \lambda, \theta)`) is

1. a pass over the data that draws every :math:`z_i` with :math:`\lambda_i` summed out (at
   :math:`\beta = 1`, the multivariate t marginal):

   .. math::

       p(z_i = j \mid \theta) \propto w_j |\Lambda_j|^{\beta / 2}
           \frac{\Gamma(e_j)\, h_j^{h_j}}{\Gamma(h_j)}
           \Big(h_j + \frac{\beta m_{ij}}{2}\Big)^{-e_j},
       \qquad h_j = \frac{\nu_j}2, \; e_j = h_j + \frac{\beta d}2;

2. if nu is sampled, the univariate t's move (:func:`mixtures._kernels_t.nu_moves`):
   random-walk Metropolis on :math:`\log \nu_j` given the assignments, the weights summed
   out (the collapsed multivariate t likelihood of the component's rows; the current log
   terms come from step 1's logs);
3. :math:`\lambda_i \mid z_i \sim \text{Gamma}(e_j, h_j + \beta m_{ij} / 2)`, accumulating the
   counts :math:`n_j`, :math:`\sum\lambda`, :math:`\sum \lambda (x - \mu)`,
   :math:`\sum \lambda (x - \mu)(x - \mu)^\top` (about the current means) and
   :math:`\sum \log\lambda`;
4. the multivariate Normal family's exact updates (:mod:`mixtures._kernels`) on these:
   weights Dirichlet(a + n); means Normal with precision :math:`\text{diag}(1/s_0^2) + \beta
   \sum\lambda\, \Lambda_j`; precisions Wishart(:math:`\nu_0 + \beta n_j`,
   :math:`(\Psi + \beta S^\lambda_j)^{-1}`), :math:`S^\lambda_j` the weighted scatter;
5. replica exchange on the augmented complete-data log-likelihood
   :math:`\sum_i \log N(x_i \mid \mu_{z_i}, \Lambda_{z_i}^{-1} / \lambda_i)`.

Steps 1-3 are a collapsed, blocked draw of :math:`(\nu, z, \lambda)`, as in the univariate t
kernel (:mod:`mixtures._kernels_t`, whose logarithm, nu move and Gamma draws this module
reuses: paired Box-Muller Normals, a squeeze without a log for ~98% of the candidates, the
weight ``G / (h + v)`` without a log or exp, the sum of log lambda as logs of per-lane
products; feature 0's weighted moments ride in its lane sums, the other features' are added
here). With nu fixed, each block's weights are drawn right after its assignments (one pass
over the data); with nu sampled, a second pass after the move. The loops go over blocks of
:data:`MVT_BLOCK` points (fewer at large k d**2) in struct-of-arrays layout (features in
rows), plain arithmetic and selects, so they vectorise; ``python bench/mvt_stages.py``
times each stage.

Numba's disk cache checks only this file: after changing a function of
:mod:`mixtures._kernels` or :mod:`mixtures._kernels_t` that these kernels call, touch this file.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mixtures._kernels import (
    MV_BLOCK,
    block_maha,
    block_max,
    block_pick,
    exchange,
    mv_record,
    mv_update,
    mv_work,
    next_bits,
)
from mixtures._kernels_t import (
    block_weights,
    clear_lanes,
    lane_totals,
    log,
    mt_constants,
    nu_moves,
    record_t,
    select_pair,
)

__all__ = ["MVT_BLOCK", "mvt_prepare", "mvt_run", "mvt_sweep"]

#: Points per block of the sweep where its lane sums are few (k d (d + 1) / 2 <= 24 second
#: moments); with more, the multivariate Normal sweep's ``MV_BLOCK`` (:func:`_block_size`).
MVT_BLOCK = 256
_MANY_LANES = 24


@njit(inline="always")
def _block_size(k, d):
    """Points per block: :data:`MVT_BLOCK`, or ``MV_BLOCK`` when the lanes outgrow the caches."""
    return MVT_BLOCK if k * d * (d + 1) // 2 <= _MANY_LANES else MV_BLOCK


@njit(inline="always")
def _block_assign(xt, fixed, i0, i1, r, coef, mu, fac, key, zr, vb, work):
    """Draw the assignments of the points in columns i0..i1-1 (weights summed out).

    Returns how many changed. Sets ``pick`` (the block's new components), ``lq[j, b] =
    log(h_j + c_j m_jb)`` (the nu move's log terms) and ``vb[b] = c m``, ``beta m / 2`` of
    each point's new component.
    """
    a, c, h, e = coef
    (lp, top, tot, u, pick), (maha, lq) = work[0], work[1][:2]
    k, m = a.shape[1], i1 - i0
    block_maha(xt, i0, i1, r, mu, fac, maha, u)
    for j in range(k):
        aj, cj, hj, ej = a[r, j], c[r, j], h[r, j], e[r, j]
        row, lrow, mr = lp[j], lq[j], maha[j]
        for b in range(m):
            q = log(hj + cj * mr[b])
            lrow[b] = q
            row[b] = aj - ej * q
    block_max(lp, top, k, m)
    changed = block_pick(fixed[i0:i1], zr[i0:i1], i0, key, lp, top, tot, u, pick)
    for j in range(k):
        cj, mr = c[r, j], maha[j]
        for b in range(m):
            vb[b] = cj * mr[b] if pick[b] == j or j == 0 else vb[b]
    return changed


@njit(inline="always")
def _block_move_terms(pick, m, lq, cur, acc):
    """Add each point's log term ``log(h + v)`` of its component, and 1, to the lanes."""
    for j in range(lq.shape[0]):
        lrow, crow, cn = lq[j], cur[j], acc[0, j]
        for b in range(m):
            hit = pick[b] == j
            crow[b] += lrow[b] if hit else 0.0
            cn[b] += 1.0 if hit else 0.0


@njit(inline="always")
def _block_select(xt, s, m, pick, r, coef, mu, vb, mt, small, sel, dif):
    """Set each point's values of its component (selects only).

    ``sel``: the Gamma rate ``h + v``, ``x - mu`` of feature 0 (the first row of ``dif``,
    which holds every feature's), the shape ``e`` (only if some shape is below 1,
    ``small``), Marsaglia-Tsang's ``d`` and ``c`` (``mt``: per component).
    """
    h, e = coef[2], coef[3]
    qb = sel[0]
    k, d = mu.shape[1], mu.shape[2]
    for j in range(k):
        hj = h[r, j]
        for b in range(m):
            qb[b] = hj + vb[b] if pick[b] == j or j == 0 else qb[b]
    for row in range(d):
        dr, xr = dif[row], xt[row, s : s + m]
        for j in range(k):
            mj = mu[r, j, row]
            for b in range(m):
                dr[b] = xr[b] - mj if pick[b] == j or j == 0 else dr[b]
    select_pair(pick, mt[0], mt[1], sel[3], sel[4], m)
    if small:
        select_pair(pick, e[r], e[r], sel[2], sel[2], m)


@njit(inline="always")
def _block_moments(pick, m, dif, lamb, wd, mom_1, mom_2):
    """Add the weighted moments of features 1..d-1 to the lanes of each point's component.

    ``mom_1[j, row, b]``: lambda (x - mu)_row; ``mom_2[j, row, col, b]`` (col <= row):
    lambda (x - mu)_row (x - mu)_col; rows >= 1 only (feature 0's are the univariate lanes',
    :func:`mixtures._kernels_t.block_weights`). ``wd``: scratch.
    """
    k, d = mom_1.shape[0], dif.shape[0]
    for row in range(1, d):
        w, dr = wd[row], dif[row]
        for b in range(m):
            w[b] = lamb[b] * dr[b]
    for j in range(k):
        for row in range(1, d):
            c1, w = mom_1[j, row], wd[row]
            for b in range(m):
                c1[b] += w[b] if pick[b] == j else 0.0
            for col in range(row + 1):
                c2, dc = mom_2[j, row, col], dif[col]
                for b in range(m):
                    c2[b] += w[b] * dc[b] if pick[b] == j else 0.0


@njit(inline="always")
def _block_draw(xt, i0, m, r, coef, mu, key, state, small, vb, lamb, work):
    """Draw a block's precision weights given their components (``pick``); add to the lanes.

    The univariate t kernel's Gamma draws (:func:`mixtures._kernels_t.block_weights`: paired
    Box-Muller Normals, a squeeze without a log, the log test and exact redraws for the rest,
    ``lambda = G / (h + v)``), which also sum the count, lambda, log lambda and feature 0's
    moments; then the other features' moments (:func:`_block_moments`). ``vb``: ``beta m /
    2`` of each point's component (may be ``lamb`` itself: read before it is written).
    """
    pick = work[0][4]
    sel, dif, draw, acc, mt = work[2]
    wd, mom_1, mom_2 = work[3][:3]
    _block_select(xt, i0, m, pick, r, coef, mu, vb, mt, small, sel, dif)
    block_weights(pick, i0, r, key, state, small, mt, sel, lamb, draw, acc)
    _block_moments(pick, m, dif, lamb, wd, mom_1, mom_2)


@njit(inline="always")
def _assign_mvt(xt, fixed, r, coef, mu, fac, key, gkey, state, z, lam, small, sampled, work):
    """Draw replica r's assignments (weights summed out); return how many changed.

    nu fixed (``sampled`` False): each block's weights are drawn right after its assignments
    (``gkey``: the key of their uniforms), one pass. nu sampled: sets ``lam[r, i] = c m`` of
    each point's new component, the counts' lanes ``acc[0]`` and the nu move's current log
    terms' lanes ``cur``.
    """
    lq, cur, vbuf = work[1][1:]
    acc = work[2][3]
    pick = work[0][4]
    n_obs, size = xt.shape[1], pick.shape[0]
    cur[:] = 0.0
    count = 0
    for i0 in range(0, n_obs, size):
        i1 = min(i0 + size, n_obs)
        if sampled:
            count += _block_assign(
                xt, fixed, i0, i1, r, coef, mu, fac, key, z[r], lam[r, i0:i1], work
            )
            _block_move_terms(pick, i1 - i0, lq, cur, acc)
        else:
            count += _block_assign(xt, fixed, i0, i1, r, coef, mu, fac, key, z[r], vbuf, work)
            _block_draw(xt, i0, i1 - i0, r, coef, mu, gkey, state, small, vbuf, lam[r, i0:i1], work)
    return count


@njit(inline="always")
def _draw_weights(xt, r, z, coef, mu, key, state, lam, small, work):
    """Draw every point's precision weight given its component, block by block (nu sampled).

    ``lam[r]`` holds ``c m`` of each point's component on entry.
    """
    pick = work[0][4]
    n_obs, size = xt.shape[1], pick.shape[0]
    for i0 in range(0, n_obs, size):
        i1 = min(i0 + size, n_obs)
        zb, lamb = z[r, i0:i1], lam[r, i0:i1]
        for b in range(i1 - i0):
            pick[b] = zb[b]
        _block_draw(xt, i0, i1 - i0, r, coef, mu, key, state, small, lamb, lamb, work)


@njit(inline="always")
def _totals(r, work, sums):
    """Write replica r's sums (the lanes' totals) into ``sums``."""
    cnt, wsum, s1, s2, sll = sums
    acc = work[2][3]
    mom_1, mom_2, out = work[3][1:]
    lane_totals(acc, out)
    k, d = mom_1.shape[0], mom_1.shape[1]
    for j in range(k):
        cnt[r, j], wsum[r, j], sll[r, j] = out[0, j], out[1, j], out[4, j]
        s1[r, j, 0], s2[r, j, 0, 0] = out[2, j], out[3, j]
        for row in range(1, d):
            s1[r, j, row] = mom_1[j, row].sum()
            for col in range(row + 1):
                s2[r, j, row, col] = mom_2[j, row, col].sum()
                s2[r, j, col, row] = s2[r, j, row, col]


@njit(inline="always")
def _sweep_work(k, d):
    """Scratch of :func:`mvt_sweep`.

    The picks'; the Mahalanobis distances, log terms, the nu move's lanes and ``c m``; the
    weights' draws (components' values, feature differences, Gamma scratch, univariate lanes,
    Marsaglia-Tsang's constants); the other features' lanes and the totals; nu's scratch and
    the counts.
    """
    size = _block_size(k, d)
    pick_work = (
        np.empty((2 * k, size)),  # rows k..2k-1: block_pick's scratch
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size, dtype=np.int64),
    )
    logits = (np.empty((k, size)), np.empty((k, size)), np.empty((k, size)), np.empty(size))
    dif = np.empty((d, size))
    sel = (np.empty(size), dif[0], np.empty(size), np.empty(size), np.empty(size))
    draw = (np.empty(size), np.empty(size), np.empty(size), np.empty(size))
    weights = (sel, dif, draw, np.empty((7, k, size)), np.empty((3, k)))
    moments = (
        np.empty((d, size)),
        np.empty((k, d, size)),
        np.empty((k, d, d, size)),
        np.empty((5, k)),
    )
    nu_work = (np.empty((k + 2, size)), np.empty(k), np.empty(k), np.empty(k), np.empty(k))
    return pick_work, logits, weights, moments, nu_work, np.empty(k)


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def mvt_sweep(xt, fixed, coef, mu, fac, keys, state, z, lam, sums, changed, nu, nu_model, nu_acc):
    """Draw every replica's assignments, degrees of freedom and precision weights.

    Per replica, as the univariate :func:`mixtures._kernels_t.sweep_t`: the assignments
    with the weights summed out; then, if nu is sampled, its collapsed Metropolis moves
    (the current log terms from the assignment pass) and the weights in a second pass;
    with nu fixed, each block's weights right after its assignments (one pass).

    Parameters
    ----------
    xt : ndarray of shape (d, n_obs)
        The data by feature (contiguous rows).
    fixed : ndarray of int32, shape (n_obs,)
        Known labels; -1 where unknown.
    coef : tuple of 4 ndarrays of shape (n_rep, k)
        ``(a, c, h, e)`` (:func:`mvt_prepare`): replica r's log-weight of component j at x is
        ``a - e log(h + c m)``, m the Mahalanobis distance under the precision; ``h = nu / 2``,
        ``e = h + beta d / 2``, ``c = beta / 2``. ``h`` and ``e`` are updated with nu.
    mu : ndarray of shape (n_rep, k, d)
    fac : ndarray of shape (n_rep, k, d, d)
        Lower factors F of the precisions, Lambda = F F^T.
    keys : ndarray of uint64, shape (n_rep,)
        This sweep's key of each replica (the counter-based uniforms).
    state : ndarray of uint64, shape (n_rep,)
        The replicas' random streams (nu's moves, the Gamma draws' key, rejected candidates).
    z : ndarray of int8 or int32, shape (n_rep, n_obs)
        Assignments, overwritten.
    lam : ndarray of shape (n_rep, n_obs)
        Precision weights, overwritten.
    sums : tuple
        Output ``(counts, wsum, s1, s2, sum_loglam)`` of shapes (n_rep, k), (n_rep, k),
        (n_rep, k, d), (n_rep, k, d, d), (n_rep, k): per component the count and the sums of
        lambda, lambda (x - mu), lambda (x - mu)(x - mu)^T and log lambda (current means).
    changed : ndarray of int64, shape (n_rep,)
        Output: how many assignments changed.
    nu : ndarray of shape (n_rep, k)
        Degrees of freedom, updated in place when sampled.
    nu_model : TConfig or tuple
        ``(nu_code, nu_p0, nu_p1)`` (:class:`mixtures._kernels_t.TConfig`; -1: nu fixed).
    nu_acc : ndarray of shape (n_rep,)
        Output: the fraction of nu moves accepted.
    """
    k, d = mu.shape[1], mu.shape[2]
    work = _sweep_work(k, d)
    cur, (acc, mt), (nu_work, counts) = work[1][2], work[2][3:], work[4:]
    mom_1, mom_2 = work[3][1], work[3][2]
    for r in range(mu.shape[0]):
        clear_lanes(acc)
        mom_1[:] = 0.0
        mom_2[:] = 0.0
        sampled = nu_model[0] >= 0
        gkey = keys[r] if sampled else next_bits(state, r)  # nu fixed: the weights' key
        small = mt_constants(r, coef[3], mt)
        changed[r] = _assign_mvt(
            xt, fixed, r, coef, mu, fac, keys[r], gkey, state, z, lam, small, sampled, work
        )
        if sampled:  # lam[r] holds each point's c m until the weights are drawn
            for j in range(k):
                counts[j] = acc[0, j].sum()
                nu_work[1][j] = cur[j].sum()
            clear_lanes(acc)
            nu_acc[r] = nu_moves(r, z, lam[r], counts, coef, nu, nu_model, state, nu_work)
            key = next_bits(state, r)
            small = mt_constants(r, coef[3], mt)
            _draw_weights(xt, r, z, coef, mu, key, state, lam, small, work)
        _totals(r, work, sums)


@njit(cache=True, nogil=True)
def mvt_prepare(chain, nu, coef, keys):
    """Set the sweep's coefficients ``(a, c, h, e)`` of every replica, and its random keys.

    ``chain``: an :class:`mixtures._kernels.MvChainState`; ``nu`` (n_rep, k); ``coef`` and
    ``keys`` as in :func:`mvt_sweep`. ``a = log w + beta / 2 log |Lambda| + lgamma(e) -
    lgamma(h) + h log h`` (the constant -beta d / 2 log 2 pi, common to all j, left out).
    """
    logw, logdet, state, temp_of, betas = (
        chain.logw,
        chain.logdet,
        chain.state,
        chain.temp_of,
        chain.betas,
    )
    a, c, h, e = coef
    n_rep, k = logw.shape
    d = chain.mu.shape[2]
    for r in range(n_rep):
        beta = betas[temp_of[r]]
        for j in range(k):
            hj = 0.5 * nu[r, j]
            ej = hj + 0.5 * beta * d
            h[r, j], e[r, j], c[r, j] = hj, ej, 0.5 * beta
            a[r, j] = (
                logw[r, j]
                + 0.5 * beta * logdet[r, j]
                + math.lgamma(ej)
                - math.lgamma(hj)
                + hj * math.log(hj)
            )
        keys[r] = next_bits(state, r)


@njit(inline="always")  # called per replica: no call with the state tuples
def _mvt_update(r, beta, config, chain, sums, work):
    """Draw replica r's weights, means and precisions from the weighted sums.

    Returns the augmented complete-data log-likelihood ``sum_i log N(x_i | mu, Sigma /
    lambda_i)`` (for the replica exchange and the records): :func:`mv_update`'s, plus the
    weights' ``d / 2 sum log lambda_i``.
    """
    cnt, wsum, s1, s2, sll = sums
    ll = mv_update(r, beta, config, chain, cnt, wsum, s1, s2, work)
    for j in range(cnt.shape[1]):
        ll += 0.5 * chain.mu.shape[2] * sll[r, j]
    return ll


@njit(cache=True, nogil=True)
def _after_sweep(it, tune, config, chain, t_state, out, t_out, stats, sums, changed, nu_acc):
    """Parameter updates, replica exchange and recording after the sweep of iteration `it`."""
    n_rep, k, d = chain.mu.shape
    loglik = np.empty(n_rep)
    work = mv_work(k, d)
    for r in range(n_rep):
        beta = chain.betas[chain.temp_of[r]]
        loglik[r] = _mvt_update(r, beta, config, chain, sums, work)
    dd = it - tune
    exchange(it, dd, chain, loglik, changed, stats)
    if dd >= 0:
        mv_record(dd, config, chain, out, stats, loglik)
        record_t(dd, config, chain, t_state, t_out, nu_acc)


@njit(cache=True, nogil=True)
def mvt_run(x, it0, it1, tune, config, t_config, chain, t_state, out, t_out, stats):
    """Run iterations it0..it1-1 of every replica of a multivariate t mixture.

    As :func:`mixtures._kernels.mv_run` (same `config`, `chain`, `out` and `stats`), with
    ``t_config``: a :class:`mixtures._kernels_t.TConfig` (nu's prior, or nu fixed);
    ``t_state``: a :class:`mixtures._kernels_t.TState` (nu and the precision weights, updated
    in place); ``t_out = (nu, lam, nu_accept)``: their records (lam only with the
    assignments).
    """
    nu, lam = t_state.nu, t_state.lam
    n_rep, k, d = chain.mu.shape
    xt = np.ascontiguousarray(x.T)
    coef = (np.empty((n_rep, k)), np.empty((n_rep, k)), np.empty((n_rep, k)), np.empty((n_rep, k)))
    keys = np.empty(n_rep, dtype=np.uint64)
    sums = (
        np.zeros((n_rep, k)),
        np.zeros((n_rep, k)),
        np.zeros((n_rep, k, d)),
        np.zeros((n_rep, k, d, d)),
        np.zeros((n_rep, k)),
    )
    changed = np.zeros(n_rep, dtype=np.int64)
    nu_acc = np.zeros(n_rep)
    for it in range(it0, it1):
        mvt_prepare(chain, nu, coef, keys)
        mvt_sweep(
            xt, chain.fixed, coef, chain.mu, chain.fac, keys, chain.state, chain.z, lam, sums,
            changed, nu, t_config, nu_acc,
        )  # fmt: skip
        _after_sweep(it, tune, config, chain, t_state, out, t_out, stats, sums, changed, nu_acc)
