"""Sampling engines, the ``"auto"`` rule, and compiled models that refit without recompiling.

:func:`compile_model` returns a :class:`CompiledMixture`: a model bound to one engine, with
that engine's compiled functions kept, so ``compiled.sample(y_new)`` refits on new data of any
length without compiling again. :func:`mixtures.sample` keeps one such handle per model and
engine, so calling it twice on the same model compiles once.

Engines (``sampler=``):

``"gibbs"``
    Data augmentation for the univariate factories: the assignments are sampled explicitly
    by :class:`~mixtures.AssignmentGibbs` and the parameters by
    :class:`~mixtures.ConjugateMixtureGibbs`, inside PyMC's sampling loop. For a marginalised
    model this runs on its latent twin (the same factory with ``marginalized=False``) and
    stores only the continuous parameters, whose posterior is the marginalised model's.
``"pymc"``
    PyMC's own loop: NUTS for a marginalised model (its compiled step kept between fits); for a
    latent model, PyMC with the steps :func:`mixtures.sample` chooses.
``"nutpie"``
    nutpie (``pip install mixtures[fast]``), marginalised models only; the compiled model is
    refitted with ``with_data``.
``"numpyro"``
    NumPyro's NUTS through ``pm.sample(nuts_sampler="numpyro")``; marginalised models only.
``"auto"``
    See :func:`choose_sampler`.
"""

from __future__ import annotations

import importlib.util
import os
import time
import weakref

import arviz as az
import numpy as np
import pymc as pm
from pymc.blocking import DictToArrayBijection
from pymc.initial_point import make_initial_point_fns_per_chain
from pymc.step_methods.hmc import quadpotential

from mixtures._validation import check_observations
from mixtures.assignments import AssignmentGibbs
from mixtures.conjugate import (
    ConjugateMixtureGibbs,
    MvConjugateGibbs,
    conjugate_vars,
    mv_conjugate_vars,
)
from mixtures.models import model_spec, rebuild

__all__ = ["SAMPLERS", "CompiledMixture", "available_samplers", "choose_sampler", "compile_model"]

SAMPLERS = ("auto", "pymc", "gibbs", "nutpie", "numpyro")
_EXTERNAL = ("nutpie", "numpyro")
_MODULE_OF = {"nutpie": "nutpie", "numpyro": "numpyro"}

#: Handles kept by :func:`mixtures.sample`, per model and engine (dropped with the model).
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def available_samplers() -> dict[str, bool]:
    """Return which engines can run here (``nutpie`` and ``numpyro`` are optional extras)."""
    out = {"pymc": True, "gibbs": True}
    for name in _EXTERNAL:
        out[name] = importlib.util.find_spec(_MODULE_OF[name]) is not None
    return out


def default_progressbar() -> bool:
    """Progress bars are on unless the environment variable ``MIXTURES_PROGRESSBAR`` is 0."""
    return os.environ.get("MIXTURES_PROGRESSBAR", "1").strip().lower() not in ("0", "false", "no")


def is_latent(model: pm.Model) -> bool:
    """Whether `model` keeps its assignments as the free variable ``assignment``."""
    return "assignment" in model.named_vars and model["assignment"] in model.free_RVs


_COVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _gibbs_covers(model: pm.Model) -> bool:
    """Whether the latent twin of `model` is sampled by Gibbs steps alone (no NUTS).

    Decided once per model (it builds the twin), not on every :func:`mixtures.sample` call.
    """
    if model not in _COVERS:
        latent = model if is_latent(model) else rebuild(model, marginalized=False)
        taken = {"assignment", *(v.name for v in conjugate_vars(latent))}
        _COVERS[model] = all(v.name in taken for v in latent.free_RVs)
    return _COVERS[model]


