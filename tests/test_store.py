"""The non-finite guard on raw tables: a NaN or infinity is written only where its writer declared it."""
import numpy as np
import pandas as pd
import pytest

from study import store


def table():
    return pd.DataFrame({"fitted": [True, False, True], "loss": [0.1, np.nan, 0.2], "steps": [3, 10, 4],
                         "function": ["a", "b", "c"]})


def test_non_finite_values_stop_the_write_naming_column_and_rows(tmp_path):
    t = table()
    t.loc[2, "loss"] = np.inf
    with pytest.raises(store.NonFiniteError, match=r"column 'loss' has 2 non-finite value\(s\).*rows \[1, 2\]"):
        store.write_raw_table(t, tmp_path / "runs.csv")
    assert not (tmp_path / "runs.csv").exists() and not list(tmp_path.iterdir())


def test_declared_rows_may_hold_non_finite_values_and_no_others(tmp_path):
    allowed = {"loss": lambda t: ~t["fitted"]}
    store.write_raw_table(table(), tmp_path / "runs.csv", allowed)
    back = pd.read_csv(tmp_path / "runs.csv")
    assert back["loss"].isna().tolist() == [False, True, False]
    t = table()
    t.loc[0, "loss"] = np.nan  # a fitted run: not declared
    with pytest.raises(store.NonFiniteError, match=r"rows \[0\]"):
        store.write_raw_table(t, tmp_path / "runs2.csv", allowed)
    # ANY_COLUMN covers the columns not named; a named column keeps its own rule
    store.check_finite(table().assign(other=[np.nan, 1.0, 1.0]), "x", {store.ANY_COLUMN: store.EVERY_ROW})
    with pytest.raises(store.NonFiniteError, match="'loss'"):
        store.check_finite(table(), "x", {store.ANY_COLUMN: store.EVERY_ROW, "loss": lambda t: t["fitted"]})


def test_a_chunk_with_a_nan_is_not_written_and_the_stage_stops(tmp_path):
    def compute(c):
        return pd.DataFrame({"x": [1.0, np.nan if c == 1 else 2.0]}), {"seconds": 0.0}

    with pytest.raises(store.NonFiniteError, match="demo chunk 1"):
        store.run_chunks(tmp_path, 3, compute, "demo", progress=False)
    assert (tmp_path / "chunk_00000.json").exists() and not (tmp_path / "chunk_00001.csv").exists()


def test_npz_writes_are_atomic_with_unique_temporary_names(tmp_path, monkeypatch):
    store.atomic_write_npz(tmp_path / "a.npz", x=np.arange(3))
    with np.load(tmp_path / "a.npz") as f:
        np.testing.assert_array_equal(f["x"], np.arange(3))
    names = []
    real_mkstemp = store.tempfile.mkstemp

    def spy(**kw):
        fd, name = real_mkstemp(**kw)
        names.append(name)
        return fd, name

    monkeypatch.setattr(store.tempfile, "mkstemp", spy)
    store.atomic_write_npz(tmp_path / "b.npz", x=np.zeros(2))
    store.atomic_write_npz(tmp_path / "b.npz", x=np.ones(2))
    assert len(set(names)) == 2  # one temporary name per write

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.np, "savez", full_disk)
    with pytest.raises(OSError, match="No space"):
        store.atomic_write_npz(tmp_path / "c.npz", x=np.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]  # no temporary file left behind


def counting_compute(calls, extra_dir=None):
    def compute(c):
        calls.append(c)
        if extra_dir is not None:
            store.atomic_write_npz(extra_dir / f"state_{c:05d}.npz", x=np.full(4, c))
        return pd.DataFrame({"function": [f"{c:x}", "ff"], "count": [c + 1, 7]}), {"seconds": 0.5}
    return compute


