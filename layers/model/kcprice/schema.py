"""API input and output models (pydantic), built on kcprice.fields: the same definition of a valid value as the
CSV validator (finite, in bounds, a multiple of the field's step), the same cross-field rules.

Numbers are strict about type: a field takes a JSON number, not a string ("1180") nor a boolean (true). A whole
number written 1180.0 is a whole number (as in JSON Schema). What JSON Schema can say is in the OpenAPI document
(types, bounds, steps as multipleOf, the date format); the cross-field rules are in the descriptions.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from kcprice.comps import MAX_COMPS
from kcprice.fields import (
    BOUNDS,
    DATE_FORMATS,
    DATE_MAX,
    DATE_MIN,
    DATE_RULE,
    EPOCH,
    FIELDS,
    MAX_BATCH,
    describe,
    parse_date,
    rule_violations,
)
from kcprice.ranges import COVERAGES, grade

STEPPED = tuple(name for name, (_, _, step) in BOUNDS.items() if step)
RULES = "sqft_above + sqft_basement must equal sqft_living; yr_renovated must be 0 (never) or at least yr_built"


def _schema_of(step: float | None):
    def edit(schema: dict) -> None:
        if step == 1:
            schema["type"] = "integer"  # JSON Schema's integer includes 1180.0
        elif step:
            schema["multipleOf"] = step

    return edit


def _field(name: str, description: str):
    """The pydantic Field of a house field: its bounds and step from kcprice.fields (used as Annotated[float, ...])."""
    low, high, step = BOUNDS[name]
    return Field(
        strict=True,
        ge=low,
        le=high,
        allow_inf_nan=False,
        json_schema_extra=_schema_of(step),
        description=f"{description}: {describe(BOUNDS[name])}",
    )


def _date_text(v):
    """A sale date written as the CSV validator reads it (kcprice.fields.parse_date), or a date object: pydantic's
    own parsing would take a number, or a string of digits, as a Unix timestamp, silently."""
    if v is None or (isinstance(v, dt.date) and not isinstance(v, dt.datetime)):
        return v
    if isinstance(v, str) and (d := parse_date(v)) is not None:
        return d
    raise ValueError(f"must be an ISO 8601 date, written {DATE_FORMATS}")


def is_multiple(v: float, step: float) -> bool:
    """kcprice.fields.value_problems' step rule, for one value (the same operations, so the same answers)."""
    q = v / step
    return q == round(q)


EXAMPLE_HOUSE: dict[str, Any] = {
    "bedrooms": 3,
    "bathrooms": 1.0,
    "sqft_living": 1180,
    "sqft_lot": 5650,
    "floors": 1.0,
    "waterfront": 0,
    "view": 0,
    "condition": 3,
    "grade": 7,
    "sqft_above": 1180,
    "sqft_basement": 0,
    "yr_built": 1955,
    "yr_renovated": 0,
    "zipcode": 98178,
    "lat": 47.5112,
    "long": -122.257,
    "sqft_living15": 1340,
    "sqft_lot15": 5650,
    "date": "2014-10-13",
}


