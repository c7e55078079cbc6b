"""`kcprice` command line: validate and train on a CSV, predict with an exported artifact."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


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
    model = Predictor.load(args.model)
    prices = model.predict_houses(req.houses)
    print(json.dumps({"model_version": model.version, "predictions": [{"price": round(p, 2)} for p in prices]}))
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


def _registry_target(args: argparse.Namespace):
    """(s3 client, bucket, caller identity): the bucket named, or the stack's; the endpoint from AWS_ENDPOINT_URL
    like every boto3 client (`eval "$(kcprice-local env)"` for the local stack)."""
    import boto3

    from kcprice.ops import stack_outputs

    session = boto3.Session(region_name=args.region)
    bucket = args.bucket or stack_outputs(session.client("cloudformation"), args.stack)["BucketName"]
    who = session.client("sts").get_caller_identity()["Arn"]
    return session.client("s3"), bucket, who


def cmd_models(args: argparse.Namespace) -> int:
    from kcprice import ops, registry
    from kcprice.errors import ChampionChangedError, KcPriceError

    s3, bucket, who = _registry_target(args)
    try:
        if args.models_cmd == "list":
            out: object = ops.list_versions(s3, bucket)
        elif args.models_cmd == "show":
            out = registry.version_metadata(s3, bucket, args.version)
        elif args.models_cmd == "history":
            out = ops.champion_history(s3, bucket)
        elif args.models_cmd == "promote":
            out = ops.promote_version(s3, bucket, args.version, args.reason, who)
        else:
            out = ops.rollback(s3, bucket, args.reason, who)
    except ChampionChangedError:
        _log("the champion changed meanwhile (a retrain promoted one): look again, then retry")
        return 1
    except (KcPriceError, ValueError) as e:
        _log(f"refused: {e}")
        return 1
    print(json.dumps(out, indent=2, default=str))
    return 0


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
        ("list", "every version, the champion marked"),
        ("show", "one version's metadata (metrics, lineage, libraries)"),
        ("history", "every champion the pointer has named, newest first"),
        ("promote", "make a version the champion (roll forward or back); precompute follows"),
        ("rollback", "back to the champion before this one"),
    ):
        c = m_sub.add_parser(name, help=what)
        where = c.add_mutually_exclusive_group(required=True)
        where.add_argument("--stack", help="the stack whose BucketName output to use")
        where.add_argument("--bucket", help="the data bucket itself")
        c.add_argument("--region")
        if name in ("show", "promote"):
            c.add_argument("version")
        if name in ("promote", "rollback"):
            c.add_argument("--reason", required=True, help="why: kept in the pointer with who did it")
        c.set_defaults(func=cmd_models)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
