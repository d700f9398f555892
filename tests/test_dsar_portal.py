"""The requester's portal pages and the e-mails they receive."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts.models import DataSubject, User
from accounts.roles import AGENT
from core.audit import SYSTEM, Actor
from core.models import AuditEntry, OutboxMessage
from dsar import notifications, services
from dsar.models import (
    DataSubjectRequest,
    EmailChallenge,
    OnBehalf,
    RefusalGround,
    Reminder,
    RequestMessage,
    RequestType,
    Status,
    VerificationDocument,
    VerificationMethod,
)
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)
SHANGHAI = ZoneInfo("Asia/Shanghai")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
Capture = Callable[..., Any]


def _at(y: int, m: int, d: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, tzinfo=SHANGHAI)


def _subject_user(**kwargs: Any) -> User:
    user = cast(User, factories.UserFactory(**kwargs))
    factories.subject(user=user)
    return user


def _reauthenticate(client: Client) -> None:
    response = client.post(reverse("account_reauthenticate"), {"password": factories.PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]


def _request_of(user: User, **kwargs: Any) -> DataSubjectRequest:
    subject = DataSubject.objects.get(user=user)
    defaults: dict[str, Any] = {"type": RequestType.ACCESS, "details": "我的病历"}
    defaults.update(kwargs)
    return services.request_submit(actor=Actor.of(user), subject=subject, user=user, **defaults)


def _public_request(email: str = "li.si@example.cn") -> DataSubjectRequest:
    subject = services.subject_for_public_request(email=email, name="李四")
    return services.request_submit(
        actor=Actor("anonymous"),
        type=RequestType.COPY,
        subject=subject,
        requester_name="李四",
        requester_email=email,
        requester_phone="13900139000",
        details="请复制我的牙科记录",
    )


def _code_in(message: mail.EmailMessage) -> str:
    found = re.search(r"^\s+(\d{6})\s*$", str(message.body), re.MULTILINE)
    assert found, message.body
    return found.group(1)


def _public_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "李四",
        "email": "li.si@example.cn",
        "phone": "139 0013 9000",
        "details": "请提供我在贵院的全部牙科就诊记录",
        "on_behalf": OnBehalf.SELF,
    }
    data.update(overrides)
    return data


def _submit_public(
    client: Client, capture: Capture, type: str = RequestType.ACCESS, **overrides: Any
) -> tuple[DataSubjectRequest, str]:
    before = len(mail.outbox)
    with capture(execute=True):
        response = client.post(reverse("dsar:submit", args=[type]), _public_form(**overrides))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert response["Location"] == reverse("dsar:code")
    dsr = DataSubjectRequest.objects.latest("pk")
    codes = [m for m in mail.outbox[before:] if "code" in m.subject.lower() or "验证码" in m.subject]
    assert len(codes) == 1
    return dsr, _code_in(codes[0])


def _state(dsr: DataSubjectRequest) -> tuple[Any, ...]:
    dsr.refresh_from_db()
    return (
        dsr.status,
        dsr.closed_at,
        dsr.messages.count(),
        dsr.documents.count(),
        AuditEntry.objects.filter(object_id=str(dsr.pk), object_type="dsar.datasubjectrequest").count(),
    )


# --- Choosing and submitting ------------------------------------------------------------------


def test_the_type_chooser_shows_every_type_with_its_explanation(client: Client) -> None:
    response = client.get(reverse("dsar:new"), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    html = response.content.decode()
    for value, label in RequestType.choices:
        assert reverse("dsar:submit", args=[value]) in html
        assert str(label) in html.replace("&#x27;", "'")
    assert "Close your account." in html
    assert "<script" not in html and "style=" not in html


def test_the_home_page_links_to_requests(client: Client) -> None:
    anonymous = client.get(reverse("portal:home")).content.decode()
    assert reverse("dsar:new") in anonymous and reverse("dsar:find") in anonymous

    client.force_login(_subject_user())
    signed_in = client.get(reverse("portal:home")).content.decode()
    assert reverse("dsar:mine") in signed_in


def test_an_unknown_type_is_not_found(client: Client) -> None:
    assert client.get(reverse("dsar:submit", args=["telepathy"])).status_code == 404


def test_a_recently_reauthenticated_subject_is_verified_at_submission_with_the_due_date(
    client: Client,
) -> None:
    user = _subject_user()
    client.force_login(user)
    with time_machine.travel(_at(2025, 9, 30), tick=False):
        _reauthenticate(client)
        page = client.get(reverse("dsar:submit", args=[RequestType.DELETION]), HTTP_ACCEPT_LANGUAGE="en")
        assert "your identity is verified as soon as you submit" in page.content.decode()

        response = client.post(
            reverse("dsar:submit", args=[RequestType.DELETION]),
            {"details": "删除我的账户数据", "on_behalf": OnBehalf.SELF},
        )
        dsr = DataSubjectRequest.objects.get(user=user)
        assert response.status_code == 302
        assert response["Location"] == reverse("dsar:detail", args=[dsr.pk])
        detail = client.get(response["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert dsr.status == Status.VERIFIED
    assert dsr.verification_method == VerificationMethod.REAUTHENTICATION
    assert dsr.due_date == date(2025, 10, 28)
    assert dsr.subject == DataSubject.objects.get(user=user)
    assert dsr.details == "删除我的账户数据"
    assert "2025-10-28" in detail
    assert "15 working days left" in detail
    kinds = set(
        OutboxMessage.objects.filter(kwargs__request_id=dsr.pk).values_list("kwargs__kind", flat=True)
    )
    assert kinds == {"received", "verified"}


def test_a_subject_who_did_not_reauthenticate_is_offered_it_or_submits_unverified(client: Client) -> None:
    user = _subject_user()
    client.force_login(user)
    url = reverse("dsar:submit", args=[RequestType.ACCESS])

    page = client.get(url)
    html = page.content.decode()
    assert reverse("account_reauthenticate") + "?next=" + url.replace("/", "%2F") in html

    client.post(url, {"details": "", "on_behalf": OnBehalf.SELF})

    dsr = DataSubjectRequest.objects.get(user=user)
    assert dsr.status == Status.AWAITING_VERIFICATION
    assert dsr.due_date is None and dsr.verified_at is None


def test_a_reauthentication_older_than_the_timeout_does_not_verify(client: Client, settings: Any) -> None:
    user = _subject_user()
    client.force_login(user)
    with time_machine.travel(_at(2025, 9, 30), tick=False):
        _reauthenticate(client)
    later = _at(2025, 9, 30) + timedelta(seconds=settings.ACCOUNT_REAUTHENTICATION_TIMEOUT + 1)
    with time_machine.travel(later, tick=False):
        client.post(
            reverse("dsar:submit", args=[RequestType.ACCESS]), {"details": "x", "on_behalf": OnBehalf.SELF}
        )

    assert DataSubjectRequest.objects.get(user=user).status == Status.AWAITING_VERIFICATION


def test_acting_for_a_child_needs_proof_and_is_never_verified_by_reauthentication(client: Client) -> None:
    user = _subject_user()
    client.force_login(user)
    _reauthenticate(client)
    url = reverse("dsar:submit", args=[RequestType.ACCESS])
    subjects = DataSubject.objects.count()
    form = {
        "details": "孩子的体检记录",
        "on_behalf": OnBehalf.GUARDIAN,
        "subject_name": "王小明",
        "relationship": "父亲",
    }

    without_proof = client.post(url, form)

    assert without_proof.status_code == 200
    assert without_proof.context["form"].errors["documents"]
    assert not DataSubjectRequest.objects.exists()
    assert DataSubject.objects.count() == subjects  # the child's record was rolled back too

    with_proof = client.post(url, {**form, "documents": [SimpleUploadedFile("birth.png", PNG)]})

    assert with_proof.status_code == 302
    dsr = DataSubjectRequest.objects.get(user=user)
    assert dsr.on_behalf == OnBehalf.GUARDIAN
    assert dsr.status == Status.AWAITING_VERIFICATION
    assert dsr.subject.full_name == "王小明"
    assert dsr.subject.user is None
    assert dsr.relationship == "父亲"
    assert list(dsr.documents.values_list("content_type", flat=True)) == ["image/png"]


def test_acting_for_someone_needs_their_name_and_the_relationship(client: Client) -> None:
    client.force_login(_subject_user())
    response = client.post(
        reverse("dsar:submit", args=[RequestType.ACCESS]),
        {"on_behalf": OnBehalf.RELATIVE, "documents": [SimpleUploadedFile("d.pdf", PDF)]},
    )

    errors = response.context["form"].errors
    assert set(errors) == {"subject_name", "relationship"}
    assert not DataSubjectRequest.objects.exists()


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (SimpleUploadedFile("id.png", b"just some text, not an image"), "Only PDF, JPEG and PNG"),
        (SimpleUploadedFile("id.pdf", b"%PDF-1.4\n/OpenAction << /JavaScript (app.alert(1)) >>"), "scripts"),
        (SimpleUploadedFile("big.png", PNG + b"\x00" * (5 * 1024 * 1024)), "5 MB"),
    ],
)
def test_bad_proof_files_are_refused_with_a_message(
    client: Client, django_capture_on_commit_callbacks: Capture, upload: SimpleUploadedFile, message: str
) -> None:
    response = client.post(
        reverse("dsar:submit", args=[RequestType.ACCESS]),
        _public_form(on_behalf=OnBehalf.AGENT, subject_name="王五", relationship="律师", documents=[upload]),
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["documents"])
    assert not DataSubjectRequest.objects.exists()
    assert not VerificationDocument.objects.exists()


def test_public_form_validates_lengths_and_addresses(client: Client) -> None:
    response = client.post(
        reverse("dsar:submit", args=[RequestType.ACCESS]),
        _public_form(name="名" * 201, email="not-an-address", details="x" * 5001, on_behalf="cousin"),
    )

    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"name", "email", "details", "on_behalf"}
    assert not DataSubjectRequest.objects.exists()


# --- Without an account: code, status page, coming back -----------------------------------------


def test_public_flow_submit_code_wrong_code_right_code_then_the_status_page(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    dsr, code = _submit_public(client, django_capture_on_commit_callbacks, RequestType.COPY)

    assert dsr.user is None and dsr.requester_email == "li.si@example.cn"
    assert dsr.subject.kind == DataSubject.Kind.CONTACT
    assert dsr.status == Status.AWAITING_VERIFICATION
    code_mail = mail.outbox[-1]
    assert code_mail.to == ["li.si@example.cn"]
    assert dsr.reference in code_mail.body
    for private in ("李四", "13900139000", "139 0013 9000", "牙科"):
        assert private not in f"{code_mail.body}{code_mail.subject}"
    # Not proved yet: the status page asks for proof.
    assert client.get(reverse("dsar:status", args=[dsr.reference])).status_code == 302

    wrong = client.post(reverse("dsar:code"), {"code": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 200
    assert wrong.context["form"].errors["code"]
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is None

    right = client.post(reverse("dsar:code"), {"code": code}, HTTP_ACCEPT_LANGUAGE="en")

    assert right.status_code == 302
    assert right["Location"] == reverse("dsar:status", args=[dsr.reference])
    page = client.get(right["Location"], HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    html = page.content.decode()
    assert dsr.reference in html
    assert "E-mail address confirmed" in html
    assert "请提供我在贵院的全部牙科就诊记录" in html
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is not None
    assert dsr.status == Status.AWAITING_VERIFICATION  # identity is still for staff to verify


def test_five_wrong_codes_lock_the_code(client: Client, django_capture_on_commit_callbacks: Capture) -> None:
    dsr, code = _submit_public(client, django_capture_on_commit_callbacks)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        client.post(reverse("dsar:code"), {"code": wrong}, HTTP_ACCEPT_LANGUAGE="en")

    locked = client.post(reverse("dsar:code"), {"code": code}, HTTP_ACCEPT_LANGUAGE="en")

    assert "Too many wrong codes" in " ".join(locked.context["form"].errors["code"])
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is None
    assert client.get(reverse("dsar:status", args=[dsr.reference])).status_code == 302


def test_an_expired_code_is_refused_and_a_resent_one_works(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    with time_machine.travel(_at(2026, 3, 2, 10), tick=False):
        dsr, old = _submit_public(client, django_capture_on_commit_callbacks)
    with time_machine.travel(_at(2026, 3, 2, 10, 11), tick=False):
        expired = client.post(reverse("dsar:code"), {"code": old}, HTTP_ACCEPT_LANGUAGE="en")
        assert "expired" in " ".join(expired.context["form"].errors["code"])

        with django_capture_on_commit_callbacks(execute=True):
            resent = client.post(reverse("dsar:resend"))
        assert resent["Location"] == reverse("dsar:code")
        new = _code_in(mail.outbox[-1])
        assert EmailChallenge.objects.filter(request=dsr).count() == 2

        ok = client.post(reverse("dsar:code"), {"code": new})

    assert ok.status_code == 302
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is not None


def test_coming_back_with_reference_and_email_sends_a_fresh_code(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    dsr = _public_request()
    other = Client()  # a new browser: nothing in its session

    assert other.get(reverse("dsar:status", args=[dsr.reference]))["Location"] == (
        reverse("dsar:find") + f"?reference={dsr.reference}"
    )
    with django_capture_on_commit_callbacks(execute=True):
        sent = other.post(
            reverse("dsar:find"), {"reference": dsr.reference.lower(), "email": "LI.SI@example.cn"}
        )
    assert sent["Location"] == reverse("dsar:code")
    code = _code_in(mail.outbox[-1])
    assert mail.outbox[-1].to == ["li.si@example.cn"]

    other.post(reverse("dsar:code"), {"code": code})

    assert other.get(reverse("dsar:status", args=[dsr.reference])).status_code == 200


@pytest.mark.parametrize("case", ["unknown reference", "wrong e-mail"])
def test_find_answers_the_same_whether_or_not_the_request_exists(
    client: Client, django_capture_on_commit_callbacks: Capture, case: str
) -> None:
    dsr = _public_request()
    real = Client()
    with django_capture_on_commit_callbacks(execute=True):
        real_answer = real.post(
            reverse("dsar:find"), {"reference": dsr.reference, "email": "li.si@example.cn"}
        )
    sent = len(mail.outbox)
    data = (
        {"reference": "DSR-2026-999999", "email": "li.si@example.cn"}
        if case == "unknown reference"
        else {"reference": dsr.reference, "email": "someone@example.cn"}
    )

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(reverse("dsar:find"), data)

    assert len(mail.outbox) == sent  # no code for a stranger
    assert (answer.status_code, answer["Location"]) == (real_answer.status_code, real_answer["Location"])
    real_page = real.get(reverse("dsar:code"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    fake_page = client.get(reverse("dsar:code"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert _without_tokens(real_page) == _without_tokens(fake_page)
    # Guessing behaves like a real wrong code, lock included.
    messages = [
        " ".join(
            client.post(reverse("dsar:code"), {"code": "123456"}, HTTP_ACCEPT_LANGUAGE="en")
            .context["form"]
            .errors["code"]
        )
        for _ in range(6)
    ]
    assert messages[0] == str(services.CodeResult(False, "That code is not right.").reason)
    assert "Too many wrong codes" in messages[-1]


def _without_tokens(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def test_the_code_page_without_a_pending_request_goes_to_find(client: Client) -> None:
    assert client.get(reverse("dsar:code"))["Location"] == reverse("dsar:find")
    assert client.post(reverse("dsar:resend"))["Location"] == reverse("dsar:find")


# --- Rate limits -------------------------------------------------------------------------------


def test_public_submissions_are_limited_per_ip(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    for i in range(10):
        _submit_public(client, django_capture_on_commit_callbacks, email=f"p{i}@example.cn")

    limited = client.post(
        reverse("dsar:submit", args=[RequestType.ACCESS]),
        _public_form(email="p10@example.cn"),
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert limited.status_code == 429
    assert "Too many attempts" in " ".join(limited.context["form"].non_field_errors())
    assert DataSubjectRequest.objects.count() == 10


def test_codes_are_limited_per_address(client: Client, django_capture_on_commit_callbacks: Capture) -> None:
    dsr = _public_request()
    data = {"reference": dsr.reference, "email": "li.si@example.cn"}
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            assert client.post(reverse("dsar:find"), data).status_code == 302
        limited = client.post(reverse("dsar:find"), data, HTTP_ACCEPT_LANGUAGE="en")
        resend = client.post(reverse("dsar:resend"), HTTP_ACCEPT_LANGUAGE="en")

    assert limited.status_code == 429
    assert "Too many attempts" in limited.content.decode()
    assert resend.status_code == 302  # the resend button shares the address's counter
    assert len(mail.outbox) == 5
    assert EmailChallenge.objects.filter(request=dsr).count() == 5


def test_code_checks_are_limited_per_ip(client: Client, django_capture_on_commit_callbacks: Capture) -> None:
    dsr, code = _submit_public(client, django_capture_on_commit_callbacks)
    for _ in range(30):
        client.post(reverse("dsar:code"), {"code": "999999" if code != "999999" else "888888"})
        EmailChallenge.objects.filter(request=dsr).update(attempts=0)  # only the IP limit is at stake

    limited = client.post(reverse("dsar:code"), {"code": code}, HTTP_ACCEPT_LANGUAGE="en")

    assert limited.status_code == 429
    assert "Too many attempts" in " ".join(limited.context["form"].non_field_errors())
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is None


# --- My requests and a request's page -------------------------------------------------------------


def test_my_requests_lists_only_mine_with_status_due_date_and_days_left(client: Client) -> None:
    user = _subject_user()
    with time_machine.travel(_at(2025, 9, 30), tick=False):
        verified = _request_of(user, reauthenticated=True)
    waiting = _request_of(user, type=RequestType.CORRECTION)
    someone_else = _request_of(_subject_user())
    client.force_login(user)

    with time_machine.travel(_at(2025, 10, 9), tick=False):
        page = client.get(reverse("dsar:mine"), HTTP_ACCEPT_LANGUAGE="en")

    html = page.content.decode()
    assert [row["request"] for row in page.context["rows"]] == [waiting, verified]
    assert someone_else.reference not in html
    assert "2025-10-28" in html
    assert "14 working days left" in html
    assert "awaiting identity verification" in html


def test_the_detail_page_shows_the_requester_timeline_but_no_notes_or_staff(client: Client) -> None:
    user = _subject_user()
    agent = factories.staff(AGENT, display_name="专员赵六", email="zhao.liu@quanyi.cn")
    dsr = _request_of(user)
    services.request_note(request=dsr, actor=Actor.of(agent), author=agent, body="内部备注：可疑")
    services.request_ask_info(request=dsr, actor=Actor.of(agent), author=agent, message="请上传身份证照片")
    client.force_login(user)

    page = client.get(reverse("dsar:detail", args=[dsr.pk]), HTTP_ACCEPT_LANGUAGE="en")

    html = page.content.decode()
    assert "请上传身份证照片" in html
    assert "We asked for more information" in html
    assert "内部备注" not in html
    assert "专员赵六" not in html and "zhao.liu" not in html
    assert page.context["info_form"] is not None
    assert reverse("dsar:provide_info", args=[dsr.pk]) in html


def test_providing_information_sends_the_request_back_to_verification(client: Client) -> None:
    user = _subject_user()
    agent = factories.staff(AGENT)
    dsr = _request_of(user)
    services.request_ask_info(request=dsr, actor=Actor.of(agent), author=agent, message="请上传身份证照片")
    client.force_login(user)

    empty = client.post(reverse("dsar:provide_info", args=[dsr.pk]), {"message": " "})
    assert empty.context["info_form"].errors
    response = client.post(
        reverse("dsar:provide_info", args=[dsr.pk]),
        {"message": "已上传", "documents": [SimpleUploadedFile("id.jpg", b"\xff\xd8\xff\xe0" + b"0" * 32)]},
    )

    assert response.status_code == 302
    dsr.refresh_from_db()
    assert dsr.status == Status.AWAITING_VERIFICATION
    assert dsr.messages.filter(kind=RequestMessage.Kind.FROM_REQUESTER).get().body == "已上传"
    assert dsr.documents.get().content_type == "image/jpeg"
    timeline = client.get(reverse("dsar:detail", args=[dsr.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "You sent information" in timeline


def test_a_completed_request_shows_the_answer_and_a_refused_one_the_ground(client: Client) -> None:
    user = _subject_user()
    agent = factories.staff(AGENT)
    done = _request_of(user, reauthenticated=True)
    services.request_complete(request=done, actor=Actor.of(agent), answer="附件为您的全部记录")
    refused = _request_of(user, reauthenticated=True)
    services.request_refuse(
        request=refused,
        actor=Actor.of(agent),
        ground=RefusalGround.TRADE_SECRET,
        explanation="涉及算法源代码",
    )
    client.force_login(user)

    answer = client.get(reverse("dsar:detail", args=[done.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    refusal = client.get(
        reverse("dsar:detail", args=[refused.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()

    assert "附件为您的全部记录" in answer
    assert "Withdraw this request" not in answer
    assert str(RefusalGround.TRADE_SECRET.label) in refusal
    assert "涉及算法源代码" in refusal


def test_the_status_link_of_a_signed_in_owner_opens_their_request(client: Client) -> None:
    user = _subject_user()
    dsr = _request_of(user)
    client.force_login(user)

    response = client.get(reverse("dsar:status", args=[dsr.reference]))

    assert response["Location"] == reverse("dsar:detail", args=[dsr.pk])


# --- Withdrawing ---------------------------------------------------------------------------------


def test_withdrawing_twice_is_harmless(client: Client) -> None:
    user = _subject_user()
    dsr = _request_of(user)
    client.force_login(user)
    url = reverse("dsar:withdraw", args=[dsr.pk])

    assert client.get(url).status_code == 200
    first = client.post(url)
    second = client.post(url)

    assert first.status_code == second.status_code == 302
    dsr.refresh_from_db()
    assert dsr.status == Status.WITHDRAWN
    assert AuditEntry.objects.filter(action="request.withdraw", object_id=str(dsr.pk)).count() == 1


def test_a_closed_request_cannot_be_withdrawn_and_says_why(client: Client) -> None:
    user = _subject_user()
    dsr = _request_of(user, reauthenticated=True)
    services.request_complete(request=dsr, actor=SYSTEM, answer="完成")
    before = _state(dsr)
    client.force_login(user)

    response = client.post(reverse("dsar:withdraw", args=[dsr.pk]), follow=True, HTTP_ACCEPT_LANGUAGE="en")

    assert "A request that is completed cannot be withdrawn." in response.content.decode()
    assert _state(dsr) == before


def test_a_requester_without_an_account_withdraws_after_the_code(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    dsr, code = _submit_public(client, django_capture_on_commit_callbacks)
    assert client.post(reverse("dsar:withdraw", args=[dsr.pk])).status_code == 404
    client.post(reverse("dsar:code"), {"code": code})

    response = client.post(reverse("dsar:withdraw", args=[dsr.pk]))

    assert response["Location"] == reverse("dsar:status", args=[dsr.reference])
    dsr.refresh_from_db()
    assert dsr.status == Status.WITHDRAWN


# --- Who may open what ------------------------------------------------------------------------------

ROLES = ["anonymous", "subject", "other subject", "agent"]


def _client_as(role: str, owner: User) -> Client:
    client = Client()
    if role == "subject":
        client.force_login(owner)
    elif role == "other subject":
        client.force_login(_subject_user())
    elif role == "agent":
        client.force_login(factories.staff(AGENT))
    return client


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "anonymous",
            {"mine": 302, "submit": 200, "detail": 302, "status": 302, "withdraw": 404, "info": 404},
        ),
        ("subject", {"mine": 200, "submit": 200, "detail": 200, "status": 302, "withdraw": 200, "info": 302}),
        (
            "other subject",
            {"mine": 200, "submit": 200, "detail": 404, "status": 302, "withdraw": 404, "info": 404},
        ),
        ("agent", {"mine": 403, "submit": 403, "detail": 404, "status": 302, "withdraw": 404, "info": 404}),
    ],
)
def test_page_permissions(role: str, expected: dict[str, int]) -> None:
    owner = _subject_user()
    dsr = _request_of(owner)
    services.request_ask_info(request=dsr, actor=SYSTEM, author=factories.staff(AGENT), message="请补充")
    client = _client_as(role, owner)
    before = _state(dsr)

    got = {
        "mine": client.get(reverse("dsar:mine")).status_code,
        "submit": client.get(reverse("dsar:submit", args=[RequestType.ACCESS])).status_code,
        "detail": client.get(reverse("dsar:detail", args=[dsr.pk])).status_code,
        "status": client.get(reverse("dsar:status", args=[dsr.reference])).status_code,
        "withdraw": client.get(reverse("dsar:withdraw", args=[dsr.pk])).status_code,
    }
    if expected["withdraw"] == 404:
        assert client.post(reverse("dsar:withdraw", args=[dsr.pk])).status_code == 404
    got["info"] = client.post(
        reverse("dsar:provide_info", args=[dsr.pk]), {"message": "我的补充"}
    ).status_code

    assert got == expected
    if role != "subject":
        assert _state(dsr) == before
    status_target = client.get(reverse("dsar:status", args=[dsr.reference]))["Location"]
    if role == "subject":
        assert status_target == reverse("dsar:detail", args=[dsr.pk])
    else:
        assert status_target.startswith(reverse("dsar:find"))


def test_staff_cannot_submit_as_a_subject(client: Client) -> None:
    client.force_login(factories.staff(AGENT))
    response = client.post(reverse("dsar:submit", args=[RequestType.ACCESS]), {"on_behalf": "self"})
    assert response.status_code == 403
    assert not DataSubjectRequest.objects.exists()


def test_numbers_too_big_for_an_id_are_not_found(client: Client) -> None:
    client.force_login(_subject_user())
    assert client.get(f"/requests/{2**70}/").status_code == 404
    assert client.post(f"/requests/{2**70}/withdraw/").status_code == 404


# --- E-mails ---------------------------------------------------------------------------------------


def _all_mail_text() -> str:
    return "\n".join(m.subject + "\n" + str(m.body) for m in mail.outbox)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_requester_emails_name_the_request_but_none_of_its_personal_data(language: str) -> None:
    dsr = _public_request()
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(language=language)
    dsr.refresh_from_db()
    services.request_ask_info(request=dsr, actor=SYSTEM, author=factories.staff(AGENT), message="请补充材料")
    dsr = services.request_verify(request=dsr, actor=SYSTEM, method=VerificationMethod.STAFF)

    for kind in ("received", "verified", "info_needed", "withdrawn"):
        notifications.send_requester_email(request_id=dsr.pk, kind=kind)
    notifications.send_code(request_id=dsr.pk, code="424242")

    text = _all_mail_text()
    assert len(mail.outbox) == 5
    assert text.count(dsr.reference) >= 5
    assert "http://127.0.0.1:8000" + reverse("dsar:status", args=[dsr.reference]) in text
    assert "424242" in mail.outbox[-1].body
    assert "424242" not in mail.outbox[-1].subject
    for private in ("李四", "13900139000", "牙科", "请补充材料"):
        assert private not in text
    assert "&amp;" not in text and "&#x27;" not in text


def test_the_verified_email_gives_the_due_date_and_says_when_it_is_provisional() -> None:
    dsr = _public_request()
    with time_machine.travel(_at(2025, 9, 30), tick=False):
        dsr = services.request_verify(request=dsr, actor=SYSTEM, method=VerificationMethod.STAFF)
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(language="en")
    notifications.send_requester_email(request_id=dsr.pk, kind="verified")
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(deadline_provisional=True)
    notifications.send_requester_email(request_id=dsr.pk, kind="verified")

    firm, provisional = mail.outbox
    assert "2025-10-28" in firm.body and "Asia/Shanghai" in firm.body
    assert "provisional" not in firm.body
    assert "provisional" in provisional.body


def test_the_completed_and_refused_emails() -> None:
    done, refused = _public_request(), _public_request("wang@example.cn")
    for dsr in (done, refused):
        DataSubjectRequest.objects.filter(pk=dsr.pk).update(language="en")
        services.request_verify(request=dsr, actor=SYSTEM, method=VerificationMethod.STAFF)
    services.request_complete(request=done, actor=SYSTEM, answer="全部记录见附件")
    services.request_refuse(request=refused, actor=SYSTEM, ground=RefusalGround.ABUSE, explanation="重复请求")

    notifications.send_requester_email(request_id=done.pk, kind="completed")
    notifications.send_requester_email(request_id=refused.pk, kind="refused")

    completed, refusal = mail.outbox
    assert done.reference in completed.subject and "全部记录见附件" not in completed.body
    with translation.override("en"):
        assert str(RefusalGround.ABUSE.label) in refusal.body
    assert "重复请求" in refusal.body


def test_staff_emails_link_to_the_admin() -> None:
    dsr = _public_request()
    agent = factories.staff(AGENT, email="agent@quanyi.cn")
    dsr = services.request_verify(request=dsr, actor=SYSTEM, method=VerificationMethod.STAFF)
    services.request_assign(request=dsr, actor=SYSTEM, assignee=agent)
    reminder = Reminder.objects.create(request=dsr, threshold=Reminder.Threshold.TWO)

    notifications.send_reminder(reminder_id=reminder.pk)
    notifications.send_deadline_moved(request_id=dsr.pk, old_due="2026-10-09")

    reminder_mail, moved_mail = mail.outbox
    admin_url = "http://127.0.0.1:8000" + reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk])
    assert reminder_mail.to == ["agent@quanyi.cn"]
    assert admin_url in reminder_mail.body and admin_url in moved_mail.body
    assert dsr.reference in reminder_mail.subject
    assert "2026-10-09" in moved_mail.body
    assert dsr.due_date is not None and dsr.due_date.isoformat() in moved_mail.body
    assert "李四" not in _all_mail_text()
