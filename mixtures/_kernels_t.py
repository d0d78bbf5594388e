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
   :math:`\sum \lambda d^2` (``d`` centred on the current means) and :math:`\sum \log\lambda`;
2. the Normal family's exact updates with the weighted statistics (:mod:`mixtures._kernels`):
   weights :math:`\text{Dirichlet}(a + n)`; means Normal with precision
   :math:`1/s_0^2 + \beta \sum\lambda / \sigma^2`; the sds' Metropolis move on the counts and
   the weighted sum of squares;
3. for sampled :math:`\nu_j`: random-walk Metropolis on :math:`\log \nu_j` given the weights
   of the component's points (``_NU_STEPS`` moves). Its conditional needs only
   :math:`(n_j, \sum\lambda, \sum\log\lambda)`, so a move costs O(1), not a pass over the
   data; the step is :math:`\min(1, 2.4 / \sqrt{0.6 n_j + 1})`, the asymptotic sd of
   :math:`\log\nu` (its Fisher information per point is 0.5-0.75 for every
   :math:`\nu`) scaled by 2.4, a function of :math:`n_j` alone so the proposal is symmetric.
   A slice sampler would need no step, but its number of evaluations varies per move; at O(1)
   per evaluation both are cheap and the Metropolis move keeps the random stream's use fixed;
4. replica exchange on the augmented complete-data log-likelihood.

