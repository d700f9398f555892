"""The permission matrix: every URL pattern of the project, walked from the root resolver, times
every role that can knock on it.

Roles (columns, in this order): `anon` nobody signed in; `subj` the data subject who owns the
objects in the URL; `other` another data subject; `key` a product service with an API key
(`Authorization: Api-Key …`, as the consent check uses it); `auditor`, `agent`, `dpo` the
staff roles of accounts/roles.py. Everyone signed in holds the session `force_login` would
give them: the admin asks for no second factor of its own (accounts/ and config/settings.py
enforce none; allauth's MFA is per account, for those who turned it on).

One table says what each cell answers, for GET and for POST:
- `EXPECT`: URL name (or route, for unnamed patterns) → `Row`, seven outcomes per method.
- `ADMIN_MODELS`: for every ModelAdmin, which roles may view, add, change and delete the
  fixture object. Its six standard URLs (changelist, add, history, delete, change and the bare
  object URL) follow from that by Django's admin rules in `admin_row`; custom admin views are in
  `EXPECT`.
A URL pattern with no row fails the test, naming the pattern.

Outcomes: a status code, or `login` (302 to the portal sign-in), `admin` (302 to the admin
sign-in, which hands over to allauth), `reauth` (302 to allauth's reauthentication). A `~` in
front (`~302`) marks an answer that is not an error but must change nothing all the same: e.g.
another subject pressing "undo cancellation" has none to undo and must not undo the subject's.

A cell that answers 4xx, sends the caller to sign in, or is marked `~` must change nothing:
every table of Quanyi's, allauth's and the admin log's models (in every database, the key
store included) reads the same before and after
all such cells of a URL have run, the audit log included — a refused request writes no audit
entry (refusals are logged by the web server, not as evidence about a person). Cells that are
allowed run after that, POSTs last, in column order (the DPO, the only role that deletes
anything, last). POSTs carry data that would really change something if it were let through.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache as cache_once
from functools import cached_property
from importlib import import_module
from typing import Any, cast

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections, router
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from consent import apikeys, campaigns, incidents
from consent import services as consent_services
from consent.demo import load_demo
from consent.models import (
    ConsentEvent,
    ConsentState,
    GuardianConsent,
    NoticeCampaign,
    NoticeDelivery,
    PolicyResponse,
    PolicyVersion,
    Purpose,
    SecurityIncident,
)
from core.audit import SYSTEM, Actor
from core.models import AuditEntry, JobState, OutboxMessage, Recipient, RecipientNotice
from core.recipients import disclosure_record, recipients_notify
from dsar import cancellation, corrections
from dsar import erasure as dsar_erasure
from dsar import services as dsar_services
from dsar.models import (
    CalendarDay,
    CalendarYear,
    CorrectionItem,
    DataExport,
    DataSubjectRequest,
    ExportStatus,
    RequestType,
    VerificationDocument,
)
from retention import services as retention_services
from retention import termination
from retention.models import (
    Backup,
    ChildDataFinding,
    Erasure,
    LegalHold,
    RetentionRule,
    ServiceTermination,
    SweepRun,
    Tombstone,
)
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)

ROLES = ("anon", "subj", "other", "key", AUDITOR, AGENT, DPO)
STAFF = frozenset({AUDITOR, AGENT, DPO})
WORKERS = frozenset({AGENT, DPO})
READERS = frozenset({AUDITOR, DPO})  # the roles that read the machinery and user accounts
ONLY_DPO = frozenset({DPO})
NOBODY: frozenset[str] = frozenset()
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
CHILD_BIRTH = "2016-05-01"

# --- The table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """Seven outcomes per method, in ROLES order. `post` defaults to `get`."""

    get: str
    post: str = ""
    kwargs: Callable[[World], dict[str, Any]] = lambda w: {}
    query: Callable[[World], str] = lambda w: ""
    data: Callable[[World], Any] = lambda w: {}
    json: bool = False  # POST `data` as JSON (the API)
    delete: str = ""  # the API's DELETE, where a view has one
    setup: tuple[str, ...] = ()  # World attributes to create first
    path: Callable[[World], str] | None = None  # for a pattern reverse() cannot build

    def outcomes(self, method: str) -> list[str]:
        text = {"GET": self.get, "POST": self.post or self.get, "DELETE": self.delete}[method]
        cells = text.split()
        assert len(cells) == len(ROLES), f"{text!r} needs {len(ROLES)} outcomes"
        return cells


def _pk(name: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"pk": getattr(w, name).pk}


REQ = _pk("request")
DEMO = ("demo",)  # the demo privacy policies and purposes  # the subject's verified correction request
CONSENT = {"purpose": "marketing_push", "action": "withdraw"}
PUBLIC_FORM = {
    "name": "王五",
    "email": "wangwu.public@example.cn",
    "phone": "13712345678",
    "on_behalf": "self",
    "details": "请提供我的全部就诊记录。",
}

# Columns:              anon   subj   other  key    auditor agent dpo
EXPECT: dict[str, Row] = {
    # --- The portal -------------------------------------------------------------------------
    "portal:home": Row("200 200 200 200 200 200 200"),
    "portal:account": Row("login 200 200 login 200 200 200"),
    "cancellation:start": Row("login reauth reauth login 403 403 403", data=lambda w: {"reason": "x"}),
    # Only one's own pending cancellation is undone (the subject has one; the other has none).
    "cancellation:undo": Row(
        "login 405 405 login 405 405 405", post="login 302 ~302 login 403 403 403", setup=("cancellation",)
    ),
    "dsar:mine": Row("login 200 200 login 403 403 403"),
    "dsar:new": Row("200 200 200 200 200 200 200"),
    "dsar:submit": Row(
        "200 200 200 200 403 403 403",
        post="302 302 302 302 403 403 403",
        kwargs=lambda w: {"type": RequestType.ACCESS},
        data=lambda w: PUBLIC_FORM,
    ),
    "dsar:detail": Row("login 200 404 login 404 404 404", kwargs=REQ),
    "dsar:withdraw": Row("404 200 404 404 404 404 404", post="404 302 404 404 404 404 404", kwargs=REQ),
    "dsar:provide_info": Row(
        "405 405 405 405 405 405 405",
        post="404 302 404 404 404 404 404",
        kwargs=_pk("info"),
        data=lambda w: {"message": "身份证照片见附件。"},
    ),
    "dsar:propose": Row(
        "login 200 404 login 404 404 404",
        post="login 302 404 login 404 404 404",
        kwargs=REQ,
        data=lambda w: {"c-new:quanyi.profile.full_name.": "王六"},
    ),
    "dsar:download": Row("login reauth 404 login 404 404 404", kwargs=_pk("access")),
    # The e-mail link: the owner is sent to the request, anybody else to prove it (302 both).
    "dsar:status": Row("302 302 302 302 302 302 302", kwargs=lambda w: {"reference": w.request.reference}),
    "dsar:find": Row("200 200 200 200 200 200 200"),
    # Without a code asked for first, both send back to the search page.
    "dsar:code": Row("302 302 302 302 302 302 302", post="~302 ~302 ~302 ~302 ~302 ~302 ~302"),
    "dsar:resend": Row("405 405 405 405 405 405 405", post="~302 ~302 ~302 ~302 ~302 ~302 ~302"),
    "consent:mine": Row(
        "login 200 200 login 403 403 403",
        post="login 302 302 login 403 403 403",
        data=lambda w: CONSENT,
        setup=DEMO,
    ),
    "consent:children": Row("login 200 200 login 200 200 200", post="login 405 405 login 405 405 405"),
    "consent:child": Row(
        "login 200 404 login 404 404 404",
        post="login 302 404 login 404 404 404",
        kwargs=_pk("child"),
        data=lambda w: CONSENT,
        setup=DEMO,
    ),
    "consent:receipt": Row(
        "login 200 404 login 403 403 403",
        post="login 405 405 login 405 405 405",
        kwargs=lambda w: {"receipt_id": w.event.receipt_id},
    ),
    "consent:receipt_key": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    # RFC 8058 one-click: the signed token in the link is the proof, whoever follows it.
    "consent:unsubscribe": Row(
        "200 200 200 200 200 200 200",
        kwargs=lambda w: {"token": consent_services.unsubscribe_token(w.subject)},
    ),
    "consent:policy": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405", setup=DEMO),
    "consent:policy_respond": Row(
        "login 405 405 login 405 405 405",
        post="login 200 200 login 403 403 403",
        data=lambda w: {"version": w.policy.version, "decision": "decline"},
    ),
    "consent:policy_history": Row(
        "200 200 200 200 200 200 200", post="405 405 405 405 405 405 405", setup=DEMO
    ),
    "consent:policy_diff": Row(
        "200 200 200 200 200 200 200",
        post="405 405 405 405 405 405 405",
        query=lambda w: f"a={w.policy.version}&b={w.policy.version}",
    ),
    "consent:incidents": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    # The public announcement that the service stops (while one is under way).
    "retention:termination": Row(
        "200 200 200 200 200 200 200", post="405 405 405 405 405 405 405", setup=("termination",)
    ),
    "consent:incident": Row(
        "200 200 200 200 200 200 200", post="405 405 405 405 405 405 405", kwargs=_pk("incident")
    ),
    # --- The API: subjects (session or app token), the public, services (API key) -------------
    "api-request-list": Row(
        "403 200 200 403 403 403 403",
        post="403 201 201 403 403 403 403",
        data=lambda w: {"type": "access", "details": "请提供我的全部就诊记录。"},
        json=True,
    ),
    "api-request-detail": Row("403 200 404 403 403 403 403", post="403 405 405 403 403 403 403", kwargs=REQ),
    "api-request-withdraw": Row(
        "403 405 405 403 403 403 403", post="403 200 404 403 403 403 403", kwargs=REQ
    ),
    "api-request-changes": Row(
        "403 405 405 403 403 403 403",
        post="403 201 404 403 403 403 403",
        kwargs=REQ,
        data=lambda w: {
            "changes": [{"target": "quanyi", "table": "profile", "column": "full_name", "value": "王六"}]
        },
        json=True,
    ),
    "api-correctable-fields": Row("403 200 200 403 403 403 403", post="403 405 405 403 403 403 403"),
    "api-account-cancellation": Row(
        "403 200 200 403 403 403 403",
        post="403 403 403 403 403 403 403",  # no recent reauthentication: refused before anything
        delete="403 200 404 403 403 403 403",
        setup=("cancellation",),
    ),
    "api-request-export": Row(
        "403 200 404 403 403 403 403", post="403 405 405 403 403 403 403", kwargs=_pk("access")
    ),
    "api-request-export-download": Row(
        "403 403 404 403 403 403 403", post="403 405 405 403 403 403 403", kwargs=_pk("access")
    ),
    "api-public-request-create": Row(
        "405 405 405 405 405 405 405", post="400 400 400 400 400 400 400", json=True
    ),
    "api-public-request-verify": Row(
        "405 405 405 405 405 405 405", post="400 400 400 400 400 400 400", kwargs=REQ, json=True
    ),
    # The same answer whether or not the request exists (it has an account: no code is sent).
    "api-public-request-resend": Row(
        "405 405 405 405 405 405 405", post="~202 ~202 ~202 ~202 ~202 ~202 ~202", kwargs=REQ
    ),
    "api-consent-list": Row(
        "403 200 200 403 403 403 403",
        post="403 201 201 403 403 403 403",
        data=lambda w: CONSENT,
        json=True,
        setup=DEMO,
    ),
    "api-consent-history": Row("403 200 200 403 403 403 403", post="403 405 405 403 403 403 403"),
    "api-consent-receipt": Row(
        "403 200 404 403 403 403 403",
        post="403 405 405 403 403 403 403",
        kwargs=lambda w: {"receipt_id": str(w.event.receipt_id)},
    ),
    "api-policy-current": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405", setup=DEMO),
    "api-receipt-key": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    # Only an API key: a browser session never reads other people's consents.
    "api-consent-check": Row(
        "401 401 401 200 401 401 401",
        post="401 401 401 405 401 401 401",
        query=lambda w: f"subject={w.subject.reference}&purpose=marketing_push",
        setup=DEMO,
    ),
    "api-consent-check-bulk": Row(
        "401 401 401 405 401 401 401",
        post="401 401 401 200 401 401 401",
        data=lambda w: {"checks": [{"subject": w.subject.reference, "purpose": "marketing_push"}]},
        json=True,
        setup=DEMO,
    ),
    "schema": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    "api-docs": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    "healthz": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    "set_language": Row("302 302 302 302 302 302 302", data=lambda w: {"language": "en"}),
    # --- allauth: sign-in, account e-mail, password, two-factor authentication -----------------
    # Its own rules: a signed-in visitor is sent on from the sign-in and sign-up pages; pages
    # that change a second factor ask to reauthenticate first; nothing is there for an API key.
    "account_login": Row("200 302 302 200 302 302 302"),
    "account_logout": Row("302 200 200 302 200 200 200", post="302 302 302 302 302 302 302"),
    "account_inactive": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    "account_signup": Row("200 302 302 200 302 302 302"),
    "account_reauthenticate": Row("login 200 200 login 200 200 200"),
    "account_email": Row("login 200 200 login 200 200 200", post="login 302 302 login 302 302 302"),
    "account_email_verification_sent": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    "account_change_password": Row("login 200 200 login 200 200 200"),
    "account_set_password": Row("login 302 302 login 302 302 302"),
    "account_reset_password": Row("200 200 200 200 200 200 200"),
    "account_confirm_login_code": Row("login 302 302 login 302 302 302"),
    "account_confirm_email": Row(
        "200 200 200 200 200 200 200",
        post="404 404 404 404 404 404 404",
        kwargs=lambda w: {"key": "not-a-key"},
    ),
    "account_reset_password_from_key_done": Row(
        "200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"
    ),
    "account_reset_password_from_key": Row(
        "200 200 200 200 200 200 200", kwargs=lambda w: {"uidb36": "1", "key": "not-a-key"}
    ),
    "account_reset_password_done": Row("200 200 200 200 200 200 200", post="405 405 405 405 405 405 405"),
    "mfa_index": Row("login 200 200 login 200 200 200", post="login 405 405 login 405 405 405"),
    "mfa_authenticate": Row("login 302 302 login 302 302 302"),
    "mfa_reauthenticate": Row("login reauth reauth login reauth reauth reauth"),
    "mfa_activate_totp": Row("login reauth reauth login reauth reauth reauth"),
    "mfa_deactivate_totp": Row("login 404 404 login 404 404 404"),
    "mfa_view_recovery_codes": Row("login 404 404 login 404 404 404", post="login 405 405 login 405 405 405"),
    "mfa_generate_recovery_codes": Row("login reauth reauth login reauth reauth reauth"),
    "mfa_download_recovery_codes": Row("login 404 404 login 404 404 404"),
    "headless:browser:config": Row("200 200 200 200 200 200 200", post="400 400 400 400 400 400 400"),
    "headless:browser:account:current_session": Row(
        "401 200 200 401 200 200 200", post="400 400 400 400 400 400 400"
    ),
    "headless:browser:account:reauthenticate": Row(
        "401 405 405 401 405 405 405", post="401 400 400 401 400 400 400"
    ),
    "headless:browser:account:confirm_login_code": Row("409 409 409 409 409 409 409"),
    "headless:browser:account:request_password_reset": Row(
        "405 405 405 405 405 405 405", post="400 400 400 400 400 400 400"
    ),
    "headless:browser:account:reset_password": Row("400 400 400 400 400 400 400"),
    "headless:browser:account:login": Row("405 405 405 405 405 405 405", post="400 400 400 400 400 400 400"),
    "headless:browser:account:signup": Row("405 405 405 405 405 405 405", post="400 400 400 400 400 400 400"),
    "headless:browser:account:verify_email": Row("400 400 400 400 400 400 400"),
    "headless:browser:account:resend_email_verification_code": Row(
        "405 405 405 405 405 405 405", post="409 409 409 409 409 409 409"
    ),
    "headless:browser:account:change_password": Row(
        "401 405 405 401 405 405 405", post="401 400 400 401 400 400 400"
    ),
    "headless:browser:account:manage_email": Row(
        "401 200 200 401 200 200 200", post="409 400 400 409 400 400 400"
    ),
    "headless:browser:mfa:authenticate": Row("401 401 401 401 401 401 401"),
    "headless:browser:mfa:reauthenticate": Row(
        "401 405 405 401 405 405 405", post="401 400 400 401 400 400 400"
    ),
    "headless:browser:mfa:authenticators": Row(
        "401 200 200 401 200 200 200", post="401 400 400 401 400 400 400"
    ),
    "headless:browser:mfa:manage_totp": Row(
        "401 404 404 401 404 404 404", post="401 400 400 401 400 400 400"
    ),
    "headless:browser:mfa:manage_recovery_codes": Row(
        "401 404 404 401 404 404 404", post="401 400 400 401 400 400 400"
    ),
    "headless:app:config": Row("200 200 200 200 200 200 200", post="400 400 400 400 400 400 400"),
    "headless:app:account:current_session": Row(
        "401 401 401 401 401 401 401", post="400 400 400 400 400 400 400"
    ),
    "headless:app:account:reauthenticate": Row("401 401 401 401 401 401 401"),
    "headless:app:account:confirm_login_code": Row("409 409 409 409 409 409 409"),
    "headless:app:account:request_password_reset": Row(
        "405 405 405 405 405 405 405", post="400 400 400 400 400 400 400"
    ),
    "headless:app:account:reset_password": Row("400 400 400 400 400 400 400"),
    "headless:app:account:login": Row("405 405 405 405 405 405 405", post="400 400 400 400 400 400 400"),
    "headless:app:account:signup": Row("405 405 405 405 405 405 405", post="400 400 400 400 400 400 400"),
    "headless:app:account:verify_email": Row("400 400 400 400 400 400 400"),
    "headless:app:account:resend_email_verification_code": Row(
        "405 405 405 405 405 405 405", post="409 409 409 409 409 409 409"
    ),
    "headless:app:account:change_password": Row("401 401 401 401 401 401 401"),
    "headless:app:account:manage_email": Row(
        "401 401 401 401 401 401 401", post="409 409 409 409 409 409 409"
    ),
    "headless:app:mfa:authenticate": Row("401 401 401 401 401 401 401"),
    "headless:app:mfa:reauthenticate": Row("401 401 401 401 401 401 401"),
    "headless:app:mfa:authenticators": Row("401 401 401 401 401 401 401"),
    "headless:app:mfa:manage_totp": Row("401 401 401 401 401 401 401"),
    "headless:app:mfa:manage_recovery_codes": Row("401 401 401 401 401 401 401"),
    "headless:app:tokens:refresh": Row("405 405 405 405 405 405 405", post="400 400 400 400 400 400 400"),
    # allauth.headless's phone-number endpoints are shadowed by core.views.no_phone_sign_in.
    **{
        f"headless:{client}:account:{name}": Row("404 404 404 404 404 404 404")
        for client in ("app", "browser")
        for name in ("manage_phone", "verify_phone", "resend_phone_verification_code")
    },
    "headless-no-phone": Row(
        "404 404 404 404 404 404 404", path=lambda w: "/_allauth/browser/v1/account/phone"
    ),
    # --- The admin's own pages and the custom views ----------------------------------------------
    # allauth guards the admin's sign-in (config/urls.py): a signed-in subject is refused.
    "admin:login": Row("login 403 403 login 302 302 302", post="login 403 403 login 200 200 200"),
    "admin:logout": Row("302 302 302 302 405 405 405", post="302 302 302 302 200 200 200"),
    "admin:index": Row("admin admin admin admin 200 200 200"),
    "admin:app_list": Row("admin admin admin admin 200 200 200", kwargs=lambda w: {"app_label": "dsar"}),
    "admin:password_change": Row("admin admin admin admin 200 200 200"),
    "admin:password_change_done": Row(
        "admin admin admin admin 200 200 200", post="admin admin admin admin 405 405 405"
    ),
    "admin:jsi18n": Row("admin admin admin admin 200 200 200", post="admin admin admin admin 405 405 405"),
    "admin:autocomplete": Row(
        "admin admin admin admin 403 403 403", post="admin admin admin admin 405 405 405"
    ),
    # No model has a page on the site.
    "admin:view_on_site": Row(
        "admin admin admin admin 404 404 404",
        kwargs=lambda w: {"content_type_id": str(w.content_type_id), "object_id": str(w.request.pk)},
    ),
    "admin/(?P<url>.*)$": Row("admin admin admin admin 404 404 404", path=lambda w: "/admin/nothing/here/"),
    "admin:dsar_datasubjectrequest_overview": Row("admin admin admin admin 200 200 200"),
    "admin:dsar_datasubjectrequest_act": Row(
        "admin admin admin admin 403 200 200",
        post="admin admin admin admin 403 302 302",
        kwargs=lambda w: {"object_id": w.request.pk, "action": "note"},
        data=lambda w: {"body": "已电话联系申请人。"},
    ),
    "admin:dsar_datasubjectrequest_correction": Row(
        "admin admin admin admin 403 200 200",
        post="admin admin admin admin 403 302 302",
        kwargs=lambda w: {"object_id": w.request.pk, "item_id": w.item.pk, "action": "reject"},
        data=lambda w: {"reason": "与身份证不符。"},
    ),
    "admin:dsar_datasubjectrequest_document": Row(
        "admin admin admin admin 403 200 200",
        post="admin admin admin admin 405 405 405",
        kwargs=lambda w: {"object_id": w.request.pk, "document_id": w.document.pk},
    ),
    "admin:auth_user_password_change": Row(
        "admin admin admin admin 403 403 403",
        kwargs=lambda w: {"id": w.subject_user.pk},
        data=lambda w: {"password1": "a-new-password-42", "password2": "a-new-password-42"},
    ),
}


@dataclass(frozen=True)
class AdminModel:
    """Who may view, add, change and delete the World's object `obj` in the admin."""

    obj: str
    view: frozenset[str]
    add: frozenset[str] = NOBODY
    change: frozenset[str] = NOBODY
    delete: frozenset[str] = NOBODY
    actions: frozenset[str] = NOBODY  # roles offered a bulk action on the list besides delete
    empty_change_post: str = "200"


