"""The analyst zone: pseudonymous person ids, coarsened columns, suppressed summaries.

Only this module writes ``analyst/``. Analysts get, per source, ``person_id`` and the
non-identifying columns the config carries (coarsened as it says); a persons table; and a
linkage summary with small counts suppressed. ``person_id`` is HMAC-SHA256 of the
internal person key under a secret held outside code, config and data; the manifest
records the key's fingerprint only. ``check_leakage`` scans every analyst table for any
identifier value present in the inputs and fails the run on a hit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from linkage.config import JobConfig, SourceConfig
from linkage.errors import LeakageError, LinkageError
from linkage.sources import lit, q

KEY_ENV = "LINKAGE_PSEUDONYM_KEY"
# A key must carry at least this much entropy (estimated conservatively from its
# characters, never its bytes): 32 random hex characters, or 22 random base64 characters.
MIN_KEY_BITS = 128
MIN_KEY_LENGTH = 16  # characters; shorter keys are refused before any estimate
PERSON_ID_HEX = 32  # 128 bits of the HMAC
# The key fingerprint: PBKDF2-HMAC-SHA256 of the key with this fixed salt and iteration
# count (documented in README; keep both, or manifests from earlier runs stop matching).
FINGERPRINT_SALT = b"linkage pseudonym key fingerprint v2"
FINGERPRINT_ITERATIONS = 600_000
KEY_ADVICE = 'python3 -c "import secrets; print(secrets.token_hex(32))"'

# Parts of keys that people type: each counts as a few characters' worth, not its length.
_COMMON_WORDS = (
    "password", "passwd", "secret", "linkage", "pseudonym", "letmein", "qwerty", "azerty", "admin",
    "welcome", "changeme", "default", "example", "test", "key", "pass", "login", "master", "dragon",
    "monkey", "football", "iloveyou", "sunshine", "princess", "justice", "prison", "probation",
    "police", "court", "crown", "london", "summer", "winter", "spring", "autumn", "hello",
)


def key_entropy_bits(key: str) -> float:
    """A conservative estimate of the entropy of ``key``, counted over characters.

    The alphabet is what the key's characters suggest (16 when all are hex digits, else
    the sum of the classes used: lower case, upper case, digits, ASCII punctuation and
    space, other characters). Only unpredictable characters count: from the fourth
    character of a run (``aaaa``, ``1234``, ``dcba``), the letters of a common word after
    its first, and the end of a stretch of four characters seen before count nothing; in a
    passphrase (words between spaces, hyphens, dots or underscores) a letter counts 2 bits.

    >>> round(key_entropy_bits("0f" * 16))
    8
    >>> key_entropy_bits("7c1e4a09b2d85f36e0a7c94b1d2e8f53") >= 128
    True
    """
    if not key:
        return 0.0
    if all(c in "0123456789abcdef" for c in key) or all(c in "0123456789ABCDEF" for c in key):
        alphabet = 16
    else:
        alphabet = 0
        alphabet += 26 if any("a" <= c <= "z" for c in key) else 0
        alphabet += 26 if any("A" <= c <= "Z" for c in key) else 0
        alphabet += 10 if any(c.isdigit() and c.isascii() for c in key) else 0
        alphabet += 33 if any(c.isascii() and not c.isalnum() for c in key) else 0
        alphabet += 100 if any(not c.isascii() for c in key) else 0
    predictable = [False] * len(key)
    lower = key.lower()
    for word in _COMMON_WORDS:
        for m in re.finditer(re.escape(word), lower):
            for i in range(m.start() + 1, m.end()):  # the word's first character counts
                predictable[i] = True
    for i in range(3, len(key)):
        # the fourth character on of a run such as aaaa, 1234 or dcba (random keys rarely
        # hold one: shorter runs are left to chance)
        steps = {ord(key[j]) - ord(key[j - 1]) for j in range(i - 2, i + 1)}
        if len(steps) == 1 and abs(next(iter(steps))) <= 1:
            predictable[i] = True
    for i in range(4, len(key)):
        # a stretch of four or more characters seen before (period repeats, copied parts)
        if key[i - 3 : i + 1] in key[: i]:
            predictable[i] = True
    # A passphrase of words (most of the key in one-case letter pieces between spaces,
    # hyphens, dots or underscores): English words carry about 2 bits a letter, not 4.7.
    pieces = [m for m in re.finditer(r"[^\s._-]+", key) if re.fullmatch(r"[a-z]{3,}|[A-Z][a-z]{2,}|[A-Z]{3,}", m.group())]
    word_letters = {i for m in pieces for i in range(m.start(), m.end())}
    if len(re.split(r"[\s._-]+", key.strip())) >= 2 and len(word_letters) >= 0.6 * len(key):
        per_char = [0.0 if p else (2.0 if i in word_letters else math.log2(alphabet)) for i, p in enumerate(predictable)]
        return sum(per_char)
    unpredictable = sum(not p for p in predictable)
    return unpredictable * math.log2(alphabet)


def check_key_strength(secret: str, origin: str) -> None:
    """Refuse a key that is too short or too predictable; the message never holds the key."""
    advice = (
        f"Use at least {MIN_KEY_BITS} bits of randomness: 32 or more random hex characters, or 22 or "
        f"more random base64 characters (for example: {KEY_ADVICE})."
    )
    if len(secret) < MIN_KEY_LENGTH:
        raise LinkageError(
            f"the pseudonymisation key in {origin} is empty or shorter than {MIN_KEY_LENGTH} characters. {advice}"
        )
    bits = key_entropy_bits(secret)
    if bits < MIN_KEY_BITS:
        raise LinkageError(
            f"the pseudonymisation key in {origin} is too predictable: about {int(bits)} bits of entropy "
            f"(repeated characters, runs such as 1234, common words and repeated parts count for nothing), "
            f"fewer than the {MIN_KEY_BITS} needed. {advice}"
        )


@dataclass(frozen=True)
class PseudonymKey:
    secret: bytes
    origin: str  # where it came from, for messages: never the key itself

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the key without revealing it: releases with equal fingerprints can be joined.

        PBKDF2-HMAC-SHA256 with a fixed salt and 600,000 iterations, computed once per key:
        testing one guessed key against a fingerprint costs as much as 600,000 HMACs.
        """
        return hashlib.pbkdf2_hmac("sha256", self.secret, FINGERPRINT_SALT, FINGERPRINT_ITERATIONS).hex()[:16]

    def matches_fingerprint(self, fingerprint: str | None) -> bool:
        """Whether ``fingerprint`` (from a manifest) is this key's, today's or the one before (v1).

        Runs made before the fingerprint became PBKDF2 recorded a single HMAC; a run can
        still take its ids from them.
        """
        if not fingerprint:
            return False
        legacy = hmac.new(self.secret, b"linkage key fingerprint v1", hashlib.sha256).hexdigest()[:16]
        return hmac.compare_digest(fingerprint, self.fingerprint) or hmac.compare_digest(fingerprint, legacy)

    def pseudonym(self, person_key: str) -> str:
        return "P" + hmac.new(self.secret, person_key.encode(), hashlib.sha256).hexdigest()[:PERSON_ID_HEX]


