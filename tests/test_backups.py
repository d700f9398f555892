"""Backups that know about erasure: encrypted, verified, rotated, and restored with every
erasure since replayed, behind a maintenance flag."""

from __future__ import annotations

import io
import os
import re
import shutil
import sqlite3
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from accounts.models import DataSubject, User
from core import crypto, sources
from core.audit import SYSTEM, audit_verify
from core.jobs import SKIPPED
from core.maintenance import maintenance_active, maintenance_off, maintenance_on
from core.models import AuditEntry
from dsar import erasure, sample_product
from retention import restore, tasks
from retention.backup_file import BackupCorrupt, decrypt_stream, encrypt_stream
from retention.backups import backup_read, backup_take, backups_rotate, manifest_path
from retention.erasure import backups_roll_over_by
from retention.models import Backup, Erasure, Tombstone
from retention.selectors import backups_clear_by, backups_holding
from tests import factories
from tests.conftest import ALL, manage, subprocess_env
from tests.test_erasure import deletion_request, everything, patient_id_of, person, subject_with_data

pytestmark = pytest.mark.django_db(databases=ALL)
PHONE_AAD = "accounts.datasubject.phone"


@pytest.fixture
def backup_env(tmp_path: Path, settings: Any) -> dict[str, str]:
    """A backup folder and a maintenance flag of the test's own, here and in subprocesses."""
    folder, flag = tmp_path / "backups", tmp_path / "maintenance"
    settings.QUANYI_BACKUP_DIR = folder
    settings.QUANYI_MAINTENANCE_FILE = flag
    return subprocess_env(QUANYI_BACKUP_DIR=str(folder), QUANYI_MAINTENANCE_FILE=str(flag))


def erase(subject: DataSubject) -> Erasure:
    request = deletion_request(subject)
    plan = erasure.request_erasure_plan(request=request, actor=SYSTEM)
    erasure.request_erasure_confirm(request=request, actor=SYSTEM)
    assert erasure.run_erasure(erasure_id=plan.pk) == "done"
    plan.refresh_from_db()
    return plan


