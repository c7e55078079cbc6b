"""The end-to-end story, against a running local stack (or any deployment with the same API and bucket):
price a house, look up its precomputed price, upload newer sales, see the new model promoted (or refused) and
the precomputed prices refreshed, then see a broken upload rejected with the champion untouched."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
import requests

from kclocal import data
from kclocal.events import EXAMPLE_HOUSE
from kclocal.stack import session as local_session
from kcprice.errors import NotFoundError
from kcprice.storage import get_json

HOUSE_ID = "7129300520"  # the example house, sold 2014-10-13 for $221,900


def _poll(what: str, fn: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _s3_json(s3, bucket: str, key: str) -> dict | None:
    try:
        return get_json(s3, bucket, key)
    except NotFoundError:
        return None


def run_story(api: str, endpoint: str | None, bucket: str, table: str, timeout: float = 300,
              say: Callable[[str], None] = print) -> dict:  # fmt: skip
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
    say(f"2. POST /predict (3 bd, 1,180 sq ft, 98178) -> ${r.json()['predictions'][0]['price']:,.0f} "
        f"by {r.json()['model_version']}  (it sold for $221,900)")  # fmt: skip

    r = get(f"/houses/{HOUSE_ID}/price")
    out["lookup_before"] = {"status": r.status_code, **r.json()}
    say(f"3. GET /houses/{HOUSE_ID}/price -> ${r.json()['price']:,.0f} precomputed by {r.json()['model_version']}")

    key = f"incoming/sales-since-{data.SEED_BEFORE}.csv"
    body = data.by_date(since=data.SEED_BEFORE)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    say(f"4. uploaded {body.count(b'\n') - 1:,} newer sales to s3://{bucket}/{key}; retraining ...")
    report = _poll("the retrain report", lambda: _s3_json(s3, bucket, f"reports/{key}.json"), timeout)
    gate = report["gate"]
    out["retrain"] = {"decision": report["decision"], "version": report["challenger_version"], "gate": gate}
    say(f"5. {report['decision']} {report['challenger_version']}: holdout MAPE {gate['challenger']['mape']:.2f}% vs "
        f"champion {gate['champion']['mape']:.2f}% on the same {gate['champion']['n']:,} held-out sales; "
        f"drifted: {', '.join(report['drift']['drifted']) or 'nothing'}")  # fmt: skip

    expected = report["challenger_version"] if report["decision"] == "promoted" else v1
    served = _poll("the API to serve " + expected,
                   lambda: get("/model").json()["champion"]["version"] == expected and expected, timeout)  # fmt: skip
    out["served_after"] = served

    def count(version: str | None = None) -> int:
        kw = {"FilterExpression": "model_version = :v", "ExpressionAttributeValues": {":v": {"S": version}}}
        pages = ddb.get_paginator("scan").paginate(TableName=table, Select="COUNT", **(kw if version else {}))
        return sum(p["Count"] for p in pages)

    # Precompute rewrites every item; the story goes on once all of them carry the served model's version.
    total = count()
    _poll(f"all {total:,} precomputed prices to be by {expected}", lambda: count(expected) == total, timeout, 2)
    out["items_total"], out["items_by_served_model"] = total, count(expected)
    lookup = get(f"/houses/{HOUSE_ID}/price").json()
    out["lookup_after"] = lookup
    say(f"6. the API serves {served}; all {total:,} precomputed prices are by it; house {HOUSE_ID}: "
        f"${lookup['price']:,.0f}")  # fmt: skip

    bad_key = "incoming/broken.csv"
    s3.put_object(Bucket=bucket, Key=bad_key, Body=body.replace(b",98178,", b",98178x,"))
    rejected = _poll("the rejection report", lambda: _s3_json(s3, bucket, f"rejected/{bad_key}.json"), timeout)
    problem = rejected["validation"]["problems"][0]
    out["rejected"] = {"problem": problem, "champion": get("/model").json()["champion"]["version"]}
    say(f"7. uploaded a broken file: rejected ({problem['code']} in '{problem['column']}', e.g. row "
        f"{problem['examples'][0]['row']}); still serving {out['rejected']['champion']}")  # fmt: skip
    return out
