from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from consent.models import ConsentEvent, PolicyVersion, Purpose
from consent.services import consent_record, may_process, unsubscribe_token
from core.audit import SYSTEM
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)


@pytest.fixture
def marketing() -> Purpose:
    at = timezone.now() - timedelta(days=1)
    PolicyVersion.objects.create(
        version=1,
        title_zh="隐私政策",
        title_en="Policy",
        body_zh="…",
        body_en="…",
        effective_at=at,
        published_at=at,
    )
    return Purpose.objects.create(
        code="marketing_push",
        name_zh="营销推送",
        name_en="Marketing",
        description_zh="-",
        description_en="-",
        marketing=True,
    )


def test_one_click_unsubscribe_withdraws_marketing_without_login(client: Client, marketing: Purpose) -> None:
    subject = factories.subject()
    consent_record(subject=subject, purpose=marketing, action="grant", channel="web", actor=SYSTEM)
    url = reverse("consent:unsubscribe", args=[unsubscribe_token(subject)])

    page = client.get(url)
    assert page.status_code == 200
    assert may_process(subject=subject, purpose=marketing).allowed is True  # a GET changes nothing

    done = client.post(url, {"List-Unsubscribe": "One-Click"})
    again = client.post(url)

    assert done.status_code == again.status_code == 200
    assert may_process(subject=subject, purpose=marketing).allowed is False
    events = list(ConsentEvent.objects.filter(subject=subject).values_list("action", "channel"))
    assert events == [("grant", "web"), ("withdraw", "email")]


@pytest.mark.parametrize("token", ["garbage", "eyJzIjoxfQ:forged:signature"])
def test_a_forged_or_broken_link_is_refused_and_changes_nothing(
    client: Client, marketing: Purpose, token: str
) -> None:
    subject = factories.subject()
    consent_record(subject=subject, purpose=marketing, action="grant", channel="web", actor=SYSTEM)

    response = client.post(reverse("consent:unsubscribe", args=[token]))

    assert response.status_code == 400
    assert may_process(subject=subject, purpose=marketing).allowed is True
