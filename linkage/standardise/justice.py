"""Standardise person records: names, dates of birth, sex codes and justice reference numbers.

Two records of one person must look alike before Splink compares them, and junk must become
missing rather than a false match. All the logic is DuckDB SQL: ``lk_*`` macros
(:func:`install_macros`) arranged into per-field stage plans (``_pnc_steps``,
``_full_name_steps``...). :func:`standardise_table` runs each plan once per *distinct* raw
value and joins the results back to the rows. The Python helpers (:func:`canonical_pnc`,
:func:`clean_name`, ...) run *the same plans* on a cached in-memory DuckDB connection, so there
is one source of truth and a Python answer always equals the pipeline's (a property test
checks the table path against the helpers). Python itself touches only distinct names
(phonetic keys).

Quick examples (they run as doctests)::

    >>> canonical_pnc("03/11985x")
    '2003/0011985X'
    >>> canonical_cro("65656/91H")
    '065656/91H'
    >>> canonical_pnc("1933/0993399H") is None      # a known dummy PNC
    True
    >>> split_full_name("MORGAN, Arthur James")
    ('ARTHUR', 'JAMES', 'MORGAN')
    >>> split_full_name("Mr Arthur MORGAN")
    ('ARTHUR', None, 'MORGAN')
    >>> clean_name("O'Connor-Mc Donald")
    'OCONNOR MCDONALD'
    >>> canonical_forename("Bill")
    'WILLIAM'

Decisions
---------
* Names are upper-case ``A-Z`` and single spaces. Accents are stripped (``Ł``, ``Ø``, ``ß``,
  ``Æ`` too); apostrophes are dropped (``O'CONNOR`` -> ``OCONNOR``); every other non-letter,
  **hyphens included, becomes a space** (``MARY-JANE`` -> ``MARY JANE``, as hmpps-person-match
  does). So ``MARY-JANE`` and ``MARY JANE`` agree exactly (first ``MARY``, middle ``JANE``)
  and ``MARYJANE`` stays close (Jaro-Winkler 0.9 against ``MARY``); a double-barrelled surname
  keeps both parts in one column (``SMITH JONES``), and its phonetic key ignores the space so
  ``SMITHJONES`` has the same key. ``MC``/``MAC`` followed by a word is joined to it
  (``MC DONALD`` -> ``MCDONALD``); a surname ``O CONNOR`` becomes ``OCONNOR``.
* Removed: the system prefixes ``MIG_ERROR_``, ``NO_SHOW_``, ``DUPLICATE_``; leading titles
  (``MR``, ``DR``, ``LORD``...; only when a name follows, so a surname ``LORD`` survives);
  suffixes (``JNR``, ``SNR``, ``III``); placeholder phrases and words (``NOT ENTERED``,
  ``UNKNOWN``, ``A N OTHER``, ``FNU``...). A name with nothing left is NULL, with a reason.
  A surname or single-string name carrying an organisation word (``LTD``, ``PLC``,
  ``COUNCIL``...) is NULL with reason ``organisation``.
* ``first_name`` keeps the first forename only; further forenames found in ``first_name``
  go to the front of ``middle_names``.
* ``full_name`` (single-string court style) is used for the parts that ``first_name`` /
  ``surname`` leave empty. ``SURNAME, Forenames`` splits at the comma; otherwise, when the
  case is mixed, the all-capitals words are the surname (``Mr Arthur MORGAN``,
  ``MORGAN Arthur``); otherwise the last word is the surname. Aliases are parsed the same way.
* A PNC is compared on ``pnc_key`` = two-digit year + 7-digit serial + check letter
  (``020073319Z``): the century and the padding never cause a false disagreement. Short forms
  take the century ``20`` when their year is at most the current year's two digits, else ``19``.
* Dates of birth that are unreadable, impossible, before 1900, in the future or a default
  (1900-01-01, 1970-01-01) are NULL with a reason.
* Sex is ``M``, ``F`` or NULL; explicit "not known" codes (U, N, NS, ``Not Known / Not
  Recorded``...) count as reason ``not_known``; anything else as ``unrecognised``.
* Postcodes are ``AB1 2CD``. No-fixed-abode codes (``NF1 1NF``, ``NF1 1FA``) and ``ZZ99``
  pseudo-postcodes are NULL. An outward code alone (``AB1``) leaves ``postcode`` NULL (reason
  ``outward_only``) but still fills ``postcode_district`` and ``postcode_area``.
* Values never appear in an exception or a log line. The ``{out_table}_invalid`` table keeps
  each value that was present but made missing, with its reason: it belongs in the restricted
  zone.

Columns for the model's comparisons
-----------------------------------
(all in the output of :func:`standardise_table`; NULL means missing, never a sentinel)

* ``first_name``, ``surname``: exact, Jaro-Winkler (``jaro_winkler_similarity`` in DuckDB,
  also in Spark), term frequencies. ``forename_canonical`` equal means a nickname or spelling
  variant (``BILL``/``WILLIAM``, ``MUHAMMAD``/``MOHAMMED``): a level between exact and fuzzy.
* ``first_name_metaphone``, ``surname_metaphone``: blocking keys and a phonetic level.
* ``full_name``: ``FIRST SURNAME`` (NULL unless both exist): an exact level with term
  frequencies. Forename/surname swaps: compare ``first_name_l = surname_r AND
  surname_l = first_name_r``.
* ``name_set`` (``FIRST SURNAME`` of the record and of each alias), ``surname_set``,
  ``forename_set`` (first names only, not middle names): sorted distinct arrays;
  use ``len(list_intersect(x_l, x_r)) > 0`` (DuckDB; ``size(array_intersect(...)) > 0`` on
  Spark) for "some name in common".
* ``date_of_birth`` (DATE), ``dob_set`` (DATE[] with alias dates), ``year_of_birth``:
  exact; ``damerau_levenshtein(strftime(d_l, '%Y%m%d'), strftime(d_r, '%Y%m%d')) <= 1`` for
  one keying error; day/month swap; ``abs(date_diff('year', d_l, d_r)) <= 5``.
* ``pnc_key`` (not ``pnc_id``), ``cro_number``, ``prison_number``, ``crn``: exact. The
  production model also treats a PNC and a CRO as agreeing when the last six digits of the
  PNC serial equal the CRO serial: ``substr(pnc_key_l, 4, 6) = left(cro_number_r, 6)`` (for
  non-SF CROs).
* ``postcode`` exact, ``postcode_district`` and ``postcode_area`` as coarser levels.

Data: ``linkage/data/forename_variants.csv`` (``name,canonical,source``) maps a name to its
canonical form. Rows with source ``nicknames`` are derived from the ``nicknames`` package
(Apache-2.0, see ``forename_variants_NOTICE.txt``): a nickname is mapped only when it points
to one formal name; rows with source ``hand`` are British, South Asian/Arabic and Eastern
European variants added by hand and win over the package.
"""

from __future__ import annotations

import dataclasses
import functools
import datetime as _dt
import re
import threading
from importlib import resources
from typing import Any, NamedTuple

import duckdb
import jellyfish
import pandas as pd

from linkage.errors import InputError