def choose_sampler(model: pm.Model) -> tuple[str, str]:
    """Pick the engine for ``sampler="auto"`` and say why.

    The rule comes from ``bench/speed.py`` and ``bench/latent_step.py`` (figures in
    ``bench/RESULTS.md``):

    1. a model built by a univariate factory whose continuous parameters all have conjugate
       Gibbs updates (Dirichlet weights, Normal means, any sd prior) goes to ``"gibbs"``: it
       compiles in about a second and gave the highest ESS per second at every N measured;
    2. a latent model otherwise goes to ``"pymc"`` (Gibbs for the assignments, NUTS for the
       rest), the only engine that samples discrete variables;
    3. a marginalised model otherwise goes to ``"nutpie"`` if it is installed and either a
       nutpie compilation of this model is already cached, or N >= 2,000 (where its faster
       gradient repays its 15-40 s compile), and to ``"pymc"`` if not.

    Parameters
    ----------
    model : pymc.Model
        A model from a `mixtures` factory.

    Returns
    -------
    (str, str)
        The engine's name and the reason, as recorded in ``posterior.attrs``.
    """
    spec = model_spec(model)
    if spec is not None and _gibbs_covers(model):
        return "gibbs", "univariate mixture with conjugate priors: data-augmentation Gibbs"
    if is_latent(model):
        return "pymc", "latent model: Gibbs for the assignments, NUTS for the rest"
    n_obs = int(model["y_data"].get_value().shape[0]) if "y_data" in model.named_vars else 0
    if available_samplers()["nutpie"]:
        if any(key[0] == "nutpie" for key in _CACHE.get(model, {})):
            return "nutpie", "nutpie compilation of this model cached"
        if n_obs >= 2000:
            return "nutpie", f"N = {n_obs} >= 2000 and nutpie installed"
    return "pymc", "marginalised model, small N or nutpie not installed: PyMC NUTS"


def _check_sampler(model: pm.Model, sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"`sampler` should be one of {list(SAMPLERS)}, but got {sampler!r}")
    if sampler in _EXTERNAL:
        if is_latent(model):
            raise ValueError(
                f"`sampler={sampler!r}` should get a marginalised model (NUTS has no discrete "
                "steps), but got a latent one; build it with marginalized=True"
            )
        if not available_samplers()[sampler]:
            raise ValueError(
                f"`sampler={sampler!r}` needs the package {_MODULE_OF[sampler]!r}, which is not "
                "installed: pip install 'mixtures[fast]'"
            )
    if sampler == "gibbs" and model_spec(model) is None and not is_latent(model):
        raise ValueError(
            "`sampler='gibbs'` should get a model from a mixtures factory or a latent model, "
            "but got another marginalised model"
        )


def _seed(random_seed) -> int | None:
    """One integer seed from `random_seed` (int, Generator or None)."""
    if random_seed is None:
        return None
    return int(np.random.default_rng(random_seed).integers(2**30))


def _chain_seeds(seed: int | None, chains: int) -> list[int]:
    """One integer seed per chain, reproducible from `seed`."""
    return [int(s) for s in np.random.default_rng(seed).integers(2**30, size=chains)]


def _set_data(model: pm.Model, y: np.ndarray) -> None:
    """Put `y` into the model's ``y_data`` and refresh the ordered means' fallback start."""
    with model:
        pm.set_data({"y_data": y}, coords={"obs_id": np.arange(y.shape[0])})
    if "means" in model.named_vars and model["means"] in model.free_RVs:
        transform = model.rvs_to_transforms.get(model["means"])
        if hasattr(transform, "set_start_from"):
            transform.set_start_from(y)


