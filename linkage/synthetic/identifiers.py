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
