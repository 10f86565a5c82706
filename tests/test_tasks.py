import itertools
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


def kaspar_schuster_words(s: str) -> int:
    """LZ76 word count by Kaspar & Schuster's (1987) algorithm, as published: the reference."""
    n = len(s)
    if n <= 1:
        return n
    c, l, i, k, k_max = 1, 1, 0, 1, 1
    while True:
        if s[i + k - 1] == s[l + k - 1]:
            k += 1
            if l + k > n:
                return c + 1
        else:
            k_max = max(k, k_max)
            i += 1
            if i == l:
                c += 1
                l += k_max
                if l + 1 > n:
                    return c
                i, k, k_max = 0, 1, 1
            else:
                k = 1


def test_lz76_words_is_kaspar_schuster_on_every_short_string_and_random_long_ones():
    rng = np.random.default_rng(0)
    strings = ["".join(bits) for n in range(15) for bits in itertools.product("01", repeat=n)]
    strings += ["".join(np.where(rng.random(128) < p, "1", "0")) for p in (0.05, 0.3, 0.5) for _ in range(2000)]
    assert [lz76_words(s) for s in strings] == [kaspar_schuster_words(s) for s in strings]
    # A wrong variant, copies that may not run into the word itself, is told apart (on "0000" it
    # parses 0|00|0, three words, against 0|000).
    def no_overlap(s):
        words, start = min(len(s), 1), 1
        while start < len(s):
            k = 1
            while start + k <= len(s) and s.find(s[start:start + k], 0, start) != -1:
                k += 1
            words, start = words + 1, start + k
        return words
    assert no_overlap("0000") == 3 != lz76_words("0000") == 2
    assert sum(no_overlap(s) != kaspar_schuster_words(s) for s in strings) > 1000


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


def test_digit_tasks_are_seeded_disjoint_and_labelled_by_the_binarisation():
    """S and E are disjoint draws from scikit-learn's digits, each image carrying its class >= 5;
    a balanced S has m/2 of each class; the same seed gives the same task, another seed another."""
    from study import images
    from study.tasks import image_task

    pool, labels = images.load_digits()
    rows = {row.tobytes(): i for i, row in enumerate(pool)}
    for balanced in (False, True):
        task = image_task("digits", 60, 25, seed=3, balanced=balanced)
        assert task.x.shape == (85, 8, 8, 1) and not task.boolean and task.input_shape == (8, 8, 1)
        idx = np.array([rows[img.reshape(-1).tobytes()] for img in task.x])
        assert len(set(idx[task.train_idx]) & set(idx[task.test_idx])) == 0
        np.testing.assert_array_equal(task.target, labels[idx] >= 5)
        if balanced:
            assert task.y_train.sum() == 30
        np.testing.assert_array_equal(image_task("digits", 60, 25, seed=3, balanced=balanced).x, task.x)
    assert not np.array_equal(image_task("digits", 60, 25, seed=4).x, task.x)
    odd = image_task("digits", 60, 25, seed=3, labels="odd", balanced=True)
    np.testing.assert_array_equal(odd.target, labels[[rows[i.reshape(-1).tobytes()] for i in odd.x]] % 2 == 1)
    with pytest.raises(ValueError, match="Boolean tasks only"):
        from study.tasks import seen_table_lz
        seen_table_lz(task, task.y_test)


def test_idx_image_tasks_draw_s_from_the_training_split_and_e_from_the_test_split(tmp_path, monkeypatch):
    import gzip
    import struct

    from study import images
    from study.tasks import image_task

    rng = np.random.default_rng(0)
    split_pixels = {}
    for split, n in (("train", 40), ("test", 30)):
        # every image unique (its first pixels spell its index and split)
        pixels = rng.integers(0, 256, (n, 4, 4)).astype(np.uint8)
        pixels[:, 0, 0], pixels[:, 0, 1] = np.arange(n), 0 if split == "train" else 1
        y = rng.integers(0, 10, n).astype(np.uint8)
        for stem, array in zip(images.IDX_FILES[split], (pixels, y)):
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(header + array.tobytes()))
        split_pixels[split] = (pixels, y)
    monkeypatch.setenv(images.ENV_DIR, str(tmp_path))
    task = image_task("mnist", 10, 6, seed=1, balanced=True)
    assert task.x.shape == (16, 4, 4, 1) and task.y_train.sum() == 5
    for idx, split in ((task.train_idx, "train"), (task.test_idx, "test")):
        pixels, y = split_pixels[split]
        first = np.rint(task.x[idx, 0, :2, 0] * 255).astype(int)
        assert (first[:, 1] == (split == "test")).all() and len(set(first[:, 0])) == len(idx)
        np.testing.assert_array_equal(task.target[idx], y[first[:, 0]] >= 5)
        np.testing.assert_allclose(task.x[idx, ..., 0], pixels[first[:, 0]] / 255, atol=1e-6)
    monkeypatch.delenv(images.ENV_DIR)
    with pytest.raises(images.DataError, match="STUDY_DATA_DIR"):
        image_task("mnist", 10, 6, seed=1)
