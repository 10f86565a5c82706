"""Stage nngp: P_B(f|S) in function space with the NNGP kernel of the same network and prior
(study/nngp.py, study/truncated.py). Writes nngp_ep.csv (EP's log P_B per function: all 2^|E|
functions when |E| <= nngp.ep_enumerate_max, else those the stages it reads saw, or saw at least
nngp.ep_min_count times),
nngp_exact_counts.csv (exact samples of the Gaussian truncated to the signs of S) and
nngp_summary.csv (log P(S) by EP and by the exact sampler)."""
from __future__ import annotations

import sys
import time
import warnings

import jax
import numpy as np
import pandas as pd

from study import ep_batch, mcmc, nngp, truncated
from study.diagnostics import TOP_FUNCTIONS_TRACED
from study.encoding import bits_to_hex
from study.runner import Context, Part, StageError, sorted_counts

# Not applicable, not failed: P(S) from exact sampling needs rejection draws (the ESS sampler has
# none) and at least one acceptance; chain diagnostics exist only for the ESS sampler. An infinite
# R-hat is a diagnosis, not a failure: a trace that never moved within its chains (the warning says so).
NNGP_SUMMARY_ALLOWED = {
    "log_p_s_exact": lambda s: (s["exact_draws"] == 0) | (s["exact_samples"] == 0),
    "exact_r_hat_max": lambda s: (s["exact_method"] != "ess") | (s["exact_r_hat_max"] == np.inf),
    "exact_ess_min": lambda s: s["exact_method"] != "ess"}
EP_METHODS = {"ratio": ep_batch.ep_log_pb_batched, "predictive": ep_batch.ep_log_pb_predictive}
# The public outputs whose functions EP scores when it cannot enumerate them all, and the column
# that names their populations (an SGD setting, an MCMC init); a row is one run where no count is.
SEEN = {"rejection": ("rejection_counts.csv", "population"), "mcmc": ("mcmc_counts.csv", "population"),
        "sgd": ("sgd_runs.csv", "setting")}


def plan(ctx: Context) -> list[Part]:
    ng, task = ctx.cfg.nngp, ctx.task
    K = nngp.nngp_kernel(ctx.net, np.concatenate([task.x_train, task.x_test]))
    y_S = np.where(task.y_train, 1.0, -1.0)
    ctx.found |= {"K": K, "y_S": y_S}
    n_chunks = ng.draws // ng.chunk_draws
    if ng.exact == "rejection":
        def compute(c: int):
            res = truncated.rejection_function_counts(jax.random.fold_in(ctx.key, c), K, y_S, ng.chunk_draws, ng.batch)
            return sorted_counts(c, res["counts"]), {k: res[k] for k in ("draws", "accepted", "seconds")}
    else:  # each chunk: nngp.chains fresh chains (own key), burnt in, chunk_draws kept samples in all
        per_chain = ng.chunk_draws // ng.chains

        def compute(c: int):
            res = truncated.ess_function_counts(jax.random.fold_in(ctx.key, c), K, y_S, ng.chains, per_chain * ng.thin,
                                                ng.burn_in, thin=ng.thin, return_words=True)
            # Convergence of the chunk's chains (which start overdispersed, from folded prior draws),
            # function-level too: indicators of the chunk's most frequent functions.
            traces = {"nngp_zE_mean": res.zE_mean_CxT, "nngp_fE_fraction": res.fE_frac_CxT}
            traces |= mcmc.function_indicators(res.words_CxTxW, len(task.test_idx), TOP_FUNCTIONS_TRACED)
            with warnings.catch_warnings():  # one warning for the stage, below, not one per chunk
                warnings.simplefilter("ignore", mcmc.ConvergenceWarning)
                diag = mcmc.diagnostics(traces)
            return sorted_counts(c, res.counts), {
                "draws": 0, "accepted": int(sum(res.counts.values())), "seconds": res.seconds,
                "mean_shrinks": res.mean_shrinks,
                "r_hat_max": float(diag["r_hat"].max()), "ess_min": float(diag["ess_bulk"].min())}
    return [Part(n_chunks, compute, "nngp exact")]


def ep_functions(ctx: Context, counts: pd.DataFrame) -> tuple[list[str], bool]:
    """The functions EP scores: every function on E when there are few, else every function that
    the exact sampler or a population of a stage this one reads saw at least nngp.ep_min_count
    times."""
    n_test = len(ctx.task.test_idx)
    if n_test <= ctx.cfg.nngp.ep_enumerate_max:
        bits = (np.arange(2**n_test)[:, None] >> np.arange(n_test - 1, -1, -1)) & 1
        return [bits_to_hex(b) for b in bits], True
    frames = [counts.assign(population="nngp_exact")[["population", "function", "count"]]]
    for stage in ctx.stage.reads(ctx.cfg):
        name, group = SEEN[stage]
        frame = pd.read_csv(ctx.read(stage, name), dtype={"function": str},
                            usecols=lambda c: c in (group, "function", "count")).dropna(subset=["function"])
        frames.append(frame.rename(columns={group: "population"}).assign(count=frame.get("count", 1)))
    seen = pd.concat(frames).groupby(["population", "function"])["count"].sum()
    return sorted(set(seen[seen >= ctx.cfg.nngp.ep_min_count].index.get_level_values("function"))), False


