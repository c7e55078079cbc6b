"""The whole local stack (moto + S3 event pollers + HTTP bridge + real handlers), driven like a user would."""

import pytest
import requests

from kclocal.demo import HOUSE_ID, run_story

pytestmark = pytest.mark.slow


def test_first_start_seeds_a_model_and_precomputes_the_inventory(stack):
    (retrain,) = stack.wait_for("RetrainFunction", 1)
    (pre,) = stack.wait_for("PrecomputeFunction", 1)
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
