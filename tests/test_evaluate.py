"""Metrics on small hand-worked cases."""

from __future__ import annotations

import duckdb
import pytest

from linkage.errors import InputError
from linkage.evaluate import baseline_rules, error_attribution, f1, load_truth, pairwise_by_source_pair, scores


def _labelled(rows):
    con = duckdb.connect()
    con.execute("CREATE TABLE labelled (source_dataset VARCHAR, record_id VARCHAR, cluster VARCHAR, person VARCHAR)")
    con.executemany("INSERT INTO labelled VALUES (?, ?, ?, ?)", rows)
    return con


def test_hand_worked_pairwise_and_bcubed():
    # Truth: A = {a1, a2, a3}, B = {b1, b2}. Predicted: {a1, a2}, {a3, b1, b2}.
    con = _labelled([
        ("s", "a1", "c1", "A"), ("s", "a2", "c1", "A"),
        ("s", "a3", "c2", "A"), ("s", "b1", "c2", "B"), ("s", "b2", "c2", "B"),
    ])
    s = scores(con, "labelled")
    # True pairs 3 + 1 = 4; predicted 1 + 3 = 4; true positives (a1,a2) and (b1,b2) = 2.
    assert s["pairwise"]["true_pairs"] == 4 and s["pairwise"]["predicted_pairs"] == 4
    assert s["pairwise"]["precision"] == pytest.approx(0.5) and s["pairwise"]["recall"] == pytest.approx(0.5)
    # B-cubed precision per record: 1, 1, 1/3, 2/3, 2/3; recall: 2/3, 2/3, 1/3, 1, 1.
    assert s["cluster"]["precision"] == pytest.approx(11 / 15, abs=1e-6)
    assert s["cluster"]["recall"] == pytest.approx(11 / 15, abs=1e-6)
    assert s["cluster"]["f1"] == pytest.approx(11 / 15, abs=1e-6)


def test_all_singletons_have_perfect_precision_and_zero_recall():
    con = _labelled([("s", "a1", "c1", "A"), ("s", "a2", "c2", "A"), ("s", "b1", "c3", "B")])
    s = scores(con, "labelled")
    assert s["pairwise"] == {**s["pairwise"], "precision": 1.0, "recall": 0.0, "f1": 0.0}
    assert s["cluster"]["precision"] == 1.0
    assert s["cluster"]["recall"] == pytest.approx((0.5 + 0.5 + 1) / 3, abs=1e-6)


def test_one_big_cluster():
    con = _labelled([("s", "a1", "c", "A"), ("s", "a2", "c", "A"), ("s", "b1", "c", "B"), ("s", "b2", "c", "B")])
    s = scores(con, "labelled")
    assert s["pairwise"]["precision"] == pytest.approx(2 / 6, abs=1e-6)
    assert s["pairwise"]["recall"] == 1.0
    assert s["cluster"]["precision"] == pytest.approx(0.5)
    assert s["cluster"]["recall"] == 1.0


def test_by_source_pair_splits_the_pairs():
    # Person A in pnc and libra (linked), person B twice in libra (missed).
    con = _labelled([
        ("pnc", "p1", "c1", "A"), ("libra", "l1", "c1", "A"),
        ("libra", "l2", "c2", "B"), ("libra", "l3", "c3", "B"),
    ])
    table = {(r["source_a"], r["source_b"]): r for r in pairwise_by_source_pair(con, "labelled")}
    assert table[("libra", "pnc")]["precision"] == 1.0 and table[("libra", "pnc")]["recall"] == 1.0
    assert table[("libra", "libra")]["recall"] == 0.0 and table[("libra", "libra")]["true_pairs"] == 1


def test_f1():
    assert f1(0, 0) == 0
    assert f1(1, 0.5) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "body, message",
    [
        ("source_dataset,record_id,person_id\npnc,1,A\npnc,1,B\n", "appear more than once"),
        ("source_dataset,record_id,person_id\npnc,1,A\nmars,2,B\n", "source_dataset values the run does not have: 'mars' \\(1 rows\\)"),
        ("source_dataset,record_id,person_id\npnc,,A\n", "empty record_id or person_id"),
        ("a,b\n1,2\n", "needs columns source_dataset, record_id, person_id"),
    ],
)
def test_bad_truth_files_are_clear_errors(tmp_path, body, message):
    path = tmp_path / "truth.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=message):
        load_truth(duckdb.connect(), path, ["pnc", "libra"])


# --- error attribution ---------------------------------------------------------------------------


