"""Mixtures of finite mixtures: the prior on K, the telescoping sampler, its summaries."""

import itertools
import warnings

import matplotlib
import numpy as np
import pytest
from scipy import stats
from scipy.special import betaln, gammaln, logsumexp

import mixtures
from mixtures.engines import REGISTRY, choose_sampler
from mixtures.engines.gibbs import GibbsEngine
from mixtures.engines.mfm import KStep, MFMEngine
from mixtures.model.mfm import k_prior_pmf

matplotlib.use("Agg")


def _galaxies():
    return mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000


def _two_groups(seed=3):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 1.0, 30), rng.normal(3.5, 0.7, 20)])


# ------------------------------------------------------------------ the prior on K


def test_bnb_prior_is_the_papers_pmf():
    # Frühwirth-Schnatter et al. (2021), eq. (7): K - 1 ~ BNB(alpha, a, b)
    alpha, a, b = 1.0, 4.0, 3.0
    k = np.arange(30)
    logp = (
        gammaln(alpha + k)
        - gammaln(alpha)
        - gammaln(k + 1)
        + betaln(alpha + a, k + b)
        - betaln(a, b)
    )
    pmf, _ = k_prior_pmf("bnb")
    expected = np.exp(logp) / np.exp(logp).sum()
    np.testing.assert_allclose(pmf, expected, rtol=1e-10)


def test_named_and_array_priors():
    pmf, _ = k_prior_pmf({"dist": "poisson", "mu": 2.0}, k_max=12)
    expected = stats.poisson(2.0).pmf(np.arange(12))
    np.testing.assert_allclose(pmf, expected / expected.sum(), rtol=1e-12)
    pmf, desc = k_prior_pmf([1, 3, 0, 4])
    np.testing.assert_allclose(pmf, [0.125, 0.375, 0.0, 0.5])
    assert desc == "array"


@pytest.mark.parametrize(
    ("k_prior", "kwargs", "match"),
    [
        ("nope", {}, "`k_prior` should name one of"),
        ({"dist": "poisson", "lam": 1}, {}, "parameters should be among"),
        ([0.5, -0.1], {}, "should be finite, >= 0"),
        ([[0.5, 0.5]], {}, "should be a 1-D pmf"),
        ([0.5, 0.5], {"k_max": 3}, "should be len"),
        ("bnb", {"k_max": 0}, "`k_max` should be an integer >= 1"),
    ],
)
def test_k_prior_errors(k_prior, kwargs, match):
    with pytest.raises(ValueError, match=match):
        k_prior_pmf(k_prior, **kwargs)


def test_factory_errors():
    y = _two_groups()
    with pytest.raises(ValueError, match="`gamma` should be a number > 0"):
        mixtures.mfm_mixture(y, gamma=0)
    with pytest.raises(ValueError, match="keys should be among"):
        mixtures.mfm_mixture(y, priors={"weights": {"a": 2}})
    with pytest.raises(ValueError, match="`y` should have at least 2 distinct values"):
        mixtures.mfm_mixture(np.full(20, 3.0))
    assert mixtures.spec_of(mixtures.mfm_mixture(np.full(20, 3.0), sigma_floor=0.1)).k == 30


# ------------------------------------------------------------------ the K step


def _partition_prob_by_urn(sizes, n_obs, k, gamma_k):
    """p(partition | K) by enumerating labelled allocations, each by the Pólya urn."""
    blocks = np.repeat(np.arange(len(sizes)), sizes)  # one fixed partition of n_obs points
    total = 0.0
    for z in itertools.product(range(k), repeat=n_obs):
        z = np.asarray(z)
        same = (blocks[:, None] == blocks[None, :]) == (z[:, None] == z[None, :])
        if not same.all():
            continue
        counts, p = np.zeros(k), 1.0
        for i, zi in enumerate(z):
            p *= (counts[zi] + gamma_k) / (i + k * gamma_k)
            counts[zi] += 1
        total += p
    return total


