"""Numba kernels: the Gibbs engine's whole iteration, and the scale priors' log-densities.

One iteration of replica r (chain x temperature) is a fused pass over the data that draws every
assignment from its exact (tempered) conditional and accumulates counts and the sums of
``d`` and ``d**2``, ``d = y - mu_old[z]`` (centred on the current means, so the sum of squares
about the new means has no cancellation); then exact draws of the weights and means, a
Metropolis move of the sds, and, per chain, replica exchange between adjacent temperatures.

Random numbers: every replica (and every chain's swap move) owns a SplitMix64 stream in a
``uint64`` state, so results do not depend on threads. The sweep's uniforms are counter-based
(SplitMix64 of a per-sweep key and the observation index), so the serial and the threaded sweep
give identical draws. Kernels are cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, vectorize

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO53 = 1.0 / 9007199254740992.0
_JOINT_TRIES = 5
_LOG_2PI = math.log(2.0 * math.pi)
_RW_STEP = 0.7


def _scale_logpdf(code, x, p0, p1):
    """Unnormalised log-density of scale family `code` at `x` > 0 (parameters p0, p1).

    One definition, compiled twice: :func:`scale_logpdf` for the Gibbs kernels below and
    :func:`scale_logpdf_ufunc` for NumPy arrays (:class:`mixtures.spec.PriorFamily`). It lives
    in this file because Numba's on-disk cache checks only the file of a cached function, so a
    kernel and everything it calls must change together.
    """
    if not x > 0.0:
        return -np.inf
    if code == 0:  # HalfNormal(sigma)
        return -0.5 * (x / p0) ** 2
    if code == 1:  # HalfCauchy(beta)
        return -np.log1p((x / p0) ** 2)
    if code == 2:  # HalfStudentT(nu, sigma)
        return -0.5 * (p0 + 1.0) * np.log1p((x / p1) ** 2 / p0)
    if code == 3:  # Exponential(lam)
        return -p0 * x
    if code == 4:  # Gamma(alpha, beta)
        return (p0 - 1.0) * np.log(x) - p1 * x
    if code == 5:  # InverseGamma(alpha, beta)
        return -(p0 + 1.0) * np.log(x) - p1 / x
    if code == 6:  # LogNormal(mu, sigma)
        return -np.log(x) - 0.5 * ((np.log(x) - p0) / p1) ** 2
    if code == 7:  # Uniform(lower, upper)
        return 0.0 if p0 < x < p1 else -np.inf
    return np.nan


scale_logpdf = njit(cache=True)(_scale_logpdf)
scale_logpdf_ufunc = vectorize(["float64(int64, float64, float64, float64)"], cache=True)(
    _scale_logpdf
)


@njit(inline="always")
def _mix(x):
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@njit(inline="always")
def _counter_uniform(key, i):
    """Return a uniform on [0, 1) from (key, i): the sweep's counter-based draws."""
    return np.float64(_mix(key + np.uint64(i + 1) * _GOLDEN) >> _S11) * _TWO53


@njit(inline="always")
def _next(state, r):
    """Advance stream r of `state`; return 64 random bits."""
    state[r] += _GOLDEN
    return _mix(state[r])


@njit(inline="always")
def _uniform(state, r):
    """Return a uniform on (0, 1) from stream r."""
    return (np.float64(_next(state, r) >> _S11) + 0.5) * _TWO53


@njit(inline="always")
def _normal(state, r):
    """Return a standard Normal (Box-Muller) from stream r."""
    u1 = _uniform(state, r)
    u2 = _uniform(state, r)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit
def _log_gamma(shape, state, r):
    """Log of a Gamma(shape, 1) draw (Marsaglia-Tsang; exact in logs for tiny shapes)."""
    boost = 0.0
    if shape < 1.0:
        boost = math.log(_uniform(state, r)) / shape
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:  # acceptance >= 0.95 per try
        x = _normal(state, r)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(_uniform(state, r)) < 0.5 * x * x + d - d * v + d * math.log(v):
            return math.log(d * v) + boost


