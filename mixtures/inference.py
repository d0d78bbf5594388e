"""Sampling the mixture models and their posterior predictive distribution."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from mixtures.engines import _attach_data, cached, default_progressbar, is_latent
from mixtures.multivariate import mv_pointwise_loglik

__all__ = ["ConvergenceWarning", "fit_advi", "is_latent", "sample", "sample_posterior_predictive"]

#: Thresholds of Vehtari et al. (2021), as used by PyMC and ArviZ.
RHAT_MAX = 1.01
ESS_BULK_MIN = 400

_PARAMS = ("weights", "means", "sigma")
_LOGLIK_CHUNK = 2_000_000  # draws x n_obs x k floats per block when computing the log-likelihood
_LOGLIK_MAX_VALUES = 50_000_000  # log_likelihood="auto" stores at most this many (400 MB)


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics fall short of the usual reliability thresholds."""


def _check_model(model) -> pm.Model:
    if not isinstance(model, pm.Model):
        raise ValueError(f"`model` should be a pymc.Model, but got {type(model).__name__}")
    if "y" not in model.named_vars or model["y"] not in model.observed_RVs:
        raise ValueError(
            "`model` should be built by a mixtures factory (observed variable `y`), "
            f"but got a model with observed variables {[v.name for v in model.observed_RVs]}"
        )
    return model


