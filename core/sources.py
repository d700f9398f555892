"""Sources of personal data outside Quanyi's own models, declared by data-map files.

Each JSON file in settings.QUANYI_SOURCES_DIR maps one database (a Django alias) of the
product: for each table, how its rows are found for a data subject (by matching the
subject's identifiers, or through a parent table) and, for each column, its category,
sensitivity, whether the subject may correct it, and how it is erased (delete the row, set
to empty, mask, replace with a keyed hash, or keep on a named legal ground). Adding a source
is adding a file.

This module can destroy data, so it stays safe by construction: table and column names come
only from a validated map (identifiers, quoted by the database backend) and every value is a
query parameter; every read and write is limited to the rows of one subject and walks them
by primary key in bounded batches, one transaction per batch; each erase operation is
idempotent (deleting twice deletes nothing more, a hashed value is recognised and never
hashed again), so a batch interrupted by a crash is simply run again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connections, transaction
from django.utils import timezone
from django.utils.translation import get_language

from core.crypto import normalise
from core.datamap import Category, Erase, Export

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
IDENTIFIER_KINDS = ("email", "phone", "id_number")
HASH_PREFIX = "h:"
MASK = "***"


class SourceMapError(ValueError):
    """A data-map file that cannot be used; the message names the file and the place."""


@dataclass(frozen=True)
class Ground:
    code: str
    label: Mapping[str, str]
    law: Mapping[str, str]
    years: int | None
    restrict: bool


@dataclass(frozen=True)
class Column:
    name: str
    category: Category
    sensitive: bool
    erase: Erase
    export: Export
    correctable: bool
    ground: str | None


@dataclass(frozen=True)
class Table:
    name: str
    label: Mapping[str, str]
    purpose: Mapping[str, str]
    origin: Mapping[str, str]
    pk: str
    match: Mapping[str, str]  # subject identifier kind -> column
    parent: str | None
    parent_column: str | None
    columns: Mapping[str, Column]
    not_personal: frozenset[str]
    restrict_column: str | None
    # The column that starts the retention clock of a row (when it was collected, or its last
    # activity): retention sweeps walk the table through an index on (timestamp, pk).
    timestamp: str | None = None

    @property
    def deletes_rows(self) -> bool:
        return any(c.erase == Erase.DELETE for c in self.columns.values())

    @property
    def exported(self) -> list[Column]:
        return [c for c in self.columns.values() if c.export != Export.OMIT]

    @property
    def categories(self) -> list[str]:
        return sorted({str(c.category.value) for c in self.columns.values()})


@dataclass(frozen=True)
class SourceMap:
    code: str
    name: Mapping[str, str]
    database: str
    path: Path
    note: str
    grounds: Mapping[str, Ground]
    tables: Mapping[str, Table] = field(default_factory=dict)  # parents before children

    def table(self, name: str) -> Table:
        return self.tables[name]

    @property
    def erase_order(self) -> list[Table]:
        """Children before parents, so foreign keys never block a deletion."""
        return list(reversed(list(self.tables.values())))


def text(labels: Mapping[str, str], language: str | None = None) -> str:
    """The label in the given (or active) language, falling back to Chinese then anything."""
    lang = (language or get_language() or settings.LANGUAGE_CODE).lower()
    for key in (lang, lang.split("-")[0], "zh-hans", "en"):
        if key in labels:
            return labels[key]
    return next(iter(labels.values()), "")


# --- Loading and validating ------------------------------------------------------------


def _labels(raw: Any, where: str) -> dict[str, str]:
    if isinstance(raw, str):
        return {"zh-hans": raw}
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise SourceMapError(f"{where}: expected a text or an object of texts per language")
    return {str(k).lower(): v for k, v in raw.items()}


def _name(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not _NAME.match(raw):
        raise SourceMapError(f"{where}: {raw!r} is not a valid table or column name")
    return raw


def _choice(enum: Any, raw: Any, where: str) -> Any:
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(str(v) for v in enum.values)
        raise SourceMapError(f"{where}: unknown value {raw!r} (one of: {allowed})") from None


def source_map_parse(data: Any, *, path: Path) -> SourceMap:
    """Build a SourceMap from a decoded file, or raise SourceMapError saying what is wrong."""
    f = path.name
    if not isinstance(data, dict):
        raise SourceMapError(f"{f}: the file must hold a JSON object")
    code = data.get("source")
    if not isinstance(code, str) or not re.match(r"^[a-z][a-z0-9_]{0,39}$", code):
        raise SourceMapError(f"{f}: 'source' must be a short lower-case code, got {code!r}")
    database = data.get("database")
    if database not in settings.DATABASES or database in {"default", "keystore"}:
        raise SourceMapError(
            f"{f}: 'database' must name a product database alias in settings.DATABASES "
            f"(not default or keystore), got {database!r}"
        )
    grounds: dict[str, Ground] = {}
    for gcode, g in (data.get("grounds") or {}).items():
        where = f"{f}: grounds.{gcode}"
        if not isinstance(g, dict):
            raise SourceMapError(f"{where}: expected an object")
        years = g.get("years")
        if years is not None and (not isinstance(years, int) or years < 0):
            raise SourceMapError(f"{where}.years: expected a whole number of years")
        grounds[gcode] = Ground(
            gcode,
            _labels(g.get("label"), f"{where}.label"),
            _labels(g.get("law"), f"{where}.law"),
            years,
            bool(g.get("restrict", True)),
        )
    raw_tables = data.get("tables")
    if not isinstance(raw_tables, dict) or not raw_tables:
        raise SourceMapError(f"{f}: 'tables' must be a non-empty object")
    tables: dict[str, Table] = {}
    for tname, t in raw_tables.items():
        where = f"{f}: tables.{tname}"
        _name(tname, where)
        if not isinstance(t, dict):
            raise SourceMapError(f"{where}: expected an object")
        identity = t.get("identity")
        match: dict[str, str] = {}
        parent = parent_column = None
        if isinstance(identity, dict) and "match" in identity:
            if not isinstance(identity["match"], dict) or not identity["match"]:
                raise SourceMapError(f"{where}.identity.match: expected an object of identifier: column")
            for kind, column in identity["match"].items():
                if kind not in IDENTIFIER_KINDS:
                    allowed = ", ".join(IDENTIFIER_KINDS)
                    raise SourceMapError(
                        f"{where}.identity.match: unknown identifier {kind!r} (one of: {allowed})"
                    )
                match[kind] = _name(column, f"{where}.identity.match.{kind}")
        elif isinstance(identity, dict) and "parent" in identity:
            parent = identity["parent"]
            parent_column = _name(identity.get("column"), f"{where}.identity.column")
            if parent not in tables:
                raise SourceMapError(
                    f"{where}.identity.parent: {parent!r} must be a table declared earlier in the file"
                )
        else:
            raise SourceMapError(
                f'{where}.identity: say how rows are found: {{"match": {{"phone": "column"}}}} '
                f'or {{"parent": "table", "column": "column"}}'
            )
        columns: dict[str, Column] = {}
        for cname, c in (t.get("columns") or {}).items():
            cw = f"{where}.columns.{cname}"
            _name(cname, cw)
            if not isinstance(c, dict):
                raise SourceMapError(f"{cw}: expected an object")
            erase = _choice(Erase, c.get("erase"), f"{cw}.erase")
            ground = c.get("ground")
            if erase == Erase.KEEP and ground not in grounds:
                raise SourceMapError(
                    f"{cw}: 'keep' needs a 'ground' declared under 'grounds' (got {ground!r})"
                )
            columns[cname] = Column(
                name=cname,
                category=_choice(Category, c.get("category"), f"{cw}.category"),
                sensitive=bool(c.get("sensitive", False)),
                erase=erase,
                export=_choice(Export, c.get("export", "value"), f"{cw}.export"),
                correctable=bool(c.get("correctable", False)),
                ground=ground if erase == Erase.KEEP else None,
            )
        if not columns:
            raise SourceMapError(f"{where}.columns: map at least one column")
        erases = {c.erase for c in columns.values()}
        if Erase.DELETE in erases and erases != {Erase.DELETE}:
            raise SourceMapError(
                f"{where}: a table whose rows are deleted cannot also keep or update columns "
                f"(every column says 'delete', or none does)"
            )
        not_personal = frozenset(_name(n, f"{where}.not_personal") for n in t.get("not_personal", []))
        pk = _name(t.get("primary_key", "id"), f"{where}.primary_key")
        restrict = t.get("restrict_column")
        if restrict is not None:
            _name(restrict, f"{where}.restrict_column")
        timestamp = t.get("timestamp")
        if timestamp is not None:
            _name(timestamp, f"{where}.timestamp")
            if timestamp in (pk, restrict):
                raise SourceMapError(
                    f"{where}.timestamp: {timestamp!r} must be the column that dates the row, "
                    f"not its key or its restriction stamp"
                )
        overlap = set(columns) & not_personal
        if overlap:
            raise SourceMapError(f"{where}: {sorted(overlap)} are both mapped and listed as not personal")
        tables[tname] = Table(
            name=tname,
            label=_labels(t.get("label", tname), f"{where}.label"),
            purpose=_labels(t.get("purpose"), f"{where}.purpose"),
            origin=_labels(t.get("origin"), f"{where}.origin"),
            pk=pk,
            match=match,
            parent=parent,
            parent_column=parent_column,
            columns=columns,
            not_personal=not_personal,
            restrict_column=restrict,
            timestamp=timestamp,
        )
    return SourceMap(
        code=code,
        name=_labels(data.get("name", code), f"{f}: name"),
        database=str(database),
        path=path,
        note=str(data.get("note", "")),
        grounds=grounds,
        tables=tables,
    )


def source_map_load(path: Path) -> SourceMap:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceMapError(f"{path.name}: cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SourceMapError(f"{path.name}: not valid JSON: {exc}") from exc
    return source_map_parse(data, path=path)


@cache
def _load_dir(directory: str) -> tuple[SourceMap, ...]:
    folder = Path(directory)
    if not folder.is_dir():
        return ()
    maps = [source_map_load(p) for p in sorted(folder.glob("*.json"))]
    codes = [m.code for m in maps]
    dupes = {c for c in codes if codes.count(c) > 1}
    if dupes:
        raise SourceMapError(f"two data-map files declare the same source: {sorted(dupes)}")
    return tuple(maps)


def source_maps() -> tuple[SourceMap, ...]:
    return _load_dir(str(settings.QUANYI_SOURCES_DIR))


def source_map(code: str) -> SourceMap:
    for m in source_maps():
        if m.code == code:
            return m
    raise KeyError(code)


def source_maps_reload() -> None:
    _load_dir.cache_clear()


def schema_problems(source: SourceMap) -> tuple[list[str], list[str]]:
    """Compare a map with the live database: (errors, warnings)."""
    errors: list[str] = []
    warnings: list[str] = []
    connection = connections[source.database]
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
        for table in source.tables.values():
            if table.name not in existing:
                errors.append(
                    f"{source.path.name}: table {table.name!r} does not exist in database {source.database!r}"
                )
                continue
            described = {
                c.name: c for c in connection.introspection.get_table_description(cursor, table.name)
            }
            named = {table.pk, *table.columns, *table.not_personal, *table.match.values()}
            if table.parent_column:
                named.add(table.parent_column)
            if table.restrict_column:
                named.add(table.restrict_column)
            if table.timestamp:
                named.add(table.timestamp)
            for missing in sorted(named - set(described)):
                errors.append(
                    f"{source.path.name}: column {missing!r} does not exist in table {table.name!r} "
                    f"of database {source.database!r}"
                )
            for mapped in table.columns.values():
                info = described.get(mapped.name)
                if info is not None and mapped.erase == Erase.NULL and not info.null_ok:
                    errors.append(
                        f"{source.path.name}: {table.name}.{mapped.name} is NOT NULL, so it cannot be "
                        f"erased by 'null' (use 'mask', 'hash' or 'delete')"
                    )
            if table.timestamp and table.timestamp in described:
                indexed = any(
                    c.get("index") and (c.get("columns") or [None])[0] == table.timestamp
                    for c in connection.introspection.get_constraints(cursor, table.name).values()
                )
                if not indexed:
                    warnings.append(
                        f"{source.path.name}: no index on {table.name} starts with its timestamp "
                        f"{table.timestamp!r}, so retention sweeps read the whole table: "
                        f"CREATE INDEX ... ON {table.name} ({table.timestamp}, {table.pk})"
                    )
            unmapped = set(described) - named
            for other in sorted(unmapped):
                warnings.append(
                    f"{source.path.name}: column {table.name}.{other} is not classified: map it or list it "
                    f"under not_personal"
                )
    return errors, warnings


def sources_check(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """System check: every data-map file parses; and, for the databases the check is asked
    about (`check --database product`, as Django's database checks do), names only tables and
    columns that exist there. Commands that need no product database (makemigrations on a
    fresh checkout) therefore do not fail because its tables are not installed yet."""
    out: list[checks.CheckMessage] = []
    if not Path(settings.QUANYI_SOURCES_DIR).is_dir():
        # Legitimate only where no product data exists; a mistyped path would otherwise make
        # every export and erasure silently skip the product's data.
        out.append(
            checks.Warning(
                f"QUANYI_SOURCES_DIR {str(settings.QUANYI_SOURCES_DIR)!r} is not a folder: no data-map "
                "file is read, so exports and erasures cover no product database.",
                hint="Point QUANYI_SOURCES_DIR at the folder of data-map files.",
                id="quanyi.W101",
            )
        )
    try:
        maps = _load_dir(str(settings.QUANYI_SOURCES_DIR))
    except SourceMapError as exc:
        return [checks.Error(str(exc), hint="Fix the data-map file.", id="quanyi.E101")]
    for source in maps:
        if source.database not in (databases or ()):
            continue
        try:
            errors, warnings = schema_problems(source)
        except DatabaseError as exc:
            out.append(
                checks.Warning(
                    f"{source.path.name}: cannot reach database {source.database!r} to verify the map: {exc}",
                    id="quanyi.W102",
                )
            )
            continue
        out += [
            checks.Error(
                e,
                hint=(
                    "Fix the data-map file or the database. For the demo's sample product database: "
                    "python manage.py sample_product install"
                ),
                id="quanyi.E102",
            )
            for e in errors
        ]
        out += [checks.Warning(w, id="quanyi.W103") for w in warnings]
    return out


# --- Finding a subject's rows ------------------------------------------------------------

Identifiers = Mapping[str, Sequence[str]]  # kind -> normalised values


def identifiers_clean(raw: Mapping[str, Sequence[str | None]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in IDENTIFIER_KINDS:
        values = sorted({normalise(kind, v) for v in raw.get(kind, ()) if v and v.strip()})
        if values:
            out[kind] = values
    return out


def _q(source: SourceMap, name: str) -> str:
    return connections[source.database].ops.quote_name(name)


def _in(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def root_ids(source: SourceMap, table: Table, identifiers: Identifiers) -> list[Any]:
    """Primary keys of the rows of a `match` table that belong to the subject."""
    clauses: list[str] = []
    params: list[Any] = []
    for kind, column in table.match.items():
        values = list(identifiers.get(kind, ()))
        if values:
            clauses.append(f"{_q(source, column)} IN ({_in(values)})")
            params += values
    if not clauses:
        return []
    sql = (
        f"SELECT {_q(source, table.pk)} FROM {_q(source, table.name)} WHERE {' OR '.join(clauses)} ORDER BY 1"  # noqa: S608 - quoted data-map names; values are params
    )
    with connections[source.database].cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class SubjectRows:
    """The primary keys of the subject's rows in each `match` table of a source: everything
    else is reached from these, so they are resolved once and then fixed for the job."""

    source: SourceMap
    roots: Mapping[str, Sequence[Any]]

    @property
    def empty(self) -> bool:
        return not any(self.roots.values())

    def where(self, table: Table) -> tuple[str, list[Any]]:
        """A WHERE clause (and its parameters) selecting the subject's rows of `table`."""
        if table.match:
            ids = list(self.roots.get(table.name, ()))
            if not ids:
                return "1 = 0", []
            return f"{_q(self.source, table.pk)} IN ({_in(ids)})", ids
        assert table.parent and table.parent_column  # noqa: S101 - guaranteed by the parser
        parent = self.source.table(table.parent)
        if parent.match:
            ids = list(self.roots.get(parent.name, ()))
            if not ids:
                return "1 = 0", []
            return f"{_q(self.source, table.parent_column)} IN ({_in(ids)})", ids
        inner, params = self.where(parent)
        sub = f"SELECT {_q(self.source, parent.pk)} FROM {_q(self.source, parent.name)} WHERE {inner}"  # noqa: S608 - quoted data-map names; values are params
        return f"{_q(self.source, table.parent_column)} IN ({sub})", params


def subject_rows(source: SourceMap, identifiers: Identifiers) -> SubjectRows:
    roots = {t.name: root_ids(source, t, identifiers) for t in source.tables.values() if t.match}
    return SubjectRows(source, roots)


def subject_rows_from(source: SourceMap, roots: Mapping[str, Sequence[Any]]) -> SubjectRows:
    """Rebuild from stored root ids (a resumed job must not re-resolve identifiers that the
    erasure itself may already have hashed)."""
    return SubjectRows(
        source, {t.name: list(roots.get(t.name, ())) for t in source.tables.values() if t.match}
    )


def count_rows(rows: SubjectRows, table: Table) -> int:
    where, params = rows.where(table)
    sql = f"SELECT COUNT(*) FROM {_q(rows.source, table.name)} WHERE {where}"  # noqa: S608 - quoted data-map names; values are params
    with connections[rows.source.database].cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.fetchone()[0])


