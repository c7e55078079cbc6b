"""The functions' boto3 clients carry the settings their code documents."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from kclocal.template import ROOT


def load_app(function: str, monkeypatch: pytest.MonkeyPatch):
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
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"{function}_app_under_test", path)
    app = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, app)
    spec.loader.exec_module(app)
    return app


def validates_locally(client) -> bool:
    """Whether botocore refuses a malformed BatchWriteItem before sending it (a number given as a float, not the
    decimal string DynamoDB's wire format wants); the Stubber answers whatever is sent."""
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {"UnprocessedItems": {}})
        try:
            client.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"price": {"N": 1.5}}}}]})
        except ParamValidationError:
            return True
    return False


def test_precompute_writes_without_client_side_validation_and_the_rest_keep_it(monkeypatch):
    ddb = load_app("precompute", monkeypatch).runtime()[2]
    assert not validates_locally(ddb)  # kcprice.storage.BULK_WRITES: measured, documented there
    _, predict_ddb = load_app("predict", monkeypatch)._clients()
    assert validates_locally(predict_ddb)  # the check itself can tell (boto3's default)
