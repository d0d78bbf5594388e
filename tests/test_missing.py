"""Missing cells (missing at random) in multivariate mixtures: issue 23's second half.

Every check compares against an independent computation: SciPy's multivariate Normal on the
observed sub-vector, the closed-form conditional Normal, a second engine (NUTS on the PyMC
model), or the true values of deleted cells.
"""

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, logsumexp
from sklearn.metrics import adjusted_rand_score

import mixtures
from mixtures._kernels import log_cos_sin_array, missing_work, mv_missing_sweep, normals_array
from mixtures.analysis.calibration import SBCResult
from mixtures.engines.gibbs_mv import missing_rows

QUIET = dict(progressbar=False)


def _delete(X, share, rng):
    """Delete `share` of the cells at random, never a whole row."""
    X = np.array(X, dtype=float)
    gone = rng.random(X.shape) < share
    gone[gone.all(axis=1), rng.integers(X.shape[1])] = False
    X[gone] = np.nan
    return X


def _scipy_loglik(X, w, mu, cov, z=None):
    out = []
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        comps = [
            np.log(w[j]) + stats.multivariate_normal(mu[j][o], cov[j][np.ix_(o, o)]).logpdf(x[o])
            for j in range(len(w))
        ]
        out.append(logsumexp(comps) if z is None else comps[z[i]] - np.log(w[z[i]]))
    return np.array(out)


# --- validation --------------------------------------------------------------------------------


def test_rows_without_an_observed_cell_are_refused_with_their_numbers():
    X = np.arange(12.0).reshape(6, 2)
    X[[1, 4]] = np.nan
    with pytest.raises(ValueError, match=r"at least one observed value per row, but got 2 row"):
        mixtures.mv_mixture(X, 2)
    with pytest.raises(ValueError, match=r"row 1, 4"):
        mixtures.mv_mixture(X, 2)


def test_missing_refuse_keeps_the_old_error_and_bad_values_are_refused():
    X = np.arange(12.0).reshape(6, 2)
    X[2, 0] = np.nan
    with pytest.raises(ValueError, match="should contain only finite values"):
        mixtures.mv_mixture(X, 2, missing="refuse")
    with pytest.raises(ValueError, match=r"`missing` should be one of \['model', 'refuse'\]"):
        mixtures.mv_mixture(X, 2, missing="drop")
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match="should contain only finite values"):
        mixtures.mv_mixture(X, 2)


def test_spec_records_the_missingness_and_priors_use_observed_cells():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal([0, 10], [1, 3], size=(50, 2)), columns=["a", "b"])
    df.iloc[::4, 1] = np.nan
    spec = mixtures.spec_of(mixtures.mv_mixture(df, 2))
    assert spec.missing == "model" and spec.to_dict()["missing"] == "model"
    assert spec.built_on["n_missing"] == 13 and spec.built_on["n_incomplete_rows"] == 13
    # data-scaled defaults from the observed cells (pandas skips NaN)
    np.testing.assert_allclose(spec.priors["means"].params["mu"][0], df.mean().to_numpy())
    psi = np.diag(df.std(ddof=0).to_numpy() ** 2) / 4
    np.testing.assert_allclose(spec.priors["wishart"].params["psi"], psi)
    complete = mixtures.spec_of(mixtures.mv_mixture(df.dropna(), 2))
    assert complete.built_on["n_missing"] == 0


