"""Test error on E and (Boolean tasks) Lempel-Ziv complexity of the seen truth table against EP's
log10 P_B(f|S), for the functions SGD found (blue, every setting) and those the reference posterior
sample found (grey); each point is one function. Reads tables/joint.csv."""
import matplotlib.pyplot as plt
import numpy as np

from common import read, save, setup

tables, out = setup(__doc__)
joint = read(tables, "joint")
if "log_p_ep" not in joint:
    raise SystemExit("error: joint.csv has no EP column: the config has no [nngp] section")
joint = joint[np.isfinite(joint["log_p_ep"])].assign(log10_pb=lambda d: d["log_p_ep"] / np.log(10))
sgd = joint[joint["count_sgd"] > 0]
posterior = joint[joint["count_bayes"] > 0].drop_duplicates("function")
reference = joint["reference"].iat[0]
panels = [(c, label) for c, label in (("test_error", "test error on E"), ("lz", "LZ complexity (S and E)"))
          if c in joint]  # images have no LZ column
fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), sharex=True, squeeze=False)
axes = axes[0]
for ax, (column, label) in zip(axes, panels):
    ax.scatter(posterior["log10_pb"], posterior[column], s=4, lw=0, color="0.6", alpha=0.5,
               label=f"{reference} ({len(posterior)} functions)")
    ax.scatter(sgd["log10_pb"], sgd[column], s=4, lw=0, color="C0", alpha=0.3,
               label=f"SGD, all settings ({sgd['function'].nunique()} functions)")
    ax.set(xlabel=r"$\log_{10} P_B(f\mid S)$ (NNGP, EP)", ylabel=label)
axes[0].legend(fontsize=6, markerscale=3)
fig.suptitle("Generalisation and complexity against the posterior probability of each function found", fontsize=8)
fig.tight_layout()
save(fig, out, "fig_error_vs_pb")
