"""The analyst zone: pseudonymous person ids, coarsened columns, suppressed summaries.

Only this module writes ``analyst/``. Analysts get, per source, ``person_id`` and the
non-identifying columns the config carries (coarsened as it says); a persons table; and a
linkage summary with small counts suppressed. ``person_id`` is HMAC-SHA256 of the
internal person key under a secret held outside code, config and data; the manifest
records the key's fingerprint only. The key and the ids (``linkage.pseudonyms``), the
leakage check (``linkage.leakage``) and the data dictionary (``linkage.dictionary``) live
beside it; their names are importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from linkage import bias
from linkage.config import CarryColumn, JobConfig, SourceConfig
from linkage.dictionary import CarriedColumn, analyst_nulled_values, write_data_dictionary
from linkage.errors import InputError
from linkage.leakage import _NORM, LeakageCheck, check_leakage, collect_analyst_values  # noqa: F401 (re-exported)
from linkage.pseudonyms import (  # noqa: F401 (re-exported: job.py and the tests take them from here)
    FINGERPRINT_ITERATIONS,
    FINGERPRINT_SALT,
    KEY_ENV,
    MIN_KEY_BITS,
    PseudonymKey,
    add_pseudonyms,
    check_key_strength,
    key_entropy_bits,
    resolve_key,
)
from linkage.source_rows import MAX_AGE, age_at, raw_date, source_join
from linkage.sources import ROWS_SHOWN, lit, q
from linkage.threshold_ids import threshold_id_columns

__all__ = [
    "KEY_ENV", "PseudonymKey", "resolve_key", "add_pseudonyms", "write_analyst_tables", "suppress",
    "persons_query", "person_attributes", "write_linkage_summary", "analyst_nulled_values",
    "check_leakage", "LeakageCheck", "CarriedColumn", "MAX_AGE", "write_data_dictionary",
]


# --- analyst tables ----------------------------------------------------------------------


_INTEGER = r"-?(0|[1-9][0-9]{0,17})"  # no leading zeros: 02 is a code, kept as text
_DECIMAL = r"-?(0|[1-9][0-9]{0,14})\.[0-9]{1,6}"


# A value of a declared type: (pattern its text must match, SQL making it that type).
_DECLARED = {
    "integer": (r"[+-]?[0-9]{1,18}", "CAST({v} AS BIGINT)"),
    "number": (r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", "CAST({v} AS DOUBLE)"),
    "boolean": (r"(?i)(true|false|t|f|yes|no|y|n|1|0)", "lower({v}) IN ('true', 't', 'yes', 'y', '1')"),
    "string": (r"(?s).*", "{v}"),
}


def _carry_column(con: duckdb.DuckDBPyConnection, source: str, col: str, spec: CarryColumn | str,
                  src: SourceConfig) -> CarriedColumn:
    """The analyst column for a carried column, typed: as the config declares it
    (``type:``), else whole numbers and decimals written without leading zeros become
    numbers, years integers, months dates (the first day of the month standing for the
    month); anything else stays text.

    A declared type's values that are not of it are written as null (``bad``: the SQL
    condition that finds them, for counting; ``bad_values: fail`` stops the run instead).
    """
    spec = spec if isinstance(spec, CarryColumn) else CarryColumn(how=spec)  # type: ignore[arg-type]  # a CarryTransform
    how = spec.how
    v = f"nullif(trim(raw.{q(col)}), '')"
    if how == "keep" and spec.type is not None:
        pattern, make = _DECLARED[spec.type]
        ok = f"regexp_full_match({v}, {lit(pattern)})"
        expr = f"CASE WHEN {ok} THEN {make.format(v=v)} END"
        return CarriedColumn(col, expr, col, how, spec.type if spec.type != "boolean" else "boolean",
                             declared=spec.type, bad=f"{v} IS NOT NULL AND NOT {ok}")
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
        return CarriedColumn(f"{col}_year", f"CAST(year({raw_date(src, col)}) AS INTEGER)", col, how, "year")
    if how == "month":
        expr = f"CAST(date_trunc('month', {raw_date(src, col)}) AS DATE)"
        return CarriedColumn(f"{col}_month", expr, col, how, "month")
    district = f"regexp_extract(upper(replace({v}, ' ', '')), '^([A-Z]{{1,2}}[0-9][A-Z0-9]?)[0-9][A-Z]{{2}}$', 1)"
    if how == "postcode_district":
        return CarriedColumn(f"{col}_district", f"nullif({district}, '')", col, how, "string")
    return CarriedColumn(f"{col}_area", f"nullif(regexp_extract({district}, '^[A-Z]+', 0), '')", col, how, "string")


def _bad_carried_values(con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig,
                        carried: list[CarriedColumn]) -> list[tuple[str, str, str, int]]:
    """Rows whose carried value is not of its declared type: counted (with the first row
    numbers, for the manifest) and nulled, or the run fails (``bad_values: fail``)."""
    specs = src.carry_columns
    out = []
    for c in carried:
        if not c.bad:
            continue
        n, first = con.execute(
            f"SELECT count(*), list(_row ORDER BY _row)[:{ROWS_SHOWN}] FROM {q('raw_' + name)} raw WHERE {c.bad}"
        ).fetchall()[0]
        if not n:
            continue
        rows = ", ".join(str(r) for r in first) + (", ..." if n > ROWS_SHOWN else "")
        if specs[c.source_column].bad_values == "fail":
            raise InputError(
                f"sources.{name}.carry.{c.source_column}: declared {c.declared}, but {n} row(s) of the extract hold "
                f"something else (rows {rows}). Fix those rows, or set bad_values: null to publish them as null."
            )
        con.execute("INSERT INTO analyst_bad_values VALUES (?, ?, ?, ?, ?)", [name, c.name, c.declared, int(n), rows])
        out.append((name, c.name, f"not {'an' if c.declared == 'integer' else 'a'} {c.declared} (declared type)", int(n)))
    return out


def analyst_bad_values(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """``table.column -> {type, rows, row_numbers}``: carried values not of their declared
    type, written as null; the extract's row numbers (the first few), never the values."""
    return {f"{tab}.{col}": {"type": typ, "rows": int(n), "row_numbers": rows}
            for tab, col, typ, n, rows in con.execute("SELECT * FROM analyst_bad_values ORDER BY ALL").fetchall()}


