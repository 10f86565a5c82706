"""Tasks: the inputs, their binary target and the seeded split into S (train) and E (test).

Boolean tasks (E1, E2) live on all 2^n inputs: input i has bits x_0..x_{n-1} = the binary digits
of i, most significant first, encoded as +-1, and a target is a truth table (bit i = f(input i),
1 meaning a positive output) with a Lempel-Ziv complexity. Image tasks (E3) hold only the images
of S and E, as (N, rows, cols, 1) pixels in [0, 1] with labels binarised by study/images.py.
Every sampler, the SGD arm and the analysis see one `Task` either way; a function is its outputs'
signs on E.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from study import images
from study.encoding import bits_to_hex, hex_to_bits


def boolean_inputs(n: int) -> np.ndarray:
    """All 2^n inputs as a (2^n, n) float32 array of +-1, row i = binary digits of i (MSB first)."""
    idx = np.arange(2**n)[:, None]
    bits = (idx >> np.arange(n - 1, -1, -1)[None, :]) & 1
    return (2 * bits - 1).astype(np.float32)


def _target_constant(x01: np.ndarray) -> np.ndarray:
    return np.ones(len(x01), bool)


def _target_first_bit(x01: np.ndarray) -> np.ndarray:
    return x01[:, 0].astype(bool)


def _target_majority(x01: np.ndarray) -> np.ndarray:
    return x01.sum(1) * 2 > x01.shape[1]


def _target_and3(x01: np.ndarray) -> np.ndarray:
    return x01[:, :3].all(1) | ~x01[:, 3:5].any(1)


def _target_parity(x01: np.ndarray) -> np.ndarray:
    return x01.sum(1) % 2 == 1


def _target_random(x01: np.ndarray) -> np.ndarray:
    return np.random.default_rng(12345).random(len(x01)) < 0.5


# Named targets, in increasing Lempel-Ziv complexity for n=7 (see tests/test_tasks.py).
TARGETS = {
    "constant": _target_constant,
    "first_bit": _target_first_bit,
    "and3": _target_and3,
    "majority": _target_majority,
    "parity": _target_parity,
    "random": _target_random,
}


def target_table(name_or_hex: str, n: int) -> np.ndarray:
    """Truth table (2^n bools) of a named target or of a hex string '0x...' (MSB = input 0)."""
    if name_or_hex.startswith("0x"):
        return hex_to_bits(name_or_hex[2:], 2**n)
    x01 = (boolean_inputs(n) > 0).astype(np.int64)
    return TARGETS[name_or_hex](x01)


@dataclass(frozen=True)
class Task:
    """Inputs, target, and the index sets of S (train) and E (test), both sorted."""

    x: np.ndarray  # (N, *input_shape): Boolean (2^n, n) +-1; images (m + |E|, rows, cols, 1)
    target: np.ndarray  # (N,) bool
    train_idx: np.ndarray  # (m,)
    test_idx: np.ndarray  # (|E|,)
    boolean: bool = True  # a truth table on all 2^n inputs (LZ complexity is defined)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def x_train(self) -> np.ndarray:
        return self.x[self.train_idx]

    @property
    def x_test(self) -> np.ndarray:
        return self.x[self.test_idx]

    @property
    def y_train(self) -> np.ndarray:
        return self.target[self.train_idx]

    @property
    def y_test(self) -> np.ndarray:
        return self.target[self.test_idx]

    @property
    def union_idx(self) -> np.ndarray:
        """Indices of S and E together, in input order (for complexity of the seen truth table)."""
        return np.sort(np.concatenate([self.train_idx, self.test_idx]))


def make_task(n: int, target: str, m: int, n_test: int, seed: int) -> Task:
    """Seeded split: a permutation of the 2^n inputs; S = first m, E = next n_test."""
    if m + n_test > 2**n:
        raise ValueError(f"m + n_test = {m + n_test} exceeds 2^n = {2**n}")
    perm = np.random.default_rng([seed, 0x5EED]).permutation(2**n)
    return Task(
        x=boolean_inputs(n),
        target=target_table(target, n),
        train_idx=np.sort(perm[:m]),
        test_idx=np.sort(perm[m : m + n_test]),
    )


def image_task(kind: str, m: int, n_test: int, seed: int, labels: str = "ge5", balanced: bool = False,
               data_dir: str = "") -> Task:
    """A seeded image task. digits: S and E are disjoint draws from scikit-learn's 1,797 digits;
    mnist / fashion: S is drawn from the training split and E from the test split. With
    `balanced`, S holds m/2 images of each binary class (the first of each in the seeded order),
    else the first m. x holds the images of S, then those of E."""
    rng = np.random.default_rng([seed, 0x1A6E5])
    if kind == "digits":
        x_pool, y_pool = images.load_digits()
        x_test_pool, y_test_pool = x_pool, y_pool
    else:
        x_pool, y_pool = images.load_idx_images(kind, "train", data_dir or None)
        x_test_pool, y_test_pool = images.load_idx_images(kind, "test", data_dir or None)
    c_pool, c_test_pool = images.binary_labels(y_pool, labels), images.binary_labels(y_test_pool, labels)
    order = rng.permutation(len(x_pool))
    if balanced:
        per_class = [order[c_pool[order] == c][: m // 2] for c in (False, True)]
        if min(len(p) for p in per_class) < m // 2:
            raise images.DataError(f"{kind}: fewer than m/2 = {m // 2} images of a class for a balanced S")
        train = np.sort(np.concatenate(per_class))
    else:
        train = np.sort(order[:m])
    if kind == "digits":  # E: the next images of the same seeded order that are not in S
        rest = order[~np.isin(order, train)]
        test = np.sort(rest[:n_test])
    else:
        test = np.sort(rng.permutation(len(x_test_pool))[:n_test])
    if len(train) < m or len(test) < n_test:
        raise images.DataError(f"{kind}: {len(x_pool)} training and {len(x_test_pool)} test images cannot give "
                               f"m = {m} and |E| = {n_test} disjoint images")
    side = int(round(x_pool.shape[1] ** 0.5))
    x = np.concatenate([x_pool[train], x_test_pool[test]]).reshape(m + n_test, side, side, 1)
    return Task(x=x, target=np.concatenate([c_pool[train], c_test_pool[test]]),
                train_idx=np.arange(m), test_idx=np.arange(m, m + n_test), boolean=False)


def task_from_config(t, seed: int) -> Task:
    """The task of a TaskConfig (study/config.py) and the experiment's seed."""
    if t.kind == "boolean":
        return make_task(t.n, t.target, t.m, t.n_test, seed)
    return image_task(t.kind, t.m, t.n_test, seed, t.labels, t.balanced, t.data_dir)


