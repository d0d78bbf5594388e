"""Sampling the mixture models and their posterior predictive distribution (the public API)."""

from __future__ import annotations

import logging

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from mixtures.diagnostics import ConvergenceWarning, warn_convergence
from mixtures.engines import CompiledMixture, check_model, is_latent
from mixtures.engines.advi import fit_advi
from mixtures.progress import default_progressbar

__all__ = [
    "ConvergenceWarning",
    "fit_advi",
    "is_latent",
    "sample",
    "sample_posterior_predictive",
    "warn_convergence",
]


def sample(
    model: pm.Model,
    *,
    draws: int | None = None,
    tune: int | None = None,
    chains: int = 4,
    random_seed=None,
    progressbar: bool | None = None,
    sampler: str = "auto",
    latent_sampler: str = "gibbs",
    log_likelihood: bool | str = "auto",
    tempering="auto",
    warn: bool = True,
    **kwargs,
) -> az.InferenceData:
    """Sample the posterior of a mixture model built by a `mixtures` factory.

    The engine is chosen by `sampler` (see :mod:`mixtures.engines`); ``"auto"`` follows
    :func:`~mixtures.choose_sampler`: data-augmentation Gibbs for the univariate factories with
    conjugate priors (marginalised ones too: only the continuous parameters are kept), PyMC
    otherwise, nutpie for large marginalised models when it is installed. Compiled functions
    are kept per model and engine, so sampling the same model again (after
    ``pm.set_data``, say) does not recompile; :func:`~mixtures.compile_model` gives the same
    as an explicit handle. The posterior's attrs record the engine (``mixtures_sampler``), why
    (``mixtures_sampler_reason``) and the steps (``mixtures_steps``).

    Latent variants get :class:`~mixtures.AssignmentGibbs` for ``assignment`` and, by default
    (``latent_sampler="gibbs"``), :class:`~mixtures.ConjugateMixtureGibbs` for ``weights``,
    ``means`` (Normal prior) and ``sigma``; whatever is left goes to NUTS. With
    ``latent_sampler="nuts"`` all the continuous parameters go to NUTS. Pass ``step=`` to
    choose every step yourself (PyMC's loop), e.g.
    ``step=pm.CategoricalGibbsMetropolis([model["assignment"]])`` for PyMC's own.

    The ``log_likelihood`` group holds the pointwise log-density of each observation with the
    assignments summed out, log sum_j w_j N(y_i | mu_j, sigma_j), for both variants, so LOO /
    WAIC compare them on the same footing.

    Parameters
    ----------
    model : pymc.Model
        A model from :func:`known_params_mixture`, :func:`shared_sd_mixture` or
        :func:`full_mixture`.
    draws : int or None, default None
        Draws per chain. ``draws=N`` runs exactly N. None (converged by default): the Gibbs
        engine runs 500, then, while r_hat > 1.01 or the bulk or tail ESS < 400 on any
        scalar of ``weights``, ``means``, ``sigma``, continues the same chains (state and
        adapted ladder kept) for more draws, up to 8,000 per chain or 60 s of sampling
        (:mod:`mixtures.engines.extend`); the draws equal those of ``draws=`` the total with
        the same seed. ``posterior.attrs`` records ``mixtures_draws_requested``,
        ``mixtures_draws_run`` and ``mixtures_draws_reason``. The other engines run 1,000.
    tune : int or None, default None
        Tuning (burn-in) iterations. None: for the Gibbs engine 200 when the chains start from
        EM fits untempered (see `tempering`), else 1,000 (the ladder's adaptation needs them);
        1,000 for the other engines. Recorded in ``posterior.attrs["mixtures_tune"]``.
    chains : int
        As in :func:`pymc.sample`.
    random_seed : int or numpy.random.Generator, optional
        Makes the run reproducible, with every engine.
    progressbar : bool, optional
        Show a progress bar. Default: on, unless the environment variable
        ``MIXTURES_PROGRESSBAR`` is ``0`` (the test suite sets it).
    sampler : {"auto", "gibbs", "pymc", "nutpie", "numpyro"}, default "auto"
        The engine.
    latent_sampler : {"gibbs", "nuts"}, default "gibbs"
        How the continuous parameters of a latent model are updated by PyMC.
    log_likelihood : bool or "auto", default "auto"
        Store the pointwise log-likelihood (for LOO / WAIC). ``"auto"`` stores it unless it
        would hold more than 50 million values (400 MB), e.g. N = 1e5 with 4 x 1000 draws;
        the reason is then recorded in ``posterior.attrs["mixtures_log_likelihood"]``.
    tempering : "auto", False, int or array-like, default "auto"
        Gibbs engine only: replica exchange over powers of the likelihood, so chains cross
        between modes. An int sets the number of temperatures on the default ladder
        (:func:`mixtures.engines.tempering.default_ladder`), an array the inverse
        temperatures (increasing, ending at 1; start at 0 for
        :func:`mixtures.log_evidence`). ``"auto"`` uses 32 temperatures when N k <= 1,000,
        16 when N k <= 6,000, none above 60,000, and in between only when EM finds two
        distinct local optima within 10 nats of each other (:mod:`mixtures.engines.starts`).
        Untempered chains with N k > 6,000 start from the best of several EM fits on a
        subsample, each chain perturbed (pass ``init="random"`` for random starts,
        ``init="em"`` to force EM starts).
    warn : bool, default True
        Issue a :class:`ConvergenceWarning` when the diagnostics fall short.
    **kwargs
        Passed to the engine: the Gibbs engine's ``init`` (``"auto"``, ``"em"``,
        ``"random"``; see `tempering`) and ``budget`` (``(draws per chain, seconds)`` of an
        automatic run, default ``(8000, 60.0)``); :func:`pymc.sample` (``cores``,
        ``target_accept``, ``step``, ...) or nutpie's ``sample`` (``backend="numba" | "jax"``,
        ...).

    Returns
    -------
    arviz.InferenceData
        With groups ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data`` and
        (see `log_likelihood`) ``log_likelihood``.

    Warns
    -----
    ConvergenceWarning
        If any of ``weights``, ``means``, ``sigma`` has r_hat > 1.01 or bulk ESS < 400, or if
        there were divergences; with ``draws=None`` on the Gibbs engine, only when the budget
        ran out before the diagnostics passed.

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.full_mixture(y, 3, marginalized=True)
    >>> idata = mixtures.sample(model, random_seed=1)  # doctest: +SKIP
    """
    check_model(model)
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(
            f"`log_likelihood` should be True, False or 'auto', but got {log_likelihood!r}"
        )
    if kwargs.get("idata_kwargs", {}).get("log_likelihood"):
        raise ValueError("`idata_kwargs['log_likelihood']` is computed by mixtures.sample itself")
    if "step" in kwargs and sampler not in ("auto", "pymc"):
        raise ValueError(f"`step=` needs sampler='pymc', but got sampler={sampler!r}")
    if "step" in kwargs:
        sampler = "pymc"
    handle = CompiledMixture(model, sampler, latent_sampler=latent_sampler)
    if handle.sampler == "gibbs":
        kwargs["tempering"] = tempering
    elif tempering not in ("auto", None, False):
        raise ValueError(
            f"`tempering` is an option of the Gibbs engine, but the engine is {handle.sampler!r}"
        )
    return handle.sample(
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=random_seed,
        progressbar=progressbar,
        log_likelihood=log_likelihood,
        warn=warn,
        **kwargs,
    )


