"""Starts of sparse (overfitted) multivariate fits from EM with k' filled components (issue 21).

The start changes nothing in the chain's transitions, so the tests check (a) the score that
ranks the EM optima against SciPy's Dirichlet-multinomial, (b) the known answer of a
one-cluster data set (the filled component's posterior is the one-component model's), (c)
that the draws from the new start and from the old random start agree on the label-free
quantities where both chains mix, (d) reproducibility and the ``init="random"`` opt-out, and
(e) that an automatic run stops when its chains sit at different numbers of filled components.
"""

import time

import arviz as az
import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln

import mixtures
from mixtures.engines.extend import AUTO_DRAWS, fixed_filled, run_draws
from mixtures.engines.starts import Optimum, sparse_candidates, sparse_score

QUIET = dict(progressbar=False, log_likelihood=False, warn=False)


def test_sparse_score_against_scipy_dirichlet_multinomial():
    n_obs, k, conc = 40, 6, 0.01
    counts = np.array([25.0, 10.0, 5.0])
    rng = np.random.default_rng(0)
    opt = Optimum(counts / n_obs, rng.normal(size=(3, 2)), np.repeat(np.eye(2)[None], 3, 0), -91.5)
    padded = np.concatenate([counts, np.zeros(k - 3)])
    # p(counts) over labelled assignments; one assignment is p(counts) / multinomial coefficient
    log_z = stats.dirichlet_multinomial.logpmf(padded, np.full(k, conc), n_obs)
    log_z -= gammaln(n_obs + 1) - gammaln(counts + 1).sum()
    labels = np.log(6 * 5 * 4)  # K! / (K - k')!: the labels of three blocks among six
    weights_part = (counts * np.log(counts / n_obs)).sum()
    bic = 0.5 * 3 * (2 + 3) * np.log(n_obs)
    expected = -91.5 - weights_part - bic + labels + log_z
    assert sparse_score(opt, n_obs, k, conc) == pytest.approx(expected, rel=1e-12)


def _one_cluster(n_obs=150, seed=0):
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    return rng.multivariate_normal([1.0, -2.0], cov, size=n_obs)


def test_one_cluster_candidates_have_one_component():
    x = _one_cluster()
    candidates = sparse_candidates(x, 5, 1e-4, np.random.default_rng(1))
    assert [opt.weights.size for _, opt in candidates] == [1]


def _filled_moments(idata):
    """Per draw, the mean and covariance of the component holding the most weight."""
    post = idata.posterior
    w = post["weights"].values
    top = w.argmax(axis=-1)[..., None]
    mu = np.take_along_axis(post["means"].values, top[..., None], axis=2)[:, :, 0]
    chol = np.take_along_axis(post["chol_cov"].values, top[..., None, None], axis=2)[:, :, 0]
    cov = chol @ np.swapaxes(chol, -1, -2)
    return np.concatenate([mu, cov[..., [0, 0, 1], [0, 1, 1]]], axis=-1)  # (chain, draw, 5)


def _mcse(draws):
    """ArviZ's MCSE of the mean of draws of shape (chain, draw)."""
    return float(az.mcse(az.convert_to_dataset({"q": draws}))["q"])


def _agree(a, b, z=4.0):
    """Whether the means of two draw arrays (chain, draw, m) agree within z joint MCSEs."""
    for j in range(a.shape[-1]):
        mean_a, mean_b = a[..., j].mean(), b[..., j].mean()
        se = np.hypot(_mcse(a[..., j]), _mcse(b[..., j]))
        if abs(mean_a - mean_b) > z * se:
            return False
    return True


def test_one_cluster_sparse_fit_is_the_one_component_posterior():
    x = _one_cluster()
    sparse = mixtures.mv_mixture(x, 5, ordered_by=None, priors={"weights": {"a": 1e-4}})
    idata = mixtures.sample(sparse, draws=1500, random_seed=2, **QUIET)
    assert idata.posterior.attrs["mixtures_starts"].startswith("EM, sparse")
    filled = (idata.posterior["weights"].values > 0.01).sum(axis=-1)
    assert (filled == 1).all()
    one = mixtures.sample(mixtures.mv_mixture(x, 1), draws=1500, random_seed=3, **QUIET)
    assert _agree(_filled_moments(idata), _filled_moments(one))


def _two_clusters(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.multivariate_normal([0.0, 0.0], np.eye(2), size=60)
    b = rng.multivariate_normal([8.0, 3.0], [[1.0, 0.5], [0.5, 1.0]], size=90)
    return np.concatenate([a, b])


def test_sparse_start_and_random_start_agree_on_label_free_quantities():
    x = _two_clusters()
    model = mixtures.mv_mixture(x, 2, ordered_by=0, priors={"weights": {"a": 0.05}})
    new = mixtures.sample(model, draws=2000, random_seed=4, **QUIET)
    old = mixtures.sample(model, draws=2000, init="random", random_seed=5, **QUIET)
    assert new.posterior.attrs["mixtures_starts"].startswith("EM, sparse")
    assert old.posterior.attrs["mixtures_starts"] == "random"

    def quantities(idata):
        w = np.sort(idata.posterior["weights"].values, axis=-1)
        ll = idata.sample_stats["complete_loglik"].transpose("chain", "draw").values
        return np.stack([w[..., -1], ll], axis=-1)

    assert _agree(quantities(new), quantities(old))
    assert _agree(_filled_moments(new), _filled_moments(old))


def test_sparse_start_is_reproducible_and_random_init_opts_out():
    x = _two_clusters(1)
    model = mixtures.mv_mixture(x, 4, ordered_by=None, priors={"weights": {"a": 0.01}})
    one = mixtures.sample(model, draws=50, chains=2, random_seed=7, **QUIET)
    two = mixtures.sample(model, draws=50, chains=2, random_seed=7, **QUIET)
    np.testing.assert_array_equal(one.posterior["weights"], two.posterior["weights"])
    assert one.posterior.attrs["mixtures_starts"] == "EM, sparse (1 candidates, k' = [2])"
    assert one.posterior.attrs["mixtures_tempering"] == "off"
    old = mixtures.sample(model, draws=50, chains=2, init="random", random_seed=7, **QUIET)
    assert old.posterior.attrs["mixtures_starts"] == "random"


def test_fixed_filled_by_hand():
    w = np.zeros((3, 200, 4))
    w[0, :, :2] = 0.5  # two filled
    w[1, :, :3] = 1 / 3  # three filled
    w[2, :, :2] = 0.5
    assert fixed_filled(w) == "2 / 3 / 2"
    w[2, :5, :3] = 1 / 3  # 2.5 % of chain 2's draws at three: not fixed
    assert fixed_filled(w) is None
    w[2, :, :3] = 1 / 3  # every chain fixed, at the same number
    w[0, :, :3] = 1 / 3
    assert fixed_filled(w) is None


def test_automatic_run_stops_when_chains_are_fixed_at_different_numbers():
    rng = np.random.default_rng(0)
    calls = []

    def segment(n):
        calls.append(n)
        w = np.zeros((2, n, 5))
        w[0, :, :2] = rng.dirichlet([50.0, 50.0], size=n)
        w[1, :, :3] = rng.dirichlet([50.0, 50.0, 50.0], size=n)
        return {"weights": w, "complete_loglik": rng.standard_normal((2, n))}

    _, record = run_draws(
        None, segment, None, t_start=time.perf_counter(), budget=(4000, 60.0), label_free=True
    )
    assert calls == [AUTO_DRAWS]
    assert record["mixtures_draws_reason"].startswith("chains fixed at 2 / 3 filled components")
