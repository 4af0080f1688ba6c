"""``linkage find``: records taken from the synthetic truth find their true person first."""

from __future__ import annotations

import csv
import json
import stat
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from conftest import cli, copy_of, fast_config


@pytest.fixture(scope="module")
def run(seed3, seed3_run, tmp_path_factory):
    """The session's seed-3 extracts (read only) and a copy of its justice run (finds write into it)."""
    tmp = tmp_path_factory.mktemp("find")
    fast_config(tmp)  # tmp / "job.yaml": the same config as the run's
    return tmp, seed3, copy_of(seed3_run[0], tmp / "run")


def truth_of_persons(run_dir: Path, data: Path) -> dict[str, Counter]:
    """person_id -> how many of its records belong to each true person."""
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT c.person_id, t.person_id FROM read_parquet('{run_dir}/restricted/crosswalk.parquet') c
        JOIN read_csv('{data}/truth.csv', all_varchar=true) t USING (source_dataset, record_id)"""
    ).fetchall()
    out: dict[str, Counter] = {}
    for person, true in rows:
        out.setdefault(person, Counter())[true] += 1
    return out


def take(data: Path, source: str, n: int, change) -> tuple[list[dict[str, str]], dict[str, str]]:
    """``n`` records of a source (every 7th, with more than one record for their true person),
    under new ids, changed by ``change``; and each new id's true person."""
    truth = {}
    with (data / "truth.csv").open() as f:
        for r in csv.DictReader(f):
            truth[(r["source_dataset"], r["record_id"])] = r["person_id"]
    sizes = Counter(truth.values())
    with (data / f"{source}.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    id_col = next(iter(rows[0]))
    picked, true = [], {}
    for r in rows[::7]:
        person = truth[(source, r[id_col])]
        if sizes[person] < 3:
            continue
        new = dict(r)
        new[id_col] = f"LOOKUP{len(picked) + 1}"
        change(new)
        picked.append(new)
        true[new[id_col]] = person
        if len(picked) == n:
            break
    return picked, true


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def check_first(out_dir: Path, run_dir: Path, data: Path, true: dict[str, str]) -> int:
    files = sorted((out_dir).glob("find_*.csv"))
    with files[-1].open() as f:
        found = [r for r in csv.DictReader(f)]
    persons = truth_of_persons(run_dir, data)
    right = 0
    for rid, person in true.items():
        first = [r for r in found if r["lookup_record_id"] == rid and r["rank"] == "1"]
        assert first, f"{rid}: no candidate"
        # the first candidate person is mostly the true person's records
        if persons[first[0]["person_id"]].most_common(1)[0][0] == person:
            right += 1
    return right


def test_find_returns_the_true_person_first(run):
    tmp, data, run_dir = run

    def blur(r):  # a court's copy: no PNC ID, no postcode
        r["pnc_id"] = ""
        r["postcode"] = ""

    rows, true = take(data, "libra", 12, blur)
    res = cli("find", str(run_dir), "--record", str(write_csv(tmp / "lookup.csv", rows)), "--source", "libra")
    assert res.returncode == 0, res.stderr
    assert "LOOKUP1" in res.stdout and "agreed: " in res.stdout
    out_dir = run_dir / "restricted" / "find"
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out_dir.iterdir())
    assert check_first(out_dir, run_dir, data, true) >= 11  # of 12


def test_find_reads_json_laid_out_like_another_source(run):
    tmp, data, run_dir = run
    rows, true = take(data, "prison", 5, lambda r: None)
    path = tmp / "lookup.json"
    path.write_text(json.dumps(rows))
    res = cli("find", str(run_dir), "--record", str(path), "--source", "prison", "--top", "3")
    assert res.returncode == 0, res.stderr
    assert check_first(run_dir / "restricted" / "find", run_dir, data, true) == 5


