"""Where the univariate sweep's time goes (issue 21): each stage alone, over the sweep's blocks.

At N = 1e6, K = 3, one chain on one thread, the stages of ``mixtures._kernels._sweep_range``
are timed alone over the same block layout (``_BLOCK`` points, struct-of-arrays scratch):

- ``uniforms``: the counter-based uniform of every point (SplitMix64 of key and index);
- ``logits``: the K log-weights and their maximum (``_block_logits``);
- ``exp_full`` / ``exp_rough``: the K exponentials and their cumulative sums, with the
  full-precision :func:`~mixtures._kernels.exp` (the previous sweep) and with
  :func:`~mixtures._kernels.exp_rough` (the first pass of the current one);
- ``pick``: the uniform times the total, the count of comparisons, the check of the exact
  fallback's band, and the known labels;
- ``sums``: the masked per-lane counts and sums (``_block_sums``);
- ``sweep``: the whole sweep (``_kernels.sweep``), and beside it NumPy's ``np.exp(x, out=buf)``
  and our ``exp_array`` per value.

Rounds are interleaved and the best of each is kept; thread CPU time (``time.thread_time``) is
reported beside wall time, since the machine is shared. Then the generated assembly of each
stage kernel and of ``_sweep_part`` is searched for 256-bit registers (``ymm``), packed FMAs,
``vpmuludq`` (AVX2's 32 x 32 -> 64-bit multiply, from which LLVM builds the 64-bit multiplies of
the hash in vector lanes) and scalar ``imul``.

Run: ``python bench/sweep_stages.py``; prints a table and ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import re
import time

import numpy as np
from numba import njit

from mixtures import _kernels as K

B = K._BLOCK
N_OBS, KC = 1_000_000, 3


@njit(nogil=True, fastmath={"contract"})
def stage_uniforms(n, key, u):
    for i0 in range(0, n, B):
        for b in range(min(B, n - i0)):
            u[b] = K._counter_uniform(key, i0 + b)


@njit(nogil=True, fastmath={"contract"})
def stage_logits(y, a, c, mu, lp, top):
    n = y.shape[0]
    for i0 in range(0, n, B):
        K._block_logits(y[i0 : min(i0 + B, n)], 0, a, c, mu, lp, top)


@njit(nogil=True, fastmath={"contract"})
def stage_exp_full(n, lp, top, tot):
    k = lp.shape[0] // 2
    for i0 in range(0, n, B):
        m = min(B, n - i0)
        for b in range(m):
            tot[b] = 0.0
        for j in range(k):
            row, cum = lp[j], lp[k + j]
            for b in range(m):
                tot[b] += K.exp(row[b] - top[b])
                cum[b] = tot[b]


@njit(nogil=True, fastmath={"contract"})
def stage_exp_rough(n, lp, top, tot):
    k = lp.shape[0] // 2
    for i0 in range(0, n, B):
        m = min(B, n - i0)
        for b in range(m):
            tot[b] = 0.0
        for j in range(k):
            row, cum = lp[j], lp[k + j]
            for b in range(m):
                tot[b] += K.exp_rough(row[b] - top[b])
                cum[b] = tot[b]


@njit(nogil=True, fastmath={"contract"})
def stage_pick(fixed, z, lp, tot, u, pick):
    n, k = z.shape[0], lp.shape[0] // 2
    changed = near = 0
    for i0 in range(0, n, B):
        m = min(B, n - i0)
        zb, fb = z[i0 : i0 + m], fixed[i0 : i0 + m]
        for b in range(m):
            u[b] = u[b] * tot[b]
            pick[b] = 0
        for j in range(k - 1):
            cum = lp[k + j]
            for b in range(m):
                ub, cb, tb = u[b], cum[b], tot[b]
                pick[b] += 1 if ub >= cb else 0
                near += 0 if abs(ub - cb) > K._ROUGH_TOL * tb else 1
        for b in range(m):
            known = fb[b]
            p = known if known >= 0 else pick[b]
            changed += 1 if zb[b] != p else 0
            zb[b] = p
            pick[b] = p
    return changed + near


@njit(nogil=True, fastmath={"contract"})
def stage_sums(y, mu, z, pick, acc_n, acc_1, acc_2):
    n = y.shape[0]
    for i0 in range(0, n, B):
        i1 = min(i0 + B, n)
        zb = z[i0:i1]
        for b in range(i1 - i0):
            pick[b] = zb[b]
        K._block_sums(y[i0:i1], 0, mu, pick, acc_n, acc_1, acc_2)


def inputs():
    """The sweep's data and parameters (three_gaussians' proportions, N = 1e6) and scratch."""
    rng = np.random.default_rng(0)
    comp = rng.choice(KC, size=N_OBS, p=np.array([90, 50, 75]) / 215)
    means = np.array([9.0, 21.0, 35.0])
    y = rng.normal(means[comp], 2.0)
    logw, sd = np.log(np.array([90, 50, 75]) / 215), 2.0
    d = {
        "y": y,
        "a": (logw - np.log(sd))[None, :].copy(),
        "c": np.full((1, KC), -0.5 / sd**2),
        "mu": means[None, :].copy(),
        "fixed": np.full(N_OBS, -1, dtype=np.int32),
        "z": np.zeros((1, N_OBS), dtype=np.int8),
        "lp": np.empty((2 * KC, B)),
        "top": np.empty(B),
        "tot": np.empty(B),
        "u": rng.random(B),
        "pick": np.zeros(B, dtype=np.int64),
        "acc": [np.zeros((KC, K.LANES)) for _ in range(3)],
        "x": rng.uniform(-40.0, 0.0, N_OBS),
        "buf": np.empty(N_OBS),
    }
    K._block_logits(y[:B], 0, d["a"], d["c"], d["mu"], d["lp"], d["top"])
    return d


def jobs(d):
    """Name -> a call of one stage over N = 1e6 points."""
    sums = np.zeros((3, 1, KC))
    keys = np.array([12345], dtype=np.uint64)
    return {
        "sweep": lambda: K._sweep_part(
            *(d["y"], d["fixed"], 0, N_OBS, d["a"], d["c"], d["mu"], keys, d["z"]),
            *(*sums, np.zeros(1, dtype=np.int64)),
        ),
        "uniforms": lambda: stage_uniforms(N_OBS, np.uint64(12345), d["u"]),
        "logits": lambda: stage_logits(d["y"], d["a"], d["c"], d["mu"], d["lp"], d["top"]),
        "exp_full": lambda: stage_exp_full(N_OBS, d["lp"], d["top"], d["tot"]),
        "exp_rough": lambda: stage_exp_rough(N_OBS, d["lp"], d["top"], d["tot"]),
        "pick": lambda: stage_pick(d["fixed"], d["z"][0], d["lp"], d["tot"], d["u"], d["pick"]),
        "sums": lambda: stage_sums(d["y"], d["mu"], d["z"][0], d["pick"], *d["acc"]),
        "numpy_exp_out": lambda: np.exp(d["x"], out=d["buf"]),
        "our_exp_array": lambda: K.exp_array(d["x"], d["buf"]),
    }


def census(fn) -> dict:
    """Count vector registers and multiply instructions in a compiled kernel's assembly."""
    asm = fn.inspect_asm(fn.signatures[0])
    pats = {
        "ymm": r"%ymm",
        "packed_fma_ymm": r"vfmadd\w*pd\s+%ymm",
        "scalar_fma": r"vfmadd\w*sd",
        "vpmuludq": r"vpmuludq",
        "scalar_imul": r"\bimul",
        "cvtsi2sd": r"cvtsi2sd",
    }
    return {name: len(re.findall(p, asm)) for name, p in pats.items()}


