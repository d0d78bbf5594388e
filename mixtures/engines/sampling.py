"""Sampling the mixture models and their posterior predictive distribution (the public API)."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pymc as pm

from mixtures.analysis.diagnostics import ConvergenceWarning, warn_convergence
from mixtures.analysis.loglik import fit_family
from mixtures.engines.advi import fit_advi
from mixtures.engines.base import takes_option
from mixtures.engines.handle import CompiledMixture, check_model
from mixtures.engines.pymc import is_latent

#: ``num_draws="auto"`` in :func:`sample_posterior_predictive` keeps the predictive at most this
#: many values (400 MB of float64), thinning the posterior draws it uses beyond that.
PREDICTIVE_MAX_VALUES = 50_000_000
_BLOCK_VALUES = 4_000_000  # temporaries per block of draws (components x points x features^2)

__all__ = [
    "PREDICTIVE_MAX_VALUES",
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
    client=None,
    **kwargs,
) -> az.InferenceData:
    """Sample the posterior of a mixture model built by a `mixtures` factory.

    The engine is `sampler` (:mod:`mixtures.engines`); ``"auto"`` follows
    :func:`~mixtures.choose_sampler`: data-augmentation Gibbs for the factories with conjugate
    priors (of a marginalised model only the continuous parameters are kept), the telescoping
    sampler for :func:`~mixtures.mfm_mixture`, nutpie for large marginalised models when it is
    installed, PyMC otherwise. Each call compiles what its engine needs afresh; to refit without
    recompiling keep the handle of :func:`~mixtures.compile_model`. In PyMC's loop a latent
    model gets :class:`~mixtures.AssignmentGibbs` for ``assignment``, by default
    (``latent_sampler="gibbs"``) :class:`~mixtures.ConjugateMixtureGibbs` for ``weights``,
    ``means`` (Normal prior) and ``sigma``, and NUTS for the rest; ``step=`` sets every step
    (e.g. ``pm.CategoricalGibbsMetropolis([model["assignment"]])``). The ``log_likelihood``
    group holds log sum_j w_j N(y_i | mu_j, sigma_j) for both variants, so LOO / WAIC compare
    them on the same footing. ``posterior.attrs`` record the engine (``mixtures_sampler``),
    why (``mixtures_sampler_reason``) and the steps (``mixtures_steps``).

    Parameters
    ----------
    model : pymc.Model
        A model from a `mixtures` factory (e.g. :func:`full_mixture`, :func:`mv_mixture`).
    draws : int or None, default None
        Draws per chain: N runs exactly N. None: the Gibbs engine runs 500, then continues the
        same chains while r_hat > 1.01 or a bulk or tail ESS < 400 on ``weights``, ``means``,
        ``sigma``, up to 8,000 per chain or 60 s (:mod:`mixtures.engines.extend`; the draws
        equal those of ``draws=`` the total, same seed; ``posterior.attrs`` record
        ``mixtures_draws_requested``, ``_run`` and ``_reason``). The other engines run 1,000.
    tune : int or None, default None
        Tuning iterations. None: for the Gibbs engine 200 when the chains start from EM fits
        untempered, else 1,000 (the ladder's adaptation); 1,000 for the other engines.
        Recorded in ``posterior.attrs["mixtures_tune"]``.
    chains : int, default 4
        As in :func:`pymc.sample`.
    random_seed : int or numpy.random.Generator, optional
        Makes the run reproducible, with every engine.
    progressbar : bool, optional
        Default: on, unless the environment variable ``MIXTURES_PROGRESSBAR`` is ``0``.
    sampler : {"auto", "gibbs", "mfm", "pymc", "nutpie", "numpyro"}, default "auto"
        The engine.
    latent_sampler : {"gibbs", "nuts"}, default "gibbs"
        How PyMC updates the continuous parameters of a latent model.
    log_likelihood : bool or "auto", default "auto"
        Store the pointwise log-likelihood (LOO / WAIC); ``"auto"``: unless it would hold
        more than 50 million values (400 MB), with the reason then in
        ``posterior.attrs["mixtures_log_likelihood"]``.
    tempering : "auto", False, int or array-like, default "auto"
        Gibbs engine only: replica exchange over powers of the likelihood, so chains cross
        between modes. An int: that many temperatures on the default ladder
        (:func:`mixtures.engines.tempering.default_ladder`); an array: the inverse
        temperatures (increasing, ending at 1; from 0 for :func:`mixtures.log_evidence`).
        ``"auto"``: 32 temperatures when N k <= 1,000, 16 when N k <= 6,000, none above
        60,000, in between only when EM finds two optima within 10 nats
        (:mod:`mixtures.engines.starts`). Untempered chains with N k > 6,000 start from the
        best of several EM fits (``init="random"`` or ``"em"`` decides instead).
    warn : bool, default True
        Issue a :class:`ConvergenceWarning` when the diagnostics fall short.
    client : dask.distributed.Client, optional
        For a model built on a ``dask.array``: run the Gibbs sweep on the workers that hold
        the data (:mod:`mixtures.engines.distributed`; same draws as the local engine with the
        same seed, no pointwise log-likelihood, no tempering). Without it such a model is
        refused.
    **kwargs
        Passed to the engine: the Gibbs engine's ``init`` (``"auto"``, ``"em"``,
        ``"random"``), ``budget`` (``(draws per chain, seconds)`` of an automatic run,
        default ``(8000, 60.0)``) and ``moves`` (default True: the relocation move of almost
        empty components); :func:`pymc.sample`'s (``cores``, ``target_accept``, ``step``, ...)
        or nutpie's (``backend="numba" | "jax"``, ...).

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data`` and (see
        `log_likelihood`) ``log_likelihood``.

    Warns
    -----
    ConvergenceWarning
        If any of ``weights``, ``means``, ``sigma`` has r_hat > 1.01 or bulk ESS < 400, or
        there were divergences; with ``draws=None`` on the Gibbs engine, only when the budget
        ran out first.

    Examples
    --------
    >>> import mixtures
    >>> y = mixtures.load_dataset("three_gaussians")["x"]
    >>> model = mixtures.full_mixture(y, 3, marginalized=True)
    >>> idata = mixtures.sample(model, random_seed=1)  # doctest: +SKIP
    """
    run = dict(draws=draws, tune=tune, chains=chains, random_seed=random_seed)
    run.update(progressbar=progressbar, log_likelihood=log_likelihood, warn=warn)
    if client is not None:
        return _sample_on_cluster(model, client, latent_sampler, sampler, tempering, run, kwargs)
    sampler = _check_sample_args(model, sampler, log_likelihood, kwargs)
    handle = CompiledMixture(model, sampler, latent_sampler=latent_sampler)
    if takes_option(handle.engine, "tempering"):
        kwargs["tempering"] = tempering
    elif tempering not in ("auto", None, False):
        raise ValueError(
            f"`tempering` is an option of the Gibbs engine, but the engine is {handle.sampler!r}"
        )
    return handle.sample(**run, **kwargs)


def _sample_on_cluster(model, client, latent_sampler, sampler, tempering, run, kwargs):
    """:func:`sample` with ``client=``: the distributed Gibbs engine."""
    from mixtures.engines.distributed import sample_distributed

    if latent_sampler != "gibbs":
        raise ValueError(
            f"`latent_sampler` should be 'gibbs' with `client=`, but got {latent_sampler!r}"
        )
    return sample_distributed(model, client, sampler=sampler, tempering=tempering, **run, **kwargs)


def _check_sample_args(model, sampler, log_likelihood, kwargs) -> str:
    """Check :func:`sample`'s arguments; return the sampler (``step=`` asks for PyMC's loop)."""
    check_model(model)
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(
            f"`log_likelihood` should be True, False or 'auto', but got {log_likelihood!r}"
        )
    if kwargs.get("idata_kwargs", {}).get("log_likelihood"):
        raise ValueError("`idata_kwargs['log_likelihood']` is computed by mixtures.sample itself")
    if "step" in kwargs and sampler not in ("auto", "pymc"):
        raise ValueError(f"`step=` needs sampler='pymc', but got sampler={sampler!r}")
    return "pymc" if "step" in kwargs else sampler


def sample_posterior_predictive(
    model: pm.Model,
    idata: az.InferenceData,
    *,
    num_draws="auto",
    random_seed=None,
    progressbar: bool | None = None,
) -> az.InferenceData:
    r"""Add posterior predictive draws of ``y`` to `idata` (in place) and return it.

    At each posterior draw used, every observation gets a fresh component
    :math:`z_i \sim \text{Categorical}(w)`, then :math:`y_i \mid z_i \sim N(\mu_{z_i},
    \Sigma_{z_i})` (Student-t components: :math:`\mu_{z_i} + \sigma_{z_i} t_{\nu_{z_i}}`):
    the mixture's predictive, the same for the latent and the marginalised variant (sampled
    assignments are not reused); a point with a known label keeps its component. NumPy draws
    from the posterior's ``weights``, ``means`` and ``sigma`` (known values from
    ``constant_data``) or ``chol_cov``, whatever engine sampled it: nothing is compiled and the
    model is never altered (a bare ``pm.sample_posterior_predictive`` corrupts it in PyMC 5,
    and draws the Wishart model's Bartlett variables from their prior).

    Parameters
    ----------
    model : pymc.Model
        The model `idata` was sampled from (a `mixtures` factory's).
    idata : arviz.InferenceData
        Its posterior, with ``observed_data`` (and ``constant_data``) as
        :func:`mixtures.sample` leaves them.
    num_draws : int, None or "auto", default "auto"
        How many posterior draws to draw a data set at. None: every draw. An int: that many,
        rounded up to a multiple of the number of chains, evenly spaced in each chain (a
        figure needs a few dozen). ``"auto"``: every draw
        unless the predictive would hold more than :data:`PREDICTIVE_MAX_VALUES` values
        (50 million, 400 MB: e.g. 4 x 1000 draws at N = 12,500), then as many evenly spaced
        draws as fit in that. The group's ``mixtures_predictive`` attribute says which.
    random_seed : int or numpy.random.Generator, optional
        Makes the draws reproducible.
    progressbar : bool, optional
        Ignored: the NumPy draw needs no progress bar (about a second per 10^8 values); taken
        as :func:`pymc.sample_posterior_predictive` takes it.

    Returns
    -------
    arviz.InferenceData
        `idata`, with a ``posterior_predictive`` group holding ``y``, dims (``chain``,
        ``draw``, ``obs_id`` [, ``feature``]); ``draw`` holds the posterior draws used.

    Examples
    --------
    >>> idata = mixtures.sample(model, random_seed=1)  # doctest: +SKIP
    >>> mixtures.sample_posterior_predictive(model, idata, num_draws=50)  # doctest: +SKIP
    """
    del progressbar
    _check_predictive_args(model, idata)
    post, observed = idata.posterior, idata.observed_data["y"]
    width = observed.sizes.get("feature", 1)
    keep = predictive_draws(
        post.sizes["chain"], post.sizes["draw"], num_draws, observed.sizes["obs_id"] * width
    )
    y = _draw_predictive(idata, model, keep, np.random.default_rng(random_seed))
    predictive = _predictive_group(idata, y, keep, num_draws)
    if "posterior_predictive" in idata.groups():
        del idata.posterior_predictive
    idata.add_groups(posterior_predictive=predictive)
    return idata


def _check_predictive_args(model, idata) -> None:
    """Refuse a foreign model, or an `idata` without ``weights`` or observed ``y``."""
    check_model(model)
    if "posterior" not in idata.groups() or "weights" not in idata.posterior:
        raise ValueError("`idata` should hold `weights` in its posterior, but it does not")
    if "observed_data" not in idata.groups() or "y" not in idata.observed_data:
        raise ValueError("`idata` should hold `y` in its observed_data, but it does not")


def _draw_predictive(idata, model, keep: np.ndarray, rng) -> np.ndarray:
    """Return one data set per kept draw, chain-major: shape (chains x kept, n_obs[, d])."""
    params = _predictive_params(idata, model, keep)
    nu = _predictive_nu(idata, model, keep, params[0].shape)
    n_obs = idata.observed_data["y"].sizes["obs_id"]
    return _draw_mixture(rng, *params, _labels(idata, model), n_obs, nu=nu)


def _predictive_group(idata, y: np.ndarray, keep: np.ndarray, num_draws):
    """Return the ``posterior_predictive`` dataset of draws `y` made at the kept draws."""
    post, observed = idata.posterior, idata.observed_data["y"]
    chains, n_keep = post.sizes["chain"], keep.size
    y = y.reshape(chains, n_keep, *y.shape[1:])
    coords = {"chain": post["chain"].values, "draw": post["draw"].values[keep]}
    coords.update({d: observed[d].values for d in observed.dims})
    predictive = az.dict_to_dataset({"y": y}, coords=coords, dims={"y": list(observed.dims)})
    total = post.sizes["chain"] * post.sizes["draw"]
    predictive.attrs["mixtures_predictive"] = (
        f"drawn with NumPy at {chains * n_keep} of {total} posterior draws "
        f"({n_keep} per chain, evenly spaced; num_draws={num_draws!r})"
    )
    return predictive


def predictive_draws(chains: int, draws: int, num_draws, values_per_draw: int) -> np.ndarray:
    """Return the indices of the draws (per chain) that :func:`sample_posterior_predictive` uses.

    Parameters
    ----------
    chains, draws : int
        The posterior's sizes.
    num_draws : int, None or "auto"
        As in :func:`sample_posterior_predictive`.
    values_per_draw : int
        Values one predictive data set holds (observations x features).

    Returns
    -------
    numpy.ndarray of int
        Increasing indices into the ``draw`` axis, evenly spaced, the same in every chain.
    """
    if num_draws is None:
        return np.arange(draws)
    if isinstance(num_draws, str):
        if num_draws != "auto":
            raise ValueError(
                f"`num_draws` should be an integer >= 1, None or 'auto', but got {num_draws!r}"
            )
        if chains * draws * values_per_draw <= PREDICTIVE_MAX_VALUES:
            return np.arange(draws)
        num_draws = max(chains, PREDICTIVE_MAX_VALUES // max(1, values_per_draw))
        per_chain = max(1, num_draws // chains)  # round down: stay within the cap
    elif isinstance(num_draws, bool) or not isinstance(num_draws, int | np.integer):
        raise ValueError(
            f"`num_draws` should be an integer >= 1, None or 'auto', but got {num_draws!r}"
        )
    elif num_draws < 1:
        raise ValueError(
            f"`num_draws` should be an integer >= 1, None or 'auto', but got {num_draws!r}"
        )
    else:
        per_chain = math.ceil(int(num_draws) / chains)
    if per_chain >= draws:
        return np.arange(draws)
    return np.unique(np.linspace(0, draws - 1, per_chain).round().astype(int))


def _value(idata, model, name: str, keep: np.ndarray) -> np.ndarray:
    """Return a parameter's kept draws, flat (chain-major), or its known value (no draw axis)."""
    if name in idata.posterior:
        da = idata.posterior[name].isel(draw=keep)
        rest = [d for d in da.dims if d not in ("chain", "draw")]
        arr = da.transpose("chain", "draw", *rest).values
        return arr.reshape(-1, *arr.shape[2:])
    if "constant_data" in idata.groups() and name in idata.constant_data:
        return np.asarray(idata.constant_data[name].values, dtype=float)
    if name in model.named_vars and hasattr(model[name], "get_value"):
        return np.asarray(model[name].get_value(), dtype=float)
    raise ValueError(
        f"`idata` should hold `{name}` in its posterior (or constant_data), but it does not"
    )


def _predictive_params(idata, model, keep: np.ndarray):
    """Return weights (S, k), means (S, k[, d]) and scales: sds (S, k) or Cholesky factors."""
    w = _value(idata, model, "weights", keep)
    n_draws, k = w.shape
    if "feature" in idata.observed_data["y"].dims:
        mu = _value(idata, model, "means", keep)
        chol = _value(idata, model, "chol_cov", keep)
        return w, mu, chol
    mu, sd = (_value(idata, model, name, keep) for name in ("means", "sigma"))
    if "sigma" in idata.posterior and idata.posterior["sigma"].ndim == 2:  # a shared sd
        sd = sd[:, None]
    return w, np.broadcast_to(mu, (n_draws, k)), np.broadcast_to(sd, (n_draws, k))


def _predictive_nu(idata, model, keep: np.ndarray, shape) -> np.ndarray | None:
    """Return a t fit's degrees of freedom as (S, k), or None for Normal components."""
    if fit_family(idata) not in ("t", "mvt"):
        return None
    return np.broadcast_to(_value(idata, model, "nu", keep), shape)


def _labels(idata, model) -> np.ndarray | None:
    """Return the known labels (-1: unknown) from constant_data, else from the model, else None."""
    if "constant_data" in idata.groups() and "labels" in idata.constant_data:
        return np.asarray(idata.constant_data["labels"].values, dtype=int)
    if "labels" in model.named_vars:
        return np.asarray(model["labels"].get_value(), dtype=int)
    return None


def _draw_mixture(rng, w, mu, scale, labels, n_obs: int, nu=None) -> np.ndarray:
    """One predictive data set per row of `w`: components from the weights, then Normals.

    `scale` holds sds (S, k) for univariate models, Cholesky factors (S, k, d, d) otherwise.
    `nu` (S, k): Student-t components with these degrees of freedom (multivariate: Normal
    draws divided by the square root of a chi-square(nu) / nu per row).
    Blocks of draws keep the temporaries near :data:`_BLOCK_VALUES` values.
    """
    n_draws, k = w.shape
    multivariate = scale.ndim == 4
    d = mu.shape[-1] if multivariate else 1
    out = np.empty((n_draws, n_obs, d) if multivariate else (n_draws, n_obs))
    cum = np.cumsum(w, axis=1)
    cum /= cum[:, -1:]  # weights that sum to 1 - 1e-16 must not leave a point without a component
    fixed = None if labels is None else np.flatnonzero(labels >= 0)
    block = max(1, _BLOCK_VALUES // max(1, n_obs * max(k, d * d)))
    for start in range(0, n_draws, block):
        sl = slice(start, start + block)
        u = rng.random((cum[sl].shape[0], n_obs))
        z = np.minimum((u[:, :, None] > cum[sl, None, :]).sum(axis=-1), k - 1)
        if fixed is not None:
            z[:, fixed] = labels[fixed]
        rows = np.arange(z.shape[0])[:, None]
        if nu is None:
            eps = rng.standard_normal(out[sl].shape)
        elif multivariate:
            dof = nu[sl][rows, z]
            eps = rng.standard_normal(out[sl].shape) / np.sqrt(rng.chisquare(dof) / dof)[..., None]
        else:
            eps = rng.standard_t(nu[sl][rows, z])
        if multivariate:
            out[sl] = mu[sl][rows, z] + np.einsum("snij,snj->sni", scale[sl][rows, z], eps)
        else:
            out[sl] = mu[sl][rows, z] + scale[sl][rows, z] * eps
    return out
