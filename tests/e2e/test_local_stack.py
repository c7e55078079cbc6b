"""The whole local stack (moto + S3 event pollers + HTTP bridge + real handlers), driven like a user would."""

import json

import pytest
import requests

from kclocal.demo import HOUSE_ID, poll, run_story

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]  # one seeded stack, on one worker


def test_first_start_seeds_a_model_and_precomputes_the_inventory(stack):
    (retrain,) = stack.wait_for("RetrainFunction", 1)
    # The inventory's upload started precompute before any model existed; the promotion started it again.
    first, pre = stack.wait_for("PrecomputeFunction", 2)[:2]
    assert first["status"] == "no_model" and first["items"] == 0
    assert retrain["outcomes"][0]["status"] == "promoted"
    assert pre == {
        "status": "written",
        "model_version": retrain["outcomes"][0]["version"],
        "items": 21_436,
        "skipped": 0,
        "seconds": pre["seconds"],
    }


def test_the_story(stack):
    out = run_story(stack.bridge.url, stack.endpoint, stack.spec.bucket, stack.spec.table, say=lambda _: None)
    v1 = out["v1"]
    assert out["predict"]["status"] == 200 and out["predict"]["model_version"] == v1
    assert 150_000 < out["predict"]["predictions"][0]["price"] < 350_000
    assert out["lookup_before"]["status"] == 200 and out["lookup_before"]["model_version"] == v1
    decision, v2 = out["retrain"]["decision"], out["retrain"]["version"]
    assert decision in ("promoted", "refused") and v2 != v1
    expected = v2 if decision == "promoted" else v1
    assert out["served_after"] == expected
    assert out["lookup_after"]["model_version"] == expected and out["lookup_after"]["house_id"] == HOUSE_ID
    assert out["items_total"] == out["items_by_served_model"] == 21_436
    assert out["rejected"]["problem"]["code"] == "non_numeric" and out["rejected"]["champion"] == expected
    # The retrain and precompute handlers ran once per upload / promotion, through real S3 notifications.
    retrains = stack.wait_for("RetrainFunction", 3)
    assert [r["outcomes"][0]["status"] for r in retrains] == ["promoted", decision, "rejected"]
    assert len(stack.wait_for("PrecomputeFunction", 2 if decision == "promoted" else 1)) >= 1

    # `make demo` again: the same sales are in the dataset already, and the story says so (not "promoted").
    said: list[str] = []
    again = run_story(stack.bridge.url, stack.endpoint, stack.spec.bucket, stack.spec.table, say=said.append)
    assert again["v1"] == expected and again["retrain"]["decision"] == "duplicate"
    assert again["served_after"] == expected and again["rejected"]["champion"] == expected
    assert any(line.startswith("5. duplicate: all ") for line in said), said
    assert not any("promoted" in line for line in said), said


