"""Geometry tables (E4, E6) from raw/geometry.csv and raw/geometry_identity.csv: the
Hessian = feature-Gram identity, measures by population, SGD against the Bayesian population
overall and function by function, and accessibility log(P_SGD / P_B) against each function's
sharpness and feature count."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import stats

# The measures compared between populations (columns of raw/geometry.csv).
MEASURES = {
    "ntk_S_entropy_rank": "features on S (entropy rank of the NTK Gram)",
    "ntk_S_participation_ratio": "features on S (participation ratio)",
    "ntk_X_entropy_rank": "features on all inputs (entropy rank)",
    "hess_mse_top": "top Hessian eigenvalue, MSE",
    "hess_mse_trace": "Hessian trace, MSE",
    "hess_ce_top": "top Hessian eigenvalue, cross-entropy",
    "gn_mse_log_det": "sharpness log-det sum log(1 + lambda/delta), MSE GN",
    "log_radius_median": "median log basin radius (censored at radius_max)",
    "theta_norm": "parameter norm",
}


def identity_summary(identity: pd.DataFrame, m: int) -> pd.DataFrame:
    """Per population, state and loss: how far the exact Hessian's m leading eigenvalues are from
    the Gauss-Newton (feature Gram) ones, relative to the largest, and the residual part's size,
    over the points whose state was reached; `not_reached` counts the others (interpolations
    that stopped short of the float32 floor), which are left out of every other column."""
    rows = []
    for (pop, state, loss), g in identity.groupby(["population", "state", "loss"], sort=False):
        errors, residuals, losses = [], [], []
        not_reached = int(g.loc[~g["reached"].astype(bool), "point"].nunique())
        for _, p in g[g["reached"].astype(bool)].groupby("point"):
            hess = np.sort(p["hessian_eig"].to_numpy()[:m])[::-1]
            gn = np.sort(p["gn_eig"].to_numpy()[:m])[::-1]
            errors.append(np.max(np.abs(hess - gn)) / gn[0])
            residuals.append(p["residual_norm"].iat[0] / gn[0])
            losses.append(p["loss_value"].iat[0])
        stat = (lambda f, x: float(f(x))) if errors else (lambda f, x: float("nan"))
        rows.append({"population": pop, "state": state, "loss": loss, "points": len(errors),
                     "not_reached": not_reached,
                     "max_rel_error": stat(np.max, errors), "median_rel_error": stat(np.median, errors),
                     "max_rel_residual": stat(np.max, residuals), "max_loss": stat(np.max, losses)})
    return pd.DataFrame(rows)


HESSIAN_LOSSES = ("mse", "ce")


def mask_unconverged(geom: pd.DataFrame) -> pd.DataFrame:
    """geom with every Hessian number of a point whose Lanczos run did not converge (the stage's
    hess_<loss>_converged) set to NaN, so that no comparison uses it; the count is in hessian_failures."""
    geom = geom.copy()
    for loss in HESSIAN_LOSSES:
        flag = f"hess_{loss}_converged"
        if flag in geom:
            bad = ~geom[flag].astype(bool)
            columns = [c for c in geom if c.startswith(f"hess_{loss}_") and c != flag]
            geom.loc[bad, columns] = np.nan
    return geom


def hessian_failures(geom: pd.DataFrame) -> pd.DataFrame:
    """Per population: points measured and points whose Hessian (per loss) did not converge."""
    rows = []
    for pop, g in geom.groupby("population", sort=False):
        row = {"population": pop, "points": len(g)}
        for loss in HESSIAN_LOSSES:
            row[f"hess_{loss}_not_converged"] = int((~g[f"hess_{loss}_converged"].astype(bool)).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def finite(x) -> np.ndarray:
    x = np.asarray(x, float)
    return x[np.isfinite(x)]


def radius_censoring(geom: pd.DataFrame) -> pd.DataFrame:
    """Per population: how much of the basin-radius search hit radius_max. A direction still at
    zero error there is censored (its radius is only known to exceed radius_max); a point's median
    radius is exact while fewer than half its directions are censored and a lower bound otherwise."""
    return pd.DataFrame([{"population": pop, "points": len(g),
                          "directions_censored": float(g["radius_censored"].mean()),
                          "points_median_censored": int((g["radius_censored"] >= 0.5).sum())}
                         for pop, g in geom.groupby("population", sort=False)])


def population_summary(geom: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per population and measure (n, mean, quartiles, extremes)."""
    rows = []
    for pop, g in geom.groupby("population", sort=False):
        for measure in MEASURES:
            x = finite(g[measure])
            q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75]) if len(x) else (np.nan,) * 3
            lo, hi = (float(x.min()), float(x.max())) if len(x) else (np.nan, np.nan)
            rows.append({"population": pop, "measure": measure, "n": len(x), "mean": float(x.mean()),
                         "median": float(q50), "q25": float(q25), "q75": float(q75), "min": lo, "max": hi})
    return pd.DataFrame(rows)


