"""The functions' boto3 clients carry the settings their code documents."""

from __future__ import annotations

from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from tests.apps import load_app


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
