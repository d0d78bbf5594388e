"""The relocation move between modes (``mixtures._kernels.relocate``) leaves the posterior exact.

On six points with known sds, the posterior of (weights, means) is computed exactly by
enumerating the 3**6 assignments (Dirichlet-multinomial times each cluster's Normal marginal
from scipy's multivariate Normal), and exact draws from it are made by composition. The move
alone, applied repeatedly to those draws, must leave their distribution unchanged (two-sample
Kolmogorov-Smirnov tests against fresh exact draws) in each of its three modes: an exchangeable
prior with ordered means (it sorts), a per-component prior with ordered means (it rejects a
proposal out of order), and unordered means. A move that proposes from another prior than the
model's is detected by the same tests (the negative control). Below, the whole engine with the
move is compared with the engine without it (itself checked against NUTS in test_gibbs.py), and
checked for reproducibility with `random_seed`.
"""

from __future__ import annotations

import itertools

import arviz as az
import numpy as np
import pytest
from scipy import special, stats

import mixtures
from mixtures import _kernels

Y = np.array([-1.2, -0.6, 0.1, 2.4, 2.9, 3.3])
SIGMA = 0.7  # known sd of every component
K = 3
A = 1.0  # Dirichlet(1, 1, 1)
N_DRAWS = 20_000


def _cluster_logml(points, m0, s0):
    """Log marginal likelihood of `points` all from one Normal(mu, SIGMA), mu ~ N(m0, s0)."""
    if points.size == 0:
        return 0.0
    cov = SIGMA**2 * np.eye(points.size) + s0**2 * np.ones((points.size, points.size))
    return stats.multivariate_normal(np.full(points.size, m0), cov).logpdf(points)


def _exact_draws(m0, s0, ordered, rng, n_draws=N_DRAWS):
    """Exact posterior draws of (log weights, means), shape (n_draws, K) each.

    ``ordered``: the posterior restricted to increasing means (labelled prior ``m0[j]``),
    drawn by rejection from the labelled posterior.
    """
    zs = np.array(list(itertools.product(range(K), repeat=Y.size)))
    logp = np.empty(len(zs))
    for row, z in enumerate(zs):
        n = np.bincount(z, minlength=K)
        logp[row] = special.gammaln(A + n).sum() - special.gammaln(K * A + Y.size)
        logp[row] += sum(_cluster_logml(Y[z == j], m0[j], s0[j]) for j in range(K))
    prob = np.exp(logp - logp.max())
    prob /= prob.sum()
    logw_out, mu_out = [], []
    while sum(len(m) for m in mu_out) < n_draws:
        z = zs[rng.choice(len(zs), size=n_draws, p=prob)]
        n = np.stack([(z == j).sum(axis=1) for j in range(K)], axis=1)
        s = np.stack([np.where(z == j, Y, 0.0).sum(axis=1) for j in range(K)], axis=1)
        prec = 1.0 / s0**2 + n / SIGMA**2
        mu = (m0 / s0**2 + s / SIGMA**2) / prec + rng.standard_normal(n.shape) / np.sqrt(prec)
        g = rng.gamma(A + n)
        logw = np.log(g) - np.log(g.sum(axis=1, keepdims=True))
        keep = np.all(np.diff(mu, axis=1) > 0, axis=1) if ordered else np.ones(n_draws, bool)
        logw_out.append(logw[keep])
        mu_out.append(mu[keep])
    return np.concatenate(logw_out)[:n_draws], np.concatenate(mu_out)[:n_draws]


