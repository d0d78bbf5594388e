"""The right mode at every size: EM starts, when to temper, and chains converged by default."""

import warnings

import arviz as az
import numpy as np
import pytest
from scipy import stats

import mixtures
from mixtures.analysis.diagnostics import ConvergenceWarning
from mixtures.engines import extend
from mixtures.engines.starts import em_optima, needs_tempering

QUIET = dict(progressbar=False, log_likelihood=False)
TRUTH = np.array([9.0, 21.0, 35.0])


def _three_gaussians(n_obs, seed):
    """Means 9, 21, 35, sd 2, weights 0.4 / 0.25 / 0.35 (the issue's case)."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, n_obs, p=[0.4, 0.25, 0.35])
    return TRUTH[z] + 2.0 * rng.standard_normal(n_obs)


def _chain_means(idata):
    return idata.posterior["means"].mean("draw").values  # (chain, k)


def _diagnostics(idata):
    names = [n for n in ("weights", "means", "sigma") if n in idata.posterior]
    rhat = az.rhat(idata, var_names=names).to_array().max().item()
    bulk = az.ess(idata, var_names=names, method="bulk").to_array().min().item()
    tail = az.ess(idata, var_names=names, method="tail").to_array().min().item()
    return rhat, bulk, tail


# --- the large-N wrong mode ----------------------------------------------------------------------


def test_large_n_default_puts_every_chain_in_the_right_mode():
    y = _three_gaussians(10_000, 3)
    model = mixtures.full_mixture(y, 3)
    # the old default at this size: random starts, no tempering, no relocation move (which
    # alone rescues these chains); one chain sticks with two components in one cluster and
    # one spanning two (the test can fail)
    old = mixtures.sample(
        model, draws=100, tune=200, tempering=False, init="random", moves=False,
        random_seed=3, warn=False, **QUIET,
    )  # fmt: skip
    assert np.abs(_chain_means(old) - TRUTH).max() > 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        idata = mixtures.sample(model, random_seed=3, **QUIET)
    assert np.abs(_chain_means(idata) - TRUTH).max() < 0.15  # sampling noise of y is ~0.05
    attrs = idata.posterior.attrs
    assert attrs["mixtures_starts"] == "EM (best of several)"
    assert attrs["mixtures_tempering"] == "off"
    assert _diagnostics(idata)[0] <= 1.01


def test_em_optima_find_the_maximum_likelihood_fit_on_a_subsample():
    y = _three_gaussians(50_000, 1)
    best = em_optima(y[:, None], 3, np.random.default_rng(0))[0]
    order = np.argsort(best.means[:, 0])
    np.testing.assert_allclose(best.means[order, 0], TRUTH, atol=0.3)  # 2,000 points
    np.testing.assert_allclose(best.weights[order], [0.4, 0.25, 0.35], atol=0.05)
    np.testing.assert_allclose(np.sqrt(best.covariances[order, 0, 0]), 2.0, atol=0.2)


# --- when to temper --------------------------------------------------------------------------------


def test_separated_clusters_in_the_middle_band_are_not_tempered():
    y = _three_gaussians(10_000, 1)  # N k = 30,000: tempered by the old rule
    temper, optima = needs_tempering(y[:, None], 3, np.random.default_rng(0))
    assert not temper and optima


def test_two_clusters_fitted_with_three_components_are_tempered():
    # the third component can split either cluster: two optima of equal likelihood
    rng = np.random.default_rng(4)
    y = np.concatenate([rng.normal(0, 1, 1500), rng.normal(10, 1, 1500)])
    temper, optima = needs_tempering(y[:, None], 3, np.random.default_rng(0))
    assert temper
    split_at = [np.sort(opt.means[:, 0])[1] < 5 for opt in optima]
    assert any(split_at) and not all(split_at)  # both splits found
    # the two best of each kind, recomputed with scipy, are within 10 nats
    logliks = []
    for kind in (True, False):
        opt = next(o for o, s in zip(optima, split_at) if s == kind)
        dens = stats.norm.pdf(y[:, None], opt.means[:, 0], np.sqrt(opt.covariances[:, 0, 0]))
        logliks.append(np.log(dens @ opt.weights).sum())
    assert abs(logliks[0] - logliks[1]) < 10


def test_small_data_stay_tempered_with_random_starts():
    y = mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000
    idata = mixtures.sample(mixtures.full_mixture(y, 3), draws=100, tune=100, random_seed=1,
                            warn=False, **QUIET)  # fmt: skip
    attrs = idata.posterior.attrs
    assert attrs["mixtures_tempering"].startswith("32 temperatures")  # N k <= 1,000
    assert attrs["mixtures_starts"] == "random"


# --- converged by default ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_gaussians():
    return mixtures.load_dataset("three_gaussians")["x"].to_numpy()


def test_draws_n_gives_exactly_n_draws(three_gaussians):
    model = mixtures.full_mixture(three_gaussians, 2)
    idata = mixtures.sample(model, draws=150, tune=100, random_seed=1, warn=False, **QUIET)
    assert idata.posterior.sizes["draw"] == 150
    assert idata.posterior.attrs["mixtures_draws_run"] == 150
    assert idata.posterior.attrs["mixtures_draws_requested"] == 150


@pytest.fixture(scope="module")
def extended(three_gaussians):
    """An automatic run whose first segment (100 draws) is too short for ESS >= 400."""
    model = mixtures.full_mixture(three_gaussians, 3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(extend, "AUTO_DRAWS", 100)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            idata = mixtures.sample(model, tune=300, tempering=False, random_seed=5, **QUIET)
    return model, idata


def test_automatic_run_extends_until_the_diagnostics_pass(extended):
    _, idata = extended
    attrs = idata.posterior.attrs
    assert attrs["mixtures_draws_requested"] == "auto"
    assert attrs["mixtures_draws_run"] > 100
    assert idata.posterior.sizes["draw"] == attrs["mixtures_draws_run"]
    assert attrs["mixtures_draws_reason"].startswith("diagnostics passed; extended after 100:")
    rhat, bulk, tail = _diagnostics(idata)
    assert rhat <= 1.01 and bulk >= 400 and tail >= 400


def test_extended_draws_equal_one_longer_run(extended):
    model, idata = extended
    total = idata.posterior.attrs["mixtures_draws_run"]
    single = mixtures.sample(model, draws=total, tune=300, tempering=False, random_seed=5,
                             warn=False, **QUIET)  # fmt: skip
    for name in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(idata.posterior[name].values, single.posterior[name].values)
    np.testing.assert_array_equal(
        idata.sample_stats["complete_loglik"].values, single.sample_stats["complete_loglik"].values
    )


def test_tempered_extension_keeps_the_ladder(three_gaussians):
    model = mixtures.full_mixture(three_gaussians, 3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(extend, "AUTO_DRAWS", 100)
        idata = mixtures.sample(model, tune=200, tempering=4, random_seed=2, warn=False, **QUIET)
    total = idata.posterior.attrs["mixtures_draws_run"]
    assert total > 100
    single = mixtures.sample(model, draws=total, tune=200, tempering=4, random_seed=2,
                             warn=False, **QUIET)  # fmt: skip
    np.testing.assert_array_equal(
        idata.posterior.attrs["mixtures_betas"], single.posterior.attrs["mixtures_betas"]
    )
    np.testing.assert_array_equal(idata.posterior["means"].values, single.posterior["means"].values)
    np.testing.assert_array_equal(
        idata.sample_stats["swap_accept"].values, single.sample_stats["swap_accept"].values
    )


def test_spent_budget_is_recorded_and_warned():
    y = mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000
    model = mixtures.full_mixture(y, 3)
    # untempered chains on the galaxies stay in different modes (see test_gibbs.py)
    with pytest.warns(ConvergenceWarning) as record:
        idata = mixtures.sample(model, tempering=False, random_seed=1, budget=(1600, 60.0),
                                **QUIET)  # fmt: skip
    assert any("r_hat" in str(w.message) for w in record)
    attrs = idata.posterior.attrs
    assert attrs["mixtures_draws_run"] <= 1600
    assert attrs["mixtures_draws_reason"].startswith("budget spent (1600 draws per chain")


def test_multivariate_wishart_model_converges_by_default():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    X = centres[rng.choice(3, 3000)] + rng.standard_normal((3000, 2))
    model = mixtures.mv_mixture(X, 3, covariance_prior="wishart")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        idata = mixtures.sample(model, random_seed=1, **QUIET)
    attrs = idata.posterior.attrs
    assert attrs["mixtures_starts"] == "EM (best of several)"
    means = idata.posterior["means"].mean("draw").values  # (chain, k, d)
    for chain in means:
        order = np.argsort(chain[:, 0] + 10 * chain[:, 1])
        np.testing.assert_allclose(chain[order], centres, atol=0.15)


@pytest.mark.parametrize("budget", [(0, 10.0), ("many", 10.0), (100,), (100, -1.0)])
def test_a_bad_budget_is_refused(three_gaussians, budget):
    model = mixtures.full_mixture(three_gaussians, 2)
    with pytest.raises(ValueError, match=r"`budget` should be .*, but got"):
        mixtures.sample(model, tune=10, tempering=False, budget=budget, **QUIET)
