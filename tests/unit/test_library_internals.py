"""Two private library internals are used on purpose, each for a measured reason written beside it. These tests
fail loudly when a library release changes them, instead of the code silently going slow or wrong."""

from __future__ import annotations

import numpy as np
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from kcprice.training import PARAMS, _Pinball, make_estimator


def test_powertools_passes_route_args_set_by_a_middleware():
    # functions/predict/app.py parses POST /predict's body in a route middleware (~45 us a call cheaper than the
    # generic validation) and hands it to the handler through app.context["_route_args"], which Powertools reads
    # to call the route function.
    app = APIGatewayHttpResolver(enable_validation=True)
    sentinel = object()

    def put_arg(app, next_middleware):
        app.context["_route_args"] = {**app.context.get("_route_args", {}), "request": sentinel}
        return next_middleware(app)

    got = []

    @app.post("/x", enable_validation=False, middlewares=[put_arg])
    def route(request):
        got.append(request)
        return {"ok": True}

    event = {
        "version": "2.0",
        "routeKey": "POST /x",
        "rawPath": "/x",
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/x", "sourceIp": "127.0.0.1"}, "stage": "$default"},
        "body": "{}",
        "isBase64Encoded": False,
    }
    out = app.resolve(event, None)
    assert out["statusCode"] == 200, out
    assert got == [sentinel]


def test_histgradientboosting_still_refits_leaves_through_the_loss_we_replace(monkeypatch):
    # training._Pinball replaces the per-leaf np.percentile call of sklearn's PinballLoss (a third of a fit). If a
    # release stops calling fit_intercept_only per leaf, the models stay equal (another test) but the speed-up is
    # gone: this says so.
    calls = []
    original = _Pinball.fit_intercept_only

    def counting(self, y_true, sample_weight=None):
        calls.append(len(y_true))
        return original(self, y_true, sample_weight)

    monkeypatch.setattr(_Pinball, "fit_intercept_only", counting)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    y = x[:, 0] + rng.normal(size=500)
    make_estimator({**PARAMS, "max_iter": 3, "early_stopping": False}).fit(x, y)
    assert len(calls) > 3  # the baseline, then every leaf of every tree
