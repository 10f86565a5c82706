"""Geometry of one zero-training-error point theta: NTK feature spectra, Hessian flatness, basin size.

Parameterisation: every quantity is taken with respect to the flat parameter vector theta_D of the
*standard* parameterisation as stored by study/network.py (W ~ N(0, sigma_w^2 / fan_in)). ReLU
layers can be rescaled (W1 -> a W1, W2 -> W2 / a) without changing f but changing these numbers,
so both populations are always compared in this one parameterisation.

The features of a point are the rows of the Jacobian J_NxD = d f(x_n) / d theta. Their Gram
matrix is the empirical NTK Theta = J J^T. For a training loss L = (1/m) sum ell(f(x_i), y_i)

    H = (1/m) J_S^T diag(ell'') J_S  +  (1/m) sum_i ell'(f_i, y_i) d^2 f_i / d theta^2,

the Gauss-Newton part plus the residual part. The GN part has the same non-zero eigenvalues as
the m x m matrix G = (1/m) A^1/2 Theta_S A^1/2 with A = diag(ell''); for MSE ell'' = 2, so at an
exact interpolation (ell' = 0) eig(H) = eig((2/m) Theta_S) plus D - m zeros.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matfree import decomp, eig, stochtrace

from study.devices import SPLIT, dividing_devices, over_population
from study.encoding import fits, pack_signs, words_to_hex
from study.network import Network
from study.sgd import per_example_loss

POINT_BLOCK = 8  # points measured side by side (vmap) in one block


def jacobian(net: Network, theta_D: jnp.ndarray, x_NxI: jnp.ndarray) -> jnp.ndarray:
    """J_NxD: the features d f(x_n) / d theta of one point."""
    return jax.jacrev(net.apply_flat)(theta_D, x_NxI)


def loss_curvature(loss: str, f_M: jnp.ndarray, y_M: jnp.ndarray) -> jnp.ndarray:
    """ell''(f, y) per training input: 2 for squared error, sigma(yf)(1 - sigma(yf)) for logistic."""
    if loss == "mse":
        return jnp.full_like(f_M, 2.0)
    s = jax.nn.sigmoid(y_M * f_M)
    return s * (1 - s)


def gauss_newton_gram(J_MxD: jnp.ndarray, curvature_M: jnp.ndarray) -> jnp.ndarray:
    """G_MxM = (1/m) A^1/2 J J^T A^1/2: its eigenvalues are the GN part's non-zero ones."""
    a = jnp.sqrt(curvature_M)
    return (a[:, None] * (J_MxD @ J_MxD.T) * a[None, :]) / J_MxD.shape[0]


def training_loss(net: Network, loss: str, x_MxI: jnp.ndarray, y_M: jnp.ndarray) -> Callable:
    """theta_D -> L(theta) = mean over S of ell(f(x), y), with y in {-1, +1}."""
    ell = per_example_loss(loss)
    return lambda theta_D: jnp.mean(ell(net.apply_flat(theta_D, x_MxI), y_M))


def hvp_fn(loss_fn: Callable, theta_D: jnp.ndarray) -> Callable:
    """v -> H v by forward-over-reverse differentiation (no D x D matrix)."""
    grad = jax.grad(loss_fn)
    return lambda v_D: jax.jvp(grad, (theta_D,), (v_D,))[1]


def dense_hessian(loss_fn: Callable, theta_D: jnp.ndarray) -> jnp.ndarray:
    return jax.hessian(loss_fn)(theta_D)


class TopEigen(NamedTuple):
    values_K: jnp.ndarray  # the k largest Ritz values, descending
    residual_K: jnp.ndarray  # |A v - lambda v| / (|v| |lambda_1|) of each Ritz pair, by a fresh matvec
    converged: jnp.ndarray  # the leading pair's residual finite and at most LANCZOS_TOL, every value finite


# Relative residual up to which the leading Ritz value counts as found: it bounds the error of that
# eigenvalue relative to itself (|lambda - theta| <= |A v - theta v|). The k-th pair converges more
# slowly; its residual is reported, not required.
LANCZOS_TOL = 1e-3


