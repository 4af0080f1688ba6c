"""Person keys across runs: persist, merge (larger keeps), split (largest part keeps)."""

from __future__ import annotations

import duckdb

from linkage.identity import assign_person_keys


def _run(clusters: dict[str, list[str]], previous: dict[str, list[str]] | None, generation: int = 2):
    con = duckdb.connect()
    con.execute("CREATE TABLE clusters (source_dataset VARCHAR, record_id VARCHAR, cluster_id VARCHAR)")
    for cid, records in clusters.items():
        con.executemany("INSERT INTO clusters VALUES ('s', ?, ?)", [(r, cid) for r in records])
    prev = None
    if previous is not None:
        con.execute("CREATE TABLE prev (source_dataset VARCHAR, record_id VARCHAR, person_key VARCHAR)")
        for key, records in previous.items():
            con.executemany("INSERT INTO prev VALUES ('s', ?, ?)", [(r, key) for r in records])
        prev = "prev"
    stats = assign_person_keys(con, prev, generation)
    keys = dict(con.execute("SELECT cluster_id, person_key FROM person_keys").fetchall())
    lineage = con.execute("SELECT person_key, event, other_key FROM id_lineage ORDER BY ALL").fetchall()
    return stats, keys, lineage


def test_first_run_is_deterministic():
    a = _run({"c1": ["r1", "r2"], "c2": ["r3"]}, None, 1)
    b = _run({"x": ["r1", "r2"], "y": ["r3"]}, None, 1)
    assert sorted(a[1].values()) == sorted(b[1].values())
    assert len(set(a[1].values())) == 2


def test_persisting_clusters_keep_their_keys():
    stats, keys, _ = _run({"c1": ["r1", "r2"], "c2": ["r3"], "c3": ["r4"]}, {"K1": ["r1", "r2"], "K2": ["r3"]})
    assert keys["c1"] == "K1" and keys["c2"] == "K2"
    assert keys["c3"] not in ("K1", "K2")
    assert (stats.kept, stats.new, stats.merges, stats.splits) == (2, 1, 0, 0)


def test_merge_larger_keeps_its_key():
    stats, keys, lineage = _run({"c": ["r1", "r2", "r3"]}, {"BIG": ["r1", "r2"], "SMALL": ["r3"]})
    assert keys["c"] == "BIG"
    assert ("SMALL", "merged_into", "BIG") in lineage
    assert stats.merges == 1


def test_split_largest_part_keeps_the_key():
    stats, keys, lineage = _run({"a": ["r1"], "b": ["r2", "r3"]}, {"K": ["r1", "r2", "r3"]})
    assert keys["b"] == "K"
    assert keys["a"] != "K"
    assert (keys["a"], "split_from", "K") in lineage
    assert stats.splits == 1


def test_split_key_is_never_reissued_even_from_the_same_first_record():
    # Generation 1 named the cluster after its first record r1; r1 splits off alone.
    _, first, _ = _run({"c": ["r1", "r2", "r3"]}, None, 1)
    _, keys, _ = _run({"a": ["r1"], "b": ["r2", "r3"]}, {first["c"]: ["r1", "r2", "r3"]}, 2)
    assert keys["b"] == first["c"] and keys["a"] != first["c"]


def test_records_gone_retire_the_key():
    stats, _, lineage = _run({"c": ["r9"]}, {"OLD": ["r1"]})
    assert ("OLD", "retired", None) in lineage
    assert stats.retired == 1
