"""Read each extract as its config describes, check it, and map it onto the person schema.

Every extract lands in the job's DuckDB database as ``raw_<source>`` (all columns as
text, plus ``_row``, the 1-based data row number, header excluded). Whole-extract
problems (missing file or column, empty extract, duplicate record ids, a date column
no format reads) stop the job with one ``InputError`` naming file, column and rows.
Single bad rows are rejected with a reason into the ``rejects`` table and never dropped
silently. Error messages name files, columns, row numbers and counts, never values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from linkage.config import LoadedConfig, SourceConfig, check_against_data
from linkage.errors import InputError
from linkage.schema import DATE_FIELDS, PERSON_FIELDS
from linkage.standardise import date_parse_failure_keys, date_parse_failures

# A date column is unreadable (wrong format in the config) when at least this share of
# its non-empty values fails every configured format.
UNREADABLE_DATE_SHARE = 0.5

# Rows of a whole-extract problem to name in a message.
ROWS_SHOWN = 10

_NOTHING_TO_LINK_JUSTICE = "no name, date of birth or reference number"
_NOTHING_TO_LINK = "no value in any field the job links on"

REJECTS_DDL = """
CREATE TABLE IF NOT EXISTS rejects (
    source_dataset VARCHAR, record_id VARCHAR, _row BIGINT, reason VARCHAR
)"""


@dataclass(frozen=True)
class SourceRead:
    name: str
    path: Path
    rows_read: int
    rows_rejected: int
    checksum: str
    columns: list[str]


def q(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + value.replace("'", "''") + "'"


def _scan_sql(src: SourceConfig, path: Path) -> str:
    if src.file_format == "parquet":
        return f"read_parquet({lit(str(path))})"
    return (
        f"read_csv({lit(str(path))}, header=true, all_varchar=true, delim={lit(src.delimiter)}, "
        "strict_mode=false, null_padding=true, encoding='utf-8')"
    )


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_headers(loaded: LoadedConfig, data_dir: Path | None) -> dict[str, tuple[Path, list[str]]]:
    """The column names of every extract; one error listing every missing or unreadable file."""
    con = duckdb.connect()
    headers, problems = {}, []
    for name, src in loaded.config.sources.items():
        path = loaded.source_path(name, data_dir)
        if not path.is_file():
            problems.append(f"sources.{name}.path: file not found: {path}")
            continue
        try:
            cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_scan_sql(src, path)}").fetchall()]
        except duckdb.Error as exc:
            problems.append(f"sources.{name}.path: {path} cannot be read as {src.file_format}: {_first_line(exc)}")
            continue
        headers[name] = (path, cols)
    if problems:
        raise InputError("\n".join([f"{loaded.path}: {len(problems)} extract(s) cannot be read", *("  " + p for p in problems)]))
    return headers


def _first_line(exc: Exception) -> str:
    # DuckDB's CSV errors quote the offending line; keep only the first line, which
    # names the problem, not the data.
    return str(exc).splitlines()[0][:200]


def _rows_list(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:ROWS_SHOWN])
    return shown + (", ..." if len(rows) > ROWS_SHOWN else "")


def load_source(con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, path: Path) -> None:
    """Copy the extract into a table with every column as text; ``raw_<name>`` adds ``_row``.

    ``_row`` is the record's row in the extract (1 for the first after the header): the
    table keeps the file's order (DuckDB preserves insertion order), so it is the table's
    row id plus one. Numbering with ``row_number() OVER ()`` instead ran on one thread.
    """
    scan = _scan_sql(src, path)
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
    as_text = ", ".join(f"CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in cols)
    table = q("extract_" + name)
    # A column called rowid would hide the row id: number those extracts the slow way.
    numbered = any(c.lower() == "rowid" for c in cols)
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS "
            f"SELECT {'row_number() OVER () AS _row, ' if numbered else ''}{as_text} FROM {scan}"
        )
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot be read as {src.file_format} ({_first_line(exc)})") from None
    row = "" if numbered else "rowid + 1 AS _row, "
    con.execute(f"CREATE OR REPLACE TEMP VIEW {q('raw_' + name)} AS SELECT {row}* FROM {table}")


def check_source(con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, path: Path) -> None:
    """Whole-extract checks: empty, duplicate record ids, unreadable date columns."""
    raw = q("raw_" + name)
    n = con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0]
    if n == 0:
        raise InputError(f"{path}: the extract for source '{name}' has no rows. Check the export.")
    rid = q(src.record_id)
    dup_rows = [
        r[0]
        for r in con.execute(
            f"SELECT _row FROM (SELECT _row, count(*) OVER (PARTITION BY {rid}) AS n FROM {raw} "
            f"WHERE nullif(trim({rid}), '') IS NOT NULL) WHERE n > 1 ORDER BY _row LIMIT {ROWS_SHOWN + 1}"
        ).fetchall()
    ]
    if dup_rows:
        n_dup = con.execute(
            f"SELECT count(*) FROM (SELECT count(*) OVER (PARTITION BY {rid}) AS n FROM {raw} "
            f"WHERE nullif(trim({rid}), '') IS NOT NULL) WHERE n > 1"
        ).fetchall()[0][0]
        raise InputError(
            f"{path}: column {src.record_id!r} (the record id) repeats: {n_dup} rows share an id with "
            f"another row (rows {_rows_list(dup_rows)}). Each record needs its own id."
        )
    # What standardisation can read, judged by standardisation itself.
    for field in DATE_FIELDS:
        col = src.columns.get(field)
        if col is None:
            continue
        table, column = raw, col
        if field == "alias_dates_of_birth":
            table = (f"(SELECT _row, split_part({q(col)}, {lit(src.list_separator)}, 1) AS first_alias_date "
                     f"FROM {raw})")
            column = "first_alias_date"
        check = date_parse_failures(con, table, column, list(src.date_formats))
        if check.present and check.share >= UNREADABLE_DATE_SHARE:
            bad = date_parse_failure_keys(con, table, column, list(src.date_formats), "_row", ROWS_SHOWN + 1)
            raise InputError(
                f"{path}: column {col!r} ({field}) is unreadable with date_formats {src.date_formats}: "
                f"{check.failed} of {check.present} non-empty values fail (rows {_rows_list(bad)}). "
                f"Fix sources.{name}.date_formats."
            )


def map_source(
    con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, person_fields: tuple[str, ...] = PERSON_FIELDS
) -> int:
    """Define ``mapped_<name>`` (source_dataset, record_id, _row, every field of the job as text:
    the justice preset's person fields and/or the declared fields, NULL where unmapped).

    Rows that cannot be linked are moved to ``rejects`` with a reason. Returns how many.
    """
    raw = q("raw_" + name)
    fields = ", ".join(
        f"nullif(trim({q(src.columns[f])}), '') AS {q(f)}" if f in src.columns else f"CAST(NULL AS VARCHAR) AS {q(f)}"
        for f in person_fields
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {q('all_' + name)} AS "
        f"SELECT {lit(name)} AS source_dataset, nullif(trim({q(src.record_id)}), '') AS record_id, _row, {fields} "
        f"FROM {raw}"
    )
    linkable = [f for f in person_fields if f != "sex"] or list(person_fields)
    identifying = " AND ".join(f"{q(f)} IS NULL" for f in linkable)
    reason = (
        f"CASE WHEN record_id IS NULL THEN 'record id is empty' "
        f"WHEN {identifying} THEN {lit(_NOTHING_TO_LINK if person_fields != PERSON_FIELDS else _NOTHING_TO_LINK_JUSTICE)} END"
    )
    con.execute(REJECTS_DDL)
    con.execute(
        f"INSERT INTO rejects SELECT source_dataset, record_id, _row, reason FROM "
        f"(SELECT *, {reason} AS reason FROM {q('all_' + name)}) WHERE reason IS NOT NULL"
    )
    # A view: standardising reads it once, into its own table; a copy here cost a second.
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {q('mapped_' + name)} AS SELECT * FROM {q('all_' + name)} "
        f"WHERE NOT (record_id IS NULL OR ({identifying}))"
    )
    return con.execute(f"SELECT count(*) FROM rejects WHERE source_dataset = {lit(name)}").fetchall()[0][0]


def read_sources(
    con: duckdb.DuckDBPyConnection, loaded: LoadedConfig, data_dir: Path | None
) -> dict[str, SourceRead]:
    """Read, check and map every source. Config-vs-data problems are all reported together."""
    headers = read_headers(loaded, data_dir)
    check_against_data(loaded, headers)
    out = {}
    for name, src in loaded.config.sources.items():
        path, cols = headers[name]
        load_source(con, name, src, path)
        check_source(con, name, src, path)
        rejected = map_source(con, name, src, loaded.config.person_fields)
        rows = con.execute(f"SELECT count(*) FROM {q('raw_' + name)}").fetchall()[0][0]
        out[name] = SourceRead(name, path, rows, rejected, _sha256(path), cols)
    return out
