"""The Gibbs sweep on a Dask cluster (``mixtures.sample(model, client=...)``).

The reference is the local Gibbs engine on the same data in one process: with the same seed
the distributed run must give the same draws (up to the order of floating-point sums), also
when a worker is killed mid-run. One LocalCluster of two worker processes serves the module.
"""

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest

import mixtures
from mixtures.model.dask_data import GUARD, dask_data_of

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _univariate(n, seed=1):
    rng = np.random.default_rng(seed)
    sizes = [n // 2, n // 4, n - n // 2 - n // 4]
    y = np.concatenate(
        [
            rng.normal(-3.0, 1.0, sizes[0]),
            rng.normal(2.0, 0.7, sizes[1]),
            rng.normal(6, 1.5, sizes[2]),
        ]
    )
    return rng.permutation(y)


def _bivariate(n, seed=2):
    rng = np.random.default_rng(seed)
    means = np.array([[-4.0, 0.0], [0.0, 3.0], [4.0, -1.0]])
    cov = np.array([[1.0, 0.3], [0.3, 0.8]])
    x = np.concatenate([rng.multivariate_normal(m, cov, n // 3 + 1) for m in means])[:n]
    return rng.permutation(x)


def _assert_same_draws(local, remote, names):
    for name in names:
        a, b = local.posterior[name].values, remote.posterior[name].values
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=0, err_msg=name)
    np.testing.assert_array_equal(
        remote.sample_stats["n_changed"].values, local.sample_stats["n_changed"].values
    )
    np.testing.assert_allclose(
        remote.sample_stats["complete_loglik"].values,
        local.sample_stats["complete_loglik"].values,
        rtol=1e-10,
    )


RUN = {"draws": 40, "tune": 20, "chains": 2, "random_seed": 7, "progressbar": False, "warn": False}


@pytest.mark.parametrize(
    ("factory", "kwargs", "names"),
    [
        (mixtures.full_mixture, {"k": 3}, ("weights", "means", "sigma")),
        (mixtures.shared_sd_mixture, {"k": 3}, ("weights", "means", "sigma")),
        (mixtures.full_mixture, {"k": 3, "sigma": [1.0, 0.7, 1.5]}, ("weights", "means")),
        (
            mixtures.known_params_mixture,
            {"means": [-3.0, 2.0, 6.0], "sds": [1.0, 0.7, 1.5]},
            ("weights",),
        ),
    ],
    ids=["full", "shared_sd", "known_sd", "known_params"],
)
def test_same_draws_as_the_local_engine_univariate(client, factory, kwargs, names):
    y = _univariate(20_000)
    local = mixtures.sample(factory(y, **kwargs), tempering=False, **RUN)
    model = factory(da.from_array(y, chunks=6_000), **kwargs)  # uneven chunks: 3 x 6000 + 2000
    remote = mixtures.sample(model, client=client, **RUN)
    _assert_same_draws(local, remote, names)
    assert remote.posterior.attrs["mixtures_starts"] == local.posterior.attrs["mixtures_starts"]
    assert set(remote.groups()) <= {"posterior", "sample_stats", "constant_data"}
    assert "mixtures_cluster" in remote.posterior.attrs


def test_same_draws_as_the_local_engine_bivariate(client):
    x = _bivariate(20_000)
    local = mixtures.sample(mixtures.mv_mixture(x, 3), tempering=False, **RUN)
    model = mixtures.mv_mixture(da.from_array(x, chunks=(7_000, 2)), 3)
    remote = mixtures.sample(model, client=client, **RUN)
    _assert_same_draws(local, remote, ("weights", "means", "chol_cov", "sigma"))


@pytest.mark.parametrize("factory", [mixtures.full_mixture, mixtures.shared_sd_mixture])
def test_same_draws_as_the_local_engine_with_the_relocation_move(client, factory):
    """K = 4 on three clusters: a near-empty component, so the move proposes and accepts."""
    y = _univariate(20_000)
    local = mixtures.sample(factory(y, 4), tempering=False, **RUN)
    without = mixtures.sample(factory(y, 4), tempering=False, moves=False, **RUN)
    assert not np.array_equal(local.posterior["means"].values, without.posterior["means"].values)
    remote = mixtures.sample(factory(da.from_array(y, chunks=6_000), 4), client=client, **RUN)
    _assert_same_draws(local, remote, ("weights", "means", "sigma"))
    assert remote.posterior.attrs["mixtures_steps"].startswith(local.posterior.attrs["mixtures_steps"])
    assert "relocation" in remote.posterior.attrs["mixtures_steps"]
    off = mixtures.sample(
        factory(da.from_array(y, chunks=6_000), 4), client=client, moves=False, **RUN
    )
    _assert_same_draws(without, off, ("weights", "means", "sigma"))


@pytest.mark.slow
@pytest.mark.parametrize("dim", [1, 2])
def test_same_draws_at_1e5(client, dim):
    data = _univariate(100_000) if dim == 1 else _bivariate(100_000)
    factory = mixtures.full_mixture if dim == 1 else mixtures.mv_mixture
    run = {**RUN, "draws": 200, "tune": 200}
    local = mixtures.sample(factory(data, 3), tempering=False, **run)
    chunks = 30_000 if dim == 1 else (30_000, 2)
    remote = mixtures.sample(factory(da.from_array(data, chunks=chunks), 3), client=client, **run)
    names = ("weights", "means", "sigma") + (("chol_cov",) if dim == 2 else ())
    _assert_same_draws(local, remote, names)


@pytest.mark.parametrize("backend", ["actors", pytest.param("tasks", marks=pytest.mark.slow)])
def test_a_worker_killed_mid_run_changes_nothing(client, monkeypatch, backend):
    from mixtures.engines import distributed as engine

    y = _univariate(20_000, seed=3)
    model = mixtures.full_mixture(da.from_array(y, chunks=5_000), 3)
    run = {**RUN, "draws": 100, "tune": 50, "backend": backend}
    reference = mixtures.sample(model, client=client, **run)
    sweep, killed = engine.ChunkedData.sweep, {}

    def sweep_and_kill(self, it, now, before):  # SIGKILL the worker of chunk 0 at iteration 60
        if it == 60 and not killed:
            pids = self.client.run(os.getpid)
            where = self.client.who_has(self.blocks[:1])[self.blocks[0].key][0]
            os.kill(pids[where], signal.SIGKILL)
            killed["worker"] = where
        return sweep(self, it, now, before)

    monkeypatch.setattr(engine.ChunkedData, "sweep", sweep_and_kill)
    rerun = mixtures.sample(model, client=client, **run)
    assert killed, "a worker should have been killed during the run"
    client.wait_for_workers(2, timeout=60)
    assert killed["worker"] not in client.nthreads(), "a new worker process replaced it"
    if backend == "actors":
        assert json.loads(rerun.posterior.attrs["mixtures_cluster"])["lost"] >= 1
    _assert_same_draws(reference, rerun, ("weights", "means", "sigma"))


@pytest.mark.slow
def test_a_worker_killed_before_a_move_changes_nothing(client, monkeypatch):
    """The move's likelihood sums of a lost worker's chunks are recomputed by tasks."""
    from mixtures.engines import distributed as engine

    y = _univariate(20_000, seed=3)
    model = mixtures.full_mixture(da.from_array(y, chunks=5_000), 4)
    run = {**RUN, "draws": 60, "tune": 30}
    reference = mixtures.sample(model, client=client, **run)
    change, killed, calls = engine.ChunkedData.change, {}, []

    def kill_then_change(self, *args):  # SIGKILL the worker of chunk 0 at the 10th move
        calls.append(1)
        if len(calls) == 10 and not killed:
            pids = self.client.run(os.getpid)
            where = self.client.who_has(self.blocks[:1])[self.blocks[0].key][0]
            os.kill(pids[where], signal.SIGKILL)
            killed["worker"] = where
        return change(self, *args)

    monkeypatch.setattr(engine.ChunkedData, "change", kill_then_change)
    rerun = mixtures.sample(model, client=client, **run)
    assert killed, "a worker should have been killed during the run"
    client.wait_for_workers(2, timeout=60)
    _assert_same_draws(reference, rerun, ("weights", "means", "sigma"))


def test_ctrl_c_stops_the_run_cleanly(client, monkeypatch):
    from mixtures.engines import distributed as engine

    model = mixtures.full_mixture(da.from_array(_univariate(10_000), chunks=5_000), 3)
    sweep = engine.ChunkedData.sweep

    def sweep_then_interrupt(self, it, now, before):
        if it == 15:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C in the terminal
        return sweep(self, it, now, before)

    monkeypatch.setattr(engine.ChunkedData, "sweep", sweep_then_interrupt)
    with pytest.raises(mixtures.SamplingInterrupted, match="interrupted .Ctrl-C."):
        mixtures.sample(model, client=client, **RUN)
    monkeypatch.setattr(engine.ChunkedData, "sweep", sweep)
    idata = mixtures.sample(model, client=client, **{**RUN, "draws": 5, "tune": 5})
    assert idata.posterior.sizes["draw"] == 5  # the cluster is fine afterwards


def test_nothing_of_size_n_is_held_or_fetched(client, monkeypatch):
    from mixtures.engines import distributed as engine

    n = 30_000
    model = mixtures.full_mixture(da.from_array(_univariate(n), chunks=10_000), 3)
    sizes = [np.size(v.get_value()) for v in model.data_vars]
    assert max(sizes) < 10, sizes  # the placeholder y_data is empty; known values are K-sized
    fetched, swept = [], []
    take, sweep = engine.ChunkedData.take, engine.ChunkedData.sweep

    def counting_take(self, idx):
        fetched.append(np.size(idx))
        return take(self, idx)

    def counting_sweep(self, it, now, before):
        out = sweep(self, it, now, before)
        swept.append(max(np.size(a) for a in out))
        return out

    monkeypatch.setattr(engine.ChunkedData, "take", counting_take)
    monkeypatch.setattr(engine.ChunkedData, "sweep", counting_sweep)
    idata = mixtures.sample(model, client=client, **{**RUN, "draws": 10, "tune": 10})
    assert sum(fetched) == 2_000  # the EM subsample, as the local engine draws it
    assert max(swept) <= 2 * 3  # per iteration: K-sized statistics per chain
    assert idata.posterior["weights"].shape == (2, 10, 3)


def test_priors_from_dask_reductions_match_numpy():
    y = _univariate(12_000)
    local = mixtures.spec_of(mixtures.full_mixture(y, 3))
    remote = mixtures.spec_of(mixtures.full_mixture(da.from_array(y, chunks=5_000), 3))
    for name, prior in local.priors.items():
        for key, value in prior.params.items():
            np.testing.assert_allclose(remote.priors[name].params[key], value, rtol=1e-12)
    assert remote.built_on["n_obs"] == 12_000 and remote.built_on["storage"] == "dask"
    np.testing.assert_allclose(remote.built_on["sd"], np.std(y), rtol=1e-12)
    x = _bivariate(9_000)
    local = mixtures.spec_of(mixtures.mv_mixture(x, 3))
    remote = mixtures.spec_of(mixtures.mv_mixture(da.from_array(x, chunks=(4_000, 2)), 3))
    np.testing.assert_allclose(
        remote.priors["wishart"].params["psi"], local.priors["wishart"].params["psi"], rtol=1e-12
    )
    np.testing.assert_allclose(
        remote.priors["means"].params["mu"], local.priors["means"].params["mu"], rtol=1e-12
    )


def test_tied_data_get_the_sd_floor_from_the_chunks():
    y = np.round(_univariate(10_000), 1)  # resolution 0.1
    local = mixtures.spec_of(mixtures.full_mixture(y, 3))
    remote = mixtures.spec_of(mixtures.full_mixture(da.from_array(y, chunks=2_500), 3))
    assert local.sigma_floor > 0
    np.testing.assert_allclose(remote.sigma_floor, local.sigma_floor, rtol=1e-9)


def test_dask_dataframe_columns():
    frame = pd.DataFrame(_bivariate(4_000), columns=["a", "b"])
    ddf = dd.from_pandas(frame, npartitions=3)
    uni = mixtures.full_mixture(ddf["a"], 2)
    np.testing.assert_allclose(mixtures.spec_of(uni).built_on["mean"], frame["a"].mean())
    multi = mixtures.mv_mixture(ddf[["a", "b"]], 2)
    assert list(multi.coords["feature"]) == ["a", "b"]
    assert dask_data_of(multi).shape == (4_000, 2)


def test_clear_errors(client):
    y = _univariate(5_000)
    model = mixtures.full_mixture(da.from_array(y, chunks=2_000), 2)
    with pytest.raises(ValueError, match=r"client=client"):
        mixtures.sample(model)
    with pytest.raises(ValueError, match=r"client=client"):
        mixtures.compile_model(model)
    with pytest.raises(ValueError, match=r"`model` should be built on a dask.array"):
        mixtures.sample(mixtures.full_mixture(y, 2), client=client)
    with pytest.raises(ValueError, match=r"`client` should be a dask.distributed.Client"):
        mixtures.sample(model, client="tcp://localhost:8786")
    with pytest.raises(ValueError, match=r"`tempering` should be 'auto' or False"):
        mixtures.sample(model, client=client, tempering=8)
    with pytest.raises(ValueError, match=r"`log_likelihood` should be 'auto' or False"):
        mixtures.sample(model, client=client, log_likelihood=True)
    with pytest.raises(ValueError, match=r"`sampler` should be 'auto' or 'gibbs'"):
        mixtures.sample(model, client=client, sampler="pymc")
    bad = y.copy()
    bad[[3, 4000]] = np.nan
    with pytest.raises(ValueError, match=r"`y` should contain only finite values, but got 2 NaN"):
        mixtures.full_mixture(da.from_array(bad, chunks=2_000), 2)
    with pytest.raises(ValueError, match=r"`labels` should be None for dask data"):
        mixtures.full_mixture(da.from_array(y, chunks=2_000), 2, labels=np.zeros(5_000, int))
    with pytest.raises(ValueError, match=r"`X` should be a 2-D array"):
        mixtures.mv_mixture(da.from_array(y, chunks=2_000), 2)
    lkj = mixtures.mv_mixture(da.from_array(_bivariate(900), chunks=(300, 2)), 2, covariance="diag")
    with pytest.raises(ValueError, match=r"cannot be sampled on a Dask cluster: multivariate"):
        mixtures.sample(lkj, client=client)
    assert model.point_logps()[GUARD] == -np.inf  # a bare pm.sample cannot start
