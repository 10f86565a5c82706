"""Raw populations -> tidy tables: functions per population, the joint table of both
populations, agreement statistics against the Bayes-vs-Bayes noise floor, run summaries."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import stats
from study.config import ExperimentConfig
from study.diagnostics import RHAT_THRESHOLD, TOP_FUNCTIONS_TRACED
from study.encoding import hex_to_bits
from study.tasks import Task, seen_table_lz

BAYES = "bayes_rejection"
# Raw count tables of the sampled P_B estimators: population -> file under raw/. Each has a column
# that splits it into two independent halves for the noise floor: rejection and the exact NNGP
# sampler by chunk parity (chunks use independent keys), MCMC by chain group (independent chains).
COUNT_ESTIMATORS = {"bayes_rejection": "rejection_counts.csv", "bayes_mcmc": "mcmc_counts.csv",
                    "bayes_mcmc_from_sgd": "mcmc_from_sgd_counts.csv",
                    "bayes_mcmc_from_rejection": "mcmc_from_rejection_counts.csv",
                    "nngp_exact": "nngp_exact_counts.csv"}
MCMC_POPULATIONS = ("bayes_mcmc", "bayes_mcmc_from_sgd", "bayes_mcmc_from_rejection")
EP = "nngp_ep"


def function_table(counts: dict[str, int], population: str, task: Task) -> pd.DataFrame:
    """One row per function: count, probability, test error on E and (Boolean tasks) LZ complexity
    of the seen table."""
    total = sum(counts.values())
    frame = pd.DataFrame({"population": population, "function": list(counts),
                          "count": np.array(list(counts.values()), dtype=np.int64)},
                         columns=["population", "function", "count"])
    frame["probability"] = frame["count"] / total
    frame = frame.join(function_columns(frame["function"], task))
    return frame.sort_values("count", ascending=False, ignore_index=True)


def function_columns(functions, task: Task) -> pd.DataFrame:
    """Per function (hex of its bits on E): test error on E and, for Boolean tasks only, the LZ
    complexity of the truth table seen on S and E (images have no input order to read one in)."""
    bits = [hex_to_bits(k, len(task.test_idx)) for k in functions]
    out = pd.DataFrame({"test_error": [float(np.mean(x != task.y_test)) for x in bits]}, index=pd.RangeIndex(len(bits)))
    if task.boolean:
        # each function's LZ complexity once per task: the analysis asks for the reference's
        # functions again with every SGD setting (E1MS: 10^5 functions, four settings)
        known = _LZ_CACHE.setdefault((task.target.tobytes(), task.test_idx.tobytes(), task.union_idx.tobytes()), {})
        out["lz"] = [known[k] if k in known else known.setdefault(k, seen_table_lz(task, x))
                     for k, x in zip(functions, bits)]
    return out


_LZ_CACHE: dict[tuple, dict[str, float]] = {}


def bayes_counts(raw: pd.DataFrame, half: int | None = None) -> dict[str, int]:
    """Counts per function of a sampled estimator: all of it, or one of its two independent halves."""
    if half is not None:
        raw = raw[half_labels(raw) == half]
    return raw.groupby("function")["count"].sum().astype(int).to_dict()


def half_labels(raw: pd.DataFrame) -> pd.Series:
    """0/1 per row: chain group where the table has one (MCMC), else chunk parity."""
    return raw["group"] if "group" in raw else raw["chunk"] % 2


def sgd_counts(runs: pd.DataFrame) -> dict[str, int]:
    return runs.loc[runs["fitted"], "function"].value_counts().astype(int).to_dict()


def joint_table(sgd: dict[str, int], bayes: dict[str, int], setting: str, task: Task,
                reference: str = BAYES, ep: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per function seen by SGD or the reference estimator; with EP also its log P_B."""
    keys, a, b = stats.align(sgd, bayes)
    frame = pd.DataFrame({"setting": setting, "function": keys, "count_sgd": a, "count_bayes": b,
                          "p_sgd": a / a.sum() if a.sum() else np.nan, "p_bayes": b / b.sum(), "reference": reference})
    if ep is not None:
        frame["log_p_ep"] = [ep.get(k, np.nan) for k in keys]
    return frame.join(function_columns(keys, task))


