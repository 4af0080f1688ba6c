"""Incremental runs: a base and a 5% delta (with records changed and removed) give the
clusters a full run with the same model gives, or each difference with why."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from conftest import cli, config_variant, copy_of, fast_config
from linkage.incremental import compare_runs

SOURCES = ("pnc", "prison", "probation", "libra", "crest")
# A previous crosswalk's evidence columns, for the hand-made ones below (the test reading
# them, the last, checks the values it carries).
EVIDENCE = "1 AS cluster_size, NULL::DOUBLE AS cluster_min_match_weight, 0 AS cluster_links, 0 AS deterministic_links"
SURNAME = {"pnc": "surname", "prison": "last_name", "probation": "surname", "libra": "defendant_name", "crest": "surname"}


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames), list(r)


def write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def snapshots(seed3, tmp_path_factory):
    """``base``: the population less 5% of its records (added later), ``final``: the
    population less 1% removed since the base, with 1% changed (postcode blanked or a
    surname changed)."""
    tmp = tmp_path_factory.mktemp("incremental")
    full = seed3  # read only
    counts = {"added": 0, "removed": 0, "changed": 0}
    for name in SOURCES:
        header, rows = read(full / f"{name}.csv")
        base, final = [], []
        for i, r in enumerate(rows):
            if i % 20 == 7:  # added since the base
                final.append(r)
                counts["added"] += 1
            elif i % 97 == 3:  # removed since the base
                base.append(r)
                counts["removed"] += 1
            elif i % 101 == 5:  # changed since the base
                base.append(r)
                changed = dict(r)
                if changed.get("postcode"):
                    changed["postcode"] = ""
                else:  # a surname misspelt in the base, corrected since (or the other way round)
                    changed[SURNAME[name]] += "E"
                final.append(changed)
                counts["changed"] += 1
            else:
                base.append(r)
                final.append(r)
        write(tmp / "base" / f"{name}.csv", header, base)
        write(tmp / "final" / f"{name}.csv", header, final)
    job = config_variant(fast_config(tmp), tmp / "keep.yaml",
                         lambda raw: raw["model"]["training"]["prior"].update(with_saved_model="keep"))
    res = cli("run", str(job), "--data", str(tmp / "base"), "--out", str(tmp / "base_run"))
    assert res.returncode == 0, res.stderr
    return tmp, job, counts


@pytest.fixture(scope="module")
def incremental(snapshots):
    """The incremental run from the base run onto the final snapshot (two tests read it)."""
    tmp, job, _ = snapshots
    res = cli("run", str(job), "--data", str(tmp / "final"), "--previous", str(tmp / "base_run"), "--incremental",
              "--out", str(tmp / "inc"))
    assert res.returncode == 0, res.stderr
    return tmp / "inc", res


def people(run: Path) -> dict[str, str]:
    return dict(duckdb.connect().execute(
        f"SELECT source_dataset || '/' || record_id, person_key FROM read_parquet('{run}/restricted/crosswalk.parquet')"
    ).fetchall())


def test_incremental_gives_the_clusters_of_a_full_run_or_says_why_not(snapshots, incremental):
    tmp, job, counts = snapshots
    base = tmp / "base_run"
    _, res = incremental
    assert f"{counts['added']:,} added, {counts['changed']:,} changed, {counts['removed']:,} removed" in res.stderr
    manifest = json.loads((tmp / "inc" / "manifest.json").read_text())
    inc = manifest["incremental"]
    assert inc["built_on"] == str(base)
    assert (inc["added"], inc["changed"], inc["removed"]) == (counts["added"], counts["changed"], counts["removed"])
    assert inc["pairs_carried"] > 0 and inc["pairs_scored"] > 0
    assert inc["removed_records_lineage_rows"] == counts["removed"]
    # clustered incrementally: whole components, none reaching beyond them (else everyone again)
    assert 0 < inc["records_clustered_again"] and "clustering every record instead" not in res.stderr

    res = cli("run", str(job), "--data", str(tmp / "final"), "--model", str(base / "restricted" / "model.json"),
              "--out", str(tmp / "full"))
    assert res.returncode == 0, res.stderr
    a, b = people(tmp / "inc"), people(tmp / "full")
    assert set(a) == set(b)  # the same records: removed ones gone, added ones in
    differences = compare_runs(tmp / "inc", tmp / "full")
    # every difference is named with its reason; none unexplained by a moved score
    assert all(d["why"] for d in differences)
    unexplained = [d for d in differences if "term frequencies moved" not in d["why"]
                   and "through other records" not in d["why"]]
    assert not unexplained, unexplained[:5]
    assert len(differences) <= max(5, len(set(b.values())) // 100), differences[:10]


def test_an_unchanged_snapshot_rescores_nothing_and_keeps_every_person(snapshots):
    tmp, job, _ = snapshots
    base = tmp / "base_run"
    res = cli("run", str(job), "--data", str(tmp / "base"), "--previous", str(base), "--incremental",
              "--out", str(tmp / "same"))
    assert res.returncode == 0, res.stderr
    inc = json.loads((tmp / "same" / "manifest.json").read_text())["incremental"]
    assert (inc["added"], inc["changed"], inc["removed"], inc["pairs_scored"]) == (0, 0, 0, 0)
    assert people(tmp / "same") == people(base)


def test_a_previous_run_of_another_config_is_refused(snapshots):
    tmp, job, _ = snapshots
    other = config_variant(job, tmp / "other.yaml", lambda raw: raw["model"].update(threshold=0.85))
    res = cli("run", str(other), "--data", str(tmp / "final"), "--previous", str(tmp / "base_run"), "--incremental",
              "--out", str(tmp / "x"))
    assert res.returncode == 1
    assert "made with another config" in res.stderr
    res = cli("run", str(job), "--data", str(tmp / "final"), "--incremental", "--out", str(tmp / "x"))
    assert res.returncode == 1 and "--incremental needs --previous" in res.stderr


def test_a_previous_run_of_another_linkage_version_is_refused(snapshots):
    """People an incremental run does not reach keep the previous run's clusters: made by
    another version (whose clustering rules may differ), they are refused, not carried."""
    tmp, job, _ = snapshots
    old = copy_of(tmp / "base_run", tmp / "old_version_run")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["versions"]["linkage"] = "0.0.1"
    (old / "manifest.json").write_text(json.dumps(manifest))
    res = cli("run", str(job), "--data", str(tmp / "final"), "--previous", str(old), "--incremental",
              "--out", str(tmp / "y"))
    assert res.returncode == 1
    assert "made by linkage 0.0.1" in res.stderr and "run in full once" in res.stderr


def test_analyst_outputs_carried_for_unaffected_people_equal_a_whole_rebuild(snapshots, incremental):
    """The incremental run carries unaffected people's analyst rows from the previous run;
    the same run with nothing to carry (the previous run's record of nulled values gone)
    de-identifies every record again: every analyst table and the restricted by-group and
    nulled-values tables must be the same."""
    import shutil

    tmp, job, _ = snapshots
    base = tmp / "base_run"
    bare = tmp / "base_bare"
    shutil.copytree(base, bare)
    (bare / "restricted" / "analyst_nulled.parquet").unlink()
    (bare / "restricted" / "record_groups.parquet").unlink()
    # "carried": the incremental run onto the base run as it is
    res = cli("run", str(job), "--data", str(tmp / "final"), "--previous", str(bare), "--incremental",
              "--out", str(tmp / "rebuilt"))
    assert res.returncode == 0, res.stderr
    runs = {"carried": incremental[0], "rebuilt": tmp / "rebuilt"}
    con = duckdb.connect()
    tables = [p.name for p in (runs["carried"] / "analyst").glob("*.parquet")]
    assert {"persons.parquet", "libra.parquet", "linkage_bias.parquet"} <= set(tables)
    for rel in [f"analyst/{t}" for t in tables] + ["restricted/record_groups.parquet", "restricted/analyst_nulled.parquet"]:
        a, b = (f"read_parquet('{runs[n] / rel}')" for n in ("carried", "rebuilt"))
        assert con.execute(f"SELECT count(*) FROM {a}").fetchall() == con.execute(f"SELECT count(*) FROM {b}").fetchall()
        assert con.execute(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})").fetchall()[0][0] == 0, rel
        assert con.execute(f"SELECT count(*) FROM (FROM {b} EXCEPT ALL FROM {a})").fetchall()[0][0] == 0, rel
    manifests = [json.loads((runs[n] / "manifest.json").read_text()) for n in ("carried", "rebuilt")]
    for key in ("analyst_tables", "analyst_nulled_values"):
        assert manifests[0][key] == manifests[1][key]
    # only the affected people's rows were made again (at this size, with term frequencies
    # moving a lot, many: their weakest link's weight moved), not everyone's
    people_made = manifests[0]["analyst_people_made_again"]
    assert 0 < people_made < manifests[0]["clusters"]["clusters"]
    assert manifests[1]["analyst_people_made_again"] is None


def test_the_incremental_guard_counts_from_block_sizes_the_pairs_its_join_makes():
    """The guard's count (block sizes of the keys new records hold) equals the pairs the
    new-against-all join makes, for column, prefix and exploded rules, nulls and repeats."""
    from pydantic import TypeAdapter

    from linkage.config import BlockingRule
    from linkage.incremental import _rule_count_sql, _rule_pairs_sql, _rule_partners_sql

    con = duckdb.connect()
    con.execute("""CREATE TABLE nodes AS SELECT * FROM (VALUES
        (1, 'SMITH', 'JOHN', ['SMITH', 'SMYTH'], 1980), (2, 'SMITH', 'JANE', ['SMITH', 'SMITH'], 1980),
        (3, 'SMITH', NULL, ['SMYTH'], 1980), (4, 'JONES', 'JOHN', NULL, 1975), (5, NULL, 'JOHN', ['JONES'], 1975),
        (6, 'SMITH', 'JOHN', ['SMITH'], NULL)) t(node_id, surname, first_name, name_set, year_of_birth)""")
    con.execute("CREATE TABLE _new_nodes AS SELECT * FROM nodes WHERE node_id IN (1, 4, 6)")
    rules = TypeAdapter(list[BlockingRule]).validate_python([
        ["surname"], ["surname", "first_name"], ["surname", {"column": "first_name", "first": 1}],
        {"block_on": ["name_set", "year_of_birth"], "explode": ["name_set"]},
        {"block_on": ["surname"], "where": "l.first_name = r.first_name"}])
    counts = [con.execute(_rule_count_sql(r, "_new_nodes", "nodes")).fetchall()[0][0] for r in rules]
    joined = [con.execute(_rule_pairs_sql(r, "_new_nodes", "nodes", "count(*)")).fetchall()[0][0] for r in rules]
    assert counts == joined == [9, 5, 7, 4, 5]
    # the records the new ones are scored against: the pairs' other ends, found without the pairs
    partners = [{i for (i,) in con.execute(_rule_partners_sql(r, "_new_nodes", "nodes")).fetchall()} for r in rules]
    ends = [{i for (i,) in con.execute(_rule_pairs_sql(r, "_new_nodes", "nodes", "r.node_id")).fetchall()} for r in rules]
    assert partners == ends and all(partners)


def test_the_records_clustered_again_are_whole_components_of_the_pair_graph(tmp_path):
    """From a new record, a pair whose score moved and a removed record's partner, the
    wide search (kept for a job with a duplicate-free source) reaches every record joined to
    them by pairs at or above the clustering floor (a chain of weak pairs included), and no
    record of a component nothing reached. The narrow one follows links only from there: a
    new record's pair below the attach weight with a linked record (no weak link there to
    have a rival) leaves that record's person as it was."""
    from linkage.config import ClusteringConfig
    from linkage.incremental import affected_records, cluster_floor

    settings = ClusteringConfig(fracture_match_weight=8, ambiguity_margin=2, attach_match_weight=-2)
    threshold = 0.8
    floor = cluster_floor(threshold, settings)  # -4: the attach weight less the margin
    assert floor == -4
    con = duckdb.connect()
    # records 1-12 ('s', '1'..'12'); 1 is new, 12 was removed (gone); the others unchanged
    con.execute("CREATE TABLE _keys AS SELECT 's' AS source_dataset, CAST(i AS VARCHAR) AS record_id, i AS node_id, "
                "i <> 1 AS old FROM range(1, 12) t(i)")
    con.execute("CREATE TABLE record_changes AS SELECT source_dataset, record_id, CASE WHEN old THEN 'same' "
                "ELSE 'added' END AS status FROM _keys UNION ALL SELECT 's', '12', 'removed'")
    con.execute("CREATE TABLE nodes AS SELECT node_id, source_dataset, record_id FROM _keys")
    # 1-2-3 by pairs down to the floor; 3-4 below it (not joined); 5-6 a pair that moved;
    # 7 had a pair with the removed 12, 7-8 joined; 9-10 and 11 untouched
    con.execute("""CREATE TABLE predictions AS SELECT * FROM (VALUES
        (1, 2, -3.9, 0.06), (2, 3, 20.0, 0.99), (3, 4, -4.5, 0.04), (5, 6, 3.0, 0.89), (7, 8, 9.0, 0.99),
        (9, 10, 25.0, 0.99), (10, 11, -3.0, 0.11)) t(node_id_l, node_id_r, match_weight, match_probability)""")
    con.execute("""CREATE TABLE _scored_now AS SELECT * FROM (VALUES
        (1, 2, -3.9, 0.06, NULL, NULL), (5, 6, 3.0, 0.89, 2.5, 0.85), (9, 10, 25.0, 0.99, 24.99, 0.99))
        t(node_id_l, node_id_r, match_weight, match_probability, old_weight, old_probability)""")
    prev = tmp_path / "restricted"
    prev.mkdir()
    con.execute(f"COPY (SELECT source_dataset, record_id, 'p' || record_id AS person_key, {EVIDENCE} FROM record_changes) "
                f"TO '{prev / 'crosswalk.parquet'}'")
    con.execute(f"""COPY (SELECT * FROM (VALUES ('s', '7', 's', '12', 5.0, 0.97), ('s', '9', 's', '12', -5.0, 0.03))
        t(source_dataset_l, record_id_l, source_dataset_r, record_id_r, match_weight, match_probability))
        TO '{prev / 'predictions.parquet'}'""")
    n = affected_records(con, tmp_path, threshold, [], settings, duplicate_free=["s"])
    again = sorted(i for (i,) in con.execute("SELECT node_id FROM _s").fetchall())
    assert again == [1, 2, 3, 5, 6, 7, 8] and n == 7
    n = affected_records(con, tmp_path, threshold, [], settings)
    again = sorted(i for (i,) in con.execute("SELECT node_id FROM _s").fetchall())
    assert again == [1, 5, 6, 7, 8] and n == 5


