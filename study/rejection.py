"""P_B(f|S) by rejection in parameter space: draw theta from the prior in jit-compiled batches,
keep the draws that classify every training input correctly, and count the functions they
compute on E. Only counts leave the device loop, never the draws themselves.

With readouts = K > 1 the hidden layers of each network are drawn once and K output layers for
each (every (hidden, output) pair is still a draw from the prior, and the count of fits and
functions over all pairs a consistent ratio estimate of P_B(f|S)). The output layer is a few
percent of a forward pass, so a pair costs a fraction of a full draw; the pairs that share
hidden layers are correlated, which the dispersion of the counts across batches measures (each
batch holds whole groups and has its own key, so batches are independent): per function f,
`count_sq` = sum over batches of c_fb^2 and `count_acc` = sum of c_fb * a_b (a_b the batch's
fits), per chunk `accepted_sq` = sum of a_b^2, from which analysis.stats.design_effects gives the
variance of the estimate and the effective sample size."""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from study.devices import batch_keys, dividing_devices, per_key
from study.encoding import fits, pack_signs, words_to_hex
from study.network import Network
from study.tasks import Task


def make_batch_fn(net: Network, task: Task, batch: int, readouts: int = 1) -> Callable:
    """jitted key -> (fit_P bool, words_PxW uint32): one batch of P = batch prior draws evaluated on
    S and E; with readouts = K, batch / K hidden-layer draws with K output layers each (rows
    grouped by hidden draw)."""
    if readouts < 1 or batch % readouts:
        raise ValueError(f"readouts = {readouts} must be >= 1 and divide the batch ({batch})")
    x = jnp.asarray(np.concatenate([task.x_train, task.x_test]))
    y_train = jnp.asarray(task.y_train)
    m = len(task.train_idx)
    R = net.n_readout
    readout_std = net.prior_std_D[-R:]

    @jax.jit
    def batch_fn(key):
        if readouts == 1:
            out_PxN = net.apply_population(net.sample_prior(key, batch), x)
        else:
            key_h, key_r = jax.random.split(key)
            hidden_GxD = net.sample_prior(key_h, batch // readouts)[:, :-R]
            phi_GxNxH = jax.vmap(net.features, in_axes=(0, None))(hidden_GxD, x)
            H = net.n_features
            r_GxKxR = jax.random.normal(key_r, (batch // readouts, readouts, R)) * readout_std
            out_GxKxN = jnp.einsum("gnh,gkh->gkn", phi_GxNxH, r_GxKxR[..., :H])
            if R > H:  # output bias
                out_GxKxN = out_GxKxN + r_GxKxR[..., H:]
            out_PxN = out_GxKxN.reshape(batch, -1)
        return fits(out_PxN[:, :m], y_train), pack_signs(out_PxN[:, m:])

    return batch_fn


def sample_chunk(batch_fn: Callable, chunk_key: jax.Array, n_batches: int, n_test: int, on_batch=None) -> dict:
    """Run n_batches batches (keys fold_in(chunk_key, b)) and return counts, the per-batch moments
    of the counts (module docstring) and throughput."""
    start = time.perf_counter()
    # Dispatch every batch first, one per local device at a time (devices.per_key): jax runs them
    # asynchronously while the host counts.
    d = dividing_devices(n_batches)
    batches = per_key(batch_fn, d)
    pending = [batches(batch_keys(chunk_key, b, d)) for b in range(0, n_batches, d)]
    counts: Counter = Counter()
    count_sq: Counter = Counter()
    count_acc: Counter = Counter()
    accepted = accepted_sq = 0
    for fit, words_PxW in ((f, w) for group in pending for f, w in zip(*map(np.asarray, group))):
        words = words_PxW[fit]
        a_b = int(fit.sum())
        if a_b:
            unique_UxW, c_U = np.unique(words, axis=0, return_counts=True)
            keys = [row.tobytes() for row in unique_UxW]
            c_U = c_U.astype(np.int64)
            counts.update(dict(zip(keys, c_U.tolist())))
            count_sq.update(dict(zip(keys, (c_U * c_U).tolist())))
            count_acc.update(dict(zip(keys, (c_U * a_b).tolist())))
        accepted += a_b
        accepted_sq += a_b * a_b
        if on_batch is not None:
            on_batch()
    seconds = time.perf_counter() - start
    draws = n_batches * int(fit.shape[0])
    keys = list(counts)
    n_words = -(-n_test // 32)
    hexes = words_to_hex(np.frombuffer(b"".join(keys), np.uint32).reshape(len(keys), n_words), n_test) if keys else []
    return {"draws": draws, "accepted": accepted, "accepted_sq": accepted_sq, "batches": n_batches,
            "seconds": seconds, "counts": dict(zip(hexes, (counts[k] for k in keys))),
            "count_sq": dict(zip(hexes, (count_sq[k] for k in keys))),
            "count_acc": dict(zip(hexes, (count_acc[k] for k in keys)))}


def useful_flops_per_draw(net: Network, task: Task, readouts: int = 1) -> float:
    """Forward-pass FLOPs a draw must spend on the m training and |E| test inputs: a full pass, or
    with K readouts the hidden layers' share over K plus the output layer."""
    hidden = net.macs_per_input - net.n_features
    return 2 * (len(task.train_idx) + len(task.test_idx)) * (hidden / readouts + net.n_features)
