"""analysis/geometry.py (the tables; study/geometry.py, the measures, is tests/test_geometry.py) on
synthetic points shaped like raw/geometry.csv and raw/geometry_identity.csv."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import geometry

MEASURES = list(geometry.MEASURES)


def points(population: str, n: int, rng: np.random.Generator, shift: dict | None = None) -> pd.DataFrame:
    """n points of a population: every measure N(0, 1), plus `shift` for some."""
    frame = pd.DataFrame(rng.normal(size=(n, len(MEASURES))), columns=MEASURES)
    for measure, delta in (shift or {}).items():
        frame[measure] += delta
    return frame.assign(population=population, point=np.arange(n), function="00",
                        hess_mse_converged=True, hess_ce_converged=True, radius_censored=0.0)


def test_unconverged_hessians_are_blanked_and_counted():
    geom = pd.DataFrame({"population": ["a", "a", "a", "b"], "hess_mse_converged": [True, False, True, False],
                         "hess_ce_converged": [True, True, False, False], "hess_mse_top": [1.0, 2, 3, 4],
                         "hess_mse_trace_se": [0.1, 0.2, 0.3, 0.4], "hess_ce_top": [5.0, 6, 7, 8],
                         "gn_mse_top": [9.0, 9, 9, 9]})
    masked = geometry.mask_unconverged(geom)
    assert masked["hess_mse_top"].isna().tolist() == [False, True, False, True]
    assert masked["hess_mse_trace_se"].isna().tolist() == [False, True, False, True]
    assert masked["hess_ce_top"].isna().tolist() == [False, False, True, True]
    assert masked["gn_mse_top"].tolist() == [9.0] * 4  # Gauss-Newton numbers need no Lanczos run
    assert masked["hess_mse_converged"].tolist() == geom["hess_mse_converged"].tolist()  # flags kept
    assert geom["hess_mse_top"].notna().all()  # the input is not changed
    failures = geometry.hessian_failures(geom).set_index("population")
    assert failures.loc["a"].tolist() == [3, 1, 1] and failures.loc["b"].tolist() == [1, 1, 1]


def test_radius_censoring_counts_points_whose_median_is_a_lower_bound():
    geom = pd.DataFrame({"population": ["a", "a", "a", "a", "b"], "radius_censored": [0.0, 0.5, 0.25, 0.75, 1.0]})
    table = geometry.radius_censoring(geom).set_index("population")
    assert table.loc["a", "directions_censored"] == pytest.approx(0.375) and table.loc["a", "points"] == 4
    assert table.loc["a", "points_median_censored"] == 2  # 0.5 and 0.75: half or more censored
    assert table.loc["b"].tolist() == [1, 1.0, 1]


def test_population_summary_over_finite_values():
    rng = np.random.default_rng(0)
    geom = pd.concat([points("a", 40, rng), points("b", 25, rng)], ignore_index=True)
    geom.loc[[0, 3, 7], "hess_ce_top"] = np.nan  # three unconverged points of a
    table = geometry.population_summary(geom).set_index(["population", "measure"])
    assert len(table) == 2 * len(MEASURES)
    x = geom.loc[geom["population"] == "a", "hess_ce_top"]
    row = table.loc[("a", "hess_ce_top")]
    assert row["n"] == 37 and row["mean"] == pytest.approx(x.mean())  # pandas skips NaN
    assert [row["q25"], row["median"], row["q75"]] == pytest.approx(x.quantile([0.25, 0.5, 0.75]).tolist())
    assert table.loc[("b", "theta_norm"), "n"] == 25


def test_compare_populations_finds_the_one_shifted_measure():
    rng = np.random.default_rng(1)
    ref, n = "bayes_rejection", 150
    geom = pd.concat([points(ref, n, rng), points("same", n, rng),
                      points("shifted", n, rng, {"hess_mse_top": 1.0})], ignore_index=True)
    geom.loc[0, "theta_norm"] = np.nan
    table = geometry.compare_populations(geom, ref, np.random.default_rng(2), 300, 0.95)
    assert len(table) == 2 * len(MEASURES) and ref not in set(table["population"])
    assert (table["comparisons"] == 2 * len(MEASURES)).all()
    t = table.set_index(["population", "measure"])
    assert t.loc[("same", "theta_norm"), "n_reference"] == n - 1
    hit = t.loc[("shifted", "hess_mse_top")]
    assert hit["ci_low"] < 1 < hit["ci_high"] and hit["ci_low"] > 0  # the medians differ by 1
    assert hit["prob_greater"] == pytest.approx(sps.norm.cdf(1 / np.sqrt(2)), abs=0.06)
    assert hit["p_value"] < 1e-6 and hit["q_value"] < 1e-5
    null = t.drop(index=("shifted", "hess_mse_top"))
    assert (null["q_value"] > 0.05).all() and null["p_value"].median() > 0.2
    for (pop, measure), r in t.iterrows():  # P(X > Y) by brute force over all pairs
        a = geom.loc[geom["population"] == pop, measure].dropna().to_numpy()
        b = geom.loc[geom["population"] == ref, measure].dropna().to_numpy()
        assert r["prob_greater"] == pytest.approx(np.mean(a[:, None] > b[None, :]))
        assert r["median_difference"] == pytest.approx(np.median(a) - np.median(b))


def test_paired_sign_test_over_functions_both_populations_found():
    rows = [{"setting": "s", "function": f"{i:02x}", "points_sgd": 5, "points_bayes": 4} for i in range(8)]
    rows.append({"setting": "s", "function": "ff", "points_sgd": 5, "points_bayes": 1})  # too few points
    fn = pd.DataFrame(rows)
    for measure in MEASURES:
        fn[f"{measure}_bayes"] = 1.0
        fn[f"{measure}_sgd"] = 1.0  # no difference: no function counts
    fn["hess_mse_top_sgd"] = [2.0] * 8 + [0.0]  # SGD's instance sharper in all 8; the excluded one flatter
    fn.loc[0, "theta_norm_sgd"], fn.loc[1, "theta_norm_sgd"] = 0.5, 3.0
    table = geometry.paired_by_function(fn, min_points=3).set_index("measure")
    top = table.loc["hess_mse_top"]
    assert top["functions"] == 8 and top["frac_sgd_larger"] == 1.0
    assert top["p_sign_test"] == pytest.approx(2 * 0.5**8)  # two-sided binomial, all 8 one way
    assert table.loc["theta_norm", "functions"] == 2 and table.loc["theta_norm", "p_sign_test"] == 1.0
    assert table.loc["ntk_S_entropy_rank", "functions"] == 0  # ties are not evidence either way


def test_identity_summary_relative_error_of_the_leading_eigenvalues():
    def point(i, hess, gn, reached=True):
        return pd.DataFrame({"population": "p", "point": i, "state": "as_found", "loss": "mse",
                             "index": range(len(hess)), "hessian_eig": hess, "gn_eig": gn,
                             "residual_norm": 0.2, "loss_value": 0.01 * (i + 1), "reached": reached})
    identity = pd.concat([point(0, [2.0, 1.0, 1e-3], [2.1, 0.9, 0.0]),
                          point(1, [9.0, 1.0, 0.0], [1.0, 1.0, 0.0], reached=False),  # left out, counted
                          point(2, [1.2, 4.0, 0.5], [1.0, 4.0, 0.0])])
    row = geometry.identity_summary(identity, m=2).iloc[0]
    assert row["points"] == 2 and row["not_reached"] == 1
    # point 0: |2 - 2.1| / 2.1; point 2 (sorted: h = 4, 1.2; gn = 4, 1): 0.2 / 4
    assert row["max_rel_error"] == pytest.approx(0.05)
    assert row["median_rel_error"] == pytest.approx((0.1 / 2.1 + 0.05) / 2)
    assert row["max_rel_residual"] == pytest.approx(0.2 / 2.1) and row["max_loss"] == pytest.approx(0.03)
