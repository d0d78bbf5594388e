"""Issue 18: the command line's whole run against ``mixtures.sample`` alone, at large N.

Writes a two-component CSV of N rows, then, each in a fresh process and side by side:

1. ``mixtures.sample`` alone on ``full_mixture(y, 2)`` (the time of that call, and the peak
   resident memory of the process);
2. ``python -m mixtures fit big.csv --column x --k 2`` (wall time of the whole process, peak
   resident memory), which also draws the posterior predictive, plots, and writes NetCDF.

Target: the command line at most 1.5x the sample call, and under 2 GB.

Usage: ``python bench/ppc_scale.py [N] [draws]`` (default N = 1e6, the default 1000 draws).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE_ONLY = """
import sys, time
import numpy as np, pandas as pd
import mixtures
y = pd.read_csv(sys.argv[1])["x"].to_numpy()
model = mixtures.full_mixture(y, 2)
t0 = time.perf_counter()
mixtures.sample(model, draws=int(sys.argv[2]), random_seed=1, progressbar=False)
print("SAMPLE_SECONDS", time.perf_counter() - t0)
"""


def _run(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of `cmd` under /usr/bin/time -v."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise RuntimeError(proc.stderr[-2000:])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
    return wall, rss_kb / 1024, proc.stdout


def main(n: int = 1_000_000, draws: int = 1000) -> dict:
    """Run both and return the figures."""
    env = {**os.environ, "MIXTURES_PROGRESSBAR": "0"}
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        z = rng.random(n) < 0.4
        x = np.where(z, rng.normal(-1.0, 1.0, n), rng.normal(3.0, 1.5, n))
        csv = Path(tmp) / "big.csv"
        np.savetxt(csv, x, header="x", comments="", fmt="%.6f")
        s_wall, s_rss, out = _run([sys.executable, "-c", SAMPLE_ONLY, str(csv), str(draws)])
        sample_s = float(re.search(r"SAMPLE_SECONDS ([\d.]+)", out)[1])
        cli = [sys.executable, "-m", "mixtures", "fit", str(csv), "--column", "x", "--k", "2",
               "--seed", "1", "--draws", str(draws), "--quiet", "--out", str(Path(tmp) / "out")]  # fmt: skip
        c_wall, c_rss, _ = _run(cli)
        nc_mb = (Path(tmp) / "out" / "posterior.nc").stat().st_size / 2**20
    result = {
        "n": n,
        "draws": draws,
        "sample_call_s": round(sample_s, 2),
        "sample_process_wall_s": round(s_wall, 2),
        "sample_process_peak_rss_mb": round(s_rss),
        "cli_wall_s": round(c_wall, 2),
        "cli_peak_rss_mb": round(c_rss),
        "cli_over_sample_call": round(c_wall / sample_s, 2),
        "cli_over_sample_process": round(c_wall / s_wall, 2),
        "posterior_nc_mb": round(nc_mb, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*(int(float(a)) for a in sys.argv[1:3]))
