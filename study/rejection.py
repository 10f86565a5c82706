"""P_B(f|S) by rejection in parameter space: draw theta from the prior in jit-compiled batches,
keep the draws that classify every training input correctly, and count the functions they
compute on E. Only counts leave the device loop, never the draws themselves."""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from study.encoding import count_functions, fits, pack_signs
from study.network import Network
from study.tasks import Task


def make_batch_fn(net: Network, task: Task, batch: int) -> Callable:
    """jitted key -> (fit_P bool, words_PxW uint32): one batch of prior draws, evaluated on S and E."""
    x = jnp.asarray(np.concatenate([task.x_train, task.x_test]))
    y_train = jnp.asarray(task.y_train)
    m = len(task.train_idx)

    @jax.jit
    def batch_fn(key):
        theta_PxD = net.sample_prior(key, batch)
        out_PxN = net.apply_population(theta_PxD, x)
        return fits(out_PxN[:, :m], y_train), pack_signs(out_PxN[:, m:])

    return batch_fn


def sample_chunk(batch_fn: Callable, chunk_key: jax.Array, n_batches: int, n_test: int, on_batch=None) -> dict:
    """Run n_batches batches (keys fold_in(chunk_key, b)) and return counts and throughput."""
    start = time.perf_counter()
    # Dispatch every batch first: jax runs them asynchronously while the host counts.
    pending = [batch_fn(jax.random.fold_in(chunk_key, b)) for b in range(n_batches)]
    counts: Counter[str] = Counter()
    accepted = 0
    for fit_P, words_PxW in pending:
        fit = np.asarray(fit_P)
        counts.update(count_functions(np.asarray(words_PxW)[fit], n_test))
        accepted += int(fit.sum())
        if on_batch is not None:
            on_batch()
    seconds = time.perf_counter() - start
    draws = n_batches * int(fit.shape[0])
    return {"draws": draws, "accepted": accepted, "seconds": seconds, "counts": dict(counts)}


def useful_flops_per_draw(net: Network, task: Task) -> int:
    """Forward-pass FLOPs every draw must spend: one pass on the m training and |E| test inputs."""
    return 2 * net.macs_per_input * (len(task.train_idx) + len(task.test_idx))
