"""Notice campaigns (material policy changes, security incidents): who is targeted, batches, at
most one e-mail per person even when a real worker is killed half-way, interrupted e-mails shown
to staff and resent only on purpose; security incidents, their e-mail, the public announcement,
the admin and its permissions; marketing e-mails with the one-click unsubscribe link."""

from __future__ import annotations

import re
import signal
import smtplib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail.backends import locmem
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from accounts.services import subject_erase
from config.celery import app as celery_app
from consent import campaigns, incidents
from consent.campaigns import STEP_TASK, campaign_step, campaigns_resume, targets_materialise
from consent.models import (
    ConsentEvent,
    IncidentSubject,
    NoticeCampaign,
    NoticeDelivery,
    PolicyVersion,
    Purpose,
    SecurityIncident,
)
from consent.services import consent_record, marketing_send, policy_publish, unsubscribe_token
from core.audit import SYSTEM, audit_verify
from core.models import AuditEntry, OutboxMessage
from tests import factories
from tests.conftest import ALL, Worker, wait_for

Row = NoticeDelivery.Status
Status = NoticeCampaign.Status
SUMMARY_ZH = "新增处理目的:去标识化数据用于口腔医学研究。"
SUMMARY_EN = "New purpose: de-identified data for dental research."


# --- Fixtures and helpers ---------------------------------------------------------------------------


def _policy(version: int, *, material: bool, published: bool, **fields: Any) -> PolicyVersion:
    at = timezone.now() - timedelta(days=400 if published else 0)
    values: dict[str, Any] = {
        "title_zh": "隐私政策",
        "title_en": "Privacy policy",
        "body_zh": f"第{version}版正文",
        "body_en": f"Text of version {version}",
        "summary_zh": SUMMARY_ZH if material else "",
        "summary_en": SUMMARY_EN if material else "",
        "material": material,
        "change_kind": "service_model" if material else "",
        "effective_at": at,
        "published_at": at if published else None,
    }
    values.update(fields)
    return PolicyVersion.objects.create(version=version, **values)


@pytest.fixture
def v2() -> PolicyVersion:
    """Version 1 published long ago; version 2 a material change, not yet published."""
    _policy(1, material=False, published=True)
    return _policy(2, material=True, published=False)


def patient(n: int, **fields: Any) -> DataSubject:
    """A person without an account, known by their profile e-mail."""
    return factories.subject(
        email=f"patient{n}@example.cn", kind=DataSubject.Kind.PATIENT, phone=f"1390000{n:04d}", **fields
    )


def account_holder(n: int, **fields: Any) -> DataSubject:
    user = cast(User, factories.UserFactory(email=f"holder{n}@example.cn"))
    return factories.subject(user=user, phone=f"1380000{n:04d}", **fields)


def backdate_subjects() -> None:
    """Everyone joined before the policy is published."""
    DataSubject.objects.update(created_at=timezone.now() - timedelta(days=30))


def run_campaign(campaign: NoticeCampaign, *, max_steps: int = 100) -> list[str]:
    """Run steps in this process the way the chain does: each with the token the previous one
    handed over (what the queued message carries)."""
    outcomes = []
    for _ in range(max_steps):
        campaign.refresh_from_db()
        if campaign.status not in (Status.QUEUED, Status.SENDING):
            break
        token = str(campaign.lease_token) if campaign.lease_token else None
        outcomes.append(campaign_step(campaign_id=campaign.pk, token=token))
    campaign.refresh_from_db()
    return outcomes


def recipients_of(messages: list[Any]) -> Counter[str]:
    return Counter(address for m in messages for address in m.to)


def admin_url(model: str, view: str, *args: Any) -> str:
    return reverse(f"admin:consent_{model}_{view}", args=args)


@pytest.fixture
def own_queue() -> Iterator[str]:
    """Publish to a queue of this test's own, so only its worker (not the session's) consumes."""
    queue = f"quanyi-campaign-{uuid.uuid4().hex[:8]}"
    old = celery_app.conf.task_default_queue, celery_app.conf.task_default_routing_key
    celery_app.conf.task_default_queue = celery_app.conf.task_default_routing_key = queue
    yield queue
    celery_app.conf.task_default_queue, celery_app.conf.task_default_routing_key = old


# --- Targets -------------------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_publishing_a_material_version_targets_each_active_subject_once(v2: PolicyVersion) -> None:
    reachable = [patient(1), patient(2), account_holder(1), account_holder(2)]
    erased = patient(3)
    subject_erase(subject=erased, actor=SYSTEM)
    no_address = factories.subject(email="", kind=DataSubject.Kind.CONTACT)
    backdate_subjects()

    published = policy_publish(policy=v2, actor=SYSTEM)
    joined_after = patient(4)  # read version 2 when signing up

    campaign = NoticeCampaign.objects.get(policy=v2)
    assert published.published_at is not None
    assert (campaign.kind, campaign.status) == (NoticeCampaign.Kind.POLICY_CHANGE, Status.QUEUED)
    assert OutboxMessage.objects.filter(task_name=STEP_TASK, kwargs={"campaign_id": campaign.pk}).exists()
    added = []
    while (n := targets_materialise(campaign=campaign, batch=3)) is not None:
        added.append(n)
    assert added == [3, 1]  # bounded batches
    # Walking the audience again (a crashed step run twice) inserts and counts nobody twice.
    NoticeCampaign.objects.filter(pk=campaign.pk).update(targets_after=0)
    while targets_materialise(campaign=campaign, batch=3) is not None:
        pass
    campaign.refresh_from_db()
    targeted = set(NoticeDelivery.objects.filter(campaign=campaign).values_list("subject_id", flat=True))
    assert targeted == {s.pk for s in reachable}
    assert campaign.targeted == 4
    assert not {erased.pk, no_address.pk, joined_after.pk} & targeted
    # Publishing again changes nothing and starts nothing.
    policy_publish(policy=v2, actor=SYSTEM)
    assert NoticeCampaign.objects.count() == 1
    assert AuditEntry.objects.filter(action="consent.policy_published").count() == 1


