"""``type: email``: an email address, lower case; one that is not ``user@domain.tld`` is
missing (reason ``malformed``). Keys: ``<field>_user``, ``<field>_domain``."""

from __future__ import annotations

from typing import Any, Literal

from linkage.standardise.sql import Step
from linkage.standardise.types.base import CleanContext, FieldType, Key, cleaned


class EmailType(FieldType):
    type: Literal["email"] = "email"

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        return cleaned(self, x, f"lower(trim({x}))",
                       (("NOT regexp_full_match(t_c, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')", "malformed"),))

    def keys(self) -> list[Key]:
        return [
            Key("user", "split_part(v, '@', 1)", "VARCHAR"),
            Key("domain", "split_part(v, '@', 2)", "VARCHAR"),
        ]

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        return [
            {"exact": field, "tf_adjustment": True},
            {"exact": self.key_column(field, "user"), "label": "same user name"},
            {"jaro_winkler": field, "threshold": 0.88},
        ]