def main(rounds: int = 11) -> dict:
    d = inputs()
    calls = jobs(d)
    for call in calls.values():
        call()  # compile / warm
    wall = {name: np.inf for name in calls}
    cpu = dict(wall)
    for _ in range(rounds):
        for name, call in calls.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            call()
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.thread_time() - c0)
    res = {
        "ns_wall": {n: 1e9 * t / N_OBS for n, t in wall.items()},
        "ns_cpu": {n: 1e9 * t / N_OBS for n, t in cpu.items()},
        "load_average": os.getloadavg()[0],
    }
    # the cached kernel cannot be inspected: the same function compiled again, uncached
    part = njit(nogil=True, fastmath={"contract"})(K._sweep_part.py_func)
    sums = np.zeros((3, 1, KC))
    keys = np.array([12345], dtype=np.uint64)
    part(
        d["y"],
        d["fixed"],
        0,
        1000,
        d["a"],
        d["c"],
        d["mu"],
        keys,
        d["z"],
        *sums,
        np.zeros(1, dtype=np.int64),
    )
    kernels = {
        "sweep (_sweep_part)": part,
        "uniforms": stage_uniforms,
        "logits": stage_logits,
        "exp_full": stage_exp_full,
        "exp_rough": stage_exp_rough,
        "pick": stage_pick,
        "sums": stage_sums,
    }
    res["asm"] = {name: census(fn) for name, fn in kernels.items()}
    parts = ("uniforms", "logits", "exp_rough", "pick", "sums")
    res["sum_of_stages_cpu"] = sum(res["ns_cpu"][p] for p in parts)
    return res


if __name__ == "__main__":
    r = main()
    print(f"{'stage':16s} {'ns wall':>8s} {'ns CPU':>8s}   per point and chain (N = 1e6, K = 3)")
    for name in r["ns_cpu"]:
        print(f"{name:16s} {r['ns_wall'][name]:8.2f} {r['ns_cpu'][name]:8.2f}")
    print(
        f"sum of the current stages (uniforms, logits, exp_rough, pick, sums): "
        f"{r['sum_of_stages_cpu']:.2f} ns CPU; load average {r['load_average']:.1f}"
    )
    for name, c in r["asm"].items():
        print(f"asm {name}: {c}")
    print("RESULT " + json.dumps(r))
