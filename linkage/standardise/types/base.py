"""What every field type provides: its options, its cleaning SQL, its derived keys.

A type cleans one distinct raw value at a time (the declared-field runner builds a
dictionary of distinct values, as the justice standardiser does): ``steps(x)`` is a stage
plan over the raw text column ``x`` that ends in two columns, ``v`` (the standardised
value, NULL when missing) and ``why`` (why a present value became missing, else NULL).
``keys()`` derives further columns from ``v``, named ``<field>_<suffix>``; keys that need
Python (phonetic codes) come from ``python_keys()``, computed over distinct values only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from linkage.standardise.sql import Step, q

# Whole values that mean "nothing here", whatever the type (compared upper-case, with
# everything but letters and digits removed).
COMMON_PLACEHOLDERS = ("", "NULL", "NONE", "NA", "NK", "UNKNOWN", "NOTKNOWN", "NOTRECORDED", "NOTENTERED")


@dataclass(frozen=True)
class Key:
    """A derived column: ``<field>_<suffix>``, of DuckDB type ``sql_type``, from SQL over ``v``."""

    suffix: str
    sql: str
    sql_type: str


class FieldType(BaseModel):
    """Options common to every type. Subclasses add their own and implement ``clean``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    # Whole values meaning "not known" in this field (compared after the type's cleaning,
    # upper-case, letters and digits only), beside the common ones (NULL, N/A, UNKNOWN...).
    placeholders: list[str] = []
    # Whether values of this field identify a person: they are kept for the leakage check
    # and never carried to analysts. Default: the type's (category and number: no).
    identifying: bool | None = None
    # What a derived key's column is called (default ``<field>_<suffix>``), or null: the key
    # is not made. ``{year: year_of_birth, text: null}``.
    key_names: dict[str, str | None] = {}

    value_type: ClassVar[str] = "VARCHAR"
    default_identifying: ClassVar[bool] = True
    # Raw values with characters outside ASCII are transliterated first (Python, distinct values).
    transliterate_raw: ClassVar[bool] = False

    @property
    def is_identifying(self) -> bool:
        return self.default_identifying if self.identifying is None else self.identifying

    @model_validator(mode="after")
    def _known_keys(self) -> "FieldType":
        known = self.key_suffixes()
        for suffix, column in self.key_names.items():
            if suffix not in known:
                raise ValueError(f"key_names: {suffix!r} is not a key of this type"
                                 f" (its keys: {', '.join(known) or 'none'})")
            if column is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", column):
                raise ValueError(f"key_names.{suffix}: column names use lower-case letters, digits and '_'")
        return self

    def key_suffixes(self) -> list[str]:
        """Every key the type can derive, made or not."""
        return [k.suffix for k in self.keys()] + list(self.python_keys())

    def key_column(self, field: str, suffix: str) -> str:
        """The column of key ``suffix`` of ``field`` (``<field>_<suffix>`` unless renamed)."""
        return self.key_names.get(suffix) or f"{field}_{suffix}"

    def made_keys(self) -> list[Key]:
        """The SQL keys this field makes (those ``key_names`` does not drop)."""
        return [k for k in self.keys() if self.key_names.get(k.suffix, "") is not None]

    def made_python_keys(self) -> dict[str, Callable[[Any], Any]]:
        return {s: fn for s, fn in self.python_keys().items() if self.key_names.get(s, "") is not None}

    def inputs(self, field: str) -> list[str]:
        """The fields a source maps for this one (a composite type has several; a derived one none)."""
        return [field]

    # -- what subclasses implement ------------------------------------------------------

    def clean(self, x: str, ctx: "CleanContext") -> list[Step]:
        """A stage plan over raw text ``x`` ending in ``v`` and ``why``."""
        raise NotImplementedError

    def keys(self) -> list[Key]:
        return []

    def python_keys(self) -> dict[str, Callable[[Any], Any]]:
        """suffix -> function of the standardised value (VARCHAR keys only)."""
        return {}

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        """The comparison levels of ``{field: NAME}`` without ``levels:``, most similar first."""
        return [{"exact": field, "tf_adjustment": True}]

    # -- shared pieces -------------------------------------------------------------------

    def placeholder_sql(self, c: str) -> str:
        """SQL: is the cleaned text ``c`` a placeholder?"""
        values = sorted({re.sub(r"[^A-Z0-9]", "", p.upper()) for p in (*COMMON_PLACEHOLDERS, *self.placeholders)})
        listed = "(" + ", ".join(q(v) for v in values) + ")"
        return f"(regexp_replace(upper({c}), '[^A-Z0-9]', '', 'g') IN {listed})"

    def column_names(self, field: str) -> dict[str, str]:
        """Every column this field adds to the records, with its DuckDB type."""
        out = {field: self.value_type}
        out.update({self.key_column(field, k.suffix): k.sql_type for k in self.made_keys()})
        out.update({self.key_column(field, s): "VARCHAR" for s in self.made_python_keys()})
        return out


@dataclass(frozen=True)
class CleanContext:
    """What cleaning may depend on beyond the value: the source's date formats, today."""

    date_formats: tuple[str, ...]
    today_iso: str


def cleaned(ftype: FieldType, x: str, cleaning: str, checks: tuple[tuple[str, str], ...] = ()) -> list[Step]:
    """The plan most types share: ``t_c`` is ``cleaning`` (SQL over ``x``); a blank or a
    placeholder is missing, then the first failing ``(condition over t_c, reason)``; else
    the value is ``t_c``."""
    failing = "".join(f" WHEN {condition} THEN {q(reason)}" for condition, reason in checks)
    return [
        ("t_c", cleaning),
        ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL WHEN t_c = '' OR {ftype.placeholder_sql('t_c')}"
                f" THEN 'placeholder'{failing} END"),
        ("v", "CASE WHEN why IS NULL THEN t_c END"),
    ]
