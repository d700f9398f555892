"""The disclosure register and signed recipient notices. Webhooks are real: a local HTTP server
on 127.0.0.1 (an ephemeral port) receives the notices; time is frozen, never slept on."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from core import crypto, recipients
from core.audit import SYSTEM, Actor, audit_trail
from core.datamap import Category as C
from core.models import (
    AuditEntry,
    Disclosure,
    NoticeKind,
    NoticeStatus,
    OutboxMessage,
    Recipient,
    RecipientKind,
    RecipientLegalBasis,
    RecipientNotice,
)
from core.recipients import (
    DELIVER_TASK,
    backoff,
    disclosure_record,
    notice_deliver,
    notice_mark_done,
    notices_due_sweep,
    recipient_save,
    recipients_notify,
    signature_header,
    signature_verify,
)
from tests import factories
from tests.conftest import ALL, Worker, wait_for
from tests.receiver import Receiver

SECRET = factories.LOGISTICS_SECRET
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)
EXTERNAL_REF = "SD-CUST-20240711-0381"


# --- Helpers -------------------------------------------------------------------------------------


def make_recipient(
    code: str = "shunda-logistics",
    *,
    url: str = "",
    categories: tuple[str, ...] = (C.ORDERS, C.CONTACT),
    secret: str | None = SECRET,
    **fields: Any,
) -> Recipient:
    recipient = Recipient(
        code=code,
        name=fields.pop("name", "顺达物流有限公司"),
        kind=fields.pop("kind", RecipientKind.SHARED),
        purpose="配送订单商品",
        legal_basis=fields.pop("legal_basis", RecipientLegalBasis.CONTRACT),
        categories=list(categories),
        webhook_url=url,
        **fields,
    )
    return recipient_save(recipient=recipient, actor=SYSTEM, webhook_secret=secret if url else None)


def holder(recipient: Recipient, subject: DataSubject, *, categories: tuple[str, ...] | None = None) -> None:
    disclosure_record(
        recipient=recipient,
        subject=subject,
        categories=categories or tuple(recipient.categories),
        external_ref=f"{EXTERNAL_REF}-{recipient.code}",
        actor=SYSTEM,
    )


def deletion(
    subject: DataSubject, reference: str = "DSR-2026-000123", **kwargs: Any
) -> list[RecipientNotice]:
    return recipients_notify(
        subject=subject, kind=NoticeKind.DELETION, reference=reference, actor=SYSTEM, **kwargs
    )


def fresh(notice: RecipientNotice) -> RecipientNotice:
    return RecipientNotice.objects.get(pk=notice.pk)


# --- Signatures ----------------------------------------------------------------------------------


def test_the_signature_verifies_and_fails_when_body_timestamp_or_secret_change() -> None:
    body = b'{"id":"6f1c","type":"deletion"}'
    header = signature_header(SECRET, 1772416800, body)

    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert signature_verify(SECRET, "1772416800", body, header, now=1772416800 + 10)
    assert not signature_verify(SECRET, "1772416800", body + b" ", header, now=1772416800)
    assert not signature_verify(SECRET, "1772416801", body, header, now=1772416800)
    assert not signature_verify(SECRET + "x", "1772416800", body, header, now=1772416800)
    assert not signature_verify(SECRET, "1772416800", body, header, now=1772416800 + 301)  # replayed
    assert not signature_verify(SECRET, "not-a-time", body, header)
    assert not signature_verify(SECRET, "1772416800", body, "sha1=" + header[7:], now=1772416800)


def test_backoff_doubles_from_one_minute_and_stops_at_six_hours() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert backoff(9) == timedelta(hours=4, minutes=16)
    assert backoff(10) == backoff(50) == backoff(10_000) == timedelta(hours=6)


# --- Delivery ------------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_a_notice_reaches_a_real_receiver_signed_with_the_agreed_headers(receiver: Receiver) -> None:
    subject = factories.subject()
    recipient = make_recipient(url=receiver.url())
    holder(recipient, subject)

    with time_machine.travel(T0, tick=False):
        [notice] = deletion(subject)
        outcome = notice_deliver(notice_id=notice.pk)

    assert outcome == "delivered"
    [got] = receiver.requests
    assert got.path == "/quanyi/notices"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == str(notice.idempotency_key)
    assert got.headers["x-quanyi-timestamp"] == str(int(T0.timestamp()))
    assert signature_verify(
        SECRET,
        got.headers["x-quanyi-timestamp"],
        got.body,
        got.headers["x-quanyi-signature"],
        now=T0.timestamp(),
    )
    body = json.loads(got.body)
    assert body == {
        "id": str(notice.idempotency_key),
        "type": "deletion",
        "reference": "DSR-2026-000123",
        "issued_at": "2026-03-02T02:00:00Z",
        "controller": {"name": "Quanyi demo clinic software Ltd.", "contact": "privacy@quanyi.localhost"},
        "subject": {"external_ref": f"{EXTERNAL_REF}-shunda-logistics"},
        "categories": [C.CONTACT.value, C.ORDERS.value],
        "action_required": body["action_required"],
    }
    assert "Delete" in body["action_required"] or "删除" in body["action_required"]
    stored = fresh(notice)
    assert (stored.status, stored.attempts, stored.last_status_code) == (NoticeStatus.DELIVERED, 1, 200)
    assert stored.delivered_at == T0
    assert stored.personal_sealed is None  # the reference is not kept once delivered
    assert [e.action for e in audit_trail(notice)] == [
        "recipient_notice.created",
        "recipient_notice.delivered",
    ]


@pytest.mark.django_db(databases=ALL)
def test_the_stored_notice_holds_no_personal_data_in_clear() -> None:
    subject = factories.subject()
    holder(make_recipient(url="https://hooks.shunda.example.cn/quanyi"), subject)

    [notice] = deletion(subject)

    with connection.cursor() as cursor:
        cursor.execute("SELECT payload, personal_sealed FROM core_recipientnotice WHERE id = %s", [notice.pk])
        payload, sealed = cursor.fetchone()
        cursor.execute("SELECT webhook_secret FROM core_recipient")
        (secret,) = cursor.fetchone()
    assert EXTERNAL_REF not in str(payload)
    assert sealed.startswith("qys1.") and EXTERNAL_REF not in sealed
    assert secret.startswith("qys1.") and SECRET not in secret
    assert recipients.notice_personal(notice) == {"external_ref": f"{EXTERNAL_REF}-shunda-logistics"}
    queued = OutboxMessage.objects.get(task_name=DELIVER_TASK)
    assert queued.kwargs == {"notice_id": notice.pk}


@pytest.mark.django_db(databases=ALL)
def test_a_failing_receiver_is_retried_with_growing_backoff_until_it_answers_2xx(receiver: Receiver) -> None:
    receiver.codes = [500, 500, 200]
    subject = factories.subject()
    holder(make_recipient(url=receiver.url()), subject)
    with time_machine.travel(T0, tick=False):
        [notice] = deletion(subject)

        assert notice_deliver(notice_id=notice.pk) == "retry"
        first = fresh(notice)
        assert notice_deliver(notice_id=notice.pk) == "not_due"  # no attempt before its time

    assert (first.status, first.attempts, first.last_status_code) == (NoticeStatus.PENDING, 1, 500)
    assert first.last_error == "HTTP 500"  # never the response body
    assert first.next_attempt_at == T0 + timedelta(minutes=1)
    assert len(receiver.requests) == 1

    with time_machine.travel(first.next_attempt_at, tick=False):
        assert notice_deliver(notice_id=notice.pk) == "retry"
    second = fresh(notice)
    assert second.next_attempt_at == first.next_attempt_at + timedelta(minutes=2)

    with time_machine.travel(second.next_attempt_at, tick=False):
        assert notice_deliver(notice_id=notice.pk) == "delivered"
    third = fresh(notice)

    assert (third.status, third.attempts, third.last_status_code, third.last_error) == (
        NoticeStatus.DELIVERED,
        3,
        200,
        "",
    )
    assert third.delivered_at == second.next_attempt_at
    assert len(receiver.requests) == 3
    assert {r.headers["idempotency-key"] for r in receiver.requests} == {str(notice.idempotency_key)}
    assert {r.body for r in receiver.requests} == {receiver.requests[0].body}  # the same notice each time
    assert AuditEntry.objects.filter(action="recipient_notice.delivered").count() == 1


@pytest.mark.django_db(databases=ALL)
def test_an_unreachable_or_redirecting_webhook_is_a_failed_attempt_not_an_error(receiver: Receiver) -> None:
    subject = factories.subject()
    holder(make_recipient("down", url="http://127.0.0.1:9/nobody-listens"), subject)
    holder(make_recipient("moved", url=receiver.url("/old")), subject)
    receiver.codes = [302]

    with time_machine.travel(T0, tick=False):
        notices = {n.recipient.code: n for n in deletion(subject)}
        assert notice_deliver(notice_id=notices["down"].pk) == "retry"
        assert notice_deliver(notice_id=notices["moved"].pk) == "retry"

    down, moved = fresh(notices["down"]), fresh(notices["moved"])
    assert down.last_status_code is None and down.last_error.startswith("ConnectionRefusedError")
    assert (moved.last_status_code, moved.last_error) == (302, "HTTP 302")
    assert [r.path for r in receiver.requests] == ["/old"]  # the redirect was not followed


@pytest.mark.django_db(databases=ALL)
def test_notifying_the_same_event_twice_makes_one_notice_and_one_post_per_recipient(
    receiver: Receiver,
) -> None:
    subject = factories.subject()
    holder(make_recipient("shunda-logistics", url=receiver.url("/shunda")), subject)
    holder(make_recipient("yinhe-pay", url=receiver.url("/yinhe"), categories=(C.PAYMENT,)), subject)

    first = deletion(subject)
    second = deletion(subject)
    for notice in [*first, *second]:
        notice_deliver(notice_id=notice.pk)

    assert [n.pk for n in first] == [n.pk for n in second]
    assert RecipientNotice.objects.count() == 2
    assert sorted(r.path for r in receiver.requests) == ["/shunda", "/yinhe"]
    assert OutboxMessage.objects.filter(task_name=DELIVER_TASK).count() == 2
    assert AuditEntry.objects.filter(action="recipient_notice.created").count() == 2


@pytest.mark.django_db(databases=ALL)
def test_a_reference_already_used_for_another_subject_is_refused() -> None:
    recipient = make_recipient(url="https://hooks.shunda.example.cn/quanyi")
    a, b = factories.subject(email="a@example.cn"), factories.subject(email="b@example.cn")
    holder(recipient, a)
    holder(recipient, b)
    deletion(a)

    with pytest.raises(ValueError, match="another subject"):
        deletion(b)
    assert RecipientNotice.objects.count() == 1


@pytest.mark.django_db(databases=ALL)
def test_only_recipients_holding_the_categories_are_notified_and_get_the_corrected_values() -> None:
    subject = factories.subject()
    holder(make_recipient("shunda-logistics", url="https://a.example.cn/h"), subject)
    holder(make_recipient("yinhe-pay", url="https://b.example.cn/h", categories=(C.PAYMENT,)), subject)

    notices = recipients_notify(
        subject=subject,
        kind=NoticeKind.CORRECTION,
        reference="DSR-2026-000200",
        actor=SYSTEM,
        categories=[C.CONTACT],
        fields={"phone": "13900139000"},
    )

    [notice] = notices
    assert notice.recipient.code == "shunda-logistics"
    assert notice.payload["categories"] == [C.CONTACT.value]
    body = json.loads(recipients.notice_body(notice))
    assert body["fields"] == {"phone": "13900139000"}
    assert "13900139000" not in json.dumps(notice.payload)
    with pytest.raises(ValidationError):  # new values need the categories they belong to
        recipients_notify(
            subject=subject,
            kind=NoticeKind.CORRECTION,
            reference="DSR-2026-000201",
            actor=SYSTEM,
            fields={"phone": "13900139000"},
        )
    with pytest.raises(ValidationError):
        deletion(subject, "DSR-2026-000202", categories=["no_such_category"])
    assert RecipientNotice.objects.count() == 1


@pytest.mark.django_db(databases=ALL)
def test_the_deletion_notice_still_names_the_person_after_their_key_is_destroyed(receiver: Receiver) -> None:
    subject = factories.subject()
    holder(make_recipient(url=receiver.url()), subject)
    [notice] = deletion(subject)

    crypto.subject_key_destroy(subject.key_id)  # erasure crypto-shreds the subject's data
    crypto.clear_key_cache()

    assert Disclosure.objects.get().external_ref is None
    assert notice_deliver(notice_id=notice.pk) == "delivered"
    assert json.loads(receiver.requests[0].body)["subject"] == {
        "external_ref": f"{EXTERNAL_REF}-shunda-logistics"
    }


@pytest.mark.django_db(databases=ALL)
def test_an_inactive_recipient_gets_no_new_notice_and_its_pending_ones_wait(receiver: Receiver) -> None:
    subject = factories.subject()
    recipient = make_recipient(url=receiver.url())
    holder(recipient, subject)
    [notice] = deletion(subject)
    recipient.active = False
    recipient_save(recipient=recipient, actor=SYSTEM, changed=["active"])

    assert notice_deliver(notice_id=notice.pk) == "inactive"
    assert deletion(subject, "DSR-2026-000999") == []
    assert receiver.requests == []
    assert fresh(notice).status == NoticeStatus.PENDING


# --- Manual notices ------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_a_recipient_without_webhook_gets_a_manual_task_that_staff_mark_done() -> None:
    subject = factories.subject()
    holder(
        make_recipient("health-commission", url="", categories=(C.HEALTH,), legal_basis="legal_duty"), subject
    )
    agent = factories.staff(AGENT)

    [notice] = deletion(subject)
    assert (notice.status, notice.next_attempt_at) == (NoticeStatus.MANUAL, None)
    assert not OutboxMessage.objects.filter(task_name=DELIVER_TASK).exists()
    assert notice_deliver(notice_id=notice.pk) == "skipped"

    with pytest.raises(ValidationError):
        notice_mark_done(notice=notice, actor=Actor.of(agent), note="   ")
    assert fresh(notice).status == NoticeStatus.MANUAL

    with time_machine.travel(T0, tick=False):
        done = notice_mark_done(
            notice=notice, actor=Actor.of(agent), note="3月2日致电卫健委信息科,已确认删除。"
        )
    again = notice_mark_done(notice=done, actor=Actor.of(agent), note="again")

    assert (done.status, done.handled_by, done.handled_at) == (NoticeStatus.DONE, agent, T0)
    assert done.handled_note == "3月2日致电卫健委信息科,已确认删除。"
    assert done.personal_sealed is None
    assert again.handled_note == done.handled_note  # marking it again changes nothing
    entry = audit_trail(notice).get(action="recipient_notice.done")
    assert (entry.actor_type, entry.actor_id) == ("user", str(agent.pk))
    assert entry.data == {
        "recipient": "health-commission",
        "kind": "deletion",
        "reference": "DSR-2026-000123",
    }


# --- Concurrency, the sweep and a real worker ----------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_two_workers_claiming_the_same_notice_send_it_once(receiver: Receiver, own_queue: str) -> None:
    subject = factories.subject()
    holder(make_recipient(url=receiver.url()), subject)
    [notice] = deletion(subject)
    receiver.hold = threading.Event()
    outcomes: list[str] = []

    def worker() -> None:
        try:
            outcomes.append(notice_deliver(notice_id=notice.pk))
        finally:
            connections.close_all()

    first = threading.Thread(target=worker)
    first.start()
    assert receiver.arrived.wait(20)  # the first worker holds the notice and is mid-send

    second = notice_deliver(notice_id=notice.pk)
    receiver.hold.set()
    first.join(20)

    assert second == "not_due"
    assert outcomes == ["delivered"]
    assert len(receiver.requests) == 1
    assert fresh(notice).attempts == 1


@pytest.mark.django_db(databases=ALL)
def test_the_sweep_queues_each_due_notice_once_however_often_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(recipients.current_app, "send_task", lambda name, kwargs: sent.append(kwargs))
    subject = factories.subject()
    holder(make_recipient(url="https://hooks.shunda.example.cn/quanyi"), subject)
    with time_machine.travel(T0, tick=False):
        [notice] = deletion(subject)  # queued through the outbox at creation
        assert notices_due_sweep() == 0
    # The attempt failed and was rescheduled; the sweep picks it up once it is due.
    RecipientNotice.objects.filter(pk=notice.pk).update(
        dispatched_at=None, attempts=1, next_attempt_at=T0 + timedelta(minutes=1)
    )

    with time_machine.travel(T0 + timedelta(seconds=30), tick=False):
        assert notices_due_sweep() == 0
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
        assert notices_due_sweep() == 1
        assert notices_due_sweep() == 0  # a second sweep at once: claimed already
    with time_machine.travel(T0 + timedelta(minutes=12), tick=False):
        assert notices_due_sweep() == 1  # the message was lost: queued again

    assert sent == [{"notice_id": notice.pk}, {"notice_id": notice.pk}]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, databases=ALL)
def test_a_real_worker_delivers_the_notice_after_the_notifying_transaction_commits(
    celery_worker: Worker, receiver: Receiver
) -> None:
    subject = factories.subject()
    holder(make_recipient(url=receiver.url()), subject)

    with transaction.atomic():
        [notice] = deletion(subject)
        assert receiver.requests == []  # nothing leaves before commit

    wait_for(lambda: fresh(notice).status == NoticeStatus.DELIVERED, timeout=60)
    [got] = receiver.requests
    assert signature_verify(
        SECRET, got.headers["x-quanyi-timestamp"], got.body, got.headers["x-quanyi-signature"]
    )
    assert json.loads(got.body)["id"] == str(notice.idempotency_key)
    wait_for(lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists())


# --- Admin ---------------------------------------------------------------------------------------


def login(client: Client, role: str) -> User | None:
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"  # the messages below are asserted in English
    if role == "anonymous":
        return None
    user = factories.UserFactory() if role == "subject" else factories.staff(role)
    client.force_login(user)
    return user


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize(
    ("role", "changelist", "recipient_change", "recipient_add"),
    [
        ("anonymous", 302, 302, 302),
        ("subject", 302, 302, 302),
        (AGENT, 200, 200, 403),
        (DPO, 200, 200, 200),
        (AUDITOR, 200, 200, 403),
    ],
)
def test_register_pages_permission_matrix(
    client: Client, role: str, changelist: int, recipient_change: int, recipient_add: int
) -> None:
    subject = factories.subject()
    recipient = make_recipient(url="https://hooks.shunda.example.cn/quanyi")
    holder(recipient, subject)
    deletion(subject)
    login(client, role)

    assert client.get(reverse("admin:core_recipientnotice_changelist")).status_code == changelist
    assert client.get(reverse("admin:core_disclosure_changelist")).status_code == changelist
    assert (
        client.get(reverse("admin:core_recipient_change", args=[recipient.pk])).status_code
        == recipient_change
    )
    assert client.get(reverse("admin:core_recipient_add")).status_code == recipient_add


@pytest.mark.django_db(databases=ALL)
def test_the_dpo_sees_whether_a_secret_is_set_but_never_the_secret(client: Client) -> None:
    recipient = make_recipient(url="https://hooks.shunda.example.cn/quanyi")
    login(client, DPO)

    page = client.get(reverse("admin:core_recipient_change", args=[recipient.pk])).content.decode()
    notices = client.get(reverse("admin:core_recipientnotice_changelist")).content.decode()

    assert SECRET not in page
    assert recipient.webhook_secret not in page  # not even sealed
    assert 'name="new_webhook_secret"' in page
    assert "set" in page
    assert SECRET not in notices


@pytest.mark.django_db(databases=ALL)
def test_the_dpo_replaces_the_secret_through_the_form_and_it_is_audited(client: Client) -> None:
    recipient = make_recipient(url="https://hooks.shunda.example.cn/quanyi")
    login(client, DPO)
    url = reverse("admin:core_recipient_change", args=[recipient.pk])
    form = {
        "name": recipient.name,
        "kind": recipient.kind,
        "purpose": recipient.purpose,
        "legal_basis": recipient.legal_basis,
        "categories": recipient.categories,
        "country": "CN",
        "contact_email": "",
        "webhook_url": recipient.webhook_url,
        "active": "on",
        "new_webhook_secret": "a-brand-new-secret-from-the-recipient-42",
    }

    response = client.post(url, form)

    assert response.status_code == 302
    recipient.refresh_from_db()
    assert recipients.recipient_secret(recipient) == "a-brand-new-secret-from-the-recipient-42"
    entry = audit_trail(recipient).get(action="recipient.changed")
    assert entry.data["secret_changed"] is True
    assert "a-brand-new-secret" not in json.dumps(entry.data)


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize("allow_http", [False, True])
def test_a_plain_http_webhook_is_refused_with_a_clear_error_unless_allowed(
    client: Client, settings: Any, allow_http: bool
) -> None:
    settings.QUANYI_WEBHOOK_ALLOW_HTTP = allow_http
    login(client, DPO)
    form = {
        "code": "shunda-logistics",
        "name": "顺达物流有限公司",
        "kind": "shared",
        "purpose": "配送订单商品",
        "legal_basis": "contract",
        "categories": [C.ORDERS],
        "country": "CN",
        "webhook_url": "http://hooks.shunda.example.cn/quanyi",
        "active": "on",
        "new_webhook_secret": SECRET,
    }

    response = client.post(reverse("admin:core_recipient_add"), form)

    if allow_http:
        assert response.status_code == 302
        assert Recipient.objects.get().webhook_url == form["webhook_url"]
    else:
        assert response.status_code == 200
        assert "must start with https://" in response.content.decode()
        assert not Recipient.objects.exists()


@pytest.mark.django_db(databases=ALL)
def test_a_webhook_without_secret_and_a_short_secret_are_refused(client: Client) -> None:
    login(client, DPO)
    form = {
        "code": "yinhe-pay",
        "name": "银合支付有限公司",
        "kind": "shared",
        "purpose": "支付结算",
        "legal_basis": "contract",
        "country": "CN",
        "webhook_url": "https://hooks.yinhe.example.cn/quanyi",
        "active": "on",
    }

    missing = client.post(reverse("admin:core_recipient_add"), form)
    short = client.post(reverse("admin:core_recipient_add"), {**form, "new_webhook_secret": "short"})

    assert "A webhook needs a secret" in missing.content.decode()
    assert "at least 24 characters" in short.content.decode()
    assert not Recipient.objects.exists()
    with pytest.raises(ValidationError):
        recipient_save(
            recipient=Recipient(
                code="x",
                name="x",
                kind="shared",
                purpose="x",
                legal_basis="contract",
                webhook_url="ftp://x.cn",
            ),
            actor=SYSTEM,
            webhook_secret=SECRET,
        )


@pytest.mark.django_db(databases=ALL)
def test_an_agent_marks_a_manual_notice_done_through_the_admin_action(client: Client) -> None:
    subject = factories.subject()
    holder(make_recipient("health-commission", url="", categories=(C.HEALTH,)), subject)
    [notice] = deletion(subject)
    agent = login(client, AGENT)
    url = reverse("admin:core_recipientnotice_changelist")
    selected = {"action": "mark_done", "_selected_action": [notice.pk]}

    detail = client.get(reverse("admin:core_recipientnotice_change", args=[notice.pk])).content.decode()
    asked = client.post(url, selected)
    refused = client.post(url, {**selected, "apply": "1", "note": ""})
    done = client.post(url, {**selected, "apply": "1", "note": "已邮件通知卫健委,对方回复确认。"})

    # The handler of a manual notice sees who the person is at the recipient (audited).
    assert f"{EXTERNAL_REF}-health-commission" in detail
    assert audit_trail(notice).filter(action="recipient_notice.sensitive_viewed").count() == 1
    assert asked.status_code == 200 and 'name="note"' in asked.content.decode()
    assert refused.status_code == 200
    assert done.status_code == 302
    stored = fresh(notice)
    assert (stored.status, stored.handled_by, stored.handled_note) == (
        NoticeStatus.DONE,
        agent,
        "已邮件通知卫健委,对方回复确认。",
    )


@pytest.mark.django_db(databases=ALL)
def test_an_auditor_cannot_mark_notices_done(client: Client) -> None:
    subject = factories.subject()
    holder(make_recipient("health-commission", url="", categories=(C.HEALTH,)), subject)
    [notice] = deletion(subject)
    login(client, AUDITOR)

    detail = client.get(reverse("admin:core_recipientnotice_change", args=[notice.pk])).content.decode()
    client.post(
        reverse("admin:core_recipientnotice_changelist"),
        {"action": "mark_done", "_selected_action": [notice.pk], "apply": "1", "note": "x"},
    )

    assert fresh(notice).status == NoticeStatus.MANUAL
    assert f"{EXTERNAL_REF}-health-commission" not in detail  # masked for those who do not handle it


@pytest.mark.django_db(databases=ALL)
def test_the_dpo_retries_a_failing_notice_now(client: Client) -> None:
    subject = factories.subject()
    holder(make_recipient(url="https://hooks.shunda.example.cn/quanyi"), subject)
    [notice] = deletion(subject)
    later = timezone.now() + timedelta(hours=6)
    RecipientNotice.objects.filter(pk=notice.pk).update(attempts=9, next_attempt_at=later, dispatched_at=None)
    login(client, DPO)

    client.post(
        reverse("admin:core_recipientnotice_changelist"),
        {"action": "retry_now", "_selected_action": [notice.pk]},
    )

    stored = fresh(notice)
    assert stored.status == NoticeStatus.PENDING and stored.next_attempt_at is not None
    assert stored.next_attempt_at < later
    assert audit_trail(notice).filter(action="recipient_notice.retried").count() == 1
    assert OutboxMessage.objects.filter(task_name=DELIVER_TASK).count() == 2


# --- The register ------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_recording_a_disclosure_again_widens_it_instead_of_duplicating() -> None:
    subject = factories.subject()
    recipient = make_recipient()
    with time_machine.travel(T0, tick=False):
        disclosure_record(
            recipient=recipient, subject=subject, categories=[C.ORDERS], external_ref="A1", actor=SYSTEM
        )
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        disclosure_record(recipient=recipient, subject=subject, categories=[C.CONTACT], actor=SYSTEM)

    disclosure = Disclosure.objects.get()
    assert disclosure.categories == [C.CONTACT.value, C.ORDERS.value]
    assert (disclosure.first_at, disclosure.last_at) == (T0, T0 + timedelta(days=3))
    assert disclosure.external_ref == "A1"
    with connection.cursor() as cursor:
        cursor.execute("SELECT external_ref FROM core_disclosure")
        assert cursor.fetchone()[0].startswith("qy1.")


@pytest.mark.django_db(databases=ALL)
def test_rotating_the_master_key_reseals_secrets_and_pending_references(settings: Any) -> None:
    subject = factories.subject()
    holder(make_recipient(url="https://hooks.shunda.example.cn/quanyi"), subject)
    [notice] = deletion(subject)
    new_key = crypto.generate_master_key()
    settings.QUANYI_MASTER_KEYS = [new_key, *settings.QUANYI_MASTER_KEYS]

    assert recipients.sealed_rewrap() == 2
    assert recipients.sealed_rewrap() == 0
    settings.QUANYI_MASTER_KEYS = [new_key]  # the old key is gone: everything still opens
    assert recipients.recipient_secret(Recipient.objects.get()) == SECRET
    assert recipients.notice_personal(fresh(notice))["external_ref"] == f"{EXTERNAL_REF}-shunda-logistics"


@pytest.mark.django_db(databases=ALL)
def test_the_demo_register_loads_once() -> None:
    from core.demo import recipients_demo_load

    holder_subject, patient = factories.subject(email="a@example.cn"), factories.subject(email="b@example.cn")

    first = recipients_demo_load(account_holder=holder_subject, patient=patient)
    second = recipients_demo_load(account_holder=holder_subject, patient=patient)

    assert first == {"recipients": 5, "disclosures": 6}
    assert second == {"recipients": 0, "disclosures": 0}
    assert not Recipient.objects.exclude(webhook_url="").exists()
    notices = deletion(patient, "DSR-2026-000777")
    assert {n.recipient.code: n.status for n in notices} == {
        "demo-health-commission": NoticeStatus.MANUAL,
        "huayun-cloud": NoticeStatus.MANUAL,
    }
