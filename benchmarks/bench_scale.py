"""Cost follows the comparisons: one table of the job's cost at several sizes.

    python benchmarks/bench_scale.py --records 100000 --records 1000000 [--records 10000000 ...]
        [--workdir /tmp/linkage-bench] [--config configs/justice.yaml] [--model MODEL.json]
        [--memory-limit 8GiB] [--exact-count] [--from-runs RUN_DIR ...]

For each size: generate the population with ``linkage synth`` (reused when the folder holds
it, as in bench_job.py), run the job (with ``--model``, that saved model; else with
training) in its own process, measured from outside, and print one row per size: records,
comparisons (the sum over blocking rules before they overlap, from the job's guard; with
``--exact-count`` also Splink's exact count of distinct pairs, a separate pass), comparisons
per record, wall time and peak memory, the time of every stage, and comparisons scored per
second of predict. ``--from-runs`` skips running and tabulates finished run directories
(their manifests) instead.

Writes benchmarks/results/bench_scale-<time>.json and .md (and scale-latest.*).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_job as bj  # noqa: E402  (the job runner and measurement, shared)

STAGES = ("read", "standardise", "blocking guard", "prior", "train", "predict", "cluster", "person ids",
          "write restricted", "de-identify", "audit", "report")


def row_from_run(run_dir: Path, mode: str) -> bj.Row:
    """A row from a finished run's manifest (no outside measurement: the run's own figures)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    records = sum(r["in_crosswalk"] for r in manifest["rows"].values())
    row = bj.Row(records, 0, mode, records=records, seconds=manifest["total_seconds"],
                 peak_rss_bytes=manifest.get("peak_rss_bytes") or 0, stages=manifest["stage_seconds"],
                 comparisons_by_rule=sum(int(b["comparisons"]) for b in manifest["blocking"]),
                 pairs_kept=manifest["comparisons_scored_kept"], people_found=manifest["clusters"]["clusters"],
                 run_dir=str(run_dir))
    return row


def table(rows: list[bj.Row], meta: dict) -> str:
    lines = [
        f"Cost by size ({meta['config']}), {meta['created_utc']}: {meta['machine']}; splink {meta['splink']}, "
        f"duckdb {meta['duckdb']}; memory limit {meta['memory_limit']}.",
        "",
        "| records | run | comparisons (by rule) | exact comparisons | comparisons / record | total s | peak GiB | "
        + " | ".join(STAGES) + " | comparisons scored / s (predict) |",
        "|" + "---|" * (len(STAGES) + 8),
    ]
    for r in rows:
        comps = r.comparisons or r.comparisons_by_rule or 0
        predict = r.stages.get("predict")
        cells = [
            f"{r.records:,}", r.mode,
            "" if r.comparisons_by_rule is None else f"{r.comparisons_by_rule:,}",
            "" if r.comparisons is None else f"{r.comparisons:,}",
            f"{comps / max(r.records, 1):,.1f}",
            f"{r.seconds:,.0f}", f"{r.peak_rss_bytes / bj.GIB:.2f}",
            *(bj._fmt_s(r.stages.get(s)) for s in STAGES),
            "" if not predict else f"{comps / predict / 1e6:,.2f} M",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "comparisons (by rule): pairs each blocking rule makes, summed before rules overlap (the "
              "job's guard); exact: Splink's count of distinct pairs. comparisons / record and per second use the "
              "exact count when measured, else the by-rule sum. Stage seconds from each run's manifest."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/linkage-bench"))
    parser.add_argument("--config", type=Path, default=bj.ROOT / "configs" / "justice.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None, help="A saved model: no training.")
    parser.add_argument("--memory-limit", default=None)
    parser.add_argument("--exact-count", action="store_true", help="Also count distinct pairs exactly (Splink).")
    parser.add_argument("--from-runs", type=Path, nargs="+", default=None,
                        help="Tabulate these finished run directories instead of running.")
    args = parser.parse_args(argv)

    import duckdb
    import splink

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    config = bj.job_config(args.config.resolve(), args.memory_limit, work / "scale_config.yaml")
    meta = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": str(args.config), "memory_limit": bj.default_memory_limit(config, args.memory_limit),
        "machine": f"{bj.os.cpu_count()} cores, {bj.psutil.virtual_memory().total / bj.GIB:.0f} GiB",
        "splink": splink.__version__, "duckdb": duckdb.__version__, "seed": args.seed,
    }
    rows: list[bj.Row] = []
    if args.from_runs:
        rows = [row_from_run(r.resolve(), "saved model" if json.loads((r / "manifest.json").read_text())
                             ["model"]["loaded_from"] else "train") for r in args.from_runs]
    for n in args.records or ([] if args.from_runs else [100_000]):
        people = max(1, round(n / bj.RECORDS_PER_PERSON))
        tag = f"{n:_}"
        data = work / f"data-{people}-seed{args.seed}"
        data.mkdir(parents=True, exist_ok=True)
        print(f"== {n:,} records ({people:,} people)", flush=True)
        bj.synthesise(people, args.seed, data, work / f"synth-{tag}.log")
        mode = "saved model" if args.model else "train"
        model = args.model.resolve() if args.model else None
        run_dir = work / f"scale-{tag}-{mode.replace(' ', '-')}"
        row = bj.run_job(config, data, run_dir, work / f"scale-{tag}.log", model, bj.Row(n, people, mode))
        if args.exact_count:
            count_log = work / f"scale-{tag}-count.log"
            cmd = [sys.executable, str(bj.ROOT / "benchmarks" / "plain_splink.py"), str(run_dir),
                   "--workdir", str(work), "--count-only", "--memory-limit", meta["memory_limit"]]
            c = bj.run_measured(cmd, count_log)
            if c.returncode != 0:
                raise SystemExit(f"comparison count failed: see {count_log}")
            row.comparisons = json.loads(count_log.read_text().strip().splitlines()[-1])["comparisons"]
        rows.append(row)
        print(f"   {row.seconds:,.0f} s, {row.peak_rss_bytes / bj.GIB:.2f} GiB", flush=True)
    md = table(rows, meta)
    bj.RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = meta["created_utc"].replace(":", "").replace("+0000", "Z")
    for name in (f"bench_scale-{stamp}", "scale-latest"):
        (bj.RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]},
                                                            indent=2) + "\n")
        (bj.RESULTS / f"{name}.md").write_text(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
