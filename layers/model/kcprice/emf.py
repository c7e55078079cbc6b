"""CloudWatch metrics as embedded metric format (EMF) log lines, for the predict function's hot path.

Why not Powertools' Metrics here: measured in one process, three add_metric calls and the flush cost ~40 us a
request (each add validates its unit against the enum's member list and formats a debug message whether or not
debug is on; the flush builds the document through more of the same), a quarter of POST /predict's 150 us
budget. This writes the same document (the namespace and service from Powertools' own environment variables, the
service dimension, a list of values per metric; tests/unit/test_emf.py holds it to Powertools' output) in a few
microseconds. The functions off the latency path keep Powertools' Metrics.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

# CloudWatch's units (Powertools' list); a metric in any other unit is a bug, refused when added.
UNITS = frozenset(u.value for u in MetricUnit)
MAX_METRICS = 100  # per document (CloudWatch's limit); more are flushed in another line


class Emf:
    """add_metric / flush_metrics / log_metrics, as Powertools' Metrics names them, for one service dimension."""

    def __init__(self, namespace: str | None = None, service: str | None = None):
        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE")
        self.service = service or os.environ.get("POWERTOOLS_SERVICE_NAME") or "service_undefined"
        self.metric_set: dict[str, tuple[str, list[float]]] = {}
        self._heads: dict[tuple, tuple[str, tuple[str, ...]]] = {}  # line()'s fixed part per (metric, unit) sequence

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        unit = getattr(unit, "value", unit)  # a Powertools MetricUnit or its name
        if unit not in UNITS:
            raise ValueError(f"metric {name}: unknown unit {unit!r}")
        value = float(value)
        if not math.isfinite(value):  # json.dumps would write NaN, which is not JSON: the whole line would be lost
            raise ValueError(f"metric {name}: {value} is not a finite number")
        entry = self.metric_set.get(name)
        if entry is None:
            if len(self.metric_set) == MAX_METRICS:
                self.flush_metrics()
            self.metric_set[name] = (unit, [value])
        else:
            entry[1].append(value)

    def clear_metrics(self) -> None:
        self.metric_set = {}

    def document(self) -> dict[str, Any]:
        if not self.namespace:
            raise ValueError("no metrics namespace: set POWERTOOLS_METRICS_NAMESPACE")
        doc: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["service"]],
                        "Metrics": [{"Name": k, "Unit": u} for k, (u, _) in self.metric_set.items()],
                    }
                ],
            },
            "service": self.service,
        }
        doc.update((k, v) for k, (_, v) in self.metric_set.items())
        return doc

    def line(self) -> str:
        """document() as one line of JSON, assembled from cached parts: json.dumps of the document costs ~9 us, the
        parts ~2 (tests parse it and compare with document() and with Powertools' output). The fixed part comes from
        document(), which checks the namespace."""
        shape = tuple((k, u) for k, (u, _) in self.metric_set.items())
        head = self._heads.get(shape)
        if head is None:
            cw = json.dumps(self.document()["_aws"]["CloudWatchMetrics"], separators=(",", ":"))
            fixed = f',"CloudWatchMetrics":{cw}}},"service":{json.dumps(self.service)}'
            head = self._heads[shape] = (fixed, tuple(f",{json.dumps(k)}:[" for k, _ in shape))
        fixed, keys = head
        parts = ['{"_aws":{"Timestamp":', str(int(time.time() * 1000)), fixed]
        for key, (_, values) in zip(keys, self.metric_set.values(), strict=True):
            parts += (key, ",".join(map(float.__repr__, values)), "]")  # float repr is json's float format
        parts.append("}")
        return "".join(parts)

    def flush_metrics(self) -> None:
        """One log line with every metric added since the last flush (none: no line)."""
        if self.metric_set:
            line = self.line()
            self.metric_set = {}
            sys.stdout.write(line + "\n")

    def log_metrics(self, handler: Callable) -> Callable:
        """Flush after every invocation, whether it returned or raised."""

        @functools.wraps(handler)
        def wrapper(event, context):
            try:
                return handler(event, context)
            finally:
                self.flush_metrics()

        return wrapper
