"""``type: date``: a calendar date such as a date of birth.

Parsed with the field's ``formats`` (default: the source's ``date_formats``), tried in
order; a time part is ignored. Missing, with a reason: text no format reads
(``unparseable``), a listed ``placeholder_dates`` value (``placeholder_date``: e.g.
1900-01-01 in justice extracts), a date before ``earliest`` or after ``latest``
(default: today). Nothing else is assumed: a date in 1850 is a date.

Keys: ``<field>_text`` (``YYYYMMDD``; with ``unparseable: keep_text`` an unreadable value
keeps its digits, so a string comparison still sees a keying error), ``<field>_year``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar, Literal

from pydantic import field_validator

from linkage.standardise.justice import Step, _q
from linkage.standardise.types.base import CleanContext, FieldType, Key


class DateType(FieldType):
    type: Literal["date"] = "date"
    formats: list[str] | None = None  # strptime formats; default: the source's date_formats
    earliest: _dt.date | None = None
    latest: _dt.date | Literal["today"] | None = "today"
    placeholder_dates: list[_dt.date] = []
    unparseable: Literal["drop", "keep_text"] = "keep_text"

    value_type: ClassVar[str] = "DATE"

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not all("%" in f for f in v)):
            raise ValueError("formats is a non-empty list of strptime patterns such as '%d/%m/%Y'")
        return v

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        formats = self.formats or list(ctx.date_formats)
        fmts = "[" + ", ".join(_q(f) for f in formats) + "]"
        latest = ctx.today_iso if self.latest == "today" else (self.latest.isoformat() if self.latest else None)
        rules = []
        if self.placeholder_dates:
            listed = ", ".join(f"DATE {_q(d.isoformat())}" for d in self.placeholder_dates)
            rules.append((f"t_d IN ({listed})", "placeholder_date"))
        if self.earliest:
            rules.append((f"t_d < DATE {_q(self.earliest.isoformat())}", "before_earliest"))
        if latest:
            rules.append((f"t_d > DATE {_q(latest)}", "after_latest"))
        out_of_range = " ".join(f"WHEN {cond} THEN {_q(reason)}" for cond, reason in rules)
        return [
            ("t_c", f"lk__date_clean({x})"),
            ("t_d", f"CAST(try_strptime(t_c, {fmts}) AS DATE)"),
            ("t_ph", self.placeholder_sql("t_c")),
            ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL WHEN t_d IS NULL THEN"
                    f" CASE WHEN t_ph THEN 'placeholder' ELSE 'unparseable' END {out_of_range} END"),
            ("v", "CASE WHEN why IS NULL THEN t_d END"),
        ]

    def keys(self) -> list[Key]:
        keep = "nullif(regexp_replace(t_c, '[^0-9]', '', 'g'), '')" if self.unparseable == "keep_text" else "NULL"
        return [
            Key("text", f"CASE WHEN v IS NOT NULL THEN strftime(v, '%Y%m%d')"
                        f" WHEN why = 'unparseable' THEN {keep} END", "VARCHAR"),
            Key("year", "CAST(year(v) AS INTEGER)", "INTEGER"),
        ]

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        return [
            {"exact": f"{field}_text"},
            {"damerau_levenshtein": f"{field}_text", "distance": 1, "label": "one character out"},
            {"date_within": field, "days": 31, "label": "within a month"},
            {"date_within": field, "days": 366, "label": "within a year"},
            {"date_within": field, "days": 3653, "label": "within ten years"},
        ]
