"""Experiment configuration: frozen dataclasses loaded from TOML and validated on load.

Profiles (smoke, quick, full) are data: one TOML file each under configs/. Loading checks types
and field names here and every other rule in study/validation.py; each error names the field by
its full path, and validation happens before any work starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from study.validation import ConfigError, check_name, validate

# SGD fields that only schedule the work: no run's result depends on them (tests/test_sgd.py), so
# they are left out of the config hashes and changing them keeps earlier results valid.
SGD_SCHEDULING = ("pool", "check_every")
# Task fields that only say where the data lies (the images' content decides the results)
TASK_UNHASHED = ("data_dir",)


@dataclass(frozen=True)
class TaskConfig:
    # "boolean": all 2^n inputs of n bits; image tasks (E3): "digits" (scikit-learn's bundled 8x8
    # digits, no download), "mnist" or "fashion" (IDX files in data_dir or $STUDY_DATA_DIR)
    kind: str = "boolean"
    n: int = 7  # Boolean only: input bits
    target: str = "majority"  # Boolean only: a name from study.tasks.TARGETS or a hex truth table "0x..."
    m: int = 16  # training-set size
    n_test: int = 16  # test-set size |E|
    labels: str = "ge5"  # images only: the binary classes, label >= 5 ("ge5") or odd ("odd")
    balanced: bool = False  # images only: S holds m/2 images of each class (else a plain random draw)
    data_dir: str = ""  # mnist/fashion only: the IDX files' directory ("" = $STUDY_DATA_DIR); not hashed


def task_identity(t: TaskConfig) -> dict:
    """The task fields that decide results (every field but those in TASK_UNHASHED), for hashing."""
    return {k: v for k, v in dataclasses.asdict(t).items() if k not in TASK_UNHASHED}


@dataclass(frozen=True)
class NetworkConfig:
    widths: tuple[int, ...] = (40, 40)  # hidden Dense layers; [] is a perceptron
    # convolutional layers before the Dense ones (image tasks): channels of each conv_kernel x
    # conv_kernel convolution (stride 1, SAME padding) + ReLU, then the image is flattened
    conv_channels: tuple[int, ...] = ()
    conv_kernel: int = 3
    sigma_w: float = 1.0
    sigma_b: float = 0.0  # 0 means no bias parameters at all, in both arms


@dataclass(frozen=True)
class RejectionConfig:
    draws: int = 2**20
    chunk_draws: int = 2**18
    batch: int = 4096
    prng: str = "threefry2x32"
    # output layers drawn per hidden-layer draw (study/rejection.py): 1 is plain rejection, K > 1
    # counts every (hidden, output) pair, correlated within a group, at a fraction of the cost
    readouts: int = 1


@dataclass(frozen=True)
class SGDSetting:
    name: str
    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 8
    loss: str = "ce"
    weight_decay: float = 0.0  # L2 penalty (weight_decay / 2) |theta|^2 added to the training loss
    min_steps: int = 0  # train at least this many steps: a run stops at the first step >= min_steps that fits S


@dataclass(frozen=True)
class SGDConfig:
    runs: int = 10_000
    chunk_runs: int = 5_000
    pool: int = 1024  # networks trained side by side (split over the devices); finished slots are refilled
    max_steps: int = 10_000
    check_every: int = 4  # steps between refills of finished slots
    settings: tuple[SGDSetting, ...] = (SGDSetting("sgd_b8_ce"),)


@dataclass(frozen=True)
class MCMCConfig:
    """Elliptical slice sampling of the prior restricted to zero training error (study/mcmc.py)."""
    chains: int = 256
    burn_in: int = 100  # ESS steps per chain discarded before the first kept sample
    thin: int = 5  # ESS steps between kept samples
    samples: int = 400  # kept samples per chain
    chunk_samples: int = 100  # kept samples per chain in one chunk (the unit of resuming)
    init: str = "rejection"  # "rejection": zero-error prior draws; "sgd": solutions of an SGD setting
    # with an "sgd" init: the sgd.settings name whose runs start the chains. Those runs are trained
    # on the MCMC stage's own key stream, so they are never part of the population under test.
    init_setting: str = ""
    # a second, equally sized set of chains from another init ("sgd" on E1), population
    # bayes_mcmc_from_<also_init>: checks how chains started there mix against exact rejection
    also_init: str = ""


@dataclass(frozen=True)
class NNGPConfig:
    """P_B in function space with the infinite-width NNGP kernel (study/nngp.py)."""
    ep_enumerate_max: int = 12  # |E| up to which EP scores all 2^|E| functions (else those seen)
    # Above ep_enumerate_max: EP scores the functions some population (an SGD setting, a sampler) saw
    # at least this many times. 1: every function seen, so that every run has a score; more: only
    # the functions of a scatter of frequencies (at |E| = 96 and 10^5 runs most are seen once).
    ep_min_count: int = 1
    # log P_B by EP (study/ep_batch.py): "ratio" of the normalisers of S + E and of S, "predictive"
    # (EP on S, then the Gaussian predictive on E: one EP in m dimensions for every function), or
    # "both" (the ratio is used, the predictive stored beside it to measure its accuracy)
    ep: str = "ratio"
    exact: str = "rejection"  # exact truncated-Gaussian sampler: "rejection" or "ess"
    draws: int = 2**24  # rejection: Gaussian draws; ess: kept samples over all chains
    chunk_draws: int = 2**22
    batch: int = 2**16  # rejection: draws per jitted batch
    chains: int = 256  # ess only
    thin: int = 5  # ess only
    burn_in: int = 100  # ess only


@dataclass(frozen=True)
class GeometryConfig:
    """Geometry of zero-error points (study/geometry.py, study/stages/geometry.py)."""
    points: int = 256  # zero-error points kept and measured per population
    chunk_points: int = 64  # points measured per chunk (the unit of resuming)
    populations: tuple[str, ...] = ()  # bayes_rejection, bayes_mcmc, SGD setting names; () = all run
    top_k: int = 10  # leading Hessian eigenvalues by Lanczos
    lanczos_matvecs: int = 40  # Krylov depth (Hessian-vector products) per Lanczos run
    hutchinson_samples: int = 64  # Rademacher probes for the Hessian trace
    delta: float = 1e-3  # log-volume proxy sum log(1 + lambda / delta)
    directions: int = 64  # random directions for the basin radius
    radius_min: float = 1e-3  # geometric grid of radii searched along each direction
    radius_max: float = 100.0
    radius_grid: int = 48
    identity_points: int = 4  # points per population with a dense Hessian for the identity check
    # how bayes_rejection's points are drawn: "parameters" (every parameter from the prior,
    # mcmc.init_from_rejection) or "preactivations" (the outputs on S first, the parameters only for
    # the draws that fit: study/preactivations.py; the same law, fully connected networks only)
    posterior_sampler: str = "parameters"


@dataclass(frozen=True)
class SweepVariant:
    name: str
    widths: tuple[int, ...]  # hidden widths of this variant's network
    weight_decay: float = 0.0
    group: str = ""  # label for grouping in tables and figures, e.g. "weight_decay", "bottleneck"


@dataclass(frozen=True)
class SweepConfig:
    """E5 connection costs (study/stages/sweep.py): SGD solutions of network variants (widths, weight
    decay) trained on past the first fit, and posterior points of each width, measured as in
    [geometry]."""
    setting: str  # the sgd.settings entry whose optimiser, learning rate, batch size and loss all variants use
    runs: int = 256  # SGD runs per variant; the ones at zero training error at the end are measured
    min_steps: int = 2000  # steps every run takes before it may stop, so the penalty can act
    bayes_points: int = 256  # zero-error prior draws (rejection) per distinct width; 0 = none
    variants: tuple[SweepVariant, ...] = ()


@dataclass(frozen=True)
class AnalysisConfig:
    count_threshold: int = 10
    bootstrap: int = 500
    confidence: float = 0.95
    geometry_min_points: int = 3  # points of a function, per population, to use its geometry per function
    matched_reps: int = 10  # subsamples (without replacement) per matched comparison and its noise floor
    permutations: int = 999  # resamples of the two-sample permutation test


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int
    task: TaskConfig = field(default_factory=TaskConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    # A P_B estimator is run iff its section is in the config file.
    rejection: RejectionConfig | None = None
    sgd: SGDConfig = field(default_factory=SGDConfig)
    mcmc: MCMCConfig | None = None
    nngp: NNGPConfig | None = None
    geometry: GeometryConfig | None = None
    sweep: SweepConfig | None = None
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    @property
    def reference(self) -> str:
        """The P_B estimate SGD is compared with first: exact rejection where run, else MCMC on the
        finite network, else the exact sample of the NNGP's posterior (image tasks at m where
        parameter-space MCMC does not mix)."""
        if self.rejection is not None:
            return "bayes_rejection"
        return "bayes_mcmc" if self.mcmc is not None else "nngp_exact"

    def hash(self, *sections: str) -> str:
        """Short stable hash of the named sections (all when none), plus name and seed: with none,
        the experiment_hash of the analysis tables (a raw table's config_hash is its stage's,
        study.stages.stage_hash)."""
        data = dataclasses.asdict(self)
        data["task"] = task_identity(self.task)
        keep = sections or tuple(data)
        payload = {k: data[k] for k in ("name", "seed", *keep)}
        text = json.dumps(payload, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


    def sgd_setting(self, name: str) -> "SGDSetting":
        return next(s for s in self.sgd.settings if s.name == name)


def _build(cls, raw: dict, where: str):
    """Instantiate dataclass `cls` from a dict, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown field (known: {sorted(fields)})")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(fields[name].type, value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {err}") from None


