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
  unchanged records are carried over, except those of records holding a value whose term
  frequency moved by more than ``TF_MOVE_BITS`` and those whose carried score is within
  ``TF_MOVE_BITS`` per term-frequency comparison of a cut-off (the threshold, the fracture
  weight, the ambiguity margin's edge: what a carried score can have moved by), which
  are scored again among their records.
- **cluster** only the components of the pair graph (pairs at or above the lowest weight
  a clustering step reads, deterministic groups, clerical decisions) that the changes
  reach, with ``linkage.cluster`` itself; every other component keeps the previous run's
  people, with their evidence (size, weakest link, links) as it wrote them (:func:`cluster`). Person ids and everything after run as in a full run; a
  removed record leaves with an ``id_lineage`` row (``record_removed``).

Where an incremental run can differ from a full run with the same model: pairs carried
over were scored with the previous run's term frequencies (a name that grew commoner
weighs less in a full run); a pair far from the threshold whose score moved further than
the margin. ``compare_runs`` lists every record placed differently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

import linkage
from linkage import cluster as clustering
from linkage import model
from linkage.config import BlockingRule, ClusteringConfig, DeterministicLink, ExplodeRule, SqlRule, key_column
from linkage.errors import InputError
from linkage.sources import lit, q

HASHES = "record_hashes.parquet"
TERM_FREQUENCIES = "term_frequencies.parquet"
# Pairs of records holding a value whose term frequency moved by more than this are scored
# again; any other carried pair's score moved by at most this per term-frequency comparison
# (the model is the same), so only carried pairs that close to a cut-off can have crossed it.
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
    """An incremental run builds on a run of the same config and the same version of linkage
    (it keeps the people the changes do not reach as the previous run clustered them: rules
    a new version changed would never reach them) that kept what it needs."""
    if manifest.get("config_sha256") != config_sha256:
        raise InputError(
            f"--previous {previous}: made with another config (config_sha256 {manifest.get('config_sha256')}, "
            f"this config's {config_sha256}); an incremental run needs the same config. Run in full instead "
            f"(drop --incremental).")
    made_by = (manifest.get("versions") or {}).get("linkage")
    if made_by != linkage.__version__:
        raise InputError(
            f"--previous {previous}: made by linkage {made_by}, this is {linkage.__version__}; an incremental run "
            f"keeps the people its changes do not reach as the previous run clustered them, so after an upgrade run "
            f"in full once (drop --incremental), then incrementally.")
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
    """``nodes``: the new records of ``records_view`` plus the previous run's standardised
    unchanged ones, numbered 1..n in (source_dataset, record_id) order as
    ``linkage.cluster.build_nodes`` numbers them. The numbers come from ``record_changes``
    (the same records' keys), so the wide rows are written once, not gathered into a table
    and then joined to their numbers."""
    con.execute(
        f"""CREATE OR REPLACE TABLE nodes AS
        SELECT k.node_id, r.* FROM (
            SELECT * FROM {records_view}
            UNION ALL BY NAME
            SELECT p.* FROM read_parquet({lit(str(previous / 'restricted' / 'standardised.parquet'))}) p
            SEMI JOIN (SELECT * FROM record_changes WHERE status = 'same') c
              ON c.source_dataset = p.source_dataset AND c.record_id = p.record_id) r
        JOIN (SELECT source_dataset, record_id, row_number() OVER (ORDER BY source_dataset, record_id) AS node_id
              FROM record_changes WHERE status <> 'removed') k USING (source_dataset, record_id)"""
    )


@contextmanager
def _no_step(name: str) -> Iterator[None]:
    yield


def mark_new(con: duckdb.DuckDBPyConnection) -> None:
    """``_keys(source_dataset, record_id, node_id, old)``: every record's node, ``old`` when
    unchanged since the previous run; ``_new_nodes``: the added and changed records."""
    con.execute(
        """CREATE OR REPLACE TABLE _keys AS
        SELECT n.source_dataset, n.record_id, n.node_id, c.status = 'same' AS old
        FROM nodes n JOIN record_changes c USING (source_dataset, record_id)"""
    )
    con.execute("CREATE OR REPLACE TABLE _new_nodes AS SELECT n.* FROM nodes n "
                "SEMI JOIN (SELECT node_id FROM _keys WHERE NOT old) k USING (node_id)")


def _unnested(rule: ExplodeRule) -> tuple[str, str]:
    """An exploding rule's columns with its lists unnested (capped keys on the columns
    ``add_key_caps`` made), and the equality of ``l`` and ``r`` on them."""
    cols = model.capped_columns(rule, [str(c) for c in rule.block_on])
    exploded = set(model.capped_columns(rule, [str(c) for c in rule.explode]))
    sel = ", ".join(f"unnest({q(c)}) AS {q(c)}" if c in exploded else q(c) for c in cols)
    return sel, " AND ".join(f"l.{q(c)} = r.{q(c)}" for c in cols)


def _rule_pairs_sql(rule: BlockingRule, new: str, every: str, select: str) -> str:
    """``select`` over the pairs (``l`` a record of ``new``, ``r`` one of ``every``) that
    ``rule`` blocks together: its equality join (a capped key on the column ``add_key_caps``
    made, its condition included), exploded lists unnested."""
    if isinstance(rule, ExplodeRule) and rule.explode:
        sel, on = _unnested(rule)
        return (f"SELECT {select} FROM (SELECT DISTINCT node_id, {sel} FROM {every}) r "
                f"JOIN (SELECT DISTINCT node_id, {sel} FROM {new}) l ON {on}")
    return f"SELECT {select} FROM {new} l JOIN {every} r ON {model.rule_sql(rule)}"


def _rule_partners_sql(rule: BlockingRule, new: str, every: str) -> str:
    """The ``node_id`` of each record of ``every`` that ``rule`` pairs with a record of
    ``new`` (the ``r`` side of ``_rule_pairs_sql``), by a semi join: the pairs are not made
    (at a million records: 0.6 CPU s, against 0.8 making the pairs)."""
    if isinstance(rule, ExplodeRule) and rule.explode:
        sel, on = _unnested(rule)
        return (f"SELECT r.node_id FROM (SELECT node_id, {sel} FROM {every}) r "
                f"SEMI JOIN (SELECT {sel} FROM {new}) l ON {on}")
    return f"SELECT r.node_id FROM {every} r SEMI JOIN {new} l ON {model.rule_sql(rule)}"


