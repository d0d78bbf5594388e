"""Many fits at once: one model spec, many data sets, on this process or on a Dask cluster.

:func:`fit_many` fits one model (its spec: priors, ``k``, variant) to many data sets. Three
backends run the same code per fit:

``"serial"``
    In this process, one fit after another.
``"processes"`` (the default)
    A :class:`dask.distributed.LocalCluster` of single-threaded worker processes, started for
    the call and closed after it.
``client=...``
    Any :class:`dask.distributed.Client` (a ``LocalCluster``, an HPC or Kubernetes cluster).

Each task ships the pickled model (~100 KB) and one data set; each worker thread compiles the
model once (:func:`mixtures.compile_model`) and refits it on every data set it receives. A
fit's seed is derived from ``random_seed`` and the data set's name, so the same seed gives the
same draws whichever backend ran it, in whatever order.

With ``results_dir``, every finished fit is written at once (a JSON record with its summary
rows, timings and any error; optionally its NetCDF), each file whole or not at all, so an
interrupted run resumes where it stopped, and a failed fit is recorded without stopping the
others. Dask re-runs the fits of a worker that dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
import traceback
import urllib.parse
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import WorkerPlugin

from mixtures._docs import fill_doc
from mixtures._io import atomic_write
from mixtures.progress import default_progressbar, progress_bar

__all__ = ["FitResults", "fit_many"]

_PLUGIN = "mixtures-fit-many"
_BACKENDS = ("serial", "processes")
_RECORD_FIELDS = (
    "name", "status", "converged", "seed", "seconds", "sampler", "warnings", "error", "worker"
)  # fmt: skip
#: Below this many data sets (and with one worker) fit_many fits serially by default: measured
#: in bench/many_fits.py, starting a LocalCluster and its workers costs about 12 s here, which
#: two workers win back from about 16 fits of a second each (RESULTS.md, "many fits").
SERIAL_BELOW = 16


# ---------------------------------------------------------------------------------- the fit
def fit_seed(entropy: int, name) -> int:
    """One fit's seed: from the run's entropy and the data set's name (not its position)."""
    key = zlib.crc32(repr(name).encode())
    return int(np.random.SeedSequence([entropy, key]).generate_state(1)[0])


