"""The handle that binds a model to one engine, and the checks at the engines' boundary.

:func:`compile_model` returns a :class:`CompiledMixture`; :func:`mixtures.sample` builds one
per call. The handle resolves ``"auto"`` (:func:`~mixtures.engines.registry.choose_sampler`),
builds the engine, and at every :meth:`CompiledMixture.sample` reads the model's current data,
runs the engine under one Ctrl-C guard and finishes its :class:`~mixtures.engines.base.RawDraws`
into an InferenceData. It asks the engine what it declares (defaults, options), never which
engine it is.
"""

from __future__ import annotations

import sys
import time

import arviz as az
import numpy as np
import pymc as pm

from mixtures.analysis.diagnostics import check_degenerate, warn_convergence
from mixtures.engines import registry
from mixtures.engines.base import takes_option
from mixtures.engines.finish import finish
from mixtures.engines.registry import choose_sampler, spec_or_none
from mixtures.engines.seeds import one_seed
from mixtures.interrupt import stop_on_interrupt
from mixtures.model.dask_data import dask_data_of
from mixtures.model.missing import check_with_missing
from mixtures.model.validation import check_integer, check_observations
from mixtures.progress import default_progressbar

__all__ = ["CompiledMixture", "check_draws", "check_model", "compile_model"]


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
    engine : Engine
        The engine object (:class:`mixtures.engines.base.Engine`).
    n_fits : int
        How many fits this handle ran.
    """

    def __init__(self, model: pm.Model, sampler: str = "auto", *, latent_sampler="gibbs"):
        _check_sampler_args(model, sampler, latent_sampler)
        self.model = model
        self.spec = spec_or_none(model)
        if sampler == "auto":
            self.sampler, self.reason = choose_sampler(model, latent_sampler=latent_sampler)
        else:
            engine = registry.REGISTRY[sampler]
            ok, why = engine.supports(model, self.spec, latent_sampler=latent_sampler)
            if not ok:
                raise ValueError(f"`sampler={sampler!r}` cannot sample this model: {why}")
            self.sampler, self.reason = sampler, f"requested ({why})"
        engine = registry.REGISTRY[self.sampler]
        self.engine = engine(model, self.spec, latent_sampler=latent_sampler)
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
        an engine that reads the missing cells at every call (the Gibbs engine) takes another
        pattern.
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
        same = old.shape == observed.shape and not (old != observed).any()
        if not same and not self.engine.any_missing_pattern:
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
        draws, tune : int or None, default None
            Draws per chain and tuning iterations. None: the engine's default (the Gibbs
            engine decides, and extends the chains until converged; 1,000 for the others; see
            :func:`mixtures.sample`).
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
            Passed to the engine: ``tempering``, ``init``, ``budget``, ``moves`` for Gibbs;
            ``cores``, ``target_accept``, ``step`` for PyMC; ``backend`` for nutpie (see
            :func:`mixtures.sample`).

        Returns
        -------
        arviz.InferenceData
        """
        check_draws(draws, tune, chains)
        run = self._prepare(y, draws, tune, progressbar)
        t0 = time.perf_counter()
        raw = self._run(chains=chains, random_seed=one_seed(random_seed), **run, **kwargs)
        self.n_fits += 1
        idata = finish(
            raw,
            self.model,
            self.spec,
            sampler=self.sampler,
            reason=raw.reason or self.reason,
            seconds=time.perf_counter() - t0,
            log_likelihood=log_likelihood,
        )
        if warn:
            warn_convergence(idata)
        return idata

    def _prepare(self, y, draws, tune, progressbar) -> dict:
        """Set `y` if given and check it; return the run's draws, tune and progressbar."""
        engine = self.engine
        draws = engine.default_draws if draws is None else draws
        tune = engine.default_tune if tune is None else tune
        if y is not None:
            self.set_data(y)
        check_degenerate(self.model["y_data"].get_value(), self.spec)
        if progressbar is None:
            progressbar = default_progressbar()
        if progressbar and engine.announce:  # say which engine runs, and why
            print(f"mixtures: sampling with {self.sampler!r}: {self.reason}", file=sys.stderr)
        return {"draws": draws, "tune": tune, "progressbar": progressbar}

    def _run(self, **kwargs):
        """Run the engine under one Ctrl-C guard; return its :class:`RawDraws`."""
        # Divergent trajectories overflow exp() inside PyTensor's Python ops; PyMC treats the
        # non-finite log-density as a divergence, so NumPy's warnings are noise here.
        with (
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
            stop_on_interrupt(f"Sampling with {self.sampler!r}") as flag,
        ):
            if takes_option(self.engine, "callback"):  # PyMC's loop swallows Ctrl-C per chain
                kwargs.setdefault("callback", flag.callback)
            return self.engine.sample(**kwargs)


def check_draws(draws, tune, chains) -> None:
    """Refuse draws, tune or chains that are not non-negative integers (None: automatic)."""
    for name, val in (("draws", draws), ("tune", tune), ("chains", chains)):
        if name in ("draws", "tune") and val is None:
            continue
        check_integer(val, name, minimum=0)
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
    if sampler not in registry.SAMPLERS:
        raise ValueError(
            f"`sampler` should be one of {list(registry.SAMPLERS)}, but got {sampler!r}"
        )
    if latent_sampler not in ("gibbs", "nuts"):
        raise ValueError(
            f"`latent_sampler` should be 'gibbs' or 'nuts', but got {latent_sampler!r}"
        )


def compile_model(model: pm.Model, *, sampler: str = "auto", latent_sampler: str = "gibbs"):
    """Bind `model` to one engine once; refit it with ``.sample(y_new)``.

    Parameters
    ----------
    model : pymc.Model
        A model from a `mixtures` factory.
    sampler : {"auto", "gibbs", "mfm", "pymc", "nutpie", "numpyro"}, default "auto"
        The engine; ``"auto"`` follows :func:`~mixtures.engines.registry.choose_sampler`.
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
