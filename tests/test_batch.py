"""fit_many: the same draws on every backend, results that survive interrupts and dead workers."""

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import mixtures
from mixtures.batch import fit_many

FIT = {"draws": 150, "tune": 150, "chains": 2, "tempering": None, "progressbar": False}


@pytest.fixture(scope="module")
def model(y3):
    return mixtures.full_mixture(y3, 3)


@pytest.fixture(scope="module")
def boots(y3):
    rng = np.random.default_rng(0)
    return {f"boot{i}": rng.choice(y3, 120) for i in range(6)}


@pytest.fixture(scope="module")
def serial(model, boots):
    return fit_many(model, boots, backend="serial", random_seed=5, **FIT)


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as c,
        Client(c) as cl,
    ):
        yield cl


def _same_draws(a, b, names):
    for name in names:
        for var in ("weights", "means", "sigma"):
            np.testing.assert_array_equal(
                a[name].posterior[var].values, b[name].posterior[var].values
            )


def test_serial_fits_are_the_model_fitted_one_by_one(model, boots, serial):
    # an independent computation: the handle API on each data set, with the seed fit_many
    # records for it
    assert list(serial) == list(boots)
    handle = mixtures.compile_model(_clone(model))
    for name, y in boots.items():
        seed = int(serial.fits.set_index("name").loc[name, "seed"])
        idata = handle.sample(y, random_seed=seed, warn=False, **FIT)
        np.testing.assert_array_equal(
            idata.posterior["means"].values, serial[name].posterior["means"].values
        )
        # the fit is of its own data set
        assert serial[name].observed_data["y"].size == y.size
    table = serial.summary
    assert set(table["fit"]) == set(boots)
    assert {"mean", "r_hat", "ess_bulk", "seconds", "divergences"} <= set(table.columns)
    assert len(table) == len(boots) * 9  # weights, means, sigma of 3 components
    # the summary's means are the posterior means
    row = table[(table.fit == "boot0") & (table.parameter == "means[1]")]
    assert row["mean"].item() == pytest.approx(
        float(serial["boot0"].posterior["means"][..., 1].mean())
    )


def _clone(model):
    import cloudpickle

    return cloudpickle.loads(cloudpickle.dumps(model))


def test_the_user_model_keeps_its_data(model, y3, serial):
    assert model["y_data"].get_value().size == y3.size


def test_local_cluster_gives_the_serial_draws(model, boots, serial, client):
    dask = fit_many(model, boots, client=client, random_seed=5, **FIT)
    assert set(dask.fits["worker"]) <= {"0", "1"}
    # each worker compiles in its own PyTensor directory
    dirs = client.run(lambda: str(__import__("pytensor").config.compiledir))
    assert len(set(dirs.values())) == 2
    assert all("mixtures-workers/worker-" in d for d in dirs.values())
    _same_draws(serial, dask, boots)
    # order and names are the input's, whatever order the workers finished in
    assert list(dask) == list(boots)


def test_embedded_processes_backend(model, boots, serial):
    small = dict(list(boots.items())[:2])
    out = fit_many(model, small, backend="processes", n_workers=2, random_seed=5, **FIT)
    _same_draws(serial, out, small)


def test_a_dead_worker_loses_no_fit(model, boots, serial, client, tmp_path):
    killed = []

    def kill_one(record):
        if not killed:  # SIGKILL a worker process mid-run (as the OOM killer would)
            worker, pid = next(iter(client.run(os.getpid).items()))
            killed.append(worker)
            os.kill(pid, signal.SIGKILL)

    out = fit_many(
        model, boots, client=client, random_seed=5, results_dir=tmp_path, callback=kill_one, **FIT
    )
    assert killed
    assert killed[0] not in client.scheduler_info()["workers"]  # it died (its nanny restarted it)
    assert not out.failed
    _same_draws(serial, out, boots)
    assert sorted(p.name for p in (tmp_path / "fits").glob("*.json")) == sorted(
        f"{n}.json" for n in boots
    )


