"""The engine contract: "auto" walks the registry by each engine's own ``supports``, the handle
runs any engine that follows :class:`mixtures.engines.base.Engine`, and every registered engine
returns :class:`~mixtures.engines.base.RawDraws`.
"""

import importlib.util

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import mixtures
from mixtures.engines import registry
from mixtures.engines.base import Engine, EngineBase, RawDraws, takes_option
from mixtures.engines.seeds import SEED_BOUND, one_seed

MEANS, SDS = np.array([9.0, 21.0, 35.0]), np.array([2.0, 3.0, 4.0])
WEIGHTS = np.array([0.4, 0.25, 0.35])


class SmallDataEngine(EngineBase):
    """A fake engine for N < 300 that "draws" fixed parameters and records its calls."""

    name = "small"
    default_draws, default_tune = 7, 3
    calls: list = []

    @staticmethod
    def supports(model, spec, *, latent_sampler="gibbs", auto=False):
        SmallDataEngine.calls.append(("supports", latent_sampler, auto))
        n_obs = model["y_data"].get_value().shape[0]
        if n_obs >= 300:
            return False, f"N = {n_obs} >= 300"
        return True, "small data: the fake engine"

    def sample(self, *, draws, tune, chains, random_seed, progressbar, callback=None):
        SmallDataEngine.calls.append(("sample", draws, tune, random_seed, callable(callback)))
        shape = (chains, draws, MEANS.size)
        posterior = {
            "weights": np.broadcast_to(WEIGHTS, shape).copy(),
            "means": np.broadcast_to(MEANS, shape).copy(),
            "sigma": np.broadcast_to(SDS, shape).copy(),
        }
        return RawDraws(posterior=posterior, stats={}, steps="fixed parameters")


class NeverAutoEngine(SmallDataEngine):
    """Supports every model but is closed to "auto"."""

    name = "never"
    auto = False

    @staticmethod
    def supports(model, spec, *, latent_sampler="gibbs", auto=False):
        return True, "takes anything"


@pytest.fixture
def fake_registry(monkeypatch):
    """The registry with two fake engines in front of the real ones."""
    fakes = {"never": NeverAutoEngine, "small": SmallDataEngine, **registry.REGISTRY}
    monkeypatch.setattr(registry, "REGISTRY", fakes)
    monkeypatch.setattr(registry, "SAMPLERS", ("auto", *fakes))
    SmallDataEngine.calls.clear()
    return fakes


def test_auto_picks_a_registered_engine_by_its_own_supports(y3, fake_registry):
    name, why = mixtures.choose_sampler(mixtures.full_mixture(y3, 3), latent_sampler="nuts")
    assert (name, why) == ("small", "small data: the fake engine")
    assert SmallDataEngine.calls == [("supports", "nuts", True)]
    big = mixtures.full_mixture(np.concatenate([y3] * 10), 3)
    name, why = mixtures.choose_sampler(big)
    assert name == "gibbs" and why.endswith("(not small: N = 2150 >= 300)")
    assert "never" not in why  # closed to "auto": not even considered


def test_the_handle_runs_any_engine_by_its_declarations(y3, fake_registry):
    model = mixtures.full_mixture(y3, 3)
    idata = mixtures.sample(model, chains=2, random_seed=5, progressbar=False, warn=False)
    attrs = idata.posterior.attrs
    assert attrs["mixtures_sampler"] == "small" and attrs["mixtures_steps"] == "fixed parameters"
    assert idata.posterior["weights"].shape == (2, 7, 3)  # the engine's default_draws
    # the engine got its default tune, the handle's integer seed and the Ctrl-C callback
    assert SmallDataEngine.calls[-1] == ("sample", 7, 3, one_seed(5), True)
    # finish computed the pointwise log-likelihood from the raw arrays
    expected = logsumexp(np.log(WEIGHTS) + stats.norm.logpdf(y3[:, None], MEANS, SDS), axis=1)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[1, 6], expected, rtol=1e-10)
    with pytest.raises(ValueError, match=r"`tempering` is an option of the Gibbs engine, but "):
        mixtures.sample(model, sampler="small", tempering=8, progressbar=False)
    refused = r"`sampler='small'` cannot sample this model: N = 2150 >= 300"
    with pytest.raises(ValueError, match=refused):
        mixtures.compile_model(mixtures.full_mixture(np.concatenate([y3] * 10), 3), sampler="small")


