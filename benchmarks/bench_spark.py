"""The same job on Spark and on DuckDB with the same saved model: time, memory and whether
the clusters agree.

    python benchmarks/bench_spark.py --records 1000000 [--workdir /tmp/linkage-bench]
        [--config configs/justice.yaml] [--model MODEL.json] [--spark-memory 8GiB]
        [--threads N] [--shuffle-partitions N]

For the size asked: generate the population with ``linkage synth`` (reused when the folder
holds it, as in bench_job.py); without ``--model``, train once on DuckDB
(``run-N-train``) and use its saved model. Then run the job twice with that model and its
prior kept as it is (``model.training.prior.with_saved_model: keep``, so both engines score
with identical parameters): on DuckDB, and on local Spark (``engine: {name: spark}``,
``local[threads]``, the driver given ``--spark-memory``). Each run is its own process,
timed from outside, with the peak resident memory of its process tree (the JVM
included); stage times come from the manifests.

Compared, from the two runs' restricted outputs:
- scored pairs: those only one engine kept, and the largest difference in match weight
  among pairs both kept;
- pairs whose match probability falls on different sides of the threshold (float noise
  at the threshold: listed by count, with the largest weight difference among them);
- clusters: whether the two partitions of the records are equal, and if not, how many
  records sit in a person whose records differ between the engines.

Writes benchmarks/results/bench_spark-<records>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_job as bj  # noqa: E402  (population, measured runs)

ROOT = bj.ROOT


def engine_config(config: Path, out: Path, engine: dict) -> Path:
    """A copy of ``config`` with ``engine`` replaced and the saved model's prior kept."""
    raw = yaml.safe_load(config.read_text())
    raw["engine"] = engine
    raw["model"].setdefault("training", {}).setdefault("prior", {})["with_saved_model"] = "keep"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def compare(duck: Path, spark: Path) -> dict:
    """Pairs and clusters of two runs of the same model (see the module's docstring)."""
    import duckdb

    con = duckdb.connect()
    threshold = json.loads((duck / "manifest.json").read_text())["model"]["threshold_match_probability"]
    pair = ("least(source_dataset_l || '/' || record_id_l, source_dataset_r || '/' || record_id_r) AS a, "
            "greatest(source_dataset_l || '/' || record_id_l, source_dataset_r || '/' || record_id_r) AS b, "
            "match_weight, match_probability")
    for name, run in (("d", duck), ("s", spark)):
        con.execute(f"CREATE TABLE {name} AS SELECT {pair} FROM read_parquet('{run / 'restricted' / 'predictions.parquet'}')")
        con.execute(f"CREATE TABLE {name}x AS SELECT source_dataset || '/' || record_id AS rec, person_id "
                    f"FROM read_parquet('{run / 'restricted' / 'crosswalk.parquet'}')")
    only_d, only_s, both, worst = con.execute(
        "SELECT (SELECT count(*) FROM d ANTI JOIN s USING (a, b)), (SELECT count(*) FROM s ANTI JOIN d USING (a, b)), "
        "(SELECT count(*) FROM d JOIN s USING (a, b)), "
        "(SELECT max(abs(d.match_weight - s.match_weight)) FROM d JOIN s USING (a, b))"
    ).fetchall()[0]
    across, across_worst = con.execute(
        f"SELECT count(*), max(abs(d.match_weight - s.match_weight)) FROM d JOIN s USING (a, b) "
        f"WHERE (d.match_probability >= {threshold}) <> (s.match_probability >= {threshold})"
    ).fetchall()[0]
    # A record's cluster, as the set of its co-members, named by the smallest record in it:
    # equal partitions give every record the same name on both engines.
    for name in ("d", "s"):
        con.execute(f"CREATE TABLE {name}c AS SELECT rec, min(rec) OVER (PARTITION BY person_id) AS first "
                    f"FROM {name}x")
    records, differ = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE dc.first IS DISTINCT FROM sc.first) "
        "FROM dc FULL JOIN sc USING (rec)"
    ).fetchall()[0]
    people = {n: con.execute(f"SELECT count(DISTINCT person_id) FROM {n}x").fetchall()[0][0] for n in ("d", "s")}
    return {
        "pairs_both": both, "pairs_only_duckdb": only_d, "pairs_only_spark": only_s,
        "max_weight_difference": worst, "pairs_across_threshold": across,
        "max_weight_difference_across_threshold": across_worst,
        "records": records, "records_in_differing_clusters": differ,
        "people_duckdb": people["d"], "people_spark": people["s"], "clusters_equal": differ == 0,
    }


