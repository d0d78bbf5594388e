"""Multivariate mixtures, EM, ADVI, effective components and the 2-D plots."""

import warnings

import arviz as az
import numpy as np
import pytensor.tensor as pt
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

import mixtures
from mixtures.data import FOUR_CLUSTERS_2D, THREE_CLUSTERS_2D

QUIET = dict(progressbar=False)


@pytest.fixture(scope="module")
def three():
    df = mixtures.load_dataset("three_clusters_2d")
    return df[["x1", "x2"]].to_numpy(), df["component"].to_numpy()


@pytest.fixture(scope="module")
def four():
    df = mixtures.load_dataset("four_clusters_2d")
    return df[["x1", "x2"]].to_numpy(), df["component"].to_numpy()


def _params(model, point):
    outs = model.replace_rvs_by_values([model["weights"], model["means"], model["chol_cov"]])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", point_fn=False)
    return fn(*[point[v.name] for v in model.value_vars])


def _random_point(model, seed):
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}


# --- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("covariance", "covariance_prior"),
    [("full", "wishart"), ("full", "lkj"), ("diag", "auto"), ("tied", "auto")],
)
def test_marginal_density_equals_scipy(three, covariance, covariance_prior):
    X, _ = three
    model = mixtures.mv_mixture(X, 3, covariance=covariance, covariance_prior=covariance_prior)
    point = _random_point(model, 1)
    w, mu, chol = _params(model, point)
    cov = chol @ np.swapaxes(chol, -1, -2)
    if covariance == "tied":
        np.testing.assert_allclose(cov[0], cov[2])
    if covariance == "diag":
        np.testing.assert_allclose(cov[:, 0, 1], 0.0)
    ref = logsumexp(
        [np.log(w[j]) + stats.multivariate_normal(mu[j], cov[j]).logpdf(X) for j in range(3)],
        axis=0,
    ).sum()
    ours = model.compile_logp(vars=[model["y"]])(point)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


@pytest.mark.parametrize("covariance_prior", ["wishart", "lkj"])
def test_latent_density_given_assignments_equals_scipy(three, covariance_prior):
    X, labels = three
    model = mixtures.mv_mixture(X, 3, marginalized=False, covariance_prior=covariance_prior)
    point = _random_point(model, 2)
    point["assignment"] = labels.astype(point["assignment"].dtype)
    w, mu, chol = _params(model, point)
    cov = chol @ np.swapaxes(chol, -1, -2)
    ref = sum(
        stats.multivariate_normal(mu[j], cov[j]).logpdf(X[labels == j]).sum() for j in range(3)
    )
    ref += np.log(w[labels]).sum()
    ours = model.compile_logp(vars=[model["y"], model["assignment"]])(point)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_names_coords_and_dims(three):
    X, _ = three
    for marginalized in (True, False):
        model = mixtures.mv_mixture(X, 3, marginalized=marginalized)
        dims = model.named_vars_to_dims
        assert dims["weights"] == ("component",)
        assert dims["means"] == ("component", "feature")
        assert dims["chol_cov"] == ("component", "feature", "feature_bis")
        assert dims["sigma"] == ("component", "feature")
        assert dims["y"] == ("obs_id", "feature")
        assert all(v is None for v in model.rvs_to_initial_values.values())
        assert np.isfinite(model.compile_logp()(model.initial_point()))
    df = mixtures.load_dataset("three_clusters_2d")
    assert mixtures.mv_mixture(df[["x1", "x2"]], 3).coords["feature"] == ("x1", "x2")


def test_ordered_column_orders_across_components(three):
    X, _ = three
    model = mixtures.mv_mixture(X, 3, ordered_by=1)
    for seed in range(5):
        _, mu, _ = _params(model, _random_point(model, seed))
        assert np.all(np.diff(mu[:, 1]) > 0)  # across components, on feature 1


