"""PredictFunction through HTTP API v2 events, against the local S3 and DynamoDB."""

import base64
import json
import math

import pytest
import requests

from kclocal.data import by_date
from kcprice import registry
from kcprice.schema import MAX_BATCH
from kcprice.storage import price_item
from tests.integration.conftest import load_event, log_lines


def call(aws, event) -> tuple[int, dict | str]:
    resp = aws.invoke("PredictFunction", event)
    body = resp["body"]
    if resp.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    try:
        return resp["statusCode"], json.loads(body)
    except json.JSONDecodeError:
        return resp["statusCode"], body


def with_body(body: str, content_type: str = "application/json") -> dict:
    event = load_event("predict_post.json")
    event["body"] = body
    event["headers"]["content-type"] = content_type
    return event


@pytest.fixture
def champion(aws, small_model):
    """A champion as retrain leaves it (published, then the pointer moved), without training per test."""
    registry.publish_version(aws.s3, aws.bucket, small_model.artifact, small_model.meta)
    registry.promote(aws.s3, aws.bucket, small_model.meta, None, {})
    return small_model.meta["version"]


@pytest.fixture
def retrained(aws):
    """A champion trained and promoted by RetrainFunction itself (lineage, model card)."""
    assert aws.seed("incoming/seed.csv", by_date(before="20150101", step=2))["status"] == "promoted"
    return registry.read_champion(aws.s3, aws.bucket)[0]["version"]


def test_predict_names_the_model_version(aws, champion):
    status, body = call(aws, load_event("predict_post.json"))
    assert status == 200 and body["model_version"] == champion
    assert 100_000 < body["predictions"][0]["price"] < 500_000


def test_each_valuation_has_a_range_at_the_asked_coverage_and_a_confidence(aws, champion):
    event = load_event("predict_post.json")
    status, body = call(aws, event)
    p80 = body["predictions"][0]
    assert p80["low"] < p80["price"] < p80["high"] and p80["coverage"] == 0.8
    fsd = p80["confidence"]["fsd_percent"]
    assert 0 < fsd < 100 and p80["confidence"]["grade"] == ("high" if fsd <= 10 else "medium" if fsd <= 20 else "low")
    request = json.loads(event["body"])
    event["body"] = json.dumps({**request, "coverage": 0.9})
    status, body = call(aws, event)
    p90 = body["predictions"][0]
    assert status == 200 and p90["price"] == p80["price"] and p90["low"] < p80["low"] and p90["high"] > p80["high"]
    event["body"] = json.dumps({**request, "comps": 3})
    status, body = call(aws, event)
    comps = body["predictions"][0]["comparables"]
    assert status == 200 and len(comps) == 3 and comps[0]["similarity_distance"] <= comps[2]["similarity_distance"]
    assert "comparables" not in p80  # only when asked: old clients see what they saw
    event["body"] = json.dumps({**request, "explain": True, "comps": 5})
    status, body = call(aws, event)
    why = body["predictions"][0]["reasons"]
    assert status == 200 and len(body["predictions"][0]["comparables"]) == 5
    assert set(why["contributions"]) == {"size", "location", "quality", "age_condition", "view_waterfront", "sale_date"}
    assert math.isclose(why["log_baseline"] + sum(why["contributions"].values()), math.log(p80["price"]), abs_tol=1e-7)
    assert math.isclose(why["baseline_price"] * math.prod(why["factors"].values()), p80["price"], rel_tol=1e-7)
    event["body"] = json.dumps({**request, "explain": "yes"})
    assert call(aws, event)[0] == 422
    for bad_comps in (11, -1, 2.5):
        event["body"] = json.dumps({**request, "comps": bad_comps})
        status, body = call(aws, event)
        assert status == 422 and "comps" in body["message"], body
    for bad in (0.5, "0.9", 90):
        event["body"] = json.dumps({**request, "coverage": bad})
        status, body = call(aws, event)
        assert status == 422 and "coverage" in body["message"], body