def _rule_count_sql(rule: BlockingRule, new: str, every: str) -> str:
    """The pairs ``_rule_pairs_sql`` makes, counted from block sizes (the records of ``new``
    and of ``every`` holding each key) without making them; a rule in SQL or with a
    condition is counted by its join."""
    if isinstance(rule, SqlRule) or (isinstance(rule, ExplodeRule) and rule.where):
        return _rule_pairs_sql(rule, new, every, "count(*)")
    if isinstance(rule, ExplodeRule):
        keys: list[Any] = model.capped_columns(rule, [str(c) for c in rule.block_on])
        exploded = set(model.capped_columns(rule, [str(c) for c in rule.explode]))
    else:
        keys, exploded = list(rule), set()
    exprs = [f"unnest({q(key_column(k))})" if key_column(k) in exploded
             else model._key_sql(k, "t") for k in keys]
    names = ", ".join(f"k{i}" for i in range(len(keys)))
    not_null = " AND ".join(f"k{i} IS NOT NULL" for i in range(len(keys)))
    distinct = "DISTINCT " if exploded else ""  # a record whose list repeats a value is in a block once

    def blocks(table: str, among: str = "") -> str:
        return (f"SELECT {names}, count(*) AS n FROM (SELECT {distinct}t.node_id, "
                f"{', '.join(f'{e} AS k{i}' for i, e in enumerate(exprs))} FROM {table} t) {among} "
                f"WHERE {not_null} GROUP BY ALL")

    # every record's blocks counted only for the keys a new record holds
    return (f"WITH a AS ({blocks(new)}), b AS ({blocks(every, f'SEMI JOIN a USING ({names})')}) "
            f"SELECT coalesce(sum(a.n * b.n), 0) FROM a JOIN b USING ({names})")


def count_comparisons(con: duckdb.DuckDBPyConnection, rules: list[BlockingRule]) -> list[model.RuleCount]:
    """The blocking guard of an incremental run: the pairs each rule makes between a new
    record and any record (new-to-new counted twice: at most)."""
    if not con.execute("SELECT count(*) FROM (SHOW TABLES) WHERE name = '_new_nodes'").fetchall()[0][0]:
        mark_new(con)
    return [model.RuleCount(model.describe_rule(rule) + " (new records against all)",
                            int(con.execute(_rule_count_sql(rule, "_new_nodes", "nodes")).fetchall()[0][0]),
                            []) for rule in rules]


def predict(
    con: duckdb.DuckDBPyConnection, linker, db_api, threshold: float, previous: Path, rules: list[BlockingRule],
    step: Callable[[str], AbstractContextManager[None]] = _no_step, settings: ClusteringConfig | None = None,
) -> dict[str, int]:
    """``predictions(node_id_l, node_id_r, match_weight, match_probability)``: new-to-new and
    new-to-existing pairs scored now, pairs of unchanged records carried from ``previous``.

    Leaves ``_scored_now(node_id_l, node_id_r, match_weight, match_probability,
    old_weight, old_probability)``: the pairs scored in this run, with their carried
    score when they had one (scored again), for :func:`cluster`."""
    floor = min(0.01, threshold / 10)  # as model.predict keeps
    if not con.execute("SELECT count(*) FROM (SHOW TABLES) WHERE name = '_new_nodes'").fetchall()[0][0]:
        mark_new(con)
    tf_columns = sorted({c.unquote().name for c in linker._settings_obj._term_frequency_columns})
    with step("term frequencies"):
        for tf in tf_columns:
            linker.table_management.compute_tf_table(tf)  # over every record of this run, as a full run does
    scored = []
    with step("new records scored"):
        # Splink blocks the new records against the records some rule pairs them with, not
        # against all: the same pairs, a smaller join.
        con.execute(
            "CREATE OR REPLACE TABLE _cand_nodes AS SELECT n.* FROM nodes n SEMI JOIN ("
            + " UNION ".join(_rule_partners_sql(r, "_new_nodes", "nodes") for r in rules)
            + ") c USING (node_id) WHERE n.node_id NOT IN (SELECT node_id FROM _new_nodes)"
        )
        new = db_api.register("_new_nodes", dataset_display_name="new_records")
        old = db_api.register("_cand_nodes", dataset_display_name="existing_records")
        if con.execute("SELECT count(*) FROM _new_nodes").fetchall()[0][0]:
            scored.append(linker.inference.predict_within(new, threshold_match_probability=floor, warning_mode="never"))
            scored.append(linker.inference.predict_between(new, old, threshold_match_probability=floor,
                                                           warning_mode="never"))
        parts = [f"SELECT least(node_id_l, node_id_r) AS node_id_l, greatest(node_id_l, node_id_r) AS node_id_r, "
                 f"match_weight, match_probability FROM {s.physical_name}" for s in scored]
        con.execute("CREATE OR REPLACE TABLE _scored_now AS "
                    + " UNION ALL ".join([*parts, "SELECT NULL::BIGINT AS node_id_l, NULL::BIGINT AS node_id_r, NULL::DOUBLE AS match_weight, "
                                       "NULL::DOUBLE AS match_probability WHERE false"]))
        con.execute("ALTER TABLE _scored_now ADD COLUMN old_weight DOUBLE")
        con.execute("ALTER TABLE _scored_now ADD COLUMN old_probability DOUBLE")
    with step("pairs carried"):
        con.execute(
            f"""CREATE OR REPLACE TABLE _carried AS
            SELECT least(a.node_id, b.node_id) AS node_id_l, greatest(a.node_id, b.node_id) AS node_id_r,
                   p.match_weight, p.match_probability
            FROM read_parquet({lit(str(previous / 'restricted' / 'predictions.parquet'))}) p
            JOIN _keys a ON a.source_dataset = p.source_dataset_l AND a.record_id = p.record_id_l
            JOIN _keys b ON b.source_dataset = p.source_dataset_r AND b.record_id = p.record_id_r
            WHERE a.old AND b.old"""
        )
    with step("pairs near the threshold scored again"):
        # Carried pairs near a cut-off are scored again, among their records, with this run's
        # term frequencies: a carried score moved by at most TF_MOVE_BITS per term-frequency
        # comparison (its records hold no value that moved more), and could cross a cut-off
        # only from that close (plus float noise).
        margin = TF_MOVE_BITS * len(tf_columns) + 1e-6
        near = " OR ".join(f"match_weight BETWEEN {w - margin} AND {w + margin}" for w in rescore_cutoffs(threshold, settings))
        # So are pairs of records holding a value whose term frequency moved (a rare name seen
        # once more weighs a bit less): a term-frequency adjustment needs both records to hold it.
        moved = [f"SELECT node_id FROM nodes WHERE CAST({q(c)} AS VARCHAR) IN ({_moved_values_sql(con, c, previous)})"
                 for c in tf_columns]
        con.execute(
            f"""CREATE OR REPLACE TABLE _near_nodes AS SELECT n.* FROM nodes n SEMI JOIN (
                SELECT node_id_l AS node_id FROM _carried WHERE {near}
                UNION SELECT node_id_r FROM _carried WHERE {near}
                {''.join(' UNION ' + m for m in moved)}) c USING (node_id)
            WHERE n.node_id NOT IN (SELECT node_id FROM _new_nodes)"""
        )
        rescored = 0
        if con.execute("SELECT count(*) FROM _near_nodes").fetchall()[0][0] > 1:
            again = linker.inference.predict_within(
                db_api.register("_near_nodes", dataset_display_name="near_threshold"),
                threshold_match_probability=floor, warning_mode="never")
            con.execute(
                f"""CREATE OR REPLACE TABLE _again AS
                SELECT least(node_id_l, node_id_r) AS node_id_l, greatest(node_id_l, node_id_r) AS node_id_r,
                       match_weight, match_probability FROM {again.physical_name}""")
            con.execute(
                """CREATE OR REPLACE TABLE _dropped AS SELECT * FROM _carried
                WHERE node_id_l IN (SELECT node_id FROM _near_nodes) AND node_id_r IN (SELECT node_id FROM _near_nodes)""")
            con.execute(
                """INSERT INTO _scored_now
                SELECT coalesce(a.node_id_l, d.node_id_l), coalesce(a.node_id_r, d.node_id_r),
                       a.match_weight, a.match_probability, d.match_weight, d.match_probability
                FROM _again a FULL JOIN _dropped d USING (node_id_l, node_id_r)""")
            con.execute("DELETE FROM _carried WHERE (node_id_l, node_id_r) IN (SELECT (node_id_l, node_id_r) FROM _dropped)")
            rescored = con.execute("SELECT count(*) FROM _again").fetchall()[0][0]
            for t in ("_again", "_dropped"):
                con.execute(f"DROP TABLE {t}")
    con.execute("""CREATE OR REPLACE TABLE predictions AS SELECT * FROM _carried
                   UNION ALL SELECT node_id_l, node_id_r, match_weight, match_probability FROM _scored_now
                   WHERE match_weight IS NOT NULL""")
    carried = con.execute("SELECT count(*) FROM _carried").fetchall()[0][0]
    total = con.execute("SELECT count(*) FROM predictions").fetchall()[0][0]
    for t in ("_carried", "_cand_nodes", "_near_nodes"):
        con.execute(f"DROP TABLE {t}")
    return {"pairs_carried": int(carried), "pairs_scored": int(total - carried - rescored),
            "pairs_rescored": int(rescored)}


