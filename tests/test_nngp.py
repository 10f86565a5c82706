"""EP against closed forms and scipy's Genz integral; the truncated-Gaussian samplers against the
2-D closed form and against each other, with a wrong sampler as the negative control."""
import itertools

import jax
import numpy as np
import pytest
from scipy import stats

from study import nngp
from study.encoding import bits_to_hex
from study.tasks import boolean_inputs, make_task, target_table


@pytest.fixture(scope="module")
def K128(net7):
    """NNGP kernel of the default 7-40-40-1 network on all 128 Boolean inputs."""
    return nngp.nngp_kernel(net7, boolean_inputs(7))


def task_kernel(net, task):
    return nngp.nngp_kernel(net, np.concatenate([task.x_train, task.x_test]))


def orthant2(rho):
    """P(z1 > 0, z2 > 0) for unit variances and correlation rho (Sheppard)."""
    return 0.25 + np.arcsin(rho) / (2 * np.pi)


def orthant3(C):
    """P(z > 0) in 3-D from the correlations: 1/8 + (sum of arcsin rho_ij) / (4 pi)."""
    return 1 / 8 + (np.arcsin(C[0, 1]) + np.arcsin(C[0, 2]) + np.arcsin(C[1, 2])) / (4 * np.pi)


def test_ep_and_scipy_against_closed_forms():
    # One site and independent sites: EP is exact, whatever the scale and signs.
    assert abs(nngp.ep_log_orthant(np.array([[3.0]]), [-1]) + np.log(2)) < 1e-12
    assert abs(nngp.ep_log_orthant(np.diag([1.0, 2, 3, 4, 5, 6]), [1, -1, 1, 1, -1, -1]) + 6 * np.log(2)) < 1e-10
    # 2-D. Measured EP error |log EP - log exact|: 0.0018 at |rho| <= 0.5, 0.030 at 0.9,
    # 0.048 at 0.95, 0.11 as rho -> 1 (EP underestimates positive and overestimates negative rho).
    for rho, ep_tol in [(-0.95, 0.06), (-0.5, 0.003), (0.0, 1e-12), (0.3, 0.003), (0.5, 0.003), (0.95, 0.06)]:
        exact = np.log(orthant2(rho))
        K = np.array([[2.0, 2 * rho], [2 * rho, 2.0]])
        assert abs(nngp.orthant_log_prob_scipy(K, [1, 1]) - exact) < 1e-3
        assert abs(nngp.orthant_log_prob_scipy(K, [1, -1]) - np.log(orthant2(-rho))) < 1e-3
        assert abs(nngp.ep_log_orthant(K, [True, True]) - exact) < ep_tol
    # 3-D on random correlation matrices (signs folded into the correlations).
    # Measured max EP error over 200 such matrices: 0.076.
    rng = np.random.default_rng(0)
    for _ in range(5):
        B = rng.normal(size=(3, 4))
        s = rng.choice([-1, 1], 3)
        C = nngp.correlation(B @ B.T, 0.0)
        exact = np.log(orthant3(C * np.outer(s, s)))
        assert abs(nngp.orthant_log_prob_scipy(B @ B.T, s) - exact) < 1e-3
        assert abs(nngp.ep_log_orthant(B @ B.T, s) - exact) < 0.1


