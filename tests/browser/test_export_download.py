"""End to end in a real browser: a subject downloads their access package.

The package is built in the test through the services (as the worker would). The subject
signs in, opens the request, follows the download link, is asked to confirm their password
(allauth's reauthentication), and the browser receives the ZIP. The downloaded file must be a
ZIP holding data.json, and its index.html must open on its own, loading nothing.

Selectors rely on ids, names and URLs, never on the wording.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from accounts.models import DataSubject
from core.audit import Actor
from core.models import AuditEntry
from dsar import sample_product, services
from dsar.models import DataExport, ExportStatus, RequestType
from tests import factories

pytestmark = [pytest.mark.browser]

PERSON = sample_product.Person(
    email="zhang.browser@example.cn",
    phone="13800138111",
    name="张三",
    id_number="110101199003075678",
    birthday="1990-03-07",
    gender="男",
    native_place="北京市东城区",
)
# Fixed, well-known paths for a human to look at after a run (not asserted on).
REQUEST_SCREENSHOT = "/tmp/quanyi-export-request.png"  # noqa: S108
INDEX_SCREENSHOT = "/tmp/quanyi-export-index.png"  # noqa: S108


def path_of(page: Any) -> str:
    return urlsplit(page.url).path


def submit_of(page: Any, field: str) -> Any:
    return page.locator(f"main form:has({field}) button[type=submit]:not([form])").first


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_subject_reauthenticates_and_downloads_the_package(
    browser: Any, page: Any, live_server: Any, product: None, settings: Any, tmp_path: Path
) -> None:
    settings.QUANYI_EXPORT_DIR = tmp_path / "exports"
    sample_product.demo_load([PERSON])
    user = factories.UserFactory(email=PERSON.email)
    factories.subject(
        user=user, email=PERSON.email, phone=PERSON.phone, id_number=PERSON.id_number, full_name=PERSON.name
    )
    dsr = services.request_submit(
        actor=Actor.of(user),
        type=RequestType.ACCESS,
        subject=DataSubject.objects.get(user=user),
        user=user,
        details="请给我一份我的全部个人信息",
        reauthenticated=True,
    )
    export = services.export_latest(dsr)
    assert export is not None
    assert services.export_build(export_id=export.pk) == services.BUILT
    base = live_server.url

    # 1. Sign in.
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", PERSON.email)
    page.fill("input[name=password]", factories.PASSWORD)
    with page.expect_navigation():
        submit_of(page, "input[name=password]").click()
    assert "/accounts/login/" not in path_of(page), page.locator("main").inner_text()

    # 2. The request page offers the package.
    page.goto(f"{base}/requests/{dsr.pk}/")
    link = page.locator("#export-download")
    assert link.count() == 1, page.locator("main").inner_text()
    page.screenshot(path=REQUEST_SCREENSHOT, full_page=True)

    # 3. Following the link asks for the password again (signing in is not a reauthentication).
    with page.expect_navigation():
        link.click()
    assert path_of(page) == "/accounts/reauthenticate/", page.url
    page.fill("input[name=password]", factories.PASSWORD)
    with page.expect_download() as info:
        submit_of(page, "input[name=password]").click()
    download = info.value
    assert download.suggested_filename == f"quanyi-{dsr.reference}.zip"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    # 4. The file is the package.
    with zipfile.ZipFile(saved) as zf:
        names = zf.namelist()
        assert {"data.json", "schema.json", "index.html"} <= set(names)
        data = json.loads(zf.read("data.json"))
        assert data["request"]["reference"] == dsr.reference
        zf.extract("index.html", tmp_path)
    patients = next(
        t
        for s in data["sources"]
        if s["code"] == "health_app"
        for t in s["tables"]
        if t["name"] == "patients"
    )
    assert patients["rows"][0]["name"] == PERSON.name
    export = DataExport.objects.get(pk=export.pk)
    assert (export.status, export.download_count) == (ExportStatus.READY, 1)
    assert AuditEntry.objects.filter(action="export.downloaded", object_id=str(dsr.pk)).count() == 1

    # 5. index.html opens on its own and loads nothing from anywhere.
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto((tmp_path / "index.html").as_uri())
    assert page.locator("#summary table tbody tr").count() >= 7
    assert page.locator("section.table").count() >= 7
    assert page.locator("script").count() == 0
    assert [u for u in requested if not u.startswith("file://")] == []
    page.screenshot(path=INDEX_SCREENSHOT, full_page=True)
