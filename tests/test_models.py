import itertools

import numpy as np
import pymc as pm
import pytest
from scipy import stats
from scipy.special import logsumexp

import mixtures

FACTORIES = {
    "known": lambda y, **kw: mixtures.known_params_mixture(y, [10, 20, 35], [2, 2, 2], **kw),
    "shared": lambda y, **kw: mixtures.shared_sd_mixture(y, 3, **kw),
    "full": lambda y, **kw: mixtures.full_mixture(y, 3, **kw),
}


def _params(model, point):
    """Untransformed values of weights, means, sigma at a point of the value variables."""
    outs = model.replace_rvs_by_values([model["weights"], model["means"], model["sigma"]])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", point_fn=False)
    return fn(*[point[v.name] for v in model.value_vars])


def _random_point(model, seed):
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}


# --- structure -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("marginalized", [True, False])
def test_shared_names_coords_and_dims(y3, kind, marginalized):
    model = FACTORIES[kind](y3, marginalized=marginalized)
    assert isinstance(model, pm.Model)
    assert model.coords["component"] == (0, 1, 2)
    assert len(model.coords["obs_id"]) == len(y3)
    for name in ("weights", "means", "sigma", "y"):
        assert name in model.named_vars
    assert ("assignment" in model.named_vars) is (not marginalized)
    assert model.named_vars_to_dims["weights"] == ("component",)
    assert model.named_vars_to_dims["y"] == ("obs_id",)
    if not marginalized:
        assert model.named_vars_to_dims["assignment"] == ("obs_id",)
    assert [v.name for v in model.observed_RVs] == ["y"]


def test_free_variables_per_factory(y3):
    free = lambda m: sorted(v.name for v in m.free_RVs)  # noqa: E731
    assert free(FACTORIES["known"](y3, marginalized=True)) == ["weights"]
    assert free(FACTORIES["shared"](y3, marginalized=True)) == ["means", "sigma", "weights"]
    assert free(FACTORIES["full"](y3)) == ["means", "sigma", "weights"]  # marginalised by default
    assert free(FACTORIES["full"](y3, marginalized=False)) == [
        "assignment",
        "means",
        "sigma",
        "weights",
    ]
    assert mixtures.shared_sd_mixture(y3, 3)["sigma"].ndim == 0
    assert mixtures.full_mixture(y3, 3)["sigma"].ndim == 1


@pytest.mark.parametrize("kind", ["shared", "full"])
def test_ordered_means_start_is_valid_without_user_initval(y3, kind):
    model = FACTORIES[kind](y3, marginalized=True)
    point = model.initial_point()
    assert all(np.isfinite(v).all() for v in point.values())
    assert np.isfinite(model.compile_logp()(point))
    means = _params(model, point)[1]
    assert np.all(np.diff(means) > 0)


def test_ordered_start_survives_tied_data():
    y = np.r_[np.zeros(10), np.ones(3)]
    model = mixtures.full_mixture(y, 3, marginalized=True)
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_unordered_option(y3):
    model = mixtures.full_mixture(y3, 3, ordered=False, marginalized=True)
    assert "means_ordered__" not in model.initial_point()


def test_refit_on_new_data_without_rebuilding(y3):
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    new = y3[:100] + 1.0
    with model:
        pm.set_data({"y_data": new}, coords={"obs_id": np.arange(100)})
    point = model.initial_point()
    w, mu, sd = _params(model, point)
    expected = logsumexp(np.log(w) + stats.norm.logpdf(new[:, None], mu, sd), axis=1).sum()
    got = model.compile_logp(vars=[model["y"]])(point)
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_caller_arrays_are_not_modified(y3):
    y = y3.copy()
    means, sds = np.array([10.0, 20.0, 35.0]), np.array([2.0, 2.0, 2.0])
    priors = {"means": {"mu": [10.0, 20.0, 35.0], "sigma": 2.0}}
    before = (y.copy(), means.copy(), sds.copy(), {"means": dict(priors["means"])})
    m1 = mixtures.known_params_mixture(y, means, sds)
    m2 = mixtures.full_mixture(y, 3, priors=priors)
    np.testing.assert_array_equal(y, before[0])
    np.testing.assert_array_equal(means, before[1])
    np.testing.assert_array_equal(sds, before[2])
    assert priors == before[3]
    y[0] = 1e6  # and the models do not alias the caller's array
    assert m1["y_data"].get_value()[0] != 1e6
    assert m2["y_data"].get_value()[0] != 1e6