__all__ = [
    "CHECK_ALPHABET",
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "INVALID_COLUMNS",
    "StandardiseStats",
    "DateParseCheck",
    "install_macros",
    "standardise_table",
    "date_parse_failures",
    "date_parse_failure_keys",
    "check_letter",
    "parse_pnc",
    "parse_cro",
    "canonical_pnc",
    "pnc_key",
    "pnc_reason",
    "cro_reason",
    "postcode_parts",
    "date_of_birth_reason",
    "canonical_cro",
    "canonical_prison_number",
    "canonical_crn",
    "canonical_postcode",
    "canonical_sex",
    "canonical_date_of_birth",
    "clean_name",
    "clean_surname",
    "split_full_name",
    "canonical_forename",
    "metaphone",
]

# --------------------------------------------------------------------------------------
# Reference data (used to build the SQL; the SQL is the logic)
# --------------------------------------------------------------------------------------

CHECK_ALPHABET = "ZABCDEFGHJKLMNPQRTUVWXY"

# Dummy PNCs seen in live data (ministryofjustice/hmpps-person-match-score,
# standardisation_functions.py: 1933/0993399H, 2033/0993399H, 2003/0993399B, 1999/0339933H,
# 2003/0993399H), held as pnc_key so every written form of them is caught.
DUMMY_PNC_KEYS = (
    "330993399H", "030993399B", "990339933H", "030993399H",
    # all-nines, one and zero serials: pass the check letter, never issued to a person
    "999999999V", "000000001A",
)

DEFAULT_DATES_OF_BIRTH = ("1900-01-01", "1970-01-01")
NO_FIXED_ABODE_POSTCODES = ("NF1 1NF", "NF1 1FA")

NAME_PREFIXES = ("MIG_ERROR_", "NO_SHOW_", "DUPLICATE_")
TITLES = (
    "MR", "MRS", "MS", "MISS", "MX", "DR", "SIR", "DAME", "LORD", "LADY", "REV", "REVD",
    "REVEREND", "PROF", "MASTER", "MSTR", "FR", "FATHER", "SGT", "CAPT", "CAPTAIN", "MADAM",
    "MADAME", "MME", "MLLE", "MISSES",
)  # fmt: skip
NAME_SUFFIXES = ("JNR", "JR", "SNR", "SR", "II", "III", "IV", "ESQ")
# Placeholder phrases removed wherever they appear (matched after punctuation became spaces).
JUNK_NAME_PHRASES = (
    "NOT ENTERED", "NOT KNOWN", "NOT GIVEN", "NOT STATED", "NOT RECORDED", "NOT SPECIFIED",
    "NOT APPLICABLE", "NOT AVAILABLE", "PERSON UNKNOWN", "UNKNOWN PERSON", "NAME UNKNOWN",
    "NO NAME", "A N OTHER", "NO FIRST NAME", "NO MIDDLE NAME", "NO SURNAME",
)  # fmt: skip
# Placeholder words removed as whole words.
JUNK_NAME_WORDS = (
    "UNKNOWN", "UNKOWN", "UNKNOW", "UNK", "UNKN", "NK", "NONE", "NULL", "NIL", "NAN", "TBC",
    "TBA", "ANON", "ANONYMOUS", "REFUSED", "REDACTED", "WITHHELD", "NONAME", "UNNAMED", "FNU",
    "LNU", "NFN", "NMN", "AKA", "ALIAS", "XX", "XXX", "XXXX", "XXXXX", "ZZ", "ZZZ", "ZZZZ",
)  # fmt: skip
# Whole cleaned values that are not names (a lone title, N/A, test values...).
JUNK_NAME_VALUES = (
    "NA", "N A", "N K", "X", "Z", "NO", "NOT", "TEST", "DUMMY", "ANOTHER", "DEFENDANT",
    "MR", "MRS", "MS", "MISS", "MX", "DR", "MSTR",
)  # fmt: skip
ORGANISATION_WORDS = (
    "LTD", "LIMITED", "PLC", "LLP", "CIC", "COUNCIL", "CORPORATION", "INCORPORATED",
    "CONSTABULARY", "AUTHORITY", "COMPANY", "TRADING",
)  # fmt: skip
# Identifier values (squashed to A-Z0-9) that mean "none" rather than a mistyped number.
PLACEHOLDER_CODES = (
    "NONE", "NA", "NK", "NULL", "NIL", "NAN", "UNKNOWN", "UNK", "NOTKNOWN", "NOTENTERED",
    "NOTAPPLICABLE", "NOTRECORDED", "NOTGIVEN", "NOTSTATED", "NOTSPECIFIED", "NOTAVAILABLE",
    "TBC", "TBA", "X", "XX", "XXX", "N", "U", "NO", "REDACTED", "WITHHELD", "ANON", "NONEGIVEN",
)  # fmt: skip
SEX_MALE = ("M", "MALE", "MAN", "BOY", "1")
SEX_FEMALE = ("F", "FEMALE", "WOMAN", "GIRL", "2")
# Codes that say "not known/not specified" (ISO/IEC 5218 0 and 9, nDelius N, Libra NS,
# NOMIS "Not Known / Not Recorded", ...). Squashed to A-Z0-9 before comparison.
SEX_NOT_KNOWN = (
    "U", "N", "NS", "NK", "X", "I", "O", "0", "9", "UNKNOWN", "NOTKNOWN", "NOTSPECIFIED",
    "NOTKNOWNNOTRECORDED", "NOTRECORDED", "NOTSTATED", "UNSPECIFIED", "INDETERMINATE",
    "OTHER", "PREFERNOTTOSAY", "REFUSED", "NA", "NOTAPPLICABLE",
)  # fmt: skip

INPUT_COLUMNS = (
    "source_dataset", "record_id", "first_name", "middle_names", "surname", "full_name",
    "aliases", "date_of_birth", "alias_dates_of_birth", "sex", "pnc_id", "cro_number",
    "prison_number", "crn", "postcode",
)  # fmt: skip
OUTPUT_COLUMNS = (
    "source_dataset", "record_id", "first_name", "middle_names", "surname",
    "forename_canonical", "first_name_metaphone", "surname_metaphone", "full_name",
    "name_set", "surname_set", "forename_set", "date_of_birth", "dob_set", "year_of_birth",
    "sex", "pnc_id", "pnc_key", "cro_number", "prison_number", "crn", "postcode",
    "postcode_district", "postcode_area",
)  # fmt: skip
INVALID_COLUMNS = ("source_dataset", "record_id", "field", "reason", "raw_value")

_VARIANTS_TABLE = "__lk_forename_variants"

# --------------------------------------------------------------------------------------
# The SQL macros: the single source of truth
# --------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _qlist(values) -> str:
    return "(" + ", ".join(_q(v) for v in values) + ")"


def _alt(words) -> str:
    return "|".join(re.escape(w) for w in words)


