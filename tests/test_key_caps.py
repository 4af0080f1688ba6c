"""max_records_per_key on blocking rules, through the CLI: a key value shared by more
records than the cap pairs none of them under that rule (block_on, where and explode
rules), the manifest counts what each cap left out, and bad caps are config errors."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.conftest import cli, febrl_config, febrl_slice, write_config

NO_DOB = "l.date_of_birth IS NULL OR r.date_of_birth IS NULL"


@pytest.fixture(scope="module")
def febrl(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("febrl3_caps")
    febrl_slice("dataset3.csv", out / "dataset3.csv", 1500, "r")
    return out


def _block_pairs(con, std: str, keys: list[str], cap: int, where: str = "") -> int:
    """Pairs the capped rule should make, counted independently of the job's SQL."""
    on = " AND ".join(f"l.{k} = r.{k}" for k in keys)
    small = (f"(SELECT * FROM {std} WHERE {' AND '.join(f'{k} IS NOT NULL' for k in keys)} "
             f"QUALIFY count(*) OVER (PARTITION BY {', '.join(keys)}) <= {cap})")
    return con.execute(f"SELECT count(*) FROM {small} l JOIN {small} r ON {on} AND l.record_id < r.record_id"
                       + (f" AND ({where})" if where else "")).fetchall()[0][0]


def test_capped_rules_drop_common_keys_and_count_them(tmp_path, febrl):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["model"]["blocking_rules"] = [
        ["soc_sec_id"],
        {"block_on": ["surname"], "max_records_per_key": 3},
        {"block_on": ["given_name"], "where": NO_DOB, "max_records_per_key": 4},
        {"block_on": ["postcode", "address_1_tokens"], "explode": ["address_1_tokens"], "max_records_per_key": 2},
    ]
    res = cli("run", str(write_config(tmp_path, raw)), "--data", str(febrl), "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    blocking = json.loads((run / "manifest.json").read_text())["blocking"]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE std AS SELECT * FROM '{run}/restricted/standardised.parquet'")
    # The saved model's capped rules join on these: they travel with the standardised records.
    assert len([c for c in con.sql("SELECT * FROM std LIMIT 0").columns if c.startswith("__lk_cap_")]) == 3

    surname, given, address = blocking[1], blocking[2], blocking[3]
    big = con.execute("SELECT count(*), sum(n) FROM (SELECT count(*) AS n FROM std WHERE surname IS NOT NULL "
                      "GROUP BY surname HAVING n > 3)").fetchall()[0]
    assert big[0] > 0  # the cap binds on this data
    assert (surname["key_cap"]["keys_dropped"], surname["key_cap"]["records_in_dropped_keys"]) == big
    assert surname["comparisons"] == _block_pairs(con, "std", ["surname"], 3)
    assert given["comparisons"] == _block_pairs(con, "std", ["given_name"], 4, NO_DOB) > 0
    assert given["key_cap"]["max_records_per_key"] == 4

    # Exploded: an element shared (with the postcode) by more than two records is left out.
    con.execute("CREATE TABLE el AS SELECT DISTINCT record_id, postcode, unnest(address_1_tokens) AS t FROM std")
    con.execute("CREATE TABLE small AS SELECT * FROM el WHERE postcode IS NOT NULL AND t IS NOT NULL "
                "QUALIFY count(*) OVER (PARTITION BY postcode, t) <= 2")
    dropped = con.execute("SELECT count(*) FROM (SELECT postcode, t FROM el WHERE postcode IS NOT NULL AND "
                          "t IS NOT NULL GROUP BY ALL HAVING count(*) > 2)").fetchall()[0][0]
    assert address["key_cap"]["keys_dropped"] == dropped > 0
    assert address["comparisons"] == con.execute(
        "SELECT count(*) FROM small l JOIN small r USING (postcode, t) WHERE l.record_id < r.record_id").fetchall()[0][0]

    # No scored pair comes from a dropped key alone: each agrees on some rule's small key.
    pairs = con.execute(f"SELECT record_id_l, record_id_r FROM '{run}/restricted/predictions.parquet'").fetchall()
    assert pairs
    con.execute("CREATE TABLE small_surname AS SELECT record_id FROM std QUALIFY count(*) OVER (PARTITION BY surname) <= 3")
    outside = con.execute(
        f"""SELECT count(*) FROM '{run}/restricted/predictions.parquet' p
        JOIN std l ON l.record_id = p.record_id_l JOIN std r ON r.record_id = p.record_id_r
        WHERE NOT (l.soc_sec_id = r.soc_sec_id)
          AND NOT (l.surname = r.surname AND l.record_id IN (SELECT record_id FROM small_surname))
          AND NOT (l.given_name = r.given_name AND ({NO_DOB}))
          AND NOT EXISTS (SELECT 1 FROM small a JOIN small b USING (postcode, t)
                          WHERE a.record_id = l.record_id AND b.record_id = r.record_id)"""
    ).fetchall()[0][0]
    assert outside == 0


