"""Experiment configuration: frozen dataclasses loaded from TOML and validated on load.

Profiles (smoke, quick, full) are data: one TOML file each under configs/. Every error names
the offending field, and validation happens before any work starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("ce", "mse")
PRNG_IMPLS = ("threefry2x32", "rbg")


class ConfigError(ValueError):
    """A config file or value that cannot be run; the message names the field."""


@dataclass(frozen=True)
class TaskConfig:
    n: int = 7
    target: str = "majority"  # a name from study.tasks.TARGETS or a hex truth table "0x..."
    m: int = 16  # training-set size
    n_test: int = 16  # test-set size |E|


@dataclass(frozen=True)
class NetworkConfig:
    widths: tuple[int, ...] = (40, 40)  # hidden layers; [] is a perceptron
    sigma_w: float = 1.0
    sigma_b: float = 0.0  # 0 means no bias parameters at all, in both arms


@dataclass(frozen=True)
class RejectionConfig:
    draws: int = 2**20
    chunk_draws: int = 2**18
    batch: int = 4096
    prng: str = "threefry2x32"


@dataclass(frozen=True)
class SGDSetting:
    name: str
    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 8
    loss: str = "ce"


@dataclass(frozen=True)
class SGDConfig:
    runs: int = 10_000
    chunk_runs: int = 5_000
    pool: int = 1024  # networks trained side by side; finished slots are refilled
    max_steps: int = 10_000
    check_every: int = 4  # steps between refills of finished slots
    settings: tuple[SGDSetting, ...] = (SGDSetting("sgd_b8_ce"),)


@dataclass(frozen=True)
class AnalysisConfig:
    count_threshold: int = 10
    bootstrap: int = 500
    confidence: float = 0.95


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int
    task: TaskConfig = field(default_factory=TaskConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    sgd: SGDConfig = field(default_factory=SGDConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def hash(self, *sections: str) -> str:
        """Short stable hash of the named sections (all when none), plus name and seed."""
        data = dataclasses.asdict(self)
        keep = sections or tuple(data)
        payload = {k: data[k] for k in ("name", "seed", *keep)}
        text = json.dumps(payload, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


    def stage_hash(self, stage: str, setting: "SGDSetting | None" = None) -> str:
        """Hash of everything a stage's raw results depend on (for SGD: one setting at a time)."""
        data = {"name": self.name, "seed": self.seed, "task": dataclasses.asdict(self.task),
                "network": dataclasses.asdict(self.network)}
        if stage == "rejection":
            data["rejection"] = dataclasses.asdict(self.rejection)
        elif stage == "sgd":
            data["sgd"] = {k: v for k, v in dataclasses.asdict(self.sgd).items() if k != "settings"}
            data["setting"] = dataclasses.asdict(setting)
        else:
            raise ValueError(f"unknown stage {stage!r}")
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()[:12]


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
    scalar = {"int": int, "float": float, "str": str}
    if type_name in scalar:
        want = scalar[type_name]
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{where}: expected {type_name}, got {value!r}")
        return want(value)
    if type_name == "tuple[int, ...]":
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
        return tuple(value)
    if type_name == "tuple[SGDSetting, ...]":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array of tables")
        return tuple(_build(SGDSetting, v, f"{where}[{i}]") for i, v in enumerate(value))
    raise AssertionError(f"unhandled field type {type_name} at {where}")


