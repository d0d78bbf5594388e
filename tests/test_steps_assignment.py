import itertools
import pickle

import cloudpickle
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import stats
from scipy.special import logsumexp

import mixtures


def _tiny_model():
    y = np.array([8.0, 15.0, 22.0])
    return mixtures.full_mixture(y, 3, priors={"means": {"sigma": 10.0}}, marginalized=False)


def test_draws_follow_the_exact_joint_conditional():
    """Chi-square of 20,000 step draws against the conditional enumerated from the model."""
    model = _tiny_model()
    point = model.initial_point()
    point["means_ordered__"] = np.array([10.0, np.log(6.0), np.log(9.0)])  # means 10, 16, 25
    point["sigma_log__"] = np.log([4.0, 5.0, 6.0])
    joint = model.compile_logp(vars=[model["assignment"], model["y"]])
    cells = list(itertools.product(range(3), repeat=3))
    logp = np.array([joint({**point, "assignment": np.array(z)}) for z in cells])
    expected = np.exp(logp - logsumexp(logp))

    with model:
        step = mixtures.AssignmentGibbs([model["assignment"]], rng=123)
    n = 20_000
    counts = np.zeros(len(cells))
    index = {z: i for i, z in enumerate(cells)}
    current = point
    for _ in range(n):
        current, _ = step.step(current)
        counts[index[tuple(current["assignment"])]] += 1
    keep = expected * n >= 5
    observed = np.r_[counts[keep], counts[~keep].sum()]
    exp = np.r_[expected[keep], expected[~keep].sum()] * n
    chi2 = stats.chisquare(observed, exp)
    assert chi2.pvalue > 1e-3, chi2
    # and the draws are not trivially concentrated: several cells carry real mass
    assert (expected > 0.05).sum() >= 3


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_conditional_logits_match_enumeration(path):
    model = _tiny_model()
    point = model.initial_point()
    with model:
        step = mixtures.AssignmentGibbs([model["assignment"]])
    assert step._fast is not None  # a factory model takes the NumPy path
    logits = step.conditional_logits(point, fast="auto" if path == "fast" else None)
    joint = model.compile_logp(vars=[model["assignment"], model["y"]])
    # Changing one element's value shifts the joint by exactly the change in its logit.
    base = np.zeros(3, dtype=int)
    for i, j in itertools.product(range(3), range(3)):
        z = base.copy()
        z[i] = j
        delta = joint({**point, "assignment": z}) - joint({**point, "assignment": base})
        np.testing.assert_allclose(delta, logits[j, i] - logits[0, i], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "factory",
    [
        lambda y: mixtures.known_params_mixture(y, [10, 20, 35], [2, 3, 4], marginalized=False),
        lambda y: mixtures.shared_sd_mixture(y, 3, marginalized=False),
        lambda y: mixtures.full_mixture(y, 3, ordered=False, marginalized=False),
    ],
)
def test_fast_path_used_for_every_factory(y3, factory):
    model = factory(y3[:40])
    with model:
        step = mixtures.AssignmentGibbs([model["assignment"]])
    assert step._fast is not None


def test_fast_path_refused_for_a_look_alike_model():
    """Same names, different likelihood (means doubled): the generic path must be kept."""
    y = np.array([8.0, 15.0, 22.0])
    with pm.Model() as model:
        w = pm.Dirichlet("weights", a=np.ones(3))
        mu = pm.Normal("means", 10, 10, shape=3)
        sd = pm.HalfNormal("sigma", 5, shape=3)
        z = pm.Categorical("assignment", p=w, shape=3)
        pm.Normal("y", mu=2 * mu[z], sigma=sd[z], observed=y)
    with model:
        step = mixtures.AssignmentGibbs([model["assignment"]])
    assert step._fast is None
    point = model.initial_point()
    joint = model.compile_logp(vars=[model["assignment"], model["y"]])
    logits = step.conditional_logits(point)
    z1 = np.array([1, 0, 0])
    delta = joint({**point, "assignment": z1}) - joint({**point, "assignment": np.zeros(3, int)})
    np.testing.assert_allclose(delta, logits[1, 0] - logits[0, 0], rtol=1e-9)


def _categorical_model(likelihood):
    with pm.Model() as model:
        w = pm.Dirichlet("weights", a=np.ones(3))
        z = pm.Categorical("assignment", p=w, shape=5)
        likelihood(z)
    return model


@pytest.mark.parametrize(
    ("likelihood", "message"),
    [
        (
            lambda z: pm.Normal("y", mu=pt.cumsum(z), sigma=1, observed=np.arange(5.0)),
            r"changing element \d+ changed the conditional of element",
        ),
        (
            lambda z: pm.Normal("y", mu=z.sum(), sigma=1, observed=2.0),
            r"the log-density of \['y'\] depends on all of it jointly",
        ),
        (
            lambda z: pm.Potential("pen", -(z**2).sum()),
            r"the Potential `pen` depends on it",
        ),
    ],
)
def test_refuses_dependent_assignments(likelihood, message):
    model = _categorical_model(likelihood)
    with model, pytest.raises(ValueError, match=message):
        mixtures.AssignmentGibbs([model["assignment"]])


def test_refuses_non_categorical(y3):
    model = mixtures.full_mixture(y3, 3, marginalized=False)
    with model, pytest.raises(ValueError, match=r"`weights` should be a Categorical variable"):
        mixtures.AssignmentGibbs([model["weights"]])


def test_pickles_like_pymc_steps():
    model = _tiny_model()
    point = model.initial_point()
    with model:
        step = mixtures.AssignmentGibbs([model["assignment"]], rng=5)
    clone = pickle.loads(cloudpickle.dumps(step))
    np.testing.assert_array_equal(
        step.step(point)[0]["assignment"], clone.step(point)[0]["assignment"]
    )


@pytest.mark.slow  # ~30 s: two worker processes started by forkserver
def test_sampling_is_reproducible_and_uses_both_cores(y3):
    model = mixtures.shared_sd_mixture(y3, 3, marginalized=False)
    # forkserver: JAX (imported by the numpyro tests) warns on a plain fork
    kwargs = dict(draws=50, tune=50, chains=2, cores=2, random_seed=7, progressbar=False,
                  mp_ctx="forkserver")  # fmt: skip
    a = mixtures.sample(model, sampler="pymc", warn=False, **kwargs)
    b = mixtures.sample(model, sampler="pymc", warn=False, **kwargs)
    for name in ("assignment", "means", "sigma", "weights"):
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values)
    assert "n_changed" in a.sample_stats


def test_user_can_choose_pymc_step(y3):
    y = y3[::20]  # PyMC's own step is O(N^2): keep it tiny
    model = mixtures.known_params_mixture(y, [10, 20, 35], [2, 2, 2], marginalized=False)
    with model:
        step = pm.CategoricalGibbsMetropolis([model["assignment"]])
    with pytest.warns(mixtures.ConvergenceWarning):
        idata = mixtures.sample(
            model, draws=30, tune=10, chains=1, step=[step], progressbar=False, random_seed=1
        )
    assert "n_changed" not in idata.sample_stats
    assert idata.posterior.attrs["mixtures_steps"] == "user-given steps"
    assert "mixtures_latent_sampler" not in idata.posterior.attrs