def test_a_record_missing_a_column_the_model_needs_exits_1_naming_it(run):
    tmp, data, run_dir = run
    rows, _ = take(data, "libra", 1, lambda r: r.pop("defendant_dob"))
    res = cli("find", str(run_dir), "--record", str(write_csv(tmp / "nodob.csv", rows)), "--source", "libra")
    assert res.returncode == 1
    assert "'defendant_dob' (date_of_birth) missing" in res.stderr
    assert rows[0]["defendant_name"] not in res.stderr
    res = cli("find", str(run_dir), "--record", str(tmp / "nodob.csv"), "--source", "nowhere")
    assert res.returncode == 1 and "not a source of the job" in res.stderr


def test_the_lookup_index_is_built_once_and_gives_the_same_answer(run, monkeypatch):
    from linkage.find import INDEX, SCORING_SQL, find_records

    tmp, data, run_dir = run
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", "unused-by-find")
    rows, _ = take(data, "libra", 3, lambda r: None)
    lookup = write_csv(tmp / "three.csv", rows)
    (run_dir / INDEX).unlink(missing_ok=True)
    (run_dir / SCORING_SQL).unlink(missing_ok=True)
    cold = find_records(run_dir, lookup, source="libra")  # Splink scores, its SQL kept
    warm = find_records(run_dir, lookup, source="libra")  # the kept SQL replayed
    assert (cold.seconds["index_built"], warm.seconds["index_built"]) == (1.0, 0.0)
    for path in (INDEX, SCORING_SQL):
        assert stat.S_IMODE((run_dir / path).stat().st_mode) == 0o600
    assert cold.candidates == warm.candidates and len(warm.candidates) >= 3
    # other records (another source's layout): the replayed SQL scores them as Splink does
    others, _ = take(data, "prison", 4, lambda r: r.update(pnc_number=""))
    lookup = write_csv(tmp / "four.csv", others)
    replayed = find_records(run_dir, lookup, source="prison")
    (run_dir / SCORING_SQL).unlink()
    scored = find_records(run_dir, lookup, source="prison")
    assert replayed.candidates == scored.candidates and len(scored.candidates) >= 4


def test_the_lookup_index_is_built_within_the_engine_settings(run):
    """The index build keeps to the job's engine settings, as the job does: a spill folder it
    cannot write fails at once, naming the setting, and leaves no half-built index; the
    default spill folder (beside the index, in the restricted zone) is gone after a build."""
    from linkage.config import load_config
    from linkage.errors import LinkageError
    from linkage.find import INDEX, prepare_index
    from linkage.publish import read_run_manifest

    tmp, _, run_dir = run
    cfg = load_config(tmp / "job.yaml").config
    manifest = read_run_manifest(run_dir)
    (run_dir / INDEX).unlink(missing_ok=True)
    blocked = tmp / "a_file_not_a_folder"
    blocked.write_text("")
    engine = cfg.engine.model_copy(update={"temp_directory": str(blocked / "spill")})
    with pytest.raises(LinkageError, match="engine.temp_directory"):
        prepare_index(run_dir, manifest, cfg.model_copy(update={"engine": engine}))
    assert sorted(p.name for p in (run_dir / INDEX).parent.iterdir() if p.name.startswith(".")) == []
    small = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"memory_limit": "256MiB"})})
    path, built = prepare_index(run_dir, manifest, small)
    assert built and path.is_file() and not (path.parent / "spill").exists()