# Every macro below obeys one rule, because DuckDB expands a macro by copying its argument
# expression into each place the parameter appears: a macro that uses a parameter more than
# once is only ever called with a *column* (a previous stage's output), never with a computed
# expression. The stage plans further down (``_pnc_steps`` ...) arrange that; without it the
# nested macros grow exponentially (a full-name split was 80x slower). Casts inside CASE
# branches are TRY_CASTs: the optimizer may evaluate a branch for rows it does not select.
_MACRO_TEMPLATES: list[tuple[str, str, str]] = [
    # ---- generic
    ("lk_nz", "x", r"CASE WHEN regexp_matches(x, '[^\s\x{00A0}\x{FEFF}]') THEN x END"),
    (
        "lk_check_letter",
        "n",
        f"substr({_q(CHECK_ALPHABET)}, 1 + CAST(n % 23 AS INTEGER), 1)",
    ),
    (
        "lk_is_placeholder",
        "x",
        r"(regexp_replace(upper(x), '[^A-Z0-9]', '', 'g') IN @PLACEHOLDERS@"
        r" OR regexp_matches(x, '^[^A-Za-z1-9]*$'))",
    ),
    ("lk_is_date_like", "x", r"regexp_matches(trim(x), '^\d{1,4}[-/. ]\d{1,2}[-/. ]\d{1,4}')"),
    ("lk__compact", "x", "regexp_replace(upper(x), '[^A-Z0-9]', '', 'g')"),
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
    # ---- prison number A1234BC, CRN X123456 (no check character): struct(value, reason)
    (
        "lk__id_result",
        "x, c, pattern",
        "CASE WHEN lk_nz(x) IS NULL THEN"
        " struct_pack(value := CAST(NULL AS VARCHAR), reason := CAST(NULL AS VARCHAR))"
        " WHEN regexp_matches(c, pattern) THEN"
        " struct_pack(value := c, reason := CAST(NULL AS VARCHAR))"
        " WHEN lk_is_placeholder(x) THEN"
        " struct_pack(value := CAST(NULL AS VARCHAR), reason := 'placeholder')"
        " ELSE struct_pack(value := CAST(NULL AS VARCHAR), reason := 'malformed') END",
    ),
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
        " WHEN pc IN @NFA@ THEN lk__pc_make(NULL, NULL, 'no_fixed_abode')"
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
    # ---- sex: struct(sex, reason); k is the value squashed to A-Z0-9
    (
        "lk__sex_result",
        "x, k",
        "CASE WHEN lk_nz(x) IS NULL THEN"
        " struct_pack(sex := CAST(NULL AS VARCHAR), reason := CAST(NULL AS VARCHAR))"
        " WHEN k IN @SEX_MALE@ THEN struct_pack(sex := 'M', reason := CAST(NULL AS VARCHAR))"
        " WHEN k IN @SEX_FEMALE@ THEN struct_pack(sex := 'F', reason := CAST(NULL AS VARCHAR))"
        " WHEN k IN @SEX_NOT_KNOWN@ OR k = '' THEN"
        " struct_pack(sex := CAST(NULL AS VARCHAR), reason := 'not_known')"
        " ELSE struct_pack(sex := CAST(NULL AS VARCHAR), reason := 'unrecognised') END",
    ),
    # ---- dates of birth: struct(value DATE, reason). c is the text without a time part,
    # d its parse (NULL when no format fits), shape a regex of the formats' layout (to tell
    # an impossible date such as 31/02/1990 from text in another layout).
    (
        "lk__date_clean",
        "x",
        r"trim(regexp_replace(x, '[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$', ''))",
    ),
    (
        "lk__date_result",
        "x, c, d, shape, today",
        """CASE
          WHEN lk_nz(x) IS NULL THEN struct_pack(value := CAST(NULL AS DATE), reason := CAST(NULL AS VARCHAR))
          WHEN d IS NULL THEN struct_pack(value := CAST(NULL AS DATE), reason := CASE
            WHEN lk_is_placeholder(x) THEN 'placeholder'
            WHEN regexp_matches(c, shape) THEN 'impossible_date'
            ELSE 'unparseable' END)
          WHEN d IN @DEFAULT_DATES@ THEN struct_pack(value := CAST(NULL AS DATE), reason := 'default_date')
          WHEN d < DATE '1900-01-01' THEN struct_pack(value := CAST(NULL AS DATE), reason := 'before_1900')
          WHEN d > today THEN struct_pack(value := CAST(NULL AS DATE), reason := 'future')
          ELSE struct_pack(value := d, reason := CAST(NULL AS VARCHAR))
        END""",
    ),
    # ---- names (all of these use their parameter once, except where noted)
    (
        "lk__name_chars",
        "x",
        r"CASE WHEN regexp_matches(x, '[^\x00-\x7F]') THEN"
        " translate(strip_accents(replace(replace(replace(replace(replace(replace(replace(replace("
        "x, 'ß', 'ss'), 'ẞ', 'SS'), 'Æ', 'AE'), 'æ', 'ae'), 'Œ', 'OE'), 'œ', 'oe'),"
        " 'Þ', 'TH'), 'þ', 'th')), 'ŁłØøĐđĦħıĿŀ', 'LlOoDdHhiLl') ELSE x END",
    ),
    # Case is kept (it is the surname hint in single-string names); commas are kept (the
    # "SURNAME, Forenames" split); everything else but letters becomes a space.
    (
        "lk__name_prep",
        "x",
        r"trim(regexp_replace(regexp_replace(regexp_replace(regexp_replace("
        r"regexp_replace(regexp_replace(regexp_replace(lk__name_chars(x),"
        r" '(?i)(^|[^A-Z])(@PREFIXES@)+', '\1', 'g'),"
        r" '[''’‘`´ʼʻ]', '', 'g'),"
        r" '[^A-Za-z,]+', ' ', 'g'),"
        r" '(?i)\b(MC|MAC) ([A-Z]{2,})', '\1\2', 'g'),"
        r" '(?i)\b(@JUNK_PHRASES@|@SUFFIXES@)\b', ' ', 'g'),"
        r" ' *, *', ',', 'g'), ' {2,}', ' ', 'g'))",
    ),
    # prepared text -> clean upper-case name or NULL
    (
        "lk__clean",
        "s",
        r"nullif(regexp_replace(regexp_replace(regexp_replace(trim(regexp_replace("
        r"regexp_replace(upper(replace(s, ',', ' ')), '\b(@JUNK_PHRASES@|@JUNK_WORDS@)\b', ' ', 'g'),"
        r" ' {2,}', ' ', 'g')), '^((@TITLES@) )+', ''),"
        r" '\b(MC|MAC) ([A-Z]{2,})', '\1\2', 'g'),"
        r" '^(@JUNK_VALUES@)?$', ''), '')",
    ),
    ("lk_clean_name", "x", "lk__clean(lk__name_prep(x))"),
    ("lk__surname_final", "c", r"regexp_replace(c, '^O ([A-Z]{2,})', 'O\1')"),
    ("lk__is_org", "x", r"coalesce(regexp_matches(x, '(?i)\b(@ORG_WORDS@)\b'), false)"),
    # x twice: a column or a cheap expression only
    (
        "lk_clean_surname",
        "x",
        "CASE WHEN lk__is_org(lk__name_prep(x)) THEN NULL"
        " ELSE lk__surname_final(lk_clean_name(x)) END",
    ),
    ("lk__rest", "f", "nullif(substr(f, strpos(f, ' ') + 1), f)"),
    # an O before an all-capitals word of a mixed-case name is a surname prefix (O CONNOR)
    (
        "lk__split_prep",
        "s",
        r"CASE WHEN regexp_matches(s, '[a-z]')"
        r" THEN regexp_replace(s, '\bO ([A-Z]{2,}\b)', 'O\1', 'g') ELSE s END",
    ),
    # s: prepared single-string name -> struct(fore, sur) of raw parts. "SURNAME, Forenames";
    # else, when the case is mixed, the all-capitals words are the surname; else the last word.
    (
        "lk__split",
        "s",
        r"""CASE
          WHEN regexp_matches(s, '^[^,]*[A-Za-z][^,]*,[^,]*[A-Za-z]') THEN struct_pack(
            fore := substr(s, strpos(s, ',') + 1), sur := left(s, strpos(s, ',') - 1))
          WHEN regexp_matches(s, '[a-z]') AND regexp_matches(s, '\b(Mc|Mac)?[A-Z]{2,}\b')
          THEN struct_pack(
            fore := regexp_replace(s, '\b(Mc|Mac)?[A-Z]{2,}\b', '', 'g'),
            sur := array_to_string(regexp_extract_all(s, '\b((?:Mc|Mac)?[A-Z]{2,})\b', 1), ' '))
          ELSE struct_pack(fore := regexp_replace(s, '[ ,]*[^ ,]+[ ,]*$', ''),
                           sur := regexp_extract(s, '([^ ,]+)[ ,]*$', 1))
        END""",
    ),
    (
        "lk__split_result",
        "f, s, org",
        "CASE WHEN org OR (f IS NULL AND s IS NULL) THEN struct_pack(first := CAST(NULL AS VARCHAR),"
        " middle := CAST(NULL AS VARCHAR), surname := CAST(NULL AS VARCHAR))"
        " ELSE struct_pack(first := CAST(lk__clean(split_part(f, ' ', 1)) AS VARCHAR),"
        " middle := CAST(lk__clean(lk__rest(f)) AS VARCHAR), surname := CAST(s AS VARCHAR)) END",
    ),
    (
        "lk_name_reason",
        "x, org_check",
        "CASE WHEN org_check AND lk__is_org(lk__name_prep(x)) THEN 'organisation'"
        " WHEN NOT regexp_matches(lk__name_chars(x), '[A-Za-z]') THEN 'no_letters'"
        " ELSE 'placeholder' END",
    ),
]