def lanczos_top(matvec: Callable, key: jax.Array, dim: int, k: int, num_matvecs: int) -> TopEigen:
    """The k largest eigenvalues of a symmetric operator by Lanczos with full reorthogonalisation
    (matfree), from a random start, each checked by one more matvec on its Ritz vector.

    The check is what makes the answer trustworthy: when the Krylov space becomes invariant before
    num_matvecs (an operator of low rank, or with few distinct eigenvalues), matfree normalises a
    vector of rounding noise, the basis loses orthogonality, and the Ritz values can be far off
    (or NaN for a zero operator); k more matvecs expose that as a large residual."""
    tridiag = decomp.tridiag_sym(num_matvecs, reortho="full", custom_vjp=False)
    vals, vecs = eig.eigh_partial(tridiag)(matvec, jax.random.normal(key, (dim,)))
    order = jnp.argsort(vals)[::-1][:k]
    vals_K, vecs_KxD = vals[order], vecs[order]
    gap_K = jnp.linalg.norm(jax.vmap(matvec)(vecs_KxD) - vals_K[:, None] * vecs_KxD, axis=1)
    residual_K = gap_K / (jnp.linalg.norm(vecs_KxD, axis=1) * jnp.abs(vals_K[0]))
    ok = jnp.all(jnp.isfinite(vals_K)) & jnp.isfinite(residual_K[0]) & (residual_K[0] <= LANCZOS_TOL)
    return TopEigen(vals_K, residual_K, ok)


