"""The whole job, end to end on generated data, through the real command line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import cli, config_variant, copy_of, fast_config


def _count_rows(path: Path) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_csv('{path}', header=true, all_varchar=true)").fetchall()[0][0]


@pytest.fixture(scope="module")
def finished_run(justice_run, tmp_path_factory):
    """A copy of the session's justice run (tests here score it) and its config."""
    run, config = justice_run
    return copy_of(run, tmp_path_factory.mktemp("job") / "run"), config


def test_every_record_is_accounted_for(finished_run, synth_dir):
    out, _ = finished_run
    manifest = json.loads((out / "manifest.json").read_text())
    con = duckdb.connect()
    crosswalk = dict(con.execute(f"SELECT source_dataset, count(*) FROM '{out}/restricted/crosswalk.parquet' GROUP BY ALL").fetchall())
    rejects = dict(con.execute(f"SELECT source_dataset, count(*) FROM '{out}/restricted/rejects.parquet' GROUP BY ALL").fetchall())
    for source in ("pnc", "prison", "probation", "libra", "crest"):
        rows = _count_rows(synth_dir / f"{source}.csv")
        assert crosswalk.get(source, 0) + rejects.get(source, 0) == rows, source
        assert manifest["rows"][source]["read"] == rows
    # Each record once.
    dup = con.execute(f"SELECT count(*) - count(DISTINCT (source_dataset, record_id)) FROM '{out}/restricted/crosswalk.parquet'").fetchall()[0][0]
    assert dup == 0
    assert set(manifest["stage_seconds"]) >= {"read", "standardise", "train", "predict", "cluster", "de-identify"}
    assert set(manifest["stage_cpu_seconds"]) == set(manifest["stage_seconds"])
    assert manifest["config_sha256"] and manifest["versions"]["splink"].startswith("5.")


def test_known_duplicates_land_together(finished_run, synth_dir):
    out, _ = finished_run
    con = duckdb.connect()
    # Records of one true person that share a valid PNC and agree exactly on name and date of
    # birth after standardisation must share a person id.
    split = con.execute(
        f"""SELECT count(*) FROM (
            SELECT t.person_id, s.full_name, s.date_of_birth, count(DISTINCT x.person_id) AS ids
            FROM '{out}/restricted/standardised.parquet' s
            JOIN read_csv('{synth_dir}/truth.csv', all_varchar=true) t USING (source_dataset, record_id)
            JOIN '{out}/restricted/crosswalk.parquet' x USING (source_dataset, record_id)
            WHERE s.full_name IS NOT NULL AND s.date_of_birth IS NOT NULL
            GROUP BY ALL HAVING ids > 1)"""
    ).fetchall()[0][0]
    assert split == 0


def test_sources_standardised_together_as_each_alone(finished_run, synth_dir):
    """The job standardises sources read alike in one pass; each row is as if alone."""
    from linkage import sources
    from linkage.config import load_config
    from linkage.standardise import standardise_table

    out, config = finished_run
    loaded = load_config(config)
    con = duckdb.connect()
    sources.read_sources(con, loaded, synth_dir)
    for name, src in loaded.config.sources.items():
        standardise_table(con, f"mapped_{name}", f"alone_{name}",
                          date_formats=list(src.date_formats), list_separator=src.list_separator)
    alone = " UNION ALL ".join(f"SELECT * FROM alone_{n}" for n in loaded.config.sources)
    # Less the columns capped blocking rules join on (model.add_key_caps), which need every record.
    published = (f"(SELECT COLUMNS(lambda c: NOT starts_with(c, '__lk_cap_')) "
                 f"FROM read_parquet('{out}/restricted/standardised.parquet'))")
    n = con.execute(f"SELECT count(*) FROM ({alone})").fetchall()[0][0]
    assert n == con.execute(f"SELECT count(*) FROM {published}").fetchall()[0][0]
    for a, b in ((alone, f"SELECT * FROM {published}"), (f"SELECT * FROM {published}", alone)):
        assert con.execute(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))").fetchall()[0][0] == 0


