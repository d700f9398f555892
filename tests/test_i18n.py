"""The Simplified Chinese translation: complete, compiled, and used by pages and e-mails.

Users' machines have no GNU gettext, so the compiled .mo is committed next to the .po; these
tests parse both with the standard library only."""

from __future__ import annotations

import ast
import gettext
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils import translation

from core.audit import Actor
from dsar import services
from dsar.models import DataSubjectRequest, RequestType
from tests.conftest import ALL, ROOT

MESSAGES = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES"
PO = MESSAGES / "django.po"
MO = MESSAGES / "django.mo"
HAN = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Entry:
    line: int
    flags: set[str] = field(default_factory=set)
    msgctxt: str | None = None
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)


def parse_po(path: Path) -> list[Entry]:
    """A small .po reader: flags, msgctxt, msgid, msgid_plural, msgstr and msgstr[n], with
    continuation lines. Obsolete entries (#~) are skipped: gettext ignores them."""
    entries: list[Entry] = []
    current: Entry | None = None
    flags: set[str] = set()
    target: tuple[str, int] | None = None

    def start(line: int) -> Entry:
        nonlocal flags
        entry = Entry(line=line, flags=flags)
        flags = set()
        entries.append(entry)
        return entry

    def append(entry: Entry, where: tuple[str, int], text: str) -> None:
        name, index = where
        if name == "msgstr":
            entry.msgstr[index] = entry.msgstr.get(index, "") + text
        else:
            setattr(entry, name, (getattr(entry, name) or "") + text)

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            current, target = None, None
            continue
        if line.startswith("#~"):
            continue
        if line.startswith("#,"):
            flags |= {flag.strip() for flag in line[2:].split(",")}
            continue
        if line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.startswith('"'):
            assert current is not None and target is not None, f"{path}:{number}: stray string"
            append(current, target, ast.literal_eval(line))
            continue
        text = ast.literal_eval(rest)
        if keyword == "msgctxt" or (keyword == "msgid" and (current is None or current.msgstr)):
            current = start(number)
        assert current is not None
        if keyword in ("msgctxt", "msgid", "msgid_plural"):
            target = (keyword, 0)
        elif keyword == "msgstr":
            target = ("msgstr", 0)
        elif (found := re.fullmatch(r"msgstr\[(\d+)\]", keyword)) is not None:
            target = ("msgstr", int(found.group(1)))
        else:
            raise AssertionError(f"{path}:{number}: unexpected {keyword!r}")
        append(current, target, text)
    return entries


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return parse_po(PO)


def test_the_po_file_has_a_chinese_header(entries: list[Entry]) -> None:
    header = entries[0]
    assert header.msgid == ""
    assert "fuzzy" not in header.flags
    assert "Language: zh_Hans" in header.msgstr[0]
    assert "Plural-Forms: nplurals=1; plural=0;" in header.msgstr[0]


def test_every_message_is_translated_and_none_is_fuzzy(entries: list[Entry]) -> None:
    messages = entries[1:]
    assert len(messages) > 300  # the whole project, not a stub
    untranslated = [e.msgid for e in messages if not e.msgstr or not all(e.msgstr.values())]
    fuzzy = [e.msgid for e in messages if "fuzzy" in e.flags]
    plural_shape = [e.msgid for e in messages if e.msgid_plural is not None and set(e.msgstr) != {0}]
    assert untranslated == []
    assert fuzzy == []
    assert plural_shape == []  # Chinese has one form: msgstr[0] only


def test_translations_keep_their_placeholders_and_are_chinese(entries: list[Entry]) -> None:
    placeholder = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\{ *\w+ *\}\}")
    for e in entries[1:]:
        for text in e.msgstr.values():
            assert sorted(placeholder.findall(text)) == sorted(placeholder.findall(e.msgid)), e.msgid
            assert HAN.search(text), f"not translated into Chinese: {e.msgid!r} -> {text!r}"


