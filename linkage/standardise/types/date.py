"""``type: date``: a calendar date such as a date of birth.

Parsed with the field's ``formats`` (default: the source's ``date_formats``), tried in
order; a time part is ignored. Missing, with a reason: a placeholder (``N/A``,
``00/00/0000``: no letter and no digit but zero), text laid out like a format but no real
date (``impossible_date``: 31/02/1990), other text no format reads (``unparseable``), a
listed ``placeholder_dates`` value (``placeholder_date``: e.g. 1900-01-01 in justice
extracts), a date before ``earliest`` or after ``latest`` (default: today). Nothing else
is assumed: a date in 1850 is a date.

A date held in three columns (year, month and day, as in RLdata's ``by, bm, bd``) is one
field with ``parts`` (input field -> ``year``, ``month`` or ``day``): the source maps the
three inputs and the parts are read as ``year-month-day``; a date with one or two of its
parts missing is missing (``incomplete_date``).

Keys: ``<field>_text`` (``YYYYMMDD``; with ``unparseable: keep_text`` an unreadable value
keeps its digits, so a string comparison still sees a keying error), ``<field>_year``.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, ClassVar, Literal, NamedTuple

import duckdb
from pydantic import field_validator, model_validator

from collections.abc import Callable

from linkage.standardise.sql import Step, ident, install_macros, q, staged
from linkage.standardise.types.base import CleanContext, FieldType, Key


class DateType(FieldType):
    type: Literal["date"] = "date"
    formats: list[str] | None = None  # strptime formats; default: the source's date_formats
    earliest: _dt.date | None = None
    latest: _dt.date | Literal["today"] | None = "today"
    placeholder_dates: list[_dt.date] = []
    unparseable: Literal["drop", "keep_text"] = "keep_text"
    # A date in three columns: input field -> year, month or day (each once).
    parts: dict[str, Literal["year", "month", "day"]] = {}

    value_type: ClassVar[str] = "DATE"
    PARTS_FORMAT: ClassVar[str] = "%Y-%m-%d"

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not all("%" in f for f in v)):
            raise ValueError("formats is a non-empty list of strptime patterns such as '%d/%m/%Y'")
        return v

    @model_validator(mode="after")
    def _parts(self) -> "DateType":
        if self.parts:
            if sorted(self.parts.values()) != ["day", "month", "year"]:
                raise ValueError("parts: name three input fields, one each for year, month and day")
            if self.formats is not None:
                raise ValueError("formats: a date in parts is read as year, month and day; give no formats")
        return self

    def inputs(self, field: str) -> list[str]:
        return list(self.parts) or [field]

    def composed_sql(self, column: Callable[[str], str]) -> str:
        """SQL: the raw text of a date in parts, ``year-month-day`` (``column`` gives an
        input's SQL); NULL when every part is missing, a ``?`` for each missing one."""
        by_part = {part: f"trim(CAST({column(field)} AS VARCHAR))" for field, part in self.parts.items()}
        present = [f"lk_nz({by_part[p]}) IS NOT NULL" for p in ("year", "month", "day")]
        text = " || '-' || ".join(f"coalesce(lk_nz({by_part[p]}), '?')" for p in ("year", "month", "day"))
        return f"CASE WHEN {' OR '.join(present)} THEN {text} END"

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        formats = [self.PARTS_FORMAT] if self.parts else (self.formats or list(ctx.date_formats))
        fmts = "[" + ", ".join(q(f) for f in formats) + "]"
        latest = ctx.today_iso if self.latest == "today" else (self.latest.isoformat() if self.latest else None)
        rules = []
        incomplete = " WHEN t_c LIKE '%?%' THEN 'incomplete_date'" if self.parts else ""
        if self.placeholder_dates:
            listed = ", ".join(f"DATE {q(d.isoformat())}" for d in self.placeholder_dates)
            rules.append((f"t_d IN ({listed})", "placeholder_date"))
        if self.earliest:
            rules.append((f"t_d < DATE {q(self.earliest.isoformat())}", "before_earliest"))
        if latest:
            rules.append((f"t_d > DATE {q(latest)}", "after_latest"))
        out_of_range = " ".join(f"WHEN {cond} THEN {q(reason)}" for cond, reason in rules)
        return [
            ("t_c", f"lk__date_clean({x})"),
            ("t_d", f"CAST(try_strptime(t_c, {fmts}) AS DATE)"),
            ("t_ph", f"({self.placeholder_sql('t_c')} OR regexp_matches(t_c, '^[^A-Za-z1-9]*$'))"),
            ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL{incomplete} WHEN t_d IS NULL THEN"
                    f" CASE WHEN t_ph THEN 'placeholder' WHEN regexp_matches(t_c, {q(date_shape(formats))})"
                    f" THEN 'impossible_date' ELSE 'unparseable' END {out_of_range} END"),
            ("v", "CASE WHEN why IS NULL THEN t_d END"),
        ]

    def keys(self) -> list[Key]:
        keep = ("nullif(regexp_replace(t_c, '[^0-9]', '', 'g'), '')" if self.unparseable == "keep_text" else "NULL")
        return [
            Key("text", f"CASE WHEN v IS NOT NULL THEN strftime(v, '%Y%m%d')"
                        f" WHEN why IN ('unparseable', 'impossible_date') THEN {keep} END", "VARCHAR"),
            Key("year", "CAST(year(v) AS INTEGER)", "INTEGER"),
        ]

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        return [
            {"exact": self.key_column(field, "text")},
            {"damerau_levenshtein": self.key_column(field, "text"), "distance": 1, "label": "one character out"},
            {"date_within": field, "days": 31, "label": "within a month"},
            {"date_within": field, "days": 366, "label": "within a year"},
            {"date_within": field, "days": 3653, "label": "within ten years"},
        ]


