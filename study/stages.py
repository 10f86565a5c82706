"""The study's stages as functions of a config: each writes raw, tidy CSVs under
results/<experiment name>/raw/ with a JSON provenance sidecar."""
from __future__ import annotations

import math
import sys
import time
import warnings
import zlib
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from study import mcmc, rejection, sgd
from study.config import ExperimentConfig
from study.diagnostics import TOP_FUNCTIONS_TRACED, chain_diagnostics
from study.encoding import bits_to_hex, words_to_hex
from study.network import Network, build_network
from study.store import (EVERY_ROW, atomic_write_json, atomic_write_npz, cached_npz, claim_directory, read_chunks,
                         run_chunks, write_raw_table, write_sidecar)
from study.tasks import Task, make_task

REJECTION_STREAM, SGD_STREAM, MCMC_STREAM, NNGP_STREAM = 1, 2, 3, 4


class StageError(RuntimeError):
    """A stage that cannot run as configured (the message says why and what to change)."""


def setup(cfg: ExperimentConfig) -> tuple[Task, Network]:
    t = cfg.task
    return make_task(t.n, t.target, t.m, t.n_test, cfg.seed), build_network(cfg.network, t.n)


def raw_dir(cfg: ExperimentConfig, results: Path) -> Path:
    return Path(results) / cfg.name / "raw"


def open_stage(cfg: ExperimentConfig, results: Path, stage: str, stream: int, description: str,
               prng: str | None = None) -> tuple[Path, str, jax.Array]:
    """A stage's raw chunk directory (claimed for this config and code), its config hash, and its
    key fold_in(key(seed), stream)."""
    config_hash = cfg.stage_hash(stage)
    directory = raw_dir(cfg, results) / stage
    claim_directory(directory, stage, config_hash, description)
    return directory, config_hash, jax.random.fold_in(jax.random.key(cfg.seed, impl=prng), stream)


