"""Clerical decisions: the pure must-link / cannot-link decision on tiny graphs, the decision
file's checks, and decisions kept and applied across later runs through the CLI."""

from __future__ import annotations

import json
import random
import shutil
import stat
from pathlib import Path

import duckdb
import pytest

from conftest import cli, copy_of, fast_config
from linkage.decisions import normalise_decision, read_decision_file, resolve
from linkage.errors import InputError

# --- resolve: table-driven, hand-computed ------------------------------------------------------

CASES = [
    # name, nodes, links, must, cannot, parts, cut, conflicts
    ("nothing decided", [1, 2, 3], [(1, 2, 5.0), (2, 3, 6.0)], [], [], [[1, 2, 3]], [], []),
    ("a chain cut at its weakest link", [1, 2, 3, 4], [(1, 2, 9.0), (2, 3, 5.0), (3, 4, 9.0)], [], [(1, 4)],
     [[1, 2], [3, 4]], [(2, 3)], []),
    ("a triangle: the third record goes with its stronger link", [1, 2, 3], [(1, 2, 9.0), (2, 3, 8.0), (1, 3, 7.0)],
     [], [(1, 2)], [[2, 3], [1]], [(1, 2), (1, 3)], []),
    ("the stronger side keeps the middle record", [1, 2, 3], [(1, 2, 4.0), (2, 3, 8.0)], [], [(1, 3)],
     [[2, 3], [1]], [(1, 2)], []),
    ("a deterministic link (None) outranks any weight", [1, 2, 3], [(1, 2, None), (2, 3, 30.0)], [], [(1, 3)],
     [[1, 2], [3]], [(2, 3)], []),
    ("a must-link joins two clusters", [1, 2, 3, 4], [(1, 2, 9.0), (3, 4, 9.0)], [(2, 3)], [],
     [[1, 2, 3, 4]], [], []),
    ("a must-link holds the middle record on its side", [1, 2, 3], [(1, 2, 9.0), (2, 3, 8.0)], [(2, 3)], [(1, 3)],
     [[2, 3], [1]], [(1, 2)], []),
    ("cannot-link already apart: nothing changes", [1, 2, 3], [(1, 2, 9.0)], [], [(1, 3)], [[1, 2], [3]], [], []),
    ("two cannot-links cut a cluster in three", [1, 2, 3], [(1, 2, 9.0), (2, 3, 9.0)], [], [(1, 2), (2, 3)],
     [[1], [2], [3]], [(1, 2), (2, 3)], []),
]


@pytest.mark.parametrize("name, nodes, links, must, cannot, parts, cut, conflicts", CASES, ids=[c[0] for c in CASES])
def test_resolve_by_hand(name, nodes, links, must, cannot, parts, cut, conflicts):
    res = resolve(nodes, links, must, cannot)
    assert sorted(res.parts) == sorted(parts)
    assert res.cut == cut
    assert res.conflicts == conflicts


def test_a_chain_of_must_links_across_a_cannot_link_is_a_conflict_and_changes_nothing():
    links = [(1, 2, 9.0), (3, 4, 9.0), (4, 5, 2.0)]
    res = resolve([1, 2, 3, 4, 5], links, must=[(2, 3), (3, 5)], cannot=[(5, 2)])
    assert res.conflicts == [(2, 5)]
    assert sorted(res.parts) == [[1, 2], [3, 4, 5]]  # as the links made them: the must-links not applied
    assert res.cut == []


def _components(nodes, edges):
    """Oracle: connected components by breadth-first search."""
    adj = {n: set() for n in nodes}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    seen, out = set(), []
    for n in nodes:
        if n in seen:
            continue
        comp, todo = [], [n]
        seen.add(n)
        while todo:
            x = todo.pop()
            comp.append(x)
            for y in adj[x] - seen:
                seen.add(y)
                todo.append(y)
        out.append(sorted(comp))
    return out


