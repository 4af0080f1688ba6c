"""``type: postcode``: a UK postcode (``country: uk``) or any other country's (``other``).

UK: ``AB1 2CD`` form; no-fixed-abode (``NF1 1NF``) and ``ZZ99`` pseudo-postcodes missing;
an outward code alone leaves the postcode missing but keeps the district. Keys:
``<field>_sector`` (``AB1 2``), ``<field>_district`` (``AB1``), ``<field>_area`` (``AB``).

Other countries: upper case, spaces collapsed, no validation (an Australian ``2119`` or a
Dutch ``1012 AB`` stays as it is). No keys.
"""

from __future__ import annotations

from typing import Any, Literal

from linkage.standardise.sql import Step, evaluate, qlist, register_macros
from linkage.standardise.types.base import CleanContext, FieldType, Key, cleaned

NO_FIXED_ABODE_POSTCODES = ("NF1 1NF", "NF1 1FA")

register_macros([
    # ---- postcode AB1 2CD; an O typed for the inward code's zero is mended
    (
        "lk__pc_compact",
        "x",
        r"regexp_replace(lk__compact(x), '^([A-Z]{1,2}\d[A-Z\d]?)O([A-Z]{2})$', '\10\2')",
    ),
    (
        "lk__pc_make",
        "pc, district, reason",
        "struct_pack(postcode := CAST(pc AS VARCHAR),"
        " postcode_district := CAST(district AS VARCHAR),"
        " postcode_area := CAST(regexp_extract(district, '^[A-Z]+') AS VARCHAR),"
        " reason := CAST(reason AS VARCHAR))",
    ),
    (
        "lk__pc_outward",
        "o, pc",
        "CASE WHEN o = 'NF1' THEN lk__pc_make(NULL, NULL, 'no_fixed_abode')"
        " WHEN o LIKE 'ZZ%' THEN lk__pc_make(NULL, NULL, 'pseudo_postcode')"
        " WHEN pc IN " + qlist(NO_FIXED_ABODE_POSTCODES) + " THEN lk__pc_make(NULL, NULL, 'no_fixed_abode')"
        " WHEN pc IS NULL THEN lk__pc_make(NULL, o, 'outward_only')"
        " ELSE lk__pc_make(pc, o, NULL) END",
    ),
    (
        "lk__pc_result",
        "x, c",
        r"""CASE
          WHEN lk_nz(x) IS NULL THEN lk__pc_make(NULL, NULL, NULL)
          WHEN regexp_matches(c, '^[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}$')
            THEN lk__pc_outward(left(c, length(c) - 3), left(c, length(c) - 3) || ' ' || right(c, 3))
          WHEN regexp_matches(c, '^[A-Z]{1,2}\d[A-Z\d]?$') THEN lk__pc_outward(c, NULL)
          WHEN lk_is_placeholder(x) THEN lk__pc_make(NULL, NULL, 'placeholder')
          ELSE lk__pc_make(NULL, NULL, 'malformed')
        END""",
    ),
])  # fmt: skip


def postcode_steps(x: str, o: str) -> list[Step]:
    """-> ``o``: struct(postcode, postcode_district, postcode_area, reason)."""
    return [(f"{o}__c", f"lk__pc_compact({x})"), (o, f"lk__pc_result({x}, {o}__c)")]


class PostcodeType(FieldType):
    type: Literal["postcode"] = "postcode"
    country: Literal["uk", "other"] = "uk"

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        if self.country == "uk":
            return [*postcode_steps(x, "t_o"), ("v", "t_o.postcode"), ("why", "t_o.reason")]
        return cleaned(self, x, f"trim(regexp_replace(upper({x}), '\\s+', ' ', 'g'))")

    def keys(self) -> list[Key]:
        if self.country != "uk":
            return []
        return [
            Key("sector", "CASE WHEN v IS NOT NULL THEN left(v, length(v) - 2) END", "VARCHAR"),
            Key("district", "t_o.postcode_district", "VARCHAR"),
            Key("area", "t_o.postcode_area", "VARCHAR"),
        ]

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        if self.country == "uk":
            return [
                {"exact": field, "tf_adjustment": True},
                {"exact": self.key_column(field, "sector"), "label": "same sector"},
                {"exact": self.key_column(field, "district"), "label": "same district"},
                {"exact": self.key_column(field, "area"), "label": "same area"},
            ]
        return [
            {"exact": field, "tf_adjustment": True},
            {"damerau_levenshtein": field, "distance": 1, "label": "one character out"},
        ]


def canonical_postcode(text) -> str | None:
    """``AB1 2CD`` or None (no-fixed-abode and ZZ99 pseudo-postcodes are None).

    >>> canonical_postcode("sw1a1aa"), canonical_postcode("NF1 1NF")
    ('SW1A 1AA', None)
    """
    return evaluate(postcode_steps("x", "z"), "z.postcode", text)


def postcode_parts(text) -> tuple[str | None, str | None, str | None]:
    """(postcode, district, area); an outward code alone gives (None, district, area)."""
    row = evaluate(postcode_steps("x", "z"), "z", text)
    return (row["postcode"], row["postcode_district"], row["postcode_area"])
