"""The erasure engine: plan, confirm, execute, seal.

How it stays safe:
- Nothing is erased without a plan a person confirmed (or a retention rule that is itself
  a confirmed plan). The plan fixes the primary keys of the subject's rows in each source,
  so the run touches exactly those rows (and rows hanging off them), never a fresh lookup.
- Legal holds are read when planning and again when confirming: a hold on the subject
  blocks the erasure; a hold on a category keeps every table holding that category.
- Execution is claimed with a lease (conditional UPDATE), so two workers never run the same
  erasure; a crashed run is taken over when its lease expires. Each batch is one
  transaction in the source database and every erase operation is idempotent, so repeating
  the batch after a crash changes nothing more.
- Before sealing, every recipient of the subject's data is asked to delete it too (one notice
  per recipient and erasure: a resumed run finds the notices it wrote), and the steps other
  apps registered (before_seal_register) run; each is idempotent. This is the engine's, so
  every runner does it, the bare one included.
- Sealing happens once: the subject's key is destroyed first (crypto-shredding, idempotent),
  then in one transaction Quanyi's own identifying values are removed, the tombstone is
  written and the erasure marked done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import DataSubject
from accounts.services import subject_erase, subject_identifiers
from core import crypto, sources
from core.audit import Actor, audit_log
from core.datamap import Erase
from core.models import NoticeKind, RecipientNotice
from core.outbox import outbox_enqueue
from core.recipients import recipients_notify
from retention.models import Erasure, ErasureStep, LegalHold, Tombstone
from retention.selectors import backups_clear_by, backups_in_use

log = logging.getLogger(__name__)

# Work other apps owe before a person's key is destroyed (dsar closes the open requests of a
# person the service termination erases). Registered from AppConfig.ready, so the engine never
# imports the apps that build on it. Each step gets the erasure, must be idempotent (a resumed
# run calls it again) and runs while the subject's values can still be decrypted.
_before_seal_steps: list[Callable[[Erasure], None]] = []


def before_seal_register(step: Callable[[Erasure], None]) -> None:
    """Idempotent: an app registers its step from AppConfig.ready."""
    if step not in _before_seal_steps:
        _before_seal_steps.append(step)


def holds_active(subject: DataSubject) -> list[LegalHold]:
    return list(
        LegalHold.objects.filter(released_at__isnull=True)
        .filter(Q(subject=subject) | Q(subject__isnull=True))
        .order_by("pk")
    )


def _table_action(table: sources.Table) -> str:
    if table.deletes_rows:
        return "delete"
    if all(c.erase == Erase.KEEP for c in table.columns.values()):
        return "keep"
    return "anonymise"


def _ground(source: sources.SourceMap, code: str) -> dict[str, Any]:
    g = source.grounds[code]
    return {
        "code": g.code,
        "label": dict(g.label),
        "law": dict(g.law),
        "years": g.years,
        "restrict": g.restrict,
    }


def plan_build(subject: DataSubject) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    """(plan, roots, steps) for erasing `subject` as things stand now."""
    holds = holds_active(subject)
    blocking = [h for h in holds if h.subject_id == subject.pk and not h.category]
    held_categories = {h.category for h in holds if h.category}
    identifiers = sources.identifiers_clean(subject_identifiers(subject=subject))
    items: list[dict[str, Any]] = []
    roots: dict[str, Any] = {}
    steps: list[tuple[str, str]] = []
    for source in sources.source_maps():
        rows = sources.subject_rows(source, identifiers)
        roots[source.code] = {k: list(v) for k, v in rows.roots.items()}
        for table in source.erase_order:
            count = sources.count_rows(rows, table) if not rows.empty else 0
            if not count:
                continue
            held = sorted(held_categories & set(table.categories))
            action = "keep" if held else _table_action(table)
            grounds = sorted({c.ground for c in table.columns.values() if c.ground})
            restricted = (
                not held and any(source.grounds[g].restrict for g in grounds) and bool(table.restrict_column)
            )
            items.append(
                {
                    "source": source.code,
                    "source_label": dict(source.name),
                    "table": table.name,
                    "label": dict(table.label),
                    "rows": count,
                    "action": action,
                    "restricted": restricted,
                    "held": held,
                    "columns": [
                        {
                            "name": c.name,
                            "category": str(c.category.value),
                            "sensitive": c.sensitive,
                            "strategy": "keep" if held else str(c.erase.value),
                            "ground": c.ground,
                        }
                        for c in table.columns.values()
                    ],
                    "grounds": [_ground(source, g) for g in grounds],
                }
            )
            if not held:
                steps.append((source.code, table.name))
    plan = {
        "generated_at": timezone.now().isoformat(),
        "blocked": bool(blocking),
        "holds": [
            {"id": h.pk, "ground": h.ground, "category": h.category, "review_on": h.review_on.isoformat()}
            for h in holds
            if h.subject_id == subject.pk or (h.category and h.category in held_categories)
        ],
        "items": items,
        # Quanyi's own records about the person.
        "quanyi": [
            {"what": "profile", "action": "erase"},
            {"what": "account", "action": "close" if subject.user_id else "none"},
            {"what": "verification_documents", "action": "shred"},
            {"what": "requests", "action": "keep_shredded"},
            {"what": "consent_ledger", "action": "keep"},
            {"what": "audit_log", "action": "keep"},
        ],
    }
    return plan, roots, steps


@transaction.atomic
def erasure_plan(
    *,
    subject: DataSubject,
    actor: Actor,
    reference: str,
    origin: str,
    runner: str = "retention.tasks.run_erasure",
    created_by: Any = None,
) -> Erasure:
    """Make (or return the open) plan for erasing `subject` under `reference`."""
    existing = (
        Erasure.objects.filter(subject=subject, reference=reference)
        .exclude(status=Erasure.Status.CANCELLED)
        .first()
    )
    if existing is not None:
        return existing
    if subject.is_erased:
        raise ValidationError(_("This person has already been erased."))
    plan, roots, steps = plan_build(subject)
    erasure = Erasure.objects.create(
        subject=subject,
        reference=reference,
        origin=origin,
        runner=runner,
        plan=plan,
        roots=roots,
        rows_total=sum(i["rows"] for i in plan["items"] if i["action"] != "keep" or i["restricted"]),
        created_by=created_by,
    )
    ErasureStep.objects.bulk_create(
        ErasureStep(erasure=erasure, position=n, source=s, table=t) for n, (s, t) in enumerate(steps)
    )
    audit_log(
        actor=actor,
        action="erasure.planned",
        obj=erasure,
        data={"subject": subject.pk, "reference": reference, "steps": len(steps), "blocked": plan["blocked"]},
    )
    return erasure


@transaction.atomic
def erasure_replan(*, erasure: Erasure, actor: Actor) -> Erasure:
    """Rebuild a plan not yet confirmed (data or holds changed since)."""
    if erasure.status != Erasure.Status.PLANNED:
        raise ValidationError(_("Only a plan waiting for confirmation can be rebuilt."))
    plan, roots, steps = plan_build(erasure.subject)
    erasure.steps.all().delete()
    ErasureStep.objects.bulk_create(
        ErasureStep(erasure=erasure, position=n, source=s, table=t) for n, (s, t) in enumerate(steps)
    )
    erasure.plan, erasure.roots = plan, roots
    erasure.rows_total = sum(i["rows"] for i in plan["items"] if i["action"] != "keep" or i["restricted"])
    erasure.save(update_fields=["plan", "roots", "rows_total"])
    audit_log(actor=actor, action="erasure.replanned", obj=erasure, data={"steps": len(steps)})
    return erasure


class ErasureBusy(ValidationError):
    """Another erasure of the same person is confirmed or running: it erases the same data."""


def _not_busy(erasure: Erasure) -> None:
    other = (
        Erasure.objects.filter(
            subject_id=erasure.subject_id, status__in=[Erasure.Status.CONFIRMED, Erasure.Status.RUNNING]
        )
        .exclude(pk=erasure.pk)
        .first()
    )
    if other is not None:
        raise ErasureBusy(
            gettext_lazy(
                "Another erasure of this person (%(reference)s) is under way and erases the same data; "
                "wait for it to finish."
            ),
            params={"reference": other.reference},
        )


@transaction.atomic
def erasure_confirm(
    *, erasure: Erasure, actor: Actor, confirmed_by: Any = None, enqueue: bool = True
) -> Erasure:
    """Confirm a plan and queue its execution. Refused while a hold blocks it, and while
    another erasure of the same person is confirmed or running (ErasureBusy; the database
    holds it too). `enqueue=False` when the caller runs it at once itself (a staff command);
    if that caller dies, the erasures-resume sweep queues it like any confirmed erasure
    nobody is running."""
    if erasure.status != Erasure.Status.PLANNED:
        if erasure.status in (Erasure.Status.CONFIRMED, Erasure.Status.RUNNING, Erasure.Status.DONE):
            return erasure  # already confirmed: harmless
        raise ValidationError(_("This erasure was cancelled."))
    blocking = [
        h for h in holds_active(erasure.subject) if h.subject_id == erasure.subject_id and not h.category
    ]
    if blocking:
        # Lazy, so whoever reads the message reads it in their own language.
        raise ValidationError(
            gettext_lazy("A legal hold (%(ids)s) keeps this person's data; release it before erasing."),
            params={"ids": ", ".join(f"#{h.pk}" for h in blocking)},
        )
    held_now = {h.category for h in holds_active(erasure.subject) if h.category}
    held_in_plan = {c for item in erasure.plan.get("items", []) for c in item.get("held", [])}
    if held_now - held_in_plan and any(
        held_now & {col["category"] for col in item["columns"]} for item in erasure.plan.get("items", [])
    ):
        raise ValidationError(_("A legal hold was added since this plan was made; rebuild the plan."))
    _not_busy(erasure)
    try:
        with transaction.atomic():  # a savepoint: a refused claim leaves the caller's transaction usable
            claimed = Erasure.objects.filter(pk=erasure.pk, status=Erasure.Status.PLANNED).update(
                status=Erasure.Status.CONFIRMED, confirmed_at=timezone.now(), confirmed_by=confirmed_by
            )
    except IntegrityError:  # another erasure of this person was confirmed a moment ago
        _not_busy(erasure)
        raise
    if not claimed:
        erasure.refresh_from_db()
        return erasure
    audit_log(actor=actor, action="erasure.confirmed", obj=erasure)
    if enqueue:
        outbox_enqueue(erasure.runner, erasure_id=erasure.pk)
    erasure.refresh_from_db()
    return erasure


@transaction.atomic
def erasure_cancel(*, erasure: Erasure, actor: Actor) -> Erasure:
    # Claimed on the status, so a cancel and a confirmation racing for the same plan (a
    # subject undoing their cancellation while staff confirm) never both win.
    if not Erasure.objects.filter(pk=erasure.pk, status=Erasure.Status.PLANNED).update(
        status=Erasure.Status.CANCELLED
    ):
        raise ValidationError(_("Only a plan waiting for confirmation can be cancelled."))
    audit_log(actor=actor, action="erasure.cancelled", obj=erasure)
    erasure.refresh_from_db()
    return erasure


def _lease() -> timedelta:
    return timedelta(seconds=settings.QUANYI_ERASURE_LEASE_SECONDS)


def _claim(erasure_id: int) -> bool:
    now = timezone.now()
    return (
        Erasure.objects.filter(pk=erasure_id, status__in=[Erasure.Status.CONFIRMED, Erasure.Status.RUNNING])
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(
            status=Erasure.Status.RUNNING,
            lease_until=now + _lease(),
            runs=F("runs") + 1,
            started_at=Coalesce("started_at", now),
        )
        == 1
    )


def erasure_run(
    *,
    erasure_id: int,
    batch: int | None = None,
    before_seal: Callable[[Erasure], None] | None = None,
) -> str:
    """Execute a confirmed erasure to the end (or resume one). Returns what happened."""
    if not _claim(erasure_id):
        status = Erasure.objects.filter(pk=erasure_id).values_list("status", flat=True).first()
        return f"not claimed ({status})"
    erasure = Erasure.objects.select_related("subject").get(pk=erasure_id)
    size = batch or settings.QUANYI_ERASURE_BATCH
    audit_log(actor=Actor("system"), action="erasure.started", obj=erasure, data={"run": erasure.runs})
    # Progress (the cursor, the counters, the lease) is checkpointed at most every half second
    # rather than after every batch: a crash repeats at most the batches since the last
    # checkpoint, which is harmless, and the bookkeeping stays off the hot path.
    every = min(settings.QUANYI_ERASURE_CHECKPOINT_SECONDS, settings.QUANYI_ERASURE_LEASE_SECONDS / 3)
    planned = {(i["source"], i["table"]): int(i["rows"]) for i in erasure.plan.get("items", [])}
    for step in erasure.steps.filter(done_at__isnull=True).order_by("position"):
        source = sources.source_map(step.source)
        table = source.table(step.table)
        rows = sources.subject_rows_from(source, erasure.roots.get(step.source, {}))
        cursor, pending, last = step.cursor, 0, time.monotonic()
        # Where the subject's keys are dense (at least half of their key range), walk that range
        # in fixed spans without reading where each batch ends; the keyset loop below then
        # finishes from there (rows added since, or a sparse table from the start).
        count = planned.get((step.source, step.table), 0)
        lo, hi = sources.key_range(rows, table) if count else (None, None)
        if count and isinstance(lo, int) and isinstance(hi, int) and hi - lo + 1 <= 2 * count:
            span = max(1, size * (hi - lo + 1) // count)
            start = cursor if isinstance(cursor, int) else lo - 1
            while start < hi:
                end = min(start + span, hi)
                result = sources.erase_batch(rows, table, after=start, upto=end)
                cursor, start = end, end
                pending += result.rows
                if time.monotonic() - last >= every:
                    _checkpoint(erasure, step, cursor, pending, False)
                    pending, last = 0, time.monotonic()
        while True:
            result = sources.erase_batch(rows, table, after=cursor, limit=size)
            finished = result.last_pk is None
            if not finished:
                cursor = result.last_pk
                pending += result.rows
            if finished or time.monotonic() - last >= every:
                _checkpoint(erasure, step, cursor, pending, finished)
                pending, last = 0, time.monotonic()
            if finished:
                break
    erasure.refresh_from_db()
    recipients_tell(erasure)
    for registered in _before_seal_steps:
        registered(erasure)
    if before_seal is not None:
        before_seal(erasure)
    erasure_seal(erasure=erasure)
    return "done"


def notice_reference(erasure: Erasure) -> str:
    """The reference the recipients' deletion notices carry. A request's erasure is the only one
    under the request's reference, so its notices carry that; a service termination erases
    everyone under one reference, so each person's notices add their subject number (a notice
    reference names one person's event)."""
    if erasure.origin == Erasure.Origin.TERMINATION:
        return f"{erasure.reference}-{erasure.subject_id}"
    return erasure.reference


