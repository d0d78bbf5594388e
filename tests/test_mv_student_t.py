"""Multivariate Student-t components (issue 23): density, model, Gibbs kernel, downstream.

Every check compares against an independent computation: scipy's ``multivariate_t``, chi-square
and Gamma laws, NUTS on the marginal model, or closed forms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    from mixtures.engines.registry import choose_sampler

    name, why = choose_sampler(mixtures.mv_mixture(two_groups, 2, family="t"))
    assert name == "gibbs" and "multivariate t mixture" in why
    lkj = mixtures.mv_mixture(two_groups, 2, family="t", covariance_prior="lkj")
    assert choose_sampler(lkj)[0] == "pymc"  # LKJ + t: NUTS


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


# --- the Gibbs kernel's conditional draws -------------------------------------------------------
MU = np.array([[-1.0, 0.0], [0.5, 1.0], [2.0, -0.5]])
SCALE = np.array([[[0.6, 0.2], [0.2, 0.5]], [[1.0, -0.3], [-0.3, 0.8]], [[0.4, 0.0], [0.0, 1.5]]])
NU = np.array([2.0, 5.0, 30.0])
W = np.array([0.3, 0.5, 0.2])


def _powered_marginal(x, beta):
    """Return log w_j + log of the integral of N(x | mu_j, S_j / lam)^beta Gamma(lam | nu_j / 2).

    By quadrature over lam (independent of the kernel's closed form); shape (k, n_obs).
    """
    from scipy import integrate

    out = np.empty((3, x.shape[0]))
    for j in range(3):
        prior = stats.gamma(NU[j] / 2, scale=2 / NU[j])
        maha = np.einsum("nd,de,ne->n", x - MU[j], np.linalg.inv(SCALE[j]), x - MU[j])
        logdet = np.linalg.slogdet(SCALE[j])[1]
        for i in range(x.shape[0]):

            def f(lam, i=i):
                logn = -0.5 * lam * maha[i] + np.log(lam) - 0.5 * logdet - np.log(2 * np.pi)
                return np.exp(beta * logn) * prior.pdf(lam)

            out[j, i] = np.log(W[j]) + np.log(integrate.quad(f, 0, np.inf, limit=200)[0])
    return out


def _kernel_sweep(x, betas, fixed, seed=2, nu_model=(-1, np.ones(3), np.ones(3))):
    """One sweep of the kernel on replicas at inverse temperatures `betas` (fixed parameters).

    Returns the assignments, the precision weights, the sums and nu after the sweep (moved by
    the sweep if `nu_model` gives a prior).
    """
    from mixtures._kernels import MvChainState, chain_state
    from mixtures._kernels_mvt import mvt_prepare, mvt_sweep

    reps, (n, d) = betas.size, x.shape
    rng = np.random.default_rng(seed)
    # a factor F with F F^T = Lambda that is not triangular, as the engine's (U^-T A) are
    rot = np.array([[np.cos(0.7), -np.sin(0.7)], [np.sin(0.7), np.cos(0.7)]])
    fac = np.linalg.cholesky(np.linalg.inv(SCALE)) @ rot
    params = {
        "logw": np.broadcast_to(np.log(W), (reps, 3)).copy(),
        "mu": np.broadcast_to(MU, (reps, 3, d)).copy(),
        "fac": np.broadcast_to(fac, (reps, 3, d, d)).copy(),
        "logdet": np.broadcast_to(-np.linalg.slogdet(SCALE)[1], (reps, 3)).copy(),
    }
    z = np.full((reps, n), -1, dtype=np.int8)
    state = rng.integers(0, 2**63, size=reps, dtype=np.uint64)
    replicas = (z, state, np.zeros(1, np.uint64), np.arange(reps), np.arange(reps)[None, :])
    chain = chain_state(MvChainState, params, replicas, betas, fixed)
    coef = tuple(np.empty((reps, 3)) for _ in range(4))
    keys = np.empty(reps, dtype=np.uint64)
    nu = np.broadcast_to(NU, (reps, 3)).copy()
    mvt_prepare(chain, nu, coef, keys)
    lam = np.zeros((reps, n))
    sums = (np.zeros((reps, 3)), np.zeros((reps, 3)), np.zeros((reps, 3, d)))
    sums += (np.zeros((reps, 3, d, d)), np.zeros((reps, 3)))
    mvt_sweep(
        np.ascontiguousarray(x.T), fixed, coef, chain.mu, chain.fac, keys, chain.state, z, lam,
        sums, np.zeros(reps, dtype=np.int64), nu, nu_model, np.zeros(reps),
    )  # fmt: skip
    return z, lam, sums, nu


def test_sweep_draws_z_from_the_t_marginal_and_lambda_from_its_gamma():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-4, 4, (30, 2)), [[0.4, 0.6], [9.0, -9.0]]])
    fixed = np.full(x.shape[0], -1, dtype=np.int32)
    fixed[::8] = np.arange(0, x.shape[0], 8) % 3
    betas = np.repeat([1.0, 0.35], 3000)
    z, lam, sums, _ = _kernel_sweep(x, betas, fixed)
    known = fixed >= 0
    assert np.all(z[:, known] == fixed[known])
    free = np.flatnonzero(~known)
    for beta in (1.0, 0.35):
        rows = betas == beta
        logits = _powered_marginal(x[free], beta)
        probs = np.exp(logits - logsumexp(logits, axis=0))
        if beta == 1.0:  # the cold conditional is w_j t_nu_j(x | mu_j, S_j): scipy's
            ref = np.log(W)[:, None] + np.stack(
                [stats.multivariate_t(MU[j], SCALE[j], df=NU[j]).logpdf(x[free]) for j in range(3)]
            )
            np.testing.assert_allclose(probs, np.exp(ref - logsumexp(ref, axis=0)), atol=1e-8)
        counts = np.stack([(z[rows][:, free] == j).sum(axis=0) for j in range(3)])
        expected = probs * rows.sum()
        keep = expected.min(axis=0) > 5.0
        stat = ((counts - expected)[:, keep] ** 2 / expected[:, keep]).sum()
        assert keep.sum() > 10
        assert stats.chi2.sf(stat, df=2 * keep.sum()) > 1e-3
        # lambda | z: lambda (nu_j / 2 + beta m / 2) ~ Gamma(nu_j / 2 + beta d / 2)
        for j in range(3):
            rr, ii = np.nonzero((z == j) & rows[:, None])
            diff = x[ii] - MU[j]
            maha = np.einsum("nd,de,ne->n", diff, np.linalg.inv(SCALE[j]), diff)
            scaled = lam[rr, ii] * (NU[j] / 2 + beta * maha / 2)
            sample = scaled[:: max(1, scaled.size // 5000)]
            assert stats.kstest(sample, stats.gamma(NU[j] / 2 + beta).cdf).pvalue > 1e-3
    # the sums are those of the drawn weights
    cnt, wsum, s1, s2, sll = sums
    r = 5
    for j in range(3):
        m = z[r] == j
        wl, dd = lam[r, m], x[m] - MU[j]
        np.testing.assert_allclose(
            [cnt[r, j], wsum[r, j], sll[r, j]], [m.sum(), wl.sum(), np.log(wl).sum()]
        )
        np.testing.assert_allclose(s1[r, j], (wl[:, None] * dd).sum(0), rtol=1e-10)
        np.testing.assert_allclose(s2[r, j], np.einsum("n,nd,ne->de", wl, dd, dd), rtol=1e-10)


def test_sweep_with_sampled_nu_draws_lambda_given_the_moved_nu():
    # nu sampled: z from the marginal given the nu it started with, then nu's moves, then
    # every lambda from Gamma(nu' / 2 + beta d / 2, nu' / 2 + beta m / 2) given the moved nu'
    from mixtures.model.prior_codes import SCALE_CODES

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-4, 4, (40, 2)), [[9.0, -9.0]]])
    fixed = np.full(x.shape[0], -1, dtype=np.int32)
    betas = np.repeat([1.0, 0.35], 2000)
    nu_model = (SCALE_CODES["Gamma"], np.full(3, 2.0), np.full(3, 0.1))
    z, lam, sums, nu = _kernel_sweep(x, betas, fixed, seed=4, nu_model=nu_model)
    assert np.mean(np.any(nu != NU, axis=1)) > 0.2  # the moves moved nu in many replicas
    logits = _powered_marginal(x, 1.0)  # the cold replicas' z: given the starting nu
    probs = np.exp(logits - logsumexp(logits, axis=0))
    cold = betas == 1.0
    counts = np.stack([(z[cold] == j).sum(axis=0) for j in range(3)])
    expected = probs * cold.sum()
    keep = expected.min(axis=0) > 5.0
    stat = ((counts - expected)[:, keep] ** 2 / expected[:, keep]).sum()
    assert keep.sum() > 10 and stats.chi2.sf(stat, df=2 * keep.sum()) > 1e-3
    inv = np.linalg.inv(SCALE)
    diff = x[None, :, :] - MU[z]  # (reps, n, d)
    maha = np.einsum("rnd,rnde,rne->rn", diff, inv[z], diff)
    half = np.take_along_axis(nu, z.astype(np.int64), axis=1) / 2  # each row's nu' / 2
    rate = half + betas[:, None] * maha / 2
    u = stats.gamma.cdf(lam * rate, half + betas[:, None])  # uniform if lambda is exact
    for beta in (1.0, 0.35):
        sample = u[betas == beta].ravel()
        assert stats.kstest(sample[:: max(1, sample.size // 5000)], "uniform").pvalue > 1e-3
    cnt, wsum, s1, s2, sll = sums
    for r in (3, 2500):  # the sums are those of the drawn weights
        for j in range(3):
            m = z[r] == j
            wl, dd = lam[r, m], x[m] - MU[j]
            np.testing.assert_allclose(
                [cnt[r, j], wsum[r, j], sll[r, j]], [m.sum(), wl.sum(), np.log(wl).sum()]
            )
            np.testing.assert_allclose(s1[r, j], (wl[:, None] * dd).sum(0), rtol=1e-10)
            np.testing.assert_allclose(s2[r, j], np.einsum("n,nd,ne->de", wl, dd, dd), rtol=1e-10)


# --- engine and downstream ------------------------------------------------------------------------
def _fit(model, **kwargs):
    kwargs.setdefault("random_seed", 1)
    kwargs.setdefault("warn", False)
    return mixtures.sample(model, sampler="gibbs", **QUIET, **kwargs)


def test_downstream_uses_the_mvt_density(two_groups):
    model = mixtures.mv_mixture(two_groups, 2, family="t", marginalized=False)
    idata = _fit(model, draws=150, tune=150, chains=2)
    post = idata.posterior
    assert post["precision_weights"].dims == ("chain", "draw", "obs_id")
    assert "nu" in mixtures.summary_table(idata).index.str.replace(r"\[.*", "", regex=True)
    assert "nu (MH on log nu)" in post.attrs["mixtures_steps"]
    w, mu, chol, nu = (post[n].values for n in ("weights", "means", "chol_cov", "nu"))

    def comp(x, c, s):
        return np.stack(
            [_mvt(x, mu[c, s, j], chol[c, s, j], nu[c, s, j]) for j in range(2)], axis=-1
        )

    ref = logsumexp(np.log(w[1, 17]) + comp(two_groups, 1, 17), axis=1)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[1, 17], ref, rtol=1e-10)
    new = np.array([[-3.0, 0.0], [0.0, 0.5], [40.0, -30.0]])
    resp = np.zeros((3, 2))
    for c in range(2):
        for s in range(150):
            lp = np.log(w[c, s]) + comp(new, c, s)
            resp += np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
    np.testing.assert_allclose(mixtures.predict_proba(idata, new), resp / 300, rtol=1e-8)
    # the NumPy predictive (no PyTensor function compiled): the first feature's ECDF against
    # the mixture of t marginals
    import pytensor.compile.function.types as pytensor_types

    def refuse(*args, **kwargs):
        raise AssertionError("a PyTensor function was compiled")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pytensor_types.FunctionMaker, "__init__", refuse)
        mixtures.sample_posterior_predictive(model, idata, num_draws=None, random_seed=3)
    sim = idata.posterior_predictive["y"].values[..., 0].ravel()
    grid = np.linspace(-8, 8, 17)
    sd0 = np.sqrt((chol[..., 0, :] ** 2).sum(-1))  # sqrt of the scale matrix's (0, 0) entry
    ref_cdf = [np.mean((w * stats.t.cdf(g, nu, mu[..., 0], sd0)).sum(-1)) for g in grid]
    np.testing.assert_allclose((sim[:, None] <= grid).mean(axis=0), ref_cdf, atol=0.01)
    relabelled = mixtures.relabel(idata)
    assert relabelled.posterior["nu"].shape == post["nu"].shape
    # the 2-D predictive check draws the t predictive's points (all of them: fewer than its cap)
    ax = mixtures.plot_ppc_2d(idata, num_draws=5, random_seed=0)
    assert ax.collections[0].get_offsets().shape == (5 * two_groups.shape[0], 2)


def test_one_component_posterior_and_evidence_equal_quadrature():
    """One feature, one component, nu fixed: a 2-D posterior (mean, scale) on a grid."""
    from scipy import integrate

    rng = np.random.default_rng(8)
    y = 1.0 + 0.5 * rng.standard_t(3, 40)
    y[:2] = [6.0, -4.0]
    prior = {"means": {"mu": [0.0], "sigma": [3.0]}, "wishart": {"nu": 3.0, "psi": [[0.5]]}}
    model = mixtures.mv_mixture(y[:, None], 1, family="t", nu=4.0, priors=prior)
    idata = _fit(model, draws=2000, chains=2, tempering=False)
    m = np.linspace(0.0, 2.0, 401)
    v = np.linspace(0.02, 1.2, 400)  # the scale's square
    mm, vv = np.meshgrid(m, v, indexing="ij")
    logp = stats.norm.logpdf(mm, 0, 3) + stats.invgamma.logpdf(vv, 1.5, scale=0.25)
    for yi in y:
        logp += stats.t.logpdf(yi, 4.0, mm, np.sqrt(vv))
    top = logp.max()
    dens = np.exp(logp - top)
    log_z = top + np.log(integrate.trapezoid(integrate.trapezoid(dens, v, axis=1), m))
    marg = integrate.trapezoid(dens, v, axis=1)
    cdf = integrate.cumulative_trapezoid(marg, m, initial=0)
    cdf /= cdf[-1]
    draws = idata.posterior["means"].values.ravel()[::5]
    assert stats.kstest(draws, lambda x: np.interp(x, m, cdf)).pvalue > 1e-3
    est, se = mixtures.log_evidence(idata, method="bridge")
    assert abs(est - log_z) < 4 * se + 0.02


def test_cli_fits_mv_t_components(tmp_path, capsys):
    import json

    from mixtures.cli import main

    rng = np.random.default_rng(1)
    path = tmp_path / "two.csv"
    x = rng.standard_t(4, (60, 2)) + np.repeat([[0.0, 0.0], [6.0, 2.0]], 30, axis=0)
    np.savetxt(path, x, delimiter=",", header="a,b", comments="")
    fast = ["--draws", "100", "--tune", "100", "--chains", "1", "--quiet", "--seed", "1"]
    code = main(["fit", str(path), "--columns", "a,b", "--k", "2", "--model", "mv",
                 "--family", "t", "--nu", "4", "--out", str(tmp_path / "t"), *fast])  # fmt: skip
    assert code in (0, 3)
    spec = json.loads((tmp_path / "t" / "run.json").read_text())["spec"]
    assert spec["family"] == "mvt" and spec["known"]["nu"] == [4.0, 4.0]
    x[3, 1] = np.nan
    np.savetxt(path, x, delimiter=",", header="a,b", comments="")
    code = main(["fit", str(path), "--columns", "a,b", "--k", "2", "--model", "mv",
                 "--family", "t", "--out", str(tmp_path / "m"), *fast])  # fmt: skip
    assert code == 2
    assert (
        "--family t with --model mv needs complete rows, but got 1 row(s)"
        in capsys.readouterr().err
    )


# --- slow tier: a second engine, and calibration -------------------------------------------------
@pytest.mark.slow  # NUTS on the marginal bivariate t mixture (pm.Mixture of pm.MvStudentT)
def test_gibbs_equals_pymc_nuts_with_sampled_nu(two_groups):
    import arviz as az

    model = mixtures.mv_mixture(two_groups, 2, family="t")
    ours = _fit(model, draws=1500, tune=500, chains=2)
    with np.errstate(all="ignore"):
        ref = mixtures.sample(
            model, sampler="pymc", draws=1000, tune=1000, chains=2, random_seed=2, warn=False,
            **QUIET,
        )  # fmt: skip
    names = ["weights", "means", "sigma", "nu"]
    for n in names:  # KS on thinned draws, and means within MCSE
        a = ours.posterior[n].values.reshape(3000, -1)[::10]
        b = ref.posterior[n].values.reshape(2000, -1)[::5]
        for j in range(a.shape[1]):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3, (n, j)
    ta, tb = (az.summary(i, var_names=names, round_to="none") for i in (ours, ref))
    mcse = np.sqrt(ta["mcse_mean"] ** 2 + tb["mcse_mean"] ** 2)
    np.testing.assert_array_less(np.abs(ta["mean"] - tb["mean"]), 4.5 * mcse)
    acc = float(ours.sample_stats["nu_accept"].mean())
    assert 0.15 < acc < 0.9


def _simulate_t(spec, n, rng):
    """Parameters from the spec's prior (means ordered on feature 0), then bivariate t data."""
    k, d = spec.k, spec.n_features
    w = rng.dirichlet(spec.priors["weights"].params["a"])
    mu = rng.normal(spec.priors["means"].params["mu"], spec.priors["means"].params["sigma"])
    mu = mu[np.argsort(mu[:, 0])]
    nu0, psi = float(spec.priors["wishart"].params["nu"]), spec.priors["wishart"].params["psi"]
    scale = stats.invwishart(df=nu0, scale=psi).rvs(size=k, random_state=rng).reshape(k, d, d)
    if "nu" in spec.known:
        nu = np.asarray(spec.known["nu"], dtype=float)
    else:
        p = spec.priors["nu"].params
        nu = rng.gamma(np.asarray(p["alpha"]), 1.0 / np.asarray(p["beta"]))
    z = rng.choice(k, size=n, p=w)
    X = np.stack([stats.multivariate_t(mu[j], scale[j], df=nu[j]).rvs(random_state=rng) for j in z])
    sd = np.sqrt(np.diagonal(scale, axis1=1, axis2=2))
    truth = {f"weights[{j}]": w[j] for j in range(k)}
    truth |= {f"means[{j},{c}]": mu[j, c] for j in range(k) for c in range(d)}
    truth |= {f"sigma[{j},{c}]": sd[j, c] for j in range(k) for c in range(d)}
    truth |= {f"corr[{j}]": scale[j, 0, 1] / (sd[j, 0] * sd[j, 1]) for j in range(k)}
    if "nu" not in spec.known:
        truth |= {f"nu[{j}]": nu[j] for j in range(k)}
    return truth, X


def _t_ranks(compiled, spec, n_sims, seed, n_ranks=99):
    from mixtures.analysis.calibration import SBCResult

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_sims):
        truth, X = _simulate_t(spec, 60, rng)
        idata = compiled.sample(
            X, draws=500, tune=300, chains=2, random_seed=int(rng.integers(2**31)),
            warn=False, log_likelihood=False, progressbar=False,
        )  # fmt: skip
        post = idata.posterior
        flat = lambda da: da.stack(s=("chain", "draw")).transpose("s", ...).values  # noqa: E731
        w, mu, chol = flat(post["weights"]), flat(post["means"]), flat(post["chol_cov"])
        scale = chol @ np.swapaxes(chol, -1, -2)
        sd = np.sqrt(np.diagonal(scale, axis1=-2, axis2=-1))
        draws = {}
        for j in range(spec.k):
            draws[f"weights[{j}]"] = w[:, j]
            draws[f"corr[{j}]"] = scale[:, j, 0, 1] / (sd[:, j, 0] * sd[:, j, 1])
            for c in range(2):
                draws[f"means[{j},{c}]"] = mu[:, j, c]
                draws[f"sigma[{j},{c}]"] = sd[:, j, c]
            if "nu" in post:
                draws[f"nu[{j}]"] = flat(post["nu"])[:, j]
        idx = np.linspace(0, w.shape[0] - 1, n_ranks).round().astype(int)
        rows.append({p: int(np.sum(draws[p][idx] < truth[p])) for p in truth})
    fits = pd.DataFrame({"status": ["ok"] * n_sims, "max_r_hat": [1.0] * n_sims})
    return SBCResult(pd.DataFrame(rows), n_ranks, fits, level=0.01)


