"""Stage rejection: P_B(f|S) by rejection sampling of the prior (study/rejection.py). Writes
rejection_counts.csv (one row per chunk and function, population bayes_rejection, with the
per-batch moments count_sq and count_acc) and rejection_chunks.csv (draws, acceptances, batches,
accepted_sq, readouts and time per chunk)."""
from __future__ import annotations

import jax

from study import rejection
from study.runner import Context, Part, sorted_counts


def plan(ctx: Context) -> list[Part]:
    rc = ctx.cfg.rejection
    batch_fn = rejection.make_batch_fn(ctx.net, ctx.task, rc.batch, rc.readouts)
    n_batches = rc.chunk_draws // rc.batch

    def compute(c: int):
        res = rejection.sample_chunk(batch_fn, jax.random.fold_in(ctx.key, c), n_batches, len(ctx.task.test_idx))
        counts = sorted_counts(c, res["counts"])
        counts = counts.assign(count_sq=counts["function"].map(res["count_sq"]),
                               count_acc=counts["function"].map(res["count_acc"]))
        return counts, {k: res[k] for k in ("draws", "accepted", "accepted_sq", "batches", "seconds")}

    return [Part(rc.draws // rc.chunk_draws, compute, "rejection")]


def finalise(ctx: Context, done):
    (counts, stats), = done
    readouts = ctx.cfg.rejection.readouts
    stats = stats.assign(readouts=readouts, config_hash=ctx.config_hash, seed=ctx.cfg.seed,
                         useful_flops=stats["draws"] * rejection.useful_flops_per_draw(ctx.net, ctx.task, readouts))
    outputs = {"rejection_counts.csv": counts.assign(population="bayes_rejection"), "rejection_chunks.csv": stats}
    return outputs, {"draws": int(stats["draws"].sum()), "accepted": int(stats["accepted"].sum()),
                     "sampler_seconds": float(stats["seconds"].sum())}
