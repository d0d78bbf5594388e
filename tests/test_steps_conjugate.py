import arviz as az
import numpy as np
import pymc as pm
import pytest
from scipy import integrate, stats

import mixtures
from mixtures.engines.steps.conjugate import ConjugateMixtureGibbs, conjugate_vars

Y = np.array([7.5, 9.0, 10.5, 19.0, 21.0, 22.5, 34.0, 36.0])
Z = np.array([0, 0, 0, 1, 1, 1, 2, 2])


def _run(model, names, point, n, seed, thin=1):
    """Iterate the conjugate step on `names` only, everything else held at `point`."""
    with model:
        step = ConjugateMixtureGibbs([model[v] for v in names], rng=seed)
    out = {v: [] for v in names}
    fn = model.compile_fn(
        model.replace_rvs_by_values([model[v] for v in names]),
        inputs=model.value_vars,
        on_unused_input="ignore",
        point_fn=False,
    )
    current = dict(point)
    for i in range(n * thin):
        current, _ = step.step(current)
        if i % thin == 0:
            for v, val in zip(names, fn(*[current[x.name] for x in model.value_vars])):
                out[v].append(val)
    return {v: np.array(a) for v, a in out.items()}


def _point(model, means, sigma):
    point = model.initial_point()
    point["assignment"] = Z.copy()
    t = model.rvs_to_transforms
    if "means" in [v.name for v in model.free_RVs]:
        point[model.rvs_to_values[model["means"]].name] = (
            t[model["means"]].forward(np.asarray(means, float)).eval()
            if t.get(model["means"])
            else np.asarray(means, float)
        )
    point[model.rvs_to_values[model["sigma"]].name] = np.log(sigma)
    return point


def test_weights_follow_dirichlet_of_counts():
    model = mixtures.full_mixture(
        Y, 3, priors={"weights": {"a": [1.0, 2.0, 0.5]}}, marginalized=False
    )
    draws = _run(model, ["weights"], _point(model, [9, 21, 35], [1, 1, 1]), 4000, seed=1)["weights"]
    alpha = np.array([1.0, 2.0, 0.5]) + np.bincount(Z)
    for j in range(3):
        beta = stats.beta(alpha[j], alpha.sum() - alpha[j])
        assert stats.kstest(draws[:, j], beta.cdf).pvalue > 1e-3


def test_unordered_means_follow_the_normal_closed_form():
    model = mixtures.full_mixture(
        Y, 3, ordered=False, priors={"means": {"mu": 20.0, "sigma": 10.0}}, marginalized=False
    )
    sd = np.array([1.5, 2.0, 2.5])
    draws = _run(model, ["means"], _point(model, [9, 21, 35], sd), 4000, seed=2)["means"]
    n = np.bincount(Z)
    s = np.bincount(Z, weights=Y)
    prec = 1 / 10.0**2 + n / sd**2
    mean = (20.0 / 10.0**2 + s / sd**2) / prec
    for j in range(3):
        assert stats.kstest(draws[:, j], stats.norm(mean[j], prec[j] ** -0.5).cdf).pvalue > 1e-3


def test_ordered_means_match_rejection_sampling():
    """Overlapping components: the ordering truncation matters; compare with rejection draws."""
    y = np.array([9.0, 10.0, 10.5, 11.0])
    z = np.array([0, 1, 0, 1])
    model = mixtures.full_mixture(
        y, 2, priors={"means": {"mu": 10.0, "sigma": 3.0}}, marginalized=False
    )
    point = model.initial_point()
    point["assignment"] = z
    point["sigma_log__"] = np.log([2.0, 2.0])
    draws = _run(model, ["means"], point, 4000, seed=3, thin=3)["means"]
    n, s = np.bincount(z), np.bincount(z, weights=y)
    prec = 1 / 9 + n / 4
    mean = (10 / 9 + s / 4) / prec
    rng = np.random.default_rng(0)
    prop = rng.normal(mean, prec**-0.5, size=(40_000, 2))
    exact = prop[prop[:, 0] < prop[:, 1]]
    assert (draws[:, 0] < draws[:, 1]).all()
    for j in range(2):
        assert stats.ks_2samp(draws[:, j], exact[:, j]).pvalue > 1e-3


@pytest.mark.parametrize(
    ("prior", "logpdf"),
    [
        ({"dist": "HalfNormal", "sigma": 3.0}, stats.halfnorm(scale=3.0).logpdf),
        ({"dist": "HalfCauchy", "beta": 5.0}, stats.halfcauchy(scale=5.0).logpdf),
        (
            {"dist": "InverseGamma", "alpha": 3.0, "beta": 4.0},
            stats.invgamma(3.0, scale=4.0).logpdf,
        ),
    ],
)
def test_sigma_update_matches_numerical_conditional(prior, logpdf):
    """n = 8 points: the independence MH move from the likelihood's Gamma form."""
    model = mixtures.shared_sd_mixture(Y, 3, priors={"sigma": prior}, marginalized=False)
    mu = np.array([9.0, 21.0, 35.0])
    draws = _run(model, ["sigma"], _point(model, mu, 1.0), 3000, seed=4, thin=3)["sigma"]
    ss = ((Y - mu[Z]) ** 2).sum()

    def log_post(s):
        return logpdf(s) - len(Y) * np.log(s) - ss / (2 * s**2)

    grid = np.linspace(1e-3, 15, 20_001)
    dens = np.exp(log_post(grid) - log_post(grid).max())
    cdf = integrate.cumulative_trapezoid(dens, grid, initial=0)
    cdf /= cdf[-1]
    assert stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3


