"""The justice preset in Python: one-value helpers and a table standardiser, both running
the preset's field declarations (``linkage/presets/justice.yaml``) through the field types.

Nothing justice-specific is decided here: each helper evaluates one of the preset's fields
on one value, through the same stage plans the job runs over tables, so a Python answer
always equals the pipeline's.

    >>> split_full_name("MORGAN, Arthur James")
    ('ARTHUR', 'JAMES', 'MORGAN')
    >>> split_full_name("Mr Arthur MORGAN")
    ('ARTHUR', None, 'MORGAN')
    >>> clean_name("O'Connor-Mc Donald")
    'OCONNOR MCDONALD'
    >>> canonical_forename("Bill")
    'WILLIAM'
    >>> canonical_sex("Female"), canonical_sex("Not Known / Not Recorded")
    ('F', None)
    >>> canonical_prison_number(" a1234bc "), canonical_crn("x123456")
    ('A1234BC', 'X123456')
"""

from __future__ import annotations

# Before the split, field type modules took these from here: kept, and first, so that such
# a module still imports while this one is loading.
from linkage.standardise.sql import Step, q as _q  # noqa: F401, I001

import dataclasses
import datetime as _dt
from typing import Any

import duckdb

from linkage.errors import InputError
from linkage.standardise.declared import declared_columns, input_fields, standardise_fields
from linkage.standardise.presets import preset_fields
from linkage.standardise.sql import VARIANTS_TABLE, evaluate, ident
from linkage.standardise.types import CleanContext, FieldType, PersonNameType
from linkage.standardise.types import name_cleaning as nc
from linkage.standardise.types.date import check_date_formats


def _fields() -> dict[str, FieldType]:
    return preset_fields("justice")


INPUT_COLUMNS: tuple[str, ...] = ("source_dataset", "record_id", *input_fields(_fields()))
OUTPUT_COLUMNS: tuple[str, ...] = ("source_dataset", "record_id", *declared_columns(_fields()))
INVALID_COLUMNS = ("source_dataset", "record_id", "field", "reason", "raw_value")


# --------------------------------------------------------------------------------------
# One value through one of the preset's fields
# --------------------------------------------------------------------------------------


def field_value(field: str, text, out: str = "v", *, date_formats=("%Y-%m-%d",), today: _dt.date | None = None) -> Any:
    """``out`` (``v`` the value, ``why`` the reason, or SQL over the plan's columns) of the
    preset's ``field`` cleaning one raw value."""
    ftype = _fields()[field]
    element = getattr(ftype, "of", ftype)
    ctx = CleanContext(tuple(check_date_formats(date_formats)), (today or _dt.date.today()).isoformat())
    steps = element.clean("x", ctx) + [(f"key_{k.suffix}", k.sql) for k in element.keys()]
    return evaluate(steps, out, text)


def _name_plan(kind: str, text, out: str) -> Any:
    person = _fields()["name"]
    assert isinstance(person, PersonNameType)
    lx = person.lexicon
    plan = {"forenames": nc.forenames_steps, "surname": nc.surname_steps, "full": nc.full_name_steps}[kind]
    return evaluate(plan(lx, "x", "z"), out.replace("@S@", lx.suffix), text, setup=nc.lexicon_macros(lx))


def clean_name(text) -> str | None:
    """Upper-case A-Z and single spaces; placeholders, titles, prefixes removed; None if
    nothing is left.

    >>> clean_name("MIG_ERROR_Zoë"), clean_name("NOT ENTERED")
    ('ZOE', None)
    """
    return _name_plan("forenames", text, "z")


def clean_surname(text) -> str | None:
    """:func:`clean_name` plus ``O CONNOR`` -> ``OCONNOR``; organisations are None."""
    return _name_plan("surname", text, "z")


def split_full_name(text) -> tuple[str | None, str | None, str | None]:
    """(first, middle names, surname) of a single-string name in any court style.

    >>> split_full_name("MORGAN Arthur")
    ('ARTHUR', None, 'MORGAN')
    """
    row = _name_plan("full", text, "z")
    return (row["first"], row["middle"], row["surname"])


