import pytest
from pydantic import ValidationError

from kcprice.schema import MAX_BATCH, House, PredictRequest


def error_fields(exc: ValidationError) -> set[str]:
    return {str(e["loc"][-1]) for e in exc.errors()} | {e["msg"] for e in exc.errors()}


def test_real_house_is_valid(house):
    h = House.model_validate(house)
    assert h.zipcode == 98178 and h.date.isoformat() == "2014-10-13"


def test_date_is_optional(house):
    del house["date"]
    assert House.model_validate(house).date is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("zipcode", 97201),  # Portland, not King County
        ("lat", 45.5),
        ("long", -120.0),
        ("bedrooms", -1),
        ("grade", 14),
        ("sqft_living", 10),
        ("yr_built", 1700),
        ("waterfront", 2),
        ("bathrooms", "many"),
    ],
)
def test_out_of_range_names_the_field(house, field, value):
    house[field] = value
    with pytest.raises(ValidationError) as e:
        House.model_validate(house)
    assert field in error_fields(e.value)


def test_unknown_field_is_rejected(house):
    house["pool"] = 1
    with pytest.raises(ValidationError) as e:
        House.model_validate(house)
    assert "pool" in error_fields(e.value)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"sqft_above": 1000}, "sqft_above + sqft_basement"),
        ({"yr_renovated": 1950}, "yr_renovated"),
        ({"bathrooms": 1.1}, "bathrooms"),
        ({"floors": 1.2}, "floors"),
    ],
)
def test_kc_rules(house, changes, needle):
    house.update(changes)
    with pytest.raises(ValidationError) as e:
        House.model_validate(house)
    assert needle in str(e.value)


def test_renovation_after_build_is_fine(house):
    house["yr_renovated"] = 2001
    House.model_validate(house)


def test_batch_is_capped(house):
    PredictRequest.model_validate({"houses": [house] * MAX_BATCH})
    with pytest.raises(ValidationError) as e:
        PredictRequest.model_validate({"houses": [house] * (MAX_BATCH + 1)})
    assert "houses" in error_fields(e.value)
    with pytest.raises(ValidationError):
        PredictRequest.model_validate({"houses": []})


@pytest.mark.parametrize(
    "extra",
    [{}, {"coverage": 0.9}, {"comps": 5}, {"explain": True}, {"explain": True, "comps": 3, "coverage": 0.9}],
)
def test_the_answer_is_what_the_openapi_document_describes(small_model, house, extra):
    """predict_response writes JSON without the response models: it must still be exactly a PredictResponse - no
    field the models lack, none null, none missing - whatever the request asks for."""
    import json

    from kcprice.schema import PredictResponse, predict_response

    model = small_model.predictor
    other = {**house, "id": "7129300520", "sqft_living": 2500, "sqft_above": 2500, "lat": 47.62}
    request = PredictRequest.model_validate({"houses": [house, other], **extra})
    text = predict_response(model, request, model.value_houses(request.houses, request.coverage))
    answer = json.loads(text)
    assert PredictResponse.model_validate_json(text).model_dump(exclude_none=True) == answer
    assert answer["model_version"] == model.version
    for p in answer["predictions"]:
        assert p["low"] < p["price"] < p["high"] and p["coverage"] == request.coverage
        assert set(p["confidence"]) == {"fsd_percent", "grade"}
        assert ("comparables" in p) == bool(request.comps) and ("reasons" in p) == request.explain
        if request.comps:
            assert len(p["comparables"]) == request.comps


def test_a_non_finite_value_never_leaves_as_json(small_model, house):
    import numpy as np

    from kcprice.schema import predict_response

    model = small_model.predictor
    request = PredictRequest.model_validate({"houses": [house]})
    values = model.value_houses(request.houses, request.coverage)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="non-finite"):
            predict_response(model, request, {**values, "price": np.array([bad])})
    # a non-finite range is left out (a model from before ranges), the price kept
    text = predict_response(model, request, {**values, "low": np.array([np.nan])})
    assert '"low"' not in text and '"price"' in text