ADMIN_MODELS: dict[str, AdminModel] = {
    # Django's and allauth's models: superusers only.
    "auth.group": AdminModel("group", NOBODY),
    "account.emailaddress": AdminModel("email_address", NOBODY),
    "mfa.authenticator": AdminModel("authenticator", NOBODY),
    "accounts.user": AdminModel("subject_user", READERS),
    "accounts.datasubject": AdminModel("subject", STAFF, change=ONLY_DPO),
    "core.auditentry": AdminModel("audit_entry", STAFF),
    "core.jobstate": AdminModel("job", READERS),
    "core.outboxmessage": AdminModel("outbox", READERS),
    "core.recipient": AdminModel("recipient", STAFF, add=ONLY_DPO, change=ONLY_DPO),
    "core.disclosure": AdminModel("disclosure", STAFF),
    "core.recipientnotice": AdminModel("notice", STAFF, actions=WORKERS),
    "consent.purpose": AdminModel("purpose", STAFF, add=ONLY_DPO, change=ONLY_DPO),
    # A published version is what people agreed to: nobody changes it.
    "consent.policyversion": AdminModel("policy", STAFF, add=ONLY_DPO, actions=ONLY_DPO),
    "consent.consentevent": AdminModel("event", STAFF),
    "consent.consentstate": AdminModel("state", STAFF),
    "consent.guardianconsent": AdminModel("guardianship", STAFF, add=WORKERS),
    "consent.apikey": AdminModel("api_key", READERS, actions=ONLY_DPO),
    "consent.policyresponse": AdminModel("policy_response", STAFF),
    "consent.noticecampaign": AdminModel("campaign", STAFF, actions=ONLY_DPO),
    "consent.noticedelivery": AdminModel("delivery", STAFF, actions=ONLY_DPO),
    "consent.securityincident": AdminModel(
        "incident", STAFF, add=ONLY_DPO, change=ONLY_DPO, actions=ONLY_DPO
    ),
    "consent.incidentsubject": AdminModel("incident_subject", STAFF),
    "dsar.datasubjectrequest": AdminModel("request", STAFF, actions=WORKERS),
    "dsar.dataexport": AdminModel("export", STAFF),
    "dsar.calendaryear": AdminModel("calendar_year", STAFF),
    "dsar.calendarday": AdminModel("calendar_day", STAFF, add=ONLY_DPO, change=ONLY_DPO, delete=ONLY_DPO),
    "retention.legalhold": AdminModel("hold", STAFF, add=ONLY_DPO, change=ONLY_DPO, actions=ONLY_DPO),
    "retention.erasure": AdminModel("erasure", STAFF),
    "retention.tombstone": AdminModel("tombstone", STAFF),
    "retention.backup": AdminModel("backup", READERS),
    "retention.retentionrule": AdminModel("rule", STAFF, add=ONLY_DPO, change=ONLY_DPO),
    "retention.sweeprun": AdminModel("sweep", STAFF),
    # Only the DPO starts it (a confirmation page follows the form); nobody edits or deletes it.
    "retention.servicetermination": AdminModel("termination", STAFF, add=ONLY_DPO, actions=ONLY_DPO),
    # Every field is read-only (findings are closed by an action): an empty POST saves nothing.
    "retention.childdatafinding": AdminModel(
        "finding", STAFF, change=WORKERS, actions=WORKERS, empty_change_post="302"
    ),
}

