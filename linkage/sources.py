"""Read each extract as its config describes, check it, and map it onto the person schema.

Every extract lands in the job's DuckDB database as ``raw_<source>`` (all columns as
text, plus ``_row``, the 1-based data row number, header excluded). Whole-extract
problems (missing file or column, empty extract, duplicate record ids, a date column
no format reads) stop the job with one ``InputError`` naming file, column and rows.
Single bad rows are rejected with a reason into the ``rejects`` table and never dropped
silently. Error messages name files, columns, row numbers and counts, never values.

CSV is read as RFC 4180 with the dialect the source config sets (delimiter, quote,
escape, encoding), nothing guessed per file: quoted fields may hold delimiters, doubled
quotes and line breaks; a row that does not parse is a rejected row with its number.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from linkage.config import LoadedConfig, SourceConfig, check_against_data, needed_columns
from linkage.errors import ConfigError, InputError
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


# The characters (absent from a file) that stand in for its blank lines: DuckDB's reader
# skips blank lines without counting them as rows but does count them in the line numbers
# it gives rejected rows, so a file with blank lines inside is copied with each blank line
# marked, to keep every row's number right.
_MARKERS = ("\x1c", "\x1d", "\x1e", "\x1f")

# DuckDB reads these encodings itself; any other is transcoded to UTF-8 first.
_NATIVE_ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "iso8859-1": "latin-1"}

# A row longer than this is rejected (a field too long), not read.
MAX_LINE_BYTES = 2_000_000

# A header name shown in a message looks like an identifier: a value (a surname, a date)
# of a first line that is really data must never be printed.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_VALUE_LIKE = re.compile(r"^\s*$|^[-+]?[\d\s.,/:-]*\d[\d\s.,/:-]*$|@|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")

# Parquet column types that are not one value per cell (or not text): refused when named.
_NOT_SCALAR = ("STRUCT", "MAP", "UNION")
_BINARY = ("BLOB", "BYTEA", "BIT", "BITSTRING", "VARBINARY")


_SURROGATE = re.compile("[\udc80-\udcff]")


class _EmptyFile(Exception):
    pass


class _BlankFirstLine(Exception):
    pass


@dataclass(frozen=True)
class Loaded:
    """What loading one extract found: rows rejected as unparseable, and the file's checksum."""

    parse_rejected: int
    checksum: str


@dataclass(frozen=True)
class _FileScan:
    sha256: str
    blank_inside: bool  # a blank line with more rows after it
    marker: str | None  # a marker character absent from the file


def _scan_file(path: Path) -> _FileScan:
    """One pass over the bytes: the checksum, and whether blank lines sit between rows."""
    h = hashlib.sha256()
    blank_seen = inside = False
    tail = b""
    absent = {m.encode() for m in _MARKERS}
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            absent = {m for m in absent if m not in block}
            if not inside:
                if blank_seen:
                    inside = bool(block.strip(b"\r\n"))
                else:
                    edge = tail + block[:2]
                    at = 0 if (b"\n\n" in edge or b"\n\r\n" in edge) else _first_blank_line(block)
                    if at >= 0:
                        blank_seen = True
                        inside = bool(block[at:].strip(b"\r\n"))
                tail = block[-2:]
    marker = next((m for m in _MARKERS if m.encode() in absent), None)
    return _FileScan(h.hexdigest(), inside, marker)


def _first_blank_line(block: bytes) -> int:
    """Where the first blank line (``\\n\\n`` or ``\\n\\r\\n``) in ``block`` starts, or -1.

    With numpy: ``bytes.find`` of a two-byte pattern is four times slower on text where
    every line ends in one of its bytes.
    """
    import numpy as np  # here, not at the top: ``linkage find`` never scans a file

    a = np.frombuffer(block, np.uint8)
    ends = np.flatnonzero(a == 10)
    if len(ends) < 2:
        return -1
    gaps = np.diff(ends)
    blank = (gaps == 1) | ((gaps == 2) & (a[np.minimum(ends[:-1] + 1, len(a) - 1)] == 13))
    hits = np.flatnonzero(blank)
    return int(ends[hits[0]]) if len(hits) else -1


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _escape(src: SourceConfig) -> str:
    return src.escape if src.escape is not None else src.quote


def _codec(src: SourceConfig) -> str:
    return codecs.lookup(src.encoding).name


