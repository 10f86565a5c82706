"""Devices: one XLA device per CPU core, and the one way a population is spread over the local
devices of a process.

XLA's CPU backend runs the SGD population's many small per-network matmuls on one core; exposing
one device per core and splitting the population across them uses all of them. On an accelerator
the default devices are the accelerators (several on a multi-GPU node).

Every population stage splits its population the same way (`over_population`): the first d
local devices, with the axis POPULATION, each computing one contiguous block of the population
(SGD runs, MCMC chains, exact NNGP chains, rejection batches, geometry points). Every element is
a pure function of its own index (a device is told its block's first index), so a stage's tables
do not depend on the device count (tests/test_devices.py runs the stages on 1, 2 and 4 CPU
devices).
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

POPULATION = "population"  # the pmap axis name a population is split along
SPLIT = PartitionSpec(POPULATION)  # an argument or result whose first axis is the population
SHARED = PartitionSpec()  # one copy on every device (keys, kernels, step indices, reductions)


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


def dividing_devices(*counts: int) -> int:
    """The most local devices (at most all of them) that divide every count evenly: how many
    share a population by default."""
    return max(d for d in range(1, jax.local_device_count() + 1) if all(c % d == 0 for c in counts))


def over_population(fn: Callable, n_devices: int, in_specs, out_specs, block: int | None = None) -> Callable:
    """fn run on the first n_devices local devices, each on its block of the population.

    Arguments and results with spec SPLIT are cut along their first axis into n_devices equal
    blocks, those with SHARED are the same on every device (a result SHARED must be made so by a
    collective over POPULATION, e.g. jax.lax.pmax). With `block` (the elements per device), fn
    is called as fn(first, *args), first the population index of the device's first element.

    Built on pmap with the axis POPULATION. shard_map over a Mesh was tried first and dropped: on
    XLA's CPU backend (jax 0.5.3) the SGD population's while loop hung on two CPU devices for
    most pool sizes, and jax.lax.axis_index inside a loop hung too."""
    if not 1 <= n_devices <= jax.local_device_count():
        raise ValueError(f"{n_devices} devices asked for; this process has {jax.local_device_count()}")
    in_specs = in_specs if isinstance(in_specs, tuple) else (in_specs,)
    if block is not None:
        in_specs = (SPLIT,) + in_specs
        run = lambda first_1, *args: fn(first_1[0], *args)
        firsts = np.arange(n_devices, dtype=np.int32) * block
    else:
        run, firsts = fn, None
    mapped = jax.pmap(run, POPULATION, in_axes=tuple(0 if s == SPLIT else None for s in in_specs),
                      devices=jax.local_devices()[:n_devices])

    def split(x, spec):
        return x.reshape((n_devices, x.shape[0] // n_devices) + x.shape[1:]) if spec == SPLIT else x

    def join(spec, tree):
        if spec == SPLIT:
            return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)
        return jax.tree.map(lambda x: x[0], tree)  # the same on every device

    def spread(*args):
        args = ((firsts,) if firsts is not None else ()) + args
        out = mapped(*(split(jnp.asarray(a), s) for a, s in zip(args, in_specs)))
        return jax.tree.map(join, out_specs, out, is_leaf=lambda x: isinstance(x, PartitionSpec))

    return spread


def batch_keys(key: jax.Array, first: int, n: int) -> jax.Array:
    """The keys fold_in(key, first), ..., fold_in(key, first + n - 1) of n batches, stacked (for per_key)."""
    return jnp.stack([jax.random.fold_in(key, first + i) for i in range(n)])


@functools.cache
def per_key(fn: Callable, n_devices: int, n_shared: int = 0) -> Callable:
    """fn(key, *shared) -> arrays, for n_devices keys at once, one per device: (keys of shape
    (n_devices,), *shared) -> the results stacked along a new first axis (cached per fn)."""
    def block(keys, *shared):
        return jax.tree.map(lambda x: x[None], fn(keys[0], *shared))
    return over_population(block, n_devices, (SPLIT,) + (SHARED,) * n_shared, SPLIT)
