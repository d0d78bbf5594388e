"""choose_k: the true k on well-separated data, in agreement with scikit-learn's BIC."""

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

import mixtures


@pytest.fixture(scope="module")
def three_clusters():
    rng = np.random.default_rng(4)
    return np.concatenate([rng.normal(-6, 1, 80), rng.normal(0, 1, 80), rng.normal(7, 1.3, 80)])


@pytest.fixture(scope="module")
def choice(three_clusters):
    return mixtures.choose_k(three_clusters, range(1, 6), draws=600, tune=400, chains=2,
                             random_seed=1, progressbar=False)  # fmt: skip


def test_choose_k_finds_the_true_k_and_agrees_with_bic(three_clusters, choice):
    bic = [GaussianMixture(k, n_init=3, random_state=0).fit(three_clusters[:, None]).bic(three_clusters[:, None])
           for k in range(1, 6)]  # fmt: skip
    assert int(np.argmin(bic)) + 1 == 3
    assert choice.best == 3
    t = choice.table
    assert list(t.index) == [1, 2, 3, 4, 5]
    # an overfitted mixture loses little marginal likelihood (about 1 nat at k = 4 here,
    # measured over seeds and run lengths), so k = 3 is the most probable, not a certainty
    assert t["posterior_prob"].idxmax() == 3 and t.loc[3, "posterior_prob"] > 0.4
    assert t.loc[[1, 2], "posterior_prob"].max() < 1e-6
    assert t["posterior_prob"].sum() == pytest.approx(1.0)
    assert t["sparse_prob"].idxmax() == 3
    assert {"elpd_loo", "elpd_loo_se", "pareto_k_bad", "log_evidence_se"} <= set(t.columns)
    assert set(t["evidence_method"]) == {"bridge"}
    assert "k = 3" in choice.message
    ax = choice.plot()
    assert ax.get_xlabel() == "number of components k"
    assert choice.certainty in ax.get_title() and f"k = 3: {choice.certainty}." in choice.message


def test_an_unconverged_fit_is_rerun_then_left_out():
    import pandas as pd

    table = pd.DataFrame(
        {"log_evidence": [-500.0, -400.0, -399.0], "log_evidence_se": [0.1, 0.1, 0.1],
         "posterior_prob": [0.0, 0.27, 0.73], "elpd_loo": [-480.0, -390.0, -389.5],
         "elpd_loo_se": [5.0, 5.0, 5.0], "pareto_k_bad": [0, 0, 0],
         "converged": [True, True, False]},
        index=pd.Index([2, 3, 4], name="k"),
    )  # fmt: skip
    status = {"rerun": [4], "unconverged": [4], "warnings": {4: "r_hat > 1.01 (up to 1.06)"}}
    choice = mixtures.analysis.selection.KChoice(table, {}, None, 0.01, status)
    assert choice.best == 3  # k = 4 has the higher evidence, but its fit did not converge
    assert "left out of the recommendation: k = 4" in choice.message
    assert "r_hat > 1.01 (up to 1.06)" in choice.message
    assert choice.certainty == "not sure"  # p(k = 3) is 0.27 of the table
    assert choice.plot().get_title() == "Choosing k: k = 3 (not sure)"


def test_choose_k_reruns_fits_that_fail_their_checks():
    y = np.random.default_rng(2).normal(3.0, 2.0, 150)
    choice = mixtures.choose_k(y, (1, 2), sparse=False, draws=12, tune=10, chains=2,
                               random_seed=3, progressbar=False, tempering=False)  # fmt: skip
    assert 2 in choice.status["rerun"]  # 12 draws cannot pass ESS >= 400
    assert choice.fits[2].posterior.sizes["draw"] == 48  # the rerun, four times longer
    assert not choice.table.loc[2, "converged"]
    assert "run again four times longer" in choice.message


def test_one_component_data_choose_one():
    y = np.random.default_rng(2).normal(3.0, 2.0, 150)
    choice = mixtures.choose_k(y, (1, 2, 3), sparse=False, draws=400, tune=300, chains=2,
                               random_seed=3, progressbar=False)  # fmt: skip
    assert choice.best == 1
    assert "sparse_prob" not in choice.table


def test_choose_k_bad_input(three_clusters):
    with pytest.raises(ValueError, match="ks"):
        mixtures.choose_k(three_clusters, [0, 1])
    with pytest.raises(ValueError, match="sparse_alpha"):
        mixtures.choose_k(three_clusters, [1, 2], sparse_alpha=2.0)


@pytest.mark.slow  # 22 s in the default run; the MFM's K posterior is also checked in test_mfm
def test_choose_k_with_the_mfm_agrees_with_the_marginal_likelihood():
    rng = np.random.default_rng(8)
    y = np.concatenate([rng.normal(-3, 1, 50), rng.normal(3, 1, 50)])
    choice = mixtures.choose_k(y, (1, 2, 3), sparse=False, method="mfm", draws=1000, tune=500,
                               chains=4, random_seed=2, progressbar=False)  # fmt: skip
    t = choice.table
    assert choice.best == 2 and int(t["mfm_p_K_plus"].idxmax()) == 2
    # uniform prior on K in 1..3: the MFM's p(K | y) is the evidence's posterior_prob
    z = t["log_evidence"].to_numpy()
    p = t["posterior_prob"].to_numpy()
    se_p = p * np.sqrt(t["log_evidence_se"].to_numpy() ** 2 + np.sum((p * t["log_evidence_se"]) ** 2))
    tolerance = 4 * np.hypot(t["mfm_se_K"].to_numpy(), se_p) + 0.01
    assert np.all(np.abs(t["mfm_p_K"].to_numpy() - p) <= tolerance), (t, z)
    assert "mixture of finite mixtures" in choice.message


def test_choose_k_with_multivariate_t_components():
    # two bivariate t clusters (nu = 4): the default multivariate factory with family="t"
    rng = np.random.default_rng(5)
    centers = np.array([[-4.0, 0.0], [4.0, 1.0]])
    lam = rng.gamma(2.0, 0.5, 160)  # t with nu = 4 as a scale mixture of Normals
    X = centers[np.arange(160) % 2] + rng.normal(size=(160, 2)) / np.sqrt(lam)[:, None]
    # k = 1 and 2 only: an overfitted k = 3 t fit does not converge in 2 x 400 draws (r_hat
    # ~1.3), and the evidence of an unconverged fit is not to be read
    choice = mixtures.choose_k(X, (1, 2), sparse=False, family="t", draws=400, tune=300,
                               chains=2, random_seed=4, progressbar=False, rerun=False)  # fmt: skip
    assert "nu" in choice.fits[2].posterior  # t components, nu sampled
    # 2 x 400 draws leave nu's ESS under the checks' 400 (rerun=False keeps the test short),
    # so the recommendation is read off the marginal likelihood itself
    t = choice.table
    assert t.loc[2, "posterior_prob"] > 0.999 and set(t["evidence_method"]) == {"bridge"}
    assert t.loc[2, "max_r_hat"] < 1.05
