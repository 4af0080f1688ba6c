"""Linkage bias tables, their disclosure control, evaluation by group, typed carried columns
and person ids at more than one threshold."""

from __future__ import annotations

import csv
import json
import random
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import JUSTICE, TEST_KEY, cli, fast_config
from linkage.bias import controlled, evaluation_by_group, round_to, table_constraints


# --- disclosure control: an oracle that knows nothing of how cells were chosen ------------------


def recoverable(values: list[int], hidden: list[bool], constraints: np.ndarray) -> list[int]:
    """Hidden non-zero cells an attacker pins down from the published cells and the table's
    sums, non-negativity included: the smallest and largest value each can take are equal.
    (A hidden zero pinned at zero discloses nobody.)"""
    linprog = pytest.importorskip("scipy.optimize").linprog
    idx = [i for i, h in enumerate(hidden) if h]
    if not idx:
        return []
    a = constraints[:, idx]
    b = -constraints[:, [i for i, h in enumerate(hidden) if not h]] @ np.array(
        [v for v, h in zip(values, hidden) if not h], dtype=float)
    out = []
    for j, cell in enumerate(idx):
        c = np.zeros(len(idx))
        c[j] = 1
        lo = linprog(c, A_eq=a, b_eq=b, bounds=(0, None))
        hi = linprog(-c, A_eq=a, b_eq=b, bounds=(0, None))
        assert lo.status in (0, 3) and hi.status in (0, 3)  # solved, or unbounded (not pinned)
        if lo.status == 0 and hi.status == 0 and -hi.fun - lo.fun < 0.5 and values[cell]:
            out.append(cell)
    return out


def _check_table(cells: list[tuple[int, int]], threshold: int = 10) -> list[tuple]:
    published = controlled(cells, threshold, None)
    rows = [(i, o, i + o) for i, o in cells]
    rows.append(tuple(sum(r[c] for r in rows) for c in range(3)))
    values = [v for r in rows for v in r]
    hidden = [v is None for r in published for v in r]
    # every small non-zero count is hidden; every published count is the true one
    assert all(h for v, h in zip(values, hidden) if 0 < v < threshold)
    assert all(p == v for r, t in zip(published, rows) for p, v in zip(r, t) if p is not None)
    assert recoverable(values, hidden, table_constraints(len(cells))) == []
    return published


@pytest.mark.parametrize(
    "cells",
    [
        [(50, 3), (40, 30), (60, 20)],  # one small cell
        [(50, 3), (40, 4), (60, 20)],  # two in one column
        [(5, 0), (40, 30), (60, 20)],  # a small row total, a zero beside it
        [(2, 1), (40, 30), (60, 20), (100, 80)],  # a whole row small
        [(100, 200), (300, 400)],  # nothing small
        [(9, 40), (12, 50)],  # two groups only
    ],
)
def test_no_suppressed_cell_can_be_recovered_from_its_margins(cells):
    _check_table(cells)


def test_one_small_cell_takes_a_partner_in_its_row_and_its_column():
    published = _check_table([(50, 3), (40, 30), (60, 20)])
    assert published[0][:2] == (None, None)  # the 3 and its row partner
    assert sum(r[1] is None for r in published[:3]) >= 2  # another group hides the out column too
    assert published[-1] == (150, 53, 203)  # the totals stay published


def test_random_tables_never_leak_a_suppressed_cell():
    rnd = random.Random(7)
    for _ in range(25):
        groups = rnd.randint(2, 9)
        _check_table([(rnd.choice([0, 1, 3, 8, 12, 30, 90]), rnd.choice([0, 2, 5, 11, 40])) for _ in range(groups)])


def test_rounding_to_base_5_is_the_ons_10_5_rule():
    assert [round_to(v, 5) for v in (10, 12, 13, 17, 18, 0)] == [10, 10, 15, 15, 20, 0]
    published = controlled([(50, 3), (41, 32), (62, 24), (7, 90)], 10, 5)
    counts = [v for r in published for v in r if v is not None]
    assert counts and all(v % 5 == 0 for v in counts)
    assert not any(0 < v < 10 for v in counts)


# --- evaluation by group: a known answer --------------------------------------------------------


