"""Raw populations -> tidy tables: functions per population, the joint table of both
populations, agreement statistics against the Bayes-vs-Bayes noise floor, run summaries."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import stats
from study.config import ExperimentConfig
from study.encoding import hex_to_bits
from study.tasks import Task, seen_table_lz

BAYES = "bayes_rejection"
# Raw count tables of the sampled P_B estimators: population -> file under raw/. Each has a column
# that splits it into two independent halves for the noise floor: rejection and the exact NNGP
# sampler by chunk parity (chunks use independent keys), MCMC by chain group (independent chains).
COUNT_ESTIMATORS = {"bayes_rejection": "bayes_counts.csv", "bayes_mcmc": "mcmc_counts.csv",
                    "nngp_exact": "nngp_exact_counts.csv"}
EP = "nngp_ep"


def function_table(counts: dict[str, int], population: str, task: Task) -> pd.DataFrame:
    """One row per function: count, probability, test error on E and LZ complexity of the seen table."""
    total = sum(counts.values())
    rows = []
    for function, count in counts.items():
        bits = hex_to_bits(function, len(task.test_idx))
        rows.append({"population": population, "function": function, "count": int(count),
                     "probability": count / total, "test_error": float(np.mean(bits != task.y_test)),
                     "lz": seen_table_lz(task, bits)})
    columns = ["population", "function", "count", "probability", "test_error", "lz"]
    return pd.DataFrame(rows, columns=columns).sort_values("count", ascending=False, ignore_index=True)


def bayes_counts(raw: pd.DataFrame, half: int | None = None) -> dict[str, int]:
    """Counts per function of a sampled estimator: all of it, or one of its two independent halves."""
    if half is not None:
        raw = raw[half_labels(raw) == half]
    return raw.groupby("function")["count"].sum().astype(int).to_dict()


def half_labels(raw: pd.DataFrame) -> pd.Series:
    """0/1 per row: chain group where the table has one (MCMC), else chunk parity."""
    return raw["group"] if "group" in raw else raw["chunk"] % 2


def sgd_counts(runs: pd.DataFrame) -> dict[str, int]:
    return runs.loc[runs["fitted"], "function"].value_counts().astype(int).to_dict()


def joint_table(sgd: dict[str, int], bayes: dict[str, int], setting: str, task: Task,
                reference: str = BAYES, ep: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per function seen by SGD or the reference estimator; with EP also its log P_B."""
    keys, a, b = stats.align(sgd, bayes)
    frame = pd.DataFrame({"setting": setting, "function": keys, "count_sgd": a, "count_bayes": b,
                          "p_sgd": a / a.sum(), "p_bayes": b / b.sum(), "reference": reference})
    if ep is not None:
        frame["log_p_ep"] = [ep.get(k, np.nan) for k in keys]
    bits = [hex_to_bits(k, len(task.test_idx)) for k in keys]
    frame["test_error"] = [float(np.mean(x != task.y_test)) for x in bits]
    frame["lz"] = [seen_table_lz(task, x) for x in bits]
    return frame


def compare(name: str, setting: str, a: dict[str, int], b: dict[str, int], cfg: ExperimentConfig,
            rng: np.random.Generator) -> pd.DataFrame:
    """Long table: one row per statistic of sample a against sample b, with a bootstrap interval."""
    an = cfg.analysis
    _, ca, cb = stats.align(a, b)
    stat = lambda x, y: stats.all_statistics(x, y, an.count_threshold)
    point = stat(ca, cb)
    ci = stats.bootstrap(ca, cb, stat, an.bootstrap, rng, an.confidence)
    return pd.DataFrame([{"comparison": name, "setting": setting, "statistic": k, "value": v,
                          "ci_low": ci[k][0], "ci_high": ci[k][1], "n_a": int(ca.sum()), "n_b": int(cb.sum()),
                          "threshold": an.count_threshold} for k, v in point.items()])


