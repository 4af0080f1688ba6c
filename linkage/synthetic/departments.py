"""Five more extracts about the same people: two justice, three from other departments.

``generate(..., departments=True)`` adds, chunk by chunk, OASys assessments and
accredited-programme records (justice), DWP benefit claims, HMRC employment spells and
learner records (the individualised learner record, ILR). Justice people are known to
each at the rates of ``profiles.Departments``; people outside justice (``N`` person ids,
``outside_ratio`` of them per justice person) are made with the same name and date-of-
birth machinery, some of them namesakes or relatives of justice people.

Spells carry dates tied to the justice events of the same person: benefit and employment
spells stop at a prison reception and never start inside custody; many releases are
followed by a benefit claim within weeks and some by a job within a year; some long
custodial bookings carry a learning aim delivered in prison. OASys assessments start
supervision orders and custodial bookings (and review, end and prepare for release);
programme referrals follow starting assessments.

Each department source writes names, dates of birth, sex and postcodes through
``records.identity`` with its own dirt (``SOURCE_DIRT``, ``_DEPT_DIRT``) and logs every
corruption. National Insurance numbers come with temporary ``TN`` numbers, the form's
example number, typos, malformed and never-issued forms; ULNs with the ILR's 9999999999
placeholder and typos that break the check digit. The random draws come from streams of
their own, so the five justice extracts are the same bytes with or without departments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from linkage.synthetic import corrupt
from linkage.synthetic.identifiers import (
    NINO_EXAMPLES,
    NINO_SPACE,
    ULN_PLACEHOLDER,
    SerialCounter,
    crns,
    ninos,
    prison_numbers,
    temporary_ninos,
    uln_remainders,
    ulns,
)
from linkage.synthetic.names import ORIGIN_SHARE, ORIGINS, Vocabulary, draw_by_group
from linkage.synthetic.population import (
    DAY,
    EXTRACT_DATE,
    MAX_ALIASES,
    YEAR,
    People,
    _addresses,
    _forenames,
    _marriages,
)
from linkage.synthetic.profiles import Departments, Dirt
from linkage.synthetic.profiles import Population as PopulationRates
from linkage.synthetic.records import (
    Context,
    CorruptionLog,
    _apply,
    expand,
    identity,
    pick,
    plain_id_dirt,
    recorded_address,
    pnc_field,
)
from linkage.synthetic.sources import (
    ORG_SUFFIXES,
    ORG_TRADES,
    ORG_WORDS,
    TITLES_F,
    SourceChunk,
    _dates,
    _sex_codes,
    _title,
    _upper,
)

DEPT_SOURCES: tuple[str, ...] = ("oasys", "programmes", "dwp_benefits", "hmrc_employment", "learners")

# The extract schemas; the first column of each is its record id. Stable: the
# cross-government job maps them.
DEPT_COLUMNS: dict[str, tuple[str, ...]] = {
    "oasys": (
        "assessment_id", "crn", "noms_number", "pnc", "family_name", "forename_1", "forename_2",
        "date_of_birth", "gender", "purpose_of_assessment", "setting", "initiation_date", "completed_date",
        "ogrs3_2yr", "rosh_level", "accommodation_need", "ete_need",
    ),
    "programmes": (
        "referral_id", "crn", "prison_number", "surname", "first_name", "date_of_birth", "gender",
        "programme", "setting", "referral_date", "start_date", "end_date", "outcome",
    ),
    "dwp_benefits": (
        "claim_id", "nino", "title", "forenames", "surname", "date_of_birth", "sex", "address_line1",
        "postcode", "benefit_type", "claim_start_date", "claim_end_date",
    ),
    "hmrc_employment": (
        "employment_id", "nino", "surname", "forenames", "date_of_birth", "sex", "postcode",
        "employer_paye_ref", "employer_name", "start_date", "end_date", "taxable_pay",
    ),
    "learners": (
        "learning_aim_id", "uln", "learner_ref", "ukprn", "family_name", "given_names", "date_of_birth",
        "sex", "postcode_prior_to_enrolment", "learning_aim_ref", "delivery_setting", "learn_start_date",
        "learn_planned_end_date", "learn_actual_end_date", "completion_status", "outcome",
    ),
}  # fmt: skip
DEPT_RECORD_ID_COLUMN = {source: cols[0] for source, cols in DEPT_COLUMNS.items()}
# Record id prefixes (then the record number, zero-padded).
DEPT_ID_PREFIX = {"oasys": "OA", "programmes": "AP", "dwp_benefits": "DWP", "hmrc_employment": "HM", "learners": "ILR"}

DATA_FROM = np.datetime64("2000-04-06")  # the benefit and employment extracts start here
ILR_FROM = np.datetime64("2002-08-01")
ULN_FROM = np.datetime64("2008-08-01")  # aims before the ULN was in use carry none
OASYS_FROM = np.datetime64("2003-04-01")
UC_FROM = np.datetime64("2016-01-01")
ESA_FROM = np.datetime64("2008-10-27")
_EPOCH = np.datetime64("1850-01-01")

# How each department source's dirt differs from the base rates (multipliers), beyond
# SOURCE_DIRT: departments verify identity more or less than a charge sheet does, and
# people use aliases less with the benefits office than with the police.
_DEPT_DIRT: dict[str, dict[str, float]] = {
    "oasys": {"alias_used": 0.8},
    "programmes": {"alias_used": 0.8},
    "dwp_benefits": {
        "alias_used": 0.15, "system_prefix": 0.0, "dob_wrong_date": 0.2, "dob_default": 0.3,
        "dob_missing": 0.2, "sex_unknown": 0.2,
    },
    "hmrc_employment": {
        "alias_used": 0.4, "system_prefix": 0.0, "dob_wrong_date": 0.3, "dob_default": 2.0,
        "dob_missing": 4.0, "forename_initial": 5.0, "forename_nickname": 2.0, "sex_unknown": 3.0,
        "nino_missing": 6.0,
    },
    "learners": {"alias_used": 0.3, "system_prefix": 0.0, "dob_wrong_date": 0.3},
}  # fmt: skip

BENEFITS_BEFORE_ESA = (("JSA", "IS", "IB", "DLA", "CA"), (0.45, 0.25, 0.15, 0.10, 0.05))
BENEFITS_BEFORE_UC = (("JSA", "ESA", "IS", "DLA", "PIP", "CA"), (0.40, 0.30, 0.10, 0.08, 0.04, 0.08))
BENEFITS_UC = (("UC", "ESA", "PIP", "JSA", "CA"), (0.65, 0.10, 0.15, 0.05, 0.05))
PROGRAMMES_BEFORE_2010 = (
    "Enhanced Thinking Skills", "Think First", "Cognitive Skills Booster", "Integrated Domestic Abuse Programme",
    "Aggression Replacement Training", "Sex Offender Treatment Programme",
)  # fmt: skip
PROGRAMMES_2010 = (
    "Thinking Skills Programme", "Building Better Relationships", "Resolve", "Core SOTP",
    "Drink Impaired Drivers Programme",
)  # fmt: skip
PROGRAMMES_2017 = (
    "Thinking Skills Programme", "Building Better Relationships", "Resolve", "Kaizen", "Horizon", "iHorizon",
    "Becoming New Me+", "Living as New Me",
)  # fmt: skip
ROSH_LEVELS = np.array(["Low", "Medium", "High", "Very High"], dtype=object)


@dataclass(frozen=True)
class DeptIds:
    """Serial counters for NINOs and ULNs, shared by every chunk (unique across the run)."""

    nino: SerialCounter
    uln: SerialCounter

    @classmethod
    def seeded(cls, rng: np.random.Generator) -> DeptIds:
        return cls(
            nino=SerialCounter.seeded(rng, NINO_SPACE, name="NINO"),
            uln=SerialCounter.seeded(rng, 9 * 10**8, name="ULN"),
        )

    def uln_bases(self, count: int) -> np.ndarray:
        """``count`` unused nine-digit ULN bases that have a check digit (about 1 in 11 has none)."""
        found: list[np.ndarray] = []
        need = count
        while need > 0:
            bases = self.uln(count=need + need // 8 + 8) + 10**8
            bases = bases[uln_remainders(bases) != 0][:need]
            found.append(bases)
            need -= len(bases)
        return np.concatenate(found) if found else np.empty(0, np.int64)


@dataclass
class DeptPeople:
    """Department facts about each person of the combined (justice, then outside) chunk."""

    n_justice: int
    nino: np.ndarray  # "" for people never given one
    nino2: np.ndarray  # a duplicate allocation, "" mostly
    in_dwp: np.ndarray
    in_hmrc: np.ndarray
    in_learners: np.ndarray
    adult_from: np.ndarray  # the later of the 16th birthday and DATA_FROM
    n_addresses: np.ndarray  # 1-3: addresses held since adult_from, oldest first
    moves: np.ndarray  # (n, 2) dates of the moves into address 1 then 0


# ---- people outside justice --------------------------------------------------------------


def build_outside(
    start: int,
    n: int,
    rng: np.random.Generator,
    rates: PopulationRates,
    vocab: Vocabulary,
    justice: People,
    d: Departments,
) -> People:
    """People known to departments but not to justice, with ``N`` person ids.

    Same name machinery as justice people, ages 16 to 85 at the extract date; a few are
    namesakes of justice people of the chunk (same name, sex and date of birth) and a few
    their relatives (same surname and main address).
    """
    index = np.arange(start, start + n, dtype=np.int64)
    sex = (rng.random(n) < 0.5).astype(np.int8)
    origin = rng.choice(len(ORIGINS), size=n, p=ORIGIN_SHARE).astype(np.int8)
    forename, middle = _forenames(sex, origin, rng, vocab)
    surname = draw_by_group(vocab.surnames, sex, origin, rng)
    dob = EXTRACT_DATE - (rng.uniform(16, 85, n) * YEAR).astype(np.int64) * DAY
    address_line, postcode = _addresses(n, rng, vocab)

    def zeros(dtype=np.int64, width: int | None = None, fill=0) -> np.ndarray:
        return np.full(n if width is None else (n, width), fill, dtype=dtype)

    p = People(
        index=index,
        person_id=np.array([f"N{i + 1:08d}" for i in index.tolist()], dtype=object),
        sex=sex,
        origin=origin,
        ethnicity=zeros(object, fill=""),
        forename=forename,
        middle_names=middle,
        surname=surname,
        birth_surname=surname.copy(),
        dob=dob,
        first_contact=dob.copy(),
        address_line=address_line,
        postcode=postcode,
        alias_forename=zeros(object, MAX_ALIASES, ""),
        alias_surname=zeros(object, MAX_ALIASES, ""),
        alias_dob=np.repeat(dob[:, None], MAX_ALIASES, axis=1),
        n_aliases=zeros(np.int8),
        prolific=zeros(np.float64),
        pnc_year=zeros(),
        pnc_serial=zeros(),
        second_pnc_serial=zeros(fill=-1),
        cro_kind=zeros(np.int8),
        cro_year=zeros(),
        cro_serial=zeros(),
        prison_codes=zeros(width=3, fill=-1),
        crn_codes=zeros(width=2, fill=-1),
        n_pnc=zeros(),
        n_libra=zeros(),
        n_crest=zeros(),
        n_prison_numbers=zeros(),
        n_bookings=zeros(width=3),
        n_probation=zeros(),
    )
    m = len(justice)
    perm = rng.permutation(n)
    k1 = min(int(round(n * d.cross_namesakes)), n) if m else 0
    k2 = min(int(round(n * d.cross_relatives)), n - k1) if m else 0
    namesakes, relatives = perm[:k1], perm[k1 : k1 + k2]
    heads = rng.integers(0, max(m, 1), k1)
    for name in ("origin", "sex", "forename", "surname", "birth_surname", "dob"):
        getattr(p, name)[namesakes] = getattr(justice, name)[heads]
    heads = rng.integers(0, max(m, 1), k2)
    p.origin[relatives] = justice.origin[heads]
    p.surname[relatives] = justice.surname[heads]
    p.birth_surname[relatives] = justice.surname[heads]
    p.address_line[relatives, 0] = justice.address_line[heads, 0]
    p.postcode[relatives, 0] = justice.postcode[heads, 0]
    gap = (rng.uniform(1, 35, k2) * YEAR).astype(np.int64) * DAY
    younger = justice.dob[heads] + gap
    p.dob[relatives] = np.where(younger <= EXTRACT_DATE - np.int64(16 * YEAR) * DAY, younger, justice.dob[heads] - gap)
    p.forename[relatives], p.middle_names[relatives] = _forenames(p.sex[relatives], p.origin[relatives], rng, vocab)
    _marriages(p, rng, rates, vocab)
    p.first_contact[:] = p.dob + np.int64(16 * YEAR) * DAY
    return p


def concat_people(a: People, b: People) -> People:
    return People(**{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in fields(People)})


def dept_people(p: People, n_justice: int, rng: np.random.Generator, d: Departments, ids: DeptIds) -> DeptPeople:
    n = len(p)
    justice = np.arange(n) < n_justice
    adult_from = np.maximum(p.dob + np.int64(16 * YEAR) * DAY, DATA_FROM)
    active = adult_from < EXTRACT_DATE - 30 * DAY
    # People who came as adults from abroad (and some others) may never get a NINO.
    abroad = np.isin(p.origin, (3, 4, 6))
    no_nino = rng.random(n) < d.no_nino * np.where(abroad, 3.0, 0.4)
    given = np.flatnonzero(active & ~no_nino)
    nino = np.full(n, "", dtype=object)
    nino[given] = ninos(ids.nino(count=len(given)), rng.integers(0, 4, len(given)))
    twice = given[rng.random(len(given)) < d.second_nino]
    nino2 = np.full(n, "", dtype=object)
    nino2[twice] = ninos(ids.nino(count=len(twice)), rng.integers(0, 4, len(twice)))
    u = rng.random((n, 3))
    in_dwp = active & (u[:, 0] < np.where(justice, d.dwp, d.outside_dwp))
    in_hmrc = active & (u[:, 1] < np.where(justice, d.hmrc, d.outside_hmrc))
    young = p.dob > np.datetime64("1984-01-01")  # 18 or under when the learner record began
    learner_rate = np.where(justice, d.learners, d.outside_learners) * np.where(young, 1.4, 0.6)
    can_learn = p.dob + np.int64(60 * YEAR) * DAY > ILR_FROM + 30 * DAY  # under 60 when the ILR began
    in_learners = active & can_learn & (u[:, 2] < learner_rate)
    outside = ~justice
    none = outside & ~(in_dwp | in_hmrc | in_learners) & active
    in_hmrc |= none  # everyone outside justice is known to some department
    v = rng.random(n)
    n_addresses = np.where(v < 0.4, 1, np.where(v < 0.75, 2, 3)).astype(np.int8)
    span = np.asarray(EXTRACT_DATE - adult_from).astype(np.int64).clip(0)
    moves = adult_from[:, None] + (np.sort(rng.random((n, 2)), axis=1) * span[:, None]).astype(np.int64) * DAY
    return DeptPeople(n_justice, nino, nino2, in_dwp, in_hmrc, in_learners, adult_from, n_addresses, moves)


# ---- shared helpers ------------------------------------------------------------------------


def dept_context(ctx_rng: np.random.Generator, dirt: Dirt, vocab: Vocabulary, source: str) -> Context:
    changes = {k: getattr(dirt, k) * f for k, f in _DEPT_DIRT[source].items()}
    return Context(ctx_rng, dataclasses.replace(dirt, **changes), vocab)


def _between(lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    span = ((hi - lo) / DAY).clip(0)
    return lo + (rng.random(len(lo)) * span).astype(np.int64) * DAY


def _days(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, n).astype(np.int64) * DAY


def _lognormal_days(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return np.maximum(1, rng.lognormal(np.log(median), sigma, n)).astype(np.int64) * DAY


def _key(rows: np.ndarray, when: np.ndarray) -> np.ndarray:
    return (rows.astype(np.int64) << 20) | ((when - _EPOCH) / DAY).astype(np.int64)


def clip_to_custody(
    rows: np.ndarray, start: np.ndarray, end: np.ndarray, custody: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(keep, end): a spell that starts inside custody is dropped; one running into a
    reception ends on the reception date. Custody is the prison chunk's bookings."""
    keep = np.ones(len(rows), dtype=bool)
    c_rows = custody.get("rows", np.empty(0, np.int64))
    if len(c_rows) == 0 or len(rows) == 0:
        return keep, end
    release_key = _key(c_rows, custody["release"])
    order = np.argsort(release_key, kind="stable")
    release_key, c_rows, reception = release_key[order], c_rows[order], custody["reception"][order]
    j = np.searchsorted(release_key, _key(rows, start), side="right")  # first booking released after start
    jj = np.minimum(j, len(release_key) - 1)
    same = (j < len(release_key)) & (c_rows[jj] == rows)
    rec = reception[jj]
    keep = ~(same & (rec <= start))
    end = np.where(same & (rec > start) & (rec < end), rec, end)
    return keep, end


