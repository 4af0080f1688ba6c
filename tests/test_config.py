"""Config error messages are a contract: every problem, with its key path and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from linkage.config import load_config, parse_config
from linkage.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _justice() -> dict:
    return yaml.safe_load((CONFIGS / "justice.yaml").read_text())


def _problems(raw: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return info.value.problems


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")) + sorted(
    p for p in (CONFIGS / "examples").glob("*.yaml") if not p.name.startswith("encode_")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    loaded = load_config(path)
    assert loaded.config.sources
    assert len(loaded.hash) == 64


def test_three_mistakes_are_all_reported(tmp_path):
    raw = _justice()
    raw["sources"]["prison"]["recordid"] = raw["sources"]["prison"].pop("record_id")
    raw["sources"]["libra"]["columns"]["date_of_birht"] = raw["sources"]["libra"]["columns"].pop("date_of_birth")
    raw["model"]["threshold"] = 1.5
    problems = _problems(raw, tmp_path)
    text = "\n".join(problems)
    assert "sources.prison.recordid: unknown key" in text
    assert "sources.prison.record_id: required key is missing" in text
    assert "sources.libra.columns.date_of_birht: 'date_of_birht' is not allowed here; did you mean 'date_of_birth'?" in text
    assert "model.threshold:" in text


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(colour="blue"), "colour: unknown key"),
        (lambda c: c.pop("model"), "model: required key is missing"),
        (lambda c: c["model"]["comparisons"][0]["levels"][0].update(exact="surnmae"), "did you mean 'surname'?"),
        (lambda c: c["model"]["comparisons"][0]["levels"].append({"jaro_winkler": "surname"}), "a jaro_winkler level needs 'threshold'"),
        (lambda c: c["model"]["comparisons"][0]["levels"].append({"exact": "surname", "overlap": "name_set"}), "a level needs exactly one of"),
        (lambda c: c["model"]["blocking_rules"].append(["postcodee"]), "did you mean 'postcode'?"),
        (lambda c: c["model"]["blocking_rules"].append({"block_on": ["year_of_birth"], "explode": ["name_set"]}), "every exploded column must also be in 'block_on'"),
        (lambda c: c["sources"]["pnc"]["carry"].update(surname="keep"), "sources.pnc.carry.surname: this column is the source's surname, an identifier"),
        (lambda c: c["sources"]["pnc"].update(format="xlsx"), "sources.pnc.format"),
        (lambda c: c["engine"].update(memory_limit="lots"), "memory_limit looks like"),
        (lambda c: c["model"]["comparisons"].append(c["model"]["comparisons"][0]), "the name 'name' is used twice"),
        (lambda c: c["sources"]["crest"].update(columns={"sex": "sex"}), "map at least one of first_name, surname or full_name"),
        (lambda c: c["sources"]["crest"].update(date_formats=["dd/mm/yyyy"]), "strptime pattern"),
        (lambda c: c["model"]["training"].update(em_blocking_rules=[]), "model.training.em_blocking_rules"),
        (lambda c: c["model"]["clustering"]["confirmed_forenames"]["forenames"].__setitem__(0, "frist_name"),
         "model.clustering.confirmed_forenames.forenames[0]: 'frist_name' is not allowed here; did you mean 'first_name'?"),
        (lambda c: c["model"]["clustering"]["conflict_columns"].append("pnc_kye"), "did you mean 'pnc_key'?"),
        (lambda c: c["model"]["clustering"]["ambiguity_vouch_columns"].append("postcdoe"),
         "model.clustering.ambiguity_vouch_columns[1]: 'postcdoe' is not allowed here; did you mean 'postcode'?"),
        (lambda c: c["model"]["deterministic_links"].append(c["model"]["deterministic_links"][0]),
         "each rule needs a name of its own"),
    ],
)
def test_each_mistake_names_its_key(tmp_path, mutate, expected):
    raw = _justice()
    mutate(raw)
    problems = _problems(raw, tmp_path)
    assert any(expected in p for p in problems), problems


def test_not_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3"):
        parse_config("job: x\nsources: [\n", tmp_path / "bad.yaml")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_relative_source_paths_resolve_against_data_dir(tmp_path):
    loaded = load_config(CONFIGS / "justice.yaml")
    assert loaded.source_path("pnc", tmp_path) == tmp_path / "pnc.csv"
    assert loaded.source_path("pnc", None) == CONFIGS / "pnc.csv"
