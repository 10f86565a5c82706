"""Accessibility (E6) and basin size against probability (E4), function by function: log(P_SGD/P_B)
against the posterior's sharpness and feature count for that function (medians over the reference
Bayesian population's points with that f), and the basin radius against log P_B. Functions with at
least the count threshold in both populations and a few posterior points (column in_accessibility). Reads tables/geometry_by_function.csv and
tables/accessibility.csv."""
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from common import read, save, setup

PANELS = [("hess_mse_top", "log_ratio", "top Hessian eigenvalue, MSE", True),
          ("ntk_S_entropy_rank", "log_ratio", "features on S", False),
          ("gn_mse_log_det", "log_ratio", r"$\sum_i \log(1+\lambda_i/\delta)$, GN", False),
          ("log_radius_median", "log_p_bayes", "median log basin radius", False)]
YLABEL = {"log_ratio": r"$\log(P_{SGD}/P_B)$", "log_p_bayes": r"$\log P_B(f\mid S)$"}
tables, out = setup(__doc__)
fn, acc = read(tables, "geometry_by_function"), read(tables, "accessibility")
fn = fn[fn["in_accessibility"]]
fig, axes = plt.subplots(1, len(PANELS), figsize=(3.0 * len(PANELS), 3.2))
for ax, (measure, target, label, log) in zip(axes, PANELS):
    d = fn.copy()
    d["log_ratio"] = np.log(d["p_sgd"] / d["p_bayes"])
    d["log_p_bayes"] = np.log(d["p_bayes"])
    d = d[np.isfinite(d[target]) & np.isfinite(d[f"{measure}_bayes"])]
    if d.empty:
        ax.text(0.5, 0.5, "no function passes\nthe count threshold", transform=ax.transAxes, ha="center", fontsize=8)
    else:
        sns.scatterplot(d, x=f"{measure}_bayes", y=target, hue="setting", s=9, lw=0, alpha=0.7, ax=ax,
                        legend=ax is axes[-1])
    if log and not d.empty:
        ax.set_xscale("log")
    rows = acc[(acc["measure"] == measure) & (acc["target"] == target)]
    text = "\n".join(f"{r.setting}: $\\rho$ = {r.spearman:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in rows.itertuples())
    ax.set_title(text, fontsize=6)
    ax.set(xlabel=label, ylabel=YLABEL[target])
    if target == "log_ratio":
        ax.axhline(0, color="k", lw=0.6, ls="--")
if axes[-1].get_legend() is not None:
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title=None)
fig.suptitle("x: median over the posterior's points with that function; one point per function and setting",
             fontsize=8, y=1.02)
fig.tight_layout()
save(fig, out, "fig_accessibility")
