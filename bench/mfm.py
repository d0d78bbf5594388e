"""One MFM run against choose_k on the galaxies (issue 24): wall time, side by side.

``mfm_mixture(galaxies / 1000)`` (default prior on K: BNB(1, 4, 3), k_max 30) sampled by the
telescoping sampler, 4 chains x (2000 + 2000), against ``choose_k(y, range(1, 7))`` at its
defaults (4 chains x (1000 + 1000) per k, tempering "auto", the sparse fit). Both in this one
process, one after the other (the machine is shared: compare the ratio). The MFM run is
repeated after a first warm-up call (imports and the Gibbs engine's Numba cache are paid by
the warm-up ``choose_k`` call's first fit as well).

Run: ``python bench/mfm.py [--repeats 1]``; figures to stdout and ``bench/mfm.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("MIXTURES_PROGRESSBAR", "0")
    import numpy as np

    import mixtures

    y = mixtures.load_dataset("galaxies")["velocity"].to_numpy() / 1000
    # warm-up: imports, Numba cache, one small fit of each
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixtures.sample(mixtures.full_mixture(y, 2), draws=50, tune=50, random_seed=0)
        mixtures.sample(mixtures.mfm_mixture(y), draws=50, tune=50, random_seed=0)
    rows = []
    for rep in range(args.repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            idata = mixtures.sample(
                mixtures.mfm_mixture(y), draws=2000, tune=2000, chains=4, random_seed=rep
            )
            t_mfm = time.perf_counter() - t0
            t0 = time.perf_counter()
            choice = mixtures.choose_k(y, range(1, 7), random_seed=rep)
            t_ck = time.perf_counter() - t0
        table = mixtures.k_posterior(idata)
        diag = mixtures.mfm_diagnostics(idata, warn=False)
        row = {
            "repeat": rep,
            "mfm_seconds": round(t_mfm, 2),
            "choose_k_seconds": round(t_ck, 2),
            "ratio_choose_k_over_mfm": round(t_ck / t_mfm, 2),
            "choose_k_best": int(choice.best),
            "mfm_p_K_plus_mode": int(table["p_K_plus"].idxmax()),
            "mfm_p_K_plus": {int(k): round(float(v), 3) for k, v in table["p_K_plus"].items() if v},
            "mfm_ess_bulk_K": round(float(diag.loc["K", "ess_bulk"]), 1),
            "mfm_r_hat_K": round(float(diag.loc["K", "r_hat"]), 4),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        "numpy": np.__version__,
        "rows": rows,
    }
    (HERE / "mfm.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
