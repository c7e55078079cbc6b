"""A Python runtime for AWS Lambda's Runtime API: the part awslambdaric plays in AWS's python3.12 image.

Standard library only, one file: the local Lambda emulator (kclocal.lambdas) runs it as each execution
environment's process, and the image `make sam-local` builds runs it as /var/runtime/bootstrap under the Runtime
Interface Emulator that `sam local` adds. Protocol:
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html

    AWS_LAMBDA_RUNTIME_API=host:port[/prefix] _HANDLER=app.handler LAMBDA_TASK_ROOT=... python lambda_runtime.py
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import urllib.request
from decimal import Decimal
from typing import Any

VERSION = "2018-06-01"


class Context:
    """What Lambda hands a handler as its second argument."""

    def __init__(self, request_id: str, deadline_ms: int, arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self._deadline_ms = deadline_ms
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    with urllib.request.urlopen(req) as resp:
        resp.read()


def _error(e: BaseException, error_type: str | None = None) -> bytes:
    return json.dumps(
        {
            "errorMessage": str(e),
            "errorType": error_type or type(e).__name__,
            "stackTrace": traceback.format_tb(e.__traceback__),
        }
    ).encode()


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):  # as awslambdaric does
        return int(o) if o == o.to_integral_value() else float(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _log_error(e: BaseException) -> None:
    # Lambda's runtime logs an unhandled error with its traceback; so does this one.
    print(f"[ERROR] {type(e).__name__}: {e}", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)
    sys.stderr.flush()


def _snapshot_and_restore(base: str) -> None:
    """SnapStart: the runtime hooks a function registered run as Lambda runs them, the before-snapshot ones after
    init and the after-restore ones before the first invocation (the snapshot itself is the same process here)."""
    try:
        import snapshot_restore_py as hooks  # in Lambda's runtime; locally the PyPI package of the same name
    except ImportError:
        return
    for phase in (hooks.get_before_snapshot(), hooks.get_after_restore()):
        for func, args, kwargs in phase:
            try:
                func(*args, **kwargs)
            except Exception as e:  # a failing hook fails the environment, as in Lambda
                _log_error(e)
                _post(f"{base}/init/error", _error(e, "Runtime.SnapStartHookError"))
                sys.exit(1)


def main() -> None:
    base = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/{VERSION}/runtime"
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    extra = [p for p in os.environ.get("KCLOCAL_LAYER_PATHS", "/opt/python").split(os.pathsep) if p]
    sys.path[:0] = [task_root, *extra]
    os.chdir(task_root)
    handler_name = sys.argv[1] if len(sys.argv) > 1 else os.environ["_HANDLER"]
    try:
        module, _, function = handler_name.rpartition(".")
        handler = getattr(importlib.import_module(module), function)
    except Exception as e:  # the init phase failed: report it, as awslambdaric does, and exit
        _log_error(e)
        _post(
            f"{base}/init/error",
            _error(e, "Runtime.ImportModuleError"),
            {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
        )
        sys.exit(1)
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        _snapshot_and_restore(base)
    while True:
        with urllib.request.urlopen(f"{base}/invocation/next") as resp:
            request_id = resp.headers["Lambda-Runtime-Aws-Request-Id"]
            deadline_ms = int(resp.headers["Lambda-Runtime-Deadline-Ms"])
            arn = resp.headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
            trace = resp.headers.get("Lambda-Runtime-Trace-Id")
            payload = resp.read()
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        try:
            result = handler(json.loads(payload), Context(request_id, deadline_ms, arn))
            try:
                body = json.dumps(result, default=_default).encode()
            except (TypeError, ValueError) as e:
                _log_error(e)
                _post(f"{base}/invocation/{request_id}/error", _error(e, "Runtime.MarshalError"))
                continue
            _post(f"{base}/invocation/{request_id}/response", body)
        except Exception as e:
            _log_error(e)
            _post(
                f"{base}/invocation/{request_id}/error", _error(e), {"Lambda-Runtime-Function-Error-Type": "Unhandled"}
            )
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


if __name__ == "__main__":
    main()