def _coerce(type_name: str, value, where: str):
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    scalar = {"int": int, "float": float, "str": str}
    if type_name in scalar:
        want = scalar[type_name]
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{where}: expected {type_name}, got {value!r}")
        if want is float and not math.isfinite(value):  # TOML has inf and nan; no field means them
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return want(value)
    if type_name == "tuple[int, ...]":
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
        return tuple(value)
    if type_name == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if type_name == "tuple[SweepVariant, ...]":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array of tables")
        return tuple(_build(SweepVariant, v, f"{where}[{i}]") for i, v in enumerate(value))
    if type_name == "tuple[SGDSetting, ...]":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array of tables")
        return tuple(_build(SGDSetting, v, f"{where}[{i}]") for i, v in enumerate(value))
    raise AssertionError(f"unhandled field type {type_name} at {where}")


def load_or_report(path: str | Path) -> ExperimentConfig | None:
    """The validated config at `path`, or None after printing why it cannot be used."""
    try:
        return load(path)
    except ConfigError as err:
        print(f"error: bad config {path}: {err}", file=sys.stderr)
        return None


def load(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return from_dict(raw)


def from_dict(raw: dict) -> ExperimentConfig:
    raw = dict(raw)
    for key in ("name", "seed"):
        if key not in raw:
            raise ConfigError(f"{key}: missing")
    sections = {"task": TaskConfig, "network": NetworkConfig, "rejection": RejectionConfig,
                "sgd": SGDConfig, "mcmc": MCMCConfig, "nngp": NNGPConfig, "geometry": GeometryConfig, "sweep": SweepConfig, "analysis": AnalysisConfig}
    kwargs = {}
    for key, value in raw.items():
        if key in sections:
            kwargs[key] = _build(sections[key], value, key)
        elif key == "name":
            check_name(value, "name")
            kwargs[key] = value
        elif key == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"seed: expected int, got {value!r}")
            kwargs[key] = value
        else:
            raise ConfigError(f"{key}: unknown field (known: name, seed, {', '.join(sections)})")
    return validate(ExperimentConfig(**kwargs))
