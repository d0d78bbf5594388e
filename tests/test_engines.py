"""Engines, the auto rule, compile-once refits and the initval-free ordered transform."""

import importlib.util
import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pymc.distributions.transforms import Ordered

import mixtures
from mixtures import engines

HAS = {name: importlib.util.find_spec(name) is not None for name in ("nutpie", "numpyro")}
QUIET = dict(progressbar=False)


def _quiet_sample(model, **kwargs):
    """Sample, tolerating a ConvergenceWarning (short runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixtures.ConvergenceWarning)
        return mixtures.sample(model, **QUIET, **kwargs)


# --- ordered means without initval --------------------------------------------------------


@pytest.mark.parametrize("factory", [mixtures.full_mixture, mixtures.shared_sd_mixture])
@pytest.mark.parametrize("marginalized", [True, False])
def test_ordered_models_have_no_initval_and_a_finite_start(y3, factory, marginalized):
    model = factory(y3, 3, marginalized=marginalized)
    assert all(v is None for v in model.rvs_to_initial_values.values())
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    means = mixtures.models.rebuild(model).compile_fn(
        model.replace_rvs_by_values([model["means"]])[0],
        inputs=model.value_vars,
        on_unused_input="ignore",
    )
    # the default prior's means are all equal: the start falls back to the data's quantiles
    start = np.quantile(y3, [1 / 6, 1 / 2, 5 / 6])
    np.testing.assert_allclose(means(point), start)


def test_ordered_gaps_forward_is_pymcs_on_increasing_values():
    rng = np.random.default_rng(0)
    ours, pymcs = mixtures.OrderedGaps(start=[0.0, 1.0, 2.0, 3.0]), Ordered()
    for _ in range(20):
        x = np.cumsum(rng.exponential(2.0, 4)) + rng.normal(0, 10)
        np.testing.assert_allclose(ours.forward(pt.as_tensor(x)).eval(), pymcs.forward(x).eval())
        back = ours.backward(ours.forward(pt.as_tensor(x))).eval()
        np.testing.assert_allclose(back, x)


@pytest.mark.parametrize("x", [[1.0, 1.0, 1.0], [3.0, 2.0, 1.0], [0.0, 2.0, 2.0]])
def test_ordered_gaps_forward_maps_non_increasing_values_to_the_start(x):
    start = np.array([-1.0, 0.5, 4.0])
    got = mixtures.OrderedGaps(start).forward(pt.as_tensor(np.array(x))).eval()
    np.testing.assert_allclose(got, [-1.0, np.log(1.5), np.log(3.5)])


def test_book_prior_starts_at_the_prior_means(y3):
    priors = {"means": {"mu": [10, 20, 35], "sigma": 2}}
    model = mixtures.full_mixture(y3, 3, marginalized=True, priors=priors)
    start = model.initial_point()["means_ordered__"]
    np.testing.assert_allclose(start, [10, np.log(10), np.log(15)])


def test_pymc_extras_marginalize_accepts_the_latent_model(y3):
    pmx = pytest.importorskip("pymc_extras")
    latent = mixtures.full_mixture(y3, 3)
    marginalized = pmx.marginalize(latent, ["assignment"])
    ours = mixtures.full_mixture(y3, 3, marginalized=True)
    rng = np.random.default_rng(1)
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in ours.initial_point().items()}
        np.testing.assert_allclose(
            marginalized.compile_logp()(point), ours.compile_logp()(point), rtol=1e-10
        )


# --- the auto rule and argument checks ------------------------------------------------------


def test_auto_rule(y3):
    conjugate = mixtures.full_mixture(y3, 3, marginalized=True)
    assert mixtures.choose_sampler(conjugate)[0] == "gibbs"
    assert (
        mixtures.choose_sampler(mixtures.known_params_mixture(y3, [9, 21, 35], [2] * 3))[0]
        == "gibbs"
    )
    studentt = {"means": {"dist": "StudentT", "nu": 3, "mu": 20, "sigma": 10}}
    latent_t = mixtures.full_mixture(y3, 3, priors=studentt)
    assert mixtures.choose_sampler(latent_t)[0] == "pymc"
    marginal_t = mixtures.full_mixture(y3, 3, marginalized=True, priors=studentt)
    assert mixtures.choose_sampler(marginal_t)[0] == "pymc"  # N = 215 < 2000
    big = np.concatenate([y3] * 10)
    marginal_big = mixtures.full_mixture(big, 3, marginalized=True, priors=studentt)
    expected = "nutpie" if HAS["nutpie"] else "pymc"
    assert mixtures.choose_sampler(marginal_big)[0] == expected


def test_auto_choice_is_recorded(y3):
    idata = _quiet_sample(
        mixtures.full_mixture(y3, 3, marginalized=True), draws=50, tune=50, chains=1
    )
    attrs = idata.posterior.attrs
    assert attrs["mixtures_sampler"] == "gibbs"
    assert "conjugate" in attrs["mixtures_sampler_reason"]
    # the latent twin's assignments are not kept; the marginal model's parameters are
    assert set(idata.posterior.data_vars) == {"weights", "means", "sigma"}
    assert idata.observed_data["y"].shape == (215,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": "stan"}, r"`sampler` should be one of \['auto'"),
        ({"sampler": "nutpie", "marginalized": False}, r"should get a marginalised model"),
        ({"log_likelihood": "yes"}, r"`log_likelihood` should be True, False or 'auto'"),
    ],
)
def test_bad_engine_arguments(y3, kwargs, message):
    marginalized = kwargs.pop("marginalized", True)
    model = mixtures.full_mixture(y3, 3, marginalized=marginalized)
    with pytest.raises(ValueError, match=message):
        mixtures.sample(model, draws=10, tune=10, chains=1, **QUIET, **kwargs)


def test_missing_engine_is_a_clear_error(y3, monkeypatch):
    monkeypatch.setattr(
        engines, "available_samplers", lambda: {"pymc": True, "gibbs": True, "nutpie": False}
    )
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    with pytest.raises(ValueError, match=r"needs the package 'nutpie'.*mixtures\[fast\]"):
        mixtures.compile_model(model, sampler="nutpie")


def test_progressbar_default_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MIXTURES_PROGRESSBAR", "0")
    assert engines.default_progressbar() is False
    monkeypatch.setenv("MIXTURES_PROGRESSBAR", "1")
    assert engines.default_progressbar() is True
    monkeypatch.delenv("MIXTURES_PROGRESSBAR")
    assert engines.default_progressbar() is True


def test_log_likelihood_auto_skips_huge_arrays(y3, monkeypatch):
    monkeypatch.setattr(mixtures.inference, "_LOGLIK_MAX_VALUES", 1000)
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    idata = _quiet_sample(model, draws=20, tune=20, chains=1)
    assert "log_likelihood" not in idata.groups()
    assert idata.posterior.attrs["mixtures_log_likelihood"].startswith("not stored: 4,300 values")
    forced = _quiet_sample(model, draws=20, tune=20, chains=1, log_likelihood=True)
    assert forced.log_likelihood["y"].shape == (1, 20, 215)


# --- every engine: same posterior, reproducible --------------------------------------------

ENGINES = ["gibbs", "pymc"] + [name for name in ("nutpie", "numpyro") if HAS[name]]


@pytest.fixture(scope="module")
def engine_fits(y3):
    """Each engine on the same marginalised model, twice with one seed."""
    fits = {}
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    for name in ENGINES:
        kw = dict(draws=1000, tune=1000, chains=2, random_seed=21, sampler=name)
        fits[name] = (_quiet_sample(model, **kw), _quiet_sample(model, **kw))
    return fits


@pytest.mark.parametrize("name", ENGINES)
def test_engine_is_reproducible(engine_fits, name):
    first, second = engine_fits[name]
    assert first.posterior.attrs["mixtures_sampler"] == name
    for var in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(first.posterior[var], second.posterior[var])


@pytest.mark.parametrize("name", [e for e in ENGINES if e != "pymc"])
def test_engines_agree_with_pymc_nuts(engine_fits, name):
    reference, ours = engine_fits["pymc"][0], engine_fits[name][0]
    names = ["weights", "means", "sigma"]
    ta, tb = (az.summary(i, var_names=names, round_to="none") for i in (reference, ours))
    mcse = np.sqrt(ta["mcse_mean"] ** 2 + tb["mcse_mean"] ** 2)
    np.testing.assert_array_less(np.abs(ta["mean"] - tb["mean"]), 4 * mcse)
    np.testing.assert_allclose(ta["sd"], tb["sd"], rtol=0.2)


def test_all_engines_give_the_same_groups(engine_fits):
    groups = {name: sorted(fits[0].groups()) for name, fits in engine_fits.items()}
    assert len({tuple(g) for g in groups.values()}) == 1, groups


# --- compile once, fit many ------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["gibbs", "pymc"])
def test_refit_on_new_data_reuses_compiled_steps(y3, sampler):
    compiled = mixtures.compile_model(
        mixtures.full_mixture(y3, 3, marginalized=True), sampler=sampler
    )
    kw = dict(draws=300, tune=300, chains=1, random_seed=3, progressbar=False)
    first = compiled.sample(**kw)
    steps, seconds = list(compiled._steps), compiled.compile_seconds
    rng = np.random.default_rng(0)
    shifted = np.concatenate([y3, rng.choice(y3, 100)]) + 100.0  # new N, new location
    second = compiled.sample(shifted, **kw)
    assert compiled._steps == steps and compiled.compile_seconds == seconds
    assert second.observed_data["y"].shape == (315,)
    assert compiled.n_fits == 2
    delta = second.posterior["means"].mean() - first.posterior["means"].mean()
    assert abs(float(delta) - 100.0) < 1.0
    # the refit equals a fresh compile of the same model (its default priors were scaled to
    # the data it was built on) on the same data and seed
    fresh = mixtures.compile_model(
        mixtures.full_mixture(y3, 3, marginalized=True), sampler=sampler
    ).sample(shifted, **kw)
    np.testing.assert_allclose(second.posterior["means"], fresh.posterior["means"], rtol=1e-8)


def test_latent_refit_with_different_n(y3):
    compiled = mixtures.compile_model(mixtures.shared_sd_mixture(y3, 3))
    kw = dict(draws=100, tune=100, chains=1, random_seed=1, progressbar=False)
    compiled.sample(**kw)
    idata = compiled.sample(y3[:100], **kw)
    assert compiled.model["assignment"].eval().shape == (100,)
    assert idata.posterior["assignment"].shape == (1, 100, 100)


def test_sample_reuses_the_cached_handle(y3):
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    _quiet_sample(model, draws=20, tune=20, chains=1)
    handle = engines._CACHE[model][("gibbs", "gibbs")]
    with model:
        pm.set_data({"y_data": y3[:150]}, coords={"obs_id": np.arange(150)})
    idata = _quiet_sample(model, draws=20, tune=20, chains=1)
    assert handle.n_fits == 2
    assert idata.observed_data["y"].shape == (150,)


@pytest.mark.skipif(not HAS["nutpie"], reason="nutpie not installed")
def test_nutpie_refit_does_not_recompile(y3, engine_fits):
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    compiled = mixtures.compile_model(model, sampler="nutpie")
    kw = dict(draws=200, tune=200, chains=1, random_seed=2, progressbar=False)
    compiled.sample(**kw)
    seconds = compiled.compile_seconds
    idata = compiled.sample(y3 + 50.0, **kw)
    assert compiled.compile_seconds == seconds
    assert abs(float(idata.posterior["means"].mean()) - float(y3.mean()) - 50.0) < 2.0