def canonical_forename(text) -> str | None:
    """The canonical form of a first name (nickname or spelling variant resolved).

    >>> canonical_forename("muhammad"), canonical_forename("Zebedee")
    ('MOHAMMED', 'ZEBEDEE')
    """
    first = "split_part(z, ' ', 1)"
    return _name_plan("forenames", text,
                      f"coalesce((SELECT v.canonical FROM {VARIANTS_TABLE} v WHERE v.name = {first}), {first})")


def canonical_sex(text) -> str | None:
    """``M``, ``F`` or None."""
    return field_value("sex", text)


def canonical_prison_number(text) -> str | None:
    """``A1234BC`` or None."""
    return field_value("prison_number", text)


def canonical_crn(text) -> str | None:
    """``X123456`` or None."""
    return field_value("crn", text)


def canonical_date_of_birth(text, date_formats: list[str], *, today: _dt.date | None = None) -> _dt.date | None:
    """A valid date of birth, or None (unreadable, impossible, future, before 1900, default).

    >>> canonical_date_of_birth("01/02/1990", ["%d/%m/%Y"])
    datetime.date(1990, 2, 1)
    """
    return field_value("date_of_birth", text, date_formats=date_formats, today=today)


def date_of_birth_reason(text, date_formats: list[str], *, today: _dt.date | None = None) -> str | None:
    """Why a present date of birth is made missing (``impossible_date``, ``after_latest``...)."""
    return field_value("date_of_birth", text, "why", date_formats=date_formats, today=today)


# --------------------------------------------------------------------------------------
# A table of person records
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class StandardiseStats:
    """Counts from :func:`standardise_table`; no values, so safe to log and report.

    ``invalid``: field -> reason -> number of values present but made missing.
    ``dates_present`` / ``unreadable_dates``: non-blank, non-placeholder primary dates of
    birth, and how many of those fitted none of the formats (``unparseable`` or
    ``impossible_date``).
    """

    rows: int
    invalid: dict[str, dict[str, int]]
    dates_present: int = 0
    unreadable_dates: int = 0

    @property
    def unreadable_date_share(self) -> float:
        return self.unreadable_dates / self.dates_present if self.dates_present else 0.0


def standardise_table(
    con: duckdb.DuckDBPyConnection,
    source_table: str,
    out_table: str,
    *,
    date_formats: list[str],
    list_separator: str = ";",
    today: _dt.date | None = None,
    keep_raw_values: bool = False,
) -> StandardiseStats:
    """Standardise ``source_table`` (the columns :data:`INPUT_COLUMNS`, any type) with the
    justice preset's fields into ``out_table`` (:data:`OUTPUT_COLUMNS`, one row per input
    row) and ``{out_table}_invalid`` (:data:`INVALID_COLUMNS`: one row per value present but
    made missing); with ``keep_raw_values``, ``{out_table}_raw_values(field, v)`` too."""
    formats = check_date_formats(date_formats)
    if not isinstance(list_separator, str) or not list_separator:
        raise ValueError("list_separator must be a non-empty string")
    try:
        columns = {r[0].lower() for r in con.execute(f"DESCRIBE {source_table}").fetchall()}
    except duckdb.Error as exc:  # the message names the table, never a value
        raise InputError(f"standardise: table {source_table} cannot be read ({type(exc).__name__})") from None
    missing = [c for c in INPUT_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"standardise: table {source_table} lacks column(s) {', '.join(missing)}"
                         f" (has: {', '.join(sorted(columns))})")
    result = standardise_fields(con, source_table, out_table, dict(_fields()), date_formats=formats,
                                list_separator=list_separator, today=today)
    if not keep_raw_values:
        con.execute(f"DROP TABLE IF EXISTS {out_table}_raw_values")
    rows, dates = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE lk_nz(CAST({ident('date_of_birth')} AS VARCHAR)) IS NOT NULL) "
        f"FROM {source_table}").fetchall()[0]
    dob = result.invalid.get("date_of_birth", {})
    return StandardiseStats(int(rows), result.invalid, int(dates) - dob.get("placeholder", 0),
                            dob.get("unparseable", 0) + dob.get("impossible_date", 0))
