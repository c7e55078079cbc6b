"""Every AWS call a function makes is allowed by its template policy, and the local endpoint refuses the rest.

Every integration test checks the calls it caused (tests/policy.py, in the `aws` fixture). Here: one whole story
(first upload with no champion, a bad upload, precompute, every API route) recorded and checked, the checker shown
to catch a permission removed from template.yaml, and the endpoint shown to refuse what a policy does not allow."""

from __future__ import annotations

import copy
import json

import pytest
from botocore.exceptions import ClientError

from kclocal import template
from kclocal.data import by_date, inventory
from tests.integration.conftest import load_event
from tests.policy import CallJournal, summary


@pytest.fixture(scope="session")
def recorded() -> dict:
    return {}


@pytest.fixture
def story(aws, recorded):
    """The calls of a whole story, from an empty registry: recorded once per test process, checked by each test."""
    if "story" not in recorded:
        recorded["story"] = _story(aws)
    return recorded["story"]


def _story(aws):
    journal = CallJournal(aws.stack.journal, aws.spec)
    start = journal.mark()
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=inventory(step=20))
    assert aws.invoke("PredictFunction", load_event("predict_health.json"))["statusCode"] == 200  # no model yet
    assert aws.invoke("PrecomputeFunction", {})["status"] == "no_model"
    first = aws.invoke("RetrainFunction", aws.upload("incoming/first.csv", by_date(before="20150101", step=4)))
    assert first["outcomes"][0]["status"] == "promoted"  # the champion pointer was missing: a 404, not a 403
    bad = aws.invoke("RetrainFunction", aws.upload("incoming/bad.csv", b"id,price\n1,2\n"))
    assert bad["outcomes"][0]["status"] == "rejected"
    assert aws.invoke("PrecomputeFunction", {})["status"] == "written"  # writes its drift report too
    for name in ("predict_post.json", "predict_model.json", "predict_openapi.json"):
        assert aws.invoke("PredictFunction", load_event(name))["statusCode"] == 200, name
    assert aws.invoke("PredictFunction", load_event("predict_house_price.json"))["statusCode"] == 404  # not listed
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=b"id\n1\n")  # an invalid inventory
    assert aws.invoke("PrecomputeFunction", {})["status"] == "rejected_inventory"  # reported, not crashed
    return journal, journal.calls(since=start)


def test_every_call_of_a_whole_story_is_allowed_by_the_template(story):
    journal, calls = story
    assert journal.violations(calls) == []
    seen = summary(calls)
    print("\n" + json.dumps(seen, indent=1))
    assert set(seen) == {"PredictFunction", "PrecomputeFunction", "RetrainFunction"}
    # the calls the defects were about are among them
    assert any(
        c.function == "PrecomputeFunction" and c.action == "s3:PutObject" and "/reports/drift/" in c.resource
        for c in calls
    )
    missing_key_checks = [c for c in calls if c.action == "s3:ListBucket" and c.context]
    assert {c.function for c in missing_key_checks} >= {"PredictFunction", "PrecomputeFunction", "RetrainFunction"}


def _without(doc: dict, function: str, keep) -> dict:
    """template.yaml with some of a function's policy statements removed."""
    doc = copy.deepcopy(doc)
    for policy in doc["Resources"][function]["Properties"]["Policies"]:
        policy["Statement"] = [st for st in policy.get("Statement", []) if keep(st)]
    return doc


@pytest.mark.parametrize(
    ("function", "keep", "expected"),
    [
        (
            "PrecomputeFunction",
            lambda st: "s3:PutObject" not in st["Action"],
            "PrecomputeFunction: s3:PutObject on arn:aws:s3:::",
        ),
        ("RetrainFunction", lambda st: "s3:ListBucket" not in st["Action"], "RetrainFunction: s3:ListBucket"),
        ("RetrainFunction", lambda st: "dynamodb:PutItem" not in st["Action"], "RetrainFunction: dynamodb:PutItem"),
        ("PredictFunction", lambda st: "dynamodb:GetItem" not in st["Action"], "PredictFunction: dynamodb:GetItem"),
    ],
)
def test_a_permission_removed_from_the_template_fails_the_check(story, tmp_path, function, keep, expected):
    journal, calls = story
    mutated = tmp_path / "template.yaml"
    doc = _without(template.read(), function, keep)
    mutated.write_text(json.dumps(doc))  # JSON is YAML; the short-form tags were read as {"Ref": ...} already
    spec = template.load(mutated)
    bad = journal.violations(calls, {name: fn.policies for name, fn in spec.functions.items()})
    assert bad and any(str(c).startswith(expected) for c in bad), [str(c) for c in bad][:5]


@pytest.mark.denied_calls_expected
def test_the_local_endpoint_refuses_what_the_policy_does_not_allow(aws):
    predict = aws.client("s3", "PredictFunction")
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=b"x")
    with pytest.raises(ClientError, match="AccessDenied"):
        predict.get_object(Bucket=aws.bucket, Key="inventory/houses.csv")  # not its prefix
    with pytest.raises(ClientError, match="AccessDenied"):
        predict.put_object(Bucket=aws.bucket, Key="models/champion.json", Body=b"{}")  # read-only
    with pytest.raises(ClientError) as e:
        aws.client("s3", "RetrainFunction").get_object(Bucket=aws.bucket, Key="reports/none.json")
    assert e.value.response["Error"]["Code"] == "AccessDenied"  # may not list reports/: a missing key is a 403
    with pytest.raises(ClientError) as e:
        predict.get_object(Bucket=aws.bucket, Key="models/none.json")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"  # may list models/: the same miss is a 404
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("dynamodb", "PredictFunction").put_item(TableName=aws.table, Item={"house_id": {"S": "1"}})
