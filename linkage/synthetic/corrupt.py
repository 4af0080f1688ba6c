"""Corruptions of single values, applied to the few records a profile picks.

Each function takes an object array of strings (upper case, or ISO dates) and a
``numpy.random.Generator`` and returns ``(new_values, changed)``: callers log a
corruption only where ``changed`` is true (a nickname for a name that has none, say,
leaves the value alone). Loops here run over the selected records only, a few
percent of a column, so they stay cheap next to the vectorised bulk.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

_KEYBOARD_ROWS = ("QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM")


def _neighbours() -> dict[str, str]:
    pos = {c: (r, i) for r, row in enumerate(_KEYBOARD_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        near = []
        for rr in (r - 1, r, r + 1):
            if 0 <= rr < 3:
                for ii in (i - 1, i, i + 1):
                    if 0 <= ii < len(_KEYBOARD_ROWS[rr]) and (rr, ii) != (r, i):
                        near.append(_KEYBOARD_ROWS[rr][ii])
        out[c] = "".join(near)
    return out


KEYBOARD_NEIGHBOURS = _neighbours()
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Sound-alike rewrites for names without a listed variant: (pattern, replacement).
PHONETIC_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"PH", "F"),
        (r"CK", "K"),
        (r"(?<=[AEIOU])Y$", "IE"),
        (r"IE$", "Y"),
        (r"EY$", "IE"),
        (r"([LTNSRMDFPG])\1", r"\1"),
        (r"(?<=[AEIOU])([LTNRM])(?=[AEIOUY])", r"\1\1"),
        (r"C(?=[AOU])", "K"),
        (r"K(?=[AOU])", "C"),
        (r"(?<=[AEIOU])S(?=[AEIOU])", "Z"),
        (r"(?<=[AEIOU])Z(?=[AEIOU])", "S"),
        (r"EI", "IE"),
        (r"IE(?!$)", "EI"),
        (r"OU", "OW"),
        (r"EE", "EA"),
        (r"EA", "EE"),
        (r"AI", "AY"),
        (r"TH", "T"),
        (r"^Y", "J"),
        (r"^J(?=[AEIOU])", "Y"),
        (r"Y(?=[^AEIOU]|$)", "I"),
        (r"(?<=[^AEIOU])I(?=[^AEIOU])", "Y"),
        (r"W(?=[AEIOU])", "V"),
        (r"X", "KS"),
        (r"QU", "KW"),
        (r"(?<=[A-Z])E$", ""),
        (r"(?<=[^AEIOU])$", "E"),
    )
)


def _uniform(rng: np.random.Generator, n: int, k: int = 3) -> list[list[float]]:
    return rng.random((n, k)).tolist()


def typo(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One keying error: a neighbouring key, a dropped, doubled or transposed letter."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, (u0, u1, u2)) in enumerate(zip(values.tolist(), _uniform(rng, len(values)))):
        if not v or len(v) < 2:
            continue
        # keying errors are rarer in the first letter
        pos = 1 + int(u1 * (len(v) - 1)) if u2 > 0.1 else 0
        c = v[pos]
        if u0 < 0.45 and c in KEYBOARD_NEIGHBOURS:
            near = KEYBOARD_NEIGHBOURS[c]
            new = v[:pos] + near[int(u2 * 997) % len(near)] + v[pos + 1 :]
        elif u0 < 0.65 and len(v) > 3:
            new = v[:pos] + v[pos + 1 :]
        elif u0 < 0.8:
            new = v[:pos] + c + v[pos:]
        else:
            pos = min(pos, len(v) - 2)
            new = v[:pos] + v[pos + 1] + v[pos] + v[pos + 2 :]
        if new != v:
            out[i], changed[i] = new, True
    return out, changed


def phonetic(
    values: np.ndarray, rng: np.random.Generator, variants: dict[str, tuple[str, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """A sound-alike spelling: a listed variant (MOHAMMED -> MUHAMMAD) or a rewrite rule."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    n_rules = len(PHONETIC_RULES)
    for i, (v, (u0, u1, _)) in enumerate(zip(values.tolist(), _uniform(rng, len(values)))):
        if not v:
            continue
        alts = variants.get(v)
        if alts:
            new = alts[int(u0 * len(alts))]
        else:
            new = v
            start = int(u1 * n_rules)
            for k in range(n_rules):
                pattern, repl = PHONETIC_RULES[(start + k) % n_rules]
                cand = pattern.sub(repl, v, count=1)
                if cand != v and len(cand) >= 2:
                    new = cand
                    break
        if new != v:
            out[i], changed[i] = new, True
    return out, changed