def iter_rows(
    rows: SubjectRows, table: Table, *, columns: Sequence[str] | None = None, batch: int = 2000
) -> Iterator[list[tuple[Any, ...]]]:
    """The subject's rows of `table` in primary-key order, `batch` at a time (keyset
    pagination: memory stays flat however many rows there are). Each tuple starts with the
    primary key, then `columns` (default: the exported columns)."""
    names = list(columns) if columns is not None else [c.name for c in table.exported]
    src = rows.source
    select = ", ".join(_q(src, n) for n in [table.pk, *names])
    where, params = rows.where(table)
    pk = _q(src, table.pk)
    after: Any = None
    while True:
        cond = where if after is None else f"({where}) AND {pk} > %s"
        args = params if after is None else [*params, after]
        sql = f"SELECT {select} FROM {_q(src, table.name)} WHERE {cond} ORDER BY {pk} LIMIT {int(batch)}"  # noqa: S608 - quoted data-map names; values are params
        with connections[src.database].cursor() as cursor:
            cursor.execute(sql, args)
            chunk = [tuple(r) for r in cursor.fetchall()]
        if not chunk:
            return
        yield chunk
        if len(chunk) < batch:
            return
        after = chunk[-1][0]


# --- Erasing ------------------------------------------------------------------------------


