"""The second strand end to end: generate, link the justice extracts, link the justice
persons to the department extracts, score the department-to-justice-person link.

    python benchmarks/bench_crossgov.py --people 10000 [--people 100000 ...] [--seed 5]
        [--profile realistic] [--workdir /tmp/bench_crossgov] [--justice-config configs/justice.yaml]
        [--crossgov-config configs/cross_government.yaml]
    python benchmarks/bench_crossgov.py --people 1000000 --data SYNTH_DIR --justice-run JUSTICE_RUN

For each size: ``linkage synth --departments`` (reused when the folder already holds that
population), ``linkage run`` of the justice config, ``linkage crossgov run`` against that
run, and ``linkage crossgov evaluate`` with ``truth.csv`` and ``truth_departments.csv``.
With ``--data`` and ``--justice-run`` (one size): that synthetic folder and that finished
justice run of it are used as they are (generate and justice run skipped; the justice
run's pseudonymisation key must be ``LINKAGE_PSEUDONYM_KEY``; its own figures are shown
when it holds an ``evaluation.json``: ``linkage evaluate`` at 1,000,000 people is slow).
Every step is the real command in its own process, timed from outside. The justice run's
own pairwise and B-cubed figures (``linkage evaluate``) are printed beside, since a
department record can only be as right as the justice person it joins.

The pseudonymisation key is ``LINKAGE_PSEUDONYM_KEY`` if set, else a fresh random one.
Prints a table and writes benchmarks/results/bench_crossgov-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _linkage(*args: str, env: dict[str, str]) -> float:
    started = time.time()
    res = subprocess.run([sys.executable, "-m", "linkage", *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"linkage {' '.join(args)} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return time.time() - started


def bench(people: int, seed: int, work: Path, justice_config: Path, crossgov_config: Path,
          env: dict[str, str], profile: str = "realistic", given: tuple[Path, Path] | None = None) -> dict:
    tag = f"{people}-{seed}" + ("" if profile == "realistic" else f"-{profile}")
    data = work / f"synth-{tag}"
    justice, crossgov = work / f"justice-{tag}", work / f"crossgov-{tag}"
    times: dict[str, float] = {}
    if given:  # the justice run's own figures only if it was evaluated (slow at 1M: run it apart)
        data, justice = given
    else:
        if not (data / "truth_departments.csv").is_file():
            times["synth"] = _linkage("synth", "--people", str(people), "--seed", str(seed), "--out", str(data),
                                      "--profile", profile, "--departments", env=env)
        times["justice run"] = _linkage("run", str(justice_config), "--data", str(data), "--out", str(justice),
                                        env=env)
        _linkage("evaluate", str(justice), "--truth", str(data / "truth.csv"), env=env)
    times["crossgov run"] = _linkage("crossgov", "run", str(crossgov_config), "--justice-run", str(justice),
                                     "--data", str(data), "--out", str(crossgov), env=env)
    _linkage("crossgov", "evaluate", str(crossgov), "--truth", str(data / "truth.csv"),
             "--truth", str(data / "truth_departments.csv"), env=env)
    scores = json.loads((crossgov / "crossgov_evaluation.json").read_text())
    evaluated = justice / "evaluation.json"
    justice_scores = json.loads(evaluated.read_text()) if evaluated.is_file() else None
    manifest = json.loads((crossgov / "manifest.json").read_text())
    return {
        "people": people, "seed": seed, "profile": profile, "seconds": {k: round(v, 1) for k, v in times.items()},
        "crossgov": scores,
        "justice": justice_scores and {"pairwise": justice_scores["pairwise"], "cluster": justice_scores["cluster"]},
        "crossgov_records": {s: r["read"] for s, r in manifest["rows"].items()},
        "crossgov_stage_seconds": manifest["stage_seconds"],
        "invalid_values": manifest["invalid_values"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, action="append", help="justice people (repeatable; default 10000)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--profile", default="realistic", help="the synthetic profile: clean, realistic or hard")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_crossgov"))
    ap.add_argument("--justice-config", type=Path, default=ROOT / "configs" / "justice.yaml")
    ap.add_argument("--crossgov-config", type=Path, default=ROOT / "configs" / "cross_government.yaml")
    ap.add_argument("--data", type=Path, help="an existing synthetic folder (with --justice-run)")
    ap.add_argument("--justice-run", type=Path, help="a finished justice run of --data: link against it")
    args = ap.parse_args()
    if (args.data is None) != (args.justice_run is None) or (args.data and len(args.people or [0]) > 1):
        ap.error("--data and --justice-run go together, with one --people")
    given = (args.data.resolve(), args.justice_run.resolve()) if args.data else None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("LINKAGE_PSEUDONYM_KEY", secrets.token_hex(32))
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = [bench(n, args.seed, args.workdir, args.justice_config, args.crossgov_config, env, args.profile, given)
            for n in args.people or [10000]]
    print(f"{'people':>9} {'source':<16} {'precision':>9} {'recall':>7} {'links':>8} {'due':>8}   justice pairwise P/R")
    for r in rows:
        j = (r["justice"] or {}).get("pairwise") or {"precision": float("nan"), "recall": float("nan")}
        for name, s in [("all", r["crossgov"]["pairwise"]), *r["crossgov"]["by_source"].items(),
                        ("all, end to end", r["crossgov"]["end_to_end"])]:
            print(f"{r['people']:>9,} {name:<16} {s['precision']:>9.4f} {s['recall']:>7.4f} {s['links']:>8,} "
                  f"{s['due']:>8,}   {j['precision']:.4f}/{j['recall']:.4f}")
        print(f"{'':>9} seconds: {', '.join(f'{k} {v}' for k, v in r['seconds'].items())}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_crossgov-latest.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
