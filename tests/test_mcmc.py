import os
import warnings
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from study import mcmc, rejection
from study.config import NetworkConfig
from study.encoding import count_functions, hex_to_bits, pack_signs
from study.network import build_network
from study.tasks import Task, boolean_inputs, make_task


@pytest.fixture(scope="module")
def tiny():
    """8 inputs, S = 3 of them, E = 4 others; a 3-8-1 ReLU net (D = 32). Acceptance is ~10% and all
    16 functions on E have prior-conditional mass, so rejection gives a sharp reference."""
    return build_network(NetworkConfig(widths=(8,), sigma_w=1.0), 3), make_task(3, "majority", 3, 4, seed=0)


def chi2_pvalue(counts_a: dict, counts_b: dict) -> float:
    keys = sorted(set(counts_a) | set(counts_b))
    table = np.array([[counts_a.get(k, 0) for k in keys], [counts_b.get(k, 0) for k in keys]])
    return stats.chi2_contingency(table)[1]


def test_every_kept_sample_fits_training_set_and_shapes():
    """E is made to contain S, so every kept function must carry the training labels at S."""
    net = build_network(NetworkConfig(widths=(8,)), 4)
    base = make_task(4, "random", 6, 10, seed=0)
    task = Task(x=base.x, target=base.target, train_idx=base.train_idx, test_idx=np.arange(16))
    init = mcmc.init_from_rejection(net, task, jax.random.key(0), 8)
    assert init.shape == (8, net.n_params) and mcmc.fits_training_set(net, task, init).all()

    runner = mcmc.make_chain_runner(net, task, keep_per_call=5, thin=2)
    u, kept = runner(jax.random.key(1), jnp.asarray(init) / net.prior_std_D, 0)
    assert u.shape == (8, net.n_params)
    assert kept["words"].shape == (8, 5, 1) and kept["words"].dtype == jnp.uint32
    assert kept["probe"].shape == (8, 5, 3) and kept["lockstep_proposals"].shape == (5,)
    for name in ("norm", "test_error", "proposals"):
        assert kept[name].shape == (8, 5)
    assert (kept["proposals"] >= 2).all()  # at least one proposal per step, thin=2 steps

    run = mcmc.run_chains(net, task, jax.random.key(1), init, n_keep=40, thin=2, keep_per_call=20)
    assert sum(run.counts.values()) == 8 * 40
    assert set(run.traces) == {"out_E0", "out_E1", "out_E2", "norm", "test_error", "proposals"}
    assert all(v.shape == (8, 40) for v in run.traces.values())
    for code in run.counts:
        assert np.array_equal(hex_to_bits(code, 16)[task.train_idx], task.y_train)
    assert mcmc.fits_training_set(net, task, run.theta_CxD).all()
    np.testing.assert_allclose(run.traces["norm"][:, -1], np.linalg.norm(run.theta_CxD, axis=1), rtol=1e-5)
    assert (run.traces["test_error"][:, :, None] * 16 % 1 == 0).all()  # multiples of 1/|E|


def test_deterministic_and_independent_of_chunking_resume_and_chain_count(tiny):
    """Step t of chain c uses fold_in(fold_in(key, t), c): the same key gives the same run whether it
    is done in one call, in calls of another size, resumed half way, or with fewer chains."""
    net, task = tiny
    init = mcmc.init_from_rejection(net, task, jax.random.key(0), 6)
    runner = mcmc.make_chain_runner(net, task, keep_per_call=4, thin=3)
    go = lambda key, start, n, **kw: mcmc.run_chains(net, task, key, start, n_keep=n, thin=3, **kw)
    whole = go(jax.random.key(1), init, 8, burn_in=5, runner=runner)
    again = go(jax.random.key(1), init, 8, burn_in=5, runner=runner)
    first = go(jax.random.key(1), init, 4, burn_in=5, runner=runner)
    rest = go(jax.random.key(1), first, 4, runner=runner)
    one_call = go(jax.random.key(1), init, 8, burn_in=5, keep_per_call=8)
    assert whole.next_step == rest.next_step == 5 + 24
    assert again.counts == whole.counts
    assert Counter(first.counts) + Counter(rest.counts) == Counter(whole.counts)
    for name, trace in whole.traces.items():
        assert np.array_equal(trace, again.traces[name])
        assert np.array_equal(trace, np.concatenate([first.traces[name], rest.traces[name]], axis=1))
        assert np.array_equal(trace, one_call.traces[name])
    assert np.array_equal(whole.u_CxD, rest.u_CxD) and one_call.counts == whole.counts
    few = go(jax.random.key(1), init[:2], 8, burn_in=5, runner=runner)
    for name, trace in whole.traces.items():
        np.testing.assert_allclose(few.traces[name], trace[:2], rtol=1e-5, atol=1e-6)
    other = go(jax.random.key(2), init, 8, burn_in=5, runner=runner)
    assert not np.array_equal(other.traces["norm"], whole.traces["norm"])


