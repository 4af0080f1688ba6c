"""Time ``standardise_table`` on N rows of realistic dirty person records, built in DuckDB.

    /work/venv/bin/python benchmarks/bench_standardise.py [--rows 5000000] [--seed 1]
        [--threads 0] [--database :memory:]

The rows mix five source styles (PNC, prison, probation, Libra, Crown Court): split and
single-string names in every court style, titles, system prefixes, placeholders, accents,
Mc/Mac, hyphens and apostrophes, aliases with their own dates of birth, dates in two formats
with impossible and default dates, PNC IDs in all five written forms plus junk, CRO and SF
numbers, prison numbers, CRNs, sex codes of every source, postcodes with NFA codes. Choices
are a hash of (row, seed), so a seed gives the same table at any thread count.
Prints one JSON line: rows, seconds to build, seconds to standardise, rows per second.
"""

from __future__ import annotations

import argparse
import json
import time

import duckdb

from linkage.standardise import standardise_table

FORENAMES = (
    "Arthur James Mary Jane William Bill Robert Bob Mohammed Muhammad Mohamed Ahmed Fatima "
    "Aisha Piotr Tomasz Katarzyna Agnieszka John Michael David Paul Mark Andrew Daniel Sarah "
    "Emma Laura Claire Rebecca Gemma Kelly Lee Darren Wayne Craig Dean Jamie Liam Connor Ryan "
    "Kieran Callum Jordan Jake Josh Samantha Stacey Chelsea Zoe Renee Jose Sean Siobhan Niamh "
    "Gurpreet Harpreet Sandeep Imran Tariq Yusuf Ibrahim Olga Sergei Dmitri Mary-Jane Anne-Marie"
).split()
SURNAME_STEMS = (
    "SMITH JONES TAYLOR BROWN WILLIAMS WILSON JOHNSON DAVIES ROBINSON WRIGHT THOMPSON EVANS "
    "WALKER WHITE ROBERTS GREEN HALL WOOD JACKSON CLARKE PATEL KHAN HUSSAIN ALI AHMED BEGUM "
    "SINGH KAUR NOWAK KOWALSKI WISNIEWSKI MORGAN HUGHES EDWARDS O'CONNOR O'BRIEN MCDONALD "
    "MACDONALD MC LEOD MURPHY KELLY RYAN SMITH-JONES ZIELINSKA MULLER GARCIA SANTOS NGUYEN"
).split(" ")
SURNAME_TAILS = ["", "", "", "SON", "S", "TON", "LEY", "FORD", "WOOD", "ER", "MAN", "FIELD"]

N_PEOPLE_DIVISOR = 3  # each person appears about three times


def _pick(values, key: str) -> str:
    """SQL: one element of a constant list, chosen by a hash of the row, seed and key."""
    literal = "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"
    return f"{literal}[1 + CAST(hash(i, seed, '{key}') % {len(values)} AS INTEGER)]"


def _chance(pct: int, key: str) -> str:
    return f"(hash(i, seed, '{key}') % 100 < {pct})"


