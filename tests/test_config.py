import dataclasses
from pathlib import Path

import pytest

from study import cli
from study.config import ConfigError, from_dict, load

BASE = {"name": "t", "seed": 0, "task": {"n": 7, "target": "majority", "m": 10, "n_test": 10}, "rejection": {},
        "sgd": {"runs": 8, "chunk_runs": 4, "settings": [{"name": "a", "batch_size": 2}]}}


def with_(section, **values):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    raw.setdefault(section, {})
    raw[section] = {**raw.get(section, {}), **values}
    return raw


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("configs/*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load(path)
    assert cfg.name == path.stem


@pytest.mark.parametrize("raw, field", [
    (with_("task", m=200), "task.m"),
    (with_("task", n_test=120), "task.n_test"),
    (with_("task", target="nonsense"), "task.target"),
    (with_("task", target="0xff"), "task.target"),
    (with_("task", m="ten"), "task.m"),
    (with_("network", widths=[40, -3]), r"network.widths\[1\]"),
    (with_("network", sigma_w=0.0), "network.sigma_w"),
    (with_("network", depth=3), "network.depth"),
    (with_("rejection", draws=1000, chunk_draws=300, batch=100), "rejection.draws"),
    (with_("rejection", prng="mt19937"), "rejection.prng"),
    (with_("sgd", settings=[{"name": "a", "optimizer": "lbfgs"}]), r"sgd.settings\[0\].optimizer"),
    (with_("sgd", settings=[{"name": "a", "loss": "hinge"}]), r"sgd.settings\[0\].loss"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 11}]), r"sgd.settings\[0\].batch_size"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 3}]), r"sgd.settings\[0\].batch_size: must divide task.m"),
    (with_("sgd", runs=10, chunk_runs=4), "sgd.chunk_runs"),
    (with_("mcmc", samples=100, chunk_samples=30), "mcmc.chunk_samples"),
    (with_("mcmc", init="sgd", init_setting="nope"), "mcmc.init_setting"),
    (with_("mcmc", init="vi"), "mcmc.init"),
    (with_("mcmc", chains=0), "mcmc.chains"),
    (with_("nngp", exact="hmc"), "nngp.exact"),
    (with_("nngp", draws=1000, chunk_draws=512, batch=256), "nngp.draws"),
    (with_("nngp", ep_enumerate_max=30), "nngp.ep_enumerate_max"),
    (with_("geometry", populations=["sgd_b9"]), r"geometry.populations\[0\]"),
    (with_("geometry", populations=["bayes_mcmc"]), r"geometry.populations\[0\]"),  # no [mcmc] section
    (with_("geometry", populations="a"), "geometry.populations"),
    (with_("geometry", top_k=20, lanczos_matvecs=10), "geometry.lanczos_matvecs"),
    (with_("geometry", radius_min=1.0, radius_max=0.5), "geometry.radius_max"),
    (with_("geometry", delta=0.0), "geometry.delta"),
    (with_("analysis", geometry_min_points=0), "analysis.geometry_min_points"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 2, "weight_decay": -1.0}]), r"sgd.settings\[0\].weight_decay"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 2, "min_steps": 20000}]), r"sgd.settings\[0\].min_steps"),
    ({**with_("geometry"), "sweep": {"setting": "a", "variants": [{"name": "v", "widths": [40, 0]}]}},
     r"sweep.variants\[0\].widths"),
    ({**with_("geometry"), "sweep": {"setting": "zz", "variants": [{"name": "v", "widths": [4]}]}}, "sweep.setting"),
    ({**with_("geometry"), "sweep": {"setting": "a", "variants": []}}, "sweep.variants"),
    ({**BASE, "sweep": {"setting": "a", "variants": [{"name": "v", "widths": [4]}]}}, "sweep"),  # no [geometry]
    ({**with_("geometry"), "sweep": {"setting": "a", "variants": [{"name": "v", "widths": [4], "weight_decay": -0.1}]}},
     r"sweep.variants\[0\].weight_decay"),
    ({k: v for k, v in BASE.items() if k != "rejection"}, "rejection"),
    ({**BASE, "colour": "blue"}, "colour"),
    ({k: v for k, v in BASE.items() if k != "seed"}, "seed"),
])
def test_bad_config_names_the_field(raw, field):
    with pytest.raises(ConfigError, match=field):
        from_dict(raw)


def test_valid_config_round_trips_and_hashes_change_with_content():
    cfg = from_dict(BASE)
    other = dataclasses.replace(cfg, seed=1)
    assert cfg.stage_hash("rejection") == from_dict(BASE).stage_hash("rejection")
    assert cfg.stage_hash("rejection") != other.stage_hash("rejection")
    setting = cfg.sgd.settings[0]
    assert cfg.stage_hash("sgd", setting) != cfg.stage_hash("sgd", dataclasses.replace(setting, lr=0.5))
    assert cfg.stage_hash("sgd", setting) != dataclasses.replace(
        cfg, sgd=dataclasses.replace(cfg.sgd, max_steps=7)).stage_hash("sgd", setting)
    # Pool and refill interval only schedule the work (each run's result is its own; tests/test_sgd.py).
    rescheduled = dataclasses.replace(cfg, sgd=dataclasses.replace(cfg.sgd, pool=3, check_every=9))
    assert cfg.stage_hash("sgd", setting) == rescheduled.stage_hash("sgd", setting)


def test_cli_rejects_bad_config_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nseed = 0\n[task]\nm = 500\n')
    results = tmp_path / "results"
    for stage in ("check", "sample", "train"):
        assert cli.main([stage, "--config", str(bad), "--results", str(results)]) == 2
        assert "task.m" in capsys.readouterr().err
    assert not results.exists()


def test_cli_rejects_missing_and_malformed_files(tmp_path, capsys):
    assert cli.main(["check", "--config", str(tmp_path / "nope.toml")]) == 2
    (tmp_path / "x.toml").write_text("name = \n")
    assert cli.main(["check", "--config", str(tmp_path / "x.toml")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
