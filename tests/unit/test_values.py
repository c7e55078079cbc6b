"""One definition of a valid value, and uploads corrupted every way a real export can: property-based (hypothesis).

Invariants: the CSV validator and the API schema accept exactly the same values; reading never raises; a sales file
with a corrupted column is rejected with a problem naming that column (or is still a correct reading of the data);
an inventory keeps every clean house and reports every skipped one with its id."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kcprice.dataset import REQUIRED, read_inventory, read_sales
from kcprice.fields import BOUNDS, DATE_MAX, DATE_MIN, ZERO_WHEN_EMPTY
from kcprice.schema import EXAMPLE_HOUSE, House

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
HEADER = list(REQUIRED)
ROW = {
    "id": "7129300520",
    "date": "20141013T000000",
    "price": "221900",
    **{k: str(v) for k, v in EXAMPLE_HOUSE.items() if k != "date"},
}


def csv_of(rows: list[dict], header: list[str] | None = None) -> bytes:
    header = header or HEADER
    return ("\n".join([",".join(header), *(",".join(r[h] for h in header) for r in rows)]) + "\n").encode()


def clean_rows(n: int = 60) -> list[dict]:
    # distinct sales (id, date) of one valid house
    return [{**ROW, "id": str(1000 + i)} for i in range(n)]


def api_accepts(field: str, value) -> bool:
    try:  # the API reads JSON text (json.dumps writes NaN / Infinity tokens for non-finite floats)
        House.model_validate_json(json.dumps({**EXAMPLE_HOUSE, field: value}))
        return True
    except ValidationError:
        return False


def csv_accepts(field: str, text: str) -> bool:
    rows = clean_rows(1)
    rows[0][field] = text
    sales, _ = read_sales(csv_of(rows))
    return sales is not None


# fields whose value cannot change alone without breaking a cross-field rule
ALONE = [f for f in BOUNDS if f not in ("sqft_living", "sqft_above", "sqft_basement", "yr_built", "yr_renovated")]
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**7), max_value=10**7),
    st.sampled_from([0.25, 0.5, 1.25, 2.5, -0.0, 1e-9, 47.08, 47.78, 98001, 98199, 1e300]),
    st.builds(
        lambda f, k: BOUNDS[f][0] + k * (BOUNDS[f][2] or 0.01), st.sampled_from(list(BOUNDS)), st.integers(0, 5000)
    ),
)


@pytest.mark.parametrize("field", ALONE)
@PROFILE
@given(value=values)
def test_the_api_and_the_csv_validator_accept_the_same_values(field, value):
    text = repr(float(value)) if isinstance(value, float) else str(value)
    assert api_accepts(field, value) == csv_accepts(field, text), (field, value)


@pytest.mark.parametrize("token", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e999"])
@pytest.mark.parametrize("column", ["price", *BOUNDS])
def test_non_finite_tokens_are_named_in_every_column(column, token):
    rows = clean_rows()
    rows[7][column] = token
    sales, report = read_sales(csv_of(rows))
    assert sales is None
    (problem,) = [p for p in report.problems if p.column == column]
    assert problem.code == "non_finite" and problem.examples[0] == {"row": 9, "value": token}


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["lat", "sqft_lot", "bathrooms"])
def test_non_finite_values_are_refused_by_the_api_as_not_finite(field, token):
    text = json.dumps({**EXAMPLE_HOUSE, field: 12345.678}).replace("12345.678", token)
    with pytest.raises(ValidationError) as e:
        House.model_validate_json(text)
    (err,) = e.value.errors()
    assert err["loc"] == (field,) and err["type"] == "finite_number", err


@pytest.mark.parametrize(
    ("value", "ok"), [("1180", False), (True, False), (1180.0, True), (1180, True), (1180.5, False)]
)
def test_api_numbers_are_json_numbers(value, ok):
    assert api_accepts("sqft_lot", value) is ok


@pytest.mark.parametrize(
    ("date", "ok"),
    [
        ("2014-10-13", True),
        (str(DATE_MIN), True),
        (str(DATE_MAX), True),
        ("2013-12-31", False),
        ("9999-12-31", False),
        ("0001-01-01", False),
    ],
)
def test_sale_dates_are_bounded_the_same_everywhere(date, ok):
    assert api_accepts("date", date) is ok
    assert csv_accepts("date", date) is ok


# Date-like text: every way a date gets written (the three formats, ISO date-times, Unix timestamps as strings) and
# shuffles of their characters. No commas or spaces: CSV cells are split on one and stripped of the other, JSON
# strings are taken as written.
date_texts = st.one_of(
    st.builds(
        lambda d, fmt: d.strftime(fmt),
        st.dates(dt.date(2010, 1, 1), dt.date(2035, 12, 31)),
        st.sampled_from(["%Y-%m-%d", "%Y%m%d", "%Y%m%dT000000", "%Y-%m-%dT00:00:00Z", "%Y-%m%d", "%d/%m/%Y", "%Y"]),
    ),
    st.builds(lambda d: str(int(dt.datetime(d.year, d.month, d.day).timestamp())), st.dates(DATE_MIN, DATE_MAX)),
    st.text(alphabet="0123456789-T:Z.+/", max_size=20),
)


@PROFILE
@given(text=date_texts)
@example("1413158400")  # a Unix timestamp in a string: pydantic alone reads it as 2014-10-13
@example("2014-10-13T00:00:00Z")  # pydantic alone takes a date-time at midnight as its date
@example("2015-02-30")  # no such day
def test_the_api_and_the_csv_validator_accept_the_same_dates(text):
    assert api_accepts("date", text) == csv_accepts("date", text), text


@pytest.mark.parametrize("text", ["2014-10-13", "20141013", "20141013T000000"])
def test_every_written_form_is_the_same_day(text):
    assert House.model_validate_json(json.dumps({**EXAMPLE_HOUSE, "date": text})).date == dt.date(2014, 10, 13)


def test_empty_cells(tmp_path):
    rows = clean_rows()
    for column in ZERO_WHEN_EMPTY:
        rows[3][column] = ""
    sales, report = read_sales(csv_of(rows))
    assert report.ok and sales.raw[3, list(BOUNDS).index("yr_renovated")] == 0  # "never renovated"
    for column in ("price", "grade", "lat", "date", "id"):
        rows = clean_rows()
        rows[4][column] = ""
        sales, report = read_sales(csv_of(rows))
        assert sales is None and [(p.code, p.column) for p in report.problems] == [("missing_value", column)]


# --- corruptions a real export produces ---------------------------------------------------------------------------
def corrupt(kind: str, column: str, rows: list[dict], at: int) -> tuple[list[dict], list[str]]:
    rows = [dict(r) for r in rows]
    header = list(HEADER)
    v = rows[at][column]
    match kind:
        case "non_finite":
            rows[at][column] = "nan"
        case "empty":
            rows[at][column] = ""
        case "spaces":
            rows[at][column] = f"  {v} "
        case "thousands":
            rows[at][column] = f'"{int(float(v)):,}"' if column not in ("date", "lat", "long") else f'"{v},5"'
        case "units":
            rows[at][column] = f"{v} units"
        case "quoted":
            rows[at][column] = f'"{v}"'
        case "huge":
            rows[at][column] = "9" * 40
        case "negative_zero":
            rows[at][column] = "-0" if column in ("yr_renovated", "waterfront", "view", "sqft_basement") else v
        case "header_case":
            header[header.index(column)] = f" {column.upper()} "
            for r in rows:
                r[f" {column.upper()} "] = r.pop(column)
        case "duplicate_header":
            header.append(column)
        case "swapped":
            other = "long" if column == "lat" else "lat" if column == "long" else "zipcode"
            if other != column:
                for r in rows:
                    r[column], r[other] = r[other], r[column]
    return rows, header


KINDS = [
    "non_finite",
    "empty",
    "spaces",
    "thousands",
    "units",
    "quoted",
    "huge",
    "negative_zero",
    "header_case",
    "duplicate_header",
    "swapped",
]
HARMLESS = {"spaces", "quoted", "header_case", "negative_zero"}  # the file still says the same thing


@PROFILE
@given(kind=st.sampled_from(KINDS), column=st.sampled_from(HEADER), at=st.integers(0, 59))
@example(kind="swapped", column="lat", at=0)
def test_a_corrupted_sales_file_is_rejected_naming_the_column_or_read_right(kind, column, at):
    rows, header = corrupt(kind, column, clean_rows(), at)
    sales, report = read_sales(csv_of(rows, header))  # never raises
    if sales is not None:
        clean, _ = read_sales(csv_of(clean_rows()))
        harmless = (
            kind in HARMLESS
            or (kind == "empty" and column in ZERO_WHEN_EMPTY and ROW[column] == "0")
            or (kind == "thousands" and "," not in rows[at][column])  # under 1,000: nothing to separate
        )
        assert harmless or (kind == "swapped" and column == "zipcode"), (kind, column)  # (zipcode with itself)
        if harmless:
            np.testing.assert_array_equal(sales.raw, clean.raw)
            np.testing.assert_array_equal(sales.price, clean.price)
        return
    named = {p.column for p in report.problems} | {c for p in report.problems for c in p.message.split()}
    wanted = {column, column.strip()} | ({"lat", "long", "zipcode"} if kind == "swapped" else set())
    assert named & wanted, (kind, column, [(p.code, p.column, p.message) for p in report.problems])


@given(data=st.binary(max_size=3000))
@settings(max_examples=300, deadline=None, database=None)
def test_arbitrary_bytes_never_raise(data):
    for reader in (read_sales, read_inventory):
        sales, report = reader(data)
        assert (sales is None) != report.ok or (reader is read_inventory)
        json.dumps(report.to_dict(), allow_nan=False)  # reports are strict JSON


@PROFILE
@given(
    bad=st.sets(st.integers(0, 59), max_size=20),
    kind=st.sampled_from(["non_finite", "empty", "units", "huge"]),
    column=st.sampled_from(list(BOUNDS)),
)
def test_an_inventory_keeps_every_clean_house_and_reports_every_skipped_one(bad, kind, column):
    assume(not (kind == "empty" and column in ZERO_WHEN_EMPTY))
    rows = [{k: v for k, v in r.items() if k not in ("price", "date")} for r in clean_rows()]
    header = [h for h in HEADER if h not in ("price", "date")]
    for i in bad:
        rows, _ = corrupt(kind, column, rows, i)
    houses, report = read_inventory(csv_of(rows, header))
    kept = set() if houses is None else set(houses.ids.tolist())
    assert kept == {1000 + i for i in range(60) if i not in bad}
    assert {int(s["id"]) for s in report.skipped} == {1000 + i for i in bad}
    assert all(s["column"] == column and s["row"] == int(s["id"]) - 1000 + 2 for s in report.skipped)
    if houses is not None:
        assert np.isfinite(houses.raw[:, :-1]).all()  # nothing non-finite is ever priced


def test_strict_json_reports():
    from kcprice.storage import strict

    doc = strict({"mape": math.nan, "x": [math.inf, 1.5], "n": 3})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {"mape": None, "x": [None, 1.5], "n": 3}
