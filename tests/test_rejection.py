import jax
import numpy as np
import pytest
from scipy import stats

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