@pytest.mark.parametrize("damage", ["truncate", "garbage_rows", "binary", "empty", "record"])
def test_a_damaged_chunk_is_reported_and_computed_again(tmp_path, capsys, damage):
    calls = []
    tables = store.run_chunks(tmp_path, 3, counting_compute(calls), "demo", progress=False)
    clean, _ = store.read_chunks(tables)
    target = tables[1] if damage != "record" else tables[1].with_suffix(".json")
    data = target.read_bytes()
    target.write_bytes({"truncate": data[: len(data) // 2], "garbage_rows": data + b"1,zz,5\n",
                        "binary": bytes(range(256)), "empty": b"", "record": b"{not json"}[damage])
    with pytest.raises(store.CorruptChunkError, match="chunk_00001"):
        store.read_chunks(tables)  # never merged
    calls.clear()
    tables = store.run_chunks(tmp_path, 3, counting_compute(calls), "demo", progress=False)
    assert calls == [1] and "demo chunk 1" in capsys.readouterr().err
    again, stats = store.read_chunks(tables)
    pd.testing.assert_frame_equal(again, clean)
    assert list(stats.columns) == ["chunk", "seconds"]  # checksums and row counts stay in the records


def test_a_chunk_file_written_by_compute_is_verified_too(tmp_path):
    calls = []
    files = lambda c: [tmp_path / f"state_{c:05d}.npz"]
    store.run_chunks(tmp_path, 2, counting_compute(calls, tmp_path), "demo", progress=False, chunk_files=files)
    (tmp_path / "state_00000.npz").write_bytes(b"garbage")
    calls.clear()
    store.run_chunks(tmp_path, 2, counting_compute(calls, tmp_path), "demo", progress=False, chunk_files=files)
    assert calls == [0]
    with np.load(tmp_path / "state_00000.npz") as f:
        np.testing.assert_array_equal(f["x"], np.zeros(4))


def test_a_second_process_cannot_write_a_locked_stage_directory(tmp_path):
    """The lock is held by this process; another process trying the same directory is refused at
    once with a message, and gets it once the holder has ended."""
    import subprocess
    import sys

    store.lock_directory(tmp_path)
    store.lock_directory(tmp_path)  # again in the same process: fine
    probe = ("import sys; from pathlib import Path; from study import store\n"
             "try:\n    store.lock_directory(Path(sys.argv[1]))\nexcept store.StageBusyError as e:\n"
             "    print(e); sys.exit(3)\n")
    run = lambda: subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                                 cwd=store.Path(store.__file__).parents[1])
    other = run()
    assert other.returncode == 3 and "another process is writing" in other.stdout
    fd = store._HELD_LOCKS.pop((tmp_path / ".lock").resolve())
    store.os.close(fd)  # as if this process had ended
    assert run().returncode == 0


def test_shards_lock_side_by_side_but_not_twice_nor_beside_an_unsplit_run(tmp_path, monkeypatch):
    """Shard 0 of 2 holds its locks; shard 1 of 2 in another process may write beside it, a second
    shard 0 or an unsplit run may not."""
    import subprocess
    import sys

    monkeypatch.setattr(store, "SHARD", store.Shard(0, 2))
    store.lock_directory(tmp_path)
    probe = ("import sys; from pathlib import Path; from study import store\n"
             "store.SHARD = store.Shard(int(sys.argv[2]), int(sys.argv[3]))\n"
             "try:\n    store.lock_directory(Path(sys.argv[1]))\nexcept store.StageBusyError as e:\n"
             "    print(e); sys.exit(3)\n")
    run = lambda i, n: subprocess.run([sys.executable, "-c", probe, str(tmp_path), str(i), str(n)], capture_output=True,
                                      text=True, cwd=store.Path(store.__file__).parents[1]).returncode
    assert run(1, 2) == 0 and run(0, 2) == 3 and run(0, 1) == 3
    for name in (".lock", ".lock-0-of-2"):
        store.os.close(store._HELD_LOCKS.pop((tmp_path / name).resolve()))  # as if this process had ended
    assert run(0, 1) == 0


def test_code_fingerprint_ignores_prose_and_sees_code():
    """A docstring or comment edit keeps a stage's code hash; a change to what runs changes it."""
    source = '''"""Module doc."""
import math


def f(x):
    """Doc of f."""
    # a comment
    return math.sqrt(x) + 1  # trailing comment


class C:
    """Doc of C."""

    def g(self):
        return "not a docstring", 2
'''
    base = store.code_fingerprint(source)
    prose = source.replace("Module doc.", "Another text.").replace("Doc of f.", "Longer\n    doc.").replace(
        "# a comment", "# another comment").replace("Doc of C.", "")
    assert store.code_fingerprint(prose) == base
    for code in (source.replace("+ 1", "+ 2"), source.replace("math.sqrt", "math.exp"),
                 source.replace('"not a docstring"', '"changed"'), source.replace("def g", "def h")):
        assert store.code_fingerprint(code) != base
    # every stage's hash is computed from the real modules
    from study.stages import STAGES

    assert all(len(store.code_hash(stage)) == 12 for stage in STAGES)
