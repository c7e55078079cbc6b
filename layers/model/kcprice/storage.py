"""S3 and DynamoDB helpers. Each takes its boto3 client as an argument; none reads configuration."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kcprice.errors import KcPriceError, NotFoundError

BATCH = 25  # DynamoDB BatchWriteItem limit

# The bulk writer's client (precompute's DynamoDB) skips botocore's client-side parameter validation, which the SDK
# documents as the switch for performance: it walks every attribute of every item again before serialising.
# Measured on a whole precompute (21,436 items of price, range and comparables, local endpoint, three runs each,
# alternating): 12.5 -> 10.8 s of the function's CPU, 25.2 -> 23.2 s end to end. Nothing is checked less: every
# item comes from price_item (typed, finite, tested), and DynamoDB validates each request itself - a bad one is a
# ValidationException that fails the run, never a silent loss.
BULK_WRITES = Config(parameter_validation=False)


def error_code(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "")


# Error codes that mean "try again later" (botocore's own retry list, which the SDK has already exhausted).
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "SlowDown",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def is_transient(e: Exception) -> bool:
    """A failure of the service or the network, not of the request: throttling, 5xx, timeouts, connections."""
    if isinstance(e, ClientError):
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(e) in _TRANSIENT_CODES or status >= 500 or status == 429
    return isinstance(e, BotoCoreError)


def is_missing(e: ClientError) -> bool:
    """The object does not exist."""
    return error_code(e) in ("NoSuchKey", "404")


def lost_condition(e: ClientError) -> bool:
    """A conditional write (If-Match / If-None-Match) lost: someone else wrote the key first."""
    return error_code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def get_bytes(s3, bucket: str, key: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        if is_missing(e):
            raise NotFoundError(f"s3://{bucket}/{key} does not exist") from e
        raise


def get_json(s3, bucket: str, key: str) -> Any:
    return json.loads(get_bytes(s3, bucket, key))


def strict(doc: Any) -> Any:
    """A copy that strict JSON can hold: non-finite floats (NaN, inf) become null. Python's json would write bare
    NaN tokens, which other parsers (and the JSON standard) reject."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: strict(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [strict(v) for v in doc]
    return doc


def put_json(s3, bucket: str, key: str, doc: Any, **kwargs) -> str:
    body = json.dumps(strict(doc), indent=2, sort_keys=True, default=str, allow_nan=False).encode()
    return s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **kwargs)["ETag"]


@dataclass
class WriteStats:
    written: int = 0
    batches: int = 0
    retried_items: int = 0
    retries: int = 0


class UnprocessedItemsError(KcPriceError):
    """DynamoDB kept refusing some items after every retry: the caller must fail loudly, not drop them."""


def _chunks(items: Iterable[dict], n: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def batch_put(
    ddb,
    table: str,
    items: Iterable[dict],
    max_attempts: int = 10,
    base_delay: float = 0.05,
    progress: Callable[[WriteStats], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WriteStats:
    """Write low-level (typed) items 25 at a time, retrying UnprocessedItems with jittered exponential backoff.

    Raises UnprocessedItemsError if any item is still unwritten after max_attempts: nothing is dropped silently.
    """
    stats = WriteStats()
    for chunk in _chunks(items, BATCH):
        pending = [{"PutRequest": {"Item": item}} for item in chunk]
        for attempt in range(max_attempts):
            if attempt:
                stats.retries += 1
                stats.retried_items += len(pending)
                sleep(min(base_delay * 2**attempt, 2.0) * (0.5 + random.random() / 2))
            resp = ddb.batch_write_item(RequestItems={table: pending})
            pending = resp.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
        if pending:
            raise UnprocessedItemsError(f"{len(pending)} item(s) still unprocessed after {max_attempts} attempts")
        stats.written += len(chunk)
        stats.batches += 1
        if progress:
            progress(stats)
    return stats


STORED_COMPS = 5  # comparable sales kept with each precomputed valuation (GET /houses/{id}/price?comps=N)


def _number(x: float, places: int = 2) -> dict:
    if not math.isfinite(x):  # nothing non-finite is ever stored
        raise ValueError(f"not a finite number: {x}")
    return {"N": str(Decimal(str(round(x, places))))}


def price_item(
    house_id: str,
    price: float,
    model_version: str,
    computed_at: int,
    expires_at: int,
    low: float = math.nan,
    high: float = math.nan,
    fsd: float = math.nan,
    comps: list[dict] | None = None,
) -> dict:
    """A precomputed valuation as a typed DynamoDB item (numbers as decimal strings, never binary floats); the
    80% range and its FSD when the model has ranges."""
    item = {
        "house_id": {"S": house_id},
        "price": _number(price),
        "model_version": {"S": model_version},
        "computed_at": {"N": str(computed_at)},
        "expires_at": {"N": str(expires_at)},
    }
    if math.isfinite(low) and math.isfinite(high) and math.isfinite(fsd):
        item.update(low=_number(low), high=_number(high), fsd=_number(fsd, 1))
    if comps:  # one string attribute: read back whole, never queried by its parts
        item["comps"] = {"S": json.dumps(comps[:STORED_COMPS], separators=(",", ":"), allow_nan=False)}
    return item


def get_price(ddb, table: str, house_id: str, comps: int = 0) -> dict | None:
    """The stored valuation as GET /houses/{id}/price answers it (an item from before ranges: the price alone)."""
    from kcprice.ranges import DEFAULT_COVERAGE
    from kcprice.schema import valuation

    item = ddb.get_item(TableName=table, Key={"house_id": {"S": house_id}}).get("Item")
    if not item:
        return None
    number = lambda k: float(item[k]["N"]) if k in item else math.nan  # noqa: E731
    answer = valuation(number("price"), number("low"), number("high"), number("fsd"), DEFAULT_COVERAGE)
    return {
        "house_id": item["house_id"]["S"],
        **answer,
        "model_version": item["model_version"]["S"],
        "computed_at": int(item["computed_at"]["N"]),
        **({"comparables": json.loads(item["comps"]["S"])[:comps]} if comps and "comps" in item else {}),
    }
