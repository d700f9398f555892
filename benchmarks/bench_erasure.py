"""Erasure throughput against hand-written keyset-batched SQL on the same data.

One subject with N message rows (the map deletes them) and one with N order rows (the map
anonymises them: null, mask, restrict stamp). Ours is the whole engine (claim, steps with
a cursor and a lease, one transaction per batch, seal); the baseline is the SQL a person
would write by hand: DELETE and UPDATE by primary-key ranges in batches of the same size,
autocommitted. Target: ours >= 0.8x the baseline's rows per second, for each kind.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.db import connections

from accounts.services import subject_create
from core.audit import SYSTEM
from dsar import sample_product
from retention import erasure as engine

BATCH = 5000


def _person(n: int) -> sample_product.Person:
    return sample_product.Person(
        email=f"bench{n}@example.cn",
        phone=f"1350000{n:04d}",
        name=f"基准{n}",
        id_number=f"4401011990010{n:04d}"[:17] + "X",
        birthday="1990-01-01",
        gender="女",
        native_place="广东省广州市",
    )


def _fill(table: str, patient_id: int, rows: int) -> tuple[int, int]:
    """Insert `rows` rows for one patient with server-side generation; returns (min, max) id."""
    db = connections["product"]
    now = datetime.now(UTC)
    if table == "messages":
        cols = "patient_id, channel, direction, body, sent_at"
        values = "%s, 'app', 'in', 'bench message body ' || g, %s"
    else:
        cols = (
            "patient_id, order_no, item, amount_cents, recipient_name, address, postal_code, phone,"
            " payment_status, logistics_company, tracking_number, created_at"
        )
        values = (
            "%s, 'HA' || g, '电动牙刷', 12900, '收件人', '某市某区健康路 ' || g || ' 号', '100000',"
            " '13800138000', 'paid', '顺达物流有限公司', 'SD' || g, %s"
        )
    with db.cursor() as c:
        if db.vendor == "postgresql":
            c.execute(
                f"INSERT INTO {table} ({cols}) SELECT {values} FROM generate_series(1, %s) g",  # noqa: S608
                [patient_id, now, rows],
            )
        else:
            c.execute(
                f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %s) "  # noqa: S608
                f"INSERT INTO {table} ({cols}) SELECT {values} FROM s",
                [rows, patient_id, now],
            )
        c.execute(f"SELECT MIN(id), MAX(id) FROM {table} WHERE patient_id = %s", [patient_id])  # noqa: S608
        lo, hi = c.fetchone()
        if db.vendor == "postgresql":
            c.execute(f"ANALYZE {table}")
    return int(lo), int(hi)


def _baseline(table: str, patient_id: int, lo: int, hi: int) -> float:
    """Hand-written: walk the key range in batches, one autocommitted statement each."""
    db = connections["product"]
    if table == "messages":
        sql = "DELETE FROM messages WHERE patient_id = %s AND id >= %s AND id < %s"
    else:
        sql = (
            "UPDATE orders SET postal_code = NULL, phone = substr(phone, 1, 1) || '***',"
            " restricted_at = COALESCE(restricted_at, %s) WHERE patient_id = %s AND id >= %s AND id < %s"
        )
    now = datetime.now(UTC)
    start = time.perf_counter()
    with db.cursor() as c:
        for first in range(lo, hi + 1, BATCH):
            args = [patient_id, first, first + BATCH]
            c.execute(sql, args if table == "messages" else [now, *args])
    return time.perf_counter() - start


def _ours(n: int, table: str, rows: int) -> float:
    person = _person(n)
    subject = subject_create(actor=SYSTEM, email=person.email, phone=person.phone, id_number=person.id_number)
    pid = sample_product.patient_insert(person, created_at=datetime.now(UTC))
    _fill(table, pid, rows)
    _settle(table)
    erasure = engine.erasure_plan(subject=subject, actor=SYSTEM, reference=f"BENCH-{n}", origin="command")
    engine.erasure_confirm(erasure=erasure, actor=SYSTEM)
    start = time.perf_counter()
    assert engine.erasure_run(erasure_id=erasure.pk, batch=BATCH) == "done"
    return time.perf_counter() - start


def _reset() -> None:
    """Empty tables and a quiet database before each measurement, so neither side pays for
    the other's dead rows, autovacuum or checkpoint."""
    sample_product.truncate(fast=True)
    db = connections["product"]
    if db.vendor == "postgresql":
        with db.cursor() as c:
            c.execute("CHECKPOINT")


def _settle(table: str) -> None:
    db = connections["product"]
    if db.vendor == "postgresql":
        with db.cursor() as c:
            c.execute(f"VACUUM ANALYZE {table}")
            c.execute("CHECKPOINT")


def run() -> list[dict[str, object]]:
    sample_product.install()
    postgres = connections["product"].vendor == "postgresql"
    rows = 1_000_000 if postgres else 200_000  # DESIGN.md measured its baselines on 1M affected rows
    out = []
    for n, (table, kind) in enumerate([("messages", "delete"), ("orders", "anonymise")]):
        t_ours = t_base = float("inf")
        for rep in range(3):  # best of three, alternating, each on fresh data
            _reset()
            t_ours = min(t_ours, _ours(10 * n + rep, table, rows))
            _reset()
            pid = sample_product.patient_insert(_person(100 + 10 * n + rep), created_at=datetime.now(UTC))
            lo, hi = _fill(table, pid, rows)
            _settle(table)
            t_base = min(t_base, _baseline(table, pid, lo, hi))
        ours_rate, base_rate = rows / t_ours, rows / t_base
        out.append(
            {
                "name": f"erasure {kind} throughput, {rows // 1000}k rows",
                "ours": f"{ours_rate:,.0f} rows/s",
                "baseline": f"{base_rate:,.0f} rows/s (keyset SQL)",
                "ratio": ours_rate / base_rate,
                "target": ">= 0.8x",
                "ok": ours_rate / base_rate >= 0.8,
            }
        )
    sample_product.truncate(fast=True)
    return out
