"""Every run and every posterior sample seen through EP's log10 P_B of its function (large |E|,
where most functions are seen once): per SGD setting, its mass in bins of log10 P_B (one decade)
against the posterior samples', with the binned TV and the shift of the mean log10 P_B against each
posterior and their matched noise floors in the title. Reads tables/ep_mass.csv and tables/ep_view.csv."""
import matplotlib.pyplot as plt
import numpy as np

from common import read, save, setup

tables, out = setup(__doc__)
mass, view = read(tables, "ep_mass"), read(tables, "ep_view")
references = list(dict.fromkeys(view["reference"].dropna()))
reference = references[0]
settings = list(dict.fromkeys(mass.loc[mass["kind"] == "sgd", "population"]))
posteriors = list(dict.fromkeys(mass.loc[mass["kind"] == "posterior", "population"]))
ncol = min(3, len(settings))
nrow = -(-len(settings) // ncol)
fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False, sharex=True, sharey=True)
scored = mass[~mass["ep_failed"]]
for ax, setting in zip(axes.flat, settings):
    for population, style in [(p, dict(color="0.35", ls="--" if p == reference else ":", lw=1.2)) for p in posteriors] \
            + [(setting, dict(color="C0", lw=1.6))]:
        rows = scored[scored["population"] == population].sort_values("log10_pb_low")
        edges = np.r_[rows["log10_pb_low"].to_numpy(), rows["log10_pb_high"].to_numpy()[-1:]]
        ax.stairs(rows["mass"].to_numpy(), edges, label=population, **style)
    failed = mass.loc[(mass["population"] == setting) & mass["ep_failed"], "mass"].sum()
    lines = [setting]
    for posterior in references:
        rows = view[(view["comparison"] == f"sgd_vs_{posterior}_ep") & (view["setting"] == setting)].set_index("statistic")
        tv, shift = rows.loc["tv_ep_bins"], rows.loc["mean_log10_pb_shift"]
        lines.append(f"{posterior}, n={int(tv.n_a)}: TV {tv.value:.2f} [{tv.floor:.2f}] p={tv.p_value:.2g}, "
                     f"shift {shift.value:+.2f} [{shift.floor:+.2f}]")
    if failed:
        lines.append(f"EP failed on {failed:.1%} of the runs")
    ax.set_title("\n".join(lines), fontsize=6)
for ax in axes.flat[len(settings):]:
    ax.axis("off")
for ax in axes[-1]:
    ax.set_xlabel(r"$\log_{10} P_B(f\mid S)$ (NNGP, EP)")
for ax in axes[:, 0]:
    ax.set_ylabel("fraction of runs / samples")
axes.flat[0].legend(fontsize=6, loc="upper left")
fig.suptitle(f"SGD (solid) against the posterior ({reference}: dashed; others dotted), binned by EP's $P_B$;"
             " [brackets]: floor, two posterior halves at the same n",
             fontsize=8, y=1.0 + 0.12 / nrow)
fig.tight_layout()
save(fig, out, "fig_ep_mass")
