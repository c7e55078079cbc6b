"""IngestFunction against a real PostgreSQL (the local stack's marketplace database) and the local AWS endpoint:
windows and watermark, crashes at every step, corrections, bad rows, the inventory. The in-process runs use the
function's own role (its calls are checked against its template policy like every call in this tier)."""

from __future__ import annotations

import csv
import io
import json
import time
from types import SimpleNamespace

import pytest

from kclocal import data
from kclocal.marketplace import insert_sales
from kcprice import layout
from kcprice.config import IngestSettings
from kcprice.ingest import State, ingest
from kcprice.marketplace import connect
from kcprice.pipeline import read_ledger
from kcprice.storage import get_bytes
from tests.integration.conftest import settings_of

pytestmark = pytest.mark.xdist_group("marketplace")  # tests of one worker share its database


def sales_csv(step: int, offset: int = 0, n: int | None = None) -> bytes:
    header, rows = data.lines()
    return data.csv_bytes(rows[offset::step][:n], header)


@pytest.fixture
def market(aws):
    pg = aws.stack.marketplace
    assert pg is not None, "the local stack started no PostgreSQL (see its output): these tests need a real one"
    conn = pg.connect()
    cur = conn.cursor()
    cur.execute("TRUNCATE sales, listings RESTART IDENTITY")
    conn.commit()
    settings = settings_of(aws.stack, IngestSettings, "IngestFunction")
    s3, ddb = aws.client("s3", "IngestFunction"), aws.client("dynamodb", "IngestFunction")

    def run(step=lambda _: None, min_rows: int = 50, max_rows: int = 100_000):
        """One ingest run as the function makes it (its role, a connection of its own, no lag)."""
        db = connect(pg.secret(), "disable")
        try:
            schema = settings.marketplace_schema()
            return ingest(db, s3, ddb, settings.bucket, settings.state_table, schema, min_rows, 0.0, step, max_rows)
        finally:
            db.close()

    def retrain(key: str) -> dict:
        """RetrainFunction on an export, as its S3 event would start it."""
        return aws.invoke("RetrainFunction", aws.upload_event(key))["outcomes"][0]

    def settle() -> list[str]:
        """Runs until nothing is left to export, retraining each export: the export keys, in order."""
        keys = []
        for _ in range(10):
            out = run()
            if out.status == "waiting_for_retrain":
                retrain(out.key)
            elif out.status == "exported":
                keys.append(out.key)
                retrain(out.key)
            else:
                assert out.status == "waiting_for_sales", out
                return keys
        raise AssertionError("ingest never settled")

    def exported_rows(keys: list[str]) -> list[tuple[str, str, str]]:
        rows = []
        for key in keys:
            rows += [
                (r["id"], r["date"], r["price"])
                for r in csv.DictReader(io.StringIO(get_bytes(aws.s3, aws.bucket, key).decode()))
            ]
        return rows

    def query(sql: str, *args):
        cur = conn.cursor()
        cur.execute(sql, args)
        out = cur.fetchall() if cur.description else None
        conn.commit()
        return out

    yield SimpleNamespace(
        conn=conn,
        insert=lambda body: insert_sales(conn, body),
        run=run,
        retrain=retrain,
        settle=settle,
        exported_rows=exported_rows,
        query=query,
        state=State(aws.ddb, settings.state_table),
        settings=settings,
    )
    conn.close()


