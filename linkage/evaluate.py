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
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from linkage.errors import InputError
from linkage.sources import lit
from linkage.truth import load_truth  # noqa: F401  (re-exported: linkage.evaluate.load_truth)

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


# Without deterministic rules in the job, the baseline links records agreeing exactly on
# every name and date column the job has.
BASELINE_FALLBACK = ("first_name", "surname", "date_of_birth")


def baseline_rules(manifest: dict[str, Any], standardised_columns: list[str]) -> list[list[str]]:
    """The job's own deterministic rules (``model.deterministic_links`` in its config) or,
    when it has none, exact agreement on every name and date column: the linkage a team
    would do without a model."""
    rules: list[list[str]] = []
    config_path = manifest.get("config_path")
    if config_path and Path(config_path).is_file():
        from linkage.config import load_config

        try:
            rules = [list(d.columns) for d in load_config(config_path).config.model.deterministic_links]
        except Exception:  # a config changed since the run: fall back on the columns alone
            rules = []
    rules = [r for r in rules if all(c in standardised_columns for c in r)]
    if not rules:
        exact = [c for c in BASELINE_FALLBACK if c in standardised_columns]
        rules = [exact] if exact else []
    return rules


# --- error attribution -------------------------------------------------------------------------

# Buckets of the weakest link of a cluster holding a false chain (match weight).
WEAKEST_LINK_BUCKETS = ((None, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, None))


def error_attribution(con: duckdb.DuckDBPyConnection, threshold: float) -> dict[str, Any]:
    """Every missed and every false pair, classed. Set-based over these tables:

    ``node_truth(node_id, person)``, ``node_cluster(node_id, cluster, weakest)`` (the run's
    clusters with their weakest link's match weight), ``eval_scored(node_id_l, node_id_r,
    match_probability)``, ``eval_deterministic(node_id_l, node_id_r)`` (links kept) and
    ``eval_cut(node_id_l, node_id_r, reason)`` (links clustering cut).

    Missed pairs (true pairs not placed together) are: ``not_scored`` (never compared by
    the blocking rules, or scored below the kept floor, so not in predictions), ``below_threshold``
    (scored under the threshold) or ``cut_by_clustering`` (a link at or above the threshold,
    or a deterministic link, that clustering cut). False pairs (placed together, not the same
    person) are ``direct`` (the two records are linked themselves) or ``chain`` (joined
    only through other records), the chains counted by their cluster's weakest link.
    """
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_links AS
        SELECT least(node_id_l, node_id_r) AS a, greatest(node_id_l, node_id_r) AS b,
               max(match_probability) AS p FROM eval_scored GROUP BY ALL"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_det AS
        SELECT DISTINCT least(node_id_l, node_id_r) AS a, greatest(node_id_l, node_id_r) AS b FROM eval_deterministic"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_cut AS
        SELECT least(node_id_l, node_id_r) AS a, greatest(node_id_l, node_id_r) AS b, min(reason) AS reason
        FROM eval_cut GROUP BY ALL"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_nodes AS
        SELECT t.node_id, t.person, c.cluster, c.weakest FROM node_truth t JOIN node_cluster c USING (node_id)"""
    )
    # Missed: true pairs in different clusters (true persons are small: their pairs are few).
    missed = con.execute(
        f"""WITH m AS (
            SELECT x.node_id AS a, y.node_id AS b FROM ea_nodes x JOIN ea_nodes y
            ON x.person = y.person AND x.node_id < y.node_id AND x.cluster <> y.cluster)
        SELECT CASE WHEN c.a IS NOT NULL THEN 'cut_by_clustering'
                    WHEN d.a IS NOT NULL OR l.p >= {threshold} THEN 'cut_by_clustering'
                    WHEN l.a IS NOT NULL THEN 'below_threshold'
                    ELSE 'not_scored' END AS class,
               coalesce(c.reason, CASE WHEN d.a IS NOT NULL OR l.p >= {threshold} THEN 'linked, clustered apart' END) AS reason,
               count(*)
        FROM m LEFT JOIN ea_links l USING (a, b) LEFT JOIN ea_det d USING (a, b) LEFT JOIN ea_cut c USING (a, b)
        GROUP BY ALL"""
    ).fetchall()
    missed_classes = {"not_scored": 0, "below_threshold": 0, "cut_by_clustering": 0}
    cut_reasons: dict[str, int] = {}
    for cls, reason, n in missed:
        missed_classes[cls] += int(n)
        if cls == "cut_by_clustering":
            cut_reasons[reason] = cut_reasons.get(reason, 0) + int(n)
    # False pairs: totals from group sizes; the direct ones from the kept links.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ea_false_by_cluster AS
        WITH ct AS (SELECT cluster, person, count(*) AS n FROM ea_nodes GROUP BY ALL),
        c AS (SELECT cluster, sum(n) AS n, sum(n * n) AS nn FROM ct GROUP BY ALL)
        SELECT cluster, CAST((n * n - nn) / 2 AS BIGINT) AS false_pairs FROM c WHERE n * n > nn"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ea_direct AS
        WITH kept AS (
            -- a pair linked both ways counts once, as deterministic
            SELECT a, b, min(kind) AS kind FROM (
                SELECT a, b, 'model' AS kind FROM ea_links WHERE p >= {threshold}
                UNION ALL SELECT a, b, 'deterministic' FROM ea_det) GROUP BY ALL)
        SELECT x.cluster, k.kind, count(*) AS n
        FROM kept k JOIN ea_nodes x ON x.node_id = k.a JOIN ea_nodes y ON y.node_id = k.b
        LEFT JOIN ea_cut c ON c.a = k.a AND c.b = k.b
        WHERE x.cluster = y.cluster AND x.person <> y.person AND c.a IS NULL
        GROUP BY ALL"""
    )
    total_false = con.execute("SELECT coalesce(sum(false_pairs), 0) FROM ea_false_by_cluster").fetchall()[0][0]
    direct = dict(con.execute("SELECT kind, sum(n) FROM ea_direct GROUP BY ALL").fetchall())
    direct_total = int(sum(direct.values()))
    buckets = []
    for lo, hi in WEAKEST_LINK_BUCKETS:
        cond = " AND ".join(
            ([f"w.weakest >= {lo}"] if lo is not None else []) + ([f"w.weakest < {hi}"] if hi is not None else [])
        )
        n = con.execute(
            f"""SELECT coalesce(sum(f.false_pairs - coalesce(d.n, 0)), 0)
            FROM ea_false_by_cluster f
            JOIN (SELECT cluster, min(weakest) AS weakest FROM ea_nodes GROUP BY ALL) w USING (cluster)
            LEFT JOIN (SELECT cluster, sum(n) AS n FROM ea_direct GROUP BY ALL) d USING (cluster)
            WHERE {cond}"""
        ).fetchall()[0][0]
        label = f"< {hi:g}" if lo is None else (f">= {lo:g}" if hi is None else f"{lo:g} to {hi:g}")
        buckets.append({"weakest_link_match_weight": label, "chain_pairs": int(n)})
    only_det = con.execute(
        """SELECT coalesce(sum(f.false_pairs - coalesce(d.n, 0)), 0) FROM ea_false_by_cluster f
        JOIN (SELECT cluster, min(weakest) AS weakest FROM ea_nodes GROUP BY ALL) w USING (cluster)
        LEFT JOIN (SELECT cluster, sum(n) AS n FROM ea_direct GROUP BY ALL) d USING (cluster)
        WHERE w.weakest IS NULL"""
    ).fetchall()[0][0]
    buckets.append({"weakest_link_match_weight": "deterministic links only", "chain_pairs": int(only_det)})
    chain = int(total_false) - direct_total
    return {
        "missed_pairs": {"total": int(sum(missed_classes.values())), **missed_classes,
                         "cut_by_clustering_reasons": dict(sorted(cut_reasons.items()))},
        "false_pairs": {"total": int(total_false), "direct_model_link": int(direct.get("model", 0)),
                        "direct_deterministic_link": int(direct.get("deterministic", 0)),
                        "chain": chain, "chain_by_weakest_link": buckets},
    }