_SUBSTITUTIONS = {
    "@PLACEHOLDERS@": _qlist(("",) + PLACEHOLDER_CODES),
    "@DUMMY_PNC_KEYS@": _qlist(DUMMY_PNC_KEYS),
    "@NFA@": _qlist(NO_FIXED_ABODE_POSTCODES),
    "@SEX_MALE@": _qlist(SEX_MALE),
    "@SEX_FEMALE@": _qlist(SEX_FEMALE),
    "@SEX_NOT_KNOWN@": _qlist(SEX_NOT_KNOWN),
    "@DEFAULT_DATES@": "(" + ", ".join(f"DATE {_q(d)}" for d in DEFAULT_DATES_OF_BIRTH) + ")",
    "@JUNK_PHRASES@": _alt(JUNK_NAME_PHRASES),
    "@SUFFIXES@": _alt(NAME_SUFFIXES),
    "@PREFIXES@": _alt(NAME_PREFIXES),
    "@JUNK_VALUES@": _alt(JUNK_NAME_VALUES),
    "@TITLES@": _alt(TITLES),
    "@JUNK_WORDS@": _alt(JUNK_NAME_WORDS),
    "@ORG_WORDS@": _alt(ORGANISATION_WORDS),
}


def _render(body: str) -> str:
    for key, value in _SUBSTITUTIONS.items():
        body = body.replace(key, value)
    assert "@" not in body, body
    return body


MACRO_SQL: str = ";\n".join(
    f"CREATE OR REPLACE TEMP MACRO {name}({params}) AS {_render(body)}"
    for name, params, body in _MACRO_TEMPLATES
)


