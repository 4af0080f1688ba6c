"""Time ``linkage.synthetic.generate`` at a given size and report rows and peak memory.

    python benchmarks/bench_synth.py [PEOPLE] [--seed S] [--profile P] [--out DIR]

PEOPLE defaults to 1,000,000. Output goes to a temporary folder unless --out is given.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from linkage.synthetic import PROFILES, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("people", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=PROFILES, default="realistic")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        out = args.out or Path(tmp)
        start = time.perf_counter()
        result = generate(args.people, args.seed, out, args.profile)
        wall = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.glob("*.csv"))
    # ru_maxrss is in kilobytes on Linux
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"people          {result.people:,} (+{result.organisations:,} organisations)")
    print(f"profile, seed   {result.profile}, {result.seed}")
    print(f"wall time       {wall:.1f} s")
    for source, rows in result.rows.items():
        print(f"  {source:<13} {rows:>12,} rows")
    print(f"records         {result.records:,} ({result.records / result.people:.2f} per person)")
    print(f"corruptions     {result.corruptions:,}")
    print(f"csv size        {size / 2**20:,.0f} MiB")
    print(f"peak RSS        {peak_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
