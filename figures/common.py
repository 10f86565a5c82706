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