ADMIN_VIEWS = ("changelist", "add", "history", "delete", "change")


def admin_row(label: str, view: str) -> Row:
    """The six standard URLs of a ModelAdmin, by Django's admin rules: anyone not staff is sent
    to sign in; a staff member without the permission gets 403. The bare object URL redirects
    to the change page for everyone (it shows nothing itself)."""
    spec = ADMIN_MODELS[label]
    obj = lambda w: {"object_id": str(getattr(w, spec.obj).pk)}  # noqa: E731

    def cells(allowed: frozenset[str], yes: str, otherwise: str = "403") -> str:
        return " ".join("admin" if r not in STAFF else (yes if r in allowed else otherwise) for r in ROLES)

    if view == "object":
        return Row(cells(STAFF, "302"), kwargs=obj)

    readers = spec.view | spec.change
    if view == "changelist":
        # POST runs "delete selected" on the object. A role that may not delete is refused and
        # nothing changes: the list again (200), or, where it has other bulk actions, a redirect
        # back with "no action selected" (302).
        def post(r: str) -> str:
            if r not in STAFF:
                return "admin"
            if r in spec.delete:
                return "302"
            if r in readers:
                return "~302" if r in spec.actions else "~200"
            return "403"

        return Row(
            cells(readers, "200"),
            post=" ".join(post(r) for r in ROLES),
            data=lambda w: {
                "action": "delete_selected",
                "_selected_action": [getattr(w, spec.obj).pk],
                "post": "yes",
            },
        )
    if view == "add":
        return Row(cells(spec.add, "200"))  # an empty POST: the form again, with its errors
    if view == "history":
        return Row(cells(readers, "200"), kwargs=obj)
    if view == "delete":
        return Row(
            cells(spec.delete, "200"),
            post=cells(spec.delete, "302"),
            kwargs=obj,
            data=lambda w: {"post": "yes"},
        )
    # An empty POST: the form again with its errors, or saved as it was where nothing on the
    # page is editable.
    return Row(cells(readers, "200"), post=cells(spec.change, spec.empty_change_post), kwargs=obj)


