r"""The log marginal likelihood by bridge sampling from posterior draws (Meng and Wong 1996).

Stepping-stone over a tempering ladder (:func:`mixtures.log_evidence`) has to cross the
tempered path's phase transition: as the likelihood's power rises, the replicas jump from a
"one broad cluster" phase to the clustered one, with a gap of hundreds of nats in
log-likelihood. The rare visits to the clustered phase at the transition dominate the
estimate, so with a few dozen temperatures it can be tens of nats off, with a small standard
error, and by an amount that depends on the adapted ladder. Bridge sampling avoids the path:
it compares the posterior with a Gaussian fitted to the posterior draws, in the unconstrained
space, with the assignments summed out of the likelihood:

.. math:: p(y) = \frac{E_q[\tilde p(\theta \mid y)\, h(\theta)]}{E_{post}[q(\theta)\, h(\theta)]}

with the optimal bridge :math:`h` found by Meng and Wong's iteration, the posterior draws split
in half (one half fits :math:`q`, the other enters the estimate; Overstall and Forster 2010),
and the relative-error approximation of Frühwirth-Schnatter (2004) with the posterior half's
effective sample size. The Gaussian proposal needs an identified (unimodal) posterior: ordered
models (the factories' default) or ``k = 1``.

Everything is computed from the InferenceData: the resolved spec recorded in
``posterior.attrs["mixtures_spec"]`` (priors as numbers), the observed data and the known
parameters in ``constant_data``; the prior densities are SciPy's (normalised), independent of
PyMC, and the likelihood is the component family's (:mod:`mixtures.model.components`).
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np
from scipy import stats
from scipy.special import gammaln, logsumexp

from mixtures.model.components import COMPONENT_FAMILIES, family_of

__all__ = ["LogEvidence", "bridge_log_evidence", "supports_bridge"]


class LogEvidence(NamedTuple):
    r"""Estimate of :math:`\log p(y)` and its Monte Carlo standard error."""

    estimate: float
    se: float


_BLOCK = 2_000_000  # parameter rows x observations x components per block of log-densities


def _spec(idata) -> dict:
    try:
        return json.loads(idata.posterior.attrs["mixtures_spec"])
    except KeyError:
        raise ValueError("`idata` should be a mixtures fit (posterior.attrs['mixtures_spec'])")


def supports_bridge(idata) -> tuple[bool, str]:
    """Whether :func:`bridge_log_evidence` applies to this fit, and why (not)."""
    spec = _spec(idata)
    if spec.get("labelled"):
        return False, "known labels"
    if spec["priors"].get("weights", {}).get("dist") != "Dirichlet":
        return False, "weights prior is not Dirichlet"
    if spec["family"] in ("mvnormal", "mvt") and "wishart" not in spec["priors"]:
        return False, "multivariate LKJ covariances"
    if spec["k"] > 1 and not spec["ordered"] and "means" not in spec.get("known", {}):
        return False, "unordered components (the posterior is multimodal)"
    means_dist = spec["priors"].get("means", {}).get("dist", "Normal")
    if spec["family"] in ("normal", "t") and means_dist != "Normal":
        return False, "means prior is not Normal"
    return True, "identified posterior with Normal means and Dirichlet weights"


# ------------------------------------------------------------------ parameterisation
class _Univariate:
    """theta = (alr(weights), means as first + log gaps if ordered, log(sigma - floor))."""

    def __init__(self, idata, spec):
        self.k = spec["k"]
        self.spec = spec
        self.priors = spec["priors"]
        self.floor = float(spec.get("sigma_floor", 0.0))
        self.y = np.asarray(idata.observed_data["y"].values, dtype=float)
        const = idata.constant_data if "constant_data" in idata.groups() else {}
        self.known = {
            n: np.asarray(const[n].values, float) for n in ("means", "sigma", "nu") if n in const
        }
        self.t = spec["family"] == "t"  # Student-t components: nu known or free (log nu)
        self.family = family_of(spec)
        self.free_nu = "nu" in self.priors
        self.free_means = "means" in self.priors
        self.free_sigma = "sigma" in self.priors
        self.shared = spec["shared_sd"]
        self.ordered = spec["ordered"] and self.k > 1

    def draws(self, post) -> np.ndarray:
        """Posterior draws as unconstrained vectors, shape (chain, draw, dim)."""
        w = post["weights"].transpose("chain", "draw", "component").values
        parts = [np.log(w[..., :-1]) - np.log(w[..., -1:])]
        if self.free_means:
            mu = post["means"].transpose("chain", "draw", "component").values
            if self.ordered:
                parts.append(np.concatenate([mu[..., :1], np.log(np.diff(mu, axis=-1))], -1))
            else:
                parts.append(mu)
        if self.free_sigma:
            sd = post["sigma"].values
            sd = (
                sd[..., None]
                if self.shared
                else post["sigma"].transpose("chain", "draw", ...).values
            )
            parts.append(np.log(sd - self.floor))
        if self.free_nu:
            parts.append(np.log(post["nu"].transpose("chain", "draw", "component").values))
        return np.concatenate(parts, axis=-1)

    def log_post(self, theta: np.ndarray) -> np.ndarray:
        """Unnormalised log posterior density in the unconstrained space, per row."""
        k = self.k
        x = np.concatenate([theta[:, : k - 1], np.zeros((theta.shape[0], 1))], axis=1)
        logw = x - logsumexp(x, axis=1, keepdims=True)
        out = logw.sum(axis=1)  # log |Jacobian| of the additive log-ratio
        a = np.asarray(self.priors["weights"]["a"], float)
        out += gammaln(a.sum()) - gammaln(a).sum() + ((a - 1) * logw).sum(axis=1)
        pos = k - 1
        if self.free_means:
            u = theta[:, pos : pos + k]
            pos += k
            if self.ordered:
                mu = np.cumsum(np.concatenate([u[:, :1], np.exp(u[:, 1:])], axis=1), axis=1)
                out += u[:, 1:].sum(axis=1)
            else:
                mu = u
            p = self.priors["means"]
            out += stats.norm.logpdf(mu, np.asarray(p["mu"]), np.asarray(p["sigma"])).sum(axis=1)
            if self.ordered:
                out += _log_order_normaliser(np.asarray(p["mu"]), np.asarray(p["sigma"]), k)
        else:
            mu = np.broadcast_to(self.known["means"], (theta.shape[0], k))
        if self.free_sigma:
            m = 1 if self.shared else k
            u = theta[:, pos : pos + m]
            pos += m
            sd = self.floor + np.exp(u)
            out += u.sum(axis=1)
            out += _scale_logpdf(self.priors["sigma"], sd, self.floor).sum(axis=1)
            sd = np.broadcast_to(sd, (theta.shape[0], k))
        else:
            sd = np.broadcast_to(self.known["sigma"], (theta.shape[0], k))
        params = {"means": mu, "sigma": sd}
        if self.free_nu:
            u = theta[:, pos : pos + k]
            params["nu"] = np.exp(u)
            out += u.sum(axis=1) + _scale_logpdf(self.priors["nu"], params["nu"], 0.0).sum(axis=1)
        elif self.t:
            params["nu"] = np.broadcast_to(self.known["nu"], (theta.shape[0], k))
        return out + mixture_loglik(self.family, self.y, logw, params)


class _Multivariate:
    """theta = (alr(weights), means (first feature gaps if ordered), chol with log diagonal)."""

    def __init__(self, idata, spec):
        self.k, self.d = spec["k"], spec["n_features"]
        self.priors = spec["priors"]
        self.x = np.asarray(idata.observed_data["y"].transpose("obs_id", ...).values, float)
        self.ordered_by = spec["ordered_by"] if spec["ordered"] and self.k > 1 else None
        self.tril = np.tril_indices(self.d)
        self.family = family_of(spec)  # multivariate Normal or t (nu known or free: log nu)
        self.free_nu = "nu" in self.priors
        const = idata.constant_data if "constant_data" in idata.groups() else {}
        self.known_nu = np.asarray(const["nu"].values, float) if "nu" in const else None

    def draws(self, post) -> np.ndarray:
        k, d = self.k, self.d
        w = post["weights"].transpose("chain", "draw", "component").values
        mu = post["means"].transpose("chain", "draw", "component", "feature").values.copy()
        chol = post["chol_cov"].transpose("chain", "draw", "component", ...).values.copy()
        if self.ordered_by is not None:
            col = mu[..., self.ordered_by]
            mu[..., self.ordered_by] = np.concatenate(
                [col[..., :1], np.log(np.diff(col, axis=-1))], axis=-1
            )
        diag = np.arange(d)
        chol[..., diag, diag] = np.log(chol[..., diag, diag])
        parts = [
            np.log(w[..., :-1]) - np.log(w[..., -1:]),
            mu.reshape(*mu.shape[:2], k * d),
            chol[..., self.tril[0], self.tril[1]].reshape(*chol.shape[:2], -1),
        ]
        if self.free_nu:
            parts.append(np.log(post["nu"].transpose("chain", "draw", "component").values))
        return np.concatenate(parts, axis=-1)

    def log_post(self, theta: np.ndarray) -> np.ndarray:
        k, d, n = self.k, self.d, theta.shape[0]
        x = np.concatenate([theta[:, : k - 1], np.zeros((n, 1))], axis=1)
        logw = x - logsumexp(x, axis=1, keepdims=True)
        out = logw.sum(axis=1)
        a = np.asarray(self.priors["weights"]["a"], float)
        out += gammaln(a.sum()) - gammaln(a).sum() + ((a - 1) * logw).sum(axis=1)
        pos = k - 1
        mu = theta[:, pos : pos + k * d].reshape(n, k, d).copy()
        pos += k * d
        p = self.priors["means"]
        if self.ordered_by is not None:
            u = mu[:, :, self.ordered_by].copy()
            out += u[:, 1:].sum(axis=1)
            mu[:, :, self.ordered_by] = np.cumsum(
                np.concatenate([u[:, :1], np.exp(u[:, 1:])], axis=1), axis=1
            )
            col = self.ordered_by
            out += _log_order_normaliser(
                np.asarray(p["mu"])[:, col], np.asarray(p["sigma"])[:, col], k
            )
        out += stats.norm.logpdf(mu, np.asarray(p["mu"]), np.asarray(p["sigma"])).sum(axis=(1, 2))
        m = d * (d + 1) // 2
        chol = np.zeros((n, k, d, d))
        chol[:, :, self.tril[0], self.tril[1]] = theta[:, pos : pos + k * m].reshape(n, k, m)
        diag = np.arange(d)
        logdiag = chol[:, :, diag, diag].copy()
        chol[:, :, diag, diag] = np.exp(logdiag)
        # Sigma = L L^T: |dSigma/dL| = 2^d prod_i L_ii^(d - i); and dL_ii/du_ii = L_ii
        powers = d - np.arange(d)  # d - i + 1 for i = 1..d
        out += (d * math.log(2.0) + (logdiag * powers).sum(axis=-1) + logdiag.sum(axis=-1)).sum(1)
        wish = self.priors["wishart"]
        cov = chol @ np.swapaxes(chol, -1, -2)
        prior = stats.invwishart(df=float(wish["nu"]), scale=np.asarray(wish["psi"]))
        out += prior.logpdf(np.moveaxis(cov.reshape(n * k, d, d), 0, -1)).reshape(n, k).sum(1)
        params = {"means": mu, "chol_cov": chol}
        pos += k * m
        if self.free_nu:
            u = theta[:, pos : pos + k]
            params["nu"] = np.exp(u)
            out += u.sum(axis=1) + _scale_logpdf(self.priors["nu"], params["nu"], 0.0).sum(axis=1)
        elif self.known_nu is not None:
            params["nu"] = np.broadcast_to(self.known_nu, (n, k))
        return out + mixture_loglik(self.family, self.x, logw, params)


def mixture_loglik(family, y, log_weights, params) -> np.ndarray:
    """Return sum_i log sum_j w_j f(y_i | theta_j) per row of parameters, in blocks of rows.

    Parameters
    ----------
    family : mixtures.model.components.ComponentFamily
    y : numpy.ndarray of shape (n_obs,) or (n_obs, d)
    log_weights : numpy.ndarray of shape (n_rows, k)
    params : dict of str to numpy.ndarray
        The family's parameters, leading axis n_rows.

    Returns
    -------
    numpy.ndarray of shape (n_rows,)
    """
    n_rows, k = log_weights.shape
    out = np.empty(n_rows)
    block = max(1, _BLOCK // max(1, k * y.size))
    for start in range(0, n_rows, block):
        sl = slice(start, start + block)
        rows = {name: value[sl] for name, value in params.items()}
        dens = family.mixture_logpdf(y, log_weights[sl], rows, log_weights=True)
        out[sl] = dens.sum(axis=1)
    return out


def _log_order_normaliser(mu, sd, k: int) -> float:
    """-log P(independent draws of the means' prior come out increasing).

    PyMC's ordered transform keeps the product of the prior densities on the ordered region
    without renormalising; the model's proper prior divides by this probability (1 / k! for
    identical priors).
    """
    mu, sd = np.broadcast_to(mu, (k,)), np.broadcast_to(sd, (k,))
    if np.allclose(mu, mu[0]) and np.allclose(sd, sd[0]):
        return float(gammaln(k + 1))
    draws = np.random.default_rng(0).normal(mu, sd, size=(400_000, k))
    frac = np.mean(np.all(np.diff(draws, axis=1) > 0, axis=1))
    return -math.log(max(frac, 1e-300))


def _scale_logpdf(prior: dict, sd: np.ndarray, floor: float) -> np.ndarray:
    from mixtures.model.spec import PRIOR_FAMILIES

    family = PRIOR_FAMILIES["sigma"][prior["dist"]]
    params = {k: np.asarray(v, float) for k, v in prior.items() if k != "dist"}
    dist = family.scipy(**params)
    out = dist.logpdf(sd)
    if floor > 0:
        out = out - np.log(dist.sf(floor))
    return out


# -------------------------------------------------------------------------- estimator
class _Proposal:
    """A Gaussian mixture fitted by EM to the first half of the draws (:func:`mixtures.em`).

    One Gaussian fits an identified, unimodal posterior; an overfitted mixture (more
    components than clusters) leaves an ordered posterior with several modes (where the
    spare component sits), which a few Gaussians cover.
    """

    def __init__(self, draws: np.ndarray, n_components: int, rng):
        from mixtures.analysis.em import em

        m = max(1, min(n_components, draws.shape[0] // (10 * draws.shape[1] + 10)))
        if m == 1 or draws.shape[1] == 0:
            self.weights = np.ones(1)
            self.means = draws.mean(axis=0, keepdims=True)
            cov = np.atleast_2d(np.cov(draws.T)).reshape(1, draws.shape[1], draws.shape[1])
            self.covs = cov
        else:
            fit = em(draws, m, n_init=2, random_seed=int(rng.integers(2**31)), reg_covar=1e-8)
            self.weights, self.means, self.covs = fit.weights, fit.means, fit.covariances
        dim = draws.shape[1]
        jitter = 1e-10 * max(1.0, float(np.trace(self.covs[0]))) * np.eye(dim)
        self.chols = np.linalg.cholesky(self.covs + jitter)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        params = {"means": self.means, "chol_cov": self.chols}
        return COMPONENT_FAMILIES["mvnormal"].mixture_logpdf(x, self.weights, params)

    def rvs(self, n: int, rng) -> np.ndarray:
        which = rng.choice(self.weights.size, size=n, p=self.weights)
        z = rng.standard_normal((n, self.means.shape[1]))
        return self.means[which] + np.einsum("nij,nj->ni", self.chols[which], z)


def bridge_log_evidence(
    idata, *, n_proposal: int | None = None, n_components: int = 4, random_seed=0, max_iter=1000
):
    """Log marginal likelihood of a fit by bridge sampling, with its standard error.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit of an ordered (or one-component) model with Dirichlet weights and Normal means;
        univariate, or multivariate with the inverse-Wishart prior. Any engine.
    n_proposal : int, optional
        Draws from the proposal; default as many as posterior draws used.
    n_components : int, default 4
        Gaussians in the proposal (fewer when there are few draws).
    random_seed : int, optional
    max_iter : int, default 1000

    Returns
    -------
    LogEvidence
        ``(estimate, se)``.
    """
    ok, why = supports_bridge(idata)
    if not ok:
        raise ValueError(f"`idata` should be a fit bridge sampling can take, but it has {why}")
    spec = _spec(idata)
    univariate = spec["family"] in ("normal", "t")
    target = _Univariate(idata, spec) if univariate else _Multivariate(idata, spec)
    theta = target.draws(idata.posterior)
    half = theta.shape[1] // 2
    if half < 10:
        raise ValueError(
            f"`idata` should hold at least 20 draws per chain, but got {theta.shape[1]}"
        )
    fit, use = theta[:, :half].reshape(-1, theta.shape[-1]), theta[:, half:]
    rng = np.random.default_rng(random_seed)
    q = _Proposal(fit, n_components, rng)
    post_draws = use.reshape(-1, theta.shape[-1])
    prop = q.rvs(n_proposal or post_draws.shape[0], rng)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        l1 = target.log_post(post_draws) - q.logpdf(post_draws)
        l2 = target.log_post(prop) - q.logpdf(prop)
    l2 = np.where(np.isfinite(l2), l2, -np.inf)
    shift = np.median(l1)
    log_r, se = _bridge_iterate(l1 - shift, l2 - shift, use.shape[:2], max_iter)
    return LogEvidence(float(log_r + shift), se)


def _bridge_iterate(l1, l2, chains_draws, max_iter: int) -> tuple[float, float]:
    """Meng and Wong's iteration for log r, and its relative error.

    `l1` are log(target / proposal) at the posterior draws (shape `chains_draws` flattened),
    `l2` at the proposal's draws. The error is the relative mean squared error of
    Fruhwirth-Schnatter (2004), the posterior part counted at its effective sample size.
    """
    from arviz import ess

    n1, n2 = l1.size, l2.size
    s1, s2 = n1 / (n1 + n2), n2 / (n1 + n2)
    log_r = 0.0
    for _ in range(max_iter):
        num = logsumexp(l2 - np.logaddexp(np.log(s1) + l2, np.log(s2) + log_r)) - np.log(n2)
        den = logsumexp(-np.logaddexp(np.log(s1) + l1, np.log(s2) + log_r)) - np.log(n1)
        new = num - den
        if abs(new - log_r) < 1e-10:
            log_r = new
            break
        log_r = new
    f1 = np.exp(np.log(s2) + log_r - np.logaddexp(np.log(s1) + l1, np.log(s2) + log_r))
    f2 = np.exp(np.log(s1) + l2 - np.logaddexp(np.log(s1) + l2, np.log(s2) + log_r))
    n1_eff = float(ess(f1.reshape(chains_draws))) if f1.std() > 0 else float(n1)
    re2 = f2.var() / (n2 * f2.mean() ** 2) + f1.var() / (max(n1_eff, 1.0) * f1.mean() ** 2)
    return float(log_r), float(np.sqrt(re2))
