"""The one chunked-stage runner (study/runner.py), on a stage made up for the test: parts with
their own directories and hashes, resuming, declared outputs only, declared reads only."""
import sys
import types

import pandas as pd
import pytest

from study import runner, stages
from study.config import from_dict
from study.stages import Stage

CFG = from_dict({"name": "t", "seed": 3, "task": {"n": 7, "target": "majority", "m": 10, "n_test": 10},
                 "rejection": {}, "sgd": {"runs": 8, "chunk_runs": 4, "settings": [{"name": "a", "batch_size": 2}]}})


@pytest.fixture
def fake_stage(monkeypatch):
    """A stage 'rejection' whose module is replaced: two parts of 3 chunks, one in a subdirectory
    with a hash of its own; finalise returns what the test asks for."""
    calls, behaviour = [], {"outputs": None, "read": None}
    module = types.ModuleType("study.stages.rejection")

    def plan(ctx):
        def compute(part):
            def f(c):
                calls.append((part, c))
                return pd.DataFrame({"chunk": [c], "value": [10 * c + part]}), {"seconds": 0.0}
            return f
        return [runner.Part(3, compute(0), "first"), runner.Part(3, compute(1), "second", subdir="sub",
                                                                  config_hash="feedfacecafe")]

    def finalise(ctx, done):
        if behaviour["read"]:
            ctx.read(*behaviour["read"])
        tables = {"rejection_counts.csv": pd.concat([t for t, _ in done], ignore_index=True)}
        return (behaviour["outputs"] or tables), {"note": 1}

    module.plan, module.finalise = plan, finalise
    monkeypatch.setitem(sys.modules, "study.stages.rejection", module)
    return calls, behaviour


def test_parts_are_claimed_computed_once_and_written_with_hash_and_seed(tmp_path, fake_stage):
    calls, _ = fake_stage
    out = runner.run_stage(CFG, "rejection", tmp_path, progress=False)
    table = pd.read_csv(out)
    assert out.name == "rejection_counts.csv" and len(calls) == 6
    assert list(table["value"]) == [0, 10, 20, 1, 11, 21]
    assert set(table["config_hash"]) == {stages.stage_hash(CFG, "rejection")} and set(table["seed"]) == {3}
    assert (out.parent / "rejection" / "sub" / "manifest.json").read_text().count("feedfacecafe") == 1
    runner.run_stage(CFG, "rejection", tmp_path, progress=False)  # every chunk on disk: nothing recomputed
    assert len(calls) == 6 and pd.read_csv(out).equals(table)


def test_an_undeclared_output_is_refused_before_anything_is_written(tmp_path, fake_stage):
    _, behaviour = fake_stage
    behaviour["outputs"] = {"rejection_counts.csv": pd.DataFrame({"x": [1]}), "surprise.csv": pd.DataFrame({"x": [1]})}
    with pytest.raises(AssertionError, match="surprise.csv"):
        runner.run_stage(CFG, "rejection", tmp_path, progress=False)
    assert not (tmp_path / "t" / "raw" / "rejection_counts.csv").exists()


def test_a_stage_reads_only_what_it_declares_and_what_exists(tmp_path, fake_stage, monkeypatch):
    _, behaviour = fake_stage
    behaviour["read"] = ("sgd", "sgd_runs.csv")
    with pytest.raises(AssertionError, match="without declaring"):
        runner.run_stage(CFG, "rejection", tmp_path, progress=False)
    declared = Stage(**{**stages.STAGES["rejection"].__dict__, "reads": lambda cfg: ("sgd",)})
    monkeypatch.setitem(stages.STAGES, "rejection", declared)
    with pytest.raises(runner.StageError, match="python -m study sgd"):  # its hash changed: a new directory
        runner.run_stage(CFG, "rejection", tmp_path / "declared", progress=False)


def test_shards_split_the_chunks_without_overlap_and_the_last_writes_the_tables(tmp_path, fake_stage, monkeypatch):
    """Shard 0 of 2 computes its share of the two parts and leaves the tables to the other; shard 1
    computes the rest and writes the same table one process writes: every chunk computed once."""
    from study import store
    calls, _ = fake_stage
    monkeypatch.setattr(store, "SHARD", store.Shard(0, 2))
    assert runner.run_stage(CFG, "rejection", tmp_path / "split", progress=False) is None
    first = list(calls)
    assert not (tmp_path / "split" / "t" / "raw" / "rejection_counts.csv").exists()
    monkeypatch.setattr(store, "SHARD", store.Shard(1, 2))
    out = runner.run_stage(CFG, "rejection", tmp_path / "split", progress=False)
    second = calls[len(first):]
    assert first and second and not set(first) & set(second)
    monkeypatch.setattr(store, "SHARD", store.Shard())
    calls.clear()
    whole = runner.run_stage(CFG, "rejection", tmp_path / "whole", progress=False)
    assert sorted(first + second) == sorted(calls) and len(calls) == 6
    assert out.read_bytes() == whole.read_bytes()


def test_every_chunk_has_one_owner_and_a_sequential_part_one_process():
    parts = [runner.Part(5, None, "a"), runner.Part(4, None, "chain", sequential=True), runner.Part(3, None, "b")]
    for n in (1, 2, 3, 5):
        owners = [[i for i in range(n) if runner.shares(parts, runner.store.Shard(i, n))[p](c)]
                  for p, part in enumerate(parts) for c in range(part.n_chunks)]
        assert all(len(o) == 1 for o in owners)
        chain = {o[0] for o in owners[5:9]}
        assert len(chain) == 1  # chunk c of a sequential part continues from c - 1: one owner for all
        if n == 2:
            assert {o[0] for o in owners} == {0, 1}
