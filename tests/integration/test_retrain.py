"""RetrainFunction against the local S3: validate, train, gate, promote, record lineage, report."""

import json

import pytest

from kclocal.data import by_date, stride
from kcprice import registry
from tests.integration.conftest import load_event, log_lines

SEED = by_date(before="20150101", step=2)  # ~7,000 sales of 2014
NEWER = by_date(since="20150101")  # ~7,000 sales of 2015


def get_json(aws, key):
    return json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())


def retrain(aws, key, body):
    return aws.invoke("RetrainFunction", aws.upload(key, body))["outcomes"][0]


@pytest.fixture
def seeded(aws):
    out = aws.seed("incoming/seed.csv", SEED)
    assert out["status"] == "promoted", out
    return out


def test_the_shared_event_drives_the_handler(aws):
    event = load_event("retrain_upload.json")
    key = event["Records"][0]["s3"]["object"]["key"]
    etag = aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=SEED)["ETag"]
    event["Records"][0]["s3"]["object"]["eTag"] = etag.strip('"')
    (out,) = aws.invoke("RetrainFunction", event)["outcomes"]
    assert out["status"] == "promoted" and out["key"] == key


def test_first_upload_is_promoted_with_lineage(aws, seeded):
    pointer, _ = registry.read_champion(aws.s3, aws.bucket)
    assert pointer["version"] == seeded["version"]
    meta = get_json(aws, f"models/{pointer['version']}/model.json")
    lineage = meta["lineage"]
    assert lineage["parent_version"] is None and lineage["source_key"] == "incoming/seed.csv"
    assert lineage["dataset_rows"] == SEED.count(b"\n") - 1
    dataset = aws.s3.get_object(Bucket=aws.bucket, Key=lineage["dataset_key"])["Body"].read()
    import hashlib

    assert hashlib.sha256(dataset).hexdigest() == lineage["dataset_sha256"] == meta["data_sha256"]
    assert meta["holdout"]["first_model"] is True and meta["holdout"]["challenger"]["mape"] < 20
    report = get_json(aws, "reports/incoming/seed.csv.json")
    assert report["decision"] == "promoted" and report["validation"]["ok"]
    page = aws.s3.get_object(Bucket=aws.bucket, Key=f"models/{pointer['version']}/card.html")["Body"].read()
    assert page.startswith(b"<!doctype html>") and pointer["version"].encode() in page


def test_bad_upload_is_rejected_and_champion_untouched(aws, seeded):
    _, etag = registry.read_champion(aws.s3, aws.bucket)
    bad = SEED.replace(b",98178,", b",12345,", 3)
    out = retrain(aws, "incoming/bad.csv", bad)
    assert out["status"] == "rejected"
    report = get_json(aws, "rejected/incoming/bad.csv.json")
    assert report["validation"]["problems"][0]["column"] == "zipcode"
    assert registry.read_champion(aws.s3, aws.bucket)[1] == etag


def test_newer_sales_are_merged_and_judged_on_the_champions_holdout(aws, seeded):
    out = retrain(aws, "incoming/2015.csv", NEWER)
    report = get_json(aws, "reports/incoming/2015.csv.json")
    gate = report["gate"]
    assert report["champion_version"] == seeded["version"]
    assert gate["challenger"]["n"] == gate["champion"]["n"]  # the same reference holdout for both
    assert report["lineage"]["dataset_rows"] == SEED.count(b"\n") + NEWER.count(b"\n") - 2
    # Newer sales are newer by construction: the sale date is reported as a span, not as drift.
    assert "day" not in report["drift"]["psi"] and "day" not in report["drift"]["drifted"]
    assert report["drift"]["sale_dates"] == ["2015-01-02", "2015-05-27"]  # the first and last 2015 sales
    assert report["ledger"]["new"] == NEWER.count(b"\n") - 1
    better = gate["challenger"]["mape"] < gate["champion"]["mape"]
    assert out["status"] == ("promoted" if better else "refused")
    pointer, _ = registry.read_champion(aws.s3, aws.bucket)
    assert pointer["version"] == (out["version"] if better else seeded["version"])


def test_uploads_that_end_without_a_promotion_are_counted_in_a_row(aws, seeded):
    """The RefusalsInARow alarm's metric: rejected/refused/quarantined add one, a promotion resets it, a duplicate
    delivery of the same upload counts nothing."""
    assert seeded["not_promoted_in_a_row"] == 0
    bad = SEED.replace(b",98178,", b",12345,", 3)
    log = aws.stack.log_dir / "RetrainFunction.log"
    offset = log.stat().st_size
    counts = [retrain(aws, f"incoming/bad-{i}.csv", bad)["not_promoted_in_a_row"] for i in range(2)]
    again = aws.invoke("RetrainFunction", aws.upload("incoming/bad-1.csv", bad))["outcomes"][0]  # a new version
    event = aws.upload("incoming/bad-2.csv", bad)
    first, replayed = (aws.invoke("RetrainFunction", event)["outcomes"][0] for _ in range(2))
    assert counts == [1, 2] and again["not_promoted_in_a_row"] == 3 and first["not_promoted_in_a_row"] == 4
    assert replayed["status"] == "duplicate" and replayed["not_promoted_in_a_row"] == 4
    lines = log_lines(log, offset, lambda lines: sum("_aws" in line for line in lines) >= 5)
    emf = [line for line in lines if "_aws" in line]
    assert [blob.get("UploadsNotPromotedInARow") for blob in emf] == [[1.0], [2.0], [3.0], [4.0], None]


