"""Incremental runs: the same stages as a full run, each told which records are new.

``linkage run CONFIG --data DIR --previous RUN_DIR --incremental``: ``DIR`` holds full
snapshots of the extracts. Like sqlmesh's INCREMENTAL_BY_UNIQUE_KEY kind beside FULL,
one definition of the result, two ways of building it:

- **changes**: each record's content (every field the job reads from it, as mapped) is
  hashed; against the previous run's ``restricted/record_hashes.parquet``, by source and
  record id, a record is ``added``, ``changed``, ``removed`` or ``same``.
- **standardise** only the added and changed records ("new"); the others come from the
  previous run's ``restricted/standardised.parquet``.
- **predict** only new-to-new (Splink's ``predict_within``) and new-to-existing
  (``predict_between``) pairs, with the previous run's model and prior and term
  frequencies from all of this run's records; the previous run's scored pairs between two
  unchanged records are carried over, except those near the threshold (within
  ``RESCORE_MARGIN_BITS``) and those of records holding a value whose term frequency moved
  (``TF_MOVE_BITS``), which are scored again among their records.
- **cluster**, person ids and everything after run as in a full run (connected components
  over a million records take seconds); a removed record leaves with an ``id_lineage``
  row (``record_removed``).

Where an incremental run can differ from a full run with the same model: pairs carried
over were scored with the previous run's term frequencies (a name that grew commoner
weighs less in a full run); a pair far from the threshold whose score moved further than
the margin. ``compare_runs`` lists every record placed differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import math

import duckdb

from linkage.errors import InputError
from linkage.sources import lit, q

HASHES = "record_hashes.parquet"
# Carried pairs within this many bits of the threshold's match weight are scored again.
RESCORE_MARGIN_BITS = 1.5
# ... and pairs of records holding a value whose term frequency moved by more than this.
TF_MOVE_BITS = 0.05
NEW = ("added", "changed")


@dataclass(frozen=True)
class Changes:
    added: int
    changed: int
    removed: int
    same: int

    def summary(self) -> str:
        return (f"against the previous run: {self.added:,} added, {self.changed:,} changed, "
                f"{self.removed:,} removed, {self.same:,} unchanged records")


def hash_records(con: duckdb.DuckDBPyConnection, sources: list[str]) -> None:
    """``record_hashes(source_dataset, record_id, content)``: a hash of every mapped field of
    each record that will be linked (the ``mapped_<source>`` views)."""
    parts = []
    for name in sources:
        cols = [c for (c, *_) in con.execute(f"DESCRIBE {q('mapped_' + name)}").fetchall()
                if c not in ("source_dataset", "record_id", "_row")]
        # chr(31) between fields and chr(30) for a missing one: no two contents hash alike by accident of joining
        content = " || chr(31) || ".join(f"coalesce({q(c)}, chr(30))" for c in cols) or "''"
        parts.append(f"SELECT source_dataset, record_id, md5({content}) AS content FROM {q('mapped_' + name)}")
    con.execute("CREATE OR REPLACE TABLE record_hashes AS " + " UNION ALL ".join(parts))


def check_previous(previous: Path, manifest: dict[str, Any], config_sha256: str) -> None:
    """An incremental run builds on a run of the same config that kept what it needs."""
    if manifest.get("config_sha256") != config_sha256:
        raise InputError(
            f"--previous {previous}: made with another config (config_sha256 {manifest.get('config_sha256')}, "
            f"this config's {config_sha256}); an incremental run needs the same config. Run in full instead "
            f"(drop --incremental).")
    missing = [p for p in (HASHES, "standardised.parquet", "predictions.parquet", "model.json", "crosswalk.parquet")
               if not (previous / "restricted" / p).is_file()]
    if missing:
        raise InputError(
            f"--previous {previous}: restricted/{', restricted/'.join(missing)} missing (a run made before "
            f"incremental runs existed, or trimmed); run in full once (drop --incremental), then incrementally.")


def find_changes(con: duckdb.DuckDBPyConnection, sources: list[str], previous: Path) -> Changes:
    """``record_changes(source_dataset, record_id, status)``; the ``mapped_<source>`` views
    narrowed to the new (added or changed) records, so that only they are standardised."""
    con.execute(
        f"""CREATE OR REPLACE TABLE record_changes AS
        SELECT coalesce(n.source_dataset, p.source_dataset) AS source_dataset,
               coalesce(n.record_id, p.record_id) AS record_id,
               CASE WHEN p.record_id IS NULL THEN 'added' WHEN n.record_id IS NULL THEN 'removed'
                    WHEN n.content <> p.content THEN 'changed' ELSE 'same' END AS status
        FROM record_hashes n
        FULL JOIN read_parquet({lit(str(previous / 'restricted' / HASHES))}) p
          ON p.source_dataset = n.source_dataset AND p.record_id = n.record_id"""
    )
    for name in sources:
        view = q("mapped_" + name)
        con.execute(f"ALTER VIEW {view} RENAME TO {q('snapshot_' + name)}")
        con.execute(
            f"""CREATE TEMP VIEW {view} AS SELECT m.* FROM {q('snapshot_' + name)} m
            SEMI JOIN (SELECT * FROM record_changes WHERE status IN ('added', 'changed')) c
              ON c.source_dataset = m.source_dataset AND c.record_id = m.record_id"""
        )
    counts = dict(con.execute("SELECT status, count(*) FROM record_changes GROUP BY ALL").fetchall())
    return Changes(*(int(counts.get(k, 0)) for k in ("added", "changed", "removed", "same")))


def add_unchanged(con: duckdb.DuckDBPyConnection, previous: Path, records_view: str = "records") -> None:
    """``records_view`` becomes the new records plus the previous run's standardised unchanged ones."""
    con.execute(
        f"""CREATE OR REPLACE TABLE _all_records AS
        SELECT * FROM {records_view}
        UNION ALL BY NAME
        SELECT p.* FROM read_parquet({lit(str(previous / 'restricted' / 'standardised.parquet'))}) p
        SEMI JOIN (SELECT * FROM record_changes WHERE status = 'same') c
          ON c.source_dataset = p.source_dataset AND c.record_id = p.record_id"""
    )
    con.execute(f"CREATE OR REPLACE VIEW {records_view} AS SELECT * FROM _all_records")


