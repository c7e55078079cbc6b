"""The local AWS-compatible stack: a moto server on 127.0.0.1, provisioned from template.yaml.

S3 notifications that the template sends to Lambda are sent to SQS queues here (one per function) and polled,
so an upload reaches the real handler as a real S3 event. Nothing here runs in AWS.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import boto3

from kclocal import template
from kclocal.events import LOCAL_REGION

log = logging.getLogger("kclocal")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}


def start_moto(port: int = 0):
    """moto's threaded server on loopback only; returns (server, endpoint_url)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, real_port = server.get_host_and_port()
    return server, f"http://{host}:{real_port}"


def configure_environment(endpoint: str, spec: template.Stack) -> None:
    """What a Lambda would get from its configuration: endpoint, region, credentials, template env vars."""
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ["AWS_DEFAULT_REGION"] = LOCAL_REGION
    os.environ["AWS_REGION"] = LOCAL_REGION
    for fn in spec.functions.values():
        os.environ.update({k: v for k, v in fn.env.items() if k != "POWERTOOLS_SERVICE_NAME"})


def provision(spec: template.Stack) -> dict[str, str]:
    """Create the bucket, table and notification queues the template declares. Returns function -> queue URL."""
    s3, ddb, sqs = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("sqs")
    s3.create_bucket(Bucket=spec.bucket)
    s3.put_bucket_versioning(Bucket=spec.bucket, VersioningConfiguration={"Status": "Enabled"})
    tp = spec.table_properties
    ddb.create_table(
        TableName=spec.table,
        BillingMode=tp["BillingMode"],
        AttributeDefinitions=tp["AttributeDefinitions"],
        KeySchema=tp["KeySchema"],
    )
    if "TimeToLiveSpecification" in tp:
        ddb.update_time_to_live(TableName=spec.table, TimeToLiveSpecification=tp["TimeToLiveSpecification"])
    queues: dict[str, str] = {}
    configs = []
    for n in spec.notifications:
        if n.function not in queues:
            queues[n.function] = sqs.create_queue(QueueName=f"local-{n.function}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queues[n.function], AttributeNames=["QueueArn"])["Attributes"]
        rules = [{"Name": k, "Value": v} for k, v in (("prefix", n.prefix), ("suffix", n.suffix)) if v]
        configs.append({"QueueArn": arn["QueueArn"], "Events": n.events, "Filter": {"Key": {"FilterRules": rules}}})
    s3.put_bucket_notification_configuration(
        Bucket=spec.bucket, NotificationConfiguration={"QueueConfigurations": configs}
    )
    return queues


def handler_of(spec: template.Stack, function: str) -> Callable[[dict, Any], Any]:
    fn = spec.functions[function]
    return getattr(importlib.import_module(fn.module), fn.handler)


def lambda_context(function: str) -> SimpleNamespace:
    return SimpleNamespace(
        function_name=function,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{LOCAL_REGION}:123456789012:function:{function}",
        memory_limit_in_mb=1024,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function}",
        log_stream_name="local",
        get_remaining_time_in_millis=lambda: 900_000,
    )


def invoke(spec: template.Stack, function: str, event: dict) -> Any:
    """Call a function's real handler the way Lambda would, with its template environment."""
    fn = spec.functions[function]
    os.environ["POWERTOOLS_SERVICE_NAME"] = fn.env.get("POWERTOOLS_SERVICE_NAME", function)
    return handler_of(spec, function)(event, lambda_context(function))


@dataclass
class Poller:
    """Delivers S3 notifications from the local queues to the real handlers, one at a time per function
    (like reserved concurrency 1). A failed invocation is retried twice, like Lambda's async retries."""

    spec: template.Stack
    queues: dict[str, str]
    on_result: Callable[[str, dict, Any], None] = lambda fn, event, result: None
    max_attempts: int = 3
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    busy: dict[str, bool] = field(default_factory=dict)

    def start(self) -> None:
        for function, url in self.queues.items():
            t = threading.Thread(target=self._loop, args=(function, url), name=f"poll-{function}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def drain_once(self, function: str) -> int:
        """Deliver what is queued now for one function; returns how many events were handled."""
        return self._deliver(function, self.queues[function], wait=1)

    def _loop(self, function: str, url: str) -> None:
        while not self._stop.is_set():
            try:
                self._deliver(function, url, wait=1)
            except Exception:  # keep polling: the failure is logged with its event
                log.exception("poller for %s", function)
                time.sleep(1)

    def _deliver(self, function: str, url: str, wait: int) -> int:
        sqs = boto3.client("sqs")
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages", [])
        handled = 0
        for m in msgs:
            event = json.loads(m["Body"])
            if "Records" in event:  # skip s3:TestEvent
                self.busy[function] = True
                try:
                    self.on_result(function, event, self._invoke_with_retries(function, event))
                finally:
                    self.busy[function] = False
                handled += 1
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return handled

    def _invoke_with_retries(self, function: str, event: dict) -> Any:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return invoke(self.spec, function, event)
            except Exception as e:
                log.error("%s failed (attempt %d/%d): %s", function, attempt, self.max_attempts, e)
                if attempt == self.max_attempts:
                    return {"error": str(e)}
                time.sleep(0.5 * attempt)
        return None