# --- Walking the URL configuration -------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    key: str  # the URL name with its namespace, or the route for an unnamed pattern
    route: str
    name: str | None  # for reverse()
    admin: tuple[str, str] | None = None  # (model label, view) of a standard ModelAdmin URL


def _walk(
    resolver: URLResolver, prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str, URLPattern]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = entry.namespace or ""
            inner = f"{namespace}:{ns}" if namespace and ns else namespace or ns
            yield from _walk(entry, prefix + str(entry.pattern), inner)
        else:
            yield prefix + str(entry.pattern), namespace, entry


def _admin_standard() -> dict[str, tuple[str, str]]:
    """Route or name → (model label, view) for the standard URLs of every registered ModelAdmin."""
    found: dict[str, tuple[str, str]] = {}
    for model in admin.site._registry:
        label, app, name = model._meta.label_lower, model._meta.app_label, model._meta.model_name
        for view in ADMIN_VIEWS:
            found[f"admin:{app}_{name}_{view}"] = (label, view)
        found[f"admin/{app}/{name}/<path:object_id>/"] = (label, "object")
    return found


def url_patterns() -> list[Pattern]:
    standard = _admin_standard()
    patterns = []
    for route, namespace, entry in _walk(get_resolver()):
        name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
        key = name or route
        patterns.append(Pattern(key, route, name, standard.get(key)))
    return patterns


