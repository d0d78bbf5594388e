import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytest
import xarray as xr
from conftest import TRUE_MEANS, TRUE_SD, TRUE_WEIGHTS

import mixtures

FACTORIES = {
    "known": lambda y, m: mixtures.known_params_mixture(y, [9, 21, 35], [2, 2, 2], marginalized=m),
    "shared": lambda y, m: mixtures.shared_sd_mixture(y, 3, marginalized=m),
    "full": lambda y, m: mixtures.full_mixture(y, 3, marginalized=m),
}


def _inside_hdi(idata, name, truth, prob=0.94):
    hdi = az.hdi(idata, var_names=[name], hdi_prob=prob)[name].values.reshape(-1, 2)
    truth = np.broadcast_to(truth, hdi.shape[:1])
    return (hdi[:, 0] <= truth) & (truth <= hdi[:, 1])


@pytest.mark.parametrize("marginalized", [True, False], ids=["marginalized", "latent"])
@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_recovery_on_three_gaussians(y3, kind, marginalized):
    model = FACTORIES[kind](y3, marginalized)
    with warnings.catch_warnings():
        warnings.simplefilter("error", mixtures.ConvergenceWarning)  # must converge cleanly
        idata = mixtures.sample(
            model, draws=1000, tune=500, chains=2, random_seed=3, progressbar=False
        )
    post = idata.posterior.mean(("chain", "draw"))
    # Posterior means within 0.6 of the truth (~2 posterior sds of the middle component, the
    # least precise), and each truth inside its 94% HDI.
    np.testing.assert_allclose(post["weights"], TRUE_WEIGHTS, atol=0.05)
    assert _inside_hdi(idata, "weights", TRUE_WEIGHTS).all()
    if kind != "known":
        np.testing.assert_allclose(np.sort(post["means"]), TRUE_MEANS, atol=0.6)
        assert _inside_hdi(idata, "means", TRUE_MEANS).all()
        np.testing.assert_allclose(post["sigma"], TRUE_SD, atol=0.4)
        assert _inside_hdi(idata, "sigma", TRUE_SD).all()


@pytest.mark.parametrize("marginalized", [True, False], ids=["marginalized", "latent"])
def test_known_params_weights_match_dirichlet_closed_form(marginalized):
    """Far-apart components: the assignments are certain, so weights | y ~ Dirichlet(1 + n)."""
    counts = np.array([30, 10, 20])
    rng = np.random.default_rng(0)
    y = rng.normal(np.repeat([0.0, 50.0, 100.0], counts), 1.0)
    model = mixtures.known_params_mixture(y, [0, 50, 100], [1, 1, 1], marginalized=marginalized)
    idata = mixtures.sample(model, draws=1000, tune=500, chains=2, random_seed=4, progressbar=False)
    alpha = 1 + counts
    exact_mean = alpha / alpha.sum()
    exact_sd = np.sqrt(exact_mean * (1 - exact_mean) / (alpha.sum() + 1))
    table = az.summary(idata, var_names=["weights"], round_to="none")
    np.testing.assert_array_less(np.abs(table["mean"] - exact_mean), 4 * table["mcse_mean"])
    np.testing.assert_allclose(
        idata.posterior["weights"].std(("chain", "draw")), exact_sd, rtol=0.1
    )


def test_log_likelihood_equals_pymc_computation(fitted):
    model, idata = fitted
    ours = idata.log_likelihood["y"]
    # the ordered model needs no initval, so PyMC accepts the model itself
    theirs = pm.compute_log_likelihood(
        idata.copy(), model=model, extend_inferencedata=False, progressbar=False
    )["y"]
    xr.testing.assert_allclose(ours, theirs.transpose(*ours.dims), rtol=1e-10)


def test_latent_log_likelihood_is_the_marginal_one(y3):
    latent = mixtures.shared_sd_mixture(y3, 3, marginalized=False)
    idata = mixtures.sample(
        latent, draws=20, tune=20, chains=1, random_seed=2, progressbar=False, warn=False
    )
    marginal = mixtures.shared_sd_mixture(y3, 3, marginalized=True, ordered=False)
    theirs = pm.compute_log_likelihood(
        idata.copy(), model=marginal, extend_inferencedata=False, progressbar=False
    )["y"]
    np.testing.assert_allclose(idata.log_likelihood["y"].values, theirs.values, rtol=1e-10)


def test_sample_ppc_sample_again_keeps_the_model_intact(y3):
    """PyMC 5 corrupts a model on a ppc call without var_names; ours must not."""
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    kwargs = dict(draws=100, tune=100, chains=1, random_seed=5, progressbar=False)
    idata = mixtures.sample(model, warn=False, **kwargs)
    observed_before = list(model.observed_RVs)
    mixtures.sample_posterior_predictive(model, idata, random_seed=6)
    mixtures.sample_posterior_predictive(model, idata, random_seed=6)
    assert model.observed_RVs == observed_before
    assert np.isfinite(model.compile_logp()(model.initial_point()))
    again = mixtures.sample(model, warn=False, **kwargs)
    np.testing.assert_array_equal(again.posterior["means"], idata.posterior["means"])