def test_ordered_column_jacobian_is_the_log_determinant():
    transform = mixtures.OrderedColumn(1, start=[0.0, 1.0, 2.0])
    flat = pt.vector("flat")
    x = flat.reshape((3, 2))
    jac = pt.jacobian(transform.backward(x).flatten(), flat)
    value = np.random.default_rng(0).normal(size=(3, 2))
    _, logdet = np.linalg.slogdet(jac.eval({flat: value.ravel()}))
    np.testing.assert_allclose(transform.log_jac_det(x).eval({flat: value.ravel()}).sum(), logdet)
    increasing = transform.backward(x).eval({x: value})
    np.testing.assert_allclose(transform.forward(pt.as_tensor(increasing)).eval(), value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda X: mixtures.mv_mixture(X[:, 0], 3), r"`X` should be a 2-D array"),
        (lambda X: mixtures.mv_mixture(X[:2], 3), r"`k` should be at most the number"),
        (lambda X: mixtures.mv_mixture(np.where(X > 6, np.nan, X), 3, missing="refuse"), r"only finite values"),
        (lambda X: mixtures.mv_mixture(X, 3, ordered_by=2), r"`ordered_by` should be a feature"),
        (lambda X: mixtures.mv_mixture(X, 3, ordered_by=-1), r"`ordered_by` should be a feature"),
        (lambda X: mixtures.mv_mixture(X, 3, ordered_by=True), r"`ordered_by` should be None or"),
        (lambda X: mixtures.mv_mixture(X, 3, covariance="block"), r"`covariance` should be one"),
        (
            lambda X: mixtures.mv_mixture(X, 3, priors={"weights": {"dist": "Beta"}}),
            r"`priors\['weights'\]\['dist'\]` should be one of",
        ),
        (
            lambda X: mixtures.mv_mixture(X, 3, priors={"means": {"nu": 3}}),
            r"`priors\['means'\]` should hold the parameters \['mu', 'sigma'\] of Normal",
        ),
    ],
)
def test_bad_input_is_a_clear_error(three, call, message):
    X, _ = three
    with pytest.raises(ValueError, match=message):
        call(X)


# --- EM --------------------------------------------------------------------------------------


def test_em_nll_never_increases_and_converges(three):
    X, _ = three
    result = mixtures.em(X, 3, random_seed=0)
    assert result.converged
    assert np.all(np.diff(result.nll_history) <= 1e-9 * np.abs(result.nll_history[1:]))
    np.testing.assert_allclose(result.nll_history[-1], -result.log_likelihood * len(X))
    np.testing.assert_allclose(result.responsibilities.sum(axis=1), 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_agrees_with_scikit_learn_from_the_same_start(three, seed):
    X, _ = three
    result = mixtures.em(X, 3, random_seed=seed)
    cov = np.cov(X, rowvar=False) + 1e-6 * np.eye(2)
    gm = GaussianMixture(
        3,
        covariance_type="full",
        tol=1e-6,
        max_iter=100,
        weights_init=np.full(3, 1 / 3),
        means_init=result.init_means,
        precisions_init=np.repeat(np.linalg.inv(cov)[None], 3, axis=0),
    ).fit(X)
    assert gm.n_iter_ == result.n_iter
    np.testing.assert_allclose(result.log_likelihood, gm.score(X), rtol=1e-6)
    np.testing.assert_allclose(result.means, gm.means_, atol=1e-8)
    np.testing.assert_allclose(result.covariances, gm.covariances_, atol=1e-8)


def test_em_n_init_keeps_the_best_start(three):
    X, _ = three
    # the four random starts em draws from random_seed=0, each run alone from its means
    rng = np.random.default_rng(0)
    starts = [X[rng.choice(len(X), 3, replace=False)] for _ in range(4)]
    singles = [mixtures.em(X, 3, means_init=s).log_likelihood for s in starts]
    best = mixtures.em(X, 3, n_init=4, random_seed=0)
    assert best.log_likelihood == max(singles)
    np.testing.assert_array_equal(best.init_means, starts[int(np.argmax(singles))])


@pytest.mark.slow  # compiles the LKJ model for NUTS (25 s)
def test_em_initvals_are_ordered_and_accepted(three):
    X, _ = three
    start = mixtures.em(X, 3, random_seed=0).initvals(ordered_by=0)
    assert np.all(np.diff(start["means"][:, 0]) > 0)
    model = mixtures.mv_mixture(X, 3, covariance_prior="lkj")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixtures.ConvergenceWarning)
        idata = mixtures.sample(
            model, draws=20, tune=20, chains=1, random_seed=1, initvals=start, **QUIET
        )
    assert idata.posterior["means"].shape == (1, 20, 3, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_init": 0}, r"`n_init` should be an integer >= 1"),
        ({"tol": 0}, r"`tol` should be > 0"),
        ({"means_init": np.zeros((2, 2))}, r"`means_init` should have shape \(3, 2\)"),
    ],
)
def test_em_bad_arguments(three, kwargs, message):
    X, _ = three
    with pytest.raises(ValueError, match=message):
        mixtures.em(X, 3, **kwargs)


