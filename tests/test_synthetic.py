"""The synthetic generator: interface, determinism, formats, check letters, hard negatives,
and calibration of the realistic profile against DOMAIN.md's targets."""

from __future__ import annotations

import csv
import doctest
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

import linkage.synthetic.identifiers
import linkage.synthetic.measure
from linkage.errors import UsageError
from linkage.synthetic import PROFILES, REALISTIC_TARGETS, SynthResult, generate, measure_true_pair_agreement
from linkage.synthetic.generator import MAX_PEOPLE, people_in_chunks
from linkage.synthetic.identifiers import SerialCounter
from linkage.synthetic.names import vocabulary
from linkage.synthetic.population import (
    SERIAL,
    IdSpace,
    build_people,
    pnc_and_cro_serials,
    second_pnc_serials,
)
from linkage.synthetic.profiles import get_profile

SOURCES = ("pnc", "prison", "probation", "libra", "crest")
HEADERS = {
    "pnc": "pnc_record_id,pnc_id,cro_number,surname,forenames,date_of_birth,sex,alias_names,"
    "alias_dates_of_birth,ethnicity_code,force_code,first_arrest_date,arrest_count",
    "prison": "booking_id,prison_number,first_name,middle_names,last_name,date_of_birth,gender,"
    "pnc_number,cro_number,alias_names,alias_dates_of_birth,establishment_code,reception_date,"
    "release_date,sentence_days",
    "probation": "offender_id,crn,first_name,middle_names,surname,previous_surname,date_of_birth,"
    "gender,pnc,cro,noms_number,postcode,alias_names,probation_region,order_type,order_start_date",
    "libra": "libra_case_id,defendant_name,defendant_dob,defendant_sex,address_line1,postcode,pnc_id,"
    "court_code,hearing_date,offence_code,outcome_code",
    "crest": "crest_defendant_id,case_number,surname,forenames,date_of_birth,sex,pnc_id,"
    "crown_court_code,committal_date,offence_code,sentence_type",
    "truth": "source_dataset,record_id,person_id",
    "corruptions": "source_dataset,record_id,field,corruption",
}
FILES = (*SOURCES, "truth", "corruptions")


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def realistic(tmp_path_factory) -> SynthResult:
    return generate(4000, 11, tmp_path_factory.mktemp("realistic"), "realistic")


@pytest.fixture(scope="module")
def hard(tmp_path_factory) -> SynthResult:
    return generate(2500, 12, tmp_path_factory.mktemp("hard"), "hard")


# ---- interface ---------------------------------------------------------------------------


def test_profiles_are_the_three_named():
    assert PROFILES == ("clean", "realistic", "hard")


def test_result_describes_the_files_written(realistic: SynthResult):
    assert realistic.people == 4000 and realistic.seed == 11 and realistic.profile == "realistic"
    assert set(realistic.files) == set(SOURCES)
    for name in FILES:
        path = realistic.out / f"{name}.csv"
        assert path.read_text(encoding="utf-8").splitlines()[0] == HEADERS[name]
    for source in SOURCES:
        assert realistic.files[source] == realistic.out / f"{source}.csv"
        assert len(read(realistic.files[source])) == realistic.rows[source] > 0


def test_truth_covers_every_record_once_and_every_person(realistic: SynthResult):
    truth = read(realistic.out / "truth.csv")
    keys = [(t["source_dataset"], t["record_id"]) for t in truth]
    assert len(keys) == len(set(keys))
    for source in SOURCES:
        rows = read(realistic.files[source])
        id_column = HEADERS[source].split(",")[0]
        ids = [r[id_column] for r in rows]
        assert len(ids) == len(set(ids)), f"{source}: record ids not unique"
        assert set(ids) == {r for s, r in keys if s == source}
    people = {t["person_id"] for t in truth}
    organisations = {p for p in people if p.startswith("ORG")}
    assert len(people - organisations) == realistic.people
    assert organisations and {t["source_dataset"] for t in truth if t["person_id"] in organisations} == {
        "libra"
    }


