"""The component families' (weighted) log-densities against SciPy, element by element.

Every expected value is computed one draw, one component and one observation at a time with
``scipy.stats`` (``norm``, ``t``, ``multivariate_normal`` on the observed cells) and
``scipy.special.logsumexp``; the code under test computes them as broadcast arrays.
"""

import itertools

import arviz as az
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import mixtures
from mixtures.analysis.loglik import pointwise_loglik
from mixtures.model.components import (
    COMPONENT_FAMILIES,
    MvNormal,
    Normal,
    StudentT,
    family_of,
    fit_components,
)
from mixtures.model.multivariate import mv_pointwise_loglik

BATCH = (2, 3)  # (chain, draw)
K, N, D = 3, 7, 3


def univariate_params(rng, with_nu=False):
    params = {
        "means": rng.normal(0, 2, BATCH + (K,)),
        "sigma": rng.uniform(0.5, 2.0, BATCH + (K,)),
    }
    if with_nu:
        params["nu"] = rng.uniform(1.5, 20.0, BATCH + (K,))
    return params


def mv_params(rng):
    chol = np.tril(rng.normal(0, 0.4, BATCH + (K, D, D)), -1)
    idx = np.arange(D)
    chol[..., idx, idx] = rng.uniform(0.5, 2.0, BATCH + (K, D))
    return {"means": rng.normal(0, 2, BATCH + (K, D)), "chol_cov": chol}


def scipy_logpdf(name, y, params):
    """Batch + (n, k) log-densities, one scipy call per draw, component and observation."""
    out = np.empty(BATCH + (len(y), K))
    for b in itertools.product(*map(range, BATCH)):
        for j in range(K):
            for i, yi in enumerate(y):
                p = {n: v[b + (j,)] for n, v in params.items()}
                if name == "normal":
                    val = stats.norm.logpdf(yi, p["means"], p["sigma"])
                elif name == "t":
                    val = stats.t.logpdf(yi, p["nu"], p["means"], p["sigma"])
                else:
                    obs = ~np.isnan(yi)
                    cov = p["chol_cov"] @ p["chol_cov"].T
                    val = stats.multivariate_normal.logpdf(
                        yi[obs], p["means"][obs], cov[np.ix_(obs, obs)]
                    )
                out[b + (i, j)] = val
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(19)


@pytest.mark.parametrize("name", ["normal", "t"])
def test_univariate_logpdf_matches_scipy_over_a_batch(rng, name):
    params = univariate_params(rng, with_nu=name == "t")
    y = rng.normal(0, 3, N)
    got = COMPONENT_FAMILIES[name].logpdf(y, params)
    assert got.shape == BATCH + (N, K)
    np.testing.assert_allclose(got, scipy_logpdf(name, y, params), rtol=1e-12, atol=1e-12)


def test_mvnormal_logpdf_matches_scipy_with_missing_cells(rng):
    params = mv_params(rng)
    x = rng.normal(0, 2, (N, D))
    x[1, 0] = x[2, [0, 2]] = x[4, 1] = np.nan  # three missingness patterns and complete rows
    got = MvNormal().logpdf(x, params)
    assert got.shape == BATCH + (N, K)
    np.testing.assert_allclose(got, scipy_logpdf("mvnormal", x, params), rtol=1e-10)


@pytest.mark.parametrize("name", ["normal", "t", "mvnormal"])
def test_weighted_logpdf_masks_known_labels_and_sums_to_the_mixture(rng, name):
    params = mv_params(rng) if name == "mvnormal" else univariate_params(rng, name == "t")
    y = rng.normal(0, 2, (N, D) if name == "mvnormal" else N)
    if name == "mvnormal":
        y[3, 1] = np.nan
    weights = rng.dirichlet(np.ones(K), BATCH)
    labels = np.full(N, -1)
    labels[[0, 3, 5]] = [2, 0, 1]
    expected = np.log(weights)[..., None, :] + scipy_logpdf(name, y, params)
    family = COMPONENT_FAMILIES[name]

    got = family.weighted_logpdf(y, weights, params)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(
        family.mixture_logpdf(y, weights, params), logsumexp(expected, axis=-1), rtol=1e-10
    )

    masked = family.weighted_logpdf(y, weights, params, labels)
    for i in range(N):
        for j in range(K):
            if labels[i] >= 0 and j != labels[i]:
                assert np.all(masked[..., i, j] == -np.inf)
            else:
                np.testing.assert_allclose(masked[..., i, j], expected[..., i, j], rtol=1e-10)
    mix = family.mixture_logpdf(y, weights, params, labels)
    for i in range(N):  # a labelled point: the joint of the point and its label
        want = logsumexp(expected[..., i, :], -1) if labels[i] < 0 else expected[..., i, labels[i]]
        np.testing.assert_allclose(mix[..., i], want, rtol=1e-10)


def test_an_empty_weight_gives_minus_infinity_and_no_warning(rng):
    params = univariate_params(rng)
    weights = np.broadcast_to([0.0, 0.4, 0.6], BATCH + (K,))
    y = rng.normal(0, 1, N)
    got = Normal().weighted_logpdf(y, weights, params)
    assert np.all(got[..., 0] == -np.inf)
    labels = np.full(N, -1)
    labels[0] = 0  # labelled in the empty component: the likelihood of (y, z) is 0
    assert np.all(Normal().mixture_logpdf(y, weights, params, labels)[..., 0] == -np.inf)


