r"""Expectation-maximisation for a Gaussian mixture: the maximum-likelihood baseline.

The algorithm of the teaching notebook, with scikit-learn's conventions so that the two can be
compared number for number:

* E-step: responsibilities :math:`r_{nk} \propto \pi_k N(x_n \mid \mu_k, \Sigma_k)`;
* M-step: :math:`N_k = \sum_n r_{nk}`, :math:`\mu_k = \sum_n r_{nk} x_n / N_k`,
  :math:`\Sigma_k = \sum_n r_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top / N_k + \epsilon I`,
  :math:`\pi_k = N_k / N`, with :math:`\epsilon` = `reg_covar` (scikit-learn's default 1e-6
  keeps a collapsing component finite);
* stop when the mean log-likelihood per observation changes by less than `tol`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from mixtures.model.components import COMPONENT_FAMILIES
from mixtures.model.validation import check_integer, check_k, check_observations

__all__ = ["EMResult", "em"]


@dataclass
class EMResult:
    """The fitted mixture and its optimisation history.

    Attributes
    ----------
    weights : numpy.ndarray of shape (k,)
    means : numpy.ndarray of shape (k, n_features)
    covariances : numpy.ndarray of shape (k, n_features, n_features)
    responsibilities : numpy.ndarray of shape (n_obs, k)
        At the final parameters.
    nll_history : numpy.ndarray
        Negative log-likelihood (summed over observations) at the start and after every
        M-step; never increases.
    converged : bool
    n_iter : int
        Number of EM iterations (E-step plus M-step) run.
    log_likelihood : float
        Mean log-likelihood per observation at the final parameters.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    responsibilities: np.ndarray
    nll_history: np.ndarray
    converged: bool
    n_iter: int
    log_likelihood: float
    init_means: np.ndarray = field(repr=False, default=None)

    @property
    def labels(self) -> np.ndarray:
        """Most probable component of each observation."""
        return self.responsibilities.argmax(axis=1)

    def initvals(self, ordered_by: int | None = 0) -> dict:
        """Return starting values for :func:`mixtures.mv_mixture` (``weights``, ``means``).

        Components are sorted by feature `ordered_by` to satisfy that model's ordering; pass
        the result as ``initvals=`` to :func:`mixtures.sample` (PyMC and NumPyro engines).
        """
        order = np.argsort(self.means[:, ordered_by]) if ordered_by is not None else slice(None)
        weights = np.clip(self.weights[order], 1e-12, None)
        return {"weights": weights / weights.sum(), "means": self.means[order]}


def _m_step(X, resp, reg_covar):
    nk = resp.sum(axis=0) + 10 * np.finfo(resp.dtype).eps
    means = resp.T @ X / nk[:, None]
    d = X.shape[1]
    covs = np.empty((means.shape[0], d, d))
    for j in range(means.shape[0]):
        diff = X - means[j]
        covs[j] = (resp[:, j, None] * diff).T @ diff / nk[j] + reg_covar * np.eye(d)
    return nk / X.shape[0], means, covs


def _e_step(X, weights, means, covs):
    """Return log p(x_n) (n,) and the responsibilities (n, k) (scikit-learn's E-step)."""
    params = {"means": means, "chol_cov": np.linalg.cholesky(covs)}
    weighted = COMPONENT_FAMILIES["mvnormal"].weighted_logpdf(X, weights, params)
    norm = logsumexp(weighted, axis=1)
    return norm, np.exp(weighted - norm[:, None])


def _run(X, weights, means, covs, max_iter, tol, reg_covar):
    """EM iterations in scikit-learn's order, so that both stop at the same iteration.

    Iteration t evaluates the log-likelihood of the current parameters (the E-step), then
    updates them (the M-step); it stops after the M-step of the first iteration whose
    log-likelihood changed by less than `tol` from the previous one.
    """
    norm, resp = _e_step(X, weights, means, covs)
    history = [-norm.sum()]
    lower, converged, n_iter = -np.inf, False, 0
    for n_iter in range(1, max_iter + 1):
        previous, lower = lower, norm.mean()
        weights, means, covs = _m_step(X, resp, reg_covar)
        norm, resp = _e_step(X, weights, means, covs)
        history.append(-norm.sum())
        if abs(lower - previous) < tol:
            converged = True
            break
    return weights, means, covs, resp, np.array(history), converged, n_iter


