"""The open record model through the CLI: declared fields, link types, the prior, sql:
rules, and the loud failures (config errors with key paths, emptied fields, a model
step the data cannot support)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.conftest import cli, config_variant, febrl_config, febrl_slice, synth_extracts, write_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
JUSTICE = CONFIGS / "justice.yaml"
JUSTICE_DECLARED = CONFIGS / "examples" / "justice_declared.yaml"


@pytest.fixture(scope="module")
def febrl3(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("febrl3")
    febrl_slice("dataset3.csv", out / "dataset3.csv", 1500, "r")
    return out


@pytest.fixture(scope="module")
def febrl4(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("febrl4")
    febrl_slice("dataset4a.csv", out / "a.csv", 800, "a")
    febrl_slice("dataset4b.csv", out / "b.csv", 800, "b")
    return out


def _pairs(run: Path) -> list[tuple[str, str]]:
    return duckdb.sql(
        f"SELECT source_dataset_l, source_dataset_r FROM '{run}/restricted/predictions.parquet'"
    ).fetchall()


def test_sql_blocking_rule_and_prefix_key_run(tmp_path, febrl3):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["model"]["blocking_rules"] += [
        {"sql": "substr(l.surname, 1, 2) = substr(r.surname, 1, 2) AND l.postcode = r.postcode"},
        ["state", {"column": "suburb", "first": 4}],
    ]
    result = cli("run", str(write_config(tmp_path, raw)), "--data", str(febrl3), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    rules = {b["rule"]: b["comparisons"] for b in manifest["blocking"]}
    assert rules["substr(l.surname, 1, 2) = substr(r.surname, 1, 2) AND l.postcode = r.postcode"] > 0
    assert rules["state & first 4 of suburb"] > 0
    standardised = duckdb.sql(f"SELECT * FROM '{tmp_path}/run/restricted/standardised.parquet' LIMIT 1").columns
    assert {"given_name_metaphone", "date_of_birth_text", "address_1_tokens"} <= set(standardised)
    assert "pnc_key" not in standardised  # no justice preset, no justice columns


def test_link_only_pairs_only_records_of_different_sources(tmp_path, febrl4):
    raw = febrl_config(tmp_path, {"a": ("a.csv", {}), "b": ("b.csv", {})}, link_type="link_only")
    raw["model"]["training"]["prior"] = {"matches_per_record": 1}
    result = cli("run", str(write_config(tmp_path, raw)), "--data", str(febrl4), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    pairs = _pairs(tmp_path / "run")
    assert pairs and all(left != right for left, right in pairs)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["link_type"] == "link_only"
    assert manifest["model"]["prior_matches_per_record"] == pytest.approx(1.0)


def test_an_implausible_prior_is_warned_about(tmp_path, febrl3):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["model"]["training"]["prior"] = {"probability": 0.5}
    result = cli("run", str(write_config(tmp_path, raw)), "--data", str(febrl3), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "matches per record" in result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert any("matches per record" in w for w in manifest["warnings"])


def test_a_field_emptied_by_cleaning_is_reported_and_stops_training(tmp_path, febrl3):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["fields"]["date_of_birth"]["earliest"] = "2020-01-01"  # every date of birth "before earliest"
    result = cli("run", str(write_config(tmp_path, raw)), "--data", str(febrl3), "--out", str(tmp_path / "run"))
    assert result.returncode == 1, result.stderr
    assert "internal error" not in result.stderr
    assert "febrl3.date_of_birth: cleaning emptied" in result.stderr
    assert "before_earliest" in result.stderr
    assert "EM blocking rule 'date_of_birth' pairs no records" in result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_declarations_are_listed_together_with_key_paths(tmp_path, febrl3):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["fields"]["date_of_birth"]["check"] = "pnc"  # a check scheme on a date
    raw["model"]["comparisons"].append({"field": "nickname"})  # undeclared
    raw["model"]["blocking_rules"].append(["surnam"])  # no such column
    raw["model"]["blocking_rules"].append({"sql": "l.email = r.email"})  # the records have no email
    raw["model"]["comparisons"].append({"name": "x", "levels": [{"sql": '"town_l" = "town_r"'}]})
    path = write_config(tmp_path, raw)
    result = cli("validate", str(path))
    assert result.returncode == 1
    err = result.stderr
    assert "fields.date_of_birth.check: 'check' is not an option of type date" in err
    assert "model.comparisons[10].field: 'nickname' is not a declared field" in err
    assert "model.blocking_rules[3][0]: 'surnam' is not allowed here; did you mean 'surname'?" in err
    assert "model.blocking_rules[4].sql: names column 'email', which the records will not have" in err
    assert "model.comparisons[11].levels[0].sql: names column 'town'" in err
    assert "Traceback" not in err


def test_bad_person_name_set_and_key_names_are_listed_with_key_paths(tmp_path, febrl3):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["fields"]["date_of_birth"]["key_names"] = {"decade": "dob_decade"}  # no such key
    result = cli("validate", str(write_config(tmp_path, raw)))
    assert result.returncode == 1
    assert "fields.date_of_birth: key_names: 'decade' is not a key of this type (its keys: text, year)" in result.stderr
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["fields"]["dates"] = {"type": "set", "union": ["date_of_birth", "birth_place"]}  # undeclared
    raw["fields"]["name"] = {"type": "person_name", "parts": {"surname": "surname"}}  # surname is a field's input
    result = cli("validate", str(write_config(tmp_path, raw)))
    assert result.returncode == 1
    err = result.stderr
    assert "fields.dates.union[1]: 'birth_place' is not a declared field with values" in err
    assert "fields.name: its input 'surname' is also an input of field 'surname'" in err
    assert "Traceback" not in err


def test_a_field_declared_twice_is_an_error(tmp_path):
    text = (
        "job: x\nfields:\n  surname: {type: name}\n  surname: {type: text}\n"
        "sources: {a: {path: a.csv, record_id: id, columns: {surname: s}}}\n"
    )
    path = tmp_path / "job.yaml"
    path.write_text(text)
    result = cli("validate", str(path))
    assert result.returncode == 1
    assert "'surname' is given twice" in result.stderr and "line 4" in result.stderr


def test_a_preset_field_redefined_inconsistently_is_an_error(tmp_path):
    raw = yaml.safe_load(JUSTICE.read_text())
    raw["preset"] = "justice"
    raw["fields"] = {
        "pnc_id": {"type": "identifier"},  # the preset's has the PNC check scheme
        "crn": {"type": "identifier", "pattern": "[A-Z][0-9]{6}"},  # exactly the preset's: fine
        "surname": {"type": "text"},  # the preset's person name already makes a surname column
        "email": {"type": "email"},  # a new field beside the preset: fine
    }
    result = cli("validate", str(write_config(tmp_path, raw)))
    assert result.returncode == 1
    err = result.stderr
    assert "fields.pnc_id: the justice preset declares 'pnc_id' (type identifier) differently" in err
    assert "fields.surname: its column 'surname' clashes with field 'name'" in err
    assert "crn" not in err and "email" not in err
    assert "Traceback" not in err


def test_a_job_without_the_preset_cannot_map_justice_fields(tmp_path):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["sources"]["febrl3"]["columns"]["pnc_id"] = "soc_sec_id"
    result = cli("validate", str(write_config(tmp_path, raw)))
    assert result.returncode == 1
    assert "sources.febrl3.columns.pnc_id: 'pnc_id' is not a declared field" in result.stderr


# --- the justice preset is declarations: written by hand, the same job -------------------


def test_justice_declared_is_justice_yaml_but_for_its_fields():
    """justice_declared.yaml is justice.yaml with the preset's fields written out: every
    other section equal (so the two cannot drift apart), and the fields the preset's."""
    from linkage.config import load_config

    preset, declared = yaml.safe_load(JUSTICE.read_text()), yaml.safe_load(JUSTICE_DECLARED.read_text())
    assert declared.pop("preset") == "none" and preset.pop("preset", "justice") == "justice"
    assert "fields" not in preset
    declared.pop("fields")
    assert declared == preset
    assert load_config(JUSTICE_DECLARED).config.fields == load_config(JUSTICE).config.fields