@pytest.mark.django_db(databases=ALL)
def test_publishing_a_version_that_is_not_material_sends_nothing() -> None:
    _policy(1, material=False, published=True)
    v2 = _policy(2, material=False, published=False)
    patient(1)

    policy_publish(policy=v2, actor=SYSTEM)

    assert not NoticeCampaign.objects.exists()
    assert PolicyVersion.objects.get(version=2).published_at is not None


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize(
    "fields", [{"summary_en": ""}, {"summary_zh": "  "}, {"change_kind": ""}], ids=["en", "zh", "kind"]
)
def test_a_material_version_without_kind_or_summary_is_not_published(fields: dict[str, str]) -> None:
    _policy(1, material=False, published=True)
    v2 = _policy(2, material=True, published=False, **fields)

    with pytest.raises(ValidationError):
        policy_publish(policy=v2, actor=SYSTEM)

    assert PolicyVersion.objects.get(version=2).published_at is None
    assert not NoticeCampaign.objects.exists()


# --- Sending ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_a_campaign_sends_in_batches_each_person_once_in_their_language(
    v2: PolicyVersion, settings: Any
) -> None:
    settings.QUANYI_CAMPAIGN_BATCH = 2
    holder = account_holder(1, language="en")
    people = [holder, patient(1), patient(2), patient(3, language="en"), account_holder(2)]
    backdate_subjects()
    campaign = policy_publish(policy=v2, actor=SYSTEM).campaigns.get()

    first = campaign_step(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert first == "choosing" and campaign.status == Status.SENDING and campaign.targeted == 5
    assert mail.outbox == []
    sizes = []
    while campaign.status == Status.SENDING:
        before = len(mail.outbox)
        campaign_step(campaign_id=campaign.pk, token=str(campaign.lease_token))
        campaign.refresh_from_db()
        sizes.append(len(mail.outbox) - before)

    assert sizes == [2, 2, 1]
    assert campaign.status == Status.DONE and campaign.finished_at is not None
    assert (campaign.targeted, campaign.sent, campaign.failed, campaign.interrupted) == (5, 5, 0, 0)
    assert campaign.percent == 100 and campaign.lease_token is None
    counts = recipients_of(mail.outbox)
    assert set(counts) == {
        "holder1@example.cn",
        "holder2@example.cn",
        *(f"patient{n}@example.cn" for n in (1, 2, 3)),
    }
    assert set(counts.values()) == {1}
    assert NoticeDelivery.objects.filter(campaign=campaign, status=Row.SENT).count() == len(people)
    english = next(m for m in mail.outbox if m.to == ["holder1@example.cn"])
    chinese = next(m for m in mail.outbox if m.to == ["holder2@example.cn"])
    assert english.subject == "Our privacy policy changes materially (version 2)"
    assert SUMMARY_EN in english.body and SUMMARY_ZH in chinese.body
    finished = AuditEntry.objects.get(action="campaign.finished", object_id=str(campaign.pk))
    assert finished.data == {"targeted": 5, "sent": 5, "failed": 0, "interrupted": 0}
    # A stray message after the end does nothing.
    assert campaign_step(campaign_id=campaign.pk) == "not mine"
    assert len(mail.outbox) == 5


@pytest.mark.django_db(databases=ALL)
def test_the_policy_email_links_to_the_policy_and_to_answering_and_is_not_marketing(
    v2: PolicyVersion,
) -> None:
    marketing = Purpose.objects.create(
        code="marketing_push",
        name_zh="营销",
        name_en="Marketing",
        description_zh="-",
        description_en="-",
        marketing=True,
    )
    holder = account_holder(1, language="en")
    consent_record(subject=holder, purpose=marketing, action="withdraw", channel="web", actor=SYSTEM)
    patient(1, language="en")
    backdate_subjects()

    run_campaign(policy_publish(policy=v2, actor=SYSTEM).campaigns.get())

    by_address = {m.to[0]: m for m in mail.outbox}
    to_holder, to_patient = by_address["holder1@example.cn"], by_address["patient1@example.cn"]
    policy_url = "http://127.0.0.1:8000" + reverse("consent:policy")
    assert policy_url in to_holder.body
    assert "http://127.0.0.1:8000/policy/diff/?a=1&b=2" in to_holder.body
    assert "Version 2 takes effect on" in to_holder.body
    assert "Sign in to accept or decline" in to_holder.body
    assert reverse("account_login") + "?next=%2Fpolicy%2F" in to_holder.body
    assert "Sign in to accept" not in to_patient.body
    assert "http://127.0.0.1:8000" + reverse("dsar:new") in to_patient.body
    # A service notice: sent despite the withdrawn marketing consent, with no unsubscribe link.
    assert "unsubscribe" not in to_holder.body.lower() and "List-Unsubscribe" not in to_holder.extra_headers


@pytest.mark.django_db(databases=ALL)
def test_people_without_an_address_at_send_time_fail_and_are_counted(v2: PolicyVersion) -> None:
    kept, gone = patient(1), patient(2)
    backdate_subjects()
    campaign = policy_publish(policy=v2, actor=SYSTEM).campaigns.get()
    campaign_step(campaign_id=campaign.pk)  # people chosen
    subject_erase(subject=gone, actor=SYSTEM)  # erased before their e-mail went out

    run_campaign(campaign)

    assert recipients_of(mail.outbox) == Counter({"patient1@example.cn": 1})
    assert (campaign.status, campaign.sent, campaign.failed) == (Status.DONE, 1, 1)
    failed = NoticeDelivery.objects.get(subject=gone)
    assert (failed.status, failed.last_error, failed.attempts) == (Row.FAILED, "no e-mail address", 0)
    assert NoticeDelivery.objects.get(subject=kept).status == Row.SENT


@pytest.mark.django_db(databases=ALL)
def test_a_dead_batch_leaves_only_its_email_in_flight_interrupted_and_staff_resend_it(
    v2: PolicyVersion, client: Client
) -> None:
    people = [patient(n) for n in range(5)]
    backdate_subjects()
    campaign = policy_publish(policy=v2, actor=SYSTEM).campaigns.get()
    campaign_step(campaign_id=campaign.pk)  # people chosen
    # A worker claimed three rows, committed the attempt of the first, and died.
    rows = list(NoticeDelivery.objects.filter(campaign=campaign).order_by("id")[:3])
    claimed_at = timezone.now() - timedelta(minutes=10)
    NoticeDelivery.objects.filter(pk__in=[r.pk for r in rows]).update(
        status=Row.SENDING, claimed_at=claimed_at
    )
    NoticeDelivery.objects.filter(pk=rows[0].pk).update(attempted_at=claimed_at, attempts=1)
    NoticeCampaign.objects.filter(pk=campaign.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1), lease_token=uuid.uuid4()
    )

    # A stranger's message (no token of the chain) takes over: the lease ran out.
    taken_over = campaign_step(campaign_id=campaign.pk, token=str(uuid.uuid4()))
    campaign.refresh_from_db()

    in_flight = DataSubject.objects.get(pk=rows[0].subject_id)
    address = in_flight.email
    assert taken_over == "done"
    # The one in flight is never sent again automatically; the other two claimed go out once.
    assert recipients_of(mail.outbox) == Counter({p.email: 1 for p in people if p.pk != in_flight.pk})
    assert (campaign.status, campaign.sent, campaign.interrupted) == (Status.DONE, 4, 1)
    assert NoticeDelivery.objects.get(pk=rows[0].pk).status == Row.INTERRUPTED
    entry = AuditEntry.objects.get(action="campaign.deliveries_interrupted")
    assert entry.data == {"count": 1}

    # Staff see it in the progress and resend it on purpose, after a confirmation.
    client.force_login(factories.staff(DPO))
    listing = client.get(
        admin_url("noticecampaign", "changelist"), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert '<td class="field-interrupted">1</td>' in listing
    assert '<progress value="100" max="100">' in listing
    ask = client.post(
        admin_url("noticecampaign", "changelist"),
        {"action": "resend_interrupted", "_selected_action": [campaign.pk]},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert ask.status_code == 200 and "may have received it" in ask.content.decode()
    assert NoticeDelivery.objects.get(pk=rows[0].pk).status == Row.INTERRUPTED  # not yet
    done = client.post(
        admin_url("noticecampaign", "changelist"),
        {"action": "resend_interrupted", "_selected_action": [campaign.pk], "apply": "1"},
    )
    assert done.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.interrupted) == (Status.SENDING, 0)
    assert AuditEntry.objects.get(action="campaign.resent").data == {
        "interrupted": 1,
        "failed": 0,
        "deliveries": None,
    }
    run_campaign(campaign)
    assert recipients_of(mail.outbox)[address] == 1
    assert (campaign.status, campaign.sent, campaign.interrupted) == (Status.DONE, 5, 0)


class RefusingBackend(locmem.EmailBackend):
    """A mail server that refuses unknown mailboxes (550), quoting the address as real ones do."""

    def send_messages(self, email_messages: Any) -> int:
        for message in email_messages:
            if any(a.startswith("refused") for a in message.to):
                raise smtplib.SMTPRecipientsRefused(
                    {message.to[0]: (550, f"5.1.1 <{message.to[0]}> unknown".encode())}
                )
        return int(super().send_messages(email_messages))


@pytest.mark.django_db(databases=ALL)
def test_a_refused_email_fails_without_keeping_the_address_and_staff_resend_that_one(
    v2: PolicyVersion, client: Client, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "tests.test_consent_campaigns.RefusingBackend"
    patient(1)
    refused = factories.subject(email="refused@example.cn", kind=DataSubject.Kind.PATIENT)
    backdate_subjects()
    campaign = policy_publish(policy=v2, actor=SYSTEM).campaigns.get()

    run_campaign(campaign)

    failed = NoticeDelivery.objects.get(subject=refused)
    assert (campaign.status, campaign.sent, campaign.failed) == (Status.DONE, 1, 1)
    assert (failed.status, failed.last_error, failed.attempts) == (Row.FAILED, "SMTPRecipientsRefused 550", 1)
    # The mailbox was fixed; the DPO resends that one e-mail from the list of deliveries.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.force_login(factories.staff(DPO))
    changelist = admin_url("noticedelivery", "changelist")
    listed = client.get(changelist, {"status__exact": "failed"}).content.decode()
    assert str(refused) in listed and "SMTPRecipientsRefused 550" in listed and "refused@" not in listed
    ask = client.post(
        changelist, {"action": "resend", "_selected_action": [failed.pk]}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert "Resend e-mails" in ask.content.decode()
    client.post(changelist, {"action": "resend", "_selected_action": [failed.pk], "apply": "1"})
    assert AuditEntry.objects.get(action="campaign.resent").data == {
        "interrupted": 0,
        "failed": 1,
        "deliveries": [failed.pk],
    }
    run_campaign(campaign)
    assert recipients_of(mail.outbox) == Counter({"patient1@example.cn": 1, "refused@example.cn": 1})
    assert (campaign.status, campaign.sent, campaign.failed, failed.attempts + 1) == (
        Status.DONE,
        2,
        0,
        NoticeDelivery.objects.get(pk=failed.pk).attempts,
    )


@pytest.mark.django_db(databases=ALL)
def test_the_sweep_requeues_only_campaigns_whose_lease_ran_out(v2: PolicyVersion, settings: Any) -> None:
    patient(1)
    backdate_subjects()
    campaign = policy_publish(policy=v2, actor=SYSTEM).campaigns.get()
    campaign_step(campaign_id=campaign.pk)  # holds the lease now, handed to its next step
    OutboxMessage.objects.all().delete()
    campaign.refresh_from_db()
    stale_token = str(campaign.lease_token)

    assert settings.CELERY_BEAT_SCHEDULE["notice-campaigns"]["task"] == "consent.tasks.campaigns_resume"
    assert campaigns_resume() == 0  # a live chain is left alone
    NoticeCampaign.objects.filter(pk=campaign.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert campaigns_resume() == 1
    assert OutboxMessage.objects.get().kwargs == {"campaign_id": campaign.pk}
    # The old chain's message lost the lease the moment someone else took it.
    campaign_step(campaign_id=campaign.pk)
    assert campaign_step(campaign_id=campaign.pk, token=stale_token) == "not mine"


@pytest.mark.django_db(databases=ALL)
def test_a_cancelled_campaign_sends_nothing_more_until_started_again(v2: PolicyVersion) -> None:
    for n in range(3):
        patient(n)
    backdate_subjects()
    campaign = policy_publish(policy=v2, actor=SYSTEM).campaigns.get()
    campaign_step(campaign_id=campaign.pk)

    campaigns.campaign_cancel(campaign=campaign, actor=SYSTEM)

    assert campaign_step(campaign_id=campaign.pk) == "not mine"
    assert mail.outbox == []
    assert NoticeDelivery.objects.filter(campaign=campaign, status=Row.PENDING).count() == 3
    campaigns.campaign_start(campaign=campaign, actor=SYSTEM)
    run_campaign(campaign)
    assert (campaign.status, campaign.sent, campaign.targeted) == (Status.DONE, 3, 3)
    assert set(recipients_of(mail.outbox).values()) == {1}


# --- A real worker killed half-way -----------------------------------------------------------------------

KILL_SUBJECTS = 24


def _in_flight() -> bool:
    return NoticeDelivery.objects.filter(status=Row.SENDING, attempted_at__isnull=False).exists()


def kill_while_sending(worker: Worker, *, tries: int = 200) -> bool:
    """SIGKILL the worker while an e-mail is in flight (its attempt committed, its result not):
    catch it in the act, freeze it (SIGSTOP), check, and kill it frozen. True when caught."""
    assert worker.proc is not None
    for _ in range(tries):
        wait_for(_in_flight, timeout=60, interval=0.001)
        worker.proc.send_signal(signal.SIGSTOP)
        # SIGSTOP freezes the worker, not its PostgreSQL backend: a COMMIT it sent just before
        # still completes. Let it land before judging what is in flight.
        time.sleep(0.3)
        try:
            caught = _in_flight()
        except OperationalError:  # frozen while holding SQLite's write lock: let it go on
            caught = False
        if caught:
            worker.kill()
            return True
        worker.proc.send_signal(signal.SIGCONT)
    worker.kill()
    return False


def mails_by_address(worker: Worker) -> Counter[str]:
    separator = "\n" + "-" * 79 + "\n"
    counts: Counter[str] = Counter()
    for text in worker.mails():
        for message in filter(None, (m.strip() for m in text.split(separator))):
            counts.update(re.findall(r"^To: (\S+)$", message, flags=re.MULTILINE))
    return counts


@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(300)
def test_a_campaign_killed_half_way_resumes_without_sending_anyone_twice(
    own_queue: str, tmp_path: Path
) -> None:
    _policy(1, material=False, published=True)
    v2 = _policy(2, material=True, published=False)
    people = [patient(n, language="en" if n % 3 == 0 else "zh-hans") for n in range(KILL_SUBJECTS)]
    backdate_subjects()
    # Small batches and a short lease, so the kill lands mid-campaign and the take-over is quick.
    env = {"QUANYI_CAMPAIGN_BATCH": "3", "QUANYI_CAMPAIGN_LEASE_SECONDS": "4"}
    first = Worker(tmp_path / "first.log", tmp_path / "mail", queue=own_queue, env=env)
    first.start()
    try:
        policy_publish(policy=v2, actor=SYSTEM)
        wait_for(
            lambda: NoticeDelivery.objects.filter(status=Row.SENT).count() >= 6, timeout=120, interval=0.05
        )
        caught = kill_while_sending(first)
    finally:
        first.stop()
    campaign = NoticeCampaign.objects.get(policy=v2)
    assert caught, "the worker must die with an e-mail in flight"
    assert campaign.status == Status.SENDING
    assert NoticeDelivery.objects.filter(status=Row.PENDING).exists(), "the kill must land mid-campaign"
    in_flight = set(
        NoticeDelivery.objects.filter(status=Row.SENDING, attempted_at__isnull=False).values_list(
            "subject_id", flat=True
        )
    )
    assert len(in_flight) == 1

    second = Worker(tmp_path / "second.log", tmp_path / "mail", queue=own_queue, env=env)
    second.start()
    try:
        last = [0.0]

        def done() -> bool:
            if time.monotonic() - last[0] > 2:  # what beat's notice-campaigns job does every minute
                last[0] = time.monotonic()
                campaigns_resume()
            return NoticeCampaign.objects.filter(pk=campaign.pk, status=Status.DONE).exists()

        wait_for(done, timeout=180, interval=0.2)
    finally:
        second.stop()

    campaign.refresh_from_db()
    rows = {d.subject_id: d for d in NoticeDelivery.objects.filter(campaign=campaign)}
    assert set(rows) == {p.pk for p in people} and campaign.targeted == KILL_SUBJECTS
    mails = mails_by_address(second)  # both workers wrote to the same folder
    assert set(mails) <= {p.email for p in people}
    assert max(mails.values()) == 1, "nobody gets the notice twice"
    interrupted = {pk for pk, d in rows.items() if d.status == Row.INTERRUPTED}
    assert interrupted == in_flight
    for p in people:
        if p.pk in interrupted:
            assert mails[p.email] <= 1  # it may or may not have left
        else:
            assert rows[p.pk].status == Row.SENT and mails[p.email] == 1, p.email
    assert (campaign.sent, campaign.interrupted, campaign.failed) == (KILL_SUBJECTS - 1, 1, 0)
    assert AuditEntry.objects.filter(action="campaign.deliveries_interrupted").count() == 1
    assert AuditEntry.objects.filter(action="campaign.finished").count() == 1

    # Staff see the interrupted e-mail: counted on the campaign, listed by person.
    client = Client()
    client.force_login(factories.staff(AUDITOR))
    page = client.get(admin_url("noticecampaign", "change", campaign.pk), HTTP_ACCEPT_LANGUAGE="en")
    assert "interrupted (1)" in page.content.decode()
    listing = client.get(
        admin_url("noticedelivery", "changelist"),
        {"campaign__id__exact": campaign.pk, "status__exact": "interrupted"},
    ).content.decode()
    (subject_id,) = interrupted
    assert str(DataSubject.objects.get(pk=subject_id)) in listing
    assert audit_verify().ok


# --- Security incidents --------------------------------------------------------------------------------

INCIDENT_TEXTS = {
    "title_zh": "预约系统数据泄露",
    "title_en": "Appointment system data leak",
    "what_happened_zh": "攻击者利用预约接口漏洞读取了部分预约记录。",
    "what_happened_en": "An attacker used a flaw in the booking interface to read some appointment records.",
    "impact_zh": "您的姓名和手机号可能被用于诈骗电话。",
    "impact_en": "Your name and phone number may be used for scam calls.",
    "measures_zh": "我们已修复漏洞，重置了接口密钥，并报警。",
    "measures_en": "We fixed the flaw, rotated the interface keys and reported it to the police.",
    "advice_zh": "请警惕自称本公司客服的来电，不要透露验证码。",
    "advice_en": "Beware of callers claiming to be our support; never give out verification codes.",
    "remedies_zh": "我们为受影响用户免费提供一年身份保护服务。",
    "remedies_en": "We offer affected users one year of identity protection free of charge.",
    "contact": "dpo@example.cn, 400-000-0000",
}


def incident(**fields: Any) -> SecurityIncident:
    values: dict[str, Any] = {
        **INCIDENT_TEXTS,
        "occurred_at": timezone.now() - timedelta(days=3),
        "discovered_at": timezone.now() - timedelta(days=2),
        "categories": ["contact", "account_registration"],
        "reported_to_regulator_at": timezone.now() - timedelta(days=1),
        "regulator": "市网信办",
    }
    values.update(fields)
    return incidents.incident_save(incident=SecurityIncident(**values), actor=SYSTEM)


def incident_form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        **INCIDENT_TEXTS,
        "occurred_at_0": "2026-03-01",
        "occurred_at_1": "09:00:00",
        "discovered_at_0": "2026-03-02",
        "discovered_at_1": "10:30:00",
        "categories": ["contact", "health"],
        "reported_to_regulator_at_0": "2026-03-03",
        "reported_to_regulator_at_1": "08:00:00",
        "regulator": "市网信办",
        "add_emails": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.django_db(databases=ALL)
def test_the_dpo_records_an_incident_adds_people_and_each_gets_every_part(client: Client) -> None:
    zh, en = patient(1), account_holder(1, language="en")
    bystander = patient(2)
    dpo = factories.staff(DPO)
    client.force_login(dpo)

    added = client.post(
        admin_url("securityincident", "add"),
        incident_form(add_emails=f"Patient1@example.cn\n{en.user.email}, {zh.email}"),  # type: ignore[union-attr]
    )

    assert added.status_code == 302, added.content.decode()[:3000]
    record = SecurityIncident.objects.get()
    assert (record.status, record.created_by_id, record.categories) == (
        "draft",
        dpo.pk,
        ["contact", "health"],
    )
    assert set(IncidentSubject.objects.values_list("subject_id", flat=True)) == {zh.pk, en.pk}
    assert AuditEntry.objects.get(action="incident.added").data["categories"] == ["contact", "health"]
    assert AuditEntry.objects.get(action="incident.subjects_added").data == {"added": 2, "affected": 2}

    confirm = client.post(
        admin_url("securityincident", "changelist"),
        {"action": "notify", "_selected_action": [record.pk]},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert "2 of 2 affected people have an e-mail address" in confirm.content.decode()
    assert not NoticeCampaign.objects.exists()
    client.post(
        admin_url("securityincident", "changelist"),
        {"action": "notify", "_selected_action": [record.pk], "apply": "1"},
    )
    campaign = NoticeCampaign.objects.get(incident=record)
    run_campaign(campaign)

    assert recipients_of(mail.outbox) == Counter({zh.email: 1, en.user.email: 1})  # type: ignore[union-attr]
    assert bystander.email not in recipients_of(mail.outbox)
    by_address = {m.to[0]: m for m in mail.outbox}
    english, chinese = by_address[en.user.email], by_address[zh.email]  # type: ignore[union-attr]
    assert (
        english.subject
        == f"Security incident affecting your personal information: {INCIDENT_TEXTS['title_en']} ({record})"
    )
    for part in ("what_happened", "impact", "measures", "advice", "remedies"):
        assert INCIDENT_TEXTS[f"{part}_en"] in english.body, part
        assert INCIDENT_TEXTS[f"{part}_zh"] in chinese.body, part
    for heading in (
        "1. What happened",
        "2. Personal information concerned",
        "3. Possible impact",
        "4. What we have done and will do",
        "5. What you can do to protect yourself",
        "6. Remedies for you",
        "7. How to contact us",
    ):
        assert heading in english.body
    assert "Contact details, Health information" in english.body
    assert INCIDENT_TEXTS["contact"] in english.body and INCIDENT_TEXTS["contact"] in chinese.body
    # Entered in UTC in the admin, told in the business time zone.
    assert "It happened on 2026-03-01 17:00 UTC+08:00; we discovered it on 2026-03-02 18:30 UTC+08:00." in (
        " ".join(english.body.split())
    )
    assert "We reported the incident to 市网信办 on 2026-03-03." in english.body
    record.refresh_from_db()
    assert record.status == "notified" and record.notified_at is not None
    assert AuditEntry.objects.filter(action="incident.notified", object_id=str(record.pk)).count() == 1

    # Someone added later is told when notices are sent again; nobody else hears twice.
    later = patient(3)
    incidents.incident_subjects_add(incident=record, subjects=[later], actor=SYSTEM)
    incidents.incident_notify(incident=record, actor=SYSTEM)
    run_campaign(campaign)
    assert recipients_of(mail.outbox) == Counter({zh.email: 1, en.user.email: 1, later.email: 1})  # type: ignore[union-attr]
    assert (campaign.targeted, campaign.sent) == (3, 3)


@pytest.mark.django_db(databases=ALL)
def test_a_draft_may_be_incomplete_but_its_notice_needs_every_part_and_people(client: Client) -> None:
    # Recorded as soon as it is known; advice and remedies follow from the investigation.
    draft = incident(advice_en="", remedies_zh="", categories=[])
    nobody = incident()
    incidents.incident_subjects_add(incident=draft, subjects=[patient(1)], actor=SYSTEM)

    with pytest.raises(ValidationError, match="advice_en, remedies_zh, categories"):
        incidents.incident_notify(incident=draft, actor=SYSTEM)
    with translation.override("en"), pytest.raises(ValidationError, match="Add the affected people"):
        incidents.incident_notify(incident=nobody, actor=SYSTEM)
    with pytest.raises(ValidationError, match="advice_en"):
        incidents.incident_announce(incident=draft, actor=SYSTEM)
    client.force_login(factories.staff(DPO))
    confirm = client.post(
        admin_url("securityincident", "changelist"),
        {"action": "notify", "_selected_action": [draft.pk]},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    refused = client.post(
        admin_url("securityincident", "changelist"),
        {"action": "notify", "_selected_action": [draft.pk], "apply": "1"},
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )

    assert "cannot be sent yet, fill in: advice_en, remedies_zh, categories" in confirm.content.decode()
    assert "Fill in every part of the notice first" in refused.content.decode()
    assert not NoticeCampaign.objects.exists()
    assert SecurityIncident.objects.filter(status="draft", announced_at__isnull=True).count() == 2


@pytest.mark.django_db(databases=ALL)
def test_the_public_page_shows_an_announced_incident_and_hides_drafts(client: Client) -> None:
    affected = patient(1, full_name="李四")
    announced = incident()
    incidents.incident_subjects_add(incident=announced, subjects=[affected], actor=SYSTEM)
    incidents.incident_announce(incident=announced, actor=SYSTEM)
    draft = incident(title_en="Still being investigated")

    listing = client.get(reverse("consent:incidents"), HTTP_ACCEPT_LANGUAGE="en")
    page = client.get(reverse("consent:incident", args=[announced.pk]), HTTP_ACCEPT_LANGUAGE="en")
    hidden = client.get(reverse("consent:incident", args=[draft.pk]))
    missing = client.get(reverse("consent:incident", args=[draft.pk + 100]))

    assert listing.status_code == page.status_code == 200
    assert reverse("consent:incident", args=[announced.pk]) in listing.content.decode()
    assert "Still being investigated" not in listing.content.decode()
    body = page.content.decode()
    for text in (
        INCIDENT_TEXTS["title_en"],
        INCIDENT_TEXTS["what_happened_en"],
        INCIDENT_TEXTS["impact_en"],
        INCIDENT_TEXTS["measures_en"],
        INCIDENT_TEXTS["advice_en"],
        INCIDENT_TEXTS["remedies_en"],
        INCIDENT_TEXTS["contact"],
        "Contact details",
    ):
        assert text in body
    assert "patient1@example.cn" not in body and "李四" not in body and str(affected) not in body
    assert hidden.status_code == missing.status_code == 404
    assert AuditEntry.objects.filter(action="incident.announced").count() == 1
    # Announcing again changes nothing; closing keeps the announcement public.
    incidents.incident_announce(incident=announced, actor=SYSTEM)
    incidents.incident_close(incident=announced, actor=SYSTEM)
    assert AuditEntry.objects.filter(action="incident.announced").count() == 1
    assert client.get(reverse("consent:incident", args=[announced.pk])).status_code == 200


ROLES = ["anonymous", "subject", AGENT, AUDITOR, DPO]


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize("role", ROLES)
def test_only_the_dpo_edits_incidents_and_everyone_reads_the_public_page(client: Client, role: str) -> None:
    record = incident()
    incidents.incident_announce(incident=record, actor=SYSTEM)
    if role == "subject":
        client.force_login(factories.UserFactory())
    elif role != "anonymous":
        client.force_login(factories.staff(role))

    public = client.get(reverse("consent:incident", args=[record.pk]))
    listing = client.get(admin_url("securityincident", "changelist"))
    detail = client.get(admin_url("securityincident", "change", record.pk))
    add = client.get(admin_url("securityincident", "add"))
    change = client.post(
        admin_url("securityincident", "change", record.pk), incident_form(title_en="Changed by " + role)
    )
    client.post(
        admin_url("securityincident", "changelist"), {"action": "close", "_selected_action": [record.pk]}
    )
    campaigns_page = client.get(admin_url("noticecampaign", "changelist"))

    assert public.status_code == 200
    record.refresh_from_db()
    if role in ("anonymous", "subject"):
        assert {listing.status_code, detail.status_code, add.status_code, change.status_code} == {302}
        assert campaigns_page.status_code == 302
    elif role in (AGENT, AUDITOR):
        assert listing.status_code == detail.status_code == campaigns_page.status_code == 200
        assert 'name="_save"' not in detail.content.decode() and "add_emails" not in detail.content.decode()
        assert add.status_code == change.status_code == 403
        assert 'value="close"' not in listing.content.decode()
    else:
        assert listing.status_code == detail.status_code == add.status_code == 200
        assert change.status_code == 302
    edited = role == DPO
    assert record.title_en == ("Changed by dpo" if edited else INCIDENT_TEXTS["title_en"])
    assert record.status == ("closed" if edited else "notified")
    assert AuditEntry.objects.filter(action="incident.changed").count() == int(edited)


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize("role", [AGENT, AUDITOR])
def test_only_the_dpo_resends_or_cancels_campaigns(client: Client, role: str, v2: PolicyVersion) -> None:
    patient(1)
    backdate_subjects()
    campaign = policy_publish(policy=v2, actor=SYSTEM).campaigns.get()
    client.force_login(factories.staff(role))

    listing = client.get(admin_url("noticecampaign", "changelist")).content.decode()
    cancel = client.post(
        admin_url("noticecampaign", "changelist"), {"action": "cancel", "_selected_action": [campaign.pk]}
    )

    assert 'value="cancel"' not in listing and 'value="resend_interrupted"' not in listing
    assert cancel.status_code in (200, 302)
    assert NoticeCampaign.objects.get(pk=campaign.pk).status == Status.QUEUED
    assert client.post(admin_url("noticecampaign", "change", campaign.pk), {}).status_code == 403


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"discovered_at_0": "2026-02-28"}, "discovered_at", "cannot be discovered before it happened"),
        ({"title_zh": ""}, "title_zh", "This field is required"),
        ({"categories": ["contact", "horoscope"]}, "categories", "Select a valid choice"),
        ({"regulator": ""}, "regulator", "Name the regulator"),
        (
            {"reported_to_regulator_at_0": "", "reported_to_regulator_at_1": ""},
            "reported_to_regulator_at",
            "Say when",
        ),
        (
            {"reported_to_regulator_at_0": "2026-03-01"},
            "reported_to_regulator_at",
            "before it was discovered",
        ),
        ({"add_emails": "not-an-address"}, "add_emails", "Not e-mail addresses: not-an-address"),
        (
            {"add_emails": "patient1@example.cn nobody@example.cn"},
            "add_emails",
            "Nobody has these addresses: nobody@example.cn",
        ),
        ({"discovered_at_0": ""}, "discovered_at", "This field is required"),
        ({"occurred_at_0": "yesterday"}, "occurred_at", "Enter a valid date"),
    ],
)
def test_bad_input_in_the_incident_form_is_refused_with_a_form_error(
    client: Client, changes: dict[str, Any], field: str, message: str
) -> None:
    patient(1)
    client.force_login(factories.staff(DPO))

    response = client.post(
        admin_url("securityincident", "add"), incident_form(**changes), HTTP_ACCEPT_LANGUAGE="en"
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field]), errors
    assert not SecurityIncident.objects.exists() and not IncidentSubject.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="incident.").exists()


