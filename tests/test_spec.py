"""The resolved spec: one source of truth per model, priors fixed as numbers at build time."""

import json

import numpy as np
import pymc as pm
import pytest
from scipy import stats

import mixtures
from mixtures.model.spec import SCALE_FAMILIES, resolve_priors


def test_spec_travels_with_the_model_and_is_resolved_to_numbers(y3):
    model = mixtures.full_mixture(y3, 3)
    spec = mixtures.spec_of(model)
    assert (spec.kind, spec.k, spec.marginalized, spec.ordered) == ("full", 3, True, True)
    np.testing.assert_allclose(spec.priors["means"].params["mu"], np.full(3, np.mean(y3)))
    np.testing.assert_allclose(spec.priors["means"].params["sigma"], np.full(3, 2 * np.std(y3)))
    np.testing.assert_allclose(spec.priors["sigma"].params["sigma"], np.full(3, np.std(y3)))
    # the model's own prior parameters are the spec's numbers
    means_op_params = model["means"].owner.op.dist_params(model["means"].owner)
    np.testing.assert_allclose(means_op_params[0].eval(), spec.priors["means"].params["mu"])
    # and they are frozen: no later data can move them
    with pytest.raises(ValueError, match="read-only"):
        spec.priors["means"].params["mu"][0] = 0.0
    with model:
        pm.set_data({"y_data": y3 + 100}, coords={"obs_id": np.arange(y3.size)})
    assert mixtures.spec_of(model) is spec
    json.loads(spec.to_json())  # a run record can hold it


def test_both_variants_share_their_priors(y3):
    latent = mixtures.spec_of(mixtures.shared_sd_mixture(y3, 3, marginalized=False))
    marginal = mixtures.spec_of(mixtures.shared_sd_mixture(y3, 3, marginalized=True))
    assert latent != marginal
    assert latent.replace(marginalized=True) == marginal


def test_spec_of_refuses_foreign_models():
    with pytest.raises(ValueError, match="should be built by a mixtures factory"):
        mixtures.spec_of(pm.Model())


