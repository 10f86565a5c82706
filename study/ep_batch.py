"""Expectation propagation for many sign patterns on one kernel at once: log P_B(f|S) of every
function f on E in a few batched calls (JAX, float64).

The same EP as `study.nngp` (step sites, Rasmussen & Williams 3.6 without probit noise) and the
same fixed point, but swept in parallel (every site updated from one posterior, damped) so that
a sweep is one batched Cholesky factorisation per function, vmapped over F functions and jitted
once. `study.nngp`'s sequential sweep touches one site at a time and cannot batch; it stays the
reference these results are tested against (tests/test_ep_batch.py).

Every function ends with a status, as in `nngp.ep_log_pb_many`: "converged", "not_converged"
(sites still moving after `max_sweeps`) or "numerical_error" (an improper cavity or a log Z that
is not finite). A failed function has log P_B = NaN: unknown, never zero.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import log_ndtr
from tqdm.auto import tqdm

from study import nngp

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)
STATUS = np.array(["converged", "not_converged", "numerical_error"])
# Sweeps stop when no site parameter moves by more than TOL (relative, or absolute below 1). log Z is
# stationary at EP's fixed point, so it settles long before the sites do: measured on 1,024
# functions at m = 32, |E| = 96 (the "0011" target's labels with 0-30% flipped), log P_B at TOL
# differs from the fixed point (tol 1e-8) by at most 3.5e-6 nats (1e-4: 8.6e-8) in 12 sweeps instead
# of 23 at 1e-6 (tests/test_ep_batch.py checks 1e-4 nats).
TOL = 1e-3


def _truncation_ratios(u):
    """r = phi(u)/Phi(u), u + r, 1 - r(u + r), 1 + u(u + r): `nngp._truncation_ratios` in jnp
    (closed forms above nngp._STABLE_BELOW, the Mills ratio's continued fraction below)."""
    r = jnp.exp(-0.5 * u**2 - _LOG_SQRT_2PI - log_ndtr(u))
    u_plus_r = jnp.maximum(u + r, 0.0)
    shrink, w = 1.0 - r * u_plus_r, 1.0 + u * u_plus_r
    a = jnp.maximum(-u, -nngp._STABLE_BELOW)
    T = 0.5 * (a + jnp.sqrt(a * a + 4.0 * (nngp._CF_DEPTH + 1)))
    for k in range(nngp._CF_DEPTH, 2, -1):
        T = a + k / T
    T3, T2 = T, a + 2.0 / T
    tail = u < nngp._STABLE_BELOW
    return (jnp.where(tail, a + 1.0 / T2, r), jnp.where(tail, 1.0 / T2, u_plus_r),
            jnp.where(tail, (2.0 / T3 - 1.0 / T2) / T2, shrink), jnp.where(tail, 2.0 / (T2 * T3), w))


def _tilted_sites(s, mu_cav, var_cav, b=0.0):
    """Site (tau, nu) matching the moments of N(mu_cav, var_cav) 1[s (z + b) > 0] (`nngp._tilted_sites`
    at b = 0). A prior N(b, C) is run as z' = z - b ~ N(0, C) with the step shifted by b: the
    tilted moments of y = z' + b are the unshifted ones at mu_cav + b, and moving the matched mean
    back by b changes nu by -b tau."""
    sd = jnp.sqrt(var_cav)
    r, u_plus_r, shrink, w = _truncation_ratios(s * (mu_cav + b) / sd)
    shrink = jnp.maximum(shrink, 1e-300)
    tau = r * u_plus_r / (var_cav * shrink)
    return tau, s * r * w / (sd * shrink) - b * tau


def _posterior(C_NxN, tau_N, nu_N):
    """diag(Sigma), mu = Sigma nu and the Cholesky factor of B = I + T^1/2 C T^1/2 for one function."""
    sq_N = jnp.sqrt(tau_N)
    L_B = jnp.linalg.cholesky(jnp.eye(len(tau_N)) + sq_N[:, None] * C_NxN * sq_N[None, :])
    V_NxN = solve_triangular(L_B, sq_N[:, None] * C_NxN, lower=True)
    diag_N = jnp.diag(C_NxN) - jnp.sum(V_NxN**2, axis=0)
    mu_N = C_NxN @ nu_N - V_NxN.T @ (V_NxN @ nu_N)
    return diag_N, mu_N, L_B


def _cavity(diag_N, mu_N, tau_N, nu_N):
    var_cav_N = 1.0 / (1.0 / diag_N - tau_N)
    return var_cav_N * (mu_N / diag_N - nu_N), var_cav_N


def _fit_one(C_NxN, s_N, b_N, tau0_N, nu0_N, damping, tol, max_sweeps):
    """Damped parallel EP from (tau0, nu0) for one sign pattern s of z ~ N(b, C); returns
    log P(s z > 0), sweeps, status code."""

    def sweep(carry):
        tau_N, nu_N, _, k, _ = carry
        diag_N, mu_N, _ = _posterior(C_NxN, tau_N, nu_N)
        mu_cav, var_cav = _cavity(diag_N, mu_N, tau_N, nu_N)
        proper = jnp.all((var_cav > 0) & (jnp.abs(mu_cav) < jnp.inf))
        tau_new, nu_new = _tilted_sites(s_N, mu_cav, var_cav, b_N)
        tau_new = jnp.maximum((1 - damping) * tau_N + damping * tau_new, 1e-300)
        nu_new = (1 - damping) * nu_N + damping * nu_new
        change = jnp.maximum(jnp.max(jnp.abs(tau_new - tau_N) / jnp.maximum(1.0, jnp.abs(tau_new))),
                             jnp.max(jnp.abs(nu_new - nu_N) / jnp.maximum(1.0, jnp.abs(nu_new))))
        return tau_new, nu_new, change, k + 1, ~proper

    def moving(carry):
        _, _, change, k, broken = carry
        return (change >= tol) & (k < max_sweeps) & ~broken

    init = (tau0_N, nu0_N, jnp.inf, 0, False)
    tau_N, nu_N, change, sweeps, broken = jax.lax.while_loop(moving, sweep, init)
    diag_N, mu_N, L_B = _posterior(C_NxN, tau_N, nu_N)
    mu_cav, var_cav = _cavity(diag_N, mu_N, tau_N, nu_N)
    log_Z = (log_ndtr(s_N * (mu_cav + b_N) / jnp.sqrt(var_cav)).sum()
             + 0.5 * jnp.log1p(tau_N * var_cav).sum() - jnp.log(jnp.diag(L_B)).sum()
             - 0.5 * jnp.sum(solve_triangular(L_B, nu_N / jnp.sqrt(tau_N), lower=True) ** 2)
             + ((tau_N * mu_cav - nu_N) ** 2 / (2 * tau_N * (1 + tau_N * var_cav))).sum())
    broken = broken | ~jnp.isfinite(log_Z) | ~jnp.all(var_cav > 0)
    status = jnp.where(broken, 2, jnp.where(change < tol, 0, 1))
    return jnp.where(status == 0, log_Z, jnp.nan), sweeps, status


_fit_many = jax.jit(jax.vmap(_fit_one, in_axes=(None, 0, None, 0, 0, None, None, None)))


def ep_log_pb_batched(K_full, y_S_signs, functions_E, jitter: float = 1e-6, *, damping: float = 0.8,
                      tol: float = TOL, max_sweeps: int = 500, batch: int = 64, retry: bool = True,
                      progress: bool = False) -> nngp.EPScores:
    """log P_B(f|S) for many functions f on E (hex strings or a bool array (F, |E|)), batched.

    One sequential EP on S (`study.nngp`, raising if it fails: without P(S) nothing can be
    scored) gives log P(S) and the warm start of the S sites; then, `batch` functions at a time,
    damped parallel EP on S + E from those sites (the E sites flat). With `retry`, functions still
    moving after `max_sweeps` get one more try at half the damping and four times the sweeps
    (damped parallel EP converges more slowly but more surely: measured at m = 32, |E| = 96 and
    tol 1e-6, damping 0.8 takes 30 sweeps on average, 0.5 takes 58, undamped fails for some
    functions; at TOL, 0.8 takes 12 and 0.9 up to 45). A batch runs until its slowest function
    settles: 64 functions were fastest at N = 20 to 128 (N = 128: 2.4 ms per function against 2.9
    at 128 and 2.2 at 32; N = 20: 0.044 against 0.061 at 32).
    `progress`: a progress bar over the batches. Returns `nngp.EPScores`."""
    y_S, f_FxE, C, (log_S, tau_S, nu_S) = _fit_on_S(K_full, y_S_signs, functions_E, jitter)
    m, n_E = len(y_S), f_FxE.shape[1]
    site0 = (np.maximum(np.concatenate([tau_S, np.zeros(n_E)]), 1e-300), np.concatenate([nu_S, np.zeros(n_E)]))
    s_FxN = np.concatenate([np.broadcast_to(y_S, (len(f_FxE), m)), np.where(f_FxE, 1.0, -1.0)], axis=1)
    scores = _fit_with_retry(C, np.zeros(m + n_E), s_FxN, site0, damping, tol, max_sweeps, batch, retry, progress)
    return nngp.EPScores(log_pb=scores.log_pb - log_S, status=scores.status, sweeps=scores.sweeps)


def ep_log_pb_predictive(K_full, y_S_signs, functions_E, jitter: float = 1e-6, *, damping: float = 0.8,
                         tol: float = TOL, max_sweeps: int = 500, batch: int = 64, retry: bool = True,
                         progress: bool = False) -> nngp.EPScores:
    """log P_B(f|S) approximated as EP on S alone, then the Gaussian predictive on E: EP's
    Gaussian N(mu_S, Sigma_S) in place of the truncated posterior of z_S gives z_E | S ~
    N(mean_E, cov_E) (Rasmussen & Williams, Algorithm 3.6, with every input of E a test point),
    and log P(sign z_E = f) under it comes from batched EP in |E| dimensions with the prior mean
    shifted. One EP in m dimensions for all functions instead of one in m + |E| per function, so
    it scales to image tasks with m in the thousands; what it costs in accuracy against the ratio
    of normalisers (`ep_log_pb_batched`) is measured (tests/test_ep_batch.py, the nngp stage).
    Same arguments and statuses as `ep_log_pb_batched`; raises nngp.EPFailed if EP on S fails."""
    _, f_FxE, C, (_, tau_S, nu_S) = _fit_on_S(K_full, y_S_signs, functions_E, jitter)
    n_E = f_FxE.shape[1]
    mean_E, cov_E = nngp.gaussian_predictive(C, tau_S, nu_S)
    # orthant probabilities do not change under rescaling each coordinate: unit predictive variances
    d_E = np.sqrt(np.diag(cov_E))
    C_E = nngp.correlation(cov_E, jitter)
    s_FxE = np.where(f_FxE, 1.0, -1.0)
    site0 = (np.full(n_E, 1e-300), np.zeros(n_E))
    return _fit_with_retry(C_E, mean_E / d_E, s_FxE, site0, damping, tol, max_sweeps, batch, retry, progress)


def _fit_on_S(K_full, y_S_signs, functions_E, jitter):
    """What both EP methods start from: the signs of S, the functions' bits (F, |E|), the jittered
    correlation matrix and the sequential EP on S alone, (log P(S), tau_S, nu_S), at the sequential
    sweep's own tight tolerance: it is run once, and log P(S) enters every function's log P_B."""
    y_S = nngp.as_signs(y_S_signs)
    f_FxE = nngp.function_bits(functions_E, len(K_full) - len(y_S))
    C = nngp.correlation(K_full, jitter)
    return y_S, f_FxE, C, nngp.fit_training_sites(C[:len(y_S), :len(y_S)], y_S)


def _fit_with_retry(C_NxN, b_N, s_FxN, site0, damping, tol, max_sweeps, batch, retry, progress) -> nngp.EPScores:
    """log P(s z > 0), z ~ N(b, C), for every row s, with one retry of the functions still moving
    (half the damping, four times the sweeps)."""
    log_z, sweeps, status = _fit_batches(C_NxN, b_N, s_FxN, site0, damping, tol, max_sweeps, batch, progress)
    again = np.flatnonzero(status == 1)
    if retry and len(again):
        log_z[again], sweeps[again], status[again] = _fit_batches(
            C_NxN, b_N, s_FxN[again], site0, damping / 2, tol, 4 * max_sweeps, batch, progress)
    sweeps[status != 0] = 0
    return nngp.EPScores(log_pb=log_z, status=STATUS[status].astype("<U15"), sweeps=sweeps)


def _fit_batches(C_NxN, b_N, s_FxN, site0, damping, tol, max_sweeps, batch, progress=False):
    """`_fit_many` over `batch` rows of s at a time (a short last batch padded with copies of its
    first row, so that every call has one compiled shape); returns numpy log Z, sweeps, status.
    On one device: split over two CPU devices it was slower (measured 19 against 16 ms per
    function at N = 128) and its last digits depended on the split."""
    F = len(s_FxN)
    log_z, sweeps, status = np.full(F, np.nan), np.zeros(F, int), np.zeros(F, int)
    size = max(1, min(batch, F))
    with enable_x64():
        C, b = jnp.asarray(C_NxN, jnp.float64), jnp.asarray(b_N, jnp.float64)
        tau0, nu0 = (jnp.asarray(np.broadcast_to(a, (size, len(a))), jnp.float64) for a in site0)
        for lo in tqdm(range(0, F, size), desc="nngp EP", unit="batch", disable=not progress):
            s = s_FxN[lo:lo + size]
            n = len(s)
            s = np.concatenate([s, np.repeat(s[:1], size - n, axis=0)])
            out = _fit_many(C, jnp.asarray(s), b, tau0, nu0, damping, tol, max_sweeps)
            log_z[lo:lo + n], sweeps[lo:lo + n], status[lo:lo + n] = (np.asarray(a)[:n] for a in out)
    return log_z, sweeps, status
