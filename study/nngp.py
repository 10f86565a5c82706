"""P_B(f|S) in function space for the infinite-width network (NNGP).

With z ~ N(0, K) over the inputs S then E (rows of K ordered S first, then E),
P_B(f|S) = P(sign z_S = t_S, sign z_E = f) / P(sign z_S = t_S): a ratio of two Gaussian orthant
probabilities. Two independent ways to get it:

* expectation propagation (EP) with step site likelihoods, the estimator Mingard et al. (2021)
  used; deterministic, cheap, but biased by an amount we measure against a numerical orthant
  probability (scipy's Genz integrator) in dimensions up to ~12;
* exact sampling of the truncated Gaussian z | sign z_S = t_S (`study.truncated`), whose
  frequencies of sign z_E estimate P_B(f|S) without any approximation of the posterior.

Signs are +-1 (a bool array is read as True = +1); a function on E is the bit string of positive
outputs, written as hex by `study.encoding`. EP runs in float64 numpy/scipy (N is at most a few
hundred).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64
from scipy.linalg import LinAlgError, cholesky, solve_triangular
from scipy.special import log_ndtr
from scipy.stats import multivariate_normal

from study.encoding import hex_to_bits
from study.network import Network

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)
_TAU_FLOOR = 1e-300  # site precisions that underflowed: the site is flat, its terms vanish


class EPFailed(RuntimeError):
    """EP gave no answer: the common base of its two ways to fail."""


class EPNotConverged(EPFailed):
    """EP site parameters still moving after max_sweeps sweeps."""


class EPNumericalError(EPFailed):
    """Rounding broke EP: an improper cavity (precision <= 0 or not finite), a posterior that
    cannot be factorised, or a log Z that is not finite."""


# ---------------------------------------------------------------------------------------------
# Kernel and sign conventions


def nngp_kernel(net: Network, x_NxI: np.ndarray) -> np.ndarray:
    """The NNGP kernel K_NxN of `net` in float64, symmetrised.

    Computed under jax x64 because near-duplicate inputs give correlations close to 1 and
    float32 would lose the small eigenvalues the orthant probabilities depend on."""
    with enable_x64():
        K_NxN = np.asarray(net.kernel_fn(jnp.asarray(x_NxI, jnp.float64), None, "nngp"), np.float64)
    return 0.5 * (K_NxN + K_NxN.T)


def as_signs(y_N) -> np.ndarray:
    """+-1 float64 signs from a bool array (True = +1) or an array of +-1."""
    y = np.asarray(y_N)
    if y.dtype == bool:
        return np.where(y, 1.0, -1.0)
    if not np.all(np.abs(y) == 1):
        raise ValueError("signs must be bool or +-1; got other values (is this a 0/1 array?)")
    return y.astype(np.float64)


def function_bits(functions, n_E: int) -> np.ndarray:
    """(F, n_E) bool from a list of hex strings (study.encoding) or a bool array (F, n_E)."""
    if isinstance(functions, np.ndarray) and functions.dtype == bool:
        if functions.ndim != 2 or functions.shape[1] != n_E:
            raise ValueError(f"function bits must have shape (F, {n_E}); got {functions.shape}")
        return functions
    return np.stack([hex_to_bits(h, n_E) for h in functions]).reshape(-1, n_E)


def correlation(K_NxN: np.ndarray, jitter: float = 1e-6) -> np.ndarray:
    """K rescaled to unit diagonal, with `jitter` added to the diagonal and renormalised.

    Orthant probabilities do not change under positive rescaling of each coordinate, so working
    with the correlation matrix loses nothing and makes `jitter` a relative quantity: it shrinks
    every correlation by the factor 1/(1+jitter), so its effect is O(jitter) on every answer."""
    K = np.asarray(K_NxN, np.float64)
    d_N = np.sqrt(np.diag(K))
    C = K / np.outer(d_N, d_N)
    return (0.5 * (C + C.T) + jitter * np.eye(len(C))) / (1 + jitter)


# ---------------------------------------------------------------------------------------------
# Expectation propagation for log P(s_i z_i > 0 for all i), z ~ N(0, C)


def _all(mask) -> bool:
    """np.all for a numpy bool or bool array, without np.all's ~1 us on scalars: the sequential
    sweep pays it for every site (and ndarray.all on a numpy bool scalar costs as much)."""
    return bool(mask) if getattr(mask, "ndim", 0) == 0 else bool(mask.all())


# Below this u = s mu_cav / sd_cav the closed forms of the truncated moments cancel (r -> -u):
# their relative error grows like u^6 eps (5e-13 at u = -4, 7e-8 at -30, 4e-2 at -300), so the
# continued fraction takes over; above it the closed forms are accurate to ~1.2e-13 (the worst,
# just above the switch).
_STABLE_BELOW = -2.5
# Depth of the continued fraction: with its tail started at the tail's own fixed point, relative
# error <= 1e-14 at u = -2.5 and at rounding level below u = -3 (tests/test_nngp.py).
_CF_DEPTH = 50


def _mills_fraction(a_N):
    """T_2 and T_3 of the continued fraction of the Gaussian Mills ratio,
    Phi(-a)/phi(a) = 1/T_1 with T_k = a + k / T_{k+1}, for a >= -_STABLE_BELOW.

    Evaluated backwards from level _CF_DEPTH + 1, where T_k is replaced by the fixed point of
    T = a + k/T (the tail changes slowly with k): every step adds positive numbers, so the
    backward recursion loses nothing to cancellation."""
    T_N = 0.5 * (a_N + np.sqrt(a_N * a_N + 4.0 * (_CF_DEPTH + 1)))
    for k in range(_CF_DEPTH, 2, -1):
        T_N = a_N + k / T_N
    return a_N + 2.0 / T_N, T_N


def _truncation_ratios(u_N):
    """r = phi(u)/Phi(u), u + r, 1 - r(u + r) and 1 + u(u + r), accurate to ~1e-13 relative for all u.

    1 - r(u + r) is the variance of a unit Gaussian truncated to z > -u and u + r its mean minus
    -u; both vanish like 1/u as u -> -inf while r ~ -u, so for u < _STABLE_BELOW they come from
    the Mills ratio's continued fraction with a = -u: r = a + 1/T_2, u + r = 1/T_2,
    1 - r(u + r) = (2/T_3 - 1/T_2)/T_2 and 1 + u(u + r) = 2/(T_2 T_3), with no subtraction of
    nearly equal numbers. The fraction runs only when some u needs it (the sequential sweep calls
    this once per site)."""
    r_N = np.exp(-0.5 * u_N**2 - _LOG_SQRT_2PI - log_ndtr(u_N))
    u_plus_r_N = np.maximum(u_N + r_N, 0.0)  # > 0 in exact arithmetic (Mills ratio bound)
    shrink_N = 1.0 - r_N * u_plus_r_N
    w_N = 1.0 + u_N * u_plus_r_N
    if _all(u_N >= _STABLE_BELOW):
        return r_N, u_plus_r_N, shrink_N, w_N
    tail_N = u_N < _STABLE_BELOW
    a_N = np.maximum(-u_N, -_STABLE_BELOW)  # the fraction is only read where u < _STABLE_BELOW
    T2_N, T3_N = _mills_fraction(a_N)
    r_N = np.where(tail_N, a_N + 1.0 / T2_N, r_N)
    u_plus_r_N = np.where(tail_N, 1.0 / T2_N, u_plus_r_N)
    shrink_N = np.where(tail_N, (2.0 / T3_N - 1.0 / T2_N) / T2_N, shrink_N)
    w_N = np.where(tail_N, 2.0 / (T2_N * T3_N), w_N)
    return r_N, u_plus_r_N, shrink_N, w_N


def _tilted_sites(s_N, mu_cav_N, var_cav_N):
    """Natural parameters (tau, nu) of the Gaussian sites matching the moments of
    N(z; mu_cav, var_cav) 1[s z > 0], and its log normaliser log Phi(s mu_cav / sd_cav).

    The noiseless limit of probit classification (Rasmussen & Williams eq. 3.58 with the probit
    noise variance 1 -> 0). With r = phi(u)/Phi(u) the truncated variance is var_cav * (1 - r(u + r));
    the site parameters are products and quotients of the ratios of `_truncation_ratios`, so
    nothing is subtracted that could cancel."""
    sd_N = np.sqrt(var_cav_N)
    u_N = s_N * mu_cav_N / sd_N
    log_Z_N = log_ndtr(u_N)
    r_N, u_plus_r_N, shrink_N, w_N = _truncation_ratios(u_N)
    shrink_N = np.maximum(shrink_N, 1e-300)  # var_hat / var_cav, in (0, 1]; 0 only by underflow (|u| > 1e150)
    tau_N = r_N * u_plus_r_N / (var_cav_N * shrink_N)
    nu_N = s_N * r_N * w_N / (sd_N * shrink_N)
    return tau_N, nu_N, log_Z_N


def _posterior(C_NxN, tau_N, nu_N):
    """Covariance and mean of N(0, C) times the sites, via B = I + T^1/2 C T^1/2 (R&W 3.6.3),
    which stays well conditioned however large or small the site precisions are."""
    sq_N = np.sqrt(tau_N)
    L_B = _site_cholesky(C_NxN, sq_N)
    V_NxN = solve_triangular(L_B, sq_N[:, None] * C_NxN, lower=True)
    Sigma_NxN = C_NxN - V_NxN.T @ V_NxN
    return Sigma_NxN, Sigma_NxN @ nu_N, L_B


def _site_cholesky(C_NxN, sq_N):
    """Lower Cholesky factor of B = I + T^1/2 C T^1/2 (sq_N = sqrt of the site precisions)."""
    try:
        return cholesky(np.eye(len(sq_N)) + sq_N[:, None] * C_NxN * sq_N[None, :], lower=True)
    except LinAlgError as err:  # B >= I for C >= 0: only rounding, C not PSD to working precision
        raise EPNumericalError(
            f"EP posterior: I + T^1/2 C T^1/2 is not positive definite ({err}) with site precisions up "
            f"to {np.max(sq_N) ** 2:.1e}: C is not positive semi-definite to rounding; increase jitter") from None


def fit_training_sites(C_SxS, y_S, **ep_options):
    """Sequential EP on the training signs alone: (log P(S), tau_S, nu_S), the sites that warm-start
    EP on S + E and define EP's Gaussian over z_S; (0, [], []) for an empty S. Raises EPFailed."""
    if not len(y_S):
        return 0.0, np.zeros(0), np.zeros(0)
    opts = dict(parallel=False, damping=1.0, tol=1e-8, max_sweeps=200) | ep_options
    log_S, tau_S, nu_S, _ = _ep_fit(C_SxS, y_S, **opts)
    return log_S, tau_S, nu_S