class CompiledMixture:
    """A mixture model bound to one engine, compiled once and refitted on new data.

    Build it with :func:`compile_model`. Compiled functions (PyMC step functions, nutpie's
    compiled model) are kept between calls of :meth:`sample`; the data go in through the
    model's ``pm.Data("y_data")``, so N may change between fits.

    Attributes
    ----------
    model : pymc.Model
        The model (its data are those of the latest fit).
    sampler : str
        The engine, resolved from ``"auto"`` if that was asked.
    reason : str
        Why that engine (for ``"auto"``), else ``"requested"``.
    """

    def __init__(self, model: pm.Model, sampler: str = "auto", *, latent_sampler="gibbs"):
        _check_sampler(model, sampler)
        self.model = model
        if sampler == "auto":
            self.sampler, self.reason = choose_sampler(model)
        else:
            self.sampler, self.reason = sampler, "requested"
        self.latent_sampler = latent_sampler
        self._target = model
        if self.sampler == "gibbs" and not is_latent(model):
            self._target = rebuild(model, marginalized=False)
        self._steps = None  # built on first use, then kept
        self._step_names = ""
        self._nutpie = None
        self.compile_seconds = 0.0
        self.n_fits = 0

    def __repr__(self) -> str:
        return (
            f"CompiledMixture(sampler={self.sampler!r}, fits={self.n_fits}, "
            f"compile_seconds={self.compile_seconds:.2f})"
        )

    def set_data(self, y) -> None:
        """Replace the observations (any length) for the next :meth:`sample`."""
        y = check_observations(y, ndim=self.model["y_data"].ndim)
        for model in {id(m): m for m in (self.model, self._target)}.values():
            _set_data(model, y)

    # ------------------------------------------------------------------ steps
    def _build_steps(self, target_accept: float, compile_kwargs=None):
        model = self._target
        t0 = time.perf_counter()
        with model:
            if is_latent(model):
                steps = [AssignmentGibbs([model["assignment"]])]
                names = "AssignmentGibbs[assignment]"
                gibbs, step_class = [], None
                if self.latent_sampler == "gibbs":
                    gibbs, step_class = conjugate_vars(model), ConjugateMixtureGibbs
                    if not gibbs:
                        gibbs, step_class = mv_conjugate_vars(model), MvConjugateGibbs
                if gibbs:
                    steps.append(step_class(gibbs))
                    names += f" + {step_class.__name__}[{', '.join(v.name for v in gibbs)}]"
                taken = {"assignment", *(v.name for v in gibbs)}
                rest = [
                    model.values_to_rvs[v]
                    for v in model.continuous_value_vars
                    if model.values_to_rvs[v].name not in taken
                ]
                if rest:
                    steps.append(
                        pm.NUTS(rest, target_accept=target_accept, compile_kwargs=compile_kwargs)
                    )
                    names += f" + NUTS[{', '.join(v.name for v in rest)}]"
            else:
                steps = [pm.NUTS(target_accept=target_accept, compile_kwargs=compile_kwargs)]
                names = "NUTS"
        self.compile_seconds += time.perf_counter() - t0
        self._steps, self._step_names, self._target_accept = steps, names, target_accept
        # PyMC leaves a step in its tuned state after a run; each fit starts from this one.
        self._fresh_states = [step.sampling_state for step in steps]
        self._fresh_potentials = [getattr(step, "potential", None) for step in steps]

    def _pymc_fit(self, draws, tune, chains, random_seed, progressbar, kwargs):
        model = self._target
        target_accept = kwargs.pop("target_accept", 0.8)
        compile_kwargs = kwargs.pop("compile_kwargs", None)
        key = (target_accept, repr(compile_kwargs))
        if self._steps is None or self._step_key != key:
            self._build_steps(target_accept, compile_kwargs)
            self._step_key = key
        steps = self._steps
        for step, state, potential in zip(steps, self._fresh_states, self._fresh_potentials):
            if potential is not None:  # the object the saved state belongs to
                step.potential = step.integrator._potential = potential
            step.sampling_state = state
        seed = _seed(random_seed)
        initvals = kwargs.pop("initvals", None)
        if len(steps) == 1 and isinstance(steps[0], pm.NUTS):
            initvals = self._nuts_init(steps[0], _chain_seeds(seed, chains), initvals)
        var_names = None
        if self._target is not self.model:  # latent twin: keep the continuous parameters only
            var_names = [v.name for v in self.model.unobserved_RVs]
        kwargs.setdefault("compute_convergence_checks", False)
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=seed,
                progressbar=progressbar,
                step=steps if len(steps) > 1 else steps[0],
                initvals=initvals,
                var_names=var_names,
                **kwargs,
            )
        return idata, self._step_names

    def _nuts_init(self, step, seeds, overrides=None):
        """PyMC's ``jitter+adapt_diag`` start, reusing the compiled step (no new compile).

        `overrides` (the user's ``initvals``, e.g. an EM solution) replace the default start
        before the jitter, as in :func:`pymc.sample`.
        """
        model = self._target
        ipfns = make_initial_point_fns_per_chain(
            model=model, overrides=overrides, jitter_rvs=set(model.free_RVs), chains=len(seeds)
        )
        step._logp_dlogp_func.set_extra_values({})
        points = []
        for ipfn, seed in zip(ipfns, seeds):
            rng = np.random.default_rng(seed)
            for _ in range(20):
                point = ipfn(seed)
                if np.isfinite(step._logp_dlogp_func(DictToArrayBijection.map(point))[0]):
                    break
                seed = int(rng.integers(2**30))
            points.append(point)
        data = np.array([DictToArrayBijection.map(p).data for p in points])
        mean = data.mean(axis=0)
        step.potential = quadpotential.QuadPotentialDiagAdapt(
            mean.size, mean, np.ones_like(mean), 10, rng=seeds[0]
        )
        step.integrator._potential = step.potential
        return [self._constrained(p) for p in points]

    def _constrained(self, point):
        """Map a point of value variables back to the random variables' own (named) values."""
        if not hasattr(self, "_backward_fn"):
            model = self._target
            self._backward_fn = model.compile_fn(
                model.replace_rvs_by_values(model.free_RVs),
                inputs=model.value_vars,
                on_unused_input="ignore",
            )
        values = self._backward_fn(point)
        return {rv.name: v for rv, v in zip(self._target.free_RVs, values)}

    # ------------------------------------------------------------ external
    def _nutpie_fit(self, draws, tune, chains, random_seed, progressbar, kwargs):
        import nutpie

        backend = kwargs.pop("backend", "numba")
        if self._nutpie is None or self._nutpie[0] != backend:
            t0 = time.perf_counter()
            compiled = nutpie.compile_pymc_model(
                self.model,
                backend=backend,
                gradient_backend="jax" if backend == "jax" else "pytensor",
                freeze_model=False,  # keep y_data a data variable, for with_data refits
            )
            self.compile_seconds += time.perf_counter() - t0
            self._nutpie = (backend, compiled)
        compiled = self._nutpie[1].with_data(y_data=self.model["y_data"].get_value())
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=_seed(random_seed),
            progress_bar=progressbar,
            save_warmup=False,
            **kwargs,
        )
        return idata, f"nutpie NUTS ({backend})"

    def _numpyro_fit(self, draws, tune, chains, random_seed, progressbar, kwargs):
        kwargs.setdefault("compute_convergence_checks", False)
        with self.model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=_seed(random_seed),
                progressbar=progressbar,
                nuts_sampler="numpyro",
                **kwargs,
            )
        return idata, "numpyro NUTS (JAX)"

    # ---------------------------------------------------------------- public
    def sample(
        self,
        y=None,
        *,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed=None,
        progressbar: bool | None = None,
        **kwargs,
    ) -> az.InferenceData:
        """Sample the posterior, on new observations `y` if given, reusing compiled functions.

        Parameters
        ----------
        y : array-like of shape (n_obs,), optional
            New observations (any length); default: the model's current data.
        draws, tune, chains : int
            As in :func:`pymc.sample`.
        random_seed : int or numpy.random.Generator, optional
            Makes the run reproducible (for every engine).
        progressbar : bool, optional
            Default: on, unless the environment variable ``MIXTURES_PROGRESSBAR`` is ``0``.
        **kwargs
            Passed to the engine (``cores``, ``target_accept`` for PyMC; ``backend`` for
            nutpie, ...).

        Returns
        -------
        arviz.InferenceData
            Groups ``posterior`` and ``sample_stats`` (plus ``observed_data`` and
            ``constant_data``); :func:`mixtures.sample` adds the log-likelihood and checks.
        """
        if y is not None:
            self.set_data(y)
        if progressbar is None:
            progressbar = default_progressbar()
        kwargs = dict(kwargs)
        fit = {
            "pymc": self._pymc_fit,
            "gibbs": self._pymc_fit,
            "nutpie": self._nutpie_fit,
            "numpyro": self._numpyro_fit,
        }[self.sampler]
        # Divergent trajectories overflow exp() inside PyTensor's Python ops; PyMC treats the
        # non-finite log-density as a divergence, so NumPy's warnings are noise here.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            idata, steps = fit(draws, tune, chains, random_seed, progressbar, kwargs)
        self.n_fits += 1
        _attach_data(idata, self.model)
        idata.posterior.attrs["mixtures_sampler"] = self.sampler
        idata.posterior.attrs["mixtures_sampler_reason"] = self.reason
        idata.posterior.attrs["mixtures_steps"] = steps
        return idata


