"""Command line: python -m study <stage> --config configs/<file>.toml"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from study.config import ConfigError, load
from study.store import StaleResultsError

STAGES = ("check", "sample", "train")


def load_or_report(path: str):
    """The validated config at `path`, or None after printing why it cannot be used."""
    try:
        return load(path)
    except ConfigError as err:
        print(f"error: bad config {path}: {err}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__)
    parser.add_argument("stage", choices=STAGES, help="check: validate the config; sample: rejection sampler "
                        "(P_B); train: SGD population (P_SGD)")
    parser.add_argument("--config", required=True, help="experiment config (TOML), e.g. configs/e1_quick.toml")
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--fresh", action="store_true", help="delete this stage's earlier raw results first")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    if args.stage == "check":
        print(f"{args.config}: ok ({cfg.name}, seed {cfg.seed})")
        return 0

    from study import stages  # heavy imports (jax, neural-tangents) only after the config is valid

    raw = stages.raw_dir(cfg, Path(args.results))
    if args.fresh:
        shutil.rmtree(raw / {"sample": "rejection", "train": "sgd"}[args.stage], ignore_errors=True)
    run = {"sample": stages.run_rejection, "train": stages.run_sgd}[args.stage]
    try:
        out = run(cfg, Path(args.results), progress=not args.no_progress)
    except StaleResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