def test_evaluate_writes_scores(finished_run, synth_dir):
    out, _ = finished_run
    res = cli("evaluate", str(out), "--truth", str(synth_dir / "truth.csv"))
    assert res.returncode == 0, res.stderr
    ev = json.loads((out / "evaluation.json").read_text())
    for kind in ("pairwise", "cluster"):
        for metric in ("precision", "recall", "f1"):
            assert 0 <= ev[kind][metric] <= 1
    assert ev["cluster"]["f1"] > 0.85, ev["cluster"]
    assert ev["pairwise"]["f1"] > ev["baseline"]["pairwise"]["f1"]
    assert len(ev["threshold_curve"]) >= 5
    assert "precision" in res.stdout and "B-cubed" in res.stdout


def test_saved_model_skips_training(finished_run, synth_dir, tmp_path):
    out, config = finished_run
    again = tmp_path / "again"
    res = cli("run", str(config), "--data", str(synth_dir), "--out", str(again), "--model", str(out / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["model"]["trained"] is False
    assert "train" not in manifest["stage_seconds"]
    assert "training skipped" in res.stderr
    # Same records: the prior estimated again is the trained one.
    saved = json.loads((out / "restricted" / "model.json").read_text())
    assert manifest["model"]["probability_two_random_records_match"] == pytest.approx(
        saved["probability_two_random_records_match"], rel=1e-9)
    assert manifest["model"]["prior_from"] == "this data"


def test_saved_model_prior_follows_the_data(finished_run, tmp_path):
    """A third of the records: the prior, re-estimated, is about three times the saved one;
    with ``with_saved_model: keep`` it is the saved one."""
    from linkage.synthetic import generate

    out, config = finished_run
    small = tmp_path / "small"
    generate(people=500, seed=12, out=small, profile="realistic")
    model_json = out / "restricted" / "model.json"
    saved = json.loads(model_json.read_text())["probability_two_random_records_match"]

    res = cli("run", str(config), "--data", str(small), "--out", str(tmp_path / "re"), "--model", str(model_json))
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "re" / "manifest.json").read_text())
    assert "prior" in manifest["stage_seconds"] and "prior estimated on this data" in res.stderr
    assert 2 < manifest["model"]["probability_two_random_records_match"] / saved < 4.5

    keep = config_variant(config, tmp_path / "keep.yaml",
                          lambda raw: raw["model"]["training"]["prior"].update(with_saved_model="keep"))
    res = cli("run", str(keep), "--data", str(small), "--out", str(tmp_path / "kept"), "--model", str(model_json))
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    assert "prior" not in manifest["stage_seconds"]
    assert manifest["model"]["probability_two_random_records_match"] == pytest.approx(saved, rel=1e-9)
    assert manifest["model"]["prior_from"] == "saved model"


