"""Data integrity through the real functions: nothing non-finite gets in, one bad file can never stop continuous
training, accepted data is kept whatever the gate decides, stored data is trusted only after validation."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kclocal.data import by_date, inventory
from kclocal.lambdas import FunctionError
from kcprice import layout, registry
from kcprice.predictor import artifact_bytes, sha256_hex

SEED = by_date(before="20150101", step=2)
NEWER = by_date(since="20150101")


def strict_json(aws, key: str) -> dict:
    """A report as a strict parser reads it: a bare NaN or Infinity token fails."""
    text = aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read().decode()

    def refuse(token):
        raise AssertionError(f"{key} holds a non-JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def retrain(aws, key: str, body: bytes) -> dict:
    return aws.invoke("RetrainFunction", aws.upload(key, body))["outcomes"][0]


def lines(data: bytes) -> list[list[str]]:
    return [r.split(",") for r in data.decode().splitlines()]


def with_cell(data: bytes, column: str, value: str, rows: range) -> bytes:
    t = lines(data)
    i = t[0].index(column)
    for r in rows:
        t[r][i] = value
    return ("\n".join(",".join(r) for r in t) + "\n").encode()


@pytest.fixture
def seeded(aws):
    out = aws.seed("incoming/seed.csv", SEED)
    assert out["status"] == "promoted", out
    return out


@pytest.mark.parametrize(
    ("column", "token"),
    [("sqft_living", "inf"), ("lat", "NaN"), ("price", "nan"), ("bathrooms", "1e999"), ("zipcode", "-inf")],
)
def test_non_finite_values_are_rejected_with_a_report_naming_the_column(aws, seeded, column, token):
    _, etag = registry.read_champion(aws.s3, aws.bucket)
    out = retrain(aws, "incoming/bad.csv", with_cell(NEWER, column, token, range(40, 43)))
    assert out["status"] == "rejected"
    report = strict_json(aws, "rejected/incoming/bad.csv.json")
    (problem,) = report["validation"]["problems"]
    assert (problem["code"], problem["column"], problem["count"]) == ("non_finite", column, 3)
    assert [e["row"] for e in problem["examples"]] == [41, 42, 43]
    assert registry.read_champion(aws.s3, aws.bucket)[1] == etag  # nothing moved
    ledger, _ = registry_ledger(aws)
    assert [u["key"] for u in ledger["uploads"]] == ["incoming/seed.csv"]  # and nothing entered the data


def registry_ledger(aws):
    from kcprice.pipeline import read_ledger

    return read_ledger(aws.s3, aws.bucket)


def test_refused_models_keep_their_data_and_the_next_challenger_learns_from_it(aws, seeded):
    aws.deploy({"MinMapeImprovement": "50"})  # no challenger can clear this margin
    refused = retrain(aws, "incoming/2015-h1.csv", by_date(since="20150101", before="20150301"))
    assert refused["status"] == "refused"
    ledger, _ = registry_ledger(aws)
    assert [u["key"] for u in ledger["uploads"]] == ["incoming/seed.csv", "incoming/2015-h1.csv"]
    aws.deploy({"MinMapeImprovement": "0"})
    out = retrain(aws, "incoming/2015-h2.csv", by_date(since="20150301"))
    report = strict_json(aws, layout.upload_report("incoming/2015-h2.csv"))
    lineage = report["lineage"]
    assert lineage["uploads"] == ["incoming/seed.csv", "incoming/2015-h1.csv", "incoming/2015-h2.csv"]
    assert lineage["dataset_rows"] == SEED.count(b"\n") - 1 + NEWER.count(b"\n") - 1  # the refused sales too
    assert out["status"] in ("promoted", "refused")


def test_a_corrected_sale_replaces_its_earlier_version(aws, seeded):
    t = lines(SEED)
    price = t[0].index("price")
    t[5][price] = str(int(float(t[5][price]) * 1.02))  # one sale corrected after it was first recorded
    out = retrain(aws, "incoming/corrections.csv", ("\n".join(",".join(r) for r in [t[0], *t[1:300]]) + "\n").encode())
    assert out["status"] in ("promoted", "refused")
    report = strict_json(aws, layout.upload_report("incoming/corrections.csv"))
    assert (report["ledger"]["new"], report["ledger"]["corrected"]) == (0, 1)
    assert report["ledger"]["rows"] == SEED.count(b"\n") - 1  # replaced, not added


def test_a_label_poisoned_upload_is_quarantined_and_training_goes_on(aws, seeded):
    t = lines(NEWER)
    price = t[0].index("price")
    prices = [r[price] for r in t[1:]]
    np.random.default_rng(3).shuffle(prices)
    for r, p in zip(t[1:], prices, strict=True):
        r[price] = p
    out = retrain(aws, "incoming/poisoned.csv", ("\n".join(",".join(r) for r in t) + "\n").encode())
    assert out["status"] == "quarantined"
    check = strict_json(aws, "rejected/incoming/poisoned.csv.json")["plausibility"]
    assert check["upload_median_ape"] > check["limit"] and not check["plausible"]
    ledger, _ = registry_ledger(aws)
    assert [u["key"] for u in ledger["uploads"]] == ["incoming/seed.csv"]  # kept out of the data
    clean = retrain(aws, "incoming/2015.csv", NEWER)  # the real sales of the same houses train as usual
    assert clean["status"] in ("promoted", "refused")
    assert strict_json(aws, layout.upload_report("incoming/2015.csv"))["ledger"]["new"] == len(prices)


def test_a_champion_that_cannot_be_used_does_not_freeze_the_gate(aws, seeded):
    """A champion whose artifact holds NaN (a bad write, a hand edit) cannot be served or judged: the next upload
    is promoted, and the report says why (strict JSON)."""
    pointer, etag = registry.read_champion(aws.s3, aws.bucket)
    blob = aws.s3.get_object(Bucket=aws.bucket, Key=pointer["artifact_key"])["Body"].read()
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    arrays["leaf"][3, 5] = np.nan
    meta["version"] += "-nan"
    blob = artifact_bytes(arrays, meta)
    meta["artifact_sha256"] = sha256_hex(blob)
    registry.publish_version(aws.s3, aws.bucket, blob, meta)
    registry.promote(aws.s3, aws.bucket, meta, etag, {})
    out = retrain(aws, "incoming/2015.csv", NEWER)
    assert out["status"] == "promoted"
    gate = strict_json(aws, layout.upload_report("incoming/2015.csv"))["gate"]
    assert gate["champion"] is None and "non-finite" in gate["why"]


def test_a_corrupted_stored_dataset_is_a_named_error_and_the_documented_repair_works(aws, seeded):
    ledger, _ = registry_ledger(aws)
    key = ledger["dataset_key"]
    good = aws.s3.get_object(Bucket=aws.bucket, Key=key)
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=with_cell(good["Body"].read(), "lat", "nan", range(9, 10)))
    event = aws.upload("incoming/2015.csv", NEWER)
    with pytest.raises(FunctionError) as e:
        aws.invoke("RetrainFunction", event)
    assert e.value.error_type == "StoredDataError" and key in e.value.error_message
    assert "non_finite in lat" in e.value.error_message and "previous S3 version" in e.value.error_message
    # the repair the error names: restore the dataset's previous version
    aws.s3.copy_object(
        Bucket=aws.bucket, Key=key, CopySource={"Bucket": aws.bucket, "Key": key, "VersionId": good["VersionId"]}
    )
    assert aws.invoke("RetrainFunction", event)["outcomes"][0]["status"] in ("promoted", "refused")


def test_upper_case_csv_is_trained_and_other_files_are_reported(aws):
    assert retrain(aws, "incoming/SALES.CSV", SEED)["status"] == "promoted"
    out = retrain(aws, "incoming/notes.txt", b"just some notes\n")
    assert out["status"] == "rejected"
    assert strict_json(aws, "rejected/incoming/notes.txt.json")["validation"]["problems"][0]["code"] == "not_csv"


def test_too_little_data_to_train_is_accepted_and_kept(aws):
    first = retrain(aws, "incoming/small.csv", by_date(before="20140801", step=8))  # ~500 sales: too few
    assert first["status"] == "accepted" and registry.read_champion(aws.s3, aws.bucket) == (None, None)
    second = retrain(aws, "incoming/more.csv", by_date(since="20140801", before="20150101", step=2))
    assert second["status"] == "promoted"
    lineage = strict_json(aws, layout.upload_report("incoming/more.csv"))["lineage"]
    assert lineage["uploads"] == ["incoming/small.csv", "incoming/more.csv"]


def test_an_inventory_with_bad_houses_prices_the_others(aws, seeded):
    inv = with_cell(inventory(step=10), "lat", "NaN", range(3, 6))
    inv = with_cell(inv, "sqft_lot", "a lot", range(10, 11))
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=inv)
    out = aws.invoke("PrecomputeFunction", {})
    total = inv.count(b"\n") - 1
    assert out["status"] == "written" and out["items"] == total - 4 and out["skipped"] == 4
    report = strict_json(aws, "rejected/inventory/houses.csv.json")
    ids = [r.split(",")[0] for r in inv.decode().splitlines()]
    assert [(s["row"], s["id"], s["column"], s["code"]) for s in report["skipped"]] == [
        (4, ids[3], "lat", "non_finite"),
        (5, ids[4], "lat", "non_finite"),
        (6, ids[5], "lat", "non_finite"),
        (11, ids[10], "sqft_lot", "non_numeric"),
    ]


def test_an_unreadable_inventory_is_reported_not_crashed(aws, seeded):
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=b"\xff\xfe not a csv")
    out = aws.invoke("PrecomputeFunction", {})
    assert out["status"] == "rejected_inventory"
    assert strict_json(aws, "rejected/inventory/houses.csv.json")["problems"][0]["code"] == "encoding"


# --- property-based, through the function ------------------------------------------------------------------------
COLUMNS = lines(NEWER)[0]
KINDS = {
    "nan": lambda v: "nan",
    "inf": lambda v: "inf",
    "empty": lambda v: "",
    "units": lambda v: f"{v} sqft",
    "thousands": lambda v: f'"1,{v}"',
    "huge": lambda v: "9" * 30,
    "spaces": lambda v: f"  {v}  ",
    "quoted": lambda v: f'"{v}"',
    "negative": lambda v: f"-{v}" if v[:1] not in "-0" else v,
}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    column=st.sampled_from(COLUMNS),
    rows=st.sets(st.integers(1, 2000), min_size=1, max_size=5),
)
def test_no_corrupted_upload_stops_or_poisons_training(aws_once, kind, column, rows):
    """Invariant for any corruption of any column: the function does not fail, the upload is trained or refused
    with a report naming the column, and the champion only ever moves to a better model."""
    aws = aws_once
    t = lines(by_date(since="20150101", step=3))
    i = t[0].index(column)
    for r in rows:
        t[r][i] = KINDS[kind](t[r][i])
    key = f"incoming/fuzz/{kind}-{column}-{'-'.join(map(str, sorted(rows)))}.csv"
    before, _ = registry.read_champion(aws.s3, aws.bucket)
    out = retrain(aws, key, ("\n".join(",".join(r) for r in t) + "\n").encode())  # FunctionError would fail here
    after, _ = registry.read_champion(aws.s3, aws.bucket)
    if out["status"] in ("rejected", "quarantined"):
        report = strict_json(aws, layout.rejection(key))
        named = {p["column"] for p in report["validation"]["problems"]}
        assert column in named or out["status"] == "quarantined", (kind, column, report["validation"])
        assert after == before
    else:
        assert out["status"] in ("promoted", "refused", "duplicate"), out
        if out["status"] == "promoted":
            gate = strict_json(aws, layout.upload_report(key))["gate"]
            assert gate["challenger"]["mape"] < gate["champion"]["mape"]
        else:
            assert after == before


@pytest.fixture
def aws_once(aws, request):
    """One seeded stack for all the examples of a hypothesis test (the function-scoped `aws` would be reset
    between examples otherwise)."""
    if not getattr(request.node, "_seeded", False):
        assert aws.seed("incoming/seed.csv", SEED)["status"] == "promoted"
        request.node._seeded = True
    return aws