def comparable(state: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows as a replay must leave them: the restriction stamp is the replay's own time."""
    return {
        table: [{**r, "restricted_at": r.get("restricted_at") is not None} for r in rows]
        for table, rows in state.items()
    }


def phone_ciphertext_in(backup: Backup, subject_pk: int, tmp_path: Path) -> str:
    """The subject's phone as the backup file holds it: decrypted with the backup key and read
    with the database's own tools (sqlite3, or pg_restore's COPY text)."""
    plain = tmp_path / f"plain-{uuid.uuid4().hex}"
    with plain.open("wb") as sink:
        assert backup_read(backup, sink) == ""
    if backup.engine == "sqlite":
        db = sqlite3.connect(plain)
        try:
            row = db.execute("SELECT phone FROM accounts_datasubject WHERE id = ?", [subject_pk]).fetchone()
        finally:
            db.close()
        return str(row[0])
    copy = subprocess.run(
        ["pg_restore", "--data-only", "--table=accounts_datasubject", "-f", "-", str(plain)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    header = re.search(r"^COPY \S+ \(([^)]*)\) FROM stdin;$", copy, re.M)
    assert header
    columns = [c.strip().strip('"') for c in header.group(1).split(",")]
    for line in copy.splitlines():
        values = line.split("\t")
        if values[0] == str(subject_pk):
            return values[columns.index("phone")]
    raise AssertionError("subject not in the backup")


# --- The file format ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 3 * 64 * 1024 + 17])
def test_the_file_format_round_trips_chunk_by_chunk(size: int) -> None:
    data = os.urandom(size)
    backup_id = uuid.uuid4()
    out = io.BytesIO()
    digests = encrypt_stream(io.BytesIO(data).read, out, backup_id=backup_id)

    stored = out.getvalue()
    # A 1-byte plaintext may occur by chance in any ciphertext; longer ones must not.
    assert data not in stored or size < 16
    assert digests.size == len(stored)
    assert b"".join(decrypt_stream(io.BytesIO(stored).read, backup_id=backup_id)) == data


@pytest.mark.parametrize(
    "damage",
    ["flip a byte", "cut at a chunk boundary", "append a chunk", "another backup's id"],
)
def test_the_file_format_refuses_a_changed_file(damage: str) -> None:
    data = os.urandom(3 * 64 * 1024)
    backup_id = uuid.uuid4()
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data).read, out, backup_id=backup_id)
    stored = bytearray(out.getvalue())
    chunk = 64 * 1024 + 16
    if damage == "flip a byte":
        stored[len(stored) // 2] ^= 1
    elif damage == "cut at a chunk boundary":
        stored = stored[: 20 + 2 * chunk]
    elif damage == "append a chunk":
        stored += stored[20 : 20 + chunk]
    else:
        backup_id = uuid.uuid4()

    with pytest.raises(BackupCorrupt, match="does not authenticate"):
        b"".join(decrypt_stream(io.BytesIO(bytes(stored)).read, backup_id=backup_id))


# --- Backup, erase, restore ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=ALL)  # the commands run in other processes
def test_a_restore_erases_again_everyone_erased_after_the_backup(
    product: None, backup_env: dict[str, str], tmp_path: Path
) -> None:
    # Given: two people with data in Quanyi and the product; a third whose product data exists
    # but who only comes to Quanyi after the backup. The first one's deletion is planned.
    subject, p = subject_with_data(1)
    other, q = subject_with_data(2)
    late_person = person(3)
    sample_product.demo_load([late_person], seed=3)
    pid, qid, lid = patient_id_of(p), patient_id_of(q), patient_id_of(late_person)
    other_before = everything(qid)
    request = deletion_request(subject)
    erasure.request_erasure_plan(request=request, actor=SYSTEM)

    taken = manage("backup", env=backup_env)
    assert taken.returncode == 0, taken.stderr
    default, product_backup = Backup.objects.order_by("database")
    assert [(b.database, b.status) for b in (default, product_backup)] == [
        ("default", "verified"),
        ("product", "verified"),
    ]
    assert default.set_id == product_backup.set_id and default.taken_at == product_backup.taken_at
    assert p.phone.encode() not in Path(product_backup.path).read_bytes()  # encrypted on disk
    token = phone_ciphertext_in(default, subject.pk, tmp_path)
    assert crypto.decrypt(token, aad=PHONE_AAD) == p.phone  # the backup is readable today

    # When: both are erased after the backup
    erasure.request_erasure_confirm(request=request, actor=SYSTEM)
    plan = Erasure.objects.get(subject=subject)
    assert erasure.run_erasure(erasure_id=plan.pk) == "done"
    plan.refresh_from_db()
    assert plan.backups_until == timezone.localdate(default.expires_at)  # from the catalogue
    late = factories.subject(
        email=late_person.email,
        phone=late_person.phone,
        id_number=late_person.id_number,
        full_name=late_person.name,
    )
    late_plan = erase(late)
    erased_subject, erased_late = comparable(everything(pid)), comparable(everything(lid))
    assert erased_subject["devices"] == erased_late["devices"] == []

    # Then: the person's values in the backup file can no longer be decrypted
    crypto.clear_key_cache()
    with pytest.raises(crypto.KeyDestroyed):
        crypto.decrypt(phone_ciphertext_in(default, subject.pk, tmp_path), aad=PHONE_AAD)

    # A dry run says what would happen and changes nothing
    dry = manage("restore", str(default.pk), "--dry-run", env=backup_env)
    assert dry.returncode == 0, dry.stderr
    assert "Tombstones to replay: 2" in dry.stdout and "Dry run: nothing restored." in dry.stdout
    assert comparable(everything(pid)) == erased_subject

    # And a restore brings the backup back, then erases both again
    restored = manage("restore", str(default.pk), "--yes", env=backup_env)
    assert restored.returncode == 0, restored.stderr
    assert "2 tombstone(s) replayed" in restored.stdout
    connections.close_all()
    crypto.clear_key_cache()

    assert comparable(everything(pid)) == erased_subject
    assert comparable(everything(lid)) == erased_late
    assert everything(qid) == other_before  # nobody else touched
    for person_row in (DataSubject.objects.get(pk=subject.pk), DataSubject.objects.get(pk=late.pk)):
        assert person_row.erased_at is not None
        assert (person_row.full_name, person_row.email, person_row.phone, person_row.id_number) == (
            None,
            None,
            None,
            None,
        )
        assert person_row.email_index == person_row.phone_index == person_row.id_number_index == ""
    assert not User.objects.get(pk=subject.user_id).is_active
    kept = DataSubject.objects.get(pk=other.pk)
    assert kept.erased_at is None and kept.phone == q.phone
    assert set(Tombstone.objects.values_list("erasure_id", flat=True)) == {plan.pk, late_plan.pk}
    assert set(Erasure.objects.values_list("pk", "status")) == {(plan.pk, "done"), (late_plan.pk, "done")}
    assert set(Backup.objects.values_list("pk", "status")) == {
        (default.pk, "verified"),
        (product_backup.pk, "verified"),
    }
    assert crypto.subject_key_is_destroyed(subject.key_id)
    assert AuditEntry.objects.filter(action="backup.restored").count() == 1
    assert AuditEntry.objects.filter(action="backup.tombstone_replayed").count() == 2
    assert audit_verify().ok
    assert not maintenance_active()


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_the_site_stays_closed_until_the_replay_has_succeeded(
    product: None, backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    subject, p = subject_with_data(1)
    taken = backup_take(actor=SYSTEM)
    erase(subject)
    erased_state = comparable(everything(patient_id_of_any(p)))

    def lost_connection(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("product database went away")

    monkeypatch.setattr(sources, "erase_batch", lost_connection)
    with pytest.raises(restore.RestoreFailed, match="stays closed") as failed:
        restore.backup_restore(backup_id=str(taken[0].pk), actor=SYSTEM)

    assert "run `python manage.py restore" in str(failed.value)
    assert maintenance_active() and restore.pending_path().exists()
    assert Client().get("/").status_code == 503
    monkeypatch.undo()
    flag_during_replay: list[bool] = []
    real_subject_erase = restore.subject_erase

    def watching(**kwargs: Any) -> Any:
        flag_during_replay.append(maintenance_active())
        return real_subject_erase(**kwargs)

    monkeypatch.setattr(restore, "subject_erase", watching)
    result = restore.backup_restore(backup_id=str(taken[0].set_id), actor=SYSTEM)

    assert result.replayed == 1 and flag_during_replay == [True]
    assert not maintenance_active() and not restore.pending_path().exists()
    assert Client().get("/").status_code != 503
    connections.close_all()
    assert comparable(everything(patient_id_of_any(p))) == erased_state


def patient_id_of_any(p: sample_product.Person) -> int:
    with connections["product"].cursor() as cursor:
        cursor.execute(
            "SELECT id FROM patients WHERE email IN (%s, %s)", [p.email, sources.erasure_hash(p.email)]
        )
        return int(cursor.fetchone()[0])


def test_the_web_answers_503_while_the_maintenance_flag_is_set(client: Client, backup_env: Any) -> None:
    maintenance_on(reason="restore")
    try:
        page = client.get("/")
        api = client.get("/api/v1/requests/", headers={"Accept-Language": "en"})
        admin = client.get("/admin/")
        health = client.get("/healthz")
        job = tasks.erasures_resume.run()
    finally:
        maintenance_off()

    assert page.status_code == 503 and 'id="maintenance"' in page.content.decode()
    assert page["Retry-After"] == "600"
    assert api.status_code == 503 and "maintenance" in api.json()["detail"]
    assert admin.status_code == 503
    assert health.status_code == 200 and health.json()["checks"]["maintenance"] is True
    assert job == SKIPPED  # scheduled jobs skip their slot
    assert client.get("/").status_code != 503


# --- Verification, rotation, the catalogue ------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_verify_detects_a_tampered_file(backup_env: dict[str, str]) -> None:
    default, product_backup = sorted(backup_take(actor=SYSTEM), key=lambda b: b.database)
    raw = bytearray(Path(default.path).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    Path(default.path).write_bytes(bytes(raw))

    bad = manage("backup", "--verify", str(default.pk), env=backup_env)
    good = manage("backup", "--verify", str(product_backup.pk), env=backup_env)

    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "failed verification" in bad.stderr and "does not authenticate" in bad.stderr
    assert good.returncode == 0, good.stderr
    default.refresh_from_db()
    assert default.status == Backup.Status.FAILED and "does not authenticate" in default.detail
    assert AuditEntry.objects.filter(action="backup.verify_failed", object_id=str(default.pk)).count() == 1


def test_rotation_deletes_exactly_the_expired_backups(backup_env: Any, settings: Any) -> None:
    settings.QUANYI_BACKUP_RETENTION_DAYS = 30
    start = datetime(2026, 3, 2, 18, 30, tzinfo=UTC)
    sets: dict[int, list[Backup]] = {}
    for day in (0, 10, 25):
        with time_machine.travel(start + timedelta(days=day), tick=False):
            sets[day] = backup_take(actor=SYSTEM)

    with time_machine.travel(start + timedelta(days=30), tick=False):  # the first expires now
        first = backups_rotate(actor=SYSTEM)
        again = backups_rotate(actor=SYSTEM)
    with time_machine.travel(start + timedelta(days=40) - timedelta(seconds=1), tick=False):
        early = backups_rotate(actor=SYSTEM)

    assert {b.pk for b in first} == {b.pk for b in sets[0]} and again == [] and early == []
    for day, taken in sets.items():
        for backup in taken:
            backup.refresh_from_db()
            gone = day == 0
            assert (backup.status == Backup.Status.DELETED) is gone
            assert Path(backup.path).exists() is not gone
            assert manifest_path(backup.path).exists() is not gone
    assert AuditEntry.objects.filter(action="backup.deleted").count() == 2


def test_backups_holding_an_erasure_are_those_taken_before_it_and_not_deleted() -> None:
    now = timezone.now()

    def backup(days_ago: int, status: str = "verified", path: str = "/backups/x.qyb") -> Backup:
        taken = now - timedelta(days=days_ago)
        return Backup.objects.create(
            set_id=uuid.uuid4(),
            database="default",
            engine="sqlite",
            taken_at=taken,
            expires_at=taken + timedelta(days=30),
            status=status,
            path=path,
        )

    assert backups_clear_by(now) is None
    assert backups_roll_over_by(now) == timezone.localdate(now + timedelta(days=30))  # no catalogue yet
    old, recent = backup(20), backup(2)
    backup(40, status="deleted")
    backup(1, status="failed", path="")  # a dump that failed: no file
    backup(-1)  # taken after

    assert backups_holding(now) == [old, recent]
    assert backups_clear_by(now) == timezone.localdate(recent.expires_at)
    assert backups_roll_over_by(now) == timezone.localdate(recent.expires_at)
    assert backups_roll_over_by(now - timedelta(days=30)) == timezone.localdate(now - timedelta(days=30))


def test_the_catalogue_is_found_from_the_files_when_the_database_lost_it(backup_env: Any) -> None:
    taken = backup_take(actor=SYSTEM)
    Backup.objects.all().delete()

    plan = restore.restore_plan(backup_id=str(taken[0].pk))

    assert {b.pk for b in plan.members} == {b.pk for b in taken}


def test_the_nightly_job_takes_verifies_and_rotates_once_per_night(backup_env: Any) -> None:
    assert tasks.backup_nightly.run() == "taken 2, deleted 0"
    assert tasks.backup_nightly.run() == SKIPPED
    assert set(Backup.objects.values_list("status", flat=True)) == {"verified"}


# --- Bad input ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_bad_input_is_a_message_and_touches_nothing(backup_env: dict[str, str]) -> None:
    default, product_backup = sorted(backup_take(actor=SYSTEM), key=lambda b: b.database)
    other_key = {**backup_env, "QUANYI_BACKUP_KEY": crypto.generate_master_key()}
    Path(product_backup.path).unlink()

    cases = [
        (("restore", "yesterday"), backup_env, "is not a backup id"),
        (("restore", str(uuid.uuid4()), "--yes"), backup_env, "No backup"),
        (("backup", "--verify", str(uuid.uuid4())), backup_env, "No backup"),
        (("restore", str(default.pk), "--yes"), backup_env, "is missing"),
        (("backup", "--verify", str(default.pk)), other_key, "another backup key"),
    ]
    for args, env, message in cases:
        result = manage(*args, env=env)
        assert result.returncode == 1, args
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert not maintenance_active()
    default.refresh_from_db()
    assert default.status == Backup.Status.VERIFIED  # a wrong key is not the file's fault


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_a_missing_pg_dump_is_a_message(backup_env: dict[str, str], tmp_path: Path) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("pg_dump is only needed for PostgreSQL databases")
    bare = tmp_path / "bin"
    bare.mkdir()
    result = manage("backup", env={**backup_env, "PATH": str(bare)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pg_dump is not on PATH" in result.stderr
    assert shutil.which("pg_dump")  # the real one is there: this was the missing-tool case
    assert not Backup.objects.exists()
