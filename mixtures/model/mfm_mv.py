r"""Multivariate mixtures of finite mixtures: Normal components with inverse-Wishart covariances.

The component prior is :func:`mixtures.mv_mixture`'s with ``covariance_prior="wishart"``
(:func:`mixtures.model.multivariate.default_mv_priors`): means[:, d] ~ N(mean_d, (2 s_d)^2)
independently, covariances ~ InverseWishart(nu = d + 2, psi = diag(s_d^2) / 4). Given its
data, a component's mean is Normal given its covariance and the covariance inverse-Wishart
given its mean, so the telescoping sampler's step 2 is two exact draws
(:class:`MvNormalParts`); the rest is :mod:`mixtures.engines.mfm`'s.
"""

from __future__ import annotations

import numpy as np
import pymc as pm

from mixtures._docs import fill_doc
from mixtures.model.mfm_spec import MFMSpec, mfm_spec, mfm_weights
from mixtures.model.multivariate import resolve_mv_priors, wishart_chol
from mixtures.model.spec import attach

__all__ = ["MvNormalParts", "draw_inverse_wishart", "mfm_mv_mixture"]


@fill_doc
def mfm_mv_mixture(
    X, k_prior="bnb", *, gamma=1.0, dynamic=False, k_max=None, priors=None
) -> pm.Model:
    """Build the multivariate MFM (called by :func:`mixtures.mfm_mixture` for 2-D data).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features)
        Checked observations.
    %(mfm_k)s
    priors : dict, optional
        Overrides of ``means`` (``mu``, ``sigma``: per feature) and ``wishart`` (``nu``,
        ``psi``), as in :func:`mixtures.mv_mixture` with ``covariance_prior="wishart"``.

    Returns
    -------
    pymc.Model
    """
    resolved = resolve_mv_priors(X, priors, ["means", "wishart"])
    spec = mfm_spec(
        "mfm_mvnormal",
        resolved,
        k_prior,
        k_max,
        gamma,
        dynamic,
        n_features=int(X.shape[1]),
        covariance="full",
        built_on={
            "n_obs": int(X.shape[0]),
            "mean": np.mean(X, axis=0).tolist(),
            "sd": np.std(X, axis=0).tolist(),
        },
    )
    return _build(X, spec)