def hutchinson_trace(matvec: Callable, key: jax.Array, dim: int, samples: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """tr(H) by Hutchinson's estimator with Rademacher probes (matfree): (mean, standard error)."""
    sampler = stochtrace.sampler_signs(jnp.zeros(dim), num=samples)
    estimate = stochtrace.estimator_monte_carlo_mean_and_sem(stochtrace.monte_carlo_trace(), sampler)
    return estimate(matvec, key)


def spectrum_stats(eig_K: jnp.ndarray, thresholds: tuple[float, ...]) -> dict[str, jnp.ndarray]:
    """Scalar summaries of a PSD spectrum (negative round-off clipped to 0): trace, top eigenvalue,
    participation ratio (sum l)^2 / sum l^2, entropy rank exp(H(l / sum l)), and the number of
    eigenvalues above each relative threshold t * l_max."""
    lam = jnp.clip(eig_K, 0.0)
    total = lam.sum()
    p = lam / total
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    out = {"trace": total, "top": lam.max(), "participation_ratio": total**2 / jnp.sum(lam**2),
           "entropy_rank": jnp.exp(entropy)}
    for t in thresholds:
        out[f"n_above_{t:g}"] = jnp.sum(lam > t * lam.max())
    return out


def log_det_delta(eig_K: jnp.ndarray, delta: float) -> jnp.ndarray:
    """sum_i log(1 + max(l_i, 0) / delta) = sum_i log(l_i + delta) - D log delta when the
    eigenvalues not listed are << delta. Minus one half of it is the log-volume of the quadratic
    basin {dtheta : dtheta^T H dtheta <= delta} relative to a ball of radius 1 / sqrt(delta)."""
    return jnp.sum(jnp.log1p(jnp.clip(eig_K, 0.0) / delta))


def basin_radii(net: Network, theta_D: jnp.ndarray, x_MxI: jnp.ndarray, positive_M: jnp.ndarray,
                key: jax.Array, n_dirs: int, radii_G: jnp.ndarray, bisections: int = 20) -> jnp.ndarray:
    """Radius along each of n_dirs uniformly random unit directions u at which the training error
    first becomes non-zero: the first grid radius with an error, refined by bisection from the
    last grid radius without one. Directions that stay at zero error up to radii_G[-1] give inf.
    A point that itself misclassifies a training input lies outside the set: radius 0 in every
    direction (not the bisection's small positive number), so log radii show it as -inf."""
    u_UxD = jax.random.normal(key, (n_dirs, theta_D.shape[0]))
    u_UxD = u_UxD / jnp.linalg.norm(u_UxD, axis=1, keepdims=True)

    def fits_at(r, u_D):
        return fits(net.apply_flat(theta_D + r * u_D, x_MxI), positive_M)

    def radius(u_D):
        fit_G = jax.vmap(lambda r: fits_at(r, u_D))(radii_G)
        first_bad = jnp.argmin(fit_G)  # first False; 0 if all True (handled below)
        hi = radii_G[first_bad]
        lo = jnp.where(first_bad > 0, radii_G[jnp.maximum(first_bad - 1, 0)], 0.0)

        def bisect(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            ok = fits_at(mid, u_D)
            return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

        lo, hi = jax.lax.fori_loop(0, bisections, bisect, (lo, hi))
        return jnp.where(jnp.all(fit_G), jnp.inf, 0.5 * (lo + hi))

    inside = fits_at(0.0, jnp.zeros_like(theta_D))
    return jnp.where(inside, jax.vmap(radius)(u_UxD), 0.0)


class Interpolation(NamedTuple):
    theta_D: jnp.ndarray  # the last accepted point (the start if no step was accepted)
    residual: jnp.ndarray  # max_i |f(x_i) - y_i| there
    steps: jnp.ndarray  # Gauss-Newton steps accepted
    converged: jnp.ndarray  # residual at most `tol`


BACKTRACK = (1.0, 0.5, 0.25, 0.125)  # step fractions tried, in order, until one lowers the residual


def interpolation_tol(y_M: jnp.ndarray) -> jnp.ndarray:
    """The residual float32 arithmetic can be asked for: 64 ulps of the largest target (the forward
    pass alone rounds outputs by a few ulps)."""
    return 64 * jnp.finfo(jnp.float32).eps * jnp.maximum(1.0, jnp.max(jnp.abs(y_M)))


def interpolate(net: Network, theta_D: jnp.ndarray, x_MxI: jnp.ndarray, y_M: jnp.ndarray,
                max_steps: int = 50, ridge: float = 1e-10, tol: float | None = None) -> Interpolation:
    """Train to exact interpolation f(x_i) = y_i under MSE by Gauss-Newton steps of least norm,
    theta <- theta - a J^T (J J^T)^-1 (f - y): quadratic convergence from a nearby point (such as a
    zero-classification-error point), and each step moves theta as little as possible.

    A step is taken only if it lowers the residual max|f - y| (the first of the fractions a in
    BACKTRACK that does; a non-finite trial counts as no decrease). Iteration stops when no
    fraction helps, at max_steps, or once the residual is below `tol` (default
    `interpolation_tol`) and a step no longer halves it: at the rounding floor, where further
    solves with J J^T can be wildly ill-conditioned (a ReLU unit at its kink) and only add
    noise. `converged` says whether the residual reached `tol`; theta is always finite when the
    start is."""
    tol = interpolation_tol(y_M) if tol is None else jnp.asarray(tol, jnp.float32)
    fractions = jnp.asarray(BACKTRACK, jnp.float32)
    residual = lambda th: jnp.max(jnp.abs(net.apply_flat(th, x_MxI) - y_M))

    def direction(theta):
        J = jacobian(net, theta, x_MxI)
        K = J @ J.T
        r_M = net.apply_flat(theta, x_MxI) - y_M
        return J.T @ jnp.linalg.solve(K + ridge * jnp.trace(K) * jnp.eye(len(y_M)), r_M)

    def body(state):
        theta, res, steps, _ = state
        d_D = direction(theta)
        trial_res = jax.vmap(lambda a: residual(theta - a * d_D))(fractions)
        better = jnp.isfinite(trial_res) & (trial_res < res)
        k = jnp.argmax(better)
        accept = better.any()
        new_res = jnp.where(accept, trial_res[k], res)
        floor = (new_res <= tol) & (new_res > 0.5 * res)
        return (jnp.where(accept, theta - fractions[k] * d_D, theta), new_res, steps + accept.astype(jnp.int32),
                ~accept | floor | (new_res == 0))

    def cond(state):
        _, _, steps, stop = state
        return ~stop & (steps < max_steps)

    theta, res, steps, _ = jax.lax.while_loop(cond, body, (theta_D, residual(theta_D), jnp.int32(0), jnp.bool_(False)))
    return Interpolation(theta, res, steps, res <= tol)


REL_THRESHOLDS = (1e-2, 1e-3)  # eigenvalues counted above these fractions of the largest
LOSSES = ("mse", "ce")


def make_point_measures(net: Network, x_all_NxI, train_idx, y_S, *, top_k: int, lanczos_matvecs: int,
                        hutchinson_samples: int, delta: float, directions: int, radii_G) -> Callable:
    """(theta_PxD, keys_P, pad_to=POINT_BLOCK) -> dict of (P,) arrays: every geometry measure of P
    points, in blocks of POINT_BLOCK split over the local devices that divide their number (compiled
    once per P rounded up to a multiple of pad_to).

    x_all_NxI: all inputs (features on S are its rows train_idx); y_S: training labels in {-1, +1}.
    Hessian measures are taken for both training losses (MSE and logistic) at the point as is."""
    x_all = jnp.asarray(x_all_NxI)
    train_idx = jnp.asarray(train_idx)
    x_S, y_S = x_all[train_idx], jnp.asarray(y_S, jnp.float32)
    radii_G = jnp.asarray(radii_G, jnp.float32)
    D = net.n_params

    def one(theta_D, key):
        keys = jax.random.split(key, 2 * len(LOSSES) + 1)
        J_all = jacobian(net, theta_D, x_all)
        J_S = J_all[train_idx]
        f_S = net.apply_flat(theta_D, x_S)
        out = {"theta_norm": jnp.linalg.norm(theta_D), "min_margin": jnp.min(y_S * f_S)}
        for prefix, J in (("ntk_S", J_S), ("ntk_X", J_all)):
            for name, v in spectrum_stats(jnp.linalg.eigvalsh(J @ J.T), REL_THRESHOLDS).items():
                out[f"{prefix}_{name}"] = v
        for i, loss in enumerate(LOSSES):
            loss_fn = training_loss(net, loss, x_S, y_S)
            hvp = hvp_fn(loss_fn, theta_D)
            top = lanczos_top(hvp, keys[2 * i], D, top_k, lanczos_matvecs)
            trace, trace_se = hutchinson_trace(hvp, keys[2 * i + 1], D, hutchinson_samples)
            eig_G = jnp.linalg.eigvalsh(gauss_newton_gram(J_S, loss_curvature(loss, f_S, y_S)))
            out |= {f"{loss}_loss": loss_fn(theta_D), f"hess_{loss}_top": top.values_K[0],
                    f"hess_{loss}_top_residual": top.residual_K[0], f"hess_{loss}_topk_residual": top.residual_K.max(),
                    f"hess_{loss}_converged": top.converged & jnp.isfinite(trace) & jnp.isfinite(trace_se),
                    f"hess_{loss}_trace": trace,
                    f"hess_{loss}_trace_se": trace_se, f"hess_{loss}_topk_log_det": log_det_delta(top.values_K, delta),
                    f"gn_{loss}_top": eig_G[-1], f"gn_{loss}_trace": eig_G.sum(),
                    f"gn_{loss}_log_det": log_det_delta(eig_G, delta)}
        r_U = basin_radii(net, theta_D, x_S, y_S > 0, keys[-1], directions, radii_G)
        capped = jnp.minimum(r_U, radii_G[-1])
        # Radii beyond radius_max are censored (inf): the median over directions is exact while
        # fewer than half are censored, and a lower bound (radius_max) otherwise; the mean of
        # log(capped radii) is biased low by every censored direction (kept, named as what it is).
        out |= {"radius_median": jnp.median(capped), "log_radius_median": jnp.log(jnp.median(capped)),
                "log_radius_capped_mean": jnp.mean(jnp.log(capped)), "radius_censored": jnp.mean(jnp.isinf(r_U))}
        return out

    def blocks(theta_PxD, keys_P):
        """The points in vmapped blocks of POINT_BLOCK: every point is measured by a program of the
        same shape whatever the number of points or devices, so its numbers are the same to the last
        bit."""
        return jax.lax.map(lambda a: one(*a), (theta_PxD, keys_P), batch_size=POINT_BLOCK)

    @functools.cache
    def spread(P: int) -> Callable:
        return over_population(blocks, dividing_devices(P // POINT_BLOCK), (SPLIT, SPLIT), SPLIT)

    def measure(theta_PxD, keys_P, pad_to: int = POINT_BLOCK):
        # A last block short of POINT_BLOCK (or of pad_to, a multiple of it: one program for every
        # batch of a caller's) is filled with copies of the last point, whose measures are dropped.
        P = len(theta_PxD)
        if P == 0:
            raise ValueError("no points to measure")
        if pad_to % POINT_BLOCK:
            raise ValueError(f"pad_to = {pad_to} is not a multiple of the block of {POINT_BLOCK} points")
        fill = -P % pad_to
        theta, keys = jnp.asarray(theta_PxD), jnp.asarray(keys_P)
        if fill:
            theta = jnp.concatenate([theta, jnp.repeat(theta[-1:], fill, axis=0)])
            keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], fill, axis=0)])
        out = spread(P + fill)(theta, keys)
        return {k: v[:P] for k, v in out.items()} if fill else out

    return measure


