"""Schemathesis against the API's own OpenAPI document, through the local HTTP stack (real handler, real
routing): valid and invalid requests alike must never produce a 5xx, and every 4xx must say what is wrong."""

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from kclocal.events import EXAMPLE_HOUSE
from kcprice.schema import MAX_BATCH

pytestmark = pytest.mark.slow
EXAMPLES = 300  # per operation and mode; 4 operations -> well over 1,000 requests


def assert_names_the_problem(response) -> None:
    body = response.json()
    assert isinstance(body.get("message"), str) and len(body["message"]) > 8, body
    if response.status_code == 422:
        # the message spells out where: body.houses.0.zipcode, path.house_id, ...
        assert any(part in body["message"] for part in ("body", "path", "query")), body


def operations(stack):
    spec = requests.get(f"{stack.bridge.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_api_never_fails_and_explains_every_4xx(stack, mode):
    # Driven through schemathesis' strategies directly: its lazy pytest fixture loader does not support pytest 9.
    session = requests.Session()
    for op in operations(stack):
        if mode == schemathesis.GenerationMode.NEGATIVE and not (op.body or list(op.iter_parameters())):
            continue  # nothing to make invalid (GET /health, GET /model)

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(base_url=stack.bridge.url, session=session)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            if 400 <= response.status_code < 500:
                assert_names_the_problem(response)

        check()


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "needle"),
    [
        ("POST", "/predict", "{not json", {"content-type": "application/json"}, 422, "json"),
        ("POST", "/predict", "", {"content-type": "application/json"}, 422, "body"),
        ("POST", "/predict", "[]", {"content-type": "application/json"}, 422, "body"),
        ("POST", "/predict", '{"houses": "many"}', {"content-type": "application/json"}, 422, "houses"),
        ("POST", "/predict", "a,b\n1,2", {"content-type": "text/csv"}, 415, "application/json"),
        ("POST", "/predict", b"\x80\xff{}", {"content-type": "application/json"}, 400, "UTF-8"),
        ("GET", "/houses/123/price", None, {}, 404, "POST /predict"),
        ("GET", "/houses/1%3B%20drop/price", None, {}, 422, "house_id"),
        ("GET", "/no/such/route", None, {}, 404, "Not Found"),
        ("PUT", "/predict", "{}", {"content-type": "application/json"}, 404, "Not Found"),
    ],
)
def test_named_bad_requests(stack, method, path, body, headers, status, needle):
    r = requests.request(method, stack.bridge.url + path, data=body, headers=headers, timeout=10)
    assert r.status_code == status and needle.lower() in r.json()["message"].lower(), r.text


def test_huge_batch_is_refused_with_the_cap(stack):
    r = requests.post(f"{stack.bridge.url}/predict", json={"houses": [EXAMPLE_HOUSE] * 5000}, timeout=30)
    assert r.status_code == 422 and "houses" in r.json()["message"]
    assert str(MAX_BATCH) in r.json()["message"]


def test_fuzz_totals(stack):
    """Runs last in this module: the bridge counted every response the fuzzing above produced."""
    total = sum(stack.bridge.statuses.values())
    server_errors = sum(n for code, n in stack.bridge.statuses.items() if code >= 500 and code != 503)
    print(f"\nfuzz: {total} requests, statuses {dict(sorted(stack.bridge.statuses.items()))}")
    assert total >= 1000 and server_errors == 0
    assert stack.bridge.statuses[503] == 0  # a model was served throughout