class House(BaseModel):
    """One house to price. Unknown fields are rejected so a typo never silently becomes a default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"description": f"A King County house. {RULES}."})

    id: str | None = Field(
        None, pattern=r"^\d{1,11}$", description="the house's KC id, if known: its own sales are never its comparables"
    )
    bedrooms: Annotated[float, _field("bedrooms", "bedrooms")]
    bathrooms: Annotated[float, _field("bathrooms", "bathrooms (0.25 per quarter bath)")]
    sqft_living: Annotated[float, _field("sqft_living", "interior living space, sq ft; = sqft_above + sqft_basement")]
    sqft_lot: Annotated[float, _field("sqft_lot", "land, sq ft")]
    floors: Annotated[float, _field("floors", "floors (0.5 per half floor)")]
    waterfront: Annotated[float, _field("waterfront", "1 if on the waterfront")]
    view: Annotated[float, _field("view", "view rating")]
    condition: Annotated[float, _field("condition", "condition rating")]
    grade: Annotated[float, _field("grade", "KC building grade")]
    sqft_above: Annotated[float, _field("sqft_above", "living space above ground, sq ft")]
    sqft_basement: Annotated[float, _field("sqft_basement", "living space below ground, sq ft")]
    yr_built: Annotated[float, _field("yr_built", "year built")]
    yr_renovated: Annotated[float, _field("yr_renovated", "year renovated: 0 if never, else at least yr_built")]
    zipcode: Annotated[float, _field("zipcode", "King County zip code")]
    lat: Annotated[float, _field("lat", "latitude")]
    long: Annotated[float, _field("long", "longitude")]
    sqft_living15: Annotated[float, _field("sqft_living15", "living space of the 15 nearest neighbours, sq ft")]
    sqft_lot15: Annotated[float, _field("sqft_lot15", "lot size of the 15 nearest neighbours, sq ft")]
    date: Annotated[dt.date | None, BeforeValidator(_date_text)] = Field(
        default=None,
        ge=DATE_MIN,
        le=DATE_MAX,
        description=f"sale date, written {DATE_FORMATS}, {DATE_MIN}..{DATE_MAX}; omitted = the latest date the model "
        "was trained on",
    )

    @field_validator(*STEPPED)
    @classmethod
    def _step(cls, v: float, info) -> float:
        step = BOUNDS[info.field_name][2]
        if step and not is_multiple(v, step):
            raise ValueError("must be a whole number" if step == 1 else f"must be a multiple of {step:g}")
        return v

    @model_validator(mode="after")
    def _kc_rules(self) -> House:
        cols = {k: getattr(self, k) for k in ("sqft_above", "sqft_basement", "sqft_living", "yr_renovated", "yr_built")}
        broken = [msg for msg, bad in rule_violations(cols).items() if bad]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    def raw_row(self, default_day: float) -> list[float]:
        day = float((self.date - EPOCH).days) if self.date else default_day
        return [getattr(self, k) for k in FIELDS] + [day]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"houses": [EXAMPLE_HOUSE]}]})
    houses: list[House] = Field(min_length=1, max_length=MAX_BATCH, description=f"1..{MAX_BATCH} houses")
    coverage: float = Field(
        0.8, description="the share of sales a range should contain: 0.8 (default) or 0.9 (wider)", strict=True
    )
    comps: int = Field(
        0, ge=0, le=MAX_COMPS, strict=True, description=f"comparable sales per house, 0..{MAX_COMPS} (default none)"
    )
    explain: bool = Field(False, strict=True, description="add each value's reasons (contributions of feature groups)")

    @field_validator("coverage")
    @classmethod
    def _coverage(cls, v: float) -> float:
        if v not in COVERAGES:
            raise ValueError(f"must be one of {', '.join(str(c) for c in COVERAGES)}")
        return v

    def __repr__(self) -> str:
        # Short on purpose: Powertools logs the handler's arguments with an eager f-string on every request, and
        # pydantic's field-by-field repr of 100 houses cost more than pricing them. Logs never need the payload.
        return f"PredictRequest(<{len(self.houses)} houses>)"


class Confidence(BaseModel):
    fsd_percent: float = Field(
        description="forecast standard deviation of the value, percent (the 80% range's half-width / 1.2816)"
    )
    grade: Literal["high", "medium", "low"] = Field(description="high: FSD <= 10%; medium: <= 20%; low: above")


class Valuation(BaseModel):
    price: float = Field(description="the value, dollars")
    low: float | None = Field(
        None,
        description="the range's low end: the sale price is at least this for `coverage` of sales (null: a "
        "model without ranges)",
    )
    high: float | None = Field(None, description="the range's high end")
    coverage: float | None = Field(None, description="the share of sales the range contains (measured, docs/model.md)")
    confidence: Confidence | None = None


def valuation(price: float, low: float, high: float, fsd: float, coverage: float) -> dict[str, Any]:
    """One house's answer as Valuation's fields; without ranges (a model from before them) only the price."""
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(fsd)):
        return {"price": round(price, 2)}
    return {
        "price": round(price, 2),
        "low": round(low, 2),
        "high": round(high, 2),
        "coverage": coverage,
        "confidence": {"fsd_percent": round(fsd, 1), "grade": grade(fsd)},
    }


class Comparable(BaseModel):
    id: str = Field(description="the sold house's id")
    date: str = Field(description="sale date")
    price: float = Field(description="sale price, dollars")
    km: float = Field(description="distance from the house, km")
    similarity_distance: float = Field(
        description="0 = identical; 1 = as different as the same house 1 km away (kcprice.comps)"
    )
    sqft_living: float
    grade: float
    yr_built: float


class Reasons(BaseModel):
    log_baseline: float = Field(
        description="the model's expected log price over its training sales: where every house starts"
    )
    baseline_price: float = Field(description="exp(log_baseline), dollars")
    contributions: dict[str, float] = Field(
        description="each feature group's exact Shapley value in log space (size, location, quality, "
        "age_condition, view_waterfront, sale_date): log_baseline + their sum = log(price) before rounding"
    )
    factors: dict[str, float] = Field(
        description="exp(contribution): baseline_price times every factor = the price (before rounding)"
    )


def reasons(explained: dict[str, Any]) -> dict[str, Any]:
    """Reasons' fields from Predictor.explain_raw's answer."""
    c = explained["contributions"]
    return {
        "log_baseline": explained["baseline"],
        "baseline_price": round(math.exp(explained["baseline"]), 2),
        "contributions": c,
        "factors": {k: math.exp(v) for k, v in c.items()},
    }


class Prediction(Valuation):
    comparables: list[Comparable] | None = Field(
        None, description="with `comps`: the most similar sales near the house, most similar first"
    )
    reasons: Reasons | None = Field(None, description="with `explain`: why the house is worth its price")


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]


def predict_response(model: Any, request: PredictRequest, values: dict[str, Any]) -> str:
    """The answer to a request, as JSON text, from a model's values of its houses (Predictor.value_houses): ranges
    at the asked coverage, and comparables and reasons when asked. POST /predict and `kcprice predict` both answer
    with it.

    Plain dicts written by pydantic-core's serializer, not PredictResponse's models (which describe the answer in
    the OpenAPI document, and which tests hold it to): measured interleaved, one house, 17.9 us with the models, 11.0
    this way (json.dumps instead would cost 9 us for this small a dict, to_json 2: json.dumps makes its encoder per
    call). Nothing is null: absent fields are left out, as exclude_none did.
    """
    c = request.coverage
    rows = zip(
        values["price"].tolist(), values["low"].tolist(), values["high"].tolist(), values["fsd"].tolist(), strict=True
    )
    predictions = []
    for row, house, raw in zip(rows, request.houses, values["raw"], strict=True):
        answer = valuation(*row, c)
        if request.comps and (comparables := model.comparable_sales(raw, request.comps, house.id)) is not None:
            answer["comparables"] = comparables
        if request.explain and (explained := model.explain_raw(raw)) is not None:
            answer["reasons"] = reasons(explained)
        predictions.append(answer)
    text = pydantic_core.to_json({"model_version": model.version, "predictions": predictions})
    # The values are finite by construction (valuation() leaves out a non-finite range); this holds the answer to
    # it as json.dumps(allow_nan=False) would: no string of the answer can hold these words (ids, ISO dates, names).
    if b"NaN" in text or b"Infinity" in text:
        raise ValueError(f"non-finite value in an answer of model {model.version}")
    return text.decode()


class HousePrice(Valuation):
    house_id: str
    comparables: list[Comparable] | None = Field(None, description="with ?comps=N: the stored comparable sales")
    model_version: str = Field(description="the model that computed the price")
    computed_at: int = Field(description="when, in seconds since the Unix epoch")


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="where: body.houses.0.zipcode, path.house_id, ...")
    type: str = Field(description="the kind of problem, e.g. less_than_equal, finite_number, missing")
    msg: str = Field(description="what is wrong, in words")


class ErrorResponse(BaseModel):
    statusCode: int
    message: str = Field(description="what is wrong, naming the field")
    detail: list[ErrorDetail] | None = Field(default=None, description="one entry per problem (422 only)")


DATE_MESSAGE = f"date {DATE_RULE}"
