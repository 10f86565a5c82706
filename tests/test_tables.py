"""analysis/tables.py on small hand-built raw tables shaped like raw/*_counts.csv and raw/sgd_runs.csv."""
import numpy as np
import pandas as pd
import pytest

from analysis import stats, tables
from study.config import AnalysisConfig, ExperimentConfig, NNGPConfig, RejectionConfig
from study.tasks import lz_complexity, make_task

CFG = ExperimentConfig(name="t", seed=0, rejection=RejectionConfig(),
                       analysis=AnalysisConfig(bootstrap=100, matched_reps=3, permutations=199))
HEX = [format(i, "x") for i in range(16)]  # the 16 functions on |E| = 4 test inputs


def counts_table(rows, columns=("chunk", "function", "count")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).assign(population="bayes_rejection", config_hash="h", seed=0)


def test_bayes_counts_halves_by_chunk_parity_or_chain_group():
    raw = counts_table([(0, "a", 5), (1, "a", 7), (2, "b", 3), (3, "a", 1), (3, "b", 4)])
    assert tables.bayes_counts(raw) == {"a": 13, "b": 7}
    assert tables.bayes_counts(raw, 0) == {"a": 5, "b": 3}  # chunks 0 and 2
    assert tables.bayes_counts(raw, 1) == {"a": 8, "b": 4}  # chunks 1 and 3
    # MCMC: the chain group decides, not the chunk (here every row's group differs from its parity)
    mcmc = raw.assign(group=[1, 0, 1, 1, 0])
    assert tables.bayes_counts(mcmc, 0) == {"a": 7, "b": 4}
    assert tables.bayes_counts(mcmc, 1) == {"a": 6, "b": 3}


def test_function_table_probabilities_errors_and_complexity():
    task = make_task(3, "majority", 3, 4, seed=0)
    bits = lambda h: np.array([(int(h, 16) >> (3 - i)) & 1 for i in range(4)], bool)  # MSB first
    target = HEX[sum(int(b) << (3 - i) for i, b in enumerate(task.y_test))]
    assert target == "7"  # y_test = 0111 for this seed
    counts = {"0": 5, "f": 3, target: 9}
    table = tables.function_table(counts, "pop", task)
    assert list(table["count"]) == sorted(counts.values(), reverse=True)
    assert table["probability"].sum() == pytest.approx(1.0)
    for r in table.itertuples():
        assert r.probability == pytest.approx(counts[r.function] / 17)
        assert r.test_error == pytest.approx(np.mean(bits(r.function) != task.y_test))
    row = table.set_index("function").loc[target]  # f = the target on E: the target's own table on S and E
    assert row["test_error"] == 0 and row["lz"] == pytest.approx(lz_complexity(task.target[task.union_idx]))
    assert table.set_index("function").loc["f", "test_error"] == 0.25


def test_usable_is_all_of_an_independent_sample_and_about_ess_over_thin_of_a_chain():
    assert tables.usable(5000.0, 5000) == 5000 and tables.usable(1e9, 300) == 300
    # the largest n with n (1/ESS - 1/N) <= 1/THIN: a little above ESS / THIN when ESS is a fifth of N
    n = tables.usable(999.0, 5000)
    assert n * (1 / 999 - 1 / 5000) <= 1 / tables.THIN < (n + 1) * (1 / 999 - 1 / 5000)
    assert 999 // tables.THIN < n < 1.3 * 999 / tables.THIN
    assert tables.usable(3.0, 5000) == 1  # never empty
    # a design effect of 1.02 (grouped rejection at small K): all of it
    assert tables.usable(10_000 / 1.02, 10_000) == 10_000 and tables.usable(10_000 / 1.5, 10_000) == 1000
    rng = np.random.default_rng(0)
    counts = np.array([400, 300, 200, 100])
    n = tables.usable(600.0, int(counts.sum()))
    thinned = stats.subsample(counts, n, rng)
    assert thinned.sum() == n == 75 and (thinned <= counts).all()
    # without replacement: 99 of 100 distinct items leave exactly one out (with replacement, a repeat)
    assert sorted(stats.subsample(np.ones(100, np.int64), 99, rng)) == [0] + [1] * 99