def test_a_component_joined_only_by_a_deterministic_group_or_a_clerical_decision_is_clustered_again_whole(tmp_path):
    """Records 2 and 3 share a deterministic group and nothing else joins them; 6 and 7 only a
    clerical must-link. The delta touches 1 and 5 (their pairs with 2 and 6 fell away): the
    search must reach 3 and 4 through the group and 7 and 8 through the decision, and the
    incremental clusters must be a full clustering's, with no fallback to everyone (which a
    search ignoring those edges needs: its cluster {2, 3} reaches a record it did not take)."""
    from linkage import cluster as clustering
    from linkage import decisions as clerical
    from linkage import incremental as increments
    from linkage.config import ClusteringConfig, DeterministicLink
    from linkage.model import make_db_api

    settings = ClusteringConfig(conflict_columns=[], ambiguity_margin=None, attach_match_weight=-2)
    rule = DeterministicLink(name="same crn", columns=["crn"])
    threshold = 0.9
    prev = tmp_path / "restricted"
    prev.mkdir()
    # 1-2 a pair that fell away, 2-3 one crn, 3-4 a pair; 5-6 a pair that fell away, 6 and 7 a
    # clerical match, 7-8 a pair; 9-10 a pair, and 11-13 a pair with 11-12 below the threshold
    # attaching 12 to that person, nothing touched. The previous run: one person each.
    nodes = """SELECT i AS node_id, 's' AS source_dataset, CAST(i AS VARCHAR) AS record_id,
                      CASE WHEN i IN (2, 3) THEN 'C1' END AS crn FROM range(1, 14) t(i)"""
    pairs = "SELECT * FROM (VALUES (3, 4, 20.0, 0.999), (7, 8, 20.0, 0.999), (9, 10, 20.0, 0.999), " \
            "(11, 12, -1.0, 0.333), (11, 13, 20.0, 0.999)) t(node_id_l, node_id_r, match_weight, match_probability)"
    store = """SELECT 's' AS source_dataset_l, '6' AS record_id_l, 's' AS source_dataset_r, '7' AS record_id_r,
                      'match' AS decision, NULL AS reviewer, NULL AS notes, NULL AS reason, NULL AS decided_at,
                      NULL AS pair_id, TIMESTAMP '2026-01-01' AS imported_utc, 'd.csv' AS import_file, 1 AS import_row"""
    person = "CASE WHEN i <= 4 THEN 'p1' WHEN i <= 8 THEN 'p2' WHEN i <= 10 THEN 'p3' ELSE 'p4' END"
    # each person's evidence as the previous run wrote it (9-10: one link of weight 20; 11-13
    # two, the attaching one of weight -1, which no table of the run holds)
    evidence = ("CASE WHEN i <= 8 THEN 4 WHEN i <= 10 THEN 2 ELSE 3 END AS cluster_size, "
                "CASE WHEN i <= 10 THEN 20.0 ELSE -1.0 END AS cluster_min_match_weight, "
                "CASE WHEN i <= 4 THEN 2 WHEN i <= 8 THEN 3 WHEN i <= 10 THEN 1 ELSE 2 END AS cluster_links, "
                "CASE WHEN i <= 4 THEN 1 ELSE 0 END AS deterministic_links")
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 's' AS source_dataset, CAST(i AS VARCHAR) AS record_id, {person} AS person_key, "
                f"{evidence} FROM range(1, 14) t(i)) TO '{prev / 'crosswalk.parquet'}'")
    con.execute(f"COPY (SELECT source_dataset, record_id, crn FROM ({nodes})) TO '{prev / 'standardised.parquet'}'")
    con.execute(f"""COPY (SELECT 's' AS source_dataset_l, CAST(l AS VARCHAR) AS record_id_l, 's' AS source_dataset_r,
        CAST(r AS VARCHAR) AS record_id_r, w AS match_weight, p AS match_probability
        FROM (VALUES (1, 2, 20.0, 0.999), (3, 4, 20.0, 0.999), (5, 6, 20.0, 0.999), (7, 8, 20.0, 0.999),
                     (9, 10, 20.0, 0.999), (11, 12, -1.0, 0.333), (11, 13, 20.0, 0.999)) t(l, r, w, p)) TO '{prev / 'predictions.parquet'}'""")
    con.execute(f"""COPY (SELECT 's' AS source_dataset_l, '2' AS record_id_l, 's' AS source_dataset_r, '3' AS record_id_r,
        'deterministic: same crn' AS kind) TO '{prev / 'deterministic_links.parquet'}'""")
    con.execute(f"""COPY (SELECT 's' AS source_dataset_l, '1' AS record_id_l, 's' AS source_dataset_r, '2' AS record_id_r,
        1.0 AS match_weight, 0.5 AS match_probability, 'model' AS kind, '' AS reason WHERE false)
        TO '{prev / 'cluster_splits.parquet'}'""")

    def partition(c: duckdb.DuckDBPyConnection) -> set[tuple[int, ...]]:
        rows = c.execute("SELECT list(node_id ORDER BY node_id) FROM cc GROUP BY cluster_id").fetchall()
        return {tuple(r[0]) for r in rows}

    full = duckdb.connect()
    for c in (con, full):
        c.execute(f"CREATE TABLE nodes AS {nodes}")
        c.execute(f"CREATE TABLE predictions AS {pairs}")
        c.execute(f"CREATE TABLE decision_store AS {store}")
    clustering.cluster(full, make_db_api(full), "predictions", threshold, [rule], settings,
                       after_validity=clerical.apply_decisions)
    assert partition(full) == {(1,), (2, 3, 4), (5,), (6, 7, 8), (9, 10), (11, 12, 13)}

    con.execute("CREATE TABLE record_changes AS SELECT source_dataset, record_id, 'same' AS status FROM nodes")
    con.execute("CREATE TABLE _keys AS SELECT source_dataset, record_id, node_id, true AS old FROM nodes")
    # rescored in this run: 1-2 and 5-6 now below the floor (not kept), 9-10 as it was
    con.execute("""CREATE TABLE _scored_now AS SELECT * FROM (VALUES (1, 2, NULL, NULL, 20.0, 0.999),
        (5, 6, NULL, NULL, 20.0, 0.999), (9, 10, 20.0, 0.999, 20.0, 0.999))
        t(node_id_l, node_id_r, match_weight, match_probability, old_weight, old_probability)""")
    counts: dict[str, int] = {}
    notes: list[str] = []
    increments.cluster(con, make_db_api(con), tmp_path, threshold, [rule], settings,
                       after_validity=clerical.apply_decisions, note=notes.append, counts=counts)
    assert not [n for n in notes if "clustering every record instead" in n], notes
    assert counts["records_clustered_again"] == 8  # 1-8: both components whole; 9-13 carried
    assert partition(con) == partition(full)
    # each record's evidence: made again for 1-8, carried for 9-13 (with the link that attached
    # 12), as a full clustering gives it
    evidence = ("SELECT node_id, cluster_size, cluster_min_match_weight, cluster_links, deterministic_links "
                "FROM clusters ORDER BY node_id")
    assert con.execute(evidence).fetchall() == full.execute(evidence).fetchall()