def _apply_moves(logw, mu, model_m0, model_s0, ordered, exchangeable, times, seed):
    """Apply the relocation move `times` times to each draw (each its own one-replica chain)."""
    n_rep = logw.shape[0]
    logw, mu = logw.copy(), mu.copy()
    sd = np.full((n_rep, K), SIGMA)
    rng = np.random.default_rng(seed)
    z = np.zeros((n_rep, Y.size), dtype=np.int8)
    state = rng.integers(0, 2**63, size=n_rep, dtype=np.uint64)
    chain = _kernels.ChainState(
        *(logw, mu, sd, z, state, np.zeros(n_rep, np.uint64)),
        *(np.zeros(n_rep, np.int64), np.arange(n_rep).reshape(n_rep, 1), np.ones(1)),
        *(np.zeros(1, np.int64), np.zeros(1, np.int64), np.full(Y.size, -1, np.int32)),
    )
    config = _kernels.KernelConfig(
        *(np.full(K, A), model_m0, model_s0, -1, np.ones(K), np.ones(K), 0.0, 0.0),
        means_free=True,
        sd_free=False,
        shared_sd=False,
        ordered=ordered,
        store_z=False,
        moves=True,
        exchangeable=exchangeable,
    )
    accepted = 0
    for _ in range(times):
        accepted += _kernels.relocate(Y, config, chain)
    return logw, mu, accepted / (times * n_rep)


def _ks_pvalues(before, after):
    """Two-sample KS p-values of every mean and weight coordinate."""
    (lw0, mu0), (lw1, mu1) = before, after
    cols = [(mu0[:, j], mu1[:, j]) for j in range(K)] + [(lw0[:, j], lw1[:, j]) for j in range(K)]
    return np.array([stats.ks_2samp(a, b).pvalue for a, b in cols])


CASES = {
    "exchangeable_ordered": (np.full(K, 1.0), np.full(K, 2.0), True, True),
    "per_component_ordered": (np.array([-1.0, 1.0, 3.0]), np.array([1.5, 2.0, 1.5]), True, False),
    "unordered": (np.array([-1.0, 1.0, 3.0]), np.array([1.5, 2.0, 1.5]), False, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_relocation_leaves_the_enumerated_posterior_invariant(case):
    m0, s0, ordered, exchangeable = CASES[case]
    rng = np.random.default_rng(11)
    start = _exact_draws(m0, s0, ordered, rng)
    fresh = _exact_draws(m0, s0, ordered, rng)
    logw, mu, rate = _apply_moves(*start, m0, s0, ordered, exchangeable, times=10, seed=3)
    assert rate > 0.1  # the move does move: the test has something to check
    moved = np.mean(np.any(mu != start[1], axis=1))
    assert moved > 0.3
    pvals = _ks_pvalues(fresh, (logw, mu))
    assert pvals.min() > 1e-3 / pvals.size, pvals  # Bonferroni at 0.001
    if ordered:
        assert np.all(np.diff(mu, axis=1) > 0)


def test_relocation_from_the_wrong_prior_is_detected():
    """Negative control: proposing from N(m0 + 4, s0) while the model's prior is N(m0, s0)."""
    m0, s0, ordered, exchangeable = CASES["exchangeable_ordered"]
    rng = np.random.default_rng(11)
    start = _exact_draws(m0, s0, ordered, rng)
    fresh = _exact_draws(m0, s0, ordered, rng)
    logw, mu, _ = _apply_moves(*start, m0 + 4.0, s0, ordered, exchangeable, times=10, seed=3)
    assert _ks_pvalues(fresh, (logw, mu)).min() < 1e-6


def test_the_engine_reports_the_move_and_reproduces_with_the_seed(y3):
    model = mixtures.full_mixture(y3, 4)
    kw = dict(draws=200, tune=200, chains=2, random_seed=5, progressbar=False, warn=False)
    first = mixtures.sample(model, **kw)
    again = mixtures.sample(model, **kw)
    assert "relocation" in first.posterior.attrs["mixtures_steps"]
    np.testing.assert_array_equal(first.posterior["means"], again.posterior["means"])
    off = mixtures.sample(model, moves=False, **kw)
    assert "relocation" not in off.posterior.attrs["mixtures_steps"]


def test_known_labels_switch_the_move_off(y3):
    labels = np.full(len(y3), -1)
    labels[:3] = 0
    model = mixtures.full_mixture(y3, 3, labels=labels)
    idata = mixtures.sample(model, draws=50, tune=50, chains=1, random_seed=1, warn=False)
    assert "relocation" not in idata.posterior.attrs["mixtures_steps"]


def test_engine_with_the_move_samples_the_posterior_without_it():
    """The whole engine (free sds, sorting, tempering) with the move against it without.

    Two clusters fitted with k = 3: the third component is almost empty in ~80% of the draws,
    so the move runs often. The engine without the move is checked against NUTS in
    tests/test_gibbs.py; here both give the same marginals (KS on thinned draws), and the move
    multiplies the ESS of the weights.
    """
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(0, 1, 25), rng.normal(5, 1, 15)])
    model = mixtures.full_mixture(y, 3)
    kw = dict(draws=4000, tune=500, progressbar=False, warn=False)
    on = mixtures.sample(model, random_seed=1, **kw)
    off = mixtures.sample(model, random_seed=2, moves=False, **kw)
    for name in ("weights", "means", "sigma"):
        a = on.posterior[name].values.reshape(-1, K)[::20]
        b = off.posterior[name].values.reshape(-1, K)[::20]
        for j in range(K):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3 / 9, (name, j)
    w_on = on.posterior["weights"].values
    assert (w_on.min(axis=-1) < 0.5 / K).mean() > 0.5  # the move had work to do
    ess_on = az.ess(on, var_names=["weights"])["weights"].values
    ess_off = az.ess(off, var_names=["weights"])["weights"].values
    assert np.all(ess_on > 2 * ess_off)


