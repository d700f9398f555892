from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import translation

from core.audit import SYSTEM, Actor, audit_verify
from core.models import AuditEntry, OutboxMessage
from dsar import services
from dsar.models import DataSubjectRequest, Reminder, RequestType, Status, VerificationMethod
from dsar.workdays import workday_index
from tests import factories
from tests.conftest import ALL, Worker, wait_for

pytestmark = pytest.mark.django_db(databases=ALL)


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    # Messages are asserted in English; the site's default language is zh-hans.
    with translation.override("en"):
        yield


SHANGHAI = ZoneInfo("Asia/Shanghai")
AGENT = Actor("user", "1")


def _request(**kwargs: object) -> DataSubjectRequest:
    subject = factories.subject()
    defaults: dict[str, object] = {"type": RequestType.ACCESS, "requester_email": "wang@example.cn"}
    defaults.update(kwargs)
    return services.request_submit(actor=SYSTEM, subject=subject, **defaults)  # type: ignore[arg-type]


def _at(y: int, m: int, d: int, hour: int = 10) -> datetime:
    return datetime(y, m, d, hour, tzinfo=SHANGHAI)


def test_references_are_readable_unique_and_sequential_per_year() -> None:
    with time_machine.travel(_at(2026, 3, 2), tick=False):
        first, second = _request(), _request()
    with time_machine.travel(_at(2027, 1, 4), tick=False):
        third = _request()

    assert (first.reference, second.reference) == ("DSR-2026-000001", "DSR-2026-000002")
    assert third.reference == "DSR-2027-000001"


def test_submission_awaits_verification_and_queues_the_receipt_email() -> None:
    request = _request(details="请提供我的全部病历")

    assert request.status == Status.AWAITING_VERIFICATION
    assert request.due_date is None
    assert DataSubjectRequest.objects.get(pk=request.pk).details == "请提供我的全部病历"
    assert OutboxMessage.objects.filter(
        task_name="dsar.tasks.send_requester_email", kwargs={"request_id": request.pk, "kind": "received"}
    ).exists()
    entry = AuditEntry.objects.get(action="request.submitted", object_id=str(request.pk))
    assert "请提供" not in str(entry.data)


def test_a_recently_reauthenticated_subject_is_verified_at_submission_and_the_clock_starts() -> None:
    user = factories.UserFactory()
    subject = factories.subject(user=user)
    with time_machine.travel(_at(2025, 9, 30), tick=False):
        request = services.request_submit(
            actor=Actor.of(user), type=RequestType.DELETION, subject=subject, user=user, reauthenticated=True
        )

    assert request.status == Status.VERIFIED
    assert request.verification_method == VerificationMethod.REAUTHENTICATION
    assert request.due_date == date(2025, 10, 28)
    assert request.due_at == datetime(2025, 10, 28, 23, 59, 59, tzinfo=SHANGHAI)


def test_acting_for_someone_else_needs_proof() -> None:
    with pytest.raises(ValidationError) as exc:
        _request(on_behalf="guardian")
    assert "documents" in exc.value.message_dict
    assert not DataSubjectRequest.objects.exists()


def test_the_whole_lifecycle_is_audited_and_each_step_is_a_no_op_when_repeated() -> None:
    request = _request()
    with time_machine.travel(_at(2026, 2, 10), tick=False):
        request = services.request_verify(request=request, actor=AGENT, method=VerificationMethod.DOCUMENTS)
        again = services.request_verify(request=request, actor=AGENT, method=VerificationMethod.DOCUMENTS)
    assert request.due_date == again.due_date == date(2026, 3, 9)

    request = services.request_start(request=request, actor=AGENT)
    request = services.request_complete(request=request, actor=AGENT, answer="已导出，见附件")
    services.request_complete(request=request, actor=AGENT, answer="已导出，见附件")

    assert request.status == Status.COMPLETED
    assert DataSubjectRequest.objects.get(pk=request.pk).answer == "已导出，见附件"
    actions = list(
        AuditEntry.objects.filter(
            object_id=str(request.pk), object_type="dsar.datasubjectrequest"
        ).values_list("action", flat=True)
    )
    assert actions == ["request.submitted", "request.verify", "request.start", "request.complete"]
    assert audit_verify().ok


