"""Standardise a job's declared fields: each field's type cleans each distinct raw value once.

For a field ``f`` of type T, the distinct raw values of ``f`` (list elements, for a list)
go through T's stage plan into a dictionary ``(k raw, v value, why reason, keys...)``, which
is joined back to the rows; so the cost follows the distinct values, not the rows, as in
the justice standardiser. Values with characters outside ASCII are transliterated in
Python first (for the types that ask), and Python keys (phonetic codes) are computed over
distinct values only.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import duckdb
from anyascii import anyascii

from linkage.standardise.sql import ident as _ident
from linkage.standardise.sql import install_macros
from linkage.standardise.sql import q as _q
from linkage.standardise.sql import staged as _staged
from linkage.standardise.sql import table_from_lists
from linkage.standardise.types import CleanContext, DateType, FieldType, ListType, PersonNameType, SetType


@dataclass(frozen=True)
class FieldsResult:
    """Counts only (safe to log): field -> reason -> values made missing."""

    invalid: dict[str, dict[str, int]]
    # With ``as_view``: the views and tables the output view reads, for the caller to drop
    # (views first) once it has read it.
    leftovers: tuple[str, ...] = ()


def declared_columns(fields: dict[str, FieldType]) -> dict[str, str]:
    """Every column the declared fields add to the records, with its DuckDB type."""
    out: dict[str, str] = {}
    for name, ftype in fields.items():
        if isinstance(ftype, SetType):
            first = fields.get(ftype.union[0])
            element = first.value_type.removesuffix("[]") if first is not None else "VARCHAR"
            out[name] = element + "[]"
        else:
            out.update(ftype.column_names(name))
    return out


def input_fields(fields: dict[str, FieldType]) -> list[str]:
    """The fields a source may map: every declared field's inputs, in order."""
    return [i for name, ftype in fields.items() for i in ftype.inputs(name)]


def _dictionary(
    con: duckdb.DuckDBPyConnection, name: str, ftype: FieldType, values_sql: str, ctx: CleanContext, table: str
) -> list[str]:
    """Build ``table(k, v, why, <suffix>...)`` over the distinct non-NULL values of
    ``values_sql`` (one column ``x``). Returns the key suffixes."""
    base = f"SELECT DISTINCT x FROM ({values_sql}) WHERE lk_nz(x) IS NOT NULL"
    source = f"SELECT x AS k, x FROM ({base})"
    registered = None
    if ftype.transliterate_raw:
        odd = [r[0] for r in con.execute(f"SELECT x FROM ({base}) WHERE regexp_matches(x, '[^\\x00-\\x7F]')").fetchall()]
        if odd:
            registered = f"__lk_tr_{abs(hash(table)) % 10**8}"
            table_from_lists(con, registered, {"k": odd, "t": [anyascii(v) for v in odd]})
            source = (f"SELECT b.x AS k, coalesce(CAST(tr.t AS VARCHAR), b.x) AS x FROM ({base}) b "
                      f"LEFT JOIN {registered} tr ON tr.k = b.x")
    keys = ftype.made_keys()
    steps = ftype.clean("x", ctx) + [(f"key_{k.suffix}", k.sql) for k in keys]
    key_cols = "".join(f", CAST(key_{k.suffix} AS {k.sql_type}) AS {_ident('key_' + k.suffix)}" for k in keys)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT k, CAST(v AS {ftype.value_type}) AS v, why{key_cols} "
            f"FROM ({_staged(source, steps)})"
        )
    finally:
        if registered:
            con.execute(f"DROP TABLE IF EXISTS {_ident(registered)}")
    suffixes = [k.suffix for k in keys]
    py = ftype.made_python_keys()
    if py:
        values = [r[0] for r in con.execute(f"SELECT DISTINCT v FROM {table} WHERE v IS NOT NULL").fetchall()]
        columns = {"v": values, **{"key_" + suffix: [fn(v) for v in values] for suffix, fn in py.items()}}
        table_from_lists(con, "__lk_pykeys", columns, {"v": ftype.value_type})
        try:
            cols = ", ".join(f"CAST(p.{_ident('key_' + s)} AS VARCHAR) AS {_ident('key_' + s)}" for s in py)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT d.*, {cols} FROM {table} d "
                        f"LEFT JOIN __lk_pykeys p ON p.v = d.v")
        finally:
            con.execute("DROP TABLE IF EXISTS __lk_pykeys")
        suffixes += list(py)
    return suffixes