def test_effective_sizes_of_rejection_mcmc_and_ess_nngp():
    rejection = counts_table([(0, "a", 600), (1, "a", 300), (2, "b", 100)])
    mcmc = pd.DataFrame({"chunk": [0, 0, 1], "group": [0, 1, 0], "function": ["a", "a", "b"],
                         "count": [700, 800, 300]})
    nngp = counts_table([(c, "a", 1000) for c in range(3)])
    rows = [("bayes_mcmc", "all", "f=a", 500.0), ("bayes_mcmc", "all", "test_error", 300.0),
            ("bayes_mcmc", "all", "out_E0", 5.0),  # a scalar summary: not a function-level trace
            ("bayes_mcmc_from_sgd", "all", "f=a", 1.0),  # another population
            ("bayes_mcmc", "0", "f=a", 200.0), ("bayes_mcmc", "0", "test_error", np.nan),
            ("bayes_mcmc", "1", "f=a", np.nan), ("bayes_mcmc", "1", "test_error", np.nan)]  # all NaN: constant
    diag = pd.DataFrame(rows, columns=["population", "group", "summary", "ess_bulk"])
    raw = {"estimators": {"bayes_rejection": rejection, "bayes_mcmc": mcmc, "nngp_exact": nngp},
           "mcmc_diagnostics": diag, "nngp_summary": pd.DataFrame({"exact_ess_min": [50.0]})}
    cfg = ExperimentConfig(name="t", seed=0, nngp=NNGPConfig(exact="ess"))
    sizes = tables.effective_sizes(raw, cfg)
    assert sizes["bayes_rejection"] == {None: 1000, 0: 700, 1: 300}
    assert sizes["bayes_mcmc"] == {None: 300, 0: 200, 1: 800}
    assert sizes["nngp_exact"] == {None: 150, 0: 100, 1: 50}  # 50 per chunk; chunks 0, 2 | 1
    # an exact NNGP sampler by rejection is independent draws: its size
    sizes = tables.effective_sizes(raw, ExperimentConfig(name="t", seed=0, nngp=NNGPConfig()))
    assert sizes["nngp_exact"] == {None: 3000, 0: 2000, 1: 1000}


def populations(seed=0):
    """A rejection reference (4 chunks) and SGD runs of one setting from the same distribution and
    one from a clearly different one, with unfitted runs that must not count."""
    rng = np.random.default_rng(seed)
    p = 0.7 ** np.arange(16)
    p /= p.sum()
    q = p[::-1].copy()
    ref = counts_table([(c, f, n) for c in range(4) for f, n in zip(HEX, rng.multinomial(3000, p)) if n])
    runs = [pd.DataFrame({"setting": s, "function": rng.choice(HEX, 3000, p=dist), "fitted": True})
            for s, dist in (("same", p), ("different", 0.5 * p + 0.5 * q))]
    runs.append(pd.DataFrame({"setting": "same", "function": ["f"] * 500, "fitted": False}))
    return ref, pd.concat(runs, ignore_index=True)


def test_agreement_of_one_distribution_sits_on_the_floor_and_of_another_does_not():
    ref, runs = populations()
    estimators = {"bayes_rejection": ref}
    n_eff = tables.effective_sizes({"estimators": estimators}, CFG)
    table = tables.agreement_table(runs, estimators, None, None, CFG, n_eff)
    assert set(table["statistic"]) == set(stats.STATISTICS) and set(table["setting"]) == {"same", "different"}
    tv = table[table["statistic"] == "tv"].set_index("setting")
    assert (tv["n_test"] == 3000).all() and (tv["n_a"] == 3000).all() and (tv["n_b"] == 6000).all()
    same, different = tv.loc["same"], tv.loc["different"]
    assert same["effect_low"] < 0 < same["effect_high"] and abs(same["effect"]) < 0.02
    assert same["p_value"] > 0.05 and same["floor_p_value"] > 0.05
    assert different["effect_low"] > 0.05 and different["p_value"] <= 1 / 200
    assert different["q_value"] <= 2 / 200 and different["floor_p_value"] > 0.05
    pearson = table[table["statistic"] == "pearson_log"].set_index("setting")
    assert pearson.loc["different", "effect_high"] < 0 < pearson.loc["same", "effect_high"]


def test_agreement_with_an_autocorrelated_reference_thins_it_to_ess_over_thin():
    ref, runs = populations(1)
    n_eff = {"bayes_rejection": {None: 4000.0, 0: 2000.0, 1: 1000.0}}  # as if chains: ESS far below 6000
    table = tables.agreement_table(runs[runs["setting"] == "same"], {"bayes_rejection": ref}, None, None, CFG, n_eff)
    n_a, n_b = (tables.usable(ess, 6000) for ess in (2000.0, 1000.0))  # the halves hold 6000 items each
    assert n_a == 150 and n_b == 60 and (table["n_a"] == n_a).all() and (table["n_b"] == n_b).all()
    assert (table["n_eff_reference_a"] == 2000).all() and (table["n_test"] == 3000).all()


