"""Service termination (seed 000 §6): only the DPO starts it; everyone reachable is e-mailed
and the announcement is public at once; nothing is erased before the stop date; from it the
job erases every person through the erasure engine except people under a legal hold, in
batches, resumable, never twice; cancelling before erasure stops the e-mails. Each erased
person's recipients are asked to delete once, their open requests are closed, and from the stop
date nobody signs up (the no-account request form works until the erasure is done)."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from accounts.services import subject_erase
from config.celery import app as celery_app
from consent.campaigns import campaign_step
from consent.models import NoticeCampaign, NoticeDelivery
from core import crypto, sources
from core.audit import SYSTEM, Actor, audit_verify
from core.crypto import blind_index
from core.models import (
    AuditEntry,
    JobState,
    NoticeStatus,
    Recipient,
    RecipientNotice,
)
from core.recipients import disclosure_record, notice_deliver
from dsar import sample_product, services
from dsar.cancellation import cancellation_schedule, cancellations_sweep
from dsar.erasure import request_erasure_confirm, request_erasure_plan, run_erasure
from dsar.models import (
    AccountCancellation,
    DataSubjectRequest,
    OnBehalf,
    Reminder,
    RequestType,
    VerificationMethod,
)
from dsar.models import Status as RequestStatus
from retention.erasure import erasure_confirm, erasure_plan, erasure_run
from retention.models import Erasure, HoldGround, ServiceTermination
from retention.services import hold_place
from retention.termination import termination_cancel, termination_start, termination_step
from tests import factories
from tests.conftest import ALL, Worker, manage, wait_for
from tests.receiver import Receiver
from tests.test_erasure import everything, patient_id_of, subject_with_data

Status = ServiceTermination.Status
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Started on 2026-03-02 (a Monday) with the default 30 days' notice: the earliest stop date is
# 2026-04-01, and erasure may start at 00:00 Shanghai time that day.
STARTED = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)
STOP_ON = date(2026, 4, 1)
EVE = datetime(2026, 3, 31, 23, 59, 59, tzinfo=SHANGHAI)
STOP_DAY = datetime(2026, 4, 1, 0, 0, 1, tzinfo=SHANGHAI)
REASON = "本公司将停止运营健康管理服务。 / We are closing the health app."


def patient(n: int, **fields: Any) -> DataSubject:
    return factories.subject(
        email=f"patient{n}@example.cn", kind=DataSubject.Kind.PATIENT, phone=f"1390000{n:04d}", **fields
    )


def start(**kwargs: Any) -> ServiceTermination:
    with time_machine.travel(STARTED, tick=False):
        return termination_start(actor=SYSTEM, stop_on=STOP_ON, reason=REASON, **kwargs)


def run_campaign(campaign: NoticeCampaign) -> None:
    """The campaign's chain of steps, in this process (what the worker does)."""
    for _ in range(100):
        campaign.refresh_from_db()
        if campaign.status not in (NoticeCampaign.Status.QUEUED, NoticeCampaign.Status.SENDING):
            return
        campaign_step(
            campaign_id=campaign.pk, token=str(campaign.lease_token) if campaign.lease_token else None
        )
    raise AssertionError("the campaign did not finish")


def step_at(moment: datetime, **kwargs: Any) -> str:
    with time_machine.travel(moment, tick=False):
        return termination_step(**kwargs)


def admin_url(view: str, *args: Any) -> str:
    return reverse(f"admin:retention_servicetermination_{view}", args=args)


# --- Who may start it ----------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize("role", ["anonymous", "subject", AGENT, AUDITOR, DPO])
def test_only_the_dpo_starts_the_termination_in_the_admin(client: Client, role: str) -> None:
    patient(1)
    if role == "subject":
        client.force_login(factories.UserFactory())
    elif role != "anonymous":
        client.force_login(factories.staff(role))
    form = {"stop_on": STOP_ON.isoformat(), "reason": REASON}

    with time_machine.travel(STARTED, tick=False):
        page = client.get(admin_url("add"))
        asked = client.post(admin_url("add"), form, HTTP_ACCEPT_LANGUAGE="en")
        confirmed = client.post(admin_url("add"), {**form, "confirm": "1"})

    started = ServiceTermination.objects.first()
    if role == DPO:
        assert page.status_code == asked.status_code == 200
        assert 'id="termination-confirm"' in asked.content.decode()
        assert "1 people with an e-mail address are e-mailed now" in asked.content.decode()
        assert started is not None and confirmed.status_code == 302
        assert confirmed["Location"] == admin_url("change", started.pk)
        assert (started.status, started.stop_on, started.reason, started.notice_days) == (
            Status.ANNOUNCED,
            STOP_ON,
            REASON,
            30,
        )
        assert started.started_by is not None and started.started_by.groups.get().name == DPO
        entry = AuditEntry.objects.get(action="termination.started")
        assert (entry.actor_type, entry.actor_id) == ("user", str(started.started_by.pk))
        assert entry.data == {"stop_on": "2026-04-01", "notice_days": 30}
    else:
        assert started is None
        assert not NoticeCampaign.objects.exists()
        expected = 302 if role in ("anonymous", "subject") else 403
        assert page.status_code == asked.status_code == confirmed.status_code == expected
        assert not AuditEntry.objects.filter(action="termination.started").exists()