def compare_to_fixed(name: str, setting: str, a: dict[str, int], log_p: dict[str, float], cfg: ExperimentConfig,
                     rng: np.random.Generator, complete: bool) -> pd.DataFrame:
    """Sample a against a computed distribution (EP's log P_B per function). Correlations over the
    functions with >= threshold counts in a; TV and KL(a || EP) only where EP scored every function
    (complete), after normalising EP over them. The interval resamples a only."""
    an = cfg.analysis
    keys = sorted(set(a) | set(log_p)) if complete else sorted(a)
    ca = np.array([a.get(k, 0) for k in keys])
    lp = np.array([log_p.get(k, np.nan) for k in keys])
    scored = np.isfinite(lp)
    q = np.exp(lp - np.nanmax(lp))
    q = np.where(scored, q, 0) / np.nansum(np.where(scored, q, 0))

    def stat(x, _):
        keep = scored & (x >= an.count_threshold)
        n = int(keep.sum())
        out = dict.fromkeys(("pearson_log", "spearman_log", "slope_log", "kl", "tv"), float("nan"))
        if n >= 3:
            # a pseudo-count vector with the EP probabilities, so log_correlations sees log q
            pa, pq = np.log(x[keep] / x.sum()), np.log(q[keep])
            out["pearson_log"] = float(np.corrcoef(pa, pq)[0, 1])
            out["spearman_log"] = float(stats.sps.spearmanr(pa, pq)[0])
            out["slope_log"] = float(np.polyfit(pq, pa, 1)[0])
        if complete:
            p = x / x.sum()
            out["tv"] = float(0.5 * np.abs(p - q).sum())
            ps = (x + 0.5) / (x.sum() + 0.5 * len(x))
            out["kl"] = float(np.sum(ps * np.log(ps / np.maximum(q, 1e-300))))
        out["n_common"] = float(n)
        return out

    point = stat(ca, None)
    ci = stats.bootstrap(ca, np.ones_like(ca), stat, an.bootstrap, rng, an.confidence)
    return pd.DataFrame([{"comparison": name, "setting": setting, "statistic": k, "value": v,
                          "ci_low": ci[k][0], "ci_high": ci[k][1], "n_a": int(ca.sum()), "n_b": 0,
                          "threshold": an.count_threshold} for k, v in point.items()])


def agreement_table(runs: pd.DataFrame, estimators: dict[str, pd.DataFrame], ep: dict[str, float] | None,
                    ep_complete: bool, cfg: ExperimentConfig) -> pd.DataFrame:
    """SGD vs the reference P_B estimate (full samples, and SGD subsampled to the size of one half)
    next to the noise floor: the reference's half A against its half B, independent samples.
    With EP, also SGD against EP's computed P_B."""
    rng = np.random.default_rng([cfg.seed, 0xA6])
    raw = estimators[cfg.reference]
    half_a, half_b = bayes_counts(raw, 0), bayes_counts(raw, 1)
    full = bayes_counts(raw)
    n_half = sum(half_a.values())
    frames = [compare("bayes_vs_bayes", "noise_floor", half_a, half_b, cfg, rng)]
    for setting, group in runs.groupby("setting", sort=False):
        fitted = group[group["fitted"]].sort_values("run_id")
        frames.append(compare("sgd_vs_bayes", setting, sgd_counts(fitted), full, cfg, rng))
        frames.append(compare("sgd_vs_bayes_matched", setting, sgd_counts(fitted.head(n_half)), half_b, cfg, rng))
        if ep is not None:
            frames.append(compare_to_fixed("sgd_vs_nngp_ep", setting, sgd_counts(fitted), ep, cfg, rng, ep_complete))
    return pd.concat(frames, ignore_index=True).assign(reference=cfg.reference)


def estimator_table(estimators: dict[str, pd.DataFrame], ep: dict[str, float] | None, ep_complete: bool,
                    cfg: ExperimentConfig) -> pd.DataFrame:
    """E2 cross-check: every pair of sampled P_B estimators, each estimator's own noise floor
    (half A against half B), and each sampled estimator against EP."""
    rng = np.random.default_rng([cfg.seed, 0xE2])
    names = list(estimators)
    frames = []
    for i, a in enumerate(names):
        frames.append(compare(f"{a}_vs_{a}", "noise_floor", bayes_counts(estimators[a], 0),
                              bayes_counts(estimators[a], 1), cfg, rng))
        for b in names[i + 1:]:
            frames.append(compare(f"{a}_vs_{b}", "cross_check", bayes_counts(estimators[a]),
                                  bayes_counts(estimators[b]), cfg, rng))
        if ep is not None:
            frames.append(compare_to_fixed(f"{a}_vs_{EP}", "cross_check", bayes_counts(estimators[a]), ep, cfg, rng,
                                           ep_complete))
    return pd.concat(frames, ignore_index=True)