@pytest.mark.slow  # 200 Gibbs fits of 60 rows per case (MIXTURES_SBC_SIMS sets how many)
@pytest.mark.parametrize("nu", [5.0, None], ids=["nu-fixed", "nu-sampled"])
def test_sbc_bivariate_t_mixture(nu):
    import os

    rng = np.random.default_rng(0)
    model = mixtures.mv_mixture(rng.normal(size=(60, 2)), 2, family="t", nu=nu)
    n_sims = int(os.environ.get("MIXTURES_SBC_SIMS", "200"))
    result = _t_ranks(mixtures.compile_model(model, sampler="gibbs"), mixtures.spec_of(model),
                      n_sims, seed=1)  # fmt: skip
    print(result.tests(), result.rates)
    assert result.passed, result.tests()


def test_pymc_loop_gives_t_means_no_normal_conjugate_step(two_groups):
    from mixtures.engines.steps.conjugate import mv_conjugate_vars

    kw = dict(marginalized=False, ordered_by=None)
    normal = mixtures.mv_mixture(two_groups, 2, **kw)
    t = mixtures.mv_mixture(two_groups, 2, family="t", **kw)
    assert [v.name for v in mv_conjugate_vars(normal)] == ["weights", "means"]
    assert [v.name for v in mv_conjugate_vars(t)] == ["weights"]  # Dirichlet(a + n) holds for t


def test_mv_t_chains_on_threads_draw_what_one_thread_draws(two_groups, one_thread):

    model = mixtures.mv_mixture(two_groups, 2, family="t", marginalized=False)
    kw = dict(draws=80, tune=80, chains=3, random_seed=7, tempering=2)
    with one_thread():
        one = _fit(model, **kw)
    many = _fit(model, **kw)
    for name in ("weights", "means", "chol_cov", "nu", "precision_weights"):
        np.testing.assert_array_equal(one.posterior[name], many.posterior[name])
