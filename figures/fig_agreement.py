"""Agreement against the noise floor at matched sample size: for every SGD setting and statistic,
SGD against the reference's half B (filled) beside the reference's half A against half B (open),
both at the same n (each side subsampled without replacement to the smallest effective size), as
the mean and sd over the subsamples; the text gives the TV effect (comparison minus floor) with its
interval and the two-sample p-value. Reads tables/agreement.csv."""
import matplotlib.pyplot as plt
import numpy as np

from common import read, save, setup

STATS = {"pearson_log": r"Pearson $r$ of $\log P$", "spearman_log": r"Spearman $\rho$ of $\log P$",
         "slope_log": r"slope of $\log P_{SGD}$ on $\log P_B$",
         "tv": "total variation", "kl": r"KL$(P_{SGD}\,\|\,P_B)$ (nats)"}
tables, out = setup(__doc__)
agreement = read(tables, "agreement")
matched = agreement[agreement["comparison"] == "sgd_vs_bayes"]
settings = list(dict.fromkeys(matched["setting"]))
y = np.arange(len(settings))
fig, axes = plt.subplots(1, len(STATS), figsize=(2.4 * len(STATS), 0.45 * len(settings) + 2.2), sharey=True)
for ax, (stat, label) in zip(axes, STATS.items()):
    rows = matched[matched["statistic"] == stat].set_index("setting").reindex(settings)
    for column, sd, style, name in (("floor", "floor_sd", dict(mfc="white", color="0.45"), "floor: Bayes A vs B"),
                                    ("value", "value_sd", dict(color="C0"), "SGD vs Bayes B")):
        v, e = rows[column].to_numpy(float), rows[sd].to_numpy(float)
        ok = np.isfinite(v)
        offset = -0.15 if column == "floor" else 0.15
        ax.errorbar(v[ok], y[ok] + offset, xerr=np.nan_to_num(e[ok]), fmt="o", ms=4, capsize=2, label=name, **style)
    for yi in y[~np.isfinite(rows["value"].to_numpy(float))]:
        ax.text(0.5, yi, "n/a", transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=7)
    ax.set(yticks=y, yticklabels=[f"{s}\n(n={int(rows.loc[s, 'n_a'])}, p={rows.loc[s, 'p_value']:.2g})"
                                  for s in settings], xlabel=label)
axes[0].invert_yaxis()
fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.02))
fig.suptitle("SGD vs Bayes beside the Bayes noise floor, both at matched n (mean and sd over subsamples)", fontsize=8)
fig.tight_layout(rect=(0, 0.06, 1, 0.95))
save(fig, out, "fig_agreement")
