from collections import Counter

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from study.encoding import bits_to_hex, count_functions, fits, hex_to_bits, pack_signs, unpack_words, words_to_hex

bit_lists = st.lists(st.booleans(), min_size=1, max_size=200)


@given(bit_lists)
def test_hex_round_trip(bits):
    text = bits_to_hex(bits)
    assert len(text) == -(-len(bits) // 4)
    assert hex_to_bits(text, len(bits)).tolist() == bits


def test_hex_reads_left_to_right():
    assert bits_to_hex([1, 0, 0, 0, 1, 1, 1, 1]) == "8f"
    assert bits_to_hex([1, 1, 0]) == "c"


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 100), st.integers(0, 2**31 - 1))
def test_pack_unpack_round_trip(P, N, seed):
    out = np.random.default_rng(seed).normal(size=(P, N)).astype(np.float32)
    words = np.asarray(pack_signs(jnp.asarray(out)))
    assert words.dtype == np.uint32 and words.shape == (P, -(-N // 32))
    assert (unpack_words(words, N) == (out > 0)).all()
    assert words_to_hex(words, N) == [bits_to_hex(row > 0) for row in out]


def test_hex_rejects_bad_input():
    with pytest.raises(ValueError, match="cannot hold"):
        hex_to_bits("fff", 5)
    with pytest.raises(ValueError, match="beyond"):
        hex_to_bits("f", 3)


def fits_loop(out_PxS, y_S) -> np.ndarray:
    """Brute force: network p fits S iff, input by input, (output > 0) is the label."""
    return np.array([all((o > 0) == bool(y) for o, y in zip(row, y_S)) for row in out_PxS])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_fits_matches_a_loop_with_exact_zeros(P, S, seed):
    rng = np.random.default_rng(seed)
    y_S = rng.random(S) < 0.5
    # outputs of the right sign, then some flipped and some set to exactly 0 (a negative output)
    out_PxS = np.where(y_S, 1.0, -1.0) * (rng.random((P, S)) + 0.1)
    out_PxS = np.where(rng.random((P, S)) < 0.1, -out_PxS, out_PxS)
    out_PxS = np.where(rng.random((P, S)) < 0.1, 0.0, out_PxS).astype(np.float32)
    expected = fits_loop(out_PxS, y_S)
    assert np.array_equal(np.asarray(fits(jnp.asarray(out_PxS), y_S)), expected)
    # +-1 labels and bool labels are the same labels
    assert np.array_equal(np.asarray(fits(jnp.asarray(out_PxS), np.where(y_S, 1.0, -1.0))), expected)


def test_fits_is_strict_at_zero_and_takes_any_leading_shape():
    y_S = np.array([True, False, True])
    nonstrict = lambda out, y: jnp.all((out >= 0) == y, axis=-1)  # the variant the test must tell apart
    zero_at_positive, zero_at_negative = jnp.array([0.5, -0.5, 0.0]), jnp.array([0.5, 0.0, 0.5])
    assert not bool(fits(zero_at_positive, y_S)) and bool(nonstrict(zero_at_positive, y_S))
    assert bool(fits(zero_at_negative, y_S)) and not bool(nonstrict(zero_at_negative, y_S))
    assert fits_loop([zero_at_positive, zero_at_negative], y_S).tolist() == [False, True]
    out_3xS = jnp.stack([zero_at_positive, zero_at_negative, -zero_at_negative])
    assert fits(jnp.stack([out_3xS] * 2), y_S).tolist() == [[False, True, False]] * 2


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 60), st.integers(1, 70), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_count_functions_matches_a_counter_of_rows(P, N, distinct, seed):
    rng = np.random.default_rng(seed)
    bits_PxN = (rng.random((distinct, N)) < 0.5)[rng.integers(0, distinct, P)]  # rows repeat
    words = np.asarray(pack_signs(jnp.asarray(np.where(bits_PxN, 1.0, -1.0).reshape(P, N))))
    expected = Counter(bits_to_hex(row) for row in bits_PxN)
    assert count_functions(words, N) == expected
    if P and P % 2 == 0:  # a leading (C, T) shape counts the same rows
        assert count_functions(words.reshape(2, P // 2, -1), N) == expected
