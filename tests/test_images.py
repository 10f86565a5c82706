"""Image loaders (study/images.py): IDX files written here and read back, gzipped or not; clear
errors for a missing, truncated or foreign file; scikit-learn's bundled digits."""
import gzip
import struct

import numpy as np
import pytest

from study import images


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file written independently of the reader: magic 0 0 code ndim, big-endian sizes, data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array.astype(images.IDX_TYPES[code])).tobytes()


def write_mnist(directory, n=5, rows=3, cols=4, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, rows, cols)).astype(np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for stem, array in zip(images.IDX_FILES["train"], (pixels, labels)):
        data = idx_bytes(array, 0x08)
        (directory / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return pixels, labels


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files_are_read_back(tmp_path, gz):
    pixels, labels = write_mnist(tmp_path, gz=gz)
    x, y = images.load_idx_images("mnist", "train", tmp_path)
    assert x.dtype == np.float32 and x.shape == (5, 12) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), pixels.reshape(5, -1))
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize("code", sorted(images.IDX_TYPES))
def test_read_idx_decodes_every_type_big_endian(tmp_path, code):
    array = np.arange(12).reshape(2, 3, 2) - (0 if code == 0x08 else 3)  # negatives for the signed types
    (tmp_path / "a").write_bytes(idx_bytes(array, code))
    np.testing.assert_array_equal(images.read_idx(tmp_path / "a"), array)


def test_missing_truncated_and_foreign_files_raise_errors_that_name_them(tmp_path, monkeypatch):
    monkeypatch.delenv(images.ENV_DIR, raising=False)
    with pytest.raises(images.DataError, match=images.ENV_DIR):
        images.load_idx_images("fashion", "test")
    with pytest.raises(images.DataError, match=r"t10k-images-idx3-ubyte.*fashion-mnist"):
        images.load_idx_images("fashion", "test", tmp_path)
    monkeypatch.setenv(images.ENV_DIR, str(tmp_path))
    write_mnist(tmp_path, gz=False)
    assert images.load_idx_images("mnist", "train")[0].shape == (5, 12)  # the directory from the environment
    full = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(full[:-1])
    with pytest.raises(images.DataError, match=r"train-images-idx3-ubyte: 75 bytes where shape \(5, 3, 4\)"):
        images.load_idx_images("mnist", "train", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"P5\n3 4\n255\n" + full[16:])  # a PGM, not IDX
    with pytest.raises(images.DataError, match="not an IDX file"):
        images.load_idx_images("mnist", "train", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(gzip.compress(full)[:-8])
    with pytest.raises(images.DataError, match="damaged gzip"):
        images.load_idx_images("mnist", "train", tmp_path)


def test_images_and_labels_must_agree(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8), 0x08)))
    with pytest.raises(images.DataError, match=r"\(5, 3, 4\).*\(4,\)"):
        images.load_idx_images("mnist", "train", tmp_path)


def test_bundled_digits_and_the_binary_classes():
    x, y = images.load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and x.min() == 0 and x.max() == 1
    assert sorted(np.unique(y)) == list(range(10))
    high, odd = images.binary_labels(y, "ge5"), images.binary_labels(y, "odd")
    np.testing.assert_array_equal(high, np.isin(y, [5, 6, 7, 8, 9]))
    np.testing.assert_array_equal(odd, np.isin(y, [1, 3, 5, 7, 9]))
    assert 0.45 < high.mean() < 0.55
    with pytest.raises(ValueError, match="unknown binarisation"):
        images.binary_labels(y, "even")