@pytest.mark.parametrize("dynamic", [False, True])
def test_k_step_against_enumeration(dynamic):
    sizes, n_obs = [3, 1, 1], 5
    pk = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    model = mixtures.mfm_mixture(_two_groups()[:n_obs], pk, gamma=1.3, dynamic=dynamic)
    spec = mixtures.spec_of(model)
    counts = np.zeros((1, pk.size))
    counts[0, : len(sizes)] = sizes
    logp = KStep(spec, n_obs).logpmf(counts)[0]
    got = np.exp(logp - logsumexp(logp))
    ref = np.zeros(pk.size)
    for k in range(len(sizes), pk.size + 1):
        g = 1.3 / k if dynamic else 1.3
        ref[k - 1] = pk[k - 1] * _partition_prob_by_urn(sizes, n_obs, k, g)
    np.testing.assert_allclose(got, ref / ref.sum(), rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------------ the model and its spec


def test_component_priors_are_full_mixtures():
    y = np.round(_galaxies(), 1)  # ties: the sd floor applies
    spec = mixtures.spec_of(mixtures.mfm_mixture(y, [0.5, 0.5]))
    ref = mixtures.spec_of(mixtures.full_mixture(y, 2))
    assert spec.sigma_floor == ref.sigma_floor > 0
    for name in ("means", "sigma"):
        assert spec.priors[name].dist == ref.priors[name].dist
        for key, val in ref.priors[name].params.items():
            np.testing.assert_array_equal(np.broadcast_to(spec.priors[name].params[key], 2), val)
    assert spec.kind == "mfm" and spec.k == 2


def test_engines_choose_and_refuse():
    y = _two_groups()
    mfm = mixtures.mfm_mixture(y, [0.5, 0.5])
    assert list(REGISTRY).index("mfm") < list(REGISTRY).index("pymc")
    assert choose_sampler(mfm)[0] == "mfm"
    assert not GibbsEngine.supports(mfm, mixtures.spec_of(mfm))[0]
    full = mixtures.full_mixture(y, 2)
    assert not MFMEngine.supports(full, mixtures.spec_of(full))[0]
    assert choose_sampler(full)[0] == "gibbs"


def test_model_density_is_the_truncated_mfm():
    """The pm.Model's log-density of y given K, weights, means, sigma is the mixture's."""
    y = _two_groups()[:10]
    model = mixtures.mfm_mixture(y, [0.2, 0.3, 0.5])
    point = {
        "k_minus_one": np.array(1),
        "weights_raw_log__": np.log([2.0, 1.0, 5.0]),
        "means": np.array([0.0, 3.0, 10.0]),
        "sigma_log__": np.log([1.0, 0.5, 2.0]),
    }
    logp = model.compile_logp(vars=[model["y"]])(point)
    w = np.array([2.0, 1.0]) / 3.0  # K = 2: the third slot is out
    dens = w[0] * stats.norm(0.0, 1.0).pdf(y) + w[1] * stats.norm(3.0, 0.5).pdf(y)
    np.testing.assert_allclose(logp, np.log(dens).sum(), rtol=1e-10)


# ------------------------------------------------------------------ p(K | y) against marginal likelihoods


def _reference_k_posterior(y, pk, seed):
    """p(K | y) from bridge-sampling marginal likelihoods of full_mixture(y, k) fits."""
    est, se = [], []
    for k in range(1, pk.size + 1):
        idata = mixtures.sample(
            mixtures.full_mixture(y, k),
            random_seed=seed + k,
            draws=2000,
            warn=False,
            log_likelihood=False,
        )
        ev = mixtures.log_evidence(idata, method="bridge")
        est.append(ev.estimate)
        se.append(ev.se)
    lp = np.log(pk) + np.array(est)
    p = np.exp(lp - logsumexp(lp))
    jac = np.diag(p) - np.outer(p, p)  # d p_k / d log m_j
    return p, np.sqrt((jac**2) @ np.array(se) ** 2)


def _mfm_k_posterior(y, pk, seed, chains=8, draws=3000):
    idata = mixtures.sample(
        mixtures.mfm_mixture(y, pk),
        random_seed=seed,
        chains=chains,
        draws=draws,
        tune=1000,
        warn=False,
        log_likelihood=False,
    )
    table = mixtures.k_posterior(idata)
    k = idata.posterior["K"].values
    per_chain = np.stack([(k == j).mean(axis=1) for j in range(1, pk.size + 1)], axis=1)
    between = per_chain.std(axis=0, ddof=1) / np.sqrt(chains)  # between-chain spread
    se = np.maximum(table["se_K"].to_numpy(), between)
    return table["p_K"].to_numpy(), se


def _check_against_reference(y, pk, seed):
    ref, ref_se = _reference_k_posterior(y, pk, seed)
    got, got_se = _mfm_k_posterior(y, pk, seed)
    tol = 4.0 * np.sqrt(ref_se**2 + got_se**2) + 1e-3
    assert np.all(np.abs(got - ref) <= tol), (got, ref, tol)


def test_k_posterior_matches_marginal_likelihoods_synthetic():
    _check_against_reference(_two_groups(), np.full(4, 0.25), seed=10)


@pytest.mark.slow
def test_k_posterior_matches_marginal_likelihoods_galaxies():
    _check_against_reference(_galaxies(), np.full(6, 1 / 6), seed=20)


# ------------------------------------------------------------------ output and helpers


@pytest.fixture(scope="module")
def two_group_fit():
    y = _two_groups()
    return mixtures.sample(
        mixtures.mfm_mixture(y, "poisson", k_max=12),
        random_seed=5,
        draws=1000,
        tune=500,
        warn=False,
    )


def test_output(two_group_fit):
    post = two_group_fit.posterior
    k, kp = post["K"].values, post["K_plus"].values
    assert (kp <= k).all() and (kp >= 1).all() and (k <= 12).all()
    w = post["weights"].values
    np.testing.assert_allclose(w.sum(axis=-1), 1.0)
    slot = np.arange(12)
    assert ((w > 0) == (slot < k[..., None])).all()  # weights zero beyond K, positive below
    z = post["assignment"].values
    filled = (z[..., None] == slot).any(axis=2)  # slots holding data
    assert (filled.sum(axis=-1) == kp).all() and (filled == (slot < kp[..., None])).all()
    table = mixtures.k_posterior(two_group_fit)
    np.testing.assert_allclose(table[["prior", "p_K", "p_K_plus"]].sum(), 1.0)
    np.testing.assert_allclose(table["p_K_plus"][2], (kp == 2).mean())
    assert post.attrs["mixtures_sampler"] == "mfm"
    assert "log_likelihood" in two_group_fit.groups()


def test_coclustering_is_label_free(two_group_fit):
    prob = mixtures.coclustering(two_group_fit).values
    z = two_group_fit.posterior["assignment"].values.reshape(-1, 50)
    sel = np.linspace(0, z.shape[0] - 1, 1000).round().astype(int)  # its thinning
    np.testing.assert_allclose(prob[3, 40], (z[sel, 3] == z[sel, 40]).mean())
    assert prob[:30, :30].mean() > prob[:30, 30:].mean() + 0.2  # the two groups


def test_filled_components(two_group_fit):
    kp = two_group_fit.posterior["K_plus"].values
    mode = mixtures.k_posterior(two_group_fit)["p_K_plus"].idxmax()
    assert mixtures.filled_components(two_group_fit).posterior.sizes["component"] == mode
    sub = mixtures.filled_components(two_group_fit, k_plus=2)
    assert sub.posterior.sizes["component"] == 2
    assert sub.posterior.sizes["draw"] == (kp == 2).sum()
    means = sub.posterior["means"].values[0]
    assert (means[:, 0] < means[:, 1]).mean() > 0.95  # common labels across draws
    assert abs(means[:, 0].mean()) < 0.5


def test_diagnostics_and_plot(two_group_fit):
    table = mixtures.mfm_diagnostics(two_group_fit, warn=False)
    assert {"K", "loglik"} <= set(table.index)
    assert any(name.startswith("cocluster[") for name in table.index)
    short = mixtures.sample(
        mixtures.mfm_mixture(_two_groups(), "poisson", k_max=12),
        random_seed=1,
        draws=30,
        tune=5,
        warn=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mixtures.mfm_diagnostics(short)
    messages = [str(w.message) for w in caught if w.category is mixtures.ConvergenceWarning]
    assert any(m.startswith("bulk ESS < 400 (down to ") and " for K" in m for m in messages)
    assert {w.filename for w in caught} == {__file__}  # at the caller's line
    with warnings.catch_warnings(record=True) as caught:  # sample() checks the same quantities
        warnings.simplefilter("always")
        mixtures.sample(mixtures.mfm_mixture(_two_groups(), "poisson", k_max=12),
                        random_seed=1, draws=30, tune=5)  # fmt: skip
    messages = [str(w.message) for w in caught if w.category is mixtures.ConvergenceWarning]
    assert messages and not any("means[" in m or "weights[" in m for m in messages)
    ax = mixtures.plot_k_posterior(two_group_fit)
    assert len(ax.patches) == 2 * len(ax.get_xticks())
    matplotlib.pyplot.close("all")


# ------------------------------------------------------------------ multivariate (inverse-Wishart)


def test_inverse_wishart_draws():
    """A diagonal entry of IW(nu, psi) is InverseGamma((nu - d + 1) / 2, psi_jj / 2)."""
    from mixtures.model.mfm_mv import draw_inverse_wishart

    psi = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 0.7]])
    nu, d = 6.0, 3
    chol = draw_inverse_wishart(
        np.full(20000, nu), np.broadcast_to(psi, (20000, 3, 3)), np.random.default_rng(0)
    )
    cov = chol @ np.swapaxes(chol, -1, -2)
    for j in range(d):
        ref = stats.invgamma((nu - d + 1) / 2, scale=psi[j, j] / 2)
        assert stats.kstest(cov[:, j, j], ref.cdf).pvalue > 0.01
    np.testing.assert_allclose(cov.mean(axis=0), psi / (nu - d - 1), rtol=0.1, atol=0.02)