def test_predict_many(aws, champion):
    house = json.loads(load_event("predict_post.json")["body"])["houses"][0]
    houses = [dict(house, sqft_living=s, sqft_above=s) for s in (900, 1500, 3000)]
    status, body = call(aws, with_body(json.dumps({"houses": houses})))
    prices = [p["price"] for p in body["predictions"]]
    assert status == 200 and len(prices) == 3 and prices[0] < prices[2]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"houses": [{"bedrooms": 3}]}', "bathrooms"),
        ("not json", "json"),
        ("", "body"),
        ('{"houses": []}', "houses"),
    ],
)
def test_bad_requests_are_422_naming_the_problem(aws, champion, body, needle):
    status, resp = call(aws, with_body(body))
    assert status == 422 and needle in resp["message"].lower()


@pytest.mark.parametrize(
    "content_type", ["text/csv", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonxyz"]
)
def test_wrong_content_type_is_415(aws, champion, content_type):
    status, resp = call(aws, with_body(load_event("predict_post.json")["body"], content_type))
    assert status == 415 and "application/json" in resp["message"]


@pytest.mark.parametrize("content_type", ["Application/JSON", "application/json; charset=utf-8", " application/json"])
def test_media_types_are_case_insensitive_and_take_parameters(aws, champion, content_type):
    assert call(aws, with_body(load_event("predict_post.json")["body"], content_type))[0] == 200


def house_with(**changes) -> str:
    house = json.loads(load_event("predict_post.json")["body"])["houses"][0]
    return json.dumps({"houses": [{**house, **changes}]})


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (house_with(date="9999-12-31"), "date", "from 2014-01-01 (the start of the model's sales history) to 2030"),
        (house_with(date="0001-01-01"), "date", "from 2014-01-01"),
        (house_with(date=1414000000), "date", "ISO 8601 date"),
        (house_with(date="1414000000"), "date", "ISO 8601 date"),  # a timestamp in a string is no date either
        (house_with(sqft_living="1180"), "sqft_living", "JSON number (not a string or a boolean)"),
        (house_with(waterfront=True), "waterfront", "JSON number (not a string or a boolean)"),
        (house_with(lat=12345.678).replace("12345.678", "NaN"), "lat", "finite number"),
        (house_with(bathrooms=1.1), "bathrooms", "multiple of 0.25"),
        (house_with(bedrooms=2.5), "bedrooms", "whole number"),
    ],
)
def test_the_422_names_the_field_and_says_what_is_valid(aws, champion, body, field, words):
    status, resp = call(aws, with_body(body))
    assert status == 422, resp
    (detail,) = resp["detail"]
    assert detail["loc"][-1] == field and words in detail["msg"], detail
    assert f"body.houses.0.{field}: " in resp["message"]


