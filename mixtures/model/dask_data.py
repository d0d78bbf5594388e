"""Models whose data are a ``dask.array``: the data stay on the cluster, the model holds numbers.

The factories (:func:`mixtures.full_mixture`, :func:`mixtures.shared_sd_mixture`,
:func:`mixtures.known_params_mixture`, :func:`mixtures.mv_mixture`) accept a ``dask.array``, a
dask dataframe column (``ddf["x"]``) or columns (``ddf[["x1", "x2"]]``). For such data
:func:`from_dask` runs, at build time, one pass of Dask reductions over the data (the number of
rows, non-finite values, the mean and sd per feature and, for the sd floor of tied data, the
smallest gap between distinct values of each chunk) and builds the model with the factory's own
code from these numbers. Nothing of size N reaches this process.

**What the model holds.** A plain ``pm.Model`` with the factory's variables, priors, names and
dims, but whose ``y_data`` is an empty placeholder (0 rows: it cannot hold N values); the
data-scaled priors are numbers in its spec (:func:`mixtures.spec_of`), whose ``built_on``
records ``n_obs``, ``mean``, ``sd`` and ``"storage": "dask"``; the ``dask.array`` itself is kept
on the model object (:func:`dask_data_of`). Only ``mixtures.sample(model, client=client)``
samples it (:mod:`mixtures.engines.distributed`). Every other engine and function refuses it
with a message that says so (:func:`mixtures.engines.check_model`), and the model carries a
``pm.Potential`` named :data:`GUARD` of value -inf, so that a bare ``pm.sample`` fails at its
first evaluation instead of sampling the prior.
"""

from __future__ import annotations

import math

import numpy as np

from mixtures.model.spec import attach, auto_floor_applies, spec_of
from mixtures.model.validation import check_k

__all__ = ["DASK_ATTR", "GUARD", "dask_data_of", "from_dask", "is_dask_data"]

#: The attribute of a ``pm.Model`` that holds its ``dask.array`` (set by :func:`from_dask`).
DASK_ATTR = "mixtures_dask_data"
#: The name of the -inf potential that stops PyMC's own samplers on a dask-backed model.
GUARD = "data_on_dask_cluster_use_mixtures_sample_with_client"


def is_dask_data(obj) -> bool:
    """Whether `obj` is a Dask collection (array, dataframe, series); imports nothing."""
    return type(obj).__module__.split(".")[0] == "dask"


def dask_data_of(model):
    """Return the ``dask.array`` a model was built on, or None for a model holding its data."""
    return getattr(model, DASK_ATTR, None)


def as_dask_array(data, ndim: int, name: str):
    """Return `data` as a float64 ``dask.array`` (rows chunked, features whole) and its names.

    A dask dataframe's column names become the ``feature`` coords (2-D); chunk sizes unknown
    to Dask (a dataframe's partitions) are computed first.
    """
    import dask.array as da

    names = None
    if hasattr(data, "to_dask_array"):  # a dask dataframe or series
        names = [str(c) for c in data.columns] if hasattr(data, "columns") else None
        data = data.to_dask_array(lengths=True)
    if not isinstance(data, da.Array):
        raise ValueError(
            f"`{name}` should be a dask.array or dask dataframe column(s), "
            f"but got {type(data).__name__}"
        )
    if data.dtype.kind not in "biuf":
        raise ValueError(f"`{name}` should be numeric, but got dtype {data.dtype}")
    if data.ndim != ndim:
        expected = "(n_obs,)" if ndim == 1 else "(n_obs, n_features)"
        raise ValueError(
            f"`{name}` should be a {ndim}-D array of shape {expected}, "
            f"but got an array of shape {data.shape}"
        )
    if any(math.isnan(c) for c in data.chunks[0]):
        data = data.compute_chunk_sizes()
    data = data.astype(np.float64)
    if ndim == 2:
        data = data.rechunk({1: -1})
    return data, names


def _block_ties(block):
    """(has ties, smallest gap between distinct values) of one chunk, shape (1, 2)."""
    values = np.unique(block)
    gap = float(np.min(np.diff(values))) if values.size > 1 else np.inf
    return np.array([[float(values.size < block.size), gap]])


def data_facts(data, *, ties: bool) -> dict:
    """Reduce the data once: rows, non-finite count, mean and sd (per feature), chunk ties."""
    import dask
    import dask.array as da

    todo = {
        "bad": (~da.isfinite(data)).sum(),
        "nan": da.isnan(data).sum(),
        "mean": data.mean(axis=0),
        "sd": data.std(axis=0),
    }
    if ties:
        chunks = ((1,) * data.numblocks[0], (2,))
        todo["ties"] = data.map_blocks(_block_ties, chunks=chunks, new_axis=1, dtype=float)
    (facts,) = dask.compute(todo)
    facts["n_obs"] = int(data.shape[0])
    return facts


