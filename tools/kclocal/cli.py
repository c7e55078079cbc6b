"""`kcprice-local`: the whole kc-price system on this machine (no AWS account, no Docker).

kcprice-local up [--fresh] [--aws-port 4566] [--api-port 4567]   start (and keep its data across restarts)
kcprice-local upload FILE [--inventory]                          what `aws s3 cp` would do, then the outcome
kcprice-local demo                                               the scripted story against a running stack
kcprice-local env                                                exports for the AWS CLI / boto3 / sam local
kcprice-local credentials FUNCTION                               a function's role, as shell exports
kcprice-local marketplace add-sales FILE                         new sales into the marketplace database
kcprice-local marketplace ingest                                 export them now (the ingest function)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from kclocal.events import EXAMPLE_HOUSE, LOCAL_BUCKET

DEFAULT_AWS_PORT = 4566
DEFAULT_API_PORT = 4567  # not 3000: that is `sam local start-api`'s default
STATE = Path(__file__).resolve().parents[2] / ".kclocal" / "state"


def cmd_up(args: argparse.Namespace) -> int:
    from kclocal.stack import LocalStack

    threads = args.threads or max(1, (os.cpu_count() or 2) // 2)
    stack = LocalStack(
        args.aws_port,
        args.api_port,
        {"ModelTtlSeconds": str(args.model_ttl)},
        state_dir=args.state,
        fresh=args.fresh,
        threads=threads,
        echo_logs=args.logs,
    )
    try:
        stack.start()
    except OSError as e:
        print(
            f"kcprice-local: cannot start: {e}. Is another local stack running? Stop it (Ctrl-C in its terminal) "
            "or choose other ports: make local AWS_PORT=4576 API_PORT=4577",
            file=sys.stderr,
        )
        return 1
    try:
        if not args.no_seed:
            stack.seed()
        api = stack.bridge.url
        print(
            f"""
ready (functions run OpenMP on {threads} thread(s); data kept in {args.state}). Try:
  curl -s {api}/health
  curl -s {api}/predict -H 'content-type: application/json' -d '{json.dumps({"houses": [EXAMPLE_HOUSE]})}'
  curl -s {api}/houses/7129300520/price
  curl -s {api}/model | head -c 600
  .venv/bin/kcprice-local upload new_sales.csv      # retrains; prints the outcome
  .venv/bin/kcprice-local marketplace add-sales new_sales.csv && .venv/bin/kcprice-local marketplace ingest
                                                    # the same through the marketplace's PostgreSQL
  make demo                                         # the scripted story, in another terminal
  eval "$(.venv/bin/kcprice-local env)"             # then the AWS CLI / boto3 talk to this stack