# EP's log P_B values closer than this are ties when ranked: functions that are equally probable
# (by a symmetry of the kernel on S and E) get values that differ only by EP's convergence noise
# (below 4e-6 nats, study/ep_batch.TOL), and ranking that noise moved E1M's Spearman correlation of
# MCMC against EP over 19 functions from -0.11 to 0.27 when the tolerance changed.
EP_TIE_NATS = 1e-4


def ep_ranked(log_p_nats: np.ndarray) -> np.ndarray:
    """EP log-probabilities (nats) as values to rank: equal within EP_TIE_NATS."""
    return np.round(np.asarray(log_p_nats) / EP_TIE_NATS)


def ep_correlations(counts: np.ndarray, log_p: np.ndarray, threshold: int) -> dict[str, float]:
    """Mingard et al.'s scatter: over the functions seen at least `threshold` times in a sample (its
    counts) that EP scored (log_p in nats, NaN where not), Pearson and Spearman correlation of the
    sample's log frequency with EP's log P_B and the least-squares slope of the first on the second
    (above 1 when it concentrates on EP's most probable functions; below 1 even for a sample drawn
    from EP's P_B itself, since choosing functions by their counts flattens it: read it beside a
    floor, analysis.ep_view.ep_scatter_table), and how many functions; NaN where fewer than 3 or
    either side constant."""
    keep = np.isfinite(log_p) & (counts >= threshold)
    n = int(keep.sum())
    out = dict.fromkeys(("pearson_log", "spearman_log", "slope_log"), float("nan")) | {"n_common": float(n)}
    pa, pq = np.log(counts[keep] / counts.sum()), log_p[keep]
    if n >= 3 and np.ptp(pa) > 0 and np.ptp(pq) > 0:
        out["pearson_log"] = float(np.corrcoef(pa, pq)[0, 1])
        out["spearman_log"] = float(stats.sps.spearmanr(pa, ep_ranked(pq))[0])
        out["slope_log"] = float(np.polyfit(pq, pa, 1)[0])
    return out


def compare_to_fixed(name: str, setting: str, a: dict[str, int], log_p: dict[str, float], cfg: ExperimentConfig,
                     rng: np.random.Generator, complete: bool, n_eff: float | None = None) -> pd.DataFrame:
    """Sample a against a computed distribution (EP's log P_B per function). Correlations over the
    functions with >= threshold counts in a; TV and KL(a || EP) only where EP scored every function
    (complete), after normalising EP over them; a's mass on its frequent functions against the sum
    of EP's P_B over them, selected and measured in different halves of a (stats.frequent_mass:
    "frequent_mass_log10", above 0 when a puts more mass on them than EP's P_B, and
    "frequent_functions"). The interval resamples a only, its half-width scaled by sqrt(N / n_eff)
    where a is a correlated sample of N items with effective size n_eff (chains, grouped rejection)."""
    an = cfg.analysis
    keys = sorted(set(a) | set(log_p)) if complete else sorted(a)
    ca = np.array([a.get(k, 0) for k in keys])
    lp = np.array([log_p.get(k, np.nan) for k in keys])
    scored = np.isfinite(lp)
    q = np.exp(lp - np.nanmax(lp))
    q = np.where(scored, q, 0) / np.nansum(np.where(scored, q, 0))

    def ep_mass(keep):
        return float(np.exp(np.logaddexp.reduce(lp[keep])))

    log_q = np.log(np.where(scored, q, np.nan))

    def stat(x, _):
        out = ep_correlations(x, log_q, an.count_threshold)
        n_common = out.pop("n_common")
        out |= dict.fromkeys(("kl", "tv"), float("nan"))
        if complete:
            p = x / x.sum()
            out["tv"] = float(0.5 * np.abs(p - q).sum())
            ps = (x + 0.5) / (x.sum() + 0.5 * len(x))
            out["kl"] = float(np.sum(ps * np.log(ps / np.maximum(q, 1e-300))))
        out["n_common"] = n_common
        out["frequent_mass_log10"], out["frequent_functions"] = stats.frequent_mass(
            x, ep_mass, an.count_threshold, [cfg.seed, 0x5E], eligible=scored)
        return out

    point = stat(ca, None)
    se_scale = float(np.sqrt(ca.sum() / n_eff)) if n_eff is not None and 0 < n_eff < ca.sum() else 1.0
    ci = stats.bootstrap(ca, np.ones_like(ca), stat, an.bootstrap, rng, an.confidence, se_scale)
    return pd.DataFrame([{"comparison": name, "setting": setting, "statistic": k, "value": v,
                          "ci_low": ci[k][0], "ci_high": ci[k][1], "n_a": int(ca.sum()), "n_b": 0,
                          "threshold": an.count_threshold} for k, v in point.items()])


