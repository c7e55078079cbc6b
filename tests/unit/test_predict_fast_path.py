"""POST /predict's fast path (functions/predict/app.py `_fast_predict`) answers exactly what the Powertools resolver
answers for the same request, and leaves every other request to it."""

from __future__ import annotations

import base64
import copy
import json
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kclocal.template import ROOT
from kcprice.schema import EXAMPLE_HOUSE
from tests.apps import load_app


@pytest.fixture(scope="module")
def predict_app(small_model):
    mp = pytest.MonkeyPatch()
    app = load_app("predict", mp)
    model = small_model.predictor

    class Cache:  # the champion, without S3
        def get(self):
            return model, {"version": model.version}

        def take_load_seconds(self):
            return None

    app.runtime = lambda: types.SimpleNamespace(cache=Cache())
    yield app
    mp.undo()


def event(body: str, content_type: str | None = "application/json", **changes) -> dict:
    e = json.loads((ROOT / "events" / "predict_post.json").read_text())
    e["body"] = body
    if content_type is None:
        e["headers"].pop("content-type")
    else:
        e["headers"]["content-type"] = content_type
    e.update(changes)
    return e


def both(app, e: dict) -> tuple[dict | None, dict]:
    fast = app._fast_predict(copy.deepcopy(e))
    app.metrics.clear_metrics()
    slow = app.app.resolve(copy.deepcopy(e), None)
    app.metrics.clear_metrics()
    return fast, slow


def test_the_fast_path_answers_as_the_resolver_does(predict_app, house):
    other = {**house, "sqft_living": 2500, "sqft_above": 2500, "lat": 47.62, "date": "2015-03-01"}
    bodies = [
        {"houses": [house]},
        {"houses": [house, other], "coverage": 0.9},
        {"houses": [{**house, "id": "7129300520"}], "explain": True, "comps": 5},
        {"houses": [{k: v for k, v in house.items() if k != "date"}]},
    ]
    for body in bodies:
        for content_type in ("application/json", "Application/JSON; charset=utf-8", None):
            fast, slow = both(predict_app, event(json.dumps(body), content_type))
            assert slow["statusCode"] == 200, slow
            assert fast == slow


@pytest.mark.parametrize(
    "e",
    [
        event('{"houses": []}'),  # invalid: the resolver's 422
        event("not json"),
        event('{"houses": [{"bedrooms": 3}]}'),
        event("{}", "text/plain"),  # 415
        # a valid body sent as text/plain, the header's name in capitals (names are case-insensitive): 415
        {**event(json.dumps({"houses": [EXAMPLE_HOUSE]}), None), "headers": {"CONTENT-TYPE": "text/plain"}},
        event("{}", routeKey="GET /health"),  # another route
    ],
)
def test_anything_else_is_left_to_the_resolver(predict_app, e):
    fast, slow = both(predict_app, e)
    assert fast is None
    assert slow["statusCode"] != 200 or e["routeKey"] != "POST /predict"


def test_a_base64_body_is_left_to_the_resolver(predict_app, house):
    body = base64.b64encode(json.dumps({"houses": [house]}).encode()).decode()
    fast, slow = both(predict_app, event(body, isBase64Encoded=True))
    assert fast is None and slow["statusCode"] == 200


def test_no_model_is_left_to_the_resolver_and_nothing_is_counted_twice(predict_app, house):
    from kcprice.errors import NoModelError

    class Empty:
        def get(self):
            raise NoModelError("no model yet")

    saved = predict_app.runtime
    predict_app.runtime = lambda: types.SimpleNamespace(cache=Empty())
    try:
        predict_app.metrics.clear_metrics()
        assert predict_app._fast_predict(event(json.dumps({"houses": [house]}))) is None
        assert "HousesPriced" not in predict_app.metrics.metric_set
        assert predict_app.app.resolve(event(json.dumps({"houses": [house]})), None)["statusCode"] == 503
    finally:
        predict_app.runtime = saved
        predict_app.metrics.clear_metrics()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(
        st.sampled_from(["bedrooms", "sqft_living", "grade", "lat", "date", "zipcode", "view"]),
        st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=12), st.none()),
        max_size=3,
    ),
    extra=st.fixed_dictionaries(
        {}, optional={"coverage": st.sampled_from([0.8, 0.9, 0.5, "x"]), "comps": st.integers(-1, 12)}
    ),
)
def test_any_request_gets_the_same_answer_either_way(predict_app, house, changes, extra):
    fast, slow = both(predict_app, event(json.dumps({"houses": [{**house, **changes}], **extra})))
    if slow["statusCode"] == 200:
        assert fast == slow
    else:
        assert fast is None
