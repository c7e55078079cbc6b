"""`kcprice` command line: validate and train on a CSV, predict with an exported artifact."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    from kcprice.dataset import read_sales

    _, report = read_sales(Path(args.csv).read_bytes())
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


def cmd_train(args: argparse.Namespace) -> int:
    from kcprice.dataset import read_sales
    from kcprice.training import train

    t0 = time.perf_counter()
    _log(f"reading {args.csv}")
    sales, report = read_sales(Path(args.csv).read_bytes(), min_rows=args.min_rows)
    if sales is None:
        print(json.dumps(report.to_dict(), indent=2))
        _log("rejected: see the report above")
        return 1
    result = train(sales, evaluate_splits=not args.no_eval, log=_log)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.npz").write_bytes(result.artifact)
    (out / "model.json").write_text(json.dumps(result.meta, indent=2, sort_keys=True))
    _log(f"wrote {out / 'model.npz'} and model.json in {time.perf_counter() - t0:.1f}s")
    print(json.dumps({"version": result.meta["version"], "metrics": result.meta["metrics"]}, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """The evaluation protocol (kcprice.evaluation): every split, kc-price and the yardsticks, one table."""
    from kcprice import evaluation
    from kcprice.dataset import read_sales

    sales, report = read_sales(Path(args.csv).read_bytes())
    if sales is None:
        print(json.dumps(report.to_dict(), indent=2))
        return 1
    t0 = time.perf_counter()
    if args.cv:  # a choice made by cross-validation inside the temporal split's training rows (no test row seen)
        param, *values = args.cv
        train = sales.take(evaluation.split(sales, "temporal")[0])
        parsed = [int(v) if v.isdigit() else float(v) if v.replace(".", "", 1).isdigit() else v for v in values]
        result: dict[str, Any] = {
            "cv": {"param": param, "rows": "temporal split's training rows (earliest 80% by date)"}
        }
        result["cv"]["model"] = args.model
        result["cv"]["results"] = evaluation.cv_compare(train, param, parsed, log=_log, model=args.model)
    else:
        names = evaluation.QUICK if args.quick else tuple(args.splits or evaluation.FULL)
        result = evaluation.evaluate(sales, names, log=_log)
    result["seconds"] = time.perf_counter() - t0
    out = Path(args.out or ("build/selection.json" if args.cv else "build/quality.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True))
    _log(f"wrote {out} in {result['seconds']:.0f}s")
    print(json.dumps(result["cv"] if args.cv else {"summary": result["summary"], "goals": result["goals"]}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kcprice.predictor import Predictor
    from kcprice.schema import PredictRequest

    text = sys.stdin.read() if args.houses == "-" else Path(args.houses).read_text()
    if text.lstrip().startswith("["):  # a bare list of houses
        text = '{"houses": ' + text + "}"
    try:  # as JSON text, exactly as the API reads it
        req = PredictRequest.model_validate_json(text)
    except ValidationError as e:
        print(e, file=sys.stderr)
        return 2
    from kcprice.schema import predict_response

    model = Predictor.load(args.model)
    values = model.value_houses(req.houses, req.coverage)
    print(predict_response(model, req, values))  # as POST /predict answers
    return 0


def cmd_teardown(args: argparse.Namespace) -> int:
    """`sam delete` keeps the data bucket (DeletionPolicy: Retain); --delete-data removes it, every version."""
    import subprocess

    import boto3

    from kcprice.ops import delete_bucket, stack_outputs

    session = boto3.Session(region_name=args.region)
    bucket = stack_outputs(session.client("cloudformation"), args.stack)["BucketName"]
    _log(f"stack {args.stack}: data bucket {bucket}")
    if not args.yes:
        what = f"stack {args.stack}" + (f" and every object version in s3://{bucket}" if args.delete_data else "")
        if input(f"delete {what}? type the stack name to confirm: ").strip() != args.stack:
            _log("not confirmed: nothing deleted")
            return 1
    cmd = ["sam", "delete", "--stack-name", args.stack, "--no-prompts"] + (
        ["--region", args.region] * bool(args.region)
    )
    subprocess.run(cmd, check=True)
    if args.delete_data:
        delete_bucket(session.client("s3"), bucket, say=_log)
    else:
        _log(f"kept s3://{bucket} (models, datasets, reports): `kcprice stack teardown --delete-data` removes it")
    return 0


# Where operator commands act: a deployed stack's outputs (--stack, read from CloudFormation) or, without --stack,
# these variables (`eval "$(kcprice-local env)"` sets them for the local stack); --bucket overrides the bucket.
OUTPUT_VARIABLES = {
    "BucketName": "KCPRICE_BUCKET",
    "FailureQueueUrl": "KCPRICE_FAILURE_QUEUE_URL",
    "RetrainFunctionName": "KCPRICE_RETRAIN_FUNCTION",
    "PrecomputeFunctionName": "KCPRICE_PRECOMPUTE_FUNCTION",
    "IngestFunctionName": "KCPRICE_INGEST_FUNCTION",
    "ApiUrl": "KCPRICE_API_URL",
}


class Target:
    """A stack to operate on: boto3 session (endpoint from AWS_ENDPOINT_URL, like every boto3 client) and outputs."""

    def __init__(self, args: argparse.Namespace):
        import os

        import boto3

        from kcprice.ops import stack_outputs

        self.session = boto3.Session(region_name=getattr(args, "region", None))
        self.stack = getattr(args, "stack", None)
        if self.stack:
            self.outputs = stack_outputs(self.session.client("cloudformation"), self.stack)
        else:
            self.outputs = {k: os.environ[v] for k, v in OUTPUT_VARIABLES.items() if os.environ.get(v)}
        if getattr(args, "bucket", None):
            self.outputs["BucketName"] = args.bucket

    def output(self, name: str) -> str:
        if name not in self.outputs:
            raise SystemExit(
                f"kcprice: no {name}: pass --stack NAME (a deployed stack), or set {OUTPUT_VARIABLES[name]} "
                '(`eval "$(kcprice-local env)"` sets it for the local stack)'
            )
        return self.outputs[name]

    def client(self, service: str, config=None):
        return self.session.client(service, config=config)  # type: ignore[call-overload]

    @property
    def region(self) -> str:
        return self.session.region_name or "us-east-1"

    def caller(self) -> str:
        return self.client("sts").get_caller_identity()["Arn"]


def _print(out: object) -> int:
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from kcprice import ops, registry
    from kcprice.errors import ChampionChangedError, KcPriceError

    target = Target(args)
    bucket = target.output("BucketName")
    s3 = target.client("s3")
    try:
        if args.models_cmd == "list":
            out: object = ops.list_versions(s3, bucket)
        elif args.models_cmd == "show":
            out = registry.version_metadata(s3, bucket, args.version)
        elif args.models_cmd == "history":
            out = ops.champion_history(s3, bucket)
        elif args.models_cmd == "promote":
            out = ops.promote_version(s3, bucket, args.version, args.reason, target.caller())
        else:
            out = ops.rollback(s3, bucket, args.reason, target.caller())
    except ChampionChangedError:
        _log("the champion changed meanwhile (a retrain promoted one): look again, then retry")
        return 1
    except (KcPriceError, ValueError) as e:
        _log(f"refused: {e}")
        return 1
    return _print(out)


def cmd_uploads(args: argparse.Namespace) -> int:
    from kcprice import ops

    target = Target(args)
    bucket = target.output("BucketName")
    s3 = target.client("s3")
    if args.uploads_cmd == "list":
        failed: frozenset[str] = frozenset()
        if "FailureQueueUrl" in target.outputs:
            events = ops.failed_events(target.client("sqs"), target.output("FailureQueueUrl"))
            failed = frozenset(k for f in events for k in f["upload_keys"])
        return _print(ops.upload_outcomes(s3, bucket, args.limit, failed, full=args.full))
    lam = target.client("lambda")
    return _print(ops.retry_upload(s3, lam, bucket, target.output("RetrainFunctionName"), args.key, target.region))


def cmd_failures(args: argparse.Namespace) -> int:
    from kcprice import ops

    target = Target(args)
    queue = target.output("FailureQueueUrl")
    sqs = target.client("sqs")
    if args.failures_cmd == "list":
        listed = ops.failed_events(sqs, queue)
        return _print(listed if args.full else [{k: v for k, v in f.items() if k != "request_payload"} for f in listed])
    # Only the stack's own asynchronous functions: a record naming anything else stays in the queue.
    ours = {target.output("RetrainFunctionName"), target.output("PrecomputeFunctionName")}
    ours |= {f for f in [target.outputs.get("IngestFunctionName")] if f}  # stacks from before ingest lack it
    done = ops.redrive_failures(sqs, target.client("lambda"), queue, ours)
    _log(f"redrove {len(done)} failed event(s)")
    return _print(done)


def cmd_precompute(args: argparse.Namespace) -> int:
    from botocore.config import Config

    target = Target(args)
    function = target.output("PrecomputeFunctionName")
    # A run takes up to the function's 15 minutes: wait that long for the answer (botocore waits 60 s by default).
    lam = target.client("lambda", config=Config(read_timeout=960, retries={"max_attempts": 1}))
    event = {"inventory_key": args.inventory} if args.inventory else {}
    kind = "RequestResponse" if args.wait else "Event"
    out = lam.invoke(FunctionName=function, InvocationType=kind, Payload=json.dumps(event).encode())
    if not args.wait:
        _log("precompute started (asynchronously): `kcprice precompute run --wait` waits for its result")
        return _print({"status": out["StatusCode"]})
    result = json.loads(out["Payload"].read() or b"null")
    _print(result)
    return 1 if out.get("FunctionError") or (result or {}).get("status") != "written" else 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """The PreTraffic hook's checks, over HTTPS against a deployed API (or the local one)."""
    import urllib.error
    import urllib.request

    from kcprice import smoke

    target = Target(args)
    url = (args.url or target.output("ApiUrl")).rstrip("/")
    signer = None
    if args.sigv4:  # ApiAuth=AWS_IAM: sign as the caller (execute-api:Invoke)
        from botocore.auth import SigV4Auth

        credentials = target.session.get_credentials()
        if credentials is None:
            raise SystemExit("kcprice smoke --sigv4: no AWS credentials to sign with")
        signer = SigV4Auth(credentials, "execute-api", target.region)

    def call(case: smoke.Case) -> smoke.Answer:
        from botocore.awsrequest import AWSRequest

        headers = {**case.headers, "user-agent": "kcprice-smoke"}
        if args.token:
            headers["authorization"] = f"Bearer {args.token}"
        body = case.body if case.method == "POST" else None
        if signer is not None:
            request = AWSRequest(method=case.method, url=url + case.path, data=body or b"", headers=headers)
            signer.add_auth(request)
            headers = dict(request.headers.items())
        req = urllib.request.Request(url + case.path, data=body, method=case.method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return smoke.Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return smoke.Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    problems, statuses = smoke.run(call, smoke.cases(Path(args.events)))
    _print({"url": url, "statuses": statuses, "problems": problems})
    return 1 if problems else 0


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="a deployed stack: its outputs name the bucket, queue and functions")
    parser.add_argument("--region")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kcprice", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a sales CSV and print the report")
    v.add_argument("csv")
    v.set_defaults(func=cmd_validate)
    t = sub.add_parser("train", help="train on a sales CSV and export model.npz + model.json")
    t.add_argument("csv")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--no-eval", action="store_true", help="skip the random/temporal evaluation fits")
    t.add_argument("--min-rows", type=int, default=1000)
    t.set_defaults(func=cmd_train)
    ev = sub.add_parser("evaluate", help="the evaluation protocol: splits x (kc-price, yardsticks) -> a JSON table")
    ev.add_argument("csv", nargs="?", default=str(Path(__file__).resolve().parents[3] / "data" / "kc_house_data.csv"))
    ev.add_argument("--quick", action="store_true", help="random-1, group-1 and temporal only (CI)")
    ev.add_argument("--splits", nargs="*", help="names of splits to run (default: all nine)")
    ev.add_argument("--out", help="default build/quality.json (build/selection.json with --cv)")
    ev.add_argument(
        "--model",
        default="kc-price",
        choices=["kc-price", "lgbm-location"],
        help="the model whose parameter --cv varies",
    )
    ev.add_argument(
        "--cv", nargs="+", metavar=("PARAM", "VALUE"), help="compare values of a tree parameter by grouped CV instead"
    )
    ev.set_defaults(func=cmd_evaluate)
    q = sub.add_parser("predict", help='price houses: a JSON list or {"houses": [...]}, file or - for stdin')
    q.add_argument("houses")
    q.add_argument("--model", required=True, help="path to model.npz")
    q.set_defaults(func=cmd_predict)
    st = sub.add_parser("stack", help="operations on a deployed stack")
    st_sub = st.add_subparsers(dest="stack_cmd", required=True)
    td = st_sub.add_parser("teardown", help="sam delete the stack; with --delete-data also its data bucket")
    td.add_argument("--stack", required=True)
    td.add_argument("--region")
    td.add_argument("--delete-data", action="store_true", help="empty (every version) and delete the data bucket")
    td.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    td.set_defaults(func=cmd_teardown)
    m = sub.add_parser("models", help="the model registry of a deployed stack (or the local one): list, roll back")
    m_sub = m.add_subparsers(dest="models_cmd", required=True)
    for name, what in (
        ("list", "every version trained (refused challengers too), the champion and the gate's word marked"),
        ("show", "one version's metadata (metrics, lineage, libraries)"),
        ("history", "every champion the pointer has named, newest first"),
        ("promote", "make a version the champion (roll forward or back); precompute follows"),
        ("rollback", "back to the champion before this one"),
    ):
        c = m_sub.add_parser(name, help=what)
        _where(c)
        c.add_argument("--bucket", help="the data bucket itself (instead of the stack's)")
        if name in ("show", "promote"):
            c.add_argument("version")
        if name in ("promote", "rollback"):
            c.add_argument("--reason", required=True, help="why: kept in the pointer with who did it")
        c.set_defaults(func=cmd_models)
    u = sub.add_parser("uploads", help="sales files under incoming/: what became of each, run one again")
    u_sub = u.add_subparsers(dest="uploads_cmd", required=True)
    ul = u_sub.add_parser("list", help="newest first: promoted/refused/accepted/duplicate/rejected/failed/pending")
    ul.add_argument("--limit", type=int, default=20)
    ul.add_argument("--full", action="store_true", help="with each upload's whole report (validation, gate, drift)")
    ur = u_sub.add_parser("retry", help="run retrain again on an upload whose run failed (idempotent per version)")
    ur.add_argument("key", help="e.g. incoming/sales-2015-06.csv")
    for c in (ul, ur):
        _where(c)
        c.add_argument("--bucket", help="the data bucket itself (instead of the stack's)")
        c.set_defaults(func=cmd_uploads)
    f = sub.add_parser("failures", help="events that failed every attempt (the failure queue)")
    f_sub = f.add_subparsers(dest="failures_cmd", required=True)
    fl = f_sub.add_parser("list", help="each failed event: function, error, upload keys (left in the queue)")
    fl.add_argument("--full", action="store_true", help="with each event's payload")
    fr = f_sub.add_parser("redrive", help="send each failed event back to its function, then delete it")
    for c in (fl, fr):
        _where(c)
        c.set_defaults(func=cmd_failures)
    pc = sub.add_parser("precompute", help="price the inventory now")
    pc_sub = pc.add_subparsers(dest="precompute_cmd", required=True)
    pr = pc_sub.add_parser("run", help="invoke the precompute function (asynchronously unless --wait)")
    pr.add_argument("--inventory", help="an inventory key other than inventory/houses.csv")
    pr.add_argument("--wait", action="store_true", help="wait for the result (up to 15 minutes)")
    _where(pr)
    pr.set_defaults(func=cmd_precompute)
    sm = sub.add_parser("smoke", help="the PreTraffic hook's checks against a running API (events/ requests)")
    sm.add_argument("--url", help="the API's base URL (default: the stack's ApiUrl output)")
    sm.add_argument("--events", default="events", help="the folder of predict_*.json events")
    sm.add_argument("--token", help="a JWT for an API with ApiAuth=JWT")
    sm.add_argument("--sigv4", action="store_true", help="sign requests (ApiAuth=AWS_IAM)")
    _where(sm)
    sm.set_defaults(func=cmd_smoke)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
