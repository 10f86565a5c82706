import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from study.encoding import bits_to_hex, hex_to_bits, pack_signs, unpack_words, words_to_hex

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