def test_a_warm_find_imports_neither_splink_nor_the_job(run):
    """A warm find replays the SQL the first find kept: Splink and the run's stages (about a
    second of imports at every call) stay unimported, and so do pandas and numpy (the record's
    values reach DuckDB as bound parameters: registering a Python object imports pandas)."""
    tmp, data, run_dir = run
    rows, _ = take(data, "libra", 2, lambda r: None)
    lookup = write_csv(tmp / "two.csv", rows)
    assert cli("find", str(run_dir), "--record", str(lookup), "--source", "libra").returncode == 0
    res = cli("find", str(run_dir), "--record", str(lookup), "--source", "libra", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "linkage.find" in imported and "duckdb" in imported
    assert not {m for m in imported if m.split(".")[0] in ("splink", "pandas", "numpy")
                or m in ("linkage.job", "linkage.model")}


def test_candidates_come_from_the_records_lines_and_without_them_from_the_index(run, monkeypatch):
    """A warm find reads its candidates' records from ``records.jsonl`` by node id; with the
    lines missing or not the index's own (another size), it reads them from the index and
    answers the same."""
    from linkage.find import FIND_DIR, LINES, OFFSETS, find_records

    tmp, data, run_dir = run
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", "unused-by-find")
    rows, _ = take(data, "libra", 3, lambda r: None)
    lookup = write_csv(tmp / "lines.csv", rows)
    folder = run_dir / FIND_DIR
    from_lines = find_records(run_dir, lookup, source="libra")
    assert from_lines.seconds["records_from_lines"] == 1.0 and len(from_lines.candidates) >= 3
    for name in (LINES, OFFSETS):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    kept = (folder / LINES).read_bytes()
    try:
        (folder / LINES).write_bytes(kept[:-1])
        cut = find_records(run_dir, lookup, source="libra")
        (folder / LINES).unlink()
        gone = find_records(run_dir, lookup, source="libra")
    finally:
        (folder / LINES).write_bytes(kept)
    assert cut.seconds["records_from_lines"] == gone.seconds["records_from_lines"] == 0.0
    assert cut.candidates == gone.candidates == from_lines.candidates


def test_python_m_linkage_find_answers_as_the_cli_does_without_its_libraries(run):
    """``python -m linkage find`` (and the ``linkage`` script) skips typer and rich; its
    answers, messages and exit codes are the CLI's, help and bad arguments included."""
    import subprocess
    import sys

    from conftest import TEST_KEY

    from linkage.__main__ import find_arguments

    tmp, data, run_dir = run

    def short(*args: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([sys.executable, *python, "-m", "linkage", *args], capture_output=True, text=True,
                              env={**os.environ, "LINKAGE_PSEUDONYM_KEY": TEST_KEY}, timeout=600)

    rows, _ = take(data, "libra", 2, lambda r: None)
    lookup = write_csv(tmp / "short.csv", rows)
    args = ("find", str(run_dir), "--record", str(lookup), "--source", "libra", "--top=3")
    full, fast = cli(*args), short(*args, python=("-X", "importtime"))
    assert full.returncode == fast.returncode == 0, fast.stderr[-2000:]
    assert fast.stdout == full.stdout and "LOOKUP1" in fast.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in fast.stderr.splitlines() if line.startswith("import time:")}
    assert "linkage.find" in imported and not imported & {"typer", "click", "rich", "splink", "pandas"}
    # the standardisation plan the first find kept: neither the config nor its models imported
    assert not imported & {"linkage.config", "linkage.standardise", "pydantic"}
    assert [ln for ln in fast.stderr.splitlines() if ln.startswith("wrote ")]

    nodob, _ = take(data, "libra", 1, lambda r: r.pop("defendant_dob"))
    bad = write_csv(tmp / "short_nodob.csv", nodob)
    for wrong in (("find", str(run_dir), "--record", str(bad), "--source", "libra"),  # the find's own error
                  ("find", str(tmp / "nowhere"), "--record", str(lookup)),  # not a run
                  ("find", str(run_dir), "--record", str(lookup), "--top", "many"),  # the CLI's parser
                  ("find", "--help")):
        a, b = cli(*wrong), short(*wrong)
        assert (b.returncode, b.stdout, b.stderr) == (a.returncode, a.stdout, a.stderr), wrong
    assert find_arguments(["find", "RUN", "--record", "R.csv", "--config=C.yaml"]) == {
        "run_dir": "RUN", "record": "R.csv", "config": "C.yaml"}
    for other in (["find", "RUN"], ["find", "RUN", "--record"], ["find", "RUN", "--record", "A", "--record", "B"],
                  ["find", "RUN", "OTHER", "--record", "A"], ["find", "RUN", "--record", "A", "--top", "x"],
                  ["find", "RUN", "--record", "A", "-h"], ["run", "RUN"]):
        assert find_arguments(other) is None, other


def test_find_standardises_records_as_the_run_did(run):
    """A find's records, standardised by its own entry (the records alone, a view, the fields
    the source does not map left NULL uncleaned): the very values and types the run's batch
    standardisation gave the same rows (restricted/standardised.parquet), for two sources laid
    out differently (libra maps no CRO, prison or probation number), every column and row."""
    from linkage.config import load_config
    from linkage.find import _read_records, standardise

    tmp, data, run_dir = run
    cfg = load_config(tmp / "job.yaml").config
    con = duckdb.connect()
    try:
        for name in ("libra", "prison"):
            _, records = _read_records(data / f"{name}.csv")
            assert standardise(con, cfg, name, records, f"found_{name}") == []
            described = con.execute(f"DESCRIBE found_{name}").fetchall()
            columns = ", ".join(f'"{c}"' for (c, *_) in described)
            con.execute(f"CREATE TABLE ran_{name} AS SELECT {columns} FROM read_parquet("
                        f"'{run_dir}/restricted/standardised.parquet') WHERE source_dataset = '{name}'")
            assert [d[:2] for d in described] == [d[:2] for d in con.execute(f"DESCRIBE ran_{name}").fetchall()]
            assert con.execute(f"SELECT count(*) FROM found_{name}").fetchall() == [(len(records),)]
            differ = con.execute(f"SELECT count(*) FROM ((SELECT * FROM found_{name} EXCEPT ALL SELECT * FROM ran_{name}) "
                                 f"UNION ALL (SELECT * FROM ran_{name} EXCEPT ALL SELECT * FROM found_{name}))").fetchall()
            assert differ == [(0,)], name
            assert len(columns.split(", ")) > 20  # the declared fields' values and keys, not just the ids
    finally:
        con.close()


def test_key_caps_from_the_index_are_those_the_run_counts_give(run):
    """find sets a capped rule's column from the key sizes its index keeps, as
    ``model.add_key_caps`` sets it counting the run's records at every find: here with caps that
    bite at this size (2 and 3 records a key), for a plain and an exploding rule."""
    from linkage import model
    from linkage.config import KeyRule, load_config
    from linkage.find import _capped, _key_sizes_sql, add_key_caps

    tmp, _, run_dir = run
    cfg = load_config(tmp / "job.yaml").config
    rules = [KeyRule(block_on=["surname", "first_name"], max_records_per_key=2),
             KeyRule(block_on=["name_set", "year_of_birth"], explode=["name_set"], max_records_per_key=3)]
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"blocking_rules": rules})})
    con = duckdb.connect()
    try:
        con.execute("ATTACH ':memory:' AS idx")
        con.execute(f"""CREATE TABLE idx.records AS SELECT row_number() OVER (ORDER BY source_dataset, record_id) AS node_id, *
                        FROM read_parquet('{run_dir}/restricted/standardised.parquet')""")
        for col, rule in _capped(cfg):
            con.execute(f"CREATE TABLE idx.keys_{col} AS {_key_sizes_sql(rule, 'idx.records')}")
        # records looked up: every 5th of the run's, under other node ids
        con.execute("CREATE TABLE counted AS SELECT * REPLACE (-node_id AS node_id) FROM idx.records WHERE node_id % 5 = 0")
        caps = model.add_key_caps(con, "counted", rules, counts_from="idx.records")
        assert len(caps) == 2 and all(c.keys_dropped > 0 for c in caps.values())
        cols = [col for col, _ in _capped(cfg)]
        types = {c: t for c, t, *_ in con.execute("DESCRIBE counted").fetchall()}
        con.execute("CREATE TABLE sized AS SELECT * REPLACE ("
                    + ", ".join(f"CAST(NULL AS {types[c]}) AS {c}" for c in cols) + ") FROM counted")
        add_key_caps(con, cfg, "sized")
        kept = con.execute(f"SELECT count({cols[0]}), count({cols[1]}), count(*) FROM sized").fetchall()[0]
        assert 0 < kept[0] < kept[2] and 0 < kept[1] < kept[2]
        # an exploding rule's kept keys are a list in no set order (``list`` of a join), in both
        differ = f"s.{cols[0]} IS DISTINCT FROM c.{cols[0]} OR list_sort(s.{cols[1]}) IS DISTINCT FROM list_sort(c.{cols[1]})"
        assert con.execute(f"SELECT count(*) FROM sized s JOIN counted c USING (node_id) WHERE {differ}").fetchall() == [(0,)]
    finally:
        con.close()


