"""Stage mcmc: elliptical slice sampling of the zero-error posterior in parameter space
(study/mcmc.py). Writes mcmc_counts.csv (one row per chunk, chain group and function),
mcmc_diagnostics.csv (per population and chain group: rank-normalised R-hat and bulk / tail ESS
of the traced summaries and of the indicators of the most frequent functions), mcmc_traces.csv
(chain-averaged traces per group of the test error and the top functions' indicators),
mcmc_chunks.csv and mcmc_states.npz (every chain's final state, in chain order). With
mcmc.also_init a second chain population, from that init on its own key, goes to
mcmc_from_<init>_counts.csv.

The chains are split into two groups of independent chains (group = chain parity, each with its
own key) so that the noise floor can compare two independent halves, as for rejection. After each
chunk the chains' states are saved, so a killed run resumes exactly."""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from study import mcmc, sgd
from study.diagnostics import TOP_FUNCTIONS_TRACED, chain_diagnostics
from study.runner import Context, Part, StageError
from study.store import EVERY_ROW, atomic_write_npz, cached_npz

# Split R-hat of a trace that is constant within every chain is 0/0 (NaN), or huge when the chains
# sit at different constants: a degenerate trace, which mcmc.diagnostics warns about; these are
# diagnostics, not results.
DIAGNOSTICS_ALLOWED = {"r_hat": EVERY_ROW, "ess_bulk": EVERY_ROW, "ess_tail": EVERY_ROW}
TRACE_PLOTTED = 3  # of which the chain-averaged traces go to mcmc_traces.csv
OUTPUTS = {"bayes_mcmc": "mcmc_counts.csv", "bayes_mcmc_from_sgd": "mcmc_from_sgd_counts.csv",
           "bayes_mcmc_from_rejection": "mcmc_from_rejection_counts.csv"}


def populations(cfg) -> list[tuple[str, str]]:
    """(population, init) of every chain population of the config: the reference chains and,
    with mcmc.also_init, the check chains."""
    mc = cfg.mcmc
    return [("bayes_mcmc", mc.init)] + ([(f"bayes_mcmc_from_{mc.also_init}", mc.also_init)] if mc.also_init else [])


def sgd_solutions(cfg, task, net, setting, runs: int, key: jax.Array) -> np.ndarray:
    """Parameters of the runs among 0..runs-1 of an SGD setting, trained on `key`, that fitted S."""
    trainer = sgd.make_chunk_trainer(net, task, setting, cfg.sgd, runs, keep_params=True)
    out = jax.device_get(trainer(key, 0))
    return out["theta"][out["fitted"]]


def initial_states(ctx: Context, key: jax.Array, init: str) -> tuple[np.ndarray, str]:
    """Zero-training-error starting points for the chains, and where they came from."""
    cfg, mc = ctx.cfg, ctx.cfg.mcmc
    if init == "rejection":
        try:
            return mcmc.init_from_rejection(ctx.net, ctx.task, key, mc.chains), "zero-error prior draws (rejection)"
        except RuntimeError as err:
            raise StageError(f"mcmc.init = 'rejection': {err}; set mcmc.init = 'sgd'") from None
    # Runs of an SGD setting trained on the MCMC stage's key: independent of the SGD population
    # that the chains are later compared with (from that population's keys they would pull the
    # reference towards the very sample it judges).
    setting = cfg.sgd_setting(mc.init_setting)
    runs = 2 * mc.chains  # spare runs for those that do not fit within the step cap
    theta = sgd_solutions(cfg, ctx.task, ctx.net, setting, runs, key)
    if len(theta) < mc.chains:
        raise StageError(f"mcmc.init_setting {setting.name!r}: only {len(theta)} of {runs} runs fitted S; "
                         f"fewer than mcmc.chains = {mc.chains}")
    return theta[: mc.chains], f"SGD solutions of setting {setting.name} (own key stream)"


def plan(ctx: Context) -> list[Part]:
    parts = []
    for index, (population, init) in enumerate(populations(ctx.cfg)):
        # the reference chains keep the stage's key and directory; the check chains get fold_in(key, 2)
        subdir, key = ("", ctx.key) if index == 0 else (population, jax.random.fold_in(ctx.key, 2))
        parts.append(_population_part(ctx, ctx.directory / subdir, subdir, key, init, population))
    return parts


