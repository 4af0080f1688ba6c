"""Name and address vocabularies (data/*.csv) and vectorised samplers over them.

Everything is held in upper case; each source writes its own case at the end.
See data/SOURCES.txt for where the lists come from.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

# Name origins and their share of the population of people who offend. A rough mix for
# England and Wales: the share of each origin is a judgement, not a statistic.
ORIGINS: tuple[str, ...] = (
    "british",
    "irish",
    "south_asian",
    "eastern_european",
    "african",
    "caribbean",
    "middle_eastern",
    "east_asian",
)
ORIGIN_SHARE = np.array([0.70, 0.04, 0.08, 0.06, 0.04, 0.04, 0.03, 0.01])
ORIGIN_SHARE = ORIGIN_SHARE / ORIGIN_SHARE.sum()

# Officer-defined ethnicity code most often recorded for each origin (IC1 white north
# European, IC2 white south European, IC3 black, IC4 Asian, IC5 Chinese/Japanese/SE Asian,
# IC6 Arab/North African, IC9 unknown).
ORIGIN_ETHNICITY = ("IC1", "IC1", "IC4", "IC1", "IC3", "IC3", "IC6", "IC5")

SEXES = ("M", "F")


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("linkage.synthetic.data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@dataclass(frozen=True)
class Sampler:
    """Draw values from a weighted list: ``values[rng.choice(len, p=p)]``."""

    values: np.ndarray  # object array of str
    p: np.ndarray

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if size == 0:
            return np.empty(0, dtype=object)
        return self.values[rng.choice(len(self.values), size=size, p=self.p)]


def _sampler(pairs: list[tuple[str, float]]) -> Sampler:
    values = np.array([v for v, _ in pairs], dtype=object)
    w = np.array([w for _, w in pairs], dtype=float)
    return Sampler(values, w / w.sum())


@dataclass(frozen=True)
class Vocabulary:
    forenames: dict[tuple[str, str], Sampler]  # (sex, origin) -> sampler
    surnames: dict[tuple[str, str], Sampler]  # (sex, origin) -> sampler
    nicknames: dict[str, tuple[str, ...]]  # FORENAME -> nicknames
    variants: dict[str, tuple[str, ...]]  # NAME -> other spellings of it
    streets: np.ndarray
    street_suffixes: np.ndarray
    postcode_areas: Sampler


@functools.cache
def vocabulary() -> Vocabulary:
    forenames: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for row in _read_csv("forenames.csv"):
        forenames.setdefault((row["sex"], row["origin"]), []).append(
            (row["forename"].upper(), float(row["weight"]))
        )
    surnames: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for row in _read_csv("surnames.csv"):
        for sex in SEXES:
            if row["sex"] in ("", sex):
                surnames.setdefault((sex, row["origin"]), []).append(
                    (row["surname"].upper(), float(row["weight"]))
                )
    nicknames: dict[str, list[str]] = {}
    for row in _read_csv("nicknames.csv"):
        nicknames.setdefault(row["forename"].upper(), []).append(row["nickname"].upper())
    groups: dict[str, list[str]] = {}
    for row in _read_csv("name_variants.csv"):
        groups.setdefault(row["group"], []).append(row["name"].upper())
    variants: dict[str, list[str]] = {}
    for members in groups.values():
        for name in members:
            variants.setdefault(name, []).extend(m for m in members if m != name)
    return Vocabulary(
        forenames={k: _sampler(v) for k, v in forenames.items()},
        surnames={k: _sampler(v) for k, v in surnames.items()},
        nicknames={k: tuple(dict.fromkeys(v)) for k, v in nicknames.items()},
        variants={k: tuple(dict.fromkeys(v)) for k, v in variants.items()},
        streets=np.array([r["street"] for r in _read_csv("streets.csv")], dtype=object),
        street_suffixes=np.array([r["suffix"] for r in _read_csv("street_suffixes.csv")], dtype=object),
        postcode_areas=_sampler([(r["area"], float(r["weight"])) for r in _read_csv("postcode_areas.csv")]),
    )


def draw_by_group(
    samplers: dict[tuple[str, str], Sampler],
    sex: np.ndarray,
    origin: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One draw per person from the sampler of that person's (sex, origin).

    ``sex`` holds 0 (male) / 1 (female), ``origin`` indexes ORIGINS.
    """
    out = np.empty(len(sex), dtype=object)
    for s, sex_code in enumerate(SEXES):
        for o, origin_name in enumerate(ORIGINS):
            idx = np.flatnonzero((sex == s) & (origin == o))
            if len(idx):
                out[idx] = samplers[(sex_code, origin_name)].draw(rng, len(idx))
    return out