def write_analyst_tables(
    con: duckdb.DuckDBPyConnection, cfg: JobConfig, analyst_dir: Path, run_info: dict[str, Any] | None = None,
    restricted_dir: Path | None = None, previous: Path | None = None,
) -> dict[str, int]:
    """One Parquet table per source, plus persons, the linkage summary and the link-rate
    (bias) tables (``linkage.bias``), and their data dictionary (README.md,
    datapackage.json); returns rows written per table. The records' breakdown groups go to
    ``restricted_dir/record_groups.parquet`` (for evaluation by group) when it is given.

    Impossible values are written as null and counted (:func:`analyst_nulled_values`): an
    age at an event below 0 (a date of birth after the event) or above 120, and a year of
    birth after the person's earliest event. ``run_info`` (run id, config hash...) goes
    into the dictionary.

    ``previous`` (an incremental run: the run it builds on, with ``record_changes`` in
    ``con``): the rows of people whose records and crosswalk rows are as they were there
    are carried from its analyst tables, and only the other people's rows are made
    (:func:`_reusable_outputs`); suppression and the leakage check still see the whole tables.
    """
    analyst_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    columns: dict[str, list[CarriedColumn]] = {}
    nulled: list[tuple[str, str, str, int]] = []
    events = []
    con.execute("CREATE OR REPLACE TEMP TABLE analyst_bad_values (tab VARCHAR, col VARCHAR, type VARCHAR, n BIGINT, "
                "rows VARCHAR)")
    # Which records' and people's values were nulled as impossible (restricted: record ids),
    # so that a later incremental run can count them without reading every record again.
    con.execute("CREATE OR REPLACE TEMP TABLE __lk_nulled (tab VARCHAR, col VARCHAR, reason VARCHAR, "
                "source_dataset VARCHAR, record_id VARCHAR, person_id VARCHAR)")
    reuse = _reusable_outputs(con, cfg, previous) if previous is not None and restricted_dir is not None else None
    affected = "(SELECT person_id FROM __lk_affected)"
    ids = ["x.person_id", *(f"x.{q(c)}" for c in threshold_id_columns(cfg))]
    for name, src in cfg.sources.items():
        carried = [_carry_column(con, name, col, spec, src) for col, spec in src.carry_columns.items()]
        nulled += _bad_carried_values(con, name, src, carried)
        exprs = ids + [f"{c.expr} AS {q(c.name)}" for c in carried]
        hidden, checks = ["CAST(x.record_id AS VARCHAR) AS __lk_record_id"], []
        for i, col in enumerate(src.age_at):
            event = raw_date(src, col)
            age = f"CAST({age_at(event)} AS INTEGER)"
            out = "age_at_" + col
            exprs.append(f"CASE WHEN {age} BETWEEN 0 AND {MAX_AGE} THEN {age} END AS {q(out)}")
            hidden += [f"{age} AS __lk_age_{i}", f"year({event}) AS __lk_event_year_{i}"]
            checks += [(out, "date of birth after the event", f"__lk_age_{i} < 0"),
                       (out, f"age over {MAX_AGE}", f"__lk_age_{i} > {MAX_AGE}")]
            carried.append(CarriedColumn(out, "", col, "age", "integer"))
            events.append(f"SELECT person_id, __lk_event_year_{i} AS event_year FROM {q('__lk_rows_' + name)}")
        if reuse is None:  # every row made here: the bias tables' groups come along (bias.build_record_groups)
            hidden += ["x.record_id AS __lk_breakdown_record_id", "x.person_id AS __lk_breakdown_person_id"]
            hidden += [f"{sql} AS {bias.GROUP_COLUMN.format(i)}"
                       for i, sql in enumerate(bias.group_columns(cfg, name).values())]
        columns[name] = carried
        table = q("__lk_rows_" + name)
        shown = ", ".join(q(c) for c in ["person_id", *threshold_id_columns(cfg), *(c.name for c in carried)])
        select = f"SELECT {', '.join(exprs + hidden)} {source_join(name, src)}"
        out_path = analyst_dir / f"{name}.parquet"
        # An incremental run makes the rows of the people its changes touched and carries the
        # others' from the previous run (same columns and types only: a carried column's
        # type can change with the data).
        prev_path = reuse / "analyst" / f"{name}.parquet" if reuse else None
        carry = prev_path is not None and _same_columns(con, f"SELECT {shown} FROM ({select})", prev_path)
        # The source's rows joined once (raw rows, crosswalk, standardised records): the
        # analyst table, the impossible ages and the event years all read this.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {select}"
                    + (f" WHERE x.person_id IN {affected}" if carry else ""))
        kept = f" UNION ALL SELECT * FROM read_parquet({lit(str(prev_path))}) WHERE person_id NOT IN {affected}" if carry else ""
        con.execute(f"COPY (SELECT {shown} FROM {table}{kept} ORDER BY ALL) TO {lit(str(out_path))} (FORMAT parquet)")
        rows[name] = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(out_path))})").fetchall()[0][0]
        for c, reason, cond in checks:
            con.execute(f"INSERT INTO __lk_nulled SELECT {lit(name)}, {lit(c)}, {lit(reason)}, {lit(name)}, __lk_record_id, "
                        f"NULL FROM {table} WHERE {cond}")
        if checks and carry and reuse:  # the unchanged records not made again: as the previous run found them
            con.execute(
                f"""INSERT INTO __lk_nulled SELECT n.* FROM read_parquet({lit(str(reuse / 'restricted' / NULLED_ROWS))}) n
                SEMI JOIN (SELECT source_dataset, record_id FROM record_changes WHERE status = 'same') c
                  USING (source_dataset, record_id)
                WHERE n.tab = {lit(name)} AND n.record_id NOT IN (SELECT __lk_record_id FROM {table})""")
        counts = dict(((c, r), n) for c, r, n in con.execute(
            f"SELECT col, reason, count(*) FROM __lk_nulled WHERE tab = {lit(name)} GROUP BY ALL").fetchall())
        nulled += [(name, c, reason, int(counts[c, reason])) for c, reason, _ in checks if counts.get((c, reason))]
    # A year of birth after the person's earliest event is impossible.
    first_event = (
        f"SELECT person_id, min(event_year) AS first_event_year FROM ({' UNION ALL '.join(events)}) GROUP BY ALL"
        if events else "SELECT CAST(NULL AS VARCHAR) AS person_id, CAST(NULL AS BIGINT) AS first_event_year WHERE false"
    )
    attributes = person_attributes(cfg)
    has_year = "year_of_birth" in attributes
    out_path = analyst_dir / "persons.parquet"
    replace = " REPLACE (CASE WHEN __impossible THEN NULL ELSE year_of_birth END AS year_of_birth)" if has_year else ""

    def persons(crosswalk: str) -> str:
        # The confidence columns come from the same pass over the crosswalk as the counts.
        return (f"SELECT p.* EXCLUDE ({', '.join(_CONFIDENCE)}), {_CONFIDENCE_COLUMNS}, "
                f"{'p.year_of_birth > e.first_event_year' if has_year else 'false'} AS __impossible "
                f"FROM ({persons_query(list(cfg.sources), attributes, crosswalk, _CONFIDENCE)}) p "
                f"LEFT JOIN ({first_event}) e USING (person_id)")

    prev_persons = reuse / "analyst" / "persons.parquet" if reuse else None
    carry = prev_persons is not None and _same_columns(
        con, f"SELECT * EXCLUDE (__impossible){replace} FROM ({persons('crosswalk')})", prev_persons)
    crosswalk = f"(SELECT * FROM crosswalk WHERE person_id IN {affected})" if carry else "crosswalk"
    con.execute(f"CREATE OR REPLACE TEMP TABLE __lk_persons AS {persons(crosswalk)}")
    con.execute(f"INSERT INTO __lk_nulled SELECT 'persons', 'year_of_birth', {lit(_YEAR_AFTER_EVENT)}, NULL, NULL, "
                f"person_id FROM __lk_persons WHERE __impossible")
    kept = ""
    if carry and reuse:
        kept = f" UNION ALL SELECT * FROM read_parquet({lit(str(prev_persons))}) WHERE person_id NOT IN {affected}"
        con.execute(f"INSERT INTO __lk_nulled SELECT * FROM read_parquet({lit(str(reuse / 'restricted' / NULLED_ROWS))}) "
                    f"WHERE tab = 'persons' AND person_id NOT IN {affected}")
    n_after = con.execute("SELECT count(*) FROM __lk_nulled WHERE tab = 'persons'").fetchall()[0][0]
    if n_after:
        nulled.append(("persons", "year_of_birth", _YEAR_AFTER_EVENT, int(n_after)))
    con.execute(
        f"COPY (SELECT * EXCLUDE (__impossible){replace} FROM __lk_persons{kept} ORDER BY person_id) "
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
    if restricted_dir is not None:
        restricted_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM __lk_nulled ORDER BY ALL) TO {lit(str(restricted_dir / NULLED_ROWS))} "
                    f"(FORMAT parquet)")
    con.execute("CREATE OR REPLACE TEMP TABLE analyst_made_again AS SELECT "
                + ("count(*) AS people FROM __lk_affected" if reuse else "NULL::BIGINT AS people"))
    for t in ("__lk_nulled", "__lk_affected"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    rows.update(bias.write_bias_tables(con, cfg, analyst_dir, restricted_dir,
                                       previous=reuse / "restricted" if reuse else None,
                                       group_rows=None if reuse else {n: q("__lk_rows_" + n) for n in cfg.sources}))
    for name in cfg.sources:
        con.execute(f"DROP TABLE {q('__lk_rows_' + name)}")
    write_data_dictionary(con, cfg, analyst_dir, rows, columns, run_info or {})
    return rows


def analyst_people_made_again(con: duckdb.DuckDBPyConnection) -> int | None:
    """How many people's analyst rows an incremental run made again (the others carried);
    None when every row was made (a full run, or nothing to carry)."""
    (n,) = con.execute("SELECT people FROM analyst_made_again").fetchall()[0]
    return None if n is None else int(n)


NULLED_ROWS = "analyst_nulled.parquet"  # restricted/: the records and people whose values were nulled
_YEAR_AFTER_EVENT = "year of birth after the person's earliest event"


def _same_columns(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> bool:
    """Whether the Parquet file at ``path`` has the columns (names, order and types) ``query`` makes."""
    if not path.is_file():
        return False
    have = con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall()
    want = con.execute(f"DESCRIBE {query}").fetchall()
    return [r[:2] for r in have] == [r[:2] for r in want]


def _reusable_outputs(con: duckdb.DuckDBPyConnection, cfg: JobConfig, previous: Path) -> Path | None:
    """``previous`` if its analyst outputs can be carried, after making ``__lk_affected(person_id)``:
    the people (by this run's ids or the previous run's) whose analyst rows may differ
    from the previous run's. A person is unaffected when each of their records is
    unchanged since the previous run and has the same crosswalk row there (person id, ids
    at the other thresholds, cluster size, weakest link, links): their rows in every
    analyst table, which depend on nothing else, are the previous run's."""
    needed = [previous / "restricted" / NULLED_ROWS, previous / "analyst" / "persons.parquet",
              previous / "restricted" / "crosswalk.parquet"]
    if not all(p.is_file() for p in needed):
        return None
    cols = ["person_id", *threshold_id_columns(cfg), "cluster_size", "cluster_min_match_weight", "cluster_links",
            "deterministic_links"]
    prev = lit(str(previous / "restricted" / "crosswalk.parquet"))
    have = {c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM read_parquet({prev})").fetchall()}
    if not set(cols) <= have:
        return None
    differs = " OR ".join(f"x.{q(c)} IS DISTINCT FROM p.{q(c)}" for c in cols)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE __lk_moved AS
        SELECT x.person_id AS now, p.person_id AS before
        FROM (SELECT *, CAST(record_id AS VARCHAR) AS rid FROM crosswalk) x
        FULL JOIN (SELECT *, CAST(record_id AS VARCHAR) AS rid FROM read_parquet({prev})) p USING (source_dataset, rid)
        LEFT JOIN (SELECT source_dataset, CAST(record_id AS VARCHAR) AS rid, status FROM record_changes) c
          USING (source_dataset, rid)
        WHERE x.rid IS NULL OR p.rid IS NULL OR c.status IS DISTINCT FROM 'same' OR {differs}""")
    con.execute("""CREATE OR REPLACE TEMP TABLE __lk_affected AS
        SELECT now AS person_id FROM __lk_moved WHERE now IS NOT NULL
        UNION SELECT before FROM __lk_moved WHERE before IS NOT NULL""")
    con.execute("DROP TABLE __lk_moved")
    return previous


# Link confidence per person, banded so that it reveals no identifier: the weakest link
# inside the person's cluster (lower bound of a band 5 wide, -5 for anything lower, 20 for
# 20 and more), whether any link was deterministic, and the cluster's size band.
_CONFIDENCE = {
    "__lk_size": "any_value(cluster_size)",
    "__lk_weakest": "min(cluster_min_match_weight)",
    "__lk_deterministic": "bool_or(deterministic_links > 0)",
}
_CONFIDENCE_COLUMNS = (
    "CASE WHEN p.__lk_size > 1 AND p.__lk_weakest IS NOT NULL "
    "THEN CAST(greatest(-5, least(20, floor(p.__lk_weakest / 5) * 5)) AS INTEGER) END AS link_weakest_weight_band, "
    "coalesce(p.__lk_deterministic, false) AS link_any_deterministic, "
    "CAST(CASE WHEN p.__lk_size <= 2 THEN p.__lk_size WHEN p.__lk_size <= 5 THEN 3 WHEN p.__lk_size <= 10 THEN 6 "
    "WHEN p.__lk_size <= 20 THEN 11 ELSE 21 END AS INTEGER) AS cluster_size_band"
)


def person_attributes(cfg: Any) -> list[str]:
    """The columns persons.parquet gives each person (its most common value): the justice
    preset's sex and year of birth; for declared fields, each date's year and each
    non-identifying category."""
    if cfg.uses_justice_preset:
        return ["sex", "year_of_birth"]
    out = []
    for name, ftype in cfg.fields.items():
        if ftype.type == "date" and ftype.key_names.get("year", "") is not None:
            out.append(ftype.key_column(name, "year"))
        elif ftype.type == "category" and not ftype.is_identifying:
            out.append(name)
    return out


def persons_query(sources: list[str], attributes: Sequence[str] = ("sex", "year_of_birth"),
                  crosswalk: str = "crosswalk", extra: dict[str, str] | None = None) -> str:
    """SQL: one row per person: the most common value of each attribute (sex and year of
    birth for the justice preset), sources, records per source (and ``extra``: column ->
    aggregate over the person's crosswalk rows).

    Ties go to the smallest value (F before M, the earlier year), so reruns agree. The
    counts and ``extra`` are one pass over the crosswalk alone; only the attributes join
    the records (a third less work than counting over the join at a million records).
    """
    names = sorted(sources)
    per_source = ", ".join(
        f"count(*) FILTER (WHERE source_dataset = {lit(n)}) AS {q('records_' + n)}" for n in sources
    )
    # The sources in name order: the same text as sorting the distinct source names.
    listed = "concat_ws(',', " + ", ".join(f"CASE WHEN {q('records_' + n)} > 0 THEN {lit(n)} END" for n in names) + ")"
    more = "".join(f", {agg} AS {q(col)}" for col, agg in (extra or {}).items())

    def most_common(col: str) -> str:
        # Counted per person and value, then the largest count, the smallest value on a tie.
        return (
            f"SELECT person_id, arg_min({col}, (-n, {col})) AS {col} FROM (SELECT x.person_id, r.{col}, count(*) AS n "
            f"FROM {crosswalk} x JOIN nodes r USING (node_id) WHERE r.{col} IS NOT NULL GROUP BY ALL) GROUP BY ALL"
        )

    attrs = list(attributes)
    ctes = "".join(f",\n        a{i} AS ({most_common(q(a))})" for i, a in enumerate(attrs))
    chosen = "".join(f"a{i}.{q(a)}, " for i, a in enumerate(attrs))
    joins = " ".join(f"LEFT JOIN a{i} USING (person_id)" for i in range(len(attrs)))
    counts = ", ".join(f"p.{q('records_' + n)}" for n in sources)
    hidden = "".join(f", p.{q(col)}" for col in (extra or {}))
    return f"""
        WITH people AS (SELECT person_id, count(*) AS records, {per_source}{more}
                        FROM {crosswalk} GROUP BY ALL){ctes}
        SELECT p.person_id, {chosen}{listed} AS sources, p.records, {counts}{hidden}
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
    table: dict[str, list] = {
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


