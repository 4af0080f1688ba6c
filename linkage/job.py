"""Run a configured linkage job: read, standardise, train or load, predict, cluster,
assign person ids, de-identify, audit, publish.

Everything is written to a staging folder beside the run directory and moved into place
only when every check has passed (write-audit-publish): a failed or killed run never
leaves a half-written run directory where a reader would look.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, replace
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import duckdb

import linkage
from linkage import cluster as clustering
from linkage import decisions as clerical
from linkage import deidentify, engines, identity, model, sources, threshold_ids
from linkage import incremental as increments
from linkage import publish as publishing
from linkage.config import LoadedConfig
from linkage.errors import InputError, LinkageError, TrainingError, UsageError, is_training_fault
from linkage.progress import Stages
from linkage.sources import lit, q
from linkage.standardise.declared import standardise_fields
from linkage.standardise.types.encoded import encodings_manifest

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path | None = None
    out_dir: Path | None = None
    model_path: Path | None = None  # a saved Splink model: skip training
    previous: Path | None = None  # a previous run directory: keep its person ids
    throwaway_key: bool = False  # `linkage demo` only
    keep_work: bool = False  # keep the DuckDB work database (for debugging)
    incremental: bool = False  # only records added or changed since --previous are standardised and scored
    # Person keys to carry over instead of --previous's: (a crosswalk-shaped Parquet file of
    # source_dataset, record_id, person_key; its key fingerprint; its id generation). The
    # cross-government job (linkage.crossgov) gives its justice persons the justice run's keys.
    carry_ids: tuple[Path, str | None, int] | None = None
    manifest_extra: dict[str, Any] | None = None  # added to the manifest as it is (linkage.crossgov)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    manifest: dict[str, Any]


def default_run_dir(loaded: LoadedConfig) -> Path:
    return Path("runs") / loaded.config.job


# --- previous runs ------------------------------------------------------------------------------


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.is_file():
        raise InputError(f"{run_dir}: not a linkage run directory (no {MANIFEST}).")
    return json.loads(path.read_text())


def _previous_ids(opts: RunOptions, loaded: LoadedConfig, key: deidentify.PseudonymKey) -> tuple[Path | None, int]:
    """The crosswalk (or registry) whose person keys to carry over, and the new generation."""
    registry = loaded.config.outputs.id_registry
    if opts.carry_ids is not None:
        path, fingerprint, generation = opts.carry_ids
    elif opts.previous is not None:
        manifest = _read_manifest(opts.previous)
        fingerprint = manifest.get("pseudonym_key_fingerprint")
        path, generation = opts.previous / "restricted" / "crosswalk.parquet", manifest.get("id_generation", 1)
    elif registry:
        path = _registry_path(loaded)
        meta = path.with_suffix(".json")
        if not path.is_file():
            return None, 1
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        fingerprint, generation = info.get("pseudonym_key_fingerprint"), info.get("id_generation", 1)
    else:
        return None, 1
    if not key.matches_fingerprint(fingerprint):
        raise LinkageError(
            f"the previous person ids ({path}) were made with a different pseudonymisation key "
            f"(fingerprint {fingerprint}, this run's {key.fingerprint}): ids would not carry over. "
            f"Run with the same key, or drop --previous / outputs.id_registry to start a new release."
        )
    return path, int(generation) + 1


def _registry_path(loaded: LoadedConfig) -> Path:
    p = Path(loaded.config.outputs.id_registry or "").expanduser()
    return p if p.is_absolute() else loaded.path.parent / p


def _update_registry(loaded: LoadedConfig, run_dir: Path, manifest: dict[str, Any]) -> None:
    path = _registry_path(loaded)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    con = duckdb.connect()
    con.execute(
        # person_key and the keys at other thresholds (person_key_0_99...), which carry over alike
        f"COPY (SELECT source_dataset, record_id, COLUMNS(lambda c: c = 'person_key' OR starts_with(c, 'person_key_')) FROM read_parquet("
        f"{lit(str(run_dir / 'restricted' / 'crosswalk.parquet'))})) TO {lit(str(tmp))} (FORMAT parquet)"
    )
    con.close()
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "pseudonym_key_fingerprint": manifest["pseudonym_key_fingerprint"],
                "id_generation": manifest["id_generation"],
                "run_dir": str(run_dir),
            },
            indent=2,
        )
    )


# --- the job -----------------------------------------------------------------------------


def _work_database(cfg, keep: bool) -> str:
    """``file`` when configured or kept for debugging (``--keep-work``), else ``memory``."""
    return "file" if keep or cfg.engine.database == "file" else "memory"


def _connect(loaded: LoadedConfig, work: Path, keep: bool = False) -> duckdb.DuckDBPyConnection:
    """The job's DuckDB: in memory, spilling to the temp directory beyond memory_limit, or
    with ``engine.database: file`` a file in the work folder.

    In-memory tables spill like a file database's but are not compressed and written out
    as they are made: the job ran about 1.3 times as fast at a million records. ``keep``
    (for debugging) makes it a file too, kept after the run.
    """
    eng = loaded.config.engine
    con = duckdb.connect(str(work / "linkage.duckdb") if _work_database(loaded.config, keep) == "file" else ":memory:")
    engines.configure_duckdb(con, eng, work)
    return con


def run_job(loaded: LoadedConfig, opts: RunOptions, stages: Stages | None = None) -> RunResult:
    stages = stages or Stages()
    cfg = loaded.config
    run_dir = (opts.out_dir or default_run_dir(loaded)).resolve()
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"--out {run_dir}: cannot create the folder {run_dir.parent} ({exc.strerror}). "
            f"Give an --out folder you can write to."
        ) from None
    user_umask = publishing.current_umask()
    # One writer per run directory; everything written owner-only until publish sets modes.
    with publishing.lock_run_dir(run_dir), publishing.private_umask():
        for line in publishing.recover(run_dir):
            stages.note(line)
        publishing.check_out_dir(run_dir)
        key = deidentify.resolve_key(cfg.outputs.key_file, loaded.path.parent, throwaway=opts.throwaway_key)
        if opts.throwaway_key:
            stages.note("using a throwaway pseudonymisation key: person ids from this run join nothing else")
        if opts.previous is not None:
            previous_manifest = publishing.read_run_manifest(opts.previous)  # a run, not (say) a synth folder
        if opts.incremental:
            if opts.previous is None:
                raise UsageError("--incremental needs --previous RUN_DIR: the run to build on")
            if cfg.engine.name != "duckdb":
                raise UsageError(f"--incremental runs on the duckdb engine only (the config says engine: {cfg.engine.name})")
            increments.check_previous(opts.previous, previous_manifest, loaded.hash)
            if opts.model_path is None:  # the previous run's model, prior and all
                opts = replace(opts, model_path=opts.previous / "restricted" / "model.json")
        previous_path, generation = _previous_ids(opts, loaded, key)
        saved_model = model.load_model_settings(opts.model_path, cfg) if opts.model_path else None

        staging = publishing.staging_dir(run_dir)
        shutil.rmtree(staging, ignore_errors=True)
        started = time.time()
        try:
            # Within the try: a Ctrl-C as the folders are made leaves none of them behind.
            for sub in ("analyst", "restricted", "work"):
                (staging / sub).mkdir(parents=True)
            # Clerical decisions travel with the runs: the previous run's store and --out's.
            stores = [p / clerical.STORE_DIR / clerical.STORE for p in (opts.previous, run_dir) if p is not None]
            manifest = _run(loaded, opts, stages, key, previous_path, generation, saved_model, staging, stores)
            manifest.update(opts.manifest_extra or {})
            manifest["stage_seconds"] = stages.timings
            manifest["stage_cpu_seconds"] = stages.cpu_timings
            manifest["total_seconds"] = round(time.time() - started, 3)
            manifest["peak_rss_bytes"] = stages.peak_rss
            manifest["peak_rss_bytes_after_stage"] = stages.peak_rss_after
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
            with stages.stage("report"):
                from linkage.report import write_report

                write_report(staging)
            if not opts.keep_work:
                shutil.rmtree(staging / "work", ignore_errors=True)
            # What the previous run at --out holds and this run did not make (review files,
            # decisions, evaluation) comes along: people's work is never deleted.
            manifest["kept_from_previous_run"] = publishing.carry_over(run_dir, staging)
            # The report's own time, for benchmarks (the report shows the stages before it).
            manifest["stage_seconds"] = stages.timings
            manifest["stage_cpu_seconds"] = stages.cpu_timings
            manifest["peak_rss_bytes"] = stages.peak_rss
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
            publishing.finalise_modes(staging, user_umask)
            publishing.publish(staging, run_dir)
        except BaseException as exc:
            publishing.remove_leftover(staging)
            if isinstance(exc, Exception) and is_training_fault(exc, stages.failed_in):
                raise TrainingError(exc, stages.failed_in) from exc
            raise
        if manifest["kept_from_previous_run"]:
            stages.note("kept from the previous run: " + ", ".join(manifest["kept_from_previous_run"]))
        if cfg.outputs.id_registry:
            _update_registry(loaded, run_dir, manifest)
            registry = _registry_path(loaded)
            for path in (registry, registry.with_suffix(".json")):
                publishing.restrict_tree(path)
    return RunResult(run_dir, manifest)


@dataclass
class _Job:
    """What the stages of one run share: the config and options, the console, the key, the
    job's database and the staging folder. Each stage takes it and what earlier stages
    returned, and returns what later ones need; ``changes`` (None in a full run) tells a
    stage which records are new, so an incremental run is the same stages, each doing
    only the work the changed records make."""

    loaded: LoadedConfig
    opts: RunOptions
    stages: Stages
    key: deidentify.PseudonymKey
    con: duckdb.DuckDBPyConnection
    staging: Path
    warnings: list[str] = dataclass_field(default_factory=list)
    # The columns max_records_per_key rules join on (model.add_key_caps), in ``nodes`` only.
    key_caps: dict[str, model.KeyCap] = dataclass_field(default_factory=dict)

    @property
    def cfg(self) -> Any:
        return self.loaded.config

    @property
    def restricted(self) -> Path:
        return self.staging / "restricted"

    @property
    def duplicate_free(self) -> list[str]:
        return [n for n, src in self.cfg.sources.items() if src.duplicate_free]

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        self.stages.note("warning: " + text)


def _run(
    loaded: LoadedConfig,
    opts: RunOptions,
    stages: Stages,
    key: deidentify.PseudonymKey,
    previous_path: Path | None,
    generation: int,
    saved_model: dict | None,
    staging: Path,
    decision_stores: Sequence[Path] = (),
) -> dict[str, Any]:
    """Read, standardise, guard, train or load, predict, cluster, person ids, write,
    de-identify, audit: the manifest."""
    con = _connect(loaded, staging / "work", keep=opts.keep_work)
    job = _Job(loaded, opts, stages, key, con, staging)
    try:
        reads, changes = _read_stage(job)
        invalid, source_counts = _standardise_stage(job, changes)
        # Guard and clustering run on DuckDB; Splink's training and scoring on the engine.
        db_api = model.make_db_api(con)
        counts = _guard_stage(job, db_api, changes)
        engine = engines.make_engine(job.cfg.engine, con, staging / "work", db_api)
        try:
            linker, prior = _model_stage(job, engine, saved_model, invalid, source_counts)
            scored, pair_counts = _predict_stage(job, engine, linker, db_api, changes)
        finally:
            engine.close()
        cstats, decided = _cluster_stage(job, db_api, decision_stores, changes, pair_counts)
        istats, removed_rows = _person_ids_stage(job, db_api, previous_path, generation, changes)
        _write_restricted_stage(job)
        analyst_rows = _deidentify_stage(job)
        with stages.stage("audit"):
            accounting = _account(con, job.cfg, reads)
        return _manifest(job, reads, invalid, counts, saved_model, linker, prior, scored, cstats, decided,
                         decision_stores, changes, pair_counts, removed_rows, istats, generation, previous_path,
                         accounting, analyst_rows)
    finally:
        con.close()


def _read_stage(job: _Job) -> tuple[dict[str, sources.SourceRead], increments.Changes | None]:
    """Every source read and mapped; with --incremental, the records added, changed or
    removed since the previous run (only the new ones are standardised after)."""
    cfg, opts = job.cfg, job.opts
    with job.stages.stage("read"):
        reads = sources.read_sources(job.con, job.loaded, opts.data_dir)
        for r in reads.values():
            job.stages.note(f"{r.name}: {r.rows_read:,} rows, {r.rows_rejected:,} rejected")
        increments.hash_records(job.con, list(cfg.sources))
        changes = None
        if opts.incremental:
            assert opts.previous is not None  # --incremental needs --previous (run_job checks it)
            changes = increments.find_changes(job.con, list(cfg.sources), opts.previous)
            job.stages.note(changes.summary())
    return reads, changes


def _standardise_stage(
    job: _Job, changes: increments.Changes | None
) -> tuple[dict[str, dict[str, dict[str, int]]], dict[str, int]]:
    """``nodes``: the standardised records, numbered (an incremental run standardises the
    new ones and takes the others as the previous run left them). Returns the invalid
    values counted and the records per source."""
    con, cfg = job.con, job.cfg
    with job.stages.stage("standardise"):
        leftovers: list[str] = []
        std_views = _standardise(con, cfg, leftovers)
        con.execute("CREATE OR REPLACE VIEW records AS " + " UNION ALL ".join(f"SELECT * FROM {t}" for t in std_views))
        con.execute(
            "CREATE OR REPLACE VIEW invalid_values AS "
            + " UNION ALL ".join(f"SELECT * FROM {t}_invalid" for t in std_views)
        )
        # Each distinct raw value once, for the leakage check.
        con.execute(
            "CREATE OR REPLACE VIEW raw_values AS "
            + " UNION ALL ".join(f"SELECT * FROM {t}_raw_values" for t in std_views)
        )
        invalid = _invalid_counts(con, cfg)
        for w in _emptied_field_warnings(con, cfg, invalid):
            job.warn(w)
        if changes is not None and job.opts.previous is not None:  # unchanged records as the previous run left them
            # Numbered once; from here on ``nodes`` holds them (one copy in memory).
            increments.add_unchanged(con, job.opts.previous)
        else:
            _number_records(con, cfg)
        t = cfg.model.training
        # Kept in standardised.parquet: the saved model's capped rules join on them.
        job.key_caps = model.add_key_caps(
            con, "nodes", [*cfg.model.blocking_rules, *t.em_blocking_rules, *(t.prior.deterministic_rules or [])])
        con.execute("CREATE OR REPLACE VIEW records AS SELECT * EXCLUDE (node_id) FROM nodes")
        for v in std_views:
            con.execute(f"DROP VIEW {v}")
        for name in leftovers:  # the standardising's views first, then its tables
            con.execute(f"DROP VIEW IF EXISTS {name}" if con.execute(
                "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name]).fetchall()[0][0]
                else f"DROP TABLE IF EXISTS {name}")
        # The mapped fields are standardised now: keep only the record ids (the leakage
        # check's), not a second copy of every field through predict and clustering.
        for name in cfg.sources:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {q('all_' + name)} AS "
                        f"SELECT source_dataset, record_id, _row FROM {q('all_' + name)}")
        source_counts = dict(con.execute("SELECT source_dataset, count(*) FROM nodes GROUP BY ALL").fetchall())
    return invalid, source_counts


def _guard_stage(job: _Job, db_api: Any, changes: increments.Changes | None) -> list[model.RuleCount]:
    """The comparisons each blocking rule makes, refused over ``model.max_comparisons``.
    An incremental run counts the pairs it scores: new records against all."""
    cfg = job.cfg
    with job.stages.stage("blocking guard"):
        if changes is not None:
            counts = increments.count_comparisons(job.con, list(cfg.model.blocking_rules))
            total = model.guard_comparisons(counts, cfg.model.max_comparisons)
            job.stages.note(f"{total:,} comparisons of new records at most (before rules overlap)")
        else:
            counts = model.count_comparisons(job.con, "nodes", list(cfg.model.blocking_rules), db_api,
                                             cfg.model.link_type, job.key_caps)
            total = model.guard_comparisons(counts, cfg.model.max_comparisons)
            job.stages.note(f"{total:,} comparisons at most (before rules overlap)")
    return counts


def _model_stage(
    job: _Job, engine: engines.Engine, saved_model: dict | None, invalid: dict, source_counts: dict[str, int]
) -> tuple[Any, model.Prior | None]:
    """A linker over ``nodes``: trained here, or the saved model's parameters (and, as the
    config says, a prior estimated on this data). The model goes to restricted/."""
    cfg, opts, stages = job.cfg, job.opts, job.stages
    settings = model.build_settings(cfg, engine.dialect, saved_model)
    linker = model.make_linker(engine.register_nodes(job.con, "nodes"), settings)
    prior = None
    if saved_model is None:
        model.check_trainable(job.con, cfg, "records", invalid)
        with stages.stage("train"):
            prior = model.train(linker, cfg, stages.step, source_counts, warn=job.warn)
    else:
        stages.note(f"using the saved model {opts.model_path}: training skipped")
        if opts.incremental:
            stages.note("incremental: the previous run's prior kept (its carried pairs were scored with it)")
        elif cfg.model.training.prior.with_saved_model == "reestimate":
            with stages.stage("prior"):
                saved_prior = float(saved_model["probability_two_random_records_match"])
                prior = model.estimate_prior(linker, cfg, source_counts)
            stages.note(f"prior estimated on this data: {prior.probability:.3g} (the saved model's: {saved_prior:.3g})")
    prior_warning = prior.warning() if prior is not None else None
    if prior_warning:
        job.warn(prior_warning)
    model.save_model(linker, job.restricted / "model.json")
    return linker, prior


def _predict_stage(
    job: _Job, engine: engines.Engine, linker: Any, db_api: Any, changes: increments.Changes | None
) -> tuple[int, dict[str, int]]:
    """``predictions``: every blocked pair scored, or (incremental) the new records' pairs
    scored and the others carried. Returns the pairs kept and, incremental, how they came."""
    cfg, con = job.cfg, job.con
    pair_counts: dict[str, int] = {}
    with job.stages.stage("predict"):
        if engine.name != "duckdb":
            job.stages.note(f"scoring on {engine.name}")
        if changes is not None and job.opts.previous is not None:
            pair_counts = increments.predict(con, linker, db_api, cfg.model.threshold, job.opts.previous,
                                             list(cfg.model.blocking_rules), step=job.stages.step,
                                             settings=cfg.model.clustering)
            job.stages.note(f"{pair_counts['pairs_scored']:,} pairs scored (new-to-new and new-to-existing), "
                            f"{pair_counts['pairs_carried']:,} carried from the previous run")
        else:
            engine.import_predictions(con, model.predict(linker, cfg.model.threshold), "predictions")
        scored = con.execute("SELECT count(*) FROM predictions").fetchall()[0][0]
    job.stages.note(f"{scored:,} pairs kept (match probability >= {min(0.01, cfg.model.threshold / 10)})")
    return int(scored), pair_counts


def _cluster_stage(
    job: _Job, db_api: Any, decision_stores: Sequence[Path], changes: increments.Changes | None,
    counts: dict[str, int] | None = None,
) -> tuple[clustering.ClusterStats, list[clerical.DecisionStats]]:
    """``clusters``: links, cluster validity, clerical decisions. An incremental run
    clusters again only the people its changes reach and carries the others (how many
    records it clustered again goes into ``counts``)."""
    cfg, con, stages = job.cfg, job.con, job.stages
    settings = cfg.model.clustering
    if settings.person_evidence:  # weights the config leaves to the model: from this run's model
        settings = clustering.with_person_evidence(
            settings, cfg.model.comparisons, json.loads((job.restricted / "model.json").read_text()))
    with stages.stage("cluster"):
        decided: list[clerical.DecisionStats] = []
        apply = None
        if clerical.load_stores(con, decision_stores):
            def apply(c):  # an incremental run falling back to every record clusters twice: the last counts
                decided[:] = [clerical.apply_decisions(c)]
        if changes is not None and job.opts.previous is not None:
            cstats = increments.cluster(
                con, db_api, job.opts.previous, cfg.model.threshold, list(cfg.model.deterministic_links),
                settings, job.duplicate_free, after_validity=apply, step=stages.step,
                note=stages.note, counts=counts,
            )
        else:
            cstats = clustering.cluster(
                con, db_api, "predictions", cfg.model.threshold, list(cfg.model.deterministic_links),
                settings, job.duplicate_free, after_validity=apply,
            )
        if decided:
            clerical.write_store(con, job.restricted)
            stages.note(decided[0].summary())
            if decided[0].conflicts:
                job.warn(
                    f"{decided[0].conflicts:,} clerical decisions conflict (a chain of matches across a "
                    f"not_match): those clusters were left as the model made them; see "
                    f"{job.restricted.name}/{clerical.OUTCOMES.name} (outcome 'conflict')"
                )
        if cstats.clusters_split or cstats.cut_links:
            stages.note(
                f"{cstats.clusters_split:,} of {cstats.clusters_checked:,} suspicious clusters split; "
                f"links cut: {', '.join(f'{k} {v:,}' for k, v in cstats.cut_links.items())}"
            )
        stages.note(
            f"{cstats.records:,} records in {cstats.clusters:,} people "
            f"({cstats.singletons:,} alone, largest {cstats.largest})"
        )
        for rule, n in cstats.oversized_deterministic_groups.items():
            stages.note(
                f"'{rule}': {n['groups']:,} values shared by more records than max_group_size "
                f"({n['records']:,} records) were not linked on agreement alone"
            )
    return cstats, decided


def _person_ids_stage(
    job: _Job, db_api: Any, previous_path: Path | None, generation: int, changes: increments.Changes | None
) -> tuple[identity.IdentityStats, int]:
    """``crosswalk``: each record's person key (carried from the previous run by overlap)
    and pseudonymous person id. Returns the id changes and the removed records' lineage rows."""
    cfg, con, stages = job.cfg, job.con, job.stages
    with stages.stage("person ids"):
        previous = identity.load_previous(con, previous_path) if previous_path else None
        # An incremental run has each record's previous key by its number already (``_prev``).
        by_node = "_prev" if changes is not None and job.opts.carry_ids is None else None
        istats = identity.assign_person_keys(con, previous, generation, by_node=by_node)
        removed_rows = increments.record_removed_lineage(con, previous) if changes is not None else 0
        # One pseudonym per person, not per record.
        deidentify.add_pseudonyms(con, "person_keys", job.key, out="person_ids")
        con.execute(
            """CREATE OR REPLACE TABLE crosswalk AS
            SELECT c.source_dataset, c.record_id, k.person_id, k.person_key,
                   c.cluster_size, c.cluster_min_match_weight, c.cluster_links, c.deterministic_links,
                   c.node_id
            FROM clusters c JOIN person_ids k USING (cluster_id)
            ORDER BY c.node_id"""  # nodes are numbered in (source_dataset, record_id) order: one integer to sort
        )
        if cfg.outputs.person_id_thresholds:  # ids at the extra thresholds (sensitivity analyses)
            extra = threshold_ids.add_threshold_ids(
                con, db_api, list(cfg.outputs.person_id_thresholds), cfg.model.threshold, job.key, generation,
                previous_path)
            stages.note("people at other thresholds: " + ", ".join(f"{c} {n:,}" for c, n in extra.items()))
        if previous:
            stages.note(
                f"kept {istats.kept:,} ids, {istats.new:,} new, {istats.merges:,} merged, "
                f"{istats.splits:,} split, {istats.retired:,} retired"
            )
    return istats, removed_rows


