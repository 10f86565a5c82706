"""The command line (study/cli.py): bad configs and files are refused before any work, machine
faults end in one line saying what to do."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from study import cli

ROOT = Path(__file__).resolve().parents[1]


def test_cli_rejects_bad_config_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nseed = 0\n[task]\nm = 500\n')
    results = tmp_path / "results"
    for stage in ("check", "rejection", "sgd"):
        assert cli.main([stage, "--config", str(bad), "--results", str(results)]) == 2
        assert "task.m" in capsys.readouterr().err
    assert not results.exists()


def test_cli_rejects_missing_and_malformed_files(tmp_path, capsys):
    assert cli.main(["check", "--config", str(tmp_path / "nope.toml")]) == 2
    (tmp_path / "x.toml").write_text("name = \n")
    assert cli.main(["check", "--config", str(tmp_path / "x.toml")]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_a_config_that_is_not_utf8_is_named_as_such(tmp_path, capsys):
    (tmp_path / "latin1.toml").write_bytes('name = "caf\u00e9"\nseed = 0\n'.encode("latin-1"))
    assert cli.main(["check", "--config", str(tmp_path / "latin1.toml")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


def test_a_full_disk_ends_in_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    """The CLI's fault path: an OSError (ENOSPC) from a write is one line naming the file and what
    to do, exit 1, no traceback; with --debug the exception itself propagates."""
    import errno

    from study import store

    config = tmp_path / "c.toml"
    config.write_text('name = "c"\nseed = 0\n[task]\nm = 10\nn_test = 4\n[rejection]\n'
                      '[sgd]\nruns = 8\nchunk_runs = 8\npool = 8\nmax_steps = 50\n'
                      '[[sgd.settings]]\nname = "a"\nbatch_size = 2\n')

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store, "atomic_write_text", full)
    args = ["sgd", "--config", str(config), "--results", str(tmp_path / "r"), "--no-progress"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "manifest.json" in err and "Traceback" not in err
    with pytest.raises(OSError):
        cli.main(args + ["--debug"])


def test_shards_from_jax_distributed_on_localhost():
    """`--shard jax`: two processes joined by jax.distributed through a coordinator on localhost
    are shards 0/2 and 1/2 (each reads its index and the count from JAX once the job has formed:
    the count is 2 only when both have joined). Incomplete or malformed variables, or none outside
    a cluster JAX detects, are an error naming them, before anything starts."""
    with socket.socket() as sock:  # a free port for the coordinator
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "from study import cli; s = cli.parse_shard('jax'); print('SHARD', s.index, s.count)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "KUBERNETES_", "JAX_"))}
    env = {**clean, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                                              "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)}) for i in (1, 0)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "SHARD 1 2" in logs[0] and "SHARD 0 2" in logs[1], logs
    alone = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert alone.returncode != 0 and "set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID" in alone.stderr
    with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS not set"):
        cli.parse_shard("jax", {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})
    with pytest.raises(ValueError, match="must be integers"):
        cli.parse_shard("jax", {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "two",
                                "JAX_PROCESS_ID": "0"})


def test_shards_from_the_command_line_and_from_a_slurm_array():
    from study.store import Shard
    assert cli.parse_shard(None) == Shard(0, 1) and cli.parse_shard("3/4") == Shard(3, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert cli.parse_shard("slurm", slurm) == Shard(1, 3)
    for bad, why in (("4/4", "does not exist"), ("-1/2", "does not exist"), ("1of2", "expected i/n")):
        with pytest.raises(ValueError, match=why):
            cli.parse_shard(bad)
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_COUNT is not set"):
        cli.parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "0"})


def test_fresh_is_refused_for_a_shard_before_anything_is_deleted(tmp_path, capsys, monkeypatch):
    from study import store
    monkeypatch.setattr(store, "SHARD", store.Shard())
    stage_dir = tmp_path / "e1_smoke" / "raw" / "rejection"
    stage_dir.mkdir(parents=True)
    (stage_dir / "chunk_00000.json").write_text("{}")
    config = str(Path(cli.__file__).parents[1] / "configs" / "e1_smoke.toml")
    code = cli.main(["rejection", "--config", config, "--results", str(tmp_path), "--fresh",
                     "--shard", "0/2"])
    assert code == 2 and "delete the other shards' chunks" in capsys.readouterr().err
    assert (stage_dir / "chunk_00000.json").exists()
