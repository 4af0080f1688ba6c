"""Error analysis: hand-worked counts, an oracle that enumerates pairs, and the files it writes."""

from __future__ import annotations

import csv
import itertools
import json
import random
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from linkage.error_analysis import error_analysis
from linkage.errors import InputError


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# record: (source, record_id, predicted cluster, true person)
HAND = [
    ("pnc", "a1", "X", "A"),
    ("libra", "a2", "X", "A"),
    ("libra", "a3", "Y", "A"),
    ("pnc", "b1", "X", "B"),
    ("prison", "b2", "Z", "B"),
    ("pnc", "c1", "W", "C"),
]
HAND_CORRUPTIONS = [
    ("libra", "a3", "date_of_birth", "swap"),
    ("pnc", "b1", "surname", "typo"),
    ("pnc", "b1", "date_of_birth", "swap"),
    ("pnc", "c1", "surname", "typo"),
]


def make_run(tmp_path: Path, records, corruptions, rejects=()) -> tuple[Path, Path, Path]:
    run = tmp_path / "run"
    (run / "restricted").mkdir(parents=True)
    sources = sorted({r[0] for r in records} | {r[0] for r in rejects})
    (run / "manifest.json").write_text(json.dumps({"inputs": {s: {} for s in sources}}))
    con = duckdb.connect()
    con.execute("CREATE TABLE cw (source_dataset VARCHAR, record_id VARCHAR, person_key VARCHAR)")
    con.executemany("INSERT INTO cw VALUES (?, ?, ?)", [(s, r, c) for s, r, c, _ in records])
    con.execute(f"COPY cw TO '{run / 'restricted' / 'crosswalk.parquet'}' (FORMAT parquet)")
    con.execute("CREATE TABLE rj (source_dataset VARCHAR, record_id VARCHAR, row_number BIGINT, reason VARCHAR)")
    if rejects:
        con.executemany("INSERT INTO rj VALUES (?, ?, ?, ?)",
                        [(s, r, i, "record id is empty") for i, (s, r, _) in enumerate(rejects)])
    con.execute(f"COPY rj TO '{run / 'restricted' / 'rejects.parquet'}' (FORMAT parquet)")
    con.close()
    truth = write_csv(tmp_path / "truth.csv", ["source_dataset", "record_id", "person_id"],
                      [(s, r, t) for s, r, _, t in records] + [(s, r, t) for s, r, t in rejects])
    corr = write_csv(tmp_path / "corruptions.csv", ["source_dataset", "record_id", "field", "corruption"], corruptions)
    return run, truth, corr


def test_hand_worked_counts(tmp_path):
    run, truth, corr = make_run(tmp_path, HAND, HAND_CORRUPTIONS)
    r = error_analysis(run, truth, corr)
    # missed pairs: a1-a3, a2-a3, b1-b2; false pairs: a1-b1, a2-b1
    assert r["totals"] == {"missed_pairs": 3, "false_pairs": 2,
                           "records_with_missed_links": 5, "records_with_false_links": 3}
    by = {(c["field"], c["corruption"]): c for c in r["by_corruption"]}
    dob = by[("date_of_birth", "swap")]  # a3 (missed 2), b1 (missed 1, false 2)
    assert (dob["records"], dob["records_with_missed_links"], dob["records_with_false_links"]) == (2, 2, 1)
    assert (dob["missed_pair_ends"], dob["false_pair_ends"]) == (3, 2)
    assert dob["missed_rate"] == 1.0 and dob["false_rate"] == 0.5
    typo = by[("surname", "typo")]  # b1 and c1
    assert (typo["records"], typo["records_with_missed_links"], typo["records_with_false_links"]) == (2, 1, 1)
    clean = r["uncorrupted"]  # a1, a2, b2
    assert (clean["records"], clean["records_with_missed_links"], clean["records_with_false_links"]) == (3, 3, 2)
    assert {c["corruptions"]: c["records"] for c in r["by_corruption_count"]} == {"0": 3, "1": 2, "2": 1}
    pairs = {(p["source_a"], p["source_b"]): p for p in r["by_source_pair"]}
    assert {k: (v["true_pairs"], v["missed_pairs"], v["predicted_pairs"], v["false_pairs"]) for k, v in pairs.items()} == {
        ("libra", "libra"): (1, 1, 0, 0),
        ("libra", "pnc"): (2, 1, 2, 1),
        ("pnc", "pnc"): (0, 0, 1, 1),
        ("pnc", "prison"): (1, 1, 0, 0),
    }
    assert r["corruption_log"] == {"file": str(corr), "rows": 4, "records": 3, "rows_not_in_run": 0}