def _attach_data(idata: az.InferenceData, model: pm.Model) -> None:
    """Give every engine's result the same observed_data / constant_data groups."""
    y = model["y_data"].get_value()
    y_dims = ["obs_id", "feature"][: y.ndim]
    coords = {
        name: np.asarray(model.coords[name])
        for name in ("component", "feature")
        if model.coords.get(name) is not None
    }
    coords["obs_id"] = np.arange(y.shape[0])
    observed = az.dict_to_dataset(
        {"y": y}, coords=coords, dims={"y": y_dims}, library=pm, default_dims=[]
    )
    constants, dims = {"y_data": y}, {"y_data": y_dims}
    for var in model.data_vars:
        if var.name != "y_data":
            constants[var.name] = var.get_value()
            dims[var.name] = list(model.named_vars_to_dims.get(var.name, ()))
    constant = az.dict_to_dataset(constants, coords=coords, dims=dims, library=pm, default_dims=[])
    for group in ("observed_data", "constant_data"):
        if group in idata.groups():
            delattr(idata, group)
    idata.add_groups(observed_data=observed, constant_data=constant)


def compile_model(model: pm.Model, *, sampler: str = "auto", latent_sampler: str = "gibbs"):
    """Compile `model` once for one engine; refit it with ``.sample(y_new)``.

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
    A refit changes the data, not the model: data-scaled default priors (see
    :func:`~mixtures.models.default_priors`) stay those of the data the model was built on.
    Give explicit ``priors`` to the factory when refitting on data of another scale.

    Examples
    --------
    >>> import mixtures, numpy as np
    >>> y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    >>> compiled = mixtures.compile_model(mixtures.full_mixture(y, 3, marginalized=True))
    >>> compiled.sampler
    'gibbs'
    >>> rng = np.random.default_rng(0)
    >>> fits = [compiled.sample(rng.choice(y, y.size)) for _ in range(3)]  # doctest: +SKIP
    """
    if not isinstance(model, pm.Model):
        raise ValueError(f"`model` should be a pymc.Model, but got {type(model).__name__}")
    if latent_sampler not in ("gibbs", "nuts"):
        raise ValueError(
            f"`latent_sampler` should be 'gibbs' or 'nuts', but got {latent_sampler!r}"
        )
    return CompiledMixture(model, sampler, latent_sampler=latent_sampler)


def cached(model: pm.Model, sampler: str, latent_sampler: str) -> CompiledMixture:
    """Return the handle :func:`mixtures.sample` keeps for (`model`, engine); make it once."""
    resolved = choose_sampler(model)[0] if sampler == "auto" else sampler
    per_model = _CACHE.setdefault(model, {})
    key = (resolved, latent_sampler)
    if key not in per_model:
        per_model[key] = compile_model(model, sampler=sampler, latent_sampler=latent_sampler)
    return per_model[key]
