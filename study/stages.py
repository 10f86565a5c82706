"""The study's stages as functions of a config: each writes raw, tidy CSVs under
results/<experiment name>/raw/ with a JSON provenance sidecar."""
from __future__ import annotations

import time
import zlib
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from study import rejection, sgd
from study.config import ExperimentConfig
from study.encoding import words_to_hex
from study.network import Network, build_network
from study.store import claim_directory, read_chunks, run_chunks, write_sidecar, atomic_write_csv
from study.tasks import Task, make_task

REJECTION_STREAM, SGD_STREAM = 1, 2


def setup(cfg: ExperimentConfig) -> tuple[Task, Network]:
    t = cfg.task
    return make_task(t.n, t.target, t.m, t.n_test, cfg.seed), build_network(cfg.network, t.n)


def raw_dir(cfg: ExperimentConfig, results: Path) -> Path:
    return Path(results) / cfg.name / "raw"


def run_rejection(cfg: ExperimentConfig, results: Path, progress: bool = True) -> Path:
    """Rejection sampling of P_B(f|S); writes bayes_counts.csv (one row per chunk and function)."""
    task, net = setup(cfg)
    rc = cfg.rejection
    config_hash = cfg.stage_hash("rejection")
    directory = raw_dir(cfg, results) / "rejection"
    claim_directory(directory, "rejection", config_hash, "rejection-sampler chunks")
    key = jax.random.fold_in(jax.random.key(cfg.seed, impl=rc.prng), REJECTION_STREAM)
    batch_fn = rejection.make_batch_fn(net, task, rc.batch)
    n_batches = rc.chunk_draws // rc.batch

    def compute(c: int):
        res = rejection.sample_chunk(batch_fn, jax.random.fold_in(key, c), n_batches, len(task.test_idx))
        table = pd.DataFrame({"chunk": c, "function": list(res["counts"]), "count": list(res["counts"].values())},
                             columns=["chunk", "function", "count"])
        return table.sort_values("function"), {k: res[k] for k in ("draws", "accepted", "seconds")}

    start = time.perf_counter()
    tables = run_chunks(directory, rc.draws // rc.chunk_draws, compute, "rejection", progress)
    counts, stats = read_chunks(tables)
    counts = counts.assign(population="bayes_rejection", config_hash=config_hash, seed=cfg.seed)
    stats = stats.assign(config_hash=config_hash, seed=cfg.seed,
                         useful_flops=stats["draws"] * rejection.useful_flops_per_draw(net, task))
    out = raw_dir(cfg, results) / "bayes_counts.csv"
    atomic_write_csv(stats, raw_dir(cfg, results) / "rejection_chunks.csv")
    atomic_write_csv(counts, out)
    write_sidecar(out, config_hash=config_hash, seed=cfg.seed, stage="rejection",
                  wall_seconds_this_invocation=time.perf_counter() - start,
                  draws=int(stats["draws"].sum()), accepted=int(stats["accepted"].sum()),
                  sampler_seconds=float(stats["seconds"].sum()))
    return out


def run_sgd(cfg: ExperimentConfig, results: Path, progress: bool = True) -> Path:
    """The SGD population for every setting; writes sgd_runs.csv (one row per training run)."""
    task, net = setup(cfg)
    sc = cfg.sgd
    runs, chunks = [], []
    start = time.perf_counter()
    for setting in sc.settings:
        config_hash = cfg.stage_hash("sgd", setting)
        directory = raw_dir(cfg, results) / "sgd" / setting.name
        claim_directory(directory, "sgd", config_hash, f"SGD chunks for setting {setting.name}")
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.seed), SGD_STREAM),
                                 zlib.crc32(setting.name.encode()))
        trainer = sgd.make_chunk_trainer(net, task, setting, sc, sc.chunk_runs)

        def compute(c: int):
            t0 = time.perf_counter()
            out = jax.device_get(trainer(key, c * sc.chunk_runs))
            seconds = time.perf_counter() - t0
            table = pd.DataFrame({
                "run_id": c * sc.chunk_runs + np.arange(sc.chunk_runs), "chunk": c,
                "steps": out["steps"], "fitted": out["fitted"], "final_loss": out["loss"],
                "function": words_to_hex(out["words"], len(task.test_idx)),
            })
            return table, {"runs": sc.chunk_runs, "seconds": seconds, "total_steps": int(out["steps"].sum())}

        tables = run_chunks(directory, sc.runs // sc.chunk_runs, compute, f"sgd {setting.name}", progress)
        table, stats = read_chunks(tables)
        describe = dict(setting=setting.name, optimizer=setting.optimizer, loss=setting.loss,
                        batch_size=setting.batch_size, lr=setting.lr, config_hash=config_hash, seed=cfg.seed)
        runs.append(table.assign(**describe))
        flops_per_step = sgd.useful_flops_per_step(net, task, setting)
        chunks.append(stats.assign(**describe, useful_flops=stats["total_steps"] * flops_per_step))
    out = raw_dir(cfg, results) / "sgd_runs.csv"
    atomic_write_csv(pd.concat(chunks, ignore_index=True), raw_dir(cfg, results) / "sgd_chunks.csv")
    atomic_write_csv(pd.concat(runs, ignore_index=True), out)
    write_sidecar(out, seed=cfg.seed, stage="sgd", wall_seconds_this_invocation=time.perf_counter() - start,
                  config_hashes={s.name: cfg.stage_hash("sgd", s) for s in sc.settings})
    return out
