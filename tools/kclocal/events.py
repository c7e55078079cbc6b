"""Lambda event shapes (as `sam local generate-event` makes them), built from plain arguments.

Used to write events/*.json, by the local HTTP bridge (each request becomes an HTTP API v2 event) and by the
local S3 notification poller, so tests, `sam local invoke` and the local stack all feed handlers the same shapes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from pathlib import Path

from kclocal.data import SEED_BEFORE

LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"
LOCAL_STACK = "kc-price"
LOCAL_BUCKET = f"{LOCAL_STACK}-data-{LOCAL_ACCOUNT}-{LOCAL_REGION}"


def http_event(
    method: str,
    path: str,
    route_key: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    path_parameters: dict[str, str] | None = None,
) -> dict:
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    raw = body.encode() if isinstance(body, str) else body
    is_text = raw is None or _is_text(raw)
    now = dt.datetime.now(dt.UTC)
    event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if query:
        from urllib.parse import parse_qsl

        event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if raw is not None:
        event["body"] = raw.decode() if is_text else base64.b64encode(raw).decode()
    return event


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def s3_event(
    bucket: str, key: str, etag: str, size: int, event_name: str = "ObjectCreated:Put", version_id: str | None = None
) -> dict:
    from kcprice.ops import s3_event as event

    return event(bucket, key, etag, size, LOCAL_REGION, event_name, version_id)


def schedule_event() -> dict:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT,
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": LOCAL_REGION,
        "resources": [f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:rule/kc-price-Nightly"],
        "detail": {},
    }


from kcprice.schema import EXAMPLE_HOUSE  # noqa: E402 - the API's own example


def write_all(folder: Path) -> list[Path]:
    """events/*.json: one per function and route, pointing at the local stack's bucket."""
    j = {"content-type": "application/json"}
    events = {
        "predict_post.json": http_event(
            "POST", "/predict", "POST /predict", json.dumps({"houses": [EXAMPLE_HOUSE]}), j
        ),
        "predict_house_price.json": http_event(
            "GET",
            "/houses/7129300520/price",
            "GET /houses/{house_id}/price",
            path_parameters={"house_id": "7129300520"},
        ),
        "predict_model.json": http_event("GET", "/model", "GET /model"),
        "predict_health.json": http_event("GET", "/health", "GET /health"),
        "predict_openapi.json": http_event("GET", "/openapi.json", "GET /openapi.json"),
        "precompute_champion_changed.json": s3_event(LOCAL_BUCKET, "models/champion.json", "0" * 32, 512),
        "precompute_schedule.json": schedule_event(),
        "precompute_on_demand.json": {"inventory_key": "inventory/houses.csv"},
        "ingest_schedule.json": schedule_event(),
        "ingest_on_demand.json": {},
        "retrain_upload.json": s3_event(LOCAL_BUCKET, f"incoming/sales-before-{SEED_BEFORE}.csv", "0" * 32, 1_000_000),
    }
    folder.mkdir(exist_ok=True)
    paths = []
    for name, event in events.items():
        path = folder / name
        path.write_text(json.dumps(event, indent=2) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all(Path(__file__).resolve().parents[2] / "events"):
        print(p)
