"""Agreement statistics between two sampled distributions over functions, as small pure functions
over count arrays, with multinomial bootstrap intervals (resampling runs / accepted draws)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps

STATISTICS = ("pearson_log", "spearman_log", "slope_log", "kl", "tv", "n_common")
RANGES = {"pearson_log": (-1.0, 1.0), "spearman_log": (-1.0, 1.0), "kl": (0.0, np.inf), "tv": (0.0, 1.0),
          "n_common": (0.0, np.inf), "tv_ep_bins": (0.0, 1.0), "ks_log10_pb": (0.0, 1.0)}
# Large |E|, where most functions are seen once: two samples compared through EP's log10 P_B of
# each item's function (ep_statistics).
EP_STATISTICS = ("tv_ep_bins", "mean_log10_pb_shift", "ks_log10_pb", "ep_failed_fraction", "frequent_mass_log10")


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


def ep_view(log10_p: np.ndarray, width: float = 1.0, threshold: int = 5, seed=0) -> tuple[Callable, Callable]:
    """Statistics of two count vectors over one list of functions, seen through a score per
    function (EP's log10 P_B; NaN where EP failed). Returns (statistics, binned_tv):

    - binned_tv(a, b): total variation between the two samples' masses in bins of the score
      `width` decades wide, the failed functions one more bin (they count, never dropped);
    - statistics(a, b): binned_tv as "tv_ep_bins"; "mean_log10_pb_shift", the mean score of a's
      items minus b's over the scored ones (above 0: a puts more of its mass on the functions the
      posterior finds more probable); "ks_log10_pb", the two-sample Kolmogorov-Smirnov distance
      between the scores of their items; "ep_failed_fraction", a's items whose function EP failed on;
      "frequent_mass_log10", log10 of a's mass on its most frequent functions (seen at least
      ceil(threshold / 2) times in one half of a) over b's mass on them (frequent_mass, with half a
      pseudo-count added to b's so that functions b never saw give a finite number): above 0 when
      a concentrates on the functions it finds most often more than b does. That one needs no EP.
    `seed` fixes frequent_mass's halvings."""
    log10_p = np.asarray(log10_p, float)
    scored = np.isfinite(log10_p)
    bins = np.where(scored, np.floor(np.where(scored, log10_p, 0.0) / width), np.inf)
    _, index = np.unique(bins, return_inverse=True)
    x, order = log10_p[scored], np.argsort(log10_p[scored], kind="stable")
    last = np.r_[np.diff(x[order]) != 0, True]  # the CDFs are compared after each distinct value

    def binned_tv(a, b) -> float:
        return total_variation(np.bincount(index, weights=a), np.bincount(index, weights=b))

    def mean(c) -> float:
        total = c[scored].sum()
        return float(np.sum(c[scored] * x) / total) if total else float("nan")

    def ks(a, b) -> float:
        wa, wb = a[scored][order], b[scored][order]
        if wa.sum() == 0 or wb.sum() == 0:
            return float("nan")
        return float(np.max(np.abs(np.cumsum(wa) / wa.sum() - np.cumsum(wb) / wb.sum())[last]))

    def statistics(a, b) -> dict[str, float]:
        a, b = np.asarray(a, float), np.asarray(b, float)
        return {"tv_ep_bins": binned_tv(a, b), "mean_log10_pb_shift": mean(a) - mean(b), "ks_log10_pb": ks(a, b),
                "ep_failed_fraction": float(a[~scored].sum() / a.sum()),
                "frequent_mass_log10": frequent_mass(a, lambda keep: (b[keep].sum() + 0.5) / b.sum(), threshold,
                                                     seed)[0]}

    return statistics, binned_tv


