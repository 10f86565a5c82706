"""Config validation (study/validation.py): every bad value is refused on load with a message
that names the field by its full path."""
import pytest

from study.config import ConfigError, from_dict

BASE = {"name": "t", "seed": 0, "task": {"n": 7, "target": "majority", "m": 10, "n_test": 10}, "rejection": {},
        "sgd": {"runs": 8, "chunk_runs": 4, "settings": [{"name": "a", "batch_size": 2}]}}


def with_(section, **values):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    raw.setdefault(section, {})
    raw[section] = {**raw.get(section, {}), **values}
    return raw


@pytest.mark.parametrize("raw, field", [
    (with_("task", m=200), "task.m"),
    (with_("task", n_test=120), "task.n_test"),
    (with_("task", target="nonsense"), "task.target"),
    (with_("task", target="0xff"), "task.target"),
    (with_("task", m="ten"), "task.m"),
    (with_("task", kind="cifar"), "task.kind"),
    (with_("nngp", ep="laplace"), "nngp.ep"),
    (with_("task", labels="odd"), "task.labels: applies to image tasks only"),
    (with_("task", balanced=True), "task.balanced: applies to image tasks only"),
    (with_("task", balanced=1), "task.balanced: expected true or false"),
    (with_("task", kind="digits", labels="prime"), "task.labels"),
    (with_("task", kind="digits", m=11, balanced=True), "task.balanced"),
    (with_("task", kind="digits", data_dir="/data"), "task.data_dir"),
    (with_("task", kind="digits", m=1700, n_test=100), "task.n_test"),
    (with_("task", kind="mnist", m=60_001), "task.m"),
    (with_("task", kind="mnist", n_test=10_001), "task.n_test"),
    (with_("network", conv_channels=[4]), "network.conv_channels: convolutions need image inputs"),
    (with_("network", conv_channels=[4, 0]), r"network.conv_channels\[1\]"),
    (with_("network", conv_kernel=0), "network.conv_kernel"),
    (with_("network", widths=[40, -3]), r"network.widths\[1\]"),
    (with_("network", sigma_w=0.0), "network.sigma_w"),
    (with_("network", depth=3), "network.depth"),
    (with_("rejection", draws=1000, chunk_draws=300, batch=100), "rejection.draws"),
    (with_("rejection", prng="mt19937"), "rejection.prng"),
    (with_("rejection", readouts=3), "rejection.readouts"),  # does not divide the batch
    (with_("rejection", readouts=0), "rejection.readouts"),
    (with_("rejection", batch=4096, chunk_draws=8192, readouts=8192), "rejection.readouts"),  # more than a batch
    (with_("sgd", settings=[{"name": "a", "optimizer": "lbfgs"}]), r"sgd.settings\[0\].optimizer"),
    (with_("sgd", settings=[{"name": "a", "loss": "hinge"}]), r"sgd.settings\[0\].loss"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 11}]), r"sgd.settings\[0\].batch_size"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 3}]), r"sgd.settings\[0\].batch_size: must divide task.m"),
    (with_("sgd", runs=10, chunk_runs=4), "sgd.chunk_runs"),
    (with_("mcmc", samples=100, chunk_samples=30), "mcmc.chunk_samples"),
    (with_("mcmc", init="sgd", init_setting="nope"), "mcmc.init_setting"),
    (with_("mcmc", init="vi"), "mcmc.init"),
    (with_("mcmc", also_init="rejection"), "mcmc.also_init"),  # the same init twice
    (with_("mcmc", also_init="sgd", init_setting="nope"), "mcmc.init_setting"),
    (with_("mcmc", chains=0), "mcmc.chains"),
    (with_("nngp", exact="hmc"), "nngp.exact"),
    (with_("nngp", draws=1000, chunk_draws=512, batch=256), "nngp.draws"),
    (with_("nngp", ep_enumerate_max=30), "nngp.ep_enumerate_max"),
    (with_("nngp", ep_min_count=0), "nngp.ep_min_count"),
    (with_("nngp", ep_min_count=6), "nngp.ep_min_count"),  # count_threshold 10 by default: at most 5
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
    # non-finite numbers (TOML writes them inf and nan), in every section that has floats
    (with_("network", sigma_w=float("inf")), "network.sigma_w: must be a finite number"),
    (with_("network", sigma_b=float("nan")), "network.sigma_b: must be a finite number"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 2, "lr": float("inf")}]), r"sgd.settings\[0\].lr: must be a finite"),
    (with_("sgd", settings=[{"name": "a", "batch_size": 2, "weight_decay": float("inf")}]),
     r"sgd.settings\[0\].weight_decay: must be a finite"),
    (with_("geometry", radius_max=float("inf")), "geometry.radius_max: must be a finite"),
    (with_("geometry", delta=float("inf")), "geometry.delta: must be a finite"),
    ({**BASE, "seed": 2**32}, r"seed: must be in 0..2\^32 - 1"),  # would draw the numbers of seed 0
    ({**BASE, "seed": -1}, "seed"),
    ({**BASE, "name": "x" * 300}, "name: at most 64 characters"),
    (with_("sgd", settings=[{"name": "é", "batch_size": 2}]), r"sgd.settings\[0\].name"),
    (with_("task", target="0x" + "f" * 31 + "_"), "task.target: .* is not a hex number"),
    (with_("task", target="0x-" + "f" * 31), "task.target: .* is not a hex number"),
    (with_("task", n=1, m=1, n_test=1, target="0xf"), "task.target: .* more than the 2\\^n = 2 bits"),
    (with_("rejection", draws=3 * 2**18), "rejection.draws: must be an even number"),
    (with_("mcmc", chains=3), "mcmc.chains: must be even"),
    (with_("nngp", draws=3 * 2**22, chunk_draws=2**22), "nngp.draws: must be an even number"),
    (with_("geometry", populations=["a", "bayes_rejection", "a"]), "geometry.populations: each population at most once"),
    (with_("geometry", posterior_sampler="gibbs"), "geometry.posterior_sampler: must be"),
    ({**with_("geometry", posterior_sampler="preactivations"),
      "task": {"kind": "digits", "m": 10, "n_test": 4}, "network": {"conv_channels": [4]}},
     "geometry.posterior_sampler: 'preactivations' needs a fully connected network"),
    # without [rejection], bayes_rejection's points need the pre-activation sampler, and some Bayesian
    # population must be measured for SGD's to be compared with
    ({k: v for k, v in with_("geometry", populations=["bayes_rejection"]).items() if k != "rejection"},
     r"geometry.populations\[0\]: .* or geometry.posterior_sampler = 'preactivations'"),
    ({k: v for k, v in with_("geometry").items() if k != "rejection"} | {"nngp": {}},
     "geometry.populations: needs a Bayesian population"),
])
def test_bad_config_names_the_field(raw, field):
    with pytest.raises(ConfigError, match=field):
        from_dict(raw)


def test_pre_activation_points_stand_in_for_a_rejection_stage():
    """E3G's shape: no [rejection], bayes_rejection measured from pre-activation draws; the
    geometry's reference is then that population, while P_B's stays the NNGP's exact sample."""
    from study.stages import geometry_reference
    raw = {k: v for k, v in with_("geometry", populations=["bayes_rejection", "a"],
                                  posterior_sampler="preactivations").items() if k != "rejection"}
    cfg = from_dict(raw | {"nngp": {}})
    assert cfg.reference == "nngp_exact" and geometry_reference(cfg) == "bayes_rejection"
    assert geometry_reference(from_dict(with_("geometry"))) == "bayes_rejection"  # E1: the reference estimator