def _cycle(tmp_path: Path, old: dict[str, tuple], new: dict[str, tuple], pairs_old: dict[tuple[str, str], float],
           pairs_new: dict[tuple[str, str], float], settings, threshold: float = 0.8, duplicate_free=()):
    """A previous run clustered in full over ``old`` (record id -> (date_of_birth, postcode))
    and ``pairs_old`` (match weights), then ``new`` and ``pairs_new`` clustered incrementally
    on it and in full. Returns both partitions (as sets of record-id tuples) and the counts."""
    from linkage import cluster as clustering
    from linkage import incremental as increments
    from linkage.model import make_db_api

    def load(c: duckdb.DuckDBPyConnection, recs: dict[str, tuple], pairs: dict[tuple[str, str], float]) -> None:
        ids = sorted(recs)
        c.execute("CREATE TABLE nodes (node_id BIGINT, source_dataset VARCHAR, record_id VARCHAR, "
                  "date_of_birth VARCHAR, postcode VARCHAR)")
        c.executemany("INSERT INTO nodes VALUES (?, 's', ?, ?, ?)", [(i + 1, r, *recs[r]) for i, r in enumerate(ids)])
        node = {r: i + 1 for i, r in enumerate(ids)}
        c.execute("CREATE TABLE predictions (node_id_l BIGINT, node_id_r BIGINT, match_weight DOUBLE, "
                  "match_probability DOUBLE)")
        rows = [(min(node[a], node[b]), max(node[a], node[b]), w, 2 ** w / (1 + 2 ** w)) for (a, b), w in pairs.items()]
        if rows:
            c.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?)", rows)

    def partition(c: duckdb.DuckDBPyConnection) -> set[tuple[str, ...]]:
        rows = c.execute("SELECT list(n.record_id ORDER BY n.record_id) FROM cc JOIN nodes n USING (node_id) "
                         "GROUP BY cc.cluster_id").fetchall()
        return {tuple(r[0]) for r in rows}

    prev = tmp_path / "restricted"
    prev.mkdir(parents=True)
    base = duckdb.connect()
    load(base, old, pairs_old)
    clustering.cluster(base, make_db_api(base), "predictions", threshold, [], settings, duplicate_free)
    by_ids = ("SELECT nl.source_dataset AS source_dataset_l, nl.record_id AS record_id_l, nr.source_dataset AS "
              "source_dataset_r, nr.record_id AS record_id_r, {} FROM {} t JOIN nodes nl ON nl.node_id = t.node_id_l "
              "JOIN nodes nr ON nr.node_id = t.node_id_r")
    base.execute(f"COPY (SELECT source_dataset, record_id, 'p' || cluster_id AS person_key, cluster_size, "
                 f"cluster_min_match_weight, cluster_links, deterministic_links FROM clusters) TO '{prev / 'crosswalk.parquet'}'")
    base.execute(f"COPY ({by_ids.format('match_weight, match_probability', 'predictions')}) TO '{prev / 'predictions.parquet'}'")
    base.execute(f"COPY ({by_ids.format('match_weight, match_probability, kind, reason', 'cluster_splits')}) "
                 f"TO '{prev / 'cluster_splits.parquet'}'")
    base.execute(f"COPY ({by_ids.format('kind', 'links')} WHERE kind <> 'model') TO '{prev / 'deterministic_links.parquet'}'")

    full = duckdb.connect()
    load(full, new, pairs_new)
    clustering.cluster(full, make_db_api(full), "predictions", threshold, [], settings, duplicate_free)

    con = duckdb.connect()
    load(con, new, pairs_new)
    status = {r: "added" if r not in old else "changed" if old[r] != new[r] else "same" for r in new}
    status.update({r: "removed" for r in old if r not in new})
    con.execute("CREATE TABLE record_changes (source_dataset VARCHAR, record_id VARCHAR, status VARCHAR)")
    con.executemany("INSERT INTO record_changes VALUES ('s', ?, ?)", list(status.items()))
    con.execute("CREATE TABLE _keys AS SELECT n.source_dataset, n.record_id, n.node_id, c.status = 'same' AS old "
                "FROM nodes n JOIN record_changes c USING (source_dataset, record_id)")
    # scored in this run: every pair of a new record; a pair of unchanged records scored again
    node = {r: i + 1 for i, r in enumerate(sorted(new))}
    scored = []
    for (a, b), w in pairs_new.items():
        was = pairs_old.get((a, b))
        if status[a] != "same" or status[b] != "same" or was != w:
            scored.append((min(node[a], node[b]), max(node[a], node[b]), w, 2 ** w / (1 + 2 ** w), *(
                (was, 2 ** was / (1 + 2 ** was)) if was is not None and status[a] == status[b] == "same" else (None, None))))
    for (a, b), w in pairs_old.items():
        if (a, b) not in pairs_new and status.get(a) == status.get(b) == "same":
            scored.append((min(node[a], node[b]), max(node[a], node[b]), None, None, w, 2 ** w / (1 + 2 ** w)))
    con.execute("CREATE TABLE _scored_now (node_id_l BIGINT, node_id_r BIGINT, match_weight DOUBLE, "
                "match_probability DOUBLE, old_weight DOUBLE, old_probability DOUBLE)")
    if scored:
        con.executemany("INSERT INTO _scored_now VALUES (?, ?, ?, ?, ?, ?)", scored)
    counts: dict[str, int] = {}
    notes: list[str] = []
    increments.cluster(con, make_db_api(con), tmp_path, threshold, [], settings, duplicate_free,
                       note=notes.append, counts=counts)
    assert not [n for n in notes if "clustering every record instead" in n], notes
    # each record's evidence too: a carried person keeps the previous run's, right only when
    # the person is the same
    evidence = ("SELECT record_id, cluster_size, cluster_min_match_weight, cluster_links, deterministic_links "
                "FROM clusters ORDER BY record_id")
    assert con.execute(evidence).fetchall() == full.execute(evidence).fetchall()
    return partition(con), partition(full), partition(base), counts


