"""P_B(f|S) by MCMC in parameter space: elliptical slice sampling (ESS) of the prior restricted to
the networks that classify every training input correctly.

The target is N(0, diag(prior_std_D^2)) times the indicator of zero training error. ESS (Murray,
Adams & MacKay 2010) leaves exactly this "Gaussian prior x likelihood" invariant and needs no
gradients; with an indicator likelihood every move stays inside the zero-error set. Chains run in
whitened coordinates u = theta / prior_std_D ~ N(0, I), so the Gaussian ESS sees is the identity.
The transition is study/ess.py's (blackjax's), the one the NNGP's truncated Gaussian uses too.

C chains advance side by side (vmap; the chain axis is the first axis), split over the local
devices that divide C (`devices.over_population`). Only the function each
kept sample computes on E (packed signs) and a few scalar summaries for convergence diagnostics
leave the device, never the parameters of the kept samples.

Randomness: step t of chain c uses fold_in(fold_in(key, t), c), with t the global step index
counted from the start of the run (burn-in included). The numbers drawn therefore do not depend
on how the run is cut into device calls, on the number of chains, or on whether it was resumed.
"""
from __future__ import annotations

import functools
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from study import ess
from study.devices import POPULATION, SHARED, SPLIT, dividing_devices, over_population
from study.diagnostics import RHAT_THRESHOLD, chain_diagnostics
from study.encoding import count_functions, fits, pack_signs, words_to_hex
from study.network import Network
from study.tasks import Task

# Chains moved side by side (vmap) in one block; a device loops over its blocks (lax.map). Each ESS
# step is a while loop that lasts as long as its block's slowest chain, so small blocks waste fewer
# proposals: measured on 2 CPU cores, 512 chains of E1's network at 8 chains a block run 1.8x faster
# than all 512 in lockstep (2 and 64 a block: 1.1x and 1.4x slower than 8), with identical chains.
CHAIN_BLOCK = 8
N_PROBE = 3  # test inputs whose raw network output is traced for diagnostics


class ConvergenceWarning(UserWarning):
    """A traced summary whose split R-hat says the chains have not mixed."""


# ---------------------------------------------------------------------------------------------
# Initial states
# ---------------------------------------------------------------------------------------------

def fits_training_set(net: Network, task: Task, theta_PxD: jnp.ndarray) -> np.ndarray:
    """(P,) bool: does each network classify every training input correctly (out > 0 iff label)?"""
    return np.asarray(fits(net.apply_population(jnp.asarray(theta_PxD), jnp.asarray(task.x_train)), task.y_train))


def check_fits(net: Network, task: Task, theta_CxD) -> None:
    """Raise ValueError unless every initial state has zero training error (ESS needs it: from a
    state outside the set, the slice bracket shrinks towards that state and need not terminate)."""
    theta_CxD = np.asarray(theta_CxD)
    if theta_CxD.ndim != 2 or theta_CxD.shape[1] != net.n_params:
        raise ValueError(f"initial states must have shape (chains, {net.n_params}), got {theta_CxD.shape}")
    bad = np.flatnonzero(~fits_training_set(net, task, theta_CxD))
    if len(bad):
        raise ValueError(f"{len(bad)} of {len(theta_CxD)} initial states do not fit the training set "
                         f"(chains {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''})")


