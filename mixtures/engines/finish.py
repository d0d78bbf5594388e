"""One finishing function: every engine's output becomes the same InferenceData.

Groups ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data`` and (see
``log_likelihood``) ``log_likelihood``; ``posterior.attrs`` record the engine
(``mixtures_sampler``), why (``mixtures_sampler_reason``), the steps (``mixtures_steps``), the
model's resolved spec as JSON (``mixtures_spec``) and the wall time (``mixtures_seconds``).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm

from mixtures.analysis.loglik import add_log_likelihood
from mixtures.engines.base import RawDraws
from mixtures.model.missing import missing_cells

__all__ = ["attach_data", "finish"]


def finish(raw: RawDraws, model, spec, *, sampler, reason, seconds, log_likelihood="auto"):
    """Turn an engine's raw draws into the library's InferenceData.

    Parameters
    ----------
    raw : RawDraws
        A PyMC-based engine's ``trace`` (its groups other than ``posterior`` and
        ``sample_stats`` are dropped and rebuilt here), or our engines' ``posterior`` and
        ``stats`` arrays with extra ``attrs``.
    model : pymc.Model
    spec : MixtureSpec or None
    sampler, reason : str
    seconds : float
        Wall time of the run.
    log_likelihood : bool or "auto"

    Returns
    -------
    arviz.InferenceData
    """
    if raw.trace is not None:
        idata = raw.trace
        for group in set(idata.groups()) - {"posterior", "sample_stats"}:
            delattr(idata, group)
    else:
        idata = _from_arrays(model, raw.posterior, raw.stats)
    extra = raw.attrs
    attach_data(idata, model)
    idata.posterior.attrs.update(
        mixtures_sampler=sampler,
        mixtures_sampler_reason=reason,
        mixtures_steps=raw.steps,
        mixtures_seconds=float(seconds),
        **{k: v if not isinstance(v, list) else np.asarray(v) for k, v in extra.items()},
    )
    # PyMC's name for it, set by every engine (ours: the sampling loop alone)
    idata.posterior.attrs.setdefault(
        "sampling_time", float(extra.get("mixtures_sampling_seconds", seconds))
    )
    if spec is not None:
        idata.posterior.attrs["mixtures_spec"] = spec.to_json()
    add_log_likelihood(idata, log_likelihood)
    return idata


def _from_arrays(model, posterior: dict, stats: dict) -> az.InferenceData:
    coords = {
        "component": np.asarray(model.coords["component"]),
        "obs_id": np.arange(model["y_data"].get_value().shape[0]),
    }
    dims = {"weights": ["component"], "means": ["component"], "assignment": ["obs_id"]}
    dims.update(nu=["component"], precision_weights=["obs_id"])  # Student-t components
    dims["sigma"] = ["component"] if posterior.get("sigma", np.empty((1, 1))).ndim == 3 else []
    if "chol_cov" in posterior:  # multivariate
        for name in ("feature", "feature_bis"):
            coords[name] = np.asarray(model.coords[name])
        dims["means"] = ["component", "feature"]
        dims["sigma"] = ["component", "feature"]
        dims["chol_cov"] = ["component", "feature", "feature_bis"]
    if "imputed" in posterior:  # the draws of the missing cells (mixtures.model.missing)
        dims["imputed"] = ["missing_cell"]
    stat_dims = {}
    if "tempered_loglik" in stats:
        n_temps = stats["tempered_loglik"].shape[-1]
        coords["temperature"] = np.arange(n_temps)
        coords["temperature_pair"] = np.arange(n_temps - 1)
        stat_dims = {"tempered_loglik": ["temperature"], "swap_accept": ["temperature_pair"]}
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=stats,
        coords=coords,
        dims={**dims, **stat_dims},
    )
    if "imputed" in posterior:
        rows, cols = missing_cells(model["observed_cells"].get_value())
        features = np.asarray(model.coords["feature"])[cols]
        idata.posterior = idata.posterior.assign_coords(
            missing_row=("missing_cell", rows), missing_feature=("missing_cell", features)
        )
    return idata


def attach_data(idata: az.InferenceData, model: pm.Model) -> None:
    """Give every engine's result the same observed_data / constant_data groups."""
    y = model["y_data"].get_value()
    if "observed_cells" in model.named_vars:  # missing cells are NaN again
        y = np.where(model["observed_cells"].get_value().astype(bool), y, np.nan)
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
