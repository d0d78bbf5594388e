"""Assignments, co-clustering, label switching and relabelling, against direct computations."""

import arviz as az
import numpy as np
import pytest
from scipy import stats

import mixtures
from mixtures.analysis.labels import exchangeable, relabel_permutations


def hand_made(y, weights, means, sds, *, chains=2, draws=3, assignment=None):
    """An InferenceData with the same parameters in every draw (or given assignments)."""
    k = len(weights)
    rep = lambda a: np.broadcast_to(np.asarray(a, float), (chains, draws, *np.shape(a))).copy()  # noqa: E731
    post = {"weights": rep(weights), "means": rep(means), "sigma": rep(sds)}
    dims = {
        "weights": ["component"],
        "means": ["component"],
        "sigma": ["component"],
        "y": ["obs_id"],
    }
    if assignment is not None:
        post["assignment"] = assignment
        dims["assignment"] = ["obs_id"]
    coords = {"component": np.arange(k), "obs_id": np.arange(len(y))}
    return az.from_dict(posterior=post, observed_data={"y": y}, coords=coords, dims=dims)


W, MU, SD = np.array([0.3, 0.5, 0.2]), np.array([-2.0, 0.5, 3.0]), np.array([1.0, 0.7, 1.5])


def scipy_resp(y):
    dens = W * stats.norm.pdf(np.asarray(y)[:, None], MU, SD)
    return dens / dens.sum(axis=1, keepdims=True)


def test_responsibilities_match_scipy():
    y = np.linspace(-4, 5, 40)
    idata = hand_made(y, W, MU, SD)
    probs = mixtures.assignment_probabilities(idata)
    np.testing.assert_allclose(probs["probability"].values, scipy_resp(y), rtol=1e-10)
    np.testing.assert_array_equal(probs["label"].values, scipy_resp(y).argmax(1))
    r = scipy_resp(y)
    np.testing.assert_allclose(probs["entropy"].values, -(r * np.log(r)).sum(1), rtol=1e-8)
    new = np.array([-3.0, 0.4, 10.0])
    np.testing.assert_allclose(mixtures.predict_proba(idata, new), scipy_resp(new), rtol=1e-10)
    np.testing.assert_array_equal(mixtures.predict(idata, new), [0, 1, 2])
    frame = mixtures.assignment_probabilities(idata, as_frame=True)
    assert list(frame.columns) == ["p_0", "p_1", "p_2", "label", "label_probability", "entropy"]


def test_responsibilities_average_over_draws():
    y = np.array([0.0, 1.0])
    idata = hand_made(y, W, MU, SD, chains=1, draws=2)
    post = idata.posterior
    idata.posterior = post.assign(means=(post["means"].dims, np.stack([[MU, MU + 1.0]])))
    expected = (scipy_resp(y) + scipy_resp(y - 1.0)) / 2
    got = mixtures.assignment_probabilities(idata)["probability"].values
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_multivariate_responsibilities_match_scipy():
    X = mixtures.load_dataset("old_faithful").to_numpy()[:30]
    mus = np.array([[2.0, 55.0], [4.3, 80.0]])
    covs = np.array([[[0.1, 0.5], [0.5, 30.0]], [[0.2, 1.0], [1.0, 35.0]]])
    w = np.array([0.35, 0.65])
    chol = np.linalg.cholesky(covs)
    rep = lambda a: np.broadcast_to(a, (2, 2, *a.shape)).copy()  # noqa: E731
    idata = az.from_dict(
        posterior={"weights": rep(w), "means": rep(mus), "chol_cov": rep(chol)},
        observed_data={"y": X},
        coords={"component": [0, 1], "feature": [0, 1], "feature_bis": [0, 1], "obs_id": np.arange(30)},
        dims={"weights": ["component"], "means": ["component", "feature"],
              "chol_cov": ["component", "feature", "feature_bis"], "y": ["obs_id", "feature"]},
    )  # fmt: skip
    dens = np.stack([w[j] * stats.multivariate_normal(mus[j], covs[j]).pdf(X) for j in range(2)], 1)
    expected = dens / dens.sum(1, keepdims=True)
    np.testing.assert_allclose(
        mixtures.assignment_probabilities(idata)["probability"].values, expected, rtol=1e-8
    )
    new = np.array([[2.0, 50.0], [4.5, 85.0]])
    assert list(mixtures.predict(idata, new)) == [0, 1]
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        mixtures.predict(idata, np.zeros((3, 3)))


