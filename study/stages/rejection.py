"""Stage rejection: P_B(f|S) by rejection sampling of the prior (study/rejection.py). Writes
rejection_counts.csv (one row per chunk and function, population bayes_rejection) and
rejection_chunks.csv (draws, acceptances and time per chunk)."""
from __future__ import annotations

import jax

from study import rejection
from study.runner import Context, Part, sorted_counts


def plan(ctx: Context) -> list[Part]:
    rc = ctx.cfg.rejection
    batch_fn = rejection.make_batch_fn(ctx.net, ctx.task, rc.batch)
    n_batches = rc.chunk_draws // rc.batch

    def compute(c: int):
        res = rejection.sample_chunk(batch_fn, jax.random.fold_in(ctx.key, c), n_batches, len(ctx.task.test_idx))
        return sorted_counts(c, res["counts"]), {k: res[k] for k in ("draws", "accepted", "seconds")}

    return [Part(rc.draws // rc.chunk_draws, compute, "rejection")]


def finalise(ctx: Context, done):
    (counts, stats), = done
    stats = stats.assign(config_hash=ctx.config_hash, seed=ctx.cfg.seed,
                         useful_flops=stats["draws"] * rejection.useful_flops_per_draw(ctx.net, ctx.task))
    outputs = {"rejection_counts.csv": counts.assign(population="bayes_rejection"), "rejection_chunks.csv": stats}
    return outputs, {"draws": int(stats["draws"].sum()), "accepted": int(stats["accepted"].sum()),
                     "sampler_seconds": float(stats["seconds"].sum())}
