"""The local AWS-compatible stack: a moto server on 127.0.0.1, provisioned from template.yaml.

S3 notifications that the template sends to Lambda are sent to SQS queues here (one per function) and polled,
so an upload reaches the real handler as a real S3 event. Nothing here runs in AWS.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
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


def complete_s3_event(event: dict) -> dict:
    """moto's S3 notifications omit fields that real S3 always sends (and Powertools' S3Model requires);
    fill in only those, keeping every value moto did send."""
    for record in event["Records"]:
        record.setdefault("userIdentity", {"principalId": "local"})
        record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        record.setdefault("responseElements", {"x-amz-request-id": "local", "x-amz-id-2": "local"})
        record["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "local"})
    return event


def cold_start() -> None:
    """Forget every handler's cached settings, clients and model, as new execution environments would."""
    for name, module in list(sys.modules.items()):
        if name.startswith("functions.") and hasattr(module, "runtime"):
            module.runtime.cache_clear()


def handler_of(spec: template.Stack, function: str) -> Callable[[dict, Any], Any]:
    """Load the handler from the function's CodeUri, as Lambda does, whatever the current directory is."""
    fn = spec.functions[function]
    module = sys.modules.get(fn.module)
    if module is None:
        path = template.ROOT / fn.module.replace(".", "/")
        spec_ = importlib.util.spec_from_file_location(fn.module, path.with_suffix(".py"))
        module = importlib.util.module_from_spec(spec_)
        sys.modules[fn.module] = module
        spec_.loader.exec_module(module)
    return getattr(module, fn.handler)


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
    endpoint: str  # this stack's own endpoint: never follow AWS_ENDPOINT_URL to another stack's queues
    on_result: Callable[[str, dict, Any], None] = lambda fn, event, result: None
    max_attempts: int = 3
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _sqs(self):
        if not hasattr(self, "_client"):
            self._client = boto3.client("sqs", endpoint_url=self.endpoint)
        return self._client

    def start(self) -> None:
        for function, url in self.queues.items():
            t = threading.Thread(target=self._loop, args=(function, url), name=f"poll-{function}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _loop(self, function: str, url: str) -> None:
        while not self._stop.is_set():
            try:
                self._deliver(function, url, wait=1)
            except Exception:  # keep polling: the failure is logged with its event
                log.exception("poller for %s", function)
                time.sleep(1)

    def _deliver(self, function: str, url: str, wait: int) -> int:
        sqs = self._sqs()
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages", [])
        handled = 0
        for m in msgs:
            event = json.loads(m["Body"])
            if "Records" in event:  # skip s3:TestEvent
                event = complete_s3_event(event)
                self.on_result(function, event, self._invoke_with_retries(function, event))
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


class LocalStack:
    """The whole system on 127.0.0.1: moto (S3, DynamoDB, SQS), pollers delivering S3 events to the retrain and
    precompute handlers, and the HTTP bridge in front of the predict handler."""

    def __init__(self, aws_port: int = 0, api_port: int = 0, parameters: dict[str, str] | None = None,
                 say: Callable[[str], None] = print):  # fmt: skip
        self.aws_port, self.api_port, self.say = aws_port, api_port, say
        self.parameters = parameters or {}
        self.events: list[tuple[str, Any]] = []
        self._done = threading.Condition()

    def start(self) -> LocalStack:
        from kclocal.bridge import Bridge

        self.spec = template.load(parameters=self.parameters)
        self.server, self.endpoint = start_moto(self.aws_port)
        configure_environment(self.endpoint, self.spec)
        cold_start()
        self.queues = provision(self.spec)
        self.poller = Poller(self.spec, self.queues, self.endpoint, on_result=self._on_result)
        self.poller.start()
        self.bridge = Bridge(self.spec.routes(), lambda fn, ev: invoke(self.spec, fn, ev), self.api_port).start()
        self.s3 = boto3.client("s3")
        self.say(f"local AWS endpoint  {self.endpoint}  (bucket {self.spec.bucket}, table {self.spec.table})")
        self.say(f"HTTP API            {self.bridge.url}  (Swagger UI: {self.bridge.url}/swagger)")
        return self

    def stop(self) -> None:
        self.poller.stop()
        self.bridge.stop()
        self.server.stop()

    def _on_result(self, function: str, event: dict, result: Any) -> None:
        key = event["Records"][0]["s3"]["object"]["key"]
        self.say(f"[{function}] {key} -> {json.dumps(result, default=str)[:300]}")
        with self._done:
            self.events.append((function, result))
            self._done.notify_all()

    def wait_for(self, function: str, count: int, timeout: float = 300) -> list[Any]:
        """Block until `function` has handled `count` events in total; returns their results."""
        with self._done:
            ok = self._done.wait_for(lambda: sum(f == function for f, _ in self.events) >= count, timeout)
        if not ok:
            raise TimeoutError(f"{function} handled fewer than {count} events in {timeout}s")
        return [r for f, r in self.events if f == function]

    def upload(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.spec.bucket, Key=key, Body=body)

    def seed(self) -> None:
        """First start: inventory + the sales before SEED_BEFORE -> the first model -> precomputed prices."""
        from kclocal import data
        from kcprice import registry

        if registry.read_champion(self.s3, self.spec.bucket)[0] is not None:
            return
        self.say("empty registry: seeding the inventory and the first sales file")
        self.upload("inventory/houses.csv", data.inventory())
        self.upload(f"incoming/sales-before-{data.SEED_BEFORE}.csv", data.by_date(before=data.SEED_BEFORE))
        self.say("training the first model (retrain handler) ...")
        (retrain,) = self.wait_for("RetrainFunction", 1)
        if "outcomes" not in retrain or retrain["outcomes"][0]["status"] != "promoted":
            raise RuntimeError(f"seeding failed: {retrain}")
        self.say(f"promoted {retrain['outcomes'][0]['version']}; precomputing the inventory ...")
        (pre,) = self.wait_for("PrecomputeFunction", 1)
        self.say(f"precomputed {pre.get('items')} prices with {pre.get('model_version')}")
