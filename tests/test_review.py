"""Clerical review: the stratified sample, the decision file's checks, and hand-worked estimates."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from pathlib import Path

import duckdb
import pytest

from linkage.errors import InputError, UsageError
from linkage.review import (
    allocate,
    estimate,
    export_review_sample,
    import_review_decisions,
    strata_for,
    wilson,
)

# Threshold 0.5: match weight 0, so the stratum edges are at weights -4, -2, 0, 2, 4.
STRATUM_PAIRS = {  # stratum: a weight inside it, how many pairs
    "below_far": (-6.0, 5),
    "below_mid": (-3.0, 2),
    "below_near": (-1.0, 2),
    "above_near": (1.0, 2),
    "above_mid": (3.0, 2),
    "above_far": (9.0, 10),
}


@pytest.fixture()
def run(tmp_path) -> Path:
    run = tmp_path / "run"
    (run / "restricted").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(
        {"config_sha256": "abc", "model": {"threshold_match_probability": 0.5}, "inputs": {"pnc": {}, "libra": {}}}))
    con = duckdb.connect()
    preds, records = [], []
    i = 0
    for _name, (w, n) in STRATUM_PAIRS.items():
        for _ in range(n):
            left, right = f"L{i:03d}", f"R{i:03d}"
            preds.append(("pnc", left, "libra", right, w, 2**w / (1 + 2**w)))
            records.append(("pnc", left, "ANNA", None, "SMITH", ["ANNA SMITH", "ANN SMITH"], "1980-01-02", "F", f"2001/{i:07d}A"))
            records.append(("libra", right, "ANN", "MARIE", "SMITH", ["ANN SMITH"], "1980-02-01", None, None))
            i += 1
    con.execute("CREATE TABLE p (source_dataset_l VARCHAR, record_id_l VARCHAR, source_dataset_r VARCHAR, "
                "record_id_r VARCHAR, match_weight DOUBLE, match_probability DOUBLE)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?, ?, ?, ?)", preds)
    con.execute("CREATE TABLE s (source_dataset VARCHAR, record_id VARCHAR, first_name VARCHAR, middle_names VARCHAR, "
                "surname VARCHAR, name_set VARCHAR[], date_of_birth DATE, sex VARCHAR, pnc_id VARCHAR)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
    con.execute(f"COPY p TO '{run / 'restricted' / 'predictions.parquet'}' (FORMAT parquet)")
    con.execute(f"COPY s TO '{run / 'restricted' / 'standardised.parquet'}' (FORMAT parquet)")
    con.close()
    return run


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize(
    "sizes, n, expected",
    [
        ([10, 10, 10], 9, [3, 3, 3]),
        ([10, 10, 10], 10, [4, 3, 3]),
        ([1, 100, 100], 9, [1, 4, 4]),  # what a small stratum cannot use goes to the others
        ([0, 5, 5], 20, [0, 5, 5]),  # never more than a stratum holds
        ([3, 0, 50, 2], 8, [3, 0, 3, 2]),
    ],
)
def test_allocate(sizes, n, expected):
    assert allocate(sizes, n) == expected


def test_strata_meet_at_the_threshold():
    strata = strata_for(0.8)
    w = math.log2(0.8 / 0.2)
    assert [s.above for s in strata] == [False] * 3 + [True] * 3
    assert strata[3].weight_lo == pytest.approx(w) and strata[2].weight_hi == strata[3].weight_lo
    assert "match_probability >= 0.8" in strata[3].sql() and "match_probability < 0.8" in strata[2].sql()
    assert all(a.weight_hi == b.weight_lo for a, b in zip(strata, strata[1:]))


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (1, 1, 0.2065, 1.0)],
)
def test_wilson_known_values(k, n, lo, hi):
    got = wilson(k, n)
    assert got[0] == pytest.approx(lo, abs=1e-4) and got[1] == pytest.approx(hi, abs=1e-4)


def test_export_writes_side_by_side_fields_and_the_design(run):
    path = export_review_sample(run, n=12, seed=5)
    assert path == run / "restricted" / "review" / "review_sample.csv"
    rows = read_rows(path)
    assert len(rows) == 12
    assert sorted(int(r["pair_id"]) for r in rows) == list(range(1, 13))
    header = list(rows[0])
    for col in ("stratum", "sampling_weight", "match_probability", "source_dataset_l", "record_id_r",
                "first_name_l", "first_name_r", "all_names_l", "date_of_birth_r", "pnc_id_l", "decision"):
        assert col in header
    assert "crn_l" not in header  # the run has no crn column
    assert all(r["decision"] == "" for r in rows)
    by_stratum = {}
    for r in rows:
        by_stratum.setdefault(r["stratum"], []).append(r)
    # equal allocation: two from each stratum; weight = pairs / sampled
    assert {k: len(v) for k, v in by_stratum.items()} == {k: 2 for k in STRATUM_PAIRS}
    assert {k: float(v[0]["sampling_weight"]) for k, v in by_stratum.items()} == {
        k: n / 2 for k, (_, n) in STRATUM_PAIRS.items()}
    r = next(r for r in rows if r["record_id_l"] == rows[0]["record_id_l"])
    assert r["all_names_l"] == "ANNA SMITH; ANN SMITH" and r["date_of_birth_l"] == "1980-01-02"
    meta = json.loads((run / "restricted" / "review" / "review_sample.json").read_text())
    assert meta["seed"] == 5 and len(meta["pairs"]) == 12
    assert [s["pairs"] for s in meta["strata"]] == [n for _, n in STRATUM_PAIRS.values()]


def test_export_is_reproducible_from_the_seed(run):
    a = export_review_sample(run, n=8, seed=11).read_text()
    b = export_review_sample(run, n=8, seed=11).read_text()
    c = export_review_sample(run, n=8, seed=12).read_text()
    assert a == b and a != c


def test_export_rejects_nonsense(run, tmp_path):
    with pytest.raises(UsageError, match="at least one pair"):
        export_review_sample(run, n=0)
    with pytest.raises(InputError, match="not a linkage run directory"):
        export_review_sample(tmp_path / "nothing")


def decide(run: Path, rule, path_name="decisions.csv") -> Path:
    rows = read_rows(run / "restricted" / "review" / "review_sample.csv")
    seen: dict[str, int] = {}
    for r in rows:
        k = seen[r["stratum"]] = seen.get(r["stratum"], 0) + 1
        r["decision"] = rule(r["stratum"], k)
    return write_rows(run / path_name, rows)


# Per stratum, the decisions of its first and second sampled pair.
HAND = {
    "below_far": ("non-match", "non-match"),
    "below_mid": ("non-match", "non-match"),
    "below_near": ("match", "non-match"),
    "above_near": ("match", "non-match"),
    "above_mid": ("match", "match"),
    "above_far": ("match", "non-match"),
}


def test_estimates_by_hand(run):
    export_review_sample(run, n=12, seed=3)
    result = import_review_decisions(run, decide(run, lambda s, k: HAND[s][k - 1]))
    # estimated true matches: above_near 2 * 1/2 = 1, above_mid 2, above_far 10 * 1/2 = 5; below_near 1
    assert result["precision"]["estimate"] == pytest.approx(8 / 14, abs=1e-6)
    assert result["recall"]["estimate"] == pytest.approx(8 / 9, abs=1e-6)
    assert result["estimated_true_matches_scored"] == pytest.approx(9)
    for m in ("precision", "recall", "f1"):
        lo, hi = result[m]["ci95"]
        assert 0 <= lo <= result[m]["estimate"] <= hi <= 1 and hi - lo > 0.01
    assert result["decisions"] == {"match": 5, "non-match": 7, "unsure": 0, "blank": 0, "reviewed": 12}
    far = next(s for s in result["strata"] if s["stratum"] == "above_far")
    assert (far["pairs"], far["sampled"], far["reviewed"], far["matches"]) == (10, 2, 2, 1)
    assert far["match_rate_wilson_ci95"] == [pytest.approx(x, abs=1e-6) for x in wilson(1, 2)]
    saved = json.loads((run / "restricted" / "review" / "review_estimates.json").read_text())
    assert saved["precision"] == result["precision"]


def test_unsure_and_blank_are_left_out(run):
    export_review_sample(run, n=12, seed=3)
    # the second pair of each stratum unjudged: rates from the first alone
    rule = lambda s, k: HAND[s][0] if k == 1 else ("unsure" if s.startswith("above") else "")  # noqa: E731
    result = import_review_decisions(run, decide(run, rule))
    assert result["decisions"]["unsure"] == 3 and result["decisions"]["blank"] == 3
    # above: all three first pairs are matches, so precision 1; below_near's first is a match: 2 of 16 pairs
    assert result["precision"]["estimate"] == pytest.approx(1.0)
    assert result["recall"]["estimate"] == pytest.approx(14 / 16)


def test_a_stratum_without_decisions_is_named(run):
    export_review_sample(run, n=12, seed=3)
    rule = lambda s, k: "" if s == "below_far" else HAND[s][k - 1]  # noqa: E731
    result = import_review_decisions(run, decide(run, rule))
    assert any("below_far" in c for c in result["caveats"])


def test_bad_decision_files_name_every_row(run):
    export_review_sample(run, n=12, seed=3)
    rows = read_rows(run / "restricted" / "review" / "review_sample.csv")
    for r in rows:
        r["decision"] = "match"
    rows[1]["decision"] = "probably SMITH"  # never echoed: it could be anything
    rows[3]["pair_id"] = "999"
    rows[4]["pair_id"] = rows[0]["pair_id"]
    rows[6]["record_id_l"] = "SOMEONE-ELSE"
    with pytest.raises(InputError) as err:
        import_review_decisions(run, write_rows(run / "bad.csv", rows))
    msg = str(err.value)
    assert "4 problems" in msg
    assert "row 3: pair_id" in msg and "decision must be match, non-match or unsure" in msg
    assert "row 5: pair_id is not a pair of this run's review sample" in msg
    assert f"row 6: pair_id {rows[0]['pair_id']} appears again (first on row 2)" in msg
    assert "row 8: " in msg and "record_id_l differ" in msg
    assert "SMITH" not in msg and "SOMEONE-ELSE" not in msg


def test_decisions_are_normalised(run):
    export_review_sample(run, n=12, seed=3)
    spellings = {"match": " Match ", "non-match": "NON_MATCH"}
    path = decide(run, lambda s, k: spellings[HAND[s][k - 1]])
    assert import_review_decisions(run, path)["decisions"]["reviewed"] == 12


def test_import_needs_a_sample_and_columns(run, tmp_path):
    with pytest.raises(InputError, match="no review sample was exported"):
        import_review_decisions(run, tmp_path / "x.csv")
    export_review_sample(run, n=12, seed=3)
    bad = tmp_path / "nocol.csv"
    bad.write_text("pair_id,verdict\n1,match\n")
    with pytest.raises(InputError, match="missing decision"):
        import_review_decisions(run, bad)


def test_estimate_needs_a_decision_above_the_threshold():
    strata = [{"stratum": "b", "pairs": 5, "above_threshold": False, "matches": 1, "reviewed": 2}]
    with pytest.raises(InputError, match="precision cannot be estimated"):
        estimate(strata)


FORMULAS = {"L000": "=1+1", "R001": "+44", "L002": "@SUM(A1)", "R003": "-2+3", "L004": "\t=cmd"}


def test_export_escapes_formulas_and_import_reads_them_back(run):
    """A record id or name a spreadsheet would run (``=1+1``) is written with a leading quote."""
    con = duckdb.connect()
    for name in ("predictions", "standardised"):
        path = run / "restricted" / f"{name}.parquet"
        con.execute(f"CREATE TABLE t AS SELECT * FROM '{path}'")
        for old, new in FORMULAS.items():
            cols = ["record_id_l", "record_id_r"] if name == "predictions" else ["record_id"]
            for c in cols:
                con.execute(f"UPDATE t SET {c} = ? WHERE {c} = ?", [new, old])
        if name == "standardised":
            con.execute("UPDATE t SET surname = '=HYPERLINK(\"http://x\")', middle_names = '-1' WHERE record_id = '+44'")
        con.execute(f"COPY t TO '{path}' (FORMAT parquet)")
        con.execute("DROP TABLE t")
    con.close()
    path = export_review_sample(run, n=23, seed=1)  # every pair
    with path.open(newline="") as f:
        cells = list(csv.reader(f))
    header, body = cells[0], cells[1:]
    numeric = {"pair_id", "sampling_weight", "match_probability", "match_weight"}
    text = [i for i, c in enumerate(header) if c not in numeric]
    assert all(not row[i].startswith(("=", "+", "-", "@", "\t", "\r")) for row in body for i in text)
    shown = {row[i] for row in body for i in text}
    assert {"'=1+1", "'+44", "'@SUM(A1)", "'-2+3", "'\t=cmd", "'=HYPERLINK(\"http://x\")", "'-1"} <= shown
    # The file as exported imports, and so does one whose quotes a spreadsheet dropped.
    rows = read_rows(path)
    for r in rows:
        r["decision"] = "match" if float(r["match_probability"]) >= 0.5 else "non-match"
    assert import_review_decisions(run, write_rows(run / "as_exported.csv", rows))["decisions"]["reviewed"] == 23
    for r in rows:
        for c in ("record_id_l", "record_id_r"):
            r[c] = r[c][1:] if r[c].startswith("'") else r[c]
    assert import_review_decisions(run, write_rows(run / "unquoted.csv", rows))["decisions"]["reviewed"] == 23


def test_review_files_are_owner_only_whatever_the_umask(run):
    old = os.umask(0)
    try:
        export_review_sample(run, n=12, seed=3)
        import_review_decisions(run, decide(run, lambda s, k: HAND[s][k - 1]))
    finally:
        os.umask(old)
    review = run / "restricted" / "review"
    assert stat.S_IMODE(review.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in review.iterdir()} == {
        "review_sample.csv": 0o600, "review_sample.json": 0o600, "review_estimates.json": 0o600}


# --- decisions from the review sample stick; the review queue ----------------------------------------


def test_importing_the_review_sample_keeps_its_decisions_and_the_estimate(run):
    from linkage.review import import_decisions

    export_review_sample(run, n=12, seed=3)
    f = decide(run, lambda s, k: {"match": "match", "non-match": "not_match"}[HAND[s][k - 1]])
    rows = read_rows(f)
    for r in rows[:3]:  # a reviewer may drop the pair's columns: pair_id names the pair
        r["record_id_l"] = r["record_id_r"] = r["source_dataset_l"] = r["source_dataset_r"] = ""
    result = import_decisions(run, write_rows(f, rows))
    assert result.estimates["decisions"]["reviewed"] == 12
    assert "imported 12 decisions (match 5, not_match 7" in result.message
    store = run / "restricted" / "decisions" / "decisions.parquet"
    got = duckdb.connect().execute(
        f"SELECT count(*), count(DISTINCT pair_id), count(*) FILTER (WHERE record_id_l IS NULL), "
        f"min(import_file) FROM read_parquet('{store}')").fetchall()[0]
    assert got == (12, 12, 0, "decisions.csv")
    # importing again adds a second batch (the latest wins in a run); a bad file adds nothing
    import_decisions(run, f)
    rows[0]["decision"] = "perhaps"
    with pytest.raises(InputError, match="row 2: decision must be"):
        import_decisions(run, write_rows(run / "bad.csv", rows))
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{store}')").fetchall()[0][0] == 24


@pytest.fixture()
def queue_run(tmp_path) -> Path:
    """People K1..K7 (hand-made): K1 holds two PNC IDs, K2 and K3 were split by the validity
    step, K4 holds two records of the duplicate-free prison source, K5 is fine, K6 and K7
    were cut by a clerical decision (a person decided: not queued)."""
    run = tmp_path / "qrun"
    (run / "restricted").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "config_sha256": "abc", "model": {"threshold_match_probability": 0.5}, "inputs": {"pnc": {}, "libra": {}},
        "duplicate_free_sources": ["prison"]}))
    records = [  # source, id, person_key, first_name, pnc_key
        ("pnc", "A", "K1", "=HYPERLINK(1)", "X"), ("libra", "B", "K1", "ANN", "Y"),
        ("pnc", "C", "K2", "BOB", None), ("libra", "D", "K3", "BOB", None), ("libra", "E", "K3", "BOB", None),
        ("prison", "F", "K4", "CAL", None), ("prison", "G", "K4", "CAL", None),
        ("prison", "H", "K5", "DEE", "Z"), ("pnc", "I", "K5", "DEE", "Z"),
        ("pnc", "J", "K6", "EVE", None), ("libra", "K", "K7", "EVE", None),
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE cw (source_dataset VARCHAR, record_id VARCHAR, person_id VARCHAR, person_key VARCHAR)")
    con.executemany("INSERT INTO cw VALUES (?, ?, ?, ?)", [(s, r, "P" + k, k) for s, r, k, _, _ in records])
    con.execute("CREATE TABLE s (source_dataset VARCHAR, record_id VARCHAR, first_name VARCHAR, pnc_key VARCHAR)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?)", [(s, r, f, p) for s, r, _, f, p in records])
    con.execute("CREATE TABLE sp (source_dataset_l VARCHAR, record_id_l VARCHAR, source_dataset_r VARCHAR, "
                "record_id_r VARCHAR, match_weight DOUBLE, match_probability DOUBLE, kind VARCHAR, reason VARCHAR)")
    con.execute("INSERT INTO sp VALUES ('pnc', 'C', 'libra', 'D', 3.0, 0.9, 'model', 'weak link between groups'), "
                "('pnc', 'J', 'libra', 'K', 9.0, 0.99, 'model', 'clerical decision: not a match')")
    for t, name in (("cw", "crosswalk"), ("s", "standardised"), ("sp", "cluster_splits")):
        con.execute(f"COPY {t} TO '{run / 'restricted' / name}.parquet' (FORMAT parquet)")
    return run


def test_the_review_queue_lists_the_clusters_that_need_an_eye(queue_run):
    from linkage.review import REASON_DUP, REASON_PNC, REASON_SPLIT, export_review_queue

    old = os.umask(0)
    try:
        path, counts = export_review_queue(queue_run)
    finally:
        os.umask(old)
    assert counts == {"items": 3, "records": 7, REASON_SPLIT: 1, REASON_PNC: 1, REASON_DUP: 1}
    rows = read_rows(path)
    items: dict[str, set[str]] = {}
    for r in rows:
        items.setdefault(r["item_id"], set()).add(r["record_id"])
    assert sorted(map(sorted, items.values())) == [["A", "B"], ["C", "D", "E"], ["F", "G"]]
    by_record = {r["record_id"]: r for r in rows}
    assert by_record["C"]["reasons"] == f"{REASON_SPLIT}: weak link between groups"
    assert by_record["C"]["person_id"] != by_record["D"]["person_id"]  # the parts side by side in one item
    assert by_record["A"]["first_name"] == "'=HYPERLINK(1)"  # escaped against formula injection
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
