"""Score a finished run against the truth: pairwise and B-cubed precision, recall and F1.

Counts come from group sizes, never from enumerating pairs, so scoring costs a few
GROUP BYs whatever the size. With ``n_ct`` the records of predicted cluster c that
belong to true person t:

- pairwise: true positives = sum C(n_ct, 2); predicted pairs = sum C(n_c, 2);
  true pairs = sum C(n_t, 2).
- B-cubed: precision = (1/N) sum n_ct^2 / n_c; recall = (1/N) sum n_ct^2 / n_t.

Records the run rejected count as singletons (the run did not link them).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from linkage.errors import InputError
from linkage.sources import lit

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


def f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _prf(tp: float, predicted: float, actual: float) -> dict[str, float]:
    # No predicted pairs: precision is vacuously 1. No true pairs: recall likewise.
    p = tp / predicted if predicted else 1.0
    r = tp / actual if actual else 1.0
    return {"precision": round(p, 6), "recall": round(r, 6), "f1": round(f1(p, r), 6)}


def scores(con: duckdb.DuckDBPyConnection, labelled: str) -> dict[str, Any]:
    """Pairwise and cluster (B-cubed) scores of ``labelled(source_dataset, record_id, cluster, person)``."""
    tp, pred, true, n, bp, br = con.execute(
        f"""WITH ct AS (SELECT cluster, person, count(*) AS n FROM {labelled} GROUP BY ALL),
        c AS (SELECT cluster, sum(n) AS n FROM ct GROUP BY ALL),
        t AS (SELECT person, sum(n) AS n FROM ct GROUP BY ALL)
        SELECT (SELECT sum(n * (n - 1) / 2) FROM ct), (SELECT sum(n * (n - 1) / 2) FROM c),
               (SELECT sum(n * (n - 1) / 2) FROM t), (SELECT sum(n) FROM ct),
               (SELECT sum(ct.n * ct.n / c.n) FROM ct JOIN c USING (cluster)),
               (SELECT sum(ct.n * ct.n / t.n) FROM ct JOIN t USING (person))"""
    ).fetchall()[0]
    if not n:
        raise InputError("nothing to score: no run record has a truth label")
    bp, br = bp / n, br / n
    return {
        "pairwise": {**_prf(float(tp or 0), float(pred or 0), float(true or 0)),
                     "true_positive_pairs": int(tp or 0), "predicted_pairs": int(pred or 0), "true_pairs": int(true or 0)},
        "cluster": {"precision": round(bp, 6), "recall": round(br, 6), "f1": round(f1(bp, br), 6)},
        "records": int(n),
    }


def pairwise_by_source_pair(con: duckdb.DuckDBPyConnection, labelled: str) -> list[dict[str, Any]]:
    """Pairwise precision, recall and F1 for the pairs between each two sources (and within each)."""
    rows = con.execute(
        f"""WITH g AS (SELECT cluster, person, source_dataset AS s, count(*) AS n FROM {labelled} GROUP BY ALL),
        pairs(kind, a, b, n) AS (
            SELECT 'tp', x.s, y.s, sum(CASE WHEN x.s = y.s THEN x.n * (x.n - 1) / 2 ELSE x.n * y.n END)
            FROM g x JOIN g y ON x.cluster = y.cluster AND x.person = y.person AND x.s <= y.s GROUP BY ALL
            UNION ALL
            SELECT 'pred', x.s, y.s, sum(CASE WHEN x.s = y.s THEN x.n * (x.n - 1) / 2 ELSE x.n * y.n END)
            FROM (SELECT cluster, s, sum(n) AS n FROM g GROUP BY ALL) x
            JOIN (SELECT cluster, s, sum(n) AS n FROM g GROUP BY ALL) y ON x.cluster = y.cluster AND x.s <= y.s
            GROUP BY ALL
            UNION ALL
            SELECT 'true', x.s, y.s, sum(CASE WHEN x.s = y.s THEN x.n * (x.n - 1) / 2 ELSE x.n * y.n END)
            FROM (SELECT person, s, sum(n) AS n FROM g GROUP BY ALL) x
            JOIN (SELECT person, s, sum(n) AS n FROM g GROUP BY ALL) y ON x.person = y.person AND x.s <= y.s
            GROUP BY ALL)
        SELECT a, b, kind, sum(n) FROM pairs GROUP BY ALL ORDER BY a, b"""
    ).fetchall()
    table: dict[tuple[str, str], dict[str, float]] = {}
    for a, b, kind, n in rows:
        table.setdefault((a, b), {"tp": 0, "pred": 0, "true": 0})[kind] = float(n)
    return [
        {"source_a": a, "source_b": b, **_prf(v["tp"], v["pred"], v["true"]), "true_pairs": int(v["true"]),
         "predicted_pairs": int(v["pred"])}
        for (a, b), v in sorted(table.items())
    ]


@dataclass(frozen=True)
class TruthCheck:
    truth_rows: int
    run_records: int
    unlabelled_records: int  # run records the truth does not label: left out of scoring
    unknown_truth_rows: int  # truth rows naming records the run never saw


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


def label(con: duckdb.DuckDBPyConnection, predicted: str, out: str = "labelled") -> TruthCheck:
    """Join ``predicted(source_dataset, record_id, cluster)`` to ``truth`` as ``out``; count misses."""
    con.execute(
        f"CREATE OR REPLACE TABLE {out} AS SELECT p.source_dataset, p.record_id, p.cluster, t.person "
        f"FROM {predicted} p JOIN truth t USING (source_dataset, record_id)"
    )
    truth_rows, run_records, labelled = con.execute(
        f"SELECT (SELECT count(*) FROM truth), (SELECT count(*) FROM {predicted}), (SELECT count(*) FROM {out})"
    ).fetchall()[0]
    check = TruthCheck(truth_rows, run_records, run_records - labelled, truth_rows - labelled)
    if check.unlabelled_records:
        warnings.warn(f"{check.unlabelled_records} of {run_records} run records have no truth label and are not scored", stacklevel=2)
    if check.unknown_truth_rows:
        warnings.warn(f"{check.unknown_truth_rows} truth rows name records the run never read; they are ignored", stacklevel=2)
    return check


def write_evaluation(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")


# --- scoring a run directory ------------------------------------------------------------------


def _node_edges(edges_sql: str) -> str:
    """The edges query (source/record pairs) as node id pairs."""
    return f"""SELECT nl.node_id AS node_id_l, nr.node_id AS node_id_r FROM ({edges_sql}) e
        JOIN nodes nl ON nl.source_dataset = e.source_dataset_l AND nl.record_id = e.record_id_l
        JOIN nodes nr ON nr.source_dataset = e.source_dataset_r AND nr.record_id = e.record_id_r"""


def _components_scores(con: duckdb.DuckDBPyConnection, db_api, node_edges_sql: str) -> dict[str, Any]:
    """Cluster ``nodes`` by the edges query (node id pairs), then score against ``node_truth``."""
    from linkage.cluster import connected_components

    con.execute(f"CREATE OR REPLACE TABLE eval_edges AS {node_edges_sql}")
    connected_components(con, db_api, edges="eval_edges", out="eval_cc")
    con.execute(
        "CREATE OR REPLACE TABLE eval_labelled AS SELECT c.cluster_id AS cluster, t.person "
        "FROM eval_cc c JOIN node_truth t USING (node_id)"
    )
    return scores(con, "eval_labelled")


def _star_edges(columns: list[str]) -> str:
    """Edges joining records that agree on every column to the group's first record."""
    cols = ", ".join(columns)
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in columns)
    return f"""SELECT first_value(source_dataset) OVER w AS source_dataset_l,
                      first_value(record_id) OVER w AS record_id_l,
                      source_dataset AS source_dataset_r, record_id AS record_id_r
               FROM standardised WHERE {not_null}
               WINDOW w AS (PARTITION BY {cols} ORDER BY source_dataset, record_id)"""