def finalise(ctx: Context, done):
    (counts, stats), = done
    cfg, K, y_S = ctx.cfg, ctx.found["K"], ctx.found["y_S"]
    m, n_test = len(ctx.task.train_idx), len(ctx.task.test_idx)
    accepted, draws = int(stats["accepted"].sum()), int(stats["draws"].sum())
    # ESS only: split R-hat (worst chunk and summary) and smallest ESS of the chains' traces.
    r_hat_max, ess_min = ((float(stats["r_hat_max"].max()), float(stats["ess_min"].min())) if "r_hat_max" in stats
                          else (float("nan"), float("nan")))
    if r_hat_max > mcmc.RHAT_THRESHOLD:
        print(f"warning: NNGP elliptical slice chains have split R-hat up to {r_hat_max:.4g} > "
              f"{mcmc.RHAT_THRESHOLD}: they have not mixed (fewer, longer chains: fewer nngp.chains, "
              "more nngp.thin; or more nngp.burn_in)", file=sys.stderr)
    functions, enumerated = ep_functions(ctx, counts)
    # the method whose log P_B is used, and with "both" the predictive scored beside it
    methods = ["ratio", "predictive"] if cfg.nngp.ep == "both" else [cfg.nngp.ep]
    results, seconds = {}, {}
    try:
        log_p_s = nngp.ep_log_orthant(K[:m, :m], y_S)
        for method in methods:
            t0 = time.perf_counter()
            results[method] = EP_METHODS[method](K, y_S, functions, progress=ctx.progress)
            seconds[method] = (time.perf_counter() - t0) / max(1, len(functions))
    except nngp.EPFailed as err:  # EP on S alone: without it no function can be scored
        raise StageError(f"nngp: EP for P(S) failed: {err}") from None
    scores = results[methods[0]]
    ep_failed = int((scores.status != "converged").sum())
    if ep_failed:
        print(f"warning: EP failed for {ep_failed} of {len(functions)} functions (nngp_ep.csv: ep_status); "
              "their log_p is empty and they are left out of every EP comparison", file=sys.stderr)
    ep = pd.DataFrame({"function": functions, "log_p": scores.log_pb, "ep_status": scores.status,
                       "ep_sweeps": scores.sweeps})
    allowed = {"log_p": lambda ep: ep["ep_status"] != "converged"}
    if len(methods) > 1:
        check = results["predictive"]
        ep = ep.assign(log_p_predictive=check.log_pb, predictive_status=check.status)
        allowed["log_p_predictive"] = lambda ep: ep["predictive_status"] != "converged"
        failed = int((check.status != "converged").sum())
        if failed:
            print(f"warning: the predictive EP failed for {failed} of {len(functions)} functions "
                  "(nngp_ep.csv: predictive_status)", file=sys.stderr)
    summary = pd.DataFrame([{
        "m": m, "n_test": n_test, "log_p_s_ep": log_p_s,
        "log_p_s_exact": float(np.log(accepted / draws)) if accepted and draws else float("nan"),
        "exact_method": cfg.nngp.exact,
        # Always 0: the ESS transition (study/ess.py, blackjax's) has no shrink cap to hit; the
        # column stays so that the table keeps its columns.
        "exact_r_hat_max": r_hat_max, "exact_ess_min": ess_min, "exact_cap_hits": 0,
        "exact_draws": draws, "exact_samples": accepted, "exact_seconds": float(stats["seconds"].sum()),
        "ep_functions": len(functions), "ep_failed": ep_failed, "ep_enumerated": enumerated,
        "ep_min_count": 1 if enumerated else cfg.nngp.ep_min_count,
        "ep_probability_sum": float(np.nansum(np.exp(scores.log_pb))),
        "ep_method": methods[0], "ep_seconds_per_function": seconds[methods[0]],
        # seconds per function of the predictive scored beside the ratio ("both"), else 0
        "ep_check_seconds_per_function": seconds["predictive"] if len(methods) > 1 else 0.0}])
    return {"nngp_ep.csv": (ep, allowed),
            "nngp_exact_counts.csv": counts.assign(population="nngp_exact"),
            "nngp_summary.csv": (summary, NNGP_SUMMARY_ALLOWED)}, {}
