"""Security headers, cookies and CSRF on real responses, under the settings production runs
with (read from config/settings.py in a subprocess with DEBUG off, as `check --deploy` sees
them), and no inline script anywhere: neither in a template nor in a page as rendered."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.roles import DPO
from consent.demo import load_demo
from core.audit import Actor
from dsar import services as dsar_services
from dsar.models import RequestType
from tests import factories
from tests.conftest import ALL, ROOT
from tests.test_settings import PROD, _manage

pytestmark = pytest.mark.django_db(databases=ALL)

SECURITY_SETTINGS = [
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_SSL_REDIRECT",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "SECURE_CROSS_ORIGIN_OPENER_POLICY",
    "X_FRAME_OPTIONS",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
    "QUANYI_CSP",
]


@pytest.fixture(scope="module")
def production() -> dict[str, Any]:
    """The security settings as production gets them (DEBUG off, nothing else overridden)."""
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{k: getattr(settings, k) for k in {SECURITY_SETTINGS!r}}}))"
    )
    result = _manage("shell", "-c", code, **PROD)
    assert result.returncode == 0, result.stderr
    return cast(dict[str, Any], json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture
def prod(settings: Any, production: dict[str, Any]) -> dict[str, Any]:
    for name, value in production.items():
        setattr(settings, name, value)
    settings.ALLOWED_HOSTS = ["privacy.example.cn"]
    return production


def https(**extra: Any) -> Client:
    return Client(HTTP_HOST="privacy.example.cn", HTTP_ACCEPT_LANGUAGE="en", **extra)


def assert_strict_headers(response: Any) -> None:
    csp = {
        d.split()[0]: d.split()[1:]
        for d in (p.strip() for p in response["Content-Security-Policy"].split(";"))
        if d
    }
    for directive in ("default-src", "script-src"):
        assert csp[directive] == ["'self'"], csp
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    hsts = response["Strict-Transport-Security"]
    assert re.fullmatch(r"max-age=(\d+); includeSubDomains; preload", hsts), hsts
    assert int(hsts.split(";")[0].split("=")[1]) >= 31536000
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_production_settings_are_the_strict_ones(production: dict[str, Any]) -> None:
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SESSION_COOKIE_SECURE"] is True and production["CSRF_COOKIE_SECURE"] is True
    assert production["SESSION_COOKIE_HTTPONLY"] is True
    assert production["SESSION_COOKIE_SAMESITE"] == "Lax" and production["CSRF_COOKIE_SAMESITE"] == "Lax"


def test_plain_http_is_sent_to_https(prod: dict[str, Any]) -> None:
    response = https().get("/policy/")
    assert response.status_code == 301
    assert response["Location"] == "https://privacy.example.cn/policy/"


@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/policy/", "anonymous"),
        ("/consents/", "subject"),
        ("/api/v1/receipt-key/", "anonymous"),
        ("/api/v1/requests/", "subject"),
        ("/admin/", "dpo"),
        ("/admin/dsar/datasubjectrequest/", "dpo"),
        ("/accounts/login/", "anonymous"),
    ],
)
def test_portal_api_and_admin_responses_carry_the_security_headers(
    prod: dict[str, Any], path: str, who: str
) -> None:
    load_demo()
    client = https()
    if who == "subject":
        user = cast(User, factories.UserFactory())
        factories.subject(user=user, email=user.email)
        client.force_login(user)
    elif who == "dpo":
        client.force_login(factories.staff(DPO))

    response = client.get(path, secure=True)

    assert response.status_code == 200, path
    assert_strict_headers(response)


def test_session_and_csrf_cookies_are_secure_httponly_and_same_site(prod: dict[str, Any]) -> None:
    """A real sign-in over HTTPS: the cookies it sets."""
    user = cast(User, factories.UserFactory())
    factories.subject(user=user, email=user.email)
    client = https()
    login = client.get(reverse("account_login"), secure=True)
    csrf = login.cookies["csrftoken"]

    response = client.post(
        reverse("account_login"), {"login": user.email, "password": factories.PASSWORD}, secure=True
    )

    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    assert csrf["secure"] and csrf["samesite"] == "Lax"
    # Readable by script on purpose: allauth's headless browser clients send it back.
    assert not csrf["httponly"] and prod["CSRF_COOKIE_HTTPONLY"] is False


# --- Forms and CSRF ------------------------------------------------------------------------------


class Forms(HTMLParser):
    """Every <form method=post> of a page: its action and the names of its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []
        self._in_form = False
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.handlers += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on")]
        if tag == "form" and (values.get("method") or "get").lower() == "post":
            self.forms.append({"action": values.get("action") or "", "inputs": set()})
            self._in_form = True
        elif tag == "input" and self._in_form:
            self.forms[-1]["inputs"].add(values.get("name"))
        elif tag == "script":
            # A JSON data block (allauth's e-mail page has one) is never executed.
            self._script = "src" not in values and values.get("type") != "application/json"

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "script":
            self._script = False

    def handle_data(self, data: str) -> None:
        if self._script and data.strip():
            self.inline_scripts.append(data.strip()[:80])


