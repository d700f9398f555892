"""Retention rules and the retention sweep: the product's tables by age, Quanyi's own records,
legal holds, crash and resume, two sweeps at once, children's data, the command, the admin."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from accounts.models import DataSubject
from accounts.roles import AGENT, AUDITOR, DPO
from accounts.services import subject_erase
from consent.models import ConsentEvent, GuardianConsent, PolicyVersion, Purpose
from consent.services import consent_record, guardian_consent_record
from core import sources
from core.audit import SYSTEM, Actor, audit_verify
from core.models import AuditEntry
from dsar import sample_product, services
from dsar.models import DataSubjectRequest, RequestMessage, RequestType, VerificationDocument
from retention import sweep as engine
from retention.defaults import DEFAULT_RULES
from retention.models import (
    ChildDataFinding,
    HoldGround,
    LegalHold,
    RetentionRule,
    Scope,
    SweepCursor,
    SweepRun,
)
from retention.services import (
    child_finding_resolve,
    hold_place,
    holds_review_alert,
    retention_sweep,
    rule_save,
)
from retention.tasks import retention_sweep as retention_sweep_task
from tests import factories
from tests.conftest import ALL, manage

# Every test starts from an empty product database (transactional tests leave rows behind).
pytestmark = [pytest.mark.django_db(databases=ALL), pytest.mark.usefixtures("product")]
DAY = timedelta(days=1)
YEAR = 365 * DAY


# --- Building product rows with an age ------------------------------------------------------


def person(n: int) -> sample_product.Person:
    return sample_product.Person(
        email=f"r{n}@example.cn",
        phone=f"1390000{n:04d}",
        name=f"患者{n}",
        id_number=f"3301061985{n:04d}123X"[:18],
        birthday="1985-05-05",
        gender="男",
        native_place="浙江省杭州市",
    )


def patient(n: int, *, age: timedelta = 10 * DAY) -> int:
    return sample_product.patient_insert(person(n), created_at=timezone.now() - age)


_ROWS: dict[str, dict[str, Any]] = {
    "devices": {
        "model": "Xiaomi 14",
        "os_version": "Android 14",
        "mac": "AA:BB:CC:DD:EE:FF",
        "imei": "861234",
    },
    "locations": {"latitude": 31.23, "longitude": 121.47, "city": "上海"},
    "health_records": {"diagnosis": "慢性牙周炎", "drug_allergies": "青霉素", "notes": "三个月后复诊"},
    "reports": {"kind": "lab", "title": "血常规", "findings": "均在参考范围内"},
    "orders": {
        "order_no": "HA0001",
        "item": "电动牙刷",
        "amount_cents": 12900,
        "recipient_name": "张三",
        "address": "上海市某区健康路 1 号",
        "postal_code": "200000",
        "phone": "13800138000",
        "payment_status": "paid",
        "logistics_company": "顺达物流有限公司",
        "tracking_number": "SD100200300",
    },
    "messages": {"channel": "app", "direction": "in", "body": "医生您好"},
}


def add(table: str, patient_id: int, *, age: timedelta, count: int = 1, **over: Any) -> None:
    """`count` rows of `table` for a patient, dated `age` ago (a second apart)."""
    values = {**_ROWS[table], **over}
    column = sample_product.AGE_COLUMNS[table]
    now = timezone.now()
    rows = [
        (
            patient_id,
            *[f"{v}-{i}" if k == "order_no" else v for k, v in values.items()],
            now - age - timedelta(seconds=i),
        )
        for i in range(count)
    ]
    sample_product.insert_rows(table, ["patient_id", *values, column], rows)


def years_ago(years: int) -> str:
    return (timezone.localdate() - timedelta(days=365 * years + 5)).isoformat()


def select(table: str, where: str = "1 = 1", params: list[Any] | None = None) -> list[dict[str, Any]]:
    with connections["product"].cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id", params or [])  # noqa: S608
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every product row without its keys and with restriction stamps as yes/no: equal for
    two databases that went through the same erasures, whatever their ids and clocks."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in sample_product.TABLES:
        rows = []
        for row in select(table):
            row.pop("id"), row.pop("patient_id", None)
            age = row.pop(sample_product.AGE_COLUMNS[table])
            if "restricted_at" in row:
                row["restricted_at"] = row["restricted_at"] is not None
            rows.append((str(age)[:10], *sorted((k, str(v)) for k, v in row.items())))
        out[table] = sorted(rows)
    return out


def units(run: SweepRun) -> dict[str, tuple[int, str]]:
    """The units that changed (or would change) something or did not simply finish."""
    return {
        label: (u["rows"], u["status"])
        for label, u in run.counts["units"].items()
        if u["rows"] or u["status"] not in ("done", "would")
    }


def contact_rule() -> RetentionRule:
    """A rule that hashes (patients.email and phone): what 'never hashed twice' is about."""
    return rule_save(
        rule=RetentionRule(
            category="contact",
            period_days=2 * 365,
            trigger="last_activity",
            action="anonymise",
            legal_basis="test: contact details of people inactive for two years",
        ),
        actor=SYSTEM,
    )


def history() -> None:
    """Two patients, each with rows past and within every default period."""
    for n in (1, 2):
        pid = patient(n, age=3 * YEAR if n == 1 else 10 * DAY)
        add("locations", pid, age=100 * DAY, count=2)
        add("locations", pid, age=80 * DAY)
        add("devices", pid, age=400 * DAY)
        add("devices", pid, age=200 * DAY)
        add("messages", pid, age=4 * YEAR, count=3)
        add("messages", pid, age=2 * YEAR)
        add("orders", pid, age=4 * YEAR, count=2)
        add("orders", pid, age=YEAR)
        add("health_records", pid, age=16 * YEAR)
        add("health_records", pid, age=3 * YEAR)
        add("reports", pid, age=16 * YEAR)


# --- The data map and the shipped rules ---------------------------------------------------------


def test_every_table_of_the_shipped_map_has_a_timestamp_with_an_index(product: None) -> None:
    source = sources.source_map("health_app")
    assert {t.name: t.timestamp for t in source.tables.values()} == sample_product.AGE_COLUMNS
    errors, warnings = sources.schema_problems(source)
    assert errors == [] and warnings == []


def test_a_timestamp_that_is_not_a_column_fails_the_check(tmp_path: Any) -> None:
    import json

    from django.test import override_settings

    data = json.loads((settings.BASE_DIR / "config" / "sources" / "health_app.json").read_text())
    data["tables"]["messages"]["timestamp"] = "sent_on"
    (tmp_path / "x.json").write_text(json.dumps(data), encoding="utf-8")
    with override_settings(QUANYI_SOURCES_DIR=tmp_path):
        sources.source_maps_reload()
        messages = [m.msg for m in sources.sources_check(databases=["product"])]
    sources.source_maps_reload()
    assert "x.json: column 'sent_on' does not exist in table 'messages' of database 'product'" in messages


def test_the_shipped_rules_are_installed() -> None:
    rules = {(r.category, r.scope): r for r in RetentionRule.objects.all()}
    assert set(rules) == {(c, s) for c, s, *_ in DEFAULT_RULES}
    assert (rules["location", "product"].period_days, rules["location", "product"].action) == (90, "delete")
    assert rules["health", "product"].action == "restrict"
    assert rules["interaction_records", "audit_entries"].action == "anonymise"
    for rule in rules.values():
        rule.full_clean()  # every shipped rule passes the checks the DPO's edits go through


# --- The sweep over the product's tables ---------------------------------------------------------


def test_due_rows_are_deleted_anonymised_or_restricted_per_the_map_and_fresh_ones_untouched(
    product: None,
) -> None:
    pid = patient(1)
    add("locations", pid, age=91 * DAY)
    add("locations", pid, age=89 * DAY, city="杭州")
    add("devices", pid, age=366 * DAY)
    add("devices", pid, age=300 * DAY, model="iPhone 15")
    add("messages", pid, age=1096 * DAY)
    add("messages", pid, age=1000 * DAY, body="最近的消息")
    add("orders", pid, age=1096 * DAY)
    add("orders", pid, age=1000 * DAY, order_no="HA0002")
    add("health_records", pid, age=15 * YEAR + 5 * DAY)
    add("health_records", pid, age=14 * YEAR, diagnosis="龋齿")

    run = retention_sweep()

    assert [r["city"] for r in select("locations")] == ["杭州"]
    assert [r["model"] for r in select("devices")] == ["iPhone 15"]
    assert [r["body"] for r in select("messages")] == ["最近的消息"]
    old, fresh = select("orders")
    # The map: postal code nulled, phone masked, what the e-commerce law keeps stays, restricted.
    assert (old["postal_code"], old["phone"], old["recipient_name"]) == (None, "1***", "张三")
    assert old["restricted_at"] is not None and old["order_no"] == "HA0001-0"
    assert (fresh["postal_code"], fresh["phone"], fresh["restricted_at"]) == ("200000", "13800138000", None)
    health_old, health_fresh = select("health_records")
    assert health_old["restricted_at"] is not None and health_old["diagnosis"] == "慢性牙周炎"
    assert health_fresh["restricted_at"] is None
    assert select("patients")[0]["email"] == "r1@example.cn"  # no default rule for contact details
    assert run.status == SweepRun.Status.DONE and not run.dry_run
    assert units(run) == {
        "location:health_app.locations": (1, "done"),
        "unique_device_identifiers:health_app.devices": (1, "done"),
        "communications:health_app.messages": (1, "done"),
        "orders_delivery:health_app.orders": (1, "done"),
        "health:health_app.health_records": (1, "done"),
    }
    swept = AuditEntry.objects.filter(action="retention.swept", data__unit="location:health_app.locations")
    assert [e.data["rows"] for e in swept] == [1]
    assert audit_verify().ok


def test_a_second_sweep_changes_and_counts_nothing(product: None) -> None:
    history()
    contact_rule()
    first = retention_sweep(batch=2)
    before = snapshot()

    second = retention_sweep(batch=2)

    assert sum(u["rows"] for u in first.counts["units"].values()) > 0
    assert units(second) == {}
    assert snapshot() == before


def test_a_dry_run_changes_nothing_and_counts_what_the_run_then_does(product: None) -> None:
    history()
    contact_rule()
    before = snapshot()

    dry = retention_sweep(dry_run=True)

    assert snapshot() == before
    assert dry.dry_run and not SweepCursor.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="retention.swept").exists()
    would = {label: rows for label, (rows, _status) in units(dry).items()}
    assert would == {
        "contact:health_app.patients": 1,
        "communications:health_app.messages": 6,
        "health:health_app.reports": 2,
        "health:health_app.health_records": 2,
        "location:health_app.locations": 4,
        # Both order rules reach the same rows; the first stamps them restricted, and the
        # second (payment status: every column kept by law) then has nothing left to do.
        "orders_delivery:health_app.orders": 4,
        "unique_device_identifiers:health_app.devices": 2,
    }

    real = retention_sweep(batch=3)

    assert {label: rows for label, (rows, _status) in units(real).items()} == would


def test_a_hold_on_a_person_keeps_their_rows(product: None) -> None:
    held, other = patient(1), patient(2)
    for pid in (held, other):
        add("locations", pid, age=100 * DAY)
        add("messages", pid, age=4 * YEAR)
    subject = factories.subject(email=person(1).email, phone=person(1).phone, id_number=person(1).id_number)
    hold_place(
        actor=SYSTEM,
        subject=subject,
        ground=HoldGround.COURT,
        reason="(2026)沪0105民初12345号 证据保全",
        review_on=timezone.localdate() + 90 * DAY,
    )

    run = retention_sweep()

    assert [r["patient_id"] for r in select("locations")] == [held]
    assert [r["patient_id"] for r in select("messages")] == [held]
    assert units(run)["location:health_app.locations"] == (1, "done")


def test_a_hold_on_a_category_skips_it_for_everyone_or_for_one_person(product: None) -> None:
    one, two = patient(1), patient(2)
    for pid in (one, two):
        add("locations", pid, age=100 * DAY)
        add("messages", pid, age=4 * YEAR)
        add("devices", pid, age=400 * DAY)
    hold_place(
        actor=SYSTEM,
        category="communications",
        ground=HoldGround.DISPUTE,
        reason="客服纠纷 TK-2026-0042",
        review_on=timezone.localdate() + 30 * DAY,
    )
    # Device rows are deleted whole: a hold on device information keeps them from the rule on
    # identifiers too.
    hold_place(
        actor=SYSTEM,
        category="device_information",
        ground=HoldGround.AUTHORITY,
        reason="网信办调查函 2026-17",
        review_on=timezone.localdate() + 30 * DAY,
    )
    subject = factories.subject(email=person(2).email, phone=person(2).phone, id_number=person(2).id_number)
    hold_place(
        actor=SYSTEM,
        subject=subject,
        category="location",
        ground=HoldGround.PROTECTION,
        reason="走失老人协查",
        review_on=timezone.localdate() + 30 * DAY,
    )

    run = retention_sweep()

    assert len(select("messages")) == 2 and len(select("devices")) == 2
    assert [r["patient_id"] for r in select("locations")] == [two]
    assert units(run)["communications:health_app.messages"] == (0, "held")
    assert units(run)["unique_device_identifiers:health_app.devices"] == (0, "held")

    LegalHold.objects.update(released_at=timezone.now())
    again = retention_sweep()
    assert select("messages") == [] and select("devices") == [] and select("locations") == []
    assert units(again)["location:health_app.locations"] == (1, "done")


def test_rows_already_restricted_are_left_alone_by_a_restrict_rule(product: None) -> None:
    pid = patient(1)
    add("health_records", pid, age=16 * YEAR, count=3)
    stamp = timezone.now() - 30 * DAY
    with connections["product"].cursor() as cursor:
        cursor.execute(
            "UPDATE health_records SET restricted_at = %s WHERE id = (SELECT MIN(id) FROM health_records)",
            [stamp],
        )

    run = retention_sweep()

    assert units(run)["health:health_app.health_records"] == (2, "done")
    first = select("health_records")[0]["restricted_at"]
    assert abs((first - stamp).total_seconds()) < 1  # not stamped again


def test_a_sweep_killed_half_way_resumes_and_ends_like_an_uninterrupted_one(
    product: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact_rule()
    # One sweep, uninterrupted.
    history()
    whole = retention_sweep(batch=2)
    expected, expected_counts = snapshot(), units(whole)
    sample_product.truncate()
    SweepCursor.objects.all().delete()

    # The same history, and a sweep that dies in its third batch (messages: 2 of 3 done).
    history()
    real, calls = sources.aged_batch, {"n": 0}

    def dies_in_the_third_batch(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(sources, "aged_batch", dies_in_the_third_batch)
    with pytest.raises(RuntimeError, match="worker lost"):
        retention_sweep(batch=2)
    crashed = SweepRun.objects.latest("pk")
    assert crashed.status == SweepRun.Status.FAILED and crashed.error == "RuntimeError"
    interrupted = [c for c in SweepCursor.objects.all() if c.position is not None]
    assert len(interrupted) == 1 and interrupted[0].run is None  # given up, position kept
    assert snapshot() != expected

    monkeypatch.setattr(sources, "aged_batch", real)
    resumed = retention_sweep(batch=2)

    assert snapshot() == expected
    label = f"{interrupted[0].rule.category}:health_app.{interrupted[0].table}"
    done_before = crashed.counts["units"][label]["rows"]
    assert (done_before, resumed.counts["units"][label]["rows"], expected_counts[label][0]) == (4, 2, 6)
    # The unit's audit entry counts the whole pass, across both sweeps.
    assert (
        AuditEntry.objects.filter(action="retention.swept", data__unit=label).last().data["rows"]
        == (expected_counts[label][0])
    )
    assert [p["email"] for p in select("patients", "email LIKE %s", ["h:%"])] == [
        sources.erasure_hash(person(1).email)
    ]


def test_a_unit_held_by_a_dead_sweep_is_taken_over_when_its_lease_runs_out(
    product: None, time_machine: Any
) -> None:
    pid = patient(1)
    add("messages", pid, age=4 * YEAR, count=5)
    rule = RetentionRule.objects.get(category="communications")
    dead = SweepRun.objects.create(started_at=timezone.now())
    SweepCursor.objects.create(
        rule=rule,
        source="health_app",
        table="messages",
        run=dead,
        lease_until=timezone.now() + timedelta(seconds=settings.QUANYI_RETENTION_LEASE_SECONDS),
    )

    blocked = retention_sweep()
    assert units(blocked)["communications:health_app.messages"] == (0, "busy")
    assert len(select("messages")) == 5

    time_machine.move_to(timezone.now() + timedelta(seconds=settings.QUANYI_RETENTION_LEASE_SECONDS + 1))
    taken = retention_sweep()
    assert units(taken)["communications:health_app.messages"] == (5, "done")
    assert select("messages") == []


@pytest.mark.django_db(transaction=True, databases=ALL)  # two real processes see committed rows
def test_two_sweeps_at_once_share_the_work_and_never_do_it_twice(product: None) -> None:
    contact_rule()
    for n in range(1, 31):
        pid = patient(n, age=3 * YEAR)
        add("locations", pid, age=100 * DAY, count=40)
        add("messages", pid, age=4 * YEAR, count=40)
        add("orders", pid, age=4 * YEAR, count=20)
    results: list[Any] = []

    def run_sweep() -> None:
        results.append(manage("retention_sweep", "--batch", "5", "-v", "2"))

    threads = [threading.Thread(target=run_sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    runs = list(SweepRun.objects.filter(dry_run=False))
    assert len(runs) == 2 and all(r.status == SweepRun.Status.DONE for r in runs)
    totals: dict[str, int] = {}
    for run in runs:
        for label, u in run.counts["units"].items():
            totals[label] = totals.get(label, 0) + u["rows"]
    assert totals["location:health_app.locations"] == 1200
    assert totals["communications:health_app.messages"] == 1200
    assert totals["orders_delivery:health_app.orders"] == 600
    assert totals["contact:health_app.patients"] == 30
    assert select("locations") == [] and select("messages") == []
    emails = [p["email"] for p in select("patients")]
    assert emails == [sources.erasure_hash(person(n).email) for n in range(1, 31)]  # hashed once
    swept = AuditEntry.objects.filter(action="retention.swept")
    per_unit: dict[str, int] = {}
    for entry in swept:
        per_unit[entry.data["unit"]] = per_unit.get(entry.data["unit"], 0) + entry.data["rows"]
    assert per_unit["location:health_app.locations"] == 1200
    assert per_unit["contact:health_app.patients"] == 30
    assert audit_verify().ok


@pytest.mark.django_db(transaction=True, databases=ALL)  # a second thread sees committed rows
def test_a_unit_being_swept_is_left_to_its_sweep_and_the_rest_is_shared(
    product: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = patient(1)
    add("messages", pid, age=4 * YEAR, count=10)
    add("locations", pid, age=100 * DAY, count=10)
    inside, go = threading.Event(), threading.Event()
    real = sources.aged_batch

    def pauses_in_messages(spec: sources.AgedErase, **kwargs: Any) -> Any:
        if spec.table.name == "messages" and threading.current_thread().name == "first":
            inside.set()
            assert go.wait(30)
        return real(spec, **kwargs)

    monkeypatch.setattr(sources, "aged_batch", pauses_in_messages)
    runs: dict[str, SweepRun] = {}

    def first() -> None:
        try:
            runs["first"] = retention_sweep(batch=3)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first, name="first")
    thread.start()
    assert inside.wait(30)
    runs["second"] = retention_sweep(batch=3)  # while the first is inside the messages unit
    go.set()
    thread.join(60)

    one, two = units(runs["first"]), units(runs["second"])
    assert one == {"communications:health_app.messages": (10, "done")}
    assert two == {
        "communications:health_app.messages": (0, "busy"),
        "location:health_app.locations": (10, "done"),
    }
    assert select("messages") == [] and select("locations") == []


# --- Quanyi's own records ---------------------------------------------------------------------------


def closed_request(subject: DataSubject, *, closed: timedelta) -> DataSubjectRequest:
    request = services.request_submit(
        actor=SYSTEM,
        type=RequestType.ACCESS,
        subject=subject,
        requester_email=subject.email or "",
        requester_name="王五",
        details="请提供我的全部健康档案。",
    )
    RequestMessage.objects.create(request=request, kind=RequestMessage.Kind.INTERNAL, body="已电话核实")
    VerificationDocument.objects.create(
        request=request, filename="id.png", content_type="image/png", size=3, sha256="0" * 64, content="AAAA"
    )
    DataSubjectRequest.objects.filter(pk=request.pk).update(
        status="completed", closed_at=timezone.now() - closed
    )
    request.refresh_from_db()
    return request


def test_closed_requests_are_redacted_and_their_documents_deleted_after_three_years() -> None:
    subject = factories.subject(email="old@example.cn")
    old = closed_request(subject, closed=3 * YEAR + DAY)
    recent = closed_request(subject, closed=2 * YEAR)

    dry = retention_sweep(dry_run=True)
    run = retention_sweep()

    assert units(dry)["interaction_records:quanyi.requests"] == (1, "would")
    assert units(run)["interaction_records:quanyi.requests"] == (1, "done")
    assert units(run)["identity_documents:quanyi.verification_documents"] == (1, "done")
    old.refresh_from_db()
    assert (old.details, old.requester_email, old.requester_name, old.requester_email_index) == (
        None,
        None,
        None,
        "",
    )
    assert (old.type, old.status, old.reference) == (RequestType.ACCESS, "completed", old.reference)
    assert RequestMessage.objects.get(request=old).body is None
    assert not VerificationDocument.objects.filter(request=old).exists()
    recent.refresh_from_db()
    assert (
        recent.details == "请提供我的全部健康档案。"
        and VerificationDocument.objects.filter(request=recent).exists()
    )
    assert units(retention_sweep()).get("interaction_records:quanyi.requests") is None  # nothing left


def test_consent_evidence_is_redacted_three_years_after_the_person_is_gone(time_machine: Any) -> None:
    yesterday = timezone.now() - DAY
    PolicyVersion.objects.create(
        version=1,
        title_zh="隐私政策",
        title_en="Privacy policy",
        body_zh="正文",
        body_en="Text",
        effective_at=yesterday,
        published_at=yesterday,
    )
    purpose = Purpose.objects.create(
        code="marketing_push",
        name_zh="营销推送",
        name_en="Marketing notifications",
        description_zh="活动与优惠推送",
        description_en="Offers and campaigns",
        marketing=True,
    )
    gone = factories.subject(email="gone@example.cn")
    stays = factories.subject(email="stays@example.cn")
    for s in (gone, stays):
        consent_record(
            subject=s,
            purpose=purpose,
            action="grant",
            channel="web",
            actor=SYSTEM,
            ip="203.0.113.9",
            user_agent="UA/1",
        )
    subject_erase(subject=gone, actor=SYSTEM)
    time_machine.move_to(timezone.now() + 3 * YEAR + 2 * DAY)

    run = retention_sweep()

    assert units(run)["interaction_records:quanyi.consent_events"] == (1, "done")
    redacted = ConsentEvent.objects.get(subject=gone)
    assert (redacted.evidence_ip, redacted.evidence_user_agent, redacted.action) == ("", "", "grant")
    assert ConsentEvent.objects.get(subject=stays).evidence_ip == "203.0.113.0/24"
    assert audit_verify().ok  # the audit log is never touched


def test_the_audit_log_is_never_deleted_and_needs_no_redaction() -> None:
    entries = AuditEntry.objects.count()
    run = retention_sweep()
    unit = run.counts["units"]["interaction_records:quanyi.audit_entries"]
    assert unit["rows"] == 0 and "nothing to redact" in unit["note"]
    assert AuditEntry.objects.count() > entries and audit_verify().ok
    rule = RetentionRule.objects.get(scope=Scope.AUDIT_ENTRIES)
    rule.action = "delete"
    with translation.override("en"), pytest.raises(ValidationError, match="never deleted"):
        rule_save(rule=rule, actor=SYSTEM)


# --- Children's data without guardian consent -------------------------------------------------------


def test_a_child_without_guardian_consent_yields_one_finding_however_often_the_sweep_runs() -> None:
    child = factories.subject(email="kid@example.cn", birth_date=years_ago(10))
    factories.subject(email="adult@example.cn", birth_date="1990-01-01")
    consented = factories.subject(email="kid2@example.cn", birth_date=years_ago(8))
    guardian_consent_record(
        subject=consented,
        actor=SYSTEM,
        guardian_name="李四",
        relationship="父亲",
        guardian_contact="dad@example.cn",
        verification=GuardianConsent.Verification.DOCUMENTS,
    )

    first = retention_sweep()
    second = retention_sweep()

    assert [f.subject_id for f in ChildDataFinding.objects.all()] == [child.pk]
    assert first.counts["children"] == {"found": 1, "resolved": 0, "open": 1}
    assert second.counts["children"] == {"found": 0, "resolved": 0, "open": 1}
    assert AuditEntry.objects.filter(action="retention.child_found").count() == 1

    guardian_consent_record(
        subject=child,
        actor=SYSTEM,
        guardian_name="王母",
        relationship="母亲",
        guardian_contact="mum@example.cn",
        verification=GuardianConsent.Verification.IN_PERSON,
    )
    third = retention_sweep()
    finding = ChildDataFinding.objects.get()
    assert third.counts["children"] == {"found": 0, "resolved": 1, "open": 0}
    assert finding.resolution == ChildDataFinding.Resolution.GUARDIAN_CONSENT


def test_staff_close_a_finding_once(client: Client) -> None:
    factories.subject(email="kid@example.cn", birth_date=years_ago(12))
    retention_sweep()
    finding = ChildDataFinding.objects.get()
    agent = factories.staff(AGENT)
    client.force_login(agent)

    page = client.get(reverse("admin:retention_childdatafinding_changelist"))
    assert page.status_code == 200 and str(finding) in page.content.decode()
    done = client.post(
        reverse("admin:retention_childdatafinding_changelist"),
        {"action": "mark_resolved", "_selected_action": [finding.pk]},
    )

    assert done.status_code == 302
    finding.refresh_from_db()
    assert finding.resolution == ChildDataFinding.Resolution.STAFF and finding.resolved_by == agent
    again = child_finding_resolve(
        finding=finding, actor=SYSTEM, resolution=ChildDataFinding.Resolution.ERASED
    )
    assert again.resolution == ChildDataFinding.Resolution.STAFF
    assert AuditEntry.objects.filter(action="retention.child_resolved").count() == 1


# --- Rules: edited by the DPO, audited ----------------------------------------------------------------


def test_rule_edits_are_audited_with_what_changed() -> None:
    rule = RetentionRule.objects.get(category="location", scope=Scope.PRODUCT)
    dpo = factories.staff(DPO)
    rule.period_days = 30
    rule_save(rule=rule, actor=Actor.of(dpo), user=dpo)

    entry = AuditEntry.objects.filter(action="retention.rule_changed").get()
    assert entry.actor_id == str(dpo.pk) and entry.object_id == str(rule.pk)
    assert entry.data == {"category": "location", "scope": "product", "changes": {"period_days": [90, 30]}}
    rule.refresh_from_db()
    assert rule.updated_by == dpo and rule.updated_at is not None

    rule_save(rule=rule, actor=Actor.of(dpo), user=dpo)  # unchanged: nothing to record
    assert AuditEntry.objects.filter(action="retention.rule_changed").count() == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trigger": "request_closed"}, "cancellation sweep"),
        ({"legal_basis": "  "}, "Say why"),
        ({"period_days": 0}, "greater than or equal to 1"),
        ({"scope": "verification_documents", "action": "anonymise", "trigger": "request_closed"}, "category"),
        ({"scope": "requests", "category": "interaction_records", "trigger": "request_closed"}, "action"),
        ({"category": "location"}, "There is a rule for this category here already"),
    ],
)
def test_bad_rules_are_refused_with_a_message(fields: dict[str, Any], message: str) -> None:
    values = {
        "category": "usage_statistics",
        "scope": "product",
        "period_days": 30,
        "trigger": "collection",
        "action": "delete",
        "legal_basis": "test",
        **fields,
    }
    with translation.override("en"):
        with pytest.raises(ValidationError) as err:
            rule_save(rule=RetentionRule(**values), actor=SYSTEM)
        assert message in str(err.value)
    assert not AuditEntry.objects.filter(action__startswith="retention.rule").exists()


@pytest.mark.parametrize("role", [AGENT, DPO, AUDITOR])
def test_only_the_dpo_edits_rules_in_the_admin(client: Client, role: str) -> None:
    rule = RetentionRule.objects.get(category="location", scope=Scope.PRODUCT)
    client.force_login(factories.staff(role))
    url = reverse("admin:retention_retentionrule_change", args=[rule.pk])

    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "category": "location",
            "scope": "product",
            "period_days": "60",
            "trigger": "collection",
            "action": "delete",
            "legal_basis": rule.legal_basis,
            "active": "on",
        },
    )

    rule.refresh_from_db()
    if role == DPO:
        assert response.status_code == 302 and rule.period_days == 60
        assert AuditEntry.objects.filter(action="retention.rule_changed", object_id=str(rule.pk)).exists()
    else:
        assert response.status_code == 403 and rule.period_days == 90
    assert client.get(reverse("admin:retention_sweeprun_changelist")).status_code == 200
    assert client.post(reverse("admin:retention_retentionrule_delete", args=[rule.pk])).status_code == 403


def test_the_sweep_report_is_shown_read_only_in_the_admin(client: Client, product: None) -> None:
    pid = patient(1)
    add("locations", pid, age=100 * DAY)
    run = retention_sweep()
    client.force_login(factories.staff(AUDITOR))

    page = client.get(reverse("admin:retention_sweeprun_change", args=[run.pk])).content.decode()

    assert "location:health_app.locations" in page and "<td>1</td>" in page
    assert 'name="_save"' not in page


# --- Legal holds past their review date ------------------------------------------------------------


def test_holds_past_their_review_date_are_told_to_the_dpo_once_a_day(
    client: Client, time_machine: Any
) -> None:
    factories.staff(DPO, email="dpo@example.cn")
    hold = hold_place(
        actor=SYSTEM,
        category="health",
        ground=HoldGround.LAW,
        reason="卫健委检查 2026-3",
        review_on=timezone.localdate() + 5 * DAY,
    )
    assert holds_review_alert() == 0

    time_machine.move_to(timezone.now() + 7 * DAY)
    assert holds_review_alert() == 1
    assert holds_review_alert() == 0  # once a day
    assert len(mail.outbox) == 1 and f"hold #{hold.pk}" in mail.outbox[0].body
    assert mail.outbox[0].to == ["dpo@example.cn"]

    client.force_login(factories.staff(DPO))
    listed = client.get(reverse("admin:retention_legalhold_changelist") + "?review=overdue").content.decode()
    assert f"hold {hold.pk} " in listed

    time_machine.move_to(timezone.now() + DAY)
    assert holds_review_alert() == 1


def test_the_daily_beat_job_sweeps_once_per_slot(product: None) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["retention-sweep"]["task"] == "retention.tasks.retention_sweep"
    pid = patient(1)
    add("locations", pid, age=100 * DAY)

    first = retention_sweep_task.apply().get()
    second = retention_sweep_task.apply().get()

    assert first.startswith("sweep ") and "1 rows" in first
    assert second == "skipped"
    assert select("locations") == []


# --- The command ----------------------------------------------------------------------------------------


def test_the_command_dry_run_prints_per_rule_and_table_and_changes_nothing(product: None) -> None:
    pid = patient(1)
    add("locations", pid, age=100 * DAY, count=3)
    add("messages", pid, age=4 * YEAR)
    out = StringIO()

    call_command("retention_sweep", "--dry-run", stdout=out)

    text = out.getvalue()
    assert "Dry run: nothing is changed." in text
    assert "location:health_app.locations: would delete 3 rows" in text
    assert "communications:health_app.messages: would delete 1 rows" in text
    assert "4 rows would change" in text
    assert len(select("locations")) == 3


def test_the_command_runs_and_prints_progress_and_totals(product: None) -> None:
    pid = patient(1)
    add("locations", pid, age=100 * DAY, count=5)
    out = StringIO()

    call_command("retention_sweep", "--batch", "2", "-v", "2", stdout=out)

    text = out.getvalue()
    assert "  location:health_app.locations: 2 rows so far" in text
    assert "location:health_app.locations: delete 5 rows (done)" in text
    assert "5 rows changed in" in text
    assert select("locations") == []


def test_the_command_refuses_bad_input_with_a_message() -> None:
    with pytest.raises(CommandError, match="--batch must be a whole number of rows, at least 1"):
        call_command("retention_sweep", "--batch", "0")
    assert not SweepRun.objects.exists()


def test_the_command_line_says_what_is_wrong_without_a_traceback() -> None:
    result = manage("retention_sweep", "--batch", "lots")
    assert result.returncode == 2
    assert "invalid int value: 'lots'" in result.stderr and "Traceback" not in result.stderr


def test_the_unit_report_lists_every_table_holding_a_rules_category() -> None:
    holds = engine.Holds()
    rules = list(RetentionRule.objects.filter(scope=Scope.PRODUCT, category="health"))
    labels = [u.label for u in engine.units_build(rules, holds)]
    assert labels == ["health:health_app.reports", "health:health_app.health_records"]