def test_sigma_slice_fallback_for_a_one_point_component():
    """Component 2 holds one point: its sd takes the slice-sampling path."""
    z = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    model = mixtures.full_mixture(Y, 3, priors={"sigma": {"sigma": 3.0}}, marginalized=False)
    mu = np.array([9.0, 21.0, 35.0])
    point = _point(model, mu, [1.0, 1.0, 1.0])
    point["assignment"] = z
    draws = _run(model, ["sigma"], point, 3000, seed=5, thin=3)["sigma"][:, 2]
    ss = (Y[z == 2] - mu[2]) ** 2

    def log_post(s):
        return stats.halfnorm(scale=3.0).logpdf(s) - np.log(s) - ss.sum() / (2 * s**2)

    grid = np.linspace(1e-3, 20, 20_001)
    dens = np.exp(log_post(grid) - log_post(grid).max())
    cdf = integrate.cumulative_trapezoid(dens, grid, initial=0)
    cdf /= cdf[-1]
    assert stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3


FACTORIES = {
    "known": lambda y, m: mixtures.known_params_mixture(y, [9, 21, 35], [2, 2, 2], marginalized=m),
    "shared": lambda y, m: mixtures.shared_sd_mixture(y, 3, marginalized=m),
    "full": lambda y, m: mixtures.full_mixture(y, 3, marginalized=m),
}


@pytest.mark.parametrize(
    "kind",
    # the full model in the default run; the other two (~15 s each) in the slow tier
    [
        pytest.param("known", marks=pytest.mark.slow),
        "full",
        pytest.param("shared", marks=pytest.mark.slow),
    ],
)
def test_latent_gibbs_posterior_equals_marginal_nuts_posterior(y3, kind):
    kw = dict(draws=1000, tune=500, chains=2, random_seed=8, progressbar=False)
    latent = mixtures.sample(FACTORIES[kind](y3, False), sampler="pymc", **kw)
    assert latent.posterior.attrs["mixtures_sampler"] == "pymc"
    assert latent.posterior.attrs["mixtures_steps"].startswith("AssignmentGibbs[assignment] + Conj")
    marginal = mixtures.sample(FACTORIES[kind](y3, True), sampler="pymc", **kw)
    assert marginal.posterior.attrs["mixtures_steps"] == "NUTS"
    names = [v for v in ("weights", "means", "sigma") if v in latent.posterior]
    ta, tb = (az.summary(i, var_names=names, round_to="none") for i in (latent, marginal))
    mcse = np.sqrt(ta["mcse_mean"] ** 2 + tb["mcse_mean"] ** 2)
    np.testing.assert_array_less(np.abs(ta["mean"] - tb["mean"]), 4 * mcse)
    for name in ("weights", "means", "sigma"):
        if name not in latent.posterior:
            continue
        a = latent.posterior[name].values.reshape(2000, -1)[::5]
        b = marginal.posterior[name].values.reshape(2000, -1)[::5]
        for j in range(a.shape[1]):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3, (name, j)


def test_conjugate_vars_by_model():
    y = Y
    names = lambda m: [v.name for v in conjugate_vars(m)]  # noqa: E731
    assert names(mixtures.full_mixture(y, 3, marginalized=False)) == ["weights", "means", "sigma"]
    assert names(mixtures.known_params_mixture(y, [9, 21, 35], [2, 2, 2], marginalized=False)) == [
        "weights"
    ]
    t_means = mixtures.full_mixture(
        y,
        3,
        priors={"means": {"dist": "StudentT", "nu": 3, "mu": 20, "sigma": 10}},
        marginalized=False,
    )
    assert names(t_means) == ["weights", "sigma"]
    assert names(mixtures.full_mixture(y, 3, marginalized=True)) == []


def test_refuses_foreign_models():
    with pm.Model() as model:
        w = pm.Dirichlet("weights", a=np.ones(2))
        pm.Normal("x", 0, 1)
    with model, pytest.raises(ValueError, match=r"`vars` should be among the conjugate variables"):
        ConjugateMixtureGibbs([w])


def test_studentt_means_fall_back_to_nuts(y3):
    model = mixtures.full_mixture(
        y3,
        3,
        priors={"means": {"dist": "StudentT", "nu": 3, "mu": 20, "sigma": 10}},
        marginalized=False,
    )
    idata = mixtures.sample(model, draws=1000, tune=500, chains=2, random_seed=1, progressbar=False)
    steps = idata.posterior.attrs["mixtures_steps"]
    assert "NUTS[means]" in steps and "ConjugateMixtureGibbs[weights, sigma]" in steps
    # against the data themselves: each true group's sample mean (a weak prior barely moves it)
    data = mixtures.load_dataset("three_gaussians")
    group_means = data.groupby("component")["x"].mean().to_numpy()
    np.testing.assert_allclose(
        idata.posterior["means"].mean(("chain", "draw")), group_means, atol=0.6
    )
