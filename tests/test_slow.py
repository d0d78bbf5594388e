"""Slow tier (``python -m pytest -m slow``): multimodal posteriors against nested sampling.

Not in the default run (each test takes minutes); the figures of the last run are in
``bench/RESULTS.md``. The reference is dynesty's nested sampling of the same model (ordered
means by sorting iid Normal prior draws, which gives exactly the ordered prior), which
estimates the posterior and the log evidence independently of any MCMC.
"""

import numpy as np
import pytest
from scipy import special, stats

import mixtures

dynesty = pytest.importorskip("dynesty")

pytestmark = pytest.mark.slow


def nested_reference(y, spec, seed=0, nlive=1500):
    """Dynesty run of the k-component full mixture with `spec`'s priors; returns samples, logz."""
    k = spec.k
    a = np.asarray(spec.priors["weights"].params["a"])
    m0 = np.asarray(spec.priors["means"].params["mu"])
    s0 = np.asarray(spec.priors["means"].params["sigma"])
    sd_scale = np.asarray(spec.priors["sigma"].params["sigma"])

    def prior_transform(u):
        g = stats.gamma.ppf(u[:k], a)  # Dirichlet from normalised Gammas
        w = g / g.sum()
        mu = np.sort(m0 + s0 * special.ndtri(u[k : 2 * k]))  # iid sorted = the ordered prior
        sd = sd_scale * special.ndtri(0.5 + 0.5 * u[2 * k :])  # HalfNormal
        return np.concatenate([w, mu, sd])

    def loglike(theta):
        w, mu, sd = theta[:k], theta[k : 2 * k], theta[2 * k :]
        comp = np.log(np.maximum(w, 1e-300)) + stats.norm.logpdf(y[:, None], mu, sd)
        return float(special.logsumexp(comp, axis=1).sum())

    sampler = dynesty.NestedSampler(
        loglike,
        prior_transform,
        3 * k,
        nlive=nlive,
        sample="rslice",
        rstate=np.random.default_rng(seed),
    )
    sampler.run_nested(print_progress=False, dlogz=0.05)
    res = sampler.results
    weights = np.exp(res.logwt - res.logz[-1])
    draws = dynesty.utils.resample_equal(
        res.samples, weights / weights.sum(), rstate=np.random.default_rng(seed)
    )
    return draws, float(res.logz[-1]), float(res.logzerr[-1])


def test_far_group_chains_agree_and_match_nested_sampling():
    y = mixtures.load_dataset("far_group")["x"].to_numpy()
    model = mixtures.full_mixture(y, 3)
    spec = mixtures.spec_of(model)
    # default settings but 3,000 draws: at the default 1,000 the worst r_hat is ~1.01 (1.0107 in
    # the last run) because the two overlapping big groups mix slowly inside their mode
    idata = mixtures.sample(model, draws=3000, random_seed=1, progressbar=False, warn=False)
    summary = mixtures.summary_table(idata)
    print(summary[["mean", "ess_bulk", "r_hat"]])
    assert summary["r_hat"].max() <= 1.01
    assert summary["ess_bulk"].min() >= 400
    draws, logz, logz_err = nested_reference(y, spec)
    k = 3
    ours = {
        "weights": idata.posterior["weights"].values.reshape(-1, k),
        "means": idata.posterior["means"].values.reshape(-1, k),
        "sigma": idata.posterior["sigma"].values.reshape(-1, k),
    }
    theirs = {"weights": draws[:, :k], "means": draws[:, k : 2 * k], "sigma": draws[:, 2 * k :]}
    # mode masses: the far group is a component of its own when the top mean sits near 14
    own_ours = np.mean(ours["means"][:, 2] > 10)
    own_theirs = np.mean(theirs["means"][:, 2] > 10)
    print(f"P(far group is its own component): ours {own_ours:.3f}, nested {own_theirs:.3f}")
    assert abs(own_ours - own_theirs) < 0.1  # nested sampling's mode masses vary by ~0.1
    for name in ours:
        np.testing.assert_allclose(
            np.median(ours[name], axis=0), np.median(theirs[name], axis=0), rtol=0.15, atol=0.1
        )
    est, se = mixtures.log_evidence(idata)
    print(f"log evidence: ours {est:.2f} +- {se:.2f}, nested {logz:.2f} +- {logz_err:.2f}")
    assert abs(est - logz) < 3 * np.hypot(se, logz_err) + 0.3


def test_galaxies_evidence_matches_nested_sampling():
    y = mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000
    model = mixtures.full_mixture(y, 3)
    idata = mixtures.sample(model, draws=3000, random_seed=2, progressbar=False, warn=False)
    assert mixtures.summary_table(idata)["r_hat"].max() <= 1.01
    _, logz, logz_err = nested_reference(y, mixtures.spec_of(model), nlive=1000)
    est, se = mixtures.log_evidence(idata)
    print(f"galaxies log evidence: ours {est:.2f} +- {se:.2f}, nested {logz:.2f} +- {logz_err:.2f}")
    assert abs(est - logz) < 3 * np.hypot(se, logz_err) + 0.3


def test_bridge_evidence_matches_nested_sampling_where_the_ladder_does_not():
    """Three clusters, N = 240: dynesty -650.79 +- 0.17 (measured); bridge -651.12 +- 0.01;
    stepping-stone over 32 adapted temperatures gave -633 to -661 by run length (phase
    transition on the tempered path)."""
    rng = np.random.default_rng(4)
    y = np.concatenate([rng.normal(-6, 1, 80), rng.normal(0, 1, 80), rng.normal(7, 1.3, 80)])
    model = mixtures.full_mixture(y, 3)
    _, logz, logz_err = nested_reference(y, mixtures.spec_of(model), nlive=500)
    idata = mixtures.sample(model, random_seed=1, progressbar=False, warn=False)
    est, se = mixtures.log_evidence(idata, method="bridge")
    assert abs(est - logz) < 4 * np.hypot(se, logz_err) + 0.2
