"""The access package: what a person receives when they ask what we hold about them (seed 000
§4.1, PIPL Art. 45). A ZIP with

- ``data.json``: everything, machine-readable; ``schema.json`` (a JSON Schema, also in the
  repository at dsar/schemas/) says what each field means;
- ``csv/<source>/<table>.csv``: one file per table that has rows, UTF-8 with a BOM so that
  Excel opens Chinese text correctly;
- ``index.html``: the same for a person to read, in their language: what we hold (per source
  and table: label, categories, sensitive or not, row count, the rows — the first 200 of a big
  table, which points to its CSV), what for and where it came from, who received it, their
  consent history and their requests. Self-contained: inline CSS, no scripts, nothing loaded
  from anywhere.

Sources: every product database of the data map (`core.sources`), found by the subject's
identifiers, and Quanyi's own records about the person (profile, account, consents, requests),
exported as `core.datamap` says (`Export.OMIT` fields never leave, `Export.MASKED` ones are
masked).

Memory stays flat however much data the subject has: rows go from the database in keyset
batches straight into the ZIP members. A ZIP takes one member at a time, so data.json and the
readable rows of index.html are written at the same time to anonymous temporary files (they
have no name on disk and vanish when closed, also when the process dies) and copied in at the
end.

Stored encrypted (`encrypt_file`, `decrypt_chunks`): AES-256-GCM over 64 KiB chunks under a
random file key. Each chunk's nonce is a random 8-byte prefix (in the file header) and a
4-byte big-endian chunk counter; its associated data binds the export id, the chunk index and
whether it is the last chunk, so a changed, reordered, truncated or extended file, or a file
of another package, does not decrypt. The file key is stored only wrapped under the subject's
key (`core.crypto`), so erasing the subject makes the package unreadable too.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache, partial
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import models
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.html import escape
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from accounts.services import subject_identifiers
from consent.models import ConsentEvent, ConsentState, PolicyResponse
from core import datamap, sources
from core.datamap import Category, Export
from core.masking import mask_email, mask_id_number, mask_name, mask_phone
from core.models import Disclosure
from dsar.models import DataSubjectRequest, OnBehalf, RequestMessage, Status

FORMAT = "quanyi-access-package"
VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "access-package.schema.json"
HTML_PREVIEW_ROWS = 200
CHUNK = 64 * 1024
TAG = 16
MAGIC = b"QYX1"
HEADER = len(MAGIC) + 8
# Cells that a spreadsheet would run as a formula (CSV injection) get a leading apostrophe in
# the CSV files; data.json keeps every value exactly.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportError(Exception):
    """An access package that cannot be built or read; the message says why."""


class ExportCorrupt(ExportError):
    """The encrypted file does not authenticate: altered, truncated, or another package's."""


# --- Who received the data ---------------------------------------------------------------------


def recipients_of(subject: DataSubject) -> list[dict[str, Any]]:
    """The recipients of the subject's information from the disclosure register: name, contact,
    purpose, categories, first and last disclosure (seed 000 §2: who it was shared with,
    transferred to or disclosed to)."""
    disclosures = (
        Disclosure.objects.filter(subject=subject).select_related("recipient").order_by("recipient__name")
    )
    return [
        {
            "name": d.recipient.name,
            "kind": d.recipient.get_kind_display(),
            "contact": d.recipient.contact_email,
            "purpose": d.recipient.purpose,
            "legal_basis": d.recipient.get_legal_basis_display(),
            "categories": sorted(d.categories or d.recipient.categories),
            "first_disclosed_at": d.first_at.isoformat() if d.first_at else None,
            "last_disclosed_at": d.last_at.isoformat() if d.last_at else None,
        }
        for d in disclosures
    ]


# --- What goes into the package ----------------------------------------------------------------

Cell = str | int | float | bool | None
Batches = Callable[[], Iterator[Sequence[Sequence[Any]]]]
Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class PackageColumn:
    name: str
    category: str | None  # None: context only (a reference, a status), not personal data itself
    sensitive: bool = False
    export: str = Export.VALUE  # value | masked


