"""analysis/ep_view.py and stats.ep_view: populations seen through EP's log P_B, on hand-built cases
and on synthetic populations of many singleton functions whose answer is known."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import ep_view, stats
from study.config import AnalysisConfig, ExperimentConfig, RejectionConfig

CFG = ExperimentConfig(name="t", seed=0, rejection=RejectionConfig(),
                       analysis=AnalysisConfig(bootstrap=100, matched_reps=3, permutations=199))


def test_ep_view_statistics_by_hand():
    """log10 P_B = -1, -1.5, -3 and one EP failure; a puts 2 items on the first, b 2 on the second,
    both 1 on the third and 1 on the failed one."""
    statistics, binned_tv = stats.ep_view(np.array([-1.0, -1.5, -3.0, np.nan]))
    a, b = np.array([2, 0, 1, 1]), np.array([0, 2, 1, 1])
    out = statistics(a, b)
    assert out["tv_ep_bins"] == pytest.approx(0.5) == binned_tv(a, b)  # bins [-1, 0) and [-2, -1) swap 2 of 4
    assert out["mean_log10_pb_shift"] == pytest.approx(-5 / 3 - -2)  # over the 3 scored items each
    assert out["ks_log10_pb"] == pytest.approx(2 / 3)
    assert out["ep_failed_fraction"] == pytest.approx(1 / 4)
    # The KS distance is scipy's on the items themselves.
    x = np.array([-1.0, -1.5, -3.0])
    assert out["ks_log10_pb"] == pytest.approx(sps.ks_2samp(np.repeat(x, a[:3]), np.repeat(x, b[:3])).statistic)
    # Functions in one bin are one: moving mass within a bin leaves the binned TV at 0.
    statistics, _ = stats.ep_view(np.array([-2.1, -2.9]))
    assert statistics(np.array([5, 0]), np.array([0, 5]))["tv_ep_bins"] == 0.0


def synthetic(rng, n_functions=100_000, n_runs=4000, n_ref=8000, power=1.0, decades=(-8, -2),
              reference="bayes_rejection"):
    """A posterior over many functions with known log10 P_B spread uniformly over `decades`, sampled
    twice (two halves: the reference), and an 'SGD' population drawn from P_B^power (normalised):
    power 1 is a Bayesian sampler, power > 1 over-concentrates on the most probable functions. With
    log10 P_B uniform on (-8, -2), the mean log10 P_B over items is -2 - 1 / (power ln 10): -2.43 at
    power 1, -2.22 at 2."""
    log10_p = rng.uniform(*decades, n_functions)
    p = 10 ** log10_p / np.sum(10 ** log10_p)
    q = p**power / np.sum(p**power)
    functions = np.array([f"{i:05x}" for i in range(n_functions)])
    ep = dict(zip(functions, log10_p * np.log(10)))
    runs = pd.DataFrame({"setting": "sgd", "fitted": True, "function": functions[rng.choice(n_functions, n_runs, p=q)]})
    ref = rng.choice(n_functions, n_ref, p=p)
    raw = pd.DataFrame({"chunk": np.arange(n_ref) % 2, "function": functions[ref], "count": 1})
    n_eff = {reference: {None: n_ref, 0: n_ref / 2, 1: n_ref / 2}}
    return runs, {reference: raw}, ep, n_eff


def test_a_bayesian_sampler_sits_on_the_floor_and_a_concentrating_one_does_not():
    """Most functions are seen once here (100,000 functions, 4,000 runs), so counts per function
    cannot tell the two apart; through EP's P_B the concentrating population (P_B^2) has a mean
    log10 P_B 0.217 decades above the posterior's, beyond the floor's interval, and a small
    p-value; the Bayesian one does not."""
    results = {}
    for power in (1.0, 2.0):
        runs, estimators, ep, n_eff = synthetic(np.random.default_rng(1), power=power)
        table = ep_view.ep_view_table(runs, estimators, ep, CFG, n_eff).set_index("statistic")
        results[power] = table
        assert set(table.index) == set(stats.EP_STATISTICS)
        assert table.loc["tv_ep_bins", "n_a"] == 4000 and table.loc["ep_failed_fraction", "value"] == 0
    fair, biased = results[1.0], results[2.0]
    assert fair.loc["mean_log10_pb_shift", "effect_low"] < 0 < fair.loc["mean_log10_pb_shift", "effect_high"]
    assert fair.loc["tv_ep_bins", "p_value"] > 0.05
    assert 0.1 < biased.loc["mean_log10_pb_shift", "effect_low"] < 0.217 < biased.loc["mean_log10_pb_shift", "effect_high"]
    assert biased.loc["tv_ep_bins", "p_value"] < 0.01 and biased.loc["tv_ep_bins", "q_value"] < 0.01
    summary = ep_view.ep_summary_table(runs, estimators, ep).set_index("population")
    assert summary.loc["sgd", "singleton_fraction"] > 0.5 and 1 < summary.loc["sgd", "decades"] <= 6


def test_ep_mass_counts_every_item_and_the_failures():
    runs = pd.DataFrame({"setting": "s", "fitted": [True, True, True, False], "function": ["a", "b", "c", "d"]})
    raw = pd.DataFrame({"chunk": [0, 1], "function": ["a", "b"], "count": [3, 1]})
    ep = {"a": np.log(0.5), "b": np.log(0.002)}  # c: EP failed; d did not fit S and is not counted
    mass = ep_view.ep_mass_table(runs, {"bayes_rejection": raw}, ep)
    sgd = mass[mass["population"] == "s"]
    assert sgd["count"].sum() == 3 and sgd["mass"].sum() == pytest.approx(1)
    assert sgd.loc[sgd["ep_failed"], "count"].tolist() == [1]
    assert sorted(sgd["log10_pb_low"].dropna()) == [-3.0, -1.0]
    post = mass[mass["population"] == "bayes_rejection"].set_index("log10_pb_low")
    assert post.loc[-1.0, "mass"] == pytest.approx(0.75) and post["kind"].eq("posterior").all()


def in_sample_frequent_mass(counts, p, threshold):
    """The wrong variant: functions chosen by their counts and their mass read from the same counts."""
    keep = counts >= threshold
    return float(np.log10(counts[keep].sum() / counts.sum() / p[keep].sum()))


def test_frequent_mass_is_unbiased_where_selecting_on_the_same_counts_is_not():
    """A sample of 2,000 draws from 400 functions with P ~ 1/rank (most near the threshold of 5
    counts), against the true P: over 200 samples the held-out log10 mass ratio averages 0 (within
    0.005, its standard error about 0.0005), while reading the mass from the counts that selected
    the functions overstates it by 0.02 decades (30 standard errors), and a sample drawn with the
    top 20 functions' P doubled is measured at the ratio it has on the functions selected."""
    rng = np.random.default_rng(3)
    p = 1 / np.arange(1, 401)
    p /= p.sum()
    ratios, wrong = [], []
    for i in range(200):
        counts = rng.multinomial(2000, p)
        ratios.append(stats.frequent_mass(counts, lambda keep: p[keep].sum(), 5, [i])[0])
        wrong.append(in_sample_frequent_mass(counts, p, 5))
    assert abs(np.mean(ratios)) < 0.005 and np.std(ratios) / np.sqrt(200) < 0.001
    assert np.mean(wrong) > 0.015
    boosted = p.copy()
    boosted[:20] *= 2
    boosted /= boosted.sum()
    counts = rng.multinomial(200_000, boosted)
    # a threshold between the 20th (boosted P 0.0098) and the 21st (0.0047): 700 counts in a half
    value, selected = stats.frequent_mass(counts, lambda keep: p[keep].sum(), 1400, 0)
    assert selected == 20
    assert value == pytest.approx(np.log10(boosted[:20].sum() / p[:20].sum()), abs=0.01)
    # Functions not eligible (EP failed on them) are never selected; with none eligible the ratio is NaN.
    assert np.isnan(stats.frequent_mass(counts, lambda keep: p[keep].sum(), 5, 0, eligible=np.zeros(400, bool))[0])


