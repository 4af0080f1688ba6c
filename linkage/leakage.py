"""The leakage check: no identifier value of the inputs in any analyst table.

Every Parquet table in ``analyst/`` is read (found there, not listed), so a new analyst
table is checked without being registered. ``check_leakage`` fails the run on any hit;
its message names tables, columns and counts, never a value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from linkage.config import JobConfig
from linkage.errors import LeakageError
from linkage.sources import lit, q

# --- how values are searched -------------------------------------------------------------------------------
#
# Every analyst table (every Parquet file in analyst/, found there, not listed) is read as
# its columns' distinct values. Each value is searched, by shape, for what could disguise
# an identifier: the whole value, dates in any common layout, PNC IDs and CRO numbers
# (compared on their keys), postcodes with or without their space, e-mail addresses and
# name words. Each is then looked up among the identifier values of the inputs
# (``raw_values(field, v)``: every distinct value of every identifying field, whatever
# the field is called, and the record ids), in one compact spelling: upper case with
# spaces and punctuation removed. So the millions of identifier values are spelt once, by
# ``translate``, and joined with the few thousand candidates; no regex runs over them.
#
# What is a hit: a PNC, CRO or e-mail address, always. A whole value, a name word or two
# name words side by side (short names such as LEE or HO only so, or as a column's
# values) unless many rows share the value (at least 10 rows and 1% of the column's rows:
# a category such as a region, not a person). A date of birth or a postcode, always,
# except in a column whose values are nearly all dates (postcodes, whole numbers): there the
# hits must exceed what chance gives (an event date that is also someone's birthday; a
# court code such as B10JQ spelt like a postcode; a count that equals a numeric record id).

MIN_IDENTIFIER_LENGTH = 4  # whole values and name words shorter than this count only as above
_COMMON_ROWS, _COMMON_SHARE = 10, 0.01  # a value on this many rows and this share is a category
_DOMINANT_VALUES, _DOMINANT_SHARE = 20, 0.9

# Upper case, everything but letters, digits and @ removed: the spelling every comparison
# uses. The regex runs only on values holding a separator (found by ``contains``, several
# times faster): most identifier values (record ids, single names) hold none.
_SEPARATORS = [" ", "/", "-", ".", ",", "'", "’", "`", "_", ":", ";", "(", ")", "#", "\\", "\t", "\n", "\r", "\f", '"']


def _compact(expr: str) -> str:
    guard = " OR ".join(f"contains({expr}, {lit(c) if c.isprintable() else f'chr({ord(c)})'})" for c in _SEPARATORS)
    return (
        f"CASE WHEN {guard} THEN upper(regexp_replace({expr}, '[^\\pL\\pN@]+', '', 'g')) ELSE upper({expr}) END"
    )


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_SEP = r"\s*[-/.]\s*"
# (pattern, SQL building 'Y-M-D' texts from the groups a, b, c of one match)
_DATE_PATTERNS = [
    (rf"(\d{{4}}){_SEP}(\d{{1,2}}){_SEP}(\d{{1,2}})", ["a || '-' || b || '-' || c"]),
    (rf"(\d{{1,2}}){_SEP}(\d{{1,2}}){_SEP}(\d{{4}}|\d{{2}})", ["{y} || '-' || b || '-' || a", "{y} || '-' || a || '-' || b"]),
    (rf"(\d{{1,2}})(?:ST|ND|RD|TH)?[\s./-]*({_MONTHS})[A-Z]*[\s.,/-]*(\d{{4}}|\d{{2}})",
     ["{y} || '-' || lpad(CAST(list_position(['JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC'], b) AS VARCHAR), 2, '0') || '-' || a"]),
    (rf"({_MONTHS})[A-Z]*\.?\s+(\d{{1,2}})(?:ST|ND|RD|TH)?,?\s+(\d{{4}})",
     ["c || '-' || lpad(CAST(list_position(['JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC'], a) AS VARCHAR), 2, '0') || '-' || b"]),
    (r"\b(\d{4})(\d{2})(\d{2})\b", ["a || '-' || b || '-' || c"]),
    (r"\b(\d{2})(\d{2})(\d{4})\b", ["c || '-' || b || '-' || a", "c || '-' || a || '-' || b"]),
]
_PNC_PATTERN = r"(\d{4}|\d{2})\s*/\s*(\d{1,7})\s*([A-Z])|\b(\d{4}|\d{2})(\d{7})([A-Z])\b"
_CRO_PATTERN = r"\b(\d{1,6})\s*/\s*(\d{2})\s*([A-Z])\b"
_SF_CRO_PATTERN = r"\bSF\s*(\d{2})\s*/\s*(\d{1,5})\s*([A-Z])\b"
_POSTCODE_PATTERN = r"\b([A-Z]{1,2}[0-9][A-Z0-9]?)\s*([0-9][A-Z]{2})\b"
_EMAIL_PATTERN = r"[A-Z0-9._%+-]+@[A-Z0-9-]+(\.[A-Z0-9-]+)*\.[A-Z]{2,}"
_CHECK_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"  # the modulus-23 check of PNC and CRO numbers


_CRO_DIGITS = "b || lpad(CAST(CAST(a AS BIGINT) AS VARCHAR), 6, '0')"  # YY + serial of NNNNNN/YYC
_SF_CRO_DIGITS = "a || lpad(CAST(CAST(b AS BIGINT) AS VARCHAR), 5, '0')"  # YY + serial of SFYY/NNNNNC


def _check_letter(digits: str) -> str:
    return f"substr({lit(_CHECK_LETTERS)}, CAST(CAST({digits} AS HUGEINT) % 23 AS INTEGER) + 1, 1)"


def _matches(pattern: str, groups: list[str]) -> str:
    """SQL: (tab, col, v, m, whole, <groups>) for every match of ``pattern`` in analyst values."""
    picks = ", ".join(f"regexp_extract(m, {lit(pattern)}, {i + 1}) AS {g}" for i, g in enumerate(groups))
    return (
        f"SELECT tab, col, v, m, m = v AS whole, {picks} FROM "
        f"(SELECT DISTINCT tab, col, v, unnest(regexp_extract_all(v, {lit(pattern)})) AS m "
        f"FROM analyst_values WHERE regexp_matches(v, {lit(pattern)}))"
    )


def _candidates_sql() -> str:
    """SQL: ``(tab, col, v, kind, whole, key, d)``: what each analyst value could disguise, spelt compact
    (``d``: the date, for dates).

    Kinds: value (the whole value), number (a whole number), date, pnc, cro, postcode,
    email; ``whole`` when the
    match is the whole value. Dates are keyed by each spelling a date of birth could have
    in the inputs (20240131, 31012024, 01312024, 31JAN2024, 31JANUARY2024, 3112024).
    """
    parts = []
    for pattern, layouts in _DATE_PATTERNS:
        for layout in layouts:
            years = ["c"] if "{y}" not in layout else ["CASE WHEN length(c) = 4 THEN c ELSE '19' || c END",
                                                       "CASE WHEN length(c) = 4 THEN c ELSE '20' || c END"]
            for y in years:
                ymd = layout.replace("{y}", f"({y})")
                parts.append(
                    f"SELECT tab, col, v, whole, try_strptime({ymd}, '%Y-%m-%d') AS d FROM ({_matches(pattern, ['a', 'b', 'c'])})"
                )
    dates = " UNION ALL ".join(parts)
    spellings = _date_spellings("d")
    date_keys = (
        f"SELECT tab, col, v, 'date' AS kind, whole, unnest([{spellings}]) AS key, d "
        f"FROM (SELECT DISTINCT tab, col, v, whole, d FROM ({dates}) WHERE d IS NOT NULL)"
    )
    # PNC: compared on (two-digit year, serial, check letter), valid check letters only.
    pnc = (
        "SELECT tab, col, v, whole, right(coalesce(nullif(a, ''), d), 2) AS yy, "
        "CAST(coalesce(nullif(b, ''), e) AS BIGINT) AS serial, coalesce(nullif(c, ''), f) AS letter "
        f"FROM ({_matches(_PNC_PATTERN, ['a', 'b', 'c', 'd', 'e', 'f'])})"
    )
    pnc_keys = (
        "SELECT tab, col, v, 'pnc' AS kind, whole, unnest(list_transform(["
        "yy, '19' || yy, '20' || yy], lambda y: [y || serial || letter, y || lpad(CAST(serial AS VARCHAR), 7, '0') || letter])) "
        "AS keys FROM (" + pnc + ") WHERE letter = " + _check_letter("yy || lpad(CAST(serial AS VARCHAR), 7, '0')")
    )
    pnc_keys = f"SELECT tab, col, v, kind, whole, unnest(keys) AS key FROM ({pnc_keys})"
    cro = (
        f"SELECT tab, col, v, 'cro' AS kind, whole, unnest([CAST(CAST(a AS BIGINT) AS VARCHAR) || b || c, "
        f"lpad(CAST(CAST(a AS BIGINT) AS VARCHAR), 6, '0') || b || c]) AS key "
        f"FROM ({_matches(_CRO_PATTERN, ['a', 'b', 'c'])}) "
        f"WHERE c = {_check_letter(_CRO_DIGITS)}"
    )
    sf_cro = (
        f"SELECT tab, col, v, 'cro' AS kind, whole, unnest(['SF' || a || CAST(CAST(b AS BIGINT) AS VARCHAR) || c, "
        f"'SF' || a || lpad(CAST(CAST(b AS BIGINT) AS VARCHAR), 5, '0') || c]) AS key "
        f"FROM ({_matches(_SF_CRO_PATTERN, ['a', 'b', 'c'])}) "
        f"WHERE c = {_check_letter(_SF_CRO_DIGITS)}"
    )
    postcodes = f"SELECT tab, col, v, 'postcode' AS kind, whole, a || b AS key FROM ({_matches(_POSTCODE_PATTERN, ['a', 'b'])})"
    emails = (
        f"SELECT tab, col, v, 'email' AS kind, whole, {_compact('m')} AS key "
        f"FROM ({_matches(_EMAIL_PATTERN, ['a'])})"
    )
    # The whole value, unless it is all a date or a postcode (judged as one, above), or a
    # month (YYYY-MM, how a coarsened date is read): a month singles out nobody, and spelt
    # compact (201905) it meets a six-digit fragment of some mistyped identifier by chance.
    values = (
        f"SELECT tab, col, v, 'value' AS kind, true AS whole, {_compact('v')} AS key FROM analyst_values "
        f"WHERE length({_compact('v')}) >= {MIN_IDENTIFIER_LENGTH} "
        f"AND NOT regexp_full_match(v, '(19|20)[0-9]{{2}}-(0[1-9]|1[0-2])')"
    )
    # A whole number (a count, a code, a numeric record id): judged as dates are, since
    # record ids that count 1, 2, 3... meet every count and code of a few digits.
    numbers = (
        f"SELECT tab, col, v, 'number' AS kind, true AS whole, v AS key FROM analyst_values "
        f"WHERE regexp_full_match(v, '[0-9]{{{MIN_IDENTIFIER_LENGTH},18}}')"
    )
    others = " UNION ALL ".join([pnc_keys, cro, sf_cro, postcodes, emails, values, numbers])
    return f"{date_keys} UNION ALL SELECT *, CAST(NULL AS TIMESTAMP) AS d FROM ({others})"


def _date_spellings(d: str) -> str:
    """SQL list items: the compact spellings a date of birth ``d`` could have in the inputs."""
    return ", ".join(
        f"strftime({d}, {lit(f)})" if "%b" not in f and "%B" not in f else f"upper(strftime({d}, {lit(f)}))"
        for f in ("%Y%m%d", "%d%m%Y", "%m%d%Y", "%d%b%Y", "%d%B%Y", "%-d%-m%Y")
    )


def _name_words_sql() -> str:
    """SQL: ``(tab, col, v, pos, word)``: the letter words of each analyst value, in order.

    Apostrophes go (O'CONNOR is OCONNOR), accents are stripped, anything else but a
    letter separates words, as for the words of identifier values.
    """
    return (
        "SELECT tab, col, v, generate_subscripts(words, 1) AS pos, unnest(words) AS word FROM ("
        f"SELECT tab, col, v, {_words('v')} AS words FROM analyst_values)"
    )


def _words(expr: str) -> str:
    return (
        f"list_filter(string_split(regexp_replace(strip_accents(translate(upper({expr}), '''’`', '')), "
        f"'[^A-Z]+', ' ', 'g'), ' '), lambda w: w <> '')"
    )


def _identifier_keys_sql(cfg: JobConfig, raw_values: str) -> str:
    """SQL: ``k``, every identifier value (raw values and record ids) spelt compact."""
    ids = [f"SELECT CAST(record_id AS VARCHAR) AS v FROM {q('all_' + name)}" for name in cfg.sources]
    # A number of five digits or fewer (a house number, an Australian postcode, a short code)
    # singles out nobody, and counts, years and bands in analyst tables have its shape.
    return (f"SELECT k FROM (SELECT {_compact('v')} AS k FROM (SELECT v FROM {q(raw_values)} UNION ALL "
            f"{' UNION ALL '.join(ids)})) WHERE NOT regexp_full_match(k, '[0-9]{{1,5}}')")


# A person_name field's name dictionaries in ``raw_values`` (the justice preset has one).
_JUSTICE_NAME_FIELDS = ("first", "middle", "surname", "full")


def _name_fields(cfg: JobConfig) -> list[str]:
    """The ``raw_values`` fields that hold people's names: their words are name words."""
    out = list(_JUSTICE_NAME_FIELDS) if cfg.uses_justice_preset else []
    for name, ftype in cfg.fields.items():
        if getattr(ftype, "of", ftype).type == "name":
            out.append(name)
        elif ftype.type == "person_name":
            out += [f for f in _JUSTICE_NAME_FIELDS if f not in out]
    return out


def build_identifier_values(con: duckdb.DuckDBPyConnection, cfg: JobConfig, raw_values: str = "raw_values") -> int:
    """``identifier_keys(key)`` and ``identifier_words(word)``: the identifier values, compact,
    and their letter words, among the analyst candidates (``analyst_candidates``,
    ``analyst_words``).

    Identifier values: every row of ``raw_values(field, v)`` (every identifying field,
    whatever it is called: sex codes too, which analyst tables hold only as categories
    shared by many rows) and every record id.
    """
    names = ", ".join(lit(f) for f in _name_fields(cfg)) or "NULL"
    raw = [f"SELECT v FROM {q(raw_values)} WHERE field IN ({names})"]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE identifier_keys AS SELECT DISTINCT k AS key FROM "
        f"({_identifier_keys_sql(cfg, raw_values)}) WHERE k IN (SELECT key FROM analyst_candidates)"
    )
    # Words of names (not of addresses or other text, whose words are everyday words: an
    # "ALL" of "ALL SAINTS ROAD" is not a name), each value split once.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE identifier_words AS SELECT DISTINCT word FROM ("
        f"SELECT unnest({_words('v')}) AS word FROM ({' UNION ALL '.join(raw)}) "
        f"WHERE NOT regexp_matches(v, '[0-9]')) WHERE word IN (SELECT word FROM analyst_words)"
    )
    return con.execute("SELECT (SELECT count(*) FROM identifier_keys) + (SELECT count(*) FROM identifier_words)").fetchall()[0][0]