def _mixture_loglik(y, logw, mu, sd):
    """sum_i log sum_k w_k N(y_i | mu_k, sd_k), by scipy."""
    dens = stats.norm(mu[None, :], sd[None, :]).logpdf(y[:, None]) + logw[None, :]
    return special.logsumexp(dens, axis=1).sum()


@pytest.mark.parametrize("shared", [False, True], ids=["own_sd", "shared_sd"])
def test_the_move_s_likelihood_change_matches_scipy(shared):
    """Per chain: the marginal log-likelihood after moving one mean, minus before (scipy)."""
    rng = np.random.default_rng(4)
    y = rng.normal(0, 3, 400)
    n_rep, k = 3, 4
    logw = np.log(rng.dirichlet(np.ones(k), n_rep))
    mu = np.sort(rng.normal(0, 3, (n_rep, k)), axis=1)
    sd = rng.uniform(0.5, 2.0, (n_rep, 1 if shared else k))
    rep, jump, x = np.array([0, 2, 1]), np.array([1, 3, -1]), np.array([5.0, -4.0, 0.0])
    delta = _kernels.relocation_change(y, rep, jump, x, logw, mu, sd)
    for ch in range(3):
        r, j = rep[ch], jump[ch]
        sds = np.broadcast_to(sd[r], (k,))
        if j < 0:
            assert delta[ch] == 0.0
            continue
        moved = mu[r].copy()
        moved[j] = x[ch]
        want = _mixture_loglik(y, logw[r], moved, sds) - _mixture_loglik(y, logw[r], mu[r], sds)
        assert delta[ch] == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_an_accepted_move_keeps_the_order_and_a_shared_sd_in_place():
    """An accepted jump past two means sorts weights and means; a shared sd stays put."""
    logw = np.log(np.array([[0.5, 0.05, 0.2, 0.25], [0.1, 0.2, 0.3, 0.4]]))
    mu = np.array([[-3.0, -1.0, 1.0, 3.0], [-3.0, -1.0, 1.0, 3.0]])
    sd = np.array([[1.5], [0.7]])
    before = logw.copy(), mu.copy(), sd.copy()
    rep, jump, x = np.array([0, 1]), np.array([1, -1]), np.array([2.0, 0.0])
    accepted = _kernels.relocation_accept(
        rep, jump, x, np.array([-1.0, 0.0]), np.array([0.0, 0.0]), logw, mu, sd, True
    )
    assert accepted == 1
    np.testing.assert_array_equal(mu[0], [-3.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(np.exp(logw[0]), [0.5, 0.2, 0.05, 0.25])
    np.testing.assert_array_equal(sd, before[2])  # the shared sd of both replicas
    np.testing.assert_array_equal(mu[1], before[1][1])  # no proposal: unchanged
    np.testing.assert_array_equal(logw[1], before[0][1])
