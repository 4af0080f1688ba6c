"""``type: text``: free text such as an address line, a town, a place of birth, an occupation.

Cleaning: accents stripped (other scripts transliterated), upper case, every run of
characters other than letters and digits becomes one space. Key: ``<field>_tokens``
(the words, for an ``overlap`` level or a blocking rule that shares any word).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from linkage.standardise.sql import Step
from linkage.standardise.types.base import CleanContext, FieldType, Key, cleaned


class TextType(FieldType):
    type: Literal["text"] = "text"

    transliterate_raw: ClassVar[bool] = True

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        return cleaned(self, x, f"trim(regexp_replace(upper(strip_accents({x})), '[^A-Z0-9]+', ' ', 'g'))")

    def keys(self) -> list[Key]:
        return [Key("tokens", "CASE WHEN v IS NOT NULL THEN list_sort(list_distinct(string_split(v, ' '))) END", "VARCHAR[]")]

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        return [
            {"exact": field, "tf_adjustment": True},
            {"jaro_winkler": field, "threshold": 0.9},
            {"overlap": self.key_column(field, "tokens"), "label": "a word in common"},
        ]
