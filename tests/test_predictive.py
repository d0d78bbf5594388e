"""The NumPy posterior predictive, checked against scipy's mixture CDFs; the bounded PPC plots.

Each model kind gets a posterior whose every draw holds the same known parameters: the
predictive values are then independent draws from one known mixture (or, for a labelled
point, from its own component), which a Kolmogorov-Smirnov test compares with the mixture's
CDF computed by scipy. Multivariate draws are compared through linear projections: a
projection a^T x of a Gaussian mixture is the univariate mixture with means a^T mu_j and sds
sqrt(a^T Sigma_j a).
"""

import arviz as az
import numpy as np
import pytensor.compile.function.types as pytensor_types
import pytest
from scipy import stats

import mixtures
import mixtures.engines.sampling as inference
from mixtures.engines.finish import attach_data

CHAINS, DRAWS = 2, 50
W = np.array([0.4, 0.25, 0.35])
MU = np.array([9.0, 21.0, 35.0])
SD = np.array([1.5, 2.0, 3.0])
MU_2D = np.array([[-2.0, 1.0], [0.5, -1.0], [3.0, 2.0]])
PROJECTIONS = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]])


@pytest.fixture(scope="module")
def y():
    return mixtures.load_dataset("three_gaussians")["x"].to_numpy()


@pytest.fixture(scope="module")
def X():
    return mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]]


def _fixed_idata(model, params: dict, dims: dict):
    """A posterior whose every draw is `params`, with the data groups mixtures.sample adds."""
    post = {
        name: np.broadcast_to(value, (CHAINS, DRAWS, *np.shape(value))).copy()
        for name, value in params.items()
    }
    coords = {name: np.asarray(model.coords[name]) for name in ("component", "feature")
              if model.coords.get(name) is not None}  # fmt: skip
    if "feature" in coords:
        coords["feature_bis"] = coords["feature"]
    coords["obs_id"] = np.arange(model["y_data"].get_value().shape[0])
    idata = az.from_dict(posterior=post, coords=coords, dims=dims)
    attach_data(idata, model)
    return idata


def _mixture_cdf(w, mu, sd):
    return lambda x: (w * stats.norm.cdf((np.asarray(x)[:, None] - mu) / sd)).sum(axis=1)


def _ks_pvalue(values, w, mu, sd) -> float:
    return stats.kstest(np.ravel(values), _mixture_cdf(w, mu, sd)).pvalue


def _univariate_case(kind, y, marginalized):
    """(model, posterior params, dims, the component sds) of one univariate model kind."""
    latent = {} if marginalized else {"assignment": np.zeros(len(y), dtype=int)}
    ldims = {} if marginalized else {"assignment": ["obs_id"]}
    if kind == "known":
        model = mixtures.known_params_mixture(y, MU, SD, marginalized=marginalized)
        return model, {"weights": W, **latent}, {"weights": ["component"], **ldims}, SD
    if kind == "known_sigma":
        model = mixtures.full_mixture(y, 3, sigma=SD, marginalized=marginalized)
        params = {"weights": W, "means": MU, **latent}
        return model, params, {"weights": ["component"], "means": ["component"], **ldims}, SD
    if kind == "shared_known_sigma":
        model = mixtures.shared_sd_mixture(y, 3, sigma=2.5, marginalized=marginalized)
        params = {"weights": W, "means": MU, **latent}
        dims = {"weights": ["component"], "means": ["component"], **ldims}
        return model, params, dims, np.full(3, 2.5)
    if kind == "shared":
        model = mixtures.shared_sd_mixture(y, 3, marginalized=marginalized)
        params = {"weights": W, "means": MU, "sigma": 2.5, **latent}
        dims = {"weights": ["component"], "means": ["component"], "sigma": [], **ldims}
        return model, params, dims, np.full(3, 2.5)
    model = mixtures.full_mixture(y, 3, marginalized=marginalized)
    params = {"weights": W, "means": MU, "sigma": SD, **latent}
    dims = {"weights": ["component"], "means": ["component"], "sigma": ["component"], **ldims}
    return model, params, dims, SD


# --- univariate ------------------------------------------------------------------------------


