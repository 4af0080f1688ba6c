"""A person's details as one record holds them: the dirt every source shares.

``identity`` draws a record's names, date of birth and sex with the profile's
corruptions; ``pnc_field``, ``cro_field``, ``address`` and ``alias_strings`` do the same
for reference numbers, addresses and aliases. Each corruption is logged against the
record's row in a ``CorruptionLog``. Absence by design (a source that holds a PNC ID
only sometimes) is not a corruption and is not logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from linkage.synthetic import corrupt
from linkage.synthetic.identifiers import (
    CRO_PLACEHOLDER,
    DUMMY_PNCS,
    JUNK_VALUES,
    PNC_PLACEHOLDER,
    cro_check,
    format_cro,
    format_pnc,
    pnc_check,
    sf_cro_check,
)
from linkage.synthetic.names import Vocabulary
from linkage.synthetic.population import DAY, EXTRACT_DATE, MAX_ALIASES, People
from linkage.synthetic.profiles import Dirt

# How much more (or less) dirt each source carries than the profile's base rates: Libra
# names are typed from what a defendant says in court; PNC records are checked against
# fingerprints.
SOURCE_DIRT = {
    "pnc": 0.75, "prison": 1.0, "probation": 1.0, "libra": 1.45, "crest": 0.85,
    # the sources ``departments`` adds: OASys copies nDelius; DWP verifies identity at a
    # claim; employers key names and dates of birth themselves; providers key learners'.
    "oasys": 0.8, "programmes": 0.9, "dwp_benefits": 0.55, "hmrc_employment": 1.2, "learners": 1.0,
}  # fmt: skip


@dataclass
class CorruptionLog:
    """Corruptions applied to the rows of one source chunk: (row, field, corruption)."""

    rows: list[np.ndarray] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(self, rows: np.ndarray, field_name: str, kind: str) -> None:
        if len(rows):
            self.rows.append(np.asarray(rows, dtype=np.int64))
            self.fields.append(field_name)
            self.kinds.append(kind)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.rows:
            return np.empty(0, np.int64), np.empty(0, object), np.empty(0, object)
        sizes = [len(r) for r in self.rows]
        return (
            np.concatenate(self.rows),
            np.repeat(np.array(self.fields, dtype=object), sizes),
            np.repeat(np.array(self.kinds, dtype=object), sizes),
        )


@dataclass
class Context:
    """What every record builder needs: the chunk's random stream, the dirt, the names."""

    rng: np.random.Generator
    dirt: Dirt
    vocab: Vocabulary


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row per unit of ``counts``: (person row, occurrence 0..count-1)."""
    counts = np.asarray(counts, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return rows, np.arange(len(rows)) - np.repeat(starts, counts)


def pick(rng: np.random.Generator, rate: float, eligible: np.ndarray) -> np.ndarray:
    """Rows (indices) where ``eligible`` and a coin with probability ``rate`` comes up."""
    return np.flatnonzero(eligible & (rng.random(len(eligible)) < rate))


def _apply(
    values: np.ndarray, rows: np.ndarray, fn, log: CorruptionLog, field_name: str, kind: str
) -> np.ndarray:
    """``values[rows] = fn(values[rows])`` where it changed anything; logs and returns the rows hit."""
    if len(rows) == 0:
        return rows
    new, changed = fn(values[rows])
    hit = rows[changed]
    values[hit] = new[changed]
    log.add(hit, field_name, kind)
    return hit


def _iso(days: np.ndarray) -> np.ndarray:
    return np.array(np.datetime_as_string(days, unit="D").tolist(), dtype=object)


def _from_iso(values: np.ndarray) -> np.ndarray:
    return np.array(values.tolist(), dtype="datetime64[D]")


def event_dates(p: People, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A date between the person's first contact and the extract date."""
    start = p.first_contact[rows]
    span = ((EXTRACT_DATE - start) / DAY).astype(np.int64)
    return start + (rng.random(len(rows)) * span).astype(np.int64) * DAY


# ---- identity ------------------------------------------------------------------------


@dataclass
class Identity:
    forename: np.ndarray
    middle_names: np.ndarray
    surname: np.ndarray
    dob: np.ndarray  # datetime64[D]
    dob_missing: np.ndarray
    sex: np.ndarray  # 0 male, 1 female, 2 unknown


