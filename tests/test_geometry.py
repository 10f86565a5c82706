import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from study import geometry
from study.config import NetworkConfig
from study.network import build_network
from study.tasks import boolean_inputs


@pytest.fixture(scope="module")
def small():
    """A 4-6-5-1 ReLU net with biases (D = 72) and m = 6 of the 16 Boolean inputs."""
    net = build_network(NetworkConfig(widths=(6, 5), sigma_w=1.5, sigma_b=0.3), 4)
    x = jnp.asarray(boolean_inputs(4), jnp.float32)
    return net, x, x[:6]


def test_jacobian_gram_is_the_neural_tangents_empirical_ntk(small):
    net, x, _ = small
    theta = net.sample_one(jax.random.key(0))
    J = geometry.jacobian(net, theta, x)
    ntk = nt.empirical_ntk_fn(net.apply_fn, trace_axes=(-1,), implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
    reference = ntk(x, None, net.unravel(theta))
    np.testing.assert_allclose(J @ J.T, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_hessian_equals_scaled_ntk_gram_at_constructed_zero_loss_point(small, seed):
    """Labels y := f(theta) make theta an exact MSE interpolation: eig(H) = eig((2/m) Theta_S) + zeros."""
    net, _, x_S = small
    theta = net.sample_one(jax.random.key(seed))
    y = net.apply_flat(theta, x_S)
    m = len(y)
    H = geometry.dense_hessian(geometry.training_loss(net, "mse", x_S, y), theta)
    eig_H = np.sort(np.linalg.eigvalsh(np.asarray(H, np.float64)))[::-1]
    J = np.asarray(geometry.jacobian(net, theta, x_S), np.float64)
    eig_K = np.sort(np.linalg.eigvalsh(2 / m * J @ J.T))[::-1]
    scale = eig_K[0]
    np.testing.assert_allclose(eig_H[:m], eig_K, atol=1e-4 * scale)
    assert np.abs(eig_H[m:]).max() < 1e-4 * scale
    # the m x m Gauss-Newton Gram of the module gives the same numbers
    G = geometry.gauss_newton_gram(jnp.asarray(J, jnp.float32), geometry.loss_curvature("mse", y, y))
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(G))[::-1], eig_K, rtol=1e-4, atol=1e-6 * scale)


def test_interpolate_reaches_exact_fit_and_the_identity_holds(small):
    net, _, x_S = small
    y = jnp.array([1.0, -1, 1, 1, -1, -1])
    res = geometry.interpolate(net, net.sample_one(jax.random.key(3)), x_S, y)
    assert bool(res.converged) and 0 < int(res.steps) < 50  # stopped at the floor, not at the cap
    fit = float(jnp.abs(net.apply_flat(res.theta_D, x_S) - y).max())
    assert fit == float(res.residual) <= float(geometry.interpolation_tol(y))
    s = geometry.identity_spectra(net, res.theta_D, x_S, y)
    np.testing.assert_allclose(s["mse_hessian"][:6], s["mse_gn"], rtol=1e-3, atol=1e-4 * float(s["mse_gn"][0]))
    assert float(s["mse_residual_norm"]) < 1e-3 * float(s["mse_gn"][0])
    # cross-entropy at the same point is not at a minimum: its residual part does not vanish
    assert float(s["ce_residual_norm"]) > 1e-2 * float(s["ce_gn"][0])


@pytest.mark.parametrize("seed", range(8))
def test_interpolate_never_raises_the_residual(small, seed):
    """Every accepted step lowers max|f - y|: the residual after k steps falls with k."""
    net, _, x_S = small
    y = jnp.array([1.0, -1, 1, 1, -1, -1])
    theta = net.sample_one(jax.random.key(seed))
    residuals = [float(geometry.interpolate(net, theta, x_S, y, max_steps=k).residual) for k in range(0, 12)]
    assert all(np.isfinite(residuals))
    assert all(b <= a for a, b in zip(residuals, residuals[1:]))


def test_interpolate_from_an_exact_fit_takes_no_step(small):
    net, _, x_S = small
    theta = net.sample_one(jax.random.key(4))
    res = geometry.interpolate(net, theta, x_S, net.apply_flat(theta, x_S))
    assert int(res.steps) == 0 and bool(res.converged) and float(res.residual) == 0.0
    np.testing.assert_array_equal(res.theta_D, theta)