def erasure_hash(value: str) -> str:
    """A keyed hash standing in for an erased identifier: equal inputs stay equal (so counts
    and joins in the product still work) but the value cannot be recovered or guessed
    without the key. Prefixed so it is recognised and never hashed twice."""
    key = settings.QUANYI_BLIND_INDEX_KEY.encode()
    digest = hmac.new(key, f"erase:{value}".encode(), hashlib.sha256).hexdigest()[
        :24
    ]  # 96 bits: fits a VARCHAR(32) phone column
    return f"{HASH_PREFIX}{digest}"


def mask_value(value: str) -> str:
    return value[:1] + MASK if value else value


@dataclass(frozen=True)
class BatchResult:
    last_pk: Any  # None when the table had nothing left after the cursor
    rows: int


def key_range(rows: SubjectRows, table: Table) -> tuple[Any, Any]:
    """(lowest key, highest key) of the subject's rows in `table`: both ends of an index."""
    pk = _q(rows.source, table.pk)
    where, params = rows.where(table)
    sql = f"SELECT MIN({pk}), MAX({pk}) FROM {_q(rows.source, table.name)} WHERE {where}"  # noqa: S608 - quoted data-map names; values are params
    with connections[rows.source.database].cursor() as cursor:
        cursor.execute(sql, params)
        lo, hi = cursor.fetchone()
    return lo, hi


