"""Internal person keys that stay stable from one run to the next.

A cluster is a set of records; its person key is an internal, restricted-zone name for
it (analysts see only a keyed hash of it, ``linkage.deidentify``). Given the previous
run's crosswalk, keys carry over by record overlap:

- each previous key goes to the current cluster holding most of its records (a split:
  the largest part keeps the key, the other parts get new keys);
- a cluster offered several previous keys keeps the one whose previous cluster was
  largest (a merge: the larger keeps its key, the others are retired into it);
- a cluster offered none gets a new key.

A previous table may carry a ``priority`` per row (default 0): a key goes first to the
cluster holding its highest-priority record, and a cluster keeps the offered key of the
highest priority before the largest. The cross-government job gives the justice persons'
keys priority 1, so a justice person keeps its justice run's key whatever department
records, linked or not last month, its cluster now holds.

New keys hash the cluster's first record with the run's generation number, so a rerun
with nothing previous gives identical keys, and a key freed by a split is never reissued.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from linkage.sources import lit

KEY_LENGTH = 20  # hex characters of the key hash: 80 bits


@dataclass(frozen=True)
class IdentityStats:
    generation: int
    people: int
    kept: int
    new: int
    merges: int
    splits: int
    retired: int


def _new_key_sql(member: str, generation: int) -> str:
    return f"'K' || substr(sha256({member} || '#' || {generation}), 1, {KEY_LENGTH})"


def assign_person_keys(
    con: duckdb.DuckDBPyConnection, previous: str | None, generation: int, by_node: str | None = None
) -> IdentityStats:
    """Create ``person_keys(cluster_id, person_key)`` and ``id_lineage`` from ``clusters``.

    ``previous`` names a table ``(source_dataset, record_id, person_key)`` or is None.
    ``by_node`` (an incremental run's ``_prev(node_id, prev_key)``: the same keys by this
    run's record numbers) is joined to the clusters instead of ``previous`` by record id.
    """
    first_member = "min(source_dataset || '/' || record_id)"
    if previous is None:
        con.execute(
            f"""CREATE OR REPLACE TABLE person_keys AS
            SELECT cluster_id, {_new_key_sql(first_member, generation)} AS person_key, 'new' AS origin
            FROM clusters GROUP BY cluster_id"""
        )
        con.execute(
            "CREATE OR REPLACE TABLE id_lineage AS SELECT person_key, 'new' AS event, "
            "CAST(NULL AS VARCHAR) AS other_key FROM person_keys"
        )
        n = con.execute("SELECT count(*) FROM person_keys").fetchall()[0][0]
        return IdentityStats(generation, n, 0, n, 0, 0, 0)

    cols = {c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {previous})").fetchall()}
    priority = "p.priority" if "priority" in cols else "0"
    if by_node is not None and "priority" not in cols:
        con.execute(
            f"""CREATE OR REPLACE TABLE _overlap AS
            SELECT c.cluster_id, p.prev_key, count(*) AS n, 0 AS priority
            FROM clusters c JOIN {by_node} p USING (node_id) WHERE p.prev_key IS NOT NULL GROUP BY ALL"""
        )
    else:
        con.execute(
            f"""CREATE OR REPLACE TABLE _overlap AS
            SELECT c.cluster_id, p.person_key AS prev_key, count(*) AS n, max({priority}) AS priority
            FROM clusters c JOIN {previous} p USING (source_dataset, record_id) GROUP BY ALL"""
        )
    con.execute(
        f"""CREATE OR REPLACE TABLE _prev_size AS
        SELECT person_key AS prev_key, count(*) AS prev_size, max({priority}) AS priority
        FROM {previous} p GROUP BY ALL"""
    )
    # Each previous key to the cluster with its highest-priority record, then most of its
    # records (ties: lowest cluster id).
    con.execute(
        """CREATE OR REPLACE TABLE _offered AS
        SELECT cluster_id, prev_key FROM _overlap
        QUALIFY row_number() OVER (PARTITION BY prev_key ORDER BY priority DESC, n DESC, cluster_id) = 1"""
    )
    # Each cluster keeps the offered key of the highest priority, then whose previous
    # cluster was largest.
    con.execute(
        """CREATE OR REPLACE TABLE _kept AS
        SELECT o.cluster_id, o.prev_key AS person_key FROM _offered o JOIN _prev_size USING (prev_key)
        QUALIFY row_number() OVER (PARTITION BY o.cluster_id ORDER BY priority DESC, prev_size DESC, prev_key) = 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE person_keys AS
        SELECT c.cluster_id, coalesce(k.person_key, {_new_key_sql('c.first_member', generation)}) AS person_key,
               CASE WHEN k.person_key IS NOT NULL THEN 'kept'
                    WHEN c.cluster_id IN (SELECT cluster_id FROM _overlap) THEN 'split'
                    ELSE 'new' END AS origin
        FROM (SELECT cluster_id, {first_member} AS first_member FROM clusters GROUP BY cluster_id) c
        LEFT JOIN _kept k USING (cluster_id)"""
    )
    con.execute(
        """CREATE OR REPLACE TABLE id_lineage AS
        -- a cluster that kept a key: 'kept'; that took none: 'new'
        SELECT person_key, origin AS event, CAST(NULL AS VARCHAR) AS other_key
        FROM person_keys WHERE origin IN ('kept', 'new')
        UNION ALL
        -- a split: the new key and each previous key it took records from
        SELECT pk.person_key, 'split_from', o.prev_key
        FROM person_keys pk JOIN _overlap o USING (cluster_id) WHERE pk.origin = 'split'
        UNION ALL
        -- a merge: a previous key offered to a cluster that kept another one
        SELECT o.prev_key, 'merged_into', k.person_key
        FROM _offered o JOIN _kept k USING (cluster_id) WHERE o.prev_key <> k.person_key
        UNION ALL
        -- a previous key none of whose records are here any more
        SELECT prev_key, 'retired', NULL FROM _prev_size
        WHERE prev_key NOT IN (SELECT prev_key FROM _overlap)"""
    )
    counts = dict(con.execute("SELECT event, count(DISTINCT person_key) FROM id_lineage GROUP BY ALL").fetchall())
    people = con.execute("SELECT count(*) FROM person_keys").fetchall()[0][0]
    for t in ("_overlap", "_prev_size", "_offered", "_kept"):
        con.execute(f"DROP TABLE {t}")
    return IdentityStats(
        generation,
        people,
        counts.get("kept", 0),
        counts.get("new", 0),
        counts.get("merged_into", 0),
        counts.get("split_from", 0),
        counts.get("retired", 0),
    )


def load_previous(con: duckdb.DuckDBPyConnection, crosswalk: Path) -> str:
    """Load a previous crosswalk (or registry) as the ``previous_keys`` table (with its
    ``priority`` column, if it has one)."""
    src = f"read_parquet({lit(str(crosswalk))})"
    cols = {c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE SELECT * FROM {src})").fetchall()}
    con.execute(
        f"CREATE OR REPLACE TABLE previous_keys AS SELECT source_dataset, record_id, person_key"
        f"{', priority' if 'priority' in cols else ''} FROM {src}"
    )
    return "previous_keys"