def _write_restricted_stage(job: _Job) -> None:
    """The identifiable outputs, and what a later incremental run builds on."""
    con, restricted = job.con, job.restricted
    with job.stages.stage("write restricted"):
        # node_id is the job's own numbering: joins inside the job, not an output.
        _copy(con, "SELECT * EXCLUDE (node_id) FROM crosswalk", restricted / "crosswalk.parquet")
        _copy(con, "SELECT source_dataset, record_id, _row AS row_number, reason FROM rejects ORDER BY ALL",
              restricted / "rejects.parquet")
        _copy(con, "id_lineage", restricted / "id_lineage.parquet")
        _copy(con, "SELECT nl.source_dataset AS source_dataset_l, nl.record_id AS record_id_l, "
              "nr.source_dataset AS source_dataset_r, nr.record_id AS record_id_r, match_weight, match_probability "
              "FROM predictions JOIN nodes nl ON nl.node_id = node_id_l JOIN nodes nr ON nr.node_id = node_id_r",
              restricted / "predictions.parquet")
        _copy(con, "SELECT nl.source_dataset AS source_dataset_l, nl.record_id AS record_id_l, "
              "nr.source_dataset AS source_dataset_r, nr.record_id AS record_id_r, kind FROM links "
              "JOIN nodes nl ON nl.node_id = node_id_l JOIN nodes nr ON nr.node_id = node_id_r "
              "WHERE kind <> 'model'", restricted / "deterministic_links.parquet")
        # Links clustering cut (chains, conflicting identifiers, duplicate-free sources): for review.
        _copy(con, "SELECT nl.source_dataset AS source_dataset_l, nl.record_id AS record_id_l, "
              "nr.source_dataset AS source_dataset_r, nr.record_id AS record_id_r, match_weight, "
              "match_probability, kind, reason FROM cluster_splits "
              "JOIN nodes nl ON nl.node_id = node_id_l JOIN nodes nr ON nr.node_id = node_id_r",
              restricted / "cluster_splits.parquet")
        _copy(con, "records", restricted / "standardised.parquet")
        _copy(con, "invalid_values", restricted / "invalid_values.parquet")
        _copy(con, "record_hashes", restricted / increments.HASHES)
        _copy(con, increments.term_frequencies_sql(increments.tf_columns(job.cfg)),
              restricted / increments.TERM_FREQUENCIES)


