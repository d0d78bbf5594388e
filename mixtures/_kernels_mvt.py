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

2. if nu is sampled, the univariate t's move (:func:`mixtures._kernels_t.update_nu`):
   random-walk Metropolis on :math:`\log \nu_j` given the assignments, the weights summed
   out (the collapsed multivariate t likelihood of the component's rows);
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
kernel (:mod:`mixtures._kernels_t`, whose logarithm, Gamma draws and nu move this module
reuses). The loops go over blocks of :data:`MVT_BLOCK` points in struct-of-arrays layout
(features in rows), plain arithmetic and selects, so they vectorise.

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
    exp,
    log_gamma,
    mv_record,
    mv_update,
    mv_work,
    next_bits,
)
from mixtures._kernels_t import block_gamma, log, record_t, update_nu

__all__ = ["MVT_BLOCK", "mvt_prepare", "mvt_run", "mvt_sweep"]

#: Points per block of the sweep.
MVT_BLOCK = MV_BLOCK


@njit(inline="always")
def _assign_mvt(xt, fixed, r, coef, mu, fac, key, z, v, counts, work):
    """Draw replica r's assignments (weights summed out); return how many changed.

    Sets ``v[i] = beta m_ij / 2`` of each point's new component j and ``counts`` (k,).
    """
    a, c, h, e = coef
    lp, top, tot, u, pick, maha = work
    k, n_obs = a.shape[1], xt.shape[1]
    count = 0
    for j in range(k):
        counts[j] = 0.0
    for i0 in range(0, n_obs, MVT_BLOCK):
        i1 = min(i0 + MVT_BLOCK, n_obs)
        m = i1 - i0
        block_maha(xt, i0, i1, r, mu, fac, maha, u)
        for j in range(k):
            aj, cj, hj, ej = a[r, j], c[r, j], h[r, j], e[r, j]
            row, mr = lp[j], maha[j]
            for b in range(m):
                row[b] = aj - ej * log(hj + cj * mr[b])
        block_max(lp, top, k, m)
        count += block_pick(fixed[i0:i1], z[r, i0:i1], i0, key, lp, top, tot, u, pick)
        vb = v[i0:i1]
        for b in range(m):
            vb[b] = 0.0
        for j in range(k):
            cj, mr = c[r, j], maha[j]
            for b in range(m):
                vb[b] = cj * mr[b] if pick[b] == j else vb[b]
        for b in range(m):
            counts[pick[b]] += 1.0
    return count


@njit(inline="always")
def _block_weights(xt, s, zb, vb, r, h, e, mu, key, state, lamb, work):
    """Draw a block's precision weights given their components; add to the lane sums.

    ``vb`` holds ``beta m / 2`` of each point's component (a view of ``lamb``'s memory, read
    before it is written). Lanes: ``acc_s[0..2, j, b]`` count, sum of lambda, of log lambda;
    ``acc_1[j, row, b]`` sum of lambda (x - mu)_row; ``acc_2[j, row, col, b]`` (col <= row)
    sum of lambda (x - mu)_row (x - mu)_col.
    """
    eb, hb, logg, ok, dif, acc_s, acc_1, acc_2 = work
    k, d, m = mu.shape[1], mu.shape[2], zb.shape[0]
    for b in range(m):
        eb[b], hb[b] = 1.0, 1.0
    for row in range(d):
        dr, xr = dif[row], xt[row, s : s + m]
        for b in range(m):
            dr[b] = 0.0
        for j in range(k):
            mj = mu[r, j, row]
            for b in range(m):
                dr[b] = xr[b] - mj if zb[b] == j else dr[b]
    for j in range(k):
        ej, hj = e[r, j], h[r, j]
        for b in range(m):
            hit = zb[b] == j
            eb[b] = ej if hit else eb[b]
            hb[b] = hj if hit else hb[b]
    block_gamma(eb[:m], key, s, logg, ok)
    for b in range(m):
        if not ok[b]:  # rare: redraw exactly from the replica's stream
            logg[b] = log_gamma(eb[b], state, r)
    for b in range(m):
        loglam = logg[b] - log(hb[b] + vb[b])
        lamb[b] = exp(loglam)
        logg[b] = loglam
    for j in range(k):
        cn, cw, cl = acc_s[0, j], acc_s[1, j], acc_s[2, j]
        for b in range(m):
            hit = zb[b] == j
            cn[b] += 1.0 if hit else 0.0
            cw[b] += lamb[b] if hit else 0.0
            cl[b] += logg[b] if hit else 0.0
        for row in range(d):
            c1, dr = acc_1[j, row], dif[row]
            for b in range(m):
                c1[b] += lamb[b] * dr[b] if zb[b] == j else 0.0
            for col in range(row + 1):
                c2, dc = acc_2[j, row, col], dif[col]
                for b in range(m):
                    c2[b] += lamb[b] * dr[b] * dc[b] if zb[b] == j else 0.0


