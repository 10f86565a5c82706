"""Experiment configuration: frozen dataclasses loaded from TOML and validated on load.

Profiles (smoke, quick, full) are data: one TOML file each under configs/. Every error names
the offending field, and validation happens before any work starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import string
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

OPTIMIZERS = ("sgd", "adam")
MCMC_INITS = ("rejection", "sgd")
NNGP_EXACT = ("rejection", "ess")
LOSSES = ("ce", "mse")
PRNG_IMPLS = ("threefry2x32", "rbg")
SEED_LIMIT = 2**32  # jax.random.key keeps the low 32 bits of a seed: larger ones would alias smaller ones
NAME_LIMIT = 64  # experiment, setting and variant names become directory, file and macro names
# SGD fields that only schedule the work: no run's result depends on them (tests/test_sgd.py), so
# they are left out of the config hashes and changing them keeps earlier results valid.
SGD_SCHEDULING = ("pool", "check_every")


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
        """The P_B estimate SGD is compared with first: exact rejection where run, else MCMC."""
        return "bayes_rejection" if self.rejection is not None else "bayes_mcmc"

    def hash(self, *sections: str) -> str:
        """Short stable hash of the named sections (all when none), plus name and seed."""
        data = dataclasses.asdict(self)
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


def _check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


def _check_name(name: str, where: str) -> None:
    """A name usable in file, directory and macro names."""
    _check(isinstance(name, str) and name.replace("_", "").isalnum() and name.isascii(), where,
           f"use ASCII letters, digits and _, got {name!r}")
    _check(len(name) <= NAME_LIMIT, where, f"at most {NAME_LIMIT} characters, got {len(name)}")


def _check_names(names: list[str], where: str) -> list[str]:
    """Names of settings or variants: unique, and usable in file and macro names."""
    _check(len(set(names)) == len(names), where, f"names must be unique: {names}")
    for i, name in enumerate(names):
        _check_name(name, f"{where}[{i}].name")
    return names


def _check_chunks(total: int, chunk: int, batch: int, section: str, what: str) -> None:
    """total = whole chunks of whole batches, all positive."""
    _check(total >= 1, f"{section}.{what}", f"must be >= 1, got {total}")
    _check(batch >= 1, f"{section}.batch", f"must be >= 1, got {batch}")
    _check(chunk >= batch and chunk % batch == 0, f"{section}.chunk_{what}",
           f"must be a positive multiple of {section}.batch={batch}, got {chunk}")
    _check(total % chunk == 0, f"{section}.{what}", f"must be a multiple of {section}.chunk_{what}={chunk}, got {total}")


def _check_even_chunks(draws: int, chunk_draws: int, section: str) -> None:
    """The sampler's noise floor compares its even chunks with its odd ones: two halves of equal size."""
    _check((draws // chunk_draws) % 2 == 0, f"{section}.draws", f"must be an even number of {section}.chunk_draws "
           f"(the noise floor's two halves), got {draws // chunk_draws} chunks")


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    from study.tasks import TARGETS

    t, net, rej, sgd, an = cfg.task, cfg.network, cfg.rejection, cfg.sgd, cfg.analysis
    _check(0 <= cfg.seed < SEED_LIMIT, "seed", f"must be in 0..2^32 - 1 (jax keys keep 32 bits), got {cfg.seed}")
    _check(1 <= t.n <= 12, "task.n", f"must be in 1..12, got {t.n}")
    _check(t.m >= 1, "task.m", f"must be >= 1, got {t.m}")
    _check(t.n_test >= 1, "task.n_test", f"must be >= 1, got {t.n_test}")
    _check(t.m <= 2**t.n, "task.m", f"m={t.m} exceeds the 2^n={2**t.n} inputs")
    _check(t.m + t.n_test <= 2**t.n, "task.n_test", f"m + n_test = {t.m + t.n_test} exceeds 2^n = {2**t.n}")
    if t.target.startswith("0x"):
        digits = t.target[2:]
        _check(len(digits) == max(1, 2**t.n // 4), "task.target",
               f"hex truth table needs {max(1, 2**t.n // 4)} digits for n={t.n}, got {len(digits)}")
        # int(x, 16) would also take "_" separators and a sign
        _check(all(c in string.hexdigits for c in digits), "task.target", f"{t.target!r} is not a hex number")
        _check(int(digits, 16) < 2 ** (2**t.n), "task.target",
               f"{t.target!r} has more than the 2^n = {2**t.n} bits of a truth table for n={t.n}")
    else:
        _check(t.target in TARGETS, "task.target", f"unknown target {t.target!r}; known: {sorted(TARGETS)} or 0x<hex>")
    for i, w in enumerate(net.widths):
        _check(w >= 1, f"network.widths[{i}]", f"must be a positive width, got {w}")
    _check(net.sigma_w > 0, "network.sigma_w", f"must be > 0, got {net.sigma_w}")
    _check(net.sigma_b >= 0, "network.sigma_b", f"must be >= 0, got {net.sigma_b}")
    if rej is not None:
        _check_chunks(rej.draws, rej.chunk_draws, rej.batch, "rejection", "draws")
        _check_even_chunks(rej.draws, rej.chunk_draws, "rejection")
        _check(rej.prng in PRNG_IMPLS, "rejection.prng", f"unknown PRNG {rej.prng!r}; known: {PRNG_IMPLS}")
    _check(sgd.runs >= 1, "sgd.runs", "must be >= 1")
    _check(sgd.chunk_runs >= 1 and sgd.runs % sgd.chunk_runs == 0, "sgd.chunk_runs",
           f"must divide sgd.runs={sgd.runs}, got {sgd.chunk_runs}")
    _check(sgd.pool >= 1, "sgd.pool", "must be >= 1")
    _check(sgd.max_steps >= 1, "sgd.max_steps", "must be >= 1")
    _check(sgd.check_every >= 1, "sgd.check_every", "must be >= 1")
    _check(len(sgd.settings) >= 1, "sgd.settings", "needs at least one setting")
    names = _check_names([s.name for s in sgd.settings], "sgd.settings")
    for i, s in enumerate(sgd.settings):
        where = f"sgd.settings[{i}]"
        _check(s.optimizer in OPTIMIZERS, f"{where}.optimizer", f"unknown optimizer {s.optimizer!r}; known: {OPTIMIZERS}")
        _check(s.loss in LOSSES, f"{where}.loss", f"unknown loss {s.loss!r}; known: {LOSSES}")
        _check(s.lr > 0, f"{where}.lr", f"must be > 0, got {s.lr}")
        _check(1 <= s.batch_size <= t.m, f"{where}.batch_size", f"must be in 1..m={t.m}, got {s.batch_size}")
        # an epoch is m / batch_size minibatches of a permutation of S: a remainder would go unused
        _check(t.m % s.batch_size == 0, f"{where}.batch_size",
               f"must divide task.m={t.m} (every epoch uses every training input), got {s.batch_size}")
        _check(s.weight_decay >= 0, f"{where}.weight_decay", f"must be >= 0, got {s.weight_decay}")
        _check(0 <= s.min_steps < sgd.max_steps, f"{where}.min_steps",
               f"must be in 0..sgd.max_steps - 1 = {sgd.max_steps - 1}, got {s.min_steps}")
    if cfg.mcmc is not None:
        mc = cfg.mcmc
        for name in ("chains", "thin", "samples"):
            _check(getattr(mc, name) >= 1, f"mcmc.{name}", f"must be >= 1, got {getattr(mc, name)}")
        # the chains form two independent groups by parity, the noise floor's two halves
        _check(mc.chains % 2 == 0, "mcmc.chains", f"must be even (two groups of chains), got {mc.chains}")
        _check(mc.burn_in >= 0, "mcmc.burn_in", f"must be >= 0, got {mc.burn_in}")
        _check(mc.chunk_samples >= 1 and mc.samples % mc.chunk_samples == 0, "mcmc.chunk_samples",
               f"must divide mcmc.samples={mc.samples}, got {mc.chunk_samples}")
        _check(mc.init in MCMC_INITS, "mcmc.init", f"unknown init {mc.init!r}; known: {MCMC_INITS}")
        _check(mc.also_init in ("", *MCMC_INITS) and mc.also_init != mc.init, "mcmc.also_init",
               f"must be empty or an init other than mcmc.init = {mc.init!r} ({MCMC_INITS}), got {mc.also_init!r}")
        if "sgd" in (mc.init, mc.also_init):
            _check(mc.init_setting in names, "mcmc.init_setting",
                   f"must name one of the sgd.settings {names}, got {mc.init_setting!r}")
    if cfg.nngp is not None:
        ng = cfg.nngp
        _check(0 <= ng.ep_enumerate_max <= 16, "nngp.ep_enumerate_max", f"must be in 0..16, got {ng.ep_enumerate_max}")
        _check(ng.exact in NNGP_EXACT, "nngp.exact", f"unknown exact sampler {ng.exact!r}; known: {NNGP_EXACT}")
        if ng.exact == "rejection":
            _check_chunks(ng.draws, ng.chunk_draws, ng.batch, "nngp", "draws")
        else:
            for name in ("chains", "thin"):
                _check(getattr(ng, name) >= 1, f"nngp.{name}", f"must be >= 1, got {getattr(ng, name)}")
            _check(ng.burn_in >= 0, "nngp.burn_in", f"must be >= 0, got {ng.burn_in}")
            _check(ng.chunk_draws >= ng.chains and ng.chunk_draws % ng.chains == 0, "nngp.chunk_draws",
                   f"must be a positive multiple of nngp.chains={ng.chains}, got {ng.chunk_draws}")
            _check(ng.draws >= 1 and ng.draws % ng.chunk_draws == 0, "nngp.draws",
                   f"must be a positive multiple of nngp.chunk_draws={ng.chunk_draws}, got {ng.draws}")
        _check_even_chunks(ng.draws, ng.chunk_draws, "nngp")
    if cfg.geometry is not None:
        validate_geometry(cfg, names)
    if cfg.sweep is not None:
        validate_sweep(cfg, names)
    _check(an.count_threshold >= 1, "analysis.count_threshold", "must be >= 1")
    _check(an.geometry_min_points >= 1, "analysis.geometry_min_points", "must be >= 1")
    _check(an.bootstrap >= 10, "analysis.bootstrap", "must be >= 10")
    _check(an.matched_reps >= 2, "analysis.matched_reps", "must be >= 2 (the spread over subsamples)")
    _check(an.permutations >= 99, "analysis.permutations", "must be >= 99")
    _check(0 < an.confidence < 1, "analysis.confidence", "must be in (0, 1)")
    _check(rej is not None or cfg.mcmc is not None, "rejection",
           "the config needs a [rejection] or an [mcmc] section: SGD is compared with one of them")
    return cfg


def validate_geometry(cfg: ExperimentConfig, sgd_names: list[str]) -> None:
    g = cfg.geometry
    for name in ("points", "chunk_points", "top_k", "hutchinson_samples", "directions", "radius_grid"):
        _check(getattr(g, name) >= 1, f"geometry.{name}", f"must be >= 1, got {getattr(g, name)}")
    _check(g.lanczos_matvecs >= g.top_k, "geometry.lanczos_matvecs",
           f"must be >= geometry.top_k={g.top_k}, got {g.lanczos_matvecs}")
    _check(g.identity_points >= 0, "geometry.identity_points", f"must be >= 0, got {g.identity_points}")
    _check(g.delta > 0, "geometry.delta", f"must be > 0, got {g.delta}")
    _check(0 < g.radius_min < g.radius_max, "geometry.radius_max",
           f"need 0 < radius_min < radius_max, got {g.radius_min}, {g.radius_max}")
    known = {"bayes_rejection": cfg.rejection, "bayes_mcmc": cfg.mcmc}
    _check(len(set(g.populations)) == len(g.populations), "geometry.populations",
           f"each population at most once (a repeat would measure its points twice), got {list(g.populations)}")
    for i, pop in enumerate(g.populations):
        if pop in known:
            _check(known[pop] is not None, f"geometry.populations[{i}]", f"{pop} needs the config's "
                   f"[{'rejection' if pop == 'bayes_rejection' else 'mcmc'}] section")
        else:
            _check(pop in sgd_names, f"geometry.populations[{i}]",
                   f"unknown population {pop!r}; known: bayes_rejection, bayes_mcmc, {sgd_names}")


def validate_sweep(cfg: ExperimentConfig, sgd_names: list[str]) -> None:
    w = cfg.sweep
    _check(cfg.geometry is not None, "sweep", "needs a [geometry] section (its measures are used)")
    _check(w.setting in sgd_names, "sweep.setting", f"must name one of the sgd.settings {sgd_names}, got {w.setting!r}")
    _check(w.runs >= 1, "sweep.runs", f"must be >= 1, got {w.runs}")
    _check(w.bayes_points >= 0, "sweep.bayes_points", f"must be >= 0, got {w.bayes_points}")
    _check(0 <= w.min_steps < cfg.sgd.max_steps, "sweep.min_steps",
           f"must be in 0..sgd.max_steps - 1 = {cfg.sgd.max_steps - 1}, got {w.min_steps}")
    _check(len(w.variants) >= 1, "sweep.variants", "needs at least one variant")
    _check_names([v.name for v in w.variants], "sweep.variants")
    for i, v in enumerate(w.variants):
        where = f"sweep.variants[{i}]"
        _check(len(v.widths) >= 1 and all(x >= 1 for x in v.widths), f"{where}.widths",
               f"must be a non-empty list of positive widths, got {list(v.widths)}")
        _check(v.weight_decay >= 0, f"{where}.weight_decay", f"must be >= 0, got {v.weight_decay}")


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
            _check_name(value, "name")
            kwargs[key] = value
        elif key == "seed":
            _check(isinstance(value, int) and not isinstance(value, bool), "seed", f"expected int, got {value!r}")
            kwargs[key] = value
        else:
            raise ConfigError(f"{key}: unknown field (known: name, seed, {', '.join(sections)})")
    return validate(ExperimentConfig(**kwargs))