@pytest.mark.parametrize("kind", ["random_spd", "nngp"])
def test_ep_matches_scipy_orthant_probability(kind, K128):
    """Measured max |log EP - log scipy| over 40 cases per dimension d = 2..10 (scipy to 1e-3
    relative): random SPD C = BB^T with B of shape (d, 2d): 0.038 (0.011 - 0.038 by d);
    NNGP kernel on random subsets of the 128 inputs, random signs: 0.026; majority labels:
    0.034 (0.005 - 0.034, growing slowly with d). log P reached -12.5 in these cases."""
    rng = np.random.default_rng({"random_spd": 1, "nngp": 2}[kind])
    majority = target_table("majority", 7)
    worst = 0.0
    for d in range(2, 11):
        for rep in range(3):
            if kind == "random_spd":
                B = rng.normal(size=(d, 2 * d))
                K, s = B @ B.T, rng.choice([-1, 1], d)
            else:
                idx = rng.choice(128, d, replace=False)
                K = K128[np.ix_(idx, idx)]
                s = np.where(majority[idx], 1, -1) if rep == 0 else rng.choice([-1, 1], d)
            reference = nngp.orthant_log_prob_scipy(K, s, rel_err=1e-3)
            ep = nngp.ep_log_orthant(K, s)
            worst = max(worst, abs(ep - reference))
            # Parallel damped sweeps reach the same fixed point as sequential ones.
            assert abs(nngp.ep_log_orthant(K, s, parallel=True, damping=0.5) - ep) < 1e-6
    assert worst < 0.05, worst
    assert K128.dtype == np.float64 and np.allclose(K128, K128.T)


def test_ep_refuses_bad_input_and_reports_non_convergence(K128):
    idx = np.arange(0, 128, 20)
    with pytest.raises(nngp.EPNotConverged, match="did not converge"):
        nngp.ep_log_orthant(K128[np.ix_(idx, idx)], np.ones(len(idx)), max_sweeps=1)
    with pytest.raises(ValueError, match="0/1"):
        nngp.ep_log_orthant(K128[:3, :3], np.array([0, 1, 1]))


@pytest.mark.parametrize("m, n_E, seed", [(5, 4, 1), (20, 6, 3)])
def test_ep_pb_sums_to_one_over_all_functions(net7, m, n_E, seed):
    """sum_f P_B(f|S) = 1 exactly; EP's two log-normalisers are approximated separately, so the
    sum measures EP's self-consistency. Measured sums - 1: -0.0018 (5, 4) and -0.0110 (20, 6);
    six cases up to |S| = 64, |E| = 8 were all within -0.0123."""
    task = make_task(7, "majority", m, n_E, seed)
    K = task_kernel(net7, task)
    f_FxE = np.array(list(itertools.product([False, True], repeat=n_E)))
    log_pb_F = nngp.ep_log_pb_many(K, task.y_train, f_FxE)
    assert abs(np.exp(log_pb_F).sum() - 1) < 0.03
    # The warm-started batch equals the one-at-a-time EP, and hex input equals bool input.
    assert abs(log_pb_F[5] - nngp.ep_log_pb(K, task.y_train, f_FxE[5])) < 1e-6
    hexes = [bits_to_hex(f) for f in f_FxE[[0, 5]]]
    np.testing.assert_allclose(nngp.ep_log_pb_many(K, task.y_train, hexes), log_pb_F[[0, 5]], atol=1e-12)


@pytest.mark.parametrize("rho", [0.6, -0.8])
def test_samplers_match_two_dimensional_conditional(rho):
    """z ~ N(0, [[1, rho], [rho, 1]]) given z1 > 0: P(z2 > 0) = (1/4 + arcsin(rho)/2pi) / (1/2)."""
    K = np.array([[1.0, rho], [rho, 1.0]])
    p = orthant2(rho) / 0.5
    rej = nngp.rejection_function_counts(jax.random.key(0), K, [1], 2**16, batch=2**14)
    n, k = rej["accepted"], rej["counts"].get("8", 0)  # "8" = the one bit set
    assert rej["draws"] == 2**16 and sum(rej["counts"].values()) == n
    assert abs(n / rej["draws"] - 0.5) < 4.5 * np.sqrt(0.25 / rej["draws"])
    assert abs(k / n - p) < 4.5 * np.sqrt(p * (1 - p) / n)

    ess = nngp.ess_function_counts(jax.random.key(1), K, [True], n_chains=64, n_steps=1000, burn_in=50)
    assert ess.fE_frac_CxT.shape == ess.zE_mean_CxT.shape == (64, 1000)
    assert sum(ess.counts.values()) == 64 * 1000
    # Chains are independent, so the spread of the per-chain means is an honest standard error
    # whatever the autocorrelation within chains (measured inflation over binomial: ~1.9).
    per_chain_C = ess.fE_frac_CxT.mean(1)
    se = per_chain_C.std(ddof=1) / np.sqrt(len(per_chain_C))
    assert se < 0.006  # a sampler that barely moves would pass the next line only with a huge se
    assert abs(per_chain_C.mean() - p) < 4.5 * se
    assert ess.counts.get("8", 0) / (64 * 1000) == pytest.approx(per_chain_C.mean())


