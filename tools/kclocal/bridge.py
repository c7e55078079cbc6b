"""HTTP on localhost -> HTTP API v2 events -> the real PredictFunction handler, for the routes the template
declares. Like API Gateway: unknown routes are 404 {"message": "Not Found"}, bodies over 10 MB are 413; with CORS
configured (CorsAllowedOrigins) preflights are answered here and allowed origins get the headers; routes behind an
authorizer (ApiAuth) refuse requests without credentials (401/403; locally the credentials are not verified)."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kclocal.events import http_event

log = logging.getLogger(__name__)
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit


def compile_routes(routes: list[tuple[str, str, str]]) -> list[tuple[str, re.Pattern, str, str]]:
    """(METHOD, /houses/{house_id}/price, function) -> (METHOD, regex, route key, function)."""
    out = []
    for method, path, function in routes:
        pattern = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", path)
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        out.append((method, re.compile(f"^{pattern}$"), f"{method} {path}", function))
    return out


class Bridge:
    def __init__(
        self,
        routes: list[tuple[str, str, str]],
        invoke: Callable[[str, dict], Any],
        port: int = 0,
        cors: dict | None = None,
        security: dict[str, str] | None = None,
    ):
        """cors: the API's CORS configuration (x-amazon-apigateway-cors); security: route key -> the authorizer a
        route requires (AWS_IAM, or a JWT authorizer's name)."""
        self.routes = compile_routes(routes)
        self.cors, self.security = cors or {}, security or {}
        self._invoke = invoke
        self.statuses: Counter[int] = Counter()  # every response by status code, for fuzzing and load reports
        self._stats_lock = threading.Lock()
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the handlers log every request already
                pass

            def _handle(self):
                bridge.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _handle

            def send_error(self, code, message=None, explain=None):
                # http.server answers what it cannot parse (an unknown method, a bad request line) with an HTML
                # page; API Gateway answers JSON. Unknown methods are routes that do not exist: 404, as there.
                status, text = (404, "Not Found") if code == 501 else (code, message or "Bad Request")
                body = json.dumps({"message": text}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="bridge", daemon=True)

    def start(self) -> Bridge:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path, _, query = req.path.partition("?")
        length = int(req.headers.get("content-length") or 0)
        if length > MAX_BODY:
            return self._send(req, 413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
        body = req.rfile.read(length) if length else None
        if self.cors and req.command == "OPTIONS" and req.headers.get("access-control-request-method"):
            return self._send(req, 204, self._preflight(req), b"")  # API Gateway answers preflights itself
        for method, pattern, route_key, function in self.routes:
            m = pattern.match(path)
            if m and method == req.command:
                if refused := self._unauthorized(req, route_key):
                    return self._send(req, *refused)
                event = http_event(
                    req.command, path, route_key, body, dict(req.headers.items()), query, m.groupdict() or None
                )
                try:
                    resp = self._invoke(function, event)
                except Exception:  # a crashed or throttled invocation: API Gateway answers 500, so does the bridge
                    log.exception("%s failed on %s", function, route_key)
                    return self._send(
                        req, 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
                    )
                return self._respond(req, resp)
        return self._send(req, 404, {"content-type": "application/json"}, b'{"message":"Not Found"}')

    def _respond(self, req: BaseHTTPRequestHandler, resp: dict) -> None:
        body = resp.get("body") or ""
        raw = base64.b64decode(body) if resp.get("isBase64Encoded") else body.encode()
        headers = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
        for k, values in (resp.get("multiValueHeaders") or {}).items():
            headers[k.lower()] = ", ".join(values)
        if self.cors:  # API Gateway's CORS headers replace any the function sent
            headers = {k: v for k, v in headers.items() if not k.startswith("access-control-")}
        self._send(req, int(resp.get("statusCode", 200)), headers, raw, resp.get("cookies") or [])

    def _unauthorized(self, req: BaseHTTPRequestHandler, route_key: str) -> tuple[int, dict, bytes] | None:
        """A protected route without credentials is refused before the function runs, as API Gateway does.
        Locally the credentials are not verified (no issuer keys, no IAM for callers of the API)."""
        kind = self.security.get(route_key)
        auth = req.headers.get("authorization", "")
        json_type = {"content-type": "application/json"}
        if kind == "AWS_IAM" and not auth.startswith("AWS4-HMAC-SHA256 "):
            return 403, json_type, b'{"message":"Forbidden"}'
        if kind and kind != "AWS_IAM" and not auth.startswith("Bearer "):
            return 401, {**json_type, "www-authenticate": "Bearer"}, b'{"message":"Unauthorized"}'
        return None

    def _allowed_origin(self, req: BaseHTTPRequestHandler) -> str | None:
        origin = req.headers.get("origin")
        allowed = self.cors.get("allowOrigins", [])
        if not origin or not self.cors:
            return None
        return "*" if "*" in allowed else origin if origin in allowed else None

    def _preflight(self, req: BaseHTTPRequestHandler) -> dict[str, str]:
        origin = self._allowed_origin(req)
        if origin is None:
            return {}
        return {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": ",".join(self.cors.get("allowMethods", [])),
            "access-control-allow-headers": ",".join(self.cors.get("allowHeaders", [])),
            "access-control-max-age": str(self.cors.get("maxAge", 0)),
        }

    def _send(self, req, status: int, headers: dict, body: bytes, cookies: list[str] = ()) -> None:
        with self._stats_lock:
            self.statuses[status] += 1
        req.send_response(status)
        if (origin := self._allowed_origin(req)) is not None:  # None without CORS configured
            headers["access-control-allow-origin"] = origin
            if expose := self.cors.get("exposeHeaders"):
                headers["access-control-expose-headers"] = ",".join(expose)
            headers.setdefault("vary", "Origin")
        headers = {**headers, "content-length": str(len(body))}
        for k, v in headers.items():
            if k not in ("transfer-encoding", "connection"):
                req.send_header(k, v)
        for c in cookies:
            req.send_header("set-cookie", c)
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)
