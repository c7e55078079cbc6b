"""CodeDeploy PreTraffic hook of predict: the new version answers the requests in events/ right, or the deployment
fails before any traffic reaches it (CodeDeploy leaves the alias on the old version)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import boto3
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kcprice import smoke

logger = Logger()
EVENTS = Path(__file__).parent / "events"  # a link to the project's events/, copied in by `sam build`


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)
    target: str = Field(validation_alias="TARGET_FUNCTION", min_length=1)  # the version's ARN


class HookEvent(BaseModel):  # what CodeDeploy sends a lifecycle hook
    model_config = ConfigDict(extra="ignore")
    deployment_id: str = Field(alias="DeploymentId")
    hook_execution_id: str = Field(alias="LifecycleEventHookExecutionId")


@functools.cache
def runtime():
    return Settings(), boto3.client("lambda"), boto3.client("codedeploy")


def call(lam, target: str, case: smoke.Case) -> smoke.Answer:
    out = lam.invoke(FunctionName=target, Payload=json.dumps(case.event).encode())
    payload = json.loads(out["Payload"].read() or b"null")
    if out.get("FunctionError"):
        raise RuntimeError(f"the function failed: {json.dumps(payload)[:300]}")
    return smoke.answer_from_lambda(payload)


@logger.inject_lambda_context
def handler(event, context):
    hook = HookEvent.model_validate(event)
    settings, lam, codedeploy = runtime()
    try:
        problems, statuses = smoke.run(lambda case: call(lam, settings.target, case), smoke.cases(EVENTS))
    except Exception as e:  # never leave CodeDeploy waiting for an hour: an error here fails the deployment
        logger.exception("the hook could not run its checks")
        problems, statuses = [f"{type(e).__name__}: {e}"], {}
    status = "Failed" if problems else "Succeeded"
    logger.info("pre-traffic checks", extra={"target": settings.target, "statuses": statuses, "problems": problems})
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=hook.deployment_id, lifecycleEventHookExecutionId=hook.hook_execution_id, status=status
    )
    return {"status": status, "statuses": statuses, "problems": problems}
