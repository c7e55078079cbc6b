"""Operator commands against the local endpoint."""

import pytest

from kclocal.template import ROOT
from kcprice.errors import ArtifactIntegrityError, NoModelError
from kcprice.ops import delete_bucket, empty_bucket


def test_teardown_empties_every_version_of_the_versioned_bucket(aws):
    s3 = aws.s3
    for i in range(3):  # three versions of one key, a delete marker, and 1,200 objects (more than one batch)
        s3.put_object(Bucket=aws.bucket, Key="models/champion.json", Body=str(i).encode())
    s3.delete_object(Bucket=aws.bucket, Key="models/champion.json")
    for i in range(1200):
        s3.put_object(Bucket=aws.bucket, Key=f"reports/{i}.json", Body=b"{}")
    versions = s3.list_object_versions(Bucket=aws.bucket, Prefix="models/")
    assert len(versions["Versions"]) == 3 and len(versions["DeleteMarkers"]) == 1
    assert empty_bucket(s3, aws.bucket, say=lambda _: None) == 1204
    left = s3.list_object_versions(Bucket=aws.bucket)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    delete_bucket(s3, aws.bucket, say=lambda _: None)
    assert aws.bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def _publish(aws, model, version: str) -> dict:
    from kcprice import registry

    meta = {**model.meta, "version": version, "created_at": f"2026-01-0{version[-1]}T00:00:00+00:00"}
    registry.publish_version(aws.s3, aws.bucket, model.artifact, meta)
    return meta


def test_models_by_hand(aws, small_model):
    from kcprice import ops, registry

    with pytest.raises(NoModelError):
        ops.rollback(aws.s3, aws.bucket, "why", "me")
    first, second = _publish(aws, small_model, "v1"), _publish(aws, small_model, "v2")
    aws.s3.put_object(Bucket=aws.bucket, Key="models/v3/model.npz", Body=small_model.artifact)  # no model.json yet
    ops.promote_version(aws.s3, aws.bucket, "v1", "first", "me")
    with pytest.raises(ValueError, match="nothing to roll back to"):
        ops.rollback(aws.s3, aws.bucket, "why", "me")  # the first champion has no predecessor
    with pytest.raises(ValueError, match="champion already"):
        ops.promote_version(aws.s3, aws.bucket, "v1", "again", "me")
    ops.promote_version(aws.s3, aws.bucket, "v2", "forward", "me")
    listed = ops.list_versions(aws.s3, aws.bucket)
    assert [(v["version"], v["champion"]) for v in listed] == [("v1", False), ("v2", True)]  # v3 is not whole
    done = ops.rollback(aws.s3, aws.bucket, "bad prices", "arn:aws:iam::123456789012:user/op")
    assert done == {
        "version": "v1",
        "previous_version": "v2",
        "reason": {"by": "arn:aws:iam::123456789012:user/op", "why": "bad prices", "kind": "manual"},
    }
    assert registry.read_champion(aws.s3, aws.bucket)[0]["version"] == first["version"]
    history = ops.champion_history(aws.s3, aws.bucket)
    assert [(h["version"], h["current"]) for h in history] == [("v1", True), ("v2", False), ("v1", False)]
    assert second["version"] == "v2"


def test_a_tampered_version_is_never_promoted(aws, small_model):
    from kcprice import ops, registry

    _publish(aws, small_model, "v1")
    _publish(aws, small_model, "v2")
    ops.promote_version(aws.s3, aws.bucket, "v1", "first", "me")
    aws.s3.put_object(Bucket=aws.bucket, Key="models/v2/model.npz", Body=small_model.artifact[:-10] + b"0" * 10)
    with pytest.raises(ArtifactIntegrityError):
        ops.promote_version(aws.s3, aws.bucket, "v2", "forward", "me")
    assert registry.read_champion(aws.s3, aws.bucket)[0]["version"] == "v1"


def test_the_operator_commands_drive_the_local_stack(aws, small_model):
    """`eval "$(kcprice-local env)"`, then the commands an operator runs against a deployed stack (--stack)."""
    import time

    from kclocal.data import inventory, stride
    from kcprice import ops, registry
    from tests.integration.conftest import operator_env, run_cli

    aws.invoke("RetrainFunction", aws.upload("incoming/bad.csv", b"bedrooms,price\n3,abc\n"))
    aws.upload("incoming/later.csv", stride(200))  # not run yet (the local test stack delivers no notifications)
    with operator_env(aws.stack):
        listed = {u["key"]: u for u in run_cli(["uploads", "list"])}
        assert listed["incoming/bad.csv"]["outcome"] == "rejected"
        assert listed["incoming/bad.csv"]["report"] == "rejected/incoming/bad.csv.json"
        assert listed["incoming/later.csv"]["outcome"] == "pending"
        (full,) = [u for u in run_cli(["uploads", "list", "--full"]) if u["key"] == "incoming/bad.csv"]
        assert full["report_document"]["validation"]["ok"] is False
        retried = run_cli(["uploads", "retry", "incoming/later.csv"])
        assert retried["status"] == 202  # queued, as S3's notification would
        deadline = time.monotonic() + 120

        def later() -> str:  # (S3 times uploads to the second: both may be "newest")
            return {u["key"]: u for u in run_cli(["uploads", "list"])}["incoming/later.csv"]["outcome"]

        while (outcome := later()) == "pending" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert outcome == "accepted"  # valid sales, too few to train on: kept for the next upload

        with pytest.raises(SystemExit, match="no_model"):  # nothing to price with yet: a failed run, said so
            run_cli(["precompute", "run", "--wait"])
        registry.publish_version(aws.s3, aws.bucket, small_model.artifact, small_model.meta)
        run_cli(["models", "promote", small_model.meta["version"], "--reason", "first"])
        (listed_model,) = run_cli(["models", "list"])
        assert listed_model["champion"] is True and listed_model["source_key"] == "tests"
        aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=inventory(step=64))
        done = run_cli(["precompute", "run", "--wait"])
        assert done["status"] == "written" and done["items"] > 300
        assert done["model_version"] == small_model.meta["version"]

        smoke = run_cli(["smoke", "--events", str(ROOT / "events")])  # the API's URL from KCPRICE_API_URL
        assert smoke["problems"] == [] and smoke["statuses"]["predict_post"] == 200
        assert smoke["statuses"]["predict_house_price"] in (200, 404)
    assert ops.list_versions(aws.s3, aws.bucket)[0]["version"] == small_model.meta["version"]
