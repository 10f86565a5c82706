"""Stage sgd: the SGD population of every setting (study/sgd.py). Writes sgd_runs.csv (one row
per training run), sgd_chunks.csv (runs, steps and time per chunk) and sgd_params.npz: the
parameters at the stop of runs 0..K-1 of every setting (K = stages.sgd_kept_params; the
geometry stage's SGD points), so that no later stage trains them again."""
from __future__ import annotations

import time
import zlib

import jax
import numpy as np
import pandas as pd

from study import sgd
from study.encoding import words_to_hex
from study.runner import Context, Part
from study.stages import sgd_kept_params, stage_hash
from study.store import atomic_write_npz

# A run that diverged (lr too large) may end with a non-finite loss; it did not fit S, and the
# analysis counts it with the other runs that did not.
SGD_ALLOWED = {"final_loss": lambda runs: ~runs["fitted"].astype(bool)}


def setting_key(key: jax.Array, setting) -> jax.Array:
    """The key of one setting's population (key: the stage's); run r uses fold_in(this, r)."""
    return jax.random.fold_in(key, zlib.crc32(setting.name.encode()))


def plan(ctx: Context) -> list[Part]:
    sc, kept = ctx.cfg.sgd, sgd_kept_params(ctx.cfg)
    return [_setting_part(ctx, setting, sc, kept) for setting in sc.settings]


def _setting_part(ctx: Context, setting, sc, kept: int) -> Part:
    key = setting_key(ctx.key, setting)
    trainers = {keep: sgd.make_chunk_trainer(ctx.net, ctx.task, setting, sc, sc.chunk_runs, keep_params=keep)
                for keep in ((False, True) if kept else (False,))}
    directory = ctx.directory / setting.name

    def keeps(c: int) -> bool:
        return c * sc.chunk_runs < kept

    def params_file(c: int):
        return directory / f"params_{c:05d}.npz"

    def compute(c: int):
        t0 = time.perf_counter()
        out = jax.device_get(trainers[keeps(c)](key, c * sc.chunk_runs))
        seconds = time.perf_counter() - t0
        run_id = c * sc.chunk_runs + np.arange(sc.chunk_runs)
        if keeps(c):
            first = run_id < kept
            atomic_write_npz(params_file(c), theta_RxD=out["theta"][first], run_id=run_id[first],
                             fitted=out["fitted"][first])
        table = pd.DataFrame({"run_id": run_id, "chunk": c, "steps": out["steps"], "fitted": out["fitted"],
                              "final_loss": out["loss"], "function": words_to_hex(out["words"], len(ctx.task.test_idx))})
        return table, {"runs": sc.chunk_runs, "seconds": seconds, "total_steps": int(out["steps"].sum())}

    return Part(sc.runs // sc.chunk_runs, compute, f"sgd {setting.name}", subdir=setting.name,
                config_hash=stage_hash(ctx.cfg, "sgd", setting), allowed=SGD_ALLOWED,
                chunk_files=lambda c: [params_file(c)] if keeps(c) else [])


def finalise(ctx: Context, done):
    cfg, sc = ctx.cfg, ctx.cfg.sgd
    runs, chunks, params = [], [], {}
    for setting, (table, stats) in zip(sc.settings, done):
        describe = dict(setting=setting.name, optimizer=setting.optimizer, loss=setting.loss,
                        batch_size=setting.batch_size, lr=setting.lr, config_hash=stage_hash(cfg, "sgd", setting),
                        seed=cfg.seed)
        runs.append(table.assign(**describe))
        flops_per_step = sgd.useful_flops_per_step(ctx.net, ctx.task, setting)
        chunks.append(stats.assign(**describe, useful_flops=stats["total_steps"] * flops_per_step))
        kept = [ctx.directory / setting.name / f"params_{c:05d}.npz"
                for c in range(-(-sgd_kept_params(cfg) // sc.chunk_runs))]
        for name in ("theta_RxD", "run_id", "fitted"):
            params[f"{setting.name}.{name}"] = np.concatenate([_load(f, name) for f in kept]) if kept else np.zeros(0)
    outputs = {"sgd_runs.csv": (pd.concat(runs, ignore_index=True), SGD_ALLOWED),
               "sgd_chunks.csv": pd.concat(chunks, ignore_index=True), "sgd_params.npz": params}
    return outputs, {"config_hashes": {s.name: stage_hash(cfg, "sgd", s) for s in sc.settings}}


def _load(path, name: str) -> np.ndarray:
    with np.load(path) as f:
        return f[name]


def solutions(params_file, setting: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Parameters and run ids of the runs among 0..n-1 of a setting that fitted S, from
    raw/sgd_params.npz (a public output of this stage)."""
    with np.load(params_file) as f:
        run_id, fitted, theta = f[f"{setting}.run_id"], f[f"{setting}.fitted"], f[f"{setting}.theta_RxD"]
    keep = fitted & (run_id < n)
    return theta[keep], run_id[keep]