def test_chains_are_the_same_in_blocks_as_in_lockstep(tiny, monkeypatch):
    """A device moves its chains in blocks of CHAIN_BLOCK (each ESS step lasts as long as its
    block's slowest chain): 20 chains (10 on each of the tests' two CPU devices: a block of 8 and a
    remainder of 2) end where 20 chains moved in one lockstep block end, with the same functions,
    test errors and proposal counts; bit for bit on XLA's default CPU runtime. The legacy runtime
    (make test's second configuration) rounds small products by batch size, so there the states,
    norms and outputs agree to float32 rounding (measured 1e-6)."""
    net, task = tiny
    init = jnp.asarray(mcmc.init_from_rejection(net, task, jax.random.key(0), 20)) / net.prior_std_D
    assert mcmc.CHAIN_BLOCK < 10
    outs = []
    for block in (mcmc.CHAIN_BLOCK, 64):
        monkeypatch.setattr(mcmc, "CHAIN_BLOCK", block)
        runner = mcmc.make_chain_runner(net, task, keep_per_call=4, thin=3)
        u, kept = runner(jax.random.key(1), init, 0)
        u, lockstep = runner.burn(jax.random.key(2), u, 12, 5)
        outs.append(jax.device_get((u, dict(kept, u=u, burn_lockstep=lockstep))))
    (_, a), (_, b) = outs
    legacy = "xla_cpu_use_thunk_runtime=false" in os.environ.get("XLA_FLAGS", "")
    for name in a:
        if name in ("words", "test_error", "proposals", "lockstep_proposals", "burn_lockstep") or not legacy:
            assert np.array_equal(a[name], b[name]), name
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_mcmc_matches_rejection_and_rejects_wrong_samplers(tiny):
    """Chi-square homogeneity of function counts on E: MCMC vs exact rejection sampling.

    All 1024 chains start at ONE zero-error point, so agreement also needs burn-in to work. The
    chi-square test treats draws as independent: chains are independent (own keys), and within a
    chain kept samples are thin=25 steps apart while the measured autocorrelation of the traced
    outputs falls to ~0.07 at lag 10 and ~0 at lag 20 (checked below at lag 25). Wrong samplers of
    the same size must be rejected: the unconstrained prior, and the same chains without burn-in
    or thinning (still near their common start)."""
    net, task = tiny
    C = 1024
    ref = rejection.sample_chunk(rejection.make_batch_fn(net, task, 4096), jax.random.key(1), 64, 4)["counts"]
    start = np.repeat(mcmc.init_from_rejection(net, task, jax.random.key(2), 1), C, axis=0)
    runner = mcmc.make_chain_runner(net, task, keep_per_call=4, thin=25)
    good = mcmc.run_chains(net, task, jax.random.key(3), start, n_keep=8, thin=25, burn_in=100, runner=runner)
    x = good.traces["out_E0"]
    assert abs(np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1]) < 0.05
    n = sum(good.counts.values())
    assert n == 8 * C and sum(ref.values()) > 20_000

    theta = net.sample_prior(jax.random.key(4), n)
    words = np.asarray(pack_signs(net.apply_population(theta, jnp.asarray(task.x_test))))
    prior = count_functions(words, 4)
    stuck = mcmc.run_chains(net, task, jax.random.key(3), start, n_keep=8, thin=1, keep_per_call=8)

    p_good, p_prior, p_stuck = chi2_pvalue(good.counts, ref), chi2_pvalue(prior, ref), chi2_pvalue(stuck.counts, ref)
    print(f"chi-square p-values: mcmc {p_good:.3g}, prior {p_prior:.3g}, no burn-in {p_stuck:.3g}")
    assert p_good > 1e-3
    assert p_prior < 1e-6 and p_stuck < 1e-6


