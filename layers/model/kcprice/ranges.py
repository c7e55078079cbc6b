"""Value ranges and confidence: split-conformal intervals whose width adapts to the house.

Calibration (at training, kcprice.training.fit_ranges): the model is fitted without a random 20% of the sales and
its log residuals r = log(price) - log(value) are taken on them. Half of those residuals fit a spread model (a
ridge of log|r| on the features: unusual houses, larger spread); the other half, scaled by that spread, give the
conformal quantiles (finite-sample corrected) of each coverage. The final model is fitted on all the sales, so
its ranges are slightly conservative. Serving (numpy, a dot product per house):

    low, high = value * exp(spread(x) * q_low), value * exp(spread(x) * q_high)

The forecast standard deviation (FSD) is the 80% range's half-width in log space over the normal's 1.2816, in
percent; the grade follows it: high (FSD <= 10%), medium (<= 20%), low.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

COVERAGES = (0.8, 0.9)
DEFAULT_COVERAGE = 0.8
_Z80 = 1.2815515655446004  # the normal's 90th percentile: an 80% central range is +-1.2816 sd
GRADES = ((10.0, "high"), (20.0, "medium"), (math.inf, "low"))


def key(coverage: float) -> str:
    return f"{coverage:.2f}"


def conformal_quantiles(scores: np.ndarray, coverages=COVERAGES) -> dict[str, list[float]]:
    """Per coverage c, the (low, high) quantiles of the scores with the split-conformal finite-sample correction:
    the ceil((n + 1)(1 + c)/2)-th smallest score above, the floor((n + 1)(1 - c)/2)-th below."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    out = {}
    for c in coverages:
        # (1e-9: 0.1 is not exact in binary; (n + 1)(1 - 0.9)/2 must floor to 5 for n = 99, not to 4)
        hi = min(n, math.ceil((n + 1) * (1 + c) / 2 - 1e-9)) - 1
        lo = max(1, math.floor((n + 1) * (1 - c) / 2 + 1e-9)) - 1
        out[key(c)] = [float(s[lo]), float(s[hi])]
    return out


def fit_spread(x: np.ndarray, residuals: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge of log(|r| + 0.01) on standardised features -> (coef, intercept) on the raw features."""
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - mean) / sd
    t = np.log(np.abs(residuals) + 0.01)
    t0 = t.mean()
    w = np.linalg.solve(z.T @ z + alpha * len(z) * 1e-3 * np.eye(z.shape[1]), z.T @ (t - t0))
    coef = w / sd
    return coef, float(t0 - coef @ mean)


def spread(features: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """exp(features . coef + intercept), bounded: a house far outside the training data gets a wide range, never an
    infinite one. A row-wise sum, not `features @ coef`: BLAS sums a batch in another order than a single row, and
    the API (one house) and precompute (a batch) must give the same range to the last bit."""
    # np.minimum/np.maximum: np.clip's result, without its ~5 us of Python-level dispatch per call
    return np.exp(np.minimum(np.maximum((features * coef).sum(axis=1) + intercept, -10.0), 3.0))


def fsd_percent(spread: np.ndarray, q80: list[float]) -> np.ndarray:
    return 100 * spread * (q80[1] - q80[0]) / (2 * _Z80)


def grade(fsd: float) -> str:
    return next(name for limit, name in GRADES if fsd <= limit)


class Ranges:
    """The serving side: spread(x) and the quantiles, from an artifact's spread_coef array and meta["ranges"]."""

    def __init__(self, coef: np.ndarray, info: dict[str, Any]):
        self.coef, self.intercept = np.asarray(coef, dtype=np.float64), float(info["spread_intercept"])
        self.quantiles = {k: (float(v[0]), float(v[1])) for k, v in info["quantiles"].items()}
        if key(DEFAULT_COVERAGE) not in self.quantiles:
            raise ValueError("ranges lack the default coverage")
        self._q_default = list(self.quantiles[key(DEFAULT_COVERAGE)])
        values = [*self.coef, self.intercept, *(q for pair in self.quantiles.values() for q in pair)]
        if not np.isfinite(values).all():
            raise ValueError("ranges hold non-finite values")

    def spread(self, features: np.ndarray) -> np.ndarray:
        return spread(features, self.coef, self.intercept)

    def bounds(self, log_value: np.ndarray, spread: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        q_lo, q_hi = self.quantiles[key(coverage)]
        return np.exp(log_value + spread * q_lo), np.exp(log_value + spread * q_hi)

    def fsd(self, spread: np.ndarray) -> np.ndarray:
        return fsd_percent(spread, self._q_default)


def coverage_report(price: np.ndarray, value: np.ndarray, bounds: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Empirical coverage and median relative width per coverage, overall and per price decile."""
    out: dict[str, Any] = {}
    edges = np.quantile(price, np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, price, side="right") - 1, 0, 9)
    for k, (low, high) in bounds.items():
        inside = (price >= low) & (price <= high)
        out[k] = {
            "coverage": float(inside.mean() * 100),
            "median_relative_width": float(np.median((high - low) / value) * 100),
            "by_price_decile": [float(inside[decile == d].mean() * 100) for d in range(10)],
        }
    return out
