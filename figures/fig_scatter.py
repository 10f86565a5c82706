"""Headline: P_SGD(f|S) against P_B(f|S), log-log, one panel per SGD setting, with y = x.
Reads tables/joint.csv (counts and probabilities per function) and tables/agreement.csv (r_log)."""
import numpy as np
import matplotlib.pyplot as plt

from common import read, save, setup

tables, out = setup(__doc__)
joint, agreement = read(tables, "joint"), read(tables, "agreement")
seen = joint[(joint["count_sgd"] > 0) & (joint["count_bayes"] > 0)]
settings = list(dict.fromkeys(joint["setting"]))
threshold = int(agreement["threshold"].iat[0])
REFERENCE = {"bayes_rejection": "rejection", "bayes_mcmc": "MCMC"}[joint["reference"].iat[0]]
lo = 10 ** np.floor(np.log10(min(seen["p_sgd"].min(), seen["p_bayes"].min())))

ncol = min(3, len(settings))
nrow = -(-len(settings) // ncol)
fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.1 * nrow), squeeze=False, sharex=True, sharey=True)
for ax, setting in zip(axes.flat, settings):
    g = seen[seen["setting"] == setting]
    above = (g["count_sgd"] >= threshold) & (g["count_bayes"] >= threshold)
    sc = ax.scatter(g.loc[above, "p_bayes"], g.loc[above, "p_sgd"], c=g.loc[above, "test_error"], cmap="viridis",
                    vmin=0, vmax=1, s=9, lw=0)
    ax.scatter(g.loc[~above, "p_bayes"], g.loc[~above, "p_sgd"], facecolors="none", edgecolors="0.6", s=9, lw=0.5)
    ax.plot([lo, 1], [lo, 1], "k--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlim=(lo, 1), ylim=(lo, 1))
    r = agreement.query("comparison == 'sgd_vs_bayes' and setting == @setting and statistic == 'pearson_log'").iloc[0]
    ax.set_title(f"{setting}\n$r_{{\\log}}$ = {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]", fontsize=8)
for ax in axes.flat[len(settings):]:
    ax.axis("off")
for ax in axes[-1]:
    ax.set_xlabel(rf"$P_B(f\mid S)$ ({REFERENCE})")
for ax in axes[:, 0]:
    ax.set_ylabel(r"$P_{SGD}(f\mid S)$")
fig.colorbar(sc, ax=axes, shrink=0.6, label="test error on E")
fig.suptitle(f"filled: $\\geq${threshold} counts in both populations; hollow: fewer", fontsize=8, y=1.0)
save(fig, out, "fig_scatter")