def init_from_rejection(net: Network, task: Task, key: jax.Array, n_chains: int,
                        batch: int = 4096, max_draws: int = 2**22) -> np.ndarray:
    """theta_CxD: the first n_chains zero-training-error prior draws of batches fold_in(key, b).

    These are exact draws from the target, so chains started here are stationary from step 0.
    Raises RuntimeError after max_draws draws if too few were accepted."""
    x_S, y_S = jnp.asarray(task.x_train), jnp.asarray(task.y_train)

    @jax.jit
    def draw(batch_key):
        theta_PxD = net.sample_prior(batch_key, batch)
        return theta_PxD, fits(net.apply_population(theta_PxD, x_S), y_S)

    found: list[np.ndarray] = []
    n_found, draws, b = 0, 0, 0
    while n_found < n_chains:
        if draws >= max_draws:
            rate = n_found / draws
            need = f"about {n_chains / rate:.3g} draws" if rate > 0 else "an unknown number of draws"
            raise RuntimeError(
                f"rejection found only {n_found} of {n_chains} zero-training-error initial states in "
                f"{draws} prior draws (acceptance {rate:.2g}); {need} would be needed: raise max_draws "
                f"or start the chains from trained solutions")
        theta_PxD, fit_P = draw(jax.random.fold_in(key, b))
        fit = np.asarray(fit_P)
        if fit.any():
            found.append(np.asarray(theta_PxD[np.flatnonzero(fit)]))
            n_found += int(fit.sum())
        draws += batch
        b += 1
    return np.concatenate(found)[:n_chains]


# ---------------------------------------------------------------------------------------------
# The device loop
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainRunner:
    """Two jitted device loops over C chains in whitened coordinates u_CxD.

    runner(key, u_CxD, first_step) -> (u_CxD, kept): keep_per_call * thin ESS steps, summarised
    every thin-th step. kept holds arrays (C, keep_per_call, ...): "words" (packed function on
    E), "probe" (outputs on the first N_PROBE test inputs), "norm" (|theta|), "test_error" (on E),
    "proposals" (ESS proposals, i.e. forward passes on S, since the previous kept sample); and
    "lockstep_proposals" (keep_per_call,): the proposals a loop moving every chain in lockstep
    pays (the slowest of all chains sets the length of each step's while loop; the device loop,
    in blocks of CHAIN_BLOCK chains, pays less).

    runner.burn(key, u_CxD, first_step, n_steps) -> (u_CxD, lockstep_proposals): n_steps steps
    (any number, traced) with nothing kept.

    Precondition: every chain's state fits S (run_chains checks this)."""

    run: Callable
    burn_fn: Callable
    keep_per_call: int
    thin: int

    @property
    def steps_per_call(self) -> int:
        return self.keep_per_call * self.thin

    def __call__(self, key: jax.Array, u_CxD: jnp.ndarray, first_step: int):
        return self.run(key, u_CxD, jnp.int32(first_step))

    def burn(self, key: jax.Array, u_CxD: jnp.ndarray, first_step: int, n_steps: int):
        return self.burn_fn(key, u_CxD, jnp.int32(first_step), jnp.int32(n_steps))