# --- fitting ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fit3(three):
    """The inverse-Wishart model on our Gibbs engine (the LKJ/NUTS path: test_lkj_fit_runs)."""
    X, _ = three
    model = mixtures.mv_mixture(X, 3, covariance_prior="wishart")
    idata = mixtures.sample(
        model, draws=500, tune=500, chains=2, random_seed=5, warn=False, **QUIET
    )
    assert idata.posterior.attrs["mixtures_sampler"] == "gibbs"
    mixtures.sample_posterior_predictive(model, idata, random_seed=6)
    return model, idata


@pytest.mark.slow  # ~50 s, mostly compiling the Bartlett model for NUTS
def test_wishart_gibbs_equals_pymc_nuts_on_the_same_model():
    X = mixtures.load_dataset("old_faithful").iloc[::8]  # 34 rows: NUTS stays quick
    model = mixtures.mv_mixture(X, 2, covariance_prior="wishart")
    ours = mixtures.sample(model, draws=1000, tune=500, chains=2, random_seed=1, **QUIET)
    with np.errstate(all="ignore"):
        ref = mixtures.sample(
            model, sampler="pymc", draws=1000, tune=500, chains=2, random_seed=2, **QUIET
        )
    for name in ("weights", "means", "sigma"):
        a = ours.posterior[name].values.reshape(2000, -1)[::5]
        b = ref.posterior[name].values.reshape(2000, -1)[::5]
        for j in range(a.shape[1]):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3, (name, j)
    names = ["weights", "means", "sigma"]
    ta, tb = (az.summary(i, var_names=names, round_to="none") for i in (ours, ref))
    mcse = np.sqrt(ta["mcse_mean"] ** 2 + tb["mcse_mean"] ** 2)
    np.testing.assert_array_less(np.abs(ta["mean"] - tb["mean"]), 4.5 * mcse)


def test_default_covariance_prior_is_the_conjugate_one_where_it_exists(three):
    """Issue 21: full covariances default to the inverse-Wishart (our Gibbs engine); tied and
    diagonal ones, which have no Wishart model, to the LKJ / HalfNormal priors (NUTS)."""
    X, _ = three
    full = mixtures.spec_of(mixtures.mv_mixture(X, 3))
    assert full.priors["wishart"].dist == "InverseWishart" and "corr" not in full.priors
    assert mixtures.choose_sampler(mixtures.mv_mixture(X, 3))[0] == "gibbs"
    for covariance in ("tied", "diag"):
        spec = mixtures.spec_of(mixtures.mv_mixture(X, 3, covariance=covariance))
        assert "wishart" not in spec.priors and spec.priors["sigma"].dist == "HalfNormal"
    lkj = mixtures.spec_of(mixtures.mv_mixture(X, 3, covariance_prior="lkj"))
    assert lkj.priors["corr"].dist == "LKJ" and "wishart" not in lkj.priors
    with pytest.raises(ValueError, match=r"`covariance_prior` should be one of \['auto'"):
        mixtures.mv_mixture(X, 3, covariance_prior="invwishart")
    with pytest.raises(ValueError, match=r"\['sigma'\] \(they belong to covariance_prior='lkj'\)"):
        mixtures.mv_mixture(X, 3, priors={"sigma": {"sigma": 1.0}})