def test_parameters_broadcast_a_known_value_against_draws(rng):
    params = univariate_params(rng, with_nu=True)
    known_nu = np.array([3.0, 5.0, 30.0])  # fixed: shape (k,) against (chain, draw, k)
    y = rng.normal(0, 3, N)
    got = StudentT().logpdf(y, {**params, "nu": known_nu})
    want = scipy_logpdf("t", y, {**params, "nu": np.broadcast_to(known_nu, BATCH + (K,))})
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_family_of_names_specs_and_fits():
    assert isinstance(family_of("normal"), Normal)
    assert isinstance(family_of({"family": "t"}), StudentT)
    assert isinstance(family_of("mfm_mvnormal"), MvNormal)
    assert family_of("mfm_normal") is COMPONENT_FAMILIES["normal"]
    assert COMPONENT_FAMILIES["t"].param_names == ("means", "sigma", "nu")
    assert COMPONENT_FAMILIES["mvnormal"].param_names == ("means", "chol_cov")
    with pytest.raises(ValueError, match="should be one of .* but got 'gamma'"):
        family_of("gamma")


# ------------------------------------------------------------------ fits made by hand
def hand_fit(y, post, dims, constant=None, spec=None):
    coords = {"component": np.arange(K), "obs_id": np.arange(len(y)), "feature": np.arange(D),
              "feature_bis": np.arange(D)}  # fmt: skip
    dims = {**dims, "y": ["obs_id"] + (["feature"] if np.ndim(y) == 2 else [])}
    const_dims = {"labels": ["obs_id"], "nu": ["component"]}
    idata = az.from_dict(
        posterior=post,
        observed_data={"y": y},
        constant_data=constant,
        coords=coords,
        dims={**dims, **const_dims},
    )
    if spec is not None:
        idata.posterior.attrs["mixtures_spec"] = spec
    return idata


def test_pointwise_loglik_of_a_t_fit_with_shared_sd_known_nu_and_labels(rng):
    y = rng.normal(0, 3, N)
    weights = rng.dirichlet(np.ones(K), BATCH)
    means = rng.normal(0, 2, BATCH + (K,))
    sd = rng.uniform(0.5, 2.0, BATCH)  # one sd shared by the components
    nu = np.array([2.5, 6.0, 40.0])
    labels = np.array([1, -1, -1, 0, -1, -1, 2])
    post = {"weights": weights, "means": means, "sigma": sd}
    dims = {"weights": ["component"], "means": ["component"]}
    idata = hand_fit(y, post, dims, {"labels": labels, "nu": nu}, '{"family": "t"}')
    got = pointwise_loglik(idata)["y"].values
    for b in itertools.product(*map(range, BATCH)):
        for i in range(N):
            logp = np.log(weights[b]) + stats.t.logpdf(y[i], nu, means[b], sd[b])
            want = logp[labels[i]] if labels[i] >= 0 else logsumexp(logp)
            np.testing.assert_allclose(got[b + (i,)], want, rtol=1e-10)
    fit = fit_components(idata)
    assert isinstance(fit.family, StudentT) and fit.shape == BATCH
    assert {n: p.shape for n, p in fit.params.items()} == {
        n: (6, K) for n in ("means", "sigma", "nu")
    }


def test_mv_pointwise_loglik_with_missing_cells_and_labels(rng):
    params = mv_params(rng)
    x = rng.normal(0, 2, (N, D))
    x[2, 1] = x[5, [0, 1]] = np.nan
    weights = rng.dirichlet(np.ones(K), BATCH)
    labels = np.array([-1, 2, -1, -1, 0, 1, -1])
    post = {"weights": weights, **params}
    dims = {"weights": ["component"], "means": ["component", "feature"],
            "chol_cov": ["component", "feature", "feature_bis"]}  # fmt: skip
    idata = hand_fit(x, post, dims, {"labels": labels})  # no spec: found by `chol_cov`
    expected = np.log(weights)[..., None, :] + scipy_logpdf("mvnormal", x, params)
    got = pointwise_loglik(idata)["y"].values
    want = logsumexp(expected, axis=-1)
    rows = np.flatnonzero(labels >= 0)
    want[..., rows] = expected[..., rows, labels[rows]]  # the joint of the point and its label
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_array_equal(mv_pointwise_loglik(idata)["y"], got)


def test_assignment_probabilities_of_a_labelled_t_fit_match_scipy(rng):
    """Responsibilities averaged over draws; a labelled point is certain of its label."""
    y = rng.normal(0, 3, N)
    post = univariate_params(rng, with_nu=True)
    post["weights"] = rng.dirichlet(np.ones(K), BATCH)
    labels = np.array([-1, -1, 2, -1, 0, -1, -1])
    dims = {name: ["component"] for name in post}
    idata = hand_fit(y, post, dims, {"labels": labels}, '{"family": "t"}')
    resp = np.zeros((N, K))
    for b in itertools.product(*map(range, BATCH)):
        dens = post["weights"][b] * stats.t.pdf(
            y[:, None], post["nu"][b], post["means"][b], post["sigma"][b]
        )
        resp += dens / dens.sum(axis=1, keepdims=True)
    resp /= np.prod(BATCH)
    resp[labels >= 0] = np.eye(K)[labels[labels >= 0]]
    got = mixtures.assignment_probabilities(idata)["probability"].values
    np.testing.assert_allclose(got, resp, rtol=1e-10, atol=1e-15)
    new = np.array([-4.0, 0.0, 5.0])  # new data: no labels
    want = np.zeros((3, K))
    for b in itertools.product(*map(range, BATCH)):
        dens = post["weights"][b] * stats.t.pdf(
            new[:, None], post["nu"][b], post["means"][b], post["sigma"][b]
        )
        want += dens / dens.sum(axis=1, keepdims=True) / np.prod(BATCH)
    np.testing.assert_allclose(mixtures.predict_proba(idata, new), want, rtol=1e-10)
