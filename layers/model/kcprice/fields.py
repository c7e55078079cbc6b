"""What a King County sale is: field bounds and cross-field rules, with no heavy imports.

The serving path (kcprice.predictor) imports this module, so it must stay numpy-only: pydantic models built on
these bounds live in kcprice.schema.

Bounds cover every row of the public KC 2014-15 data set (including its one 33-bedroom row) with head room,
and reject values that cannot be a King County house (zip codes outside 98xxx, coordinates outside the county).
"""

from __future__ import annotations

import datetime as dt

# field -> (low, high, integer?). The single source of truth for both the API model and the CSV validator.
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "bedrooms": (0, 40, True),
    "bathrooms": (0, 12, False),
    "sqft_living": (200, 25_000, True),
    "sqft_lot": (300, 5_000_000, True),
    "floors": (1, 4, False),
    "waterfront": (0, 1, True),
    "view": (0, 4, True),
    "condition": (1, 5, True),
    "grade": (1, 13, True),
    "sqft_above": (200, 25_000, True),
    "sqft_basement": (0, 15_000, True),
    "yr_built": (1850, 2030, True),
    "yr_renovated": (0, 2030, True),
    "zipcode": (98001, 98199, True),
    # King County's bounding box (the county, not just the sample), in degrees.
    "lat": (47.08, 47.78, False),
    "long": (-122.54, -121.06, False),
    "sqft_living15": (200, 25_000, True),
    "sqft_lot15": (300, 5_000_000, True),
}
FIELDS: tuple[str, ...] = tuple(BOUNDS)
PRICE_BOUNDS = (10_000.0, 50_000_000.0)
# Days are counted from this epoch so that the model sees sale time as one number.
EPOCH = dt.date(2014, 1, 1)
MAX_BATCH = 100


def rule_violations(c: dict) -> dict:
    """Cross-field rules as 'bad' flags. Written with operators only (abs, %, &) so the same rules apply to
    numpy columns of a CSV (boolean masks) and to one API house's plain floats (bools, no numpy overhead)."""
    quarters, halves = (c["bathrooms"] * 4) % 1.0, (c["floors"] * 2) % 1.0
    return {
        "sqft_above + sqft_basement must equal sqft_living": (
            abs(c["sqft_above"] + c["sqft_basement"] - c["sqft_living"]) > 0.5
        ),
        "yr_renovated must be 0 or >= yr_built": (c["yr_renovated"] != 0) & (c["yr_renovated"] < c["yr_built"]),
        "bathrooms must be a multiple of 0.25": (quarters > 1e-9) & (quarters < 1 - 1e-9),
        "floors must be a multiple of 0.5": (halves > 1e-9) & (halves < 1 - 1e-9),
    }