@dataclass(frozen=True)
class PackageTable:
    name: str
    label: str
    purpose: str
    origin: str
    columns: tuple[PackageColumn, ...]
    count: int  # counted when the plan is made: the progress bar's total
    batches: Batches = field(repr=False, compare=False)

    @property
    def categories(self) -> list[str]:
        return sorted({c.category for c in self.columns if c.category})

    @property
    def sensitive(self) -> bool:
        return any(c.sensitive for c in self.columns)


@dataclass(frozen=True)
class PackageSource:
    code: str
    name: str
    kind: str  # product | quanyi
    tables: tuple[PackageTable, ...]


@dataclass(frozen=True)
class Plan:
    subject: DataSubject
    request: DataSubjectRequest | None
    language: str
    sources: tuple[PackageSource, ...]
    recipients: list[dict[str, Any]]

    @property
    def rows_total(self) -> int:
        return sum(t.count for s in self.sources for t in s.tables)


@dataclass(frozen=True)
class TableSummary:
    """One line of index.html's overview, known once the table is written."""

    source: str
    source_name: str
    name: str
    label: str
    purpose: str
    origin: str
    categories: list[str]
    category_labels: list[str]
    sensitive: bool
    rows: int
    csv: str | None

    @property
    def anchor(self) -> str:
        return f"t-{self.source}-{self.name}"


@dataclass(frozen=True)
class PackageStats:
    rows: int
    tables: list[TableSummary]


def csv_name(source: str, table: str) -> str:
    return f"csv/{source}/{table}.csv"


def category_label(code: str) -> str:
    return str(Category(code).label)


def package_plan(*, subject: DataSubject, request: DataSubjectRequest | None, language: str) -> Plan:
    """Everything the package will hold, with each table's row count. Labels are resolved in
    `language`; the rows are read later, batch by batch, while the package is written."""
    language = language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE
    with translation.override(language):
        product = [_product_source(source, subject, language) for source in sources.source_maps()]
        return Plan(
            subject=subject,
            request=request,
            language=language,
            sources=(*product, _quanyi_source(subject)),
            recipients=recipients_of(subject),
        )


# -- the product's databases, through the data map --


def _product_source(source: sources.SourceMap, subject: DataSubject, language: str) -> PackageSource:
    identifiers = sources.identifiers_clean(subject_identifiers(subject=subject))
    rows = sources.subject_rows(source, identifiers)
    tables = []
    for table in source.tables.values():
        columns = tuple(
            PackageColumn(c.name, str(c.category.value), c.sensitive, str(c.export.value))
            for c in table.exported
        )
        tables.append(
            PackageTable(
                name=table.name,
                label=sources.text(table.label, language) or table.name,
                purpose=sources.text(table.purpose, language),
                origin=sources.text(table.origin, language),
                columns=columns,
                count=0 if rows.empty else sources.count_rows(rows, table),
                batches=partial(_product_batches, rows, table),
            )
        )
    return PackageSource(source.code, sources.text(source.name, language), "product", tuple(tables))


def _product_batches(rows: sources.SubjectRows, table: sources.Table) -> Iterator[Sequence[Sequence[Any]]]:
    for chunk in sources.iter_rows(rows, table, batch=settings.QUANYI_EXPORT_BATCH):
        yield [row[1:] for row in chunk]  # without the primary key: it means nothing outside


# -- Quanyi's own records about the person, through core.datamap --


@dataclass(frozen=True)
class _Own:
    """A column of one of Quanyi's own tables. `field` names the model field whose data-map
    entry decides whether it is exported, masked or left out (None: derived context)."""

    name: str
    get: Callable[[Any], Any]
    field: str | None = None


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda obj: getattr(obj, name)


def _label(name: str) -> Callable[[Any], Any]:
    return lambda obj: str(getattr(obj, f"get_{name}_display")())


