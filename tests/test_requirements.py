"""requirements/: the CUDA 12 lock is the CPU lock plus the CUDA build of the same jaxlib, every pin
exact, and `make venv` picks the lock by ACCEL (an unknown ACCEL is refused before anything runs)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==([^\s;]+)$")


def pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """(name -> version of every `name==version` line, every other non-comment line)."""
    found, other = {}, []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if match := PIN.match(line):
            found[match[1].lower().replace("_", "-")] = match[3]
        else:
            other.append(line)
    return found, other


def test_cuda_lock_is_the_cpu_lock_plus_the_cuda_build_of_the_same_jaxlib():
    cpu, cpu_other = pins(ROOT / "requirements" / "lock.txt")
    cuda, cuda_other = pins(ROOT / "requirements" / "lock-cuda12.txt")
    assert cpu_other == [] and cuda_other == ["-r lock.txt"]  # every line an exact pin; the CPU pins included whole
    assert not set(cuda) & set(cpu)  # nothing of the CPU set pinned twice (to another version)
    assert cuda["jax-cuda12-plugin"] == cuda["jax-cuda12-pjrt"] == cpu["jaxlib"] == cpu["jax"]
    nvidia = {name for name in cuda if name.startswith("nvidia-")}
    # what jax-cuda12-plugin[with_cuda] 0.5.3 requires (its wheel's metadata)
    assert nvidia == {f"nvidia-{lib}-cu12" for lib in ("cublas", "cuda-cupti", "cuda-nvcc", "cuda-runtime", "cudnn",
                                                        "cufft", "cusolver", "cusparse", "nccl", "nvjitlink")}
    assert cuda["nvidia-cudnn-cu12"].startswith("9.")  # the plugin's bound: >= 9.1, < 10


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("accel, lock, stamp", [("cpu", "requirements/lock.txt", ".venv/.installed"),
                                                ("cuda12", "requirements/lock-cuda12.txt", ".venv/.installed-cuda12")])
def test_make_venv_installs_the_lock_of_its_accel(accel, lock, stamp):
    out = subprocess.run(["make", "-n", "-B", "venv", f"ACCEL={accel}"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"-r {lock}" in out.stdout and f"touch {stamp}" in out.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_refuses_an_unknown_accel():
    out = subprocess.run(["make", "-n", "venv", "ACCEL=rocm"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "ACCEL=rocm" in out.stderr and "cuda12" in out.stderr
