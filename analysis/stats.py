"""Agreement statistics between two sampled distributions over functions, as small pure functions
over count arrays, with multinomial bootstrap intervals (resampling runs / accepted draws)."""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats as sps

STATISTICS = ("pearson_log", "spearman_log", "slope_log", "kl", "tv", "n_common")
RANGES = {"pearson_log": (-1.0, 1.0), "spearman_log": (-1.0, 1.0), "kl": (0.0, np.inf), "tv": (0.0, 1.0),
          "n_common": (0.0, np.inf)}


def align(counts_a: dict[str, int], counts_b: dict[str, int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Union of functions (sorted) and the two count vectors over it."""
    keys = sorted(set(counts_a) | set(counts_b))
    return keys, np.array([counts_a.get(k, 0) for k in keys]), np.array([counts_b.get(k, 0) for k in keys])


def log_correlations(a: np.ndarray, b: np.ndarray, threshold: int) -> tuple[float, float, float, int]:
    """Over functions with at least `threshold` counts in both samples: Pearson and Spearman
    correlation of log-probabilities, and the least-squares slope of log P_a on log P_b (1 when
    a and b agree; above 1 when a concentrates more on b's most probable functions). NaN when
    fewer than 3 such functions."""
    keep = (a >= threshold) & (b >= threshold)
    n = int(keep.sum())
    nan = float("nan")
    if n < 3:
        return nan, nan, nan, n
    la, lb = np.log(a[keep] / a.sum()), np.log(b[keep] / b.sum())
    if np.ptp(la) == 0 or np.ptp(lb) == 0:
        return nan, nan, nan, n
    slope = float(np.polyfit(lb, la, 1)[0])
    return float(sps.pearsonr(la, lb)[0]), float(sps.spearmanr(la, lb)[0]), slope, n


def kl_divergence(a: np.ndarray, b: np.ndarray, pseudo: float = 0.5) -> float:
    """KL(P_a || P_b) in nats over the union of observed functions, each count smoothed by
    `pseudo` (Jeffreys) so that a function unseen in one sample does not give infinity."""
    p = (a + pseudo) / (a.sum() + pseudo * len(a))
    q = (b + pseudo) / (b.sum() + pseudo * len(b))
    return float(np.sum(p * np.log(p / q)))


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in total variation distance between the two empirical distributions."""
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def all_statistics(a: np.ndarray, b: np.ndarray, threshold: int) -> dict[str, float]:
    pearson, spearman, slope, n = log_correlations(a, b, threshold)
    return {"pearson_log": pearson, "spearman_log": spearman, "slope_log": slope, "kl": kl_divergence(a, b),
            "tv": total_variation(a, b), "n_common": float(n)}


def bootstrap(a: np.ndarray, b: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], dict],
              n_boot: int, rng: np.random.Generator, confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """Normal intervals t +- z * se of each statistic, se the bootstrap standard error when both
    samples are resampled with replacement (a multinomial redraw of each count vector).

    The plug-in statistics are biased at finite n (TV and KL upwards, correlations of noisy
    log-probabilities downwards) and resampling adds that bias again, so percentile intervals
    do not even contain the estimate. We use the bootstrap only for the spread; the bias is
    handled by comparing against the Bayes-vs-Bayes noise floor at the same sample sizes."""
    point = statistic(a, b)
    draws = [statistic(rng.multinomial(a.sum(), a / a.sum()), rng.multinomial(b.sum(), b / b.sum()))
             for _ in range(n_boot)]
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    out = {}
    for name in draws[0]:
        values = np.array([d[name] for d in draws], float)
        values = values[np.isfinite(values)]
        if len(values) < 2 or not np.isfinite(point[name]):
            out[name] = (np.nan, np.nan)
            continue
        half = z * float(np.std(values, ddof=1))
        low, high = np.clip([point[name] - half, point[name] + half], *RANGES.get(name, (-np.inf, np.inf)))
        out[name] = (float(low), float(high))
    return out


def decades(p: np.ndarray) -> float:
    """Orders of magnitude spanned by the positive entries of p."""
    p = p[p > 0]
    return float(np.log10(p.max() / p.min())) if len(p) else 0.0