def test_latent_frequencies_coclustering_and_occupancy():
    y = np.zeros(3)
    z = np.array([[[0, 0, 1], [0, 1, 1], [0, 0, 0], [0, 0, 1]]])  # (1 chain, 4 draws, 3 obs)
    idata = hand_made(y, W, MU, SD, chains=1, draws=4, assignment=z)
    probs = mixtures.assignment_probabilities(idata)["probability"].values
    np.testing.assert_allclose(probs[:, 0], [1.0, 0.75, 0.25])
    np.testing.assert_allclose(probs[:, 1], [0.0, 0.25, 0.75])
    co = mixtures.coclustering(idata).values
    np.testing.assert_allclose(co, [[1, 0.75, 0.25], [0.75, 1, 0.5], [0.25, 0.5, 1]])
    occ = mixtures.occupied_components(idata)
    assert occ.to_dict() == {1: 0.25, 2: 0.75}


def test_marginal_coclustering_is_sum_of_products():
    y = np.linspace(-3, 4, 12)
    idata = hand_made(y, W, MU, SD)
    r = scipy_resp(y)
    expected = r @ r.T
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(mixtures.coclustering(idata).values, expected, rtol=1e-10)
    ax = mixtures.plot_coclustering(idata)
    assert ax.get_title() == "Co-clustering probabilities"


# ---------------------------------------------------------------- label switching, relabel
@pytest.fixture(scope="module")
def unordered_fit(y3):
    """Well-separated data, unordered means, no tempering: chains keep their labels."""
    model = mixtures.full_mixture(y3, 3, ordered=False)
    return mixtures.sample(model, draws=300, tune=300, chains=4, tempering=None, random_seed=2,
                           progressbar=False, warn=False)  # fmt: skip


def _consistent(idata):
    """Draws of every chain with components sorted by their means (the reference labels)."""
    order = np.argsort(idata.posterior["means"].values, axis=-1)
    return {
        v: np.take_along_axis(idata.posterior[v].values, order, -1)
        for v in ("weights", "means", "sigma")
    }


def _permute_chains(idata, perms):
    out = idata.copy()
    post = out.posterior
    for v in ("weights", "means", "sigma"):
        arr = post[v].values.copy()
        for c, p in perms.items():
            arr[c] = arr[c][:, p]
        post[v] = (post[v].dims, arr)
    out.posterior = post
    return out


@pytest.mark.parametrize("method", ["stephens", "ecr"])
def test_relabel_undoes_a_deliberate_permutation_exactly(unordered_fit, method):
    reference = mixtures.relabel(unordered_fit, method)
    clean = _consistent(reference)
    for v, arr in clean.items():  # the clean fit was consistent: relabelling sorted it only
        np.testing.assert_array_equal(reference.posterior[v].values, arr)
    permuted = _permute_chains(reference, {1: [2, 0, 1], 3: [1, 2, 0]})
    assert az.rhat(permuted, var_names=["means"])["means"].max() > 1.5
    repaired = mixtures.relabel(permuted, method)
    for v in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(repaired.posterior[v].values, reference.posterior[v].values)
    perms = repaired.sample_stats["relabel_permutation"].values
    assert tuple(perms[1, 0]) == (1, 2, 0) and tuple(perms[0, 0]) == (0, 1, 2)


def test_exchangeable_components_share_every_fixed_value(y3):
    known = mixtures.sample(
        mixtures.known_params_mixture(y3, [9.0, 21.0, 35.0], [2.0, 2.0, 2.0]),
        draws=20, tune=20, chains=1, random_seed=0, progressbar=False, warn=False,
    )  # fmt: skip
    np.testing.assert_array_equal(exchangeable(known), np.eye(3, dtype=bool))
    t_fit = mixtures.sample(
        mixtures.full_mixture(y3, 3, family="t", nu=[30.0, 30.0, 3.0]),
        draws=20, tune=20, chains=1, random_seed=0, progressbar=False, warn=False,
    )  # fmt: skip
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(exchangeable(t_fit), expected)


@pytest.mark.parametrize("method", ["stephens", "ecr"])
def test_relabel_never_swaps_components_with_different_fixed_values(y3, method):
    # nu fixed per component: component 2 (nu = 3) is identified by its nu, so relabel may
    # permute 0 and 1 only; a chain whose draws have 0 and 2 swapped (where component 2 sits
    # in another cluster) keeps them, while a 0 <-> 1 swap is undone as for Normal components
    model = mixtures.full_mixture(y3, 3, family="t", nu=[30.0, 30.0, 3.0], ordered=False)
    fit = mixtures.sample(model, draws=150, tune=150, chains=2, tempering=None, random_seed=2,
                          progressbar=False, warn=False)  # fmt: skip
    reference = mixtures.relabel(fit, method)
    swapped_02 = mixtures.relabel(_permute_chains(reference, {1: [2, 1, 0]}), method)
    perms = swapped_02.sample_stats["relabel_permutation"].values
    assert (perms[..., 2] == 2).all()
    swapped_01 = mixtures.relabel(_permute_chains(reference, {1: [1, 0, 2]}), method)
    for v in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(swapped_01.posterior[v].values, reference.posterior[v].values)


