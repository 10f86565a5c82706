"""Validation of an experiment config (study/config.py calls validate on load): every rule a
config must meet before any work starts, each error naming the field by its full path
(e.g. sgd.settings[0].loss). Nothing here decides a result."""
from __future__ import annotations

import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from study.config import ExperimentConfig

OPTIMIZERS = ("sgd", "adam")
MCMC_INITS = ("rejection", "sgd")
NNGP_EXACT = ("rejection", "ess")
NNGP_EP = ("ratio", "predictive", "both")
LOSSES = ("ce", "mse")
PRNG_IMPLS = ("threefry2x32", "rbg")
TASK_KINDS = ("boolean", "digits", "mnist", "fashion")
SEED_LIMIT = 2**32  # jax.random.key keeps the low 32 bits of a seed: larger ones would alias smaller ones
NAME_LIMIT = 64  # experiment, setting and variant names become directory, file and macro names


class ConfigError(ValueError):
    """A config file or value that cannot be run; the message names the field."""


def check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


def check_name(name: str, where: str) -> None:
    """A name usable in file, directory and macro names."""
    check(isinstance(name, str) and name.replace("_", "").isalnum() and name.isascii(), where,
           f"use ASCII letters, digits and _, got {name!r}")
    check(len(name) <= NAME_LIMIT, where, f"at most {NAME_LIMIT} characters, got {len(name)}")


def _check_names(names: list[str], where: str) -> list[str]:
    """Names of settings or variants: unique, and usable in file and macro names."""
    check(len(set(names)) == len(names), where, f"names must be unique: {names}")
    for i, name in enumerate(names):
        check_name(name, f"{where}[{i}].name")
    return names


def _check_chunks(total: int, chunk: int, batch: int, section: str, what: str) -> None:
    """total = whole chunks of whole batches, all positive."""
    check(total >= 1, f"{section}.{what}", f"must be >= 1, got {total}")
    check(batch >= 1, f"{section}.batch", f"must be >= 1, got {batch}")
    check(chunk >= batch and chunk % batch == 0, f"{section}.chunk_{what}",
           f"must be a positive multiple of {section}.batch={batch}, got {chunk}")
    check(total % chunk == 0, f"{section}.{what}", f"must be a multiple of {section}.chunk_{what}={chunk}, got {total}")


