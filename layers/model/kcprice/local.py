"""The model's own errors on nearby sales: a correction at the scale of a street.

The trees value a house from its features and from smoothed maps of its neighbourhood (the finest ~0.45 km wide);
what they miss at the scale of a block - one builder's development, a busy road, a view the maps blur - shows as
errors of the same sign on sales a few houses apart. Every training sale carries its out-of-fold log residual
(log price minus the value of a model fitted without its house: kcprice.training.local_residuals), centred on
their median, and a house's log value is corrected by their kernel mean around it, shrunk to 0 where few sales are:

    correction = weight * sum_j(w_j r_j) / (sum_j(w_j) + prior_weight),   w_j = exp(-d_j^2 / (2 bandwidth^2))

over the sales within RADIUS bandwidths (d in km). The parameters were chosen by 5-fold CV grouped by house inside
the temporal split's training rows (docs/model.md). A sale of the house itself counts like any other near it: it
is what the market said about this house.

One house or a batch, the same bits: the same candidates in the same order (the three rows of three grid cells
around the house's cell, cells one radius wide, sales sorted by cell), elementwise arithmetic, and one reduceat
per house over its candidates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kcprice.comps import CellIndex
from kcprice.features import KM_PER_DEGREE

PARAMS: dict[str, float] = {"bandwidth_km": 0.1, "prior_weight": 3.0, "weight": 0.5}
RADIUS = 3.0  # bandwidths: a sale further away would weigh under 1.2% of one at the house's own spot
_FIRST = np.zeros(1, dtype=np.intp)  # reduceat's one segment, as the batch path sums each house's
_CHUNK = 2048  # houses per batch step: (houses x ~100-300 candidates) pairs stay a few MB


class LocalResiduals:
    """Training sales' coordinates and out-of-fold log residuals, indexed by a grid for kernel means."""

    def __init__(self, lat: np.ndarray, long: np.ndarray, residual: np.ndarray, params: dict[str, Any]):
        lat, long, residual = (np.asarray(a, dtype=np.float64) for a in (lat, long, residual))
        if not (lat.ndim == 1 and lat.shape == long.shape == residual.shape and len(lat)):
            raise ValueError("local residuals need one coordinate pair per residual, and at least one")
        if not (np.isfinite(lat).all() and np.isfinite(long).all() and np.isfinite(residual).all()):
            raise ValueError("local residuals must be finite")
        try:  # an artifact's meta["local"]: refused as a whole (ValueError, as any broken array) when malformed
            self.params = {k: float(params[k]) for k in PARAMS}
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"local correction parameters {params!r}: {e!r}") from None
        bandwidth, prior, weight = (self.params[k] for k in ("bandwidth_km", "prior_weight", "weight"))
        if not (bandwidth > 0 and prior > 0 and math.isfinite(weight) and math.isfinite(bandwidth + prior)):
            raise ValueError(f"local correction parameters out of range: {self.params}")
        self.residual = residual  # in the training sales' order, as the artifact stores it
        self._cell = RADIUS * bandwidth
        self._scale, self._prior, self._weight = -0.5 / bandwidth**2, prior, weight
        y, x = lat * KM_PER_DEGREE[0], long * KM_PER_DEGREE[1]
        grid = CellIndex.of(y, x, self._cell)  # the comparables' grid index, with cells one radius wide
        self._y0, self._x0, self._ny, self._nx, self._start, order = grid
        self._y, self._x, self._r = y[order], x[order], residual[order]
        self._blocks: dict[tuple[int, int], np.ndarray] = {}  # one house's candidates by cell (one())

    def correction(self, lat: np.ndarray, long: np.ndarray) -> np.ndarray:
        """(n,) coordinates -> (n,) log corrections (0 where no training sale lies within the radius)."""
        if len(lat) == 1:  # the API's common case
            return np.array([self.one(float(lat[0]), float(long[0]))])
        y = np.asarray(lat, dtype=np.float64) * KM_PER_DEGREE[0]
        x = np.asarray(long, dtype=np.float64) * KM_PER_DEGREE[1]
        out = np.zeros(len(y))
        for s in range(0, len(y), _CHUNK):
            out[s : s + _CHUNK] = self._chunk(y[s : s + _CHUNK], x[s : s + _CHUNK])
        return out

    def one(self, lat: float, long: float) -> float:
        """correction() of one house in Python scalars (~10 us, where the batch's index arithmetic costs ~150): the
        same candidates in the same order and the same operations on them, so the same bits (tested)."""
        y, x = lat * KM_PER_DEGREE[0], long * KM_PER_DEGREE[1]
        cell = (math.floor((y - self._y0) / self._cell), math.floor((x - self._x0) / self._cell))
        block = self._blocks.get(cell)
        if block is None:
            block = self._block(*cell)
            if block is None:
                return 0.0
            self._blocks[cell] = block
        by, bx, br = block
        w = self._weights(by, bx, y, x)
        num, den = np.add.reduceat(w * br, _FIRST)[0], np.add.reduceat(w, _FIRST)[0]
        return self._weight * float(num) / (float(den) + self._prior)

    def _block(self, cy: int, cx: int) -> np.ndarray | None:
        """The candidates of a house in cell (cy, cx) - the sales of the three grid rows of three cells around it,
        in the batch's order - as one (3, m) array of y, x and residual; None: no sale. Made at a cell's first
        house and kept (at most every sale nine times over: ~5 MB), so a request reads one contiguous block.
        _pairs() finds the same runs for a batch; for one house it costs ~175 us against this ~20 (measured), a
        cell's first request would pay the difference."""
        if cx + 1 < 0 or cx - 1 > self._nx - 1:
            return None
        lo, hi = min(max(cx - 1, 0), self._nx - 1), min(max(cx + 1, 0), self._nx - 1)
        runs = [
            (self._start[r * self._nx + lo], self._start[r * self._nx + hi + 1])
            for r in (cy - 1, cy, cy + 1)
            if 0 <= r <= self._ny - 1
        ]
        index = np.concatenate([np.arange(a, b) for a, b in runs]) if runs else np.empty(0, dtype=np.intp)
        if not len(index):
            return None
        return np.stack([self._y[index], self._x[index], self._r[index]])

    def _chunk(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        query, sale = self._pairs(y, x)
        w = self._weights(self._y[sale], self._x[sale], y[query], x[query])
        counts = np.bincount(query, minlength=len(y))
        out = np.zeros(len(y))
        has = counts > 0
        if has.any():
            starts = (np.cumsum(counts) - counts)[has]
            num = np.add.reduceat(w * self._r[sale], starts)
            den = np.add.reduceat(w, starts)
            out[has] = self._weight * num / (den + self._prior)
        return out

    def _weights(self, sale_y: np.ndarray, sale_x: np.ndarray, y, x) -> np.ndarray:
        """Each candidate sale's kernel weight for its house (y, x: the house's, a float or one per sale): one
        definition for one house and for a batch, so both do the same operations."""
        d2 = (sale_y - y) ** 2 + (sale_x - x) ** 2
        w = np.exp(d2 * self._scale)
        w[d2 > self._cell**2] = 0.0
        return w

    def _pairs(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(house, sale) index pairs, house-major: each house's candidates are the sales in the three grid rows of
        three cells around its own cell (a row of three cells is one contiguous run of the sorted sales)."""
        cy = np.floor((y - self._y0) / self._cell)
        cx = np.floor((x - self._x0) / self._cell)
        lo = np.clip(cx - 1, 0, self._nx - 1).astype(np.intp)
        hi = np.clip(cx + 1, 0, self._nx - 1).astype(np.intp)
        off_x = (cx + 1 < 0) | (cx - 1 > self._nx - 1)
        a, n = [], []
        for dy in (-1, 0, 1):
            row = cy + dy
            valid = (row >= 0) & (row <= self._ny - 1) & ~off_x
            base = np.where(valid, row, 0).astype(np.intp) * self._nx
            first, last = self._start[base + lo], self._start[base + hi + 1]
            a.append(first)
            n.append(np.where(valid, last - first, 0))
        starts, counts = np.stack(a, axis=1).ravel(), np.stack(n, axis=1).ravel()
        total = int(counts.sum())
        sale = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total)
        query = np.repeat(np.arange(len(y)), counts.reshape(len(y), 3).sum(axis=1))
        return query, sale
