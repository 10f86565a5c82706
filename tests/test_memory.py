"""The memory check: sizes that cannot fit are refused before any work or file; the shipped
configs fit on this machine."""
import dataclasses
from pathlib import Path

import pytest

from study import cli, memory
from study.config import NetworkConfig, load
from study.network import build_network


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("configs/*_quick.toml")), ids=lambda p: p.name)
def test_the_quick_configs_fit_in_a_few_gib(path):
    """The quick profile is for a 2-core, 24 GiB machine: every stage's estimate stays under 2 GiB."""
    assert max(need for need, _ in memory.memory_estimate(load(path)).values()) < 2 * 2**30


def test_the_estimate_grows_with_the_sizes_it_names():
    cfg = load(Path(__file__).parents[1] / "configs" / "e1_smoke.toml")
    base = memory.memory_estimate(cfg)
    for widths in ((40, 40), (40, 2, 40), ()):  # the count the networks themselves have
        for sigma_b in (0.0, 1.0):
            net = build_network(NetworkConfig(widths=widths, sigma_b=sigma_b), 7)
            assert memory.param_count(7, NetworkConfig(widths=widths, sigma_b=sigma_b)) == net.n_params
    for conv, widths, sigma_b in (((4, 3), (16,), 0.1), ((2,), (), 0.0), ((), (8, 8), 1.0)):  # on 8x8 images
        net_cfg = NetworkConfig(widths=widths, sigma_b=sigma_b, conv_channels=conv, conv_kernel=3)
        assert memory.param_count((8, 8, 1), net_cfg) == build_network(net_cfg, (8, 8, 1)).n_params
    with pytest.raises(Exception, match="rejection: needs about"):
        memory.check_memory(cfg, base["rejection"][0] - 1, sections={"rejection"})
    memory.check_memory(cfg, max(need for need, _ in base.values()))
    # e1_smoke draws 16 output layers per hidden draw: fewer hidden draws (and activations) per batch
    plain = dataclasses.replace(cfg, rejection=dataclasses.replace(cfg.rejection, readouts=1))
    assert cfg.rejection.readouts == 16 and base["rejection"][0] < memory.memory_estimate(plain)["rejection"][0]
    # the geometry stage holds a dense D x D Hessian only for the identity check
    D = build_network(cfg.network, 7).n_params
    no_dense = dataclasses.replace(cfg, geometry=dataclasses.replace(cfg.geometry, identity_points=0))
    assert base["geometry"][0] - memory.memory_estimate(no_dense)["geometry"][0] == 3 * 4 * D * D
    assert "identity_points" in base["geometry"][1] and "identity_points" not in memory.memory_estimate(no_dense)["geometry"][1]


@pytest.mark.parametrize("section, values, field", [
    ("network", "widths = [40, 1_000_000_000]", "network.widths"),
    ("rejection", "draws = 2_000_000_000_000\nchunk_draws = 1_000_000_000_000\nbatch = 1_000_000_000_000", "rejection.batch"),
    ("sgd", 'runs = 1_000_000_000_000\nchunk_runs = 1_000_000_000_000\npool = 1_000_000_000_000\n'
            '[[sgd.settings]]\nname = "a"\nbatch_size = 2', "sgd.chunk_runs"),
])
def test_sizes_that_cannot_fit_in_memory_are_refused_before_any_work(tmp_path, capsys, section, values, field):
    sections = {"network": "", "rejection": "", "sgd": 'runs = 8\nchunk_runs = 8\n[[sgd.settings]]\nname = "a"\nbatch_size = 2'}
    sections[section] = values
    text = 'name = "big"\nseed = 0\n[task]\nm = 10\nn_test = 4\n' + "".join(f"[{k}]\n{v}\n" for k, v in sections.items())
    (tmp_path / "big.toml").write_text(text)
    results = tmp_path / "results"
    for stage in ("check", "run"):
        assert cli.main([stage, "--config", str(tmp_path / "big.toml"), "--results", str(results)]) == 2
        err = capsys.readouterr().err
        assert "GiB of memory at once" in err and field in err
    assert not results.exists()  # nothing written
