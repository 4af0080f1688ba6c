"""The justice check schemes of ``type: identifier``: PNC IDs and CRO / SF-CRO numbers.

Both carry a modulus-23 check letter (alphabet ``ZABCDEFGHJKLMNPQRTUVWXY``):

* **PNC ID** ``YYYY/NNNNNNNC``: the letter checks the two-digit year and the 7-digit
  serial. It is compared on ``pnc_key`` = two-digit year + serial + check letter
  (``020073319Z``), so the century and the padding never cause a false disagreement. Short
  forms take the century ``20`` when their year is at most the current year's two digits,
  else ``19``. Known dummy PNCs (:data:`DUMMY_PNC_KEYS`) are missing (reason ``dummy``).
* **CRO number** ``NNNNNN/YYC`` (the letter checks year and 6-digit serial) and **SF-CRO**
  ``SFYY/NNNNNC`` (year and 5-digit serial).

A value is upper-cased; spaces and dots dropped; a dash before the check letter dropped;
other dashes, underscores and backslashes act as the slash. Reasons: ``placeholder``,
``malformed``, ``no_check_letter``, ``bad_check_letter``, ``bad_year``, ``dummy``, and a
valid number of the other scheme in the field (``cro_in_pnc_field``, ``pnc_in_cro_field``)
or a date (``date_in_pnc_field``...).

    >>> canonical_pnc("03/11985x")
    '2003/0011985X'
    >>> canonical_cro("65656/91H")
    '065656/91H'
    >>> canonical_pnc("1933/0993399H") is None      # a known dummy PNC
    True
"""

from __future__ import annotations

import datetime as _dt

from linkage.standardise.sql import Step, evaluate, q, qlist, register_macros, run

CHECK_ALPHABET = "ZABCDEFGHJKLMNPQRTUVWXY"

# Dummy PNCs seen in live data (ministryofjustice/hmpps-person-match-score,
# standardisation_functions.py: 1933/0993399H, 2033/0993399H, 2003/0993399B, 1999/0339933H,
# 2003/0993399H), held as pnc_key so every written form of them is caught.
DUMMY_PNC_KEYS = (
    "330993399H", "030993399B", "990339933H", "030993399H",
    # all-nines, one and zero serials: pass the check letter, never issued to a person
    "999999999V", "000000001A",
)