@pytest.mark.django_db(databases=ALL)
def test_the_service_refuses_staff_without_the_permission_and_the_cancel_action_is_the_dpos() -> None:
    agent = factories.staff(AGENT)

    with time_machine.travel(STARTED, tick=False), pytest.raises(PermissionDenied):
        termination_start(actor=Actor.of(agent), stop_on=STOP_ON, reason=REASON, user=agent)

    assert not ServiceTermination.objects.exists()
    termination = start()
    with pytest.raises(PermissionDenied):
        termination_cancel(termination=termination, actor=Actor.of(agent), user=agent)
    client = Client()
    client.force_login(agent)
    listing = client.get(admin_url("changelist"))
    refused = client.post(admin_url("changelist"), {"action": "cancel", "_selected_action": [termination.pk]})
    assert listing.status_code == 200 and 'value="cancel"' not in listing.content.decode()
    assert refused.status_code in (200, 302)
    termination.refresh_from_db()
    assert termination.status == Status.ANNOUNCED


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"stop_on": "2026-03-31"}, "leave everyone 30 days&#x27; notice: 2026-04-01 or later"),
        ({"stop_on": "1 April"}, "Enter a valid date"),
        ({"reason": "   "}, "This field is required"),
    ],
)
def test_bad_input_in_the_admin_form_is_a_form_error(
    client: Client, form: dict[str, str], message: str
) -> None:
    client.force_login(factories.staff(DPO))
    data = {"stop_on": STOP_ON.isoformat(), "reason": REASON, **form}

    with time_machine.travel(STARTED, tick=False):
        response = client.post(admin_url("add"), {**data, "confirm": "1"}, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ServiceTermination.objects.exists()


# --- The command ---------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--stop-on", "2026-04-31", "--reason", REASON],
            "'2026-04-31' is not a date: write it as YYYY-MM-DD",
        ),
        (["--stop-on", "tomorrow", "--reason", REASON], "is not a date"),
        (["--stop-on", "2026-03-20", "--reason", REASON], "30 days' notice: 2026-04-01 or later"),
        (["--stop-on", "2026-04-01", "--reason", " "], "--reason must say why"),
        (["--reason", REASON], "Give --stop-on YYYY-MM-DD"),
        (
            ["--stop-on", "2026-04-01", "--reason", REASON, "--by", "nobody@example.cn"],
            "no active staff account",
        ),
    ],
)
def test_the_command_refuses_bad_input_with_a_message(args: list[str], message: str) -> None:
    with time_machine.travel(STARTED, tick=False), pytest.raises(CommandError, match=message):
        call_command("terminate_service", *args, "--yes")

    assert not ServiceTermination.objects.exists()


@pytest.mark.django_db(databases=ALL)
def test_the_command_asks_first_starts_once_shows_status_and_cancels(
    capsys: pytest.CaptureFixture[str],
) -> None:
    patient(1)
    patient(2)
    args = ["--stop-on", "2026-04-01", "--reason", REASON]

    with time_machine.travel(STARTED, tick=False):
        call_command("terminate_service", *args)
        assert "Nothing started. Run again with --yes" in capsys.readouterr().out
        assert not ServiceTermination.objects.exists()
        call_command("terminate_service", *args, "--yes")
        assert "notices are being sent" in capsys.readouterr().out
        with pytest.raises(CommandError, match=r"already been started \(stop date 2026-04-01\)"):
            call_command("terminate_service", "--stop-on", "2026-05-01", "--reason", REASON, "--yes")
        call_command("terminate_service", "--status")
        status = capsys.readouterr().out
        call_command("terminate_service", "--cancel")
        cancelled = capsys.readouterr().out
        with pytest.raises(CommandError, match="No termination of the service is running"):
            call_command("terminate_service", "--cancel")

    termination = ServiceTermination.objects.get()
    assert "announced: notices being sent; stops on 2026-04-01" in status
    assert "Notices: queued" in status and "0 of 0 sent" in status
    assert "Cancelled" in cancelled and termination.status == Status.CANCELLED
    entry = AuditEntry.objects.get(action="termination.started")
    assert (entry.actor_type, entry.actor_id) == ("system", "terminate_service")
    assert NoticeCampaign.objects.get().status == NoticeCampaign.Status.CANCELLED


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_the_command_line_shows_a_message_and_no_traceback() -> None:
    bad = manage("terminate_service", "--stop-on", "2026-02-30", "--reason", REASON, "--yes")
    status = manage("terminate_service", "--status")

    assert bad.returncode == 1
    assert "CommandError: --stop-on '2026-02-30' is not a date" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert status.returncode == 0 and "No termination of the service has been started." in status.stdout