def identity(p: People, rows: np.ndarray, ctx: Context, source: str, log: CorruptionLog) -> Identity:
    """Names, date of birth and sex as this source recorded them, corruptions logged."""
    rng, d, vocab = ctx.rng, ctx.dirt, ctx.vocab
    k = SOURCE_DIRT[source]
    n = len(rows)
    every = np.ones(n, dtype=bool)
    fore = p.forename[rows].copy()
    middle = p.middle_names[rows].copy()
    sur = p.surname[rows].copy()
    dob = p.dob[rows].copy()

    # A married woman's older records carry her birth surname.
    changed_name = p.birth_surname[rows] != sur
    hit = pick(rng, d.surname_change, changed_name)
    sur[hit] = p.birth_surname[rows][hit]
    log.add(hit, "surname", "surname_change")

    # A name (and sometimes a date of birth) the person gave instead of their own.
    n_alias = p.n_aliases[rows]
    hit = pick(rng, d.alias_used, n_alias > 0)
    which = np.minimum((rng.random(len(hit)) * n_alias[hit]).astype(np.int64), MAX_ALIASES - 1)
    fore[hit] = p.alias_forename[rows[hit], which]
    sur[hit] = p.alias_surname[rows[hit], which]
    middle[hit] = np.where(rng.random(len(hit)) < 0.5, "", middle[hit])
    log.add(hit, "name", "alias_used")
    alias_dob = p.alias_dob[rows[hit], which]
    takes_dob = hit[(rng.random(len(hit)) < d.dob_alias) & (alias_dob != dob[hit])]
    dob[takes_dob] = p.alias_dob[rows[takes_dob], which[np.isin(hit, takes_dob)]]
    log.add(takes_dob, "date_of_birth", "alias_dob")

    # Known by a middle name: MOHAMMED IMRAN KHAN recorded as IMRAN KHAN.
    has_middle = middle != ""
    hit = pick(rng, d.forename_middle_as_first * k, has_middle)
    for i in hit.tolist():
        parts = middle[i].split(" ")
        fore[i], middle[i] = parts[0], " ".join(parts[1:])
    log.add(hit, "forename", "middle_as_first")

    _apply(
        fore,
        pick(rng, d.forename_nickname * k, every),
        lambda v: corrupt.choose_from(v, rng, vocab.nicknames),
        log,
        "forename",
        "nickname",
    )
    _apply(
        fore,
        pick(rng, d.forename_phonetic * k, every),
        lambda v: corrupt.phonetic(v, rng, vocab.variants),
        log,
        "forename",
        "phonetic",
    )
    _apply(
        fore, pick(rng, d.forename_typo * k, every), lambda v: corrupt.typo(v, rng), log, "forename", "typo"
    )
    hyphenated = np.array(["-" in v for v in fore.tolist()], dtype=bool)
    _apply(
        fore,
        pick(rng, d.forename_hyphen, hyphenated),
        lambda v: corrupt.hyphen(v, rng),
        log,
        "forename",
        "hyphen",
    )
    _apply(fore, pick(rng, d.forename_initial * k, every), corrupt.initial, log, "forename", "initial")

    _apply(
        sur,
        pick(rng, d.surname_phonetic * k, every),
        lambda v: corrupt.phonetic(v, rng, vocab.variants),
        log,
        "surname",
        "phonetic",
    )
    _apply(sur, pick(rng, d.surname_typo * k, every), lambda v: corrupt.typo(v, rng), log, "surname", "typo")
    punct = np.array(["'" in v for v in sur.tolist()], dtype=bool)
    _apply(
        sur,
        pick(rng, d.surname_apostrophe, punct),
        lambda v: corrupt.apostrophe(v, rng),
        log,
        "surname",
        "apostrophe",
    )
    hyphenated = np.array(["-" in v for v in sur.tolist()], dtype=bool)
    _apply(
        sur,
        pick(rng, d.surname_hyphen, hyphenated),
        lambda v: corrupt.hyphen(v, rng),
        log,
        "surname",
        "hyphen",
    )
    mc = np.array([v.startswith("MC") for v in sur.tolist()], dtype=bool)
    _apply(sur, pick(rng, d.surname_mc_space, mc), corrupt.mc_space, log, "surname", "mc_space")

    hit = pick(rng, d.name_swap, every)
    fore[hit], sur[hit] = sur[hit], fore[hit]
    log.add(hit, "name", "swap")

    # Case-management systems' markers; prison and probation systems carry most of them.
    prefix_rate = d.system_prefix * (1.0 if source in ("prison", "probation") else 0.3)
    hit = pick(rng, prefix_rate, every)
    on_surname = hit[rng.random(len(hit)) < 0.7]
    not_entered = np.setdiff1d(hit, on_surname)
    _apply(sur, on_surname, lambda v: corrupt.system_prefix(v, rng), log, "surname", "system_prefix")
    fore[not_entered] = "NOT ENTERED"
    log.add(not_entered, "forename", "not_entered")

    hit = pick(rng, d.forename_missing * k, fore != "")
    fore[hit] = ""
    middle[hit] = ""
    log.add(hit, "forename", "missing")

    # Dates of birth: one keying error at most per record.
    dob_missing = np.zeros(n, dtype=bool)
    errors = (
        ("day_month_swap", d.dob_day_month_swap, lambda v: corrupt.dob_day_month_swap(v)),
        ("one_digit", d.dob_one_digit, lambda v: corrupt.dob_one_digit(v, rng)),
        ("one_day", d.dob_one_day, lambda v: corrupt.dob_one_day(v, rng)),
        ("wrong_month", d.dob_wrong_month, lambda v: corrupt.dob_wrong_month(v, rng)),
        ("year_off", d.dob_year_off, lambda v: corrupt.dob_year_off(v, rng)),
    )
    rates = np.array([r * k for _, r, _ in errors] + [d.dob_wrong_date * k, d.dob_default, d.dob_missing * k])
    choice = np.searchsorted(np.cumsum(rates), rng.random(n) * 1.0, side="right")
    for c, (kind, _, fn) in enumerate(errors):
        sel = np.flatnonzero(choice == c)
        if len(sel):
            iso = _iso(dob[sel])
            new, changed = fn(iso)
            hit = sel[changed]
            dob[hit] = _from_iso(new[changed])
            log.add(hit, "date_of_birth", kind)
    sel = np.flatnonzero(choice == len(errors))
    dob[sel] = event_dates(p, rows[sel], rng)  # a hearing or arrest date typed into the field
    log.add(sel, "date_of_birth", "wrong_date")
    sel = np.flatnonzero(choice == len(errors) + 1)
    dob[sel] = np.where(rng.random(len(sel)) < 0.5, np.datetime64("1900-01-01"), np.datetime64("1970-01-01"))
    log.add(sel, "date_of_birth", "default_date")
    sel = np.flatnonzero(choice == len(errors) + 2)
    dob_missing[sel] = True
    log.add(sel, "date_of_birth", "missing")

    sex = p.sex[rows].astype(np.int8).copy()
    hit = pick(rng, d.sex_wrong, every)
    sex[hit] = 1 - sex[hit]
    log.add(hit, "sex", "wrong")
    hit = pick(rng, d.sex_unknown, every)
    sex[hit] = 2
    log.add(hit, "sex", "missing")
    return Identity(fore, middle, sur, dob, dob_missing, sex)


