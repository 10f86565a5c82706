import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.config import NetworkConfig
from study.network import build_network
from study.tasks import boolean_inputs


def relu_expectation(k11, k22, k12):
    """E[relu(u) relu(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]) (arc-cosine kernel, degree 1)."""
    norm = np.sqrt(k11 * k22)
    t = np.arccos(np.clip(k12 / norm, -1, 1))
    return norm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))


def test_nngp_kernel_matches_arccosine_recursion():
    sigma_w = 1.3
    net = build_network(NetworkConfig(widths=(64, 64), sigma_w=sigma_w, sigma_b=0.0), 5)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    k = sigma_w**2 * x @ x.T / 5  # first-layer pre-activation covariance
    for _ in range(2):  # two hidden ReLU layers, each followed by a fan-in normalised Dense layer
        d = np.diag(k)
        k = sigma_w**2 * relu_expectation(d[:, None], d[None, :], k)
    nngp = np.asarray(net.kernel_fn(jnp.asarray(x), None, "nngp"))
    np.testing.assert_allclose(nngp, k, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sigma_b", [0.0, 0.7])
def test_prior_matches_stax_init(sigma_b):
    net = build_network(NetworkConfig(widths=(40, 40), sigma_w=1.5, sigma_b=sigma_b), 7)
    n_weights = 7 * 40 + 40 * 40 + 40
    assert net.n_params == n_weights + (81 if sigma_b > 0 else 0)
    assert net.macs_per_input == n_weights
    theta = net.sample_prior(jax.random.key(0), 4000)
    ours = jax.tree.leaves(jax.vmap(net.unravel)(theta))
    stax = jax.tree.leaves(jax.vmap(lambda k: net.init_fn(k, (-1, 7))[1])(jax.random.split(jax.random.key(1), 4000)))
    assert len(ours) == len(stax)
    for a, b in zip(ours, stax):
        assert a.shape == b.shape
        expected = sigma_b if a.shape[1] == 1 else 1.5 / np.sqrt(a.shape[1])  # biases have shape (P, 1, width)
        np.testing.assert_allclose(np.std(np.asarray(a)), expected, rtol=0.03)
        np.testing.assert_allclose(np.std(np.asarray(b)), expected, rtol=0.03)


def test_population_forward_equals_stax_apply(net7):
    theta = net7.sample_prior(jax.random.key(2), 5)
    x = jnp.asarray(boolean_inputs(7))
    batch = net7.apply_population(theta, x)
    for p in range(5):
        single = net7.apply_fn(net7.unravel(theta[p]), x)[:, 0]
        np.testing.assert_allclose(batch[p], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("widths, sigma_b", [((40, 40), 0.0), ((8,), 1.0), ((), 0.5), ((5, 3), 0.3)])
def test_features_times_the_output_layer_is_the_forward_pass(widths, sigma_b):
    """The grouped rejection sampler splits theta_D into hidden layers (features) and the output
    layer, the last n_readout entries: features @ w + b must be apply_flat's output exactly."""
    net = build_network(NetworkConfig(widths=widths, sigma_b=sigma_b), 7)
    x = jax.random.normal(jax.random.key(1), (5, 7))
    R, H = net.n_readout, net.n_features
    assert R == H + (sigma_b > 0) and H == (widths[-1] if widths else 7)
    for theta in net.sample_prior(jax.random.key(0), 3):
        out = net.features(theta[:-R], x) @ theta[-R:][:H] + theta[-R:][H:].sum()
        np.testing.assert_allclose(out, net.apply_flat(theta, x), rtol=1e-6, atol=1e-6)


def cnn(conv_channels, widths=(), conv_kernel=3, sigma_b=0.3):
    from study.tasks import image_task

    x = image_task("digits", 3, 2, seed=0).x  # five 8x8 digits
    return build_network(NetworkConfig(widths=widths, sigma_w=1.4, sigma_b=sigma_b, conv_channels=conv_channels,
                                       conv_kernel=conv_kernel), x.shape[1:]), jnp.asarray(x)


def test_cnn_prior_matches_stax_init_and_its_features_split():
    net, x = cnn((3, 2), widths=(6,))
    assert net.n_params == (9 * 1 * 3 + 3) + (9 * 3 * 2 + 2) + (128 * 6 + 6) + (6 + 1)
    assert net.macs_per_input == 64 * (9 * 3 + 9 * 3 * 2) + 128 * 6 + 6
    theta = net.sample_prior(jax.random.key(0), 3000)
    ours = jax.tree.leaves(jax.vmap(net.unravel)(theta))
    stax = jax.tree.leaves(jax.vmap(lambda k: net.init_fn(k, (-1, 8, 8, 1))[1])(jax.random.split(jax.random.key(1), 3000)))
    for a, b in zip(ours, stax, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.std(np.asarray(a)), np.std(np.asarray(b)), rtol=0.04)
    R, H = net.n_readout, net.n_features
    for th in theta[:2]:
        out = net.features(th[:-R], x) @ th[-R:][:H] + th[-R:][H:].sum()
        np.testing.assert_allclose(out, net.apply_flat(th, x), rtol=1e-5, atol=1e-6)


def test_cnn_nngp_kernel_matches_monte_carlo_over_finite_networks():
    """One convolution + ReLU, flattened into the output layer: the prior covariance of the outputs
    of finite networks equals the NNGP kernel exactly (the convolution's pre-activations are
    Gaussian at any width), so the Monte Carlo covariance of 40,000 networks must match stax's
    kernel within its sampling error, and a kernel with another filter size must not."""
    net, x = cnn((4,))
    P = 40_000
    f = np.asarray(net.apply_population(net.sample_prior(jax.random.key(3), P), x), np.float64)
    mc = f.T @ f / P
    se = np.sqrt((np.einsum("pi,pj->ij", f**2, f**2) / P - mc**2) / P)  # standard error of each entry
    kernel = np.asarray(net.kernel_fn(x, None, "nngp"), np.float64)
    assert np.max(np.abs(mc - kernel) / se) < 4.5
    wrong, _ = cnn((4,), conv_kernel=5)
    wrong_kernel = np.asarray(wrong.kernel_fn(x, None, "nngp"), np.float64)
    assert np.max(np.abs(mc - wrong_kernel) / se) > 7