@pytest.mark.parametrize("marginalized", [True, False], ids=["marginalised", "latent"])
@pytest.mark.parametrize("kind", ["known", "known_sigma", "shared_known_sigma", "shared", "full"])
def test_univariate_predictive_is_the_mixture(y, kind, marginalized):
    model, params, dims, sd = _univariate_case(kind, y, marginalized)
    idata = _fixed_idata(model, params, dims)
    mixtures.sample_posterior_predictive(model, idata, random_seed=1)
    pred = idata.posterior_predictive["y"].values
    assert pred.shape == (CHAINS, DRAWS, len(y))
    assert _ks_pvalue(pred, W, MU, sd) > 1e-3
    # the same values are far from a mixture with other weights: the test has power
    assert _ks_pvalue(pred, np.array([0.3, 0.35, 0.35]), MU, sd) < 1e-6


@pytest.mark.parametrize("marginalized", [True, False], ids=["marginalised", "latent"])
def test_labelled_points_are_drawn_from_their_own_component(y, marginalized):
    labels = np.full(len(y), -1)
    labels[:40] = 2  # whatever the value, these points come from component 2
    labels[40:60] = 0
    model = mixtures.full_mixture(y, 3, labels=labels, marginalized=marginalized)
    _, params, dims, _ = _univariate_case("full", y, marginalized)
    idata = _fixed_idata(model, params, dims)
    mixtures.sample_posterior_predictive(model, idata, random_seed=2)
    pred = idata.posterior_predictive["y"].values
    assert stats.kstest(pred[:, :, :40].ravel(), stats.norm(MU[2], SD[2]).cdf).pvalue > 1e-3
    assert stats.kstest(pred[:, :, 40:60].ravel(), stats.norm(MU[0], SD[0]).cdf).pvalue > 1e-3
    assert _ks_pvalue(pred[:, :, 60:], W, MU, SD) > 1e-3


# --- multivariate ----------------------------------------------------------------------------


def _chols(covariance: str) -> np.ndarray:
    full = np.array([[[1.0, 0.0], [0.6, 0.5]], [[0.7, 0.0], [-0.3, 0.9]], [[1.2, 0], [0.0, 0.4]]])
    if covariance == "diag":
        return full * np.eye(2)
    if covariance == "tied":
        return np.repeat(full[:1], 3, axis=0)
    return full


def _mv_case(X, covariance, covariance_prior, marginalized=True, labels=None):
    model = mixtures.mv_mixture(
        X,
        3,
        covariance=covariance,
        covariance_prior=covariance_prior,
        marginalized=marginalized,
        labels=labels,
    )
    chol = _chols(covariance)
    params = {"weights": W, "means": MU_2D, "chol_cov": chol,
              "sigma": np.sqrt((chol**2).sum(-1))}  # fmt: skip
    dims = {
        "weights": ["component"],
        "means": ["component", "feature"],
        "chol_cov": ["component", "feature", "feature_bis"],
        "sigma": ["component", "feature"],
    }
    if not marginalized:
        params["assignment"] = np.zeros(len(X), dtype=int)
        dims["assignment"] = ["obs_id"]
    return model, _fixed_idata(model, params, dims), chol


def _projected_ks(values, a, w, mu, chol) -> float:
    cov = chol @ np.swapaxes(chol, -1, -2)
    return _ks_pvalue(values @ a, w, mu @ a, np.sqrt(np.einsum("i,kij,j->k", a, cov, a)))


@pytest.mark.parametrize(
    ("covariance", "covariance_prior", "marginalized"),
    [
        ("full", "wishart", True),
        ("full", "wishart", False),
        ("full", "lkj", True),
        ("diag", "auto", True),
        ("tied", "auto", False),
    ],
)
def test_multivariate_predictive_is_the_mixture(X, covariance, covariance_prior, marginalized):
    model, idata, chol = _mv_case(X, covariance, covariance_prior, marginalized)
    mixtures.sample_posterior_predictive(model, idata, random_seed=3)
    pred = idata.posterior_predictive["y"]
    assert pred.dims == ("chain", "draw", "obs_id", "feature")
    values = pred.values.reshape(-1, 2)
    for a in PROJECTIONS:
        assert _projected_ks(values, a, W, MU_2D, chol) > 1e-3, a
    wrong = 1.2 * chol  # covariances 44% larger: every projection sees it
    assert max(_projected_ks(values, a, W, MU_2D, wrong) for a in PROJECTIONS) < 1e-6


def test_multivariate_labelled_points_follow_their_component(X):
    labels = np.full(len(X), -1)
    labels[:100] = 1
    model, idata, chol = _mv_case(X, "full", "wishart", labels=labels)
    mixtures.sample_posterior_predictive(model, idata, random_seed=4)
    pred = idata.posterior_predictive["y"].values
    own = pred[:, :, :100].reshape(-1, 2)
    for a in PROJECTIONS:
        assert _projected_ks(own, a, np.ones(1), MU_2D[1:2], chol[1:2]) > 1e-3
        assert _projected_ks(pred[:, :, 100:].reshape(-1, 2), a, W, MU_2D, chol) > 1e-3


