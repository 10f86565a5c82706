"""study/devices.py: CPU devices per core, and the memory the memory check plans with.
(sgd.dividing_devices, which splits work over these devices, is tested with the SGD code.)"""
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from study import devices

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