def median_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, boot: int,
                      confidence: float) -> tuple[float, float, float]:
    """median(a) - median(b) with a percentile bootstrap interval (each sample resampled alone)."""
    diffs = [np.median(rng.choice(a, len(a))) - np.median(rng.choice(b, len(b))) for _ in range(boot)]
    lo, hi = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(np.median(a) - np.median(b)), float(lo), float(hi)


def compare_populations(geom: pd.DataFrame, reference: str, rng: np.random.Generator, boot: int,
                        confidence: float) -> pd.DataFrame:
    """Every other population against the reference Bayesian one, measure by measure: the
    difference of medians (bootstrap interval), P(X_other > X_reference) (the Mann-Whitney U
    statistic over n1 n2; 0.5 = no shift) and the Mann-Whitney p-value."""
    ref = geom[geom["population"] == reference]
    rows = []
    for pop, g in geom.groupby("population", sort=False):
        if pop == reference:
            continue
        for measure in MEASURES:
            a, b = finite(g[measure]), finite(ref[measure])
            diff, lo, hi = median_difference(a, b, rng, boot, confidence)
            u = sps.mannwhitneyu(a, b, alternative="two-sided")
            rows.append({"population": pop, "reference": reference, "measure": measure, "n": len(a),
                         "n_reference": len(b), "median": float(np.median(a)), "median_reference": float(np.median(b)),
                         "median_difference": diff, "ci_low": lo, "ci_high": hi,
                         "prob_greater": float(u.statistic / (len(a) * len(b))), "p_value": float(u.pvalue)})
    return stats.with_q_values(pd.DataFrame(rows), "p_value")


