"""`make sam-local`: the README's `sam local` commands, run for real, offline, against the local AWS endpoint.

1. Docker: starts `dockerd` if it is installed but not running (root only); says what to install otherwise.
2. A Lambda-like python3.12 image built offline (nothing can be pulled): Debian bookworm minbase by debootstrap
   from Debian's packages, this machine's CPython 3.12 as /var/lang, the boto3 of AWS's python3.12 runtime (older
   than the one the layer ships: the layer's must win, as on /opt/python in Lambda) and kclocal.lambda_runtime as
   /var/runtime/bootstrap. `sam local` adds its Runtime Interface Emulator and the layers on top.
3. The local AWS endpoint (kclocal.awsd, IAM enforced) in a container named kcprice-aws on a docker network this
   target creates; the host reaches it only through a port published on 127.0.0.1. The bucket, tables, queues and
   the functions' roles are provisioned from template.yaml, and the seed files uploaded.
4. Every event in events/ through `sam local invoke` (each function with its own role's credentials), then a few
   requests through `sam local start-api`; every answer is checked. Exit status 0 only if all pass.

    python -m kclocal.samlocal [--keep] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import requests

from kclocal import data, template
from kclocal.events import EXAMPLE_HOUSE

ROOT = template.ROOT
BUILD = ROOT / "build" / "sam-local"
IMAGE = "kc-price/lambda-python3.12:local"
AWSD_IMAGE = "kc-price/awsd:local"
NETWORK = "kc-price-local"
AWSD = "kcprice-aws"
ENDPOINT_IN_DOCKER = f"http://{AWSD}:4566"
ENV_FILE = ROOT / "events" / "env.sam-local.json"
# boto3 of AWS's python3.12 runtime image (late 2024): older than S3 conditional writes (botocore 1.35.x), so
# the functions work only if the layer's own boto3 is the one imported.
RUNTIME_BOTO3 = "boto3==1.34.145"
# The SAM CLI of this virtualenv (make puts it on PATH; a plain `python -m kclocal.samlocal` may not have it).
SAM = str(Path(sys.executable).with_name("sam")) if Path(sys.executable).with_name("sam").exists() else "sam"
FUNCTION_OF = {"predict": "PredictFunction", "precompute": "PrecomputeFunction", "retrain": "RetrainFunction"}


def say(msg: str) -> None:
    print(f"sam-local: {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kw)


def docker(*args: str, check: bool = True, capture: bool = True) -> str:
    out = subprocess.run(["docker", *args], text=True, capture_output=capture, check=False)
    if check and out.returncode:
        raise SystemExit(f"docker {' '.join(args[:3])} failed: {(out.stderr or '').strip()[-2000:]}")
    return (out.stdout or "").strip()


def pip_install(target: Path, *args: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *args,
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"pip install {' '.join(args)} failed:\n{out.stderr[-3000:]}")


# --- 1. docker ----------------------------------------------------------------------------------------------------
def ensure_docker() -> None:
    if shutil.which("docker") is None:
        raise SystemExit("docker is not installed: apt-get install -y docker.io debootstrap")
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        raise SystemExit("the Docker daemon is not running: start it (dockerd), or install docker.io as root")
    say("starting dockerd")
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / "dockerd.log", "a") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    for _ in range(60):
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise SystemExit(f"dockerd did not start: see {BUILD / 'dockerd.log'}")


# --- 2. the Lambda-like image -------------------------------------------------------------------------------------
def _debian_mirror() -> str:
    for path in Path("/etc/apt/sources.list.d").glob("*.sources"):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def _python_home() -> Path:
    return Path(os.path.realpath(sys.base_prefix))


def build_image(rebuild: bool = False) -> None:
    if not rebuild and docker("images", "-q", IMAGE):
        return
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed: apt-get install -y debootstrap")
    rootfs = BUILD / "rootfs"
    if rebuild and rootfs.exists():
        shutil.rmtree(rootfs)
    if not (rootfs / "etc" / "debian_version").exists():
        say("debootstrap: Debian bookworm minbase (about a minute)")
        libs = "ca-certificates,libssl3,libffi8,zlib1g,libbz2-1.0,liblzma5,libsqlite3-0,libexpat1,libuuid1"
        run(
            ["debootstrap", "--variant=minbase", f"--include={libs}", "bookworm", str(rootfs), _debian_mirror()],
            stdout=subprocess.DEVNULL,
        )
    lang = rootfs / "var" / "lang"
    if lang.exists():
        shutil.rmtree(lang)
    say(f"CPython {sys.version.split()[0]} from {_python_home()} as /var/lang")
    skip = shutil.ignore_patterns(
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "__pycache__",
        "*.a",
        "site-packages",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
    )
    shutil.copytree(_python_home(), lang, ignore=skip, symlinks=True)
    site = lang / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    pip_install(site, RUNTIME_BOTO3)
    runtime = rootfs / "var" / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).with_name("lambda_runtime.py"), runtime / "lambda_runtime.py")
    (runtime / "bootstrap").write_text('#!/bin/sh\nexec /var/lang/bin/python3 /var/runtime/lambda_runtime.py "$@"\n')
    (runtime / "bootstrap").chmod(0o755)
    (rootfs / "var" / "task").mkdir(exist_ok=True)
    say(f"importing {IMAGE}")
    tarball = BUILD / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs, arcname=".")
    changes = [
        "ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin",
        "ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64",
        "ENV LANG=en_US.UTF-8",
        "ENV TZ=:/etc/localtime",
        "ENV LAMBDA_TASK_ROOT=/var/task",
        "ENV LAMBDA_RUNTIME_DIR=/var/runtime",
        "WORKDIR /var/task",
        'ENTRYPOINT ["/var/runtime/bootstrap"]',
    ]
    docker("import", *[a for c in changes for a in ("--change", c)], str(tarball), IMAGE)
    tarball.unlink()


def build_awsd_image(rebuild: bool = False) -> None:
    if not rebuild and docker("images", "-q", AWSD_IMAGE):
        return
    context = BUILD / "awsd"
    if context.exists():
        shutil.rmtree(context)
    (context / "site").mkdir(parents=True)
    say("the local AWS endpoint's image (moto from PyPI, kclocal from this checkout)")
    pip_install(context / "site", "-c", str(ROOT / "constraints.txt"), "moto[server]")
    shutil.copytree(Path(__file__).parent, context / "site" / "kclocal", ignore=shutil.ignore_patterns("__pycache__"))
    (context / "Dockerfile").write_text(
        f"FROM {IMAGE}\nCOPY site /opt/awsd\nENV PYTHONPATH=/opt/awsd\nENTRYPOINT []\n"
        'CMD ["python3", "-m", "kclocal.awsd", "--host", "0.0.0.0", "--port", "4566"]\n'
    )
    out = subprocess.run(
        ["docker", "build", "-q", "-t", AWSD_IMAGE, str(context)],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if out.returncode:
        raise SystemExit(f"docker build of {AWSD_IMAGE} failed: {out.stderr[-2000:]}")


# --- 3. the endpoint on a docker network ---------------------------------------------------------------------------
def start_endpoint(port: int) -> str:
    stop_endpoint()
    if not docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$"):
        docker("network", "create", NETWORK)
    docker("run", "-d", "--rm", "--name", AWSD, "--network", NETWORK, "-p", f"127.0.0.1:{port}:4566", AWSD_IMAGE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if requests.get(f"{url}/_kclocal/health", timeout=2).ok:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the endpoint container did not start: {docker('logs', AWSD, check=False)[-2000:]}")


def stop_endpoint() -> None:
    docker("rm", "-f", AWSD, check=False)


def env_vars(spec: template.Stack) -> dict:
    """--env-vars: the local stack's names and the endpoint, per function (only variables the template declares)."""
    return {
        name: {
            k: v
            for k, v in fn.env.items()
            if k in ("BUCKET_NAME", "TABLE_NAME", "IDEMPOTENCY_TABLE", "AWS_ENDPOINT_URL")
        }
        for name, fn in spec.functions.items()
    }


