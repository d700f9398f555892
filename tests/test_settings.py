from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.crypto import generate_master_key
from tests.conftest import ROOT

PROD = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "-Zq8w3Lx0Pv7Rt2Yn5Mb9Kc4Hj6Gf1Ds3Ae7Wu0Io2",
    "QUANYI_MASTER_KEYS": generate_master_key(),
    "QUANYI_BLIND_INDEX_KEY": "blind-index-key-for-the-test-0123456789",
    "QUANYI_RECEIPT_SIGNING_KEY": generate_master_key(),
    "QUANYI_BACKUP_KEY": generate_master_key(),
    "ALLOWED_HOSTS": "privacy.example.cn",
    "DATABASE_URL": "sqlite:////tmp/quanyi-settings-test.sqlite3",
    "KEYSTORE_DATABASE_URL": "sqlite:////tmp/quanyi-settings-test-keys.sqlite3",
    "PRODUCT_DATABASE_URL": "sqlite:////tmp/quanyi-settings-test-product.sqlite3",
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in PROD and not k.endswith("_URL") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_under_production_settings() -> None:
    # The product database must have the tables its data map names (check verifies that).
    assert _manage("sample_product", "install", **PROD).returncode == 0
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PROD)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "QUANYI_MASTER_KEYS",
        "QUANYI_BLIND_INDEX_KEY",
        "QUANYI_RECEIPT_SIGNING_KEY",
        "QUANYI_BACKUP_KEY",
    ],
)
def test_a_missing_secret_stops_start_up_naming_the_variable(missing: str) -> None:
    env = {k: v for k, v in PROD.items() if k != missing}

    result = _manage("check", **env)

    assert result.returncode == 2
    assert missing in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root@localhost/quanyi"),
        ("DATABASE_URL", "postgres://"),
        ("DATABASE_URL", "nonsense"),
        ("KEYSTORE_DATABASE_URL", "ftp://example.cn/keys"),
        ("CACHE_URL", "nosuchcache://x"),
    ],
)
def test_a_malformed_url_stops_start_up_naming_the_variable(variable: str, value: str) -> None:
    result = _manage("check", **{**PROD, variable: value})

    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_master_key_stops_start_up() -> None:
    result = _manage("rotate_master_key", **{**PROD, "QUANYI_MASTER_KEYS": "short"})

    assert result.returncode == 2
    assert "QUANYI_MASTER_KEYS" in result.stderr


def test_development_defaults_need_no_configuration() -> None:
    env = {"DEBUG": "true", "QUANYI_VAR_DIR": str(ROOT / "var" / "check")}
    assert _manage("sample_product", "install", **env).returncode == 0  # what `make run` does first
    result = _manage("check", **env)
    assert result.returncode == 0, result.stderr


def test_any_command_stops_on_bad_configuration_with_the_variable_named() -> None:
    env = {k: v for k, v in PROD.items() if k != "SECRET_KEY"}
    result = _manage("makemigrations", "--check", "--dry-run", **env)
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_another_source_database_is_configuration_not_code(tmp_path: Path) -> None:
    (tmp_path / "crm.json").write_text(
        json.dumps(
            {
                "source": "crm",
                "database": "crm",
                "tables": {
                    "contacts": {
                        "identity": {"match": {"email": "email"}},
                        "columns": {"email": {"category": "contact", "erase": "hash"}},
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    env = {
        "DEBUG": "true",
        "QUANYI_VAR_DIR": str(tmp_path / "var"),
        "QUANYI_SOURCE_DATABASES": "crm",
        "CRM_DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite3'}",
        "QUANYI_SOURCES_DIR": str(tmp_path),
    }
    result = _manage("check", "--database", "crm", **env)
    assert result.returncode != 0
    assert "crm.json: table 'contacts' does not exist in database 'crm'" in result.stderr

    bad = _manage("check", "--database", "crm", **{**env, "QUANYI_SOURCE_DATABASES": "default"})
    assert bad.returncode == 2
    assert "QUANYI_SOURCE_DATABASES" in bad.stderr and "Traceback" not in bad.stderr
