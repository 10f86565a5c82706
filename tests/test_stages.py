"""The stage registry (study/stages/__init__.py): one definition per stage, from which the CLI,
the hashes, the code hashes and raw/stages.json are derived."""
import dataclasses
import importlib
import re
from pathlib import Path

from study import cli
from study.config import ExperimentConfig, from_dict, load
from study.stages import STAGES, enabled, stage_hash

ROOT = Path(__file__).resolve().parents[1]
BASE = {"name": "t", "seed": 0, "task": {"n": 7, "target": "majority", "m": 10, "n_test": 10}, "rejection": {},
        "sgd": {"runs": 8, "chunk_runs": 4, "settings": [{"name": "a", "batch_size": 2}, {"name": "b", "batch_size": 5}]}}


def test_every_stage_is_a_config_section_with_a_module_and_declared_outputs():
    sections = {f.name for f in dataclasses.fields(ExperimentConfig)}
    streams = [s.stream for s in STAGES.values()]
    assert len(set(streams)) == len(streams)  # no two stages share a key stream
    for name, stage in STAGES.items():
        assert name in sections
        module = importlib.import_module(f"study.stages.{name}")
        assert callable(module.plan) and callable(module.finalise)
        assert all((ROOT / "study" / path).is_file() for path in stage.code_modules())
        assert len(stage.outputs) == len(set(stage.outputs)) and stage.outputs[0].endswith(".csv")
    outputs = [o for s in STAGES.values() for o in s.outputs]
    assert len(outputs) == len(set(outputs))  # a raw file has one writer


def test_stages_run_after_the_stages_they_read():
    cfg = load(ROOT / "configs" / "e1_quick.toml")
    order = list(STAGES)
    for name in enabled(cfg):
        assert all(order.index(r) < order.index(name) for r in STAGES[name].reads(cfg))


def test_hashes_change_with_what_a_stage_depends_on_and_only_that():
    cfg = from_dict(BASE)
    a, b = cfg.sgd.settings
    assert stage_hash(cfg, "rejection") == stage_hash(from_dict(BASE), "rejection")
    assert stage_hash(cfg, "rejection") != stage_hash(dataclasses.replace(cfg, seed=1), "rejection")
    assert stage_hash(cfg, "sgd", a) != stage_hash(cfg, "sgd", dataclasses.replace(a, lr=0.5))
    other_b = dataclasses.replace(cfg, sgd=dataclasses.replace(cfg.sgd, settings=(a, dataclasses.replace(b, lr=0.5))))
    assert stage_hash(cfg, "sgd", a) == stage_hash(other_b, "sgd", a)  # a setting's population keeps its hash
    assert stage_hash(cfg, "sgd") != stage_hash(other_b, "sgd")  # the stage as a whole does not
    assert stage_hash(cfg, "sgd", a) != stage_hash(
        dataclasses.replace(cfg, sgd=dataclasses.replace(cfg.sgd, max_steps=7)), "sgd", a)
    # Pool and refill interval only schedule the work (each run's result is its own; tests/test_sgd.py).
    rescheduled = dataclasses.replace(cfg, sgd=dataclasses.replace(cfg.sgd, pool=3, check_every=9))
    assert stage_hash(cfg, "sgd", a) == stage_hash(rescheduled, "sgd", a)
    assert stage_hash(cfg, "rejection") == stage_hash(other_b, "rejection")


def test_a_stage_that_reads_another_is_hashed_with_it():
    """Geometry measures SGD's stored runs; NNGP-EP scores the functions other stages saw when it
    cannot enumerate them: a change upstream changes their hashes, and not otherwise."""
    cfg = load(ROOT / "configs" / "e1_smoke.toml")
    setting = cfg.sgd.settings[0]
    relr = dataclasses.replace(cfg, sgd=dataclasses.replace(
        cfg.sgd, settings=(dataclasses.replace(setting, lr=setting.lr / 2), *cfg.sgd.settings[1:])))
    assert stage_hash(cfg, "geometry") != stage_hash(relr, "geometry")
    every = dataclasses.replace(cfg.nngp, ep_enumerate_max=cfg.task.n_test)
    assert STAGES["nngp"].reads(dataclasses.replace(cfg, nngp=every)) == ()
    assert stage_hash(dataclasses.replace(cfg, nngp=every), "nngp") == stage_hash(dataclasses.replace(relr, nngp=every), "nngp")
    few = dataclasses.replace(cfg, nngp=dataclasses.replace(cfg.nngp, ep_enumerate_max=cfg.task.n_test - 1))
    assert set(STAGES["nngp"].reads(few)) == {"rejection", "sgd", "mcmc"}
    assert stage_hash(few, "nngp") != stage_hash(dataclasses.replace(relr, nngp=few.nngp), "nngp")


def test_the_cli_and_the_makefile_take_their_stage_names_from_the_registry():
    stage = next(a for a in cli.build_parser()._actions if a.dest == "stage")
    assert tuple(stage.choices) == ("check", *STAGES, "run")
    makefile = (ROOT / "Makefile").read_text()
    for name in STAGES:  # no stage is named in the Makefile: its stage targets come from the CLI
        assert not re.search(rf"^{name}\b.*:", makefile, re.M)
    assert "stage-%:" in makefile


def _study_imports(path: Path) -> set[str]:
    """The study/ modules (paths under study/) a module imports directly."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("study"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("study")]
        for name in names:
            parts = name.split(".")[1:]
            for candidate in (ROOT / "study" / Path(*parts)).with_suffix(".py"), ROOT / "study" / Path(*parts) / "__init__.py":
                if parts and candidate.is_file():
                    found.add(str(candidate.relative_to(ROOT / "study")))
    return found


def test_a_stages_code_hash_covers_every_study_module_it_runs():
    """The modules in a stage's code hash are closed under import: editing any module a stage's
    code runs changes the stage's hash (store.code_hash), so its old chunks are refused."""
    for name, stage in STAGES.items():
        hashed = set(stage.code_modules())
        todo, seen = [f"stages/{name}.py"], set()
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo += sorted(_study_imports(ROOT / "study" / module))
        # store.py and validation.py (writing, checking) decide no number of a result
        missing = seen - hashed - {"store.py", "validation.py", "runner.py", "memory.py"}
        assert not missing, f"stage {name} runs {sorted(missing)} but its code hash does not cover them"
