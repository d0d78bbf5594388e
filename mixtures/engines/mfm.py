r"""The telescoping sampler for mixtures of finite mixtures (Frühwirth-Schnatter et al. 2021).

Why this sampler: it is the blocked Gibbs sampler of a finite mixture (assignments, then
conjugate updates on the current K), plus one exact draw of K given the partition, so it
reuses every update our fixed-k Gibbs engine makes and has no tuning parameter; Jain-Neal
split-merge moves would need a proposal design and are Metropolis moves in the partition.

One iteration, for every chain at once (NumPy arrays of shape (chains, ...)):

1. assignments: :math:`P(z_i = k) \propto w_k N(y_i \mid \theta_k)`, k < K;
   the components are then renumbered so that the :math:`K_+` filled ones come first
   (by decreasing size);
2. the filled components' parameters given their data: the mean from its Normal full
   conditional, the sd by Metropolis-Hastings (an independence proposal from the likelihood's
   Gamma kernel in the precision, accepted with the prior ratio; a random walk on
   :math:`\log\sigma` for a single point), as in :mod:`mixtures.engines.gibbs`;
3. K given the partition (sizes :math:`n_1..n_{K_+}`), for :math:`K_+ \le K \le K_{max}`:

   .. math::

       p(K \mid \mathcal C) \propto p(K) \frac{K!}{(K - K_+)!}
       \frac{\Gamma(\gamma_K K)}{\Gamma(\gamma_K K + N)}
       \prod_{k=1}^{K_+} \frac{\Gamma(n_k + \gamma_K)}{\Gamma(\gamma_K)}

   (Frühwirth-Schnatter, Malsiner-Walli and Grün 2021, step 3(a));
4. every slot from :math:`K_+` on gets parameters from the prior (the empty components, and
   the slots beyond K of the model truncated at k_max, whose conditional is their prior);
5. weights: :math:`\text{Dirichlet}(\gamma_K + n_1, \dots, \gamma_K + n_{K_+}, \gamma_K,
   \dots, \gamma_K)` on the first K slots, zero beyond.

The multivariate model (inverse-Wishart covariances) shares steps 1, 3 and 5 and replaces 2
and 4 (:mod:`mixtures.model.mfm_mv`).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.special import gammaln

from mixtures.engines.base import EngineBase, RawDraws
from mixtures.model.validation import check_integer

__all__ = ["KStep", "MFMEngine", "run_telescope"]

_BUFFER = 256  # sweeps of prior draws made at once
_STORE_Z_MAX = 20_000_000  # assignments stored when chains x draws x n_obs is at most this


class KStep:
    """Step 3: K given the partition, for one spec and data size (constants computed once).

    Parameters
    ----------
    spec : MFMSpec
    n_obs : int
    """

    def __init__(self, spec, n_obs: int):
        self.spec = spec
        ks = np.arange(1, spec.k + 1, dtype=float)
        g = spec.gamma_k(ks)
        with np.errstate(divide="ignore"):
            base = np.log(np.asarray(spec.k_prior)) + gammaln(ks + 1)
        self.base = base + gammaln(g * ks) - gammaln(g * ks + n_obs)
        self.ks, self.g = ks, g

    def logpmf(self, counts: np.ndarray) -> np.ndarray:
        """Unnormalised log p(K | partition) for K = 1..k_max, one row per chain.

        Parameters
        ----------
        counts : numpy.ndarray of shape (chains, k_max)
            Component sizes (zeros for empty slots).

        Returns
        -------
        numpy.ndarray of shape (chains, k_max)
            ``-inf`` where K < K+.
        """
        ks, g = self.ks, self.g
        filled = counts > 0
        k_plus = filled.sum(axis=1)
        out = self.base[None, :] - gammaln(np.maximum(ks[None, :] - k_plus[:, None], 0) + 1)
        if self.spec.dynamic:  # sum over filled components of log Gamma(n_k + g_K) / Gamma(g_K)
            terms = gammaln(counts[:, None, :] + g[None, :, None]) - gammaln(g)[None, :, None]
            out = out + np.where(filled[:, None, :], terms, 0.0).sum(axis=2)
        # (static: that sum does not depend on K and cancels)
        return np.where(ks[None, :] >= k_plus[:, None], out, -np.inf)

    def draw(self, counts: np.ndarray, rng) -> np.ndarray:
        """Draw K for every chain (Gumbel-max over :meth:`logpmf`)."""
        logp = self.logpmf(counts)
        return np.argmax(logp + rng.gumbel(size=logp.shape), axis=1) + 1


def draw_assignments(logd: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Draw z from log-densities (chains, n, k); return z and the log-likelihood per chain."""
    top = logd.max(axis=-1, keepdims=True)
    p = np.exp(logd - top)
    cum = np.cumsum(p, axis=-1)
    u = rng.random(logd.shape[:-1] + (1,)) * cum[..., -1:]
    z = (cum < u).sum(axis=-1)
    loglik = (top[..., 0] + np.log(cum[..., -1])).sum(axis=-1)
    return np.minimum(z, logd.shape[-1] - 1), loglik


