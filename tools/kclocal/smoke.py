"""Run each built function from .aws-sam/build with only its own layers on the path, then the Lambda runtime's
own (older) boto3 after them, as /opt/python precedes the runtime's packages in Lambda, in an isolated python3.12:
proves the layers hold everything each function imports, and that the boto3 they ship is the one that runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kclocal.samlocal import RUNTIME_BOTO3, pip_install

# The layer's boto3, not the runtime's: S3 conditional writes are in its PutObject model.
BOTO3 = """
import botocore, boto3, os
assert '/ModelLayer/' in botocore.__file__ and '/ModelLayer/' in boto3.__file__, botocore.__file__
put = botocore.session.get_session().get_service_model('s3').operation_model('PutObject').input_shape.members
assert {'IfMatch', 'IfNoneMatch'} <= set(put), 'this botocore cannot make conditional writes'
print('boto3', boto3.__version__, 'botocore', botocore.__version__, 'from the layer;', end=' ')
"""

PREDICT = (
    BOTO3
    + """
import sys, numpy as np
import app  # the built PredictFunction's handler module
from kcprice.dataset import read_sales
from kcprice.predictor import Predictor
assert not [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy', 'matplotlib')]
print('predict ok')
"""
)
RETRAIN = (
    BOTO3
    + """
import sys, matplotlib
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
import app  # the built RetrainFunction's handler module
from kcprice.dataset import read_sales
from kcprice.training import train
from kcprice import card
data = open(sys.argv[1], 'rb').read().splitlines()
sales, report = read_sales(b'\\n'.join(data[:1] + data[1::8]) + b'\\n')
result = train(sales, evaluate_splits=False)
files = card.render(result, sales.take(list(range(200))))
assert files['card.html'].startswith(b'<!doctype html>') and files['residuals.png'][:4] == b'\\x89PNG', list(files)
print('retrain ok:', len(result.artifact), 'bytes,', len(files), 'card files')
"""
)

# The hook carries the events it replays (events/ is linked into its folder; `sam build` copies the files).
PRETRAFFIC = (
    BOTO3
    + """
import os
os.environ.update(TARGET_FUNCTION='arn:aws:lambda:us-east-1:123456789012:function:f:1', AWS_DEFAULT_REGION='us-east-1')
import app  # the built PreTrafficHookFunction's handler module
from kcprice import smoke
settings, lam, codedeploy = app.runtime()  # the layer's botocore has both services' models
assert lam.meta.service_model.service_name == 'lambda' and codedeploy.can_paginate('list_deployments')
found = smoke.cases(app.EVENTS)
assert {c.path for c in found} >= {'/health', '/predict', '/model', '/openapi.json'}, [c.path for c in found]
print('pretraffic ok:', len(found), 'requests from events/')
"""
)

# The driver ships in the function's own folder (functions/ingest/requirements.txt), not in the shared layer.
INGEST = (
    BOTO3
    + """
import os, sys
os.environ.update(BUCKET_NAME='b-b-b', STATE_TABLE='state', AWS_DEFAULT_REGION='us-east-1')
import app  # the built IngestFunction's handler module
import pg8000, scramp
assert '/IngestFunction/' in pg8000.__file__, pg8000.__file__
settings, s3, ddb, secrets = app.runtime()
print('ingest ok: pg8000', pg8000.__version__, 'schema', settings.marketplace_schema().sales_table)
"""
)


def runtime_dir() -> Path:
    """What the Lambda python3.12 runtime ships besides the standard library: its boto3 (cached in build/)."""
    folder = Path(__file__).resolve().parents[2] / "build" / "lambda-runtime" / RUNTIME_BOTO3.replace("==", "-")
    if not (folder / "boto3").is_dir():
        pip_install(folder, RUNTIME_BOTO3)
    return folder


def run(build: Path, function: str, layers: list[str], code: str, *args: str) -> None:
    python = shutil.which("python3.12") or sys.executable
    path = ":".join(
        [str(build / function)] + [str(build / layer / "python") for layer in layers] + [str(runtime_dir())]
    )
    # No .pyc files: they would land in the build folder and count against the size budget.
    env = {
        "PYTHONPATH": path,
        "MPLCONFIGDIR": tempfile.mkdtemp(),
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # -S: no site-packages, so nothing outside the built bundle can be imported by accident.
    out = subprocess.run([python, "-S", "-c", code, *args], env=env, capture_output=True, text=True, cwd=build)
    if out.returncode:
        raise SystemExit(f"{function}: built bundle failed\n{out.stderr[-3000:]}")
    print(out.stdout.strip())


def main(argv: list[str]) -> int:
    build = Path(argv[0] if argv else ".aws-sam/build").resolve()
    data = Path(__file__).resolve().parents[2] / "data" / "kc_house_data.csv"
    run(build, "PredictFunction", ["ModelLayer"], PREDICT)
    run(build, "PrecomputeFunction", ["ModelLayer"], PREDICT.replace("predict ok", "precompute ok"))
    run(build, "RetrainFunction", ["ModelLayer", "TrainLayer"], RETRAIN, str(data))
    run(build, "PreTrafficHookFunction", ["ModelLayer"], PRETRAFFIC)
    run(build, "IngestFunction", ["ModelLayer"], INGEST)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