# --- Notice and announcement ---------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_starting_emails_every_reachable_person_once_and_announces_it_publicly(client: Client) -> None:
    holder = factories.subject(
        user=cast(User, factories.UserFactory(email="holder@example.cn")), language="en"
    )
    zh = patient(1)
    no_address = factories.subject(email="", phone="13900009999", kind=DataSubject.Kind.PATIENT)
    gone = patient(2)
    subject_erase(subject=gone, actor=SYSTEM)
    assert client.get(reverse("retention:termination")).status_code == 404
    assert 'id="termination-notice"' not in client.get(reverse("portal:home")).content.decode()

    termination = start()

    campaign = NoticeCampaign.objects.get(termination=termination)
    assert campaign.kind == NoticeCampaign.Kind.SERVICE_TERMINATION
    run_campaign(campaign)
    deliveries = dict(NoticeDelivery.objects.filter(campaign=campaign).values_list("subject_id", "status"))
    assert deliveries == {holder.pk: "sent", zh.pk: "sent"}  # not the one without an address, not the erased
    assert no_address.pk not in deliveries and gone.pk not in deliveries
    assert Counter(a for m in mail.outbox for a in m.to) == {"holder@example.cn": 1, "patient1@example.cn": 1}
    english = next(m for m in mail.outbox if m.to == ["holder@example.cn"])
    assert english.subject == "Our service stops on 2026-04-01: what happens to your personal information"
    assert "From 2026-04-01 we delete or anonymise all your personal information" in english.body
    assert REASON in english.body and "/service-termination/" in english.body and "/requests/" in english.body
    chinese = next(m for m in mail.outbox if m.to == ["patient1@example.cn"])
    assert REASON in chinese.body and "2026-04-01" in chinese.subject

    # The announcement is public from the start, and every portal page carries the banner.
    page = client.get(reverse("retention:termination"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "This service stops on 2026-04-01" in page and REASON in page
    home = client.get(reverse("portal:home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="termination-notice"' in home and "This service stops on 2026-04-01." in home

    # Once the notices are out the job records it; nothing else happens before the stop date.
    assert step_at(STARTED + timedelta(minutes=5)) == "waiting for the stop date"
    termination.refresh_from_db()
    assert termination.status == Status.NOTIFIED and termination.notified_at is not None
    assert AuditEntry.objects.get(action="termination.notified").data == {
        "sent": 2,
        "failed": 0,
        "interrupted": 0,
    }


# --- Erasure -------------------------------------------------------------------------------------


def people_with_data(count: int) -> list[tuple[DataSubject, sample_product.Person]]:
    return [subject_with_data(n, account=n % 2 == 0) for n in range(1, count + 1)]


def notified(count: int) -> tuple[ServiceTermination, list[tuple[DataSubject, sample_product.Person]]]:
    people = people_with_data(count)
    termination = start()
    run_campaign(NoticeCampaign.objects.get(termination=termination))
    return termination, people


def assert_erased(subject: DataSubject, person: sample_product.Person) -> None:
    subject.refresh_from_db()
    assert subject.erased_at is not None and subject.email is None and subject.full_name is None
    assert crypto.subject_key_is_destroyed(subject.key_id)
    after = everything(patient_id_of_hashed(person))
    assert after["messages"] == after["devices"] == after["locations"] == []
    assert after["patients"][0]["email"] == sources.erasure_hash(person.email)
    assert after["patients"][0]["restricted_at"] is not None  # the medical record kept by law


def patient_id_of_hashed(person: sample_product.Person) -> int:
    with connections["product"].cursor() as cursor:
        cursor.execute("SELECT id FROM patients WHERE email = %s", [sources.erasure_hash(person.email)])
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(databases=ALL)
def test_nothing_is_erased_before_the_stop_date_then_everyone_but_the_held(
    product: None, client: Client
) -> None:
    termination, people = notified(4)
    held, held_person = people[2]
    hold = hold_place(
        actor=SYSTEM,
        ground=HoldGround.COURT,
        reason="(2026)沪0105民初1234号",
        review_on=date(2027, 1, 1),
        subject=held,
    )
    before = {p.email: everything(patient_id_of(p)) for _s, p in people}

    assert step_at(EVE) == "waiting for the stop date"

    assert not Erasure.objects.exists()
    assert {p.email: everything(patient_id_of(p)) for _s, p in people} == before
    assert not DataSubject.objects.filter(erased_at__isnull=False).exists()

    assert step_at(STOP_DAY, batch=2) == "done"

    termination.refresh_from_db()
    assert termination.status == Status.DONE and not termination.active
    for subject, person in people:
        if subject.pk != held.pk:
            assert_erased(subject, person)
    held.refresh_from_db()
    assert held.erased_at is None and not crypto.subject_key_is_destroyed(held.key_id)
    assert everything(patient_id_of(held_person)) == before[held_person.email]
    assert (termination.subjects_erased, termination.subjects_held, termination.subjects_remaining) == (
        3,
        1,
        0,
    )
    plan = Erasure.objects.get(subject=held, reference=termination.reference)
    assert plan.status == Erasure.Status.PLANNED and plan.plan["blocked"] is True
    assert termination.report["erased"] == 3
    assert termination.report["held"] == [
        {
            "subject": held.pk,
            "erasure": plan.pk,
            "holds": [{"id": hold.pk, "ground": "court", "category": ""}],
        }
    ]
    assert set(Erasure.objects.filter(status=Erasure.Status.DONE).values_list("origin", flat=True)) == {
        "termination"
    }
    done = AuditEntry.objects.get(action="termination.done")
    assert done.data == {"erased": 3, "held": [held.pk]}
    assert AuditEntry.objects.filter(action="termination.erasing").count() == 1

    # Running the job again does nothing more: no erasure, no audit entry.
    erasures, entries = Erasure.objects.count(), AuditEntry.objects.count()
    assert step_at(STOP_DAY + timedelta(minutes=1)) == "no termination"
    assert (Erasure.objects.count(), AuditEntry.objects.count()) == (erasures, entries)
    assert audit_verify().ok

    # Staff see the progress and the people kept, with the hold's ground.
    client.force_login(factories.staff(AUDITOR))
    page = client.get(admin_url("change", termination.pk), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"DS-{held.pk:06d}: #{hold.pk} court" in page and "3 people erased" in page
    campaigns = client.get(reverse("admin:consent_noticecampaign_changelist"), HTTP_ACCEPT_LANGUAGE="en")
    assert "service termination 2026-04-01" in campaigns.content.decode()
    # The public page now says it is over; nobody can cancel it any more.
    public = client.get(reverse("retention:termination"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Personal information erased" in public
    with pytest.raises(ValidationError):
        termination_cancel(termination=termination, actor=SYSTEM)


@pytest.mark.django_db(databases=ALL)
def test_a_job_stopped_after_one_batch_resumes_and_ends_as_one_run_would(product: None) -> None:
    termination, people = notified(5)

    assert step_at(STOP_DAY, batch=2, max_batches=1) == "erasing"

    termination.refresh_from_db()
    assert termination.status == Status.ERASING
    assert (termination.subjects_erased, termination.subjects_held, termination.subjects_remaining) == (
        2,
        0,
        3,
    )
    assert DataSubject.objects.filter(erased_at__isnull=False).count() == 2
    # A crash in the next batch: the third person's erasure was planned and confirmed, and the
    # worker died before running it (its lease has run out by the time the job comes back).
    third = people[2][0]
    with time_machine.travel(STOP_DAY + timedelta(seconds=10), tick=False):
        erasure = erasure_plan(
            subject=third, actor=SYSTEM, reference=termination.reference, origin=Erasure.Origin.TERMINATION
        )
        erasure_confirm(erasure=erasure, actor=SYSTEM, enqueue=False)
        ServiceTermination.objects.filter(pk=termination.pk).update(
            lease_until=timezone.now() + timedelta(seconds=settings.QUANYI_ERASURE_LEASE_SECONDS)
        )
    assert step_at(STOP_DAY + timedelta(seconds=20), batch=2) == "busy"  # the dead job's lease still runs

    assert step_at(STOP_DAY + timedelta(minutes=5), batch=2) == "done"

    termination.refresh_from_db()
    assert termination.status == Status.DONE
    assert (termination.subjects_erased, termination.subjects_held, termination.subjects_remaining) == (
        5,
        0,
        0,
    )
    for subject, person in people:
        assert_erased(subject, person)
    # One erasure per person, each completed once.
    assert Counter(Erasure.objects.values_list("subject_id", flat=True)) == {s.pk: 1 for s, _p in people}
    assert AuditEntry.objects.filter(action="erasure.completed").count() == 5
    assert AuditEntry.objects.filter(action="termination.done").count() == 1
    assert audit_verify().ok


@pytest.mark.django_db(databases=ALL)
def test_erasure_waits_while_notices_are_still_being_sent(product: None) -> None:
    subject_with_data(1)
    termination = start()

    assert step_at(STOP_DAY) == "waiting for the notices to go out"

    assert not Erasure.objects.exists()
    run_campaign(NoticeCampaign.objects.get(termination=termination))
    assert step_at(STOP_DAY) == "done"


# --- Cancelling ----------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_the_dpo_cancels_before_erasure_and_nothing_more_is_sent_or_erased(
    product: None, client: Client
) -> None:
    people = people_with_data(3)
    termination = start()
    campaign = NoticeCampaign.objects.get(termination=termination)
    dpo = factories.staff(DPO)
    client.force_login(dpo)

    asked = client.post(
        admin_url("changelist"),
        {"action": "cancel", "_selected_action": [termination.pk]},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert "The announcement is taken down" in asked.content.decode()
    assert ServiceTermination.objects.get().status == Status.ANNOUNCED
    client.post(
        admin_url("changelist"), {"action": "cancel", "_selected_action": [termination.pk], "apply": "1"}
    )

    termination.refresh_from_db()
    campaign.refresh_from_db()
    assert termination.status == Status.CANCELLED and not termination.active
    assert termination.cancelled_by == dpo
    assert campaign.status == NoticeCampaign.Status.CANCELLED
    assert campaign_step(campaign_id=campaign.pk) == "not mine"
    assert mail.outbox == []
    entry = AuditEntry.objects.get(action="termination.cancelled")
    assert (entry.actor_id, entry.data) == (str(dpo.pk), {"campaign": campaign.pk})
    assert client.get(reverse("retention:termination")).status_code == 404
    assert 'id="termination-notice"' not in client.get(reverse("portal:home")).content.decode()
    assert step_at(STOP_DAY) == "no termination"
    assert not Erasure.objects.exists()
    assert not DataSubject.objects.filter(erased_at__isnull=False).exists()
    assert len(people) == 3
    # A new one may be started afterwards.
    with time_machine.travel(STARTED + timedelta(days=1), tick=False):
        again = termination_start(actor=SYSTEM, stop_on=date(2026, 4, 2), reason=REASON)
    assert again.active and again.pk != termination.pk


# --- Through a real worker -----------------------------------------------------------------------


def run_job_on_worker() -> str:
    """Queue the beat job's task (as beat does every minute) and wait for its recorded outcome."""
    JobState.objects.filter(name="service-termination").update(claimed_until=None, last_finished_at=None)
    celery_app.send_task("retention.tasks.service_termination")
    wait_for(
        lambda: JobState.objects.filter(name="service-termination", last_finished_at__isnull=False).exists(),
        timeout=120,
        interval=0.2,
    )
    return JobState.objects.get(name="service-termination").last_detail


@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(300)
def test_a_worker_sends_the_notices_and_its_beat_job_erases_everyone_after_the_stop_date(
    product: None, own_queue: str, tmp_path: Path
) -> None:
    people = people_with_data(4)
    env = {"QUANYI_TERMINATION_BATCH": "2"}
    worker = Worker(tmp_path / "worker.log", tmp_path / "mail", queue=own_queue, env=env)
    worker.start()
    try:
        termination = termination_start(
            actor=SYSTEM, stop_on=timezone.localdate() + timedelta(days=31), reason=REASON
        )
        campaign = NoticeCampaign.objects.get(termination=termination)
        wait_for(
            lambda: NoticeCampaign.objects.filter(pk=campaign.pk, status=NoticeCampaign.Status.DONE).exists(),
            timeout=120,
            interval=0.2,
        )
        # The job before the stop date: it records that the notices are out and erases nothing.
        assert run_job_on_worker() == "waiting for the stop date"
        termination.refresh_from_db()
        assert termination.status == Status.NOTIFIED
        assert not Erasure.objects.exists()
        # The stop date has come (the worker's clock is real: move the date, not the clock).
        ServiceTermination.objects.filter(pk=termination.pk).update(
            stop_on=timezone.localdate() - timedelta(days=1)
        )
        outcome = run_job_on_worker()
    finally:
        worker.stop()

    assert outcome == "done", worker.log()[-3000:]
    termination.refresh_from_db()
    assert termination.status == Status.DONE
    assert (termination.subjects_erased, termination.subjects_held, termination.subjects_remaining) == (
        4,
        0,
        0,
    )
    for subject, person in people:
        assert_erased(subject, person)
    mails = "\n".join(worker.mails())
    for _subject, person in people:
        assert mails.count(f"To: {person.email}") == 1
    assert audit_verify().ok


KILL_SUBJECTS = 8
EXTRA_MESSAGES = 120  # per person, so each erasure takes many batches


@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(300)
def test_a_worker_killed_while_erasing_leaves_everyone_erased_exactly_once_after_a_new_one_resumes(
    product: None, own_queue: str, tmp_path: Path
) -> None:
    people = people_with_data(KILL_SUBJECTS)
    for _subject, person in people:
        sample_product.insert_rows(
            "messages",
            ["patient_id", "channel", "direction", "body", "sent_at"],
            [
                (patient_id_of(person), "app", "in", f"消息 {n}", timezone.now())
                for n in range(EXTRA_MESSAGES)
            ],
        )
    # Small batches and short leases, so the kill lands mid-way and the take-over is quick.
    env = {"QUANYI_TERMINATION_BATCH": "2", "QUANYI_ERASURE_BATCH": "10", "QUANYI_ERASURE_LEASE_SECONDS": "3"}
    first = Worker(tmp_path / "first.log", tmp_path / "mail", queue=own_queue, env=env)
    first.start()
    try:
        termination = termination_start(
            actor=SYSTEM, stop_on=timezone.localdate() + timedelta(days=31), reason=REASON
        )
        wait_for(
            lambda: NoticeCampaign.objects.filter(
                termination=termination, status=NoticeCampaign.Status.DONE
            ).exists(),
            timeout=120,
            interval=0.2,
        )
        ServiceTermination.objects.filter(pk=termination.pk).update(
            stop_on=timezone.localdate() - timedelta(days=1)
        )
        JobState.objects.filter(name="service-termination").update(claimed_until=None)
        celery_app.send_task("retention.tasks.service_termination")
        wait_for(
            lambda: DataSubject.objects.filter(erased_at__isnull=False).count() >= 3,
            timeout=120,
            interval=0.02,
        )
        first.kill()
    finally:
        first.stop()
    assert DataSubject.objects.filter(erased_at__isnull=True).exists(), "the kill must land before the end"
    assert ServiceTermination.objects.get(pk=termination.pk).status == Status.ERASING

    second = Worker(tmp_path / "second.log", tmp_path / "mail", queue=own_queue, env=env)
    second.start()
    try:
        outcomes = []
        for _ in range(20):  # what beat does every minute, until the dead job's leases have run out
            outcomes.append(run_job_on_worker())
            if outcomes[-1] == "done":
                break
            time.sleep(1)
    finally:
        second.stop()

    assert outcomes[-1] == "done", (outcomes, second.log()[-3000:])
    termination.refresh_from_db()
    assert (termination.subjects_erased, termination.subjects_held, termination.subjects_remaining) == (
        KILL_SUBJECTS,
        0,
        0,
    )
    for subject, person in people:
        assert_erased(subject, person)
    assert Counter(Erasure.objects.values_list("subject_id", flat=True)) == {s.pk: 1 for s, _p in people}
    assert all(e.rows_done == e.rows_total for e in Erasure.objects.all())
    assert AuditEntry.objects.filter(action="erasure.completed").count() == KILL_SUBJECTS
    assert AuditEntry.objects.filter(action="termination.done").count() == 1
    assert audit_verify().ok


# --- Recipients, open business, sign-up ----------------------------------------------------------


def recipients(receiver: Receiver) -> tuple[Recipient, Recipient]:
    webhook = factories.logistics_recipient(receiver.url())
    manual = factories.regulator_recipient()
    return webhook, manual


class Crash(Exception):
    pass


def crash(erasure: Erasure) -> None:
    raise Crash  # the worker dies after the notices were written, before the key is destroyed


@pytest.mark.django_db(databases=ALL)
def test_every_recipient_is_asked_to_delete_each_erased_person_once_also_after_a_crash(
    product: None, receiver: Receiver
) -> None:
    termination, people = notified(3)
    (first, _p1), (second, _p2), (untouched, _p3) = people
    webhook, manual = recipients(receiver)
    for n, subject in enumerate((first, second), start=1):
        for r in (webhook, manual):
            disclosure_record(
                recipient=r, subject=subject, categories=r.categories, external_ref=f"C-{n}", actor=SYSTEM
            )

    # The first person is erased in the first batch; the worker then dies while erasing the
    # second, just before the key is destroyed (the notices are written by then).
    assert step_at(STOP_DAY, batch=1, max_batches=1) == "erasing"
    with time_machine.travel(STOP_DAY + timedelta(seconds=10), tick=False):
        erasure = erasure_plan(
            subject=second, actor=SYSTEM, reference=termination.reference, origin=Erasure.Origin.TERMINATION
        )
        erasure_confirm(erasure=erasure, actor=SYSTEM, enqueue=False)
        with pytest.raises(Crash):
            erasure_run(erasure_id=erasure.pk, before_seal=crash)
    second.refresh_from_db()
    assert second.erased_at is None
    assert RecipientNotice.objects.filter(subject=second).count() == 2

    # The next job, once the dead run's lease is over, finishes everyone.
    assert step_at(STOP_DAY + timedelta(minutes=10)) == "done"

    notices = RecipientNotice.objects.order_by("subject_id", "recipient__code")
    assert [(n.subject_id, n.recipient.code, n.kind, n.reference, n.status) for n in notices] == [
        (first.pk, "regulator", "deletion", f"{termination.reference}-{first.pk}", NoticeStatus.MANUAL),
        (first.pk, "shunda", "deletion", f"{termination.reference}-{first.pk}", NoticeStatus.PENDING),
        (second.pk, "regulator", "deletion", f"{termination.reference}-{second.pk}", NoticeStatus.MANUAL),
        (second.pk, "shunda", "deletion", f"{termination.reference}-{second.pk}", NoticeStatus.PENDING),
    ]
    assert not RecipientNotice.objects.filter(subject=untouched).exists()
    # Delivered after the keys are gone: the recipient's own reference was sealed apart.
    for notice in notices.filter(recipient=webhook):
        assert notice_deliver(notice_id=notice.pk) == "delivered"
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert sorted((b["type"], b["subject"]["external_ref"]) for b in bodies) == [
        ("deletion", "C-1"),
        ("deletion", "C-2"),
    ]
    assert len(receiver.requests) == 2
    assert audit_verify().ok


def open_business(subject: DataSubject) -> dict[str, DataSubjectRequest]:
    """An access request nobody has verified yet, a deletion request staff planned (not yet
    confirmed), and an account cancellation in its cooling-off; and one request closed before."""
    assert subject.user is not None
    access = services.request_submit(
        actor=SYSTEM, type=RequestType.ACCESS, subject=subject, requester_email=subject.email or ""
    )
    deletion = services.request_verify(
        request=services.request_submit(
            actor=SYSTEM, type=RequestType.DELETION, subject=subject, requester_email=subject.email or ""
        ),
        actor=SYSTEM,
        method=VerificationMethod.STAFF,
    )
    request_erasure_plan(request=deletion, actor=SYSTEM)
    withdrawn = services.request_withdraw(
        request=services.request_submit(
            actor=SYSTEM, type=RequestType.COPY, subject=subject, requester_email=subject.email or ""
        ),
        actor=SYSTEM,
    )
    cancellation = cancellation_schedule(user=subject.user, reauthenticated=True)
    return {
        "access": access,
        "deletion": deletion,
        "cancellation": cancellation.request,
        "withdrawn": withdrawn,
    }


@pytest.mark.django_db(databases=ALL)
def test_the_open_requests_and_cancellation_of_an_erased_person_are_closed_and_nobody_chases_them(
    product: None,
) -> None:
    termination, people = notified(4)
    erased, held = people[1][0], people[3][0]  # both have an account
    hold_place(
        actor=SYSTEM,
        ground=HoldGround.COURT,
        reason="(2026)沪0105民初1",
        review_on=date(2027, 1, 1),
        subject=held,
    )
    with time_machine.travel(EVE, tick=False):
        business = open_business(erased)
        kept = open_business(held)

    assert step_at(STOP_DAY) == "done"

    for name in ("access", "deletion", "cancellation"):
        request = DataSubjectRequest.objects.get(pk=business[name].pk)
        assert (request.status, request.closed_at is not None) == (RequestStatus.COMPLETED, True), name
        entry = AuditEntry.objects.get(action="request.close_terminated", object_id=str(request.pk))
        assert entry.data["reason"] == "service_terminated"
        assert entry.data["termination"] == termination.reference
    assert DataSubjectRequest.objects.get(pk=business["withdrawn"].pk).status == RequestStatus.WITHDRAWN
    # The deletion request's own plan, never confirmed, is cancelled rather than left to staff.
    own = Erasure.objects.get(reference=business["deletion"].reference)
    assert own.status == Erasure.Status.CANCELLED
    # The person under a legal hold keeps everything open, as before.
    assert {n: DataSubjectRequest.objects.get(pk=r.pk).status for n, r in kept.items()} == {
        "access": RequestStatus.AWAITING_VERIFICATION,
        "deletion": RequestStatus.IN_PROGRESS,
        "cancellation": RequestStatus.VERIFIED,
        "withdrawn": RequestStatus.WITHDRAWN,
    }
    assert {n: r.status for n, r in kept.items()} == {
        n: DataSubjectRequest.objects.get(pk=r.pk).status for n, r in kept.items()
    }

    # Later: the cancellation sweep starts only the held person's, reminders only chase theirs.
    later = STOP_DAY + timedelta(days=30)
    assert cancellations_sweep(now=later) == 1
    assert AccountCancellation.objects.get(request=business["cancellation"]).started_at is None
    services.reminders_sweep(now=later)
    chased = set(Reminder.objects.values_list("request_id", flat=True))
    assert chased and chased <= {kept["deletion"].pk, kept["cancellation"].pk}
    assert audit_verify().ok


@pytest.mark.django_db(databases=ALL)
def test_a_request_closed_by_the_termination_says_why_in_the_requesters_language(product: None) -> None:
    termination, people = notified(1)
    subject = people[0][0]
    with time_machine.travel(EVE, tick=False):
        request = services.request_submit(
            actor=SYSTEM, type=RequestType.EXPLANATION, subject=subject, language="en"
        )
    # The answer is readable until the key goes: read it as the step writes it.
    with time_machine.travel(STOP_DAY, tick=False):
        closed = services.request_close_terminated(
            request=request, actor=SYSTEM, reference=termination.reference, stop_on=termination.stop_on
        )
        again = services.request_close_terminated(
            request=closed, actor=SYSTEM, reference=termination.reference, stop_on=termination.stop_on
        )

    assert closed.status == RequestStatus.COMPLETED and again.closed_at == closed.closed_at
    assert closed.answer == (
        f"The service stopped on 2026-04-01 and all personal information was deleted or anonymised "
        f"({termination.reference}). Nothing is left to act on, so this request is closed."
    )
    assert AuditEntry.objects.filter(action="request.close_terminated").count() == 1


SIGNUP = {"email": "new.person@example.cn", "password1": factories.PASSWORD, "password2": factories.PASSWORD}


@pytest.mark.django_db(databases=ALL)
def test_sign_up_closes_on_the_stop_date_and_the_public_form_works_until_erasure_is_done(
    client: Client, product: None
) -> None:
    termination, _people = notified(1)
    signup, public = reverse("account_signup"), reverse("dsar:submit", args=[RequestType.ACCESS])
    form = {"name": "李四", "email": "li.si@example.cn", "details": "我的记录", "on_behalf": OnBehalf.SELF}

    # The eve: sign-up is still open.
    with time_machine.travel(EVE, tick=False):
        page = client.get(signup, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'name="password1"' in page and "Sign-up is closed" not in page

    with time_machine.travel(STOP_DAY, tick=False):
        closed = client.get(signup, HTTP_ACCEPT_LANGUAGE="en")
        refused = client.post(signup, {**SIGNUP}, HTTP_ACCEPT_LANGUAGE="en")
        app = Client().post(
            "/_allauth/app/v1/auth/signup",
            {"email": SIGNUP["email"], "password": factories.PASSWORD},
            content_type="application/json",
        )
        asked = client.post(public, form, HTTP_ACCEPT_LANGUAGE="en")
    html = closed.content.decode()
    assert closed.status_code == 200 and "Sign-up is closed" in html
    assert "This service stopped on 2026-04-01: no new accounts can be created" in html
    assert 'name="password1"' not in html and reverse("dsar:new") in html
    assert "Sign-up is closed" in refused.content.decode()
    assert app.status_code == 403
    assert not User.objects.filter(email=SIGNUP["email"]).exists()
    # People can still ask without an account until the erasure is done...
    assert asked.status_code == 302 and asked["Location"] == reverse("dsar:code")
    request = DataSubjectRequest.objects.get(subject__email_index=blind_index("email", "li.si@example.cn"))
    assert request.status == RequestStatus.AWAITING_VERIFICATION

    # ...and the person who asked is erased with everyone else, their request closed.
    assert step_at(STOP_DAY + timedelta(minutes=1)) == "done"
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED

    # Once it is done, the form says why it takes nothing more (the API too), and creates nothing.
    with time_machine.travel(STOP_DAY + timedelta(days=1), tick=False):
        after = client.post(public, {**form, "email": "wang.wu@example.cn"}, HTTP_ACCEPT_LANGUAGE="en")
        api = Client().post(
            reverse("api-public-request-create"),
            {**form, "type": RequestType.ACCESS, "email": "zhao.liu@example.cn"},
            HTTP_ACCEPT_LANGUAGE="en",
        )
        still_closed = client.get(signup, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert after.status_code == 200
    assert "This service stopped on 2026-04-01 and all personal information has been deleted" in (
        after.content.decode()
    )
    assert api.status_code == 400, api.content
    assert "no new requests can be made here" in api.content.decode()
    assert DataSubjectRequest.objects.count() == 1
    assert "Sign-up is closed" in still_closed
    termination.refresh_from_db()
    assert termination.status == Status.DONE


@pytest.mark.django_db(databases=ALL)
def test_a_person_whose_own_erasure_is_under_way_is_left_to_it_and_recipients_are_told_once(
    product: None, receiver: Receiver
) -> None:
    termination, people = notified(2)
    subject = people[0][0]
    webhook, _manual = recipients(receiver)
    disclosure_record(
        recipient=webhook, subject=subject, categories=webhook.categories, external_ref="C-1", actor=SYSTEM
    )
    with time_machine.travel(EVE, tick=False):
        request = services.request_verify(
            request=services.request_submit(
                actor=SYSTEM, type=RequestType.DELETION, subject=subject, requester_email=subject.email or ""
            ),
            actor=SYSTEM,
            method=VerificationMethod.STAFF,
        )
        own = request_erasure_plan(request=request, actor=SYSTEM)
        request_erasure_confirm(request=request, actor=SYSTEM, enqueue=False)

    assert step_at(STOP_DAY) == "waiting for a running erasure"

    assert not Erasure.objects.filter(subject=subject, reference=termination.reference).exists()
    with time_machine.travel(STOP_DAY + timedelta(seconds=30), tick=False):
        assert run_erasure(erasure_id=own.pk) == "done"
    assert step_at(STOP_DAY + timedelta(minutes=1)) == "done"

    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED  # by its own erasure, with the report
    assert not AuditEntry.objects.filter(action="request.close_terminated").exists()
    notices = RecipientNotice.objects.filter(subject=subject)
    assert [(n.recipient.code, n.reference) for n in notices] == [("shunda", request.reference)]
    done = Erasure.objects.filter(status=Erasure.Status.DONE)
    assert Counter(done.values_list("subject_id", flat=True)) == {subject.pk: 1, people[1][0].pk: 1}
