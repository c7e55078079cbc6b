"""Population stability index (PSI) of each model input against the distribution the model was trained on.

Each model stores, per raw input column, the decile edges of its training data and the fraction of rows per
bin; new data (an upload, an inventory) is binned on the same edges. PSI = sum((p - q) * ln(p / q)).
Rule of thumb: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 significant shift.

The sale date is not compared: new sales are newer than the training data by construction, so its PSI is always
large and a warning on it would mean nothing. The report gives the dates the new data covers instead.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from kcprice.features import RAW_COLUMNS
from kcprice.fields import EPOCH

NOT_COMPARED = ("day",)
_EPS = 1e-4  # floor for empty bins, so ln(p/q) stays finite


def reference(raw: np.ndarray, bins: int = 10) -> dict[str, dict[str, list[float]]]:
    out = {}
    for j, name in enumerate(RAW_COLUMNS):
        col = raw[:, j]
        col = col[np.isfinite(col)]
        edges = np.unique(np.quantile(col, np.linspace(0, 1, bins + 1)[1:-1]))
        out[name] = {"edges": edges.tolist(), "fractions": _fractions(col, edges).tolist()}
    return out


def _fractions(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, col, side="right"), minlength=len(edges) + 1)
    return counts / max(int(counts.sum()), 1)


def psi(ref: dict[str, dict[str, list[float]]], raw: np.ndarray) -> dict[str, float]:
    out = {}
    for j, name in enumerate(RAW_COLUMNS):
        if name not in ref or name in NOT_COMPARED:
            continue
        col = raw[:, j]
        col = col[np.isfinite(col)]
        if col.size == 0:  # e.g. an inventory without sale dates
            continue
        p = np.maximum(np.asarray(ref[name]["fractions"]), _EPS)
        q = np.maximum(_fractions(col, np.asarray(ref[name]["edges"])), _EPS)
        out[name] = float(np.sum((q - p) * np.log(q / p)))
    return out


def drift_report(ref: dict, raw: np.ndarray, threshold: float) -> dict:
    values = psi(ref, raw)
    drifted = sorted((k for k, v in values.items() if v > threshold), key=lambda k: -values[k])
    days = raw[:, RAW_COLUMNS.index("day")]
    days = days[np.isfinite(days)]
    span = [str(EPOCH + dt.timedelta(days=int(d))) for d in (days.min(), days.max())] if days.size else None
    return {
        "psi": values,
        "threshold": threshold,
        "drifted": drifted,
        "max_psi": max(values.values(), default=0.0),
        "sale_dates": span,
    }