def tf_columns(cfg: Any) -> list[str]:
    """The columns whose exact agreement the model adjusts by term frequency."""
    return sorted({lv.exact for comp in cfg.model.comparisons for lv in comp.levels or []
                   if lv.kind == "exact" and lv.tf_adjustment})


def term_frequencies_sql(columns: list[str], records: str = "nodes") -> str:
    """``(tf_column, value, tf)`` of each term-frequency column over ``records``, values as text:
    kept in restricted/ (``TERM_FREQUENCIES``) for the next incremental run and for find."""
    parts = [f"SELECT {lit(c)} AS tf_column, CAST({q(c)} AS VARCHAR) AS value, "
             f"count(*)::DOUBLE / sum(count(*)) OVER () AS tf FROM {records} WHERE {q(c)} IS NOT NULL GROUP BY ALL"
             for c in columns]
    return " UNION ALL ".join(parts) or "SELECT NULL::VARCHAR AS tf_column, NULL::VARCHAR AS value, NULL::DOUBLE AS tf WHERE false"


def rescore_cutoffs(threshold: float, settings: ClusteringConfig | None = None) -> list[float]:
    """The match weights where a carried pair's small move could change the clusters: the
    threshold's, and (cluster validity) the fracture weight, the ambiguity margin's edge and
    the attach weight."""
    line = _weight(threshold)
    if settings is None:
        return [line]
    cut = [line, float(settings.fracture_match_weight)]
    if settings.ambiguity_margin:
        cut.append(line - settings.ambiguity_margin)
    if settings.attach_match_weight is not None:
        cut.append(float(settings.attach_match_weight))
    return cut