def _own_table(
    *,
    name: str,
    label: str,
    purpose: str,
    origin: str,
    model: type[models.Model],
    columns: Sequence[_Own],
    queryset: Callable[[], models.QuerySet[Any]],
) -> PackageTable:
    mapped = datamap.source_for(model)
    kept: list[tuple[_Own, PackageColumn]] = []
    for col in columns:
        personal = mapped.fields.get(col.field) if (mapped and col.field) else None
        if personal is not None and personal.export == Export.OMIT:
            continue  # secrets and internal values (a password hash, a blind index) never leave
        if personal is None:
            kept.append((col, PackageColumn(col.name, None)))
        else:
            kept.append(
                (
                    col,
                    PackageColumn(
                        col.name, str(personal.category.value), personal.sensitive, str(personal.export.value)
                    ),
                )
            )
    getters = [c.get for c, _pc in kept]

    def batches() -> Iterator[Sequence[Sequence[Any]]]:
        chunk: list[tuple[Any, ...]] = []
        for obj in queryset().iterator(chunk_size=500):
            chunk.append(tuple(get(obj) for get in getters))
            if len(chunk) >= 500:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    return PackageTable(
        name=name,
        label=label,
        purpose=purpose,
        origin=origin,
        columns=tuple(pc for _c, pc in kept),
        count=queryset().count(),
        batches=batches,
    )


def _purpose_name(obj: Any) -> str:
    return str(obj.purpose.localised("name", translation.get_language() or settings.LANGUAGE_CODE))


def _mine(request: DataSubjectRequest, value: Any) -> Any:
    # The requester's contact details on a request made by someone else (a guardian, an agent)
    # are that person's information, not the subject's.
    return value if request.on_behalf == OnBehalf.SELF else None