def test_interpolate_reports_an_impossible_fit_and_stays_finite(small):
    """Two copies of one input with opposite targets: no theta fits both (the residual is >= 1), and
    the Jacobian has two equal rows, so J J^T is singular. Without the ridge the Gauss-Newton
    solve returns non-finite numbers, which an unguarded step would write into theta."""
    net, _, x_S = small
    x = jnp.concatenate([x_S[:3], x_S[:1]])
    y = jnp.array([1.0, -1, 1, -1])
    theta = net.sample_one(jax.random.key(2))
    J = geometry.jacobian(net, theta, x)
    unguarded = theta - J.T @ jnp.linalg.solve(J @ J.T, net.apply_flat(theta, x) - y)
    fit_before = float(jnp.abs(net.apply_flat(theta, x) - y).max())
    fit_unguarded = float(jnp.abs(net.apply_flat(unguarded, x) - y).max())
    assert not np.isfinite(fit_unguarded) or fit_unguarded > fit_before  # the wrong variant: a NaN or worse step
    for ridge in (1e-10, 0.0):
        res = geometry.interpolate(net, theta, x, y, ridge=ridge)
        assert not bool(res.converged)
        assert bool(jnp.isfinite(res.theta_D).all())
        assert 1.0 - 1e-5 <= float(res.residual) <= fit_before


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_lanczos_top_eigenvalues_match_dense(small, loss):
    net, _, x_S = small
    theta = net.sample_one(jax.random.key(5))
    y = jnp.array([1.0, -1, 1, 1, -1, -1])
    loss_fn = geometry.training_loss(net, loss, x_S, y)
    dense = np.sort(np.linalg.eigvalsh(np.asarray(geometry.dense_hessian(loss_fn, theta))))[::-1]
    top = geometry.lanczos_top(geometry.hvp_fn(loss_fn, theta), jax.random.key(1), net.n_params, 4, 30)
    np.testing.assert_allclose(top.values_K, dense[:4], rtol=1e-3, atol=1e-5 * dense[0])
    assert bool(top.converged) and float(top.residual_K.max()) < 1e-3


@pytest.mark.parametrize("spectrum", ["rank_3", "zero"])
def test_lanczos_top_reports_a_krylov_space_that_runs_out(spectrum):
    """An operator of rank 3 (or 0) in D = 50 with 20 matvecs: the Krylov space is invariant after
    4 (or 1) steps and matfree goes on from rounding noise, so its Ritz values can come out wrong
    (here: a top "eigenvalue" far above 5) or NaN. The flag must be True exactly when the values
    are right."""
    truth = np.array([5.0, 2.0, 1.0, 0.0, 0.0]) if spectrum == "rank_3" else np.zeros(5)
    d = jnp.zeros(50).at[:3].set(jnp.asarray(truth[:3], jnp.float32))
    top = geometry.lanczos_top(lambda v: d * v, jax.random.key(0), 50, 5, 20)
    right = bool(np.allclose(top.values_K, truth, atol=1e-2))
    assert bool(top.converged) == right
    assert not right  # on this case matfree's answer is wrong, so the check is exercised


def test_a_hessian_product_that_returns_nan_is_reported_not_used():
    """A broken operator (NaN products): Lanczos says it did not converge and Hutchinson's trace is
    not finite, which make_point_measures folds into hess_<loss>_converged = False."""
    broken = lambda v: jnp.full_like(v, jnp.nan)
    assert not bool(geometry.lanczos_top(broken, jax.random.key(0), 20, 3, 10).converged)
    mean, se = geometry.hutchinson_trace(broken, jax.random.key(1), 20, 8)
    assert not np.isfinite(float(mean))


def test_lanczos_top_on_a_full_spectrum_converges():
    d = jnp.linspace(1.0, 10.0, 50) ** 3
    top = geometry.lanczos_top(lambda v: d * v, jax.random.key(0), 50, 3, 30)
    assert bool(top.converged)
    np.testing.assert_allclose(top.values_K, np.sort(np.asarray(d))[::-1][:3], rtol=1e-4)


def test_hutchinson_trace_within_its_standard_error(small):
    net, _, x_S = small
    theta = net.sample_one(jax.random.key(6))
    loss_fn = geometry.training_loss(net, "ce", x_S, jnp.array([1.0, -1, 1, 1, -1, -1]))
    exact = float(jnp.trace(geometry.dense_hessian(loss_fn, theta)))
    z = []
    for seed in range(20):
        mean, se = geometry.hutchinson_trace(geometry.hvp_fn(loss_fn, theta), jax.random.key(seed), net.n_params, 200)
        assert se > 0
        z.append((float(mean) - exact) / float(se))
    z = np.array(z)
    assert np.abs(z).max() < 4.5  # 20 estimates, each within 4.5 standard errors
    assert 0.5 < np.std(z) < 1.6  # the reported standard error is the actual spread


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(0, 20), st.floats(1e-3, 1e3))
def test_effective_ranks_of_flat_spectra(r, zeros, level):
    stats = geometry.spectrum_stats(jnp.array([level] * r + [0.0] * zeros), geometry.REL_THRESHOLDS)
    assert float(stats["participation_ratio"]) == pytest.approx(r, rel=1e-4)
    assert float(stats["entropy_rank"]) == pytest.approx(r, rel=1e-4)
    assert int(stats["n_above_0.01"]) == r and float(stats["top"]) == pytest.approx(level, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1e3), min_size=2, max_size=30).filter(lambda v: sum(v) > 1e-3))