def _moved_values_sql(con: duckdb.DuckDBPyConnection, column: str, previous: Path) -> str:
    """The values of ``column`` (as text) whose term frequency moved by more than
    ``TF_MOVE_BITS`` since the previous run (or that are new or gone)."""
    saved = previous / "restricted" / TERM_FREQUENCIES
    if saved.is_file():
        old = f"SELECT value AS v, tf AS f FROM read_parquet({lit(str(saved))}) WHERE tf_column = {lit(column)}"
    else:  # a run made before term frequencies were kept
        old = term_frequencies_sql([column], f"read_parquet({lit(str(previous / 'restricted' / 'standardised.parquet'))})")
        old = f"SELECT value AS v, tf AS f FROM ({old})"
    new = f"SELECT value AS v, tf AS f FROM ({term_frequencies_sql([column])})"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {q('_moved_' + column)} AS
        SELECT v FROM ({new}) n FULL JOIN ({old}) o USING (v)
        WHERE n.f IS NULL OR o.f IS NULL OR abs(log2(n.f / o.f)) > {TF_MOVE_BITS}"""
    )
    return f"SELECT v FROM {q('_moved_' + column)}"


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


# --- clustering only the people the changes reach ----------------------------------------------


def _weight(probability: float) -> float:
    return math.log2(probability / (1 - probability))


def _det_partners_sql(deterministic: list[DeterministicLink], of: str, among: str = "nodes") -> str:
    """Node ids of ``among`` sharing every column of a deterministic rule with a row of ``of``."""
    parts = []
    for rule in deterministic:
        on = " AND ".join(f"a.{q(c)} = o.{q(c)}" for c in rule.columns)
        parts.append(f"SELECT a.node_id FROM {among} a SEMI JOIN {of} o ON {on}")
    return " UNION ".join(parts) or "SELECT NULL::BIGINT AS node_id WHERE false"


# A person's evidence in the crosswalk (``linkage.cluster.summarise_clusters``): a carried
# person keeps the previous run's (its links are the previous run's, and among them the
# links clustering added below the threshold, which no table here holds).
EVIDENCE = "cluster_size, cluster_min_match_weight, cluster_links, deterministic_links"


def cluster_floor(threshold: float, settings: ClusteringConfig) -> float:
    """The lowest match weight any clustering step reads: a weak link's rivals within the
    ambiguity margin, and (``attach_match_weight``) the pairs that attach a record no link
    reaches, with their rivals. Pairs below it never change a cluster."""
    low = _weight(threshold) - (settings.ambiguity_margin or 0)
    if settings.attach_match_weight is not None:
        low = min(low, float(settings.attach_match_weight) - (settings.ambiguity_margin or 0))
    return low


def affected_records(
    con: duckdb.DuckDBPyConnection, previous: Path, threshold: float, deterministic: list[DeterministicLink],
    settings: ClusteringConfig, decisions: str | None = None, duplicate_free: Sequence[str] = (),
    sizes: dict[str, int] | None = None,
) -> int:
    """``_s(node_id)``: the records to cluster again, whole people of both runs; ``_sc``:
    those and the records their clustering reads besides (context, :func:`_context`);
    returns how many records ``_s`` holds.

    Seeds: a new record; a record with a pair scored in this run (new, gone, or scored
    again and moved by more than ``TF_MOVE_BITS`` or across the threshold, the fracture
    weight or the attach weight) at or above :func:`cluster_floor`; a record that had a pair
    at or above it with a changed or removed record, or shared a deterministic group with
    one; a record a clerical decision names. Below the floor no clustering step reads a
    pair.

    What a person is made from (``linkage.cluster.make_clusters``): a group ``K`` of
    records joined by links (pairs at or above the threshold), deterministic groups and
    decisions; the records no link reaches that attach to it (each to its best candidate,
    a pair in [attach weight, threshold) into a linked record); and, read only, the
    strong groups (``_core``) of the rivals of its weak links (pairs within the ambiguity
    margin of a weak link, at or above the floor). So:

    1. ``D``: the groups holding a seed, by breadth-first search over the links, groups
       and decisions only (:func:`_expand`). Only their contents (records, links, who is
       linked, strong groups) can differ from the previous run's. An unchanged record whose
       changed pair is a link in neither run (a new record's low pair, a pair scored again,
       a changed record's pair gone) is only touched: its group's contents are the same.
    2. One step from ``D`` (:func:`_one_step`), not transitively, since nothing below
       reads a person's outcome, only contents: a record no link reaches (in this run, or
       possibly in the previous one: in ``D`` without a carried link) with a candidate in
       ``D``, or in ``D`` itself, may attach elsewhere now: it, and the group of its best
       linked candidate outside ``D`` (the only other place it can attach to in either
       run), are clustered again; so is a group with a weak link (or an attachment) whose
       record has a pair into ``D`` at or above the link's weight less the margin (a rival
       whose strong group may have changed), or a pair that changed; a touched record no
       link reaches is one whose choice may differ.
    3. Every record attached (by the same choice in both runs) to a group clustered again.

    A person nothing of which changed keeps the previous run's clusters, made from the
    same inputs. With a duplicate-free source (whose best-link rule can leave a record of a
    group unlinked) the wide rule is kept: whole components of the graph of every pair at
    or above the floor. ``sizes`` (when given) gets the records of each step: ``seeds``,
    ``groups_changed`` (``D``; with the wide rule, the components) and ``clustered_again``.
    """
    prev = previous / "restricted"
    floor = cluster_floor(threshold, settings)
    fracture = float(settings.fracture_match_weight)
    con.execute(f"CREATE OR REPLACE TABLE _prev_all AS SELECT source_dataset, CAST(record_id AS VARCHAR) AS record_id, "
                f"person_key, {EVIDENCE} FROM read_parquet({lit(str(prev / 'crosswalk.parquet'))})")
    con.execute(f"""CREATE OR REPLACE TABLE _prev AS SELECT k.node_id, k.old, p.person_key AS prev_key, {EVIDENCE}
                   FROM _keys k LEFT JOIN _prev_all p USING (source_dataset, record_id)""")
    con.execute("""CREATE OR REPLACE TABLE _gone AS SELECT source_dataset, record_id FROM record_changes
                   WHERE status IN ('changed', 'removed')""")
    crossed = "false"
    if settings.attach_match_weight is not None:  # a new (or gone) pair is across only when at or above it
        attach = float(settings.attach_match_weight)
        crossed = (f"((coalesce(match_weight, '-inf'::DOUBLE) >= {attach}) "
                   f"<> (coalesce(old_weight, '-inf'::DOUBLE) >= {attach}))")
    narrow = not duplicate_free
    # a pair scored in this run that changed, at or above the floor: both its records; with
    # the narrow rule, when it is a link in neither run, its unchanged records are only
    # touched (``_t2``: it changed their candidates or rivals, not their groups)
    changed = f"""greatest(coalesce(match_weight, '-inf'::DOUBLE), coalesce(old_weight, '-inf'::DOUBLE)) >= {floor}
          AND (old_weight IS NULL OR match_weight IS NULL OR abs(match_weight - old_weight) > {TF_MOVE_BITS}
               OR (match_probability >= {threshold}) <> (old_probability >= {threshold})
               OR (match_weight >= {fracture}) <> (old_weight >= {fracture}) OR {crossed})"""
    link = f"greatest(coalesce(match_probability, 0), coalesce(old_probability, 0)) >= {threshold}"
    seeds = ["SELECT node_id FROM _keys WHERE NOT old",
             f"SELECT unnest([node_id_l, node_id_r]) FROM _scored_now WHERE {changed}" + (f" AND {link}" if narrow else "")]
    touched = [f"""SELECT k.node_id, t.w FROM (
                       SELECT unnest([node_id_l, node_id_r]) AS node_id,
                              greatest(coalesce(match_weight, '-inf'::DOUBLE), coalesce(old_weight, '-inf'::DOUBLE)) AS w
                       FROM _scored_now WHERE {changed} AND NOT {link}) t JOIN _keys k USING (node_id) WHERE k.old"""]
    # the previous run's pairs at or above the floor with a changed or removed record (one
    # scan): the other record
    con.execute(
        f"""CREATE OR REPLACE TABLE _gone_pairs AS
        SELECT p.source_dataset_l, p.record_id_l, p.source_dataset_r, p.record_id_r, gl.record_id IS NOT NULL AS gl,
               gr.record_id IS NOT NULL AS gr, p.match_probability >= {threshold} AS link, p.match_weight
        FROM read_parquet({lit(str(prev / 'predictions.parquet'))}) p
        LEFT JOIN _gone gl ON gl.source_dataset = p.source_dataset_l AND gl.record_id = p.record_id_l
        LEFT JOIN _gone gr ON gr.source_dataset = p.source_dataset_r AND gr.record_id = p.record_id_r
        WHERE p.match_weight >= {floor} AND (gl.record_id IS NOT NULL OR gr.record_id IS NOT NULL)""")
    for a, b in (("l", "r"), ("r", "l")):
        gone = (f"""SELECT k.node_id, p.match_weight AS w FROM _gone_pairs p
            JOIN _keys k ON k.source_dataset = p.source_dataset_{b} AND k.record_id = p.record_id_{b} WHERE p.g{a}""")
        seeds.append(f"SELECT node_id FROM ({gone}" + (" AND p.link)" if narrow else ")"))
        touched.append(gone + " AND NOT p.link")
    if deterministic:
        cols = sorted({c for rule in deterministic for c in rule.columns})
        con.execute(
            f"""CREATE OR REPLACE TABLE _det_of AS
            SELECT {', '.join(q(c) for c in cols)} FROM nodes WHERE node_id IN (SELECT node_id FROM _keys WHERE NOT old)
            UNION ALL SELECT {', '.join(q(c) for c in cols)}
            FROM read_parquet({lit(str(prev / 'standardised.parquet'))}) s
            SEMI JOIN _gone g ON g.source_dataset = s.source_dataset AND g.record_id = CAST(s.record_id AS VARCHAR)""")
        seeds.append(_det_partners_sql(deterministic, "_det_of"))
    # The graph: links (the wide rule: pairs at or above the floor), deterministic groups small
    # enough to link (each record to its group's lowest), clerical decisions' pairs.
    # the links (one scan of the pairs; the narrow rule's steps read them again)
    con.execute(f"""CREATE OR REPLACE TABLE _links AS SELECT node_id_l, node_id_r, match_weight FROM predictions
                    WHERE match_probability >= {threshold}""")
    edges = ["SELECT node_id_l AS a, node_id_r AS b FROM " + (
        "_links" if narrow else f"predictions WHERE match_weight >= {floor}"), *_det_groups(con, deterministic)]
    if decisions is not None:
        for side in ("l", "r"):
            seeds.append(f"""SELECT k.node_id FROM {decisions} d JOIN _keys k
                ON k.source_dataset = d.source_dataset_{side} AND k.record_id = CAST(d.record_id_{side} AS VARCHAR)""")
        edges.append(
            f"""SELECT a.node_id, b.node_id FROM {decisions} d
            JOIN _keys a ON a.source_dataset = d.source_dataset_l AND a.record_id = CAST(d.record_id_l AS VARCHAR)
            JOIN _keys b ON b.source_dataset = d.source_dataset_r AND b.record_id = CAST(d.record_id_r AS VARCHAR)""")
    con.execute("CREATE OR REPLACE TABLE _g AS " + " UNION ALL ".join(f"({e})" for e in edges))
    con.execute("CREATE OR REPLACE TABLE _s AS " + " UNION ".join(f"({s})" for s in seeds))
    con.execute("DELETE FROM _s WHERE node_id IS NULL")
    con.execute("CREATE OR REPLACE TABLE _t2 AS SELECT node_id, max(w) AS w FROM ("
                + " UNION ALL ".join(f"({t})" for t in touched) + ") GROUP BY node_id")
    # those pairs between unchanged records, both ways round (a candidate whose rank may differ)
    con.execute(f"""CREATE OR REPLACE TABLE _t2p AS SELECT x, y FROM (
        SELECT node_id_l AS x, node_id_r AS y FROM _scored_now WHERE {changed} AND NOT {link}
        UNION ALL SELECT node_id_r, node_id_l FROM _scored_now WHERE {changed} AND NOT {link})
        WHERE x IN (SELECT node_id FROM _keys WHERE old) AND y IN (SELECT node_id FROM _keys WHERE old)""")
    if not narrow:
        con.execute("INSERT INTO _s SELECT node_id FROM _t2 EXCEPT SELECT node_id FROM _s")
    count = lambda t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])  # noqa: E731
    steps = {"seeds": count("_s")}
    _expand(con, "_s", "_g")
    steps["groups_changed"] = count("_s")
    if narrow:
        _one_step(con, threshold, deterministic, settings, floor)
    _context(con, threshold, deterministic, settings, floor, narrow)
    for t in ("_front", "_g", "_gone", "_gone_pairs", "_det_of", "_d", "_lk", "_old_lk", "_cand", "_x", "_choice",
              "_dp", "_gs", "_t2", "_t2p", "_links", *(f"_dg{i}" for i in range(len(deterministic)))):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    steps["clustered_again"] = count("_s")
    if sizes is not None:
        sizes.update(steps)
    return steps["clustered_again"]


def _expand(con: duckdb.DuckDBPyConnection, into: str, graph: str, start: str | None = None) -> None:
    """Add to ``into(node_id)`` the records of ``start`` (a query of ``node_id``; default:
    those ``into`` holds already) and every record the edges ``graph(a, b)`` join to them,
    breadth first: each step the records one edge away from the last ones reached, not
    reached yet (one scan of the edges), not by labelling every component."""
    if start is None:
        con.execute(f"CREATE OR REPLACE TABLE _front AS SELECT node_id FROM {into}")
    else:
        con.execute(f"CREATE OR REPLACE TABLE _front AS SELECT DISTINCT node_id FROM ({start}) t "
                    f"WHERE node_id IS NOT NULL EXCEPT SELECT node_id FROM {into}")
        con.execute(f"INSERT INTO {into} SELECT node_id FROM _front")
    while con.execute("SELECT count(*) FROM _front").fetchall()[0][0]:
        con.execute(
            f"""CREATE OR REPLACE TABLE _front AS
            SELECT b AS node_id FROM {graph} g SEMI JOIN _front f ON f.node_id = g.a
            UNION SELECT a FROM {graph} g SEMI JOIN _front f ON f.node_id = g.b
            EXCEPT SELECT node_id FROM {into}""")
        con.execute(f"INSERT INTO {into} SELECT node_id FROM _front")


def _det_groups(con: duckdb.DuckDBPyConnection, deterministic: list[DeterministicLink]) -> list[str]:
    """``_dg<i>``: each deterministic rule's groups small enough to link (two records or more),
    their records with the rule's columns (one scan of the records per rule); returns the
    edges joining each record to its group's lowest (the same components as the links)."""
    edges = []
    for i, rule in enumerate(deterministic):
        part = ", ".join(q(c) for c in rule.columns)
        cols = ", ".join(q(c) for c in dict.fromkeys([*rule.columns, *rule.unless_disagree]))
        not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in rule.columns)
        con.execute(f"""CREATE OR REPLACE TABLE _dg{i} AS SELECT node_id, {cols} FROM nodes WHERE {not_null}
                        QUALIFY count(*) OVER (PARTITION BY {part}) BETWEEN 2 AND {rule.max_group_size}""")
        edges.append(f"SELECT min(node_id) OVER (PARTITION BY {part}) AS a, node_id AS b FROM _dg{i} QUALIFY a <> b")
    return edges


