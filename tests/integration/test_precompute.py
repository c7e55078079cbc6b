"""PrecomputeFunction: every house of the inventory scored by the champion and stored in DynamoDB."""

import csv
import io
import json

import pytest

from kclocal.data import by_date, inventory
from kcprice import registry
from kcprice.errors import NoModelError
from kcprice.fields import FIELDS
from kcprice.storage import get_price
from tests.integration.conftest import count_items, load_event

INVENTORY = inventory(step=4)
N_HOUSES = INVENTORY.count(b"\n") - 1


@pytest.fixture
def champion(aws):
    aws.invoke("RetrainFunction", aws.upload("incoming/seed.csv", by_date(before="20150101", step=2)))
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=INVENTORY)
    pointer, _ = registry.read_champion(aws.s3, aws.bucket)
    return pointer["version"]


@pytest.mark.parametrize(
    "event", ["precompute_on_demand.json", "precompute_schedule.json", "precompute_champion_changed.json"]
)
def test_every_event_shape_scores_the_whole_inventory(aws, champion, event):
    out = aws.invoke("PrecomputeFunction", load_event(event))
    assert out == {"status": "written", "model_version": champion, "items": N_HOUSES, "seconds": out["seconds"]}
    assert count_items(aws) == N_HOUSES
    first_id = INVENTORY.split(b"\n")[1].split(b",")[0].decode()
    item = get_price(aws.ddb, aws.table, first_id)
    assert item["model_version"] == champion and 50_000 < item["price"] < 10_000_000


def test_precomputed_prices_equal_the_api_answer_for_every_house(aws, champion):
    # Precompute scores in one batch; POST /predict scores one house at a time on another code path.
    # A user must get the same price from both, to the cent, for every house.
    aws.invoke("PrecomputeFunction", {})
    rows = list(csv.DictReader(io.StringIO(INVENTORY.decode())))
    event = load_event("predict_post.json")
    stored = {
        item["house_id"]["S"]: float(item["price"]["N"])
        for page in aws.ddb.get_paginator("scan").paginate(TableName=aws.table)
        for item in page["Items"]
    }
    mismatched = []
    for row in rows:
        event["body"] = json.dumps({"houses": [{k: float(row[k]) for k in FIELDS}]})
        live = json.loads(aws.invoke("PredictFunction", event)["body"])["predictions"][0]["price"]
        if stored[row["id"]] != live:
            mismatched.append((row["id"], stored[row["id"]], live))
    assert len(rows) == len(stored) == N_HOUSES and mismatched == []


def test_no_inventory_is_reported_not_crashed(aws):
    aws.invoke("RetrainFunction", aws.upload("incoming/seed.csv", by_date(before="20150101", step=2)))
    assert aws.invoke("PrecomputeFunction", {})["status"] == "no_inventory"


def test_no_model_yet_fails_loudly(aws):
    with pytest.raises(NoModelError):
        aws.invoke("PrecomputeFunction", {})


def test_bad_event_is_refused(aws):
    with pytest.raises(ValueError, match=r"inventory_key|validation"):
        aws.invoke("PrecomputeFunction", {"inventory": 3})