The logits use :func:`log`, a branch-free logarithm (plain arithmetic on the bits, so the
block loops vectorise as the Normal sweep's :func:`mixtures._kernels.exp` does).

Numba's disk cache checks only this file: after changing a function of
:mod:`mixtures._kernels` that these kernels call, touch this file too.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mixtures._kernels import (
    BLOCK,
    LOG_2PI,
    as_float,
    as_int,
    block_pick,
    exchange,
    log_gamma,
    next_bits,
    normal,
    scale_logpdf,
    uniform,
    update_means,
    update_sigma,
    update_weights,
)

__all__ = ["log", "log_array", "run_t", "sweep_t"]

_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_SQRT2 = 1.4142135623730951
_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE = np.int64(0x3FF0000000000000)
_NU_STEPS = 4


@njit(inline="always", fastmath={"contract"})
def log(x):
    """Return ln x for a positive, finite, normal float64, in plain arithmetic (vectorises).

    ``x = m 2**e`` with ``m`` in [sqrt(1/2), sqrt(2)) read off the bits; ``ln m = 2
    atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| <= 0.1716``, by its odd series to
    ``s**21`` (truncation < 1e-17 relative); ``e ln 2`` with ln 2 split in two. Zero,
    subnormal, negative, inf and nan arguments are not handled (the kernels never pass them).
    """
    bits = as_int(x)
    e = (bits >> 52) - 1023
    m = as_float((bits & _MANTISSA) | _ONE)  # in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    ef = np.float64(e + (1 if big else 0))
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


@njit(cache=True, nogil=True, fastmath={"contract"})
def log_array(x, out):
    """Write :func:`log` of every value of the 1-D array `x` into `out` (a vectorised loop)."""
    for i in range(x.shape[0]):
        out[i] = log(x[i])


@njit(inline="always")
def _block_logits(yb, r, a, c, h, e, mu, lp, top):
    """Log-weights ``lp[j, b] = a_j - e_j log(h_j + c_j d**2)`` of a block; ``top`` their max."""
    k, m = a.shape[1], yb.shape[0]
    for j in range(k):
        aj, cj, hj, ej, mj = a[r, j], c[r, j], h[r, j], e[r, j], mu[r, j]
        row = lp[j]
        for b in range(m):
            d = yb[b] - mj
            row[b] = aj - ej * log(hj + cj * d * d)
    row = lp[0]
    for b in range(m):
        top[b] = row[b]
    for j in range(1, k):
        row = lp[j]
        for b in range(m):
            top[b] = max(top[b], row[b])


@njit(inline="always")
def _block_weights(yb, i0, r, c, h, e, mu, pick, state, lam, sums):
    """Draw the block's precision weights given their components; add to the sums.

    ``sums[0..4, j]``: count, sum of lambda, of lambda d, of lambda d**2, of log lambda.
    """
    for b in range(yb.shape[0]):
        p = pick[b]
        d = yb[b] - mu[r, p]
        rate = h[r, p] + c[r, p] * d * d
        loglam = log_gamma(e[r, p], state, r) - math.log(rate)
        w = math.exp(loglam)
        lam[r, i0 + b] = w
        sums[0, p] += 1.0
        sums[1, p] += w
        sums[2, p] += w * d
        sums[3, p] += w * d * d
        sums[4, p] += loglam


@njit(cache=True, nogil=True, fastmath={"contract"})
def sweep_t(y, fixed, coef, mu, keys, state, z, lam, sums, changed):
    """Draw every replica's assignments and precision weights from their exact conditionals.

    Parameters
    ----------
    y : ndarray of shape (n_obs,)
    fixed : ndarray of int32, shape (n_obs,)
        Known labels; -1 where unknown.
    coef : tuple of 4 ndarrays of shape (n_rep, k)
        ``(a, c, h, e)``: replica r's log-weight of component j at y is
        ``a - e log(h + c (y - mu)**2)``, with ``h = nu / 2``, ``e = h + beta / 2``,
        ``c = beta / (2 sd**2)`` and ``a = log w - beta log sd + lgamma(e) - lgamma(h) +
        h log h``; the weight's conditional is Gamma(e, h + c (y - mu)**2).
    mu : ndarray of shape (n_rep, k)
    keys : ndarray of uint64, shape (n_rep,)
        This sweep's key of each replica (the counter-based uniforms of the picks).
    state : ndarray of uint64, shape (n_rep,)
        The replicas' random streams (the Gamma draws).
    z : ndarray of int8 or int32, shape (n_rep, n_obs)
        Assignments, overwritten.
    lam : ndarray of shape (n_rep, n_obs)
        Precision weights, overwritten.
    sums : ndarray of shape (n_rep, 5, k)
        Output: per component the count, and the sums of lambda, lambda d, lambda d**2 and
        log lambda, ``d = y - mu``.
    changed : ndarray of int64, shape (n_rep,)
        Output: how many assignments changed.
    """
    a, c, h, e = coef
    k, n_obs = a.shape[1], y.shape[0]
    lp = np.empty((k, BLOCK))
    top, tot, u = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
    pick = np.empty(BLOCK, dtype=np.int64)
    sums[:] = 0.0
    for r in range(a.shape[0]):
        count = 0
        for i0 in range(0, n_obs, BLOCK):
            i1 = min(i0 + BLOCK, n_obs)
            yb = y[i0:i1]
            _block_logits(yb, r, a, c, h, e, mu, lp, top)
            count += block_pick(fixed[i0:i1], z[r, i0:i1], i0, keys[r], lp, top, tot, u, pick)
            _block_weights(yb, i0, r, c, h, e, mu, pick, state, lam, sums[r])
        changed[r] = count


@njit(cache=True, nogil=True)
def _prepare_t(logw, sd, nu, state, temp_of, betas, coef, keys):
    """Set the sweep's coefficients ``(a, c, h, e)`` of every replica, and its random keys."""
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
def _nu_logpost(nu, n, w_sum, l_sum, code, p0, p1):
    """Log conditional of log nu given a component's weights (prior, Gamma(nu/2, nu/2)^n, Jacobian).

    ``n``, ``w_sum``, ``l_sum``: the component's count, sum of weights and sum of log weights.
    """
    h = 0.5 * nu
    prior = scale_logpdf(code, nu, p0, p1)
    return (
        prior
        + n * (h * math.log(h) - math.lgamma(h))
        + (h - 1.0) * l_sum
        - h * w_sum
        + math.log(nu)
    )


@njit
def update_nu(r, nu, sums, code, p0, p1, state):
    """Random-walk Metropolis on each log nu_j of replica r; return the fraction accepted."""
    k = nu.shape[1]
    accepted = 0.0
    for j in range(k):
        n, w_sum, l_sum = sums[0, j], sums[1, j], sums[4, j]
        step = min(1.0, 2.4 / math.sqrt(0.6 * n + 1.0))
        cur = nu[r, j]
        cur_lp = _nu_logpost(cur, n, w_sum, l_sum, code, p0[j], p1[j])
        for _ in range(_NU_STEPS):
            prop = cur * math.exp(step * normal(state, r))
            prop_lp = _nu_logpost(prop, n, w_sum, l_sum, code, p0[j], p1[j])
            if math.log(uniform(state, r)) < prop_lp - cur_lp:
                cur, cur_lp = prop, prop_lp
                accepted += 1.0
        nu[r, j] = cur
    return accepted / (k * _NU_STEPS)


@njit(cache=True, nogil=True)
def _after_sweep_t(it, tune, model, t_model, chain, t_state, out, t_out, stats, sums, changed):
    """Parameter updates, replica exchange and recording after the sweep of iteration `it`.

    Returns False if an sd fell below the collapse threshold.
    """
    prior_a, m0, s0, code, p0, p1, flags, floor, collapse_at = model
    nu_code, nu_p0, nu_p1 = t_model
    logw, mu, sd, z, state = chain[0], chain[1], chain[2], chain[3], chain[4]
    temp_of, rep_at, betas = chain[6], chain[7], chain[8]
    nu, lam = t_state
    out_w, out_mu, out_sd, out_z = out
    out_nu, out_lam, st_nuacc = t_out
    st_changed, st_cll, st_tll, st_swap, st_sigacc = stats
    n_rep, k = mu.shape
    chains, n_temps = rep_at.shape
    free_means, free_sigma, shared, ordered, store_z = (
        flags[0],
        flags[1],
        flags[2],
        flags[3],
        flags[4],
    )
    counts, wsum, wsum1 = sums[:, 0, :], sums[:, 1, :], sums[:, 2, :]
    loglik, sigacc, nuacc = np.empty(n_rep), np.zeros(n_rep), np.zeros(n_rep)
    ss, mean, std, prop, logg = np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k)
    for r in range(n_rep):
        beta = betas[temp_of[r]]
        update_weights(r, logw, prior_a, counts, state, logg)
        for j in range(k):
            ss[j] = mu[r, j]  # the old means, for now
        if free_means:
            update_means(r, beta, mu, sd, wsum, wsum1, m0, s0, ordered, state, mean, std, prop)
        for j in range(k):
            shift = ss[j] - mu[r, j]
            ss[j] = sums[r, 3, j] + 2.0 * shift * sums[r, 2, j] + sums[r, 1, j] * shift * shift
        if free_sigma:
            sigacc[r] = update_sigma(r, beta, sd, counts, ss, code, p0, p1, shared, floor, state)
            for j in range(k):
                if sd[r, j] < collapse_at:
                    return False
        if nu_code >= 0:
            nuacc[r] = update_nu(r, nu, sums[r], nu_code, nu_p0, nu_p1, state)
        ll = 0.0
        for j in range(k):
            ll += 0.5 * sums[r, 4, j] - ss[j] / (2.0 * sd[r, j] ** 2)
            ll -= counts[r, j] * (math.log(sd[r, j]) + 0.5 * LOG_2PI)
        loglik[r] = ll
    d = it - tune
    exchange(it, d, chain, loglik, changed, st_changed, st_tll, st_swap)
    if d < 0:
        return True
    for ch in range(chains):
        cold = rep_at[ch, n_temps - 1]
        for j in range(k):
            out_w[ch, d, j] = math.exp(logw[cold, j])
            out_mu[ch, d, j] = mu[cold, j]
            out_sd[ch, d, j] = sd[cold, j]
            out_nu[ch, d, j] = nu[cold, j]
        st_cll[ch, d] = loglik[cold]
        st_sigacc[ch, d] = sigacc[cold]
        st_nuacc[ch, d] = nuacc[cold]
        if store_z:
            for i in range(z.shape[1]):
                out_z[ch, d, i] = z[cold, i]
                out_lam[ch, d, i] = lam[cold, i]
    return True


