"""The run directory a report is written from: its manifest, evaluation and review
estimates, and a DuckDB connection that reads its Parquet files."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from linkage.sources import lit


@dataclass
class Run:
    dir: Path
    manifest: dict[str, Any]
    evaluation: dict[str, Any] | None
    review: dict[str, Any] | None
    con: duckdb.DuckDBPyConnection

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def has(self, *parts: str) -> bool:
        return self.path(*parts).is_file()

    def parquet(self, name: str) -> str:
        """``read_parquet('restricted/<name>.parquet')`` for a FROM clause."""
        return f"read_parquet({lit(str(self.path('restricted', name + '.parquet')))})"

    def sql(self, query: str) -> list[tuple]:
        return self.con.execute(query).fetchall()

    @property
    def threshold(self) -> float:
        return float(self.manifest.get("model", {}).get("threshold_match_probability", 0.5))

    @property
    def sources(self) -> list[str]:
        return list(self.manifest.get("inputs", {}))


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def weight_of(probability: float) -> float:
    """Splink's match weight for a match probability: log2 of the odds."""
    if probability >= 1:
        return math.inf
    if probability <= 0:
        return -math.inf
    return math.log2(probability / (1 - probability))
