"""make bench, [stage scaling]: the throughput of every population stage as `python -m study <stage>`
runs it (start-up and compilation included), on one core, on all cores as one process, and as one
shard per core (`--shard i/n`, each process pinned to its core with `taskset`), with the speed-up
over one core. Each mode runs the stages in order into its own results directory, so every stage
reads what the earlier stages of the same mode wrote. The raw tables of the modes are compared with
one core's: splitting into shards must not change a byte; one process on several cores may change
the last digits of float32 measures whose large contractions XLA's CPU backend splits by thread
count (the geometry stage's), and the largest difference is printed."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from study.devices import host_cores

ROOT = Path(__file__).resolve().parents[1]

# A small E1-like experiment: the work of each stage a whole number of chunks, at least two per core.
CONFIG = """name = "bench_stages"
seed = 0

[task]
n = 7
target = "majority"
m = 10
n_test = 10

[network]
widths = [40, 40]
sigma_w = 1.0
sigma_b = 0.0

[rejection]
prng = "rbg"
draws = {rejection_draws}
chunk_draws = {rejection_chunk}
batch = 32_768
readouts = 128

[sgd]
runs = {sgd_runs}
chunk_runs = {sgd_chunk}
pool = 128
max_steps = 10_000
check_every = 4

[[sgd.settings]]
name = "sgd_b2_ce"
optimizer = "sgd"
lr = 0.1
batch_size = 2
loss = "ce"

[[sgd.settings]]
name = "adam_b2_ce"
optimizer = "adam"
lr = 0.001
batch_size = 2
loss = "ce"

[mcmc]
chains = 128
burn_in = 100
thin = 10
samples = {mcmc_samples}
chunk_samples = 50
init = "rejection"
also_init = "sgd"
init_setting = "sgd_b2_ce"

[nngp]
ep_enumerate_max = 10
exact = "rejection"
draws = {nngp_draws}
chunk_draws = {nngp_chunk}
batch = 262_144

[geometry]
points = {geometry_points}
chunk_points = 32
populations = ["bayes_rejection", "sgd_b2_ce"]
top_k = 5
lanczos_matvecs = 20
hutchinson_samples = 16
directions = 16
identity_points = 1
"""

# What each stage produces, per unit of the config (the rate printed is units per second).
UNITS = {"rejection": ("pairs", "rejection_draws"), "sgd": ("runs", "sgd_runs_total"),
         "mcmc": ("samples", "mcmc_states"), "nngp": ("draws", "nngp_draws"),
         "geometry": ("points", "geometry_points_total")}


def sizes(scale: int) -> dict:
    s = {"rejection_draws": 2**24 // scale, "rejection_chunk": 2**21 // scale, "sgd_runs": 8192 // scale,
         "sgd_chunk": 1024 // scale, "mcmc_samples": 200 // scale, "nngp_draws": 2**24 // scale,
         "nngp_chunk": 2**21 // scale, "geometry_points": 128 // scale}
    s["sgd_runs_total"] = 2 * s["sgd_runs"]  # two settings
    s["mcmc_states"] = 2 * 128 * s["mcmc_samples"]  # two chain populations of 128 chains
    s["geometry_points_total"] = 2 * s["geometry_points"]  # two populations
    return s


def run_mode(config: Path, results: Path, cores: list[int], shards: int) -> dict[str, float]:
    """Wall seconds of each stage: `shards` processes (one when 1), each pinned to its share of `cores`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    seconds = {}
    for stage in UNITS:
        t0 = time.perf_counter()
        procs = []
        for i in range(shards):
            mine = cores[i::shards]
            cmd = ["taskset", "-c", ",".join(map(str, mine)), sys.executable, "-m", "study", stage, "--config",
                   str(config), "--results", str(results), "--no-progress"]
            if shards > 1:
                cmd += ["--shard", f"{i}/{shards}"]
            procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
        logs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"stage {stage} failed:\n" + "\n".join(logs))
        seconds[stage] = time.perf_counter() - t0
    return seconds


def raw_tables(results: Path) -> dict[str, bytes]:
    raw = results / "bench_stages" / "raw"
    return {p.name: p.read_bytes() for p in sorted(raw.glob("*.csv")) if not p.name.endswith("_timings.csv")}


def bench_stage_scaling(scale: int = 1) -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(host_cores()))
    n = len(cores)
    if shutil.which("taskset") is None or n < 2:
        print("\n[stage scaling] skipped: needs taskset and at least two cores")
        return
    s = sizes(scale)
    modes = [("one core", cores[:1], 1), (f"{n} cores, one process", cores, 1), (f"{n} shards, one core each", cores, n)]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench_stages.toml"
        config.write_text(CONFIG.format(**s))
        seconds, tables = {}, {}
        for name, use, shards in modes:
            results = Path(tmp) / f"results_{len(seconds)}"
            seconds[name] = run_mode(config, results, use, shards)
            tables[name] = raw_tables(results)
    print(f"\n[stage scaling] python -m study <stage> on a small E1 (7-40-40-1, m=10, |E|=10): units per second, "
          f"start-up and compilation included; x = speed-up over one core")
    print(f"  {'stage':<10} {'units':<8} " + " ".join(f"{name:>26}" for name, _, _ in modes))
    for stage, (unit, key) in UNITS.items():
        base = seconds[modes[0][0]][stage]
        cells = [f"{s[key] / seconds[name][stage]:>14,.0f}/s" + (f" (x{base / seconds[name][stage]:.2f})" if i else " " * 8)
                 for i, (name, _, _) in enumerate(modes)]
        print(f"  {stage:<10} {unit:<8} " + " ".join(f"{c:>26}" for c in cells))
    total = {name: sum(seconds[name].values()) for name, _, _ in modes}
    print(f"  {'all five':<10} {'seconds':<8} " + " ".join(f"{total[name]:>17.1f} s (x{total[modes[0][0]] / total[name]:.2f})"
                                                         for name, _, _ in modes))
    first = tables[modes[0][0]]
    for name, _, _ in modes[1:]:
        differ = {k: max_relative_difference(first[k], tables[name].get(k)) for k in first if tables[name].get(k) != first[k]}
        print(f"  {name}: {len(first) - len(differ)} of {len(first)} raw tables byte-identical to one core's"
              + "".join(f"; {k} differs by at most {d:.1e} of its column's scale" for k, d in differ.items()))


def max_relative_difference(a: bytes, b: bytes | None) -> float:
    """Largest |x - y| over the numeric cells of two tables of the same shape and columns whose other
    cells agree, relative to the largest |x| of its column (an eigenvalue at 1e-6 of a spectrum
    reaching 10 is noise at that scale, not a result); inf when the tables do not match so."""
    if b is None:
        return float("inf")
    x, y = (pd.read_csv(io.BytesIO(t), dtype={"function": str}) for t in (a, b))
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return float("inf")
    numeric = x.select_dtypes("number").columns
    rest = [c for c in x.columns if c not in numeric]
    if not x[rest].equals(y[rest]):
        return float("inf")
    u, v = x[numeric].to_numpy(float), y[numeric].to_numpy(float)
    same = (u == v) | (np.isnan(u) & np.isnan(v))
    scale = np.nanmax(np.abs(np.concatenate([u, v])), axis=0, initial=0.0)
    return float(np.max(np.where(same, 0.0, np.abs(u - v) / np.where(scale > 0, scale, 1.0)), initial=0.0))
