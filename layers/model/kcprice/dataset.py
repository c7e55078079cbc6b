"""Read a sales CSV into clean arrays, or explain precisely why not. Never raises on bad input.

Accepted: the columns of the KC data set in any order (extra columns ignored), UTF-8 (BOM tolerated),
dates as 20141013T000000, 20141013 or 2014-10-13. Every problem is reported with its column and examples.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from dataclasses import dataclass, field

import numpy as np

from kcprice.features import RAW_COLUMNS
from kcprice.fields import BOUNDS, EPOCH, FIELDS, PRICE_BOUNDS, rule_violations

REQUIRED: tuple[str, ...] = ("id", "date", "price") + FIELDS
# An inventory lists houses to score: no price, and a sale date is optional.
INVENTORY_REQUIRED: tuple[str, ...] = ("id",) + FIELDS
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(T000000)?$")
_EXAMPLES = 5


@dataclass
class Problem:
    code: str
    message: str
    column: str | None = None
    count: int = 1
    examples: list[dict] = field(default_factory=list)


@dataclass
class ValidationReport:
    ok: bool
    rows: int
    problems: list[Problem]
    sha256: str

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "sha256": self.sha256,
            "problems": [p.__dict__ for p in self.problems],
        }


@dataclass
class Sales:
    """Validated sales: ids, sale day (days since EPOCH), price, and raw model inputs in RAW_COLUMNS order."""

    ids: np.ndarray
    raw: np.ndarray
    price: np.ndarray
    sha256: str

    @property
    def day(self) -> np.ndarray:
        return self.raw[:, RAW_COLUMNS.index("day")]

    def __len__(self) -> int:
        return len(self.price)

    def take(self, idx: np.ndarray) -> Sales:
        return Sales(self.ids[idx], self.raw[idx], self.price[idx], self.sha256)

    def to_csv(self) -> bytes:
        """Round-trips through read_sales (dates written as ISO)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(REQUIRED)
        days = self.day.astype(int)
        for i in range(len(self)):
            date = (EPOCH + dt.timedelta(days=int(days[i]))).isoformat()
            feats = [_fmt(v) for v in self.raw[i, : len(FIELDS)]]
            w.writerow([int(self.ids[i]), date, _fmt(self.price[i]), *feats])
        return out.getvalue().encode()


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def merge(old: Sales, new: Sales) -> Sales:
    """Union of two sale sets; a sale (id, day) present in both keeps the new row."""
    keys_new = set(zip(new.ids.tolist(), new.day.tolist(), strict=True))
    keep = np.array(
        [(i, d) not in keys_new for i, d in zip(old.ids.tolist(), old.day.tolist(), strict=True)], dtype=bool
    )
    both = Sales(
        np.concatenate([old.ids[keep], new.ids]),
        np.vstack([old.raw[keep], new.raw]),
        np.concatenate([old.price[keep], new.price]),
        "",
    )
    both.sha256 = hashlib.sha256(both.to_csv()).hexdigest()
    return both


def _parse_day(value: str) -> float | None:
    m = _DATE.match(value.strip())
    if not m:
        return None
    try:
        return float((dt.date(int(m[1]), int(m[2]), int(m[3])) - EPOCH).days)
    except ValueError:
        return None


