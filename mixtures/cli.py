"""The ``mixtures`` command: fit a mixture to your own CSV, list the shipped data, run the demo.

Exit codes: 0 success; 2 bad input (a one-line message on stderr, no traceback); 3 finished,
outputs written, but the convergence checks failed (r_hat, ESS or divergences: the message says
what to try); 130 interrupted (Ctrl-C; nothing half-written is left).

PyMC is imported only when a fit starts, so ``--help`` and ``datasets`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mixtures._io import atomic_write, write_into

__all__ = ["main"]

EXIT_OK, EXIT_INPUT, EXIT_CONVERGENCE, EXIT_INTERRUPTED = 0, 2, 3, 130

EPILOG = """\
exit codes: 0 success; 2 bad input; 3 finished with convergence problems (outputs written);
130 interrupted (Ctrl-C)

examples:
  mixtures fit data.csv --column x --k 3 --out fit_x
  mixtures fit data.csv --columns x1,x2 --model mv --k 2 --out fit_2d --overwrite
  mixtures datasets
  mixtures demo --draws 500
"""

FIT_EPILOG = """\
writes into --out: summary.csv (full precision), summary.md, ppc.png, trace.png (mixture_2d.png
for two columns), posterior.nc (the whole InferenceData) and run.json (arguments, resolved spec,
versions, engine and why, diagnostics, timings, the list of files written). Nothing of size
rows x draws is stored (no pointwise log-likelihood, no predictive draws), whatever the rows:
add them from posterior.nc with mixtures.analysis.loglik.add_log_likelihood(idata, True) and
mixtures.sample_posterior_predictive. Outputs appear
whole or not at all; other files in --out are never touched; an --out whose outputs would
replace the input CSV or the priors file is refused.

examples:
  mixtures fit galaxies.csv --column velocity --k 3 --out galaxies_k3
  mixtures fit faithful.csv --columns eruptions,waiting --model mv --k 2 --out faithful
  mixtures fit data.csv --column x --model known --means 10,20,35 --sds 2,2,2 --out known
  mixtures fit data.csv --column x --k 2 --family t --out robust   # Student-t components
  mixtures fit data.csv --column x --k 3 --priors priors.json --drop-missing --out fit