# A correlated sample (chains; rejection with shared hidden layers) of N items with effective size
# ESS < N is thinned at random to n items: the frequencies of such a subsample vary about the truth
# as p(1-p)/n (1 + n/ESS - n/N), so n is the largest with n (1/ESS - 1/N) <= 1/THIN, within
# 1/THIN of n independent draws, and comparisons, floors, bootstraps and permutation tests may
# treat it as independent. For ESS << N that is ESS / THIN (thinned to n = ESS it would be twice as
# noisy as ESS independent draws); for a sample with a design effect N / ESS close to 1, all of it.
THIN = 20


def usable(n_eff: float, items: int) -> int:
    """Items of a sample that count as independent draws: all of an independent sample, the largest
    n with n (1/ESS - 1/N) <= 1/THIN of a correlated one."""
    if n_eff >= items:
        return int(items)
    return int(min(items, max(1, np.floor(n_eff * items / (THIN * (items - n_eff)) + 1e-9))))


def effective_size_table(n_eff: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame([{"population": p, "n_eff": s[None], "n_eff_half_a": s[0], "n_eff_half_b": s[1]}
                         for p, s in n_eff.items()])


def effective_sizes(raw: dict, cfg: ExperimentConfig) -> dict[str, dict]:
    """population -> {None: effective size of all of it, 0: of half A, 1: of half B}.

    Rejection samples with one output layer per draw are independent draws: their size; with K > 1
    output layers per hidden draw, the size over the largest design effect of the most frequent
    functions, from the dispersion of their counts over batches (rejection_design). Chains are
    autocorrelated: the smallest
    bulk ESS (rank-normalised, ArviZ; study/diagnostics.py) over the indicator traces of the
    population's most frequent functions and its test-error trace, per chain group. The exact
    NNGP sampler by elliptical slice: the smallest per-chunk ESS of its traces times the chunks
    of the half (each chunk has its own chains). Never more than the number of samples."""
    out = {}
    for name, counts in raw["estimators"].items():
        totals = counts.groupby(half_labels(counts))["count"].sum()
        size = {None: float(totals.sum()), 0: float(totals.get(0, 0)), 1: float(totals.get(1, 0))}
        if name in MCMC_POPULATIONS:
            d = raw["mcmc_diagnostics"]
            d = d[(d["population"] == name) & (d["summary"].str.startswith("f=") | (d["summary"] == "test_error"))]
            for key, group in ((None, "all"), (0, "0"), (1, "1")):
                ess = d.loc[d["group"].astype(str) == group, "ess_bulk"].to_numpy(float)
                if np.isfinite(ess).any():  # all-NaN: every traced function constant, no autocorrelation to count
                    size[key] = min(size[key], float(np.nanmin(ess)))
        elif name == BAYES and grouped_rejection(raw):
            design = rejection_design(counts, raw["rejection_chunks"])
            size = {k: min(size[k], size[k] / design[k][0]) if np.isfinite(design[k][0]) else size[k] for k in size}
        elif name == "nngp_exact" and cfg.nngp.exact == "ess":
            per_chunk = float(raw["nngp_summary"]["exact_ess_min"].iat[0])
            chunks = counts.groupby(half_labels(counts))["chunk"].nunique()
            size = {k: min(v, per_chunk * (chunks.sum() if k is None else chunks.get(k, 0))) for k, v in size.items()}
        out[name] = size
    return out


def grouped_rejection(raw: dict) -> bool:
    """Did the rejection stage draw several output layers per hidden-layer draw (readouts > 1)?"""
    chunks = raw.get("rejection_chunks")
    return chunks is not None and "readouts" in chunks and int(chunks["readouts"].max()) > 1


def rejection_design(counts: pd.DataFrame, chunks: pd.DataFrame) -> dict:
    """{None: all, 0: half A, 1: half B} -> (largest, median) design effect of the rejection
    sample's TOP_FUNCTIONS_TRACED most frequent functions (stats.design_effects over the batches
    of the half's chunks); NaN for results written before the per-batch moments existed."""
    out = {}
    for key in (None, 0, 1):
        c = counts if key is None else counts[half_labels(counts) == key]
        k = chunks if key is None else chunks[chunks["chunk"] % 2 == key]
        if "count_sq" not in c or "batches" not in k:
            out[key] = (np.nan, np.nan)
            continue
        f = c.groupby("function")[["count", "count_sq", "count_acc"]].sum()
        d = stats.design_effects(f["count"], f["count_sq"], f["count_acc"], int(k["accepted"].sum()),
                                 int(k["accepted_sq"].sum()), int(k["batches"].sum()), TOP_FUNCTIONS_TRACED)
        out[key] = (float(d.max()), float(np.median(d))) if len(d) else (np.nan, np.nan)
    return out


def matched(name: str, setting: str, test: dict[str, int], n_eff_test: float, ref_table: pd.DataFrame,
            n_eff_ref: dict, cfg: ExperimentConfig, rng: np.random.Generator, view=None, test_tv: bool = True,
            **labels) -> pd.DataFrame:
    """Long table (one row per statistic): `test` against half B of a sampled reference beside the
    noise floor half A against half B, test and half A subsampled to one size n_a, half B to n_b in
    both (stats.matched_comparison), every side thinned to close to independent draws (usable),
    with the permutation p-values of TV (not with test_tv False). `view(functions)` -> (statistics, tv) replaces the
    statistics and the tests' TV (analysis/ep_view.py: the samples seen through EP's log P_B)."""
    an = cfg.analysis
    half_a, half_b = bayes_counts(ref_table, 0), bayes_counts(ref_table, 1)
    keys = sorted(set(test) | set(half_a) | set(half_b))
    statistic, tv = view(keys) if view is not None else (None, stats.total_variation)
    vec = lambda c: np.array([c.get(k, 0) for k in keys], np.int64)
    n = min(usable(n_eff_test, sum(test.values())), usable(n_eff_ref[0], sum(half_a.values())))
    res = stats.matched_comparison(vec(test), vec(half_a), vec(half_b), n, usable(n_eff_ref[1], sum(half_b.values())),
                                   an.count_threshold, an.matched_reps, an.bootstrap, an.permutations if test_tv else 0, rng,
                                   an.confidence, statistic, tv)
    n_a, n_b = res["n"], res["n_b"]
    base = {"comparison": name, "setting": setting, **labels, "n_a": n_a, "n_b": n_b, "floor_n_a": n_a,
            "floor_n_b": n_b, "n_test": int(sum(test.values())), "n_eff_test": float(n_eff_test),
            "n_eff_reference_a": n_eff_ref[0], "n_eff_reference_b": n_eff_ref[1], "reps": an.matched_reps,
            "p_value": res["p_value"], "floor_p_value": res["floor_p_value"], "threshold": an.count_threshold}
    return pd.DataFrame([{**base, "statistic": k, **v} for k, v in res["statistics"].items()])


def unavailable(name: str, setting: str, statistics=stats.STATISTICS, **labels) -> pd.DataFrame:
    """The rows of a comparison that has no sample to compare: every statistic n/a, n_a = 0."""
    return pd.DataFrame([{"comparison": name, "setting": setting, **labels, "n_a": 0, "n_test": 0, "statistic": k,
                          "value": np.nan, "floor": np.nan, "effect": np.nan, "p_value": np.nan}
                         for k in statistics])


def with_q_values(table: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg q-values of the two-sample tests over the table's comparisons (one
    p-value per comparison, repeated on its statistic rows). A table of comparisons with a
    computed P_B alone (no two-sample test) gets empty p- and q-value columns."""
    if "p_value" not in table:
        table = table.assign(p_value=np.nan)
    tests = table.dropna(subset=["p_value"]).drop_duplicates(["comparison", "setting"])[["comparison", "setting", "p_value"]]
    tests = stats.with_q_values(tests, "p_value")[["comparison", "setting", "q_value"]]
    return table.merge(tests, on=["comparison", "setting"], how="left")


def agreement_table(runs: pd.DataFrame, estimators: dict[str, pd.DataFrame], ep: dict[str, float] | None,
                    ep_complete: bool, cfg: ExperimentConfig, n_eff: dict[str, dict]) -> pd.DataFrame:
    """Every SGD setting against the reference P_B estimate, matched in (effective) sample size
    with the reference's noise floor (_matched); with EP, also SGD against EP's computed P_B."""
    rng = np.random.default_rng([cfg.seed, 0xA6])
    frames = []
    for setting, group in runs.groupby("setting", sort=False):
        counts = sgd_counts(group)
        if not counts:  # no run fitted S: nothing to compare, said in the table (n_a = 0), not dropped
            print(f"warning: SGD setting {setting}: no run fitted S; its comparisons are n/a", file=sys.stderr)
            frames.append(unavailable("sgd_vs_bayes", setting))
            if ep is not None:
                frames.append(unavailable("sgd_vs_nngp_ep", setting))
            continue
        frames.append(matched("sgd_vs_bayes", setting, counts, sum(counts.values()), estimators[cfg.reference],
                               n_eff[cfg.reference], cfg, rng))
        if ep is not None:
            frames.append(compare_to_fixed("sgd_vs_nngp_ep", setting, counts, ep, cfg, rng, ep_complete))
    return with_q_values(pd.concat(frames, ignore_index=True)).assign(reference=cfg.reference)


def estimator_table(estimators: dict[str, pd.DataFrame], ep: dict[str, float] | None, ep_complete: bool,
                    cfg: ExperimentConfig, n_eff: dict[str, dict]) -> pd.DataFrame:
    """E2 cross-check: every sampled P_B estimator against each one listed before it (rejection
    first), matched with that one's noise floor, and each sampled estimator against EP."""
    rng = np.random.default_rng([cfg.seed, 0xE2])
    names = list(estimators)
    frames = []
    for i, ref in enumerate(names):
        for test in names[i + 1:]:
            frames.append(matched(f"{test}_vs_{ref}", "cross_check", bayes_counts(estimators[test]),
                                   n_eff[test][None], estimators[ref], n_eff[ref], cfg, rng,
                                   estimator=test, reference=ref))
        if ep is not None:
            frames.append(compare_to_fixed(f"{ref}_vs_{EP}", "cross_check", bayes_counts(estimators[ref]), ep, cfg,
                                           rng, ep_complete, n_eff[ref][None]).assign(estimator=ref, reference=EP))
    return with_q_values(pd.concat(frames, ignore_index=True))


def pb_estimates(estimators: dict[str, pd.DataFrame], ep: dict[str, float] | None) -> pd.DataFrame:
    """Long table for the scatter matrix: one row per function and estimator with its log10 P_B,
    over the functions that any sampled estimator saw (EP rows for those functions only)."""
    rows = []
    seen: set[str] = set()
    for name, raw in estimators.items():
        counts = bayes_counts(raw)
        total = sum(counts.values())
        seen |= set(counts)
        rows += [{"estimator": name, "function": f, "count": n, "log10_p": np.log10(n / total)}
                 for f, n in counts.items()]
    if ep is not None:
        rows += [{"estimator": EP, "function": f, "count": np.nan, "log10_p": ep[f] / np.log(10)}
                 for f in sorted(seen) if f in ep]
    return pd.DataFrame(rows)


def runs_summary(runs: pd.DataFrame, chunk_stats: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for setting, g in runs.groupby("setting", sort=False):
        c = chunk_stats[chunk_stats["setting"] == setting]
        fitted = g[g["fitted"]]
        rows.append({"setting": setting, "optimizer": g["optimizer"].iat[0], "loss": g["loss"].iat[0],
                     "batch_size": int(g["batch_size"].iat[0]), "lr": float(g["lr"].iat[0]),
                     "runs": len(g), "fitted": len(fitted), "not_fitted": int((~g["fitted"]).sum()),
                     "mean_steps": float(fitted["steps"].mean()) if len(fitted) else np.nan,
                     "median_steps": float(fitted["steps"].median()) if len(fitted) else np.nan,
                     "distinct_functions": int(fitted["function"].nunique()),
                     "total_steps": int(c["total_steps"].sum()),
                     "config_hash": g["config_hash"].iat[0], "seed": int(g["seed"].iat[0])})
    return pd.DataFrame(rows)


def sampler_summary(chunk_stats: pd.DataFrame, raw_bayes: pd.DataFrame, n_eff: dict) -> pd.DataFrame:
    """The rejection sampler: draws ((hidden, output) pairs with readouts > 1), fits, the design
    effect of its most frequent functions measured from the batches (about 1 for plain rejection:
    a check of the accounting) and the effective size the comparisons use."""
    draws, accepted = int(chunk_stats["draws"].sum()), int(chunk_stats["accepted"].sum())
    readouts = int(chunk_stats["readouts"].iat[0]) if "readouts" in chunk_stats else 1
    design_max, design_median = rejection_design(raw_bayes, chunk_stats)[None]
    return pd.DataFrame([{"population": BAYES, "draws": draws, "readouts": readouts,
                          "hidden_draws": draws // readouts, "accepted": accepted,
                          "acceptance": accepted / draws, "distinct_functions": raw_bayes["function"].nunique(),
                          "design_effect_max": design_max, "design_effect_median": design_median,
                          "n_eff": n_eff[None], "chunks": len(chunk_stats),
                          "config_hash": chunk_stats["config_hash"].iat[0], "seed": int(chunk_stats["seed"].iat[0])}])


def mixed(r_hat_max: float) -> bool:
    """Whether chains mixed by the project's criterion: largest split R-hat <= RHAT_THRESHOLD (NaN: no)."""
    return bool(r_hat_max <= RHAT_THRESHOLD)


def mcmc_summary(chunk_stats: pd.DataFrame, diagnostics: pd.DataFrame, estimators: dict[str, pd.DataFrame],
                 n_eff: dict[str, dict]) -> pd.DataFrame:
    """One row per chain population: chains, kept samples, where they started, the largest
    rank-normalised split R-hat over the function indicators and test error (function-level
    mixing) and over the scalar summaries, bulk and tail ESS of those, the effective sizes the
    matched comparisons use, and whether the chains mixed (every R-hat <= 1.01)."""
    rows = []
    for pop, c in chunk_stats.groupby("population", sort=False):
        d = diagnostics[(diagnostics["population"] == pop) & (diagnostics["group"].astype(str) == "all")
                        & (diagnostics["summary"] != "proposals")]
        fn = d["summary"].str.startswith("f=") | (d["summary"] == "test_error")
        first = c.iloc[0]
        r_hat_max = float(np.nanmax(d["r_hat"])) if d["r_hat"].notna().any() else np.nan
        rows.append({"population": pop, "chains": int(first["chains"]), "samples": int(c["samples"].sum()),
                     "thin": int(first["thin"]), "burn_in": int(first["burn_in"]), "init": first["init"],
                     "distinct_functions": estimators[pop]["function"].nunique(),
                     "r_hat_functions_max": float(d.loc[fn, "r_hat"].max()), "r_hat_max": r_hat_max,
                     "r_hat_min": float(d["r_hat"].min()),
                     "ess_bulk_functions_min": float(d.loc[fn, "ess_bulk"].min()),
                     "ess_tail_functions_min": float(d.loc[fn, "ess_tail"].min()),
                     "ess_min": float(d["ess_bulk"].min()), "ess_max": float(d["ess_bulk"].max()),
                     "n_eff": n_eff[pop][None], "n_eff_half_a": n_eff[pop][0], "n_eff_half_b": n_eff[pop][1],
                     "mixed": mixed(r_hat_max),
                     "config_hash": first["config_hash"], "seed": int(first["seed"])})
    return pd.DataFrame(rows)


def mcmc_traces_table(curves: pd.DataFrame, estimators: dict[str, pd.DataFrame], task: Task) -> pd.DataFrame:
    """The chain-averaged traces (raw/mcmc_traces.csv) with, where exact rejection ran, each traced
    quantity's value under rejection's P_B (a function's frequency; the mean test error): where
    the chains have mixed, both groups' curves lie on it."""
    curves = curves.drop(columns=["config_hash", "seed"], errors="ignore")
    if BAYES not in estimators:
        return curves.assign(rejection_value=np.nan)
    counts = bayes_counts(estimators[BAYES])
    total = sum(counts.values())
    errors = {f: float(np.mean(hex_to_bits(f, len(task.test_idx)) != task.y_test)) for f in counts}
    values = {"test_error": sum(n * errors[f] for f, n in counts.items()) / total}
    values |= {f"f={f}": n / total for f, n in counts.items()}
    return curves.assign(rejection_value=curves["summary"].map(lambda k: values.get(k, 0.0 if k.startswith("f=") else np.nan)))


def coverage_table(joint: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Per setting: functions with >= threshold counts in both populations and the decades of P_B they span."""
    rows = []
    for setting, g in joint.groupby("setting", sort=False):
        both = g[(g["count_sgd"] >= threshold) & (g["count_bayes"] >= threshold)]
        rows.append({"setting": setting, "threshold": threshold, "functions_in_both": len(both),
                     "decades_bayes": stats.decades(both["p_bayes"].to_numpy()),
                     "decades_sgd": stats.decades(both["p_sgd"].to_numpy()),
                     "functions_seen": len(g)})
    return pd.DataFrame(rows)


def read_raw(raw_dir: Path, cfg: ExperimentConfig) -> dict:
    """The raw tables of every stage the config has (a missing one is an error naming the file)."""
    def read(name):
        path = raw_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} missing")
        return pd.read_csv(path, dtype={"function": str, "group": str} if name == "mcmc_diagnostics.csv"
                           else {"function": str})

    also = None if cfg.mcmc is None else cfg.mcmc.also_init
    enabled = {"bayes_rejection": cfg.rejection, "bayes_mcmc": cfg.mcmc, "nngp_exact": cfg.nngp,
               "bayes_mcmc_from_sgd": also == "sgd" or None, "bayes_mcmc_from_rejection": also == "rejection" or None}
    out = {"runs": read("sgd_runs.csv"), "sgd_chunks": read("sgd_chunks.csv"),
           "estimators": {k: read(f) for k, f in COUNT_ESTIMATORS.items() if enabled[k] is not None}}
    if cfg.rejection is not None:
        out["rejection_chunks"] = read("rejection_chunks.csv")
    if cfg.mcmc is not None:
        out["mcmc_diagnostics"], out["mcmc_chunks"] = read("mcmc_diagnostics.csv"), read("mcmc_chunks.csv")
        out["mcmc_traces"] = read("mcmc_traces.csv")
    if cfg.nngp is not None:
        out["nngp_ep"], out["nngp_summary"] = read("nngp_ep.csv"), read("nngp_summary.csv")
    if cfg.geometry is not None:
        out["geometry"], out["geometry_identity"] = read("geometry.csv"), read("geometry_identity.csv")
        out["geometry_chunks"] = read("geometry_chunks.csv")
    if cfg.sweep is not None:
        out["sweep"] = read("sweep.csv")
    # wall-clock columns, split off by the stages (study.store.write_raw_table): costs, not results
    out["timings"] = {name: read(f"{name}_timings.csv") for name in TIMED if name in out}
    return out


TIMED = ("sgd_chunks", "rejection_chunks", "mcmc_chunks", "nngp_summary", "geometry_chunks")


def timing_table(raw: dict, n_eff: dict[str, dict] | None = None) -> pd.DataFrame:
    """Costs, kept apart from the results (they differ in every run): one row per stage (and SGD
    setting) with its work, wall-clock seconds, rate and, where counted, useful GFLOP/s; the
    rejection sampler also in effective samples (n_eff) per second."""
    t = raw["timings"]
    rows = []

    def row(stage, item, work, unit, seconds, flops=np.nan):
        rows.append({"stage": stage, "item": item, "work": work, "unit": unit, "seconds": seconds,
                     "rate": work / seconds, "useful_gflops": flops / seconds / 1e9})

    chunks = raw["sgd_chunks"].merge(t["sgd_chunks"], on=["setting", "chunk"])
    for setting, c in chunks.groupby("setting", sort=False):
        row("sgd", setting, int(c["runs"].sum()), "runs", float(c["seconds"].sum()), float(c["useful_flops"].sum()))
    if "rejection_chunks" in t:
        c = raw["rejection_chunks"]
        row("rejection", BAYES, int(c["draws"].sum()), "draws", float(t["rejection_chunks"]["seconds"].sum()),
            float(c["useful_flops"].sum()))
        if n_eff is not None and BAYES in n_eff:
            row("rejection", "effective", int(n_eff[BAYES][None]), "effective samples",
                float(t["rejection_chunks"]["seconds"].sum()))
    if "mcmc_chunks" in t:
        row("mcmc", "bayes_mcmc", int(raw["mcmc_chunks"]["samples"].sum()), "samples",
            float(t["mcmc_chunks"]["seconds"].sum()))
    if "nngp_summary" in t:
        s, ts = raw["nngp_summary"].iloc[0], t["nngp_summary"].iloc[0]
        row("nngp_exact", s["exact_method"], int(s["exact_samples"]), "samples", float(ts["exact_seconds"]))
        row("nngp_ep", "ep", int(s["ep_functions"]), "functions",
            float(ts["ep_seconds_per_function"]) * max(1, int(s["ep_functions"])))
        if float(ts.get("ep_check_seconds_per_function", 0.0)) > 0:  # the predictive scored beside the ratio
            row("nngp_ep", "predictive", int(s["ep_functions"]), "functions",
                float(ts["ep_check_seconds_per_function"]) * max(1, int(s["ep_functions"])))
    if "geometry_chunks" in t:
        row("geometry", "points", int(raw["geometry_chunks"]["points"].sum()), "points",
            float(t["geometry_chunks"]["seconds"].sum()))
    return pd.DataFrame(rows)
