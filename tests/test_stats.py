import numpy as np
from hypothesis import given, strategies as st
from scipy import stats as sps

from analysis import stats

counts = st.lists(st.integers(0, 1000), min_size=2, max_size=40).filter(lambda c: sum(c) > 0)


@given(counts)
def test_distances_of_identical_samples_are_zero(c):
    c = np.array(c)
    assert stats.total_variation(c, c) == 0
    assert abs(stats.kl_divergence(c, c)) < 1e-12


@given(counts, counts)
def test_total_variation_in_unit_interval_and_kl_nonnegative(a, b):
    n = min(len(a), len(b))
    a, b = np.array(a[:n]), np.array(b[:n])
    if a.sum() and b.sum():
        assert 0 <= stats.total_variation(a, b) <= 1 + 1e-12
        assert stats.kl_divergence(a, b) >= -1e-12


def test_disjoint_supports_have_total_variation_one():
    assert stats.total_variation(np.array([5, 0]), np.array([0, 7])) == 1


def test_align_and_log_correlations():
    keys, a, b = stats.align({"x": 100, "y": 20}, {"y": 40, "z": 5, "x": 200})
    assert keys == ["x", "y", "z"] and a.tolist() == [100, 20, 0] and b.tolist() == [200, 40, 5]
    p = np.array([400, 200, 100, 50, 25])
    r, rho, slope, n = stats.log_correlations(p, 2 * p, threshold=10)
    assert n == 5 and np.isclose(r, 1) and np.isclose(rho, 1) and np.isclose(slope, 1)
    _, _, slope, _ = stats.log_correlations(p**2, p, threshold=10)
    assert np.isclose(slope, 2)  # P_a proportional to P_b^2
    assert np.isnan(stats.log_correlations(p, p, threshold=1000)[0])


def test_tv_of_independent_samples_shrinks_and_bootstrap_covers_truth():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(50))
    q = 0.8 * p + 0.2 * rng.dirichlet(np.ones(50))
    true_tv = 0.5 * np.abs(p - q).sum()
    small = [stats.total_variation(rng.multinomial(200, p), rng.multinomial(200, p)) for _ in range(20)]
    large = [stats.total_variation(rng.multinomial(20000, p), rng.multinomial(20000, p)) for _ in range(20)]
    assert np.mean(large) < np.mean(small) / 5
    a, b = rng.multinomial(200_000, p), rng.multinomial(200_000, q)
    stat = lambda x, y: {"tv": stats.total_variation(x, y)}
    lo, hi = stats.bootstrap(a, b, stat, 200, rng)["tv"]
    point = stats.total_variation(a, b)
    assert lo <= point <= hi and lo - 0.01 < true_tv < hi + 0.01 and hi - lo < 0.02


def test_decades():
    assert np.isclose(stats.decades(np.array([0.1, 0.001, 0.0])), 2)


# ---------------------------------------------------------------------------------------------
# Matched comparisons (analysis.stats.matched_comparison, as analysis.tables uses it)
# ---------------------------------------------------------------------------------------------

# One known distribution over 300 functions, concentrated like the E1 posterior, and sample sizes
# as unequal as in e1_quick (81,920 SGD runs against two Bayes halves of ~324,000), scaled down 10x.
P = np.random.default_rng(2026).dirichlet(np.full(300, 0.3))
SIZES = (8_192, 32_768, 32_000)
SEEDS = 200


def _matched(t, a, b, rng, n_eff_a=None, n_eff_b=None):
    """matched_comparison with the sizes tables._matched would choose (ESS given: a chain sample)."""
    from analysis.tables import usable

    n_a = usable(n_eff_a or a.sum(), a.sum())
    n = min(int(t.sum()), n_a)
    return stats.matched_comparison(t, a, b, n, usable(n_eff_b or b.sum(), b.sum()), threshold=10, reps=2,
                                    n_boot=2, resamples=199, rng=rng)