"""


class InputError(Exception):
    """A user error: reported on one line, exit code 2."""


# ------------------------------------------------------------------------------ parser


def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("mixtures")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        ver = "unknown"
    parser = argparse.ArgumentParser(
        prog="mixtures",
        description="Bayesian Gaussian mixture models on PyMC and ArviZ.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mixtures {ver}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fit(sub)
    sub.add_parser(
        "datasets",
        help="list the shipped datasets, one line each",
        description="List the shipped datasets (load one with mixtures.load_dataset).",
    )
    _add_demo(sub)
    return parser


def _add_fit(sub) -> None:
    """Add the ``fit`` command: its input, model, sampling and output arguments."""
    fit = sub.add_parser(
        "fit",
        help="fit a mixture to columns of a CSV file and write every output",
        description="Fit a Bayesian Gaussian mixture to your own CSV file.",
        epilog=FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("data", help="the CSV file (header row, comma-separated)")
    fit.add_argument(
        "--column", action="append", default=[], help="a column to model (repeat for several)"
    )
    fit.add_argument("--columns", default=None, help="comma-separated columns, e.g. x1,x2")
    _add_model_arguments(fit)
    fit.add_argument(
        "--sampler",
        choices=("auto", "gibbs", "pymc", "nutpie", "numpyro"),
        default="auto",
        help="the engine (default: auto)",
    )
    _add_sampling_arguments(fit, seed=None)
    fit.add_argument(
        "--priors", default=None, help="a JSON or TOML file of priors (the Python API's dict)"
    )
    fit.add_argument(
        "--covariance-prior",
        choices=("lkj", "wishart"),
        default="wishart",
        help="--model mv: covariance prior (default: wishart, which our Gibbs engine samples)",
    )
    fit.add_argument("--out", required=True, help="output directory")
    fit.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier run in --out (only the files listed above; "
        "every other file in --out is left alone)",
    )
    fit.add_argument(
        "--drop-missing",
        action="store_true",
        help="drop rows with empty or NaN cells in the modelled columns (and say how many)",
    )
    fit.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_model_arguments(fit) -> None:
    """Add the model arguments of ``fit``: kind, k, family, known parameters, variant."""
    fit.add_argument(
        "--model",
        choices=("known", "shared", "full", "mv"),
        default=None,
        help="known means and sds, shared sd, full (one sd per component), or multivariate "
        "(default: full for one column, mv for several)",
    )
    fit.add_argument("--k", type=int, default=None, help="number of components (required "
                     "except for --model known, where it is the number of --means)")  # fmt: skip
    fit.add_argument(
        "--family",
        choices=("normal", "t"),
        default="normal",
        help="component family of --model shared/full/mv: normal, or t (Student-t, "
        "multivariate t with --model mv; robust to outliers; default: normal)",
    )
    fit.add_argument(
        "--nu",
        type=float,
        default=None,
        help="--family t: fixed degrees of freedom (default: sampled, Gamma(2, 0.1) prior)",
    )
    fit.add_argument("--means", default=None, help="--model known: the means, e.g. 10,20,35")
    fit.add_argument("--sds", default=None, help="--model known: the sds, e.g. 2,2,2")
    fit.add_argument(
        "--latent", action="store_true", help="keep the assignments as draws (default: off)"
    )


def _add_sampling_arguments(parser, seed: int | None) -> None:
    """Add ``--draws``, ``--tune``, ``--chains`` and ``--seed`` (default `seed`)."""
    parser.add_argument(
        "--draws",
        type=int,
        default=None,
        help="draws per chain (default: our engine runs until r_hat <= 1.01 and bulk and tail "
        "ESS >= 400, within 8,000 draws or 60 s; other engines 1000)",
    )
    parser.add_argument(
        "--tune", type=int, default=None, help="tuning iterations (default: chosen by the engine)"
    )
    parser.add_argument("--chains", type=int, default=4, help="chains (default: 4)")
    parser.add_argument(
        "--seed",
        type=int,
        default=seed,
        help=f"random seed (default: {'none' if seed is None else seed})",
    )


def _add_demo(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="fit full_mixture on the shipped three_gaussians, print, plot",
        description="Fit a three-component mixture to three_gaussians; print its summary table "
        "and write a posterior predictive figure.",
        epilog="example:\n  mixtures demo --draws 500 --out ppc.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_sampling_arguments(demo, seed=2017)
    demo.add_argument(
        "--out", default="mixtures_demo_ppc.png", help="PPC figure (default: mixtures_demo_ppc.png)"
    )
    demo.add_argument("--netcdf", default=None, help="also save the InferenceData here")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")


# ------------------------------------------------------------------------------ input


def _columns(args) -> list[str]:
    cols = list(args.column)
    if args.columns:
        cols += [c.strip() for c in args.columns.split(",") if c.strip()]
    if not cols:
        raise InputError("give the column(s) to model with --column NAME or --columns A,B")
    return cols


def read_table(path: str, columns: list[str], drop_missing: bool, keep_partial: bool = False):
    """Read `columns` of the CSV at `path` as floats; refuse anything that is not clean data.

    With `keep_partial` (the multivariate model, without --drop-missing), rows with some empty or
    NaN cells are kept, the cells NaN (missing at random, modelled by ``mv_mixture``).
    """
    import numpy as np

    values = _numeric_columns(path, _read_csv(path), columns)
    nonfinite = ~np.isfinite(values)
    if keep_partial and not drop_missing:  # NaN cells in rows with an observed cell are data
        nonfinite &= ~(np.isnan(values) & np.isfinite(values).any(axis=1, keepdims=True))
    dropped = 0
    if nonfinite.any():
        rows = np.flatnonzero(nonfinite.any(axis=1))
        if not drop_missing:
            shown = ", ".join(str(r + 2) for r in rows[:10])
            more = f" and {rows.size - 10} more" if rows.size > 10 else ""
            raise InputError(
                f"{path}: {rows.size} row(s) with empty, NaN or infinite cells (rows {shown}"
                f"{more}, counted from the header as row 1); fix them or pass --drop-missing"
            )
        values = values[~nonfinite.any(axis=1)]
        dropped = int(rows.size)
    return values, dropped


def _read_csv(path: str):
    """Read the CSV file at `path` into a DataFrame; refuse binary, unparsable or empty files."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with open(file, "rb") as fh:
            head = fh.read(4096)
        if b"\x00" in head:
            raise InputError(f"{path}: not a text CSV file (it holds binary data)")
        frame = pd.read_csv(file)
    except InputError:
        raise
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot be read as CSV ({err})") from None
    except pd.errors.ParserError as err:
        raise InputError(f"{path}: cannot be read as CSV ({str(err).splitlines()[0]})") from None
    if frame.empty:
        raise InputError(f"{path}: no data rows")
    return frame


