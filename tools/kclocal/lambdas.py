"""Lambda, locally: every execution environment is its own process running kclocal.lambda_runtime against the
Runtime API served here, so each function sees only its own environment variables and credentials.

What it does as Lambda does (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html):
- environments are reused while warm, and one handles one invocation at a time; a function never has more of them
  than its reserved concurrency (else a local cap): a synchronous call beyond it is throttled (TooManyRequests), an
  asynchronous event waits in the function's queue;
- an invocation that outlives the function's Timeout is killed ("Task timed out"); a process that dies mid-flight
  (killed, out of memory, os._exit) fails the invocation with Runtime.ExitError, and its environment is discarded;
- asynchronous events (S3 notifications, schedules) are retried after a function error 1 and then 2 minutes later
  (`retry_delays`, scaled down in tests), then a record goes to the failure destination (sent with the function's
  own role, which must allow sqs:SendMessage, as in AWS); the request id stays the same across retries.
What it does not: memory limits, the 10 s init limit, the /tmp size, CPU share by memory size.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kclocal.template import Function

log = logging.getLogger("kclocal.lambdas")
RUNTIME = Path(__file__).with_name("lambda_runtime.py")
RETRY_DELAYS = (60.0, 120.0)  # Lambda's waits before the 2nd and 3rd attempt of an asynchronous event
INIT_GUARD = 300.0  # a busy machine may import slowly; this only catches an environment that never starts


class FunctionError(Exception):
    """An invocation ended in an error (the handler raised, timed out, or its process died)."""

    def __init__(self, function: str, request_id: str, payload: dict):
        self.function, self.request_id, self.payload = function, request_id, payload
        self.error_type = str(payload.get("errorType", "Unhandled"))
        self.error_message = str(payload.get("errorMessage", ""))
        super().__init__(f"{function}: {self.error_type}: {self.error_message}")


class TooManyRequests(Exception):
    """Every environment the function may have is busy (Lambda's 429 for a synchronous call)."""


@dataclass
class _Invocation:
    request_id: str
    payload: bytes
    timeout: float
    arn: str
    delivered: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    deadline_ms: int = 0
    result: bytes | None = None
    error: dict | None = None


class _Environment:
    def __init__(self, owner: Lambdas, fn: Function, env: dict[str, str]):
        self.fn, self.id = fn, uuid.uuid4().hex[:12]
        self.inbox: list[_Invocation] = []
        self.cv = threading.Condition()
        self.current: _Invocation | None = None
        self.ready = threading.Event()
        self.init_error: dict | None = None
        self.exit_reason: str | None = None
        self.dead = threading.Event()
        self.discarded = False  # killed: never handed another invocation, even before its process is gone
        env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{owner.port}/{self.id}"}
        self.arn = function_arn(env)
        self.proc = subprocess.Popen(
            [owner.python, str(RUNTIME)],
            env=env,
            cwd=fn.code_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._pump, args=(owner,), daemon=True, name=f"log-{fn.name}").start()

    def _pump(self, owner: Lambdas) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            owner.write_log(self.fn.name, line.decode(errors="replace").rstrip("\n"))
        code = self.proc.wait()
        self.exit_reason = f"signal: {_signal_name(-code)}" if code < 0 else f"exit status {code}"
        self.dead.set()
        with self.cv:
            inv = self.current
            if inv is not None and not inv.done.is_set():
                inv.error = {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {inv.request_id} Error: Runtime exited with error: {self.exit_reason}",
                }
                inv.done.set()
            self.cv.notify_all()
        with owner.lock:
            owner.forget(self)

    def next_invocation(self) -> _Invocation | None:
        self.ready.set()
        with self.cv:
            while not self.inbox and not self.dead.is_set():
                self.cv.wait(1.0)
            if self.dead.is_set():
                return None
            inv = self.inbox.pop(0)
            inv.deadline_ms = int((time.time() + inv.timeout) * 1000)
            self.current = inv
        inv.delivered.set()
        return inv

    def submit(self, inv: _Invocation) -> None:
        with self.cv:
            self.inbox.append(inv)
            self.cv.notify_all()

    def finish(self, request_id: str, result: bytes | None, error: dict | None) -> bool:
        with self.cv:
            inv = self.current
            if inv is None or inv.request_id != request_id:
                return False
            inv.result, inv.error = result, error
            self.current = None
            inv.done.set()
            return True

    def kill(self) -> None:
        self.discarded = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


def _signal_name(num: int) -> str:
    import signal

    try:
        return signal.Signals(num).name.removeprefix("SIG").lower().replace("kill", "killed")
    except ValueError:
        return str(num)


@dataclass(order=True)
class _AsyncEvent:
    ready_at: float
    seq: int
    function: str = field(compare=False)
    event: Any = field(compare=False)
    request_id: str = field(compare=False)
    created: float = field(compare=False)
    on_done: Callable[[Any, FunctionError | None], None] | None = field(compare=False, default=None)
    attempts: int = field(compare=False, default=0)


class Lambdas:
    """The functions of one stack, invocable synchronously (HTTP API) and asynchronously (S3, schedules)."""

    def __init__(
        self,
        functions: dict[str, Function],
        environment: Callable[[Function], dict[str, str]],
        send_failure: Callable[[Function, dict], None],
        log_dir: Path | None = None,
        max_environments: int = 2,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        python: str = sys.executable,
        echo: Callable[[str], None] | None = None,
    ):
        self.functions = functions
        self._environment, self._send_failure = environment, send_failure
        self.log_dir, self.max_environments, self.retry_delays = log_dir, max_environments, retry_delays
        self.python, self.echo = python, echo
        self.lock = threading.Condition()
        self._idle: dict[str, list[_Environment]] = {f: [] for f in functions}
        self._busy: dict[str, set[_Environment]] = {f: set() for f in functions}
        self._by_id: dict[str, _Environment] = {}
        self._queue: list[_AsyncEvent] = []
        self._seq = itertools.count()
        self._stopping = threading.Event()
        self._running_async = 0
        self._log_lock = threading.Lock()
        self.invocations: list[dict] = []  # every finished invocation: function, request id, ok, seconds, attempt
        self._server = _QuietServer(("127.0.0.1", 0), _runtime_api(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Lambdas:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="runtime-api").start()
        threading.Thread(target=self._dispatch, daemon=True, name="async-dispatch").start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.recycle()
        with self.lock:
            self.lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def recycle(self, function: str | None = None) -> None:
        """Discard environments (all, or one function's), as a deployment does: the next invocation starts cold."""
        with self.lock:
            envs = [e for f, idle in self._idle.items() if function in (None, f) for e in idle]
            envs += [e for f, busy in self._busy.items() if function in (None, f) for e in busy]
        for env in envs:
            env.kill()
        for env in envs:
            env.dead.wait(10)

    def limit(self, fn: Function) -> int:
        return fn.reserved_concurrency if fn.reserved_concurrency is not None else self.max_environments

    def environments(self, function: str) -> list[_Environment]:
        with self.lock:
            return [*self._idle[function], *self._busy[function]]

    def forget(self, env: _Environment) -> None:  # called with self.lock held
        self._by_id.pop(env.id, None)
        if env in self._idle[env.fn.name]:
            self._idle[env.fn.name].remove(env)
        self._busy[env.fn.name].discard(env)
        self.lock.notify_all()

    # --- environments ---------------------------------------------------------------------------------------
    def _acquire(self, fn: Function, wait: bool) -> _Environment:
        with self.lock:
            while True:
                idle = self._idle[fn.name]
                while idle:
                    env = idle.pop()
                    if not (env.dead.is_set() or env.discarded):
                        self._busy[fn.name].add(env)
                        return env
                if len(self._busy[fn.name]) < self.limit(fn):
                    env = _Environment(self, fn, self._environment(fn))
                    self._by_id[env.id] = env
                    self._busy[fn.name].add(env)
                    return env
                if not wait or self._stopping.is_set():
                    raise TooManyRequests(f"{fn.name}: all {self.limit(fn)} environment(s) busy")
                self.lock.wait(1.0)

    def _release(self, fn: Function, env: _Environment) -> None:
        with self.lock:
            self._busy[fn.name].discard(env)
            if not (env.dead.is_set() or env.discarded) and env.id in self._by_id:
                self._idle[fn.name].append(env)
            self.lock.notify_all()

    def write_log(self, function: str, line: str) -> None:
        if self.log_dir is not None:
            with self._log_lock, open(self.log_dir / f"{function}.log", "a") as f:
                f.write(line + "\n")
        if self.echo is not None:
            self.echo(f"[{function}] {line}")

    # --- invoking -------------------------------------------------------------------------------------------
    def invoke(self, function: str, event: Any, request_id: str | None = None) -> Any:
        """RequestResponse: the handler's result, or FunctionError; TooManyRequests at the reserved concurrency.
        (Below AWS's account limit a call waits for a local environment instead: the local cap is this machine's.)"""
        fn = self.functions[function]
        env = self._acquire(fn, wait=fn.reserved_concurrency is None)
        return self._run(fn, env, event, request_id or str(uuid.uuid4()))

    def _run(self, fn: Function, env: _Environment, event: Any, request_id: str, attempt: int = 1) -> Any:
        t0 = time.monotonic()
        inv = _Invocation(request_id, json.dumps(event).encode(), fn.timeout, env.arn)
        ok = False
        try:
            if not _first(env.ready, env.dead, timeout=INIT_GUARD) or env.init_error or env.dead.is_set():
                env.kill()
                raise FunctionError(
                    fn.name,
                    request_id,
                    env.init_error
                    or {
                        "errorType": "Runtime.ExitError",
                        "errorMessage": f"RequestId: {request_id} Error: Runtime exited during init "
                        f"({env.exit_reason or 'did not start'})",
                    },
                )
            self.write_log(fn.name, f"START RequestId: {request_id} Version: $LATEST")
            env.submit(inv)
            _first(inv.delivered, env.dead, timeout=None)
            if not inv.delivered.is_set():  # the process died before taking the invocation
                inv.error = {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {env.exit_reason}",
                }
            elif not inv.done.wait(max(inv.deadline_ms / 1000 - time.time(), 0) + 0.05):
                env.kill()
                inv.error = {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after {fn.timeout:.2f} seconds",
                }
            if inv.error is not None:
                raise FunctionError(fn.name, request_id, inv.error)
            ok = True
            return json.loads(inv.result or b"null")
        finally:
            seconds = time.monotonic() - t0
            self.write_log(fn.name, f"END RequestId: {request_id}")
            self.write_log(fn.name, f"REPORT RequestId: {request_id}\tDuration: {seconds * 1000:.2f} ms")
            self.invocations.append(
                {"function": fn.name, "request_id": request_id, "ok": ok, "seconds": seconds, "attempt": attempt}
            )
            self._release(fn, env)

    def invoke_async(
        self, function: str, event: Any, on_done: Callable[[Any, FunctionError | None], None] | None = None
    ) -> str:
        """Event invocation: queued, retried on function errors, reported to the failure destination."""
        request_id = str(uuid.uuid4())
        item = _AsyncEvent(time.monotonic(), next(self._seq), function, event, request_id, time.time(), on_done)
        with self.lock:
            heapq.heappush(self._queue, item)
            self.lock.notify_all()
        return request_id

    def pending(self) -> int:
        with self.lock:
            return len(self._queue) + self._running_async

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            with self.lock:
                now = time.monotonic()
                item = next((i for i in sorted(self._queue) if i.ready_at <= now and self._has_slot(i.function)), None)
                if item is None:
                    self.lock.wait(0.2)
                    continue
                self._queue.remove(item)
                heapq.heapify(self._queue)
                fn = self.functions[item.function]
                env = self._acquire(fn, wait=True)
                self._running_async += 1
            threading.Thread(target=self._run_async, args=(fn, env, item), daemon=True).start()

    def _has_slot(self, function: str) -> bool:  # with self.lock held
        fn = self.functions[function]
        return bool(self._idle[function]) or len(self._busy[function]) < self.limit(fn)

    def _run_async(self, fn: Function, env: _Environment, item: _AsyncEvent) -> None:
        item.attempts += 1
        try:
            result = self._run(fn, env, item.event, item.request_id, item.attempts)
        except FunctionError as e:
            retry = item.attempts <= fn.max_retries and time.time() - item.created < fn.max_event_age
            log.warning("%s failed (attempt %d of %d): %s", fn.name, item.attempts, fn.max_retries + 1, e)
            if retry and not self._stopping.is_set():
                item.ready_at = time.monotonic() + self.retry_delays[min(item.attempts, len(self.retry_delays)) - 1]
                with self.lock:
                    heapq.heappush(self._queue, item)
                    self._running_async -= 1
                    self.lock.notify_all()
                return
            self._fail(fn, item, e)
            self._done(item, None, e)
        else:
            self._done(item, result, None)
        with self.lock:
            self._running_async -= 1
            self.lock.notify_all()

    def _done(self, item: _AsyncEvent, result: Any, error: FunctionError | None) -> None:
        if item.on_done is not None:
            try:
                item.on_done(result, error)
            except Exception:
                log.exception("on_done of %s", item.function)

    def _fail(self, fn: Function, item: _AsyncEvent, e: FunctionError) -> None:
        """Lambda's invocation record for an event that failed every attempt, sent to the OnFailure destination."""
        if not fn.on_failure:
            log.error(
                "%s: event %s discarded after %d attempts (no failure destination)",
                fn.name,
                item.request_id,
                item.attempts,
            )
            return
        record = {
            "version": "1.0",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": item.request_id,
                "functionArn": function_arn(self._environment(fn)) + ":$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": item.attempts,
            },
            "requestPayload": item.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": e.payload,
        }
        try:
            self._send_failure(fn, record)
        except Exception:  # Lambda would count DestinationDeliveryFailures; here it is at least loud
            log.exception("%s: could not deliver the failure record of %s", fn.name, item.request_id)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # An environment killed mid-request (a timeout, a test's SIGKILL) drops its connection: expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _first(a: threading.Event, b: threading.Event, timeout: float | None) -> bool:
    """Wait until either event is set (or the timeout passes); True if one was."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not (a.is_set() or b.is_set()):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        a.wait(0.05)
    return True


def _runtime_api(owner: Lambdas) -> type[BaseHTTPRequestHandler]:
    prefix = "/2018-06-01/runtime/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _env(self) -> tuple[_Environment | None, str]:
            env_id, _, rest = self.path.lstrip("/").partition("/")
            env = owner._by_id.get(env_id)
            return env, "/" + rest

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            env, path = self._env()
            if env is None or path != prefix + "invocation/next":
                return self._reply(404)
            inv = env.next_invocation()
            if inv is None:
                self.close_connection = True
                return self._reply(410)
            self._reply(
                200,
                inv.payload,
                {
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": inv.arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
                    "content-type": "application/json",
                },
            )

        def do_POST(self) -> None:
            env, path = self._env()
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if env is None or not path.startswith(prefix):
                return self._reply(404)
            parts = path[len(prefix) :].split("/")
            if parts == ["init", "error"]:
                env.init_error = json.loads(body or b"{}")
                return self._reply(202, b'{"status":"OK"}')
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                error = json.loads(body or b"{}") if parts[2] == "error" else None
                ok = env.finish(parts[1], body if error is None else None, error)
                return self._reply(202 if ok else 400, b'{"status":"OK"}')
            return self._reply(404)

    return Handler


def function_arn(env: dict[str, str]) -> str:
    return f"arn:aws:lambda:{env.get('AWS_REGION')}:123456789012:function:{env.get('AWS_LAMBDA_FUNCTION_NAME')}"


def environment_variables(
    fn: Function, physical_name: str, region: str, credentials: dict[str, str], threads: int
) -> dict[str, str]:
    """What Lambda puts in an execution environment: the template's variables, the reserved ones, credentials."""
    env = {k: v for k, v in fn.env.items()}
    env.update(
        {
            "_HANDLER": fn.handler,
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "KCLOCAL_LAYER_PATHS": os.pathsep.join(str(p) for p in fn.layer_paths),
            "AWS_LAMBDA_FUNCTION_NAME": physical_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.log_group or f"/aws/lambda/{physical_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{dt.date.today():%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if fn.snap_start else "on-demand",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",  # logs reach the log file as they are written, as Lambda's runtime does
            # The emulated CPU: OpenMP (scikit-learn's trees) must not run more threads than the environment has.
            "OMP_NUM_THREADS": str(threads),
            **credentials,
        }
    )
    return env