# --- likelihood ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marginalized", "covariance_prior"),
    [
        (True, "lkj"),
        (False, "wishart"),
        pytest.param(True, "wishart", marks=pytest.mark.slow),  # ~40 s compiling
        pytest.param(False, "lkj", marks=pytest.mark.slow),
    ],
)
def test_pattern_grouped_loglik_equals_scipy_per_row(marginalized, covariance_prior):
    rng = np.random.default_rng(3)
    X = _delete(rng.normal(size=(25, 3)), 0.3, rng)
    model = mixtures.mv_mixture(X, 2, covariance_prior=covariance_prior, marginalized=marginalized)
    point = model.initial_point()
    outs = model.replace_rvs_by_values([model["weights"], model["means"], model["chol_cov"]])
    if not marginalized:
        outs.append(model.rvs_to_values[model["assignment"]])
    fn = model.compile_fn(
        model.logp(vars=[model["y"]], sum=False) + outs,
        inputs=model.value_vars,
        on_unused_input="ignore",
    )
    logp, w, mu, chol, *z = fn(point)
    cov = chol @ np.swapaxes(chol, -1, -2)
    expected = _scipy_loglik(X, w, mu, cov, z[0] if z else None)
    np.testing.assert_allclose(logp, expected, rtol=1e-7, atol=1e-9)


def test_numpy_logpdf_of_incomplete_rows_is_the_observed_marginal():
    rng = np.random.default_rng(4)
    X = _delete(rng.normal(size=(30, 3)), 0.3, rng)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + np.eye(3)
    mean = rng.normal(size=3)
    got = mixtures.model.densities.mvnormal_logpdf(X, mean, np.linalg.cholesky(cov))
    expected = _scipy_loglik(X, [1.0], [mean], [cov])
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# --- the Gibbs step ------------------------------------------------------------------------------


def _one_sweep(x_rows, mask, w, mu, cov, seed, beta=1.0, ref=None):
    """Run the incomplete rows' sweep once on replica 0; return picks and completions.

    ``ref``: the missing cells' reference density (means, variances), N(0, 1) by default.
    Picks and completions are returned in the order of `x_rows`.
    """
    n, d = x_rows.shape
    k = len(w)
    ref_mean, ref_var = (np.zeros(d), np.ones(d)) if ref is None else ref
    xi = np.where(mask, x_rows, 0.0)
    miss, order = missing_rows(xi, mask, 1, ref_mean, ref_var)
    fac = np.linalg.cholesky(np.linalg.inv(cov))[None].copy()
    logdet = -np.linalg.slogdet(cov)[1]
    logw = np.log(np.asarray(w))[None].copy()
    a = logw + 0.5 * beta * logdet[None]
    z = np.zeros((1, n), dtype=np.int32)
    fixed = np.full(n, -1, dtype=np.int32)
    sums = np.zeros((1, k)), np.zeros((1, k, d)), np.zeros((1, k, d, d))
    state = np.array([seed], dtype=np.uint64)
    work = missing_work(miss.pats.shape[0], k, d)
    mv_missing_sweep(
        0, beta, np.uint64(seed * 7 + 1), 0, miss, logw, a, mu[None].copy(), fac, z, fixed,
        *sums, state, work,
    )  # fmt: skip
    z_out, xc_out = np.empty(n, dtype=z.dtype), np.empty((n, d))
    z_out[order], xc_out[order] = z[0], miss.xc[0].T
    return z_out, xc_out, sums


@pytest.fixture(scope="module")
def gauss3():
    w = np.array([0.35, 0.65])
    mu = np.array([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5]])
    cov = np.array(
        [
            [[1.0, 0.8, 0.3], [0.8, 1.5, -0.4], [0.3, -0.4, 0.7]],
            [[0.6, -0.3, 0.2], [-0.3, 1.0, 0.5], [0.2, 0.5, 1.2]],
        ]
    )
    return w, mu, cov