def test_the_committed_mo_matches_the_po(entries: list[Entry]) -> None:
    # Forgetting `compilemessages` after editing the .po would ship stale or missing text.
    assert MO.stat().st_size > 0
    with MO.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for e in entries[1:]:
        key = e.msgid if e.msgctxt is None else f"{e.msgctxt}\x04{e.msgid}"
        if e.msgid_plural is None:
            got = compiled.gettext(key)
        else:
            got = compiled.ngettext(key, e.msgid_plural, 2)
        if got != e.msgstr[0]:
            stale.append(e.msgid)
    assert stale == []


def test_refusal_grounds_follow_the_privacy_policy_wording() -> None:
    from dsar.models import RefusalGround

    with translation.override("zh-hans"):
        labels = [str(label) for label in RefusalGround.labels]
    assert labels[:6] == [
        "(1)与国家安全、国防安全直接相关的",
        "(2)与公共安全、公共卫生、重大公共利益直接相关的",
        "(3)与犯罪侦查、起诉、审判和判决执行等直接相关的",
        "(4)有充分证据表明您存在主观恶意或滥用权利的",
        "(5)响应您的请求将导致您或其他个人、组织的合法权益受到严重损害的",
        "(6)涉及商业秘密的",
    ]


@pytest.mark.django_db(databases=ALL)
def test_pages_are_chinese_by_default_and_english_after_switching(client: Client) -> None:
    home = client.get(reverse("portal:home")).content.decode()
    new = client.get(reverse("dsar:new")).content.decode()

    assert '<html lang="zh-hans">' in home
    for text in ("您的个人信息权利", "个人信息权利请求", "提出请求", "登录"):
        assert text in home, text
    assert "Your data rights" not in home
    for text in (
        "请选择您希望我们做什么",
        "查阅",
        "了解我们持有您的哪些个人信息、来源及使用方式。",
        "注销账户",
    ):
        assert text in new, text
    assert "Find out which of your personal information" not in new

    switched = client.post(reverse("set_language"), {"language": "en", "next": reverse("dsar:new")})
    assert switched.status_code == 302 and switched["Location"] == reverse("dsar:new")

    home = client.get(reverse("portal:home")).content.decode()
    new = client.get(reverse("dsar:new")).content.decode()
    assert '<html lang="en">' in home
    for text in ("Your data rights", "Requests about your data", "Make a request", "Sign in"):
        assert text in home, text
    assert "您的个人信息权利" not in home
    for text in ("Choose what you would like us to do", "Access (查阅)", "Find out which of your personal"):
        assert text in new, text


@pytest.mark.django_db(databases=ALL)
def test_the_received_email_is_rendered_in_chinese() -> None:
    subject = services.subject_for_public_request(email="wang.wu@example.cn", name="王五")
    request = services.request_submit(
        actor=Actor("anonymous"),
        type=RequestType.ACCESS,
        subject=subject,
        requester_name="王五",
        requester_email="wang.wu@example.cn",
        details="我的就诊记录",
        language="zh-hans",
    )
    context = {
        "request": DataSubjectRequest.objects.get(pk=request.pk),
        "url": f"https://quanyi.example/requests/status/{request.reference}/",
        "site_url": "https://quanyi.example/",
        "business_tz": settings.QUANYI_BUSINESS_TZ,
    }

    with translation.override("zh-hans"):
        body = render_to_string("dsar/email/requester_received.txt", context)
        title = render_to_string("dsar/email/requester_received_subject.txt", context).strip()
    with translation.override("en"):
        english = render_to_string("dsar/email/requester_received.txt", context)

    assert re.search(
        rf"^我们已于 \d{{4}}-\d{{2}}-\d{{2}} 收到您的请求 {request.reference}（查阅）。$", body, re.M
    ), body
    assert "接下来我们将核验您的身份。15个工作日的答复期限自身份核验通过后开始计算。" in body
    assert "您可在此查看请求进展：" in body
    assert "如果您没有提出此请求，请忽略此邮件。" in body
    assert "权益个人信息权利服务平台 · https://quanyi.example/" in body
    assert "We received" not in body and "Next we verify" not in body
    assert "王五" not in body and "就诊记录" not in body  # e-mails never repeat the request's data
    assert title == f"我们已收到您的请求 {request.reference}"
    assert f"We received your request {request.reference} (Access (查阅))" in english
