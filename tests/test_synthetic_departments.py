"""The department sources of ``linkage synth --departments``: layout, truth, overlap,
identifiers, dates tied to custody and release, namesakes across populations, calibration,
and the justice extracts unchanged."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linkage.cli import app
from linkage.synthetic import generate
from linkage.synthetic.departments import DEPT_COLUMNS, DEPT_SOURCES
from linkage.synthetic.identifiers import nino_reason, uln_reason
from linkage.synthetic.measure_departments import measure_departments, release_outcomes
from linkage.synthetic.sources import RECORD_ID_COLUMN

JUSTICE_FILES = ("pnc", "prison", "probation", "libra", "crest", "truth")


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def synth(*args: str) -> None:
    result = CliRunner().invoke(app, ["synth", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("departments")
    synth("--people", "3000", "--seed", "7", "--out", str(out), "--departments")
    return out


@pytest.fixture(scope="module")
def truth(folder: Path) -> dict[tuple[str, str], str]:
    rows = read(folder / "truth.csv") + read(folder / "truth_departments.csv")
    return {(r["source_dataset"], r["record_id"]): r["person_id"] for r in rows}


@pytest.fixture(scope="module")
def logged(folder: Path) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in read(folder / "corruptions.csv"):
        out[(r["source_dataset"], r["record_id"])].add(r["field"])
    return out


def rows_with_person(folder: Path, source: str, truth) -> list[dict[str, str]]:
    rows = read(folder / f"{source}.csv")
    id_column = DEPT_COLUMNS[source][0] if source in DEPT_COLUMNS else RECORD_ID_COLUMN[source]
    for r in rows:
        r["_id"] = r[id_column]
        r["_person"] = truth[(source, r["_id"])]
    return rows


def test_justice_extracts_are_the_same_bytes_with_or_without_departments(tmp_path: Path):
    synth("--people", "1200", "--seed", "4", "--out", str(tmp_path / "plain"))
    synth("--people", "1200", "--seed", "4", "--out", str(tmp_path / "dept"), "--departments")
    for name in JUSTICE_FILES:
        assert (tmp_path / "plain" / f"{name}.csv").read_bytes() == (tmp_path / "dept" / f"{name}.csv").read_bytes()
    assert not any((tmp_path / "plain" / f"{s}.csv").exists() for s in DEPT_SOURCES)
    assert "department" not in (tmp_path / "plain" / "manifest.json").read_text()
    assert '"department_rows"' in (tmp_path / "dept" / "manifest.json").read_text()


def test_layout_and_truth_cover_every_record_once(folder: Path, truth):
    justice_people = {r["person_id"] for r in read(folder / "truth.csv")}
    dept_truth = read(folder / "truth_departments.csv")
    assert list(dept_truth[0]) == ["source_dataset", "record_id", "person_id"]
    seen = set()
    for source in DEPT_SOURCES:
        rows = read(folder / f"{source}.csv")
        with open(folder / f"{source}.csv", encoding="utf-8") as f:
            assert f.readline().rstrip("\n").split(",") == list(DEPT_COLUMNS[source])
        assert rows, source
        ids = [r[DEPT_COLUMNS[source][0]] for r in rows]
        assert len(set(ids)) == len(ids)
        seen |= {(source, i) for i in ids}
    assert seen == {(r["source_dataset"], r["record_id"]) for r in dept_truth}
    assert len(dept_truth) == len(seen)
    people = {r["person_id"] for r in dept_truth}
    outside = {p for p in people if p.startswith("N")}
    assert people - outside <= justice_people  # P ids are justice people
    assert outside and not outside & justice_people
    # OASys and programmes are justice sources: justice people only
    assert all(r["person_id"].startswith("P") for r in dept_truth if r["source_dataset"] in ("oasys", "programmes"))


def test_overlap_is_configurable(tmp_path: Path):
    out = tmp_path / "low"
    synth("--people", "2000", "--seed", "2", "--out", str(out), "--departments",
          "--known-to", "dwp=0.2,hmrc=0.9,learners=0", "--outside-ratio", "0.5")  # fmt: skip
    truth = read(out / "truth.csv") + read(out / "truth_departments.csv")
    justice = {r["person_id"] for r in truth if r["source_dataset"] in ("pnc", "prison", "probation", "libra", "crest")}
    justice = {p for p in justice if p.startswith("P")}
    known = defaultdict(set)
    for r in truth:
        known[r["source_dataset"]].add(r["person_id"])
    share = {s: len(known[s] & justice) / len(justice) for s in ("dwp_benefits", "hmrc_employment")}
    # a few are too young for any department; releases add claims to a few more
    assert 0.12 < share["dwp_benefits"] < 0.3
    assert 0.75 < share["hmrc_employment"] < 0.95
    learners_in_justice = known["learners"] & justice
    assert len(learners_in_justice) < 0.15 * len(justice)  # only learning in custody remains
    outside = {r["person_id"] for r in truth if r["person_id"].startswith("N")}
    assert 900 <= len(outside) <= 1000  # 0.5 per justice person, every one known somewhere


def test_bad_department_options_are_usage_errors(tmp_path: Path):
    runner = CliRunner()
    for args in (
        ["--known-to", "dwp=0.5"],  # without --departments
        ["--departments", "--known-to", "dwp=1.5"],
        ["--departments", "--known-to", "police=0.5"],
        ["--departments", "--outside-ratio", "-1"],
    ):
        result = runner.invoke(app, ["synth", "--people", "10", "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 1, (args, result.output)


def test_ninos_one_per_person_and_valid_unless_logged(folder: Path, truth, logged):
    owners: dict[str, set[str]] = defaultdict(set)
    reasons = defaultdict(int)
    for source in ("dwp_benefits", "hmrc_employment"):
        for r in rows_with_person(folder, source, truth):
            reason = nino_reason(r["nino"])
            reasons[reason] += 1
            if "nino" in logged.get((source, r["_id"]), set()):
                continue
            assert reason in (None, "missing"), (source, reason)  # dirt is always logged
            if reason is None:
                core = "".join(c for c in r["nino"].upper() if c.isalnum())[:8]
                owners[core].add(r["_person"])
    assert all(len(p) == 1 for p in owners.values())  # unlogged numbers are one person's
    for reason in ("temporary", "not_issued", "malformed", None, "missing"):
        assert reasons[reason] > 0, reason


def test_ulns_valid_unless_logged_and_one_per_person(folder: Path, truth, logged):
    by_person: dict[str, set[str]] = defaultdict(set)
    owners: dict[str, set[str]] = defaultdict(set)
    for r in rows_with_person(folder, "learners", truth):
        if "uln" in logged.get(("learners", r["_id"]), set()):
            assert uln_reason(r["uln"]) in (None, "placeholder", "bad_check_digit", "malformed")
            continue
        if r["learn_start_date"] < "2008-08-01":
            assert r["uln"] == ""
            continue
        assert uln_reason(r["uln"]) is None
        by_person[r["_person"]].add(r["uln"])
        owners[r["uln"]].add(r["_person"])
    assert all(len(v) == 1 for v in by_person.values())
    assert all(len(v) == 1 for v in owners.values())


def _date(value: str) -> dt.date | None:
    if not value:
        return None
    if "/" in value:
        d, m, y = value.split("/")
        return dt.date(int(y), int(m), int(d))
    if "-" not in value:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    return dt.date.fromisoformat(value)


def test_spells_stop_at_custody_and_follow_releases(folder: Path, truth):
    custody = defaultdict(list)
    releases = []
    for r in read(folder / "prison.csv"):
        person = truth[("prison", r["booking_id"])]
        reception, release = _date(r["reception_date"]), _date(r["release_date"])
        custody[person].append((reception, release or dt.date(2100, 1, 1)))
        if release and dt.date(2001, 1, 1) <= release <= dt.date(2024, 6, 30):
            releases.append((person, release))
    starts = defaultdict(list)
    inside = total = 0
    for source, start_col in (("hmrc_employment", "start_date"), ("dwp_benefits", "claim_start_date")):
        for r in rows_with_person(folder, source, truth):
            start = _date(r[start_col])
            total += 1
            inside += any(a < start < b for a, b in custody.get(r["_person"], ()))
            if source == "hmrc_employment":
                starts[r["_person"]].append(start)
    assert inside / total < 0.005  # only where two bookings of one person overlap
    after = sum(any(rel < s <= rel + dt.timedelta(days=365) for s in starts[p]) for p, rel in releases)
    assert 0.1 < after / len(releases) < 0.3  # about 17% in the published figures
    # end dates are never before start dates
    for r in read(folder / "hmrc_employment.csv"):
        if r["end_date"]:
            assert _date(r["end_date"]) >= _date(r["start_date"])


def test_outside_people_include_namesakes_of_justice_people(folder: Path, truth):
    justice = {
        (r["forenames"].split(" ")[0], r["surname"], r["date_of_birth"].replace("-", ""))
        for r in rows_with_person(folder, "pnc", truth) if r["date_of_birth"]
    }  # fmt: skip
    outside = {
        (r["forenames"].split(" ")[0], r["surname"], r["date_of_birth"])
        for r in rows_with_person(folder, "dwp_benefits", truth) if r["_person"].startswith("N")
    }  # fmt: skip
    assert len(justice & outside) >= 3


def test_corruption_log_points_at_department_records(folder: Path, truth):
    kinds = defaultdict(set)
    for r in read(folder / "corruptions.csv"):
        if r["source_dataset"] in DEPT_SOURCES:
            assert (r["source_dataset"], r["record_id"]) in truth
            kinds[r["source_dataset"]].add(r["corruption"])
    assert {"temporary", "typo", "missing"} <= kinds["dwp_benefits"]
    assert "placeholder" in kinds["learners"] and "unknown_postcode" in kinds["learners"]
    assert set(DEPT_SOURCES) == set(kinds)


def test_several_chunks_keep_numbers_and_ids_unique(tmp_path: Path):
    result = generate(900, 3, tmp_path, "hard", chunk_people=300, departments=True)
    assert result.outside_people == 900
    truth = read(tmp_path / "truth_departments.csv")
    assert len({(r["source_dataset"], r["record_id"]) for r in truth}) == len(truth)
    owners: dict[str, set[str]] = defaultdict(set)
    person = {(r["source_dataset"], r["record_id"]): r["person_id"] for r in truth}
    logged = {(r["source_dataset"], r["record_id"]) for r in read(tmp_path / "corruptions.csv") if r["field"] == "nino"}
    for r in read(tmp_path / "dwp_benefits.csv"):
        key = ("dwp_benefits", r["claim_id"])
        if key not in logged and nino_reason(r["nino"]) is None:
            owners["".join(c for c in r["nino"].upper() if c.isalnum())[:8]].add(person[key])
    assert owners and all(len(p) == 1 for p in owners.values())


def test_calibration_figures(folder: Path):
    figures = measure_departments(folder, sample_pairs=5000, seed=1)
    assert set(figures) == set(DEPT_SOURCES)
    dwp, hmrc = figures["dwp_benefits"], figures["hmrc_employment"]
    assert 0.9 < dwp["identifier"]["valid"] < 0.99
    assert 0.005 < dwp["identifier"]["temporary"] < 0.05
    assert hmrc["identifier"]["missing"] > dwp["identifier"]["missing"]  # employers leave it off more
    assert abs(sum(dwp["identifier"].values()) - 1) < 1e-9
    assert 0.6 < figures["learners"]["identifier"]["valid"] < 0.9  # aims before 2008 have no ULN
    for source in DEPT_SOURCES:
        f = figures[source]
        assert 0.8 < f["name_exact"] < 0.95, source  # live data: about 88%
        assert 0.9 < f["dob_exact"] < 0.99, source  # about 95%
        assert f["dob_missing"] < 0.06
    assert 0.7 < dwp["justice_people_known"] < 0.9
    after = release_outcomes(folder)
    assert after["releases"] > 500
    assert 0.1 < after["employment_within_a_year"] < 0.3
    assert 0.25 < after["benefit_claim_within_8_weeks"] < 0.6
