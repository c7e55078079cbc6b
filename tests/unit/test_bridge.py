"""The local HTTP API's CORS and authorization, configured from the template as API Gateway is."""

import json

import pytest
import requests

from kclocal import template
from kclocal.bridge import Bridge

ORIGIN = "https://www.example-marketplace.com"


def _bridge(**parameters) -> Bridge:
    spec = template.load(parameters=parameters)
    cors, security = spec.http_api()

    def invoke(function, event):  # a function that echoes what API Gateway handed it, with a CORS header of its own
        body = json.dumps({"route": event["routeKey"], "auth": event["headers"].get("authorization")})
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json", "access-control-allow-origin": "*"},
            "body": body,
        }

    return Bridge(spec.routes(), invoke, 0, cors, security).start()


@pytest.fixture
def cors_api():
    bridge = _bridge(CorsAllowedOrigins=f"{ORIGIN},https://m.example-marketplace.com")
    yield bridge
    bridge.stop()


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_api(cors_api):
    r = requests.options(
        f"{cors_api.url}/predict",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
        timeout=10,
    )
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == ORIGIN
    assert (
        "POST" in r.headers["access-control-allow-methods"]
        and "content-type" in r.headers["access-control-allow-headers"]
    )
    other = requests.options(
        f"{cors_api.url}/predict",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in other.headers


def test_answers_carry_the_apis_cors_headers_not_the_functions(cors_api):
    ok = requests.get(f"{cors_api.url}/health", headers={"origin": ORIGIN}, timeout=10)
    assert (
        ok.headers["access-control-allow-origin"] == ORIGIN
        and "retry-after" in ok.headers["access-control-expose-headers"]
    )
    other = requests.get(f"{cors_api.url}/health", headers={"origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in other.headers  # the function's own "*" is dropped, as API Gateway does


def test_without_cors_configured_the_function_headers_pass_through():
    bridge = _bridge()
    try:
        r = requests.get(f"{bridge.url}/health", headers={"origin": ORIGIN}, timeout=10)
        assert r.headers["access-control-allow-origin"] == "*"
        assert (
            requests.options(
                f"{bridge.url}/predict", headers={"origin": ORIGIN, "access-control-request-method": "POST"}, timeout=10
            ).status_code
            == 404
        )
    finally:
        bridge.stop()


@pytest.mark.parametrize(
    ("auth", "status", "good"), [("JWT", 401, "Bearer eyJ.x.y"), ("AWS_IAM", 403, "AWS4-HMAC-SHA256 Credential=x")]
)
def test_protected_routes_refuse_callers_without_credentials(auth, status, good):
    bridge = _bridge(ApiAuth=auth, JwtIssuer="https://issuer.example.com", JwtAudience="c")
    try:
        assert requests.post(f"{bridge.url}/predict", json={}, timeout=10).status_code == status
        assert requests.get(f"{bridge.url}/model", timeout=10).status_code == status
        assert requests.get(f"{bridge.url}/health", timeout=10).status_code == 200  # public
        r = requests.post(f"{bridge.url}/predict", json={}, headers={"authorization": good}, timeout=10)
        assert r.status_code == 200 and r.json()["auth"] == good
    finally:
        bridge.stop()
