"""Will a config's stages fit in this device's memory? A rough upper estimate per stage, checked
by the CLI before any work or file (study/cli.py). It decides no result, so it stays out of the
modules whose code is hashed into a stage's identity (study/store.py)."""
from __future__ import annotations

from study.config import ConfigError, ExperimentConfig


def param_count(n_in: int, widths, sigma_b: float) -> int:
    """D of a fully connected n_in-widths-1 network (biases only where sigma_b > 0, as study/network.py)."""
    sizes = [n_in, *widths, 1]
    return sum(a * b + (b if sigma_b > 0 else 0) for a, b in zip(sizes, sizes[1:]))


def memory_estimate(cfg: ExperimentConfig) -> dict[str, tuple[int, str]]:
    """Per stage section: a rough upper estimate, in bytes, of the largest float32 arrays its device
    work holds at once, and the config fields that set it. Not exact: it exists to refuse sizes that
    cannot fit (a width of 10^9, a pool of 10^12) before any work or any file, not to tune a run."""
    t, net = cfg.task, cfg.network
    D = param_count(t.n, net.widths, net.sigma_b)
    acts = sum(net.widths) or 1  # activations per input
    N = t.m + t.n_test
    out: dict[str, tuple[int, str]] = {}
    if cfg.rejection is not None:
        rj = cfg.rejection
        # batch / readouts hidden-layer draws with their activations; every pair's output layer and outputs
        last = net.widths[-1] if net.widths else t.n
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
        inputs = 2**t.n
        # Jacobians on every input and Krylov bases for a chunk of points; one dense D x D Hessian
        per_point = 4 * D * (2 * inputs + g.lanczos_matvecs + g.top_k + g.directions)
        out["geometry"] = (g.chunk_points * per_point + 3 * 4 * D * D, "geometry.chunk_points, network.widths")
    if cfg.sweep is not None:
        Dmax = max(param_count(t.n, v.widths, net.sigma_b) for v in cfg.sweep.variants)
        out["sweep"] = (4 * Dmax * (8 * cfg.sweep.runs + (cfg.geometry.chunk_points if cfg.geometry else 1) * 2 * 2**t.n),
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
