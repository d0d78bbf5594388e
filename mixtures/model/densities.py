r"""The component log-densities, in NumPy, broadcast over stacks of parameters.

The family objects of :mod:`mixtures.model.components` (Normal, Student-t, multivariate
Normal) wrap these into the weighted log-densities that the log-likelihood, assignments, EM,
bridge sampling and the plots use; the PyMC assignment step's fast path calls
:func:`normal_logpdf` directly. The Gibbs engine's Numba kernels (:mod:`mixtures._kernels`)
evaluate the same densities in compiled loops and are tested against them. SciPy's
``norm.logpdf``, ``t.logpdf`` and ``multivariate_normal.logpdf`` compute the same values but do
not broadcast over stacks of covariances (draws x components), which every caller here needs.

.. math::

    \log N(y \mid \mu, \sigma) = -\tfrac12 \big(\tfrac{y - \mu}{\sigma}\big)^2 - \log\sigma
        - \tfrac12 \log 2\pi, \qquad
    \log N(x \mid \mu, L L^\top) = -\tfrac12 \lVert L^{-1}(x - \mu) \rVert^2
        - \textstyle\sum_i \log L_{ii} - \tfrac d2 \log 2\pi
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

__all__ = [
    "component_logpdf",
    "mvnormal_logpdf",
    "mvt_logpdf",
    "normal_logpdf",
    "student_t_logpdf",
]

_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def normal_logpdf(y, mu, sd):
    """Return log N(y | mu, sd), broadcast over the arguments.

    Parameters
    ----------
    y, mu, sd : array-like
        Broadcastable; ``sd`` > 0.

    Returns
    -------
    numpy.ndarray
    """
    z = (np.asarray(y) - mu) / sd
    return -0.5 * z * z - np.log(sd) - _HALF_LOG_2PI


def student_t_logpdf(y, mu, sd, nu):
    r"""Return log t_nu(y | mu, sd), the Student-t log-density, broadcast over the arguments.

    .. math::

        \log t_\nu(y \mid \mu, \sigma) = \log\Gamma\big(\tfrac{\nu + 1}2\big)
            - \log\Gamma\big(\tfrac\nu2\big) - \tfrac12 \log(\nu\pi) - \log\sigma
            - \tfrac{\nu + 1}2 \log\Big(1 + \tfrac1\nu \big(\tfrac{y - \mu}\sigma\big)^2\Big)

    Parameters
    ----------
    y, mu, sd, nu : array-like
        Broadcastable; ``sd`` > 0, ``nu`` > 0.

    Returns
    -------
    numpy.ndarray
    """
    nu = np.asarray(nu, dtype=float)
    z = (np.asarray(y) - mu) / sd
    const = gammaln(0.5 * (nu + 1.0)) - gammaln(0.5 * nu) - 0.5 * np.log(nu * np.pi)
    return const - np.log(sd) - 0.5 * (nu + 1.0) * np.log1p(z * z / nu)


def component_logpdf(y, mu, sd, nu=None):
    """Return a univariate component's log-density: Normal if `nu` is None, else Student-t.

    Callers pass a t fit's ``nu`` (see :func:`mixtures.model.components.posterior_nu`), None for
    Normal components; the family objects (:data:`mixtures.model.components.COMPONENT_FAMILIES`) are
    the dispatch the analysis code uses.

    Parameters
    ----------
    y, mu, sd : array-like
        Broadcastable; ``sd`` > 0.
    nu : array-like or None
        Degrees of freedom (broadcastable with the others), or None.

    Returns
    -------
    numpy.ndarray
    """
    if nu is None:
        return normal_logpdf(y, mu, sd)
    return student_t_logpdf(y, mu, sd, nu)


def mvnormal_logpdf(x, mean, chol):
    """Return log N(x_n | mean, chol chol^T) for every observation and every stacked parameter.

    A row with missing cells (NaN) gets the density of its observed cells, the marginal
    N(x_o | mean_o, Sigma_oo) (rows grouped by missingness pattern); a row with no observed
    cell gets 0.

    Parameters
    ----------
    x : array-like of shape (n_obs, d)
    mean : array-like of shape (..., d)
    chol : array-like of shape (..., d, d)
        Lower Cholesky factors of the covariances (same leading shape as `mean`).

    Returns
    -------
    numpy.ndarray of shape (..., n_obs)
    """
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    chol = np.asarray(chol, dtype=float)
    observed = ~np.isnan(x)
    if not observed.all():
        return _observed_logpdf(x, observed, mean, chol)
    d = x.shape[-1]
    inv = np.linalg.inv(chol)  # triangular, small d
    diff = x - mean[..., None, :]  # (..., n, d)
    z = np.einsum("...de,...ne->...nd", inv, diff)
    logdet = np.log(np.abs(np.diagonal(chol, axis1=-2, axis2=-1))).sum(-1)
    return -0.5 * (z * z).sum(-1) - logdet[..., None] - d * _HALF_LOG_2PI


def mvt_logpdf(x, mean, chol, nu):
    r"""Return log t_nu(x_n | mean, chol chol^T), the multivariate Student-t, for every stack.

    .. math::

        \log t_\nu(x \mid \mu, L L^\top) = \log\Gamma\big(\tfrac{\nu + d}2\big)
            - \log\Gamma\big(\tfrac\nu2\big) - \tfrac d2 \log(\nu\pi)
            - \textstyle\sum_i \log L_{ii}
            - \tfrac{\nu + d}2 \log\big(1 + \tfrac1\nu \lVert L^{-1}(x - \mu) \rVert^2\big)

    ``chol chol^T`` is the scale matrix (the covariance is nu / (nu - 2) times it for nu > 2).
    A row with missing cells (NaN) gets the density of its observed cells, the multivariate t
    of the same nu with the observed sub-vector and sub-matrix; a row with none gets 0.

    Parameters
    ----------
    x : array-like of shape (n_obs, d)
    mean : array-like of shape (..., d)
    chol : array-like of shape (..., d, d)
        Lower Cholesky factors of the scale matrices (same leading shape as `mean`).
    nu : array-like of shape (...)
        Degrees of freedom (> 0), broadcastable with the leading shape of `mean`.

    Returns
    -------
    numpy.ndarray of shape (..., n_obs)
    """
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    chol = np.asarray(chol, dtype=float)
    nu = np.broadcast_to(np.asarray(nu, dtype=float), mean.shape[:-1])
    observed = ~np.isnan(x)
    if not observed.all():
        return _observed_logpdf(x, observed, mean, chol, nu)
    d = x.shape[-1]
    inv = np.linalg.inv(chol)
    diff = x - mean[..., None, :]
    z = np.einsum("...de,...ne->...nd", inv, diff)
    maha = (z * z).sum(-1)
    logdet = np.log(np.abs(np.diagonal(chol, axis1=-2, axis2=-1))).sum(-1)
    const = gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * np.log(nu * np.pi) - logdet
    return const[..., None] - 0.5 * (nu[..., None] + d) * np.log1p(maha / nu[..., None])


def _observed_logpdf(x, observed, mean, chol, nu=None):
    """:func:`mvnormal_logpdf` (or, with `nu`, :func:`mvt_logpdf`) of rows with missing cells.

    Per missingness pattern, the observed cells' marginal (for the t: the same nu).
    """
    out = np.zeros(mean.shape[:-1] + (x.shape[0],))
    patterns, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    cov = chol @ np.swapaxes(chol, -1, -2)
    for p, cols in enumerate(patterns):
        rows = np.flatnonzero(inverse == p)
        if not cols.any():
            continue
        sub = np.linalg.cholesky(cov[..., cols, :][..., :, cols])
        sub_x, sub_mean = x[np.ix_(rows, cols)], mean[..., cols]
        if nu is None:
            out[..., rows] = mvnormal_logpdf(sub_x, sub_mean, sub)
        else:
            out[..., rows] = mvt_logpdf(sub_x, sub_mean, sub, nu)
    return out