# ---- identifiers ----------------------------------------------------------------------


def pnc_field(
    p: People,
    rows: np.ndarray,
    ctx: Context,
    log: CorruptionLog,
    field_name: str,
    present: float,
    forms: tuple[float, ...],
    second: np.ndarray | None = None,
) -> np.ndarray:
    """PNC IDs as a source writes them: mostly valid in one of several forms, some junk.

    ``present`` is the share of people with a PNC ID whose record carries it (absence
    by design is not logged); ``forms`` weights PNC_FORMS.
    """
    rng = ctx.rng
    n = len(rows)
    out = np.full(n, "", dtype=object)
    has = np.flatnonzero((p.n_pnc[rows] > 0) & (rng.random(n) < present))
    if len(has) == 0:
        return out
    r = rows[has]
    serial = p.pnc_serial[r].copy()
    if second is not None:
        serial = np.where(second[has], p.second_pnc_serial[r], serial)
    year = p.pnc_year[r]
    check = pnc_check(year, serial)
    w = np.array(forms) / np.sum(forms)
    values = format_pnc(year, serial, check, rng.choice(len(w), size=len(has), p=w))
    lower = rng.random(len(has)) < 0.03
    values[lower] = np.array([v.lower() for v in values[lower].tolist()], dtype=object)
    out[has] = values
    _id_dirt(out, has, ctx, log, field_name, kind="pnc", p=p, rows=rows)
    return out