def _linked_sql(deterministic: list[DeterministicLink]) -> str:
    """The records ``linkage.cluster.build_links`` gives a link (no duplicate-free source
    cuts one): an end of a link (``_links``: a pair at or above the threshold), or of a deterministic link (in a
    group small enough, ``_dg<i>``, and for a gated rule agreeing with another member)."""
    parts = ["SELECT node_id_l AS node_id FROM _links", "SELECT node_id_r FROM _links"]
    for i, rule in enumerate(deterministic):
        if not rule.unless_disagree:
            parts.append(f"SELECT node_id FROM _dg{i}")
        else:
            same = " AND ".join(f"l.{q(c)} = r.{q(c)}" for c in rule.columns)
            disagree = " OR ".join(f"(l.{q(c)} IS NOT NULL AND r.{q(c)} IS NOT NULL AND l.{q(c)} <> r.{q(c)})"
                                   for c in rule.unless_disagree)
            parts.append(f"SELECT l.node_id FROM _dg{i} l JOIN _dg{i} r ON {same} AND l.node_id <> r.node_id "
                         f"WHERE NOT ({disagree})")
    return " UNION ".join(parts)


def _one_step(con: duckdb.DuckDBPyConnection, threshold: float, deterministic: list[DeterministicLink],
              settings: ClusteringConfig, floor: float) -> None:
    """Steps 2 and 3 of :func:`affected_records`: ``_s`` holds ``D`` (whole groups) on entry,
    the records to cluster again on return.

    Why one step is exact: a record's person is made from its group's contents, the
    attachment choices of the records no link reaches (each a function of its candidate
    pairs and whether each candidate is linked) and its weak links' rivals' strong groups.
    Contents change only in ``D``. A choice can change only if the record or a candidate
    is in ``D`` (a pair that changed put both its records in ``D``); such a record attaches
    in either run to a record of ``D`` or to its best linked candidate outside ``D`` (the
    candidates outside ``D``, their pairs and whether they are linked being the same in
    both runs), and both those groups are clustered again. A rival's strong group changes
    only in ``D``. Nothing reads a person's outcome (which cluster a record ends in), so a
    group clustered again for these reasons makes no other group's inputs differ."""
    attach, margin = settings.attach_match_weight, settings.ambiguity_margin
    fracture, line = float(settings.fracture_match_weight), _weight(threshold)
    con.execute("CREATE OR REPLACE TABLE _d AS SELECT node_id FROM _s")
    con.execute("CREATE OR REPLACE TABLE _lk AS " + _linked_sql(deterministic))
    # the records only touched (``_t2``: a pair of theirs that is a link in neither run changed,
    # at the weight given): below, read as a rival's pair into D, and those no link reaches as
    # records whose choice may differ
    grow = []
    if attach is not None:
        # each record's candidates, for the records no link reaches and those of D
        con.execute(
            f"""CREATE OR REPLACE TABLE _cand AS
            WITH c AS (
                SELECT node_id_l AS x, node_id_r AS y, node_id_l AS l, node_id_r AS r, match_weight AS w FROM predictions
                WHERE match_weight >= {float(attach)} AND match_weight < {line}
                UNION ALL
                SELECT node_id_r, node_id_l, node_id_l, node_id_r, match_weight FROM predictions
                WHERE match_weight >= {float(attach)} AND match_weight < {line})
            SELECT c.*, y IN (SELECT node_id FROM _lk) AS y_linked, y IN (SELECT node_id FROM _d) AS y_dirty,
                   x IN (SELECT node_id FROM _lk) AS x_linked
            FROM c WHERE x NOT IN (SELECT node_id FROM _lk) OR x IN (SELECT node_id FROM _d)""")
        # records of D surely linked in the previous run too: a link carried (both records
        # unchanged, the pair not scored again) is the previous run's link
        con.execute(
            """CREATE OR REPLACE TABLE _old_lk AS SELECT unnest([p.node_id_l, p.node_id_r]) AS node_id
            FROM _links p JOIN _keys a ON a.node_id = p.node_id_l JOIN _keys b ON b.node_id = p.node_id_r
            WHERE a.old AND b.old
              AND (p.node_id_l IN (SELECT node_id FROM _d) OR p.node_id_r IN (SELECT node_id FROM _d))
              AND (p.node_id_l, p.node_id_r) NOT IN (SELECT (node_id_l, node_id_r) FROM _scored_now)""")
        # X: the records whose choice may differ between the runs
        con.execute(
            """CREATE OR REPLACE TABLE _x AS
            SELECT node_id FROM _d WHERE node_id NOT IN (SELECT node_id FROM _lk)
                                      OR node_id NOT IN (SELECT node_id FROM _old_lk)
            UNION SELECT x FROM _cand WHERE y_dirty AND NOT x_linked
            UNION SELECT node_id FROM _t2 WHERE node_id NOT IN (SELECT node_id FROM _lk)""")
        # their best linked candidate outside D whose pair with them did not change (the same
        # in both runs), and those whose pair changed (ranked otherwise in each run): their
        # groups are clustered again
        grow.append("""SELECT y AS node_id FROM _cand WHERE x IN (SELECT node_id FROM _x) AND y_linked AND NOT y_dirty
                       AND (x, y) NOT IN (SELECT (x, y) FROM _t2p)
                       QUALIFY row_number() OVER (PARTITION BY x ORDER BY w DESC, l, r) = 1""")
        grow.append("SELECT y AS node_id FROM _t2p WHERE x IN (SELECT node_id FROM _x)")
        # every other record no link reaches: its choice, the same in both runs
        con.execute(
            """CREATE OR REPLACE TABLE _choice AS SELECT x, y, w FROM _cand
            WHERE NOT x_linked AND y_linked AND x NOT IN (SELECT node_id FROM _x)
            QUALIFY row_number() OVER (PARTITION BY x ORDER BY w DESC, l, r) = 1""")
    if margin is not None:
        # each record outside D: its best pair into D (a rival there is read at that weight) or
        # that changed (in either run's weight)
        con.execute(
            f"""CREATE OR REPLACE TABLE _dp AS SELECT a, max(w) AS w FROM (
                SELECT node_id_r AS a, match_weight AS w FROM predictions
                WHERE match_weight >= {floor} AND node_id_l IN (SELECT node_id FROM _d)
                UNION ALL SELECT node_id_l, match_weight FROM predictions
                WHERE match_weight >= {floor} AND node_id_r IN (SELECT node_id FROM _d)
                UNION ALL SELECT node_id, w FROM _t2)
            WHERE a NOT IN (SELECT node_id FROM _d) GROUP BY a""")
        # a weak link's record with such a pair within the margin of the link
        grow.append(
            f"""SELECT e.a AS node_id FROM (
                SELECT a, min(w) AS w FROM (
                    SELECT node_id_l AS a, match_weight AS w FROM _links WHERE match_weight < {fracture}
                    UNION ALL SELECT node_id_r, match_weight FROM _links WHERE match_weight < {fracture}) GROUP BY a) e
            JOIN _dp d USING (a) WHERE d.w >= e.w - {float(margin)}""")
        if attach is not None:  # an attachment's two records, likewise
            grow.append(
                f"""SELECT c.y AS node_id FROM _choice c LEFT JOIN _dp dx ON dx.a = c.x LEFT JOIN _dp dy ON dy.a = c.y
                WHERE dx.w >= c.w - {float(margin)} OR dy.w >= c.w - {float(margin)}""")
    if grow:
        _expand(con, "_s", "_g", " UNION ".join(f"({g})" for g in grow))
    if attach is not None:
        con.execute("INSERT INTO _s SELECT node_id FROM _x EXCEPT SELECT node_id FROM _s")
        con.execute("INSERT INTO _s SELECT x FROM _choice WHERE y IN (SELECT node_id FROM _s) "
                    "EXCEPT SELECT node_id FROM _s")