def _fast(config: Path, out: Path) -> Path:
    def change(raw: dict) -> None:
        raw["model"]["training"]["u_max_pairs"] = 100_000
        raw["model"]["training"]["em_max_pairs"] = 100_000
        raw["model"]["training"]["u_chunks"] = 1

    return config_variant(config, out, change)


def test_justice_declared_by_hand_gives_the_preset_clusters(tmp_path_factory):
    data = synth_extracts(tmp_path_factory, people=300, seed=7, name="justice_declared")
    work = tmp_path_factory.mktemp("declared")
    runs = {}
    for name, config in (("preset", JUSTICE), ("declared", JUSTICE_DECLARED)):
        res = cli("run", str(_fast(config, work / f"{name}.yaml")), "--data", str(data), "--out", str(work / name))
        assert res.returncode == 0, res.stderr
        runs[name] = work / name
    con = duckdb.connect()

    def partition(run: Path) -> set:
        rows = con.execute(f"SELECT person_id, source_dataset || '/' || record_id FROM "
                           f"'{run}/restricted/crosswalk.parquet'").fetchall()
        people: dict[str, set] = {}
        for person, record in rows:
            people.setdefault(person, set()).add(record)
        return {frozenset(v) for v in people.values()}

    a, b = partition(runs["preset"]), partition(runs["declared"])
    assert a == b and any(len(p) > 1 for p in a)
    records = [f"SELECT * FROM '{runs[n]}/restricted/standardised.parquet'" for n in ("preset", "declared")]
    assert con.execute(f"SELECT count(*) FROM (({records[0]}) EXCEPT ALL ({records[1]}))").fetchall()[0][0] == 0
    # The same link rates by sex, date of birth present and age band: the breakdowns follow
    # the fields, not whether they came from the preset.
    bias = [f"SELECT * FROM '{runs[n]}/analyst/linkage_bias.parquet'"
            for n in ("preset", "declared")]
    breakdowns = {r[0] for r in con.execute(f"SELECT DISTINCT breakdown FROM ({bias[1]})").fetchall()}
    assert {"sex", "date_of_birth_present", "age_band"} <= breakdowns
    for one, other in (bias, bias[::-1]):
        assert con.execute(f"SELECT count(*) FROM (({one}) EXCEPT ALL ({other}))").fetchall()[0][0] == 0