def _variants_csv_sql() -> str:
    path = resources.files("linkage").joinpath("data/forename_variants.csv")
    return (
        f"CREATE OR REPLACE TEMP TABLE {_VARIANTS_TABLE} AS SELECT name, canonical FROM "
        f"read_csv({_q(str(path))}, header = true, "
        "columns = {'name': 'VARCHAR', 'canonical': 'VARCHAR', 'source': 'VARCHAR'})"
    )


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``lk_*`` temp macros and the forename variant table on ``con`` (idempotent).

    ``lk_clean_name(x)`` and ``lk_clean_surname(x)`` are safe to call on any expression; the
    reference-number, date and full-name logic is in stage plans (see :func:`_staged`), as
    its macros need columns for arguments.
    """
    con.execute(MACRO_SQL)
    con.execute(_variants_csv_sql())


# --------------------------------------------------------------------------------------
# Stage plans: each field's logic as steps (output column, SQL over earlier columns)
# --------------------------------------------------------------------------------------

Step = tuple[str, str]


def _staged(source_sql: str, steps: list[Step]) -> str:
    """Nest ``SELECT *, step AS column`` projections so each step runs after its inputs.

    A step's level is one more than the deepest earlier step it names; steps of one level
    share a projection. Every column a step reads is thus materialised once per row.
    """
    level: dict[str, int] = {}
    for column, expr in steps:
        deps = [lv for col, lv in level.items() if re.search(rf"\b{re.escape(col)}\b", expr)]
        level[column] = 1 + max(deps, default=0)
    sql = source_sql
    for k in range(1, max(level.values(), default=0) + 1):
        cols = ", ".join(f"{expr} AS {col}" for col, expr in steps if level[col] == k)
        sql = f"SELECT *, {cols} FROM ({sql})"
    return sql


def _pnc_steps(x: str, o: str, cur_yy: int) -> list[Step]:
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


def _cro_steps(x: str, o: str) -> list[Step]:
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

_PRISON_NUMBER_PATTERN = r"'^[A-Z]\d{4}[A-Z]{2}$'"
_CRN_PATTERN = r"'^[A-Z]\d{6}$'"


def _id_steps(x: str, o: str, pattern: str) -> list[Step]:
    """-> ``o``: struct(value, reason)."""
    return [(f"{o}__c", f"lk__compact({x})"), (o, f"lk__id_result({x}, {o}__c, {pattern})")]


def _postcode_steps(x: str, o: str) -> list[Step]:
    """-> ``o``: struct(postcode, postcode_district, postcode_area, reason)."""
    return [(f"{o}__c", f"lk__pc_compact({x})"), (o, f"lk__pc_result({x}, {o}__c)")]


def _sex_steps(x: str, o: str) -> list[Step]:
    """-> ``o``: struct(sex, reason)."""
    return [(f"{o}__k", f"lk__compact({x})"), (o, f"lk__sex_result({x}, {o}__k)")]


def _date_steps(x: str, o: str, date_formats: list[str], today: _dt.date) -> list[Step]:
    """-> ``o``: struct(value DATE, reason)."""
    fmts = "[" + ", ".join(_q(f) for f in date_formats) + "]"
    shape, day = _q(_date_shape(date_formats)), f"DATE {_q(today.isoformat())}"
    return [
        (f"{o}__c", f"lk__date_clean({x})"),
        (f"{o}__d", f"CAST(try_strptime({o}__c, {fmts}) AS DATE)"),
        (o, f"lk__date_result({x}, {o}__c, {o}__d, {shape}, {day})"),
    ]


def _forenames_steps(x: str, o: str) -> list[Step]:
    """-> ``o``: all forenames in the field, cleaned (first = first word)."""
    return [(f"{o}__p", f"lk__name_prep({x})"), (o, f"lk__clean({o}__p)")]


def _surname_steps(x: str, o: str) -> list[Step]:
    """-> ``o``: cleaned surname (NULL for an organisation)."""
    return [
        (f"{o}__p", f"lk__name_prep({x})"),
        (o, f"CASE WHEN lk__is_org({o}__p) THEN NULL ELSE lk__surname_final(lk__clean({o}__p)) END"),
    ]


def _full_name_steps(x: str, o: str) -> list[Step]:
    """-> ``o``: struct(first, middle, surname) of a single-string name."""
    return [
        (f"{o}__p", f"lk__name_prep({x})"),
        (f"{o}__org", f"lk__is_org({o}__p)"),
        (f"{o}__sp2", f"lk__split_prep({o}__p)"),
        (f"{o}__sp", f"lk__split({o}__sp2)"),
        (f"{o}__f", f"lk__clean({o}__sp.fore)"),
        (f"{o}__s", f"lk__surname_final(lk__clean({o}__sp.sur))"),
        (o, f"lk__split_result({o}__f, {o}__s, {o}__org)"),
    ]


# --------------------------------------------------------------------------------------
# Dates: the formats' layout as a regex
# --------------------------------------------------------------------------------------

_DIRECTIVE_SHAPES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "-m": r"\d{1,2}",
    "-d": r"\d{1,2}", "b": "[A-Za-z]{3}", "B": "[A-Za-z]+", "H": r"\d{1,2}", "M": r"\d{1,2}",
    "S": r"\d{1,2}", "j": r"\d{1,3}", "a": "[A-Za-z]+", "A": "[A-Za-z]+", "%": "%",
}  # fmt: skip


def _date_shape(date_formats: list[str]) -> str:
    """A regex matching text laid out like one of the formats (digits in the right places)."""
    shapes = []
    for fmt in date_formats:
        out, i = [], 0
        while i < len(fmt):
            ch = fmt[i]
            if ch == "%" and i + 1 < len(fmt):
                key = fmt[i + 1 : i + 3] if fmt[i + 1] == "-" else fmt[i + 1]
                out.append(_DIRECTIVE_SHAPES.get(key, ".+"))
                i += 1 + len(key)
            else:
                out.append(re.escape(ch))
                i += 1
        shapes.append("".join(out))
    return "^(" + "|".join(shapes) + ")$"


def _check_date_formats(date_formats) -> list[str]:
    if isinstance(date_formats, str) or not date_formats:
        raise ValueError("date_formats must be a non-empty list of strptime formats")
    formats = [str(f) for f in date_formats]
    if not all(formats):
        raise ValueError("date_formats must not contain an empty format")
    return formats


# --------------------------------------------------------------------------------------
# Python helpers: the same stage plans, on one cached in-memory connection
# --------------------------------------------------------------------------------------

_helper_lock = threading.Lock()
_helper_con: duckdb.DuckDBPyConnection | None = None


def _run(sql: str, params: list):
    global _helper_con
    with _helper_lock:
        if _helper_con is None:
            con = duckdb.connect(":memory:")
            install_macros(con)
            _helper_con = con
        return _helper_con.execute(sql, params).fetchall()[0][0]


@functools.lru_cache(maxsize=256)
def _helper_sql(steps: tuple[Step, ...], out_expr: str) -> str:
    return f"SELECT {out_expr} FROM ({_staged('SELECT CAST(? AS VARCHAR) AS x', list(steps))})"


def _evaluate(steps: list[Step], out_expr: str, text) -> Any:
    value = None if text is None else str(text)
    return _run(_helper_sql(tuple(steps), out_expr), [value])


def _current_yy(today: _dt.date | None = None) -> int:
    return (today or _dt.date.today()).year % 100


def check_letter(digits: int) -> str:
    """The modulus-23 check letter of a number (PNC: YY*10**7+serial; CRO: YY*10**6+serial).

    >>> check_letter(20073319)
    'Z'
    """
    return _run("SELECT lk_check_letter(CAST(? AS BIGINT))", [int(digits)])


def _pnc(text, today, field: str):
    return _evaluate(_pnc_steps("x", "z", _current_yy(today)), field, text)


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
    row = _evaluate(_cro_steps("x", "z"), "CASE WHEN z.cro_number IS NOT NULL THEN z__s END", text)
    if row is None:
        return None
    return (row["sf"], row["yy"], row["serial"], row["check_letter"])


def canonical_cro(text) -> str | None:
    """Canonical ``NNNNNN/YYC`` or ``SFYY/NNNNNC`` of a valid CRO number, else None (contract).

    >>> canonical_cro("000000/00Z") is None
    True
    """
    return _evaluate(_cro_steps("x", "z"), "z.cro_number", text)


def cro_reason(text) -> str | None:
    """Why a present CRO value is rejected."""
    return _evaluate(_cro_steps("x", "z"), "z.reason", text)


def canonical_prison_number(text) -> str | None:
    """``A1234BC`` or None.

    >>> canonical_prison_number(" a1234bc ")
    'A1234BC'
    """
    return _evaluate(_id_steps("x", "z", _PRISON_NUMBER_PATTERN), "z.value", text)


def canonical_crn(text) -> str | None:
    """``X123456`` or None.

    >>> canonical_crn("x123456")
    'X123456'
    """
    return _evaluate(_id_steps("x", "z", _CRN_PATTERN), "z.value", text)


def canonical_postcode(text) -> str | None:
    """``AB1 2CD`` or None (no-fixed-abode and ZZ99 pseudo-postcodes are None).

    >>> canonical_postcode("sw1a1aa"), canonical_postcode("NF1 1NF")
    ('SW1A 1AA', None)
    """
    return _evaluate(_postcode_steps("x", "z"), "z.postcode", text)


def postcode_parts(text) -> tuple[str | None, str | None, str | None]:
    """(postcode, district, area); an outward code alone gives (None, district, area)."""
    row = _evaluate(_postcode_steps("x", "z"), "z", text)
    return (row["postcode"], row["postcode_district"], row["postcode_area"])


def canonical_sex(text) -> str | None:
    """``M``, ``F`` or None.

    >>> canonical_sex("Female"), canonical_sex("Not Known / Not Recorded")
    ('F', None)
    """
    return _evaluate(_sex_steps("x", "z"), "z.sex", text)


def _dob(text, date_formats, today, field):
    formats = _check_date_formats(date_formats)
    return _evaluate(_date_steps("x", "z", formats, today or _dt.date.today()), field, text)


def canonical_date_of_birth(
    text, date_formats: list[str], *, today: _dt.date | None = None
) -> _dt.date | None:
    """A valid date of birth, or None (unreadable, impossible, future, before 1900, default).

    >>> canonical_date_of_birth("01/02/1990", ["%d/%m/%Y"])
    datetime.date(1990, 2, 1)
    """
    return _dob(text, date_formats, today, "z.value")


def date_of_birth_reason(text, date_formats: list[str], *, today: _dt.date | None = None):
    """Why a present date of birth is made missing (``impossible_date``, ``future``...)."""
    return _dob(text, date_formats, today, "z.reason")


def clean_name(text) -> str | None:
    """Upper-case A-Z and single spaces; junk, titles, prefixes removed; None if nothing is left.

    >>> clean_name("MIG_ERROR_Zoë"), clean_name("NOT ENTERED")
    ('ZOE', None)
    """
    return _evaluate(_forenames_steps("x", "z"), "z", text)


def clean_surname(text) -> str | None:
    """:func:`clean_name` plus ``O CONNOR`` -> ``OCONNOR``; organisations are None."""
    return _evaluate(_surname_steps("x", "z"), "z", text)


def split_full_name(text) -> tuple[str | None, str | None, str | None]:
    """(first, middle names, surname) of a single-string name in any court style.

    >>> split_full_name("MORGAN Arthur")
    ('ARTHUR', None, 'MORGAN')
    >>> split_full_name("Arthur James Morgan")
    ('ARTHUR', 'JAMES', 'MORGAN')
    """
    row = _evaluate(_full_name_steps("x", "z"), "z", text)
    return (row["first"], row["middle"], row["surname"])


def canonical_forename(text) -> str | None:
    """The canonical form of a first name (nickname or spelling variant resolved).

    >>> canonical_forename("muhammad"), canonical_forename("Zebedee")
    ('MOHAMMED', 'ZEBEDEE')
    """
    return _evaluate(
        _forenames_steps("x", "z"),
        f"coalesce((SELECT v.canonical FROM {_VARIANTS_TABLE} v"
        " WHERE v.name = split_part(z, ' ', 1)), split_part(z, ' ', 1))",
        text,
    )


def metaphone(name: str | None) -> str | None:
    """The phonetic key used for ``first_name_metaphone`` / ``surname_metaphone``.

    Spaces are ignored, so ``SMITH JONES`` and ``SMITHJONES`` share a key.
    """
    if not name:
        return None
    return jellyfish.metaphone(name.replace(" ", "")) or None


# --------------------------------------------------------------------------------------
# The table-level standardiser
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class StandardiseStats:
    """Counts from :func:`standardise_table`; no values, so safe to log and report.

    ``invalid``: field -> reason -> number of values present but made missing.
    ``dates_present`` / ``unreadable_dates``: non-blank, non-placeholder primary dates of
    birth, and how many of those fitted none of the formats (``unparseable`` or
    ``impossible_date``); a high share means the configured formats are wrong for the column.
    """

    rows: int
    invalid: dict[str, dict[str, int]]
    dates_present: int = 0
    unreadable_dates: int = 0

    @property
    def unreadable_date_share(self) -> float:
        return self.unreadable_dates / self.dates_present if self.dates_present else 0.0


class DateParseCheck(NamedTuple):
    """Result of :func:`date_parse_failures`: ``failed`` of ``present`` values fit no format."""

    failed: int
    present: int

    @property
    def share(self) -> float:
        return self.failed / self.present if self.present else 0.0


def date_parse_failures(
    con: duckdb.DuckDBPyConnection, table: str, column: str, date_formats: list[str]
) -> DateParseCheck:
    """Count the non-blank, non-placeholder values of ``table.column`` fitting none of the formats.

    Run it before standardising to catch a date column whose configured formats are wrong,
    e.g. ``check.share > 0.5`` -> "column X: most dates match none of the formats". Only
    counts come back, never values. Future and default dates are readable, so not failures.
    """
    sql = f"""
        SELECT coalesce(sum(n) FILTER (WHERE unreadable), 0),
               coalesce(sum(n) FILTER (WHERE reason IS DISTINCT FROM 'placeholder'), 0)
        FROM ({_date_check_sql(con, table, column, date_formats)})
    """
    failed, present = con.execute(sql).fetchall()[0]
    return DateParseCheck(int(failed), int(present))


def date_parse_failure_keys(
    con: duckdb.DuckDBPyConnection, table: str, column: str, date_formats: list[str], key: str, limit: int
) -> list:
    """The first ``limit`` values of ``table.key`` (ordered) whose ``column`` counts as a
    failure in :func:`date_parse_failures`: the rows to name in an error message."""
    bad = f"SELECT x FROM ({_date_check_sql(con, table, column, date_formats)}) WHERE unreadable"
    sql = (
        f"SELECT {_ident(key)} FROM {table} WHERE CAST({_ident(column)} AS VARCHAR) IN ({bad}) "
        f"ORDER BY 1 LIMIT {int(limit)}"
    )
    return [r[0] for r in con.execute(sql).fetchall()]


def _date_check_sql(con, table: str, column: str, date_formats: list[str]) -> str:
    """SQL: (x, n, reason, unreadable) per distinct non-blank value x of ``table.column``
    (n rows): the date stage plan runs once per distinct value."""
    formats = _check_date_formats(date_formats)
    install_macros(con)
    src = f"SELECT CAST({_ident(column)} AS VARCHAR) AS x, count(*) AS n FROM {table} GROUP BY 1"
    staged = _staged(src, _date_steps("x", "z", formats, _dt.date(9999, 12, 31)))
    return (
        f"SELECT x, n, z.reason AS reason, z.reason IN ('unparseable', 'impossible_date') AS unreadable "
        f"FROM ({staged}) WHERE lk_nz(x) IS NOT NULL"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    try:
        rows = con.execute(f"DESCRIBE {table}").fetchall()
    except duckdb.Error as exc:  # the message names the table, never a value
        raise InputError(
            f"standardise: table {table} cannot be read ({type(exc).__name__})"
        ) from None
    return [r[0] for r in rows]


def _field_plans(date_formats: list[str], today: _dt.date):
    """(name, input columns, steps builder, reason, outputs) of every field.

    Each field runs as a dictionary over distinct raw values ``x`` with result ``z``.
    ``reason`` is SQL saying why a present value became missing (NULL when it did not);
    ``outputs`` are (suffix, SQL over ``z``) flat columns joined back as ``z_<name><suffix>``.
    """
    name_reason = "CASE WHEN lk_nz(x) IS NOT NULL AND z IS NULL THEN lk_name_reason(x, {}) END"
    value, why = [("", "z.value")], "z.reason"
    return [
        # the first word is the first name, the others are middle names; each part is cleaned
        # again so that a part alone (a lone title, say) is treated as it would be on its own
        ("first", ("first_name",), _forenames_steps, name_reason.format("false"),
         [("", "lk__clean(split_part(z, ' ', 1))"), ("_rest", "lk__clean(lk__rest(z))")]),
        ("middle", ("middle_names",), _forenames_steps, name_reason.format("false"), [("", "z")]),
        ("surname", ("surname",), _surname_steps, name_reason.format("true"), [("", "z")]),
        ("full", ("full_name", "alias_raw"), _full_name_steps,
         "CASE WHEN lk_nz(x) IS NOT NULL AND z.first IS NULL AND z.surname IS NULL"
         " THEN lk_name_reason(x, true) END",
         [("_first", "z.first"), ("_middle", "z.middle"), ("_surname", "z.surname")]),
        ("dob", ("date_of_birth", "dob_raw"),
         lambda x, o: _date_steps(x, o, date_formats, today), why, value),
        ("sex", ("sex",), _sex_steps, why, [("", "z.sex")]),
        ("pnc", ("pnc_id",), lambda x, o: _pnc_steps(x, o, today.year % 100), why,
         [("_id", "z.pnc_id"), ("_key", "z.pnc_key")]),
        ("cro", ("cro_number",), _cro_steps, why, [("", "z.cro_number")]),
        ("prison", ("prison_number",),
         lambda x, o: _id_steps(x, o, _PRISON_NUMBER_PATTERN), why, value),
        ("crn", ("crn",), lambda x, o: _id_steps(x, o, _CRN_PATTERN), why, value),
        ("postcode", ("postcode",), _postcode_steps, why,
         [("", "z.postcode"), ("_district", "z.postcode_district"),
          ("_area", "z.postcode_area")]),
    ]  # fmt: skip


# Row-level steps over the dictionary results z_<field> of one row.
_COMBINE_STEPS: list[Step] = [
    ("z_full_ok", "z_first IS NULL OR z_surname IS NULL"),
    ("z_s_first", "coalesce(z_first, CASE WHEN z_full_ok THEN z_full_first END)"),
    ("z_s_middle", "CASE WHEN z_first IS NOT NULL THEN CASE WHEN z_first_rest IS NULL THEN z_middle"
                   " WHEN z_middle IS NULL THEN z_first_rest"
                   " ELSE lk__clean(z_first_rest || ' ' || z_middle) END"
                   " ELSE coalesce(z_middle, CASE WHEN z_full_ok THEN z_full_middle END) END"),
    ("z_s_surname", "coalesce(z_surname, CASE WHEN z_full_ok THEN z_full_surname END)"),
    ("z_s_full", "CASE WHEN z_s_first IS NOT NULL AND z_s_surname IS NOT NULL"
                 " THEN z_s_first || ' ' || z_s_surname END"),
]  # fmt: skip

# Which input column each invalid-table field is read from, per dictionary.
_INVALID_FIELDS = {
    "first": ("first_name",), "middle": ("middle_names",), "surname": ("surname",),
    "full": ("full_name", "aliases"), "dob": ("date_of_birth", "alias_dates_of_birth"),
    "sex": ("sex",), "pnc": ("pnc_id",), "cro": ("cro_number",),
    "prison": ("prison_number",), "crn": ("crn",), "postcode": ("postcode",),
}  # fmt: skip


# Dictionaries of names: values in a non-Latin script are transliterated before cleaning.
_NAME_DICTIONARIES = {"first", "middle", "surname", "full"}


def _needs_transliteration(text: str) -> bool:
    """A letter beyond the Latin blocks (Cyrillic, Greek, Arabic, CJK...): the SQL cleaning
    strips accents from Latin letters but would drop these."""
    return any(ord(ch) > 0x024F and ch.isalpha() for ch in text)


def _register_transliterations(con: duckdb.DuckDBPyConnection, distinct_sql: str) -> str | None:
    """Register ``(k raw, t transliterated)`` for the distinct values needing it; its name or None."""
    from anyascii import anyascii

    odd = [r[0] for r in con.execute(
        f"SELECT x FROM ({distinct_sql}) WHERE regexp_matches(x, '[^\\x00-\\x{{024F}}]')").fetchall()]
    odd = [v for v in odd if _needs_transliteration(v)]
    if not odd:
        return None
    name = "__lk_std_translit"
    con.register(name, pd.DataFrame({"k": pd.Series(odd, dtype=object),
                                     "t": pd.Series([anyascii(v) for v in odd], dtype=object)}))
    return name


def _one_or_set(value: str, alias_values: str) -> str:
    """SQL: sorted distinct non-NULL array of a value and a row's alias values, NULL if empty."""
    return (
        f"CASE WHEN {alias_values} IS NULL THEN CASE WHEN {value} IS NOT NULL THEN [{value}] END"
        f" ELSE nullif(list_sort(list_distinct(list_concat([{value}], {alias_values}))), []) END"
    )


