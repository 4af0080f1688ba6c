"""Fuzz the real CLI with damaged extracts: every run ends in exit 0 or 1, never 2 and never
a traceback; on exit 0 every row read is in the crosswalk or rejected, on exit 1 nothing
is published.

Seeded: case ``i`` is the same every time. ``LINKAGE_FUZZ_CASES=40`` runs more cases
(the default few keep the test near a minute); a failure names its case and damages.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import duckdb
import pytest

from conftest import cli, fast_config, synth_extracts

CASES = int(os.environ.get("LINKAGE_FUZZ_CASES", "5"))
SOURCES = ("pnc", "prison", "probation", "libra", "crest")


@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> Path:
    return synth_extracts(tmp_path_factory, 300, name="fuzz-extracts")


# --- damages: each takes (rng, lines) and changes the lines of one extract in place ----------------
# A line is bytes without its line end; line 0 is the header.


def _row(rng: random.Random, lines: list[bytes]) -> int:
    return rng.randrange(1, len(lines))


def _field(rng: random.Random, lines: list[bytes], i: int) -> tuple[list[bytes], int]:
    fields = lines[i].split(b",")
    return fields, rng.randrange(len(fields))


def quote_inside(rng, lines):
    i = _row(rng, lines)
    fields, j = _field(rng, lines, i)
    fields[j] = rng.choice([b'"' + fields[j] + b'""x"', b"'" + fields[j], fields[j] + b'"', b'"' + fields[j] + b'" x'])
    lines[i] = b",".join(fields)


def quote_never_closed(rng, lines):
    # It takes in the rows after it (one rejected row): in the second half of the file, so
    # that rows are left to link.
    i = rng.randrange(max(1, len(lines) // 2), len(lines))
    fields, j = _field(rng, lines, i)
    fields[j] = b'"' + fields[j]
    lines[i] = b",".join(fields)


def quoted_newline(rng, lines):
    i = _row(rng, lines)
    fields, j = _field(rng, lines, i)
    fields[j] = b'"' + fields[j].replace(b'"', b"") + rng.choice([b"\n", b"\r\n", b"\n\n"]) + b'more"'
    lines[i] = b",".join(fields)


def extra_field(rng, lines):
    i = _row(rng, lines)
    fields, j = _field(rng, lines, i)
    fields.insert(j, b"EXTRA")
    lines[i] = b",".join(fields)


def short_row(rng, lines):
    i = _row(rng, lines)
    lines[i] = b",".join(lines[i].split(b",")[:-1])


def blank_id(rng, lines):
    i = _row(rng, lines)
    lines[i] = rng.choice([b"", b"  "]) + b"," + lines[i].split(b",", 1)[1]


def duplicate_id(rng, lines):
    i, k = _row(rng, lines), _row(rng, lines)
    lines[i] = lines[k].split(b",", 1)[0] + b"," + lines[i].split(b",", 1)[1]


def spaced_id(rng, lines):
    i = _row(rng, lines)
    rid, rest = lines[i].split(b",", 1)
    lines[i] = rng.choice([b" " + rid, rid + b" ", b'" ' + rid + b' "']) + b"," + rest


def bad_dates(rng, lines):
    header = lines[0].split(b",")
    dated = [j for j, name in enumerate(header) if b"date" in name or b"dob" in name]
    if not dated:
        return
    j = rng.choice(dated)
    every = rng.random() < 0.5
    for i in range(1, len(lines)):
        if every or rng.random() < 0.05:
            fields = lines[i].split(b",")
            if j < len(fields) and fields[j]:
                fields[j] = rng.choice([b"31.02.1990", b"1990/13/45", b"not a date", b"0"])
                lines[i] = b",".join(fields)


def not_utf8(rng, lines):
    i = _row(rng, lines)
    at = rng.randrange(len(lines[i]) + 1)
    lines[i] = lines[i][:at] + rng.choice([b"\xe9", b"\x92", b"\xff\xfe"]) + lines[i][at:]


def empty_file(rng, lines):
    del lines[:]


def missing_header(rng, lines):
    del lines[0]


def blank_lines(rng, lines):
    for _ in range(rng.randint(1, 3)):
        lines.insert(rng.randrange(1, len(lines) + 1), b"")


def spaced_header(rng, lines):
    lines[0] = b", ".join(b" " + name for name in lines[0].split(b","))


def long_field(rng, lines):
    i = _row(rng, lines)
    fields, j = _field(rng, lines, i)
    fields[j] = b"x" * rng.choice([100_000, 2_100_000])
    lines[i] = b",".join(fields)


# Damages to rows (the job runs, rejecting rows), and to whole files (it may refuse them).
ROW_DAMAGES = [quote_inside, quote_never_closed, quoted_newline, extra_field, short_row, blank_id, spaced_id, blank_lines,
               spaced_header, long_field]
FILE_DAMAGES = [duplicate_id, bad_dates, not_utf8, empty_file, missing_header]


def _damage(rng: random.Random, data: Path, case: int) -> list[str]:
    done = []
    # Odd cases damage rows only (the job runs); even cases also damage whole files, two
    # each, in turn, so that the first few cases try every kind.
    damages = rng.sample(ROW_DAMAGES, rng.randint(2, 5))
    if case % 2 == 0:
        damages += [FILE_DAMAGES[(case + k) % len(FILE_DAMAGES)] for k in (0, 1)]
    for damage in damages:
        source = rng.choice(SOURCES)
        path = data / f"{source}.csv"
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        ending = raw.endswith(b"\n")
        if ending:
            lines.pop()
        if len(lines) < 2:
            continue
        damage(rng, lines)
        path.write_bytes(b"\n".join(lines) + (b"\n" if ending and lines else b""))
        done.append(f"{damage.__name__}({source})")
    return done


@pytest.mark.parametrize("case", range(CASES))
def test_damaged_extracts_end_in_exit_0_or_1(extracts, tmp_path, case):
    rng = random.Random(1000 + case)
    data = tmp_path / "data"
    shutil.copytree(extracts, data)
    damages = _damage(rng, data, case)
    out = tmp_path / "run"
    res = cli("run", str(fast_config(tmp_path)), "--data", str(data), "--out", str(out))
    where = f"case {case}: {', '.join(damages)}\n{res.stderr[-3000:]}"
    assert res.returncode in (0, 1), where
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, where
    if case % 2:
        # Damaged rows are rejected one by one: they never stop the job.
        assert res.returncode == 0, where
    if res.returncode == 1:
        assert "error:" in res.stderr, where
        assert not out.exists(), where
        # No staging or parked copy left behind (the lock file stays, by design: linkage/publish.py).
        assert not [p for p in tmp_path.glob(".run.*") if p.name != ".run.lock"], where
        return
    manifest = json.loads((out / "manifest.json").read_text())
    counts = dict(duckdb.sql(
        f"SELECT source_dataset, count(*) FROM (SELECT source_dataset FROM '{out}/restricted/crosswalk.parquet' "
        f"UNION ALL SELECT source_dataset FROM '{out}/restricted/rejects.parquet') GROUP BY ALL"
    ).fetchall())
    for source in SOURCES:
        assert counts.get(source, 0) == manifest["rows"][source]["read"], where
        # Rows read: every row of the file that is not blank, give or take rows taken in by
        # a quote never closed (which the rejects name). Never more than the file's lines.
        lines = (data / f"{source}.csv").read_bytes().count(b"\n")
        assert manifest["rows"][source]["read"] <= lines, where
    ids = duckdb.sql(f"SELECT count(*) - count(DISTINCT (source_dataset, record_id)) "
                     f"FROM '{out}/restricted/crosswalk.parquet'").fetchall()[0][0]
    assert ids == 0, where