# --- layout, thinning, reproducibility -------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping")  # ArviZ 0.23
def test_group_layout_matches_the_observed_data(X):
    model, idata, _ = _mv_case(X, "full", "wishart")
    mixtures.sample_posterior_predictive(model, idata, random_seed=5)
    pred = idata.posterior_predictive["y"]
    np.testing.assert_array_equal(pred["chain"], idata.posterior["chain"])
    np.testing.assert_array_equal(pred["draw"], idata.posterior["draw"])
    np.testing.assert_array_equal(pred["obs_id"], idata.observed_data["obs_id"])
    assert list(pred["feature"].values) == ["x1", "x2"]
    assert list(idata.posterior_predictive.data_vars) == ["y"]
    # ArviZ reads it as a posterior predictive: its plot pairs it with the observed data
    az.plot_ppc(idata.isel(feature=0), num_pp_samples=5, random_seed=0)


def test_num_draws_thins_evenly_and_uses_those_draws_parameters(y):
    model = mixtures.full_mixture(y, 3)
    # draw i of every chain puts every component at 100 i with a tiny sd
    means = np.broadcast_to(100.0 * np.arange(DRAWS)[None, :, None], (CHAINS, DRAWS, 3))
    post = {"weights": np.full((CHAINS, DRAWS, 3), 1 / 3), "means": means.copy(),
            "sigma": np.full((CHAINS, DRAWS, 3), 1e-3)}  # fmt: skip
    idata = az.from_dict(posterior=post, dims={n: ["component"] for n in post})
    attach_data(idata, model)
    mixtures.sample_posterior_predictive(model, idata, num_draws=9, random_seed=6)
    pred = idata.posterior_predictive["y"]
    kept = pred["draw"].values
    assert pred.sizes["chain"] == CHAINS and kept.size == 5  # 9 rounded up to 2 x 5
    assert kept[0] == 0 and kept[-1] == DRAWS - 1
    assert np.ptp(np.diff(kept)) <= 1  # evenly spaced
    expected = np.broadcast_to(100.0 * kept, (CHAINS, kept.size))
    np.testing.assert_allclose(pred.mean("obs_id").values, expected, atol=0.01)
    for num_draws in (None, 1000):
        mixtures.sample_posterior_predictive(model, idata, num_draws=num_draws)
        assert idata.posterior_predictive.sizes["draw"] == DRAWS
    assert "at 10 of 100 posterior draws" in str(
        mixtures.sample_posterior_predictive(model, idata, num_draws=10).posterior_predictive.attrs
    )


def test_auto_keeps_every_draw_unless_the_predictive_is_too_large(y, monkeypatch):
    model, params, dims, _ = _univariate_case("full", y, True)
    idata = _fixed_idata(model, params, dims)
    mixtures.sample_posterior_predictive(model, idata)
    assert idata.posterior_predictive.sizes["draw"] == DRAWS
    cap = 11 * len(y)
    monkeypatch.setattr(inference, "PREDICTIVE_MAX_VALUES", cap)
    mixtures.sample_posterior_predictive(model, idata)
    pred = idata.posterior_predictive["y"]
    assert pred.size <= cap and pred.sizes["draw"] == 5  # 11 // 2 chains


def test_reproducible_with_random_seed(y):
    model, params, dims, _ = _univariate_case("shared", y, False)
    idata = _fixed_idata(model, params, dims)
    first = mixtures.sample_posterior_predictive(model, idata, random_seed=7)
    a = first.posterior_predictive["y"].values.copy()
    b = mixtures.sample_posterior_predictive(model, idata, random_seed=7).posterior_predictive
    c = mixtures.sample_posterior_predictive(model, idata, random_seed=8).posterior_predictive
    np.testing.assert_array_equal(a, b["y"].values)
    assert not np.array_equal(a, c["y"].values)


@pytest.mark.parametrize(
    ("num_draws", "message"),
    [(0, "got 0"), (True, "got True"), ("all", "got 'all'"), (2.5, "got 2.5")],
)
def test_bad_num_draws(y, num_draws, message):
    model, params, dims, _ = _univariate_case("full", y, True)
    idata = _fixed_idata(model, params, dims)
    with pytest.raises(ValueError, match=rf"`num_draws` should be an integer >= 1, None or "
                       rf"'auto', but {message}"):  # fmt: skip
        mixtures.sample_posterior_predictive(model, idata, num_draws=num_draws)
    bare = az.InferenceData(observed_data=idata.observed_data)
    with pytest.raises(ValueError, match="`idata` should hold `weights` in its posterior"):
        mixtures.sample_posterior_predictive(model, bare)


