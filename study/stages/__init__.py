"""The stage registry: each stage of the study defined once.

A stage is a resumable, chunked computation (study/runner.py runs every one of them) that turns
a config into raw tables under results/<experiment>/raw/. Its entry here says everything the rest
of the code derives from it:

- name: the CLI command (`python -m study <name>`), the config section that enables it, the
  raw/<name>/ chunk directory, the Makefile target (`make stage-<name>`) and the key in
  raw/stages.json;
- stream: its key, fold_in(key(seed), stream);
- config: the parts of the config its results depend on (hashed, with the hashes of the stages
  it reads);
- reads: the stages whose public output files it reads (for a config);
- modules: the study/ modules whose code decides its results (beside SHARED_MODULES);
- outputs: the raw files it writes, the first one carrying the provenance sidecar.

The compute of stage <name> lives in study/stages/<name>.py as plan(ctx) -> chunked parts and
finalise(ctx, parts) -> output tables. Importing this module is cheap (no jax).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Callable

from study.config import SGD_SCHEDULING, ExperimentConfig, task_identity

# Modules whose code decides every stage's results (paths under study/).
SHARED_MODULES = ("config.py", "tasks.py", "images.py", "encoding.py", "network.py", "runner.py", "stages/__init__.py")


@dataclass(frozen=True)
class Stage:
    name: str
    stream: int
    summary: str  # one line for --help
    config: Callable[[ExperimentConfig], dict]
    modules: tuple[str, ...]
    outputs: tuple[str, ...]
    reads: Callable[[ExperimentConfig], tuple[str, ...]] = lambda cfg: ()
    prng: Callable[[ExperimentConfig], str | None] = lambda cfg: None  # jax PRNG implementation of its key

    def enabled(self, cfg: ExperimentConfig) -> bool:
        return getattr(cfg, self.name) is not None

    def code_modules(self) -> tuple[str, ...]:
        return SHARED_MODULES + (f"stages/{self.name}.py",) + self.modules


def _asdict(section) -> dict:
    return dataclasses.asdict(section)


def sgd_identity(cfg: ExperimentConfig, with_settings: bool = True) -> dict:
    """The SGD config without its scheduling fields (no run depends on them), and without the
    settings if asked."""
    drop = SGD_SCHEDULING + (() if with_settings else ("settings",))
    return {k: v for k, v in _asdict(cfg.sgd).items() if k not in drop}


def sgd_kept_params(cfg: ExperimentConfig) -> int:
    """Runs 0..K-1 of every SGD setting whose parameters the SGD stage stores (raw/sgd_params.npz):
    the geometry stage's SGD points."""
    return 0 if cfg.geometry is None else cfg.geometry.points


def _mcmc_config(cfg: ExperimentConfig) -> dict:
    data = {"mcmc": _asdict(cfg.mcmc)}
    if "sgd" in (cfg.mcmc.init, cfg.mcmc.also_init):  # chains start from SGD runs (on the stage's own key)
        data |= {"sgd": sgd_identity(cfg, with_settings=False),
                 "setting": _asdict(cfg.sgd_setting(cfg.mcmc.init_setting))}
    return data


def _sgd_config(cfg: ExperimentConfig, setting=None) -> dict:
    """The whole SGD stage, or (setting given) one setting's population, which is claimed and
    hashed on its own so that adding or changing a setting keeps the others."""
    data = {"sgd": sgd_identity(cfg, with_settings=False)}
    if setting is not None:
        data["setting"] = _asdict(setting)
    else:
        data["settings"] = [_asdict(s) for s in cfg.sgd.settings]
    if sgd_kept_params(cfg):
        data["kept_params"] = sgd_kept_params(cfg)
    return data


def _nngp_reads(cfg: ExperimentConfig) -> tuple[str, ...]:
    """EP scores every function on E when there are few; else the functions the other stages saw."""
    if cfg.task.n_test <= cfg.nngp.ep_enumerate_max:
        return ()
    return tuple(s for s in ("rejection", "sgd", "mcmc") if getattr(cfg, s) is not None)