def test_init_checks():
    net = build_network(NetworkConfig(widths=()), 3)
    # Inputs 0 and 7 are antipodal (-1,-1,-1) and (1,1,1): a bias-free perceptron cannot call both positive.
    impossible = Task(x=boolean_inputs(3), target=np.ones(8, bool), train_idx=np.array([0, 7]), test_idx=np.array([1]))
    with pytest.raises(RuntimeError, match="only 0 of 4"):
        mcmc.init_from_rejection(net, impossible, jax.random.key(0), 4, batch=256, max_draws=1024)
    half = Task(x=boolean_inputs(3), target=np.ones(8, bool), train_idx=np.array([7]), test_idx=np.array([1]))
    theta = np.ones((5, 3)) / np.sqrt(3)
    theta[[1, 3]] *= -1  # these two call input 7 negative
    with pytest.raises(ValueError, match="2 of 5 initial states"):
        mcmc.run_chains(net, half, jax.random.key(0), theta, n_keep=4)
    # A run continued from states outside the zero-error set (a damaged state file) would loop for
    # ever in blackjax's slice loop, which has no cap: it is refused like a bad start.
    good = mcmc.run_chains(net, half, jax.random.key(0), np.abs(theta), n_keep=4)
    damaged = mcmc.ChainRun(**{**vars(good), "u_CxD": -np.abs(good.u_CxD)})
    with pytest.raises(ValueError, match="5 of 5 initial states"):
        mcmc.run_chains(net, half, jax.random.key(0), damaged, n_keep=4)


def test_diagnostics_on_mixed_and_stuck_chains(tiny):
    net, task = tiny
    init = mcmc.init_from_rejection(net, task, jax.random.key(5), 8)
    run = mcmc.run_chains(net, task, jax.random.key(6), init, n_keep=1000, thin=2, keep_per_call=250)
    iid = np.random.default_rng(0).normal(size=(4, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence warning for mixed chains
        table = mcmc.diagnostics(run.traces | {"iid": iid}).set_index("summary")
    assert (table["r_hat"] < 1.01).all() and (table["r_hat"] > 0.99).all()
    assert table.loc["iid", "ess_bulk"] == pytest.approx(4000, rel=0.2)
    assert (table["ess_bulk"] > 0.1 * 8 * 1000).all() and (table["ess_bulk"] < 8 * 1000 * 1.5).all()

    # Four chains stuck at different levels (the multimodal failure R-hat exists to catch).
    stuck = np.arange(4.0)[:, None] + 0.1 * np.random.default_rng(1).normal(size=(4, 1000))
    with pytest.warns(mcmc.ConvergenceWarning, match="'stuck'"):
        table = mcmc.diagnostics({"stuck": stuck, "iid": iid}).set_index("summary")
    assert table.loc["stuck", "r_hat"] > 2 and table.loc["iid", "r_hat"] < 1.01


def test_function_indicators_trace_the_most_frequent_functions():
    words = np.array([[[1], [1], [2]], [[3], [1], [2]]], np.uint32)  # 2 chains, 3 samples, |E| <= 32
    ind = mcmc.function_indicators(words, 4, top=2)
    assert list(ind) == ["f=8", "f=4"]  # word 1 (3 samples), then word 2 (2 samples); word 3 (1) untraced
    np.testing.assert_array_equal(ind["f=8"], [[1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(ind["f=4"], [[0, 0, 1], [0, 0, 1]])
