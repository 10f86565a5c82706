"""study/devices.py: CPU devices per core, the memory the memory check plans with, and the one
way a population is split over devices (every stage, on 1, 2 and 4 CPU devices)."""
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from study import devices
from test_pipeline import write_config  # tests/ is on sys.path (pytest's rootdir-relative imports)

ROOT = Path(__file__).resolve().parents[1]


def test_host_cores_is_the_affinity_mask_else_the_cpu_count(monkeypatch):
    assert devices.host_cores() == len(os.sched_getaffinity(0)) >= 1
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS
    assert devices.host_cores() == os.cpu_count()


@pytest.mark.parametrize("count, expected", [(3, 3), (None, "cores")])
def test_use_every_core_before_jax_starts_sets_the_cpu_device_count(count, expected):
    code = ("from study.devices import host_cores, use_every_core\n"
            f"use_every_core({count})\n"
            "import jax\n"
            "print(jax.device_count(), host_cores())")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    n, cores = map(int, out.stdout.split())
    assert n == (cores if expected == "cores" else expected)


def test_use_every_core_after_jax_started_changes_nothing():
    # conftest.py exposed max(2, cores) CPU devices before any JAX work
    before = jax.devices("cpu")
    assert len(before) == max(2, devices.host_cores())
    devices.use_every_core(1)  # too late: no error, no change
    assert jax.devices("cpu") == before


def test_device_memory_is_the_host_ram_on_cpu_and_the_accelerator_limit_elsewhere(monkeypatch):
    if jax.devices()[0].platform == "cpu":
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        assert devices.device_memory_bytes() == pytest.approx(kib * 1024, rel=1e-3)

    class Accelerator:
        platform = "gpu"

        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # this process's own device (under jax.distributed, jax.devices() lists other hosts' too)
    monkeypatch.setattr(devices.jax, "devices", lambda: [Accelerator({"bytes_limit": 1})])
    monkeypatch.setattr(devices.jax, "local_devices", lambda: [Accelerator({"bytes_limit": 141 * 2**30})])
    assert devices.device_memory_bytes() == 141 * 2**30
    monkeypatch.setattr(devices.jax, "local_devices", lambda: [Accelerator(None)])  # a backend without stats
    assert devices.device_memory_bytes() == host


# e1_smoke, smaller: every population is a multiple of 4 (chains per group, points per block of 8)
DEVICE_COUNT_SECTIONS = dict(
    rejection={"draws": 65_536, "chunk_draws": 32_768, "batch": 4096},
    sgd={"runs": 64, "chunk_runs": 64, "pool": 32},
    mcmc={"chains": 16, "burn_in": 4, "thin": 2, "samples": 8, "chunk_samples": 8},
    nngp={"ep_enumerate_max": 4, "exact": "ess", "draws": 64, "chunk_draws": 32, "chains": 8, "thin": 2, "burn_in": 4},
    geometry={"points": 8, "chunk_points": 8, "top_k": 3, "lanczos_matvecs": 10, "hutchinson_samples": 4,
              "directions": 4, "radius_grid": 12},
    sweep=None)  # its SGD runs and points are measured by the code above


def test_every_stage_writes_the_same_tables_on_1_2_and_4_devices(tmp_path):
    """Every population stage splits its population over the process's devices (SGD runs, MCMC
    chains, rejection batches, exact NNGP chains, geometry points); the raw tables and kept
    parameters and states must be byte-identical whatever the device count, the per-chunk tables too
    (their proposal and step counts; wall times are in the *_timings.csv files left out). Each run is its own
    process, since the CPU device count is fixed when JAX starts. (The exact NNGP sampler's
    rejection batches, the other exact = "rejection", are checked in process below.)"""
    config = write_config(tmp_path / "dev.toml", **DEVICE_COUNT_SECTIONS)
    runs = {}
    for n in (1, 2, 4):
        code = (f"from study.devices import use_every_core\nuse_every_core({n})\n"
                "import jax\nfrom study import cli\n"
                f"assert jax.local_device_count() == {n}\n"
                f"raise SystemExit(cli.main(['run', '--config', {str(config)!r}, '--results', {str(tmp_path / str(n))!r}, "
                "'--no-progress']))")
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[n] = tmp_path / str(n) / "e1_smoke" / "raw"
    files = sorted(p.relative_to(runs[1]) for p in runs[1].rglob("*")
                   if p.is_file() and (p.suffix == ".npz" or (p.suffix == ".csv" and not p.name.endswith("_timings.csv"))))
    names = {p.name for p in files}
    assert {"rejection_counts.csv", "sgd_runs.csv", "sgd_params.npz", "mcmc_counts.csv", "mcmc_states.npz",
            "nngp_exact_counts.csv", "geometry.csv", "rejection_chunks.csv", "mcmc_chunks.csv", "sgd_chunks.csv"} <= names
    for n in (2, 4):
        for relative in files:
            one, other = runs[1] / relative, runs[n] / relative
            if relative.suffix == ".csv":
                assert other.read_bytes() == one.read_bytes(), f"{relative} differs between 1 and {n} devices"
                continue
            with np.load(one) as a, np.load(other) as b:  # a zip's entries carry their write times
                assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), \
                    f"{relative} differs between 1 and {n} devices"


def test_exact_nngp_rejection_batches_count_the_same_on_one_device_as_on_two(monkeypatch):
    from study import truncated
    assert jax.local_device_count() >= 2, "tests/conftest.py asks for two CPU devices"
    rng = np.random.default_rng(0)
    A = rng.normal(size=(8, 8))
    K = A @ A.T + 8 * np.eye(8)
    y_S = np.array([True, False, True, False, True])
    two = truncated.rejection_function_counts(jax.random.key(2), K, y_S, 8 * 1024, batch=1024)
    monkeypatch.setattr(truncated, "dividing_devices", lambda *counts: 1)
    one = truncated.rejection_function_counts(jax.random.key(2), K, y_S, 8 * 1024, batch=1024)
    assert one["accepted"] == two["accepted"] > 0 and one["counts"] == two["counts"]
