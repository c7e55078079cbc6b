"""API input and output models (pydantic), built on the bounds and rules of kcprice.fields."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kcprice.fields import BOUNDS, EPOCH, FIELDS, MAX_BATCH, rule_violations


def _field(name: str, description: str):
    low, high, integer = BOUNDS[name]
    typ = int if integer else float
    return Annotated[typ, Field(ge=low, le=high, description=f"{description} ({low}..{high})")]


class House(BaseModel):
    """One house to price. Unknown fields are rejected so a typo never silently becomes a default."""

    model_config = ConfigDict(extra="forbid")

    bedrooms: _field("bedrooms", "bedrooms")
    bathrooms: _field("bathrooms", "bathrooms, multiple of 0.25")
    sqft_living: _field("sqft_living", "interior living space, sq ft")
    sqft_lot: _field("sqft_lot", "land, sq ft")
    floors: _field("floors", "floors, multiple of 0.5")
    waterfront: _field("waterfront", "1 if on the waterfront")
    view: _field("view", "view rating")
    condition: _field("condition", "condition rating")
    grade: _field("grade", "KC building grade")
    sqft_above: _field("sqft_above", "living space above ground, sq ft")
    sqft_basement: _field("sqft_basement", "living space below ground, sq ft")
    yr_built: _field("yr_built", "year built")
    yr_renovated: _field("yr_renovated", "year renovated, 0 if never")
    zipcode: _field("zipcode", "King County zip code")
    lat: _field("lat", "latitude")
    long: _field("long", "longitude")
    sqft_living15: _field("sqft_living15", "living space of the 15 nearest neighbours, sq ft")
    sqft_lot15: _field("sqft_lot15", "lot size of the 15 nearest neighbours, sq ft")
    date: dt.date | None = Field(
        default=None, description="sale date (ISO 8601); omitted = the latest date the model was trained on"
    )

    @model_validator(mode="after")
    def _kc_rules(self) -> House:
        cols = {k: float(getattr(self, k)) for k in FIELDS}
        broken = [msg for msg, bad in rule_violations(cols).items() if bad]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    def raw_row(self, default_day: float) -> list[float]:
        day = float((self.date - EPOCH).days) if self.date else default_day
        return [float(getattr(self, k)) for k in FIELDS] + [day]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    houses: list[House] = Field(min_length=1, max_length=MAX_BATCH, description=f"1..{MAX_BATCH} houses")

    def __repr__(self) -> str:
        # Short on purpose: Powertools logs the handler's arguments with an eager f-string on every request, and
        # pydantic's field-by-field repr of 100 houses cost more than pricing them. Logs never need the payload.
        return f"PredictRequest(<{len(self.houses)} houses>)"


class Prediction(BaseModel):
    price: float


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]
