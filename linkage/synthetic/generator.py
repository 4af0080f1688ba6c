"""``generate``: write the five synthetic extracts, the truth and the corruption log.

People are made in chunks of ``CHUNK_PEOPLE`` so memory stays bounded at any size;
each chunk has its own random stream, derived from the seed and the chunk number,
and appends to the CSVs. Within a chunk, each source's rows are shuffled before record
ids are given out, so a person's records do not sit next to each other.

Two small things carry over from chunk to chunk, so the population behaves as one:
the reference-number counters (``IdSpace``: PNC, CRO, SF-CRO, prison numbers and CRNs
unique across the whole population) and a bounded pool of earlier people
(``RelativePool``) whom later chunks' relatives, twins and namesakes are drawn against.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.errors import UsageError
from linkage.synthetic.departments import (
    DEPT_COLUMNS,
    DEPT_ID_PREFIX,
    DEPT_RECORD_ID_COLUMN,
    DEPT_SOURCES,
    DeptIds,
    build_departments,
)
from linkage.synthetic.names import Vocabulary, vocabulary
from linkage.synthetic.population import IdSpace, People, RelativePool, build_people
from linkage.synthetic.profiles import PROFILES, Departments, get_profile
from linkage.synthetic.profiles import Population as PopulationRates
from linkage.synthetic.sources import (
    COLUMNS,
    RECORD_ID_COLUMN,
    SOURCES,
    Context,
    SourceChunk,
    build_crest,
    build_libra,
    build_pnc,
    build_prison,
    build_probation,
)
from linkage.synthetic.writer import CsvAppender

CHUNK_PEOPLE = 100_000
# Earlier people held for later chunks' relationships: about 40 MiB, whatever the size.
POOL_PEOPLE = 200_000
# CRO serials have six digits a year; the busiest CRO year takes under 5% of people.
MAX_PEOPLE = 20_000_000
TRUTH_COLUMNS = ["source_dataset", "record_id", "person_id"]
CORRUPTION_COLUMNS = ["source_dataset", "record_id", "field", "corruption"]
ID_COLUMN = {**RECORD_ID_COLUMN, **DEPT_RECORD_ID_COLUMN}


@dataclass(frozen=True)
class SynthResult:
    out: Path
    files: dict[str, Path]  # source -> csv path
    rows: dict[str, int]  # source -> rows written
    people: int
    seed: int
    profile: str
    organisations: int
    corruptions: int
    truth: Path
    corruptions_file: Path
    chunk_people: int = CHUNK_PEOPLE
    # with ``departments``: the five added sources, their truth and the people outside justice
    department_files: dict[str, Path] = field(default_factory=dict)
    department_rows: dict[str, int] = field(default_factory=dict)
    department_truth: Path | None = None
    outside_people: int = 0

    @property
    def records(self) -> int:
        return sum(self.rows.values())


def generate(
    people: int,
    seed: int,
    out: str | Path,
    profile: str = "realistic",
    chunk_people: int = CHUNK_PEOPLE,
    departments: bool = False,
    department_rates: Departments | None = None,
) -> SynthResult:
    """Write ``pnc.csv``, ``prison.csv``, ``probation.csv``, ``libra.csv``, ``crest.csv``,
    ``truth.csv`` and ``corruptions.csv`` for ``people`` synthetic people into ``out``.

    The same (people, seed, profile, chunk_people) always gives byte-identical files.
    ``chunk_people`` bounds memory; it changes which random draws go to whom, not the rates.

    ``departments`` adds ``oasys.csv``, ``programmes.csv``, ``dwp_benefits.csv``,
    ``hmrc_employment.csv``, ``learners.csv`` and ``truth_departments.csv`` (their truth,
    including the people outside justice), at the profile's rates or ``department_rates``;
    their corruptions join ``corruptions.csv``. The five justice extracts and ``truth.csv``
    are the same bytes either way.
    """
    out = _check_arguments(people, seed, out, profile, chunk_people)
    rates = get_profile(profile)
    vocab = vocabulary()
    width = max(7, len(str(people)) + 2)

    files = {source: out / f"{source}.csv" for source in SOURCES}
    writers = {source: CsvAppender(files[source], list(COLUMNS[source])) for source in SOURCES}
    truth = CsvAppender(out / "truth.csv", TRUTH_COLUMNS)
    corruptions = CsvAppender(out / "corruptions.csv", CORRUPTION_COLUMNS)
    next_record = dict.fromkeys(SOURCES, 0)
    organisations = 0
    dept_rates = department_rates or rates.departments
    if departments:
        dept_ids = DeptIds.seeded(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4,))))
        dept_files = {source: out / f"{source}.csv" for source in DEPT_SOURCES}
        dept_writers = {s: CsvAppender(dept_files[s], list(DEPT_COLUMNS[s])) for s in DEPT_SOURCES}
        dept_truth = CsvAppender(out / "truth_departments.csv", TRUTH_COLUMNS)
        next_record.update(dict.fromkeys(DEPT_SOURCES, 0))
    outside = 0

    for number, (population, rng) in enumerate(
        people_in_chunks(people, seed, rates.population, vocab, chunk_people)
    ):
        n = len(population)
        ctx = Context(rng, rates.dirt, vocab)
        n_orgs = int(round(n * rates.population.organisation_rate))
        chunks = {
            "pnc": build_pnc(population, ctx),
            "prison": build_prison(population, ctx),
            "probation": build_probation(population, ctx),
            "libra": build_libra(population, ctx, n_orgs, organisations),
            "crest": build_crest(population, ctx),
        }
        organisations += n_orgs
        for source in SOURCES:
            next_record[source] = _write_chunk(
                source, chunks[source], next_record[source], width, rng, writers[source], truth, corruptions
            )
        if departments:
            # their own random stream: the justice extracts do not change
            drng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, number)))
            added, n_out = build_departments(
                population, chunks["prison"].events, chunks["probation"].events, outside, drng,
                rates.dirt, rates.population, vocab, dept_ids, dept_rates,
            )  # fmt: skip
            outside += n_out
            for source in DEPT_SOURCES:
                next_record[source] = _write_chunk(
                    source, added[source], next_record[source], width + 1, drng,
                    dept_writers[source], dept_truth, corruptions,
                )  # fmt: skip
            del added
        del chunks, population

    result = SynthResult(
        out=out,
        files=files,
        rows={source: writers[source].rows for source in SOURCES},
        people=people,
        seed=seed,
        profile=profile,
        organisations=organisations,
        corruptions=corruptions.rows,
        truth=truth.path,
        corruptions_file=corruptions.path,
        chunk_people=chunk_people,
    )
    if departments:
        result = dataclasses.replace(
            result,
            department_files=dept_files,
            department_rows={s: dept_writers[s].rows for s in DEPT_SOURCES},
            department_truth=dept_truth.path,
            outside_people=outside,
        )
    skip = {"out", "files", "truth", "corruptions_file", "department_files", "department_truth"}
    if not departments:  # the manifest of a justice-only folder is as it always was
        skip |= {"department_rows", "outside_people"}
    manifest = {k: v for k, v in asdict(result).items() if k not in skip}
    if departments:
        manifest["department_rates"] = asdict(dept_rates)
    (out / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return result


def people_in_chunks(
    people: int,
    seed: int,
    rates: PopulationRates,
    vocab: Vocabulary,
    chunk_people: int = CHUNK_PEOPLE,
) -> Iterator[tuple[People, np.random.Generator]]:
    """The population a chunk at a time, each with the chunk's random stream (which the
    sources go on drawing from). Reference numbers and relationships span chunks."""
    ids = IdSpace.seeded(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))))
    pool = RelativePool(POOL_PEOPLE)
    for chunk, start in enumerate(range(0, people, chunk_people)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, chunk)))
        population = build_people(start, min(chunk_people, people - start), rng, rates, vocab, ids, pool)
        pool.offer(population, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, chunk))))
        yield population, rng


def _check_arguments(people, seed, out, profile, chunk_people=CHUNK_PEOPLE) -> Path:
    if isinstance(people, bool) or not isinstance(people, (int, np.integer)) or people < 1:
        raise UsageError(f"people must be a whole number of at least 1 (got {people!r})")
    if people > MAX_PEOPLE:
        raise UsageError(
            f"people must be at most {MAX_PEOPLE:,} (got {people:,}): CRO numbers have six-digit "
            "serials a year, and more people would make them repeat"
        )
    if isinstance(chunk_people, bool) or not isinstance(chunk_people, (int, np.integer)) or chunk_people < 1:
        raise UsageError(f"chunk_people must be a whole number of at least 1 (got {chunk_people!r})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a whole number of at least 0 (got {seed!r})")
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {out} is a file: give a folder to write the extracts into")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".linkage-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"output folder {out} is not writable ({exc.strerror or type(exc).__name__})"
        ) from None
    return out


def _record_ids(source: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Record ids for record numbers (0-based): PNC0000001, 10000001 (bookings), L00000001, ..."""
    if source == "prison":
        return pa.array((10**width + numbers + 1).astype(str).astype(object), pa.string())
    if source == "probation":
        return pa.array((2 * 10**width + numbers + 1).astype(str).astype(object), pa.string())
    if source in DEPT_ID_PREFIX:
        prefix, w = DEPT_ID_PREFIX[source], width
    else:
        prefix, w = {"pnc": ("PNC", width), "libra": ("L", width + 1), "crest": ("CR", width)}[source]
    digits = pc.utf8_lpad(pa.array(numbers + 1).cast(pa.string()), w, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _write_chunk(
    source: str,
    chunk: SourceChunk,
    first: int,
    width: int,
    rng: np.random.Generator,
    writer: CsvAppender,
    truth: CsvAppender,
    corruptions: CsvAppender,
) -> int:
    """Shuffle, number and append one source's rows; returns the next record number."""
    m = len(chunk.person_id)
    if m == 0:
        return first
    rank = rng.permutation(m)  # row i gets record number first + rank[i]
    order = np.argsort(rank)
    record_id = _record_ids(source, first + np.arange(m), width)
    take = pa.array(order)
    columns = {ID_COLUMN[source]: record_id}
    for name, values in chunk.columns.items():
        arr = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
        columns[name] = arr.take(take)
    writer.write(columns)
    truth.write(
        {
            "source_dataset": pa.array([source] * m, pa.string()),
            "record_id": record_id,
            "person_id": pa.array(chunk.person_id[order], pa.string()),
        }
    )
    rows, fields, kinds = chunk.log.arrays()
    if len(rows):
        by_record = np.argsort(rank[rows], kind="stable")
        corruptions.write(
            {
                "source_dataset": pa.array([source] * len(rows), pa.string()),
                "record_id": record_id.take(pa.array(rank[rows][by_record])),
                "field": pa.array(fields[by_record], pa.string()),
                "corruption": pa.array(kinds[by_record], pa.string()),
            }
        )
    return first + m