def test_frequent_mass_in_the_matched_view_sits_on_its_floor_for_a_fair_sampler():
    """ep_view's frequent_mass_log10 (sample against sample): a population drawn from the posterior
    itself has an effect whose interval contains 0; one drawn with the 10 most probable functions'
    P doubled is above the floor, by less than log10 of the boost on those 10 alone (1.47: the
    selection reaches further down)."""
    rng = np.random.default_rng(4)
    n_functions = 2000
    p = 1 / np.arange(1, n_functions + 1)
    p /= p.sum()
    functions = np.array([f"{i:04x}" for i in range(n_functions)])
    ep = dict(zip(functions, np.log(p)))
    ref = rng.choice(n_functions, 8000, p=p)
    estimators = {"bayes_rejection": pd.DataFrame({"chunk": np.arange(8000) % 2, "function": functions[ref], "count": 1})}
    n_eff = {"bayes_rejection": {None: 8000, 0: 4000, 1: 4000}}
    boosted = np.where(np.arange(n_functions) < 10, 2 * p, p)
    out = {}
    for name, q in (("fair", p), ("boosted", boosted / boosted.sum())):
        runs = pd.DataFrame({"setting": name, "fitted": True, "function": functions[rng.choice(n_functions, 4000, p=q)]})
        table = ep_view.ep_view_table(runs, estimators, ep, CFG, n_eff).set_index("statistic")
        out[name] = table.loc["frequent_mass_log10"]
    assert out["fair"]["effect_low"] < 0 < out["fair"]["effect_high"]
    top = p[:10].sum()
    assert 0.03 < out["boosted"]["effect_low"] and out["boosted"]["effect"] < np.log10(2 * top / (1 + top) / top)