def predict(con: duckdb.DuckDBPyConnection, linker, db_api, threshold: float, previous: Path) -> dict[str, int]:
    """``predictions(node_id_l, node_id_r, match_weight, match_probability)``: new-to-new and
    new-to-existing pairs scored now, pairs of unchanged records carried from ``previous``."""
    floor = min(0.01, threshold / 10)  # as model.predict keeps
    con.execute(
        """CREATE OR REPLACE TABLE _new_nodes AS SELECT n.* FROM nodes n
        SEMI JOIN (SELECT * FROM record_changes WHERE status IN ('added', 'changed')) c
          ON c.source_dataset = n.source_dataset AND c.record_id = n.record_id"""
    )
    con.execute("CREATE OR REPLACE TABLE _old_nodes AS SELECT * FROM nodes ANTI JOIN _new_nodes USING (node_id)")
    tf_columns = sorted({c.unquote().name for c in linker._settings_obj._term_frequency_columns})
    for tf in tf_columns:
        linker.table_management.compute_tf_table(tf)  # over every record of this run, as a full run does
    new = db_api.register("_new_nodes", dataset_display_name="new_records")
    old = db_api.register("_old_nodes", dataset_display_name="existing_records")
    scored = []
    if con.execute("SELECT count(*) FROM _new_nodes").fetchall()[0][0]:
        scored.append(linker.inference.predict_within(new, threshold_match_probability=floor, warning_mode="never"))
        scored.append(linker.inference.predict_between(new, old, threshold_match_probability=floor,
                                                       warning_mode="never"))
    parts = [f"SELECT least(node_id_l, node_id_r) AS node_id_l, greatest(node_id_l, node_id_r) AS node_id_r, "
             f"match_weight, match_probability FROM {s.physical_name}" for s in scored]
    con.execute(
        f"""CREATE OR REPLACE TABLE _carried AS
        SELECT least(a.node_id, b.node_id) AS node_id_l, greatest(a.node_id, b.node_id) AS node_id_r,
               p.match_weight, p.match_probability
        FROM read_parquet({lit(str(previous / 'restricted' / 'predictions.parquet'))}) p
        JOIN _old_nodes a ON a.source_dataset = p.source_dataset_l AND a.record_id = p.record_id_l
        JOIN _old_nodes b ON b.source_dataset = p.source_dataset_r AND b.record_id = p.record_id_r"""
    )
    # Carried pairs near the threshold are scored again, among their records, with this
    # run's term frequencies: a small move of a carried score could cross the threshold.
    line = math.log2(threshold / (1 - threshold))
    near = f"match_weight BETWEEN {line - RESCORE_MARGIN_BITS} AND {line + RESCORE_MARGIN_BITS}"
    # So are pairs of records holding a value whose term frequency moved (a rare name seen
    # once more weighs a bit less): a term-frequency adjustment needs both records to hold it.
    moved = [f"SELECT node_id FROM _old_nodes WHERE {q(c)} IN ({_moved_values_sql(c, previous)})" for c in tf_columns]
    con.execute(
        f"""CREATE OR REPLACE TABLE _near_nodes AS SELECT n.* FROM _old_nodes n SEMI JOIN (
            SELECT node_id_l AS node_id FROM _carried WHERE {near}
            UNION SELECT node_id_r FROM _carried WHERE {near}
            {''.join(' UNION ' + m for m in moved)}) c USING (node_id)"""
    )
    rescored = 0
    if con.execute("SELECT count(*) FROM _near_nodes").fetchall()[0][0] > 1:
        again = linker.inference.predict_within(db_api.register("_near_nodes", dataset_display_name="near_threshold"),
                                                threshold_match_probability=floor, warning_mode="never")
        con.execute(
            """DELETE FROM _carried WHERE node_id_l IN (SELECT node_id FROM _near_nodes)
                                       AND node_id_r IN (SELECT node_id FROM _near_nodes)""")
        rescored = con.execute(f"SELECT count(*) FROM {again.physical_name}").fetchall()[0][0]
        parts.append(f"SELECT least(node_id_l, node_id_r), greatest(node_id_l, node_id_r), match_weight, "
                     f"match_probability FROM {again.physical_name}")
    con.execute("CREATE OR REPLACE TABLE predictions AS " + " UNION ALL ".join(["SELECT * FROM _carried", *parts]))
    carried = con.execute("SELECT count(*) FROM _carried").fetchall()[0][0]
    total = con.execute("SELECT count(*) FROM predictions").fetchall()[0][0]
    for t in ("_carried", "_new_nodes", "_old_nodes", "_near_nodes"):
        con.execute(f"DROP TABLE {t}")
    return {"pairs_carried": int(carried), "pairs_scored": int(total - carried - rescored),
            "pairs_rescored": int(rescored)}