def _context(con: duckdb.DuckDBPyConnection, threshold: float, deterministic: list[DeterministicLink],
             settings: ClusteringConfig, floor: float, narrow: bool) -> None:
    """``_sc``: the records of ``_s`` and the whole strong groups (``linkage.cluster``'s
    ``_core``: links at or above the fracture weight, deterministic groups) of every record
    a pair at or above the floor joins to one of them: the rivals the clustering of ``_s``
    weighs its weak links against, each with the records its told-apart check reads.
    (A candidate outside ``_s`` is never a record of ``_s``'s best choice; its pairs
    need no context.) With whole components (the wide rule), none."""
    con.execute("CREATE OR REPLACE TABLE _sc AS SELECT node_id FROM _s")
    if not narrow or settings.ambiguity_margin is None:
        return
    edges = [f"SELECT node_id_l AS a, node_id_r AS b FROM _links "
             f"WHERE match_weight >= {float(settings.fracture_match_weight)}"]
    for i, rule in enumerate(deterministic):  # the groups of _det_groups
        part = ", ".join(q(c) for c in rule.columns)
        edges.append(f"SELECT min(node_id) OVER (PARTITION BY {part}) AS a, node_id AS b FROM _dg{i} QUALIFY a <> b")
    con.execute("CREATE OR REPLACE TABLE _gs AS " + " UNION ALL ".join(f"({e})" for e in edges))
    _expand(con, "_sc", "_gs",
            f"""SELECT node_id_r AS node_id FROM predictions WHERE match_weight >= {floor}
                AND node_id_l IN (SELECT node_id FROM _s) AND node_id_r NOT IN (SELECT node_id FROM _s)
            UNION SELECT node_id_l FROM predictions WHERE match_weight >= {floor}
                AND node_id_r IN (SELECT node_id FROM _s) AND node_id_l NOT IN (SELECT node_id FROM _s)""")


