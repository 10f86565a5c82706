"""One runner for every stage (study/stages/): claim the stage's directory for this config and
code, let the stage plan its chunked parts, compute the chunks not yet on disk (study/store.py
run_chunks), read them back, let the stage finalise its output tables, then write the declared
outputs (with config hash and seed) and the provenance sidecar.

A stage module has two functions:
- plan(ctx) -> list[Part]: the resumable chunk sequences (most stages have one; SGD one per
  setting, MCMC one per chain population), after any preparation of its own in ctx.directory;
- finalise(ctx, done) -> (outputs, sidecar): done holds (table, chunk stats) per part; outputs
  maps declared raw file names to a table, (table, allowed non-finite rows) or a dict of arrays
  (.npz); sidecar holds extra provenance for the first declared output.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import pandas as pd

from study.config import ExperimentConfig
from study.network import Network, build_network
from study.stages import STAGES, Stage, stage_hash
from study import store
from study.store import (Allowed, atomic_write_json, atomic_write_npz, chunks_missing, claim_directory, lock_directory,
                         read_chunks, run_chunks, write_raw_table, write_sidecar)
from study.tasks import Task, task_from_config


class StageError(RuntimeError):
    """A stage that cannot run as configured (the message says why and what to change)."""


def setup(cfg: ExperimentConfig) -> tuple[Task, Network]:
    task = task_from_config(cfg.task, cfg.seed)
    return task, build_network(cfg.network, task.input_shape)


def raw_dir(cfg: ExperimentConfig, results: Path) -> Path:
    return Path(results) / cfg.name / "raw"


@dataclass
class Part:
    """One resumable sequence of chunks: compute(c) -> (table, stats) for c in 0..n_chunks-1."""
    n_chunks: int
    compute: Callable[[int], tuple[pd.DataFrame, dict]]
    desc: str  # progress bar and messages
    subdir: str = ""  # under the stage's directory ("" = the directory itself)
    config_hash: str | None = None  # claims subdir for this hash (an SGD setting); default the stage's
    allowed: Allowed | None = None  # non-finite values allowed in its chunk tables (store.check_finite)
    chunk_files: Callable[[int], list[Path]] = lambda c: []  # other files compute(c) writes
    sequential: bool = False  # chunk c continues from chunk c - 1 (MCMC): one process computes them all


@dataclass
class Context:
    """What a stage's plan and finalise see."""
    cfg: ExperimentConfig
    stage: Stage
    results: Path
    progress: bool
    task: Task
    net: Network
    key: jax.Array  # fold_in(key(seed), stage.stream)
    config_hash: str
    directory: Path  # raw/<stage>/, claimed
    found: dict = field(default_factory=dict)  # whatever plan wants finalise to see

    @property
    def raw(self) -> Path:
        return raw_dir(self.cfg, self.results)

    def read(self, stage: str, name: str) -> Path:
        """The path of a public output of a stage this stage reads (declared in the registry),
        which must exist."""
        if stage not in self.stage.reads(self.cfg) or name not in STAGES[stage].outputs:
            raise AssertionError(f"stage {self.stage.name} reads {stage}/{name} without declaring it in the registry")
        path = self.raw / name
        if not path.exists():
            raise StageError(f"stage {self.stage.name} needs {path} from stage {stage}: run "
                             f"`python -m study {stage} --config ...` first (or `run`, which runs every stage in order)")
        return path


def shares(parts: list[Part], shard: store.Shard) -> list[Callable[[int], bool]]:
    """Which chunks of each part this shard computes: the units of work (a chunk, or a whole
    sequential part) dealt round-robin over the shards in plan order, so that every chunk has
    exactly one owner and one process (shard 0 of 1) owns them all."""
    mine, k = [], 0
    for part in parts:
        if part.sequential:
            own = k % shard.count == shard.index
            mine.append(lambda c, own=own: own)
            k += 1
        else:
            mine.append(lambda c, first=k: (first + c) % shard.count == shard.index)
            k += part.n_chunks
    return mine