def geometry_populations(cfg: ExperimentConfig) -> list[str]:
    """The populations whose points the geometry stage measures: the config's list, or by default
    the Bayesian estimators the config runs and every SGD setting."""
    if cfg.geometry.populations:
        return list(cfg.geometry.populations)
    bayes = [f"bayes_{s}" for s in ("rejection", "mcmc") if getattr(cfg, s) is not None]
    return bayes + [s.name for s in cfg.sgd.settings]


def geometry_reference(cfg: ExperimentConfig) -> str:
    """The Bayesian population the others' geometry is compared with: the config's reference
    estimator where the geometry stage measures its points, else the first bayes_ population it
    measures (E3G: P_B from the NNGP's exact sample, points of the finite network's posterior)."""
    pops = geometry_populations(cfg)
    return cfg.reference if cfg.reference in pops else next(p for p in pops if p.startswith("bayes_"))


def _geometry_reads(cfg: ExperimentConfig) -> tuple[str, ...]:
    pops = geometry_populations(cfg)
    return (("sgd",) if any(not p.startswith("bayes_") for p in pops) else ()) + (
        ("mcmc",) if "bayes_mcmc" in pops else ())


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("rejection", 1, "exact P_B(f|S) by rejection sampling of the prior",
          lambda cfg: {"rejection": _asdict(cfg.rejection)}, ("rejection.py", "devices.py"),
          ("rejection_counts.csv", "rejection_chunks.csv"), prng=lambda cfg: cfg.rejection.prng),
    Stage("sgd", 2, "the SGD population P_SGD(f|S), every setting",
          _sgd_config, ("sgd.py", "devices.py"), ("sgd_runs.csv", "sgd_chunks.csv", "sgd_params.npz")),
    Stage("mcmc", 3, "P_B(f|S) by elliptical slice sampling of the zero-error prior in parameter space",
          _mcmc_config, ("mcmc.py", "ess.py", "diagnostics.py", "sgd.py", "devices.py"),
          ("mcmc_counts.csv", "mcmc_from_sgd_counts.csv", "mcmc_from_rejection_counts.csv", "mcmc_diagnostics.csv",
           "mcmc_chunks.csv", "mcmc_traces.csv", "mcmc_states.npz")),
    Stage("nngp", 4, "P_B(f|S) in function space with the NNGP kernel: EP and exact truncated-Gaussian samples",
          lambda cfg: {"nngp": _asdict(cfg.nngp)}, ("nngp.py", "ep_batch.py", "truncated.py", "ess.py", "mcmc.py", "diagnostics.py", "devices.py"),
          ("nngp_ep.csv", "nngp_exact_counts.csv", "nngp_summary.csv"), reads=_nngp_reads),
    Stage("geometry", 5, "NTK feature spectra, Hessian and basin size of zero-error points",
          lambda cfg: {"geometry": _asdict(cfg.geometry), "populations": geometry_populations(cfg)},
          ("geometry.py", "mcmc.py", "preactivations.py", "ess.py", "diagnostics.py", "sgd.py", "devices.py", "stages/sgd.py"),
          ("geometry.csv", "geometry_identity.csv", "geometry_chunks.csv"),
          reads=_geometry_reads),
    Stage("sweep", 6, "E5: the geometry of SGD and posterior points for network variants (weight decay, widths)",
          lambda cfg: {"sweep": _asdict(cfg.sweep), "geometry": _asdict(cfg.geometry), "sgd": sgd_identity(cfg)},
          ("geometry.py", "mcmc.py", "ess.py", "diagnostics.py", "sgd.py", "devices.py"),
          ("sweep.csv",)),
)}


def enabled(cfg: ExperimentConfig) -> list[str]:
    """The stages the config has, in run order (a stage runs after those it reads)."""
    return [name for name, stage in STAGES.items() if stage.enabled(cfg)]


def stage_hash(cfg: ExperimentConfig, name: str, setting=None) -> str:
    """Hash of everything a stage's raw results depend on: name, seed, task, network, the stage's
    config and the hashes of the stages it reads. For SGD with a setting: that setting's population."""
    stage = STAGES[name]
    data = {"name": cfg.name, "seed": cfg.seed, "task": task_identity(cfg.task), "network": _asdict(cfg.network)}
    data |= _sgd_config(cfg, setting) if name == "sgd" else stage.config(cfg)
    reads = stage.reads(cfg)
    if reads:
        data["reads"] = {r: stage_hash(cfg, r) for r in reads}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()[:12]
