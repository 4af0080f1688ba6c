"""The model module: the blocking guard's counts and message, and the saved model's form."""

from __future__ import annotations

import itertools
import json

import duckdb
import pytest
import yaml

from conftest import cli, fast_config
from linkage.config import ExplodeRule
from linkage.errors import LinkageError
from linkage.model import RUN_IDS, SAVED_IDS, RuleCount, count_comparisons, guard_comparisons

# (source_dataset, record_id, surname, year_of_birth, name_set): two records of one source
# share an id, as records of different sources may.
RECORDS = [
    ("pnc", "1", "SMITH", 1980, ["JOHN", "SMITH"]),
    ("pnc", "2", "SMITH", 1980, ["JON", "SMITH", "SMITH"]),  # a repeated name is one block entry
    ("libra", "1", "SMITH", 1981, ["JOHN", "SMITH"]),
    ("libra", "2", "JONES", 1980, ["JOHN", "JONES"]),
    ("crest", "9", None, 1980, ["SMITH"]),  # no surname: in no surname block
    ("crest", "10", "JONES", None, None),
]


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE records (source_dataset VARCHAR, record_id VARCHAR, surname VARCHAR, "
        "year_of_birth INTEGER, name_set VARCHAR[])"
    )
    con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", RECORDS)
    return con


def brute_force(rule) -> int:
    """Pairs of records agreeing on the rule, counted one pair at a time (each pair once)."""
    cols = {"surname": 2, "year_of_birth": 3, "name_set": 4}
    keys = list(rule.block_on if isinstance(rule, ExplodeRule) else rule)
    exploded = set(rule.explode) if isinstance(rule, ExplodeRule) else set()

    def key_sets(rec):
        parts = [set(rec[cols[k]] or []) if k in exploded else {rec[cols[k]]} for k in keys]
        return {combo for combo in itertools.product(*parts) if None not in combo}

    # A pair is counted once per shared key combination, as Splink's exploding join does
    # before it removes duplicate pairs; the guard counts the same (an upper bound).
    return sum(len(key_sets(a) & key_sets(b)) for a, b in itertools.combinations(RECORDS, 2))


@pytest.mark.parametrize(
    "rule",
    [
        ["surname"],
        ["surname", "year_of_birth"],
        ExplodeRule(block_on=["name_set"], explode=["name_set"]),
        ExplodeRule(block_on=["name_set", "year_of_birth"], explode=["name_set"]),
    ],
    ids=["surname", "surname+year", "explode names", "explode names+year"],
)
def test_count_comparisons_matches_brute_force(con, rule):
    (count,) = count_comparisons(con, "records", [rule])
    assert count.comparisons == brute_force(rule)
    assert [n for _, n in count.largest_blocks] == sorted((n for _, n in count.largest_blocks), reverse=True)


def test_guard_names_the_largest_rule_and_its_count():
    counts = [RuleCount("pnc_key", 10, [("pnc_key", 3)]), RuleCount("sex", 1_234_567, [("sex", 1500), ("sex", 1400)])]
    assert guard_comparisons(counts, 2e6) == 1_234_577
    with pytest.raises(LinkageError, match=r"1,234,577 comparisons, over model.max_comparisons \(1,000,000\)") as err:
        guard_comparisons(counts, 1e6)
    assert "the rule on sex with 1,234,567 (largest blocks: 1500, 1400 records)" in str(err.value)


def test_a_rule_over_max_comparisons_stops_the_run_before_predict(synth_dir, tmp_path):
    path = fast_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["blocking_rules"].append(["sex"])  # two blocks of thousands of records
    raw["model"]["max_comparisons"] = 1_000_000
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "run"
    res = cli("run", str(path), "--data", str(synth_dir), "--out", str(out))
    assert res.returncode == 1, res.stderr
    message = " ".join(res.stderr.split())
    assert "over model.max_comparisons (1,000,000)" in message
    assert "The largest is the rule on sex with" in message
    assert "Make that rule stricter, or raise max_comparisons" in message
    assert "predict" not in res.stderr and not out.exists()


def test_saved_model_is_portable_and_loads_for_the_job(synth_dir, tmp_path):
    """The job scores numbered records; the model it saves is Splink's usual link_and_dedupe form."""
    from linkage.config import load_config
    from linkage.model import build_settings, load_model_settings

    path = fast_config(tmp_path)
    out = tmp_path / "run"
    assert cli("run", str(path), "--data", str(synth_dir), "--out", str(out)).returncode == 0
    saved = json.loads((out / "restricted" / "model.json").read_text())
    assert {k: saved[k] for k in SAVED_IDS} == SAVED_IDS
    cfg = load_config(path).config
    loaded = load_model_settings(out / "restricted" / "model.json", cfg)
    # The job rebuilds the comparisons for its engine and applies the saved parameters.
    rebuilt = build_settings(cfg, "duckdb", loaded).get_settings("duckdb").as_dict()
    assert {k: rebuilt[k] for k in RUN_IDS} == RUN_IDS
    assert rebuilt["probability_two_random_records_match"] == saved["probability_two_random_records_match"]
    for mine, theirs in zip(rebuilt["comparisons"], saved["comparisons"]):
        for a, b in zip(mine["comparison_levels"][1:], theirs["comparison_levels"][1:]):
            assert (a.get("m_probability"), a.get("u_probability")) == (b.get("m_probability"), b.get("u_probability"))


