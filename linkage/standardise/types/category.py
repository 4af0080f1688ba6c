"""``type: category``: a code from a short list (sex, state, ethnicity code...).

Upper case, spaces collapsed. With ``values`` (code -> the spellings that mean it, e.g.
``M: [M, MALE, MAN, 1]``, compared on letters and digits only, so ``M.`` is ``M``) each
spelling becomes its code and anything else is missing (reason ``unrecognised``); list the
codes meaning "not known" under ``placeholders``. Not identifying by default."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from linkage.standardise.sql import Step, q
from linkage.standardise.types.base import CleanContext, FieldType


def _compact(spelling: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", spelling.upper())


class CategoryType(FieldType):
    type: Literal["category"] = "category"
    values: dict[str, list[str]] = {}

    default_identifying: ClassVar[bool] = False

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        steps: list[Step] = [("t_c", f"trim(regexp_replace(upper({x}), '\\s+', ' ', 'g'))")]
        if self.values:
            cases = " ".join(
                f"WHEN t_k IN ({', '.join(q(_compact(s)) for s in spellings)}) THEN {q(code)}"
                for code, spellings in self.values.items()
            )
            steps += [("t_k", "regexp_replace(t_c, '[^A-Z0-9]', '', 'g')"), ("t_m", f"CASE {cases} END")]
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
