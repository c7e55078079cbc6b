"""Slices of the shipped data set as CSV bytes: the local stack's seed, the demo's newer sales, the inventory,
and uploads in tests. Rows in the file are ordered by price, so slices go by stride or by date, never position."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "kc_house_data.csv"
# The local story: the model is first trained on sales before this date, then newer sales arrive.
SEED_BEFORE = "20150201"


def lines() -> tuple[str, list[str]]:
    header, *rows = DATA.read_text().splitlines()
    return header, rows


def csv_bytes(rows: list[str], header: str | None = None) -> bytes:
    return ("\n".join([header or lines()[0], *rows]) + "\n").encode()


def stride(step: int, offset: int = 0) -> bytes:
    header, rows = lines()
    return csv_bytes(rows[offset::step], header)


def by_date(before: str | None = None, since: str | None = None, step: int = 1) -> bytes:
    """Sales with date < before and/or date >= since (YYYYMMDD), every step-th of them."""
    header, rows = lines()
    keep = [
        r
        for r in rows
        if (before is None or r.split(",")[1][:8] < before) and (since is None or r.split(",")[1][:8] >= since)
    ]
    return csv_bytes(keep[::step], header)


def inventory(step: int = 1) -> bytes:
    """One row per house (its latest sale), without price and date: what precompute scores."""
    header, rows = lines()
    cols = header.split(",")
    keep = [i for i, c in enumerate(cols) if c not in ("price", "date")]
    latest: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r.split(",")[1]):
        latest[r.split(",")[0]] = r.split(",")
    out = [",".join(cols[i] for i in keep)]
    out += [",".join(v[i] for i in keep) for v in list(latest.values())[::step]]
    return ("\n".join(out) + "\n").encode()