def _address_at(p: People, dp: DeptPeople, rows: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Which of the person's addresses (0 is the latest, the main one) they lived at then."""
    n_addr = dp.n_addresses[rows]
    which = np.where((n_addr >= 2) & (when < dp.moves[rows, 1]), 1, 0)
    return np.where((n_addr == 3) & (when < dp.moves[rows, 0]), 2, which)


def _postcodes(
    p: People,
    dp: DeptPeople,
    rows: np.ndarray,
    when: np.ndarray,
    ctx: Context,
    log: CorruptionLog,
    present: float,
    nfa: np.ndarray | float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(address line, postcode) held at ``when``; no fixed abode, typos and blanks as logged dirt."""
    rng, d = ctx.rng, ctx.dirt
    n = len(rows)
    which = _address_at(p, dp, rows, when)
    line = p.address_line[rows, which]
    postcode = p.postcode[rows, which]
    homeless = np.flatnonzero(rng.random(n) < d.postcode_nfa + nfa)
    line[homeless] = "No Fixed Abode"
    postcode[homeless] = np.where(rng.random(len(homeless)) < 0.7, "NF1 1NF", "NF1 1FA")
    log.add(homeless, "postcode", "no_fixed_abode")
    return recorded_address(line, postcode, ctx, log, present)


def nino_field(
    p: People,
    dp: DeptPeople,
    rows: np.ndarray,
    ctx: Context,
    log: CorruptionLog,
    *,
    temporary_if_none: float,
) -> np.ndarray:
    """NINOs as a department writes them: mostly valid, in several forms, with the dirt
    seen in practice. People without a NINO carry a temporary ``TN`` number
    (``temporary_if_none`` of their records) or nothing."""
    rng, d = ctx.rng, ctx.dirt
    n = len(rows)
    value = dp.nino[rows].copy()
    other = np.flatnonzero((dp.nino2[rows] != "") & (rng.random(n) < 0.4))
    value[other] = dp.nino2[rows[other]]
    log.add(other, "nino", "second_nino")
    none = np.flatnonzero((value == "") & (rng.random(n) < temporary_if_none))
    value[none] = temporary_ninos(p.dob[rows[none]], p.sex[rows[none]])
    log.add(none, "nino", "temporary")
    has = np.flatnonzero(dp.nino[rows] != "")
    rates = [
        d.nino_missing,
        d.nino_temporary,
        d.nino_example,
        d.nino_typo,
        d.nino_malformed,
        d.nino_not_issued,
        d.nino_other_person,
    ]
    choice = np.searchsorted(np.cumsum(rates), rng.random(len(has)), side="right")
    sel = has[choice == 0]
    value[sel] = ""
    log.add(sel, "nino", "missing")
    sel = has[choice == 1]
    value[sel] = temporary_ninos(p.dob[rows[sel]], p.sex[rows[sel]])
    log.add(sel, "nino", "temporary")
    sel = has[choice == 2]
    value[sel] = NINO_EXAMPLES[rng.integers(0, len(NINO_EXAMPLES), len(sel))]
    log.add(sel, "nino", "example")
    _apply(value, has[choice == 3], lambda v: corrupt.digit_typo(v, rng), log, "nino", "typo")
    _apply(value, has[choice == 4], lambda v: _malformed_nino(v, rng), log, "nino", "malformed")
    _apply(value, has[choice == 5], lambda v: _not_issued_nino(v, rng), log, "nino", "not_issued")
    sel = has[choice == 6]
    if len(sel) and len(has) > 1:
        donors = has[rng.integers(0, len(has), len(sel))]
        ok = p.index[rows[donors]] != p.index[rows[sel]]
        value[sel[ok]] = dp.nino[rows[donors[ok]]]
        log.add(sel[ok], "nino", "other_person")
    # Written forms (not logged): spaced pairs, no suffix, lower case.
    u = rng.random(n)
    spaced = np.flatnonzero((u < 0.12) & (value != ""))
    value[spaced] = np.array([_spaced(v) for v in value[spaced].tolist()], dtype=object)
    bare = np.flatnonzero((u >= 0.12) & (u < 0.17) & np.array([len(v) == 9 for v in value.tolist()]))
    value[bare] = np.array([v[:8] for v in value[bare].tolist()], dtype=object)
    lower = np.flatnonzero((u >= 0.17) & (u < 0.19))
    value[lower] = np.array([v.lower() for v in value[lower].tolist()], dtype=object)
    return value


def _spaced(v: str) -> str:
    """``AB123456C`` -> ``AB 12 34 56 C``."""
    if len(v) < 8:
        return v
    return " ".join([v[:2], v[2:4], v[4:6], v[6:8], v[8:]]).strip()


def _malformed_nino(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A digit dropped or doubled, a suffix that is not A-D, or O keyed for a zero."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, (u0, u1)) in enumerate(zip(values.tolist(), rng.random((len(values), 2)).tolist())):
        if len(v) < 9:
            continue
        pos = 2 + int(u1 * 6)
        if u0 < 0.25 and "0" in v[2:8]:
            k = v.index("0", 2)
            new = v[:k] + "O" + v[k + 1 :]
        elif u0 < 0.5:
            new = v[:pos] + v[pos + 1 :]
        elif u0 < 0.75:
            new = v[:pos] + v[pos] + v[pos:]
        else:
            new = v[:8] + "EFGHMX"[int(u1 * 6)]
        out[i], changed[i] = new, new != v
    return out, changed


def _not_issued_nino(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A prefix letter keyed as one never issued: O for 0 in second place, Q for O, D for B."""
    out = values.copy()
    changed = np.zeros(len(values), dtype=bool)
    for i, (v, u) in enumerate(zip(values.tolist(), rng.random(len(values)).tolist())):
        if len(v) < 2:
            continue
        new = v[0] + "O" + v[2:] if u < 0.5 else "DFIQUV"[int(u * 12) % 6] + v[1:]
        out[i], changed[i] = new, new != v
    return out, changed


def _employer_pool() -> tuple[np.ndarray, np.ndarray]:
    """5,000 employers (PAYE reference, name), fixed whatever the seed."""
    rng = np.random.default_rng(2013)
    n = 5_000
    office = rng.integers(100, 999, n)
    letters = np.array(list("ABCDEFGHJKLMNPRSTWXYZ"), dtype=object)[rng.integers(0, 21, (n, 2))]
    serial = rng.integers(1, 99_999, n)
    refs = np.array(
        [f"{o}/{a}{b}{s:05d}" for o, (a, b), s in zip(office.tolist(), letters.tolist(), serial.tolist())],
        dtype=object,
    )
    names = (
        ORG_WORDS[rng.integers(0, len(ORG_WORDS), n)]
        + " "
        + ORG_TRADES[rng.integers(0, len(ORG_TRADES), n)]
        + " "
        + ORG_SUFFIXES[rng.integers(0, len(ORG_SUFFIXES), n)]
    )
    return refs, names


EMPLOYER_REFS, EMPLOYER_NAMES = _employer_pool()
PROVIDERS = np.array([str(10_000_000 + k) for k in np.random.default_rng(2002).choice(90_000, 400, replace=False)], dtype=object)


def _pick_weighted(options: tuple[tuple[str, ...], tuple[float, ...]], n: int, rng: np.random.Generator) -> np.ndarray:
    names, w = options
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=np.array(w) / np.sum(w))]


