"""Rank-frequency (Zipf) plot: probability of the k-th most frequent function against k, for the
Bayesian posterior sample and each SGD setting. Reads tables/functions.csv."""
import matplotlib.pyplot as plt
import seaborn as sns

from common import read, save, setup

tables, out = setup(__doc__)
functions = read(tables, "functions").sort_values(["population", "count"], ascending=[True, False])
functions["rank"] = functions.groupby("population").cumcount() + 1
order = ["bayes_rejection"] + [p for p in dict.fromkeys(functions["population"]) if p != "bayes_rejection"]
fig, ax = plt.subplots(figsize=(4.6, 3.4))
sns.lineplot(data=functions, x="rank", y="probability", hue="population", hue_order=order, ax=ax,
             drawstyle="steps-post", lw=1)
ax.set(xscale="log", yscale="log", xlabel="rank of function", ylabel=r"probability $P(f\mid S)$")
ax.legend(fontsize=7, title=None)
save(fig, out, "fig_rankfreq")