def _moved_values_sql(column: str, previous: Path) -> str:
    """The values of ``column`` whose term frequency moved by more than ``TF_MOVE_BITS``
    since the previous run (or that are new or gone)."""
    c = q(column)
    freq = "count(*)::DOUBLE / sum(count(*)) OVER ()"
    return (
        f"""SELECT v FROM (SELECT {c} AS v, {freq} AS f FROM nodes WHERE {c} IS NOT NULL GROUP BY ALL) n
        FULL JOIN (SELECT {c} AS v, {freq} AS f
                   FROM read_parquet({lit(str(previous / 'restricted' / 'standardised.parquet'))})
                   WHERE {c} IS NOT NULL GROUP BY ALL) o USING (v)
        WHERE n.f IS NULL OR o.f IS NULL OR abs(log2(n.f / o.f)) > {TF_MOVE_BITS}"""
    )


def record_removed_lineage(con: duckdb.DuckDBPyConnection, previous_keys: str | None) -> int:
    """A removed record leaves the crosswalk with an ``id_lineage`` row: its previous person
    key, ``record_removed``, and the record as ``source_dataset/record_id``."""
    if previous_keys is None:
        return 0
    con.execute(
        f"""INSERT INTO id_lineage
        SELECT p.person_key, 'record_removed', p.source_dataset || '/' || p.record_id FROM {previous_keys} p
        SEMI JOIN (SELECT * FROM record_changes WHERE status = 'removed') c
          ON c.source_dataset = p.source_dataset AND c.record_id = p.record_id"""
    )
    return int(con.execute("SELECT count(*) FROM id_lineage WHERE event = 'record_removed'").fetchall()[0][0])


