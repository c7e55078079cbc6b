"""The API's smoke test: the requests in events/ (predict_*.json, API Gateway HTTP API v2 events) and what a right
answer to each is. One definition, three callers: the PreTraffic hook (the new predict version, invoked directly,
before any traffic reaches it), `kcprice smoke --url` (a deployed API, over HTTPS, in the deploy workflow) and the
local stack's tests (its HTTP API).

A right answer: the status the route gives when it works, JSON, and a body that makes sense (finite positive
prices, one per house, and the model version). Before the first model is promoted /predict and /model answer 503
and /health says no model: a new stack passes its first deployment. A house that is not precomputed is a 404.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Case:
    name: str  # the event file's stem
    event: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.event["requestContext"]["http"]["method"])

    @property
    def path(self) -> str:
        return str(self.event["rawPath"])

    @property
    def body(self) -> bytes:
        raw = self.event.get("body") or ""
        return base64.b64decode(raw) if self.event.get("isBase64Encoded") else raw.encode()

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): str(v) for k, v in (self.event.get("headers") or {}).items()}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def cases(folder: Path) -> list[Case]:
    """The API requests among the events (health first: its answer says whether a model is expected)."""
    found = [Case(p.stem, json.loads(p.read_text())) for p in sorted(folder.glob("predict_*.json"))]
    found = [c for c in found if c.event.get("version") == "2.0" and "requestContext" in c.event]
    if not found:
        raise FileNotFoundError(f"no API events (predict_*.json) in {folder}")
    return sorted(found, key=lambda c: c.path != "/health")


def answer_from_lambda(payload: dict[str, Any]) -> Answer:
    """A Lambda proxy result (what API Gateway would turn into an HTTP response)."""
    body = payload.get("body") or ""
    raw = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode()
    headers = {k.lower(): str(v) for k, v in (payload.get("headers") or {}).items()}
    return Answer(int(payload.get("statusCode", 0)), headers, raw)


def _positive_finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def judge(case: Case, answer: Answer, model_expected: bool | None) -> list[str]:
    """What is wrong with this answer to this request (empty: nothing)."""
    where = f"{case.name} ({case.method} {case.path})"
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return [f"{where}: content-type {answer.headers.get('content-type')!r}, not JSON (status {answer.status})"]
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return [f"{where}: the body is not JSON (status {answer.status})"]
    no_model = answer.status == 503 and model_expected is False
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(f"{where}: {what} (status {answer.status}: {json.dumps(doc)[:200]})")

    if case.path == "/health":
        need(answer.status == 200 and doc.get("status") == "ok" and "model_version" in doc, "not healthy")
    elif case.path == "/openapi.json":
        need(answer.status == 200 and "/predict" in doc.get("paths", {}), "no OpenAPI document with /predict")
    elif case.path == "/predict":
        houses = json.loads(case.body or b"{}").get("houses", [])
        if not no_model:
            predictions = doc.get("predictions") or []
            need(answer.status == 200, "expected 200")
            need(isinstance(doc.get("model_version"), str), "no model_version")
            need(len(predictions) == len(houses), f"{len(predictions)} prices for {len(houses)} houses")
            need(all(_positive_finite(p.get("price")) for p in predictions), "a price that is not finite and > 0")
    elif case.path.startswith("/houses/"):
        if answer.status != 404 or not doc.get("message"):
            need(answer.status == 200 and _positive_finite(doc.get("price")), "no positive price and not a 404")
    elif case.path == "/model":
        if not no_model:
            need(answer.status == 200 and "version" in (doc.get("champion") or {}), "no champion version")
    else:
        need(answer.status < 500, "a server error")
    return problems


def run(call: Callable[[Case], Answer], found: list[Case]) -> tuple[list[str], dict[str, int]]:
    """Call every case (health first), judge each answer; (problems, status by case)."""
    problems: list[str] = []
    statuses: dict[str, int] = {}
    model_expected: bool | None = None
    for case in found:
        try:
            answer = call(case)
        except Exception as e:  # a refused connection or a failed invocation is a finding, not a crash
            problems.append(f"{case.name}: {type(e).__name__}: {e}")
            continue
        statuses[case.name] = answer.status
        if case.path == "/health" and answer.status == 200:
            model_expected = json.loads(answer.body).get("model_version") is not None
        problems += judge(case, answer, model_expected)
    return problems, statuses
