"""The five extracts: each source's records about a chunk of people, dirt included.

Every source draws a person's identity (names, date of birth, sex) through
``identity``, which applies the profile's corruptions at a source-specific rate and
logs each one, then writes the fields the way that source writes them: PNC and prison
in capitals, probation in title case, Libra as one name string in several styles,
dates as ISO or dd/mm/yyyy text, sex in each source's own codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.synthetic import corrupt
from linkage.synthetic.identifiers import (
    CRO_PLACEHOLDER,
    DUMMY_PNCS,
    JUNK_VALUES,
    PNC_PLACEHOLDER,
    cro_check,
    crns,
    format_cro,
    format_pnc,
    pnc_check,
    prison_numbers,
    sf_cro_check,
)
from linkage.synthetic.names import Vocabulary
from linkage.synthetic.population import DAY, EXTRACT_DATE, MAX_ALIASES, People
from linkage.synthetic.profiles import Dirt

SOURCES: tuple[str, ...] = ("pnc", "prison", "probation", "libra", "crest")

COLUMNS: dict[str, tuple[str, ...]] = {
    "pnc": (
        "pnc_record_id", "pnc_id", "cro_number", "surname", "forenames", "date_of_birth", "sex",
        "alias_names", "alias_dates_of_birth", "ethnicity_code", "force_code", "first_arrest_date",
        "arrest_count",
    ),
    "prison": (
        "booking_id", "prison_number", "first_name", "middle_names", "last_name", "date_of_birth",
        "gender", "pnc_number", "cro_number", "alias_names", "alias_dates_of_birth",
        "establishment_code", "reception_date", "release_date", "sentence_days",
    ),
    "probation": (
        "offender_id", "crn", "first_name", "middle_names", "surname", "previous_surname",
        "date_of_birth", "gender", "pnc", "cro", "noms_number", "postcode", "alias_names",
        "probation_region", "order_type", "order_start_date",
    ),
    "libra": (
        "libra_case_id", "defendant_name", "defendant_dob", "defendant_sex", "address_line1",
        "postcode", "pnc_id", "court_code", "hearing_date", "offence_code", "outcome_code",
    ),
    "crest": (
        "crest_defendant_id", "case_number", "surname", "forenames", "date_of_birth", "sex",
        "pnc_id", "crown_court_code", "committal_date", "offence_code", "sentence_type",
    ),
}  # fmt: skip
RECORD_ID_COLUMN = {source: cols[0] for source, cols in COLUMNS.items()}

# How much more (or less) dirt each source carries than the profile's base rates: Libra
# names are typed from what a defendant says in court; PNC records are checked against
# fingerprints.
SOURCE_DIRT = {"pnc": 0.75, "prison": 1.0, "probation": 1.0, "libra": 1.45, "crest": 0.85}

# Non-identifying vocabularies.
FORCE_CODES = np.array([f"{i:02d}" for i in (*range(1, 56), 60, 61, 62, 63, 93, 97)], dtype=object)
ESTABLISHMENTS = np.array(
    "BMI LEI MDI WDI HMI PVI BWI NMI LPI WWI EXI BLI CFI DMI HLI LNI NLI RSI SWI WEI ACI AGI ALI BCI "
    "BFI BHI BRI BXI CDI CLI DAI DTI DWI FBI FMI FSI GHI GMI HBI HDI".split(),
    dtype=object,
)
REGIONS = np.array(
    [
        "North East", "North West", "Yorkshire and the Humber", "East Midlands", "West Midlands",
        "East of England", "London", "Kent, Surrey and Sussex", "South West", "South Central", "Wales",
        "Greater Manchester",
    ],
    dtype=object,
)  # fmt: skip
ORDER_TYPES = np.array(
    ["Community Order", "Suspended Sentence Order", "Licence", "Post Sentence Supervision", "Youth Rehabilitation Order"],
    dtype=object,
)
OFFENCE_CODES = np.array(
    "TH68010 TH68007 PU86001 RT88191 RT88007 CJ88116 MD71230 OF61016 CD71039 PU86007 FI68001 "
    "RT88338 SX03001 TH68023 BG68001 CA03012 PL84002 RT88526 CS97005 MD71110".split(),
    dtype=object,
)
OUTCOME_CODES = np.array("1002 1015 1024 1052 1081 1085 1115 2006 3070 4004 4027 4047".split(), dtype=object)
SENTENCE_TYPES = np.array(
    ["Immediate custody", "Suspended sentence", "Community order", "Fine", "Conditional discharge", "Acquitted"],
    dtype=object,
)
ORG_WORDS = np.array(
    "NORTHERN MIDLAND ACME APEX PREMIER CITY ROYAL CROWN UNITED EASTERN GOLDEN ALPHA VICTORIA "
    "HIGHWAY EXPRESS QUALITY DIRECT GLOBAL".split(),
    dtype=object,
)
ORG_TRADES = np.array(
    "HAULAGE LOGISTICS BUILDERS SCAFFOLDING TAXIS MOTORS WASTE SECURITY CATERING RECYCLING "
    "CONSTRUCTION TRADING PROPERTIES LETTINGS".split(),
    dtype=object,
)
ORG_SUFFIXES = np.array(["LTD", "LIMITED", "PLC", "LTD.", "& CO LTD"], dtype=object)
TITLES_M = np.array(["Mr", "MR", "Mr."], dtype=object)
TITLES_F = np.array(["Ms", "Mrs", "Miss", "MS"], dtype=object)


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
class SourceChunk:
    """Rows of one source for one chunk of people, before record ids are given out."""

    person_id: np.ndarray
    columns: dict[str, object]  # every column but the record id
    log: CorruptionLog


@dataclass
class Context:
    rng: np.random.Generator
    dirt: Dirt
    vocab: Vocabulary


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row per unit of ``counts``: (person row, occurrence 0..count-1)."""
    counts = np.asarray(counts, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return rows, np.arange(len(rows)) - np.repeat(starts, counts)


def _pick(rng: np.random.Generator, rate: float, eligible: np.ndarray) -> np.ndarray:
    """Rows (indices) where ``eligible`` and a coin with probability ``rate`` comes up."""
    return np.flatnonzero(eligible & (rng.random(len(eligible)) < rate))


def _apply(values: np.ndarray, rows: np.ndarray, fn, log: CorruptionLog, field_name: str, kind: str) -> np.ndarray:
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


def _event_dates(p: People, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
    hit = _pick(rng, d.surname_change, changed_name)
    sur[hit] = p.birth_surname[rows][hit]
    log.add(hit, "surname", "surname_change")

    # A name (and sometimes a date of birth) the person gave instead of their own.
    n_alias = p.n_aliases[rows]
    hit = _pick(rng, d.alias_used, n_alias > 0)
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
    hit = _pick(rng, d.forename_middle_as_first * k, has_middle)
    for i in hit.tolist():
        parts = middle[i].split(" ")
        fore[i], middle[i] = parts[0], " ".join(parts[1:])
    log.add(hit, "forename", "middle_as_first")

    _apply(fore, _pick(rng, d.forename_nickname * k, every), lambda v: corrupt.choose_from(v, rng, vocab.nicknames), log, "forename", "nickname")
    _apply(fore, _pick(rng, d.forename_phonetic * k, every), lambda v: corrupt.phonetic(v, rng, vocab.variants), log, "forename", "phonetic")
    _apply(fore, _pick(rng, d.forename_typo * k, every), lambda v: corrupt.typo(v, rng), log, "forename", "typo")
    hyphenated = np.array(["-" in v for v in fore.tolist()], dtype=bool)
    _apply(fore, _pick(rng, d.forename_hyphen, hyphenated), lambda v: corrupt.hyphen(v, rng), log, "forename", "hyphen")
    _apply(fore, _pick(rng, d.forename_initial * k, every), corrupt.initial, log, "forename", "initial")

    _apply(sur, _pick(rng, d.surname_phonetic * k, every), lambda v: corrupt.phonetic(v, rng, vocab.variants), log, "surname", "phonetic")
    _apply(sur, _pick(rng, d.surname_typo * k, every), lambda v: corrupt.typo(v, rng), log, "surname", "typo")
    punct = np.array(["'" in v for v in sur.tolist()], dtype=bool)
    _apply(sur, _pick(rng, d.surname_apostrophe, punct), lambda v: corrupt.apostrophe(v, rng), log, "surname", "apostrophe")
    hyphenated = np.array(["-" in v for v in sur.tolist()], dtype=bool)
    _apply(sur, _pick(rng, d.surname_hyphen, hyphenated), lambda v: corrupt.hyphen(v, rng), log, "surname", "hyphen")
    mc = np.array([v.startswith("MC") for v in sur.tolist()], dtype=bool)
    _apply(sur, _pick(rng, d.surname_mc_space, mc), corrupt.mc_space, log, "surname", "mc_space")

    hit = _pick(rng, d.name_swap, every)
    fore[hit], sur[hit] = sur[hit], fore[hit]
    log.add(hit, "name", "swap")

    # Case-management systems' markers; prison and probation systems carry most of them.
    prefix_rate = d.system_prefix * (1.0 if source in ("prison", "probation") else 0.3)
    hit = _pick(rng, prefix_rate, every)
    on_surname = hit[rng.random(len(hit)) < 0.7]
    not_entered = np.setdiff1d(hit, on_surname)
    _apply(sur, on_surname, lambda v: corrupt.system_prefix(v, rng), log, "surname", "system_prefix")
    fore[not_entered] = "NOT ENTERED"
    log.add(not_entered, "forename", "not_entered")

    hit = _pick(rng, d.forename_missing * k, fore != "")
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
    dob[sel] = _event_dates(p, rows[sel], rng)  # a hearing or arrest date typed into the field
    log.add(sel, "date_of_birth", "wrong_date")
    sel = np.flatnonzero(choice == len(errors) + 1)
    dob[sel] = np.where(rng.random(len(sel)) < 0.5, np.datetime64("1900-01-01"), np.datetime64("1970-01-01"))
    log.add(sel, "date_of_birth", "default_date")
    sel = np.flatnonzero(choice == len(errors) + 2)
    dob_missing[sel] = True
    log.add(sel, "date_of_birth", "missing")

    sex = p.sex[rows].astype(np.int8).copy()
    hit = _pick(rng, d.sex_wrong, every)
    sex[hit] = 1 - sex[hit]
    log.add(hit, "sex", "wrong")
    hit = _pick(rng, d.sex_unknown, every)
    sex[hit] = 2
    log.add(hit, "sex", "missing")
    return Identity(fore, middle, sur, dob, dob_missing, sex)


# ---- identifiers ----------------------------------------------------------------------


def _pnc_field(
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
    rng, d = ctx.rng, ctx.dirt
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


def _cro_field(
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
    out: np.ndarray, has: np.ndarray, ctx: Context, log: CorruptionLog, field_name: str, *, kind: str, p: People, rows: np.ndarray
) -> None:
    """Junk, placeholders, dummies, typos and stray characters in a PNC or CRO field."""
    rng, d = ctx.rng, ctx.dirt
    m = len(has)
    rates = [d.id_junk, d.id_no_check_letter, d.id_typo, d.id_placeholder, d.id_dummy, d.id_other_person, d.id_typo]
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
    stray = np.array([_stray(v, u) for v, u in zip(out[sel].tolist(), rng.random(len(sel)).tolist())], dtype=object)
    out[sel] = stray
    log.add(sel, field_name, "formatting")
    if kind == "pnc":
        sel = has[choice == 7]
        cro_serial = np.where(p.cro_kind[rows[sel]] == 1, p.cro_serial[rows[sel]], rng.integers(1, 10**6, len(sel)))
        cro_year = np.where(p.cro_kind[rows[sel]] == 1, p.cro_year[rows[sel]], rng.integers(0, 100, len(sel)))
        out[sel] = format_cro(cro_year, cro_serial, cro_check(cro_year, cro_serial), np.zeros(len(sel), bool), rng.random(len(sel)) < 0.5)
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


def _plain_id_dirt(values: np.ndarray, ctx: Context, log: CorruptionLog, field_name: str) -> None:
    """Typos and junk in identifiers without a check character (prison number, CRN)."""
    rng, d = ctx.rng, ctx.dirt
    present = values != ""
    _apply(values, _pick(rng, d.id_typo, present), lambda v: corrupt.char_typo(v, rng), log, field_name, "typo")
    sel = _pick(rng, d.id_junk / 3, present)
    values[sel] = JUNK_VALUES[rng.integers(0, len(JUNK_VALUES), len(sel))]
    log.add(sel, field_name, "junk")


# ---- addresses --------------------------------------------------------------------------


def _address(p: People, rows: np.ndarray, ctx: Context, log: CorruptionLog, present: float) -> tuple[np.ndarray, np.ndarray]:
    """(address line, postcode) per record: mostly the main address, sometimes another."""
    rng, d = ctx.rng, ctx.dirt
    n = len(rows)
    which = np.zeros(n, dtype=np.int64)
    moved = _pick(rng, d.postcode_moved, np.ones(n, bool))
    which[moved] = rng.integers(1, p.postcode.shape[1], len(moved))
    log.add(moved, "postcode", "moved")
    line = p.address_line[rows, which]
    postcode = p.postcode[rows, which]
    nfa = _pick(rng, d.postcode_nfa, np.ones(n, bool))
    line[nfa] = "No Fixed Abode"
    postcode[nfa] = np.where(rng.random(len(nfa)) < 0.7, "NF1 1NF", "NF1 1FA")
    log.add(nfa, "postcode", "no_fixed_abode")
    _apply(postcode, _pick(rng, d.postcode_typo, np.ones(n, bool)), lambda v: corrupt.char_typo(v, rng), log, "postcode", "typo")
    gone = rng.random(n) >= present  # not recorded: by design, not logged
    line[gone] = ""
    postcode[gone] = ""
    space = rng.random(n) < 0.05  # written without its space
    postcode[space] = np.array([v.replace(" ", "") for v in postcode[space].tolist()], dtype=object)
    return line, postcode


# ---- aliases ----------------------------------------------------------------------------


def _alias_strings(p: People, rows: np.ndarray, rng: np.random.Generator, recorded: float) -> tuple[np.ndarray, np.ndarray]:
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


# ---- the sources --------------------------------------------------------------------------


def _sex_codes(sex: np.ndarray, codes: tuple[str, str, str]) -> np.ndarray:
    return np.array(codes, dtype=object)[sex]


def _dates(days: np.ndarray, missing: np.ndarray | None = None, style: str = "iso") -> pa.Array:
    arr = pa.array(days.astype("datetime64[D]").astype(np.int64).astype(np.int32), pa.int32()).cast(pa.date32())
    text = arr.cast(pa.string())
    if style == "dmy":
        text = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(text, 8, 10), pc.utf8_slice_codeunits(text, 5, 7), pc.utf8_slice_codeunits(text, 0, 4), "/"
        )
    if missing is not None and missing.any():
        text = pc.if_else(pa.array(missing), pa.scalar("", pa.string()), text)
    return text


def _join_names(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a b`` without stray spaces when either is empty."""
    return np.array([f"{x} {y}".strip() for x, y in zip(a.tolist(), b.tolist())], dtype=object)


def _upper(values: np.ndarray) -> pa.Array:
    return pc.utf8_upper(pa.array(values, type=pa.string()))


def _title(values: np.ndarray) -> pa.Array:
    return pc.utf8_title(pa.array(values, type=pa.string()))


def build_pnc(p: People, ctx: Context) -> SourceChunk:
    rng, log = ctx.rng, CorruptionLog()
    rows, occ = expand(p.n_pnc)
    second = occ > 0
    ident = identity(p, rows, ctx, "pnc", log)
    pnc_id = _pnc_field(p, rows, ctx, log, "pnc_id", present=1.0, forms=(0.8, 0.05, 0.07, 0.04, 0.04), second=second)
    cro = _cro_field(p, rows, ctx, log, "cro_number", present=0.95)
    alias_names, alias_dobs = _alias_strings(p, rows, rng, recorded=0.9)
    arrests = 1 + rng.poisson(2.5 * p.prolific[rows])
    first_arrest = np.where(second, _event_dates(p, rows, rng), p.first_contact[rows])
    columns = {
        "pnc_id": pnc_id,
        "cro_number": cro,
        "surname": _upper(ident.surname),
        "forenames": _upper(_join_names(ident.forename, ident.middle_names)),
        "date_of_birth": _dates(ident.dob, ident.dob_missing),
        "sex": _sex_codes(ident.sex, ("M", "F", "U")),
        "alias_names": alias_names,
        "alias_dates_of_birth": alias_dobs,
        "ethnicity_code": p.ethnicity[rows],
        "force_code": FORCE_CODES[rng.integers(0, len(FORCE_CODES), len(rows))],
        "first_arrest_date": _dates(first_arrest),
        "arrest_count": arrests.astype(str).astype(object),
    }
    return SourceChunk(p.person_id[rows], columns, log)


def build_prison(p: People, ctx: Context) -> SourceChunk:
    rng, log = ctx.rng, CorruptionLog()
    flat, _ = expand(p.n_bookings.reshape(-1))
    rows, number = flat // 3, flat % 3
    ident = identity(p, rows, ctx, "prison", log)
    prison_number = prison_numbers(p.prison_codes[rows, number])
    _plain_id_dirt(prison_number, ctx, log, "prison_number")
    alias_names, alias_dobs = _alias_strings(p, rows, rng, recorded=0.75)
    reception = _event_dates(p, rows, rng)
    days = np.maximum(14, (rng.lognormal(5.3, 1.1, len(rows)))).astype(np.int64)
    release = reception + days * DAY
    released = release <= EXTRACT_DATE
    columns = {
        "prison_number": prison_number,
        "first_name": _upper(ident.forename),
        "middle_names": _upper(ident.middle_names),
        "last_name": _upper(ident.surname),
        "date_of_birth": _dates(ident.dob, ident.dob_missing),
        "gender": _sex_codes(ident.sex, ("Male", "Female", "Not Known / Not Recorded")),
        "pnc_number": _pnc_field(p, rows, ctx, log, "pnc_id", present=0.8, forms=(0.85, 0.02, 0.1, 0.02, 0.01)),
        "cro_number": _cro_field(p, rows, ctx, log, "cro_number", present=0.6),
        "alias_names": alias_names,
        "alias_dates_of_birth": alias_dobs,
        "establishment_code": ESTABLISHMENTS[rng.integers(0, len(ESTABLISHMENTS), len(rows))],
        "reception_date": _dates(reception),
        "release_date": _dates(release, ~released),
        "sentence_days": days.astype(str).astype(object),
    }
    return SourceChunk(p.person_id[rows], columns, log)


def build_probation(p: People, ctx: Context) -> SourceChunk:
    rng, log = ctx.rng, CorruptionLog()
    rows, occ = expand(p.n_probation)
    ident = identity(p, rows, ctx, "probation", log)
    # nDelius is where default dates of birth turn up most
    extra_default = _pick(rng, ctx.dirt.dob_default * 1.5, ~ident.dob_missing)
    ident.dob[extra_default] = np.where(rng.random(len(extra_default)) < 0.5, np.datetime64("1900-01-01"), np.datetime64("1970-01-01"))
    log.add(extra_default, "date_of_birth", "default_date")
    crn = crns(p.crn_codes[rows, np.minimum(occ, 1)])
    _plain_id_dirt(crn, ctx, log, "crn")
    married = p.birth_surname[rows] != p.surname[rows]
    previous = np.where(married & (rng.random(len(rows)) < 0.7), p.birth_surname[rows], "")
    in_prison = p.n_prison_numbers[rows] > 0
    noms = np.full(len(rows), "", dtype=object)
    sel = np.flatnonzero(in_prison & (rng.random(len(rows)) < 0.7))
    noms[sel] = prison_numbers(p.prison_codes[rows[sel], 0])
    _plain_id_dirt(noms, ctx, log, "prison_number")
    _, postcode = _address(p, rows, ctx, log, present=0.85)
    alias_names, _ = _alias_strings(p, rows, rng, recorded=0.6)
    columns = {
        "crn": crn,
        "first_name": _title(ident.forename),
        "middle_names": _title(ident.middle_names),
        "surname": _title(ident.surname),
        "previous_surname": _title(previous.astype(object)),
        "date_of_birth": _dates(ident.dob, ident.dob_missing),
        "gender": _sex_codes(ident.sex, ("M", "F", "N")),
        "pnc": _pnc_field(p, rows, ctx, log, "pnc_id", present=0.85, forms=(0.9, 0.02, 0.05, 0.02, 0.01)),
        "cro": _cro_field(p, rows, ctx, log, "cro_number", present=0.5),
        "noms_number": noms,
        "postcode": postcode,
        "alias_names": alias_names,
        "probation_region": REGIONS[rng.integers(0, len(REGIONS), len(rows))],
        "order_type": ORDER_TYPES[rng.integers(0, len(ORDER_TYPES), len(rows))],
        "order_start_date": _dates(_event_dates(p, rows, rng)),
    }
    return SourceChunk(p.person_id[rows], columns, log)


def build_libra(p: People, ctx: Context, n_organisations: int, first_org: int) -> SourceChunk:
    rng, log = ctx.rng, CorruptionLog()
    rows, _ = expand(p.n_libra)
    ident = identity(p, rows, ctx, "libra", log)
    name = _defendant_names(ident, rng)
    dob_shown = (rng.random(len(rows)) < 0.55) & ~ident.dob_missing
    line, postcode = _address(p, rows, ctx, log, present=0.92)
    columns = {
        "defendant_name": name,
        "defendant_dob": _dates(ident.dob, ~dob_shown, style="dmy"),
        "defendant_sex": _sex_codes(ident.sex, ("M", "F", "NS")),
        "address_line1": line,
        "postcode": postcode,
        "pnc_id": _pnc_field(p, rows, ctx, log, "pnc_id", present=0.4, forms=(0.5, 0.1, 0.2, 0.1, 0.1)),
        "court_code": _court_codes(len(rows), rng),
        "hearing_date": _dates(_event_dates(p, rows, rng)),
        "offence_code": OFFENCE_CODES[rng.integers(0, len(OFFENCE_CODES), len(rows))],
        "outcome_code": OUTCOME_CODES[rng.integers(0, len(OUTCOME_CODES), len(rows))],
    }
    person_id = p.person_id[rows]
    if n_organisations:
        org_ids, org_columns = _organisations(n_organisations, first_org, ctx, log, offset=len(rows))
        person_id = np.concatenate([person_id, org_ids])
        columns = {k: _concat(v, org_columns[k]) for k, v in columns.items()}
    return SourceChunk(person_id, columns, log)


def _concat(a, b) -> pa.Array:
    a = a if isinstance(a, pa.Array) else pa.array(a, type=pa.string())
    b = b if isinstance(b, pa.Array) else pa.array(b, type=pa.string())
    return pa.concat_arrays([a.cast(pa.string()), b.cast(pa.string())])


def _defendant_names(ident: Identity, rng: np.random.Generator) -> np.ndarray:
    """One string per defendant, in the styles court clerks use."""
    n = len(ident.forename)
    style = rng.choice(5, size=n, p=[0.28, 0.25, 0.2, 0.15, 0.12]).tolist()
    titled = rng.random(n) < 0.8
    t_m = TITLES_M[rng.integers(0, len(TITLES_M), n)]
    t_f = TITLES_F[rng.integers(0, len(TITLES_F), n)]
    with_middle = (rng.random(n) < 0.6).tolist()
    out = np.empty(n, dtype=object)
    rows = zip(ident.forename.tolist(), ident.middle_names.tolist(), ident.surname.tolist(), ident.sex.tolist())
    for i, (f, m, s, sex) in enumerate(rows):
        if not f:  # surname-only defendants
            out[i] = s if style[i] != 2 else s.title()
            continue
        given = f"{f} {m}" if (m and with_middle[i]) else f
        st = style[i]
        if st == 0:
            title = (t_m[i] if sex == 0 else t_f[i] if sex == 1 else "") if titled[i] else ""
            out[i] = f"{title} {given.title()} {s}".strip()
        elif st == 1:
            out[i] = f"{s}, {given.title()}"
        elif st == 2:
            out[i] = f"{given.title()} {s.title()}"
        elif st == 3:
            out[i] = f"{s} {f.title()}"
        else:
            out[i] = f"{given} {s}"
    return out


def _court_code_pool() -> np.ndarray:
    """150 magistrates' court codes shaped like ``B10JQ`` (fixed, whatever the seed)."""
    letters = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"), dtype=object)
    a, b, c = np.random.default_rng(2008).integers(0, len(letters), (3, 150))
    return np.array(
        [f"{letters[x]}{d % 90 + 10:02d}{letters[y]}{letters[z]}" for x, y, z, d in zip(a, b, c, range(150))],
        dtype=object,
    )


COURT_CODES = _court_code_pool()


def _court_codes(n: int, rng: np.random.Generator) -> np.ndarray:
    return COURT_CODES[rng.integers(0, len(COURT_CODES), n)]


def _organisations(count: int, first: int, ctx: Context, log: CorruptionLog, offset: int) -> tuple[np.ndarray, dict]:
    """Companies prosecuted in the magistrates' courts: their own person ids, ORG prefixed."""
    rng = ctx.rng
    cases = 1 + rng.poisson(1.5, count)
    org_rows, _ = expand(cases)
    names = (
        ORG_WORDS[rng.integers(0, len(ORG_WORDS), count)] + " " + ORG_TRADES[rng.integers(0, len(ORG_TRADES), count)]
    )
    suffix = ORG_SUFFIXES[rng.integers(0, len(ORG_SUFFIXES), count)]
    m = len(org_rows)
    this_suffix = suffix[org_rows].copy()
    varied = np.flatnonzero(rng.random(m) < 0.15)  # LTD one day, LIMITED the next
    this_suffix[varied] = ORG_SUFFIXES[rng.integers(0, len(ORG_SUFFIXES), len(varied))]
    changed = varied[this_suffix[varied] != suffix[org_rows][varied]]
    log.add(changed + offset, "name", "company_suffix")
    postcodes = np.array(
        [f"{a}{d} {s}AB" for a, d, s in zip(ctx.vocab.postcode_areas.draw(rng, count), rng.integers(1, 30, count), rng.integers(0, 10, count))],
        dtype=object,
    )
    columns = {
        "defendant_name": names[org_rows] + " " + this_suffix,
        "defendant_dob": np.full(m, "", dtype=object),
        "defendant_sex": np.full(m, "NS", dtype=object),
        "address_line1": np.array([f"Unit {u} Industrial Estate" for u in rng.integers(1, 40, count)], dtype=object)[org_rows],
        "postcode": postcodes[org_rows],
        "pnc_id": np.full(m, "", dtype=object),
        "court_code": _court_codes(m, rng),
        "hearing_date": _dates(np.datetime64("2010-01-01") + rng.integers(0, 5600, m) * DAY),
        "offence_code": OFFENCE_CODES[rng.integers(0, len(OFFENCE_CODES), m)],
        "outcome_code": OUTCOME_CODES[rng.integers(0, len(OUTCOME_CODES), m)],
    }
    ids = np.array([f"ORG{first + i + 1:06d}" for i in org_rows.tolist()], dtype=object)
    return ids, columns


def build_crest(p: People, ctx: Context) -> SourceChunk:
    rng, log = ctx.rng, CorruptionLog()
    rows, _ = expand(p.n_crest)
    ident = identity(p, rows, ctx, "crest", log)
    committal = _event_dates(p, rows, rng)
    year = committal.astype("datetime64[Y]").astype(np.int64) + 1970
    letter = np.array(list("TTTTSA"), dtype=object)[rng.integers(0, 6, len(rows))]
    case_number = np.array(
        [f"{c}{y}{s:04d}" for c, y, s in zip(letter.tolist(), year.tolist(), rng.integers(1, 10_000, len(rows)).tolist())],
        dtype=object,
    )
    dob_shown = (rng.random(len(rows)) < 0.93) & ~ident.dob_missing
    columns = {
        "case_number": case_number,
        "surname": _upper(ident.surname),
        "forenames": _upper(_join_names(ident.forename, ident.middle_names)),
        "date_of_birth": _dates(ident.dob, ~dob_shown, style="dmy"),
        "sex": _sex_codes(ident.sex, ("MALE", "FEMALE", "NOT SPECIFIED")),
        "pnc_id": _pnc_field(p, rows, ctx, log, "pnc_id", present=0.65, forms=(0.7, 0.05, 0.15, 0.05, 0.05)),
        "crown_court_code": np.array([str(c) for c in rng.integers(401, 480, len(rows)).tolist()], dtype=object),
        "committal_date": _dates(committal),
        "offence_code": OFFENCE_CODES[rng.integers(0, len(OFFENCE_CODES), len(rows))],
        "sentence_type": SENTENCE_TYPES[rng.integers(0, len(SENTENCE_TYPES), len(rows))],
    }
    return SourceChunk(p.person_id[rows], columns, log)