@pytest.mark.django_db(databases=ALL)
def test_publishing_in_the_admin_asks_first_and_refuses_a_material_version_without_summary(
    client: Client,
) -> None:
    _policy(1, material=False, published=True)
    incomplete = _policy(2, material=True, published=False, summary_en="")
    patient(1)
    client.force_login(factories.staff(DPO))
    changelist = admin_url("policyversion", "changelist")

    ask = client.post(
        changelist, {"action": "publish", "_selected_action": [incomplete.pk]}, HTTP_ACCEPT_LANGUAGE="en"
    )
    refused = client.post(
        changelist,
        {"action": "publish", "_selected_action": [incomplete.pk], "apply": "1"},
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert "the notice is e-mailed to 1 person" in ask.content.decode()
    assert refused.status_code == 302
    assert PolicyVersion.objects.get(pk=incomplete.pk).published_at is None
    assert not NoticeCampaign.objects.exists()
    PolicyVersion.objects.filter(pk=incomplete.pk).update(summary_en=SUMMARY_EN)
    client.post(changelist, {"action": "publish", "_selected_action": [incomplete.pk], "apply": "1"})
    assert NoticeCampaign.objects.get().policy_id == incomplete.pk
    assert 'name="published_at"' not in client.get(admin_url("policyversion", "add")).content.decode()


# --- Marketing --------------------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_marketing_emails_carry_the_one_click_unsubscribe_link_and_need_consent(
    client: Client,
) -> None:
    _policy(1, material=False, published=True)
    marketing = Purpose.objects.create(
        code="marketing_push",
        name_zh="营销推送",
        name_en="Marketing messages",
        description_zh="-",
        description_en="-",
        marketing=True,
    )
    service = Purpose.objects.create(
        code="service",
        name_zh="服务",
        name_en="Service",
        description_zh="-",
        description_en="-",
    )
    agreed, refused = patient(1, language="en"), patient(2)
    consent_record(subject=agreed, purpose=marketing, action="grant", channel="web", actor=SYSTEM)

    sent = marketing_send(
        subject=agreed, purpose=marketing, title="Spring offer", body="Half-price cleaning."
    )
    not_sent = marketing_send(subject=refused, purpose=marketing, title="Spring offer", body="…")

    assert (sent, not_sent) == (True, False)
    (message,) = mail.outbox
    url = "http://127.0.0.1:8000" + reverse("consent:unsubscribe", args=[unsubscribe_token(agreed)])
    assert message.to == ["patient1@example.cn"] and url in message.body
    assert "Marketing messages" in message.body
    assert message.extra_headers == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    with pytest.raises(ValidationError):
        marketing_send(subject=agreed, purpose=service, title="x", body="y")
    # The link works: one click withdraws, and the next marketing e-mail is not sent.
    assert client.post(url.removeprefix("http://127.0.0.1:8000")).status_code == 200
    assert ConsentEvent.objects.filter(subject=agreed, action="withdraw").count() == 1
    assert marketing_send(subject=agreed, purpose=marketing, title="Again", body="…") is False
    assert len(mail.outbox) == 1