def recipients_tell(erasure: Erasure) -> list[RecipientNotice]:
    """Ask every recipient of the subject's data to delete it too (seed 000 §4.3). The notices
    are created once per recipient and erasure (a resumed run finds them) and carry the
    recipient's own reference for the person sealed apart from the subject's key, so they are
    still delivered, signed and retried, after the key is destroyed."""
    with transaction.atomic():
        notices = recipients_notify(
            subject=erasure.subject,
            kind=NoticeKind.DELETION,
            reference=notice_reference(erasure),
            actor=Actor("system"),
        )
        audit_log(
            actor=Actor("system"),
            action="erasure.recipients_told",
            obj=erasure,
            data={"recipients": sorted(n.recipient_id for n in notices)},
        )
    return notices


@transaction.atomic
def _checkpoint(erasure: Erasure, step: ErasureStep, cursor: Any, rows: int, finished: bool) -> None:
    now = timezone.now()
    ErasureStep.objects.filter(pk=step.pk).update(
        cursor=cursor, rows_done=F("rows_done") + rows, done_at=now if finished else None
    )
    Erasure.objects.filter(pk=erasure.pk).update(rows_done=F("rows_done") + rows, lease_until=now + _lease())


def erasure_seal(*, erasure: Erasure) -> Erasure:
    """Destroy the subject's key, erase Quanyi's own identifying values, write the
    tombstone and the report. Safe to call again (each part is idempotent)."""
    subject = erasure.subject
    # Read what the tombstone needs before the values go.
    hashes = sorted({h for h in (subject.email_index, subject.phone_index, subject.id_number_index) if h})
    crypto.subject_key_destroy(subject.key_id)
    crypto.clear_key_cache()
    now = timezone.now()
    with transaction.atomic():
        subject_erase(subject=subject, actor=Actor("system"))
        Tombstone.objects.get_or_create(
            erasure=erasure,
            defaults={
                "subject_id_ref": subject.pk,
                "key_id": subject.key_id,
                "identifier_hashes": hashes,
                "roots": erasure.roots,
                "erased_at": now,
            },
        )
        # Progress counts batches as they are recorded; a batch repeated after a crash is not
        # counted again, so the finished erasure states what it covered: the whole plan.
        done = Erasure.objects.filter(pk=erasure.pk, status=Erasure.Status.RUNNING).update(
            status=Erasure.Status.DONE,
            rows_done=F("rows_total"),
            finished_at=now,
            lease_until=None,
            backups_until=backups_roll_over_by(now),
            report=report_build(erasure),
        )
        if done:
            audit_log(
                actor=Actor("system"), action="erasure.completed", obj=erasure, data={"subject": subject.pk}
            )
    erasure.refresh_from_db()
    return erasure


