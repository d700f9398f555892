"""Restoring a backup set, then erasing again everyone erased since it was taken.

How it stays safe:
- Nothing is touched before every file of the set has been decrypted and both of its
  checksums match the catalogue.
- The maintenance flag (core.maintenance) is set before the first database is replaced and
  removed only once every tombstone has been replayed: until then the web answers 503,
  scheduled jobs skip and queued tasks wait. A failure leaves the flag set and says what to do.
- The restore brings back an older tombstone table and an older backup catalogue. Both are read
  before anything is replaced, saved beside the backups (so a crash half-way loses nothing:
  running the command again merges the saved file) and written back afterwards.
- A replay is the erasure again, from the row keys the tombstone fixed: table by table in the
  data map's erase order, in primary-key batches, every operation idempotent, so a replay that
  is repeated changes nothing more. Tables a legal hold kept at the time stay as they are;
  columns the map keeps stay (stamped restricted where the map says so).
- The key store is never restored, so destroyed keys stay destroyed; they are destroyed again
  for every tombstone anyway, in case the key store was restored from its own backup.
"""

from __future__ import annotations

import copy
import logging
import os
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import serializers
from django.core.management.color import no_style
from django.db import DatabaseError, connections, models, transaction

from accounts.models import DataSubject, User
from accounts.services import subject_erase
from core import crypto, sources
from core.audit import Actor, audit_log
from core.maintenance import maintenance_active, maintenance_info, maintenance_off, maintenance_on
from retention.backup_file import BackupError
from retention.backups import (
    KEYSTORE,
    TEMP_PREFIXES,
    backup_dir,
    backup_read,
    database_name,
    engine_of,
    manifests,
    pg_env,
    pg_tool,
)
from retention.models import Backup, Erasure, ErasureStep, Tombstone

log = logging.getLogger(__name__)
PENDING = "restore-pending.json"


class RestoreFailed(BackupError):
    """The databases were (partly) replaced but the replay did not finish: the system stays
    closed. The message says what to do."""


def _quiet(message: str) -> None:
    pass


# --- What must survive the restore --------------------------------------------------------


@dataclass
class Saved:
    """The catalogue and the erasure ledger as they were before the restore."""

    backups: list[Backup] = field(default_factory=list)
    tombstones: list[Tombstone] = field(default_factory=list)
    erasures: dict[int, Erasure] = field(default_factory=dict)
    steps: list[ErasureStep] = field(default_factory=list)
    subjects: dict[int, DataSubject] = field(default_factory=dict)

    def serialize(self) -> str:
        rows: list[models.Model] = [
            *self.backups,
            *self.tombstones,
            *self.erasures.values(),
            *self.steps,
            *self.subjects.values(),
        ]
        return serializers.serialize("json", rows)

    @classmethod
    def parse(cls, text: str) -> Saved:
        saved = cls()
        for item in serializers.deserialize("json", text):
            obj = item.object
            if isinstance(obj, Backup):
                saved.backups.append(obj)
            elif isinstance(obj, Tombstone):
                saved.tombstones.append(obj)
            elif isinstance(obj, Erasure):
                saved.erasures[obj.pk] = obj
            elif isinstance(obj, ErasureStep):
                saved.steps.append(obj)
            elif isinstance(obj, DataSubject):
                saved.subjects[obj.pk] = obj
        return saved

    def merge(self, other: Saved) -> Saved:
        """Everything of both; this one's catalogue wins (it was read before any restore)."""
        tombstones = {t.pk: t for t in other.tombstones} | {t.pk: t for t in self.tombstones}
        steps = {s.pk: s for s in other.steps} | {s.pk: s for s in self.steps}
        return Saved(
            backups=self.backups or other.backups,
            tombstones=sorted(tombstones.values(), key=lambda t: (t.erased_at, t.pk)),
            erasures=other.erasures | self.erasures,
            steps=list(steps.values()),
            subjects=other.subjects | self.subjects,
        )