def erase_batch(
    rows: SubjectRows, table: Table, *, after: Any = None, limit: int = 5000, upto: Any = None
) -> BatchResult:
    """Erase the next `limit` rows of the subject after primary key `after`, in one
    transaction: delete them, or null / mask / hash the mapped columns (keep leaves a column
    as it is) and stamp `restrict_column` when a kept column's ground restricts processing.

    With `upto`, the batch is the key range (after, upto] instead: no read to find where the
    next `limit` rows end, which is what a caller that knows the subject's keys are dense uses
    (see retention.erasure)."""
    src = rows.source
    alias = src.database
    pk = _q(src, table.pk)
    where, params = rows.where(table)
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        if upto is not None:
            n = -1  # not known before the statements run; their row counts tell
            hi = upto
            in_range = f"({where}) AND {pk} > %s AND {pk} <= %s"
            range_args = [*params, after, upto]
        else:
            cond = where if after is None else f"({where}) AND {pk} > %s"
            args = params if after is None else [*params, after]
            cursor.execute(
                f"SELECT MIN({pk}), MAX({pk}), COUNT(*) FROM (SELECT {pk} FROM {_q(src, table.name)} "  # noqa: S608 - quoted data-map names; values are params
                f"WHERE {cond} ORDER BY {pk} LIMIT {int(limit)}) AS batch",
                args,
            )
            lo, hi, n = cursor.fetchone()
            if not n:
                return BatchResult(None, 0)
            # The batch is the key range [lo, hi] intersected with the subject's rows.
            in_range = f"({where}) AND {pk} >= %s AND {pk} <= %s"
            range_args = [*params, lo, hi]
        if table.deletes_rows:
            cursor.execute(f"DELETE FROM {_q(src, table.name)} WHERE {in_range}", range_args)  # noqa: S608 - quoted data-map names; values are params
            return BatchResult(hi, n if n >= 0 else max(cursor.rowcount, 0))
        sets: list[str] = []
        for column in table.columns.values():
            q = _q(src, column.name)
            if column.erase == Erase.NULL:
                sets.append(f"{q} = NULL")
            elif column.erase == Erase.MASK:
                # substr(x, 1, 1) || '***' is a fixed point: masking twice changes nothing.
                sets.append(f"{q} = CASE WHEN {q} IS NULL THEN NULL ELSE substr({q}, 1, 1) || '{MASK}' END")
        restricts = table.restrict_column and any(
            c.erase == Erase.KEEP and c.ground and src.grounds[c.ground].restrict
            for c in table.columns.values()
        )
        if restricts and table.restrict_column:
            rc = _q(src, table.restrict_column)
            sets.append(f"{rc} = COALESCE({rc}, %s)")
        if sets:
            set_args: list[Any] = []
            if restricts:
                set_args.append(timezone.now())
            cursor.execute(
                f"UPDATE {_q(src, table.name)} SET {', '.join(sets)} WHERE {in_range}",  # noqa: S608 - quoted data-map names; values are params
                [*set_args, *range_args],
            )
            if n < 0:
                n = max(cursor.rowcount, 0)
        hashed = [c.name for c in table.columns.values() if c.erase == Erase.HASH]
        if hashed:
            cols = ", ".join(_q(src, c) for c in hashed)
            cursor.execute(f"SELECT {pk}, {cols} FROM {_q(src, table.name)} WHERE {in_range}", range_args)  # noqa: S608 - quoted data-map names; values are params
            updates: list[list[Any]] = []
            found = cursor.fetchall()
            if n < 0:
                n = len(found)
            for row_pk, *values in found:
                new = [
                    v if v is None or str(v).startswith(HASH_PREFIX) else erasure_hash(str(v)) for v in values
                ]
                if new != list(values):
                    updates.append([*new, row_pk])
            if updates:
                assign = ", ".join(f"{_q(src, c)} = %s" for c in hashed)
                cursor.executemany(f"UPDATE {_q(src, table.name)} SET {assign} WHERE {pk} = %s", updates)  # noqa: S608 - quoted data-map names; values are params
        return BatchResult(hi, max(n, 0))