@pytest.mark.parametrize("seed", range(60))
def test_resolve_on_random_graphs_keeps_every_decision_and_every_link_it_can(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 12)
    nodes = list(range(1, n + 1))
    pairs = [(a, b) for a in nodes for b in nodes if a < b]
    links = [(a, b, rng.choice([None, *range(-2, 25)])) for a, b in rng.sample(pairs, rng.randint(0, len(pairs)))]
    decided = rng.sample(pairs, min(len(pairs), rng.randint(0, 4)))
    must = [p for p in decided if rng.random() < 0.5]
    cannot = [p for p in decided if p not in must]
    res = resolve(nodes, links, must, cannot)
    chains = _components(nodes, must)
    chain_of = {x: i for i, c in enumerate(chains) for x in c}
    if any(chain_of[a] == chain_of[b] for a, b in cannot):
        assert res.conflicts and sorted(res.parts) == sorted(_components(nodes, [(a, b) for a, b, _ in links]))
        return
    assert not res.conflicts
    part = {x: i for i, p in enumerate(res.parts) for x in p}
    assert sorted(x for p in res.parts for x in p) == nodes
    assert all(part[a] == part[b] for a, b in must)
    assert all(part[a] != part[b] for a, b in cannot)
    # each part holds together by the links and must-links it keeps
    kept = [(a, b) for a, b, _ in links if part[a] == part[b]] + list(must)
    assert sorted(_components(nodes, kept)) == sorted(res.parts)
    # the cut links are exactly those between parts, and none could be restored alone
    assert res.cut == sorted((min(a, b), max(a, b)) for a, b, _ in links if part[a] != part[b])
    for a, b in res.cut:
        joined = {part[a], part[b]}
        assert any({part[x], part[y]} == joined for x, y in cannot)


# --- the decision file ---------------------------------------------------------------------------

HEADER = "source_dataset_l,record_id_l,source_dataset_r,record_id_r,decision,reviewer,notes\n"