def run_rejection(cfg: ExperimentConfig, results: Path, progress: bool = True) -> Path:
    """Rejection sampling of P_B(f|S); writes bayes_counts.csv (one row per chunk and function)."""
    task, net = setup(cfg)
    rc = cfg.rejection
    directory, config_hash, key = open_stage(cfg, results, "rejection", REJECTION_STREAM, "rejection-sampler chunks",
                                             prng=rc.prng)
    batch_fn = rejection.make_batch_fn(net, task, rc.batch)
    n_batches = rc.chunk_draws // rc.batch

    def compute(c: int):
        res = rejection.sample_chunk(batch_fn, jax.random.fold_in(key, c), n_batches, len(task.test_idx))
        table = pd.DataFrame({"chunk": c, "function": list(res["counts"]), "count": list(res["counts"].values())},
                             columns=["chunk", "function", "count"])
        return table.sort_values("function"), {k: res[k] for k in ("draws", "accepted", "seconds")}

    start = time.perf_counter()
    tables = run_chunks(directory, rc.draws // rc.chunk_draws, compute, "rejection", progress)
    counts, stats = read_chunks(tables)
    counts = counts.assign(population="bayes_rejection", config_hash=config_hash, seed=cfg.seed)
    stats = stats.assign(config_hash=config_hash, seed=cfg.seed,
                         useful_flops=stats["draws"] * rejection.useful_flops_per_draw(net, task))
    out = raw_dir(cfg, results) / "bayes_counts.csv"
    write_raw_table(stats, raw_dir(cfg, results) / "rejection_chunks.csv")
    write_raw_table(counts, out)
    write_sidecar(out, config_hash=config_hash, seed=cfg.seed, stage="rejection",
                  wall_seconds_this_invocation=time.perf_counter() - start,
                  draws=int(stats["draws"].sum()), accepted=int(stats["accepted"].sum()),
                  sampler_seconds=float(stats["seconds"].sum()))
    return out


def sgd_key(cfg: ExperimentConfig, setting) -> jax.Array:
    """The key of one SGD setting's population; run r uses fold_in(this, r)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.seed), SGD_STREAM),
                              zlib.crc32(setting.name.encode()))


# A run that diverged (lr too large) may end with a non-finite loss; it did not fit S, and the
# analysis counts it with the other runs that did not.
SGD_ALLOWED = {"final_loss": lambda runs: ~runs["fitted"].astype(bool)}


def run_sgd(cfg: ExperimentConfig, results: Path, progress: bool = True) -> Path:
    """The SGD population for every setting; writes sgd_runs.csv (one row per training run)."""
    task, net = setup(cfg)
    sc = cfg.sgd
    runs, chunks = [], []
    start = time.perf_counter()
    for setting in sc.settings:
        config_hash = cfg.stage_hash("sgd", setting)
        directory = raw_dir(cfg, results) / "sgd" / setting.name
        claim_directory(directory, "sgd", config_hash, f"SGD chunks for setting {setting.name}")
        key = sgd_key(cfg, setting)
        trainer = sgd.make_chunk_trainer(net, task, setting, sc, sc.chunk_runs)

        def compute(c: int):
            t0 = time.perf_counter()
            out = jax.device_get(trainer(key, c * sc.chunk_runs))
            seconds = time.perf_counter() - t0
            table = pd.DataFrame({
                "run_id": c * sc.chunk_runs + np.arange(sc.chunk_runs), "chunk": c,
                "steps": out["steps"], "fitted": out["fitted"], "final_loss": out["loss"],
                "function": words_to_hex(out["words"], len(task.test_idx)),
            })
            return table, {"runs": sc.chunk_runs, "seconds": seconds, "total_steps": int(out["steps"].sum())}

        tables = run_chunks(directory, sc.runs // sc.chunk_runs, compute, f"sgd {setting.name}", progress,
                            SGD_ALLOWED)
        table, stats = read_chunks(tables)
        describe = dict(setting=setting.name, optimizer=setting.optimizer, loss=setting.loss,
                        batch_size=setting.batch_size, lr=setting.lr, config_hash=config_hash, seed=cfg.seed)
        runs.append(table.assign(**describe))
        flops_per_step = sgd.useful_flops_per_step(net, task, setting)
        chunks.append(stats.assign(**describe, useful_flops=stats["total_steps"] * flops_per_step))
    out = raw_dir(cfg, results) / "sgd_runs.csv"
    write_raw_table(pd.concat(chunks, ignore_index=True), raw_dir(cfg, results) / "sgd_chunks.csv")
    write_raw_table(pd.concat(runs, ignore_index=True), out, SGD_ALLOWED)
    write_sidecar(out, seed=cfg.seed, stage="sgd", wall_seconds_this_invocation=time.perf_counter() - start,
                  config_hashes={s.name: cfg.stage_hash("sgd", s) for s in sc.settings})
    return out


def first_sgd_solutions(cfg: ExperimentConfig, task: Task, net: Network, setting, runs: int,
                        key: jax.Array | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parameters and run ids of the runs among 0..runs-1 of an SGD setting that fitted S. With the
    default key these are the same runs, with the same keys, as the first rows of that setting's
    population; with another key, runs of that setting that are not part of it."""
    trainer = sgd.make_chunk_trainer(net, task, setting, cfg.sgd, runs, keep_params=True)
    out = jax.device_get(trainer(sgd_key(cfg, setting) if key is None else key, 0))
    return out["theta"][out["fitted"]], np.arange(runs)[out["fitted"]]


def mcmc_init(cfg: ExperimentConfig, task: Task, net: Network, key: jax.Array, init: str) -> tuple[np.ndarray, str]:
    """Zero-training-error starting points for the chains, and where they came from."""
    mc = cfg.mcmc
    if init == "rejection":
        try:
            return mcmc.init_from_rejection(net, task, key, mc.chains), "zero-error prior draws (rejection)"
        except RuntimeError as err:
            raise StageError(f"mcmc.init = 'rejection': {err}; set mcmc.init = 'sgd'") from None
    # Runs of an SGD setting trained on the MCMC stage's key: independent of the SGD population
    # that the chains are later compared with (from that population's keys they would pull the
    # reference towards the very sample it judges).
    setting = cfg.sgd_setting(mc.init_setting)
    runs = 2 * mc.chains  # spare runs for those that do not fit within the step cap
    theta, _ = first_sgd_solutions(cfg, task, net, setting, runs, key=key)
    if len(theta) < mc.chains:
        raise StageError(f"mcmc.init_setting {setting.name!r}: only {len(theta)} of {runs} runs fitted S; "
                         f"fewer than mcmc.chains = {mc.chains}")
    return theta[: mc.chains], f"SGD solutions of setting {setting.name} (own key stream)"


# Split R-hat of a trace that is constant within every chain is 0/0 (NaN), or huge when the chains
# sit at different constants: a degenerate trace, which mcmc.diagnostics warns about; these are
# diagnostics, not results.
DIAGNOSTICS_ALLOWED = {"r_hat": EVERY_ROW, "ess_bulk": EVERY_ROW, "ess_tail": EVERY_ROW}
TRACE_PLOTTED = 3  # of which the chain-averaged traces go to mcmc_traces.csv
MCMC_OUTPUTS = {"bayes_mcmc": "mcmc_counts.csv", "bayes_mcmc_from_sgd": "mcmc_from_sgd_counts.csv",
                "bayes_mcmc_from_rejection": "mcmc_from_rejection_counts.csv"}


def mcmc_populations(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """(population, init) of every chain population of the config: the reference chains and,
    with mcmc.also_init, the check chains."""
    mc = cfg.mcmc
    return [("bayes_mcmc", mc.init)] + ([(f"bayes_mcmc_from_{mc.also_init}", mc.also_init)] if mc.also_init else [])


def run_mcmc(cfg: ExperimentConfig, results: Path, progress: bool = True) -> Path:
    """Elliptical slice sampling of the zero-error posterior in parameter space; writes
    mcmc_counts.csv (one row per chunk, chain group and function) and mcmc_diagnostics.csv (per
    population and chain group: rank-normalised R-hat and bulk / tail ESS of the traced summaries
    and of the indicators of the most frequent functions) and mcmc_traces.csv (chain-averaged
    traces per group of the test error and the top functions' indicators). With mcmc.also_init a second chain
    population, from that init on its own key, goes to mcmc_from_<init>_counts.csv.

    The chains are split into two groups of independent chains (group = chain parity, each with
    its own key) so that the noise floor can compare two independent halves, as for rejection.
    After each chunk the chains' states are saved, so a killed run resumes exactly."""
    task, net = setup(cfg)
    mc = cfg.mcmc
    directory, config_hash, key = open_stage(cfg, results, "mcmc", MCMC_STREAM, "MCMC chunks")
    start = time.perf_counter()
    diags, all_stats, all_curves = [], [], []
    for index, (population, init_kind) in enumerate(mcmc_populations(cfg)):
        # the reference chains keep the stage's key; the check chains get fold_in(key, 2)
        pop_dir, pop_key = (directory, key) if index == 0 else (directory / population, jax.random.fold_in(key, 2))
        counts, stats, diag, curves, source = _run_chain_population(cfg, task, net, pop_dir, pop_key, init_kind,
                                                                    population, progress)
        diags.append(diag.assign(population=population))
        all_curves.append(curves.assign(population=population))
        all_stats.append(stats.assign(population=population, init=source))
        write_raw_table(counts.assign(population=population, config_hash=config_hash, seed=cfg.seed),
                        raw_dir(cfg, results) / MCMC_OUTPUTS[population])
    diag = pd.concat(diags, ignore_index=True)
    write_raw_table(diag.assign(config_hash=config_hash, seed=cfg.seed), raw_dir(cfg, results) / "mcmc_diagnostics.csv",
                    DIAGNOSTICS_ALLOWED)
    stats = pd.concat(all_stats, ignore_index=True).assign(
        config_hash=config_hash, seed=cfg.seed, chains=mc.chains, thin=mc.thin, burn_in=mc.burn_in)
    write_raw_table(stats, raw_dir(cfg, results) / "mcmc_chunks.csv")
    write_raw_table(pd.concat(all_curves, ignore_index=True).assign(config_hash=config_hash, seed=cfg.seed),
                    raw_dir(cfg, results) / "mcmc_traces.csv")
    out = raw_dir(cfg, results) / "mcmc_counts.csv"
    write_sidecar(out, config_hash=config_hash, seed=cfg.seed, stage="mcmc", init=str(stats["init"].iat[0]),
                  wall_seconds_this_invocation=time.perf_counter() - start, max_r_hat=float(diag["r_hat"].max()))
    return out


def _run_chain_population(cfg: ExperimentConfig, task: Task, net: Network, directory: Path, key: jax.Array,
                          init_kind: str, population: str, progress: bool):
    """One chain population, chunk by chunk (resumable): its counts, chunk stats, diagnostics
    (all chains and each group), chain-averaged traces and where its chains started."""
    mc = cfg.mcmc
    directory.mkdir(parents=True, exist_ok=True)

    def make_init():
        theta0, source = mcmc_init(cfg, task, net, jax.random.fold_in(key, 0), init_kind)
        return {"theta_CxD": theta0, "source": np.array(source)}

    init = cached_npz(directory / "init.npz", make_init)
    theta0, source = init["theta_CxD"], str(init["source"])
    groups = [theta0[0::2], theta0[1::2]]
    group_keys = [jax.random.fold_in(jax.random.fold_in(key, 1), g) for g in range(2)]
    per_call = math.gcd(mc.chunk_samples, 64)
    runner = mcmc.make_chain_runner(net, task, per_call, mc.thin)

    def state_file(c: int) -> Path:
        return directory / f"state_{c:05d}.npz"

    def compute(c: int):
        rows, traces, stats = [], {}, {"samples": 0, "seconds": 0.0, "lockstep_proposals": 0}
        prev = None
        if c > 0:
            with np.load(state_file(c - 1)) as f:
                prev = {k: f[k] for k in f.files}
        new_state = {}
        for g, (theta_g, key_g) in enumerate(zip(groups, group_keys)):
            if prev is None:
                init, burn = theta_g, mc.burn_in
            else:
                u = prev[f"u{g}"]
                init = mcmc.ChainRun(counts={}, traces={}, words_CxNxW=np.zeros((0, 0, 0), np.uint32), u_CxD=u,
                                     theta_CxD=u * np.asarray(net.prior_std_D), next_step=int(prev[f"step{g}"]),
                                     lockstep_proposals=0, seconds=0.0)
                burn = 0
            run = mcmc.run_chains(net, task, key_g, init, n_keep=mc.chunk_samples, thin=mc.thin, burn_in=burn,
                                  keep_per_call=per_call, runner=runner)
            rows += [{"chunk": c, "group": g, "function": f, "count": n} for f, n in sorted(run.counts.items())]
            for name, x in (run.traces | {"words": run.words_CxNxW}).items():
                traces.setdefault(name, []).append(x)
            new_state |= {f"u{g}": run.u_CxD, f"step{g}": np.int64(run.next_step)}
            stats["samples"] += sum(run.counts.values())
            stats["seconds"] += run.seconds
            stats["lockstep_proposals"] += run.lockstep_proposals
        atomic_write_npz(directory / f"traces_{c:05d}.npz", **{k: np.concatenate(v) for k, v in traces.items()})
        atomic_write_npz(state_file(c), **new_state)  # before the chunk's JSON marks it complete
        return pd.DataFrame(rows, columns=["chunk", "group", "function", "count"]), stats

    n_chunks = mc.samples // mc.chunk_samples
    tables = run_chunks(directory, n_chunks, compute, population.replace("bayes_", ""), progress,
                        chunk_files=lambda c: [directory / f"traces_{c:05d}.npz", state_file(c)])
    counts, stats = read_chunks(tables)
    traces = {}
    for c in range(n_chunks):
        with np.load(directory / f"traces_{c:05d}.npz") as f:
            for name in f.files:
                traces.setdefault(name, []).append(f[name])
    traces = {k: np.concatenate(v, axis=1) for k, v in traces.items()}
    # chains of group 0 come first in every chunk's traces (groups[0] has chains 0, 2, 4, ...)
    traces |= mcmc.function_indicators(traces.pop("words"), len(task.test_idx), TOP_FUNCTIONS_TRACED)
    half = len(theta0) // 2
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
    return counts, stats, pd.concat(diags, ignore_index=True), curves, source


def write_done(cfg: ExperimentConfig, results: Path, stages: list[str]) -> None:
    """raw/stages.json: written when every stage of the config is complete (make's target)."""
    atomic_write_json({"stages": stages, "config_hashes": {
        s: cfg.stage_hash(s) for s in ("rejection", "mcmc", "nngp", "geometry", "sweep") if getattr(cfg, s) is not None}},
        raw_dir(cfg, results) / "stages.json")


# Not applicable, not failed: P(S) from exact sampling needs rejection draws (the ESS sampler has
# none) and at least one acceptance; chain diagnostics exist only for the ESS sampler.
NNGP_SUMMARY_ALLOWED = {
    "log_p_s_exact": lambda s: (s["exact_draws"] == 0) | (s["exact_samples"] == 0),
    "exact_r_hat_max": lambda s: s["exact_method"] != "ess",
    "exact_ess_min": lambda s: s["exact_method"] != "ess"}


def run_nngp(cfg: ExperimentConfig, results: Path, progress: bool = True) -> Path:
    """P_B(f|S) in function space with the NNGP kernel of the same network and prior:
    nngp_ep.csv (EP's log P_B per function: all 2^|E| functions when |E| <= nngp.ep_enumerate_max,
    else those the other stages saw), nngp_exact_counts.csv (exact samples of the Gaussian
    truncated to the signs of S) and nngp_summary.csv (log P(S) by EP and by the exact sampler)."""
    from study import nngp, truncated

    task, net = setup(cfg)
    ng = cfg.nngp
    directory, config_hash, key = open_stage(cfg, results, "nngp", NNGP_STREAM, "NNGP chunks")
    x = np.concatenate([task.x_train, task.x_test])
    K = nngp.nngp_kernel(net, x)
    m, n_test = len(task.train_idx), len(task.test_idx)
    y_S = np.where(task.y_train, 1.0, -1.0)

    if ng.exact == "rejection":
        n_chunks, per_chunk = ng.draws // ng.chunk_draws, ng.chunk_draws

        def compute(c: int):
            res = truncated.rejection_function_counts(jax.random.fold_in(key, c), K, y_S, per_chunk, ng.batch)
            table = pd.DataFrame({"chunk": c, "function": list(res["counts"]), "count": list(res["counts"].values())},
                                 columns=["chunk", "function", "count"]).sort_values("function")
            return table, {k: res[k] for k in ("draws", "accepted", "seconds")}
    else:  # each chunk: nngp.chains fresh chains (own key), burnt in, chunk_draws kept samples in all
        n_chunks = ng.draws // ng.chunk_draws
        per_chain = ng.chunk_draws // ng.chains

        def compute(c: int):
            res = truncated.ess_function_counts(jax.random.fold_in(key, c), K, y_S, ng.chains, per_chain * ng.thin,
                                                ng.burn_in, thin=ng.thin, return_words=True)
            table = pd.DataFrame({"chunk": c, "function": list(res.counts), "count": list(res.counts.values())},
                                 columns=["chunk", "function", "count"]).sort_values("function")
            # Convergence of the chunk's chains (which start overdispersed, from folded prior draws),
            # function-level too: indicators of the chunk's most frequent functions.
            traces = {"nngp_zE_mean": res.zE_mean_CxT, "nngp_fE_fraction": res.fE_frac_CxT}
            traces |= mcmc.function_indicators(res.words_CxTxW, n_test, TOP_FUNCTIONS_TRACED)
            with warnings.catch_warnings():  # one warning for the stage, below, not one per chunk
                warnings.simplefilter("ignore", mcmc.ConvergenceWarning)
                diag = mcmc.diagnostics(traces)
            return table, {"draws": 0, "accepted": int(sum(res.counts.values())), "seconds": res.seconds,
                           "mean_shrinks": res.mean_shrinks, "cap_hits": res.cap_hits,
                           "r_hat_max": float(diag["r_hat"].max()), "ess_min": float(diag["ess_bulk"].min())}

    start = time.perf_counter()
    tables = run_chunks(directory, n_chunks, compute, "nngp exact", progress)
    counts, stats = read_chunks(tables)
    accepted, draws = int(stats["accepted"].sum()), int(stats["draws"].sum())
    # ESS only: split R-hat (worst chunk and summary) and smallest ESS of the chains' traces.
    r_hat_max, ess_min = ((float(stats["r_hat_max"].max()), float(stats["ess_min"].min())) if "r_hat_max" in stats
                          else (float("nan"), float("nan")))
    if r_hat_max > mcmc.RHAT_THRESHOLD:
        print(f"warning: NNGP elliptical slice chains have split R-hat up to {r_hat_max:.3g} > "
              f"{mcmc.RHAT_THRESHOLD}: they have not mixed (more nngp.burn_in or thin)", file=sys.stderr)
    cap_hits = int(stats["cap_hits"].sum()) if "cap_hits" in stats else 0
    if cap_hits:
        print(f"warning: {cap_hits} NNGP elliptical slice transitions hit the shrink cap and did not move "
              "(a chain on the orthant's boundary)", file=sys.stderr)

    # EP: every function on E when there are few, else every function any other stage saw.
    enumerated = n_test <= ng.ep_enumerate_max
    if enumerated:
        functions = [bits_to_hex(b) for b in ((np.arange(2**n_test)[:, None] >> np.arange(n_test - 1, -1, -1)) & 1)]
    else:
        seen = set(counts["function"])
        for name in ("bayes_counts.csv", "mcmc_counts.csv", "sgd_runs.csv"):
            path = raw_dir(cfg, results) / name
            if path.exists():
                seen |= set(pd.read_csv(path, dtype={"function": str}, usecols=["function"])["function"].dropna())
        functions = sorted(seen)
    t0 = time.perf_counter()
    try:
        log_p_s = nngp.ep_log_orthant(K[:m, :m], y_S)
        scores = nngp.ep_log_pb_many(K, y_S, functions)
    except nngp.EPFailed as err:  # EP on S alone: without it no function can be scored
        raise StageError(f"nngp: EP for P(S) failed: {err}") from None
    ep_seconds = time.perf_counter() - t0
    ep_failed = int((scores.status != "converged").sum())
    if ep_failed:
        print(f"warning: EP failed for {ep_failed} of {len(functions)} functions (nngp_ep.csv: ep_status); "
              "their log_p is empty and they are left out of every EP comparison", file=sys.stderr)
    ep = pd.DataFrame({"function": functions, "log_p": scores.log_pb, "ep_status": scores.status,
                       "ep_sweeps": scores.sweeps, "config_hash": config_hash, "seed": cfg.seed})
    summary = pd.DataFrame([{
        "m": m, "n_test": n_test, "log_p_s_ep": log_p_s,
        "log_p_s_exact": float(np.log(accepted / draws)) if accepted and draws else float("nan"),
        "exact_method": ng.exact,
        "exact_r_hat_max": r_hat_max, "exact_ess_min": ess_min, "exact_cap_hits": cap_hits,
        "exact_draws": draws, "exact_samples": accepted, "exact_seconds": float(stats["seconds"].sum()),
        "ep_functions": len(functions), "ep_failed": ep_failed, "ep_enumerated": enumerated,
        "ep_probability_sum": float(np.nansum(np.exp(scores.log_pb))),
        "ep_seconds_per_function": ep_seconds / max(1, len(functions)),
        "config_hash": config_hash, "seed": cfg.seed}])
    out = raw_dir(cfg, results) / "nngp_ep.csv"
    write_raw_table(counts.assign(population="nngp_exact", config_hash=config_hash, seed=cfg.seed),
                    raw_dir(cfg, results) / "nngp_exact_counts.csv")
    write_raw_table(summary, raw_dir(cfg, results) / "nngp_summary.csv", NNGP_SUMMARY_ALLOWED)
    write_raw_table(ep, out, {"log_p": lambda ep: ep["ep_status"] != "converged"})
    write_sidecar(out, config_hash=config_hash, seed=cfg.seed, stage="nngp",
                  wall_seconds_this_invocation=time.perf_counter() - start)
    return out
