"""Correction requests (PIPL Art. 46; seed 000 §4.2): the subject proposes new values for the
fields the data map marks correctable, staff decide per item, approved values are written
where the data lives.

This module changes personal data in Quanyi and in the product's databases, so it stays safe by
construction:
- a proposal names a field the data map marks correctable (`core.datamap.PersonalField` for the
  Quanyi profile, `core.sources.Column` for a product table), a row that the subject's own
  identifiers reach, and a value in the field's format; anything else is refused before
  anything is stored;
- nothing is written before a member of staff approves the item, and only on a request whose
  identity is verified;
- a product value is written through `core.sources.column_update` (parameterised SQL limited to
  the subject's rows) and the profile through `accounts.services.subject_update`;
- applying is idempotent: `applied_at` is claimed with a conditional UPDATE, so applying twice
  writes nothing more (and a crash between the write and the claim only writes the same value
  again);
- audit entries name the field and the ids, never a value.

Permission checks belong to the callers (portal, API, admin); these functions assume the actor
may act.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import DataSubject
from accounts.services import subject_identifiers, subject_update
from core import datamap
from core import sources as product
from core.audit import Actor, audit_log
from core.crypto import normalise
from core.masking import mask_email, mask_id_number, mask_phone
from core.models import NoticeKind
from core.recipients import recipients_notify
from dsar.models import (
    CLOCK_RUNNING,
    OPEN_STATUSES,
    CorrectionItem,
    DataSubjectRequest,
    OnBehalf,
    RequestType,
    Status,
)
from dsar.services import TransitionError
from dsar.workdays import business_today, business_tz

QUANYI = CorrectionItem.QUANYI
PROFILE = CorrectionItem.PROFILE
MAX_VALUE = 1000
MAX_REASON = 1000
MAX_CHANGES = 50
MAX_LISTED_ROWS = 200  # per table, in the list a subject picks from

# How a value is checked and normalised.
TEXT, EMAIL, PHONE, ID_NUMBER, DATE, DATETIME, INTEGER, NUMBER = (
    "text",
    "email",
    "phone",
    "id_number",
    "date",
    "datetime",
    "integer",
    "number",
)
# Our own profile fields, by name (they are few and ours); product columns are judged by the
# data map (identifier columns), their name and the database's column type.
_PROFILE_KINDS = {"email": EMAIL, "phone": PHONE, "id_number": ID_NUMBER, "birth_date": DATE}
_PROFILE_MAX = {"full_name": 100, "email": 254, "phone": 32}
_INTEGER_TYPES = {"IntegerField", "BigIntegerField", "SmallIntegerField", "PositiveIntegerField"}
_NUMBER_TYPES = {"FloatField", "DecimalField"}


class ChangeErrors(ValidationError):
    """Some proposed changes are invalid: `changes` holds one dict of field messages per change,
    in order (empty for the good ones), the shape the API answers with."""

    def __init__(self, changes: list[dict[str, list[str]]]) -> None:
        self.changes = changes
        flat = [m for errors in changes for messages in errors.values() for m in messages]
        super().__init__({"changes": flat})


# --- What a field is -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    target: str
    table: str
    column: str
    kind: str
    max_length: int
    category: str
    per_row: bool  # the table holds several rows per person: a proposal names one

    @property
    def is_birth(self) -> bool:
        return self.category == datamap.Category.BIRTH_GENDER_ORIGIN


def _profile_fields() -> dict[str, datamap.PersonalField]:
    source = datamap.source_for(DataSubject)
    return dict(source.fields) if source is not None else {}


def _declared_size(declared: str) -> int | None:
    found = re.search(r"char(?:acter)?(?:\s+varying)?\s*\(\s*(\d+)\s*\)", declared, re.IGNORECASE)
    return int(found.group(1)) if found else None


def _sqlite_type(declared: str) -> str:
    # SQLite's type affinity rules (https://www.sqlite.org/datatype3.html §3.1), plus dates.
    d = declared.lower()
    if "int" in d:
        return "IntegerField"
    if any(t in d for t in ("char", "clob", "text")):
        return "CharField" if _declared_size(d) else "TextField"
    if any(t in d for t in ("real", "floa", "doub", "numeric", "decimal")):
        return "FloatField"
    if "timestamp" in d or "datetime" in d:
        return "DateTimeField"
    if d.strip() == "date":
        return "DateField"
    return "TextField"


def column_types(source: product.SourceMap, table: product.Table) -> dict[str, tuple[str, int | None]]:
    """Django's name for each column's type and its maximum length, read from the database."""
    connection = connections[source.database]
    out: dict[str, tuple[str, int | None]] = {}
    with connection.cursor() as cursor:
        described = connection.introspection.get_table_description(cursor, table.name)
    for info in described:
        if isinstance(info.type_code, str):  # SQLite: the declared type
            out[info.name] = (_sqlite_type(info.type_code), _declared_size(info.type_code))
            continue
        try:
            field_type = connection.introspection.get_field_type(info.type_code, info)
        except KeyError:
            field_type = "TextField"
        out[info.name] = (field_type, info.display_size if field_type == "CharField" else None)
    return out


def _product_kind(table: product.Table, column: str, field_type: str) -> str:
    for kind, matched in table.match.items():
        if matched == column:
            return kind  # an identifier column: email, phone or id_number
    name = column.lower()
    if name == "email" or name.endswith("_email"):
        return EMAIL
    if name in ("phone", "mobile") or name.endswith("_phone"):
        return PHONE
    if field_type == "DateField":
        return DATE
    if field_type == "DateTimeField":
        return DATETIME
    if field_type in _INTEGER_TYPES:
        return INTEGER
    if field_type in _NUMBER_TYPES:
        return NUMBER
    return TEXT


def _source(target: str) -> product.SourceMap:
    try:
        return product.source_map(target)
    except KeyError:
        raise ValidationError(
            {
                "target": _("Unknown place “%(target)s”: use “quanyi” or a product source.")
                % {"target": target}
            }
        ) from None


def _unreachable(source: product.SourceMap) -> ValidationError:
    return ValidationError(
        _("%(source)s cannot be reached just now. Please try again later.")
        % {"source": product.text(source.name)}
    )


def field_spec(*, target: str, table: str, column: str) -> FieldSpec:
    """The correctable field named, or a ValidationError naming what is wrong."""
    target, table, column = (target or "").strip(), (table or "").strip(), (column or "").strip()
    if target == QUANYI:
        if table not in ("", PROFILE):
            raise ValidationError({"table": _("Your Quanyi profile has one table: “profile”.")})
        profile = datamap.source_for(DataSubject)
        pf = profile.fields.get(column) if profile is not None else None
        if pf is None and (profile is None or column not in profile.not_personal):
            raise ValidationError(
                {"column": _("There is no field “%(field)s” in your profile.") % {"field": column}}
            )
        if pf is None or not pf.correctable:
            raise ValidationError({"column": _not_correctable(f"{PROFILE}.{column}")})
        return FieldSpec(
            QUANYI,
            PROFILE,
            column,
            _PROFILE_KINDS.get(column, TEXT),
            _PROFILE_MAX.get(column, MAX_VALUE),
            str(pf.category.value),
            per_row=False,
        )
    source = _source(target)
    t = source.tables.get(table)
    if t is None:
        raise ValidationError(
            {
                "table": _("There is no table “%(table)s” in %(source)s.")
                % {"table": table, "source": product.text(source.name)}
            }
        )
    mapped = t.columns.get(column)
    if mapped is None and column not in t.not_personal and column != t.pk:
        raise ValidationError(
            {"column": _("There is no field “%(field)s” in %(table)s.") % {"field": column, "table": table}}
        )
    if mapped is None or not mapped.correctable:
        raise ValidationError({"column": _not_correctable(f"{table}.{column}")})
    try:
        field_type, size = column_types(source, t).get(column, ("TextField", None))
    except DatabaseError:
        raise _unreachable(source) from None
    return FieldSpec(
        source.code,
        t.name,
        column,
        _product_kind(t, column, field_type),
        min(size or MAX_VALUE, MAX_VALUE),
        str(mapped.category.value),
        per_row=not t.match,
    )


def _not_correctable(field: str) -> str:
    return _(
        "“%(field)s” cannot be corrected by request. If it is wrong, say so in the request details "
        "and our staff will look into it."
    ) % {"field": field}


# --- Values ------------------------------------------------------------------------------------

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INTEGER = re.compile(r"^[+-]?\d{1,18}$")
_NUMBER = re.compile(r"^[+-]?(?:\d{1,12}(?:\.\d{0,6})?|\.\d{1,6})$")
_PHONE_CHARS = re.compile(r"^[+\d\s\-()]+$")
_ID_NUMBER = re.compile(r"^[0-9A-Z]{6,32}$")


def _bad(message: str) -> ValidationError:
    return ValidationError({"value": message})


def value_clean(spec: FieldSpec, raw: object) -> str:
    """The proposed value checked against the field's format and normalised (phone numbers to
    digits, e-mail addresses lower-case, dates ISO), or a ValidationError on `value`."""
    if raw is None or isinstance(raw, bool | dict | list):
        raise _bad(_("Enter the new value."))
    text = str(raw).strip()
    if not text:
        raise _bad(_("Enter the new value."))
    if len(text) > spec.max_length:
        raise _bad(_("At most %(n)d characters.") % {"n": spec.max_length})
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise _bad(_("The value contains control characters."))
    if spec.kind == EMAIL:
        try:
            validate_email(text)
        except ValidationError:
            raise _bad(_("Enter a valid e-mail address.")) from None
        return normalise("email", text)
    if spec.kind == PHONE:
        digits = normalise("phone", text)
        if not _PHONE_CHARS.match(text) or not 7 <= len(digits) <= 15:
            raise _bad(_("Enter a valid phone number, e.g. 138 0013 8000."))
        return digits
    if spec.kind == ID_NUMBER:
        value = normalise("id_number", text)
        if not _ID_NUMBER.match(value):
            raise _bad(_("Enter the ID number as printed on the document: digits and letters only."))
        return value
    if spec.kind == DATE:
        try:
            day = date.fromisoformat(text) if _DATE.match(text) else None
        except ValueError:
            day = None
        if day is None:
            raise _bad(_("Enter a date as YYYY-MM-DD, e.g. 1990-03-07."))
        if spec.is_birth and not (date(1900, 1, 1) <= day <= business_today()):
            raise _bad(_("A birth date lies between 1900 and today."))
        return day.isoformat()
    if spec.kind == DATETIME:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _bad(_("Enter a date and time as YYYY-MM-DD HH:MM.")) from None
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, business_tz())
        return moment.isoformat()
    if spec.kind == INTEGER:
        if not _INTEGER.match(text):
            raise _bad(_("Enter a whole number."))
        return str(int(text))
    if spec.kind == NUMBER:
        if not _NUMBER.match(text):
            raise _bad(_("Enter a number, e.g. 172.5."))
        return text.lstrip("+")
    return text


def _db_value(spec: FieldSpec, value: str) -> Any:
    if spec.kind == INTEGER:
        return int(value)
    if spec.kind == NUMBER:
        return float(value)
    return value


def as_text(value: Any) -> str | None:
    """A stored value as the subject reads it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        local = timezone.localtime(value, business_tz()) if timezone.is_aware(value) else value
        return local.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, bytes | memoryview):
        return None
    return str(value)


