"""New and corrected sales from the marketplace's database to retraining, without a person.

One run (scheduled, or on demand):

1. Read the watermark (DynamoDB item, one per source): sales up to it have been exported.
2. If the previous export has no retraining report yet, stop: exports are trained on in order, so an older version
   of a sale can never be merged after a newer one (a retry or a redrive would otherwise reorder them).
3. The window is (watermark, database now - lag], shortened to hold at most about `max_rows` versions (a long
   history goes in parts, one per run and retraining). Its sales (latest version of each) are validated row by row:
   rows that fail are left out and reported with their database keys (reports/marketplace/<window>.json), so one
   bad row never holds back the others. With fewer good rows than retraining accepts, nothing is claimed: the
   window grows until the next run.
4. Claim the window (conditional write: pending_to = to, only if the watermark is still `from` and nothing is
   pending), write incoming/marketplace/<from>_<to>.csv (its S3 event starts retraining as for any upload), then
   advance (conditional write: watermark = to, pending removed, only if pending_to is still `to`).
5. Export the houses listed for sale to inventory/houses.csv when they changed (its S3 event refreshes precompute).

A crash at any point loses and duplicates nothing: before the claim nothing was written; after it, the next run
finds the claim and finishes that same window - it writes the file only if it is not there yet (an S3 PUT is
all or nothing), then advances. Two runs at once: one claim wins, the other run stops.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from kcprice import layout
from kcprice.dataset import read_sales
from kcprice.marketplace import (
    EPOCH,
    Schema,
    database_now,
    fetch_listings,
    fetch_sales,
    parse_stamp,
    stamp,
    window_end,
)
from kcprice.storage import error_code, is_missing, put_json

log = logging.getLogger(__name__)
SOURCE = "marketplace"


@dataclass
class IngestOutcome:
    status: str  # exported | waiting_for_sales | waiting_for_retrain | claimed_elsewhere
    window: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    rows: int = 0
    skipped: int = 0
    inventory: str = "unchanged"  # written | unchanged | failed: <why>

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class State:
    """The watermark item of one source in the ingest state table; every change is a conditional write."""

    def __init__(self, ddb, table: str, source: str = SOURCE):
        self.ddb, self.table, self.key = ddb, table, {"source": {"S": source}}

    def read(self) -> dict[str, str]:
        item = self.ddb.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item", {})
        return {k: v["S"] for k, v in item.items() if "S" in v}

    def claim(self, after: str, upto: str, first: bool) -> bool:
        watermark = "attribute_not_exists(#w)" if first else "#w = :from"
        values = {":to": upto, **({} if first else {":from": after})}
        return self._update("SET #p = :to", f"{watermark} AND attribute_not_exists(#p)", values)

    def advance(self, upto: str, key: str) -> bool:
        return self._update(
            "SET #w = :to, #k = :key, #u = :now REMOVE #p",
            "#p = :to",
            {":to": upto, ":key": key, ":now": dt.datetime.now(dt.UTC).isoformat()},
        )

    def release(self, upto: str) -> bool:
        return self._update("REMOVE #p", "#p = :to", {":to": upto})

    _NAMES: ClassVar[dict[str, str]] = {"#w": "watermark", "#p": "pending_to", "#k": "last_key", "#u": "updated_at"}

    def _update(self, expression: str, condition: str, values: dict[str, str]) -> bool:
        used = {k: v for k, v in self._NAMES.items() if k in expression or k in condition}
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self.key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=used,
                ExpressionAttributeValues={k: {"S": v} for k, v in values.items()},
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if is_missing(e):
            return False
        raise
    return True


def retrained(s3, bucket: str, key: str) -> bool:
    """Retraining has finished with this upload: it wrote its report, or rejected it."""
    return _exists(s3, bucket, layout.upload_report(key)) or _exists(s3, bucket, layout.rejection(key))


def ingest(
    conn,
    s3,
    ddb,
    bucket: str,
    state_table: str,
    schema: Schema,
    min_rows: int,
    lag_seconds: float,
    step: Callable[[str], None] = lambda _: None,
    max_rows: int = 100_000,
) -> IngestOutcome:
    """One run (module docstring). `step` is called after each durable step (tests stop the run there)."""
    out = _sales(conn, s3, ddb, bucket, state_table, schema, min_rows, lag_seconds, step, max_rows)
    out.inventory = _inventory(conn, s3, bucket, schema)
    step("inventory")
    return out


def _sales(conn, s3, ddb, bucket, state_table, schema, min_rows, lag_seconds, step, max_rows) -> IngestOutcome:
    state = State(ddb, state_table)
    current = state.read()
    after = current.get("watermark", stamp(EPOCH))
    pending = current.get("pending_to")
    if pending is None and (last := current.get("last_key")) and not retrained(s3, bucket, last):
        log.info("ingest: %s is not retrained yet; the next window waits for it", last)
        return IngestOutcome("waiting_for_retrain", {"from": after}, last)
    if pending is None:
        now = database_now(conn, lag_seconds)
        upto = stamp(window_end(conn, schema, parse_stamp(after), now, max_rows))
    else:
        upto = pending
    window = {"from": after, "to": upto}
    key = layout.marketplace_export(after, upto)
    exported = pending is not None and _exists(s3, bucket, key)
    rows = skipped = 0
    if not exported:
        keys, data = fetch_sales(conn, schema, parse_stamp(after), parse_stamp(upto))
        sales, report = read_sales(data, labelled=True, skip_bad_rows=True)
        rows, skipped = (len(sales) if sales is not None else 0), len(report.skipped)
        if rows < min_rows:
            if pending is not None:
                state.release(upto)  # corrections moved sales out of the claimed window: it grows again
            log.info("ingest: %d good sales in %s (at least %d wanted): waiting", rows, window, min_rows)
            return IngestOutcome("waiting_for_sales", window, None, rows, skipped)
        if pending is None:
            if not state.claim(after, upto, first="watermark" not in current):
                return IngestOutcome("claimed_elsewhere", window)
            step("claimed")
        if report.skipped:  # each left-out row with its database key, before the file that leaves it out
            bad = [{**s, "database_key": keys[s["row"] - 2]} for s in report.skipped]
            put_json(s3, bucket, layout.marketplace_report(key), {"window": window, "skipped": bad, **_summary(report)})
        s3.put_object(Bucket=bucket, Key=key, Body=sales.to_csv(), ContentType="text/csv")  # type: ignore[union-attr]
        step("exported")
    if not state.advance(upto, key):
        return IngestOutcome("claimed_elsewhere", window, key)
    step("advanced")
    log.info("ingest: %s -> %s (%d sales, %d rows left out)", window, key, rows, skipped)
    return IngestOutcome("exported", window, key, rows, skipped)


def _summary(report) -> dict[str, Any]:
    return {"rows": report.rows, "problems": [p.__dict__ for p in report.problems]}


def _inventory(conn, s3, bucket: str, schema: Schema) -> str:
    """The listed houses to inventory/houses.csv, only when they changed (each write reprices the inventory)."""
    try:
        data = fetch_listings(conn, schema)
    except Exception as e:  # the sales were exported: a listings problem is reported, and retried next run
        log.exception("ingest: the listings could not be read")
        return f"failed: {e}"
    digest = hashlib.sha256(data).hexdigest()
    key = layout.DEFAULT_INVENTORY
    try:
        if s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256") == digest:
            return "unchanged"
    except ClientError as e:
        if not is_missing(e):
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="text/csv", Metadata={"sha256": digest})
    return "written"
