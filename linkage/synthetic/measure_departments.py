"""Calibration figures for the department sources of a folder made with ``departments``.

``measure_departments(folder)`` reports, per added source: rows, people, how many of the
justice people it knows, the share of rows about people outside justice; the reasons
NINOs (DWP, HMRC) and ULNs (learner records) are not usable, by the same rules as the
standardiser's ``check: nino`` and ``check: uln``; the share of rows without a usable date
of birth (empty, or a default date); and, over a seeded sample of true pairs of a
department record and a justice record of the same person, how often names and dates of
birth agree (the measures of ``measure.py``: full name exact, close, swapped, other; date
of birth exact, one character out, within five years, other).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import duckdb

from linkage.synthetic.departments import DEPT_SOURCES
from linkage.synthetic.identifiers import nino_reason, uln_reason
from linkage.synthetic.measure import _FIELDS_SQL, _iso_dob, normalise, parse_single_string_name, tally_name_and_dob
from linkage.synthetic.sources import SOURCES

# record id, forename, surname, ISO-able date of birth, the identifier checked (or NULL)
_DEPT_FIELDS_SQL = {
    "oasys": "assessment_id, forename_1, family_name, date_of_birth, NULL",
    "programmes": "referral_id, first_name, surname, date_of_birth, NULL",
    "dwp_benefits": (
        "claim_id, split_part(trim(forenames), ' ', 1), surname, "
        "CASE WHEN length(date_of_birth) = 8 THEN substr(date_of_birth, 1, 4) || '-' || "
        "substr(date_of_birth, 5, 2) || '-' || substr(date_of_birth, 7, 2) END, nino"
    ),
    "hmrc_employment": "employment_id, split_part(trim(forenames), ' ', 1), surname, date_of_birth, nino",
    "learners": "learning_aim_id, split_part(trim(given_names), ' ', 1), family_name, date_of_birth, uln",
}
NINO_REASONS = ("valid", "missing", "temporary", "not_issued", "administrative", "malformed", "placeholder")
ULN_REASONS = ("valid", "missing", "placeholder", "malformed", "bad_check_digit")


def _csv(folder: Path, name: str) -> str:
    path = str(folder / f"{name}.csv").replace("'", "''")
    return f"read_csv('{path}', all_varchar = true, header = true)"


def measure_departments(folder: str | Path, sample_pairs: int = 20_000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Figures per added source (see the module docstring); rates are shares of rows or of pairs."""
    folder = Path(folder)
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE TABLE truth AS SELECT * FROM {_csv(folder, 'truth')} "
            f"UNION ALL SELECT * FROM {_csv(folder, 'truth_departments')}"
        )
        [(justice_people,)] = con.execute(
            "SELECT count(DISTINCT person_id) FROM truth WHERE source_dataset IN "
            f"({', '.join(repr(s) for s in SOURCES)}) AND starts_with(person_id, 'P')"
        ).fetchall()
        selects = []
        for source, fields in _FIELDS_SQL.items():
            selects.append(
                f"SELECT '{source}' AS source, t.* FROM (SELECT {fields} FROM {_csv(folder, source)}) "
                "t (record_id, forename, surname, dob, postcode)"
            )
        con.execute(
            "CREATE TABLE justice AS SELECT r.source, r.record_id, r.forename, r.surname, r.dob, t.person_id "
            f"FROM ({' UNION ALL '.join(selects)}) r JOIN truth t "
            "ON t.source_dataset = r.source AND t.record_id = r.record_id"
        )
        out: dict[str, dict[str, Any]] = {}
        for source in DEPT_SOURCES:
            con.execute(
                f"CREATE OR REPLACE TABLE dept AS SELECT r.*, t.person_id FROM (SELECT {_DEPT_FIELDS_SQL[source]} "
                f"FROM {_csv(folder, source)}) r (record_id, forename, surname, dob, ident) "
                f"JOIN truth t ON t.source_dataset = '{source}' AND t.record_id = r.record_id"
            )
            [(rows, people, justice, outside_rows)] = con.execute(
                "SELECT count(*), count(DISTINCT person_id), count(DISTINCT person_id) FILTER "
                "(WHERE starts_with(person_id, 'P')), count(*) FILTER (WHERE starts_with(person_id, 'N')) FROM dept"
            ).fetchall()
            figures: dict[str, Any] = {
                "rows": rows,
                "people": people,
                "justice_people_known": justice / justice_people if justice_people else float("nan"),
                "outside_rows": outside_rows / rows if rows else float("nan"),
            }
            dobs = [d for (d,) in con.execute("SELECT dob FROM dept").fetchall()]
            figures["dob_missing"] = sum(not _iso_dob(d) for d in dobs) / rows if rows else float("nan")
            if source in ("dwp_benefits", "hmrc_employment", "learners"):
                check, reasons = (uln_reason, ULN_REASONS) if source == "learners" else (nino_reason, NINO_REASONS)
                counts = Counter(check(v or "") or "valid" for (v,) in con.execute("SELECT ident FROM dept").fetchall())
                figures["identifier"] = {k: counts.get(k, 0) / rows for k in reasons}
            pairs = con.execute(
                """SELECT d.forename, d.surname, d.dob, j.source, j.forename, j.surname, j.dob
                FROM dept d JOIN justice j USING (person_id)
                ORDER BY hash(d.record_id || '|' || j.source || j.record_id || ?) LIMIT ?""",
                [str(seed), int(sample_pairs)],
            ).fetchall()
            figures.update(_agreement(pairs))
            out[source] = figures
    finally:
        con.close()
    return out


