"""Time the whole linkage job at given sizes, against plain Splink running the same model.

    python benchmarks/bench_job.py --records 1000000 [--records 100000 ...] [--workdir DIR]
        [--config configs/justice.yaml] [--model MODEL.json] [--memory-limit 2GiB]
        [--evaluate] [--no-plain] [--no-count] [--plain-node-ids]

For each size N: generate N / 3.84 people with ``linkage synth`` (reused when the folder
already holds that population), run the configured job with training, then again with
the model it saved (``--model RUN/restricted/model.json``), then the plain-Splink
reference (``benchmarks/plain_splink.py``: the same model's predict and connected
components on the run's already standardised records, in a fresh process). With
``--model`` the training run is skipped and that model is used for every size.

Every run is a separate process, measured from outside: wall time, CPU seconds (user and
system, the kernel's rusage of the child and what it waited for), and peak resident memory
of the process and its children (psutil polling of the process tree, and the kernel's
ru_maxrss for the child). The ratio to plain Splink is given in wall time and in CPU
seconds; on a shared machine read the CPU one. Stage times come from the run's manifest.json.
Comparisons: the distinct pairs the blocking rules generate (Splink's exact count, run
after the timed reference) and the sum over rules before overlap (the job's guard).

The runs' pseudonymisation key is ``LINKAGE_BENCH_KEY``, else the work folder's own
(``.bench_key``, owner-only, made on first use): a later incremental run on a benchmark's
run needs the key it was made with.

Prints a table and writes benchmarks/results/bench_job-<time>.json and .md (and
latest.json / latest.md) for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RECORDS_PER_PERSON = 3.84
# The pseudonymisation key of the work folder's runs: LINKAGE_BENCH_KEY, else the folder's
# own (``.bench_key``, owner-only, made on first use), so that a later run can build on one of
# them (an incremental run, a find, two runs' outputs compared row by row) with the same key.
KEY_FILE = ".bench_key"


def bench_key(work: Path) -> str:
    if os.environ.get("LINKAGE_BENCH_KEY"):
        return os.environ["LINKAGE_BENCH_KEY"]
    path = work / KEY_FILE
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(__import__("secrets").token_hex(32))
    return path.read_text().strip()
# Top-level stages of linkage/job.py, in order (sub-steps of "train" are in the JSON).
STAGES = ("read", "standardise", "blocking guard", "prior", "train", "predict", "cluster", "person ids",
          "write restricted", "de-identify", "audit", "report")
GIB = 2**30


@dataclass
class Measured:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    log: str
    # user + system CPU of the process and the children it waited for (the kernel's rusage):
    # on a shared machine it moves far less with the load than wall time.
    cpu_seconds: float = 0.0


@dataclass
class Row:
    records_target: int
    people: int
    mode: str  # "train", "saved model" or "plain splink"
    records: int = 0
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    # CPU seconds per stage (every thread of the job's process): steadier than wall time on a shared machine.
    stages_cpu: dict[str, float] = field(default_factory=dict)
    comparisons_by_rule: int | None = None
    comparisons: int | None = None
    pairs_kept: int | None = None
    people_found: int | None = None
    cpu_seconds: float = 0.0
    ratio_to_plain: float | None = None
    cpu_ratio_to_plain: float | None = None
    evaluation: dict | None = None
    run_dir: str | None = None


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd``; wall time and peak RSS of its process tree, polled and from the kernel."""
    full_env = {**os.environ, **(env or {})}
    with log.open("w") as out:
        start = time.perf_counter()
        # Run from the log folder: a "-c" child puts its working directory first on sys.path.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=log.parent)
        peak = 0
        stop = threading.Event()

        def poll() -> None:
            nonlocal peak
            try:
                root = psutil.Process(proc.pid)
            except psutil.Error:
                return
            while not stop.is_set():
                total = 0
                try:
                    for p in [root, *root.children(recursive=True)]:
                        try:
                            total += p.memory_info().rss
                        except psutil.Error:
                            pass
                except psutil.Error:
                    break
                peak = max(peak, total)
                stop.wait(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        stop.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss: kilobytes on Linux, of the largest single process among the child's tree.
    return Measured(round(seconds, 2), max(peak, usage.ru_maxrss * 1024), proc.returncode, str(log),
                    round(usage.ru_utime + usage.ru_stime, 2))


def linkage_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from linkage.cli import main; main()", *args]


def synthesise(people: int, seed: int, data: Path, log: Path) -> float | None:
    """Generate the population unless ``data`` already holds it; seconds taken, or None if reused."""
    stamp = data / ".bench_population.json"
    want = {"people": people, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == want and (data / "truth.csv").is_file():
        return None
    m = run_measured(linkage_cmd("synth", "--people", str(people), "--seed", str(seed), "--out", str(data)), log)
    if m.returncode != 0:
        raise SystemExit(f"linkage synth failed (exit {m.returncode}): see {log}")
    stamp.write_text(json.dumps(want))
    return m.seconds


def job_config(config: Path, memory_limit: str | None, out: Path) -> Path:
    """The config as given, or a copy with engine.memory_limit set (paths resolved by --data)."""
    if not memory_limit:
        return config
    raw = yaml.safe_load(config.read_text())
    raw.setdefault("engine", {})["memory_limit"] = memory_limit
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def run_job(config: Path, data: Path, run_dir: Path, log: Path, model: Path | None, row: Row, key: str) -> Row:
    args = ["run", str(config), "--data", str(data), "--out", str(run_dir)]
    if model is not None:
        args += ["--model", str(model)]
    m = run_measured(linkage_cmd(*args), log, {"LINKAGE_PSEUDONYM_KEY": key})
    if m.returncode != 0:
        tail = "\n".join(Path(log).read_text().splitlines()[-15:])
        raise SystemExit(f"linkage run failed (exit {m.returncode}); last lines of {log}:\n{tail}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    row.seconds, row.peak_rss_bytes, row.cpu_seconds = m.seconds, m.peak_rss_bytes, m.cpu_seconds
    row.stages = manifest["stage_seconds"]
    row.stages_cpu = manifest.get("stage_cpu_seconds") or {}
    row.records = sum(r["in_crosswalk"] for r in manifest["rows"].values())
    row.comparisons_by_rule = sum(int(b["comparisons"]) for b in manifest["blocking"])
    row.pairs_kept = manifest["comparisons_scored_kept"]
    row.people_found = manifest["clusters"]["clusters"]
    row.run_dir = str(run_dir)
    return row


def run_plain(run_dir: Path, workdir: Path, log: Path, memory_limit: str | None, count: bool, row: Row,
              node_ids: bool = False) -> Row:
    """The reference, timed as a whole process like the job; then (untimed) the exact comparison count."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_splink.py"), str(run_dir), "--workdir", str(workdir)]
    if memory_limit:
        cmd += ["--memory-limit", memory_limit]
    if node_ids:
        cmd.append("--node-ids")
    m = run_measured(cmd, log)
    if m.returncode != 0:
        raise SystemExit(f"plain Splink reference failed (exit {m.returncode}): see {log}")
    out = json.loads(Path(log).read_text().strip().splitlines()[-1])
    row.seconds, row.peak_rss_bytes, row.cpu_seconds = m.seconds, m.peak_rss_bytes, m.cpu_seconds
    row.stages = out["seconds"]
    row.records = out["records"]
    row.pairs_kept = out["pairs_kept"]
    row.people_found = out["clusters"]
    if count:
        count_log = log.with_name(log.stem + "-count.log")
        c = run_measured([*cmd, "--count-only"], count_log)
        if c.returncode != 0:
            raise SystemExit(f"comparison count failed (exit {c.returncode}): see {count_log}")
        row.comparisons = json.loads(count_log.read_text().strip().splitlines()[-1])["comparisons"]
    return row


def evaluate(run_dir: Path, truth: Path, log: Path) -> dict:
    m = run_measured(linkage_cmd("evaluate", str(run_dir), "--truth", str(truth)), log)
    if m.returncode != 0:
        raise SystemExit(f"linkage evaluate failed: see {log}")
    ev = json.loads((run_dir / "evaluation.json").read_text())
    return {"pairwise_f1": ev["pairwise"]["f1"], "cluster_f1": ev["cluster"]["f1"], "seconds": m.seconds}


def default_memory_limit(config: Path, override: str | None) -> str:
    """The job's DuckDB memory limit, given to the plain reference too (job.py's default: 60%)."""
    if override:
        return override
    limit = (yaml.safe_load(config.read_text()).get("engine") or {}).get("memory_limit")
    return limit or f"{int(psutil.virtual_memory().total * 0.6 / 2**20)}MiB"


# --- output -----------------------------------------------------------------------------------


def _fmt_s(v: float | None) -> str:
    return "" if v is None else f"{v:,.1f}"


def markdown(rows: list[Row], meta: dict) -> str:
    lines = [
        f"Benchmark of the whole job ({meta['config']}), {meta['created_utc']}: {meta['machine']}; "
        f"splink {meta['splink']}, duckdb {meta['duckdb']}; memory limit {meta['memory_limit']}.",
        "",
        "| records | run | total s | " + " | ".join(STAGES) + " | comparisons | by rule | comparisons/s (predict) "
        "| pairs kept | people | peak RSS GiB | CPU s | × plain Splink | × plain Splink (CPU) |",
        "|" + "---|" * (len(STAGES) + 12),
    ]
    for r in rows:
        per_s = None
        predict = r.stages.get("predict")
        comps = r.comparisons
        if comps and predict:
            per_s = comps / predict
        cells = [
            f"{r.records:,}", r.mode, _fmt_s(r.seconds),
            *(_fmt_s(r.stages.get(s)) for s in STAGES),
            "" if comps is None else f"{comps:,}",
            "" if r.comparisons_by_rule is None else f"{r.comparisons_by_rule:,}",
            "" if per_s is None else f"{per_s / 1e6:,.2f} M",
            "" if r.pairs_kept is None else f"{r.pairs_kept:,}",
            "" if r.people_found is None else f"{r.people_found:,}",
            f"{r.peak_rss_bytes / GIB:.2f}",
            f"{r.cpu_seconds:,.0f}",
            "" if r.ratio_to_plain is None else f"{r.ratio_to_plain:.2f}",
            "" if r.cpu_ratio_to_plain is None else f"{r.cpu_ratio_to_plain:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "total s: wall time of the process, start-up included (job: read CSV to published run and report; "
        "plain Splink: load the standardised Parquet, predict, connected components). Stage columns from "
        "manifest.json (plain Splink: its predict and cluster). comparisons: distinct pairs the "
        "blocking rules generate (Splink's exact count); by rule: the sum over rules before overlap "
        "(the job's guard). peak RSS: the process tree, measured from outside. CPU s: user and system "
        "seconds of the process and its children; the CPU ratio is the one to read on a shared machine.",
    ]
    evals = [r for r in rows if r.evaluation]
    if evals:
        lines += ["", "| records | run | pairwise F1 | B-cubed F1 |", "|---|---|---|---|"]
        lines += [f"| {r.records:,} | {r.mode} | {r.evaluation['pairwise_f1']:.4f} | {r.evaluation['cluster_f1']:.4f} |"
                  for r in evals]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append", help="Records to generate (repeatable; default 100,000).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/linkage-bench"),
                        help="Where data and runs go (default /tmp/linkage-bench); data is reused across runs.")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "justice.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None,
                        help="A saved model: skip the training run and use it for every size.")
    parser.add_argument("--memory-limit", default=None,
                        help="Run with engine.memory_limit set to this (a copy of the config), e.g. 2GiB.")
    parser.add_argument("--evaluate", action="store_true", help="Score each run against the truth too.")
    parser.add_argument("--no-plain", action="store_true", help="Skip the plain-Splink reference.")
    parser.add_argument("--no-count", action="store_true", help="Skip the exact comparison count.")
    parser.add_argument("--plain-node-ids", action="store_true",
                        help="Also time plain Splink running the model over numbered records, as the job does.")
    args = parser.parse_args(argv)

    sizes = args.records or [100_000]
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    key = bench_key(work)
    config = job_config(args.config.resolve(), args.memory_limit, work / "bench_config.yaml")
    memory_limit = default_memory_limit(config, args.memory_limit)
    RESULTS.mkdir(parents=True, exist_ok=True)
    import duckdb
    import splink

    meta = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": str(args.config),
        "memory_limit": memory_limit,
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / GIB:.0f} GiB, {platform.platform()}",
        "splink": splink.__version__,
        "duckdb": duckdb.__version__,
        "seed": args.seed,
        "synth_seconds": {},
    }
    rows: list[Row] = []
    for n in sizes:
        people = max(1, round(n / RECORDS_PER_PERSON))
        tag = f"{n:_}"
        data = work / f"data-{people}-seed{args.seed}"
        data.mkdir(parents=True, exist_ok=True)
        print(f"== {n:,} records ({people:,} people)", flush=True)
        synth_s = synthesise(people, args.seed, data, work / f"synth-{tag}.log")
        meta["synth_seconds"][str(n)] = synth_s
        print(f"   synth: {'reused' if synth_s is None else f'{synth_s:.0f} s'}", flush=True)

        model = args.model.resolve() if args.model else None
        if model is None:
            trained = run_job(config, data, work / f"run-{tag}-train", work / f"run-{tag}-train.log", None,
                              Row(n, people, "train"), key)
            rows.append(trained)
            print(f"   job with training: {trained.seconds:.0f} s, {trained.peak_rss_bytes / GIB:.2f} GiB", flush=True)
            model = Path(trained.run_dir) / "restricted" / "model.json"
        saved = run_job(config, data, work / f"run-{tag}-saved", work / f"run-{tag}-saved.log", model,
                        Row(n, people, "saved model"), key)
        rows.append(saved)
        print(f"   job with saved model: {saved.seconds:.0f} s, {saved.peak_rss_bytes / GIB:.2f} GiB", flush=True)
        if args.evaluate:
            for r in rows[-2:] if args.model is None else rows[-1:]:
                r.evaluation = evaluate(Path(r.run_dir), data / "truth.csv", work / f"evaluate-{tag}-{r.mode[:5]}.log")

        if not args.no_plain:
            plain = run_plain(Path(saved.run_dir), work, work / f"plain-{tag}.log", memory_limit, not args.no_count,
                              Row(n, people, "plain splink"))
            rows.append(plain)
            print(f"   plain Splink: {plain.seconds:.0f} s, {plain.peak_rss_bytes / GIB:.2f} GiB", flush=True)
            if args.plain_node_ids:
                numbered = run_plain(Path(saved.run_dir), work, work / f"plain-nodeids-{tag}.log", memory_limit,
                                     False, Row(n, people, "plain splink, node ids"), node_ids=True)
                numbered.comparisons = plain.comparisons
                rows.append(numbered)
                print(f"   plain Splink, node ids: {numbered.seconds:.0f} s", flush=True)
            for r in rows:
                if r.records_target == n and not r.mode.startswith("plain splink"):
                    r.ratio_to_plain = round(r.seconds / plain.seconds, 3)
                    r.cpu_ratio_to_plain = round(r.cpu_seconds / plain.cpu_seconds, 3) if plain.cpu_seconds else None
                    r.comparisons = plain.comparisons
        # Write as we go: a 10M run that fails later still leaves the smaller sizes.
        write_results(rows, meta)
    print()
    print(markdown(rows, meta))
    return 0


def write_results(rows: list[Row], meta: dict) -> None:
    stamp = meta["created_utc"].replace(":", "").replace("+0000", "Z")
    data = {"meta": meta, "rows": [asdict(r) for r in rows]}
    md = markdown(rows, meta)
    for name in (f"bench_job-{stamp}", "latest"):
        (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(md)


if __name__ == "__main__":
    sys.exit(main())