def test_file_database_gives_the_same_people(finished_run, synth_dir, tmp_path):
    """engine.database: file keeps the tables in a DuckDB file; the results do not change."""
    out, config = finished_run
    on_file = config_variant(config, tmp_path / "file.yaml",
                             lambda raw: raw.setdefault("engine", {}).update(database="file"))
    again = tmp_path / "again"
    res = cli("run", str(on_file), "--data", str(synth_dir), "--out", str(again),
              "--model", str(out / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    assert json.loads((again / "manifest.json").read_text())["work_database"] == "file"
    assert json.loads((out / "manifest.json").read_text())["work_database"] == "memory"
    assert not (again / "work").exists()  # the work folder goes with the run unless --keep-work
    assert _records_with_another_person_id(out, again) == 0


def test_rerun_gives_identical_person_ids(finished_run, synth_dir, tmp_path):
    out, config = finished_run
    again = tmp_path / "again"
    res = cli("run", str(config), "--data", str(synth_dir), "--out", str(again), "--previous", str(out),
              "--model", str(out / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    assert _records_with_another_person_id(out, again) == 0


def test_id_registry_carries_person_ids_without_previous(finished_run, synth_dir, tmp_path):
    """outputs.id_registry: each run leaves its ids there and the next run keeps them,
    with no --previous; a run with another key is refused."""
    out, config = finished_run
    registry = tmp_path / "secure" / "ids.parquet"
    with_registry = config_variant(config, tmp_path / "registry.yaml",
                                   lambda raw: raw.setdefault("outputs", {}).update(id_registry=str(registry)))
    model = str(out / "restricted" / "model.json")
    runs = [tmp_path / "r1", tmp_path / "r2"]
    for run in runs:
        res = cli("run", str(with_registry), "--data", str(synth_dir), "--out", str(run), "--model", model)
        assert res.returncode == 0, res.stderr
    first, second = (json.loads((r / "manifest.json").read_text()) for r in runs)
    assert first["previous_ids"] is None and first["id_generation"] == 1
    assert second["previous_ids"] == str(registry) and second["id_generation"] == 2
    assert second["ids"]["kept"] == second["clusters"]["clusters"] and second["ids"]["new"] == 0
    assert _records_with_another_person_id(runs[0], runs[1]) == 0
    meta = json.loads(registry.with_suffix(".json").read_text())
    assert meta["id_generation"] == 2 and meta["pseudonym_key_fingerprint"] == second["pseudonym_key_fingerprint"]
    res = cli("run", str(with_registry), "--data", str(synth_dir), "--out", str(tmp_path / "r3"), "--model", model,
              env={"LINKAGE_PSEUDONYM_KEY": "514d4b789d6499435419cc6efbafc04e0bc11392b8cc0adf"})
    assert res.returncode == 1 and "made with a different pseudonymisation key" in res.stderr


def _records_with_another_person_id(a: Path, b: Path) -> int:
    """Records whose person id differs between two runs (or that only one run has)."""
    return duckdb.connect().execute(
        f"SELECT count(*) FROM '{a}/restricted/crosswalk.parquet' x FULL JOIN '{b}/restricted/crosswalk.parquet' y "
        f"USING (source_dataset, record_id) WHERE x.person_id IS DISTINCT FROM y.person_id"
    ).fetchall()[0][0]


# --- bad input: exit 1, one clear message, no partial outputs -----------------------------------


def _copy_data(synth_dir: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    return data


def _rewrite_csv(path: Path, sql: str) -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{path}', header=true, all_varchar=true)")
    con.execute(sql)
    con.execute(f"COPY t TO '{path}' (HEADER)")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "crest.csv").unlink(), r"sources.crest.path: file not found: .*crest.csv"),
        (lambda d: _rewrite_csv(d / "libra.csv", "ALTER TABLE t RENAME defendant_dob TO dob"),
         r"sources.libra.columns.date_of_birth: column 'defendant_dob' not found in libra.csv \(has: .*dob"),
        (lambda d: _rewrite_csv(d / "prison.csv", "UPDATE t SET date_of_birth = strftime(strptime(date_of_birth, '%Y-%m-%d'), '%d.%m.%Y') WHERE date_of_birth <> ''"),
         r"prison.csv: column 'date_of_birth' \(date_of_birth\) is unreadable with date_formats \['%Y-%m-%d'\]: \d+ of \d+ non-empty values fail \(rows 1, 2, "),
        (lambda d: _rewrite_csv(d / "probation.csv", "DELETE FROM t"), r"probation.csv: the extract for source 'probation' has no rows"),
        (lambda d: _rewrite_csv(d / "pnc.csv", "UPDATE t SET pnc_record_id = 'PNC-DUP' WHERE pnc_record_id IN (SELECT pnc_record_id FROM t ORDER BY 1 LIMIT 3)"),
         r"pnc.csv: column 'pnc_record_id' \(the record id\) repeats: 3 rows share an id with another row \(rows \d+, \d+, \d+\)"),
    ],
    ids=["missing file", "missing column", "unreadable dates", "empty extract", "duplicate ids"],
)
def test_bad_input_exits_1_with_one_clear_message(synth_dir, tmp_path, damage, message):
    data = _copy_data(synth_dir, tmp_path)
    damage(data)
    out = tmp_path / "run"
    res = cli("run", str(fast_config(tmp_path)), "--data", str(data), "--out", str(out))
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    import re

    assert re.search(message, res.stderr.replace("\n", " ")), res.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".run.staging-*"))


