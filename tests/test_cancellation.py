"""Self-service account cancellation: preview, reauthenticated confirmation, cooling-off,
undo (signing in, the button, the API), the sweep, the erasure, and a legal hold."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import time_machine
from allauth.account.adapter import get_adapter
from django.conf import settings
from django.core import mail
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from accounts.models import DataSubject, User
from accounts.roles import AGENT, DPO
from core import crypto
from core.audit import SYSTEM, audit_verify
from core.jobs import SKIPPED
from core.models import AuditEntry, OutboxMessage
from dsar import cancellation, erasure, notifications, sample_product, tasks
from dsar.models import (
    AccountCancellation,
    DataSubjectRequest,
    RequestMessage,
    RequestType,
    Status,
    VerificationMethod,
)
from dsar.workdays import workday_index
from retention.models import Erasure, HoldGround, LegalHold
from retention.services import hold_place
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)
SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Monday without holidays near it: cooling-off ends 2026-03-09, the request is due
# 2026-03-23 (15 working days counted from 03-03).
CONFIRMED = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)
START = reverse("cancellation:start")
UNDO = reverse("cancellation:undo")
API = "/api/v1/account/cancellation/"


# --- helpers --------------------------------------------------------------------------------


def _person(n: int) -> sample_product.Person:
    return sample_product.Person(
        email=f"leaver{n}@example.cn",
        phone=f"1390000{n:04d}",
        name=f"离开{n}",
        id_number=f"1101011985061{n:04d}X"[:18],
        birthday="1985-06-01",
        gender="男",
        native_place="江苏省南京市",
    )


def _subject_user(n: int = 1, *, product_data: bool = False) -> User:
    p = _person(n)
    user = cast(User, factories.UserFactory(email=p.email))
    factories.subject(user=user, email=p.email, phone=p.phone, id_number=p.id_number, full_name=p.name)
    if product_data:
        sample_product.demo_load([p], seed=n)
    return user


def _signed_in(user: User) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _reauthenticate(client: Client) -> None:
    response = client.post(reverse("account_reauthenticate"), {"password": factories.PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]


def _confirm(client: Client, reason: str = "") -> AccountCancellation:
    """Reauthenticate and confirm, at CONFIRMED."""
    with time_machine.travel(CONFIRMED, tick=False):
        _reauthenticate(client)
        response = client.post(START, {"reason": reason})
    assert response.status_code == 302 and response["Location"] == START, response.content.decode()[:2000]
    return AccountCancellation.objects.select_related("request").latest("pk")


def _schedule(user: User) -> AccountCancellation:
    """Straight through the service (for tests about what happens afterwards)."""
    with time_machine.travel(CONFIRMED, tick=False):
        return cancellation.cancellation_schedule(user=user, reauthenticated=True, language="en")


def _after_cooling_off() -> Any:
    return time_machine.travel(CONFIRMED + timedelta(days=7, minutes=1), tick=False)


def _login(client: Client, email: str) -> Any:
    return client.post(reverse("account_login"), {"login": email, "password": factories.PASSWORD})


def _outbox_kinds(request: DataSubjectRequest) -> list[str]:
    return sorted(
        OutboxMessage.objects.filter(
            task_name="dsar.tasks.send_requester_email", kwargs__request_id=request.pk
        ).values_list("kwargs__kind", flat=True)
    )


def _product_counts(email: str) -> dict[str, int]:
    """Rows per sample-product table of the patient with this (original or hashed) e-mail."""
    from core import sources

    with connections["product"].cursor() as cursor:
        cursor.execute(
            "SELECT id FROM patients WHERE email IN (%s, %s)", [email, sources.erasure_hash(email)]
        )
        pid = int(cursor.fetchone()[0])
        counts = {}
        for table in sample_product.TABLES:
            column = "id" if table == "patients" else "patient_id"
            cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = %s", [pid])  # noqa: S608
            counts[table] = int(cursor.fetchone()[0])
    return counts


def _html(response: Any) -> str:
    return str(response.content.decode())


# --- Where it is, who may use it ------------------------------------------------------------


def test_account_settings_offer_cancel_my_account() -> None:
    client = _signed_in(_subject_user())

    home = _html(client.get(reverse("portal:home")))
    settings_page = _html(client.get(reverse("portal:account")))

    assert reverse("portal:account") in home  # in the header of every page
    assert 'id="cancel-account"' in settings_page and START in settings_page
    assert reverse("account_change_password") in settings_page and reverse("mfa_index") in settings_page


def test_anonymous_visitors_are_sent_to_sign_in(client: Client) -> None:
    for response in (
        client.get(START),
        client.post(START),
        client.post(UNDO),
        client.get(reverse("portal:account")),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login") + "?next=")
    assert client.get(API).status_code == 403


def test_staff_accounts_have_no_cancellation_here() -> None:
    client = _signed_in(factories.staff(AGENT))

    assert client.get(START).status_code == 403
    assert client.post(UNDO).status_code == 403
    assert 'id="cancel-account"' not in _html(client.get(reverse("portal:account")))


def test_without_a_recent_reauthentication_you_are_sent_to_reauthenticate(settings: Any) -> None:
    user = _subject_user()
    client = _signed_in(user)
    expected = reverse("account_reauthenticate") + "?next=" + START.replace("/", "%2F")

    assert client.get(START)["Location"] == expected
    assert client.post(START, {"reason": ""})["Location"] == expected
    # A reauthentication that has expired counts for nothing either.
    with time_machine.travel(CONFIRMED, tick=False):
        _reauthenticate(client)
    later = CONFIRMED + timedelta(seconds=settings.ACCOUNT_REAUTHENTICATION_TIMEOUT + 1)
    with time_machine.travel(later, tick=False):
        assert client.post(START, {"reason": ""})["Location"] == expected

    assert not DataSubjectRequest.objects.exists() and not AccountCancellation.objects.exists()


# --- The page before confirming -------------------------------------------------------------


def test_the_page_says_what_is_deleted_what_is_kept_and_why(product: None) -> None:
    user = _subject_user(product_data=True)
    client = _signed_in(user)

    with time_machine.travel(CONFIRMED, tick=False):
        _reauthenticate(client)
        page = client.get(START)

    assert page.status_code == 200
    html = _html(page)
    deleted = html.split('id="cancellation-deleted"')[1].split('id="cancellation-kept"')[0]
    kept = html.split('id="cancellation-kept"')[1].split('id="cancellation-confirm"')[0]
    assert "Devices" in deleted and "Locations" in deleted and "deleted" in deleted
    assert "Your account" in deleted and "closed: it can no longer sign in" in deleted
    assert "Health records" in kept and "Medical records kept by law" in kept and "15 years" in kept
    assert "Your consent history" in kept and "PIPL Art. 13" in kept
    assert "restricted to storage and security only (PIPL Art. 47)" in kept
    # When, and that it can be undone; no questionnaire: the reason is optional.
    assert "2026-03-09 10:00 (Asia/Shanghai)" in html and "2026-03-23" in html
    assert "cooling-off of 7 days" in html and "signing in again" in html
    assert 'name="reason"' in html and "optional" in html and 'name="reason" required' not in html
    assert "<script" not in html and "style=" not in html
    # A preview only: nothing stored.
    assert not Erasure.objects.exists() and not DataSubjectRequest.objects.exists()


# --- Confirming -----------------------------------------------------------------------------


def test_confirming_records_a_verified_request_and_a_schedule_and_emails_the_date() -> None:
    user = _subject_user()
    client = _signed_in(user)

    scheduled = _confirm(client, reason="不再使用这个应用")

    request = scheduled.request
    assert request.type == RequestType.CANCELLATION
    assert request.status == Status.VERIFIED
    assert request.verification_method == VerificationMethod.REAUTHENTICATION
    assert request.subject == DataSubject.objects.get(user=user) and request.user == user
    assert request.details == "不再使用这个应用" and request.language == "en"
    assert scheduled.user == user and scheduled.confirmed_at == CONFIRMED
    assert scheduled.scheduled_for == CONFIRMED + timedelta(days=7)
    assert request.due_date == date(2026, 3, 23)
    assert request.due_at is not None and scheduled.scheduled_for < request.due_at
    assert scheduled.undone_at is None and scheduled.started_at is None
    assert AuditEntry.objects.filter(
        action="cancellation.scheduled", object_id=str(request.pk), actor_id=str(user.pk)
    ).exists()
    # One e-mail with the schedule instead of "received" and "verified".
    assert _outbox_kinds(request) == ["cancellation_scheduled"]
    notifications.send_requester_email(request_id=request.pk, kind="cancellation_scheduled")
    (message,) = mail.outbox
    assert message.to == [user.email] and request.reference in message.subject
    assert "2026-03-09" in message.subject
    assert "2026-03-09 10:00 (Asia/Shanghai)" in message.body and "2026-03-23" in message.body
    assert "Sign in" in message.body and "Keep my account" in message.body
    assert "http://127.0.0.1:8000" + reverse("portal:account") in message.body

    # The portal shows it on every page: the date and the undo button.
    with time_machine.travel(CONFIRMED + timedelta(hours=1), tick=False):
        home = _html(client.get(reverse("portal:home")))
        status_page = _html(client.get(START))
    assert 'id="cancellation-notice"' in home and "2026-03-09 10:00" in home
    assert f'action="{UNDO}"' in home
    assert request.reference in status_page and "2026-03-09 10:00" in status_page

    # Confirming again (a double click) makes nothing new.
    with time_machine.travel(CONFIRMED + timedelta(minutes=1), tick=False):
        _reauthenticate(client)
        client.post(START, {"reason": ""})
    assert AccountCancellation.objects.count() == 1 and DataSubjectRequest.objects.count() == 1


def test_the_cooling_off_always_ends_well_before_the_deadline() -> None:
    """The longest allowed cooling-off (14 days), confirmed on any day of 2026 at the last
    second, leaves at least 4 days before the 15th working day (holidays and adjusted
    working days included) for the erasure, or for staff when a hold stops it."""
    index = workday_index()
    margins = []
    for offset in range(365):
        day = date(2026, 1, 1) + timedelta(days=offset)
        confirmed = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=SHANGHAI)
        margins.append(index.deadline(day).due_at - (confirmed + timedelta(days=14)))
    assert min(margins) >= timedelta(days=4)


# --- Undo -------------------------------------------------------------------------------------


def test_signing_in_during_the_cooling_off_undoes_it() -> None:
    user = _subject_user()
    scheduled = _schedule(user)

    with time_machine.travel(CONFIRMED + timedelta(days=3), tick=False):
        response = _login(Client(HTTP_ACCEPT_LANGUAGE="en"), user.email)

    assert response.status_code == 302, _html(response)[:2000]
    scheduled.refresh_from_db()
    assert scheduled.undone_at == CONFIRMED + timedelta(days=3)
    assert scheduled.undone_via == AccountCancellation.Via.LOGIN
    request = scheduled.request
    request.refresh_from_db()
    assert request.status == Status.WITHDRAWN
    assert AuditEntry.objects.filter(action="cancellation.undone", object_id=str(request.pk)).count() == 1
    assert _outbox_kinds(request) == ["cancellation_scheduled", "cancellation_undone"]
    notifications.send_requester_email(request_id=request.pk, kind="cancellation_undone")
    assert "undone" in mail.outbox[-1].subject
    assert "someone signed in to your account" in mail.outbox[-1].body

    # Signing in again later changes nothing more.
    _login(Client(), user.email)
    assert AuditEntry.objects.filter(action="cancellation.undone").count() == 1


def test_the_undo_button_undoes_it() -> None:
    user = _subject_user()
    client = _signed_in(user)
    scheduled = _confirm(client)

    with time_machine.travel(CONFIRMED + timedelta(days=1), tick=False):
        response = client.post(UNDO, follow=True)

    html = _html(response)
    assert "Your account cancellation is undone" in html and 'id="cancellation-notice"' not in html
    scheduled.refresh_from_db()
    assert scheduled.undone_via == AccountCancellation.Via.BUTTON and scheduled.undone_at is not None
    assert scheduled.request.status == Status.WITHDRAWN
    assert _outbox_kinds(scheduled.request) == ["cancellation_scheduled", "cancellation_undone"]
    notifications.send_requester_email(request_id=scheduled.request.pk, kind="cancellation_undone")
    assert "someone signed in" not in mail.outbox[-1].body
    # The page offers a fresh cancellation again, and the sweep has nothing to do.
    with time_machine.travel(CONFIRMED + timedelta(days=1), tick=False):
        assert 'id="cancel-account"' in _html(client.get(reverse("portal:account")))
    with _after_cooling_off():
        assert cancellation.cancellations_sweep() == 0


def test_withdrawing_the_request_on_its_page_also_undoes_it() -> None:
    user = _subject_user()
    client = _signed_in(user)
    scheduled = _confirm(client)

    with time_machine.travel(CONFIRMED + timedelta(days=1), tick=False):
        client.post(reverse("dsar:withdraw", args=[scheduled.request.pk]))

    scheduled.refresh_from_db()
    assert scheduled.undone_via == AccountCancellation.Via.WITHDRAWN
    assert scheduled.request.status == Status.WITHDRAWN


def test_another_subject_cannot_undo_someone_elses() -> None:
    owner = _subject_user(1)
    scheduled = _schedule(owner)
    stranger = _signed_in(_subject_user(2))

    response = stranger.post(UNDO, follow=True)
    api = stranger.delete(API)

    assert "There is no account cancellation to undo." in _html(response)
    assert api.status_code == 404
    scheduled.refresh_from_db()
    assert scheduled.undone_at is None and scheduled.request.status == Status.VERIFIED
    assert not AuditEntry.objects.filter(action="cancellation.undone").exists()


# --- After the cooling-off ------------------------------------------------------------------


def test_the_sweep_waits_for_the_date_then_erases_once_and_the_account_is_gone(product: None) -> None:
    user = _subject_user(product_data=True)
    email = user.email
    scheduled = _schedule(user)
    before = _product_counts(email)

    with time_machine.travel(CONFIRMED + timedelta(days=7) - timedelta(seconds=1), tick=False):
        assert cancellation.cancellations_sweep() == 0
    assert not Erasure.objects.exists()

    with _after_cooling_off():
        assert cancellation.cancellations_sweep() == 1
        assert cancellation.cancellations_sweep() == 0  # run twice: started once
        assert tasks.cancellations_sweep() == 0  # the beat's task, through its singleton claim
        assert tasks.cancellations_sweep() == SKIPPED

    scheduled.refresh_from_db()
    assert scheduled.started_at == CONFIRMED + timedelta(days=7, minutes=1) and scheduled.blocked_at is None
    plan = Erasure.objects.get()
    assert plan.origin == Erasure.Origin.CANCELLATION and plan.reference == scheduled.request.reference
    assert plan.status == Erasure.Status.CONFIRMED and plan.confirmed_by == user
    assert AuditEntry.objects.filter(action="erasure.confirmed").count() == 1
    assert AuditEntry.objects.filter(action="cancellation.started").count() == 1
    assert (
        OutboxMessage.objects.filter(task_name="dsar.tasks.run_erasure", kwargs__erasure_id=plan.pk).count()
        == 1
    )
    # Too late to undo now: neither the button nor signing in stops a confirmed erasure.
    client = _signed_in(user)
    assert "can no longer be undone" in _html(client.post(UNDO, follow=True))
    assert _login(Client(), email).status_code == 302
    scheduled.refresh_from_db()
    assert scheduled.undone_at is None

    with time_machine.travel(CONFIRMED + timedelta(days=7, minutes=2), tick=False):
        assert erasure.run_erasure(erasure_id=plan.pk) == "done"

    # The account cannot sign in any more, through Django or through allauth's login page.
    assert Client().login(email=email, password=factories.PASSWORD) is False
    refused = _login(Client(HTTP_ACCEPT_LANGUAGE="en"), email)
    assert refused.status_code == 200
    with translation.override("en"):
        assert str(get_adapter().error_messages["email_password_mismatch"]) in _html(refused)
    user.refresh_from_db()
    assert not user.is_active and not user.has_usable_password() and user.email != email
    # The product's rows went as the plan said: deleted tables empty, kept ones untouched.
    after = _product_counts(email)
    for item in plan.plan["items"]:
        table = item["table"]
        expected = 0 if item["action"] == "delete" else before[table]
        assert after[table] == expected, (table, item["action"])
    assert after["devices"] == after["locations"] == after["messages"] == 0
    assert after["health_records"] == before["health_records"] > 0
    subject = DataSubject.objects.get(pk=scheduled.request.subject_id)
    assert subject.is_erased and crypto.subject_key_is_destroyed(subject.key_id)
    request = DataSubjectRequest.objects.get(pk=scheduled.request.pk)
    assert request.status == Status.COMPLETED and request.closed_at is not None
    assert request.due_at is not None and request.closed_at < request.due_at
    report = [m for m in mail.outbox if request.reference in m.subject]
    assert len(report) == 1 and report[0].to == [email]
    assert "Your account is cancelled" in report[0].body and "Health records" in report[0].body
    assert audit_verify().ok


@pytest.mark.django_db(transaction=True, databases=ALL)  # each sweep in its own thread and connection
def test_two_sweeps_at_the_same_time_start_it_once(product: None) -> None:
    user = _subject_user(product_data=True)
    scheduled = cancellation.cancellation_schedule(user=user, reauthenticated=True)
    AccountCancellation.objects.filter(pk=scheduled.pk).update(
        scheduled_for=timezone.now() - timedelta(minutes=1)
    )
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(cancellation.cancellations_sweep())
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert sorted(results) == [0, 1]
    assert Erasure.objects.filter(status=Erasure.Status.CONFIRMED).count() == 1
    assert AuditEntry.objects.filter(action="cancellation.started").count() == 1
    assert AuditEntry.objects.filter(action="erasure.confirmed").count() == 1
    assert OutboxMessage.objects.filter(task_name="dsar.tasks.run_erasure").count() == 1


def test_a_legal_hold_leaves_it_to_staff_and_the_subject_can_still_undo(product: None) -> None:
    user = _subject_user(product_data=True)
    agent, dpo = factories.staff(AGENT), factories.staff(DPO)
    scheduled = _schedule(user)
    before = _product_counts(user.email)
    subject = DataSubject.objects.get(user=user)
    hold_place(
        actor=SYSTEM,
        subject=subject,
        ground=HoldGround.COURT,
        reason="(2026)沪0105民初12345号 证据保全",
        review_on=timezone.localdate() + timedelta(days=90),
    )

    with _after_cooling_off():
        assert cancellation.cancellations_sweep() == 1
        assert cancellation.cancellations_sweep() == 0

    scheduled.refresh_from_db()
    assert scheduled.blocked_at is not None and scheduled.undone_at is None
    request = scheduled.request
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS  # open: its clock and reminders run on
    plan = Erasure.objects.get()
    assert plan.status == Erasure.Status.PLANNED and plan.plan["blocked"] is True
    note = RequestMessage.objects.get(request=request)
    assert note.kind == RequestMessage.Kind.INTERNAL and note.author is None
    hold = LegalHold.objects.get()
    with translation.override(settings.LANGUAGE_CODE):  # the staff note's language, throughout
        expected_reason = str(
            gettext("A legal hold (%(ids)s) keeps this person's data; release it before erasing.")
        )
    assert expected_reason % {"ids": f"#{hold.pk}"} in (note.body or "")
    assert AuditEntry.objects.filter(action="cancellation.blocked", object_id=str(request.pk)).count() == 1
    assert _product_counts(user.email) == before and not crypto.subject_key_is_destroyed(subject.key_id)
    # Staff are told, and see it in the admin.
    assert OutboxMessage.objects.filter(task_name="dsar.tasks.send_cancellation_blocked").count() == 1
    notifications.send_cancellation_blocked(request_id=request.pk)
    assert sorted(mail.outbox[-1].to) == sorted([agent.email, dpo.email])
    assert request.reference in mail.outbox[-1].subject
    admin = Client(HTTP_ACCEPT_LANGUAGE="en")
    admin.force_login(agent)
    listed = _html(admin.get(reverse("admin:dsar_datasubjectrequest_changelist") + "?cancellation=blocked"))
    assert request.reference in listed
    page = _html(admin.get(reverse("admin:dsar_datasubjectrequest_change", args=[request.pk])))
    assert "BLOCKED: staff decide" in page and "legal hold" in page

    # The subject sees it is with staff, and can still keep the account.
    client = _signed_in(user)
    home = _html(client.get(reverse("portal:home")))
    assert "with our staff" in home and f'action="{UNDO}"' in home
    assert _login(Client(), user.email).status_code == 302  # signing in after the cooling-off: no undo
    scheduled.refresh_from_db()
    assert scheduled.undone_at is None
    client.post(UNDO)
    scheduled.refresh_from_db()
    plan.refresh_from_db()
    assert scheduled.undone_via == AccountCancellation.Via.BUTTON
    assert plan.status == Erasure.Status.CANCELLED
    request.refresh_from_db()
    assert request.status == Status.WITHDRAWN


# --- The API (the app) ----------------------------------------------------------------------


def test_the_app_previews_cancels_and_undoes_through_the_api(product: None) -> None:
    user = _subject_user(product_data=True)
    app = Client(HTTP_ACCEPT_LANGUAGE="en")
    login = app.post(
        "/_allauth/app/v1/auth/login",
        {"email": user.email, "password": factories.PASSWORD},
        content_type="application/json",
    )
    assert login.status_code == 200, login.content
    token = login.json()["meta"]["session_token"]
    auth = {"HTTP_X_SESSION_TOKEN": token}

    with time_machine.travel(CONFIRMED, tick=False):
        preview = app.get(API, **auth).json()
        refused = app.post(API, {}, content_type="application/json", **auth)
        reauth = app.post(
            "/_allauth/app/v1/auth/reauthenticate",
            {"password": factories.PASSWORD},
            content_type="application/json",
            **auth,
        )
        assert reauth.status_code == 200, reauth.content
        created = app.post(API, {"reason": "换用其他服务"}, content_type="application/json", **auth)
        again = app.post(API, {}, content_type="application/json", **auth)
        current = app.get(API, **auth).json()

    assert preview["current"] is None and preview["preview"]["cooling_off_days"] == 7
    assert any("Medical records kept by law" in line["why"] for line in preview["preview"]["kept"])
    assert refused.status_code == 403 and "password again" in refused.json()["detail"]
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["state"] == "scheduled" and body["can_undo"] is True
    assert body["scheduled_for"].startswith("2026-03-09T02:00:00") and body["due_date"] == "2026-03-23"
    assert again.status_code == 200, again.content
    assert again.json()["reference"] == body["reference"]
    assert AccountCancellation.objects.count() == 1
    assert current["current"]["reference"] == body["reference"] and current["preview"] is None

    with time_machine.travel(CONFIRMED + timedelta(days=1), tick=False):
        undone = app.delete(API, **auth)
        assert app.delete(API, **auth).status_code == 404
    assert undone.status_code == 200 and undone.json()["state"] == "undone"
    assert AccountCancellation.objects.get().undone_via == AccountCancellation.Via.API


def test_undoing_through_the_api_after_the_erasure_started_is_a_conflict() -> None:
    user = _subject_user()
    _schedule(user)
    with _after_cooling_off():
        cancellation.cancellations_sweep()
    client = _signed_in(user)

    response = client.delete(API)

    assert response.status_code == 409
    assert AccountCancellation.objects.get().undone_at is None


def test_starting_a_started_cancellation_again_does_nothing(product: None) -> None:
    user = _subject_user(product_data=True)
    scheduled = _schedule(user)
    with _after_cooling_off():
        assert cancellation.cancellation_start(cancellation_id=scheduled.pk) == "started"
        entries = AuditEntry.objects.count()
        assert cancellation.cancellation_start(cancellation_id=scheduled.pk) == "not claimed"
    assert AuditEntry.objects.count() == entries


def test_staff_do_not_pre_empt_the_cooling_off() -> None:
    user = _subject_user()
    scheduled = _schedule(user)
    admin = Client(HTTP_ACCEPT_LANGUAGE="en")
    admin.force_login(factories.staff(DPO))
    change = reverse("admin:dsar_datasubjectrequest_change", args=[scheduled.request.pk])

    page = _html(admin.get(change))
    refused = admin.post(
        reverse("admin:dsar_datasubjectrequest_act", args=[scheduled.request.pk, "plan_erasure"])
    )

    assert "/act/plan_erasure/" not in page
    assert "cooling-off ends, erasure starts" in page and "2026-03-09 10:00" in page
    assert refused.status_code == 302 and refused["Location"] == change
    assert not Erasure.objects.exists()