def test_records_per_person_between_three_and_four(realistic: SynthResult):
    per_person = realistic.records / realistic.people
    print(f"\nrecords per person: {per_person:.2f} {realistic.rows}")
    assert 3.0 <= per_person <= 4.2
    # not everyone is in every source, and the courts hold many rows per person
    assert realistic.rows["pnc"] < realistic.people < realistic.rows["libra"]
    assert realistic.rows["crest"] < realistic.rows["prison"] < realistic.rows["libra"]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path):
    # several chunks, so the counters and the pool of earlier people carried between them
    # are covered too
    a = generate(900, 5, tmp_path / "a", "hard", chunk_people=250)
    b = generate(900, 5, tmp_path / "b", "hard", chunk_people=250)
    c = generate(900, 6, tmp_path / "c", "hard", chunk_people=250)
    for name in (*FILES, "manifest"):
        name = "manifest.json" if name == "manifest" else f"{name}.csv"
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    assert (a.out / "libra.csv").read_bytes() != (c.out / "libra.csv").read_bytes()
    assert (a.out / "truth.csv").read_bytes() != (c.out / "truth.csv").read_bytes()


def test_chunks_append_to_one_file(tmp_path: Path):
    result = generate(600, 3, tmp_path, "realistic", chunk_people=250)
    assert result.chunk_people == 250
    truth = read(tmp_path / "truth.csv")
    assert len(truth) == result.records
    assert len({t["person_id"] for t in truth if not t["person_id"].startswith("ORG")}) == 600
    pnc_ids = [r["pnc_record_id"] for r in read(tmp_path / "pnc.csv")]
    assert pnc_ids == sorted(pnc_ids) and len(set(pnc_ids)) == len(pnc_ids)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"people": 0}, "people must be"),
        ({"people": -5}, "people must be"),
        ({"people": "100"}, "people must be"),
        ({"people": MAX_PEOPLE + 1}, "people must be at most 20,000,000"),
        ({"seed": -1}, "seed must be"),
        ({"chunk_people": 0}, "chunk_people must be"),
        ({"profile": "filthy"}, "unknown profile 'filthy'"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, kwargs, message):
    args = {"people": 10, "seed": 1, "out": tmp_path / "out", "profile": "realistic", **kwargs}
    with pytest.raises(UsageError, match=message) as err:
        generate(**args)
    assert "\n" not in str(err.value)


