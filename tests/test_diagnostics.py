"""Convergence checks: unrounded r_hat, bulk and tail ESS, and warnings at the user's line."""

import warnings

import arviz as az
import numpy as np
import pytest
from scipy.optimize import brentq

import mixtures
from mixtures.analysis.diagnostics import ConvergenceWarning, convergence_table, warn_convergence


def _posterior(means: np.ndarray) -> az.InferenceData:
    """4 chains: weights and sigma mixed perfectly, ``means[0]`` as given."""
    rng = np.random.default_rng(7)
    draws = means.shape[1]
    post = {
        "weights": rng.dirichlet([50.0, 50.0], size=(4, draws)),
        "means": np.stack([means, rng.normal(size=means.shape) + 10], axis=-1),
        "sigma": rng.gamma(50.0, 0.02, size=(4, draws, 2)),
    }
    dims = {name: ["component"] for name in post}
    return az.from_dict(posterior=post, dims=dims)


def _shifted(target: float) -> np.ndarray:
    """Chains shifted apart until ArviZ's (unrounded) rank-normalised r_hat equals `target`."""
    base = np.random.default_rng(3).normal(size=(4, 4000))
    offsets = np.array([-1.5, -0.5, 0.5, 1.5])[:, None]
    delta = brentq(lambda d: az.rhat(base + d * offsets) - target, 0.0, 1.0)
    return base + delta * offsets


@pytest.mark.parametrize(("r_hat", "flagged"), [(1.012, True), (1.0149, True), (1.008, False)])
def test_r_hat_is_compared_unrounded(r_hat, flagged):
    idata = _posterior(_shifted(r_hat))
    assert float(az.rhat(idata.posterior)["means"].sel(component=0)) == pytest.approx(r_hat)
    # ArviZ's default table rounds this to 1.01: the old check passed it
    assert az.summary(idata, kind="diagnostics").loc["means[0]", "r_hat"] <= 1.01 or not flagged
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = warn_convergence(idata)
    r_hat_problems = [p for p in problems if p.startswith("r_hat")]
    if flagged:
        assert r_hat_problems and "means[0]" in r_hat_problems[0]
        assert "means[1]" not in r_hat_problems[0] and "weights" not in r_hat_problems[0]
        assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    else:
        assert not r_hat_problems


def test_tail_ess_is_checked_as_well_as_bulk():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 2000))
    for c in range(4):  # the extreme draws come in runs of 100: the tails mix slowly
        v = x[c]
        extreme = np.abs(v) > np.quantile(np.abs(v), 0.9)
        middle, tails = list(v[~extreme]), v[extreme]
        runs = [tails[i : i + 100] for i in range(0, tails.size, 100)]
        at = np.sort(rng.choice(len(middle), len(runs), replace=False))[::-1]
        for position, run in zip(at, runs, strict=True):
            middle[position:position] = list(run)
        x[c] = middle
    idata = _posterior(x)
    bulk = float(az.ess(idata.posterior, method="bulk")["means"].sel(component=0))
    tail = float(az.ess(idata.posterior, method="tail")["means"].sel(component=0))
    assert bulk > 1000 and tail < 400  # the case: only the tail check sees it
    table = convergence_table(idata)
    assert table.loc["means[0]", "ess_tail"] == pytest.approx(tail)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        problems = warn_convergence(idata)
    assert f"tail ESS < 400 (down to {tail:.0f}) for means[0]" in problems
    assert not any(p.startswith("bulk ESS") for p in problems)


def test_table_matches_arviz_unrounded_and_skips_fixed_quantities():
    rng = np.random.default_rng(2)
    post = {
        "weights": np.ones((2, 300, 1)),  # one component: fixed by construction
        "means": rng.normal(size=(2, 300, 1)),
        "sigma": rng.gamma(5.0, size=(2, 300, 1)),
    }
    idata = az.from_dict(posterior=post, dims={n: ["component"] for n in post})
    table = convergence_table(idata)
    assert list(table.index) == ["means[0]", "sigma[0]"]
    reference = az.summary(idata, var_names=["means", "sigma"], kind="diagnostics",
                           round_to="none")  # fmt: skip
    for column in ("r_hat", "ess_bulk", "ess_tail"):
        np.testing.assert_allclose(table[column], reference.loc[table.index, column])


def test_multivariate_correlations_are_checked_and_summarised():
    rng = np.random.default_rng(4)
    chol = np.zeros((4, 500, 2, 2, 2))
    chol[..., 0, 0] = 1.0
    chol[..., 1, 1] = 0.6
    chol[..., 1, 0] = 0.8 + 0.01 * rng.normal(size=(4, 500, 2))
    chol[2, :, 1, 1, 0] += 0.05  # one chain elsewhere: the correlation of component 1 disagrees
    post = {
        "weights": rng.dirichlet([50.0, 50.0], size=(4, 500)),
        "means": rng.normal(size=(4, 500, 2, 2)),
        "chol_cov": chol,
    }
    dims = {"weights": ["component"], "means": ["component", "feature"],
            "chol_cov": ["component", "feature", "feature_bis"]}  # fmt: skip
    coords = {"feature": ["a", "b"], "feature_bis": ["a", "b"]}
    idata = az.from_dict(posterior=post, dims=dims, coords=coords)
    table = mixtures.summary_table(idata)
    corr = 0.8 / np.sqrt(0.8**2 + 0.6**2)  # cov = L L^T
    assert table.loc["correlation[0, a~b]", "mean"] == pytest.approx(corr, abs=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        problems = warn_convergence(idata)
    assert any("correlation[1, a~b]" in p and p.startswith("r_hat") for p in problems)
    assert not any("correlation[0, a~b]" in p for p in problems)


def test_the_warning_points_at_the_callers_line():
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    model = mixtures.full_mixture(y, 3)
    with pytest.warns(ConvergenceWarning) as caught:
        mixtures.sample(model, draws=10, tune=10, chains=2, random_seed=1, tempering=False)
    assert {w.filename for w in caught} == {__file__}
    handle = mixtures.compile_model(model)
    with pytest.warns(ConvergenceWarning) as caught:
        handle.sample(draws=10, tune=10, chains=2, random_seed=1, tempering=False)
    assert {w.filename for w in caught} == {__file__}