def _attribution_tables(truth, clusters, scored=(), deterministic=(), cut=()):
    """Tiny tables as ``evaluate_run`` builds them: node -> person, node -> (cluster, weakest)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE node_truth (node_id BIGINT, person VARCHAR)")
    con.executemany("INSERT INTO node_truth VALUES (?, ?)", list(truth.items()))
    con.execute("CREATE TABLE node_cluster (node_id BIGINT, cluster VARCHAR, weakest DOUBLE)")
    con.executemany("INSERT INTO node_cluster VALUES (?, ?, ?)", [(n, c, w) for n, (c, w) in clusters.items()])
    con.execute("CREATE TABLE eval_scored (node_id_l BIGINT, node_id_r BIGINT, match_probability DOUBLE)")
    if scored:
        con.executemany("INSERT INTO eval_scored VALUES (?, ?, ?)", list(scored))
    con.execute("CREATE TABLE eval_deterministic (node_id_l BIGINT, node_id_r BIGINT)")
    if deterministic:
        con.executemany("INSERT INTO eval_deterministic VALUES (?, ?)", list(deterministic))
    con.execute("CREATE TABLE eval_cut (node_id_l BIGINT, node_id_r BIGINT, reason VARCHAR)")
    if cut:
        con.executemany("INSERT INTO eval_cut VALUES (?, ?, ?)", list(cut))
    con.execute("CREATE TABLE labelled AS SELECT c.node_id::VARCHAR AS record_id, 's' AS source_dataset, "
                "c.cluster, t.person FROM node_cluster c JOIN node_truth t USING (node_id)")
    return con


def test_error_attribution_hand_worked_and_adds_up():
    # Person A = 1, 2, 3, 4; person B = 5, 6; person C = 7.
    truth = {1: "A", 2: "A", 3: "A", 4: "A", 5: "B", 6: "B", 7: "C"}
    # Clusters: {1, 2}, {3}, {4, 5, 6, 7} (weakest link 6.0).
    clusters = {1: ("c1", 20.0), 2: ("c1", 20.0), 3: ("c3", None), 4: ("c4", 6.0), 5: ("c4", 6.0),
                6: ("c4", 6.0), 7: ("c4", 6.0)}
    scored = [
        (1, 2, 0.999),  # a true link
        (1, 3, 0.50),   # A's 1-3: below the threshold
        (2, 4, 0.99),   # A's 2-4: linked, cut by clustering
        (4, 5, 0.96),   # a false direct link (A-B)
        (5, 6, 0.999),  # B's own link
        (6, 7, 0.97),   # a false direct link (B-C)
    ]
    cut = [(2, 4, "weak link between groups")]
    con = _attribution_tables(truth, clusters, scored, cut=cut)
    att = error_attribution(con, 0.95)
    m, f = att["missed_pairs"], att["false_pairs"]
    # Missed (true pairs apart): 1-3, 2-3 (never scored), 1-4, 2-4, 3-4.
    assert m == {**m, "total": 5, "below_threshold": 1, "cut_by_clustering": 1, "not_scored": 3}
    assert m["cut_by_clustering_reasons"] == {"weak link between groups": 1}
    # False pairs in {4, 5, 6, 7}: 4-5, 4-6, 4-7, 5-7, 6-7 = 5; direct 4-5 and 6-7, chains 3.
    assert f["total"] == 5 and f["direct_model_link"] == 2 and f["chain"] == 3
    assert sum(b["chain_pairs"] for b in f["chain_by_weakest_link"]) == f["chain"]
    assert {b["weakest_link_match_weight"]: b["chain_pairs"] for b in f["chain_by_weakest_link"]}["5 to 10"] == 3
    # The classes add up to the scores' totals.
    s = scores(con, "labelled")["pairwise"]
    assert m["total"] == s["true_pairs"] - s["true_positive_pairs"]
    assert f["total"] == s["predicted_pairs"] - s["true_positive_pairs"]
    assert m["not_scored"] + m["below_threshold"] + m["cut_by_clustering"] == m["total"]
    assert f["direct_model_link"] + f["direct_deterministic_link"] + f["chain"] == f["total"]


@pytest.mark.parametrize("seed", range(10))
def test_error_attribution_adds_up_on_random_clusterings(seed):
    import random

    rng = random.Random(seed)
    n = 40
    truth = {i: f"P{rng.randint(1, 12)}" for i in range(1, n + 1)}
    weakest = {f"C{c}": rng.choice([None, 3.0, 8.0, 15.0, 25.0]) for c in range(1, 11)}
    clusters = {i: (c, weakest[c]) for i in range(1, n + 1) for c in [f"C{rng.randint(1, 10)}"]}
    pairs = [(a, b) for a in range(1, n + 1) for b in range(a + 1, n + 1)]
    scored = [(a, b, rng.random()) for a, b in rng.sample(pairs, 150)]
    deterministic = rng.sample(pairs, 20)
    cut = [(a, b, "weak link between groups") for a, b in rng.sample(pairs, 20)]
    con = _attribution_tables(truth, clusters, scored, deterministic, cut)
    att = error_attribution(con, 0.9)
    s = scores(con, "labelled")["pairwise"]
    m, f = att["missed_pairs"], att["false_pairs"]
    assert m["total"] == s["true_pairs"] - s["true_positive_pairs"]
    assert m["not_scored"] + m["below_threshold"] + m["cut_by_clustering"] == m["total"]
    assert f["total"] == s["predicted_pairs"] - s["true_positive_pairs"]
    assert f["direct_model_link"] + f["direct_deterministic_link"] + f["chain"] == f["total"]
    assert sum(b["chain_pairs"] for b in f["chain_by_weakest_link"]) == f["chain"]


def test_baseline_rules_come_from_the_job(tmp_path):
    from tests.conftest import JUSTICE

    manifest = {"config_path": str(JUSTICE)}
    cols = ["first_name", "surname", "full_name", "date_of_birth", "pnc_key", "sex"]
    assert baseline_rules(manifest, cols) == [["pnc_key"], ["full_name", "date_of_birth"]]
    # No config to read, no PNC: exact agreement on the name and date columns the job has.
    assert baseline_rules({}, ["surname", "date_of_birth", "sex"]) == [["surname", "date_of_birth"]]