def resolve_key(key_file: str | None, config_dir: Path, *, throwaway: bool = False) -> PseudonymKey:
    """The pseudonymisation secret: the config's key file, else ``LINKAGE_PSEUDONYM_KEY``.

    The key is checked as text (characters, not bytes) for length and entropy.
    """
    if throwaway:
        return PseudonymKey(os.urandom(32), "a throwaway key (demo only)")
    if key_file:
        path = Path(key_file).expanduser()
        path = path if path.is_absolute() else config_dir / path
        if not path.is_file():
            raise LinkageError(
                f"outputs.key_file: {path} does not exist. Create it with a long random secret "
                f"(for example: {KEY_ADVICE} > {path})."
            )
        try:
            text = path.read_bytes().decode("utf-8").strip()
        except UnicodeDecodeError:
            raise LinkageError(
                f"outputs.key_file: {path} is not UTF-8 text. Write the key as text (for example: {KEY_ADVICE} > {path})."
            ) from None
        origin = f"key file {path}"
    else:
        text = os.environ.get(KEY_ENV, "").strip()
        origin = f"environment variable {KEY_ENV}"
        if not text:
            raise LinkageError(
                f"no pseudonymisation key: set {KEY_ENV} to a long random secret (for example: "
                f"export {KEY_ENV}=$({KEY_ADVICE})), "
                "or name a key file under outputs.key_file. Keep it out of the config and the data."
            )
    check_key_strength(text, origin)
    return PseudonymKey(text.encode(), origin)