def by_function(geom: pd.DataFrame, joint: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per (SGD setting, function): the median of each measure over the setting's points
    with that function and over the reference population's points with it, with P_SGD and P_B."""
    medians = geom.groupby(["population", "function"])[list(MEASURES)].median()
    n_points = geom.groupby(["population", "function"]).size()
    rows = []
    for r in joint.itertuples():
        if (r.setting, r.function) not in n_points and (reference, r.function) not in n_points:
            continue
        row = {"setting": r.setting, "function": r.function, "count_sgd": r.count_sgd, "count_bayes": r.count_bayes,
               "p_sgd": r.p_sgd, "p_bayes": r.p_bayes,
               "points_sgd": int(n_points.get((r.setting, r.function), 0)),
               "points_bayes": int(n_points.get((reference, r.function), 0))}
        for side, pop in (("sgd", r.setting), ("bayes", reference)):
            for measure in MEASURES:
                row[f"{measure}_{side}"] = medians[measure].get((pop, r.function), np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_by_function(fn: pd.DataFrame, min_points: int) -> pd.DataFrame:
    """Where both populations found the same f (>= min_points points each): is SGD's instance
    of f larger or smaller in each measure than the posterior's? Sign test over functions."""
    rows = []
    for setting, g in fn.groupby("setting", sort=False):
        both = g[(g["points_sgd"] >= min_points) & (g["points_bayes"] >= min_points)]
        for measure in MEASURES:
            d = finite(both[f"{measure}_sgd"] - both[f"{measure}_bayes"])
            d = d[d != 0]
            larger = int((d > 0).sum())
            p = float(sps.binomtest(larger, len(d)).pvalue) if len(d) else np.nan
            rows.append({"setting": setting, "measure": measure, "functions": len(d),
                         "frac_sgd_larger": larger / len(d) if len(d) else np.nan,
                         "median_difference": float(np.median(d)) if len(d) else np.nan, "p_sign_test": p,
                         "min_points": min_points})
    return stats.with_q_values(pd.DataFrame(rows), "p_sign_test")


def in_accessibility(fn: pd.DataFrame, threshold: int, min_points: int) -> pd.Series:
    """The functions E6 uses: well sampled by both populations and with posterior points."""
    return (fn["count_sgd"] >= threshold) & (fn["count_bayes"] >= threshold) & (fn["points_bayes"] >= min_points)


def accessibility(fn: pd.DataFrame, threshold: int, min_points: int, rng: np.random.Generator, boot: int,
                  confidence: float) -> pd.DataFrame:
    """E6 and E4's basin size against probability: over functions with >= threshold counts in both
    populations and >= min_points posterior points, the Spearman correlation of each measure (the
    posterior's instances of f, so the same x for every setting) with log(P_SGD / P_B), log P_B
    and log P_SGD, with bootstrap intervals over functions."""
    rows = []
    for setting, g in fn.groupby("setting", sort=False):
        ok = g[in_accessibility(g, threshold, min_points)]
        targets = {"log_ratio": np.log(ok["p_sgd"] / ok["p_bayes"]), "log_p_bayes": np.log(ok["p_bayes"]),
                   "log_p_sgd": np.log(ok["p_sgd"])}
        for measure in MEASURES:
            x = ok[f"{measure}_bayes"].to_numpy(float)
            for target, y in targets.items():
                y = y.to_numpy(float)
                both = np.isfinite(x) & np.isfinite(y)
                if both.sum() >= 5:
                    rho, lo, hi = stats.spearman_ci(x[both], y[both], rng, boot, confidence)
                else:
                    rho = lo = hi = np.nan
                rows.append({"setting": setting, "measure": measure, "target": target, "functions": int(both.sum()),
                             "spearman": rho, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def geometry_macros(out: dict[str, pd.DataFrame]) -> dict[str, object]:
    """Paper numbers from the geometry tables (names built from population, measure, statistic)."""
    from analysis.macros import macro_name, source

    m: dict[str, object] = {}
    ident = out.get("geometry_identity", pd.DataFrame(columns=["state", "loss"]))
    for (state, loss), g in ident.groupby(["state", "loss"], sort=False):
        k, src = lambda *p: macro_name("Identity", state, loss, *p), source("geometry_identity.csv", state=state, loss=loss)
        m |= {k("MaxErr"): src(float(g["max_rel_error"].max()), "max of max_rel_error"),
              k("MedianErr"): src(float(g["median_rel_error"].median()), "median of median_rel_error"),
              k("MaxResidual"): src(float(g["max_rel_residual"].max()), "max of max_rel_residual"),
              k("MaxLoss"): src(float(g["max_loss"].max()), "max of max_loss"),
              k("Points"): src(int(g["points"].sum()), "sum of points"),
              k("NotReached"): src(int(g["not_reached"].sum()), "sum of not_reached")}
    failures = out["hessian_failures"]
    for loss in HESSIAN_LOSSES:
        column = f"hess_{loss}_not_converged"
        m[macro_name("Geo", "hess", loss, "not_converged")] = source("hessian_failures.csv")(
            int(failures[column].sum()), f"sum of {column}")
    censoring = out["radius_censoring"]
    for r in censoring.itertuples():
        k, src = lambda *p: macro_name("Geo", r.population, *p), source("radius_censoring.csv", population=r.population)
        m |= {k("DirectionsCensored"): src(float(r.directions_censored), "directions_censored"),
              k("PointsMedianCensored"): src(int(r.points_median_censored), "points_median_censored")}
    src = source("radius_censoring.csv")
    m["GeoDirectionsCensoredMax"] = src(float(censoring["directions_censored"].max()), "max of directions_censored")
    m["GeoPointsMedianCensored"] = src(int(censoring["points_median_censored"].sum()), "sum of points_median_censored")
    for r in out["geometry_summary"].itertuples():
        src = source("geometry_summary.csv", population=r.population, measure=r.measure)
        m |= {macro_name("Geo", r.population, r.measure, stat): src(float(getattr(r, column)), column)
              for stat, column in (("Median", "median"), ("Min", "min"), ("Max", "max"))}
    for r in out["geometry_compare"].itertuples():
        k = lambda *p: macro_name("Geo", r.population, r.measure, *p)
        src = source("geometry_compare.csv", population=r.population, measure=r.measure)
        m |= {k("ProbGreater"): src(float(r.prob_greater), "prob_greater"), k("PValue"): src(float(r.p_value), "p_value"),
              k("QValue"): src(float(r.q_value), "q_value"),
              k("MedianDiff"): src(float(r.median_difference), "median_difference"),
              k("MedianDiffLo"): src(float(r.ci_low), "ci_low"), k("MedianDiffHi"): src(float(r.ci_high), "ci_high")}
    for r in out["geometry_paired"].itertuples():
        k = lambda *p: macro_name("Paired", r.setting, r.measure, *p)
        src = source("geometry_paired.csv", setting=r.setting, measure=r.measure)
        m |= {k("Functions"): src(int(r.functions), "functions"),
              k("FracLarger"): src(float(r.frac_sgd_larger), "frac_sgd_larger"),
              k("PValue"): src(float(r.p_sign_test), "p_sign_test")}
    for r in out["accessibility"].itertuples():
        k = lambda *p: macro_name("Access", r.setting, r.measure, r.target, *p)
        src = source("accessibility.csv", setting=r.setting, measure=r.measure, target=r.target)
        m |= {k(): src(float(r.spearman), "spearman"), k("Lo"): src(float(r.ci_low), "ci_low"),
              k("Hi"): src(float(r.ci_high), "ci_high")}
        m[macro_name("Access", r.setting, "Functions")] = src(int(r.functions), "functions")
    m |= summary_macros(out)
    cost, src = out["geometry_cost"].iloc[0], source("geometry_cost.csv")
    m |= {"GeoPoints": src(int(cost["points"]), "points"), "GeoNParams": src(int(cost["n_params"]), "n_params")}
    return m


def summary_macros(out: dict[str, pd.DataFrame], alpha: float = 0.05) -> dict[str, object]:
    """Ranges over the SGD settings and counts of settings with a significant shift (Benjamini-
    Hochberg q < alpha over every comparison of the table), per measure, so the paper's sentences
    hold whatever the settings are; with the number of comparisons in each family."""
    from analysis.macros import macro_name, source

    m: dict[str, object] = {}
    comp = out["geometry_compare"]
    sgd = comp[~comp["population"].str.startswith("bayes_")]
    for measure, g in sgd.groupby("measure", sort=False):
        k = lambda *p: macro_name("Geo", measure, *p)
        src = source("geometry_compare.csv", "population!=bayes_*", measure=measure)
        sig = g["q_value"] < alpha
        m |= {k("ProbGreaterMin"): src(float(g["prob_greater"].min()), "min of prob_greater"),
              k("ProbGreaterMax"): src(float(g["prob_greater"].max()), "max of prob_greater"),
              k("SgdLarger"): src(int((sig & (g["prob_greater"] > 0.5)).sum()),
                                  f"rows with q_value < {alpha}, prob_greater > 0.5"),
              k("SgdSmaller"): src(int((sig & (g["prob_greater"] < 0.5)).sum()),
                                   f"rows with q_value < {alpha}, prob_greater < 0.5")}
    m["GeoNumSgd"] = source("geometry_compare.csv", "population!=bayes_*")(int(sgd["population"].nunique()),
                                                                            "number of populations")
    m["GeoComparisons"] = source("geometry_compare.csv")(int(comp["comparisons"].iat[0]) if len(comp) else 0,
                                                         "comparisons (first row)")
    paired = out["geometry_paired"]
    for measure, g in paired.groupby("measure", sort=False):
        k, src = lambda *p: macro_name("Paired", measure, *p), source("geometry_paired.csv", measure=measure)
        sig = g["q_value"] < alpha
        m |= {k("FracLargerMin"): src(float(g["frac_sgd_larger"].min()), "min of frac_sgd_larger"),
              k("FracLargerMax"): src(float(g["frac_sgd_larger"].max()), "max of frac_sgd_larger"),
              k("FunctionsMin"): src(int(g["functions"].min()), "min of functions"),
              k("FunctionsMax"): src(int(g["functions"].max()), "max of functions"),
              k("SgdLarger"): src(int((sig & (g["frac_sgd_larger"] > 0.5)).sum()),
                                  f"rows with q_value < {alpha}, frac_sgd_larger > 0.5"),
              k("SgdSmaller"): src(int((sig & (g["frac_sgd_larger"] < 0.5)).sum()),
                                   f"rows with q_value < {alpha}, frac_sgd_larger < 0.5")}
    m["PairedComparisons"] = source("geometry_paired.csv")(int(paired["comparisons"].iat[0]) if len(paired) else 0,
                                                           "comparisons (first row)")
    acc = out["accessibility"]
    for (measure, target), g in acc.groupby(["measure", "target"], sort=False):
        k = lambda *p: macro_name("Access", measure, target, *p)
        src = source("accessibility.csv", measure=measure, target=target)
        m |= {k("Min"): src(float(g["spearman"].min()), "min of spearman"),
              k("Max"): src(float(g["spearman"].max()), "max of spearman"),
              k("Positive"): src(int((g["ci_low"] > 0).sum()), "rows with ci_low > 0"),
              k("Negative"): src(int((g["ci_high"] < 0).sum()), "rows with ci_high < 0")}
    src = source("accessibility.csv")
    m["AccessFunctionsMin"] = src(int(acc["functions"].min()), "min of functions")
    m["AccessFunctionsMax"] = src(int(acc["functions"].max()), "max of functions")
    return m