def _read_saved() -> Saved:
    connection = connections["default"]
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    if Tombstone._meta.db_table not in tables or Backup._meta.db_table not in tables:
        # A new, empty main database (the old one was lost): nothing to keep from it.
        log.warning("restore: the main database has no tombstone or backup table; nothing saved from it")
        return Saved()
    tombstones = list(Tombstone.objects.order_by("erased_at", "pk"))
    subjects = {}
    for subject in DataSubject.objects.filter(pk__in=Tombstone.objects.values("subject_id_ref")):
        # Only what an empty shell needs: never a value, even if one were still readable.
        subject.full_name = subject.email = subject.phone = subject.id_number = subject.birth_date = None
        subject.email_index = subject.phone_index = subject.id_number_index = ""
        subjects[subject.pk] = subject
    return Saved(
        backups=list(Backup.objects.order_by("taken_at", "database")),
        tombstones=tombstones,
        erasures={e.pk: e for e in Erasure.objects.filter(tombstone__isnull=False)},
        steps=list(ErasureStep.objects.filter(erasure__tombstone__isnull=False)),
        subjects=subjects,
    )


def pending_path() -> Path:
    return backup_dir() / PENDING


def _saved_state() -> tuple[Saved, bool]:
    """(what must survive, whether an earlier restore that did not finish left it). Backups
    whose files and manifests are in the folder but not in the catalogue (the main database
    was lost) join the catalogue."""
    pending = pending_path()
    resuming = pending.exists()
    if resuming:
        saved = Saved.parse(pending.read_text(encoding="utf-8"))
        try:
            saved = saved.merge(_read_saved())
        except DatabaseError as exc:  # half-restored: the saved file is what counts
            log.warning("restore: cannot read the current database (%s); using %s only", exc, pending)
    else:
        saved = _read_saved()
    known = {b.pk for b in saved.backups}
    saved.backups += [b for b in manifests() if b.pk not in known]
    return saved, resuming


def _save_pending(saved: Saved) -> Path:
    path = pending_path()
    tmp = path.with_name(f"{TEMP_PREFIXES[1]}{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(saved.serialize())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


# --- Choosing and checking the set ----------------------------------------------------------


@dataclass(frozen=True)
class RestorePlan:
    members: list[Backup]
    taken_at: datetime
    replay_after: list[Tombstone]  # erased after the backup was taken
    tombstones_known: int
    resuming: bool
    targets: dict[str, str]  # alias -> the database it goes into

    @property
    def set_id(self) -> uuid.UUID:
        return self.members[0].set_id


def _members(saved: Saved, backup_id: str) -> list[Backup]:
    try:
        wanted = uuid.UUID(str(backup_id).strip())
    except ValueError:
        raise BackupError(
            f"{backup_id!r} is not a backup id (a UUID; `python manage.py backup --list` shows them)."
        ) from None
    chosen = next((b for b in saved.backups if wanted in (b.pk, b.set_id)), None)
    if chosen is None:
        raise BackupError(
            f"No backup {wanted} in the catalogue (`python manage.py backup --list` shows them)."
        )
    members = sorted((b for b in saved.backups if b.set_id == chosen.set_id), key=lambda b: b.database)
    for b in members:
        if b.status == Backup.Status.DELETED:
            raise BackupError(
                f"Backup {b.pk} ({b.database}) was deleted by rotation; this set cannot be restored."
            )
        if not b.path:
            raise BackupError(f"Backup {b.pk} ({b.database}) has no file: its dump failed ({b.detail}).")
        if b.database not in settings.DATABASES or b.database == KEYSTORE:
            raise BackupError(f"Backup {b.pk} is of database {b.database!r}, which is not configured here.")
        if engine_of(b.database) != b.engine:
            raise BackupError(
                f"Backup {b.pk} is a {b.engine} dump, but {b.database!r} is configured as "
                f"{engine_of(b.database)}."
            )
    if "default" not in {b.database for b in members}:
        raise BackupError("This backup set holds no copy of the main database.")
    return members


def restore_plan(*, backup_id: str) -> RestorePlan:
    """What restoring `backup_id` (a backup or a backup set id) would do. Reads only."""
    saved, resuming = _saved_state()
    return _plan(saved, resuming, backup_id)


def _plan(saved: Saved, resuming: bool, backup_id: str) -> RestorePlan:
    members = _members(saved, backup_id)
    taken_at = members[0].taken_at
    return RestorePlan(
        members=members,
        taken_at=taken_at,
        replay_after=[t for t in saved.tombstones if t.erased_at > taken_at],
        tombstones_known=len(saved.tombstones),
        resuming=resuming,
        targets={b.database: database_name(b.database) for b in members},
    )


def _decrypt_to_temp(backup: Backup) -> Path:
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIXES[1], dir=backup_dir())  # mode 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as sink:
            problem = backup_read(backup, sink)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if problem:
        path.unlink(missing_ok=True)
        raise BackupError(f"Backup {backup.pk} ({backup.database}) cannot be restored: {problem}.")
    return path


