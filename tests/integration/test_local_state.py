"""The local stack keeps its data across a restart (.kclocal/state), starts empty with --fresh, and refuses to
start on a busy port instead of hanging."""

import socket
import subprocess
import sys
import time

import pytest

from kclocal.stack import LocalStack

pytestmark = pytest.mark.xdist_group("local-stack")


def _stack(state, fresh=False):
    # No seeding: these tests are about the data, not the model. Notifications on, as `make local` runs.
    return LocalStack(0, 0, say=lambda _: None, state_dir=state, fresh=fresh, save_every=3600).start()


def test_objects_versions_items_and_queues_survive_a_restart(tmp_path):
    state = tmp_path / "state"
    s = _stack(state)
    try:
        bucket, s3 = s.spec.bucket, s.s3
        s3.put_object(Bucket=bucket, Key="inventory/houses.csv", Body=b"first")
        s3.put_object(Bucket=bucket, Key="inventory/houses.csv", Body=b"second", ContentType="text/csv")
        s3.put_object(Bucket=bucket, Key="reports/gone.json", Body=b"{}")
        s3.delete_object(Bucket=bucket, Key="reports/gone.json")
        ddb = s.client("dynamodb")
        item = {"house_id": {"S": "7129300520"}, "price": {"N": "221900"}, "model_version": {"S": "v1"}}
        ddb.put_item(TableName=s.spec.table, Item=item)
        sqs = s.client("sqs")
        dlq = next(u for u in sqs.list_queues()["QueueUrls"] if "Failure" in u or "DLQ" in u.upper())
        sqs.send_message(QueueUrl=dlq, MessageBody='{"failed": "event"}')
    finally:
        s.stop()

    s = _stack(state)
    try:
        s3 = s.s3
        got = s3.get_object(Bucket=s.spec.bucket, Key="inventory/houses.csv")
        assert got["Body"].read() == b"second" and got["ContentType"] == "text/csv"
        versions = s3.list_object_versions(Bucket=s.spec.bucket, Prefix="inventory/")["Versions"]
        assert len(versions) == 2
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=s.spec.bucket, Key="reports/gone.json")
        assert (
            s.client("dynamodb").get_item(TableName=s.spec.table, Key={"house_id": {"S": "7129300520"}})["Item"] == item
        )
        sqs = s.client("sqs")
        dlq = next(u for u in sqs.list_queues()["QueueUrls"] if "Failure" in u or "DLQ" in u.upper())
        bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])]
        assert bodies == ['{"failed": "event"}']
    finally:
        s.stop()

    s = _stack(state, fresh=True)
    try:
        assert s.s3.list_object_versions(Bucket=s.spec.bucket).get("Versions", []) == []
        assert (tmp_path / "state.old").is_dir()  # the previous data is set aside, not deleted
    finally:
        s.stop()


def test_a_restored_upload_does_not_run_again(tmp_path):
    state = tmp_path / "state"
    s = _stack(state)
    try:
        s.upload("incoming/broken.csv", b"id,date,price\n1,2015-01-01,x\n")
        (first,) = s.wait_for("RetrainFunction", 1, timeout=300)
        assert first["outcomes"][0]["status"] == "rejected"
    finally:
        s.stop()
    s = _stack(state)
    try:
        time.sleep(8)  # an S3 notification would have reached the function by now
        assert [e for e in s.events if e[0] == "RetrainFunction"] == []
    finally:
        s.stop()


@pytest.mark.parametrize("which", ["--aws-port", "--api-port"])
def test_a_busy_port_is_said_and_the_command_exits(tmp_path, which):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--api-port" if which == "--aws-port" else "--aws-port"
        cmd = [sys.executable, "-m", "kclocal.cli", "up", which, str(port), other, "0"]
        out = subprocess.run(
            [*cmd, "--state", str(tmp_path / "s"), "--no-seed"], capture_output=True, text=True, timeout=120
        )
    assert out.returncode == 1
    assert "cannot start" in out.stderr and "AWS_PORT=" in out.stderr
    assert "Traceback" not in out.stderr