def _population_part(ctx: Context, directory: Path, subdir: str, key: jax.Array, init_kind: str,
                     population: str) -> Part:
    mc, net, task = ctx.cfg.mcmc, ctx.net, ctx.task
    directory.mkdir(parents=True, exist_ok=True)

    def make_init():
        theta0, source = initial_states(ctx, jax.random.fold_in(key, 0), init_kind)
        return {"theta_CxD": theta0, "source": np.array(source)}

    init = cached_npz(directory / "init.npz", make_init)
    theta0 = init["theta_CxD"]
    ctx.found[population] = {"directory": directory, "source": str(init["source"]), "chains": len(theta0)}
    groups = [theta0[0::2], theta0[1::2]]
    group_keys = [jax.random.fold_in(jax.random.fold_in(key, 1), g) for g in range(2)]
    per_call = math.gcd(mc.chunk_samples, 64)
    runner = mcmc.make_chain_runner(net, task, per_call, mc.thin)

    def compute(c: int):
        rows, traces, stats = [], {}, {"samples": 0, "seconds": 0.0, "lockstep_proposals": 0}
        prev = None
        if c > 0:
            with np.load(state_file(directory, c - 1)) as f:
                prev = {k: f[k] for k in f.files}
        new_state = {}
        for g, (theta_g, key_g) in enumerate(zip(groups, group_keys)):
            if prev is None:
                start, burn = theta_g, mc.burn_in
            else:
                u = prev[f"u{g}"]
                start = mcmc.ChainRun(counts={}, traces={}, words_CxNxW=np.zeros((0, 0, 0), np.uint32), u_CxD=u,
                                      theta_CxD=u * np.asarray(net.prior_std_D), next_step=int(prev[f"step{g}"]),
                                      lockstep_proposals=0, seconds=0.0)
                burn = 0
            run = mcmc.run_chains(net, task, key_g, start, n_keep=mc.chunk_samples, thin=mc.thin, burn_in=burn,
                                  keep_per_call=per_call, runner=runner)
            rows += [{"chunk": c, "group": g, "function": f, "count": n} for f, n in sorted(run.counts.items())]
            for name, x in (run.traces | {"words": run.words_CxNxW}).items():
                traces.setdefault(name, []).append(x)
            new_state |= {f"u{g}": run.u_CxD, f"step{g}": np.int64(run.next_step)}
            stats["samples"] += sum(run.counts.values())
            stats["seconds"] += run.seconds
            stats["lockstep_proposals"] += run.lockstep_proposals
        atomic_write_npz(directory / f"traces_{c:05d}.npz", **{k: np.concatenate(v) for k, v in traces.items()})
        atomic_write_npz(state_file(directory, c), **new_state)  # before the chunk's JSON marks it complete
        return pd.DataFrame(rows, columns=["chunk", "group", "function", "count"]), stats

    return Part(mc.samples // mc.chunk_samples, compute, population.replace("bayes_", ""), subdir=subdir,
                chunk_files=lambda c: [directory / f"traces_{c:05d}.npz", state_file(directory, c)], sequential=True)


def state_file(directory: Path, c: int) -> Path:
    return directory / f"state_{c:05d}.npz"


def finalise(ctx: Context, done):
    cfg, mc = ctx.cfg, ctx.cfg.mcmc
    outputs, diags, all_stats, all_curves, states = {}, [], [], [], {}
    for (population, _), (counts, stats) in zip(populations(cfg), done):
        found = ctx.found[population]
        diag, curves, theta = _summarise(ctx, found["directory"], found["chains"], population)
        diags.append(diag.assign(population=population))
        all_curves.append(curves.assign(population=population))
        all_stats.append(stats.assign(population=population, init=found["source"]))
        outputs[OUTPUTS[population]] = counts.assign(population=population)
        states[f"{population}.theta_CxD"] = theta
    diag = pd.concat(diags, ignore_index=True)
    outputs["mcmc_diagnostics.csv"] = (diag, DIAGNOSTICS_ALLOWED)
    outputs["mcmc_chunks.csv"] = pd.concat(all_stats, ignore_index=True).assign(
        config_hash=ctx.config_hash, seed=cfg.seed, chains=mc.chains, thin=mc.thin, burn_in=mc.burn_in)
    outputs["mcmc_traces.csv"] = pd.concat(all_curves, ignore_index=True)
    outputs["mcmc_states.npz"] = states
    return outputs, {"init": ctx.found["bayes_mcmc"]["source"], "max_r_hat": float(diag["r_hat"].max())}


def _summarise(ctx: Context, directory: Path, chains: int, population: str):
    """A chain population's diagnostics (all chains and each group), chain-averaged traces and the
    chains' final states (theta, in chain order)."""
    n_chunks = ctx.cfg.mcmc.samples // ctx.cfg.mcmc.chunk_samples
    traces = {}
    for c in range(n_chunks):
        with np.load(directory / f"traces_{c:05d}.npz") as f:
            for name in f.files:
                traces.setdefault(name, []).append(f[name])
    traces = {k: np.concatenate(v, axis=1) for k, v in traces.items()}
    # chains of group 0 come first in every chunk's traces (groups[0] has chains 0, 2, 4, ...)
    traces |= mcmc.function_indicators(traces.pop("words"), len(ctx.task.test_idx), TOP_FUNCTIONS_TRACED)
    half = chains // 2
    diags = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", mcmc.ConvergenceWarning)
        for group, rows in (("all", slice(None)), ("0", slice(0, half)), ("1", slice(half, None))):
            diagnose = mcmc.diagnostics if group == "all" else chain_diagnostics  # warn once, for all chains
            diags.append(diagnose({k: v[rows] for k, v in traces.items()}).assign(group=group))
    for w in caught:
        print(f"warning: {population}: {w.message}", file=sys.stderr)
    # chain-averaged traces of each group for the trace figure: the test error and the indicators
    # of the TRACE_PLOTTED most frequent functions (f= names in order of frequency)
    plotted = ["test_error"] + [k for k in traces if k.startswith("f=")][:TRACE_PLOTTED]
    curves = pd.DataFrame([{"summary": name, "group": g, "sample": k, "chain_mean": float(v)}
                           for name in plotted for g, rows in enumerate((slice(0, half), slice(half, None)))
                           for k, v in enumerate(traces[name][rows].mean(axis=0))])
    with np.load(state_file(directory, n_chunks - 1)) as f:  # the chains' states after the last chunk
        u = np.empty((f["u0"].shape[0] + f["u1"].shape[0], ctx.net.n_params), np.float32)
        u[0::2], u[1::2] = f["u0"], f["u1"]  # chain c is in group c % 2
    return pd.concat(diags, ignore_index=True), curves, u * np.asarray(ctx.net.prior_std_D)
