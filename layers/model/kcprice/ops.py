"""Operations on a deployed stack (or the local one): what `kcprice` does for operators. Workstation side only:
the functions never import this module."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from kcprice import layout
from kcprice.errors import NotFoundError


def stack_outputs(cfn, stack: str) -> dict[str, str]:
    """The Outputs of a CloudFormation stack (BucketName, TableName, ApiUrl, FailureQueueUrl...)."""
    (desc,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}


def s3_event(
    bucket: str,
    key: str,
    etag: str,
    size: int,
    region: str,
    event_name: str = "ObjectCreated:Put",
    version_id: str | None = None,
) -> dict:
    """An S3 event notification for one object, as S3 sends it (the key URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "eventName": event_name,
                "userIdentity": {"principalId": "EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16], "x-amz-id-2": "EXAMPLE"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "kcprice",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        **({"versionId": version_id} if version_id else {}),
                        "sequencer": f"{time.time_ns():X}",
                    },
                },
            }
        ]
    }


def empty_bucket(s3, bucket: str, say: Callable[[str], None] = print) -> int:
    """Delete every object version and delete marker of a (versioned) bucket, 1,000 at a time; returns how many.
    A versioned bucket keeps every overwritten object: deleting the current keys alone would leave it non-empty."""
    deleted = 0
    while True:  # always the first page: listing on from a marker whose objects were just deleted skips some
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
        batch = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for kind in ("Versions", "DeleteMarkers")
            for v in page.get(kind, [])
        ][:1000]
        if not batch:
            return deleted
        out = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if out.get("Errors"):
            raise RuntimeError(f"could not delete {len(out['Errors'])} object versions: {out['Errors'][:3]}")
        deleted += len(batch)
        say(f"deleted {deleted:,} object versions from s3://{bucket}")


def delete_bucket(s3, bucket: str, say: Callable[[str], None] = print) -> None:
    empty_bucket(s3, bucket, say)
    s3.delete_bucket(Bucket=bucket)
    say(f"deleted bucket {bucket}")


# --- the model registry, by hand -------------------------------------------------------------------------------
def list_versions(s3, bucket: str) -> list[dict[str, Any]]:
    """Every complete version (one with its model.json), oldest first, the champion marked."""
    from kcprice import registry

    pointer, _ = registry.read_champion(s3, bucket)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.MODELS, Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            version = prefix["Prefix"][len(layout.MODELS) :].rstrip("/")
            try:
                meta = registry.version_metadata(s3, bucket, version)
            except NotFoundError:  # being written, or abandoned mid-write: not a version
                continue
            lineage = meta.get("lineage") or {}
            out.append(
                {
                    "version": version,
                    "created_at": meta.get("created_at"),
                    "champion": bool(pointer and pointer["version"] == version),
                    # The gate's word on it; versions from before refused challengers were published: promoted.
                    "gate": meta.get("gate_decision", "promoted"),
                    "holdout_mape": (meta.get("holdout") or {}).get("challenger", {}).get("mape"),
                    "metrics": meta.get("metrics") or None,
                    "rows": lineage.get("dataset_rows") or meta.get("n_train"),
                    "source_key": lineage.get("source_key"),
                    "parent_version": lineage.get("parent_version"),
                }
            )
    return sorted(out, key=lambda v: (v["created_at"] or "", v["version"]))


def promote_version(s3, bucket: str, version: str, why: str, who: str) -> dict[str, Any]:
    """Make an existing version the champion, by hand (roll forward or back). Refused unless the version is whole
    and its artifact matches the sha256 it was published with, and only if the champion did not change meanwhile
    (the same conditional write retrain uses). Precompute follows, as after any promotion."""
    from kcprice import registry

    meta = registry.version_metadata(s3, bucket, version)
    pointer, etag = registry.read_champion(s3, bucket)
    if pointer and pointer["version"] == version:
        raise ValueError(f"{version} is the champion already")
    candidate = {
        "artifact_key": registry.version_prefix(version) + "model.npz",
        "artifact_sha256": meta["artifact_sha256"],
    }
    registry.load_version(s3, bucket, candidate)  # ArtifactIntegrityError if its bytes changed; a model that loads
    reason = {"by": who, "why": why, "kind": "manual"}
    registry.promote(s3, bucket, meta, etag, reason, previous_version=pointer["version"] if pointer else None)
    return {"version": version, "previous_version": pointer["version"] if pointer else None, "reason": reason}


def rollback(s3, bucket: str, why: str, who: str) -> dict[str, Any]:
    """Back to the champion before this one (the pointer names it)."""
    from kcprice import registry
    from kcprice.errors import NoModelError

    pointer, _ = registry.read_champion(s3, bucket)
    if pointer is None:
        raise NoModelError("no champion to roll back from")
    previous = pointer.get("previous_version")
    if not previous:
        raise ValueError(f"{pointer['version']} was the first champion: there is nothing to roll back to")
    return promote_version(s3, bucket, previous, why, who)