def _cluster_affected(
    con: duckdb.DuckDBPyConnection, db_api: Any, catalog: str, threshold: float, floor: float,
    deterministic: list[DeterministicLink], settings: ClusteringConfig, duplicate_free: list[str],
    after_validity: Callable[[duckdb.DuckDBPyConnection], None] | None,
) -> dict[str, Any]:
    """``linkage.cluster.make_clusters`` in the schema ``_inc`` over the records of ``_sc``
    (``_s`` and its context, :func:`affected_records`): every pair at or above ``floor`` of
    a record of ``_s`` (within ``_sc``), the links among the context, and every record
    sharing a deterministic group with them (so that group sizes are whole; they are not
    clustered again: a group small enough to link is within ``_sc``). Only the records of
    ``_s`` may be attached: the context is read, its own clusters are not kept."""
    con.execute(
        f"""CREATE OR REPLACE TABLE _sub_pred AS SELECT * FROM predictions WHERE match_weight >= {floor}
        AND (node_id_l IN (SELECT node_id FROM _s) OR node_id_r IN (SELECT node_id FROM _s)
             OR match_probability >= {threshold})
        AND node_id_l IN (SELECT node_id FROM _sc) AND node_id_r IN (SELECT node_id FROM _sc)""")
    con.execute(
        f"""CREATE OR REPLACE TABLE _sub_ids AS SELECT node_id FROM _sc
        UNION ({_det_partners_sql(deterministic, "(SELECT * FROM nodes SEMI JOIN _sc USING (node_id))")})""")
    con.execute("DROP SCHEMA IF EXISTS _inc CASCADE")
    con.execute("CREATE SCHEMA _inc")
    con.execute("CREATE TABLE _inc.nodes AS SELECT * FROM main.nodes SEMI JOIN main._sub_ids USING (node_id)")
    con.execute(f"USE {q(catalog)}._inc")
    try:
        # not summarised here: with the carried people after (``clusters`` over every record)
        return clustering.make_clusters(con, db_api, "main._sub_pred", threshold, deterministic, settings,
                                        duplicate_free, after_validity=after_validity, attach_only="main._s")
    finally:
        con.execute(f"USE {q(catalog)}.main")