_TEMPLATES = [
    (
        "lk_check_letter",
        "n",
        f"substr({q(CHECK_ALPHABET)}, 1 + CAST(n % 23 AS INTEGER), 1)",
    ),
    # ---- reference numbers: upper case; spaces and dots dropped; a dash before the check
    # letter dropped; other dashes, underscores and backslashes act as the slash
    (
        "lk_ref_prep",
        "x",
        r"regexp_replace(regexp_replace(regexp_replace(upper(x),"
        r" '[\s\x{00A0}\x{FEFF}.]', '', 'g'), '[-_\\]+([A-Z])$', '\1'), '[-_\\/]+', '/', 'g')",
    ),
    # ---- CRO: NNNNNN/YYC (check over YY + 6-digit serial), SFYY/NNNNNC (YY + 5 digits)
    ("lk__cro_norm", "r", r"regexp_replace(r, '^SF(\d{2})(\d{5}[A-Z])$', 'SF\1/\2')"),
    # m: regexp_extract(p, _CRO_REGEX, _CRO_GROUPS), a struct of strings ('' when no match)
    (
        "lk__cro_parts",
        "m",
        """CASE WHEN m.chk <> '' THEN struct_pack(
            sf := m.sfyy <> '', yy := TRY_CAST(m.sfyy || m.yy AS INTEGER),
            serial := TRY_CAST(m.sfserial || m.serial AS BIGINT), check_letter := m.chk) END""",
    ),
    (
        "lk__cro_check_ok",
        "s",
        "coalesce(s.check_letter = lk_check_letter("
        "s.yy * CASE WHEN s.sf THEN 100000 ELSE 1000000 END + s.serial), false)",
    ),
    ("lk__cro_ok", "s", "coalesce(s.serial > 0 AND lk__cro_check_ok(s), false)"),
    (
        "lk__cro_canonical",
        "s",
        "CASE WHEN s.sf THEN 'SF' || lpad(CAST(s.yy AS VARCHAR), 2, '0') || '/'"
        " || lpad(CAST(s.serial AS VARCHAR), 5, '0') || s.check_letter"
        " ELSE lpad(CAST(s.serial AS VARCHAR), 6, '0') || '/'"
        " || lpad(CAST(s.yy AS VARCHAR), 2, '0') || s.check_letter END",
    ),
    # ---- PNC: YYYY/NNNNNNNC; check over YY + 7-digit serial
    ("lk__pnc_norm", "r", r"regexp_replace(r, '^(\d{4}|\d{2})(\d{7}[A-Z])$', '\1/\2')"),
    # m: regexp_extract(p, _PNC_REGEX, _PNC_GROUPS), a struct of strings ('' when no match)
    (
        "lk__pnc_parts",
        "m",
        """CASE WHEN m.chk <> '' THEN struct_pack(
            yy := TRY_CAST(m.yy AS INTEGER), century := TRY_CAST(m.century AS INTEGER),
            serial := TRY_CAST(m.serial AS BIGINT), check_letter := m.chk) END""",
    ),
    (
        "lk__pnc_key",
        "s",
        "lpad(CAST(s.yy AS VARCHAR), 2, '0') || lpad(CAST(s.serial AS VARCHAR), 7, '0')"
        " || s.check_letter",
    ),
    (
        "lk__pnc_check_ok",
        "s",
        "coalesce(s.check_letter = lk_check_letter(s.yy * 10000000 + s.serial), false)",
    ),
    (
        "lk__pnc_year",
        "s, cur_yy",
        "coalesce(s.century * 100 + s.yy,"
        " CASE WHEN s.yy <= cur_yy THEN 2000 + s.yy ELSE 1900 + s.yy END)",
    ),
    (
        "lk__pnc_reason",
        "x, r, s, cro_s, cur_yy",
        r"""CASE
          WHEN lk_nz(x) IS NULL THEN NULL
          WHEN s IS NULL THEN CASE
            WHEN lk_is_placeholder(x) THEN 'placeholder'
            WHEN lk__cro_ok(cro_s) THEN 'cro_in_pnc_field'
            WHEN regexp_matches(r, '^(\d{2}|\d{4})/?\d{1,7}$') THEN 'no_check_letter'
            WHEN lk_is_date_like(x) THEN 'date_in_pnc_field'
            ELSE 'malformed' END
          WHEN lk__pnc_key(s) IN @DUMMY_PNC_KEYS@ THEN 'dummy'
          WHEN s.serial = 0 THEN 'placeholder'
          WHEN NOT lk__pnc_check_ok(s)
               OR (s.century IS NOT NULL
                   AND (s.century NOT IN (19, 20) OR s.century * 100 + s.yy > 2000 + cur_yy))
            THEN CASE WHEN lk__cro_ok(cro_s) THEN 'cro_in_pnc_field'
                      WHEN NOT lk__pnc_check_ok(s) THEN 'bad_check_letter'
                      ELSE 'bad_year' END
        END""",
    ),
    (
        "lk__pnc_result",
        "x, s, reason, cur_yy",
        "CASE WHEN lk_nz(x) IS NOT NULL AND reason IS NULL THEN struct_pack("
        " pnc_id := lpad(CAST(lk__pnc_year(s, cur_yy) AS VARCHAR), 4, '0') || '/'"
        "   || lpad(CAST(s.serial AS VARCHAR), 7, '0') || s.check_letter,"
        " pnc_key := lk__pnc_key(s), reason := CAST(NULL AS VARCHAR))"
        " ELSE struct_pack(pnc_id := CAST(NULL AS VARCHAR), pnc_key := CAST(NULL AS VARCHAR),"
        " reason := CAST(reason AS VARCHAR)) END",
    ),
    (
        "lk__cro_reason",
        "x, r, s, pnc_s",
        r"""CASE
          WHEN lk_nz(x) IS NULL THEN NULL
          WHEN s IS NULL THEN CASE
            WHEN lk_is_placeholder(x) THEN 'placeholder'
            WHEN lk__pnc_check_ok(pnc_s) THEN 'pnc_in_cro_field'
            WHEN regexp_matches(r, '^(\d{1,6}/\d{2}|SF\d{2}/?\d{1,5})$') THEN 'no_check_letter'
            WHEN lk_is_date_like(x) THEN 'date_in_cro_field'
            ELSE 'malformed' END
          WHEN s.serial = 0 THEN 'placeholder'
          WHEN NOT lk__cro_check_ok(s) THEN CASE
            WHEN lk__pnc_check_ok(pnc_s) THEN 'pnc_in_cro_field'
            ELSE 'bad_check_letter' END
        END""",
    ),
    (
        "lk__cro_result",
        "x, s, reason",
        "CASE WHEN lk_nz(x) IS NOT NULL AND reason IS NULL THEN struct_pack("
        " cro_number := lk__cro_canonical(s), reason := CAST(NULL AS VARCHAR))"
        " ELSE struct_pack(cro_number := CAST(NULL AS VARCHAR),"
        " reason := CAST(reason AS VARCHAR)) END",
    ),
] # fmt: skip
register_macros([(n, p, b.replace("@DUMMY_PNC_KEYS@", qlist(DUMMY_PNC_KEYS))) for n, p, b in _TEMPLATES])


def pnc_steps(x: str, o: str, cur_yy: int) -> list[Step]:
    """-> ``o``: struct(pnc_id, pnc_key, reason)."""
    return [
        (f"{o}__r", f"lk_ref_prep({x})"),
        (f"{o}__p", f"lk__pnc_norm({o}__r)"),
        (f"{o}__m", _PNC_MATCH.format(p=f"{o}__p")),
        (f"{o}__s", f"lk__pnc_parts({o}__m)"),
        (
            f"{o}__cs",
            f"CASE WHEN NOT lk__pnc_check_ok({o}__s) OR {o}__s.century NOT IN (19, 20) THEN"
            f" lk__cro_parts({_CRO_MATCH.format(p=f'lk__cro_norm({o}__r)')}) END",
        ),
        (f"{o}__why", f"lk__pnc_reason({x}, {o}__r, {o}__s, {o}__cs, {cur_yy})"),
        (o, f"lk__pnc_result({x}, {o}__s, {o}__why, {cur_yy})"),
    ]


