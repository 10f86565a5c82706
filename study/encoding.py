"""Functions as packed bit strings: sign patterns of a network's outputs on a list of inputs.

A function on N inputs is the bit string b_0..b_{N-1} (b_i = output on input i is positive),
written as hex with b_0 the most significant bit of the first digit, zero-padded on the right to
a multiple of 4 bits. On device, patterns are packed into uint32 words (32 inputs per word) so
that a population of functions is a small integer array.

An output of exactly 0 is a 0 bit, in `pack_signs` and in `fits` alike: a network fits the
training set S exactly when its function on S, read this way, is the target's.
"""
from __future__ import annotations

from collections import Counter

import jax.numpy as jnp
import numpy as np


def bits_to_hex(bits) -> str:
    bits = np.asarray(bits, bool).ravel()
    n_digits = -(-len(bits) // 4)
    return np.packbits(bits).tobytes().hex()[:n_digits]


def hex_to_bits(text: str, n_bits: int) -> np.ndarray:
    if len(text) != -(-n_bits // 4):
        raise ValueError(f"hex string of {len(text)} digits cannot hold exactly {n_bits} bits")
    padded = text + "0" * (len(text) % 2)
    all_bits = np.unpackbits(np.frombuffer(bytes.fromhex(padded), np.uint8)).astype(bool)
    if all_bits[n_bits:].any():
        raise ValueError(f"hex string {text!r} has bits set beyond position {n_bits}")
    return all_bits[:n_bits]


def pack_signs(out_PxN: jnp.ndarray) -> jnp.ndarray:
    """(P, N) real outputs -> (P, ceil(N/32)) uint32 words; bit j of word w is input 32w+j."""
    P, N = out_PxN.shape
    n_words = -(-N // 32)
    bits = jnp.pad(out_PxN > 0, ((0, 0), (0, 32 * n_words - N))).astype(jnp.uint32)
    shifts = jnp.arange(32, dtype=jnp.uint32)
    return (bits.reshape(P, n_words, 32) << shifts).sum(-1, dtype=jnp.uint32)


def fits(out_PxS: jnp.ndarray, y_S: jnp.ndarray) -> jnp.ndarray:
    """bool_P: does each row of outputs on S have the labels' sign pattern (out > 0 iff the label
    is positive)? Any leading batch shape (one network: out_S -> a scalar bool); labels are bool or
    +-1 (positive: > 0). Works on network outputs and on the NNGP's latent z alike."""
    y_S = jnp.asarray(y_S)
    positive_S = y_S if y_S.dtype == jnp.bool_ else y_S > 0
    return jnp.all((out_PxS > 0) == positive_S, axis=-1)


def unpack_words(words_PxW: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of pack_signs on the host: (P, W) uint32 -> (P, n_bits) bool."""
    words = np.asarray(words_PxW, np.uint32)
    bits = (words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return bits.reshape(len(words), -1)[:, :n_bits].astype(bool)


def words_to_hex(words_PxW: np.ndarray, n_bits: int) -> list[str]:
    return [bits_to_hex(row) for row in unpack_words(words_PxW, n_bits)]


def count_functions(words_PxW: np.ndarray, n_bits: int) -> Counter[str]:
    """Counter hex function -> number of rows computing it, over packed words of any leading shape
    (..., W); hex is made once per distinct row, not once per row."""
    words = np.asarray(words_PxW)
    if words.size == 0:
        return Counter()
    unique_UxW, counts_U = np.unique(words.reshape(-1, words.shape[-1]), axis=0, return_counts=True)
    return Counter(dict(zip(words_to_hex(unique_UxW, n_bits), counts_U.tolist())))