def test_participation_ratio_at_most_entropy_rank_at_most_support(values):
    """Renyi entropies fall with their order: PR = exp(H_2) <= exp(H_1) <= number of non-zero eigenvalues."""
    lam = np.array(values)
    stats = geometry.spectrum_stats(jnp.asarray(lam, jnp.float32), geometry.REL_THRESHOLDS)
    support = int((lam > 0).sum())
    assert 1 - 1e-4 <= float(stats["participation_ratio"]) <= float(stats["entropy_rank"]) * (1 + 1e-4)
    assert float(stats["entropy_rank"]) <= support * (1 + 1e-4)


def test_log_det_delta():
    lam = jnp.array([1.0, 0.1, 0.0, -1e-3])
    assert float(geometry.log_det_delta(lam, 0.1)) == pytest.approx(np.log(11) + np.log(2), rel=1e-5)


def test_basin_radius_of_a_linear_classifier_is_its_first_margin_crossing():
    """For f(x) = w.x the sign of x_i flips along w + r u at r_i = -w.x_i / u.x_i (when positive);
    the radius is the smallest such r_i, or inf when no sign ever flips."""
    net = build_network(NetworkConfig(widths=()), 5)  # a perceptron, no bias: theta = w
    x = jnp.asarray(boolean_inputs(5)[:12], jnp.float32)
    w = net.sample_one(jax.random.key(0))
    positive = net.apply_flat(w, x) > 0
    radii = jnp.geomspace(1e-3, 1e3, 64)
    got = np.asarray(geometry.basin_radii(net, w, x, positive, jax.random.key(1), 32, radii, bisections=30))
    u = np.asarray(jax.random.normal(jax.random.key(1), (32, 5)))
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    crossing = -(np.asarray(x) @ np.asarray(w))[None, :] / (u @ np.asarray(x).T)
    crossing[crossing <= 0] = np.inf
    want = crossing.min(axis=1)
    want[want > 1e3] = np.inf
    finite = np.isfinite(want)
    assert finite.sum() > 5
    np.testing.assert_array_equal(np.isinf(got), ~finite)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4)


def test_basin_radius_of_a_point_with_training_errors_is_zero():
    """Outside the zero-error set the radius is 0 in every direction, not a bisection artefact."""
    net = build_network(NetworkConfig(widths=()), 5)
    x = jnp.asarray(boolean_inputs(5)[:12], jnp.float32)
    w = net.sample_one(jax.random.key(0))
    positive = (net.apply_flat(w, x) > 0).at[0].set(~(net.apply_flat(w, x)[0] > 0))  # one label flipped
    got = geometry.basin_radii(net, w, x, positive, jax.random.key(1), 16, jnp.geomspace(1e-3, 1e3, 32))
    np.testing.assert_array_equal(got, 0.0)


def test_point_measures_batch(small):
    net, x, _ = small
    train_idx = np.arange(6)
    y = np.array([1.0, -1, 1, 1, -1, -1])
    measure = geometry.make_point_measures(net, x, train_idx, y, top_k=3, lanczos_matvecs=20, hutchinson_samples=16,
                                           delta=1e-3, directions=8, radii_G=np.geomspace(1e-3, 10, 16))
    theta = jax.vmap(net.sample_one)(jax.random.split(jax.random.key(0), 5))
    out = measure(theta, jax.random.split(jax.random.key(1), 5))
    assert all(v.shape == (5,) for v in out.values())
    # GN top for MSE is (2/m) times the NTK Gram's top on S
    np.testing.assert_allclose(out["gn_mse_top"], 2 / 6 * out["ntk_S_top"], rtol=1e-4)
    assert np.all(np.asarray(out["ntk_S_entropy_rank"]) <= 6 + 1e-3)


def test_point_measures_pad_a_short_block_without_changing_the_points(small):
    """A batch that is not a whole number of blocks is padded (copies of its last point, whose
    measures are dropped): each point's numbers are bit-for-bit those it gets inside a full batch,
    whatever the padding asked for; a padding that is not a whole number of blocks is refused."""
    net, x, _ = small
    y = np.array([1.0, -1, 1, 1, -1, -1])
    measure = geometry.make_point_measures(net, x, np.arange(6), y, top_k=3, lanczos_matvecs=20, hutchinson_samples=16,
                                           delta=1e-3, directions=8, radii_G=np.geomspace(1e-3, 10, 16))
    theta = jax.vmap(net.sample_one)(jax.random.split(jax.random.key(0), 2 * geometry.POINT_BLOCK))
    keys = jax.random.split(jax.random.key(1), 2 * geometry.POINT_BLOCK)
    full = jax.device_get(measure(theta, keys))
    for P, pad_to in ((5, geometry.POINT_BLOCK), (11, geometry.POINT_BLOCK), (5, 2 * geometry.POINT_BLOCK)):
        short = jax.device_get(measure(theta[:P], keys[:P], pad_to=pad_to))
        assert set(short) == set(full)
        for name in full:
            assert short[name].shape == (P,)
            np.testing.assert_array_equal(short[name], full[name][:P], err_msg=f"{name} at P = {P}, pad_to = {pad_to}")
    with pytest.raises(ValueError, match="multiple"):
        measure(theta[:5], keys[:5], pad_to=geometry.POINT_BLOCK + 1)
