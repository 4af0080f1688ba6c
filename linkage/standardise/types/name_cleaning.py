"""How ``type: person_name`` cleans names: the word lists and the SQL macros built from them.

* Names are upper-case ``A-Z`` and single spaces. Other scripts are transliterated and
  accents stripped (``Ł``, ``Ø``, ``ß``, ``Æ`` too); apostrophes are dropped (``O'CONNOR`` ->
  ``OCONNOR``); every other non-letter, **hyphens included, becomes a space** (``MARY-JANE``
  -> ``MARY JANE``). A double-barrelled surname keeps both parts in one column (``SMITH
  JONES``), and its phonetic key ignores the space. ``MC``/``MAC`` followed by a word is
  joined to it (``MC DONALD`` -> ``MCDONALD``); a surname ``O CONNOR`` becomes ``OCONNOR``.
* Removed, as the field's options list them: ``system_prefixes`` (``MIG_ERROR_``...) wherever
  they start a word; leading ``titles`` (``MR``, ``DR``, ``LORD``...; only when a name
  follows, so a surname ``LORD`` survives); ``suffixes`` (``JNR``, ``III``);
  ``placeholder_phrases`` and ``placeholder_words`` (``NOT ENTERED``, ``UNKNOWN``, ``FNU``...)
  wherever they appear; whole values that are ``placeholders`` (a lone title, ``N/A``,
  ``TEST``). A name with nothing left is missing, with a reason (``no_letters``,
  ``placeholder``). A surname or single-string name carrying one of the
  ``organisation_words`` (``LTD``, ``COUNCIL``...) is missing, reason ``organisation``.
* A single-string name is split into forename, middle names and surname by
  ``full_name_order``: ``auto`` reads ``SURNAME, Forenames`` at the comma; otherwise, when the
  case is mixed, the all-capitals words are the surname (``Mr Arthur MORGAN``, ``MORGAN
  Arthur``); otherwise the last word is the surname. ``forenames_first``: the last word is
  the surname; ``surname_first``: the first word is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import jellyfish

from linkage.standardise.sql import Step, alt, register_macros

TITLES = (
    "MR", "MRS", "MS", "MISS", "MX", "DR", "SIR", "DAME", "LORD", "LADY", "REV", "REVD",
    "REVEREND", "PROF", "MASTER", "MSTR", "FR", "FATHER", "SGT", "CAPT", "CAPTAIN", "MADAM",
    "MADAME", "MME", "MLLE", "MISSES",
)  # fmt: skip
NAME_SUFFIXES = ("JNR", "JR", "SNR", "SR", "II", "III", "IV", "ESQ")
# Placeholder phrases removed wherever they appear (matched after punctuation became spaces).
PLACEHOLDER_PHRASES = (
    "NOT ENTERED", "NOT KNOWN", "NOT GIVEN", "NOT STATED", "NOT RECORDED", "NOT SPECIFIED",
    "NOT APPLICABLE", "NOT AVAILABLE", "PERSON UNKNOWN", "UNKNOWN PERSON", "NAME UNKNOWN",
    "NO NAME", "A N OTHER", "NO FIRST NAME", "NO MIDDLE NAME", "NO SURNAME",
)  # fmt: skip
# Placeholder words removed as whole words.
PLACEHOLDER_WORDS = (
    "UNKNOWN", "UNKOWN", "UNKNOW", "UNK", "UNKN", "NK", "NONE", "NULL", "NIL", "NAN", "TBC",
    "TBA", "ANON", "ANONYMOUS", "REFUSED", "REDACTED", "WITHHELD", "NONAME", "UNNAMED", "FNU",
    "LNU", "NFN", "NMN", "AKA", "ALIAS", "XX", "XXX", "XXXX", "XXXXX", "ZZ", "ZZZ", "ZZZZ",
)  # fmt: skip
# Whole cleaned values that are not names (a lone title, N/A, test values...).
PLACEHOLDER_VALUES = (
    "NA", "N A", "N K", "X", "Z", "NO", "NOT", "TEST", "DUMMY", "ANOTHER", "DEFENDANT",
    "MR", "MRS", "MS", "MISS", "MX", "DR", "MSTR",
)  # fmt: skip


@dataclass(frozen=True)
class Lexicon:
    """The word lists one person-name field cleans with (upper case)."""

    titles: tuple[str, ...] = TITLES
    suffixes: tuple[str, ...] = NAME_SUFFIXES
    placeholder_phrases: tuple[str, ...] = PLACEHOLDER_PHRASES
    placeholder_words: tuple[str, ...] = PLACEHOLDER_WORDS
    placeholders: tuple[str, ...] = PLACEHOLDER_VALUES
    system_prefixes: tuple[str, ...] = ()
    organisation_words: tuple[str, ...] = ()
    full_name_order: str = "auto"

    @property
    def suffix(self) -> str:
        """The macro-name suffix of this lexicon: its macros are installed once per connection."""
        return "_" + hashlib.sha1(repr(self).encode()).hexdigest()[:10]


# Lexicon-free macros: characters, the surname O-prefix, the rest of a forename string.
register_macros([
    (
        "lk__name_chars",
        "x",
        r"CASE WHEN regexp_matches(x, '[^\x00-\x7F]') THEN"
        " translate(strip_accents(replace(replace(replace(replace(replace(replace(replace(replace("
        "x, 'ß', 'ss'), 'ẞ', 'SS'), 'Æ', 'AE'), 'æ', 'ae'), 'Œ', 'OE'), 'œ', 'oe'),"
        " 'Þ', 'TH'), 'þ', 'th')), 'ŁłØøĐđĦħıĿŀ', 'LlOoDdHhiLl') ELSE x END",
    ),
    ("lk__surname_final", "c", r"regexp_replace(c, '^O ([A-Z]{2,})', 'O\1')"),
    ("lk__rest", "f", "nullif(substr(f, strpos(f, ' ') + 1), f)"),
    # an O before an all-capitals word of a mixed-case name is a surname prefix (O CONNOR)
    (
        "lk__split_prep",
        "s",
        r"CASE WHEN regexp_matches(s, '[a-z]')"
        r" THEN regexp_replace(s, '\bO ([A-Z]{2,}\b)', 'O\1', 'g') ELSE s END",
    ),
])  # fmt: skip

_LAST_WORD_SPLIT = (r"struct_pack(fore := regexp_replace(s, '[ ,]*[^ ,]+[ ,]*$', ''),"
                    r" sur := regexp_extract(s, '([^ ,]+)[ ,]*$', 1))")
_SPLITS = {
    # "SURNAME, Forenames"; else, when the case is mixed, the all-capitals words are the
    # surname; else the last word.
    "auto": r"""CASE
          WHEN regexp_matches(s, '^[^,]*[A-Za-z][^,]*,[^,]*[A-Za-z]') THEN struct_pack(
            fore := substr(s, strpos(s, ',') + 1), sur := left(s, strpos(s, ',') - 1))
          WHEN regexp_matches(s, '[a-z]') AND regexp_matches(s, '\b(Mc|Mac)?[A-Z]{2,}\b')
          THEN struct_pack(
            fore := regexp_replace(s, '\b(Mc|Mac)?[A-Z]{2,}\b', '', 'g'),
            sur := array_to_string(regexp_extract_all(s, '\b((?:Mc|Mac)?[A-Z]{2,})\b', 1), ' '))
          ELSE """ + _LAST_WORD_SPLIT + " END",
    "forenames_first": _LAST_WORD_SPLIT,
    "surname_first": (r"struct_pack(fore := regexp_replace(s, '^[ ,]*[^ ,]+[ ,]*', ''),"
                      r" sur := regexp_extract(s, '^[ ,]*([^ ,]+)', 1))"),
}


def _replace(expr: str, words, pattern: str, to: str) -> str:
    """``regexp_replace(expr, pattern with @W@ the alternation of words, to)``; ``expr``
    unchanged when there are no words."""
    return f"regexp_replace({expr}, '{pattern.replace('@W@', alt(words))}', '{to}', 'g')" if words else expr


def lexicon_macros(lx: Lexicon) -> str:
    """SQL creating the lexicon's macros (``lk__name_prep<suffix>``...)."""
    s = lx.suffix
    prep = "lk__name_chars(x)"
    prep = _replace(prep, lx.system_prefixes, r"(?i)(^|[^A-Z])(@W@)+", r"\1")
    prep = f"regexp_replace(regexp_replace({prep}, '[''’‘`´ʼʻ]', '', 'g'), '[^A-Za-z,]+', ' ', 'g')"
    prep = f"regexp_replace({prep}, '(?i)\\b(MC|MAC) ([A-Z]{{2,}})', '\\1\\2', 'g')"
    prep = _replace(prep, (*lx.placeholder_phrases, *lx.suffixes), r"(?i)\b(@W@)\b", " ")
    prep = f"trim(regexp_replace(regexp_replace({prep}, ' *, *', ',', 'g'), ' {{2,}}', ' ', 'g'))"
    clean = _replace("upper(replace(s, ',', ' '))", (*lx.placeholder_phrases, *lx.placeholder_words), r"\b(@W@)\b", " ")
    clean = f"trim(regexp_replace({clean}, ' {{2,}}', ' ', 'g'))"
    if lx.titles:
        clean = f"regexp_replace({clean}, '^(({alt(lx.titles)}) )+', '')"
    clean = f"regexp_replace({clean}, '\\b(MC|MAC) ([A-Z]{{2,}})', '\\1\\2', 'g')"
    if lx.placeholders:
        clean = f"regexp_replace({clean}, '^({alt(lx.placeholders)})?$', '')"
    is_org = (f"coalesce(regexp_matches(x, '(?i)\\b({alt(lx.organisation_words)})\\b'), false)"
              if lx.organisation_words else "false")
    macros = [
        (f"lk__name_prep{s}", "x", prep),
        (f"lk__clean{s}", "s", f"nullif({clean}, '')"),
        (f"lk__is_org{s}", "x", is_org),
        (f"lk__split{s}", "s", _SPLITS[lx.full_name_order]),
        (f"lk__split_result{s}", "f, s, org",
         "CASE WHEN org OR (f IS NULL AND s IS NULL) THEN struct_pack(first := CAST(NULL AS VARCHAR),"
         " middle := CAST(NULL AS VARCHAR), surname := CAST(NULL AS VARCHAR))"
         f" ELSE struct_pack(first := CAST(lk__clean{s}(split_part(f, ' ', 1)) AS VARCHAR),"
         f" middle := CAST(lk__clean{s}(lk__rest(f)) AS VARCHAR), surname := CAST(s AS VARCHAR)) END"),
        (f"lk_name_reason{s}", "x, org_check",
         f"CASE WHEN org_check AND lk__is_org{s}(lk__name_prep{s}(x)) THEN 'organisation'"
         " WHEN NOT regexp_matches(lk__name_chars(x), '[A-Za-z]') THEN 'no_letters'"
         " ELSE 'placeholder' END"),
    ]
    return ";\n".join(f"CREATE OR REPLACE TEMP MACRO {n}({p}) AS {b}" for n, p, b in macros)


