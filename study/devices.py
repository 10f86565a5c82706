"""One XLA device per CPU core.

XLA's CPU backend runs the SGD population's many small per-network matmuls on one core; exposing
one device per core and splitting the population across them (study/sgd.py) uses all of them.
Work that is not split (sampler batches, chains, kernels) still runs on the first device, with
XLA's own threading, as before. On an accelerator the default devices are the accelerators and
this changes nothing.
"""
from __future__ import annotations

import os

import jax


def host_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_every_core(count: int | None = None) -> None:
    """Expose `count` CPU devices (default: one per core). Must run before JAX starts its
    backends; afterwards it is too late and the devices stay as they are."""
    try:
        jax.config.update("jax_num_cpu_devices", count or host_cores())
    except RuntimeError:  # backends already initialised
        pass


def device_memory_bytes() -> int:
    """Memory of this process's first device: an accelerator's own, as XLA reports it, else the
    host's RAM (the CPU backend's arrays live there). Local: under jax.distributed, jax.devices()
    lists every process's devices, and another host's cannot be asked."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
