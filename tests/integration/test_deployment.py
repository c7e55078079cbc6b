"""The PreTraffic hook of a predict deployment, run as CodeDeploy runs it: it invokes the new version through
Lambda's Invoke API (on the local endpoint, IAM enforced) with the requests in events/, and reports the verdict
with PutLifecycleEventHookExecutionStatus."""

import json
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from kclocal.template import ROOT
from kcprice import ops, registry
from tests.integration.conftest import log_lines


def _deployment(aws) -> dict:
    """What CodeDeploy does before calling the hook: a deployment of predict's deployment group."""
    group = (
        f"arn:aws:codedeploy:{aws.spec.region}:{aws.spec.account}:deploymentgroup:"
        f"{aws.spec.resolve({'Ref': 'ServerlessDeploymentApplication'})}/PredictFunctionDeploymentGroup"
    )
    deployment_id = f"d-{uuid.uuid4().hex[:9].upper()}"
    requests.post(
        f"{aws.endpoint}/_kclocal/codedeploy/deployments",
        json={"deploymentId": deployment_id, "group_arn": group},
        timeout=10,
    ).raise_for_status()
    return {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": f"exec-{uuid.uuid4().hex}"}


def _verdict(aws, event: dict) -> str | None:
    listed = requests.get(f"{aws.endpoint}/_kclocal/codedeploy/deployments", timeout=10).json()
    return listed[event["DeploymentId"]]["hooks"].get(event["LifecycleEventHookExecutionId"])


def test_the_hook_passes_a_new_stack_before_its_first_model(aws):
    event = _deployment(aws)
    out = aws.invoke("PreTrafficHookFunction", event)
    assert out["status"] == "Succeeded", out["problems"]
    assert out["statuses"]["predict_post"] == 503 and out["statuses"]["predict_health"] == 200
    assert _verdict(aws, event) == "Succeeded"


def test_the_hook_passes_a_working_version_and_fails_a_broken_one(aws, small_model):
    registry.publish_version(aws.s3, aws.bucket, small_model.artifact, small_model.meta)
    ops.promote_version(aws.s3, aws.bucket, small_model.meta["version"], "test", "me")
    event = _deployment(aws)
    out = aws.invoke("PreTrafficHookFunction", event)
    assert out["status"] == "Succeeded", out["problems"]
    assert {out["statuses"][k] for k in ("predict_post", "predict_model", "predict_openapi")} == {200}
    assert out["statuses"]["predict_house_price"] == 404  # nothing precomputed in this test
    assert _verdict(aws, event) == "Succeeded"

    # A version whose configuration cannot start (a deployment's mistake): every call fails, the hook says so.
    aws.deploy({"ModelTtlSeconds": "-1"})
    broken = _deployment(aws)
    out = aws.invoke("PreTrafficHookFunction", broken)
    assert out["status"] == "Failed" and any("RuntimeError" in p for p in out["problems"]), out
    assert _verdict(aws, broken) == "Failed"


@pytest.mark.denied_calls_expected
def test_the_hook_may_invoke_predict_and_nothing_else(aws):
    lam = aws.client("lambda", "PreTrafficHookFunction")
    predict = aws.spec.functions["PredictFunction"].physical
    health = (ROOT / "events" / "predict_health.json").read_text()
    ok = lam.invoke(FunctionName=predict, Qualifier="live", Payload=health.encode())
    assert json.loads(ok["Payload"].read())["statusCode"] == 200
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=aws.spec.functions["RetrainFunction"].physical, Payload=b"{}")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:  # nor may predict invoke anything
        aws.client("lambda", "PredictFunction").invoke(FunctionName=predict, Payload=health.encode())
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_lambda_invoke_answers_as_lambda_does(aws):
    lam = aws.client("lambda")  # the admin (an operator)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="no-such-function", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    precompute = aws.spec.functions["PrecomputeFunction"].physical
    assert lam.invoke(FunctionName=precompute, InvocationType="DryRun")["StatusCode"] == 204
    out = lam.invoke(FunctionName=precompute, Payload=json.dumps({"unexpected": 1}).encode())
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"  # the handler refused the event
    assert "ValidationError" in json.loads(out["Payload"].read())["errorType"]
    done = lam.invoke(FunctionName=f"arn:aws:lambda:us-east-1:123456789012:function:{precompute}", Payload=b"{}")
    assert json.loads(done["Payload"].read())["status"] == "no_model"


def test_snapstart_puts_the_champion_in_the_snapshot_and_checks_it_after_restore(aws, small_model):
    """SnapStart=true: the local runtime runs the function's hooks as Lambda does (before the snapshot, after the
    restore). The first request finds the model loaded, and re-checks the pointer although the TTL has not run
    out (a restored snapshot's clock and connections are not to be trusted)."""
    from tests.policy import CallJournal

    registry.publish_version(aws.s3, aws.bucket, small_model.artifact, small_model.meta)
    ops.promote_version(aws.s3, aws.bucket, small_model.meta["version"], "test", "me")
    aws.deploy({"SnapStart": "true", "ModelTtlSeconds": "600"})
    journal = CallJournal(aws.stack.journal, aws.spec)
    start = journal.mark()
    log = aws.stack.log_dir / "PredictFunction.log"
    offset = log.stat().st_size if log.exists() else 0
    answer = aws.invoke("PredictFunction", json.loads((ROOT / "events" / "predict_post.json").read_text()))
    assert answer["statusCode"] == 200 and small_model.meta["version"] in answer["body"]
    lines = log_lines(log, offset, lambda lines: any("_aws" in line for line in lines))
    messages = [line.get("message") for line in lines]
    assert "model loaded before the snapshot" in messages and any(
        "restored from a snapshot" in str(m) for m in messages
    )
    (before,) = [line for line in lines if line.get("message") == "model loaded before the snapshot"]
    assert before["prepare_s"] > 0  # the explanation tables were built into the snapshot
    emf = [line for line in lines if "_aws" in line]
    assert len(emf) == 1 and "ModelLoadTime" not in emf[0]  # nothing loaded during the request
    pointer_reads = [
        c
        for c in journal.calls(since=start)
        if c.function == "PredictFunction" and c.resource.endswith("champion.json")
    ]
    assert len(pointer_reads) == 2  # before the snapshot, and again at the first request after the restore
