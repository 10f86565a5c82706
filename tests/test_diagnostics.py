"""study/diagnostics.py: rank-normalised split R-hat and bulk / tail ESS (ArviZ) on chains whose
answer is known: independent draws, AR(1) chains, chains that differ in mean or spread only."""
import numpy as np
import pytest

from study.diagnostics import COLUMNS, RHAT_THRESHOLD, chain_diagnostics


def ar1(rho: float, chains: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) chains with unit variance: integrated autocorrelation time (1 + rho) / (1 - rho)."""
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    noise = np.sqrt(1 - rho**2) * rng.normal(size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def test_independent_chains_have_r_hat_one_and_ess_the_number_of_draws():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 1000))
    table = chain_diagnostics({"iid": iid}).set_index("summary")
    assert list(table.reset_index().columns) == COLUMNS
    r = table.loc["iid"]
    assert 0.99 < r["r_hat"] < RHAT_THRESHOLD
    assert r["ess_bulk"] == pytest.approx(4000, rel=0.15) and r["ess_tail"] == pytest.approx(4000, rel=0.2)
    assert (r["chains"], r["draws"]) == (4, 1000)
    assert r["mean"] == pytest.approx(iid.mean()) and r["sd"] == pytest.approx(iid.std())


def test_ess_of_autocorrelated_chains_is_draws_over_the_autocorrelation_time():
    rho = 0.9
    table = chain_diagnostics({"ar": ar1(rho, 8, 2000, np.random.default_rng(1))}).set_index("summary")
    expected = 8 * 2000 * (1 - rho) / (1 + rho)  # 842
    assert table.loc["ar", "ess_bulk"] == pytest.approx(expected, rel=0.2)
    assert table.loc["ar", "r_hat"] < 1.02  # mixed, only slowly


def test_chains_with_different_means_have_a_large_r_hat():
    rng = np.random.default_rng(2)
    shifted = rng.normal(size=(4, 1000)) + np.array([0.0, 0.0, 2.0, 2.0])[:, None]
    stuck = np.arange(4.0)[:, None] * np.ones((4, 1000))  # each chain at its own constant
    table = chain_diagnostics({"shifted": shifted, "stuck": stuck, "same": np.ones((4, 10))}).set_index("summary")
    assert table.loc["shifted", "r_hat"] > 1.1
    assert table.loc["stuck", "r_hat"] > 1e6 and table.loc["stuck", "ess_bulk"] == pytest.approx(4, rel=0.1)
    assert np.isnan(table.loc["same", "r_hat"])  # constant everywhere: 0 / 0, not a failure to mix


def test_rank_normalised_r_hat_sees_chains_that_differ_in_spread_only():
    """Four chains with one mean and two different scales: the classic split R-hat (numpyro) sees
    nothing, the rank-normalised one (ArviZ, folded for the tails) flags them."""
    from numpyro.diagnostics import split_gelman_rubin

    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 2000)) * np.array([1.0, 1.0, 4.0, 4.0])[:, None]
    assert split_gelman_rubin(x) < 1.01
    table = chain_diagnostics({"spread": x})
    assert table["r_hat"].iat[0] > 1.05
    assert {"ess_bulk", "ess_tail"} <= set(table)


@pytest.mark.parametrize("shape", [(100,), (4, 3), (0, 10), (2, 3, 10)])
def test_traces_must_be_chains_by_draws(shape):
    with pytest.raises(ValueError, match="'bad' must have shape"):
        chain_diagnostics({"bad": np.zeros(shape)})