@njit(cache=True, nogil=True)
def run_t(y, it0, it1, tune, model, t_model, chain, t_state, out, t_out, stats):
    """Run iterations it0..it1-1 of every replica of a t mixture; record from `tune` on.

    As :func:`mixtures._kernels.run` (same `model`, `chain`, `out` and `stats`), with
    ``t_model = (nu_code, nu_p0, nu_p1)``: the scale family of the nu prior
    (:func:`mixtures._kernels.scale_logpdf`; -1: nu fixed) and its parameters (k,);
    ``t_state = (nu, lam)``: degrees of freedom (n_rep, k) and precision weights
    (n_rep, n_obs); ``t_out = (nu, lam, nu_accept)``: their records (lam only with the
    assignments). Returns the iteration at which an sd collapsed, or -1.
    """
    logw, mu, sd, z, state = chain[0], chain[1], chain[2], chain[3], chain[4]
    temp_of, betas = chain[6], chain[8]
    nu, lam = t_state
    n_rep, k = mu.shape
    coef = (np.empty((n_rep, k)), np.empty((n_rep, k)), np.empty((n_rep, k)), np.empty((n_rep, k)))
    keys = np.empty(n_rep, dtype=np.uint64)
    sums = np.zeros((n_rep, 5, k))
    changed = np.zeros(n_rep, dtype=np.int64)
    for it in range(it0, it1):
        _prepare_t(logw, sd, nu, state, temp_of, betas, coef, keys)
        sweep_t(y, chain[11], coef, mu, keys, state, z, lam, sums, changed)
        if not _after_sweep_t(
            it, tune, model, t_model, chain, t_state, out, t_out, stats, sums, changed
        ):
            return it
    return -1