# How a value is compared: upper case, trimmed, runs of white space as one space. The
# regex runs only on values with a run to collapse (found without a regex).
_NORM = (
    "CASE WHEN contains({0}, '  ') OR contains({0}, chr(9)) OR contains({0}, chr(10))"
    " OR contains({0}, chr(12)) OR contains({0}, chr(13))"
    " THEN upper(trim(regexp_replace({0}, '\\s+', ' ', 'g'))) ELSE upper(trim({0})) END"
)


def collect_analyst_values(con: duckdb.DuckDBPyConnection, analyst_dir: Path) -> int:
    """``analyst_values(tab, col, v, n)``: each analyst column's distinct normalised values, with rows.

    Every Parquet table in ``analyst_dir``, every column but the person ids (``person_id``,
    ``person_id_0_99``...), which are checked by their shape. Analyst
    columns hold codes, months, years and counts: a few thousand distinct values against
    millions of identifier values, so the check looks up these, not those.
    """
    parts = []
    for path in sorted(analyst_dir.glob("*.parquet")):
        cols = [r[:2] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall()]
        # A table of counts (the bias tables: a row per group, with its ``records``) weighs each
        # row by the records behind it: a group label on one row of 5,000 records is a category.
        # A suppressed count counts as one record.
        weight = ("sum(coalesce(records, 1))" if dict(cols).get("records") in ("BIGINT", "INTEGER", "HUGEINT")
                  else "count(*)")
        for col, typ in cols:
            if is_pseudonym_column(col):  # checked by shape instead (``_pseudonym_hits``)
                continue
            text = f"CAST({q(col)} AS VARCHAR)"
            if typ == "DATE" and con.execute(
                f"SELECT coalesce(bool_and(day({q(col)}) = 1), false) FROM read_parquet({lit(str(path))})"
            ).fetchall()[0][0]:
                text = f"strftime({q(col)}, '%Y-%m')"  # a month (its first day stands for it), not a date
            parts.append(
                f"SELECT {lit(path.stem)} AS tab, {lit(col)} AS col, {text} AS raw, {weight} AS n "
                f"FROM read_parquet({lit(str(path))}) GROUP BY ALL"
            )
    if not parts:
        con.execute("CREATE OR REPLACE TEMP TABLE analyst_values (tab VARCHAR, col VARCHAR, v VARCHAR, n BIGINT)")
        return 0
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE analyst_values AS SELECT tab, col, {_NORM.format('raw')} AS v, sum(n) AS n "
        f"FROM ({' UNION ALL '.join(parts)}) WHERE raw IS NOT NULL GROUP BY ALL"
    )
    return con.execute("SELECT count(DISTINCT v) FROM analyst_values").fetchall()[0][0]


