"""``type: identifier``: a reference number (National Insurance number, learner number,
social security number, a justice PNC ID or CRO number...).

Cleaning: case folded (``case``), spaces and punctuation removed (``keep_punctuation:
false``), then checked: a value that does not fully match ``pattern``, a placeholder
(``placeholders``, or one character repeated: ``0000000``) is missing with a reason. A
``check`` scheme validates and canonicalises: ``pnc`` (PNC ID, modulus-23 check letter:
the value is ``YYYY/NNNNNNNC`` and ``<field>_key`` compares two-digit year, serial and check
letter whatever the padding or century), ``cro`` (CRO and SF-CRO numbers, modulus 23).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from linkage.standardise.justice import Step, _cro_steps, _pnc_steps, _q
from linkage.standardise.types.base import CleanContext, FieldType, Key


class IdentifierType(FieldType):
    type: Literal["identifier"] = "identifier"
    pattern: str | None = None  # a regular expression the cleaned value must fully match
    case: Literal["upper", "lower", "keep"] = "upper"
    keep_punctuation: bool = False
    check: Literal["pnc", "cro"] | None = None

    @model_validator(mode="after")
    def _pattern_compiles(self) -> "IdentifierType":
        if self.pattern is not None:
            import re

            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression ({exc})") from None
        if self.check and (self.pattern or self.keep_punctuation or self.case != "upper"):
            raise ValueError("a check scheme sets the value's form: pattern, case and keep_punctuation do not apply")
        return self

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        if self.check == "pnc":
            yy = int(ctx.today_iso[2:4])
            return [*_pnc_steps(x, "t_o", yy), ("v", "t_o.pnc_id"), ("why", "t_o.reason")]
        if self.check == "cro":
            return [*_cro_steps(x, "t_o"), ("v", "t_o.cro_number"), ("why", "t_o.reason")]
        cased = {"upper": f"upper({x})", "lower": f"lower({x})", "keep": x}[self.case]
        compact = f"trim({cased})" if self.keep_punctuation else f"regexp_replace({cased}, '[^[:alnum:]]', '', 'g')"
        pattern = f"WHEN NOT regexp_full_match(t_c, {_q(self.pattern)}) THEN 'malformed'" if self.pattern else ""
        return [
            ("t_c", compact),
            ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL"
                    f" WHEN t_c = '' OR {self.placeholder_sql('t_c')}"
                    " OR (length(t_c) > 2 AND replace(t_c, left(t_c, 1), '') = '') THEN 'placeholder'"
                    f" {pattern} END"),
            ("v", "CASE WHEN why IS NULL THEN t_c END"),
        ]

    def keys(self) -> list[Key]:
        if self.check == "pnc":
            return [Key("key", "t_o.pnc_key", "VARCHAR")]
        return []

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        if self.check == "pnc":
            return [{"exact": f"{field}_key"}]
        if self.check:
            return [{"exact": field}]
        return [
            {"exact": field},
            {"damerau_levenshtein": field, "distance": 1, "label": "one character out"},
            {"damerau_levenshtein": field, "distance": 2, "label": "two characters out"},
        ]