def make_chain_runner(net: Network, task: Task, keep_per_call: int, thin: int = 1) -> ChainRunner:
    if keep_per_call < 1 or thin < 1:
        raise ValueError(f"keep_per_call and thin must be >= 1, got {keep_per_call} and {thin}")
    x_S, y_S = jnp.asarray(task.x_train), jnp.asarray(task.y_train)
    x_E, y_E = jnp.asarray(task.x_test), jnp.asarray(task.y_test)
    std_D = net.prior_std_D
    n_probe = min(N_PROBE, len(task.test_idx))

    def fits_S(u_D):
        return fits(net.apply_flat(u_D * std_D, x_S), y_S)

    one_step = ess.indicator_step(fits_S)  # whitened: the prior ESS sees is N(0, I)

    def step(key, u_CxD, t, first):
        """Global step t of this device's chains (the first is chain `first`): chain c uses
        fold_in(fold_in(key, t), c)."""
        chains = first + jnp.arange(len(u_CxD))
        keys_C = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(key, t), chains)
        return jax.lax.map(lambda a: one_step(*a), (keys_C, u_CxD), batch_size=CHAIN_BLOCK)

    def summarise(u_CxD):
        theta_CxD = u_CxD * std_D
        out_CxE = net.apply_population(theta_CxD, x_E)
        return {
            "words": pack_signs(out_CxE),
            "probe": out_CxE[:, :n_probe],
            "norm": jnp.linalg.norm(theta_CxD, axis=1),
            "test_error": jnp.mean((out_CxE > 0) != y_E, axis=1),
        }

    def run(first, key, u_CxD, first_step):
        def keep_block(u_CxD, k):
            steps = first_step + k * thin + jnp.arange(thin)
            u_CxD, proposals_TxC = jax.lax.scan(lambda u, t: step(key, u, t, first), u_CxD, steps)
            kept = summarise(u_CxD)
            kept["proposals"] = proposals_TxC.sum(0)
            # the slowest chain of all devices: what a lockstep loop over every chain would pay
            kept["lockstep_proposals"] = jax.lax.pmax(proposals_TxC.max(1), POPULATION).sum()
            return u_CxD, kept

        u_CxD, kept = jax.lax.scan(keep_block, u_CxD, jnp.arange(keep_per_call))
        # scan stacks along a leading K axis; the chain axis goes first
        kept = {name: jnp.swapaxes(v, 0, 1) if v.ndim >= 2 else v for name, v in kept.items()}
        return u_CxD, kept

    def burn(first, key, u_CxD, first_step, n_steps):
        def body(t, carry):
            u_CxD, lockstep = carry
            u_CxD, proposals_C = step(key, u_CxD, t, first)
            return u_CxD, lockstep + jax.lax.pmax(proposals_C.max(), POPULATION)

        return jax.lax.fori_loop(first_step, first_step + n_steps, body, (u_CxD, jnp.int32(0)))

    kept_specs = dict.fromkeys(("words", "probe", "norm", "test_error", "proposals"), SPLIT) | {
        "lockstep_proposals": SHARED}

    @functools.cache
    def spread(n_chains: int):
        """run and burn for n_chains chains, split over the local devices that divide them."""
        d = dividing_devices(n_chains)
        return (over_population(run, d, (SHARED, SPLIT, SHARED), (SPLIT, kept_specs), block=n_chains // d),
                over_population(burn, d, (SHARED, SPLIT, SHARED, SHARED), (SPLIT, SHARED), block=n_chains // d))

    return ChainRunner(lambda key, u_CxD, first: spread(len(u_CxD))[0](key, u_CxD, first),
                       lambda key, u_CxD, first, n: spread(len(u_CxD))[1](key, u_CxD, first, n), keep_per_call, thin)


# ---------------------------------------------------------------------------------------------
# Host loop: burn-in, chunking, streaming counts
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainRun:
    """What one run_chains call leaves on the host (never the kept parameters themselves)."""

    counts: dict[str, int]  # function on E (hex, study.encoding) -> kept samples computing it
    traces: dict[str, np.ndarray]  # summary name -> (C, n_keep), for diagnostics()
    words_CxNxW: np.ndarray  # the function on E of every kept sample (packed signs, study.encoding)
    u_CxD: np.ndarray  # final states, whitened
    theta_CxD: np.ndarray  # final states, parameters
    next_step: int  # global index of the next step: pass this run as `init` to continue it
    lockstep_proposals: int  # iterations the vmapped ESS loops ran (each a forward pass of all C chains on S)
    seconds: float


def run_chains(net: Network, task: Task, key: jax.Array, init, *, n_keep: int, thin: int = 1,
               burn_in: int = 0, keep_per_call: int | None = None,
               runner: ChainRunner | None = None) -> ChainRun:
    """Run C chains: burn_in steps discarded, then n_keep samples per chain, one every thin steps,
    in device calls of keep_per_call samples (must divide n_keep; default gcd(n_keep, 64)).

    init: theta_CxD (each row must fit S) or a previous ChainRun, which is continued from its final
    state and step: run(key, n_keep=a) then run(key, that, n_keep=b) equals run(key, n_keep=a+b).
    runner: reuse a compiled make_chain_runner(...) (must match thin and keep_per_call)."""
    if runner is None:
        runner = make_chain_runner(net, task, keep_per_call or math.gcd(n_keep, 64), thin)
    if runner.thin != thin or (keep_per_call is not None and runner.keep_per_call != keep_per_call):
        raise ValueError(f"runner has thin={runner.thin}, keep_per_call={runner.keep_per_call}; "
                         f"asked for thin={thin}, keep_per_call={keep_per_call}")
    K = runner.keep_per_call
    if n_keep < 1 or n_keep % K:
        raise ValueError(f"n_keep={n_keep} must be a positive multiple of keep_per_call={K}")
    if isinstance(init, ChainRun):
        u_CxD, step = jnp.asarray(init.u_CxD), init.next_step
        # the ESS step has no cap: from a state outside the set it need not end (study/ess.py)
        check_fits(net, task, np.asarray(u_CxD * net.prior_std_D))
    else:
        check_fits(net, task, init)
        u_CxD, step = jnp.asarray(init) / net.prior_std_D, 0

    start = time.perf_counter()
    lockstep = 0
    if burn_in > 0:
        u_CxD, burn_lockstep = runner.burn(key, u_CxD, step, burn_in)
        lockstep, step = int(burn_lockstep), step + burn_in

    n_test = len(task.test_idx)
    counts: Counter[str] = Counter()
    pieces: dict[str, list[np.ndarray]] = {}

    def absorb(kept):
        nonlocal lockstep
        kept = jax.device_get(kept)
        words = kept.pop("words")
        pieces.setdefault("words", []).append(words)
        counts.update(count_functions(words, n_test))
        lockstep += int(kept.pop("lockstep_proposals").sum())
        probe = kept.pop("probe")
        for i in range(probe.shape[-1]):
            pieces.setdefault(f"out_E{i}", []).append(probe[..., i])
        for name, value in kept.items():
            pieces.setdefault(name, []).append(value)

    pending = None
    for _ in range(n_keep // K):
        u_CxD, kept = runner(key, u_CxD, step)  # dispatched asynchronously...
        step += runner.steps_per_call
        if pending is not None:
            absorb(pending)  # ...while the host counts the previous call's functions
        pending = kept
    absorb(pending)

    u_CxD = np.asarray(u_CxD)
    traces = {name: np.concatenate(parts, axis=1) for name, parts in pieces.items()}
    return ChainRun(
        counts=dict(counts), words_CxNxW=traces.pop("words"), traces=traces,
        u_CxD=u_CxD, theta_CxD=np.asarray(u_CxD * np.asarray(net.prior_std_D)),
        next_step=step,
        lockstep_proposals=lockstep, seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------------------------
# Convergence diagnostics
# ---------------------------------------------------------------------------------------------

def diagnostics(traces: dict[str, np.ndarray], threshold: float = RHAT_THRESHOLD) -> pd.DataFrame:
    """One row per traced summary (study.diagnostics.chain_diagnostics: rank-normalised split
    R-hat, bulk and tail ESS by ArviZ, mean, sd). Warns (ConvergenceWarning) naming each summary
    whose R-hat exceeds threshold. A summary constant across every chain has R-hat NaN (0/0): no
    warning; chains stuck at different constants have a huge R-hat and an ESS near the chain count."""
    table = chain_diagnostics(traces)
    for r in table[table["r_hat"] > threshold].itertuples():
        warnings.warn(f"MCMC summary {r.summary!r} has rank-normalised split R-hat {r.r_hat:.4g} > {threshold}: "
                      "the chains have not mixed", ConvergenceWarning, stacklevel=2)
    return table


def function_indicators(words_CxNxW: np.ndarray, n_test: int, top: int) -> dict[str, np.ndarray]:
    """Indicator traces (C, N) of the `top` most frequent functions of a chain population,
    named "f=<hex>": a function-level mixing diagnostic (a chain stuck on its own function shows
    here even when the traced scalar summaries look mixed)."""
    C, N, W = words_CxNxW.shape
    unique_UxW, inverse, counts_U = np.unique(words_CxNxW.reshape(-1, W), axis=0, return_inverse=True,
                                              return_counts=True)
    inverse = inverse.reshape(C, N)
    order = np.argsort(-counts_U, kind="stable")[:top]
    names = words_to_hex(unique_UxW[order], n_test)
    return {f"f={name}": (inverse == u).astype(np.float64) for name, u in zip(names, order)}
