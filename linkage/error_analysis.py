"""Error analysis: which records a run linked wrongly or failed to link, and what was done to them.

Against the synthetic truth and its corruption log (``corruptions.csv``: source_dataset,
record_id, field, corruption; one row per corruption applied to a record), each record
of the run gets two counts, from group sizes alone so that a cluster of a hundred
thousand records costs no more than a small one. With ``n_ct`` the records of predicted
cluster c that belong to true person t:

- ``missed`` = n_t - n_ct: records of the same true person placed in other clusters
  (a missed link from this record's point of view);
- ``false`` = n_c - n_ct: records of other people placed in this record's cluster
  (a false link from this record's point of view).

Summed over records each pair is counted from both ends, so the missed pairs are
sum(missed) / 2 (= true pairs - true positive pairs) and the false pairs sum(false) / 2
(= predicted pairs - true positive pairs). The breakdowns count records: of the records
carrying a corruption, the share with a missed link and the share with a false link,
beside the same shares for records with no corruption at all.

Records the run rejected count as singletons, as in ``linkage.evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from linkage.errors import InputError
from linkage.sources import lit
from linkage.truth import load_truth

EXAMPLES = "error_examples.parquet"
CORRUPTION_COLUMNS = ("source_dataset", "record_id", "field", "corruption")


def error_analysis(
    con_or_run_dir: duckdb.DuckDBPyConnection | Path | str,
    truth_csv: Path | str,
    corruptions_csv: Path | str,
    *,
    predicted: str = "predicted",
    examples_path: Path | None = None,
    max_examples: int | None = 10_000,
) -> dict[str, Any]:
    """Count missed and false links overall, by corruption and by source pair; write examples.

    ``con_or_run_dir`` is a run directory, or a DuckDB connection holding the table
    ``predicted(source_dataset, record_id, cluster)`` (as ``linkage.evaluate.evaluate_run``
    builds it; another name can be given as ``predicted``). The truth is (re)loaded into
    the connection's ``truth`` table. Examples, record ids only, go to
    ``examples_path``: by default ``RUN_DIR/restricted/error_examples.parquet`` for a run
    directory, nowhere for a connection. At most ``max_examples`` records of each kind are
    written, those with the most errors first (None: all). Returns counts only.
    """
    truth_csv, corruptions_csv = Path(truth_csv), Path(corruptions_csv)
    if isinstance(con_or_run_dir, (str, Path)):
        run_dir = Path(con_or_run_dir)
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        try:
            sources = _load_run(con, run_dir)
            if examples_path is None:
                examples_path = run_dir / "restricted" / EXAMPLES
            return _analyse(con, "ea_predicted", sources, truth_csv, corruptions_csv, examples_path, max_examples)
        finally:
            con.close()
    con = con_or_run_dir
    sources = [s for (s,) in con.execute(f"SELECT DISTINCT source_dataset FROM {predicted} ORDER BY 1").fetchall()]
    return _analyse(con, predicted, sources, truth_csv, corruptions_csv, examples_path, max_examples)


def _load_run(con: duckdb.DuckDBPyConnection, run_dir: Path) -> list[str]:
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"{run_dir}: not a linkage run directory (no manifest.json)")
    sources = list(json.loads(manifest.read_text()).get("inputs", {}))
    crosswalk = run_dir / "restricted" / "crosswalk.parquet"
    rejects = run_dir / "restricted" / "rejects.parquet"
    if not crosswalk.is_file():
        raise InputError(f"{run_dir}: restricted/crosswalk.parquet is missing; the run did not finish")
    rejected = (
        f"UNION ALL SELECT source_dataset, coalesce(record_id, '#row' || row_number), "
        f"'rejected:' || source_dataset || ':' || coalesce(record_id, '#row' || row_number) "
        f"FROM read_parquet({lit(str(rejects))})"
        if rejects.is_file() else ""
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE ea_predicted AS SELECT source_dataset, record_id, person_key AS cluster "
        f"FROM read_parquet({lit(str(crosswalk))}) {rejected}"
    )
    return sources


def _load_corruptions(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: corruption log not found")
    try:
        columns = [c for c, *_ in con.execute(
            f"DESCRIBE SELECT * FROM read_csv({lit(str(path))}, header=true, all_varchar=true)").fetchall()]
    except duckdb.Error:
        raise InputError(f"{path}: cannot read the corruption log as CSV") from None
    missing = [c for c in CORRUPTION_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{path}: the corruption log needs columns {', '.join(CORRUPTION_COLUMNS)}; "
            f"missing {', '.join(missing)} (has: {', '.join(columns[:12])})"
        )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ea_corruptions AS
        SELECT DISTINCT trim(source_dataset) AS source_dataset, trim(record_id) AS record_id,
               trim(field) AS field, trim(corruption) AS corruption
        FROM read_csv({lit(str(path))}, header=true, all_varchar=true)
        WHERE record_id IS NOT NULL AND field IS NOT NULL AND corruption IS NOT NULL"""
    )


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _analyse(
    con: duckdb.DuckDBPyConnection,
    predicted: str,
    sources: list[str],
    truth_csv: Path,
    corruptions_csv: Path,
    examples_path: Path | None,
    max_examples: int | None,
) -> dict[str, Any]:
    load_truth(con, truth_csv, sources)
    _load_corruptions(con, corruptions_csv)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ea_labelled AS
        SELECT p.source_dataset, p.record_id, CAST(p.cluster AS VARCHAR) AS cluster, t.person
        FROM {predicted} p JOIN truth t USING (source_dataset, record_id)"""
    )
    n_labelled = con.execute("SELECT count(*) FROM ea_labelled").fetchall()[0][0]
    if not n_labelled:
        raise InputError(f"{truth_csv}: no record of the run has a truth label; nothing to analyse")
    # Per record: how many true mates are elsewhere (missed), how many strangers are here (false).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_records AS
        WITH ct AS (SELECT cluster, person, count(*) AS n_ct FROM ea_labelled GROUP BY ALL),
        c AS (SELECT cluster, sum(n_ct) AS n_c FROM ct GROUP BY ALL),
        t AS (SELECT person, sum(n_ct) AS n_t FROM ct GROUP BY ALL)
        SELECT l.source_dataset, l.record_id, l.cluster, l.person,
               CAST(t.n_t - ct.n_ct AS BIGINT) AS missed, CAST(c.n_c - ct.n_ct AS BIGINT) AS false_
        FROM ea_labelled l JOIN ct USING (cluster, person) JOIN c USING (cluster) JOIN t USING (person)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_record_corruptions AS
        SELECT r.source_dataset, r.record_id, count(k.field) AS n_corruptions,
               list(k.field || ':' || k.corruption ORDER BY k.field, k.corruption)
                   FILTER (WHERE k.field IS NOT NULL) AS corruptions
        FROM ea_records r LEFT JOIN ea_corruptions k USING (source_dataset, record_id) GROUP BY ALL"""
    )

    stats = ("count(*), count(*) FILTER (WHERE missed > 0), coalesce(sum(missed), 0), "
             "count(*) FILTER (WHERE false_ > 0), coalesce(sum(false_), 0)")

    def summary(records, with_missed, missed_ends, with_false, false_ends) -> dict[str, Any]:
        return {
            "records": int(records),
            "records_with_missed_links": int(with_missed),
            "missed_rate": _rate(with_missed, records),
            "missed_pair_ends": int(missed_ends),
            "records_with_false_links": int(with_false),
            "false_rate": _rate(with_false, records),
            "false_pair_ends": int(false_ends),
        }

    total = con.execute(f"SELECT {stats} FROM ea_records").fetchall()[0]
    uncorrupted = con.execute(
        f"SELECT {stats} FROM ea_records JOIN ea_record_corruptions USING (source_dataset, record_id) "
        f"WHERE n_corruptions = 0"
    ).fetchall()[0]
    by_corruption = con.execute(
        f"""SELECT k.field, k.corruption, {stats}
        FROM ea_corruptions k JOIN ea_records r USING (source_dataset, record_id)
        GROUP BY ALL ORDER BY k.field, k.corruption"""
    ).fetchall()
    by_count = con.execute(
        f"""SELECT CASE WHEN n_corruptions >= 3 THEN '3+' ELSE CAST(n_corruptions AS VARCHAR) END AS k, {stats}
        FROM ea_records JOIN ea_record_corruptions USING (source_dataset, record_id) GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    by_source = con.execute(f"SELECT source_dataset, {stats} FROM ea_records GROUP BY ALL ORDER BY 1").fetchall()
    log_rows, log_records, log_unknown = con.execute(
        """SELECT count(*), count(DISTINCT (source_dataset, record_id)),
                  count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM ea_records r
                      WHERE r.source_dataset = k.source_dataset AND r.record_id = k.record_id))
        FROM ea_corruptions k"""
    ).fetchall()[0]

    result: dict[str, Any] = {
        "records": int(total[0]),
        "totals": {
            "missed_pairs": int(total[2]) // 2,
            "false_pairs": int(total[4]) // 2,
            "records_with_missed_links": int(total[1]),
            "records_with_false_links": int(total[3]),
        },
        "all_records": summary(*total),
        "uncorrupted": summary(*uncorrupted),
        "by_corruption": [{"field": f, "corruption": c, **summary(*rest)} for f, c, *rest in by_corruption],
        "by_corruption_count": [{"corruptions": k, **summary(*rest)} for k, *rest in by_count],
        "by_source": [{"source_dataset": s, **summary(*rest)} for s, *rest in by_source],
        "by_source_pair": _by_source_pair(con),
        "corruption_log": {
            "file": str(corruptions_csv),
            "rows": int(log_rows),
            "records": int(log_records),
            "rows_not_in_run": int(log_unknown),
        },
    }
    if examples_path is not None:
        result["examples"] = _write_examples(con, Path(examples_path), max_examples)
    return result


def _by_source_pair(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """True, predicted, missed and false pairs between each two sources (and within one)."""
    pairs_of = "sum(CASE WHEN x.s = y.s THEN x.n * (x.n - 1) / 2 ELSE x.n * y.n END)"
    # Groups materialised once; the self-joins below meet only groups of one cluster or one person.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE ea_g AS "
        "SELECT cluster, person, source_dataset AS s, count(*) AS n FROM ea_labelled GROUP BY ALL"
    )
    rows = con.execute(
        f"""WITH g AS (SELECT * FROM ea_g),
        gc AS (SELECT cluster, s, sum(n) AS n FROM g GROUP BY ALL),
        gt AS (SELECT person, s, sum(n) AS n FROM g GROUP BY ALL),
        tp AS (SELECT x.s AS a, y.s AS b, {pairs_of} AS n FROM g x JOIN g y
               ON x.cluster = y.cluster AND x.person = y.person AND x.s <= y.s GROUP BY ALL),
        pred AS (SELECT x.s AS a, y.s AS b, {pairs_of} AS n FROM gc x JOIN gc y
                 ON x.cluster = y.cluster AND x.s <= y.s GROUP BY ALL),
        tru AS (SELECT x.s AS a, y.s AS b, {pairs_of} AS n FROM gt x JOIN gt y
                ON x.person = y.person AND x.s <= y.s GROUP BY ALL)
        SELECT a, b, coalesce(tru.n, 0), coalesce(pred.n, 0), coalesce(tp.n, 0)
        FROM tru FULL JOIN pred USING (a, b) FULL JOIN tp USING (a, b) ORDER BY a, b"""
    ).fetchall()
    return [
        {"source_a": a, "source_b": b, "true_pairs": int(t), "missed_pairs": int(t - tp),
         "predicted_pairs": int(p), "false_pairs": int(p - tp)}
        for a, b, t, p, tp in rows
        if t or p
    ]


def _write_examples(con: duckdb.DuckDBPyConnection, path: Path, max_examples: int | None) -> dict[str, Any]:
    """One row per record with a missed or a false link, with one record it should (not) be with.

    The example partner comes from group representatives, never from pairs: for a missed
    link, the first record of the largest other cluster holding the same true person; for a
    false link, the first record of the largest other true person in the same cluster.
    """
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_groups AS
        SELECT cluster, person, count(*) AS n,
               first(source_dataset ORDER BY source_dataset, record_id) AS rep_source,
               first(record_id ORDER BY source_dataset, record_id) AS rep_record
        FROM ea_labelled GROUP BY ALL"""
    )
    limit = "" if max_examples is None else f"LIMIT {int(max_examples)}"
    query = f"""
    WITH by_person AS (
        SELECT *, row_number() OVER (PARTITION BY person ORDER BY n DESC, cluster) AS k FROM ea_groups),
    by_cluster AS (
        SELECT *, row_number() OVER (PARTITION BY cluster ORDER BY n DESC, person) AS k FROM ea_groups),
    missed AS (
        SELECT * FROM (
            SELECT 'missed_link' AS kind, r.source_dataset, r.record_id, r.cluster, r.person AS true_person,
                   r.missed AS errors, o.rep_source AS other_source_dataset, o.rep_record AS other_record_id
            FROM ea_records r JOIN by_person o ON o.person = r.person AND o.cluster <> r.cluster AND o.k <= 2
            WHERE r.missed > 0
            QUALIFY row_number() OVER (PARTITION BY r.source_dataset, r.record_id ORDER BY o.k) = 1)
        ORDER BY errors DESC, source_dataset, record_id {limit}),
    false_ AS (
        SELECT * FROM (
            SELECT 'false_link' AS kind, r.source_dataset, r.record_id, r.cluster, r.person AS true_person,
                   r.false_ AS errors, o.rep_source AS other_source_dataset, o.rep_record AS other_record_id
            FROM ea_records r JOIN by_cluster o ON o.cluster = r.cluster AND o.person <> r.person AND o.k <= 2
            WHERE r.false_ > 0
            QUALIFY row_number() OVER (PARTITION BY r.source_dataset, r.record_id ORDER BY o.k) = 1)
        ORDER BY errors DESC, source_dataset, record_id {limit}),
    examples AS (SELECT * FROM missed UNION ALL SELECT * FROM false_)
    SELECT e.kind, e.source_dataset, e.record_id, e.cluster, e.true_person, e.errors,
           coalesce(k.corruptions, []) AS corruptions, e.other_source_dataset, e.other_record_id,
           coalesce(ko.corruptions, []) AS other_corruptions
    FROM examples e
    LEFT JOIN ea_record_corruptions k USING (source_dataset, record_id)
    LEFT JOIN ea_record_corruptions ko
        ON ko.source_dataset = e.other_source_dataset AND ko.record_id = e.other_record_id
    ORDER BY e.kind DESC, e.errors DESC, e.source_dataset, e.record_id"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    con.execute(f"COPY ({query}) TO {lit(str(tmp))} (FORMAT parquet)")
    tmp.replace(path)
    counts = dict(con.execute(f"SELECT kind, count(*) FROM read_parquet({lit(str(path))}) GROUP BY ALL").fetchall())
    return {"file": str(path), "missed_link_records": int(counts.get("missed_link", 0)),
            "false_link_records": int(counts.get("false_link", 0)), "max_per_kind": max_examples}
