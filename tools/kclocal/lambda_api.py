"""Lambda's Invoke API for the local stack's functions, behind the local AWS endpoint.

boto3's `lambda.invoke` (the PreTraffic hook's call of predict, `kcprice failures redrive`, `kcprice precompute
run`) goes to the endpoint like every other call: kclocal.awsd checks the caller's signature and IAM policy
(lambda:InvokeFunction on the function's ARN, qualifier included), journals it, and forwards it here, to the
process that runs the functions. Answers as Lambda's Invoke does (API 2015-03-31): RequestResponse 200 with the
handler's result, or 200 with X-Amz-Function-Error: Unhandled and the error; Event 202 (queued, retried, then the
failure destination, as for S3 events); DryRun 204; 404 ResourceNotFoundException; 429 TooManyRequestsException
at the reserved concurrency. Locally a function has one version, its current code: a numeric qualifier, $LATEST
and the template's alias (AutoPublishAlias) all run it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kclocal.lambdas import FunctionError, Lambdas, TooManyRequests


def function_name(name_or_arn: str, qualifier: str | None) -> tuple[str, str | None]:
    """FunctionName may be a name, name:qualifier, a partial ARN or a full ARN (qualified or not)."""
    parts = name_or_arn.split(":")
    if name_or_arn.startswith("arn:"):
        parts = parts[6:]
    elif len(parts) >= 3 and parts[1] == "function":  # 123456789012:function:name[:qualifier]
        parts = parts[2:]
    name = parts[0]
    if len(parts) > 1:
        qualifier = qualifier or parts[1]
    return name, qualifier


class LambdaApi:
    def __init__(self, lambdas: Lambdas, physical_names: Callable[[], dict[str, str]], aliases: set[str]):
        self.lambdas, self._names, self.aliases = lambdas, physical_names, aliases
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, headers, payload = api.handle(
                    unquote(url.path.removeprefix("/invoke/")), query.get("qualifier"), query.get("type"), body
                )
                self.send_response(status)
                for k, v in {"content-type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LambdaApi:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="lambda-api").start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _error(status: int, kind: str, message: str) -> tuple[int, dict[str, str], bytes]:
        return status, {"x-amzn-errortype": kind}, json.dumps({"Type": "User", "message": message}).encode()

    def handle(
        self, requested: str, qualifier: str | None, kind: str | None, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        name, qualifier = function_name(requested, qualifier)
        logical = {physical: logical for logical, physical in self._names().items()}.get(name)
        if logical is None or (
            qualifier not in (None, "$LATEST") and not qualifier.isdigit() and qualifier not in self.aliases
        ):
            return self._error(404, "ResourceNotFoundException", f"Function not found: {requested}")
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return self._error(400, "InvalidRequestContentException", "Could not parse request body into json")
        version = {"x-amz-executed-version": "$LATEST" if not (qualifier or "").isdigit() else str(qualifier)}
        if kind == "DryRun":
            return 204, version, b""
        if kind == "Event":
            self.lambdas.invoke_async(logical, event)
            return 202, {}, b""
        try:
            result = self.lambdas.invoke(logical, event)
        except TooManyRequests as e:
            return self._error(429, "TooManyRequestsException", str(e))
        except FunctionError as e:
            payload = json.dumps({"errorType": e.error_type, "errorMessage": e.error_message}).encode()
            return 200, {**version, "x-amz-function-error": "Unhandled"}, payload
        return 200, version, json.dumps(result).encode()