PSEUDONYM_PATTERN = r"P[0-9a-f]{32}"  # 'P' and 128 bits of HMAC-SHA256 in hex (``linkage.deidentify``)


def is_pseudonym_column(column: str) -> bool:
    """``person_id`` and the ids at other thresholds (``person_id_0_99``)."""
    return column == "person_id" or re.fullmatch(r"person_id_[0-9_]+", column) is not None


def _pseudonym_hits(con: duckdb.DuckDBPyConnection, analyst_dir: Path) -> dict[str, int]:
    """Rows per table.column of a person id column holding anything but a pseudonym: a
    keyed hash has this shape and nothing else does (a record id, a name, a plain key)."""
    hits = {}
    for path in sorted(analyst_dir.glob("*.parquet")):
        for (col,) in con.execute(f"SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet({lit(str(path))}))").fetchall():
            if not is_pseudonym_column(col):
                continue
            n = con.execute(
                f"SELECT count(*) FROM read_parquet({lit(str(path))}) WHERE {q(col)} IS NOT NULL AND NOT "
                f"regexp_full_match(CAST({q(col)} AS VARCHAR), {lit(PSEUDONYM_PATTERN)})"
            ).fetchall()[0][0]
            if n:
                hits[f"{path.stem}.{col}"] = int(n)
    return hits