def _agreement(pairs: list[tuple]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    name_pairs = dob_pairs = 0
    for f1, s1, d1, jsource, f2, s2, d2 in pairs:
        if jsource == "libra":
            f2, s2 = parse_single_string_name(f2)
        f1, s1, f2, s2 = normalise(f1), normalise(s1), normalise(f2), normalise(s2)
        d1, d2 = _iso_dob(d1), _iso_dob(d2)
        named, dated = tally_name_and_dob(counts, f1, s1, d1, f2, s2, d2)
        name_pairs += named
        dob_pairs += dated
    result: dict[str, Any] = {"pairs": len(pairs), "name_pairs": name_pairs, "dob_pairs": dob_pairs}
    for key in ("name_exact", "name_close", "name_swapped", "name_other"):
        result[key] = counts[key] / name_pairs if name_pairs else float("nan")
    for key in ("dob_exact", "dob_one_char", "dob_within_5y", "dob_other"):
        result[key] = counts[key] / dob_pairs if dob_pairs else float("nan")
    return result


def release_outcomes(folder: str | Path) -> dict[str, float]:
    """Of prison releases from 2001 to mid-2024 (a year of follow-up), the share followed
    by an employment spell starting within a year and by a benefit claim starting within
    eight weeks, by the true person: what an analyst's "employment in the year after
    release" would find with a perfect link."""
    folder = Path(folder)
    con = duckdb.connect()
    try:
        [(releases, employed, claimed)] = con.execute(
            f"""
            WITH truth AS (
                SELECT * FROM {_csv(folder, 'truth')} UNION ALL SELECT * FROM {_csv(folder, 'truth_departments')}),
            rel AS (
                SELECT t.person_id, strptime(p.release_date, '%Y-%m-%d')::DATE AS released
                FROM {_csv(folder, 'prison')} p JOIN truth t ON t.source_dataset = 'prison' AND t.record_id = p.booking_id
                WHERE p.release_date BETWEEN '2001-01-01' AND '2024-06-30'),
            job AS (
                SELECT t.person_id, strptime(h.start_date, '%d/%m/%Y')::DATE AS started
                FROM {_csv(folder, 'hmrc_employment')} h
                JOIN truth t ON t.source_dataset = 'hmrc_employment' AND t.record_id = h.employment_id),
            claim AS (
                SELECT t.person_id, strptime(d.claim_start_date, '%Y%m%d')::DATE AS started
                FROM {_csv(folder, 'dwp_benefits')} d
                JOIN truth t ON t.source_dataset = 'dwp_benefits' AND t.record_id = d.claim_id)
            SELECT count(*),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM job j WHERE j.person_id = rel.person_id
                       AND j.started > rel.released AND j.started <= rel.released + 365)),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM claim c WHERE c.person_id = rel.person_id
                       AND c.started >= rel.released AND c.started <= rel.released + 56))
            FROM rel
            """
        ).fetchall()
    finally:
        con.close()
    return {
        "releases": releases,
        "employment_within_a_year": employed / releases if releases else float("nan"),
        "benefit_claim_within_8_weeks": claimed / releases if releases else float("nan"),
    }
