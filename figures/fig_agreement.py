"""Agreement against the noise floor: each statistic for every SGD setting (SGD subsampled to the
size of one Bayes half, against Bayes half B) next to Bayes half A against half B (grey band).
Reads tables/agreement.csv."""
import matplotlib.pyplot as plt
import numpy as np

from common import read, save, setup

STATS = {"pearson_log": r"Pearson $r$ of $\log P$", "spearman_log": r"Spearman $\rho$ of $\log P$",
         "slope_log": r"slope of $\log P_{SGD}$ on $\log P_B$",
         "tv": "total variation", "kl": r"KL$(P_{SGD}\,\|\,P_B)$ (nats)"}
tables, out = setup(__doc__)
agreement = read(tables, "agreement")
matched = agreement[agreement["comparison"] == "sgd_vs_bayes_matched"]
floor = agreement[agreement["comparison"] == "bayes_vs_bayes"].set_index("statistic")
settings = list(dict.fromkeys(matched["setting"]))
fig, axes = plt.subplots(1, len(STATS), figsize=(2.4 * len(STATS), 2.9), sharey=True)
for ax, (stat, label) in zip(axes, STATS.items()):
    f = floor.loc[stat]
    if np.isfinite(f["value"]):
        ax.axvspan(f["ci_low"], f["ci_high"], color="0.85", lw=0)
        ax.axvline(f["value"], color="0.4", lw=1, label="Bayes vs Bayes")
    rows = matched[matched["statistic"] == stat].set_index("setting").reindex(settings)
    y = np.arange(len(settings))
    ok = np.isfinite(rows["value"].to_numpy())
    ax.errorbar(rows["value"][ok], y[ok], xerr=[(rows["value"] - rows["ci_low"])[ok], (rows["ci_high"] - rows["value"])[ok]],
                fmt="o", ms=4, capsize=2)
    for yi in y[~ok]:
        ax.text(0.5, yi, "n/a", transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=7)
    ax.set(yticks=y, yticklabels=settings, xlabel=label)
axes[0].invert_yaxis()
fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=1, bbox_to_anchor=(0.5, -0.08))
fig.suptitle("SGD vs Bayes at matched sample size (points, 95% CI) against the Bayes noise floor (band)", fontsize=8)
save(fig, out, "fig_agreement")
