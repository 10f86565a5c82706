"""The Hessian = feature-Gram identity (E4): the m leading eigenvalues of the exact Hessian of the
training loss against those of its Gauss-Newton part ((2/m) Theta_S for MSE), at points trained on
to exact MSE interpolation (on the line; points whose Gauss-Newton iteration stopped short of the float32
floor are left out and counted), at the zero-classification-error points as found (MSE Hessian), and for the
cross-entropy Hessian there. Reads tables/identity_spectra.csv and
tables/geometry_identity.csv."""
import matplotlib.pyplot as plt
import seaborn as sns

from common import read, save, setup

PANELS = [("interpolated", "mse", "exact MSE interpolation"), ("as_found", "mse", "as found, MSE Hessian"),
          ("as_found", "ce", "as found, cross-entropy Hessian")]
tables, out = setup(__doc__)
spectra, summary = read(tables, "identity_spectra"), read(tables, "geometry_identity")
spectra = spectra[spectra["gn_eig"] > 0]
lo, hi = spectra[["gn_eig"]].min().iat[0] / 2, spectra[["gn_eig", "hessian_eig"]].abs().max().max() * 2
fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharex=True, sharey=True)
for ax, (state, loss, title) in zip(axes, PANELS):
    d = spectra[(spectra["state"] == state) & (spectra["loss"] == loss)]
    neg = d["hessian_eig"] <= 0
    sns.scatterplot(d[~neg], x="gn_eig", y="hessian_eig", hue="population", s=10, lw=0, ax=ax, legend=ax is axes[-1])
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    s = summary[(summary["state"] == state) & (summary["loss"] == loss)]
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="Gauss-Newton eigenvalue",
           ylabel="Hessian eigenvalue")
    left_out = f", {int(s['not_reached'].sum())} points short of it left out" if state == "interpolated" else ""
    ax.set_title(f"{title}\nmax rel. error {s['max_rel_error'].max():.1e}{left_out}\n"
                 f"({int(neg.sum())} non-positive eigenvalues not shown)", fontsize=7)
sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title=None)
save(fig, out, "fig_identity")