def _check_even_chunks(draws: int, chunk_draws: int, section: str) -> None:
    """The sampler's noise floor compares its even chunks with its odd ones: two halves of equal size."""
    check((draws // chunk_draws) % 2 == 0, f"{section}.draws", f"must be an even number of {section}.chunk_draws "
           f"(the noise floor's two halves), got {draws // chunk_draws} chunks")


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    t, net, rej, sgd, an = cfg.task, cfg.network, cfg.rejection, cfg.sgd, cfg.analysis
    check(0 <= cfg.seed < SEED_LIMIT, "seed", f"must be in 0..2^32 - 1 (jax keys keep 32 bits), got {cfg.seed}")
    check(t.kind in TASK_KINDS, "task.kind", f"unknown task kind {t.kind!r}; known: {TASK_KINDS}")
    check(t.m >= 1, "task.m", f"must be >= 1, got {t.m}")
    check(t.n_test >= 1, "task.n_test", f"must be >= 1, got {t.n_test}")
    if t.kind == "boolean":
        validate_boolean_task(t)
    else:
        validate_image_task(t)
    for i, w in enumerate(net.widths):
        check(w >= 1, f"network.widths[{i}]", f"must be a positive width, got {w}")
    check(net.sigma_w > 0, "network.sigma_w", f"must be > 0, got {net.sigma_w}")
    check(net.sigma_b >= 0, "network.sigma_b", f"must be >= 0, got {net.sigma_b}")
    check(net.conv_kernel >= 1, "network.conv_kernel", f"must be >= 1, got {net.conv_kernel}")
    for i, c in enumerate(net.conv_channels):
        check(c >= 1, f"network.conv_channels[{i}]", f"must be a positive number of channels, got {c}")
    check(not net.conv_channels or t.kind != "boolean", "network.conv_channels",
           "convolutions need image inputs (task.kind digits, mnist or fashion)")
    if rej is not None:
        _check_chunks(rej.draws, rej.chunk_draws, rej.batch, "rejection", "draws")
        _check_even_chunks(rej.draws, rej.chunk_draws, "rejection")
        check(rej.prng in PRNG_IMPLS, "rejection.prng", f"unknown PRNG {rej.prng!r}; known: {PRNG_IMPLS}")
        check(rej.readouts >= 1 and rej.batch % rej.readouts == 0, "rejection.readouts",
               f"must be >= 1 and divide rejection.batch={rej.batch} (whole hidden-layer draws per batch), "
               f"got {rej.readouts}")
    check(sgd.runs >= 1, "sgd.runs", "must be >= 1")
    check(sgd.chunk_runs >= 1 and sgd.runs % sgd.chunk_runs == 0, "sgd.chunk_runs",
           f"must divide sgd.runs={sgd.runs}, got {sgd.chunk_runs}")
    check(sgd.pool >= 1, "sgd.pool", "must be >= 1")
    check(sgd.max_steps >= 1, "sgd.max_steps", "must be >= 1")
    check(sgd.check_every >= 1, "sgd.check_every", "must be >= 1")
    check(len(sgd.settings) >= 1, "sgd.settings", "needs at least one setting")
    names = _check_names([s.name for s in sgd.settings], "sgd.settings")
    for i, s in enumerate(sgd.settings):
        where = f"sgd.settings[{i}]"
        check(s.optimizer in OPTIMIZERS, f"{where}.optimizer", f"unknown optimizer {s.optimizer!r}; known: {OPTIMIZERS}")
        check(s.loss in LOSSES, f"{where}.loss", f"unknown loss {s.loss!r}; known: {LOSSES}")
        check(s.lr > 0, f"{where}.lr", f"must be > 0, got {s.lr}")
        check(1 <= s.batch_size <= t.m, f"{where}.batch_size", f"must be in 1..m={t.m}, got {s.batch_size}")
        # an epoch is m / batch_size minibatches of a permutation of S: a remainder would go unused
        check(t.m % s.batch_size == 0, f"{where}.batch_size",
               f"must divide task.m={t.m} (every epoch uses every training input), got {s.batch_size}")
        check(s.weight_decay >= 0, f"{where}.weight_decay", f"must be >= 0, got {s.weight_decay}")
        check(0 <= s.min_steps < sgd.max_steps, f"{where}.min_steps",
               f"must be in 0..sgd.max_steps - 1 = {sgd.max_steps - 1}, got {s.min_steps}")
    if cfg.mcmc is not None:
        mc = cfg.mcmc
        for name in ("chains", "thin", "samples"):
            check(getattr(mc, name) >= 1, f"mcmc.{name}", f"must be >= 1, got {getattr(mc, name)}")
        # the chains form two independent groups by parity, the noise floor's two halves
        check(mc.chains % 2 == 0, "mcmc.chains", f"must be even (two groups of chains), got {mc.chains}")
        check(mc.burn_in >= 0, "mcmc.burn_in", f"must be >= 0, got {mc.burn_in}")
        check(mc.chunk_samples >= 1 and mc.samples % mc.chunk_samples == 0, "mcmc.chunk_samples",
               f"must divide mcmc.samples={mc.samples}, got {mc.chunk_samples}")
        check(mc.init in MCMC_INITS, "mcmc.init", f"unknown init {mc.init!r}; known: {MCMC_INITS}")
        check(mc.also_init in ("", *MCMC_INITS) and mc.also_init != mc.init, "mcmc.also_init",
               f"must be empty or an init other than mcmc.init = {mc.init!r} ({MCMC_INITS}), got {mc.also_init!r}")
        if "sgd" in (mc.init, mc.also_init):
            check(mc.init_setting in names, "mcmc.init_setting",
                   f"must name one of the sgd.settings {names}, got {mc.init_setting!r}")
    if cfg.nngp is not None:
        ng = cfg.nngp
        check(0 <= ng.ep_enumerate_max <= 16, "nngp.ep_enumerate_max", f"must be in 0..16, got {ng.ep_enumerate_max}")
        check(1 <= ng.ep_min_count <= -(-cfg.analysis.count_threshold // 2), "nngp.ep_min_count",
               f"must be in 1..ceil(analysis.count_threshold / 2) = {-(-cfg.analysis.count_threshold // 2)} (the "
               f"analysis selects functions seen that often in half a sample), got {ng.ep_min_count}")
        check(ng.exact in NNGP_EXACT, "nngp.exact", f"unknown exact sampler {ng.exact!r}; known: {NNGP_EXACT}")
        check(ng.ep in NNGP_EP, "nngp.ep", f"unknown EP method {ng.ep!r}; known: {NNGP_EP}")
        if ng.exact == "rejection":
            _check_chunks(ng.draws, ng.chunk_draws, ng.batch, "nngp", "draws")
        else:
            for name in ("chains", "thin"):
                check(getattr(ng, name) >= 1, f"nngp.{name}", f"must be >= 1, got {getattr(ng, name)}")
            check(ng.burn_in >= 0, "nngp.burn_in", f"must be >= 0, got {ng.burn_in}")
            check(ng.chunk_draws >= ng.chains and ng.chunk_draws % ng.chains == 0, "nngp.chunk_draws",
                   f"must be a positive multiple of nngp.chains={ng.chains}, got {ng.chunk_draws}")
            check(ng.draws >= 1 and ng.draws % ng.chunk_draws == 0, "nngp.draws",
                   f"must be a positive multiple of nngp.chunk_draws={ng.chunk_draws}, got {ng.draws}")
        _check_even_chunks(ng.draws, ng.chunk_draws, "nngp")
    if cfg.geometry is not None:
        validate_geometry(cfg, names)
    if cfg.sweep is not None:
        validate_sweep(cfg, names)
    check(an.count_threshold >= 1, "analysis.count_threshold", "must be >= 1")
    check(an.geometry_min_points >= 1, "analysis.geometry_min_points", "must be >= 1")
    check(an.bootstrap >= 10, "analysis.bootstrap", "must be >= 10")
    check(an.matched_reps >= 2, "analysis.matched_reps", "must be >= 2 (the spread over subsamples)")
    check(an.permutations >= 99, "analysis.permutations", "must be >= 99")
    check(0 < an.confidence < 1, "analysis.confidence", "must be in (0, 1)")
    check(rej is not None or cfg.mcmc is not None or cfg.nngp is not None, "rejection",
           "the config needs a [rejection], [mcmc] or [nngp] section: SGD is compared with one of them")
    return cfg


def validate_boolean_task(t) -> None:
    from study.tasks import TARGETS

    check(1 <= t.n <= 12, "task.n", f"must be in 1..12, got {t.n}")
    check(t.m <= 2**t.n, "task.m", f"m={t.m} exceeds the 2^n={2**t.n} inputs")
    check(t.m + t.n_test <= 2**t.n, "task.n_test", f"m + n_test = {t.m + t.n_test} exceeds 2^n = {2**t.n}")
    for name, default in (("labels", "ge5"), ("balanced", False), ("data_dir", "")):
        check(getattr(t, name) == default, f"task.{name}", "applies to image tasks only (task.kind digits, mnist, fashion)")
    if t.target.startswith("0x"):
        digits = t.target[2:]
        check(len(digits) == max(1, 2**t.n // 4), "task.target",
               f"hex truth table needs {max(1, 2**t.n // 4)} digits for n={t.n}, got {len(digits)}")
        # int(x, 16) would also take "_" separators and a sign
        check(all(c in string.hexdigits for c in digits), "task.target", f"{t.target!r} is not a hex number")
        check(int(digits, 16) < 2 ** (2**t.n), "task.target",
               f"{t.target!r} has more than the 2^n = {2**t.n} bits of a truth table for n={t.n}")
    else:
        check(t.target in TARGETS, "task.target", f"unknown target {t.target!r}; known: {sorted(TARGETS)} or 0x<hex>")


def validate_image_task(t) -> None:
    from study.images import BINARY_RULES, POOL_SIZES

    train_pool, test_pool = POOL_SIZES[t.kind]
    check(t.labels in BINARY_RULES, "task.labels", f"unknown binarisation {t.labels!r}; known: {BINARY_RULES}")
    check(not t.balanced or t.m % 2 == 0, "task.balanced", f"a balanced S needs an even m, got m = {t.m}")
    check(t.data_dir == "" or t.kind != "digits", "task.data_dir",
           "the digits are bundled with scikit-learn; data_dir is for mnist and fashion")
    if t.kind == "digits":  # S and E are disjoint draws from one pool
        check(t.m + t.n_test <= train_pool, "task.n_test",
               f"m + n_test = {t.m + t.n_test} exceeds the {train_pool} digits")
    else:
        check(t.m <= train_pool, "task.m", f"must be at most the {train_pool} training images, got {t.m}")
        check(t.n_test <= test_pool, "task.n_test", f"must be at most the {test_pool} test images, got {t.n_test}")


def validate_geometry(cfg: ExperimentConfig, sgd_names: list[str]) -> None:
    g = cfg.geometry
    for name in ("points", "chunk_points", "top_k", "hutchinson_samples", "directions", "radius_grid"):
        check(getattr(g, name) >= 1, f"geometry.{name}", f"must be >= 1, got {getattr(g, name)}")
    check(g.lanczos_matvecs >= g.top_k, "geometry.lanczos_matvecs",
           f"must be >= geometry.top_k={g.top_k}, got {g.lanczos_matvecs}")
    check(g.identity_points >= 0, "geometry.identity_points", f"must be >= 0, got {g.identity_points}")
    check(g.delta > 0, "geometry.delta", f"must be > 0, got {g.delta}")
    check(0 < g.radius_min < g.radius_max, "geometry.radius_max",
           f"need 0 < radius_min < radius_max, got {g.radius_min}, {g.radius_max}")
    check(g.posterior_sampler in ("parameters", "preactivations"), "geometry.posterior_sampler",
          f"must be 'parameters' or 'preactivations', got {g.posterior_sampler!r}")
    check(g.posterior_sampler == "parameters" or not cfg.network.conv_channels, "geometry.posterior_sampler",
          "'preactivations' needs a fully connected network (network.conv_channels empty)")
    # bayes_rejection's points come from the geometry stage's own prior draws; without a [rejection]
    # section they are asked for by name, drawn from pre-activations (P(S) too small otherwise)
    known = {"bayes_rejection": cfg.rejection if g.posterior_sampler == "parameters" else True, "bayes_mcmc": cfg.mcmc}
    check(len(set(g.populations)) == len(g.populations), "geometry.populations",
           f"each population at most once (a repeat would measure its points twice), got {list(g.populations)}")
    for i, pop in enumerate(g.populations):
        if pop in known:
            check(known[pop] is not None, f"geometry.populations[{i}]", f"{pop} needs the config's "
                   f"[{'rejection' if pop == 'bayes_rejection' else 'mcmc'}] section"
                   + (" or geometry.posterior_sampler = 'preactivations'" if pop == "bayes_rejection" else ""))
        else:
            check(pop in sgd_names, f"geometry.populations[{i}]",
                   f"unknown population {pop!r}; known: bayes_rejection, bayes_mcmc, {sgd_names}")
    from study.stages import geometry_populations
    check(any(p.startswith("bayes_") for p in geometry_populations(cfg)), "geometry.populations",
          "needs a Bayesian population for the others to be compared with: a [rejection] or [mcmc] section, "
          "or bayes_rejection listed with posterior_sampler = 'preactivations'")


def validate_sweep(cfg: ExperimentConfig, sgd_names: list[str]) -> None:
    w = cfg.sweep
    check(cfg.geometry is not None, "sweep", "needs a [geometry] section (its measures are used)")
    check(w.setting in sgd_names, "sweep.setting", f"must name one of the sgd.settings {sgd_names}, got {w.setting!r}")
    check(w.runs >= 1, "sweep.runs", f"must be >= 1, got {w.runs}")
    check(w.bayes_points >= 0, "sweep.bayes_points", f"must be >= 0, got {w.bayes_points}")
    check(0 <= w.min_steps < cfg.sgd.max_steps, "sweep.min_steps",
           f"must be in 0..sgd.max_steps - 1 = {cfg.sgd.max_steps - 1}, got {w.min_steps}")
    check(len(w.variants) >= 1, "sweep.variants", "needs at least one variant")
    _check_names([v.name for v in w.variants], "sweep.variants")
    for i, v in enumerate(w.variants):
        where = f"sweep.variants[{i}]"
        check(len(v.widths) >= 1 and all(x >= 1 for x in v.widths), f"{where}.widths",
               f"must be a non-empty list of positive widths, got {list(v.widths)}")
        check(v.weight_decay >= 0, f"{where}.weight_decay", f"must be >= 0, got {v.weight_decay}")