def standardise_fields(
    con: duckdb.DuckDBPyConnection,
    source_table: str,
    out_table: str,
    fields: dict[str, FieldType],
    *,
    date_formats: list[str],
    list_separator: str = ";",
    today: _dt.date | None = None,
    as_view: bool = False,
    companions: bool = True,
    unmapped: frozenset[str] = frozenset(),
) -> FieldsResult:
    """Standardise the declared ``fields`` of ``source_table`` into ``out_table``.

    ``source_table`` has ``source_dataset``, ``record_id`` and one text column per input
    field (:func:`input_fields`; NULL where a source does not map it). Writes
    ``out_table(source_dataset, record_id, <field>, <key columns>...)`` (one row per input
    row), ``{out_table}_invalid`` (source_dataset, record_id, field, reason, raw_value: every
    present value made missing) and ``{out_table}_raw_values(field, v)`` (every distinct raw
    value of each identifying field, for the leakage check).

    ``as_view``: ``out_table`` is a temp view over the cleaned dictionaries, which are kept
    (``FieldsResult.leftovers``) until the caller has read it once into its own table: the
    job's records are then written once, not copied from a table of their own.

    ``companions=False`` (``linkage find``'s few records): ``out_table`` alone, the same
    records, without ``_invalid`` and ``_raw_values`` (no counts returned).

    ``unmapped``: fields whose inputs the source does not map (every value missing); their
    columns are NULL of their types, as cleaning no value gives them, without the cleaning's
    SQL (planning it is most of the cost for a few records). Not for a person-name field.
    """
    install_macros(con)
    ctx = CleanContext(tuple(date_formats), (today or _dt.date.today()).isoformat())
    src = f"__lk_fsrc_{out_table}"
    # a date in parts is cleaned as one raw value, its parts' text composed (``DateType.composed_sql``)
    composed = "".join(f", {t.composed_sql(_ident)} AS {_ident(n)}" for n, t in fields.items()
                       if isinstance(t, DateType) and t.parts)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {src} AS SELECT source_dataset, record_id, "
                + ", ".join(f"CAST({_ident(f)} AS VARCHAR) AS {_ident(f)}" for f in input_fields(fields))
                + f"{composed} FROM {source_table}")
    selects, joins, invalid_parts, raw_parts, temp = [], [], [], [], [src]
    sets: dict[str, SetType] = {}
    views: list[str] = []
    # The rows the records' query reads: the source's, with each person-name field's
    # columns added in turn (a view over the previous rows).
    rows = f"SELECT rowid AS __lk_rid, * FROM {src}"
    for i, (name, ftype) in enumerate(fields.items()):
        col = _ident(name)
        table = f"__lk_fd_{out_table}_{i}"
        temp.append(table)
        if isinstance(ftype, SetType):
            sets[name] = ftype
            continue
        if name in unmapped and not isinstance(ftype, PersonNameType):
            selects += [f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in ftype.column_names(name).items()]
            continue
        if isinstance(ftype, PersonNameType):
            built = ftype.build(con, src, name, list_separator, f"__lk_fp_{out_table}_{i}", rows)
            temp += built.temp
            views.insert(0, built.table)  # a later view reads this one: dropped first
            rows = f"SELECT * FROM {built.table}"
            selects += [f"s.{_ident(built.column(c))} AS {_ident(c)}" for c in built.columns]
            invalid_parts += built.invalid_sql
            if ftype.is_identifying:
                raw_parts += built.raw_sql
            continue
        if isinstance(ftype, ListType):
            elems = f"__lk_fe_{out_table}_{i}"
            agg = f"__lk_fa_{out_table}_{i}"
            temp += [elems, agg]
            sep = _q(ftype.separator or list_separator)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {elems} AS SELECT * FROM (SELECT rowid AS rid, source_dataset, record_id, "
                f"trim(unnest(string_split({col}, {sep}))) AS x FROM {src} WHERE {col} IS NOT NULL) "
                "WHERE lk_nz(x) IS NOT NULL"
            )
            _dictionary(con, name, ftype.of, f"SELECT x FROM {elems}", ctx, table)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {agg} AS SELECT e.rid, "
                f"nullif(list_sort(list_distinct(list(d.v))), []) AS v FROM {elems} e JOIN {table} d ON d.k = e.x "
                "GROUP BY ALL"
            )
            selects.append(f"CAST(a{i}.v AS {ftype.value_type}) AS {col}")
            joins.append(f"LEFT JOIN {agg} a{i} ON a{i}.rid = s.__lk_rid")
            invalid_parts.append(
                f"SELECT e.source_dataset, e.record_id, {_q(name)} AS field, d.why AS reason, e.x AS raw_value "
                f"FROM {elems} e JOIN {table} d ON d.k = e.x WHERE d.why IS NOT NULL"
            )
        else:
            suffixes = _dictionary(con, name, ftype, f"SELECT {col} AS x FROM {src}", ctx, table)
            selects.append(f"d{i}.v AS {col}")
            selects += [f"d{i}.{_ident('key_' + s)} AS {_ident(ftype.key_column(name, s))}" for s in suffixes]
            joins.append(f"LEFT JOIN {table} d{i} ON d{i}.k = s.{col}")
            invalid_parts.append(
                f"SELECT s.source_dataset, s.record_id, {_q(name)} AS field, d.why AS reason, s.{col} AS raw_value "
                f"FROM {src} s JOIN {table} d ON d.k = s.{col} WHERE d.why IS NOT NULL"
            )
        if ftype.is_identifying:
            raw_parts.append(f"SELECT {_q(name)} AS field, k AS v FROM {table}")
    columns = declared_columns(fields)
    made = ("SELECT s.source_dataset, s.record_id" + "".join(", " + s for s in selects)
            + f" FROM ({rows}) s " + " ".join(joins))
    if sets:  # made from the other fields, then every column in declaration order
        made = ("SELECT source_dataset, record_id, " + ", ".join(_ident(c) for c in columns) + " FROM (SELECT *, "
                + ", ".join(f"{t.sql(columns)} AS {_ident(n)}" for n, t in sets.items()) + f" FROM ({made}))")
    con.execute(f"CREATE OR REPLACE {'TEMP VIEW' if as_view else 'TABLE'} {out_table} AS {made}")
    if not companions:
        if as_view:
            return FieldsResult({}, tuple(views) + tuple(temp))
        _drop(con, views, temp)
        return FieldsResult({})
    no_rows = "SELECT CAST(NULL AS VARCHAR) AS {}, CAST(NULL AS VARCHAR) AS {} WHERE false"
    invalid = " UNION ALL ".join(invalid_parts) or (
        "SELECT CAST(NULL AS VARCHAR) AS source_dataset, CAST(NULL AS VARCHAR) AS record_id, "
        "CAST(NULL AS VARCHAR) AS field, CAST(NULL AS VARCHAR) AS reason, CAST(NULL AS VARCHAR) AS raw_value WHERE false")
    con.execute(f"CREATE OR REPLACE TABLE {out_table}_invalid AS {invalid}")
    con.execute(f"CREATE OR REPLACE TABLE {out_table}_raw_values AS "
                + (" UNION ALL ".join(raw_parts) if raw_parts else no_rows.format("field", "v")))
    counts: dict[str, dict[str, int]] = {}
    for field, reason, n in con.execute(
        f"SELECT field, reason, count(*) FROM {out_table}_invalid GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        counts.setdefault(field, {})[reason] = int(n)
    if as_view:
        return FieldsResult(counts, tuple(views) + tuple(temp))
    _drop(con, views, temp)
    return FieldsResult(counts)


def _drop(con: duckdb.DuckDBPyConnection, views: list[str], tables: list[str]) -> None:
    for v in views:
        con.execute(f"DROP VIEW IF EXISTS {v}")
    for t in tables:
        con.execute(f"DROP TABLE IF EXISTS {t}")