def _build(X: np.ndarray, spec: MFMSpec) -> pm.Model:
    k, d = spec.k, X.shape[1]
    coords = {
        "component": np.arange(k),
        "feature": np.arange(d),
        "feature_bis": np.arange(d),
        "obs_id": np.arange(X.shape[0]),
        "tril": np.arange(d * (d - 1) // 2),
    }
    mp = spec.priors["means"].params
    with pm.Model(coords=coords) as model:
        x_data = pm.Data("y_data", X, dims=("obs_id", "feature"))
        weights = mfm_weights(spec)
        means = pm.Normal(
            "means",
            mu=np.broadcast_to(mp["mu"], (k, d)),
            sigma=np.broadcast_to(mp["sigma"], (k, d)),
            dims=("component", "feature"),
        )
        chol = wishart_chol(spec.priors["wishart"], k, d)
        comps = [pm.MvNormal.dist(mu=means[j], chol=chol[j]) for j in range(k)]
        if k == 1:
            pm.MvNormal("y", mu=means[0], chol=chol[0], observed=x_data, dims=("obs_id", "feature"))
        else:
            pm.Mixture(
                "y", w=weights, comp_dists=comps, observed=x_data, dims=("obs_id", "feature")
            )
    return attach(model, spec)


def draw_inverse_wishart(nu: np.ndarray, psi: np.ndarray, rng) -> np.ndarray:
    """Cholesky factors of inverse-Wishart(nu, psi) draws, batched (Bartlett decomposition).

    Parameters
    ----------
    nu : numpy.ndarray of shape batch
    psi : numpy.ndarray of shape batch + (d, d)
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of shape batch + (d, d)
        Lower-triangular L with L L^T ~ IW(nu, psi).
    """
    d = psi.shape[-1]
    low = np.linalg.cholesky(np.linalg.inv(psi))
    a = np.zeros(psi.shape)
    idx = np.arange(d)
    df = np.asarray(nu)[..., None] - idx
    a[..., idx, idx] = np.sqrt(2.0 * rng.standard_gamma(df / 2.0))
    rows, cols = np.tril_indices(d, -1)
    a[..., rows, cols] = rng.standard_normal(psi.shape[:-2] + (rows.size,))
    prec_chol = low @ a  # precision = prec_chol prec_chol^T ~ Wishart(nu, psi^-1)
    # covariance = prec_chol^-T prec_chol^-1
    inv = np.linalg.inv(prec_chol)  # lower triangular
    cov = np.swapaxes(inv, -1, -2) @ inv
    return np.linalg.cholesky((cov + np.swapaxes(cov, -1, -2)) / 2)


class MvNormalParts:
    """Steps 2 and 4 of the telescoping sampler for Normal components, inverse-Wishart prior."""

    def __init__(self, spec, x):
        self.x = x
        mp, wp = spec.priors["means"].params, spec.priors["wishart"].params
        self.m0, self.s0 = np.asarray(mp["mu"]), np.asarray(mp["sigma"])
        self.nu, self.psi = float(wp["nu"]), np.asarray(wp["psi"])

    def _with_sigma(self, means, chol):
        return {"means": means, "chol_cov": chol, "sigma": np.sqrt((chol**2).sum(axis=-1))}

    def init(self, chains, k_max, rng):
        """Start: means at random data points, covariances diag(data variances)."""
        n, d = self.x.shape
        means = self.x[rng.integers(n, size=(chains, k_max))]
        scale = np.std(self.x, axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        chol = np.broadcast_to(np.diag(scale), (chains, k_max, d, d)).copy()
        return self._with_sigma(means, chol)

    def logdens(self, params, kcap):
        """Return log N(x_i | mu_k, Sigma_k) of the first `kcap` slots, shape (C, N, kcap)."""
        mu, chol = params["means"][:, :kcap], params["chol_cov"][:, :kcap]
        d = mu.shape[-1]
        diff = self.x[None, :, None, :] - mu[:, None, :, :]  # (C, N, k, d)
        r = np.einsum("ckab,cnkb->cnka", np.linalg.inv(chol), diff)
        logdet = np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (C, k)
        return -0.5 * (r * r).sum(axis=-1) - logdet[:, None, :] - 0.5 * d * np.log(2 * np.pi)

    def update_filled(self, params, z, counts, rng):
        """Means given covariances, then covariances given means (exact draws)."""
        x = self.x
        chains, k_max = counts.shape
        d = x.shape[1]
        onehot = (z[..., None] == np.arange(k_max)).astype(float)  # (C, N, k)
        s1 = np.einsum("cnk,na->cka", onehot, x)
        s2 = np.einsum("cnk,na,nb->ckab", onehot, x, x)
        chol = params["chol_cov"]
        cov_inv = np.linalg.inv(chol @ np.swapaxes(chol, -1, -2))
        post_prec = np.diag(1.0 / self.s0**2) + counts[..., None, None] * cov_inv
        post_cov = np.linalg.inv(post_prec)
        rhs = self.m0 / self.s0**2 + np.einsum("ckab,ckb->cka", cov_inv, s1)
        mean = np.einsum("ckab,ckb->cka", post_cov, rhs)
        lc = np.linalg.cholesky((post_cov + np.swapaxes(post_cov, -1, -2)) / 2)
        mu = mean + np.einsum("ckab,ckb->cka", lc, rng.standard_normal((chains, k_max, d)))
        n = counts[..., None, None]
        scatter = (
            s2
            - s1[..., :, None] * mu[..., None, :]
            - mu[..., :, None] * s1[..., None, :]
            + n * mu[..., :, None] * mu[..., None, :]
        )
        chol = draw_inverse_wishart(self.nu + counts, self.psi + scatter, rng)
        params.update(self._with_sigma(mu, chol))
        return np.ones(counts.shape, dtype=bool)

    def redraw_empty(self, params, k_plus, rng):
        """Draw every slot from K+ on from the prior."""
        chains, k_max, d = params["means"].shape
        empty = np.arange(k_max)[None, :] >= k_plus[:, None]
        mu = self.m0 + self.s0 * rng.standard_normal((chains, k_max, d))
        chol = draw_inverse_wishart(
            np.full((chains, k_max), self.nu), np.broadcast_to(self.psi, (chains, k_max, d, d)), rng
        )
        means = np.where(empty[..., None], mu, params["means"])
        chol = np.where(empty[..., None, None], chol, params["chol_cov"])
        params.update(self._with_sigma(means, chol))