def lz76_words(s: str) -> int:
    """Number of words in the Lempel-Ziv (1976) parsing of s: from each word's start, the word is
    the shortest extension that cannot be copied from anything starting earlier (the copy may run
    into the word itself); the last word may end the string while still copyable. The count of
    Kaspar & Schuster's (1987) algorithm (tests/test_tasks.py checks every string up to 14 symbols
    against it), with each copy found by str.find: six times faster on 128 symbols."""
    n = len(s)
    if n <= 1:
        return n
    words, start = 1, 1
    while start < n:
        k = 1  # s[start:start + k] copyable from a start before `start`, i.e. found in s[:start + k - 1]
        while start + k <= n and s.find(s[start:start + k], 0, start + k - 1) != -1:
            k += 1
        words += 1
        start += k
    return words


def lz_complexity(bits) -> float:
    """K_LZ of Valle-Perez, Camargo & Louis (2019): log2(N) for constant strings, otherwise
    log2(N) * (N_w(x) + N_w(reverse x)) / 2 with N_w the LZ76 word count."""
    s = "".join("1" if b else "0" for b in np.asarray(bits, bool))
    n = len(s)
    if n == 0:
        return 0.0
    log_n = math.log2(n) if n > 1 else 1.0
    if s.count(s[0]) == n:
        return log_n
    return log_n * (lz76_words(s) + lz76_words(s[::-1])) / 2


def seen_table_lz(task: Task, f_test_bits: np.ndarray) -> float:
    """LZ complexity of the truth table restricted to S and E (S carries the target, E carries f),
    read in input order; equals the full-table complexity when S and E cover all inputs. Boolean
    tasks only: images have no input order to read a table in."""
    if not task.boolean:
        raise ValueError("LZ complexity is defined for Boolean tasks only")
    table = task.target.copy()
    table[task.test_idx] = f_test_bits
    return lz_complexity(table[task.union_idx])


__all__ = ["Task", "TARGETS", "boolean_inputs", "make_task", "image_task", "task_from_config", "target_table", "lz_complexity",
           "lz76_words", "seen_table_lz", "bits_to_hex", "hex_to_bits"]
