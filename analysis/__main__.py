"""python -m analysis --config configs/e1_quick.toml: raw populations -> tables + paper macros."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from analysis import latex, tables
from analysis.macros import macro_name, render
from study.cli import load_or_report
from study.store import atomic_write_csv, atomic_write_text, write_sidecar
from study.tasks import make_task


def build(cfg, results: Path) -> Path:
    start = time.perf_counter()
    raw_dir = results / cfg.name / "raw"
    out_dir = results / cfg.name / "tables"
    raw = tables.read_raw(raw_dir)
    t = cfg.task
    task = make_task(t.n, t.target, t.m, t.n_test, cfg.seed)
    runs, bayes_raw = raw["runs"], raw["bayes"]

    bayes = tables.bayes_counts(bayes_raw)
    functions = [tables.function_table(bayes, tables.BAYES, task)]
    joints = []
    for setting, group in runs.groupby("setting", sort=False):
        counts = tables.sgd_counts(group)
        if counts:
            functions.append(tables.function_table(counts, setting, task))
        joints.append(tables.joint_table(counts, bayes, setting, task))
    functions = pd.concat(functions, ignore_index=True)
    joint = pd.concat(joints, ignore_index=True)
    agreement = tables.agreement_table(runs, bayes_raw, cfg)
    runs_sum = tables.runs_summary(runs, raw["sgd_chunks"])
    sampler = tables.sampler_summary(raw["rejection_chunks"], bayes_raw)
    coverage = tables.coverage_table(joint, cfg.analysis.count_threshold)

    provenance = {"seed": cfg.seed, "rejection_config_hash": sampler["config_hash"].iat[0]}
    for name, frame in [("functions", functions), ("joint", joint), ("agreement", agreement),
                        ("runs_summary", runs_sum), ("sampler_summary", sampler), ("coverage", coverage)]:
        if "seed" not in frame:
            frame = frame.assign(seed=cfg.seed, rejection_config_hash=provenance["rejection_config_hash"])
        atomic_write_csv(frame, out_dir / f"{name}.csv")
        write_sidecar(out_dir / f"{name}.csv", analysis_seconds=time.perf_counter() - start, **provenance)

    atomic_write_text(results / cfg.name / "settings_table.tex", latex.settings_table(runs_sum, agreement))
    macros = paper_macros(cfg, task, sampler, runs_sum, agreement, coverage) | latex.summary_macros(agreement)
    atomic_write_text(results / cfg.name / "macros.tex", render(macros))
    return out_dir


def paper_macros(cfg, task, sampler, runs_sum, agreement, coverage) -> dict:
    s = sampler.iloc[0]
    m = {"ExperimentName": cfg.name.replace("_", r"\_"), "TaskN": cfg.task.n, "TaskM": cfg.task.m,
         "TaskNTest": cfg.task.n_test, "TaskTarget": cfg.task.target.replace("_", r"\_"),
         "NetWidths": "-".join(str(w) for w in (cfg.task.n, *cfg.network.widths, 1)),
         "SigmaW": cfg.network.sigma_w, "SigmaB": cfg.network.sigma_b, "Seed": cfg.seed,
         "CountThreshold": cfg.analysis.count_threshold, "Bootstrap": cfg.analysis.bootstrap,
         "ConfidencePct": int(round(100 * cfg.analysis.confidence)),
         "RejDraws": int(s["draws"]), "RejAccepted": int(s["accepted"]), "RejAcceptance": float(s["acceptance"]),
         "RejDistinct": int(s["distinct_functions"]), "RejDrawsPerSecond": int(round(s["draws_per_second"])),
         "RejMinutes": float(s["seconds"] / 60), "NumSettings": len(runs_sum)}
    for r in runs_sum.itertuples():
        k = lambda *p: macro_name(r.setting, *p)
        m |= {k("Runs"): int(r.runs), k("Fitted"): int(r.fitted), k("NotFitted"): int(r.not_fitted),
              k("MeanSteps"): float(r.mean_steps), k("Distinct"): int(r.distinct_functions),
              k("RunsPerSecond"): int(round(r.runs_per_second)), k("Lr"): float(r.lr)}
    m["SgdTotalRuns"] = int(runs_sum["runs"].sum())
    m["SgdTotalNotFitted"] = int(runs_sum["not_fitted"].sum())
    for r in agreement.itertuples():
        k = lambda *p: macro_name(r.comparison, r.setting, r.statistic, *p)
        m |= {k(): float(r.value), k("Lo"): float(r.ci_low), k("Hi"): float(r.ci_high)}
        if r.statistic == "n_common":
            m[k()] = int(r.value)
    half = agreement[agreement["comparison"] == "bayes_vs_bayes"]
    m["BayesHalfSize"] = int(half["n_a"].iat[0])
    for r in coverage.itertuples():
        m[macro_name(r.setting, "InBoth")] = int(r.functions_in_both)
        m[macro_name(r.setting, "Decades")] = float(r.decades_bayes)
    m["MinInBoth"] = int(coverage["functions_in_both"].min())
    m["MinDecades"] = float(coverage["decades_bayes"].min())
    return m


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    try:
        out = build(cfg, Path(args.results))
    except FileNotFoundError as err:
        print(f"error: {err}; run `python -m study sample/train --config {args.config}` first", file=sys.stderr)
        return 2
    print(f"wrote tables to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
