"""Stage sweep (E5), connection costs: do an L2 penalty or a narrow bottleneck layer give solutions with fewer
independent features and broader basins? For each variant of the network (hidden widths, weight
decay) a population of SGD runs, trained with the config's [sweep] setting for at least
sweep.min_steps steps (so the penalty acts after the first fit) and stopped at the first later
step at zero training error; and, per distinct width, zero-error prior draws (the posterior,
which weight decay does not change). Every zero-error point is measured as in [geometry].

Writes raw/sweep.csv: one row per run or posterior point, with its variant, widths, weight decay,
population (sgd | bayes), steps, whether it ended at zero training error, and the measures (empty
for runs that did not). Each variant is one resumable chunk under raw/sweep/."""
from __future__ import annotations

import dataclasses
import functools
import time
import zlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from study import geometry, mcmc, sgd
from study.network import Network, build_network
from study.runner import Context, Part, StageError
from study.store import ANY_COLUMN


def width_label(widths) -> str:
    return "-".join(str(w) for w in widths)


def measure_points(measure: Callable, chunk_points: int, theta_PxD: np.ndarray, key: jax.Array) -> dict:
    """Every geometry measure of the points (measure: geometry.point_measures), in batches of
    chunk_points, the last one padded to the same size so that one compiled program serves all."""
    parts = []
    pad_to = -(-chunk_points // geometry.POINT_BLOCK) * geometry.POINT_BLOCK
    for start in range(0, len(theta_PxD), chunk_points):
        idx = jnp.arange(start, min(start + chunk_points, len(theta_PxD)))
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
        parts.append(jax.device_get(measure(jnp.asarray(theta_PxD[start:start + chunk_points]), keys, pad_to=pad_to)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def _unfitted(t: pd.DataFrame) -> pd.Series:
    return ~t["fitted"].astype(bool)


# Where sweep.csv may hold non-finite numbers: runs that ended off zero training error have no
# measures; posterior points have no training loss; a Hessian whose Lanczos did not converge as in
# geometry.MEASURES_ALLOWED.
SWEEP_ALLOWED = {ANY_COLUMN: _unfitted,
                 "final_loss": lambda t: _unfitted(t) | (t["population"] == "bayes"),
                 **{column: (lambda t, rows=rows: _unfitted(t) | rows(t)) for column, rows in geometry.MEASURES_ALLOWED.items()}}


def plan(ctx: Context) -> list[Part]:
    cfg, task, key, sw = ctx.cfg, ctx.task, ctx.key, ctx.cfg.sweep
    template = cfg.sgd_setting(sw.setting)
    widths = list(dict.fromkeys(v.widths for v in sw.variants))
    items = [("sgd", v) for v in sw.variants] + ([("bayes", w) for w in widths] if sw.bayes_points else [])

    @functools.cache
    def network(w) -> Network:
        return build_network(dataclasses.replace(cfg.network, widths=w), task.input_shape)

    @functools.cache
    def measure(w) -> Callable:
        """One compiled measurement per network, shared by its variants (weight decay) and its posterior points."""
        return geometry.point_measures(cfg.geometry, network(w), task)

    def compute(c: int):
        kind, item = items[c]
        t0 = time.perf_counter()
        item_key = jax.random.fold_in(key, zlib.crc32(f"{kind}:{item}".encode()))
        net_widths = item.widths if kind == "sgd" else item
        net = network(net_widths)
        if kind == "sgd":
            setting = dataclasses.replace(template, name=item.name, weight_decay=item.weight_decay,
                                          min_steps=sw.min_steps)
            out = jax.device_get(sgd.make_chunk_trainer(net, task, setting, cfg.sgd, sw.runs, keep_params=True)(
                jax.random.fold_in(item_key, 0), 0))
            fitted = out["fitted"]
            theta = out["theta"][fitted]
            rows = pd.DataFrame({"variant": item.name, "group": item.group, "widths": width_label(item.widths),
                                 "weight_decay": item.weight_decay, "population": "sgd", "point": np.arange(sw.runs),
                                 "steps": out["steps"], "fitted": fitted, "final_loss": out["loss"]})
        else:
            try:
                theta = mcmc.init_from_rejection(net, task, jax.random.fold_in(item_key, 0), sw.bayes_points)
            except RuntimeError as err:
                raise StageError(f"sweep: posterior points for widths {list(item)}: {err}") from None
            rows = pd.DataFrame({"variant": f"bayes_{width_label(item).replace('-', '_')}", "group": "posterior",
                                 "widths": width_label(item), "weight_decay": 0.0, "population": "bayes",
                                 "point": np.arange(len(theta)), "steps": 0, "fitted": True, "final_loss": np.nan})
            fitted = np.ones(len(theta), bool)
        measures = measure_points(measure(net_widths), cfg.geometry.chunk_points, np.asarray(theta),
                                  jax.random.fold_in(item_key, 1))
        functions = np.full(len(rows), "", dtype=object)
        functions[fitted] = geometry.functions_on_E(net, task, theta) if len(theta) else []
        rows["function"] = functions
        for name, values in measures.items():
            # runs off zero training error have no measures: NaN, and False for the flags
            column = np.zeros(len(rows), bool) if values.dtype == bool else np.full(len(rows), np.nan)
            column[fitted] = values
            rows[name] = column
        rows["n_params"] = net.n_params
        return rows, {"points": int(fitted.sum()), "seconds": time.perf_counter() - t0}

    return [Part(len(items), compute, "sweep", allowed=SWEEP_ALLOWED)]


def finalise(ctx: Context, done):
    (table, stats), = done
    return {"sweep.csv": (table.drop(columns="chunk", errors="ignore"), SWEEP_ALLOWED)}, {
        "sweep_seconds": float(stats["seconds"].sum())}
