"""No personal data in logs. Every logger (root, django, celery, allauth, the project's) is turned
up to DEBUG into a buffer, a real Celery worker logs at DEBUG into its file, and one person goes
through the whole system: sign-up and e-mail confirmation, sign-in, consent granted and
withdrawn, an access request triaged and verified by staff in the admin with its package built by
the worker, a correction approved, and a deletion request erased by the worker. Then neither
output may contain the person's e-mail address, phone or resident ID number — whole, in another
case, or in part."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connections
from django.test import Client
from django.urls import reverse

from accounts.models import DataSubject, User
from accounts.roles import AGENT
from accounts.services import subject_update
from consent.demo import load_demo
from consent.models import ConsentEvent
from core.audit import Actor
from dsar import sample_product
from dsar.models import CorrectionItem, DataExport, DataSubjectRequest, ExportStatus, OnBehalf, RequestType
from retention.models import Erasure
from tests import factories
from tests.conftest import ALL, Worker, wait_for

EMAIL = "Xiaoming.Zhao-Quanyi@Example.cn"
PHONE = "13987650123"
NEW_PHONE = "13987650456"
ID_NUMBER = "44030519880623417X"  # a valid 18-digit resident ID (checksum X)
PERSON = sample_product.Person(
    email=EMAIL.lower(),
    phone=PHONE,
    name="赵小明",
    id_number=ID_NUMBER,
    birthday="1988-06-23",
    gender="男",
    native_place="广东省深圳市",
)
LOGGERS = ("", "django", "celery", "allauth", "kombu")


def needles() -> list[str]:
    """Each value whole, in lower and upper case, and in the parts a careless log would keep
    (the local part of the address, the phone without its prefix, either half of the ID)."""
    local = EMAIL.split("@")[0]
    values = [
        EMAIL,
        local,
        PHONE,
        f"{PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}",
        PHONE[3:],
        NEW_PHONE,
        NEW_PHONE[3:],
        ID_NUMBER,
        ID_NUMBER[:10],
        ID_NUMBER[-8:],
    ]
    return sorted({v for value in values for v in (value, value.lower(), value.upper())})


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(handler)
    # The project pins django.db.backends and django.template above DEBUG (their DEBUG records
    # carry SQL parameters and template contexts); that pin is part of what is tested here.
    yield buffer
    for logger, level, disabled in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled


def _ok(response: Any, status: int = 302) -> Any:
    assert response.status_code == status, response.content.decode()[:2000]
    return response


def _act(client: Client, dsr: DataSubjectRequest, action: str, data: dict[str, str] | None = None) -> None:
    url = reverse("admin:dsar_datasubjectrequest_act", args=[dsr.pk, action])
    _ok(client.post(url, data or {}))


def _submit(client: Client, type: str, data: dict[str, str]) -> DataSubjectRequest:
    before = set(DataSubjectRequest.objects.values_list("pk", flat=True))
    _ok(client.post(reverse("dsar:submit", args=[type]), {"on_behalf": OnBehalf.SELF, **data}))
    return DataSubjectRequest.objects.exclude(pk__in=before).get()


def _order_ids() -> list[int]:
    with connections["product"].cursor() as cursor:
        cursor.execute(
            "SELECT o.id FROM orders o JOIN patients p ON p.id = o.patient_id "
            "WHERE p.email = %s ORDER BY o.id",
            [PERSON.email],
        )
        return [int(r[0]) for r in cursor.fetchall()]


@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(300)
def test_a_whole_journey_leaves_no_personal_data_in_any_log(
    product: None, own_queue: str, tmp_path: Path, captured: io.StringIO
) -> None:
    sample_product.demo_load([PERSON])
    load_demo()
    worker = Worker(tmp_path / "worker.log", tmp_path / "mail", queue=own_queue, loglevel="DEBUG")
    worker.start()
    try:
        _journey(worker)
    finally:
        worker.stop()

    logs = {"in-process": captured.getvalue(), "worker": worker.log()}
    # Both outputs did record the journey (so an empty capture cannot pass).
    assert "WARNING django.request Not Found: /no-such-page/" in logs["in-process"]
    for task in ("build_export", "send_export_ready", "send_requester_email", "run_erasure"):
        assert re.search(rf"Task dsar\.tasks\.{task}\[[-0-9a-f]+\] succeeded", logs["worker"]), task
    assert "DEBUG/MainProcess" in logs["worker"]
    leaks = {
        (where, needle, text[max(m.start() - 80, 0) : m.end() + 80])
        for where, text in logs.items()
        for needle in needles()
        for m in [re.search(re.escape(needle), text)]
        if m
    }
    assert not leaks, "\n".join(f"{w}: {n!r} in …{ctx}…" for w, n, ctx in sorted(leaks))


def _journey(worker: Worker) -> None:
    person = Client(HTTP_ACCEPT_LANGUAGE="en")
    staff = Client(HTTP_ACCEPT_LANGUAGE="en")

    # First, without an account: a public request, confirmed with the code from the e-mail.
    anonymous = Client(HTTP_ACCEPT_LANGUAGE="en")
    public_form = {"name": PERSON.name, "email": EMAIL, "phone": PHONE, "details": ID_NUMBER}
    _submit(anonymous, RequestType.COPY, public_form)
    code = re.search(r"^\s+(\d{6})\s*$", str(mail.outbox[-1].body), re.MULTILINE)
    assert code, mail.outbox[-1].body
    _ok(anonymous.post(reverse("dsar:code"), {"code": code.group(1)}))
    _ok(anonymous.get("/no-such-page/"), 404)

    # Sign-up, the confirmation link from the e-mail, a fresh sign-in.
    _ok(
        person.post(
            reverse("account_signup"),
            {
                "email": EMAIL,
                "password1": factories.PASSWORD,
                "password2": factories.PASSWORD,
                "phone": f"{PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}",
            },
        )
    )
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", str(mail.outbox[-1].body))
    assert link, mail.outbox[-1].body
    _ok(person.post(link.group(0).split("testserver", 1)[-1]))
    user = User.objects.get(email=EMAIL.lower())
    subject = DataSubject.objects.get(user=user)
    subject_update(actor=Actor.of(user), subject=subject, full_name=PERSON.name, id_number=ID_NUMBER)
    person.logout()
    wrong = person.post(reverse("account_login"), {"login": EMAIL, "password": "not-my-password"})
    _ok(wrong, 200)
    _ok(person.post(reverse("account_login"), {"login": EMAIL, "password": factories.PASSWORD}))

    # Consent granted, then withdrawn.
    for action in ("grant", "withdraw"):
        _ok(person.post(reverse("consent:mine"), {"purpose": "marketing_push", "action": action}))
    assert ConsentEvent.objects.filter(subject=subject).count() == 2

    # An access request: staff take it, verify the identity, start, and the worker builds the package.
    agent = factories.staff(AGENT)
    staff.force_login(agent)
    access = _submit(person, RequestType.ACCESS, {"details": "请提供我的全部就诊记录"})
    _ok(staff.get(reverse("admin:dsar_datasubjectrequest_changelist") + f"?q={EMAIL}"), 200)
    for action, data in (
        ("assign_me", {}),
        ("verify", {"method": "documents"}),
        ("start", {}),
        ("export", {}),
    ):
        _act(staff, access, action, data)
    wait_for(
        lambda: DataExport.objects.filter(request=access, status=ExportStatus.READY).exists(), timeout=120
    )
    _ok(person.post(reverse("account_reauthenticate"), {"password": factories.PASSWORD}))
    _ok(person.get(reverse("dsar:download", args=[access.pk])), 200)
    _act(staff, access, "complete", {"answer": "已提供访问包。"})

    # A correction of the phone on an order, approved in the admin.
    order = _order_ids()[0]
    correction = _submit(
        person,
        RequestType.CORRECTION,
        {
            "details": "",
            f"c-new:health_app.orders.phone.{order}": NEW_PHONE,
            f"c-why:health_app.orders.phone.{order}": "换号了",
        },
    )
    for action, data in (("assign_me", {}), ("verify", {"method": "documents"}), ("start", {})):
        _act(staff, correction, action, data)
    item = CorrectionItem.objects.get(request=correction)
    url = reverse("admin:dsar_datasubjectrequest_correction", args=[correction.pk, item.pk, "approve"])
    _ok(staff.post(url, {"reason": ""}))
    item.refresh_from_db()
    assert item.applied_at is not None

    # A deletion request: verified, planned, confirmed, erased by the worker.
    deletion = _submit(person, RequestType.DELETION, {"details": "请删除我的全部数据"})
    for action, data in (("assign_me", {}), ("verify", {"method": "documents"}), ("plan_erasure", {})):
        _act(staff, deletion, action, data)
    _act(staff, deletion, "confirm_erasure")
    wait_for(
        lambda: Erasure.objects.filter(reference=deletion.reference, status=Erasure.Status.DONE).exists(),
        timeout=120,
    )
    assert worker.mails(), "the worker sent the person's e-mails"
