"""Engines: the registry and its auto rule, one finishing path, and no stale data or priors.

Two properties are checked for every engine: (1) sampling again after ``pm.set_data``
samples the new data; (2) the priors are the model's own, resolved when it was built,
whichever engine runs and whatever the data are now. Posteriors are checked against
independent computations (quadrature of the exact posterior), not against another run.
"""

import importlib.util
import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymc.distributions.transforms import Ordered
from scipy import stats
from scipy.special import logsumexp

import mixtures
from mixtures import engines

HAS = {name: importlib.util.find_spec(name) is not None for name in ("nutpie", "numpyro")}
QUIET = dict(progressbar=False)
ENGINES = ["gibbs", "pymc"] + [name for name in ("nutpie", "numpyro") if HAS[name]]
SLOW_REFIT = {"nutpie", "numpyro"}


def _quiet_sample(model, **kwargs):
    """Sample, tolerating a ConvergenceWarning (short runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixtures.ConvergenceWarning)
        return mixtures.sample(model, **QUIET, **kwargs)


def _mixture_mean(idata):
    """Posterior mean of sum_j w_j mu_j: the model's mean of y, whatever the labels."""
    return float((idata.posterior["weights"] * idata.posterior["means"]).sum("component").mean())


def _set_data(model, y):
    with model:
        pm.set_data({"y_data": y}, coords={"obs_id": np.arange(len(y))})


# --- exact posteriors by quadrature (independent of every engine) ----------------------------


def one_component_posterior(y, prior_mu, prior_sd, sigma_scale):
    """Posterior means of (mu, sigma) for k = 1: Normal and HalfNormal priors, 2-D quadrature."""
    m_hat, s_hat = np.mean(y), max(np.std(y), 1e-3)
    mu = np.linspace(m_hat - 8 * s_hat, m_hat + 8 * s_hat, 801)
    sd = np.linspace(1e-3 * s_hat, 8 * s_hat, 800)
    M, S = np.meshgrid(mu, sd, indexing="ij")
    logp = stats.norm.logpdf(M, prior_mu, prior_sd) + stats.halfnorm.logpdf(S, scale=sigma_scale)
    logp += stats.norm.logpdf(y[:, None, None], M, S).sum(axis=0)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    return float((p * M).sum()), float((p * S).sum())


def known_weight_posterior_mean(y, means, sds, a):
    """Posterior mean of weights[0] for k = 2 with known components: 1-D quadrature."""
    w = np.linspace(1e-6, 1 - 1e-6, 20001)
    comp = stats.norm.logpdf(y[:, None], means, sds)  # (n, 2)
    loglik = logsumexp(
        np.stack([np.log(w)[:, None] + comp[:, 0], np.log1p(-w)[:, None] + comp[:, 1]]), axis=0
    ).sum(axis=1)
    logp = stats.beta.logpdf(w, a[0], a[1]) + loglik
    p = np.exp(logp - logp.max())
    return float((p * w).sum() / p.sum())


# --- the auto rule, recorded the same way on every path --------------------------------------


def test_auto_rule(y3):
    assert mixtures.choose_sampler(mixtures.full_mixture(y3, 3))[0] == "gibbs"
    assert mixtures.choose_sampler(mixtures.full_mixture(y3, 3, marginalized=False))[0] == "gibbs"
    known = mixtures.known_params_mixture(y3, [9, 21, 35], [2] * 3)
    assert mixtures.choose_sampler(known)[0] == "gibbs"
    studentt = {"means": {"dist": "StudentT", "nu": 3, "mu": 20, "sigma": 10}}
    name, why = mixtures.choose_sampler(mixtures.full_mixture(y3, 3, priors=studentt))
    assert name == "pymc" and "means prior is StudentT" in why and "N = 215 < 2000" in why
    big = np.concatenate([y3] * 10)
    marginal_big = mixtures.full_mixture(big, 3, priors=studentt)
    assert mixtures.choose_sampler(marginal_big)[0] == ("nutpie" if HAS["nutpie"] else "pymc")
    latent = mixtures.full_mixture(y3, 3, marginalized=False)
    assert mixtures.choose_sampler(latent, latent_sampler="nuts")[0] == "pymc"
    X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]]
    name, why = mixtures.choose_sampler(mixtures.mv_mixture(X, 3, covariance_prior="lkj"))
    assert name == "pymc" and "multivariate" in why


