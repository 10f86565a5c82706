"""analysis/latex.py on a hand-built agreement table (shaped like tables/agreement.csv) whose
counts and ranges are known."""
import numpy as np
import pandas as pd
import pytest

from analysis import latex

nan = np.nan
SETTINGS = ["sgd_b2_ce", "adam_b8_mse", "sgd_b32_ce"]
# statistic -> per setting (value, floor, effect, effect_low, effect_high)
STATS = {
    "tv": [(0.30, 0.10, 0.20, 0.15, 0.25), (0.12, 0.10, 0.02, -0.01, 0.05), (0.50, 0.10, 0.40, 0.30, 0.50)],
    "pearson_log": [(0.90, 0.95, -0.05, -0.08, -0.02), (0.95, 0.95, 0.0, -0.01, 0.01), (nan, nan, nan, nan, nan)],
    "slope_log": [(1.30, 1.00, 0.30, 0.10, 0.50), (0.70, 1.00, -0.30, -0.50, -0.10), (1.05, 1.00, 0.05, -0.10, 0.20)],
    "kl": [(0.05, 0.04, 0.01, -0.01, 0.03), (0.05, 0.04, 0.01, -0.02, 0.04), (0.40, 0.04, 0.36, 0.20, 0.50)],
}
# per setting (n_a, p_value, floor_p_value, q_value)
TESTS = [(100, 0.03, 0.4, 0.001), (2000, 0.5, 0.6, 0.5), (500, 0.02, 0.3, 0.04)]


@pytest.fixture()
def agreement() -> pd.DataFrame:
    rows = []
    for i, setting in enumerate(SETTINGS):
        n_a, p, floor_p, q = TESTS[i]
        for stat, values in STATS.items():
            rows.append(dict(zip(["value", "floor", "effect", "effect_low", "effect_high"], values[i]),
                             comparison="sgd_vs_bayes", setting=setting, statistic=stat, n_a=n_a, p_value=p,
                             floor_p_value=floor_p, q_value=q))
        # SGD against EP: a computed reference, no floor; must not enter the matched numbers
        rows.append({"comparison": "sgd_vs_nngp_ep", "setting": setting, "statistic": "tv", "value": 0.99,
                     "effect_low": 0.9, "n_a": 1, "p_value": nan, "q_value": nan})
    return pd.DataFrame(rows)


@pytest.fixture()
def runs_sum() -> pd.DataFrame:
    return pd.DataFrame({"setting": SETTINGS, "optimizer": ["sgd", "adam", "sgd"], "loss": ["ce", "mse", "ce"],
                         "batch_size": [2, 8, 32], "lr": [0.1, 0.001, 0.1], "not_fitted": [0, 1234, 7]})


@pytest.mark.parametrize("lo, hi, text", [(0.1, 0.2, "0.10--0.20"), (0.1, 0.1, "0.10"),
                                          (0.101, 0.104, "0.10"),  # print alike: one number
                                          (5, 5, "5"), (100, 2000, r"100--2\,000"), (-0.5, 0.25, "-0.50--0.25"),
                                          (-0.09, -0.03, "-0.09 to -0.03")])  # never "---": an em dash
def test_span(lo, hi, text):
    assert latex.span(lo, hi) == text


def test_settings_table_has_one_row_per_setting_with_value_and_floor(runs_sum, agreement):
    lines = latex.settings_table(runs_sum, agreement).splitlines()
    assert lines[0].startswith(r"\begin{tabular}") and lines[-1] == r"\end{tabular}"
    body = lines[lines.index(r"\midrule") + 1:lines.index(r"\bottomrule")]
    assert len(body) == len(SETTINGS)
    assert body[0] == (r"\texttt{sgd\_b2\_ce} & sgd/CE & 2 & 0.100 & 0 & 100 & 0.90 [0.95] & 1.30 [1.00] & "
                       r"0.30 [0.10] & 0.20 [0.15, 0.25] & 0.03 \\")
    cells = [row.removesuffix(r" \\").split(" & ") for row in body]
    columns = lines[0].removeprefix(r"\begin{tabular}{").removesuffix("}")  # llrrrrlllll
    assert all(len(c) == len(columns) == 11 for c in cells)
    assert cells[1][4] == r"1\,234" and cells[1][5] == r"2\,000" and cells[1][7] == "0.70 [1.00]"
    assert cells[2][6] == "n/a"  # no correlation (too few functions in common): no number
    assert cells[2][8] == "0.50 [0.10]" and cells[2][9] == "0.40 [0.30, 0.50]"


def test_summary_macros_count_settings_further_than_the_floor(agreement):
    m = {k: v.value for k, v in latex.summary_macros(agreement).items()}
    assert m["SettingsWorseTv"] == 2  # effect_low > 0 in settings 1 and 3
    assert m["SettingsWorsePearson"] == 1  # effect_high < 0 in setting 1 only (setting 2 straddles 0)
    assert m["SettingsWorseSlope"] == 2 and m["SettingsSteeperSlope"] == 1  # either side of 0; above
    assert m["SettingsWorseKl"] == 1
    assert m["SettingsRejected"] == 2  # q < 0.05
    assert latex.summary_macros(agreement, alpha=0.01)["SettingsRejected"].value == 1
    assert (m["MatchedTvMin"], m["MatchedTvMax"]) == (0.12, 0.50)  # the EP rows (0.99) are not matched
    assert (m["FloorTvMin"], m["FloorTvMax"]) == (0.10, 0.10) and m["FloorTvRange"] == "0.10"
    assert m["EffectTvRange"] == "0.02--0.40" and m["MatchedPearsonMax"] == 0.95
    assert m["MatchedNRange"] == r"100--2\,000" and (m["MatchedNMin"], m["MatchedNMax"]) == (100, 2000)
    assert (m["PValueMin"], m["PValueMax"], m["FloorPValueMin"]) == (0.02, 0.5, 0.3)
    assert m["ClosestTvSetting"] == "adam_b8_mse" and m["FarthestTvSetting"] == "sgd_b32_ce"
    macros = latex.summary_macros(agreement)
    assert macros["ClosestTvSetting"].text() == r"\texttt{adam\_b8\_mse}"
    assert macros["SettingsWorseTv"].table == "agreement.csv" and "statistic=tv" in macros["SettingsWorseTv"].row
