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
from study.store import (Allowed, atomic_write_json, atomic_write_npz, claim_directory, lock_directory, read_chunks,
                         run_chunks, write_raw_table, write_sidecar)
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


def run_stage(cfg: ExperimentConfig, name: str, results: Path, progress: bool = True) -> Path:
    """Run (or resume, or only re-assemble) one stage; return its first output file."""
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
    done = []
    for part in module.plan(ctx):
        where = directory / part.subdir
        if part.subdir or part.config_hash:
            claim_directory(where, name, part.config_hash or config_hash, f"{name} chunks ({part.desc})")
        tables = run_chunks(where, part.n_chunks, part.compute, part.desc, progress, part.allowed, part.chunk_files)
        done.append(read_chunks(tables))
    outputs, sidecar = module.finalise(ctx, done)
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
