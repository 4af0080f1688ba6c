"""Justice reference numbers: allocation, check letters, and the forms they are written in.

PNC ID, CRO and SF-CRO numbers carry a modulus-23 check letter over their digits
(DOMAIN.md, "Reference numbers"). Prison numbers and CRNs have no check character.

Numbers are unique by construction at any population size: a ``SerialCounter`` hands out
serials in order, chunk after chunk, from one count per space (per two-digit year for
PNC, CRO and SF-CRO numbers, one space for prison numbers and CRNs) through a seeded
bijection, so they look random, never repeat, and need no lookup of what was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHECK_ALPHABET = "ZABCDEFGHJKLMNPQRTUVWXY"
_ALPHABET = np.array(list(CHECK_ALPHABET), dtype=object)

# Values that turn up in PNC and CRO fields instead of a number.
JUNK_VALUES = np.array(
    ["NONE", "N/A", "?", "UNKNOWN", "NK", "-", "0", "TBC", "NOT KNOWN", "n/a", "none"], dtype=object
)
# Placeholders that pass their own check: all zeros.
PNC_PLACEHOLDER = "0000/0000000Z"
CRO_PLACEHOLDER = "000000/00Z"
# Dummy PNC IDs of the kind found in live data (1933/0993399H is listed as one in
# ministryofjustice/hmpps-person-match-score); each passes its check letter.
DUMMY_PNCS = np.array(["1933/0993399H", "1999/9999999V", "2000/0000001A", "1900/0000000Z"], dtype=object)

# Prison numbers: letter, four digits, two letters (no I, O, S in the last two). A and G
# are by far the most common first letters; each letter appears once here so that distinct
# codes give distinct numbers.
_PRISON_FIRST = np.array(list("AGB"), dtype=object)
_PRISON_TAIL = np.array(list("ABCDEFGHJKLMNPQRTUVWXYZ"), dtype=object)
_CRN_LETTERS = np.array(list("ABCDEFGHJKLMNPRSTVWX"), dtype=object)


def check_letters(numbers: np.ndarray) -> np.ndarray:
    """Modulus-23 check letter of each integer (0 -> Z, 1 -> A, ...)."""
    return _ALPHABET[np.asarray(numbers, dtype=np.int64) % 23]


def pnc_check(year: np.ndarray, serial: np.ndarray) -> np.ndarray:
    """Check letter over the two-digit year and the 7-digit serial (``YYNNNNNNN``)."""
    return check_letters((np.asarray(year) % 100) * 10**7 + np.asarray(serial))


def cro_check(year: np.ndarray, serial: np.ndarray) -> np.ndarray:
    """Check letter over the two-digit year and the 6-digit serial (``YYNNNNNN``)."""
    return check_letters((np.asarray(year) % 100) * 10**6 + np.asarray(serial))


def sf_cro_check(year: np.ndarray, serial: np.ndarray) -> np.ndarray:
    """Check letter over the two-digit year and the 5-digit serial of an SF-CRO number."""
    return check_letters((np.asarray(year) % 100) * 10**5 + np.asarray(serial))


@dataclass
class SerialCounter:
    """Unique serials in each of ``spaces`` spaces (a two-digit year, or one space).

    Space ``k`` has handed out ``given[k]`` serials so far; the next is
    ``(a[k] * given[k] + b[k]) mod m + first``, with ``a[k]`` prime to ``m``: a bijection
    of the count, so serials look random and cannot repeat until a space has given ``m``.
    The counts are the only state carried from chunk to chunk.
    """

    a: np.ndarray
    b: np.ndarray
    m: int
    first: int
    given: np.ndarray
    name: str

    @classmethod
    def seeded(cls, rng: np.random.Generator, m: int, *, spaces: int = 1, first: int = 0, name: str = "") -> SerialCounter:
        a = np.empty(spaces, dtype=np.int64)
        for k in range(spaces):
            while True:
                a[k] = int(rng.integers(m // 3, m - 1))
                if np.gcd(int(a[k]), m) == 1:
                    break
        b = rng.integers(0, m, spaces).astype(np.int64)
        return cls(a, b, m, first, np.zeros(spaces, dtype=np.int64), name)

    def __call__(self, space: np.ndarray | None = None, count: int | None = None) -> np.ndarray:
        """The next serial for each element of ``space`` (in order); or ``count`` serials of space 0."""
        space = np.zeros(count or 0, dtype=np.int64) if space is None else np.asarray(space, dtype=np.int64)
        n = len(space)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        counts = np.bincount(space, minlength=len(self.given))
        order = np.argsort(space, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        count_so_far = self.given[space] + rank
        if count_so_far.max() >= self.m:
            raise OverflowError(f"{self.name or 'serial'} space exhausted: more than {self.m:,} serials in one space")
        self.given += counts
        return (self.a[space] * count_so_far + self.b[space]) % self.m + self.first


def prison_numbers(codes: np.ndarray) -> np.ndarray:
    """``A1234BC`` from integers below 3 * 10_000 * 23 * 23, one number per integer."""
    codes = np.asarray(codes, dtype=np.int64)
    tail2 = codes % 23
    tail1 = (codes // 23) % 23
    digits = (codes // 529) % 10_000
    first = (codes // 5_290_000) % len(_PRISON_FIRST)
    return _PRISON_FIRST[first] + _fmt_int(digits, 4) + _PRISON_TAIL[tail1] + _PRISON_TAIL[tail2]


PRISON_NUMBER_SPACE = len(_PRISON_FIRST) * 10_000 * 23 * 23


def crns(codes: np.ndarray) -> np.ndarray:
    """``X123456`` from integers below 20 * 10**6."""
    codes = np.asarray(codes, dtype=np.int64)
    return _CRN_LETTERS[(codes // 10**6) % len(_CRN_LETTERS)] + _fmt_int(codes % 10**6, 6)


CRN_SPACE = len(_CRN_LETTERS) * 10**6


def _fmt_int(values: np.ndarray, width: int = 0) -> np.ndarray:
    """Integers as an object array of strings, zero-padded to ``width``."""
    return np.array([f"{v:0{width}d}" for v in np.asarray(values).tolist()], dtype=object)


# ---- written forms -----------------------------------------------------------------

# PNC forms and how often each is seen (a judgement; long form dominates system fields).
PNC_FORMS = ("long", "no_slash", "short", "long_year_short_serial", "short_year_long_serial")


def format_pnc(year: np.ndarray, serial: np.ndarray, check: np.ndarray, form: np.ndarray) -> np.ndarray:
    """Write PNC IDs, one form code (index into PNC_FORMS) per value.

    >>> format_pnc(np.array([2003] * 5), np.array([11985] * 5), np.array(["X"] * 5), np.arange(5)).tolist()
    ['2003/0011985X', '20030011985X', '03/11985X', '2003/11985X', '03/0011985X']
    """
    out = np.empty(len(year), dtype=object)
    rows = zip(np.asarray(year).tolist(), np.asarray(serial).tolist(), np.asarray(check).tolist())
    for i, ((y, s, c), f) in enumerate(zip(rows, np.asarray(form).tolist())):
        if f == 0:
            out[i] = f"{y:04d}/{s:07d}{c}"
        elif f == 1:
            out[i] = f"{y:04d}{s:07d}{c}"
        elif f == 2:
            out[i] = f"{y % 100:02d}/{s}{c}"
        elif f == 3:
            out[i] = f"{y:04d}/{s}{c}"
        else:
            out[i] = f"{y % 100:02d}/{s:07d}{c}"
    return out


def format_cro(
    year: np.ndarray, serial: np.ndarray, check: np.ndarray, sf: np.ndarray, padded: np.ndarray
) -> np.ndarray:
    """Write CRO numbers: ``065656/91H`` (padded) or ``65656/91H``; SF form ``SF91/65656H``.

    >>> format_cro(np.array([91, 91]), np.array([65656, 65656]), np.array(["H", "H"]),
    ...            np.array([False, False]), np.array([True, False])).tolist()
    ['065656/91H', '65656/91H']
    """
    out = np.empty(len(year), dtype=object)
    rows = zip(
        np.asarray(year).tolist(),
        np.asarray(serial).tolist(),
        np.asarray(check).tolist(),
        np.asarray(sf).tolist(),
        np.asarray(padded).tolist(),
    )
    for i, (y, s, c, is_sf, pad) in enumerate(rows):
        if is_sf:
            out[i] = f"SF{y % 100:02d}/{s:05d}{c}" if pad else f"SF{y % 100:02d}/{s}{c}"
        else:
            out[i] = f"{s:06d}/{y % 100:02d}{c}" if pad else f"{s}/{y % 100:02d}{c}"
    return out


# ---- National Insurance numbers and unique learner numbers --------------------------------
# NINO: two prefix letters, six digits, a suffix A-D (HMRC National Insurance Manual,
# NIM39110). D, F, I, Q, U and V are never either prefix letter, O never the second, and
# BG, GB, KN, NK, NT, TN and ZZ are never given. Temporary numbers (no longer issued, still
# in old records) were ``TN`` + date of birth (ddmmyy) + ``M``/``F``. OO, CR, FY, MW, NC,
# PP, PY and PZ are administrative numbers that look like NINOs (NIM39110), and a number
# whose digits are one digit six times or 123456 is a dummy: the generator issues none of
# them (the standardiser's rules, ``standardise.types.identifier``).

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NINO_NOT_ISSUED = ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")
NINO_ADMINISTRATIVE = ("OO", "CR", "FY", "MW", "NC", "PP", "PY", "PZ")
NINO_DUMMY_DIGITS = frozenset([*(str(d) * 6 for d in range(10)), "123456"])
NINO_PREFIXES = np.array(
    [
        a + b
        for a in _LETTERS
        if a not in "DFIQUV"
        for b in _LETTERS
        if b not in "DFIOQUV" and a + b not in NINO_NOT_ISSUED + NINO_ADMINISTRATIVE
    ],
    dtype=object,
)
# The six-digit serials a NINO can have: every one but the dummies.
NINO_SERIALS = np.setdiff1d(np.arange(1_000_000), np.array(sorted(int(v) for v in NINO_DUMMY_DIGITS)))
NINO_SUFFIXES = np.array(list("ABCD"), dtype=object)
NINO_SPACE = len(NINO_PREFIXES) * len(NINO_SERIALS)
# The example NINO printed on forms, copied into extracts by people filling them in.
NINO_EXAMPLES = np.array(["QQ123456C", "QQ123456A", "AB123456C"], dtype=object)


def ninos(codes: np.ndarray, suffix: np.ndarray) -> np.ndarray:
    """``AB123457C`` from integers below NINO_SPACE (one number per integer) and suffix codes 0-3."""
    codes = np.asarray(codes, dtype=np.int64)
    return (
        NINO_PREFIXES[codes // len(NINO_SERIALS)]
        + _fmt_int(NINO_SERIALS[codes % len(NINO_SERIALS)], 6)
        + NINO_SUFFIXES[np.asarray(suffix, dtype=np.int64)]
    )


def temporary_ninos(dob: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """``TN`` + ddmmyy + ``M``/``F``: the temporary numbers of old benefit and tax records."""
    iso = np.datetime_as_string(np.asarray(dob, dtype="datetime64[D]"), unit="D").tolist()
    letters = np.where(np.asarray(sex) == 1, "F", "M").tolist()
    return np.array([f"TN{d[8:10]}{d[5:7]}{d[2:4]}{s}" for d, s in zip(iso, letters)], dtype=object)


# What the standardiser counts as a placeholder in any field (standardise.types.base).
_PLACEHOLDER_WORDS = ("", "NULL", "NONE", "NA", "NK", "UNKNOWN", "NOTKNOWN", "NOTRECORDED", "NOTENTERED")


def nino_reason(value: str) -> str | None:
    """Why a written NINO is not a usable one, by the standardiser's rules (None: it is).

    >>> [nino_reason(v) for v in ("ab 12 34 57 c", "AB123457", "TN010185M", "QA123457C", "AB123457E", "AB000000A",
    ...                           "AB123456C", "OO123457A", "")]
    [None, None, 'temporary', 'not_issued', 'malformed', 'placeholder', 'placeholder', 'administrative', 'missing']
    """
    if not value or not value.strip():
        return "missing"
    c = "".join(ch for ch in value.upper() if ch.isalnum())
    if c in _PLACEHOLDER_WORDS:
        return "placeholder"
    if c.startswith("TN"):
        return "temporary"
    shaped = len(c) in (8, 9) and c[:2].isalpha() and c[:2].isascii() and c[2:8].isdigit() and c[2:8].isascii()
    if shaped and c[:2] in NINO_ADMINISTRATIVE and (c[8:].isalpha() and c[8:].isascii() or not c[8:]):
        return "administrative"
    if not (shaped and c[8:] in ("", "A", "B", "C", "D")):
        return "malformed"
    if c[2:8] in NINO_DUMMY_DIGITS:
        return "placeholder"
    if c[0] in "DFIQUV" or c[1] in "DFIOQUV" or c[:2] in NINO_NOT_ISSUED:
        return "not_issued"
    return None


# ULN: ten digits, the first not zero; the first nine weighted 10 down to 2, summed, taken
# modulo 11; the check digit is 10 minus that remainder (a remainder of 0 is never issued).
# Equivalently all ten digits weighted 10 down to 1 sum to 10 modulo 11 (9276308686).
# The individualised learner record writes 9999999999 for a learner without a ULN yet.
ULN_PLACEHOLDER = "9999999999"
_ULN_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)


def uln_remainders(bases: np.ndarray) -> np.ndarray:
    """The weighted sum of each nine-digit base, modulo 11 (0 means no ULN has this base)."""
    bases = np.asarray(bases, dtype=np.int64)
    digits = (bases[:, None] // 10 ** np.arange(8, -1, -1, dtype=np.int64)) % 10
    return (digits * _ULN_WEIGHTS).sum(axis=1) % 11


def ulns(bases: np.ndarray) -> np.ndarray:
    """Ten-digit ULNs from nine-digit bases whose remainder is not 0.

    >>> ulns(np.array([927630868])).tolist()
    ['9276308686']
    """
    bases = np.asarray(bases, dtype=np.int64)
    r = uln_remainders(bases)
    if (r == 0).any():
        raise ValueError("a ULN base with remainder 0 has no check digit")
    return np.array([f"{b}{10 - k}" for b, k in zip(bases.tolist(), r.tolist())], dtype=object)


def uln_reason(value: str) -> str | None:
    """Why a written ULN is not a usable one (None: it is).

    >>> [uln_reason(v) for v in ("9276308686", "92763 08686", "9276308687", "0276308686", "9999999999", "")]
    [None, None, 'bad_check_digit', 'malformed', 'placeholder', 'missing']
    """
    if not value or not value.strip():
        return "missing"
    c = "".join(ch for ch in value if not ch.isspace() and ch != "-")
    words = "".join(ch for ch in c.upper() if ch.isalnum())
    if words in _PLACEHOLDER_WORDS or (len(c) > 2 and c == c[0] * len(c)):
        return "placeholder"
    if not (len(c) == 10 and c.isdigit() and c[0] != "0"):
        return "malformed"
    if sum(int(d) * (10 - i) for i, d in enumerate(c)) % 11 != 10:
        return "bad_check_digit"
    return None