def sample(
    model: pm.Model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed=None,
    progressbar: bool | None = None,
    sampler: str = "auto",
    latent_sampler: str = "gibbs",
    log_likelihood: bool | str = "auto",
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
    draws, tune, chains : int
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
    **kwargs
        Passed to the engine: :func:`pymc.sample` (``cores``, ``target_accept``, ``step``,
        ...) or nutpie's ``sample`` (``backend="numba" | "jax"``, ...).

    Returns
    -------
    arviz.InferenceData
        With groups ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data`` and
        (see `log_likelihood`) ``log_likelihood``.

    Warns
    -----
    ConvergenceWarning
        If any of ``weights``, ``means``, ``sigma`` has r_hat > 1.01 or bulk ESS < 400, or if
        there were divergences.

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.full_mixture(y, 3, marginalized=True)
    >>> idata = mixtures.sample(model, random_seed=1)  # doctest: +SKIP
    """
    _check_model(model)
    for name, val in (("draws", draws), ("tune", tune), ("chains", chains)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 0:
            raise ValueError(f"`{name}` should be a non-negative integer, but got {val!r}")
    if chains < 1 or draws < 1:
        raise ValueError(f"`draws` and `chains` should be >= 1, but got {draws} and {chains}")
    if latent_sampler not in ("gibbs", "nuts"):
        raise ValueError(
            f"`latent_sampler` should be 'gibbs' or 'nuts', but got {latent_sampler!r}"
        )
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(
            f"`log_likelihood` should be True, False or 'auto', but got {log_likelihood!r}"
        )
    if kwargs.get("idata_kwargs", {}).get("log_likelihood"):
        raise ValueError("`idata_kwargs['log_likelihood']` is computed by mixtures.sample itself")
    if progressbar is None:
        progressbar = default_progressbar()
    if "step" in kwargs:
        if sampler not in ("auto", "pymc"):
            raise ValueError(f"`step=` needs sampler='pymc', but got sampler={sampler!r}")
        # PyMC's own checks would include the discrete assignments (r_hat of constant chains
        # is 0/0); ours below cover the continuous parameters.
        kwargs.setdefault("compute_convergence_checks", False)
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=random_seed,
                progressbar=progressbar,
                **kwargs,
            )
        idata.posterior.attrs.update(
            mixtures_sampler="pymc",
            mixtures_sampler_reason="user-given steps",
            mixtures_steps="user-given steps",
        )
    else:
        handle = cached(model, sampler, latent_sampler)
        idata = handle.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=random_seed,
            progressbar=progressbar,
            **kwargs,
        )
        if is_latent(model):  # we chose the steps of a latent model
            idata.posterior.attrs["mixtures_latent_sampler"] = latent_sampler
    _add_log_likelihood(idata, log_likelihood)
    warn_convergence(idata)
    return idata


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
    _check_model(model)
    if is_latent(model):
        raise ValueError(
            "`model` should be marginalised for ADVI (its discrete `assignment` has no "
            "gradient), but got a latent model; build it with marginalized=True"
        )
    if method not in ("advi", "fullrank_advi"):
        raise ValueError(f"`method` should be 'advi' or 'fullrank_advi', but got {method!r}")
    for name, val in (("n", n), ("draws", draws)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ValueError(f"`{name}` should be an integer >= 1, but got {val!r}")
    if progressbar is None:
        progressbar = default_progressbar()
    seed = None if random_seed is None else int(np.random.default_rng(random_seed).integers(2**30))
    with model, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        approx = pm.fit(n=n, method=method, random_seed=seed, progressbar=progressbar, **kwargs)
        idata = approx.sample(draws, random_seed=seed, return_inferencedata=True)
    _attach_data(idata, model)
    for group in set(idata.groups()) - {"posterior", "observed_data", "constant_data"}:
        delattr(idata, group)
    idata.posterior.attrs.update(
        mixtures_sampler=method,
        mixtures_sampler_reason="requested",
        mixtures_steps=f"pm.fit(method={method!r}, n={n})",
        mixtures_vi_loss=np.asarray(approx.hist, dtype=float),
    )
    _add_log_likelihood(idata, log_likelihood)
    return idata


def _add_log_likelihood(idata: az.InferenceData, log_likelihood) -> None:
    post = idata.posterior
    n_values = post.sizes["chain"] * post.sizes["draw"] * idata.observed_data["y"].sizes["obs_id"]
    if log_likelihood is True or (log_likelihood == "auto" and n_values <= _LOGLIK_MAX_VALUES):
        if idata.observed_data["y"].ndim == 2:
            idata.add_groups(log_likelihood=mv_pointwise_loglik(idata))
        else:
            idata.add_groups(log_likelihood=pointwise_loglik(idata))
    else:
        post.attrs["mixtures_log_likelihood"] = (
            f"not stored: {n_values:,} values (log_likelihood={log_likelihood!r}); "
            "compute it with mixtures.inference.pointwise_loglik(idata) if needed"
        )


def _param(idata, name) -> xr.DataArray:
    """Posterior draws of a parameter, or its known value from constant_data, broadcast."""
    if name in idata.posterior:
        return idata.posterior[name]
    if "constant_data" in idata.groups() and name in idata.constant_data:
        return idata.constant_data[name]
    raise KeyError(f"`{name}` is neither in the posterior nor in constant_data")


def pointwise_loglik(idata: az.InferenceData) -> xr.Dataset:
    """Return the assignment-marginal pointwise log-likelihood of ``y`` for every draw.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``weights`` in the posterior, ``means`` / ``sigma`` in the posterior or in
        constant_data, and ``y`` in observed_data.

    Returns
    -------
    xarray.Dataset
        Variable ``y`` with dims (chain, draw, obs_id).
    """
    post = idata.posterior
    y = idata.observed_data["y"]
    n_obs = y.sizes["obs_id"]
    weights, means, sigma = (_param(idata, n) for n in _PARAMS)
    if "component" not in sigma.dims:  # shared sd
        sigma = sigma.expand_dims(component=weights["component"].values).transpose(..., "component")
    full = xr.broadcast(weights, means, sigma, exclude=())
    w, mu, sd = (a.transpose("chain", "draw", "component").values for a in full)
    chains, draws, k = w.shape
    yv = y.values
    out = np.empty((chains, draws, n_obs))
    block = max(1, _LOGLIK_CHUNK // max(1, n_obs * k))
    # log w_j - log sd_j - log(2 pi) / 2 - ((y - mu_j) / sd_j)^2 / 2, then a max-shifted
    # logsumexp over the components, in place on one block of draws at a time; the component
    # axis comes first so that the reductions run over contiguous (draw, obs) slabs
    inv_sd = np.moveaxis(1.0 / sd, -1, 0)[..., None]  # (k, chain, draw, 1)
    mu = np.moveaxis(mu, -1, 0)[..., None]
    const = np.moveaxis(np.log(w), -1, 0)[..., None] + np.log(inv_sd) - 0.5 * np.log(2 * np.pi)
    for c in range(chains):
        for start in range(0, draws, block):
            sl = slice(start, start + block)
            comp = yv - mu[:, c, sl]  # (k, block, n_obs)
            comp *= inv_sd[:, c, sl]
            np.square(comp, out=comp)
            comp *= -0.5
            comp += const[:, c, sl]
            top = comp.max(axis=0)
            comp -= top
            np.exp(comp, out=comp)
            out[c, sl] = top + np.log(comp.sum(axis=0))
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "obs_id": y["obs_id"]}
    return xr.Dataset({"y": (("chain", "draw", "obs_id"), out)}, coords=coords)


def warn_convergence(idata: az.InferenceData) -> list[str]:
    """Warn about parameters with r_hat > 1.01 or bulk ESS < 400, and about divergences.

    Parameters
    ----------
    idata : arviz.InferenceData
        A sampled posterior.

    Returns
    -------
    list of str
        The problems found (empty if none); each is also issued as a
        :class:`ConvergenceWarning`.
    """
    names = [n for n in _PARAMS if n in idata.posterior]
    problems = []
    if names:
        with np.errstate(invalid="ignore", divide="ignore"):  # constant chains give NaN
            diag = az.summary(idata, var_names=names, kind="diagnostics")
        if idata.posterior.sizes["chain"] > 1:
            bad_rhat = diag.index[~(diag["r_hat"] <= RHAT_MAX)].tolist()
            if bad_rhat:
                problems.append(f"r_hat > {RHAT_MAX} for {', '.join(bad_rhat)}")
        bad_ess = diag.index[~(diag["ess_bulk"] >= ESS_BULK_MIN)].tolist()
        if bad_ess:
            problems.append(f"bulk ESS < {ESS_BULK_MIN} for {', '.join(bad_ess)}")
    if "diverging" in idata.sample_stats:
        n_div = int(idata.sample_stats["diverging"].sum())
        if n_div:
            problems.append(f"{n_div} divergent transition(s) after tuning")
    for problem in problems:
        warnings.warn(problem, ConvergenceWarning, stacklevel=3)
    return problems


def sample_posterior_predictive(
    model: pm.Model, idata: az.InferenceData, *, random_seed=None, progressbar: bool | None = None
) -> az.InferenceData:
    """Add posterior predictive draws of ``y`` to `idata` (in place) and return it.

    For latent models the assignments are drawn afresh from the weights, so both variants
    give the same predictive distribution (the mixture's), not one conditioned on the
    sampled assignments.

    Unlike a bare ``pm.sample_posterior_predictive(idata, model=model)``, this never alters the
    model: PyMC 5 appends to ``model.observed_RVs`` when ``var_names`` is omitted, after which
    the model can no longer be sampled.

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
    _check_model(model)
    var_names = ["assignment", "y"] if is_latent(model) else ["y"]
    if progressbar is None:
        progressbar = default_progressbar()
    with model:
        pp = pm.sample_posterior_predictive(
            idata,
            var_names=var_names,
            random_seed=random_seed,
            progressbar=progressbar,
            extend_inferencedata=False,
        )
    predictive = pp.posterior_predictive[["y"]]
    if "posterior_predictive" in idata.groups():
        del idata.posterior_predictive
    idata.add_groups(posterior_predictive=predictive)
    return idata