def _quanyi_source(subject: DataSubject) -> PackageSource:
    user: User | None = subject.user
    portal = _("Handling your privacy rights, your consents and your requests")
    tables = [
        _own_table(
            name="profile",
            label=_("Your profile with us"),
            purpose=portal,
            origin=_("Given by you, or by our staff from your request"),
            model=DataSubject,
            columns=[
                _Own("reference", _attr("reference")),
                _Own("kind", _label("kind")),
                _Own("full_name", _attr("full_name"), "full_name"),
                _Own("email", _attr("email"), "email"),
                _Own("phone", _attr("phone"), "phone"),
                _Own("id_number", _attr("id_number"), "id_number"),
                _Own("birth_date", _attr("birth_date"), "birth_date"),
                _Own("language", _attr("language"), "language"),
                _Own("created_at", _attr("created_at")),
            ],
            queryset=lambda: DataSubject.objects.filter(pk=subject.pk),
        ),
        _own_table(
            name="account",
            label=_("Your account"),
            purpose=_("Signing you in to this portal"),
            origin=_("Given by you when you signed up; the last sign-in is recorded by the portal"),
            model=User,
            # The password hash is never exported (Export.OMIT), so it is not even listed.
            columns=[
                _Own("email", _attr("email"), "email"),
                _Own("display_name", _attr("display_name"), "display_name"),
                _Own("language", _attr("language"), "language"),
                _Own("date_joined", _attr("date_joined"), "date_joined"),
                _Own("last_login", _attr("last_login"), "last_login"),
            ],
            queryset=lambda: User.objects.filter(pk=user.pk) if user else User.objects.none(),
        ),
        _own_table(
            name="consent_events",
            label=_("Your consent history"),
            purpose=_("Proving when you gave or withdrew each consent (PIPL Art. 14-15)"),
            origin=_("Recorded when you, your guardian or our staff on your behalf made each choice"),
            model=ConsentEvent,
            columns=[
                _Own("occurred_at", _attr("occurred_at")),
                _Own("purpose", lambda e: e.purpose.code),
                _Own("purpose_name", _purpose_name),
                _Own("policy_version", lambda e: e.policy_version.version),
                _Own("action", _label("action")),
                _Own("channel", _label("channel")),
                _Own("separate", _attr("separate")),
                _Own("reason", _attr("reason"), "reason"),
                _Own("evidence_ip", _attr("evidence_ip"), "evidence_ip"),
                _Own("evidence_user_agent", _attr("evidence_user_agent"), "evidence_user_agent"),
                _Own("receipt_id", lambda e: str(e.receipt_id)),
            ],
            queryset=lambda: (
                ConsentEvent.objects.filter(subject=subject)
                .select_related("purpose", "policy_version")
                .order_by("occurred_at", "pk")
            ),
        ),
        _own_table(
            name="consent_current",
            label=_("Your consents now"),
            purpose=_("Knowing what we may do with your information today"),
            origin=_("Derived from your consent history"),
            model=ConsentState,
            columns=[
                _Own("purpose", lambda s: s.purpose.code),
                _Own("purpose_name", _purpose_name),
                _Own("granted", _attr("granted")),
                _Own("separate", _attr("separate")),
                _Own("since", _attr("since")),
            ],
            queryset=lambda: (
                ConsentState.objects.filter(subject=subject)
                .select_related("purpose")
                .order_by("purpose__order", "purpose__code")
            ),
        ),
        _own_table(
            name="policy_responses",
            label=_("Your answers to privacy policy changes"),
            purpose=_("Recording whether you accepted a material change of the privacy policy"),
            origin=_("Given by you in the portal"),
            model=PolicyResponse,
            columns=[
                _Own("policy_version", lambda r: r.policy_version.version),
                _Own("decision", _label("decision")),
                _Own("at", _attr("at")),
                _Own("evidence_ip", _attr("evidence_ip"), "evidence_ip"),
            ],
            queryset=lambda: (
                PolicyResponse.objects.filter(subject=subject)
                .select_related("policy_version")
                .order_by("at", "pk")
            ),
        ),
        _own_table(
            name="requests",
            label=_("Your requests to us"),
            purpose=portal,
            origin=_("Given by you, or by the person who asked on your behalf"),
            model=DataSubjectRequest,
            columns=[
                _Own("reference", _attr("reference")),
                _Own("type", _label("type")),
                _Own("status", _label("status")),
                _Own("on_behalf", _label("on_behalf")),
                _Own("submitted_at", _attr("submitted_at")),
                _Own("verified_at", _attr("verified_at")),
                _Own("due_date", _attr("due_date")),
                _Own("closed_at", _attr("closed_at")),
                _Own("details", _attr("details"), "details"),
                _Own("answer", lambda r: r.answer if r.status == Status.COMPLETED else None, "answer"),
                _Own(
                    "refusal_ground",
                    lambda r: str(r.get_refusal_ground_display()) if r.refusal_ground else None,
                ),
                _Own(
                    "refusal_explanation",
                    lambda r: r.refusal_explanation if r.status == Status.REFUSED else None,
                    "refusal_explanation",
                ),
                _Own("requester_name", lambda r: _mine(r, r.requester_name), "requester_name"),
                _Own("requester_email", lambda r: _mine(r, r.requester_email), "requester_email"),
                _Own("requester_phone", lambda r: _mine(r, r.requester_phone), "requester_phone"),
                _Own("relationship", _attr("relationship"), "relationship"),
                _Own("language", _attr("language"), "language"),
            ],
            queryset=lambda: DataSubjectRequest.objects.filter(subject=subject).order_by(
                "submitted_at", "pk"
            ),
        ),
        _own_table(
            name="request_messages",
            label=_("Messages about your requests"),
            purpose=portal,
            origin=_("Written by you or by our staff to you"),
            model=RequestMessage,
            # Staff's internal notes are working notes on the request, not messages to the
            # requester; the answer itself is in "requests".
            columns=[
                _Own("request", lambda m: m.request.reference),
                _Own("created_at", _attr("created_at")),
                _Own("kind", _label("kind")),
                _Own("body", _attr("body"), "body"),
            ],
            queryset=lambda: (
                RequestMessage.objects.filter(
                    request__subject=subject,
                    kind__in=[RequestMessage.Kind.TO_REQUESTER, RequestMessage.Kind.FROM_REQUESTER],
                )
                .select_related("request")
                .order_by("created_at", "pk")
            ),
        ),
    ]
    return PackageSource("quanyi", _("Quanyi privacy portal"), "quanyi", tuple(tables))


# --- Writing the ZIP ---------------------------------------------------------------------------


