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


ESTIMATOR_NAMES = {"bayes_rejection": "rejection", "bayes_mcmc": "MCMC", "nngp_exact": "NNGP exact",
                   "nngp_ep": "NNGP EP"}


def _pair(comparison: str) -> tuple[str, str]:
    for a in ESTIMATOR_NAMES:
        if comparison.startswith(a + "_vs_"):
            return a, comparison[len(a) + 4:]
    raise ValueError(comparison)


def estimators_table(estimators: pd.DataFrame) -> str:
    """E2: one row per pair of P_B estimators (noise floors first), correlation, slope and TV."""
    lines = [r"\begin{tabular}{lllll}", r"\toprule",
             r"estimate A & estimate B & $r_{\log}$ & slope & TV \\", r"\midrule"]
    order = sorted(dict.fromkeys(estimators["comparison"]), key=lambda c: (_pair(c)[0] != _pair(c)[1], c))
    for comparison in order:
        a, b = _pair(comparison)
        rows = estimators[estimators["comparison"] == comparison].set_index("statistic")
        cells = [_cell(rows.loc[s]) for s in ("pearson_log", "slope_log", "tv")]
        label_b = "(half B)" if a == b else ESTIMATOR_NAMES[b]
        lines.append(rf"{ESTIMATOR_NAMES[a]}{' (half A)' if a == b else ''} & {label_b} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def estimator_macros(estimators: pd.DataFrame, agreement: pd.DataFrame) -> dict:
    """Named numbers of the cross-check: each pair's statistics, and SGD against EP's range."""
    from analysis.macros import macro_name

    out = {}
    for r in estimators.itertuples():
        a, b = _pair(r.comparison)
        k = lambda *p: macro_name("Est", ESTIMATOR_NAMES[a].replace(" ", ""), "vs",
                                  ESTIMATOR_NAMES[b].replace(" ", ""), r.statistic, *p)
        value = int(r.value) if r.statistic == "n_common" and pd.notna(r.value) else float(r.value)
        out |= {k(): value, k("Lo"): float(r.ci_low), k("Hi"): float(r.ci_high)}
    # Cross-estimator total variations (full samples) against the half-sample floors: a summary
    # the paper can state whatever the numbers are.
    tv = estimators[estimators["statistic"] == "tv"]
    pairs = tv["comparison"].map(_pair)
    same = pairs.map(lambda p: p[0] == p[1])
    cross, floors = tv[~same], tv[same]
    if len(cross) and len(floors):
        out |= {"EstCrossTvMin": float(cross["value"].min()), "EstCrossTvMax": float(cross["value"].max()),
                "EstFloorTvMin": float(floors["value"].min()), "EstFloorTvMax": float(floors["value"].max()),
                "EstCrossAboveFloors": int((cross["value"] > floors["value"].max()).sum()),
                "EstCrossPairs": len(cross)}
    ep = agreement[(agreement["comparison"] == "sgd_vs_nngp_ep") & (agreement["statistic"] == "pearson_log")]
    if len(ep):
        out["SgdEpPearsonMin"], out["SgdEpPearsonMax"] = float(ep["value"].min()), float(ep["value"].max())
        slope = agreement[(agreement["comparison"] == "sgd_vs_nngp_ep") & (agreement["statistic"] == "slope_log")]
        out["SgdEpSlopeMin"], out["SgdEpSlopeMax"] = float(slope["value"].min()), float(slope["value"].max())
    return out
