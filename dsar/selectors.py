"""Reads about data-subject requests that the staff admin (and later the API) share.

Nothing here writes. Every query is shaped for a table of a million rows: counts and filters
go through the (status, due_at), (due_at, id) and partial `deadline_provisional` indexes,
and a page of requests costs a constant number of queries however many rows it shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, F, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.models import DataSubject, User
from core import crypto
from core.audit import audit_trail
from core.masking import mask_email, mask_phone
from core.models import AuditEntry
from dsar.models import OPEN_STATUSES, DataSubjectRequest, Status
from dsar.workdays import WorkdayIndex, business_today, workday_index

DUE_SOON_WORKING_DAYS = 3
ON_TIME_WINDOW = timedelta(days=90)

# Encrypted columns the change list never shows. The requester's e-mail and phone are read as
# raw ciphertext (see `requests_for_list`) and only ever leave this module masked.
LIST_DEFERRED = (
    "requester_name",
    "requester_email",
    "requester_phone",
    "details",
    "answer",
    "refusal_explanation",
)


# --- The clock of one page ---------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """`now`, today's business date and the working-day index, taken once per page so that
    every row and every filter of that page agree (and the index costs its queries once)."""

    now: datetime
    today: date
    index: WorkdayIndex

    @classmethod
    def current(cls) -> Clock:
        now = timezone.now()
        return cls(now=now, today=business_today(now), index=workday_index())

    @property
    def due_soon_cutoff(self) -> date:
        """The last due date that leaves at most 3 working days after today."""
        return self.index.date_with_working_days_left(self.today, DUE_SOON_WORKING_DAYS)


def requests_open(qs: QuerySet[DataSubjectRequest] | None = None) -> QuerySet[DataSubjectRequest]:
    base = DataSubjectRequest.objects.all() if qs is None else qs
    return base.filter(status__in=OPEN_STATUSES)


def requests_overdue(qs: QuerySet[DataSubjectRequest], *, clock: Clock) -> QuerySet[DataSubjectRequest]:
    return requests_open(qs).filter(due_at__lt=clock.now)


def requests_due_soon(qs: QuerySet[DataSubjectRequest], *, clock: Clock) -> QuerySet[DataSubjectRequest]:
    """Open, not yet overdue, and due within 3 working days (today included)."""
    return requests_open(qs).filter(due_date__lte=clock.due_soon_cutoff, due_at__gte=clock.now)


def requests_provisional(qs: QuerySet[DataSubjectRequest] | None = None) -> QuerySet[DataSubjectRequest]:
    return requests_open(qs).filter(deadline_provisional=True)


def provisional_missing_years() -> list[int]:
    """Years whose official schedule is missing while an open request's deadline reaches into
    them (the partial index on `deadline_provisional` keeps this cheap)."""
    years = (
        requests_provisional()
        .exclude(deadline_missing_year__isnull=True)
        .order_by("deadline_missing_year")
        .values_list("deadline_missing_year", flat=True)
        .distinct()
    )
    return [y for y in years if y is not None]


# --- The change list ---------------------------------------------------------------------------


def requests_for_list(qs: QuerySet[DataSubjectRequest]) -> QuerySet[DataSubjectRequest]:
    """Columns of the change list: the big encrypted ones deferred; the requester's e-mail and
    phone selected as raw ciphertext so that a page decrypts them with one key-store query."""
    return qs.defer(*LIST_DEFERRED).annotate(
        requester_email_token=Cast(F("requester_email"), output_field=TextField()),
        requester_phone_token=Cast(F("requester_phone"), output_field=TextField()),
    )


def _load_subject_keys(key_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    return crypto.subject_keys_load(key_ids)


def _token_key(token: str | None) -> uuid.UUID | None:
    if not token:
        return None
    try:
        return crypto.token_key_id(token)
    except (crypto.CryptoError, ValueError):
        return None


def _decrypt(token: str | None, key: uuid.UUID | None, ready: set[uuid.UUID], aad: str) -> str | None:
    if token is None or key is None or key not in ready:
        return None
    try:
        return crypto.decrypt(token, aad=aad)
    except crypto.CryptoError:
        return None


def attach_list_values(rows: Sequence[DataSubjectRequest], *, clock: Clock) -> None:
    """Give each row of a page its masked requester and its deadline state. The clear e-mail
    and phone exist only inside this function: the rows carry the masked text."""
    model = DataSubjectRequest._meta
    email_aad = f"{model.label_lower}.requester_email"
    phone_aad = f"{model.label_lower}.requester_phone"
    tokens = [
        (getattr(r, "requester_email_token", None), getattr(r, "requester_phone_token", None)) for r in rows
    ]
    keys = [(_token_key(e), _token_key(p)) for e, p in tokens]
    ready = _load_subject_keys({k for pair in keys for k in pair if k is not None})
    for row, (email_token, phone_token), (email_key, phone_key) in zip(rows, tokens, keys, strict=True):
        email = _decrypt(email_token, email_key, ready, email_aad)
        phone = _decrypt(phone_token, phone_key, ready, phone_aad)
        parts = [mask_email(email) if email else "", mask_phone(phone) if phone else ""]
        row.requester_masked = " · ".join(p for p in parts if p) or "—"  # type: ignore[attr-defined]
        row.deadline_state = deadline_state(row, clock=clock)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DeadlineState:
    """How a request stands against its deadline: `level` is green, amber or red."""

    days_left: int
    overdue: bool
    level: str


def deadline_state(obj: DataSubjectRequest, *, clock: Clock) -> DeadlineState | None:
    if obj.status not in OPEN_STATUSES or obj.due_date is None or obj.due_at is None:
        return None
    left = clock.index.working_days_between(clock.today, obj.due_date)
    overdue = clock.now > obj.due_at
    level = "red" if overdue else "amber" if left <= DUE_SOON_WORKING_DAYS else "green"
    return DeadlineState(days_left=left, overdue=overdue, level=level)


def requests_search(qs: QuerySet[DataSubjectRequest], term: str) -> QuerySet[DataSubjectRequest]:
    """Exact search without decrypting: a reference (any case), or an e-mail or phone number
    matched through the blind indexes of the request and of its subject."""
    term = term.strip()
    if not term:
        return qs
    if "@" in term:
        kind, request_field, subject_field = "email", "requester_email_index", "email_index"
    elif not term.upper().startswith("DSR-") and sum(ch.isdigit() for ch in term) >= 7:
        kind, request_field, subject_field = "phone", "requester_phone_index", "phone_index"
    else:
        # References are generated upper-case: comparing upper-case uses the unique index, where
        # iexact would scan the table.
        return qs.filter(reference=term.upper())
    digest = crypto.blind_index(kind, term)
    # The subjects first (a handful of ids, by index): an OR with a literal id list lets the
    # database combine two index scans, where an OR with a subquery would scan the table.
    subject_ids = list(DataSubject.objects.filter(**{subject_field: digest}).values_list("pk", flat=True))
    return qs.filter(Q(**{request_field: digest}) | Q(subject_id__in=subject_ids))


def assignable_staff() -> QuerySet[User]:
    """Active staff who may work requests through a group or a direct permission. Starts from
    the (small) permission tables, so it stays cheap however many account holders exist."""
    from django.contrib.auth.models import Permission

    perm = Permission.objects.filter(codename="work_request", content_type__app_label="dsar").values("pk")
    via_group = User.groups.through.objects.filter(group__permissions__in=perm).values("user_id")
    direct = User.user_permissions.through.objects.filter(permission__in=perm).values("user_id")
    return User.objects.filter(pk__in=via_group.union(direct), is_active=True, is_staff=True).order_by(
        "display_name", "email"
    )


# --- The detail page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    entry: AuditEntry
    actor: str


def request_timeline(request: DataSubjectRequest) -> list[TimelineEntry]:
    """Every audit entry of the request, oldest first, with staff actors named (one query
    for the entries, one for the names)."""
    entries = list(audit_trail(request).order_by("seq"))
    user_ids = {int(e.actor_id) for e in entries if e.actor_type == "user" and e.actor_id.isdigit()}
    names = {u.pk: str(u) for u in User.objects.filter(pk__in=user_ids)} if user_ids else {}
    result = []
    for e in entries:
        if e.actor_type == "user" and e.actor_id.isdigit():
            actor = names.get(int(e.actor_id), f"user #{e.actor_id}")
        else:
            actor = e.actor_type
        result.append(TimelineEntry(entry=e, actor=actor))
    return result


# --- The overview ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    open: int
    due_soon: int
    overdue: int
    provisional: int
    missing_years: list[int]
    closed_recently: int
    closed_on_time: int

    @property
    def on_time_share(self) -> float | None:
        """Share of requests answered (completed or refused) on time, or None without any."""
        return self.closed_on_time / self.closed_recently if self.closed_recently else None

    @property
    def on_time_percent(self) -> int | None:
        share = self.on_time_share
        return None if share is None else round(share * 100)


def requests_overview(*, clock: Clock | None = None) -> Overview:
    clock = clock or Clock.current()
    open_qs = requests_open()
    counts = open_qs.aggregate(
        open=Count("pk"),
        overdue=Count("pk", filter=Q(due_at__lt=clock.now)),
        due_soon=Count("pk", filter=Q(due_date__lte=clock.due_soon_cutoff, due_at__gte=clock.now)),
        provisional=Count("pk", filter=Q(deadline_provisional=True)),
    )
    closed = DataSubjectRequest.objects.filter(
        status__in=(Status.COMPLETED, Status.REFUSED),
        closed_at__gte=clock.now - ON_TIME_WINDOW,
        due_at__isnull=False,
    ).aggregate(total=Count("pk"), on_time=Count("pk", filter=Q(closed_at__lte=F("due_at"))))
    return Overview(
        open=counts["open"],
        due_soon=counts["due_soon"],
        overdue=counts["overdue"],
        provisional=counts["provisional"],
        missing_years=provisional_missing_years(),
        closed_recently=closed["total"],
        closed_on_time=closed["on_time"],
    )