def _same(spec: FieldSpec, current: str, new: str) -> bool:
    if spec.kind == NUMBER:
        try:
            return Decimal(current) == Decimal(new)
        except InvalidOperation:
            return False
    if spec.kind in (EMAIL, PHONE, ID_NUMBER):
        return normalise(spec.kind, current) == new
    if spec.kind == DATE:
        return current[:10] == new
    return current.strip() == new


def value_masked(kind: str, value: str | None) -> str:
    """For staff without `accounts.view_sensitive`."""
    if not value:
        return "—"
    if kind == EMAIL:
        return mask_email(value)
    if kind == PHONE:
        return mask_phone(value)
    if kind == ID_NUMBER:
        return mask_id_number(value)
    return value[:1] + product.MASK


# --- The subject's rows ------------------------------------------------------------------------


def _subject_rows(subject: DataSubject, source: product.SourceMap) -> product.SubjectRows:
    identifiers = product.identifiers_clean(subject_identifiers(subject=subject))
    return product.subject_rows(source, identifiers)


def _rows(
    rows: product.SubjectRows, table: product.Table, columns: Sequence[str], limit: int | None = None
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for chunk in product.iter_rows(rows, table, columns=columns, batch=500):
        out += chunk
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def _row_key(row: Any) -> str | None:
    if row is None or isinstance(row, bool | dict | list):
        return None
    text = str(row).strip()
    return text or None


def _current(subject: DataSubject, spec: FieldSpec, row: Any) -> tuple[str | None, str | None]:
    """(row key, the value held now) of the subject's field, or a ValidationError when the row
    is not theirs. Another person's row and a row that does not exist get the same answer."""
    key = _row_key(row)
    if spec.target == QUANYI:
        if key is not None:
            raise ValidationError(
                {"row": _("Your profile has no records to choose from: leave “row” empty.")}
            )
        return None, getattr(subject, spec.column) or None
    source = product.source_map(spec.target)
    table = source.table(spec.table)
    if spec.per_row and key is None:
        raise ValidationError(
            {
                "row": _("Say which record: “%(table)s” holds several records per person.")
                % {"table": spec.table}
            }
        )
    not_yours = ValidationError({"row": _("Record %(row)s is not one of yours.") % {"row": (key or "")[:64]}})
    if key is not None and len(key) > 64:
        raise not_yours
    try:
        found = _rows(_subject_rows(subject, source), table, [spec.column])
    except DatabaseError:
        raise _unreachable(source) from None
    if key is not None:
        for pk, value in found:
            if str(pk) == key:
                return key, as_text(value)
        raise not_yours
    if not found:
        raise ValidationError(
            {"table": _("We hold no “%(table)s” record for you there.") % {"table": spec.table}}
        )
    values = sorted({v for v in (as_text(value) for _pk, value in found) if v})
    return None, " / ".join(values) or None


def _native_pk(rows: product.SubjectRows, table: product.Table, key: str) -> tuple[bool, Any]:
    """The primary key, in the database's own type, of the subject's row `key`."""
    for chunk in product.iter_rows(rows, table, columns=[], batch=2000):
        for (pk,) in chunk:
            if str(pk) == key:
                return True, pk
    return False, None


# --- Labels -------------------------------------------------------------------------------------


def _column_label(column: str) -> str:
    # The data-map files carry labels per table, not per column (yet).
    return column.replace("_", " ")


def place_label(target: str, table: str) -> str:
    if target == QUANYI:
        return _("Your profile at Quanyi")
    try:
        source = product.source_map(target)
        return f"{product.text(source.name)} · {product.text(source.table(table).label)}"
    except KeyError:
        return f"{target} · {table}"


def _profile_label(column: str) -> str:
    try:
        return str(getattr(DataSubject._meta.get_field(column), "verbose_name", column))
    except FieldDoesNotExist:
        return column


def field_label(target: str, table: str, column: str) -> str:
    """The field in the reader's language, e.g. "Your profile at Quanyi · phone"."""
    name = _profile_label(column) if target == QUANYI else _column_label(column)
    return f"{place_label(target, table)} · {name}"


def item_label(item: CorrectionItem) -> str:
    label = field_label(item.target, item.table, item.column)
    return f"{label} (#{item.row})" if item.row else label


# --- Selectors: what the subject may correct ----------------------------------------------------


@dataclass(frozen=True)
class Correctable:
    """One field (in one row) the subject may propose a new value for, with the value held now."""

    target: str
    table: str
    column: str
    row: str | None
    section: str  # the place, and the record for tables with several rows per person
    name: str  # the field's own name, shown under its section
    current: str
    kind: str

    @property
    def key(self) -> str:
        return f"{self.target}.{self.table}.{self.column}.{self.row or ''}"


@dataclass(frozen=True)
class CorrectableListing:
    fields: list[Correctable]
    unavailable: list[str]  # sources that could not be read just now


def _record_label(pk: Any, context: Sequence[Any]) -> str:
    bits = [f"#{pk}", *(t for t in (as_text(v) for v in context) if t)]
    return " · ".join(bits)


def correctable_fields(*, subject: DataSubject) -> CorrectableListing:
    """Every correctable field of the subject with its current value: the Quanyi profile, then
    each product source's tables (one entry per record where a table holds several per person,
    recognisable by a few of the record's non-sensitive values)."""
    fields: list[Correctable] = []
    profile = place_label(QUANYI, PROFILE)
    for name, pf in _profile_fields().items():
        if pf.correctable:
            fields.append(
                Correctable(
                    target=QUANYI,
                    table=PROFILE,
                    column=name,
                    row=None,
                    section=profile,
                    name=_profile_label(name),
                    current=as_text(getattr(subject, name)) or "",
                    kind=_PROFILE_KINDS.get(name, TEXT),
                )
            )
    unavailable: list[str] = []
    for source in product.source_maps():
        try:
            fields += _source_correctables(subject, source)
        except DatabaseError:
            unavailable.append(product.text(source.name))
    return CorrectableListing(fields, unavailable)


def _source_correctables(subject: DataSubject, source: product.SourceMap) -> list[Correctable]:
    out: list[Correctable] = []
    rows: product.SubjectRows | None = None
    for table in source.tables.values():
        columns = [c.name for c in table.columns.values() if c.correctable]
        if not columns:
            continue
        rows = rows or _subject_rows(subject, source)
        if rows.empty:
            return []
        types = column_types(source, table)
        kinds = {c: _product_kind(table, c, types.get(c, ("TextField", None))[0]) for c in columns}
        place = place_label(source.code, table.name)
        if table.match:
            found = _rows(rows, table, columns, MAX_LISTED_ROWS)
            if not found:
                continue
            for i, column in enumerate(columns, start=1):
                values = sorted({v for v in (as_text(r[i]) for r in found) if v})
                out.append(
                    Correctable(
                        target=source.code,
                        table=table.name,
                        column=column,
                        row=None,
                        section=place,
                        name=_column_label(column),
                        current=" / ".join(values),
                        kind=kinds[column],
                    )
                )
            continue
        context = [
            c.name
            for c in table.columns.values()
            if not c.correctable and not c.sensitive and c.export != datamap.Export.OMIT
        ][:2]
        for row in _rows(rows, table, [*columns, *context], MAX_LISTED_ROWS):
            pk, held, extra = row[0], row[1 : 1 + len(columns)], row[1 + len(columns) :]
            section = f"{place} · {_record_label(pk, extra)}"
            for column, value in zip(columns, held, strict=True):
                out.append(
                    Correctable(
                        target=source.code,
                        table=table.name,
                        column=column,
                        row=str(pk),
                        section=section,
                        name=_column_label(column),
                        current=as_text(value) or "",
                        kind=kinds[column],
                    )
                )
    return out


def correction_items(request: DataSubjectRequest) -> list[CorrectionItem]:
    return list(CorrectionItem.objects.filter(request=request).select_related("request__subject"))


@dataclass(frozen=True)
class Outcome:
    """What the requester is told about one item."""

    item: CorrectionItem
    label: str
    state: str  # pending, changed, approved (not yet written), not_found, refused
    text: str


OUTCOME_TEXT = {
    "pending": gettext_lazy("Waiting for our decision"),
    "approved": gettext_lazy("Approved: being applied"),
    "changed": gettext_lazy("Changed"),
    "not_found": gettext_lazy("Approved, but the record no longer exists: nothing was changed"),
    "refused": gettext_lazy("Not changed"),
}


def _state(item: CorrectionItem) -> str:
    if item.decision == CorrectionItem.Decision.REJECTED:
        return "refused"
    if item.decision == CorrectionItem.Decision.PENDING:
        return "pending"
    if item.applied_at is None:
        return "approved"
    return "changed" if item.rows_changed else "not_found"


def correction_outcomes(request: DataSubjectRequest) -> list[Outcome]:
    """Per item, in the active language: what was changed and why anything was not."""
    out = []
    for item in correction_items(request):
        state = _state(item)
        out.append(Outcome(item, item_label(item), state, str(OUTCOME_TEXT[state])))
    return out


# --- Services -----------------------------------------------------------------------------------


def _check_request(request: DataSubjectRequest) -> None:
    if request.type != RequestType.CORRECTION:
        raise ValidationError({"changes": _("Only correction requests propose new values.")})
    if request.status not in OPEN_STATUSES:
        raise TransitionError(
            {
                "changes": _("A request that is %(status)s takes no new corrections.")
                % {"status": Status(request.status).label}
            }
        )
    subject = request.subject
    if request.on_behalf != OnBehalf.SELF or request.user_id is None or subject.user_id != request.user_id:
        raise ValidationError(
            {
                "changes": _(
                    "New values for single fields are for account holders correcting their own data. "
                    "Describe the correction in the request details instead."
                )
            }
        )
    if subject.is_erased:
        raise ValidationError({"changes": _("This person's data has been erased.")})


def _audit_data(item: CorrectionItem, **extra: Any) -> dict[str, Any]:
    # Ids and field names only: the values are personal data and stay out of the audit log.
    return {
        "item": item.pk,
        "target": item.target,
        "table": item.table,
        "column": item.column,
        "row": item.row,
        **extra,
    }


@transaction.atomic
def correction_propose(
    *,
    request: DataSubjectRequest,
    actor: Actor,
    target: str,
    table: str,
    column: str,
    row: Any,
    value: Any,
    reason: str = "",
) -> CorrectionItem:
    """Record one proposed value, after checking that the field is correctable, the row is the
    subject's, the value fits the field and nothing identical awaits a decision already."""
    # A row lock on the subject serialises their proposals, so the duplicate check below holds.
    subject = DataSubject.objects.select_for_update().get(pk=request.subject_id)
    request.refresh_from_db(fields=["status"])  # judged as it is now, not as the caller read it
    _check_request(request)
    target = (target or "").strip() if isinstance(target, str) else ""
    spec = field_spec(
        target=target,
        table=(table if isinstance(table, str) else "") or (PROFILE if target == QUANYI else ""),
        column=column if isinstance(column, str) else "",
    )
    new = value_clean(spec, value)
    reason = reason.strip() if isinstance(reason, str) else ""
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": _("At most %(n)d characters.") % {"n": MAX_REASON}})
    row_key, current = _current(subject, spec, row)
    if current is not None and _same(spec, current, new):
        raise ValidationError({"value": _("That is already the value we hold.")})
    waiting = CorrectionItem.objects.filter(
        request__subject=subject,
        request__status__in=OPEN_STATUSES,
        decision=CorrectionItem.Decision.PENDING,
        target=spec.target,
        table=spec.table,
        column=spec.column,
    ).filter(Q(row=row_key) if row_key is not None else Q(row__isnull=True))
    duplicate = waiting.select_related("request").first()
    if duplicate is not None:
        raise ValidationError(
            {
                "column": _("A correction of this field already awaits our decision (%(reference)s).")
                % {"reference": duplicate.request.reference}
            }
        )
    if CorrectionItem.objects.filter(request=request).count() >= MAX_CHANGES:
        raise ValidationError({"changes": _("At most %(n)d changes in one request.") % {"n": MAX_CHANGES}})
    item = CorrectionItem(
        request=request,
        target=spec.target,
        table=spec.table,
        column=spec.column,
        row=row_key,
        current_value=current or "",
        proposed_value=new,
        reason=reason,
    )
    item.request.subject = subject
    item.save()
    audit_log(actor=actor, action="correction.proposed", obj=request, data=_audit_data(item))
    return item


def _as_dict(exc: ValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {field: list(messages) for field, messages in exc.message_dict.items()}
    return {"non_field_errors": list(exc.messages)}


@transaction.atomic
def corrections_propose(
    *, request: DataSubjectRequest, actor: Actor, changes: Sequence[Mapping[str, Any]]
) -> list[CorrectionItem]:
    """Several proposals at once: all are stored, or none (ChangeErrors says which failed)."""
    if len(changes) > MAX_CHANGES:
        raise ValidationError({"changes": _("At most %(n)d changes in one request.") % {"n": MAX_CHANGES}})
    _check_request(request)
    items: list[CorrectionItem] = []
    errors: list[dict[str, list[str]]] = []
    for change in changes:
        try:
            items.append(
                correction_propose(
                    request=request,
                    actor=actor,
                    target=change.get("target", ""),
                    table=change.get("table", ""),
                    column=change.get("column", ""),
                    row=change.get("row"),
                    value=change.get("value"),
                    reason=change.get("reason", ""),
                )
            )
            errors.append({})
        except ValidationError as exc:  # correction_propose's savepoint rolled its work back
            errors.append(_as_dict(exc))
    if any(errors):
        raise ChangeErrors(errors)
    return items


@transaction.atomic
def request_submit_with_changes(
    *, user: Any, changes: Sequence[Mapping[str, Any]] = (), **submit: Any
) -> DataSubjectRequest:
    """A signed-in subject's request (dsar.services.request_submit_for_user) and, for a
    correction, the new values they propose, in one transaction: a bad change stores nothing."""
    from dsar.services import request_submit_for_user

    kind = submit.get("type")
    if changes and kind != RequestType.CORRECTION:
        raise ValidationError({"changes": _("Only correction requests propose new values.")})
    if kind == RequestType.CORRECTION and not changes and not str(submit.get("details", "")).strip():
        raise ValidationError({"details": _("Say what is wrong, or propose new values for your fields.")})
    request = request_submit_for_user(user=user, **submit)
    if changes:
        corrections_propose(request=request, actor=Actor.of(user), changes=changes)
    return request


def _decided_by(actor: Actor) -> int | None:
    return int(actor.id) if actor.type == "user" and actor.id.isdigit() else None


def correction_decide(
    *, item: CorrectionItem, actor: Actor, approve: bool, reason: str = ""
) -> CorrectionItem:
    """Approve (the value is written at once, see correction_apply) or reject with a reason the
    requester reads. Deciding again the same way is harmless; changing a decision is refused."""
    reason = (reason or "").strip()
    if not approve and not reason:
        raise ValidationError({"reason": _("Say why the value is not changed: the requester reads it.")})
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": _("At most %(n)d characters.") % {"n": MAX_REASON}})
    wanted = CorrectionItem.Decision.APPROVED if approve else CorrectionItem.Decision.REJECTED
    with transaction.atomic():
        fresh = CorrectionItem.objects.select_related("request__subject").get(pk=item.pk)
        if fresh.decision == wanted:
            if not approve or fresh.applied_at is not None:
                return fresh
        else:
            if fresh.decision != CorrectionItem.Decision.PENDING:
                raise TransitionError(
                    _("This correction was already %(decision)s.")
                    % {"decision": fresh.get_decision_display()}
                )
            request = fresh.request
            if request.status not in CLOCK_RUNNING:
                raise TransitionError(
                    _(
                        "Corrections are decided once the requester's identity is verified, "
                        "while the request is open."
                    )
                )
            if approve:
                # The record must still be the subject's (it may have been deleted or moved since).
                spec = field_spec(target=fresh.target, table=fresh.table, column=fresh.column)
                try:
                    _current(request.subject, spec, fresh.row)
                except ValidationError as exc:
                    raise ValidationError(
                        _("This correction can no longer be applied (%(why)s) — reject it with a reason.")
                        % {"why": " ".join(exc.messages)}
                    ) from None
            claimed = CorrectionItem.objects.filter(
                pk=fresh.pk, decision=CorrectionItem.Decision.PENDING
            ).update(decision=wanted, decided_by_id=_decided_by(actor), decided_at=timezone.now())
            if not claimed:  # a colleague decided meanwhile: judge again against what they did
                return correction_decide(item=fresh, actor=actor, approve=approve, reason=reason)
            fresh.refresh_from_db()
            if reason:
                fresh.decision_reason = reason
                fresh.save(update_fields=["decision_reason"])
            audit_log(
                actor=actor,
                action=f"correction.{wanted}",
                obj=request,
                data=_audit_data(fresh, reason_given=bool(reason)),
            )
    if approve:
        return correction_apply(item=fresh, actor=actor)
    return fresh


def correction_apply(*, item: CorrectionItem, actor: Actor) -> CorrectionItem:
    """Write an approved value where it lives and record how many records changed. Idempotent:
    an applied item returns at once."""
    item = CorrectionItem.objects.select_related("request__subject__user").get(pk=item.pk)
    if item.decision != CorrectionItem.Decision.APPROVED:
        raise TransitionError(_("Only an approved correction is applied."))
    if item.applied_at is not None:
        return item
    subject = item.request.subject
    value = item.proposed_value or ""
    if item.target == QUANYI:
        with transaction.atomic():
            if not _claim_applied(item, 1):
                return CorrectionItem.objects.get(pk=item.pk)
            subject_update(actor=actor, subject=subject, **{item.column: value})
            return _applied(item, actor, 1)
    spec = field_spec(target=item.target, table=item.table, column=item.column)
    source = product.source_map(item.target)
    table = source.table(item.table)
    try:
        rows = _subject_rows(subject, source)
        pk: Any = None
        found = True
        if item.row is not None:
            found, pk = _native_pk(rows, table, item.row)
        changed = (
            product.column_update(rows, table, item.column, _db_value(spec, value), pk=pk) if found else 0
        )
    except DatabaseError as exc:
        # The message of a database error may quote the value: only its kind is shown.
        raise ValidationError(
            _("The new value could not be written to %(source)s (%(error)s). Try applying it again.")
            % {"source": product.text(source.name), "error": type(exc).__name__}
        ) from None
    with transaction.atomic():
        if not _claim_applied(item, changed):
            return CorrectionItem.objects.get(pk=item.pk)
        return _applied(item, actor, changed)


def _claim_applied(item: CorrectionItem, rows: int) -> bool:
    return bool(
        CorrectionItem.objects.filter(pk=item.pk, applied_at__isnull=True).update(
            applied_at=timezone.now(), rows_changed=rows
        )
    )


def _applied(item: CorrectionItem, actor: Actor, rows: int) -> CorrectionItem:
    item.refresh_from_db()
    audit_log(actor=actor, action="correction.applied", obj=item.request, data=_audit_data(item, rows=rows))
    if rows:
        transaction.on_commit(partial(_tell_recipients, item))
    return item


def _tell_recipients(item: CorrectionItem) -> None:
    """Tell every recipient that holds the corrected field's category (PIPL Art. 46 with seed
    000 §4.2): kind "correction", one event per item, with the new value so they can correct
    their copy (sealed in the notice, cleared once delivered; never in the audit log)."""
    request = item.request
    spec = field_spec(target=item.target, table=item.table, column=item.column)
    name = f"{item.target}.{item.table or PROFILE}.{item.column}"
    recipients_notify(
        subject=request.subject,
        kind=NoticeKind.CORRECTION,
        reference=f"{request.reference}/C{item.pk}",
        actor=Actor("system"),
        categories=[spec.category],
        fields={name: item.proposed_value or None},
    )


def items_for_staff(items: Iterable[CorrectionItem], *, unmasked: bool) -> list[dict[str, Any]]:
    """Rows of the admin's corrections section: values in clear only for `unmasked` staff."""
    out = []
    kinds: dict[tuple[str, str, str], str] = {}
    for item in items:
        field = (item.target, item.table, item.column)
        if field not in kinds:
            try:
                kinds[field] = field_spec(target=item.target, table=item.table, column=item.column).kind
            except ValidationError:
                kinds[field] = TEXT
        kind = kinds[field]
        show = (lambda v: v or "—") if unmasked else partial(value_masked, kind)
        out.append(
            {
                "item": item,
                "label": item_label(item),
                "current": show(item.current_value),
                "proposed": show(item.proposed_value),
                "state": _state(item),
            }
        )
    return out
