"""A private library internal is used on purpose, for a measured reason written beside it. This test
fails loudly when a library release changes it, instead of the code silently going slow or wrong."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver


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
