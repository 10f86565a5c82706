"""Image data for the image tasks (E3, issue 16): scikit-learn's bundled 8x8 digits (the embedded
default, no download) and MNIST / Fashion-MNIST read from the standard IDX files in a directory the
user names (in the config, or the environment variable STUDY_DATA_DIR).

Every loader returns pixels in [0, 1] as float32 rows (one flattened image per row) and the integer
class labels; `binary_labels` turns those into the two classes the experiments use (Mingard et al.:
label >= 5, or odd/even). A file that is missing, truncated or not IDX raises DataError naming it.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

ENV_DIR = "STUDY_DATA_DIR"
# IDX type codes (the third byte of the magic number) and their big-endian numpy types
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SOURCES = {"mnist": "the MNIST distribution (yann.lecun.com/exdb/mnist or a mirror of it)",
           "fashion": "github.com/zalandoresearch/fashion-mnist (data/fashion)"}
BINARY_RULES = ("ge5", "odd")
# (training, test) images of each image set, and one image's shape (rows, cols, channels)
POOL_SIZES = {"digits": (1797, 1797), "mnist": (60_000, 10_000), "fashion": (60_000, 10_000)}
IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion": (28, 28, 1)}


class DataError(ValueError):
    """An image file that is missing, truncated or not what it claims to be."""


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzipped or not, told apart by its first bytes): magic 0 0 type
    ndim, ndim big-endian uint32 sizes, then the data in C order."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: a damaged gzip file ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim, dtype = raw[3], np.dtype(IDX_TYPES[raw[2]])
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated in its header ({len(raw)} bytes for {ndim} sizes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes where shape {shape} of {dtype} needs {expected}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


def data_dir(configured: str | None = None) -> Path:
    """The directory of the IDX files: the config's, else $STUDY_DATA_DIR."""
    chosen = configured or os.environ.get(ENV_DIR)
    if not chosen:
        raise DataError(f"no directory for the image files: name one in the config or set {ENV_DIR}")
    return Path(chosen)


def idx_path(directory: Path, stem: str, kind: str) -> Path:
    """directory/stem, or directory/stem.gz; DataError naming both and where to get them."""
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory / stem}(.gz) not found: the {kind} IDX files come from {SOURCES[kind]}; "
                    f"put {stem}.gz (gzipped or not) in {directory}")


def load_idx_images(kind: str, split: str, directory: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x_NxP float32 in [0, 1], labels_N) of MNIST ("mnist") or Fashion-MNIST ("fashion"), split
    "train" or "test", from the standard IDX files in `directory` (else $STUDY_DATA_DIR)."""
    if kind not in SOURCES or split not in IDX_FILES:
        raise ValueError(f"unknown image set {kind!r}/{split!r}; known: {sorted(SOURCES)} x {sorted(IDX_FILES)}")
    where = data_dir(None if directory is None else str(directory))
    image_file, label_file = (idx_path(where, stem, kind) for stem in IDX_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{image_file} holds {images.shape} and {label_file} {labels.shape}: "
                        f"expected (N, rows, cols) images and N labels")
    return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32), labels.astype(np.int64)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 images, 16 grey levels): (x_Nx64 float32 in [0, 1],
    labels_N)."""
    from sklearn.datasets import load_digits as sklearn_digits

    d = sklearn_digits()
    return (d.data / np.float32(16)).astype(np.float32), d.target.astype(np.int64)


def binary_labels(labels: np.ndarray, rule: str = "ge5") -> np.ndarray:
    """The two classes of the binary tasks: label >= 5 ("ge5", Mingard et al.'s default) or odd ("odd")."""
    if rule not in BINARY_RULES:
        raise ValueError(f"unknown binarisation {rule!r}; known: {BINARY_RULES}")
    labels = np.asarray(labels)
    return labels >= 5 if rule == "ge5" else labels % 2 == 1