# --------------------------------------------------------------------------------------
# Stage plans: each over a raw value x, the result in column o
# --------------------------------------------------------------------------------------


def forenames_steps(lx: Lexicon, x: str, o: str) -> list[Step]:
    """-> ``o``: every forename in the value, cleaned (first = first word)."""
    s = lx.suffix
    return [(f"{o}__p", f"lk__name_prep{s}({x})"), (o, f"lk__clean{s}({o}__p)")]


def surname_steps(lx: Lexicon, x: str, o: str) -> list[Step]:
    """-> ``o``: the cleaned surname (NULL for an organisation)."""
    s = lx.suffix
    return [
        (f"{o}__p", f"lk__name_prep{s}({x})"),
        (o, f"CASE WHEN lk__is_org{s}({o}__p) THEN NULL ELSE lk__surname_final(lk__clean{s}({o}__p)) END"),
    ]


def full_name_steps(lx: Lexicon, x: str, o: str) -> list[Step]:
    """-> ``o``: struct(first, middle, surname) of a single-string name."""
    s = lx.suffix
    return [
        (f"{o}__p", f"lk__name_prep{s}({x})"),
        (f"{o}__org", f"lk__is_org{s}({o}__p)"),
        (f"{o}__sp2", f"lk__split_prep({o}__p)"),
        (f"{o}__sp", f"lk__split{s}({o}__sp2)"),
        (f"{o}__f", f"lk__clean{s}({o}__sp.fore)"),
        (f"{o}__s", f"lk__surname_final(lk__clean{s}({o}__sp.sur))"),
        (o, f"lk__split_result{s}({o}__f, {o}__s, {o}__org)"),
    ]


def metaphone(name: str | None) -> str | None:
    """The phonetic key of a name. Spaces are ignored, so ``SMITH JONES`` and
    ``SMITHJONES`` share a key."""
    if not name:
        return None
    return jellyfish.metaphone(name.replace(" ", "")) or None