def sample_posterior_predictive(
    model: pm.Model, idata: az.InferenceData, *, random_seed=None, progressbar: bool | None = None
) -> az.InferenceData:
    """Add posterior predictive draws of ``y`` to `idata` (in place) and return it.

    For latent models the assignments are drawn afresh from the weights, so both variants
    give the same predictive distribution (the mixture's), not one conditioned on the
    sampled assignments.

    Unlike a bare ``pm.sample_posterior_predictive(idata, model=model)``, this never alters the
    model: PyMC 5 appends to ``model.observed_RVs`` when ``var_names`` is omitted, after which
    the model can no longer be sampled. And where the posterior lacks some of the model's free
    variables (our Gibbs engine returns the Wishart model's covariances, ``chol_cov``, not the
    Bartlett variables PyMC builds them from), PyMC would silently draw those from their prior;
    the predictive is then drawn with NumPy from the posterior's weights, means and
    covariances (or sds) instead.

    Parameters
    ----------
    model : pymc.Model
        The model `idata` was sampled from.
    idata : arviz.InferenceData
        Its posterior.
    random_seed : int or numpy.random.Generator, optional
        Makes the draws reproducible.
    progressbar : bool, optional
        Show PyMC's progress bar; default as in :func:`sample`.

    Returns
    -------
    arviz.InferenceData
        `idata`, with a ``posterior_predictive`` group holding ``y``.
    """
    check_model(model)
    missing = [v.name for v in model.free_RVs if v.name not in idata.posterior]
    missing = [name for name in missing if name != "assignment"]
    if missing:
        predictive = _mixture_predictive(idata, random_seed)
        if "posterior_predictive" in idata.groups():
            del idata.posterior_predictive
        idata.add_groups(posterior_predictive=predictive)
        return idata
    var_names = ["assignment", "y"] if is_latent(model) else ["y"]
    if progressbar is None:
        progressbar = default_progressbar()
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))  # PyMC's "Sampling: [y]" line is noise here
    try:
        with model:
            pp = pm.sample_posterior_predictive(
                idata,
                var_names=var_names,
                random_seed=random_seed,
                progressbar=progressbar,
                extend_inferencedata=False,
            )
    finally:
        logger.setLevel(level)
    predictive = pp.posterior_predictive[["y"]]
    if "posterior_predictive" in idata.groups():
        del idata.posterior_predictive
    idata.add_groups(posterior_predictive=predictive)
    return idata