def test_mean_test_error_weights_each_function_by_its_runs():
    """Averaged over runs, not over distinct functions: 3 runs at error 0 and 1 at error 0.5 give
    0.125 (the unweighted mean over functions, 0.25, is the wrong answer)."""
    functions = pd.DataFrame({"population": ["s", "s", "p"], "function": ["a", "b", "a"],
                              "count": [3, 1, 2], "test_error": [0.0, 0.5, 0.0]})
    assert ep_view.mean_test_error(functions) == pytest.approx({"s": 0.125, "p": 0.0})
    ep = {"a": np.log(0.5), "b": np.log(0.01)}
    runs = pd.DataFrame({"setting": "s", "fitted": True, "function": ["a", "a", "a", "b"]})
    summary = ep_view.ep_summary_table(runs, {}, ep, ep_view.mean_test_error(functions)).set_index("population")
    assert summary.loc["s", "test_error_mean"] == pytest.approx(0.125)


def test_trend_interval_covers_the_true_rank_correlation_and_excludes_zero_only_when_there_is_one():
    """Synthetic population of 400 singleton functions whose test error falls with log P_B through
    Gaussian noise of known size: the population rank correlation of a bivariate normal with
    correlation r is (6/pi) arcsin(r/2), -0.582 at r = -0.6; the bootstrap interval holds it and
    excludes 0, and with the errors shuffled (no association, the wrong variant) it holds 0."""
    rng = np.random.default_rng(3)
    n, r = 400, -0.6
    log_pb = rng.normal(size=n)
    error = r * log_pb + np.sqrt(1 - r**2) * rng.normal(size=n)
    ep = {f"f{i}": float(v * np.log(10)) for i, v in enumerate(log_pb)}
    functions = pd.DataFrame({"population": "s", "function": list(ep), "count": 1, "test_error": error})
    row = ep_view.ep_trend_table(functions, ep, np.random.default_rng(0), 400, 0.95).iloc[0]
    truth = 6 / np.pi * np.arcsin(r / 2)
    assert row.functions == n and row.ci_low < truth < row.ci_high < 0 and row.p_value < 1e-6
    shuffled = functions.assign(test_error=rng.permutation(error))
    row = ep_view.ep_trend_table(shuffled, ep, np.random.default_rng(0), 400, 0.95).iloc[0]
    assert row.ci_low < 0 < row.ci_high