def champion_history(s3, bucket: str) -> list[dict[str, Any]]:
    """Every position the champion pointer has had, newest first (the bucket is versioned: each write is kept)."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=layout.CHAMPION):
        for v in page.get("Versions", []):
            if v["Key"] != layout.CHAMPION:
                continue
            doc = json.loads(s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read())
            out.append(
                {
                    "version": doc["version"],
                    "promoted_at": doc.get("promoted_at"),
                    "previous_version": doc.get("previous_version"),
                    "reason": doc.get("reason"),
                    "current": v["IsLatest"],
                }
            )
    return sorted(out, key=lambda d: d["promoted_at"] or "", reverse=True)


# --- uploads and failed events -----------------------------------------------------------------------------------
def _json_or_none(s3, bucket: str, key: str) -> dict | None:
    from kcprice.storage import get_bytes

    try:
        return json.loads(get_bytes(s3, bucket, key))
    except NotFoundError:
        return None


def upload_outcomes(
    s3, bucket: str, limit: int = 20, failed_keys: frozenset[str] = frozenset(), full: bool = False
) -> list[dict]:
    """The newest uploads under incoming/ and what became of each: its report's decision (promoted, refused,
    accepted, duplicate, rejected, quarantined), `failed` when its event is in the failure queue, `pending` when
    there is neither (still running, or not started). A report about an older version of the key says so."""
    objects = [
        o
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.INCOMING)
        for o in page.get("Contents", [])
    ]
    objects.sort(key=lambda o: o["LastModified"], reverse=True)
    out = []
    for o in objects[:limit]:
        key = o["Key"]
        current = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
        reports = [
            (rk, d) for rk in (layout.upload_report(key), layout.rejection(key)) if (d := _json_or_none(s3, bucket, rk))
        ]
        report_key, doc = max(reports, key=lambda r: str(r[1].get("at", ""))) if reports else (None, None)
        outcome = doc.get("decision", "unknown") if doc else "failed" if key in failed_keys else "pending"
        if doc and doc.get("source_version") and current and doc["source_version"] != current:
            outcome = "failed" if key in failed_keys else "pending"  # the report is about an earlier version
        out.append(
            {
                "key": key,
                "uploaded_at": o["LastModified"].isoformat(),
                "size": o["Size"],
                "outcome": outcome,
                "reason": (doc or {}).get("reason"),
                "report": report_key,
                "challenger_version": (doc or {}).get("challenger_version"),
                **({"report_document": doc} if full else {}),
            }
        )
    return out


def retry_upload(s3, lam, bucket: str, function: str, key: str, region: str) -> dict:
    """Run retrain again on the current version of an upload (asynchronously, as S3's notification does). Retrain
    is idempotent per object version: an upload whose run failed is trained; one that finished answers
    `duplicate` (to train a changed file, upload it again)."""
    head = s3.head_object(Bucket=bucket, Key=key)
    event = s3_event(bucket, key, head["ETag"], head["ContentLength"], region, version_id=head.get("VersionId"))
    out = lam.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode())
    return {"key": key, "version_id": head.get("VersionId"), "function": function, "status": out["StatusCode"]}


def _receive_all(sqs, queue_url: str, hold: int) -> list[dict]:
    """Every message now visible in the queue, each held invisible for `hold` seconds (SQS has no peek)."""
    seen: dict[str, dict] = {}
    while True:
        msgs = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=hold, WaitTimeSeconds=0
        ).get("Messages", [])
        new = [m for m in msgs if m["MessageId"] not in seen]
        if not new:
            return list(seen.values())
        seen.update({m["MessageId"]: m for m in new})


def _failure(message: dict) -> dict:
    """Lambda's record of an asynchronous event that failed every attempt (its OnFailure destination's format)."""
    record = json.loads(message["Body"])
    arn = record.get("requestContext", {}).get("functionArn", "")
    payload = record.get("requestPayload")
    response = record.get("responsePayload") if isinstance(record.get("responsePayload"), dict) else {}
    keys = []
    if isinstance(payload, dict):
        keys = [r.get("s3", {}).get("object", {}).get("key") for r in payload.get("Records", [])]
        keys = [unquote_plus(k) for k in keys if isinstance(k, str)]  # S3 events URL-encode keys
    return {
        "message_id": message["MessageId"],
        "function": arn.split(":")[6] if arn.count(":") >= 6 else arn,
        "condition": record.get("requestContext", {}).get("condition"),
        "attempts": record.get("requestContext", {}).get("approximateInvokeCount"),
        "error_type": response.get("errorType"),
        "error": response.get("errorMessage"),
        "at": record.get("timestamp"),
        "upload_keys": [k for k in keys if k],
        "request_payload": payload,
    }


def failed_events(sqs, queue_url: str) -> list[dict]:
    """The failure queue's records, left in the queue (made visible again at once)."""
    messages = _receive_all(sqs, queue_url, hold=30)
    for m in messages:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return [_failure(m) for m in messages]


def redrive_failures(sqs, lam, queue_url: str, functions: set[str] | None = None) -> list[dict]:
    """Each failed event back to its function (an asynchronous invocation, retried by Lambda as any other), then
    deleted from the queue; only after the invocation was accepted, so nothing is lost if redriving stops. A
    record of a function not in `functions` (when given) is left in the queue."""
    done = []
    for m in _receive_all(sqs, queue_url, hold=300):
        f = _failure(m)
        if not f["function"] or (functions is not None and f["function"] not in functions):
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            continue
        lam.invoke(
            FunctionName=f["function"], InvocationType="Event", Payload=json.dumps(f["request_payload"]).encode()
        )
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        done.append({k: f[k] for k in ("message_id", "function", "upload_keys", "error_type")})
    return done
