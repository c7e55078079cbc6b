"""PrecomputeFunction: every house of the inventory scored by the champion and stored in DynamoDB."""

import pytest

from kclocal.data import by_date, inventory
from kcprice import registry
from kcprice.errors import NoModelError
from kcprice.storage import get_price
from tests.integration.conftest import count_items, load_event

INVENTORY = inventory(step=4)
N_HOUSES = INVENTORY.count(b"\n") - 1


@pytest.fixture
def champion(aws):
    aws.invoke("RetrainFunction", aws.upload("incoming/seed.csv", by_date(before="20150101", step=2)))
    aws.s3.put_object(Bucket=aws.bucket, Key="inventory/houses.csv", Body=INVENTORY)
    pointer, _ = registry.read_champion(aws.s3, aws.bucket)
    return pointer["version"]


@pytest.mark.parametrize(
    "event", ["precompute_on_demand.json", "precompute_schedule.json", "precompute_champion_changed.json"]
)
def test_every_event_shape_scores_the_whole_inventory(aws, champion, event):
    out = aws.invoke("PrecomputeFunction", load_event(event))
    assert out == {"status": "written", "model_version": champion, "items": N_HOUSES, "seconds": out["seconds"]}
    assert count_items(aws) == N_HOUSES
    first_id = INVENTORY.split(b"\n")[1].split(b",")[0].decode()
    item = get_price(aws.ddb, aws.table, first_id)
    assert item["model_version"] == champion and 50_000 < item["price"] < 10_000_000


def test_precomputed_prices_equal_live_predictions(aws, champion):
    aws.invoke("PrecomputeFunction", {})
    model, _ = registry.load_champion(aws.s3, aws.bucket)
    from kcprice.dataset import read_inventory

    houses, _ = read_inventory(INVENTORY)
    raw = houses.raw[:20].copy()
    raw[:, -1] = model.default_day
    live = model.predict_raw(raw)
    stored = [get_price(aws.ddb, aws.table, str(i))["price"] for i in houses.ids[:20]]
    assert stored == pytest.approx([round(p, 2) for p in live], abs=0.006)


def test_no_inventory_is_reported_not_crashed(aws):
    aws.invoke("RetrainFunction", aws.upload("incoming/seed.csv", by_date(before="20150101", step=2)))
    assert aws.invoke("PrecomputeFunction", {})["status"] == "no_inventory"


def test_no_model_yet_fails_loudly(aws):
    with pytest.raises(NoModelError):
        aws.invoke("PrecomputeFunction", {})


def test_bad_event_is_refused(aws):
    with pytest.raises(ValueError, match=r"inventory_key|validation"):
        aws.invoke("PrecomputeFunction", {"inventory": 3})
