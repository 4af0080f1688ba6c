"""The plain-Splink reference: the same model, predict and connected components only.

    python benchmarks/plain_splink.py RUN_DIR [--threshold P] [--workdir DIR]
        [--memory-limit 14GiB] [--node-ids] [--count-only]

Reads a finished run's ``restricted/standardised.parquet`` (already standardised, so no
reading, cleaning or de-identification) and ``restricted/model.json``, splits the records
by source as the job does, and times what someone using Splink directly would run:
``predict`` (keeping pairs at the job's floor, ``min(0.01, threshold / 10)``) and
``cluster_pairwise_predictions_at_threshold``. Meant to run in a fresh process (bench_job.py
starts it), so that nothing is cached from the job. Prints one JSON object on stdout.

``--node-ids`` runs the model as the job does (one table, records numbered, dedupe_only over
the number: linkage.model.RUN_IDS) instead of as saved (link_and_dedupe over five tables
keyed by source_dataset and record_id): the same pairs and scores, faster in Splink.

``--count-only`` skips predict and clustering and counts instead the distinct pairs the
blocking rules generate (Splink's count over every record: exact, not sampled).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import duckdb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--threshold", type=float, default=None,
                        help="Link threshold (default: the run manifest's).")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="Folder for DuckDB's spill files (default: RUN_DIR/..).")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit (default: DuckDB's).")
    parser.add_argument("--node-ids", action="store_true")
    parser.add_argument("--count-only", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from splink import DuckDBAPI, Linker
    from splink.clustering import cluster_pairwise_predictions_at_threshold  # noqa: F401

    restricted = args.run_dir / "restricted"
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    threshold = args.threshold or manifest["model"]["threshold_match_probability"]
    settings = json.loads((restricted / "model.json").read_text())

    workdir = args.workdir or args.run_dir.parent
    workdir.mkdir(parents=True, exist_ok=True)
    # In memory, as DuckDBAPI() makes it and as the job runs; spilling to disk beyond the limit.
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{workdir / 'plain_splink_spill'}'")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    con.execute("SET enable_progress_bar = false")
    timings: dict[str, float] = {"import": round(time.perf_counter() - started, 3)}

    t = time.perf_counter()
    con.execute(f"CREATE TABLE records AS SELECT * FROM read_parquet('{restricted / 'standardised.parquet'}')")
    sources = [r[0] for r in con.execute("SELECT DISTINCT source_dataset FROM records ORDER BY 1").fetchall()]
    n_records = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    db_api = DuckDBAPI(connection=con)
    if args.node_ids:
        # Named uid here: Splink's clustering has a node_id column of its own.
        con.execute("CREATE TABLE nodes AS SELECT row_number() OVER (ORDER BY source_dataset, record_id) AS uid, "
                    "* FROM records")
        settings.pop("source_dataset_column_name", None)
        settings.update(link_type="dedupe_only", unique_id_column_name="uid")
        sdfs = [db_api.register("nodes", dataset_display_name="records")]
    else:
        for s in sources:
            con.execute(f"CREATE TABLE \"std_{s}\" AS SELECT * FROM records WHERE source_dataset = '{s}'")
        sdfs = [db_api.register(f"std_{s}", dataset_display_name=s) for s in sources]
    con.execute("DROP TABLE records")
    linker = Linker(sdfs, settings, log_level=logging.ERROR)
    timings["load"] = round(time.perf_counter() - t, 3)

    if args.count_only:
        out = {"records": n_records, "comparisons": count_comparisons(db_api, sources, settings)}
    else:
        t = time.perf_counter()
        floor = min(0.01, threshold / 10)
        predictions = linker.inference.predict(threshold_match_probability=floor)
        kept = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()[0][0]
        timings["predict"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
        n_clusters = con.execute(f"SELECT count(DISTINCT cluster_id) FROM {clusters.physical_name}").fetchall()[0][0]
        timings["cluster"] = round(time.perf_counter() - t, 3)
        timings["total"] = round(time.perf_counter() - started, 3)
        out = {"records": n_records, "pairs_kept": kept, "clusters": n_clusters, "threshold": threshold,
               "seconds": timings}
    con.close()
    print(json.dumps(out))
    return 0


def count_comparisons(db_api, sources: list[str], settings: dict) -> int:
    """Distinct pairs the blocking rules generate over every record (each rule's pairs less earlier rules')."""
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    sdfs = [db_api.register(f"std_{s}", dataset_display_name=f"count_{s}") for s in sources]
    counts = count_comparisons_from_blocking_rules(
        sdfs,
        blocking_rules=settings["blocking_rules_to_generate_predictions"],
        link_type=settings["link_type"],
        unique_id_column_name=settings["unique_id_column_name"],
        source_dataset_column_name=settings.get("source_dataset_column_name", "source_dataset"),
        record_sample_proportion=1.0,
    )
    return int(sum(c["marginal_comparison_count"] for c in counts))


if __name__ == "__main__":
    sys.exit(main())