def test_the_openapi_document_describes_every_answer(aws, champion):
    status, spec = call(aws, load_event("predict_openapi.json"))
    assert status == 200 and spec["info"]["description"]
    schemas = spec["components"]["schemas"]
    detail = schemas["ErrorDetail"]
    assert set(detail["required"]) <= set(detail["properties"])  # every required field is defined
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    price = spec["paths"]["/houses/{house_id}/price"]["get"]["responses"]
    assert {"200", "404", "422"} <= set(price)
    assert price["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    predict = spec["paths"]["/predict"]["post"]["responses"]
    assert {"200", "415", "422", "503"} <= set(predict)
    house = schemas["House"]["properties"]
    assert house["bathrooms"]["multipleOf"] == 0.25 and house["zipcode"]["type"] == "integer"
    assert "sqft_above + sqft_basement" in schemas["House"]["description"]


def test_out_of_range_field_is_named(aws, champion):
    body = json.loads(load_event("predict_post.json")["body"])
    body["houses"][0]["zipcode"] = 10001
    status, resp = call(aws, with_body(json.dumps(body)))
    assert status == 422 and resp["detail"][0]["loc"][-1] == "zipcode"


def test_batch_cap_is_enforced(aws, champion):
    body = json.loads(load_event("predict_post.json")["body"])
    status, resp = call(aws, with_body(json.dumps({"houses": body["houses"] * (MAX_BATCH + 1)})))
    assert status == 422 and "houses" in resp["message"]


def test_no_model_is_503_not_500(aws):
    status, body = call(aws, load_event("predict_post.json"))
    assert status == 503 and "incoming/" in body["message"]
    status, body = call(aws, load_event("predict_health.json"))
    assert status == 200 and body["model_version"] is None


def test_house_lookup(aws, champion):
    status, body = call(aws, load_event("predict_house_price.json"))
    assert status == 404 and "POST /predict" in body["message"]
    aws.ddb.put_item(TableName=aws.table, Item=price_item("7129300520", 250000.5, champion, 1, 2))
    status, body = call(aws, load_event("predict_house_price.json"))
    assert status == 200 and body == {
        "house_id": "7129300520",
        "price": 250000.5,
        "model_version": champion,
        "computed_at": 1,
    }


def test_bad_house_id_is_422(aws, champion):
    event = load_event("predict_house_price.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/houses/abc/price"
    event["pathParameters"] = {"house_id": "abc"}
    status, body = call(aws, event)
    assert status == 422 and "house_id" in body["message"]


def test_model_and_health_and_openapi(aws, retrained):
    champion = retrained
    status, body = call(aws, load_event("predict_model.json"))
    assert status == 200 and body["champion"]["version"] == champion
    # Anonymous callers see versions and metrics, not the bucket's keys or who promoted (ExposeLineage=false)
    assert "lineage" not in body["metadata"] and "artifact_key" not in body["champion"]
    assert body["metadata"]["version"] == champion and body["champion"]["reason"]["holdout_mape"] > 0
    assert "incoming/seed.csv" not in json.dumps(body)
    assert {"card.html", "model.npz", "residuals.png"} <= set(body["metadata"]["files"])
    card = requests.get(body["card_url"], timeout=10)  # the signed link works against the endpoint
    assert card.status_code == 200 and card.text.startswith("<!doctype html>") and champion in card.text
    aws.deploy({"ExposeLineage": "true"})  # the team's own stack may show it
    status, shown = call(aws, load_event("predict_model.json"))
    assert shown["metadata"]["lineage"]["source_key"] == "incoming/seed.csv"
    assert shown["champion"]["artifact_key"] == f"models/{champion}/model.npz"
    status, body = call(aws, load_event("predict_health.json"))
    assert body == {"status": "ok", "model_version": champion}
    status, spec = call(aws, load_event("predict_openapi.json"))
    assert status == 200 and {"/predict", "/houses/{house_id}/price", "/model", "/health"} <= set(spec["paths"])
    fields = spec["components"]["schemas"]["Prediction"]["properties"]
    assert {"price", "low", "high", "coverage", "confidence", "comparables", "reasons"} <= set(fields)
    assert {"coverage", "comps", "explain"} <= set(spec["components"]["schemas"]["PredictRequest"]["properties"])
    assert "coverage" in spec["components"]["schemas"]["PredictRequest"]["properties"]
    post = spec["paths"]["/predict"]["post"]  # the hot route parses its own body; the document must still say so
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictResponse")


def test_unknown_route_is_404(aws, champion):
    event = load_event("predict_health.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nope"
    assert call(aws, event)[0] == 404


def test_logs_carry_the_request_id_and_metrics_are_emf(aws, champion):
    aws.stack.lambdas.recycle("PredictFunction")  # a fresh environment: the first request loads the champion
    log = aws.stack.log_dir / "PredictFunction.log"
    start = log.stat().st_size if log.exists() else 0
    first, second = load_event("predict_post.json"), load_event("predict_post.json")
    second["requestContext"]["requestId"] = "second-request"
    assert call(aws, first)[0] == call(aws, second)[0] == 200

    lines = log_lines(log, start, lambda lines: sum("_aws" in line for line in lines) >= 2)
    loaded = [line for line in lines if line.get("message") == "model loaded"]
    assert len(loaded) == 1  # the first request loads the champion, the second reuses it
    assert loaded[0]["correlation_id"] == first["requestContext"]["requestId"]
    assert loaded[0]["model_version"] == champion and loaded[0]["service"] == "predict"
    assert loaded[0]["function_name"] == "kc-price-PredictFunction"

    emf = [line for line in lines if "_aws" in line]
    assert [blob["HousesPriced"] for blob in emf] == [[1.0], [1.0]]  # one metric blob per invocation
    assert "ModelLoadTime" in emf[0] and "ModelLoadTime" not in emf[1]
    assert all(blob["PredictLatency"][0] > 0 and blob["service"] == "predict" for blob in emf)
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "KcPrice/kc-price"  # one per stack
