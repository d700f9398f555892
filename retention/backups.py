"""Backups of Quanyi's main database and the product's: taking, verifying and rotating them.

How it stays safe:
- The key store is never backed up here: keys must not travel with the data they protect. A
  destroyed subject key then makes that person's encrypted values unreadable in every backup
  at once (crypto-shredding); the key store keeps its own, much shorter, backup window (README).
- Files reach the backup folder encrypted (retention.backup_file, QUANYI_BACKUP_KEY). pg_dump
  streams straight into the encryptor; SQLite's online backup needs a file, which exists in
  clear only for the copy (mode 0600, in the backup folder, removed at once; rotation sweeps
  one that a crash left behind).
- `taken_at` is read before the first dump starts, so a restore replays every erasure sealed
  after it (retention.restore), however long the dump took.
- Rotation claims an expired backup (conditional UPDATE) before deleting its file; a file that
  cannot be deleted stays "expired" and is tried again the next night. Each deletion is audited.
- Nothing is taken or rotated while the maintenance flag is set (a restore is running).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core import serializers
from django.db import connections, transaction
from django.utils import timezone

from core.audit import SYSTEM, Actor, audit_log
from core.maintenance import maintenance_active
from retention.backup_file import (
    BackupCorrupt,
    BackupError,
    BackupKeyError,
    Decrypted,
    Digests,
    backup_keys,
    decrypt_stream,
    encrypt_stream,
)
from retention.models import Backup

log = logging.getLogger(__name__)
KEYSTORE = "keystore"
SUFFIX = ".qyb"
MANIFEST = ".json"
PARTIAL = ".partial"
TEMP_PREFIXES = (".plain-", ".restore-")
STALE_TEMP_SECONDS = 24 * 3600


def backup_dir() -> Path:
    folder = Path(settings.QUANYI_BACKUP_DIR)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def backed_up_aliases() -> list[str]:
    """Every configured database but the key store: Quanyi's own and the product's."""
    return [alias for alias in settings.DATABASES if alias != KEYSTORE]


def engine_of(alias: str) -> str:
    engine = connections[alias].settings_dict["ENGINE"]
    return "sqlite" if engine.endswith("sqlite3") else "postgresql"


def database_name(alias: str) -> str:
    return str(connections[alias].settings_dict["NAME"])


def pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not on PATH: install the PostgreSQL client tools of the server's major "
            f"version (Debian: apt-get install postgresql-client-<major>)."
        )
    return path


def pg_env(alias: str) -> dict[str, str]:
    """The connection for pg_dump / pg_restore, through libpq's variables: the password never
    appears on a command line."""
    s = connections[alias].settings_dict
    env = dict(os.environ)
    for variable, value in (
        ("PGHOST", s.get("HOST")),
        ("PGPORT", s.get("PORT")),
        ("PGUSER", s.get("USER")),
        ("PGPASSWORD", s.get("PASSWORD")),
        ("PGSSLMODE", (s.get("OPTIONS") or {}).get("sslmode")),
    ):
        if value:
            env[variable] = str(value)
    return env


def _refuse_during_maintenance(what: str) -> None:
    if maintenance_active():
        raise BackupError(f"A restore is running (maintenance flag set): no {what} now.")


# --- Taking -------------------------------------------------------------------------------


def _dump_sqlite(alias: str, out: BinaryIO, backup_id: uuid.UUID) -> Digests:
    source = Path(database_name(alias))
    if not source.is_file():
        raise BackupError(f"the SQLite database of {alias!r} ({source}) does not exist")
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIXES[0], dir=backup_dir())  # mode 0600
    os.close(fd)
    try:
        # One step (pages=-1): a consistent copy, also of a database in WAL mode being written.
        with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(name)) as dst:
            src.backup(dst)
        with open(name, "rb") as plain:
            return encrypt_stream(plain.read, out, backup_id=backup_id)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {alias!r} failed: {exc}") from exc
    finally:
        Path(name).unlink(missing_ok=True)


def _dump_postgresql(alias: str, out: BinaryIO, backup_id: uuid.UUID) -> Digests:
    command = [pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--dbname={database_name(alias)}"]
    with tempfile.TemporaryFile() as errors:
        # pg_dump takes one snapshot of the database: the dump is consistent as of its start.
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=pg_env(alias))  # noqa: S603 - fixed arguments, no shell
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
        try:
            digests = encrypt_stream(proc.stdout.read, out, backup_id=backup_id)
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()[-1000:]
            raise BackupError(f"pg_dump of {alias!r} failed (exit {code}): {message}")
    return digests


def _dump(alias: str, out: BinaryIO, backup_id: uuid.UUID) -> Digests:
    if engine_of(alias) == "sqlite":
        return _dump_sqlite(alias, out, backup_id)
    return _dump_postgresql(alias, out, backup_id)


def backup_take(*, actor: Actor = SYSTEM, verify: bool = True) -> list[Backup]:
    """Back up the main and product databases as one set, encrypted, and catalogue each file
    (verified by reading it back unless `verify` is off). A database whose dump fails is
    catalogued as failed, with the reason; the others are still taken."""
    _refuse_during_maintenance("backup")
    aliases = backed_up_aliases()
    for alias in aliases:
        if engine_of(alias) == "postgresql":
            pg_tool("pg_dump")  # say so before anything is written
    key_id = backup_keys()[0].kid.hex()
    folder = backup_dir()
    set_id = uuid.uuid4()
    taken_at = timezone.now()  # before the first dump: erasures after this are replayed
    expires_at = taken_at + timedelta(days=settings.QUANYI_BACKUP_RETENTION_DAYS)
    backups: list[Backup] = []
    for alias in aliases:
        backup_id = uuid.uuid4()
        final = folder / f"{taken_at:%Y%m%dT%H%M%SZ}-{alias}-{backup_id.hex[:12]}{SUFFIX}"
        partial = final.with_name(final.name + PARTIAL)
        common = {
            "id": backup_id,
            "set_id": set_id,
            "database": alias,
            "engine": engine_of(alias),
            "taken_at": taken_at,
            "expires_at": expires_at,
            "key_id": key_id,
        }
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                digests = _dump(alias, out, backup_id)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, final)
        except (BackupError, OSError) as exc:
            partial.unlink(missing_ok=True)
            log.error("backup of %s failed: %s", alias, exc)
            with transaction.atomic():
                failed = Backup.objects.create(**common, status=Backup.Status.FAILED, detail=str(exc))
                audit_log(
                    actor=actor,
                    action="backup.failed",
                    obj=failed,
                    data={"database": alias, "set": str(set_id)},
                )
            backups.append(failed)
            continue
        with transaction.atomic():
            backup = Backup.objects.create(
                **common,
                path=str(final),
                size=digests.size,
                sha256=digests.sha256,
                plaintext_sha256=digests.plaintext_sha256,
            )
            audit_log(
                actor=actor,
                action="backup.taken",
                obj=backup,
                data={"database": alias, "set": str(set_id), "size": digests.size},
            )
        _manifest_write(backup)
        backups.append(backup)
    if verify:
        backups = [
            backup_verify(backup=b, actor=actor) if b.status == Backup.Status.TAKEN else b for b in backups
        ]
    return backups


def manifest_path(backup_path: str | Path) -> Path:
    path = Path(backup_path)
    return path.with_name(path.name + MANIFEST)


def _manifest_write(backup: Backup) -> None:
    """The catalogue row beside its file: if the main database itself is lost, a restore still
    finds the backup, its set, its time and its checksums (retention.restore reads these)."""
    manifest_path(backup.path).write_text(serializers.serialize("json", [backup]), encoding="utf-8")


def manifests() -> list[Backup]:
    """The backups the folder holds files and manifests for (unsaved catalogue rows)."""
    found: list[Backup] = []
    for path in sorted(backup_dir().glob(f"*{SUFFIX}{MANIFEST}")):
        try:
            found += [
                item.object
                for item in serializers.deserialize("json", path.read_text(encoding="utf-8"))
                if isinstance(item.object, Backup)
            ]
        except (OSError, serializers.base.DeserializationError) as exc:
            log.warning("unreadable backup manifest %s: %s", path, exc)
    return [b for b in found if b.path and Path(b.path).exists()]


# --- Verifying ----------------------------------------------------------------------------


def backup_read(backup: Backup, sink: BinaryIO | None = None) -> str:
    """Decrypt the whole file (into `sink` if given) and compare both checksums with the
    catalogue. Returns what is wrong, or "" when nothing is. A backup key that cannot open the
    file raises BackupKeyError: that is the configuration's fault, not the file's."""
    result = Decrypted()
    try:
        with open(backup.path, "rb") as f:
            for chunk in decrypt_stream(f.read, backup_id=backup.pk, result=result):
                if sink is not None:
                    sink.write(chunk)
    except FileNotFoundError:
        return f"the file {backup.path} is missing"
    except OSError as exc:
        return f"the file {backup.path} cannot be read: {exc.strerror or exc}"
    except BackupCorrupt as exc:
        return str(exc)
    except BackupKeyError as exc:
        raise BackupKeyError(f"Backup {backup.pk} ({backup.database}) cannot be decrypted: {exc}.") from None
    if result.sha256 != backup.sha256:
        return "the file's SHA-256 does not match the catalogue"
    if result.plaintext_sha256 != backup.plaintext_sha256:
        return "the decrypted dump's SHA-256 does not match the catalogue"
    return ""


def backup_verify(*, backup: Backup, actor: Actor = SYSTEM) -> Backup:
    """Read the backup back, decrypt it and check both checksums; record and audit the result
    (verified, or failed with the reason in `detail`)."""
    if backup.status == Backup.Status.DELETED:
        raise BackupError(f"Backup {backup.pk} was deleted by rotation; there is nothing to verify.")
    if not backup.path:
        raise BackupError(f"Backup {backup.pk} has no file: its dump failed ({backup.detail}).")
    problem = backup_read(backup)
    checkable = [Backup.Status.TAKEN, Backup.Status.VERIFIED, Backup.Status.FAILED]
    with transaction.atomic():
        rows = Backup.objects.filter(pk=backup.pk)
        if problem:
            rows.update(detail=problem)
            rows.filter(status__in=checkable).update(status=Backup.Status.FAILED)
            audit_log(actor=actor, action="backup.verify_failed", obj=backup, data={"problem": problem[:300]})
        else:
            rows.update(detail="", verified_at=timezone.now())
            rows.filter(status__in=checkable).update(status=Backup.Status.VERIFIED)
            audit_log(actor=actor, action="backup.verified", obj=backup)
    backup.refresh_from_db()
    return backup


def backup_find(backup_id: str) -> Backup:
    try:
        pk = uuid.UUID(str(backup_id).strip())
    except ValueError:
        raise BackupError(
            f"{backup_id!r} is not a backup id (a UUID; `python manage.py backup --list` shows them)."
        ) from None
    backup = Backup.objects.filter(pk=pk).first()
    if backup is None:
        raise BackupError(f"No backup {pk} in the catalogue (`python manage.py backup --list` shows them).")
    return backup


# --- Rotating -----------------------------------------------------------------------------


def backups_rotate(*, actor: Actor = SYSTEM) -> list[Backup]:
    """Delete the files of expired backups and mark them deleted (audited). Returns them."""
    _refuse_during_maintenance("rotation")
    now = timezone.now()
    deleted: list[Backup] = []
    due = Backup.objects.filter(expires_at__lte=now).exclude(status=Backup.Status.DELETED)
    for backup in due.order_by("taken_at", "database"):
        # Claimed first: a file is only ever deleted for a row marked expired.
        Backup.objects.filter(pk=backup.pk).exclude(status=Backup.Status.DELETED).update(
            status=Backup.Status.EXPIRED
        )
        if backup.path:
            try:
                Path(backup.path).unlink(missing_ok=True)
                manifest_path(backup.path).unlink(missing_ok=True)
            except OSError as exc:
                log.error("backup %s: cannot delete %s: %s", backup.pk, backup.path, exc)
                Backup.objects.filter(pk=backup.pk).update(detail=f"could not delete the file: {exc}")
                continue
        with transaction.atomic():
            if (
                Backup.objects.filter(pk=backup.pk, status=Backup.Status.EXPIRED).update(
                    status=Backup.Status.DELETED, deleted_at=now
                )
                == 1
            ):
                audit_log(
                    actor=actor,
                    action="backup.deleted",
                    obj=backup,
                    data={"database": backup.database, "taken_at": backup.taken_at.isoformat()},
                )
        backup.refresh_from_db()
        deleted.append(backup)
    _sweep_temporary_files()
    return deleted


def _sweep_temporary_files() -> None:
    """Clear-text copies and half-written files a crash left behind (older than a day)."""
    folder = backup_dir()
    cutoff = time.time() - STALE_TEMP_SECONDS
    for path in folder.iterdir():
        temporary = path.name.startswith(TEMP_PREFIXES) or path.name.endswith(PARTIAL)
        try:
            if temporary and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                log.warning("removed a left-over temporary backup file %s", path)
        except OSError as exc:
            log.error("cannot remove %s: %s", path, exc)


def backup_nightly(*, actor: Actor = SYSTEM) -> str:
    """The beat job: take a backup set, then rotate (rotation runs even if the backup fails:
    expired backups must go regardless)."""
    try:
        taken = backup_take(actor=actor)
    finally:
        deleted = backups_rotate(actor=actor)
    failed = [b for b in taken if b.status == Backup.Status.FAILED]
    if failed:
        raise BackupError("; ".join(f"{b.database}: {b.detail}" for b in failed))
    return f"taken {len(taken)}, deleted {len(deleted)}"