def test_known_sd_model(y3):
    model = mixtures.full_mixture(y3, 3, sigma=[2.0, 2.0, 2.0])
    spec = mixtures.spec_of(model)
    assert spec.kind == "known_sd" and set(spec.priors) == {"weights", "means"}
    assert {v.name for v in model.free_RVs} == {"weights", "means"}
    np.testing.assert_allclose(model["sigma"].get_value(), 2.0)
    shared = mixtures.shared_sd_mixture(y3, 3, sigma=2.0)
    assert mixtures.spec_of(shared).kind == "known_sd"
    with pytest.raises(ValueError, match=r"`sigma` should be one number > 0"):
        mixtures.shared_sd_mixture(y3, 3, sigma=-1.0)
    with pytest.raises(ValueError, match=r"`sigma` should contain only values > 0"):
        mixtures.full_mixture(y3, 3, sigma=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sigma'\]"):
        mixtures.full_mixture(y3, 3, sigma=2.0, priors={"sigma": {"sigma": 1}})


@pytest.mark.parametrize(
    ("priors", "message"),
    [
        ({"means": {"sigma": -1}}, r"`priors\['means'\]\['sigma'\]` should be > 0, but got -1"),
        ({"weights": {"a": -1}}, r"`priors\['weights'\]\['a'\]` should be > 0, but got -1"),
        ({"sigma": {"sigma": -1}}, r"`priors\['sigma'\]\['sigma'\]` should be > 0, but got -1"),
        ({"sigma": {"sigma": 0}}, r"`priors\['sigma'\]\['sigma'\]` should be > 0, but got 0"),
        ({"sigma": {"sigma": np.nan}}, r"`priors\['sigma'\]\['sigma'\]` should be finite"),
        ({"sigma": {"dist": "Normal", "sigma": 1}}, r"should be one of \['HalfNormal'"),
        ({"sigma": {"dist": "Uniform", "lower": -1, "upper": 5}}, r"should be >= 0"),
        ({"sigma": {"dist": "Uniform", "lower": 5, "upper": 1}}, r"should be > lower"),
        ({"sigma": {"dist": "HalfCauchy", "sigma": 5}}, r"should hold the parameters \['beta'\]"),
        ({"means": {"mu": [1, 2]}}, r"should be a scalar or have shape \(3,\)"),
        ({"mean": {"mu": 1}}, r"keys should be among \['weights', 'means', 'sigma'\]"),
        ({"means": 3}, r"`priors\['means'\]` should be a dict"),
        ({"means": {"mu": "a"}}, r"should be a number or an array of numbers"),
    ],
)
def test_bad_priors_are_refused_at_build_time(y3, priors, message):
    with pytest.raises(ValueError, match=message):
        mixtures.full_mixture(y3, 3, priors=priors)


def test_uniform_scale_prior_of_the_stan_reference_model(y3):
    model = mixtures.full_mixture(
        y3, 3, priors={"sigma": {"dist": "Uniform", "lower": 0, "upper": 20}}
    )
    prior = mixtures.spec_of(model).priors["sigma"]
    assert prior.dist == "Uniform"
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_aliases_convert_to_canonical_parameters(y3):
    spec = mixtures.spec_of(
        mixtures.full_mixture(y3, 2, priors={"sigma": {"dist": "Gamma", "mu": 2.0, "sigma": 1.0}})
    )
    np.testing.assert_allclose(spec.priors["sigma"].params["alpha"], 4.0)
    np.testing.assert_allclose(spec.priors["sigma"].params["beta"], 2.0)
    tau = mixtures.spec_of(mixtures.full_mixture(y3, 2, priors={"sigma": {"tau": 4.0}}))
    np.testing.assert_allclose(tau.priors["sigma"].params["sigma"], 0.5)


def test_caller_priors_are_not_kept_or_modified(y3):
    user = {"means": {"mu": [10.0, 20.0, 35.0], "sigma": 2.0}}
    spec = mixtures.spec_of(mixtures.full_mixture(y3, 3, priors=user))
    user["means"]["mu"][0] = -1000.0
    assert spec.priors["means"].params["mu"][0] == 10.0


PARAMS = {
    "HalfNormal": {"sigma": 2.0},
    "HalfCauchy": {"beta": 1.5},
    "HalfStudentT": {"nu": 3.0, "sigma": 2.0},
    "Exponential": {"lam": 0.7},
    "Gamma": {"alpha": 2.5, "beta": 1.5},
    "InverseGamma": {"alpha": 3.0, "beta": 2.0},
    "LogNormal": {"mu": 0.3, "sigma": 0.8},
    "Uniform": {"lower": 0.5, "upper": 4.0},
}


@pytest.mark.parametrize("name", sorted(SCALE_FAMILIES))
def test_scale_family_logpdf_matches_scipy_up_to_a_constant(name):
    family = SCALE_FAMILIES[name]
    params = PARAMS[name]
    x = np.linspace(0.6, 3.9, 25)
    ours = family.logpdf(x, **params)
    if name == "HalfStudentT":
        theirs = np.log(2) + stats.t(df=3.0, scale=2.0).logpdf(x)
    else:
        theirs = family.scipy(**params).logpdf(x)
    diff = ours - theirs
    np.testing.assert_allclose(diff, diff[0], atol=1e-10)
    # and it agrees with PyMC's own density of the family
    dist = getattr(pm, name).dist(**params)
    pymc_logp = pm.logp(dist, x).eval()
    np.testing.assert_allclose(ours - pymc_logp, (ours - pymc_logp)[0], atol=1e-8)
    assert family.logpdf(np.array([-1.0]), **params)[0] == -np.inf


def test_resolve_priors_keeps_defaults_for_omitted_keys():
    defaults = mixtures.model.univariate.default_priors(np.array([0.0, 1.0, 2.0]), 2)
    out = resolve_priors(
        {"means": {"sigma": 5.0}}, defaults, {"weights": (2,), "means": (2,), "sigma": (2,)}
    )
    np.testing.assert_allclose(out["means"].params["mu"], 1.0)
    np.testing.assert_allclose(out["means"].params["sigma"], 5.0)
    assert out["sigma"] is defaults["sigma"]


def test_mv_spec_is_resolved(y3):
    X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]]
    spec = mixtures.spec_of(mixtures.mv_mixture(X, 3))
    assert (spec.kind, spec.n_features, spec.covariance, spec.ordered_by) == ("mv", 2, "full", 0)
    np.testing.assert_allclose(spec.priors["means"].params["mu"][0], X.mean().to_numpy())


