"""The Gibbs engine's vectorised sweep (``mixtures._kernels``), against NumPy and scipy.

The sweep draws every assignment from its exact (tempered) conditional; these tests compute
that conditional independently (scipy's Normal log-density, NumPy's exp) and compare the
kernel's draws, its sufficient statistics, and its exponential with them.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from mixtures import _kernels

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
LOGW = np.log([0.2, 0.5, 0.3])
MU = np.array([-0.5, 0.5, 1.5])
SD = np.array([0.8, 1.0, 1.5])


# --- the exponential ------------------------------------------------------------------------------


def test_exp_matches_numpy_over_the_whole_float64_range():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.linspace(-708.0, 709.7, 2_000_001),
            rng.uniform(-1.0, 1.0, 200_000),
            rng.uniform(-40.0, 0.0, 200_000),
            -np.arange(0, 700) * np.log(2.0),  # exact powers of two
        ]
    )
    got = np.empty_like(x)
    _kernels.exp_array(x, got)
    ref = np.exp(x)
    assert np.max(np.abs(got - ref) / ref) < 5e-16
    assert _kernels.exp(0.0) == 1.0


def test_exp_underflows_gradually_to_zero_and_overflows_to_inf():
    x = np.concatenate([np.linspace(-745.0, -708.4, 100_001), [-745.2, -746.0, -1e4, -np.inf]])
    got = np.empty_like(x)
    _kernels.exp_array(x, got)
    ref = np.exp(x)
    tiny = np.finfo(np.float64).smallest_subnormal
    assert np.max(np.abs(got - ref)) <= tiny  # subnormal results within one unit of the last place
    assert np.all(got[-4:] == 0.0)
    big = np.array([709.78, 709.79, 800.0, np.inf, np.nan])
    out = np.empty_like(big)
    _kernels.exp_array(big, out)
    np.testing.assert_allclose(out[0], np.exp(709.78), rtol=5e-16)
    assert np.all(np.isinf(out[1:4])) and np.isnan(out[4])


@njit(cache=False)
def _exp_rough_array(x, out):
    for i in range(x.shape[0]):
        out[i] = _kernels.exp_rough(x[i])


def test_rough_exp_is_within_its_stated_error_on_the_sweeps_range():
    # the sweep's first pass: arguments <= 0; the fallback band assumes relative error < 2e-9
    rng = np.random.default_rng(10)
    x = np.concatenate([np.linspace(-708.0, 0.0, 2_000_001), rng.uniform(-40.0, 0.0, 200_000)])
    got = np.empty_like(x)
    _exp_rough_array(x, got)
    assert np.max(np.abs(got / np.exp(x) - 1.0)) < 2e-9
    low = np.array([-708.01, -745.0, -1e4, -np.inf, np.nan])
    out = np.empty_like(low)
    _exp_rough_array(low, out)
    assert np.all(out[:4] == 0.0) and np.isnan(out[4])


# --- the sweep: exact conditional, known labels, tempered replicas ---------------------------------


def _sweep_inputs(y, betas, seed=1):
    """Coefficients of replicas at inverse temperatures `betas` (one replica per entry)."""
    reps = betas.size
    a = LOGW[None, :] - betas[:, None] * np.log(SD)[None, :]
    c = -0.5 * betas[:, None] / SD[None, :] ** 2
    mus = np.broadcast_to(MU, (reps, 3)).copy()
    keys = np.random.default_rng(seed).integers(0, 2**63, size=reps, dtype=np.uint64)
    z = np.full((reps, y.size), -1, dtype=np.int8)
    return a, c, mus, keys, z


def _conditional(y, beta):
    """p(z_i = j | ...) proportional to w_j N(y_i | mu_j, sd_j)**beta, with scipy; (k, n_obs)."""
    logits = LOGW[:, None] + beta * stats.norm.logpdf(y[None, :], MU[:, None], SD[:, None])
    probs = np.exp(logits - logits.max(axis=0))
    return probs / probs.sum(axis=0)


def test_sweep_draws_the_exact_tempered_conditional_and_keeps_known_labels():
    # 300 points: one full block of 256 and a partial one; every 7th point has a known label
    y = np.linspace(-1.5, 2.0, 300)
    fixed = np.full(y.size, -1, dtype=np.int32)
    fixed[::7] = np.arange(0, y.size, 7) % 3
    betas = np.repeat([1.0, 0.35], 3000)  # cold replicas and tempered ones
    a, c, mus, keys, z = _sweep_inputs(y, betas)
    n, s1, s2 = (np.zeros((betas.size, 3)) for _ in range(3))
    changed = np.zeros(betas.size, dtype=np.int64)
    _kernels.sweep(y, fixed, a, c, mus, keys, z, n, s1, s2, changed)

    known = fixed >= 0
    assert np.all(z[:, known] == fixed[known])
    assert np.all(changed == y.size)  # every assignment started at -1
    free = np.flatnonzero(~known)
    for beta in (1.0, 0.35):
        rows = betas == beta
        probs = _conditional(y, beta)[:, free]
        counts = np.stack([(z[rows][:, free] == j).sum(axis=0) for j in range(3)])
        expected = probs * rows.sum()
        assert expected.min() > 5.0  # the chi-square approximation holds in every cell
        # one chi-square over all free points: sum of per-point statistics, 2 dof each
        stat = ((counts - expected) ** 2 / expected).sum()
        assert stats.chi2.sf(stat, df=2 * free.size) > 1e-3
    # the tempered conditional is flatter than the cold one: the test can tell them apart
    cold = np.stack([(z[betas == 1.0][:, free] == j).mean(axis=0) for j in range(3)])
    assert np.abs(cold - _conditional(y, 0.35)[:, free]).max() > 0.05


def test_sweep_statistics_are_the_sums_over_the_drawn_components():
    rng = np.random.default_rng(3)
    y = rng.normal(0.5, 2.0, 1000)
    fixed = np.where(rng.random(y.size) < 0.2, rng.integers(0, 3, y.size), -1).astype(np.int32)
    betas = np.array([1.0, 0.6, 0.2])
    a, c, mus, keys, z = _sweep_inputs(y, betas)
    mus += rng.normal(size=mus.shape)  # each replica its own means
    n, s1, s2 = (np.zeros((3, 3)) for _ in range(3))
    changed = np.zeros(3, dtype=np.int64)
    z[:] = rng.integers(0, 3, size=z.shape)
    before = z.copy()
    _kernels.sweep(y, fixed, a, c, mus, keys, z, n, s1, s2, changed)
    for r in range(3):
        assert changed[r] == np.count_nonzero(z[r] != before[r])
        for j in range(3):
            d = y[z[r] == j] - mus[r, j]
            assert n[r, j] == d.size
            np.testing.assert_allclose(s1[r, j], d.sum(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(s2[r, j], (d * d).sum(), rtol=1e-12)


def _splitmix_uniform(key, index):
    """The sweep's counter-based uniform of points `index`, in NumPy's uint64 arithmetic."""
    with np.errstate(over="ignore"):
        x = key + (index.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def test_sweep_is_the_inverse_cdf_draw_of_its_counter_based_uniform():
    # the draw of point i is the inverse CDF of the exact conditional at the uniform keyed by
    # (sweep key, i): recomputed here with scipy and NumPy, point by point
    y = np.random.default_rng(4).uniform(-3.0, 5.0, 20_000)
    fixed = np.full(y.size, -1, dtype=np.int32)
    betas = np.array([1.0, 0.5])
    a, c, mus, keys, z = _sweep_inputs(y, betas, seed=5)
    n, s1, s2 = (np.zeros((2, 3)) for _ in range(3))
    _kernels.sweep(y, fixed, a, c, mus, keys, z, n, s1, s2, np.zeros(2, dtype=np.int64))
    for r, beta in enumerate(betas):
        cdf = np.cumsum(_conditional(y, beta), axis=0)
        u = _splitmix_uniform(keys[r], np.arange(y.size))
        ref = (u[None, :] >= cdf[:-1]).sum(axis=0)
        assert np.count_nonzero(z[r] != ref) == 0


def test_draws_within_the_rough_exponentials_error_are_the_exact_ones():
    # k = 2, log-weights -y**2 and -2 y**2: p(z = 0) = 1 / (1 + exp(-y**2)). Each point with a
    # uniform u > 1/2 gets the y at which p(z = 0) = u +- d, d in [6e-11, 3e-10]: inside the
    # rough exponential's error (2e-9), far outside float64's (1e-16). The draw is 0 exactly
    # when p(z = 0) > u, i.e. on the + side.
    n_obs = 20_000
    key = np.uint64(0x5DEECE66D1234567)
    u = _splitmix_uniform(key, np.arange(n_obs))
    rng = np.random.default_rng(11)
    side = rng.choice([-1.0, 1.0], n_obs)
    p0 = np.where(u > 0.5, u + side * rng.uniform(6e-11, 3e-10, n_obs), 0.75)
    y = np.sqrt(np.log(p0 / (1.0 - p0)))
    a, c = np.zeros((1, 2)), np.array([[-1.0, -2.0]])
    mus = np.zeros((1, 2))
    z = np.full((1, n_obs), -1, dtype=np.int8)
    n, s1, s2 = (np.zeros((1, 2)) for _ in range(3))
    fixed = np.full(n_obs, -1, dtype=np.int32)
    _kernels.sweep(y, fixed, a, c, mus, np.array([key]), z, n, s1, s2, np.zeros(1, dtype=np.int64))
    ref = np.where(u > 0.5, np.where(side > 0, 0, 1), (u >= 0.75).astype(int))
    assert np.count_nonzero(u > 0.5) > 9000
    np.testing.assert_array_equal(z[0], ref)


@pytest.mark.parametrize("n_blocks", [1, 3, 8])
def test_threaded_sweep_gives_the_serial_draws(n_blocks):
    rng = np.random.default_rng(6)
    y = rng.normal(0.5, 2.0, 100_003)
    fixed = np.where(rng.random(y.size) < 0.1, rng.integers(0, 3, y.size), -1).astype(np.int32)
    betas = np.array([1.0, 0.5, 0.1])
    a, c, mus, keys, z = _sweep_inputs(y, betas, seed=7)
    z2 = z.copy()
    out1 = [np.zeros((3, 3)) for _ in range(3)] + [np.zeros(3, dtype=np.int64)]
    out2 = [np.zeros((3, 3)) for _ in range(3)] + [np.zeros(3, dtype=np.int64)]
    _kernels.sweep(y, fixed, a, c, mus, keys, z, *out1)
    _kernels.sweep_threaded(y, fixed, a, c, mus, keys, z2, *out2, n_blocks)
    np.testing.assert_array_equal(z, z2)
    np.testing.assert_array_equal(out1[0], out2[0])  # counts
    np.testing.assert_array_equal(out1[3], out2[3])  # changed
    for s, t in zip(out1[1:3], out2[1:3], strict=True):  # sums: only the order differs
        np.testing.assert_allclose(s, t, rtol=1e-11)


# --- the multivariate sweep -----------------------------------------------------------------------


def _mv_inputs(rng, n_obs, k, d, betas):
    """Points, known labels and replica coefficients of a d-dimensional K-component mixture."""
    x = rng.normal(0.0, 1.5, size=(n_obs, d))
    fixed = np.where(rng.random(n_obs) < 0.1, rng.integers(0, k, n_obs), -1).astype(np.int32)
    reps = betas.size
    logw = np.log(rng.dirichlet(np.full(k, 3.0), size=reps))
    mu = rng.normal(0.0, 1.0, size=(reps, k, d))
    fac = np.tril(rng.normal(0.0, 0.3, size=(reps, k, d, d)), -1) + np.eye(d) * rng.uniform(
        0.6, 1.4, size=(reps, k, 1, d)
    )  # lower-triangular factors F of the precisions F F^T
    logdet = 2.0 * np.log(np.abs(np.diagonal(fac, axis1=2, axis2=3))).sum(axis=2)
    a = logw + 0.5 * betas[:, None] * logdet
    keys = rng.integers(0, 2**63, size=reps, dtype=np.uint64)
    return x, fixed, logw, mu, fac, a, keys


@pytest.mark.parametrize(("k", "d"), [(3, 2), (4, 5)])
def test_mv_sweep_is_the_inverse_cdf_draw_of_the_exact_conditional(k, d):
    rng = np.random.default_rng(8)
    betas = np.array([1.0, 0.4])
    x, fixed, logw, mu, fac, a, keys = _mv_inputs(rng, 3000, k, d, betas)
    z = np.full((2, x.shape[0]), -1, dtype=np.int8)
    n, s1, s2 = np.zeros((2, k)), np.zeros((2, k, d)), np.zeros((2, k, d, d))
    changed = np.zeros(2, dtype=np.int64)
    _kernels._mv_sweep_serial(x, fixed, a, betas, mu, fac, keys, z, n, s1, s2, changed)
    known = fixed >= 0
    for r, beta in enumerate(betas):
        assert np.all(z[r, known] == fixed[known])
        cov = np.linalg.inv(fac[r] @ np.swapaxes(fac[r], -1, -2))
        logits = np.stack(
            [
                logw[r, j] + beta * stats.multivariate_normal(mu[r, j], cov[j]).logpdf(x)
                for j in range(k)
            ]
        )
        probs = np.exp(logits - logits.max(axis=0))
        cdf = np.cumsum(probs / probs.sum(axis=0), axis=0)
        u = _splitmix_uniform(keys[r], np.arange(x.shape[0]))
        ref = (u[None, :] >= cdf[:-1]).sum(axis=0)
        assert np.count_nonzero(z[r, ~known] != ref[~known]) == 0
        for j in range(k):  # the statistics: sums over the drawn components, about mu
            diff = x[z[r] == j] - mu[r, j]
            assert n[r, j] == diff.shape[0]
            np.testing.assert_allclose(s1[r, j], diff.sum(axis=0), rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(s2[r, j], diff.T @ diff, rtol=1e-10, atol=1e-10)


def test_mv_threaded_sweep_gives_the_serial_draws():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    k, d = 3, 2
    betas = np.array([1.0, 0.5, 0.2])
    x, fixed, _, mu, fac, a, keys = _mv_inputs(rng, 50_001, k, d, betas)

    def outputs():
        z = np.zeros((3, x.shape[0]), dtype=np.int8)
        return z, np.zeros((3, k)), np.zeros((3, k, d)), np.zeros((3, k, d, d)), np.zeros(3, int)

    serial, threaded = outputs(), outputs()
    _kernels._mv_sweep_serial(x, fixed, a, betas, mu, fac, keys, *serial)
    with ThreadPoolExecutor(2) as pool:
        _kernels._mv_sweep_on(pool, x, fixed, a, betas, mu, fac, keys, *threaded, 8)
    for s, t in zip(serial, threaded, strict=True):
        np.testing.assert_allclose(s, t, rtol=1e-11, atol=0)
    np.testing.assert_array_equal(serial[0], threaded[0])