def test_wishart_prior_is_checked(three):
    X, _ = three
    with pytest.raises(ValueError, match=r"`priors\['wishart'\]\['nu'\]` should be > 1"):
        mixtures.mv_mixture(X, 3, covariance_prior="wishart", priors={"wishart": {"nu": 0.5}})
    with pytest.raises(ValueError, match=r"symmetric positive-definite \(2, 2\)"):
        mixtures.mv_mixture(
            X, 3, covariance_prior="wishart", priors={"wishart": {"psi": [[1, 2], [2, 1]]}}
        )
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['corr'\]"):
        mixtures.mv_mixture(X, 3, covariance_prior="wishart", priors={"corr": {"eta": 2}})
    for covariance in ("diag", "tied"):
        with pytest.raises(ValueError, match=r"`covariance` should be 'full' with covariance_pr"):
            mixtures.mv_mixture(X, 3, covariance=covariance, covariance_prior="wishart")
    with pytest.raises(ValueError, match=r"`priors\['means'\]\['sigma'\]` should be > 0"):
        mixtures.mv_mixture(X, 3, priors={"means": {"sigma": -1.0}})


def test_recovery_in_2d(three, fit3):
    X, labels = three
    _, idata = fit3
    post = idata.posterior.mean(("chain", "draw"))
    order = np.argsort(THREE_CLUSTERS_2D["means"][:, 0])  # the model orders by feature 0
    # against the generating values, within ~3 standard errors of 200 points per cluster
    np.testing.assert_allclose(post["means"], THREE_CLUSTERS_2D["means"][order], atol=0.3)
    chol = idata.posterior["chol_cov"].values
    cov = (chol @ np.swapaxes(chol, -1, -2)).mean(axis=(0, 1))
    truth = THREE_CLUSTERS_2D["covariances"][order]
    np.testing.assert_allclose(cov, truth, atol=3 * np.sqrt(2 / 200) * np.abs(truth).max())
    np.testing.assert_allclose(post["weights"], 1 / 3, atol=0.05)
    # and, tighter, against what the data say: each true cluster's sample statistics
    for j, c in enumerate(order):
        members = X[labels == c]
        np.testing.assert_allclose(post["means"][j], members.mean(0), atol=0.1)
        np.testing.assert_allclose(cov[j], np.cov(members, rowvar=False), atol=0.15)


def test_adjusted_rand_index_at_least_scikit_learns(three, fit3):
    X, labels = three
    _, idata = fit3
    w = idata.posterior["weights"].mean(("chain", "draw")).values
    mu = idata.posterior["means"].mean(("chain", "draw")).values
    chol = idata.posterior["chol_cov"].values
    cov = (chol @ np.swapaxes(chol, -1, -2)).mean(axis=(0, 1))
    logp = np.stack(
        [np.log(w[j]) + stats.multivariate_normal(mu[j], cov[j]).logpdf(X) for j in range(3)]
    )
    ours = adjusted_rand_score(labels, logp.argmax(axis=0))
    sk = GaussianMixture(3, n_init=5, random_state=0).fit(X).predict(X)
    assert ours >= adjusted_rand_score(labels, sk)


def test_log_likelihood_equals_scipy(fit3, three):
    X, _ = three
    _, idata = fit3
    post = idata.posterior
    for chain, draw in [(0, 0), (1, 123)]:
        sel = post.isel(chain=chain, draw=draw)
        chol = sel["chol_cov"].values
        ref = logsumexp(
            [
                np.log(sel["weights"].values[j])
                + stats.multivariate_normal(sel["means"].values[j], chol[j] @ chol[j].T).logpdf(X)
                for j in range(3)
            ],
            axis=0,
        )
        ours = idata.log_likelihood["y"].isel(chain=chain, draw=draw).values
        np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_posterior_predictive_2d(fit3, three):
    X, _ = three
    _, idata = fit3
    pred = idata.posterior_predictive["y"]
    assert pred.dims == ("chain", "draw", "obs_id", "feature")
    np.testing.assert_allclose(pred.mean(("chain", "draw", "obs_id")), X.mean(0), atol=0.2)
    ax = mixtures.plot_ppc_2d(idata, random_seed=0)
    assert len(ax.collections) >= 3  # predictive scatter, two contour sets, data


