"""Generated LaTeX for the paper: the per-setting results table and summary macros that do not
depend on setting names (so the paper text reads the same for every profile)."""
from __future__ import annotations

import pandas as pd

from analysis.macros import Macro, fmt, macro_name, source


def _matched_cell(row: pd.Series) -> str:
    """comparison [its matched noise floor]."""
    if pd.isna(row["value"]):
        return "n/a"
    return rf"{fmt(float(row['value']))} [{fmt(float(row['floor']))}]"


def _effect_cell(row: pd.Series) -> str:
    if pd.isna(row["effect"]):
        return "n/a"
    return rf"{fmt(float(row['effect']))} [{fmt(float(row['effect_low']))}, {fmt(float(row['effect_high']))}]"


def span(lo: float, hi: float) -> str:
    """"lo--hi" as the paper prints it (an en dash), "lo to hi" when hi is negative (LaTeX would read
    "--" followed by a minus sign as an em dash and drop the sign), or one number where both print alike."""
    a, b = fmt(lo), fmt(hi)
    return a if a == b else f"{a} to {b}" if b.startswith("-") else f"{a}--{b}"


def _p(p: float) -> str:
    return "n/a" if pd.isna(p) else fmt(float(p), 2)


def settings_table(runs_sum: pd.DataFrame, agreement: pd.DataFrame) -> str:
    """One row per SGD setting: its matched comparison with the reference (each statistic beside
    its noise floor at the same n), the TV effect with its interval and the two-sample p-value."""
    lines = [r"\begin{tabular}{llrrrrlllll}", r"\toprule",
             r"setting & opt./loss & $B$ & lr & not fitted & $n$ & $r_{\log}$ [floor] & slope [floor] & TV [floor] & "
             r"$\Delta$TV [CI] & $p$ \\", r"\midrule"]
    matched = agreement[agreement["comparison"] == "sgd_vs_bayes"]
    for r in runs_sum.itertuples():
        rows = matched[matched["setting"] == r.setting].set_index("statistic")
        cells = [_matched_cell(rows.loc[s]) for s in ("pearson_log", "slope_log", "tv")]
        lines.append(rf"\texttt{{{fmt(r.setting)}}} & {r.optimizer}/{r.loss.upper()} & {r.batch_size} & {fmt(r.lr, 3)} & "
                     rf"{fmt(int(r.not_fitted))} & {fmt(int(rows['n_a'].iat[0]))} & " + " & ".join(cells)
                     + rf" & {_effect_cell(rows.loc['tv'])} & {_p(rows['p_value'].iat[0])} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# The direction in which each statistic says "further from the posterior than the floor".
WORSE = {"pearson_log": lambda r: r["effect_high"] < 0, "slope_log": lambda r: (r["effect_low"] > 0) | (r["effect_high"] < 0),
         "tv": lambda r: r["effect_low"] > 0, "kl": lambda r: r["effect_low"] > 0}


def summary_macros(agreement: pd.DataFrame, alpha: float = 0.05) -> dict[str, Macro]:
    """Ranges over settings of the matched statistics, their floors and effects, how many settings
    are further from the posterior than the floor (effect interval excluding 0) and how many the
    two-sample test rejects (Benjamini-Hochberg q < alpha over the settings)."""
    out = {}
    matched = agreement[agreement["comparison"] == "sgd_vs_bayes"]
    for stat, name in [("pearson_log", "Pearson"), ("slope_log", "Slope"), ("tv", "Tv"), ("kl", "Kl")]:
        vals = matched[matched["statistic"] == stat]
        src = source("agreement.csv", comparison="sgd_vs_bayes", statistic=stat)
        for column, label in (("value", "Matched"), ("floor", "Floor"), ("effect", "Effect")):
            lo, hi = float(vals[column].min()), float(vals[column].max())
            out[f"{label}{name}Min"], out[f"{label}{name}Max"] = src(lo, f"min of {column}"), src(hi, f"max of {column}")
            out[f"{label}{name}Range"] = src(span(lo, hi), f"min--max of {column}")
        out[f"SettingsWorse{name}"] = src(int(WORSE[stat](vals).sum()), "settings further than the floor (latex.WORSE)")
        if stat == "slope_log":
            out["SettingsSteeperSlope"] = src(int((vals["effect_low"] > 0).sum()), "settings with effect_low > 0")
    tests, src = matched.drop_duplicates("setting"), source("agreement.csv", comparison="sgd_vs_bayes")
    out |= {"MatchedNMin": src(int(tests["n_a"].min()), "min of n_a"),
            "MatchedNMax": src(int(tests["n_a"].max()), "max of n_a"),
            "MatchedNRange": src(span(int(tests["n_a"].min()), int(tests["n_a"].max())), "min--max of n_a"),
            "PValueMin": src(float(tests["p_value"].min()), "min of p_value"),
            "PValueMax": src(float(tests["p_value"].max()), "max of p_value"),
            "FloorPValueMin": src(float(tests["floor_p_value"].min()), "min of floor_p_value"),
            "FloorPValueMax": src(float(tests["floor_p_value"].max()), "max of floor_p_value"),
            "SettingsRejected": src(int((tests["q_value"] < alpha).sum()), f"settings with q_value < {alpha}"),
            "TestAlpha": source("code")(alpha, "alpha of analysis.latex.summary_macros")}
    tv = matched[matched["statistic"] == "tv"].sort_values("effect")
    src = source("agreement.csv", comparison="sgd_vs_bayes", statistic="tv")
    for label, i, which in (("Closest", 0, "smallest"), ("Farthest", -1, "largest")):
        setting = tv["setting"].iat[i]
        out[f"{label}TvSetting"] = src(setting, f"setting of the {which} effect", r"\texttt{" + fmt(setting) + "}")
    return out


ESTIMATOR_NAMES = {"bayes_rejection": "rejection", "bayes_mcmc": "MCMC", "bayes_mcmc_from_sgd": "MCMC from SGD",
                   "bayes_mcmc_from_rejection": "MCMC from rejection", "nngp_exact": "NNGP exact",
                   "nngp_ep": "NNGP EP"}


def estimators_table(estimators: pd.DataFrame) -> str:
    """E2: one row per pair of sampled P_B estimators (estimate against the reference's half B, at
    the smallest effective size, beside the reference's noise floor), and each against EP."""
    lines = [r"\begin{tabular}{llrllll}", r"\toprule",
             r"estimate & reference & $n$ & $r_{\log}$ [floor] & TV [floor] & $\Delta$TV [CI] & $p$ \\", r"\midrule"]
    for comparison, rows in estimators.groupby("comparison", sort=False):
        rows = rows.set_index("statistic")
        first = rows.iloc[0]
        a, b = ESTIMATOR_NAMES[first["estimator"]], ESTIMATOR_NAMES[first["reference"]]
        if first["reference"] == "nngp_ep":  # a computed reference: statistic and bootstrap interval
            cells = [rf"{fmt(float(rows.loc[s, 'value']))}" if pd.notna(rows.loc[s, "value"]) else "n/a"
                     for s in ("pearson_log", "tv")]
            lines.append(rf"{a} & {b} & {fmt(int(first['n_a']))} & {cells[0]} & {cells[1]} & & \\")
            continue
        cells = [_matched_cell(rows.loc[s]) for s in ("pearson_log", "tv")]
        lines.append(rf"{a} & {b} & {fmt(int(first['n_a']))} & " + " & ".join(cells)
                     + rf" & {_effect_cell(rows.loc['tv'])} & {_p(first['p_value'])} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def estimator_macros(estimators: pd.DataFrame, agreement: pd.DataFrame) -> dict[str, Macro]:
    """Named numbers of the cross-check: each pair's statistics (matched pairs with floor, effect
    and p-value), ranges over the pairs, and SGD against EP's range."""
    out = {}
    short = lambda name: ESTIMATOR_NAMES[name].replace(" ", "").replace("-", "")
    for r in estimators.itertuples():
        k = lambda *p: macro_name("Est", short(r.estimator), "vs", short(r.reference), r.statistic, *p)
        src = source("estimators.csv", comparison=r.comparison, statistic=r.statistic)
        # counts of functions as integers (frequent_functions is a mean over halvings: about so many)
        counted = r.statistic in ("n_common", "frequent_functions") and pd.notna(r.value)
        value = int(round(r.value)) if counted else float(r.value)
        out[k()] = src(value, "value")
        if r.reference == "nngp_ep":
            out |= {k("Lo"): src(float(r.ci_low), "ci_low"), k("Hi"): src(float(r.ci_high), "ci_high")}
        else:
            out |= {k("Floor"): src(float(r.floor), "floor"), k("Effect"): src(float(r.effect), "effect"),
                    k("EffectLo"): src(float(r.effect_low), "effect_low"),
                    k("EffectHi"): src(float(r.effect_high), "effect_high")}
            kk = lambda *p: macro_name("Est", short(r.estimator), "vs", short(r.reference), *p)
            out |= {kk("N"): src(int(r.n_a), "n_a"), kk("PValue"): src(float(r.p_value), "p_value")}
    tv = estimators[(estimators["statistic"] == "tv") & (estimators["reference"] != "nngp_ep")]
    if len(tv):
        src = source("estimators.csv", "reference!=nngp_ep", statistic="tv")
        out |= {"EstCrossTvMin": src(float(tv["value"].min()), "min of value"),
                "EstCrossTvMax": src(float(tv["value"].max()), "max of value"),
                "EstFloorTvMin": src(float(tv["floor"].min()), "min of floor"),
                "EstFloorTvMax": src(float(tv["floor"].max()), "max of floor"),
                "EstCrossAboveFloors": src(int((tv["effect_low"] > 0).sum()), "pairs with effect_low > 0"),
                "EstCrossPairs": src(len(tv), "number of rows"),
                "EstCrossRejected": src(int((tv["q_value"] < 0.05).sum()), "pairs with q_value < 0.05")}
    ep = agreement[(agreement["comparison"] == "sgd_vs_nngp_ep") & (agreement["statistic"] == "pearson_log")]
    if len(ep):
        src = source("agreement.csv", comparison="sgd_vs_nngp_ep", statistic="pearson_log")
        out["SgdEpPearsonMin"], out["SgdEpPearsonMax"] = (src(float(ep["value"].min()), "min of value"),
                                                          src(float(ep["value"].max()), "max of value"))
        slope = agreement[(agreement["comparison"] == "sgd_vs_nngp_ep") & (agreement["statistic"] == "slope_log")]
        src = source("agreement.csv", comparison="sgd_vs_nngp_ep", statistic="slope_log")
        out["SgdEpSlopeMin"], out["SgdEpSlopeMax"] = (src(float(slope["value"].min()), "min of value"),
                                                      src(float(slope["value"].max()), "max of value"))
    return out