def gaussian_predictive(C_NxN, tau_S, nu_S):
    """Mean and covariance over the last N - m coordinates of z ~ N(0, C) given EP's Gaussian sites
    (tau_S, nu_S) on the first m (Rasmussen & Williams, Algorithm 3.6, every later coordinate a
    test point): mean = C_ES (nu - T^1/2 B^-1 T^1/2 C_SS nu), cov = C_EE - V^T V, V = L_B^-1 T^1/2 C_SE."""
    m = len(tau_S)
    if not m:
        return np.zeros(len(C_NxN)), C_NxN
    sq_S = np.sqrt(np.maximum(tau_S, 0.0))
    L_B = _site_cholesky(C_NxN[:m, :m], sq_S)
    inner = sq_S * solve_triangular(L_B.T, solve_triangular(L_B, sq_S * (C_NxN[:m, :m] @ nu_S), lower=True))
    V = solve_triangular(L_B, sq_S[:, None] * C_NxN[:m, m:], lower=True)
    return C_NxN[m:, :m] @ (nu_S - inner), C_NxN[m:, m:] - V.T @ V


def _cavity(diag_N, mu_N, tau_N, nu_N, first_site: int = 0):
    """Mean and variance of the cavities (the posterior with site i removed) from the posterior's
    diagonal and mean; one site given as scalars (the sequential sweep) or all of them as arrays.

    Raises EPNumericalError when a cavity is not a proper Gaussian. With exact arithmetic
    1/Sigma_ii - tau_i > 0 always (step sites are log-concave), but Sigma_ii ~ 1/tau_i loses its
    digits to rounding when tau_i is huge, and a NaN here would otherwise surface sweeps later as
    a misleading "did not converge". `first_site` is the index of the first entry, for the message."""
    var_cav_N = 1.0 / (1.0 / diag_N - tau_N)
    mu_cav_N = var_cav_N * (mu_N / diag_N - nu_N)
    # var > 0 is False for a negative or NaN cavity precision and for var = 0; an infinite var
    # makes the mean inf or NaN, which |mu| < inf rejects (cheaper than np.isfinite on scalars).
    ok_N = (var_cav_N > 0) & (abs(mu_cav_N) < np.inf)
    if _all(ok_N):
        return mu_cav_N, var_cav_N
    bad_N = ~np.atleast_1d(ok_N)
    k = int(np.flatnonzero(bad_N)[0])
    d, t = np.atleast_1d(diag_N)[k], np.atleast_1d(tau_N)[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = 1.0 / d - t
    others = f" ({bad_N.sum() - 1} other sites too)" if bad_N.sum() > 1 else ""
    raise EPNumericalError(
        f"EP cavity of site {first_site + k} is not a proper Gaussian: 1/Sigma_ii - tau_i = {prec:.3e} "
        f"(Sigma_ii = {d:.3e}, tau_i = {t:.3e}; must be positive and finite){others}. Rounding in "
        "Sigma loses the cavity when a site precision is huge, as from a warm start with large tau0 "
        "or with a nearly singular C: start from flat sites (tau0 = 0) or smaller warm-start "
        "precisions, or increase jitter")


def _ep_log_z(s_N, tau_N, nu_N, Sigma_NxN, mu_N, L_B) -> float:
    """EP approximation of the log normaliser (R&W eq. 3.65, noiseless sites):
    sum_i log Z_hat_i + log N(mu_site; 0, C + Sigma_site) + the site normalisers, with the
    log(tau) terms of the determinant and of the site normalisers cancelled analytically."""
    mu_cav_N, var_cav_N = _cavity(np.diag(Sigma_NxN), mu_N, tau_N, nu_N)
    log_Z_hat = log_ndtr(s_N * mu_cav_N / np.sqrt(var_cav_N)).sum()
    log_det = 0.5 * np.log1p(tau_N * var_cav_N).sum() - np.log(np.diag(L_B)).sum()
    b_N = solve_triangular(L_B, nu_N / np.sqrt(tau_N), lower=True)
    quad = -0.5 * b_N @ b_N
    site_quad = ((tau_N * mu_cav_N - nu_N) ** 2 / (2 * tau_N * (1 + tau_N * var_cav_N))).sum()
    return float(log_Z_hat + log_det + quad + site_quad)


def _ep_fit(C_NxN, s_N, *, parallel, damping, tol, max_sweeps, tau0_N=None, nu0_N=None):
    """Run EP to convergence; returns (log Z_EP, tau_N, nu_N, sweeps).

    Sequential sweeps update one site at a time with a rank-one update of Sigma (R&W
    Algorithm 3.5) and recompute Sigma from scratch after each sweep so rounding cannot
    accumulate; parallel sweeps update all sites from the same posterior (one factorisation per
    sweep, but they need damping and more sweeps: at N = 128 with damping 0.5 they took 3x
    longer to reach the same fixed point). Step sites are log-concave, so in exact arithmetic
    every site precision is >= 0 and every cavity is a proper Gaussian; `_cavity` checks the
    latter. Raises EPNotConverged after `max_sweeps` sweeps without convergence and
    EPNumericalError for an improper cavity, a posterior that cannot be factorised or a log Z
    that is not finite."""
    N = len(s_N)
    tau_N = np.zeros(N) if tau0_N is None else np.array(tau0_N, np.float64)
    nu_N = np.zeros(N) if nu0_N is None else np.array(nu0_N, np.float64)
    Sigma, mu, L_B = _posterior(C_NxN, np.maximum(tau_N, 0.0), nu_N)
    for sweep in range(1, max_sweeps + 1):
        tau_old, nu_old = tau_N.copy(), nu_N.copy()
        if parallel:
            mu_cav, var_cav = _cavity(np.diag(Sigma), mu, tau_N, nu_N)
            tau_new, nu_new, _ = _tilted_sites(s_N, mu_cav, var_cav)
            tau_N = (1 - damping) * tau_N + damping * tau_new
            nu_N = (1 - damping) * nu_N + damping * nu_new
        else:
            for i in range(N):
                mu_cav, var_cav = _cavity(Sigma[i, i], mu[i], tau_N[i], nu_N[i], first_site=i)
                tau_new, nu_new, _ = _tilted_sites(s_N[i], mu_cav, var_cav)
                tau_i = (1 - damping) * tau_N[i] + damping * tau_new
                d_tau = tau_i - tau_N[i]
                tau_N[i], nu_N[i] = tau_i, (1 - damping) * nu_N[i] + damping * nu_new
                col_N = Sigma[:, i].copy()
                Sigma -= (d_tau / (1.0 + d_tau * col_N[i])) * np.outer(col_N, col_N)
                mu = Sigma @ nu_N
        tau_N = np.maximum(tau_N, _TAU_FLOOR)
        Sigma, mu, L_B = _posterior(C_NxN, tau_N, nu_N)
        change = max(
            np.max(np.abs(tau_N - tau_old) / np.maximum(1.0, np.abs(tau_N))),
            np.max(np.abs(nu_N - nu_old) / np.maximum(1.0, np.abs(nu_N))),
        )
        if change < tol:
            log_Z = _ep_log_z(s_N, tau_N, nu_N, Sigma, mu, L_B)
            if not np.isfinite(log_Z):
                raise EPNumericalError(
                    f"EP converged in {sweep} sweeps (N={N}) but its log Z is {log_Z}: a site "
                    "precision under- or overflowed; increase jitter if C is nearly singular")
            return log_Z, tau_N, nu_N, sweep
    raise EPNotConverged(
        f"EP did not converge in {max_sweeps} {'parallel' if parallel else 'sequential'} sweeps "
        f"(N={N}, damping={damping}, last relative site change {change:.2e} > tol={tol:.1e}); "
        "try damping < 1, sequential updates, or more sweeps"
    )


def ep_log_orthant(
    K_NxN: np.ndarray,
    signs_N,
    jitter: float = 1e-6,
    *,
    parallel: bool = False,
    damping: float = 1.0,
    tol: float = 1e-8,
    max_sweeps: int = 200,
) -> float:
    """EP approximation of log P(signs_i z_i > 0 for all i), z ~ N(0, K).

    Raises EPNotConverged when the site parameters still change by more than `tol` (relative)
    after `max_sweeps` sweeps, EPNumericalError when rounding breaks EP. Exact for N = 1; for
    N >= 2 it is an approximation whose error we measure against `orthant_log_prob_scipy`
    (tests/test_nngp.py)."""
    s_N = as_signs(signs_N)
    if len(s_N) == 0:
        return 0.0
    C = correlation(K_NxN, jitter)
    return _ep_fit(C, s_N, parallel=parallel, damping=damping, tol=tol, max_sweeps=max_sweeps)[0]


def ep_log_pb(K_full, y_S_signs, f_E_signs, jitter: float = 1e-6, **ep_options) -> float:
    """EP estimate of log P_B(f|S) = log P(sign z = (y_S, f_E)) - log P(sign z_S = y_S).

    K_full is the kernel on S then E (|S| + |E| rows)."""
    y_S, f_E = as_signs(y_S_signs), as_signs(f_E_signs)
    if len(K_full) != len(y_S) + len(f_E):
        raise ValueError(f"K_full has {len(K_full)} rows; expected |S| + |E| = {len(y_S)} + {len(f_E)}")
    C = correlation(K_full, jitter)
    m = len(y_S)
    log_S = ep_log_orthant(C[:m, :m], y_S, 0.0, **ep_options)
    return ep_log_orthant(C, np.concatenate([y_S, f_E]), 0.0, **ep_options) - log_S


@dataclass(frozen=True)
class EPScores:
    """EP's log P_B(f|S) for F functions, with how each EP ended (`ep_log_pb_many`)."""

    log_pb: np.ndarray  # (F,) float64, NaN exactly where EP failed for that function
    status: np.ndarray  # (F,) str: "converged", "not_converged" or "numerical_error" (the EPFailed raised)
    sweeps: np.ndarray  # (F,) int, sweeps EP used; 0 where it failed


_STATUS = {EPNotConverged: "not_converged", EPNumericalError: "numerical_error"}


def ep_log_pb_many(K_full, y_S_signs, functions_E, jitter: float = 1e-6, **ep_options) -> EPScores:
    """log P_B(f|S) for many functions f on E (hex strings or a bool array (F, |E|)): one EP on
    S, then one EP on S + E per function, warm-started from the converged S sites (the E sites
    start flat), which converges to the same fixed point in fewer sweeps.

    A function whose EP fails does not stop the others: its log_pb is NaN and its status says
    why: "not_converged" (sites still moving after max_sweeps; more sweeps or damping < 1 may
    help) or "numerical_error" (an improper cavity, a posterior that cannot be factorised or a
    non-finite log Z: rounding, with huge site precisions or a nearly singular C). Its P_B is
    then unknown, not zero: leave it out, do not count it as 0.
    EP on S alone failing raises (EPNotConverged or EPNumericalError): without P(S) no function
    can be scored."""
    y_S = as_signs(y_S_signs)
    m = len(y_S)
    n_E = len(K_full) - m
    f_FxE = function_bits(functions_E, n_E)
    C = correlation(K_full, jitter)
    opts = dict(parallel=False, damping=1.0, tol=1e-8, max_sweeps=200) | ep_options
    log_S, tau_S, nu_S = fit_training_sites(C[:m, :m], y_S, **opts)
    tau0_N = np.concatenate([tau_S, np.zeros(n_E)])
    nu0_N = np.concatenate([nu_S, np.zeros(n_E)])
    F = len(f_FxE)
    log_pb_F, status_F, sweeps_F = np.full(F, np.nan), np.full(F, "converged", dtype="<U15"), np.zeros(F, int)
    for k, f_E in enumerate(f_FxE):
        s_N = np.concatenate([y_S, as_signs(f_E)])
        try:
            log_Z, _, _, sweeps_F[k] = _ep_fit(C, s_N, tau0_N=tau0_N, nu0_N=nu0_N, **opts)
        except EPFailed as err:
            status_F[k] = _STATUS[type(err)]
            continue
        log_pb_F[k] = log_Z - log_S
    return EPScores(log_pb=log_pb_F, status=status_F, sweeps=sweeps_F)


# ---------------------------------------------------------------------------------------------
# Numerical reference


def orthant_log_prob_scipy(K_NxN: np.ndarray, signs_N, rel_err: float = 1e-4, seed: int = 0) -> float:
    """log P(signs_i z_i > 0 for all i) by scipy's randomised quasi-Monte Carlo (Genz) integral.

    P(s z > 0) = P(w <= 0) for w = -diag(s) z ~ N(0, D C D). scipy 1.17 ignores `releps` and
    stops on `abseps` alone (3 standard errors of its batch estimates) or silently at `maxpts`,
    so a rough first pass sets abseps = rel_err * P for the final one, and the final one is run
    with two seeds: if they differ by more than 2 abseps the integrator has not reached its
    target (this happens for tiny P with near-singular C) and we raise rather than return a
    wrong reference. Meant for N <= ~12; the cost grows quickly with N and with 1/P."""
    s_N = as_signs(signs_N)
    N = len(s_N)
    cov = correlation(K_NxN, 0.0) * np.outer(s_N, s_N)

    def cdf(abseps: float, seed: int) -> float:
        return float(multivariate_normal.cdf(np.zeros(N), cov=cov, abseps=abseps, releps=0.0,
                                             rng=np.random.default_rng(seed)))

    abseps = 1e-3
    p = cdf(abseps, seed)
    while abseps > rel_err * p:
        if abseps < 1e-300:
            raise FloatingPointError("orthant probability too small for the scipy reference")
        abseps = rel_err * p if p > 10 * abseps else abseps * 1e-2
        p = cdf(abseps, seed)
    p_check = cdf(abseps, seed + 1)
    if abs(p - p_check) > 2 * abseps:
        raise FloatingPointError(
            f"scipy orthant integral unreliable: {p:.6e} and {p_check:.6e} with two seeds, "
            f"target error {abseps:.1e}")
    return float(np.log(0.5 * (p + p_check)))