# How linkage is done without a model: a shared valid PNC ID, then exact name and date of birth.
BASELINE_RULES = (["pnc_key"], ["first_name", "surname", "date_of_birth"])


def evaluate_run(run_dir: Path, truth_csv: Path, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, Any]:
    """Score the run's clusters, a threshold sweep and the deterministic baseline; write evaluation.json."""
    from splink import DuckDBAPI

    run_dir, truth_csv = Path(run_dir), Path(truth_csv)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"{run_dir}: not a linkage run directory (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    restricted = run_dir / "restricted"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # the command prints its own progress
    db_api = DuckDBAPI(connection=con)
    r = {name: lit(str(restricted / f"{name}.parquet")) for name in
         ("crosswalk", "rejects", "predictions", "deterministic_links", "standardised")}
    # Rejected records were not linked: each is its own cluster.
    con.execute(
        f"""CREATE TABLE predicted AS
        SELECT source_dataset, record_id, person_key AS cluster FROM read_parquet({r['crosswalk']})
        UNION ALL
        SELECT source_dataset, coalesce(record_id, '#row' || row_number), 'rejected:' || source_dataset || ':' ||
               coalesce(record_id, '#row' || row_number) FROM read_parquet({r['rejects']})"""
    )
    sources = list(manifest["inputs"])
    load_truth(con, truth_csv, sources)
    check = label(con, "predicted")
    result: dict[str, Any] = scores(con, "labelled")
    threshold = manifest["model"]["threshold_match_probability"]
    result["threshold_match_probability"] = threshold
    result["by_source_pair"] = pairwise_by_source_pair(con, "labelled")
    result["truth"] = {
        "file": str(truth_csv), "rows": check.truth_rows, "run_records": check.run_records,
        "unlabelled_run_records": check.unlabelled_records, "truth_rows_not_in_run": check.unknown_truth_rows,
    }

    con.execute(f"CREATE TABLE standardised AS SELECT * FROM read_parquet({r['standardised']})")
    con.execute(
        "CREATE TABLE nodes AS SELECT row_number() OVER (ORDER BY source_dataset, record_id) AS node_id, "
        "source_dataset, record_id FROM standardised"
    )
    # Rejected records are singletons in every clustering below, as above.
    con.execute(
        f"INSERT INTO nodes SELECT (SELECT max(node_id) FROM nodes) + row_number() OVER (), source_dataset, "
        f"coalesce(record_id, '#row' || row_number) FROM read_parquet({r['rejects']})"
    )
    # Truth, scored pairs and deterministic links by node id once, not once per threshold.
    con.execute("CREATE TABLE node_truth AS SELECT n.node_id, t.person FROM nodes n JOIN truth t USING (source_dataset, record_id)")
    con.execute(
        f"""CREATE TABLE eval_scored AS
        SELECT nl.node_id AS node_id_l, nr.node_id AS node_id_r, p.match_probability
        FROM read_parquet({r['predictions']}) p
        JOIN nodes nl ON nl.source_dataset = p.source_dataset_l AND nl.record_id = p.record_id_l
        JOIN nodes nr ON nr.source_dataset = p.source_dataset_r AND nr.record_id = p.record_id_r"""
    )
    deterministic = (
        f"SELECT source_dataset_l, record_id_l, source_dataset_r, record_id_r FROM read_parquet({r['deterministic_links']})"
    )
    con.execute(f"CREATE TABLE eval_deterministic AS {_node_edges(deterministic)}")
    curve = []
    for t in sorted(set(thresholds) | {threshold}):
        edges = (
            f"SELECT node_id_l, node_id_r FROM eval_scored WHERE match_probability >= {t} "
            f"UNION ALL SELECT node_id_l, node_id_r FROM eval_deterministic"
        )
        s = _components_scores(con, db_api, edges)
        curve.append({"threshold_match_probability": t, "pairwise": s["pairwise"], "cluster": s["cluster"]})
    result["threshold_curve"] = curve

    baseline_edges = " UNION ALL ".join(_star_edges(cols) for cols in BASELINE_RULES)
    base = _components_scores(con, db_api, _node_edges(baseline_edges))
    result["baseline"] = {
        "description": "deterministic: a shared valid PNC ID, or exact first name, surname and date of birth",
        "pairwise": base["pairwise"],
        "cluster": base["cluster"],
    }
    result["gain_over_baseline"] = {
        "pairwise_f1": round(result["pairwise"]["f1"] - base["pairwise"]["f1"], 6),
        "cluster_f1": round(result["cluster"]["f1"] - base["cluster"]["f1"], 6),
    }
    # Synthetic truth comes with a corruption log: say which corruptions the errors carry.
    corruptions = truth_csv.parent / "corruptions.csv"
    if corruptions.is_file():
        from linkage.error_analysis import error_analysis

        result["error_analysis"] = error_analysis(
            con, truth_csv, corruptions, predicted="predicted",
            examples_path=restricted / "error_examples.parquet",
        )
    con.close()
    write_evaluation(run_dir / "evaluation.json", result)
    from linkage.report import write_report

    write_report(run_dir)
    return result