def test_ess_agrees_with_rejection_on_nngp_and_wrong_sampler_is_rejected(net7):
    task = make_task(7, "majority", 4, 3, seed=0)
    K = task_kernel(net7, task)
    codes = [bits_to_hex(f) for f in itertools.product([0, 1], repeat=3)]

    rej = nngp.rejection_function_counts(jax.random.key(0), K, task.y_train, 2**18, batch=2**14)
    ess = nngp.ess_function_counts(jax.random.key(10), K, task.y_train, n_chains=64, n_steps=2000,
                                   burn_in=100, thin=2, return_words=True)
    # Wrong: the prior on E, ignoring S (rejection with no training points accepts every draw).
    wrong = nngp.rejection_function_counts(jax.random.key(1), K[4:, 4:], np.zeros(0, bool), 2**16, batch=2**14)
    assert wrong["accepted"] == wrong["draws"]

    # Kept ESS samples are autocorrelated: deflate their counts by the largest variance inflation
    # of a function's per-chain count over the binomial variance (measured 2 - 6 at thin = 2).
    words_CxT = ess.words_CxTxW[..., 0]
    per_chain_CxU = np.stack([(words_CxT == w).sum(1) for w in np.unique(words_CxT)], 1)
    p_U = per_chain_CxU.sum(0) / per_chain_CxU.sum()
    inflation = max(1.0, np.max(per_chain_CxU.var(0, ddof=1) / (ess.n_kept * p_U * (1 - p_U))))
    counts = {name: np.array([res["counts"].get(c, 0) for c in codes]) for name, res in
              [("rejection", rej), ("wrong", wrong)]}
    ess_counts = np.array([ess.counts.get(c, 0) for c in codes]) / inflation
    assert stats.chi2_contingency(np.stack([counts["rejection"], ess_counts]))[1] > 1e-3
    assert stats.chi2_contingency(np.stack([counts["wrong"], ess_counts]))[1] < 1e-6

    with pytest.raises(ValueError, match="sign z_S = y_S"):
        bad = np.tile(np.where(task.y_train, -1.0, 1.0), (2, 1))  # every training sign wrong
        nngp.ess_function_counts(jax.random.key(2), K, task.y_train, 2, 10, 0,
                                 init=np.concatenate([bad, np.ones((2, 3))], 1))


def test_ess_chain_streams_do_not_depend_on_segments_or_chain_count():
    """Chain c's draws come from fold_in(fold_in(key, step), c): a run cut into other segments
    or with more chains reproduces it, so runs can be resumed or widened without changing data."""
    K = np.array([[1.0, 0.3, 0.5], [0.3, 1.0, 0.2], [0.5, 0.2, 1.0]])
    a = nngp.ess_function_counts(jax.random.key(5), K, [1], n_chains=3, n_steps=30, burn_in=5,
                                 kept_per_segment=7, return_words=True)
    b = nngp.ess_function_counts(jax.random.key(5), K, [1], n_chains=5, n_steps=30, burn_in=5,
                                 return_words=True)
    np.testing.assert_allclose(a.zE_mean_CxT, b.zE_mean_CxT[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.words_CxTxW, b.words_CxTxW[:3])
    assert not np.allclose(b.zE_mean_CxT[0], b.zE_mean_CxT[1])  # chains are not copies