def _run_fit(handle, name, y, seed: int, options: dict, postprocess, want_idata: bool) -> dict:
    """Fit one data set with a compiled handle; never raises for a failed fit (records it)."""
    from mixtures.analysis.diagnostics import ConvergenceWarning
    from mixtures.analysis.summaries import summary_table

    record = {"name": name, "seed": seed, "sampler": handle.sampler, "warnings": []}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = handle.sample(y, random_seed=seed, progressbar=False, **options)
            record["seconds"] = time.perf_counter() - t0
            # r_hat of a quantity constant by construction (k = 1 weights) divides 0 by 0
            with np.errstate(invalid="ignore", divide="ignore"):
                record["summary"] = _summary_rows(summary_table(idata), idata)
                record["output"] = postprocess(idata) if postprocess is not None else None
        record["warnings"] = sorted({str(w.message) for w in caught})
        record["converged"] = not any(
            issubclass(w.category, ConvergenceWarning) for w in caught
        )
        record["status"] = "ok"
        record["idata"] = idata if want_idata else None
    except Exception as exc:  # a failed fit is a result, not the end of the run
        record.update(
            status="failed",
            seconds=time.perf_counter() - t0,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
    return record


def _summary_rows(table: pd.DataFrame, idata) -> list[dict]:
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    rows = []
    for param, row in table.iterrows():
        rows.append({"parameter": param, **row.to_dict(), "divergences": divergences})
    return rows


class _Handles:
    """Compiled handles of one process, one per (model, thread); compiling is serialised."""

    def __init__(self):
        self.handles: dict = {}
        self.lock = threading.Lock()

    def get(self, key: str, model_bytes: bytes, sampler: str):
        slot = (key, sampler, threading.get_ident())
        handle = self.handles.get(slot)
        if handle is None:
            import cloudpickle

            from mixtures.engines import compile_model

            with self.lock:  # PyTensor compilation is not thread-safe
                handle = compile_model(cloudpickle.loads(model_bytes), sampler=sampler)
            self.handles[slot] = handle
        return handle


class _WorkerSetup(WorkerPlugin):
    """Dask worker plugin: a compile directory per worker, one BLAS thread, compiled handles."""

    name = _PLUGIN

    def __init__(self, compile_root: str | None):
        self.compile_root = compile_root
        self.handles = None  # made on the worker (a lock does not pickle)

    def setup(self, worker):
        self.handles = _Handles()
        if self.compile_root and "pytensor" not in sys.modules:
            safe = urllib.parse.quote(str(worker.name), safe="")
            flags = os.environ.get("PYTENSOR_FLAGS", "")
            compiledir = Path(self.compile_root) / f"worker-{safe}"
            os.environ["PYTENSOR_FLAGS"] = f"{flags},base_compiledir={compiledir}".lstrip(",")

    def teardown(self, worker):
        self.handles.handles.clear()


def _dask_fit(key, model_bytes, name, y, seed, options, postprocess, want_idata):
    """Run one fit on a Dask worker (the task)."""
    import numba
    from distributed import get_worker

    worker = get_worker()
    numba.set_num_threads(1)  # one thread per worker; numba's setting is per thread
    handle = worker.plugins[_PLUGIN].handles.get(key, model_bytes, options["sampler"])
    opts = {k: v for k, v in options.items() if k != "sampler"}
    record = _run_fit(handle, name, y, seed, opts, postprocess, want_idata)
    record["worker"] = str(worker.name)
    return record


# ------------------------------------------------------------------------------- data sets
def _iter_datasets(datasets) -> Iterator[tuple[object, np.ndarray]]:
    """(name, array) pairs from a list, a dict, a pandas GroupBy, or a generator."""
    from pandas.core.groupby import DataFrameGroupBy, SeriesGroupBy

    if isinstance(datasets, np.ndarray | pd.DataFrame | pd.Series | str | bytes):
        raise ValueError(
            "`datasets` should be a collection of data sets (a list, a dict of arrays, a "
            f"DataFrame grouped by a column, or a generator), but got one {type(datasets).__name__}"
        )
    if isinstance(datasets, SeriesGroupBy | DataFrameGroupBy):
        for name, group in datasets:
            if isinstance(name, tuple) and len(name) == 1:
                name = name[0]
            yield _plain(name), group.to_numpy()
    elif isinstance(datasets, Mapping):
        for name, values in datasets.items():
            yield _plain(name), np.asarray(values)
    elif isinstance(datasets, Iterable):
        for i, values in enumerate(datasets):
            yield i, np.asarray(values)
    else:
        raise ValueError(
            "`datasets` should be a list, a dict of arrays, a pandas GroupBy or a generator, "
            f"but got {type(datasets).__name__}"
        )


def _plain(name):
    """Return a name as a JSON-safe scalar (NumPy scalars from pandas become Python ones)."""
    if isinstance(name, np.generic):
        name = name.item()
    if not isinstance(name, str | int | float):
        name = str(name)
    return name


def _file_stem(name) -> str:
    return urllib.parse.quote(str(name), safe="") or "%00"


# ------------------------------------------------------------------------- the results dir
def _check_results_dir(root: Path) -> None:
    """Refuse a folder whose files a run would overwrite although an earlier run did not write them.

    A results directory holds ``run.json`` (with the keys ``spec``, ``options`` and
    ``entropy``), ``summary.csv`` and ``fits/``. A folder without such a ``run.json`` may hold
    anything else, but not a ``summary.csv`` or ``run.json`` of its own, nor files in ``fits/``:
    those belong to the user and would be replaced.
    """
    run_file = root / "run.json"
    if run_file.exists():
        try:
            record = json.loads(run_file.read_text())
        except ValueError:
            record = None
        if not isinstance(record, dict) or not {"spec", "options", "entropy"} <= set(record):
            raise ValueError(
                f"`results_dir` should be a new folder or one written by fit_many, but "
                f"{run_file} was not written by fit_many: choose another folder"
            )
        return
    foreign = [p.name for p in (root / "summary.csv", root / "fits") if p.exists()]
    if foreign:
        raise ValueError(
            f"`results_dir` should be a new folder or one written by fit_many, but {root} "
            f"holds {', '.join(foreign)} without fit_many's run.json; those would be "
            "overwritten: choose another folder"
        )


class _Store:
    """The results directory: run.json, fits/<name>.json (+ .nc), summary.csv."""

    def __init__(self, root, run: dict, save_idata: bool):
        self.root = Path(root)
        self.fits = self.root / "fits"
        self.save_idata = save_idata
        run_file = self.root / "run.json"
        _check_results_dir(self.root)
        self.fits.mkdir(parents=True, exist_ok=True)
        if run_file.exists():
            old = json.loads(run_file.read_text())
            for key in ("spec", "options"):
                if old.get(key) != run[key]:
                    raise ValueError(
                        f"`results_dir` should hold a run of the same model and options to "
                        f"resume it, but {run_file} records a different {key}: use a new "
                        "directory"
                    )
            run["entropy"] = old["entropy"]  # the resumed fits get the seeds they would have had
        else:
            atomic_write(run_file, lambda p: p.write_text(json.dumps(run, indent=2)))
        self.run = run

    def done(self) -> dict:
        """Return the records already written (name -> record)."""
        out = {}
        for path in self.fits.glob("*.json"):
            record = json.loads(path.read_text())
            out[_key(record["name"])] = record
        return out

    def write(self, record: dict) -> None:
        stem = _file_stem(record["name"])
        idata = record.pop("idata", None)
        if idata is not None and self.save_idata:
            atomic_write(self.fits / f"{stem}.nc", lambda p: idata.to_netcdf(str(p)))
        body = {k: v for k, v in record.items() if k != "output"}
        if record.get("output") is not None:
            body["output"] = record["output"]
        atomic_write(self.fits / f"{stem}.json", lambda p: p.write_text(_dumps(body)))

    def idata_path(self, name) -> Path:
        return self.fits / f"{_file_stem(name)}.nc"

    def write_summary(self, table: pd.DataFrame) -> None:
        atomic_write(self.root / "summary.csv", lambda p: table.to_csv(p, index=False))


def _dumps(obj) -> str:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    return json.dumps(obj, default=default, allow_nan=True)


def _key(name) -> str:
    """Names compare as their JSON form (a name read back from disk is the one written)."""
    return json.dumps(_plain(name))


# ----------------------------------------------------------------------------- the results
class FitResults(Mapping):
    """What :func:`fit_many` returns: data set name -> InferenceData, plus tables.

    Iterating gives the names of the successful fits, in the order of the data sets.
    InferenceData written to ``results_dir`` are opened (lazily) when asked for.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per fit and parameter: the posterior summary (mean, sd, HDI, MCSE, ESS,
        r_hat), divergences, the fit's seconds, sampler, status and error.
    fits : pandas.DataFrame
        One row per fit: status, seconds, seed, sampler, worker, max r_hat, warnings, error.
    failed : dict
        Name -> error message of each failed fit.
    outputs : dict
        Name -> what ``postprocess`` returned for that fit.
    """

    def __init__(self, records: list[dict], idata: dict, store: _Store | None):
        self._records = records
        self._idata = idata
        self._store = store
        self.fits = _fits_table(records)
        self.summary = _summary_table(records)
        self.failed = {r["name"]: r["error"] for r in records if r["status"] != "ok"}
        self.outputs = {r["name"]: r.get("output") for r in records if r["status"] == "ok"}
        self._names = {_key(r["name"]): r["name"] for r in records if r["status"] == "ok"}

    def __getitem__(self, name):
        key = _key(name)
        if key not in self._names:
            why = f"it failed: {self.failed[name]}" if name in self.failed else "no such fit"
            raise KeyError(f"{name!r}: {why}")
        if key in self._idata:
            return self._idata[key]
        if self._store is not None and self._store.idata_path(name).exists():
            import arviz as az

            return az.from_netcdf(self._store.idata_path(name))
        raise KeyError(
            f"{name!r}: its InferenceData was not kept (pass save_idata=True with results_dir)"
        )

    def __iter__(self):
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        n_ok = len(self._names)
        return f"FitResults({n_ok} fitted, {len(self.failed)} failed)"


def _fits_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        r_hats = [row.get("r_hat", np.nan) for row in r.get("summary", [])]
        rows.append(
            {
                **{f: r.get(f) for f in _RECORD_FIELDS if f != "warnings"},
                "max_r_hat": float(np.nanmax(r_hats)) if np.isfinite(r_hats).any() else np.nan,
                "warnings": " | ".join(r.get("warnings") or []),
            }
        )
    return pd.DataFrame(rows, columns=[*_RECORD_FIELDS, "max_r_hat"])


def _summary_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        fit = {"fit": r["name"], "status": r["status"], "seconds": r.get("seconds")}
        fit.update(sampler=r.get("sampler"), error=r.get("error"))
        if r["status"] == "ok":
            rows.extend({**fit, **row} for row in r["summary"])
        else:
            rows.append(fit)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- driver
@fill_doc
def fit_many(
    model, datasets, *, client=None, backend: str | None = None, n_workers: int | None = None,
    results_dir=None, save_idata: bool = True, retry_failed: bool = False, sampler: str = "auto",
    draws: int | None = None, tune: int | None = None, chains: int = 4, random_seed=None,
    progressbar: bool | None = None, postprocess: Callable | None = None,
    callback: Callable | None = None, **sample_kwargs) -> FitResults:  # fmt: skip
    """Fit one model to many data sets, serially, on local processes or on a Dask cluster.

    Parameters
    ----------
    model : pymc.Model
        A model from a `mixtures` factory; its spec (priors, ``k``, variant) is used for every
        data set, whatever their scale (see :func:`mixtures.compile_model`).
    datasets : list, dict, pandas GroupBy or iterable
        The data sets: a list (names 0, 1, ...), a dict of named arrays, a DataFrame grouped by
        a column (``df.groupby("day")["x"]``, or several columns for a multivariate model), or
        a generator (consumed as workers free up).
    %(fits_execution)s
    %(fits_storage)s
    %(fits_sampling)s
    %(fits_hooks)s
    %(fits_sample_kwargs)s

    Returns
    -------
    FitResults
        A mapping name -> InferenceData with ``.summary``, ``.fits``, ``.failed``, ``.outputs``.

    Raises
    ------
    mixtures.SamplingInterrupted
        On Ctrl-C (or a `callback` raising KeyboardInterrupt); what finished is on disk.

    Examples
    --------
    >>> import mixtures, numpy as np
    >>> y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
    >>> model = mixtures.full_mixture(y, 3)
    >>> rng = np.random.default_rng(0)
    >>> boots = [rng.choice(y, y.size) for _ in range(20)]
    >>> fits = mixtures.fit_many(model, boots, random_seed=1)  # doctest: +SKIP
    >>> fits.summary.query("parameter == 'means[0]'")["mean"].std()  # doctest: +SKIP
    """
    run = (client, backend, n_workers)
    backend = _check_run(model, (draws, tune, chains), datasets, postprocess, *run)
    options = {"sampler": sampler, "draws": draws, "tune": tune, "chains": chains}
    options.update(sample_kwargs, log_likelihood=sample_kwargs.get("log_likelihood", False))
    model_bytes = _pickled(model)
    store, entropy = _open_store(model, options, random_seed, results_dir, save_idata)
    results = run_jobs(
        _jobs(datasets, entropy, model_bytes),
        total=len(datasets) if hasattr(datasets, "__len__") else None,
        options=options, client=client, backend=backend, n_workers=n_workers, store=store,
        save_idata=save_idata, retry_failed=retry_failed, progressbar=progressbar,
        postprocess=postprocess, callback=callback,
    )  # fmt: skip
    if line := problems_line(results):
        print(line, file=sys.stderr)
    return results


def _pickled(model) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(model)


def _check_run(model, counts, datasets, postprocess, client, backend, n_workers) -> str | None:
    """Check fit_many's arguments; return the backend (None with a `client`)."""
    from mixtures.engines import check_draws, check_model

    check_model(model)
    check_draws(*counts)
    if client is None:
        backend = backend or default_backend(datasets, n_workers)
        if backend not in _BACKENDS:
            raise ValueError(f"`backend` should be one of {list(_BACKENDS)}, but got {backend!r}")
    elif backend is not None:
        raise ValueError(f"`backend` should be None when `client` is given, but got {backend!r}")
    if postprocess is not None and not callable(postprocess):
        raise ValueError(f"`postprocess` should be callable, but got {postprocess!r}")
    return backend


def _open_store(model, options: dict, random_seed, results_dir, save_idata: bool) -> tuple:
    """Return the results store (or None) and the run's entropy (a resumed run's, if any)."""
    from mixtures.model.spec import spec_of

    entropy = int(np.random.SeedSequence().entropy) % 2**63 if random_seed is None else random_seed
    run = {"spec": spec_of(model).to_dict(), "options": json.loads(_dumps(options))}
    run["entropy"] = entropy
    if results_dir is None:
        return None, entropy
    store = _Store(results_dir, run, save_idata)
    return store, store.run["entropy"]


def _jobs(datasets, entropy, model_bytes: bytes) -> Iterator[tuple]:
    """Yield ``(name, y, seed, model_key, model_bytes)`` per data set; refuse repeated names."""
    key = hashlib.sha1(model_bytes).hexdigest()
    seen = set()
    for name, y in _iter_datasets(datasets):
        stem = _file_stem(name)  # names are file names in results_dir
        if stem in seen:
            raise ValueError(f"`datasets` should have unique names (as text), but {name!r} repeats")
        seen.add(stem)
        yield name, y, fit_seed(int(entropy), name), key, model_bytes


def default_backend(datasets, n_workers: int | None) -> str:
    """Return ``"serial"`` for a few fits or one worker, else ``"processes"``.

    A generator (no length) counts as many fits.
    """
    workers = n_workers or os.cpu_count() or 1
    few = hasattr(datasets, "__len__") and len(datasets) < SERIAL_BELOW
    return "serial" if few or workers == 1 else "processes"


def problems_line(results: FitResults) -> str:
    """Return one line naming the fits that failed or missed their convergence checks ("")."""
    table = results.fits
    if table.empty:
        return ""
    failed = table.loc[table["status"] == "failed", "name"].tolist()
    unconverged = table.loc[
        (table["status"] == "ok") & (table["converged"] == False), "name"  # noqa: E712
    ].tolist()
    parts = []
    if unconverged:
        shown = ", ".join(map(str, unconverged[:5])) + (", ..." if len(unconverged) > 5 else "")
        parts.append(f"{len(unconverged)} missed the convergence checks ({shown})")
    if failed:
        shown = ", ".join(map(str, failed[:5])) + (", ..." if len(failed) > 5 else "")
        parts.append(f"{len(failed)} failed ({shown})")
    if not parts:
        return ""
    return (
        f"fit_many: of {len(table)} fits, " + " and ".join(parts)
        + "; see .fits['warnings'] and .fits['error']"
    )


@fill_doc
def run_jobs(
    jobs, *, total, options, client, backend, n_workers, store=None, save_idata=True,
    retry_failed=False, progressbar=None, postprocess=None, callback=None, description="Fits",
) -> FitResults:  # fmt: skip
    """Run fits given as ``(name, y, seed, model_key, model_bytes)`` (the engine of fit_many).

    Each job names its own (pickled) model, so one call can fit several models (e.g. one
    per ``k`` in :func:`mixtures.choose_k`); each worker compiles each model once.

    Parameters
    ----------
    jobs : iterable of tuple
        ``(name, y, seed, model_key, model_bytes)`` per fit.
    total : int or None
        Number of jobs, for the progress bar (None: unknown).
    options : dict
        Keyword arguments of every fit's ``sample`` (sampler, draws, ...).
    %(fits_execution)s
    store : _Store or None
        Where finished fits are written (``results_dir``), or None.
    save_idata, retry_failed : bool
        As in :func:`fit_many`.
    %(fits_hooks)s
    description : str, default "Fits"
        The progress bar's label.

    Returns
    -------
    FitResults
    """
    done = store.done() if store is not None else {}
    if retry_failed:
        done = {k: r for k, r in done.items() if r["status"] == "ok"}
    want_idata = store is None or save_idata
    if progressbar is None:
        progressbar = default_progressbar()
    state = _RunState(store, done, callback)
    with progress_bar(total, progressbar, description) as bar:
        state.bar = bar
        try:
            if client is None and backend == "serial":
                _run_serial(state, jobs, options, postprocess, want_idata)
            else:
                with _client(client, n_workers) as cl:
                    _run_dask(cl, state, jobs, options, postprocess, want_idata)
        except KeyboardInterrupt as err:
            from mixtures.interrupt import SamplingInterrupted

            state.flush(force=True)
            where = f"; they are in {store.root}: call again to resume" if store else ""
            raise SamplingInterrupted(
                f"fit_many was interrupted after {state.n_new} new fits{where}"
            ) from err
    state.flush(force=True)
    return FitResults(state.ordered(), state.idata, store)


class _RunState:
    """Records in arrival order; writes each at once; keeps the summary file current."""

    def __init__(self, store, done, callback):
        self.store, self.callback = store, callback
        self.records = dict(done)
        self.order: list[str] = []
        self.idata: dict = {}
        self.n_new = 0
        self.bar = None
        self._last_flush = 0.0

    def skip(self, name) -> bool:
        k = _key(name)
        self.order.append(k)
        if k in self.records:
            self.bar.advance()
            return True
        return False

    def add(self, record: dict) -> None:
        k = _key(record["name"])
        idata = record.get("idata")
        if self.store is not None:
            self.store.write(record)
        elif idata is not None:
            self.idata[k] = idata
        record.pop("idata", None)
        self.records[k] = record
        self.n_new += 1
        self.bar.advance()
        self.flush()
        if self.callback is not None:
            self.callback(record)

    def ordered(self) -> list[dict]:
        return [self.records[k] for k in self.order if k in self.records]

    def flush(self, force: bool = False) -> None:
        if self.store is None or not self.records:
            return
        now = time.monotonic()
        if force or now - self._last_flush > 2.0:
            self.store.write_summary(_summary_table(self.ordered() or list(self.records.values())))
            self._last_flush = now


def _run_serial(state, jobs, options, postprocess, want_idata):
    handles = _Handles()
    opts = {k: v for k, v in options.items() if k != "sampler"}
    for name, y, seed, key, model_bytes in jobs:
        if state.skip(name):
            continue
        handle = handles.get(key, model_bytes, options["sampler"])
        record = _run_fit(handle, name, y, seed, opts, postprocess, want_idata)
        record["worker"] = "serial"
        state.add(record)


@contextlib.contextmanager
def _client(client, n_workers):
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    n = n_workers or os.cpu_count() or 1
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as cl,
    ):
        yield cl


