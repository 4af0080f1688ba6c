"""The monthly cycle at a given size: a full run against an incremental one, and find's latency.

    python benchmarks/bench_cycle.py --records 1000000 --workdir DIR [--delta 0.01] [--find 20]
        [--population SYNTH_DIR] [--model MODEL_JSON] [--again incremental|both]
        [--memory-limit 2GiB]

``--population`` splits an existing ``linkage synth`` folder instead of making one;
``--model`` gives the base run a saved model instead of training; ``--again`` reuses DIR's
base run (and, with ``incremental``, its full run) and times only the other runs;
``--find 0`` skips find. Prints the CPU seconds per stage (the manifests'
``stage_cpu_seconds``), full against incremental, as a Markdown table.

1. ``linkage synth`` a population of about N records (reused if DIR/population holds it).
2. Split it: the base lacks ``delta / 2`` of the records (added since) and has another
   ``delta / 2`` in an older form (changed since: postcode blanked or surname changed),
   and ``delta / 10`` records of the base are gone from the final snapshot.
3. Train on the base (``base_run``), then on the final snapshot run in full with the base's
   saved model (``full_run``) and incrementally on the base (``inc_run``); the config keeps
   the saved model's prior, so both use the same model. Wall times from outside.
4. Compare the clusters (``linkage.incremental.compare_runs``).
5. ``linkage find`` with ``--find`` records of the final snapshot (under new ids), twice:
   the first builds the run's lookup index (cold), the second is warm; then one record
   alone, warm. Wall times from outside include Python's start and imports; the
   ``inside_the_process`` lines are find's own.

Writes benchmarks/results/bench_cycle-<records>.json and prints a Markdown table.

    python benchmarks/bench_cycle.py --find-run RUN_DIR --find-records CSV [--source NAME] [--repeats 5]

Find alone against an existing run, for the first record of CSV and for its first ten:
one call to build the lookup index and keep the scoring SQL (if not there yet), then
``--repeats`` warm calls of the whole command (the median, Python's start and imports
included; and the median of find's own "records in" seconds), and one more under
``-X importtime`` (the seconds spent importing, and which heavy libraries were). Each warm
call's CPU seconds (user and system, its own and its children's) are reported beside its wall
time: on a shared machine they move less with the load.
Then find's own timers per phase (and its CPU seconds), the median of ``--repeats`` finds
in one process after a first. ``--config`` passes the run's config; ``--checkout DIR`` (repeatable, with as many runs in
``--find-run RUN,RUN``) times other checkouts of linkage, their calls taking turns: a before
and after measured together. Prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RECORDS_PER_PERSON = 3.74
KEY = "9f3c6b1e07d24a58c1e0b7d93a6f2c4e8d15b70a3e9c2f64"
SURNAME = {"pnc": "surname", "prison": "last_name", "probation": "surname", "libra": "defendant_name", "crest": "surname"}


def _env(root: Path) -> dict[str, str]:
    # PYTHONSAFEPATH: ``-m`` would otherwise put the working folder first on the path, and
    # a checkout there would shadow ``root``.
    # Without PYTHONDONTWRITEBYTECODE: the checkout's modules are compiled once and their
    # bytecode reused, as an installed package's is (compiling them took 0.1-0.15 s a call).
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "LINKAGE_PSEUDONYM_KEY": KEY, "PYTHONPATH": str(root), "PYTHONSAFEPATH": "1"}


# find's own timers (``FindResult.seconds``) and its CPU seconds, the median of several finds
# in one process after a first (which imports what a find imports on its way).
PHASES = """
import json, statistics, sys, time
from pathlib import Path
from linkage.find import find_records
run, record, source, config, repeats = sys.argv[1:6]
seen = []
for _ in range(int(repeats) + 1):
    cpu = time.process_time()
    r = find_records(Path(run), Path(record), source=source, config=Path(config) if config else None)
    seen.append({**r.seconds, "cpu": time.process_time() - cpu})
