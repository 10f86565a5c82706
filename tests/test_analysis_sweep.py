"""analysis/sweep.py on synthetic points shaped like raw/sweep.csv, with a known monotone relation
between feature count and basin size in one variant and none in another."""
import numpy as np
import pandas as pd
import pytest

from analysis import sweep

RAW = [m for m in sweep.MEASURES if m != "log_radius_relative"]  # the rest come from the stage


def variant(name: str, population: str, n: int, rng: np.random.Generator, fitted: bool = True,
            **columns) -> pd.DataFrame:
    frame = pd.DataFrame(rng.uniform(1, 2, size=(n, len(RAW))), columns=RAW)
    for column, values in columns.items():
        frame[column] = values
    return frame.assign(variant=name, group="g", widths="8-8", weight_decay=0.01, population=population,
                        point=np.arange(n), steps=rng.integers(100, 200, n), fitted=fitted, function="00",
                        hess_mse_converged=True, hess_ce_converged=True, n_params=128)


def synthetic(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(1, 10, 40)
    mono = variant("mono", "sgd", 40, rng, ntk_S_entropy_rank=x, log_radius_median=-x, gn_mse_log_det=2 * x)
    mono.loc[:4, "hess_mse_converged"] = False
    # unfitted runs with the opposite relation: they must not enter any summary or correlation
    stray = variant("mono", "sgd", 10, rng, fitted=False, ntk_S_entropy_rank=x[:10] + 20,
                    log_radius_median=x[:10] + 20, steps=5000)
    shuffled = variant("shuffled", "sgd", 40, rng, ntk_S_entropy_rank=x, log_radius_median=-rng.permutation(x))
    bayes = variant("bayes_8-8", "bayes", 6, rng)  # fewer than 10 points: no correlation
    return pd.concat([mono, stray, shuffled, bayes], ignore_index=True)


def test_with_derived_adds_the_relative_radius_and_blanks_unconverged_hessians():
    raw = synthetic()
    points = sweep.with_derived(raw)
    expected = raw["log_radius_median"] - np.log(raw["theta_norm"])
    np.testing.assert_allclose(points["log_radius_relative"], expected)
    assert points["hess_mse_top"].isna().sum() == 5 and points["hess_ce_top"].notna().all()
    assert "log_radius_relative" not in raw  # the raw table is not changed


def test_sweep_summary_counts_runs_and_summarises_fitted_points_only():
    raw = synthetic()
    summary = sweep.sweep_summary(sweep.with_derived(raw)).set_index("variant")
    assert list(summary.index) == ["mono", "shuffled", "bayes_8-8"]
    mono = summary.loc["mono"]
    assert (mono["runs"], mono["fitted"], mono["n_params"], mono["population"]) == (50, 40, 128, "sgd")
    fitted = raw[(raw["variant"] == "mono") & raw["fitted"]]
    assert mono["median_steps"] == np.median(fitted["steps"])  # the 5000-step unfitted runs are left out
    x = fitted["ntk_S_entropy_rank"]
    assert [mono["ntk_S_entropy_rank_q25"], mono["ntk_S_entropy_rank_median"], mono["ntk_S_entropy_rank_q75"]] \
        == pytest.approx(np.quantile(x, [0.25, 0.5, 0.75]))
    assert mono["hess_mse_top_median"] == pytest.approx(np.median(fitted["hess_mse_top"].iloc[5:]))  # converged
    assert mono["log_radius_median_median"] == pytest.approx(-np.median(x))


def test_sweep_correlation_sees_a_monotone_relation_and_not_a_shuffled_one():
    points = sweep.with_derived(synthetic())
    corr = sweep.sweep_correlation(points, np.random.default_rng(1), 300, 0.95)
    assert set(corr["scope"]) == {"all_sgd", "mono", "shuffled"}  # bayes: 6 points, too few
    assert len(corr) == 3 * len(sweep.FEATURES) * len(sweep.BASINS)
    c = corr.set_index(["scope", "x", "y"])
    down = c.loc[("mono", "ntk_S_entropy_rank", "log_radius_median")]
    assert down["points"] == 40 and down["spearman"] == pytest.approx(-1)  # the strays would break it
    assert down["ci_high"] == pytest.approx(-1)
    up = c.loc[("mono", "ntk_S_entropy_rank", "gn_mse_log_det")]
    assert up["spearman"] == pytest.approx(1) and up["ci_low"] == pytest.approx(1)
    assert c.loc[("mono", "ntk_S_entropy_rank", "hess_mse_top"), "points"] == 35  # 5 unconverged
    none = c.loc[("shuffled", "ntk_S_entropy_rank", "log_radius_median")]
    assert none["ci_low"] < 0 < none["ci_high"] and abs(none["spearman"]) < 0.35
