"""``type: postcode``: a UK postcode (``country: uk``) or any other country's (``other``).

UK: ``AB1 2CD`` form; no-fixed-abode (``NF1 1NF``) and ``ZZ99`` pseudo-postcodes missing;
an outward code alone leaves the postcode missing but keeps the district. Keys:
``<field>_sector`` (``AB1 2``), ``<field>_district`` (``AB1``), ``<field>_area`` (``AB``).

Other countries: upper case, spaces collapsed, no validation (an Australian ``2119`` or a
Dutch ``1012 AB`` stays as it is). No keys.
"""

from __future__ import annotations

from typing import Any, Literal

from linkage.standardise.justice import Step, _postcode_steps
from linkage.standardise.types.base import CleanContext, FieldType, Key, cleaned


class PostcodeType(FieldType):
    type: Literal["postcode"] = "postcode"
    country: Literal["uk", "other"] = "uk"

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        if self.country == "uk":
            return [*_postcode_steps(x, "t_o"), ("v", "t_o.postcode"), ("why", "t_o.reason")]
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
                {"exact": f"{field}_sector", "label": "same sector"},
                {"exact": f"{field}_district", "label": "same district"},
                {"exact": f"{field}_area", "label": "same area"},
            ]
        return [
            {"exact": field, "tf_adjustment": True},
            {"damerau_levenshtein": field, "distance": 1, "label": "one character out"},
        ]