def test_sparse_dirichlet_finds_four_components(four):
    X, _ = four
    model = mixtures.mv_mixture(
        X, 10, ordered_by=None, covariance_prior="wishart", priors={"weights": {"a": 1e-5}}
    )
    # random starts fill all ten components, and the chains empty down to the four clusters;
    # they do not merge further (the default start, from EM with the competing numbers of
    # filled components, tests/test_sparse_starts.py, shows that at a = 1e-5 the posterior
    # also puts mass on two and three; bench/gibbs_engine.py --sparse2d-evidence)
    idata = mixtures.sample(model, chains=2, random_seed=3, init="random", warn=False, **QUIET)
    assert idata.posterior.attrs["mixtures_sampler"] == "gibbs"
    counts = mixtures.effective_components(idata)
    for chain in range(2):  # the most frequent number of components in every chain is 4
        values = counts.sel(chain=chain).values.astype(int)
        assert np.bincount(values).argmax() == 4, np.bincount(values)
    # the four used components are the four true clusters
    last = idata.posterior.isel(chain=0, draw=-1)
    used = np.flatnonzero(last["weights"].values > 0.01)
    truth = FOUR_CLUSTERS_2D["means"]
    for mean in last["means"].values[used]:
        assert np.min(np.linalg.norm(truth - mean, axis=1)) < 0.6


def test_latent_lkj_model_runs_in_pymc_with_conjugate_steps(four):
    X, _ = four
    model = mixtures.mv_mixture(
        X[::4], 3, marginalized=False, ordered_by=None, covariance_prior="lkj"
    )
    idata = mixtures.sample(model, draws=30, tune=30, chains=1, random_seed=3, warn=False, **QUIET)
    assert "MvConjugateGibbs[weights, means]" in idata.posterior.attrs["mixtures_steps"]
    assert idata.posterior["chol_cov"].shape == (1, 30, 3, 2, 2)


def test_mv_conjugate_means_update_matches_closed_form(three):
    X, labels = three
    model = mixtures.mv_mixture(X, 3, marginalized=False, ordered_by=None, covariance_prior="lkj")
    with model:
        step = mixtures.MvConjugateGibbs([model["weights"], model["means"]], rng=1)
    point = model.initial_point()
    chol = step._chol(*[point[n] for n in step._chol_inputs])
    draws = np.array([step._draw_means(labels, chol) for _ in range(4000)])
    for j in range(3):
        sigma_inv = np.linalg.inv(chol[j] @ chol[j].T)
        prior_prec = np.diag(1 / step._s0[j] ** 2)
        members = X[labels == j]
        cov = np.linalg.inv(prior_prec + len(members) * sigma_inv)
        mean = cov @ (prior_prec @ step._m0[j] + sigma_inv @ members.sum(0))
        se = np.sqrt(np.diag(cov) / len(draws))
        np.testing.assert_array_less(np.abs(draws[:, j].mean(0) - mean), 4 * se)
        scale = np.diag(cov).max()
        np.testing.assert_allclose(np.cov(draws[:, j], rowvar=False), cov, atol=0.1 * scale)


@pytest.mark.slow  # ADVI's compilation (35 s); notebook 04 (slow tier) runs ADVI too
def test_advi_returns_inference_data(three):
    X, _ = three
    model = mixtures.mv_mixture(X, 3, covariance_prior="lkj")
    idata = mixtures.fit_advi(model, n=3000, draws=200, random_seed=1, **QUIET)
    assert idata.posterior["means"].shape == (1, 200, 3, 2)
    assert idata.log_likelihood["y"].shape == (1, 200, len(X))
    loss = idata.posterior.attrs["mixtures_vi_loss"]
    assert loss.shape == (3000,) and loss[-100:].mean() < loss[:100].mean()
    with pytest.raises(ValueError, match="should be marginalised for ADVI"):
        mixtures.fit_advi(
            mixtures.mv_mixture(X, 3, marginalized=False, covariance_prior="lkj"), n=10
        )


