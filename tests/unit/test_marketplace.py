"""The marketplace's queries come from configuration: names are checked and quoted, never SQL; values reach the
CSV as they are (validation judges them); the local database starter says why when it cannot start."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcprice.dataset import REQUIRED, read_sales
from kcprice.marketplace import Schema, parse_stamp, quote, stamp, to_csv


@given(st.text(max_size=80))
def test_a_configured_name_is_a_quoted_identifier_or_refused(name):
    try:
        quoted = quote(name)
    except ValueError as e:
        assert repr(name) in str(e)
        return
    # Only letters, digits and _ inside the quotes: no quote, space, semicolon or comment can reach the SQL.
    assert re.fullmatch(r'"[A-Za-z_][A-Za-z0-9_]*"(\."[A-Za-z_][A-Za-z0-9_]*")?', quoted)


@pytest.mark.parametrize(
    "bad", ['sales"; DROP TABLE sales; --', "sales where 1=1", "a.b.c", "", "1sales", "sa-les", "sales--"]
)
def test_injection_through_configuration_is_refused(bad):
    with pytest.raises(ValueError):
        Schema(sales_table=bad)
    with pytest.raises(ValueError):
        Schema(columns={"price": bad})


def test_a_rename_of_an_unknown_column_is_refused_naming_it():
    with pytest.raises(ValueError, match="prices"):
        Schema(columns={"prices": "amount"})


def test_the_sales_query_takes_the_latest_version_of_each_sale_in_the_window():
    q = Schema(sales_table="market.sale_versions", columns={"id": "house", "price": "amount"}).sales_query()
    assert 'FROM "market"."sale_versions"' in q
    assert 'DISTINCT ON ("house", "sale_date")' in q
    assert '"recorded_at" > %s AND "recorded_at" <= %s' in q  # (from, to]: each version in exactly one window
    assert 'ORDER BY "house", "sale_date", "recorded_at" DESC' in q
    assert '"amount" AS "price"' in q and '"house" AS "id"' in q
    assert all(f'AS "{c}"' in q for c in REQUIRED)


def test_database_values_reach_validation_unrepaired():
    row = [1, dt.date(2014, 10, 13), Decimal("221900.00"), *([None] * (len(REQUIRED) - 3))]
    data = to_csv(REQUIRED, [row])
    assert data.splitlines()[1].startswith(b"1,2014-10-13,221900.00,,")
    sales, report = read_sales(data, skip_bad_rows=True)
    assert sales is None and report.skipped[0]["row"] == 2 and report.skipped[0]["code"] == "missing_value"


def test_window_stamps_sort_as_times_and_survive_a_round_trip():
    a = dt.datetime(2026, 12, 1, 9, 5, 3, 7, tzinfo=dt.UTC)
    b = a + dt.timedelta(microseconds=1)
    assert stamp(a) < stamp(b) and parse_stamp(stamp(a)) == a and ":" not in stamp(a)


def test_without_postgresql_the_local_stack_says_why(tmp_path, monkeypatch):
    from kclocal import marketplace, postgres

    def none():
        raise postgres.PostgresUnavailable("no PostgreSQL binaries: install PostgreSQL or `pip install pgserver`")

    monkeypatch.setattr(postgres, "binaries", none)
    pg, why = marketplace.start(tmp_path / "pg")
    assert pg is None and "pgserver" in why