Ctrl-C stops everything (the data stays: --fresh starts empty).""",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping")
    finally:
        stack.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from kclocal.demo import run_story

    run_story(args.api, args.endpoint, args.bucket, args.table)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    """Put a file where the system reads it and wait for what happened to it."""
    from kclocal.demo import wait_for_outcome
    from kclocal.stack import session

    path = Path(args.file)
    if not path.is_file():
        print(f"kcprice-local: no such file: {path}", file=sys.stderr)
        return 2
    s3 = session(args.endpoint).client("s3", endpoint_url=args.endpoint)
    key = args.key or ("inventory/houses.csv" if args.inventory else f"incoming/{path.name}")
    put = s3.put_object(Bucket=args.bucket, Key=key, Body=path.read_bytes())
    print(f"uploaded {path} to s3://{args.bucket}/{key} (version {put.get('VersionId')})", flush=True)
    if args.inventory or args.no_wait:
        return 0
    report = wait_for_outcome(s3, args.bucket, key, put.get("VersionId"), args.timeout)
    print(
        json.dumps(
            {
                k: report.get(k)
                for k in ("decision", "reason", "challenger_version", "champion_version")
                if report.get(k) is not None
            },
            indent=2,
        )
    )
    return 0 if report["decision"] in ("promoted", "refused", "duplicate", "accepted") else 1


def local_outputs(endpoint: str, api: str) -> dict[str, str]:
    """The local stack's equivalents of the template's Outputs (names are deterministic locally)."""
    from kclocal import template

    spec = template.load(endpoint=endpoint)
    return {
        "BucketName": spec.bucket,
        "FailureQueueUrl": spec.queue_url("FailureQueue", endpoint),
        "RetrainFunctionName": spec.functions["RetrainFunction"].physical,
        "PrecomputeFunctionName": spec.functions["PrecomputeFunction"].physical,
        "IngestFunctionName": spec.functions["IngestFunction"].physical,
        "ApiUrl": api,
    }


def env_values(endpoint: str, api: str) -> dict[str, str]:
    """The variables that point boto3, the AWS CLI and `kcprice` (its KCPRICE_* outputs) at the local stack."""
    from kclocal.awsd import ADMIN_KEY, ADMIN_SECRET
    from kcprice.cli import OUTPUT_VARIABLES

    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ADMIN_KEY,
        "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        **{OUTPUT_VARIABLES[k]: v for k, v in local_outputs(endpoint, api).items()},
    }


def cmd_env(args: argparse.Namespace) -> int:
    """Exports for boto3, the AWS CLI and `kcprice` (its operator commands read the KCPRICE_* variables)."""
    import shlex

    values = env_values(args.endpoint, args.api)
    print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items()))
    return 0


def cmd_credentials(args: argparse.Namespace) -> int:
    """A session of a function's role on the local endpoint, as shell exports (for `sam local` by hand)."""
    from kclocal.stack import session

    admin = session(args.endpoint)
    c = admin.client("sts", endpoint_url=args.endpoint).assume_role(
        RoleArn=f"arn:aws:iam::123456789012:role/{args.function}Role", RoleSessionName=args.function
    )["Credentials"]
    print(
        f"export AWS_ACCESS_KEY_ID={c['AccessKeyId']} AWS_SECRET_ACCESS_KEY={c['SecretAccessKey']} "
        f"AWS_SESSION_TOKEN={c['SessionToken']} AWS_DEFAULT_REGION=us-east-1"
    )
    return 0


def _marketplace(endpoint: str):
    """A connection to the running stack's marketplace database, from the secret the ingest function reads."""
    from kclocal.marketplace import SECRET_NAME
    from kclocal.stack import session
    from kcprice.marketplace import connect

    sm = session(endpoint).client("secretsmanager", endpoint_url=endpoint)
    try:
        secret = json.loads(sm.get_secret_value(SecretId=SECRET_NAME)["SecretString"])
    except Exception as e:  # no stack, or a stack that started no database (it said why)
        raise SystemExit(
            f"kcprice-local: no marketplace database at {endpoint} ({e}); is `make local` running?"
        ) from None
    return connect(secret, "disable")