def test_effective_components_counts_weights_above_threshold():
    w = np.array([[[0.5, 0.3, 0.15, 0.05], [0.98, 0.005, 0.01, 0.005]]])
    idata = az.from_dict(posterior={"weights": w}, dims={"weights": ["component"]})
    counts = mixtures.effective_components(idata, threshold=0.01)
    assert counts.values.tolist() == [[4, 1]]
    assert mixtures.effective_components(idata, threshold=0.2).values.tolist() == [[2, 1]]
    with pytest.raises(ValueError, match=r"`threshold` should be in \(0, 1\)"):
        mixtures.effective_components(idata, threshold=1.5)


# --- plots -----------------------------------------------------------------------------------


def test_plot_mixture_2d(three, fit3):
    X, _ = three
    _, idata = fit3
    ax = mixtures.plot_mixture_2d(idata, X, num_draws=5, random_seed=0)
    assert len(ax.patches) == 3 * (5 + 1)
    thick = [p for p in ax.patches if p.get_linewidth() == 2]
    assert len(thick) == 3
    # a thick ellipse's axes are 2 * scale * sqrt(eigenvalues) of the mean covariance
    chol = idata.posterior["chol_cov"].values
    cov0 = (chol @ np.swapaxes(chol, -1, -2)).mean(axis=(0, 1))[0]
    widths = sorted([thick[0].width, thick[0].height])
    np.testing.assert_allclose(widths, sorted(4 * np.sqrt(np.linalg.eigvalsh(cov0))))


def test_plot_mixture_2d_leaves_out_unused_components_and_takes_em(three):
    X, _ = three
    result = mixtures.em(X, 3, random_seed=0)
    ax = mixtures.plot_mixture_2d(result, X, weight_threshold=0.34)
    used = int((result.weights >= 0.34).sum())
    assert len(ax.patches) == used
    assert f"{3 - used} unused" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(lab.startswith("component ") and "w = " in lab for lab in labels)


def test_2d_plots_name_axes_after_the_columns(three, fit3):
    df = mixtures.load_dataset("old_faithful")
    result = mixtures.em(df, 2, random_seed=0)
    ax = mixtures.plot_mixture_2d(result, df)
    assert (ax.get_xlabel(), ax.get_ylabel()) == tuple(df.columns[:2])
    model = mixtures.mv_mixture(df, 2, covariance_prior="wishart")
    idata = mixtures.sample(
        model, draws=100, tune=100, chains=2, random_seed=1, warn=False, **QUIET
    )
    mixtures.sample_posterior_predictive(model, idata, random_seed=2)
    ax = mixtures.plot_ppc_2d(idata, random_seed=0)
    assert (ax.get_xlabel(), ax.get_ylabel()) == tuple(df.columns[:2])
    ax = mixtures.plot_mixture_2d(idata, df.to_numpy(), num_draws=2)
    assert ax.get_xlabel() == df.columns[0]  # from the fit's feature coordinate


def test_plot_mixture_2d_relabels_before_averaging(three, fit3):
    """Chains with permuted labels must not be averaged into ellipses between clusters."""
    X, _ = three
    _, idata = fit3
    swapped = idata.copy()
    post = swapped.posterior
    for name in ("weights", "means", "chol_cov"):
        arr = post[name].transpose("chain", "draw", "component", ...).values.copy()
        arr[1] = arr[1][:, [2, 0, 1]]
        post[name] = (post[name].transpose("chain", "draw", "component", ...).dims, arr)
    swapped.posterior = post
    ax = mixtures.plot_mixture_2d(swapped, X, num_draws=0)
    centres = sorted(tuple(np.round(p.center, 1)) for p in ax.patches)
    truth = sorted(
        tuple(np.round(m, 1)) for m in idata.posterior["means"].mean(("chain", "draw")).values
    )
    np.testing.assert_allclose(centres, truth, atol=0.05)


@pytest.mark.parametrize("seed", range(4))
def test_predictive_draws_from_the_true_mixture_overlay_the_data_contours(seed):
    """Issue 14's bug: the pooled draws' KDE must use the data's kernel, not a wider one."""
    from mixtures.plots.two_d import ppc_densities_2d

    rng = np.random.default_rng(seed)
    means = np.array([[2.0, 55.0], [4.3, 80.0]])
    covs = np.array([[[0.07, 0.4], [0.4, 34.0]], [[0.17, 0.9], [0.9, 35.0]]])

    def draw(n):
        z = rng.random(n) < 0.36
        out = np.empty((n, 2))
        for j, mask in enumerate([z, ~z]):
            out[mask] = rng.multivariate_normal(means[j], covs[j], mask.sum())
        return out

    data = draw(272)
    pooled = np.concatenate([draw(272) for _ in range(20)])
    _, _, z_data, z_pred = ppc_densities_2d(data, pooled)
    ratio = z_pred.max() / z_data.max()
    assert 0.8 < ratio < 1.25, ratio


