"""Generated LaTeX for the paper: the per-setting results table and summary macros that do not
depend on setting names (so the paper text reads the same for every profile)."""
from __future__ import annotations

import pandas as pd

from analysis.macros import fmt

STATS = ("pearson_log", "slope_log", "tv", "kl")


def _cell(row: pd.Series) -> str:
    if pd.isna(row["value"]):
        return "n/a"
    return rf"{fmt(float(row['value']))} [{fmt(float(row['ci_low']))}, {fmt(float(row['ci_high']))}]"


def _stat(agreement: pd.DataFrame, comparison: str, setting: str, statistic: str) -> pd.Series:
    sel = agreement[(agreement["comparison"] == comparison) & (agreement["setting"] == setting)
                    & (agreement["statistic"] == statistic)]
    return sel.iloc[0]


def settings_table(runs_sum: pd.DataFrame, agreement: pd.DataFrame) -> str:
    """One row per SGD setting (matched comparison against Bayes half B) and the noise floor."""
    lines = [r"\begin{tabular}{llrrrrllll}", r"\toprule",
             r"setting & opt./loss & $B$ & lr & runs & not fitted & $r_{\log}$ & slope & TV & KL \\", r"\midrule"]
    for r in runs_sum.itertuples():
        cells = [_cell(_stat(agreement, "sgd_vs_bayes_matched", r.setting, s)) for s in STATS]
        lines.append(rf"\texttt{{{fmt(r.setting)}}} & {r.optimizer}/{r.loss.upper()} & {r.batch_size} & {fmt(r.lr, 3)} & "
                     rf"{fmt(int(r.runs))} & {fmt(int(r.not_fitted))} & " + " & ".join(cells) + r" \\")
    floor = [_cell(_stat(agreement, "bayes_vs_bayes", "noise_floor", s)) for s in STATS]
    lines += [r"\midrule", r"\multicolumn{6}{l}{noise floor: Bayes half A vs half B} & " + " & ".join(floor) + r" \\",
              r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def summary_macros(agreement: pd.DataFrame) -> dict:
    """Ranges over settings of the matched statistics, and how many settings are distinguishable
    from the noise floor (bootstrap intervals that do not overlap)."""
    out = {}
    matched = agreement[agreement["comparison"] == "sgd_vs_bayes_matched"]
    floor = agreement[agreement["comparison"] == "bayes_vs_bayes"].set_index("statistic")
    for stat, name in [("pearson_log", "Pearson"), ("slope_log", "Slope"), ("tv", "Tv"), ("kl", "Kl")]:
        vals = matched[matched["statistic"] == stat]
        out[f"Matched{name}Min"] = float(vals["value"].min())
        out[f"Matched{name}Max"] = float(vals["value"].max())
        f = floor.loc[stat]
        out[f"Floor{name}"], out[f"Floor{name}Lo"], out[f"Floor{name}Hi"] = float(f["value"]), float(f["ci_low"]), float(f["ci_high"])
        if stat == "pearson_log":  # worse = lower correlation
            worse = (vals["ci_high"] < f["ci_low"]).sum()
        elif stat == "slope_log":  # worse = further from the floor's slope, either side
            worse = ((vals["ci_high"] < f["ci_low"]) | (vals["ci_low"] > f["ci_high"])).sum()
        else:  # worse = larger distance
            worse = (vals["ci_low"] > f["ci_high"]).sum()
        out[f"SettingsWorse{name}"] = int(worse)
        if stat == "slope_log":
            out["SettingsSteeperSlope"] = int((vals["ci_low"] > f["ci_high"]).sum())
    tv = matched[matched["statistic"] == "tv"].sort_values("value")
    out["ClosestTvSetting"] = r"\texttt{" + fmt(tv["setting"].iat[0]) + "}"
    out["FarthestTvSetting"] = r"\texttt{" + fmt(tv["setting"].iat[-1]) + "}"
    full = agreement[(agreement["comparison"] == "sgd_vs_bayes") & (agreement["statistic"] == "pearson_log")]
    out["FullPearsonMin"], out["FullPearsonMax"] = float(full["value"].min()), float(full["value"].max())
    return out