PATTERNS = url_patterns()


def row_for(pattern: Pattern) -> Row | None:
    if pattern.admin is not None:
        label, view = pattern.admin
        return admin_row(label, view) if label in ADMIN_MODELS else None
    return EXPECT.get(pattern.key)


# --- The world: objects that belong to "the subject", made on first use ------------------------


@cache_once
def password_hash() -> str:
    # Hashed once for the module: the password hasher is slow on purpose.
    return make_password(factories.PASSWORD)


class World:
    def __init__(self) -> None:
        self.subject_user = cast(User, factories.UserFactory(password=None))
        self.subject = factories.subject(user=self.subject_user, email=self.subject_user.email)
        self.other_user = cast(User, factories.UserFactory(password=None))
        factories.subject(user=self.other_user, email=self.other_user.email)
        self.staff = {role: factories.staff(role, password=None) for role in (AUDITOR, AGENT, DPO)}
        users = [self.subject_user, self.other_user, *self.staff.values()]
        User.objects.filter(pk__in=[u.pk for u in users]).update(password=password_hash())
        for user in users:  # force_login signs the session with the password it holds
            user.password = password_hash()
        self.api_key, self.api_secret = apikeys.api_key_create(name="product", scopes=[apikeys.CONSENT_CHECK])

    def client(self, role: str) -> Client:
        client = Client(HTTP_ACCEPT_LANGUAGE="en")
        if role == "key":
            client.defaults["HTTP_AUTHORIZATION"] = f"Api-Key {self.api_secret}"
        elif role != "anon":
            user = {"subj": self.subject_user, "other": self.other_user}.get(role) or self.staff[role]
            # What force_login leaves in the session, without the sign-in signals (the matrix
            # signs in seven hundred times a run; signing in itself is tested elsewhere).
            session = import_module(settings.SESSION_ENGINE).SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.save()
            client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
        return client

    @property
    def actor(self) -> Actor:
        return Actor.of(self.subject_user)

    # -- the subject's requests --

    @cached_property
    def request(self) -> DataSubjectRequest:
        """A verified correction request for themselves, with a proposed value and an ID photo."""
        return dsar_services.request_submit(
            actor=self.actor,
            type=RequestType.CORRECTION,
            subject=self.subject,
            user=self.subject_user,
            details="我的手机号有误",
            reauthenticated=True,
        )

    @cached_property
    def item(self) -> CorrectionItem:
        return corrections.correction_propose(
            request=self.request,
            actor=self.actor,
            target="quanyi",
            table="profile",
            column="phone",
            row=None,
            value="139 0013 9000",
        )

    @cached_property
    def document(self) -> VerificationDocument:
        upload = SimpleUploadedFile("id-card.png", PNG, content_type="image/png")
        return dsar_services.document_add(request=self.request, actor=self.actor, upload=upload)

    @cached_property
    def info(self) -> DataSubjectRequest:
        """An access request on which staff asked for more information."""
        dsr = dsar_services.request_submit(
            actor=self.actor,
            type=RequestType.ACCESS,
            subject=self.subject,
            user=self.subject_user,
            details="请提供我的就诊记录",
        )
        return dsar_services.request_ask_info(
            request=dsr, actor=Actor.of(self.staff[AGENT]), author=self.staff[AGENT], message="请上传身份证。"
        )

    @cached_property
    def access(self) -> DataSubjectRequest:
        """An access request whose package is ready."""
        dsr = dsar_services.request_submit(
            actor=self.actor,
            type=RequestType.ACCESS,
            subject=self.subject,
            user=self.subject_user,
            details="请给我一份我的个人信息",
            reauthenticated=True,
        )
        export = dsar_services.export_latest(dsr) or DataExport.objects.create(
            request=dsr, subject=self.subject
        )
        DataExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.READY, expires_at=timezone.now() + timedelta(days=7), size=1
        )
        return dsr

    @cached_property
    def export(self) -> DataExport:
        return DataExport.objects.filter(request=self.access).latest("pk")

    @cached_property
    def cancellation(self) -> Any:
        return cancellation.cancellation_schedule(user=self.subject_user, reauthenticated=True, language="en")

    @cached_property
    def erasure(self) -> Erasure:
        dsr = dsar_services.request_submit(
            actor=self.actor,
            type=RequestType.DELETION,
            subject=self.subject,
            user=self.subject_user,
            details="请删除我的数据",
            reauthenticated=True,
        )
        return dsar_erasure.request_erasure_plan(request=dsr, actor=SYSTEM)

    @cached_property
    def tombstone(self) -> Tombstone:
        return Tombstone.objects.create(
            erasure=self.erasure,
            subject_id_ref=self.subject.pk,
            key_id=self.subject.key_id,
            erased_at=timezone.now(),
        )

    # -- consents --

    @cached_property
    def demo(self) -> dict[str, int]:
        """The demo privacy policies and purposes (only where a URL needs them: it takes time)."""
        return load_demo()

    @cached_property
    def purpose(self) -> Purpose:
        self.demo  # noqa: B018
        return Purpose.objects.get(code="marketing_push")

    @cached_property
    def policy(self) -> PolicyVersion:
        self.demo  # noqa: B018
        found = consent_services.current_policy()
        assert found is not None
        return found

    @cached_property
    def event(self) -> ConsentEvent:
        return consent_services.consent_record(
            subject=self.subject,
            purpose=self.purpose,
            action=ConsentEvent.Action.GRANT,
            channel=ConsentEvent.Channel.WEB,
            actor=self.actor,
            user=self.subject_user,
        )

    @cached_property
    def state(self) -> Any:
        return ConsentState.objects.get(subject=self.subject, purpose=self.event.purpose)

    @cached_property
    def guardianship(self) -> GuardianConsent:
        """The subject is the guardian of a child under 14."""
        child = factories.subject(email="child@example.cn", full_name="王小明", birth_date=CHILD_BIRTH)
        return consent_services.guardian_consent_record(
            subject=child,
            actor=SYSTEM,
            guardian_name="王五",
            relationship="父亲",
            guardian_contact=self.subject_user.email,
            verification=GuardianConsent.Verification.ACCOUNT,
            guardian_user=self.subject_user,
        )

    @property
    def child(self) -> DataSubject:
        return self.guardianship.subject

    @cached_property
    def policy_response(self) -> PolicyResponse:
        return consent_services.policy_respond(
            subject=self.subject, policy=self.policy, decision="accept", actor=self.actor
        )

    @cached_property
    def incident(self) -> SecurityIncident:
        now = timezone.now()
        found = SecurityIncident.objects.create(
            title_zh="短信服务商数据泄露",
            title_en="SMS provider breach",
            what_happened_zh="经过",
            what_happened_en="what",
            occurred_at=now - timedelta(days=2),
            discovered_at=now - timedelta(days=1),
            categories=["contact"],
            impact_zh="影响",
            impact_en="impact",
            measures_zh="措施",
            measures_en="measures",
            advice_zh="建议",
            advice_en="advice",
            remedies_zh="补救",
            remedies_en="remedies",
            contact="privacy@quanyi.localhost",
        )
        incidents.incident_subjects_add(incident=found, subjects=[self.subject], actor=SYSTEM)
        return incidents.incident_announce(incident=found, actor=SYSTEM)

    @cached_property
    def incident_subject(self) -> Any:
        return self.incident.affected.get(subject=self.subject)

    @cached_property
    def campaign(self) -> NoticeCampaign:
        return campaigns.campaign_create(
            kind=NoticeCampaign.Kind.SECURITY_INCIDENT, actor=SYSTEM, incident=self.incident, start=False
        )

    @cached_property
    def termination(self) -> ServiceTermination:
        """The service stops in two months: announced, its notices not yet sent."""
        return termination.termination_start(
            actor=Actor.of(self.staff[DPO]),
            stop_on=timezone.localdate() + timedelta(days=60),
            reason="公司停止运营。",
            user=self.staff[DPO],
        )

    @cached_property
    def delivery(self) -> NoticeDelivery:
        return NoticeDelivery.objects.create(campaign=self.campaign, subject=self.subject)

    # -- the machinery --

    @cached_property
    def recipient(self) -> Recipient:
        return factories.recipient(code="shunda-logistics", categories=["contact"])

    @cached_property
    def disclosure(self) -> Any:
        return disclosure_record(
            recipient=self.recipient, subject=self.subject, categories=["contact"], actor=SYSTEM
        )

    @cached_property
    def notice(self) -> RecipientNotice:
        self.disclosure  # noqa: B018
        notices = recipients_notify(
            subject=self.subject, kind="deletion", reference="DSR-2026-000001", actor=SYSTEM
        )
        return notices[0]

    @cached_property
    def hold(self) -> LegalHold:
        return retention_services.hold_place(
            actor=SYSTEM,
            ground="dispute",
            reason="医疗纠纷诉讼中",
            review_on=timezone.localdate() + timedelta(days=90),
            subject=self.subject,
        )

    @cached_property
    def finding(self) -> ChildDataFinding:
        return ChildDataFinding.objects.create(subject=self.child, found_at=timezone.now())

    @cached_property
    def backup(self) -> Backup:
        now = timezone.now()
        return Backup.objects.create(
            set_id=self.subject.key_id,
            database="default",
            engine="sqlite",
            taken_at=now,
            expires_at=now + timedelta(days=30),
        )

    @cached_property
    def sweep(self) -> SweepRun:
        return SweepRun.objects.create(started_at=timezone.now())

    @cached_property
    def rule(self) -> RetentionRule:
        return RetentionRule.objects.order_by("pk").first() or pytest.fail(
            "the shipped retention rules are missing"
        )

    @cached_property
    def calendar_day(self) -> CalendarDay:
        return CalendarDay.objects.order_by("-date").first() or pytest.fail("the seeded calendar is missing")

    @cached_property
    def calendar_year(self) -> CalendarYear:
        return CalendarYear.objects.order_by("-year").first() or pytest.fail("the seeded calendar is missing")

    @cached_property
    def audit_entry(self) -> AuditEntry:
        return AuditEntry.objects.filter(
            object_type="accounts.datasubject", object_id=str(self.subject.pk)
        ).latest("seq")

    @cached_property
    def job(self) -> JobState:
        return JobState.objects.create(name="retention-sweep", last_status="ok")

    @cached_property
    def outbox(self) -> OutboxMessage:
        return OutboxMessage.objects.create(
            task_name="dsar.tasks.send_requester_email", kwargs={"request_id": 1}
        )

    @cached_property
    def group(self) -> Any:
        return self.staff[AGENT].groups.get()

    @cached_property
    def email_address(self) -> Any:
        return self.subject_user.emailaddress_set.get()

    @cached_property
    def authenticator(self) -> Any:
        from allauth.mfa.models import Authenticator

        return Authenticator.objects.create(
            user=self.staff[DPO], type=Authenticator.Type.RECOVERY_CODES, data={"seed": "00", "used_mask": 0}
        )

    @cached_property
    def content_type_id(self) -> int:
        from django.contrib.contenttypes.models import ContentType

        return ContentType.objects.get_for_model(DataSubjectRequest).pk


