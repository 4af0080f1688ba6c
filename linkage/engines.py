"""Where Splink scores pairs: DuckDB (embedded, the default) or Spark.

Reading, standardising, clustering and de-identifying always run on the job's DuckDB
database: they are linear in the records and DuckDB runs them out of core on one machine.
Training and predict, whose cost grows with the comparisons, run on the engine the config
names. This module is the whole seam: an engine gives Splink a database API over the
standardised records and hands the scored pairs back to DuckDB.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import duckdb
import psutil

from linkage.config import EngineConfig
from linkage.errors import LinkageError
from linkage.sources import lit

PREDICTION_COLUMNS = "node_id_l, node_id_r, match_weight, match_probability"


class Engine(Protocol):
    name: str
    dialect: str  # Splink's SQL dialect
    db_api: Any

    def register_nodes(self, con: duckdb.DuckDBPyConnection, table: str) -> Any:
        """The records Splink links, as the engine's registered table."""

    def import_predictions(self, con: duckdb.DuckDBPyConnection, scored: Any, table: str) -> None:
        """Copy Splink's scored pairs into a DuckDB table."""

    def close(self) -> None: ...


class DuckDBEngine:
    name = dialect = "duckdb"

    def __init__(self, db_api: Any):
        self.db_api = db_api  # the job's own DuckDB: Splink works in place

    def register_nodes(self, con, table):
        return self.db_api.register(table, dataset_display_name="records")

    def import_predictions(self, con, scored, table):
        # A view over Splink's table, not a copy: millions of rows at a million records.
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT {PREDICTION_COLUMNS} FROM {scored.physical_name}")

    def close(self) -> None:
        pass


class SparkEngine:
    """Splink on a Spark session: ``local[*]`` by default, or the cluster ``engine.spark_master`` names.

    Records go to Spark as Parquet written by DuckDB into ``exchange`` (on a cluster, a
    path every executor can read); scored pairs come back the same way.
    """

    name = dialect = "spark"

    def __init__(self, eng: EngineConfig, exchange: Path):
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise LinkageError(
                "engine.name is spark but pyspark is not installed: pip install -e '.[spark]' (and Java 17+)."
            ) from None
        if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
            raise LinkageError("engine.name is spark but no Java runtime was found: install Java 17+ or set JAVA_HOME.")
        from splink import SparkAPI
        from splink.backends.spark import similarity_jar_location

        self.exchange = exchange
        exchange.mkdir(parents=True, exist_ok=True)
        builder = (
            SparkSession.builder.master(eng.spark_master or f"local[{eng.threads or os.cpu_count() or 1}]")
            .appName("linkage")
            .config("spark.jars", similarity_jar_location())
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(eng.spark_shuffle_partitions))
            .config("spark.local.dir", str(exchange / "spark-local"))
            .config("spark.sql.warehouse.dir", str(exchange / "spark-warehouse"))  # not ./spark-warehouse
        )
        if eng.memory_limit:
            builder = builder.config("spark.driver.memory", eng.memory_limit.replace("iB", "").replace("B", "").lower())
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")
        self.spark.sparkContext.setCheckpointDir(str(exchange / "checkpoints"))
        self.db_api = SparkAPI(spark_session=self.spark, break_lineage_method="parquet")

    def register_nodes(self, con, table):
        path = self.exchange / f"{table}.parquet"
        con.execute(f"COPY (SELECT * FROM {table}) TO {lit(str(path))} (FORMAT parquet)")
        return self.db_api.register(self.spark.read.parquet(str(path)), dataset_display_name="records")

    def import_predictions(self, con, scored, table):
        path = self.exchange / f"{table}.parquet"
        scored.as_spark_dataframe().select(*PREDICTION_COLUMNS.split(", ")).write.mode("overwrite").parquet(str(path))
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet({lit(str(path / '*.parquet'))})")

    def close(self) -> None:
        self.spark.stop()


def configure_duckdb(con: duckdb.DuckDBPyConnection, eng: EngineConfig, work: Path) -> None:
    """The job's DuckDB settings: memory_limit (default 60% of the machine's memory), the
    spill folder (checked now, not at the first spill an hour in), its size cap, threads."""
    memory = eng.memory_limit or f"{int(psutil.virtual_memory().total * 0.6 / 2**20)}MiB"
    spill = spill_directory(eng, work)
    con.execute(f"SET memory_limit = {lit(memory)}")
    con.execute(f"SET temp_directory = {lit(str(spill))}")
    if eng.max_temp_directory_size:
        con.execute(f"SET max_temp_directory_size = {lit(eng.max_temp_directory_size)}")
    con.execute(f"SET threads = {eng.threads or os.cpu_count() or 1}")
    con.execute("SET enable_progress_bar = false")


def spill_directory(eng: EngineConfig, work: Path) -> Path:
    """Where DuckDB spills past memory_limit: engine.temp_directory, else the run's work
    folder; made and test-written here, so an unwritable folder fails before any work."""
    path = Path(eng.temp_directory).expanduser() if eng.temp_directory else work / "spill"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".linkage-write-check-{os.getpid()}"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as exc:
        setting = "engine.temp_directory" if eng.temp_directory else "engine.temp_directory (default: the run's work folder)"
        raise LinkageError(
            f"{setting}: DuckDB cannot write its spill files to {path} ({exc.strerror or exc}). "
            "Set engine.temp_directory to a writable folder on a disk with room for them."
        ) from None
    return path


def describe_out_of_memory(text: str) -> str:
    """The message for DuckDB's out-of-memory error: the spill space ran out, or the memory
    limit is below what the job's operators can spill within."""
    if "max_temp_directory_size" in text:
        return ("DuckDB's spill files filled the space allowed for them (engine.max_temp_directory_size, by "
                "default the free space on engine.temp_directory's disk). Set engine.temp_directory to a folder "
                "on a disk with more room, or raise engine.max_temp_directory_size.")
    return ("DuckDB ran out of memory: engine.memory_limit is below what the job can spill within. Raise "
            "engine.memory_limit (default 60% of the machine's memory), or set engine.threads lower (each "
            "thread holds its own buffers).")


def make_engine(eng: EngineConfig, con: duckdb.DuckDBPyConnection, work: Path, duckdb_api: Any) -> Engine:
    """The engine the config names; ``duckdb_api`` is the job's own Splink DuckDB API."""
    if eng.name == "spark":
        return SparkEngine(eng, work / "spark")
    return DuckDBEngine(duckdb_api)