def _hmac_pads(secret: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer padded keys (RFC 2104), for HMAC-SHA256 built from plain SHA-256."""
    block = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    block = block.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def add_pseudonyms(con: duckdb.DuckDBPyConnection, table: str, key: PseudonymKey, out: str) -> None:
    """``out``: ``table`` plus ``person_id``, the pseudonym of its ``person_key`` column.

    Equal to ``PseudonymKey.pseudonym`` (HMAC-SHA256, tested), computed by DuckDB:
    SHA-256(outer || SHA-256(inner || key)). The padded keys are bound parameters, so the
    secret is in no SQL text, view or table.
    """
    inner, outer = _hmac_pads(key.secret)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {q(out)} AS SELECT *, "
        f"'P' || left(sha256($outer || unhex(sha256($inner || encode(person_key)))), {PERSON_ID_HEX}) AS person_id "
        f"FROM {q(table)}",
        {"inner": inner, "outer": outer},
    )


# --- analyst tables ----------------------------------------------------------------------


_INTEGER = r"-?(0|[1-9][0-9]{0,17})"  # no leading zeros: 02 is a code, kept as text
_DECIMAL = r"-?(0|[1-9][0-9]{0,14})\.[0-9]{1,6}"
MAX_AGE = 120  # an age at an event beyond this is impossible


@dataclass(frozen=True)
class CarriedColumn:
    """One analyst column made from a carried column, and how it was made (for the dictionary)."""

    name: str
    expr: str  # SQL over raw_<source> (alias raw)
    source_column: str
    coarsening: str  # keep, year, month, postcode_district, postcode_area
    kind: str  # integer, number, string, year, month


def _carry_column(con: duckdb.DuckDBPyConnection, source: str, col: str, how: str, src: SourceConfig) -> CarriedColumn:
    """The analyst column for a carried column, typed: whole numbers and decimals written
    without leading zeros become numbers, years integers, months dates (the first day of
    the month standing for the month); anything else stays text."""
    v = f"nullif(trim(raw.{q(col)}), '')"
    formats = "[" + ", ".join(lit(f) for f in [*src.date_formats, "%Y-%m-%d"]) + "]"
    if how == "keep":
        integer, decimal = con.execute(
            f"SELECT coalesce(bool_and(regexp_full_match({v}, {lit(_INTEGER)})), false), "
            f"coalesce(bool_and(regexp_full_match({v}, {lit(_INTEGER)}) OR regexp_full_match({v}, {lit(_DECIMAL)})), false) "
            f"FROM {q('raw_' + source)} raw WHERE {v} IS NOT NULL"
        ).fetchall()[0]
        if integer:
            return CarriedColumn(col, f"CAST({v} AS BIGINT)", col, how, "integer")
        if decimal:
            return CarriedColumn(col, f"CAST({v} AS DOUBLE)", col, how, "number")
        return CarriedColumn(col, v, col, how, "string")
    if how == "year":
        return CarriedColumn(f"{col}_year", f"CAST(year(try_strptime({v}, {formats})) AS INTEGER)", col, how, "year")
    if how == "month":
        expr = f"CAST(date_trunc('month', try_strptime({v}, {formats})) AS DATE)"
        return CarriedColumn(f"{col}_month", expr, col, how, "month")
    district = f"regexp_extract(upper(replace({v}, ' ', '')), '^([A-Z]{{1,2}}[0-9][A-Z0-9]?)[0-9][A-Z]{{2}}$', 1)"
    if how == "postcode_district":
        return CarriedColumn(f"{col}_district", f"nullif({district}, '')", col, how, "string")
    return CarriedColumn(f"{col}_area", f"nullif(regexp_extract({district}, '^[A-Z]+', 0), '')", col, how, "string")


def write_analyst_tables(
    con: duckdb.DuckDBPyConnection, cfg: JobConfig, analyst_dir: Path, run_info: dict[str, Any] | None = None
) -> dict[str, int]:
    """One Parquet table per source, plus persons and the linkage summary, and their data
    dictionary (README.md, datapackage.json); returns rows written per table.

    Impossible values are written as null and counted (:func:`analyst_nulled_values`): an
    age at an event below 0 (a date of birth after the event) or above 120, and a year of
    birth after the person's earliest event. ``run_info`` (run id, config hash...) goes
    into the dictionary.
    """
    analyst_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    columns: dict[str, list[CarriedColumn]] = {}
    nulled: list[tuple[str, str, str, int]] = []
    events = []
    for name, src in cfg.sources.items():
        carried = [_carry_column(con, name, col, how, src) for col, how in src.carry.items()]
        exprs = ["x.person_id"] + [f"{c.expr} AS {q(c.name)}" for c in carried]
        formats = "[" + ", ".join(lit(f) for f in [*src.date_formats, "%Y-%m-%d"]) + "]"
        checks = []
        for col in src.age_at:
            event = f"try_strptime(nullif(trim(raw.{q(col)}), ''), {formats})"
            age = f"CAST(floor(datediff('month', s.date_of_birth, {event}) / 12) AS INTEGER)"
            out = "age_at_" + col
            exprs.append(f"CASE WHEN {age} BETWEEN 0 AND {MAX_AGE} THEN {age} END AS {q(out)}")
            checks += [(out, "date of birth after the event", f"{age} < 0"),
                       (out, f"age over {MAX_AGE}", f"{age} > {MAX_AGE}")]
            carried.append(CarriedColumn(out, "", col, "age", "integer"))
            events.append(f"SELECT x.person_id, year({event}) AS event_year {_source_join(name, src)}")
        columns[name] = carried
        order = ", ".join(str(i + 1) for i in range(len(exprs)))
        sql = f"SELECT {', '.join(exprs)} {_source_join(name, src)} ORDER BY {order}"
        out_path = analyst_dir / f"{name}.parquet"
        con.execute(f"COPY ({sql}) TO {lit(str(out_path))} (FORMAT parquet)")
        rows[name] = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(out_path))})").fetchall()[0][0]
        if checks:
            counts = con.execute(
                f"SELECT {', '.join(f'count(*) FILTER (WHERE {cond})' for _, _, cond in checks)} {_source_join(name, src)}"
            ).fetchall()[0]
            nulled += [(name, c, reason, int(n)) for (c, reason, _), n in zip(checks, counts) if n]
    # A year of birth after the person's earliest event is impossible.
    first_event = (
        f"SELECT person_id, min(event_year) AS first_event_year FROM ({' UNION ALL '.join(events)}) GROUP BY ALL"
        if events else "SELECT CAST(NULL AS VARCHAR) AS person_id, CAST(NULL AS BIGINT) AS first_event_year WHERE false"
    )
    attributes = person_attributes(cfg)
    has_year = "year_of_birth" in attributes
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __lk_persons AS SELECT p.*, {_CONFIDENCE_COLUMNS}, "
        f"{'p.year_of_birth > e.first_event_year' if has_year else 'false'} AS __impossible "
        f"FROM ({persons_query(list(cfg.sources), attributes)}) p LEFT JOIN ({first_event}) e USING (person_id) "
        f"LEFT JOIN ({_CONFIDENCE}) c USING (person_id)"
    )
    n_after = con.execute("SELECT count(*) FILTER (WHERE __impossible) FROM __lk_persons").fetchall()[0][0]
    if n_after:
        nulled.append(("persons", "year_of_birth", "year of birth after the person's earliest event", int(n_after)))
    out_path = analyst_dir / "persons.parquet"
    replace = " REPLACE (CASE WHEN __impossible THEN NULL ELSE year_of_birth END AS year_of_birth)" if has_year else ""
    con.execute(
        f"COPY (SELECT * EXCLUDE (__impossible){replace} FROM __lk_persons ORDER BY person_id) "
        f"TO {lit(str(out_path))} (FORMAT parquet)"
    )
    rows["persons"] = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(out_path))})").fetchall()[0][0]
    rows["linkage_summary"] = write_linkage_summary(
        con, f"read_parquet({lit(str(out_path))})", list(cfg.sources), cfg.outputs.suppression_threshold,
        analyst_dir / "linkage_summary.parquet",
    )
    con.execute("CREATE OR REPLACE TEMP TABLE analyst_nulled (tab VARCHAR, col VARCHAR, reason VARCHAR, n BIGINT)")
    if nulled:
        con.executemany("INSERT INTO analyst_nulled VALUES (?, ?, ?, ?)", nulled)
    write_data_dictionary(con, cfg, analyst_dir, rows, columns, run_info or {})
    return rows


# Link confidence per person, banded so that it reveals no identifier: the weakest link
# inside the person's cluster (lower bound of a band 5 wide, -5 for anything lower, 20 for
# 20 and more), whether any link was deterministic, and the cluster's size band.
_CONFIDENCE = (
    "SELECT person_id, any_value(cluster_size) AS size, min(cluster_min_match_weight) AS weakest, "
    "bool_or(deterministic_links > 0) AS deterministic FROM crosswalk GROUP BY ALL"
)
_CONFIDENCE_COLUMNS = (
    "CASE WHEN c.size > 1 AND c.weakest IS NOT NULL "
    "THEN CAST(greatest(-5, least(20, floor(c.weakest / 5) * 5)) AS INTEGER) END AS link_weakest_weight_band, "
    "coalesce(c.deterministic, false) AS link_any_deterministic, "
    "CAST(CASE WHEN c.size <= 2 THEN c.size WHEN c.size <= 5 THEN 3 WHEN c.size <= 10 THEN 6 "
    "WHEN c.size <= 20 THEN 11 ELSE 21 END AS INTEGER) AS cluster_size_band"
)


def _source_join(name: str, src: SourceConfig) -> str:
    """FROM clause: a source's raw rows with their crosswalk row and standardised record."""
    return (
        f"FROM {q('raw_' + name)} raw "
        f"JOIN crosswalk x ON x.source_dataset = {lit(name)} AND x.record_id = trim(raw.{q(src.record_id)}) "
        f"JOIN nodes s ON s.node_id = x.node_id"
    )


def analyst_nulled_values(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """``table.column -> reason -> rows`` of impossible values written as null, for the manifest."""
    out: dict[str, dict[str, int]] = {}
    for tab, col, reason, n in con.execute("SELECT * FROM analyst_nulled ORDER BY ALL").fetchall():
        out.setdefault(f"{tab}.{col}", {})[reason] = int(n)
    return out


# --- the data dictionary --------------------------------------------------------------------------

_FRICTIONLESS = {"integer": "integer", "number": "number", "string": "string", "year": "year", "month": "date",
                 "boolean": "boolean", "date": "date"}


def _parquet_kind(duck_type: str) -> str:
    t = duck_type.upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"):
        return "integer"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "number"
    if t == "BOOLEAN":
        return "boolean"
    if t == "DATE":
        return "date"
    return "string"


def _describe_column(table: str, column: str, cfg: JobConfig, carried: dict[str, list[CarriedColumn]]) -> dict[str, Any]:
    """Meaning, source column, coarsening and suppression of one analyst column; no
    description when the column is unknown (a test fails on that)."""
    threshold = cfg.outputs.suppression_threshold
    if column == "person_id":
        return {"description": "Pseudonymous person id: HMAC-SHA256 of the internal person key under this "
                               "release's secret key. The same person has the same id in every table of the release.",
                "source_column": None, "coarsening": "pseudonym"}
    for c in carried.get(table, []):
        if c.name != column:
            continue
        what = {
            "keep": f"as the extract holds it ({table}.{c.source_column})"
                    + (", typed as a number" if c.kind in ("integer", "number") else ""),
            "year": f"year of {table}.{c.source_column}",
            "month": f"month of {table}.{c.source_column}: the first day of the month stands for the month",
            "postcode_district": f"postcode district (outward code) of {table}.{c.source_column}",
            "postcode_area": f"postcode area (its leading letters) of {table}.{c.source_column}",
            "age": f"age in whole years at {table}.{c.source_column}, from the record's date of birth; null when "
                   f"impossible (date of birth after the event, or over {MAX_AGE})",
        }[c.coarsening]
        return {"description": what[0].upper() + what[1:] + ".", "source_column": f"{table}.{c.source_column}",
                "coarsening": {"keep": "none", "age": "age in years"}.get(c.coarsening, c.coarsening)}
    persons = {
        "sex": "Most common sex code over the person's records (M, F or U; ties: the first in order).",
        "year_of_birth": "Most common year of birth over the person's records (ties: the earlier); null when it "
                         "falls after the person's earliest event.",
        "sources": "The sources the person is found in, comma-separated.",
        "records": "Records of the person over all sources.",
        "link_weakest_weight_band": "Link confidence: the weakest match weight inside the person's cluster, as the "
                                    "lower bound of a band 5 wide (-5: below 0; 20: 20 or more); null for a person "
                                    "with one record or linked on agreement alone.",
        "link_any_deterministic": "Link confidence: whether any link inside the person's cluster was made on "
                                  "agreement alone (a deterministic rule such as the same valid PNC ID).",
        "cluster_size_band": "Link confidence: records in the person's cluster, banded: 1, 2, 3 (3-5), 6 (6-10), "
                             "11 (11-20), 21 (more than 20).",
    }
    if table == "persons":
        if column in persons:
            band = "band" if column.endswith("_band") else "none"
            return {"description": persons[column], "source_column": None,
                    "coarsening": "year" if column == "year_of_birth" else band}
        if column.startswith("records_") and column[len("records_"):] in cfg.sources:
            return {"description": f"Records of the person in {column[len('records_'):]}.", "source_column": None,
                    "coarsening": "none"}
    summary = {
        "table": "Which part of the summary: 'pair' (two sources) or 'people in k sources'.",
        "source_a": "First source of a pair.",
        "source_b": "Second source of a pair.",
        "people_in_a": "People found in source_a.",
        "people_in_b": "People found in source_b.",
        "people": "People found in both sources of the pair, or in exactly k sources.",
        "share_of_a_linked_to_b": "people / people_in_a.",
        "suppressed": "Whether a count on this row is suppressed.",
    }
    if table == "linkage_summary" and column in summary:
        suppression = (f"counts from 1 to {threshold - 1} are suppressed (null), with secondary suppression so "
                       "that no suppressed count can be recovered from the others") if column != "table" else None
        return {"description": summary[column], "source_column": None, "coarsening": "none",
                "suppression": suppression if column in ("people", "people_in_a", "people_in_b",
                                                         "share_of_a_linked_to_b") else None}
    return {"description": None, "source_column": None, "coarsening": None}


_TABLE_MEANINGS = {
    "persons": "One row per person: the person's sources, record counts, most common sex and year of birth, "
               "and banded link confidence.",
    "linkage_summary": "People found in each pair of sources and in 1, 2, ... sources, with small counts suppressed.",
}


def write_data_dictionary(
    con: duckdb.DuckDBPyConnection,
    cfg: JobConfig,
    analyst_dir: Path,
    rows: dict[str, int],
    carried: dict[str, list[CarriedColumn]],
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """analyst/datapackage.json (a Frictionless tabular data package) and analyst/README.md:
    every analyst table (every Parquet file in the folder) with its meaning and rows, every
    column with its type, meaning, source column, coarsening, suppression and the
    impossible values written as null. Names and counts only, never a value."""
    nulled = analyst_nulled_values(con)
    resources = []
    for path in sorted(analyst_dir.glob("*.parquet")):
        table = path.stem
        fields = []
        for column, duck_type, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall():
            kind = _parquet_kind(duck_type)
            about = _describe_column(table, column, cfg, carried)
            month = any(c.name == column and c.kind == "month" for c in carried.get(table, []))
            year = any(c.name == column and c.kind == "year" for c in carried.get(table, []))
            field = {"name": column, "type": "year" if year else _FRICTIONLESS[kind], "parquet_type": duck_type, **about}
            if month:
                field["format"] = "first day of the month: the month only"
            if f"{table}.{column}" in nulled:
                field["nulled_impossible"] = nulled[f"{table}.{column}"]
            fields.append(field)
        meaning = _TABLE_MEANINGS.get(table) or (
            f"One row per record of the source {table} that was linked, with its person's pseudonymous id and "
            "the columns the config carries." if table in cfg.sources else None)
        resources.append({"name": table, "path": path.name, "format": "parquet", "description": meaning,
                          "rows": rows.get(table), "schema": {"fields": fields}})
    package = {
        "profile": "tabular-data-package",
        "name": re.sub(r"[^a-z0-9._-]+", "-", cfg.job.lower()) or "linkage",
        "title": f"Analyst tables of the linkage job {cfg.job}",
        "created": run_info.get("created_utc") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "linkage": {"job": cfg.job, **{k: v for k, v in run_info.items() if k != "created_utc"},
                    "suppression_threshold": cfg.outputs.suppression_threshold},
        "resources": resources,
    }
    (analyst_dir / "datapackage.json").write_text(json.dumps(package, indent=2) + "\n")
    lines = [f"# Analyst tables: {cfg.job}", "",
             f"Written {package['created']}" + "".join(f"; {k.replace('_', ' ')} {v}" for k, v in package["linkage"].items()
                                                       if k != "job") + ".", "",
             "Person ids are pseudonyms; no table holds a name, a date of birth, a reference number, a postcode "
             "finer than its district or a record id. The same description, machine-readable: datapackage.json.", ""]
    for r in resources:
        lines += [f"## {r['name']} ({r['path']}, {r['rows']} rows)", "", r["description"] or "(undocumented)", "",
                  "| column | type | meaning | source column | coarsening | suppression | nulled as impossible |",
                  "|---|---|---|---|---|---|---|"]
        for f in r["schema"]["fields"]:
            cells = [f["name"], f["type"] + (f" ({f['format']})" if "format" in f else ""), f["description"] or "(undocumented)",
                     f.get("source_column") or "", f.get("coarsening") or "", f.get("suppression") or "",
                     ", ".join(f"{reason}: {n}" for reason, n in f.get("nulled_impossible", {}).items())]
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        lines.append("")
    (analyst_dir / "README.md").write_text("\n".join(lines))
    return package


def person_attributes(cfg: Any) -> list[str]:
    """The columns persons.parquet gives each person (its most common value): the justice
    preset's sex and year of birth; for declared fields, each date's year and each
    non-identifying category."""
    if cfg.uses_justice_preset:
        return ["sex", "year_of_birth"]
    out = []
    for name, ftype in cfg.fields.items():
        if ftype.type == "date":
            out.append(f"{name}_year")
        elif ftype.type == "category" and not ftype.is_identifying:
            out.append(name)
    return out


def persons_query(sources: list[str], attributes: Sequence[str] = ("sex", "year_of_birth")) -> str:
    """SQL: one row per person: the most common value of each attribute (sex and year of
    birth for the justice preset), sources, records per source.

    Ties go to the smallest value (F before M, the earlier year), so reruns agree.
    """
    per_source = ", ".join(
        f"count(*) FILTER (WHERE source_dataset = {lit(n)}) AS {q('records_' + n)}" for n in sources
    )

    def most_common(col: str) -> str:
        # Counted per person and value, then the largest count, the smallest value on a tie.
        return (
            f"SELECT person_id, arg_min({col}, (-n, {col})) AS {col} FROM (SELECT person_id, {col}, count(*) AS n "
            f"FROM base WHERE {col} IS NOT NULL GROUP BY ALL) GROUP BY ALL"
        )

    attrs = list(attributes)
    picked = "".join(f", r.{q(a)}" for a in attrs)
    ctes = "".join(f"a{i} AS ({most_common(q(a))}),\n" for i, a in enumerate(attrs))
    chosen = "".join(f"a{i}.{q(a)}, " for i, a in enumerate(attrs))
    joins = " ".join(f"LEFT JOIN a{i} USING (person_id)" for i in range(len(attrs)))
    return f"""
        WITH base AS (SELECT x.person_id, x.source_dataset{picked}
                      FROM crosswalk x JOIN nodes r USING (node_id)),
        {ctes}people AS (SELECT person_id,
                          array_to_string(list_sort(list_distinct(list(source_dataset))), ',') AS sources,
                          count(*) AS records, {per_source}
                   FROM base GROUP BY ALL)
        SELECT p.person_id, {chosen}p.* EXCLUDE (person_id)
        FROM people p {joins}
        ORDER BY p.person_id"""


def suppress(counts: list[int | None], threshold: int) -> list[bool]:
    """Which cells to suppress: primary (0 < count < threshold) and secondary.

    Secondary: a table whose total is published must hide at least three cells or none
    (with one hidden, the total gives it away; with two, the total and a weighted total
    can); the smallest unhidden cells are added until it does.
    """
    hidden = [c is not None and 0 < c < threshold for c in counts]
    n_hidden = sum(hidden)
    if 0 < n_hidden < 3:
        order = sorted((c, i) for i, c in enumerate(counts) if c is not None and not hidden[i])
        for _, i in order[: 3 - n_hidden]:
            hidden[i] = True
    return hidden


def write_linkage_summary(
    con: duckdb.DuckDBPyConnection, persons: str, sources: list[str], threshold: int, out: Path
) -> int:
    """Link rates between every pair of sources and people by number of sources, suppressed.

    Counted from ``persons`` (a relation with ``records_<source>`` per person): people are
    grouped by the sources they appear in, a few dozen combinations, and every count is a
    sum over those.
    """
    names = list(sources)
    present = ", ".join(f"{q('records_' + n)} > 0" for n in names)
    combos = [(row[:-1], row[-1]) for row in con.execute(f"SELECT {present}, count(*) FROM {persons} GROUP BY ALL").fetchall()]

    def people(*indexes: int) -> int:
        return sum(n for has, n in combos if all(has[i] for i in indexes))

    rows = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            rows.append((a, names[j], people(i), people(j), people(i, j)))
    pair_hidden = suppress([r[4] for r in rows], threshold)
    k_counts = [sum(n for has, n in combos if sum(has) == k) for k in range(1, len(names) + 1)]
    k_hidden = suppress(k_counts, threshold)
    table = {
        "table": [],
        "source_a": [],
        "source_b": [],
        "people_in_a": [],
        "people_in_b": [],
        "people": [],
        "share_of_a_linked_to_b": [],
        "suppressed": [],
    }

    def add(kind, a, b, na, nb, n, hidden):
        hide_a = na is not None and 0 < na < threshold
        hide_b = nb is not None and 0 < nb < threshold
        table["table"].append(kind)
        table["source_a"].append(a)
        table["source_b"].append(b)
        table["people_in_a"].append(None if hide_a else na)
        table["people_in_b"].append(None if hide_b else nb)
        table["people"].append(None if hidden else n)
        share = None if (hidden or hide_a or not na) else round(n / na, 4)
        table["share_of_a_linked_to_b"].append(share)
        table["suppressed"].append(bool(hidden or hide_a or hide_b))

    for (a, b, na, nb, n), hidden in zip(rows, pair_hidden):
        add("pair", a, b, na, nb, n, hidden)
    for k, (n, hidden) in enumerate(zip(k_counts, k_hidden), start=1):
        add(f"people in {k} source{'s' if k > 1 else ''}", None, None, None, None, n, hidden)
    pq.write_table(pa.table(table), out)
    return len(table["table"])


# --- leakage check -------------------------------------------------------------------------------
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
    # The whole value, unless it is all a date or a postcode (judged as one, above).
    values = (
        f"SELECT tab, col, v, 'value' AS kind, true AS whole, {_compact('v')} AS key FROM analyst_values "
        f"WHERE length({_compact('v')}) >= {MIN_IDENTIFIER_LENGTH}"
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


def build_identifier_values(con: duckdb.DuckDBPyConnection, cfg: JobConfig, raw_values: str = "raw_values") -> int:
    """``identifier_keys(key)`` and ``identifier_words(word)``: the identifier values, compact,
    and their letter words, among the analyst candidates (``analyst_candidates``,
    ``analyst_words``).

    Identifier values: every row of ``raw_values(field, v)`` (every identifying field,
    whatever it is called: sex codes too, which analyst tables hold only as categories
    shared by many rows) and every record id.
    """
    raw = [f"SELECT v FROM {q(raw_values)}"]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE identifier_keys AS SELECT DISTINCT k AS key FROM "
        f"({_identifier_keys_sql(cfg, raw_values)}) WHERE k IN (SELECT key FROM analyst_candidates)"
    )
    # Words of values with letters and no digits (names, not references), each value split once.
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

    Every Parquet table in ``analyst_dir``, every column but ``person_id``. Analyst
    columns hold codes, months, years and counts: a few thousand distinct values against
    millions of identifier values, so the check looks up these, not those.
    """
    parts = []
    for path in sorted(analyst_dir.glob("*.parquet")):
        cols = [r[:2] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall()]
        for col, typ in cols:
            if col == "person_id":
                continue
            text = f"CAST({q(col)} AS VARCHAR)"
            if typ == "DATE" and con.execute(
                f"SELECT coalesce(bool_and(day({q(col)}) = 1), false) FROM read_parquet({lit(str(path))})"
            ).fetchall()[0][0]:
                text = f"strftime({q(col)}, '%Y-%m')"  # a month (its first day stands for it), not a date
            parts.append(
                f"SELECT {lit(path.stem)} AS tab, {lit(col)} AS col, {text} AS raw, count(*) AS n "
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
    hits = _hits(con, cfg, raw_values)
    if hits:
        listed = ", ".join(f"{k} ({v} rows)" for k, v in sorted(hits.items()))
        raise LeakageError(
            f"leakage check failed: identifier values from the inputs appear in analyst tables: {listed}. "
            "Nothing was published. Remove or coarsen those columns under sources.<name>.carry."
        )
    return LeakageCheck(n_analyst, n_identifiers, hits)