def chunk_tie_floor(ties: np.ndarray) -> float:
    """Return the sd floor of tied data from the chunks (as :func:`tie_floor` does in memory).

    A chunk with repeated values has ties; the resolution is the smallest gap between the
    distinct values of a chunk (at least the global one; equal to it for data rounded to a
    resolution, whose every large chunk shows that gap). Ties only across chunks are missed.
    """
    if not ties[:, 0].any() or not np.isfinite(ties[:, 1]).any():
        return 0.0
    return float(np.min(ties[:, 1]) / np.sqrt(12.0))


def _proxy(mean, sd, rows: int) -> np.ndarray:
    """`rows` (even) points whose mean and sd per feature are `mean` and `sd`: mean -/+ sd."""
    mean, sd = np.atleast_1d(mean), np.atleast_1d(sd)
    signs = np.tile([-1.0, 1.0], rows // 2)[:, None]
    return mean[None, :] + signs * sd[None, :]


def _sigma_floor(sigma_floor, priors, known_sigma: bool, facts: dict):
    """Resolve ``sigma_floor="auto"`` from the chunks' ties (as the factories do from all data)."""
    if not (isinstance(sigma_floor, str) and sigma_floor == "auto"):
        return sigma_floor  # the factory checks it
    entry = (priors or {}).get("sigma", {}) if isinstance(priors, dict) else {}
    dist = entry.get("dist", "HalfNormal") if isinstance(entry, dict) else "HalfNormal"
    if known_sigma or not auto_floor_applies(dist):
        return 0.0
    return chunk_tie_floor(facts["ties"])


def from_dask(factory, data, k=None, /, **kwargs):
    """Build `factory`'s model for dask `data` (see the module docstring).

    Parameters
    ----------
    factory : callable
        The public factory (``full_mixture``, ``shared_sd_mixture``, ``known_params_mixture``
        or ``mv_mixture``), called on a small proxy with the data's moments.
    data : dask.array.Array or dask dataframe column(s)
    k : int, optional
        Components (``known_params_mixture`` takes ``means`` and ``sds`` in `kwargs` instead).
    **kwargs
        The factory's other arguments.

    Returns
    -------
    pymc.Model
    """
    mv = factory.__name__ == "mv_mixture"
    if kwargs.get("labels") is not None:
        raise ValueError(
            f"`labels` should be None for dask data (known labels are not supported on a "
            f"cluster yet), but got {type(kwargs['labels']).__name__}"
        )
    arr, names = as_dask_array(data, 2 if mv else 1, "X" if mv else "y")
    floor_auto = not mv and factory.__name__ != "known_params_mixture"
    floor_auto = floor_auto and kwargs.get("sigma_floor", "auto") == "auto"
    facts = _checked_facts(arr, "X" if mv else "y", floor_auto and kwargs.get("sigma") is None)
    args = () if k is None else (check_k(k, facts["n_obs"]),)
    rows = 2 * max(1, math.ceil(max(k or len(kwargs.get("means", ())), 2) / 2))
    proxy = _proxy(facts["mean"], facts["sd"], rows)
    if not mv:
        proxy = proxy[:, 0]
        if factory.__name__ != "known_params_mixture":
            kwargs["sigma_floor"] = _sigma_floor(
                kwargs.get("sigma_floor", "auto"),
                kwargs.get("priors"),
                kwargs.get("sigma") is not None,
                facts,
            )
    if mv and names is not None:
        import pandas as pd

        proxy = pd.DataFrame(proxy, columns=names)
    model = _emptied(factory(proxy, *args, **kwargs), arr.shape[1:])
    mean, sd = facts["mean"], facts["sd"]
    built_on = {
        "n_obs": facts["n_obs"],
        "mean": mean.tolist() if mv else float(mean),
        "sd": sd.tolist() if mv else float(sd),
        "storage": "dask",
        "chunks": len(arr.chunks[0]),
    }
    attach(model, spec_of(model).replace(built_on=built_on))
    setattr(model, DASK_ATTR, arr)
    return model


def _checked_facts(arr, name: str, ties: bool) -> dict:
    """Return the data's facts (:func:`data_facts`); refuse too few rows or non-finite values."""
    facts = data_facts(arr, ties=ties)
    n_obs = facts["n_obs"]
    if n_obs < 2:
        raise ValueError(f"`{name}` should contain at least 2 observations, but got {n_obs}")
    if facts["bad"]:
        nan = int(facts["nan"])
        raise ValueError(
            f"`{name}` should contain only finite values, but got {nan} NaN and "
            f"{int(facts['bad']) - nan} infinite value(s); drop or impute them explicitly "
            "before fitting"
        )
    return facts


def _emptied(model, row_shape: tuple):
    """Empty the proxy's data (the chunks are the data) and guard against local sampling."""
    import pymc as pm
    import pytensor.tensor as pt

    with model:
        pm.set_data({"y_data": np.empty((0,) + row_shape)}, coords={"obs_id": np.arange(0)})
        pm.Potential(GUARD, pt.as_tensor(-np.inf))
    return model
