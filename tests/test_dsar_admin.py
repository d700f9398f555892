"""The staff triage admin for data-subject requests: permissions, actions, filters, search,
query counts and the working-day calendar. Dates are real: National Day 2025 (1–8 October off,
28 September and 11 October worked) and Spring Festival 2026 (15–23 February off, 14 and 28
February worked); 2027's schedule is not in the seeded calendar."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from core import crypto
from core.audit import SYSTEM, audit_trail
from core.models import AuditEntry
from core.paginator import CappedCountPaginator
from dsar import services
from dsar.models import CalendarDay, DataSubjectRequest, RequestMessage, Status
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
CHANGELIST = "admin:dsar_datasubjectrequest_changelist"


def at(y: int, m: int, d: int, hour: int = 10) -> datetime:
    return datetime(y, m, d, hour, tzinfo=SHANGHAI)


def submit(
    *,
    subject: DataSubject | None = None,
    user: User | None = None,
    email: str = "patient@example.cn",
    phone: str = "13712345678",
    **kwargs: Any,
) -> DataSubjectRequest:
    return services.request_submit(
        actor=SYSTEM,
        type=kwargs.pop("type", "access"),
        subject=subject or factories.subject(user=user, email=email, phone=phone),
        user=user,
        requester_name="王五",
        requester_email=email,
        requester_phone=phone,
        details="请提供我的全部就诊记录。",
        **kwargs,
    )


def verified(**kwargs: Any) -> DataSubjectRequest:
    return services.request_verify(request=submit(**kwargs), actor=SYSTEM, method="staff")


def act_url(obj: DataSubjectRequest, action: str) -> str:
    return reverse("admin:dsar_datasubjectrequest_act", args=[obj.pk, action])


def change_url(obj: DataSubjectRequest) -> str:
    return reverse("admin:dsar_datasubjectrequest_change", args=[obj.pk])


def snapshot(obj: DataSubjectRequest) -> tuple[Any, ...]:
    fresh = DataSubjectRequest.objects.get(pk=obj.pk)
    return (
        fresh.status,
        fresh.assignee_id,
        fresh.due_date,
        AuditEntry.objects.count(),
        RequestMessage.objects.filter(request=obj).count(),
    )


def texts(response: HttpResponse) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]  # type: ignore[attr-defined]


def login(client: Client, role: str, *, owner: User | None = None) -> User | None:
    if role == "anonymous":
        return None
    if role == "subject":
        user = owner or factories.UserFactory()
    else:
        user = factories.staff(role)
    client.force_login(user)
    return user


def redirected_to_login(response: HttpResponse) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/admin/login/")


ROLES = ["anonymous", "subject", AGENT, DPO, AUDITOR]


# --- Permission matrix -------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionCase:
    state: str  # "awaiting" or "verified"
    data: dict[str, Any]
    audit: str


ACTION_CASES = {
    "assign_me": ActionCase("awaiting", {}, "request.assigned"),
    "assign": ActionCase("awaiting", {"assignee": "<agent>"}, "request.assigned"),
    "verify": ActionCase("awaiting", {"method": "documents"}, "request.verify"),
    "ask_info": ActionCase("awaiting", {"message": "请上传身份证正反面。"}, "request.ask_info"),
    "start": ActionCase("verified", {}, "request.start"),
    "complete": ActionCase("verified", {"answer": "附件是您的就诊记录。"}, "request.complete"),
    "refuse": ActionCase(
        "awaiting", {"ground": "abuse", "explanation": "同一请求一天内提交了四十次。"}, "request.refuse"
    ),
    "note": ActionCase("awaiting", {"body": "已电话联系申请人。"}, "request.note_added"),
}
MAY_ACT = {
    AGENT: set(ACTION_CASES) - {"assign"},
    DPO: set(ACTION_CASES),
    AUDITOR: set(),
}


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("action", list(ACTION_CASES))
@pytest.mark.parametrize("role", ROLES)
def test_action_urls_permission_matrix(client: Client, role: str, action: str, method: str) -> None:
    case = ACTION_CASES[action]
    owner = factories.UserFactory()
    obj = (
        verified(user=owner, email=owner.email)
        if case.state == "verified"
        else submit(user=owner, email=owner.email)
    )
    other_agent = factories.staff(AGENT)
    data = {k: (other_agent.pk if v == "<agent>" else v) for k, v in case.data.items()}
    user = login(client, role, owner=owner)
    before = snapshot(obj)
    last_seq = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()

    response = (
        client.get(act_url(obj, action)) if method == "get" else client.post(act_url(obj, action), data)
    )

    allowed = action in MAY_ACT.get(role, set())
    if role in ("anonymous", "subject"):
        assert redirected_to_login(response)
    elif not allowed:
        assert response.status_code == 403
    elif method == "get":
        assert response.status_code == 200
        assert b'method="post"' in response.content
    else:
        assert response.status_code == 302, texts(response)
        assert response["Location"] == change_url(obj)
    if method == "get" or not allowed:
        assert snapshot(obj) == before  # nothing changed: no state, no audit entry, no message
    else:
        assert user is not None
        new = list(AuditEntry.objects.filter(seq__gt=last_seq).order_by("seq"))
        assert [(e.action, e.actor_id, e.object_id) for e in new] == [(case.audit, str(user.pk), str(obj.pk))]


READ_PAGES = ["changelist", "change", "overview", "document", "calendar_day"]
READ_OK = {
    AGENT: set(READ_PAGES),
    DPO: set(READ_PAGES),
    AUDITOR: set(READ_PAGES) - {"document"},
}


@pytest.mark.parametrize("page", READ_PAGES)
@pytest.mark.parametrize("role", ROLES)
def test_read_pages_permission_matrix(client: Client, role: str, page: str) -> None:
    owner = factories.UserFactory()
    obj = submit(user=owner, email=owner.email)
    doc = services.document_add(
        request=obj, actor=SYSTEM, upload=SimpleUploadedFile("身份证.png", PNG, content_type="image/png")
    )
    url = {
        "changelist": reverse(CHANGELIST),
        "change": change_url(obj),
        "overview": reverse("admin:dsar_datasubjectrequest_overview"),
        "document": reverse("admin:dsar_datasubjectrequest_document", args=[obj.pk, doc.pk]),
        "calendar_day": reverse("admin:dsar_calendarday_change", args=["2025-10-01"]),
    }[page]
    login(client, role, owner=owner)

    response = client.get(url)

    if role in ("anonymous", "subject"):
        assert redirected_to_login(response)
    elif page in READ_OK[role]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
    opened = AuditEntry.objects.filter(action="request.document_viewed", object_id=str(obj.pk)).count()
    assert opened == (1 if page == "document" and response.status_code == 200 else 0)


@pytest.mark.parametrize("role", ROLES)
def test_only_the_dpo_edits_the_calendar(client: Client, role: str) -> None:
    url = reverse("admin:dsar_calendarday_change", args=["2025-10-08"])
    login(client, role)
    before = AuditEntry.objects.count()

    response = client.post(url, {"kind": "holiday", "name": "国庆节（补）"})

    day = CalendarDay.objects.get(date=date(2025, 10, 8))
    if role == DPO:
        assert response.status_code == 302
        assert day.name == "国庆节（补）"
        entry = AuditEntry.objects.get(action="calendar.day_saved")
        assert (entry.object_id, entry.data) == ("2025-10-08", {"kind": "holiday"})
    else:
        assert response.status_code == 403 if role in (AGENT, AUDITOR) else redirected_to_login(response)
        assert day.name == "国庆节"
        assert AuditEntry.objects.count() == before


def test_auditors_see_no_action_buttons_and_no_bulk_actions(client: Client) -> None:
    obj = submit()
    login(client, AUDITOR)

    page = client.get(change_url(obj)).content.decode()
    listing = client.get(reverse(CHANGELIST))

    assert "/act/" not in page
    assert "dsar-action" not in page
    assert listing.context["action_form"] is None
    assert "dsar-documents" not in page  # no view_verification


# --- The happy path through the action URLs ----------------------------------------------------


def test_agent_takes_verifies_starts_and_completes_a_request(client: Client, time_machine: Any) -> None:
    time_machine.move_to(at(2026, 2, 12), tick=False)  # the Thursday before Spring Festival
    obj = submit()
    agent = login(client, AGENT)
    assert agent is not None

    assert client.post(act_url(obj, "assign_me")).status_code == 302
    obj.refresh_from_db()
    assert obj.assignee_id == agent.pk

    page = client.get(change_url(obj)).content.decode()
    for offered in ("verify", "ask_info", "refuse", "note"):
        assert act_url(obj, offered) in page
    for hidden in ("assign_me", "assign", "start", "complete"):
        assert act_url(obj, hidden) not in page

    assert client.post(act_url(obj, "verify"), {"method": "documents"}).status_code == 302
    obj.refresh_from_db()
    assert obj.status == Status.VERIFIED
    assert obj.verified_by_id == agent.pk
    assert obj.verification_method == "documents"
    # 15 working days after 12 February 2026, skipping 15–23 February and counting Saturday 14
    # and Saturday 28 February (调休).
    assert obj.due_date == date(2026, 3, 11)
    assert obj.due_at == datetime(2026, 3, 11, 23, 59, 59, tzinfo=SHANGHAI)
    assert obj.deadline_provisional is False

    assert client.post(act_url(obj, "start")).status_code == 302
    obj.refresh_from_db()
    assert obj.status == Status.IN_PROGRESS

    response = client.post(act_url(obj, "complete"), {"answer": "附件是您的全部就诊记录。"})
    assert response.status_code == 302
    obj.refresh_from_db()
    assert obj.status == Status.COMPLETED
    assert obj.answer == "附件是您的全部就诊记录。"
    assert obj.closed_at == at(2026, 2, 12)

    trail = list(audit_trail(obj).order_by("seq"))
    assert [(e.action, e.actor_type, e.actor_id) for e in trail] == [
        ("request.submitted", "system", ""),
        ("request.assigned", "user", str(agent.pk)),
        ("request.verify", "user", str(agent.pk)),
        ("request.start", "user", str(agent.pk)),
        ("request.complete", "user", str(agent.pk)),
    ]
    assert trail[2].data["due"] == "2026-03-11"
    assert trail[4].data["on_time"] is True

    # The timeline shows the same, oldest first; a closed request offers only a note.
    page = client.get(change_url(obj)).content.decode()
    positions = [page.index(f"<code>{e.action}</code>") for e in trail]
    assert positions == sorted(positions)
    assert act_url(obj, "note") in page
    for gone in ("verify", "start", "complete", "refuse", "assign_me"):
        assert act_url(obj, gone) not in page


@pytest.mark.parametrize(
    "data",
    [
        {"ground": "", "explanation": "重复提交。"},
        {"ground": "abuse", "explanation": "   "},
        {"ground": "not-a-ground", "explanation": "重复提交。"},
    ],
)
def test_refusing_without_a_ground_or_an_explanation_changes_nothing(
    client: Client, data: dict[str, str]
) -> None:
    obj = submit()
    login(client, AGENT)
    before = snapshot(obj)

    response = client.post(act_url(obj, "refuse"), data, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    assert "Please correct the errors below." in texts(response)
    assert response.context["form"].errors
    assert snapshot(obj) == before


def test_an_action_the_status_does_not_allow_is_an_error_message_not_a_500(client: Client) -> None:
    obj = submit()  # awaiting verification: cannot be completed
    login(client, AGENT)
    before = snapshot(obj)

    response = client.post(act_url(obj, "complete"), {"answer": "done"}, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 302
    assert response["Location"] == change_url(obj)
    assert any("not possible" in t for t in texts(response))
    assert snapshot(obj) == before


def test_a_transition_lost_to_a_colleague_becomes_an_error_message(client: Client, monkeypatch: Any) -> None:
    obj = verified()
    login(client, AGENT)
    # Another agent completes it between the page's check and the service's conditional UPDATE.
    real = services.allowed_actions
    monkeypatch.setattr(services, "allowed_actions", lambda r: [*real(r), "start"])
    services.request_complete(request=obj, actor=SYSTEM, answer="已答复。")
    before = snapshot(obj)

    response = client.post(act_url(obj, "start"), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 302
    assert any("cannot be started" in t for t in texts(response))
    assert snapshot(obj) == before


def test_an_agent_cannot_take_a_colleagues_request_but_the_dpo_can(client: Client) -> None:
    colleague = factories.staff(AGENT)
    obj = services.request_assign(request=submit(), actor=SYSTEM, assignee=colleague)
    agent = login(client, AGENT)
    assert agent is not None
    before = snapshot(obj)

    refused = client.post(act_url(obj, "assign_me"))

    assert refused.status_code == 302
    assert snapshot(obj) == before
    assert act_url(obj, "assign_me") not in client.get(change_url(obj)).content.decode()

    dpo = login(client, DPO)
    assert dpo is not None
    assert client.post(act_url(obj, "assign_me")).status_code == 302
    assert DataSubjectRequest.objects.get(pk=obj.pk).assignee_id == dpo.pk


def test_bulk_assign_to_me_takes_only_what_the_agent_may(client: Client) -> None:
    colleague = factories.staff(AGENT)
    free = submit()
    taken = services.request_assign(request=submit(), actor=SYSTEM, assignee=colleague)
    closed = services.request_withdraw(request=submit(), actor=SYSTEM)
    agent = login(client, AGENT)
    assert agent is not None

    response = client.post(
        reverse(CHANGELIST),
        {"action": "assign_to_me", "_selected_action": [free.pk, taken.pk, closed.pk]},
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 302
    assert DataSubjectRequest.objects.get(pk=free.pk).assignee_id == agent.pk
    assert DataSubjectRequest.objects.get(pk=taken.pk).assignee_id == colleague.pk
    assert DataSubjectRequest.objects.get(pk=closed.pk).assignee_id is None
    assert texts(response) == [
        "1 request(s) assigned to you.",
        "2 request(s) skipped: closed, or assigned to someone else.",
    ]


# --- The change list: deadlines, filters, search ----------------------------------------------


@dataclass
class Scenario:
    overdue: DataSubjectRequest  # verified Fri 19 Sep 2025: due Thu 16 Oct
    soon: DataSubjectRequest  # verified Fri 26 Sep 2025: due Thu 23 Oct
    later: DataSubjectRequest  # verified Wed 15 Oct 2025: due Wed 5 Nov, assigned to `agent`
    provisional: DataSubjectRequest  # verified Sun 20 Dec 2026: due Fri 8 Jan 2027, provisional
    waiting: DataSubjectRequest  # not verified: no deadline
    agent: User


@pytest.fixture
def scenario(time_machine: Any) -> Scenario:
    agent = factories.staff(AGENT)
    time_machine.move_to(at(2025, 9, 19), tick=False)
    overdue = verified(email="a@example.cn", phone="13800000001")
    time_machine.move_to(at(2025, 9, 26), tick=False)
    soon = verified(email="b@example.cn", phone="13800000002")
    time_machine.move_to(at(2025, 10, 15), tick=False)
    later = services.request_assign(
        request=verified(email="c@example.cn", phone="13800000003"), actor=SYSTEM, assignee=agent
    )
    time_machine.move_to(at(2026, 12, 20), tick=False)
    provisional = verified(email="d@example.cn", phone="13800000004")
    waiting = submit(email="e@example.cn", phone="13800000005")
    time_machine.move_to(at(2025, 10, 20), tick=False)  # Monday, three weeks after National Day
    return Scenario(overdue, soon, later, provisional, waiting, agent)


def listed(client: Client, **params: str) -> list[DataSubjectRequest]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_the_list_is_ordered_by_due_time_and_coloured_by_working_days_left(
    client: Client, scenario: Scenario
) -> None:
    client.force_login(scenario.agent)

    response = client.get(reverse(CHANGELIST), HTTP_ACCEPT_LANGUAGE="en")

    rows = list(response.context["cl"].result_list)
    s = scenario
    assert rows == [s.overdue, s.soon, s.later, s.provisional, s.waiting]
    states = [r.deadline_state for r in rows]
    assert [(x.level, x.days_left, x.overdue) if x else None for x in states] == [
        ("red", -2, True),  # due Thu 16 Oct: Fri 17 and Mon 20 have passed since
        ("amber", 3, False),  # Tue 21, Wed 22, Thu 23
        ("green", 12, False),
        ("green", 306, False),
        None,
    ]
    html = response.content.decode()
    assert '<span class="dsar-days dsar-days--red">overdue (-2)</span>' in html
    assert '<span class="dsar-days dsar-days--amber">3</span>' in html
    assert '<span class="dsar-days dsar-days--green">12</span>' in html
    assert "provisional (2027)" in html
    assert "The official schedule for 2027 is not loaded; run import_workdays." in html
    assert "css/admin_dsar.css" in html
    # Masked requester only: no clear e-mail or phone anywhere on the page.
    assert "a***@example.cn · 138****0001" in html
    assert "a@example.cn" not in html
    assert "13800000001" not in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"deadline": "overdue"}, ["overdue"]),
        ({"deadline": "soon"}, ["soon"]),
        ({"deadline_provisional__exact": "1"}, ["provisional"]),
        ({"assignee": "none"}, ["overdue", "soon", "provisional", "waiting"]),
        ({"assignee": "me"}, ["later"]),
        ({"status__exact": "awaiting_verification"}, ["waiting"]),
    ],
)
def test_filters_return_the_right_requests(
    client: Client, scenario: Scenario, params: dict[str, str], expected: list[str]
) -> None:
    client.force_login(scenario.agent)

    assert listed(client, **params) == [getattr(scenario, name) for name in expected]


def test_due_within_three_working_days_counts_working_days_not_calendar_days(
    client: Client, time_machine: Any
) -> None:
    # Verified Fri 26 Sep 2025: due Thu 23 Oct. On Fri 17 Oct that is 4 working days away
    # (20, 21, 22, 23): not yet "soon". On Sat 18 Oct it still is 4; on Mon 20 Oct it is 3.
    time_machine.move_to(at(2025, 9, 26), tick=False)
    obj = verified()
    agent = factories.staff(AGENT)
    for day, expected in [(17, []), (18, []), (20, [obj])]:
        time_machine.move_to(at(2025, 10, day), tick=False)
        client.force_login(agent)  # a session from 26 September would have expired
        assert listed(client, deadline="soon") == expected, day


def test_search_finds_a_request_by_exact_phone_email_or_reference(client: Client) -> None:
    wanted = submit(email="wang.wu@example.cn", phone="13800138000")
    other = submit(email="li.si@example.cn", phone="13900000000")
    # A request whose requester gave no phone is still found through its subject's phone.
    subject = factories.subject(email="zhao@example.cn", phone="13700000000")
    via_subject = submit(subject=subject, email="zhao@example.cn", phone="")
    login(client, AGENT)

    assert listed(client, q="+86 138 0013 8000") == [wanted]
    assert listed(client, q="Wang.Wu@Example.cn") == [wanted]
    assert listed(client, q=wanted.reference.lower()) == [wanted]
    assert listed(client, q="137-0000-0000") == [via_subject]
    assert listed(client, q="13800138") == []  # exact only: no prefix search
    assert other not in listed(client, q="13800138000")


def test_the_change_list_costs_the_same_number_of_queries_for_5_or_50_rows(client: Client) -> None:
    agent = factories.staff(AGENT)
    for i in range(5):
        verified(email=f"p{i}@example.cn", phone=f"1380000{i:04d}")
    client.force_login(agent)
    url = reverse(CHANGELIST)
    client.get(url)  # warm the working-day index and the session

    def measure() -> tuple[int, int, int]:
        crypto.clear_key_cache()  # the worst case: no subject key cached in this process
        with (
            CaptureQueriesContext(connections["default"]) as main,
            CaptureQueriesContext(connections["keystore"]) as keys,
        ):
            response = client.get(url)
        assert response.status_code == 200
        return len(response.context["cl"].result_list), len(main), len(keys)

    rows5, main5, keys5 = measure()
    for i in range(5, 50):
        verified(email=f"p{i}@example.cn", phone=f"1380000{i:04d}")
    rows50, main50, keys50 = measure()

    assert (rows5, rows50) == (5, 50)
    assert main50 == main5
    assert keys5 == keys50 == 1  # one key-store query loads every subject key of the page


def test_the_paginator_counts_at_most_one_row_past_its_cap() -> None:
    for i in range(4):
        submit(email=f"cap{i}@example.cn")

    class Small(CappedCountPaginator):
        cap = 3

    qs = DataSubjectRequest.objects.order_by("pk")
    with CaptureQueriesContext(connections["default"]) as ctx:
        capped = Small(qs, 2)
        assert (capped.count, capped.capped, capped.num_pages) == (3, True, 2)
    assert "LIMIT 4" in ctx.captured_queries[0]["sql"]
    exact = CappedCountPaginator(qs, 2)
    assert (exact.count, exact.capped, exact.num_pages) == (4, False, 2)


# --- The detail page ---------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "clear"), [(AGENT, False), (DPO, True), (AUDITOR, False)])
def test_the_detail_masks_the_requester_unless_permitted_and_audits_clear_views(
    client: Client, role: str, clear: bool
) -> None:
    obj = submit(email="wang.wu@example.cn", phone="13800138000")
    services.request_note(request=obj, actor=SYSTEM, author=factories.staff(AGENT), body="内部备注：已核对。")
    login(client, role)

    html = client.get(change_url(obj)).content.decode()

    assert ("wang.wu@example.cn" in html) is clear
    assert ("13800138000" in html) is clear
    assert ("w***@example.cn" in html) is not clear
    assert ("138****8000" in html) is not clear
    assert "请提供我的全部就诊记录。" in html  # the request details, decrypted for staff
    assert "内部备注：已核对。" in html
    assert 'name="details"' not in html  # read-only: no form field
    viewed = AuditEntry.objects.filter(action="request.sensitive_viewed", object_id=str(obj.pk)).count()
    assert viewed == (1 if clear else 0)


def test_opening_a_document_returns_the_file_as_an_attachment_and_audits_it(client: Client) -> None:
    obj = submit()
    doc = services.document_add(
        request=obj, actor=SYSTEM, upload=SimpleUploadedFile("id-card.png", PNG, content_type="image/png")
    )
    agent = login(client, AGENT)
    assert agent is not None
    page = client.get(change_url(obj)).content.decode()
    url = reverse("admin:dsar_datasubjectrequest_document", args=[obj.pk, doc.pk])
    assert url in page

    response = client.get(url)

    assert response.status_code == 200
    assert response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="id-card.png"'
    entry = AuditEntry.objects.get(action="request.document_viewed")
    assert (entry.actor_id, entry.object_id, entry.data) == (str(agent.pk), str(obj.pk), {"document": doc.pk})
    # A document of another request is not reachable through this one.
    other = submit()
    assert (
        client.get(reverse("admin:dsar_datasubjectrequest_document", args=[other.pk, doc.pk])).status_code
        == 404
    )


def test_no_change_goes_through_the_model_form(client: Client) -> None:
    obj = submit()
    login(client, DPO)
    before = snapshot(obj)

    response = client.post(change_url(obj), {"status": "completed"})

    assert response.status_code == 403
    assert snapshot(obj) == before


def test_pages_use_no_inline_styles_or_scripts(client: Client, scenario: Scenario) -> None:
    client.force_login(factories.staff(DPO))
    s = scenario
    doc = services.document_add(
        request=s.soon, actor=SYSTEM, upload=SimpleUploadedFile("a.png", PNG, content_type="image/png")
    )
    assert doc.pk
    for url in [
        reverse(CHANGELIST),
        change_url(s.soon),
        act_url(s.soon, "refuse"),
        act_url(s.waiting, "verify"),
        reverse("admin:dsar_datasubjectrequest_overview"),
    ]:
        html = client.get(url).content.decode()
        assert not re.search(r"\sstyle=", html), url
        assert not re.search(r"<style", html), url
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url


# --- The overview ------------------------------------------------------------------------------


def test_the_overview_counts_deadlines_and_the_on_time_share(
    client: Client, scenario: Scenario, time_machine: Any
) -> None:
    # Closed in the last 90 days: one answered on time, one refused late, one withdrawn
    # (not counted); one answered on time long ago (outside the window).
    time_machine.move_to(at(2025, 4, 1), tick=False)
    services.request_complete(request=verified(), actor=SYSTEM, answer="早已答复。")
    time_machine.move_to(at(2025, 9, 26), tick=False)
    on_time = verified()
    time_machine.move_to(at(2025, 9, 19), tick=False)
    late = verified()
    time_machine.move_to(at(2025, 10, 17), tick=False)
    services.request_complete(request=on_time, actor=SYSTEM, answer="已答复。")
    services.request_refuse(request=late, actor=SYSTEM, ground="trade_secret", explanation="涉及商业秘密。")
    services.request_withdraw(request=submit(), actor=SYSTEM)
    time_machine.move_to(at(2025, 10, 20), tick=False)
    client.force_login(factories.staff(AUDITOR))

    response = client.get(reverse("admin:dsar_datasubjectrequest_overview"), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    o = response.context["overview"]
    assert (o.open, o.due_soon, o.overdue, o.provisional, o.missing_years) == (5, 1, 1, 1, [2027])
    assert (o.closed_on_time, o.closed_recently, o.on_time_percent) == (1, 2, 50)
    html = response.content.decode()
    assert '<span class="dsar-tile-number" id="dsar-on-time">50%</span>' in html
    assert "The official schedule for 2027 is not loaded; run import_workdays." in html
    assert (
        reverse("admin:dsar_datasubjectrequest_overview") in client.get(reverse(CHANGELIST)).content.decode()
    )


# --- The calendar ------------------------------------------------------------------------------


def test_the_dpo_adds_and_deletes_calendar_days_through_the_services(client: Client) -> None:
    login(client, DPO)

    added = client.post(
        reverse("admin:dsar_calendarday_add"), {"date": "2027-01-01", "kind": "holiday", "name": "元旦"}
    )
    assert added.status_code == 302
    assert CalendarDay.objects.get(date=date(2027, 1, 1)).name == "元旦"

    deleted = client.post(reverse("admin:dsar_calendarday_delete", args=["2027-01-01"]), {"post": "yes"})
    assert deleted.status_code == 302
    assert not CalendarDay.objects.filter(date=date(2027, 1, 1)).exists()

    bulk = client.post(
        reverse("admin:dsar_calendarday_changelist"),
        {"action": "delete_selected", "_selected_action": ["2026-10-06", "2026-10-07"], "post": "yes"},
    )
    assert bulk.status_code == 302
    assert not CalendarDay.objects.filter(date__in=[date(2026, 10, 6), date(2026, 10, 7)]).exists()
    assert list(
        AuditEntry.objects.filter(object_type="dsar.calendarday")
        .order_by("seq")
        .values_list("action", "object_id")
    ) == [
        ("calendar.day_saved", "2027-01-01"),
        ("calendar.day_deleted", "2027-01-01"),
        ("calendar.day_deleted", "2026-10-06"),
        ("calendar.day_deleted", "2026-10-07"),
    ]


def test_calendar_lists_filter_by_year_and_kind_and_years_are_read_only(client: Client) -> None:
    login(client, AUDITOR)

    days = client.get(
        reverse("admin:dsar_calendarday_changelist"), {"year": "2025", "kind__exact": "workday"}
    )
    years = client.get(reverse("admin:dsar_calendaryear_changelist"))

    assert days.status_code == 200
    assert [d.date for d in days.context["cl"].result_list] == [
        date(2025, 10, 11),
        date(2025, 9, 28),
        date(2025, 4, 27),
        date(2025, 2, 8),
        date(2025, 1, 26),
    ]
    assert years.status_code == 200
    assert client.get(reverse("admin:dsar_calendaryear_change", args=[2025])).status_code == 200
    assert (
        client.post(reverse("admin:dsar_calendaryear_change", args=[2025]), {"source": "x"}).status_code
        == 403
    )