def identity_spectra(net: Network, theta_D, x_S, y_S, n_extra: int = 5,
                     losses: tuple[str, ...] = LOSSES) -> dict[str, jnp.ndarray]:
    """Dense check of the Hessian = feature-Gram identity at one point, for each loss: the m + n_extra
    eigenvalues of largest magnitude of the exact Hessian H, the m eigenvalues of the GN Gram
    (for MSE (2/m) Theta_S), and the largest |eigenvalue| of the residual part H - GN."""
    x_S, y_S = jnp.asarray(x_S), jnp.asarray(y_S, jnp.float32)
    m = len(y_S)
    J_S = jacobian(net, theta_D, x_S)
    f_S = net.apply_flat(theta_D, x_S)
    out = {}
    for loss in losses:
        H = dense_hessian(training_loss(net, loss, x_S, y_S), theta_D)
        curv = loss_curvature(loss, f_S, y_S)
        eig_H = jnp.linalg.eigvalsh(H)
        order = jnp.argsort(-jnp.abs(eig_H))
        GN = (J_S.T * curv) @ J_S / m
        out[f"{loss}_hessian"] = eig_H[order][: m + n_extra]
        out[f"{loss}_gn"] = jnp.linalg.eigvalsh(gauss_newton_gram(J_S, curv))[::-1]
        out[f"{loss}_residual_norm"] = jnp.max(jnp.abs(jnp.linalg.eigvalsh(H - GN)))
        out[f"{loss}_loss"] = training_loss(net, loss, x_S, y_S)(theta_D)
    return out


