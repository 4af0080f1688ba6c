"""Generate a folder with ``--departments`` and print its calibration figures.

    python benchmarks/synth_departments.py [PEOPLE] [--seed S] [--profile P] [--out DIR]
                                           [--no-measure] [--pairs N]

PEOPLE defaults to 100,000. Prints wall time, CPU time and the peak resident set of
generation, rows per source, then (unless ``--no-measure``) the figures of
``measure_departments`` as Markdown tables: who each source knows, why NINOs and ULNs are
not usable, missing dates of birth, and name and date-of-birth agreement between a
department record and a justice record of the same person.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from linkage.synthetic import PROFILES, generate
from linkage.synthetic.departments import DEPT_SOURCES
from linkage.synthetic.measure_departments import (
    NINO_REASONS,
    ULN_REASONS,
    measure_departments,
    release_outcomes,
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x == x else ""


def tables(figures: dict[str, dict]) -> str:
    lines = [
        "| source | rows | people | justice people known | rows about people outside justice | date of birth missing or default |",
        "|---|---|---|---|---|---|",
    ]
    for s in DEPT_SOURCES:
        f = figures[s]
        lines.append(
            f"| {s} | {f['rows']:,} | {f['people']:,} | {_pct(f['justice_people_known'])} | "
            f"{_pct(f['outside_rows'])} | {_pct(f['dob_missing'])} |"
        )
    lines += ["", "| NINO, share of rows | " + " | ".join(NINO_REASONS) + " |", "|---" * (len(NINO_REASONS) + 1) + "|"]
    for s in ("dwp_benefits", "hmrc_employment"):
        lines.append(f"| {s} | " + " | ".join(_pct(figures[s]["identifier"][k]) for k in NINO_REASONS) + " |")
    lines += ["", "| ULN, share of rows | " + " | ".join(ULN_REASONS) + " |", "|---" * (len(ULN_REASONS) + 1) + "|"]
    lines.append("| learners | " + " | ".join(_pct(figures["learners"]["identifier"][k]) for k in ULN_REASONS) + " |")
    keys = ("name_exact", "name_close", "name_swapped", "name_other", "dob_exact", "dob_one_char", "dob_within_5y", "dob_other")
    lines += [
        "",
        "| against a justice record of the same person | pairs | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for s in DEPT_SOURCES:
        f = figures[s]
        lines.append(f"| {s} | {f['pairs']:,} | " + " | ".join(_pct(f[k]) for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("people", nargs="?", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=PROFILES, default="realistic")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--pairs", type=int, default=50_000, help="true pairs sampled per source")
    parser.add_argument("--no-measure", action="store_true", help="time generation only")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="synth_departments_") as tmp:
        out = args.out or Path(tmp)
        start, cpu = time.perf_counter(), time.process_time()
        result = generate(args.people, args.seed, out, args.profile, departments=True)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size = sum(p.stat().st_size for p in out.glob("*.csv"))
        print(f"people          {result.people:,} justice, {result.outside_people:,} outside justice")
        print(f"profile, seed   {result.profile}, {result.seed}")
        print(f"wall time       {wall:.1f} s; CPU time {cpu:.1f} s")
        for source, rows in {**result.rows, **result.department_rows}.items():
            print(f"  {source:<16} {rows:>12,} rows")
        print(f"corruptions     {result.corruptions:,}")
        print(f"csv size        {size / 2**20:,.0f} MiB")
        print(f"peak RSS        {peak_mib:,.0f} MiB")
        sys.stdout.flush()
        if not args.no_measure:
            start = time.perf_counter()
            figures = measure_departments(out, sample_pairs=args.pairs, seed=args.seed)
            print(f"\nmeasured in {time.perf_counter() - start:.0f} s\n")
            print(tables(figures))
            after = release_outcomes(out)
            print(
                f"\n{after['releases']:,} releases (2001 to mid-2024): "
                f"{_pct(after['employment_within_a_year'])} followed by a job within a year, "
                f"{_pct(after['benefit_claim_within_8_weeks'])} by a benefit claim within 8 weeks"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
