"""End to end in a real browser: sign up, verify the e-mail, turn on TOTP, sign in with it.

The TOTP codes are computed here from the secret the activation page shows (RFC 6238:
HMAC-SHA1, 30-second steps, 6 digits), exactly as an authenticator app would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model

pytestmark = [pytest.mark.browser]

EMAIL = "ada.browser@example.com"
PASSWORD = "Correct-Horse-Battery-Staple-42"
PERIOD = 30
# Fixed, well-known paths for a human to look at after a run (not asserted on).
FINAL_SCREENSHOT = "/tmp/quanyi-browser-final.png"  # noqa: S108
TOTP_SCREENSHOT = "/tmp/quanyi-totp.png"  # noqa: S108


# The submit button of the form that holds a given field. The header also carries forms
# (language switch, sign out), and allauth's MFA page has a Cancel button bound by form=
# to another form, so "the first submit button on the page" is never good enough.
def submit_of(page, field: str):
    return page.locator(f"main form:has({field}) button[type=submit]:not([form])").first


# --- RFC 6238 ---------------------------------------------------------------------------
def totp_at(secret: str, step: int, digits: int = 6) -> str:
    key = base64.b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def current_step() -> int:
    return int(time.time()) // PERIOD


def fresh_step(after: int | None = None, margin: float = 4.0) -> int:
    """A time step that is later than `after` and has at least `margin` seconds left, so the
    code is still valid when the server checks it (allauth's tolerance is 0 steps)."""
    while True:
        now = time.time()
        step = int(now) // PERIOD
        left = PERIOD - (now % PERIOD)
        if (after is None or step > after) and left >= margin:
            return step
        time.sleep(min(left + 0.05, PERIOD))


def test_totp_rfc6238_vector() -> None:
    # RFC 6238 appendix B, SHA1, T=59s -> step 1, 8 digits: 94287082.
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_at(secret, 59 // 30, digits=8) == "94287082"


# --- helpers ----------------------------------------------------------------------------
def path_of(page) -> str:
    return urlsplit(page.url).path


def on_live_server(url: str, live_server_url: str) -> str:
    """The e-mail link, moved onto the live server whatever host it was built for."""
    parts = urlsplit(url)
    return live_server_url + parts.path + (f"?{parts.query}" if parts.query else "")


def reauthenticate_if_asked(page) -> None:
    if "/reauthenticate" in path_of(page):
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            submit_of(page, "input[name=password]").click()


def field_errors(page) -> str:
    return page.locator("main").inner_text()


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_signup_verify_activate_totp_and_sign_in_with_it(page, live_server, mailoutbox) -> None:
    base = live_server.url

    # 1. Sign up.
    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password1]", PASSWORD)
    if page.locator("input[name=password2]").count():
        page.fill("input[name=password2]", PASSWORD)
    with page.expect_navigation():
        submit_of(page, "input[name=password1]").click()
    assert "/accounts/signup/" not in path_of(page), field_errors(page)

    # 2. The verification e-mail and its link.
    assert len(mailoutbox) >= 1, "no verification e-mail was sent"
    message = mailoutbox[0]
    assert EMAIL in message.to
    bodies = [message.body] + [alt[0] for alt in getattr(message, "alternatives", [])]
    links = [m for b in bodies for m in re.findall(r"https?://[^\s\"'<>]+/confirm-email/[^\s\"'<>]+", b)]
    assert links, f"no confirmation link in the e-mail:\n{message.body}"
    page.goto(on_live_server(links[0], base))
    confirm = page.locator("main form[action*='/confirm-email/'] button[type=submit]")
    if confirm.count():  # allauth asks for a click (ACCOUNT_CONFIRM_EMAIL_ON_GET is off)
        with page.expect_navigation():
            confirm.click()

    user = get_user_model().objects.get(email=EMAIL)
    assert EmailAddress.objects.get(user=user, email=EMAIL).verified

    # ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION signs us in; sign in by hand if it did not.
    page.goto(f"{base}/")
    if not page.locator("#mfa-state").count():
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            submit_of(page, "input[name=password]").click()
        page.goto(f"{base}/")
    assert page.locator("#mfa-state").count() == 1, page.content()
    # The "off" wording, whatever the language; "on" must differ from it at the end.
    mfa_off_text = page.locator("#mfa-state").inner_text().strip()
    assert not Authenticator.objects.filter(user=user).exists()

    # 3. Activate TOTP.
    page.goto(f"{base}/accounts/2fa/totp/activate/")
    reauthenticate_if_asked(page)
    assert path_of(page) == "/accounts/2fa/totp/activate/", page.url
    secret = page.locator("input#authenticator_secret").input_value().strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}=*", secret), f"unexpected secret {secret!r}"
    page.screenshot(path=TOTP_SCREENSHOT, full_page=True)

    activation_step = fresh_step()
    page.fill("input[name=code]", totp_at(secret, activation_step))
    with page.expect_navigation():
        submit_of(page, "input[name=code]").click()
    reauthenticate_if_asked(page)
    assert path_of(page) != "/accounts/2fa/totp/activate/", field_errors(page)
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    # allauth shows the freshly generated recovery codes next; nothing to do there.

    # 4. Sign out through the nav's POST form.
    page.goto(f"{base}/")
    with page.expect_navigation():
        page.locator("header form[action$='/accounts/logout/'] button[type=submit]").click()
    if "/accounts/logout/" in path_of(page):  # a confirmation page, if one is shown
        with page.expect_navigation():
            page.locator("main form[action$='/accounts/logout/'] button[type=submit]").click()
    page.goto(f"{base}/")
    assert page.locator("#mfa-state").count() == 0, "still signed in after signing out"

    # 5. Sign in again: password first, then the authenticator code.
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        submit_of(page, "input[name=password]").click()
    assert path_of(page) == "/accounts/2fa/authenticate/", page.url

    # 5a. A wrong code is refused: same page, an error, still signed out.
    step = current_step()
    valid_now = {totp_at(secret, s) for s in range(step - 2, step + 3)}
    wrong = next(c for c in ("000000", "123456", "999999", "314159") if c not in valid_now)
    page.fill("input[name=code]", wrong)
    with page.expect_navigation():
        submit_of(page, "input[name=code]").click()
    assert path_of(page) == "/accounts/2fa/authenticate/", page.url
    assert page.locator("input[name=code]").count() == 1
    errors = page.locator("main .errorlist, main [class*=error], main [role=alert]")
    assert errors.count() >= 1, f"no error shown for a wrong code:\n{field_errors(page)}"
    assert page.locator("header form[action$='/accounts/logout/']").count() == 0, "signed in on a wrong code"

    # 5b. The right code, from a time step after the one used at activation (allauth
    # refuses a code that was already used in its window).
    login_step = fresh_step(after=activation_step)
    page.fill("input[name=code]", totp_at(secret, login_step))
    with page.expect_navigation():
        submit_of(page, "input[name=code]").click()
    assert path_of(page) == "/", f"{page.url}\n{field_errors(page)}"

    # 6. Home, with two-factor authentication on.
    state = page.locator("#mfa-state")
    assert state.count() == 1
    on_text = state.inner_text().strip()
    assert on_text and on_text != mfa_off_text, f"#mfa-state still says {on_text!r}"
    page.screenshot(path=FINAL_SCREENSHOT, full_page=True)

    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).count() == 1
    assert EmailAddress.objects.filter(user=user, email=EMAIL, verified=True).exists()