def sort_filled(z: np.ndarray, k_max: int, *params):
    """Renumber components by decreasing size (filled first); return z, counts, params."""
    chains = z.shape[0]
    flat = z + k_max * np.arange(chains)[:, None]
    counts = np.bincount(flat.ravel(), minlength=chains * k_max).reshape(chains, k_max)
    order = np.argsort(-counts, axis=1, kind="stable")
    inverse = np.argsort(order, axis=1)
    z = np.take_along_axis(inverse, z, axis=1)
    counts = np.take_along_axis(counts, order, axis=1)
    moved = [
        np.take_along_axis(p, order.reshape(order.shape + (1,) * (p.ndim - 2)), axis=1)
        for p in params
    ]
    return z, counts, moved


def draw_weights(counts: np.ndarray, k: np.ndarray, spec, rng) -> np.ndarray:
    """Dirichlet(gamma_K + n) on the first K slots of each chain, zero beyond."""
    k_max = counts.shape[1]
    used = np.arange(k_max)[None, :] < k[:, None]
    shape = spec.gamma_k(k)[:, None] + counts
    g = np.where(used, rng.standard_gamma(np.where(used, shape, 1.0)), 0.0)
    total = g.sum(axis=1, keepdims=True)
    bad = total[:, 0] <= 0  # all gammas underflowed (tiny shapes): put the mass on the filled
    if bad.any():
        g[bad] = np.where(used[bad], counts[bad] + 1e-300, 0.0)
        total = g.sum(axis=1, keepdims=True)
    return g / total


