"""Will a config's stages fit in this device's memory? A rough upper estimate per stage, checked
by the CLI before any work or file (study/cli.py). It decides no result, so it stays out of the
modules whose code is hashed into a stage's identity (study/store.py)."""
from __future__ import annotations

import dataclasses
import math

from study.config import ConfigError, ExperimentConfig, NetworkConfig, TaskConfig
from study.images import IMAGE_SHAPES


def input_shape(t: TaskConfig) -> tuple[int, ...]:
    """One input's shape: n bits, or an image's (rows, cols, channels)."""
    return (t.n,) if t.kind == "boolean" else IMAGE_SHAPES[t.kind]


def n_inputs(t: TaskConfig) -> int:
    """Inputs the task holds: all 2^n of a Boolean task, the images of S and E."""
    return 2**t.n if t.kind == "boolean" else t.m + t.n_test


def param_count(shape: int | tuple[int, ...], net: NetworkConfig) -> int:
    """D of the network of `net` on inputs of `shape` (biases only where sigma_b > 0), as
    study/network.py builds it: SAME convolutions keep the image's size, then Dense layers."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    bias = 1 if net.sigma_b > 0 else 0
    channels = [shape[-1], *net.conv_channels] if len(shape) > 1 else [shape[-1]]
    k2 = net.conv_kernel**2
    conv = sum(k2 * a * b + bias * b for a, b in zip(channels, channels[1:]))
    sizes = [math.prod(shape[:-1]) * channels[-1] if len(shape) > 1 else shape[0], *net.widths, 1]
    return conv + sum(a * b + bias * b for a, b in zip(sizes, sizes[1:]))


def memory_estimate(cfg: ExperimentConfig) -> dict[str, tuple[int, str]]:
    """Per stage section: a rough upper estimate, in bytes, of the largest float32 arrays its device
    work holds at once, and the config fields that set it. Not exact: it exists to refuse sizes that
    cannot fit (a width of 10^9, a pool of 10^12) before any work or any file, not to tune a run."""
    t, net = cfg.task, cfg.network
    shape = input_shape(t)
    D = param_count(shape, net)
    pixels = math.prod(shape[:-1]) if len(shape) > 1 else 1
    acts = (sum(net.widths) + pixels * sum(net.conv_channels)) or 1  # activations per input
    N = t.m + t.n_test
    out: dict[str, tuple[int, str]] = {}
    if cfg.rejection is not None:
        rj = cfg.rejection
        # batch / readouts hidden-layer draws with their activations; every pair's output layer and outputs
        last = net.widths[-1] if net.widths else (pixels * net.conv_channels[-1] if net.conv_channels else math.prod(shape))
        hidden = rj.batch // max(1, rj.readouts)
        out["rejection"] = (4 * (hidden * (D + acts * N) + (rj.batch * (last + 1 + N) if rj.readouts > 1 else 0)),
                            "rejection.batch, rejection.readouts, network.widths")
    sg = cfg.sgd
    # the chunk's initial parameters (and kept parameters), and per slot parameters, optimiser state, gradients
    out["sgd"] = (4 * D * (2 * sg.chunk_runs + 6 * min(sg.pool, sg.chunk_runs)), "sgd.chunk_runs, sgd.pool, network.widths")
    if cfg.mcmc is not None:
        out["mcmc"] = (4 * D * 6 * cfg.mcmc.chains + 4 * D * 2 * cfg.mcmc.chains, "mcmc.chains, network.widths")
    if cfg.nngp is not None:
        ng = cfg.nngp
        width = ng.batch if ng.exact == "rejection" else ng.chains
        out["nngp"] = (4 * 2 * width * N + 8 * N * N * 4, "nngp.batch / nngp.chains")
    if cfg.geometry is not None:
        g = cfg.geometry
        inputs = n_inputs(t)
        # Jacobians on every input and Krylov bases for a chunk of points; one dense D x D Hessian
        # where the identity check runs (identity_points > 0)
        per_point = 4 * D * (2 * inputs + g.lanczos_matvecs + g.top_k + g.directions)
        dense = 3 * 4 * D * D if g.identity_points else 0
        out["geometry"] = (g.chunk_points * per_point + dense, "geometry.chunk_points, network.widths"
                           + (", geometry.identity_points" if g.identity_points else ""))
    if cfg.sweep is not None:
        Dmax = max(param_count(shape, dataclasses.replace(net, widths=v.widths)) for v in cfg.sweep.variants)
        out["sweep"] = (4 * Dmax * (8 * cfg.sweep.runs + (cfg.geometry.chunk_points if cfg.geometry else 1) * 2 * n_inputs(t)),
                        "sweep.runs, sweep.variants[].widths")
    return out


def check_memory(cfg: ExperimentConfig, available_bytes: int, sections=None) -> None:
    """ConfigError naming the section and its fields if a stage's memory_estimate exceeds what the
    device has (available_bytes)."""
    for section, (need, fields) in memory_estimate(cfg).items():
        if sections is not None and section not in sections:
            continue
        if need > available_bytes:
            raise ConfigError(f"{section}: needs about {need / 2**30:.3g} GiB of memory at once, more than the "
                              f"{available_bytes / 2**30:.3g} GiB this device has; lower {fields}")