@njit(inline="always")
def _sweep_range(y, lo, hi, r, a, c, mu, key, z, n, s1, s2, logp):
    """Sweep observations lo..hi-1 of replica r; return how many assignments changed."""
    k = a.shape[1]
    changed = 0
    for i in range(lo, hi):
        yi = y[i]
        top = -np.inf
        for j in range(k):
            d = yi - mu[r, j]
            v = a[r, j] + c[r, j] * d * d
            logp[j] = v
            if v > top:
                top = v
        total = 0.0
        for j in range(k):
            total += math.exp(logp[j] - top)
            logp[j] = total
        u = _counter_uniform(key, i) * total
        pick = k - 1
        for j in range(k - 1):
            if u < logp[j]:
                pick = j
                break
        if z[r, i] != pick:
            changed += 1
            z[r, i] = pick
        d = yi - mu[r, pick]
        n[r, pick] += 1.0
        s1[r, pick] += d
        s2[r, pick] += d * d
    return changed


@njit(cache=True, parallel=True, nogil=True)
def _sweep_threads(y, a, c, mu, keys, z, n, s1, s2, changed, n_blocks):
    """Sweep every replica with the observations split into thread blocks."""
    n_rep, k = a.shape
    n_obs = y.shape[0]
    size = (n_obs + n_blocks - 1) // n_blocks
    bn = np.zeros((n_blocks, n_rep, k))
    b1 = np.zeros((n_blocks, n_rep, k))
    b2 = np.zeros((n_blocks, n_rep, k))
    bc = np.zeros((n_blocks, n_rep), dtype=np.int64)
    for b in prange(n_blocks):
        lo = b * size
        hi = min(n_obs, lo + size)
        logp = np.empty(k)
        for r in range(n_rep):
            bc[b, r] = _sweep_range(y, lo, hi, r, a, c, mu, keys[r], z, bn[b], b1[b], b2[b], logp)
    for r in range(n_rep):
        changed[r] = 0
        for b in range(n_blocks):
            changed[r] += bc[b, r]
        for j in range(k):
            n[r, j] = 0.0
            s1[r, j] = 0.0
            s2[r, j] = 0.0
            for b in range(n_blocks):
                n[r, j] += bn[b, r, j]
                s1[r, j] += b1[b, r, j]
                s2[r, j] += b2[b, r, j]


@njit
def _update_means(r, beta, mu, sd, n, s1, m0, s0, ordered, state, mean, std, prop):
    """Exact conditional draw of replica r's means (ordered: joint rejection, then MH)."""
    k = mu.shape[1]
    for j in range(k):
        prec = 1.0 / (s0[j] * s0[j]) + beta * n[r, j] / (sd[r, j] * sd[r, j])
        mean[j] = (
            m0[j] / (s0[j] * s0[j]) + beta * (s1[r, j] + n[r, j] * mu[r, j]) / (sd[r, j] * sd[r, j])
        ) / prec
        std[j] = 1.0 / math.sqrt(prec)
    for _ in range(_JOINT_TRIES if ordered else 1):
        ok = True
        for j in range(k):
            prop[j] = mean[j] + std[j] * _normal(state, r)
            if ordered and j > 0 and prop[j] <= prop[j - 1]:
                ok = False
        if ok:
            for j in range(k):
                mu[r, j] = prop[j]
            return
    # one-at-a-time random-walk Metropolis within the neighbours: leaves the ordered
    # conditional invariant, in bounded time
    for j in range(k):
        x = mu[r, j] + std[j] * _normal(state, r)
        if (j > 0 and x <= mu[r, j - 1]) or (j < k - 1 and x >= mu[r, j + 1]):
            continue
        zx = (x - mean[j]) / std[j]
        zc = (mu[r, j] - mean[j]) / std[j]
        if math.log(_uniform(state, r)) < 0.5 * (zc * zc - zx * zx):
            mu[r, j] = x


