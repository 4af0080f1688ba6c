"""Person ids at more than one match probability threshold, for sensitivity analyses.

``person_id`` is the person at ``model.threshold``. For each of
``outputs.person_id_thresholds`` the records are clustered again: connected components of
the links the job kept (deterministic links always; model links at or above the
threshold, after the cluster checks cut what they cut) plus, for a looser threshold, the
scored pairs between it and ``model.threshold``. Each clustering gets person keys by the
rules of ``linkage.identity`` (carried over from the previous run's keys at the same
threshold) and pseudonyms by the run's key, as ``person_id`` does. The columns
``person_key_<t>`` (restricted) and ``person_id_<t>`` (analyst tables) join the crosswalk.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from linkage import identity
from linkage.cluster import connected_components
from linkage.pseudonyms import add_pseudonyms
from linkage.sources import lit, q


def suffix(threshold: float) -> str:
    """``0.99 -> '0_99'``: the column suffix of a threshold.

    >>> suffix(0.99), suffix(0.8), suffix(0.995)
    ('0_99', '0_8', '0_995')
    """
    return f"{threshold:.6f}".rstrip("0").replace(".", "_")


def threshold_id_columns(cfg) -> list[str]:
    """The analyst id columns beyond ``person_id``, in the config's order."""
    return [f"person_id_{suffix(t)}" for t in cfg.outputs.person_id_thresholds]


def _previous_keys(con: duckdb.DuckDBPyConnection, previous_crosswalk: Path | None, column: str, out: str) -> str | None:
    """``out(source_dataset, record_id, person_key)`` from the previous run's keys at this threshold."""
    if previous_crosswalk is None:
        return None
    path = lit(str(previous_crosswalk))
    names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()]
    if column not in names:
        return None
    con.execute(
        f"CREATE OR REPLACE TABLE {out} AS SELECT source_dataset, record_id, {q(column)} AS person_key "
        f"FROM read_parquet({path})"
    )
    return out


def add_threshold_ids(
    con: duckdb.DuckDBPyConnection,
    db_api,
    thresholds: list[float],
    main_threshold: float,
    key,
    generation: int,
    previous_crosswalk: Path | None = None,
) -> dict[str, int]:
    """Add ``person_key_<t>`` and ``person_id_<t>`` to ``crosswalk`` for each threshold;
    return people per id column.

    Needs ``nodes``, ``links`` (after the cluster checks), ``predictions`` and ``crosswalk``.
    """
    people: dict[str, int] = {}
    catalog = con.execute("SELECT current_database()").fetchall()[0][0]
    for t in thresholds:
        s = suffix(t)
        looser = (
            f" UNION ALL SELECT node_id_l, node_id_r FROM predictions "
            f"WHERE match_probability >= {t} AND match_probability < {main_threshold}"
            if t < main_threshold else ""
        )
        con.execute(
            f"CREATE OR REPLACE TABLE _tid_edges AS SELECT node_id_l, node_id_r FROM links "
            f"WHERE kind <> 'model' OR match_probability >= {t}{looser}"
        )
        connected_components(con, db_api, edges="_tid_edges", out="_tid_cc")
        schema = f"_tid_{s}"
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
        con.execute(
            f"CREATE OR REPLACE TABLE {q(schema)}.clusters AS SELECT n.node_id, n.source_dataset, n.record_id, "
            f"c.cluster_id FROM nodes n JOIN _tid_cc c USING (node_id)"
        )
        previous = _previous_keys(con, previous_crosswalk, f"person_key_{s}", f"{q(schema)}.previous_keys")
        # identity names its tables (clusters, person_keys, id_lineage): run it inside this
        # threshold's schema, so the job's own tables are left as they are.
        con.execute(f"USE {q(catalog)}.{q(schema)}")
        try:
            identity.assign_person_keys(con, "previous_keys" if previous else None, generation)
        finally:
            con.execute(f"USE {q(catalog)}.main")
        con.execute(f"CREATE OR REPLACE TABLE _tid_keys AS SELECT * FROM {q(schema)}.person_keys")
        add_pseudonyms(con, "_tid_keys", key, out="_tid_ids")
        con.execute(
            f"""CREATE OR REPLACE TABLE crosswalk AS
            SELECT x.*, k.person_key AS {q('person_key_' + s)}, k.person_id AS {q('person_id_' + s)}
            FROM crosswalk x JOIN {q(schema)}.clusters c USING (node_id) JOIN _tid_ids k USING (cluster_id)
            ORDER BY x.source_dataset, x.record_id"""
        )
        people[f"person_id_{s}"] = con.execute("SELECT count(*) FROM _tid_keys").fetchall()[0][0]
        con.execute(f"DROP SCHEMA {q(schema)} CASCADE")
        for tmp in ("_tid_edges", "_tid_cc", "_tid_keys", "_tid_ids"):
            con.execute(f"DROP TABLE IF EXISTS {tmp}")
    return people
