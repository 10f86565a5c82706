"""P_SGD(f|S) against the NNGP's P_B(f|S) by expectation propagation (as Mingard et al. computed
it), one panel per SGD setting, with y = x. EP gives a probability to functions no sampler saw
often, so this plot reaches further down than the sampled one. Reads tables/joint.csv and
tables/agreement.csv."""
import numpy as np

from common import read, save, scatter_panels, setup

tables, out = setup(__doc__)
joint, agreement = read(tables, "joint"), read(tables, "agreement")
if "log_p_ep" not in joint:
    raise SystemExit("error: joint.csv has no EP column: the config has no [nngp] section")
seen = joint[(joint["count_sgd"] > 0) & np.isfinite(joint["log_p_ep"])].assign(p_ep=lambda d: np.exp(d["log_p_ep"]))
threshold = int(agreement["threshold"].iat[0])
fig = scatter_panels(seen, "p_ep", seen["count_sgd"] >= threshold, agreement, "sgd_vs_nngp_ep",
                     r"$P_B(f\mid S)$ (NNGP, EP)", f"filled: $\\geq${threshold} SGD counts; hollow: fewer")
save(fig, out, "fig_sgd_vs_ep")