def test_an_operator_rolls_the_model_forward_and_back_and_a_tampered_version_is_refused(stack, monkeypatch, capsys):
    from kclocal.awsd import ADMIN_KEY, ADMIN_SECRET
    from kcprice import cli

    for k, v in {
        "AWS_ENDPOINT_URL": stack.endpoint,
        "AWS_ACCESS_KEY_ID": ADMIN_KEY,
        "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    where = ["--bucket", stack.spec.bucket]

    def run(*argv: str) -> tuple[int, object]:
        code = cli.main([*argv[:2], *where, *argv[2:]])
        out = capsys.readouterr().out
        return code, json.loads(out) if code == 0 else None

    # A second version to roll to, published as retrain publishes one: the story's challenger may have been refused
    # (a tie on the holdout is refused, and a refused challenger is not published), so it cannot be relied on.
    from kclocal import data
    from kcprice import registry, training
    from kcprice.dataset import read_sales

    sales, _ = read_sales(data.stride(10))
    other = training.train(sales, evaluate_splits=False, with_baseline=False)
    registry.publish_version(stack.s3, stack.spec.bucket, other.artifact, other.meta)

    code, versions = run("models", "list")
    assert code == 0 and len(versions) >= 2 and sum(v["champion"] for v in versions) == 1
    (champion,) = [v["version"] for v in versions if v["champion"]]
    target = other.meta["version"]
    code, done = run("models", "promote", target, "--reason", "a bad valuation reported")
    assert code == 0 and done["version"] == target and done["previous_version"] == champion

    # Served within the model TTL, and precompute rewrites every price with it (the pointer write triggers it).
    api = stack.bridge.url
    poll(
        "the API to serve " + target,
        lambda: requests.get(f"{api}/model", timeout=10).json()["champion"]["version"] == target,
        120,
    )
    ddb = stack.client("dynamodb")

    def by(version: str | None = None) -> int:
        kw = {"FilterExpression": "model_version = :v", "ExpressionAttributeValues": {":v": {"S": version}}}
        pages = ddb.get_paginator("scan").paginate(
            TableName=stack.spec.table, Select="COUNT", **(kw if version else {})
        )
        return sum(p["Count"] for p in pages)

    poll("every price to be by " + target, lambda: by(target) == by() == 21_436, 600)

    code, history = run("models", "history")
    assert code == 0 and history[0]["version"] == target and history[0]["current"]
    assert history[0]["reason"]["why"] == "a bad valuation reported" and history[0]["reason"]["by"].startswith("arn:")
    assert history[1]["version"] == champion and not history[1]["current"]

    # Rolled back: the pointer's previous version is served again, and precompute starts rewriting the prices with
    # it (every one was by the target: not waited to the end, a whole rewrite is another half minute or more).
    code, done = run("models", "rollback", "--reason", "the new one was worse")
    assert code == 0 and done["version"] == champion and done["previous_version"] == target
    poll(
        "the API to serve " + champion,
        lambda: requests.get(f"{api}/model", timeout=10).json()["champion"]["version"] == champion,
        120,
    )
    poll("prices by " + champion, lambda: by(champion) > 0, 600)

    # A version whose artifact changed after it was published is never promoted.
    key = f"models/{target}/model.npz"
    stack.s3.put_object(Bucket=stack.spec.bucket, Key=key, Body=b"not the published artifact")
    assert cli.main(["models", "promote", *where, target, "--reason", "x"]) == 1
    assert "refused" in capsys.readouterr().err
    assert requests.get(f"{api}/model", timeout=10).json()["champion"]["version"] == champion


def test_upload_command_prints_the_outcome_of_its_own_upload(stack, tmp_path, capsys):
    from kclocal import cli

    bad = tmp_path / "my sales.csv"
    bad.write_text("id,date,price\n1,2015-01-01,100000\n")
    argv = ["upload", str(bad), "--endpoint", stack.endpoint, "--bucket", stack.spec.bucket, "--timeout", "300"]
    assert cli.main(argv) == 1  # rejected: the exit code says the file was not taken
    out = capsys.readouterr().out
    assert "incoming/my sales.csv" in out and '"decision": "rejected"' in out
    assert cli.main(["env", "--endpoint", stack.endpoint]) == 0
    assert f"AWS_ENDPOINT_URL={stack.endpoint}" in capsys.readouterr().out


def test_the_bridge_behaves_like_api_gateway(stack):
    api = stack.bridge.url
    assert requests.get(f"{api}/nope", timeout=10).status_code == 404
    assert requests.delete(f"{api}/predict", timeout=10).status_code == 404  # method not routed
    r = requests.get(f"{api}/swagger", timeout=10)
    assert r.status_code == 200 and "swagger" in r.text.lower()
    spec = requests.get(f"{api}/openapi.json", timeout=10).json()
    assert "/predict" in spec["paths"]
    r = requests.post(f"{api}/predict", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)
    assert r.status_code == 413
    r = requests.post(f"{api}/predict", data="{}", headers={"content-type": "text/csv"}, timeout=10)
    assert r.status_code == 415 and "application/json" in r.json()["message"]


def test_each_functions_logs_are_its_own(stack):
    """Every log line of a function names that function and its service; retrain's lines (its own and the shared
    package's) name the upload, decoded as S3 wrote it; no invocation goes without a metric; a crash has a
    traceback."""
    key = "incoming/odd name+plus (1).csv"
    stack.upload(key, b"id,date,price\n1,2015-01-01,oops\n")
    report = _wait_json(stack, "rejected/" + key + ".json")
    assert report["source_key"] == key
    services = {"PredictFunction": "predict", "PrecomputeFunction": "precompute", "RetrainFunction": "retrain"}
    seen_key = False
    for function, service in services.items():
        text = (stack.log_dir / f"{function}.log").read_text()
        assert "No application metrics" not in text, function
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"level"' in line]
        assert records, function
        for r in records:  # lines logged outside an invocation (at import) have no function name
            assert r["service"] == service and r.get("function_name", function).endswith(function), (function, r)
        if function == "RetrainFunction":
            mine = [r for r in records if r.get("source_key") == key]
            assert mine and all("%20" not in str(r) and "odd+name" not in str(r) for r in mine)
            seen_key = True
    assert seen_key


def _wait_json(stack, key: str, timeout: float = 300) -> dict:
    def read() -> dict | None:
        try:
            return json.loads(stack.s3.get_object(Bucket=stack.spec.bucket, Key=key)["Body"].read())
        except stack.s3.exceptions.NoSuchKey:
            return None

    return poll(key, read, timeout)
