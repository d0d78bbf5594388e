"""Simulation-based calibration: the fast tier (the slow tier is in test_slow.py)."""

import numpy as np
import pytest
from scipy import stats

import mixtures
from mixtures.analysis.calibration import ecdf_band, sbc, simulate

FAST = {
    "n_sims": 100,
    "draws": 250,
    "chains": 2,
    "tune": 150,
    "tempering": None,
    "progressbar": False,
}


def test_simulator_draws_the_resolved_prior(y3):
    spec = mixtures.spec_of(mixtures.full_mixture(y3, 3, ordered=False))
    rng = np.random.default_rng(0)
    sims = [simulate(spec, 5, rng)[0] for _ in range(2000)]
    means = np.array([s["means"][0] for s in sims])
    mp = spec.priors["means"].params
    assert stats.kstest(means, stats.norm(mp["mu"][0], mp["sigma"][0]).cdf).pvalue > 0.01
    sig = np.array([s["sigma"][1] for s in sims])
    assert (
        stats.kstest(sig, stats.halfnorm(scale=spec.priors["sigma"].params["sigma"][1]).cdf).pvalue
        > 0.01
    )
    w = np.array([s["weights"] for s in sims])
    a = spec.priors["weights"].params["a"]
    np.testing.assert_allclose(w.mean(0), a / a.sum(), atol=0.02)


def test_ordered_means_are_sorted_and_data_follow_the_mixture(y3):
    spec = mixtures.spec_of(mixtures.shared_sd_mixture(y3, 2))
    rng = np.random.default_rng(0)
    first = np.array([simulate(spec, 2, rng)[0]["means"][0] for _ in range(2000)])
    prior = spec.priors["means"].params
    mu, sd = float(np.ravel(prior["mu"])[0]), float(np.ravel(prior["sigma"])[0])
    # ordered i.i.d. Normal means: the first is the minimum of two, CDF 1 - (1 - Phi)^2
    min_cdf = lambda x: 1 - stats.norm.sf(x, mu, sd) ** 2  # noqa: E731
    assert stats.kstest(first, min_cdf).pvalue > 0.01
    assert stats.kstest(first, stats.norm(mu, sd).cdf).pvalue < 1e-6  # not the unordered law
    truth, y = simulate(spec, 20000, np.random.default_rng(1))
    mix = truth["weights"] @ truth["means"]
    assert np.mean(y) == pytest.approx(mix, abs=5 * np.std(y) / np.sqrt(y.size))


def test_ecdf_band_has_its_simultaneous_coverage():
    n, alpha = 60, 0.1
    z, lo, hi = ecdf_band(n, 60, alpha)
    rng = np.random.default_rng(123)  # not the band's own simulation seed
    inside = 0
    for _ in range(1000):
        u = np.sort(rng.uniform(size=n))
        ecdf = np.searchsorted(u, z, side="right") / n
        inside += np.all((ecdf >= lo) & (ecdf <= hi))
    assert 0.86 <= inside / 1000 <= 0.94


@pytest.mark.parametrize(
    "make",
    [
        lambda y: mixtures.known_params_mixture(y, [5.0, 20.0, 35.0], [3.0, 3.0, 3.0]),
        lambda y: mixtures.shared_sd_mixture(y, 2, marginalized=False),
    ],
    ids=["known", "shared_sd-latent"],
)
def test_sbc_passes_for_the_gibbs_engine(y3, make):
    result = sbc(make(y3[:60]), random_seed=3, **FAST)
    assert result.ranks.shape == (100, len(result.ranks.columns))
    assert result.ranks.to_numpy().min() >= 0 and result.ranks.to_numpy().max() <= 99
    tests = result.tests()
    assert result.passed, tests
    assert result.rates["failed"] == 0
    axes = result.plot_ranks()
    assert len(axes) == result.ranks.shape[1]
    assert result.plot_ecdf().get_xlabel() == "fractional rank"


def test_sbc_flags_a_misspecified_prior(y3):
    model = mixtures.shared_sd_mixture(y3[:60], 2)
    scale = float(mixtures.spec_of(model).priors["sigma"].params["sigma"])
    wrong = mixtures.shared_sd_mixture(
        y3[:60], 2, priors={"sigma": {"dist": "HalfNormal", "sigma": scale / 5}}
    )
    result = sbc(model, fit_model=wrong, random_seed=3, **FAST)
    assert not result.passed
    assert not result.tests().loc["sigma", "ecdf_in_band"]


def test_sbc_bad_input(y3):
    with pytest.raises(ValueError, match="n_sims"):
        sbc(mixtures.shared_sd_mixture(y3, 2), n_sims=3)
    with pytest.raises(ValueError, match="univariate"):
        sbc(mixtures.mv_mixture(mixtures.load_dataset("old_faithful").to_numpy(), 2))
    with pytest.raises(ValueError, match="n_ranks"):
        sbc(mixtures.shared_sd_mixture(y3, 2), draws=10, chains=1)


# ------------------------------------------------------------------- slow tier (-m slow)
@pytest.mark.slow
@pytest.mark.parametrize("marginalized", [True, False], ids=["marginalised", "latent"])
def test_sbc_full_model_with_the_default_sampler_settings(y3, marginalized):
    model = mixtures.full_mixture(y3[:80], 3, marginalized=marginalized)
    result = sbc(model, n_sims=300, draws=500, tune=500, random_seed=7, progressbar=False)
    print(result.tests(), result.rates)
    assert result.passed, result.tests()


@pytest.mark.slow
def test_sbc_pymc_nuts_shared_sd(y3):
    model = mixtures.shared_sd_mixture(y3[:60], 2)
    result = sbc(
        model, n_sims=100, sampler="pymc", draws=500, tune=500, random_seed=8, progressbar=False
    )
    print(result.tests(), result.rates)
    assert result.passed, result.tests()
