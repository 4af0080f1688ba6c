"""Our set-based connected components give Splink's clusters, ids included (lowest node id)."""

from __future__ import annotations

import random

import duckdb
import pytest
from splink.clustering import cluster_pairwise_predictions_at_threshold

from linkage.cluster import connected_components
from linkage.model import make_db_api


def _graph(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.randint(1, 120)
    edges = [(rnd.randint(1, n), rnd.randint(1, n)) for _ in range(rnd.randint(0, n))]
    order = list(range(1, n + 1))
    rnd.shuffle(order)  # a long path through shuffled ids: many rounds of hooking and jumping
    edges += [(order[i], order[i + 1]) for i in range(min(n - 1, rnd.choice([0, n // 2, n])))]
    con.execute("CREATE OR REPLACE TABLE nodes AS SELECT range AS node_id FROM range(1, ?)", [n + 1])
    con.execute("CREATE OR REPLACE TABLE edges (node_id_l BIGINT, node_id_r BIGINT)")
    if edges:
        con.executemany("INSERT INTO edges VALUES (?, ?)", edges)


@pytest.mark.parametrize("seed", range(4))
def test_components_are_splinks(seed):
    con = duckdb.connect()
    try:
        _graph(con, seed)
        connected_components(con, edges="edges", out="ours")
        theirs = cluster_pairwise_predictions_at_threshold(
            con.table("nodes"), con.table("edges"), db_api=make_db_api(con), node_id_column_name="node_id")
        got = con.execute("SELECT node_id, cluster_id FROM ours ORDER BY node_id").fetchall()
        want = con.execute(f"SELECT node_id, cluster_id FROM {theirs.physical_name} ORDER BY node_id").fetchall()
        assert got == want
        assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '\\_cc\\_%' ESCAPE '\\'"
                               ).fetchall()[0][0]
    finally:
        con.close()