def test_plot_em_history(three):
    X, _ = three
    result = mixtures.em(X, 3, random_seed=0)
    ax = mixtures.plot_em_history(result)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), result.nll_history)
    with pytest.raises(ValueError, match="`result` should be an EMResult"):
        mixtures.plot_em_history(xr.Dataset())


def test_plot_ppc_2d_needs_predictive(fit3):
    _, idata = fit3
    bare = az.InferenceData(posterior=idata.posterior, observed_data=idata.observed_data)
    with pytest.raises(ValueError, match="posterior_predictive"):
        mixtures.plot_ppc_2d(bare)


def test_predictive_of_a_gibbs_wishart_fit_uses_the_posterior_covariances():
    """The Gibbs engine returns chol_cov, not PyMC's Bartlett variables: PyMC alone would draw
    those from the prior. The predictive covariance must be the data's (a well-fitting model)."""
    df = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]]
    model = mixtures.mv_mixture(df, 3, covariance_prior="wishart")
    idata = mixtures.sample(
        model, draws=200, tune=200, chains=2, random_seed=1, warn=False, **QUIET
    )
    assert "wishart_c" not in idata.posterior
    mixtures.sample_posterior_predictive(model, idata, random_seed=2)
    pred = idata.posterior_predictive["y"]
    assert pred.dims == ("chain", "draw", "obs_id", "feature")
    pooled = pred.values.reshape(-1, 2)
    np.testing.assert_allclose(np.cov(pooled.T), np.cov(df.to_numpy().T), rtol=0.1, atol=0.1)


@pytest.mark.parametrize("chains", [2, 3])
def test_mv_chains_on_threads_draw_what_one_thread_draws(three, chains, one_thread):
    # small data: the chains, not the rows, are split over threads (engines/chain_threads.py);
    # each chain owns its replicas and streams, so the draws are the one-thread run's, bit for bit

    X = three[0][::4]
    model = mixtures.mv_mixture(X, 3)
    kw = dict(draws=100, tune=100, chains=chains, random_seed=5, tempering=4, warn=False,
              progressbar=False)  # fmt: skip
    with one_thread():
        one = mixtures.sample(model, **kw)
    many = mixtures.sample(model, **kw)
    for name in ("weights", "means", "chol_cov"):
        np.testing.assert_array_equal(one.posterior[name], many.posterior[name])
    np.testing.assert_array_equal(one.sample_stats["swap_accept"], many.sample_stats["swap_accept"])


def test_mv_large_data_draws_do_not_depend_on_how_the_threads_are_used(three, monkeypatch, one_thread):
    # above the threshold the sweep runs in ranges: on threads, or one after the other inside
    # whole chains on threads; the ranges' sums are added in the same order: the same draws

    from mixtures.engines import gibbs_mv

    monkeypatch.setattr(gibbs_mv, "_PARALLEL_MIN", 1)
    model = mixtures.mv_mixture(three[0], 3)
    kw = dict(draws=60, tune=60, chains=2, random_seed=5, tempering=False, warn=False,
              progressbar=False)  # fmt: skip
    chains_on_threads = mixtures.sample(model, **kw)
    with one_thread():
        one_thread = mixtures.sample(model, **kw)
    monkeypatch.setattr(gibbs_mv, "get_num_threads", lambda: 3)  # 2 chains on 3: ranges
    ranges_on_threads = mixtures.sample(model, **kw)
    for name in ("weights", "means", "chol_cov"):
        np.testing.assert_array_equal(
            chains_on_threads.posterior[name], one_thread.posterior[name]
        )
        np.testing.assert_array_equal(
            chains_on_threads.posterior[name], ranges_on_threads.posterior[name]
        )