def test_evaluation_by_group_on_a_known_answer(tmp_path):
    """Cluster C1 = {a1, a2, b1} (a2 wrongly); person P1 = {a1, b1, b2}, P2 = {a2}.

    Pairs: predicted a1-a2, a1-b1, a2-b1; true a1-b1, a1-b2, b1-b2; true positive a1-b1.
    By source, half of each pair to each record's source: a holds tp 0.5, predicted 2, true 1.
    """
    con = duckdb.connect()
    con.execute("""CREATE TABLE labelled AS SELECT * FROM (VALUES
        ('a', '1', 'C1', 'P1'), ('a', '2', 'C1', 'P2'), ('b', '1', 'C1', 'P1'), ('b', '2', 'C2', 'P1'))
        t(source_dataset, record_id, cluster, person)""")
    groups = tmp_path / "record_groups.parquet"
    pq.write_table(pa.table({"source_dataset": ["a", "a", "b", "b"], "record_id": ["1", "2", "1", "2"],
                             "source": ["a", "a", "b", "b"], "sex": ["F", "M", "F", "F"]}), groups)
    out = evaluation_by_group(con, groups)
    src = {g["group"]: g for g in out["source"]}
    assert (src["a"]["true_positive_pairs"], src["a"]["predicted_pairs"], src["a"]["true_pairs"]) == (0.5, 2.0, 1.0)
    assert (src["b"]["true_positive_pairs"], src["b"]["predicted_pairs"], src["b"]["true_pairs"]) == (0.5, 1.0, 2.0)
    sex = {g["group"]: g for g in out["sex"]}
    assert sex["M"]["precision"] == 0.0 and sex["M"]["true_pairs"] == 0.0
    assert sum(g["true_positive_pairs"] for g in out["sex"]) == 1.0
    assert evaluation_by_group(con, tmp_path / "missing.parquet") is None


# --- config errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["sources"]["pnc"].update(breakdowns={"ref": "pnc_id"}),
         r"sources.pnc.breakdowns.ref: the column 'pnc_id' is the source's pnc_id, an identifier"),
        (lambda r: r["outputs"].update(bias_breakdowns=["surname"]),
         r"outputs.bias_breakdowns: 'surname' is an identifier"),
        (lambda r: r["outputs"].update(rounding_base=2.5), r"outputs.rounding_base: .*integer"),
        (lambda r: r["outputs"].update(rounding_base=0), r"outputs.rounding_base: .*greater than or equal to 1"),
        (lambda r: r["outputs"].update(rounding_base="five"), r"outputs.rounding_base: .*integer"),
        (lambda r: r["outputs"].update(person_id_thresholds=[0.99, 0.99]), r"0.99 is listed twice"),
        (lambda r: r["outputs"].update(person_id_thresholds=[r["model"]["threshold"]]), r"0.8 is model.threshold"),
        (lambda r: r["sources"]["pnc"]["carry"].update(arrest_count={"how": "year", "type": "integer"}),
         r"type applies to how: keep only"),
    ],
)
def test_bad_bias_and_type_settings_are_config_errors(tmp_path, change, message):
    raw = yaml.safe_load(JUSTICE.read_text())
    change(raw)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    res = cli("validate", str(path))
    assert res.returncode == 1, res.stderr
    import re

    assert re.search(message, res.stderr), res.stderr
    assert "Traceback" not in res.stderr


# --- a whole run ------------------------------------------------------------------------------

BAD_ROWS = (3, 7)  # data rows of pnc.csv whose arrest_count becomes text


