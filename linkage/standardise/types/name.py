"""``type: name``: a person's name, or one part of it.

Cleaning: characters outside ASCII are transliterated (``Владимир`` -> ``VLADIMIR``,
``王小明`` -> ``WANGXIAOMING``; accents stripped), apostrophes dropped, every other
non-letter becomes a space, upper case, leading titles (``MR``, ``DR``...) removed when a
name follows. A value with no letters left is missing (reason ``no_letters``).

Keys: ``<field>_metaphone`` (phonetic, spaces ignored); with ``nicknames: true``,
``<field>_canonical`` (``BILL`` -> ``WILLIAM``, ``MUHAMMAD`` -> ``MOHAMMED``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from linkage.standardise.sql import VARIANTS_TABLE, Step, alt
from linkage.standardise.types.name_cleaning import TITLES, metaphone
from linkage.standardise.types.base import CleanContext, FieldType, Key


class NameType(FieldType):
    type: Literal["name"] = "name"
    nicknames: bool = False  # add <field>_canonical: nicknames and spelling variants resolved
    titles: bool = True  # drop leading titles (MR, MRS, DR...) when a name follows
    phonetic: bool = True  # add <field>_metaphone

    transliterate_raw: ClassVar[bool] = True

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        steps: list[Step] = [
            ("t_ch", f"lk__name_chars({x})"),
            ("t_p", "trim(regexp_replace(regexp_replace(upper(t_ch), '[''’‘`´ʼʻ]', '', 'g'), '[^A-Z]+', ' ', 'g'))"),
        ]
        if self.titles:
            steps.append(("t_n", f"CASE WHEN regexp_matches(t_p, ' ') THEN regexp_replace(t_p, '^(({alt(TITLES)}) )+', '') ELSE t_p END"))
        else:
            steps.append(("t_n", "t_p"))
        steps += [
            ("v", f"CASE WHEN t_n = '' OR {self.placeholder_sql('t_n')} THEN NULL ELSE t_n END"),
            ("why", f"CASE WHEN lk_nz({x}) IS NOT NULL AND v IS NULL THEN"
                    " CASE WHEN t_n = '' THEN 'no_letters' ELSE 'placeholder' END END"),
        ]
        return steps

    def keys(self) -> list[Key]:
        if not self.nicknames:
            return []
        return [Key("canonical", f"coalesce((SELECT nv.canonical FROM {VARIANTS_TABLE} nv WHERE nv.name = v), v)", "VARCHAR")]

    def python_keys(self) -> dict[str, Callable[[Any], Any]]:
        return {"metaphone": metaphone} if self.phonetic else {}

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        levels: list[dict[str, Any]] = [
            {"exact": field, "tf_adjustment": True},
            {"jaro_winkler": field, "threshold": 0.92},
            {"jaro_winkler": field, "threshold": 0.88},
        ]
        if self.nicknames:
            levels.append({"exact": self.key_column(field, "canonical"), "label": "same name or nickname"})
        if self.phonetic:
            levels.append({"exact": self.key_column(field, "metaphone"), "label": "sounds alike"})
        levels.append({"jaro_winkler": field, "threshold": 0.7})
        return levels
