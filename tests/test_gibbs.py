"""Our own Gibbs engine: exact posteriors, tempering across modes, evidence, bounded time."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import arviz as az
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

import mixtures
from mixtures.engines import gibbs
from mixtures.engines.chain_threads import chain_groups
from mixtures.interrupt import SamplingInterrupted

QUIET = dict(progressbar=False)


def _fit(model, **kwargs):
    """Fit with our engine; convergence is checked by the tests that are about it."""
    kwargs.setdefault("random_seed", 1)
    kwargs.setdefault("warn", False)
    return mixtures.sample(model, sampler="gibbs", **QUIET, **kwargs)


@pytest.fixture(scope="module")
def galaxies():
    return mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000.0


# --- exactness against closed forms -------------------------------------------------------------


def test_weights_of_a_one_point_per_component_model_follow_the_dirichlet():
    # components so far apart that every assignment is certain: w | y ~ Dirichlet(a + n)
    y = np.array([0.0, 0.1, 100.0, 100.2, 100.1, 200.0])
    model = mixtures.known_params_mixture(
        y, [0.0, 100.0, 200.0], [0.5, 0.5, 0.5], priors={"weights": {"a": [1.0, 2.0, 0.5]}}
    )
    idata = _fit(model, draws=4000, tune=100, tempering=False)
    w = idata.posterior["weights"].values.reshape(-1, 3)
    alpha = np.array([3.0, 5.0, 1.5])
    for j in range(3):
        marginal = stats.beta(alpha[j], alpha.sum() - alpha[j])
        assert stats.kstest(w[::4, j], marginal.cdf).pvalue > 1e-3


def test_tiny_dirichlet_concentration_is_exact_in_logs():
    y = np.array([0.0, 0.1, 0.2, 100.0])
    model = mixtures.known_params_mixture(
        y, [0.0, 100.0, 50.0], [0.5, 0.5, 0.5], priors={"weights": {"a": 1e-5}}
    )
    w = _fit(model, draws=2000, tune=100, tempering=False).posterior["weights"].values
    # the empty component's weight is Beta(1e-5, ...)-small but never NaN or negative
    assert np.isfinite(w).all() and (w >= 0).all()
    assert np.median(w[..., 2]) < 1e-100
    np.testing.assert_allclose(w.sum(axis=-1), 1.0)


def test_means_with_known_sds_match_the_normal_conjugate_posterior():
    rng = np.random.default_rng(3)
    y = rng.normal(2.0, 1.5, 12)
    model = mixtures.full_mixture(y, 1, sigma=1.5, priors={"means": {"mu": 0.0, "sigma": 3.0}})
    mu = _fit(model, draws=4000, tune=100).posterior["means"].values.ravel()
    prec = 1 / 9 + y.size / 1.5**2
    exact = stats.norm(loc=(y.sum() / 1.5**2) / prec, scale=prec**-0.5)
    assert stats.kstest(mu[::4], exact.cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    "prior",
    [
        {"dist": "HalfCauchy", "beta": 1.0},
        {"dist": "Uniform", "lower": 0.0, "upper": 3.0},
        {"dist": "InverseGamma", "alpha": 3.0, "beta": 2.0},
        {"dist": "Gamma", "alpha": 2.0, "beta": 2.0},
    ],
)
def test_sigma_update_matches_numerical_conditional_for_any_scale_family(prior):
    rng = np.random.default_rng(4)
    y = rng.normal(0.0, 0.8, 15)
    model = mixtures.full_mixture(
        y, 1, priors={"means": {"mu": 0.0, "sigma": 0.01}, "sigma": dict(prior)}
    )  # means pinned near 0 by the prior: sigma's posterior is one-dimensional
    sd = _fit(model, draws=6000, tune=200).posterior["sigma"].values.ravel()
    family = mixtures.spec_of(model).priors["sigma"]
    grid = np.linspace(1e-3, 4.0, 4000)
    mu_draws = np.linspace(-0.03, 0.03, 7)  # the means' small prior spread, integrated out
    logp = family.logpdf(grid) + logsumexp(
        [
            stats.norm.logpdf(y[:, None], m, grid).sum(axis=0) + stats.norm.logpdf(m, 0, 0.01)
            for m in mu_draws
        ],
        axis=0,
    )
    pdf = np.exp(logp - logp.max())
    cdf = integrate.cumulative_trapezoid(pdf, grid, initial=0)
    cdf /= cdf[-1]
    assert stats.kstest(sd[::6], lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3


@pytest.mark.parametrize("kind", ["full", "shared", "known_sd", "uniform_sd"])
def test_posterior_equals_pymc_nuts_on_every_univariate_kind(y3, kind):
    factory = mixtures.shared_sd_mixture if kind == "shared" else mixtures.full_mixture
    kwargs = {"sigma": 2.0} if kind == "known_sd" else {}
    if kind == "uniform_sd":
        kwargs["priors"] = {"sigma": {"dist": "Uniform", "lower": 0.0, "upper": 20.0}}
    model = factory(y3, 3, **kwargs)
    ours = _fit(model, draws=1000, tune=500, chains=2)
    with np.errstate(all="ignore"):
        ref = mixtures.sample(
            model, sampler="pymc", draws=1000, tune=1000, chains=2, random_seed=2, **QUIET
        )
    names = [n for n in ("weights", "means", "sigma") if n in ours.posterior]
    for n in names:  # KS on thinned draws, and means within MCSE
        a = ours.posterior[n].values.reshape(2000, -1)[::5]
        b = ref.posterior[n].values.reshape(2000, -1)[::5]
        for j in range(a.shape[1]):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3, (n, j)
    ta, tb = (az.summary(i, var_names=names, round_to="none") for i in (ours, ref))
    mcse = np.sqrt(ta["mcse_mean"] ** 2 + tb["mcse_mean"] ** 2)
    np.testing.assert_array_less(np.abs(ta["mean"] - tb["mean"]), 4.5 * mcse)


def test_latent_and_marginalised_variants_share_the_posterior(y3):
    kw = dict(draws=1000, tune=300, chains=2, random_seed=7)
    latent = _fit(mixtures.full_mixture(y3, 3, marginalized=False), **kw)
    marginal = _fit(mixtures.full_mixture(y3, 3), **kw)
    for n in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(latent.posterior[n], marginal.posterior[n])
    assert "assignment" in latent.posterior and "assignment" not in marginal.posterior
    z = latent.posterior["assignment"].values
    truth = mixtures.load_dataset("three_gaussians")["component"].to_numpy()
    assert np.mean(np.median(z.reshape(-1, 215), axis=0) == truth) > 0.95


# --- tempering: chains cross between modes; the ladder gives the evidence -----------------------


def test_chains_agree_on_real_multimodal_data_only_with_tempering(galaxies):
    model = mixtures.full_mixture(galaxies, 3)
    names = ["weights", "means", "sigma"]
    # neither tempering nor the relocation move (which alone brings r_hat to ~1.02 here)
    stuck = mixtures.sample(model, tempering=False, moves=False, random_seed=1, warn=False, **QUIET)
    assert az.rhat(stuck, var_names=names).to_array().max() > 1.1  # the test can fail
    # default tempering; 2,000 draws, as the bulk ESS of the default 1,000 is near 400 here
    tempered = mixtures.sample(model, draws=2000, random_seed=1, warn=False, **QUIET)
    summary = az.summary(tempered, var_names=names)
    assert summary["r_hat"].max() <= 1.01
    assert summary["ess_bulk"].min() >= 400
    # the dominant mode of the galaxies with k = 3: a small group near 10 and one near 33
    w = tempered.posterior["weights"].mean(("chain", "draw")).values
    mu = tempered.posterior["means"].mean(("chain", "draw")).values
    assert w[1] > 0.7 and mu[0] < 11 and mu[2] > 28


def test_ladder_is_recorded_and_swaps_are_accepted(galaxies):
    idata = _fit(mixtures.full_mixture(galaxies, 3), tempering=12)
    betas = np.asarray(idata.posterior.attrs["mixtures_betas"])
    assert betas.size == 12 and betas[0] == 0 and betas[-1] == 1 and np.all(np.diff(betas) > 0)
    swaps = idata.sample_stats["swap_accept"].mean(("chain", "draw")).values
    assert swaps.min() > 0.15  # the adapted ladder leaves no pair that never swaps


@pytest.mark.parametrize("method", ["stepping-stone", "bridge"])
def test_log_evidence_equals_the_gaussian_closed_form(method):
    rng = np.random.default_rng(5)
    y = rng.normal(1.0, 1.0, 25)
    model = mixtures.full_mixture(y, 1, sigma=1.0, priors={"means": {"mu": 0.0, "sigma": 2.0}})
    est, se = mixtures.log_evidence(_fit(model, draws=2000, tempering=16), method=method)
    cov = np.eye(y.size) + 4.0 * np.ones((y.size, y.size))
    exact = stats.multivariate_normal(np.zeros(y.size), cov).logpdf(y)
    assert 0 < se < 0.5
    assert abs(est - exact) < 4 * se + 0.05


@pytest.mark.parametrize("method", ["stepping-stone", "bridge"])
def test_log_evidence_equals_quadrature_for_known_components(method):
    rng = np.random.default_rng(6)
    y = np.concatenate([rng.normal(-2, 1, 30), rng.normal(2, 1, 10)])
    means, sds, a = [-2.0, 2.0], [1.0, 1.0], [2.0, 3.0]
    model = mixtures.known_params_mixture(y, means, sds, priors={"weights": {"a": a}})
    est, se = mixtures.log_evidence(_fit(model, draws=2000, tempering=16), method=method)
    w = np.linspace(1e-9, 1 - 1e-9, 200001)
    comp = stats.norm.logpdf(y[:, None], means, sds)
    loglik = logsumexp(
        np.stack([np.log(w)[:, None] + comp[:, 0], np.log1p(-w)[:, None] + comp[:, 1]]), axis=0
    ).sum(axis=1)
    integrand = stats.beta.logpdf(w, *a) + loglik
    exact = logsumexp(integrand) + np.log(w[1] - w[0])
    assert abs(est - exact) < 4 * se + 0.05


def test_log_evidence_needs_a_ladder(y3):
    idata = _fit(mixtures.full_mixture(y3, 2), draws=100, tune=100, tempering=False)
    with pytest.raises(ValueError, match=r"tempered Gibbs fit.*tempering=16"):
        mixtures.log_evidence(idata, method="stepping-stone")


# --- reproducible, and the same on one thread or many -------------------------------------------


def test_reproducible_and_thread_independent(y3, monkeypatch):
    model = mixtures.full_mixture(y3, 3)
    kw = dict(draws=200, tune=100, chains=2, random_seed=9, tempering=4)
    first, second = _fit(model, **kw), _fit(model, **kw)
    monkeypatch.setattr(gibbs, "_PARALLEL_MIN", 1)  # force the threaded sweep
    threaded = _fit(model, **kw)
    other = _fit(model, **{**kw, "random_seed": 10})
    for n in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(first.posterior[n], second.posterior[n])
        # the same draws; only the order of the floating-point sums differs
        np.testing.assert_allclose(first.posterior[n], threaded.posterior[n], rtol=1e-10)
    assert not np.array_equal(first.posterior["means"], other.posterior["means"])


@pytest.mark.parametrize("chains", [2, 3])
def test_chains_on_threads_draw_what_one_thread_draws(y3, chains, one_thread):
    # below the sweep's threading threshold the chains are split over threads instead
    # (engines/chain_threads.py): every chain owns its replicas and streams, so the draws,
    # the swaps and the ladder's adaptation are those of the one-thread run, bit for bit
    model = mixtures.full_mixture(y3, 3)
    kw = dict(draws=150, tune=150, chains=chains, random_seed=4, tempering=4)
    with one_thread():
        one = _fit(model, **kw)
    many = _fit(model, **kw)
    for n in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(one.posterior[n], many.posterior[n])
    for n in ("swap_accept", "tempered_loglik", "n_changed"):
        np.testing.assert_array_equal(one.sample_stats[n], many.sample_stats[n])
    np.testing.assert_array_equal(
        one.posterior.attrs["mixtures_betas"], many.posterior.attrs["mixtures_betas"]
    )


def test_large_data_draws_do_not_depend_on_how_the_threads_are_used(y3, monkeypatch, one_thread):
    # above the threshold the sweep runs in _N_BLOCKS ranges: on threads (one chain, or chains
    # that do not divide among the threads), or one range after the other inside whole chains
    # on threads; the ranges' sums are added in the same order, so the draws are the same
    monkeypatch.setattr(gibbs, "_PARALLEL_MIN", 1)
    model = mixtures.full_mixture(y3, 3)
    kw = dict(draws=100, tune=100, chains=2, random_seed=5, tempering=False)
    chains_on_threads = _fit(model, **kw)
    with one_thread():
        one_thread = _fit(model, **kw)
    monkeypatch.setattr(gibbs, "get_num_threads", lambda: 3)  # 2 chains do not divide: ranges
    ranges_on_threads = _fit(model, **kw)
    for n in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(chains_on_threads.posterior[n], one_thread.posterior[n])
        np.testing.assert_array_equal(chains_on_threads.posterior[n], ranges_on_threads.posterior[n])
    np.testing.assert_array_equal(
        chains_on_threads.sample_stats["n_changed"], ranges_on_threads.sample_stats["n_changed"]
    )


def test_chain_groups_split_the_chains_evenly():
    assert chain_groups(4, 2) == [(0, 2), (2, 4)]
    assert chain_groups(3, 2) in ([(0, 2), (2, 3)], [(0, 1), (1, 3)])
    assert chain_groups(1, 8) == [(0, 1)]
    assert chain_groups(5, 8) == [(c, c + 1) for c in range(5)]


def test_sample_stats_count_changed_assignments(y3):
    idata = _fit(mixtures.full_mixture(y3, 3, marginalized=False), draws=200, tune=100,
                 tempering=False)  # fmt: skip
    changed = idata.sample_stats["n_changed"].values
    z = idata.posterior["assignment"].values
    # counted from the stored assignments, draw to draw
    np.testing.assert_array_equal(changed[:, 1:], (z[:, 1:] != z[:, :-1]).sum(axis=-1))
    assert changed.max() > 0
    assert "complete_loglik" in idata.sample_stats and "sigma_accept" in idata.sample_stats


# --- degenerate data: a clear error, in bounded time ---------------------------------------------


@pytest.mark.parametrize(
    ("y", "k", "factory", "floor"),
    [
        (np.full(50, 5.0), 2, mixtures.full_mixture, "auto"),  # one value: no resolution
        (np.repeat([1.0, 2.0, 3.0], 30), 3, mixtures.full_mixture, 0.0),
        (np.repeat([1.0, 2.0], 30), 2, mixtures.shared_sd_mixture, 0.0),
    ],
)
@pytest.mark.parametrize("sampler", ["gibbs", "pymc"])
def test_tied_data_are_refused_up_front(y, k, factory, floor, sampler):
    model = factory(y, k, sigma_floor=floor)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"distinct values.*improper.*fewer components"):
        mixtures.sample(model, sampler=sampler, draws=10, tune=10, **QUIET)
    assert time.perf_counter() - t0 < 1


def test_tied_data_get_a_floor_at_the_rounding_sd_and_finish_in_bounded_time():
    y = np.repeat([1.0, 2.0, 3.0], 30)  # ran for over 12 minutes before the floor existed
    model = mixtures.full_mixture(y, 3)
    floor = mixtures.spec_of(model).sigma_floor
    assert floor == pytest.approx(1 / np.sqrt(12))
    t0 = time.perf_counter()
    idata = _fit(model, draws=1000, tune=1000)
    assert time.perf_counter() - t0 < 30
    sd = idata.posterior["sigma"].values
    assert sd.min() > floor
    np.testing.assert_allclose(
        np.sort(idata.posterior["means"].mean(("chain", "draw"))), [1, 2, 3], atol=0.05
    )
    # and PyMC's NUTS samples the same (truncated) model
    assert "sigma_interval__" in model.initial_point()


def test_tied_data_with_a_prior_vanishing_at_zero_need_no_floor():
    y = np.repeat([1.0, 2.0, 3.0], 30)
    prior = {"sigma": {"dist": "InverseGamma", "alpha": 3.0, "beta": 0.5}}
    model = mixtures.full_mixture(y, 3, priors=prior)
    assert mixtures.spec_of(model).sigma_floor == 0.0
    t0 = time.perf_counter()
    idata = _fit(model, draws=500, tune=500)
    assert time.perf_counter() - t0 < 30
    assert np.isfinite(idata.posterior["sigma"]).all()


def test_continuous_data_get_no_floor(y3):
    assert mixtures.spec_of(mixtures.full_mixture(y3, 3)).sigma_floor == 0.0
    with pytest.raises(ValueError, match=r"`sigma_floor` should be 'auto' or a number >= 0"):
        mixtures.full_mixture(y3, 3, sigma_floor=-1)


def test_a_collapsing_sd_stops_with_a_clear_error():
    rng = np.random.default_rng(1)
    y = np.concatenate([np.zeros(60), rng.normal(10, 3, 20)])  # passes the distinct-value check
    t0 = time.perf_counter()
    with pytest.raises(gibbs.DegenerateDataError, match=r"collapsed.*tied values"):
        _fit(mixtures.full_mixture(y, 2, sigma_floor=0), draws=2000, tune=2000, tempering=False)
    assert time.perf_counter() - t0 < 30


def test_rounded_data_fit_fine(y3):
    idata = mixtures.sample(mixtures.full_mixture(np.round(y3), 3), random_seed=1, **QUIET)
    np.testing.assert_allclose(
        idata.posterior["means"].mean(("chain", "draw")), [9, 21, 35], atol=1
    )


# --- Ctrl-C stops the whole run -------------------------------------------------------------


def test_interrupt_stops_every_chain_and_returns_nothing(y3, monkeypatch):
    calls = []
    real_run = gibbs.run

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_run(*args)

    monkeypatch.setattr(gibbs, "run", interrupted)
    with pytest.raises(SamplingInterrupted, match=r"interrupted.*discarded, nothing is returned"):
        _fit(mixtures.full_mixture(y3, 3), draws=500, tune=500)
    assert len(calls) == 3  # no further chunk (or chain) ran after the interrupt


SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np, mixtures
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    model = mixtures.full_mixture(y, 3)
    kw = dict(sampler=sys.argv[1], chains=4, draws=10**5, tune=1000, progressbar=False)
    if sys.argv[1] == "pymc":
        kw.update(cores=1, draws=20000)
    print("started", flush=True)
    try:
        mixtures.sample(model, **kw)
    except mixtures.SamplingInterrupted as err:
        print("interrupted:", err, flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize("sampler", ["gibbs", "pymc"])
def test_one_sigint_ends_the_run(tmp_path, sampler):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), sampler],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "started"
    time.sleep(8 if sampler == "pymc" else 3)  # well inside the sampling
    proc.send_signal(signal.SIGINT)
    t0 = time.perf_counter()
    out, err = proc.communicate(timeout=60)
    assert time.perf_counter() - t0 < 10  # one Ctrl-C, no chain after chain
    assert proc.returncode == 130, (out, err)
    assert "interrupted:" in out and "nothing is returned" in out
    assert "finished" not in out


# --- the kernels against the one log-density per family -----------------------------------------


def test_families_match_scipy():
    from mixtures.model.densities import mvnormal_logpdf, normal_logpdf

    rng = np.random.default_rng(0)
    y = rng.normal(size=7)
    np.testing.assert_allclose(
        normal_logpdf(y, 0.3, 1.7), stats.norm.logpdf(y, 0.3, 1.7), rtol=1e-12
    )
    X = rng.normal(size=(9, 3))
    a = rng.normal(size=(2, 3, 3))
    cov = a @ np.swapaxes(a, -1, -2) + np.eye(3)
    mean = rng.normal(size=(2, 3))
    got = mvnormal_logpdf(X, mean, np.linalg.cholesky(cov))
    for j in range(2):
        ref = stats.multivariate_normal(mean[j], cov[j]).logpdf(X)
        np.testing.assert_allclose(got[j], ref, rtol=1e-10)


def test_kernel_sweep_draws_the_exact_conditional_of_the_family():
    from mixtures import _kernels
    from mixtures.model.densities import normal_logpdf

    y = np.array([-1.0, 0.4, 1.1, 3.0])
    logw, mu, sd, beta = (
        np.log([0.2, 0.5, 0.3]),
        np.array([-1.0, 0.5, 2.5]),
        np.array([0.7, 1.0, 1.5]),
        0.6,
    )
    reps = 20000
    a = np.broadcast_to(logw - beta * np.log(sd), (reps, 3)).copy()
    c = np.broadcast_to(-0.5 * beta / sd**2, (reps, 3)).copy()
    mus = np.broadcast_to(mu, (reps, 3)).copy()
    keys = np.random.default_rng(1).integers(0, 2**63, size=reps, dtype=np.uint64)
    z = np.full((reps, y.size), -1, dtype=np.int8)
    n, s1, s2 = (np.zeros((reps, 3)) for _ in range(3))
    changed = np.zeros(reps, dtype=np.int64)
    fixed = np.full(y.size, -1, dtype=np.int32)
    _kernels._sweep_serial(y, fixed, a, c, mus, keys, z, n, s1, s2, changed)
    # tempered conditional: w_j N(y | mu_j, sd_j)^beta, from the family's log-density
    logits = logw[:, None] + beta * normal_logpdf(y[None, :], mu[:, None], sd[:, None])
    probs = np.exp(logits - logits.max(0))
    probs /= probs.sum(0)
    for i in range(y.size):
        counts = np.bincount(z[:, i], minlength=3)
        assert stats.chisquare(counts, probs[:, i] * reps).pvalue > 1e-3
    # and the sufficient statistics are the sums over the drawn assignments
    r = 7
    for j in range(3):
        members = y[z[r] == j]
        assert n[r, j] == members.size
        np.testing.assert_allclose(s1[r, j], (members - mu[j]).sum())
        np.testing.assert_allclose(s2[r, j], ((members - mu[j]) ** 2).sum())


def test_bridge_and_stepping_stone_agree_without_a_phase_transition(galaxies):
    """Two independent estimators of log p(y) on galaxies, k = 2 (measured: within 0.01)."""
    idata = _fit(mixtures.full_mixture(galaxies, 2), draws=2000, tempering=64)
    ss = mixtures.log_evidence(idata, method="stepping-stone")
    br = mixtures.log_evidence(idata, method="bridge")
    assert abs(ss.estimate - br.estimate) < 4 * np.hypot(ss.se, br.se) + 0.1


def test_bridge_on_the_wishart_model_equals_stepping_stone_at_k_1():
    X = mixtures.load_dataset("old_faithful").to_numpy()
    idata = _fit(mixtures.mv_mixture(X, 1, covariance_prior="wishart"), draws=1000, tempering=32)
    ss = mixtures.log_evidence(idata, method="stepping-stone")
    br = mixtures.log_evidence(idata, method="bridge")
    assert abs(ss.estimate - br.estimate) < 4 * np.hypot(ss.se, br.se) + 0.1


def test_bridge_refuses_an_unordered_fit(y3):
    idata = _fit(mixtures.full_mixture(y3, 2, ordered=False), draws=100, tune=100, tempering=False)
    with pytest.raises(ValueError, match="unordered"):
        mixtures.log_evidence(idata, method="bridge")