# --- log-densities against independent computations ------------------------------------------


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_marginal_loglik_equals_scipy_logsumexp(y3, kind):
    model = FACTORIES[kind](y3, marginalized=True)
    point = _random_point(model, seed=1)
    w, mu, sd = _params(model, point)
    sd = np.broadcast_to(sd, (3,))
    expected = logsumexp(np.log(w) + stats.norm.logpdf(y3[:, None], mu, sd), axis=1).sum()
    got = model.compile_logp(vars=[model["y"]])(point)
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_full_joint_density_equals_scipy(y3):
    """Priors included: Dirichlet(1), Normal(mean, 2 sd), HalfNormal(sd) for the defaults."""
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    point = _random_point(model, seed=2)
    w, mu, sd = _params(model, point)
    s = y3.std()
    expected = (
        stats.dirichlet.logpdf(w, np.ones(3))
        + stats.norm.logpdf(mu, y3.mean(), 2 * s).sum()
        + stats.halfnorm.logpdf(sd, scale=s).sum()
        + logsumexp(np.log(w) + stats.norm.logpdf(y3[:, None], mu, sd), axis=1).sum()
    )
    got = model.compile_logp(jacobian=False)(point)
    np.testing.assert_allclose(got, expected, rtol=1e-7)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_latent_density_summed_over_assignments_equals_marginal(kind):
    y = np.array([8.0, 19.5, 22.0, 36.0])
    latent = FACTORIES[kind](y, marginalized=False)
    marginal = FACTORIES[kind](y, marginalized=True)
    point = _random_point(marginal, seed=3)
    joint = latent.compile_logp(vars=[latent["assignment"], latent["y"]])
    terms = [
        joint({**point, "assignment": np.array(z)})
        for z in itertools.product(range(3), repeat=len(y))
    ]
    expected = marginal.compile_logp(vars=[marginal["y"]])(point)
    np.testing.assert_allclose(logsumexp(terms), expected, rtol=1e-7)


# --- priors ----------------------------------------------------------------------------------


def test_book_priors_are_expressible(y3):
    priors = {
        "means": {"mu": [10, 20, 35], "sigma": 2},
        "sigma": {"dist": "HalfCauchy", "beta": 5},
        "weights": {"a": 1.0},
    }
    model = mixtures.shared_sd_mixture(y3, 3, priors=priors, marginalized=True)
    point = _random_point(model, seed=4)
    w, mu, sd = _params(model, point)
    expected = (
        stats.dirichlet.logpdf(w, np.ones(3))
        + stats.norm.logpdf(mu, [10, 20, 35], 2).sum()
        + stats.halfcauchy.logpdf(sd, scale=5)
    )
    prior_logp = model.compile_logp(
        vars=[model["weights"], model["means"], model["sigma"]], jacobian=False
    )(point)
    np.testing.assert_allclose(prior_logp, expected, rtol=1e-7)


def test_prior_params_merge_over_defaults(y3):
    model = mixtures.full_mixture(y3, 3, priors={"means": {"sigma": 1.0}}, marginalized=True)
    point = _random_point(model, seed=5)
    mu = _params(model, point)[1]
    got = model.compile_logp(vars=[model["means"]], jacobian=False)(point)
    np.testing.assert_allclose(got, stats.norm.logpdf(mu, y3.mean(), 1.0).sum(), rtol=1e-7)


def test_known_params_weights_prior(y3):
    model = mixtures.known_params_mixture(
        y3, [10, 20, 35], [2, 2, 2], priors={"weights": {"a": [2, 3, 4]}}
    )
    point = model.initial_point()
    w = _params(model, point)[0]
    got = model.compile_logp(vars=[model["weights"]], jacobian=False)(point)
    np.testing.assert_allclose(got, stats.dirichlet.logpdf(w, [2, 3, 4]), rtol=1e-7)