def _numeric_columns(path: str, frame, columns: list[str]):
    """Return `columns` of `frame` as floats (empty cells NaN); refuse absent or text columns."""
    import numpy as np
    import pandas as pd

    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hint = ""
        if len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";\t|"):
            hint = " (the file may not be comma-separated)"
        raise InputError(
            f"{path}: no column {', '.join(map(repr, missing))}; the columns are "
            f"{', '.join(map(repr, map(str, frame.columns)))}{hint}"
        )
    data = frame[columns]
    numeric = data.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & ~data.isna()
    if bad.any().any():
        rows = np.flatnonzero(bad.any(axis=1).to_numpy())
        first = [f"row {r + 2}: {data.iloc[r][bad.iloc[r]].to_dict()}" for r in rows[:3]]
        raise InputError(
            f"{path}: non-numeric values in {int(bad.sum().sum())} cell(s), first at "
            + "; ".join(first)
            + " (rows counted from the header as row 1)"
        )
    return numeric.to_numpy(dtype=float)


def read_priors(path: str | None) -> dict | None:
    """Read a JSON or TOML priors file into the Python API's dict."""
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such priors file")
    text = file.read_text()
    try:
        if file.suffix.lower() == ".toml":
            import tomllib

            priors = tomllib.loads(text)
        else:
            priors = json.loads(text)
    except Exception as err:  # noqa: BLE001 - any parse error is the user's file
        raise InputError(f"{path}: not valid {file.suffix.lstrip('.') or 'JSON'} ({err})") from None
    if not isinstance(priors, dict):
        raise InputError(
            f"{path}: should hold a table of priors, but holds {type(priors).__name__}"
        )
    return priors


def _numbers(text: str | None, name: str) -> list[float]:
    if text is None:
        raise InputError(f"--model known needs --{name}, e.g. --{name} 10,20,35")
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--{name} should be comma-separated numbers, but got {text!r}") from None


def build(args, values, columns=None):
    """Build the model the arguments describe (the factories validate at their boundary)."""
    import mixtures

    n_cols = values.shape[1]
    kind = args.model or ("full" if n_cols == 1 else "mv")
    priors = read_priors(args.priors)
    marginalized = not args.latent
    if kind != "mv" and n_cols != 1:
        raise InputError(f"--model {kind} takes one column, but got {n_cols}; use --model mv")
    if kind == "mv" and n_cols < 2:
        raise InputError("--model mv takes two or more columns, but got 1")
    if kind != "known" and args.k is None:
        raise InputError("give the number of components with --k")
    y = values[:, 0]
    family = getattr(args, "family", "normal")
    nu = getattr(args, "nu", None)
    if family != "normal" and kind not in ("shared", "full", "mv"):
        raise InputError(
            f"--family {family} needs --model shared, full or mv, but got --model {kind}"
        )
    import numpy as np

    incomplete = int(np.isnan(values).any(axis=1).sum()) if kind == "mv" else 0
    if family != "normal" and incomplete:
        raise InputError(
            f"--family {family} with --model mv needs complete rows, but got {incomplete} "
            "row(s) with missing cells: add --drop-missing"
        )
    if nu is not None and family != "t":
        raise InputError("--nu needs --family t")
    t_args = {"family": "t", "nu": nu} if family == "t" else {}
    if kind == "known":
        means, sds = _numbers(args.means, "means"), _numbers(args.sds, "sds")
        return mixtures.known_params_mixture(
            y, means, sds, marginalized=marginalized, priors=priors
        )
    if kind == "shared":
        return mixtures.shared_sd_mixture(
            y, args.k, marginalized=marginalized, priors=priors, **t_args
        )
    if kind == "full":
        return mixtures.full_mixture(y, args.k, marginalized=marginalized, priors=priors, **t_args)
    import pandas as pd

    return mixtures.mv_mixture(
        pd.DataFrame(values, columns=columns),
        args.k,
        marginalized=marginalized,
        priors=priors,
        covariance_prior=args.covariance_prior,
        **t_args,
    )


