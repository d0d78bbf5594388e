"""Student-t components (issue 23): density, model, Gibbs kernel, engines and downstream.

Every check compares against an independent computation: scipy's t and Gamma laws, PyMC's own
StudentT log-density, NUTS on the marginal model, quadrature, or the fit without outliers.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from scipy import integrate, special, stats
from scipy.special import gammaln, logsumexp

import mixtures
from mixtures import _kernels_t
from mixtures.analysis.calibration import sbc
from mixtures.model.densities import component_logpdf, student_t_logpdf

QUIET = dict(progressbar=False)


def _fit(model, **kwargs):
    kwargs.setdefault("random_seed", 1)
    kwargs.setdefault("warn", False)
    return mixtures.sample(model, sampler="gibbs", **QUIET, **kwargs)


@pytest.fixture(scope="module")
def two_groups():
    rng = np.random.default_rng(4)
    return np.concatenate([rng.standard_t(5, 50) - 3.0, 3.0 + 0.7 * rng.standard_t(5, 40)])


# --- density -------------------------------------------------------------------------------------
def test_student_t_logpdf_matches_scipy():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 30, 200)
    mu, sd, nu = rng.normal(0, 5, (3, 1)), rng.uniform(0.1, 9, (3, 1)), [[0.3], [2.5], [1e3]]
    np.testing.assert_allclose(
        student_t_logpdf(y, mu, sd, nu), stats.t.logpdf(y, nu, mu, sd), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(component_logpdf(y, 1.0, 2.0, 4.0), stats.t.logpdf(y, 4, 1, 2))
    np.testing.assert_allclose(component_logpdf(y, 1.0, 2.0), stats.norm.logpdf(y, 1, 2))


def test_branch_free_log_and_cos_match_numpy():
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-700, 700, 100_000)),
            1.0 + rng.uniform(-1e-6, 1e-6, 10_000),  # near 1, where ln x is small
            [np.finfo(float).tiny, np.finfo(float).max, 1.0, 2.0, 0.5, np.sqrt(2.0)],
        ]
    )
    out = np.empty_like(x)
    _kernels_t.log_array(x, out)
    ref = np.log(x)
    err = np.abs(out - ref) / np.maximum(np.abs(ref), 1e-300)
    big = np.abs(ref) > 1e-3
    assert err[big].max() < 4e-16
    assert np.abs(out - ref)[~big].max() < 1e-19
    u = np.concatenate([rng.uniform(0, 1, 100_000), [0.0, 0.25, 0.5, 0.75, 1 - 2**-53]])
    _kernels_t.cos2pi_array(u, out[: u.size])
    assert np.abs(out[: u.size] - np.cos(2 * np.pi * u)).max() < 1e-15


@pytest.mark.parametrize("shape", [0.3, 1.0, 2.5, 40.0])
def test_block_gamma_sampler_matches_scipy(shape):
    # the sweep's vectorised Marsaglia-Tsang (paired Box-Muller, squeeze, log test, redraws,
    # the boost below shape 1) against scipy's Gamma law, on 2e4 draws
    out = np.empty(20_000)
    _kernels_t.gamma_array(shape, np.uint64(11), np.array([5], dtype=np.uint64), out)
    assert np.all(out > 0)
    assert stats.kstest(out, stats.gamma(shape).cdf).pvalue > 1e-3
    # the small values too: the mean of log G against digamma (its sd from trigamma)
    se = np.sqrt(special.polygamma(1, shape) / out.size)
    assert abs(np.log(out).mean() - special.digamma(shape)) < 5 * se


# --- model and spec ------------------------------------------------------------------------------
def test_spec_records_family_and_nu(two_groups):
    spec = mixtures.spec_of(mixtures.full_mixture(two_groups, 2, family="t"))
    assert spec.family == "t" and spec.univariate and "nu" in spec.free
    assert spec.priors["nu"].to_dict() == {"dist": "Gamma", "alpha": [2.0, 2.0], "beta": [0.1, 0.1]}
    fixed = mixtures.spec_of(mixtures.shared_sd_mixture(two_groups, 2, family="t", nu=4))
    assert fixed.known["nu"].tolist() == [4.0, 4.0] and "nu" not in fixed.priors
    assert fixed.to_dict()["known"]["nu"] == [4.0, 4.0]
    per = mixtures.spec_of(mixtures.full_mixture(two_groups, 2, family="t", nu=[3, 30]))
    assert per.known["nu"].tolist() == [3.0, 30.0]
    mine = mixtures.full_mixture(two_groups, 2, family="t", priors={"nu": {"alpha": 3.0}})
    assert mixtures.spec_of(mine).priors["nu"].params["alpha"].tolist() == [3.0, 3.0]
    assert mixtures.spec_of(mixtures.full_mixture(two_groups, 2)).family == "normal"


def test_bad_family_and_nu_are_refused(two_groups):
    with pytest.raises(ValueError, match=r"`family` should be one of \['normal', 't'\]"):
        mixtures.full_mixture(two_groups, 2, family="cauchy")
    with pytest.raises(ValueError, match="`nu` should be None with family='normal'"):
        mixtures.full_mixture(two_groups, 2, nu=3)
    with pytest.raises(ValueError, match="`nu` should contain only values > 0"):
        mixtures.full_mixture(two_groups, 2, family="t", nu=[3, -1])
    with pytest.raises(ValueError, match=r"`priors` keys should be among"):
        mixtures.full_mixture(two_groups, 2, priors={"nu": {"alpha": 2.0}})


def _constrained(model, point, name):
    """The value of `name` at `point`, by its transform's backward map (evaluated alone)."""
    rv = model[name]
    value = point[model.rvs_to_values[rv].name]
    return np.asarray(model.rvs_to_transforms[rv].backward(value).eval())


