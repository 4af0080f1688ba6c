"""SQL over a source's raw rows joined to their crosswalk row and standardised record.

The analyst tables (``linkage.deidentify``) and the link-rate tables by group
(``linkage.bias``) are both built from this join, and read a source's event dates and the
ages at them the same way. Inside the join, ``raw`` is the extract's row (all text), ``x``
its crosswalk row and ``s`` its standardised record.
"""

from __future__ import annotations

from linkage.config import SourceConfig
from linkage.sources import lit, q

MAX_AGE = 120  # an age at an event beyond this is impossible


def source_join(name: str, src: SourceConfig) -> str:
    """FROM clause: a source's raw rows with their crosswalk row and standardised record."""
    return (
        f"FROM {q('raw_' + name)} raw "
        f"JOIN crosswalk x ON x.source_dataset = {lit(name)} AND x.record_id = trim(raw.{q(src.record_id)}) "
        f"JOIN nodes s ON s.node_id = x.node_id"
    )


def raw_date(src: SourceConfig, column: str) -> str:
    """SQL: the raw column as a date, read with the source's date formats (then ISO); null if unreadable."""
    formats = "[" + ", ".join(lit(f) for f in [*src.date_formats, "%Y-%m-%d"]) + "]"
    return f"try_strptime(nullif(trim(raw.{q(column)}), ''), {formats})"


def age_at(event: str) -> str:
    """SQL: the age in whole years of the standardised date of birth at the date ``event``."""
    return f"floor(datediff('month', s.date_of_birth, {event}) / 12)"
