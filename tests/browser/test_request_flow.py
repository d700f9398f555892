"""End to end in a real browser: a request without an account, handled by an agent in the admin.

The requester (one browser context) submits a public request, confirms the e-mail address
with the 6-digit code from the e-mail (a wrong code first), and lands on the status page.
An agent (a second context, so a separate session) signs in, finds the request by its
reference, assigns it, verifies the identity, starts and completes it with an answer. The
requester reloads the status page and reads the answer. The database and the audit chain
must agree.

Selectors rely on names, ids, classes and URLs, never on the wording, so the test passes in
zh-hans (the default) and in English.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest

from core.audit import audit_verify
from core.models import AuditEntry
from dsar.models import DataSubjectRequest, Status, VerificationMethod
from tests import factories

pytestmark = [pytest.mark.browser]

REQUESTER_NAME = "李雷"
REQUESTER_EMAIL = "li.lei.flow@example.cn"
DETAILS = "我想知道贵公司持有我的哪些个人信息，以及这些信息的来源和用途。"
ANSWER = "您的全部个人信息见附件说明。"
REFERENCE_RE = re.compile(r"DSR-\d{4}-\d{6}")
# Fixed, well-known paths for a human to look at after a run (not asserted on).
STATUS_SCREENSHOT = "/tmp/quanyi-flow-status.png"  # noqa: S108
ADMIN_SCREENSHOT = "/tmp/quanyi-flow-admin.png"  # noqa: S108
LOCALE = "zh-CN"
TIMEOUT_MS = 15_000


# --- helpers ----------------------------------------------------------------------------
def path_of(page) -> str:
    return urlsplit(page.url).path


def main_text(page) -> str:
    return page.locator("main, #content").first.inner_text()


# The submit button of the portal form that holds a given field (the header carries the
# language switch and sign-out forms too).
def submit_of(page, field: str):
    return page.locator(f"main form:has({field}) button[type=submit]:not([form])").first


def wait_for_mail(outbox: list, predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in outbox if predicate(m)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            subjects = [m.subject for m in outbox]
            raise AssertionError(f"no matching e-mail within {timeout}s; outbox: {subjects}")
        time.sleep(0.1)


def code_from(message) -> str:
    codes = re.findall(r"^\s*(\d{6})\s*$", message.body, flags=re.MULTILINE)
    assert len(codes) == 1, f"expected one 6-digit code in the e-mail:\n{message.body}"
    return codes[0]


def admin_messages(page) -> str:
    items = page.locator("ul.messagelist li")
    return " | ".join(items.all_inner_texts()) if items.count() else ""


def run_admin_action(page, name: str, fill=None) -> None:
    """On the request's admin page: follow the action's link, fill its form, submit, and come
    back to the change page with a success message."""
    link = page.locator(f"#content a[href*='/act/{name}/']")
    assert link.count() == 1, f"action {name!r} not offered:\n{main_text(page)}"
    with page.expect_navigation():
        link.click()
    assert f"/act/{name}/" in path_of(page), page.url
    if fill is not None:
        fill(page)
    with page.expect_navigation():
        page.locator("#content-main form input[type=submit].default").click()
    assert re.fullmatch(r"/admin/dsar/datasubjectrequest/\d+/change/", path_of(page)), (
        f"{name}: still on {page.url}\n{admin_messages(page)}\n{main_text(page)}"
    )
    assert page.locator("ul.messagelist li.success").count() >= 1, (
        f"{name}: no success message: {admin_messages(page)}"
    )
    assert page.locator("ul.messagelist li.error").count() == 0, f"{name}: {admin_messages(page)}"


def new_context(browser):
    context = browser.new_context(locale=LOCALE)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


# --- the flow ---------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_public_request_handled_in_admin_and_answered(browser, page, live_server, mailoutbox) -> None:
    base = live_server.url
    agent = factories.staff("agent")

    # 1. The requester chooses a type and fills in the public form.
    page.goto(f"{base}/requests/new/")
    with page.expect_navigation():
        page.locator("main a.button[href$='/requests/new/access/']").click()
    assert path_of(page) == "/requests/new/access/", page.url
    page.fill("input[name=name]", REQUESTER_NAME)
    page.fill("input[name=email]", REQUESTER_EMAIL)
    page.fill("textarea[name=details]", DETAILS)
    assert page.locator("input[name=on_behalf][value=self]").is_checked()
    with page.expect_navigation():
        submit_of(page, "textarea[name=details]").click()
    assert path_of(page) == "/requests/code/", f"{page.url}\n{main_text(page)}"
    # The success message names the reference.
    shown = REFERENCE_RE.search(page.locator("main ul.messages").inner_text())
    assert shown, main_text(page)
    reference = shown.group(0)

    dsr = DataSubjectRequest.objects.get(reference=reference)
    assert dsr.status == Status.AWAITING_VERIFICATION
    assert dsr.type == "access"
    assert dsr.contact_verified_at is None

    # 2. The code from the e-mail: a wrong one first, then the right one.
    message = wait_for_mail(mailoutbox, lambda m: REQUESTER_EMAIL in m.to and reference in m.body)
    code = code_from(message)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    page.fill("input[name=code]", wrong)
    with page.expect_navigation():
        submit_of(page, "input[name=code]").click()
    assert path_of(page) == "/requests/code/", page.url
    assert page.locator("main .has-error .errorlist, main .errorlist").count() >= 1, (
        f"no error shown for a wrong code:\n{main_text(page)}"
    )
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is None

    page.fill("input[name=code]", code)
    with page.expect_navigation():
        submit_of(page, "input[name=code]").click()
    assert path_of(page) == f"/requests/status/{reference}/", f"{page.url}\n{main_text(page)}"
    assert reference in page.locator("main h1").inner_text()
    status = page.locator("#status")
    assert "status-awaiting_verification" in (status.get_attribute("class") or ""), status.inner_text()
    assert page.locator("#answer").count() == 0
    status_url = page.url
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is not None
    assert dsr.due_date is None

    # 3. The agent, in a separate session.
    staff_context = new_context(browser)
    try:
        admin = staff_context.new_page()
        admin.goto(f"{base}/admin/")
        # The admin login hands over to allauth's.
        assert path_of(admin) == "/accounts/login/", admin.url
        admin.fill("input[name=login]", agent.email)
        admin.fill("input[name=password]", factories.PASSWORD)
        with admin.expect_navigation():
            submit_of(admin, "input[name=password]").click()
        assert path_of(admin) == "/admin/", f"{admin.url}\n{main_text(admin)}"

        # The change list: search by the reference, open the request.
        admin.goto(f"{base}/admin/dsar/datasubjectrequest/")
        admin.fill("#searchbar", reference)
        with admin.expect_navigation():
            admin.locator("#changelist-search input[type=submit]").click()
        rows = admin.locator("#result_list tbody tr")
        assert rows.count() == 1, main_text(admin)
        with admin.expect_navigation():
            rows.first.locator("a", has_text=reference).click()
        assert path_of(admin) == f"/admin/dsar/datasubjectrequest/{dsr.pk}/change/", admin.url
        assert reference in main_text(admin)
        # No clock before the identity is verified, and no start or completion offered yet.
        assert not re.search(r"\d{4}-\d{2}-\d{2}", admin.locator(".field-deadline .readonly").inner_text())
        assert admin.locator("#content a[href*='/act/complete/']").count() == 0

        run_admin_action(admin, "assign_me")
        dsr.refresh_from_db()
        assert dsr.assignee_id == agent.pk

        def choose_method(p) -> None:
            p.select_option("select[name=method]", VerificationMethod.STAFF.value)

        run_admin_action(admin, "verify", choose_method)
        dsr.refresh_from_db()
        assert dsr.status == Status.VERIFIED
        assert dsr.due_date is not None
        assert dsr.verification_method == VerificationMethod.STAFF
        # The due date now shows on the request's admin page.
        deadline_text = admin.locator(".field-deadline .readonly").inner_text()
        assert dsr.due_date.isoformat() in deadline_text, deadline_text

        run_admin_action(admin, "start")
        dsr.refresh_from_db()
        assert dsr.status == Status.IN_PROGRESS

        def write_answer(p) -> None:
            p.fill("textarea[name=answer]", ANSWER)

        run_admin_action(admin, "complete", write_answer)
        dsr.refresh_from_db()
        assert dsr.status == Status.COMPLETED
        assert ANSWER in admin.locator(".field-answer .readonly").inner_text()
        # Nothing is left to do on a closed request.
        for name in ("verify", "start", "complete"):
            assert admin.locator(f"#content a[href*='/act/{name}/']").count() == 0, name
        admin.screenshot(path=ADMIN_SCREENSHOT, full_page=True)
    finally:
        staff_context.close()

    # 4. The requester reloads the status page.
    page.goto(status_url)
    assert path_of(page) == f"/requests/status/{reference}/", page.url
    status = page.locator("#status")
    assert "status-completed" in (status.get_attribute("class") or ""), status.inner_text()
    assert ANSWER in page.locator("#answer").inner_text()
    assert dsr.due_date.isoformat() in page.locator("#due").inner_text()
    page.screenshot(path=STATUS_SCREENSHOT, full_page=True)

    # 5. The database and the audit chain.
    dsr = DataSubjectRequest.objects.get(reference=reference)
    assert dsr.status == Status.COMPLETED
    assert dsr.answer == ANSWER
    assert dsr.closed_at is not None
    assert dsr.started_at is not None
    actions = list(
        AuditEntry.objects.filter(object_type="dsar.datasubjectrequest", object_id=str(dsr.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )
    for expected in ("request.submitted", "request.verify", "request.start", "request.complete"):
        assert expected in actions, f"{expected} missing from {actions}"
    order = [actions.index(a) for a in ("request.submitted", "request.verify", "request.start")]
    assert order == sorted(order), actions
    assert actions.index("request.complete") > actions.index("request.start"), actions
    assert "request.code_failed" in actions, actions
    assert "request.contact_verified" in actions, actions
    report = audit_verify()
    assert report.ok, report