def _end_dates(end: np.ndarray) -> np.ndarray:
    """True where the spell was still running at the extract date (its end is left blank)."""
    return end > EXTRACT_DATE


# ---- the department sources ---------------------------------------------------------------


def build_dwp(p: People, dp: DeptPeople, prison: dict, ctx: Context, d: Departments) -> SourceChunk:
    """One row per benefit claim, with the name, date of birth and address held at its start."""
    rng, log = ctx.rng, CorruptionLog()
    who = dp.in_dwp
    count = np.where(who, 1 + np.minimum(rng.poisson(1.2 + 0.4 * np.minimum(p.prolific, 5)), 14), 0)
    rows, _ = expand(count)
    start = _between(dp.adult_from[rows], np.full(len(rows), EXTRACT_DATE), rng)
    end = start + _lognormal_days(rng, 240, 1.1, len(rows))
    after = np.zeros(len(rows), dtype=bool)
    r, rel = _releases(prison, who)
    claim = rng.random(len(r)) < d.benefit_after_release
    r, rel = r[claim], rel[claim]
    s2 = rel + np.minimum(rng.exponential(21, len(r)), 300).astype(np.int64) * DAY
    rows = np.concatenate([rows, r])
    start = np.concatenate([start, s2])
    end = np.concatenate([end, s2 + _lognormal_days(rng, 200, 1.0, len(r))])
    after = np.concatenate([after, np.ones(len(r), dtype=bool)])
    keep, end = clip_to_custody(rows, start, end, prison)
    keep &= start <= EXTRACT_DATE
    rows, start, end, after = rows[keep], start[keep], end[keep], after[keep]

    n = len(rows)
    ident = identity(p, rows, ctx, "dwp_benefits", log)
    nino = nino_field(p, dp, rows, ctx, log, temporary_if_none=0.8)
    line, postcode = _postcodes(p, dp, rows, start, ctx, log, present=0.98, nfa=np.where(after, 0.08, 0.0))
    benefit = np.where(
        start < ESA_FROM,
        _pick_weighted(BENEFITS_BEFORE_ESA, n, rng),
        np.where(start < UC_FROM, _pick_weighted(BENEFITS_BEFORE_UC, n, rng), _pick_weighted(BENEFITS_UC, n, rng)),
    )
    title = np.where(ident.sex == 1, TITLES_F[rng.integers(0, 3, n)], np.where(ident.sex == 0, "Mr", ""))
    title = np.where(rng.random(n) < 0.05, "", title)
    ongoing = _end_dates(end)
    columns = {
        "nino": nino,
        "title": title.astype(object),
        "forenames": _upper(_join(ident.forename, ident.middle_names)),
        "surname": _upper(ident.surname),
        "date_of_birth": _dates(ident.dob, ident.dob_missing, style="compact"),
        "sex": _sex_codes(ident.sex, ("M", "F", "")),
        "address_line1": _upper(line),
        "postcode": postcode,
        "benefit_type": benefit.astype(object),
        "claim_start_date": _dates(start, style="compact"),
        "claim_end_date": _dates(end, ongoing, style="compact"),
    }
    return SourceChunk(p.person_id[rows], columns, log)


