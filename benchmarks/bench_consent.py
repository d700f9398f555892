"""Consent at scale: the current-state read behind `may_process` with 10M ledger events
(1M on SQLite), against a bare primary-key lookup of the same row in hand-written SQL.
Target: <= 5 ms per read."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from django.db import connection

from accounts.services import subject_create
from consent.models import ConsentEvent, ConsentState, PolicyVersion, Purpose
from consent.services import consent_record, may_process
from core.audit import SYSTEM


def _fill_ledger(events: int, subject_id: int, purpose_id: int, policy_id: int) -> None:
    now = connection.ops.adapt_datetimefield_value(datetime.now(UTC))
    sql_pg = (
        "INSERT INTO consent_consentevent (receipt_id, subject_id, purpose_id, policy_version_id, action,"
        " channel, separate, reason, evidence_ip, evidence_user_agent, occurred_at)"
        " SELECT md5(g::text)::uuid, %s, %s, %s, CASE WHEN g %% 2 = 0 THEN 'grant' ELSE 'withdraw' END,"
        " 'web', false, '', '', '', %s::timestamptz - (g || ' seconds')::interval"
        " FROM generate_series(1, %s) g"
    )
    sql_sqlite = (
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s)"
        " INSERT INTO consent_consentevent (receipt_id, subject_id, purpose_id, policy_version_id, action,"
        " channel, separate, reason, evidence_ip, evidence_user_agent, occurred_at)"
        " SELECT lower(hex(randomblob(16))), %s, %s, %s,"
        " CASE WHEN n %% 2 = 0 THEN 'grant' ELSE 'withdraw' END, 'web', 0, '', '', '', %s FROM g"
    )
    with connection.cursor() as c:
        if connection.vendor == "postgresql":
            c.execute(sql_pg, [subject_id, purpose_id, policy_id, now, events])
            c.execute("ANALYZE consent_consentevent")
        else:
            c.execute(sql_sqlite, [events, subject_id, purpose_id, policy_id, now])


def run() -> list[dict[str, object]]:
    events = 10_000_000 if connection.vendor == "postgresql" else 1_000_000
    now = datetime.now(UTC)
    policy = PolicyVersion.objects.create(
        version=999, title_zh="b", title_en="b", body_zh="b", body_en="b", effective_at=now, published_at=now
    )
    purpose = Purpose.objects.create(
        code="bench", name_zh="b", name_en="b", description_zh="b", description_en="b"
    )
    filler = subject_create(actor=SYSTEM, email="filler@example.cn")
    _fill_ledger(events, filler.pk, purpose.pk, policy.pk)
    subjects = [subject_create(actor=SYSTEM, email=f"c{i}@example.cn") for i in range(200)]
    for s in subjects:
        consent_record(subject=s, purpose=purpose, action="grant", channel="web", actor=SYSTEM)
    rng = random.Random(3)
    picks = [rng.choice(subjects) for _ in range(2000)]

    def ours() -> float:
        start = time.perf_counter()
        for s in picks:
            assert may_process(subject=s, purpose=purpose).allowed
        return (time.perf_counter() - start) / len(picks)

    def bare() -> float:
        start = time.perf_counter()
        with connection.cursor() as c:
            for s in picks:
                c.execute(
                    "SELECT granted FROM consent_consentstate WHERE subject_id = %s AND purpose_id = %s",
                    [s.pk, purpose.pk],
                )
                c.fetchone()
        return (time.perf_counter() - start) / len(picks)

    t_ours, t_bare = min(ours() for _ in range(3)), min(bare() for _ in range(3))
    with connection.cursor() as c:
        for table in ("consent_consentstate", "consent_consentevent"):
            c.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    assert not ConsentState.objects.exists() and not ConsentEvent.objects.exists()
    return [
        {
            "name": f"consent current-state read, {events // 1_000_000}M events",
            "ours": f"{t_ours * 1e3:.3f} ms",
            "baseline": f"{t_bare * 1e3:.3f} ms (bare SQL)",
            "ratio": t_ours / t_bare,
            "target": "<= 5 ms",
            "ok": t_ours <= 0.005,
        }
    ]
