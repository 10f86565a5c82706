"""The one network definition shared by every arm: a fully connected ReLU net built with
neural-tangents stax in the *standard* parameterisation, so that the stored parameters are the
prior draws themselves: W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2).

`Network` bundles stax's (init_fn, apply_fn, kernel_fn) with a flat view of the parameters, so a
population of P networks is one (P, D) array of standard normals scaled by `prior_std_D`.
"""
from __future__ import annotations

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
    n_in: int
    macs_per_input: int  # multiply-adds of one forward pass on one input (weights only)
    features_fn: Callable  # features_fn(hidden_params, x_NxI) -> (N, H): the last hidden layer's activations
    unravel_hidden: Callable  # (D - n_readout,) -> the hidden layers' params pytree
    n_features: int  # H, the last hidden layer's width (n_in without hidden layers)
    n_readout: int  # parameters of the output layer (H weights, plus 1 bias); the last n_readout of theta_D

    @property
    def n_params(self) -> int:
        return int(self.prior_std_D.shape[0])


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


def build_network(cfg: NetworkConfig, n_in: int) -> Network:
    b_std = cfg.sigma_b if cfg.sigma_b > 0 else None  # sigma_b = 0: no bias parameters
    layers = []
    for width in cfg.widths:
        layers += [stax.Dense(width, W_std=cfg.sigma_w, b_std=b_std, parameterization="standard"), stax.Relu()]
    layers.append(stax.Dense(1, W_std=cfg.sigma_w, b_std=b_std, parameterization="standard"))
    init_fn, apply_fn, kernel_fn = stax.serial(*layers)
    _, features_fn, _ = stax.serial(*layers[:-1]) if cfg.widths else stax.Identity()

    _, params = init_fn(jax.random.key(0), (-1, n_in))
    flat, unravel = ravel_pytree(params)
    # Prior std of every parameter: sigma_w / sqrt(fan_in) for weights, sigma_b for biases.
    # stax stores a Dense layer as (W, b) with b None when there is no bias; Relu has ().
    std_tree = [
        () if not layer else (
            jnp.full(layer[0].shape, cfg.sigma_w / layer[0].shape[0] ** 0.5),
            None if layer[1] is None else jnp.full(layer[1].shape, cfg.sigma_b),
        )
        for layer in params
    ]
    prior_std_D, _ = ravel_pytree(std_tree)
    macs = sum(layer[0].size for layer in params if layer)
    # ravel_pytree lays the layers out in order, so the output layer (W, b) is the flat vector's tail.
    _, unravel_hidden = ravel_pytree(params[:-1])
    n_features = params[-1][0].size
    n_readout = n_features + (0 if params[-1][1] is None else params[-1][1].size)
    return Network(init_fn, apply_fn, kernel_fn, unravel, prior_std_D, n_in, int(macs), features_fn,
                   unravel_hidden, int(n_features), int(n_readout))
