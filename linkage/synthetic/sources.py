"""The five extracts: each source's records about a chunk of people.

Every source draws a person's identity (names, date of birth, sex) through
``records.identity``, which applies the profile's corruptions at a source-specific
rate and logs each one, then writes the fields the way that source writes them: PNC,
prison and Crown Court in capitals, probation in title case, Libra as one name string
in several styles, dates as ISO or dd/mm/yyyy text, sex in each source's own codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.synthetic.identifiers import crns, prison_numbers
from linkage.synthetic.population import DAY, EXTRACT_DATE, People
from linkage.synthetic.records import (
    Context,
    CorruptionLog,
    Identity,
    address,
    alias_strings,
    cro_field,
    event_dates,
    expand,
    identity,
    pick,
    plain_id_dirt,
    pnc_field,
)

SOURCES: tuple[str, ...] = ("pnc", "prison", "probation", "libra", "crest")

# The extract schemas a job config maps; the first column of each is its record id.
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
    [
        "Community Order",
        "Suspended Sentence Order",
        "Licence",
        "Post Sentence Supervision",
        "Youth Rehabilitation Order",
    ],
    dtype=object,
)
OFFENCE_CODES = np.array(
    "TH68010 TH68007 PU86001 RT88191 RT88007 CJ88116 MD71230 OF61016 CD71039 PU86007 FI68001 "
    "RT88338 SX03001 TH68023 BG68001 CA03012 PL84002 RT88526 CS97005 MD71110".split(),
    dtype=object,
)
OUTCOME_CODES = np.array("1002 1015 1024 1052 1081 1085 1115 2006 3070 4004 4027 4047".split(), dtype=object)
SENTENCE_TYPES = np.array(
    [
        "Immediate custody",
        "Suspended sentence",
        "Community order",
        "Fine",
        "Conditional discharge",
        "Acquitted",
    ],
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
class SourceChunk:
    """Rows of one source for one chunk of people, before record ids are given out."""

    person_id: np.ndarray
    columns: dict[str, object]  # every column but the record id
    log: CorruptionLog
    # True dates of justice events, by person row of the chunk, for the department sources
    # to tie their spells to (prison: rows, reception, release, released; probation: rows, start).
    events: dict[str, np.ndarray] = field(default_factory=dict)


# ---- the sources --------------------------------------------------------------------------


def _sex_codes(sex: np.ndarray, codes: tuple[str, str, str]) -> np.ndarray:
    return np.array(codes, dtype=object)[sex]


def _dates(days: np.ndarray, missing: np.ndarray | None = None, style: str = "iso") -> pa.Array:
    arr = pa.array(days.astype("datetime64[D]").astype(np.int64).astype(np.int32), pa.int32()).cast(
        pa.date32()
    )
    text = arr.cast(pa.string())
    if style == "compact":
        text = pc.replace_substring(text, "-", "")
    if style == "dmy":
        text = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(text, 8, 10),
            pc.utf8_slice_codeunits(text, 5, 7),
            pc.utf8_slice_codeunits(text, 0, 4),
            "/",
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
    pnc_id = pnc_field(
        p, rows, ctx, log, "pnc_id", present=1.0, forms=(0.8, 0.05, 0.07, 0.04, 0.04), second=second
    )
    cro = cro_field(p, rows, ctx, log, "cro_number", present=0.95)
    alias_names, alias_dobs = alias_strings(p, rows, rng, recorded=0.9)
    arrests = 1 + rng.poisson(2.5 * p.prolific[rows])
    first_arrest = np.where(second, event_dates(p, rows, rng), p.first_contact[rows])
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
    plain_id_dirt(prison_number, ctx, log, "prison_number")
    alias_names, alias_dobs = alias_strings(p, rows, rng, recorded=0.75)
    reception = event_dates(p, rows, rng)
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
        "pnc_number": pnc_field(
            p, rows, ctx, log, "pnc_id", present=0.8, forms=(0.85, 0.02, 0.1, 0.02, 0.01)
        ),
        "cro_number": cro_field(p, rows, ctx, log, "cro_number", present=0.6),
        "alias_names": alias_names,
        "alias_dates_of_birth": alias_dobs,
        "establishment_code": ESTABLISHMENTS[rng.integers(0, len(ESTABLISHMENTS), len(rows))],
        "reception_date": _dates(reception),
        "release_date": _dates(release, np.asarray(~released)),
        "sentence_days": days.astype(str).astype(object),
    }
    events = {"rows": rows, "reception": reception, "release": release, "released": np.asarray(released)}
    return SourceChunk(p.person_id[rows], columns, log, events)


def build_probation(p: People, ctx: Context) -> SourceChunk:
    rng, log = ctx.rng, CorruptionLog()
    rows, occ = expand(p.n_probation)
    ident = identity(p, rows, ctx, "probation", log)
    # nDelius is where default dates of birth turn up most
    extra_default = pick(rng, ctx.dirt.dob_default * 1.5, ~ident.dob_missing)
    ident.dob[extra_default] = np.where(
        rng.random(len(extra_default)) < 0.5, np.datetime64("1900-01-01"), np.datetime64("1970-01-01")
    )
    log.add(extra_default, "date_of_birth", "default_date")
    crn = crns(p.crn_codes[rows, np.minimum(occ, 1)])
    plain_id_dirt(crn, ctx, log, "crn")
    married = p.birth_surname[rows] != p.surname[rows]
    previous = np.where(married & (rng.random(len(rows)) < 0.7), p.birth_surname[rows], "")
    in_prison = p.n_prison_numbers[rows] > 0
    noms = np.full(len(rows), "", dtype=object)
    sel = np.flatnonzero(in_prison & (rng.random(len(rows)) < 0.7))
    noms[sel] = prison_numbers(p.prison_codes[rows[sel], 0])
    plain_id_dirt(noms, ctx, log, "prison_number")
    _, postcode = address(p, rows, ctx, log, present=0.85)
    alias_names, _ = alias_strings(p, rows, rng, recorded=0.6)
    columns = {
        "crn": crn,
        "first_name": _title(ident.forename),
        "middle_names": _title(ident.middle_names),
        "surname": _title(ident.surname),
        "previous_surname": _title(previous.astype(object)),
        "date_of_birth": _dates(ident.dob, ident.dob_missing),
        "gender": _sex_codes(ident.sex, ("M", "F", "N")),
        "pnc": pnc_field(p, rows, ctx, log, "pnc_id", present=0.85, forms=(0.9, 0.02, 0.05, 0.02, 0.01)),
        "cro": cro_field(p, rows, ctx, log, "cro_number", present=0.5),
        "noms_number": noms,
        "postcode": postcode,
        "alias_names": alias_names,
        "probation_region": REGIONS[rng.integers(0, len(REGIONS), len(rows))],
        "order_type": ORDER_TYPES[rng.integers(0, len(ORDER_TYPES), len(rows))],
        "order_start_date": _dates(order_start := event_dates(p, rows, rng)),
    }
    return SourceChunk(p.person_id[rows], columns, log, {"rows": rows, "start": order_start})


def build_libra(p: People, ctx: Context, n_organisations: int, first_org: int) -> SourceChunk:
    rng, log = ctx.rng, CorruptionLog()
    rows, _ = expand(p.n_libra)
    ident = identity(p, rows, ctx, "libra", log)
    name = _defendant_names(ident, rng)
    dob_shown = (rng.random(len(rows)) < 0.55) & ~ident.dob_missing
    line, postcode = address(p, rows, ctx, log, present=0.92)
    columns = {
        "defendant_name": name,
        "defendant_dob": _dates(ident.dob, ~dob_shown, style="dmy"),
        "defendant_sex": _sex_codes(ident.sex, ("M", "F", "NS")),
        "address_line1": line,
        "postcode": postcode,
        "pnc_id": pnc_field(p, rows, ctx, log, "pnc_id", present=0.4, forms=(0.5, 0.1, 0.2, 0.1, 0.1)),
        "court_code": _court_codes(len(rows), rng),
        "hearing_date": _dates(event_dates(p, rows, rng)),
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
    rows = zip(
        ident.forename.tolist(), ident.middle_names.tolist(), ident.surname.tolist(), ident.sex.tolist()
    )
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


def _organisations(
    count: int, first: int, ctx: Context, log: CorruptionLog, offset: int
) -> tuple[np.ndarray, dict]:
    """Companies prosecuted in the magistrates' courts: their own person ids, ORG prefixed."""
    rng = ctx.rng
    cases = 1 + rng.poisson(1.5, count)
    org_rows, _ = expand(cases)
    names = (
        ORG_WORDS[rng.integers(0, len(ORG_WORDS), count)]
        + " "
        + ORG_TRADES[rng.integers(0, len(ORG_TRADES), count)]
    )
    suffix = ORG_SUFFIXES[rng.integers(0, len(ORG_SUFFIXES), count)]
    m = len(org_rows)
    this_suffix = suffix[org_rows].copy()
    varied = np.flatnonzero(rng.random(m) < 0.15)  # LTD one day, LIMITED the next
    this_suffix[varied] = ORG_SUFFIXES[rng.integers(0, len(ORG_SUFFIXES), len(varied))]
    changed = varied[this_suffix[varied] != suffix[org_rows][varied]]
    log.add(changed + offset, "name", "company_suffix")
    postcodes = np.array(
        [
            f"{a}{d} {s}AB"
            for a, d, s in zip(
                ctx.vocab.postcode_areas.draw(rng, count),
                rng.integers(1, 30, count),
                rng.integers(0, 10, count),
            )
        ],
        dtype=object,
    )
    columns = {
        "defendant_name": names[org_rows] + " " + this_suffix,
        "defendant_dob": np.full(m, "", dtype=object),
        "defendant_sex": np.full(m, "NS", dtype=object),
        "address_line1": np.array(
            [f"Unit {u} Industrial Estate" for u in rng.integers(1, 40, count)], dtype=object
        )[org_rows],
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
    committal = event_dates(p, rows, rng)
    year = committal.astype("datetime64[Y]").astype(np.int64) + 1970
    letter = np.array(list("TTTTSA"), dtype=object)[rng.integers(0, 6, len(rows))]
    case_number = np.array(
        [
            f"{c}{y}{s:04d}"
            for c, y, s in zip(letter.tolist(), year.tolist(), rng.integers(1, 10_000, len(rows)).tolist())
        ],
        dtype=object,
    )
    dob_shown = (rng.random(len(rows)) < 0.93) & ~ident.dob_missing
    columns = {
        "case_number": case_number,
        "surname": _upper(ident.surname),
        "forenames": _upper(_join_names(ident.forename, ident.middle_names)),
        "date_of_birth": _dates(ident.dob, ~dob_shown, style="dmy"),
        "sex": _sex_codes(ident.sex, ("MALE", "FEMALE", "NOT SPECIFIED")),
        "pnc_id": pnc_field(p, rows, ctx, log, "pnc_id", present=0.65, forms=(0.7, 0.05, 0.15, 0.05, 0.05)),
        "crown_court_code": np.array(
            [str(c) for c in rng.integers(401, 480, len(rows)).tolist()], dtype=object
        ),
        "committal_date": _dates(committal),
        "offence_code": OFFENCE_CODES[rng.integers(0, len(OFFENCE_CODES), len(rows))],
        "sentence_type": SENTENCE_TYPES[rng.integers(0, len(SENTENCE_TYPES), len(rows))],
    }
    return SourceChunk(p.person_id[rows], columns, log)