def test_examples_name_records_only_with_a_partner(tmp_path):
    run, truth, corr = make_run(tmp_path, HAND, HAND_CORRUPTIONS)
    r = error_analysis(run, truth, corr)
    path = run / "restricted" / "error_examples.parquet"
    assert r["examples"]["file"] == str(path)
    assert (r["examples"]["missed_link_records"], r["examples"]["false_link_records"]) == (5, 3)
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT kind, source_dataset, record_id, errors, other_source_dataset, other_record_id, corruptions "
        f"FROM read_parquet('{path}')"
    ).fetchall()
    got = {(k, rid): (n, os_, orid, c) for k, _, rid, n, os_, orid, c in rows}
    # a3's true mates are in cluster X; X's first record of person A is (libra, a2)
    assert got[("missed_link", "a3")] == (2, "libra", "a2", ["date_of_birth:swap"])
    # b1 sits with A's records; a1 and a2 with b1
    assert got[("false_link", "b1")][:3] == (2, "libra", "a2")
    assert got[("false_link", "a1")][:3] == (1, "pnc", "b1")
    assert not any(k[1] == "c1" for k in got)
    columns = [c for c, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
    assert columns == ["kind", "source_dataset", "record_id", "cluster", "true_person", "errors", "corruptions",
                       "other_source_dataset", "other_record_id", "other_corruptions"]


def test_max_examples_keeps_the_worst(tmp_path):
    run, truth, corr = make_run(tmp_path, HAND, HAND_CORRUPTIONS)
    r = error_analysis(run, truth, corr, max_examples=1)
    assert (r["examples"]["missed_link_records"], r["examples"]["false_link_records"]) == (1, 1)
    rows = duckdb.sql(f"SELECT kind, record_id FROM read_parquet('{run / 'restricted' / 'error_examples.parquet'}')").fetchall()
    assert sorted(rows) == [("false_link", "b1"), ("missed_link", "a3")]


def test_rejected_records_are_singletons(tmp_path):
    # a rejected record of person A: its mates a1..a3 all miss it
    run, truth, corr = make_run(tmp_path, HAND, HAND_CORRUPTIONS, rejects=[("libra", "a4", "A")])
    r = error_analysis(run, truth, corr)
    assert r["records"] == 7
    assert r["totals"]["missed_pairs"] == 3 + 3


def test_on_a_callers_connection(tmp_path):
    _, truth, corr = make_run(tmp_path, HAND, HAND_CORRUPTIONS)
    con = duckdb.connect()
    con.execute("CREATE TABLE predicted (source_dataset VARCHAR, record_id VARCHAR, cluster VARCHAR)")
    con.executemany("INSERT INTO predicted VALUES (?, ?, ?)", [(s, r, c) for s, r, c, _ in HAND])
    r = error_analysis(con, truth, corr)
    assert r["totals"]["missed_pairs"] == 3 and "examples" not in r
    out = tmp_path / "ex.parquet"
    r = error_analysis(con, truth, corr, examples_path=out)
    assert out.is_file() and r["examples"]["missed_link_records"] == 5


def brute_force(records):
    """Every pair enumerated: the oracle."""
    missed, false = Counter(), Counter()
    for (s1, _, c1, t1), (s2, _, c2, t2) in itertools.combinations(records, 2):
        key = tuple(sorted((s1, s2)))
        if t1 == t2 and c1 != c2:
            missed[key] += 1
        if c1 == c2 and t1 != t2:
            false[key] += 1
    return missed, false


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_pair_enumeration_on_random_runs(tmp_path, seed):
    rng = random.Random(seed)
    sources = ["pnc", "prison", "libra"]
    records = []
    for i in range(80):
        person = f"T{rng.randrange(25)}"
        # mostly the right cluster, sometimes a neighbour's or a new one
        cluster = rng.choice([person, person, person, f"T{rng.randrange(25)}", f"new{i}"])
        records.append((rng.choice(sources), f"r{i}", cluster, person))
    corruptions = [(s, r, "surname", "typo") for s, r, _, _ in records if rng.random() < 0.3]
    run, truth, corr = make_run(tmp_path, records, corruptions)
    r = error_analysis(run, truth, corr)
    missed, false = brute_force(records)
    assert r["totals"]["missed_pairs"] == sum(missed.values())
    assert r["totals"]["false_pairs"] == sum(false.values())
    got_missed = {(p["source_a"], p["source_b"]): p["missed_pairs"] for p in r["by_source_pair"] if p["missed_pairs"]}
    got_false = {(p["source_a"], p["source_b"]): p["false_pairs"] for p in r["by_source_pair"] if p["false_pairs"]}
    assert got_missed == dict(missed) and got_false == dict(false)
    # per record counts, checked for the corrupted records
    typo = next(c for c in r["by_corruption"] if c["corruption"] == "typo")
    ids = {rid for _, rid, _, _ in corruptions}
    ends = sum(1 for a, b in itertools.permutations(records, 2) if a[1] in ids and a[3] == b[3] and a[2] != b[2])
    assert typo["missed_pair_ends"] == ends


def test_bad_corruption_log(tmp_path):
    run, truth, _ = make_run(tmp_path, HAND, HAND_CORRUPTIONS)
    bad = write_csv(tmp_path / "bad.csv", ["source_dataset", "record_id", "what"], [("pnc", "a1", "x")])
    with pytest.raises(InputError, match=r"bad\.csv: the corruption log needs columns .* missing field, corruption"):
        error_analysis(run, truth, bad)
    with pytest.raises(InputError, match="corruption log not found"):
        error_analysis(run, truth, tmp_path / "nope.csv")
