"""Command line: python -m study <stage> --config configs/<file>.toml"""
from __future__ import annotations

import argparse
import errno
import shutil
import sys
from pathlib import Path

from study.config import ConfigError, load
from study.memory import check_memory
from study.store import CorruptChunkError, NonFiniteError, StageBusyError, StaleResultsError

# stage -> ("module:function", config section that enables it, raw subdirectory), in run order
STAGES = {"sample": ("study.stages:run_rejection", "rejection", "rejection"),
          "train": ("study.stages:run_sgd", "sgd", "sgd"),
          "mcmc": ("study.stages:run_mcmc", "mcmc", "mcmc"),
          "nngp": ("study.stages:run_nngp", "nngp", "nngp"),
          "geometry": ("study.geometry_stage:run_geometry", "geometry", "geometry"),
          "sweep": ("study.sweep:run_sweep", "sweep", "sweep")}


OS_FAULTS = {errno.EROFS: "the file system is read-only", errno.ENOSPC: "no space left on the device",
             errno.EDQUOT: "the disk quota is exceeded", errno.EACCES: "permission denied"}


def fault_message(err: BaseException) -> str | None:
    """One line for a fault of the machine rather than of the study (a full or read-only disk, no
    memory, an interrupt), saying what to do; None for anything else (a bug: keep the traceback)."""
    resume = "finished chunks are kept, so rerunning the same command resumes"
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted; {resume}"
    if isinstance(err, OSError) and err.errno is not None:
        what = OS_FAULTS.get(err.errno, err.strerror or str(err))
        where = f" {err.filename}" if err.filename else ""
        return f"file system error at{where}: {what}; free space or pick another --results directory; {resume}"
    if isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err):
        return (f"out of memory ({type(err).__name__}); lower the config's batch, pool, chunk or chains sizes; {resume}")
    return None


def load_or_report(path: str):
    """The validated config at `path`, or None after printing why it cannot be used."""
    try:
        return load(path)
    except ConfigError as err:
        print(f"error: bad config {path}: {err}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__)
    parser.add_argument("stage", choices=("check", *STAGES, "run"), help="check: validate the config; sample: "
                        "rejection sampler (P_B); train: SGD population (P_SGD); mcmc: elliptical slice sampling "
                        "(P_B); nngp: function-space P_B (EP and exact); geometry: NTK spectra, Hessian and basin size of "
                        "zero-error points; sweep: the same for network variants (weight decay, bottleneck); run: every stage the config has, in order")
    parser.add_argument("--config", required=True, help="experiment config (TOML), e.g. configs/e1_quick.toml")
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--fresh", action="store_true", help="delete this stage's earlier raw results first")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a fault (disk, memory)")
    args = parser.parse_args(argv)
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    import importlib

    from study import devices, stages  # heavy imports (jax, neural-tangents) only after the config is valid

    enabled = [name for name, (_, section, _) in STAGES.items() if getattr(cfg, section) is not None]
    todo = enabled if args.stage in ("run", "check") else [args.stage]
    if args.stage not in enabled and args.stage not in ("run", "check"):
        print(f"error: {args.config} has no [{STAGES[args.stage][1]}] section, so no {args.stage} stage", file=sys.stderr)
        return 2
    try:  # before any work or file: sizes this device cannot hold
        check_memory(cfg, devices.device_memory_bytes(), sections={STAGES[name][1] for name in todo})
    except ConfigError as err:
        print(f"error: bad config {args.config}: {err}", file=sys.stderr)
        return 2
    if args.stage == "check":
        print(f"{args.config}: ok ({cfg.name}, seed {cfg.seed})")
        return 0
    raw = stages.raw_dir(cfg, Path(args.results))
    for name in todo:
        if args.fresh:
            shutil.rmtree(raw / STAGES[name][2], ignore_errors=True)
        try:
            module, function = STAGES[name][0].split(":")
            run_stage = getattr(importlib.import_module(module), function)
            out = run_stage(cfg, Path(args.results), progress=not args.no_progress)
        except (StaleResultsError, StageBusyError, NonFiniteError, CorruptChunkError, stages.StageError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except (Exception, KeyboardInterrupt) as err:
            message = fault_message(err)
            if message is None or args.debug:
                raise
            print(f"error: stage {name}: {message} (--debug shows the traceback)", file=sys.stderr)
            return 130 if isinstance(err, KeyboardInterrupt) else 1
        print(f"wrote {out}")
    if args.stage == "run":
        stages.write_done(cfg, Path(args.results), todo)
    return 0