def test_assignment_uses_the_observed_marginal_and_cells_the_conditional(gauss3):
    """One sweep over 4,000 copies of two incomplete rows against the closed forms."""
    w, mu, cov = gauss3
    n = 4000
    row = np.array([1.0, np.nan, 0.0])  # feature 1 missing
    rows = np.tile(row, (n, 1))
    rows[n // 2 :] = [np.nan, 0.2, np.nan]  # features 0 and 2 missing
    mask = ~np.isnan(rows)
    z, xc, _ = _one_sweep(rows, mask, w, mu, cov, seed=11)
    for half, o in ((slice(0, n // 2), [0, 2]), (slice(n // 2, n), [1])):
        m = [c for c in range(3) if c not in o]
        x_o = rows[half][0, o]
        comp = np.array(
            [np.log(w[j]) + stats.multivariate_normal(mu[j][o], cov[j][np.ix_(o, o)]).logpdf(x_o)
             for j in range(2)]
        )  # fmt: skip
        prob = np.exp(comp - logsumexp(comp))
        picks = np.bincount(z[half], minlength=2)
        assert stats.binomtest(picks[1], n // 2, prob[1]).pvalue > 1e-3
        for j in range(2):
            s_oo, s_mo = cov[j][np.ix_(o, o)], cov[j][np.ix_(m, o)]
            gain = s_mo @ np.linalg.inv(s_oo)
            mean = mu[j][m] + gain @ (x_o - mu[j][o])
            c = cov[j][np.ix_(m, m)] - gain @ s_mo.T
            draws = xc[half][z[half] == j][:, m]
            assert np.allclose(xc[half][:, o], x_o)  # observed cells untouched
            for c_i in range(len(m)):  # each missing cell, and a projection of them all
                sd = np.sqrt(c[c_i, c_i])
                assert stats.kstest(draws[:, c_i], "norm", (mean[c_i], sd)).pvalue > 1e-3
            proj = np.ones(len(m))
            sd = np.sqrt(proj @ c @ proj)
            assert stats.kstest(draws @ proj, "norm", (proj @ mean, sd)).pvalue > 1e-3


def test_sums_use_the_completed_rows(gauss3):
    w, mu, cov = gauss3
    rng = np.random.default_rng(5)
    rows = _delete(rng.normal(size=(40, 3)), 0.5, rng)
    rows = rows[np.isnan(rows).any(axis=1)]
    z, xc, (n, s1, s2) = _one_sweep(rows, ~np.isnan(rows), w, mu, cov, seed=3)
    for j in range(2):
        d = xc[z == j] - mu[j]
        assert n[0, j] == (z == j).sum()
        np.testing.assert_allclose(s1[0, j], d.sum(axis=0))
        np.testing.assert_allclose(s2[0, j], d.T @ d)


def _tempered_targets(x, o, w, mu, cov, beta, ref):
    """Independent closed forms: component probabilities and the missing cells' Normals.

    beta = 1: the observed cells' marginal (SciPy), then the conditional Normal given them;
    beta < 1: the completed row ``x`` at beta, then N(conditional)^beta N(ref)^(1 - beta).
    """
    d, k = len(x), len(w)
    m = np.setdiff1d(np.arange(d), o)
    if beta >= 1.0:
        logit = [stats.multivariate_normal(mu[j][o], cov[j][np.ix_(o, o)]).logpdf(x[o])
                 for j in range(k)]  # fmt: skip
    else:
        logit = [beta * stats.multivariate_normal(mu[j], cov[j]).logpdf(x) for j in range(k)]
    logit = np.log(w) + np.array(logit)
    prob = np.exp(logit - logsumexp(logit))
    normals = []
    for j in range(k):
        gain = np.linalg.solve(cov[j][np.ix_(o, o)], cov[j][np.ix_(o, m)]).T
        mean = mu[j][m] + gain @ (x[o] - mu[j][o])
        s = cov[j][np.ix_(m, m)] - gain @ cov[j][np.ix_(o, m)]
        prec = beta * np.linalg.inv(s) + (1.0 - beta) * np.diag(1.0 / ref[1][m])
        c = np.linalg.inv(prec)
        mean = c @ (beta * np.linalg.solve(s, mean) + (1.0 - beta) * ref[0][m] / ref[1][m])
        normals.append((mean, c))
    return prob, m, normals


def _random_mixture(d, k, rng):
    a = rng.normal(size=(k, d, d))
    cov = a @ np.transpose(a, (0, 2, 1)) / d + 0.5 * np.eye(d)
    return rng.dirichlet(np.full(k, 3.0)), rng.normal(scale=1.5, size=(k, d)), cov


@pytest.mark.parametrize(
    ("d", "beta", "patterns"),
    [
        (2, 1.0, [[1, 0], [0, 1]]),
        (4, 1.0, [[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 1, 1], [1, 0, 1, 0]]),
        (4, 0.4, [[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 0]]),
    ],
)
def test_pattern_blocks_draw_the_closed_form_conditionals(d, beta, patterns):
    """Per pattern: chi-square of the picks, KS and moments of every missing cell per component.

    Each pattern has its own row (copied 2,000-3,100 times: several blocks and a partial one),
    with the patterns interleaved in the data, against NumPy / SciPy's closed forms.
    """
    rng = np.random.default_rng(d * 10 + int(10 * beta))
    k = 3
    w, mu, cov = _random_mixture(d, k, rng)
    ref = (rng.normal(size=d), rng.uniform(0.5, 2.0, size=d))
    masks = np.array(patterns, dtype=bool)
    copies = rng.integers(2000, 3100, size=len(masks))
    which = rng.permutation(np.repeat(np.arange(len(masks)), copies))
    base = mu[0] + rng.normal(size=(len(masks), d))
    rows, mask = base[which], masks[which]
    rows = np.where(mask, rows, np.nan)
    z, xc, _ = _one_sweep(rows, mask, w, mu, cov, seed=7, beta=beta, ref=ref)
    for p, pmask in enumerate(masks):
        sel = which == p
        o = np.flatnonzero(pmask)
        start = np.where(pmask, base[p], 0.0)  # the completion's start: missing cells at 0
        prob, m, normals = _tempered_targets(start, o, w, mu, cov, beta, ref)
        counts = np.bincount(z[sel], minlength=k)
        assert stats.chisquare(counts, prob * sel.sum()).pvalue > 1e-4, (p, counts, prob)
        np.testing.assert_array_equal(xc[sel][:, o], np.broadcast_to(base[p, o], (sel.sum(), len(o))))
        for j in range(k):
            draws = xc[sel & (z == j)][:, m]
            if len(draws) < 30:
                continue
            mean, c = normals[j]
            for a in range(len(m)):  # each cell, and a projection of them all
                sd = np.sqrt(c[a, a])
                assert stats.kstest(draws[:, a], "norm", (mean[a], sd)).pvalue > 1e-4
                assert abs(draws[:, a].mean() - mean[a]) < 5 * sd / np.sqrt(len(draws))
            proj = np.arange(1.0, len(m) + 1.0)
            sd = np.sqrt(proj @ c @ proj)
            assert stats.kstest(draws @ proj, "norm", (proj @ mean, sd)).pvalue > 1e-4
            if len(m) > 1:  # the covariance of the cells, within 5 standard errors
                se = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / len(draws))
                assert np.all(np.abs(np.cov(draws, rowvar=False) - c) < 5 * se)


def test_vectorised_normals_log_and_turn_match_numpy():
    """The sweep's branch-free log, cos and sin against NumPy; its Normals against N(0, 1)."""
    rng = np.random.default_rng(3)
    u = np.concatenate([rng.random(200_000), [2.0**-53, 0.25, 0.5, 0.75, 1.0 - 2.0**-53, 1.0]])
    out = np.empty((3, u.size))
    log_cos_sin_array(u, out)
    np.testing.assert_allclose(out[0], np.log(u), rtol=2e-15, atol=0)
    np.testing.assert_allclose(out[1], np.cos(2 * np.pi * u), rtol=0, atol=2e-15)
    np.testing.assert_allclose(out[2], np.sin(2 * np.pi * u), rtol=0, atol=2e-15)
    state = np.array([99], dtype=np.uint64)
    z = np.empty(400_000)
    normals_array(state, 0, z)
    assert int(state[0]) == (99 + 400_000 * 0x9E3779B97F4A7C15) % 2**64  # as 400,000 uniforms
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)
    half = z.size // 2  # the two coordinates of a pair are uncorrelated
    assert abs(np.corrcoef(z[:half], z[half:])[0, 1]) < 5 / np.sqrt(half)


# --- fits ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_missing():
    df = mixtures.load_dataset("three_clusters_2d")
    X = df[["x1", "x2"]].to_numpy()
    rng = np.random.default_rng(23)
    Xm = _delete(X, 0.3, rng)
    return X, Xm, df["component"].to_numpy()


@pytest.fixture(scope="module")
def fit_missing(three_missing):
    _, Xm, _ = three_missing
    model = mixtures.mv_mixture(Xm, 3)
    idata = mixtures.sample(model, draws=500, chains=2, random_seed=2, warn=False, **QUIET)
    return model, idata


def test_fit_stores_draws_of_every_missing_cell(fit_missing, three_missing):
    _, Xm, _ = three_missing
    model, idata = fit_missing
    rows, cols = np.nonzero(np.isnan(Xm))
    post = idata.posterior
    assert post["imputed"].dims == ("chain", "draw", "missing_cell")
    np.testing.assert_array_equal(post["missing_row"].values, rows)
    table = mixtures.imputations(idata, hdi_prob=0.9)
    assert list(table.columns) == ["row", "column", "mean", "sd", "hdi_5%", "hdi_95%"]
    np.testing.assert_array_equal(table["row"], rows)
    np.testing.assert_array_equal(table["column"], cols)
    assert np.isnan(idata.observed_data["y"].values).sum() == rows.size
    assert (table["hdi_5%"] < table["mean"]).all() and (table["mean"] < table["hdi_95%"]).all()
    # the pointwise log-likelihood: each row's observed cells (NaN-free)
    assert np.isfinite(idata.log_likelihood["y"].values).all()
    again = mixtures.sample(model, draws=500, chains=2, random_seed=2, warn=False, **QUIET)
    np.testing.assert_array_equal(again.posterior["imputed"], post["imputed"])


@pytest.mark.slow  # ~30 s: a second (full-data) fit
def test_imputations_beat_mean_and_complete_case_and_keep_the_clustering(
    fit_missing, three_missing
):
    """Issue 23: on three_clusters_2d with 30% of cells deleted at random.

    Measured (seeds 23, 1, 2 of the deletion): RMSE ours 2.286 / 2.081 / 2.277, complete-case
    EM's conditional mean 2.280 / 2.111 / 2.275, mean imputation 2.512 / 2.455 / 2.610. Under
    missing completely at random with 600 rows the complete-case fit is consistent, so ours
    ties it (within 1%) rather than beating it; mean imputation is clearly worse.
    """
    X, Xm, truth = three_missing
    _, idata = fit_missing
    gone = np.isnan(Xm)
    table = mixtures.imputations(idata)
    ours = np.sqrt(np.mean((table["mean"].to_numpy() - X[gone]) ** 2))
    mean_fill = np.broadcast_to(np.nanmean(Xm, axis=0), X.shape)[gone]
    rmse_mean = np.sqrt(np.mean((mean_fill - X[gone]) ** 2))
    # complete-case analysis: a Gaussian mixture fitted to the complete rows (scikit-learn EM),
    # then each missing cell's conditional mean given the row's observed cell
    from sklearn.mixture import GaussianMixture

    cc = GaussianMixture(3, n_init=5, random_state=0).fit(Xm[~gone.any(axis=1)])
    chol = np.linalg.cholesky(cc.covariances_)
    fill = Xm.copy()
    for i in np.flatnonzero(gone.any(axis=1)):
        o, m = ~gone[i], gone[i]
        logp = (
            np.log(cc.weights_)
            + mixtures.model.densities.mvnormal_logpdf(np.where(o, Xm[i], np.nan)[None], cc.means_, chol)[
                :, 0
            ]
        )
        r = np.exp(logp - logsumexp(logp))
        cond = [
            cc.means_[j][m]
            + cc.covariances_[j][np.ix_(m, o)]
            @ np.linalg.solve(cc.covariances_[j][np.ix_(o, o)], Xm[i, o] - cc.means_[j][o])
            for j in range(3)
        ]
        fill[i, m] = np.sum(r[:, None] * np.array(cond), axis=0)
    rmse_cc = np.sqrt(np.mean((fill[gone] - X[gone]) ** 2))
    assert ours < 0.95 * rmse_mean and ours < 1.01 * rmse_cc, (ours, rmse_mean, rmse_cc)
    # the fitted clustering, applied to all rows, within 0.05 ARI of the full-data fit's (rows
    # classified from one observed cell alone are inevitably worse: ~0.66 against ~0.89)
    full = mixtures.sample(mixtures.mv_mixture(X, 3), draws=500, chains=2, random_seed=2,
                           warn=False, **QUIET)  # fmt: skip
    ari_full = adjusted_rand_score(truth, mixtures.predict(full, X))
    ari_missing = adjusted_rand_score(truth, mixtures.predict(idata, X))
    assert ari_missing >= ari_full - 0.05, (ari_missing, ari_full)


@pytest.mark.slow  # ~20 s: one fit with missing cells
def test_imputations_beat_the_complete_case_fit_when_missingness_depends_on_the_data():
    """Issue 23: missing at random (not completely): the complete-case fit is biased, ours not.

    One cell of each row (chosen at random) is deleted with a probability that rises with the
    row's other, observed cell (logistic, ~30% of the cells). `bench/imputation.py` measured
    over 10 deletions: ours below the complete-case conditional mean in 10 of 10 (ratio
    0.86-0.99, mean RMSE 2.62 against 2.86; the true parameters' conditional mean 2.58).
    """
    from sklearn.mixture import GaussianMixture

    X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]].to_numpy()
    rng = np.random.default_rng(0)
    col = rng.integers(2, size=len(X))
    other = X[np.arange(len(X)), 1 - col]
    drop = rng.random(len(X)) < expit(0.5 + 1.5 * (other - other.mean()) / other.std())
    Xm = X.copy()
    Xm[np.flatnonzero(drop), col[drop]] = np.nan
    gone = np.isnan(Xm)
    assert 0.25 < gone.mean() < 0.35
    idata = mixtures.sample(mixtures.mv_mixture(Xm, 3), draws=500, chains=2, random_seed=0,
                            warn=False, **QUIET)  # fmt: skip
    ours = np.sqrt(np.mean((mixtures.imputations(idata)["mean"].to_numpy() - X[gone]) ** 2))
    cc = GaussianMixture(3, n_init=5, random_state=0).fit(Xm[~gone.any(axis=1)])
    fill = []
    for i, j in zip(*np.nonzero(gone)):  # one missing cell per incomplete row
        o = 1 - j
        logp = np.log(cc.weights_) + stats.norm.logpdf(
            Xm[i, o], cc.means_[:, o], np.sqrt(cc.covariances_[:, o, o])
        )
        cond = cc.means_[:, j] + cc.covariances_[:, j, o] / cc.covariances_[:, o, o] * (
            Xm[i, o] - cc.means_[:, o]
        )
        fill.append(np.exp(logp - logsumexp(logp)) @ cond)
    rmse_cc = np.sqrt(np.mean((np.array(fill) - X[gone]) ** 2))
    assert ours < 0.97 * rmse_cc, (ours, rmse_cc)


def test_predict_proba_of_incomplete_rows_uses_the_observed_marginal(fit_missing):
    _, idata = fit_missing
    new = np.array([[0.5, np.nan], [np.nan, -1.0], [0.5, -1.0]])
    got = mixtures.predict_proba(idata, new)
    post = idata.posterior
    w = post["weights"].values.reshape(-1, 3)[::5]
    mu = post["means"].values.reshape(-1, 3, 2)[::5]
    chol = post["chol_cov"].values.reshape(-1, 3, 2, 2)[::5]
    cov = chol @ np.swapaxes(chol, -1, -2)
    expected = np.zeros((3, 3))
    for s in range(w.shape[0]):
        for i, x in enumerate(new):
            o = ~np.isnan(x)
            lp = [np.log(w[s, j])
                  + stats.multivariate_normal(mu[s, j][o], cov[s, j][np.ix_(o, o)]).logpdf(x[o])
                  for j in range(3)]  # fmt: skip
            expected[i] += np.exp(np.array(lp) - logsumexp(lp))
    full = mixtures.predict_proba(idata, new)  # all draws
    sub = expected / w.shape[0]
    np.testing.assert_allclose(full.sum(axis=1), 1.0)
    np.testing.assert_allclose(got, full)
    np.testing.assert_allclose(sub, full, atol=0.05)  # 200 of 1,000 draws: a Monte Carlo band
    with pytest.raises(ValueError, match="at least one observed"):
        mixtures.predict_proba(idata, np.array([[np.nan, np.nan]]))


# --- slow tier: a second engine, and calibration -------------------------------------------------


@pytest.mark.slow  # 761 s on the loaded shared box (NUTS on the pattern-grouped model)
def test_gibbs_equals_nuts_with_missing_cells():
    X = mixtures.load_dataset("old_faithful").iloc[::8].to_numpy()  # 34 rows
    Xm = _delete(X, 0.2, np.random.default_rng(7))
    model = mixtures.mv_mixture(Xm, 2)
    ours = mixtures.sample(model, draws=1000, tune=500, chains=2, random_seed=1, **QUIET)
    with np.errstate(all="ignore"):
        ref = mixtures.sample(
            model, sampler="pymc", draws=1000, tune=500, chains=2, random_seed=2, **QUIET
        )
    for name in ("weights", "means", "sigma"):
        a = ours.posterior[name].values.reshape(2000, -1)[::5]
        b = ref.posterior[name].values.reshape(2000, -1)[::5]
        for j in range(a.shape[1]):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3, (name, j)
    names = ["weights", "means", "sigma"]
    ta, tb = (az.summary(i, var_names=names, round_to="none") for i in (ours, ref))
    mcse = np.sqrt(ta["mcse_mean"] ** 2 + tb["mcse_mean"] ** 2)
    np.testing.assert_array_less(np.abs(ta["mean"] - tb["mean"]), 4.5 * mcse)


def _simulate(spec, n, rng, share):
    """Parameters from the spec's prior (means ordered on feature 0), data, deleted cells."""
    k, d = spec.k, spec.n_features
    w = rng.dirichlet(spec.priors["weights"].params["a"])
    mu = rng.normal(spec.priors["means"].params["mu"], spec.priors["means"].params["sigma"])
    mu = mu[np.argsort(mu[:, 0])]
    nu, psi = float(spec.priors["wishart"].params["nu"]), spec.priors["wishart"].params["psi"]
    cov = stats.invwishart(df=nu, scale=psi).rvs(size=k, random_state=rng).reshape(k, d, d)
    z = rng.choice(k, size=n, p=w)
    X = np.stack([rng.multivariate_normal(mu[j], cov[j]) for j in z])
    Xm = _delete(X, share, rng)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    corr = cov[:, 0, 1] / (sd[:, 0] * sd[:, 1])
    truth = {f"weights[{j}]": w[j] for j in range(k)}
    truth |= {f"means[{j},{c}]": mu[j, c] for j in range(k) for c in range(d)}
    truth |= {f"sigma[{j},{c}]": sd[j, c] for j in range(k) for c in range(d)}
    truth |= {f"corr[{j}]": corr[j] for j in range(k)}
    gone = np.flatnonzero(np.isnan(Xm).ravel())[:2]  # two missing cells per data set
    truth |= {f"cell[{c}]": X.ravel()[g] for c, g in enumerate(gone)}
    return truth, Xm


def _ranks(compiled, spec, n_sims, seed, n_ranks=99):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_sims):
        truth, Xm = _simulate(spec, 60, rng, 0.2)
        idata = compiled.sample(  # 2 x 2,000 draws: 99 of them, thinned, are near independent
            Xm, draws=2000, tune=300, chains=2, random_seed=int(rng.integers(2**31)),
            tempering=None, warn=False, log_likelihood=False, progressbar=False,
        )  # fmt: skip
        post = idata.posterior
        flat = lambda da: da.stack(s=("chain", "draw")).transpose("s", ...).values  # noqa: E731
        draws = {}
        w, mu, chol = flat(post["weights"]), flat(post["means"]), flat(post["chol_cov"])
        cov = chol @ np.swapaxes(chol, -1, -2)
        sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        for j in range(spec.k):
            draws[f"weights[{j}]"] = w[:, j]
            draws[f"corr[{j}]"] = cov[:, j, 0, 1] / (sd[:, j, 0] * sd[:, j, 1])
            for c in range(2):
                draws[f"means[{j},{c}]"] = mu[:, j, c]
                draws[f"sigma[{j},{c}]"] = sd[:, j, c]
        cells = flat(post["imputed"])
        draws |= {f"cell[{c}]": cells[:, c] for c in range(2)}
        idx = np.linspace(0, w.shape[0] - 1, n_ranks).round().astype(int)
        rows.append({p: int(np.sum(draws[p][idx] < truth[p])) for p in truth})
    fits = pd.DataFrame({"status": ["ok"] * n_sims, "max_r_hat": [1.0] * n_sims})
    return SBCResult(pd.DataFrame(rows), n_ranks, fits, level=0.01)


