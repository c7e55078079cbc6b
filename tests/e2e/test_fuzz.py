"""The API fuzzed through the local HTTP stack (real routing, the real handler in its Lambda-like environment).

- schemathesis from the API's own OpenAPI document, valid and invalid requests: never a 5xx, every 4xx says what
  is wrong;
- valid houses by a strategy that knows the rules JSON Schema cannot say (sqft_above + sqft_basement =
  sqft_living, yr_renovated 0 or at least yr_built): every one is priced (200, a finite positive price);
- named bad requests, each with its status and words.
Each test counts its own requests, so none depends on running after another."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcprice.fields import BOUNDS, DATE_MAX, DATE_MIN, MAX_BATCH
from kcprice.schema import EXAMPLE_HOUSE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]  # one seeded stack, on one worker
EXAMPLES = 150  # per operation with inputs and mode: over 600 requests, plus the 400 valid houses below


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
    seen: Counter[int] = Counter()
    for op in operations(stack):
        if mode == schemathesis.GenerationMode.NEGATIVE and not (op.body or list(op.iter_parameters())):
            continue  # nothing to make invalid (GET /health, GET /model)

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(base_url=stack.bridge.url, session=session)
            seen[response.status_code] += 1
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            if 400 <= response.status_code < 500:
                assert_names_the_problem(response)

        check()
    print(f"\nschemathesis {mode.value}: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= 2 * EXAMPLES and seen[503] == 0  # two operations with inputs; always a model


def _in(name: str, lo: float | None = None, hi: float | None = None):
    low, high, step = BOUNDS[name]
    lo, hi = max(low, lo if lo is not None else low), min(high, hi if hi is not None else high)
    if step:
        return st.integers(math.ceil(lo / step), math.floor(hi / step)).map(lambda k: k * step)
    return st.floats(lo, hi, allow_nan=False)


@st.composite
def valid_houses(draw) -> dict:
    above = draw(_in("sqft_above", hi=15_000))
    basement = draw(_in("sqft_basement", hi=25_000 - above))
    built = draw(_in("yr_built"))
    house = {name: draw(_in(name)) for name in BOUNDS}
    house.update(
        sqft_above=above,
        sqft_basement=basement,
        sqft_living=above + basement,
        yr_built=built,
        yr_renovated=draw(st.one_of(st.just(0), _in("yr_renovated", lo=built))),
    )
    if draw(st.booleans()):
        house["date"] = draw(st.dates(DATE_MIN, DATE_MAX)).isoformat()
    return {k: int(v) if BOUNDS.get(k, (0, 0, None))[2] == 1 else v for k, v in house.items()}


def test_every_valid_house_is_priced(stack):
    session = requests.Session()
    priced = Counter()

    @given(houses=st.lists(valid_houses(), min_size=1, max_size=5))
    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(houses):
        r = session.post(f"{stack.bridge.url}/predict", json={"houses": houses}, timeout=30)
        assert r.status_code == 200, (houses, r.text)
        prices = [p["price"] for p in r.json()["predictions"]]
        assert len(prices) == len(houses) and all(math.isfinite(p) and p > 0 for p in prices)
        priced["requests"] += 1
        priced["houses"] += len(houses)

    check()
    print(f"\nvalid houses: {priced['requests']} requests, {priced['houses']} houses, all priced (200)")
    assert priced["requests"] == 400


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "needle"),
    [
        ("POST", "/predict", "{not json", {"content-type": "application/json"}, 422, "json"),
        ("POST", "/predict", "", {"content-type": "application/json"}, 422, "body"),
        ("POST", "/predict", "[]", {"content-type": "application/json"}, 422, "body"),
        ("POST", "/predict", '{"houses": "many"}', {"content-type": "application/json"}, 422, "houses"),
        ("POST", "/predict", "a,b\n1,2", {"content-type": "text/csv"}, 415, "application/json"),
        ("POST", "/predict", "{}", {"content-type": "application/jsonxyz"}, 415, "application/json"),
        ("POST", "/predict", b"\x80\xff{}", {"content-type": "application/json"}, 400, "UTF-8"),
        ("GET", "/houses/123/price", None, {}, 404, "POST /predict"),
        ("GET", "/houses/1%3B%20drop/price", None, {}, 422, "house_id"),
        ("GET", "/no/such/route", None, {}, 404, "Not Found"),
        ("PUT", "/predict", "{}", {"content-type": "application/json"}, 404, "Not Found"),
        ("TRACE", "/predict", None, {}, 404, "Not Found"),
        ("BREW", "/predict", None, {}, 404, "Not Found"),
    ],
)
def test_named_bad_requests(stack, method, path, body, headers, status, needle):
    r = requests.request(method, stack.bridge.url + path, data=body, headers=headers, timeout=10)
    assert r.status_code == status and needle.lower() in r.json()["message"].lower(), r.text


def test_huge_batch_is_refused_with_the_cap(stack):
    r = requests.post(f"{stack.bridge.url}/predict", json={"houses": [EXAMPLE_HOUSE] * 5000}, timeout=30)
    assert r.status_code == 422 and "houses" in r.json()["message"]
    assert str(MAX_BATCH) in r.json()["message"]


def test_the_example_house_is_priced(stack):
    r = requests.post(f"{stack.bridge.url}/predict", json={"houses": [EXAMPLE_HOUSE]}, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0]["price"] > 0
