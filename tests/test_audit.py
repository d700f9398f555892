from __future__ import annotations

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test import Client

from accounts.models import User
from accounts.roles import AGENT, DPO
from core import tasks
from core.audit import SYSTEM, Actor, audit_log, audit_verify
from core.jobs import ALERT, JobOutcome
from core.models import AuditEntry, AuditImmutableError, JobState
from tests import factories
from tests.conftest import ALL, manage

pytestmark = pytest.mark.django_db(databases=ALL)


def _chain(n: int) -> list[AuditEntry]:
    return [
        audit_log(
            actor=Actor("user", "7"),
            action="test.event",
            object_type="t",
            object_id=str(i),
            data={"i": i, "tags": ["a", "b"], "ok": True},
        )
        for i in range(n)
    ]


def test_entries_link_each_to_the_one_before() -> None:
    entries = _chain(5)

    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert audit_verify().ok
    assert audit_verify().checked == 5


def test_an_empty_log_verifies() -> None:
    report = audit_verify()
    assert report.ok and report.checked == 0


def test_the_orm_cannot_update_or_delete_entries() -> None:
    entry = _chain(1)[0]

    with pytest.raises(AuditImmutableError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="forged")
    with pytest.raises(AuditImmutableError):
        AuditEntry.objects.all().delete()
    with pytest.raises(AuditImmutableError):
        entry.delete()
    entry.action = "forged"
    with pytest.raises(AuditImmutableError):
        entry.save()
    assert AuditEntry.objects.get(pk=entry.pk).action == "test.event"


def test_an_entry_rolls_back_with_the_change_it_records() -> None:
    _chain(2)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_log(actor=SYSTEM, action="test.rolled_back")
        raise RuntimeError

    assert not AuditEntry.objects.filter(action="test.rolled_back").exists()
    assert audit_verify().ok
    assert audit_log(actor=SYSTEM, action="test.after").seq == 3


def test_floats_and_objects_are_refused_in_audit_data() -> None:
    with pytest.raises(TypeError):
        audit_log(actor=SYSTEM, action="x", data={"amount": 1.5})
    assert AuditEntry.objects.count() == 0


def _sql(statement: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.mark.parametrize(
    ("tamper", "bad_seq"),
    [
        (lambda: _sql("UPDATE core_auditentry SET action = %s WHERE seq = %s", ["forged", 3]), 3),
        (lambda: _sql("UPDATE core_auditentry SET data = %s WHERE seq = %s", ['{"i": 99}', 2]), 2),
        (lambda: _sql("DELETE FROM core_auditentry WHERE seq = %s", [3]), 3),
        (lambda: _sql("DELETE FROM core_auditentry WHERE seq = %s", [5]), 5),
        (
            lambda: _sql(
                "INSERT INTO core_auditentry (seq, at, actor_type, actor_id, action, object_type, object_id,"
                " data, prev_hash, hash) VALUES (%s, '2026-01-01 00:00:00+00:00', 'system', '', 'forged',"
                " '', '', '{}', %s, %s)",
                [6, "0" * 64, "f" * 64],
            ),
            6,
        ),
    ],
    ids=["changed-action", "changed-data", "deleted-middle", "deleted-last", "inserted"],
)
def test_verify_names_the_first_bad_entry_after_sql_tampering(tamper, bad_seq) -> None:  # type: ignore[no-untyped-def]
    _chain(5)
    tamper()

    report = audit_verify()

    assert not report.ok
    assert report.first_bad_seq == bad_seq


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_verify_audit_command_exits_non_zero_on_a_row_changed_in_sql() -> None:
    _chain(4)
    ok = manage("verify_audit")
    assert ok.returncode == 0, ok.stderr
    assert "4 entries verified" in ok.stdout

    _sql("UPDATE core_auditentry SET object_id = %s WHERE seq = %s", ["999", 2])
    broken = manage("verify_audit")

    assert broken.returncode == 3
    assert "#2" in broken.stderr


# --- The daily verify-audit job -----------------------------------------------------------------


def _dpo_and_agent() -> tuple[User, User]:
    return factories.staff(DPO, email="dpo@quanyi.cn"), factories.staff(AGENT, email="agent@quanyi.cn")


def test_the_daily_job_alerts_the_dpo_with_the_first_broken_entry(client: Client) -> None:
    dpo, _agent = _dpo_and_agent()
    _chain(5)
    _sql("UPDATE core_auditentry SET object_id = %s WHERE seq = %s", ["999", 3])

    result = tasks.verify_audit_chain()

    assert [m.to for m in mail.outbox] == [["dpo@quanyi.cn"]]  # the DPO group only, not the agent
    assert "#3" in mail.outbox[0].subject and "#3" in mail.outbox[0].body
    finding = "The audit chain is broken at entry #3: its content does not match its hash."
    assert result == JobOutcome(ALERT, finding)
    state = JobState.objects.get(name="verify-audit")
    assert (state.last_status, state.last_detail) == (ALERT, result.detail)
    # Every admin page carries the alert until a run finds the chain whole.
    client.force_login(dpo)
    page = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="job-alerts"' in page and "verify-audit" in page and "entry #3" in page
    health = client.get("/healthz").json()
    assert health["checks"]["jobs"]["verify-audit"]["last_status"] == ALERT
    assert "job verify-audit: last run alert" in health["problems"]


def test_an_intact_chain_sends_nothing_and_clears_the_alert(client: Client) -> None:
    dpo, _agent = _dpo_and_agent()
    _chain(5)
    JobState.objects.create(name="verify-audit", last_status=ALERT, last_detail="an older break")

    result = tasks.verify_audit_chain()

    assert result == "ok=True checked=5"
    assert mail.outbox == []
    assert JobState.objects.get(name="verify-audit").last_status == "ok"
    client.force_login(dpo)
    assert 'id="job-alerts"' not in client.get("/admin/").content.decode()


def test_the_job_is_scheduled_daily() -> None:
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["verify-audit"]
    assert entry == {"task": "core.tasks.verify_audit_chain", "schedule": 24 * 3600.0}
