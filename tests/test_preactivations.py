"""study/preactivations.py: its parameters reproduce the pre-activations they were drawn from, have
the prior's law when the pre-activations have theirs, and its zero-error points compute the same
functions on E as plain rejection's (mcmc.init_from_rejection)."""
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64
from jax.flatten_util import ravel_pytree
from scipy import stats

from study import mcmc, preactivations
from study.config import NetworkConfig
from study.geometry import functions_on_E
from study.network import build_network
from study.tasks import Task, image_task, make_task


def chi2_pvalue(a: Counter, b: Counter, min_count: int = 5) -> float:
    """Two-sample chi-square test of two function counts (functions seen fewer than min_count times
    in both pooled into one cell)."""
    keys = sorted(set(a) | set(b))
    rare = [k for k in keys if a[k] + b[k] < min_count]
    table = np.array([[c[k] for k in keys if k not in rare] + [sum(c[k] for k in rare)] for c in (a, b)])
    return stats.chi2_contingency(table[:, table.sum(0) > 0])[1]


def draw(net, x_mxI, keys, correct=True):
    """Pre-activations of each key's draw on x and the parameters given them (float64); correct=False
    is the least-norm solution (no prior noise), a wrong variant."""
    layers = preactivations.dense_layers(net)
    template = net.unravel(jnp.zeros(net.n_params))
    with enable_x64():
        x = jnp.asarray(np.asarray(x_mxI, np.float64).reshape(len(x_mxI), -1))
        zs = jax.vmap(lambda k: preactivations._preactivations(layers, x, k))(keys)
        if correct:
            theta = jax.vmap(lambda k, z: preactivations._parameters(layers, template, x, k, z))(keys, zs)
        else:
            theta = jax.vmap(lambda z: least_norm(layers, template, x, z))(zs)
        return [np.asarray(z) for z in zs], np.asarray(theta)


def least_norm(layers, template, x, zs):
    """The wrong variant: each layer's smallest-prior-norm parameters that reproduce zs."""
    h, out, i = x, [], 0
    for slot in template:
        if not slot:
            out.append(slot)
            continue
        layer, has_bias = layers[i], slot[1] is not None
        A = jnp.concatenate([h, jnp.ones((len(h), 1))], axis=1) if has_bias else h
        var = jnp.concatenate([jnp.full(layer.fan_in, layer.var_w), jnp.full(int(has_bias), layer.var_b)])
        w = (var[:, None] * A.T) @ jnp.linalg.solve((A * var) @ A.T, zs[i])
        out.append((w[:layer.fan_in], w[layer.fan_in].reshape(slot[1].shape) if has_bias else None))
        h, i = jax.nn.relu(zs[i]), i + 1
    return ravel_pytree(out)[0]


@pytest.mark.parametrize("sigma_b", [1.0, 0.0])
def test_parameters_reproduce_their_preactivations(sigma_b):
    """Run forward on S, the drawn parameters give the outputs that were sampled for them (float64),
    with biases and without; the image network's too."""
    task = make_task(7, "majority", 10, 10, 0)
    net = build_network(NetworkConfig(widths=(40, 40), sigma_w=1.0, sigma_b=sigma_b), 7)
    zs, theta = draw(net, task.x_train, jax.random.split(jax.random.key(0), 64))
    with enable_x64():
        out = np.asarray(net.apply_population(jnp.asarray(theta), jnp.asarray(task.x_train, jnp.float64)))
    np.testing.assert_allclose(out, zs[-1][..., 0], rtol=1e-9, atol=1e-9)
    image = image_task("digits", 10, 4, 0, balanced=True)
    inet = build_network(NetworkConfig(widths=(32, 32), sigma_w=1.0, sigma_b=0.1), image.input_shape)
    zs, theta = draw(inet, image.x_train, jax.random.split(jax.random.key(1), 8))
    with enable_x64():
        out = np.asarray(inet.apply_population(jnp.asarray(theta), jnp.asarray(image.x_train, jnp.float64)))
    np.testing.assert_allclose(out, zs[-1][..., 0], rtol=1e-8, atol=1e-9)