def bootstrap(a: np.ndarray, b: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], dict],
              n_boot: int, rng: np.random.Generator, confidence: float = 0.95,
              se_scale: float = 1.0) -> dict[str, tuple[float, float]]:
    """Normal intervals t +- z * se of each statistic, se the bootstrap standard error when both
    samples are resampled with replacement (a multinomial redraw of each count vector), times
    se_scale: for a correlated sample of N items with effective size ESS, sqrt(N / ESS) (a
    multinomial redraw treats its items as independent and understates the spread so much).

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
        half = z * se_scale * float(np.std(values, ddof=1))
        low, high = np.clip([point[name] - half, point[name] + half], *RANGES.get(name, (-np.inf, np.inf)))
        out[name] = (float(low), float(high))
    return out


HELD_OUT_SPLITS = 8  # random halvings averaged over in frequent_mass


def frequent_mass(counts: np.ndarray, reference_mass: Callable[[np.ndarray], float], threshold: int,
                  seed, eligible: np.ndarray | None = None) -> tuple[float, float]:
    """Does a sample concentrate on its most frequent functions more than a reference does? The
    sample's mass on its frequent functions against the reference's mass on the same functions:
    log10(sample mass / reference mass), and how many functions were selected. 0 when they agree,
    above 0 when the sample puts more mass on them. `reference_mass(keep)` gives the reference's
    mass on the functions where the boolean mask `keep` is true: the sum of EP's P_B, or another
    sample's frequency.

    Selecting functions by their counts and reading their mass from the same counts is biased
    upwards (a function clears the threshold more easily when it was seen more often than its
    probability says), by a factor that grows as the threshold nears the counts. So the sample is
    halved at random (each item to one half with probability 1/2: binomial thinning of the
    counts), the functions are chosen by their counts in one half (at least ceil(threshold / 2))
    and their mass is read from the other; the result is averaged over HELD_OUT_SPLITS halvings
    drawn from `seed`. Only `eligible` functions are selected (those EP scored), all count in the
    sample's total. Valid for a sample of independent draws (a chain sample only at its
    effective size). NaN when no function is selected or either mass is 0."""
    counts = np.asarray(counts, np.int64)
    eligible = np.ones(counts.shape, bool) if eligible is None else np.asarray(eligible, bool)
    rng = np.random.default_rng(seed)
    ratios, selected = [], []
    for _ in range(HELD_OUT_SPLITS):
        a = rng.binomial(counts, 0.5)
        b = counts - a
        keep = eligible & (a >= -(-threshold // 2))
        selected.append(int(keep.sum()))
        if not keep.any() or b.sum() == 0:
            continue
        mass, ref = b[keep].sum() / b.sum(), reference_mass(keep)
        if mass > 0 and ref > 0:
            ratios.append(float(np.log10(mass / ref)))
    return (float(np.mean(ratios)) if ratios else float("nan")), float(np.mean(selected))


def decades(p: np.ndarray) -> float:
    """Orders of magnitude spanned by the positive entries of p."""
    p = p[p > 0]
    return float(np.log10(p.max() / p.min())) if len(p) else 0.0


# ---------------------------------------------------------------------------------------------
# Matched comparisons: a sample against a sampled reference, beside the reference's own noise
# floor at the same sample sizes
# ---------------------------------------------------------------------------------------------

def design_effects(count, count_sq, count_acc, accepted: int, accepted_sq: int, batches: int,
                   top: int) -> np.ndarray:
    """Design effects of a ratio estimate of function frequencies from B independent batches, for
    the `top` most frequent functions (most frequent first; those at frequency 0 or 1 left out):
    Var(p_f) over its multinomial value p_f (1 - p_f) / A, both from the per-batch moments
    (study/rejection.py): with c_fb the function's count and a_b the fits of batch b,
    p_f = sum c_fb / A and

        Var(p_f) = B / (B - 1) * sum_b (c_fb - p_f a_b)^2 / A^2,
        sum_b (c_fb - p_f a_b)^2 = count_sq - 2 p_f count_acc + p_f^2 accepted_sq.

    About 1 for independent draws; A / design effect is the function's effective sample size.
    Empty with fewer than two batches or no fits."""
    count, count_sq, count_acc = (np.asarray(v, np.float64) for v in (count, count_sq, count_acc))
    if batches < 2 or accepted <= 0:
        return np.array([])
    p = count / accepted
    keep = np.argsort(-count, kind="stable")[:top]
    keep = keep[(p[keep] > 0) & (p[keep] < 1)]
    p, sq, acc = p[keep], count_sq[keep], count_acc[keep]
    ss = np.maximum(sq - 2 * p * acc + p * p * accepted_sq, 0.0)
    return batches / (batches - 1) * ss / (accepted * p * (1 - p))


def chunk_design_effects(res: dict, top: int) -> np.ndarray:
    """design_effects of one study.rejection.sample_chunk result, its functions in sorted order."""
    keys = sorted(res["counts"])
    count, count_sq, count_acc = ([res[m][k] for k in keys] for m in ("counts", "count_sq", "count_acc"))
    return design_effects(count, count_sq, count_acc, res["accepted"], res["accepted_sq"], res["batches"], top)


def subsample(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Counts of n items drawn without replacement from a sample with these counts."""
    counts = np.asarray(counts, np.int64)
    if n >= counts.sum():
        return counts.copy()
    return rng.multivariate_hypergeometric(counts, n)