def _deidentify_stage(job: _Job) -> dict[str, int]:
    """The analyst tables, checked for leakage; returns rows written per table."""
    con, cfg, stages = job.con, job.cfg, job.stages
    with stages.stage("de-identify"):
        analyst_rows = deidentify.write_analyst_tables(
            con, cfg, job.staging / "analyst", restricted_dir=job.restricted,
            previous=job.opts.previous if job.opts.incremental else None,  # unaffected people's rows carried
            run_info={"job": cfg.job, "config_sha256": job.loaded.hash,
                      "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        )
        for column, bad in deidentify.analyst_bad_values(con).items():
            job.warn(f"{column}: {bad['rows']:,} value(s) not of the declared type {bad['type']} "
                     f"written as null (rows {bad['row_numbers']})")
        leakage = deidentify.check_leakage(con, cfg, job.staging / "analyst")
        stages.note(
            f"leakage check passed: none of the {leakage.analyst_values:,} distinct values "
            f"in {len(analyst_rows)} analyst tables is an identifier value"
        )
    return analyst_rows


def _manifest(
    job: _Job, reads, invalid, counts, saved_model, linker, prior, scored, cstats, decided, decision_stores,
    changes, pair_counts, removed_rows, istats, generation, previous_path, accounting, analyst_rows,
) -> dict[str, Any]:
    cfg, opts, con, key, loaded = job.cfg, job.opts, job.con, job.key, job.loaded
    return {
        "job": cfg.job,
        "description": cfg.description,
        "config_path": str(loaded.path),
        "config_sha256": loaded.hash,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "engine": cfg.engine.name,
        "work_database": _work_database(cfg, opts.keep_work),
        "versions": _versions(),
        "inputs": {
            n: {"path": str(r.path), "sha256": r.checksum, "rows": r.rows_read} for n, r in reads.items()
        },
        "rows": accounting,
        "invalid_values": invalid,
        # Encoded fields compared: each one's settings and fingerprint (never the secret).
        "encodings": encodings_manifest(dict(cfg.fields), cfg.sources, {n: r.path for n, r in reads.items()}),
        "blocking": [asdict(c) for c in counts],
        "model": {
            "trained": saved_model is None,
            "loaded_from": str(opts.model_path) if opts.model_path else None,
            "threshold_match_probability": cfg.model.threshold,
            "parameters": model.model_parameters(linker),
            "probability_two_random_records_match": linker._settings_obj._probability_two_random_records_match,
            "prior_from": "saved model" if saved_model is not None and
            cfg.model.training.prior.with_saved_model == "keep" else "this data",
            "prior_matches_per_record": prior.matches_per_record if prior else None,
            "link_type": cfg.model.link_type,
        },
        "warnings": job.warnings,
        "comparisons_scored_kept": scored,
        "clusters": asdict(cstats),
        "duplicate_free_sources": job.duplicate_free,
        "incremental": {
            "built_on": str(opts.previous), **asdict(changes), **pair_counts,
            "removed_records_lineage_rows": removed_rows,
            "note": "invalid_values, warnings and the leakage check's raw values cover the added and changed "
                    "records only (the unchanged ones were checked by the runs before)",
        } if changes is not None else None,
        "clerical_decisions": clerical.manifest_entry(decided[0], [p for p in decision_stores if p.is_file()])
        if decided else None,
        "id_generation": generation,
        "ids": asdict(istats),
        "previous_ids": str(previous_path) if previous_path else None,
        "pseudonym_key_fingerprint": key.fingerprint,
        "pseudonym_key_origin": key.origin,
        "analyst_tables": analyst_rows,
        "analyst_nulled_values": deidentify.analyst_nulled_values(con),
        "analyst_people_made_again": deidentify.analyst_people_made_again(con),
        "analyst_bad_values": deidentify.analyst_bad_values(con),
        "rounding_base": cfg.outputs.rounding_base,
        "person_id_thresholds": list(cfg.outputs.person_id_thresholds),
        "suppression_threshold": cfg.outputs.suppression_threshold,
    }


def _standardise(con: duckdb.DuckDBPyConnection, cfg, leftovers: list[str] | None = None) -> list[str]:
    """Standardise every source's declared fields (the preset's included).

    Sources read alike are standardised together: their names, dates and numbers repeat
    across sources, and each distinct value is cleaned once. Returns the record tables
    (each with ``_invalid`` and ``_raw_values`` companions). Given ``leftovers``, they are
    views instead, and the views and tables they read are added to it, to drop once
    ``nodes`` is made from them (the records are then written once)."""
    views = []
    for i, names in enumerate(_standardise_groups(cfg)):
        first = cfg.sources[names[0]]
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW __lk_group_{i} AS "
            + " UNION ALL ".join(f"SELECT * FROM {q('mapped_' + n)}" for n in names)
        )
        result = standardise_fields(
            con, f"__lk_group_{i}", f"std_{i}", dict(cfg.fields),
            date_formats=list(first.date_formats), list_separator=first.list_separator,
            as_view=leftovers is not None,
        )  # fmt: skip
        views.append(f"std_{i}")
        if leftovers is not None:
            leftovers += result.leftovers
    return views


def _number_records(con: duckdb.DuckDBPyConnection, cfg) -> None:
    """``nodes``: the standardised records numbered 1..n in (source_dataset, record_id) order,
    as ``linkage.cluster.build_nodes`` numbers them, written once from the standardising's
    views; the numbers come from the mapped records' keys (the same records), so the
    cleaning is not run twice."""
    keys = " UNION ALL ".join(f"SELECT source_dataset, record_id FROM {q('mapped_' + n)}" for n in cfg.sources)
    con.execute(
        f"""CREATE OR REPLACE TABLE nodes AS
        SELECT k.node_id, r.* FROM records r
        JOIN (SELECT source_dataset, record_id, row_number() OVER (ORDER BY source_dataset, record_id) AS node_id
              FROM ({keys})) k USING (source_dataset, record_id)"""
    )


# List fields hold several values a row: their invalid counts are of elements, not rows.
_LIST_FIELDS = {"aliases", "alias_dates_of_birth"}


def _emptied_field_warnings(con: duckdb.DuckDBPyConnection, cfg, invalid) -> list[str]:
    """A line for each field that cleaning emptied for more than ``checks.emptied_share``
    of a source's present values, with the reasons (counts only)."""
    out = []
    lists = _LIST_FIELDS | {f for f, t in cfg.fields.items() if t.type == "list"}
    for name, src in cfg.sources.items():
        fields = [f for f in src.columns if f not in lists]
        if not fields:
            continue
        present = con.execute(
            "SELECT " + ", ".join(f"count({q(f)})" for f in fields) + f" FROM {q('mapped_' + name)}"
        ).fetchall()[0]
        for field, n in zip(fields, present):
            reasons = invalid.get(name, {}).get(field, {})
            emptied = sum(reasons.values())
            if n and emptied / n > cfg.checks.emptied_share:
                why = ", ".join(f"{r} {c:,}" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
                out.append(
                    f"{name}.{field}: cleaning emptied {emptied:,} of {n:,} values ({emptied / n:.0%}; {why}). "
                    f"If the values are good, change the field's cleaning options (checks.emptied_share sets this warning)"
                )
    return out


def _standardise_groups(cfg) -> list[list[str]]:
    """Sources with the same date formats and list separator, in config order."""
    groups: dict[tuple, list[str]] = {}
    for name, src in cfg.sources.items():
        groups.setdefault((tuple(src.date_formats), src.list_separator), []).append(name)
    return list(groups.values())


def _invalid_counts(con: duckdb.DuckDBPyConnection, cfg) -> dict[str, dict[str, dict[str, int]]]:
    """source -> field -> reason -> values made missing, every source present."""
    out: dict[str, dict[str, dict[str, int]]] = {name: {} for name in cfg.sources}
    for source, field, reason, n in con.execute(
        "SELECT source_dataset, field, reason, count(*) FROM invalid_values GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        out[source].setdefault(field, {})[reason] = int(n)
    return out


def _copy(con: duckdb.DuckDBPyConnection, table_or_query: str, path: Path) -> None:
    query = table_or_query if " " in table_or_query else f"SELECT * FROM {table_or_query}"
    con.execute(f"COPY ({query}) TO {lit(str(path))} (FORMAT parquet)")


def _account(con: duckdb.DuckDBPyConnection, cfg, reads) -> dict[str, dict[str, int]]:
    """Every input row is in the crosswalk exactly once or rejected with a reason."""
    out = {}
    for name in cfg.sources:
        linked, in_crosswalk, distinct = con.execute(
            f"SELECT count(*) FILTER (WHERE cluster_size > 1), count(*), count(DISTINCT record_id) "
            f"FROM crosswalk WHERE source_dataset = {lit(name)}"
        ).fetchall()[0]
        rejected = con.execute(f"SELECT count(*) FROM rejects WHERE source_dataset = {lit(name)}").fetchall()[0][0]
        read = reads[name].rows_read
        if in_crosswalk != distinct or in_crosswalk + rejected != read:
            raise RuntimeError(
                f"accounting failed for {name}: {read} rows read, {in_crosswalk} in the crosswalk "
                f"({distinct} distinct), {rejected} rejected"
            )
        out[name] = {"read": read, "rejected": rejected, "in_crosswalk": in_crosswalk,
                     "linked": linked, "unlinked": in_crosswalk - linked}
    return out


def _versions() -> dict[str, str]:
    import pandas
    import splink

    return {
        "linkage": linkage.__version__,
        "splink": splink.__version__,
        "duckdb": duckdb.__version__,
        "pandas": pandas.__version__,
        "python": platform.python_version(),
    }
