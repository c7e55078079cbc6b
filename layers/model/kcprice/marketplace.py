"""The marketplace's PostgreSQL database as the source of sales and of the inventory: its queries, built from
configuration (table and column names only, each checked and quoted), and its rows as the CSVs the rest of the
system reads. docs/marketplace.sql is a schema these defaults fit.

Sales come in versions: a sale is (house id, sale date); a correction records a new version of it (a new row, or
the same row updated) with a later `recorded_at`. An export takes, for each sale recorded or corrected inside its
window, the latest version in that window; retraining's merge (kcprice.dataset.merge) then replaces any earlier
version of that sale in the training data. A correction of the sale date itself is a new sale: the old (house,
date) stays until corrected away by the marketplace (for example by recording it at its real date).

The driver is pg8000: pure Python (about 0.3 MB with scramp and asn1crypto), so the ingest function needs no
compiled libpq built for Lambda's Amazon Linux, and it speaks SCRAM and TLS as RDS asks. Only the ingest function
installs it (functions/ingest/requirements.txt): the shared layer, and so the predict function's size budget, do
not carry it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from kcprice.dataset import INVENTORY_REQUIRED, REQUIRED

DEFAULT_COLUMNS = {"id": "house_id", "date": "sale_date"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def quote(name: str) -> str:
    """A configured table (schema.table) or column name as a quoted SQL identifier; anything else is refused, so
    configuration can never become SQL."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"not a table or column name: {name!r} (letters, digits and _, optionally schema.name)")
    return ".".join(f'"{p}"' for p in parts)


@dataclass(frozen=True)
class Schema:
    """Where the marketplace keeps what we read. `columns` renames: our column (kc data set's name) -> theirs."""

    sales_table: str = "sales"
    sale_key: str = "sale_id"  # the database key reported for a row that fails validation
    recorded_at: str = "recorded_at"  # set when a version of a sale is recorded (insert or correction)
    listings_table: str = "listings"
    listed: str = "active"  # boolean column: the house is for sale now
    columns: dict[str, str] = field(default_factory=dict)  # over DEFAULT_COLUMNS; the rest keep our names

    def __post_init__(self) -> None:
        unknown = set(self.columns) - set(REQUIRED)
        if unknown:
            raise ValueError(f"columns renames unknown fields {sorted(unknown)}; known: {', '.join(REQUIRED)}")
        for name in (self.sales_table, self.sale_key, self.recorded_at, self.listings_table, self.listed):
            quote(name)
        for name in self.columns.values():
            quote(name)

    def _col(self, ours: str) -> str:
        return quote({**DEFAULT_COLUMNS, **self.columns}.get(ours, ours))

    def sales_query(self) -> str:
        """Each sale recorded or corrected in (from, to], its latest version in the window, and its database key."""
        cols = ", ".join(f"{self._col(c)} AS {quote(c)}" for c in REQUIRED)
        house, date, at = self._col("id"), self._col("date"), quote(self.recorded_at)
        return (
            f"SELECT DISTINCT ON ({house}, {date}) {quote(self.sale_key)} AS _key, {cols} "
            f"FROM {quote(self.sales_table)} WHERE {at} > %s AND {at} <= %s "
            f"ORDER BY {house}, {date}, {at} DESC, {quote(self.sale_key)} DESC"
        )

    def window_end_query(self) -> str:
        """The recorded_at of the n-th version after `from` (OFFSET n - 1): a window ending there holds about n."""
        at = quote(self.recorded_at)
        return (
            f"SELECT {at} FROM {quote(self.sales_table)} WHERE {at} > %s AND {at} <= %s ORDER BY {at} OFFSET %s LIMIT 1"
        )

    def listings_query(self) -> str:
        cols = ", ".join(f"{self._col(c)} AS {quote(c)}" for c in INVENTORY_REQUIRED)
        return f"SELECT {cols} FROM {quote(self.listings_table)} WHERE {quote(self.listed)} ORDER BY 1"


def connect(secret: dict[str, Any], sslmode: str = "require", timeout: float = 30):
    """A pg8000 connection from an RDS-style secret (host, port, username, password, dbname). sslmode require:
    encrypted, server certificate not verified (libpq's `require`); disable: plain (the local database)."""
    import pg8000.dbapi  # type: ignore[import-untyped]

    context = None
    if sslmode == "require":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return pg8000.dbapi.connect(
        user=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret.get("port", 5432)),
        database=secret.get("dbname", "postgres"),
        ssl_context=context,
        timeout=timeout,
        application_name="kc-price-ingest",
    )


def database_now(conn, lag_seconds: float) -> dt.datetime:
    """The database's clock minus the lag: a window ends there, so a transaction still in flight when it was read
    (its recorded_at a little earlier than its commit) is not skipped."""
    cur = conn.cursor()
    cur.execute("SELECT now() - make_interval(secs => %s)", (float(lag_seconds),))
    return cur.fetchone()[0].astimezone(dt.UTC)


def window_end(conn, schema: Schema, after: dt.datetime, upto: dt.datetime, max_rows: int) -> dt.datetime:
    """`upto`, or earlier if the window would hold more than max_rows versions (a first export of a long history
    goes in parts, one per run, each small enough for one function's memory and one training run)."""
    cur = conn.cursor()
    cur.execute(schema.window_end_query(), (after, upto, max_rows - 1))
    row = cur.fetchone()
    return row[0].astimezone(dt.UTC) if row and row[0] < upto else upto


def fetch_sales(conn, schema: Schema, after: dt.datetime, upto: dt.datetime) -> tuple[list[str], bytes]:
    """(database keys, CSV of those sales in the kc data set's columns): the k-th key is the k-th data row."""
    cur = conn.cursor()
    cur.execute(schema.sales_query(), (after, upto))
    rows = cur.fetchall()
    return [str(r[0]) for r in rows], to_csv(REQUIRED, (r[1:] for r in rows))


def fetch_listings(conn, schema: Schema) -> bytes:
    cur = conn.cursor()
    cur.execute(schema.listings_query())
    return to_csv(INVENTORY_REQUIRED, cur.fetchall())


def to_csv(header: tuple[str, ...], rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([_cell(v) for v in row])
    return buf.getvalue().encode()


def _cell(v: Any) -> str:
    """A database value as the CSV reader takes it (NULL -> empty, dates ISO). Nothing is repaired here: a bad
    value reaches validation as it is, and is reported there with its row's key."""
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.date().isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def stamp(t: dt.datetime) -> str:
    """A window bound in a key: sortable, no ':' (20261201T101500.123456Z)."""
    return t.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)
