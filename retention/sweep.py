"""The retention sweep: personal data past its rule's period is deleted, anonymised or
restricted, table by table, in the product's databases and in Quanyi's own records.

How it stays safe:
- Only what a rule names, only as the data map says: a rule names a category; the sweep
  touches the columns of that category in the tables the map lists, with the map's own
  strategy for each (core.sources.aged_erase), never a column or a value from input.
- Legal holds win: a hold on a category skips every table holding it (and, for tables whose
  rows are deleted, every table holding it next to the rule's category); a hold on a person
  leaves out that person's rows, found once per sweep from their identifiers.
- One unit of work is a (rule, source, table). A sweep claims a unit with a lease (a
  conditional UPDATE on its SweepCursor), so two sweeps, or sweeps on several machines,
  share the units and never work one at once. The claim is renewed with every batch and
  checked when the batch is recorded: a sweep that lost its lease stops that unit.
- Each batch is a range of (timestamp, pk) in one transaction and only touches rows that
  still need it, so a batch repeated after a crash changes and counts nothing twice; the
  position is saved after every batch, and the next sweep resumes a unit from there.
- A dry run counts the same rows with the same conditions and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Field, Q
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.models import DataSubject
from accounts.services import subject_identifiers
from core import sources
from core.audit import SYSTEM, audit_log
from retention.models import Action, LegalHold, RetentionRule, Scope, SweepCursor, SweepRun
from retention.records import RecordKind, record_kind

log = logging.getLogger(__name__)
QUANYI = "quanyi"  # the `source` of units over Quanyi's own records

# (level, line): level 1 for a unit's outcome, 2 for a batch within it.
Progress = Callable[[int, str], None]


@dataclass
class Unit:
    rule: RetentionRule
    source: str
    table: str
    spec: sources.AgedErase | None = None
    kind: RecordKind | None = None
    skip: str = ""  # a reason not to run it: held, nothing_to_do
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.rule.category}:{self.source}.{self.table}"

    @property
    def categories(self) -> set[str]:
        """What the unit destroys: the rule's category, and every category of a table whose
        rows it deletes."""
        if self.spec is not None and self.spec.delete:
            return {self.rule.category, *self.spec.table.categories}
        return {self.rule.category}


@dataclass
class Holds:
    """The active legal holds, resolved once per sweep."""

    categories: set[str] = field(default_factory=set)  # held for everyone
    subjects_all: set[int] = field(default_factory=set)
    subjects_by_category: dict[str, set[int]] = field(default_factory=dict)
    # source -> category ("" for everything) -> table -> primary keys of held subjects' roots
    roots: dict[str, dict[str, dict[str, set[Any]]]] = field(default_factory=dict)

    def subjects(self, categories: set[str]) -> set[int]:
        out = set(self.subjects_all)
        for c in categories:
            out |= self.subjects_by_category.get(c, set())
        return out

    def rows(self, source: sources.SourceMap, categories: set[str]) -> sources.SubjectRows | None:
        by_category = self.roots.get(source.code, {})
        merged: dict[str, set[Any]] = {}
        for c in {"", *categories}:
            for table, ids in by_category.get(c, {}).items():
                merged.setdefault(table, set()).update(ids)
        if not any(merged.values()):
            return None
        return sources.subject_rows_from(source, {t: sorted(ids) for t, ids in merged.items()})


def holds_load() -> Holds:
    holds = Holds()
    active = LegalHold.objects.filter(released_at__isnull=True).select_related("subject", "subject__user")
    maps = sources.source_maps()
    for hold in active:
        if hold.subject is None:
            holds.categories.add(hold.category)
            continue
        if hold.category:
            holds.subjects_by_category.setdefault(hold.category, set()).add(hold.subject.pk)
        else:
            holds.subjects_all.add(hold.subject.pk)
        identifiers = sources.identifiers_clean(subject_identifiers(subject=hold.subject))
        if not identifiers:
            continue
        for source in maps:
            rows = sources.subject_rows(source, identifiers)
            slot = holds.roots.setdefault(source.code, {}).setdefault(hold.category, {})
            for table, ids in rows.roots.items():
                slot.setdefault(table, set()).update(ids)
    return holds


def units_build(rules: list[RetentionRule], holds: Holds) -> list[Unit]:
    units: list[Unit] = []
    for rule in rules:
        if rule.scope != Scope.PRODUCT:
            kind = record_kind(rule.scope)
            unit = Unit(rule, QUANYI, rule.scope, kind=kind)
            if kind is None:
                unit.skip = "nothing_to_do"
            else:
                unit.note = kind.note
            if rule.category in holds.categories:
                unit.skip = "held"
            units.append(unit)
            continue
        for source in sources.source_maps():
            for table in source.erase_order:
                if not any(c.category == rule.category for c in table.columns.values()):
                    continue
                spec = sources.aged_erase(
                    source, table, category=rule.category, restrict_only=rule.action == Action.RESTRICT
                )
                unit = Unit(rule, source.code, table.name, spec=spec)
                if table.timestamp is None:
                    unit.skip, unit.note = (
                        "nothing_to_do",
                        gettext_noop("the data map gives this table no timestamp"),
                    )
                elif spec.empty:
                    unit.skip = "nothing_to_do"
                    unit.note = (
                        gettext_noop("the table has no restrict column")
                        if rule.action == Action.RESTRICT
                        else gettext_noop("the data map keeps these columns")
                    )
                elif unit.categories & holds.categories:
                    unit.skip = "held"
                units.append(unit)
    return units


# --- Positions (JSON) -----------------------------------------------------------------------


def _dump(key: Any) -> Any:
    if key is None:
        return None
    ts, pk = key
    if isinstance(ts, datetime):
        return {"dt": ts.isoformat(), "pk": pk}
    if isinstance(ts, date):
        return {"d": ts.isoformat(), "pk": pk}
    return {"v": ts, "pk": pk}


def _load(raw: Any) -> Any:
    if not raw:
        return None
    if "dt" in raw:
        return (datetime.fromisoformat(raw["dt"]), raw["pk"])
    if "d" in raw:
        return (date.fromisoformat(raw["d"]), raw["pk"])
    return (raw["v"], raw["pk"])


# --- Claiming a unit ------------------------------------------------------------------------


def _lease() -> timedelta:
    return timedelta(seconds=settings.QUANYI_RETENTION_LEASE_SECONDS)


def _claim(unit: Unit, run: SweepRun) -> SweepCursor | None:
    cursor, _created = SweepCursor.objects.get_or_create(rule=unit.rule, source=unit.source, table=unit.table)
    now = timezone.now()
    claimed = (
        SweepCursor.objects.filter(pk=cursor.pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(run=run, lease_until=now + _lease())
    )
    if not claimed:
        return None
    cursor.refresh_from_db()
    if cursor.position is None:  # a new pass (the last one finished, or none ever started)
        SweepCursor.objects.filter(pk=cursor.pk).update(pass_started_at=now, pass_rows=0)
        cursor.pass_started_at, cursor.pass_rows = now, 0
    return cursor


def _record(cursor: SweepCursor, run: SweepRun, unit: Unit, last: Any, rows: int, total: int) -> bool:
    """Save the position after a batch (or the end of the pass) if the unit is still ours.
    Runs inside the caller's transaction when there is one (Quanyi's own records: the batch
    and its position commit together)."""
    now = timezone.now()
    if last is not None:
        return _advance(cursor, run, last, rows, now + _lease())
    with transaction.atomic():
        mine = SweepCursor.objects.filter(pk=cursor.pk, run=run)
        done = mine.update(position=None, pass_rows=0, finished_at=now, lease_until=None, run=None)
        if done and total:
            audit_log(
                actor=SYSTEM,
                action="retention.swept",
                obj=unit.rule,
                data={
                    "unit": unit.label,
                    "action": unit.rule.action,
                    "rows": total,
                    "cutoff_days": unit.rule.period_days,
                },
            )
        return bool(done)


def _advance(cursor: SweepCursor, run: SweepRun, last: Any, rows: int, lease_until: datetime) -> bool:
    """The position after a batch and the renewed lease, if the unit is still ours. Written by
    hand because it runs after every batch: building the ORM's UPDATE cost as long as
    running it (see benchmarks/bench_retention.py). Values go through the fields' own
    conversions, so both backends store what the ORM would."""
    connection = connections[SweepCursor.objects.db]
    meta, q = SweepCursor._meta, connection.ops.quote_name
    sql = (
        f"UPDATE {q(meta.db_table)} SET {q('position')} = %s,"  # noqa: S608 - model names
        f" {q('pass_rows')} = {q('pass_rows')} + %s, {q('lease_until')} = %s"
        f" WHERE {q('id')} = %s AND {q('run_id')} = %s"
    )
    params = [
        cast(Field, meta.get_field("position")).get_db_prep_save(_dump(last), connection),
        rows,
        cast(Field, meta.get_field("lease_until")).get_db_prep_save(lease_until, connection),
        cursor.pk,
        run.pk,
    ]
    with connection.cursor() as c:
        c.execute(sql, params)
        return c.rowcount == 1


def _release(cursor: SweepCursor, run: SweepRun) -> None:
    """Give the unit up (keeping its position) so that the next sweep resumes it at once."""
    SweepCursor.objects.filter(pk=cursor.pk, run=run).update(lease_until=None, run=None)


# --- Running a unit -------------------------------------------------------------------------


def _own_queryset(unit: Unit, cutoff: datetime, holds: Holds) -> Any:
    kind = unit.kind
    assert kind is not None  # noqa: S101 - own-record units always have a kind
    qs = kind.pending().filter(**{f"{kind.timestamp}__lt": cutoff})
    held = holds.subjects(unit.categories)
    if held and kind.subject:
        qs = qs.exclude(**{f"{kind.subject}__in": sorted(held)})
    return qs


def _cutoff(unit: Unit, now: datetime) -> datetime:
    return now - timedelta(days=unit.rule.period_days)


def _exclude(unit: Unit, holds: Holds) -> sources.SubjectRows | None:
    return holds.rows(sources.source_map(unit.source), unit.categories)


def unit_count(unit: Unit, *, now: datetime, holds: Holds, earlier: Sequence[Unit] = ()) -> int:
    """What a run would change in this unit, after the `earlier` units of the same run."""
    cutoff = _cutoff(unit, now)
    if unit.spec is not None:
        return sources.aged_count(
            unit.spec,
            before=cutoff,
            exclude=_exclude(unit, holds),
            earlier=[(u.spec, _cutoff(u, now), _exclude(u, holds)) for u in earlier if u.spec is not None],
        )
    return int(_own_queryset(unit, cutoff, holds).count())


def _idle(unit: Unit, *, cutoff: datetime, holds: Holds) -> bool:
    """Nothing due and no pass to finish: then the unit needs no claim (this is a read; a
    sweep that finds work a moment later claims it as usual)."""
    resuming = SweepCursor.objects.filter(
        rule=unit.rule, source=unit.source, table=unit.table, position__isnull=False
    ).exists()
    if resuming:
        return False
    if unit.spec is not None:
        return not sources.aged_any(unit.spec, before=cutoff, exclude=_exclude(unit, holds))
    return not _own_queryset(unit, cutoff, holds).exists()


def unit_run(
    unit: Unit,
    run: SweepRun,
    *,
    now: datetime,
    batch: int,
    holds: Holds,
    tally: dict[str, Any],
    progress: Progress | None = None,
) -> str:
    """Work the unit to its end; `tally["rows"]` counts the rows this run changed, batch by
    batch (so a run that fails still reports what it did). Returns the status: done, busy
    (another sweep has it) or lost (its lease ran out and another sweep took it over)."""
    cutoff = _cutoff(unit, now)
    if _idle(unit, cutoff=cutoff, holds=holds):
        return "done"
    cursor = _claim(unit, run)
    if cursor is None:
        return "busy"
    position = _load(cursor.position)
    base = cursor.pass_rows
    unrecorded: sources.AgedBatch | None = None
    try:
        if unit.spec is not None:
            exclude = _exclude(unit, holds)
            while True:
                result = sources.aged_batch(
                    unit.spec, before=cutoff, after=position, limit=batch, exclude=exclude
                )
                # Committed in the product's database, not yet recorded in Quanyi's: two databases,
                # so the batch and its position cannot commit together.
                unrecorded = result
                if not _record(
                    cursor, run, unit, result.last, result.rows, base + tally["rows"] + result.rows
                ):
                    return "lost"
                unrecorded = None
                tally["rows"] += result.rows
                if result.last is None:
                    return "done"
                if progress:
                    progress(2, f"  {unit.label}: {tally['rows']} rows so far")
                position = result.last
        kind = unit.kind
        assert kind is not None  # noqa: S101 - a unit is over a table or over a record kind
        ts = kind.timestamp
        while True:
            with transaction.atomic():  # the batch and its position commit together
                qs = _own_queryset(unit, cutoff, holds)
                if position is not None:
                    qs = qs.filter(
                        Q(**{f"{ts}__gt": position[0]}) | Q(**{ts: position[0], "pk__gt": position[1]})
                    )
                keys = list(qs.order_by(ts, "pk").values_list(ts, "pk")[:batch])
                changed = kind.apply([k[1] for k in keys], unit.rule.action) if keys else 0
                last = tuple(keys[-1]) if len(keys) == batch else None
                if not _record(cursor, run, unit, last, changed, base + tally["rows"] + changed):
                    transaction.set_rollback(True)  # not ours any more: undo this batch
                    return "lost"
            tally["rows"] += changed
            if last is None:
                return "done"
            position = last
    except BaseException:
        # A connection to Quanyi's database that broke is replaced, as Django does after a
        # request, so that the batch can still be recorded and the unit given up.
        own = connections[SweepCursor.objects.db]
        if own.connection is not None and not own.in_atomic_block and not own.is_usable():
            own.close()
        if unrecorded is not None:
            # Quanyi's connection was lost after the product committed the batch: record it now
            # (Django opens a new connection), or the next sweep would find those rows done and
            # the pass would never count them. If the database is still away this fails too, and
            # the unit waits for its lease to run out.
            tally["rows"] += unrecorded.rows
            _record(cursor, run, unit, unrecorded.last, unrecorded.rows, base + tally["rows"])
        _release(cursor, run)
        raise


def _stamped_already(unit: Unit, done: Sequence[Unit], *, now: datetime, holds: Holds) -> bool:
    """A unit that only stamps rows restricted has nothing left to do when a unit finished in
    this run stamped every row of the same table at least as old (orders: the rule on payment
    status after the one on orders and delivery) and no hold left rows out of either. Saves
    reading those rows once more; a row written since is stamped by the next sweep."""
    spec = unit.spec
    if spec is None or not spec.restrict or spec.changes_values or _exclude(unit, holds) is not None:
        return False
    return any(
        other.spec is not None
        and other.spec.restrict
        and (other.source, other.table) == (unit.source, unit.table)
        and _cutoff(other, now) >= _cutoff(unit, now)
        and _exclude(other, holds) is None
        for other in done
    )


# --- The sweep ------------------------------------------------------------------------------


def sweep(
    *,
    dry_run: bool = False,
    batch: int | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    children: Callable[[SweepRun, datetime], dict[str, int]] | None = None,
) -> SweepRun:
    now = now or timezone.now()
    size = int(batch or settings.QUANYI_RETENTION_BATCH)
    if size < 1:
        raise ValueError("batch must be at least 1")
    run = SweepRun.objects.create(started_at=timezone.now(), dry_run=dry_run)
    counts: dict[str, Any] = {"units": {}}
    rules = list(RetentionRule.objects.filter(active=True).order_by("scope", "category"))
    try:
        holds = holds_load()
        units = units_build(rules, holds)
        worked: list[Unit] = []
        for unit in units:
            entry: dict[str, Any] = {
                "rule": unit.rule.pk,
                "category": unit.rule.category,
                "action": unit.rule.action,
                "days": unit.rule.period_days,
                "rows": 0,
                "status": unit.skip,
            }
            if unit.note:
                entry["note"] = unit.note
            counts["units"][unit.label] = entry
            if unit.skip:
                if progress:
                    progress(1, f"{unit.label}: {unit.rule.action} skipped ({unit.skip})")
                continue
            if dry_run:
                entry["rows"] = unit_count(unit, now=now, holds=holds, earlier=worked)
                entry["status"] = "would"
                worked.append(unit)
                if progress:
                    progress(1, f"{unit.label}: would {unit.rule.action} {entry['rows']} rows")
                continue
            if _stamped_already(unit, worked, now=now, holds=holds):
                entry["status"] = "done"
                entry["note"] = gettext_noop(
                    "restricted already by an earlier rule on this table in this sweep"
                )
                if progress:
                    progress(1, f"{unit.label}: {unit.rule.action} 0 rows (restricted already)")
                continue
            entry["status"] = "running"
            try:
                entry["status"] = unit_run(
                    unit, run, now=now, batch=size, holds=holds, tally=entry, progress=progress
                )
            except BaseException:
                entry["status"] = "failed"
                raise
            finally:
                SweepRun.objects.filter(pk=run.pk).update(counts=counts)
            if entry["status"] == "done":
                worked.append(unit)
            if progress:
                progress(1, f"{unit.label}: {unit.rule.action} {entry['rows']} rows ({entry['status']})")
        if children is not None:
            counts["children"] = children(run, now)
    except BaseException as exc:
        SweepRun.objects.filter(pk=run.pk).update(
            status=SweepRun.Status.FAILED, finished_at=timezone.now(), counts=counts, error=type(exc).__name__
        )
        raise
    with transaction.atomic():
        SweepRun.objects.filter(pk=run.pk).update(
            status=SweepRun.Status.DONE, finished_at=timezone.now(), counts=counts
        )
        if not dry_run:
            audit_log(
                actor=SYSTEM,
                action="retention.sweep_finished",
                obj=run,
                data={
                    "rows": sum(int(u["rows"]) for u in counts["units"].values()),
                    "units": len(counts["units"]),
                    "children_found": int(counts.get("children", {}).get("found", 0)),
                },
            )
    run.refresh_from_db()
    return run


def children_due(*, now: datetime) -> list[DataSubject]:
    """Subjects under 14 (their encrypted birth date) — the caller checks guardian consent."""
    from consent.services import is_child

    candidates = DataSubject.objects.filter(erased_at__isnull=True, birth_date__isnull=False).only(
        "pk", "key_id", "birth_date", "erased_at"
    )
    return [s for s in candidates.iterator(chunk_size=500) if is_child(s, now)]