def test_config_with_three_mistakes_exits_1_naming_all(tmp_path):
    config = tmp_path / "bad.yaml"
    text = fast_config(tmp_path).read_text()
    text = re.sub(r"\n  threshold: [0-9.]+\n", "\n  threshold: 2\n", text.replace("record_id: booking_id", "recordid: booking_id"))
    text = text.replace("date_of_birth: defendant_dob", "dob: defendant_dob")
    config.write_text(text)
    for args in (["validate", str(config)], ["run", str(config)]):
        res = cli(*args)
        assert res.returncode == 1
        assert "Traceback" not in res.stderr
        assert "3 problems" in res.stderr or "4 problems" in res.stderr
        for key in ("sources.prison.recordid", "model.threshold", "sources.libra.columns.dob"):
            assert key in res.stderr


def test_missing_key_refuses_to_run(synth_dir, tmp_path):
    res = cli("run", str(fast_config(tmp_path)), "--data", str(synth_dir), "--out", str(tmp_path / "r"),
              env={"LINKAGE_PSEUDONYM_KEY": None})
    assert res.returncode == 1
    assert "no pseudonymisation key: set LINKAGE_PSEUDONYM_KEY" in res.stderr


def test_previous_run_with_another_key_is_refused(finished_run, synth_dir, tmp_path):
    out, config = finished_run
    res = cli("run", str(config), "--data", str(synth_dir), "--out", str(tmp_path / "r"), "--previous", str(out),
              env={"LINKAGE_PSEUDONYM_KEY": "514d4b789d6499435419cc6efbafc04e0bc11392b8cc0adf"})
    assert res.returncode == 1
    assert "made with a different pseudonymisation key" in res.stderr


def test_killed_run_leaves_the_published_run_untouched(finished_run, synth_dir, tmp_path):
    published, config = finished_run
    out = tmp_path / "run"
    # A published run of this job on this data, as the job leaves it (another test here has
    # since scored the shared run: its evaluation.json is not part of a run as published).
    shutil.copytree(published, out, ignore=shutil.ignore_patterns("evaluation.json"))
    before = (out / "manifest.json").read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from linkage.cli import main; main()", "run", str(config), "--data", str(synth_dir), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "LINKAGE_PSEUDONYM_KEY": "e57c0c61add55e16651b783d33db5d9545ae1707795fa245"},
    )
    # Kill it once it has started writing its staging folder.
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".run.staging-*")):
        time.sleep(0.1)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) >= ["analyst", "manifest.json", "report.html", "restricted"]
    # The next run clears the dead run's staging folder.
    assert cli("run", str(config), "--data", str(synth_dir), "--out", str(out), "--model",
               str(out / "restricted" / "model.json")).returncode == 0
    assert not list(tmp_path.glob(".run.staging-*"))


@pytest.mark.parametrize("id_column", ["ref", "rowid"])
def test_row_numbers_are_the_extracts_rows(tmp_path, id_column):
    """``_row`` is the row in the file, also when the file is read in parallel chunks, and
    also when the extract has a column called rowid (which hides DuckDB's row id)."""
    from linkage import sources
    from linkage.config import SourceConfig

    path = tmp_path / "big.csv"
    con = duckdb.connect()
    # Rows of uneven length, so that parallel chunks do not split at round row numbers.
    con.execute(f"COPY (SELECT i AS {id_column}, repeat('x', (i * 7919) % 50) AS pad FROM range(1, 400001) t(i)) "
                f"TO '{path}' (HEADER)")
    src = SourceConfig(path=str(path), record_id=id_column, columns={"surname": "pad"})
    sources.load_source(con, "big", src, path)
    rows, wrong = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE _row <> CAST({id_column} AS BIGINT)) FROM raw_big"
    ).fetchall()[0]
    assert (rows, wrong) == (400_000, 0)
