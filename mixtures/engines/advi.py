"""Variational inference (PyMC's ADVI), finished into the same InferenceData as the samplers."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm

from mixtures.engines.base import RawDraws
from mixtures.engines.finish import finish
from mixtures.engines.handle import check_model
from mixtures.engines.pymc import is_latent
from mixtures.engines.seeds import one_seed
from mixtures.model.validation import check_integer
from mixtures.progress import default_progressbar

__all__ = ["fit_advi"]


def fit_advi(
    model: pm.Model,
    *,
    n: int = 30_000,
    draws: int = 1000,
    method: str = "advi",
    random_seed=None,
    progressbar: bool | None = None,
    log_likelihood: bool | str = "auto",
    **kwargs,
) -> az.InferenceData:
    """Fit a marginalised mixture by variational inference (PyMC's ADVI) and draw from it.

    The counterpart of BayesPy's variational Bayes: fast, approximate (a Gaussian in the
    unconstrained space, so posterior sds are typically too small). The result has the same
    groups as :func:`sample`, with one chain; the loss (negative ELBO) history is in
    ``posterior.attrs["mixtures_vi_loss"]``.

    Parameters
    ----------
    model : pymc.Model
        A marginalised model from a `mixtures` factory (discrete assignments cannot be fitted
        by ADVI).
    n : int, default 30000
        Optimisation steps.
    draws : int, default 1000
        Draws from the fitted approximation.
    method : {"advi", "fullrank_advi"}, default "advi"
        Mean-field or full-rank Gaussian approximation.
    random_seed : int or numpy.random.Generator, optional
        Makes the fit and the draws reproducible.
    progressbar : bool, optional
        Default as in :func:`sample`.
    log_likelihood : bool or "auto", default "auto"
        As in :func:`sample`.
    **kwargs
        Passed to :func:`pymc.fit` (e.g. ``obj_optimizer``, ``callbacks``).

    Returns
    -------
    arviz.InferenceData
    """
    _check_advi_args(model, n, draws, method)
    if progressbar is None:
        progressbar = default_progressbar()
    seed = one_seed(random_seed)
    with model, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        approx = pm.fit(n=n, method=method, random_seed=seed, progressbar=progressbar, **kwargs)
        idata = approx.sample(draws, random_seed=seed, return_inferencedata=True)
    idata = finish(
        RawDraws(trace=idata, steps=f"pm.fit(method={method!r}, n={n})"),
        model,
        getattr(model, "mixture_spec", None),
        sampler=method,
        reason="requested",
        seconds=0.0,
        log_likelihood=log_likelihood,
    )
    idata.posterior.attrs["mixtures_vi_loss"] = np.asarray(approx.hist, dtype=float)
    return idata


def _check_advi_args(model, n, draws, method) -> None:
    """Refuse a latent or foreign model, an unknown method, or non-positive `n` or `draws`."""
    check_model(model)
    if is_latent(model):
        raise ValueError(
            "`model` should be marginalised for ADVI (its discrete `assignment` has no "
            "gradient), but got a latent model; build it with marginalized=True"
        )
    if method not in ("advi", "fullrank_advi"):
        raise ValueError(f"`method` should be 'advi' or 'fullrank_advi', but got {method!r}")
    for name, val in (("n", n), ("draws", draws)):
        check_integer(val, name)