def _bias_config(tmp_path, bad_values: str = "null"):
    path = fast_config(tmp_path, outputs={"person_id_thresholds": [0.6, 0.99], "rounding_base": 5},
                       carry={"pnc": {"arrest_count": {"type": "integer", "bad_values": bad_values}}})
    raw = yaml.safe_load(path.read_text())
    raw["sources"]["pnc"]["breakdowns"] = {"ethnicity": "ethnicity_code"}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _data_with_text_counts(synth_dir, out):
    shutil.copytree(synth_dir, out)
    rows = list(csv.reader((out / "pnc.csv").open()))
    col = rows[0].index("arrest_count")
    for r in BAD_ROWS:
        rows[r][col] = "several"
    with (out / "pnc.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return out


@pytest.fixture(scope="module")
def bias_run(synth_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("bias")
    data = _data_with_text_counts(synth_dir, work / "data")
    out = work / "run"
    res = cli("run", str(_bias_config(work)), "--data", str(data), "--out", str(out))
    assert res.returncode == 0, res.stderr
    res = cli("evaluate", str(out), "--truth", str(data / "truth.csv"))
    assert res.returncode == 0, res.stderr
    return out, data, work


def test_declared_integer_nulls_text_and_reports_the_rows(bias_run):
    run, _, _ = bias_run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["analyst_bad_values"]["pnc.arrest_count"] == {"type": "integer", "rows": 2, "row_numbers": "3, 7"}
    assert manifest["analyst_nulled_values"]["pnc.arrest_count"] == {"not an integer (declared type)": 2}
    schema = pq.read_schema(run / "analyst" / "pnc.parquet")
    assert pa.types.is_int64(schema.field("arrest_count").type)
    package = json.loads((run / "analyst" / "datapackage.json").read_text())
    field = next(f for r in package["resources"] if r["name"] == "pnc" for f in r["schema"]["fields"]
                 if f["name"] == "arrest_count")
    assert field["nulled_impossible"] == {"not an integer (declared type)": 2} and "declared" in field["description"]
    assert "several" not in json.dumps(manifest)


def test_declared_integer_with_text_fails_when_the_config_says_so(synth_dir, tmp_path):
    data = _data_with_text_counts(synth_dir, tmp_path / "data")
    res = cli("run", str(_bias_config(tmp_path, "fail")), "--data", str(data), "--out", str(tmp_path / "run"))
    assert res.returncode == 1, res.stderr
    assert "sources.pnc.carry.arrest_count: declared integer, but 2 row(s)" in res.stderr and "rows 3, 7" in res.stderr
    assert "several" not in res.stderr and not (tmp_path / "run").exists()


def test_person_ids_at_each_threshold_nest_and_are_keyed_pseudonyms(bias_run):
    from linkage.deidentify import PseudonymKey

    run, _, _ = bias_run
    key = PseudonymKey(TEST_KEY.encode(), "")
    con = duckdb.connect()
    cw = f"'{run}/restricted/crosswalk.parquet'"
    for source in ("pnc", "prison", "probation", "libra", "crest"):
        names = pq.read_schema(run / "analyst" / f"{source}.parquet").names
        assert names[:3] == ["person_id", "person_id_0_6", "person_id_0_99"], names
    keys = con.execute(f"SELECT DISTINCT person_key_0_99, person_id_0_99 FROM {cw}").fetchall()
    assert all(pid == key.pseudonym(k) for k, pid in keys)
    strict, main, loose, split, joined = con.execute(
        f"""SELECT count(DISTINCT person_id_0_99), count(DISTINCT person_id), count(DISTINCT person_id_0_6),
                   (SELECT count(*) FROM (SELECT person_id_0_99 FROM {cw} GROUP BY ALL HAVING count(DISTINCT person_id) > 1)),
                   (SELECT count(*) FROM (SELECT person_id FROM {cw} GROUP BY ALL HAVING count(DISTINCT person_id_0_6) > 1))
            FROM {cw}"""
    ).fetchall()[0]
    # Stricter ids split people, looser ones join them; never across
    assert strict > main > loose and split == 0 and joined == 0


def test_bias_table_is_suppressed_rounded_and_unrecoverable(bias_run):
    run, _, _ = bias_run
    con = duckdb.connect()
    table = pq.read_table(run / "analyst" / "linkage_bias.parquet").to_pylist()
    breakdowns = {r["breakdown"] for r in table}
    assert breakdowns == {"source", "sex", "age_band", "event_year", "date_of_birth_present", "ethnicity"}
    # The true counts, from the restricted side.
    truth = {}
    for b in breakdowns:
        for group, i, o in con.execute(
            f"""WITH p AS (SELECT person_id, count(DISTINCT source_dataset) >= 2 AS linked
                           FROM '{run}/restricted/crosswalk.parquet' GROUP BY ALL)
            SELECT g."{b}", count(*) FILTER (WHERE linked), count(*) FILTER (WHERE NOT linked)
            FROM '{run}/restricted/record_groups.parquet' g JOIN '{run}/restricted/crosswalk.parquet'
                 USING (source_dataset, record_id) JOIN p USING (person_id) GROUP BY ALL"""
        ).fetchall():
            truth[(b, group)] = (i, o, i + o)
    suppressed_somewhere = False
    for b in breakdowns:
        rows = [r for r in table if r["breakdown"] == b and r["group"] != "all"]
        assert {r["group"] for r in rows} == {g for (bb, g) in truth if bb == b}
        values, hidden = [], []
        for r in rows:
            true = truth[(b, r["group"])]
            published = (r["records_linked"], r["records_not_linked"], r["records"])
            for t, p in zip(true, published):
                assert p is None or p == round_to(t, 5), (b, r["group"])
                assert p is None or not 0 < p < 10
                values.append(t)
                hidden.append(p is None)
            suppressed_somewhere |= r["suppressed"]
        total = [sum(values[c::3]) for c in range(3)]
        all_row = next(r for r in table if r["breakdown"] == b and r["group"] == "all")
        assert all_row["records"] == round_to(total[2], 5)
        assert recoverable(values + total, hidden + [False] * 3, table_constraints(len(rows))) == []
    assert suppressed_somewhere  # the data has small cells: the test can fail


def test_bias_table_is_documented_and_passes_the_leakage_check(bias_run):
    run, _, _ = bias_run
    package = json.loads((run / "analyst" / "datapackage.json").read_text())
    resource = next(r for r in package["resources"] if r["name"] == "linkage_bias")
    fields = {f["name"]: f for f in resource["schema"]["fields"]}
    assert "rounded to the nearest 5" in fields["records"]["suppression"]
    pnc = next(r for r in package["resources"] if r["name"] == "pnc")
    assert all(f["description"] for f in pnc["schema"]["fields"])
    assert "0.99" in {f["name"]: f for f in pnc["schema"]["fields"]}["person_id_0_99"]["description"]


def test_evaluation_by_group_adds_up_to_the_overall_figures(bias_run):
    run, _, _ = bias_run
    result = json.loads((run / "evaluation.json").read_text())
    overall = result["pairwise"]
    assert set(result["by_group"]) >= {"source", "sex", "age_band", "date_of_birth_present", "ethnicity"}
    for breakdown, groups in result["by_group"].items():
        for count in ("true_positive_pairs", "predicted_pairs", "true_pairs"):
            assert sum(g[count] for g in groups) == pytest.approx(overall[count]), (breakdown, count)
        assert sum(g["records"] for g in groups) == result["records"]
    dob = {g["group"]: g for g in result["by_group"]["date_of_birth_present"]}
    assert dob["no"]["recall"] < dob["yes"]["recall"]  # records without a date of birth link worse


def test_every_analyst_parquet_reads_with_its_types(bias_run):
    """What pandas, DuckDB, Polars and R's arrow see: the Parquet schema, read by pyarrow."""
    run, _, _ = bias_run
    seen = set()
    for path in sorted((run / "analyst").glob("*.parquet")):
        t = pq.read_table(path)
        for f in t.schema:
            if f.name.startswith("person_id"):
                assert pa.types.is_string(f.type), (path.name, f.name)
            elif f.name.endswith("_month"):
                assert pa.types.is_date32(f.type), (path.name, f.name)
            elif f.name.endswith("_year") or f.name.startswith("age_at_") or f.name in ("records", "people"):
                assert pa.types.is_integer(f.type), (path.name, f.name)
            elif f.name.startswith("share"):
                assert pa.types.is_floating(f.type), (path.name, f.name)
            elif f.name in ("suppressed", "link_any_deterministic"):
                assert pa.types.is_boolean(f.type), (path.name, f.name)
            seen.add(f.name)
    assert {"records", "share_records_linked", "person_id_0_99", "suppressed", "arrest_count"} <= seen


def test_threshold_ids_carry_over_from_the_previous_run(bias_run, tmp_path):
    run, data, work = bias_run
    again = tmp_path / "again"
    res = cli("run", str(_bias_config(work)), "--data", str(data), "--previous", str(run), "--out", str(again))
    assert res.returncode == 0, res.stderr
    con = duckdb.connect()
    differ = con.execute(
        f"""SELECT count(*) FILTER (WHERE a.person_id_0_99 <> b.person_id_0_99),
                   count(*) FILTER (WHERE a.person_id_0_6 <> b.person_id_0_6), count(*)
            FROM '{run}/restricted/crosswalk.parquet' a JOIN '{again}/restricted/crosswalk.parquet' b
            USING (source_dataset, record_id)"""
    ).fetchall()[0]
    assert differ[:2] == (0, 0) and differ[2] > 1000
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["id_generation"] == 2  # new keys would differ: these were carried over


def test_the_id_registry_keeps_the_keys_at_every_threshold(tmp_path):
    """outputs.id_registry carries ids over without --previous: it holds the keys at the
    other thresholds too, which the next run reads as it reads a previous crosswalk."""
    from linkage.config import load_config
    from linkage.job import _update_registry

    raw = yaml.safe_load(JUSTICE.read_text())
    raw["outputs"].update(id_registry="ids.parquet", person_id_thresholds=[0.99])
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run = tmp_path / "run"
    (run / "restricted").mkdir(parents=True)
    pq.write_table(pa.table({"source_dataset": ["pnc"], "record_id": ["1"], "person_id": ["P1"], "person_key": ["K1"],
                             "person_key_0_99": ["K9"], "person_id_0_99": ["P9"], "cluster_size": [1]}),
                   run / "restricted" / "crosswalk.parquet")
    _update_registry(load_config(tmp_path / "job.yaml"), run, {"pseudonym_key_fingerprint": "f", "id_generation": 1})
    registry = pq.read_table(tmp_path / "ids.parquet")
    assert registry.column_names == ["source_dataset", "record_id", "person_key", "person_key_0_99"]
