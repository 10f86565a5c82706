"""Stage geometry: keep a subsample of each population's zero-training-error points, then measure
each point (study/geometry.py). Writes under results/<experiment>/raw/:

- geometry/points_<population>.npz: theta_PxD (flat parameters, standard parameterisation),
  function (hex on E) and source_id (the SGD run id, the MCMC chain, or the rejection draw's rank);
- geometry.csv: one row per point and its measures;
- geometry_identity.csv: for the first few points of each population, the exact Hessian's
  leading eigenvalues beside the Gauss-Newton (feature Gram) ones, at the point as found and,
  for MSE, after training on to exact interpolation; one row per (point, state, loss, index);
- geometry_chunks.csv: points and time per chunk.

Points come from the other stages' public outputs: SGD points are the runs among 0..points-1 of
the setting that fitted S (raw/sgd_params.npz, the same runs as the first rows of sgd_runs.csv);
MCMC points are the chains' final states (raw/mcmc_states.npz); exact posterior points are the
first zero-error prior draws of this stage's own key (every parameter drawn, or with
geometry.posterior_sampler = "preactivations" the outputs on S first, study/preactivations.py)."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from study import geometry, mcmc, preactivations
from study.runner import Context, Part, StageError
from study.stages import geometry_populations
from study.stages.sgd import solutions
from study.store import cached_npz


def collect_points(ctx: Context, population: str, key: jax.Array) -> dict[str, np.ndarray]:
    """theta_PxD, function and source_id of up to geometry.points zero-error points of a population."""
    n, net, task = ctx.cfg.geometry.points, ctx.net, ctx.task
    if population == "bayes_rejection":
        try:
            if ctx.cfg.geometry.posterior_sampler == "preactivations":
                points = preactivations.zero_error_points(net, task, key, n)
                if points.refit_failures:
                    raise RuntimeError(f"{points.refit_failures} of {n} points drawn from pre-activations "
                                       "misclassify an input of S when run forward in float32")
                theta = points.theta_PxD
            else:
                theta = mcmc.init_from_rejection(net, task, key, n)
        except RuntimeError as err:
            raise StageError(f"geometry population bayes_rejection: {err}") from None
        source = np.arange(n)
    elif population == "bayes_mcmc":
        with np.load(ctx.read("mcmc", "mcmc_states.npz")) as f:
            theta = f["bayes_mcmc.theta_CxD"][:n]
        source = np.arange(len(theta))
    else:
        theta, source = solutions(ctx.read("sgd", "sgd_params.npz"), population, n)
    return {"theta_PxD": np.asarray(theta, np.float32), "function": np.array(geometry.functions_on_E(net, task, theta)),
            "source_id": source}


def plan(ctx: Context) -> list[Part]:
    gc = ctx.cfg.geometry
    pops = geometry_populations(ctx.cfg)
    points = {}
    for i, pop in enumerate(pops):
        points[pop] = cached_npz(ctx.directory / f"points_{pop}.npz",
                                 lambda: collect_points(ctx, pop, jax.random.fold_in(ctx.key, i)))
        if len(points[pop]["theta_PxD"]) == 0:
            raise StageError(f"geometry: population {pop} has no zero-error points among its first {gc.points}")
    index = pd.DataFrame([(pop, p) for pop in pops for p in range(len(points[pop]["theta_PxD"]))],
                         columns=["population", "point"])
    measure = geometry.point_measures(gc, ctx.net, ctx.task)
    measure_key = jax.random.fold_in(ctx.key, len(pops))
    ctx.found["points"] = points

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

    return [Part(-(-len(index) // gc.chunk_points), compute, "geometry", allowed=geometry.MEASURES_ALLOWED)]


def finalise(ctx: Context, done):
    (table, stats), = done
    task, net, pops = ctx.task, ctx.net, geometry_populations(ctx.cfg)
    identity = identity_table(task, net, ctx.found["points"], ctx.cfg.geometry.identity_points)
    table = table.drop(columns="chunk", errors="ignore").assign(n_params=net.n_params)
    # the Gauss-Newton Gram has m eigenvalues; the Hessian rows past them have none to pair with
    return {"geometry.csv": (table, geometry.MEASURES_ALLOWED),
            "geometry_identity.csv": (identity, {"gn_eig": lambda t: t["index"] >= len(task.train_idx)}),
            "geometry_chunks.csv": stats}, {
        "populations": pops, "seconds_per_point": float(stats["seconds"].sum() / max(1, stats["points"].sum()))}


def identity_table(task, net, points: dict, n_points: int) -> pd.DataFrame:
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