def _another_restore_running() -> str:
    info = maintenance_info()
    pid = info.get("pid")
    if not maintenance_active() or not isinstance(pid, int) or pid == os.getpid():
        return ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return f"another restore is running (process {pid}, since {info.get('since', '?')})"


# --- Restoring ------------------------------------------------------------------------------


def _restore_database(backup: Backup, plain: Path) -> None:
    alias = backup.database
    connections[alias].close()
    if backup.engine == "sqlite":
        target = database_name(alias)
        with closing(sqlite3.connect(plain)) as src, closing(sqlite3.connect(target, timeout=30)) as dst:
            src.backup(dst)
        return
    command = [
        pg_tool("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",  # all or nothing
        "--exit-on-error",
        f"--dbname={database_name(alias)}",
        str(plain),
    ]
    result = subprocess.run(command, env=pg_env(alias), capture_output=True, text=True, check=False)  # noqa: S603 - fixed arguments, no shell
    if result.returncode != 0:
        raise BackupError(f"pg_restore into {alias!r} failed: {result.stderr.strip()[-1000:]}")


def _raw_save(obj: models.Model) -> None:
    """Write the row exactly as it was (UPDATE, or INSERT with its own primary key)."""
    obj.save_base(raw=True)


def _write_back(saved: Saved, replay: list[Tombstone]) -> None:
    """In one transaction of the main database: the catalogue as it was, and for each tombstone
    to replay, its erasure (done), its steps and the tombstone itself — with an empty subject
    row first where the restored data predates the person."""
    with transaction.atomic():
        Backup.objects.all().delete()
        for backup in saved.backups:
            _raw_save(backup)
        user_ids = {
            uid
            for e in saved.erasures.values()
            for uid in (e.created_by_id, e.confirmed_by_id)
            if uid is not None
        } | {s.user_id for s in saved.subjects.values() if s.user_id is not None}
        users = set(User.objects.filter(pk__in=user_ids).values_list("pk", flat=True))
        present = set(
            DataSubject.objects.filter(pk__in=[t.subject_id_ref for t in replay]).values_list("pk", flat=True)
        )
        for tombstone in replay:
            erasure = saved.erasures.get(tombstone.erasure_id)
            if tombstone.subject_id_ref not in present:
                shell = saved.subjects.get(tombstone.subject_id_ref)
                if shell is None or erasure is None:
                    log.error("restore: tombstone %s has no saved subject or erasure", tombstone.pk)
                    continue
                shell = copy.copy(shell)
                shell.user_id = shell.user_id if shell.user_id in users else None
                shell.erased_at = None  # the replay erases it, closing the account if any
                _raw_save(shell)
                present.add(shell.pk)
            if erasure is None:
                log.error("restore: tombstone %s has no saved erasure", tombstone.pk)
                continue
            erasure = copy.copy(erasure)
            erasure.created_by_id = erasure.created_by_id if erasure.created_by_id in users else None
            erasure.confirmed_by_id = erasure.confirmed_by_id if erasure.confirmed_by_id in users else None
            _raw_save(erasure)
            ErasureStep.objects.filter(erasure_id=erasure.pk).delete()
            for step in saved.steps:
                if step.erasure_id == erasure.pk:
                    _raw_save(step)
            _raw_save(tombstone)
        # Rows came back with their own keys: move the sequences past them (PostgreSQL).
        connection = connections["default"]
        statements = connection.ops.sequence_reset_sql(
            no_style(), [DataSubject, Erasure, ErasureStep, Tombstone]
        )
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)


def tombstone_replay(*, tombstone: Tombstone, erasure: Erasure | None, actor: Actor) -> dict[str, int]:
    """Erase the tombstone's subject again in the restored data; returns rows processed per
    source table. Idempotent."""
    held = {
        (item["source"], item["table"])
        for item in (erasure.plan.get("items", []) if erasure is not None else [])
        if item.get("held")
    }
    rows: dict[str, int] = {}
    for source in sources.source_maps():
        roots = (tombstone.roots or {}).get(source.code)
        if not roots:
            continue
        subject_rows = sources.subject_rows_from(source, roots)
        if subject_rows.empty:
            continue
        for table in source.erase_order:
            if (source.code, table.name) in held:
                continue  # kept under a legal hold when the person was erased
            done, cursor = 0, None
            while True:
                result = sources.erase_batch(
                    subject_rows, table, after=cursor, limit=settings.QUANYI_ERASURE_BATCH
                )
                if result.last_pk is None:
                    break
                cursor, done = result.last_pk, done + result.rows
            if done:
                rows[f"{source.code}.{table.name}"] = done
    crypto.subject_key_destroy(tombstone.key_id)
    with transaction.atomic():
        subject = DataSubject.objects.select_related("user").filter(pk=tombstone.subject_id_ref).first()
        if subject is not None:
            subject_erase(subject=subject, actor=actor)
        audit_log(
            actor=actor,
            action="backup.tombstone_replayed",
            obj=tombstone,
            data={"subject": tombstone.subject_id_ref, "erasure": tombstone.erasure_id, "rows": rows},
        )
    return rows