# (Declared fields on Spark: tests/test_spark.py, where one JVM serves every Spark run.)


def test_the_schema_constants_are_the_presets():
    """``linkage.schema`` restates the justice preset for code that runs before a config is
    read: it must say what the preset file says."""
    from linkage.config import input_fields
    from linkage.schema import DATE_FIELDS, PERSON_FIELDS, STANDARD_COLUMNS
    from linkage.standardise.declared import declared_columns
    from linkage.standardise.presets import preset_fields

    fields = preset_fields("justice")
    assert tuple(input_fields(fields)) == PERSON_FIELDS
    derived = {"source_dataset": "VARCHAR", "record_id": "VARCHAR", **declared_columns(fields)}
    assert derived == STANDARD_COLUMNS
    dated = {n for n, f in fields.items() if "date" in (f.type, getattr(getattr(f, "of", None), "type", None))}
    assert dated == set(DATE_FIELDS)


def test_a_field_named_after_an_sql_keyword_is_refused_with_the_fix(tmp_path):
    """A birth-year column called ``by`` (RLdata's): Splink quotes the keyword inside its
    term-frequency table's name and fails; validate says so and how to rename the field,
    while the source's column keeps its name."""
    def config(field: str) -> str:
        return (f"job: x\nfields:\n  surname: {{type: name}}\n  {field}: {{type: number}}\n"
                f"sources: {{a: {{path: a.csv, record_id: id, columns: {{surname: s, {field}: by}}}}}}\n"
                f"model:\n  blocking_rules: [[surname]]\n  comparisons: [{{field: surname}}, {{field: {field}}}]\n"
                "  training: {prior: {matches_per_record: 0.1}, em_blocking_rules: [[surname]]}\n")
    path = tmp_path / "job.yaml"
    path.write_text(config("by"))
    result = cli("validate", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "fields.by: its column 'by' is an SQL keyword" in result.stderr
    assert "columns: {by_: by}" in result.stderr
    path.write_text(config("by_"))
    result = cli("validate", str(path))
    assert result.returncode == 0, result.stderr
