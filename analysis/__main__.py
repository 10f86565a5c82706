"""python -m analysis --config configs/e1_quick.toml: raw populations -> tables + paper macros."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import geometry, latex, sweep, tables
from analysis.macros import macro_name, render
from study.cli import load_or_report
from study.diagnostics import TOP_FUNCTIONS_TRACED
from study.store import atomic_write_csv, atomic_write_text, write_sidecar
from study.tasks import make_task


def build(cfg, results: Path) -> Path:
    start = time.perf_counter()
    raw_dir = results / cfg.name / "raw"
    out_dir = results / cfg.name / "tables"
    raw = tables.read_raw(raw_dir, cfg)
    t = cfg.task
    task = make_task(t.n, t.target, t.m, t.n_test, cfg.seed)
    runs, estimators = raw["runs"], raw["estimators"]
    ep = ep_complete = None
    if "nngp_ep" in raw:
        # functions whose EP failed (counted in nngp_summary.ep_failed) have no log P_B: the set of
        # scored functions is then incomplete even where every function on E was enumerated
        scored = raw["nngp_ep"][raw["nngp_ep"]["ep_status"] == "converged"]
        ep = dict(zip(scored["function"], scored["log_p"]))
        ep_complete = bool(raw["nngp_summary"]["ep_enumerated"].iat[0]) and len(scored) == len(raw["nngp_ep"])

    bayes = tables.bayes_counts(estimators[cfg.reference])
    functions = [tables.function_table(tables.bayes_counts(r), name, task) for name, r in estimators.items()]
    joints = []
    for setting, group in runs.groupby("setting", sort=False):
        counts = tables.sgd_counts(group)
        if counts:
            functions.append(tables.function_table(counts, setting, task))
        joints.append(tables.joint_table(counts, bayes, setting, task, cfg.reference, ep))
    functions = pd.concat(functions, ignore_index=True)
    joint = pd.concat(joints, ignore_index=True)
    n_eff = tables.effective_sizes(raw, cfg)
    agreement = tables.agreement_table(runs, estimators, ep, ep_complete, cfg, n_eff)
    runs_sum = tables.runs_summary(runs, raw["sgd_chunks"])
    coverage = tables.coverage_table(joint, cfg.analysis.count_threshold)
    out = {"functions": functions, "joint": joint, "agreement": agreement, "runs_summary": runs_sum,
           "coverage": coverage, "timings": tables.timing_table(raw),
           "effective_sizes": tables.effective_size_table(n_eff)}
    if cfg.rejection is not None:
        out["sampler_summary"] = tables.sampler_summary(raw["rejection_chunks"], estimators[tables.BAYES])
    if cfg.mcmc is not None:
        out["mcmc_summary"] = tables.mcmc_summary(raw["mcmc_chunks"], raw["mcmc_diagnostics"], estimators, n_eff)
        out["mcmc_diagnostics"] = raw["mcmc_diagnostics"]
        out["mcmc_traces"] = tables.mcmc_traces_table(raw["mcmc_traces"], estimators, task)
    if len(estimators) > 1 or ep is not None:
        out["estimators"] = tables.estimator_table(estimators, ep, ep_complete, cfg, n_eff)
        out["pb_estimates"] = tables.pb_estimates(estimators, ep)
    if cfg.nngp is not None:
        out["nngp_summary"] = raw["nngp_summary"]
    if cfg.geometry is not None:
        out |= geometry_tables(cfg, raw, joint)
    if cfg.sweep is not None:
        rng = np.random.default_rng(cfg.seed + 1)
        out["sweep_points"] = sweep.with_derived(raw["sweep"])
        out["sweep_summary"] = sweep.sweep_summary(out["sweep_points"])
        out["sweep_correlation"] = sweep.sweep_correlation(out["sweep_points"], rng, cfg.analysis.bootstrap,
                                                           cfg.analysis.confidence)

    for name, frame in out.items():
        if "seed" not in frame:
            frame = frame.assign(seed=cfg.seed)
        if "config_hash" not in frame:
            frame = frame.assign(config_hash=cfg.hash())
        atomic_write_csv(frame, out_dir / f"{name}.csv")
        write_sidecar(out_dir / f"{name}.csv", analysis_seconds=time.perf_counter() - start, seed=cfg.seed,
                      config_hash=cfg.hash())

    prefix = macro_prefix(cfg)
    atomic_write_text(results / cfg.name / "settings_table.tex", latex.settings_table(runs_sum, agreement))
    macros = paper_macros(cfg, out) | latex.summary_macros(agreement)
    if cfg.geometry is not None:
        macros |= geometry.geometry_macros(out) | {"GeoPointsPerPopulation": cfg.geometry.points,
                                                   "GeoDelta": cfg.geometry.delta,
                                                   "GeoMinPoints": cfg.analysis.geometry_min_points,
                                                   "GeoRadiusMax": f"{cfg.geometry.radius_max:g}",
                                                   "GeoDirections": cfg.geometry.directions}
    if cfg.sweep is not None:
        macros |= sweep.sweep_macros(out["sweep_summary"], out["sweep_correlation"]) | {
            "SweepMinSteps": cfg.sweep.min_steps, "SweepSetting": cfg.sweep.setting.replace("_", r"\_")}
    if "estimators" in out:
        atomic_write_text(results / cfg.name / "estimators_table.tex", latex.estimators_table(out["estimators"]))
        macros |= latex.estimator_macros(out["estimators"], agreement)
    # costs in their own file, written first: macros.tex (written last) stands for the tables in make
    atomic_write_text(results / cfg.name / "timing_macros.tex",
                      render({prefix + k: v for k, v in timing_macros(out["timings"]).items()}))
    atomic_write_text(results / cfg.name / "macros.tex", render({prefix + k: v for k, v in macros.items()}))
    return out_dir


def geometry_tables(cfg, raw: dict, joint: pd.DataFrame) -> dict[str, pd.DataFrame]:
    an = cfg.analysis
    rng = np.random.default_rng(cfg.seed)
    geom = geometry.mask_unconverged(raw["geometry"])
    fn = geometry.by_function(geom, joint, cfg.reference)
    fn["in_accessibility"] = geometry.in_accessibility(fn, an.count_threshold, an.geometry_min_points)
    m = cfg.task.m
    spectra = raw["geometry_identity"]
    return {"geometry_identity": geometry.identity_summary(spectra, m),
            "identity_spectra": spectra[(spectra["index"] < m + 5) & spectra["reached"].astype(bool)].drop(
                columns=["config_hash", "seed"]),
            "geometry_points": geom,
            "hessian_failures": geometry.hessian_failures(raw["geometry"]),
            "radius_censoring": geometry.radius_censoring(geom),
            "geometry_summary": geometry.population_summary(geom),
            "geometry_compare": geometry.compare_populations(geom, cfg.reference, rng, an.bootstrap, an.confidence),
            "geometry_by_function": fn,
            "geometry_paired": geometry.paired_by_function(fn, an.geometry_min_points),
            "accessibility": geometry.accessibility(fn, an.count_threshold, an.geometry_min_points, rng,
                                                    an.bootstrap, an.confidence),
            "geometry_cost": pd.DataFrame([{
                "points": int(raw["geometry_chunks"]["points"].sum()), "n_params": int(geom["n_params"].iat[0])}])}


def macro_prefix(cfg) -> str:
    """Macros are prefixed by the experiment (e1_quick -> Eone), so one paper can read several."""
    return macro_name(cfg.name.split("_")[0])


def paper_macros(cfg, out: dict) -> dict:
    runs_sum, agreement, coverage = out["runs_summary"], out["agreement"], out["coverage"]
    m = {"ExperimentName": cfg.name.replace("_", r"\_"), "TaskN": cfg.task.n, "TaskM": cfg.task.m,
         "TaskNTest": cfg.task.n_test, "TaskTarget": cfg.task.target.replace("_", r"\_"),
         "NetWidths": "-".join(str(w) for w in (cfg.task.n, *cfg.network.widths, 1)),
         "SigmaW": cfg.network.sigma_w, "SigmaB": cfg.network.sigma_b, "Seed": cfg.seed,
         "CountThreshold": cfg.analysis.count_threshold, "Bootstrap": cfg.analysis.bootstrap,
         "ConfidencePct": int(round(100 * cfg.analysis.confidence)), "NumSettings": len(runs_sum),
         "MatchedReps": cfg.analysis.matched_reps, "Permutations": cfg.analysis.permutations,
         "ChainThin": tables.THIN, "TracedFunctions": TOP_FUNCTIONS_TRACED,
         "Reference": latex.ESTIMATOR_NAMES[cfg.reference]}
    if "sampler_summary" in out:
        s = out["sampler_summary"].iloc[0]
        m |= {"RejDraws": int(s["draws"]), "RejAccepted": int(s["accepted"]), "RejAcceptance": float(s["acceptance"]),
              "RejDistinct": int(s["distinct_functions"])}
    if "mcmc_summary" in out:
        for r in out["mcmc_summary"].itertuples():  # bayes_mcmc -> Mcmc..., bayes_mcmc_from_sgd -> McmcFromSgd...
            k = lambda *p: macro_name("Mcmc", r.population.removeprefix("bayes_mcmc"), *p)
            m |= {k("Chains"): int(r.chains), k("Samples"): int(r.samples), k("Thin"): int(r.thin),
                  k("BurnIn"): int(r.burn_in), k("Distinct"): int(r.distinct_functions),
                  k("RhatMax"): float(r.r_hat_max), k("RhatFunctionsMax"): float(r.r_hat_functions_max),
                  k("EssFunctionsMin"): int(r.ess_bulk_functions_min),
                  k("EssTailFunctionsMin"): int(r.ess_tail_functions_min),
                  k("NEff"): int(r.n_eff), k("NEffHalf"): int(min(r.n_eff_half_a, r.n_eff_half_b)),
                  k("Mixed"): "mixed" if r.mixed else "not mixed", k("Init"): r.init.replace("_", r"\_")}
    if "nngp_summary" in out:
        s = out["nngp_summary"].iloc[0]
        m |= {"NngpLogPSEp": float(s["log_p_s_ep"]), "NngpLogPSExact": float(s["log_p_s_exact"]),
              "NngpEpFunctions": int(s["ep_functions"]), "NngpEpFailed": int(s["ep_failed"]),
              "NngpEpSum": float(s["ep_probability_sum"]),
              "NngpExactAccepted": int(s["exact_samples"]),
              "NngpExactRhatMax": float(s.get("exact_r_hat_max", float("nan")))}
    for r in runs_sum.itertuples():
        k = lambda *p: macro_name(r.setting, *p)
        m |= {k("Runs"): int(r.runs), k("Fitted"): int(r.fitted), k("NotFitted"): int(r.not_fitted),
              k("MeanSteps"): float(r.mean_steps), k("Distinct"): int(r.distinct_functions), k("Lr"): float(r.lr)}
    m["SgdTotalRuns"] = int(runs_sum["runs"].sum())
    m["SgdTotalNotFitted"] = int(runs_sum["not_fitted"].sum())
    for r in agreement.itertuples():
        k = lambda *p: macro_name(r.comparison, r.setting, r.statistic, *p)
        value = int(r.value) if r.statistic == "n_common" and pd.notna(r.value) else float(r.value)
        if r.comparison == "sgd_vs_bayes":  # matched: comparison, floor and effect at one n
            m |= {k(): value, k("Floor"): float(r.floor), k("Effect"): float(r.effect),
                  k("EffectLo"): float(r.effect_low), k("EffectHi"): float(r.effect_high)}
            kk = lambda *p: macro_name(r.comparison, r.setting, *p)
            m |= {kk("N"): int(r.n_a), kk("PValue"): float(r.p_value), kk("QValue"): float(r.q_value)}
        else:  # against EP's computed P_B: the statistic with its bootstrap interval
            m |= {k(): value, k("Lo"): float(r.ci_low), k("Hi"): float(r.ci_high)}
    for r in coverage.itertuples():
        m[macro_name(r.setting, "InBoth")] = int(r.functions_in_both)
        m[macro_name(r.setting, "Decades")] = float(r.decades_bayes)
    m["MinInBoth"] = int(coverage["functions_in_both"].min())
    m["MinDecades"] = float(coverage["decades_bayes"].min())
    return m


def timing_macros(timings: pd.DataFrame) -> dict:
    """The paper's cost figures (timing_macros.tex), apart from its results (macros.tex): they
    change from run to run and machine to machine."""
    m = {}
    for r in timings.itertuples():
        if r.stage == "sgd":
            m[macro_name(r.item, "RunsPerSecond")] = int(round(r.rate))
        elif r.stage == "rejection":
            m |= {"RejDrawsPerSecond": int(round(r.rate)), "RejMinutes": float(r.seconds / 60)}
        elif r.stage == "mcmc":
            m["McmcSamplesPerSecond"] = int(round(r.rate))
        elif r.stage == "nngp_ep":
            m["NngpEpMsPerFunction"] = float(1e3 / r.rate)
        elif r.stage == "geometry":
            m["GeoMsPerPoint"] = float(1e3 / r.rate)
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
