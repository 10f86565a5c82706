"""The shared elliptical slice sampling transition (study/ess.py): blackjax's own kernel in
whitened coordinates, and the restricted Gaussian it samples against closed forms."""
import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from study import ess


def signs_0_pos_1_neg(x):
    return (x[0] > 0) & (x[1] <= 0)


def test_whitened_step_is_blackjax_elliptical_slice_bit_for_bit():
    """With the default noise the step is blackjax.elliptical_slice(mean=0, cov=1) exactly, the
    kernel the parameter-space chains were built on: their numbers do not depend on the wrapper."""
    log_indicator = lambda x: jnp.where(signs_0_pos_1_neg(x), 0.0, -jnp.inf)  # noqa: E731
    reference = blackjax.elliptical_slice(log_indicator, mean=jnp.zeros(5), cov=jnp.ones(5))
    x_CxD = jnp.abs(jax.random.normal(jax.random.key(0), (64, 5))) * jnp.array([1.0, -1.0, 1.0, 1.0, 1.0])
    keys_C = jax.random.split(jax.random.key(1), 64)

    @jax.jit
    def both(keys_C, x_CxD):
        state, info = jax.vmap(reference.step)(keys_C, jax.vmap(reference.init)(x_CxD))
        return (state.position, info.subiter), jax.vmap(ess.indicator_step(signs_0_pos_1_neg))(keys_C, x_CxD)

    (want_x, want_n), (got_x, got_n) = both(keys_C, x_CxD)
    np.testing.assert_array_equal(got_x, want_x)
    np.testing.assert_array_equal(got_n, want_n)
    assert bool(jax.vmap(signs_0_pos_1_neg)(got_x).all())


def test_chains_sample_the_restricted_gaussian():
    """x ~ N(0, I_3) given x0 > 0 >= x1: x0 and -x1 half-normal (mean sqrt(2/pi), second moment
    1), x2 standard normal. 128 independent chains, so the spread of per-chain means is an honest
    standard error."""
    step = jax.vmap(ess.indicator_step(signs_0_pos_1_neg))

    @jax.jit
    def run(key, x_CxD):
        def one(x_CxD, t):
            x_CxD, _ = step(jax.random.split(jax.random.fold_in(key, t), len(x_CxD)), x_CxD)
            return x_CxD, x_CxD
        return jax.lax.scan(one, x_CxD, jnp.arange(600))[1][100:]  # 100 steps of burn-in

    x_TxCxD = np.asarray(run(jax.random.key(2), jnp.tile(jnp.array([1.0, -1.0, 0.0]), (128, 1))))
    assert (x_TxCxD[..., 0] > 0).all() and (x_TxCxD[..., 1] <= 0).all()
    want = {"x0": (x_TxCxD[..., 0], np.sqrt(2 / np.pi)), "-x1": (-x_TxCxD[..., 1], np.sqrt(2 / np.pi)),
            "x2": (x_TxCxD[..., 2], 0.0), "x0^2": (x_TxCxD[..., 0] ** 2, 1.0), "x2^2": (x_TxCxD[..., 2] ** 2, 1.0)}
    for name, (v_TxC, exact) in want.items():
        per_chain_C = v_TxC.mean(0)
        se = per_chain_C.std(ddof=1) / np.sqrt(len(per_chain_C))
        assert se < 0.03, name
        assert abs(per_chain_C.mean() - exact) < 4.5 * se, (name, per_chain_C.mean(), exact, se)
