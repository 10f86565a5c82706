"""Exact samples of the NNGP's Gaussian truncated to the training signs: z ~ N(0, K) over S then E,
restricted to sign z_S = t_S; the frequencies of sign z_E estimate P_B(f|S) in function space
with no approximation of the posterior (the check on EP, `study.nngp`).

* rejection: prior draws in batches, kept when their signs on S are right (exact; only while P(S)
  is not tiny);
* elliptical slice sampling (ESS): vmapped chains, exact in the limit for any P(S).

Both run in jax with the population (draws or chains) first, on the Cholesky factor of the same
jittered correlation matrix EP uses.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import cholesky

from study.encoding import count_functions, fits, pack_signs
from study.nngp import as_signs, correlation


def _cholesky(K_NxN: np.ndarray, jitter: float) -> jnp.ndarray:
    """Lower Cholesky factor (float64 on the host, then float32) of the same jittered
    correlation matrix EP uses: signs are all we record, and they do not see the scale of K."""
    return jnp.asarray(cholesky(correlation(K_NxN, jitter), lower=True), jnp.float32)


@partial(jax.jit, static_argnames=("batch",))
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

    def consume(fit_P, words_PxW):
        nonlocal accepted
        fit = np.asarray(fit_P)
        accepted += int(fit.sum())
        counts.update(count_functions(np.asarray(words_PxW)[fit], n_E))

    for b in range(n_batches):
        pending.append(_rejection_batch(jax.random.fold_in(key, b), L_NxN, y_pos_S, batch))
        if len(pending) >= in_flight:
            consume(*pending.pop(0))
    for result in pending:
        consume(*result)
    return {"draws": n_batches * batch, "accepted": accepted, "counts": dict(counts),
            "seconds": time.perf_counter() - start}


def _feasible(z_PxN, y_pos_S):
    """Are the signs of z on S (its first m coordinates) y_S? Any leading batch shape."""
    return fits(z_PxN[..., : y_pos_S.shape[0]], y_pos_S)


def _ess_step(key, z_N, L_NxN, y_pos_S, max_shrinks: int = 200):
    """One elliptical slice sampling transition (Murray, Adams & MacKay 2010) for N(0, K)
    times the indicator of {sign z_S = y_S}.

    With a 0/1 likelihood the slice height log u + log L(z) = log u < 0 is exceeded exactly by
    the feasible points, so the slice test is just feasibility and u need not be drawn. The
    bracket shrinks towards theta = 0 (the current, feasible point), so the loop ends; the cap
    only guards against a current point sitting exactly on a boundary, in which case we stay and
    say so: returns (z, proposals, stayed), stayed True when the cap ended the step (the chain
    did not move; ess_function_counts counts these as cap_hits)."""
    k_nu, k_theta, k_shrink = jax.random.split(key, 3)
    nu_N = L_NxN @ jax.random.normal(k_nu, z_N.shape)
    theta = jax.random.uniform(k_theta, maxval=2 * jnp.pi)

    def propose(theta):
        return z_N * jnp.cos(theta) + nu_N * jnp.sin(theta)

    def not_done(state):
        theta, _, _, i = state
        return ~_feasible(propose(theta), y_pos_S) & (i < max_shrinks)

    def shrink(state):
        theta, lo, hi, i = state
        lo, hi = jnp.where(theta < 0, theta, lo), jnp.where(theta < 0, hi, theta)
        return jax.random.uniform(jax.random.fold_in(k_shrink, i), minval=lo, maxval=hi), lo, hi, i + 1

    theta, _, _, n_shrinks = jax.lax.while_loop(not_done, shrink, (theta, theta - 2 * jnp.pi, theta, jnp.int32(0)))
    z_new = propose(theta)
    ok = _feasible(z_new, y_pos_S)
    return jnp.where(ok, z_new, z_N), n_shrinks, ~ok


def _step_key(key, t, c):
    """Key of global step t (burn-in included) of chain c: the numbers a chain draws do not
    depend on the number of chains or on how the run is cut into device calls."""
    return jax.random.fold_in(jax.random.fold_in(key, t), c)


@jax.jit
def _ess_advance(key, z_CxN, L_NxN, y_pos_S, n_steps):
    """Steps 0 .. n_steps-1 of every chain, nothing recorded (burn-in); also the number of
    transitions per chain that the shrink cap ended."""
    def chain(c, z_N):
        def step(t, carry):
            z, stayed = carry
            z, _, capped = _ess_step(_step_key(key, t, c), z, L_NxN, y_pos_S)
            return z, stayed + capped
        return jax.lax.fori_loop(0, n_steps, step, (z_N, jnp.int32(0)))
    return jax.vmap(chain)(jnp.arange(z_CxN.shape[0]), z_CxN)


@partial(jax.jit, static_argnames=("n_kept", "thin"))
def _ess_segment(key, t0, z_CxN, L_NxN, y_pos_S, n_kept: int, thin: int):
    """Steps t0 .. t0 + n_kept * thin - 1 of every chain, recording each thin-th state's function
    on E (packed words) and two scalar traces for diagnostics."""
    m = y_pos_S.shape[0]

    def chain(c, z_N):
        def kept(z_N, k):
            def step(j, carry):
                z, shrinks, stayed = carry
                z, n, capped = _ess_step(_step_key(key, t0 + k * thin + j, c), z, L_NxN, y_pos_S)
                return z, shrinks + n, stayed + capped
            z_N, shrinks, stayed = jax.lax.fori_loop(0, thin, step, (z_N, jnp.int32(0), jnp.int32(0)))
            z_E = z_N[m:]
            return z_N, (pack_signs(z_E[None])[0], z_E.mean(), (z_E > 0).mean(), shrinks, stayed)
        return jax.lax.scan(kept, z_N, jnp.arange(n_kept))

    return jax.vmap(chain)(jnp.arange(z_CxN.shape[0]), z_CxN)


@partial(jax.jit, static_argnames=("n_chains",))
def _orthant_start(key, L_NxN, y_pos_S, n_chains: int):
    """Feasible starting points: prior draws (chain c from fold_in(key, c)) with |z_S| given the
    signs y_S. Not draws from the target (burn-in removes them), but spread over the orthant."""
    m = y_pos_S.shape[0]

    def start(c):
        z_N = L_NxN @ jax.random.normal(jax.random.fold_in(key, c), (L_NxN.shape[0],))
        return z_N.at[:m].set(jnp.where(y_pos_S, 1.0, -1.0) * jnp.abs(z_N[:m]))

    return jax.vmap(start)(jnp.arange(n_chains))


@dataclass(frozen=True)
class ESSResult:
    counts: dict[str, int]  # function on E (hex) -> number of kept samples, all chains together
    n_kept: int  # kept samples per chain
    zE_mean_CxT: np.ndarray  # mean of z / sqrt(diag K) over E, per chain and kept sample, for R-hat
    fE_frac_CxT: np.ndarray  # fraction of E with positive output, per chain and kept sample
    mean_shrinks: float  # bracket shrinks per transition: the cost of one ESS step
    cap_hits: int  # transitions (burn-in included) that the shrink cap ended without a move; 0 normally
    words_CxTxW: np.ndarray | None  # packed functions on E per chain and kept sample, if asked
    seconds: float


def ess_function_counts(key: jax.Array, K_full, y_S, n_chains: int, n_steps: int, burn_in: int,
                        thin: int = 1, init=None, jitter: float = 1e-6, kept_per_segment: int = 256,
                        return_words: bool = False) -> ESSResult:
    """P_B(f|S) counts by elliptical slice sampling of z ~ N(0, K) restricted to sign z_S = y_S.

    Each of n_chains chains (vmapped) makes burn_in transitions, then n_steps more of which every
    thin-th is kept (n_steps // thin per chain). ESS is exact for a Gaussian prior times an
    indicator likelihood and needs no tuning or gradients. `init` (n_chains, N) must satisfy the
    constraint; by default chains start from prior draws folded into the orthant. Step t of chain
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
    if not bool(_feasible(z_CxN, y_pos_S).all()):
        raise ValueError("initial states must have sign z_S = y_S in every chain (z > 0 is positive)")
    z_CxN, burn_cap_hits_C = _ess_advance(k_steps, z_CxN, L_NxN, y_pos_S, burn_in)

    n_kept = n_steps // thin
    if n_kept < 1:
        raise ValueError(f"n_steps={n_steps} with thin={thin} keeps no samples")
    seg = min(n_kept, kept_per_segment)
    outputs = []
    for j in range(-(-n_kept // seg)):
        t0 = burn_in + j * seg * thin
        z_CxN, out = _ess_segment(k_steps, t0, z_CxN, L_NxN, y_pos_S, seg, thin)
        outputs.append(jax.device_get(out))
    words_CxTxW, zE_mean_CxT, fE_frac_CxT, shrinks_CxT, stayed_CxT = (
        np.concatenate([out[i] for out in outputs], axis=1)[:, :n_kept] for i in range(5))
    return ESSResult(
        counts=dict(count_functions(words_CxTxW, n_E)), n_kept=n_kept,
        zE_mean_CxT=zE_mean_CxT, fE_frac_CxT=fE_frac_CxT, mean_shrinks=float(shrinks_CxT.mean() / thin),
        cap_hits=int(np.asarray(burn_cap_hits_C).sum() + stayed_CxT.sum()),
        words_CxTxW=words_CxTxW if return_words else None, seconds=time.perf_counter() - start,
    )