def point_measures(gc, net: Network, task) -> Callable:
    """make_point_measures for this network and task with a config's [geometry] settings (gc)."""
    return make_point_measures(
        net, task.x, task.train_idx, np.where(task.y_train, 1.0, -1.0), top_k=gc.top_k,
        lanczos_matvecs=gc.lanczos_matvecs, hutchinson_samples=gc.hutchinson_samples, delta=gc.delta,
        directions=gc.directions, radii_G=np.geomspace(gc.radius_min, gc.radius_max, gc.radius_grid))


def functions_on_E(net: Network, task, theta_PxD) -> list[str]:
    """The function (hex on E) each point computes."""
    words = pack_signs(net.apply_population(jnp.asarray(theta_PxD), jnp.asarray(task.x_test)))
    return words_to_hex(np.asarray(words), len(task.test_idx))


# A Hessian whose leading Ritz pair did not converge (lanczos_top) keeps its numbers, NaN included,
# beside hess_<loss>_converged = False in the measures' table; the analysis counts such points apart.
HESSIAN_COLUMNS = ("top", "top_residual", "topk_residual", "trace", "trace_se", "topk_log_det")
MEASURES_ALLOWED = {f"hess_{loss}_{q}": (lambda t, loss=loss: ~t[f"hess_{loss}_converged"].astype(bool))
                    for loss in LOSSES for q in HESSIAN_COLUMNS}
