"""Function-level mixing of the MCMC chains: for each chain population (rows), the chain-averaged
trace of the test error and of the indicators of its three most frequent functions (columns),
one line per chain group (two independent sets of chains), against the kept-sample index; dashed:
the same quantity under exact rejection where it ran. Mixed chains give two flat, overlapping
curves on the dashed line; chains still drifting from where they started do not. Reads
tables/mcmc_traces.csv."""
import matplotlib.pyplot as plt

from common import read, save, setup

tables, out = setup(__doc__)
traces = read(tables, "mcmc_traces")
populations = list(dict.fromkeys(traces["population"]))
summaries = {p: list(dict.fromkeys(traces.loc[traces["population"] == p, "summary"])) for p in populations}
ncols = max(len(s) for s in summaries.values())
fig, axes = plt.subplots(len(populations), ncols, figsize=(2.6 * ncols, 2.1 * len(populations)), squeeze=False)
for row, pop in zip(axes, populations):
    for ax, summary in zip(row, summaries[pop]):
        t = traces[(traces["population"] == pop) & (traces["summary"] == summary)]
        for group, g in t.groupby("group"):
            ax.plot(g["sample"], g["chain_mean"], lw=0.9, label=f"chain group {group}")
        ref = t["rejection_value"].iat[0]
        if ref == ref:  # not NaN
            ax.axhline(ref, color="k", ls="--", lw=0.8, label="rejection")
        ax.set_title(f"{pop}: {summary}", fontsize=7)
        ax.set_xlabel("kept sample", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in row[len(summaries[pop]):]:
        ax.axis("off")
axes[0, 0].set_ylabel("chain mean", fontsize=7)
fig.legend(*axes[0, 0].get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.04))
fig.tight_layout(rect=(0, 0.04, 1, 1))
save(fig, out, "fig_mcmc_traces")
