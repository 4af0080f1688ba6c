"""The truth an evaluation scores against: which true person each record belongs to."""

from __future__ import annotations

from pathlib import Path

import duckdb

from linkage.errors import InputError
from linkage.sources import lit


def load_truth(con: duckdb.DuckDBPyConnection, truth_csv: Path, sources: list[str]) -> None:
    """``truth(source_dataset, record_id, person)`` from a CSV; duplicate ids or unknown sources are errors."""
    if not truth_csv.is_file():
        raise InputError(f"{truth_csv}: truth file not found")
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE truth AS SELECT trim(source_dataset) AS source_dataset, "
            f"trim(record_id) AS record_id, trim(person_id) AS person "
            f"FROM read_csv({lit(str(truth_csv))}, header=true, all_varchar=true)"
        )
    except duckdb.Error as exc:
        raise InputError(
            f"{truth_csv}: cannot read the truth; it needs columns source_dataset, record_id, person_id "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    unknown = con.execute(
        f"SELECT source_dataset, count(*) FROM truth WHERE source_dataset NOT IN ({', '.join(lit(s) for s in sources)}) "
        "OR source_dataset IS NULL GROUP BY ALL ORDER BY 1"
    ).fetchall()
    if unknown:
        listed = ", ".join(f"{s!r} ({n} rows)" for s, n in unknown)
        raise InputError(f"{truth_csv}: source_dataset values the run does not have: {listed}. The run's sources: {', '.join(sources)}.")
    dups = con.execute(
        "SELECT count(*), sum(n) FROM (SELECT count(*) AS n FROM truth GROUP BY source_dataset, record_id HAVING n > 1)"
    ).fetchall()[0]
    if dups[0]:
        raise InputError(f"{truth_csv}: {dups[0]} (source_dataset, record_id) ids appear more than once ({dups[1]} rows). Each record needs one true person.")
    missing = con.execute("SELECT count(*) FROM truth WHERE record_id IS NULL OR person IS NULL").fetchall()[0][0]
    if missing:
        raise InputError(f"{truth_csv}: {missing} rows have an empty record_id or person_id.")
