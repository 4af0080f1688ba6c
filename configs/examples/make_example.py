"""Make the small generic example: two registers of people that are not justice extracts.

A school roll and a housing register, with different column names, date formats, sex
codes and a single-string name, to show that any CSV can be described by a config.
Run from this folder: ``python make_example.py`` (seeded: the same files every time).
"""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

PEOPLE = 400
rng = np.random.default_rng(2024)


def _weighted(file: str, column: str) -> tuple[list[str], np.ndarray]:
    with resources.files("linkage.synthetic.data").joinpath(file).open() as f:
        rows = list(csv.DictReader(f))
    weights = np.array([float(r["weight"]) for r in rows])
    return [r[column] for r in rows], weights / weights.sum()


forenames, fw = _weighted("forenames.csv", "forename")
surnames, sw = _weighted("surnames.csv", "surname")


def typo(name: str) -> str:
    if len(name) > 3 and rng.random() < 0.15:
        i = int(rng.integers(1, len(name) - 1))
        return name[:i] + name[i + 1 :]
    return name


people = []
for i in range(PEOPLE):
    dob = np.datetime64("1990-01-01") + np.timedelta64(int(rng.integers(0, 365 * 25)), "D")
    postcode = f"LS{rng.integers(1, 29)} {rng.integers(1, 10)}{chr(65 + rng.integers(0, 26))}{chr(65 + rng.integers(0, 26))}"
    people.append((f"H{i:05d}", rng.choice(forenames, p=fw), rng.choice(surnames, p=sw), str(dob), rng.choice(["F", "M"]), postcode))

truth = []
with open("school_roll.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["pupil_ref", "given_name", "family_name", "birth_date", "gender", "post_code", "year_group"])
    for n, (pid, first, last, dob, sex, pc) in enumerate(p for p in people if rng.random() < 0.7):
        y, m, d = dob.split("-")
        w.writerow([f"S{n:05d}", typo(first), last, f"{d}.{m}.{y}", {"F": "Female", "M": "Male"}[sex], pc, int(rng.integers(7, 14))])
        truth.append(("school_roll", f"S{n:05d}", pid))
with open("housing_register.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["applicant_id", "applicant_name", "dob", "sex", "postcode", "band"])
    n = 0
    for pid, first, last, dob, sex, pc in people:
        for _ in range(int(rng.choice([0, 1, 1, 2]))):  # some apply twice, some never
            name = f"{last.upper()}, {typo(first)}" if rng.random() < 0.5 else f"{first} {last}"
            moved = rng.random() < 0.2
            w.writerow([f"A{n:05d}", name, dob if rng.random() > 0.05 else "", sex, "" if moved else pc, rng.choice(["A", "B", "C"])])
            truth.append(("housing_register", f"A{n:05d}", pid))
            n += 1
with open("truth.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source_dataset", "record_id", "person_id"])
    w.writerows(truth)
