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
import math
import os
import re
from dataclasses import dataclass
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


def _carry_expr(col: str, how: str, src: SourceConfig) -> tuple[str, str]:
    """(SQL expression over raw_<source>, output column name) for a carried column."""
    v = f"nullif(trim(raw.{q(col)}), '')"
    formats = "[" + ", ".join(lit(f) for f in [*src.date_formats, "%Y-%m-%d"]) + "]"
    if how == "keep":
        return v, col
    if how == "year":
        return f"year(try_strptime({v}, {formats}))", f"{col}_year"
    if how == "month":
        return f"strftime(try_strptime({v}, {formats}), '%Y-%m')", f"{col}_month"
    district = f"regexp_extract(upper(replace({v}, ' ', '')), '^([A-Z]{{1,2}}[0-9][A-Z0-9]?)[0-9][A-Z]{{2}}$', 1)"
    if how == "postcode_district":
        return f"nullif({district}, '')", f"{col}_district"
    return f"nullif(regexp_extract({district}, '^[A-Z]+', 0), '')", f"{col}_area"


def write_analyst_tables(con: duckdb.DuckDBPyConnection, cfg: JobConfig, analyst_dir: Path) -> dict[str, int]:
    """One Parquet table per source, plus persons; returns rows written per table."""
    analyst_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, src in cfg.sources.items():
        exprs = ["x.person_id"]
        for col, how in src.carry.items():
            expr, out = _carry_expr(col, how, src)
            exprs.append(f"{expr} AS {q(out)}")
        formats = "[" + ", ".join(lit(f) for f in [*src.date_formats, "%Y-%m-%d"]) + "]"
        for col in src.age_at:
            event = f"try_strptime(nullif(trim(raw.{q(col)}), ''), {formats})"
            exprs.append(f"CAST(floor(datediff('month', s.date_of_birth, {event}) / 12) AS INTEGER) AS {q('age_at_' + col)}")
        order = ", ".join(str(i + 1) for i in range(len(exprs)))
        sql = (
            f"SELECT {', '.join(exprs)} FROM {q('raw_' + name)} raw "
            f"JOIN crosswalk x ON x.source_dataset = {lit(name)} AND x.record_id = trim(raw.{q(src.record_id)}) "
            f"JOIN nodes s ON s.node_id = x.node_id "
            f"ORDER BY {order}"
        )
        out = analyst_dir / f"{name}.parquet"
        con.execute(f"COPY ({sql}) TO {lit(str(out))} (FORMAT parquet)")
        rows[name] = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(out))})").fetchall()[0][0]
    persons = persons_query(list(cfg.sources))
    out = analyst_dir / "persons.parquet"
    con.execute(f"COPY ({persons}) TO {lit(str(out))} (FORMAT parquet)")
    rows["persons"] = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(out))})").fetchall()[0][0]
    rows["linkage_summary"] = write_linkage_summary(
        con, f"read_parquet({lit(str(out))})", list(cfg.sources), cfg.outputs.suppression_threshold,
        analyst_dir / "linkage_summary.parquet",
    )
    return rows


def persons_query(sources: list[str]) -> str:
    """SQL: one row per person: most common sex and year of birth, sources, records per source.

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

    return f"""
        WITH base AS (SELECT x.person_id, x.source_dataset, r.sex, r.year_of_birth
                      FROM crosswalk x JOIN nodes r USING (node_id)),
        sexes AS ({most_common("sex")}),
        years AS ({most_common("year_of_birth")}),
        people AS (SELECT person_id,
                          array_to_string(list_sort(list_distinct(list(source_dataset))), ',') AS sources,
                          count(*) AS records, {per_source}
                   FROM base GROUP BY ALL)
        SELECT p.person_id, s.sex, y.year_of_birth, p.* EXCLUDE (person_id)
        FROM people p LEFT JOIN sexes s USING (person_id) LEFT JOIN years y USING (person_id)
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

# Values shorter than this are too common to be identifying (a sex code, a count).
MIN_IDENTIFIER_LENGTH = 4


