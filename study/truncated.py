"""Exact samples of the NNGP's Gaussian truncated to the training signs: z ~ N(0, K) over S then E,
restricted to sign z_S = t_S; the frequencies of sign z_E estimate P_B(f|S) in function space
with no approximation of the posterior (the check on EP, `study.nngp`).

* rejection: prior draws in batches, kept when their signs on S are right (exact; only while P(S)
  is not tiny);
* elliptical slice sampling (ESS): vmapped chains, exact in the limit for any P(S); the
  transition is study/ess.py's (blackjax's), the one the parameter-space chains use.

Both run in jax with the population (draws or chains) first, on the Cholesky factor of the same
jittered correlation matrix EP uses, split over the local devices (`devices.over_population`:
batches one per device, chains in one contiguous block per device).
"""
from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import cholesky

from study import ess
from study.devices import SHARED, SPLIT, batch_keys, dividing_devices, over_population, per_key
from study.encoding import count_functions, fits, pack_signs
from study.nngp import as_signs, correlation


def _cholesky(K_NxN: np.ndarray, jitter: float) -> jnp.ndarray:
    """Lower Cholesky factor (float64 on the host, then float32) of the same jittered
    correlation matrix EP uses: signs are all we record, and they do not see the scale of K."""
    return jnp.asarray(cholesky(correlation(K_NxN, jitter), lower=True), jnp.float32)


@functools.cache
def _rejection_batches(batch: int, n_devices: int):
    """(keys of n_devices batches, L_NxN, y_pos_S) -> their (fit, words), one batch per device."""
    return per_key(partial(_rejection_batch, batch=batch), n_devices, 2)


def _rejection_batch(key, L_NxN, y_pos_S, batch: int):
    """One batch of prior draws z_PxN = eps L^T: which fit S, and their packed signs on E."""
    m = y_pos_S.shape[0]
    z_PxN = jax.random.normal(key, (batch, L_NxN.shape[0])) @ L_NxN.T
    return _feasible(z_PxN, y_pos_S), pack_signs(z_PxN[:, m:])