def test_interrupt_then_resume(model, boots, serial, tmp_path):
    seen = []

    def stop_after_two(record):
        seen.append(record["name"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(mixtures.SamplingInterrupted, match="after 2 new fits.*resume"):
        fit_many(
            model,
            boots,
            backend="serial",
            random_seed=5,
            results_dir=tmp_path,
            callback=stop_after_two,
            **FIT,
        )
    assert len(list((tmp_path / "fits").glob("*.json"))) == 2
    assert not list((tmp_path / "fits").glob("*.part"))
    partial = pd.read_csv(tmp_path / "summary.csv")
    assert set(partial["fit"]) == set(seen)

    again = []
    out = fit_many(
        model,
        boots,
        backend="serial",
        random_seed=5,
        results_dir=tmp_path,
        callback=lambda r: again.append(r["name"]),
        **FIT,
    )
    assert sorted(again) == sorted(set(boots) - set(seen))  # nothing re-run
    _same_draws(serial, out, boots)  # resumed fits read back from NetCDF, the others fresh
    full = pd.read_csv(tmp_path / "summary.csv")
    assert set(full["fit"]) == set(boots)
    assert len(full) == len(serial.summary)


def test_resume_refuses_a_different_model(model, boots, y3, tmp_path):
    small = dict(list(boots.items())[:1])
    fit_many(model, small, backend="serial", random_seed=5, results_dir=tmp_path, **FIT)
    with pytest.raises(ValueError, match="different spec"):
        fit_many(mixtures.full_mixture(y3, 2), small, backend="serial", results_dir=tmp_path, **FIT)


def test_a_failed_fit_is_recorded_and_the_rest_go_on(model, boots, tmp_path):
    data = {"good": boots["boot0"], "constant": np.full(40, 3.0), "good2": boots["boot1"]}
    out = fit_many(model, data, backend="serial", random_seed=5, results_dir=tmp_path, **FIT)
    assert list(out) == ["good", "good2"]
    assert "constant" in out.failed and "should" in out.failed["constant"]
    record = json.loads((tmp_path / "fits" / "constant.json").read_text())
    assert record["status"] == "failed" and "Traceback" in record["traceback"]
    with pytest.raises(KeyError, match="it failed"):
        out["constant"]
    row = out.summary[out.summary.fit == "constant"]
    assert row["status"].item() == "failed"
    # retry_failed re-runs it (and it fails again, with the same record)
    again = fit_many(
        model, data, backend="serial", random_seed=5, results_dir=tmp_path, retry_failed=True, **FIT
    )
    assert set(again.failed) == {"constant"}


def test_dataset_collections(model, y3):
    df = pd.DataFrame({"g": np.repeat(["a", "b"], 60), "x": y3[:120]})
    out = fit_many(model, df.groupby("g")["x"], backend="serial", random_seed=1, **FIT)
    assert list(out) == ["a", "b"]
    np.testing.assert_array_equal(out["b"].observed_data["y"].values, y3[60:120])
    gen = (y3[i : i + 50] for i in range(0, 150, 50))
    assert list(fit_many(model, gen, backend="serial", random_seed=1, **FIT)) == [0, 1, 2]


def test_student_t_model():
    # a t model (nu sampled) goes through fit_many as any other: each fit is the handle's fit
    # of its data set with the seed fit_many records, nu included
    rng = np.random.default_rng(3)
    data = {
        f"d{i}": np.concatenate([rng.standard_t(4, 60) - 4.0, rng.standard_t(4, 60) + 4.0])
        for i in range(2)
    }
    model = mixtures.full_mixture(data["d0"], 2, family="t")
    out = fit_many(model, data, backend="serial", random_seed=2, **FIT)
    handle = mixtures.compile_model(_clone(model))
    for name, y in data.items():
        seed = int(out.fits.set_index("name").loc[name, "seed"])
        ref = handle.sample(y, random_seed=seed, warn=False, **FIT)
        for var in ("means", "sigma", "nu"):
            np.testing.assert_array_equal(out[name].posterior[var].values, ref.posterior[var].values)
    assert "nu[0]" in set(out.summary["parameter"])


def test_multivariate_model():
    X = mixtures.load_dataset("old_faithful").to_numpy()
    model = mixtures.mv_mixture(X, 2, covariance_prior="wishart")
    out = fit_many(
        model, {"first": X[:120], "last": X[-120:]}, backend="serial", random_seed=2, **FIT
    )
    assert out["last"].observed_data["y"].shape == (120, 2)
    assert "means[1, 0]" in set(out.summary["parameter"])


@pytest.mark.parametrize(
    ("datasets", "kwargs", "match"),
    [
        (np.zeros(10), {}, "collection of data sets"),
        ([np.zeros(10)], {"backend": "threads"}, "backend"),
        ({"a": np.zeros(10)}, {"postprocess": 3}, "callable"),
        ({"a": np.zeros(10)}, {"draws": -1}, "draws"),
    ],
)
def test_bad_input(model, datasets, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_many(model, datasets, **kwargs)


def test_names_must_differ_as_text(model, y3):
    with pytest.raises(ValueError, match="unique names"):
        fit_many(model, {1: y3[:30], "1": y3[30:60]}, backend="serial", **FIT)


def test_a_few_fits_run_serially_by_default_and_problems_get_one_line(model, boots, capsys):
    from mixtures.batch import SERIAL_BELOW, default_backend

    assert default_backend({"a": 1, "b": 2}, None) == "serial"
    assert default_backend(list(range(SERIAL_BELOW)), 2) == "processes"
    assert default_backend(iter(range(3)), 2) == "processes"  # unknown length: many
    assert default_backend(list(range(100)), 1) == "serial"
    data = {"good": boots["boot0"], "short": boots["boot1"], "constant": np.full(40, 3.0)}
    short = {**FIT, "draws": 20, "tune": 20}  # 20 draws cannot reach ESS 400
    out = fit_many(model, data, random_seed=5, **short)
    assert set(out.fits["worker"]) == {"serial"}  # no cluster was started for three fits
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("fit_many: of 3 fits, 2 missed the convergence checks (good, short)")
    assert "1 failed (constant)" in err[0]
    assert out.fits.set_index("name").loc[["good", "short"], "converged"].tolist() == [False, False]


def test_a_results_dir_with_the_users_files_is_refused(model, boots, tmp_path):
    (tmp_path / "summary.csv").write_text("the user's own table")
    with pytest.raises(ValueError, match="holds summary.csv without fit_many's run.json"):
        fit_many(model, {"a": boots["boot0"]}, backend="serial", results_dir=tmp_path, **FIT)
    assert (tmp_path / "summary.csv").read_text() == "the user's own table"
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text('{"my": "settings"}')
    with pytest.raises(ValueError, match="was not written by fit_many"):
        fit_many(model, {"a": boots["boot0"]}, backend="serial", results_dir=other, **FIT)
    assert (other / "run.json").read_text() == '{"my": "settings"}'
    (other / "notes.txt").write_text("kept")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "notes.txt").write_text("kept")  # other files are fine, and left alone
    fit_many(model, {"a": boots["boot0"]}, backend="serial", results_dir=fresh, **FIT)
    assert (fresh / "notes.txt").read_text() == "kept"
