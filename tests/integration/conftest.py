"""The local AWS endpoint and the functions, as the local stack runs them (kclocal.stack): IAM enforced per
function, each function in its own execution environments with only its template environment. One stack per
session, emptied and provisioned again for every test. S3 notifications are not delivered here: tests invoke
the functions themselves (tests/e2e drives the notifications).

Every test ends by checking each AWS call the functions made during it against their template policy."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from kclocal.events import s3_event
from kclocal.stack import LocalStack
from kclocal.state import State
from tests.policy import CallJournal

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    stack = LocalStack(
        say=lambda _: None, retry_delays=(0.5, 1.0), log_dir=folder, journal=folder / "calls.jsonl", notifications=False
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def seed_snapshots(tmp_path_factory) -> dict:
    """(key, sha256 of the body) -> (a saved local state, the retrain outcome), filled by `aws.seed`."""
    return {"folder": tmp_path_factory.mktemp("seeds")}


@pytest.fixture
def aws(local_stack, seed_snapshots, request):
    stack = local_stack
    # Retrain and precompute keep no state between invocations but their settings and clients (names do not
    # change): their warm environments are kept, as Lambda keeps them, saving a 3-4 s cold start (scikit-learn,
    # matplotlib) per test. Predict's champion cache is state: it starts cold in every test.
    stack.reset(keep_warm=("RetrainFunction", "PrecomputeFunction"))
    journal = CallJournal(stack.journal, stack.spec)
    start = journal.mark()

    def upload(key: str, body: bytes) -> dict:
        put = stack.upload(key, body)
        return s3_event(stack.spec.bucket, key, put["ETag"], len(body), version_id=put.get("VersionId"))

    def upload_event(key: str) -> dict:
        """S3's event for an object already in the bucket (what its upload notified)."""
        head = stack.s3.head_object(Bucket=stack.spec.bucket, Key=key)
        return s3_event(stack.spec.bucket, key, head["ETag"], head["ContentLength"], version_id=head.get("VersionId"))

    def seed(key: str, body: bytes) -> dict:
        """The empty stack after RetrainFunction has trained on `body` uploaded as `key`: its outcome. The
        function really trains the first time a test process asks for a given upload; after that the bucket
        and tables it left are restored from a snapshot (a cold start and a fit saved: ~10 s per test)."""
        digest = f"{key}:{hashlib.sha256(body).hexdigest()}"
        if digest in seed_snapshots:
            folder, out = seed_snapshots[digest]
            State(folder).restore(stack)
        else:
            out = stack.invoke("RetrainFunction", upload(key, body))
            folder = seed_snapshots["folder"] / hashlib.sha256(digest.encode()).hexdigest()[:16]
            State(folder).save(stack, force=True)
            seed_snapshots[digest] = (folder, out)
        return out["outcomes"][0]

    yield SimpleNamespace(
        stack=stack,
        spec=stack.spec,
        s3=stack.client("s3"),
        ddb=stack.client("dynamodb"),
        bucket=stack.spec.bucket,
        table=stack.spec.table,
        upload=upload,
        upload_event=upload_event,
        seed=seed,
        invoke=stack.invoke,
        client=stack.client,
        endpoint=stack.endpoint,
        deploy=stack.deploy,
        settings=lambda cls, function: settings_of(stack, cls, function),
    )
    if "denied_calls_expected" not in request.keywords:
        journal.assert_allowed(since=start)


def settings_of(stack, cls, function: str):
    """A function's settings model, read from that function's environment (as its cold start would)."""
    with mock.patch.dict(os.environ, stack.spec.functions[function].env, clear=True):
        return cls()


def count_items(aws) -> int:
    """Items in the predictions table, by a full scan."""
    return sum(p["Count"] for p in aws.ddb.get_paginator("scan").paginate(TableName=aws.table, Select="COUNT"))


@contextlib.contextmanager
def operator_env(stack):
    """What `eval "$(kcprice-local env)"` gives an operator's shell: the endpoint, the admin, the stack's names."""
    from kclocal.cli import env_values

    values = env_values(stack.endpoint, stack.bridge.url)
    with mock.patch.dict(os.environ, values):
        yield values


def run_cli(argv: list[str]):
    """`kcprice ARGV` in this process: its JSON output (SystemExit on a non-zero exit)."""
    import io
    from contextlib import redirect_stdout

    from kcprice.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    if code:
        raise SystemExit(f"kcprice {' '.join(argv)} exited {code}: {out.getvalue()[-2000:]}")
    return json.loads(out.getvalue())


def log_lines(path: Path, start: int, enough, timeout: float = 30) -> list[dict]:
    """A function's JSON log lines written after `start`. Its output reaches the file through a pump thread,
    possibly after the invocation has answered: wait (bounded) until `enough(lines)`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            f.seek(start)
            lines = [json.loads(line) for line in f.read().splitlines() if line.startswith("{")]
        if enough(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