@pytest.fixture(scope="module")
def path_fits(y3):
    """The same latent model through every path that can sample it."""
    latent = mixtures.full_mixture(y3, 3, marginalized=False)
    kw = dict(draws=100, tune=100, chains=2, random_seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixtures.ConvergenceWarning)
        return {
            "auto": mixtures.sample(latent, **QUIET, **kw),
            "handle": mixtures.compile_model(latent).sample(**QUIET, **kw),
            "nuts": mixtures.sample(latent, latent_sampler="nuts", **QUIET, **kw),
            "step": mixtures.sample(
                latent,
                step=[
                    mixtures.AssignmentGibbs([latent["assignment"]], model=latent),
                    pm.NUTS([latent["weights"], latent["means"], latent["sigma"]], model=latent),
                ],
                **QUIET,
                **kw,
            ),
        }


def test_every_path_records_engine_reason_steps_and_spec(path_fits, y3):
    expected = {
        "auto": ("gibbs", "Gibbs[assignment, weights, means, sigma (MH)]"),
        "handle": ("gibbs", "Gibbs[assignment, weights, means, sigma (MH)]"),
        "nuts": ("pymc", "AssignmentGibbs[assignment] + NUTS[weights, means, sigma]"),
        "step": ("pymc", "user-given steps"),
    }
    spec_json = mixtures.spec_of(mixtures.full_mixture(y3, 3, marginalized=False)).to_json()
    for path, (sampler, steps) in expected.items():
        attrs = path_fits[path].posterior.attrs
        assert attrs["mixtures_sampler"] == sampler, path
        assert attrs["mixtures_steps"].startswith(steps), path
        assert attrs["mixtures_sampler_reason"], path
        assert attrs["mixtures_spec"] == spec_json, path
        assert {
            "posterior",
            "sample_stats",
            "log_likelihood",
            "observed_data",
            "constant_data",
        } <= set(path_fits[path].groups()), path
        assert path_fits[path].posterior["assignment"].shape == (2, 100, 215), path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": "stan"}, r"`sampler` should be one of \['auto', 'gibbs'"),
        ({"sampler": "nutpie", "marginalized": False}, r"cannot sample this model: latent model"),
        ({"log_likelihood": "yes"}, r"`log_likelihood` should be True, False or 'auto'"),
        ({"latent_sampler": "hmc"}, r"`latent_sampler` should be 'gibbs' or 'nuts'"),
        ({"draws": 0}, r"`draws` and `chains` should be >= 1"),
        ({"tempering": "hot"}, r"`tempering` should be 'auto', False, an int"),
        ({"tempering": [0.5, 0.2, 1.0]}, r"should be an increasing array"),
        ({"sampler": "pymc", "tempering": 8}, r"`tempering` is an option of the Gibbs engine"),
    ],
)
def test_bad_engine_arguments(y3, kwargs, message):
    marginalized = kwargs.pop("marginalized", True)
    model = mixtures.full_mixture(y3, 3, marginalized=marginalized)
    with pytest.raises(ValueError, match=message):
        mixtures.sample(model, draws=kwargs.pop("draws", 10), tune=10, chains=1, **QUIET, **kwargs)


def test_missing_engine_is_a_clear_error(y3, monkeypatch):
    monkeypatch.setattr(engines.NutpieEngine, "installed", staticmethod(lambda: False))
    model = mixtures.full_mixture(y3, 3)
    with pytest.raises(ValueError, match=r"nutpie is not installed.*mixtures\[fast\]"):
        mixtures.compile_model(model, sampler="nutpie")


def test_progressbar_default_follows_the_environment(monkeypatch):
    from mixtures.progress import default_progressbar

    monkeypatch.setenv("MIXTURES_PROGRESSBAR", "0")
    assert default_progressbar() is False
    monkeypatch.setenv("MIXTURES_PROGRESSBAR", "1")
    assert default_progressbar() is True
    monkeypatch.delenv("MIXTURES_PROGRESSBAR")
    assert default_progressbar() is True


def test_log_likelihood_auto_skips_huge_arrays(y3, monkeypatch):
    monkeypatch.setattr(mixtures.analysis.loglik, "LOGLIK_MAX_VALUES", 1000)
    model = mixtures.full_mixture(y3, 3)
    idata = _quiet_sample(model, draws=20, tune=20, chains=1)
    assert "log_likelihood" not in idata.groups()
    assert idata.posterior.attrs["mixtures_log_likelihood"].startswith("not stored: 4,300 values")
    forced = _quiet_sample(model, draws=20, tune=20, chains=1, log_likelihood=True)
    assert forced.log_likelihood["y"].shape == (1, 20, 215)


