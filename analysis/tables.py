"""Raw populations -> tidy tables: functions per population, the joint table of both
populations, agreement statistics against the Bayes-vs-Bayes noise floor, run summaries."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import stats
from study.config import ExperimentConfig
from study.encoding import hex_to_bits
from study.tasks import Task, seen_table_lz

BAYES = "bayes_rejection"


def function_table(counts: dict[str, int], population: str, task: Task) -> pd.DataFrame:
    """One row per function: count, probability, test error on E and LZ complexity of the seen table."""
    total = sum(counts.values())
    rows = []
    for function, count in counts.items():
        bits = hex_to_bits(function, len(task.test_idx))
        rows.append({"population": population, "function": function, "count": int(count),
                     "probability": count / total, "test_error": float(np.mean(bits != task.y_test)),
                     "lz": seen_table_lz(task, bits)})
    return pd.DataFrame(rows).sort_values("count", ascending=False, ignore_index=True)


def bayes_counts(raw: pd.DataFrame, chunks=None) -> dict[str, int]:
    if chunks is not None:
        raw = raw[raw["chunk"].isin(chunks)]
    return raw.groupby("function")["count"].sum().astype(int).to_dict()


def sgd_counts(runs: pd.DataFrame) -> dict[str, int]:
    return runs.loc[runs["fitted"], "function"].value_counts().astype(int).to_dict()


def joint_table(sgd: dict[str, int], bayes: dict[str, int], setting: str, task: Task) -> pd.DataFrame:
    keys, a, b = stats.align(sgd, bayes)
    frame = pd.DataFrame({"setting": setting, "function": keys, "count_sgd": a, "count_bayes": b,
                          "p_sgd": a / a.sum(), "p_bayes": b / b.sum()})
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


def agreement_table(runs: pd.DataFrame, raw_bayes: pd.DataFrame, cfg: ExperimentConfig) -> pd.DataFrame:
    """SGD vs Bayes (full samples, and SGD subsampled to the size of one Bayes half) next to the
    noise floor: Bayes half A (even chunks) vs Bayes half B (odd chunks), independent draws."""
    rng = np.random.default_rng([cfg.seed, 0xA6])
    chunks = sorted(raw_bayes["chunk"].unique())
    half_a, half_b = bayes_counts(raw_bayes, chunks[0::2]), bayes_counts(raw_bayes, chunks[1::2])
    full = bayes_counts(raw_bayes)
    n_half = sum(half_a.values())
    frames = [compare("bayes_vs_bayes", "noise_floor", half_a, half_b, cfg, rng)]
    for setting, group in runs.groupby("setting", sort=False):
        fitted = group[group["fitted"]].sort_values("run_id")
        frames.append(compare("sgd_vs_bayes", setting, sgd_counts(fitted), full, cfg, rng))
        frames.append(compare("sgd_vs_bayes_matched", setting, sgd_counts(fitted.head(n_half)), half_b, cfg, rng))
    return pd.concat(frames, ignore_index=True)


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
                     "seconds": float(c["seconds"].sum()), "runs_per_second": len(g) / float(c["seconds"].sum()),
                     "useful_gflops": float(c["useful_flops"].sum() / c["seconds"].sum() / 1e9),
                     "config_hash": g["config_hash"].iat[0], "seed": int(g["seed"].iat[0])})
    return pd.DataFrame(rows)


def sampler_summary(chunk_stats: pd.DataFrame, raw_bayes: pd.DataFrame) -> pd.DataFrame:
    draws, accepted, seconds = (int(chunk_stats["draws"].sum()), int(chunk_stats["accepted"].sum()),
                                float(chunk_stats["seconds"].sum()))
    return pd.DataFrame([{"population": BAYES, "draws": draws, "accepted": accepted,
                          "acceptance": accepted / draws, "distinct_functions": raw_bayes["function"].nunique(),
                          "chunks": len(chunk_stats), "seconds": seconds, "draws_per_second": draws / seconds,
                          "useful_gflops": float(chunk_stats["useful_flops"].sum()) / seconds / 1e9,
                          "config_hash": chunk_stats["config_hash"].iat[0], "seed": int(chunk_stats["seed"].iat[0])}])


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


def read_raw(raw_dir: Path) -> dict[str, pd.DataFrame]:
    read = lambda name: pd.read_csv(raw_dir / name, dtype={"function": str})
    return {"bayes": read("bayes_counts.csv"), "rejection_chunks": read("rejection_chunks.csv"),
            "runs": read("sgd_runs.csv"), "sgd_chunks": read("sgd_chunks.csv"),
            "sidecars": {p.stem: json.loads(p.read_text()) for p in raw_dir.glob("*.json")}}
