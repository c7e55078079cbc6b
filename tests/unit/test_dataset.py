"""CSV validation: clean data comes back as arrays, anything else as a report naming the problem."""

import numpy as np
import pytest

from kcprice.dataset import REQUIRED, merge, read_sales


def rows(data: bytes) -> list[list[str]]:
    return [line.split(",") for line in data.decode().splitlines() if line]


def to_bytes(table: list[list[str]]) -> bytes:
    return ("\n".join(",".join(r) for r in table) + "\n").encode()


@pytest.fixture(scope="module")
def small(kc_bytes) -> list[list[str]]:
    return rows(kc_bytes)[:301]  # header + 300 sales


def codes(report) -> set[str]:
    return {p.code for p in report.problems}


def test_shipped_data_is_clean(kc_sales):
    assert len(kc_sales) == 21_613
    assert kc_sales.raw.shape == (21_613, 19)
    assert len(set(kc_sales.ids.tolist())) == 21_436  # 177 houses sold twice


def test_column_order_and_extra_columns_do_not_matter(small):
    sales, _ = read_sales(to_bytes(small))
    header = small[0]
    order = list(reversed(range(len(header))))
    shuffled = [[r[i] for i in order] + ["extra"] for r in small]
    shuffled[0][-1] = "notes"
    again, report = read_sales(to_bytes(shuffled))
    assert report.ok
    np.testing.assert_array_equal(again.raw, sales.raw)
    np.testing.assert_array_equal(again.price, sales.price)


def test_round_trip_through_csv(small):
    sales, _ = read_sales(to_bytes(small))
    again, report = read_sales(sales.to_csv())
    assert report.ok
    np.testing.assert_array_equal(again.raw, sales.raw)


def test_missing_column(small):
    i = small[0].index("grade")
    sales, report = read_sales(to_bytes([r[:i] + r[i + 1 :] for r in small]))
    assert sales is None and codes(report) == {"missing_columns"}
    assert "grade" in report.problems[0].message


def test_non_numeric_reports_row_and_value(small):
    t = [list(r) for r in small]
    t[5][t[0].index("sqft_lot")] = "?"
    sales, report = read_sales(to_bytes(t))
    assert sales is None
    (p,) = report.problems
    assert (p.code, p.column, p.examples) == ("non_numeric", "sqft_lot", [{"row": 6, "value": "?"}])


def test_out_of_range_price(small):
    t = [list(r) for r in small]
    t[3][t[0].index("price")] = "-5"
    _, report = read_sales(to_bytes(t))
    assert [(p.code, p.column) for p in report.problems] == [("out_of_range", "price")]


def test_duplicate_sale(small):
    _, report = read_sales(to_bytes([*small, small[7]]))
    assert codes(report) == {"duplicate_rows"}


def test_inconsistent_areas(small):
    t = [list(r) for r in small]
    t[2][t[0].index("sqft_above")] = "1"
    _, report = read_sales(to_bytes(t))
    assert "out_of_range" in codes(report) or "inconsistent" in codes(report)
    t[2][t[0].index("sqft_above")] = str(int(t[2][t[0].index("sqft_living")]) + 10)
    _, report = read_sales(to_bytes(t))
    assert codes(report) == {"inconsistent"}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"\xff\xfe\x00bad", "encoding"),
        ((",".join(REQUIRED) + "\n").encode(), "too_few_rows"),
        (b"a,b\n1,2\n", "missing_columns"),
    ],
)
def test_broken_files_never_raise(data, code):
    sales, report = read_sales(data)
    assert sales is None and not report.ok and code in codes(report)


def test_too_few_rows(small):
    _, report = read_sales(to_bytes(small[:10]), min_rows=50)
    assert codes(report) == {"too_few_rows"}


@pytest.mark.parametrize(("text", "ok"), [("2014-10-13", True), ("20141013", True), ("10/13/2014", False)])
def test_date_formats(small, text, ok):
    t = [list(r) for r in small]
    t[1][t[0].index("date")] = text
    sales, report = read_sales(to_bytes(t))
    assert report.ok is ok
    if ok:
        assert sales.day[0] == 285  # 2014-10-13 is day 285 after 2014-01-01
    else:
        assert report.problems[0].examples == [{"row": 2, "value": "10/13/2014"}]


def test_merge_keeps_new_rows_for_the_same_sale_and_counts_what_changed(small):
    sales, _ = read_sales(to_bytes(small))
    newer = [list(r) for r in small[:11]]  # header + 10 sales already known
    for r in newer[1:6]:
        r[newer[0].index("price")] = "123456"  # 5 corrected
    extra = list(small[1])
    extra[0], extra[1] = "1", "20150101T000000"  # 1 new sale
    new, _ = read_sales(to_bytes([*newer, extra]))
    merged = merge(sales, new)
    assert (merged.new, merged.replaced, merged.unchanged) == (1, 5, 5)
    assert len(merged.sales) == len(sales) + 1
    assert (merged.sales.price == 123456).sum() == 5
    assert merged.sales.sha256 and merged.sales.sha256 != sales.sha256
    again = merge(merged.sales, new)
    assert (again.new, again.replaced, again.unchanged) == (0, 0, 11)
    assert again.sales.sha256 == merged.sales.sha256