def _mask(column: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    text = str(value)
    if "email" in column:
        return mask_email(text)
    if "phone" in column:
        return mask_phone(text)
    if "id_number" in column:
        return mask_id_number(text)
    return mask_name(text)


def cell(value: Any) -> Cell:
    """A value as data.json holds it: JSON scalars as they are, times ISO 8601, bytes base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _html_cell(value: Any, tz: ZoneInfo) -> str:
    if value is None or value == "":
        return '<td class="empty">—</td>'
    if isinstance(value, bool):
        return f"<td>{escape(_('yes') if value else _('no'))}</td>"
    if isinstance(value, datetime):
        shown = (value.astimezone(tz) if timezone.is_aware(value) else value).strftime("%Y-%m-%d %H:%M")
        return f"<td>{escape(shown)}</td>"
    return f"<td>{escape(str(cell(value)))}</td>"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@cache
def schema_bytes() -> bytes:
    return SCHEMA_PATH.read_bytes()


def package_write(
    target: IO[bytes], plan: Plan, *, progress: Progress | None = None, scratch_dir: Path | None = None
) -> PackageStats:
    """Write the package as a ZIP into `target` (a seekable binary file), streaming every
    table. `progress(rows_done, step)` is called at each table and after each batch; it may
    raise to stop the build. Temporary files go to `scratch_dir` (the export folder)."""
    report = progress or (lambda done, step: None)
    tz = ZoneInfo(settings.QUANYI_BUSINESS_TZ)
    generated_at = timezone.now()
    with (
        translation.override(plan.language),
        tempfile.TemporaryFile(dir=scratch_dir) as json_raw,
        tempfile.TemporaryFile(dir=scratch_dir) as html_raw,
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf,
    ):
        out = io.TextIOWrapper(json_raw, encoding="utf-8", newline="\n")
        html = io.TextIOWrapper(html_raw, encoding="utf-8", newline="\n")
        request = plan.request
        about = {"reference": request.reference, "type": request.type} if request else None
        out.write(
            "{"
            f'"format":{_dumps(FORMAT)},"version":{VERSION},'
            f'"generated_at":{_dumps(generated_at.isoformat())},"language":{_dumps(plan.language)},'
            f'"controller":{_dumps(_controller())},'
            f'"subject":{_dumps({"reference": plan.subject.reference})},'
            f'"request":{_dumps(about)},'
            f'"categories":{_dumps([{"code": c.value, "label": str(c.label)} for c in Category])},'
            '"sources":['
        )
        done = 0
        summaries: list[TableSummary] = []
        for s_index, source in enumerate(plan.sources):
            out.write(("," if s_index else "") + "{")
            out.write(f'"code":{_dumps(source.code)},"name":{_dumps(source.name)},')
            out.write(f'"kind":{_dumps(source.kind)},"tables":[')
            html.write(f'<section class="source" id="s-{escape(source.code)}">')
            html.write(f"<h2>{escape(source.name)}</h2>\n")
            shown_tables = 0
            for t_index, table in enumerate(source.tables):
                step = f"{source.code}.{table.name}"
                report(done, step)
                written = _write_table(zf, out, html, source, table, t_index, tz, done, step, report)
                done += written
                shown_tables += 1 if written else 0
                summaries.append(
                    TableSummary(
                        source=source.code,
                        source_name=source.name,
                        name=table.name,
                        label=table.label,
                        purpose=table.purpose,
                        origin=table.origin,
                        categories=table.categories,
                        category_labels=[category_label(c) for c in table.categories],
                        sensitive=table.sensitive,
                        rows=written,
                        csv=csv_name(source.code, table.name) if written else None,
                    )
                )
            out.write("]}")
            if not shown_tables:
                html.write(f'<p class="muted">{escape(_("We hold nothing about you in this system."))}</p>\n')
            html.write("</section>\n")
        recipients = [
            {k: v if isinstance(v, list) else cell(v) for k, v in r.items()} for r in plan.recipients
        ]
        out.write(f'],"recipients":{_dumps(recipients)}}}')
        out.write("\n")
        report(done, "index")

        out.flush()
        out.detach()
        json_raw.seek(0)
        with zf.open("data.json", "w", force_zip64=True) as member:
            shutil.copyfileobj(json_raw, member, CHUNK)
        zf.writestr("schema.json", schema_bytes())

        html.flush()
        html.detach()
        html_raw.seek(0)
        head, tail = _index_frame(plan, summaries, generated_at)
        with zf.open("index.html", "w", force_zip64=True) as member:
            member.write(head.encode())
            shutil.copyfileobj(html_raw, member, CHUNK)
            member.write(tail.encode())
    return PackageStats(rows=done, tables=summaries)


def _write_table(
    zf: zipfile.ZipFile,
    out: io.TextIOWrapper,
    html: io.TextIOWrapper,
    source: PackageSource,
    table: PackageTable,
    index: int,
    tz: ZoneInfo,
    done: int,
    step: str,
    report: Progress,
) -> int:
    names = [c.name for c in table.columns]
    masked = [i for i, c in enumerate(table.columns) if c.export == Export.MASKED]
    columns = [
        {"name": c.name, "category": c.category, "sensitive": c.sensitive, "export": c.export}
        for c in table.columns
    ]
    out.write(("," if index else "") + "{")
    out.write(
        f'"name":{_dumps(table.name)},"label":{_dumps(table.label)},"purpose":{_dumps(table.purpose)},'
        f'"origin":{_dumps(table.origin)},"categories":{_dumps(table.categories)},'
        f'"sensitive":{_dumps(table.sensitive)},"columns":{_dumps(columns)},"rows":['
    )
    path = csv_name(source.code, table.name)
    csv_file: io.TextIOWrapper | None = None
    writer: Any = None
    written = 0
    try:
        for batch in table.batches():
            if csv_file is None:
                # Opened at the first row: a table without rows gets no file.
                csv_file = io.TextIOWrapper(
                    zf.open(path, "w", force_zip64=True), encoding="utf-8-sig", newline=""
                )
                writer = csv.writer(csv_file)
                writer.writerow(names)
                _html_table_start(html, source, table)
            for raw in batch:
                values = list(raw)
                for i in masked:
                    values[i] = _mask(names[i], values[i])
                cells = [cell(v) for v in values]
                out.write(("," if written else "") + _dumps(dict(zip(names, cells, strict=True))))
                writer.writerow([csv_cell(c) for c in cells])
                if written < HTML_PREVIEW_ROWS:
                    html.write("<tr>" + "".join(_html_cell(v, tz) for v in values) + "</tr>\n")
                written += 1
            report(done + written, step)
    finally:
        if csv_file is not None:
            csv_file.close()
    out.write(f'],"row_count":{written},"csv":{_dumps(path if written else None)}}}')
    if written:
        html.write("</tbody></table></div>\n")
        if written > HTML_PREVIEW_ROWS:
            note = _(
                "Showing the first %(shown)d of %(total)d rows. Every row is in %(csv)s and in data.json."
            ) % {"shown": HTML_PREVIEW_ROWS, "total": written, "csv": path}
        else:
            note = _("All %(total)d rows are shown. The same rows are in %(csv)s and in data.json.") % {
                "total": written,
                "csv": path,
            }
        html.write(f'<p class="note">{escape(note)}</p></section>\n')
    return written


def _html_table_start(html: io.TextIOWrapper, source: PackageSource, table: PackageTable) -> None:
    categories = ", ".join(category_label(c) for c in table.categories) or "—"
    sensitive = _("yes") if table.sensitive else _("no")
    html.write(
        f'<section class="table" id="t-{escape(source.code)}-{escape(table.name)}">'
        f"<h3>{escape(table.label)}</h3>\n<dl>"
        f"<dt>{escape(_('What it is for'))}</dt><dd>{escape(table.purpose or '—')}</dd>"
        f"<dt>{escape(_('Where it came from'))}</dt><dd>{escape(table.origin or '—')}</dd>"
        f"<dt>{escape(_('Categories'))}</dt><dd>{escape(categories)}</dd>"
        f"<dt>{escape(_('Sensitive personal information'))}</dt><dd>{escape(sensitive)}</dd></dl>\n"
        '<div class="scroll"><table><thead><tr>'
    )
    for column in table.columns:
        extra = category_label(column.category) if column.category else ""
        if column.sensitive:
            extra = f"{extra} · {_('sensitive')}" if extra else _("sensitive")
        if column.export == Export.MASKED:
            extra = f"{extra} · {_('masked')}" if extra else _("masked")
        small = f"<br><small>{escape(extra)}</small>" if extra else ""
        html.write(f'<th scope="col">{escape(column.name)}{small}</th>')
    html.write("</tr></thead><tbody>\n")


_DETAILS = "<!--quanyi:details-->"


def _controller() -> dict[str, str]:
    return {"name": settings.QUANYI_CONTROLLER_NAME, "contact": settings.QUANYI_CONTROLLER_CONTACT}


def _index_frame(plan: Plan, summaries: list[TableSummary], generated_at: datetime) -> tuple[str, str]:
    """index.html around the table sections: the overview, the recipients and the files."""
    context = {
        "language": plan.language,
        "subject": plan.subject,
        "request": plan.request,
        "generated_at": generated_at,
        "business_tz": settings.QUANYI_BUSINESS_TZ,
        "controller": _controller(),
        "summaries": summaries,
        "holding": [s for s in summaries if s.rows],
        "recipients": plan.recipients,
        "details": _DETAILS,
        "site_url": settings.SITE_URL,
    }
    page = render_to_string("dsar/export/index.html", context)
    head, tail = page.split(_DETAILS, 1)
    return head, tail


# --- Encryption at rest ------------------------------------------------------------------------


def file_key_new() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 2**32:
        raise ExportError("the package is too large to encrypt (2^32 chunks)")
    return prefix + index.to_bytes(4, "big")


def _aad(export_id: int, index: int, final: bool) -> bytes:
    return f"dsar.export:{export_id}:{index}:{1 if final else 0}".encode()


def _read_exact(f: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left:
        data = f.read(left)
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def encrypt_file(src: IO[bytes], dst: IO[bytes], *, key: bytes, export_id: int) -> tuple[int, str]:
    """Encrypt `src` into `dst` chunk by chunk; returns the plaintext's size and SHA-256."""
    aead = AESGCM(key)
    prefix = os.urandom(8)
    dst.write(MAGIC + prefix)
    digest = hashlib.sha256()
    size = index = 0
    current = _read_exact(src, CHUNK)
    while True:
        following = _read_exact(src, CHUNK) if len(current) == CHUNK else b""
        final = not following
        digest.update(current)
        size += len(current)
        dst.write(aead.encrypt(_nonce(prefix, index), current, _aad(export_id, index, final)))
        if final:
            return size, digest.hexdigest()
        current, index = following, index + 1


def decrypt_chunks(src: IO[bytes], *, key: bytes, export_id: int) -> Iterator[bytes]:
    """The plaintext, 64 KiB at a time. Raises ExportCorrupt at the first chunk that does not
    authenticate (so a consumer may already have received the chunks before it)."""
    header = _read_exact(src, HEADER)
    if len(header) != HEADER or not header.startswith(MAGIC):
        raise ExportCorrupt(_("The package file is damaged: it is not an encrypted Quanyi package."))
    prefix = header[len(MAGIC) :]
    aead = AESGCM(key)
    index = 0
    current = _read_exact(src, CHUNK + TAG)
    while True:
        following = _read_exact(src, CHUNK + TAG) if len(current) == CHUNK + TAG else b""
        final = not following
        try:
            plain = aead.decrypt(_nonce(prefix, index), current, _aad(export_id, index, final))
        except (InvalidTag, ValueError):
            raise ExportCorrupt(
                _(
                    "The package file is damaged or was altered (part %(index)d does not authenticate). "
                    "It cannot be opened."
                )
                % {"index": index + 1}
            ) from None
        yield plain
        if final:
            return
        current, index = following, index + 1