@pytest.mark.parametrize("marginalized", [True, False])
def test_pymc_likelihood_is_the_t_mixture(two_groups, marginalized):
    model = mixtures.full_mixture(two_groups, 2, family="t", marginalized=marginalized)
    point = model.initial_point()
    point.update(nu_log__=np.log([3.0, 7.0]), sigma_log__=np.log([1.2, 0.8]))
    mu, w, sd, nu = (_constrained(model, point, n) for n in ("means", "weights", "sigma", "nu"))
    np.testing.assert_allclose([sd, nu], [[1.2, 0.8], [3.0, 7.0]])
    logp_y = model.compile_logp(vars=[model["y"]])
    comp = stats.t.logpdf(two_groups[:, None], [3.0, 7.0], mu, [1.2, 0.8])
    if marginalized:
        expected = logsumexp(np.log(w) + comp, axis=1).sum()
    else:
        z = (two_groups > 0).astype(int)
        point["assignment"] = z
        expected = comp[np.arange(z.size), z].sum()
    np.testing.assert_allclose(logp_y(point), expected, rtol=1e-9)


# --- the Gibbs kernel's conditional draws -------------------------------------------------------
MU = np.array([-1.0, 0.5, 2.0])
SD = np.array([0.6, 1.0, 0.8])
NU = np.array([2.0, 5.0, 30.0])
LOGW = np.log([0.3, 0.5, 0.2])


def _powered_marginal(y, beta):
    """log of w_j * integral of N(y | mu_j, sd_j^2 / lam)^beta Gamma(lam | nu_j/2, nu_j/2), by
    quadrature (an independent computation of the sweep's logits); shape (k, n_obs)."""
    out = np.empty((3, y.size))
    for j in range(3):
        prior = stats.gamma(NU[j] / 2, scale=2 / NU[j])
        for i, yi in enumerate(y):

            def f(lam):
                return np.exp(
                    beta * stats.norm.logpdf(yi, MU[j], SD[j] / np.sqrt(lam))
                ) * prior.pdf(lam)

            out[j, i] = LOGW[j] + np.log(integrate.quad(f, 0, np.inf, limit=200)[0])
    return out