@pytest.fixture(scope="module")
def sbc_model():
    rng = np.random.default_rng(0)
    spec_model = mixtures.mv_mixture(_delete(rng.normal(size=(60, 2)), 0.2, rng), 2)
    return spec_model, mixtures.spec_of(spec_model)


@pytest.mark.slow  # ~30 s here: 200 Gibbs fits
def test_sbc_passes_with_cells_missing_at_random(sbc_model):
    model, spec = sbc_model
    result = _ranks(mixtures.compile_model(model, sampler="gibbs"), spec, 200, seed=1)
    assert result.passed, result.tests()


@pytest.mark.slow  # ~30 s here: the negative control must fail
def test_sbc_fails_when_cells_are_imputed_from_the_marginal(sbc_model, monkeypatch):
    """The PReMiuM mistake (missing cells from the component's marginal) is caught."""
    model, spec = sbc_model
    monkeypatch.setattr("mixtures.engines.gibbs_mv._CONDITIONAL", False)
    result = _ranks(mixtures.compile_model(model, sampler="gibbs"), spec, 200, seed=1)
    assert not result.passed, result.tests()


def test_chains_on_threads_draw_what_one_thread_draws_with_missing_cells(three_missing, one_thread):
    # small data: whole chains on threads (engines/chain_threads.py), each with its own
    # completions of the missing cells; the draws, imputations included, are the one-thread run's

    _, Xm, _ = three_missing
    model = mixtures.mv_mixture(Xm[::3], 3)
    kw = dict(draws=100, tune=100, chains=3, random_seed=6, tempering=4, warn=False, **QUIET)
    with one_thread():
        one = mixtures.sample(model, **kw)
    many = mixtures.sample(model, **kw)
    for name in ("weights", "means", "chol_cov", "imputed"):
        np.testing.assert_array_equal(one.posterior[name], many.posterior[name])
