"""Every management command of the project's apps, given wrong arguments, stops with a clear
message and a non-zero exit code — never a Python traceback. Each case runs the real
`manage.py` in a subprocess against the test databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ALL, ROOT, manage, subprocess_env

# The subprocesses use the test databases (the mark is what points `manage` at them).
pytestmark = pytest.mark.django_db(transaction=True, databases=ALL)

NO_SUCH_BACKUP = "00000000-0000-0000-0000-000000000000"
# Another branch adds this command with its own tests.
NOT_HERE = {"terminate_service"}

# (command and arguments, extra environment, what stderr says). "{tmp}" is the test's folder,
# which holds the files made by `_files`.
CASES: list[tuple[list[str], dict[str, str], str]] = [
    (["seed_demo", "--bogus"], {}, "unrecognized arguments: --bogus"),
    (["create_api_key", ""], {}, "Name the service account the key is for."),
    (["create_api_key", "x" * 300], {}, "The name can have at most 100 characters."),
    (["create_api_key", "app", "--scope", "everything"], {}, "invalid choice: 'everything'"),
    (["datamap", "--format", "xml"], {}, "invalid choice: 'xml'"),
    (["datamap"], {"QUANYI_SOURCES_DIR": "{tmp}/broken-map"}, "y.json: not valid JSON"),
    (
        ["datamap"],
        {"QUANYI_SOURCES_DIR": "{tmp}/wrong-map"},
        "x.json: 'source' must be a short lower-case code",
    ),
    (["generate_keys", "now"], {}, "unrecognized arguments: now"),
    (
        ["rotate_master_key"],
        {"QUANYI_MASTER_KEYS": "not-base64!"},
        "QUANYI_MASTER_KEYS entry 1 is not base64",
    ),
    (["verify_audit", "--all"], {}, "unrecognized arguments: --all"),
    (["deadline", "2026-13-40"], {}, "'2026-13-40' is not a date; use YYYY-MM-DD."),
    (["deadline", "yesterday"], {}, "'yesterday' is not a date; use YYYY-MM-DD."),
    (["deadline", "2099-01-01"], {}, "2099-01-01 is outside the calendar"),
    (["erase_subject", "nobody@example.cn", "--reason", "test"], {}, "No person with the e-mail"),
    (["erase_subject", "nobody@example.cn"], {}, "the following arguments are required: --reason"),
    (["erase_subject", "nobody@example.cn", "--reason", "  "], {}, "--reason must say why."),
    (["export_subject", "nobody@example.cn", "--out", "{tmp}/x.zip"], {}, "No data subject has this e-mail"),
    (
        ["export_subject", "a@example.cn", "--out", "{tmp}/missing/x.zip"],
        {},
        "the folder {tmp}/missing does not exist",
    ),
    (["export_subject", "a@example.cn", "--out", "{tmp}"], {}, "{tmp} is a folder"),
    (["export_subject", "a@example.cn"], {}, "the following arguments are required: --out"),
    (["import_workdays", "{tmp}/none.json"], {}, "No such file: {tmp}/none.json"),
    (["import_workdays", "{tmp}/bad.json"], {}, "{tmp}/bad.json is not valid JSON"),
    (["import_workdays", "{tmp}/list.json"], {}, "The schedule must be a JSON object."),
    (["import_workdays", "{tmp}/year.json"], {}, "'year' must be a year between 2000 and 2100."),
    (["import_workdays", "{tmp}/date.json"], {}, "'2027-02-30' in holidays is not a date (YYYY-MM-DD)."),
    (["import_workdays", "{tmp}/binary.json"], {}, "Cannot read {tmp}/binary.json"),
    (["import_workdays", "{tmp}"], {}, "Cannot read {tmp}"),
    (["sample_product", "install", "--database", "nosuch"], {}, "unknown database alias 'nosuch'"),
    (["sample_product", "drop"], {}, "invalid choice: 'drop'"),
    (["backup", "--verify", "../../etc/passwd"], {}, "'../../etc/passwd' is not a backup id"),
    (["backup", "--verify", NO_SUCH_BACKUP], {}, f"No backup {NO_SUCH_BACKUP} in the catalogue"),
    (["backup", "--list", "--rotate"], {}, "not allowed with argument"),
    (["restore", "not-an-id", "--dry-run"], {}, "'not-an-id' is not a backup id"),
    (["restore", NO_SUCH_BACKUP, "--yes"], {}, f"No backup {NO_SUCH_BACKUP} in the catalogue"),
    (["retention_sweep", "--batch", "0"], {}, "--batch must be a whole number of rows, at least 1."),
    (["retention_sweep", "--batch", "many"], {}, "invalid int value: 'many'"),
    (["retention_sweep", "--dry-run"], {"QUANYI_SOURCES_DIR": "{tmp}/broken-map"}, "y.json: not valid JSON"),
]


def _files(tmp: Path) -> None:
    (tmp / "bad.json").write_text("{not json")
    (tmp / "list.json").write_text("[]")
    (tmp / "year.json").write_text('{"year": "soon", "holidays": {}, "workdays": {}}')
    (tmp / "date.json").write_text('{"year": 2027, "holidays": {"2027-02-30": "x"}, "workdays": {}}')
    (tmp / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp / "broken-map").mkdir()
    (tmp / "broken-map" / "y.json").write_text("{broken")
    (tmp / "wrong-map").mkdir()
    (tmp / "wrong-map" / "x.json").write_text('{"database": "product", "tables": 5}')


def _ids() -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for args, _env, _said in CASES:
        seen[args[0]] = seen.get(args[0], 0) + 1
        out.append(f"{args[0]}-{seen[args[0]]}")
    return out


@pytest.mark.parametrize(("args", "extra", "said"), CASES, ids=_ids())
def test_bad_arguments_stop_with_a_message_not_a_traceback(
    args: list[str], extra: dict[str, str], said: str, tmp_path: Path
) -> None:
    _files(tmp_path)
    tmp = str(tmp_path)
    env = subprocess_env(LANGUAGE_CODE="en", **{k: v.replace("{tmp}", tmp) for k, v in extra.items()})

    result = manage(*(a.replace("{tmp}", tmp) for a in args), env=env)

    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert said.replace("{tmp}", tmp) in result.stderr, result.stderr


def test_every_command_of_the_project_has_a_bad_input_case() -> None:
    found = {
        path.stem
        for app in ("accounts", "consent", "core", "dsar", "retention")
        for path in (ROOT / app / "management" / "commands").glob("*.py")
        if path.stem != "__init__"
    }
    assert found - NOT_HERE == {args[0] for args, _env, _said in CASES}
