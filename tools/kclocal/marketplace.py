"""The marketplace's database, locally: a real PostgreSQL (kclocal.postgres) with docs/marketplace.sql's schema,
the KC sales the local stack starts from (with a few corrected versions) and the inventory as listings.

kcprice-local marketplace add-sales FILE   new sales recorded now (the next ingest exports them)
kcprice-local marketplace ingest           run the ingest function now (it also runs on IngestSchedule)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from pathlib import Path

from kclocal import data
from kclocal.postgres import Postgres, PostgresUnavailable
from kclocal.template import ROOT
from kcprice.dataset import FIELDS

log = logging.getLogger(__name__)
DDL = ROOT / "docs" / "marketplace.sql"
SECRET_NAME = "kc-price/marketplace"
_SALE_COLUMNS = ("house_id", "sale_date", "price", *FIELDS)
# A few sales recorded again a week later with corrected values: (row of the seed sales, column, new value).
CORRECTIONS = ((10, "price", 1.05), (200, "sqft_living", 1.1), (3000, "grade", 1))


def _quoted(name: str) -> str:
    return f'"{name}"'


def _rows(csv_data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_data.decode())))


def _value(v: str) -> str | None:
    return v if v != "" else None


def _sale_values(row: dict[str, str]) -> list:
    date = row["date"][:8]
    return [row["id"], f"{date[:4]}-{date[4:6]}-{date[6:8]}", row["price"], *(_value(row[c]) for c in FIELDS)]


def insert_sales(conn, csv_data: bytes, recorded_at: dt.datetime | None = None) -> int:
    """Sales in the kc data set's CSV format, recorded at `recorded_at` (default: now, the database's clock)."""
    rows = [[*_sale_values(r), *([recorded_at] if recorded_at else [])] for r in _rows(csv_data)]
    _copy(conn.cursor(), "sales", (*_SALE_COLUMNS, *(["recorded_at"] if recorded_at else [])), rows)
    conn.commit()
    return len(rows)


def load(conn) -> dict[str, int]:
    """The schema, and on an empty database: the seed sales (recorded on their sale day), a few corrections a week
    later, and the inventory as active listings."""
    cur = conn.cursor()
    cur.execute(DDL.read_text())
    conn.commit()
    cur.execute("SELECT count(*) FROM sales")
    if cur.fetchone()[0]:
        return {"sales": 0, "corrections": 0, "listings": 0}
    seed = _rows(data.by_date(before=data.SEED_BEFORE))
    rows = []
    for r in seed:
        day = dt.datetime.strptime(r["date"][:8], "%Y%m%d").replace(hour=18, tzinfo=dt.UTC)
        rows.append([*_sale_values(r), day])
    for index, column, change in CORRECTIONS:
        r = dict(seed[index])
        if column == "grade":
            r[column] = str(int(r[column]) + change)
        elif column == "sqft_living":  # sqft_living = above + basement: correct both
            extra = int(int(r["sqft_living"]) * change) - int(r["sqft_living"])
            r["sqft_living"], r["sqft_above"] = str(int(r["sqft_living"]) + extra), str(int(r["sqft_above"]) + extra)
        else:
            r[column] = f"{float(r[column]) * change:.2f}"
        day = dt.datetime.strptime(r["date"][:8], "%Y%m%d").replace(hour=18, tzinfo=dt.UTC) + dt.timedelta(days=7)
        rows.append([*_sale_values(r), day])
    _copy(cur, "sales", (*_SALE_COLUMNS, "recorded_at"), rows)
    listings = _rows(data.inventory())
    _copy(cur, "listings", ("house_id", *FIELDS), [[r["id"], *(_value(r[c]) for c in FIELDS)] for r in listings])
    conn.commit()
    return {"sales": len(seed), "corrections": len(CORRECTIONS), "listings": len(listings)}


def _copy(cur, table: str, columns: tuple[str, ...], rows: list[list]) -> None:
    """COPY FROM STDIN: one round trip for the whole table (row by row INSERTs took ~30 s for the seed)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow(["" if v is None else v.isoformat() if isinstance(v, dt.datetime) else v for v in r])
    cols = ", ".join(_quoted(c) for c in columns)
    cur.execute(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)", stream=io.BytesIO(buf.getvalue().encode()))


def start(folder: Path, port: int = 0) -> tuple[Postgres | None, str]:
    """The local marketplace database, loaded; (None, why) when no server can start here."""
    try:
        pg = Postgres(folder, port).start()
    except (PostgresUnavailable, OSError) as e:
        return None, str(e)
    conn = pg.connect()
    try:
        loaded = load(conn)
    finally:
        conn.close()
    what = ", ".join(f"{v:,} {k}" for k, v in loaded.items()) if any(loaded.values()) else "kept"
    return pg, f"PostgreSQL on 127.0.0.1:{pg.port} ({pg.bin.parent.name}), marketplace data {what}"