def _csv_header(src: SourceConfig, path: Path) -> list[str]:
    """The header's fields as written, parsed with the source's dialect (never guessed)."""
    escape = _escape(src)
    encoding = "utf-8-sig" if _codec(src) == "utf-8" else src.encoding
    # Bytes the encoding cannot read stay as surrogates here, so a bad byte in a later row
    # does not fail the header; in the header itself it does (its names are checked).
    with path.open(encoding=encoding, errors="surrogateescape", newline="") as f:
        reader = csv.reader(
            f, delimiter=src.delimiter, quotechar=src.quote, strict=True,
            doublequote=escape == src.quote, escapechar=None if escape == src.quote else escape,
        )
        for record in reader:
            if record:
                if any(_SURROGATE.search(field) for field in record):
                    raise UnicodeDecodeError(encoding, b"", 0, 1, "the header line is not valid text")
                return record
            if any(rec for rec in reader):
                raise _BlankFirstLine
            break
    raise _EmptyFile


def _clean_names(fields: list[str]) -> list[str]:
    """Header names without surrounding spaces; a blank name becomes ``column<N>`` (its field)."""
    names = [f.strip() for f in fields]
    taken = {n.lower() for n in names}
    for i, n in enumerate(names):
        if not n:
            new = f"column{i + 1}"
            while new.lower() in taken:
                new += "_"
            taken.add(new.lower())
            names[i] = new
    return names