def column_update(rows: SubjectRows, table: Table, column: str, value: Any, *, pk: Any = None) -> int:
    """Write a corrected value to the subject's rows (or one of them): returns rows changed."""
    if column not in table.columns or not table.columns[column].correctable:
        raise SourceMapError(f"{table.name}.{column} is not correctable")
    src = rows.source
    where, params = rows.where(table)
    if pk is not None:
        where = f"({where}) AND {_q(src, table.pk)} = %s"
        params = [*params, pk]
    with transaction.atomic(using=src.database), connections[src.database].cursor() as cursor:
        cursor.execute(
            f"UPDATE {_q(src, table.name)} SET {_q(src, column)} = %s WHERE {where}",  # noqa: S608 - quoted data-map names; values are params
            [value, *params],
        )
        return int(cursor.rowcount)


# --- Retention: rows past their period ----------------------------------------------------
# A retention sweep walks a table by age, not by subject: through an index on (timestamp,
# pk), in keyset batches, each a range of that key applied in one transaction. Every
# operation only touches rows that still need it (a row already deleted, nulled, masked,
# hashed or restricted no longer matches), so repeating a batch after a crash changes
# nothing more and counts nothing twice; a dry run counts exactly the rows a run would touch.


@dataclass(frozen=True)
class AgedErase:
    """What a retention rule does to the rows of one table past their period. Built by
    `aged_erase` from the map (never from input): column names come from a validated file."""

    source: SourceMap
    table: Table
    delete: bool = False
    nulls: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()
    restrict: bool = False  # stamp restrict_column (PIPL Art. 47: storage and security only)

    @property
    def empty(self) -> bool:
        return not (self.delete or self.nulls or self.masks or self.hashes or self.restrict)

    @property
    def changes_values(self) -> bool:
        return self.delete or bool(self.nulls or self.masks or self.hashes)


