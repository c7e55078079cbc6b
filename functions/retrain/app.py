"""Retrain when a sales CSV lands under incoming/: validate, train, gate, promote, report."""

from __future__ import annotations

import functools
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3Model

from kcprice.config import RetrainSettings
from kcprice.pipeline import retrain_once

logger = Logger()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"kcprice"})


@functools.cache
def runtime():
    settings = RetrainSettings()
    return retrain_once(boto3.client("s3"), boto3.client("dynamodb"), settings)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    run = runtime()
    run.config.register_lambda_context(context)  # an unfinished run's claim expires at this invocation's deadline
    outcomes = []
    for record in parse(event=event, model=S3Model).Records:
        obj = record.s3.object
        if obj is None:  # not an object event (e.g. s3:TestEvent): nothing to train on, said rather than dropped
            logger.warning("an S3 record without an object", extra={"event_name": record.eventName})
            continue
        key = unquote_plus(obj.key)  # S3 events URL-encode keys
        logger.append_keys(source_key=key)
        out = run(
            upload={"bucket": record.s3.bucket.name, "key": key, "etag": obj.eTag or "", "version_id": obj.versionId}
        )
        metrics.add_metric(f"Uploads{out['status'].capitalize()}", MetricUnit.Count, 1)
        if out["status"] != "duplicate" and out.get("not_promoted_in_a_row") is not None:
            metrics.add_metric("UploadsNotPromotedInARow", MetricUnit.Count, out["not_promoted_in_a_row"])
        if out.get("max_psi") is not None:
            metrics.add_metric("UploadMaxPSI", MetricUnit.NoUnit, out["max_psi"])
        outcomes.append(out)
    return {"outcomes": outcomes}
