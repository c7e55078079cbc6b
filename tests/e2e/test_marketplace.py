"""The marketplace's database as the source, end to end: sales recorded in PostgreSQL reach the API's model without
a person - ingest, retrain, promotion, precompute, serving - on a stack of its own (real PostgreSQL, S3
notifications delivered as Lambda delivers them), driven with the operator's commands."""

import time

import pytest
import requests

from kclocal import data
from kclocal.demo import poll
from kclocal.stack import LocalStack
from kcprice import layout, registry
from kcprice.schema import EXAMPLE_HOUSE
from tests.policy import CallJournal

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack whose first model knows an eighth of the early sales: the marketplace's full history must beat it."""
    folder = tmp_path_factory.mktemp("market-stack")
    s = LocalStack(
        0, 0, {"ModelTtlSeconds": "1"}, say=lambda _: None, retry_delays=(1.0, 2.0), log_dir=folder,
        journal=folder / "calls.jsonl",
    ).start()  # fmt: skip
    try:
        assert s.marketplace is not None, "no PostgreSQL could start here: this story needs a real one"
        s.upload(layout.DEFAULT_INVENTORY, data.inventory())
        s.upload("incoming/first.csv", data.by_date(before=data.SEED_BEFORE, step=8))
        (first,) = s.wait_for("RetrainFunction", 1)
        assert first["outcomes"][0]["status"] == "promoted", first
        yield s
    finally:
        s.stop()
    CallJournal(s.journal, s.spec).assert_allowed()


def test_sales_recorded_in_the_database_reach_the_served_model(stack, tmp_path, capsys):
    from kclocal import cli

    api, bucket = stack.bridge.url, stack.spec.bucket
    v1 = registry.read_champion(stack.s3, bucket)[0]["version"]
    poll(
        "a precomputed price",
        lambda: requests.get(f"{api}/houses/7129300520/price", timeout=10).status_code == 200,
        300,
    )

    new_sales = tmp_path / "new-sales.csv"
    new_sales.write_bytes(data.by_date(since=data.SEED_BEFORE))
    n = len(new_sales.read_bytes().splitlines()) - 1
    assert cli.main(["marketplace", "add-sales", str(new_sales), "--endpoint", stack.endpoint]) == 0
    assert f"recorded {n} sales" in capsys.readouterr().out
    time.sleep(1.5)  # the local IngestLagSeconds
    assert cli.main(["marketplace", "ingest", "--endpoint", stack.endpoint]) == 0
    out = capsys.readouterr().out
    assert '"status": "exported"' in out and '"key": "incoming/marketplace/' in out

    # Retraining takes the export like any upload: the database's whole history (corrections included) beats a
    # model that saw an eighth of the early sales.
    retrains = stack.wait_for("RetrainFunction", 2, timeout=600)
    outcome = retrains[-1]["outcomes"][0]
    assert outcome["key"].startswith(layout.MARKETPLACE) and outcome["status"] == "promoted", outcome
    v2 = outcome["version"]
    assert v2 != v1
    lineage = registry.version_metadata(stack.s3, bucket, v2)["lineage"]
    assert lineage["source_key"] == outcome["key"] and lineage["dataset_rows"] > 20_000

    # Precompute follows the promotion; the API serves the new model, and the stored prices are its.
    body = poll(
        "the stored price to be by " + v2,
        lambda: (
            (r := requests.get(f"{api}/houses/7129300520/price", timeout=10).json()).get("model_version") == v2 and r
        ),
        600,
    )
    assert body["price"] > 0
    served = requests.post(f"{api}/predict", json={"houses": [EXAMPLE_HOUSE]}, timeout=10).json()
    assert served["model_version"] == v2

    # Nothing new: the next run says so, and exports nothing.
    time.sleep(1.5)
    again = stack.invoke("IngestFunction", {})
    assert again["status"] == "waiting_for_sales" and again["inventory"] == "unchanged", again