def _compile_root() -> str:
    """Workers' compile directories live under PyTensor's base directory of this machine."""
    import pytensor

    return str(Path(pytensor.config.base_compiledir) / "mixtures-workers")


def _run_dask(client, state, jobs, options, postprocess, want_idata):
    from distributed import as_completed

    client.register_plugin(_WorkerSetup(_compile_root()), name=_PLUGIN)
    window = max(2, 2 * sum(client.nthreads().values()))
    pending = as_completed()
    names = {}
    jobs = iter(jobs)

    def submit_next() -> bool:
        for name, y, seed, key, model_bytes in jobs:
            if state.skip(name):
                continue
            future = client.submit(
                _dask_fit, key, model_bytes, name, y, seed, options, postprocess, want_idata,
                pure=False,
            )  # fmt: skip
            names[future.key] = name
            pending.add(future)
            return True
        return False

    for _ in range(window):
        if not submit_next():
            break
    try:
        for future in pending:
            try:
                record = future.result()
            except Exception as exc:  # e.g. KilledWorker after repeated worker deaths
                record = {"name": names[future.key], "status": "failed", "seconds": math.nan}
                record["error"] = f"{type(exc).__name__}: {exc}"
            names.pop(future.key, None)
            state.add(record)
            submit_next()
    except BaseException:
        for future in list(pending.futures):
            future.cancel()
        raise
