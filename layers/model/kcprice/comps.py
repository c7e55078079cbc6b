"""Comparable sales: the most similar sales near a house, from the model's own training sales (shipped in the
artifact as the `comps` array, one row per sale).

Similarity is a distance in which one unit is roughly "as different as 1 km away":

    d = sqrt(km^2 + (log(sqft_living ratio) / 0.2)^2 + (grade difference)^2 + (years built apart / 20)^2)

so a sale 1 km away with the same size, grade and age ties with one next door that is 20% bigger. Ties go to the
more recent sale, then to the lower id: the same house gets the same comparables from POST /predict and from
precompute. A sale of the house itself (same id) is never its own comparable.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any, NamedTuple

import numpy as np

from kcprice.features import RAW_COLUMNS
from kcprice.fields import EPOCH

MAX_COMPS = 10
COLUMNS = ("id", "day", "price", "lat", "long", "sqft_living", "grade", "yr_built")
_KM_PER_DEG_LAT = 111.32
_KM_PER_DEG_LONG = 111.32 * np.cos(np.radians(47.5))  # King County's latitude
_SIZE, _GRADE, _AGE = 0.2, 1.0, 20.0
_RAW = {c: RAW_COLUMNS.index(c) for c in ("lat", "long", "sqft_living", "grade", "yr_built")}


class CellIndex(NamedTuple):
    """Points sorted by square grid cell (row-major), so the points of a run of cells in one row are one slice:
    order[start[c]:start[c + 1]] are cell c's. Cell (i, j) holds the points with floor((y - y0) / size) = i and
    floor((x - x0) / size) = j; y and x in km."""

    y0: float
    x0: float
    ny: int
    nx: int
    start: np.ndarray  # (ny * nx + 1,) where each cell's points begin in the order
    order: np.ndarray  # the points' indices, sorted by cell (stable: ties keep their input order)

    @classmethod
    def of(cls, y: np.ndarray, x: np.ndarray, size: float) -> CellIndex:
        y0, x0 = float(y.min()), float(x.min())
        cy, cx = ((y - y0) / size).astype(np.intp), ((x - x0) / size).astype(np.intp)
        ny, nx = int(cy.max()) + 1, int(cx.max()) + 1
        cell = cy * nx + cx
        order = np.argsort(cell, kind="stable")
        return cls(y0, x0, ny, nx, np.searchsorted(cell[order], np.arange(ny * nx + 1)), order)


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
        grid = CellIndex.of(y, x, 1.0)
        self._y0, self._x0, self._ny, self._nx, self._start, order = grid
        self.sales = sales[order]
        self._y, self._x = y[order], x[order]
        self._size, self._grade, self._built = np.log(c["sqft_living"])[order], c["grade"][order], c["yr_built"][order]
        # Tie-break key: more recent first, then lower id (lexsort's last key is the primary one)
        self._ids, self._day = c["id"][order], c["day"][order]
        self._made: dict[int, dict[str, Any]] = {}

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

    def _query(self, raw: np.ndarray) -> tuple[np.ndarray, ...]:
        """(n, RAW_COLUMNS) raw inputs -> the houses' coordinates in this search's space: y, x (km), log size,
        grade, year built. The same operations for one house and for a batch, so both find the same sales."""
        return (
            raw[:, _RAW["lat"]] * _KM_PER_DEG_LAT,
            raw[:, _RAW["long"]] * _KM_PER_DEG_LONG,
            np.log(raw[:, _RAW["sqft_living"]]),
            raw[:, _RAW["grade"]],
            raw[:, _RAW["yr_built"]],
        )

    def _distances(self, near: np.ndarray, q: tuple) -> tuple[np.ndarray, np.ndarray]:
        """km and squared similarity distance from each house of q (column vectors, or scalars) to the sales
        `near`: (houses, len(near)) or (len(near),). Elementwise only, so a pair gets the same bits in any shape."""
        y, x, size, grade, built = q
        km = np.hypot(self._y[near] - y, self._x[near] - x)
        d2 = (
            km**2
            + ((self._size[near] - size) / _SIZE) ** 2
            + ((self._grade[near] - grade) / _GRADE) ** 2
            + ((self._built[near] - built) / _AGE) ** 2
        )
        return km, d2

    def find(self, raw_row: np.ndarray, n: int, house_id: float | None = None) -> list[dict[str, Any]]:
        """The n most similar sales to one house (raw model inputs in RAW_COLUMNS order). Exact: every sale with
        d <= R lies within R km, so once the cells within R km hold n sales with d <= R, none further away can
        beat them; otherwise R doubles."""
        if n <= 0:
            return []
        q = tuple(float(c[0]) for c in self._query(np.asarray(raw_row, dtype=np.float64)[None, :]))
        radius = _FIRST_RADIUS
        while True:
            near = self._within(q[0], q[1], radius)
            if house_id is not None:
                near = near[self._ids[near] != house_id]
            km, d2 = self._distances(near, q)
            inside = d2 <= radius**2
            if inside.sum() >= n or radius > 2 * max(self._ny, self._nx):
                break
            radius *= 2
        return self._answer(near[inside], km[inside], d2[inside], n)

    def find_many(self, raw: np.ndarray, n: int, house_ids: np.ndarray | None = None) -> list[list[dict[str, Any]]]:
        """find() for every row of raw, the same answers, for precompute's whole inventory at once.

        Houses in one grid cell share find()'s first candidate set (the cells within the first radius of their
        own), so each cell's houses are measured against it in one (houses x candidates) array instead of a dozen
        numpy calls per house (measured on the 21,436 houses of the inventory: ~4 s one by one). A house with
        fewer than n sales inside the first radius is left to find() itself (its radius doubles)."""
        out: list[list[dict[str, Any]]] = [[] for _ in range(len(raw))]
        if n <= 0 or not len(raw):
            return out
        q = self._query(np.asarray(raw, dtype=np.float64))
        iy, ix = np.floor(q[0] - self._y0), np.floor(q[1] - self._x0)  # _within's cell (may lie off the grid)
        order = np.lexsort((ix, iy))
        bounds = np.flatnonzero((np.diff(iy[order]) != 0) | (np.diff(ix[order]) != 0)) + 1
        for group in np.split(order, bounds):
            first = group[0]
            near = self._within(float(q[0][first]), float(q[1][first]), _FIRST_RADIUS)
            km, d2 = self._distances(near, tuple(c[group][:, None] for c in q))
            if house_ids is not None:  # a house's own sales are never its comparables
                d2[self._ids[near][None, :] == house_ids[group][:, None]] = np.inf
            enough = (d2 <= _FIRST_RADIUS**2).sum(axis=1) >= n
            for h in group[~enough].tolist():
                out[h] = self.find(raw[h], n, None if house_ids is None else float(house_ids[h]))
            if not enough.any():
                continue
            rows, km, d2 = group[enough], km[enough], d2[enough]
            # Each row's n-th smallest distance (within the radius, as enough says), then the three-key order of
            # every candidate at most that far (the n best and their ties), all rows at once.
            cut = np.partition(d2, n - 1, axis=1)[:, n - 1]
            r, j = np.nonzero(d2 <= cut[:, None])
            sales = near[j]
            best = np.lexsort((self._ids[sales], -self._day[sales], d2[r, j], r))
            r, j, sales = r[best], j[best], sales[best]
            first = np.searchsorted(r, np.arange(len(rows)))
            sales_l, km_l, d2_l = sales.tolist(), km[r, j].tolist(), d2[r, j].tolist()
            for h, f in zip(rows.tolist(), first.tolist(), strict=True):
                out[h] = [self._record(sales_l[i], km_l[i], d2_l[i]) for i in range(f, f + n)]
        return out

    def _answer(self, near: np.ndarray, km: np.ndarray, d2: np.ndarray, n: int) -> list[dict[str, Any]]:
        """The n best of the candidates, as the API answers them; ties: more recent, then lower id."""
        if len(near) > 4 * n:  # the n-th smallest distance and its ties, before the three-key sort
            cut = np.partition(d2, n - 1)[n - 1]
            keep = d2 <= cut
            near, km, d2 = near[keep], km[keep], d2[keep]
        order = np.lexsort((self._ids[near], -self._day[near], d2))[:n]
        return [self._record(int(near[j]), float(km[j]), float(d2[j])) for j in order.tolist()]

    def _record(self, i: int, km: float, d2: float) -> dict[str, Any]:
        return {**self._fixed(i), "km": round(km, 2), "similarity_distance": round(math.sqrt(d2), 3)}

    def _fixed(self, i: int) -> dict[str, Any]:
        """A sale's own fields as answered, made once per sale (precompute reads most sales several times)."""
        if (fixed := self._made.get(i)) is None:
            s = self.sales[i].tolist()
            fixed = self._made[i] = {
                "id": str(int(s[0])),
                "date": _date(s[1]),
                "price": round(s[2], 2),
                "sqft_living": s[5],
                "grade": s[6],
                "yr_built": s[7],
            }
        return fixed


_FIRST_RADIUS = 3.0  # km; most houses have enough similar sales within it (fewer rounds)


@functools.lru_cache(maxsize=4096)
def _date(day: float) -> str:
    return (EPOCH + dt.timedelta(days=int(day))).isoformat()