def test_raw_draws_hold_one_kind_of_draws():
    with pytest.raises(ValueError, match="`RawDraws` should hold either `trace` or `posterior`"):
        RawDraws(steps="none")
    with pytest.raises(ValueError, match="but got both"):
        RawDraws(steps="both", trace=object(), posterior={})


def test_one_seed_draws_from_a_generator_and_keeps_none():
    rng = np.random.default_rng(0)
    first, second = one_seed(rng), one_seed(rng)
    assert first != second and 0 <= min(first, second) and max(first, second) < SEED_BOUND
    assert one_seed(None) is None


def _installed(name):
    return importlib.util.find_spec(name) is not None


ENGINES = [
    pytest.param("gibbs"),
    pytest.param("mfm"),
    pytest.param("pymc"),
    pytest.param(
        "nutpie",
        marks=[pytest.mark.slow, pytest.mark.skipif(not _installed("nutpie"), reason="extra")],
    ),
    pytest.param(
        "numpyro",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(not _installed("numpyro"), reason="extra"),
            # JAX's note that it could not reuse an input buffer in place (one chain)
            pytest.mark.filterwarnings("ignore:Some donated buffers were not usable"),
        ],
    ),
]


@pytest.mark.parametrize("name", ENGINES)
def test_every_registered_engine_follows_the_contract(y3, name):
    cls = registry.REGISTRY[name]
    assert cls.name == name and isinstance(cls.auto, bool) and cls.installed() is True
    if name == "mfm":
        model = mixtures.mfm_mixture(y3)
    else:
        model = mixtures.full_mixture(y3, 2, marginalized=True)
    spec = registry.spec_or_none(model)
    ok, why = cls.supports(model, spec, latent_sampler="gibbs", auto=False)
    assert ok is True and isinstance(why, str) and why
    engine = cls(model, spec, latent_sampler="gibbs")
    assert isinstance(engine, Engine)
    raw = engine.sample(draws=20, tune=20, chains=1, random_seed=1, progressbar=False)
    assert isinstance(raw, RawDraws) and isinstance(raw.steps, str) and raw.steps
    weights = raw.posterior["weights"] if raw.trace is None else raw.trace.posterior["weights"]
    assert weights.shape[:2] == (1, 20)
    np.testing.assert_allclose(np.asarray(weights).sum(axis=-1), 1.0, rtol=1e-6)


def test_takes_option_reads_the_sample_signature():
    assert takes_option(SmallDataEngine, "callback")
    assert not takes_option(SmallDataEngine, "tempering")
    assert takes_option(registry.REGISTRY["gibbs"], "tempering")
    assert takes_option(registry.REGISTRY["pymc"], "callback")
    assert not takes_option(registry.REGISTRY["nutpie"], "kwargs")  # **kwargs names nothing


def test_only_an_engine_that_reads_the_missing_cells_takes_another_pattern():
    X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
    X[0, 0] = X[5, 1] = np.nan
    other = X.copy()
    other[5, 1], other[7, 0] = 1.0, np.nan  # the same count of missing cells, elsewhere
    model = mixtures.mv_mixture(X, 3)
    gibbs = mixtures.compile_model(model, sampler="gibbs")
    assert gibbs.engine.any_missing_pattern
    gibbs.set_data(other)
    observed = model["observed_cells"].get_value().astype(bool)
    np.testing.assert_array_equal(observed, ~np.isnan(other))
    pymc = mixtures.compile_model(mixtures.mv_mixture(X, 3), sampler="pymc")
    with pytest.raises(ValueError, match=r"should have the missing cells of the data .* 'pymc'"):
        pymc.set_data(other)
    pymc.set_data(X + 1.0)  # the same pattern is taken