def _is_varchar_base_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``table`` has a rowid and all input columns are VARCHAR (then it is read as is)."""
    try:
        types = {
            r[0].lower(): r[1]
            for r in con.execute(f"DESCRIBE SELECT rowid AS __lk_rowid, * FROM {table}").fetchall()
        }
    except duckdb.Error:
        return False
    return all(types.get(c) == "VARCHAR" for c in INPUT_COLUMNS)


def standardise_table(
    con: duckdb.DuckDBPyConnection,
    source_table: str,
    out_table: str,
    *,
    date_formats: list[str],
    list_separator: str = ";",
    today: _dt.date | None = None,
    keep_raw_values: bool = False,
) -> StandardiseStats:
    """Standardise ``source_table`` into ``out_table`` (one row per input row) and
    ``{out_table}_invalid`` (one row per value present but made missing).

    ``source_table`` must have the columns :data:`INPUT_COLUMNS` (any type; read as text);
    other columns are ignored. ``date_formats`` are DuckDB strptime formats tried in order,
    for ``date_of_birth`` and each alias date. ``aliases`` and ``alias_dates_of_birth`` are
    lists separated by ``list_separator``. ``today`` (default: the current date) bounds dates
    of birth and sets the century of short PNC years. Row order is not kept: the key is
    (``source_dataset``, ``record_id``). Output columns: :data:`OUTPUT_COLUMNS`. Table names
    are used as given (SQL identifiers, optionally qualified).

    How: each field's stage plan runs once per *distinct* raw value into a dictionary table
    (aliases and alias dates, unnested to one row per element, share the full-name and date
    dictionaries); one query then joins the dictionaries back to the rows.

    ``keep_raw_values`` also keeps ``{out_table}_raw_values(field, v)``: every distinct raw
    value, as read, of each dictionary (``field``: first, middle, surname, full (full names
    and alias elements), dob (dates of birth and alias dates), sex, pnc, cro, prison, crn,
    postcode). The leakage check reads these instead of scanning every row again.
    """
    formats = _check_date_formats(date_formats)
    if not isinstance(list_separator, str) or not list_separator:
        raise ValueError("list_separator must be a non-empty string")
    today = today or _dt.date.today()
    columns = {c.lower() for c in _table_columns(con, source_table)}
    missing = [c for c in INPUT_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"standardise: table {source_table} lacks column(s) {', '.join(missing)}"
            f" (has: {', '.join(sorted(columns))})"
        )
    install_macros(con)
    sep = _q(list_separator)
    src, al, ad = "__lk_std_src", "__lk_std_aliases", "__lk_std_alias_dobs"
    first_phon, surname_phon = "__lk_std_first", "__lk_std_surname"
    temp_tables = [src, al, ad, first_phon, surname_phon]
    element_table = {"alias_raw": al, "dob_raw": ad}

    raw = ", ".join(f"CAST({_ident(c)} AS VARCHAR) AS {c}" for c in INPUT_COLUMNS)
    if _is_varchar_base_table(con, source_table):
        src = source_table  # no copy: a base table's rowid keys the alias rows
        temp_tables.remove("__lk_std_src")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {src} AS SELECT {raw} FROM {source_table}")
    # Aliases and alias dates: one row per non-blank list element.
    for table, column, element in ((al, "aliases", "alias_raw"),
                                   (ad, "alias_dates_of_birth", "dob_raw")):  # fmt: skip
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT * FROM (SELECT rowid AS rid, source_dataset, record_id,
                                  unnest(string_split({column}, {sep})) AS {element}
                           FROM {src} WHERE lk_nz({column}) IS NOT NULL)
            WHERE lk_nz({element}) IS NOT NULL
        """)  # fmt: skip

    # One dictionary per field: distinct raw value k -> standardised v and reason why.
    dictionaries = {}
    for name, inputs, steps, reason, outputs in _field_plans(formats, today):
        dictionary = f"__lk_std_d_{name}"
        temp_tables.append(dictionary)
        values = " UNION ALL ".join(
            f"SELECT {c} AS x FROM {element_table.get(c, src)}" for c in inputs
        )
        distinct = f"SELECT DISTINCT x FROM ({values}) WHERE x IS NOT NULL"
        registered = _register_transliterations(con, distinct) if name in _NAME_DICTIONARIES else None
        base = (f"SELECT d.x AS __lk_raw, coalesce(CAST(t.t AS VARCHAR), d.x) AS x FROM ({distinct}) d "
                f"LEFT JOIN {registered} t ON t.k = d.x") if registered else f"SELECT x AS __lk_raw, x FROM ({distinct})"
        staged = _staged(base, steps("x", "z"))
        flat = ", ".join(f"{expr} AS v{suffix}" for suffix, expr in outputs)
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {dictionary} AS"
                f" SELECT __lk_raw AS k, {flat}, {reason} AS why FROM ({staged})"
            )
        finally:
            if registered:
                con.unregister(registered)
        dictionaries[name] = (dictionary, inputs, outputs)

    if keep_raw_values:
        con.execute(
            f"CREATE OR REPLACE TABLE {out_table}_raw_values AS "
            + " UNION ALL ".join(
                f"SELECT {_q(name)} AS field, k AS v FROM {table}" for name, (table, _, _) in dictionaries.items()
            )
        )

    # Phonetic keys and canonical forenames: Python over distinct names only.
    d = {name: table for name, (table, _, _) in dictionaries.items()}
    for phon_table, names_sql in (
        (first_phon, f"SELECT v FROM {d['first']} UNION"
                     f" SELECT v_first FROM {d['full']}"),
        (surname_phon, f"SELECT v FROM {d['surname']} UNION SELECT v_surname FROM {d['full']}"),
    ):  # fmt: skip
        names = [r[0] for r in con.execute(f"SELECT * FROM ({names_sql}) t(n) WHERE n IS NOT NULL").fetchall()]
        frame = pd.DataFrame(
            {"name": pd.Series(names, dtype=object),
             "metaphone": pd.Series([metaphone(n) for n in names], dtype=object)}
        )  # fmt: skip
        con.register("__lk_std_frame", frame)
        try:
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE {phon_table} AS
                SELECT CAST(f.name AS VARCHAR) AS name, CAST(f.metaphone AS VARCHAR) AS metaphone,
                       coalesce(v.canonical, CAST(f.name AS VARCHAR)) AS canonical
                FROM __lk_std_frame f LEFT JOIN {_VARIANTS_TABLE} v ON v.name = f.name
            """)  # fmt: skip
        finally:
            con.unregister("__lk_std_frame")

    select = ", ".join(
        f"{table}.v{suffix} AS z_{name}{suffix}"
        for name, (table, _, outputs) in dictionaries.items()
        for suffix, _ in outputs
    )
    join_sql = " ".join(
        f"LEFT JOIN {table} ON {table}.k = __lk_s.{inputs[0]}"
        for table, inputs, _ in dictionaries.values()
    )
    combined = _staged(
        f"SELECT __lk_s.rowid AS rid, __lk_s.source_dataset, __lk_s.record_id, {select}"
        f" FROM {src} AS __lk_s {join_sql}",
        _COMBINE_STEPS,
    )
    con.execute(f"""
        CREATE OR REPLACE TABLE {out_table} AS
        WITH alias_names AS (
          SELECT a.rid, list(d.v_first || ' ' || d.v_surname) AS names,
                 list(d.v_surname) AS surnames, list(d.v_first) AS firsts
          FROM {al} a JOIN {d['full']} d ON d.k = a.alias_raw GROUP BY a.rid
        ), alias_dobs AS (
          SELECT a.rid, list(d.v) AS dobs
          FROM {ad} a JOIN {d['dob']} d ON d.k = a.dob_raw GROUP BY a.rid
        )
        SELECT
          n.source_dataset, n.record_id,
          n.z_s_first AS first_name, n.z_s_middle AS middle_names, n.z_s_surname AS surname,
          f.canonical AS forename_canonical,
          f.metaphone AS first_name_metaphone,
          s.metaphone AS surname_metaphone,
          n.z_s_full AS full_name,
          {_one_or_set("n.z_s_full", "an.names")} AS name_set,
          {_one_or_set("n.z_s_surname", "an.surnames")} AS surname_set,
          {_one_or_set("n.z_s_first", "an.firsts")} AS forename_set,
          n.z_dob AS date_of_birth,
          {_one_or_set("n.z_dob", "adb.dobs")} AS dob_set,
          CAST(year(n.z_dob) AS INTEGER) AS year_of_birth,
          n.z_sex AS sex,
          n.z_pnc_id AS pnc_id, n.z_pnc_key AS pnc_key,
          n.z_cro AS cro_number,
          n.z_prison AS prison_number,
          n.z_crn AS crn,
          n.z_postcode AS postcode,
          n.z_postcode_district AS postcode_district,
          n.z_postcode_area AS postcode_area
        FROM ({combined}) n
        LEFT JOIN alias_names an ON an.rid = n.rid
        LEFT JOIN alias_dobs adb ON adb.rid = n.rid
        LEFT JOIN {first_phon} f ON f.name = n.z_s_first
        LEFT JOIN {surname_phon} s ON s.name = n.z_s_surname
    """)  # fmt: skip

    # Invalid values: only dictionary entries with a reason are joined back to the rows.
    parts = []
    for name, (table, inputs, _) in dictionaries.items():
        for column, field in zip(inputs, _INVALID_FIELDS[name]):
            rows_table = element_table.get(column, src)
            parts.append(
                f"SELECT r.source_dataset, r.record_id, {_q(field)} AS field, d.why AS reason,"
                f" r.{column} AS raw_value FROM {rows_table} r"
                f" JOIN (SELECT k, why FROM {table} WHERE why IS NOT NULL) d ON d.k = r.{column}"
            )
    invalid_table = f"{out_table}_invalid"
    con.execute(f"CREATE OR REPLACE TABLE {invalid_table} AS\n" + "\nUNION ALL\n".join(parts))

    invalid: dict[str, dict[str, int]] = {}
    for field, reason, count in con.execute(
        f"SELECT field, reason, count(*) FROM {invalid_table} GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        invalid.setdefault(field, {})[reason] = int(count)
    rows, dates_non_blank = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE lk_nz(date_of_birth) IS NOT NULL) FROM {src}"
    ).fetchall()[0]
    dob_reasons = invalid.get("date_of_birth", {})
    for table in temp_tables:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return StandardiseStats(
        rows=int(rows),
        invalid=invalid,
        dates_present=int(dates_non_blank) - dob_reasons.get("placeholder", 0),
        unreadable_dates=dob_reasons.get("unparseable", 0) + dob_reasons.get("impossible_date", 0),
    )