def test_no_pytensor_function_is_compiled(y, X, monkeypatch):
    """The predictive of every model kind needs no compilation (issue 21)."""
    cases = [_univariate_case("full", y, False), _univariate_case("known", y, True)]
    fits = [(m, _fixed_idata(m, p, d)) for m, p, d, _ in cases]
    fits += [_mv_case(X, "full", "wishart")[:2], _mv_case(X, "tied", "lkj", False)[:2]]

    def refuse(*args, **kwargs):
        raise AssertionError("a PyTensor function was compiled")

    monkeypatch.setattr(pytensor_types.FunctionMaker, "__init__", refuse)
    with pytest.raises(AssertionError, match="was compiled"):  # the patch does catch compiling
        fits[0][0].compile_logp()
    for model, idata in fits:
        mixtures.sample_posterior_predictive(model, idata, random_seed=9)
        assert "posterior_predictive" in idata.groups()


# --- the plots read a bounded number of draws and points -------------------------------------


def _big_univariate(n: int):
    rng = np.random.default_rng(10)
    z = rng.choice(3, size=n, p=W)
    y = rng.normal(MU[z], SD[z])
    model = mixtures.full_mixture(y[:50], 3)  # only its structure is used
    post = {name: np.broadcast_to(v, (CHAINS, DRAWS, 3)).copy()
            for name, v in (("weights", W), ("means", MU), ("sigma", SD))}  # fmt: skip
    idata = az.from_dict(
        posterior=post,
        observed_data={"y": y},
        dims={**{name: ["component"] for name in post}, "y": ["obs_id"]},
    )
    mixtures.sample_posterior_predictive(model, idata, num_draws=8, random_seed=11)
    return y, idata


def test_plot_ppc_bounds_the_points_of_every_kde(monkeypatch):
    y, idata = _big_univariate(30_000)
    sizes = []
    kde = mixtures.plots.univariate._kde
    monkeypatch.setattr(
        mixtures.plots.univariate, "_kde", lambda v, g, h: sizes.append(v.size) or kde(v, g, h)
    )
    ax = mixtures.plot_ppc(idata, num_draws=6, max_points=2_000, random_seed=0)
    assert sizes == [2_000] * 7
    # the data's curve still estimates the generating density, smoothed by the kernel of
    # Scott's rule at n = 2,000 (the subsample's size)
    grid, dens = ax.get_lines()[-1].get_data()
    h = 0.5 * 2_000**-0.2 * y.std(ddof=1)
    truth = (W * stats.norm.pdf(grid[:, None], MU, np.sqrt(SD**2 + h**2))).sum(axis=1)
    assert np.abs(dens - truth).max() < 0.1 * truth.max()
    with pytest.raises(ValueError, match=r"`max_points` should be an integer >= 1, but got 0"):
        mixtures.plot_ppc(idata, max_points=0)


def test_plot_ppc_2d_bounds_the_points_of_every_kde(X, monkeypatch):
    model, idata, _ = _mv_case(X, "full", "wishart")
    mixtures.sample_posterior_predictive(model, idata, random_seed=12)
    sizes = []
    kde = mixtures.plots.two_d._kde_2d
    monkeypatch.setattr(
        mixtures.plots.two_d,
        "_kde_2d",
        lambda p, g, c: sizes.append((p.shape[0], g.shape[0])) or kde(p, g, c),
    )
    ax = mixtures.plot_ppc_2d(idata, num_draws=10, max_points=300, random_seed=0)
    # the data's and the pooled draws' KDEs on the grid, then the data's at its own points
    assert sizes == [(300, 10_000), (300, 10_000), (300, 300)]
    assert ax.collections[0].get_offsets().shape == (300, 2)  # the pooled scatter
    with pytest.raises(ValueError, match=r"`max_points` should be an integer >= 1"):
        mixtures.plot_ppc_2d(idata, max_points=-1)


def test_plot_ppc_kde_equals_scipys_across_blocks():
    values = np.random.default_rng(13).normal(size=9_000)  # three blocks of the 256-point grid
    grid = np.linspace(-5, 5, 256)
    h = 0.3
    ref = stats.gaussian_kde(values, bw_method=h / values.std(ddof=1))(grid)
    np.testing.assert_allclose(mixtures.plots.univariate._kde(values, grid, h), ref, rtol=1e-10)