def test_a_kept_standardisation_plan_gives_the_full_standardisation(run):
    """The plan a find keeps (its standardisation's statements, noted on a few records)
    replayed on other records gives the very rows and types the full standardisation
    gives them, for two sources laid out differently; the phonetic keys made again in the
    replay are the field types' own."""
    from linkage.config import load_config
    from linkage.find import _kept_columns, _metaphone, _plain, _PlanRecorder, _read_records, _replay_plan, standardise
    from linkage.standardise.types.name_cleaning import metaphone

    tmp, data, _ = run
    cfg = load_config(tmp / "job.yaml").config
    for name in ("libra", "prison"):
        _, records = _read_records(data / f"{name}.csv")
        keep = _kept_columns(cfg.sources[name])
        plain = [r for r in records if _plain([r], keep)]
        noted_on, others = plain[:3], plain[3:400]
        con = duckdb.connect()
        try:
            noted = _PlanRecorder(con)
            assert standardise(noted, cfg, name, noted_on, "std_0") == [] and noted.ok
            assert any("python" in step for step in noted.steps)  # the phonetic keys
        finally:
            con.close()
        full, replayed = duckdb.connect(), duckdb.connect()
        try:
            assert standardise(full, cfg, name, others, "std_0") == []
            assert _replay_plan(replayed, {"keep": keep, "steps": noted.steps}, others) == []
            rows = [c.execute("SELECT * FROM std_0 ORDER BY record_id").fetchall() for c in (full, replayed)]
            types = [c.execute("DESCRIBE std_0").fetchall() for c in (full, replayed)]
            assert rows[0] == rows[1] and types[0] == types[1] and len(rows[0]) == len(others), name
        finally:
            full.close()
            replayed.close()
    names = ["SMITH JONES", "MCDONALD", "O BRIEN", "", None, "XAVIER", "KNIGHT"]
    assert [_metaphone(n) for n in names] == [metaphone(n) for n in names]


