import numpy as np
from hypothesis import given, strategies as st

from analysis import stats
from analysis.macros import fmt, macro_name

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


def test_macro_names_and_numbers():
    name = macro_name("sgd_vs_bayes", "sgd_b2_ce", "pearson_log", "Lo")
    assert name.isalpha() and name == "SgdVsBayesSgdBTwoCePearsonLogLo"
    assert fmt(1234567) == r"1\,234\,567"
    assert fmt(0.123456) == "0.12"
    assert fmt(1.5e-4) == r"\ensuremath{1.5\times 10^{-4}}"
    assert fmt(float("nan")) == "n/a"
