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
from kcprice.pipeline import retrain

logger = Logger()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"kcprice"})


@functools.cache
def runtime():
    return RetrainSettings(), boto3.client("s3")


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    settings, s3 = runtime()
    outcomes = []
    for record in parse(event=event, model=S3Model).Records:
        key = unquote_plus(record.s3.object.key)  # S3 events URL-encode keys
        logger.append_keys(source_key=key)
        out = retrain(s3, record.s3.bucket.name, key, record.s3.object.eTag or "", settings)
        metrics.add_metric(f"Uploads{out.status.capitalize()}", MetricUnit.Count, 1)
        if out.details.get("drift"):
            metrics.add_metric("UploadMaxPSI", MetricUnit.NoUnit, out.details["drift"]["max_psi"])
        outcomes.append({"key": key, "status": out.status, "version": out.version, "report": out.report_key})
    return {"outcomes": outcomes}
