"""Shared by the figure scripts: arguments, reading analysis tables, style, and saving.
Figures read tables written by `python -m analysis` only; they never recompute statistics."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.latex import ESTIMATOR_NAMES  # noqa: E402,F401  (the estimators' display names, for every figure)
from study.config import load  # noqa: E402


def setup(description: str) -> tuple[Path, Path]:
    """Parse --config/--results; return (tables directory, figures directory)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True)
    parser.add_argument("--results", default="results")
    args = parser.parse_args()
    name = load(args.config).name
    root = Path(args.results) / name
    sns.set_theme(context="paper", style="ticks", palette="colorblind", font_scale=1.0)
    return root / "tables", root / "figures"


def read(tables: Path, name: str) -> pd.DataFrame:
    path = tables / f"{name}.csv"
    if not path.exists():
        raise SystemExit(f"error: {path} missing; run `python -m analysis --config ...` first")
    return pd.read_csv(path, dtype={"function": str})


def save(fig, out_dir: Path, name: str) -> None:
    """Write <name>.pdf and <name>.png (each to a temporary name, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for ext, kwargs in (("png", {"dpi": 200}), ("pdf", {})):
        tmp = out_dir / f".{name}.tmp.{ext}"
        fig.savefig(tmp, bbox_inches="tight", **kwargs)
        os.replace(tmp, out_dir / f"{name}.{ext}")
    plt.close(fig)
    print(f"wrote {out_dir / name}.pdf/.png")


def scatter_panels(seen: pd.DataFrame, x: str, above: pd.Series, agreement: pd.DataFrame, comparison: str,
                   xlabel: str, note: str):
    """P_SGD (y) against a P_B estimate (column x), log-log, one panel per SGD setting, with y = x.
    Filled points (coloured by test error) are those in `above`; each title gives the setting's
    r_log of `comparison` from agreement.csv, beside its matched floor and with the permutation p where there is one
    (against a sampled reference) or with its interval (against EP). Returns the figure."""
    import numpy as np

    # every setting gets a panel, also one that shares no function with the reference (empty)
    settings = list(dict.fromkeys(agreement.loc[agreement["comparison"] == comparison, "setting"]))
    lo = 10 ** np.floor(np.log10(min(seen["p_sgd"].min(), seen[x].min()))) if len(seen) else 1e-4
    ncol = min(3, len(settings))
    nrow = -(-len(settings) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.4 * nrow), squeeze=False, sharex=True, sharey=True)
    for ax, setting in zip(axes.flat, settings):
        mine = seen["setting"] == setting
        filled, hollow = seen[mine & above], seen[mine & ~above]
        sc = ax.scatter(filled[x], filled["p_sgd"], c=filled["test_error"], cmap="viridis", vmin=0, vmax=1, s=9, lw=0)
        ax.scatter(hollow[x], hollow["p_sgd"], facecolors="none", edgecolors="0.6", s=9, lw=0.5)
        ax.plot([lo, 1], [lo, 1], "k--", lw=0.8)
        ax.set(xscale="log", yscale="log", xlim=(lo, 1), ylim=(lo, 1))
        r = agreement[(agreement["comparison"] == comparison) & (agreement["setting"] == setting)
                      & (agreement["statistic"] == "pearson_log")].iloc[0]
        if "floor" in r and pd.notna(r["floor_n_a"]):  # matched comparison: beside its floor, with the test
            two = lambda x: f"{x:.2f}" if np.isfinite(x) else "n/a"  # n/a: < 3 functions common at this n
            text = f"$r_{{\\log}}$ = {two(r.value)} (floor {two(r.floor)})\nn = {int(r.n_a)}"
            text += f", p = {r.p_value:.2g}" if pd.notna(r.p_value) else ""  # no test beside ep_scatter's floor
        else:  # against a computed P_B: the bootstrap interval
            text = f"$r_{{\\log}}$ = {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
        if not mine.any():
            ax.text(0.5, 0.5, "no function found by both", transform=ax.transAxes, ha="center", fontsize=7)
        ax.set_title(f"{setting}\n{text}", fontsize=7)
    for ax in axes.flat[len(settings):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$P_{SGD}(f\mid S)$")
    fig.colorbar(sc, ax=axes, shrink=0.6, label="test error on E")
    fig.suptitle(note, fontsize=8, y=1.0 + 0.12 / nrow)  # above the three-line panel titles
    return fig
