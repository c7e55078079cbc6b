"""A real moto server on 127.0.0.1 (real HTTP, real boto3), provisioned from template.yaml for each test."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
import requests

from kclocal import stack as local
from kclocal import template
from kclocal.events import s3_event

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture(scope="session")
def moto_endpoint():
    server, url = local.start_moto()
    yield url
    server.stop()


@pytest.fixture
def aws(moto_endpoint):
    saved = dict(os.environ)
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    spec = template.load()
    local.configure_environment(moto_endpoint, spec)
    queues = local.provision(spec)
    local.cold_start()
    s3 = boto3.client("s3")

    def upload(key: str, body: bytes) -> dict:
        etag = s3.put_object(Bucket=spec.bucket, Key=key, Body=body)["ETag"]
        return s3_event(spec.bucket, key, etag, len(body))

    yield SimpleNamespace(
        spec=spec,
        s3=s3,
        ddb=boto3.client("dynamodb"),
        bucket=spec.bucket,
        table=spec.table,
        queues=queues,
        upload=upload,
        invoke=lambda fn, event: local.invoke(spec, fn, event),
        endpoint=moto_endpoint,
    )
    local.cold_start()
    os.environ.clear()
    os.environ.update(saved)


def count_items(aws) -> int:
    """Items in the predictions table, by a full scan."""
    return sum(p["Count"] for p in aws.ddb.get_paginator("scan").paginate(TableName=aws.table, Select="COUNT"))
