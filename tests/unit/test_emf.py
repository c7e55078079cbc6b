"""kcprice.emf writes what Powertools' Metrics writes for the same metrics (CloudWatch reads the same document)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from hypothesis import given
from hypothesis import strategies as st

from kcprice.emf import Emf


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _flushed(metrics) -> list[dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics.flush_metrics()
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_namespace_and_service_come_from_powertools_variables(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KcPrice/env")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "predict")
    m = Emf()
    m.add_metric("Requests", MetricUnit.Count, 1)
    (doc,) = _flushed(m)
    assert doc["service"] == "predict" and doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "KcPrice/env"


def _without_time(doc: dict) -> dict:
    assert isinstance(doc["_aws"].pop("Timestamp"), int)
    return doc


@given(
    adds=st.lists(
        st.tuples(
            st.sampled_from(["Requests", "HousesPriced", "PredictLatency", "ModelLoadTime"]),
            st.sampled_from([MetricUnit.Count, MetricUnit.Milliseconds, MetricUnit.Seconds]),
            st.floats(min_value=0, max_value=1e9, allow_nan=False),
        ),
        min_size=1,
        max_size=12,
        unique_by=lambda t: t[0],  # one unit per metric name, as our code adds them
    ),
    repeats=st.integers(1, 3),
)
def test_the_document_is_powertools_own(adds, repeats):
    ours, theirs = Emf("KcPrice/test", "predict"), Metrics(namespace="KcPrice/test", service="predict")
    for _ in range(repeats):
        for name, unit, value in adds:
            ours.add_metric(name, unit, value)
            theirs.add_metric(name, unit, value)
    mine, reference = _flushed(ours), _flushed(theirs)
    assert len(mine) == len(reference) == 1
    assert _without_time(mine[0]) == _without_time(reference[0])
    assert ours.metric_set == {}


def test_nothing_to_flush_writes_nothing(capsys):
    Emf("ns", "svc").flush_metrics()
    assert capsys.readouterr().out == ""


def test_a_non_finite_value_or_an_unknown_unit_is_refused_and_the_line_stays_json(capsys):
    m = Emf("ns", "svc")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            m.add_metric("Latency", "Milliseconds", bad)
    with pytest.raises(ValueError, match="unit"):
        m.add_metric("Latency", "Fortnights", 1)
    m.add_metric("Latency", "Milliseconds", 2.5)
    m.flush_metrics()
    (doc,) = _lines(capsys)
    assert doc["Latency"] == [2.5] and doc["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "Latency", "Unit": "Milliseconds"}
    ]


def test_log_metrics_flushes_when_the_handler_raises(capsys):
    m = Emf("ns", "svc")

    @m.log_metrics
    def handler(event, context):
        m.add_metric("Requests", "Count", 1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler({}, None)
    (doc,) = _lines(capsys)
    assert doc["Requests"] == [1.0] and doc["service"] == "svc"


def test_more_than_a_hundred_metrics_go_in_more_than_one_line(capsys):
    m = Emf("ns", "svc")
    for i in range(150):
        m.add_metric(f"M{i}", "Count", i)
    m.flush_metrics()
    docs = _lines(capsys)
    assert [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs] == [100, 50]
    assert sorted(k for d in docs for k in d if k.startswith("M")) == sorted(f"M{i}" for i in range(150))


@given(
    names=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5, unique=True),
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=4),
    service=st.text(min_size=1, max_size=10),
)
def test_the_line_is_the_document_as_json_whatever_the_names_and_values(names, values, service):
    m = Emf('ns "quoted"', service)
    for name in names:
        for v in values:
            m.add_metric(name, "Count", v)
    expected = _without_time(m.document())
    for _ in range(2):  # the second time from the cached fixed part
        assert _without_time(json.loads(m.line())) == expected
