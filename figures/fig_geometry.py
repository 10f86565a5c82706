"""Geometry of the zero-error points by population (E4): effective number of features (entropy rank
of the NTK Gram on S and on all inputs), sharpness (top eigenvalue and trace of the MSE Hessian,
log-det of the Gauss-Newton part) and basin radius along random directions, one box per population.
Parameterisation: the standard one, flat theta as stored. Reads tables/geometry_points.csv."""
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import NullFormatter

from common import read, save, setup

PANELS = {"ntk_S_entropy_rank": ("features on S", False), "ntk_X_entropy_rank": ("features on all inputs", False),
          "hess_mse_top": ("top Hessian eigenvalue (MSE)", True), "hess_mse_trace": ("Hessian trace (MSE)", True),
          "gn_mse_log_det": (r"$\sum_i \log(1+\lambda_i/\delta)$ (GN, MSE)", False),
          "log_radius_median": ("median log basin radius", False)}
tables, out = setup(__doc__)
points = read(tables, "geometry_points")
order = list(dict.fromkeys(points["population"]))
fig, axes = plt.subplots(2, 3, figsize=(10, 5.6), sharey=True)
for ax, (measure, (label, log)) in zip(axes.flat, PANELS.items()):
    sns.boxplot(points, x=measure, y="population", order=order, hue="population", hue_order=order, ax=ax,
                fliersize=1.5, linewidth=0.7, log_scale=log, legend=False)
    ax.set(xlabel=label, ylabel="")
    ax.xaxis.set_minor_formatter(NullFormatter())
fig.suptitle(f"{len(points)} zero-error points; one box per population (median, quartiles)", fontsize=8)
fig.tight_layout()
save(fig, out, "fig_geometry")
