"""E2 estimator cross-check: log10 P_B(f|S) of every function under each estimator against every
other (rejection and MCMC in parameter space, exact sampling and EP with the NNGP kernel), as a
scatter matrix with y = x. Reads tables/pb_estimates.csv (one row per function and estimator)."""
import numpy as np
import seaborn as sns

from common import ESTIMATOR_NAMES, read, save, setup

tables, out = setup(__doc__)
est = read(tables, "pb_estimates")
wide = est.pivot(index="function", columns="estimator", values="log10_p")
wide = wide[[c for c in ESTIMATOR_NAMES if c in wide]].rename(columns=ESTIMATOR_NAMES)
lo = np.floor(np.nanmin(wide.to_numpy()))
grid = sns.PairGrid(wide, height=1.9, corner=True)
grid.map_lower(sns.scatterplot, s=6, lw=0, alpha=0.6)
grid.map_diag(sns.histplot, bins=30, element="step")
for i, row in enumerate(grid.axes):
    for j, ax in enumerate(row):
        if ax is None:
            continue
        if i != j:
            ax.plot([lo, 0], [lo, 0], "k--", lw=0.7)
            ax.set(xlim=(lo, 0), ylim=(lo, 0))
grid.figure.suptitle(r"$\log_{10} P_B(f\mid S)$ by estimator, functions seen by any sampler", fontsize=8, y=1.01)
save(grid.figure, out, "fig_estimators")