# --- Running one URL -----------------------------------------------------------------------------


def _tables() -> list[tuple[str, str, list[str]]]:
    """(database, table, columns) of every model of Quanyi and of allauth, minus columns that any
    request may touch: when an API key was last used, a user's last sign-in."""
    volatile = {"consent_apikey": {"last_used_at"}, "accounts_user": {"last_login"}}
    found = []
    for label in ("core", "accounts", "consent", "dsar", "retention", "account", "mfa", "auth", "admin"):
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            if not model._meta.managed:
                continue
            table = model._meta.db_table
            columns = [
                f.column for f in model._meta.concrete_fields if f.column not in volatile.get(table, set())
            ]
            found.append((router.db_for_read(model) or "default", table, columns))
    return found


TABLES = _tables()


def snapshot() -> dict[str, str]:
    digests = {}
    for alias, table, columns in TABLES:
        connection = connections[alias]
        quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {quoted} FROM {connection.ops.quote_name(table)} ORDER BY 1")  # noqa: S608 - names from the models
            digests[table] = hashlib.sha256(repr(cursor.fetchall()).encode()).hexdigest()
    return digests


def outcome(response: HttpResponse) -> str:
    if response.status_code == 302:
        location = response["Location"]
        for prefix, word in (
            (reverse("account_login"), "login"),
            (reverse("admin:login"), "admin"),
            (reverse("account_reauthenticate"), "reauth"),
        ):
            if location.startswith(prefix):
                return word
    return str(response.status_code)


