"""The command line, driven as a user would, files checked after.

Most cases call the console command's entry point in this process (``run``), which is what
``python -m mixtures`` runs after parsing ``sys.argv``; a fresh interpreter per case cost ~5 s
of imports each. A real subprocess (``run_process``) is kept where the process itself is under
test: one end-to-end fit, ``--help`` without importing PyMC, and Ctrl-C.
"""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import arviz as az
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

import mixtures
from mixtures.cli import main

ENV = {**os.environ, "MIXTURES_PROGRESSBAR": "0", "PYTHONUNBUFFERED": "1"}
FAST = ["--draws", "200", "--tune", "200", "--chains", "2", "--seed", "1", "--quiet"]


def run(*args):
    """Run ``mixtures *args`` through the CLI's entry point here; return code and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse: --help, --version, usage errors
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run_process(*args, timeout=300):
    """Run ``python -m mixtures *args`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mixtures", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    y = mixtures.load_dataset("three_gaussians")["x"]
    path = folder / "data.csv"
    pd.DataFrame({"x": y, "label": "a"}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fit_run(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "out"
    proc = run_process("fit", csv, "--column", "x", "--k", "3", "--out", out, *FAST)
    return proc, out


def test_fit_writes_every_output(fit_run, csv):
    proc, out = fit_run
    assert proc.returncode in (0, 3), proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["summary.csv", "summary.md", "ppc.png", "trace.png", "posterior.nc", "run.json"]
    )
    table = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(table.index[:3]) == ["weights[0]", "weights[1]", "weights[2]"]
    idata = az.from_netcdf(out / "posterior.nc")
    # the CSV keeps full precision: the posterior means, unrounded
    np.testing.assert_allclose(
        table.loc["means[1]", "mean"], float(idata.posterior["means"][..., 1].mean()), rtol=1e-9
    )
    record = json.loads((out / "run.json").read_text())
    assert record["spec"]["kind"] == "full" and record["spec"]["k"] == 3
    assert record["engine"]["sampler"] == "gibbs" and record["engine"]["reason"]
    assert record["versions"]["pymc"] and record["data"]["rows"] == 215
    assert mpimg.imread(out / "ppc.png").shape[0] > 100
    assert "| means[1] |" in proc.stdout and f"to {out}/" in proc.stdout
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "summary.csv").stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_existing_outputs_are_not_overwritten_without_the_flag(fit_run, csv):
    _, out = fit_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc = run("fit", csv, "--column", "x", "--k", "2", "--out", out, *FAST)
    assert proc.returncode == 2
    assert "already holds outputs (summary.csv, summary.md, ppc.png" in proc.stderr
    assert "pass --overwrite to replace them" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_two_columns_fit_the_multivariate_model(tmp_path):
    path = tmp_path / "faithful.csv"
    mixtures.load_dataset("old_faithful").to_csv(path, index=False)
    out = tmp_path / "out"
    proc = run("fit", path, "--columns", "eruptions,waiting", "--k", "2", "--out", out, *FAST)
    assert proc.returncode in (0, 3), proc.stderr
    assert (out / "mixture_2d.png").is_file() and (out / "ppc.png").is_file()
    record = json.loads((out / "run.json").read_text())
    assert record["spec"]["kind"] == "mv" and record["spec"]["n_features"] == 2


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ["--column", "x", "--k", "2"], "no such file"),
        (b"\x00\x01\x02binary", ["--column", "x", "--k", "2"], "binary data"),
        (b"", ["--column", "x", "--k", "2"], "cannot be read as CSV"),
        (b"x;y\n1;2\n3;4\n", ["--column", "x", "--k", "2"], "may not be comma-separated"),
        (
            b"a,b\n1,2\n3,4\n",
            ["--column", "x", "--k", "2"],
            "no column 'x'; the columns are 'a', 'b'",
        ),
        (b"x\n1\n2\nabc\n4\n", ["--column", "x", "--k", "2"], "non-numeric values in 1 cell"),
        (b"x\n1\n\n2\nnan\n5\n6\n", ["--column", "x", "--k", "2"], "row(s) with empty, NaN"),
        (b"x\n1\n2\n3\n", ["--column", "x", "--k", "5"], "`k` should be at most the number"),
        (b"x\n1\n2\n3\n", ["--column", "x", "--k", "0"], "`k` should be an integer >= 1"),
        (b"x\n1\n2\n3\n", ["--column", "x"], "give the number of components with --k"),
        (b"x\n1\n2\n3\n", ["--k", "2"], "give the column(s) to model"),
        (
            b"x,y\n1,2\n3,4\n5,6\n",
            ["--columns", "x,y", "--model", "full", "--k", "2"],
            "takes one column",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, args, message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_bytes(content)
    proc = run("fit", path, *args, "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_malformed_priors_file_names_the_key(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"x": mixtures.load_dataset("three_gaussians")["x"]}).to_csv(path, index=False)
    bad_json = tmp_path / "priors.json"
    bad_json.write_text("{not json")
    proc = run(
        "fit", path, "--column", "x", "--k", "3", "--priors", bad_json, "--out", tmp_path / "o"
    )
    assert proc.returncode == 2 and "not valid json" in proc.stderr
    bad_key = tmp_path / "priors.toml"
    bad_key.write_text("[sigma]\nsigma = -1.0\n")
    proc = run(
        "fit", path, "--column", "x", "--k", "3", "--priors", bad_key, "--out", tmp_path / "o"
    )
    assert proc.returncode == 2
    assert "`priors['sigma']['sigma']` should be > 0, but got -1.0" in proc.stderr


def test_drop_missing_reports_what_it_dropped(tmp_path):
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy().copy()
    y[[3, 10]] = np.nan
    path = tmp_path / "data.csv"
    pd.DataFrame({"x": y}).to_csv(path, index=False)
    out = tmp_path / "out"
    proc = run("fit", path, "--column", "x", "--k", "3", "--drop-missing", "--out", out, *FAST)
    assert proc.returncode in (0, 3), proc.stderr
    assert "dropped 2 row(s)" in proc.stdout
    assert json.loads((out / "run.json").read_text())["data"]["dropped_rows"] == 2


def test_tiny_scales_print_readable_numbers(tmp_path):
    y = mixtures.load_dataset("three_gaussians")["x"].to_numpy() * 1e-9
    path = tmp_path / "data.csv"
    pd.DataFrame({"x": y}).to_csv(path, index=False)
    out = tmp_path / "out"
    proc = run("fit", path, "--column", "x", "--k", "3", "--out", out, *FAST)
    assert proc.returncode in (0, 3), proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| means[1] |"))
    mean = row.split("|")[2].strip()
    assert mean != "0.000" and float(mean) == pytest.approx(2.1e-8, rel=0.05)


def test_convergence_problems_exit_3_with_outputs_written(csv, tmp_path):
    out = tmp_path / "out"
    proc = run("fit", csv, "--column", "x", "--k", "3", "--out", out, "--draws", "20",
               "--tune", "20", "--chains", "2", "--quiet")  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "convergence problems" in proc.stderr and "Try more --draws" in proc.stderr
    assert (out / "posterior.nc").is_file()


def test_sigint_mid_sampling_exits_130_and_writes_nothing(csv, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixtures", "fit", str(csv), "--column", "x", "--k", "3",
         "--out", str(out), "--draws", "1000000", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert "rows" in proc.stdout.readline()  # the model is built; sampling starts
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted (Ctrl-C); no output was written" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_help_is_fast_and_complete():
    t0 = time.perf_counter()
    proc = run_process("fit", "--help")
    assert time.perf_counter() - t0 < 2.5  # PyMC is not imported for --help
    text = proc.stdout
    for option in ("--column", "--columns", "--model", "--k", "--latent", "--sampler", "--draws",
                   "--tune", "--chains", "--seed", "--priors", "--out", "--overwrite",
                   "--drop-missing"):  # fmt: skip
        assert option in text
    assert "runs until r_hat <= 1.01 and bulk and tail ESS >= 400" in " ".join(text.split())
    assert "examples:" in text
    top = run_process("--help").stdout
    assert "exit codes: 0 success; 2 bad input; 3 finished with convergence problems" in top


def test_version_and_datasets():
    assert run_process("--version").stdout.startswith("mixtures ")
    listing = run("datasets").stdout.splitlines()
    assert any(line.startswith("galaxies ") for line in listing)
    assert len(listing) == len(mixtures.list_datasets())


@pytest.mark.filterwarnings("ignore::mixtures.ConvergenceWarning")  # 200 draws on purpose
def test_demo_prints_table_and_writes_figure(tmp_path, capsys):
    out = tmp_path / "ppc.png"
    nc = tmp_path / "fit.nc"
    code = main(["demo", "--draws", "200", "--tune", "200", "--chains", "2", "--quiet",
                 "--out", str(out), "--netcdf", str(nc)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "| means[1] |" in text and "| sigma[2] |" in text
    assert f"PPC figure written to {out}" in text
    assert mpimg.imread(out).shape[0] > 100
    assert nc.stat().st_size > 0


def _user_folder(tmp_path, csv):
    """A user's project folder: the data, a priors file and a file of their own."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "data.csv").write_bytes(csv.read_bytes())
    (folder / "priors.json").write_text('{"sigma": {"dist": "HalfNormal", "sigma": 5}}')
    (folder / "notes.txt").write_text("my notes")
    return folder, {p.name: p.read_bytes() for p in folder.iterdir()}


def test_overwrite_never_touches_the_users_files(csv, tmp_path):
    folder, before = _user_folder(tmp_path, csv)
    args = ["fit", folder / "data.csv", "--column", "x", "--k", "2", "--priors",
            folder / "priors.json", "--out", folder, *FAST]  # fmt: skip
    first = run(*args)
    assert first.returncode in (0, 3), first.stderr
    summary = (folder / "summary.csv").read_bytes()
    again = run(*args, "--overwrite")  # replaces the outputs of the first run
    assert again.returncode in (0, 3), again.stderr
    for name, content in before.items():
        assert (folder / name).read_bytes() == content, name
    record = json.loads((folder / "run.json").read_text())
    assert sorted(record["outputs"]) == sorted(
        ["summary.csv", "summary.md", "ppc.png", "trace.png", "posterior.nc", "run.json"]
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted([*before, *record["outputs"]])
    assert (folder / "summary.csv").read_bytes() == summary  # same seed, same draws


def test_an_out_whose_outputs_would_replace_an_input_is_refused(csv, tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    data = folder / "summary.csv"  # the user's data under an output's name
    data.write_bytes(csv.read_bytes())
    proc = run("fit", data, "--column", "x", "--k", "2", "--out", folder, "--overwrite", *FAST)
    assert proc.returncode == 2
    assert "holds summary.csv, which this run reads and would overwrite" in proc.stderr
    assert data.read_bytes() == csv.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["summary.csv"]


def test_sigint_with_overwrite_leaves_every_file_as_it_was(csv, tmp_path):
    folder, before = _user_folder(tmp_path, csv)
    first = run("fit", folder / "data.csv", "--column", "x", "--k", "2", "--out", folder, *FAST)
    assert first.returncode in (0, 3), first.stderr
    before = {p.name: p.read_bytes() for p in folder.iterdir()}  # user's files and outputs
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixtures", "fit", str(folder / "data.csv"), "--column", "x",
         "--k", "3", "--out", str(folder), "--overwrite", "--draws", "1000000", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert "rows" in proc.stdout.readline()
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_second_run_removes_only_its_own_stale_outputs(tmp_path):
    folder = tmp_path / "out"
    path = tmp_path / "faithful.csv"
    mixtures.load_dataset("old_faithful").to_csv(path, index=False)
    two_d = run("fit", path, "--columns", "eruptions,waiting", "--k", "2", "--out", folder, *FAST)
    assert two_d.returncode in (0, 3), two_d.stderr
    assert (folder / "mixture_2d.png").is_file()
    (folder / "keep.txt").write_text("mine")
    one_d = run("fit", path, "--column", "waiting", "--k", "2", "--out", folder, "--overwrite",
                *FAST)  # fmt: skip
    assert one_d.returncode in (0, 3), one_d.stderr
    assert not (folder / "mixture_2d.png").exists()  # the 2-D run's figure, listed in its run.json
    assert (folder / "keep.txt").read_text() == "mine"


def test_figures_keep_the_csv_column_names_and_have_titles(tmp_path, monkeypatch):
    from mixtures import cli

    seen = {}

    def record(fig, path):
        seen[path.name] = [(ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) for ax in fig.axes]
        seen[path.name + ":suptitle"] = fig._suptitle.get_text() if fig._suptitle else ""

    monkeypatch.setattr(cli, "_save_figure", record)
    path = tmp_path / "faithful.csv"
    mixtures.load_dataset("old_faithful").to_csv(path, index=False)
    assert main(["fit", str(path), "--column", "waiting", "--k", "2", "--out",
                 str(tmp_path / "one"), *FAST]) in (0, 3)  # fmt: skip
    xlabel, _, title = seen["ppc.png"][0]
    assert xlabel == "waiting"
    assert title == "faithful.csv, full mixture, k = 2: posterior predictive check"
    assert seen["trace.png:suptitle"] == "faithful.csv, full mixture, k = 2: trace"
    seen.clear()
    assert main(["fit", str(path), "--columns", "eruptions,waiting", "--k", "2", "--out",
                 str(tmp_path / "two"), *FAST]) in (0, 3)  # fmt: skip
    for name in ("mixture_2d.png", "ppc.png"):
        xlabel, ylabel, title = seen[name][0]
        assert (xlabel, ylabel) == ("eruptions", "waiting"), name
        assert title.startswith("faithful.csv, mv mixture, k = 2: ")
    trace_titles = [t for _, _, t in seen["trace.png"]]
    assert "means (eruptions)" in trace_titles and "means (waiting)" in trace_titles
    summary = pd.read_csv(tmp_path / "two" / "summary.csv", index_col=0)
    assert {"correlation[0, eruptions~waiting]", "correlation[1, eruptions~waiting]"} <= set(
        summary.index
    )


def test_the_netcdf_holds_nothing_of_size_rows_times_draws(fit_run):
    _, out = fit_run
    idata = az.from_netcdf(out / "posterior.nc")
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data", "constant_data"}
    n_obs = idata.observed_data.sizes["obs_id"]
    draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    for group in idata.groups():
        for name, var in idata[group].data_vars.items():
            assert var.size < n_obs * draws, (group, name)


def test_the_default_run_continues_until_its_checks_pass(csv, tmp_path):
    out = tmp_path / "out"
    proc = run("fit", csv, "--column", "x", "--k", "3", "--out", out, "--seed", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["arguments"]["draws"] is None
    assert record["engine"]["draws_reason"].startswith("diagnostics passed")
    idata = az.from_netcdf(out / "posterior.nc")
    assert idata.posterior.sizes["draw"] == record["engine"]["draws_per_chain"]
    table = az.summary(idata, var_names=["weights", "means", "sigma"], round_to="none")
    assert table["r_hat"].max() <= 1.01 and table[["ess_bulk", "ess_tail"]].min().min() >= 400


def test_write_into_is_all_or_nothing(tmp_path):
    """The CLI's outputs go through mixtures._io.write_into: whole sets of files, or none."""
    from mixtures._io import plain_mode, write_into

    def files(**contents):
        def write(staging):
            for name, text in contents.items():
                (staging / name).write_text(text)
            return list(contents)

        return write

    out = tmp_path / "out"
    assert write_into(out, files(a="1", b="2")) == ["a", "b"]
    assert os.stat(out).st_mode & 0o777 == plain_mode(directory=True)
    (out / "mine.txt").write_text("keep")

    def fail(staging):
        (staging / "a").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_into(out, fail)
    assert (out / "a").read_text() == "1"
    write_into(out, files(a="3"), stale=lambda: {"a", "b", "mine.txt"} - {"mine.txt"})
    assert sorted(p.name for p in out.iterdir()) == ["a", "mine.txt"]
    assert (out / "a").read_text() == "3"
    assert not list(tmp_path.glob(".out.staging-*"))
