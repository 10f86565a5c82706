"""Populations seen through EP's log P_B, for large |E| where most functions are seen once.

When |E| = 96 nearly every SGD run finds a function of its own, so a comparison of counts per
function says little. Every function a population found has EP's log P_B(f|S) (the nngp stage
scores them all), so each run or posterior sample becomes one number, and two populations are
compared through its distribution: their masses in bins of log10 P_B (one decade wide), the shift
of its mean, and the Kolmogorov-Smirnov distance (analysis.stats.ep_view). Each comparison sits
beside the reference posterior's own noise floor at the same sample size (tables.matched), the
same way as the comparisons per function.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats
from analysis.macros import fmt, macro_name, source
from analysis.tables import (bayes_counts, ep_correlations, ep_ranked, matched, sgd_counts, unavailable,
                             with_q_values)
from study.config import ExperimentConfig
from study.encoding import bits_to_hex
from study.tasks import Task

BIN_DECADES = 1.0  # width of the bins of log10 P_B


def log10_scores(ep: dict[str, float], functions) -> np.ndarray:
    """EP's log10 P_B of each function; NaN for a function EP did not score (its EP failed)."""
    return np.array([ep.get(f, np.nan) for f in functions], float) / np.log(10)


def populations(runs: pd.DataFrame, estimators: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Counts per function of every SGD setting (fitted runs) and every sampled posterior."""
    out = {s: sgd_counts(g) for s, g in runs.groupby("setting", sort=False)}
    return out | {name: bayes_counts(raw) for name, raw in estimators.items()}


def ep_view_table(runs: pd.DataFrame, estimators: dict[str, pd.DataFrame], ep: dict[str, float],
                  cfg: ExperimentConfig, n_eff: dict[str, dict]) -> pd.DataFrame:
    """Every SGD setting against the reference posterior and the exact NNGP posterior, through EP's
    log10 P_B: one row per statistic (stats.EP_STATISTICS) with value, floor and effect at one
    matched size, the permutation p-value of the binned TV and its Benjamini-Hochberg q-value
    over this table's comparisons."""
    rng = np.random.default_rng([cfg.seed, 0xE9])
    view = lambda keys: stats.ep_view(log10_scores(ep, keys), BIN_DECADES, cfg.analysis.count_threshold,
                                      [cfg.seed, 0x5E])
    posteriors = [cfg.reference] + [p for p in ("nngp_exact",) if p in estimators and p != cfg.reference]
    frames = []
    for setting, group in runs.groupby("setting", sort=False):
        counts = sgd_counts(group)
        for posterior in posteriors:
            name = f"sgd_vs_{posterior}_ep"
            if not counts:
                frames.append(unavailable(name, setting, stats.EP_STATISTICS, reference=posterior))
                continue
            frames.append(matched(name, setting, counts, sum(counts.values()), estimators[posterior],
                                  n_eff[posterior], cfg, rng, view=view, reference=posterior))
    return with_q_values(pd.concat(frames, ignore_index=True))


SCATTER_STATISTICS = ("pearson_log", "spearman_log", "slope_log", "n_common", "decades_log10_pb")


def ep_scatter_table(runs: pd.DataFrame, estimators: dict[str, pd.DataFrame], ep: dict[str, float],
                     cfg: ExperimentConfig, n_eff: dict[str, dict]) -> pd.DataFrame:
    """Mingard et al.'s scatter of log P_SGD against EP's log P_B beside its noise floor: per SGD
    setting, tables.ep_correlations of its runs (functions seen at least count_threshold times)
    and of half A of the exact NNGP sample, both subsampled to one size n (tables.matched). The
    floor is what the scatter of a sample of the posterior itself looks like at that n, through
    the same EP, so selection on the counts and EP's own errors bias both alike; the effect is
    SGD's statistic minus it (slope above 0: SGD concentrates on EP's most probable functions
    more than the posterior does). No permutation test: agreement.csv has SGD against the same
    sample. A subsample never counts a function more often than the whole sample, so the
    functions seen fewer than count_threshold times in both can never enter the statistics; they
    are lumped into one unscored function, which leaves the subsamples' and bootstraps' counts of
    every other function as they were in distribution (E1MS: 10^5 functions down to 10^3)."""
    rng = np.random.default_rng([cfg.seed, 0x5C])
    posterior, rare, threshold = "nngp_exact", "rare", cfg.analysis.count_threshold
    reference = estimators[posterior]
    frequent_ref = reference.groupby("function")["count"].sum().loc[lambda c: c >= threshold].index

    def view(keys):
        log_p = np.array([ep.get(k, np.nan) for k in keys], float)

        def statistics(a, _):  # the scatter's correlations and the decades of EP's P_B its points span
            a = np.asarray(a)
            shown = log_p[np.isfinite(log_p) & (a >= threshold)] / np.log(10)
            return ep_correlations(a, log_p, threshold) | {"decades_log10_pb": float(np.ptp(shown)) if len(shown) else np.nan}
        return statistics, stats.total_variation

    frames = []
    for setting, group in runs.groupby("setting", sort=False):
        counts = sgd_counts(group)
        name = f"sgd_vs_{posterior}_ep_scatter"
        if not counts:
            frames.append(unavailable(name, setting, SCATTER_STATISTICS, reference=posterior))
            continue
        keep = set(frequent_ref) | {f for f, c in counts.items() if c >= threshold}
        lumped = {f: c for f, c in counts.items() if f in keep}
        lumped[rare] = sum(counts.values()) - sum(lumped.values())
        ref = reference.assign(function=reference["function"].where(reference["function"].isin(keep), rare))
        frames.append(matched(name, setting, lumped, sum(counts.values()), ref, n_eff[posterior], cfg, rng, view=view,
                              test_tv=False, reference=posterior))
    return with_q_values(pd.concat(frames, ignore_index=True))


def scatter_number(statistic: str, value: float):
    """A value of ep_scatter.csv as the paper prints it: n_common (a mean count) as a whole number."""
    return int(round(value)) if statistic == "n_common" else float(value)


def ep_scatter_macros(scatter: pd.DataFrame) -> dict:
    """Paper macros of ep_scatter_table: per setting and statistic, its value, floor and effect
    interval (ScatterSgdBEightCePearsonLog, ...Floor, ...EffectLo, ...EffectHi; the size n), and
    over the settings the range of each value and floor and how many effects lie above or below 0."""
    m = {}
    rows = scatter.dropna(subset=["value"])
    for r in rows.itertuples():
        k = lambda *p: macro_name("Scatter", r.setting, r.statistic, *p)
        src = source("ep_scatter.csv", setting=r.setting, statistic=r.statistic)
        m |= {k(): src(scatter_number(r.statistic, r.value), "value (mean over the matched draws)"),
              k("Floor"): src(scatter_number(r.statistic, r.floor), "floor (mean over the matched draws)"),
              k("EffectLo"): src(float(r.effect_low), "effect_low"), k("EffectHi"): src(float(r.effect_high), "effect_high")}
        m[macro_name("Scatter", r.setting, "N")] = src(int(r.n_a), "n_a")
    for statistic, g in rows.groupby("statistic", sort=False):
        k = lambda *p: macro_name("Scatter", statistic, *p)
        src = source("ep_scatter.csv", "SGD settings", statistic=statistic)
        num = lambda v: scatter_number(statistic, v)
        m |= {k("Min"): src(num(g["value"].min()), "min of value"), k("Max"): src(num(g["value"].max()), "max of value"),
              k("FloorMin"): src(num(g["floor"].min()), "min of floor"),
              k("FloorMax"): src(num(g["floor"].max()), "max of floor"),
              k("Above"): src(int((g["effect_low"] > 0).sum()), "settings with effect_low > 0"),
              k("Below"): src(int((g["effect_high"] < 0).sum()), "settings with effect_high < 0")}
    return m


def single_error_table(counts: dict[str, dict[str, int]], ep: dict[str, float], task: Task) -> pd.DataFrame:
    """The |E| functions that differ from the target on one test input: EP's log10 P_B over them
    (its range: about 0 where they are equally probable, as under E1MS's NNGP posterior), and per
    population (`counts`: populations()) how evenly it finds them: their counts and share of its
    runs or samples, the dispersion index var / mean over all |E| (unseen ones count 0; about 1
    for independent draws of equally probable functions), the chi-square test of equal
    probabilities (scipy, |E| - 1 degrees of freedom; a chain sample is treated as independent
    draws, which its effective size near its size allows) and the largest count over the mean."""
    keys = []
    for k in range(len(task.test_idx)):
        bits = task.y_test.astype(bool).copy()
        bits[k] = ~bits[k]
        keys.append(bits_to_hex(bits))
    score = log10_scores(ep, keys)
    ok = np.isfinite(score)
    rows = []
    nan = float("nan")
    for population, pop in counts.items():
        c = np.array([pop.get(k, 0) for k in keys], float)
        mean, total = c.mean(), sum(pop.values())
        chi2 = float(np.sum((c - mean) ** 2) / mean) if mean > 0 else nan  # NaN: none of them found
        rows.append({"population": population, "functions": len(keys), "seen": int((c > 0).sum()),
                     "items": int(c.sum()), "items_total": int(total), "share": float(c.sum() / total),
                     "count_mean": mean, "count_max": int(c.max()), "count_min": int(c.min()),
                     "dispersion": chi2 / (len(keys) - 1),  # var(ddof=1) / mean
                     "chi2": chi2, "p_value": float(stats.sps.chi2.sf(chi2, len(keys) - 1)) if mean > 0 else nan,
                     "max_over_mean": float(c.max() / mean) if mean > 0 else nan,
                     "ep_scored": int(ok.sum()), "ep_log10_mean": float(score[ok].mean()) if ok.any() else float("nan"),
                     "ep_log10_range": float(np.ptp(score[ok])) if ok.any() else float("nan")})
    return pd.DataFrame(rows)


def single_error_macros(table: pd.DataFrame) -> dict:
    """Per population: SingleErrors<Population>Dispersion, ...PValue, ...ChiSquare, ...MaxOverMean,
    ...Items, ...Share (of all its runs or samples), ...Max, ...Min; EP's
    range and mean log10 P_B over the functions (SingleErrorsEpRange, SingleErrorsEpMean)."""
    m = {}
    for r in table.itertuples():
        k, src = lambda *p: macro_name("SingleErrors", r.population, *p), source("single_errors.csv", population=r.population)
        m |= {k("Dispersion"): src(float(r.dispersion), "dispersion"), k("PValue"): src(float(r.p_value), "p_value"),
              k("MaxOverMean"): src(float(r.max_over_mean), "max_over_mean"), k("Items"): src(int(r.items), "items"),
              k("Max"): src(int(r.count_max), "count_max"), k("Min"): src(int(r.count_min), "count_min"),
              k("ChiSquare"): src(float(r.chi2), "chi2"), k("Share"): src(float(r.share), "share")}
    first = table.iloc[0]
    src = source("single_errors.csv")
    return m | {"SingleErrorsFunctions": src(int(first["functions"]), "functions"),
                "SingleErrorsEpRange": src(float(first["ep_log10_range"]), "ep_log10_range"),
                "SingleErrorsEpMean": src(float(first["ep_log10_mean"]), "ep_log10_mean")}


def ep_mass_table(runs: pd.DataFrame, estimators: dict[str, pd.DataFrame], ep: dict[str, float]) -> pd.DataFrame:
    """Long table for the figures: per population (SGD setting or posterior sampler) and bin of
    log10 P_B (its lower edge; "failed" for functions EP could not score), the count of runs or
    samples and their fraction of the population."""
    rows = []
    for population, counts in populations(runs, estimators).items():
        functions, c = list(counts), np.array(list(counts.values()), float)
        score = log10_scores(ep, functions)
        edge = np.floor(score / BIN_DECADES) * BIN_DECADES
        frame = pd.DataFrame({"bin": np.where(np.isfinite(edge), edge, np.nan), "count": c})
        grouped = frame.groupby("bin", dropna=False)["count"].sum()
        for low, n in grouped.items():
            rows.append({"population": population, "kind": "sgd" if population in runs["setting"].values else "posterior",
                         "log10_pb_low": low, "log10_pb_high": low + BIN_DECADES, "ep_failed": bool(np.isnan(low)),
                         "count": int(n), "mass": n / c.sum()})
    return pd.DataFrame(rows)


def mean_test_error(functions: pd.DataFrame) -> dict[str, float]:
    """Per population of functions.csv, the test error on E averaged over its runs or samples
    (each function weighted by its count)."""
    w = functions.assign(weighted=functions["count"] * functions["test_error"])
    sums = w.groupby("population", sort=False)[["weighted", "count"]].sum()
    return (sums["weighted"] / sums["count"]).to_dict()


def ep_summary_table(runs: pd.DataFrame, estimators: dict[str, pd.DataFrame], ep: dict[str, float],
                     test_error: dict[str, float] | None = None) -> pd.DataFrame:
    """Per population: items (runs or samples), distinct functions, the fraction of items whose
    function it saw once, functions EP failed on, the spread of EP's log10 P_B over its
    functions (min, max, decades spanned) and over its items (mean), and with `test_error`
    (mean_test_error) its mean test error on E."""
    rows = []
    for population, counts in populations(runs, estimators).items():
        c = np.array(list(counts.values()), float)
        score = log10_scores(ep, list(counts))
        ok = np.isfinite(score)
        nan = float("nan")
        rows.append({"population": population, "items": int(c.sum()), "functions": len(c),
                     "singleton_fraction": float(c[c == 1].sum() / c.sum()) if len(c) else nan,
                     "functions_ep_failed": int((~ok).sum()),
                     "log10_pb_min": float(score[ok].min()) if ok.any() else nan,
                     "log10_pb_max": float(score[ok].max()) if ok.any() else nan,
                     "decades": float(np.ptp(score[ok])) if ok.any() else nan,
                     "log10_pb_mean": float(np.sum(c[ok] * score[ok]) / c[ok].sum()) if ok.any() else nan}
                    | ({} if test_error is None else {"test_error_mean": test_error.get(population, nan)}))
    return pd.DataFrame(rows)


TREND_QUANTITIES = ("test_error", "lz")  # the columns of functions.csv EP's log P_B is set against


def ep_trend_table(functions: pd.DataFrame, ep: dict[str, float], rng: np.random.Generator, boot: int,
                   confidence: float) -> pd.DataFrame:
    """Test error on E and LZ complexity against EP's log10 P_B, per population (functions.csv: one
    row per distinct function it found): Spearman's rank correlation over its functions EP scored,
    scipy's p-value against no association, and the bootstrap interval over functions that every
    rank correlation in the tables has (`stats.spearman_ci`). Below 0 for the error: the functions
    with higher P_B generalise better."""
    rows = []
    for population, g in functions.groupby("population", sort=False):
        score = log10_scores(ep, g["function"])
        ok = np.isfinite(score)
        for quantity in (q for q in TREND_QUANTITIES if q in g):  # lz: Boolean tasks only
            y, n = g[quantity].to_numpy(float)[ok], int(ok.sum())
            rho = p = low = high = float("nan")
            if n > 3 and np.ptp(y) > 0 and np.ptp(score[ok]) > 0:
                ranked = ep_ranked(score[ok] * np.log(10))  # EP's noise-level differences tie
                rho, low, high = stats.spearman_ci(ranked, y, rng, boot, confidence)
                p = float(stats.sps.spearmanr(ranked, y).pvalue)
            rows.append({"population": population, "quantity": quantity, "functions": n, "spearman": rho,
                         "ci_low": low, "ci_high": high, "p_value": p})
    return pd.DataFrame(rows)


def ep_macros(ep_view: pd.DataFrame, summary: pd.DataFrame, trend: pd.DataFrame) -> dict:
    """Paper macros of the EP view: per SGD setting and posterior, each statistic with its floor
    and the effect's interval; per population, its spread of log10 P_B and the rank correlations of
    test error and LZ complexity with it (ranges over the SGD settings)."""
    m = {}
    for r in trend.itertuples():
        k = lambda *p: macro_name("Trend", r.population, r.quantity, *p)
        src = source("ep_trend.csv", population=r.population, quantity=r.quantity)
        m |= {k("Spearman"): src(r.spearman, "spearman"), k("Lo"): src(r.ci_low, "ci_low"),
              k("Hi"): src(r.ci_high, "ci_high"), k("PValue"): src(r.p_value, "p_value"),
              k("Functions"): src(int(r.functions), "functions")}
    sgd_trend = trend[trend["population"].isin(ep_view["setting"])]
    for quantity, rows in sgd_trend.groupby("quantity", sort=False):
        src = source("ep_trend.csv", "SGD settings", quantity=quantity)
        k = lambda *p: macro_name("Trend", "sgd", quantity, *p)
        m |= {k("Min"): src(float(rows["spearman"].min()), "min of spearman"),
              k("Max"): src(float(rows["spearman"].max()), "max of spearman"),
              k("PMax"): src(float(rows["p_value"].max()), "max of p_value")}
    for r in ep_view.dropna(subset=["value"]).itertuples():
        k = lambda *p: macro_name(r.comparison, r.setting, r.statistic, *p)
        src = source("ep_view.csv", comparison=r.comparison, setting=r.setting, statistic=r.statistic)
        m |= {k(): src(float(r.value), "value"), k("Floor"): src(float(r.floor), "floor"),
              k("EffectLo"): src(float(r.effect_low), "effect_low"), k("EffectHi"): src(float(r.effect_high), "effect_high")}
        if r.statistic == "tv_ep_bins":
            kk = lambda *p: macro_name(r.comparison, r.setting, *p)
            m |= {kk("N"): src(int(r.n_a), "n_a"), kk("PValue"): src(float(r.p_value), "p_value"),
                  kk("QValue"): src(float(r.q_value), "q_value")}
    for posterior, rows in ep_view.dropna(subset=["value"]).groupby("reference", sort=False):
        # ranges over the SGD settings, for the text: the shift of the mean log10 P_B and the binned TV
        k = lambda *p: macro_name("Ep", posterior, *p)
        shift, tv, top = (rows[rows["statistic"] == s] for s in ("mean_log10_pb_shift", "tv_ep_bins",
                                                                 "frequent_mass_log10"))
        src = source("ep_view.csv", reference=posterior)
        m |= {k("ShiftMin"): src(float(shift["value"].min()), "min of value where statistic=mean_log10_pb_shift"),
              k("ShiftMax"): src(float(shift["value"].max()), "max of value where statistic=mean_log10_pb_shift"),
              k("ShiftFloorAbsMax"): src(float(shift["floor"].abs().max()),
                                         "max of abs(floor) where statistic=mean_log10_pb_shift"),
              k("ShiftAbove"): src(int((shift["effect_low"] > 0).sum()),
                                   "settings with effect_low > 0 where statistic=mean_log10_pb_shift"),
              k("TvRejected"): src(int((tv["q_value"] < 0.05).sum()), "settings with q_value < 0.05"),
              k("FrequentEffectMin"): src(float(top["effect"].min()), "min of effect where statistic=frequent_mass_log10"),
              k("FrequentEffectMax"): src(float(top["effect"].max()), "max of effect where statistic=frequent_mass_log10"),
              k("FrequentAbove"): src(int((top["effect_low"] > 0).sum()),
                                      "settings with effect_low > 0 where statistic=frequent_mass_log10"),
              k("FrequentBelow"): src(int((top["effect_high"] < 0).sum()),
                                      "settings with effect_high < 0 where statistic=frequent_mass_log10"),
              k("Settings"): src(int(len(tv)), "settings"),
              k("NMin"): src(int(tv["n_a"].min()), "min of n_a"), k("NMax"): src(int(tv["n_a"].max()), "max of n_a")}
    sgd = summary[summary["population"].isin(ep_view["setting"])]
    src = source("ep_summary.csv", population="SGD settings")
    m |= {"EpSgdDecadesMin": src(float(sgd["decades"].min()), "min of decades"),
          "EpSgdDecadesMax": src(float(sgd["decades"].max()), "max of decades"),
          "EpSgdSingletonMin": src(float(sgd["singleton_fraction"].min()), "min of singleton_fraction"),
          "EpSgdSingletonMax": src(float(sgd["singleton_fraction"].max()), "max of singleton_fraction"),
          "EpSgdFailed": src(int(sgd["functions_ep_failed"].sum()), "sum of functions_ep_failed"),
          "EpSgdFunctionsMin": src(int(sgd["functions"].min()), "min of functions"),
          "EpSgdItemsMax": src(int(sgd["items"].max()), "max of items")}
    for r in summary.itertuples():
        src = source("ep_summary.csv", population=r.population)
        for column in ("decades", "log10_pb_min", "log10_pb_max", "log10_pb_mean", "singleton_fraction",
                       "test_error_mean"):
            if hasattr(r, column):
                m[macro_name("Ep", r.population, column)] = src(float(getattr(r, column)), column)
        m[macro_name("Ep", r.population, "functions")] = src(int(r.functions), "functions")
        m[macro_name("Ep", r.population, "failed")] = src(int(r.functions_ep_failed), "functions_ep_failed")
    return m


def ep_latex_table(runs_sum: pd.DataFrame, ep_view: pd.DataFrame, summary: pd.DataFrame) -> str:
    """One row per SGD setting: batch, lr, mean steps to fit S, distinct functions, the decades of
    EP's P_B its functions span, and against each posterior (reference first) the shift of the
    mean log10 P_B, the binned TV and the log10 mass ratio on SGD's frequent functions, each with
    its matched floor, and the TV test's q-value."""
    posteriors = list(dict.fromkeys(ep_view["reference"].dropna()))
    head = " & ".join(rf"\multicolumn{{4}}{{c}}{{vs {fmt(p)}}}" for p in posteriors)
    sub = " & ".join([r"shift [floor] & TV [floor] & $q$ & frequent [floor]"] * len(posteriors))
    lines = [r"\begin{tabular}{lrrrrr" + "llll" * len(posteriors) + "}", r"\toprule",
             rf" & & & & & & {head} \\",
             rf"setting & $B$ & lr & steps & functions & decades & {sub} \\", r"\midrule"]
    decades = summary.set_index("population")["decades"]
    for r in runs_sum.itertuples():
        cells = []
        for p in posteriors:
            rows = ep_view[(ep_view["setting"] == r.setting) & (ep_view["reference"] == p)].set_index("statistic")
            if rows.empty or pd.isna(rows.loc["tv_ep_bins", "value"]):
                cells += ["n/a"] * 4
                continue
            cell = lambda s: rf"{fmt(float(rows.loc[s, 'value']))} [{fmt(float(rows.loc[s, 'floor']))}]"
            cells += [cell("mean_log10_pb_shift"), cell("tv_ep_bins"), fmt(float(rows.loc["tv_ep_bins", "q_value"])),
                      cell("frequent_mass_log10")]
        lines.append(rf"\texttt{{{fmt(r.setting)}}} & {r.batch_size} & {fmt(r.lr, 3)} & {fmt(float(r.mean_steps), 0)} & "
                     rf"{fmt(int(r.distinct_functions))} & {fmt(float(decades.get(r.setting, float('nan'))), 1)} & "
                     + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def ep_methods_table(nngp_ep: pd.DataFrame, exact: pd.DataFrame | None, n_eff_exact: float | None,
                     threshold: int) -> pd.DataFrame:
    """How far EP on S + the Gaussian predictive on E (log_p_predictive) is from the ratio of EP
    normalisers (log_p), over the functions both scored (nngp.ep = "both"): the mean and SD of the
    difference in nats, its largest size, Spearman's rank correlation and the decades the ratio
    spans; then each method against the exact NNGP sample (its log frequency) on the functions
    sampled at least `threshold` times: the mean difference and mean absolute difference beside
    the floor of that sample, the mean delta-method standard error of a log frequency,
    sqrt((1 - p) / (p n_eff)), with n_eff the exact sample's effective size."""
    ok = (nngp_ep["ep_status"] == "converged") & (nngp_ep["predictive_status"] == "converged")
    both = nngp_ep[ok]
    d = (both["log_p_predictive"] - both["log_p"]).to_numpy(float)
    nan = float("nan")
    rows = [{"comparison": "predictive_vs_ratio", "functions": len(both),
             "mean_diff": float(d.mean()) if len(d) else nan, "sd_diff": float(d.std()) if len(d) else nan,
             "max_abs_diff": float(np.abs(d).max()) if len(d) else nan,
             "spearman": float(stats.sps.spearmanr(both["log_p"], both["log_p_predictive"])[0]) if len(d) > 2 else nan,
             "decades": float(np.ptp(both["log_p"]) / np.log(10)) if len(d) else nan,
             "mean_abs_diff": float(np.abs(d).mean()) if len(d) else nan, "floor": 0.0}]
    if exact is not None and len(exact):
        counts = exact.groupby("function")["count"].sum()
        total, size = float(counts.sum()), float(n_eff_exact or counts.sum())
        frequent = counts[counts >= threshold]
        p = frequent / total
        floor = float(np.mean(np.sqrt((1 - p) / (p * size)))) if len(p) else nan
        scored = both.set_index("function").reindex(frequent.index)
        for column, method in (("log_p", "ratio"), ("log_p_predictive", "predictive")):
            dd = (scored[column] - np.log(p)).dropna().to_numpy(float)
            rows.append({"comparison": f"{method}_vs_exact", "functions": len(dd),
                         "mean_diff": float(dd.mean()) if len(dd) else nan, "sd_diff": float(dd.std()) if len(dd) else nan,
                         "max_abs_diff": float(np.abs(dd).max()) if len(dd) else nan, "spearman": nan, "decades": nan,
                         "mean_abs_diff": float(np.abs(dd).mean()) if len(dd) else nan, "floor": floor})
    return pd.DataFrame(rows)
