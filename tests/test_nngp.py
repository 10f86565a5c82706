"""EP against closed forms and scipy's Genz integral, and its P_B summing to one over all functions."""
import itertools

import numpy as np
import pytest

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