def cro_steps(x: str, o: str) -> list[Step]:
    """-> ``o``: struct(cro_number, reason)."""
    return [
        (f"{o}__r", f"lk_ref_prep({x})"),
        (f"{o}__p", f"lk__cro_norm({o}__r)"),
        (f"{o}__m", _CRO_MATCH.format(p=f"{o}__p")),
        (f"{o}__s", f"lk__cro_parts({o}__m)"),
        (
            f"{o}__ps",
            f"CASE WHEN NOT lk__cro_ok({o}__s) THEN"
            f" lk__pnc_parts({_PNC_MATCH.format(p=f'lk__pnc_norm({o}__r)')}) END",
        ),
        (f"{o}__why", f"lk__cro_reason({x}, {o}__r, {o}__s, {o}__ps)"),
        (o, f"lk__cro_result({x}, {o}__s, {o}__why)"),
    ]


_PNC_MATCH = (
    r"regexp_extract({p}, '^(\d\d)?(\d\d)/(\d{{1,7}})([A-Z])$', ['century', 'yy', 'serial', 'chk'])"
)
_CRO_MATCH = (
    r"regexp_extract({p}, '^(?:SF(\d\d)/(\d{{1,5}})|(\d{{1,6}})/(\d\d))([A-Z])$',"
    " ['sfyy', 'sfserial', 'serial', 'yy', 'chk'])"
)



def _current_yy(today: _dt.date | None = None) -> int:
    return (today or _dt.date.today()).year % 100


def check_letter(digits: int) -> str:
    """The modulus-23 check letter of a number (PNC: YY*10**7+serial; CRO: YY*10**6+serial).

    >>> check_letter(20073319)
    'Z'
    """
    return run("SELECT lk_check_letter(CAST(? AS BIGINT))", [int(digits)])


def _pnc(text, today, field: str):
    return evaluate(pnc_steps("x", "z", _current_yy(today)), field, text)


def parse_pnc(text, *, today: _dt.date | None = None) -> tuple[int, int | None, int, str] | None:
    """(two-digit year, century or None when not written, serial, check letter) of a valid PNC.

    None for anything :func:`canonical_pnc` rejects.

    >>> parse_pnc("2002/0073319Z")
    (2, 20, 73319, 'Z')
    >>> parse_pnc("81/34U")
    (81, None, 34, 'U')
    """
    row = _pnc(text, today, "CASE WHEN z.pnc_id IS NOT NULL THEN z__s END")
    if row is None:
        return None
    return (row["yy"], row["century"], row["serial"], row["check_letter"])


def canonical_pnc(text, *, today: _dt.date | None = None) -> str | None:
    """Canonical ``YYYY/NNNNNNNC`` of a valid PNC ID, else None (contract).

    >>> canonical_pnc("81/34U"), canonical_pnc("2003/0011985Y"), canonical_pnc("N/A")
    ('1981/0000034U', None, None)
    """
    return _pnc(text, today, "z.pnc_id")


def pnc_key(text, *, today: _dt.date | None = None) -> str | None:
    """The comparison key of a valid PNC: YY + 7-digit serial + check letter.

    >>> pnc_key("1902/0073319Z") == pnc_key("02/73319Z") == '020073319Z'
    True
    """
    return _pnc(text, today, "z.pnc_key")


def pnc_reason(text, *, today: _dt.date | None = None) -> str | None:
    """Why a present PNC value is rejected (``bad_check_letter``, ``cro_in_pnc_field``...)."""
    return _pnc(text, today, "z.reason")


def parse_cro(text) -> tuple[bool, int, int, str] | None:
    """(is SF form, two-digit year, serial, check letter) of a valid CRO number, else None.

    >>> parse_cro("065656/91H"), parse_cro("SF91/12345X")
    ((False, 91, 65656, 'H'), (True, 91, 12345, 'X'))
    """
    row = evaluate(cro_steps("x", "z"), "CASE WHEN z.cro_number IS NOT NULL THEN z__s END", text)
    if row is None:
        return None
    return (row["sf"], row["yy"], row["serial"], row["check_letter"])


def canonical_cro(text) -> str | None:
    """Canonical ``NNNNNN/YYC`` or ``SFYY/NNNNNC`` of a valid CRO number, else None (contract).

    >>> canonical_cro("000000/00Z") is None
    True
    """
    return evaluate(cro_steps("x", "z"), "z.cro_number", text)


def cro_reason(text) -> str | None:
    """Why a present CRO value is rejected."""
    return evaluate(cro_steps("x", "z"), "z.reason", text)