def build_table(con: duckdb.DuckDBPyConnection, n_rows: int, seed: int) -> None:
    """Create ``bench_source`` with ``n_rows`` dirty rows (deterministic for a seed)."""
    people = max(1, n_rows // N_PEOPLE_DIVISOR)
    con.execute(
        "CREATE OR REPLACE TEMP MACRO bench_initcap(x) AS upper(left(x, 1)) || lower(substr(x, 2))"
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE bench_people AS
        SELECT p, {_pick(FORENAMES, 'f')} AS fore, {_pick(FORENAMES, 'm')} AS mid,
               {_pick(SURNAME_STEMS, 's')} || {_pick(SURNAME_TAILS, 't')} AS sur,
               DATE '1940-01-01' + CAST(hash(p, seed, 'dob') % 25000 AS INTEGER) AS dob,
               CAST(hash(p, seed, 'pyr') % 30 AS INTEGER) AS pyy,
               CAST(hash(p, seed, 'pser') % 2000000 AS BIGINT) + 1 AS pser,
               CAST(hash(p, seed, 'cser') % 900000 AS BIGINT) + 1 AS cser,
               CAST(hash(p, seed, 'cyr') % 100 AS INTEGER) AS cyy
        FROM (SELECT range AS p, range AS i, {seed} AS seed FROM range({people}))
    """)  # fmt: skip
    letters = "ZABCDEFGHJKLMNPQRTUVWXY"
    pnc_long = (
        f"(CASE WHEN pyy < 26 THEN '20' ELSE '19' END) || lpad(CAST(pyy AS VARCHAR), 2, '0') || '/' "
        f"|| lpad(CAST(pser AS VARCHAR), 7, '0') || substr('{letters}', 1 + CAST((pyy * 10000000 + pser) % 23 AS INTEGER), 1)"
    )
    pnc_short = (
        f"lpad(CAST(pyy AS VARCHAR), 2, '0') || '/' || CAST(pser AS VARCHAR) || "
        f"lower(substr('{letters}', 1 + CAST((pyy * 10000000 + pser) % 23 AS INTEGER), 1))"
    )
    cro = (
        f"CAST(cser AS VARCHAR) || '/' || lpad(CAST(cyy AS VARCHAR), 2, '0') || "
        f"substr('{letters}', 1 + CAST((cyy * 1000000 + cser) % 23 AS INTEGER), 1)"
    )
    src = _pick(["pnc", "prison", "prison", "probation", "probation", "libra", "libra", "crest"], "src")
    con.execute(f"""
        CREATE OR REPLACE TABLE bench_source AS
        WITH r AS (
          SELECT i, {seed} AS seed, CAST(hash(i, {seed}, 'person') % {people} AS BIGINT) AS p
          FROM range({n_rows}) t(i)
        ), j AS (
          SELECT r.i, r.seed, bp.*, {src} AS source_dataset FROM r JOIN bench_people bp USING (p)
        ), d AS (
          SELECT *,
            CASE WHEN {_chance(3, 'typo')} THEN regexp_replace(sur, '[AEIOU]', 'Y') ELSE sur END AS sur2,
            CASE WHEN {_chance(2, 'dd')} THEN DATE '1970-01-01'
                 WHEN {_chance(2, 'swap')} THEN dob + INTERVAL 1 DAY ELSE dob END AS dob2
          FROM j
        )
        SELECT
          source_dataset,
          source_dataset || '-' || CAST(i AS VARCHAR) AS record_id,
          CASE WHEN source_dataset IN ('libra', 'crest') THEN NULL
               WHEN {_chance(30, 'mid')} THEN fore || ' ' || mid
               WHEN {_chance(2, 'pref')} THEN {_pick(['MIG_ERROR_', 'NO_SHOW_', 'DUPLICATE_'], 'pf')} || fore
               WHEN {_chance(1, 'ne')} THEN 'NOT ENTERED'
               ELSE fore END AS first_name,
          CASE WHEN source_dataset = 'probation' AND {_chance(40, 'm2')} THEN mid END AS middle_names,
          CASE WHEN source_dataset IN ('libra', 'crest') THEN NULL
               WHEN source_dataset = 'prison' THEN bench_initcap(sur2) ELSE sur2 END AS surname,
          CASE WHEN source_dataset IN ('libra', 'crest') THEN {_pick_expr([
                   "'Mr ' || fore || ' ' || sur2", "sur2 || ', ' || fore || ' ' || mid",
                   "fore || ' ' || bench_initcap(sur2)", "sur2 || ' ' || fore", "upper(fore) || ' ' || sur2",
                   "'Ms ' || fore || ' ' || sur2 || ' Jnr'", "sur2 || ' LTD'", "'UNKNOWN'"], 'fn')}
               END AS full_name,
          CASE WHEN source_dataset IN ('pnc', 'prison') AND {_chance(25, 'al')}
               THEN sur || ', ' || {_pick(FORENAMES, 'af')} || ';' || upper(mid) || ' ' || sur2 END AS aliases,
          CASE WHEN source_dataset IN ('libra', 'crest') THEN strftime(dob2, '%d/%m/%Y')
               WHEN {_chance(1, 'imp')} THEN '1985-02-31'
               WHEN {_chance(1, 'fut')} THEN '2090-01-01'
               ELSE strftime(dob2, '%Y-%m-%d') END AS date_of_birth,
          CASE WHEN source_dataset = 'pnc' AND {_chance(20, 'ad')}
               THEN strftime(dob + INTERVAL 31 DAY, '%Y-%m-%d') || ';1900-01-01' END AS alias_dates_of_birth,
          CASE source_dataset WHEN 'prison' THEN {_pick(['Male', 'Female', 'Not Known / Not Recorded', 'Male'], 'sx')}
               WHEN 'probation' THEN {_pick(['M', 'F', 'N', 'M'], 'sx')}
               WHEN 'libra' THEN {_pick(['M', 'F', 'NS', 'M'], 'sx')}
               ELSE {_pick(['MALE', 'FEMALE', 'NOT SPECIFIED', 'm'], 'sx')} END AS sex,
          CASE WHEN {_chance(30, 'nop')} THEN NULL
               ELSE {_pick_expr([pnc_long, pnc_short, pnc_long, "replace(" + pnc_long + ", '/', '')",
                            "'NONE'", "'N/A'", cro, "'1933/0993399H'", pnc_long], 'pf2')} END AS pnc_id,
          CASE WHEN {_chance(50, 'noc')} THEN NULL
               ELSE {_pick_expr([cro, cro, "'000000/00Z'", "'SF' || lpad(CAST(cyy AS VARCHAR), 2, '0') || '/' || CAST(cser % 99999 + 1 AS VARCHAR) || 'A'"], 'cf')} END AS cro_number,
          CASE WHEN source_dataset = 'prison' THEN chr(65 + CAST(p % 26 AS INTEGER)) || lpad(CAST(p % 10000 AS VARCHAR), 4, '0')
               || chr(65 + CAST(p % 23 AS INTEGER)) || chr(65 + CAST(p % 19 AS INTEGER)) END AS prison_number,
          CASE WHEN source_dataset = 'probation' THEN lower(chr(65 + CAST(p % 26 AS INTEGER))) || lpad(CAST(p % 1000000 AS VARCHAR), 6, '0') END AS crn,
          CASE WHEN source_dataset IN ('probation', 'libra') THEN {_pick_expr(["'SW1A 1AA'", "'m1 1ae'", "'NF1 1NF'", "'B33 8TH'", "'CR2 6XH'", "'ZZ99 3VZ'", "'DN551PT'", "'LS1'"], 'pc')} END AS postcode
        FROM d
    """)  # fmt: skip
    con.execute("DROP TABLE IF EXISTS bench_people")


def _pick_expr(exprs: list[str], key: str) -> str:
    """SQL: one of several SQL expressions, chosen by a hash of the row, seed and key."""
    whens = " ".join(f"WHEN {k} THEN {e}" for k, e in enumerate(exprs))
    return f"(CASE CAST(hash(i, seed, '{key}') % {len(exprs)} AS INTEGER) {whens} END)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: default)")
    parser.add_argument("--database", default=":memory:")
    args = parser.parse_args()
    con = duckdb.connect(args.database)
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    t0 = time.perf_counter()
    build_table(con, args.rows, args.seed)
    t1 = time.perf_counter()
    stats = standardise_table(
        con, "bench_source", "bench_std", date_formats=["%Y-%m-%d", "%d/%m/%Y"]
    )
    t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "rows": stats.rows,
                "build_seconds": round(t1 - t0, 2),
                "standardise_seconds": round(t2 - t1, 2),
                "rows_per_second": round(stats.rows / (t2 - t1)),
                "invalid": stats.invalid,
            }
        )
    )


if __name__ == "__main__":
    main()
