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
        self.sales = sales
        self._y, self._x = c["lat"] * _KM_PER_DEG_LAT, c["long"] * _KM_PER_DEG_LONG
        self._size, self._grade, self._built = np.log(c["sqft_living"]), c["grade"], c["yr_built"]
        # Tie-break key: more recent first, then lower id (lexsort's last key is the primary one)
        self._ids, self._day = c["id"], c["day"]

    def find(self, raw_row: np.ndarray, n: int, house_id: float | None = None) -> list[dict[str, Any]]:
        """The n most similar sales to one house (raw model inputs in RAW_COLUMNS order)."""
        if n <= 0:
            return []
        km = np.hypot(
            self._y - raw_row[_RAW["lat"]] * _KM_PER_DEG_LAT, self._x - raw_row[_RAW["long"]] * _KM_PER_DEG_LONG
        )
        d2 = (
            km**2
            + ((self._size - np.log(raw_row[_RAW["sqft_living"]])) / _SIZE) ** 2
            + ((self._grade - raw_row[_RAW["grade"]]) / _GRADE) ** 2
            + ((self._built - raw_row[_RAW["yr_built"]]) / _AGE) ** 2
        )
        if house_id is not None:
            d2 = np.where(self._ids == house_id, np.inf, d2)
        k = min(n + 32, len(d2))  # a few spare for exact ties at the cut, then an exact, stable order
        near = np.argpartition(d2, k - 1)[:k] if k < len(d2) else np.arange(len(d2))
        order = near[np.lexsort((self._ids[near], -self._day[near], d2[near]))]
        out = []
        for i in order[:n]:
            if not np.isfinite(d2[i]):
                break
            s = self.sales[i]
            out.append(
                {
                    "id": str(int(s[0])),
                    "date": _date(s[1]),
                    "price": round(float(s[2]), 2),
                    "km": round(float(km[i]), 2),
                    "similarity_distance": round(float(np.sqrt(d2[i])), 3),
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
