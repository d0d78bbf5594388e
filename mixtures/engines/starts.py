r"""Starting points for the Gibbs engine from the best of several EM runs, and when to temper.

At large N the posterior of a mixture sits, up to exponentially small mass, around the
maximum-likelihood fit, and single-site Gibbs from random starts can stay for ever in a worse
local optimum (two components splitting one cluster, one spanning two). So untempered chains
start from the **best of several EM runs** (k-means++ seeds; :func:`fit_em`, the algorithm of
:func:`mixtures.em`) on a subsample, each chain at its own random perturbation of that fit: the
means moved by twice their standard error, the sds by about 10 %. The chains then start
over-dispersed *within* the mode the posterior sits in, so r_hat still tells whether they mix
there; the search *between* modes is done by the EM starts (and, at small N, by tempering).

Tempered runs keep the random starts (:meth:`GibbsEngine._init`): there the ladder moves the
chains between modes, and starts spread over the data let r_hat see whether it did.

**Sparse (overfitted) multivariate fits** (a Dirichlet(a) weight prior with every a <= 0.1 and
K components, :func:`~mixtures.analysis.diagnostics.is_sparse`) start differently
(:func:`sparse_candidates`, :func:`sparse_starts`). Random starts fill all K components, and
the surplus has to empty out through single-site moves; when two components share one cluster
each takes half of it and neither empties (the reverse move, a merge, passes through states
of low posterior density), and tempering does not help much, since a component emptied at a
small concentration is hardly ever filled again (its weight is Beta(a, N)-small), so the hot
replicas only lose components. So EM is run for k' = 1, 2, ... filled components (several
k-means++ restarts each), every optimum is scored by :func:`sparse_score` (the log-likelihood,
a BIC penalty for the components' means and covariances, and the exact log prior of its
partition under the sparse Dirichlet), and the chains start at the optima whose score is within
:data:`COMPETING_NATS` of the best (the best of each k' first; chain c at candidate c modulo
their number, jittered as above), the other K - k' components empty, with their means and
covariances drawn from the prior. The chains are exact Gibbs from there: only the start
changes, not the posterior. At a small concentration the chains hardly ever change their
number of filled components, in either direction; so when several k' compete, chains start at
each of them and the label-free r_hat of the filled components tells that the fit has not
mixed over k', rather than every chain reporting the start's k'. ``tempering="auto"`` tempers
such a fit only when two candidates have the same k' (a ladder moves chains between partitions
with the same number of components, not between numbers).

**When to temper** (``tempering="auto"``): always when N k <= 6,000, where 16 temperatures cost
at most a few seconds (32 when N k <= 1,000:
:func:`~mixtures.engines.tempering.auto_temperatures`); never when N k > 60,000; in
between only when EM finds a second local optimum, distinct from the best, whose log-likelihood
on all the data (EM continued there from the subsample's optima) is within 10 nats of it (then a
second mode can carry posterior mass, and the ladder is worth its 16-fold cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from mixtures.engines.tempering import auto_temperatures, default_ladder, resolve_ladder

__all__ = [
    "COMPETING_NATS",
    "Optimum",
    "SPARSE_STOP_NATS",
    "TEMPER_ALWAYS",
    "TEMPER_NEVER",
    "choose_ladder",
    "em_optima",
    "fit_em",
    "kmeans_pp",
    "multivariate_starts",
    "needs_tempering",
    "sparse_candidates",
    "sparse_score",
    "sparse_starts",
    "univariate_starts",
    "uses_em_starts",
]

#: N k up to which ``tempering="auto"`` always tempers.
TEMPER_ALWAYS = 6_000
#: N k above which ``tempering="auto"`` never tempers.
TEMPER_NEVER = 60_000
#: A local optimum within this many nats of the best one competes with it.
COMPETING_NATS = 10.0
#: The search over k' filled components of a sparse fit stops two steps after the best score
#: when both fall more than this many nats below it.
SPARSE_STOP_NATS = 2 * COMPETING_NATS
_N_STARTS = 6
_MAX_POINTS = 2_000
_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


@dataclass(frozen=True)
class Optimum:
    """One local maximum of the likelihood, found by EM.

    Attributes
    ----------
    weights : numpy.ndarray of shape (k,)
    means : numpy.ndarray of shape (k, d)
    covariances : numpy.ndarray of shape (k, d, d)
    loglik : float
        Total log-likelihood on the data it was fitted to.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    loglik: float


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Return `k` seeds drawn from the rows of `x` by k-means++ (Arthur & Vassilvitskii 2007)."""
    seeds = [x[rng.integers(x.shape[0])]]
    dist = ((x - seeds[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = dist.sum()
        if not total > 0:  # fewer distinct values than components
            seeds.append(x[rng.integers(x.shape[0])])
            continue
        seeds.append(x[rng.choice(x.shape[0], p=dist / total)])
        dist = np.minimum(dist, ((x - seeds[-1]) ** 2).sum(axis=1))
    return np.array(seeds)


def em_optima(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    n_starts: int = _N_STARTS,
    max_points: int = _MAX_POINTS,
    polish: bool = False,
) -> list[Optimum]:
    """Run EM from `n_starts` k-means++ seeds on a subsample; return its optima, best first.

    Optima in which a component holds fewer than two points (EM's collapse onto one value) are
    dropped: a start there would sit on the boundary the posterior is improper at.

    Parameters
    ----------
    x : numpy.ndarray of shape (n_obs, d)
    k : int
    rng : numpy.random.Generator
    n_starts : int, default 6
    max_points : int, default 2000
        The subsample's size (all the data if smaller).
    polish : bool, default False
        Continue each distinct optimum's EM on all of `x`, so that the log-likelihoods are
        those of the full data's optima (:func:`needs_tempering` compares them).

    Returns
    -------
    list of Optimum
        Possibly empty.
    """
    sub = x[rng.choice(x.shape[0], max_points, replace=False)] if x.shape[0] > max_points else x
    cov = np.atleast_2d(np.cov(sub, rowvar=False))
    reg = 1e-6 * float(np.mean(np.diag(cov))) or 1e-6
    found = []
    for _ in range(n_starts):
        weights = np.full(k, 1.0 / k)
        opt = fit_em(sub, weights, kmeans_pp(sub, k, rng), np.repeat(cov[None], k, 0), reg)
        if np.min(opt.weights) * sub.shape[0] >= 2 and np.isfinite(opt.loglik):
            if not any(not _distinct(opt, other) for other in found):
                found.append(opt)
    if polish and sub is not x:
        found = [fit_em(x, o.weights, o.means, o.covariances, reg, max_iter=50) for o in found]
        found = [o for o in found if np.min(o.weights) * x.shape[0] >= 2]
    return sorted(found, key=lambda opt: -opt.loglik)


def fit_em(x, weights, means, covs, reg: float, *, max_iter: int = 200, tol: float = 1e-6):
    """Run EM on the rows of `x` from the given mixture; return the :class:`Optimum` reached.

    Stops when the mean log-likelihood per observation changes by less than `tol`;
    `reg` is added to the covariances' diagonals (scikit-learn's ``reg_covar``).
    """
    n, d = x.shape
    means, covs = np.array(means, dtype=float), np.array(covs, dtype=float)
    previous = -np.inf
    for _ in range(max_iter):
        norm, resp = _e_step(x, weights, means, covs)
        if abs(norm.mean() - previous) < tol:
            break
        previous = norm.mean()
        nk = resp.sum(axis=0) + 1e-10
        weights, means = nk / n, resp.T @ x / nk[:, None]
        for j in range(weights.size):
            diff = x - means[j]
            covs[j] = (resp[:, j, None] * diff).T @ diff / nk[j] + reg * np.eye(d)
    else:
        norm, _ = _e_step(x, weights, means, covs)
    return Optimum(weights, means, covs, float(norm.sum()))


def _e_step(x, weights, means, covs):
    """Per-observation log mixture density and responsibilities."""
    n, d = x.shape
    dens = np.empty((n, weights.size))
    chol = np.linalg.cholesky(covs)
    for j in range(weights.size):
        sol = np.linalg.solve(chol[j], (x - means[j]).T)
        logdet = np.log(np.diag(chol[j])).sum()
        dens[:, j] = np.log(weights[j]) - 0.5 * (sol * sol).sum(0) - logdet - d * _HALF_LOG_2PI
    top = dens.max(axis=1)
    norm = top + np.log(np.exp(dens - top[:, None]).sum(axis=1))
    return norm, np.exp(dens - norm[:, None])


def _distinct(a: Optimum, b: Optimum) -> bool:
    """Whether two optima are different modes: a sorted mean more than one sd apart."""
    ia, ib = np.argsort(a.means[:, 0]), np.argsort(b.means[:, 0])
    sd = np.sqrt(np.diagonal(b.covariances[ib], axis1=-2, axis2=-1))
    return bool(np.any(np.abs(a.means[ia] - b.means[ib]) > sd))


def choose_ladder(tempering, x: np.ndarray, k: int, rng: np.random.Generator, *, sparse=None):
    """Resolve `tempering` to inverse temperatures; ``"auto"`` by :func:`needs_tempering`.

    With `sparse` (the weight prior's concentration a of a sparse fit that starts from EM),
    the EM optima are those of :func:`sparse_candidates`, and ``"auto"`` tempers only when two
    of them have the same number of components k' (see the module docstring).

    Returns
    -------
    (numpy.ndarray, list of Optimum)
        The ladder, and the EM optima found on the way (empty when none was run).
    """
    if sparse is not None:
        optima = [opt for _, opt in sparse_candidates(x, k, sparse, rng)]
        if isinstance(tempering, str) and tempering == "auto":
            sizes = [opt.weights.size for opt in optima]
            temper = len(set(sizes)) < len(sizes)  # two partitions with the same k'
            ladder = default_ladder(auto_temperatures(x.shape[0], k)) if temper else np.ones(1)
            return ladder, optima
        return resolve_ladder(tempering, x.shape[0], k), optima
    if isinstance(tempering, str) and tempering == "auto":
        temper, optima = needs_tempering(x, k, rng)
        ladder = default_ladder(auto_temperatures(x.shape[0], k)) if temper else np.ones(1)
        return ladder, optima
    return resolve_ladder(tempering, x.shape[0], k), []


def uses_em_starts(init: str, n_temps: int, n_obs: int, k: int) -> bool:
    """Whether chains start from EM: ``init="em"``, or ``"auto"`` untempered with N k > 6,000.

    Below that size the data do not pin one mode, and random starts keep r_hat honest.
    """
    if init not in ("auto", "em", "random"):
        raise ValueError(f"`init` should be 'auto', 'em' or 'random', but got {init!r}")
    if init == "auto":
        return n_temps == 1 and n_obs * k > TEMPER_ALWAYS
    return init == "em"


def needs_tempering(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[bool, list]:
    """Decide ``tempering="auto"`` from the data (see the module docstring).

    Returns
    -------
    (bool, list of Optimum)
        Whether to temper, and the EM optima found (best first; empty when none was run).
    """
    size = x.shape[0] * k
    if k == 1 or size > TEMPER_NEVER:
        return False, []
    if size <= TEMPER_ALWAYS:
        return True, []
    optima = em_optima(x, k, rng, polish=True)
    if not optima:
        return True, optima
    best = optima[0]
    for other in optima[1:]:
        if best.loglik - other.loglik < COMPETING_NATS and _distinct(other, best):
            return True, optima
    return False, optima


def univariate_starts(opt: Optimum, n_rep: int, n_obs: int, rng: np.random.Generator):
    """Return per-replica (log weights, means, sds) around the optimum `opt`, by increasing mean.

    Not checked against the model's constraints (order, prior support). Means move by twice
    their standard error sd_j / sqrt(N w_j), the sds by a factor exp(0.1 e), the weights are
    kept.
    """
    k = opt.weights.size
    order = np.argsort(opt.means[:, 0])
    weights, means = opt.weights[order], opt.means[order, 0]
    sd = np.sqrt(opt.covariances[order, 0, 0])
    se = sd / np.sqrt(np.maximum(n_obs * weights, 1.0))
    mu = means + 2.0 * se * rng.standard_normal((n_rep, k))
    sds = sd * np.exp(0.1 * rng.standard_normal((n_rep, k)))
    logw = np.broadcast_to(np.log(weights), (n_rep, k)).copy()
    return logw, mu, sds


def multivariate_starts(opt: Optimum, n_rep: int, n_obs: int, rng: np.random.Generator):
    """Return per-replica (log weights, means, covariances) around `opt` (unsorted)."""
    k, d = opt.means.shape
    chol = np.linalg.cholesky(opt.covariances)
    scale = 2.0 / np.sqrt(np.maximum(n_obs * opt.weights, 1.0))
    eps = rng.standard_normal((n_rep, k, d))
    mu = opt.means + scale[:, None] * np.einsum("kde,rke->rkd", chol, eps)
    factor = np.exp(0.1 * rng.standard_normal((n_rep, k)))
    cov = opt.covariances * factor[:, :, None, None] ** 2
    logw = np.broadcast_to(np.log(opt.weights), (n_rep, k)).copy()
    return logw, mu, cov


def sparse_score(opt: Optimum, n_obs: int, k: int, conc: float) -> float:
    r"""Score an EM optimum with k' components as the start of a sparse fit with `k` components.

    An approximate log marginal likelihood of k' filled components: the log-likelihood with
    the weights' part :math:`\sum_j n_j \log w_j` (n_j = N w_j) taken out, minus half of
    log N per mean and covariance parameter (BIC), plus the log prior probability of a
    partition of the data with counts n_j under the Dirichlet(`conc`) weights, integrated over
    the weights and the labels of the K components:

    .. math::

        \log \frac{K!}{(K - k')!} + \log\Gamma(K a) - \log\Gamma(N + K a)
        + \sum_{j \le k'} [\log\Gamma(n_j + a) - \log\Gamma(a)].

    The last term is what makes a sparse prior sparse: about log a per filled component.
    """
    filled, d = opt.means.shape
    counts = n_obs * opt.weights
    penalty = 0.5 * filled * (d + d * (d + 1) / 2) * np.log(n_obs)
    penalty += float(np.sum(counts * np.log(opt.weights)))
    labels = gammaln(k + 1) - gammaln(k - filled + 1)
    prior = gammaln(k * conc) - gammaln(n_obs + k * conc)
    prior += float(np.sum(gammaln(counts + conc) - gammaln(conc)))
    return float(opt.loglik - penalty + labels + prior)


def sparse_candidates(
    x: np.ndarray,
    k: int,
    conc: float,
    rng: np.random.Generator,
    *,
    n_starts: int = _N_STARTS,
    max_points: int = _MAX_POINTS,
) -> list[tuple[float, Optimum]]:
    """Return the EM optima that compete as starts of a sparse fit, best first, with scores.

    EM (:func:`em_optima`) for k' = 1, 2, ... up to `k` filled components on one subsample
    of at most `max_points` rows, each distinct optimum scored by :func:`sparse_score`; the
    search stops once two successive k' fall :data:`SPARSE_STOP_NATS` below the best. Kept:
    every optimum within :data:`COMPETING_NATS` of the best score (several per k' when EM finds
    distinct ones). When the data were subsampled, the kept optima are continued on all of `x`.

    Returns
    -------
    list of (float, Optimum)
        The best optimum of each k' (by score), then the other kept ones (by score); possibly
        empty (EM collapsed everywhere).
    """
    sub = x[rng.choice(x.shape[0], max_points, replace=False)] if x.shape[0] > max_points else x
    scored, best, worse = [], -np.inf, 0
    for filled in range(1, k + 1):
        optima = em_optima(sub, filled, rng, n_starts=n_starts if filled > 1 else 1)
        scores = [sparse_score(o, sub.shape[0], k, conc) for o in optima]
        scored += zip(scores, optima)
        top = max(scores, default=-np.inf)
        worse = worse + 1 if top < best - SPARSE_STOP_NATS else 0
        best = max(best, top)
        if worse == 2:
            break
    kept = sorted((p for p in scored if p[0] >= best - COMPETING_NATS), key=lambda p: -p[0])
    sizes = [opt.weights.size for _, opt in kept]  # the best of each k' first, then the others
    first = [i for i, size in enumerate(sizes) if size not in sizes[:i]]
    kept = [kept[i] for i in first] + [p for i, p in enumerate(kept) if i not in first]
    if sub is not x:
        cov = np.atleast_2d(np.cov(sub, rowvar=False))
        reg = 1e-6 * float(np.mean(np.diag(cov))) or 1e-6
        kept = [
            (s, fit_em(x, o.weights, o.means, o.covariances, reg, max_iter=50)) for s, o in kept
        ]
    return kept


def sparse_starts(candidates, k: int, n_rep: int, n_per_chain: int, n_obs: int, empty, rng):
    """Return per-replica (log weights, means, covariances) of a sparse fit (unsorted).

    Chain c (replicas ``c * n_per_chain`` up to the next chain) starts around candidate
    c modulo their number (:func:`multivariate_starts`: the means moved by twice their
    standard error, the covariances scaled by about 10 %), in its first k' components; the
    other k - k' components are empty: weight 1e-12 of the total (no point is drawn to them
    in the first sweep, after which the weights follow their full conditional), means and
    covariances from ``empty(shape, rng)``, which returns draws of shape ``shape + (d,)`` and
    ``shape + (d, d)`` from their prior.

    Parameters
    ----------
    candidates : list of Optimum
        Each with k' <= k components.
    k, n_rep, n_per_chain, n_obs : int
    empty : callable
    rng : numpy.random.Generator
    """
    d = candidates[0].means.shape[1]
    logw = np.empty((n_rep, k))
    mu, cov = empty((n_rep, k), rng)
    for chain in range(n_rep // n_per_chain):
        opt = candidates[chain % len(candidates)]
        filled, rows = opt.weights.size, slice(chain * n_per_chain, (chain + 1) * n_per_chain)
        w, m, c = multivariate_starts(opt, n_per_chain, n_obs, rng)
        logw[rows, :filled] = w + np.log1p(-1e-12)
        logw[rows, filled:] = np.log(1e-12 / max(k - filled, 1))
        mu[rows, :filled], cov[rows, :filled] = m, c
    return logw, mu, cov.reshape(n_rep, k, d, d)
