"""Headline: P_SGD(f|S) against P_B(f|S), log-log, one panel per SGD setting, with y = x.
Reads tables/joint.csv (counts and probabilities per function) and tables/agreement.csv (r_log)."""
from common import ESTIMATOR_NAMES, read, save, scatter_panels, setup

tables, out = setup(__doc__)
joint, agreement = read(tables, "joint"), read(tables, "agreement")
seen = joint[(joint["count_sgd"] > 0) & (joint["count_bayes"] > 0)]
threshold = int(agreement["threshold"].iat[0])
reference = ESTIMATOR_NAMES[joint["reference"].iat[0]]
above = (seen["count_sgd"] >= threshold) & (seen["count_bayes"] >= threshold)
fig = scatter_panels(seen, "p_bayes", above, agreement, "sgd_vs_bayes", rf"$P_B(f\mid S)$ ({reference})",
                     f"filled: $\\geq${threshold} counts in both populations; hollow: fewer")
save(fig, out, "fig_scatter")
