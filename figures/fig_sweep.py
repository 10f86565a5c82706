"""E5, connection costs: features and basin size of the SGD solutions of each network variant
(weight decay; a narrow middle layer), trained for at least a fixed number of steps, beside the
posterior's points for each width (grey). Reads tables/sweep_points.csv and
tables/sweep_correlation.csv."""
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import NullFormatter

from common import read, save, setup

PANELS = {"ntk_S_entropy_rank": ("features on S", False), "ntk_X_entropy_rank": ("features on all inputs", False),
          "gn_mse_log_det": (r"$\sum_i \log(1+\lambda_i/\delta)$ (GN, MSE)", False),
          "hess_mse_top": ("top Hessian eigenvalue (MSE)", True), "log_radius_median": ("median log basin radius", False),
          "log_radius_relative": (r"median log radius $-\log|\theta|$", False)}
tables, out = setup(__doc__)
points = read(tables, "sweep_points")
points = points[points["fitted"]].copy()
points["label"] = points["variant"] + " (" + points["widths"] + ")"
order = list(dict.fromkeys(points["label"]))
palette = {g: c for g, c in zip(dict.fromkeys(points["group"]), sns.color_palette("colorblind"))} | {"posterior": "0.7"}
corr = read(tables, "sweep_correlation").set_index(["scope", "x", "y"])
fig, axes = plt.subplots(1, len(PANELS), figsize=(2.9 * len(PANELS), 0.32 * len(order) + 1.4), sharey=True)
for ax, (measure, (label, log)) in zip(axes, PANELS.items()):
    sns.boxplot(points, x=measure, y="label", order=order, hue="group", palette=palette, ax=ax, fliersize=1,
                linewidth=0.6, log_scale=log, legend=ax is axes[-1], dodge=False)
    ax.set(xlabel=label, ylabel="")
    ax.xaxis.set_minor_formatter(NullFormatter())
if axes[-1].get_legend() is not None:
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title=None)
key = ("all_sgd", "ntk_X_entropy_rank", "log_radius_median")
if key in corr.index:
    r = corr.loc[key]
    fig.suptitle(f"all SGD solutions: Spearman(features on all inputs, median log radius) = {r.spearman:.2f} "
                 f"[{r.ci_low:.2f}, {r.ci_high:.2f}]", fontsize=8)
fig.tight_layout()
save(fig, out, "fig_sweep")
