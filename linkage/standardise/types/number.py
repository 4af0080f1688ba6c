"""``type: number``: a quantity or a house number. Spaces and thousands separators are
dropped; a value that is not a number is missing (reason ``not_a_number``). Stored as
DOUBLE. Not identifying by default (``identifying: true`` to change that)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from linkage.standardise.sql import Step
from linkage.standardise.types.base import CleanContext, FieldType


class NumberType(FieldType):
    type: Literal["number"] = "number"

    value_type: ClassVar[str] = "DOUBLE"
    default_identifying: ClassVar[bool] = False

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        return [
            ("t_c", f"regexp_replace(trim({x}), '[\\s,_]', '', 'g')"),
            ("t_n", "TRY_CAST(t_c AS DOUBLE)"),
            ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL WHEN {self.placeholder_sql('t_c')} THEN 'placeholder'"
                    " WHEN t_n IS NULL OR isnan(t_n) OR isinf(t_n) THEN 'not_a_number' END"),
            ("v", "CASE WHEN why IS NULL THEN t_n END"),
        ]

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        return [{"exact": field, "tf_adjustment": True}]