def denies(expected: str) -> bool:
    return expected in ("login", "admin") or expected.startswith(("4", "~"))


@dataclass
class Cell:
    role: str
    method: str
    expected: str
    got: str = field(default="")


def run(client: Client, method: str, url: str, row: Row, data: Any) -> HttpResponse:
    # Each cell as if it came first: no rate-limit counter carries over from another role.
    cache.clear()
    if method == "GET":
        return cast(HttpResponse, client.get(url))
    if method == "DELETE":
        return cast(HttpResponse, client.delete(url))
    if row.json:
        return cast(HttpResponse, client.post(url, data, content_type="application/json"))
    return cast(HttpResponse, client.post(url, data))


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.key for p in PATTERNS])
def test_permission_matrix(pattern: Pattern, settings: Any, tmp_path: Any) -> None:
    row = row_for(pattern)
    if row is None:
        where = f"ADMIN_MODELS[{pattern.admin[0]!r}]" if pattern.admin else f"EXPECT[{pattern.key!r}]"
        pytest.fail(
            f"URL pattern {pattern.route!r} ({pattern.key}) has no row in the permission table: add {where}."
        )
    settings.QUANYI_EXPORT_DIR = tmp_path
    world = World()
    for name in row.setup:
        getattr(world, name)
    if row.path is not None:
        url = row.path(world)
    elif pattern.admin and pattern.admin[1] == "object":  # unnamed
        url = "/" + pattern.route.replace("<path:object_id>", row.kwargs(world)["object_id"])
    elif pattern.name:
        url = reverse(pattern.name, kwargs=row.kwargs(world))
    else:
        pytest.fail(f"{pattern.route!r} has no name: give its row a path.")
    query = row.query(world)
    if query:
        url = f"{url}?{query}"
    data = row.data(world)  # objects it names are made now, not among the refused requests
    clients = {role: world.client(role) for role in ROLES}
    methods = ["GET", "POST"] + (["DELETE"] if row.delete else [])
    cells = [
        Cell(role, m, expected)
        for m in methods
        for role, expected in zip(ROLES, row.outcomes(m), strict=True)
    ]

    # Refused first, on the untouched world: together they must change nothing.
    before = snapshot()
    for cell in (c for c in cells if denies(c.expected)):
        got = outcome(run(clients[cell.role], cell.method, url, row, data))
        cell.got = f"~{got}" if cell.expected.startswith("~") else got
    after = snapshot()
    changed = sorted(t for t in before if before[t] != after[t])
    for cell in (c for c in cells if not denies(c.expected)):
        cell.got = outcome(run(clients[cell.role], cell.method, url, row, data))

    wrong = [
        f"{c.method} as {c.role}: expected {c.expected}, got {c.got}" for c in cells if c.got != c.expected
    ]
    assert not wrong, f"{url}:\n  " + "\n  ".join(wrong)
    assert not changed, f"{url}: refused requests changed {', '.join(changed)}"


def test_the_table_has_no_rows_for_urls_that_are_gone() -> None:
    keys = {p.key for p in PATTERNS}
    assert sorted(set(EXPECT) - keys) == []
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert sorted(set(ADMIN_MODELS) - registered) == []
