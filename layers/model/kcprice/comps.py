"""Comparable sales: the most similar sales near a house, from the model's own training sales (shipped in the
artifact as the `comps` array, one row per sale).

Similarity is a distance in which one unit is roughly "as different as 1 km away":

    d = sqrt(km^2 + (log(sqft_living ratio) / 0.2)^2 + (grade difference)^2 + (years built apart / 20)^2)

so a sale 1 km away with the same size, grade and age ties with one next door that is 20% bigger. Ties go to the
more recent sale, then to the lower id: the same house gets the same comparables from POST /predict and from
precompute. A sale of the house itself (same id) is never its own comparable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kcprice.features import RAW_COLUMNS

MAX_COMPS = 10
COLUMNS = ("id", "day", "price", "lat", "long", "sqft_living", "grade", "yr_built")
_KM_PER_DEG_LAT = 111.32
_KM_PER_DEG_LONG = 111.32 * np.cos(np.radians(47.5))  # King County's latitude
_SIZE, _GRADE, _AGE = 0.2, 1.0, 20.0
_RAW = {c: RAW_COLUMNS.index(c) for c in ("lat", "long", "sqft_living", "grade", "yr_built")}


def table(ids: np.ndarray, raw: np.ndarray, price: np.ndarray) -> np.ndarray:
    """The training sales as the artifact carries them: (n, len(COLUMNS)) float64."""
    day = raw[:, RAW_COLUMNS.index("day")]
    return np.column_stack([ids, day, price, *(raw[:, _RAW[c]] for c in COLUMNS[3:])]).astype(np.float64)


class Comparables:
    def __init__(self, sales: np.ndarray):
        if sales.ndim != 2 or sales.shape[1] != len(COLUMNS) or not np.isfinite(sales).all():
            raise ValueError("comparable sales must be a finite (n, 8) table")
        c = {name: sales[:, i] for i, name in enumerate(COLUMNS)}
        # Sales sorted by 1 km grid cell, so a search reads only the cells around a house (measured: scanning every
        # sale made precompute several seconds slower over 21,436 houses).
        y, x = c["lat"] * _KM_PER_DEG_LAT, c["long"] * _KM_PER_DEG_LONG
        self._y0, self._x0 = float(y.min()), float(x.min())
        cy, cx = (y - self._y0).astype(np.intp), (x - self._x0).astype(np.intp)
        self._ny, self._nx = int(cy.max()) + 1, int(cx.max()) + 1
        order = np.argsort(cy * self._nx + cx, kind="stable")
        cell = (cy * self._nx + cx)[order]
        self._start = np.searchsorted(cell, np.arange(self._ny * self._nx + 1))
        self.sales = sales[order]
        self._y, self._x = y[order], x[order]
        self._size, self._grade, self._built = np.log(c["sqft_living"])[order], c["grade"][order], c["yr_built"][order]
        # Tie-break key: more recent first, then lower id (lexsort's last key is the primary one)
        self._ids, self._day = c["id"][order], c["day"][order]

    def _within(self, y: float, x: float, radius: float) -> np.ndarray:
        """Indices of the sales in the grid cells that cover the disk of this radius (km) around (y, x)."""
        r = int(np.ceil(radius))
        iy, ix = int(np.floor(y - self._y0)), int(np.floor(x - self._x0))
        rows = range(max(iy - r, 0), min(iy + r, self._ny - 1) + 1)
        lo, hi = max(ix - r, 0), min(ix + r, self._nx - 1)
        if lo > hi or not rows:
            return np.empty(0, dtype=np.intp)
        cells = np.arange(rows.start, rows.stop) * self._nx
        a, b = self._start[cells + lo], self._start[cells + hi + 1]
        n = b - a
        # the concatenated ranges a[i]..b[i]-1, without a Python loop over the rows
        return np.repeat(a - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())

    def find(self, raw_row: np.ndarray, n: int, house_id: float | None = None) -> list[dict[str, Any]]:
        """The n most similar sales to one house (raw model inputs in RAW_COLUMNS order). Exact: every sale with
        d <= R lies within R km, so once the cells within R km hold n sales with d <= R, none further away can
        beat them; otherwise R doubles."""
        if n <= 0:
            return []
        y, x = raw_row[_RAW["lat"]] * _KM_PER_DEG_LAT, raw_row[_RAW["long"]] * _KM_PER_DEG_LONG
        size, grade, built = np.log(raw_row[_RAW["sqft_living"]]), raw_row[_RAW["grade"]], raw_row[_RAW["yr_built"]]
        radius = 3.0  # km; most houses have enough similar sales within it (fewer rounds)
        while True:
            near = self._within(y, x, radius)
            if house_id is not None:
                near = near[self._ids[near] != house_id]
            km = np.hypot(self._y[near] - y, self._x[near] - x)
            d2 = (
                km**2
                + ((self._size[near] - size) / _SIZE) ** 2
                + ((self._grade[near] - grade) / _GRADE) ** 2
                + ((self._built[near] - built) / _AGE) ** 2
            )
            inside = d2 <= radius**2
            if inside.sum() >= n or radius > 2 * max(self._ny, self._nx):
                break
            radius *= 2
        near, km, d2 = near[inside], km[inside], d2[inside]
        order = np.lexsort((self._ids[near], -self._day[near], d2))[:n]
        out = []
        for j in order:
            i = near[j]
            s = self.sales[i]
            out.append(
                {
                    "id": str(int(s[0])),
                    "date": _date(s[1]),
                    "price": round(float(s[2]), 2),
                    "km": round(float(km[j]), 2),
                    "similarity_distance": round(float(np.sqrt(d2[j])), 3),
                    "sqft_living": float(s[5]),
                    "grade": float(s[6]),
                    "yr_built": float(s[7]),
                }
            )
        return out


def _date(day: float) -> str:
    import datetime as dt

    from kcprice.fields import EPOCH

    return (EPOCH + dt.timedelta(days=int(day))).isoformat()
