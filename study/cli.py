"""Command line: python -m study <stage> --config configs/<file>.toml"""
from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
from pathlib import Path

from study.config import ConfigError, load_or_report
from study.memory import check_memory
from study.stages import STAGES, enabled
from study import store
from study.store import CorruptChunkError, NonFiniteError, StageBusyError, StaleResultsError

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


def parse_shard(text: str | None, environ=os.environ) -> store.Shard:
    """--shard i/n (0 <= i < n); "slurm": this task of a Slurm job array (SLURM_ARRAY_TASK_ID
    counted from SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT); "jax": this process of a
    jax.distributed job (`distributed_shard`). Raises ValueError with the reason."""
    if text is None:
        return store.Shard()
    if text == "jax":
        return distributed_shard(environ)
    if text == "slurm":
        try:
            i = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
            n = int(environ["SLURM_ARRAY_TASK_COUNT"])
        except KeyError as err:
            raise ValueError(f"--shard slurm outside a Slurm job array: {err.args[0]} is not set") from None
    else:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard {text!r}: expected i/n (for example 0/4), slurm or jax") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: shard {i} of {n} does not exist (0 <= i < n)")
    return store.Shard(i, n)


DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def distributed_shard(environ=os.environ) -> store.Shard:
    """This process's share of a jax.distributed job: shard jax.process_index() of
    jax.process_count(), after jax.distributed.initialize(). Where JAX_NUM_PROCESSES or
    JAX_PROCESS_ID is set, the three DISTRIBUTED_ENV variables say where the coordinator (process
    0) listens, how many processes there are and which one this is (a launch by hand, or on
    localhost); otherwise JAX reads them from the cluster it detects (Slurm, Open MPI, Kubernetes,
    Cloud TPU). Must run before JAX starts its backends. Raises ValueError with the reason."""
    import jax

    kwargs = {}
    if any(name in environ for name in DISTRIBUTED_ENV[1:]):
        missing = [name for name in DISTRIBUTED_ENV if name not in environ]
        if missing:
            raise ValueError(f"--shard jax: {', '.join(missing)} not set ({', '.join(DISTRIBUTED_ENV)} go together)")
        try:
            kwargs = {"coordinator_address": environ["JAX_COORDINATOR_ADDRESS"],
                      "num_processes": int(environ["JAX_NUM_PROCESSES"]), "process_id": int(environ["JAX_PROCESS_ID"])}
        except ValueError:
            raise ValueError("--shard jax: JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers") from None
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"--shard jax: jax.distributed did not start ({err}); outside a cluster JAX detects, set "
                         f"{', '.join(DISTRIBUTED_ENV)}") from None
    return store.Shard(jax.process_index(), jax.process_count())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__)
    parser.add_argument("stage", choices=("check", *STAGES, "run"), help="check: validate the config; "
                        + "; ".join(f"{name}: {stage.summary}" for name, stage in STAGES.items())
                        + "; run: every stage the config has, in order")
    parser.add_argument("--config", required=True, help="experiment config (TOML), e.g. configs/e1_quick.toml")
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--fresh", action="store_true", help="delete this stage's earlier raw results first")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--if-enabled", action="store_true",
                        help="a config without the stage's section is skipped, not an error (make stage-<name>)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a fault (disk, memory)")
    parser.add_argument("--shard", metavar="i/n", help="split the work over n processes (or hosts sharing the results "
                        "directory) and run share i (0-based): each chunk belongs to one shard; with `run` each stage "
                        "waits for the other shards' chunks before the next; 'slurm': this task of a Slurm job array; 'jax': this "
                        "process of a jax.distributed job (README)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    try:
        store.SHARD = parse_shard(args.shard)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.fresh and store.SHARD.count > 1:
        print("error: --fresh with --shard would delete the other shards' chunks; run `python -m study <stage> "
              "--fresh` once without --shard to start over", file=sys.stderr)
        return 2
    from study import devices, runner  # heavy imports (jax, neural-tangents) only after the config is valid

    todo = enabled(cfg) if args.stage in ("run", "check") else [args.stage]
    if args.stage not in ("run", "check") and not STAGES[args.stage].enabled(cfg):
        if args.if_enabled:
            return 0
        print(f"error: {args.config} has no [{args.stage}] section, so no {args.stage} stage", file=sys.stderr)
        return 2
    try:  # before any work or file: sizes this device cannot hold
        check_memory(cfg, devices.device_memory_bytes(), sections=set(todo))
    except ConfigError as err:
        print(f"error: bad config {args.config}: {err}", file=sys.stderr)
        return 2
    if args.stage == "check":
        print(f"{args.config}: ok ({cfg.name}, seed {cfg.seed})")
        return 0
    raw = runner.raw_dir(cfg, Path(args.results))
    for name in todo:
        if args.fresh:
            shutil.rmtree(raw / name, ignore_errors=True)
        try:
            out = runner.run_stage(cfg, name, Path(args.results), progress=not args.no_progress,
                                   wait=args.stage == "run")
        except (StaleResultsError, StageBusyError, NonFiniteError, CorruptChunkError, runner.StageError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except (Exception, KeyboardInterrupt) as err:
            message = fault_message(err)
            if message is None or args.debug:
                raise
            print(f"error: stage {name}: {message} (--debug shows the traceback)", file=sys.stderr)
            return 130 if isinstance(err, KeyboardInterrupt) else 1
        if out is None:
            print(f"shard {store.SHARD.index}/{store.SHARD.count}: stage {name}: this shard's chunks are done; the "
                  "other shards' are not yet, and the last shard to finish writes the tables")
            return 0
        print(f"wrote {out}")
    if args.stage == "run":
        runner.write_done(cfg, Path(args.results), todo)
    return 0