def format_attribution(att: dict[str, Any]) -> str:
    m, f = att["missed_pairs"], att["false_pairs"]
    lines = [
        f"missed pairs {m['total']:,}: never scored {m['not_scored']:,}, below the threshold "
        f"{m['below_threshold']:,}, cut by clustering {m['cut_by_clustering']:,}",
        f"false pairs {f['total']:,}: direct model links {f['direct_model_link']:,}, direct deterministic "
        f"links {f['direct_deterministic_link']:,}, chains {f['chain']:,} (by the cluster's weakest link: "
        + ", ".join(f"{b['weakest_link_match_weight']} {b['chain_pairs']:,}" for b in f["chain_by_weakest_link"])
        + ")",
    ]
    return "\n".join(lines)


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
    from linkage.bias import evaluation_by_group  # precision and recall by the link-rate breakdowns

    result["by_group"] = evaluation_by_group(con, restricted / "record_groups.parquet", "labelled")
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

    # The run's own clusters by node, with their weakest link, for the error attribution.
    con.execute(
        f"""CREATE TABLE node_cluster AS
        SELECT n.node_id, p.cluster, c.cluster_min_match_weight AS weakest FROM nodes n
        JOIN predicted p USING (source_dataset, record_id)
        LEFT JOIN read_parquet({r['crosswalk']}) c USING (source_dataset, record_id)"""
    )
    splits = restricted / "cluster_splits.parquet"
    cut = (
        f"SELECT source_dataset_l, record_id_l, source_dataset_r, record_id_r, reason FROM read_parquet({lit(str(splits))})"
        if splits.is_file() else
        "SELECT NULL AS source_dataset_l, NULL AS record_id_l, NULL AS source_dataset_r, NULL AS record_id_r, "
        "NULL AS reason WHERE false"
    )
    con.execute(
        f"""CREATE TABLE eval_cut AS SELECT nl.node_id AS node_id_l, nr.node_id AS node_id_r, e.reason FROM ({cut}) e
        JOIN nodes nl ON nl.source_dataset = e.source_dataset_l AND nl.record_id = e.record_id_l
        JOIN nodes nr ON nr.source_dataset = e.source_dataset_r AND nr.record_id = e.record_id_r"""
    )
    result["error_attribution"] = error_attribution(con, threshold)

    columns = [c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE standardised)").fetchall()]
    rules = baseline_rules(manifest, columns)
    baseline_edges = " UNION ALL ".join(_star_edges(cols) for cols in rules) or (
        "SELECT source_dataset AS source_dataset_l, record_id AS record_id_l, source_dataset AS source_dataset_r, "
        "record_id AS record_id_r FROM standardised WHERE false")
    base = _components_scores(con, db_api, _node_edges(baseline_edges))
    result["baseline"] = {
        "description": "deterministic: exact agreement on every column of one of these rules: "
        + "; ".join(" & ".join(r) for r in rules),
        "rules": rules,
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
    # The command prints the scores; the attribution is printed here until it has a table there.
    print(format_attribution(result["error_attribution"]), file=sys.stderr)
    from linkage.report import write_report

    write_report(run_dir)
    return result