def test_a_find_without_a_usable_plan_standardises_in_full_and_answers_the_same(run, monkeypatch):
    """A plan made for another config, day or code (its stamp), or whose statements fail, is
    not used: the find standardises in full, answers the same and keeps a plan of its own;
    records with letters beyond ASCII (transliterated in Python) are standardised in full."""
    from linkage.find import STANDARDISE_PLAN, find_records

    tmp, data, run_dir = run
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", "unused-by-find")
    rows, _ = take(data, "libra", 3, lambda r: None)
    lookup = write_csv(tmp / "plan.csv", rows)
    first = find_records(run_dir, lookup, source="libra")
    path = run_dir / STANDARDISE_PLAN
    kept = json.loads(path.read_text())
    assert "libra" in kept["plans"] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert find_records(run_dir, lookup, source="libra").candidates == first.candidates  # replayed
    path.write_text(json.dumps({**kept, "stamp": "another config"}))
    assert find_records(run_dir, lookup, source="libra").candidates == first.candidates
    assert json.loads(path.read_text())["stamp"] == kept["stamp"]  # kept again, this run's
    broken = json.loads(path.read_text())
    broken["plans"]["libra"]["steps"][1]["sql"] = "SELECT * FROM no_such_table"
    path.write_text(json.dumps(broken))
    assert find_records(run_dir, lookup, source="libra").candidates == first.candidates
    accented, _ = take(data, "libra", 1, lambda r: r.update(defendant_name="Zoë Ørsted"))
    assert find_records(run_dir, write_csv(tmp / "accented.csv", accented), source="libra").records == 1