def cluster(
    con: duckdb.DuckDBPyConnection,
    db_api: Any,
    previous: Path,
    threshold: float,
    deterministic: list[DeterministicLink],
    settings: ClusteringConfig | None = None,
    duplicate_free: list[str] | None = None,
    after_validity: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    step: Callable[[str], AbstractContextManager[None]] = _no_step,
    note: Callable[[str], None] = lambda text: None,
    counts: dict[str, int] | None = None,
) -> clustering.ClusterStats:
    """``clusters`` (and ``cc``, ``links``, ``cluster_splits``) as ``linkage.cluster.cluster``
    makes them, clustering again only the records of :func:`affected_records`; the other
    people are the previous run's, with their links, the links it cut and their evidence
    in ``clusters`` (from its crosswalk: a link clustering added below the threshold, which
    attached a lone record, is kept nowhere else).

    The affected records (whole people of both runs, :func:`affected_records`) are
    clustered by ``linkage.cluster.make_clusters`` (``cluster`` less the summary, made after
    with the carried people) (:func:`_cluster_affected`), in a schema of their own holding
    them, the strong groups their weak links' rivals belong to (context: read, not placed)
    and every record sharing a deterministic group with them (so that group sizes are
    whole): what a full run makes of those people. A cluster there joining a record of
    them to one outside would be a bug in that reasoning; then every record is clustered
    instead, and the run says so. ``counts`` (when given) gets ``records_clustered_again``
    and ``records_read_as_context``.
    """
    settings = settings or ClusteringConfig()
    duplicate_free = list(duplicate_free or [])
    prev = previous / "restricted"
    decisions = "decision_store" if after_validity is not None else None
    with step("people the changes reach"):
        sizes: dict[str, int] = {}
        n = affected_records(con, previous, threshold, deterministic, settings, decisions, duplicate_free, sizes)
        context = con.execute("SELECT count(*) FROM _sc").fetchall()[0][0] - n
    catalog = con.execute("SELECT current_database()").fetchall()[0][0]
    with step("those people clustered again"):
        sub = _cluster_affected(con, db_api, catalog, threshold, cluster_floor(threshold, settings), deterministic,
                                settings, duplicate_free, after_validity)
        leaks = con.execute(
            """SELECT count(*) FROM (SELECT c.cluster_id FROM _inc.cc c LEFT JOIN _s USING (node_id)
               GROUP BY ALL HAVING bool_or(_s.node_id IS NULL) AND bool_or(_s.node_id IS NOT NULL))"""
        ).fetchall()[0][0]
    if leaks:  # never publish a half-clustered run
        note(f"incremental clustering reached {leaks:,} people beyond the components it re-clusters: "
             "clustering every record instead")
        con.execute("DROP SCHEMA _inc CASCADE")
        con.execute("DROP TABLE _sc")
        return clustering.cluster(con, db_api, "predictions", threshold, deterministic, settings,
                                  duplicate_free, after_validity=after_validity)
    note(f"{n:,} records clustered again (the people the changes reach: {sizes['seeds']:,} touched, "
         f"{sizes['groups_changed']:,} in the groups of links holding them), {context:,} more read as their weak "
         f"links' rivals; the others' people carried")
    if counts is not None:
        counts["records_clustered_again"] = n
        counts["records_read_as_context"] = int(context)
        counts["records_touched"] = sizes["seeds"]
        counts["records_in_groups_touched"] = sizes["groups_changed"]
    with step("the other people carried"):
        con.execute(
            """CREATE OR REPLACE TABLE cc AS
            SELECT node_id, cluster_id FROM _inc.cc SEMI JOIN _s USING (node_id)
            UNION ALL
            SELECT node_id, min(node_id) OVER (PARTITION BY prev_key) FROM _prev
            WHERE node_id NOT IN (SELECT node_id FROM _s)""")
        # The records not clustered again, by record id: a previous pair table joined to them
        # alone keeps the pairs with neither end clustered again (joining every record and
        # filtering after took a third longer at a million records).
        con.execute("CREATE OR REPLACE TABLE _kept_keys AS SELECT source_dataset, record_id, node_id FROM _keys "
                    "ANTI JOIN _s USING (node_id)")
        pair = lambda t: (  # noqa: E731  (a previous run's pair table, by this run's node ids, neither end re-clustered)
            f"""SELECT least(a.node_id, b.node_id) AS node_id_l, greatest(a.node_id, b.node_id) AS node_id_r, t.*
            FROM read_parquet({lit(str(prev / t))}) t
            JOIN _kept_keys a ON a.source_dataset = t.source_dataset_l AND a.record_id = CAST(t.record_id_l AS VARCHAR)
            JOIN _kept_keys b ON b.source_dataset = t.source_dataset_r AND b.record_id = CAST(t.record_id_r AS VARCHAR)""")
        con.execute(f"""CREATE OR REPLACE TABLE cluster_splits AS
            SELECT node_id_l, node_id_r, match_weight, match_probability, kind, reason FROM _inc.cluster_splits
            SEMI JOIN _s ON _s.node_id = node_id_l
            UNION ALL SELECT node_id_l, node_id_r, match_weight, match_probability, kind, reason
            FROM ({pair('cluster_splits.parquet')})""")
        con.execute(
            f"""CREATE OR REPLACE TABLE links AS
            SELECT * FROM _inc.links SEMI JOIN _s ON _s.node_id = node_id_l
            UNION ALL
            SELECT p.node_id_l, p.node_id_r, p.match_weight, p.match_probability, 'model' FROM predictions p
            ANTI JOIN cluster_splits s USING (node_id_l, node_id_r)
            WHERE p.match_probability >= {threshold}
              AND p.node_id_l NOT IN (SELECT node_id FROM _s) AND p.node_id_r NOT IN (SELECT node_id FROM _s)
            UNION ALL
            SELECT d.node_id_l, d.node_id_r, NULL, 1.0, d.kind FROM ({pair('deterministic_links.parquet')}) d""")
        if con.execute("SELECT count(*) FROM (SHOW ALL TABLES) WHERE schema = '_inc' AND name = 'decision_outcomes'"
                       ).fetchall()[0][0]:
            con.execute("CREATE OR REPLACE TABLE decision_outcomes AS SELECT * FROM _inc.decision_outcomes")
        # Each person's evidence: the people clustered again from their links (as
        # ``summarise_clusters``), the carried ones from the previous run.
        con.execute(
            f"""CREATE OR REPLACE TABLE clusters AS
            WITH again AS (SELECT * FROM _inc.cc SEMI JOIN _s USING (node_id)),
            sizes AS (SELECT cluster_id, count(*) AS cluster_size FROM again GROUP BY ALL),
            edges AS (
                SELECT c.cluster_id, min(l.match_weight) AS cluster_min_match_weight,
                       count(*) FILTER (WHERE l.kind = 'model') AS cluster_links,
                       count(*) FILTER (WHERE l.kind <> 'model') AS deterministic_links
                FROM _inc.links l JOIN again c ON c.node_id = l.node_id_l GROUP BY ALL)
            SELECT n.node_id, n.source_dataset, n.record_id, c.cluster_id, s.cluster_size,
                   e.cluster_min_match_weight, coalesce(e.cluster_links, 0) AS cluster_links,
                   coalesce(e.deterministic_links, 0) AS deterministic_links
            FROM nodes n JOIN again c USING (node_id) JOIN sizes s USING (cluster_id) LEFT JOIN edges e USING (cluster_id)
            UNION ALL
            SELECT k.node_id, k.source_dataset, k.record_id, c.cluster_id, {EVIDENCE}
            FROM _prev p JOIN cc c USING (node_id) JOIN _kept_keys k USING (node_id)""")
        stats = clustering.cluster_stats(con)
        oversized = {}
        for rule in deterministic:
            cols = ", ".join(q(c) for c in rule.columns)
            not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in rule.columns)
            groups, records = con.execute(
                f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM nodes WHERE {not_null} "
                f"GROUP BY {cols} HAVING n > {rule.max_group_size})").fetchall()[0]
            if groups:
                oversized[rule.name] = {"groups": int(groups), "records": int(records)}
        cut = dict(con.execute("SELECT reason, count(*) FROM cluster_splits GROUP BY ALL ORDER BY 1").fetchall())
        con.execute("DROP SCHEMA _inc CASCADE")
        for t in ("_sub_pred", "_sub_ids", "_prev_all", "_kept_keys", "_sc"):
            con.execute(f"DROP TABLE {t}")
    # Checked and split: among the people clustered again. Gated pairs: in their groups.
    return replace(stats, oversized_deterministic_groups=oversized, gated_deterministic_pairs=sub["gated_deterministic_pairs"],
                   cut_links={k: int(v) for k, v in cut.items()}, clusters_checked=sub["clusters_checked"],
                   clusters_split=sub["clusters_split"])
