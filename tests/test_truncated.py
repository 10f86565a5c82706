"""The exact truncated-Gaussian samplers (rejection and elliptical slice sampling) against the 2-D
closed form and against each other, with a wrong sampler as the negative control."""
import itertools

import jax
import numpy as np
import pytest
from scipy import stats

from study import truncated
from study.encoding import bits_to_hex
from study.tasks import make_task
from test_nngp import orthant2, task_kernel  # the closed forms and kernels the EP tests check against


@pytest.mark.parametrize("rho", [0.6, -0.8])
def test_samplers_match_two_dimensional_conditional(rho):
    """z ~ N(0, [[1, rho], [rho, 1]]) given z1 > 0: P(z2 > 0) = (1/4 + arcsin(rho)/2pi) / (1/2)."""
    K = np.array([[1.0, rho], [rho, 1.0]])
    p = orthant2(rho) / 0.5
    rej = truncated.rejection_function_counts(jax.random.key(0), K, [1], 2**16, batch=2**14)
    n, k = rej["accepted"], rej["counts"].get("8", 0)  # "8" = the one bit set
    assert rej["draws"] == 2**16 and sum(rej["counts"].values()) == n
    assert abs(n / rej["draws"] - 0.5) < 4.5 * np.sqrt(0.25 / rej["draws"])
    assert abs(k / n - p) < 4.5 * np.sqrt(p * (1 - p) / n)

    ess = truncated.ess_function_counts(jax.random.key(1), K, [True], n_chains=64, n_steps=1000, burn_in=50)
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

    rej = truncated.rejection_function_counts(jax.random.key(0), K, task.y_train, 2**18, batch=2**14)
    ess = truncated.ess_function_counts(jax.random.key(10), K, task.y_train, n_chains=64, n_steps=2000,
                                        burn_in=100, thin=2, return_words=True)
    # Wrong: the prior on E, ignoring S (rejection with no training points accepts every draw).
    wrong = truncated.rejection_function_counts(jax.random.key(1), K[4:, 4:], np.zeros(0, bool), 2**16, batch=2**14)
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
        truncated.ess_function_counts(jax.random.key(2), K, task.y_train, 2, 10, 0,
                                      init=np.concatenate([bad, np.ones((2, 3))], 1))


def test_ess_chain_streams_do_not_depend_on_segments_or_chain_count():
    """Chain c's draws come from fold_in(fold_in(key, step), c): a run cut into other segments
    or with more chains reproduces it, so runs can be resumed or widened without changing data."""
    K = np.array([[1.0, 0.3, 0.5], [0.3, 1.0, 0.2], [0.5, 0.2, 1.0]])
    a = truncated.ess_function_counts(jax.random.key(5), K, [1], n_chains=3, n_steps=30, burn_in=5,
                                      kept_per_segment=7, return_words=True)
    b = truncated.ess_function_counts(jax.random.key(5), K, [1], n_chains=5, n_steps=30, burn_in=5,
                                      return_words=True)
    np.testing.assert_allclose(a.zE_mean_CxT, b.zE_mean_CxT[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.words_CxTxW, b.words_CxTxW[:3])
    assert not np.allclose(b.zE_mean_CxT[0], b.zE_mean_CxT[1])  # chains are not copies


def test_ess_transitions_from_the_orthant_boundary_end_inside_it(net7):
    """The ESS transition has no cap (study/ess.py): from any feasible state, even one exactly on
    the orthant's boundary (a negative-label z_i = 0) or a hair inside it (|z_i| = 1e-30), every
    transition must end at a state strictly inside the orthant (no z_i = 0 on S) that has moved."""
    import jax.numpy as jnp

    task = make_task(7, "majority", 10, 4, seed=0)
    K = task_kernel(net7, task)
    L = truncated._cholesky(K, 1e-6)
    y_pos = jnp.asarray(task.y_train)
    z0 = truncated._orthant_start(jax.random.key(0), L, y_pos, 1)[0]
    pos, neg = np.flatnonzero(task.y_train), np.flatnonzero(~task.y_train)
    on_edge = z0.at[neg[0]].set(0.0)
    near_edge = z0.at[pos[0]].set(1e-30).at[neg[0]].set(-1e-30)
    step = jax.jit(jax.vmap(truncated._ess_transition(L, y_pos), (0, None)))
    for start in (on_edge, near_edge):
        assert bool(truncated._feasible(start, y_pos))
        z_KxN, proposals_K = step(jax.random.split(jax.random.key(1), 512), start)
        assert bool(truncated._feasible(z_KxN, y_pos).all())
        assert bool((z_KxN[:, :len(pos) + len(neg)] != 0).all())
        assert not bool((z_KxN == start).all(1).any())
        assert int(proposals_K.min()) >= 1