def cro_field(
    p: People, rows: np.ndarray, ctx: Context, log: CorruptionLog, field_name: str, present: float
) -> np.ndarray:
    rng = ctx.rng
    n = len(rows)
    out = np.full(n, "", dtype=object)
    has = np.flatnonzero((p.cro_kind[rows] > 0) & (rng.random(n) < present))
    if len(has) == 0:
        return out
    r = rows[has]
    sf = p.cro_kind[r] == 2
    year, serial = p.cro_year[r], p.cro_serial[r]
    check = np.where(sf, sf_cro_check(year, serial), cro_check(year, serial))
    padded = rng.random(len(has)) < np.where(sf, 0.9, 0.6)
    out[has] = format_cro(year, serial, check, sf, padded)
    _id_dirt(out, has, ctx, log, field_name, kind="cro", p=p, rows=rows)
    return out


def _id_dirt(
    out: np.ndarray,
    has: np.ndarray,
    ctx: Context,
    log: CorruptionLog,
    field_name: str,
    *,
    kind: str,
    p: People,
    rows: np.ndarray,
) -> None:
    """Junk, placeholders, dummies, typos and stray characters in a PNC or CRO field."""
    rng, d = ctx.rng, ctx.dirt
    m = len(has)
    rates = [
        d.id_junk,
        d.id_no_check_letter,
        d.id_typo,
        d.id_placeholder,
        d.id_dummy,
        d.id_other_person,
        d.id_typo,
    ]
    if kind == "pnc":
        rates.append(d.id_cro_in_pnc)
    choice = np.searchsorted(np.cumsum(rates), rng.random(m), side="right")
    sel = has[choice == 0]
    junk = JUNK_VALUES[rng.integers(0, len(JUNK_VALUES), len(sel))]
    # ... or a date or a name typed into the identifier field
    as_date = rng.random(len(sel)) < 0.15
    junk[as_date] = _iso(p.dob[rows[sel[as_date]]])
    out[sel] = junk
    log.add(sel, field_name, "junk")
    _apply(out, has[choice == 1], corrupt.drop_check_letter, log, field_name, "no_check_letter")
    _apply(out, has[choice == 2], lambda v: corrupt.digit_typo(v, rng), log, field_name, "typo")
    sel = has[choice == 3]
    out[sel] = PNC_PLACEHOLDER if kind == "pnc" else CRO_PLACEHOLDER
    log.add(sel, field_name, "placeholder")
    sel = has[choice == 4]
    if kind == "pnc":
        out[sel] = DUMMY_PNCS[rng.integers(0, len(DUMMY_PNCS), len(sel))]
        log.add(sel, field_name, "dummy")
    sel = has[choice == 5]
    if len(sel) and m > 1:
        # another person's number (a keying or matching error upstream)
        donors = has[rng.integers(0, m, len(sel))]
        ok = p.index[rows[donors]] != p.index[rows[sel]]
        out[sel[ok]] = out[donors[ok]]
        log.add(sel[ok], field_name, "other_person")
    sel = has[choice == 6]
    stray = np.array(
        [_stray(v, u) for v, u in zip(out[sel].tolist(), rng.random(len(sel)).tolist())], dtype=object
    )
    out[sel] = stray
    log.add(sel, field_name, "formatting")
    if kind == "pnc":
        sel = has[choice == 7]
        cro_serial = np.where(
            p.cro_kind[rows[sel]] == 1, p.cro_serial[rows[sel]], rng.integers(1, 10**6, len(sel))
        )
        cro_year = np.where(p.cro_kind[rows[sel]] == 1, p.cro_year[rows[sel]], rng.integers(0, 100, len(sel)))
        out[sel] = format_cro(
            cro_year,
            cro_serial,
            cro_check(cro_year, cro_serial),
            np.zeros(len(sel), bool),
            rng.random(len(sel)) < 0.5,
        )
        log.add(sel, field_name, "cro_in_pnc_field")


def _stray(value: str, u: float) -> str:
    """Stray spaces and dashes: ``2003/ 0011985X``, ``2003-0011985X``, `` 65656/91H``."""
    if not value:
        return value
    if u < 0.4 and "/" in value:
        return value.replace("/", "-")
    if u < 0.7 and "/" in value:
        return value.replace("/", "/ ")
    return " " + value + " "


