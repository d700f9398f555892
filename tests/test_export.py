"""The access package (issue "Fulfilment"): what it holds, how it is stored, who may download it,
and that building it keeps memory flat however many rows the person has."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import time_machine
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from config.celery import app as celery_app
from consent.models import PolicyVersion, Purpose
from consent.services import consent_record
from core import crypto, sources
from core.audit import SYSTEM, Actor, audit_verify
from core.models import AuditEntry, OutboxMessage
from dsar import export as package
from dsar import notifications, sample_product, services
from dsar.models import (
    DataExport,
    DataSubjectRequest,
    ExportStatus,
    OnBehalf,
    RequestType,
    Status,
    VerificationMethod,
)
from tests import factories
from tests.conftest import ALL, Worker, manage, wait_for

pytestmark = pytest.mark.django_db(databases=ALL)

ZHANG = sample_product.Person(
    email="zhang.export@example.cn",
    phone="13800138000",
    name="张三",
    id_number="110101199003071234",
    birthday="1990-03-07",
    gender="男",
    native_place="北京市东城区",
)
WANG = sample_product.Person(
    email="wang.export@example.cn",
    phone="13700137000",
    name="王五",
    id_number="310101198001011111",
    birthday="1980-01-01",
    gender="男",
    native_place="上海市黄浦区",
)
SCHEMA = json.loads(package.SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _english_messages() -> Iterator[None]:
    """Service messages are asserted in English; pages pick their language per request."""
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def export_dir(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Path:
    """A folder of packages per test; a real worker (a separate process) keeps its own."""
    if request.node.get_closest_marker("worker"):
        return Path(settings.QUANYI_EXPORT_DIR)
    folder = tmp_path / "exports"
    settings.QUANYI_EXPORT_DIR = folder
    return folder


# --- helpers ------------------------------------------------------------------------------------


def person_user(person: sample_product.Person, *, language: str = "zh-hans") -> User:
    user = cast(User, factories.UserFactory(email=person.email, language=language))
    factories.subject(
        user=user,
        email=person.email,
        phone=person.phone,
        id_number=person.id_number,
        full_name=person.name,
        language=language,
    )
    return user


def subject_of(user: User) -> DataSubject:
    return DataSubject.objects.get(user=user)


def self_service(user: User, type: str = RequestType.ACCESS) -> DataSubjectRequest:
    """A signed-in subject who reauthenticated asks for their own data: verified at once, and
    the package is queued without staff."""
    subject = subject_of(user)
    return services.request_submit(
        actor=Actor.of(user),
        type=type,
        subject=subject,
        user=user,
        details="请给我一份我的全部个人信息",
        language=subject.language,
        reauthenticated=True,
    )


def built(dsr: DataSubjectRequest) -> DataExport:
    export = services.export_latest(dsr)
    assert export is not None, "no package was queued"
    assert services.export_build(export_id=export.pk) == services.BUILT, export.last_error
    export.refresh_from_db()
    assert export.status == ExportStatus.READY, export.last_error
    return export


def package_zip(export: DataExport) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(services.export_open(export))))


def data_of(zf: zipfile.ZipFile) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(zf.read("data.json")))


def tables_of(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["code"], t["name"]): t for s in data["sources"] for t in s["tables"]}


def patient_id(person: sample_product.Person) -> int:
    with connections["product"].cursor() as cursor:
        cursor.execute("SELECT id FROM patients WHERE email = %s", [person.email])
        return int(cursor.fetchone()[0])


def add_messages(
    person: sample_product.Person,
    n: int,
    body: str = "复诊提醒：请按时服药并注意饮食。",
    *,
    noise: bool = False,
) -> None:
    """`noise` makes each body unique and incompressible, for a package of many 64 KiB chunks."""
    pid = patient_id(person)
    now = datetime.now(tz=UTC)
    for start in range(0, n, 10_000):
        rows = [
            (pid, "app", "out", f"{body} #{i}" + (f" {os.urandom(24).hex()}" if noise else ""), now)
            for i in range(start, min(n, start + 10_000))
        ]
        sample_product.insert_rows(
            "messages", ["patient_id", "channel", "direction", "body", "sent_at"], rows
        )


def reauthenticate(client: Client) -> None:
    response = client.post(reverse("account_reauthenticate"), {"password": factories.PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]


def download_url(dsr: DataSubjectRequest) -> str:
    return reverse("dsar:download", args=[dsr.pk])


def streamed(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def a_policy_and_purpose() -> Purpose:
    now = timezone.now()
    PolicyVersion.objects.create(
        version=1,
        title_zh="隐私政策",
        title_en="Privacy policy",
        body_zh="正文",
        body_en="Text",
        effective_at=now - timedelta(days=1),
        published_at=now - timedelta(days=1),
    )
    return Purpose.objects.create(
        code="health_reminders",
        name_zh="健康提醒",
        name_en="Health reminders",
        description_zh="向您推送复诊和用药提醒",
        description_en="Reminders of check-ups and medicine",
    )


# --- What the package holds -----------------------------------------------------------------------


def test_the_package_holds_every_category_the_subject_has_and_never_anyone_elses_rows(
    product: None,
) -> None:
    sample_product.demo_load([ZHANG, WANG])
    user = person_user(ZHANG)
    export = built(self_service(user))
    zf = package_zip(export)
    data = data_of(zf)
    tables = tables_of(data)

    # Every table of the data map where the subject has rows, with each of its categories.
    identifiers = sources.identifiers_clean({"email": [ZHANG.email]})
    expected_rows = 0
    for source in sources.source_maps():
        rows = sources.subject_rows(source, identifiers)
        for table in source.tables.values():
            count = sources.count_rows(rows, table)
            if not count:
                continue
            expected_rows += count
            got = tables[(source.code, table.name)]
            assert set(table.categories) <= set(got["categories"]), table.name
            assert got["row_count"] == count == len(got["rows"])
            assert got["csv"] == f"csv/{source.code}/{table.name}.csv"
            with zf.open(got["csv"]) as f:
                assert len(list(csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig")))) == count + 1
            assert got["purpose"] == sources.text(table.purpose, "zh-hans")
            assert got["origin"] == sources.text(table.origin, "zh-hans")
    assert expected_rows > 10
    held = {c for t in tables.values() if t["row_count"] for c in t["categories"]}
    assert {"health", "location", "unique_device_identifiers", "orders_delivery", "communications"} <= held

    # Not one value of the other patient, in any file of the package.
    everything = b"".join(zf.read(name) for name in zf.namelist()).decode("utf-8", errors="replace")
    for value in (WANG.email, WANG.phone, WANG.name, WANG.id_number, WANG.native_place):
        assert value not in everything
    assert ZHANG.native_place in everything
    assert export.rows_done == export.rows_total == sum(t["row_count"] for t in tables.values())


def test_the_package_names_every_recipient_of_the_disclosure_register(product: None) -> None:
    from core.audit import SYSTEM
    from core.recipients import disclosure_record

    sample_product.demo_load([ZHANG])
    user = person_user(ZHANG)
    carrier = factories.recipient(
        categories=["orders_delivery", "contact"], contact_email="privacy@shunda.example.cn"
    )
    disclosure_record(
        recipient=carrier,
        subject=subject_of(user),
        categories=["orders_delivery"],
        external_ref="SD-1",
        actor=SYSTEM,
    )

    zf = package_zip(built(self_service(user)))

    recipients = data_of(zf)["recipients"]
    assert [(r["name"], r["categories"], r["contact"]) for r in recipients] == [
        ("顺达物流有限公司", ["orders_delivery"], "privacy@shunda.example.cn")
    ]
    assert "SD-1" not in zf.read("data.json").decode()  # the recipient's own reference stays ours
    index = zf.read("index.html").decode()
    assert "顺达物流有限公司" in index and "配送订单商品" in index


def test_data_json_validates_against_the_shipped_schema_and_ships_it(product: None) -> None:
    sample_product.demo_load([ZHANG])
    user = person_user(ZHANG)
    zf = package_zip(built(self_service(user)))

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    data = data_of(zf)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    assert errors == []
    assert zf.read("schema.json") == package.SCHEMA_PATH.read_bytes()
    assert data["format"] == "quanyi-access-package" and data["version"] == 1
    assert data["request"]["type"] == "access"
    assert data["recipients"] == []
    # The schema is strict: a field it does not know is an error, so it cannot fall behind.
    data["sources"][0]["tables"][0]["unexpected"] = 1
    assert not validator.is_valid(data)


def test_csv_files_have_a_bom_a_header_and_neutralised_formulas(product: None) -> None:
    sample_product.demo_load([ZHANG])
    add_messages(ZHANG, 1, body='=HYPERLINK("http://evil.example")')
    user = person_user(ZHANG)
    zf = package_zip(built(self_service(user)))

    raw = zf.read("csv/health_app/messages.csv")
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the Chinese correctly
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["channel", "direction", "body", "sent_at"]
    bodies = [r[2] for r in rows[1:]]
    assert any("补牙" in b for b in bodies)
    assert '\'=HYPERLINK("http://evil.example") #0' in bodies
    # data.json keeps the exact value.
    messages = tables_of(data_of(zf))[("health_app", "messages")]["rows"]
    assert '=HYPERLINK("http://evil.example") #0' in [m["body"] for m in messages]


def test_index_html_is_chinese_for_a_chinese_subject_and_never_runs_a_script(product: None) -> None:
    sample_product.demo_load([ZHANG])
    add_messages(ZHANG, 250, body="<script>alert(1)</script>")
    user = person_user(ZHANG, language="zh-hans")
    zf = package_zip(built(self_service(user)))
    page = zf.read("index.html").decode()

    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="zh-hans">' in page
    for text in ("健康档案", "健康信息", "医生查看健康信息、提供诊疗服务", "您注册和完善资料时提供", "张三"):
        assert text in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Self-contained: nothing is loaded from anywhere.
    for loads in ("<link", "<img", "<iframe", "src=", "@import", "url("):
        assert loads not in page
    # A big table shows its first 200 rows and points to its CSV.
    section = page.split('id="t-health_app-messages"', 1)[1].split("</section>", 1)[0]
    assert section.count("<tr>") == 1 + 200  # the header row and 200 rows
    assert "csv/health_app/messages.csv" in section


def test_index_html_is_english_for_an_english_subject(product: None) -> None:
    sample_product.demo_load([ZHANG])
    user = person_user(ZHANG, language="en")
    zf = package_zip(built(self_service(user)))
    page = zf.read("index.html").decode()
    data = data_of(zf)

    assert '<html lang="en">' in page
    for text in (
        "Health records",
        "Health information",
        "Doctors viewing health information to provide care",
    ):
        assert text in page
    assert "健康档案" not in page
    assert "<script" not in page.lower()
    assert data["language"] == "en"
    assert tables_of(data)[("health_app", "health_records")]["label"] == "Health records"


def test_quanyi_records_follow_the_data_map(product: None) -> None:
    user = person_user(ZHANG)
    subject = subject_of(user)
    purpose = a_policy_and_purpose()
    consent_record(subject=subject, purpose=purpose, action="grant", channel="web", actor=Actor.of(user))
    consent_record(subject=subject, purpose=purpose, action="withdraw", channel="web", actor=Actor.of(user))
    earlier = services.request_submit(
        actor=SYSTEM, type=RequestType.CORRECTION, subject=subject, user=user, details="我的出生日期有误"
    )
    services.request_note(request=earlier, actor=SYSTEM, author=user, body="内部备注：已电话核实")
    dsr = self_service(user)
    zf = package_zip(built(dsr))
    tables = tables_of(data_of(zf))
    everything = b"".join(zf.read(n) for n in zf.namelist()).decode()

    profile = tables[("quanyi", "profile")]
    assert profile["rows"][0]["email"] == ZHANG.email
    assert profile["rows"][0]["id_number"] != ZHANG.id_number  # Export.MASKED
    assert profile["rows"][0]["id_number"].endswith(ZHANG.id_number[-4:])
    assert {c["name"]: c["export"] for c in profile["columns"]}["id_number"] == "masked"
    assert not {"email_index", "phone_index", "id_number_index"} & {c["name"] for c in profile["columns"]}
    account = tables[("quanyi", "account")]
    assert [c["name"] for c in account["columns"]] == [
        "email",
        "display_name",
        "language",
        "date_joined",
        "last_login",
    ]
    assert user.password not in everything and "argon2" not in everything  # never the hash
    events = tables[("quanyi", "consent_events")]["rows"]
    assert [(e["purpose"], e["policy_version"]) for e in events] == [("health_reminders", 1)] * 2
    assert tables[("quanyi", "consent_current")]["rows"][0]["granted"] is False
    requests = {r["reference"]: r for r in tables[("quanyi", "requests")]["rows"]}
    assert set(requests) == {earlier.reference, dsr.reference}
    assert requests[earlier.reference]["details"] == "我的出生日期有误"
    assert "内部备注" not in everything  # staff's internal notes are not messages to the requester


def test_another_persons_contact_details_on_a_request_about_the_subject_are_left_out(product: None) -> None:
    user = person_user(ZHANG)
    subject = subject_of(user)
    services.request_submit(
        actor=SYSTEM,
        type=RequestType.ACCESS,
        subject=subject,
        on_behalf=OnBehalf.AGENT,
        requester_name="代理人赵六",
        requester_email="agent.zhao@example.cn",
        relationship="律师",
        documents=[io.BytesIO(b"%PDF-1.7\n%%EOF\n")],
    )
    zf = package_zip(built(self_service(user)))
    everything = b"".join(zf.read(n) for n in zf.namelist()).decode()
    assert "代理人赵六" not in everything and "agent.zhao@example.cn" not in everything


# --- Stored encrypted ---------------------------------------------------------------------------


def test_the_stored_file_is_encrypted_and_decrypts_back_to_the_zip(product: None, export_dir: Path) -> None:
    sample_product.demo_load([ZHANG])
    add_messages(ZHANG, 4000, noise=True)  # several 64 KiB chunks
    user = person_user(ZHANG)
    export = built(self_service(user))

    files = sorted(p.name for p in export_dir.iterdir())
    assert files == [export.file_path]  # no plaintext, no temporary file left behind
    stored = (export_dir / export.file_path).read_bytes()
    assert not stored.startswith(b"PK")
    assert stored.startswith(package.MAGIC)
    assert b"zhang.export" not in stored and "张三".encode() not in stored
    plain = b"".join(services.export_open(export))
    assert plain.startswith(b"PK")
    assert hashlib.sha256(plain).hexdigest() == export.sha256
    assert len(plain) == export.size
    assert len(stored) > len(plain)  # a tag per chunk and the header
    assert zipfile.ZipFile(io.BytesIO(plain)).testzip() is None
    # The file key exists only wrapped under the subject's key, bound to this export.
    assert export.wrapped_key.startswith(crypto.PREFIX)
    assert crypto.token_key_id(export.wrapped_key) == subject_of(user).key_id
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(export.wrapped_key, aad="dsar.export:999999")


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "swap"])
def test_an_altered_file_fails_to_decrypt_with_a_clear_error(
    product: None, export_dir: Path, damage: str, client: Client
) -> None:
    sample_product.demo_load([ZHANG])
    add_messages(ZHANG, 4000, noise=True)
    user = person_user(ZHANG)
    dsr = self_service(user)
    export = built(dsr)
    path = export_dir / export.file_path
    data = bytearray(path.read_bytes())
    chunk = package.CHUNK + package.TAG
    assert len(data) > package.HEADER + 2 * chunk
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":  # cut exactly at a chunk boundary: only the final flag tells
        del data[package.HEADER + chunk :]
    elif damage == "extend":
        data += bytes(100)
    else:  # the first two chunks in the other order
        first = data[package.HEADER : package.HEADER + chunk]
        data[package.HEADER : package.HEADER + chunk] = data[
            package.HEADER + chunk : package.HEADER + 2 * chunk
        ]
        data[package.HEADER + chunk : package.HEADER + 2 * chunk] = first
    path.write_bytes(bytes(data))

    key = services._export_key(export)
    with pytest.raises(package.ExportCorrupt, match="damaged or was altered"), path.open("rb") as f:
        for _chunk in package.decrypt_chunks(f, key=key, export_id=export.pk):
            pass
    with pytest.raises(services.ExportUnavailable) as exc:
        services.export_download(export=export, actor=Actor.of(user))
    assert exc.value.reason == "corrupt"

    # Through the portal: a clear page, nothing streamed, nothing counted, the attempt audited.
    client.force_login(user)
    reauthenticate(client)
    response = client.get(download_url(dsr))
    assert response.status_code == 500
    assert not getattr(response, "streaming", False)
    assert 'id="export-gone"' in response.content.decode()
    export.refresh_from_db()
    assert export.download_count == 0
    assert AuditEntry.objects.filter(action="export.unreadable", object_id=str(dsr.pk)).count() == 2
    assert not AuditEntry.objects.filter(action="export.downloaded").exists()


def test_destroying_the_subject_key_makes_the_package_unreadable_without_an_error_page(
    product: None, client: Client
) -> None:
    sample_product.demo_load([ZHANG])
    user = person_user(ZHANG)
    dsr = self_service(user)
    export = built(dsr)

    crypto.subject_key_destroy(subject_of(user).key_id)  # erasure: crypto-shredding
    crypto.clear_key_cache()

    with pytest.raises(services.ExportUnavailable) as exc:
        services.export_open(export)
    assert exc.value.reason == "key_destroyed"
    client.force_login(user)
    reauthenticate(client)
    response = client.get(download_url(dsr))
    assert response.status_code == 410
    assert "erased" in response.content.decode() or "删除" in response.content.decode()
    export.refresh_from_db()
    assert export.download_count == 0
    # And nothing new can be started for an erased subject.
    with pytest.raises(services.TransitionError):
        services.export_start(request=self_service_new(user), actor=SYSTEM)


def self_service_new(user: User) -> DataSubjectRequest:
    # A request recorded for a subject whose key is gone (as the erasure flow would leave it).
    return DataSubjectRequest.objects.create(
        reference="DSR-2099-000001",
        type=RequestType.ACCESS,
        status=Status.VERIFIED,
        subject=subject_of(user),
        user=user,
    )


# --- Downloading --------------------------------------------------------------------------------

ROLES = ["anonymous", "subject", "another subject", AGENT, DPO, AUDITOR]


@pytest.mark.parametrize("role", ROLES)
def test_only_the_owner_downloads_the_package(product: None, client: Client, role: str) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner)
    export = built(dsr)
    if role == "subject":
        client.force_login(owner)
        reauthenticate(client)
    elif role == "another subject":
        other = person_user(WANG)
        client.force_login(other)
        reauthenticate(client)
    elif role != "anonymous":
        client.force_login(factories.staff(role))

    response = client.get(download_url(dsr))

    export.refresh_from_db()
    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))
    elif role == "subject":
        assert response.status_code == 200
        assert response["Content-Type"] == "application/zip"
        assert response["Content-Disposition"] == f'attachment; filename="quanyi-{dsr.reference}.zip"'
        assert response["Cache-Control"] == "no-store, private"
        body = streamed(response)
        assert int(response["Content-Length"]) == len(body) == export.size
        assert "data.json" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    else:
        assert response.status_code == 404
    downloads = AuditEntry.objects.filter(action="export.downloaded", object_id=str(dsr.pk))
    assert export.download_count == downloads.count() == (1 if role == "subject" else 0)
    if role == "subject":
        assert (downloads[0].actor_type, downloads[0].actor_id) == ("user", str(owner.pk))
        assert downloads[0].data == {"export": export.pk, "sha256": export.sha256}


def test_download_asks_for_a_recent_reauthentication_first(
    product: None, client: Client, settings: Any
) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner)
    built(dsr)
    client.force_login(owner)

    response = client.get(download_url(dsr))
    assert response.status_code == 302
    assert response["Location"] == (
        reverse("account_reauthenticate") + "?next=" + download_url(dsr).replace("/", "%2F")
    )

    reauthenticate(client)
    assert client.get(download_url(dsr)).status_code == 200
    with time_machine.travel(
        timezone.now() + timedelta(seconds=settings.ACCOUNT_REAUTHENTICATION_TIMEOUT + 5)
    ):
        assert client.get(download_url(dsr)).status_code == 302  # too long ago: asked again


def test_a_guardian_who_asked_for_a_child_gets_no_package_in_the_portal(
    product: None, client: Client
) -> None:
    child_user = person_user(ZHANG)
    child = subject_of(child_user)
    guardian = person_user(WANG)
    dsr = services.request_submit(
        actor=Actor.of(guardian),
        type=RequestType.ACCESS,
        subject=child,
        user=guardian,
        on_behalf=OnBehalf.GUARDIAN,
        relationship="父亲",
        documents=[io.BytesIO(b"%PDF-1.7\n%%EOF\n")],
    )
    services.request_verify(request=dsr, actor=SYSTEM, method=VerificationMethod.DOCUMENTS)
    with pytest.raises(services.TransitionError, match="on someone's behalf"):
        services.export_start(request=dsr, actor=SYSTEM)  # staff use export_subject instead

    # Even a package that exists for it (started before this rule) is the child's alone.
    export = DataExport.objects.create(request=dsr, subject=child, language="zh-hans")
    assert services.export_build(export_id=export.pk) == services.BUILT
    client.force_login(guardian)
    reauthenticate(client)
    page = client.get(reverse("dsar:detail", args=[dsr.pk]))
    assert page.status_code == 200 and "export-download" not in page.content.decode()
    assert client.get(download_url(dsr)).status_code == 404


def test_an_expired_package_answers_410_and_the_hourly_job_deletes_it(
    product: None, client: Client, export_dir: Path
) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner)
    export = built(dsr)
    assert export.expires_at == export.finished_at + timedelta(days=7)
    client.force_login(owner)

    with time_machine.travel(export.expires_at + timedelta(minutes=1)):
        reauthenticate(client)
        response = client.get(download_url(dsr))
        assert response.status_code == 410
        assert 'data-reason="expired"' in response.content.decode()

        assert services.exports_expire() == 1
        assert services.exports_expire() == 0  # harmless to run again

    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED
    assert (export.file_path, export.wrapped_key) == ("", "")  # the file and its key are gone
    assert list(export_dir.iterdir()) == []
    assert AuditEntry.objects.filter(action="export.expired", object_id=str(dsr.pk)).count() == 1
    with time_machine.travel(export.expires_at + timedelta(minutes=2)):
        reauthenticate(client)
        assert client.get(download_url(dsr)).status_code == 410
    page = client.get(reverse("dsar:detail", args=[dsr.pk])).content.decode()
    assert "export-download" not in page
    assert audit_verify().ok


def test_a_package_past_its_window_is_replaced_even_before_the_hourly_job(product: None) -> None:
    owner = person_user(ZHANG)
    dsr = self_service(owner, type=RequestType.PORTABILITY)
    first = built(dsr)
    assert first.expires_at is not None
    with time_machine.travel(first.expires_at + timedelta(seconds=1)):
        fresh = services.export_start(request=dsr, actor=SYSTEM)
    first.refresh_from_db()
    assert (first.status, first.wrapped_key) == (ExportStatus.EXPIRED, "")
    assert fresh.pk != first.pk and fresh.status == ExportStatus.QUEUED


def test_the_expiry_job_is_scheduled_hourly_and_claims_its_slot() -> None:
    from dsar import tasks

    entry = celery_app.conf.beat_schedule["dsar-expire-exports"]
    assert entry == {"task": "dsar.tasks.expire_exports", "schedule": 3600.0}
    assert tasks.expire_exports.run() == 0
    assert tasks.expire_exports.run() == "skipped"


# --- The flow -----------------------------------------------------------------------------------


def test_self_service_access_is_queued_at_once_built_completed_and_emailed(
    product: None, mailoutbox: list[Any]
) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner)

    export = services.export_latest(dsr)
    assert export is not None and export.status == ExportStatus.QUEUED
    assert OutboxMessage.objects.filter(
        task_name="dsar.tasks.build_export", kwargs={"export_id": export.pk}
    ).exists()
    export = built(dsr)
    dsr.refresh_from_db()

    # Access is answered by the package itself: completed, with an answer that names it.
    assert dsr.status == Status.COMPLETED
    assert f"quanyi-{dsr.reference}.zip" in (dsr.answer or "")
    assert export.sha256 in (dsr.answer or "")
    actions = list(
        AuditEntry.objects.filter(object_id=str(dsr.pk), object_type="dsar.datasubjectrequest").values_list(
            "action", flat=True
        )
    )
    assert actions == [
        "request.submitted",
        "request.verify",
        "export.queued",
        "export.building",
        "export.ready",
        "request.complete",
    ]
    kinds = list(
        OutboxMessage.objects.filter(kwargs__request_id=dsr.pk).values_list("kwargs__kind", flat=True)
    )
    assert "completed" not in kinds  # one e-mail, the package's
    assert OutboxMessage.objects.filter(
        task_name="dsar.tasks.send_export_ready", kwargs={"export_id": export.pk}
    ).exists()
    assert notifications.send_export_ready(export_id=export.pk) == 1
    message = mail.outbox[-1]
    assert message.to == [ZHANG.email]
    assert dsr.reference in message.subject
    assert reverse("dsar:detail", args=[dsr.pk]) in message.body
    assert "张三" not in message.body and ZHANG.phone not in message.body


def test_portability_stays_open_for_staff_after_the_package_is_ready(product: None) -> None:
    owner = person_user(ZHANG)
    dsr = self_service(owner, type=RequestType.PORTABILITY)
    built(dsr)
    dsr.refresh_from_db()
    assert dsr.status == Status.VERIFIED  # staff may still send it to the provider named


def test_export_start_is_for_verified_access_copy_and_portability_only(product: None) -> None:
    owner = person_user(ZHANG)
    subject = subject_of(owner)
    waiting = services.request_submit(actor=SYSTEM, type=RequestType.ACCESS, subject=subject, user=owner)
    deletion = services.request_submit(
        actor=SYSTEM, type=RequestType.DELETION, subject=subject, user=owner, reauthenticated=True
    )
    patient = factories.subject(email="no.account@example.cn")
    no_account = services.request_verify(
        request=services.request_submit(actor=SYSTEM, type=RequestType.COPY, subject=patient),
        actor=SYSTEM,
        method=VerificationMethod.DOCUMENTS,
    )
    before = (DataExport.objects.count(), AuditEntry.objects.count())
    for dsr in (waiting, deletion, no_account):
        with pytest.raises(services.TransitionError):
            services.export_start(request=dsr, actor=SYSTEM)
    assert (DataExport.objects.count(), AuditEntry.objects.count()) == before

    verified = services.request_verify(request=waiting, actor=SYSTEM, method=VerificationMethod.DOCUMENTS)
    assert services.export_latest(verified) is None  # staff-verified: staff start it
    first = services.export_start(request=verified, actor=SYSTEM)
    again = services.export_start(request=verified, actor=SYSTEM)
    assert first.pk == again.pk
    assert AuditEntry.objects.filter(action="export.queued", object_id=str(verified.pk)).count() == 1


def test_the_build_is_idempotent_and_a_crashed_build_starts_the_file_over(
    product: None, export_dir: Path
) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner, type=RequestType.PORTABILITY)
    export = services.export_latest(dsr)
    assert export is not None

    # A worker claimed it and died half-way: a partial file, the lease still running.
    DataExport.objects.filter(pk=export.pk).update(
        status=ExportStatus.BUILDING, attempts=1, lease_until=timezone.now() + timedelta(minutes=5)
    )
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / f"export-{export.pk}-dead.qyx.part").write_bytes(b"half")
    assert services.export_build(export_id=export.pk) == services.BUILD_BUSY  # someone may still be on it

    DataExport.objects.filter(pk=export.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.export_build(export_id=export.pk) == services.BUILT
    export.refresh_from_db()
    assert (export.status, export.attempts) == (ExportStatus.READY, 2)
    assert sorted(p.name for p in export_dir.iterdir()) == [export.file_path]

    state = (export.sha256, export.file_path, AuditEntry.objects.count())
    assert services.export_build(export_id=export.pk) == services.BUILD_NOTHING
    export.refresh_from_db()
    assert (export.sha256, export.file_path, AuditEntry.objects.count()) == state


def test_a_build_that_lost_its_claim_stops_and_leaves_nothing(
    product: None, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner)
    export = services.export_latest(dsr)
    assert export is not None
    real = package.package_write

    def taken_over(*args: Any, **kwargs: Any) -> Any:
        # Meanwhile its lease ran out and another worker claimed the export.
        DataExport.objects.filter(pk=export.pk).update(attempts=5)
        return real(*args, **kwargs)

    monkeypatch.setattr(package, "package_write", taken_over)
    assert services.export_build(export_id=export.pk) == services.BUILD_NOTHING
    export.refresh_from_db()
    assert (export.status, export.attempts, export.file_path) == (ExportStatus.BUILDING, 5, "")
    assert list(export_dir.iterdir()) == []


def test_a_failed_build_is_recorded_and_a_new_package_can_be_started(
    product: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = person_user(ZHANG)
    dsr = self_service(owner, type=RequestType.PORTABILITY)
    export = services.export_latest(dsr)
    assert export is not None

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise package.ExportError("the product database is unreachable")

    monkeypatch.setattr(package, "package_write", broken)
    assert services.export_build(export_id=export.pk) == services.BUILD_FAILED
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert export.last_error == "the product database is unreachable"
    assert AuditEntry.objects.filter(action="export.failed", object_id=str(dsr.pk)).count() == 1
    monkeypatch.undo()
    again = services.export_start(request=dsr, actor=SYSTEM)
    assert again.pk != export.pk and again.status == ExportStatus.QUEUED


# --- Memory stays flat --------------------------------------------------------------------------


def _peak_of_build(dsr: DataSubjectRequest) -> int:
    export = services.export_latest(dsr)
    assert export is not None
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert services.export_build(export_id=export.pk) == services.BUILT
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_rows_grow(product: None) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    add_messages(ZHANG, 10_000)
    small = _peak_of_build(self_service(owner, type=RequestType.PORTABILITY))
    add_messages(ZHANG, 40_000)
    big_request = self_service(owner, type=RequestType.PORTABILITY)
    big = _peak_of_build(big_request)
    export = services.export_latest(big_request)
    assert export is not None and export.rows_done > 50_000

    assert big < 1.5 * small, f"peak {big / 1e6:.1f} MB at 50k rows vs {small / 1e6:.1f} MB at 10k"
    assert big < 32 * 1024 * 1024


# --- The command --------------------------------------------------------------------------------


def test_the_command_writes_the_same_package_as_a_plain_zip(product: None, tmp_path: Path) -> None:
    sample_product.demo_load([ZHANG, WANG])
    owner = person_user(ZHANG, language="en")
    out = tmp_path / "zhang.zip"
    stdout = io.StringIO()

    call_command("export_subject", ZHANG.email.upper(), "--out", str(out), stdout=stdout)

    zf = zipfile.ZipFile(out)
    assert {"data.json", "schema.json", "index.html"} <= set(zf.namelist())
    data = data_of(zf)
    assert data["request"] is None and data["language"] == "en"
    assert tables_of(data)[("health_app", "patients")]["rows"][0]["name"] == "张三"
    assert WANG.email.encode() not in b"".join(zf.read(n) for n in zf.namelist())
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest in stdout.getvalue()
    entry = AuditEntry.objects.get(action="export.staff_built")
    assert (entry.actor_type, entry.object_id) == ("system", str(subject_of(owner).pk))
    assert entry.data["sha256"] == digest
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".quanyi-")] == []


def test_the_command_fails_cleanly(product: None, tmp_path: Path) -> None:
    person_user(ZHANG)
    with pytest.raises(CommandError, match="No data subject"):
        call_command("export_subject", "nobody@example.cn", "--out", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_subject", ZHANG.email, "--out", str(tmp_path / "missing" / "x.zip"))
    # /proc takes no new files, not even from root (the suite may run as root in CI).
    with pytest.raises(CommandError, match="Cannot write /proc/quanyi-x.zip"):
        call_command("export_subject", ZHANG.email, "--out", "/proc/quanyi-x.zip")
    with pytest.raises(CommandError, match="is a folder"):
        call_command("export_subject", ZHANG.email, "--out", str(tmp_path))
    assert not AuditEntry.objects.filter(action="export.staff_built").exists()


# Committed, so the command's own process (and its system checks of the product database) is
# not waiting behind this test's transaction.
@pytest.mark.django_db(transaction=True, databases=ALL)
def test_the_command_fails_without_a_traceback_in_a_shell(tmp_path: Path) -> None:
    result = manage("export_subject", "nobody@example.cn", "--out", str(tmp_path / "y.zip"))
    assert result.returncode == 1
    assert "CommandError: No data subject has this e-mail address." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "y.zip").exists()


# --- The portal page, the API and the admin ---------------------------------------------------------


def test_the_request_page_shows_progress_then_the_download(product: None, client: Client) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner)
    export = services.export_latest(dsr)
    assert export is not None
    DataExport.objects.filter(pk=export.pk).update(status=ExportStatus.BUILDING, rows_done=5, rows_total=20)
    client.force_login(owner)

    page = client.get(reverse("dsar:detail", args=[dsr.pk])).content.decode()
    assert '<progress id="export-progress" max="100" value="25">' in page
    assert 'id="export-refresh"' in page
    assert "js/export_progress.js" in page and "<script>" not in page  # a static file, no inline code
    assert "export-download" not in page

    DataExport.objects.filter(pk=export.pk).update(status=ExportStatus.QUEUED, lease_until=None)
    built(dsr)
    page = client.get(reverse("dsar:detail", args=[dsr.pk])).content.decode()
    assert f'href="{download_url(dsr)}"' in page
    assert "export_progress.js" not in page


def test_the_api_reports_progress_and_downloads_after_reauthentication(product: None, client: Client) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = self_service(owner)
    url = reverse("api-request-export", args=[dsr.pk])
    client.force_login(owner)

    queued = client.get(url).json()
    assert (queued["status"], queued["percent"], queued["download_url"]) == ("queued", 0, None)
    export = built(dsr)
    ready = client.get(url).json()
    assert ready["status"] == "ready" and ready["percent"] == 100
    assert ready["sha256"] == export.sha256 and ready["filename"] == f"quanyi-{dsr.reference}.zip"
    assert ready["download_url"] == reverse("api-request-export-download", args=[dsr.pk])

    refused = client.get(ready["download_url"], HTTP_ACCEPT="application/zip")
    assert refused.status_code == 403
    assert refused.json()["code"] == "reauthentication_required"
    reauthenticate(client)
    response = client.get(ready["download_url"], HTTP_ACCEPT="application/zip")
    assert response.status_code == 200
    assert hashlib.sha256(streamed(response)).hexdigest() == export.sha256

    other = person_user(WANG)
    client.force_login(other)
    assert client.get(url).status_code == 404
    assert client.get(ready["download_url"]).status_code == 404


def test_the_openapi_schema_documents_the_package_endpoints(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    assert "  /api/v1/requests/{id}/export/:" in schema
    download = schema.split("  /api/v1/requests/{id}/export/download/:", 1)[1].split("\n  /api/", 1)[0]
    assert "application/zip:" in download and "format: binary" in download
    assert "'410':" in download and "reauthentication_required" in schema


def test_staff_start_the_package_from_the_request_page_and_watch_it(product: None, client: Client) -> None:
    owner = person_user(ZHANG)
    dsr = services.request_verify(
        request=services.request_submit(
            actor=SYSTEM, type=RequestType.COPY, subject=subject_of(owner), user=owner
        ),
        actor=SYSTEM,
        method=VerificationMethod.DOCUMENTS,
    )
    agent = factories.staff(AGENT)
    client.force_login(agent)
    change = reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk])
    act = reverse("admin:dsar_datasubjectrequest_act", args=[dsr.pk, "export"])
    assert act in client.get(change).content.decode()

    assert client.post(act).status_code == 302
    export = services.export_latest(dsr)
    assert export is not None and export.status == ExportStatus.QUEUED
    entry = AuditEntry.objects.get(action="export.queued", object_id=str(dsr.pk))
    assert (entry.actor_type, entry.actor_id) == ("user", str(agent.pk))
    page = client.get(change).content.decode()
    assert 'id="dsar-exports"' in page and act not in page  # one live package at a time

    services.export_build(export_id=export.pk)
    client.force_login(factories.staff(AUDITOR))
    listing = client.get(reverse("admin:dsar_dataexport_changelist")).content.decode()
    assert dsr.reference in listing
    detail = client.get(reverse("admin:dsar_dataexport_change", args=[export.pk])).content.decode()
    export.refresh_from_db()
    assert export.sha256 in detail and export.wrapped_key not in detail
    assert client.post(act).status_code == 403  # auditors change nothing


# --- A real worker ------------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, databases=ALL)
def test_a_real_worker_builds_a_package_started_through_the_service(
    product: None, celery_worker: Worker
) -> None:
    sample_product.demo_load([ZHANG])
    owner = person_user(ZHANG)
    dsr = services.request_verify(
        request=services.request_submit(
            actor=SYSTEM, type=RequestType.ACCESS, subject=subject_of(owner), user=owner
        ),
        actor=SYSTEM,
        method=VerificationMethod.DOCUMENTS,
    )
    export = services.export_start(request=dsr, actor=SYSTEM)

    wait_for(
        lambda: DataExport.objects.filter(pk=export.pk, status__in=["ready", "failed"]).exists(), timeout=90
    )
    export.refresh_from_db()
    assert export.status == ExportStatus.READY, f"{export.last_error}\n{celery_worker.log()[-3000:]}"
    assert "data.json" in package_zip(export).namelist()
    dsr.refresh_from_db()
    assert dsr.status == Status.COMPLETED
    wait_for(lambda: any(dsr.reference in m for m in celery_worker.mails()), timeout=60)
    wait_for(lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists(), timeout=60)