def build_identifier_values(
    con: duckdb.DuckDBPyConnection, cfg: JobConfig, among: str | None = None, raw_values: str = "raw_values"
) -> int:
    """``identifier_values(v)``: every identifying value in the inputs, normalised.

    Raw values (names, dates of birth, reference numbers, postcodes, aliases and alias
    dates of birth, as read: ``raw_values(field, v)``, which standardisation keeps with
    each distinct value once), record ids, and the standardised forms. With ``among`` (a
    table with a column ``v``), only the values that are also there: the leakage check
    needs no more, and the full set is millions of values at a million records.
    """
    # Sex codes are too short and common to identify anyone. Written without its space a
    # postcode has the shape of other codes (a Libra court code such as B10JQ is letter,
    # two digits, two letters), so only a postcode with its space is an identifier value.
    raw = [f"SELECT v FROM {q(raw_values)} WHERE field <> 'sex' AND (field <> 'postcode' OR v LIKE '% %')"]
    for name in cfg.sources:
        raw.append(f"SELECT record_id AS v FROM {q('all_' + name)}")
    std = []
    std_text = ["first_name", "middle_names", "surname", "full_name", "pnc_id", "cro_number", "prison_number", "crn", "postcode"]
    for col in std_text:
        std.append(f"SELECT {col} AS v FROM records")
    std.append("SELECT unnest(name_set) AS v FROM records")
    std.append("SELECT unnest(surname_set) AS v FROM records")
    std.append("SELECT unnest(forename_set) AS v FROM records")
    std.append("SELECT strftime(date_of_birth, '%Y-%m-%d') AS v FROM records")
    std.append("SELECT strftime(date_of_birth, '%d/%m/%Y') AS v FROM records")
    # Raw values are normalised as analyst cells are; standardised ones are already.
    values = f"SELECT {_NORM.format('v')} AS v FROM ({' UNION ALL '.join(raw)}) UNION ALL {' UNION ALL '.join(std)}"
    wanted = f"v IS NOT NULL AND length(v) >= {MIN_IDENTIFIER_LENGTH}"
    if among:
        # Test the few candidates, not the millions of values: a condition on the values
        # would be pushed into every branch and normalise each value once more.
        wanted = f"v IN (SELECT v FROM {q(among)} WHERE {wanted})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE identifier_values AS SELECT DISTINCT v FROM ({values}) WHERE {wanted}")
    return con.execute("SELECT count(*) FROM identifier_values").fetchall()[0][0]


# How a value is compared: upper case, trimmed, runs of white space as one space. The
# regex runs only on values with a run to collapse (found without a regex): several times
# faster over the millions of identifier values.
_NORM = (
    "CASE WHEN contains({0}, '  ') OR contains({0}, chr(9)) OR contains({0}, chr(10))"
    " OR contains({0}, chr(12)) OR contains({0}, chr(13))"
    " THEN upper(trim(regexp_replace({0}, '\\s+', ' ', 'g'))) ELSE upper(trim({0})) END"
)


def collect_analyst_values(con: duckdb.DuckDBPyConnection, analyst_dir: Path) -> int:
    """``analyst_values(tab, col, v, n)``: each analyst column's distinct normalised values, with rows.

    Analyst columns hold codes, months, years and counts: a few thousand distinct values
    against millions of identifier values, so the check looks up these, not those.
    """
    parts = []
    for path in sorted(analyst_dir.glob("*.parquet")):
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall()]
        for col in cols:
            if col == "person_id":
                continue
            parts.append(
                f"SELECT {lit(path.stem)} AS tab, {lit(col)} AS col, CAST({q(col)} AS VARCHAR) AS raw, count(*) AS n "
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
    identifier_values: int  # of those, how many are identifier values: 0 when the check passes
    hits: dict[str, int]  # rows per table.column holding an identifier value


def check_leakage(con: duckdb.DuckDBPyConnection, cfg: JobConfig, analyst_dir: Path) -> LeakageCheck:
    """Hits per table.column of any identifier value in any analyst table; raise on any hit.

    The message names tables, columns and counts, never the values.
    """
    n_analyst = collect_analyst_values(con, analyst_dir)
    n_identifiers = build_identifier_values(con, cfg, among="analyst_values")
    hits = dict(
        (f"{tab}.{col}", int(n))
        for tab, col, n in con.execute(
            "SELECT tab, col, sum(n) FROM analyst_values WHERE v IN (SELECT v FROM identifier_values) "
            "GROUP BY ALL ORDER BY tab, col"
        ).fetchall()
    )
    if hits:
        listed = ", ".join(f"{k} ({v} rows)" for k, v in hits.items())
        raise LeakageError(
            f"leakage check failed: identifier values from the inputs appear in analyst tables: {listed}. "
            "Nothing was published. Remove or coarsen those columns under sources.<name>.carry."
        )
    return LeakageCheck(n_analyst, n_identifiers, hits)