def aged_erase(source: SourceMap, table: Table, *, category: str, restrict_only: bool = False) -> AgedErase:
    """The map's strategies for the columns of `category` in `table`: the row is deleted when
    the table's rows are deleted; otherwise the category's columns are nulled, masked or
    hashed, and the row is stamped restricted when one of them is kept on a ground that
    restricts processing. `restrict_only` changes no value and only stamps the row. Empty
    when the table holds nothing of the category, or has no timestamp to age its rows by."""
    columns = [c for c in table.columns.values() if c.category == category]
    if not columns or table.timestamp is None:
        return AgedErase(source, table)
    if restrict_only:
        return AgedErase(source, table, restrict=bool(table.restrict_column))
    if table.deletes_rows:
        return AgedErase(source, table, delete=True)
    restrict = bool(table.restrict_column) and any(
        c.erase == Erase.KEEP and c.ground and source.grounds[c.ground].restrict for c in columns
    )
    return AgedErase(
        source,
        table,
        nulls=tuple(c.name for c in columns if c.erase == Erase.NULL),
        masks=tuple(c.name for c in columns if c.erase == Erase.MASK),
        hashes=tuple(c.name for c in columns if c.erase == Erase.HASH),
        restrict=restrict,
    )


def _hash_pending(spec: AgedErase) -> str:
    # '%%': a literal % in a statement that has parameters.
    return " OR ".join(
        f"({q} IS NOT NULL AND {q} NOT LIKE '{HASH_PREFIX}%%')"
        for q in (_q(spec.source, c) for c in spec.hashes)
    )


