"""The end-to-end story, against a running local stack (or any deployment with the same API and bucket):
price a house, look up its precomputed price, upload newer sales and see what the gate decided (a new model
promoted and the precomputed prices refreshed, or the champion kept; run twice, the second upload is a
duplicate), then see a broken upload rejected with the champion untouched."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
import requests

from kclocal import data
from kclocal.events import EXAMPLE_HOUSE
from kclocal.stack import session as local_session
from kcprice import layout
from kcprice.errors import NotFoundError
from kcprice.storage import get_json

HOUSE_ID = "7129300520"  # the example house, sold 2014-10-13 for $221,900


def poll(what: str, fn: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """fn() until it returns something truthy (returned), at least `every` seconds apart and never sooner than twice
    the last check took: a check that counts the table's items scans all of them, ~5 s of the local endpoint's
    time for 21,436, and checks back to back kept it from serving the writes they wait for (a precompute's 21,436
    items took 103 s instead of 16 alone; 26 s with these gaps, measured side by side)."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.monotonic()
        value = fn()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(min(max(every, 2 * (now - started)), deadline - now))


def _s3_json(s3, bucket: str, key: str) -> dict | None:
    try:
        return get_json(s3, bucket, key)
    except NotFoundError:
        return None


def wait_for_outcome(s3, bucket: str, key: str, version_id: str | None, timeout: float = 900) -> dict:
    """The report about this very upload (the object version it was made from), wherever the outcome put it:
    an earlier upload to the same key left its own report there, which is not this one's."""

    def mine() -> dict | None:
        for report_key in (layout.upload_report(key), layout.rejection(key)):
            doc = _s3_json(s3, bucket, report_key)
            if doc and (version_id is None or doc.get("source_version") == version_id):
                return doc
        return None

    return poll(f"the outcome of {key}", mine, timeout)


def run_story(
    api: str, endpoint: str | None, bucket: str, table: str, timeout: float = 900, say: Callable[[str], None] = print
) -> dict:
    # The local stack's admin identity for the local endpoint; the default credentials for a deployed stack.
    aws = local_session(endpoint) if endpoint else boto3.Session()
    s3 = aws.client("s3", endpoint_url=endpoint)
    ddb = aws.client("dynamodb", endpoint_url=endpoint)
    http = requests.Session()
    out: dict[str, Any] = {}

    def get(path: str) -> requests.Response:
        return http.get(api + path, timeout=30)

    health = get("/health").json()
    out["v1"] = v1 = health["model_version"]
    say(f"1. GET /health -> serving {v1}")

    r = http.post(api + "/predict", json={"houses": [EXAMPLE_HOUSE]}, timeout=30)
    out["predict"] = {"status": r.status_code, **r.json()}
    say(
        f"2. POST /predict (3 bd, 1,180 sq ft, 98178) -> ${r.json()['predictions'][0]['price']:,.0f} "
        f"by {r.json()['model_version']}  (it sold for $221,900)"
    )

    r = get(f"/houses/{HOUSE_ID}/price")
    out["lookup_before"] = {"status": r.status_code, **r.json()}
    say(f"3. GET /houses/{HOUSE_ID}/price -> ${r.json()['price']:,.0f} precomputed by {r.json()['model_version']}")

    key = f"incoming/sales-since-{data.SEED_BEFORE}.csv"
    body = data.by_date(since=data.SEED_BEFORE)
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    say(f"4. uploaded {body.count(b'\n') - 1:,} newer sales to s3://{bucket}/{key}; retraining ...")
    report = wait_for_outcome(s3, bucket, key, put.get("VersionId"), timeout)
    decision = report["decision"]
    out["retrain"] = {"decision": decision, "version": report.get("challenger_version"), "gate": report.get("gate")}
    if decision in ("promoted", "refused"):
        gate = report["gate"]
        say(
            f"5. {decision} {report['challenger_version']}: holdout MAPE {gate['challenger']['mape']:.2f}% vs "
            f"champion {gate['champion']['mape']:.2f}% on the same {gate['champion']['n']:,} held-out sales"
        )
    else:  # a second run of the demo: these sales are in the ledger already
        say(f"5. {decision}: {report['reason']}")

    expected = report["challenger_version"] if decision == "promoted" else v1
    served = poll(
        "the API to serve " + expected,
        lambda: get("/model").json()["champion"]["version"] == expected and expected,
        timeout,
    )
    out["served_after"] = served

    def count(version: str | None = None) -> int:
        kw = {"FilterExpression": "model_version = :v", "ExpressionAttributeValues": {":v": {"S": version}}}
        pages = ddb.get_paginator("scan").paginate(TableName=table, Select="COUNT", **(kw if version else {}))
        return sum(p["Count"] for p in pages)

    # Precompute rewrites every item; the story goes on once all of them carry the served model's version.
    total = count()
    poll(f"all {total:,} precomputed prices to be by {expected}", lambda: count(expected) == total, timeout, 2)
    out["items_total"], out["items_by_served_model"] = total, count(expected)
    lookup = get(f"/houses/{HOUSE_ID}/price").json()
    out["lookup_after"] = lookup
    say(
        f"6. the API serves {served}; all {total:,} precomputed prices are by it; house {HOUSE_ID}: "
        f"${lookup['price']:,.0f}"
    )

    bad_key = "incoming/broken.csv"
    put = s3.put_object(Bucket=bucket, Key=bad_key, Body=body.replace(b",98178,", b",98178x,"))
    rejected = wait_for_outcome(s3, bucket, bad_key, put.get("VersionId"), timeout)
    problem = rejected["validation"]["problems"][0]
    out["rejected"] = {"problem": problem, "champion": get("/model").json()["champion"]["version"]}
    say(
        f"7. uploaded a broken file: {rejected['decision']} ({problem['code']} in '{problem['column']}', e.g. row "
        f"{problem['examples'][0]['row']}); still serving {out['rejected']['champion']}"
    )
    return out