def tv_permutation_test(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int,
                        tv: Callable = total_variation) -> float:
    """Permutation p-value of "a and b are two samples of one distribution", statistic: total
    variation between the two empirical distributions (exact in level for independent draws), or
    any other `tv(a, b)` (ep_view's binned_tv).

    Relabelling the pooled items at random and counting the first sum(a) of them per function is a
    multivariate hypergeometric draw from the pooled counts, so each permutation costs one such
    draw instead of a shuffle of every item; p = (1 + #{TV* >= TV}) / (1 + resamples)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    pooled, n_a = a + b, int(a.sum())
    observed = tv(a, b)
    hits = 0
    for _ in range(resamples):
        x = rng.multivariate_hypergeometric(pooled, n_a)
        hits += tv(x, pooled - x) >= observed - 1e-12
    return (1 + hits) / (1 + resamples)


def matched_comparison(test: np.ndarray, ref_a: np.ndarray, ref_b: np.ndarray, n: int, n_b: int, threshold: int,
                       reps: int, n_boot: int, resamples: int, rng: np.random.Generator,
                       confidence: float = 0.95, statistic: Callable | None = None,
                       tv: Callable = total_variation) -> dict:
    """A sample (`test`) against a reference sampled in two independent halves, all three count
    vectors over one list of functions: test and ref_a subsampled without replacement to n items,
    ref_b to n_b, `reps` times. The comparison is test against ref_b, its noise floor ref_a
    against the same ref_b draw: what the comparison would be if test came from the reference's
    distribution. Every side must be (close to) independent draws at its size: an autocorrelated
    sample is thinned far below its effective size first (the caller's n and n_b).

    Returns per statistic the mean and sd over repetitions of comparison, floor and effect
    (comparison minus floor), the effect's normal interval from a multinomial bootstrap of the
    first repetition's three subsamples, and the permutation p-values of TV (tv_permutation_test)
    for test against ref_b and, as a check, ref_a against ref_b (NaN with resamples = 0). `statistic(x, y)` -> {name: value}
    replaces all_statistics (which is the one that reads `threshold`), `tv` the tests' statistic."""
    if n < 1 or n_b < 1:
        raise ValueError(f"matched sample sizes must be >= 1, got {n} and {n_b}")
    stat = statistic or (lambda x, y: all_statistics(x, y, threshold))
    comps, floors, first = [], [], None
    for _ in range(reps):
        t, a, b = subsample(test, n, rng), subsample(ref_a, n, rng), subsample(ref_b, n_b, rng)
        comps.append(stat(t, b))
        floors.append(stat(a, b))
        first = first or (t, a, b)
    t, a, b = first
    boot = []
    for _ in range(n_boot):
        ts, as_, bs = (rng.multinomial(c.sum(), c / c.sum()) for c in (t, a, b))
        cs, fs = stat(ts, bs), stat(as_, bs)
        boot.append({k: cs[k] - fs[k] for k in cs})
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    out = {}
    for name in comps[0]:
        c = np.array([d[name] for d in comps], float)
        f = np.array([d[name] for d in floors], float)
        spread = np.array([x[name] for x in boot], float)
        spread = spread[np.isfinite(spread)]
        effect = _nanmean(c - f)
        half = z * float(np.std(spread, ddof=1)) if len(spread) >= 2 and np.isfinite(effect) else np.nan
        out[name] = {"value": _nanmean(c), "value_sd": _nansd(c), "floor": _nanmean(f), "floor_sd": _nansd(f),
                     "effect": effect, "effect_sd": _nansd(c - f), "effect_low": effect - half, "effect_high": effect + half}
    test = lambda x: tv_permutation_test(x, b, rng, resamples, tv) if resamples else np.nan  # 0: no test
    return {"n": int(t.sum()), "n_b": int(b.sum()), "statistics": out, "p_value": test(t), "floor_p_value": test(a)}


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else np.nan


def _nansd(x: np.ndarray) -> float:
    return float(np.nanstd(x, ddof=1)) if np.isfinite(x).sum() >= 2 else np.nan


def with_q_values(table: pd.DataFrame, p_column: str) -> pd.DataFrame:
    """table with q_value: Benjamini-Hochberg adjusted p-values over all its rows with a p-value
    (scipy.stats.false_discovery_control), the family being every comparison in the table."""
    p = table[p_column].to_numpy(float)
    q = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = sps.false_discovery_control(p[ok], method="bh")
    return table.assign(q_value=q, comparisons=int(ok.sum()))


def spearman_ci(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, boot: int,
                confidence: float) -> tuple[float, float, float]:
    """Spearman's rank correlation of x and y with a percentile bootstrap interval over the pairs
    (the one interval every rank correlation in the tables uses)."""
    rho = sps.spearmanr(x, y).statistic
    idx = rng.integers(0, len(x), (boot, len(x)))
    reps = [sps.spearmanr(x[i], y[i]).statistic for i in idx]
    lo, hi = np.nanquantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(rho), float(lo), float(hi)