@dataclass(frozen=True)
class LeakageCheck:
    analyst_values: int  # distinct values in the analyst tables (person ids aside)
    identifier_values: int  # identifier spellings and words among the candidates looked up
    hits: dict[str, int]  # rows per table.column holding an identifier value


def _common(rows: str, col_rows: str) -> str:
    """SQL: a value on so many of its column's rows that it is a category, not a person."""
    return f"({rows} >= {_COMMON_ROWS} AND {rows} >= {_COMMON_SHARE} * {col_rows})"


def _hits(con: duckdb.DuckDBPyConnection, cfg: JobConfig, raw_values: str) -> dict[str, int]:
    """Rows per table.column whose value holds an identifier, by the rules above."""
    common = _common("n", "col_rows")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __lk_cols AS SELECT tab, col, sum(n) AS col_rows, count(*) AS col_values "
        "FROM analyst_values GROUP BY ALL"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __lk_found AS "
        "SELECT DISTINCT c.tab, c.col, c.v, c.kind, c.whole FROM analyst_candidates c "
        "WHERE (c.kind = 'email' OR c.key IN (SELECT key FROM identifier_keys)) "
        # A value that is all a date (postcode) is judged as one.
        "AND NOT (c.kind = 'value' AND (c.tab, c.col, c.v) IN "
        "(SELECT (tab, col, v) FROM analyst_candidates WHERE whole AND kind IN ('date', 'postcode', 'number')))"
    )
    # Name words: a word of at least 4 letters seen on few rows of its column; two name
    # words side by side (any length from 2: OBI Femi, LEE John) in a value on few rows.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __lk_words AS
        SELECT w.*, w.word IN (SELECT word FROM identifier_words) AS is_name, a.n, k.col_rows
        FROM analyst_words w JOIN analyst_values a USING (tab, col, v) JOIN __lk_cols k USING (tab, col)""")
    con.execute(f"""
        INSERT INTO __lk_found
        SELECT DISTINCT tab, col, v, 'name word', false FROM (
            SELECT tab, col, v, word, sum(n) OVER (PARTITION BY tab, col, word) AS n, col_rows
            FROM __lk_words WHERE is_name AND length(word) >= {MIN_IDENTIFIER_LENGTH})
        WHERE NOT {common}
        UNION ALL
        SELECT DISTINCT a.tab, a.col, a.v, 'name pair', false FROM __lk_words a JOIN __lk_words b
            ON a.tab = b.tab AND a.col = b.col AND a.v = b.v AND b.pos = a.pos + 1
        WHERE a.is_name AND b.is_name AND length(a.word) >= 2 AND length(b.word) >= 2 AND NOT {_common('a.n', 'a.col_rows')}""")
    # Short names alone (OBI): counted when most of the column's short words are names.
    con.execute(f"""
        INSERT INTO __lk_found
        SELECT tab, col, v, 'short name', true FROM (
            SELECT tab, col, v, is_name, n, col_rows,
                   avg(CAST(is_name AS INTEGER)) OVER (PARTITION BY tab, col) AS share
            FROM __lk_words w WHERE length(word) BETWEEN 2 AND {MIN_IDENTIFIER_LENGTH - 1}
              AND v = word)
        WHERE is_name AND share >= 0.5 AND NOT {common}""")
    # Whole values and name words count when few rows share them; dates and postcodes
    # when beyond chance; PNC, CRO and e-mail addresses always.
    per_value = "('value', 'name word', 'name pair', 'short name')"
    kinds = con.execute("""
        SELECT tab, col, kind, count(DISTINCT v), any_value(col_values) FROM __lk_found JOIN __lk_cols USING (tab, col)
        WHERE kind IN ('date', 'postcode', 'number') GROUP BY ALL ORDER BY ALL""").fetchall()
    chance = [(tab, col, kind) for tab, col, kind, values, col_values in kinds
              if not _beyond_chance(con, cfg, tab, col, kind, values, col_values, raw_values)]
    con.execute("CREATE OR REPLACE TEMP TABLE __lk_chance (tab VARCHAR, col VARCHAR, kind VARCHAR)")
    if chance:
        con.executemany("INSERT INTO __lk_chance VALUES (?, ?, ?)", chance)
    found = con.execute(f"""
        SELECT tab, col, sum(n) FROM (
            SELECT DISTINCT f.tab, f.col, f.v, a.n FROM __lk_found f
            JOIN analyst_values a USING (tab, col, v) JOIN __lk_cols k USING (tab, col)
            WHERE CASE WHEN f.kind IN {per_value} THEN NOT {_common('a.n', 'k.col_rows')}
                       ELSE (f.tab, f.col, f.kind) NOT IN (SELECT (tab, col, kind) FROM __lk_chance) END)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    return {f"{tab}.{col}": int(rows) for tab, col, rows in found}


