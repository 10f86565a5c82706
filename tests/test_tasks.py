import math

import numpy as np
import pytest

from study.encoding import bits_to_hex
from study.tasks import TARGETS, boolean_inputs, lz76_words, lz_complexity, make_task, target_table


def test_inputs_are_binary_digits_msb_first():
    x = boolean_inputs(3)
    assert x.shape == (8, 3)
    assert x[0].tolist() == [-1, -1, -1]
    assert x[1].tolist() == [-1, -1, 1]
    assert x[6].tolist() == [1, 1, -1]


def test_lz76_classic_example():
    # Lempel & Ziv (1976): 0 . 001 . 10 . 100 . 1000 . 101
    assert lz76_words("0001101001000101") == 6


def test_lz_constant_and_periodic_strings():
    assert lz_complexity([0] * 128) == lz_complexity([1] * 128) == math.log2(128)
    periodic = lz_complexity([0, 1] * 64)
    random = lz_complexity(np.random.default_rng(0).random(128) < 0.5)
    assert math.log2(128) < periodic < random / 3


def test_named_targets_span_complexity():
    values = [lz_complexity(target_table(name, 7)) for name in TARGETS]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] > 10 * values[0]


def test_hex_target_round_trip():
    table = target_table("majority", 7)
    assert (target_table("0x" + bits_to_hex(table), 7) == table).all()


def test_e1m_targets():
    """Mingard's "0011" x 32 target is f(input i) = bit 1 of i, i.e. the sixth input bit x_5 (MSB
    first); E1M's second target, majority, has clearly higher LZ complexity (70 against 28)."""
    x = boolean_inputs(7)
    t0011 = target_table("0x" + "3" * 32, 7)
    assert (t0011 == (np.arange(128) % 4 >= 2)).all() and (t0011 == (x[:, 5] > 0)).all()
    assert "".join("1" if b else "0" for b in t0011) == "0011" * 32
    assert lz_complexity(t0011) == 28.0 and lz_complexity(target_table("majority", 7)) == 70.0
    # E = every input outside S: the split covers all 128 inputs once.
    task = make_task(7, "0x" + "3" * 32, 32, 96, 0)
    assert sorted(np.concatenate([task.train_idx, task.test_idx]).tolist()) == list(range(128))


def test_split_is_seeded_disjoint_and_sized():
    a, b, c = make_task(7, "parity", 20, 30, 1), make_task(7, "parity", 20, 30, 1), make_task(7, "parity", 20, 30, 2)
    assert len(a.train_idx) == 20 and len(a.test_idx) == 30
    assert not set(a.train_idx) & set(a.test_idx)
    assert (np.diff(a.train_idx) > 0).all() and (np.diff(a.test_idx) > 0).all()
    assert (a.train_idx == b.train_idx).all() and (a.test_idx == b.test_idx).all()
    assert not (a.train_idx == c.train_idx).all()
    assert (a.y_train == target_table("parity", 7)[a.train_idx]).all()


def test_split_rejects_too_many_points():
    with pytest.raises(ValueError):
        make_task(3, "parity", 5, 4, 0)