def _check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    from study.tasks import TARGETS

    t, net, rej, sgd, an = cfg.task, cfg.network, cfg.rejection, cfg.sgd, cfg.analysis
    _check(cfg.seed >= 0, "seed", "must be >= 0")
    _check(1 <= t.n <= 12, "task.n", f"must be in 1..12, got {t.n}")
    _check(t.m >= 1, "task.m", f"must be >= 1, got {t.m}")
    _check(t.n_test >= 1, "task.n_test", f"must be >= 1, got {t.n_test}")
    _check(t.m <= 2**t.n, "task.m", f"m={t.m} exceeds the 2^n={2**t.n} inputs")
    _check(t.m + t.n_test <= 2**t.n, "task.n_test", f"m + n_test = {t.m + t.n_test} exceeds 2^n = {2**t.n}")
    if t.target.startswith("0x"):
        digits = t.target[2:]
        _check(len(digits) == max(1, 2**t.n // 4), "task.target",
               f"hex truth table needs {max(1, 2**t.n // 4)} digits for n={t.n}, got {len(digits)}")
        try:
            int(digits, 16)
        except ValueError:
            raise ConfigError(f"task.target: {t.target!r} is not a hex number") from None
    else:
        _check(t.target in TARGETS, "task.target", f"unknown target {t.target!r}; known: {sorted(TARGETS)} or 0x<hex>")
    for i, w in enumerate(net.widths):
        _check(w >= 1, f"network.widths[{i}]", f"must be a positive width, got {w}")
    _check(net.sigma_w > 0, "network.sigma_w", f"must be > 0, got {net.sigma_w}")
    _check(net.sigma_b >= 0, "network.sigma_b", f"must be >= 0, got {net.sigma_b}")
    _check(rej.draws >= 1, "rejection.draws", "must be >= 1")
    _check(rej.batch >= 1, "rejection.batch", "must be >= 1")
    _check(rej.chunk_draws >= rej.batch and rej.chunk_draws % rej.batch == 0, "rejection.chunk_draws",
           f"must be a positive multiple of rejection.batch={rej.batch}, got {rej.chunk_draws}")
    _check(rej.draws % rej.chunk_draws == 0, "rejection.draws",
           f"must be a multiple of rejection.chunk_draws={rej.chunk_draws}, got {rej.draws}")
    _check(rej.prng in PRNG_IMPLS, "rejection.prng", f"unknown PRNG {rej.prng!r}; known: {PRNG_IMPLS}")
    _check(sgd.runs >= 1, "sgd.runs", "must be >= 1")
    _check(sgd.chunk_runs >= 1 and sgd.runs % sgd.chunk_runs == 0, "sgd.chunk_runs",
           f"must divide sgd.runs={sgd.runs}, got {sgd.chunk_runs}")
    _check(sgd.pool >= 1, "sgd.pool", "must be >= 1")
    _check(sgd.max_steps >= 1, "sgd.max_steps", "must be >= 1")
    _check(sgd.check_every >= 1, "sgd.check_every", "must be >= 1")
    _check(len(sgd.settings) >= 1, "sgd.settings", "needs at least one setting")
    names = [s.name for s in sgd.settings]
    _check(len(set(names)) == len(names), "sgd.settings", f"setting names must be unique: {names}")
    for i, s in enumerate(sgd.settings):
        where = f"sgd.settings[{i}]"
        _check(s.name.replace("_", "").isalnum(), f"{where}.name", f"use letters, digits and _, got {s.name!r}")
        _check(s.optimizer in OPTIMIZERS, f"{where}.optimizer", f"unknown optimizer {s.optimizer!r}; known: {OPTIMIZERS}")
        _check(s.loss in LOSSES, f"{where}.loss", f"unknown loss {s.loss!r}; known: {LOSSES}")
        _check(s.lr > 0, f"{where}.lr", f"must be > 0, got {s.lr}")
        _check(1 <= s.batch_size <= t.m, f"{where}.batch_size", f"must be in 1..m={t.m}, got {s.batch_size}")
    _check(an.count_threshold >= 1, "analysis.count_threshold", "must be >= 1")
    _check(an.bootstrap >= 10, "analysis.bootstrap", "must be >= 10")
    _check(0 < an.confidence < 1, "analysis.confidence", "must be in (0, 1)")
    return cfg


def load(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return from_dict(raw)


def from_dict(raw: dict) -> ExperimentConfig:
    raw = dict(raw)
    for key in ("name", "seed"):
        if key not in raw:
            raise ConfigError(f"{key}: missing")
    sections = {"task": TaskConfig, "network": NetworkConfig, "rejection": RejectionConfig,
                "sgd": SGDConfig, "analysis": AnalysisConfig}
    kwargs = {}
    for key, value in raw.items():
        if key in sections:
            kwargs[key] = _build(sections[key], value, key)
        elif key == "name":
            _check(isinstance(value, str) and value.replace("_", "").isalnum(), "name", f"use letters, digits and _, got {value!r}")
            kwargs[key] = value
        elif key == "seed":
            _check(isinstance(value, int) and not isinstance(value, bool), "seed", f"expected int, got {value!r}")
            kwargs[key] = value
        else:
            raise ConfigError(f"{key}: unknown field (known: name, seed, {', '.join(sections)})")
    return validate(ExperimentConfig(**kwargs))
