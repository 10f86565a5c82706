import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from study import sgd
from study.config import NetworkConfig, SGDConfig, SGDSetting
from study.encoding import words_to_hex, bits_to_hex
from study.network import build_network
from study.tasks import make_task

TASK = make_task(7, "majority", 10, 10, 0)
NET = build_network(NetworkConfig(widths=(16, 16)), 7)


def train(setting, runs, pool, first=0, max_steps=2000, check_every=4, task=TASK, net=NET):
    cfg = SGDConfig(runs=runs, chunk_runs=runs, pool=pool, max_steps=max_steps, check_every=check_every,
                    settings=(setting,))
    return jax.device_get(sgd.make_chunk_trainer(net, task, setting, cfg, runs)(jax.random.key(3), first))


def reference_run(setting, run_id, max_steps=2000, task=TASK, net=NET):
    """One network at a time, in plain Python, with the key scheme documented in study/sgd.py."""
    run_key = jax.random.fold_in(jax.random.key(3), run_id)
    theta = net.sample_one(jax.random.fold_in(run_key, sgd.INIT_STREAM))
    opt, ell = sgd.make_optimizer(setting), sgd.per_example_loss(setting.loss)
    state = opt.init(theta)
    x, y = jnp.asarray(task.x_train), jnp.where(jnp.asarray(task.y_train), 1.0, -1.0)
    m, B = len(y), setting.batch_size
    fits = lambda t: bool(jnp.all((net.apply_flat(t, x) > 0) == (y > 0)))
    step = 0
    while not (fits(theta) and step >= setting.min_steps) and step < max_steps:
        epoch, pos = divmod(step, m // B)
        order = (jnp.arange(m) if B == m else
                 jax.random.permutation(jax.random.fold_in(jax.random.fold_in(run_key, sgd.BATCH_STREAM), epoch), m))
        idx = order[pos * B:(pos + 1) * B]
        grads = jax.grad(lambda t: jnp.mean(ell(net.apply_flat(t, x[idx]), y[idx])))(theta)
        updates, state = opt.update(grads, state, theta)
        theta = optax.apply_updates(theta, updates)
        step += 1
    out_E = net.apply_flat(theta, jnp.asarray(task.x_test))
    return step, fits(theta), bits_to_hex(np.asarray(out_E) > 0)


@pytest.mark.parametrize("setting", [SGDSetting("s", "sgd", 0.1, 2, "ce"), SGDSetting("a", "adam", 0.01, 5, "mse"),
                                     SGDSetting("f", "sgd", 0.1, 10, "ce"),
                                     SGDSetting("w", "sgd", 0.1, 2, "ce", weight_decay=0.05, min_steps=30)],
                         ids=lambda s: s.optimizer + str(s.batch_size) + ("_wd" if s.weight_decay else ""))
def test_population_matches_one_at_a_time_reference(setting):
    out = train(setting, runs=24, pool=8)
    functions = words_to_hex(out["words"], 10)
    for r in (0, 5, 23):
        steps, fitted, function = reference_run(setting, r)
        assert (int(out["steps"][r]), bool(out["fitted"][r])) == (steps, fitted)
        assert functions[r] == function


def test_fits_and_records_every_run():
    out = train(SGDSetting("s", "sgd", 0.1, 2, "ce"), runs=64, pool=16)
    assert out["fitted"].all() and len(out["steps"]) == 64
    # every training input on the right side of 0 puts each cross-entropy term softplus(-margin)
    # below log 2: the recorded loss is the fitted network's, not a stale one from an earlier step
    assert (out["loss"] < np.log(2)).all()


def test_runs_that_cannot_fit_are_recorded_not_dropped():
    hard = make_task(7, "parity", 32, 16, 0)
    out = train(SGDSetting("s", "sgd", 1e-6, 8, "ce"), runs=16, pool=4, max_steps=3, task=hard)
    assert len(out["fitted"]) == 16 and not out["fitted"].any()
    assert (out["steps"] == 3).all()


def test_run_results_do_not_depend_on_pool_chunk_or_round_length():
    setting = SGDSetting("s", "sgd", 0.1, 2, "ce")
    a = train(setting, runs=32, pool=32)
    b = train(setting, runs=32, pool=5, check_every=9)
    c = train(setting, runs=16, pool=8, first=16)
    for k in ("steps", "fitted", "words"):
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k][16:], c[k])


def test_weight_decay_is_an_l2_penalty_in_the_loss():
    """One SGD step with weight decay w equals a plain step on the loss + (w / 2) |theta|^2."""
    theta = NET.sample_one(jax.random.key(0))
    x, y = jnp.asarray(TASK.x_train), jnp.where(jnp.asarray(TASK.y_train), 1.0, -1.0)
    loss = lambda t: jnp.mean(sgd.per_example_loss("ce")(NET.apply_flat(t, x), y))
    setting = SGDSetting("w", "sgd", 0.1, 10, "ce", weight_decay=0.3)
    opt = sgd.make_optimizer(setting)
    updates, _ = opt.update(jax.grad(loss)(theta), opt.init(theta), theta)
    penalised = jax.grad(lambda t: loss(t) + 0.15 * jnp.sum(t**2))(theta)
    np.testing.assert_allclose(optax.apply_updates(theta, updates), theta - 0.1 * penalised, rtol=1e-5, atol=1e-6)


def test_min_steps_trains_on_after_the_first_fit_and_stops_fitted():
    out = train(SGDSetting("s", "sgd", 0.1, 2, "ce", min_steps=40), runs=16, pool=8)
    assert out["fitted"].all() and (out["steps"] >= 40).all()
    first = train(SGDSetting("s", "sgd", 0.1, 2, "ce"), runs=16, pool=8)
    assert (first["steps"] < 40).all()  # without it the same runs stop at their first fit


@pytest.mark.parametrize("keep_params", [False, True])
def test_chunk_split_across_devices_gives_the_same_runs(keep_params):
    """Two devices, each with half the pool and half the runs, reproduce the one-device chunk
    exactly: a run's result depends only on its own key, not on where it ran."""
    assert jax.local_device_count() >= 2, "tests/conftest.py asks for two CPU devices"
    setting = SGDSetting("s", "sgd", 0.1, 2, "ce")
    cfg = SGDConfig(runs=48, chunk_runs=48, pool=8, max_steps=2000, check_every=4, settings=(setting,))
    one, two = (jax.device_get(sgd.make_chunk_trainer(NET, TASK, setting, cfg, 48, keep_params, devices=d)(
        jax.random.key(3), 96)) for d in (1, 2))
    assert one.keys() == two.keys()
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)


def test_device_count_must_divide_pool_and_chunk():
    setting = SGDSetting("s", "sgd", 0.1, 2, "ce")
    cfg = SGDConfig(runs=48, chunk_runs=48, pool=8, max_steps=2000, check_every=4, settings=(setting,))
    with pytest.raises(ValueError, match="do not divide"):
        sgd.make_chunk_trainer(NET, TASK, setting, cfg, 48, devices=3)


def test_a_batch_size_that_does_not_divide_m_is_refused(net7):
    """m mod B training inputs would go unused in every epoch."""
    task = make_task(7, "majority", 10, 4, 0)
    with pytest.raises(ValueError, match="does not divide the 10 training inputs"):
        sgd.make_chunk_trainer(net7, task, SGDSetting("s", "sgd", 0.1, 3, "ce"), SGDConfig(runs=4, chunk_runs=4), 4)
