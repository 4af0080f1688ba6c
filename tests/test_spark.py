"""The same job on Spark: with the same saved model, Spark scores the same pairs as DuckDB.

Training on Spark costs minutes even on tiny data (hundreds of small Spark jobs), so the
contract is checked with a model trained on DuckDB: predict, and everything after it, must
agree. Skipped where pyspark or Java is missing.

The Spark runs here are ``linkage run`` in the test process (``run_cli``, what the script
calls), so that one JVM serves them all: starting a JVM and warming it up is half of a
Spark run at this size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import TEST_KEY, cli, config_variant, febrl_config, febrl_slice, write_config

pytest.importorskip("pyspark")
if not shutil.which("java"):
    pytest.skip("no Java runtime for Spark", allow_module_level=True)


@pytest.fixture(scope="module")
def spark_cwd(tmp_path_factory):
    """The folder every Spark run here starts in. The JVM, started by the first of them,
    keeps it as its working folder: where Spark would leave a spark-warehouse folder. The
    JVM is stopped when the module is done."""
    yield tmp_path_factory.mktemp("spark_cwd")
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        gateway.proc.stdin.close()  # the JVM exits when its stdin closes
        gateway.proc.wait(timeout=120)
        SparkContext._gateway = SparkContext._jvm = None


def spark_run(spark_cwd: Path, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``linkage run ARGS`` in this process, started in ``spark_cwd``: its exit code and stderr."""
    from linkage.cli import run_cli

    monkeypatch.chdir(spark_cwd)
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", TEST_KEY)
    capsys.readouterr()
    code = run_cli(["run", *args])
    return code, capsys.readouterr().err


def test_spark_scores_the_same_pairs_as_duckdb(synth_dir, justice_run, tmp_path, spark_cwd, monkeypatch, capsys):
    duck, config = justice_run  # the justice job on DuckDB (read only here)

    spark_config = config_variant(
        config, tmp_path / "spark.yaml",
        lambda raw: raw.update(engine={"name": "spark", "threads": 2, "spark_shuffle_partitions": 4}),
    )
    spark = tmp_path / "spark"
    code, stderr = spark_run(spark_cwd, monkeypatch, capsys, str(spark_config), "--data", str(synth_dir),
                             "--out", str(spark), "--model", str(duck / "restricted" / "model.json"))
    assert code == 0, stderr
    assert list(spark_cwd.iterdir()) == []  # Spark's warehouse folder is not left where the command ran
    assert json.loads((spark / "manifest.json").read_text())["engine"] == "spark"
    assert "section-error" not in (spark / "report.html").read_text()  # every report section built

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



# --- declared fields on Spark ---------------------------------------------------------


@pytest.fixture(scope="module")
def febrl3(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("febrl3")
    febrl_slice("dataset3.csv", out / "dataset3.csv", 1500, "r")
    return out


def test_a_declared_fields_job_gives_the_same_clusters_on_spark(tmp_path, febrl3, spark_cwd, monkeypatch, capsys):
    """FEBRL3's declared fields (names, a date, an identifier, numbers, text with token
    arrays, a non-UK postcode, a category): Spark scores with DuckDB's model and clusters
    as DuckDB does."""
    raw = febrl_config(tmp_path, {"febrl3": ("dataset3.csv", {})})
    duck = tmp_path / "duck"
    res = cli("run", str(write_config(tmp_path, raw)), "--data", str(febrl3), "--out", str(duck))
    assert res.returncode == 0, res.stderr
    raw["engine"] = {"name": "spark", "threads": 2, "spark_shuffle_partitions": 4}
    # The saved model's prior as it is (the test above covers estimating it on Spark).
    raw["model"]["training"]["prior"]["with_saved_model"] = "keep"
    spark_config = tmp_path / "spark.yaml"
    spark_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    spark = tmp_path / "spark"
    code, stderr = spark_run(spark_cwd, monkeypatch, capsys, str(spark_config), "--data", str(febrl3),
                             "--out", str(spark), "--model", str(duck / "restricted" / "model.json"))
    assert code == 0, stderr
    assert list(spark_cwd.iterdir()) == []
    assert json.loads((spark / "manifest.json").read_text())["engine"] == "spark"

    def people(run: Path) -> set:
        rows = duckdb.sql(f"SELECT person_id, record_id FROM '{run}/restricted/crosswalk.parquet'").fetchall()
        out: dict[str, set] = {}
        for person, record in rows:
            out.setdefault(person, set()).add(record)
        return {frozenset(v) for v in out.values()}

    d, s = people(duck), people(spark)
    assert d == s and sum(len(p) > 1 for p in d) > 300
