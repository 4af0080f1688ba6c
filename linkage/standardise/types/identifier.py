"""``type: identifier``: a reference number (National Insurance number, learner number,
social security number, a justice PNC ID or CRO number...).

Cleaning: case folded (``case``), spaces and punctuation removed (``keep_punctuation:
false``), then checked: a value that does not fully match ``pattern``, a placeholder
(``placeholders``, or one character repeated: ``0000000``) is missing with a reason. A
``check`` scheme validates and canonicalises: ``pnc`` (PNC ID, modulus-23 check letter:
the value is ``YYYY/NNNNNNNC`` and ``<field>_key`` compares two-digit year, serial and check
letter whatever the padding or century), ``cro`` (CRO and SF-CRO numbers, modulus 23),
``nino`` (National Insurance number: two prefix letters, six digits, an optional suffix
A-D, HMRC's National Insurance Manual NIM39110; prefixes never issued are ``not_issued``,
temporary ``TN`` numbers ``temporary``, the administrative numbers that look like NINOs
(``OO``, ``CR``, ``FY``, ``MW``, ``NC``, ``PP``, ``PY``, ``PZ``) ``administrative``, and a
dummy number ``placeholder``: six digits ``123456``, the digits of every published example,
``AB123456C`` on HMRC's forms, ``QQ123456A`` in the manual, or one digit six times, as
``000000``, ``AA999999A`` or the pension schemes' ``PP999999P``; ``<field>_key`` is the
prefix and digits, so a missing or different suffix still agrees),
``uln`` (unique learner number: ten digits, the first not zero, the digits weighted 10 to
1 summing to 10 modulo 11; one digit repeated, as the learner record's 9999999999 for "no
ULN yet", is a placeholder).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from linkage.standardise.sql import Step, q
from linkage.standardise.types.checks import cro_steps, pnc_steps
from linkage.standardise.types.base import CleanContext, FieldType, Key


# NINO prefixes never issued (NIM39110; TN, the temporary numbers, has its own reason), and
# the administrative prefixes HMRC and DWP put on reference numbers that look like NINOs but
# are none (NIM39110: OO tax credits pending a NINO, CR account investigations, FY attendance
# allowance, MW migrant workers 1980-87, NC and PP pension schemes' dummies, PY and PZ
# tax-only accounts). Dummy digits: one digit six times, or the 123456 of every example.
NINO_NOT_ISSUED = ("BG", "GB", "KN", "NK", "NT", "ZZ")
NINO_ADMINISTRATIVE = ("OO", "CR", "FY", "MW", "NC", "PP", "PY", "PZ")
NINO_DUMMY_DIGITS = "|".join([*(str(d) * 6 for d in range(10)), "123456"])


class IdentifierType(FieldType):
    type: Literal["identifier"] = "identifier"
    pattern: str | None = None  # a regular expression the cleaned value must fully match
    case: Literal["upper", "lower", "keep"] = "upper"
    keep_punctuation: bool = False
    check: Literal["pnc", "cro", "nino", "uln"] | None = None

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
            return [*pnc_steps(x, "t_o", yy), ("v", "t_o.pnc_id"), ("why", "t_o.reason")]
        if self.check == "cro":
            return [*cro_steps(x, "t_o"), ("v", "t_o.cro_number"), ("why", "t_o.reason")]
        if self.check == "nino":
            return [
                ("t_c", f"regexp_replace(upper({x}), '[^A-Z0-9]', '', 'g')"),
                ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL"
                        f" WHEN t_c = '' OR {self.placeholder_sql('t_c')} THEN 'placeholder'"
                        " WHEN left(t_c, 2) = 'TN' THEN 'temporary'"
                        f" WHEN left(t_c, 2) IN {NINO_ADMINISTRATIVE} AND regexp_full_match(t_c, '[A-Z]{{2}}[0-9]{{6}}[A-Z]?')"
                        " THEN 'administrative'"
                        " WHEN NOT regexp_full_match(t_c, '[A-Z]{2}[0-9]{6}[A-D]?') THEN 'malformed'"
                        f" WHEN regexp_full_match(substr(t_c, 3, 6), {q(NINO_DUMMY_DIGITS)}) THEN 'placeholder'"
                        " WHEN regexp_matches(left(t_c, 1), '[DFIQUV]') OR regexp_matches(substr(t_c, 2, 1), '[DFIOQUV]')"
                        f" OR left(t_c, 2) IN {NINO_NOT_ISSUED} THEN 'not_issued' END"),
                ("v", "CASE WHEN why IS NULL THEN t_c END"),
            ]
        if self.check == "uln":
            weighted = "list_sum(list_transform(range(10), lambda i: CAST(substr(t_c, i + 1, 1) AS INTEGER) * (10 - i)))"
            return [
                ("t_c", f"regexp_replace({x}, '[\\s-]', '', 'g')"),
                ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL"
                        f" WHEN t_c = '' OR {self.placeholder_sql('t_c')}"
                        # one digit repeated: 9999999999 is the learner record's "no ULN yet"
                        " OR (length(t_c) > 2 AND replace(t_c, left(t_c, 1), '') = '') THEN 'placeholder'"
                        " WHEN NOT regexp_full_match(t_c, '[1-9][0-9]{9}') THEN 'malformed'"
                        f" WHEN {weighted} % 11 <> 10 THEN 'bad_check_digit' END"),
                ("v", "CASE WHEN why IS NULL THEN t_c END"),
            ]
        cased = {"upper": f"upper({x})", "lower": f"lower({x})", "keep": x}[self.case]
        compact = f"trim({cased})" if self.keep_punctuation else f"regexp_replace({cased}, '[^[:alnum:]]', '', 'g')"
        pattern = f"WHEN NOT regexp_full_match(t_c, {q(self.pattern)}) THEN 'malformed'" if self.pattern else ""
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
        if self.check == "nino":
            return [Key("key", "left(v, 8)", "VARCHAR")]
        return []

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        if self.check in ("pnc", "nino"):
            return [{"exact": self.key_column(field, "key")}]
        if self.check:
            return [{"exact": field}]
        return [
            {"exact": field},
            {"damerau_levenshtein": field, "distance": 1, "label": "one character out"},
            {"damerau_levenshtein": field, "distance": 2, "label": "two characters out"},
        ]