print(json.dumps({k: round(statistics.median(s[k] for s in seen[1:]), 3) for k in seen[0]}))
"""


def find_phases(run: Path, record: Path, source: str, config: Path | None, repeats: int, root: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", PHASES, str(run), str(record), source, str(config or ""), str(repeats)],
                         env=_env(root), capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"find's phases failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.splitlines()[-1])


def linkage(*args: str, stderr: list | None = None, python: tuple[str, ...] = (), root: Path = ROOT,
            cpu: list | None = None) -> float:
    """Wall seconds of ``python -m linkage ARGS`` from ``root``; its CPU seconds (user and
    system: on a loaded machine, steadier than wall time) appended to ``cpu``."""
    env = _env(root)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, *python, "-m", "linkage", *args], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        sys.exit(f"linkage {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    if stderr is not None:
        stderr.append(res.stderr)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return took


def split(population: Path, base: Path, final: Path, delta: float) -> dict[str, int]:
    counts = {"added": 0, "changed": 0, "removed": 0}
    step = max(2, round(1 / delta))
    for name in SURNAME:
        with (population / f"{name}.csv").open(newline="") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames, list(reader)
        base.mkdir(parents=True, exist_ok=True)
        final.mkdir(parents=True, exist_ok=True)
        with (base / f"{name}.csv").open("w", newline="") as fb, (final / f"{name}.csv").open("w", newline="") as ff:
            wb, wf = csv.DictWriter(fb, header), csv.DictWriter(ff, header)
            wb.writeheader()
            wf.writeheader()
            for i, r in enumerate(rows):
                k = i % step
                if k == 1:  # added since the base
                    wf.writerow(r)
                    counts["added"] += 1
                elif k == 2:  # changed since the base
                    wb.writerow(r)
                    c = dict(r)
                    if c.get("postcode"):
                        c["postcode"] = ""
                    else:
                        c[SURNAME[name]] += "E"
                    wf.writerow(c)
                    counts["changed"] += 1
                elif k == 3 and i % (step * 5) == 3:  # removed since the base
                    wb.writerow(r)
                    counts["removed"] += 1
                else:
                    wb.writerow(r)
                    wf.writerow(r)
    return counts


HEAVY = ("typer", "click", "rich", "splink", "pandas", "numpy", "pyarrow")


def find_only(targets: list[tuple[Path, Path]], records: Path, source: str, repeats: int, config: Path | None = None,
              sizes: tuple[int, ...] = (1, 10)) -> list[dict]:
    """Warm whole-command times of ``linkage find`` for the first 1 and 10 records of
    ``records`` (the median of ``repeats`` calls), and the import time, for each (run,
    checkout) of ``targets``; the checkouts' calls take turns, so a change in the machine's
    load falls on all of them."""
    import tempfile

    with records.open(newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), list(reader)
    out: list[dict] = [{"checkout": str(root), "run": str(run)} for run, root in targets]
    with tempfile.TemporaryDirectory(prefix="bench_find_") as tmp:  # owner-only: the records are personal data
        for n in sizes:
            lookup = Path(tmp) / f"lookup{n}.csv"
            with lookup.open("w", newline="") as f:
                wr = csv.DictWriter(f, header)
                wr.writeheader()
                wr.writerows(rows[:n])
            calls = [(("find", str(run), "--record", str(lookup), "--source", source,
                       *(("--config", str(config)) if config else ())), root) for run, root in targets]
            # the first call builds the index and keeps the scoring SQL if this run has none yet
            first = [linkage(*args, root=root) for args, root in calls]
            warm: list[list[float]] = [[] for _ in calls]
            cpu: list[list[float]] = [[] for _ in calls]
            said: list[list[str]] = [[] for _ in calls]
            for _ in range(repeats):
                for k, (args, root) in enumerate(calls):
                    warm[k].append(linkage(*args, stderr=said[k], root=root, cpu=cpu[k]))
            for k in range(len(calls)):
                times, cpus = sorted(warm[k]), sorted(cpu[k])
                inside = sorted(float(ln.split(" records in ")[1].split(" s")[0]) for text in said[k]
                                for ln in text.splitlines() if " records in " in ln)
                median = times[len(times) // 2]
                out[k][f"{n}_records"] = {
                    "first_call_seconds": round(first[k], 2), "warm_seconds": [round(t, 2) for t in times],
                    "warm_median_seconds": round(median, 2), "warm_median_seconds_per_record": round(median / n, 3),
                    "warm_median_cpu_seconds": round(cpus[len(cpus) // 2], 2),
                    "inside_the_process_median_seconds": inside[len(inside) // 2] if inside else None}
            for k, (run, root) in enumerate(targets):
                out[k][f"{n}_records"]["phases_in_one_process"] = find_phases(run, lookup, source, config, repeats, root)
        for k, (args, root) in enumerate(calls):
            text: list[str] = []
            linkage(*args, stderr=text, python=("-X", "importtime"), root=root)
            imports = [ln.split("|") for ln in text[0].splitlines() if ln.startswith("import time:")]
            top = sum(int(cum) for _, cum, name in imports if cum.strip().isdigit() and not name.startswith("  "))
            names = {name.strip() for *_, name in imports}
            out[k].update(import_seconds=round(top / 1e6, 2),
                          heavy_imported=sorted(m for m in names if m in HEAVY))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--delta", type=float, default=0.01)
    ap.add_argument("--find", type=int, default=20, help="records to find (0: skip find)")
    ap.add_argument("--population", type=Path, help="a synthetic population to split (default: synth one in DIR)")
    ap.add_argument("--model", type=Path, help="the base run uses this saved model instead of training one")
    ap.add_argument("--again", choices=("incremental", "both"),
                    help="reuse DIR's base run (and, with 'incremental', its full run): time only the runs named")
    ap.add_argument("--memory-limit", help="the job's engine.memory_limit (e.g. 2GiB; default: DuckDB's)")
    ap.add_argument("--find-run", type=Path, help="find alone against this run (with --find-records)")
    ap.add_argument("--find-records", type=Path)
    ap.add_argument("--source", default="libra")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--config", type=Path, help="with --find-run: the run's config, if not where its manifest says")
    ap.add_argument("--checkout", type=Path, action="append",
                    help="with --find-run: time this checkout of linkage (repeatable: compared in turn, each on "
                         "its own copy of the run); default this one")
    a = ap.parse_args()
    if a.find_run is not None:
        if a.find_records is None:
            ap.error("--find-run needs --find-records")
        checkouts = [c.resolve() for c in a.checkout or [ROOT]]
        runs = [Path(r) for r in str(a.find_run).split(",")]
        if len(runs) != len(checkouts):
            ap.error("--find-run: give one run a checkout (RUN,RUN for two --checkout: each keeps its own index)")
        print(json.dumps(find_only(list(zip(runs, checkouts)), a.find_records, a.source, a.repeats, a.config), indent=2))
        return
    if a.records is None or a.workdir is None:
        ap.error("--records and --workdir are required (or --find-run and --find-records)")
    w = a.workdir
    w.mkdir(parents=True, exist_ok=True)
    people = int(a.records / RECORDS_PER_PERSON)
    pop = a.population or w / "population"
    if not (pop / "truth.csv").is_file():
        linkage("synth", "--people", str(people), "--seed", "5", "--out", str(pop))
    counts = split(pop, w / "base", w / "final", a.delta)
    raw = yaml.safe_load((ROOT / "configs" / "justice.yaml").read_text())
    raw["model"]["training"]["prior"]["with_saved_model"] = "keep"
    if a.memory_limit:
        raw.setdefault("engine", {})["memory_limit"] = a.memory_limit
    # Training sized for a benchmark of the cycle, not of training.
    raw["model"]["training"]["u_max_pairs"] = 1_000_000
    raw["model"]["training"]["em_max_pairs"] = 1_000_000
    # Month-coarsened dates are withheld: at a million records some months coincide with an
    # identifier value and the leakage check (rightly) refuses to publish.
    for src in raw["sources"].values():
        src["carry"] = {k: v for k, v in (src.get("carry") or {}).items() if v != "month"}
    job = w / "job.yaml"
    job.write_text(yaml.safe_dump(raw, sort_keys=False))
    times = {}
    if a.again is None:
        times["train_base"] = linkage("run", str(job), "--data", str(w / "base"), "--out", str(w / "base_run"),
                                      *(("--model", str(a.model)) if a.model else ()))
    model = str(w / "base_run" / "restricted" / "model.json")
    if a.again != "incremental":
        times["full_with_saved_model"] = linkage("run", str(job), "--data", str(w / "final"), "--model", model,
                                                 "--out", str(w / "full_run"))
    times["incremental"] = linkage("run", str(job), "--data", str(w / "final"), "--previous", str(w / "base_run"),
                                   "--incremental", "--out", str(w / "inc_run"))
    manifests = {k: json.loads((w / k / "manifest.json").read_text()) for k in ("full_run", "inc_run")}
    times.setdefault("full_with_saved_model", manifests["full_run"]["total_seconds"])
    sys.path.insert(0, str(ROOT))
    from linkage.incremental import compare_runs

    differences = compare_runs(w / "inc_run", w / "full_run")
    cpu = {k: m.get("stage_cpu_seconds", {}) for k, m in manifests.items()}
    result = {
        "records": sum(r["read"] for r in manifests["full_run"]["rows"].values()),
        "delta": counts, "seconds": {k: round(v, 1) for k, v in times.items()},
        "incremental_share_of_full": round(times["incremental"] / times["full_with_saved_model"], 3),
        "incremental_cpu_share_of_full": round(sum(v for k, v in cpu["inc_run"].items() if k in STAGES)
                                               / sum(v for k, v in cpu["full_run"].items() if k in STAGES), 3),
        "stage_seconds": {k: m["stage_seconds"] for k, m in manifests.items()},
        "stage_cpu_seconds": cpu,
        "incremental": manifests["inc_run"]["incremental"],
        "cluster_differences": len(differences), "differences_shown": differences[:20],
    }
    print(stage_table(cpu["full_run"], cpu["inc_run"]))
    if a.find:
        result["find"] = bench_find(w, a.find)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_cycle-{a.records}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "differences_shown"}, indent=2))


# The job's top-level stages (the manifest's timings also hold their sub-steps).
STAGES = ("read", "standardise", "blocking guard", "prior", "train", "predict", "cluster", "person ids",
          "write restricted", "de-identify", "audit", "report")


def stage_table(full: dict[str, float], inc: dict[str, float]) -> str:
    """CPU seconds per stage, full against incremental, as Markdown; the incremental run's
    sub-steps (its own timings) below."""
    rows = ["| stage (CPU s) | full run, saved model | incremental | share of full |", "|---|---|---|---|"]
    for stage in STAGES:
        f, i = full.get(stage, 0.0), inc.get(stage, 0.0)
        if f or i:
            rows.append(f"| {stage} | {f:.1f} | {i:.1f} | {i / f:.2f} |" if f else f"| {stage} | {f:.1f} | {i:.1f} | |")
    tf, ti = (sum(v for k, v in t.items() if k in STAGES) for t in (full, inc))
    rows.append(f"| **total** | **{tf:.1f}** | **{ti:.1f}** | **{ti / tf:.2f}** |")
    steps = ", ".join(f"{k} {v:.1f}" for k, v in inc.items() if k not in STAGES)
    return "\n".join(rows) + f"\n\nincremental sub-steps (CPU s): {steps}"


def bench_find(w: Path, n: int) -> dict:
    """``linkage find`` against the full run: ``n`` records of the final snapshot's libra
    extract under new ids, cold then warm, then one record alone, warm."""
    with (w / "final" / "libra.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:: max(1, 1000)][:n]
    for i, r in enumerate(rows):
        r["libra_case_id"] = f"LOOKUP{i + 1}"
    with (w / "lookup.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    said: list[str] = []
    find_cold = linkage("find", str(w / "full_run"), "--record", str(w / "lookup.csv"), "--source", "libra")
    find_warm = linkage("find", str(w / "full_run"), "--record", str(w / "lookup.csv"), "--source", "libra",
                        stderr=said)
    inside = [ln for ln in said[0].splitlines() if "records in" in ln]
    # One record alone, warm (the lookup index built by the calls above): the court's question.
    with (w / "lookup1.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, list(rows[0]))
        wr.writeheader()
        wr.writerow(rows[0])
    said1: list[str] = []
    find_one = linkage("find", str(w / "full_run"), "--record", str(w / "lookup1.csv"), "--source", "libra",
                       stderr=said1)
    inside1 = [ln for ln in said1[0].splitlines() if "records in" in ln]
    return {"records": len(rows), "cold_seconds": round(find_cold, 2), "warm_seconds": round(find_warm, 2),
            "warm_seconds_per_record": round(find_warm / len(rows), 3),
            "inside_the_process": inside[-1] if inside else None,
            "one_record_warm_seconds": round(find_one, 2),
            "one_record_inside_the_process": inside1[-1] if inside1 else None}


if __name__ == "__main__":
    main()