def test_matched_floor_is_calibrated_and_the_unmatched_floor_is_not():
    """Three independent samples of one distribution: the two-sample p-values of sample 1 against
    sample 3 are uniform, and the TV effect (comparison minus matched floor) is centred on 0. The
    old floor (half A whole against half B, next to SGD whole against half B) is rejected: at
    these sizes it makes a sample of the reference itself look far from the reference."""
    ps, effects, unmatched = [], [], []
    for seed in range(SEEDS):
        rng = np.random.default_rng([7, seed])
        t, a, b = (rng.multinomial(n, P) for n in SIZES)
        res = _matched(t, a, b, rng)
        assert res["n"] == SIZES[0] and res["n_b"] == SIZES[2]
        ps.append(res["p_value"])
        effects.append(res["statistics"]["tv"]["effect"])
        unmatched.append(stats.total_variation(t, b) - stats.total_variation(a, b))
    assert sps.kstest(ps, "uniform").pvalue > 0.01
    se = np.std(effects, ddof=1) / np.sqrt(SEEDS)
    assert abs(np.mean(effects)) < 3 * se
    assert np.mean(unmatched) > 10 * np.std(unmatched, ddof=1) / np.sqrt(SEEDS)


def test_two_sample_test_rejects_a_small_known_difference():
    """Sample 1 from q, a mixture that moves 8% of the mass (TV(p, q) = 0.06, against a matched floor
    of about 0.06 at n = 8,192): the test rejects at the 1% level in at least 90% of 20 seeds, and
    the effect's interval lies above 0."""
    rng0 = np.random.default_rng(11)
    q = 0.92 * P + 0.08 * rng0.dirichlet(np.full(300, 0.3))
    true_tv = 0.5 * np.abs(P - q).sum()
    assert 0.05 < true_tv < 0.07
    rejected = above = 0
    for seed in range(20):
        rng = np.random.default_rng([11, seed])
        t, a, b = rng.multinomial(SIZES[0], q), rng.multinomial(SIZES[1], P), rng.multinomial(SIZES[2], P)
        res = _matched(t, a, b, rng)
        rejected += res["p_value"] < 0.01
        above += res["statistics"]["tv"]["effect_low"] > 0
    assert rejected >= 18 and above >= 18


def sticky_chains(rng, p, chains, length, hold):
    """Counts of `chains` chains of `length` states, each holding one prior draw for `hold` steps:
    an autocorrelated sample of chains * length states with effective size chains * length / hold."""
    return hold * rng.multinomial(chains * length // hold, p)


def test_thinning_an_autocorrelated_reference_to_its_effective_size_keeps_the_test_calibrated():
    """Reference halves from chains that hold each state for 20 steps (ESS = N / 20). Thinned as
    the tables thin them (ESS / THIN items, within 1/THIN of independent draws in variance), an
    independent sample of the same distribution against them is rejected at the nominal rate
    (within 2.5 binomial standard errors over 200 seeds, at the 5% and 10% levels); taken as
    independent draws (the wrong variant), the test rejects the true null far too often."""
    hold, chains, length = 20, 64, 4000
    ess = chains * length / hold
    ps, wrong = [], []
    for seed in range(SEEDS):
        rng = np.random.default_rng([13, seed])
        t = rng.multinomial(SIZES[0], P)
        a, b = sticky_chains(rng, P, chains, length, hold), sticky_chains(rng, P, chains, length, hold)
        ps.append(_matched(t, a, b, rng, n_eff_a=ess, n_eff_b=ess)["p_value"])
        if seed < 40:
            wrong.append(_matched(t, a, b, rng)["p_value"])
    ps = np.array(ps)
    for level in (0.05, 0.10):
        assert np.mean(ps < level) < level + 2.5 * np.sqrt(level * (1 - level) / SEEDS)
    assert np.mean(np.array(wrong) < 0.05) > 0.5