def test_the_matched_scatter_against_ep_sits_on_its_floor_for_a_bayesian_sampler_only():
    """Selecting the functions seen at least count_threshold times biases the slope of the scatter
    (rare functions clear the threshold only when seen more often than their P_B says), so a
    Bayesian sampler's slope is not 1: the floor, the posterior sample's own scatter at the same n,
    carries the same bias. The fair sampler's effect interval covers 0 and excludes the naive
    answer (slope 1); P_B^1.5's slope lies beyond its floor, and its interval excludes 0."""
    cfg = ExperimentConfig(name="t", seed=0, rejection=RejectionConfig(),
                           analysis=AnalysisConfig(count_threshold=5, bootstrap=100, matched_reps=3, permutations=99))
    tables = {}
    for power in (1.0, 1.5):
        # 2,000 functions over 3 decades, 20,000 runs, an exact sample of 40,000 in two halves
        runs, estimators, ep, n_eff = synthetic(np.random.default_rng(3), 2000, 20_000, 40_000, power, (-6, -3),
                                                "nngp_exact")
        tables[power] = ep_view.ep_scatter_table(runs, estimators, ep, cfg, n_eff).set_index("statistic")
    fair, biased = tables[1.0], tables[1.5]
    assert set(fair.index) == set(ep_view.SCATTER_STATISTICS) and fair.loc["slope_log", "n_a"] == 20_000
    slope = fair.loc["slope_log"]
    assert slope["effect_low"] < 0 < slope["effect_high"]
    assert slope["value"] - 1 < slope["effect_low"]  # against the naive floor, slope 1, it would look biased
    assert biased.loc["slope_log", "effect_low"] > 0.3
    assert fair.loc["pearson_log", "value"] > 0.5 and fair.loc["n_common", "value"] > 100
    macros = ep_view.ep_scatter_macros(tables[1.5].reset_index())
    assert macros["ScatterSgdSlopeLog"].value == pytest.approx(biased.loc["slope_log", "value"])
    assert macros["ScatterSlopeLogAbove"].value == 1 and isinstance(macros["ScatterSgdNCommon"].value, int)


def test_single_error_functions_equal_draws_pass_the_chi_square_and_uneven_ones_fail():
    """The |E| functions one test error from the target, as bits flipped one at a time: equal
    probabilities drawn as a multinomial give a dispersion index near 1 and a large p-value; a
    population that prefers some of them (probabilities 1 to 30) is rejected; EP's range over
    them is read from the scores it is given."""
    from study.encoding import bits_to_hex
    from study.tasks import make_task

    task = make_task(7, "majority", 32, 96, seed=0)
    keys = []
    for k in range(96):
        bits = task.y_test.astype(bool).copy()
        bits[k] = ~bits[k]
        keys.append(bits_to_hex(bits))
    assert len(set(keys)) == 96 and bits_to_hex(task.y_test.astype(bool)) not in keys
    rng = np.random.default_rng(0)
    even = dict(zip(keys, rng.multinomial(4800, np.full(96, 1 / 96))))
    w = np.linspace(1, 30, 96)
    uneven = dict(zip(keys, rng.multinomial(4800, w / w.sum()))) | {"0" * 24: 1000}
    ep = {k: -3.5 * np.log(10) for k in keys[:90]}
    table = ep_view.single_error_table({"even": even, "uneven": uneven}, ep, task).set_index("population")
    assert 0.7 < table.loc["even", "dispersion"] < 1.3 and table.loc["even", "p_value"] > 0.05
    assert table.loc["uneven", "dispersion"] > 5 and table.loc["uneven", "p_value"] < 1e-6
    assert table.loc["uneven", "items"] == 4800 and table.loc["uneven", "items_total"] == 5800
    assert table.loc["even", "ep_scored"] == 90 and table.loc["even", "ep_log10_range"] == pytest.approx(0, abs=1e-12)
    macros = ep_view.single_error_macros(table.reset_index())
    assert macros["SingleErrorsUnevenPValue"].value < 1e-6 and macros["SingleErrorsFunctions"].value == 96