def em(
    X,
    k: int,
    *,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-6,
    reg_covar: float = 1e-6,
    means_init=None,
    random_seed=None,
) -> EMResult:
    """Fit a `k`-component Gaussian mixture with full covariances by EM.

    Each start sets the means to `k` distinct observations drawn at random (or `means_init`),
    every covariance to the data's covariance and the weights to 1/k; of `n_init` starts the
    one with the highest final log-likelihood is returned.

    Parameters
    ----------
    X : array-like of shape (n_obs, n_features)
        Observations; must be finite.
    k : int
        Number of components, 1 <= k <= n_obs.
    n_init : int, default 1
        Number of random starts.
    max_iter : int, default 100
        Maximum number of EM iterations per start.
    tol : float, default 1e-6
        Convergence threshold on the change of the mean log-likelihood per observation
        (scikit-learn's criterion).
    reg_covar : float, default 1e-6
        Added to the covariances' diagonals.
    means_init : array-like of shape (k, n_features), optional
        Starting means (then `n_init` must be 1).
    random_seed : int or numpy.random.Generator, optional
        Makes the random starts reproducible.

    Returns
    -------
    EMResult

    Examples
    --------
    >>> import mixtures
    >>> X = mixtures.load_dataset("three_clusters_2d")[["x1", "x2"]]
    >>> result = mixtures.em(X, 3, random_seed=0)
    >>> bool(result.converged)
    True
    """
    X = check_observations(X, "X", ndim=2)
    k, means_init = _check_em(X, k, n_init, max_iter, tol, reg_covar, means_init)
    rng = np.random.default_rng(random_seed)
    return _best_start(X, k, n_init, means_init, rng, (max_iter, tol, reg_covar))


def _check_em(X, k, n_init, max_iter, tol, reg_covar, means_init):
    """Check :func:`em`'s arguments; return `k` and `means_init` (as an array or None)."""
    n, d = X.shape
    k = check_k(k, n)
    for name, val in (("n_init", n_init), ("max_iter", max_iter)):
        check_integer(val, name)
    if not tol > 0:
        raise ValueError(f"`tol` should be > 0, but got {tol!r}")
    if not reg_covar >= 0:
        raise ValueError(f"`reg_covar` should be >= 0, but got {reg_covar!r}")
    if means_init is not None:
        means_init = np.asarray(means_init, dtype=float)
        if means_init.shape != (k, d):
            raise ValueError(
                f"`means_init` should have shape ({k}, {d}), but got {means_init.shape}"
            )
        if n_init != 1:
            raise ValueError(f"`n_init` should be 1 with `means_init`, but got {n_init}")
    return k, means_init


def _best_start(X, k, n_init, means_init, rng, settings) -> EMResult:
    """Run EM from `n_init` starts; return the one with the highest final log-likelihood.

    `settings` is (max_iter, tol, reg_covar).
    """
    n, d = X.shape
    max_iter, tol, reg_covar = settings
    cov = np.atleast_2d(np.cov(X, rowvar=False)) + reg_covar * np.eye(d)
    best = None
    for _ in range(n_init):
        means = means_init if means_init is not None else X[rng.choice(n, k, replace=False)]
        out = _run(X, np.full(k, 1 / k), means.copy(), np.repeat(cov[None], k, 0),
                   max_iter, tol, reg_covar)  # fmt: skip
        loglik = -out[4][-1] / n
        if best is None or loglik > best[1]:
            best = (out, loglik, means)
    (weights, means, covs, resp, history, converged, n_iter), loglik, start = best
    return EMResult(
        weights=weights,
        means=means,
        covariances=covs,
        responsibilities=resp,
        nll_history=history,
        converged=converged,
        n_iter=n_iter,
        log_likelihood=loglik,
        init_means=np.asarray(start),
    )
