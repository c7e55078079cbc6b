"""Export new and corrected sales from the marketplace's PostgreSQL database to incoming/marketplace/ (retraining
takes them from there like any upload) and the listed houses to inventory/houses.csv (kcprice.ingest).

Runs on a schedule (IngestSchedule) and on demand (an empty event: `aws lambda invoke` or `kcprice-local
marketplace ingest`).
"""

from __future__ import annotations

import functools
import json

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, TypeAdapter

from kcprice.config import IngestSettings
from kcprice.ingest import ingest
from kcprice.marketplace import connect

logger = Logger()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"kcprice"})


class OnDemand(BaseModel):
    model_config = ConfigDict(extra="forbid")


EVENT: TypeAdapter[EventBridgeModel | OnDemand] = TypeAdapter(EventBridgeModel | OnDemand)


@functools.cache
def runtime():
    return IngestSettings(), boto3.client("s3"), boto3.client("dynamodb"), boto3.client("secretsmanager")


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    settings, s3, ddb, secrets = runtime()
    EVENT.validate_python(event)
    metrics.add_metric("IngestRuns", MetricUnit.Count, 1)
    if not settings.secret_arn:
        logger.warning("no MarketplaceSecretArn: nothing to ingest")
        return {"status": "not_configured"}
    # Read at each run, not cached: a rotated password is picked up at the next run.
    secret = json.loads(secrets.get_secret_value(SecretId=settings.secret_arn)["SecretString"])
    conn = connect(secret, settings.sslmode)
    try:
        schema = settings.marketplace_schema()
        out = ingest(
            conn,
            s3,
            ddb,
            settings.bucket,
            settings.state_table,
            schema,
            settings.min_rows,
            settings.lag_seconds,
            max_rows=settings.max_rows,
        )
    finally:
        conn.close()
    metrics.add_metric("SalesExported", MetricUnit.Count, out.rows)
    metrics.add_metric("SalesLeftOut", MetricUnit.Count, out.skipped)
    result = out.to_dict()
    logger.info("ingest done", extra=result)
    return result
