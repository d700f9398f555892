from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

from accounts.models import DataSubject
from accounts.services import subject_find
from core import crypto
from core.models import SubjectKey
from tests import factories
from tests.conftest import ALL, manage

pytestmark = pytest.mark.django_db(databases=ALL)
PHONE_AAD = "accounts.datasubject.phone"


def _raw(subject: DataSubject, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM accounts_datasubject WHERE id = %s", [subject.pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def test_sensitive_values_are_stored_encrypted_and_read_back_in_clear() -> None:
    s = factories.subject(phone="13800138000", id_number="110101199003071234")

    assert _raw(s, "phone").startswith("qy1.")
    assert "13800138000" not in _raw(s, "phone")
    fresh = DataSubject.objects.get(pk=s.pk)
    assert (fresh.phone, fresh.id_number) == ("13800138000", "110101199003071234")


def test_each_subject_has_its_own_key_held_only_in_the_key_store() -> None:
    a, b = factories.subject(), factories.subject()

    assert a.key_id != b.key_id
    assert crypto.token_key_id(_raw(a, "phone")) == a.key_id
    assert SubjectKey.objects.using("keystore").filter(key_id__in=[a.key_id, b.key_id]).count() == 2
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    assert "core_subjectkey" not in tables or not SubjectKey.objects.using("default").exists()


def test_a_ciphertext_moved_to_another_column_does_not_decrypt() -> None:
    s = factories.subject()

    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(_raw(s, "phone"), aad="accounts.datasubject.id_number")


def test_blind_index_finds_exact_matches_in_any_notation() -> None:
    s = factories.subject(phone="13800138000", id_number="11010519491231002x", email="Wang@Example.cn")
    factories.subject(phone="13900000000", email="other@example.cn")

    assert subject_find(phone="+86 138-0013-8000") == s
    assert subject_find(id_number="11010519491231002X") == s
    assert subject_find(email="wang@example.cn") == s
    assert subject_find(phone="13800138001") is None
    assert "13800138000" not in _raw(s, "phone_index")


def test_bulk_update_with_plaintext_is_refused() -> None:
    s = factories.subject()

    with pytest.raises(ValueError, match="encrypted fields"), transaction.atomic():
        DataSubject.objects.filter(pk=s.pk).update(phone="13800000000")
    assert DataSubject.objects.get(pk=s.pk).phone == "13712345678"


def _snapshot(tmp_path: Path) -> str:
    """A real copy of the main database as a backup would hold it: SQLite's online backup,
    or pg_dump for PostgreSQL. Returns the copy's location."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        target = tmp_path / "copy.sqlite3"
        connection.ensure_connection()
        with sqlite3.connect(target) as dst:
            connection.connection.backup(dst)
        return str(target)
    target = tmp_path / "copy.sql"
    subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "--table=accounts_datasubject",
            "-h",
            settings_dict["HOST"] or "127.0.0.1",
            "-p",
            str(settings_dict["PORT"] or 5432),
            "-U",
            settings_dict["USER"] or "postgres",
            "-f",
            str(target),
            settings_dict["NAME"],
        ],
        check=True,
        capture_output=True,
    )
    return str(target)


def _phone_ciphertext_in(copy: str, subject: DataSubject) -> str:
    if copy.endswith(".sqlite3"):
        with sqlite3.connect(copy) as db:
            return str(
                db.execute("SELECT phone FROM accounts_datasubject WHERE id = ?", [subject.pk]).fetchone()[0]
            )
    for line in Path(copy).read_text().splitlines():
        if line.startswith(f"{subject.pk}\t"):
            match = re.search(r"qy1\.[A-Za-z0-9_=-]+", line.split("\t")[6])
            assert match
            return match.group(0)
    raise AssertionError("subject not found in the dump")


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_destroying_the_key_makes_an_earlier_copy_of_the_database_unreadable(tmp_path: Path) -> None:
    s = factories.subject(phone="13800138000")
    copy = _snapshot(tmp_path)
    old_ciphertext = _phone_ciphertext_in(copy, s)
    assert crypto.decrypt(old_ciphertext, aad=PHONE_AAD) == "13800138000"  # the copy is readable today

    assert crypto.subject_key_destroy(s.key_id) is True

    crypto.clear_key_cache()  # as any other process would be, a moment later
    with pytest.raises(crypto.KeyDestroyed):
        crypto.decrypt(old_ciphertext, aad=PHONE_AAD)
    assert DataSubject.objects.get(pk=s.pk).phone is None
    assert crypto.subject_key_destroy(s.key_id) is False  # second time: nothing left to destroy
    with pytest.raises(crypto.KeyDestroyed):  # and no fresh key is made behind its back
        crypto.encrypt(s.key_id, "again", aad=PHONE_AAD)


def test_rotation_rewraps_every_key_and_old_master_keys_can_then_be_dropped(settings) -> None:  # type: ignore[no-untyped-def]
    old = settings.QUANYI_MASTER_KEYS[0]
    subjects = [factories.subject(phone=f"1380013800{i}") for i in range(3)]
    new = crypto.generate_master_key()
    settings.QUANYI_MASTER_KEYS = [new, old]
    crypto.clear_key_cache()

    assert crypto.rotate_master_key(batch=2) == 3
    assert crypto.rotate_master_key() == 0  # idempotent

    settings.QUANYI_MASTER_KEYS = [new]
    crypto.clear_key_cache()
    assert [DataSubject.objects.get(pk=s.pk).phone for s in subjects] == [f"1380013800{i}" for i in range(3)]
    kid = crypto.master_keys()[0].kid
    assert set(SubjectKey.objects.values_list("master_key_id", flat=True)) == {kid}


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_rotate_master_key_command() -> None:
    factories.subject()
    result = manage("rotate_master_key")
    assert result.returncode == 0, result.stderr
    assert "Rewrapped 0 subject key(s)" in result.stdout


def test_malformed_master_key_is_a_clear_configuration_error(settings) -> None:  # type: ignore[no-untyped-def]
    from django.core.exceptions import ImproperlyConfigured

    settings.QUANYI_MASTER_KEYS = ["not base64!"]
    with pytest.raises(ImproperlyConfigured, match="QUANYI_MASTER_KEYS entry 1"):
        crypto.master_keys()
    settings.QUANYI_MASTER_KEYS = ["c2hvcnQ="]
    with pytest.raises(ImproperlyConfigured, match="32 bytes"):
        crypto.master_keys()
    assert connections["keystore"].vendor in {"sqlite", "postgresql"}