# ------------------------------------------------------------------------------ outputs


#: Posterior predictive draws the command line draws for its figures.
PPC_DRAWS = 20

#: Every file `mixtures fit` may write into --out; run.json lists those a run wrote.
OUTPUTS = (
    "summary.csv",
    "summary.md",
    "ppc.png",
    "trace.png",
    "mixture_2d.png",
    "posterior.nc",
    "run.json",
)


def _check_out(out: Path, overwrite: bool, reads: list[Path]) -> None:
    """Refuse an --out where outputs would replace an input, or old outputs without --overwrite.

    Outputs never replace a file the run reads; a previous run's outputs are replaced only
    with --overwrite. Files whose names are not in :data:`OUTPUTS` are never touched.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if not out.is_dir():
        return
    for path in reads:
        target = out / path.name
        if path.name in OUTPUTS and target.exists() and target.samefile(path):
            raise InputError(
                f"--out {out}: holds {path.name}, which this run reads and would overwrite "
                "with an output of the same name; choose another --out"
            )
    ours = [name for name in OUTPUTS if (out / name).exists()]
    if ours and not overwrite:
        raise InputError(
            f"--out {out}: already holds outputs ({', '.join(ours)}); pass --overwrite to "
            "replace them (other files in it are left alone)"
        )


def _save_figure(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight", format="png")


def _previous_outputs(out: Path) -> set[str]:
    """Return the outputs a previous run recorded in ``out/run.json`` (only names in OUTPUTS)."""
    try:
        listed = json.loads((out / "run.json").read_text()).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if name in OUTPUTS}


def write_outputs(out: Path, idata, record: dict, *, labels: dict | None = None) -> list[Path]:
    """Write every output, then put them into `out` at once; nothing else in `out` is touched.

    The files are written into a staging folder first. A new `out` is that folder renamed;
    into an existing one the files are renamed one by one (Ctrl-C held back for those few
    renames), run.json (the list of what was written) last, and outputs of a previous run
    that this run does not write (listed in its run.json) are removed. An interrupted or failed
    run leaves the previous outputs untouched.
    """
    names = write_into(
        out,
        lambda staging: _write_all(staging, idata, record, labels or {}),
        lambda: _previous_outputs(out),
    )
    return [out / name for name in names]


def _write_all(out: Path, idata, record: dict, labels: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import mixtures

    title = labels.get("title", "")
    table = mixtures.summary_table(idata)
    table.to_csv(out / "summary.csv")
    (out / "summary.md").write_text(mixtures.summary_table(idata, fmt="markdown") + "\n")
    written = ["summary.csv", "summary.md"]
    if idata.observed_data["y"].ndim == 1:
        ax = mixtures.plot_ppc(idata, figsize=(7, 4))
        ax.set_xlabel(labels.get("x", "y"))
        figures = [("ppc.png", ax, "posterior predictive check")]
    else:
        X = idata.observed_data["y"].to_pandas()
        figures = [
            ("mixture_2d.png", mixtures.plot_mixture_2d(idata, X), "fitted components"),
            ("ppc.png", mixtures.plot_ppc_2d(idata), "posterior predictive check"),
        ]
    for name, ax, what in figures:
        ax.set_title(f"{title}: {what}" if title else what)
        _save_figure(ax.figure, out / name)
        plt.close(ax.figure)
        written.append(name)
    axes = mixtures.plot_trace(idata)
    fig = np.ravel(axes)[0].figure
    fig.suptitle(f"{title}: trace" if title else "trace")
    _save_figure(fig, out / "trace.png")
    plt.close(fig)
    written.append("trace.png")
    # the predictive draws were for the figure only: N x draws values stay out of the file
    groups = [g for g in idata.groups() if g != "posterior_predictive"]
    idata.to_netcdf(str(out / "posterior.nc"), groups=groups)
    written.append("posterior.nc")
    record = {**record, "outputs": [*written, "run.json"]}
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))
    return record["outputs"]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("mixtures", "pymc", "pytensor", "arviz", "numpy", "numba", "nutpie"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _fit(args) -> int:
    out = Path(args.out)
    columns = _columns(args)
    reads = [Path(p) for p in (args.data, args.priors) if p is not None and Path(p).is_file()]
    _check_out(out, args.overwrite, reads)
    values, dropped = _load(args, columns)
    for name, minimum in (("draws", 1), ("chains", 1), ("tune", 0)):
        if getattr(args, name) is not None:
            _check_count(getattr(args, name), f"--{name}", minimum)
    import mixtures

    t0 = time.perf_counter()
    try:
        model = build(args, values, columns)
    except ValueError as err:
        raise InputError(str(err)) from None
    spec = mixtures.spec_of(model)
    print(
        f"{args.data}: {values.shape[0]} rows, columns {columns}; {spec.kind} mixture, "
        f"k = {spec.k}, {'latent' if args.latent else 'marginalised'}"
    )
    timings = {"build": time.perf_counter() - t0}
    idata, problems = _sample(model, args)
    timings["sample"] = time.perf_counter() - t0 - timings["build"]
    # for the figures only: N x 20 values, never N x draws (at N = 1e6, 50 draws cost 3.2 s
    # and 400 MB, a sixth of the fit; 20 curves show the predictive's spread as well)
    t_ppc = time.perf_counter()
    mixtures.sample_posterior_predictive(
        model, idata, num_draws=PPC_DRAWS, random_seed=args.seed, progressbar=False
    )
    timings["predictive"] = time.perf_counter() - t_ppc
    data = {"rows": int(values.shape[0]), "dropped_rows": dropped, "columns": columns}
    record = _record(args, data, spec, idata, problems, timings)
    labels = {"title": f"{Path(args.data).name}, {spec.kind} mixture, k = {spec.k}"}
    if len(columns) == 1:
        labels["x"] = columns[0]
    written = write_outputs(out, idata, record, labels=labels)
    return _report(idata, out, written, problems)


def _check_count(value: int, flag: str, minimum: int) -> None:
    """Refuse a count argument below `minimum` (the library's integer check, as exit code 2)."""
    from mixtures.model.validation import check_integer

    try:
        check_integer(value, flag, minimum)
    except ValueError as err:
        raise InputError(str(err)) from None


def _load(args, columns: list[str]):
    """Read the modelled columns; say how many rows were dropped or kept with missing cells."""
    import numpy as np

    multivariate = args.model == "mv" or (args.model is None and len(columns) > 1)
    values, dropped = read_table(args.data, columns, args.drop_missing, multivariate)
    if dropped:
        print(f"dropped {dropped} row(s) with empty, NaN or infinite cells (--drop-missing)")
    partial = int(np.isnan(values).any(axis=1).sum())
    if partial:
        print(
            f"kept {partial} row(s) with some missing cells ({int(np.isnan(values).sum())} "
            "cells, modelled as missing at random; --drop-missing drops them)"
        )
    return values, dropped


def _sample(model, args) -> tuple:
    """Sample `model` as the arguments say; return the InferenceData and convergence problems."""
    import warnings

    import mixtures

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", mixtures.ConvergenceWarning)
        try:
            idata = mixtures.sample(
                model,
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                random_seed=args.seed,
                sampler=args.sampler,
                progressbar=not args.quiet,
                log_likelihood=False,  # N x draws values: not for a file (see FIT_EPILOG)
            )
        except mixtures.SamplingInterrupted:
            raise
        except ValueError as err:
            raise InputError(str(err)) from None
    problems = [
        str(w.message) for w in caught if issubclass(w.category, mixtures.ConvergenceWarning)
    ]
    return idata, problems


def _record(args, data: dict, spec, idata, problems: list, timings: dict) -> dict:
    """Return run.json's record: arguments, data, spec, engine, diagnostics, timings."""
    attrs = idata.posterior.attrs
    return {
        "command": sys.argv,
        "arguments": vars(args),
        "data": {"file": str(Path(args.data).resolve()), **data},
        "spec": spec.to_dict(),
        "engine": {
            "sampler": attrs.get("mixtures_sampler"),
            "reason": attrs.get("mixtures_sampler_reason"),
            "steps": attrs.get("mixtures_steps"),
            "tempering": attrs.get("mixtures_tempering"),
            "draws_per_chain": attrs.get("mixtures_draws_run", idata.posterior.sizes["draw"]),
            "draws_reason": attrs.get("mixtures_draws_reason"),
        },
        "diagnostics": {"problems": problems},
        "timings_s": timings,
        "versions": _versions(),
    }


def _report(idata, out: Path, written: list[Path], problems: list) -> int:
    """Print the summary, the engine and the files; return the exit code."""
    import mixtures

    attrs = idata.posterior.attrs
    print()
    print(mixtures.summary_table(idata, fmt="markdown"))
    print(f"\nengine: {attrs.get('mixtures_sampler')} ({attrs.get('mixtures_sampler_reason')})")
    print(f"wrote {len(written)} files to {out}/: " + ", ".join(p.name for p in written))
    if problems:
        print(
            "convergence problems: " + "; ".join(problems) + ". Try more --draws and --tune, "
            "fewer components (--k), or see the trace plot.",
            file=sys.stderr,
        )
        return EXIT_CONVERGENCE
    return EXIT_OK


def _datasets(args) -> int:
    from mixtures.data import list_datasets

    for name, description in list_datasets().items():
        print(f"{name:18s} {description}")
    return EXIT_OK


def _demo(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mixtures

    data = mixtures.load_dataset("three_gaussians")
    print(f"three_gaussians: {len(data)} observations, fitting full_mixture(k=3)")
    start = time.perf_counter()
    model = mixtures.full_mixture(data["x"], 3)
    idata = mixtures.sample(
        model,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        random_seed=args.seed,
        progressbar=not args.quiet,
    )
    mixtures.sample_posterior_predictive(model, idata, num_draws=50, random_seed=args.seed)
    print(f"\nfit in {time.perf_counter() - start:.1f} s\n")
    print(mixtures.summary_table(idata, fmt="markdown"))
    ax = mixtures.plot_ppc(idata, random_seed=args.seed, figsize=(7, 4))
    ax.set_title("three_gaussians: posterior predictive check (full mixture, k=3)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: _save_figure(ax.figure, tmp))
    plt.close(ax.figure)
    print(f"\nPPC figure written to {out}")
    if args.netcdf:
        atomic_write(Path(args.netcdf), lambda tmp: idata.to_netcdf(tmp))
        print(f"InferenceData written to {args.netcdf}")
    return EXIT_OK


def main(argv=None) -> int:
    """Entry point of the ``mixtures`` console command; returns the exit code."""
    args = _parser().parse_args(argv)
    run = {"fit": _fit, "datasets": _datasets, "demo": _demo}[args.command]
    try:
        return run(args)
    except InputError as err:
        print(f"mixtures {args.command}: error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(
            f"mixtures {args.command}: interrupted (Ctrl-C); no output was written or changed",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
