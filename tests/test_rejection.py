import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from analysis import stats as stats_mod
from study.encoding import fits, pack_signs

from study import rejection
from study.config import NetworkConfig
from study.network import build_network
from study.tasks import Task, boolean_inputs, make_task


def run_sampler(net, task, draws, seed=0, batch=4096):
    batch_fn = rejection.make_batch_fn(net, task, batch)
    return rejection.sample_chunk(batch_fn, jax.random.key(seed), draws // batch, len(task.test_idx))


def single_point_task(n, i, j, label=True):
    x = boolean_inputs(n)
    return Task(x=x, target=np.full(len(x), label), train_idx=np.array([i]), test_idx=np.array([j]))


@pytest.mark.parametrize("i, j", [(0, 1), (0, 7), (5, 90), (3, 124)])
def test_perceptron_matches_angle_formula(i, j):
    """Bias-free perceptron w.x, w ~ N(0, I/n): P(sign w.x' = sign w.x) = 1 - angle(x, x')/pi, and
    P(w.x > 0) = 1/2, so the sampler must accept half the draws and, of those, give f(x') = 1
    with probability 1 - angle/pi."""
    net = build_network(NetworkConfig(widths=()), 7)
    task = single_point_task(7, i, j)
    res = run_sampler(net, task, 2**17, seed=i + j)
    x, y = task.x[i], task.x[j]
    p_same = 1 - np.arccos(x @ y / (x @ x)) / np.pi
    n, k = res["accepted"], res["counts"].get("8", 0)
    assert res["draws"] == 2**17 and sum(res["counts"].values()) == n
    assert abs(n / res["draws"] - 0.5) < 4 * np.sqrt(0.25 / res["draws"])
    assert abs(k / n - p_same) < 4 * np.sqrt(p_same * (1 - p_same) / n) + 1e-9


def test_deep_network_accepts_half_on_one_point(net7):
    """Flipping the last layer's weights flips every output: for one training input the acceptance is 1/2."""
    res = run_sampler(net7, single_point_task(7, 17, 42, label=False), 2**16)
    assert abs(res["accepted"] / res["draws"] - 0.5) < 4 * np.sqrt(0.25 / res["draws"])


def numpy_function_counts(task, draws, seed, width=8, first_layer_bias=0.0):
    """Independent reference: numpy prior draws and forward pass of n-width-1 ReLU nets."""
    rng = np.random.default_rng(seed)
    n = task.x.shape[1]
    x = np.concatenate([task.x_train, task.x_test])
    W1 = rng.normal(size=(draws, n, width)) / np.sqrt(n)
    b1 = rng.normal(size=(draws, 1, width)) * first_layer_bias
    w2 = rng.normal(size=(draws, width)) / np.sqrt(width)
    out = np.einsum("pnj,pj->pn", np.maximum(np.einsum("ni,pij->pnj", x, W1) + b1, 0), w2)
    m = len(task.train_idx)
    fit = ((out[:, :m] > 0) == task.y_train).all(1)
    codes = (out[fit, m:] > 0) @ (1 << np.arange(len(task.test_idx)))[::-1]
    return np.bincount(codes, minlength=2 ** len(task.test_idx))


def test_sampler_agrees_with_independent_numpy_sampler_and_rejects_wrong_prior():
    task = make_task(3, "majority", 2, 3, seed=4)
    net = build_network(NetworkConfig(widths=(8,)), 3)
    res = run_sampler(net, task, 2**17)
    ours = np.zeros(8, int)
    for code, count in res["counts"].items():
        ours[int(code, 16) >> 1] = count  # 3 bits are written as one hex digit padded with a 0 bit
    right = numpy_function_counts(task, 2**17, seed=1)
    wrong = numpy_function_counts(task, 2**17, seed=2, first_layer_bias=1.0)
    keep = (ours + right + wrong) > 0
    assert stats.chi2_contingency(np.stack([ours, right])[:, keep])[1] > 1e-3
    assert stats.chi2_contingency(np.stack([ours, wrong])[:, keep])[1] < 1e-6


# Grouped rejection (readouts = K output layers per hidden-layer draw). A narrow network (5-4-1),
# where the hidden layer shapes the function a lot, makes the pairs strongly correlated (design
# effects 3-5 at K = 64), so a wrong accounting or a wrong sampler shows.
GROUPED_TASK = dict(n=5, target="majority", m=2, n_test=3, seed=1)


def grouped_setup():
    return make_task(**GROUPED_TASK), build_network(NetworkConfig(widths=(4,)), 5)


def code_counts(res, n_test=3):
    out = np.zeros(2**n_test, np.int64)
    for code, count in res["counts"].items():
        out[int(code, 16) >> (4 * len(code) - n_test)] = count
    return out


def design(res, top=10):
    return stats_mod.chunk_design_effects(res, top)


def rao_scott_p(grouped, plain, design_effect):
    """Two-sample chi-square of a grouped sample (design effect d) against an independent one, its
    statistic divided by the first-order Rao-Scott factor (d / n_a + 1 / n_b) / (1 / n_a + 1 / n_b)."""
    keep = (grouped + plain) > 0
    x2 = stats.chi2_contingency(np.stack([grouped, plain])[:, keep])[0]
    na, nb = grouped.sum(), plain.sum()
    return stats.chi2.sf(x2 / ((design_effect / na + 1 / nb) / (1 / na + 1 / nb)), keep.sum() - 1)


def test_grouped_sampler_matches_plain_rejection_and_rejects_output_layers_shared_across_hidden_draws():
    """Every (hidden, output) pair is a prior draw, so the grouped sampler's function frequencies are
    plain rejection's (Rao-Scott chi-square with the measured design effect). The wrong variant
    draws K output layers once and pairs every hidden draw with the same K: its frequencies are
    those given these K output layers, not the prior's, and the same test rejects them."""
    task, net = grouped_setup()
    K, batch = 64, 2**14
    grouped = rejection.sample_chunk(rejection.make_batch_fn(net, task, batch, K), jax.random.key(0), 64, 3)
    plain = rejection.sample_chunk(rejection.make_batch_fn(net, task, 4096), jax.random.key(1), 64, 3)
    d = design(grouped).max()
    assert grouped["draws"] == 64 * batch and 2 < d < 8
    assert rao_scott_p(code_counts(grouped), code_counts(plain), d) > 1e-3

    x = jnp.asarray(np.concatenate([task.x_train, task.x_test]))
    R, m = net.n_readout, len(task.train_idx)

    @jax.jit
    def shared_readouts(key):
        phi = jax.vmap(net.features, (0, None))(net.sample_prior(key, batch // K)[:, :-R], x)
        readout_KxR = jax.random.normal(jax.random.key(123), (K, R)) * net.prior_std_D[-R:]
        out = jnp.einsum("gnh,kh->gkn", phi, readout_KxR).reshape(batch, -1)
        return fits(out[:, :m], jnp.asarray(task.y_train)), pack_signs(out[:, m:])

    wrong = rejection.sample_chunk(shared_readouts, jax.random.key(0), 64, 3)
    assert rao_scott_p(code_counts(wrong), code_counts(plain), d) < 1e-6


def test_design_effect_predicts_the_spread_of_frequencies_over_independent_runs():
    """40 independent runs of the grouped sampler: the variance of each function's frequency across
    runs is the one its measured design effect predicts (ratio within 0.6-1.7, the chi-square
    spread of a variance from 40 runs), while counting the pairs as independent draws (design
    effect 1, the wrong accounting) understates it more than twofold. Plain rejection on the same
    task measures a design effect of about 1 for every frequent function."""
    task, net = grouped_setup()
    fn = rejection.make_batch_fn(net, task, 2**14, 64)
    freqs, predicted, naive = [], [], []
    for seed in range(40):
        res = rejection.sample_chunk(fn, jax.random.key(100 + seed), 16, 3)
        c = code_counts(res)
        p = c / res["accepted"]
        order = np.argsort(-c, kind="stable")[:10]  # the order design() reports its functions in
        d = np.full(len(c), np.nan)
        d[order[(p[order] > 0) & (p[order] < 1)]] = design(res)
        freqs.append(p)
        predicted.append(d * p * (1 - p) / res["accepted"])
        naive.append(p * (1 - p) / res["accepted"])
    empirical = np.var(freqs, axis=0, ddof=1)
    ratio = empirical / np.mean(predicted, axis=0)
    assert ((ratio > 0.6) & (ratio < 1.7)).all(), ratio
    assert (empirical / np.mean(naive, axis=0) > 2).all()

    plain = rejection.sample_chunk(rejection.make_batch_fn(net, task, 4096), jax.random.key(7), 256, 3)
    d_plain = design(plain)
    assert len(d_plain) == 8 and ((d_plain > 0.7) & (d_plain < 1.35)).all(), d_plain


def test_design_effects_of_hand_made_batches():
    """Counts exactly proportional to each batch's fits have no dispersion (design effect 0); two
    batches of 10 fits, one all function a and one all b, have the largest possible one."""
    # batches of 10 and 20 fits; a: 4 and 8, b: 6 and 12 (frequencies 0.4 and 0.6 in both)
    assert stats_mod.design_effects([12, 18], [80, 180], [200, 300], 30, 500, 2, 10) == pytest.approx([0, 0], abs=1e-12)
    # p_a = 1/2; sum_b (c_ab - a_b / 2)^2 = 25 + 25 = 50; Var = 2 * 50 / 400; multinomial 1/4 / 20
    assert stats_mod.design_effects([10, 10], [100, 100], [100, 100], 20, 200, 2, 10) == pytest.approx([20, 20])
    assert len(stats_mod.design_effects([5], [25], [25], 5, 25, 1, 10)) == 0  # one batch: no spread to measure
