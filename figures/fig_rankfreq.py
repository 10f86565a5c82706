"""Rank-frequency (Zipf) plot: probability of the k-th most frequent function against k, for the
Bayesian posterior sample and each SGD setting. Reads tables/functions.csv."""
import matplotlib.pyplot as plt
import seaborn as sns

from common import read, save, setup

tables, out = setup(__doc__)
functions = read(tables, "functions")
functions = functions.sort_values("count", ascending=False, kind="stable").sort_values("population", key=lambda p: p.map(
    {name: i for i, name in enumerate(dict.fromkeys(functions["population"]))}), kind="stable")
functions["rank"] = functions.groupby("population").cumcount() + 1
order = list(dict.fromkeys(functions["population"]))  # the P_B estimators first, then the SGD settings
fig, ax = plt.subplots(figsize=(4.6, 3.4))
sns.lineplot(data=functions, x="rank", y="probability", hue="population", hue_order=order, ax=ax,
             drawstyle="steps-post", lw=1)
ax.set(xscale="log", yscale="log", xlabel="rank of function", ylabel=r"probability $P(f\mid S)$")
ax.legend(fontsize=7, title=None)
save(fig, out, "fig_rankfreq")
