"""Clusters: connected components of the links at the job's threshold plus deterministic links.

Tables (in the job's DuckDB database):
- ``nodes(node_id, source_dataset, record_id, ...)``: every standardised record, numbered,
  with all its columns (the model scores this table: ``linkage.model.RUN_IDS``).
- ``links(node_id_l, node_id_r, match_weight, match_probability, kind)``: the edges used.
- ``clusters(node_id, source_dataset, record_id, cluster_id, cluster_size,
  cluster_min_match_weight, cluster_links, deterministic_links)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import duckdb

from linkage.config import DeterministicLink
from linkage.sources import lit, q


@dataclass(frozen=True)
class ClusterStats:
    records: int
    clusters: int
    singletons: int
    largest: int
    model_links: int
    deterministic_links: int
    conflicting_pnc_clusters: int
    size_histogram: dict[int, int]
    # deterministic rule -> groups over its max_group_size (not linked on agreement alone)
    oversized_deterministic_groups: dict[str, dict[str, int]] = field(default_factory=dict)


def build_nodes(con: duckdb.DuckDBPyConnection, records_view: str) -> None:
    """``nodes``: the records numbered 1..n in (source_dataset, record_id) order.

    Only the keys are sorted and the numbers joined back: sorting the whole wide rows
    cost three times as much at a million records.
    """
    con.execute(
        f"""CREATE OR REPLACE TABLE nodes AS
        SELECT k.node_id, r.* FROM {records_view} r
        JOIN (SELECT source_dataset, record_id,
                     row_number() OVER (ORDER BY source_dataset, record_id) AS node_id
              FROM {records_view}) k USING (source_dataset, record_id)"""
    )


def build_links(
    con: duckdb.DuckDBPyConnection,
    predictions: str,
    threshold: float,
    deterministic: list[DeterministicLink],
) -> dict[str, dict[str, int]]:
    """Edges: scored pairs at or above the threshold, and a star per deterministic group.

    Returns, per deterministic rule, the groups too large to link on agreement alone.

    ``predictions`` has ``node_id_l, node_id_r, match_weight, match_probability``. A
    deterministic group (records agreeing on every column of a rule) is joined to its
    lowest node: n - 1 edges instead of n * (n - 1) / 2, with the same components.
    """
    con.execute(
        f"""CREATE OR REPLACE TABLE links AS
        SELECT node_id_l, node_id_r, match_weight, match_probability, 'model' AS kind
        FROM {predictions} WHERE match_probability >= {threshold}"""
    )
    oversized: dict[str, dict[str, int]] = {}
    for rule in deterministic:
        cols = ", ".join(q(c) for c in rule.columns)
        not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in rule.columns)
        con.execute(
            f"""INSERT INTO links
            SELECT min(node_id) OVER (PARTITION BY {cols}) AS node_id_l, node_id AS node_id_r,
                   NULL, 1.0, {lit('deterministic: ' + rule.name)}
            FROM nodes WHERE {not_null}
            QUALIFY node_id_l <> node_id_r AND count(*) OVER (PARTITION BY {cols}) <= {rule.max_group_size}"""
        )
        groups, records = con.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM nodes WHERE {not_null} "
            f"GROUP BY {cols} HAVING n > {rule.max_group_size})"
        ).fetchall()[0]
        if groups:
            oversized[rule.name] = {"groups": int(groups), "records": int(records)}
    return oversized


def connected_components(
    con: duckdb.DuckDBPyConnection, db_api, edges: str = "links", out: str = "cc"
) -> None:
    """``out(node_id, cluster_id)`` over ``nodes`` and the ``edges(node_id_l, node_id_r)`` table.

    Splink's connected components: fine on DuckDB 2.0, unlike
    ``cluster_using_single_best_links``, which is quadratic there (see SPLINK5.md).
    """
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    cc = cluster_pairwise_predictions_at_threshold(
        con.table("nodes").select("node_id"),
        con.table(edges).select("node_id_l, node_id_r"),
        db_api=db_api,
        node_id_column_name="node_id",
    )
    con.execute(f"CREATE OR REPLACE TABLE {out} AS SELECT node_id, cluster_id FROM {cc.physical_name}")
    cc.drop_table_from_database_and_remove_from_cache()


def summarise_clusters(con: duckdb.DuckDBPyConnection) -> ClusterStats:
    """``clusters``: every node with its cluster and the cluster's evidence."""
    con.execute(
        """CREATE OR REPLACE TABLE clusters AS
        WITH sizes AS (SELECT cluster_id, count(*) AS cluster_size FROM cc GROUP BY ALL),
        edges AS (
            SELECT c.cluster_id, min(l.match_weight) AS cluster_min_match_weight,
                   count(*) FILTER (WHERE l.kind = 'model') AS cluster_links,
                   count(*) FILTER (WHERE l.kind <> 'model') AS deterministic_links
            FROM links l JOIN cc c ON c.node_id = l.node_id_l GROUP BY ALL
        )
        SELECT n.node_id, n.source_dataset, n.record_id, c.cluster_id, s.cluster_size,
               e.cluster_min_match_weight, coalesce(e.cluster_links, 0) AS cluster_links,
               coalesce(e.deterministic_links, 0) AS deterministic_links
        FROM nodes n JOIN cc c USING (node_id) JOIN sizes s USING (cluster_id)
        LEFT JOIN edges e USING (cluster_id)"""
    )
    records, clusters, singletons, largest = con.execute(
        "SELECT count(*), count(DISTINCT cluster_id), count(*) FILTER (WHERE cluster_size = 1), "
        "coalesce(max(cluster_size), 0) FROM clusters"
    ).fetchall()[0]
    model_links, det_links = con.execute(
        "SELECT count(*) FILTER (WHERE kind = 'model'), count(*) FILTER (WHERE kind <> 'model') FROM links"
    ).fetchall()[0]
    conflicts = con.execute(
        """SELECT count(*) FROM (
            SELECT c.cluster_id FROM clusters c JOIN nodes n USING (node_id)
            WHERE n.pnc_key IS NOT NULL GROUP BY ALL HAVING count(DISTINCT n.pnc_key) > 1)"""
    ).fetchall()[0][0]
    hist = dict(
        con.execute(
            "SELECT cluster_size, count(*) FROM (SELECT DISTINCT cluster_id, cluster_size FROM clusters) "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()
    )
    return ClusterStats(records, clusters, singletons, largest, model_links, det_links, conflicts, hist)


def cluster(
    con: duckdb.DuckDBPyConnection,
    db_api,
    predictions: str,
    threshold: float,
    deterministic: list[DeterministicLink],
) -> ClusterStats:
    oversized = build_links(con, predictions, threshold, deterministic)
    connected_components(con, db_api)
    return replace(summarise_clusters(con), oversized_deterministic_groups=oversized)
