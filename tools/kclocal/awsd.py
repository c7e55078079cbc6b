"""The local AWS endpoint: moto's server in its own process, made to refuse what AWS refuses.

    python -m kclocal.awsd --port 4566 [--journal calls.jsonl]

On 127.0.0.1 (inside the container `make sam-local` runs it in: the container's own address). What it adds to
moto (each a place where plain moto lets through what AWS refuses):
- Every request must be signed by an identity that exists (the admin below, or a function's role session), and is
  allowed only by that identity's IAM policies, evaluated by kclocal.iam: resource ARNs for S3 objects and buckets,
  DynamoDB tables and SQS queues, and condition keys (s3:prefix). moto's own check ignores conditions and, outside
  S3, resources.
- A GET or HEAD of a missing S3 key answers 403 AccessDenied to a caller who may not list that key (s3:ListBucket
  with s3:prefix = the key, as S3 checks it), and 404 only to one who may.
- Every call made by a non-admin identity is journaled (principal, action, resources, context, decision) as JSON
  lines, so tests can check what each function did against its template policy.
- It says so and exits when its port is taken (instead of waiting forever).
- Lambda's Invoke (forwarded to the local stack's functions, kclocal.lambda_api) and CodeDeploy's
  PutLifecycleEventHookExecutionStatus (recorded), which moto does not serve here, after the same checks.
Routes of its own: POST /_kclocal/reset (every service, then the admin again; moto's /moto-api/reset too),
GET /_kclocal/health, GET /_kclocal/changes (writes per service since start, for saving the state),
POST /_kclocal/lambda-target (the URL of the process running the functions), /_kclocal/codedeploy/deployments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

# The identity the local stack itself (provisioning, tests, `kcprice-local`) signs with. Local only.
ADMIN_USER = "kclocal-admin"
ADMIN_KEY = "AKIAKCLOCALADMIN0001"
ADMIN_SECRET = "kclocal-admin-secret-not-a-real-key"
ACCOUNT = "123456789012"
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

_caller = threading.local()  # the identity of the request being served (set by the IAM check)
# Writes per service since start, so the local stack saves its state only when something changed.
CHANGES: dict[str, int] = {"s3": 0, "dynamodb": 0, "sqs": 0}
_WRITES = {
    "PutObject",
    "DeleteObject",
    "DeleteObjects",
    "CopyObject",
    "CompleteMultipartUpload",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "SendMessage",
    "SendMessageBatch",
    "DeleteMessage",
    "DeleteMessageBatch",
    "PurgeQueue",
}


class Journal:
    def __init__(self, path: str | None):
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115 - lives as long as the server
        self._lock = threading.Lock()

    def write(self, entry: dict) -> None:
        if self._file:
            with self._lock:
                self._file.write(json.dumps(entry) + "\n")


def _resources(service: str, region: str, account: str, body: bytes, data: dict, default: str) -> list[str]:
    """The resources a DynamoDB or SQS call acts on, from its request (moto passes '*')."""
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    if service == "dynamodb":
        tables = set()
        if "TableName" in doc:
            tables.add(doc["TableName"])
        tables.update(doc.get("RequestItems", {}))
        for item in doc.get("TransactItems", []):
            tables.update(op["TableName"] for op in item.values() if isinstance(op, dict) and "TableName" in op)
        return [f"arn:aws:dynamodb:{region}:{account}:table/{t}" for t in sorted(tables)] or [default]
    if service == "secretsmanager" and isinstance(doc.get("SecretId"), str):
        # IAM matches the secret's full ARN (its name plus a random suffix), whichever way the caller names it.
        secret_id = doc["SecretId"]
        if secret_id.startswith("arn:"):
            return [secret_id]
        from moto.backends import get_backend

        secret = get_backend("secretsmanager")[account][region].secrets.get(secret_id)
        return [secret.arn if secret is not None else f"arn:aws:secretsmanager:{region}:{account}:secret:{secret_id}"]
    if service == "sqs":
        url = doc.get("QueueUrl") or (data.get("QueueUrl") if isinstance(data, dict) else None)
        if isinstance(url, list):
            url = url[0]
        if url:
            return [f"arn:aws:sqs:{region}:{account}:{url.rstrip('/').rsplit('/', 1)[-1]}"]
    return [default]


def _policy_documents(access_key: Any) -> list[dict | str]:
    docs: list[dict | str] = []
    for policy in access_key.collect_policies():
        if isinstance(policy, str):
            docs.append(policy)
        elif isinstance(policy, dict):
            docs.append(policy["policy_document"])
        else:  # a managed Policy object: its default version
            docs.append(next(v.document for v in policy.versions if v.is_default))
    return docs


def patch_moto(journal: Journal) -> None:
    from moto.iam import access_control
    from moto.s3 import responses as s3_responses
    from moto.s3.exceptions import MissingKey, S3AccessDeniedError

    from kclocal import iam

    # HEAD of a version needs s3:GetObjectVersion, as GET does (moto maps every HEAD to GetObject).
    s3_responses.ACTION_MAP["KEY"]["HEAD"] = {"versionId": "GetObjectVersion", "DEFAULT": "GetObject"}

    def check_action_permitted(self, resource: str) -> None:
        principal = self._access_key.arn
        _caller.value = None
        service, _, action = self._action.partition(":")
        if action in _WRITES and service in CHANGES:
            CHANGES[service] += 1
        if principal.endswith(f":user/{ADMIN_USER}"):
            return
        query = {k: v[0] for k, v in parse_qs(urlsplit(self._path).query, keep_blank_values=True).items()}
        context: dict[str, str] = {}
        if self._service == "s3":
            resources = [resource]
            for key in ("prefix", "delimiter", "max-keys"):
                if key in query:
                    context[f"s3:{key}"] = query[key]
        else:
            resources = _resources(self._service, self._region, self.account_id, self._body, self._data, resource)
        docs = _policy_documents(self._access_key)
        decisions = [iam.decide(docs, self._action, r, context) for r in resources]
        ok = all(d.allowed for d in decisions)
        journal.write(
            {
                "t": time.time(),
                "principal": principal,
                "action": self._action,
                "resources": resources,
                "context": context,
                "allowed": ok,
                "why": [d.reason for d in decisions],
            }
        )
        if not ok:
            self._raise_access_denied()
        _caller.value = (principal, docs)

    access_control.IAMRequestBase.check_action_permitted = check_action_permitted

    # Presigned URLs (query-string authentication): moto's IAM check reads only the Authorization header and fails
    # with a 500. Here the identity and expiry come from the query, as S3 takes them; an unsigned request is
    # refused (the bucket is private). The query signature itself is not recomputed.
    init = access_control.IAMRequestBase.__init__
    check_signature = access_control.IAMRequestBase.check_signature

    def __init__(self, account_id, method, path, data, body, headers, action):
        self._presigned = False
        if "Authorization" in headers:
            return init(self, account_id, method, path, data, body, headers, action)
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        if "X-Amz-Credential" not in query:
            raise S3AccessDeniedError()
        scope = query["X-Amz-Credential"].split("/")
        signed = time.mktime(time.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")) - time.timezone
        if time.time() > signed + int(query.get("X-Amz-Expires", "0")):
            raise S3AccessDeniedError()  # S3 says "Request has expired", with a 403
        self.account_id, self._method, self._path, self._data, self._body = account_id, method, path, data, body
        self._headers = dict(headers)
        if "X-Amz-Security-Token" in query:
            self._headers["X-Amz-Security-Token"] = query["X-Amz-Security-Token"]
        self._region, self._service = scope[2], scope[3]
        self._action = f"{self._service}:{action[0] if isinstance(action, list) else action}"
        try:
            self._access_key = access_control.create_access_key(account_id, "aws", scope[0], self._headers)
        except access_control.CreateAccessKeyFailure:
            raise S3AccessDeniedError() from None
        self._presigned = True

    def check_signature_unless_presigned(self):
        if not self._presigned:
            check_signature(self)

    access_control.IAMRequestBase.__init__ = __init__
    access_control.IAMRequestBase.check_signature = check_signature_unless_presigned

    def may_list(bucket: str, key: str) -> bool:
        caller = getattr(_caller, "value", None)
        if caller is None:  # the admin (or an unsigned presigned-URL check already refused elsewhere)
            return True
        principal, docs = caller
        context = {"s3:prefix": key}
        decision = iam.decide(docs, "s3:ListBucket", f"arn:aws:s3:::{bucket}", context)
        journal.write(
            {
                "t": time.time(),
                "principal": principal,
                "action": "s3:ListBucket",
                "resources": [f"arn:aws:s3:::{bucket}"],
                "context": context,
                "allowed": decision.allowed,
                "why": [decision.reason],
                "implicit": "missing key",
            }
        )
        return decision.allowed

    get_key = s3_responses.S3Response._key_response_get

    def _key_response_get(self, query, key_name):
        try:
            return get_key(self, query, key_name)
        except MissingKey:
            if not may_list(self.bucket_name, key_name):
                raise S3AccessDeniedError() from None
            raise

    head_object = s3_responses.S3Response.head_object

    def head(self, bucket_name, query, key_name, headers):
        status, response_headers, body = head_object(self, bucket_name, query, key_name, headers)
        if status == 404 and not may_list(bucket_name, key_name):
            return 403, {}, ""
        return status, response_headers, body

    s3_responses.S3Response._key_response_get = _key_response_get
    s3_responses.S3Response.head_object = head


def create_admin() -> None:
    from moto.iam.models import iam_backends

    backend = iam_backends[ACCOUNT]["aws"]
    if ADMIN_USER in backend.users:
        return
    backend.create_user("us-east-1", ADMIN_USER)
    backend.put_user_policy(ADMIN_USER, "admin", json.dumps(ADMIN_POLICY))
    key = backend.create_access_key(ADMIN_USER)
    backend.access_keys.pop(key.physical_resource_id, None)
    key.access_key_id, key.secret_access_key = ADMIN_KEY, ADMIN_SECRET
    backend.access_keys[ADMIN_KEY] = key


DATA_SERVICES = ("s3", "dynamodb", "sqs")
# Services moto does not run here, served by the endpoint itself (after the same signature and IAM checks):
# Lambda's Invoke, forwarded to the process that runs the functions (kclocal.lambda_api), which registers itself;
# CodeDeploy's PutLifecycleEventHookExecutionStatus, recorded for the deployments a test registers.
LAMBDA_TARGET: dict[str, str] = {}
DEPLOYMENTS: dict[str, dict[str, Any]] = {}  # deployment id -> {"group_arn": ..., "hooks": {execution id: status}}
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind = status, kind


def _authorize(environ: dict, body: bytes, action: str, resource: str) -> None:
    """The caller's SigV4 signature and IAM policy, checked by moto's own request class (whose permission check
    patch_moto replaced with kclocal.iam's evaluation and the journal)."""
    from moto.iam.access_control import IAMRequest
    from werkzeug.datastructures import EnvironHeaders
    from werkzeug.exceptions import HTTPException

    headers = dict(EnvironHeaders(environ))
    if "Authorization" not in headers:
        raise _Refused(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    # The path as sent (percent-encoded, as the client signed it), not as decoded into PATH_INFO.
    path = environ.get("RAW_URI") or (
        environ.get("PATH_INFO", "") + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
    )
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    try:
        request = IAMRequest(ACCOUNT, environ["REQUEST_METHOD"], path, query, body, headers, action)
        request.check_signature()
        request.check_action_permitted(resource)
    except HTTPException as e:  # moto's errors: AccessDenied, SignatureDoesNotMatch, InvalidClientTokenId
        kind = getattr(e, "error_type", "AccessDenied")
        raise _Refused(e.code or 403, f"{kind}Exception", getattr(e, "message", str(e))) from None


def _reply(start_response, status: int, body: bytes, headers: dict[str, str] | None = None) -> list[bytes]:
    from http import HTTPStatus

    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    start_response(f"{status} {phrase}", [("content-type", "application/json"), *(headers or {}).items()])
    return [body]


def _refusal(start_response, e: _Refused) -> list[bytes]:
    body = json.dumps({"__type": e.kind, "message": str(e), "Message": str(e)}).encode()
    return _reply(start_response, e.status, body, {"x-amzn-errortype": e.kind})


def _lambda_invoke(environ, start_response, name: str) -> list[bytes]:
    import urllib.error
    import urllib.request
    from urllib.parse import quote, unquote

    from kclocal.lambda_api import function_name

    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    short, qualifier = function_name(unquote(name), query.get("Qualifier"))
    region = "us-east-1"
    arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{short}" + (f":{qualifier}" if qualifier else "")
    try:
        _authorize(environ, body, "InvokeFunction", arn)
    except _Refused as e:
        return _refusal(start_response, e)
    if "url" not in LAMBDA_TARGET:
        return _refusal(start_response, _Refused(503, "ServiceException", "no local Lambda service registered"))
    kind = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
    url = f"{LAMBDA_TARGET['url']}/invoke/{quote(short)}?type={kind}" + (
        f"&qualifier={quote(qualifier)}" if qualifier else ""
    )
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=960) as r:
            status, headers, payload = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, headers, payload = e.code, dict(e.headers), e.read()
    keep = {k: v for k, v in headers.items() if k.lower().startswith("x-am")}
    return _reply(start_response, status, payload, keep)


def _codedeploy(environ, start_response, target: str) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    operation = target.rsplit(".", 1)[-1]
    if operation != "PutLifecycleEventHookExecutionStatus":
        return _refusal(start_response, _Refused(400, "UnknownOperationException", f"{operation} is not served"))
    doc = json.loads(body or b"{}")
    deployment = DEPLOYMENTS.get(doc.get("deploymentId", ""))
    try:
        _authorize(environ, body, operation, deployment["group_arn"] if deployment else "*")
    except _Refused as e:
        return _refusal(start_response, e)
    if deployment is None:
        return _refusal(start_response, _Refused(400, "DeploymentDoesNotExistException", "no such deployment"))
    if doc.get("status") not in ("Succeeded", "Failed"):
        return _refusal(start_response, _Refused(400, "InvalidLifecycleEventHookExecutionStatusException", "status"))
    deployment["hooks"][doc["lifecycleEventHookExecutionId"]] = doc["status"]
    return _reply(
        start_response,
        200,
        json.dumps({"lifecycleEventHookExecutionId": doc["lifecycleEventHookExecutionId"]}).encode(),
    )


def make_app():
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_kclocal/reset" and environ.get("QUERY_STRING") == "data":
            from moto.backends import get_backend

            for service in DATA_SERVICES:  # the data only: roles and their sessions stay valid
                backends = get_backend(service)  # (BackendDict.reset is a classmethod: it would reset IAM too)
                for per_account in backends.values():
                    per_account.reset()
                backends.clear()
            start_response("200 OK", [("content-type", "application/json")])
            return [b'{"reset": "data"}']
        if path in ("/_kclocal/reset", "/moto-api/reset"):
            from moto.moto_api._internal.models import moto_api_backend

            moto_api_backend.reset()  # every backend, IAM included: the admin is created again
            create_admin()
            start_response("200 OK", [("content-type", "application/json")])
            return [b'{"reset": true}']
        if path == "/_kclocal/changes":
            start_response("200 OK", [("content-type", "application/json")])
            return [json.dumps(CHANGES).encode()]
        if path == "/_kclocal/lambda-target":  # the local stack's process that runs the functions
            LAMBDA_TARGET["url"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
            return _reply(start_response, 200, b'{"registered": true}')
        if path == "/_kclocal/codedeploy/deployments":  # POST registers one (tests), GET lists hook statuses
            if environ["REQUEST_METHOD"] == "POST":
                doc = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
                DEPLOYMENTS[doc["deploymentId"]] = {"group_arn": doc["group_arn"], "hooks": {}}
            return _reply(start_response, 200, json.dumps(DEPLOYMENTS).encode())
        if m := _INVOKE_PATH.match(path):
            return _lambda_invoke(environ, start_response, m["name"])
        if (target := environ.get("HTTP_X_AMZ_TARGET", "")).startswith("CodeDeploy_20141006."):
            return _codedeploy(environ, start_response, target)
        if path == "/_kclocal/health":
            start_response("200 OK", [("content-type", "application/json")])
            return [b'{"status": "ok"}']
        return moto_app(environ, start_response)

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kclocal.awsd", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=4566)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 only inside a container (make sam-local)")
    p.add_argument("--journal", help="append every non-admin call here as JSON lines")
    args = p.parse_args(argv)
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # moto reads it at import: every request is authorized
    import logging

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    patch_moto(Journal(args.journal))
    create_admin()
    try:
        server = make_server(args.host, args.port, make_app(), threaded=True, request_handler=MotoRequestHandler)
    except OSError as e:
        print(f"kclocal.awsd: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 3
    print(f"READY {server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
