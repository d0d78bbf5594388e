"""Property tests: bad input never slips through; marginal density = enumerated latent density."""

import itertools

import numpy as np
import pymc as pm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import mixtures

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_Y = np.linspace(-3.0, 5.0, 12)
GOOD_X = np.column_stack([GOOD_Y, GOOD_Y[::-1] ** 2])

bad_values = st.sampled_from([np.nan, np.inf, -np.inf])
non_positive = st.one_of(st.floats(max_value=0.0, allow_nan=False), bad_values)


@st.composite
def bad_arrays(draw):
    kind = draw(st.sampled_from(["nonfinite", "2d", "scalar", "text", "short", "empty"]))
    if kind == "nonfinite":
        y = GOOD_Y.copy()
        y[draw(st.integers(0, len(y) - 1))] = draw(bad_values)
        return y
    if kind == "2d":
        return GOOD_Y.reshape(3, 4)
    if kind == "scalar":
        return draw(st.floats(allow_nan=False))
    if kind == "text":
        return ["a", "b", "c"]
    if kind == "short":
        return GOOD_Y[:1]
    return np.array([])


FACTORIES_K = [
    lambda y, k, **kw: mixtures.full_mixture(y, k, **kw),
    lambda y, k, **kw: mixtures.shared_sd_mixture(y, k, **kw),
]


@SETTINGS
@given(y=bad_arrays(), which=st.integers(0, 1))
def test_malformed_data_is_a_value_error_naming_y(y, which):
    with pytest.raises(ValueError, match=r"^`y` should"):
        FACTORIES_K[which](y, 2)
    with pytest.raises(ValueError, match=r"^`y` should"):
        mixtures.known_params_mixture(y, [0.0, 1.0], [1.0, 1.0])


@SETTINGS
@given(
    k=st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=13, max_value=10**6),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=3),
    ),
    which=st.integers(0, 1),
)
def test_malformed_k_is_a_value_error_naming_k(k, which):
    with pytest.raises(ValueError, match=r"^`k` should"):
        FACTORIES_K[which](GOOD_Y, k)
    with pytest.raises(ValueError, match=r"^`k` should"):
        mixtures.mv_mixture(GOOD_X, k)


@SETTINGS
@given(
    key=st.sampled_from([("means", "sigma"), ("sigma", "sigma"), ("weights", "a")]),
    value=non_positive,
    which=st.integers(0, 1),
)
def test_malformed_prior_is_a_value_error_naming_the_prior(key, value, which):
    name, param = key
    with pytest.raises(ValueError, match=rf"^`priors\['{name}'\]\['{param}'\]` should be"):
        FACTORIES_K[which](GOOD_Y, 2, priors={name: {param: value}})
    with pytest.raises(ValueError, match=rf"^`priors\['{name}'\]\['{param}'\]` should be"):
        mixtures.mv_mixture(GOOD_X, 2, priors={name: {param: value}}, covariance_prior="lkj")


@SETTINGS
@given(sd=non_positive, position=st.integers(0, 1))
def test_malformed_sds_are_a_value_error_naming_them(sd, position):
    sds = [1.0, 1.0]
    sds[position] = sd
    with pytest.raises(ValueError, match=r"^`sds` should"):
        mixtures.known_params_mixture(GOOD_Y, [0.0, 1.0], sds)
    with pytest.raises(ValueError, match=r"^`sigma` should"):
        mixtures.full_mixture(GOOD_Y, 2, sigma=sds)


@SETTINGS
@given(X=st.sampled_from([GOOD_Y, np.full((5, 2), np.nan), GOOD_X[:1]]))
def test_malformed_multivariate_data_is_a_value_error_naming_x(X):
    with pytest.raises(ValueError, match=r"^`X` should"):
        mixtures.mv_mixture(X, 2)


# --- marginal density = sum over enumerated assignments of the latent density -----------------

N_OBS = 4


@pytest.fixture(scope="module")
def compiled_pairs():
    """Latent and marginalised models of each kind, compiled once; data changed with set_data."""
    y0 = np.array([0.0, 1.0, 2.5, 4.0])
    out = {}
    for kind, factory in (("full", mixtures.full_mixture), ("shared", mixtures.shared_sd_mixture)):
        for k in (1, 2, 3):
            latent = factory(y0, k, marginalized=False, ordered=False)
            marginal = factory(y0, k, marginalized=True, ordered=False)
            out[kind, k] = (
                latent,
                marginal,
                latent.compile_logp(vars=[latent["assignment"], latent["y"]]),
                marginal.compile_logp(vars=[marginal["y"]]),
            )
    return out


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["full", "shared"]),
    k=st.integers(1, 3),
    y=st.lists(st.floats(-50, 50), min_size=N_OBS, max_size=N_OBS),
    seed=st.integers(0, 2**16),
)
def test_marginal_density_equals_logsumexp_over_assignments(compiled_pairs, kind, k, y, seed):
    latent, marginal, joint, marg = compiled_pairs[kind, k]
    y = np.asarray(y)
    for model in (latent, marginal):
        with model:
            pm.set_data({"y_data": y})
    rng = np.random.default_rng(seed)
    point = {
        name: value + rng.normal(0, 1.0, np.shape(value))
        for name, value in marginal.initial_point().items()
    }
    terms = [
        joint({**point, "assignment": np.array(z)})
        for z in itertools.product(range(k), repeat=N_OBS)
    ]
    np.testing.assert_allclose(logsumexp(terms), marg(point), rtol=1e-7)