def _releases(prison: dict, who: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(person row, release date) of the chunk's releases since DATA_FROM, of people in ``who``."""
    if not prison:
        return np.empty(0, np.int64), np.empty(0, "datetime64[D]")
    rows, release, released = prison["rows"], prison["release"], prison["released"]
    ok = released & (release >= DATA_FROM) & who[rows]
    return rows[ok], release[ok]


def _join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([f"{x} {y}".strip() for x, y in zip(a.tolist(), b.tolist())], dtype=object)


def build_hmrc(p: People, dp: DeptPeople, prison: dict, ctx: Context, d: Departments) -> SourceChunk:
    """One row per employment spell (a P45/RTI employment), keyed by NINO and employer."""
    rng, log = ctx.rng, CorruptionLog()
    who = dp.in_hmrc
    justice = np.arange(len(p)) < dp.n_justice
    count = np.where(who, 1 + np.minimum(rng.poisson(np.where(justice, 1.1, 1.8)), 14), 0)
    rows, _ = expand(count)
    start = _between(dp.adult_from[rows], np.full(len(rows), EXTRACT_DATE), rng)
    end = start + _lognormal_days(rng, 420, 1.2, len(rows))
    r, rel = _releases(prison, who)
    job = rng.random(len(r)) < d.employment_after_release
    r, rel = r[job], rel[job]
    s2 = rel + _days(rng, 14, 365, len(r))
    rows = np.concatenate([rows, r])
    start = np.concatenate([start, s2])
    end = np.concatenate([end, s2 + _lognormal_days(rng, 150, 1.2, len(r))])
    keep, end = clip_to_custody(rows, start, end, prison)
    keep &= start <= EXTRACT_DATE
    rows, start, end = rows[keep], start[keep], end[keep]

    n = len(rows)
    ident = identity(p, rows, ctx, "hmrc_employment", log)
    nino = nino_field(p, dp, rows, ctx, log, temporary_if_none=0.3)
    _, postcode = _postcodes(p, dp, rows, start, ctx, log, present=0.9)
    employer = rng.integers(0, len(EMPLOYER_REFS), n)
    ongoing = _end_dates(end)
    years = (np.minimum(end, EXTRACT_DATE) - start) / DAY / 365.25
    pay = (years * rng.lognormal(np.log(16_000), 0.6, n)).round().astype(np.int64)
    columns = {
        "nino": nino,
        "surname": _upper(ident.surname),
        "forenames": _upper(_join(ident.forename, np.where(rng.random(n) < 0.5, ident.middle_names, ""))),
        "date_of_birth": _dates(ident.dob, ident.dob_missing, style="dmy"),
        "sex": _sex_codes(ident.sex, ("M", "F", "")),
        "postcode": postcode,
        "employer_paye_ref": EMPLOYER_REFS[employer],
        "employer_name": EMPLOYER_NAMES[employer],
        "start_date": _dates(start, style="dmy"),
        "end_date": _dates(end, ongoing, style="dmy"),
        "taxable_pay": pay.astype(str).astype(object),
    }
    return SourceChunk(p.person_id[rows], columns, log)


def build_learners(
    p: People, dp: DeptPeople, prison: dict, ctx: Context, d: Departments, ids: DeptIds
) -> SourceChunk:
    """One row per learning aim (ILR), in the community or, for some long bookings, in custody."""
    rng, log = ctx.rng, CorruptionLog()
    who = dp.in_learners
    count = np.where(who, 1 + np.minimum(rng.poisson(1.2, len(p)), 8), 0)
    rows, _ = expand(count)
    lo = np.maximum(p.dob[rows] + np.int64(16 * YEAR) * DAY, ILR_FROM)
    hi = np.minimum(p.dob[rows] + np.int64(60 * YEAR) * DAY, EXTRACT_DATE)
    # learning comes young: a start skewed towards the beginning of the window
    span = ((hi - lo) / DAY).clip(0)
    start = lo + (rng.beta(1.0, 2.5, len(rows)) * span).astype(np.int64) * DAY
    ok = hi > lo
    keep, _ = clip_to_custody(rows, start, start, prison)
    keep &= ok
    rows, start = rows[keep], start[keep]
    custody = np.zeros(len(rows), dtype=bool)
    if prison:
        c_rows, reception, release = prison["rows"], prison["reception"], prison["release"]
        long = ((release - reception) / DAY >= 90) & (reception >= ILR_FROM) & (reception <= EXTRACT_DATE)
        inside = np.flatnonzero(long & (rng.random(len(c_rows)) < d.learning_in_custody))
        length = ((release[inside] - reception[inside]) / DAY).astype(np.int64)
        s2 = reception[inside] + (14 + rng.random(len(inside)) * np.minimum(180, length - 14)).astype(np.int64) * DAY
        ok2 = s2 <= EXTRACT_DATE
        rows = np.concatenate([rows, c_rows[inside][ok2]])
        start = np.concatenate([start, s2[ok2]])
        custody = np.concatenate([custody, np.ones(int(ok2.sum()), dtype=bool)])

    n = len(rows)
    # ULNs for everyone with an aim, in person order (deterministic)
    learners = np.unique(rows)
    uln_of = np.full(len(p), "", dtype=object)
    uln_of[learners] = ulns(ids.uln_bases(len(learners)))
    uln = uln_of[rows].copy()
    uln[start < ULN_FROM] = ""  # by design: before the ULN was in use
    has = np.flatnonzero(uln != "")
    dd = ctx.dirt
    choice = np.searchsorted(
        np.cumsum([dd.uln_placeholder, dd.uln_typo, dd.uln_other_person]), rng.random(len(has)), side="right"
    )
    sel = has[choice == 0]
    uln[sel] = ULN_PLACEHOLDER
    log.add(sel, "uln", "placeholder")
    _apply(uln, has[choice == 1], lambda v: corrupt.digit_typo(v, rng), log, "uln", "typo")
    sel = has[choice == 2]
    if len(sel) and len(has) > 1:
        donors = has[rng.integers(0, len(has), len(sel))]
        ok = rows[donors] != rows[sel]
        uln[sel[ok]] = uln[donors[ok]]
        log.add(sel[ok], "uln", "other_person")

    ident = identity(p, rows, ctx, "learners", log)
    _, postcode = _postcodes(p, dp, rows, start, ctx, log, present=0.97)
    unknown = pick(rng, dd.postcode_unknown, ~custody)
    postcode[unknown] = "ZZ99 9ZZ"
    log.add(unknown, "postcode", "unknown_postcode")
    postcode[custody & (rng.random(n) < 0.5)] = ""  # prison education: often no home postcode
    planned = start + _days(rng, 60, 720, n)
    u = rng.random(n)
    finished = planned <= EXTRACT_DATE
    completed = finished & (u < 0.7)
    withdrawn = finished & ~completed
    actual = np.where(completed, planned + _days(rng, -30, 60, n), start + ((planned - start) * rng.random(n)).astype("timedelta64[D]"))
    status = np.where(completed, "2", np.where(withdrawn, np.where(u < 0.95, "3", "6"), "1"))
    outcome = np.where(completed, np.where(rng.random(n) < 0.85, "1", "2"), np.where(withdrawn, "3", "8"))
    aim_ref = np.where(
        rng.random(n) < 0.1, "ZPROG001", np.array([f"6{k:07d}" for k in rng.integers(0, 10**7, n).tolist()], dtype=object)
    )
    columns = {
        "uln": uln,
        "learner_ref": np.array([f"{k:08d}" for k in rng.integers(0, 10**8, n).tolist()], dtype=object),
        "ukprn": PROVIDERS[rng.integers(0, len(PROVIDERS), n)],
        "family_name": _title(ident.surname),
        "given_names": _title(_join(ident.forename, ident.middle_names)),
        "date_of_birth": _dates(ident.dob, ident.dob_missing),
        "sex": _sex_codes(ident.sex, ("M", "F", "")),
        "postcode_prior_to_enrolment": postcode,
        "learning_aim_ref": aim_ref.astype(object),
        "delivery_setting": np.where(custody, "Custody", "Community").astype(object),
        "learn_start_date": _dates(start),
        "learn_planned_end_date": _dates(planned),
        "learn_actual_end_date": _dates(np.minimum(actual, EXTRACT_DATE), ~finished),
        "completion_status": status.astype(object),
        "outcome": outcome.astype(object),
    }
    return SourceChunk(p.person_id[rows], columns, log)


@dataclass
class _Assessments:
    rows: np.ndarray
    date: np.ndarray
    purpose: np.ndarray
    custody: np.ndarray
    start: np.ndarray  # a starting assessment (programme referrals follow these)


def _assessments(p: People, prison: dict, probation: dict, rng: np.random.Generator, d: Departments) -> _Assessments:
    parts: list[tuple[np.ndarray, np.ndarray, str, bool, bool]] = []
    if prison:
        r, rec, rel, released = prison["rows"], prison["reception"], prison["release"], prison["released"]
        days = (rel - rec) / DAY
        sel = (days >= 28) & (rng.random(len(r)) < d.oasys)
        parts.append((r[sel], rec[sel] + _days(rng, 3, 40, int(sel.sum())), "Start Custody", True, True))
        pre = sel & released & (days > 180) & (rng.random(len(r)) < 0.6)
        parts.append((r[pre], rel[pre] - _days(rng, 14, 60, int(pre.sum())), "Pre-Release", True, False))
    if probation:
        r, start = probation["rows"], probation["start"]
        sel = rng.random(len(r)) < d.oasys
        licence = rng.random(len(r)) < 0.35
        for lic, purpose in ((False, "Start of Community Order"), (True, "Start of Licence")):
            s = sel & (licence == lic)
            parts.append((r[s], start[s] + _days(rng, 0, 25, int(s.sum())), purpose, False, True))
        review = sel & (rng.random(len(r)) < 0.5)
        parts.append((r[review], start[review] + _days(rng, 150, 210, int(review.sum())), "Review", False, False))
        end = sel & (rng.random(len(r)) < 0.35)
        parts.append((r[end], start[end] + _days(rng, 330, 730, int(end.sum())), "Termination", False, False))
    if not parts:
        empty = np.empty(0, np.int64)
        return _Assessments(empty, empty.astype("datetime64[D]"), empty.astype(object), empty.astype(bool), empty.astype(bool))
    rows = np.concatenate([x[0] for x in parts])
    date = np.concatenate([x[1] for x in parts])
    purposes = np.concatenate([np.full(len(x[0]), x[2], dtype=object) for x in parts])
    custody = np.concatenate([np.full(len(x[0]), x[3]) for x in parts])
    start = np.concatenate([np.full(len(x[0]), x[4]) for x in parts])
    ok = (date >= OASYS_FROM) & (date <= EXTRACT_DATE)
    return _Assessments(rows[ok], date[ok], purposes[ok], custody[ok], start[ok])


def _crn_of(p: People, rows: np.ndarray) -> np.ndarray:
    out = np.full(len(rows), "", dtype=object)
    held = np.flatnonzero(p.crn_codes[rows, 0] >= 0)
    out[held] = crns(p.crn_codes[rows[held], 0])
    return out


def _prison_number_of(p: People, rows: np.ndarray) -> np.ndarray:
    out = np.full(len(rows), "", dtype=object)
    held = np.flatnonzero(p.prison_codes[rows, 0] >= 0)
    out[held] = prison_numbers(p.prison_codes[rows[held], 0])
    return out


def build_oasys(
    p: People, prison: dict, probation: dict, ctx: Context, d: Departments
) -> tuple[SourceChunk, _Assessments]:
    """One row per OASys assessment, from 2003: at the start of a custodial booking or a
    supervision order, at reviews and terminations, and before release."""
    rng, log = ctx.rng, CorruptionLog()
    a = _assessments(p, prison, probation, rng, d)
    rows, n = a.rows, len(a.rows)
    ident = identity(p, rows, ctx, "oasys", log)
    crn = np.where(rng.random(n) < 0.95, _crn_of(p, rows), "").astype(object)
    plain_id_dirt(crn, ctx, log, "crn")
    noms = np.where(rng.random(n) < np.where(a.custody, 0.95, 0.6), _prison_number_of(p, rows), "").astype(object)
    plain_id_dirt(noms, ctx, log, "prison_number")
    completed = a.date + _days(rng, 0, 28, n)
    ogrs = np.clip(100 * (1 - np.exp(-0.45 * p.prolific[rows])) + rng.normal(0, 8, n), 1, 99).astype(np.int64)
    rosh = ROSH_LEVELS[rng.choice(4, size=n, p=[0.3, 0.5, 0.17, 0.03])]
    columns = {
        "crn": crn,
        "noms_number": noms,
        "pnc": pnc_field(p, rows, ctx, log, "pnc_id", present=0.6, forms=(0.6, 0.05, 0.25, 0.05, 0.05)),
        "family_name": _upper(ident.surname),
        "forename_1": _upper(ident.forename),
        "forename_2": _upper(np.array([m.split(" ")[0] for m in ident.middle_names.tolist()], dtype=object)),
        "date_of_birth": _dates(ident.dob, ident.dob_missing, style="dmy"),
        "gender": _sex_codes(ident.sex, ("Male", "Female", "Not Specified")),
        "purpose_of_assessment": a.purpose,
        "setting": np.where(a.custody, "Custody", "Community").astype(object),
        "initiation_date": _dates(a.date, style="dmy"),
        "completed_date": _dates(completed, completed > EXTRACT_DATE, style="dmy"),
        "ogrs3_2yr": ogrs.astype(str).astype(object),
        "rosh_level": rosh,
        "accommodation_need": rng.choice(np.array(["0", "1", "2"], dtype=object), size=n, p=[0.5, 0.3, 0.2]),
        "ete_need": rng.choice(np.array(["0", "1", "2"], dtype=object), size=n, p=[0.35, 0.35, 0.3]),
    }
    return SourceChunk(p.person_id[rows], columns, log), a


def build_programmes(p: People, a: _Assessments, ctx: Context, d: Departments) -> SourceChunk:
    """One row per referral to an accredited programme, after a starting assessment."""
    rng, log = ctx.rng, CorruptionLog()
    sel = np.flatnonzero(a.start & (rng.random(len(a.rows)) < d.programmes))
    rows, custody = a.rows[sel], a.custody[sel]
    referral = a.date[sel] + _days(rng, 7, 120, len(sel))
    keep = referral <= EXTRACT_DATE
    sel, rows, custody, referral = sel[keep], rows[keep], custody[keep], referral[keep]
    n = len(rows)
    start = referral + _days(rng, 14, 200, n)
    end = start + _days(rng, 56, 180, n)
    u = rng.random(n)
    not_started = (u < 0.12) | (start > EXTRACT_DATE)
    ongoing = ~not_started & (end > EXTRACT_DATE)
    outcome = np.where(
        not_started, "Not started", np.where(ongoing, "Ongoing", np.where(u < 0.75, "Completed", "Non-completion"))
    )
    ended = ~not_started & ~ongoing
    end = np.where(outcome == "Non-completion", start + ((end - start) * rng.random(n)).astype("timedelta64[D]"), end)
    year = referral.astype("datetime64[Y]").astype(np.int64) + 1970
    programme = np.empty(n, dtype=object)
    for names, lo, hi in ((PROGRAMMES_BEFORE_2010, 0, 2010), (PROGRAMMES_2010, 2010, 2017), (PROGRAMMES_2017, 2017, 9999)):
        k = np.flatnonzero((year >= lo) & (year < hi))
        programme[k] = np.array(names, dtype=object)[rng.integers(0, len(names), len(k))]
    ident = identity(p, rows, ctx, "programmes", log)
    crn = np.where(rng.random(n) < np.where(custody, 0.5, 0.97), _crn_of(p, rows), "").astype(object)
    plain_id_dirt(crn, ctx, log, "crn")
    number = np.where(rng.random(n) < np.where(custody, 0.97, 0.3), _prison_number_of(p, rows), "").astype(object)
    plain_id_dirt(number, ctx, log, "prison_number")
    columns = {
        "crn": crn,
        "prison_number": number,
        "surname": _title(ident.surname),
        "first_name": _title(ident.forename),
        "date_of_birth": _dates(ident.dob, ident.dob_missing),
        "gender": _sex_codes(ident.sex, ("M", "F", "N")),
        "programme": programme,
        "setting": np.where(custody, "Custody", "Community").astype(object),
        "referral_date": _dates(referral),
        "start_date": _dates(start, not_started),
        "end_date": _dates(end, ~ended),
        "outcome": outcome.astype(object),
    }
    return SourceChunk(p.person_id[rows], columns, log)


def build_departments(
    justice: People,
    prison: dict,
    probation: dict,
    outside_start: int,
    rng: np.random.Generator,
    dirt: Dirt,
    rates: PopulationRates,
    vocab: Vocabulary,
    ids: DeptIds,
    d: Departments,
) -> tuple[int, Iterator[tuple[str, SourceChunk]]]:
    """The outside people made alongside one chunk of justice people (how many), and the
    five added sources for them, one at a time so that only one is held in memory."""
    n_out = int(round(len(justice) * d.outside_ratio))
    outside = build_outside(outside_start, n_out, rng, rates, vocab, justice, d)

    def chunks() -> Iterator[tuple[str, SourceChunk]]:
        oasys, assessed = build_oasys(justice, prison, probation, dept_context(rng, dirt, vocab, "oasys"), d)
        yield "oasys", oasys
        del oasys
        yield "programmes", build_programmes(justice, assessed, dept_context(rng, dirt, vocab, "programmes"), d)
        p = concat_people(justice, outside)
        dp = dept_people(p, len(justice), rng, d, ids)
        yield "dwp_benefits", build_dwp(p, dp, prison, dept_context(rng, dirt, vocab, "dwp_benefits"), d)
        yield "hmrc_employment", build_hmrc(p, dp, prison, dept_context(rng, dirt, vocab, "hmrc_employment"), d)
        yield "learners", build_learners(p, dp, prison, dept_context(rng, dirt, vocab, "learners"), d, ids)

    return n_out, chunks()
