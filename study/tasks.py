"""Boolean tasks on all 2^n inputs: inputs, named targets, seeded train/test split, LZ complexity.

Conventions: input i has bits x_0..x_{n-1} = the binary digits of i, most significant first,
encoded as +-1. A function is a truth table: bit i is f(input i), 1 meaning a positive output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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

    x: np.ndarray  # (2^n, n) +-1
    target: np.ndarray  # (2^n,) bool
    train_idx: np.ndarray  # (m,)
    test_idx: np.ndarray  # (|E|,)

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


def lz76_words(s: str) -> int:
    """Number of words in the Lempel-Ziv (1976) parsing, Kaspar & Schuster (1987) algorithm."""
    n = len(s)
    if n <= 1:
        return n
    c, l, i, k, k_max = 1, 1, 0, 1, 1
    while True:
        if s[i + k - 1] == s[l + k - 1]:
            k += 1
            if l + k > n:
                c += 1
                break
        else:
            k_max = max(k, k_max)
            i += 1
            if i == l:
                c += 1
                l += k_max
                if l + 1 > n:
                    break
                i, k, k_max = 0, 1, 1
            else:
                k = 1
    return c


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
    read in input order; equals the full-table complexity when S and E cover all inputs."""
    table = task.target.copy()
    table[task.test_idx] = f_test_bits
    return lz_complexity(table[task.union_idx])


__all__ = ["Task", "TARGETS", "boolean_inputs", "make_task", "target_table", "lz_complexity",
           "lz76_words", "seen_table_lz", "bits_to_hex", "hex_to_bits"]