def test_refined_caps_pair_common_keys_on_finer_keys(tmp_path, febrl):
    """A key over the cap pairs its records on the key plus each refine_capped_keys list, under
    the same cap; keys within the cap are paired by the first rule only."""
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["model"]["blocking_rules"] = [
        ["soc_sec_id"],
        {"block_on": ["surname"], "where": NO_DOB, "max_records_per_key": 3,
         "refine_capped_keys": [["state"], ["postcode"]]},
    ]
    res = cli("run", str(write_config(tmp_path, raw)), "--data", str(febrl), "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    blocking = json.loads((run / "manifest.json").read_text())["blocking"]
    assert len(blocking) == 4 and "only where surname is held by more" in blocking[2]["rule"]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE std AS SELECT * FROM '{run}/restricted/standardised.parquet'")
    con.execute("CREATE TABLE over AS SELECT * FROM std WHERE surname IS NOT NULL "
                "QUALIFY count(*) OVER (PARTITION BY surname) > 3")
    for entry, finer in [(blocking[2], "state"), (blocking[3], "postcode")]:
        expected = _block_pairs(con, "over", ["surname", finer], 3, NO_DOB)
        assert entry["comparisons"] == expected > 0, finer
        kept = con.execute(f"SELECT record_id FROM over WHERE {finer} IS NOT NULL "
                           f"QUALIFY count(*) OVER (PARTITION BY surname, {finer}) > 3").fetchall()
        assert entry["key_cap"]["records_in_dropped_keys"] == len(kept)
    # Every scored pair sharing a surname held by more than three records shares a finer key.
    outside = con.execute(
        f"""SELECT count(*) FROM '{run}/restricted/predictions.parquet' p
        JOIN over l ON l.record_id = p.record_id_l JOIN over r ON r.record_id = p.record_id_r
        WHERE l.surname = r.surname AND l.soc_sec_id IS DISTINCT FROM r.soc_sec_id
          AND l.state IS DISTINCT FROM r.state AND l.postcode IS DISTINCT FROM r.postcode"""
    ).fetchall()[0][0]
    assert outside == 0


@pytest.mark.parametrize(("rule", "field", "says"), [
    ({"block_on": ["surname"], "max_records_per_key": 1}, "model.blocking_rules[1].max_records_per_key",
     "greater than or equal to 2"),
    ({"sql": "l.surname = r.surname", "max_records_per_key": 50}, "model.blocking_rules[1]", "block_on"),
    ({"block_on": ["surname"], "where": "l.nickname IS NULL", "max_records_per_key": 50},
     "model.blocking_rules[1].where", "nickname"),
    ({"block_on": ["surname"], "refine_capped_keys": [["state"]]}, "model.blocking_rules[1]",
     "needs max_records_per_key"),
    ({"block_on": ["surname"], "max_records_per_key": 50, "refine_capped_keys": [["statee"]]},
     "model.blocking_rules[1].refine_capped_keys[0][0]", "statee"),
])
def test_bad_caps_are_config_errors(tmp_path, rule, field, says):
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    raw["model"]["blocking_rules"] = [["soc_sec_id"], rule]
    path = write_config(tmp_path, raw)
    res = cli("run", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert res.returncode == 1
    assert str(path.name) in res.stderr and field in res.stderr and says in res.stderr, res.stderr
