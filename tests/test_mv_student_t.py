"""Multivariate Student-t components (issue 23): density, model, Gibbs kernel, downstream.

Every check compares against an independent computation: scipy's ``multivariate_t``, chi-square
and Gamma laws, NUTS on the marginal model, or closed forms.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import mixtures
from mixtures.model.components import COMPONENT_FAMILIES, family_of
from mixtures.model.densities import mvt_logpdf

QUIET = dict(progressbar=False)


def _mvt(x, mean, chol, nu):
    return stats.multivariate_t(loc=mean, shape=chol @ chol.T, df=nu).logpdf(x)


@pytest.fixture(scope="module")
def two_groups():
    rng = np.random.default_rng(4)
    a = stats.multivariate_t([-3.0, 0.0], [[1.0, 0.3], [0.3, 0.5]], df=5).rvs(50, random_state=rng)
    b = stats.multivariate_t([3.0, 1.0], [[0.6, -0.2], [-0.2, 1.2]], df=5).rvs(40, random_state=rng)
    return np.concatenate([a, b])


# --- density -------------------------------------------------------------------------------------
def test_mvt_logpdf_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (50, 3))
    means = rng.normal(0, 1, (2, 4, 3))
    a = rng.normal(0, 1, (2, 4, 3, 3))
    chol = np.linalg.cholesky(a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(3))
    nu = rng.uniform(0.5, 40, (2, 4))
    got = mvt_logpdf(x, means, chol, nu)
    assert got.shape == (2, 4, 50)
    for s in range(2):
        for j in range(4):
            ref = _mvt(x, means[s, j], chol[s, j], nu[s, j])
            np.testing.assert_allclose(got[s, j], ref, rtol=1e-11)
    # the family: shape (..., n_obs, k), weighted by log w
    fam = COMPONENT_FAMILIES["mvt"]
    w = np.array([[0.1, 0.2, 0.3, 0.4]] * 2)
    out = fam.weighted_logpdf(x, w, {"means": means, "chol_cov": chol, "nu": nu})
    np.testing.assert_allclose(
        out[1, :, 2], np.log(0.3) + _mvt(x, means[1, 2], chol[1, 2], nu[1, 2])
    )
    # a row with a missing cell: the observed cells' t marginal (same nu, sub-matrix)
    xm = x[:3].copy()
    xm[1, 2] = np.nan
    sub = np.linalg.cholesky((chol[0, 0] @ chol[0, 0].T)[:2, :2])
    got = mvt_logpdf(xm, means[0, 0], chol[0, 0], nu[0, 0])
    np.testing.assert_allclose(got[1], _mvt(xm[1, :2], means[0, 0, :2], sub, nu[0, 0]), rtol=1e-11)


# --- model and spec ------------------------------------------------------------------------------
def test_spec_records_family_and_nu(two_groups):
    spec = mixtures.spec_of(mixtures.mv_mixture(two_groups, 2, family="t"))
    assert spec.family == "mvt" and spec.kind == "mv" and not spec.univariate
    assert spec.priors["nu"].to_dict() == {"dist": "Gamma", "alpha": [2.0, 2.0], "beta": [0.1, 0.1]}
    assert family_of(spec).name == "mvt"
    fixed = mixtures.spec_of(mixtures.mv_mixture(two_groups, 2, family="t", nu=[3, 30]))
    assert fixed.known["nu"].tolist() == [3.0, 30.0] and "nu" not in fixed.priors
    assert mixtures.spec_of(mixtures.mv_mixture(two_groups, 2)).family == "mvnormal"


def test_bad_family_nu_and_missing_cells_are_refused(two_groups):
    with pytest.raises(ValueError, match=r"`family` should be one of \['normal', 't'\]"):
        mixtures.mv_mixture(two_groups, 2, family="cauchy")
    with pytest.raises(ValueError, match="`nu` should be None with family='normal'"):
        mixtures.mv_mixture(two_groups, 2, nu=3)
    with pytest.raises(ValueError, match="`nu` should contain only values > 0"):
        mixtures.mv_mixture(two_groups, 2, family="t", nu=[3, -1])
    with pytest.raises(ValueError, match=r"`priors` keys should be among"):
        mixtures.mv_mixture(two_groups, 2, family="t", nu=4, priors={"nu": {"alpha": 2.0}})
    x = two_groups.copy()
    x[3, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"`X` should have no missing cells with family='t'.*1 NaN"
    ):
        mixtures.mv_mixture(x, 2, family="t")


def _values(model, point, names):
    """The values of `names` at `point` (the model's own transforms, evaluated alone)."""
    import pymc as pm

    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = pm.compile(model.value_vars, outs, on_unused_input="ignore")
    return [np.asarray(v) for v in fn(*(point[v.name] for v in model.value_vars))]


@pytest.mark.parametrize("marginalized", [True, False])
def test_pymc_likelihood_is_the_mvt_mixture(two_groups, marginalized):
    model = mixtures.mv_mixture(two_groups, 2, family="t", marginalized=marginalized)
    point = model.initial_point()
    point["nu_log__"] = np.log([3.0, 7.0])
    point["wishart_z"] = np.array([[0.4], [-0.7]])
    w, mu, chol, nu = _values(model, point, ["weights", "means", "chol_cov", "nu"])
    np.testing.assert_allclose(nu, [3.0, 7.0])
    comp = np.stack([_mvt(two_groups, mu[j], chol[j], nu[j]) for j in range(2)], axis=1)
    if marginalized:
        expected = logsumexp(np.log(w) + comp, axis=1).sum()
    else:
        z = (two_groups[:, 0] > 0).astype(int)
        point["assignment"] = z
        expected = comp[np.arange(z.size), z].sum()
    logp_y = model.compile_logp(vars=[model["y"]])
    np.testing.assert_allclose(logp_y(point), expected, rtol=1e-9)


def test_pymc_likelihood_one_component_fixed_nu(two_groups):
    model = mixtures.mv_mixture(two_groups, 1, family="t", nu=4.5)
    point = model.initial_point()
    mu, chol = _values(model, point, ["means", "chol_cov"])
    expected = _mvt(two_groups, mu[0], chol[0], 4.5).sum()
    np.testing.assert_allclose(model.compile_logp(vars=[model["y"]])(point), expected, rtol=1e-9)
