"""The retention sweep against hand-written keyset-batched SQL on the same data.

Expired rows in two tables: `messages` (the map deletes them; rule: communications, 3
years) and `orders` (the map anonymises them: postal code nulled, phone masked, the rows
restricted; rules: orders and payment status, 3 years), plus a tenth as many recent rows
that must stay. Ours is the whole sweep with the shipped rules (claims, a cursor saved
after every batch, the second order rule finding the rows done, the children check, the
report); the baseline is what a person would write by hand: DELETE and UPDATE by ranges
of (timestamp, id), in batches of the same size, autocommitted. The two sides alternate on
freshly filled tables, each going first in turn, best of three each (the machine is noisy).
Target: ours >= 0.8x the baseline's rows per second.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections

from dsar import sample_product
from retention.services import retention_sweep

BATCH = 5000
EXPIRED_AGE = timedelta(days=4 * 365)


def _fill(table: str, patient_id: int, rows: int, age: timedelta) -> None:
    """`rows` rows dated `age` ago and earlier (a second apart), generated in the database."""
    db = connections["product"]
    start = datetime.now(UTC) - age
    if table == "messages":
        cols = "patient_id, channel, direction, body, sent_at"
        values = "%s, 'app', 'in', 'bench message body ' || g, {ts}"
    else:
        cols = (
            "patient_id, order_no, item, amount_cents, recipient_name, address, postal_code, phone,"
            " payment_status, logistics_company, tracking_number, created_at"
        )
        values = (
            "%s, 'HA' || g, '电动牙刷', 12900, '收件人', '某市某区健康路 ' || g || ' 号', '100000',"
            " '13800138000', 'paid', '顺达物流有限公司', 'SD' || g, {ts}"
        )
    with db.cursor() as c:
        if db.vendor == "postgresql":
            ts = "%s::timestamptz - g * interval '1 second'"
            c.execute(
                f"INSERT INTO {table} ({cols}) SELECT {values.format(ts=ts)} FROM generate_series(1, %s) g",  # noqa: S608
                [patient_id, start, rows],
            )
        else:
            # The text form Python's sqlite adapter writes for an aware datetime, so that the
            # sweep's parameters compare as they would against rows the product wrote.
            ts = "strftime('%%Y-%%m-%%d %%H:%%M:%%S', %s, '-' || g || ' seconds') || '+00:00'"
            c.execute(
                f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %s) "  # noqa: S608
                f"INSERT INTO {table} ({cols}) SELECT {values.format(ts=ts)} FROM s",
                [rows, patient_id, start.strftime("%Y-%m-%d %H:%M:%S")],
            )


def _prepare(expired: int) -> int:
    """Empty tables, then the expired rows and a tenth as many recent ones in both tables."""
    sample_product.truncate(fast=True)
    person = sample_product.Person(
        email="bench-retention@example.cn",
        phone="13500009999",
        name="基准",
        id_number="440101199001019999",
        birthday="1990-01-01",
        gender="女",
        native_place="广东省广州市",
    )
    pid = sample_product.patient_insert(person, created_at=datetime.now(UTC))
    for table in ("messages", "orders"):
        _fill(table, pid, expired, EXPIRED_AGE)
        _fill(table, pid, expired // 10, timedelta(days=1))
    db = connections["product"]
    with db.cursor() as c:
        if db.vendor == "postgresql":
            c.execute("VACUUM ANALYZE messages")
            c.execute("VACUUM ANALYZE orders")
            c.execute("CHECKPOINT")
        else:
            c.execute("ANALYZE")
    return pid


def _left(expired: int) -> None:
    """Both sides must leave the same thing: the recent rows, and every expired order
    anonymised."""
    with connections["product"].cursor() as c:
        c.execute("SELECT COUNT(*) FROM messages")
        assert c.fetchone()[0] == expired // 10
        c.execute("SELECT COUNT(*) FROM orders WHERE restricted_at IS NOT NULL AND postal_code IS NULL")
        assert c.fetchone()[0] == expired


def _ours(expired: int) -> float:
    start = time.perf_counter()
    run = retention_sweep(batch=BATCH)
    elapsed = time.perf_counter() - start
    rows = run.counts["units"]
    assert rows["communications:health_app.messages"]["rows"] == expired
    assert rows["orders_delivery:health_app.orders"]["rows"] == expired
    return elapsed


def _keyset(cursor: Any, table: str, column: str, cutoff: datetime, change: str, args: list[Any]) -> None:
    """Walk the expired rows of `table` by (column, id), BATCH at a time: find the batch's last
    key through the index, then change the key range in one statement (autocommitted). Each
    bound is also given on the timestamp alone, so that SQLite's index range ends at the
    batch: the best a person would write, not a strawman (an `id IN (subquery)` DELETE makes
    PostgreSQL scan the whole table for every batch)."""
    after: tuple[object, object] | None = None
    while True:
        lower, low_args = (
            ("1 = 1", [])
            if after is None
            else (f"{column} >= %s AND ({column}, id) > (%s, %s)", [after[0], *after])
        )
        cursor.execute(
            f"SELECT {column}, id FROM {table} WHERE {lower} AND {column} < %s "  # noqa: S608
            f"ORDER BY {column}, id LIMIT 1 OFFSET {BATCH - 1}",
            [*low_args, cutoff],
        )
        upto = cursor.fetchone()
        upper, up_args = (
            (f"{column} < %s", [cutoff])
            if upto is None
            else (f"{column} <= %s AND ({column}, id) <= (%s, %s)", [upto[0], *upto])
        )
        cursor.execute(f"{change} WHERE {lower} AND {upper}", [*args, *low_args, *up_args])
        if upto is None:
            return
        after = (upto[0], upto[1])


def _baseline(expired: int) -> float:
    db = connections["product"]
    cutoff = datetime.now(UTC) - timedelta(days=3 * 365)
    now = datetime.now(UTC)
    start = time.perf_counter()
    with db.cursor() as c:
        _keyset(c, "messages", "sent_at", cutoff, "DELETE FROM messages", [])
        _keyset(
            c,
            "orders",
            "created_at",
            cutoff,
            "UPDATE orders SET postal_code = NULL,"
            " phone = CASE WHEN phone IS NULL THEN NULL ELSE substr(phone, 1, 1) || '***' END,"
            " restricted_at = COALESCE(restricted_at, %s)",
            [now],
        )
    return time.perf_counter() - start


def run() -> list[dict[str, object]]:
    sample_product.install()
    postgres = connections["product"].vendor == "postgresql"
    expired = 500_000 if postgres else 100_000  # per table: 1M expired rows, 200k on SQLite
    t_ours = t_base = float("inf")
    for rep in range(3):
        # Each side goes first in turn, on freshly filled tables.
        for side in ("ours", "base") if rep % 2 == 0 else ("base", "ours"):
            _prepare(expired)
            if side == "ours":
                t_ours = min(t_ours, _ours(expired))
            else:
                t_base = min(t_base, _baseline(expired))
            _left(expired)
    sample_product.truncate(fast=True)
    total = 2 * expired
    ours_rate, base_rate = total / t_ours, total / t_base
    return [
        {
            "name": f"retention sweep, {total // 1000}k expired rows",
            "ours": f"{ours_rate:,.0f} rows/s",
            "baseline": f"{base_rate:,.0f} rows/s (keyset SQL)",
            "ratio": ours_rate / base_rate,
            "target": ">= 0.8x",
            "ok": ours_rate / base_rate >= 0.8,
        }
    ]