def test_relabel_maps_latent_assignments(y3):
    model = mixtures.full_mixture(y3, 3, ordered=False, marginalized=False)
    idata = mixtures.sample(model, draws=100, tune=100, chains=2, tempering=None, random_seed=2,
                            progressbar=False, warn=False)  # fmt: skip
    out = mixtures.relabel(idata, "ecr")
    perms = out.sample_stats["relabel_permutation"].values
    z_old = idata.posterior["assignment"].values
    z_new = out.posterior["assignment"].values
    # new label j is old component perms[j]: the means of a point's label are unchanged
    mu_old = np.take_along_axis(idata.posterior["means"].values, z_old, -1)
    mu_new = np.take_along_axis(out.posterior["means"].values, z_new, -1)
    np.testing.assert_array_equal(mu_old, mu_new)
    assert perms.shape == (2, 100, 3)


def test_detector_flags_switched_chains_and_not_a_clean_fit(unordered_fit):
    clean = mixtures.relabel(unordered_fit)
    report = mixtures.label_switching(clean)
    assert not report.switched, report.chains
    assert "No label switching" in str(report)
    switched = mixtures.label_switching(_permute_chains(clean, {2: [1, 0, 2]}))
    assert switched.switched
    assert switched.chains["permuted"].tolist() == [False, False, True, False]
    assert "chains [2]" in str(switched)


def test_detector_finds_a_stretch_within_a_chain(unordered_fit):
    clean = mixtures.relabel(unordered_fit)
    out = clean.copy()
    post = out.posterior
    for v in ("weights", "means", "sigma"):
        arr = post[v].values.copy()
        arr[0, 100:180] = arr[0, 100:180][:, [0, 2, 1]]
        post[v] = (post[v].dims, arr)
    out.posterior = post
    report = mixtures.label_switching(out)
    assert report.switched
    row = report.stretches.iloc[0]
    assert (row.chain, row.first_draw, row.last_draw) == (0, 100, 179)


def test_isolated_permuted_draws_are_not_switching_but_are_reported(unordered_fit):
    clean = mixtures.relabel(unordered_fit)
    out = clean.copy()
    post = out.posterior
    rng = np.random.default_rng(0)
    picked = np.zeros((4, 300), dtype=bool)
    for c in range(4):  # 9 scattered single draws per chain (3%), as between overlapping components
        picked[c, rng.choice(np.arange(0, 300, 5), 9, replace=False)] = True
    for v in ("weights", "means", "sigma"):
        arr = post[v].values.copy()
        arr[picked] = arr[picked][:, [1, 0, 2]]
        post[v] = (post[v].dims, arr)
    out.posterior = post
    report = mixtures.label_switching(out)
    assert not report.switched
    assert report.permuted_share == pytest.approx(picked.mean())
    assert "3.0% of the draws are matched to other labels" in str(report)
    relabelled = mixtures.relabel(out)  # permutes exactly those draws back
    np.testing.assert_array_equal(relabelled.posterior["means"].values, clean.posterior["means"].values)


def test_relabelled_tempered_unordered_fit_has_r_hat_below_1_01(y3):
    model = mixtures.full_mixture(y3, 3, ordered=False)
    idata = mixtures.sample(model, random_seed=3, progressbar=False, warn=False)
    assert az.rhat(idata, var_names=["means"])["means"].max() > 1.05  # labels switch
    assert mixtures.label_switching(idata).switched
    fixed = mixtures.relabel(idata)
    assert float(az.rhat(fixed, var_names=["means"])["means"].max()) <= 1.01
    np.testing.assert_allclose(
        fixed.posterior["means"].mean(("chain", "draw")), [9, 21, 35], atol=1.0
    )


def test_bad_input():
    with pytest.raises(ValueError, match="InferenceData"):
        mixtures.assignment_probabilities(np.zeros(3))
    idata = hand_made(np.zeros(3), W, MU, SD)
    with pytest.raises(ValueError, match="method"):
        relabel_permutations(idata, "kl")
    with pytest.raises(ValueError, match="finite"):
        mixtures.predict_proba(idata, [np.nan])


# ------------------------------------------------------------------ partly labelled data
@pytest.fixture(scope="module")
def labelled(y3):
    labels = np.full(y3.size, -1)
    labels[:5] = 0  # the first points are from the component of mean 9
    labels[0] = 2  # ... one is declared to come from the component of mean 35
    return labels


