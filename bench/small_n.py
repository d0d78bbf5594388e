"""The default tempered fit at N = 215 (three_gaussians, K = 3) on one thread and on all (issue 21).

Each fit runs 4 chains x 32 temperatures (128 replicas) for its tuning and 500 draws; the
chains are split among the threads (`mixtures.engines.chain_threads`). Prints the sampling
time and the CPU cost per replica and iteration for each thread count, alternating, so that
what the second core adds is measured in one run: ``python bench/small_n.py``.
"""

import os
import warnings

os.environ.setdefault("MIXTURES_PROGRESSBAR", "0")
warnings.simplefilter("ignore")

import numba  # noqa: E402

import mixtures  # noqa: E402

y = mixtures.load_dataset("three_gaussians")["x"].to_numpy()
model = mixtures.full_mixture(y, 3)
mixtures.sample(model, random_seed=0, warn=False)  # warm
all_threads = numba.config.NUMBA_NUM_THREADS
for threads in (1, all_threads, 1, all_threads):
    numba.set_num_threads(threads)
    idata = mixtures.sample(model, random_seed=1, warn=False)
    attrs = idata.posterior.attrs
    iterations = attrs["mixtures_tune"] + idata.posterior.sizes["draw"]
    seconds = attrs["mixtures_sampling_seconds"]
    per = seconds * threads / (128 * iterations) * 1e6
    print(f"{threads} thread(s): sampling {seconds:.3f} s, {iterations} iterations, "
          f"{per:.2f} us of thread time per replica and iteration")
numba.set_num_threads(all_threads)