@pytest.mark.parametrize(
    ("steps", "action"),
    [
        ([], "start"),
        ([], "complete"),
        (["withdraw"], "verify"),
        (["verify", "complete"], "withdraw"),
        (["verify"], "ask_info"),
    ],
)
def test_illegal_transitions_are_refused_with_a_message_and_change_nothing(
    steps: list[str], action: str
) -> None:
    request = _request()
    for step in steps:
        request = _apply(request, step)
    before = (request.status, AuditEntry.objects.count())

    with pytest.raises(services.TransitionError) as exc, translation.override("en"):
        _apply(request, action)

    assert "cannot be" in exc.value.messages[0]
    request.refresh_from_db()
    assert (request.status, AuditEntry.objects.count()) == before


def _apply(request: DataSubjectRequest, action: str) -> DataSubjectRequest:
    match action:
        case "verify":
            return services.request_verify(request=request, actor=AGENT, method=VerificationMethod.STAFF)
        case "start":
            return services.request_start(request=request, actor=AGENT)
        case "complete":
            return services.request_complete(request=request, actor=AGENT, answer="done")
        case "withdraw":
            return services.request_withdraw(request=request, actor=AGENT)
        case "ask_info":
            return services.request_ask_info(
                request=request, actor=AGENT, author=factories.UserFactory(), message="please send ID"
            )
    raise AssertionError(action)


def test_refusal_needs_a_listed_ground_and_an_explanation() -> None:
    request = _request()
    with pytest.raises(ValidationError):
        services.request_refuse(request=request, actor=AGENT, ground="we_do_not_want_to", explanation="x")
    with pytest.raises(ValidationError):
        services.request_refuse(request=request, actor=AGENT, ground="trade_secret", explanation="  ")
    assert DataSubjectRequest.objects.get(pk=request.pk).status == Status.AWAITING_VERIFICATION

    refused = services.request_refuse(
        request=request, actor=AGENT, ground="trade_secret", explanation="该数据属于第三方商业秘密"
    )
    assert refused.status == Status.REFUSED
    assert refused.refusal_ground == "trade_secret"
    assert DataSubjectRequest.objects.get(pk=request.pk).refusal_explanation == "该数据属于第三方商业秘密"


def test_asking_for_information_and_getting_it_returns_the_request_to_verification() -> None:
    request = _request()
    staff = factories.staff("agent")
    request = services.request_ask_info(
        request=request, actor=Actor.of(staff), author=staff, message="请上传身份证"
    )
    assert request.status == Status.INFO_REQUESTED
    with pytest.raises(ValidationError):
        services.request_provide_info(request=request, actor=SYSTEM, message=" ")

    request = services.request_provide_info(request=request, actor=SYSTEM, message="已上传")

    assert request.status == Status.AWAITING_VERIFICATION
    assert [m.kind for m in request.messages.all()] == ["to_requester", "from_requester"]


def test_email_code_expires_after_ten_minutes_and_locks_after_five_tries() -> None:
    request = _request()
    with time_machine.travel(_at(2026, 3, 2, 10), tick=False):
        code = services.challenge_issue(request=request)
    with time_machine.travel(_at(2026, 3, 2, 10) + timedelta(minutes=11), tick=False):
        assert services.challenge_verify(request=request, code=code).ok is False

    with time_machine.travel(_at(2026, 3, 3, 10), tick=False), translation.override("en"):
        code = services.challenge_issue(request=request)
        wrong = "000000" if code != "000000" else "111111"
        results = [services.challenge_verify(request=request, code=wrong) for _ in range(5)]
        assert not any(r.ok for r in results)
        locked = services.challenge_verify(request=request, code=code)
    assert locked.ok is False and "Too many" in locked.reason

    with time_machine.travel(_at(2026, 3, 4, 10), tick=False):
        code = services.challenge_issue(request=request)
        assert services.challenge_verify(request=request, code=code).ok is True
    assert DataSubjectRequest.objects.get(pk=request.pk).contact_verified_at is not None


