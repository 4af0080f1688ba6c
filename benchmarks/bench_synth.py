"""Time ``linkage.synthetic.generate`` at a given size and report rows and peak memory.

    python benchmarks/bench_synth.py [PEOPLE] [--seed S] [--profile P] [--out DIR]
                                     [--chunk-people N] [--check]

PEOPLE defaults to 1,000,000. Output goes to a temporary folder (deleted afterwards)
unless --out is given. Peak memory is the generating process's peak resident set,
taken before the check. ``--check`` then reads the files back with DuckDB and counts
the CRO numbers and PNC IDs in pnc.csv (as allocated, not corrupted) that more than one
person holds (should be 0), and the (first forename, surname, date of birth) in pnc.csv
that people of different chunks share (namesakes, fathers and sons, and chance alike).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from linkage.synthetic import PROFILES, generate
from linkage.synthetic.generator import CHUNK_PEOPLE

# PNC ID forms (long, no slash, short) and the CRO form; SF-CRO numbers are left out.
_PNC = r"^(\d{2}|\d{4})/?(\d{1,7})[A-Z]$"
_CRO = r"^(\d{1,6})/(\d{2})[A-Z]$"


def check(out: Path, chunk_people: int) -> dict[str, int]:
    """Reference numbers held by more than one person, and names shared across chunks."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '3GB'; SET threads = 2; SET preserve_insertion_order = false")
    con.execute(f"SET temp_directory = '{out / '.check_tmp'}'")

    def csv(name: str) -> str:
        return f"read_csv('{out / name}', all_varchar = true, header = true)"

    con.execute(
        f"""
        CREATE TEMP TABLE pnc AS
        SELECT upper(trim(p.pnc_id)) AS pnc_id, upper(trim(p.cro_number)) AS cro_number,
               p.forenames, p.surname, p.date_of_birth, t.person_id,
               c.pnc_bad, c.cro_bad
        FROM {csv('pnc.csv')} p
        JOIN (SELECT record_id, person_id FROM {csv('truth.csv')} WHERE source_dataset = 'pnc') t
          ON t.record_id = p.pnc_record_id
        LEFT JOIN (
            SELECT record_id, bool_or(field = 'pnc_id') AS pnc_bad, bool_or(field = 'cro_number') AS cro_bad
            FROM {csv('corruptions.csv')} WHERE source_dataset = 'pnc' GROUP BY record_id
        ) c ON c.record_id = p.pnc_record_id
        """
    )
    found = {}
    for name, column, pattern, key in (
        (
            "cro",
            "cro_number",
            _CRO,
            f"regexp_extract(cro_number, '{_CRO}', 2) || '/' || "
            f"CAST(CAST(regexp_extract(cro_number, '{_CRO}', 1) AS INTEGER) AS VARCHAR)",
        ),
        (
            "pnc",
            "pnc_id",
            _PNC,
            f"right(regexp_extract(pnc_id, '{_PNC}', 1), 2) || '/' || "
            f"CAST(CAST(regexp_extract(pnc_id, '{_PNC}', 2) AS INTEGER) AS VARCHAR)",
        ),
    ):
        numbers, shared = con.execute(
            f"""
            SELECT count(*), count(*) FILTER (WHERE people > 1) FROM (
                SELECT {key} AS k, count(DISTINCT person_id) AS people FROM pnc
                WHERE regexp_matches({column}, '{pattern}') AND NOT coalesce({name}_bad, false)
                GROUP BY k)
            """
        ).fetchone()
        found[f"{name}_numbers"], found[f"{name}_shared"] = numbers, shared
    found["names_across_chunks"] = con.execute(
        f"""
        SELECT count(*) FROM (
            SELECT split_part(forenames, ' ', 1) AS forename, surname, date_of_birth FROM pnc
            WHERE date_of_birth <> '' AND forenames <> ''
            GROUP BY forename, surname, date_of_birth
            HAVING count(DISTINCT (CAST(substr(person_id, 2) AS BIGINT) - 1) // {chunk_people}) > 1)
        """
    ).fetchone()[0]
    con.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("people", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=PROFILES, default="realistic")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--chunk-people", type=int, default=CHUNK_PEOPLE)
    parser.add_argument("--check", action="store_true", help="read the files back and check them")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        out = args.out or Path(tmp)
        start, cpu = time.perf_counter(), time.process_time()
        result = generate(args.people, args.seed, out, args.profile, chunk_people=args.chunk_people)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        # ru_maxrss is in kilobytes on Linux; taken before the check, which is not generation
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size = sum(p.stat().st_size for p in out.glob("*.csv"))
        print(f"people          {result.people:,} (+{result.organisations:,} organisations)")
        print(f"profile, seed   {result.profile}, {result.seed}; chunks of {result.chunk_people:,}")
        print(f"wall time       {wall:.1f} s ({result.people / wall:,.0f} people/s)")
        # on a shared machine CPU time says more than wall time about the generator itself
        print(f"CPU time        {cpu:.1f} s")
        for source, rows in result.rows.items():
            print(f"  {source:<13} {rows:>12,} rows")
        print(f"records         {result.records:,} ({result.records / result.people:.2f} per person)")
        print(f"corruptions     {result.corruptions:,}")
        print(f"csv size        {size / 2**20:,.0f} MiB")
        print(f"peak RSS        {peak_mib:,.0f} MiB")
        sys.stdout.flush()
        if args.check:
            start = time.perf_counter()
            found = check(out, result.chunk_people)
            print(
                f"check           {found['cro_numbers']:,} CRO numbers in pnc.csv, {found['cro_shared']:,} "
                f"held by more than one person; {found['pnc_numbers']:,} PNC IDs, {found['pnc_shared']:,} "
                f"shared; {found['names_across_chunks']:,} forename, surname and date of birth shared across chunks "
                f"({time.perf_counter() - start:.0f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