def markdown(rows: list[bj.Row], cmp: dict, meta: dict) -> str:
    stages = [s for s in bj.STAGES if any(s in r.stages for r in rows)]
    lines = [
        f"Same saved model on both engines, {meta['records']:,} records; {meta['machine']}; "
        f"Spark local[{meta['threads']}], driver memory {meta['spark_memory']}, "
        f"{meta['shuffle_partitions']} shuffle partitions.",
        "",
        "| engine | wall s | peak GiB | " + " | ".join(stages) + " |",
        "|---|---|---|" + "---|" * len(stages),
    ]
    for r in rows:
        cells = [bj._fmt_s(r.stages.get(s)) for s in stages]
        lines.append(f"| {r.mode} | {r.seconds:,.1f} | {r.peak_rss_bytes / bj.GIB:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Spark / DuckDB wall time: {rows[1].seconds / rows[0].seconds:.2f}x. "
        f"Pairs kept by both: {cmp['pairs_both']:,}; only DuckDB: {cmp['pairs_only_duckdb']:,}; "
        f"only Spark: {cmp['pairs_only_spark']:,}; largest weight difference {cmp['max_weight_difference']}. "
        f"Pairs on different sides of the threshold: {cmp['pairs_across_threshold']:,}. "
        f"Clusters equal: {cmp['clusters_equal']} ({cmp['records_in_differing_clusters']:,} of "
        f"{cmp['records']:,} records in a person that differs; people {cmp['people_duckdb']:,} on DuckDB, "
        f"{cmp['people_spark']:,} on Spark).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/linkage-bench"))
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "justice.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None, help="A saved model (default: train one on DuckDB).")
    parser.add_argument("--spark-memory", default="8GiB", help="The Spark driver's memory (engine.memory_limit).")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shuffle-partitions", type=int, default=None,
                        help="spark.sql.shuffle.partitions (default: 4 per thread).")
    args = parser.parse_args(argv)

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    n = args.records
    people = max(1, round(n / bj.RECORDS_PER_PERSON))
    tag = f"{n:_}"
    data = work / f"data-{people}-seed{args.seed}"
    data.mkdir(parents=True, exist_ok=True)
    synth_s = bj.synthesise(people, args.seed, data, work / f"synth-{tag}.log")
    print(f"== {n:,} records ({people:,} people); synth: {'reused' if synth_s is None else f'{synth_s:.0f} s'}",
          flush=True)
    config = args.config.resolve()
    model = args.model.resolve() if args.model else None
    if model is None:
        trained = bj.run_job(config, data, work / f"run-{tag}-train", work / f"run-{tag}-train.log", None,
                             bj.Row(n, people, "train"))
        model = Path(trained.run_dir or "") / "restricted" / "model.json"
        print(f"   trained on DuckDB: {trained.seconds:.0f} s", flush=True)

    partitions = args.shuffle_partitions or 4 * args.threads
    duck_engine = dict(yaml.safe_load(config.read_text()).get("engine") or {"name": "duckdb"})
    engines = {
        "duckdb": duck_engine,
        "spark": {"name": "spark", "threads": args.threads, "spark_shuffle_partitions": partitions,
                  "memory_limit": args.spark_memory},
    }
    rows = []
    for name, engine in engines.items():
        cfg = engine_config(config, work / f"bench_spark_{name}.yaml", engine)
        row = bj.run_job(cfg, data, work / f"run-{tag}-{name}-saved", work / f"run-{tag}-{name}-saved.log", model,
                         bj.Row(n, people, name))
        rows.append(row)
        print(f"   {name}: {row.seconds:.0f} s, {row.peak_rss_bytes / bj.GIB:.2f} GiB", flush=True)
    cmp = compare(Path(rows[0].run_dir or ""), Path(rows[1].run_dir or ""))
    import psutil

    meta = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "records": rows[0].records, "config": str(args.config), "model": str(model),
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / bj.GIB:.0f} GiB",
        "threads": args.threads, "spark_memory": args.spark_memory, "shuffle_partitions": partitions,
        "load_average_after": os.getloadavg(),
    }
    md = markdown(rows, cmp, meta)
    bj.RESULTS.mkdir(parents=True, exist_ok=True)
    out = bj.RESULTS / f"bench_spark-{n}.json"
    out.write_text(json.dumps({"meta": meta, "comparison": cmp, "rows": [bj.asdict(r) for r in rows]}, indent=2))
    print()
    print(md)
    return 0 if cmp["clusters_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
