"""The local stack: the whole system on 127.0.0.1, provisioned from template.yaml, failing where AWS would fail.

    awsd (kclocal.awsd)      S3, DynamoDB, SQS, IAM, STS: moto in its own process, every call checked against the
                             caller's IAM policies, S3's 403 for a missing key the caller may not list
    functions (kclocal.lambdas)
                             each execution environment its own process with only its function's environment
                             variables and its own role's credentials; timeouts, concurrency, async retries and
                             the failure destination as Lambda has them
    S3 notifications         S3 -> an SQS queue per function (moto) -> asynchronous invocation
    HTTP API (kclocal.bridge) HTTP on localhost -> API Gateway v2 events -> synchronous invocation

Nothing here runs in AWS.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import requests

from kclocal import template
from kclocal.awsd import ADMIN_KEY, ADMIN_SECRET
from kclocal.events import LOCAL_REGION, schedule_event
from kclocal.lambdas import FunctionError, Lambdas, environment_variables
from kclocal.state import State

log = logging.getLogger("kclocal")
ADMIN_CREDENTIALS = {"AWS_ACCESS_KEY_ID": ADMIN_KEY, "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET}


class Awsd:
    """The local AWS endpoint, a child process (see kclocal.awsd)."""

    def __init__(self, port: int = 0, journal: Path | None = None, startup_timeout: float = 120):
        cmd = [sys.executable, "-m", "kclocal.awsd", "--port", str(port)]
        if journal is not None:
            cmd += ["--journal", str(journal)]
        self.journal = journal
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )
        line = _readline(self.proc, startup_timeout)
        if not line.startswith("READY "):
            self.proc.kill()
            err = (self.proc.stderr.read() if self.proc.stderr else "").strip().splitlines()
            raise OSError(err[-1] if err else f"the local AWS endpoint did not start ({line!r})")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._drain, daemon=True, name="awsd-stderr").start()

    def _drain(self) -> None:
        for line in self.proc.stderr or []:
            if "Traceback" in line or "Error" in line:
                log.debug("awsd: %s", line.rstrip())

    def register_lambda(self, url: str) -> None:
        """Where the endpoint forwards Lambda Invoke calls (the process running the functions)."""
        requests.post(f"{self.endpoint}/_kclocal/lambda-target", data=url, timeout=30).raise_for_status()

    def reset(self, data_only: bool = False) -> None:
        """Every service (IAM included) or, data_only, the bucket, tables and queues: roles and sessions stay."""
        url = f"{self.endpoint}/_kclocal/reset" + ("?data" if data_only else "")
        requests.post(url, timeout=30).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _pythonpath() -> str:
    here = Path(__file__).resolve().parents[1]
    return os.pathsep.join([str(here), str(template.ROOT / "layers" / "model"), os.environ.get("PYTHONPATH", "")])


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    t.start()
    t.join(timeout)
    return box[0].strip() if box else ""


def session(endpoint: str, credentials: dict[str, str] | None = None) -> boto3.Session:
    c = credentials or ADMIN_CREDENTIALS
    return boto3.Session(
        aws_access_key_id=c["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=c["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=c.get("AWS_SESSION_TOKEN"),
        region_name=LOCAL_REGION,
    )


@dataclass
class Provisioned:
    credentials: dict[str, dict[str, str]]  # function -> its role session's credentials
    notify_queues: dict[str, str]  # function -> URL of the queue S3 notifies for it


def provision(
    spec: template.Stack,
    endpoint: str,
    notifications: bool = True,
    credentials: dict[str, dict[str, str]] | None = None,
) -> Provisioned:
    """Create what the template declares: the bucket, tables and queues, each function's role with its policies
    (as SAM expands them) and a session of it, and (unless told not to) the bucket's notifications."""
    admin = session(endpoint)
    s3, ddb, sqs = (admin.client(s, endpoint_url=endpoint) for s in ("s3", "dynamodb", "sqs"))
    iam, sts = admin.client("iam", endpoint_url=endpoint), admin.client("sts", endpoint_url=endpoint)
    s3.create_bucket(Bucket=spec.bucket)
    bucket = next(r for r in spec.cfn["Resources"].values() if r["Type"] == "AWS::S3::Bucket")["Properties"]
    if bucket.get("VersioningConfiguration", {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=spec.bucket, VersioningConfiguration={"Status": "Enabled"})
    for t in spec.tables.values():
        ddb.create_table(
            TableName=t.name,
            BillingMode=t.properties["BillingMode"],
            AttributeDefinitions=t.properties["AttributeDefinitions"],
            KeySchema=t.properties["KeySchema"],
        )
        if "TimeToLiveSpecification" in t.properties:
            ddb.update_time_to_live(TableName=t.name, TimeToLiveSpecification=t.properties["TimeToLiveSpecification"])
    for name in spec.queues.values():
        sqs.create_queue(QueueName=name)
    if credentials is not None:  # the roles exist already (a data-only reset): their sessions are kept
        return Provisioned(credentials, _notify_queues(spec, sqs, notifications))
    credentials = {}
    for fn in spec.functions.values():
        trust = spec.resolve(spec.cfn["Resources"][fn.role]["Properties"]["AssumeRolePolicyDocument"])
        iam.create_role(RoleName=fn.role, AssumeRolePolicyDocument=json.dumps(trust))
        for i, doc in enumerate(fn.policies):
            # IAM defaults a policy without Version to 2008-10-17; moto insists on one. Same meaning here.
            iam.put_role_policy(
                RoleName=fn.role, PolicyName=f"policy{i}", PolicyDocument=json.dumps({"Version": "2012-10-17", **doc})
            )
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{spec.account}:role/{fn.role}", RoleSessionName=fn.name)
        c = c["Credentials"]
        credentials[fn.name] = {
            "AWS_ACCESS_KEY_ID": c["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
            "AWS_SESSION_TOKEN": c["SessionToken"],
        }
    return Provisioned(credentials, _notify_queues(spec, sqs, notifications))


def _notify_queues(spec: template.Stack, sqs, notifications: bool) -> dict[str, str]:
    queues: dict[str, str] = {}
    for n in spec.notifications if notifications else []:
        if n.function not in queues:  # plumbing of the local stack, not of the template
            queues[n.function] = sqs.create_queue(QueueName=f"kclocal-notify-{n.function}")["QueueUrl"]
    return queues


def connect_notifications(spec: template.Stack, endpoint: str, queues: dict[str, str]) -> None:
    """The bucket's notifications (from the template's S3 events) to the local queues, last: a restored object
    must not look like a new upload."""
    admin = session(endpoint)
    s3, sqs = admin.client("s3", endpoint_url=endpoint), admin.client("sqs", endpoint_url=endpoint)
    configs = []
    for n in spec.notifications:
        if n.function not in queues:
            continue
        arn = sqs.get_queue_attributes(QueueUrl=queues[n.function], AttributeNames=["QueueArn"])["Attributes"]
        rules = [{"Name": k, "Value": v} for k, v in (("prefix", n.prefix), ("suffix", n.suffix)) if v]
        configs.append({"QueueArn": arn["QueueArn"], "Events": n.events, "Filter": {"Key": {"FilterRules": rules}}})
    s3.put_bucket_notification_configuration(
        Bucket=spec.bucket, NotificationConfiguration={"QueueConfigurations": configs}
    )


def complete_s3_event(event: dict, s3=None) -> dict:
    """moto's S3 notifications omit fields that real S3 always sends (and Powertools' S3Model requires), and the
    object's versionId, which S3 sends for a versioned bucket; fill in only those, keeping every value moto did
    send. The version is the newest one of the key with the event's ETag."""
    for record in event["Records"]:
        record.setdefault("userIdentity", {"principalId": "local"})
        record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        record.setdefault("responseElements", {"x-amz-request-id": "local", "x-amz-id-2": "local"})
        record["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "local"})
        obj = record["s3"]["object"]
        if s3 is not None and "versionId" not in obj:
            key = unquote_plus(obj["key"])
            listed = s3.list_object_versions(Bucket=record["s3"]["bucket"]["name"], Prefix=key).get("Versions", [])
            same = [v for v in listed if v["Key"] == key and v["ETag"].strip('"') == obj.get("eTag", "").strip('"')]
            if same:
                obj["versionId"] = max(same, key=lambda v: v["LastModified"])["VersionId"]
    return event


def _rate_seconds(expression: str) -> float | None:
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not m:
        return None  # cron(...) schedules are not run locally
    unit = {"minute": 60, "hour": 3600, "day": 86400}[m[2].rstrip("s")]
    return int(m[1]) * unit


class LocalStack:
    """The whole system on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        aws_port: int = 0,
        api_port: int = 0,
        parameters: dict[str, str] | None = None,
        say: Callable[[str], None] = print,
        retry_delays: tuple[float, ...] | None = None,
        log_dir: Path | None = None,
        journal: Path | None = None,
        threads: int = 1,
        echo_logs: bool = False,
        notifications: bool = True,
        state_dir: Path | None = None,
        fresh: bool = False,
        save_every: float = 5.0,
        marketplace: bool = True,
    ):
        self.aws_port, self.api_port, self.say = aws_port, api_port, say
        self.parameters = parameters or {}
        self._deployed_with = dict(self.parameters)
        self.retry_delays, self.threads, self.echo_logs = retry_delays, threads, echo_logs
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="kclocal-logs-"))
        self.journal, self.notifications = journal, notifications
        self.state = State(state_dir) if state_dir else None
        self.fresh, self.save_every = fresh, save_every
        self.with_marketplace = marketplace
        self.events: list[tuple[str, Any]] = []
        self._done = threading.Condition()
        self._stop = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        from kclocal.bridge import Bridge
        from kclocal.lambda_api import LambdaApi

        self.awsd = Awsd(self.aws_port, self.journal)
        try:
            self.endpoint = self.awsd.endpoint
            self.admin = session(self.endpoint)
            self._start_marketplace()
            self.spec = template.load(
                parameters={**self.parameters, "AwsEndpointUrl": self.endpoint}, endpoint=self.endpoint
            )
            self.s3 = self.admin.client("s3", endpoint_url=self.endpoint)
            self.provisioned = provision(self.spec, self.endpoint, self.notifications)
            if self.state and self.fresh:
                self.state.wipe()
            if self.state and self.state.exists():
                counts = self.state.restore(self)
                self.say(
                    f"restored {counts['versions']:,} S3 object versions, {counts['items']:,} items and "
                    f"{counts['messages']} queued messages from {self.state.folder}"
                )
            connect_notifications(self.spec, self.endpoint, self.provisioned.notify_queues)
            kwargs = {"retry_delays": self.retry_delays} if self.retry_delays else {}
            self.lambdas = Lambdas(
                self.spec.functions,
                self._environment,
                self._send_failure,
                self.log_dir,
                echo=self.say if self.echo_logs else None,
                **kwargs,
            ).start()
            for function, url in self.provisioned.notify_queues.items():
                threading.Thread(target=self._poll, args=(function, url), daemon=True, name=f"s3-{function}").start()
            for fn in self.spec.functions.values():
                if fn.schedule and (every := _rate_seconds(fn.schedule)):
                    threading.Thread(target=self._schedule, args=(fn.name, every), daemon=True).start()
            self.lambda_api = LambdaApi(self.lambdas, self.physical_names, self.spec.aliases).start()
            self.awsd.register_lambda(self.lambda_api.url)
            cors, security = self.spec.http_api()
            self.bridge = Bridge(self.spec.routes(), self.lambdas.invoke, self.api_port, cors, security).start()
            if self.state:
                threading.Thread(target=self._save_loop, daemon=True, name="state").start()
            self._started = True
        except BaseException:
            self.stop()
            raise
        self.say(f"local AWS endpoint  {self.endpoint}  (bucket {self.spec.bucket}, table {self.spec.table})")
        self.say(f"HTTP API            {self.bridge.url}  (Swagger UI: {self.bridge.url}/swagger)")
        return self

    def _start_marketplace(self) -> None:
        """The marketplace's database (a real PostgreSQL) and the secret that points the ingest function at it.
        Without one the rest of the stack runs, and says why (ingest answers "not_configured")."""
        from kclocal import marketplace

        self.marketplace = None
        if not self.with_marketplace:
            return
        # Beside the saved state, not in it: --fresh moves that folder aside, which a running server must not see.
        folder = (
            self.state.folder.with_name(self.state.folder.name + "-postgres")
            if self.state
            else Path(tempfile.mkdtemp(prefix="kclocal-pg-"))
        )
        if self.state and self.fresh:
            shutil.rmtree(folder, ignore_errors=True)
        self.marketplace, why = marketplace.start(folder)
        self.say(why if self.marketplace else f"no marketplace database ({why}); the rest of the stack runs")
        if self.marketplace:
            # A local transaction commits within milliseconds: a 1 s lag (60 s in AWS) keeps tests and demos quick.
            self.parameters.update(self._marketplace_secret(), MarketplaceSslMode="disable", IngestLagSeconds="1")
            self._deployed_with = dict(self.parameters)

    def _marketplace_secret(self) -> dict[str, str]:
        """(Re)create the database's secret, as an RDS-managed secret holds it; its ARN is the stack parameter."""
        from kclocal.marketplace import SECRET_NAME

        sm = self.admin.client("secretsmanager", endpoint_url=self.endpoint)
        # moto's custom-id tag fixes the ARN's random suffix: the ARN (a template parameter, in the function's
        # policy) stays the same when a reset makes the secret again.
        arn = sm.create_secret(
            Name=SECRET_NAME,
            SecretString=json.dumps(self.marketplace.secret()),
            Tags=[{"Key": "_custom_id_", "Value": "kcloca"}],
        )["ARN"]
        return {"MarketplaceSecretArn": arn}

    def _save_loop(self) -> None:
        while not self._stop.wait(self.save_every):
            try:
                self.state.save(self)
            except Exception:
                log.exception("could not save the local state")

    def stop(self) -> None:
        self._stop.set()
        if self.state and getattr(self, "_started", False):  # never save a half-started (or half-restored) stack
            try:
                self.state.save(self)
                self.say(f"saved the local state in {self.state.folder}")
            except Exception:
                log.exception("could not save the local state")
        for part in ("bridge", "lambda_api", "lambdas", "awsd"):
            if hasattr(self, part):
                getattr(self, part).stop()
        if getattr(self, "marketplace", None) is not None:
            self.marketplace.stop()
            if not self.state:  # a throwaway stack's database (tests, benchmarks): ~60 MB of data files
                shutil.rmtree(self.marketplace.folder, ignore_errors=True)

    def deploy(self, parameters: dict[str, str]) -> None:
        """`sam deploy --parameter-overrides`: the functions get their new configuration in new environments."""
        self.parameters = {**self.parameters, **parameters}
        self.spec = template.load(
            parameters={**self.parameters, "AwsEndpointUrl": self.endpoint}, endpoint=self.endpoint
        )
        self.lambdas.functions.update(self.spec.functions)
        self.lambdas.recycle()
        self.bridge.cors, self.bridge.security = self.spec.http_api()

    def reset(self, keep_warm: tuple[str, ...] = ()) -> None:
        """Empty every service and provision again, with new function environments (tests). The functions in
        keep_warm keep theirs, as Lambda keeps an environment between invocations: then only the data is reset
        (bucket, tables, queues), so the roles' sessions those environments hold stay valid."""
        if self.parameters != self._deployed_with:
            self.parameters = {}
            self.deploy(self._deployed_with)
        for name in self.spec.functions:
            if name not in keep_warm:
                self.lambdas.recycle(name)
        if keep_warm:
            self.awsd.reset(data_only=True)
            self.provisioned = provision(self.spec, self.endpoint, self.notifications, self.provisioned.credentials)
        else:
            self.awsd.reset()
            if self.marketplace is not None:  # its secret went with the rest: the same one again
                self._marketplace_secret()
            self.provisioned = provision(self.spec, self.endpoint, self.notifications)
        connect_notifications(self.spec, self.endpoint, self.provisioned.notify_queues)
        with self._done:
            self.events.clear()

    # --- functions ------------------------------------------------------------------------------------------
    def physical_names(self) -> dict[str, str]:
        return {name: fn.physical for name, fn in self.spec.functions.items()}

    def _environment(self, fn: template.Function) -> dict[str, str]:
        return environment_variables(
            fn, fn.physical, self.spec.region, self.provisioned.credentials[fn.name], self.threads
        )

    def _send_failure(self, fn: template.Function, record: dict) -> None:
        """Lambda delivers the failure record with the function's execution role."""
        sqs = self.client("sqs", fn.name)
        queue = fn.on_failure.rsplit(":", 1)[-1] if fn.on_failure else ""
        sqs.send_message(QueueUrl=f"{self.endpoint}/{self.spec.account}/{queue}", MessageBody=json.dumps(record))

    def client(self, service: str, function: str | None = None):
        """A boto3 client of the local endpoint, as the admin or as a function's role."""
        creds = self.provisioned.credentials[function] if function else None
        return session(self.endpoint, creds).client(service, endpoint_url=self.endpoint)

    def invoke(self, function: str, event: Any) -> Any:
        return self.lambdas.invoke(function, event)

    def _poll(self, function: str, url: str) -> None:
        sqs = self.client("sqs")
        while not self._stop.is_set():
            try:
                msgs = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=43_200
                ).get("Messages", [])
            except Exception:
                if not self._stop.is_set():
                    log.exception("S3 notification queue of %s", function)
                    time.sleep(1)
                continue
            for m in msgs:
                event = json.loads(m["Body"])
                if "Records" not in event:  # s3:TestEvent
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                    continue

                def done(result: Any, error: FunctionError | None, m=m, event=event) -> None:
                    self._on_result(function, event, result if error is None else {"error": str(error)})
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

                self.lambdas.invoke_async(function, complete_s3_event(event, self.s3), on_done=done)

    def _schedule(self, function: str, every: float) -> None:
        while not self._stop.wait(every):
            self.lambdas.invoke_async(function, schedule_event())

    def _on_result(self, function: str, event: dict, result: Any) -> None:
        key = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
        self.say(f"[{function}] {key} -> {json.dumps(result, default=str)[:300]}")
        with self._done:
            self.events.append((function, result))
            self._done.notify_all()

    def wait_for(self, function: str, count: int, timeout: float = 900) -> list[Any]:
        """Block until `function` has finished `count` S3 events in total (each after its retries); their results."""
        return self.wait_until(function, lambda results: len(results) >= count, timeout, f"fewer than {count} events")

    def wait_until(self, function: str, done: Callable[[list[Any]], Any], timeout: float = 900, what: str = "") -> list:
        """Block until done(results of `function`'s S3 events so far) is true; those results."""

        def results() -> list[Any]:
            return [r for f, r in self.events if f == function]

        with self._done:
            if not self._done.wait_for(lambda: done(results()), timeout):
                raise TimeoutError(f"{function}: {what or 'condition not met'} in {timeout}s")
            return results()

    def upload(self, key: str, body: bytes) -> dict:
        return self.s3.put_object(Bucket=self.spec.bucket, Key=key, Body=body)

    def seed(self) -> None:
        """First start: inventory + the sales before SEED_BEFORE -> the first model -> precomputed prices."""
        from kclocal import data
        from kcprice import registry

        if registry.read_champion(self.s3, self.spec.bucket)[0] is not None:
            return
        self.say("empty registry: seeding the inventory and the first sales file")
        self.upload("inventory/houses.csv", data.inventory())
        self.upload(f"incoming/sales-before-{data.SEED_BEFORE}.csv", data.by_date(before=data.SEED_BEFORE))
        self.say("training the first model (retrain function) ...")
        (retrain,) = self.wait_for("RetrainFunction", 1)
        if "outcomes" not in retrain or retrain["outcomes"][0]["status"] != "promoted":
            raise RuntimeError(f"seeding failed: {retrain}")
        self.say(f"promoted {retrain['outcomes'][0]['version']}; precomputing the inventory ...")
        # The inventory's own upload started a precompute too, which found no model yet: wait for the written one.
        results = self.wait_until("PrecomputeFunction", lambda rs: any(r.get("status") == "written" for r in rs))
        pre = next(r for r in results if r.get("status") == "written")
        self.say(f"precomputed {pre.get('items')} prices with {pre.get('model_version')}")
