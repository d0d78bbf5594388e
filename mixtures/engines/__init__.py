"""Sampling engines: a registry, the ``"auto"`` rule, and handles that refit without recompiling.

One module per engine; each engine class says whether it supports a model (and why not), and
how it samples. :data:`REGISTRY` lists them in the order ``"auto"`` walks:

``"gibbs"`` (:mod:`mixtures.engines.gibbs`)
    Our own batched Gibbs sampler with replica exchange, for the univariate factories with a
    Dirichlet weight prior and Normal (or known) means; latent and marginalised alike.
``"mfm"`` (:mod:`mixtures.engines.mfm`)
    The telescoping sampler, for :func:`mixtures.mfm_mixture` models only (a prior on the
    number of components); the other engines refuse or cannot sample them well.
``"nutpie"`` (:mod:`mixtures.engines.nutpie`)
    Marginalised models from N = 2,000 when nutpie is installed (its faster gradient repays
    its compile time there; ``bench/speed.py``).
``"pymc"`` (:mod:`mixtures.engines.pymc`)
    Everything else: PyMC's loop, the reference implementation.

``"numpyro"`` is never chosen by ``"auto"``; variational inference is :func:`mixtures.fit_advi`
(:mod:`mixtures.engines.advi`).

Nothing here is cached behind the user's back: :func:`mixtures.sample` builds a fresh handle per
call (the Gibbs engine compiles nothing per model; PyTensor and Numba cache compiled code on
disk, keyed by the code itself). To refit without recompiling, keep the handle that
:func:`compile_model` returns; it reads the model's current data and its spec at every call.
"""

from __future__ import annotations

import sys
import time

import arviz as az
import numpy as np
import pymc as pm

from mixtures.analysis.diagnostics import check_degenerate, warn_convergence
from mixtures.engines.extend import AUTO_TUNE, DEFAULT_DRAWS
from mixtures.engines.finish import finish
from mixtures.engines.gibbs import GibbsEngine
from mixtures.engines.mfm import MFMEngine
from mixtures.engines.numpyro import NumpyroEngine
from mixtures.engines.nutpie import NutpieEngine
from mixtures.engines.pymc import PymcEngine, is_latent
from mixtures.interrupt import stop_on_interrupt
from mixtures.model.dask_data import dask_data_of
from mixtures.model.missing import check_with_missing
from mixtures.model.spec import has_spec, spec_of
from mixtures.model.validation import check_observations
from mixtures.progress import default_progressbar

__all__ = [
    "REGISTRY",
    "SAMPLERS",
    "CompiledMixture",
    "available_samplers",
    "choose_sampler",
    "compile_model",
    "is_latent",
]

#: The engines, in the order ``"auto"`` considers them.
REGISTRY = {
    "gibbs": GibbsEngine,  # refuses mfm_mixture models (their weights prior is "MFMDirichlet")
    "mfm": MFMEngine,  # takes only mfm_mixture models; before the engines that take any model
    "nutpie": NutpieEngine,
    "pymc": PymcEngine,
    "numpyro": NumpyroEngine,
}
SAMPLERS = ("auto", *REGISTRY)
_NUTPIE_MIN_N = 2000


def available_samplers() -> dict[str, bool]:
    """Return which engines can run here (``nutpie`` and ``numpyro`` are optional extras)."""
    return {
        "gibbs": True,
        "mfm": True,
        "pymc": True,
        "nutpie": NutpieEngine.installed(),
        "numpyro": NumpyroEngine.installed(),
    }


def _spec_or_none(model):
    return spec_of(model) if has_spec(model) else None


def choose_sampler(model: pm.Model, *, latent_sampler: str = "gibbs") -> tuple[str, str]:
    """Pick the engine for ``sampler="auto"`` and say why.

    Walks :data:`REGISTRY`: ``"gibbs"`` if it supports the model (and ``latent_sampler`` is
    ``"gibbs"``); ``"nutpie"`` for a marginalised model with N >= 2,000 when installed;
    ``"pymc"`` otherwise. The rule's figures are in ``bench/RESULTS.md``.

    Parameters
    ----------
    model : pymc.Model
    latent_sampler : {"gibbs", "nuts"}
        ``"nuts"`` asks for NUTS on the continuous parameters, which only PyMC's loop does.

    Returns
    -------
    (str, str)
        The engine's name and the reason, as recorded in ``posterior.attrs``.
    """
    spec = _spec_or_none(model)
    reasons = []
    for name, engine in REGISTRY.items():
        if name == "numpyro":
            continue
        ok, why = engine.supports(model, spec)
        if name == "gibbs" and ok and latent_sampler != "gibbs":
            ok, why = False, "latent_sampler='nuts' asks for NUTS"
        if name == "nutpie" and ok:
            n_obs = int(model["y_data"].get_value().shape[0])
            if n_obs < _NUTPIE_MIN_N:
                ok, why = False, f"N = {n_obs} < {_NUTPIE_MIN_N}, where PyMC's NUTS is faster"
        if ok:
            not_first = "; ".join(reasons)
            return name, why + (f" (not {not_first})" if not_first else "")
        reasons.append(f"{name}: {why}")
    raise AssertionError("the pymc engine supports every model")  # pragma: no cover


