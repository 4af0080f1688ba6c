"""A population of people who offend, as columns of numpy arrays (one row per person).

People get names by origin and sex, dates of birth skewed young, addresses shared with
their families, aliases, reference numbers, and the count of records each source holds
about them. Hard negatives are built in: relatives sharing a surname and address,
twins (same surname, date of birth and address, different forenames), fathers and sons
with one name, and namesakes (same name and date of birth, different people).

People are built a chunk at a time. Relatives, twins and namesakes reach people of
earlier chunks through a ``RelativePool``: a bounded, seeded sample of earlier people's
names, dates of birth and main addresses, so the population is never held whole. The
share of relationships that reach back grows with the share of people already made.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from linkage.synthetic.identifiers import (
    CRN_SPACE,
    PRISON_NUMBER_SPACE,
    SerialCounter,
)
from linkage.synthetic.names import (
    ORIGIN_ETHNICITY,
    ORIGIN_SHARE,
    ORIGINS,
    Vocabulary,
    draw_by_group,
)
from linkage.synthetic.profiles import Population as PopulationRates

DAY = np.timedelta64(1, "D")
FIRST_CONTACT_FROM = np.datetime64("1985-01-01")
EXTRACT_DATE = np.datetime64("2025-06-30")
YEAR = 365.25
MAX_ALIASES = 2
MAX_ADDRESSES = 3
_POSTCODE_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"), dtype=object)
_DIGITS = np.array(list("0123456789"), dtype=object)


SERIAL = 10**6 - 1  # CRO serials 1..999,999 (0 would make 000000/00Z, the placeholder)
SF_SERIAL = 10**5 - 1  # SF-CRO serials 1..99,999
# The CRO year is the arrest year or up to three years later; each of those four offsets
# has its own leading digit of the 7-digit PNC serial, and second PNC IDs take the other six.
CRO_YEAR_OFFSETS = 4


@dataclass(frozen=True)
class IdSpace:
    """Seeded serial counters for every reference number, shared by all chunks of a run.

    PNC and CRO numbers are unique per (two-digit year, serial) by construction: a person's
    CRO serial (the "core") is the next serial of their CRO year; their PNC serial is that
    core under a leading digit chosen by their PNC year and how many years later the CRO
    was issued. Two people with one PNC year and one core have different CRO years, hence
    different leading digits. This keeps the PNC serial's last six digits equal to the CRO
    serial, which the production model links on (DOMAIN.md).
    """

    core: SerialCounter  # per CRO year
    pnc_lead: np.ndarray  # (100, 10): a seeded permutation of the ten leading digits per PNC year
    second_pnc: SerialCounter  # per PNC year, over the six other leading digits
    sf_cro: SerialCounter  # per CRO year
    prison: SerialCounter
    crn: SerialCounter

    @classmethod
    def seeded(cls, rng: np.random.Generator) -> IdSpace:
        return cls(
            core=SerialCounter.seeded(rng, SERIAL, spaces=100, first=1, name="CRO serial"),
            pnc_lead=np.argsort(rng.random((100, 10)), axis=1),
            second_pnc=SerialCounter.seeded(
                rng, (10 - CRO_YEAR_OFFSETS) * SERIAL, spaces=100, name="second PNC serial"
            ),
            sf_cro=SerialCounter.seeded(rng, SF_SERIAL, spaces=100, first=1, name="SF-CRO serial"),
            prison=SerialCounter.seeded(rng, PRISON_NUMBER_SPACE, name="prison number"),
            crn=SerialCounter.seeded(rng, CRN_SPACE, name="CRN"),
        )


# What a relative, twin or namesake copies from the person they are drawn against.
HEAD_FIELDS = ("index", "origin", "sex", "forename", "surname", "birth_surname", "dob", "address", "postcode")


class RelativePool:
    """A bounded sample of people from earlier chunks, for later chunks' relationships.

    After each chunk, a random few of its people join the pool (filling free places, then
    replacing a share that falls as the population grows, as reservoir sampling does), so
    the pool spans every chunk made so far. A person drawn as the head of a relationship
    leaves the pool, so nobody collects relatives from dozens of chunks.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.filled = 0  # entries are packed in [0, filled)
        self.seen = 0  # people offered so far
        self.columns: dict[str, np.ndarray] = {}

    def offer(self, p: People, rng: np.random.Generator) -> None:
        n = len(p)
        free = self.capacity - self.filled
        turnover = int(round(self.filled * n / (self.seen + n)))
        take = min(n, free + turnover)
        chosen = np.sort(rng.choice(n, size=take, replace=False))
        into_free = min(free, take)
        slots = np.concatenate(
            [
                np.arange(self.filled, self.filled + into_free),
                rng.choice(self.filled, size=take - into_free, replace=False),
            ]
        ).astype(np.int64)
        for name in HEAD_FIELDS:
            values = _head_column(p, name)
            if name not in self.columns:
                self.columns[name] = np.empty(self.capacity, dtype=values.dtype)
            self.columns[name][slots] = values[chosen]
        self.filled += into_free
        self.seen += n

    def draw(self, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``k`` (or as many as there are) people, taken out of the pool."""
        k = min(k, self.filled)
        picked = rng.choice(self.filled, size=k, replace=False)
        out = {name: col[picked] for name, col in self.columns.items()}
        keep = np.ones(self.filled, dtype=bool)
        keep[picked] = False
        for col in self.columns.values():
            col[: self.filled - k] = col[: self.filled][keep]
        self.filled -= k
        return out


def _head_column(p: People, name: str) -> np.ndarray:
    if name == "address":
        return p.address_line[:, 0]
    if name == "postcode":
        return p.postcode[:, 0]
    return getattr(p, name)


@dataclass
class People:
    """Columns about each person of one chunk. Dates are datetime64[D]."""

    index: np.ndarray  # global person number, 0-based
    person_id: np.ndarray
    sex: np.ndarray  # 0 male, 1 female
    origin: np.ndarray  # index into ORIGINS
    ethnicity: np.ndarray
    forename: np.ndarray
    middle_names: np.ndarray  # "" or space separated
    surname: np.ndarray  # current surname
    birth_surname: np.ndarray  # differs from surname after a marriage
    dob: np.ndarray
    first_contact: np.ndarray
    address_line: np.ndarray  # (n, MAX_ADDRESSES); column 0 is the main address
    postcode: np.ndarray  # (n, MAX_ADDRESSES)
    alias_forename: np.ndarray  # (n, MAX_ALIASES), "" where none
    alias_surname: np.ndarray
    alias_dob: np.ndarray
    n_aliases: np.ndarray
    prolific: np.ndarray  # latent offending rate; drives record counts
    pnc_year: np.ndarray  # 4-digit year the PNC ID was issued
    pnc_serial: np.ndarray
    second_pnc_serial: np.ndarray  # -1 unless the person has an accidental second PNC record
    cro_kind: np.ndarray  # 0 none, 1 CRO, 2 SF-CRO
    cro_year: np.ndarray
    cro_serial: np.ndarray
    prison_codes: np.ndarray  # (n, 3) codes for prison_numbers(), -1 where unused
    crn_codes: np.ndarray  # (n, 2) codes for crns(), -1 where unused
    # records per source
    n_pnc: np.ndarray
    n_libra: np.ndarray
    n_crest: np.ndarray
    n_prison_numbers: np.ndarray
    n_bookings: np.ndarray  # (n, 3) bookings under each prison number
    n_probation: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def take(self, idx: np.ndarray) -> People:
        return People(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def build_people(
    start: int,
    n: int,
    rng: np.random.Generator,
    rates: PopulationRates,
    vocab: Vocabulary,
    ids: IdSpace,
    pool: RelativePool | None = None,
) -> People:
    """People ``start`` .. ``start + n - 1`` of the population.

    ``ids`` hands out reference numbers and ``pool`` holds people of earlier chunks whom
    relatives, twins and namesakes may be drawn against; both carry over to the next chunk.
    """
    index = np.arange(start, start + n, dtype=np.int64)
    sex = (rng.random(n) < 0.17).astype(np.int8)  # about 83% of people who offend are male
    origin = rng.choice(len(ORIGINS), size=n, p=ORIGIN_SHARE).astype(np.int8)
    forename, middle_names = _forenames(sex, origin, rng, vocab)
    surname = draw_by_group(vocab.surnames, sex, origin, rng)
    first_contact = (
        FIRST_CONTACT_FROM
        + (rng.random(n) ** 0.8 * ((EXTRACT_DATE - FIRST_CONTACT_FROM) / DAY)).astype(np.int64) * DAY
    )
    # age at first contact: 10 to 80, mode in the late teens
    age = np.minimum(10 + rng.gamma(1.7, 7.5, n), 80)
    dob = first_contact - (age * YEAR).astype(np.int64) * DAY
    address_line, postcode = _addresses(n, rng, vocab)
    people = People(
        index=index,
        person_id=np.array([f"P{i + 1:08d}" for i in index.tolist()], dtype=object),
        sex=sex,
        origin=origin,
        ethnicity=_ethnicity(origin, rng),
        forename=forename,
        middle_names=middle_names,
        surname=surname,
        birth_surname=surname.copy(),
        dob=dob,
        first_contact=first_contact,
        address_line=address_line,
        postcode=postcode,
        alias_forename=np.full((n, MAX_ALIASES), "", dtype=object),
        alias_surname=np.full((n, MAX_ALIASES), "", dtype=object),
        alias_dob=np.repeat(dob[:, None], MAX_ALIASES, axis=1),
        n_aliases=np.zeros(n, dtype=np.int8),
        prolific=rng.gamma(0.8, 2.0, n),
        pnc_year=np.zeros(n, dtype=np.int64),
        pnc_serial=np.zeros(n, dtype=np.int64),
        second_pnc_serial=np.full(n, -1, dtype=np.int64),
        cro_kind=np.zeros(n, dtype=np.int8),
        cro_year=np.zeros(n, dtype=np.int64),
        cro_serial=np.zeros(n, dtype=np.int64),
        prison_codes=np.full((n, 3), -1, dtype=np.int64),
        crn_codes=np.full((n, 2), -1, dtype=np.int64),
        n_pnc=np.zeros(n, dtype=np.int64),
        n_libra=np.zeros(n, dtype=np.int64),
        n_crest=np.zeros(n, dtype=np.int64),
        n_prison_numbers=np.zeros(n, dtype=np.int64),
        n_bookings=np.zeros((n, 3), dtype=np.int64),
        n_probation=np.zeros(n, dtype=np.int64),
    )
    _families(people, rng, rates, vocab, pool)
    _twins(people, rng, rates, vocab, pool)
    _namesakes(people, rng, rates, pool)
    _marriages(people, rng, rates, vocab)
    _aliases(people, rng, rates, vocab)
    _records(people, rng, rates)
    _reference_numbers(people, rng, ids)
    return people


# ---- names --------------------------------------------------------------------------


def _forenames(sex, origin, rng, vocab) -> tuple[np.ndarray, np.ndarray]:
    n = len(sex)
    # Some people of every origin carry a British forename (second generation, anglicised).
    name_origin = np.where(rng.random(n) < 0.12, 0, origin).astype(np.int8)
    forename = draw_by_group(vocab.forenames, sex, name_origin, rng)
    m1 = draw_by_group(vocab.forenames, sex, origin, rng)
    m2 = draw_by_group(vocab.forenames, sex, origin, rng)
    u = rng.random(n)
    # Most British people have one middle name; people of South Asian and East Asian
    # origin less often; a few have two.
    has_middle = u < np.where(np.isin(origin, (2, 7)), 0.4, 0.62)
    two = has_middle & (rng.random(n) < 0.12)
    middle = np.where(has_middle, m1, "")
    middle = np.where(two, middle + " " + m2, middle)
    same = middle == forename
    middle[same] = ""
    return forename, middle.astype(object)


def _ethnicity(origin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    codes = np.array(ORIGIN_ETHNICITY, dtype=object)[origin]
    u = rng.random(len(origin))
    codes = np.where(u < 0.07, "IC9", codes)  # not recorded
    other = np.array(["IC1", "IC2", "IC3", "IC4", "IC5", "IC6"], dtype=object)
    codes = np.where((u >= 0.07) & (u < 0.11), other[rng.integers(0, 6, len(origin))], codes)
    return codes.astype(object)


# ---- addresses -----------------------------------------------------------------------


def _addresses(n: int, rng: np.random.Generator, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    k = n * MAX_ADDRESSES
    number = rng.integers(1, 240, k)
    street = vocab.streets[rng.integers(0, len(vocab.streets), k)]
    suffix = vocab.street_suffixes[rng.integers(0, len(vocab.street_suffixes), k)]
    flat = rng.random(k) < 0.12
    lines = np.array(
        [
            (f"Flat {number[i] % 9 + 1}, {number[i] // 2 + 1} " if flat[i] else f"{number[i]} ")
            + f"{street[i]} {suffix[i]}"
            for i in range(k)
        ],
        dtype=object,
    )
    area = vocab.postcode_areas.draw(rng, k)
    district = rng.integers(1, 30, k)
    sector = rng.integers(0, 10, k)
    unit1 = _POSTCODE_LETTERS[rng.integers(0, len(_POSTCODE_LETTERS), k)]
    unit2 = _POSTCODE_LETTERS[rng.integers(0, len(_POSTCODE_LETTERS), k)]
    postcodes = np.array(
        [
            f"{a}{d} {s}{u1}{u2}"
            for a, d, s, u1, u2 in zip(area, district.tolist(), sector.tolist(), unit1, unit2)
        ],
        dtype=object,
    )
    return lines.reshape(n, MAX_ADDRESSES), postcodes.reshape(n, MAX_ADDRESSES)


# ---- hard negatives -------------------------------------------------------------------


def _pick_pairs(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``k`` members and, for each, a head drawn from the people who are not members."""
    k = min(k, n // 2)
    if k == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    perm = rng.permutation(n)
    members, others = perm[:k], perm[k:]
    heads = others[rng.integers(0, len(others), k)]
    return members, heads


def _pick_heads(
    p: People, k: int, rng: np.random.Generator, pool: RelativePool | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``k`` members of this chunk and, for each, the HEAD_FIELDS of the person they copy.

    A head comes from an earlier chunk (through ``pool``) with the chance that a person
    drawn from everyone made so far is from an earlier chunk; otherwise from this chunk.
    """
    members, heads = _pick_pairs(len(p), k, rng)
    head = {name: _head_column(p, name)[heads] for name in HEAD_FIELDS}
    if pool is not None and pool.filled and len(members):
        earlier = np.flatnonzero(rng.random(len(members)) < pool.seen / (pool.seen + len(p)))
        drawn = pool.draw(len(earlier), rng)
        earlier = earlier[: len(drawn["index"])]
        for name in HEAD_FIELDS:
            head[name][earlier] = drawn[name]
    return members, head


def _redraw_forenames(p: People, idx: np.ndarray, rng, vocab, avoid: np.ndarray | None = None) -> None:
    for _ in range(6):
        fresh, middle = _forenames(p.sex[idx], p.origin[idx], rng, vocab)
        p.forename[idx], p.middle_names[idx] = fresh, middle
        if avoid is None:
            return
        clash = p.forename[idx] == avoid
        if not clash.any():
            return
        idx, avoid = idx[clash], avoid[clash]


def _families(p: People, rng, rates: PopulationRates, vocab, pool: RelativePool | None = None) -> None:
    """Relatives: same surname, same main address, related dates of birth."""
    members, head = _pick_heads(p, int(len(p) * rates.family_rate), rng, pool)
    if len(members) == 0:
        return
    p.origin[members] = head["origin"]
    p.surname[members] = head["surname"]
    p.birth_surname[members] = head["surname"]
    p.address_line[members, 0] = head["address"]
    p.postcode[members, 0] = head["postcode"]
    parent_child = rng.random(len(members)) < 0.3
    gap_years = np.where(parent_child, rng.uniform(18, 38, len(members)), rng.uniform(1, 12, len(members)))
    sign = np.where(rng.random(len(members)) < 0.5, -1, 1)
    dob = head["dob"] + (sign * gap_years * YEAR).astype(np.int64) * DAY
    too_young = dob > EXTRACT_DATE - np.int64(11 * YEAR) * DAY
    dob[too_young] = head["dob"][too_young] - (gap_years[too_young] * YEAR).astype(np.int64) * DAY
    p.dob[members] = dob
    _redraw_forenames(p, members, rng, vocab, avoid=head["forename"])
    # Fathers and sons with one name: the hardest negative short of twins.
    junior = parent_child & (head["sex"] == 0) & (rng.random(len(members)) < rates.junior_rate)
    p.sex[members[junior]] = 0
    p.forename[members[junior]] = head["forename"][junior]
    _fix_first_contact(p, members)


def _twins(p: People, rng, rates: PopulationRates, vocab, pool: RelativePool | None = None) -> None:
    """Same surname, date of birth and address; different forenames."""
    members, head = _pick_heads(p, int(round(len(p) * rates.twin_rate / 2)), rng, pool)
    if len(members) == 0:
        return
    p.origin[members] = head["origin"]
    p.surname[members] = head["surname"]
    p.birth_surname[members] = head["birth_surname"]
    p.dob[members] = head["dob"]
    p.address_line[members, 0] = head["address"]
    p.postcode[members, 0] = head["postcode"]
    same_sex = rng.random(len(members)) < 0.65
    p.sex[members[same_sex]] = head["sex"][same_sex]
    _redraw_forenames(p, members, rng, vocab, avoid=head["forename"])
    _fix_first_contact(p, members)


def _namesakes(p: People, rng, rates: PopulationRates, pool: RelativePool | None = None) -> None:
    """Another person's forename, surname, sex and date of birth; everything else their own."""
    members, head = _pick_heads(p, int(round(len(p) * rates.namesake_rate / 2)), rng, pool)
    if len(members) == 0:
        return
    for name in ("origin", "sex", "forename", "surname", "birth_surname", "dob"):
        getattr(p, name)[members] = head[name]
    _fix_first_contact(p, members)


def _fix_first_contact(p: People, idx: np.ndarray) -> None:
    """Keep first contact between the 10th and 80th birthdays, before the extract date."""
    earliest = p.dob[idx] + np.int64(10 * YEAR) * DAY
    latest = np.minimum(p.dob[idx] + np.int64(80 * YEAR) * DAY, EXTRACT_DATE - 30 * DAY)
    p.first_contact[idx] = np.minimum(np.maximum(p.first_contact[idx], earliest), latest)


def _marriages(p: People, rng, rates: PopulationRates, vocab) -> None:
    """Women whose surname changed: the old one stays on older records and in aliases."""
    adult = p.dob < EXTRACT_DATE - np.int64(20 * YEAR) * DAY
    idx = np.flatnonzero((p.sex == 1) & adult & (rng.random(len(p)) < rates.married_rate))
    if len(idx):
        p.surname[idx] = draw_by_group(vocab.surnames, p.sex[idx], p.origin[idx], rng)
        # a few take a double-barrelled name
        barrel = idx[rng.random(len(idx)) < 0.06]
        p.surname[barrel] = p.birth_surname[barrel] + "-" + p.surname[barrel]


def _aliases(p: People, rng, rates: PopulationRates, vocab) -> None:
    """Other names (and dates of birth) a person has given."""
    n = len(p)
    count = np.where(rng.random(n) < rates.alias_rate, np.where(rng.random(n) < 0.35, 2, 1), 0)
    p.n_aliases[:] = count
    for k in range(MAX_ALIASES):
        idx = np.flatnonzero(count > k)
        if len(idx) == 0:
            continue
        kind = rng.choice(6, size=len(idx), p=[0.30, 0.20, 0.15, 0.25, 0.05, 0.05])
        new_fore = draw_by_group(vocab.forenames, p.sex[idx], p.origin[idx], rng)
        new_sur = draw_by_group(vocab.surnames, p.sex[idx], p.origin[idx], rng)
        fore, sur = p.forename[idx].copy(), p.surname[idx].copy()
        sur = np.where(kind == 0, new_sur, sur)
        fore = np.where(kind == 1, new_fore, fore)
        nick = np.array(
            [(vocab.nicknames.get(f) or (nf,))[0] for f, nf in zip(fore.tolist(), new_fore.tolist())],
            dtype=object,
        )
        fore = np.where(kind == 2, nick, fore)
        fore = np.where(kind == 3, new_fore, fore)
        sur = np.where(kind == 3, new_sur, sur)
        swapped = kind == 4
        fore, sur = np.where(swapped, sur, fore), np.where(swapped, fore, sur)
        first_middle = np.array(
            [m.split(" ")[0] if m else "" for m in p.middle_names[idx].tolist()], dtype=object
        )
        fore = np.where((kind == 5) & (first_middle != ""), first_middle, np.where(kind == 5, new_fore, fore))
        p.alias_forename[idx, k] = fore
        p.alias_surname[idx, k] = sur
        u = rng.random(len(idx))
        near = (rng.choice(np.array([-1, 1, -365, 365, -31, 31]), len(idx))) * DAY
        far = (rng.integers(2, 15, len(idx)) * YEAR * np.where(rng.random(len(idx)) < 0.5, -1, 1)).astype(
            np.int64
        ) * DAY
        p.alias_dob[idx, k] = np.where(
            u < 0.55, p.dob[idx], np.where(u < 0.8, p.dob[idx] + near, p.dob[idx] + far)
        )


# ---- who is in which source -----------------------------------------------------------


def _records(p: People, rng, rates: PopulationRates) -> None:
    """Record counts per source. Prolific people appear more, and in more sources."""
    n = len(p)
    lam = p.prolific
    in_libra = rng.random(n) < 0.72
    p.n_libra[:] = np.where(in_libra, 1 + np.minimum(rng.poisson(lam * 1.1), 39), 0)
    in_crest = in_libra & (rng.random(n) < np.clip(0.12 + 0.05 * lam, 0, 0.6))
    p.n_crest[:] = np.where(in_crest, 1 + np.minimum(rng.poisson(0.2 * lam), 9), 0)
    in_prison = rng.random(n) < np.clip(0.08 + 0.07 * lam, 0, 0.6)
    k = 1 + (rng.random(n) < 0.15) + (rng.random(n) < 0.04)
    p.n_prison_numbers[:] = np.where(in_prison, k, 0)
    bookings = 1 + np.minimum(rng.poisson(0.35 * lam[:, None], (n, 3)), 9)
    p.n_bookings[:] = np.where(np.arange(3)[None, :] < p.n_prison_numbers[:, None], bookings, 0)
    in_probation = rng.random(n) < np.where(in_prison, 0.7, np.clip(0.18 + 0.06 * lam, 0, 0.6))
    dup = rng.random(n) < rates.probation_duplicate_rate
    p.n_probation[:] = np.where(in_probation, 1 + dup, 0)
    # Anyone charged in the Crown Court, imprisoned or supervised has been arrested;
    # people with only magistrates' cases (motoring, TV licence) often have not.
    serious = in_crest | in_prison | in_probation
    in_pnc = rng.random(n) < np.where(serious, 0.97, 0.55)
    nowhere = ~(in_pnc | in_libra | in_prison | in_probation)
    p.n_libra[nowhere] = 1
    second = in_pnc & (rng.random(n) < rates.second_pnc_rate)
    p.n_pnc[:] = np.where(in_pnc, 1 + second, 0)


def _reference_numbers(p: People, rng, ids: IdSpace) -> None:
    n = len(p)
    arrest_year = (p.first_contact.astype("datetime64[Y]").astype(np.int64) + 1970).astype(np.int64)
    p.pnc_year[:] = arrest_year
    u = rng.random(n)
    has_pnc = p.n_pnc > 0
    p.cro_kind[:] = np.where(has_pnc & (u < 0.62), 1, np.where(has_pnc & (u < 0.70), 2, 0))
    # About half of CRO numbers were issued in a later year than the arrest.
    later = np.minimum(arrest_year + rng.integers(1, CRO_YEAR_OFFSETS, n), 2025)
    cro_year = np.where(rng.random(n) < 0.5, arrest_year, later)
    p.cro_year[:] = cro_year % 100
    # Everyone gets a core serial (the PNC serial needs one), whether or not a CRO is shown.
    p.pnc_serial[:], p.cro_serial[:] = pnc_and_cro_serials(ids, arrest_year, cro_year)
    second = np.flatnonzero(p.n_pnc > 1)
    p.second_pnc_serial[:] = -1
    p.second_pnc_serial[second] = second_pnc_serials(ids, arrest_year[second])
    sf = np.flatnonzero(p.cro_kind == 2)
    p.cro_serial[sf] = ids.sf_cro(p.cro_year[sf])
    # Prison numbers and CRNs only for the people who hold them, so the spaces last.
    for k in range(p.prison_codes.shape[1]):
        held = np.flatnonzero(p.n_prison_numbers > k)
        p.prison_codes[held, k] = ids.prison(count=len(held))
    for k in range(p.crn_codes.shape[1]):
        held = np.flatnonzero(p.n_probation > k)
        p.crn_codes[held, k] = ids.crn(count=len(held))


def pnc_and_cro_serials(ids: IdSpace, pnc_year: np.ndarray, cro_year: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PNC serials and CRO serials (the core) for people with these four-digit years, in
    order; ``cro_year - pnc_year`` is 0 to 3. Unique per (two-digit year, serial)."""
    pnc_year, cro_year = np.asarray(pnc_year, dtype=np.int64), np.asarray(cro_year, dtype=np.int64)
    core = ids.core(cro_year % 100)
    lead = ids.pnc_lead[pnc_year % 100, cro_year - pnc_year]
    return lead * 10**6 + core, core


def second_pnc_serials(ids: IdSpace, pnc_year: np.ndarray) -> np.ndarray:
    """Serials of accidental second PNC IDs: leading digits no first PNC ID of the year has."""
    yy = np.asarray(pnc_year, dtype=np.int64) % 100
    code = ids.second_pnc(yy)
    lead = ids.pnc_lead[yy, CRO_YEAR_OFFSETS + code // SERIAL]
    return lead * 10**6 + code % SERIAL + 1