def _header_problems(name: str, src: SourceConfig, path: Path, names: list[str],
                     types: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems with the file, columns the config names that are missing) for one header.

    No name is shown that could be a value: when the first line holds none of the
    configured columns it is data (the header line is missing) and no name is shown at
    all; otherwise only names that look like identifiers are.
    """
    needed = needed_columns(src)
    configured = {col for _, col in needed}
    have = set(names)
    where = f"sources.{name}"
    if not configured & have:
        looks = sum(1 for n in names if _VALUE_LIKE.search(n))
        why = (f"{looks} of its {len(names)} fields look like values (dates, numbers or blanks)" if looks
               else f"it has {len(names)} fields")
        return [
            f"{where}: the first line of {path.name} holds none of the {len(configured)} columns the config "
            f"names, and {why}: the header line looks like data or is missing (its names are not shown, as "
            "the line may be a record). The first line must be the header."
        ], []
    problems = []

    def shown(col: str) -> str:
        return repr(col) if col in configured or _IDENTIFIER.fullmatch(col) else "(name not shown)"

    if any(n.lower() == "_row" for n in names):
        problems.append(f"{where}: {path.name} has a column named '_row', a name linkage keeps for row numbers. "
                        "Rename it in the export.")
    fields: dict[str, list[int]] = {}
    for i, n in enumerate(names, 1):
        fields.setdefault(n.lower(), []).append(i)
    for positions in fields.values():
        if len(positions) > 1:
            col = names[positions[0] - 1]
            problems.append(
                f"{where}: column {shown(col)} appears {len(positions)} times in the header of {path.name} "
                f"(fields {', '.join(map(str, positions))}; names are compared without case). "
                "Each column needs its own name: rename the copies in the export."
            )
    for key, col in needed:
        kind = _not_scalar_kind(types.get(col, ""))
        if col in have and kind:
            problems.append(
                f"{where}.{key}: column {col!r} in {path.name} is a {kind} column; linkage reads one text, "
                "number or date per cell. Flatten it or convert it to text in the export."
            )
    safe = [n for n in names if n in configured or _IDENTIFIER.fullmatch(n)]
    listed = ", ".join(safe[:12]) + (", ..." if len(safe) > 12 else "")
    hidden = len(names) - len(safe)
    if hidden:
        listed += f"; {hidden} other name{'s' if hidden > 1 else ''} not shown"
    missing = [
        f"{where}.{key}: column {col!r} not found in {path.name} (has: {listed}). Fix the column name in the config."
        for key, col in needed if col not in have
    ]
    return problems, missing


def _not_scalar_kind(duck_type: str) -> str | None:
    t = duck_type.upper()
    for kind in _NOT_SCALAR:
        if t.startswith(kind):
            return kind
    if t.endswith("]"):
        return "LIST"
    if t in _BINARY:
        return "BLOB" if t != "BIT" else "BIT"
    return None


def _not_utf8_hint(name: str, src: SourceConfig) -> str:
    if _codec(src) in ("utf-8", "utf-8-sig"):
        return (f"the file is not UTF-8. Set its encoding in the config, for example sources.{name}.encoding: "
                "latin-1 (or cp1252 for Windows exports)")
    return f"the file is not {src.encoding}. Check sources.{name}.encoding"


def read_headers(loaded: LoadedConfig, data_dir: Path | None) -> dict[str, tuple[Path, list[str]]]:
    """The column names of every extract; one error listing every missing or unreadable file,
    header that looks like data, repeated header name or unusable column."""
    con = duckdb.connect()
    headers, problems, missing = {}, [], []
    for name, src in loaded.config.sources.items():
        path = loaded.source_path(name, data_dir)
        where = f"sources.{name}.path"
        if not path.is_file():
            problems.append(f"{where}: file not found: {path}")
            continue
        if path.stat().st_size == 0:
            problems.append(f"{where}: {path}: the file is empty (0 bytes). Check the export.")
            continue
        types: dict[str, str] = {}
        try:
            if src.file_format == "parquet":
                described = con.execute(f"DESCRIBE SELECT * FROM {_scan_sql(src, path)}").fetchall()
                names = [r[0] for r in described]
                types = {r[0]: r[1] for r in described}
            else:
                names = _clean_names(_csv_header(src, path))
        except _EmptyFile:
            problems.append(f"{where}: {path}: the file is empty (no header line). Check the export.")
            continue
        except _BlankFirstLine:
            problems.append(f"{where}: {path}: the first line is blank; the header must be the first line.")
            continue
        except UnicodeDecodeError:
            problems.append(f"{where}: {path}: the header line cannot be read: {_not_utf8_hint(name, src)}.")
            continue
        except csv.Error as exc:
            problems.append(f"{where}: {path}: the header line cannot be parsed as CSV ({_first_line(exc)}).")
            continue
        except duckdb.Error as exc:
            problems.append(f"{where}: {path} cannot be read as {src.file_format}: {_first_line(exc)}")
            continue
        found, absent = _header_problems(name, src, path, names, types)
        problems += found
        missing += absent
        headers[name] = (path, names)
    if problems:
        lines = problems + missing
        raise InputError("\n".join([f"{loaded.path}: {len(lines)} problem(s) with the extracts",
                                    *("  " + p for p in lines)]))
    if missing:
        raise ConfigError(str(loaded.path), missing)
    return headers


def _first_line(exc: Exception) -> str:
    # DuckDB's CSV errors quote the offending line; keep only the first line, which
    # names the problem, not the data.
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _rows_list(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:ROWS_SHOWN])
    return shown + (", ..." if len(rows) > ROWS_SHOWN else "")


def _scan_sql(src: SourceConfig, path: Path, names: list[str] | None = None, encoding: str = "utf-8",
              rejects: str | None = None) -> str:
    """The scan of an extract: Parquet as is; CSV with the configured dialect, nothing sniffed,
    every column text, rows that do not parse kept in ``rejects`` (a table name)."""
    if src.file_format == "parquet":
        return f"read_parquet({lit(str(path))})"
    if names is None:
        names = _clean_names(_csv_header(src, path))
    columns = "{" + ", ".join(f"{lit(n)}: 'VARCHAR'" for n in names) + "}"
    keep = (f", store_rejects=true, rejects_table={lit(rejects)}, rejects_scan={lit(rejects + '_scan')}"
            if rejects else "")
    return (
        f"read_csv({lit(str(path))}, header=true, auto_detect=false, strict_mode=true, columns={columns}, "
        f"delim={lit(src.delimiter)}, quote={lit(src.quote)}, escape={lit(_escape(src))}, "
        f"encoding={lit(encoding)}, max_line_size={MAX_LINE_BYTES}{keep})"
    )


def _temp_dir(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        folder = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    except duckdb.Error:
        return None
    return folder if folder and Path(folder).is_dir() else None


def _utf8_copy(src: SourceConfig, path: Path, marker: str | None, folder: str | None) -> Path:
    """A UTF-8 copy of the extract (owner-only, in the job's temp folder) with each blank
    line replaced by ``marker``. Bytes the encoding cannot read are carried over as they
    are, so that the reader reports their rows."""
    encoding = "utf-8-sig" if _codec(src) == "utf-8" else src.encoding
    fd, name = tempfile.mkstemp(prefix=".linkage-read-", suffix=".csv", dir=folder)
    with open(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as out, \
            path.open(encoding=encoding, errors="surrogateescape", newline="") as f:
        for line in f:
            if marker is not None and line in ("\n", "\r\n", "\r"):
                line = marker + line
            out.write(line)
    return Path(name)


# Why DuckDB rejected a row, in words; the counts come from its message, never a value.
_REASON_SQL = """CASE error_type
    WHEN 'TOO MANY COLUMNS' THEN 'more fields than the header (' || regexp_extract(error_message, 'Found: (\\d+)', 1)
        || ' for ' || regexp_extract(error_message, 'Expected Number of Columns: (\\d+)', 1)
        || '): a delimiter in a value that is not quoted?'
    WHEN 'MISSING COLUMNS' THEN 'fewer fields than the header (' || regexp_extract(error_message, 'Found: (\\d+)', 1)
        || ' for ' || regexp_extract(error_message, 'Expected Number of Columns: (\\d+)', 1) || ')'
    WHEN 'UNQUOTED VALUE' THEN 'a quoted field is not closed properly (text after its closing quote, or a quote '
        || 'never closed, which takes in the rows after it)'
    WHEN 'LINE SIZE OVER MAXIMUM' THEN 'the row is longer than {max_bytes} bytes: a field too long'
    WHEN 'INVALID ENCODING' THEN 'not valid text in the configured encoding'
    ELSE 'cannot be parsed as CSV (' || lower(error_type) || ')' END"""
_REASON_ORDER = ("CASE error_type WHEN 'INVALID ENCODING' THEN 0 WHEN 'UNQUOTED VALUE' THEN 1 "
                 "WHEN 'LINE SIZE OVER MAXIMUM' THEN 2 ELSE 3 END")


def load_source(con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, path: Path) -> Loaded:
    """Copy the extract into a table with every column as text; ``raw_<name>`` adds ``_row``.

    ``_row`` is the record's row in the extract (1 for the first after the header; a row
    is a CSV record, so a quoted line break does not start a new one; blank lines are
    not rows). Rows that do not parse (more or fewer fields than the header, a quote not
    closed, a row too long) go to ``rejects`` with their row and the reason; a file in
    another encoding than the configured one is refused.

    Without rejected rows the table keeps the file's order (DuckDB preserves insertion
    order), so ``_row`` is the table's row id plus one. Numbering with
    ``row_number() OVER ()`` instead ran on one thread.
    """
    if src.file_format == "parquet":
        _load_parquet(con, name, src, path)
        return Loaded(0, file_sha256(path))
    try:
        names = _clean_names(_csv_header(src, path))
    except (_EmptyFile, _BlankFirstLine, UnicodeDecodeError, csv.Error):
        raise InputError(f"{path}: the header line is missing or cannot be read. Check the export.") from None
    scan = _scan_file(path)
    native = _NATIVE_ENCODINGS.get(_codec(src))
    # A transcoded copy is made anyway: mark its blank lines too (the byte scan does not
    # see them in UTF-16).
    marker = scan.marker if scan.blank_inside or native is None else None
    copy = _utf8_copy(src, path, marker, _temp_dir(con)) if native is None or marker else None
    table = q("extract_" + name)
    bad, rej, numbered_tmp = (q(f"__lk_{kind}_{name}") for kind in ("bad", "rej", "numbered"))
    rej_name = f"__lk_rej_{name}"
    try:
        con.execute(f"DROP TABLE IF EXISTS {rej}")
        con.execute(f"DROP TABLE IF EXISTS {q(rej_name + '_scan')}")
        scan_sql = _scan_sql(src, copy or path, names, "utf-8" if copy else str(native), rejects=rej_name)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {scan_sql}")
        except duckdb.Error as exc:
            raise InputError(f"{path}: cannot be read as csv ({_first_line(exc)})") from None
        blank = f"trim(csv_line, chr(13) || chr(10)) = {lit(marker)}" if marker else "false"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {bad} AS SELECT line - 1 AS _row, bool_or({blank}) AS blank, "
            f"bool_or(error_type = 'INVALID ENCODING') AS encoding, "
            f"arg_min({_REASON_SQL.format(max_bytes=f'{MAX_LINE_BYTES:,}')}, {_REASON_ORDER}) AS reason "
            f"FROM {rej} GROUP BY line"
        )
        not_text = [r[0] for r in con.execute(
            f"SELECT _row FROM {bad} WHERE encoding ORDER BY _row LIMIT {ROWS_SHOWN + 1}").fetchall()]
        if not_text:
            n = con.execute(f"SELECT count(*) FROM {bad} WHERE encoding").fetchall()[0][0]
            raise InputError(f"{path}: {n} row(s) are not valid text (rows {_rows_list(not_text)}): "
                             f"{_not_utf8_hint(name, src)}.")
        n_bad = con.execute(f"SELECT count(*) FROM {bad}").fetchall()[0][0]
        # A column called rowid would hide the row id: number those extracts the slow way.
        rowid_hidden = any(c.lower() == "rowid" for c in names)
        if n_bad or marker:
            _number_rows(con, table, bad, numbered_tmp, names, marker)
            con.execute(f"DROP TABLE {table}")
            con.execute(f"ALTER TABLE {numbered_tmp} RENAME TO {table}")
            row = ""
        elif rowid_hidden:
            con.execute(f"CREATE OR REPLACE TABLE {numbered_tmp} AS SELECT row_number() OVER () AS _row, * FROM {table}")
            con.execute(f"DROP TABLE {table}")
            con.execute(f"ALTER TABLE {numbered_tmp} RENAME TO {table}")
            row = ""
        else:
            row = "rowid + 1 AS _row, "
        con.execute(f"CREATE OR REPLACE TEMP VIEW {q('raw_' + name)} AS SELECT {row}* FROM {table}")
        con.execute(REJECTS_DDL)
        con.execute(f"INSERT INTO rejects SELECT {lit(name)}, NULL, _row, reason FROM {bad} WHERE NOT blank")
        rejected = con.execute(f"SELECT count(*) FROM {bad} WHERE NOT blank").fetchall()[0][0]
        return Loaded(rejected, scan.sha256)
    finally:
        for t in (bad, rej, q(rej_name + "_scan"), numbered_tmp):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        if copy is not None:
            copy.unlink(missing_ok=True)


def _number_rows(con: duckdb.DuckDBPyConnection, parsed: str, bad: str, table: str, names: list[str],
                 marker: str | None) -> None:
    """Number the parsed rows around the rejected ones (and the marked blank lines).

    The reader gives each rejected row's number and keeps the good rows in file order:
    good row k (1-based) is row k + j, where j counts the rejected rows before it, that
    is the largest j whose rejected row r_j has r_j - j < k good rows before it.
    """
    k = "row_number() OVER ()" if any(c.lower() == "rowid" for c in names) else "rowid + 1"
    cols = ", ".join(
        f"replace({q(c)}, {lit(marker)}, '') AS {q(c)}" if marker else q(c) for c in names
    )
    # A one-column extract reads a marked blank line as a row holding the marker.
    only_marker = f"WHERE g.{q(names[0])} IS DISTINCT FROM {lit(marker)}" if marker and len(names) == 1 else ""
    con.execute(
        f"CREATE OR REPLACE TABLE {table} AS "
        f"WITH b AS (SELECT _row - row_number() OVER (ORDER BY _row) AS before, "
        f"row_number() OVER (ORDER BY _row) AS j FROM {bad}), "
        f"t AS (SELECT before, max(j) AS j FROM b GROUP BY before), "
        f"g AS (SELECT {k} AS k, * FROM {parsed}) "
        f"SELECT g.k + coalesce(t.j, 0) AS _row, {cols} FROM g ASOF LEFT JOIN t ON g.k > t.before "
        f"{only_marker} ORDER BY _row"
    )


def _load_parquet(con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, path: Path) -> None:
    scan = _scan_sql(src, path)
    named = {col for _, col in needed_columns(src)}
    # Nested and binary columns the config does not name are left out (named ones are refused).
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
            if r[0] in named or not _not_scalar_kind(r[1])]
    as_text = ", ".join(f"CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in cols)
    table = q("extract_" + name)
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


def check_source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    src: SourceConfig,
    path: Path,
    date_fields: list[tuple[str, list[str], str | None, str]] | None = None,
) -> None:
    """Whole-extract checks: empty, duplicate record ids, unreadable date columns.

    Every problem of the extract is raised together in one ``InputError``.
    """
    raw = q("raw_" + name)
    n = con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0]
    if n == 0:
        unparsed = con.execute(
            f"SELECT reason, count(*) FROM rejects WHERE source_dataset = {lit(name)} GROUP BY ALL ORDER BY 2 DESC"
        ).fetchall() if _has_rejects(con) else []
        if unparsed:
            total = sum(c for _, c in unparsed)
            reasons = "; ".join(f"{c} row(s): {r}" for r, c in unparsed[:3])
            raise InputError(f"{path}: none of the {total} rows of source '{name}' can be read as CSV ({reasons}). "
                             f"Check the export and the source's delimiter, quote and escape.")
        raise InputError(f"{path}: the extract for source '{name}' has no rows. Check the export.")
    problems = []
    # The same trimming as the crosswalk's record ids (map_source), so that ids differing
    # only by surrounding spaces count as the same id.
    rid = f"nullif(trim({q(src.record_id)}), '')"
    dup_rows = [
        r[0]
        for r in con.execute(
            f"SELECT _row FROM (SELECT _row, count(*) OVER (PARTITION BY {rid}) AS n FROM {raw} "
            f"WHERE {rid} IS NOT NULL) WHERE n > 1 ORDER BY _row LIMIT {ROWS_SHOWN + 1}"
        ).fetchall()
    ]
    if dup_rows:
        n_dup = con.execute(
            f"SELECT count(*) FROM (SELECT count(*) OVER (PARTITION BY {rid}) AS n FROM {raw} "
            f"WHERE {rid} IS NOT NULL) WHERE n > 1"
        ).fetchall()[0][0]
        problems.append(
            f"{path}: column {src.record_id!r} (the record id) repeats: {n_dup} rows share an id with "
            f"another row (rows {_rows_list(dup_rows)}), ids compared without surrounding spaces. "
            "Each record needs its own id."
        )
    # What standardisation can read, judged by standardisation itself.
    if date_fields is None:  # the justice preset's date fields
        date_fields = [(f, list(src.date_formats), src.list_separator if f == "alias_dates_of_birth" else None,
                        f"sources.{name}.date_formats") for f in DATE_FIELDS if f in src.columns]
    for field, formats, separator, fix in date_fields:
        col = src.columns[field]
        table, column = raw, col
        if separator is not None:
            table = (f"(SELECT _row, split_part({q(col)}, {lit(separator)}, 1) AS first_listed_date "
                     f"FROM {raw})")
            column = "first_listed_date"
        check = date_parse_failures(con, table, column, formats)
        if check.present and check.share >= UNREADABLE_DATE_SHARE:
            bad = date_parse_failure_keys(con, table, column, formats, "_row", ROWS_SHOWN + 1)
            problems.append(
                f"{path}: column {col!r} ({field}) is unreadable with date_formats {formats}: "
                f"{check.failed} of {check.present} non-empty values fail (rows {_rows_list(bad)}). "
                f"Fix {fix}."
            )
    if problems:
        raise InputError("\n".join(problems))


def _has_rejects(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rejects'").fetchall()[0][0])


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
    # A table, trimmed once: the rejects, the record hashes, standardising and the leakage
    # check's record ids all read it (as a view, each trimmed every field again: about
    # 3 s of CPU at a million records).
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {q('all_' + name)} AS "
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
    """Read, check and map every source. Config-vs-data problems are all reported together,
    and so are the problems of every extract (unreadable dates in two sources: both named)."""
    headers = read_headers(loaded, data_dir)
    check_against_data(loaded, headers)
    loads, problems = {}, []
    for name, src in loaded.config.sources.items():
        path, _ = headers[name]
        try:
            loads[name] = load_source(con, name, src, path)
            check_source(con, name, src, path, loaded.config.date_fields(name))
        except InputError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError("\n".join([f"{loaded.path}: {len(problems)} extracts cannot be used",
                                    *("  " + line for p in problems for line in p.splitlines())]))
    out = {}
    for name, src in loaded.config.sources.items():
        path, cols = headers[name]
        rejected = map_source(con, name, src, loaded.config.person_fields)
        # Rows read: those parsed plus those rejected as unparseable (already in rejects).
        rows = con.execute(f"SELECT count(*) FROM {q('raw_' + name)}").fetchall()[0][0] + loads[name].parse_rejected
        out[name] = SourceRead(name, path, rows, rejected, loads[name].checksum, cols)
    return out
