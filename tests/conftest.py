"""Shared test set-up: the repository root on sys.path, quiet TensorFlow, small shared fixtures."""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from study.devices import host_cores, use_every_core  # noqa: E402

# At least two CPU devices, so that the multi-device SGD path is tested on any machine.
use_every_core(max(2, host_cores()))

from study.config import NetworkConfig  # noqa: E402
from study.network import build_network  # noqa: E402


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def net7():
    """The default 7-40-40-1 network, no biases."""
    return build_network(NetworkConfig(), 7)
