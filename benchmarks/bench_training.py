"""Time the job's training steps alone, on a finished run's standardised records.

    python benchmarks/bench_training.py RUN_DIR [--config configs/justice.yaml]
        [--threads N] [--set training.u_max_pairs=1e6 ...] [--compare MODEL.json]

Loads ``RUN_DIR/restricted/standardised.parquet`` into a fresh in-memory DuckDB, numbers
the records as the job does, builds the Splink settings from the config and runs
``linkage.model.train`` with the job's step timer. Prints each step's wall time and the
process's CPU time (user + system, every thread): on a shared machine the CPU seconds are
the steadier figure. ``--set`` overrides ``model.training`` options (repeatable).
``--compare`` lists, level by level, how far this training's match weights are from a
saved model's (for checking that sampling changed little).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "justice.yaml")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Override a model.training option, e.g. u_max_pairs=1e6.")
    parser.add_argument("--compare", type=Path, default=None, help="A saved model.json to compare weights with.")
    parser.add_argument("--save", type=Path, default=None, help="Write the trained model here.")
    args = parser.parse_args(argv)

    import duckdb

    from linkage import model
    from linkage.config import load_config

    raw = yaml.safe_load(args.config.read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        raw["model"]["training"][key] = yaml.safe_load(value)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_training_{os.getpid()}.yaml"
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        loaded = load_config(tmp)
    finally:
        tmp.unlink()
    cfg = loaded.config

    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads or os.cpu_count()}")
    con.execute("SET enable_progress_bar = false")
    std = args.run_dir / "restricted" / "standardised.parquet"
    con.execute(
        f"CREATE TABLE nodes AS SELECT row_number() OVER (ORDER BY source_dataset, record_id) AS node_id, * "
        f"FROM read_parquet('{std}')"
    )
    t = cfg.model.training
    model.add_key_caps(con, "nodes", [*cfg.model.blocking_rules, *t.em_blocking_rules, *(t.prior.deterministic_rules or [])])
    source_counts = dict(con.execute("SELECT source_dataset, count(*) FROM nodes GROUP BY ALL").fetchall())
    db_api = model.make_db_api(con)
    linker = model.make_linker(db_api.register("nodes", dataset_display_name="records"),
                               model.build_settings(cfg, "duckdb"))

    timings: list[tuple[str, float, float]] = []

    @contextmanager
    def step(name: str):
        w, c = time.perf_counter(), time.process_time()
        yield
        timings.append((name, time.perf_counter() - w, time.process_time() - c))

    w0, c0 = time.perf_counter(), time.process_time()
    model.train(linker, cfg, step, source_counts)
    total = (time.perf_counter() - w0, time.process_time() - c0)
    records = sum(source_counts.values())
    print(f"{records:,} records; training options: {json.dumps(raw['model']['training'], default=str)}")
    print(f"{'step':<70} {'wall s':>8} {'cpu s':>8}")
    for name, w, c in timings:
        print(f"{name:<70} {w:8.1f} {c:8.1f}")
    print(f"{'train (total)':<70} {total[0]:8.1f} {total[1]:8.1f}")
    if args.save:
        model.save_model(linker, args.save)
    if args.compare:
        compare(model.model_parameters(linker), json.loads(args.compare.read_text()))
    con.close()
    return 0


def compare(params: list[dict], saved: dict) -> None:
    """Differences in match weight, level by level, against a saved model."""
    theirs = {}
    for comp in saved["comparisons"]:
        for level in comp["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            theirs[(comp["output_column_name"], level.get("label_for_charts"))] = (
                math.log2(m / u) if m and u else None)
    print(f"\n{'comparison / level':<60} {'weight':>8} {'saved':>8} {'diff':>7}")
    worst = 0.0
    for p in params:
        key = (p["comparison"], p["level"])
        other = theirs.get(key)
        mine = p["match_weight"]
        diff = None if mine is None or other is None else mine - other
        if diff is not None:
            worst = max(worst, abs(diff))
        print(f"{(key[0] + ' / ' + str(key[1]))[:60]:<60} {_f(mine):>8} {_f(other):>8} {_f(diff):>7}")
    print(f"largest difference: {worst:.2f} bits")


def _f(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    sys.exit(main())
