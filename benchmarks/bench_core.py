"""Core mechanisms against hand-written baselines on the same database, in the same run.

- audit append: `audit_log` (lock head, hash, insert, move head) vs a bare INSERT of an
  equally sized row through the cursor, one transaction per entry for both.
- blind-index lookup: finding a subject by phone through the HMAC index vs a plain indexed
  equality lookup on an unencrypted column (the best a cleartext design could do), both as
  hand-written SQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection, transaction

from accounts.models import DataSubject
from accounts.services import subject_create
from core.audit import SYSTEM, audit_log
from core.crypto import blind_index


def _best_of(fn: Callable[[], None], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _row(name: str, ours: float, baseline: float, unit: str, target: float) -> dict[str, object]:
    ratio = ours / baseline if baseline else float("inf")
    return {
        "name": name,
        "ours": f"{ours * 1e6:.0f} {unit}",
        "baseline": f"{baseline * 1e6:.0f} {unit}",
        "ratio": ratio,
        "target": f"<= {target}x",
        "ok": ratio <= target,
    }


def run() -> list[dict[str, object]]:
    n = 500
    with connection.cursor() as c:
        c.execute("CREATE TABLE bench_plain (id INTEGER PRIMARY KEY, body TEXT, digest VARCHAR(64))")

    def ours() -> None:
        for i in range(n):
            audit_log(
                actor=SYSTEM, action="bench.event", object_type="bench", object_id=str(i), data={"i": i}
            )

    counter = iter(range(10**9))

    def baseline() -> None:
        for _ in range(n):
            with transaction.atomic(), connection.cursor() as c:
                c.execute(
                    "INSERT INTO bench_plain (id, body, digest) VALUES (%s, %s, %s)",
                    [next(counter), '{"action":"bench.event","object":"bench"}', "0" * 64],
                )

    # Three statements (lock head, insert, move head) plus SHA-256 through the ORM against one
    # raw INSERT: the target allows for that structural cost, and catches regressions beyond it.
    rows = [_row("audit append (per entry)", _best_of(ours) / n, _best_of(baseline) / n, "us", 15.0)]

    subjects = [
        subject_create(actor=SYSTEM, phone=f"1380000{i:04d}", email=f"b{i}@example.cn") for i in range(300)
    ]
    with connection.cursor() as c:
        c.execute("CREATE TABLE bench_clear (id INTEGER PRIMARY KEY, phone VARCHAR(20))")
        c.execute("CREATE INDEX bench_clear_phone ON bench_clear (phone)")
        for s in subjects:
            c.execute("INSERT INTO bench_clear (id, phone) VALUES (%s, %s)", [s.pk, s.phone])

    def find_ours() -> None:
        # The same query shape, so the ratio is the price of the design (HMAC + a 64-character
        # key) rather than of the ORM.
        with connection.cursor() as c:
            for i in range(0, 300, 3):
                c.execute(
                    "SELECT id FROM accounts_datasubject WHERE phone_index = %s",
                    [blind_index("phone", f"1380000{i:04d}")],
                )
                c.fetchone()

    def find_base() -> None:
        with connection.cursor() as c:
            for i in range(0, 300, 3):
                c.execute("SELECT id FROM bench_clear WHERE phone = %s", [f"1380000{i:04d}"])
                c.fetchone()

    rows.append(
        _row(
            "find subject by phone (blind index)",
            _best_of(find_ours) / 100,
            _best_of(find_base) / 100,
            "us",
            2.0,
        )
    )
    DataSubject.objects.all().delete()
    return rows