def test_one_component_gives_no_false_alarm(y3):
    # weights[0] is 1 in every draw: no r_hat for it (pytest turns any warning into an error)
    idata = mixtures.sample(mixtures.full_mixture(y3, 1), draws=500, tune=200, **QUIET)
    assert float(idata.posterior["weights"].std()) == 0.0


# --- (1) sampling again after pm.set_data samples the new data --------------------------------


# nutpie and numpyro compile per model (26 s and 18 s here): their refits run in the slow tier.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_REFIT else n for n in ENGINES]
)
def test_sampling_after_set_data_uses_the_new_data(y3, name):
    model = mixtures.full_mixture(y3, 3)
    kw = dict(draws=200, tune=300, chains=2, random_seed=5, sampler=name)
    first = _quiet_sample(model, **kw)
    _set_data(model, y3 + 100.0)
    second = _quiet_sample(model, **kw)
    assert second.observed_data["y"].values.mean() == pytest.approx(y3.mean() + 100.0)
    # the mixture's mean, sum_j w_j mu_j, follows the data (also where a NUTS chain leaves a
    # component empty at the prior, far from the shifted data)
    assert _mixture_mean(first) == pytest.approx(y3.mean(), abs=1.0)
    assert _mixture_mean(second) == pytest.approx(y3.mean() + 100.0, abs=1.0)


@pytest.mark.parametrize("name", ["gibbs", "pymc"])
def test_a_kept_handle_reads_the_data_at_every_call(y3, name):
    model = mixtures.full_mixture(y3, 3, marginalized=name == "gibbs")
    handle = mixtures.compile_model(model, sampler=name)
    kw = dict(draws=200, tune=200, chains=2, random_seed=3, progressbar=False, warn=False)
    handle.sample(**kw)
    compiled = handle.compile_seconds
    _set_data(model, y3[:150] - 50.0)
    second = handle.sample(**kw)
    third = handle.sample(y3 + 7.0, **kw)
    assert handle.compile_seconds == compiled  # nothing recompiled
    assert second.posterior["means"].values.mean() < 0
    assert third.observed_data["y"].shape == (215,)
    assert abs(float(third.posterior["means"].mean()) - float(y3.mean()) - 7.0) < 3.0


# --- (2) the priors are the model's own, whatever the engine and the data --------------------


@pytest.mark.parametrize("name", ENGINES)
def test_priors_are_those_resolved_at_build_time_for_every_engine(name):
    rng = np.random.default_rng(0)
    built_on = rng.normal(0.0, 1.0, 6)
    model = mixtures.full_mixture(built_on, 1)  # means ~ N(mean, 2 sd), sigma ~ HalfNormal(sd)
    spec = mixtures.spec_of(model)
    # new data far from the build-time scale, before the first fit: the prior must not move
    y_new = rng.normal(3.0, 1.0, 5)
    _set_data(model, y_new)
    mu0 = float(spec.priors["means"].params["mu"][0])
    s0 = float(spec.priors["means"].params["sigma"][0])
    sig = float(spec.priors["sigma"].params["sigma"][0])
    exact_mu, exact_sd = one_component_posterior(y_new, mu0, s0, sig)
    rederived = one_component_posterior(y_new, y_new.mean(), 2 * y_new.std(), y_new.std())
    assert abs(rederived[0] - exact_mu) > 0.3  # the test can tell the two priors apart
    idata = _quiet_sample(model, draws=1500, tune=1000, chains=2, random_seed=8, sampler=name)
    got = az.summary(idata, var_names=["means", "sigma"], round_to="none")
    for row, exact in zip(got.itertuples(), (exact_mu, exact_sd)):
        assert abs(row.mean - exact) < 5 * row.mcse_mean + 0.02, (name, row.Index, row.mean, exact)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("data"), st.integers(5, 60), st.floats(0.1, 0.9)),
            st.tuples(st.just("prior"), st.floats(0.3, 8.0), st.floats(0.3, 8.0)),
        ),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**16),
)
def test_any_sequence_of_data_and_prior_changes_gets_the_current_posterior(ops, seed):
    """Property: after any data / prior changes, a fit is the exact posterior of the model now."""
    rng = np.random.default_rng(seed)
    means, sds = np.array([-1.5, 1.5]), np.array([1.0, 1.0])
    a = np.array([1.0, 1.0])
    y = rng.normal(-1.5, 1.0, 20)
    model = mixtures.known_params_mixture(y, means, sds, priors={"weights": {"a": a}})
    for op in [*ops, ("fit",)]:
        if op[0] == "data":
            n, frac = op[1], op[2]
            first = rng.random(n) < frac
            y = np.where(first, rng.normal(-1.5, 1.0, n), rng.normal(1.5, 1.0, n))
            _set_data(model, y)
        elif op[0] == "prior":
            a = np.array(op[1:])
            model = mixtures.known_params_mixture(y, means, sds, priors={"weights": {"a": a}})
        idata = _quiet_sample(model, draws=1000, tune=200, chains=2, random_seed=seed)
        got = az.summary(idata, var_names=["weights"], round_to="none").iloc[0]
        exact = known_weight_posterior_mean(y, means, sds, a)
        assert abs(got["mean"] - exact) < 5 * got["mcse_mean"] + 0.005


