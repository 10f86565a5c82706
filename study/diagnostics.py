"""Convergence diagnostics of MCMC traces by ArviZ: rank-normalised split R-hat and bulk / tail
effective sample size (Vehtari et al. 2021), the versions that also see chains which differ in
spread or in their tails, not only in mean (numpyro's split R-hat is not rank-normalised)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

COLUMNS = ["summary", "r_hat", "ess_bulk", "ess_tail", "mean", "sd", "chains", "draws"]
RHAT_THRESHOLD = 1.01  # above it, a trace's chains have not mixed
TOP_FUNCTIONS_TRACED = 10  # indicator traces of a chain population's most frequent functions


def chain_diagnostics(traces: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per trace (chains, draws): rank-normalised split R-hat, bulk and tail ESS, mean, sd.

    A trace constant over every chain has R-hat NaN (0/0); chains stuck at different constants
    have a huge R-hat and an ESS near the number of chains."""
    with warnings.catch_warnings():  # imported here: the analysis reads this module's constants only;
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.23 announces its 1.0 refactor at import
        import arviz
    rows = []
    for name, x_CxN in traces.items():
        x = np.asarray(x_CxN, np.float64)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 4:
            raise ValueError(f"trace {name!r} must have shape (chains, draws >= 4), got {x.shape}")
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r_hat = float(arviz.rhat(x, method="rank"))
            bulk, tail = float(arviz.ess(x, method="bulk")), float(arviz.ess(x, method="tail"))
        rows.append({"summary": name, "r_hat": r_hat, "ess_bulk": bulk, "ess_tail": tail, "mean": x.mean(),
                     "sd": x.std(), "chains": x.shape[0], "draws": x.shape[1]})
    return pd.DataFrame(rows, columns=COLUMNS)
