"""Headless locust run, bounded in time, reporting RPS, latency percentiles and errors."""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def run_locust(host: str, users: int = 10, seconds: int = 20) -> dict:
    out = Path(tempfile.mkdtemp()) / "load"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--host",
        host,
        "--csv",
        str(out),
        "--exit-code-on-error",
        "0",
    ]
    # locust runs in its own process: it monkey-patches the standard library with gevent.
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 120)
    with open(f"{out}_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    agg = rows["Aggregated"]
    return {
        "host": host,
        "users": users,
        "seconds": seconds,
        "requests": int(agg["Request Count"]),
        "errors": int(agg["Failure Count"]),
        "rps": float(agg["Requests/s"]),
        "p50_ms": float(agg["50%"]),
        "p95_ms": float(agg["95%"]),
        "p99_ms": float(agg["99%"]),
        "by_route": {
            name: {"requests": int(r["Request Count"]), "p50_ms": float(r["50%"]), "p99_ms": float(r["99%"])}
            for name, r in rows.items()
            if name != "Aggregated"
        },
    }


def is_loopback(url: str) -> bool:
    return urlparse(url).hostname in LOOPBACK


def report(stats: dict) -> str:
    lines = [
        f"load: {stats['users']} users for {stats['seconds']}s against {stats['host']}",
        f"  {stats['requests']:,} requests, {stats['errors']} errors, {stats['rps']:.0f} req/s, "
        f"p50 {stats['p50_ms']:.0f} ms, p95 {stats['p95_ms']:.0f} ms, p99 {stats['p99_ms']:.0f} ms",
    ]
    for name, r in stats["by_route"].items():
        lines.append(f"  {name:28s} {r['requests']:7,} requests  p50 {r['p50_ms']:5.0f} ms  p99 {r['p99_ms']:5.0f} ms")
    return "\n".join(lines)
