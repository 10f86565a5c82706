"""End to end on the smoke profile: stages, analysis and figures; determinism; resuming after a
kill; refusing results made by another config."""
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main as analysis_main
from study import cli, mcmc
from study.config import load
from study.runner import setup

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "e1_smoke.toml"
FIGURES = ("fig_scatter", "fig_sgd_vs_ep", "fig_rankfreq", "fig_agreement", "fig_estimators", "fig_identity",
           "fig_geometry", "fig_accessibility", "fig_sweep", "fig_mcmc_traces", "fig_ep_mass",
           "fig_error_vs_pb")
RAW = ("rejection_counts.csv", "sgd_runs.csv", "mcmc_counts.csv", "mcmc_diagnostics.csv", "mcmc_traces.csv",
       "mcmc_from_sgd_counts.csv", "nngp_ep.csv",
       "nngp_exact_counts.csv", "geometry.csv", "geometry_identity.csv", "sweep.csv")


def write_config(path: Path, base: Path = SMOKE, **sections) -> Path:
    """`base` (e1_smoke) with each named section's values replaced, written to `path`."""
    raw = tomllib.loads(base.read_text())
    for section, values in sections.items():  # None drops a section
        if values is None:
            raw.pop(section)
            continue
        raw[section] = {**raw[section], **values} if isinstance(values, dict) else values
    lines = [f'name = "{raw.pop("name")}"', f'seed = {raw.pop("seed")}']
    for section, values in raw.items():
        tables = {k: values.pop(k) for k in list(values) if isinstance(values[k], list) and values[k]
                  and isinstance(values[k][0], dict)}  # arrays of tables: sgd.settings, sweep.variants
        lines.append(f"[{section}]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in values.items()]
        for name, entries in tables.items():
            for entry in entries:
                lines.append(f"[[{section}.{name}]]")
                lines += [f"{k} = {v!r}".replace("'", '"') for k, v in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_stages(config: Path, results: Path) -> None:
    assert cli.main(["run", "--config", str(config), "--results", str(results), "--no-progress"]) == 0


def run_pipeline(config: Path, results: Path, figures) -> Path:
    """Every stage, the analysis and the named figure scripts for `config` under `results`;
    returns the experiment's results directory (a shipped config's name is its file's stem)."""
    run_stages(config, results)
    assert analysis_main(["--config", str(config), "--results", str(results)]) == 0
    for name in figures:
        subprocess.run([sys.executable, str(ROOT / "figures" / f"{name}.py"), "--config", str(config),
                        "--results", str(results)], check=True, capture_output=True)
    return results / config.stem


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_pipeline(SMOKE, tmp_path_factory.mktemp("smoke"), FIGURES)


def test_pipeline_writes_tidy_tables_figures_and_macros(smoke):
    raw = pd.read_csv(smoke / "raw" / "sgd_runs.csv", dtype={"function": str})
    assert {"run_id", "steps", "fitted", "final_loss", "function", "setting", "config_hash", "seed"} <= set(raw.columns)
    assert len(raw) == 2 * 512 and raw.groupby("setting")["run_id"].nunique().eq(512).all()
    counts = pd.read_csv(smoke / "raw" / "rejection_counts.csv", dtype={"function": str})
    chunks = pd.read_csv(smoke / "raw" / "rejection_chunks.csv")
    assert counts["count"].sum() == chunks["accepted"].sum() > 0 and chunks["draws"].sum() == 2**20
    assert (chunks["readouts"] == 16).all() and (counts["count_sq"] >= counts["count"]).all()
    for table in ("functions", "joint", "agreement", "runs_summary", "sampler_summary", "coverage", "mcmc_summary",
                  "effective_sizes", "radius_censoring", "mcmc_traces",
                  "estimators", "pb_estimates", "nngp_summary", "geometry_identity", "geometry_summary",
                  "geometry_compare", "geometry_by_function", "geometry_paired", "accessibility", "sweep_summary",
                  "sweep_correlation"):
        frame = pd.read_csv(smoke / "tables" / f"{table}.csv")
        assert len(frame) and "seed" in frame and (smoke / "tables" / f"{table}.json").exists()
    joint = pd.read_csv(smoke / "tables" / "joint.csv", dtype={"function": str})
    for _, g in joint.groupby("setting"):
        assert abs(g["p_sgd"].sum() - 1) < 1e-9 and abs(g["p_bayes"].sum() - 1) < 1e-9
    agreement = pd.read_csv(smoke / "tables" / "agreement.csv")
    assert set(agreement["comparison"]) == {"sgd_vs_bayes", "sgd_vs_nngp_ep"}
    estimators = pd.read_csv(smoke / "tables" / "estimators.csv")
    assert {"bayes_mcmc_vs_bayes_rejection", "nngp_exact_vs_bayes_rejection", "bayes_mcmc_from_sgd_vs_bayes_rejection",
            "bayes_mcmc_vs_nngp_ep"} <= set(estimators["comparison"])
    for table in (agreement, estimators):
        matched = table.dropna(subset=["floor_n_a"])
        # every comparison and its floor at the same sizes (n_a for the sample and half A, n_b for half B),
        # never above the sample's or half A's effective size
        assert len(matched) and (matched["floor_n_a"] == matched["n_a"]).all() and (matched["floor_n_b"] == matched["n_b"]).all()
        assert (matched["n_a"] <= matched[["n_eff_test", "n_eff_reference_a"]].min(axis=1) + 0.5).all()
        tv = matched[matched["statistic"] == "tv"]  # correlations are NaN with fewer than 3 common functions
        assert tv["p_value"].between(0, 1).all() and (tv["effect_low"] <= tv["effect_high"]).all()
        # two halves of one sampler pass the two-sample test
        assert (matched["floor_p_value"] > 0.01).all()
    sizes = pd.read_csv(smoke / "tables" / "effective_sizes.csv").set_index("population")
    # 16 output layers per hidden draw: the fits over the measured design effect (about 1 here)
    sampler = pd.read_csv(smoke / "tables" / "sampler_summary.csv").iloc[0]
    assert sizes.loc["bayes_rejection", "n_eff"] == pytest.approx(
        min(counts["count"].sum(), counts["count"].sum() / sampler["design_effect_max"]))
    assert 0.5 < sampler["design_effect_max"] < 3 and sampler["hidden_draws"] == 2**20 // 16
    chains = pd.read_csv(smoke / "raw" / "mcmc_chunks.csv")
    assert sizes.loc["bayes_mcmc", "n_eff"] < chains.loc[chains["population"] == "bayes_mcmc", "samples"].sum()
    mcmc_counts = pd.read_csv(smoke / "raw" / "mcmc_counts.csv")
    assert set(mcmc_counts["group"]) == {0, 1}  # two independent chain groups for the noise floor
    for name in FIGURES:
        assert (smoke / "figures" / f"{name}.pdf").stat().st_size > 1000
        assert (smoke / "figures" / f"{name}.png").stat().st_size > 1000
    macros = (smoke / "macros.tex").read_text()
    assert r"\newcommand{\EOneRejDraws}" in macros and r"\EOneMcmcRhatMax" in macros and "nan" not in macros.lower()
    sources = pd.read_csv(smoke / "macros.csv")  # every macro traced to the table it came from
    assert [rf"\newcommand{{\{name}}}" for name in sources["macro"]] == re.findall(r"\\newcommand\{\\\w+\}", macros)
    assert sources["table"].notna().all() and (smoke / "timing_macros.csv").exists()


def test_geometry_points_are_the_populations_own_points(smoke):
    """SGD points are the setting's first runs (same functions as sgd_runs.csv); every point fits S;
    the identity holds at interpolated points."""
    geom = pd.read_csv(smoke / "raw" / "geometry.csv", dtype={"function": str})
    runs = pd.read_csv(smoke / "raw" / "sgd_runs.csv", dtype={"function": str})
    sgd = geom[geom["population"] == "sgd_b2_ce"].merge(
        runs[runs["setting"] == "sgd_b2_ce"], left_on="source_id", right_on="run_id", suffixes=("", "_run"))
    assert len(sgd) > 0 and (sgd["function"] == sgd["function_run"]).all() and sgd["fitted"].all()
    assert (geom["min_margin"] > 0).all()  # zero training error at every point
    assert set(geom["population"]) == {"bayes_rejection", "bayes_mcmc", "sgd_b2_ce"}
    identity = pd.read_csv(smoke / "tables" / "geometry_identity.csv")
    assert identity.query("state == 'interpolated'")["max_rel_error"].max() < 1e-4
    assert identity.query("state == 'as_found'")["max_rel_error"].min() > 1e-3
    # every interpolation reached the float32 floor and every leading Ritz pair converged here
    assert identity["not_reached"].sum() == 0 and identity.query("state == 'interpolated'")["points"].min() > 0
    assert geom["hess_mse_converged"].all() and geom["hess_ce_converged"].all()
    assert (geom["hess_mse_top_residual"] < 1e-3).all()
    ep = pd.read_csv(smoke / "raw" / "nngp_ep.csv", dtype={"function": str})
    assert (ep["ep_status"] == "converged").all() and ep["log_p"].notna().all()


def test_sgd_started_chains_start_outside_the_sgd_population(smoke):
    """The check chains start from runs of the setting trained on the MCMC stage's own keys: none
    of their starting points is one of the population's own first runs (which SGD's table holds)."""
    import numpy as np

    import jax

    from study import sgd
    from study.config import load
    from study.stages import STAGES
    from study.stages.sgd import setting_key

    cfg = load(SMOKE)
    task, net = setup(cfg)
    with np.load(smoke / "raw" / "mcmc" / "bayes_mcmc_from_sgd" / "init.npz") as f:
        starts = f["theta_CxD"]
    setting = cfg.sgd_setting(cfg.mcmc.init_setting)
    population_key = setting_key(jax.random.fold_in(jax.random.key(cfg.seed), STAGES["sgd"].stream), setting)
    out = sgd.make_chunk_trainer(net, task, setting, cfg.sgd, 2 * cfg.mcmc.chains, keep_params=True)(population_key, 0)
    own = jax.device_get(out["theta"])[jax.device_get(out["fitted"])]
    assert len(starts) == cfg.mcmc.chains and len(own)
    assert not (np.abs(starts[:, None, :] - own[None, :, :]).max(axis=2) < 1e-6).any()
    summary = pd.read_csv(smoke / "tables" / "mcmc_summary.csv").set_index("population")
    assert "own key stream" in summary.loc["bayes_mcmc_from_sgd", "init"]
    assert summary["r_hat_functions_max"].notna().all() and summary["ess_bulk_functions_min"].gt(0).all()


def test_sgd_params_are_the_population_runs(smoke):
    """raw/sgd_params.npz (the geometry stage's SGD points) holds the parameters of the first runs
    of every setting: each fitted run's parameters compute the function sgd_runs.csv records."""
    import numpy as np

    from study.config import load
    from study.geometry import functions_on_E

    cfg = load(SMOKE)
    task, net = setup(cfg)
    runs = pd.read_csv(smoke / "raw" / "sgd_runs.csv", dtype={"function": str}).set_index(["setting", "run_id"])
    with np.load(smoke / "raw" / "sgd_params.npz") as f:
        for setting in cfg.sgd.settings:
            run_id, fitted = f[f"{setting.name}.run_id"], f[f"{setting.name}.fitted"]
            assert list(run_id) == list(range(cfg.geometry.points)) and fitted.any()
            found = functions_on_E(net, task, f[f"{setting.name}.theta_RxD"][fitted])
            assert found == list(runs.loc[[(setting.name, r) for r in run_id[fitted]], "function"])
            assert list(runs.loc[[(setting.name, r) for r in run_id], "fitted"]) == list(fitted)


def test_sweep_measures_every_zero_error_point_of_every_variant(smoke):
    sweep = pd.read_csv(smoke / "raw" / "sweep.csv", dtype={"function": str})
    sgd = sweep[sweep["population"] == "sgd"]
    assert set(sgd["variant"]) == {"wd_0", "wd_0p1", "bn_2"} and sgd.groupby("variant").size().eq(16).all()
    assert (sgd["steps"] >= 50).all()  # sweep.min_steps: trained on past the first fit
    fitted = sweep[sweep["fitted"]]
    # zero training error; an output of exactly 0 (all bottleneck units off) counts as the negative class
    assert fitted["ntk_S_entropy_rank"].notna().all() and (fitted["min_margin"] >= 0).all()
    assert sweep.loc[~sweep["fitted"], "ntk_S_entropy_rank"].isna().all()
    assert set(sweep.loc[sweep["population"] == "bayes", "widths"]) == {"40-40", "40-2-40"}
    norms = fitted[fitted["population"] == "sgd"].groupby("variant")["theta_norm"].median()
    assert norms["wd_0p1"] < norms["wd_0"]  # the penalty shrinks the solutions


def test_same_config_and_seed_give_identical_csvs(smoke, tmp_path):
    """Every result CSV (raw, chunks and tables) and the paper's macros are byte-identical between
    two runs; only the *_timings.csv files, timings.csv and timing_macros.tex/.csv hold wall-clock time."""
    run_stages(SMOKE, tmp_path)
    assert analysis_main(["--config", str(SMOKE), "--results", str(tmp_path)]) == 0
    again = tmp_path / "e1_smoke"
    compared = 0
    for path in sorted(again.rglob("*.csv")):
        relative = path.relative_to(again)
        if path.name.endswith("_timings.csv") or path.name in ("timings.csv", "timing_macros.csv"):
            continue
        assert path.read_bytes() == (smoke / relative).read_bytes(), f"{relative} differs between two runs"
        compared += 1
    assert compared > 40 and all((again / "raw" / name).exists() for name in RAW)
    assert (again / "macros.tex").read_bytes() == (smoke / "macros.tex").read_bytes()
    timing = (again / "timing_macros.tex").read_text()
    assert r"\EOneGeoMsPerPoint" in timing and r"\EOneGeoMsPerPoint" not in (again / "macros.tex").read_text()


def kill_after_first_chunk(stage: str, config: Path, results: Path, chunk_dir: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "study", stage, "--config", str(config), "--results", str(results),
                             "--no-progress"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(chunk_dir.glob("chunk_*.json")):
        assert proc.poll() is None and time.time() < deadline, "stage ended before writing a chunk"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(list(chunk_dir.glob("chunk_*.json")))


@pytest.mark.parametrize("stage, sections, chunk_sub, n_chunks, table", [
    ("rejection", {"rejection": {"draws": 16 * 8192, "chunk_draws": 8192, "batch": 4096}}, "rejection", 16,
     "rejection_counts.csv"),
    ("sgd", {"sgd": {"runs": 12 * 64, "chunk_runs": 64, "pool": 32}}, "sgd/sgd_b2_ce", 12, "sgd_runs.csv"),
    ("mcmc", {"mcmc": {"chains": 32, "burn_in": 10, "thin": 2, "samples": 12 * 16, "chunk_samples": 16}}, "mcmc", 12,
     "mcmc_counts.csv"),
])
def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path, stage, sections, chunk_sub, n_chunks, table):
    config = write_config(tmp_path / "resume.toml", name="resume", **sections)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    done = kill_after_first_chunk(stage, config, killed, killed / "resume" / "raw" / chunk_sub)
    assert 1 <= done < n_chunks, "the kill came too late to test resuming"
    assert not (killed / "resume" / "raw" / table).exists()  # no final table from a partial stage
    assert cli.main([stage, "--config", str(config), "--results", str(killed), "--no-progress"]) == 0
    assert cli.main([stage, "--config", str(config), "--results", str(clean), "--no-progress"]) == 0
    assert (killed / "resume" / "raw" / table).read_bytes() == (clean / "resume" / "raw" / table).read_bytes()


def test_results_from_another_config_are_refused(smoke, tmp_path, capsys):
    before = (smoke / "raw" / "rejection_counts.csv").read_bytes()
    changed = write_config(tmp_path / "changed.toml", seed=1)
    assert cli.main(["rejection", "--config", str(changed), "--results", str(smoke.parent), "--no-progress"]) == 2
    assert "different config" in capsys.readouterr().err
    assert (smoke / "raw" / "rejection_counts.csv").read_bytes() == before


def test_results_from_other_code_are_refused(smoke, monkeypatch, capsys):
    import study.store

    monkeypatch.setattr(study.store, "code_hash", lambda stage: "0" * 12)
    assert cli.main(["sgd", "--config", str(SMOKE), "--results", str(smoke.parent), "--no-progress"]) == 2
    assert "different code" in capsys.readouterr().err


def test_a_truncated_chunk_or_mcmc_state_is_recomputed_not_merged(tmp_path, capsys):
    """A finished SGD chunk cut to half its size, an MCMC chain-state file overwritten with garbage
    and the chains' truncated starting points: the rerun names them, computes them again, and ends
    with the undamaged tables."""
    config = write_config(tmp_path / "damage.toml", name="damage",
                          sgd={"runs": 4 * 64, "chunk_runs": 64, "pool": 32},
                          mcmc={"chains": 16, "burn_in": 10, "thin": 2, "samples": 3 * 16, "chunk_samples": 16})
    results, raw = tmp_path / "results", tmp_path / "results" / "damage" / "raw"
    for stage in ("sgd", "mcmc"):
        assert cli.main([stage, "--config", str(config), "--results", str(results), "--no-progress"]) == 0
    clean = {t: (raw / t).read_bytes() for t in ("sgd_runs.csv", "mcmc_counts.csv")}
    chunk = raw / "sgd" / "sgd_b2_ce" / "chunk_00002.csv"
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])
    (raw / "mcmc" / "state_00001.npz").write_bytes(b"\x00garbage")
    (raw / "mcmc" / "init.npz").write_bytes((raw / "mcmc" / "init.npz").read_bytes()[:100])
    capsys.readouterr()
    for stage in ("sgd", "mcmc"):
        assert cli.main([stage, "--config", str(config), "--results", str(results), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "chunk 2" in err and "state_00001.npz does not match" in err and "init.npz is unreadable" in err
    assert {t: (raw / t).read_bytes() for t in clean} == clean


def test_e1m_smoke_scores_every_function_by_ep_and_compares_through_it(tmp_path):
    """Mingard's setting (|E| = 96): EP scores every function any population found, none dropped;
    the EP view compares every SGD setting with both posteriors at matched n, and its figure and
    macros are written."""
    config = ROOT / "configs" / "e1m_smoke.toml"
    run_stages(config, tmp_path)
    assert analysis_main(["--config", str(config), "--results", str(tmp_path)]) == 0
    subprocess.run([sys.executable, str(ROOT / "figures" / "fig_ep_mass.py"), "--config", str(config),
                    "--results", str(tmp_path)], check=True, capture_output=True)
    out = tmp_path / "e1m_smoke"
    read = lambda path: pd.read_csv(out / path, dtype={"function": str})
    ep, summary = read("raw/nngp_ep.csv"), read("raw/nngp_summary.csv")
    runs = read("raw/sgd_runs.csv")
    seen = set(runs.loc[runs["fitted"], "function"]) | set(read("raw/mcmc_counts.csv")["function"]) \
        | set(read("raw/nngp_exact_counts.csv")["function"])
    assert set(ep["function"]) == seen and len(seen) > 500 and not summary["ep_enumerated"].iat[0]
    assert summary["ep_failed"].iat[0] == (ep["ep_status"] != "converged").sum()
    assert ep.loc[ep["ep_status"] == "converged", "log_p"].lt(0).all()
    view = read("tables/ep_view.csv")
    pairs = view.drop_duplicates(["setting", "reference"])
    assert len(pairs) == 2 * runs["setting"].nunique() and (pairs["n_a"] > 0).all()
    mass = read("tables/ep_mass.csv")
    assert np.allclose(mass.groupby("population")["mass"].sum(), 1.0)
    assert (out / "figures" / "fig_ep_mass.pdf").stat().st_size > 1000
    macros = (out / "macros.tex").read_text()
    for name in ("EpNngpExactShiftMin", "EpNngpExactFrequentEffectMin", "TrendSgdLzMin",
                 "EstNNGPexactVsNNGPEPFrequentMassLogOneZero"):
        assert rf"\newcommand{{\EOnem{name}}}" in macros
    assert set(view["statistic"]) >= {"frequent_mass_log10", "mean_log10_pb_shift"}
    # test error and LZ against log10 P_B: one row per population and quantity, every function EP scored
    trend = read("tables/ep_trend.csv")
    assert len(trend) == 2 * (runs["setting"].nunique() + 2) and trend["spearman"].between(-1, 1).all()
    assert (out / "ep_view_table.tex").exists()
    assert set(read("tables/ep_scatter.csv")["setting"]) == set(runs["setting"])

    # E1MS's partial scoring on the same populations: only the nngp stage reruns (its config changed), EP
    # scores exactly the functions some population saw at least twice, with the same log P_B, and the
    # views that need every run's score are left out while the matched scatter is kept.
    config = write_config(tmp_path / "e1m_smoke.toml", config, nngp={"ep_min_count": 2}, analysis={"count_threshold": 3})
    assert cli.main(["nngp", "--config", str(config), "--results", str(tmp_path), "--no-progress", "--fresh"]) == 0
    assert analysis_main(["--config", str(config), "--results", str(tmp_path)]) == 0
    frequent = pd.concat([runs.groupby(["setting", "function"]).size(),
                          read("raw/mcmc_counts.csv").groupby(["population", "function"])["count"].sum(),
                          read("raw/nngp_exact_counts.csv").groupby("function")["count"].sum()])
    few = read("raw/nngp_ep.csv")
    assert set(few["function"]) == {k[-1] if isinstance(k, tuple) else k for k in frequent[frequent >= 2].index}
    assert 0 < len(few) < len(ep) and read("raw/nngp_summary.csv")["ep_min_count"].iat[0] == 2
    both = few.merge(ep, on="function", suffixes=("", "_all"))
    assert len(both) == len(few) and np.allclose(both["log_p"], both["log_p_all"], rtol=0, atol=1e-6)
    assert not (out / "tables" / "ep_view.csv").exists() and not (out / "tables" / "ep_mass.json").exists()
    assert r"\newcommand{\EOnemScatterNCommonMin}" in (out / "macros.tex").read_text()


def test_image_task_runs_every_stage_through_the_same_code(tmp_path):
    """E3 smoke (8x8 digits, the fully connected network): every stage, the analysis and the EP
    figures through the code the Boolean experiments use; functions have no LZ column; with
    nngp.ep = "both" the predictive EP sits beside the ratio of normalisers, and ep_methods.csv
    compares them over every function scored."""
    out = run_pipeline(ROOT / "configs" / "e3_smoke.toml", tmp_path, ("fig_scatter", "fig_ep_mass", "fig_error_vs_pb"))
    functions = pd.read_csv(out / "tables" / "functions.csv", dtype={"function": str})
    assert "lz" not in functions and functions["function"].str.len().eq(4).all()  # |E| = 16 bits
    ep = pd.read_csv(out / "raw" / "nngp_ep.csv", dtype={"function": str})
    methods = pd.read_csv(out / "tables" / "ep_methods.csv").set_index("comparison")
    both = ep[(ep["ep_status"] == "converged") & (ep["predictive_status"] == "converged")]
    row = methods.loc["predictive_vs_ratio"]
    assert row["functions"] == len(both) > 100
    np.testing.assert_allclose(row["mean_diff"], (both["log_p_predictive"] - both["log_p"]).mean())
    assert row["spearman"] > 0.95  # the two EP methods rank the functions alike
    assert (out / "figures" / "fig_error_vs_pb.pdf").exists()
    # each EP method's cost has its own macro (the predictive's once overwrote the ratio's)
    timings = pd.read_csv(out / "tables" / "timings.csv").set_index("item")
    timing = pd.read_csv(out / "timing_macros.csv").set_index("macro")
    for macro, item in (("EThreeNngpEpMsPerFunction", "ep"), ("EThreeNngpEpPredictiveMsPerFunction", "predictive")):
        assert timing.loc[macro, "value"] == pytest.approx(1e3 / timings.loc[item, "rate"])


def test_cnn_image_task_is_compared_with_the_exact_nngp_sample(tmp_path):
    """E3 with a convolutional network and no parameter-space sampler (configs/e3cnn_smoke.toml):
    every stage, the analysis and the figures run, SGD is compared with the exact NNGP sample
    (the reference without [rejection] and [mcmc]) beside its matched floor, and the estimator
    table, which then has EP as its only comparison, carries empty p- and q-values."""
    out = run_pipeline(ROOT / "configs" / "e3cnn_smoke.toml", tmp_path, ("fig_scatter", "fig_estimators", "fig_ep_mass"))
    agreement = pd.read_csv(out / "tables" / "agreement.csv")
    assert set(agreement["reference"]) == {"nngp_exact"}
    tv = agreement[(agreement["comparison"] == "sgd_vs_bayes") & (agreement["statistic"] == "tv")].iloc[0]
    assert tv["n_a"] > 0 and np.isfinite(tv["value"]) and np.isfinite(tv["floor"])
    estimators = pd.read_csv(out / "tables" / "estimators.csv")
    assert set(estimators["reference"]) == {"nngp_ep"} and estimators["q_value"].isna().all()
    macros = (out / "macros.tex").read_text()
    assert r"\newcommand{\EThreecnnReference}{NNGP exact}" in macros
    assert r"\newcommand{\EThreecnnNetWidths}{8x8-c8-32-1}" in macros


def test_geometry_at_image_points_against_exact_posterior_points(tmp_path):
    """E3G smoke (configs/e3g_smoke.toml): no [rejection] or [mcmc]; the geometry stage draws the
    finite network's posterior points from pre-activations (every one fits S), measures them beside
    SGD's at image points, and the analysis compares SGD's with them (not with the NNGP sample, which
    has no points); without dense Hessians there are no identity tables."""
    cfg = load(ROOT / "configs" / "e3g_smoke.toml")
    out = run_pipeline(ROOT / "configs" / "e3g_smoke.toml", tmp_path, ("fig_geometry", "fig_accessibility"))
    with np.load(out / "raw" / "geometry" / "points_bayes_rejection.npz") as f:
        theta = f["theta_PxD"]
    task, net = setup(cfg)
    assert len(theta) == cfg.geometry.points and mcmc.fits_training_set(net, task, theta).all()
    points = pd.read_csv(out / "tables" / "geometry_points.csv")
    assert points.groupby("population").size().to_dict() == {p: cfg.geometry.points for p in cfg.geometry.populations}
    compare = pd.read_csv(out / "tables" / "geometry_compare.csv")
    assert set(compare["population"]) == set(cfg.geometry.populations) - {"bayes_rejection"}
    agreement = pd.read_csv(out / "tables" / "agreement.csv")
    assert set(agreement["reference"]) == {"nngp_exact"}
    assert not (out / "tables" / "geometry_identity.csv").exists()
    assert (out / "figures" / "fig_geometry.pdf").exists()


def test_two_shards_on_localhost_write_the_tables_of_one_process(smoke, tmp_path):
    """`python -m study run --shard 0/2` and `--shard 1/2` started together on one results
    directory (each stage's chunks dealt between them, the MCMC chains to one, each stage waiting
    for the other's chunks before the next): every raw table byte-identical to the one-process
    run's, and the kept parameters equal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "study", "run", "--config", str(SMOKE), "--results", str(tmp_path),
                               "--no-progress", "--shard", f"{i}/2"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    split, compared = tmp_path / SMOKE.stem / "raw", 0
    for path in sorted((smoke / "raw").glob("*.csv")):
        if not path.name.endswith("_timings.csv"):
            assert (split / path.name).read_bytes() == path.read_bytes(), f"{path.name} differs when split"
            compared += 1
    assert compared >= len(RAW)
    for name in ("sgd_params.npz", "mcmc_states.npz"):
        with np.load(smoke / "raw" / name) as a, np.load(split / name) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
