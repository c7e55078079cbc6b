"""Pure pieces of the operator commands and retrain's counter."""

import json

from botocore.exceptions import ClientError

from kcprice import ops
from kcprice.pipeline import count_not_promoted


class FakeTable:
    def __init__(self, fail: Exception | None = None):
        self.n, self.calls, self.fail = 0, [], fail

    def update_item(self, **kw):
        self.calls.append(kw["UpdateExpression"])
        if self.fail:
            raise self.fail
        self.n = 0 if kw["UpdateExpression"].startswith("SET") else self.n + 1
        return {"Attributes": {"id": {"S": "streak#not-promoted"}, "n": {"N": str(self.n)}}}


def test_the_counter_resets_on_a_promotion_and_ignores_what_is_neither():
    table = FakeTable()
    got = [count_not_promoted(table, "t", s) for s in ("rejected", "refused", "duplicate", "accepted", "quarantined")]
    assert got == [1, 2, None, None, 3]
    assert count_not_promoted(table, "t", "promoted") == 0 and count_not_promoted(table, "t", "refused") == 1
    assert len(table.calls) == 5  # duplicate and accepted never touched the table


def test_a_counter_that_cannot_be_written_never_fails_the_upload():
    throttled = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")
    assert count_not_promoted(FakeTable(fail=throttled), "t", "rejected") is None
    assert count_not_promoted(FakeTable(fail=KeyError("n")), "t", "promoted") is None


def test_a_lambda_failure_record_is_read_with_its_decoded_upload_key():
    event = ops.s3_event("b", "incoming/odd name+plus (1).csv", '"abc"', 10, "us-east-1", version_id="v1")
    record = {
        "version": "1.0",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "requestContext": {
            "requestId": "r",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:kc-price-RetrainFunction-X:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "TimeoutError", "errorMessage": "boom"},
    }
    f = ops._failure({"MessageId": "m", "Body": json.dumps(record)})
    assert f["function"] == "kc-price-RetrainFunction-X" and f["attempts"] == 3
    assert f["upload_keys"] == ["incoming/odd name+plus (1).csv"]
    assert (f["error_type"], f["error"]) == ("TimeoutError", "boom")
    assert event["Records"][0]["s3"]["object"]["key"] == "incoming/odd+name%2Bplus+%281%29.csv"  # as S3 sends it


def test_a_refused_challenger_is_published_only_if_it_was_scored():
    # Published: what the gate promotes, and what it refused on a finite holdout MAPE (an operator may promote it);
    # never a challenger whose MAPE is missing or not finite, whatever else its metrics say.
    from kcprice.pipeline import _gate, _publishable

    champion = {"mape": 10.0}
    for mape, published in [(9.0, True), (10.0, True), (11.0, True), (None, False), (float("nan"), False)]:
        for inf in (float("inf"), -float("inf")) if mape is None else ():
            better, _ = _gate({"mape": inf}, champion, {"version": "v1"}, None, 0.0)
            assert not better and not _publishable(better, {"mape": inf})
        challenger = {"mape": mape, "median_ape": 7.0}
        better, _ = _gate(challenger, champion, {"version": "v1"}, None, 0.0)
        assert better == (mape == 9.0)
        assert _publishable(better, challenger) == published