@pytest.mark.parametrize("marginalized", [True, False], ids=["marginalised", "latent"])
def test_partly_labelled_fits_keep_the_given_labels(y3, labelled, marginalized):
    model = mixtures.full_mixture(y3, 3, labels=labelled, marginalized=marginalized)
    assert mixtures.spec_of(model).labelled
    gibbs = mixtures.sample(
        model, draws=400, tune=300, chains=2, random_seed=1, progressbar=False, warn=False
    )
    probs = mixtures.assignment_probabilities(gibbs)["probability"].values
    np.testing.assert_array_equal(probs[0], [0, 0, 1])
    np.testing.assert_array_equal(probs[1:5], np.tile([1.0, 0, 0], (4, 1)))
    if not marginalized:
        assert (gibbs.posterior["assignment"].values[..., 0] == 2).all()
    # a second engine, PyMC's, on the same model: the forced point widens sigma[2] alike
    pymc = mixtures.sample(
        model,
        sampler="pymc",
        draws=400,
        tune=300,
        chains=2,
        random_seed=1,
        progressbar=False,
        warn=False,
    )
    for var in ("means", "sigma", "weights"):
        a, b = gibbs.posterior[var], pymc.posterior[var]
        se = np.hypot(a.std(("chain", "draw")), b.std(("chain", "draw"))) / np.sqrt(100)
        diff = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw")))
        assert (diff < 5 * se).all(), (var, diff.values, se.values)
    # the labelled point's log-likelihood is that of (y_0, z_0 = 2)
    post = gibbs.posterior
    ll = gibbs.log_likelihood["y"].values[..., 0]
    expected = np.log(post["weights"].values[..., 2]) + stats.norm.logpdf(
        y3[0], post["means"].values[..., 2], post["sigma"].values[..., 2]
    )
    np.testing.assert_allclose(ll, expected, rtol=1e-10)


def test_labels_move_the_posterior(y3):
    """Labelling a far point into the top component widens that component's sd."""
    free = mixtures.sample(
        mixtures.full_mixture(y3, 3),
        draws=300,
        tune=300,
        chains=2,
        random_seed=1,
        progressbar=False,
        warn=False,
    )
    labels = np.full(y3.size, -1)
    labels[0] = 2
    forced = mixtures.sample(
        mixtures.full_mixture(y3, 3, labels=labels),
        draws=300,
        tune=300,
        chains=2,
        random_seed=1,
        progressbar=False,
        warn=False,
    )
    assert (
        float(forced.posterior["sigma"][..., 2].mean())
        > float(free.posterior["sigma"][..., 2].mean()) + 0.3
    )


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros(5, int), r"shape \(215,\)"),
        (np.full(215, 3), r"0..2 or -1"),
        (np.full(215, 0.5), "integers"),
        (np.array(["a"] * 215), "integers"),
    ],
)
def test_bad_labels(y3, labels, match):
    with pytest.raises(ValueError, match=match):
        mixtures.full_mixture(y3, 3, labels=labels)


def test_labelled_handle_refuses_new_data_without_labels(y3, labelled):
    handle = mixtures.compile_model(mixtures.full_mixture(y3, 3, labels=labelled))
    with pytest.raises(ValueError, match="known labels"):
        handle.sample(y3[:50])


@pytest.mark.parametrize("marginalized", [True, False], ids=["marginalised", "latent"])
def test_multivariate_labels_are_kept_and_enter_the_likelihood(marginalized):
    df = mixtures.load_dataset("old_faithful")
    X = df.to_numpy()
    labels = np.full(len(X), -1)
    labels[:3] = 0
    far = int(np.argmin(X[:, 0]))  # the shortest eruption, declared to be a long one
    labels[far] = 1
    model = mixtures.mv_mixture(
        df, 2, covariance_prior="wishart", labels=labels, marginalized=marginalized
    )
    idata = mixtures.sample(
        model, draws=150, tune=150, chains=2, random_seed=1, progressbar=False, warn=False
    )
    probs = mixtures.assignment_probabilities(idata)["probability"].values
    np.testing.assert_array_equal(probs[[0, 1, 2, far]], [[1, 0], [1, 0], [1, 0], [0, 1]])
    post = idata.posterior
    w, mu, chol = (
        post["weights"].values[..., 1],
        post["means"].values[..., 1, :],
        post["chol_cov"].values[..., 1, :, :],
    )
    expected = np.log(w[0, :5]) + [
        stats.multivariate_normal(mu[0, d], chol[0, d] @ chol[0, d].T).logpdf(X[far])
        for d in range(5)
    ]
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0, :5, far], expected, rtol=1e-10)
    # the long-eruption component stretches down to take the short one in: its eruptions' sd grows
    free = mixtures.sample(mixtures.mv_mixture(df, 2, covariance_prior="wishart"), draws=150, tune=150,
                           chains=2, random_seed=1, progressbar=False, warn=False)  # fmt: skip

    def sd(fit):
        return float(np.sqrt((fit.posterior["chol_cov"].values[..., 1, 0, :] ** 2).sum(-1)).mean())

    assert sd(idata) > sd(free) + 0.01