def test_output_folder_that_is_a_file_or_unwritable(tmp_path: Path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        generate(10, 1, a_file)
    with pytest.raises(UsageError, match="not writable"):
        generate(10, 1, a_file / "below")


# ---- formats -------------------------------------------------------------------------------

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DMY = re.compile(r"^\d{2}/\d{2}/\d{4}$")


def corrupted(result: SynthResult) -> dict[tuple[str, str, str], set[str]]:
    out: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for row in read(result.out / "corruptions.csv"):
        out[(row["source_dataset"], row["record_id"], row["field"])].add(row["corruption"])
    return out


def test_dates_sex_codes_and_references_in_each_source_format(hard: SynthResult):
    log = corrupted(hard)
    formats = {
        "pnc": {"date_of_birth": ISO, "first_arrest_date": ISO},
        "prison": {"date_of_birth": ISO, "reception_date": ISO, "release_date": ISO},
        "probation": {"date_of_birth": ISO, "order_start_date": ISO},
        "libra": {"defendant_dob": DMY, "hearing_date": ISO},
        "crest": {"date_of_birth": DMY, "committal_date": ISO},
    }
    sexes = {
        ("pnc", "sex"): {"M", "F", "U"},
        ("prison", "gender"): {"Male", "Female", "Not Known / Not Recorded"},
        ("probation", "gender"): {"M", "F", "N"},
        ("libra", "defendant_sex"): {"M", "F", "NS"},
        ("crest", "sex"): {"MALE", "FEMALE", "NOT SPECIFIED"},
    }
    for source in SOURCES:
        rows = read(hard.files[source])
        for column, pattern in formats[source].items():
            bad = [r[column] for r in rows if r[column] and not pattern.match(r[column])]
            assert not bad, f"{source}.{column}: {bad[:3]}"
        for (s, column), allowed in sexes.items():
            if s == source:
                assert {r[column] for r in rows} <= allowed
    prison = read(hard.files["prison"])
    clean_numbers = [
        r["prison_number"] for r in prison if not log.get(("prison", r["booking_id"], "prison_number"))
    ]
    assert all(re.match(r"^[A-Z]\d{4}[A-Z]{2}$", v) for v in clean_numbers)
    probation = read(hard.files["probation"])
    assert all(
        re.match(r"^[A-Z]\d{6}$", r["crn"])
        for r in probation
        if not log.get(("probation", r["offender_id"], "crn"))
    )
    crest = read(hard.files["crest"])
    assert all(re.match(r"^[A-Z]\d{4}\d{4}$", r["case_number"]) for r in crest)
    libra = read(hard.files["libra"])
    assert all(re.match(r"^[A-Z]\d{2}[A-Z]{2}$", r["court_code"]) for r in libra)
    # default dates of birth turn up in probation
    assert any(r["date_of_birth"] in ("1900-01-01", "1970-01-01") for r in probation)


def test_libra_names_come_in_several_styles(realistic: SynthResult):
    names = [r["defendant_name"] for r in read(realistic.files["libra"])]
    styles = Counter()
    for name in names:
        if "," in name:
            styles["SURNAME, Forename"] += 1
        elif re.match(r"^(Mr|Mrs|Ms|Miss|MR|MS|Mr\.)\s", name):
            styles["Mr Forename SURNAME"] += 1
        elif name.isupper() and " " not in name:
            styles["SURNAME only"] += 1
        elif name.isupper():
            styles["ALL CAPS"] += 1
        else:
            styles["other mixed"] += 1
    assert all(styles[s] > 0 for s in ("SURNAME, Forename", "Mr Forename SURNAME", "ALL CAPS", "other mixed"))
    assert sum(1 for n in names if n.endswith((" LTD", " LIMITED", " PLC", " LTD.", " CO LTD"))) > 0


def test_corruption_log_points_at_real_records(hard: SynthResult):
    records = {(t["source_dataset"], t["record_id"]) for t in read(hard.out / "truth.csv")}
    rows = read(hard.out / "corruptions.csv")
    assert rows
    assert all((r["source_dataset"], r["record_id"]) in records for r in rows)
    kinds = Counter(r["corruption"] for r in rows)
    for kind in (
        "typo", "phonetic", "nickname", "swap", "apostrophe", "surname_change", "alias_used",
        "day_month_swap", "one_digit", "one_day", "default_date", "missing", "system_prefix",
        "moved", "junk", "placeholder", "no_check_letter", "cro_in_pnc_field",
    ):  # fmt: skip
        assert kinds[kind] > 0, kind


# ---- check letters -------------------------------------------------------------------------

ALPHABET = "ZABCDEFGHJKLMNPQRTUVWXY"
PNC_FORMS = (re.compile(r"^(\d{2}|\d{4})/(\d{1,7})([A-Z])$"), re.compile(r"^(\d{4})(\d{7})([A-Z])$"))
CRO_FORM = re.compile(r"^(\d{1,6})/(\d{2})([A-Z])$")
SF_CRO_FORM = re.compile(r"^SF(\d{2})/(\d{1,5})([A-Z])$")


def check_ok(value: str, field: str = "pnc_id") -> bool | None:
    """True/False if ``value`` is written like a PNC ID (for ``pnc_id``) or a CRO or SF-CRO
    number (for ``cro_number``); None otherwise. Unpadded CROs (``2540/11G``) look like
    short PNC IDs, so the field decides which reading to try."""
    v = value.upper()
    if field == "pnc_id":
        for form in PNC_FORMS:
            if m := form.match(v):
                year, serial, letter = m.groups()
                return ALPHABET[(int(year[-2:]) * 10**7 + int(serial)) % 23] == letter
        return None
    if m := CRO_FORM.match(v):
        serial, year, letter = m.groups()
        return ALPHABET[(int(year) * 10**6 + int(serial)) % 23] == letter
    if m := SF_CRO_FORM.match(v):
        year, serial, letter = m.groups()
        return ALPHABET[(int(year) * 10**5 + int(serial)) % 23] == letter
    return None


def test_check_validator_on_domain_examples():
    for good in ("2002/0073319Z", "1981/0000034U", "02/73319Z", "81/34U", "01/123456F", "2003/0011985X",
                 "20030011985X", "03/11985X", "2003/11985X", "03/0011985x"):  # fmt: skip
        assert check_ok(good) is True, good
    assert check_ok("065656/91H", "cro_number") is True
    assert check_ok("65656/91H", "cro_number") is True
    assert check_ok("2003/0011985Y") is False
    assert check_ok("NONE") is None


ID_FIELDS = {
    "pnc": {"pnc_id": "pnc_id", "cro_number": "cro_number"},
    "prison": {"pnc_number": "pnc_id", "cro_number": "cro_number"},
    "probation": {"pnc": "pnc_id", "cro": "cro_number"},
    "libra": {"pnc_id": "pnc_id"},
    "crest": {"pnc_id": "pnc_id"},
}


@pytest.mark.parametrize("profile", ["realistic", "hard"])
def test_identifiers_written_as_valid_pass_their_check_letter(profile, realistic, hard):
    result = realistic if profile == "realistic" else hard
    log = corrupted(result)
    seen = Counter()
    for source, columns in ID_FIELDS.items():
        id_column = HEADERS[source].split(",")[0]
        for row in read(result.files[source]):
            for column, field in columns.items():
                value = row[column]
                if not value:
                    continue
                kinds = log.get((source, row[id_column], field), set())
                if "cro_in_pnc_field" in kinds:
                    assert check_ok(value, "cro_number") is not False
                    continue
                ok = check_ok(value, field)
                seen["valid-looking" if ok is not None else "other"] += 1
                if ok is None:
                    continue
                if "typo" in kinds:
                    assert ok is False, (source, column, value, row[id_column], kinds)
                    seen["typo caught"] += 1
                else:
                    assert ok is True, (source, column, value, row[id_column], kinds)
    print(f"\n{profile}: identifier values {dict(seen)}")
    assert seen["valid-looking"] > 10 * seen["other"] > 0
    assert seen["typo caught"] > 0


def test_pnc_ids_come_in_many_forms(realistic: SynthResult):
    values = [r["pnc_id"] for r in read(realistic.files["libra"]) if r["pnc_id"]]
    forms = {
        "long": r"^\d{4}/\d{7}[A-Z]$",
        "no slash": r"^\d{11}[A-Z]$",
        "short": r"^\d{2}/\d{1,7}[A-Z]$",
        "long year, short serial": r"^\d{4}/[1-9]\d{0,5}[A-Z]$",
        "lower case": r"[a-z]$",
    }
    for name, pattern in forms.items():
        assert any(re.search(pattern, v) for v in values), name


# ---- the population ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people():
    n = 20_000
    ids = IdSpace.seeded(np.random.default_rng(1))
    return build_people(
        0, n, np.random.default_rng(2), get_profile("realistic").population, vocabulary(), ids
    )


def test_ages_at_first_contact_are_young_but_span_ten_to_eighty(people):
    age = (people.first_contact - people.dob).astype(np.int64) / 365.25
    assert age.min() >= 9.9 and age.max() <= 81
    assert 17 <= np.median(age) <= 27
    assert np.mean(people.sex == 0) > 0.75


def test_hard_negatives_are_in_the_population(people):
    main_postcode = people.postcode[:, 0]
    twins = defaultdict(set)
    namesakes = defaultdict(set)
    families = Counter()
    for i in range(len(people)):
        twins[(people.surname[i], people.dob[i], main_postcode[i])].add(people.forename[i])
        namesakes[(people.forename[i], people.surname[i], people.dob[i])].add(people.index[i])
        families[(people.birth_surname[i], main_postcode[i])] += 1
    n_twins = sum(1 for v in twins.values() if len(v) > 1)
    n_namesakes = sum(1 for v in namesakes.values() if len(v) > 1)
    n_families = sum(1 for v in families.values() if v > 1)
    print(f"\ntwin pairs {n_twins}, namesake groups {n_namesakes}, families {n_families}")
    assert n_twins >= 0.5 * 0.008 * len(people) / 2
    assert n_namesakes >= 0.5 * 0.006 * len(people) / 2
    assert n_families >= 0.5 * 0.12 * len(people)


def test_name_origins_and_spelling_variants(people):
    forenames = set(people.forename)
    surnames = set(people.surname)
    assert {"MOHAMMED", "MUHAMMAD", "MOHAMED"} <= forenames
    assert {"KHAN", "NGUYEN", "KOWALSKI", "OKAFOR", "O'BRIEN"} & surnames == {
        "KHAN",
        "NGUYEN",
        "KOWALSKI",
        "OKAFOR",
        "O'BRIEN",
    }
    assert any("-" in s for s in surnames)  # double-barrelled after marriage


def test_reference_numbers_are_unique_per_person(people):
    has_pnc = people.n_pnc > 0
    pnc = set(zip((people.pnc_year[has_pnc] % 100).tolist(), people.pnc_serial[has_pnc].tolist()))
    assert len(pnc) == has_pnc.sum()
    cro = people.cro_kind == 1
    assert len(set(zip(people.cro_year[cro].tolist(), people.cro_serial[cro].tolist()))) == cro.sum()
    # prison numbers and CRNs for the people who hold them, distinct as written
    for codes, held, write in (
        (people.prison_codes, people.n_prison_numbers, linkage.synthetic.identifiers.prison_numbers),
        (people.crn_codes, people.n_probation, linkage.synthetic.identifiers.crns),
    ):
        used = codes[np.arange(codes.shape[1])[None, :] < held[:, None]]
        assert (used >= 0).all() and len(used) == held.sum() > 1000
        assert len(set(write(used).tolist())) == len(used)


# ---- across chunks ------------------------------------------------------------------------

CHUNK = 2000


@pytest.fixture(scope="module")
def chunked():
    """20,000 people made in ten chunks of 2,000, as (People, chunk number) pairs."""
    rates = get_profile("realistic").population
    return [(p, i) for i, (p, _) in enumerate(people_in_chunks(20_000, 8, rates, vocabulary(), CHUNK))]


def _column(chunked, name):
    return np.concatenate([getattr(p, name) for p, _ in chunked])


def test_reference_numbers_unique_across_chunks(chunked):
    has_pnc = _column(chunked, "n_pnc") > 0
    year = _column(chunked, "pnc_year") % 100
    first = list(zip(year[has_pnc].tolist(), _column(chunked, "pnc_serial")[has_pnc].tolist()))
    second = _column(chunked, "second_pnc_serial")
    held = second >= 0
    assert held.sum() == (_column(chunked, "n_pnc") > 1).sum() > 0
    pncs = first + list(zip(year[held].tolist(), second[held].tolist()))
    assert len(set(pncs)) == len(pncs)
    assert all(0 < s < 10**7 for _, s in pncs)
    kind = _column(chunked, "cro_kind")
    cro_year, cro_serial = _column(chunked, "cro_year"), _column(chunked, "cro_serial")
    for k, top in ((1, 10**6), (2, 10**5)):
        numbers = list(zip(cro_year[kind == k].tolist(), cro_serial[kind == k].tolist()))
        assert len(numbers) > 100 and len(set(numbers)) == len(numbers), k
        assert all(0 < s < top for _, s in numbers)
    # the PNC serial's last six digits are the CRO serial (the production model links on it)
    cro = kind == 1
    assert np.array_equal(_column(chunked, "pnc_serial")[cro] % 10**6, cro_serial[cro])
    for name, counts in (("prison_codes", "n_prison_numbers"), ("crn_codes", "n_probation")):
        codes = _column(chunked, name)
        used = codes[codes >= 0]
        assert len(used) == _column(chunked, counts).sum() == len(set(used.tolist())), name


def test_reference_numbers_written_are_one_persons(tmp_path: Path):
    """In the files, a valid PNC ID or CRO number left as allocated names one person."""
    result = generate(6000, 21, tmp_path, "clean", chunk_people=1000)
    person = {(t["source_dataset"], t["record_id"]): t["person_id"] for t in read(tmp_path / "truth.csv")}
    log = corrupted(result)
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for source, columns in ID_FIELDS.items():
        id_column = HEADERS[source].split(",")[0]
        for row in read(result.files[source]):
            for column, field in columns.items():
                value = row[column].upper()
                if not value or log.get((source, row[id_column], field)) or not check_ok(value, field):
                    continue
                if field == "pnc_id":
                    m = PNC_FORMS[0].match(value) or PNC_FORMS[1].match(value)
                    key = ("pnc", m.group(1)[-2:], int(m.group(2)))
                elif m := CRO_FORM.match(value):
                    key = ("cro", m.group(2), int(m.group(1)))
                else:
                    m = SF_CRO_FORM.match(value)
                    key = ("sf", m.group(1), int(m.group(2)))
                owners[key].add(person[(source, row[id_column])])
    kinds = Counter(k[0] for k in owners)
    assert kinds["pnc"] > 3000 and kinds["cro"] > 1500 and kinds["sf"] > 100
    shared = [k for k, v in owners.items() if len(v) > 1 and k[1:] not in (("00", 0), ("33", 993399))]
    assert not shared


def test_pnc_and_cro_serials_unique_at_full_scale():
    """10.4 million people's serials: one (year, serial) per person, by construction."""
    n = 10_400_000
    rng = np.random.default_rng(3)
    ids = IdSpace.seeded(rng)
    # arrest years skewed recent, CRO years up to three years later, capped at 2025
    pnc_year = 1985 + (rng.random(n) ** 0.8 * 40.5).astype(np.int64)
    cro_year = np.minimum(pnc_year + rng.integers(0, 4, n), 2025)
    pnc = np.empty(n, np.int64)
    core = np.empty(n, np.int64)
    for start in range(0, n, 1_000_000):  # a chunk at a time, as the generator does
        sl = slice(start, start + 1_000_000)
        pnc[sl], core[sl] = pnc_and_cro_serials(ids, pnc_year[sl], cro_year[sl])
    assert distinct((cro_year % 100) * 10**6 + core)
    assert core.min() >= 1 and core.max() <= SERIAL and pnc.max() < 10**7
    second = second_pnc_serials(ids, pnc_year[:200_000])
    assert distinct(np.concatenate([(pnc_year % 100) * 10**7 + pnc, (pnc_year[:200_000] % 100) * 10**7 + second]))


def distinct(values: np.ndarray) -> bool:
    # sort and compare neighbours: np.unique takes ~50 s on 10 million integers in numpy 2.4
    ordered = np.sort(values)
    return bool((ordered[1:] != ordered[:-1]).all())


def test_serial_counter_runs_out_loudly():
    counter = SerialCounter.seeded(np.random.default_rng(0), 7, spaces=2, name="test")
    serials = np.concatenate([counter(np.array([0, 1, 0])), counter(np.array([0, 0, 0, 0, 0, 1]))])
    assert sorted(serials[[0, 2, 3, 4, 5, 6, 7]].tolist()) == list(range(7))
    assert len(counter(count=0)) == 0
    with pytest.raises(OverflowError, match="test space exhausted"):
        counter(np.array([0]))
    assert len(counter(np.array([1] * 5))) == 5


def _spanning(chunked, *names) -> list[set[int]]:
    """Groups of people (by chunk) sharing the values of ``names``, that span several chunks."""
    groups: dict[tuple, set[int]] = defaultdict(set)
    chunk = np.concatenate([np.full(len(p), i) for p, i in chunked]).tolist()
    columns = [_column(chunked, n) if n != "main_postcode" else
               np.concatenate([p.postcode[:, 0] for p, _ in chunked]) for n in names]  # fmt: skip
    for key, c in zip(zip(*(col.tolist() for col in columns)), chunk):
        groups[key].add(c)
    return [g for g in groups.values() if len(g) > 1]


def test_families_twins_and_namesakes_reach_across_chunks(chunked):
    n = sum(len(p) for p, _ in chunked)
    rates = get_profile("realistic").population
    namesakes = _spanning(chunked, "forename", "surname", "dob")
    twins = _spanning(chunked, "surname", "dob", "main_postcode")
    families = _spanning(chunked, "birth_surname", "main_postcode")
    print(f"\nacross chunks: namesake groups {len(namesakes)}, twins {len(twins)}, families {len(families)}")
    # most relationships of later chunks reach back: well over a third of all of them
    assert len(namesakes) >= 0.35 * rates.namesake_rate * n / 2
    assert len(twins) >= 0.35 * rates.twin_rate * n / 2
    assert len(families) >= 0.35 * rates.family_rate * n
    # reaching back both ways: the first chunk's people have relatives in later chunks,
    # and the last chunk's in earlier ones
    assert any(0 in g for g in families) and any(len(chunked) - 1 in g for g in families)
    # a person drawn against leaves the pool: no family collects relatives from many chunks
    assert max(len(g) for g in families) <= 4


# ---- calibration ---------------------------------------------------------------------------

TOLERANCE = {
    "name_exact": 0.03,
    "name_close": 0.025,
    "name_swapped": 0.003,
    "dob_exact": 0.02,
    "dob_one_char": 0.008,
    "dob_within_5y": 0.006,
    "postcode_none_shared": 0.03,
}


def test_realistic_true_pairs_disagree_as_often_as_live_data(realistic: SynthResult):
    rates = measure_true_pair_agreement(realistic.out, sample_pairs=20_000)
    print(f"\ntrue-pair agreement, realistic, {realistic.people} people, {rates['pairs']} pairs")
    for key, target in REALISTIC_TARGETS.items():
        print(f"  {key:<22} {rates[key]:7.2%}   target {target:6.2%}")
    assert rates["name_pairs"] > 10_000 and rates["dob_pairs"] > 5_000 and rates["postcode_pairs"] > 2_000
    for key, target in REALISTIC_TARGETS.items():
        assert abs(rates[key] - target) <= TOLERANCE[key], key


def test_clean_is_cleaner_and_hard_is_harder(realistic: SynthResult, hard: SynthResult, tmp_path: Path):
    clean = generate(2000, 13, tmp_path, "clean")
    measured = {
        name: measure_true_pair_agreement(result.out, sample_pairs=10_000)
        for name, result in (("clean", clean), ("realistic", realistic), ("hard", hard))
    }
    for key in ("name_exact", "dob_exact"):
        print(f"\n{key}: " + ", ".join(f"{n} {m[key]:.2%}" for n, m in measured.items()))
        assert measured["clean"][key] > measured["realistic"][key] > measured["hard"][key]
    assert measured["clean"]["name_exact"] > 0.96


def test_measure_is_repeatable(realistic: SynthResult):
    a = measure_true_pair_agreement(realistic.out, sample_pairs=3000, seed=4)
    b = measure_true_pair_agreement(realistic.out, sample_pairs=3000, seed=4)
    assert a == b


# ---- docstring examples run ----------------------------------------------------------------


@pytest.mark.parametrize(
    "module", [linkage.synthetic.identifiers, linkage.synthetic.measure, linkage.synthetic]
)
def test_docstring_examples(module):
    failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
