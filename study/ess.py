"""The study's one elliptical slice sampling (ESS) transition (Murray, Adams & MacKay 2010), from
blackjax, for a Gaussian prior restricted to a set: N(0, Sigma) times the indicator of
{x : feasible(x)}. Both chain populations use it: networks in whitened parameter space
(study/mcmc.py, Sigma = I) and the NNGP's Gaussian truncated to the training signs
(study/truncated.py, Sigma = K).

With a 0 / -inf log-likelihood the slice height log L(x) + log U = log U < 0 is exceeded by
exactly the feasible points, so a transition proposes points on the ellipse
x cos(theta) + nu sin(theta) (nu ~ N(0, Sigma)) until one is feasible, shrinking the bracket of
theta towards 0 after each rejection. ESS needs no tuning or gradients and leaves the restricted
Gaussian exactly invariant.

Why a transition ends. blackjax's slice loop has no cap. Its bracket always contains theta = 0,
where the proposal is x itself, and every rejected theta becomes the bracket's end on its side,
so the draws close in on 0. From a feasible x not exactly on the set's boundary the feasible
thetas include an interval around 0, each draw lands in it with a probability that does not
shrink to 0, and the loop ends. Rounding does not remove that interval: in float32
a small enough theta gives cos(theta) = 1 and nu_i sin(theta) below half an ulp of every nonzero
x_i, that is x itself, which feasible() accepts again as long as it answers the same for the same
x. That is exact for the truncated Gaussian (sign tests on coordinates of x); a network's forward
pass is the same computation in every step of one compiled loop (another compiled program could
in principle round a state within float error of the boundary differently). From an infeasible x
the loop need never end: every caller checks its start states.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc.elliptical_slice import EllipSliceState, elliptical_proposal


def standard_normal(key: jax.Array, x: jnp.ndarray) -> jnp.ndarray:
    """nu ~ N(0, I) shaped like x: the prior in whitened coordinates."""
    return jax.random.normal(key, x.shape, x.dtype)


def indicator_step(feasible: Callable[[jnp.ndarray], jnp.ndarray],
                   noise: Callable[[jax.Array, jnp.ndarray], jnp.ndarray] = standard_normal) -> Callable:
    """One ESS transition for N(0, Sigma) restricted to {x : feasible(x)}, for one chain.

    feasible(x) -> scalar bool; noise(key, x) -> nu ~ N(0, Sigma) shaped like x (default: Sigma =
    I, whitened coordinates). Returns step(key, x) -> (x_new, proposals), jittable and vmappable
    over chains; proposals >= 1 counts the points tried (feasible() calls), blackjax's `subiter`.
    Precondition: feasible(x) (see the module docstring: otherwise the step need not end)."""
    def log_indicator(x):
        return jnp.where(feasible(x), 0.0, -jnp.inf)

    def step(key: jax.Array, x: jnp.ndarray):
        # The zero mean is an array of x's shape, not a scalar XLA can fold away: the folded form
        # rounds x cos + nu sin differently, and the parameter-space chains' numbers are this form's.
        propose = elliptical_proposal(log_indicator, noise, np.zeros(x.shape, x.dtype))
        # x is feasible: its log-likelihood is 0, so blackjax's slice height is log U < 0.
        state, info = propose(key, EllipSliceState(x, jnp.zeros((), x.dtype)))
        return state.position, info.subiter

    return step