class _NormalParts:
    """Steps 2 and 4 for univariate Normal components (means Normal, any sd prior)."""

    def __init__(self, spec, y):
        self.y = y
        mp = spec.priors["means"].params
        self.m0, self.s0 = float(mp["mu"]), float(mp["sigma"])
        self.sd_prior = spec.priors["sigma"]
        self.floor = float(spec.sigma_floor)
        self.frozen = self.sd_prior.scipy()
        self.low = float(self.frozen.cdf(self.floor)) if self.floor > 0 else 0.0
        self._buffer, self._used = None, 0

    def sd_logprior(self, x):
        """Return the sd prior's log-density, -inf below the floor."""
        lp = np.asarray(self.sd_prior.logpdf(x), dtype=float)
        return np.where(x >= self.floor, lp, -np.inf)

    def prior_draws(self, shape, rng):
        """Draw means and sds from their priors (the sd truncated at the floor)."""
        mu = self.m0 + self.s0 * rng.standard_normal(shape)
        if self.floor > 0:
            u = self.low + (1.0 - self.low) * rng.random(shape)
            sd = np.asarray(self.frozen.ppf(u), dtype=float)
        else:
            sd = np.asarray(self.frozen.rvs(size=shape, random_state=rng), dtype=float)
        return mu, np.maximum(sd, 1e-300)

    def init(self, chains, k_max, rng):
        """Start: means at random data points, sds near the data's."""
        mu = rng.choice(self.y, size=(chains, k_max))
        sd = np.full((chains, k_max), float(np.std(self.y)) or 1.0)
        sd = np.maximum(sd * np.exp(0.2 * rng.standard_normal(sd.shape)), 1.5 * self.floor)
        bad = ~np.isfinite(self.sd_logprior(sd))
        if bad.any():
            sd = np.where(bad, self.prior_draws(sd.shape, rng)[1], sd)
        return {"means": mu, "sigma": sd}

    def logdens(self, params, kcap):
        """Return log N(y_i | mu_k, sd_k) of the first `kcap` slots, shape (C, N, kcap)."""
        mu, sd = params["means"][:, :kcap], params["sigma"][:, :kcap]
        r = (self.y[None, :, None] - mu[:, None, :]) / sd[:, None, :]
        return -0.5 * r * r - np.log(sd)[:, None, :] - 0.5 * np.log(2 * np.pi)

    def update_filled(self, params, z, counts, rng):
        """Means then sds of every slot, given its data (empty slots are redrawn later)."""
        y = self.y
        chains, k_max = counts.shape
        flat = (z + k_max * np.arange(chains)[:, None]).ravel()
        yy = np.broadcast_to(y, z.shape).ravel()
        s1 = np.bincount(flat, weights=yy, minlength=chains * k_max).reshape(chains, k_max)
        mu, sd = params["means"], params["sigma"]
        prec = 1.0 / self.s0**2 + counts / sd**2
        mean = (self.m0 / self.s0**2 + s1 / sd**2) / prec
        mu = mean + rng.standard_normal(mu.shape) / np.sqrt(prec)
        resid = (yy - np.take_along_axis(mu, z, axis=1).ravel()) ** 2
        ss = np.bincount(flat, weights=resid, minlength=chains * k_max).reshape(chains, k_max)
        sd, accepted = self._sd_step(sd, counts, ss, rng)
        params["means"], params["sigma"] = mu, sd
        return accepted

    def _sd_step(self, sd, n, ss, rng):
        """Metropolis-Hastings for each sd given its component's n points and sum of squares."""
        many = n >= 2
        shape = np.where(many, 0.5 * (n - 1), 1.0)
        tau = rng.standard_gamma(shape) / np.maximum(0.5 * ss, 1e-300)
        indep = 1.0 / np.sqrt(np.maximum(tau, 1e-300))
        walk = sd * np.exp(0.7 * rng.standard_normal(sd.shape))
        prop = np.where(many, indep, walk)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_a = self.sd_logprior(prop) - self.sd_logprior(sd)
            # the random walk on log sd: likelihood ratio and the Jacobian (sd) included
            lik = lambda s: -n * np.log(s) - ss / (2 * s * s) + np.log(s)  # noqa: E731
            log_a = np.where(many, log_a, log_a + lik(prop) - lik(sd))
        ok = (np.log(rng.random(sd.shape)) < log_a) & (n > 0)
        return np.where(ok, prop, sd), ok

    def redraw_empty(self, params, k_plus, rng):
        """Draw every slot from K+ on from the prior."""
        chains, k_max = params["means"].shape
        empty = np.arange(k_max)[None, :] >= k_plus[:, None]
        # SciPy's rvs costs ~0.5 ms a call: draw the prior for _BUFFER sweeps at once
        if self._buffer is None or self._used == _BUFFER:
            self._buffer, self._used = self.prior_draws((_BUFFER, chains, k_max), rng), 0
        mu, sd = self._buffer[0][self._used], self._buffer[1][self._used]
        self._used += 1
        params["means"] = np.where(empty, mu, params["means"])
        params["sigma"] = np.where(empty, sd, params["sigma"])


def stores_z(store_assignments, chains: int, draws: int, n_obs: int) -> bool:
    """Whether the assignments are kept: always, never, or ("auto") when they are small."""
    if store_assignments == "auto":
        return chains * draws * n_obs <= _STORE_Z_MAX
    return bool(store_assignments)