def _two_blobs_2d(seed=4):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.normal([0.0, 0.0], 1.0, (25, 2)), rng.normal([3.0, 1.0], [0.6, 1.0], (20, 2))]
    )


@pytest.mark.slow
def test_mv_k_posterior_matches_marginal_likelihoods():
    x, pk = _two_blobs_2d(), np.full(3, 1 / 3)
    est, se = [], []
    for k in range(1, 4):
        model = mixtures.mv_mixture(x, k, covariance_prior="wishart", ordered_by=0)
        idata = mixtures.sample(model, random_seed=k, draws=2000, warn=False, log_likelihood=False)
        ev = mixtures.log_evidence(idata, method="bridge")
        est.append(ev.estimate)
        se.append(ev.se)
    lp = np.log(pk) + np.array(est)
    ref = np.exp(lp - logsumexp(lp))
    ref_se = np.sqrt(((np.diag(ref) - np.outer(ref, ref)) ** 2) @ np.array(se) ** 2)
    got, got_se = _mfm_k_posterior(x, pk, seed=7, draws=2000)
    tol = 4.0 * np.sqrt(ref_se**2 + got_se**2) + 1e-3
    assert np.all(np.abs(got - ref) <= tol), (got, ref, tol)


def test_four_clusters_2d():
    data = mixtures.load_dataset("four_clusters_2d")
    x = data[[c for c in data.columns if c.startswith("x")]].to_numpy()
    model = mixtures.mfm_mixture(x, k_max=12)
    assert mixtures.spec_of(model).kind == "mfm_mv"
    idata = mixtures.sample(model, random_seed=2, draws=400, tune=300, warn=False)
    table = mixtures.k_posterior(idata)
    assert table["p_K_plus"].idxmax() == 4
    sub = mixtures.filled_components(idata)
    assert sub.posterior["means"].shape[-2:] == (4, 2)