def _beyond_chance(con, cfg: JobConfig, tab: str, col: str, kind: str, hit_values: int, col_values: int, raw_values: str) -> bool:
    """Whether a column's date (postcode, number) hits count: always, unless the column's
    values are nearly all dates (postcodes, numbers); then only when more than chance gives.

    Chance: the share p of the days of the column's span that some spelling of an
    identifier value falls on (a date of birth, or one with day and month swapped)
    (for postcodes, the inputs' postcodes over the 1.7 million spellings of the rarest
    layout, A9 9AA; for numbers, the share of the column's range that are identifier values);
    the hits count when above n·p + 3·sqrt(n·p·(1-p)) + 1.
    """
    shaped = con.execute(
        "SELECT count(DISTINCT v) FROM analyst_candidates WHERE tab = ? AND col = ? AND kind = ? AND whole",
        [tab, col, kind],
    ).fetchall()[0][0]
    if shaped < _DOMINANT_VALUES or shaped < _DOMINANT_SHARE * col_values:
        return True
    if kind == "date":
        lo, hi = con.execute(
            "SELECT min(d), max(d) FROM analyst_candidates WHERE tab = ? AND col = ? AND kind = 'date' AND whole",
            [tab, col],
        ).fetchall()[0]
        if lo is None:
            return True
        # The days of the span that some spelling of an identifier value falls on.
        days = "SELECT range AS d FROM range(CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP) + INTERVAL 1 DAY, INTERVAL 1 DAY)"
        p = con.execute(
            f"WITH days AS ({days}), spelt AS (SELECT d, unnest([{_date_spellings('d')}]) AS k FROM days) "
            f"SELECT count(DISTINCT d) FILTER (WHERE k IN (SELECT k FROM ({_identifier_keys_sql(cfg, raw_values)}) "
            f"WHERE k IN (SELECT k FROM spelt))) / count(DISTINCT d) FROM spelt",
            [lo, hi],
        ).fetchall()[0][0]
    elif kind == "number":
        lo, hi = con.execute(
            "SELECT min(CAST(v AS HUGEINT)), max(CAST(v AS HUGEINT)) FROM analyst_candidates "
            "WHERE tab = ? AND col = ? AND kind = 'number'", [tab, col],
        ).fetchall()[0]
        within = con.execute(
            f"SELECT count(DISTINCT TRY_CAST(k AS HUGEINT)) FROM ({_identifier_keys_sql(cfg, raw_values)}) "
            f"WHERE length(k) BETWEEN {len(str(lo))} AND {len(str(hi))} AND TRY_CAST(k AS HUGEINT) BETWEEN ? AND ?",
            [lo, hi],
        ).fetchall()[0][0]
        p = min(1.0, within / (hi - lo + 1))
    else:
        postcodes = con.execute(
            f"SELECT count(*) FROM {q(raw_values)} WHERE regexp_full_match(upper(trim(v)), {lit(_POSTCODE_PATTERN)})"
        ).fetchall()[0][0]
        p = min(1.0, postcodes / 1_757_600)
    expected = shaped * p
    return hit_values > expected + 3 * math.sqrt(expected * (1 - p)) + 1


def check_leakage(
    con: duckdb.DuckDBPyConnection, cfg: JobConfig, analyst_dir: Path, raw_values: str = "raw_values"
) -> LeakageCheck:
    """Hits per table.column of any identifier value in any analyst table; raise on any hit.

    The message names tables, columns and counts, never the values.
    """
    n_analyst = collect_analyst_values(con, analyst_dir)
    con.execute(f"CREATE OR REPLACE TEMP TABLE analyst_candidates AS {_candidates_sql()}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE analyst_words AS {_name_words_sql()}")
    n_identifiers = build_identifier_values(con, cfg, raw_values)
    hits = {**_hits(con, cfg, raw_values), **_pseudonym_hits(con, analyst_dir)}
    if hits:
        listed = ", ".join(f"{k} ({v} rows)" for k, v in sorted(hits.items()))
        raise LeakageError(
            f"leakage check failed: identifier values from the inputs appear in analyst tables: {listed}. "
            "Nothing was published. Remove or coarsen those columns under sources.<name>.carry."
        )
    return LeakageCheck(n_analyst, n_identifiers, hits)
