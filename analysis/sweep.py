"""E5 tables from raw/sweep.csv: each network variant's solutions (and each width's posterior
points) summarised, and whether fewer features go with broader basins, point by point."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.geometry import finite, mask_unconverged
from analysis.stats import spearman_ci

MEASURES = ("ntk_S_entropy_rank", "ntk_X_entropy_rank", "hess_mse_top", "hess_ce_top", "gn_mse_log_det",
            "log_radius_median", "log_radius_relative", "theta_norm")
FEATURES = ("ntk_S_entropy_rank", "ntk_X_entropy_rank")
BASINS = ("log_radius_median", "gn_mse_log_det", "hess_mse_top")


def with_derived(sweep: pd.DataFrame) -> pd.DataFrame:
    """Adds log_radius_relative = median log radius - log |theta|: the basin radius in units of the
    point's own norm, which weight decay changes (so the absolute radius alone would mislead).
    Hessian numbers of points whose Lanczos run did not converge are blanked (mask_unconverged)."""
    sweep = mask_unconverged(sweep)
    return sweep.assign(log_radius_relative=sweep["log_radius_median"] - np.log(sweep["theta_norm"]))


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: runs, runs at zero training error at the end, median steps, and the
    median and quartiles of each measure over its zero-error points."""
    rows = []
    for variant, g in sweep.groupby("variant", sort=False):
        ok = g[g["fitted"]]
        row = {"variant": variant, "group": g["group"].iat[0], "population": g["population"].iat[0],
               "widths": g["widths"].iat[0], "weight_decay": float(g["weight_decay"].iat[0]),
               "n_params": int(g["n_params"].iat[0]), "runs": len(g), "fitted": len(ok),
               "median_steps": float(ok["steps"].median()) if len(ok) else np.nan}
        for m in MEASURES:
            x = finite(ok[m])
            q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75]) if len(x) else (np.nan,) * 3
            row |= {f"{m}_median": float(q50), f"{m}_q25": float(q25), f"{m}_q75": float(q75)}
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_correlation(sweep: pd.DataFrame, rng: np.random.Generator, boot: int, confidence: float) -> pd.DataFrame:
    """Spearman correlation, over zero-error points, of each feature count with each basin measure:
    pooled over all SGD variants (scope all_sgd), pooled over the posterior points of every width
    (all_bayes), and within each variant; bootstrap intervals over points."""
    ok = sweep[sweep["fitted"]]
    scopes = [("all_sgd", ok[ok["population"] == "sgd"]), ("all_bayes", ok[ok["population"] == "bayes"])]
    scopes += list(ok.groupby("variant", sort=False))
    rows = []
    for scope, g in scopes:
        if len(g) < 10:
            continue
        for x in FEATURES:
            for y in BASINS:
                both = g[[x, y]].dropna()
                rho, lo, hi = spearman_ci(both[x].to_numpy(float), both[y].to_numpy(float), rng, boot, confidence)
                rows.append({"scope": scope, "x": x, "y": y, "points": len(both), "spearman": rho,
                             "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def sweep_macros(summary: pd.DataFrame, corr: pd.DataFrame) -> dict[str, object]:
    from analysis.macros import macro_name, source

    m: dict[str, object] = {}
    for r in summary.itertuples():
        k = lambda *p: macro_name("Sweep", r.variant, *p)
        src = source("sweep_summary.csv", variant=r.variant, population=r.population)
        m |= {k("Runs"): src(int(r.runs), "runs"), k("Fitted"): src(int(r.fitted), "fitted"),
              k("Steps"): src(float(r.median_steps), "median_steps")}
        for measure in MEASURES:
            m[k(measure)] = src(float(getattr(r, f"{measure}_median")), f"{measure}_median")
    for r in corr[corr["scope"].isin(["all_sgd", "all_bayes"])].itertuples():
        k = lambda *p: macro_name("SweepCorr", r.scope, r.x, r.y, *p)
        src = source("sweep_correlation.csv", scope=r.scope, x=r.x, y=r.y)
        m |= {k(): src(float(r.spearman), "spearman"), k("Lo"): src(float(r.ci_low), "ci_low"),
              k("Hi"): src(float(r.ci_high), "ci_high")}
    sgd, src = summary[summary["population"] == "sgd"], source("sweep_summary.csv", population="sgd")
    m["SweepVariants"] = src(len(sgd), "number of rows")
    m["SweepNotFitted"] = src(int((sgd["runs"] - sgd["fitted"]).sum()), "sum of runs - fitted")
    return m
