"""P_SGD(f|S) against the NNGP's P_B(f|S) by expectation propagation (as Mingard et al. computed
it), one panel per SGD setting, with y = x. EP gives a probability to functions no sampler saw
often, so this plot reaches further down than the sampled one. Each title gives Pearson r of the
logarithms over the filled points: beside the floor of the exact NNGP posterior sample at the same
size where there is one (tables/ep_scatter.csv), else with its bootstrap interval
(tables/agreement.csv). Reads tables/joint.csv too."""
import numpy as np

from common import read, save, scatter_panels, setup

tables, out = setup(__doc__)
joint = read(tables, "joint")
if "log_p_ep" not in joint:
    raise SystemExit("error: joint.csv has no EP column: the config has no [nngp] section")
matched = (tables / "ep_scatter.csv").exists()
comparisons, name = (read(tables, "ep_scatter"), "sgd_vs_nngp_exact_ep_scatter") if matched else \
    (read(tables, "agreement"), "sgd_vs_nngp_ep")
seen = joint[(joint["count_sgd"] > 0) & np.isfinite(joint["log_p_ep"])].assign(p_ep=lambda d: np.exp(d["log_p_ep"]))
threshold = int(comparisons["threshold"].dropna().iat[0])
fig = scatter_panels(seen, "p_ep", seen["count_sgd"] >= threshold, comparisons, name,
                     r"$P_B(f\mid S)$ (NNGP, EP)", f"filled: $\\geq${threshold} SGD counts; hollow: fewer")
save(fig, out, "fig_sgd_vs_ep")