@njit
def _update_sigma(r, beta, sd, n, ss, code, p0, p1, shared, floor, state):
    """Metropolis-within-Gibbs for replica r's sds; returns the fraction accepted."""
    k = sd.shape[1]
    m = 1 if shared else k
    accepted = 0.0
    for j in range(m):
        if shared:
            cnt, sq = 0.0, 0.0
            for i in range(k):
                cnt += n[r, i]
                sq += ss[i]
        else:
            cnt, sq = n[r, j], ss[j]
        bn, bs = beta * cnt, beta * sq
        cur = sd[r, j]
        if bn >= 2.0 and bs > 0.0:
            # independence proposal from the likelihood's Gamma kernel in the precision:
            # accepted with the prior ratio alone
            tau = math.exp(_log_gamma(0.5 * bn - 0.5, state, r)) / (0.5 * bs)
            prop = 1.0 / math.sqrt(tau)
            log_ratio = scale_logpdf(code, prop, p0[j], p1[j]) - scale_logpdf(
                code, cur, p0[j], p1[j]
            )
        else:  # random walk on log sd
            prop = cur * math.exp(_RW_STEP * _normal(state, r))
            log_ratio = scale_logpdf(code, prop, p0[j], p1[j]) - scale_logpdf(
                code, cur, p0[j], p1[j]
            )
            log_ratio += -bn * math.log(prop / cur) - 0.5 * bs * (
                1.0 / (prop * prop) - 1.0 / (cur * cur)
            )
            log_ratio += math.log(prop / cur)
        if prop > floor and math.log(_uniform(state, r)) < log_ratio:
            cur = prop
            accepted += 1.0
        if shared:
            for i in range(k):
                sd[r, i] = cur
        else:
            sd[r, j] = cur
    return accepted / m


@njit(cache=True, nogil=True)
def _prepare(logw, sd, state, temp_of, betas, a, c, keys):
    """Logit coefficients of every replica's sweep, and this sweep's random keys."""
    n_rep, k = sd.shape
    for r in range(n_rep):
        beta = betas[temp_of[r]]
        for j in range(k):
            a[r, j] = logw[r, j] - beta * math.log(sd[r, j])
            c[r, j] = -0.5 * beta / (sd[r, j] * sd[r, j])
        keys[r] = _next(state, r)


@njit(cache=True, nogil=True)
def _sweep_serial(y, a, c, mu, keys, z, n, s1, s2, changed):
    logp = np.empty(a.shape[1])
    for r in range(a.shape[0]):
        for j in range(a.shape[1]):
            n[r, j] = 0.0
            s1[r, j] = 0.0
            s2[r, j] = 0.0
        changed[r] = _sweep_range(y, 0, y.shape[0], r, a, c, mu, keys[r], z, n, s1, s2, logp)


@njit(cache=True, nogil=True)
def _after_sweep(it, tune, model, chain, out, stats, n, s1, s2, changed):
    """Parameter updates, replica exchange and recording, after the sweep of iteration `it`.

    Returns False if an sd fell below the collapse threshold.
    """
    prior_a, m0, s0, code, p0, p1, flags, floor, collapse_at = model
    logw, mu, sd, z, state, swap_state, temp_of, rep_at, betas, swap_tries, swap_accepts = chain
    out_w, out_mu, out_sd, out_z = out
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
    loglik = np.empty(n_rep)
    sigacc = np.zeros(n_rep)
    ss = np.empty(k)
    mean = np.empty(k)
    std = np.empty(k)
    prop = np.empty(k)
    logg = np.empty(k)
    old = np.empty(k)
    for r in range(n_rep):
        beta = betas[temp_of[r]]
        # weights | z ~ Dirichlet(a + n), drawn as normalised log-Gammas
        top = -np.inf
        for j in range(k):
            logg[j] = _log_gamma(prior_a[j] + n[r, j], state, r)
            top = max(top, logg[j])
        total = 0.0
        for j in range(k):
            total += math.exp(logg[j] - top)
        for j in range(k):
            logw[r, j] = logg[j] - top - math.log(total)
        if free_means:
            for j in range(k):
                old[j] = mu[r, j]  # the sums are centred on the old means
            _update_means(r, beta, mu, sd, n, s1, m0, s0, ordered, state, mean, std, prop)
            for j in range(k):
                shift = old[j] - mu[r, j]
                ss[j] = s2[r, j] + 2.0 * shift * s1[r, j] + n[r, j] * shift * shift
        else:
            for j in range(k):
                ss[j] = s2[r, j]
        if free_sigma:
            sigacc[r] = _update_sigma(r, beta, sd, n, ss, code, p0, p1, shared, floor, state)
            for j in range(k):
                if sd[r, j] < collapse_at:
                    return False
        ll = 0.0
        for j in range(k):
            ll -= n[r, j] * (math.log(sd[r, j]) + 0.5 * _LOG_2PI) + ss[j] / (2.0 * sd[r, j] ** 2)
        loglik[r] = ll
    d = it - tune
    # even-odd replica exchange, per chain
    for ch in range(chains):
        cold_before = rep_at[ch, n_temps - 1]
        if d >= 0:
            st_changed[ch, d] = changed[cold_before]
            for t in range(n_temps):
                st_tll[ch, d, t] = loglik[rep_at[ch, t]]
        for t in range(it % 2, n_temps - 1, 2):
            lo_r, hi_r = rep_at[ch, t], rep_at[ch, t + 1]
            log_alpha = (betas[t] - betas[t + 1]) * (loglik[hi_r] - loglik[lo_r])
            ok = math.log(_uniform(swap_state, ch)) < log_alpha
            swap_tries[t] += 1
            if ok:
                swap_accepts[t] += 1
                rep_at[ch, t], rep_at[ch, t + 1] = hi_r, lo_r
                temp_of[hi_r], temp_of[lo_r] = t, t + 1
            if d >= 0:
                st_swap[ch, d, t] = 1.0 if ok else 0.0
        if d >= 0:
            cold = rep_at[ch, n_temps - 1]
            for j in range(k):
                out_w[ch, d, j] = math.exp(logw[cold, j])
                out_mu[ch, d, j] = mu[cold, j]
                out_sd[ch, d, j] = sd[cold, j]
            st_cll[ch, d] = loglik[cold]
            st_sigacc[ch, d] = sigacc[cold]
            if store_z:
                for i in range(z.shape[1]):
                    out_z[ch, d, i] = z[cold, i]
    return True


