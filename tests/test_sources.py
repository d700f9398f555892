"""The product's data as a real source: the data-map file, finding a subject's rows in the
sample product database, and the erase primitives (idempotent, batch by batch)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import override_settings

from core import sources
from core.datamap import Erase
from dsar import sample_product
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)

ZHANG = sample_product.Person(
    email="zhang@example.cn",
    phone="13800138000",
    name="张三",
    id_number="110101199003071234",
    birthday="1990-03-07",
    gender="男",
    native_place="北京市东城区",
)
WANG = sample_product.Person(
    email="wang@example.cn",
    phone="13700137000",
    name="王五",
    id_number="310101198001011111",
    birthday="1980-01-01",
    gender="男",
    native_place="上海市",
)


def health_app() -> sources.SourceMap:
    return sources.source_map("health_app")


def rows_of(table: str, where: str = "1 = 1", params: list[Any] | None = None) -> list[dict[str, Any]]:
    with connections["product"].cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id", params or [])  # noqa: S608 - test
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def ids_of(person: sample_product.Person) -> dict[str, list[str]]:
    return sources.identifiers_clean(
        {"email": [person.email], "phone": [person.phone], "id_number": [person.id_number]}
    )


def test_the_shipped_map_matches_the_sample_database(product: None) -> None:
    errors, warnings = sources.schema_problems(health_app())
    assert errors == []
    assert warnings == []


def test_demo_load_fills_every_table_for_each_person(product: None) -> None:
    written = sample_product.demo_load([ZHANG, WANG])
    assert written > 2 * 7
    assert sample_product.demo_load([ZHANG]) == 0  # idempotent per e-mail
    patients = rows_of("patients")
    assert [p["name"] for p in patients] == ["张三", "王五"]
    for table in sample_product.TABLES[1:]:
        owners = {r["patient_id"] for r in rows_of(table)}
        assert owners == {patients[0]["id"], patients[1]["id"]}, table


def test_subject_rows_are_found_by_any_identifier_and_never_include_others(product: None) -> None:
    sample_product.demo_load([ZHANG, WANG])
    src = health_app()
    zhang_id = rows_of("patients", "email = %s", [ZHANG.email])[0]["id"]
    for identifiers in (
        {"email": ["ZHANG@example.cn "]},
        {"phone": ["+86 138-0013-8000"]},
        {"id_number": ["110101199003071234"]},
    ):
        found = sources.subject_rows(src, sources.identifiers_clean(identifiers))
        assert found.roots == {"patients": [zhang_id]}
    rows = sources.subject_rows(src, ids_of(ZHANG))
    got = [
        r for chunk in sources.iter_rows(rows, src.table("messages"), columns=["patient_id"]) for r in chunk
    ]
    assert got and {r[1] for r in got} == {zhang_id}
    assert sources.subject_rows(src, {"email": ["nobody@example.cn"]}).empty


def test_iter_rows_walks_every_row_in_bounded_batches(product: None) -> None:
    sample_product.demo_load([ZHANG])
    src = health_app()
    patient_id = rows_of("patients")[0]["id"]
    now = datetime.now(tz=UTC)
    sample_product.insert_rows(
        "messages",
        ["patient_id", "channel", "direction", "body", "sent_at"],
        [(patient_id, "app", "in", f"消息 {n}", now) for n in range(25)],
    )
    rows = sources.subject_rows(src, ids_of(ZHANG))
    chunks = list(sources.iter_rows(rows, src.table("messages"), batch=10))
    assert [len(c) for c in chunks] == [10, 10, 9]
    pks = [r[0] for c in chunks for r in c]
    assert pks == sorted(pks) and len(set(pks)) == 29
    assert sources.count_rows(rows, src.table("messages")) == 29


def test_erase_applies_each_strategy_only_to_the_subject(product: None) -> None:
    sample_product.demo_load([ZHANG, WANG])
    src = health_app()
    rows = sources.subject_rows(src, ids_of(ZHANG))
    before_wang = {t: rows_of(t, "1=1") for t in ("patients", "orders")}
    wang_id = rows_of("patients", "email = %s", [WANG.email])[0]["id"]
    for table in src.erase_order:
        after = None
        while True:
            result = sources.erase_batch(rows, table, after=after, limit=2)
            if result.last_pk is None:
                break
            after = result.last_pk
    zhang_id = rows.roots["patients"][0]
    # delete: gone
    for table in ("devices", "locations", "messages"):
        assert rows_of(table, "patient_id = %s", [zhang_id]) == []
        assert rows_of(table, "patient_id = %s", [wang_id]) != []
    # hash, null, keep + restrict
    patient = rows_of("patients", "id = %s", [zhang_id])[0]
    assert patient["email"] == sources.erasure_hash(ZHANG.email)
    assert patient["phone"] == sources.erasure_hash(ZHANG.phone)
    assert patient["native_place"] is None
    assert patient["name"] == "张三" and patient["id_number"] == ZHANG.id_number  # kept: medical records
    assert patient["restricted_at"] is not None
    assert all(
        r["restricted_at"] is not None for r in rows_of("health_records", "patient_id = %s", [zhang_id])
    )
    # mask, null on orders
    for order in rows_of("orders", "patient_id = %s", [zhang_id]):
        assert order["phone"] == "1***" and order["postal_code"] is None
        assert order["address"] and order["restricted_at"] is not None
    # the other person is untouched
    assert [r for r in rows_of("patients") if r["id"] == wang_id] == [
        r for r in before_wang["patients"] if r["id"] == wang_id
    ]
    assert [r for r in rows_of("orders") if r["patient_id"] == wang_id] == [
        r for r in before_wang["orders"] if r["patient_id"] == wang_id
    ]


def test_erasing_twice_changes_nothing_more(product: None) -> None:
    sample_product.demo_load([ZHANG])
    src = health_app()
    rows = sources.subject_rows(src, ids_of(ZHANG))

    def run() -> dict[str, list[dict[str, Any]]]:
        for table in src.erase_order:
            after = None
            while (result := sources.erase_batch(rows, table, after=after)).last_pk is not None:
                after = result.last_pk
        return {t: rows_of(t) for t in sample_product.TABLES}

    first = run()
    assert run() == first  # hashes are not hashed again, masks are fixed points


def test_column_update_writes_only_correctable_columns(product: None) -> None:
    sample_product.demo_load([ZHANG, WANG])
    src = health_app()
    rows = sources.subject_rows(src, ids_of(ZHANG))
    assert sources.column_update(rows, src.table("patients"), "native_place", "浙江省杭州市") == 1
    assert rows_of("patients", "email = %s", [ZHANG.email])[0]["native_place"] == "浙江省杭州市"
    assert rows_of("patients", "email = %s", [WANG.email])[0]["native_place"] == "上海市"
    with pytest.raises(sources.SourceMapError):
        sources.column_update(rows, src.table("health_records"), "diagnosis", "无")


# --- The map file is validated, with messages that say where ------------------------------


def write_map(folder: Path, data: dict[str, Any]) -> None:
    (folder / "x.json").write_text(json.dumps(data), encoding="utf-8")


def minimal(**table: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "identity": {"match": {"email": "email"}},
        "columns": {"email": {"category": "contact", "erase": "hash"}},
        "not_personal": ["id"],
    }
    base.update(table)
    return {"source": "x", "database": "product", "tables": {"patients": base}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "x", "database": "default", "tables": {}}, "'database' must name a product database"),
        (
            minimal(columns={"email": {"category": "nope", "erase": "hash"}}),
            "tables.patients.columns.email.category",
        ),
        (minimal(columns={"email": {"category": "contact", "erase": "shred"}}), "unknown value 'shred'"),
        (minimal(columns={"email": {"category": "contact", "erase": "keep"}}), "'keep' needs a 'ground'"),
        (minimal(identity={}), "say how rows are found"),
        (minimal(identity={"parent": "nowhere", "column": "x"}), "declared earlier"),
        (
            minimal(
                columns={
                    "email": {"category": "contact", "erase": "delete"},
                    "phone": {"category": "contact", "erase": "null"},
                }
            ),
            "cannot also keep or update",
        ),
        (
            minimal(columns={"email; DROP TABLE x": {"category": "contact", "erase": "hash"}}),
            "not a valid table or column name",
        ),
    ],
)
def test_bad_map_files_are_refused_with_the_place_named(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    write_map(tmp_path, data)
    with override_settings(QUANYI_SOURCES_DIR=tmp_path):
        sources.source_maps_reload()
        with pytest.raises(sources.SourceMapError, match="x.json") as err:
            sources.source_maps()
    sources.source_maps_reload()
    assert message in str(err.value)


def test_check_names_an_unknown_table_or_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = minimal()
    data["tables"]["patients"]["columns"]["favourite_colour"] = {"category": "contact", "erase": "null"}
    data["tables"]["ghosts"] = {
        "identity": {"parent": "patients", "column": "patient_id"},
        "columns": {"x": {"category": "contact", "erase": "delete"}},
    }
    write_map(tmp_path, data)
    with override_settings(QUANYI_SOURCES_DIR=tmp_path):
        sources.source_maps_reload()
        messages = sources.sources_check(databases=["product"])
        with pytest.raises(Exception, match="SystemCheckError|System check"):
            call_command("check", databases=["product"])
    sources.source_maps_reload()
    text = "\n".join(m.msg for m in messages)
    assert "column 'favourite_colour' does not exist in table 'patients'" in text
    assert "table 'ghosts' does not exist in database 'product'" in text
    assert {m.id for m in messages if m.level >= 40} == {"quanyi.E102"}


def test_broken_json_is_a_check_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{ not json", encoding="utf-8")
    with override_settings(QUANYI_SOURCES_DIR=tmp_path):
        sources.source_maps_reload()
        messages = sources.sources_check()
    sources.source_maps_reload()
    assert [m.id for m in messages] == ["quanyi.E101"]
    assert "broken.json: not valid JSON" in messages[0].msg


def test_erase_strategies_of_the_map_cover_the_seed_categories() -> None:
    src = health_app()
    strategies = {c.erase for t in src.tables.values() for c in t.columns.values()}
    assert strategies == {Erase.DELETE, Erase.NULL, Erase.MASK, Erase.HASH, Erase.KEEP}
    categories = {c for t in src.tables.values() for c in t.categories}
    assert {
        "health",
        "location",
        "unique_device_identifiers",
        "orders_delivery",
        "communications",
    } <= categories