def _sweep(y, betas, fixed, seed=2):
    reps = betas.size
    b = betas[:, None]
    h = np.broadcast_to(NU / 2, (reps, 3)).copy()
    e = h + b / 2
    c = b / (2 * SD**2) * np.ones((reps, 3))
    a = LOGW - b * np.log(SD) + gammaln(e) - gammaln(h) + h * np.log(h)
    mus = np.broadcast_to(MU, (reps, 3)).copy()
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, size=reps, dtype=np.uint64)
    state = rng.integers(0, 2**63, size=reps, dtype=np.uint64)
    z = np.full((reps, y.size), -1, dtype=np.int8)
    lam = np.zeros((reps, y.size))
    sums = np.zeros((reps, 5, 3))
    changed = np.zeros(reps, dtype=np.int64)
    nu = np.broadcast_to(NU, (reps, 3)).copy()
    nu_model = (-1, np.ones(3), np.ones(3))
    _kernels_t.sweep_t(
        y,
        fixed,
        (a, c, h, e),
        mus,
        keys,
        state,
        z,
        lam,
        sums,
        changed,
        nu,
        nu_model,
        np.zeros(reps),
    )
    return z, lam, sums, c


def test_sweep_draws_the_assignments_from_the_t_marginal_and_the_weights_from_their_gamma():
    y = np.linspace(-4.0, 5.0, 40)
    fixed = np.full(y.size, -1, dtype=np.int32)
    fixed[::9] = np.arange(0, y.size, 9) % 3
    betas = np.repeat([1.0, 0.35], 4000)
    z, lam, sums, c = _sweep(y, betas, fixed)
    known = fixed >= 0
    assert np.all(z[:, known] == fixed[known])
    free = np.flatnonzero(~known)
    for beta in (1.0, 0.35):
        rows = betas == beta
        logits = _powered_marginal(y[free], beta)
        probs = np.exp(logits - logsumexp(logits, axis=0))
        if beta == 1.0:  # the cold conditional is w_j t_nu_j(y | mu_j, sd_j)
            ref = LOGW[:, None] + stats.t.logpdf(y[free], NU[:, None], MU[:, None], SD[:, None])
            np.testing.assert_allclose(probs, np.exp(ref - logsumexp(ref, axis=0)), rtol=1e-6)
        counts = np.stack([(z[rows][:, free] == j).sum(axis=0) for j in range(3)])
        expected = probs * rows.sum()
        keep = expected.min(axis=0) > 5.0
        stat = ((counts - expected)[:, keep] ** 2 / expected[:, keep]).sum()
        assert keep.sum() > 20
        assert stats.chi2.sf(stat, df=2 * keep.sum()) > 1e-3
        # lambda | z: lambda * (nu_j / 2 + c_j d^2) ~ Gamma(nu_j / 2 + beta / 2)
        for j in range(3):
            rr, ii = np.nonzero((z == j) & rows[:, None])
            scaled = lam[rr, ii] * (NU[j] / 2 + c[rr, j] * (y[ii] - MU[j]) ** 2)
            sample = scaled[:: max(1, scaled.size // 5000)]
            assert stats.kstest(sample, stats.gamma(NU[j] / 2 + beta / 2).cdf).pvalue > 1e-3
    # the sums are those of the drawn weights
    r = 5
    d = y[None, :] - MU[z[r]][None, :]
    for j in range(3):
        m = z[r] == j
        np.testing.assert_allclose(
            sums[r, :, j],
            [
                m.sum(),
                lam[r, m].sum(),
                (lam[r] * d[0])[m].sum(),
                (lam[r] * d[0] ** 2)[m].sum(),
                np.log(lam[r, m]).sum(),
            ],
            rtol=1e-10,
        )


# --- engines agree; downstream uses the t density -------------------------------------------------
@pytest.mark.slow  # NUTS on the marginal t mixture: ~100 s here
def test_gibbs_equals_pymc_nuts_with_sampled_nu(two_groups):
    model = mixtures.full_mixture(two_groups, 2, family="t")
    ours = _fit(model, draws=1500, tune=500, chains=2)
    with np.errstate(all="ignore"):
        ref = mixtures.sample(
            model,
            sampler="pymc",
            draws=1000,
            tune=1000,
            chains=2,
            random_seed=2,
            warn=False,
            **QUIET,
        )
    names = ["weights", "means", "sigma", "nu"]
    for n in names:  # KS on thinned draws, and means within MCSE
        a = ours.posterior[n].values.reshape(-1, 2)[::10]
        b = ref.posterior[n].values.reshape(-1, 2)[::5]
        for j in range(2):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3, (n, j)
    ta, tb = (az.summary(i, var_names=names, round_to="none") for i in (ours, ref))
    mcse = np.sqrt(ta["mcse_mean"] ** 2 + tb["mcse_mean"] ** 2)
    np.testing.assert_array_less(np.abs(ta["mean"] - tb["mean"]), 4.5 * mcse)
    acc = float(ours.sample_stats["nu_accept"].mean())
    assert 0.15 < acc < 0.9


def test_downstream_uses_the_t_density(two_groups):
    model = mixtures.full_mixture(two_groups, 2, family="t", marginalized=False)
    idata = _fit(model, draws=200, tune=200, chains=2)
    assert idata.posterior["precision_weights"].dims == ("chain", "draw", "obs_id")
    post = idata.posterior
    w, mu, sd, nu = (post[n].values[1, 17] for n in ("weights", "means", "sigma", "nu"))
    comp = np.log(w) + stats.t.logpdf(two_groups[:, None], nu, mu, sd)
    np.testing.assert_allclose(
        idata.log_likelihood["y"].values[1, 17], logsumexp(comp, axis=1), rtol=1e-10
    )
    new = np.array([-3.0, 0.0, 40.0])
    resp = np.exp(
        (lambda c: c - logsumexp(c, axis=-1, keepdims=True))(
            np.log(post["weights"].values)[..., None, :]
            + stats.t.logpdf(
                new[:, None],
                post["nu"].values[..., None, :],
                post["means"].values[..., None, :],
                post["sigma"].values[..., None, :],
            )
        )
    ).mean(axis=(0, 1))
    np.testing.assert_allclose(mixtures.predict_proba(idata, new), resp, rtol=1e-8)
    mixtures.sample_posterior_predictive(model, idata, num_draws=None, random_seed=3)
    pred = idata.posterior_predictive["y"].values
    # every predictive value follows the posterior predictive t mixture: ECDF against its CDF
    sim = pred.ravel()
    grid = np.linspace(-12, 12, 25)
    ecdf = (sim[:, None] <= grid).mean(axis=0)
    ref_cdf = np.array(
        [
            np.mean(
                (
                    post["weights"].values
                    * stats.t.cdf(x, post["nu"].values, post["means"].values, post["sigma"].values)
                ).sum(-1)
            )
            for x in grid
        ]
    )
    np.testing.assert_allclose(ecdf, ref_cdf, atol=0.01)


def _quadrature_posterior(grid, log_density):
    """Normalised CDF on `grid` of an unnormalised log-density, and its log normaliser."""
    logp = log_density(grid)
    pdf = np.exp(logp - logp.max())
    cdf = integrate.cumulative_trapezoid(pdf, grid, initial=0)
    return cdf / cdf[-1], logp.max() + np.log(integrate.trapezoid(pdf, grid))


@pytest.mark.slow  # 54 s in the default run; SBC with sampled nu is in the slow tier too
def test_one_component_posteriors_of_the_mean_and_of_nu_equal_quadrature():
    rng = np.random.default_rng(8)
    y = 1.0 + 0.5 * rng.standard_t(3, 40)
    y[:2] = [9.0, -7.0]  # two outliers, where the t and the Normal differ
    # the mean, nu fixed and sd known: log p(mu | y) = log N(mu | 0, 3) + sum log t_4(y | mu, 0.5)
    model = mixtures.full_mixture(
        y, 1, family="t", nu=4.0, sigma=0.5, priors={"means": {"mu": 0.0, "sigma": 3.0}}
    )
    idata = _fit(model, draws=3000, chains=2, tempering=False)
    grid = np.linspace(-1.0, 3.0, 4001)
    cdf, log_z = _quadrature_posterior(
        grid,
        lambda m: (
            stats.norm.logpdf(m, 0, 3)
            + stats.t.logpdf(y[:, None], 4.0, m[None, :], 0.5).sum(axis=0)
        ),
    )
    draws = idata.posterior["means"].values.ravel()[::6]
    assert stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3
    # bridge sampling needs the t density: log p(y) against the same quadrature
    est, se = mixtures.log_evidence(idata, method="bridge")
    assert abs(est - log_z) < 4 * se + 0.02
    # nu sampled with mean and sd known: p(nu | y) from its Gamma(2, 0.1) prior and the t density
    model = mixtures.full_mixture(
        y, 1, family="t", sigma=0.5, priors={"means": {"mu": 1.0, "sigma": 1e-4}}
    )
    idata = _fit(model, draws=3000, chains=2, tempering=False)
    grid = np.linspace(0.05, 60.0, 6000)
    cdf, _ = _quadrature_posterior(
        grid,
        lambda v: (
            stats.gamma.logpdf(v, 2, scale=10)
            + stats.t.logpdf(y[:, None], v[None, :], 1.0, 0.5).sum(axis=0)
        ),
    )
    draws = idata.posterior["nu"].values.ravel()[::6]
    assert stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3


# --- robustness: the outlier data set -----------------------------------------------------------
def test_t_means_ignore_gross_outliers_where_normal_means_do_not():
    df = mixtures.load_dataset("with_outliers")
    y, clean = df["x"].to_numpy(), df.loc[df["component"] >= 0, "x"].to_numpy()
    kw = dict(draws=300, chains=2, tune=200)

    def means(data, **family):
        post = _fit(mixtures.full_mixture(data, 2, **family), **kw).posterior["means"]
        return post.mean(("chain", "draw")).values, post.std(("chain", "draw")).values

    for family in ({"family": "t"},):
        ref, ref_sd = means(clean, **family)
        got, _ = means(y, **family)
        assert np.all(np.abs(got - ref) < 2 * ref_sd), (family, got, ref, ref_sd)
    ref, ref_sd = means(clean)
    got, _ = means(y)
    # the Normal mixture's do not: at least one mean leaves the same 2-sd band (measured 4-10
    # sds, depending on which component the outliers pull)
    assert np.any(np.abs(got - ref) > 2 * ref_sd), (got, ref, ref_sd)


# --- simulation-based calibration (slow tier) ----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("nu", [5.0, None], ids=["nu-fixed", "nu-sampled"])
def test_sbc_t_mixture(nu):
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()[:60]
    model = mixtures.full_mixture(y, 2, family="t", nu=nu)
    result = sbc(
        model,
        n_sims=200,
        draws=500,
        tune=300,
        chains=2,
        tempering=8,  # untempered, 83% of the fits end at r_hat > 1.01 (overlapping components)
        random_seed=5,
        progressbar=False,
    )
    print(result.tests(), result.rates)
    assert result.passed, result.tests()


# --- command line -------------------------------------------------------------------------------
def test_cli_fits_t_components(tmp_path, capsys):
    import json

    from mixtures.cli import main

    path = tmp_path / "outliers.csv"
    mixtures.load_dataset("with_outliers").to_csv(path, index=False)
    fast = ["--draws", "100", "--tune", "100", "--chains", "1", "--quiet", "--seed", "1"]
    code = main(["fit", str(path), "--column", "x", "--k", "2", "--family", "t", "--nu", "4",
                 "--out", str(tmp_path / "t"), *fast])  # fmt: skip
    assert code in (0, 3)
    spec = json.loads((tmp_path / "t" / "run.json").read_text())["spec"]
    assert spec["family"] == "t" and spec["known"]["nu"] == [4.0, 4.0]
    code = main(["fit", str(path), "--column", "x", "--model", "known", "--means", "0,1",
                 "--sds", "1,1", "--family", "t", "--out", str(tmp_path / "kn"), *fast])  # fmt: skip
    assert code == 2
    assert "--family t needs --model shared, full or mv" in capsys.readouterr().err


@pytest.mark.parametrize("marginalized", [True, False])
def test_t_chains_on_threads_draw_what_one_thread_draws(two_groups, marginalized, one_thread):
    # the t kernel runs whole chains on threads at any size (engines/chain_threads.py); each
    # chain owns its replicas, its nu, its precision weights and its streams

    model = mixtures.full_mixture(two_groups, 2, family="t", marginalized=marginalized)
    kw = dict(draws=100, tune=100, chains=3, random_seed=7, tempering=4)
    with one_thread():
        one = _fit(model, **kw)
    many = _fit(model, **kw)
    names = ["weights", "means", "sigma", "nu"]
    names += [] if marginalized else ["precision_weights"]
    for name in names:
        np.testing.assert_array_equal(one.posterior[name], many.posterior[name])
    np.testing.assert_array_equal(one.sample_stats["nu_accept"], many.sample_stats["nu_accept"])