def _value_pending(spec: AgedErase) -> str:
    """SQL true for a row with a value the operation would still null, mask or hash."""
    parts = [f"{_q(spec.source, c)} IS NOT NULL" for c in spec.nulls]
    parts += [
        f"({q} IS NOT NULL AND {q} <> substr({q}, 1, 1) || '{MASK}')"
        for q in (_q(spec.source, c) for c in spec.masks)
    ]
    if spec.hashes:
        parts.append(_hash_pending(spec))
    return " OR ".join(parts)


def _restrict_pending(spec: AgedErase) -> str:
    if spec.restrict and spec.table.restrict_column:
        return f"{_q(spec.source, spec.table.restrict_column)} IS NULL"
    return ""


def _aged_pending(spec: AgedErase) -> str:
    """SQL true for a row the operation would still change (empty: every row, a deletion)."""
    if spec.delete:
        return ""
    return " OR ".join(p for p in (_value_pending(spec), _restrict_pending(spec)) if p)


Key = tuple[Any, Any]  # (timestamp, primary key): the sweep's keyset position


def _aged_where(
    spec: AgedErase,
    *,
    before: Any,
    after: Key | None = None,
    upto: Key | None = None,
    exclude: SubjectRows | None = None,
    pending: bool = True,
) -> tuple[str, list[Any]]:
    src, table = spec.source, spec.table
    assert table.timestamp  # noqa: S101 - aged_erase returns an empty spec without one
    ts, pk = _q(src, table.timestamp), _q(src, table.pk)
    # Each row-value bound comes with its timestamp alone as well, and the upper bound of a
    # batch replaces `before` (it is older): SQLite bounds an index range by one scalar
    # comparison per side, and would otherwise read up to `before` for every batch.
    clauses: list[str] = []
    params: list[Any] = []
    if after is not None:
        clauses.append(f"{ts} >= %s AND ({ts}, {pk}) > (%s, %s)")
        params += [after[0], *after]
    if upto is None:
        clauses.append(f"{ts} < %s")
        params.append(before)
    else:
        clauses.append(f"{ts} <= %s AND ({ts}, {pk}) <= (%s, %s)")
        params += [upto[0], *upto]
    still = _aged_pending(spec) if pending else ""
    if still:
        clauses.append(f"({still})")
    if exclude is not None and not exclude.empty:
        held, held_params = exclude.where(table)
        if held_params:  # "1 = 0" (none of the held rows are in this table) needs no clause
            clauses.append(f"NOT ({held})")
            params += held_params
    return " AND ".join(clauses), params


Earlier = Sequence[tuple["AgedErase", Any, "SubjectRows | None"]]


def aged_count(
    spec: AgedErase, *, before: Any, exclude: SubjectRows | None = None, earlier: Earlier = ()
) -> int:
    """How many rows older than `before` the operation would change (a dry run).

    `earlier` lists (operation, before, exclude) that a run applies first; those on the same
    table change what is left to do: rows they delete are gone, and rows they stamp
    restricted need no stamp (categories never share a column, but they share the table's
    restriction stamp). So the count is exactly what a run applying them in that order does."""
    if spec.empty:
        return 0
    where, params = _aged_where(spec, before=before, exclude=exclude)
    prior = [
        (other, b, e)
        for other, b, e in earlier
        if not other.empty and (other.source.code, other.table.name) == (spec.source.code, spec.table.name)
    ]
    if spec.delete:
        for other, b, e in prior:
            if other.delete:
                done, done_params = _aged_where(other, before=b, exclude=e)
                where, params = f"{where} AND NOT ({done})", [*params, *done_params]
    elif spec.restrict and any(other.restrict for other, _b, _e in prior):
        # Rebuild the condition: the values still to change, or the stamp still missing on a
        # row no earlier operation stamps.
        where, params = _aged_where(spec, before=before, exclude=exclude, pending=False)
        stamp, stamp_params = _restrict_pending(spec), list[Any]()
        for other, b, e in prior:
            if other.restrict:
                done, done_params = _aged_where(other, before=b, exclude=e)
                stamp, stamp_params = f"{stamp} AND NOT ({done})", [*stamp_params, *done_params]
        pending = " OR ".join(p for p in (_value_pending(spec), f"({stamp})") if p)
        where, params = f"{where} AND ({pending})", [*params, *stamp_params]
    with connections[spec.source.database].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {_q(spec.source, spec.table.name)} WHERE {where}", params)  # noqa: S608 - quoted data-map names; values are params
        return int(cursor.fetchone()[0])