@dataclass(frozen=True)
class RestoreResult:
    plan: RestorePlan
    replayed: int
    keys_destroyed_again: int


def backup_restore(*, backup_id: str, actor: Actor, say: Callable[[str], Any] = _quiet) -> RestoreResult:
    """Restore a backup set (every database in it) and replay every tombstone written after it
    was taken. The system is closed (maintenance flag) from the first database replaced until
    the last tombstone is replayed."""
    busy = _another_restore_running()
    if busy:
        raise BackupError(f"Not now: {busy}.")
    saved, resuming = _saved_state()
    plan = _plan(saved, resuming, backup_id)
    for member in plan.members:
        if member.engine == "postgresql":
            pg_tool("pg_restore")
    plains: dict[str, Path] = {}
    try:
        for member in plan.members:
            say(f"Checking {member.database} backup {member.pk} ...")
            plains[member.database] = _decrypt_to_temp(member)
        # From here on the system stays closed until every erasure since has been applied again.
        maintenance_on(reason="restore", backup_set=str(plan.set_id), pending=str(pending_path()))
        try:
            _save_pending(saved)
            connections.close_all()
            for member in plan.members:
                say(f"Restoring {member.database} into {plan.targets[member.database]} ...")
                _restore_database(member, plains[member.database])
        except Exception as exc:
            raise _failed(plan, exc, restored=False) from exc
    finally:
        for plain in plains.values():
            plain.unlink(missing_ok=True)
    try:
        connections.close_all()
        restored = set(Tombstone.objects.values_list("pk", flat=True))
        # Sealed after the backup was taken, or (a seal that committed during the dump) simply
        # not in it: both are erased again.
        replay = [t for t in saved.tombstones if t.erased_at > plan.taken_at or t.pk not in restored]
        again = crypto.subject_keys_destroy({t.key_id for t in saved.tombstones})
        _write_back(saved, replay)
        main = next(b for b in plan.members if b.database == "default")
        audit_log(
            actor=actor,
            action="backup.restored",
            obj=main,
            data={
                "set": str(plan.set_id),
                "backups": [str(b.pk) for b in plan.members],
                "taken_at": plan.taken_at.isoformat(),
                "tombstones": len(replay),
                "keys_destroyed_again": again,
            },
        )
        for n, tombstone in enumerate(replay, 1):
            say(f"Replaying tombstone {tombstone.pk} ({n}/{len(replay)}) ...")
            erasure = saved.erasures.get(tombstone.erasure_id)
            tombstone_replay(tombstone=tombstone, erasure=erasure, actor=actor)
        audit_log(
            actor=actor,
            action="backup.replay_completed",
            obj=main,
            data={"set": str(plan.set_id), "tombstones": len(replay)},
        )
    except Exception as exc:
        raise _failed(plan, exc, restored=True) from exc
    maintenance_off()
    pending_path().unlink(missing_ok=True)
    return RestoreResult(plan=plan, replayed=len(replay), keys_destroyed_again=again)


def _failed(plan: RestorePlan, exc: Exception, *, restored: bool) -> RestoreFailed:
    what = "The databases were restored but replaying the erasures failed" if restored else "Restoring failed"
    return RestoreFailed(
        f"{what}: {type(exc).__name__}: {exc}\n"
        f"The system stays closed (maintenance flag {settings.QUANYI_MAINTENANCE_FILE}), because people "
        f"erased since the backup may be back in the data. Fix the cause, then run "
        f"`python manage.py restore {plan.set_id} --yes` again: it restores the set again and replays "
        f"every tombstone, including those saved in {pending_path()}. Do not remove the flag by hand "
        f"before that succeeds."
    )