def pb_estimates(estimators: dict[str, pd.DataFrame], ep: dict[str, float] | None) -> pd.DataFrame:
    """Long table for the scatter matrix: one row per function and estimator with its log10 P_B,
    over the functions that any sampled estimator saw (EP rows for those functions only)."""
    rows = []
    seen: set[str] = set()
    for name, raw in estimators.items():
        counts = bayes_counts(raw)
        total = sum(counts.values())
        seen |= set(counts)
        rows += [{"estimator": name, "function": f, "count": n, "log10_p": np.log10(n / total)}
                 for f, n in counts.items()]
    if ep is not None:
        rows += [{"estimator": EP, "function": f, "count": np.nan, "log10_p": ep[f] / np.log(10)}
                 for f in sorted(seen) if f in ep]
    return pd.DataFrame(rows)


def runs_summary(runs: pd.DataFrame, chunk_stats: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for setting, g in runs.groupby("setting", sort=False):
        c = chunk_stats[chunk_stats["setting"] == setting]
        fitted = g[g["fitted"]]
        rows.append({"setting": setting, "optimizer": g["optimizer"].iat[0], "loss": g["loss"].iat[0],
                     "batch_size": int(g["batch_size"].iat[0]), "lr": float(g["lr"].iat[0]),
                     "runs": len(g), "fitted": len(fitted), "not_fitted": int((~g["fitted"]).sum()),
                     "mean_steps": float(fitted["steps"].mean()) if len(fitted) else np.nan,
                     "median_steps": float(fitted["steps"].median()) if len(fitted) else np.nan,
                     "distinct_functions": int(fitted["function"].nunique()),
                     "total_steps": int(c["total_steps"].sum()),
                     "config_hash": g["config_hash"].iat[0], "seed": int(g["seed"].iat[0])})
    return pd.DataFrame(rows)


def sampler_summary(chunk_stats: pd.DataFrame, raw_bayes: pd.DataFrame) -> pd.DataFrame:
    draws, accepted = int(chunk_stats["draws"].sum()), int(chunk_stats["accepted"].sum())
    return pd.DataFrame([{"population": BAYES, "draws": draws, "accepted": accepted,
                          "acceptance": accepted / draws, "distinct_functions": raw_bayes["function"].nunique(),
                          "chunks": len(chunk_stats),
                          "config_hash": chunk_stats["config_hash"].iat[0], "seed": int(chunk_stats["seed"].iat[0])}])


def mcmc_summary(chunk_stats: pd.DataFrame, diagnostics: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """One row: chains, kept samples, speed, and the range of split R-hat / ESS over the traced
    posterior summaries (the ESS proposal count is a cost, not a summary of the posterior)."""
    d = diagnostics[diagnostics["summary"] != "proposals"]
    samples = int(chunk_stats["samples"].sum())
    first = chunk_stats.iloc[0]
    return pd.DataFrame([{"population": "bayes_mcmc", "chains": int(first["chains"]), "samples": samples,
                          "thin": int(first["thin"]), "burn_in": int(first["burn_in"]), "init": first["init"],
                          "distinct_functions": raw["function"].nunique(),
                          "r_hat_min": float(d["r_hat"].min()), "r_hat_max": float(d["r_hat"].max()),
                          "ess_min": float(d["ess"].min()), "ess_max": float(d["ess"].max()),
                          "config_hash": first["config_hash"], "seed": int(first["seed"])}])


def coverage_table(joint: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Per setting: functions with >= threshold counts in both populations and the decades of P_B they span."""
    rows = []
    for setting, g in joint.groupby("setting", sort=False):
        both = g[(g["count_sgd"] >= threshold) & (g["count_bayes"] >= threshold)]
        rows.append({"setting": setting, "threshold": threshold, "functions_in_both": len(both),
                     "decades_bayes": stats.decades(both["p_bayes"].to_numpy()),
                     "decades_sgd": stats.decades(both["p_sgd"].to_numpy()),
                     "functions_seen": len(g)})
    return pd.DataFrame(rows)


def read_raw(raw_dir: Path, cfg: ExperimentConfig) -> dict:
    """The raw tables of every stage the config has (a missing one is an error naming the file)."""
    def read(name):
        path = raw_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} missing")
        return pd.read_csv(path, dtype={"function": str})

    enabled = {"bayes_rejection": cfg.rejection, "bayes_mcmc": cfg.mcmc, "nngp_exact": cfg.nngp}
    out = {"runs": read("sgd_runs.csv"), "sgd_chunks": read("sgd_chunks.csv"),
           "estimators": {k: read(f) for k, f in COUNT_ESTIMATORS.items() if enabled[k] is not None}}
    if cfg.rejection is not None:
        out["rejection_chunks"] = read("rejection_chunks.csv")
    if cfg.mcmc is not None:
        out["mcmc_diagnostics"], out["mcmc_chunks"] = read("mcmc_diagnostics.csv"), read("mcmc_chunks.csv")
    if cfg.nngp is not None:
        out["nngp_ep"], out["nngp_summary"] = read("nngp_ep.csv"), read("nngp_summary.csv")
    if cfg.geometry is not None:
        out["geometry"], out["geometry_identity"] = read("geometry.csv"), read("geometry_identity.csv")
        out["geometry_chunks"] = read("geometry_chunks.csv")
    if cfg.sweep is not None:
        out["sweep"] = read("sweep.csv")
    # wall-clock columns, split off by the stages (study.store.write_raw_table): costs, not results
    out["timings"] = {name: read(f"{name}_timings.csv") for name in TIMED if name in out}
    return out


TIMED = ("sgd_chunks", "rejection_chunks", "mcmc_chunks", "nngp_summary", "geometry_chunks")


def timing_table(raw: dict) -> pd.DataFrame:
    """Costs, kept apart from the results (they differ in every run): one row per stage (and SGD
    setting) with its work, wall-clock seconds, rate and, where counted, useful GFLOP/s."""
    t = raw["timings"]
    rows = []

    def row(stage, item, work, unit, seconds, flops=np.nan):
        rows.append({"stage": stage, "item": item, "work": work, "unit": unit, "seconds": seconds,
                     "rate": work / seconds, "useful_gflops": flops / seconds / 1e9})

    chunks = raw["sgd_chunks"].merge(t["sgd_chunks"], on=["setting", "chunk"])
    for setting, c in chunks.groupby("setting", sort=False):
        row("sgd", setting, int(c["runs"].sum()), "runs", float(c["seconds"].sum()), float(c["useful_flops"].sum()))
    if "rejection_chunks" in t:
        c = raw["rejection_chunks"]
        row("rejection", BAYES, int(c["draws"].sum()), "draws", float(t["rejection_chunks"]["seconds"].sum()),
            float(c["useful_flops"].sum()))
    if "mcmc_chunks" in t:
        row("mcmc", "bayes_mcmc", int(raw["mcmc_chunks"]["samples"].sum()), "samples",
            float(t["mcmc_chunks"]["seconds"].sum()))
    if "nngp_summary" in t:
        s, ts = raw["nngp_summary"].iloc[0], t["nngp_summary"].iloc[0]
        row("nngp_exact", s["exact_method"], int(s["exact_samples"]), "samples", float(ts["exact_seconds"]))
        row("nngp_ep", "ep", int(s["ep_functions"]), "functions",
            float(ts["ep_seconds_per_function"]) * max(1, int(s["ep_functions"])))
    if "geometry_chunks" in t:
        row("geometry", "points", int(raw["geometry_chunks"]["points"].sum()), "points",
            float(t["geometry_chunks"]["seconds"].sum()))
    return pd.DataFrame(rows)