def local_spec(host_endpoint: str) -> template.Stack:
    return template.load(parameters={"AwsEndpointUrl": ENDPOINT_IN_DOCKER}, endpoint=host_endpoint)


# --- 4. the README's commands ------------------------------------------------------------------------------------
def sam(args: list[str], credentials: dict[str, str], **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, **credentials, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    env.pop("AWS_PROFILE", None)
    cmd = [
        SAM,
        *args,
        "--env-vars",
        str(ENV_FILE),
        "--docker-network",
        NETWORK,
        "--invoke-image",
        IMAGE,
        "--skip-pull-image",
    ]
    if kw.pop("background", False):
        return subprocess.Popen(cmd, env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, env=env, cwd=ROOT, text=True, capture_output=True, timeout=900)


def invoke(function: str, event: Path, credentials: dict[str, str]) -> dict:
    out = sam(["local", "invoke", function, "-e", str(event.relative_to(ROOT))], credentials)
    lines = [ln for ln in out.stdout.strip().splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise AssertionError(f"sam local invoke {function} -e {event.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def check(name: str, result: dict) -> str:
    """What each shared event must give against the seeded stack."""
    if name.startswith("predict_"):
        assert result.get("statusCode") == 200, result
        body = json.loads(result["body"])
        return {
            "predict_post.json": lambda: f"${body['predictions'][0]['price']:,.0f} by {body['model_version']}",
            "predict_health.json": lambda: f"serving {body['model_version']}",
            "predict_house_price.json": lambda: f"${body['price']:,.0f} precomputed by {body['model_version']}",
            "predict_model.json": lambda: f"champion {body['champion']['version']}",
            "predict_openapi.json": lambda: f"{len(body['paths'])} paths",
        }[name]()
    if name.startswith("precompute_"):
        assert result["status"] == "written" and result["items"] > 0, result
        return f"{result['items']:,} prices by {result['model_version']}"
    assert "outcomes" in result, result
    (outcome,) = result["outcomes"]
    assert outcome["status"] in ("promoted", "refused", "duplicate"), result
    return f"{outcome['status']} {outcome.get('version')}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kclocal.samlocal", description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="leave the endpoint container running afterwards")
    p.add_argument("--rebuild", action="store_true", help="rebuild the images")
    p.add_argument("--aws-port", type=int, default=4566)
    p.add_argument("--api-port", type=int, default=3001)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    ensure_docker()
    build_image(args.rebuild)
    build_awsd_image(args.rebuild)
    if not (ROOT / ".aws-sam" / "build" / "template.yaml").exists():
        raise SystemExit("run `make build` first (sam build)")
    from kclocal.stack import provision, session

    host = start_endpoint(args.aws_port)
    try:
        spec = local_spec(host)
        expected = json.dumps(env_vars(spec), indent=2) + "\n"
        if ENV_FILE.read_text() != expected:
            raise SystemExit(f"{ENV_FILE.name} is out of date with template.yaml: python -m kclocal.samlocal --write")
        creds = provision(spec, host, notifications=False).credentials
        s3 = session(host).client("s3", endpoint_url=host)
        retrain_event = json.loads((ROOT / "events" / "retrain_upload.json").read_text())
        s3.put_object(Bucket=spec.bucket, Key="inventory/houses.csv", Body=data.inventory())
        s3.put_object(
            Bucket=spec.bucket,
            Key=retrain_event["Records"][0]["s3"]["object"]["key"],
            Body=data.by_date(before=data.SEED_BEFORE),
        )
        say(f"endpoint {host} (in docker: {ENDPOINT_IN_DOCKER}); {time.monotonic() - t0:.0f}s so far")
        order = sorted(
            (ROOT / "events").glob("*_*.json"),
            key=lambda e: (
                ["retrain", "precompute", "predict"].index(e.name.split("_")[0])
                if e.name.split("_")[0] in FUNCTION_OF
                else 9
            ),
        )
        for event in order:
            if event.name.split("_")[0] not in FUNCTION_OF or event == ENV_FILE:
                continue
            function = FUNCTION_OF[event.name.split("_")[0]]
            t = time.monotonic()
            result = invoke(function, event, creds[function])
            say(
                f"sam local invoke {function} -e events/{event.name}: {check(event.name, result)} "
                f"({time.monotonic() - t:.0f}s)"
            )
        api = sam(
            ["local", "start-api", "--host", "127.0.0.1", "--port", str(args.api_port)],
            creds["PredictFunction"],
            background=True,
        )
        try:
            base = f"http://127.0.0.1:{args.api_port}"
            for _ in range(240):
                try:
                    requests.get(f"{base}/health", timeout=60)
                    break
                except requests.RequestException:
                    time.sleep(0.5)
            r = requests.post(f"{base}/predict", json={"houses": [EXAMPLE_HOUSE]}, timeout=120)
            assert r.status_code == 200 and r.json()["predictions"][0]["price"] > 0, r.text
            say(f"sam local start-api: POST /predict -> {r.status_code} ${r.json()['predictions'][0]['price']:,.0f}")
            r = requests.get(f"{base}/houses/7129300520/price", timeout=120)
            assert r.status_code == 200 and r.json()["house_id"] == "7129300520", r.text
            say(f"sam local start-api: GET /houses/7129300520/price -> {r.status_code}")
            r = requests.post(f"{base}/predict", json={"houses": [{**EXAMPLE_HOUSE, "zipcode": 1}]}, timeout=120)
            assert r.status_code == 422 and "zipcode" in r.text, r.text
            say(f"sam local start-api: a bad zipcode -> {r.status_code}")
        finally:
            api.terminate()
            api.wait(30)
        say(f"all passed in {time.monotonic() - t0:.0f}s")
        return 0
    finally:
        if not args.keep:
            stop_endpoint()


def write_env_file() -> None:
    ENV_FILE.write_text(json.dumps(env_vars(local_spec("http://127.0.0.1:4566")), indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_env_file()
        sys.exit(0)
    sys.exit(main())