def write(tmp_path: Path, text: str, name: str = "decisions.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_normalised_decisions():
    assert [normalise_decision(t) for t in ("MATCH", "Not_Match", "non-match", "unsure", "", "yes")] == [
        "match", "not_match", "not_match", "unsure", "", None]


def test_a_good_file_keeps_its_reviewer_and_notes_and_orders_each_pair(tmp_path):
    f = write(tmp_path, HEADER + "pnc,P2,libra,L1,match,ann,same person\nlibra,L3,pnc,P1,not_match,bob,\n"
              "pnc,P5,libra,L5,,,\n")
    rows, blank = read_decision_file(f, sources=["pnc", "libra"])
    assert blank == 1
    assert rows[0]["source_dataset_l"] == "libra" and rows[0]["record_id_l"] == "L1"  # written in one order
    assert (rows[0]["reviewer"], rows[0]["notes"], rows[0]["import_row"]) == ("ann", "same person", 2)
    assert rows[1]["decision"] == "not_match" and rows[1]["notes"] is None


def test_a_bad_file_names_every_row_and_no_value(tmp_path):
    f = write(tmp_path, HEADER
              + "pnc,P1,libra,L1,match,ann,\n"          # 2 fine
              + "pnc,P1,libra,L1,maybe,ann,\n"          # 3 unknown decision
              + "pnc,,libra,L2,match,ann,\n"            # 4 empty id
              + "nowhere,SECRET9,libra,L3,match,ann,\n"  # 5 unknown source
              + "libra,L1,pnc,P1,not_match,ann,\n"      # 6 same pair as row 2
              + "pnc,P4,pnc,P4,match,ann,\n"            # 7 one record twice
              + "pnc,P5,libra,L5,match\n"               # 8 short row
              + "pnc,P6,libra,L6,match,ann,,extra\n")   # 9 long row
    with pytest.raises(InputError) as e:
        read_decision_file(f, sources=["pnc", "libra"])
    msg = str(e.value)
    for row in (3, 4, 5, 6, 7, 8, 9):
        assert f"row {row}:" in msg
    assert "row 2:" not in msg and "the same pair as row 2" in msg
    assert "7 problems" in msg and "nothing was imported" in msg
    assert "SECRET9" not in msg and "nowhere" not in msg and "maybe" not in msg


@pytest.mark.parametrize("header, expected", [
    ("source_dataset_l,record_id_l,source_dataset_r,record_id_r,decison\n", "missing decision"),
    (HEADER.strip() + ",colour\n", "unknown column colour"),
    (HEADER.strip() + ",notes\n", "repeated column notes"),
])
def test_a_file_with_wrong_columns_is_refused(tmp_path, header, expected):
    f = write(tmp_path, header + "pnc,P1,libra,L1,match,ann,,x\n")
    with pytest.raises(InputError, match=expected):
        read_decision_file(f, sources=["pnc", "libra"])


# --- through the CLI: decisions applied and kept across later runs -----------------------------------


@pytest.fixture(scope="module")
def base(seed3, seed3_run, tmp_path_factory):
    """A synthetic population and a first full run of it."""
    tmp = tmp_path_factory.mktemp("decisions")
    shutil.copytree(seed3, tmp / "data")
    copy_of(seed3_run[0], tmp / "run1")  # decisions are imported into it
    return tmp, fast_config(tmp)  # the same config as the run's


@pytest.fixture(scope="module")
def model_run(base) -> Path:
    """A run of the same data with run 1's saved model, no decisions yet: tests that import
    decisions into a run of their own take a copy of it."""
    tmp, job = base
    out = tmp / "model_run"
    res = cli("run", str(job), "--data", str(tmp / "data"), "--out", str(out),
              "--model", str(tmp / "run1" / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    return out


def crosswalk(run: Path) -> dict[tuple[str, str], str]:
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT source_dataset, record_id, person_key FROM read_parquet('{run / 'restricted' / 'crosswalk.parquet'}')"
    ).fetchall()
    return {(s, r): k for s, r, k in rows}


def pick(run: Path):
    """Records of two clusters of three or more, and four records alone."""
    con = duckdb.connect()
    cw = f"read_parquet('{run / 'restricted' / 'crosswalk.parquet'}')"
    big = [k for (k,) in con.execute(
        f"SELECT person_key FROM {cw} WHERE cluster_size >= 3 GROUP BY ALL ORDER BY 1 LIMIT 2").fetchall()]
    members = [con.execute(f"SELECT source_dataset, record_id FROM {cw} WHERE person_key = ? ORDER BY ALL", [k])
               .fetchall() for k in big]
    alone = con.execute(f"SELECT source_dataset, record_id FROM {cw} WHERE cluster_size = 1 ORDER BY ALL LIMIT 4").fetchall()
    return members, alone


def line(a, b, decision, reviewer="ann"):
    return f"{a[0]},{a[1]},{b[0]},{b[1]},{decision},{reviewer},\n"


def test_decisions_are_applied_and_kept_across_two_later_runs(base):
    tmp, job = base
    run1 = tmp / "run1"
    (cluster_a, cluster_b), alone = pick(run1)
    before = crosswalk(run1)
    assert before[cluster_a[0]] == before[cluster_a[1]] and before[alone[0]] != before[alone[1]]
    f = write(tmp, HEADER + line(cluster_a[0], cluster_a[1], "not_match") + line(alone[0], alone[1], "match")
              + line(alone[2], cluster_b[0], "match") + line(alone[3], cluster_b[1], "unsure")
              + "pnc,GONE1,libra,GONE2,match,ann,record gone\n", "week1.csv")
    res = cli("review", str(run1), "--import", str(f))
    assert res.returncode == 0, res.stderr
    assert "imported 5 decisions" in res.stderr and "1 name records this run does not hold" in res.stderr
    store = run1 / "restricted" / "decisions" / "decisions.parquet"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    # the first run itself is not changed by an import: later runs apply the decisions
    assert crosswalk(run1) == before

    model = str(run1 / "restricted" / "model.json")
    run2, run3 = tmp / "run2", tmp / "run2"  # run 3 reruns into run 2's --out
    for i, (out, previous) in enumerate(((run2, run1), (run3, run2))):
        res = cli("run", str(job), "--data", str(tmp / "data"), "--out", str(out), "--previous", str(previous),
                  "--model", model)
        assert res.returncode == 0, res.stderr
        assert "clerical decisions in force" in res.stderr
        after = crosswalk(out)
        assert after[cluster_a[0]] != after[cluster_a[1]], f"run {i + 2}: not_match not applied"
        assert after[alone[0]] == after[alone[1]], f"run {i + 2}: match not applied"
        assert after[alone[2]] == after[cluster_b[0]] == after[cluster_b[2]]
        assert after[alone[3]] != after[cluster_b[1]]  # unsure changes nothing
        m = json.loads((out / "manifest.json").read_text())["clerical_decisions"]
        assert m["in_force"] == 5 and m["by_decision"] == {"match": 3, "not_match": 1, "unsure": 1}
        assert (m["merged"], m["separated"], m["records_missing"], m["conflicts"]) == (2, 1, 1, 0)
        assert m["links_cut"] >= 1
        assert "GONE1" not in (out / "manifest.json").read_text()
        page = (out / "report.html").read_text()
        assert "Clerical decisions" in page and "match: joined two people" in page and "GONE1" not in page
        kept = duckdb.connect().execute(
            f"SELECT count(*), count(*) FILTER (WHERE reviewer = 'ann') FROM read_parquet('{out}/restricted/decisions/decisions.parquet')"
        ).fetchall()[0]
        assert kept == (5, 5)  # the missing record's decision is kept for a later run
        outcomes = dict(duckdb.connect().execute(
            f"SELECT record_id_l || record_id_r, outcome FROM read_parquet('{out}/restricted/decision_outcomes.parquet')"
        ).fetchall())
        assert outcomes["GONE2GONE1"] == "record not in this run"


def test_conflicting_decisions_are_reported_and_the_clusters_left_as_the_model_made_them(base, model_run):
    tmp, job = base
    run1 = tmp / "run1"
    out = tmp / "conflict"
    _, alone = pick(run1)
    a, b, c, d = alone
    f = write(tmp, HEADER + line(a, b, "match") + line(b, c, "match") + line(a, c, "not_match")
              + line(c, d, "not_match"), "conflict.csv")
    # into a copy of a run like run 1 (review --import writes the store into the run it names)
    shutil.copytree(model_run, out)
    assert cli("review", str(out), "--import", str(f)).returncode == 0
    res = cli("run", str(job), "--data", str(tmp / "data"), "--out", str(out), "--previous", str(out),
              "--model", str(run1 / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    assert "1 clerical decisions conflict" in res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["clerical_decisions"]["conflicts"] == 1
    assert any("conflict" in w for w in manifest["warnings"])
    after = crosswalk(out)
    assert len({after[a], after[b], after[c]}) == 3  # no must-link of the conflicting chain applied
    outcomes = dict(duckdb.connect().execute(
        f"SELECT decision || ':' || outcome, count(*) FROM read_parquet('{out}/restricted/decision_outcomes.parquet') "
        f"GROUP BY ALL").fetchall())
    assert outcomes == {"not_match:conflict": 1, "match:not applied: conflict": 2, "not_match:already apart": 1}


def test_a_bad_decision_file_imports_nothing_and_names_its_rows(base):
    tmp, _ = base
    run1 = tmp / "run1"
    _, alone = pick(run1)
    store = run1 / "restricted" / "decisions" / "decisions.parquet"
    before = store.read_bytes() if store.exists() else None
    f = write(tmp, HEADER + line(alone[0], alone[1], "match") + line(alone[1], alone[2], "perhaps")
              + "pnc,,libra,L1,match,ann,\n", "bad.csv")
    res = cli("review", str(run1), "--import", str(f))
    assert res.returncode == 1
    assert "row 3:" in res.stderr and "row 4:" in res.stderr and "row 2:" not in res.stderr
    assert "nothing was imported" in res.stderr and "perhaps" not in res.stderr
    assert (store.read_bytes() if store.exists() else None) == before


def _snapshot_without(src: Path, dst: Path, keep_named: set[tuple[str, str]], drop: int = 8) -> None:
    """A later snapshot of the extracts: ``drop`` Libra records gone (none a decision names),
    one changed (a surname corrected)."""
    import csv
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.csv"):
        shutil.copy(f, dst / f.name)
    with (src / "libra.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), list(reader)
    id_col = header[0]
    free = [i for i, r in enumerate(rows) if ("libra", r[id_col]) not in keep_named]
    gone = set(free[-drop:])
    rows[free[0]]["defendant_name"] += "E"
    with (dst / "libra.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(r for i, r in enumerate(rows) if i not in gone)


def test_decisions_applied_in_a_full_run_are_kept_by_two_incremental_runs_and_conflicts_reported(base, model_run):
    tmp, job = base
    run1 = tmp / "run1"
    model = str(run1 / "restricted" / "model.json")
    full = tmp / "inc_full"
    shutil.copytree(model_run, full)
    (cluster_a, _), _ = pick(full)
    a, b, c, d, e = duckdb.connect().execute(
        f"SELECT source_dataset, record_id FROM read_parquet('{full}/restricted/crosswalk.parquet') "
        f"WHERE cluster_size = 1 ORDER BY ALL LIMIT 5").fetchall()
    decisions = write(tmp, HEADER + line(cluster_a[0], cluster_a[1], "not_match") + line(a, b, "match")
                      # a chain of matches across a not_match: reported, not applied
                      + line(c, d, "match") + line(d, e, "match") + line(c, e, "not_match"), "inc.csv")
    assert cli("review", str(full), "--import", str(decisions)).returncode == 0
    named = {cluster_a[0], cluster_a[1], a, b, c, d, e}
    runs = [(tmp / "inc_full2", full, tmp / "data", False)]
    _snapshot_without(tmp / "data", tmp / "data_week2", named, drop=8)
    _snapshot_without(tmp / "data_week2", tmp / "data_week3", named, drop=5)
    runs += [(tmp / "inc_week2", tmp / "inc_full2", tmp / "data_week2", True),
             (tmp / "inc_week3", tmp / "inc_week2", tmp / "data_week3", True)]
    for out, previous, data, incremental in runs:
        args = ["run", str(job), "--data", str(data), "--out", str(out), "--previous", str(previous)]
        args += ["--incremental"] if incremental else ["--model", model]
        res = cli(*args)
        assert res.returncode == 0, res.stderr
        assert "1 clerical decisions conflict" in res.stderr
        after = crosswalk(out)
        assert after[cluster_a[0]] != after[cluster_a[1]], f"{out.name}: not_match not applied"
        assert after[a] == after[b], f"{out.name}: match not applied"
        assert len({after[c], after[d], after[e]}) == 3, f"{out.name}: a conflicting must-link applied"
        manifest = json.loads((out / "manifest.json").read_text())
        m = manifest["clerical_decisions"]
        assert (m["in_force"], m["conflicts"], m["merged"], m["separated"]) == (5, 1, 1, 1), out.name
        assert any("conflict" in w for w in manifest["warnings"])
        assert (manifest["incremental"] is not None) == incremental
        assert m["what_changed"]["clusters_changed"] >= 2 and m["what_changed"]["conflicts"] == 1
