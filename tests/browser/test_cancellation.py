"""End to end in a real browser: a subject cancels their account in the account settings.

The subject signs in, opens the account settings from the header, chooses "Cancel my
account", is asked to reauthenticate (allauth's page), reads what is deleted and kept,
confirms, and sees the banner with the date on every page. The test then moves the
schedule into the past (as if the cooling-off had run out), runs the sweep and the erasure
in-process, and the subject's next sign-in is refused with allauth's own message.

Selectors rely on names, ids and URLs, never on the wording, so the test passes in zh-hans
(the default) and in English.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from allauth.account.adapter import get_adapter
from django.utils import timezone, translation

from accounts.models import DataSubject
from core.audit import audit_verify
from dsar import cancellation, erasure, sample_product
from dsar.models import AccountCancellation, Status, VerificationMethod
from retention.models import Erasure
from tests import factories

pytestmark = [pytest.mark.browser]

EMAIL = "leaving.browser@example.cn"
# Fixed, well-known paths for a human to look at after a run (not asserted on).
PREVIEW_SCREENSHOT = "/tmp/quanyi-cancellation-preview.png"  # noqa: S108
BANNER_SCREENSHOT = "/tmp/quanyi-cancellation-banner.png"  # noqa: S108


def path_of(page) -> str:
    return urlsplit(page.url).path


def main_text(page) -> str:
    return page.locator("main").first.inner_text()


# The submit button of the portal form that holds a given field (the header carries the
# language switch and sign-out forms too).
def submit_of(page, field: str):
    return page.locator(f"main form:has({field}) button[type=submit]:not([form])").first


def sign_in(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", EMAIL)
    page.fill("input[name=password]", factories.PASSWORD)
    with page.expect_navigation():
        submit_of(page, "input[name=password]").click()


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_subject_cancels_in_account_settings_and_cannot_sign_in_afterwards(
    page, live_server, mailoutbox, product
) -> None:
    base = live_server.url
    user = factories.UserFactory(email=EMAIL)
    factories.subject(user=user, email=EMAIL, phone="13911112222", full_name="韩梅梅")
    sample_product.demo_load(
        [
            sample_product.Person(
                email=EMAIL,
                phone="13911112222",
                name="韩梅梅",
                id_number="110101199001011234",
                birthday="1990-01-01",
                gender="女",
                native_place="北京市",
            )
        ],
        seed=7,
    )

    # 1. Sign in; the header leads to the account settings, which offer the cancellation.
    sign_in(page, base)
    assert path_of(page) == "/", f"{page.url}\n{main_text(page)}"
    with page.expect_navigation():
        page.locator("#nav-account").click()
    assert path_of(page) == "/account/", page.url
    with page.expect_navigation():
        page.locator("#cancel-account").click()

    # 2. allauth asks for the password again before anything else.
    assert path_of(page) == "/accounts/reauthenticate/", page.url
    page.fill("input[name=password]", factories.PASSWORD)
    with page.expect_navigation():
        submit_of(page, "input[name=password]").click()

    # 3. What is deleted, what is kept and why; then confirm.
    assert path_of(page) == "/account/cancel/", f"{page.url}\n{main_text(page)}"
    assert page.locator("#cancellation-deleted tbody tr").count() >= 3
    assert page.locator("#cancellation-kept tbody tr").count() >= 3
    assert "15" in page.locator("#cancellation-kept").inner_text()  # medical records: 15 years
    page.screenshot(path=PREVIEW_SCREENSHOT, full_page=True)
    page.fill("textarea[name=reason]", "换了别的应用")
    with page.expect_navigation():
        page.locator("#cancellation-confirm button[name=confirm]").click()

    scheduled = AccountCancellation.objects.select_related("request").get()
    request = scheduled.request
    assert request.status == Status.VERIFIED
    assert request.verification_method == VerificationMethod.REAUTHENTICATION
    assert request.due_at is not None and scheduled.scheduled_for < request.due_at
    when = scheduled.scheduled_for.astimezone(ZoneInfo("Asia/Shanghai"))

    # 4. The banner with the date, on this page and on every other one.
    banner = page.locator("#cancellation-notice")
    assert banner.count() == 1, main_text(page)
    assert page.locator("#cancellation-date").inner_text() == when.strftime("%Y-%m-%d %H:%M")
    assert banner.locator("button[name=undo]").count() == 1
    page.goto(f"{base}/")
    assert page.locator("#cancellation-date").inner_text() == when.strftime("%Y-%m-%d %H:%M")
    page.screenshot(path=BANNER_SCREENSHOT, full_page=True)

    # 5. The cooling-off runs out; the sweep starts the erasure and a worker runs it.
    AccountCancellation.objects.filter(pk=scheduled.pk).update(
        scheduled_for=timezone.now() - timedelta(minutes=1)
    )
    assert cancellation.cancellations_sweep() == 1
    plan = Erasure.objects.get(reference=request.reference)
    assert erasure.run_erasure(erasure_id=plan.pk) == "done"
    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    assert DataSubject.objects.get(pk=request.subject_id).is_erased
    assert any(request.reference in m.subject and EMAIL in m.to for m in mailoutbox)

    # 6. The open session is gone, and signing in again is refused with allauth's message.
    page.goto(f"{base}/account/")
    assert path_of(page) == "/accounts/login/", page.url
    sign_in(page, base)
    assert path_of(page) == "/accounts/login/", page.url
    with translation.override("zh-hans"):
        message = str(get_adapter().error_messages["email_password_mismatch"])
    assert message in main_text(page), main_text(page)
    assert audit_verify().ok
