"""The command line at scale: ``mixtures fit`` against ``mixtures.sample`` alone (issue 18).

Target: at N = 1e6 the command line's whole run (read the CSV, build, fit, summary, figures,
files) costs at most 1.5x ``mixtures.sample`` alone with the same draws, and under 2 GB.

Both run in fresh subprocesses (wall and CPU time: on a shared machine compare CPU) (same warm caches: a small fit warms the Numba cache first);
peak resident memory is each child's ``ru_maxrss``. The data: two Gaussians (means 0 and 5,
sd 1, weights 0.4 / 0.6), seeded, written as a one-column CSV.

Run: ``python bench/cli_scale.py [--n 1000000] [--draws 500 --tune 500 --chains 2]``;
figures to stdout and ``bench/cli_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ENV = {**os.environ, "MIXTURES_PROGRESSBAR": "0"}

SAMPLE_ONLY = """
import sys, time
import numpy as np, pandas as pd
import mixtures
t0 = time.perf_counter()
y = pd.read_csv(sys.argv[1])["x"].to_numpy()
model = mixtures.full_mixture(y, 2)
t1 = time.perf_counter()
idata = mixtures.sample(model, draws=int(sys.argv[2]), tune=int(sys.argv[3]),
                        chains=int(sys.argv[4]), random_seed=1, progressbar=False, warn=False)
t2 = time.perf_counter()
print(f"read+build {t1 - t0:.2f} s, sample {t2 - t1:.2f} s", file=sys.stderr)
"""


MEASURE = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(proc.stderr)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(proc.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
"""


def child(cmd: list[str]) -> dict:
    """Run `cmd` under a fresh parent; return wall time, exit code, peak RSS (MB), stderr tail."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True,
                          env=ENV)  # fmt: skip
    wall = time.perf_counter() - t0
    rc, peak_kb, cpu = proc.stdout.split()
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(float(cpu), 2),
        "rc": int(rc),
        "peak_rss_mb": round(int(peak_kb) / 1024, 1),
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n0 = int(0.4 * args.n)
    y = np.concatenate([rng.normal(0, 1, n0), rng.normal(5, 1, args.n - n0)])
    rng.shuffle(y)
    work = Path(tempfile.mkdtemp(prefix="cli_scale-"))
    csv = work / "big.csv"
    np.savetxt(csv, y, fmt="%.6f", header="x", comments="")
    draws = [str(args.draws), str(args.tune), str(args.chains)]
    # warm the Numba cache and imports once (not timed)
    subprocess.run([sys.executable, "-c", SAMPLE_ONLY, str(csv), "10", "10", "1"], env=ENV,
                   capture_output=True)  # fmt: skip
    alone = child([sys.executable, "-c", SAMPLE_ONLY, str(csv), *draws])
    cli = child([sys.executable, "-m", "mixtures", "fit", str(csv), "--column", "x", "--k", "2",
                 "--out", str(work / "out"), "--draws", draws[0], "--tune", draws[1],
                 "--chains", draws[2], "--seed", "1", "--quiet"])  # fmt: skip
    result = {
        "n": args.n,
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "sample_alone": alone,
        "cli": cli,
        "ratio_wall": round(cli["wall_s"] / alone["wall_s"], 2),
        "ratio_cpu": round(cli["cpu_s"] / alone["cpu_s"], 2),
        "load_average": os.getloadavg(),
        "outputs_mb": {p.name: round(p.stat().st_size / 2**20, 2) for p in (work / "out").iterdir()}
        if (work / "out").is_dir()
        else None,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    print(json.dumps(result, indent=2))
    (HERE / "cli_scale.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
