"""Metrics on small hand-worked cases."""

from __future__ import annotations

import duckdb
import pytest

from linkage.errors import InputError
from linkage.evaluate import f1, load_truth, pairwise_by_source_pair, scores


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
