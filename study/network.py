"""The one network definition shared by every arm: a ReLU net built with neural-tangents stax in
the *standard* parameterisation, so that the stored parameters are the prior draws themselves:
W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2). Fully connected on vectors (Boolean tasks) or
on flattened images; with conv_channels, convolutions (stride 1, SAME padding) + ReLU come first
and their output is flattened into the Dense layers (a CNN whose NNGP kernel stax computes too).

`Network` bundles stax's (init_fn, apply_fn, kernel_fn) with a flat view of the parameters, so a
population of P networks is one (P, D) array of standard normals scaled by `prior_std_D`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from neural_tangents import stax

from study.config import NetworkConfig


@dataclass(frozen=True)
class Network:
    init_fn: Callable
    apply_fn: Callable  # apply_fn(params, x_NxI) -> (N, 1)
    kernel_fn: Callable
    unravel: Callable  # (D,) -> params pytree
    prior_std_D: jnp.ndarray  # prior standard deviation of each flat parameter
    input_shape: tuple[int, ...]  # one input's shape: (n,) for vectors, (rows, cols, channels) for images
    macs_per_input: int  # multiply-adds of one forward pass on one input (weights only)
    features_fn: Callable  # features_fn(hidden_params, x_NxI) -> (N, H): the last hidden layer's activations
    unravel_hidden: Callable  # (D - n_readout,) -> the hidden layers' params pytree
    n_features: int  # H, the last hidden layer's width (n_in without hidden layers)
    n_readout: int  # parameters of the output layer (H weights, plus 1 bias); the last n_readout of theta_D

    @property
    def n_params(self) -> int:
        return int(self.prior_std_D.shape[0])

    @property
    def n_in(self) -> int:
        """Numbers in one input."""
        return math.prod(self.input_shape)


    def sample_prior(self, key: jax.Array, P: int) -> jnp.ndarray:
        """P flat parameter vectors theta_PxD drawn from the prior."""
        return jax.random.normal(key, (P, self.n_params)) * self.prior_std_D

    def sample_one(self, key: jax.Array) -> jnp.ndarray:
        return jax.random.normal(key, (self.n_params,)) * self.prior_std_D

    def apply_flat(self, theta_D: jnp.ndarray, x_NxI: jnp.ndarray) -> jnp.ndarray:
        """Outputs (N,) of the network with flat parameters theta_D."""
        return self.apply_fn(self.unravel(theta_D), x_NxI)[:, 0]

    def apply_population(self, theta_PxD: jnp.ndarray, x_NxI: jnp.ndarray) -> jnp.ndarray:
        """Outputs (P, N) of a population of networks on shared inputs."""
        return jax.vmap(self.apply_flat, in_axes=(0, None))(theta_PxD, x_NxI)

    def features(self, hidden_Dh: jnp.ndarray, x_NxI: jnp.ndarray) -> jnp.ndarray:
        """(N, H) activations of the last hidden layer for the hidden part of theta_D
        (theta_D[:-n_readout]); the output is features @ w + b with (w, b) = theta_D[-n_readout:]."""
        return self.features_fn(self.unravel_hidden(hidden_Dh), x_NxI)


def build_network(cfg: NetworkConfig, input_shape: int | tuple[int, ...]) -> Network:
    """The network of `cfg` on inputs of `input_shape` (an int n: vectors of n numbers)."""
    input_shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    b_std = cfg.sigma_b if cfg.sigma_b > 0 else None  # sigma_b = 0: no bias parameters
    layers = []
    for channels in cfg.conv_channels:
        layers += [stax.Conv(channels, (cfg.conv_kernel, cfg.conv_kernel), padding="SAME", W_std=cfg.sigma_w,
                             b_std=b_std, parameterization="standard"), stax.Relu()]
    if len(input_shape) > 1:
        layers.append(stax.Flatten())
    for width in cfg.widths:
        layers += [stax.Dense(width, W_std=cfg.sigma_w, b_std=b_std, parameterization="standard"), stax.Relu()]
    layers.append(stax.Dense(1, W_std=cfg.sigma_w, b_std=b_std, parameterization="standard"))
    init_fn, apply_fn, kernel_fn = stax.serial(*layers)
    _, features_fn, _ = stax.serial(*layers[:-1]) if len(layers) > 1 else stax.Identity()

    _, params = init_fn(jax.random.key(0), (-1, *input_shape))
    flat, unravel = ravel_pytree(params)
    # Prior std of every parameter: sigma_w / sqrt(fan_in) for weights, sigma_b for biases. stax
    # stores a Dense layer as (W, b) (W: in x out) and a Conv as (W, b) (W: rows x cols x in x out),
    # b None when there is no bias, so fan_in is the product of W's leading dimensions; Relu and
    # Flatten have ().
    std_tree = [
        () if not layer else (
            jnp.full(layer[0].shape, cfg.sigma_w / math.prod(layer[0].shape[:-1]) ** 0.5),
            None if layer[1] is None else jnp.full(layer[1].shape, cfg.sigma_b),
        )
        for layer in params
    ]
    prior_std_D, _ = ravel_pytree(std_tree)
    # a SAME convolution of stride 1 applies its kernel at every pixel; a Dense layer once
    pixels = math.prod(input_shape[:-1]) if len(input_shape) > 1 else 1
    macs = sum(layer[0].size * (pixels if layer[0].ndim == 4 else 1) for layer in params if layer)
    # ravel_pytree lays the layers out in order, so the output layer (W, b) is the flat vector's tail.
    _, unravel_hidden = ravel_pytree(params[:-1])
    n_features = params[-1][0].size
    n_readout = n_features + (0 if params[-1][1] is None else params[-1][1].size)
    return Network(init_fn, apply_fn, kernel_fn, unravel, prior_std_D, input_shape, int(macs), features_fn,
                   unravel_hidden, int(n_features), int(n_readout))
