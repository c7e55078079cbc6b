"""A retrain that dies where no `except` sees it (its process killed, as by the out-of-memory killer or a
timeout) must never read as a success: its S3 event is retried by Lambda and, while the dead run's claim is still
"in progress" (until that invocation's deadline), each retry fails and the event ends in the failure queue."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

from kclocal.data import by_date
from kcprice import registry
from tests.integration.conftest import operator_env, run_cli

SEED = by_date(before="20150101", step=2)


def wait(predicate, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise TimeoutError


def test_a_retrain_killed_mid_flight_goes_to_the_failure_queue_not_to_success(aws):
    stack = aws.stack
    event = aws.upload("incoming/killed.csv", SEED)
    log = stack.log_dir / "RetrainFunction.log"
    start = log.stat().st_size if log.exists() else 0
    done, outcome = threading.Event(), {}
    request_id = stack.lambdas.invoke_async(
        "RetrainFunction", event, on_done=lambda result, error: (outcome.update(result=result, error=error), done.set())
    )

    def training() -> bool:  # the run has claimed the upload and is fitting models
        return log.exists() and "training on" in log.read_text()[start:]

    wait(training, 300)
    (env,) = stack.lambdas.environments("RetrainFunction")
    os.kill(env.proc.pid, signal.SIGKILL)  # no except block, no finally: the process is simply gone
    assert done.wait(300)

    assert outcome["result"] is None  # never answered as a success
    assert outcome["error"].error_type == "IdempotencyAlreadyInProgressError"  # the retries found it in progress
    attempts = [i for i in stack.lambdas.invocations if i["request_id"] == request_id]
    assert [a["attempt"] for a in attempts] == [1, 2, 3] and not any(a["ok"] for a in attempts)

    queue = stack.client("sqs").get_queue_url(QueueName=stack.spec.queues["FailureQueue"])["QueueUrl"]
    sqs = stack.client("sqs")
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "incoming/killed.csv"
    assert registry.read_champion(aws.s3, aws.bucket) == (None, None)  # and no model came of it

    # The claim of the killed run lasts until its deadline (the function's 900 s timeout): a redrive after that
    # trains. Here the deadline is moved instead of waiting 15 minutes.
    table = stack.spec.tables["IdempotencyTable"].name
    (item,) = aws.ddb.scan(TableName=table)["Items"]
    assert item["status"]["S"] == "INPROGRESS"
    remaining_s = int(item["in_progress_expiration"]["N"]) / 1000 - time.time()
    assert 700 < remaining_s <= 900  # the deadline of the killed invocation, not a fixed claim timeout
    aws.ddb.update_item(
        TableName=table,
        Key={"id": item["id"]},
        UpdateExpression="SET in_progress_expiration = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time() * 1000) - 1)}},
    )

    # What an operator sees and does (the same commands drive a deployed stack with --stack)
    queue_url = stack.spec.queue_url("FailureQueue", stack.endpoint)
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    with operator_env(stack):
        (listed,) = run_cli(["failures", "list"])
        assert listed["function"] == stack.spec.functions["RetrainFunction"].physical
        assert listed["upload_keys"] == ["incoming/killed.csv"] and listed["attempts"] == 3
        assert listed["error_type"] == "IdempotencyAlreadyInProgressError" and listed["condition"] == "RetriesExhausted"
        (upload,) = run_cli(["uploads", "list"])
        assert upload["key"] == "incoming/killed.csv" and upload["outcome"] == "failed"
        (redriven,) = run_cli(["failures", "redrive"])
        assert redriven["upload_keys"] == ["incoming/killed.csv"]
        assert run_cli(["failures", "list"]) == []  # deleted once the function took the event
        wait(lambda: run_cli(["uploads", "list"])[0]["outcome"] == "promoted", 300, every=1)
    assert registry.read_champion(aws.s3, aws.bucket)[0] is not None