def aged_any(spec: AgedErase, *, before: Any, exclude: SubjectRows | None = None) -> bool:
    """Whether any row older than `before` still needs the operation."""
    if spec.empty:
        return False
    where, params = _aged_where(spec, before=before, exclude=exclude)
    with connections[spec.source.database].cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {_q(spec.source, spec.table.name)} WHERE {where} LIMIT 1", params)  # noqa: S608 - quoted data-map names; values are params
        return cursor.fetchone() is not None


@dataclass(frozen=True)
class AgedBatch:
    rows: int  # rows changed
    last: Key | None  # where the next batch starts; None when no due row was left after it


def aged_batch(
    spec: AgedErase,
    *,
    before: Any,
    after: Key | None = None,
    limit: int = 5000,
    exclude: SubjectRows | None = None,
) -> AgedBatch:
    """Apply `spec` to the rows, among the next `limit` rows older than `before` after
    `after` in (timestamp, pk) order, that still need it, leaving out the rows of `exclude`;
    in one transaction. The batch is the key range up to its last row: one probe of the index
    alone finds that row (a row's values are read only by the statement that changes the
    range), one statement changes the range."""
    if spec.empty:
        return AgedBatch(0, None)
    src, table = spec.source, spec.table
    assert table.timestamp  # noqa: S101 - an empty spec has returned above
    alias, name = src.database, _q(src, table.name)
    ts, pk = _q(src, table.timestamp), _q(src, table.pk)
    # One statement changes the batch, and one statement is atomic on its own; only hashing
    # (a read, then one update per row) needs a transaction around it.
    atomic = transaction.atomic(using=alias) if spec.hashes else nullcontext()
    with atomic, connections[alias].cursor() as cursor:
        where, params = _aged_where(spec, before=before, after=after, pending=False)
        offset = max(int(limit), 1) - 1
        cursor.execute(
            f"SELECT {ts}, {pk} FROM {name} WHERE {where} ORDER BY {ts}, {pk} LIMIT 1 OFFSET {offset}",  # noqa: S608 - quoted data-map names; values are params
            params,
        )
        found = cursor.fetchone()
        upto: Key | None = (found[0], found[1]) if found else None  # None: the rest is one batch
        where, params = _aged_where(spec, before=before, after=after, upto=upto, exclude=exclude)
        if spec.delete:
            cursor.execute(f"DELETE FROM {name} WHERE {where}", params)  # noqa: S608 - quoted data-map names; values are params
            return AgedBatch(int(cursor.rowcount), upto)
        sets: list[str] = []
        set_args: list[Any] = []
        for column in spec.nulls:
            sets.append(f"{_q(src, column)} = NULL")
        for column in spec.masks:
            q = _q(src, column)
            # substr(x, 1, 1) || '***' is a fixed point: masking twice changes nothing.
            sets.append(f"{q} = CASE WHEN {q} IS NULL THEN NULL ELSE substr({q}, 1, 1) || '{MASK}' END")
        if spec.restrict and table.restrict_column:
            rc = _q(src, table.restrict_column)
            sets.append(f"{rc} = COALESCE({rc}, %s)")
            set_args.append(timezone.now())
        rows = 0
        if sets:
            cursor.execute(f"UPDATE {name} SET {', '.join(sets)} WHERE {where}", [*set_args, *params])  # noqa: S608 - quoted data-map names; values are params
            rows = int(cursor.rowcount)
        if spec.hashes:
            cols = ", ".join(_q(src, c) for c in spec.hashes)
            cursor.execute(
                f"SELECT {pk}, {cols} FROM {name} WHERE {where} AND ({_hash_pending(spec)})",  # noqa: S608 - quoted data-map names; values are params
                params,
            )
            updates = [
                [
                    *(
                        v if v is None or str(v).startswith(HASH_PREFIX) else erasure_hash(str(v))
                        for v in values
                    ),
                    key,
                ]
                for key, *values in cursor.fetchall()
            ]
            if updates:
                assign = ", ".join(f"{_q(src, c)} = %s" for c in spec.hashes)
                cursor.executemany(f"UPDATE {name} SET {assign} WHERE {pk} = %s", updates)  # noqa: S608 - quoted data-map names; values are params
            if not sets:
                rows = len(updates)
        return AgedBatch(rows, upto)