def rejection_function_counts(key: jax.Array, K_full, y_S, n_draws: int, batch: int = 4096,
                              jitter: float = 1e-6, in_flight: int = 8) -> dict:
    """Exact P_B(f|S) counts by rejection: draw z ~ N(0, K) in batches (key fold_in(key, b)),
    keep the draws whose signs on S equal y_S, count their functions on E.

    ceil(n_draws / batch) whole batches are drawn; at most `in_flight` batches are held at once,
    so memory does not grow with n_draws. Returns draws, accepted, counts (hex -> int), seconds,
    with the same keys as study.rejection.sample_chunk."""
    start = time.perf_counter()
    L_NxN = _cholesky(K_full, jitter)
    y_pos_S = jnp.asarray(as_signs(y_S) > 0)
    n_E = len(K_full) - len(y_pos_S)
    n_batches = -(-n_draws // batch)
    counts: Counter[str] = Counter()
    accepted = 0
    pending = []

    def consume(fit_dxP, words_dxPxW):
        nonlocal accepted
        fit = np.asarray(fit_dxP)
        accepted += int(fit.sum())
        counts.update(count_functions(np.asarray(words_dxPxW)[fit], n_E))

    d = dividing_devices(n_batches)
    batches = _rejection_batches(batch, d)
    for b in range(0, n_batches, d):
        pending.append(batches(batch_keys(key, b, d), L_NxN, y_pos_S))
        if len(pending) * d >= in_flight:
            consume(*pending.pop(0))
    for result in pending:
        consume(*result)
    return {"draws": n_batches * batch, "accepted": accepted, "counts": dict(counts),
            "seconds": time.perf_counter() - start}


def _feasible(z_PxN, y_pos_S):
    """Are the signs of z on S (its first m coordinates) y_S? Any leading batch shape."""
    return fits(z_PxN[..., : y_pos_S.shape[0]], y_pos_S)


def _ess_transition(L_NxN, y_pos_S):
    """The study's ESS transition (study/ess.py, blackjax's) for N(0, K) restricted to
    {sign z_S = y_S}: step(key, z_N) -> (z_N, proposals). The chain moves z itself, with
    nu = L eps ~ N(0, K), so the constraint is a sign test on coordinates of the proposal: the
    current state's test can never come out differently when the shrinking bracket reproduces it,
    which is what ends every transition from a feasible state (no cap is needed)."""
    return ess.indicator_step(lambda z_N: _feasible(z_N, y_pos_S),
                              lambda key, z_N: L_NxN @ jax.random.normal(key, z_N.shape, z_N.dtype))


def _step_key(key, t, c):
    """Key of global step t (burn-in included) of chain c: the numbers a chain draws do not
    depend on the number of chains or on how the run is cut into device calls."""
    return jax.random.fold_in(jax.random.fold_in(key, t), c)


def _ess_advance(first, key, z_CxN, L_NxN, y_pos_S, n_steps):
    """Steps 0 .. n_steps-1 of every chain, nothing recorded (burn-in)."""
    step = _ess_transition(L_NxN, y_pos_S)

    def chain(c, z_N):
        return jax.lax.fori_loop(0, n_steps, lambda t, z: step(_step_key(key, t, c), z)[0], z_N)
    return jax.vmap(chain)(first + jnp.arange(z_CxN.shape[0]), z_CxN)


@functools.cache
def _spread_advance(n_chains: int):
    """_ess_advance with the chains split over the local devices (the first of a device's
    chains is its `first`)."""
    d = dividing_devices(n_chains)
    return over_population(_ess_advance, d, (SHARED, SPLIT, SHARED, SHARED, SHARED), SPLIT, block=n_chains // d)


@functools.cache
def _spread_segment(n_chains: int, n_kept: int, thin: int):
    d = dividing_devices(n_chains)
    return over_population(partial(_ess_segment, n_kept=n_kept, thin=thin), d,
                           (SHARED, SHARED, SPLIT, SHARED, SHARED), SPLIT, block=n_chains // d)


def _ess_segment(first, key, t0, z_CxN, L_NxN, y_pos_S, n_kept: int, thin: int):
    """Steps t0 .. t0 + n_kept * thin - 1 of every chain, recording each thin-th state's function
    on E (packed words), two scalar traces for diagnostics and the bracket shrinks (proposals
    after the first) of the thin steps."""
    m = y_pos_S.shape[0]
    step = _ess_transition(L_NxN, y_pos_S)

    def chain(c, z_N):
        def kept(z_N, k):
            def one(j, carry):
                z, shrinks = carry
                z, proposals = step(_step_key(key, t0 + k * thin + j, c), z)
                return z, shrinks + proposals - 1
            z_N, shrinks = jax.lax.fori_loop(0, thin, one, (z_N, jnp.int32(0)))
            z_E = z_N[m:]
            return z_N, (pack_signs(z_E[None])[0], z_E.mean(), (z_E > 0).mean(), shrinks)
        return jax.lax.scan(kept, z_N, jnp.arange(n_kept))

    return jax.vmap(chain)(first + jnp.arange(z_CxN.shape[0]), z_CxN)


@partial(jax.jit, static_argnames=("n_chains",))
def _orthant_start(key, L_NxN, y_pos_S, n_chains: int):
    """Feasible starting points: prior draws (chain c from fold_in(key, c)) with |z_S| given the
    signs y_S. Not draws from the target (burn-in removes them), but spread over the orthant.
    Feasible by construction: a positive label gets at least the smallest normal float, never 0."""
    m = y_pos_S.shape[0]

    def start(c):
        z_N = L_NxN @ jax.random.normal(jax.random.fold_in(key, c), (L_NxN.shape[0],))
        abs_S = jnp.abs(z_N[:m])
        return z_N.at[:m].set(jnp.where(y_pos_S, jnp.maximum(abs_S, jnp.finfo(z_N.dtype).tiny), -abs_S))

    return jax.vmap(start)(jnp.arange(n_chains))


@dataclass(frozen=True)
class ESSResult:
    counts: dict[str, int]  # function on E (hex) -> number of kept samples, all chains together
    n_kept: int  # kept samples per chain
    zE_mean_CxT: np.ndarray  # mean of z / sqrt(diag K) over E, per chain and kept sample, for R-hat
    fE_frac_CxT: np.ndarray  # fraction of E with positive output, per chain and kept sample
    mean_shrinks: float  # bracket shrinks per transition after burn-in (blackjax's subiter - 1): a step's cost
    words_CxTxW: np.ndarray | None  # packed functions on E per chain and kept sample, if asked
    seconds: float


def ess_function_counts(key: jax.Array, K_full, y_S, n_chains: int, n_steps: int, burn_in: int,
                        thin: int = 1, init=None, jitter: float = 1e-6, kept_per_segment: int = 256,
                        return_words: bool = False) -> ESSResult:
    """P_B(f|S) counts by elliptical slice sampling of z ~ N(0, K) restricted to sign z_S = y_S.

    Each of n_chains chains (vmapped) makes burn_in transitions, then n_steps more of which every
    thin-th is kept (n_steps // thin per chain); each is the study's one ESS transition
    (study/ess.py), exact for a Gaussian prior times an indicator likelihood. `init` (n_chains, N)
    must satisfy the constraint; by default chains start from prior draws folded into the orthant. Step t of chain
    c draws from fold_in(fold_in(k, t), c), k from `key`. Kept samples are produced in segments
    of `kept_per_segment`, so device memory is bounded; the last segment runs whole and is
    truncated, keeping one compilation. Chain c's samples do not depend on n_chains or on
    kept_per_segment."""
    start = time.perf_counter()
    L_NxN = _cholesky(K_full, jitter)
    y_pos_S = jnp.asarray(as_signs(y_S) > 0)
    n_E = len(K_full) - len(y_pos_S)
    k_init, k_steps = jax.random.split(key)
    if init is None:
        z_CxN = _orthant_start(k_init, L_NxN, y_pos_S, n_chains)
    else:
        z_CxN = jnp.asarray(init, jnp.float32)
        if z_CxN.shape != (n_chains, len(K_full)):
            raise ValueError(f"init has shape {z_CxN.shape}; expected {(n_chains, len(K_full))}")
    # The chains' own feasibility test, exact (signs of coordinates): a state that passes it here
    # passes it inside every transition, so every transition ends (study/ess.py).
    if not bool(_feasible(z_CxN, y_pos_S).all()):
        raise ValueError("initial states must have sign z_S = y_S in every chain (z > 0 is positive)")
    z_CxN = _spread_advance(n_chains)(k_steps, z_CxN, L_NxN, y_pos_S, jnp.int32(burn_in))

    n_kept = n_steps // thin
    if n_kept < 1:
        raise ValueError(f"n_steps={n_steps} with thin={thin} keeps no samples")
    seg = min(n_kept, kept_per_segment)
    outputs = []
    for j in range(-(-n_kept // seg)):
        t0 = burn_in + j * seg * thin
        z_CxN, out = _spread_segment(n_chains, seg, thin)(k_steps, jnp.int32(t0), z_CxN, L_NxN, y_pos_S)
        outputs.append(jax.device_get(out))
    words_CxTxW, zE_mean_CxT, fE_frac_CxT, shrinks_CxT = (
        np.concatenate([out[i] for out in outputs], axis=1)[:, :n_kept] for i in range(4))
    return ESSResult(
        counts=dict(count_functions(words_CxTxW, n_E)), n_kept=n_kept,
        zE_mean_CxT=zE_mean_CxT, fE_frac_CxT=fE_frac_CxT, mean_shrinks=float(shrinks_CxT.mean() / thin),
        words_CxTxW=words_CxTxW if return_words else None, seconds=time.perf_counter() - start,
    )
