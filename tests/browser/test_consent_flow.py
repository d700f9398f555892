"""End to end in a real browser: a signed-in subject sees the material-change notice,
accepts it, withdraws marketing on "my consents", and downloads the signed receipt of that
withdrawal, which verifies with the published key.

Selectors rely on names, ids and URLs, never on the wording (the page is zh-hans)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.utils import timezone

from consent import receipts
from consent.models import ConsentEvent, PolicyResponse, PolicyVersion, Purpose
from consent.services import consent_record, may_process
from core.audit import SYSTEM
from tests import factories

pytestmark = [pytest.mark.browser]

EMAIL = "han.meimei.consent@example.cn"


def _policy(version: int, *, material: bool, days_ago: int) -> PolicyVersion:
    at = timezone.now() - timedelta(days=days_ago)
    return PolicyVersion.objects.create(
        version=version,
        title_zh="隐私政策",
        title_en="Privacy policy",
        body_zh=f"第{version}版",
        body_en=f"version {version}",
        summary_zh="新增科研目的（去标识化）",
        summary_en="Adds de-identified research",
        material=material,
        change_kind="service_model" if material else "",
        effective_at=at,
        published_at=at,
    )


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_notice_accept_withdraw_marketing_and_download_the_receipt(page, live_server, tmp_path: Path) -> None:
    base = live_server.url
    _policy(1, material=False, days_ago=400)
    _policy(2, material=True, days_ago=2)
    marketing = Purpose.objects.create(
        code="marketing_push",
        name_zh="营销推送",
        name_en="Marketing push",
        description_zh="向您推送健康资讯和优惠活动。",
        description_en="Health news and offers.",
        marketing=True,
        categories=["contact"],
    )
    user = factories.UserFactory(email=EMAIL)
    subject = factories.subject(user=user, email=EMAIL)
    type(subject).objects.filter(pk=subject.pk).update(created_at=timezone.now() - timedelta(days=30))
    consent_record(subject=subject, purpose=marketing, action="grant", channel="web", actor=SYSTEM)

    # 1. Sign in: the notice of the material change is on the page.
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", EMAIL)
    page.fill("input[name=password]", factories.PASSWORD)
    with page.expect_navigation():
        page.locator("main form:has(input[name=password]) button[type=submit]:not([form])").first.click()
    notice = page.locator("#policy-notice")
    assert notice.is_visible()
    assert "新增科研目的" in notice.inner_text()

    # 2. Accept it: the notice is gone, the answer recorded.
    with page.expect_navigation():
        notice.locator("button[name=decision][value=accept]").click()
    assert page.locator("#policy-notice").count() == 0
    assert PolicyResponse.objects.get(subject=subject).decision == "accept"

    # 3. My consents: withdraw marketing.
    page.goto(f"{base}/consents/")
    purpose = page.locator("#purpose-marketing_push")
    with page.expect_navigation():
        purpose.locator("button[name=action][value=withdraw]").click()
    assert not may_process(subject=subject, purpose=marketing).allowed
    withdrawal = ConsentEvent.objects.filter(subject=subject, action="withdraw").get()

    # 4. Download the withdrawal's receipt from the history; it verifies with the published key.
    page.goto(f"{base}/consents/")
    link = page.locator(f"a.receipt-link[href*='{withdrawal.receipt_id}']")
    with page.expect_download() as download_info:
        link.click()
    target = tmp_path / "receipt.json"
    download_info.value.save_as(target)
    receipt = json.loads(target.read_text(encoding="utf-8"))
    published = load_pem_public_key(page.request.get(f"{base}/.well-known/quanyi-receipt-key.pem").body())
    assert isinstance(published, Ed25519PublicKey)
    assert receipts.receipt_verify(receipt, published)
    tampered = json.loads(json.dumps(receipt, ensure_ascii=False).replace('"withdraw', '"grant'))
    assert tampered != receipt and not receipts.receipt_verify(tampered, published)
    assert urlsplit(page.url).path == "/consents/"
