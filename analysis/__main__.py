"""python -m analysis --config configs/e1_quick.toml: raw populations -> tables + paper macros."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import ep_view, geometry, latex, sweep, tables
from analysis.macros import Macro, macro_name, provenance, render, source
from study.config import load_or_report
from study.network import build_network
from study.diagnostics import RHAT_THRESHOLD, TOP_FUNCTIONS_TRACED
from study.stages import geometry_reference
from study.store import atomic_write_csv, atomic_write_text, write_sidecar
from study.memory import input_shape
from study.tasks import task_from_config


def build(cfg, results: Path) -> Path:
    start = time.perf_counter()
    raw_dir = results / cfg.name / "raw"
    out_dir = results / cfg.name / "tables"
    raw = tables.read_raw(raw_dir, cfg)
    task = task_from_config(cfg.task, cfg.seed)
    runs, estimators = raw["runs"], raw["estimators"]
    ep = ep_complete = None
    ep_every_run = False  # did EP score every function a run or sample found (else the frequent ones only)?
    if "nngp_ep" in raw:
        # functions whose EP failed (counted in nngp_summary.ep_failed) have no log P_B: the set of
        # scored functions is then incomplete even where every function on E was enumerated
        scored = raw["nngp_ep"][raw["nngp_ep"]["ep_status"] == "converged"]
        ep = dict(zip(scored["function"], scored["log_p"]))
        ep_complete = bool(raw["nngp_summary"]["ep_enumerated"].iat[0]) and len(scored) == len(raw["nngp_ep"])
        ep_every_run = int(raw["nngp_summary"].get("ep_min_count", pd.Series([1])).iat[0]) == 1

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
           "coverage": coverage, "timings": tables.timing_table(raw, n_eff),
           "effective_sizes": tables.effective_size_table(n_eff)}
    if cfg.rejection is not None:
        out["sampler_summary"] = tables.sampler_summary(raw["rejection_chunks"], estimators[tables.BAYES],
                                                        n_eff[tables.BAYES])
    if cfg.mcmc is not None:
        out["mcmc_summary"] = tables.mcmc_summary(raw["mcmc_chunks"], raw["mcmc_diagnostics"], estimators, n_eff)
        out["mcmc_diagnostics"] = raw["mcmc_diagnostics"]
        out["mcmc_traces"] = tables.mcmc_traces_table(raw["mcmc_traces"], estimators, task)
    if len(estimators) > 1 or ep is not None:
        out["estimators"] = tables.estimator_table(estimators, ep, ep_complete, cfg, n_eff)
        out["pb_estimates"] = tables.pb_estimates(estimators, ep)
    if cfg.nngp is not None:
        out["nngp_summary"] = raw["nngp_summary"]
        if "log_p_predictive" in raw["nngp_ep"]:  # nngp.ep = "both": the predictive's accuracy
            out["ep_methods"] = ep_view.ep_methods_table(raw["nngp_ep"], estimators.get("nngp_exact"),
                                                         n_eff.get("nngp_exact", {}).get(None),
                                                         cfg.analysis.count_threshold)
    if ep is not None and "nngp_exact" in estimators:  # the scatter against EP, beside the posterior's own
        out["ep_scatter"] = ep_view.ep_scatter_table(runs, estimators, ep, cfg, n_eff)
    if ep is not None:  # how evenly each population finds the functions one test error from the target
        out["single_errors"] = ep_view.single_error_table(ep_view.populations(runs, estimators), ep, task)
    if ep is not None and ep_every_run:  # every run and posterior sample seen through EP's log P_B of its function
        out["ep_view"] = ep_view.ep_view_table(runs, estimators, ep, cfg, n_eff)
        out["ep_mass"] = ep_view.ep_mass_table(runs, estimators, ep)
        out["ep_summary"] = ep_view.ep_summary_table(runs, estimators, ep, ep_view.mean_test_error(functions))
        out["ep_trend"] = ep_view.ep_trend_table(functions, ep, np.random.default_rng(cfg.seed + 2),
                                                 cfg.analysis.bootstrap, cfg.analysis.confidence)
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
        # config_hash (where a table has one) is the hash of the stage whose rows it carries;
        # experiment_hash is the hash of the whole config the analysis read
        frame = frame.assign(experiment_hash=cfg.hash())
        atomic_write_csv(frame, out_dir / f"{name}.csv")
        write_sidecar(out_dir / f"{name}.csv", analysis_seconds=time.perf_counter() - start, seed=cfg.seed,
                      experiment_hash=cfg.hash())
    for stale in out_dir.glob("*.csv"):  # a table an earlier analysis wrote that this config has no more
        if stale.stem not in out:
            stale.unlink()
            stale.with_suffix(".json").unlink(missing_ok=True)

    prefix = macro_prefix(cfg)
    atomic_write_text(results / cfg.name / "settings_table.tex", latex.settings_table(runs_sum, agreement))
    macros = paper_macros(cfg, out) | latex.summary_macros(agreement)
    if cfg.geometry is not None:
        c = source("config")
        macros |= geometry.geometry_macros(out) | {
            "GeoPointsPerPopulation": c(cfg.geometry.points, "geometry.points"),
            "GeoDelta": c(cfg.geometry.delta, "geometry.delta"),
            "GeoMinPoints": c(cfg.analysis.geometry_min_points, "analysis.geometry_min_points"),
            "GeoRadiusMax": c(cfg.geometry.radius_max, "geometry.radius_max", f"{cfg.geometry.radius_max:g}"),
            "GeoDirections": c(cfg.geometry.directions, "geometry.directions")}
    if cfg.sweep is not None:
        macros |= sweep.sweep_macros(out["sweep_summary"], out["sweep_correlation"]) | {
            "SweepMinSteps": source("config")(cfg.sweep.min_steps, "sweep.min_steps"),
            "SweepSetting": source("config")(cfg.sweep.setting, "sweep.setting")}
    if "ep_scatter" in out:
        macros |= ep_view.ep_scatter_macros(out["ep_scatter"])
    if "single_errors" in out:
        macros |= ep_view.single_error_macros(out["single_errors"])
    if "ep_view" in out:
        macros |= ep_view.ep_macros(out["ep_view"], out["ep_summary"], out["ep_trend"])
        atomic_write_text(results / cfg.name / "ep_view_table.tex",
                          ep_view.ep_latex_table(runs_sum, out["ep_view"], out["ep_summary"]))
    if "estimators" in out:
        atomic_write_text(results / cfg.name / "estimators_table.tex", latex.estimators_table(out["estimators"]))
        macros |= latex.estimator_macros(out["estimators"], agreement)
    # costs in their own file, written first: macros.tex (written last) stands for the tables in make;
    # each .tex has a .csv beside it naming the table, row and column behind every macro
    for name, values in (("timing_macros", timing_macros(out["timings"])), ("macros", macros)):
        values = {prefix + k: v for k, v in values.items()}
        atomic_write_csv(provenance(values), results / cfg.name / f"{name}.csv")
        atomic_write_text(results / cfg.name / f"{name}.tex", render(values))
    return out_dir


def geometry_tables(cfg, raw: dict, joint: pd.DataFrame) -> dict[str, pd.DataFrame]:
    an = cfg.analysis
    rng = np.random.default_rng(cfg.seed)
    geom = geometry.mask_unconverged(raw["geometry"])
    reference = geometry_reference(cfg)
    fn = geometry.by_function(geom, joint, reference)
    fn["in_accessibility"] = geometry.in_accessibility(fn, an.count_threshold, an.geometry_min_points)
    m = cfg.task.m
    spectra = raw["geometry_identity"]
    # without dense Hessians (geometry.identity_points = 0: too many parameters) no identity tables
    identity = {} if cfg.geometry.identity_points == 0 else {
        "geometry_identity": geometry.identity_summary(spectra, m),
        "identity_spectra": spectra[(spectra["index"] < m + 5) & spectra["reached"].astype(bool)].drop(
            columns=["config_hash", "seed"])}
    return {**identity,
            "geometry_points": geom,
            "hessian_failures": geometry.hessian_failures(raw["geometry"]),
            "radius_censoring": geometry.radius_censoring(geom),
            "geometry_summary": geometry.population_summary(geom),
            "geometry_compare": geometry.compare_populations(geom, reference, rng, an.bootstrap, an.confidence),
            "geometry_by_function": fn,
            "geometry_paired": geometry.paired_by_function(fn, an.geometry_min_points),
            "accessibility": geometry.accessibility(fn, an.count_threshold, an.geometry_min_points, rng,
                                                    an.bootstrap, an.confidence),
            "geometry_cost": pd.DataFrame([{
                "points": int(raw["geometry_chunks"]["points"].sum()), "n_params": int(geom["n_params"].iat[0])}])}


def macro_prefix(cfg) -> str:
    """Macros are prefixed by the experiment (e1_quick -> Eone), so one paper can read several."""
    return macro_name(cfg.name.split("_")[0])


def mixed_text(mixed: bool) -> str:
    """How the paper says whether chains mixed."""
    return "mixed" if mixed else "not mixed"


def paper_macros(cfg, out: dict) -> dict[str, Macro]:
    runs_sum, agreement, coverage = out["runs_summary"], out["agreement"], out["coverage"]
    c, an = source("config"), cfg.analysis
    t, shape = cfg.task, input_shape(cfg.task)
    # the layers as "7-40-40-1", with an image's rows x cols first and each convolution as c<channels>
    layers = ["x".join(str(d) for d in shape[:-1]) if t.kind != "boolean" else str(t.n),
              *(f"c{ch}" for ch in cfg.network.conv_channels), *(str(w) for w in cfg.network.widths), "1"]
    m = {"ExperimentName": c(cfg.name, "name"), "TaskM": c(t.m, "task.m"), "TaskNTest": c(t.n_test, "task.n_test"),
         "TaskKind": c(t.kind, "task.kind"),
         **({"TaskN": c(t.n, "task.n"), "TaskTarget": c(t.target, "task.target")} if t.kind == "boolean" else
            {"TaskLabels": c(t.labels, "task.labels")}),
         "NetWidths": c("-".join(layers), "task input shape, network.conv_channels, network.widths, 1"),
         "SigmaW": c(cfg.network.sigma_w, "network.sigma_w"), "SigmaB": c(cfg.network.sigma_b, "network.sigma_b"),
         "Seed": c(cfg.seed, "seed"), "CountThreshold": c(an.count_threshold, "analysis.count_threshold"),
         "Bootstrap": c(an.bootstrap, "analysis.bootstrap"),
         "ConfidencePct": c(int(round(100 * an.confidence)), "100 * analysis.confidence"),
         "NumSettings": source("runs_summary.csv")(len(runs_sum), "number of rows"),
         "MatchedReps": c(an.matched_reps, "analysis.matched_reps"),
         "Permutations": c(an.permutations, "analysis.permutations"),
         "ChainThin": source("code")(tables.THIN, "analysis.tables.THIN"),
         "TracedFunctions": source("code")(TOP_FUNCTIONS_TRACED, "study.diagnostics.TOP_FUNCTIONS_TRACED"),
         "Reference": c(cfg.reference, "reference (rejection if run, else MCMC, else the exact NNGP sample)", latex.ESTIMATOR_NAMES[cfg.reference])}
    if "sampler_summary" in out:
        s, src = out["sampler_summary"].iloc[0], source("sampler_summary.csv")
        m |= {"RejDraws": src(int(s["draws"]), "draws"), "RejAccepted": src(int(s["accepted"]), "accepted"),
              "RejAcceptance": src(float(s["acceptance"]), "acceptance"),
              "RejDistinct": src(int(s["distinct_functions"]), "distinct_functions"),
              "RejReadouts": src(int(s["readouts"]), "readouts"),
              "RejHiddenDraws": src(int(s["hidden_draws"]), "hidden_draws"),
              "RejDesignEffect": src(float(s["design_effect_max"]), "design_effect_max"),
              "RejDesignEffectMedian": src(float(s["design_effect_median"]), "design_effect_median"),
              "RejNEff": src(int(s["n_eff"]), "n_eff")}
        net = build_network(cfg.network, shape)
        m["RejReadoutShare"] = source("code")(round(100 * net.n_features / net.macs_per_input, 1),
                                              "study.network: 100 * n_features / macs_per_input")
    if "mcmc_summary" in out:
        for r in out["mcmc_summary"].itertuples():  # bayes_mcmc -> Mcmc..., bayes_mcmc_from_sgd -> McmcFromSgd...
            k = lambda *p: macro_name("Mcmc", r.population.removeprefix("bayes_mcmc"), *p)
            src = source("mcmc_summary.csv", population=r.population)
            m |= {k("Chains"): src(int(r.chains), "chains"), k("Samples"): src(int(r.samples), "samples"),
                  k("Thin"): src(int(r.thin), "thin"), k("BurnIn"): src(int(r.burn_in), "burn_in"),
                  k("Distinct"): src(int(r.distinct_functions), "distinct_functions"),
                  k("RhatMax"): src(float(r.r_hat_max), "r_hat_max"),
                  k("RhatFunctionsMax"): src(float(r.r_hat_functions_max), "r_hat_functions_max"),
                  k("EssFunctionsMin"): src(int(r.ess_bulk_functions_min), "ess_bulk_functions_min"),
                  k("EssTailFunctionsMin"): src(int(r.ess_tail_functions_min), "ess_tail_functions_min"),
                  k("NEff"): src(int(r.n_eff), "n_eff"),
                  k("NEffHalf"): src(int(min(r.n_eff_half_a, r.n_eff_half_b)), "min of n_eff_half_a, n_eff_half_b"),
                  k("Mixed"): src(bool(r.mixed), "mixed", mixed_text(r.mixed)),
                  k("Init"): src(r.init, "init")}
    if "nngp_summary" in out:
        s, src = out["nngp_summary"].iloc[0], source("nngp_summary.csv")
        m |= {"NngpLogPSEp": src(float(s["log_p_s_ep"]), "log_p_s_ep"),
              "NngpLogPSExact": src(float(s["log_p_s_exact"]), "log_p_s_exact"),
              "NngpEpFunctions": src(int(s["ep_functions"]), "ep_functions"),
              "NngpEpFailed": src(int(s["ep_failed"]), "ep_failed"),
              "NngpEpMinCount": src(int(s.get("ep_min_count", 1)), "ep_min_count"),
              "NngpEpSum": src(float(s["ep_probability_sum"]), "ep_probability_sum"),
              "NngpExactAccepted": src(int(s["exact_samples"]), "exact_samples"),
              "NngpExactRhatMax": src(float(s.get("exact_r_hat_max", float("nan"))), "exact_r_hat_max"),
              "NngpEpMethod": src(s["ep_method"], "ep_method")}
        if cfg.nngp.exact == "ess":  # the exact sampler's chains, as configured, and whether they mixed
            mixed = tables.mixed(s["exact_r_hat_max"])
            m |= {"NngpChains": c(cfg.nngp.chains, "nngp.chains"), "NngpBurnIn": c(cfg.nngp.burn_in, "nngp.burn_in"),
                  "NngpThin": c(cfg.nngp.thin, "nngp.thin"),
                  "NngpExactMixed": src(mixed, f"exact_r_hat_max <= {RHAT_THRESHOLD}", mixed_text(mixed))}
    if "ep_methods" in out:
        for r in out["ep_methods"].itertuples():
            k, src = lambda *p: macro_name("EpMethods", r.comparison, *p), source("ep_methods.csv", comparison=r.comparison)
            m |= {k("Functions"): src(int(r.functions), "functions"), k("MeanDiff"): src(float(r.mean_diff), "mean_diff"),
                  k("SdDiff"): src(float(r.sd_diff), "sd_diff"), k("MaxAbsDiff"): src(float(r.max_abs_diff), "max_abs_diff"),
                  k("MeanAbsDiff"): src(float(r.mean_abs_diff), "mean_abs_diff"), k("Floor"): src(float(r.floor), "floor")}
            if r.comparison == "predictive_vs_ratio":
                m |= {k("Spearman"): src(float(r.spearman), "spearman"), k("Decades"): src(float(r.decades), "decades")}
    for r in runs_sum.itertuples():
        k, src = lambda *p: macro_name(r.setting, *p), source("runs_summary.csv", setting=r.setting)
        m |= {k("Runs"): src(int(r.runs), "runs"), k("Fitted"): src(int(r.fitted), "fitted"),
              k("NotFitted"): src(int(r.not_fitted), "not_fitted"), k("MeanSteps"): src(float(r.mean_steps), "mean_steps"),
              k("Distinct"): src(int(r.distinct_functions), "distinct_functions"), k("Lr"): src(float(r.lr), "lr")}
    m["SgdTotalRuns"] = source("runs_summary.csv")(int(runs_sum["runs"].sum()), "sum of runs")
    m["SgdTotalNotFitted"] = source("runs_summary.csv")(int(runs_sum["not_fitted"].sum()), "sum of not_fitted")
    for r in agreement.itertuples():
        k = lambda *p: macro_name(r.comparison, r.setting, r.statistic, *p)
        src = source("agreement.csv", comparison=r.comparison, setting=r.setting, statistic=r.statistic)
        value = int(r.value) if r.statistic == "n_common" and pd.notna(r.value) else float(r.value)
        if r.comparison == "sgd_vs_bayes":  # matched: comparison, floor and effect at one n
            m |= {k(): src(value, "value"), k("Floor"): src(float(r.floor), "floor"),
                  k("Effect"): src(float(r.effect), "effect"), k("EffectLo"): src(float(r.effect_low), "effect_low"),
                  k("EffectHi"): src(float(r.effect_high), "effect_high")}
            kk = lambda *p: macro_name(r.comparison, r.setting, *p)
            m |= {kk("N"): src(int(r.n_a), "n_a"), kk("PValue"): src(float(r.p_value), "p_value"),
                  kk("QValue"): src(float(r.q_value), "q_value")}
        else:  # against EP's computed P_B: the statistic with its bootstrap interval
            m |= {k(): src(value, "value"), k("Lo"): src(float(r.ci_low), "ci_low"),
                  k("Hi"): src(float(r.ci_high), "ci_high")}
    for r in coverage.itertuples():
        src = source("coverage.csv", setting=r.setting)
        m[macro_name(r.setting, "InBoth")] = src(int(r.functions_in_both), "functions_in_both")
        m[macro_name(r.setting, "Decades")] = src(float(r.decades_bayes), "decades_bayes")
    m["MinInBoth"] = source("coverage.csv")(int(coverage["functions_in_both"].min()), "min of functions_in_both")
    m["MinDecades"] = source("coverage.csv")(float(coverage["decades_bayes"].min()), "min of decades_bayes")
    return m


def timing_macros(timings: pd.DataFrame) -> dict[str, Macro]:
    """The paper's cost figures (timing_macros.tex), apart from its results (macros.tex): they
    change from run to run and machine to machine."""
    m = {}
    for r in timings.itertuples():
        src = source("timings.csv", stage=r.stage, item=r.item)
        if r.stage == "sgd":
            m[macro_name(r.item, "RunsPerSecond")] = src(int(round(r.rate)), "rate")
        elif r.stage == "rejection" and r.item == "effective":
            m["RejEffectivePerSecond"] = src(int(round(r.rate)), "rate")
        elif r.stage == "rejection":
            m |= {"RejDrawsPerSecond": src(int(round(r.rate)), "rate"),
                  "RejMinutes": src(float(r.seconds / 60), "seconds / 60")}
        elif r.stage == "mcmc":
            m["McmcSamplesPerSecond"] = src(int(round(r.rate)), "rate")
        elif r.stage == "nngp_ep":  # item "ep": the method used; "predictive": scored beside it
            name = "NngpEpMsPerFunction" if r.item == "ep" else macro_name("NngpEp", r.item, "MsPerFunction")
            m[name] = src(float(1e3 / r.rate), "1000 / rate")
        elif r.stage == "geometry":
            m["GeoMsPerPoint"] = src(float(1e3 / r.rate), "1000 / rate")
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
        print(f"error: {err}; run `python -m study run --config {args.config}` first", file=sys.stderr)
        return 2
    print(f"wrote tables to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
