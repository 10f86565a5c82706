"""P_SGD(f|S) against the NNGP's P_B(f|S) by expectation propagation (as Mingard et al. computed
it), one panel per SGD setting, with y = x. EP gives a probability to functions no sampler saw
often, so this plot reaches further down than the sampled one. Reads tables/joint.csv and
tables/agreement.csv."""
import numpy as np
import matplotlib.pyplot as plt

from common import read, save, setup

tables, out = setup(__doc__)
joint, agreement = read(tables, "joint"), read(tables, "agreement")
if "log_p_ep" not in joint:
    raise SystemExit("error: joint.csv has no EP column: the config has no [nngp] section")
seen = joint[(joint["count_sgd"] > 0) & np.isfinite(joint["log_p_ep"])].assign(p_ep=lambda d: np.exp(d["log_p_ep"]))
settings = list(dict.fromkeys(joint["setting"]))
threshold = int(agreement["threshold"].iat[0])
lo = 10 ** np.floor(np.log10(min(seen["p_sgd"].min(), seen["p_ep"].min())))

ncol = min(3, len(settings))
nrow = -(-len(settings) // ncol)
fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.1 * nrow), squeeze=False, sharex=True, sharey=True)
for ax, setting in zip(axes.flat, settings):
    g = seen[seen["setting"] == setting]
    above = g["count_sgd"] >= threshold
    sc = ax.scatter(g.loc[above, "p_ep"], g.loc[above, "p_sgd"], c=g.loc[above, "test_error"], cmap="viridis",
                    vmin=0, vmax=1, s=9, lw=0)
    ax.scatter(g.loc[~above, "p_ep"], g.loc[~above, "p_sgd"], facecolors="none", edgecolors="0.6", s=9, lw=0.5)
    ax.plot([lo, 1], [lo, 1], "k--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlim=(lo, 1), ylim=(lo, 1))
    r = agreement.query("comparison == 'sgd_vs_nngp_ep' and setting == @setting and statistic == 'pearson_log'").iloc[0]
    ax.set_title(f"{setting}\n$r_{{\\log}}$ = {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]", fontsize=8)
for ax in axes.flat[len(settings):]:
    ax.axis("off")
for ax in axes[-1]:
    ax.set_xlabel(r"$P_B(f\mid S)$ (NNGP, EP)")
for ax in axes[:, 0]:
    ax.set_ylabel(r"$P_{SGD}(f\mid S)$")
fig.colorbar(sc, ax=axes, shrink=0.6, label="test error on E")
fig.suptitle(f"filled: $\\geq${threshold} SGD counts; hollow: fewer", fontsize=8, y=1.0)
save(fig, out, "fig_sgd_vs_ep")
