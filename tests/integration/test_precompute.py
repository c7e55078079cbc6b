"""PrecomputeFunction: every house of the inventory scored by the champion and stored in DynamoDB."""

import csv
import io
import json
import threading
import time

import pytest

from kclocal.data import by_date, inventory
from kclocal.lambdas import FunctionError
from kcprice import pipeline, registry
from kcprice.fields import FIELDS
from kcprice.storage import get_price
from tests.integration.conftest import count_items, load_event


@pytest.fixture(scope="session")
def other_model():
    from kcprice.dataset import read_sales
    from kcprice.training import train

    sales, _ = read_sales(by_date(since="20150101", step=2))
    return train(sales, evaluate_splits=False)


INVENTORY = inventory(step=16)
N_HOUSES = INVENTORY.count(b"\n") - 1


@pytest.fixture
def champion(aws, small_model):
    publish(aws, small_model, None)
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=INVENTORY)
    return small_model.meta["version"]


def publish(aws, model, etag):
    s3 = aws.client("s3", "RetrainFunction")
    registry.publish_version(s3, aws.bucket, model.artifact, model.meta)
    return registry.promote(s3, aws.bucket, model.meta, etag, {})


def versions_in_table(aws) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in aws.ddb.get_paginator("scan").paginate(TableName=aws.table):
        for item in page["Items"]:
            counts[item["model_version"]["S"]] = counts.get(item["model_version"]["S"], 0) + 1
    return counts


@pytest.mark.parametrize(
    "event", ["precompute_on_demand.json", "precompute_schedule.json", "precompute_champion_changed.json"]
)
def test_every_event_shape_scores_the_whole_inventory(aws, champion, event):
    out = aws.invoke("PrecomputeFunction", load_event(event))
    assert out == {
        "status": "written",
        "model_version": champion,
        "items": N_HOUSES,
        "skipped": 0,
        "seconds": out["seconds"],
    }
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
    # ... and the same range and confidence (the 80% range is the one stored)
    stored = {
        item["house_id"]["S"]: tuple(float(item[k]["N"]) for k in ("price", "low", "high", "fsd"))
        for page in aws.ddb.get_paginator("scan").paginate(TableName=aws.table)
        for item in page["Items"]
    }
    mismatched = []
    for row in rows:
        event["body"] = json.dumps({"houses": [{k: float(row[k]) for k in FIELDS}]})
        p = json.loads(aws.invoke("PredictFunction", event)["body"])["predictions"][0]
        live = (p["price"], p["low"], p["high"], p["confidence"]["fsd_percent"])
        if stored[row["id"]] != live:
            mismatched.append((row["id"], stored[row["id"]], live))
    assert len(rows) == len(stored) == N_HOUSES and mismatched == []
    house = get_price(aws.ddb, aws.table, rows[0]["id"])
    assert (house["price"], house["low"], house["high"]) == stored[rows[0]["id"]][:3]
    assert house["coverage"] == 0.8 and house["confidence"]["grade"] in ("high", "medium", "low")
    # The comparable sales stored with a house are the ones POST /predict gives for it (its id excludes itself)
    for row in rows[:: len(rows) // 20]:
        event["body"] = json.dumps({"houses": [{"id": row["id"], **{k: float(row[k]) for k in FIELDS}}], "comps": 5})
        live = json.loads(aws.invoke("PredictFunction", event)["body"])["predictions"][0]["comparables"]
        kept = get_price(aws.ddb, aws.table, row["id"], comps=5)["comparables"]
        assert kept == live and len(live) == 5 and row["id"] not in {c["id"] for c in live}, row["id"]
    lookup = load_event("predict_house_price.json")
    lookup["rawPath"] = lookup["requestContext"]["http"]["path"] = f"/houses/{rows[0]['id']}/price"
    lookup["pathParameters"] = {"house_id": rows[0]["id"]}
    lookup["rawQueryString"], lookup["queryStringParameters"] = "comps=3", {"comps": "3"}
    answer = json.loads(aws.invoke("PredictFunction", lookup)["body"])
    assert len(answer["comparables"]) == 3 and answer["low"] < answer["price"] < answer["high"]


def test_no_inventory_is_reported_not_crashed(aws, small_model):
    # Needs s3:ListBucket on inventory/: without it S3 answers the missing key with 403 and precompute fails.
    publish(aws, small_model, None)
    assert aws.invoke("PrecomputeFunction", {})["status"] == "no_inventory"


def test_no_model_yet_is_nothing_to_do(aws):
    # The nightly run before the first model: nothing to price, and nothing for the failure queue.
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=INVENTORY)
    assert aws.invoke("PrecomputeFunction", {})["status"] == "no_model"
    assert count_items(aws) == 0


def test_bad_event_is_refused(aws):
    with pytest.raises(FunctionError, match=r"inventory_key|validation"):
        aws.invoke("PrecomputeFunction", {"inventory": 3})


def test_overlapping_precomputes_end_with_the_newest_champions_prices(aws, small_model, other_model):
    """Two runs at once for different champions (reserved concurrency keeps them apart in AWS; here they really
    overlap): the older run writes while the newer promotion happens, finishes last, and must not leave its prices."""
    old_etag = publish(aws, small_model, None)
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=INVENTORY)
    s3 = aws.client("s3", "PrecomputeFunction")
    ddb = aws.client("dynamodb", "PrecomputeFunction")
    promoted = threading.Event()
    writes = [0]

    def promote_midway(params, **_):  # the newer champion arrives while the older run is writing
        writes[0] += 1
        if writes[0] == 20 and not promoted.is_set():
            publish(aws, other_model, old_etag)
            threading.Thread(target=lambda: results.append(run(newer=True)), daemon=True).start()
            promoted.set()

    ddb.meta.events.register("provide-client-params.dynamodb.BatchWriteItem", promote_midway)
    results: list = []

    def run(newer: bool = False):
        client = aws.client("dynamodb", "PrecomputeFunction") if newer else ddb
        return pipeline.precompute(s3, client, aws.bucket, aws.table, "inventory/houses.csv", 30)

    first = run()
    deadline = time.time() + 120
    while len(results) < 1 and time.time() < deadline:
        time.sleep(0.1)
    assert promoted.is_set() and results
    assert first.model_version == other_model.meta["version"] and first.rounds == 2  # it noticed and redid
    assert versions_in_table(aws) == {other_model.meta["version"]: N_HOUSES}


def test_the_function_runs_one_precompute_at_a_time(aws):
    fn = aws.spec.functions["PrecomputeFunction"]
    assert fn.reserved_concurrency == 1
    assert aws.stack.lambdas.limit(fn) == 1