def plain_id_dirt(values: np.ndarray, ctx: Context, log: CorruptionLog, field_name: str) -> None:
    """Typos and junk in identifiers without a check character (prison number, CRN)."""
    rng, d = ctx.rng, ctx.dirt
    present = values != ""
    _apply(
        values, pick(rng, d.id_typo, present), lambda v: corrupt.char_typo(v, rng), log, field_name, "typo"
    )
    sel = pick(rng, d.id_junk / 3, present)
    values[sel] = JUNK_VALUES[rng.integers(0, len(JUNK_VALUES), len(sel))]
    log.add(sel, field_name, "junk")


# ---- addresses --------------------------------------------------------------------------


def address(
    p: People, rows: np.ndarray, ctx: Context, log: CorruptionLog, present: float
) -> tuple[np.ndarray, np.ndarray]:
    """(address line, postcode) per record: mostly the main address, sometimes another."""
    rng, d = ctx.rng, ctx.dirt
    n = len(rows)
    which = np.zeros(n, dtype=np.int64)
    moved = pick(rng, d.postcode_moved, np.ones(n, bool))
    which[moved] = rng.integers(1, p.postcode.shape[1], len(moved))
    log.add(moved, "postcode", "moved")
    line = p.address_line[rows, which]
    postcode = p.postcode[rows, which]
    nfa = pick(rng, d.postcode_nfa, np.ones(n, bool))
    line[nfa] = "No Fixed Abode"
    postcode[nfa] = np.where(rng.random(len(nfa)) < 0.7, "NF1 1NF", "NF1 1FA")
    log.add(nfa, "postcode", "no_fixed_abode")
    return recorded_address(line, postcode, ctx, log, present)


def recorded_address(
    line: np.ndarray, postcode: np.ndarray, ctx: Context, log: CorruptionLog, present: float
) -> tuple[np.ndarray, np.ndarray]:
    """How an address is written down: postcode typos (logged), blanks (by design, not logged) and
    postcodes without their space. Shared by the justice and the departments' extracts."""
    rng, d = ctx.rng, ctx.dirt
    n = len(line)
    _apply(
        postcode,
        pick(rng, d.postcode_typo, np.ones(n, bool)),
        lambda v: corrupt.char_typo(v, rng),
        log,
        "postcode",
        "typo",
    )
    gone = rng.random(n) >= present  # not recorded: by design, not logged
    line[gone] = ""
    postcode[gone] = ""
    space = rng.random(n) < 0.05  # written without its space
    postcode[space] = np.array([v.replace(" ", "") for v in postcode[space].tolist()], dtype=object)
    return line, postcode


# ---- aliases ----------------------------------------------------------------------------


def alias_strings(
    p: People, rows: np.ndarray, rng: np.random.Generator, recorded: float
) -> tuple[np.ndarray, np.ndarray]:
    """``;``-separated alias names (court styles) and alias dates of birth per record."""
    n = len(rows)
    names = np.full(n, "", dtype=object)
    dobs = np.full(n, "", dtype=object)
    married = p.birth_surname[rows] != p.surname[rows]
    sel = np.flatnonzero(((p.n_aliases[rows] > 0) | married) & (rng.random(n) < recorded))
    if len(sel) == 0:
        return names, dobs
    r = rows[sel]
    styles = rng.random((len(sel), MAX_ALIASES + 1)).tolist()
    fores, surs, adobs = p.alias_forename[r].tolist(), p.alias_surname[r].tolist(), p.alias_dob[r]
    dob = p.dob[r]
    for j, (i, person) in enumerate(zip(sel.tolist(), r.tolist())):
        parts, other_dobs = [], []
        for k in range(int(p.n_aliases[person])):
            parts.append(_court_style(fores[j][k], surs[j][k], styles[j][k]))
            if adobs[j, k] != dob[j]:
                other_dobs.append(str(adobs[j, k]))
        if married[i]:
            parts.append(_court_style(p.forename[person], p.birth_surname[person], styles[j][-1]))
        names[i] = ";".join(dict.fromkeys(parts))
        dobs[i] = ";".join(dict.fromkeys(other_dobs))
    return names, dobs


def _court_style(fore: str, sur: str, u: float) -> str:
    if u < 0.6:
        return f"{fore.title()} {sur}"
    return f"{sur}, {fore.title()}"