class CompiledMixture:
    """A mixture model bound to one engine; refit it on new data with :meth:`sample`.

    Build it with :func:`compile_model`. The engine keeps what it compiled (PyMC's steps,
    nutpie's compiled model); every :meth:`sample` reads the model's current ``y_data`` and
    its spec, so a refit after ``pm.set_data`` (or with ``y=``) samples the new data under the
    model's own priors.

    Attributes
    ----------
    model : pymc.Model
    sampler : str
        The engine, resolved from ``"auto"`` if that was asked.
    reason : str
        Why that engine.
    n_fits : int
        How many fits this handle ran.
    """

    def __init__(self, model: pm.Model, sampler: str = "auto", *, latent_sampler="gibbs"):
        _check_sampler_args(model, sampler, latent_sampler)
        self.model = model
        self.spec = _spec_or_none(model)
        if sampler == "auto":
            self.sampler, self.reason = choose_sampler(model, latent_sampler=latent_sampler)
        else:
            ok, why = REGISTRY[sampler].supports(model, self.spec)
            if not ok:
                raise ValueError(f"`sampler={sampler!r}` cannot sample this model: {why}")
            self.sampler, self.reason = sampler, f"requested ({why})"
        kwargs = {"latent_sampler": latent_sampler} if self.sampler == "pymc" else {}
        self.engine = REGISTRY[self.sampler](model, self.spec, **kwargs)
        self.n_fits = 0

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling so far (0 for the Gibbs engine)."""
        return self.engine.compile_seconds

    def __repr__(self) -> str:
        return (
            f"CompiledMixture(sampler={self.sampler!r}, fits={self.n_fits}, "
            f"compile_seconds={self.compile_seconds:.2f})"
        )

    def set_data(self, y) -> None:
        """Replace the observations (any length) for the next :meth:`sample`.

        A model built on data with missing cells takes new data with missing cells (NaN); its
        PyMC likelihood is grouped by the missingness of the data it was built on, so only
        the Gibbs engine takes another pattern.
        """
        if "observed_cells" in self.model.named_vars:
            self._set_incomplete(y)
            return
        y = check_observations(y, ndim=self.model["y_data"].ndim)
        if self.spec is not None and self.spec.labelled:
            raise ValueError(
                "`y` should not be given for a model with known labels (the labels would no "
                "longer match): use pm.set_data({'y_data': ..., 'labels': ..., "
                "'label_values': ...}) on the model, or build a new one"
            )
        with self.model:
            pm.set_data({"y_data": y}, coords={"obs_id": np.arange(y.shape[0])})

    def _set_incomplete(self, y) -> None:
        x, observed = check_with_missing(y, "y")
        old = np.asarray(self.model["observed_cells"].get_value(), dtype=bool)
        if self.sampler != "gibbs" and (old.shape != observed.shape or (old != observed).any()):
            raise ValueError(
                "`y` should have the missing cells of the data the model was built on (its "
                f"PyMC likelihood is grouped by them) with sampler {self.sampler!r}, but got "
                "another pattern: build a new model with mv_mixture"
            )
        if self.spec is not None and self.spec.labelled:
            raise ValueError("`y` should not be given for a model with known labels")
        data = {"y_data": np.where(observed, x, 0.0), "observed_cells": observed.astype(np.int8)}
        with self.model:
            pm.set_data(data, coords={"obs_id": np.arange(x.shape[0])})

    def sample(
        self,
        y=None,
        *,
        draws: int | None = None,
        tune: int | None = None,
        chains: int = 4,
        random_seed=None,
        progressbar: bool | None = None,
        log_likelihood: bool | str = "auto",
        warn: bool = True,
        **kwargs,
    ) -> az.InferenceData:
        """Sample the posterior, on new observations `y` if given.

        Parameters
        ----------
        y : array-like, optional
            New observations (any length); default: the model's current data.
        draws : int or None, default None
            Draws per chain. None: the Gibbs engine runs 500 and continues the chains until
            the diagnostics pass or its budget is spent (see :func:`mixtures.sample`); the
            other engines run 1,000.
        tune : int or None, default None
            Tuning iterations. None: the Gibbs engine's choice (see :func:`mixtures.sample`);
            1,000 for the other engines.
        chains : int
            As in :func:`pymc.sample`.
        random_seed : int or numpy.random.Generator, optional
            Makes the run reproducible (for every engine).
        progressbar : bool, optional
            Default: on, unless the environment variable ``MIXTURES_PROGRESSBAR`` is ``0``.
        log_likelihood : bool or "auto", default "auto"
            Store the pointwise log-likelihood (see :func:`mixtures.sample`).
        warn : bool, default True
            Issue a :class:`~mixtures.ConvergenceWarning` for failed diagnostics.
        **kwargs
            Passed to the engine: ``tempering``, ``init`` ("auto", "em", "random"),
            ``budget`` (draws per chain, seconds of an automatic run) and ``moves`` (the
            relocation move, default True) for Gibbs; ``cores``,
            ``target_accept``, ``step`` for PyMC; ``backend`` for nutpie.

        Returns
        -------
        arviz.InferenceData
        """
        check_draws(draws, tune, chains)
        if self.sampler != "gibbs":
            draws = DEFAULT_DRAWS if draws is None else draws
            tune = AUTO_TUNE if tune is None else tune
        if y is not None:
            self.set_data(y)
        check_degenerate(self.model["y_data"].get_value(), self.spec)
        if progressbar is None:
            progressbar = default_progressbar()
        seed = _seed(random_seed)
        if progressbar and self.sampler != "gibbs":  # say which engine, and why, when not ours
            print(f"mixtures: sampling with {self.sampler!r}: {self.reason}", file=sys.stderr)
        t0 = time.perf_counter()
        # Divergent trajectories overflow exp() inside PyTensor's Python ops; PyMC treats the
        # non-finite log-density as a divergence, so NumPy's warnings are noise here.
        with (
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
            stop_on_interrupt(f"Sampling with {self.sampler!r}") as flag,
        ):
            if self.sampler == "pymc":
                kwargs.setdefault("callback", flag.callback)
            raw = self.engine.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=seed,
                progressbar=progressbar,
                **kwargs,
            )
        self.n_fits += 1
        reason = self.reason
        if self.sampler == "pymc" and "step" in kwargs:
            reason = "user-given steps"
        idata = finish(
            raw,
            self.model,
            self.spec,
            sampler=self.sampler,
            reason=reason,
            seconds=time.perf_counter() - t0,
            log_likelihood=log_likelihood,
        )
        if warn:
            warn_convergence(idata)
        return idata


def check_draws(draws, tune, chains) -> None:
    """Refuse draws, tune or chains that are not non-negative integers (None: automatic)."""
    for name, val in (("draws", draws), ("tune", tune), ("chains", chains)):
        if name in ("draws", "tune") and val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 0:
            raise ValueError(f"`{name}` should be a non-negative integer, but got {val!r}")
    if chains < 1 or (draws is not None and draws < 1):
        raise ValueError(f"`draws` and `chains` should be >= 1, but got {draws} and {chains}")


def check_model(model) -> pm.Model:
    """Check that `model` is a mixture model (a ``pm.Model`` with the observed variable ``y``)."""
    if not isinstance(model, pm.Model):
        raise ValueError(f"`model` should be a pymc.Model, but got {type(model).__name__}")
    if "y" not in model.named_vars or model["y"] not in model.observed_RVs:
        raise ValueError(
            "`model` should be built by a mixtures factory (observed variable `y`), "
            f"but got a model with observed variables {[v.name for v in model.observed_RVs]}"
        )
    if dask_data_of(model) is not None:
        raise ValueError(
            "`model` should hold its data in this process, but its data are a dask.array "
            "(they stay on the cluster): sample it with mixtures.sample(model, client=client), "
            "the Gibbs sweep on the Dask workers; for anything else build the model from "
            "`data.compute()` if it fits in memory"
        )
    return model


def _check_sampler_args(model, sampler, latent_sampler) -> None:
    check_model(model)
    if sampler not in SAMPLERS:
        raise ValueError(f"`sampler` should be one of {list(SAMPLERS)}, but got {sampler!r}")
    if latent_sampler not in ("gibbs", "nuts"):
        raise ValueError(
            f"`latent_sampler` should be 'gibbs' or 'nuts', but got {latent_sampler!r}"
        )


def _seed(random_seed) -> int | None:
    """One integer seed from `random_seed` (int, Generator or None)."""
    if random_seed is None:
        return None
    return int(np.random.default_rng(random_seed).integers(2**30))


def compile_model(model: pm.Model, *, sampler: str = "auto", latent_sampler: str = "gibbs"):
    """Bind `model` to one engine once; refit it with ``.sample(y_new)``.

    Parameters
    ----------
    model : pymc.Model
        A model from a `mixtures` factory.
    sampler : {"auto", "gibbs", "pymc", "nutpie", "numpyro"}, default "auto"
        The engine; ``"auto"`` follows :func:`choose_sampler`.
    latent_sampler : {"gibbs", "nuts"}, default "gibbs"
        For latent models sampled by PyMC: how the continuous parameters are updated.

    Returns
    -------
    CompiledMixture

    Notes
    -----
    A refit changes the data, not the model: the priors are the spec's, resolved to numbers
    when the model was built (see :func:`mixtures.spec_of`), whatever the new data's scale.
    Build a new model to get priors scaled to new data.

    Examples
    --------
    >>> import mixtures, numpy as np
    >>> y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    >>> compiled = mixtures.compile_model(mixtures.full_mixture(y, 3))
    >>> compiled.sampler
    'gibbs'
    >>> rng = np.random.default_rng(0)
    >>> fits = [compiled.sample(rng.choice(y, y.size)) for _ in range(3)]  # doctest: +SKIP
    """
    return CompiledMixture(model, sampler, latent_sampler=latent_sampler)
