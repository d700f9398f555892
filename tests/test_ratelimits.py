"""Every rate limit the project promises, at its edge: the attempts up to the limit pass, the next
one within the window is refused (429, or the form's clear message), a different client or key
is not affected, and the refused attempt changes nothing — no request stored, no e-mail sent,
no sign-in, no answer given."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import User
from consent import api as consent_api
from consent import apikeys
from consent.models import Purpose
from core.models import AuditEntry
from dsar.models import DataSubjectRequest, EmailChallenge, OnBehalf, RequestType
from tests import factories
from tests.conftest import ALL, manage, subprocess_env

pytestmark = pytest.mark.django_db(databases=ALL)
Capture = Callable[..., Any]
PUBLIC = "/api/v1/public/requests/"
CHECK = "/api/v1/consent-check/"
HERE, ELSEWHERE = "127.0.0.2", "127.0.0.3"  # two clients, by address
LIMITED = "Too many attempts from your network or for this address."


def _client(ip: str) -> Client:
    return Client(REMOTE_ADDR=ip, HTTP_ACCEPT_LANGUAGE="en")


def _code_in(body: str) -> str:
    found = re.search(r"^\s+(\d{6})\s*$", body, re.MULTILINE)
    assert found, body
    return found.group(1)


def _state() -> tuple[int, int, int, int]:
    return (
        DataSubjectRequest.objects.count(),
        EmailChallenge.objects.count(),
        AuditEntry.objects.count(),
        len(mail.outbox),
    )


# --- Sign-in (allauth: ACCOUNT_RATE_LIMITS["login_failed"] = 10/m/ip, 5/5m/key) ------------------


def _login(client: Client, email: str, password: str) -> Any:
    return client.post(reverse("account_login"), {"login": email, "password": password})


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_sixth_failed_login_for_an_account_is_refused_even_with_the_right_password() -> None:
    target, other = factories.UserFactory(), factories.UserFactory()
    attacker = _client(HERE)

    failures = [_login(attacker, target.email, "wrong-password") for _ in range(5)]
    refused = _login(_client(ELSEWHERE), target.email, factories.PASSWORD)  # the key is the account

    assert [r.status_code for r in failures] == [200] * 5
    assert all("Too many" not in " ".join(r.context["form"].non_field_errors()) for r in failures)
    assert "Too many failed login attempts" in " ".join(refused.context["form"].non_field_errors())
    target.refresh_from_db()
    assert target.last_login is None
    # Another account, from the same address, is not affected.
    other_client = _client(HERE)
    assert _login(other_client, other.email, factories.PASSWORD).status_code == 302
    assert _signed_in(other_client)


def test_the_eleventh_failed_login_from_one_address_is_refused_for_any_account() -> None:
    victims = [factories.UserFactory() for _ in range(11)]
    attacker = _client(HERE)

    failures = [_login(attacker, v.email, "wrong-password") for v in victims[:10]]
    refused = _login(attacker, victims[10].email, factories.PASSWORD)

    assert all("Too many" not in " ".join(r.context["form"].non_field_errors()) for r in failures)
    assert "Too many failed login attempts" in " ".join(refused.context["form"].non_field_errors())
    assert not _signed_in(attacker)
    # The same account from another address signs in.
    elsewhere = _client(ELSEWHERE)
    assert _login(elsewhere, victims[10].email, factories.PASSWORD).status_code == 302
    assert _signed_in(elsewhere)


def test_the_login_limits_are_the_documented_ones() -> None:
    assert settings.ACCOUNT_RATE_LIMITS["login_failed"] == "10/m/ip,5/5m/key"
    assert settings.ACCOUNT_RATE_LIMITS["confirm_email"] == "1/3m/key"


def test_an_unverified_address_gets_one_confirmation_e_mail_per_three_minutes() -> None:
    user = factories.UserFactory()
    EmailAddress.objects.filter(user=user).update(verified=False)
    if not EmailAddress.objects.filter(user=user).exists():
        EmailAddress.objects.create(user=user, email=user.email, verified=False, primary=True)

    first = _login(_client(HERE), user.email, factories.PASSWORD)
    again = _login(_client(ELSEWHERE), user.email, factories.PASSWORD)

    assert first.status_code == again.status_code == 302
    assert [m.to for m in mail.outbox] == [[user.email]]  # the second sign-in sent nothing


# --- Public submissions (10 per address and hour), portal and API --------------------------------


def _portal_form(email: str) -> dict[str, Any]:
    return {
        "name": "李四",
        "email": email,
        "phone": "139 0013 9000",
        "details": "请提供我的全部就诊记录",
        "on_behalf": OnBehalf.SELF,
    }


def _api_body(email: str) -> dict[str, Any]:
    return {
        "type": RequestType.ACCESS,
        "name": "李四",
        "email": email,
        "phone": "13900139000",
        "details": "请提供我的全部就诊记录",
    }


def _portal_submit(client: Client, email: str) -> Any:
    return client.post(reverse("dsar:submit", args=[RequestType.ACCESS]), _portal_form(email))


def _api_submit(client: Client, email: str) -> Any:
    return client.post(PUBLIC, _api_body(email), content_type="application/json")


@pytest.mark.parametrize(
    ("submit", "accepted"), [(_portal_submit, 302), (_api_submit, 201)], ids=["portal", "api"]
)
def test_the_eleventh_public_submission_from_one_address_is_refused(
    submit: Callable[[Client, str], Any], accepted: int, django_capture_on_commit_callbacks: Capture
) -> None:
    client = _client(HERE)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [submit(client, f"p{i}@example.cn").status_code for i in range(10)]
    before = _state()

    with django_capture_on_commit_callbacks(execute=True):
        refused = submit(client, "p10@example.cn")

    assert answers == [accepted] * 10
    assert refused.status_code == 429
    assert LIMITED in refused.content.decode()
    assert _state() == before  # no request, no challenge, no audit entry, no e-mail
    # Another client is not affected.
    with django_capture_on_commit_callbacks(execute=True):
        other = submit(_client(ELSEWHERE), "p10@example.cn")
    assert other.status_code == accepted
    assert DataSubjectRequest.objects.count() == 11


# --- Verification codes: sending (5 per address, 20 per client an hour) and checking ------------


def _find(client: Client, dsr: DataSubjectRequest, email: str) -> Any:
    return client.post(reverse("dsar:find"), {"reference": dsr.reference, "email": email})


def _public_request(client: Client, email: str, capture: Capture) -> tuple[DataSubjectRequest, str]:
    with capture(execute=True):
        response = _api_submit(client, email)
    assert response.status_code == 201, response.content
    return DataSubjectRequest.objects.get(pk=response.json()["id"]), _code_in(str(mail.outbox[-1].body))


def test_the_sixth_code_for_one_address_is_refused_on_any_client(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    dsr, _code = _public_request(_client(HERE), "li.si@example.cn", django_capture_on_commit_callbacks)
    other, _ = _public_request(_client(ELSEWHERE), "wang.wu@example.cn", django_capture_on_commit_callbacks)
    client = _client(HERE)
    with django_capture_on_commit_callbacks(execute=True):
        sent = [_find(client, dsr, "li.si@example.cn").status_code for _ in range(4)]  # 1 + 4 codes
    before = _state()

    with django_capture_on_commit_callbacks(execute=True):
        refused = _find(client, dsr, "li.si@example.cn")
        refused_elsewhere = _find(_client(ELSEWHERE), dsr, "li.si@example.cn")

    assert sent == [302] * 4
    assert refused.status_code == refused_elsewhere.status_code == 429
    assert LIMITED in refused.content.decode()
    assert _state() == before  # no new code, no e-mail
    # Another address, from the same client, still gets its code.
    with django_capture_on_commit_callbacks(execute=True):
        assert _find(client, other, "wang.wu@example.cn").status_code == 302
    assert mail.outbox[-1].to == ["wang.wu@example.cn"]


def test_the_twenty_first_code_from_one_client_is_refused(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    seeder = _client("127.0.0.9")  # the requests are made elsewhere; only the look-ups count here
    requests = [
        _public_request(seeder, f"c{i}@example.cn", django_capture_on_commit_callbacks)[0] for i in range(6)
    ]
    client = _client(HERE)
    with django_capture_on_commit_callbacks(execute=True):
        sent = [
            _find(client, requests[i // 4], f"c{i // 4}@example.cn").status_code for i in range(20)
        ]  # 4 more codes for each of five addresses: each address at its own limit of 5
    before = _state()

    with django_capture_on_commit_callbacks(execute=True):
        refused = _find(client, requests[5], "c5@example.cn")

    assert sent == [302] * 20
    assert refused.status_code == 429
    assert _state() == before
    with django_capture_on_commit_callbacks(execute=True):
        assert _find(_client(ELSEWHERE), requests[5], "c5@example.cn").status_code == 302


def test_the_thirty_first_code_check_from_one_client_is_refused_even_when_right(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    dsr, code = _public_request(_client(HERE), "li.si@example.cn", django_capture_on_commit_callbacks)
    url = f"{PUBLIC}{dsr.pk}/verify/"
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    client = _client(HERE)
    answers = []
    for _ in range(30):
        answers.append(client.post(url, {"code": wrong}, content_type="application/json").status_code)
        EmailChallenge.objects.filter(request=dsr).update(attempts=0)  # only the client's limit at stake
    before = _state()

    refused = client.post(url, {"code": code}, content_type="application/json")

    assert answers == [400] * 30
    assert refused.status_code == 429
    assert LIMITED in refused.json()["detail"]
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is None
    assert _state() == before
    # The person, on another client, confirms with the right code.
    confirmed = _client(ELSEWHERE).post(url, {"code": code}, content_type="application/json")
    assert confirmed.status_code == 200, confirmed.content
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is not None


# --- The consent-check API (per API key, QUANYI_CONSENT_CHECK_RATE a minute) ---------------------


def test_the_consent_check_over_its_limit_answers_429_without_an_answer(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.QUANYI_CONSENT_CHECK_RATE = 3
    monkeypatch.setattr(consent_api, "CHECK_LIMIT", 10**6)  # the setting, not the built-in, applies
    subject = factories.subject(user=cast(User, factories.UserFactory()))
    purpose = Purpose.objects.create(
        code="marketing_push", name_zh="营销推送", name_en="Marketing", description_zh="推送", marketing=True
    )
    query = {"subject": subject.reference, "purpose": purpose.code}
    busy, quiet = _api_key("busy"), _api_key("quiet")
    client = _client(HERE)

    answers = [client.get(CHECK, query, **busy) for _ in range(3)]
    refused = client.get(CHECK, query, **busy)

    assert [a.status_code for a in answers] == [200] * 3
    assert refused.status_code == 429
    assert "allowed" not in refused.json() and "detail" in refused.json()
    assert int(refused["Retry-After"]) > 0
    # Another key, from the same client, is answered.
    assert client.get(CHECK, query, **quiet).status_code == 200


def _api_key(name: str) -> dict[str, str]:
    plaintext = apikeys.api_key_create(name=name, scopes=[apikeys.CONSENT_CHECK])[1]
    return {"HTTP_AUTHORIZATION": f"Api-Key {plaintext}"}


# --- Behind a proxy, clients are told apart by the address the proxy saw -------------------------


def test_behind_a_proxy_the_limits_count_the_forwarded_client(
    settings: Any, django_capture_on_commit_callbacks: Capture
) -> None:
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    proxy = "127.0.0.1"
    busy = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="127.0.0.20", HTTP_ACCEPT_LANGUAGE="en")
    # A client cannot escape its counter by putting another address in front of its own.
    spoofing = Client(
        REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="127.0.0.99, 127.0.0.20", HTTP_ACCEPT_LANGUAGE="en"
    )
    quiet = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="127.0.0.21", HTTP_ACCEPT_LANGUAGE="en")
    with django_capture_on_commit_callbacks(execute=True):
        answers = [_api_submit(busy, f"x{i}@example.cn").status_code for i in range(10)]
        refused = _api_submit(spoofing, "x10@example.cn")
        other = _api_submit(quiet, "x11@example.cn")

    assert answers == [201] * 10
    assert refused.status_code == 429
    assert other.status_code == 201


def test_behind_a_proxy_setting_trusts_exactly_the_proxies_named() -> None:
    code = "from django.conf import settings; print(getattr(settings, 'ALLAUTH_TRUSTED_PROXY_COUNT', 0))"
    direct = manage("shell", "-c", code, env=subprocess_env(QUANYI_BEHIND_PROXY="false"))
    proxied = manage("shell", "-c", code, env=subprocess_env(QUANYI_BEHIND_PROXY="true"))
    two = manage(
        "shell", "-c", code, env=subprocess_env(QUANYI_BEHIND_PROXY="true", QUANYI_TRUSTED_PROXY_COUNT="2")
    )

    last = [r.stdout.strip().splitlines()[-1] for r in (direct, proxied, two)]  # after the shell banner
    assert last == ["0", "1", "2"]