@njit(inline="always")
def _draw_weights(xt, r, z, v, h, e, mu, key, state, lam, sums, work):
    """Draw replica r's precision weights block by block; write its sums into ``sums``."""
    cnt, wsum, s1, s2, sll = sums
    acc_s, acc_1, acc_2 = work[5], work[6], work[7]
    k, d = mu.shape[1], mu.shape[2]
    acc_s[:] = 0.0
    acc_1[:] = 0.0
    acc_2[:] = 0.0
    n_obs = xt.shape[1]
    for i0 in range(0, n_obs, MVT_BLOCK):
        i1 = min(i0 + MVT_BLOCK, n_obs)
        _block_weights(xt, i0, z[r, i0:i1], v[i0:i1], r, h, e, mu, key, state, lam[r, i0:i1], work)
    for j in range(k):
        cnt[r, j], wsum[r, j], sll[r, j] = acc_s[0, j].sum(), acc_s[1, j].sum(), acc_s[2, j].sum()
        for row in range(d):
            s1[r, j, row] = acc_1[j, row].sum()
            for col in range(row + 1):
                s2[r, j, row, col] = acc_2[j, row, col].sum()
                s2[r, j, col, row] = s2[r, j, row, col]


@njit(inline="always")
def _sweep_work(k, d):
    """Scratch of :func:`mvt_sweep`: the picks', nu's and the weights' draws, and the counts."""
    size = MVT_BLOCK
    pick_work = (
        np.empty((2 * k, size)),  # rows k..2k-1: block_pick's scratch
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size, dtype=np.int64),
        np.empty((k, size)),
    )
    nu_work = (np.empty((k + 2, size)), np.empty(k), np.empty(k), np.empty(k), np.empty(k))
    draw_work = (
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size, dtype=np.bool_),
        np.empty((d, size)),
        np.empty((3, k, size)),
        np.empty((k, d, size)),
        np.empty((k, d, d, size)),
    )
    return pick_work, nu_work, draw_work, np.empty(k)


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def mvt_sweep(xt, fixed, coef, mu, fac, keys, state, z, lam, sums, changed, nu, nu_model, nu_acc):
    """Draw every replica's assignments, degrees of freedom and precision weights.

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
        The replicas' random streams (nu's moves, rejected Gamma candidates).
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
    a, c, h, e = coef
    k, d = mu.shape[1], mu.shape[2]
    pick_work, nu_work, draw_work, counts = _sweep_work(k, d)
    for r in range(a.shape[0]):
        v = lam[r]  # holds beta m / 2 of each point's component until the weights are drawn
        changed[r] = _assign_mvt(xt, fixed, r, coef, mu, fac, keys[r], z, v, counts, pick_work)
        if nu_model[0] >= 0:
            nu_acc[r] = update_nu(r, z, v, counts, coef, nu, nu_model, state, nu_work)
        key = next_bits(state, r)
        _draw_weights(xt, r, z, v, h, e, mu, key, state, lam, sums, draw_work)


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
