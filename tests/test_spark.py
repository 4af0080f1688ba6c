"""The same job on Spark: with the same saved model, Spark scores the same pairs as DuckDB.

Training on Spark costs minutes even on tiny data (hundreds of small Spark jobs), so the
contract is checked with a model trained on DuckDB: predict, and everything after it, must
agree. Skipped where pyspark or Java is missing.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from conftest import cli, config_variant

pytest.importorskip("pyspark")
if not shutil.which("java"):
    pytest.skip("no Java runtime for Spark", allow_module_level=True)


def test_spark_scores_the_same_pairs_as_duckdb(synth_dir, justice_run, tmp_path):
    duck, config = justice_run  # the justice job on DuckDB (read only here)

    spark_config = config_variant(
        config, tmp_path / "spark.yaml",
        lambda raw: raw.update(engine={"name": "spark", "threads": 2, "spark_shuffle_partitions": 4}),
    )
    spark = tmp_path / "spark"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = cli("run", str(spark_config), "--data", str(synth_dir), "--out", str(spark),
              "--model", str(duck / "restricted" / "model.json"), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert list(cwd.iterdir()) == []  # Spark's warehouse folder is not left where the command ran
    assert json.loads((spark / "manifest.json").read_text())["engine"] == "spark"

    con = duckdb.connect()
    pairs = (
        "SELECT least(source_dataset_l || '/' || record_id_l, source_dataset_r || '/' || record_id_r) AS a, "
        "greatest(source_dataset_l || '/' || record_id_l, source_dataset_r || '/' || record_id_r) AS b, "
        "match_weight FROM read_parquet('{}')"
    )
    con.execute(f"CREATE TABLE d AS {pairs.format(duck / 'restricted' / 'predictions.parquet')}")
    con.execute(f"CREATE TABLE s AS {pairs.format(spark / 'restricted' / 'predictions.parquet')}")
    only_d, only_s, n, worst = con.execute(
        "SELECT (SELECT count(*) FROM d ANTI JOIN s USING (a, b)), (SELECT count(*) FROM s ANTI JOIN d USING (a, b)), "
        "(SELECT count(*) FROM d), (SELECT max(abs(d.match_weight - s.match_weight)) FROM d JOIN s USING (a, b))"
    ).fetchall()[0]
    assert n > 1000
    assert only_d == 0 and only_s == 0
    assert worst < 1e-6
    # No pair is linked on one engine and not the other: its probability on either side of the
    # threshold (float noise there would show here, listed).
    threshold = json.loads((duck / "manifest.json").read_text())["model"]["threshold_match_probability"]
    con.execute(f"CREATE TABLE dp AS SELECT a, b, match_probability FROM ({pairs.format(duck / 'restricted' / 'predictions.parquet').replace('match_weight', 'match_probability')})")
    con.execute(f"CREATE TABLE sp AS SELECT a, b, match_probability FROM ({pairs.format(spark / 'restricted' / 'predictions.parquet').replace('match_weight', 'match_probability')})")
    flipped = con.execute(
        f"SELECT a, b, dp.match_probability, sp.match_probability FROM dp JOIN sp USING (a, b) "
        f"WHERE (dp.match_probability >= {threshold}) <> (sp.match_probability >= {threshold})"
    ).fetchall()
    assert flipped == [], f"pairs linked on one engine only: {flipped[:20]}"
    # The same people: the crosswalks partition the records alike (person ids map one to one).
    d_people, s_people, both = con.execute(
        f"SELECT count(DISTINCT d.person_id), count(DISTINCT s.person_id), count(DISTINCT (d.person_id, s.person_id)) "
        f"FROM '{duck}/restricted/crosswalk.parquet' d JOIN '{spark}/restricted/crosswalk.parquet' s "
        f"USING (source_dataset, record_id)"
    ).fetchall()[0]
    assert d_people == s_people == both