def compare_runs(a: Path, b: Path) -> list[dict[str, Any]]:
    """Every record the two runs place differently: with the records it is grouped with in
    one run and not the other, and why, judged from the two runs' scored pairs."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        for name, run in (("a", a), ("b", b)):
            con.execute(f"CREATE TABLE x_{name} AS SELECT source_dataset || '/' || record_id AS rec, person_key "
                        f"FROM read_parquet({lit(str(run / 'restricted' / 'crosswalk.parquet'))})")
            con.execute(f"CREATE TABLE p_{name} AS SELECT least(l, r) AS l, greatest(l, r) AS r, match_probability FROM "
                        f"(SELECT source_dataset_l || '/' || record_id_l AS l, source_dataset_r || '/' || record_id_r AS r, "
                        f"match_probability FROM read_parquet({lit(str(run / 'restricted' / 'predictions.parquet'))}))")
        rows = con.execute(
            """WITH pa AS (SELECT x.rec AS l, y.rec AS r FROM x_a x JOIN x_a y USING (person_key) WHERE x.rec < y.rec),
                    pb AS (SELECT x.rec AS l, y.rec AS r FROM x_b x JOIN x_b y USING (person_key) WHERE x.rec < y.rec),
                    d AS (SELECT *, 'together only in the first' AS how FROM (SELECT * FROM pa EXCEPT SELECT * FROM pb)
                          UNION ALL
                          SELECT *, 'together only in the second' FROM (SELECT * FROM pb EXCEPT SELECT * FROM pa))
            SELECT d.l, d.r, d.how, sa.match_probability, sb.match_probability FROM d
            LEFT JOIN p_a sa USING (l, r) LEFT JOIN p_b sb USING (l, r) ORDER BY ALL"""
        ).fetchall()
    finally:
        con.close()
    threshold = float(json.loads((Path(a) / "manifest.json").read_text())["model"]["threshold_match_probability"])
    out = []
    for left, right, how, pa, pb in rows:
        if pa is not None and pb is not None and (pa >= threshold) != (pb >= threshold):
            why = (f"the pair's score crossed the threshold: {pa:.4g} in the first run, {pb:.4g} in the second "
                   f"(term frequencies moved)")
        elif pa is not None and pb is not None and pa != pb:
            why = (f"the pair scored {pa:.6g} in the first run and {pb:.6g} in the second (term frequencies "
                   f"moved a little): the cluster-validity step, which takes links strongest first, split the "
                   f"cluster otherwise")
        elif pa is None and pb is None:
            why = "not a scored pair in either run: joined or split through other records"
        elif (pa is None) != (pb is None):
            why = "scored in only one run (kept above the floor in one only)"
        else:
            why = "the same score: joined or split through other records"
        out.append({"record_a": left, "record_b": right, "difference": how, "why": why})
    return out
