"""A function's handler module (functions/<name>/app.py) imported as Lambda would, with a test environment."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from kclocal.template import ROOT


def load_app(function: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for k, v in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "BUCKET_NAME": "kc-price-models",
        "TABLE_NAME": "kc-price-prices",
        "POWERTOOLS_SERVICE_NAME": function,
        "POWERTOOLS_METRICS_NAMESPACE": "KcPrice/test",
    }.items():
        monkeypatch.setenv(k, v)
    spec = importlib.util.spec_from_file_location(
        f"{function}_app_under_test", ROOT / "functions" / function / "app.py"
    )
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, app)  # dataclasses look their module up there
    spec.loader.exec_module(app)
    return app