def test_deterministic_groups_over_the_cap_are_not_linked():
    """A reference number shared by more records than max_group_size is a placeholder."""
    import duckdb

    from linkage.cluster import build_links
    from linkage.config import DeterministicLink

    con = duckdb.connect()
    con.execute("CREATE TABLE nodes AS SELECT i AS node_id, CASE WHEN i <= 3 THEN 'A' ELSE 'DUMMY' END AS pnc_key "
                "FROM range(1, 11) t(i)")
    con.execute("CREATE TABLE predictions (node_id_l BIGINT, node_id_r BIGINT, match_weight DOUBLE, match_probability DOUBLE)")
    oversized, _ = build_links(con, "predictions", 0.9, [DeterministicLink(name="pnc", columns=["pnc_key"], max_group_size=5)])
    assert oversized == {"pnc": {"groups": 1, "records": 7}}
    assert sorted(con.execute("SELECT node_id_l, node_id_r FROM links").fetchall()) == [(1, 2), (1, 3)]


def test_unless_equal_keeps_a_plain_match_out_of_an_alias_level():
    """An alias level with ``unless_equal`` fires on a shared alias, not on equal names."""
    from linkage.config import ComparisonConfig
    from linkage.model import build_comparison

    comp = ComparisonConfig(
        name="name", null_when_missing=["name_set"],
        levels=[{"overlap": "name_set", "unless_equal": "full_name", "label": "alias"}],
    )
    alias = build_comparison(comp).get_comparison("duckdb").comparison_levels[1]
    assert alias.label_for_charts == "alias"
    pairs = [  # (full_name_l, full_name_r, name_set_l, name_set_r, expected)
        ("JOHN SMITH", "JOHN SMITH", ["JOHN SMITH"], ["JOHN SMITH"], False),  # plain match
        ("JOHN SMITH", "JON SMYTH", ["JOHN SMITH", "JON SMYTH"], ["JON SMYTH"], True),  # via an alias
        (None, "JON SMYTH", ["JON SMYTH"], ["JON SMYTH"], True),  # no primary name on one side
        ("JOHN SMITH", "ANN JONES", ["JOHN SMITH"], ["ANN JONES"], False),
    ]
    con = duckdb.connect()
    for fl, fr, sl, sr, expected in pairs:
        got = con.execute(
            f"SELECT coalesce(({alias.sql_condition}), false) FROM (SELECT ?::VARCHAR AS full_name_l, "
            "?::VARCHAR AS full_name_r, ?::VARCHAR[] AS name_set_l, ?::VARCHAR[] AS name_set_r)",
            [fl, fr, sl, sr],
        ).fetchall()[0][0]
        assert got is expected, (fl, fr)


def test_an_exact_level_weighed_below_a_fuzzier_one_is_warned_of():
    """RLdata10000's model, as EM on exact names trains it: an exact first name weighs
    5.6 bits, Jaro-Winkler 0.92 7.8. The run warns, naming the comparison and the level;
    a model whose exact levels weigh most does not, and a swap level (other evidence, not a
    grade of similarity) weighing more than exact is no cause."""
    from pathlib import Path

    from linkage.config import load_config
    from linkage.model import weaker_exact_levels

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs/examples/rldata10000.yaml").config

    def model(first_exact: tuple[float, float]) -> dict:
        comparisons = []
        for comp in cfg.model.comparisons:
            n = len(comp.levels)
            params = [{"m_probability": 0.9 / 2 ** i, "u_probability": 0.001 * 4 ** i,
                       "label_for_charts": f"level {i}"} for i in range(n)]
            if comp.name == "fname_c1":
                params[0].update(m_probability=first_exact[0], u_probability=first_exact[1])
                params[1].update(m_probability=0.549, u_probability=0.00242)
            comparisons.append({"comparison_levels": [{"is_null_level": True}, *params, {}]})
        return {"comparisons": comparisons}

    warnings = weaker_exact_levels(cfg, model((0.448, 0.00927)))
    assert len(warnings) == 1
    assert "'fname_c1' weighs an exact agreement at 5.6 bits" in warnings[0] and "at 7.8" in warnings[0]
    assert "model.training.em_blocking_rules" in warnings[0]
    assert weaker_exact_levels(cfg, model((0.9, 0.0005))) == []
    justice = load_config(Path(__file__).resolve().parent.parent / "configs/justice.yaml").config
    surname = next(c for c in justice.model.comparisons if c.name == "surname")
    swap = [lv.kind for lv in surname.levels].index("sql")  # forename and surname swapped
    params = [{"m_probability": 0.5, "u_probability": 0.01 * (i + 1)} for i in range(len(surname.levels))]
    params[swap] = {"m_probability": 0.01, "u_probability": 1e-6}
    comps = [{"comparison_levels": [{}, *(params if c is surname else []), {}]} for c in justice.model.comparisons]
    assert weaker_exact_levels(justice, {"comparisons": comps}) == []
