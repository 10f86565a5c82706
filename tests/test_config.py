"""Loading the shipped configs (study/config.py)."""
from pathlib import Path

import pytest

from study.config import load, load_or_report


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("configs/*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load(path)
    assert cfg.name == path.stem


def test_load_or_report_says_why_a_config_cannot_be_used(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text('name = "bad"\nseed = 0\n[task]\nm = "ten"\n')
    assert load_or_report(tmp_path / "bad.toml") is None
    assert "task.m: expected int" in capsys.readouterr().err
    assert load_or_report(Path(__file__).parents[1] / "configs" / "e1_smoke.toml").name == "e1_smoke"


def test_the_reference_is_rejection_then_mcmc_then_the_nngp_sample():
    """SGD is compared first with exact rejection where it runs, else MCMC on the finite network,
    else the exact sample of the NNGP posterior (E3 at m where MCMC does not mix)."""
    configs = Path(__file__).parents[1] / "configs"
    assert load(configs / "e1_smoke.toml").reference == "bayes_rejection"
    assert load(configs / "e2_smoke.toml").reference == "bayes_mcmc"
    cnn = load(configs / "e3cnn_smoke.toml")
    assert cnn.rejection is None and cnn.mcmc is None and cnn.reference == "nngp_exact"


# Split R-hat needs chains long enough to show their correlation: the exact NNGP chains of E1M at 16
# kept states per chain and chunk had R-hat 1.02 while ArviZ's bulk ESS called them independent.
MIN_KEPT_PER_CHAIN = 64


@pytest.mark.parametrize("path", sorted(p for p in Path(__file__).parents[1].glob("configs/*.toml")
                                        if not p.stem.endswith("_smoke")), ids=lambda p: p.name)
def test_elliptical_slice_chains_of_the_quick_and_full_profiles_are_long(path):
    cfg = load(path)
    if cfg.nngp is None or cfg.nngp.exact != "ess":
        pytest.skip("no elliptical slice chains in function space")
    assert cfg.nngp.chunk_draws // cfg.nngp.chains >= MIN_KEPT_PER_CHAIN
