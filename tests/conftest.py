import os

# One BLAS thread per process: the mixtures' matrices are tiny, and on a 2-core machine a
# test process and a notebook kernel each spinning several OpenBLAS threads slowed the
# multivariate fits twentyfold. Set before NumPy is first imported (kernels inherit it).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
# Progress bars are on by default for users (notebooks, CLI) and off in the tests, including
# the notebook kernels the tests start (they inherit this environment).
os.environ.setdefault("MIXTURES_PROGRESSBAR", "0")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mixtures  # noqa: E402

#: Generating values of the shipped `three_gaussians` data.
TRUE_MEANS = np.array([9.0, 21.0, 35.0])
TRUE_SD = 2.0
TRUE_WEIGHTS = np.array([90, 50, 75]) / 215


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def y3():
    return mixtures.load_dataset("three_gaussians")["x"].to_numpy()


@pytest.fixture(scope="session")
def fitted(y3):
    """A marginalised full mixture on three_gaussians, sampled once for the session."""
    model = mixtures.full_mixture(y3, 3, marginalized=True)
    idata = mixtures.sample(
        model, draws=500, tune=500, chains=2, random_seed=11, progressbar=False, sampler="pymc"
    )
    mixtures.sample_posterior_predictive(model, idata, random_seed=12)
    return model, idata


@pytest.fixture
def one_thread():
    """A context manager that runs its block with Numba's threads set to one.

    For the tests that compare a run on one thread with the same run on all; skips the test
    on a machine with one CPU, where there is nothing to compare.
    """
    import contextlib

    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: nothing to split")

    @contextlib.contextmanager
    def on_one_thread():
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    return on_one_thread
