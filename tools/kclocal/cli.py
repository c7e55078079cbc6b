"""`kcprice-local`: the whole kc-price system on this machine (no AWS account, no Docker)."""

from __future__ import annotations

import argparse
import sys
import time

from kclocal.events import EXAMPLE_HOUSE, LOCAL_BUCKET

DEFAULT_AWS_PORT = 4566
DEFAULT_API_PORT = 4567  # not 3000: that is `sam local start-api`'s default


def cmd_up(args: argparse.Namespace) -> int:
    import json

    from kclocal.stack import LocalStack

    stack = LocalStack(args.aws_port, args.api_port, {"ModelTtlSeconds": str(args.model_ttl)})
    try:
        stack.start()
    except OSError as e:
        print(f"cannot start: {e} (is another local stack running? use --aws-port / --api-port)", file=sys.stderr)
        return 1
    try:
        if not args.no_seed:
            stack.seed()
        api = stack.bridge.url
        print(
            f"""
ready. Try:
  curl -s {api}/health
  curl -s {api}/predict -H 'content-type: application/json' -d '{json.dumps({"houses": [EXAMPLE_HOUSE]})}'
  curl -s {api}/houses/7129300520/price
  curl -s {api}/model | head -c 600
  aws s3 cp new_sales.csv s3://{stack.spec.bucket}/incoming/ --endpoint-url {stack.endpoint}
  make demo      # the scripted story, in another terminal
Ctrl-C stops everything.""",
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


def cmd_credentials(args: argparse.Namespace) -> int:
    """A session of a function's role on the local endpoint, as shell exports (for `sam local` by hand)."""
    from kclocal.stack import session

    admin = session(args.endpoint)
    c = admin.client("sts", endpoint_url=args.endpoint).assume_role(
        RoleArn=f"arn:aws:iam::123456789012:role/{args.function}Role", RoleSessionName=args.function
    )["Credentials"]
    print(f"export AWS_ACCESS_KEY_ID={c['AccessKeyId']} AWS_SECRET_ACCESS_KEY={c['SecretAccessKey']} "
          f"AWS_SESSION_TOKEN={c['SessionToken']} AWS_DEFAULT_REGION=us-east-1")  # fmt: skip
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

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
    p = argparse.ArgumentParser(prog="kcprice-local", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the local stack (seeds itself on first start) and wait")
    up.add_argument("--aws-port", type=int, default=DEFAULT_AWS_PORT)
    up.add_argument("--api-port", type=int, default=DEFAULT_API_PORT)
    up.add_argument("--model-ttl", type=float, default=5, help="ModelTtlSeconds override (template default 60)")
    up.add_argument("--no-seed", action="store_true")
    up.set_defaults(func=cmd_up)
    demo = sub.add_parser("demo", help="run the end-to-end story against a running stack")
    demo.add_argument("--api", default=f"http://127.0.0.1:{DEFAULT_API_PORT}")
    demo.add_argument("--endpoint", default=f"http://127.0.0.1:{DEFAULT_AWS_PORT}")
    demo.add_argument("--bucket", default=LOCAL_BUCKET)
    demo.add_argument("--table", default="kc-price-PredictionsTable")
    demo.set_defaults(func=cmd_demo)
    cr = sub.add_parser("credentials", help="print exports of a function's role credentials on the local endpoint")
    cr.add_argument("function", choices=["PredictFunction", "PrecomputeFunction", "RetrainFunction"])
    cr.add_argument("--endpoint", default=f"http://127.0.0.1:{DEFAULT_AWS_PORT}")
    cr.set_defaults(func=cmd_credentials)
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
