"""The geometry stage: keep a subsample of each population's zero-training-error points, then
measure each point (study/geometry.py). Writes under results/<experiment>/raw/:

- geometry/points_<population>.npz: theta_PxD (flat parameters, standard parameterisation),
  function (hex on E) and source_id (the SGD run id, the MCMC chain, or the rejection draw's rank);
- geometry.csv: one row per point and its measures;
- geometry_identity.csv: for the first few points of each population, the exact Hessian's
  leading eigenvalues beside the Gauss-Newton (feature Gram) ones, at the point as found and,
  for MSE, after training on to exact interpolation; one row per (point, state, loss, index).

Points are regenerated from the populations' own keys: SGD points are runs 0..points-1 of the
setting (the same runs as the first rows of sgd_runs.csv), Bayesian points are the first
zero-error prior draws of the geometry stream (exact posterior draws) or the MCMC chains' final
states (after the mcmc stage)."""
from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from study import geometry, mcmc
from study.config import ExperimentConfig
from study.encoding import pack_signs, words_to_hex
from study.network import Network
from study.stages import StageError, first_sgd_solutions, open_stage, raw_dir, setup
from study.store import cached_npz, read_chunks, run_chunks, write_raw_table, write_sidecar
from study.tasks import Task

GEOMETRY_STREAM = 5

# A Hessian whose leading Ritz pair did not converge (geometry.lanczos_top) keeps its numbers, NaN
# included, beside hess_<loss>_converged = False; the analysis counts such points apart.
HESSIAN_COLUMNS = ("top", "top_residual", "topk_residual", "trace", "trace_se", "topk_log_det")
GEOMETRY_ALLOWED = {f"hess_{loss}_{q}": (lambda t, loss=loss: ~t[f"hess_{loss}_converged"].astype(bool))
                    for loss in geometry.LOSSES for q in HESSIAN_COLUMNS}


def populations(cfg: ExperimentConfig) -> list[str]:
    """The populations whose points are measured: the config's list, or by default the Bayesian
    estimators the config runs and every SGD setting."""
    if cfg.geometry.populations:
        return list(cfg.geometry.populations)
    bayes = [name for name, section in (("bayes_rejection", "rejection"), ("bayes_mcmc", "mcmc"))
             if getattr(cfg, section) is not None]
    return bayes + [s.name for s in cfg.sgd.settings]


def functions_on_E(net: Network, task: Task, theta_PxD: np.ndarray) -> list[str]:
    words = pack_signs(net.apply_population(jnp.asarray(theta_PxD), jnp.asarray(task.x_test)))
    return words_to_hex(np.asarray(words), len(task.test_idx))


def collect_points(cfg: ExperimentConfig, results: Path, task: Task, net: Network, population: str,
                   key: jax.Array) -> dict[str, np.ndarray]:
    """theta_PxD, function and source_id of up to geometry.points zero-error points of a population."""
    n = cfg.geometry.points
    if population == "bayes_rejection":
        try:
            theta = mcmc.init_from_rejection(net, task, key, n)
        except RuntimeError as err:
            raise StageError(f"geometry population bayes_rejection: {err}") from None
        source = np.arange(n)
    elif population == "bayes_mcmc":
        states = sorted((raw_dir(cfg, results) / "mcmc").glob("state_*.npz"))
        if cfg.mcmc is None or not (raw_dir(cfg, results) / "mcmc_counts.csv").exists() or not states:
            raise StageError("geometry population bayes_mcmc needs the mcmc stage's results: run it first")
        with np.load(states[-1]) as f:  # the chains' states at the end of the last chunk
            u = np.empty((f["u0"].shape[0] + f["u1"].shape[0], net.n_params), np.float32)
            u[0::2], u[1::2] = f["u0"], f["u1"]  # chain c is in group c % 2 (study/stages.py)
        theta, source = (u * np.asarray(net.prior_std_D))[:n], np.arange(min(n, len(u)))
    else:
        theta, source = first_sgd_solutions(cfg, task, net, cfg.sgd_setting(population), n)
    return {"theta_PxD": np.asarray(theta, np.float32), "function": np.array(functions_on_E(net, task, theta)),
            "source_id": source}


def point_measures(cfg: ExperimentConfig, net: Network, task: Task):
    """geometry.make_point_measures for this network and task with the config's [geometry] settings."""
    gc = cfg.geometry
    return geometry.make_point_measures(
        net, task.x, task.train_idx, np.where(task.y_train, 1.0, -1.0), top_k=gc.top_k,
        lanczos_matvecs=gc.lanczos_matvecs, hutchinson_samples=gc.hutchinson_samples, delta=gc.delta,
        directions=gc.directions, radii_G=np.geomspace(gc.radius_min, gc.radius_max, gc.radius_grid))