@njit(cache=True, nogil=True)
def run(y, it0, it1, tune, model, chain, out, stats):
    """Run iterations it0..it1-1 of every replica on one thread; record from `tune` on.

    ``model`` = (prior_a, m0, s0, code, p0, p1, flags, floor, collapse_at) with `flags` =
    (means free, sigma free, shared sd, ordered, store assignments); ``chain`` = the state
    arrays (logw, mu, sd, z, state, swap_state, temp_of, rep_at, betas, swap_tries,
    swap_accepts), updated in place so a run continues across calls (progress bar, Ctrl-C);
    ``out`` and ``stats`` the arrays draws are recorded in. Returns the iteration at which an
    sd collapsed, or -1.
    """
    logw, mu, sd, z, state = chain[0], chain[1], chain[2], chain[3], chain[4]
    temp_of, betas = chain[6], chain[8]
    n_rep, k = mu.shape
    a = np.empty((n_rep, k))
    c = np.empty((n_rep, k))
    keys = np.empty(n_rep, dtype=np.uint64)
    n = np.zeros((n_rep, k))
    s1 = np.zeros((n_rep, k))
    s2 = np.zeros((n_rep, k))
    changed = np.zeros(n_rep, dtype=np.int64)
    for it in range(it0, it1):
        _prepare(logw, sd, state, temp_of, betas, a, c, keys)
        _sweep_serial(y, a, c, mu, keys, z, n, s1, s2, changed)
        if not _after_sweep(it, tune, model, chain, out, stats, n, s1, s2, changed):
            return it
    return -1


def run_threaded(y, it0, it1, tune, model, chain, out, stats, n_blocks):
    """As :func:`run`, with each sweep split over threads (large N).

    Driven from Python: Numba cannot cache a function that calls a ``parallel=True`` one (the
    cached code would point at a stale gufunc), and at this N one Python call per iteration is
    negligible.
    """
    logw, mu, sd, z, state = chain[0], chain[1], chain[2], chain[3], chain[4]
    temp_of, betas = chain[6], chain[8]
    n_rep, k = mu.shape
    a, c = np.empty((n_rep, k)), np.empty((n_rep, k))
    keys = np.empty(n_rep, dtype=np.uint64)
    n, s1, s2 = np.zeros((n_rep, k)), np.zeros((n_rep, k)), np.zeros((n_rep, k))
    changed = np.zeros(n_rep, dtype=np.int64)
    for it in range(it0, it1):
        _prepare(logw, sd, state, temp_of, betas, a, c, keys)
        _sweep_threads(y, a, c, mu, keys, z, n, s1, s2, changed, n_blocks)
        if not _after_sweep(it, tune, model, chain, out, stats, n, s1, s2, changed):
            return it
    return -1