def test_posterior_predictive_shape_and_spread(fitted, y3):
    _, idata = fitted
    pred = idata.posterior_predictive["y"]
    assert pred.dims == ("chain", "draw", "obs_id")
    assert pred.shape == (2, 500, len(y3))
    # pooled over draws, the predictive's mean and variance are the posterior averages of
    # the mixture's closed-form moments, sum w mu and sum w (sigma^2 + mu^2) - (sum w mu)^2
    post = idata.posterior
    w, mu, sd = (post[v].transpose("chain", "draw", "component").values
                 for v in ("weights", "means", "sigma"))  # fmt: skip
    mean = (w * mu).sum(-1)
    second = (w * (sd**2 + mu**2)).sum(-1)
    values = pred.values.reshape(-1, len(y3))
    se_mean = values.mean(axis=1).std() / np.sqrt(values.shape[0])  # over draws
    assert abs(values.mean() - mean.mean()) < 4 * se_mean + 1e-9
    se_second = (values**2).mean(axis=1).std() / np.sqrt(values.shape[0])
    assert abs((values**2).mean() - second.mean()) < 4 * se_second
    # and the data's own moments lie within the posterior's spread of the mixture's
    assert abs(y3.mean() - mean.mean()) < 3 * mean.std()


def test_latent_ppc_redraws_assignments(y3):
    model = mixtures.known_params_mixture(y3, [9, 21, 35], [2, 2, 2], marginalized=False)
    idata = mixtures.sample(
        model, draws=50, tune=50, chains=1, random_seed=1, progressbar=False, warn=False
    )
    mixtures.sample_posterior_predictive(model, idata, random_seed=2)
    assert list(idata.posterior_predictive.data_vars) == ["y"]
    # with redrawn assignments observation i is not tied to its own component
    first = idata.posterior_predictive["y"].isel(obs_id=0).values.ravel()
    assert (first > 15).mean() > 0.3  # obs 0 belongs to the component at 9


def test_netcdf_round_trip_loses_nothing(fitted, tmp_path):
    _, idata = fitted
    path = tmp_path / "fit.nc"
    idata.to_netcdf(path)
    back = az.from_netcdf(path)
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        xr.testing.assert_identical(back[group].load(), idata[group])


def test_convergence_warning_names_parameters(y3):
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mixtures.sample(
            model, draws=30, tune=30, chains=2, random_seed=1, progressbar=False, tempering=False
        )
    messages = [str(w.message) for w in caught if w.category is mixtures.ConvergenceWarning]
    assert any(m.startswith("bulk ESS < 400 (down to ") and "means[0]" in m for m in messages)
    assert any(m.startswith("r_hat > 1.01 (up to ") for m in messages), messages


def test_warn_convergence_counts_divergences(fitted):
    _, idata = fitted
    bad = idata.copy()
    bad.sample_stats["diverging"][0, :3] = True
    with pytest.warns(mixtures.ConvergenceWarning, match=r"^3 divergent transition\(s\)"):
        mixtures.engines.sampling.warn_convergence(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"draws": 0}, r"`draws` and `chains` should be >= 1"),
        ({"chains": -1}, r"`chains` should be a non-negative integer, but got -1"),
        ({"tune": 1.5}, r"`tune` should be a non-negative integer, but got 1.5"),
    ],
)
def test_bad_sampling_arguments(y3, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mixtures.sample(mixtures.full_mixture(y3, 2), **kwargs)


def test_sample_rejects_foreign_models():
    with pm.Model() as model:
        pm.Normal("x")
    with pytest.raises(ValueError, match=r"observed variable `y`"):
        mixtures.sample(model)
    with pytest.raises(ValueError, match=r"`model` should be a pymc.Model, but got dict"):
        mixtures.sample({})


def test_pymc_runs_report_engine_and_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(
        "import mixtures, mixtures.progress\n"
        "mixtures.progress.LINE_EVERY = 0.2\n"
        "y = mixtures.load_dataset('three_gaussians')['x']\n"
        "m = mixtures.known_params_mixture(y, [9, 21, 35], [2, 2, 2])\n"
        "mixtures.sample(m, sampler='pymc', draws=300, tune=300, chains=1, cores=1,\n"
        "                random_seed=1, progressbar=True, warn=False)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    assert any(line.startswith("mixtures: sampling with 'pymc': ") for line in err)
    lines = [line for line in err if line.startswith("PyMC sampling")]
    assert lines and lines[-1].startswith(
        "PyMC sampling (draws of all chains, tuning included): 100% (600/600)"
    )