def run_geometry(cfg: ExperimentConfig, results: Path, progress: bool = True) -> Path:
    task, net = setup(cfg)
    gc = cfg.geometry
    directory, config_hash, key = open_stage(cfg, results, "geometry", GEOMETRY_STREAM, "geometry points and chunks")
    pops = populations(cfg)
    points = {}
    for i, pop in enumerate(pops):
        points[pop] = cached_npz(directory / f"points_{pop}.npz",
                                 lambda: collect_points(cfg, results, task, net, pop, jax.random.fold_in(key, i)))
        if len(points[pop]["theta_PxD"]) == 0:
            raise StageError(f"geometry: population {pop} has no zero-error points among its first {gc.points}")
    index = pd.DataFrame([(pop, p) for pop in pops for p in range(len(points[pop]["theta_PxD"]))],
                         columns=["population", "point"])
    measure = point_measures(cfg, net, task)
    measure_key = jax.random.fold_in(key, len(pops))

    def compute(c: int):
        rows = index.iloc[c * gc.chunk_points:(c + 1) * gc.chunk_points]
        theta = np.stack([points[pop]["theta_PxD"][p] for pop, p in rows.itertuples(index=False)])
        keys = jax.vmap(lambda i: jax.random.fold_in(measure_key, i))(jnp.asarray(rows.index.to_numpy()))
        t0 = time.perf_counter()
        out = {k: np.asarray(v) for k, v in jax.device_get(measure(jnp.asarray(theta), keys)).items()}
        seconds = time.perf_counter() - t0
        table = rows.reset_index(drop=True).assign(
            source_id=[int(points[pop]["source_id"][p]) for pop, p in rows.itertuples(index=False)],
            function=[str(points[pop]["function"][p]) for pop, p in rows.itertuples(index=False)], **out)
        return table, {"points": len(rows), "seconds": seconds}

    start = time.perf_counter()
    n_chunks = -(-len(index) // gc.chunk_points)
    table, stats = read_chunks(run_chunks(directory, n_chunks, compute, "geometry", progress, GEOMETRY_ALLOWED))
    identity = identity_table(task, net, points, gc.identity_points)
    out = raw_dir(cfg, results) / "geometry.csv"
    # the Gauss-Newton Gram has m eigenvalues; the Hessian rows past them have none to pair with
    write_raw_table(identity.assign(config_hash=config_hash, seed=cfg.seed), raw_dir(cfg, results) / "geometry_identity.csv",
                    {"gn_eig": lambda t: t["index"] >= len(task.train_idx)})
    write_raw_table(stats.assign(config_hash=config_hash, seed=cfg.seed), raw_dir(cfg, results) / "geometry_chunks.csv")
    table = table.drop(columns="chunk", errors="ignore").assign(n_params=net.n_params, config_hash=config_hash, seed=cfg.seed)
    write_raw_table(table, out, GEOMETRY_ALLOWED)
    write_sidecar(out, config_hash=config_hash, seed=cfg.seed, stage="geometry", populations=pops,
                  wall_seconds_this_invocation=time.perf_counter() - start,
                  seconds_per_point=float(stats["seconds"].sum() / max(1, stats["points"].sum())))
    return out


def identity_table(task: Task, net: Network, points: dict, n_points: int) -> pd.DataFrame:
    """Exact Hessian spectra against the feature Gram for the first n_points of each population.

    Columns beyond the spectra: fit_residual = max_i |f(x_i) - y_i| at the row's point, gn_steps
    = Gauss-Newton steps taken to reach it (0 as found), and reached: whether the row's state was
    reached (always as found; for "interpolated" iff Gauss-Newton got the residual down to the
    float32 floor, geometry.interpolation_tol). Rows not reached are kept, and counted apart by
    the analysis, never folded into the identity's error."""
    x_S, y_S = task.x_train, np.where(task.y_train, 1.0, -1.0)
    x_S, y_S = jnp.asarray(x_S), jnp.asarray(y_S, jnp.float32)
    spectra = {"as_found": jax.jit(lambda th: geometry.identity_spectra(net, th, x_S, y_S)),
               # CE has no exact interpolation; its as-found rows show the departure
               "interpolated": jax.jit(lambda th: geometry.identity_spectra(net, th, x_S, y_S, losses=("mse",)))}
    project = jax.jit(lambda th: geometry.interpolate(net, th, x_S, y_S))
    as_found = jax.jit(lambda th: geometry.Interpolation(th, jnp.max(jnp.abs(net.apply_flat(th, x_S) - y_S)),
                                                         jnp.int32(0), jnp.bool_(True)))
    rows = []
    for pop, pts in points.items():
        for p in range(min(n_points, len(pts["theta_PxD"]))):
            theta = jnp.asarray(pts["theta_PxD"][p])
            for state, reach in (("as_found", as_found), ("interpolated", project)):
                point = jax.device_get(reach(theta))
                s = jax.device_get(spectra[state](point.theta_D))
                for loss in geometry.LOSSES:
                    if f"{loss}_hessian" not in s:
                        continue
                    hess, gn = s[f"{loss}_hessian"], s[f"{loss}_gn"]
                    for i, lam in enumerate(hess):
                        rows.append({"population": pop, "point": p, "state": state, "loss": loss, "index": i,
                                     "hessian_eig": float(lam), "gn_eig": float(gn[i]) if i < len(gn) else np.nan,
                                     "residual_norm": float(s[f"{loss}_residual_norm"]),
                                     "loss_value": float(s[f"{loss}_loss"]), "fit_residual": float(point.residual),
                                     "gn_steps": int(point.steps), "reached": bool(point.converged)})
    return pd.DataFrame(rows)