def cmd_add_sales(args: argparse.Namespace) -> int:
    """Sales (the KC CSV format) recorded now in the marketplace's database: the next ingest exports them."""
    from kclocal.marketplace import insert_sales

    path = Path(args.file)
    if not path.is_file():
        print(f"kcprice-local: no such file: {path}", file=sys.stderr)
        return 2
    conn = _marketplace(args.endpoint)
    try:
        n = insert_sales(conn, path.read_bytes())
    finally:
        conn.close()
    print(f"recorded {n} sales in the marketplace database; `kcprice-local marketplace ingest` exports them now")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Invoke the ingest function now (as an operator would with `aws lambda invoke`)."""
    from kclocal import template
    from kclocal.stack import session

    name = template.load(endpoint=args.endpoint).functions["IngestFunction"].physical
    lam = session(args.endpoint).client("lambda", endpoint_url=args.endpoint)
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    result = json.loads(out["Payload"].read())
    print(json.dumps(result, indent=2))
    return 1 if out.get("FunctionError") else 0


def cmd_load(args: argparse.Namespace) -> int:
    from kclocal.load import is_loopback, report, run_locust

    if args.host:
        if not is_loopback(args.host) and not args.i_own_this_host:
            print("refusing to load a non-loopback host without --i-own-this-host", file=sys.stderr)
            return 2
        stats = run_locust(args.host, args.users, args.seconds)
    else:
        from kclocal.stack import LocalStack

        stack = LocalStack(0, 0, say=lambda m: print(m, file=sys.stderr)).start()
        try:
            stack.seed()
            stats = run_locust(stack.bridge.url, args.users, args.seconds)
        finally:
            stack.stop()
    print(report(stats))
    out = Path("build/load.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(stats, indent=2))
    return 1 if stats["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="kcprice-local", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    endpoint = f"http://127.0.0.1:{DEFAULT_AWS_PORT}"
    up = sub.add_parser("up", help="start the local stack (seeds itself when empty) and wait")
    up.add_argument("--aws-port", type=int, default=DEFAULT_AWS_PORT)
    up.add_argument("--api-port", type=int, default=DEFAULT_API_PORT)
    up.add_argument("--model-ttl", type=float, default=5, help="ModelTtlSeconds override (template default 60)")
    up.add_argument("--no-seed", action="store_true")
    up.add_argument("--fresh", action="store_true", help="start empty (the previous state is kept as state.old)")
    up.add_argument("--state", type=Path, default=STATE, help=f"where the data is kept (default {STATE})")
    up.add_argument("--threads", type=int, help="OpenMP threads per function (default: half the cores)")
    up.add_argument("--logs", action="store_true", help="print every function's log lines here too")
    up.set_defaults(func=cmd_up)
    demo = sub.add_parser("demo", help="run the end-to-end story against a running stack")
    demo.add_argument("--api", default=f"http://127.0.0.1:{DEFAULT_API_PORT}")
    demo.add_argument("--endpoint", default=endpoint)
    demo.add_argument("--bucket", default=LOCAL_BUCKET)
    demo.add_argument("--table", default="kc-price-PredictionsTable")
    demo.set_defaults(func=cmd_demo)
    upl = sub.add_parser("upload", help="upload a CSV of sales (or --inventory) and print what happened to it")
    upl.add_argument("file")
    upl.add_argument("--key", help="default incoming/<file name> (inventory/houses.csv with --inventory)")
    upl.add_argument("--inventory", action="store_true", help="the houses precompute prices")
    upl.add_argument("--no-wait", action="store_true")
    upl.add_argument("--timeout", type=float, default=900)
    upl.add_argument("--endpoint", default=endpoint)
    upl.add_argument("--bucket", default=LOCAL_BUCKET)
    upl.set_defaults(func=cmd_upload)
    env = sub.add_parser("env", help="print exports that point the AWS CLI, boto3 and kcprice at the local stack")
    env.add_argument("--endpoint", default=endpoint)
    env.add_argument("--api", default=f"http://127.0.0.1:{os.environ.get('API_PORT', '4567')}")
    env.set_defaults(func=cmd_env)
    cr = sub.add_parser("credentials", help="print exports of a function's role credentials on the local endpoint")
    cr.add_argument(
        "function",
        choices=[
            "PredictFunction",
            "PrecomputeFunction",
            "RetrainFunction",
            "PreTrafficHookFunction",
            "IngestFunction",
        ],
    )
    cr.add_argument("--endpoint", default=endpoint)
    cr.set_defaults(func=cmd_credentials)
    mk = sub.add_parser("marketplace", help="the local marketplace database (PostgreSQL) and its ingestion")
    mk_sub = mk.add_subparsers(dest="what", required=True)
    add = mk_sub.add_parser("add-sales", help="record the sales of a CSV (KC format) in the marketplace database")
    add.add_argument("file")
    add.add_argument("--endpoint", default=endpoint)
    add.set_defaults(func=cmd_add_sales)
    ing = mk_sub.add_parser("ingest", help="run the ingest function now (it also runs on IngestSchedule)")
    ing.add_argument("--endpoint", default=endpoint)
    ing.set_defaults(func=cmd_ingest)
    load = sub.add_parser("load", help="headless locust run (default: a fresh local stack on loopback)")
    load.add_argument("--host", help="API base URL; default: start a local stack")
    load.add_argument("--users", type=int, default=10)
    load.add_argument("--seconds", type=int, default=20)
    load.add_argument("--i-own-this-host", action="store_true", help="allow a non-loopback --host")
    load.set_defaults(func=cmd_load)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