# --------------------------------------------------------------------------------------
# The formats' layout, and the check of a date column before standardising
# --------------------------------------------------------------------------------------

_DIRECTIVE_SHAPES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "-m": r"\d{1,2}",
    "-d": r"\d{1,2}", "b": "[A-Za-z]{3}", "B": "[A-Za-z]+", "H": r"\d{1,2}", "M": r"\d{1,2}",
    "S": r"\d{1,2}", "j": r"\d{1,3}", "a": "[A-Za-z]+", "A": "[A-Za-z]+", "%": "%",
}  # fmt: skip


def date_shape(date_formats: list[str]) -> str:
    """A regex matching text laid out like one of the formats (digits in the right places):
    such text that does not parse is an impossible date (31/02/1990), not another layout."""
    shapes = []
    for fmt in date_formats:
        out, i = [], 0
        while i < len(fmt):
            ch = fmt[i]
            if ch == "%" and i + 1 < len(fmt):
                key = fmt[i + 1 : i + 3] if fmt[i + 1] == "-" else fmt[i + 1]
                out.append(_DIRECTIVE_SHAPES.get(key, ".+"))
                i += 1 + len(key)
            else:
                out.append(re.escape(ch))
                i += 1
        shapes.append("".join(out))
    return "^(" + "|".join(shapes) + ")$"


def check_date_formats(date_formats) -> list[str]:
    if isinstance(date_formats, str) or not date_formats:
        raise ValueError("date_formats must be a non-empty list of strptime formats")
    formats = [str(f) for f in date_formats]
    if not all(formats):
        raise ValueError("date_formats must not contain an empty format")
    return formats


class DateParseCheck(NamedTuple):
    """Result of :func:`date_parse_failures`: ``failed`` of ``present`` values fit no format."""

    failed: int
    present: int

    @property
    def share(self) -> float:
        return self.failed / self.present if self.present else 0.0


def date_parse_failures(
    con: duckdb.DuckDBPyConnection, table: str, column: str, date_formats: list[str]
) -> DateParseCheck:
    """Count the non-blank, non-placeholder values of ``table.column`` fitting none of the formats.

    Run it before standardising to catch a date column whose configured formats are wrong,
    e.g. ``check.share > 0.5`` -> "column X: most dates match none of the formats". Only
    counts come back, never values. Future and default dates are readable, so not failures.
    """
    sql = f"""
        SELECT coalesce(sum(n) FILTER (WHERE unreadable), 0),
               coalesce(sum(n) FILTER (WHERE reason IS DISTINCT FROM 'placeholder'), 0)
        FROM ({_date_check_sql(con, table, column, date_formats)})
    """
    failed, present = con.execute(sql).fetchall()[0]
    return DateParseCheck(int(failed), int(present))


def date_parse_failure_keys(
    con: duckdb.DuckDBPyConnection, table: str, column: str, date_formats: list[str], key: str, limit: int
) -> list:
    """The first ``limit`` values of ``table.key`` (ordered) whose ``column`` counts as a
    failure in :func:`date_parse_failures`: the rows to name in an error message."""
    bad = f"SELECT x FROM ({_date_check_sql(con, table, column, date_formats)}) WHERE unreadable"
    sql = (
        f"SELECT {ident(key)} FROM {table} WHERE CAST({ident(column)} AS VARCHAR) IN ({bad}) "
        f"ORDER BY 1 LIMIT {int(limit)}"
    )
    return [r[0] for r in con.execute(sql).fetchall()]


def _date_check_sql(con, table: str, column: str, date_formats: list[str]) -> str:
    """SQL: (x, n, reason, unreadable) per distinct non-blank value x of ``table.column``
    (n rows): the date stage plan runs once per distinct value."""
    formats = check_date_formats(date_formats)
    install_macros(con)
    src = f"SELECT CAST({ident(column)} AS VARCHAR) AS x, count(*) AS n FROM {table} GROUP BY 1"
    plan = DateType(formats=formats, latest=None).clean("x", CleanContext(tuple(formats), "9999-12-31"))
    return (
        f"SELECT x, n, why AS reason, why IN ('unparseable', 'impossible_date') AS unreadable "
        f"FROM ({staged(src, plan)}) WHERE lk_nz(x) IS NOT NULL"
    )