def subject_pages() -> tuple[Client, list[str]]:
    """A subject with a consent history, a child in their care, a correction request on which
    staff asked for more information, and the pages they see."""
    load_demo()
    user = cast(User, factories.UserFactory())
    subject = factories.subject(user=user, email=user.email)
    child = factories.subject(email="child@example.cn", full_name="王小明", birth_date="2016-05-01")
    from consent.models import GuardianConsent
    from consent.services import guardian_consent_record

    guardian_consent_record(
        subject=child,
        actor=Actor.of(user),
        guardian_name="王五",
        relationship="父亲",
        guardian_contact=user.email,
        verification=GuardianConsent.Verification.ACCOUNT,
        guardian_user=user,
    )
    dsr = dsar_services.request_submit(
        actor=Actor.of(user), type=RequestType.CORRECTION, subject=subject, user=user, details="资料有误"
    )
    agent = factories.staff("agent")
    dsar_services.request_ask_info(request=dsr, actor=Actor.of(agent), author=agent, message="请上传身份证。")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    pages = [
        reverse("portal:home"),
        reverse("portal:account"),
        reverse("consent:mine"),
        reverse("consent:children"),
        reverse("consent:child", args=[child.pk]),
        reverse("consent:policy"),
        reverse("consent:policy_history"),
        reverse("consent:incidents"),
        reverse("dsar:mine"),
        reverse("dsar:new"),
        *[reverse("dsar:submit", args=[t]) for t in RequestType.values],
        reverse("dsar:detail", args=[dsr.pk]),
        reverse("dsar:withdraw", args=[dsr.pk]),
        reverse("dsar:find"),
        reverse("account_email"),
        reverse("account_change_password"),
        reverse("account_reauthenticate"),
        reverse("mfa_index"),
    ]
    return client, pages


def test_every_portal_form_carries_a_csrf_token_and_is_refused_without_it() -> None:
    client, pages = subject_pages()
    strict = Client(HTTP_ACCEPT_LANGUAGE="en", enforce_csrf_checks=True)
    strict.cookies = client.cookies  # the same signed-in session, but CSRF is checked
    posted = 0
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        parser = Forms()
        parser.feed(response.content.decode())
        for form in parser.forms:
            assert "csrfmiddlewaretoken" in form["inputs"], f"a form on {page} has no CSRF token"
            action = form["action"] or page
            refused = strict.post(action, {name: "x" for name in form["inputs"] - {"csrfmiddlewaretoken"}})
            assert refused.status_code == 403, (
                f"{action} (a form on {page}) accepted a POST without the token"
            )
            posted += 1
        assert parser.inline_scripts == [], f"{page} has inline script: {parser.inline_scripts}"
        assert parser.handlers == [], f"{page} has inline event handlers: {parser.handlers}"
    assert posted >= 15  # the walk really found the forms


TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES, ids=[str(t.relative_to(ROOT)) for t in TEMPLATES])
def test_no_template_has_inline_script_or_event_handlers(template: Path) -> None:
    text = template.read_text(encoding="utf-8")
    for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", text, flags=re.S | re.I):
        assert "src=" in match.group(1) and not match.group(2).strip(), f"inline script in {template.name}"
    assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", text, flags=re.I), (
        f"an on*= handler in {template.name}"
    )
    assert "javascript:" not in text.lower()