def test_parameters_given_their_preactivations_have_the_prior_law():
    """Pre-activations drawn from their law, then parameters given them: the parameters are prior
    draws. Kolmogorov-Smirnov against plain prior draws on every parameter's standardised value and on
    the outputs at inputs outside S (which involve every layer), 4,000 draws each; the least-norm
    parameters (no prior noise, also reproducing the pre-activations) are rejected."""
    task = make_task(7, "majority", 6, 10, 0)
    net = build_network(NetworkConfig(widths=(16, 16), sigma_w=1.0, sigma_b=1.0), 7)
    keys = jax.random.split(jax.random.key(2), 4000)
    _, theta = draw(net, task.x_train, keys)
    _, wrong = draw(net, task.x_train, keys, correct=False)
    prior = np.asarray(net.sample_prior(jax.random.key(3), 4000), np.float64)
    std = np.asarray(net.prior_std_D)

    def pvalues(t):
        coords = stats.ks_2samp((t / std).ravel()[::7], (prior / std).ravel()[::7]).pvalue
        outs = [stats.ks_2samp(np.asarray(net.apply_population(jnp.asarray(t, jnp.float32), task.x_test))[:, j],
                               np.asarray(net.apply_population(jnp.asarray(prior, jnp.float32), task.x_test))[:, j]).pvalue
                for j in range(4)]
        return coords, min(1.0, min(outs) * len(outs))  # Bonferroni over the four outputs

    assert min(pvalues(theta)) > 1e-3
    assert min(pvalues(wrong)) < 1e-6


def test_zero_error_points_compute_the_functions_plain_rejection_finds():
    """7-16-16-1 with sigma_b = 1 at m = 6, |E| = 4: the functions on E of 3,000 zero-error points
    from pre-activations against 3,000 from plain prior rejection (chi-square); plain rejection on
    the network without biases (another prior) is rejected by the same test."""
    task = make_task(7, "majority", 6, 4, 0)
    net = build_network(NetworkConfig(widths=(16, 16), sigma_w=1.0, sigma_b=1.0), 7)
    no_bias = build_network(NetworkConfig(widths=(16, 16), sigma_w=1.0, sigma_b=0.0), 7)
    points = preactivations.zero_error_points(net, task, jax.random.key(4), 3000, batch=2048)
    assert points.theta_PxD.shape == (3000, net.n_params) and points.refit_failures == 0
    assert points.fitted >= 3000 and points.draws % 2048 == 0
    assert mcmc.fits_training_set(net, task, points.theta_PxD).all()
    new = Counter(functions_on_E(net, task, points.theta_PxD))
    plain = Counter(functions_on_E(net, task, mcmc.init_from_rejection(net, task, jax.random.key(5), 3000)))
    other = Counter(functions_on_E(no_bias, task, mcmc.init_from_rejection(no_bias, task, jax.random.key(6), 3000)))
    assert len(new) >= 8
    assert chi2_pvalue(new, plain) > 1e-3
    assert chi2_pvalue(new, other) < 1e-6


def test_more_fits_in_a_batch_than_one_call_returns_are_all_kept():
    """per_call below the fits of a batch: the rest are fetched by further calls on the same batch,
    giving the same points as one call that returns them all."""
    task = make_task(7, "majority", 2, 4, 0)
    net = build_network(NetworkConfig(widths=(8, 8), sigma_w=1.0, sigma_b=1.0), 7)
    few = preactivations.zero_error_points(net, task, jax.random.key(7), 300, batch=256, per_call=16)
    many = preactivations.zero_error_points(net, task, jax.random.key(7), 300, batch=256, per_call=256)
    np.testing.assert_array_equal(few.theta_PxD, many.theta_PxD)
    assert few.fitted == many.fitted and few.draws == many.draws


def test_convolutions_and_non_finite_outputs_are_refused_and_repeated_inputs_are_not():
    image = image_task("digits", 6, 4, 0)
    cnn = build_network(NetworkConfig(widths=(8,), sigma_w=1.0, sigma_b=0.1, conv_channels=(4,)), image.input_shape)
    with pytest.raises(ValueError, match="fully connected"):
        preactivations.zero_error_points(cnn, image, jax.random.key(0), 1)
    task = make_task(7, "majority", 4, 2, 0)
    net = build_network(NetworkConfig(widths=(8,), sigma_w=1.0, sigma_b=0.0), 7)
    bad = Task(np.where(np.arange(len(task.x))[:, None] == task.train_idx[0], np.nan, task.x), task.target,
               task.train_idx, task.test_idx)
    with pytest.raises(RuntimeError, match="not finite"):
        preactivations.zero_error_points(net, bad, jax.random.key(0), 1, batch=64)
    # S holding one input twice makes every layer's covariance on S singular (without biases): the
    # two outputs are then equal, not an error
    dup = Task(task.x, task.target, np.concatenate([task.train_idx, task.train_idx[:1]]), task.test_idx)
    points = preactivations.zero_error_points(net, dup, jax.random.key(0), 50, batch=256)
    out = np.asarray(net.apply_population(jnp.asarray(points.theta_PxD), dup.x_train))
    np.testing.assert_allclose(out[:, -1], out[:, 0], rtol=1e-5, atol=1e-6)
    assert points.refit_failures == 0
