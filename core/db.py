from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, TypeVar, cast

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model


def database_url(alias: str) -> str:
    """The URL of the database behind an alias as configured now (in a test run: the test
    database), for a subprocess that must use the same one: a worker, a command, gunicorn."""
    s = connections[alias].settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s.get("USER") or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = f"{auth}@" if auth else ""
    return f"postgres://{host}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


# --- Hot paths: statements written once, values converted as the ORM converts them --------------

M = TypeVar("M", bound=Model)
Converter = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Selected:
    """Model fields a hand-written statement selects, in order, with the backend's converters
    for each (what the ORM applies: SQLite's text timestamps, UUIDs, JSON, decryption)."""

    fields: tuple[Field[Any, Any], ...]
    alias: str = "default"

    @cached_property
    def _converters(self) -> list[tuple[Any, list[Converter]]]:
        connection = connections[self.alias]
        plan = []
        for field in self.fields:
            col = field.get_col(field.model._meta.db_table)
            plan.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
        return plan

    def convert(self, row: Sequence[Any]) -> list[Any]:
        connection = connections[self.alias]
        values = []
        for value, (col, converters) in zip(row, self._converters, strict=True):
            for converter in converters:
                value = converter(value, col, connection)
            values.append(value)
        return values


def fetch_one(sql: str, params: Sequence[Any], alias: str = "default") -> tuple[Any, ...] | None:
    """One row of a read-only statement run many times per connection (a per-request hot path).

    On PostgreSQL it is a prepared statement (planned once per connection, then only executed:
    planning a join costs more than running it). And the connection's health check is the
    statement itself: instead of Django's `SELECT 1` round trip before the first query of a
    request (CONN_HEALTH_CHECKS), the statement runs at once, and if the connection turns out
    to have died since the last request it is replaced and the statement runs once more, which
    is what the health check would have done. Inside a transaction nothing is retried."""
    connection = connections[alias]
    health: Any = connection  # django-stubs lack the health-check attributes
    optimistic = (
        connection.connection is not None
        and health.health_check_enabled
        and not health.health_check_done
        and not connection.in_atomic_block
    )
    if optimistic:
        health.health_check_done = True
        try:
            return _fetch_one(connection, sql, params)
        except (OperationalError, InterfaceError):
            if connection.is_usable():
                raise  # the statement failed, not the connection
            connection.close()  # died since the last request: connect again, once
    return _fetch_one(connection, sql, params)


# Django opens psycopg connections with prepared statements switched off (prepare_threshold
# None, for transaction poolers), and then psycopg ignores `prepare=True` too. A threshold no
# statement reaches keeps psycopg from preparing anything by itself while the hot-path
# statements that ask for it are prepared: a few per connection, by their text.
NEVER_BY_COUNT = 2**31


def _fetch_one(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql" or not settings.QUANYI_DB_PREPARED_STATEMENTS:
            cursor.execute(sql, params)
            return cast("tuple[Any, ...] | None", cursor.fetchone())
        raw = connection.connection
        if raw.prepare_threshold is None:
            raw.prepare_threshold = NEVER_BY_COUNT
        with connection.wrap_database_errors, psycopg.Cursor(raw) as prepared:
            prepared.execute(sql, params, prepare=True)
            return prepared.fetchone()


@cache
def _row_by_plan(model: type[Model], by: str, names: tuple[str, ...], alias: str) -> tuple[str, Selected]:
    q = connections[alias].ops.quote_name
    meta = model._meta
    selected = Selected(tuple(cast("Field[Any, Any]", meta.get_field(name)) for name in names), alias)
    columns = ", ".join(q(field.column) for field in selected.fields)
    # Identifiers only, quoted by the backend; the value is a parameter.
    where = q(cast("Field[Any, Any]", meta.get_field(by)).column)
    sql = f"SELECT {columns} FROM {q(meta.db_table)} WHERE {where} = %s"  # noqa: S608
    return sql, selected


def row_by(model: type[M], by: str, value: Any, names: tuple[str, ...], alias: str = "default") -> M | None:
    """The instance whose unique column `by` equals `value`, with only `names` loaded, by a
    statement built once per process: what `filter(...).only(...).first()` returns without
    compiling SQL on every call. For per-request hot paths (the API key of every API call)."""
    sql, selected = _row_by_plan(model, by, names, alias)
    row = fetch_one(sql, [value], alias)
    if row is None:
        return None
    return model.from_db(alias, [f.attname for f in selected.fields], selected.convert(row))
