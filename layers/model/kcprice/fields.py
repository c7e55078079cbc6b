"""What a King County sale is: the one definition of a valid value, shared by the CSV validator (sales and
inventories, kcprice.dataset) and the API schema (kcprice.schema), with no heavy imports.

A value is valid when it is finite, within its field's bounds and a multiple of its field's step (1: a whole
number). Bounds cover every row of the public KC 2014-15 data set (including its one 33-bedroom row) with head room,
and reject values that cannot be a King County house (zip codes outside 98xxx, coordinates outside the county).

The serving path (kcprice.predictor) imports this module, so it must stay numpy-only.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

# field -> (low, high, step): values must lie in low..high and be multiples of step (None: any finite value).
BOUNDS: dict[str, tuple[float, float, float | None]] = {
    "bedrooms": (0, 40, 1),
    "bathrooms": (0, 12, 0.25),
    "sqft_living": (200, 25_000, 1),
    "sqft_lot": (300, 5_000_000, 1),
    "floors": (1, 4, 0.5),
    "waterfront": (0, 1, 1),
    "view": (0, 4, 1),
    "condition": (1, 5, 1),
    "grade": (1, 13, 1),
    "sqft_above": (200, 25_000, 1),
    "sqft_basement": (0, 15_000, 1),
    "yr_built": (1850, 2030, 1),
    "yr_renovated": (0, 2030, 1),
    "zipcode": (98001, 98199, 1),
    # King County's bounding box (the county, not just the sample), in degrees.
    "lat": (47.08, 47.78, None),
    "long": (-122.54, -121.06, None),
    "sqft_living15": (200, 25_000, 1),
    "sqft_lot15": (300, 5_000_000, 1),
}
FIELDS: tuple[str, ...] = tuple(BOUNDS)
PRICE_BOUNDS: tuple[float, float, float | None] = (10_000.0, 50_000_000.0, None)
ID_BOUNDS: tuple[float, float, float | None] = (1, 99_999_999_999, 1)
# An empty cell in these columns means 0 (never renovated, not on the waterfront, no view rating), as the source
# data writes them; an empty cell anywhere else is a missing value.
ZERO_WHEN_EMPTY: tuple[str, ...] = ("yr_renovated", "waterfront", "view")
# Days are counted from this epoch so that the model sees sale time as one number.
EPOCH = dt.date(2014, 1, 1)
# Sale dates the model can mean: from the start of its sales history to the end of the years it accepts.
DATE_MIN, DATE_MAX = EPOCH, dt.date(2030, 12, 31)
DATE_RULE = f"must be a date from {DATE_MIN} (the start of the model's sales history) to {DATE_MAX}"
# How a sale date is written, in a CSV and in the API alike: ISO 8601's calendar date, extended or basic, or the KC
# export's midnight date-time. Nothing else: a number, or a string of digits, is not a date (pydantic's own date
# parsing would read "1413158400" as a Unix timestamp, silently).
DATE_FORMATS = "YYYY-MM-DD, YYYYMMDD or YYYYMMDDT000000"
_DATE_TEXT = re.compile(r"(\d{4})(-?)(\d{2})\2(\d{2})(T000000)?")


def parse_date(text: str) -> dt.date | None:
    """A date written in one of DATE_FORMATS (the whole text, one separator style), else None."""
    m = _DATE_TEXT.fullmatch(text)
    if m is None:
        return None
    try:
        return dt.date(int(m[1]), int(m[3]), int(m[4]))
    except ValueError:  # no such day: 2015-02-30
        return None


MAX_BATCH = 100
FINITE = "must be a finite number"


def describe(bounds: tuple[float, float, float | None]) -> str:
    low, high, step = bounds
    what = "a whole number" if step == 1 else f"a multiple of {step:g}" if step else "a number"
    return f"{what} from {low:g} to {high:g}"


def value_problems(v: np.ndarray, bounds: tuple[float, float, float | None]) -> dict[str, np.ndarray]:
    """The definition of a valid value, on a column: problem code -> mask of the values that have it."""
    low, high, step = bounds
    finite = np.isfinite(v)
    with np.errstate(invalid="ignore", over="ignore"):
        out = {"non_finite": ~finite, "out_of_range": finite & ((v < low) | (v > high))}
        if step:
            q = v / step
            out["not_integer" if step == 1 else "not_multiple"] = finite & (q != np.round(q))
    return out


def rule_violations(c: dict) -> dict:
    """Rules across fields, as 'bad' flags. Written with operators only (abs, &) so the same rules apply to numpy
    columns of a CSV (boolean masks) and to one API house's plain floats (bools, no numpy overhead)."""
    return {
        "sqft_above + sqft_basement must equal sqft_living": (
            abs(c["sqft_above"] + c["sqft_basement"] - c["sqft_living"]) > 0.5
        ),
        "yr_renovated must be 0 or >= yr_built": (c["yr_renovated"] != 0) & (c["yr_renovated"] < c["yr_built"]),
    }