def test_new_sales_are_exported_once_and_the_next_window_waits_for_retraining(aws, market):
    market.insert(sales_csv(50, 0, 120))
    first = market.run()
    assert first.status == "exported" and first.rows == 120 and first.key.startswith(layout.MARKETPLACE)
    assert market.run().status == "waiting_for_retrain"  # the export has no report yet
    market.retrain(first.key)
    assert market.run().status == "waiting_for_sales"  # nothing new
    market.insert(sales_csv(50, 1, 30))
    few = market.run()
    assert few.status == "waiting_for_sales" and few.rows == 30  # fewer than retraining accepts: nothing claimed
    assert "pending_to" not in market.state.read()
    market.insert(sales_csv(50, 2, 30))
    second = market.run()
    assert second.status == "exported" and second.rows == 60  # the window grew to hold both inserts
    assert second.window["from"] == first.window["to"]
    assert len(market.exported_rows([first.key, second.key])) == 180


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs (BaseException: no handler in the code catches it)."""


@pytest.mark.parametrize("at", ["claimed", "exported", "advanced", "inventory"])
def test_a_crash_at_any_step_loses_nothing_and_duplicates_nothing(aws, market, at):
    market.insert(sales_csv(40, 0, 200))

    def crash(step: str) -> None:
        if step == at:
            raise Crash(step)

    with pytest.raises(Crash):
        market.run(step=crash)
    market.insert(sales_csv(40, 1, 100))  # recorded after the crash: belongs to a later window
    market.settle()
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix=layout.MARKETPLACE).get("Contents", [])
    rows = market.exported_rows([o["Key"] for o in listed])  # every file ever exported
    in_db = market.query("SELECT house_id::text, sale_date FROM sales")
    assert len(rows) == len(in_db) == 300
    assert len({(i, d) for i, d, _ in rows}) == 300  # every sale once, in one file
    assert {i for i, _, _ in rows} == {i for i, _ in in_db}
    assert "pending_to" not in market.state.read()


def test_two_runs_cannot_claim_the_same_window(aws, market):
    state = market.state
    assert state.claim("19700101T000000.000000Z", "20261201T000000.000000Z", first=True)
    assert not state.claim("19700101T000000.000000Z", "20261201T000001.000000Z", first=True)
    assert not state.advance("20261201T000001.000000Z", "k")  # only the claimed window advances
    assert state.advance("20261201T000000.000000Z", "k") and state.read()["watermark"] == "20261201T000000.000000Z"


def test_a_correction_replaces_the_earlier_version_in_the_training_data(aws, market):
    market.insert(sales_csv(12, 0, 1500))
    keys = market.settle()
    assert len(keys) == 1
    house, date, price = market.query("SELECT house_id, sale_date, price FROM sales ORDER BY sale_id LIMIT 1")[0]
    # The marketplace records a corrected version of that sale (same house, same date), with new sales.
    market.query(
        "INSERT INTO sales (house_id, sale_date, price, bedrooms, bathrooms, sqft_living, sqft_lot, floors, waterfront,"
        ' "view", "condition", grade, sqft_above, sqft_basement, yr_built, yr_renovated, zipcode, lat, long,'
        " sqft_living15, sqft_lot15) SELECT house_id, sale_date, price * 1.25, bedrooms, bathrooms, sqft_living,"
        ' sqft_lot, floors, waterfront, "view", "condition", grade, sqft_above, sqft_basement, yr_built, yr_renovated,'
        " zipcode, lat, long, sqft_living15, sqft_lot15 FROM sales WHERE sale_id = 1"
    )
    market.insert(sales_csv(12, 1, 60))
    later = market.settle()
    assert len(later) == 1
    exported = [r for r in market.exported_rows(later) if r[0] == str(house)]
    assert [(i, d) for i, d, _ in exported] == [(str(house), date.isoformat())]  # the latest version only
    assert float(exported[0][2]) == float(price) * 1.25
    ledger, _ = read_ledger(aws.s3, aws.bucket)
    assert ledger["uploads"][-1]["corrected"] == 1
    rows = csv.DictReader(io.StringIO(get_bytes(aws.s3, aws.bucket, ledger["dataset_key"]).decode()))
    versions = [r for r in rows if r["id"] == str(house) and r["date"].replace("-", "")[:8] == date.strftime("%Y%m%d")]
    assert len(versions) == 1 and float(versions[0]["price"]) == pytest.approx(float(price) * 1.25)


def test_rows_that_fail_validation_are_left_out_and_reported_with_their_database_keys(aws, market):
    market.insert(sales_csv(50, 0, 80))
    market.query("UPDATE sales SET grade = NULL WHERE sale_id = 3")
    market.query("UPDATE sales SET price = -5 WHERE sale_id = 7")
    out = market.run()
    assert out.status == "exported" and out.rows == 78 and out.skipped == 2
    report = aws.s3.get_object(Bucket=aws.bucket, Key=layout.marketplace_report(out.key))["Body"].read().decode()
    skipped = json.loads(report)["skipped"]
    assert sorted((s["database_key"], s["column"]) for s in skipped) == [("3", "grade"), ("7", "price")]
    assert len(market.exported_rows([out.key])) == 78


def test_the_listings_become_the_inventory_when_they_change(aws, market):
    market.query(
        'INSERT INTO listings (house_id, bedrooms, bathrooms, sqft_living, sqft_lot, floors, waterfront, "view",'
        ' "condition", grade, sqft_above, sqft_basement, yr_built, yr_renovated, zipcode, lat, long, sqft_living15,'
        " sqft_lot15) VALUES (7129300520, 3, 1, 1180, 5650, 1, 0, 0, 3, 7, 1180, 0, 1955, 0, 98178, 47.5112,"
        " -122.257, 1340, 5650), (6414100192, 3, 2.25, 2570, 7242, 2, 0, 0, 3, 7, 2170, 400, 1951, 1991, 98125,"
        " 47.721, -122.319, 1690, 7639)"
    )
    assert market.run().inventory == "written"
    body = get_bytes(aws.s3, aws.bucket, layout.DEFAULT_INVENTORY).decode()
    assert body.splitlines()[0].startswith("id,bedrooms") and len(body.splitlines()) == 3
    assert market.run().inventory == "unchanged"  # no write, so no needless repricing
    market.query("UPDATE listings SET active = false WHERE house_id = 6414100192")
    assert market.run().inventory == "written"
    assert len(get_bytes(aws.s3, aws.bucket, layout.DEFAULT_INVENTORY).decode().splitlines()) == 2


def test_the_function_reads_its_secret_and_runs(aws, market):
    market.insert(sales_csv(50, 0, 60))
    time.sleep(1.5)  # the local stack's IngestLagSeconds
    out = aws.invoke("IngestFunction", {})
    assert out["status"] == "exported" and out["rows"] == 60


def test_a_long_history_is_exported_in_parts(aws, market):
    market.insert(sales_csv(20, 0, 250))
    first = market.run(max_rows=100)
    assert first.status == "exported" and first.rows == 100
    market.retrain(first.key)
    second = market.run(max_rows=100)
    assert second.status == "exported" and second.rows == 100 and second.window["from"] == first.window["to"]
    market.retrain(second.key)
    third = market.run(max_rows=100)
    assert third.status == "exported" and third.rows == 50
    rows = market.exported_rows([first.key, second.key, third.key])
    assert len({(i, d) for i, d, _ in rows}) == len(rows) == 250