# --- one prior system: the multivariate priors go through resolve_priors ------------------


def test_mv_priors_resolve_through_the_family_table():
    """Stick-breaking takes its family default; a diagonal psi becomes its matrix; Normal only."""
    X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
    spec = mixtures.spec_of(
        mixtures.mv_mixture(
            X, 3, ordered_by=None, priors={"weights": {"dist": "StickBreaking"}, "wishart": {"psi": [1.0, 4.0]}}
        )
    )
    assert spec.priors["weights"].to_dict() == {"dist": "StickBreaking", "alpha": 1.0}
    np.testing.assert_array_equal(spec.priors["wishart"].params["psi"], [[1.0, 0.0], [0.0, 4.0]])
    assert float(spec.priors["wishart"].params["nu"]) == X.shape[1] + 2.0  # the default kept
    with pytest.raises(ValueError, match=r"`priors\['means'\]\['dist'\]` should be one of \['Normal'\]"):
        mixtures.mv_mixture(X, 3, priors={"means": {"dist": "StudentT", "nu": 3}})
    with pytest.raises(ValueError, match=r"`priors\['weights'\]\['alpha'\]` should be > 0, but got 0.0"):
        mixtures.mv_mixture(X, 3, priors={"weights": {"dist": "StickBreaking", "alpha": 0}})
    with pytest.raises(ValueError, match=r"`priors\['corr'\]\['eta'\]` should be > 0, but got -1.0"):
        mixtures.mv_mixture(X, 3, covariance_prior="lkj", priors={"corr": {"eta": -1}})


def test_mfm_mv_priors_use_the_same_checks():
    X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
    with pytest.raises(ValueError, match=r"`priors\['wishart'\]\['nu'\]` should be > 1, but got 0.5"):
        mixtures.mfm_mixture(X, [0.5, 0.5], priors={"wishart": {"nu": 0.5}})
    with pytest.raises(ValueError, match=r"symmetric positive-definite \(2, 2\)"):
        mixtures.mfm_mixture(X, [0.5, 0.5], priors={"wishart": {"psi": [[1.0, 0.0, 0.0]]}})
    spec = mixtures.spec_of(mixtures.mfm_mixture(X, [0.5, 0.5], priors={"means": {"sigma": 3.0}}))
    np.testing.assert_array_equal(spec.priors["means"].params["sigma"], [3.0, 3.0])


def test_inverse_wishart_entry_matches_scipy_and_every_family_is_consistent():
    from mixtures.model.spec import MV_PRIOR_FAMILIES, PRIOR_FAMILIES, PRIOR_TABLE

    psi = np.array([[2.0, 0.5], [0.5, 1.0]])
    frozen = PRIOR_TABLE["InverseWishart"].scipy(nu=5.0, psi=psi)
    draws = frozen.rvs(size=20000, random_state=np.random.default_rng(0))
    np.testing.assert_allclose(draws.mean(axis=0), psi / (5.0 - 2 - 1), rtol=0.05)
    for table in (*PRIOR_FAMILIES.values(), *MV_PRIOR_FAMILIES.values()):
        for name, family in table.items():
            assert family is PRIOR_TABLE[name]
            assert set(family.positive) <= set(family.params)
            assert set(family.defaults) <= set(family.params)


def test_shared_parameter_docs_are_filled():
    for func in (
        mixtures.full_mixture, mixtures.shared_sd_mixture, mixtures.known_params_mixture,
        mixtures.mv_mixture, mixtures.mfm_mixture, mixtures.fit_many,
    ):  # fmt: skip
        assert "%(" not in func.__doc__
        assert "    y : array-like" in func.__doc__ or "    X : array-like" in func.__doc__ or (
            "    model : pymc.Model" in func.__doc__
        )
    assert "    nu : float, array-like of shape (k,) or None\n        The t family's" in (
        mixtures.full_mixture.__doc__
    )