def _numeric(name: str, values: list[str], problems: list[Problem]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        pass
    out = np.full(len(values), np.nan)
    bad = []
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except ValueError:
            bad.append(i)
    problems.append(
        Problem(
            "non_numeric",
            f"{len(bad)} value(s) in '{name}' are not numbers",
            name,
            len(bad),
            [{"row": i + 2, "value": values[i][:40]} for i in bad[:_EXAMPLES]],
        )
    )
    return out


def _mask_problem(code: str, message: str, column: str | None, bad: np.ndarray, shown: np.ndarray) -> Problem:
    idx = np.flatnonzero(bad)
    examples = [
        {"row": int(i) + 2, "value": _fmt(shown[i]) if np.isfinite(shown[i]) else "NaN"} for i in idx[:_EXAMPLES]
    ]
    return Problem(code, message, column, int(idx.size), examples)


def read_inventory(data: bytes) -> tuple[Sales | None, ValidationReport]:
    """Houses to score: like read_sales, but price is NaN and a missing date is NaN (the model's default day)."""
    return read_sales(data, labelled=False)


def read_sales(data: bytes, min_rows: int = 1, labelled: bool = True) -> tuple[Sales | None, ValidationReport]:
    """bytes of a CSV -> (Sales, report) when clean, (None, report) when not. Row numbers are 1-based file lines."""
    digest = hashlib.sha256(data).hexdigest()
    problems: list[Problem] = []

    def reject(rows: int = 0) -> tuple[None, ValidationReport]:
        return None, ValidationReport(False, rows, problems, digest)

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problems.append(Problem("encoding", f"file is not UTF-8: byte {e.start} is {data[e.start : e.start + 1]!r}"))
        return reject()
    try:
        table = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        problems.append(Problem("csv_syntax", f"not a readable CSV: {e}"))
        return reject()
    table = [r for r in table if any(c.strip() for c in r)]
    if not table:
        problems.append(Problem("empty_file", "file has no header and no rows"))
        return reject()
    header = [h.strip().lower() for h in table[0]]
    required = REQUIRED if labelled else INVENTORY_REQUIRED
    missing = [c for c in required if c not in header]
    if missing:
        problems.append(Problem("missing_columns", f"missing column(s): {', '.join(missing)}", count=len(missing)))
        return reject(len(table) - 1)
    body = table[1:]
    short = [i for i, r in enumerate(body) if len(r) != len(header)]
    if short:
        problems.append(
            Problem(
                "row_length",
                f"{len(short)} row(s) do not have {len(header)} fields",
                count=len(short),
                examples=[{"row": i + 2, "value": f"{len(body[i])} fields"} for i in short[:_EXAMPLES]],
            )
        )
        return reject(len(body))
    if len(body) < min_rows:
        problems.append(Problem("too_few_rows", f"{len(body)} data row(s); at least {min_rows} needed", None, 1))
        return reject(len(body))

    present = [c for c in REQUIRED if c in header]
    col = {name: [r[header.index(name)].strip() for r in body] for name in present}
    if not labelled:
        col.setdefault("date", [""] * len(body))
        col["price"] = ["nan"] * len(body)
    values = {name: _numeric(name, col[name], problems) for name in ("id", "price") + FIELDS}
    parsed = [_parse_day(v) if (labelled or v) else np.nan for v in col["date"]]
    days = np.array([np.nan if d is None else d for d in parsed])
    bad_dates = [i for i, d in enumerate(parsed) if d is None]
    if bad_dates:
        examples = [{"row": i + 2, "value": col["date"][i][:40]} for i in bad_dates[:_EXAMPLES]]
        message = "dates must be YYYYMMDDT000000, YYYYMMDD or YYYY-MM-DD"
        problems.append(Problem("bad_date", message, "date", len(bad_dates), examples))

    bounds = dict(BOUNDS, id=(1, 1e11, True))
    if labelled:
        bounds["price"] = (*PRICE_BOUNDS, False)
    for name, (low, high, integer) in bounds.items():
        v = values[name]
        finite = np.isfinite(v)
        out = finite & ((v < low) | (v > high))
        if out.any():
            problems.append(_mask_problem("out_of_range", f"'{name}' must be in {low}..{high}", name, out, v))
        if integer and (finite & (v != np.round(v))).any():
            problems.append(
                _mask_problem("not_integer", f"'{name}' must be a whole number", name, finite & (v != np.round(v)), v)
            )
    if not problems:
        for message, bad in rule_violations(values).items():
            if bad.any():
                problems.append(_mask_problem("inconsistent", message, None, bad, values["sqft_living"]))
        keys = np.rec.fromarrays([values["id"], np.nan_to_num(days, nan=-1.0)])  # inventory: no date
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = np.ones(len(body), dtype=bool)
            dup[first] = False
            problems.append(
                _mask_problem("duplicate_rows", "the same sale (id, date) appears twice", "id", dup, values["id"])
            )
    if problems:
        return reject(len(body))

    raw = np.column_stack([values[c] for c in FIELDS] + [days])
    sales = Sales(values["id"].astype(np.int64), raw, values["price"], digest)
    return sales, ValidationReport(True, len(body), [], digest)