def choose_from(
    values: np.ndarray, rng: np.random.Generator, table: dict[str, tuple[str, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """Replace each value by one of its entries in ``table`` (nicknames), if it has any."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, u) in enumerate(zip(values.tolist(), rng.random(len(values)).tolist())):
        alts = table.get(v)
        if alts:
            new = alts[int(u * len(alts))]
            if new != v:
                out[i], changed[i] = new, True
    return out, changed


def initial(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the first letter kept (``J SMITH``)."""
    out = np.array([v[:1] for v in values.tolist()], dtype=object)
    return out, np.array([len(v) > 1 for v in values.tolist()], dtype=bool)


def hyphen(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """MARY-JANE -> MARY JANE, MARYJANE or MARY; SMITH-JONES -> SMITH JONES, SMITHJONES, SMITH."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, u) in enumerate(zip(values.tolist(), rng.random(len(values)).tolist())):
        if "-" not in v:
            continue
        if u < 0.5:
            new = v.replace("-", " ")
        elif u < 0.7:
            new = v.replace("-", "")
        elif u < 0.85:
            new = v.split("-")[0]
        else:
            new = v.split("-")[-1]
        out[i], changed[i] = new, True
    return out, changed


def apostrophe(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """O'CONNOR -> OCONNOR (mostly) or O CONNOR."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, u) in enumerate(zip(values.tolist(), rng.random(len(values)).tolist())):
        if "'" in v:
            out[i], changed[i] = v.replace("'", "" if u < 0.7 else " "), True
    return out, changed


def mc_space(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MCDONALD -> MC DONALD (the production cleaner joins them back)."""
    out = values.copy()
    changed = np.array([v.startswith("MC") and len(v) > 4 and v[2] != " " for v in values.tolist()])
    for i in np.flatnonzero(changed):
        out[i] = "MC " + values[i][2:]
    return out, changed


SYSTEM_PREFIXES = ("DUPLICATE_", "MIG_ERROR_", "NO_SHOW_")


def system_prefix(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A migration or case-management prefix glued to the name (``DUPLICATE_SMITH``)."""
    picks = rng.integers(0, len(SYSTEM_PREFIXES), len(values)).tolist()
    out = np.array([SYSTEM_PREFIXES[p] + v for v, p in zip(values.tolist(), picks)], dtype=object)
    return out, np.array([bool(v) for v in values.tolist()], dtype=bool)


# ---- dates (ISO yyyy-mm-dd strings) -----------------------------------------------


def _valid(y: int, m: int, d: int) -> bool:
    try:
        dt.date(y, m, d)
    except ValueError:
        return False
    return 1900 <= y <= 2025


def dob_day_month_swap(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12 March keyed as 3 December; only possible when the day is 12 or less."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.tolist()):
        if v:
            y, m, d = int(v[:4]), int(v[5:7]), int(v[8:10])
            if d <= 12 and d != m:
                out[i], changed[i] = f"{y:04d}-{d:02d}-{m:02d}", True
    return out, changed


def dob_one_digit(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One digit of the date wrong (the year's last two digits, the month or the day)."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    positions = (2, 3, 5, 6, 8, 9)
    for i, (v, (u0, u1, _)) in enumerate(zip(values.tolist(), _uniform(rng, len(values)))):
        if not v:
            continue
        start = int(u0 * 6)
        for k in range(6):
            pos = positions[(start + k) % 6]
            digit = str((int(v[pos]) + 1 + int(u1 * 9)) % 10)
            cand = v[:pos] + digit + v[pos + 1 :]
            if _valid(int(cand[:4]), int(cand[5:7]), int(cand[8:10])):
                out[i], changed[i] = cand, True
                break
    return out, changed


def _shift_days(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    days = np.array(values.tolist(), dtype="datetime64[D]") + offsets.astype("timedelta64[D]")
    return np.array(np.datetime_as_string(days, unit="D").tolist(), dtype=object), np.ones(len(values), bool)


def dob_one_day(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A day out either way."""
    return _shift_days(values, rng.choice(np.array([-1, 1]), len(values)))


def dob_year_off(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A year or a few out, as when an age is misheard or the year mistyped by more than a digit."""
    years = rng.choice(
        np.array([-1, 1, -2, 2, -3, 3, -4, 4]), len(values), p=[0.3, 0.3, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]
    )
    return _shift_days(values, np.round(years * 365.25).astype(np.int64) + rng.integers(-40, 41, len(values)))


def dob_wrong_month(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Right day, wrong month."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, u) in enumerate(zip(values.tolist(), rng.random(len(values)).tolist())):
        y, m, d = int(v[:4]), int(v[5:7]), int(v[8:10])
        new_m = (m - 1 + 1 + int(u * 11)) % 12 + 1
        if _valid(y, new_m, d):
            out[i], changed[i] = f"{y:04d}-{new_m:02d}-{d:02d}", True
    return out, changed


# ---- postcodes and identifiers ---------------------------------------------------------


def char_typo(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One letter or digit replaced by another of the same kind, or two neighbours swapped."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, (u0, u1, u2)) in enumerate(zip(values.tolist(), _uniform(rng, len(values)))):
        spots = [k for k, c in enumerate(v) if c.isalnum()]
        if not spots:
            continue
        pos = spots[int(u0 * len(spots))]
        c = v[pos]
        if u2 < 0.2 and pos + 1 < len(v) and v[pos + 1].isdigit() and c.isdigit() and v[pos + 1] != c:
            new = v[:pos] + v[pos + 1] + c + v[pos + 2 :]
        elif c.isdigit():
            new = v[:pos] + str((int(c) + 1 + int(u1 * 9)) % 10) + v[pos + 1 :]
        else:
            new = v[:pos] + _LETTERS[(_LETTERS.index(c.upper()) + 1 + int(u1 * 25)) % 26] + v[pos + 1 :]
        if new != v:
            out[i], changed[i] = new, True
    return out, changed


_CENTURY = re.compile(r"^\d{4}(/|\d{7}[A-Za-z]?$)")


def digit_typo(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One digit of a reference number wrong, or two neighbouring digits swapped.

    Either way a modulus-23 check letter no longer matches: 23 is prime and divides
    neither a single-digit change nor a transposition. The century of a long PNC ID is
    left alone, because the check letter does not cover it.
    """
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, (u0, u1, u2)) in enumerate(zip(values.tolist(), _uniform(rng, len(values)))):
        first = 2 if _CENTURY.match(v) else 0
        spots = [k for k, c in enumerate(v) if c.isdigit() and k >= first]
        if not spots:
            continue
        pos = spots[int(u0 * len(spots))]
        c = v[pos]
        if u2 < 0.3 and pos + 1 < len(v) and v[pos + 1].isdigit() and v[pos + 1] != c:
            new = v[:pos] + v[pos + 1] + c + v[pos + 2 :]
        else:
            new = v[:pos] + str((int(c) + 1 + int(u1 * 9)) % 10) + v[pos + 1 :]
        out[i], changed[i] = new, True
    return out, changed


def drop_check_letter(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``2003/0011985X`` -> ``2003/0011985``."""
    out = np.array([v[:-1] if v and v[-1].isalpha() else v for v in values.tolist()], dtype=object)
    return out, np.array([bool(v) and v[-1].isalpha() for v in values.tolist()], dtype=bool)