# ------------------------------------------------------------------ calibration (SBC)


def _simulate_mfm(spec, n_obs, rng):
    """Draw K, weights, parameters and data from the MFM prior (NumPy; independent of the sampler)."""
    k = rng.choice(np.arange(1, spec.k + 1), p=np.asarray(spec.k_prior))
    w = rng.dirichlet(np.full(k, spec.gamma))
    mp, sp = spec.priors["means"].params, spec.priors["sigma"].params
    mu = rng.normal(float(mp["mu"]), float(mp["sigma"]), k)
    sd = np.abs(rng.normal(0.0, float(sp["sigma"]), k))  # HalfNormal
    z = rng.choice(k, size=n_obs, p=w)
    return rng.normal(mu[z], sd[z]), np.unique(z).size


@pytest.mark.slow
def test_sbc_ranks_of_k_plus_are_uniform():
    rng = np.random.default_rng(2024)
    n_obs, n_sims, n_keep = 30, 120, 19
    model = mixtures.mfm_mixture(
        rng.standard_normal(n_obs), {"dist": "poisson", "mu": 2.0}, k_max=10
    )
    spec = mixtures.spec_of(model)
    compiled = mixtures.compile_model(model)
    assert compiled.sampler == "mfm"
    ranks = []
    for s in range(n_sims):
        y, k_plus = _simulate_mfm(spec, n_obs, rng)
        idata = compiled.sample(
            y, draws=950, tune=300, chains=2, random_seed=s, warn=False, log_likelihood=False
        )
        draws = idata.posterior["K_plus"].values.ravel()
        draws = draws[np.linspace(0, draws.size - 1, n_keep).round().astype(int)]
        below, ties = (draws < k_plus).sum(), (draws == k_plus).sum()
        ranks.append(below + rng.integers(0, ties + 1))  # ties broken at random
    counts = np.bincount(np.asarray(ranks) // 5, minlength=4)  # 4 bins of 5 ranks (0..19)
    assert stats.chisquare(counts).pvalue > 0.01, counts


def test_mfm_choice_for_choose_k():
    from mixtures.model.mfm import mfm_choice

    table, idata = mfm_choice(
        _two_groups(),
        range(1, 5),
        k_prior="poisson",
        random_seed=1,
        draws=200,
        tune=100,
        warn=False,
    )
    assert list(table.index) == [1, 2, 3, 4]
    np.testing.assert_allclose(
        table["p_K_plus"], [(idata.posterior["K_plus"].values == k).mean() for k in range(1, 5)]
    )


@pytest.mark.parametrize("thin", [1, 3])
def test_stored_loglik_is_that_of_the_stored_draws(thin):
    idata = mixtures.sample(
        mixtures.mfm_mixture(_two_groups(), "poisson", k_max=10),
        draws=40,
        tune=10,
        chains=2,
        random_seed=3,
        warn=False,
        thin=thin,
    )
    pointwise = idata.log_likelihood["y"].sum("obs_id").transpose("chain", "draw").values
    np.testing.assert_allclose(idata.sample_stats["loglik"].values, pointwise, rtol=1e-10)
    assert idata.posterior.attrs["mixtures_thin"] == thin
    with pytest.raises(ValueError, match="`thin` should be an integer >= 1"):
        mixtures.sample(mixtures.mfm_mixture(_two_groups(), [0.5, 0.5]), thin=0)
