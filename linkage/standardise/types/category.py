"""``type: category``: a code from a short list (sex, state, ethnicity code...).

Upper case, spaces collapsed. With ``values`` (code -> the spellings that mean it, e.g.
``M: [M, MALE, MAN, 1]``) each spelling becomes its code and anything else is missing
(reason ``unrecognised``). Not identifying by default."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from linkage.standardise.justice import Step, _q
from linkage.standardise.types.base import CleanContext, FieldType


class CategoryType(FieldType):
    type: Literal["category"] = "category"
    values: dict[str, list[str]] = {}

    default_identifying: ClassVar[bool] = False

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        steps: list[Step] = [("t_c", f"trim(regexp_replace(upper({x}), '\\s+', ' ', 'g'))")]
        if self.values:
            cases = " ".join(
                f"WHEN t_c IN ({', '.join(_q(s.upper().strip()) for s in spellings)}) THEN {_q(code)}"
                for code, spellings in self.values.items()
            )
            steps.append(("t_m", f"CASE {cases} END"))
        else:
            steps.append(("t_m", "t_c"))
        unrecognised = " WHEN t_m IS NULL THEN 'unrecognised'" if self.values else ""
        steps += [
            ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL WHEN t_c = '' OR {self.placeholder_sql('t_c')}"
                    f" THEN 'placeholder'{unrecognised} END"),
            ("v", "CASE WHEN why IS NULL THEN t_m END"),
        ]
        return steps

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        return [{"exact": field}]