def test_document_types_are_checked_from_the_content_not_the_name() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    png = SimpleUploadedFile("id.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    fake = SimpleUploadedFile("id.png", b"MZ this is really an executable")
    scripted = SimpleUploadedFile("id.pdf", b"%PDF-1.7\n/OpenAction << /JavaScript (app.alert(1)) >>")
    big = SimpleUploadedFile("id.pdf", b"%PDF-1.7\n" + b"0" * (5 * 1024 * 1024))

    assert services.document_check(png)[1] == "image/png"
    for bad in (fake, scripted, big):
        with pytest.raises(ValidationError):
            services.document_check(bad)


def _clock_running(verified_on: date, *, assignee: object = None) -> DataSubjectRequest:
    request = _request()
    with time_machine.travel(
        datetime.combine(verified_on, datetime.min.time(), SHANGHAI) + timedelta(hours=10), tick=False
    ):
        request = services.request_verify(request=request, actor=AGENT, method=VerificationMethod.STAFF)
    if assignee is not None:
        request = services.request_assign(request=request, actor=AGENT, assignee=assignee)  # type: ignore[arg-type]
    return request


def test_reminders_fire_at_5_2_1_working_days_left_and_when_overdue_each_once() -> None:
    agent = factories.staff("agent")
    request = _clock_running(date(2025, 9, 30), assignee=agent)  # due Tue 2025-10-28
    seen: list[str] = []
    for day in [
        date(2025, 10, 20),
        date(2025, 10, 21),
        date(2025, 10, 24),
        date(2025, 10, 27),
        date(2025, 10, 27),
        date(2025, 10, 28),
        date(2025, 10, 29),
        date(2025, 10, 30),
    ]:
        with time_machine.travel(_at(day.year, day.month, day.day, 9), tick=False):
            services.reminders_sweep()
        seen = list(
            Reminder.objects.filter(request=request).order_by("pk").values_list("threshold", flat=True)
        )
    # Oct 20: 6 left (none); Oct 21: 5; Oct 24: 2; Oct 27: 1; Oct 29: overdue.
    assert seen == ["5", "2", "1", "overdue"]
    assert OutboxMessage.objects.filter(task_name="dsar.tasks.send_reminder").count() == 4


def test_the_sweep_reads_only_requests_due_soon() -> None:
    far = _clock_running(date(2025, 9, 1))  # due in September, long passed by December... closed below
    services.request_complete(request=far, actor=AGENT, answer="done")
    soon = _clock_running(date(2025, 11, 3))
    later = _clock_running(date(2025, 11, 20))

    with time_machine.travel(_at(2025, 11, 20, 9), tick=False):
        services.reminders_sweep()

    assert set(Reminder.objects.values_list("request_id", flat=True)) == {soon.pk}
    assert later.pk not in set(Reminder.objects.values_list("request_id", flat=True))


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_two_sweeps_running_at_the_same_time_send_each_reminder_once() -> None:
    requests = [_clock_running(date(2025, 9, 30)) for _ in range(12)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait()
            with time_machine.travel(_at(2025, 10, 21, 9), tick=False):
                services.reminders_sweep(batch=5)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert Reminder.objects.count() == len(requests)
    assert OutboxMessage.objects.filter(task_name="dsar.tasks.send_reminder").count() == len(requests)


def test_loading_the_missing_year_recomputes_provisional_deadlines_and_tells_the_assignee() -> None:
    agent = factories.staff("agent")
    request = _clock_running(date(2026, 12, 15), assignee=agent)
    assert (request.due_date, request.deadline_provisional, request.deadline_missing_year) == (
        date(2027, 1, 5),
        True,
        2027,
    )

    services.calendar_import(actor=SYSTEM, payload={"year": 2027, "holidays": {"2027-01-01": "元旦"}})
    moved = services.deadlines_recompute(year=2027)

    request.refresh_from_db()
    assert moved == [request.pk]
    assert (request.due_date, request.deadline_provisional) == (date(2027, 1, 6), False)
    assert OutboxMessage.objects.filter(
        task_name="dsar.tasks.send_deadline_moved", kwargs={"request_id": request.pk, "old_due": "2027-01-05"}
    ).exists()
    assert OutboxMessage.objects.filter(
        task_name="dsar.tasks.recompute_deadlines", kwargs={"year": 2027}
    ).exists()
    assert services.deadlines_recompute(year=2027) == []  # idempotent
    assert workday_index().deadline(date(2026, 12, 15)).provisional is False


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, databases=ALL)
def test_reminders_are_mailed_once_when_the_job_runs_twice_at_once_on_real_workers(
    celery_worker: Worker, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from config.celery import app

    agent = factories.staff("agent")
    dpo = factories.staff("dpo")
    # Real "now": one request overdue, one with 1 working day left, one far away.
    index = workday_index()
    today = datetime.now(SHANGHAI).date()
    overdue = _clock_running(today - timedelta(days=40), assignee=agent)
    one_left_due = index.add_working_days(today, 1)
    one_left = _clock_running(today - timedelta(days=30), assignee=agent)
    DataSubjectRequest.objects.filter(pk=one_left.pk).update(
        due_date=one_left_due, due_at=datetime.combine(one_left_due, datetime.max.time(), SHANGHAI)
    )
    far = _clock_running(today, assignee=agent)

    second = Worker(tmp_path / "second.log", celery_worker.mail_dir)
    second.start()
    try:
        app.loader.import_default_modules()
        task = app.tasks["dsar.tasks.reminders_sweep"]
        task.apply_async()
        task.apply_async()
        wait_for(
            lambda: OutboxMessage.objects.filter(task_name="dsar.tasks.send_reminder").count() == 2,
            timeout=60,
        )
        wait_for(lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists(), timeout=60)
    finally:
        second.stop()

    assert set(Reminder.objects.values_list("request_id", "threshold")) == {
        (overdue.pk, "overdue"),
        (one_left.pk, "1"),
    }
    assert not Reminder.objects.filter(request=far).exists()
    # Staff reminders only (the requesters' own e-mails mention the references too).
    mails = [m for m in celery_worker.mails() if agent.email in m]
    assert sum(overdue.reference in m for m in mails) == 1
    assert sum(one_left.reference in m for m in mails) == 1
    overdue_mail = next(m for m in mails if overdue.reference in m)
    assert agent.email in overdue_mail and dpo.email in overdue_mail


def _objstm_pdf(objects: bytes, *, compress: bool = True) -> bytes:
    body = zlib.compress(objects) if compress else objects
    filters = b" /Filter /FlateDecode" if compress else b""
    return (
        b"%PDF-1.7\n1 0 obj\n<< /Type /ObjStm /N 1 /First 4"
        + filters
        + b" /Length %d >>\nstream\n" % len(body)
        + body
        + b"\nendstream\nendobj\n%%EOF\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"%PDF-1.7\n<< /OpenAction << /S /J#61vaScript /JS (app.alert(1)) >> >>", "active content"),
        (b"%PDF-1.7\n<< /OpenAction << /S /Launch /F (cmd.exe) >> >>", "active content"),
        (b"%PDF-1.7\n<< /Names << /EmbeddedFiles 3 0 R >> >>", "active content"),
        (_objstm_pdf(b"2 0 << /S /JavaScript /JS (app.alert(1)) >>"), "active content"),
        (_objstm_pdf(b"2 0 << /AcroForm << /XFA 5 0 R >> >>", compress=False), "active content"),
        # A "PDF bomb": 64 MB of zeros in a few kilobytes; refused, never inflated whole.
        (_objstm_pdf(b"\0" * (64 * 1024 * 1024)), "too large to check"),
        # A zip bomb named like a PDF is not a PDF: refused by its content, never unpacked.
        (b"PK\x03\x04" + zlib.compress(b"\0" * (8 * 1024 * 1024)), "Only PDF, JPEG and PNG"),
        (b"%PDF-1.7\n" + b"0" * (5 * 1024 * 1024), "at most 5 MB"),
    ],
)
def test_risky_documents_are_refused_with_a_message(content: bytes, message: str) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    with translation.override("en"), pytest.raises(ValidationError) as refused:
        services.document_check(SimpleUploadedFile("proof.pdf", content))

    assert message in str(refused.value)


def test_an_ordinary_pdf_with_compressed_objects_is_accepted() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    pdf = _objstm_pdf(b"2 0 << /Type /Page /MediaBox [0 0 595 842] /Contents 3 0 R >>")

    name, content_type, data = services.document_check(SimpleUploadedFile("scan.pdf", pdf))

    assert (name, content_type, data) == ("scan.pdf", "application/pdf", pdf)