def _mixture_predictive(idata: az.InferenceData, random_seed) -> xr.Dataset:
    """Draw y from the mixture at every posterior draw (z from the weights, then y given z)."""
    rng = np.random.default_rng(random_seed)
    post = idata.posterior
    observed = idata.observed_data["y"]
    n_obs = observed.sizes["obs_id"]
    w = post["weights"].transpose("chain", "draw", "component").values
    chains, draws, k = w.shape
    u = rng.uniform(size=(chains, draws, n_obs, 1))
    z = np.minimum((u > np.cumsum(w, axis=-1)[:, :, None, :]).sum(-1), k - 1)  # (c, d, n)
    if "chol_cov" in post:
        mu = post["means"].transpose("chain", "draw", "component", "feature").values
        chol = post["chol_cov"].transpose("chain", "draw", "component", ...).values
        mu_z = np.take_along_axis(mu, z[..., None], axis=2)  # (c, d, n, f)
        chol_z = np.take_along_axis(chol, z[..., None, None], axis=2)  # (c, d, n, f, f)
        eps = rng.standard_normal(mu_z.shape)
        y = mu_z + np.einsum("cdnij,cdnj->cdni", chol_z, eps)
        dims = ("chain", "draw", "obs_id", "feature")
    else:
        from mixtures.assignments import _broadcast
        from mixtures.loglik import _param

        mu, sd = (_broadcast(_param(idata, n), chains * draws, k) for n in ("means", "sigma"))
        mu, sd = mu.reshape(chains, draws, k), sd.reshape(chains, draws, k)
        y = rng.normal(np.take_along_axis(mu, z, axis=2), np.take_along_axis(sd, z, axis=2))
        dims = ("chain", "draw", "obs_id")
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    coords.update({d: observed[d].values for d in dims[2:]})
    return xr.Dataset({"y": (dims, y)}, coords=coords)
