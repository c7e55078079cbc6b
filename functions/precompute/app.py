"""Score every house of the inventory with the champion and store the prices in DynamoDB.

Runs after each promotion (S3 event on models/champion.json), on a schedule, and on demand
(`{"inventory_key": "inventory/other.csv"}`).
"""

from __future__ import annotations

import functools

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3Model
from pydantic import BaseModel, ConfigDict, TypeAdapter

from kcprice.config import PrecomputeSettings
from kcprice.pipeline import precompute
from kcprice.storage import BULK_WRITES

logger = Logger()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"kcprice"})


class OnDemand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inventory_key: str | None = None


EVENT: TypeAdapter[S3Model | EventBridgeModel | OnDemand] = TypeAdapter(S3Model | EventBridgeModel | OnDemand)


@functools.cache
def runtime():
    return PrecomputeSettings(), boto3.client("s3"), boto3.client("dynamodb", config=BULK_WRITES)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    settings, s3, ddb = runtime()
    metrics.add_metric("PrecomputeRuns", MetricUnit.Count, 1)
    parsed = EVENT.validate_python(event)
    key = (parsed.inventory_key if isinstance(parsed, OnDemand) else None) or settings.inventory_key
    out = precompute(
        s3, ddb, settings.bucket, settings.table, key, settings.prediction_ttl_days, settings.psi_threshold
    )
    if out.stats:
        metrics.add_metric("ItemsWritten", MetricUnit.Count, out.stats.written)
        metrics.add_metric("ItemsRetried", MetricUnit.Count, out.stats.retried_items)
        metrics.add_metric("PrecomputeSeconds", MetricUnit.Seconds, out.seconds)
    if out.drift:
        metrics.add_metric("InventoryMaxPSI", MetricUnit.NoUnit, out.drift["max_psi"])
    metrics.add_metric("HousesSkipped", MetricUnit.Count, out.skipped)
    result = {
        "status": out.status,
        "model_version": out.model_version,
        "items": out.items,
        "skipped": out.skipped,
        "seconds": out.seconds,
    }
    logger.info("precompute done", extra=result)
    return result
