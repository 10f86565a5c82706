"""Exact zero-training-error prior draws of a fully connected network, by drawing its
pre-activations on S layer by layer and its parameters only for the draws that fit S.

In the standard parameterisation a Dense layer's pre-activations on the m inputs of S,
z_mxW = h_mxF W_FxW + b_W, have independent columns N(0, Sigma) given the layer's input h, with
Sigma = (sigma_w^2 / F) h h^T + sigma_b^2 1 1^T. So the outputs on S can be drawn without the
parameters: per layer one m x m eigendecomposition and m normals per unit, instead of one normal
per parameter. For E3's 64-256-256-1 at m = 10 that is 5,130 normals per draw against 82,689.

Rejection on those outputs keeps exactly the prior's draws that fit S. For each kept draw the
parameters are then drawn from the prior given its pre-activations, by Matheron's rule: with A = [h 1]
and D the prior variances of a column (w, b), w = e + D A^T Sigma^+ (z - A e), e ~ N(0, D), is a
draw of N(0, D) conditioned on A w = z (A D A^T = Sigma; the pseudo-inverse because Sigma is singular
whenever the layer's inputs on S span fewer than m dimensions, and z then lies in its range). So theta has the law of
`mcmc.init_from_rejection`'s draws (the prior restricted to zero training error), at a fraction of
the cost when the network is wide and m small. Convolutional layers have no such column-wise law and
are refused."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64
from jax.flatten_util import ravel_pytree

from study.encoding import fits
from study.mcmc import fits_training_set
from study.network import Network
from study.tasks import Task


@dataclass(frozen=True)
class Dense:
    """One Dense layer: its input width F, output width W, and the prior variances of a weight
    (sigma_w^2 / F) and of a bias (0 without biases)."""
    fan_in: int
    width: int
    var_w: float
    var_b: float


@dataclass(frozen=True)
class Points:
    theta_PxD: np.ndarray  # the kept draws' parameters, in draw order
    draws: int  # prior draws made
    fitted: int  # draws whose sampled outputs fit S (every one of them kept, up to the n asked for)
    refit_failures: int  # kept draws whose parameters, run forward in float32, misclassify an input of S


def dense_layers(net: Network) -> tuple[Dense, ...]:
    """The Dense layers of `net`, in order; ValueError for a network with convolutions."""
    std_tree = net.unravel(net.prior_std_D)
    layers = []
    for layer in std_tree:
        if not layer:
            continue  # Relu, Flatten
        w_std, b_std = layer
        if w_std.ndim != 2:
            raise ValueError("pre-activation sampling needs a fully connected network; this one has "
                             "convolutions (use mcmc.init_from_rejection)")
        layers.append(Dense(int(w_std.shape[0]), int(w_std.shape[1]), float(w_std.ravel()[0]) ** 2,
                            0.0 if b_std is None else float(b_std.ravel()[0]) ** 2))
    return tuple(layers)


def _layer_cov(h_mxF, layer: Dense):
    """(U, lambda), the eigendecomposition of the layer's Sigma on S, with the eigenvalues below
    rounding of the largest set to 0. Sigma is singular when a layer's inputs on S span fewer than m
    dimensions (the first layer on 7-bit inputs at m = 10; two inputs both all-zero after a narrow
    ReLU layer, a prior event of positive probability): the pre-activations then lie in its range,
    which sampling and the solve below share, so the parameters reproduce them."""
    lam, U = jnp.linalg.eigh(layer.var_w * h_mxF @ h_mxF.T + layer.var_b)
    return U, jnp.where(lam > len(lam) * jnp.finfo(lam.dtype).eps * lam[-1], lam, 0.0)


def _pinv_solve(U, lam, r):
    """Sigma^+ r."""
    return U @ (jnp.where(lam > 0, 1.0 / jnp.where(lam > 0, lam, 1.0), 0.0)[:, None] * (U.T @ r))


def _preactivations(layers, x_mxI, key):
    """One draw's pre-activations on S, [z_mxW for each layer], from its key (in x's precision)."""
    h, zs = x_mxI, []
    for i, layer in enumerate(layers):
        U, lam = _layer_cov(h, layer)
        zs.append((U * jnp.sqrt(lam)) @ jax.random.normal(jax.random.fold_in(key, i), (len(x_mxI), layer.width), h.dtype))
        h = jax.nn.relu(zs[-1])
    return zs


def _parameters(layers, template, x_mxI, key, zs):
    """The flat parameters of one draw, drawn from the prior given its pre-activations zs on S."""
    h, out, dense = x_mxI, [], iter(range(len(layers)))
    for slot in template:
        if not slot:
            out.append(slot)  # Relu, Flatten
            continue
        i = next(dense)
        layer, has_bias = layers[i], slot[1] is not None
        A = jnp.concatenate([h, jnp.ones((len(h), 1), h.dtype)], axis=1) if has_bias else h
        var = jnp.concatenate([jnp.full(layer.fan_in, layer.var_w), jnp.full(int(has_bias), layer.var_b)])
        e = jax.random.normal(jax.random.fold_in(key, len(layers) + i), (len(var), layer.width), h.dtype)
        e = e * jnp.sqrt(var)[:, None]
        w = e + (var[:, None] * A.T) @ _pinv_solve(*_layer_cov(h, layer), zs[i] - A @ e)
        out.append((w[:layer.fan_in], w[layer.fan_in].reshape(slot[1].shape) if has_bias else None))
        h = jax.nn.relu(zs[i])
    return ravel_pytree(out)[0]


def _compiled(layers, template, batch: int, per_call: int):
    """(fitted, parameters): fitted(batch_key, x, y, start) draws a batch's outputs on S (float32)
    and returns which fit, which are finite, and the keys and pre-activations of the first
    `per_call` fitting draws at index >= start (index `batch` pads); parameters(keys, zs, x) draws
    the parameters given them (float64 under enable_x64)."""

    @jax.jit
    def fitted(batch_key, x_mxI, y_m, start):
        keys = jax.random.split(batch_key, batch)
        zs = jax.vmap(lambda k: _preactivations(layers, x_mxI, k))(keys)
        out_Pxm = zs[-1][..., 0]
        fit_P = fits(out_Pxm, y_m)
        idx = jnp.nonzero(fit_P & (jnp.arange(batch) >= start), size=per_call, fill_value=batch)[0]
        take = jnp.minimum(idx, batch - 1)
        return fit_P, jnp.all(jnp.isfinite(out_Pxm), axis=1), idx, keys[take], [z[take] for z in zs]

    @jax.jit
    def parameters(keys, zs, x_mxI):
        return jax.vmap(lambda k, z: _parameters(layers, template, x_mxI, k, z))(keys, zs)

    return fitted, parameters


def zero_error_points(net: Network, task: Task, key: jax.Array, n: int, batch: int = 4096,
                      max_draws: int = 2**26, per_call: int = 64) -> Points:
    """The first n prior draws of `net` that fit task's S: batches fold_in(key, b), each draw's key
    the b-th batch key's split. The outputs on S are drawn in float32; the parameters given the
    kept draws' pre-activations in float64, returned in float32.

    Raises RuntimeError after max_draws draws with fewer than n found, and if a draw's outputs on S
    are not finite, which would otherwise be a silent rejection."""
    layers = dense_layers(net)
    fitted, parameters = _compiled(layers, net.unravel(jnp.zeros(net.n_params)), batch, per_call)
    x = jnp.asarray(np.asarray(task.x_train, np.float32).reshape(len(task.x_train), -1))
    y = jnp.asarray(task.y_train)
    keys, zs, found, draws, b = [], [], 0, 0, 0
    while found < n:
        if draws >= max_draws:
            raise RuntimeError(f"pre-activation rejection found {found} of {n} zero-error draws in {draws} "
                               f"prior draws (acceptance {found / draws:.2g}); raise max_draws")
        batch_key, start = jax.random.fold_in(key, b), 0
        while True:
            fit_P, finite_P, idx, k, z = fitted(batch_key, x, y, start)
            fit_P, idx = np.asarray(fit_P), np.asarray(idx)
            if not np.asarray(finite_P).all():
                raise RuntimeError(f"pre-activation rejection: {int((~np.asarray(finite_P)).sum())} draws of batch {b} "
                                   "have outputs on S that are not finite")
            real = idx < batch
            keys.append(k[real])
            zs.append([np.asarray(a)[real] for a in z])
            if real.all() and fit_P[idx[-1] + 1:].any():
                start = int(idx[-1]) + 1  # more than per_call fits in this batch: fetch the rest
                continue
            break
        found += int(fit_P.sum())
        draws += batch
        b += 1
    keys = jnp.concatenate(keys)[:n]
    z_list = [np.concatenate([z[i] for z in zs])[:n] for i in range(len(layers))]
    with enable_x64():
        theta = np.asarray(parameters(keys, [jnp.asarray(z, jnp.float64) for z in z_list],
                                      jnp.asarray(x, jnp.float64)), np.float32)
    return Points(theta, draws, found, int((~fits_training_set(net, task, theta)).sum()))