def test_the_same_data_again_is_a_duplicate_and_trains_nothing(aws, seeded):
    _, etag = registry.read_champion(aws.s3, aws.bucket)
    out = retrain(aws, "incoming/again.csv", SEED)  # another key, the same sales
    assert out["status"] == "duplicate" and out["version"] is None
    report = get_json(aws, "reports/incoming/again.csv.json")
    assert "already in the dataset ledger" in report["reason"]
    assert registry.read_champion(aws.s3, aws.bucket)[1] == etag


def test_a_duplicate_delivery_trains_once(aws):
    event = aws.upload("incoming/once.csv", stride(3))
    first = aws.invoke("RetrainFunction", event)["outcomes"][0]
    second = aws.invoke("RetrainFunction", event)["outcomes"][0]
    assert first["status"] == "promoted"
    assert second == {**first, "status": "duplicate", "first_status": "promoted"}  # what the first delivery did
    versions = {
        k["Key"].split("/")[1] for k in aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="models/v")["Contents"]
    }
    assert versions == {first["version"]}  # trained once


def test_too_few_training_rows_is_accepted_but_not_trained(aws):
    out = retrain(aws, "incoming/tiny.csv", stride(200))
    assert out["status"] == "accepted"  # valid sales: kept in the ledger for the next upload to train on
    assert "training rows" in get_json(aws, "reports/incoming/tiny.csv.json")["reason"]
    assert registry.read_champion(aws.s3, aws.bucket) == (None, None)


def test_a_required_margin_refuses_a_challenger_that_is_only_better(aws, seeded):
    aws.deploy({"MinMapeImprovement": "5"})  # the template parameter, through a new deployment
    _, etag = registry.read_champion(aws.s3, aws.bucket)
    out = retrain(aws, "incoming/2014.csv", by_date(before="20150101"))  # twice the data: ~0.5 points better
    gate = get_json(aws, "reports/incoming/2014.csv.json")["gate"]
    assert out["status"] == "refused" and gate["min_improvement"] == 5
    assert gate["challenger"]["mape"] < gate["champion"]["mape"]
    pointer, now = registry.read_champion(aws.s3, aws.bucket)
    assert now == etag
    # Refused, yet published (not champion): the operator who judges it better promotes it by hand.
    from kcprice import ops

    listed = {v["version"]: v for v in ops.list_versions(aws.s3, aws.bucket)}
    assert listed[out["version"]]["gate"] == "refused" and not listed[out["version"]]["champion"]
    assert listed[pointer["version"]]["gate"] == "promoted" and listed[pointer["version"]]["champion"]
    assert "card.html" in registry.version_metadata(aws.s3, aws.bucket, out["version"])["files"]
    done = ops.promote_version(aws.s3, aws.bucket, out["version"], "better by 0.5 points", "arn:aws:iam::1:user/op")
    assert done["version"] == out["version"] and done["previous_version"] == pointer["version"]
    assert registry.read_champion(aws.s3, aws.bucket)[0]["version"] == out["version"]


def test_a_champion_from_before_a_feature_change_is_replaced(aws, seeded):
    # After deploying code that computes other features, the champion cannot be served or judged any more: the
    # next upload is promoted without a comparison, and the report says why.
    import io

    import numpy as np

    from kcprice.predictor import artifact_bytes, sha256_hex

    pointer, etag = registry.read_champion(aws.s3, aws.bucket)
    old = aws.s3.get_object(Bucket=aws.bucket, Key=pointer["artifact_key"])["Body"].read()
    with np.load(io.BytesIO(old), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta.update(version=meta["version"] + "-old", features=meta["features"][:-8])
    blob = artifact_bytes(arrays, meta)
    meta["artifact_sha256"] = sha256_hex(blob)
    registry.publish_version(aws.s3, aws.bucket, blob, meta)
    registry.promote(aws.s3, aws.bucket, meta, etag, {})
    out = retrain(aws, "incoming/2015.csv", NEWER)
    gate = get_json(aws, "reports/incoming/2015.csv.json")["gate"]
    assert out["status"] == "promoted", out
    assert gate["champion"] is None and gate["first_model"] is False
    assert "built for" in gate["champion_incompatible"] and meta["version"] in gate["champion_incompatible"]
    assert registry.read_champion(aws.s3, aws.bucket)[0]["version"] == out["version"]