WAIT_POLL_SECONDS = 2.0


def wait_for(missing: list[Path], name: str) -> None:
    """Block until every chunk in `missing` has its record (written by the other shards), saying
    once a minute what is still missing."""
    last = time.monotonic()
    while missing := chunks_missing(missing):
        if time.monotonic() - last > 60:
            print(f"shard {store.SHARD.index}/{store.SHARD.count}: stage {name} waits for {len(missing)} chunk(s) of "
                  f"the other shards, first {missing[0]}", flush=True)
            last = time.monotonic()
        time.sleep(WAIT_POLL_SECONDS)


def run_stage(cfg: ExperimentConfig, name: str, results: Path, progress: bool = True, wait: bool = False) -> Path | None:
    """Run (or resume, or only re-assemble) one stage; return its first output file.

    Split over processes (store.SHARD), this process computes its share of the chunks; then, if
    another shard's chunks are still missing, it returns None (the last shard to finish writes the
    tables), or with `wait` blocks until they are there. Every process that finds all chunks
    present writes the same tables (atomically, from the same chunks)."""
    stage = STAGES[name]
    module = importlib.import_module(f"study.stages.{name}")
    task, net = setup(cfg)
    config_hash = stage_hash(cfg, name)
    directory = raw_dir(cfg, results) / name
    # SGD settings are claimed one by one (a changed setting keeps the others): lock only
    if name == "sgd":
        directory.mkdir(parents=True, exist_ok=True)
        lock_directory(directory)
    else:
        claim_directory(directory, name, config_hash, f"{name} stage chunks")
    key = jax.random.fold_in(jax.random.key(cfg.seed, impl=stage.prng(cfg)), stage.stream)
    ctx = Context(cfg, stage, Path(results), progress, task, net, key, config_hash, directory)
    start = time.perf_counter()
    parts = module.plan(ctx)
    tables = []
    for part, mine in zip(parts, shares(parts, store.SHARD)):
        where = directory / part.subdir
        if part.subdir or part.config_hash:
            claim_directory(where, name, part.config_hash or config_hash, f"{name} chunks ({part.desc})")
        tables.append(run_chunks(where, part.n_chunks, part.compute, part.desc, progress, part.allowed,
                                 part.chunk_files, mine))
    missing = [p for t in tables for p in chunks_missing(t)]
    if missing and not wait:
        return None
    wait_for(missing, name)
    outputs, sidecar = module.finalise(ctx, [read_chunks(t) for t in tables])
    undeclared = set(outputs) - set(stage.outputs)
    if undeclared or stage.outputs[0] not in outputs:
        raise AssertionError(f"stage {name} wrote {sorted(outputs)}; the registry declares {stage.outputs}")
    for file, out in outputs.items():
        path = ctx.raw / file
        if isinstance(out, dict):
            atomic_write_npz(path, **out)
            continue
        frame, allowed = out if isinstance(out, tuple) else (out, None)
        for column, value in (("config_hash", config_hash), ("seed", cfg.seed)):
            if column not in frame:
                frame = frame.assign(**{column: value})
        write_raw_table(frame, path, allowed)
    first = ctx.raw / stage.outputs[0]
    write_sidecar(first, config_hash=config_hash, seed=cfg.seed, stage=name,
                  wall_seconds_this_invocation=time.perf_counter() - start, **sidecar)
    return first


def write_done(cfg: ExperimentConfig, results: Path, stages: list[str]) -> None:
    """raw/stages.json: written when every stage of the config is complete (make's target)."""
    atomic_write_json({"stages": stages, "config_hashes": {s: stage_hash(cfg, s) for s in stages}},
                      raw_dir(cfg, results) / "stages.json")


def sorted_counts(c: int, counts: dict) -> pd.DataFrame:
    """One chunk's function counts as a table (chunk, function, count), sorted by function."""
    return pd.DataFrame({"chunk": c, "function": list(counts), "count": list(counts.values())},
                        columns=["chunk", "function", "count"]).sort_values("function")
