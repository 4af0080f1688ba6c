"""How dirty the synthetic extracts are: one named set of rates per profile.

Rates are per record: the chance that a corruption hits one field of one record.
``realistic`` is tuned so that true pairs disagree about as often as in live data
(see DOMAIN.md, "How often true matches disagree", and ``measure.py``); ``clean``
corrupts about a sixth as much, ``hard`` about two and a half times as much.
Structural facts (who is in which source, how many records each) do not change
between profiles; dirt and hard negatives do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

PROFILES: tuple[str, ...] = ("clean", "realistic", "hard")


@dataclass(frozen=True)
class Dirt:
    """Per-record corruption rates (realistic values as defaults)."""

    # forename
    forename_typo: float = 0.0078
    forename_phonetic: float = 0.0068
    forename_nickname: float = 0.0070
    forename_initial: float = 0.0020
    forename_middle_as_first: float = 0.0035
    forename_hyphen: float = 0.30  # of hyphenated forenames (MARY-JANE -> MARY JANE)
    forename_missing: float = 0.0030
    # surname
    surname_typo: float = 0.0072
    surname_phonetic: float = 0.0064
    surname_apostrophe: float = 0.35  # of O'/D' surnames (O'CONNOR -> OCONNOR)
    surname_hyphen: float = 0.30  # of double-barrelled surnames
    surname_mc_space: float = 0.10  # of MC surnames (MCDONALD -> MC DONALD)
    surname_change: float = 0.30  # of records of people whose surname changed (marriage)
    # whole name
    name_swap: float = 0.0010
    alias_used: float = 0.042  # of records of people who have an alias
    system_prefix: float = 0.0015  # DUPLICATE_, MIG_ERROR_, NO_SHOW_, NOT ENTERED
    # date of birth
    dob_day_month_swap: float = 0.0016
    dob_one_digit: float = 0.0040
    dob_one_day: float = 0.0030
    dob_wrong_month: float = 0.0010
    dob_year_off: float = 0.0030
    dob_alias: float = 0.30  # of alias_used records, the alias's date of birth goes with it
    dob_wrong_date: float = 0.0090  # an event date typed into the date of birth field
    dob_default: float = 0.0040  # 1900-01-01 / 1970-01-01
    dob_missing: float = 0.0040
    # sex
    sex_wrong: float = 0.0030
    sex_unknown: float = 0.0100
    # addresses
    postcode_moved: float = 0.097  # the record carries another of the person's addresses
    postcode_typo: float = 0.0040
    postcode_nfa: float = 0.0080  # no fixed abode: NF1 1NF
    # identifiers (pnc_id, cro_number, prison_number, crn)
    id_junk: float = 0.0150
    id_no_check_letter: float = 0.0060
    id_typo: float = 0.0040
    id_placeholder: float = 0.0030
    id_dummy: float = 0.0010
    id_cro_in_pnc: float = 0.0040
    id_other_person: float = 0.0005
    # department identifiers (written only with ``departments``): NINO, ULN
    nino_missing: float = 0.010  # blank where the source nearly always fills it
    nino_temporary: float = 0.006  # a temporary TN number on a record of someone who has a NINO
    nino_example: float = 0.0015  # the form's example number (QQ123456C) copied in
    nino_typo: float = 0.0040  # one digit wrong or two swapped: looks valid, is someone else's
    nino_malformed: float = 0.0030  # a digit dropped or doubled, a bad suffix, O for 0
    nino_not_issued: float = 0.0015  # a prefix letter mistyped into one never issued (O, Q, D)
    nino_other_person: float = 0.0008  # another person's NINO (a family member's, a shared one)
    uln_placeholder: float = 0.030  # 9999999999: learner without a ULN yet
    uln_typo: float = 0.0040
    uln_other_person: float = 0.0008
    postcode_unknown: float = 0.040  # ZZ99 9ZZ, the learner record's unknown postcode

    def scaled(self, factor: float, keep: tuple[str, ...] = ()) -> Dirt:
        """Every rate times ``factor`` (capped at 0.95), except the fields named in ``keep``."""
        changes = {
            f.name: min(0.95, getattr(self, f.name) * factor)
            for f in dataclasses.fields(self)
            if f.name not in keep
        }
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Population:
    """Hard negatives and person-level facts that make linkage hard."""

    family_rate: float = 0.12  # people who share a surname and address with a relative
    twin_rate: float = 0.008  # people who have a twin in the data
    namesake_rate: float = 0.006  # people given another person's name and date of birth
    junior_rate: float = 0.15  # of parent-child pairs, the child shares the parent's forename
    alias_rate: float = 0.20  # people who carry at least one alias
    married_rate: float = 0.25  # women whose surname changed
    second_pnc_rate: float = 0.015  # people with an accidental second PNC record
    probation_duplicate_rate: float = 0.03  # accidental duplicate nDelius records
    organisation_rate: float = 0.003  # organisations per person, appearing in Libra


@dataclass(frozen=True)
class Departments:
    """Who is known to which department, and what happens around prison release.

    Shares of justice people are of the people a chunk makes; ``outside_ratio`` adds that
    many people per justice person who are known to departments but not to justice.
    """

    oasys: float = 0.85  # of supervision orders and custodial bookings since 2003, assessed
    programmes: float = 0.15  # of starting assessments, referred to an accredited programme
    dwp: float = 0.85  # justice people with a benefit claim since 2000
    hmrc: float = 0.65  # justice people with an employment spell since 2000
    learners: float = 0.45  # justice people with a learning aim since 2002
    outside_ratio: float = 1.0  # people outside justice per justice person
    outside_dwp: float = 0.55
    outside_hmrc: float = 0.85
    outside_learners: float = 0.40
    no_nino: float = 0.03  # people never given a NINO: their records carry TN numbers or none
    second_nino: float = 0.002  # people given two NINOs (a duplicate allocation)
    cross_namesakes: float = 0.01  # outside people with a justice person's name, sex and date of birth
    cross_relatives: float = 0.03  # outside people sharing a justice person's surname and address
    benefit_after_release: float = 0.55  # releases followed by a claim within weeks
    employment_after_release: float = 0.20  # releases followed by a job within a year
    learning_in_custody: float = 0.30  # bookings of 90+ days with a learning aim inside


DEPARTMENT_SHARES = ("oasys", "programmes", "dwp", "hmrc", "learners")


@dataclass(frozen=True)
class Profile:
    name: str
    dirt: Dirt
    population: Population
    departments: Departments = Departments()


_REALISTIC = Profile("realistic", Dirt(), Population())

_CLEAN = Profile(
    "clean",
    Dirt().scaled(0.15, keep=("forename_hyphen", "surname_apostrophe", "surname_hyphen", "surname_mc_space")),
    dataclasses.replace(
        Population(),
        namesake_rate=0.002,
        twin_rate=0.004,
        alias_rate=0.05,
        second_pnc_rate=0.003,
        probation_duplicate_rate=0.01,
    ),
)

_HARD = Profile(
    "hard",
    dataclasses.replace(
        Dirt().scaled(2.5), surname_change=0.45, alias_used=0.10, dob_alias=0.5, postcode_moved=0.20
    ),
    dataclasses.replace(
        Population(),
        family_rate=0.18,
        twin_rate=0.015,
        namesake_rate=0.02,
        alias_rate=0.30,
        second_pnc_rate=0.03,
        probation_duplicate_rate=0.06,
    ),
)

_BY_NAME = {p.name: p for p in (_CLEAN, _REALISTIC, _HARD)}


def get_profile(name: str) -> Profile:
    """The named profile; KeyError for an unknown name (``generate`` turns it into a UsageError)."""
    return _BY_NAME[name]


def department_rates(profile: str, outside_ratio: float | None = None, known_to: str | None = None) -> Departments:
    """The profile's department rates with ``outside_ratio`` and ``known_to`` (``dwp=0.8,hmrc=0.6``)
    put in; a UsageError names anything out of range or unknown."""
    from linkage.errors import UsageError

    if profile not in _BY_NAME:
        raise UsageError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    changes: dict[str, float] = {}
    if outside_ratio is not None:
        if not 0 <= outside_ratio <= 10:
            raise UsageError(f"--outside-ratio must be between 0 and 10 (got {outside_ratio})")
        changes["outside_ratio"] = float(outside_ratio)
    for part in (known_to or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in DEPARTMENT_SHARES:
            raise UsageError(
                f"--known-to takes name=share pairs, names among {', '.join(DEPARTMENT_SHARES)} (got {part.strip()!r})"
            )
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not 0 <= share <= 1:
            raise UsageError(f"--known-to {name} must be a share between 0 and 1 (got {value.strip()!r})")
        changes[name] = share
    return dataclasses.replace(_BY_NAME[profile].departments, **changes)
