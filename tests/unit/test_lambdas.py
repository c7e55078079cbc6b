"""The local Lambda emulator against tiny handlers: what it must refuse or retry the way Lambda does."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from kclocal.lambdas import FunctionError, Lambdas, TooManyRequests, environment_variables
from kclocal.template import Function

HANDLERS = """
import json, os, time

def echo(event, context):
    return {"event": event, "remaining_ms": context.get_remaining_time_in_millis(), "pid": os.getpid(),
            "request_id": context.aws_request_id, "env": sorted(k for k in os.environ if k.startswith("MY_"))}

def sleep(event, context):
    time.sleep(event["seconds"])
    return {"slept": event["seconds"], "pid": os.getpid()}

def fail(event, context):
    with open(event["log"], "a") as f:
        f.write(f"{time.monotonic()} {context.aws_request_id}\\n")
    raise RuntimeError("boom")

def crash(event, context):
    os._exit(3)

def unserialisable(event, context):
    return {"when": object()}
"""


def function(folder: Path, handler: str, **kw) -> Function:
    (folder / "handlers.py").write_text(HANDLERS)
    fields = {
        "timeout": 30.0,
        "memory_mb": 128,
        "reserved_concurrency": None,
        "role": "r",
        "policies": [],
        "env": {"MY_VAR": "1"},
        "layers": [],
    }
    fields.update(kw)
    return Function(name=handler, handler=f"handlers.{handler}", code_dir=folder, **fields)


@pytest.fixture
def make(tmp_path):
    made: list[Lambdas] = []
    failures: list[tuple[str, dict]] = []

    def build(*fns: Function, **kw) -> Lambdas:
        lam = Lambdas(
            {f.name: f for f in fns},
            lambda fn: environment_variables(fn, fn.name, "us-east-1", {"AWS_ACCESS_KEY_ID": "x"}, 1),
            lambda fn, record: failures.append((fn.name, record)),
            log_dir=tmp_path,
            **kw,
        ).start()
        made.append(lam)
        return lam

    build.failures = failures  # type: ignore[attr-defined]
    yield build
    for lam in made:
        lam.stop()


def test_a_function_sees_only_its_own_environment(tmp_path, make):
    os.environ["MY_LEAK"] = "from the test process"
    try:
        lam = make(function(tmp_path, "echo"))
        out = lam.invoke("echo", {"a": 1})
    finally:
        del os.environ["MY_LEAK"]
    assert out["event"] == {"a": 1} and out["env"] == ["MY_VAR"]
    assert 25_000 < out["remaining_ms"] <= 30_000  # the context counts down from the function's timeout


def test_environments_are_reused_while_warm(tmp_path, make):
    lam = make(function(tmp_path, "echo"))
    pids = {lam.invoke("echo", {})["pid"] for _ in range(5)}
    assert len(pids) == 1


def test_a_timeout_kills_the_environment_and_fails_the_invocation(tmp_path, make):
    lam = make(function(tmp_path, "sleep", timeout=1.0))
    t0 = time.monotonic()
    with pytest.raises(FunctionError) as e:
        lam.invoke("sleep", {"seconds": 30})
    assert e.value.error_type == "Sandbox.Timedout" and "1.00 seconds" in e.value.error_message
    assert time.monotonic() - t0 < 20
    assert lam.invoke("sleep", {"seconds": 0})["slept"] == 0  # a new environment takes the next one


def test_a_process_that_dies_mid_flight_fails_its_invocation(tmp_path, make):
    lam = make(function(tmp_path, "crash"))
    with pytest.raises(FunctionError) as e:
        lam.invoke("crash", {})
    assert e.value.error_type == "Runtime.ExitError" and "exit status 3" in e.value.error_message


def test_a_process_killed_from_outside_fails_its_invocation(tmp_path, make):
    lam = make(function(tmp_path, "sleep"))
    result: dict = {}

    def call():
        try:
            lam.invoke("sleep", {"seconds": 20})
        except FunctionError as e:
            result["error"] = e

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 30
    while not lam.environments("sleep") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(lam.environments("sleep")[0].proc.pid, signal.SIGKILL)
    t.join(30)
    assert result["error"].error_type == "Runtime.ExitError" and "signal: killed" in result["error"].error_message


def test_a_handler_error_and_an_unserialisable_answer_are_function_errors(tmp_path, make):
    lam = make(function(tmp_path, "fail"), function(tmp_path, "unserialisable"))
    with pytest.raises(FunctionError) as e:
        lam.invoke("fail", {"log": str(tmp_path / "calls.log")})
    assert (e.value.error_type, e.value.error_message) == ("RuntimeError", "boom")
    assert "Traceback" in (tmp_path / "fail.log").read_text()  # the runtime logs the traceback
    with pytest.raises(FunctionError) as e:
        lam.invoke("unserialisable", {})
    assert e.value.error_type == "Runtime.MarshalError"


def test_reserved_concurrency_throttles_synchronous_calls(tmp_path, make):
    lam = make(function(tmp_path, "sleep", reserved_concurrency=1))
    t = threading.Thread(target=lambda: lam.invoke("sleep", {"seconds": 3}))
    t.start()
    time.sleep(1.5)
    with pytest.raises(TooManyRequests):
        lam.invoke("sleep", {"seconds": 0})
    t.join()


def test_async_events_wait_for_the_one_environment_in_order(tmp_path, make):
    lam = make(function(tmp_path, "sleep", reserved_concurrency=1))
    done: list[tuple[float, dict]] = []
    for _ in range(3):
        lam.invoke_async("sleep", {"seconds": 0.5}, on_done=lambda r, e: done.append((time.monotonic(), r)))
    deadline = time.monotonic() + 60
    while len(done) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["slept"] for _, r in done] == [0.5, 0.5, 0.5]
    assert len({r["pid"] for _, r in done}) == 1  # one environment, never two at once
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(done)]
    assert all(g >= 0.45 for g in gaps), gaps


def test_async_errors_are_retried_with_delays_then_reported(tmp_path, make):
    lam = make(
        function(tmp_path, "fail", max_retries=2, on_failure="arn:aws:sqs:us-east-1:1:q"), retry_delays=(1.0, 2.0)
    )
    calls, done = tmp_path / "calls.log", threading.Event()
    outcome: dict = {}
    rid = lam.invoke_async("fail", {"log": str(calls)}, on_done=lambda r, e: (outcome.update(e=e), done.set()))
    assert done.wait(60)
    attempts = [line.split() for line in calls.read_text().splitlines()]
    assert [a[1] for a in attempts] == [rid, rid, rid]  # three attempts, one request id
    waits = [float(b[0]) - float(a[0]) for a, b in itertools.pairwise(attempts)]
    assert 0.9 <= waits[0] < 1.9 and 1.9 <= waits[1] < 3.5, waits
    assert outcome["e"].error_type == "RuntimeError"
    ((name, record),) = make.failures
    assert name == "fail" and record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3 and record["requestContext"]["requestId"] == rid
    assert record["requestPayload"] == {"log": str(calls)} and record["responsePayload"]["errorMessage"] == "boom"