def test_pb_estimates_and_coverage():
    task = make_task(3, "majority", 3, 4, seed=0)
    a = counts_table([(0, "0", 90), (1, "1", 10)])
    b = counts_table([(0, "0", 50), (1, "2", 50)])
    ep = {"0": np.log(0.5), "2": np.log(0.25), "3": np.log(0.25)}  # "3" seen by no sampler: no row
    est = tables.pb_estimates({"bayes_rejection": a, "nngp_exact": b}, ep).set_index(["estimator", "function"])
    assert est.loc[("bayes_rejection", "1"), "log10_p"] == pytest.approx(-1.0)
    assert est.loc[("nngp_ep", "2"), "log10_p"] == pytest.approx(np.log10(0.25))
    assert sorted(est.loc["nngp_ep"].index) == ["0", "2"]
    joint = tables.joint_table({"0": 20, "1": 5, "2": 11}, {"0": 30, "1": 12, "3": 40}, "s", task)
    assert list(joint["function"]) == ["0", "1", "2", "3"] and joint["p_sgd"].sum() == pytest.approx(1)
    cover = tables.coverage_table(joint, threshold=10).iloc[0]
    assert cover["functions_in_both"] == 1 and cover["functions_seen"] == 4  # only "0" has >= 10 in both
    assert cover["decades_bayes"] == 0.0


def test_a_setting_with_no_fitted_run_is_reported_not_dropped_or_fatal(capsys):
    ref, runs = populations(2)
    none_fit = pd.DataFrame({"setting": "diverged", "function": ["f"] * 50, "fitted": False})
    estimators = {"bayes_rejection": ref}
    n_eff = tables.effective_sizes({"estimators": estimators}, CFG)
    table = tables.agreement_table(pd.concat([runs, none_fit], ignore_index=True), estimators, None, None, CFG, n_eff)
    gone = table[table["setting"] == "diverged"]
    assert set(gone["statistic"]) == set(stats.STATISTICS) and (gone["n_a"] == 0).all()
    assert gone[["value", "floor", "effect", "p_value", "q_value"]].isna().all().all()
    assert table.loc[table["setting"] == "different", "q_value"].notna().all()
    assert "diverged: no run fitted S" in capsys.readouterr().err
    joint = tables.joint_table({}, {"0": 3, "f": 1}, "diverged", make_task(3, "majority", 3, 4, seed=0))
    assert joint["p_sgd"].isna().all() and np.isclose(joint["p_bayes"].sum(), 1)


def test_effective_size_of_grouped_rejection_is_its_size_over_the_largest_design_effect():
    """readouts > 1: each half's effective size is its fits over the largest design effect of its
    frequent functions, measured from that half's batches (hand-made moments: chunk 0 has two
    batches of 10 fits, all a then all b, design effect 20; chunk 1 is exactly proportional, 0,
    so it keeps its size); readouts = 1 (plain rejection) keeps the size whatever the moments."""
    counts = pd.DataFrame({"chunk": [0, 0, 1, 1], "function": ["a", "b", "a", "b"], "count": [10, 10, 12, 18],
                           "count_sq": [100, 100, 80, 180], "count_acc": [100, 100, 200, 300]})
    chunks = pd.DataFrame({"chunk": [0, 1], "accepted": [20, 30], "accepted_sq": [200, 500], "batches": [2, 2],
                           "readouts": [8, 8]})
    raw = {"estimators": {"bayes_rejection": counts}, "rejection_chunks": chunks}
    size = tables.effective_sizes(raw, CFG)["bayes_rejection"]
    both = stats.design_effects([22, 28], [180, 280], [300, 400], 50, 700, 4, 10).max()
    assert size[0] == pytest.approx(1.0) and size[1] == 30 and size[None] == pytest.approx(50 / both)
    plain = tables.effective_sizes({**raw, "rejection_chunks": chunks.assign(readouts=1)}, CFG)["bayes_rejection"]
    assert plain == {None: 50.0, 0: 20.0, 1: 30.0}


def test_ep_values_equal_up_to_its_convergence_noise_rank_as_ties():
    """Six functions equally probable by symmetry get EP values 1e-9 nats apart, ordered against
    their sample counts: ranked as ties (tables.EP_TIE_NATS), Spearman is that of the exact values;
    ranking the noise (the wrong variant) turns it negative."""
    from scipy.stats import spearmanr
    counts = {"f0": 100, **{f"f{i}": 8 + 2 * i for i in range(1, 7)}}
    exact = {"f0": -1.0, **{f"f{i}": -3.0 for i in range(1, 7)}}
    noisy = {"f0": -1.0, **{f"f{i}": -3.0 - 1e-9 * i for i in range(1, 7)}}
    table = tables.compare_to_fixed("x_vs_nngp_ep", "x", counts, noisy, CFG, np.random.default_rng(0), False)
    rho = table.loc[table["statistic"] == "spearman_log", "value"].iat[0]
    keys = sorted(counts)
    a = np.log([counts[k] for k in keys])
    assert rho == pytest.approx(spearmanr(a, [exact[k] for k in keys])[0]) and rho > 0.3
    assert spearmanr(a, [noisy[k] for k in keys])[0] < 0
