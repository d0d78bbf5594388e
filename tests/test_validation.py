import numpy as np
import pandas as pd
import pytest

import mixtures

ALL_FACTORIES = [
    lambda y: mixtures.known_params_mixture(y, [0, 1], [1, 1]),
    lambda y: mixtures.shared_sd_mixture(y, 2),
    lambda y: mixtures.full_mixture(y, 2, marginalized=True),
]


@pytest.mark.parametrize("factory", ALL_FACTORIES)
def test_nan_and_inf_are_rejected_with_count_and_position(factory):
    y = np.arange(20, dtype=float)
    y[[3, 17]] = np.nan
    y[5] = np.inf
    with pytest.raises(
        ValueError,
        match=r"`y` should contain only finite values, but got 2 NaN and 1 infinite "
        r"value\(s\) at index 3, 5, 17",
    ):
        factory(y)


def test_many_nonfinite_positions_are_truncated():
    y = np.full(30, np.nan)
    with pytest.raises(ValueError, match=r"at index 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 20 more"):
        mixtures.full_mixture(y, 2)


@pytest.mark.parametrize("factory", ALL_FACTORIES)
@pytest.mark.parametrize("y", [[], [1.0]])
def test_empty_or_single_point(factory, y):
    with pytest.raises(
        ValueError, match=rf"`y` should contain at least 2 observations, but got {len(y)}"
    ):
        factory(y)


@pytest.mark.parametrize("factory", ALL_FACTORIES)
def test_two_dimensional_data(factory):
    with pytest.raises(
        ValueError,
        match=r"`y` should be a 1-D array of shape \(n_obs,\), but got an array of shape \(10, 2\)",
    ):
        factory(np.ones((10, 2)))


def test_scalar_data():
    with pytest.raises(ValueError, match=r"1-D array .* but got an array of shape \(\)"):
        mixtures.full_mixture(3.0, 1)


@pytest.mark.parametrize("y", [["a", "b", "c"], pd.Series(["1", "2", "3"]), np.array([1, None, 3])])
def test_non_numeric_data(y):
    with pytest.raises(ValueError, match=r"`y` should be numeric, but got dtype"):
        mixtures.shared_sd_mixture(y, 2)


@pytest.mark.parametrize(
    ("k", "message"),
    [
        (0, r"`k` should be an integer >= 1, but got 0"),
        (-2, r"`k` should be an integer >= 1, but got -2"),
        (2.0, r"`k` should be an integer >= 1, but got 2.0"),
        (True, r"`k` should be an integer >= 1, but got True"),
        (11, r"`k` should be at most the number of observations \(10\), but got k = 11"),
    ],
)
@pytest.mark.parametrize("factory", [mixtures.shared_sd_mixture, mixtures.full_mixture])
def test_bad_k(factory, k, message):
    with pytest.raises(ValueError, match=message):
        factory(np.arange(10.0), k)


def test_numpy_integer_k_is_accepted():
    assert mixtures.full_mixture(np.arange(10.0), np.int64(2)).coords["component"] == (0, 1)


@pytest.mark.parametrize(
    ("means", "sds", "message"),
    [
        (
            [0, 1, 2],
            [1, 1],
            r"`sds` should have shape \(3,\), one value per component, but got shape \(2,\)",
        ),
        (
            [[0, 1]],
            [1, 1],
            r"`means` should be a 1-D array of shape \(k,\), but got shape \(1, 2\)",
        ),
        ([0, 1], [1, 0], r"`sds` should contain only values > 0, but got \[1.0, 0.0\]"),
        ([0, 1], [1, -2], r"`sds` should contain only values > 0"),
        ([0, np.nan], [1, 1], r"`means` should contain only finite values"),
        (list(range(11)), [1] * 11, r"`k` should be at most the number of observations \(10\)"),
    ],
)
def test_bad_known_params(means, sds, message):
    with pytest.raises(ValueError, match=message):
        mixtures.known_params_mixture(np.arange(10.0), means, sds)


def test_unknown_prior_keys_list_the_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"`priors` keys should be among \['weights', 'means', 'sigma'\], but got unknown key\(s\) \['mu', 'sd'\]",
    ):
        mixtures.full_mixture(np.arange(10.0), 2, priors={"mu": 1, "sd": 2})
    with pytest.raises(ValueError, match=r"`priors` keys should be among \['weights'\]"):
        mixtures.known_params_mixture(np.arange(10.0), [0, 1], [1, 1], priors={"means": {}})


def test_bad_prior_family_and_parameters():
    y = np.arange(10.0)
    with pytest.raises(
        ValueError,
        match=r"`priors\['sigma'\]\['dist'\]` should be one of \[.*'HalfCauchy'.*\], but got 'Normal'",
    ):
        mixtures.full_mixture(y, 2, priors={"sigma": {"dist": "Normal", "sigma": 1}})
    with pytest.raises(
        ValueError, match=r"`priors\['sigma'\]` should hold the parameters \['beta'\] of HalfCauchy"
    ):
        mixtures.full_mixture(y, 2, priors={"sigma": {"dist": "HalfCauchy", "scale": 1}})
    with pytest.raises(ValueError, match=r"`priors\['means'\]` should be a dict"):
        mixtures.full_mixture(y, 2, priors={"means": 3})


@pytest.mark.parametrize(
    ("value", "minimum", "message"),
    [
        (0, 1, r"`n` should be an integer >= 1, but got 0"),
        (np.int64(-3), 0, r"`n` should be a non-negative integer, but got -3"),
        (2.0, 1, r"`n` should be an integer >= 1, but got 2.0"),
        (True, 0, r"`n` should be a non-negative integer, but got True"),
        ("3", 1, r"`n` should be an integer >= 1, but got '3'"),
        (4, 5, r"`n` should be an integer >= 5, but got 4"),
    ],
)
def test_check_integer_refuses_with_one_message(value, minimum, message):
    from mixtures.model.validation import check_integer

    with pytest.raises(ValueError, match=message):
        check_integer(value, "n", minimum)


def test_check_integer_returns_a_python_int():
    from mixtures.model.validation import check_integer

    out = check_integer(np.int32(7), "n")
    assert out == 7 and type(out) is int
    assert check_integer(0, "n", 0) == 0