def backups_roll_over_by(when: datetime) -> date:
    """The date by which every backup taken before `when` has been rotated out: the last
    expiry among the catalogued backups taken before it (today when none holds the data any
    more), or, while no backup has been catalogued, QUANYI_BACKUP_RETENTION_DAYS after `when`."""
    if backups_in_use():
        return backups_clear_by(when) or timezone.localdate(when)
    return timezone.localdate(when + timedelta(days=settings.QUANYI_BACKUP_RETENTION_DAYS))


def report_build(erasure: Erasure) -> dict[str, Any]:
    """What the requester is told: per table what was erased and what was kept and why.
    No personal data: labels, counts, grounds."""
    done = {(s.source, s.table): s.rows_done for s in erasure.steps.all()}
    items = []
    for item in erasure.plan.get("items", []):
        items.append({**item, "rows_done": done.get((item["source"], item["table"]), 0)})
    return {"items": items, "quanyi": erasure.plan.get("quanyi", []), "holds": erasure.plan.get("holds", [])}


def erasures_resume(*, limit: int = 100) -> int:
    """Re-queue erasures that were confirmed but are not running (lost message, crashed
    worker whose lease ran out). The database is the source of truth."""
    now = timezone.now()
    stale = (
        Erasure.objects.filter(status__in=[Erasure.Status.CONFIRMED, Erasure.Status.RUNNING])
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(confirmed_at__lt=now - timedelta(seconds=30)) | Q(status=Erasure.Status.RUNNING))
        .values_list("pk", "runner")[:limit]
    )
    count = 0
    for pk, runner in stale:
        with transaction.atomic():
            outbox_enqueue(runner, erasure_id=pk)
        count += 1
    return count
