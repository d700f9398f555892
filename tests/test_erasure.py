"""Erasure: plan, confirm, execute against the sample product database, seal, report."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from accounts.models import DataSubject
from accounts.roles import AGENT, AUDITOR, DPO
from core import crypto, sources
from core.audit import SYSTEM, audit_verify
from core.models import (
    AuditEntry,
    NoticeStatus,
    RecipientNotice,
)
from core.recipients import disclosure_record, notice_deliver
from dsar import erasure, sample_product, services
from dsar.models import DataSubjectRequest, RequestType, Status, VerificationMethod
from retention.erasure import ErasureBusy, erasure_confirm, erasure_plan, erasure_run
from retention.models import Erasure, ErasureStep, HoldGround, Tombstone
from retention.services import hold_place
from tests import factories
from tests.conftest import ALL, manage

pytestmark = pytest.mark.django_db(databases=ALL)


def person(n: int, **over: Any) -> sample_product.Person:
    fields = {
        "email": f"p{n}@example.cn",
        "phone": f"1380000{n:04d}",
        "name": f"患者{n}",
        "id_number": f"1101011990030{n:04d}X"[:18],
        "birthday": "1990-03-07",
        "gender": "女",
        "native_place": "浙江省杭州市",
    }
    fields.update(over)
    return sample_product.Person(**fields)


def subject_with_data(n: int, *, account: bool = True) -> tuple[DataSubject, sample_product.Person]:
    p = person(n)
    user = factories.UserFactory(email=p.email) if account else None
    subject = factories.subject(
        user=user, email=p.email, phone=p.phone, id_number=p.id_number, full_name=p.name
    )
    sample_product.demo_load([p], seed=n)
    return subject, p


def deletion_request(subject: DataSubject) -> DataSubjectRequest:
    request = services.request_submit(
        actor=SYSTEM,
        type=RequestType.DELETION,
        subject=subject,
        user=subject.user,
        requester_email=subject.email or "",
        details="请删除我的全部个人信息。",
    )
    return services.request_verify(request=request, actor=SYSTEM, method=VerificationMethod.STAFF)


def product_rows(
    table: str, patient_email: str | None = None, patient_id: int | None = None
) -> list[dict[str, Any]]:
    with connections["product"].cursor() as cursor:
        if table == "patients":
            cursor.execute("SELECT * FROM patients WHERE id = %s", [patient_id])
        else:
            cursor.execute(f"SELECT * FROM {table} WHERE patient_id = %s ORDER BY id", [patient_id])  # noqa: S608
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def patient_id_of(p: sample_product.Person) -> int:
    with connections["product"].cursor() as cursor:
        cursor.execute("SELECT id FROM patients WHERE email = %s", [p.email])
        return int(cursor.fetchone()[0])


def everything(pid: int) -> dict[str, list[dict[str, Any]]]:
    return {t: product_rows(t, patient_id=pid) for t in sample_product.TABLES}


def test_the_plan_says_per_table_what_is_deleted_anonymised_or_kept_and_why(product: None) -> None:
    subject, _p = subject_with_data(1)
    request = deletion_request(subject)

    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)

    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS
    actions = {item["table"]: item["action"] for item in plan.plan["items"]}
    assert actions == {
        "messages": "delete",
        "orders": "anonymise",
        "reports": "keep",
        "health_records": "keep",
        "locations": "delete",
        "devices": "delete",
        "patients": "anonymise",
    }
    health = next(i for i in plan.plan["items"] if i["table"] == "health_records")
    assert health["restricted"] is True
    assert health["grounds"][0]["code"] == "medical_records" and health["grounds"][0]["years"] == 15
    assert [s.table for s in plan.steps.order_by("position")] == [
        "messages",
        "orders",
        "reports",
        "health_records",
        "locations",
        "devices",
        "patients",
    ]
    lines = erasure.report_lines(plan.plan, "en")
    assert any("Medical records kept by law" in line.why and "15" in line.why for line in lines)
    assert plan.status == Erasure.Status.PLANNED
    assert plan.rows_total == sum(i["rows"] for i in plan.plan["items"])
    # Nothing is erased by planning.
    assert product_rows("devices", patient_id=patient_id_of(_p)) != []
    # The requester reads the same plan on their request page.
    client = Client()
    client.force_login(subject.user)
    page = client.get(reverse("dsar:detail", args=[request.pk])).content.decode()
    assert 'id="erasure"' in page and "病历依法保存" in page and "《医疗机构病历管理规定》" in page


def test_erasing_leaves_nothing_of_the_subject_but_what_the_plan_kept(product: None) -> None:
    subject, p = subject_with_data(1)
    other, q = subject_with_data(2)
    other_before = everything(patient_id_of(q))
    request = deletion_request(subject)
    pid = patient_id_of(p)
    kept_before = {t: product_rows(t, patient_id=pid) for t in ("health_records", "reports")}
    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    erasure.request_erasure_confirm(request=request, actor=SYSTEM)

    assert erasure.run_erasure(erasure_id=plan.pk) == "done"

    after = everything(pid)
    assert after["devices"] == after["locations"] == after["messages"] == []
    patient = after["patients"][0]
    assert patient["email"] == sources.erasure_hash(p.email) and patient["phone"] == sources.erasure_hash(
        p.phone
    )
    assert patient["native_place"] is None and patient["restricted_at"] is not None
    assert (patient["name"], patient["id_number"]) == (p.name, p.id_number)  # kept: medical records
    for table, rows in kept_before.items():
        assert [{**r, "restricted_at": None} for r in after[table]] == rows
        assert all(r["restricted_at"] is not None for r in after[table])
    assert {o["phone"] for o in after["orders"]} == {p.phone[0] + "***"}
    assert {o["postal_code"] for o in after["orders"]} == {None}
    assert everything(patient_id_of(q)) == other_before  # nobody else touched

    # Quanyi's side: values gone, key destroyed, account closed, tombstone, request done.
    subject.refresh_from_db()
    assert subject.erased_at is not None
    assert (subject.full_name, subject.email, subject.phone, subject.id_number) == (None, None, None, None)
    assert subject.email_index == subject.phone_index == subject.id_number_index == ""
    assert crypto.subject_key_is_destroyed(subject.key_id)
    assert subject.user is not None and not subject.user.is_active and not subject.user.has_usable_password()
    assert Client().login(email=p.email, password=factories.PASSWORD) is False
    tomb = Tombstone.objects.get(erasure=plan)
    assert tomb.subject_id_ref == subject.pk and len(tomb.identifier_hashes) == 3
    assert p.phone not in str(tomb.identifier_hashes) and p.email not in str(tomb.roots)
    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    plan.refresh_from_db()
    assert plan.status == Erasure.Status.DONE and plan.rows_done == plan.rows_total
    assert plan.backups_until == (timezone.now() + timedelta(days=30)).date()
    # The requester's report, sent before the key was destroyed.
    report = [m for m in mail.outbox if request.reference in m.subject and p.email in m.to]
    assert len(report) == 1
    assert "健康档案" in report[0].body and "《医疗机构病历管理规定》" in report[0].body
    assert plan.backups_until.isoformat() in report[0].body
    assert audit_verify().ok
    assert AuditEntry.objects.filter(action="erasure.completed", object_id=str(plan.pk)).count() == 1


def test_every_recipient_holding_the_subject_is_asked_to_delete_once(product: None, receiver: Any) -> None:
    subject, p = subject_with_data(1)
    other, _q = subject_with_data(2)
    logistics = factories.logistics_recipient(receiver.url())
    regulator = factories.regulator_recipient()
    for r in (logistics, regulator):
        disclosure_record(
            recipient=r, subject=subject, categories=r.categories, external_ref="C-1", actor=SYSTEM
        )
    disclosure_record(
        recipient=logistics, subject=other, categories=["orders_delivery"], external_ref="C-2", actor=SYSTEM
    )
    request = deletion_request(subject)
    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    erasure.request_erasure_confirm(request=request, actor=SYSTEM)

    erasure.run_erasure(erasure_id=plan.pk)
    Erasure.objects.filter(pk=plan.pk).update(status=Erasure.Status.RUNNING, lease_until=None)
    erasure.run_erasure(erasure_id=plan.pk)  # a resumed run, after the key is gone

    notices = RecipientNotice.objects.filter(reference=request.reference).order_by("recipient__code")
    assert [(n.recipient.code, n.kind, n.subject_id) for n in notices] == [
        ("regulator", "deletion", subject.pk),
        ("shunda", "deletion", subject.pk),
    ]
    assert notices[0].status == NoticeStatus.MANUAL  # no webhook: a task for staff
    assert notice_deliver(notice_id=notices[1].pk) == "delivered"
    body = json.loads(receiver.requests[0].body)
    assert body["type"] == "deletion" and body["subject"]["external_ref"] == "C-1"
    assert len(receiver.requests) == 1


def test_a_second_run_changes_nothing(product: None) -> None:
    subject, p = subject_with_data(1)
    request = deletion_request(subject)
    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    erasure.request_erasure_confirm(request=request, actor=SYSTEM)
    erasure.run_erasure(erasure_id=plan.pk)
    state = everything(patient_id_of_hashed(p))
    entries = AuditEntry.objects.count()
    mails = len(mail.outbox)

    assert erasure.run_erasure(erasure_id=plan.pk) == "not claimed (done)"

    assert everything(patient_id_of_hashed(p)) == state
    assert AuditEntry.objects.count() == entries and len(mail.outbox) == mails
    assert Tombstone.objects.filter(erasure=plan).count() == 1


def patient_id_of_hashed(p: sample_product.Person) -> int:
    with connections["product"].cursor() as cursor:
        cursor.execute(
            "SELECT id FROM patients WHERE email IN (%s, %s)", [p.email, sources.erasure_hash(p.email)]
        )
        return int(cursor.fetchone()[0])


def test_a_run_that_crashes_half_way_resumes_to_the_same_result(
    product: None, monkeypatch: Any, settings: Any
) -> None:
    settings.QUANYI_ERASURE_CHECKPOINT_SECONDS = 0  # save progress after every batch
    subject, p = subject_with_data(1)
    pid = patient_id_of(p)
    sample_product.insert_rows(
        "messages",
        ["patient_id", "channel", "direction", "body", "sent_at"],
        [(pid, "app", "in", f"第 {n} 条", timezone.now()) for n in range(50)],
    )
    request = deletion_request(subject)
    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    erasure.request_erasure_confirm(request=request, actor=SYSTEM)
    real = sources.erase_batch
    calls = {"n": 0}

    def crashing(*args: Any, **kwargs: Any) -> sources.BatchResult:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("worker lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(sources, "erase_batch", crashing)
    with pytest.raises(RuntimeError):
        erasure_run(erasure_id=plan.pk, batch=10)
    plan.refresh_from_db()
    assert plan.status == Erasure.Status.RUNNING and 0 < plan.rows_done < plan.rows_total
    assert len(product_rows("messages", patient_id=pid)) == 54 - 30  # three batches went through

    # Another worker cannot take it while the lease holds; after it expires it can.
    assert erasure.run_erasure(erasure_id=plan.pk) == "not claimed (running)"
    Erasure.objects.filter(pk=plan.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(sources, "erase_batch", real)
    assert erasure.run_erasure(erasure_id=plan.pk) == "done"

    plan.refresh_from_db()
    assert plan.rows_done == plan.rows_total and plan.runs == 2
    after = everything(pid)
    assert after["messages"] == [] and after["patients"][0]["email"] == sources.erasure_hash(p.email)
    assert ErasureStep.objects.filter(erasure=plan, done_at__isnull=True).count() == 0


def test_a_hold_on_the_subject_blocks_the_erasure(product: None) -> None:
    subject, p = subject_with_data(1)
    request = deletion_request(subject)
    hold_place(
        actor=SYSTEM,
        subject=subject,
        ground=HoldGround.COURT,
        reason="(2026)沪0105民初12345号 证据保全",
        review_on=timezone.localdate() + timedelta(days=90),
    )
    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    assert plan.plan["blocked"] is True

    with translation.override("en"), pytest.raises(ValidationError, match="legal hold"):
        erasure.request_erasure_confirm(request=request, actor=SYSTEM)

    plan.refresh_from_db()
    assert plan.status == Erasure.Status.PLANNED
    assert product_rows("devices", patient_id=patient_id_of(p)) != []
    assert not crypto.subject_key_is_destroyed(subject.key_id)


def test_one_erasure_of_a_person_at_a_time(product: None) -> None:
    """A second erasure of the same person (the service termination's while a deletion
    request's runs, say) is refused until the first has finished: both would ask each
    recipient to delete. The database holds it too, for two confirmations at the same moment."""
    subject, _p = subject_with_data(1)
    request = deletion_request(subject)
    first = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    second = erasure_plan(
        subject=subject, actor=SYSTEM, reference="TERMINATION-1", origin=Erasure.Origin.TERMINATION
    )
    erasure.request_erasure_confirm(request=request, actor=SYSTEM, enqueue=False)

    with translation.override("en"), pytest.raises(ErasureBusy, match=request.reference):
        erasure_confirm(erasure=second, actor=SYSTEM, enqueue=False)
    second.refresh_from_db()
    assert second.status == Erasure.Status.PLANNED
    with pytest.raises(IntegrityError), transaction.atomic():
        Erasure.objects.filter(pk=second.pk).update(status=Erasure.Status.RUNNING)

    assert erasure.run_erasure(erasure_id=first.pk) == "done"
    # Once the first is done, the second may go ahead (it finds nothing left to erase).
    erasure_confirm(erasure=second, actor=SYSTEM, enqueue=False)
    second.refresh_from_db()
    assert second.status == Erasure.Status.CONFIRMED


def test_a_hold_on_a_category_keeps_every_table_holding_it(product: None) -> None:
    subject, p = subject_with_data(1)
    hold_place(
        actor=SYSTEM,
        category="communications",
        ground=HoldGround.DISPUTE,
        reason="客服纠纷 TK-2026-0042",
        review_on=timezone.localdate() + timedelta(days=30),
    )
    request = deletion_request(subject)
    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    messages = next(i for i in plan.plan["items"] if i["table"] == "messages")
    assert messages["action"] == "keep" and messages["held"] == ["communications"]
    assert "messages" not in set(plan.steps.values_list("table", flat=True))
    erasure.request_erasure_confirm(request=request, actor=SYSTEM)
    erasure.run_erasure(erasure_id=plan.pk)
    pid = patient_id_of_hashed(p)
    assert len(product_rows("messages", patient_id=pid)) == 4  # kept under the hold
    assert product_rows("devices", patient_id=pid) == []


def test_only_deletion_and_cancellation_requests_plan_erasures(product: None) -> None:
    subject, _p = subject_with_data(1)
    request = services.request_submit(actor=SYSTEM, type=RequestType.ACCESS, subject=subject)
    request = services.request_verify(request=request, actor=SYSTEM, method=VerificationMethod.STAFF)
    with pytest.raises(ValidationError):
        erasure.request_erasure_plan(request=request, actor=SYSTEM)
    unverified = services.request_submit(actor=SYSTEM, type=RequestType.DELETION, subject=subject)
    with translation.override("en"), pytest.raises(ValidationError, match="Verify"):
        erasure.request_erasure_plan(request=unverified, actor=SYSTEM)
    assert not Erasure.objects.exists()


# --- Staff in the admin ---------------------------------------------------------------------


def act(obj: DataSubjectRequest, action: str) -> str:
    return reverse("admin:dsar_datasubjectrequest_act", args=[obj.pk, action])


@pytest.mark.parametrize("role", [AGENT, DPO, AUDITOR])
def test_staff_plan_and_confirm_in_the_admin(client: Client, role: str, product: None) -> None:
    subject, p = subject_with_data(1)
    request = deletion_request(subject)
    client.force_login(factories.staff(role))

    planned = client.post(act(request, "plan_erasure"))

    if role == AUDITOR:
        assert planned.status_code == 403
        assert not Erasure.objects.exists()
        return
    assert planned.status_code == 302
    page = client.get(reverse("admin:dsar_datasubjectrequest_change", args=[request.pk])).content.decode()
    assert 'id="dsar-erasure"' in page and "《医疗机构病历管理规定》" in page
    assert client.post(act(request, "confirm_erasure")).status_code == 302
    plan = Erasure.objects.get()
    assert plan.status == Erasure.Status.CONFIRMED and plan.confirmed_by is not None
    assert AuditEntry.objects.filter(action="erasure.confirmed", actor_id=str(plan.confirmed_by.pk)).exists()


# --- The command -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=ALL)  # the command runs in another process
def test_erase_subject_command_shows_the_plan_then_erases_with_yes(product: None) -> None:
    subject, p = subject_with_data(7, account=False)

    dry = manage("erase_subject", p.email, "--reason", "工单 #4411：患者来电要求删除")
    assert dry.returncode == 0, dry.stderr
    assert "Plan:" in dry.stdout and "Devices" in dry.stdout and "deleted" in dry.stdout
    assert "Run again with --yes" in dry.stdout
    assert product_rows("devices", patient_id=patient_id_of(p)) != []

    done = manage("erase_subject", p.email, "--reason", "工单 #4411：患者来电要求删除", "--yes")
    assert done.returncode == 0, done.stderr
    assert "Erased:" in done.stdout
    assert DataSubjectRequest.objects.filter(subject=subject, type=RequestType.DELETION).count() == 1
    request = DataSubjectRequest.objects.get(subject=subject)
    assert request.status == Status.COMPLETED
    assert Erasure.objects.get(subject=subject).origin == Erasure.Origin.COMMAND
    assert product_rows("devices", patient_id=patient_id_of_hashed(p)) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody@example.cn", "--reason", "x"], "No person with the e-mail"),
        (["p1@example.cn"], "--reason"),
    ],
)
def test_erase_subject_command_bad_input_is_a_message(product: None, args: list[str], message: str) -> None:
    subject_with_data(1)
    result = manage("erase_subject", *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