def test_only_the_people_the_changes_reach_are_clustered_again_and_the_clusters_are_a_full_runs(tmp_path):
    """Four changes, each reaching people through something other than links, and chains of
    low pairs (between linked records: neither an attachment nor a rival) around them that
    the wide rule (whole components of the pairs above the floor) follows and the narrow one
    must not. The incremental clusters equal a full clustering's, with either rule.

    A: a new record attaches by a low pair to a person. B: a lone record's best candidate
    loses its only link (its partner removed): it attaches to its second best now. C: a weak
    link's rival person gains a record with another date of birth: the link is ambiguous now
    and cut. D: likewise for the rival of an attachment's linked record. E: a person gains a
    record; its weak link's rival, told apart and unchanged, still cuts it (read as context).
    F: a lone record whose pair into B's person is a candidate but not its best (it
    attaches elsewhere): read as context, never placed. G: a lone record's pair with its
    second-best candidate is scored again higher (term frequencies moved): it attaches
    there now, and leaves its previous person. H: a lone record's pair with its best
    candidate is scored again below the floor (gone): it attaches to its second best."""
    from linkage.config import ClusteringConfig

    settings = ClusteringConfig(fracture_match_weight=8, ambiguity_margin=2, attach_match_weight=-2,
                                conflict_columns=[])
    no = (None, None)
    old: dict[str, tuple] = {f"{i:02d}": no for i in range(1, 76)}
    pairs = {("01", "02"): 20.0, ("03", "04"): 20.0, ("05", "06"): 20.0, ("07", "08"): 20.0,
             ("02", "03"): -3.0, ("04", "05"): -3.5, ("06", "07"): -1.0,  # A's chain
             ("11", "12"): 20.0, ("13", "14"): 20.0, ("15", "11"): 0.0, ("15", "13"): 1.0,
             ("16", "17"): 20.0, ("18", "19"): 20.0, ("12", "16"): -3.5, ("17", "18"): -3.0,  # B's chain
             ("21", "22"): 20.0, ("22", "23"): 3.5, ("23", "24"): 1.8, ("24", "25"): 20.0,
             ("27", "28"): 20.0, ("21", "27"): -3.0, ("28", "29"): 20.0,  # C's chain
             ("32", "33"): 20.0, ("31", "32"): -1.0, ("32", "34"): -2.5, ("34", "35"): 20.0,
             ("37", "38"): 20.0, ("33", "37"): -3.9,  # D's chain
             ("41", "42"): 20.0, ("42", "43"): 3.5, ("43", "44"): 1.8, ("44", "45"): 20.0,  # E
             ("48", "12"): 0.5, ("48", "19"): 1.5,  # F
             ("62", "63"): 20.0, ("64", "65"): 20.0, ("61", "62"): 0.5, ("61", "64"): 1.0,  # G
             ("72", "73"): 20.0, ("74", "75"): 20.0, ("71", "72"): 1.0, ("71", "74"): 0.5}  # H
    for i in ("21", "22", "23"):
        old[i] = ("1990-01-01", None)
    old["31"] = ("1990-01-01", None)
    old.update({"41": ("1990-01-01", None), "42": ("1990-01-01", None), "44": ("1970-01-01", None)})
    for gone in ("09", "26", "36", "46"):
        del old[gone]
    new = {r: v for r, v in old.items() if r != "14"}
    new["09"] = no  # A
    new["26"] = ("1970-01-01", None)  # C: the rival person's new record
    new["36"] = ("1970-01-01", None)  # D
    new["46"] = no  # E
    pairs_new = {k: w for k, w in pairs.items() if "14" not in k and k != ("71", "72")}
    pairs_new.update({("01", "09"): -1.0, ("25", "26"): 20.0, ("35", "36"): 20.0, ("41", "46"): 20.0,
                      ("61", "62"): 1.5})
    inc, full, before, counts = _cycle(tmp_path / "narrow", old, new, pairs, pairs_new, settings)
    assert inc == full
    # each change did change the people: A 09 joins, B 15 moves, C 23 is cut off, D 31 too
    assert ("01", "02", "09") in full and ("13", "14", "15") in before and ("11", "12", "15") in full
    assert ("21", "22", "23") in before and ("23",) in full and ("31", "32", "33") in before and ("31",) in full
    assert ("43",) in before and ("41", "42", "46") in full and ("18", "19", "48") in full
    assert ("61", "64", "65") in before and ("61", "62", "63") in full
    assert ("71", "72", "73") in before and ("71", "74", "75") in full
    # A: 01 02 09; B: 11 12 13 15; C: 21-26; D: 31-33 and 34-36; E: 41 42 43 46; G: 61-65; H: 71-75
    assert counts["records_clustered_again"] == 3 + 4 + 6 + 6 + 4 + 5 + 5
    assert counts["records_read_as_context"] > 0
    wide_inc, wide_full, _, wide = _cycle(tmp_path / "wide", old, new, pairs, pairs_new, settings,
                                          duplicate_free=["no such source"])
    assert wide_inc == wide_full == full
    assert wide["records_clustered_again"] > counts["records_clustered_again"]
