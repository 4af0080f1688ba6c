"""The HTML report: every section and chart is there, no personal value is, and (with Chromium) it draws."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from linkage.error_analysis import error_analysis
from linkage.evaluate import evaluate_run
from linkage.report import write_report
from linkage.review import export_review_sample, import_review_decisions
from linkage.schema import STANDARD_COLUMNS

# Values that must never reach the report: names, dates of birth, reference numbers, record ids.
SECRETS = ["ZEBEDEE", "QUIXLEIGH", "1971-03-29", "1999/0012345Z", "CRO-123456/71X", "A1234ZZ", "RID-PNC-0001",
           "RID-LIB-0003", "RAWVALUE-XYZ"]

SOURCES = ["pnc", "prison", "libra"]
# (source, record_id, true person, predicted cluster key)
RECORDS = [
    ("pnc", "RID-PNC-0001", "T1", "K1"), ("prison", "RID-PRI-0001", "T1", "K1"), ("libra", "RID-LIB-0001", "T1", "K1"),
    ("pnc", "RID-PNC-0002", "T2", "K2"), ("prison", "RID-PRI-0002", "T2", "K2"),
    ("pnc", "RID-PNC-0003", "T3", "K3"), ("libra", "RID-LIB-0002", "T3", "K3"), ("libra", "RID-LIB-0005", "T3", "K6"),
    ("prison", "RID-PRI-0003", "T4", "K4"), ("libra", "RID-LIB-0003", "T5", "K4"),  # a false link
    ("libra", "RID-LIB-0004", "T6", "K5"),
]
# (record l, record r, match weight): K-clusters are linked at >= 0 (threshold 0.5)
PAIRS = [
    ("RID-PNC-0001", "RID-PRI-0001", 14.2), ("RID-PNC-0001", "RID-LIB-0001", 9.5), ("RID-PRI-0001", "RID-LIB-0001", 8.1),
    ("RID-PNC-0002", "RID-PRI-0002", 3.3), ("RID-PNC-0003", "RID-LIB-0002", 1.2), ("RID-PRI-0003", "RID-LIB-0003", 0.4),
    ("RID-LIB-0002", "RID-LIB-0005", -1.5), ("RID-PNC-0002", "RID-LIB-0004", -5.0), ("RID-PRI-0002", "RID-LIB-0003", -3.2),
]

# K3 joins two different PNC keys: the one conflict.
PNC_KEYS = {"RID-PNC-0001": "99/1Z", "RID-PRI-0001": "99/1Z", "RID-PNC-0002": "99/2Z", "RID-PNC-0003": "99/3Z",
            "RID-LIB-0002": "99/4Z"}
NO_DOB = {"RID-PRI-0002", "RID-LIB-0004"}


def _parquet(con, name: str, columns: str, rows: list[tuple], out: Path) -> None:
    con.execute(f"CREATE TABLE {name} ({columns})")
    if rows:
        con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    con.execute(f"COPY {name} TO '{out}' (FORMAT parquet)")


def _model_json(path: Path) -> None:
    """A small trained-looking Splink model: two comparisons with m and u set by hand."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    con = duckdb.connect()
    con.execute("CREATE TABLE t (source_dataset VARCHAR, record_id VARCHAR, first_name VARCHAR, surname VARCHAR, "
                "date_of_birth VARCHAR)")
    settings = SettingsCreator(
        link_type="link_and_dedupe", unique_id_column_name="record_id",
        comparisons=[cl.JaroWinklerAtThresholds("first_name", [0.9]), cl.ExactMatch("surname"),
                     cl.ExactMatch("date_of_birth")],
        blocking_rules_to_generate_predictions=[block_on("surname")],
    )
    db_api = DuckDBAPI(connection=con)
    linker = Linker(db_api.register("t", dataset_display_name="t"), settings, log_level=None)
    linker.misc.save_model_to_json(str(path), overwrite=True)
    model = json.loads(path.read_text())
    for comp in model["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        for i, lv in enumerate(levels):
            lv["m_probability"] = [0.9, 0.08, 0.02][i] if len(levels) == 3 else [0.95, 0.05][i]
            lv["u_probability"] = [0.01, 0.04, 0.95][i] if len(levels) == 3 else [0.02, 0.98][i]
    model["probability_two_random_records_match"] = 0.001
    path.write_text(json.dumps(model))
    con.close()


def build_run(root: Path) -> tuple[Path, Path]:
    run, data = root / "run", root / "data"
    restricted = run / "restricted"
    restricted.mkdir(parents=True)
    (run / "analyst").mkdir()
    data.mkdir()
    con = duckdb.connect()
    cols = ", ".join(f"{c} {t}" for c, t in STANDARD_COLUMNS.items())
    std = []
    for i, (src, rid, _, _) in enumerate(RECORDS):
        row = {c: None for c in STANDARD_COLUMNS}
        row.update(source_dataset=src, record_id=rid, first_name="ZEBEDEE" if i % 2 else "ANNA",
                   surname="QUIXLEIGH", full_name="ZEBEDEE QUIXLEIGH", name_set=["ZEBEDEE QUIXLEIGH"],
                   date_of_birth=None if rid in NO_DOB else "1971-03-29", sex="M" if i % 2 else None,
                   year_of_birth=1971, postcode_area="SW", pnc_key=PNC_KEYS.get(rid))
        if src == "pnc":
            row.update(pnc_id="1999/0012345Z", cro_number="CRO-123456/71X")
        if src == "prison":
            row.update(prison_number="A1234ZZ")
        std.append(tuple(row.values()))
    _parquet(con, "std", cols, std, restricted / "standardised.parquet")
    sizes = {k: sum(1 for r in RECORDS if r[3] == k) for _, _, _, k in RECORDS}
    _parquet(con, "cw", "source_dataset VARCHAR, record_id VARCHAR, person_id VARCHAR, person_key VARCHAR, "
             "cluster_size BIGINT, cluster_min_match_weight DOUBLE, cluster_links BIGINT, deterministic_links BIGINT",
             [(s, r, "P" + k, k, sizes[k], 0.4 if sizes[k] > 1 else None, sizes[k] - 1, 0) for s, r, _, k in RECORDS],
             restricted / "crosswalk.parquet")
    _parquet(con, "rj", "source_dataset VARCHAR, record_id VARCHAR, row_number BIGINT, reason VARCHAR",
             [("libra", None, 7, "record id is empty"), ("prison", "RID-PRI-0009", 4, "no name, date of birth or reference number")],
             restricted / "rejects.parquet")
    src_of = {r[1]: r[0] for r in RECORDS}
    _parquet(con, "pr", "source_dataset_l VARCHAR, record_id_l VARCHAR, source_dataset_r VARCHAR, record_id_r VARCHAR, "
             "match_weight DOUBLE, match_probability DOUBLE",
             [(src_of[a], a, src_of[b], b, w, 2**w / (1 + 2**w)) for a, b, w in PAIRS], restricted / "predictions.parquet")
    _parquet(con, "dl", "source_dataset_l VARCHAR, record_id_l VARCHAR, source_dataset_r VARCHAR, record_id_r VARCHAR, kind VARCHAR",
             [], restricted / "deterministic_links.parquet")
    _parquet(con, "iv", "source_dataset VARCHAR, record_id VARCHAR, field VARCHAR, reason VARCHAR, raw_value VARCHAR",
             [("libra", "RID-LIB-0003", "date_of_birth", "default_date", "RAWVALUE-XYZ")], restricted / "invalid_values.parquet")
    con.close()
    _model_json(restricted / "model.json")
    manifest = {
        "job": "test-job", "description": "a hand-made run", "config_path": "configs/x.yaml", "config_sha256": "f" * 64,
        "created_utc": "2026-01-01T00:00:00+00:00", "engine": "duckdb",
        "versions": {"linkage": "0.1.0", "splink": "5.0.0"},
        "inputs": {s: {"path": f"/data/{s}.csv", "sha256": "a" * 64, "rows": 0} for s in SOURCES},
        "rows": {
            "pnc": {"read": 3, "rejected": 0, "in_crosswalk": 3, "linked": 3, "unlinked": 0},
            "prison": {"read": 4, "rejected": 1, "in_crosswalk": 3, "linked": 3, "unlinked": 0},
            "libra": {"read": 6, "rejected": 1, "in_crosswalk": 5, "linked": 4, "unlinked": 1},
        },
        "invalid_values": {"libra": {"date_of_birth": {"default_date": 1}}, "pnc": {}, "prison": {}},
        "blocking": [{"rule": "pnc_key", "comparisons": 3, "largest_blocks": [["pnc_key", 3]]},
                     {"rule": "surname & date_of_birth", "comparisons": 40, "largest_blocks": [["surname & date_of_birth", 7]]}],
        "model": {"trained": True, "loaded_from": None, "threshold_match_probability": 0.5,
                  "parameters": [{"comparison": "surname", "level": "Exact match on surname", "m_probability": 0.95,
                                  "u_probability": 0.02, "match_weight": 5.57},
                                 {"comparison": "surname", "level": "All other comparisons", "m_probability": None,
                                  "u_probability": 0.98, "match_weight": None}],
                  "probability_two_random_records_match": 0.001},
        "comparisons_scored_kept": len(PAIRS),
        "clusters": {"records": 11, "clusters": 6, "singletons": 2, "largest": 3, "model_links": 6,
                     "deterministic_links": 0, "conflicting_pnc_clusters": 1, "size_histogram": {"1": 2, "2": 3, "3": 1}},
        "id_generation": 1, "pseudonym_key_fingerprint": "0123456789abcdef",
        "stage_seconds": {"read": 0.5, "standardise": 0.2, "u by random sampling": 3.0, "m by EM": 1.0, "train": 4.1,
                          "predict": 0.7, "cluster": 0.3},
        "total_seconds": 6.0, "peak_rss_bytes": 3 * 2**28,
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    truth_rows = [(s, r, t) for s, r, t, _ in RECORDS] + [("prison", "RID-PRI-0009", "T7")]
    with (data / "truth.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("source_dataset", "record_id", "person_id"), *truth_rows])
    with (data / "corruptions.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("source_dataset", "record_id", "field", "corruption"),
                                 ("libra", "RID-LIB-0005", "surname", "typo"),
                                 ("libra", "RID-LIB-0003", "date_of_birth", "swap")])
    return run, data


SECTIONS = ["overview", "inputs", "completeness", "rejects", "invalid", "blocking", "model", "weights", "clusters",
            "link-rates", "timings"]
CHARTS = ["chart-inputs", "chart-completeness", "chart-rejects", "chart-invalid", "chart-blocking",
          "chart-match-weights", "chart-m-u", "chart-weights", "chart-cluster-sizes", "chart-link-rates",
          "chart-sources-per-person", "chart-timings"]
EVALUATION_CHARTS = ["chart-scores", "chart-pr-curve", "chart-f1-threshold", "chart-source-pairs",
                     "chart-error-corruptions"]


def chart_specs(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="chart-specs">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    run, _ = build_run(tmp_path_factory.mktemp("plain"))
    write_report(run)
    return run


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    run, data = build_run(tmp_path_factory.mktemp("evaluated"))
    result = evaluate_run(run, data / "truth.csv")
    result["error_analysis"] = error_analysis(run, data / "truth.csv", data / "corruptions.csv")
    (run / "evaluation.json").write_text(json.dumps(result))
    sample = export_review_sample(run, n=20, seed=2)
    rows = list(csv.DictReader(sample.open()))
    for r in rows:
        r["decision"] = "match" if float(r["match_probability"]) >= 0.5 else "non-match"
    with (run / "decisions.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import_review_decisions(run, run / "decisions.csv")
    write_report(run)
    return run


def test_every_section_and_chart_is_embedded(plain_run):
    page = (plain_run / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    specs = chart_specs(page)
    assert sorted(specs) == sorted(CHARTS)
    for chart_id, spec in specs.items():
        assert f'id="{chart_id}"' in page
        assert "data" in spec or "vconcat" in spec or "layer" in spec or "hconcat" in spec
    assert "section-error" not in page
    assert '<section id="evaluation">' not in page  # no evaluation.json yet


def test_offline_no_external_scripts(plain_run):
    page = (plain_run / "report.html").read_text()
    assert "<script src" not in page and "<link" not in page and "cdn.jsdelivr" not in page
    assert "function vegaEmbed" in page or "vegaEmbed=" in page or "vegaEmbed =" in page or ".vegaEmbed" in page
    assert page.count("<script>") >= 4  # vega, vega-lite, vega-embed, the drawing script


def test_no_personal_values(plain_run, evaluated_run):
    for run in (plain_run, evaluated_run):
        page = (run / "report.html").read_text()
        for secret in SECRETS:
            assert secret not in page, secret


def test_numbers_from_the_run(plain_run):
    page = (plain_run / "report.html").read_text()
    specs = chart_specs(page)
    sizes = {d["size"]: d["clusters"] for d in specs["chart-cluster-sizes"]["data"]["values"]}
    assert sizes == {1: 2, 2: 3, 3: 1}
    rejects = {(d["source"], d["reason"]): d["rows"] for d in specs["chart-rejects"]["data"]["values"]}
    assert rejects == {("libra", "record id is empty"): 1, ("prison", "no name, date of birth or reference number"): 1}
    completeness = {(d["source"], d["field"]): d["share"] for d in specs["chart-completeness"]["data"]["values"]}
    assert completeness[("pnc", "pnc_id")] == 1.0 and completeness[("libra", "pnc_id")] == 0.0
    assert completeness[("prison", "date_of_birth")] == pytest.approx(2 / 3)
    weights = specs["chart-weights"]["layer"][0]["data"]["values"]
    assert sum(d["pairs"] for d in weights) == len(PAIRS)
    assert sum(d["pairs"] for d in weights if d["side"] == "at or above threshold") == 6
    rates = {(d["from"], d["to"]): (d["people"], d["people_in_from"]) for d in specs["chart-link-rates"]["data"]["values"]}
    assert rates[("pnc", "prison")] == (2, 3) and rates[("libra", "pnc")] == (2, 5) and rates[("prison", "libra")] == (2, 3)
    per_person = {d["sources"]: d["people"] for d in specs["chart-sources-per-person"]["data"]["values"]}
    assert per_person == {1: 2, 2: 3, 3: 1}
    # K3 holds two PNC keys: the one conflict, listed by its pseudonymous person id
    assert re.search(r"<td>PK3</td>.*?<td class=num>2</td></tr>", page.split("Clusters holding more than one PNC ID")[1])


def test_clusters_are_shown_by_keyed_person_id_not_by_a_hash_of_a_record_id(plain_run):
    """person_key (an unkeyed hash of a record id in real runs) is never shown; person_id is."""
    page = (plain_run / "report.html").read_text()
    clusters = page.split('<section id="clusters">')[1].split("</section>")[0]
    assert "<td>PK3</td>" in clusters and "<th>person_id</th>" in clusters
    for key in ("K1", "K2", "K3", "K6"):
        assert f"<td>{key}</td>" not in page
    assert "person_key" not in page


def _rewrite(run: Path, name: str, query: str) -> None:
    path = run / "restricted" / f"{name}.parquet"
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {query.format(t=f'read_parquet({chr(39)}{path}{chr(39)})')}")
    con.execute(f"COPY t TO '{path}' (FORMAT parquet)")


@contextmanager
def _edited_json(path: Path) -> Iterator[Any]:
    """The JSON file's content, to change in place: written back on leaving the block."""
    content = json.loads(path.read_text())
    yield content
    path.write_text(json.dumps(content))


def test_a_spark_runs_model_draws_its_charts(tmp_path):
    """A Spark run saves its levels' SQL in Spark's dialect (backquoted names); the model
    section's Splink charts are drawn from it all the same."""
    import sqlglot

    run, _ = build_run(tmp_path)
    with _edited_json(run / "restricted" / "model.json") as model:
        model["sql_dialect"] = "spark"
        for comp in model["comparisons"]:
            for lv in comp["comparison_levels"]:
                if lv["sql_condition"] != "ELSE":
                    lv["sql_condition"] = sqlglot.transpile(lv["sql_condition"], read="duckdb", write="spark")[0]
        assert "`" in model["comparisons"][0]["comparison_levels"][0]["sql_condition"]
    page = write_report(run).read_text()
    assert "section-error" not in page.split('<section id="model">')[1].split("</section>")[0]
    assert "chart-match-weights" in chart_specs(page) and "chart-m-u" in chart_specs(page)


def test_untrained_levels_are_marked_not_given_a_weight(tmp_path):
    """A level whose m and u are null in model.json shows 'never trained', whatever the manifest holds."""
    run, _ = build_run(tmp_path)
    with _edited_json(run / "restricted" / "model.json") as model:
        dob = next(c for c in model["comparisons"] if c["output_column_name"] == "date_of_birth")
        exact = next(lv for lv in dob["comparison_levels"] if not lv.get("is_null_level"))
        exact["m_probability"] = exact["u_probability"] = None
    with _edited_json(run / "manifest.json") as manifest:
        manifest["model"]["parameters"].append({"comparison": "date_of_birth", "level": exact["label_for_charts"],
                                                "m_probability": 0.9, "u_probability": 0.00088, "match_weight": 10.0})
    page = write_report(run).read_text()
    row = re.search(rf"<tr><td>date_of_birth</td><td>{re.escape(exact['label_for_charts'])}</td>.*?</tr>", page).group(0)
    assert "never trained" in row and "10.00" not in row
    trained = re.search(r"<tr><td>surname</td><td>Exact match on surname</td>.*?</tr>", page).group(0)
    assert "5.57" in trained and "never trained" not in trained


def test_page_layout_and_charts_fit(tmp_path):
    """The navigation wraps; 13 invalid-value reasons get 13 colours; the threshold label sits
    above the plot; the time chart's caption says whether the report's own time is in it."""
    run, _ = build_run(tmp_path)
    with _edited_json(run / "manifest.json") as manifest:
        manifest["invalid_values"]["libra"] = {"date_of_birth": {f"reason_{i:02d}": i + 1 for i in range(13)}}
        manifest["stage_seconds"]["report"] = 0.4
        manifest["peak_rss_bytes_after_stage"] = {"read": 2**29, "u by random sampling": 3 * 2**28}
    page = write_report(run).read_text()
    nav_css = re.search(r"\nnav \{[^}]*\}", page).group(0)
    assert "flex-wrap: wrap" in nav_css
    assert "nowrap" not in re.search(r"\nnav \{[^}]*\}", page).group(0)
    specs = chart_specs(page)
    colour = specs["chart-invalid"]["encoding"]["color"]["scale"]
    assert len(colour["domain"]) == 13 and len(set(colour["range"])) == 13
    label = specs["chart-weights"]["layer"][1]["layer"][1]["mark"]
    assert label["type"] == "text" and label["baseline"] == "bottom" and label["dy"] < 0
    assert specs["chart-weights"]["padding"]["top"] >= 20
    assert [v["stage"] for v in specs["chart-timings"]["data"]["values"]][-1] == "report"
    timings = page.split('<section id="timings">')[1]
    assert "the report included" in timings and "not included" not in timings
    # Each stage's memory high-water mark beside its time ("–" where the run did not record it).
    rows = re.findall(r"<tr>(.*?)</tr>", timings.split("</table>")[0], re.S)
    cells = {re.sub(r"<[^>]+>", "", r.split("</td>")[0]).strip(): r for r in rows}
    assert "0.50" in cells["read"] and "0.75" in cells["u by random sampling"] and "–" in cells["predict"]


def test_time_caption_without_the_report_row(plain_run):
    timings = (plain_run / "report.html").read_text().split('<section id="timings">')[1]
    assert "report itself is written after this chart and is not included" in timings


def test_a_single_source_job_draws_no_source_matrix(tmp_path):
    run, _ = build_run(tmp_path)
    _rewrite(run, "crosswalk", "SELECT * FROM {t} WHERE source_dataset = 'libra'")
    with _edited_json(run / "manifest.json") as manifest:
        manifest["inputs"] = {"libra": manifest["inputs"]["libra"]}
        manifest["rows"] = {"libra": manifest["rows"]["libra"]}
    page = write_report(run).read_text()
    assert "chart-link-rates" not in chart_specs(page)
    assert "links one source: there are no link rates between sources" in page
    assert "section-error" not in page


def test_a_job_without_pnc_ids_says_nothing_of_them(tmp_path):
    run, _ = build_run(tmp_path)
    _rewrite(run, "standardised", "SELECT * EXCLUDE (pnc_key, pnc_id) FROM {t}")
    with _edited_json(run / "manifest.json") as manifest:
        manifest["blocking"] = [b for b in manifest["blocking"] if "pnc" not in b["rule"]]
        manifest["clusters"].pop("conflicting_pnc_clusters")
    page = write_report(run).read_text()
    body = page.split("<main>")[1].split("</main>")[0]
    assert "PNC" not in body  # the source called pnc is named, PNC IDs are not
    assert "section-error" not in page


def test_evaluation_error_and_review_sections(evaluated_run):
    page = (evaluated_run / "report.html").read_text()
    for section in [*SECTIONS, "evaluation", "errors", "review"]:
        assert f'<section id="{section}">' in page, section
    specs = chart_specs(page)
    assert set(EVALUATION_CHARTS) <= set(specs)
    pr = specs["chart-pr-curve"]["hconcat"]
    assert [p["title"] for p in pr] == ["pairwise", "cluster (B-cubed)"]
    assert "section-error" not in page
    assert "Clerical review estimates" in page


def test_missing_optional_files_degrade_to_notes(tmp_path):
    run, _ = build_run(tmp_path)
    (run / "restricted" / "model.json").unlink()
    (run / "restricted" / "rejects.parquet").unlink()
    page = write_report(run).read_text()
    assert "model.json is missing" in page and "rejects.parquet is missing" in page
    assert "section-error" not in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_charts_render_in_a_headless_browser(evaluated_run, tmp_path):
    """Every chart is drawn as SVG by the inlined vega libraries, with the network off."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000"]
    url = (evaluated_run / "report.html").as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    specs = chart_specs((evaluated_run / "report.html").read_text())
    for chart_id in specs:
        m = re.search(rf'<div class="vis[^"]*" id="{chart_id}"[^>]*>(.*?)</figure>', dom, re.S)
        assert m, chart_id
        assert 'data-rendered="true"' in m.group(0) and "<svg" in m.group(1), f"{chart_id} was not drawn"
    assert "vis error" not in dom


def test_linkage_bias_section_shows_the_published_table_and_scores_by_group(tmp_path):
    """The section shows the analyst table as published (suppressed cells say so) and, once
    evaluated, precision and recall per group; a run without the table has no section."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run, _ = build_run(tmp_path)
    assert '<section id="linkage-bias">' not in write_report(run).read_text()
    rows = [("sex", "F", 40, 0.825, 30, 0.6), ("sex", "M", None, None, None, None), ("sex", "all", 120, 0.8, 90, 0.6),
            ("date_of_birth_present", "no", 50, 0.5123, 40, 0.25)]
    cols = list(zip(*rows))
    pq.write_table(pa.table({"breakdown": cols[0], "group": cols[1], "records": cols[2], "share_records_linked": cols[3],
                             "people": cols[4], "share_people_in_2plus_sources": cols[5]}),
                   run / "analyst" / "linkage_bias.parquet")
    (run / "evaluation.json").write_text(json.dumps({
        "pairwise": {"precision": 0.9, "recall": 0.8, "f1": 0.85}, "cluster": {"precision": 0.9, "recall": 0.8, "f1": 0.85},
        "by_group": {"sex": [{"group": "F", "precision": 0.97, "recall": 0.613}]}}))
    page = write_report(run).read_text()
    sec = page.split('<section id="linkage-bias">')[1].split("</section>")[0]
    assert "section-error" not in sec
    assert re.search(r"<td>F</td><td class=num>40</td><td class=num>82.5%</td><td class=num>30</td>"
                     r"<td class=num>60.0%</td><td class=num>97.0%</td><td class=num>61.3%</td>", sec), sec
    assert re.search(r"<td>M</td>(<td class=num>suppressed</td>){4}", sec)
    assert "51.2%" in sec and "by date of birth present" in sec
    shares = {(d["breakdown"], d["group"]): d["share"] for d in chart_specs(page)["chart-linkage-bias"]["data"]["values"]}
    assert shares == {("sex", "F"): 0.825, ("date_of_birth_present", "no"): 0.5123}