def run_telescope(parts, spec, n_obs, *, draws, tune, chains, rng, store_z, thin=1):
    """Run the telescoping sampler; return the stored arrays (see the module docstring)."""
    k_max = spec.k
    k_step = KStep(spec, n_obs)
    params = parts.init(chains, k_max, rng)
    k = rng.integers(1, min(k_max, 10) + 1, size=chains)
    w = draw_weights(np.zeros((chains, k_max)), k, spec, rng)
    out = {
        "K": np.empty((chains, draws), np.int64),
        "K_plus": np.empty((chains, draws), np.int64),
        "weights": np.empty((chains, draws, k_max)),
        **{name: np.empty((chains, draws, *p.shape[1:])) for name, p in params.items()},
    }
    if store_z:
        out["assignment"] = np.empty((chains, draws, n_obs), np.int64)
    loglik = np.empty((chains, draws))
    accept = np.zeros(chains)
    tried = np.zeros(chains)
    n_sweeps = (tune + draws) * thin
    pending = -1  # the stored draw whose log-likelihood the next sweep computes
    for sweep in range(n_sweeps + 1):
        kcap = int(k.max())
        with np.errstate(divide="ignore"):
            logd = parts.logdens(params, kcap) + np.log(w[:, None, :kcap])
        z, ll = draw_assignments(logd, rng)
        if pending >= 0:  # the log-likelihood of the state stored after the previous sweep
            loglik[:, pending] = ll
            pending = -1
        if sweep == n_sweeps:
            break
        z, counts, moved = sort_filled(z, k_max, *params.values())
        params = dict(zip(params, moved))
        ok = parts.update_filled(params, z, counts, rng)
        k_plus = (counts > 0).sum(axis=1)
        k = k_step.draw(counts, rng)
        parts.redraw_empty(params, k_plus, rng)
        w = draw_weights(counts, k, spec, rng)
        after = sweep + 1 - tune * thin
        if after > 0 and after % thin == 0:
            d = pending = after // thin - 1
            out["K"][:, d], out["K_plus"][:, d], out["weights"][:, d] = k, k_plus, w
            for name, p in params.items():
                out[name][:, d] = p
            if store_z:
                out["assignment"][:, d] = z
            filled = counts > 0
            accept += (ok & filled).sum(axis=(1, *range(2, ok.ndim)))
            tried += filled.sum(axis=1)
    return out, loglik, accept / np.maximum(tried, 1)


class MFMEngine(EngineBase):
    """The telescoping sampler for :func:`mixtures.mfm_mixture` models (see the module doc)."""

    name = "mfm"

    @staticmethod
    def supports(model, spec, *, latent_sampler="gibbs", auto=False) -> tuple[bool, str]:
        """Only MFM specs: the telescoping sampler."""
        from mixtures.model.mfm_spec import MFMSpec

        if isinstance(spec, MFMSpec):
            return True, "mixture of finite mixtures: the telescoping sampler"
        return False, "not a mixture of finite mixtures (mfm_mixture)"

    def sample(
        self, *, draws, tune, chains, random_seed, progressbar, store_assignments="auto", thin=1
    ):
        """Run the sampler; return its draws (posterior, sample stats and attrs).

        ``thin``: sweeps per stored draw (and per tuning step). K mixes slowly on some data
        (galaxies, static MFM: about one effective draw of K per 200 sweeps), and a sweep is
        cheap, so ``mixtures.sample(model, thin=10)`` buys effective draws without memory.
        """
        check_integer(thin, "thin")
        t0 = time.perf_counter()
        spec = self.spec
        y = np.ascontiguousarray(self.model["y_data"].get_value(), dtype=np.float64)
        rng = np.random.default_rng(random_seed)
        if spec.family == "mfm_mvnormal":
            from mixtures.model.mfm_mv import MvNormalParts

            parts = MvNormalParts(spec, y)
        else:
            parts = _NormalParts(spec, y)
        store_z = stores_z(store_assignments, chains, draws, y.shape[0])
        out, loglik, accept = run_telescope(
            parts,
            spec,
            y.shape[0],
            draws=draws,
            tune=tune,
            chains=chains,
            rng=rng,
            store_z=store_z,
            thin=int(thin),
        )
        stats = {"loglik": loglik}
        attrs = {
            "mixtures_sampling_seconds": time.perf_counter() - t0,
            "mixtures_sigma_accept": accept,
            "mixtures_k_max": spec.k,
            "mixtures_thin": int(thin),
        }
        steps = "telescoping sampler [assignment, component parameters, K | partition, weights]"
        return RawDraws(posterior=out, stats=stats, attrs=attrs, steps=steps)