def test_pymc_handle_refits_follow_data_changes_exactly(y3):
    rng = np.random.default_rng(2)
    means, sds, a = np.array([-1.5, 1.5]), np.array([1.0, 1.0]), np.array([2.0, 0.5])
    model = mixtures.known_params_mixture(
        rng.normal(0, 1, 10), means, sds, priors={"weights": {"a": a}}
    )
    handle = mixtures.compile_model(model, sampler="pymc")
    for n in (30, 12):
        y = np.concatenate([rng.normal(-1.5, 1, n // 3), rng.normal(1.5, 1, n - n // 3)])
        _set_data(model, y)
        idata = handle.sample(draws=1000, tune=500, chains=2, random_seed=n, progressbar=False)
        got = az.summary(idata, var_names=["weights"], round_to="none").iloc[0]
        exact = known_weight_posterior_mean(y, means, sds, a)
        assert abs(got["mean"] - exact) < 5 * got["mcse_mean"] + 0.005


# --- every engine: same posterior, reproducible -----------------------------------------------


@pytest.fixture(scope="module")
def engine_fits(y3):
    """Each engine on the same marginalised model, twice with one seed."""
    fits = {}
    model = mixtures.full_mixture(y3, 3)
    for name in ENGINES:
        kw = dict(draws=400, tune=400, chains=2, random_seed=21, sampler=name)
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


# --- ordered means without initval -------------------------------------------------------------


@pytest.mark.parametrize("factory", [mixtures.full_mixture, mixtures.shared_sd_mixture])
@pytest.mark.parametrize("marginalized", [True, False])
def test_ordered_models_have_no_initval_and_a_finite_start(y3, factory, marginalized):
    model = factory(y3, 3, marginalized=marginalized)
    assert all(v is None for v in model.rvs_to_initial_values.values())
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    means = model.compile_fn(
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
    model = mixtures.full_mixture(y3, 3, priors=priors)
    start = model.initial_point()["means_ordered__"]
    np.testing.assert_allclose(start, [10, np.log(10), np.log(15)])


def test_pymc_extras_marginalize_accepts_the_latent_model(y3):
    pmx = pytest.importorskip("pymc_extras")
    latent = mixtures.full_mixture(y3, 3, marginalized=False)
    marginalized = pmx.marginalize(latent, ["assignment"])
    ours = mixtures.full_mixture(y3, 3, marginalized=True)
    rng = np.random.default_rng(1)
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in ours.initial_point().items()}
        np.testing.assert_allclose(
            marginalized.compile_logp()(point), ours.compile_logp()(point), rtol=1e-10
        )


@pytest.mark.skipif(not HAS["nutpie"], reason="nutpie not installed")
def test_nutpie_refit_does_not_recompile(y3):
    model = mixtures.full_mixture(y3, 3)
    compiled = mixtures.compile_model(model, sampler="nutpie")
    kw = dict(draws=200, tune=200, chains=1, random_seed=2, progressbar=False, warn=False)
    compiled.sample(**kw)
    seconds = compiled.compile_seconds
    idata = compiled.sample(y3 + 50.0, **kw)
    assert compiled.compile_seconds == seconds
    mix_mean = float(
        (idata.posterior["weights"] * idata.posterior["means"]).sum("component").mean()
    )
    assert abs(mix_mean - float(y3.mean()) - 50.0) < 1.0
