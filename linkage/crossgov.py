"""The cross-government job: link the persons of a justice run to other departments'
extracts (benefit claims, employment spells, learner records).

The job is an ordinary linkage job (``configs/cross_government.yaml``) with one source
that is not an extract: the **justice persons** of a finished justice run, one record per
person, read from that run's restricted zone (``restricted/standardised.parquet`` joined
to ``restricted/crosswalk.parquet``). A person's record carries their most common name,
date of birth, sex and postcode, and every other name and date of birth their records
hold as aliases, so a department record that matches any of them scores as it would
against that record.

Three rules make the result a link to the justice run rather than a new linkage:

- the justice source is ``duplicate_free``: clustering (``linkage.cluster``) keeps at most
  one justice person per cluster, so a department record joins at most one justice person
  and no two justice persons are ever merged; a justice person is one record, so it is
  never split;
- each justice person keeps the justice run's person key (``RunOptions.carry_ids``), so
  with the same pseudonymisation key the analyst tables' ``person_id`` is the justice
  run's ``person_id``: an analyst joins benefit, employment and learning spells to the
  justice tables on it;
- department records of one person (the same National Insurance number on a claim and an
  employment spell) link to each other, so a spell whose name was mistyped still reaches
  the justice person through the claim.

Everything else (reading and checking the extracts, identifier reasons, training,
scoring, de-identification, the leakage check, write-audit-publish) is ``linkage.job``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import duckdb
import psutil

from linkage import deidentify
from linkage import publish as publishing
from linkage.config import LoadedConfig
from linkage.errors import ConfigError, InputError, LinkageError
from linkage.job import RunOptions, RunResult, run_job
from linkage.progress import Stages
from linkage.sources import file_sha256, lit

# The justice persons file's columns: what the config's justice source maps.
PERSON_COLUMNS = ("person_id", "first_name", "middle_names", "surname", "aliases", "date_of_birth",
                  "alias_dates_of_birth", "sex", "postcode", "alias_postcodes")
EVALUATION = "crossgov_evaluation.json"


@dataclass(frozen=True)
class JusticeRun:
    """A finished justice run: where it is and what its manifest says."""

    run_dir: Path
    manifest: dict[str, Any]

    @property
    def crosswalk(self) -> Path:
        return self.run_dir / "restricted" / "crosswalk.parquet"

    @property
    def standardised(self) -> Path:
        return self.run_dir / "restricted" / "standardised.parquet"


def open_justice_run(run_dir: Path) -> JusticeRun:
    """The justice run at ``run_dir``, checked: a finished run with its restricted records."""
    run_dir = Path(run_dir).resolve()
    manifest = publishing.read_run_manifest(run_dir)
    run = JusticeRun(run_dir, manifest)
    for path in (run.crosswalk, run.standardised):
        if not path.is_file():
            raise InputError(
                f"--justice-run {run_dir}: {path.relative_to(run_dir)} is missing; the cross-government job reads "
                f"the justice run's restricted records. Give the --out folder of a finished justice run."
            )
    return run


def check_config(loaded: LoadedConfig, justice_source: str) -> None:
    """The config's justice source is the justice persons file: duplicate-free, keyed on person_id."""
    cfg = loaded.config
    src = cfg.sources.get(justice_source)
    where = f"sources.{justice_source}"
    if src is None:
        raise ConfigError(str(loaded.path), [
            f"{where}: the cross-government job needs a source named {justice_source!r} for the justice run's persons "
            f"(or name yours with --justice-source; sources here: {', '.join(cfg.sources)})"])
    problems = []
    if not src.duplicate_free:
        problems.append(f"{where}.duplicate_free: must be true: a department record joins at most one justice person, "
                        "and justice persons are never merged")
    if src.record_id != "person_id":
        problems.append(f"{where}.record_id: must be person_id (the justice persons file's id column)")
    bad = sorted(set(src.columns.values()) - set(PERSON_COLUMNS))
    if bad:
        problems.append(f"{where}.columns: {', '.join(map(repr, bad))} not in the justice persons file "
                        f"(its columns: {', '.join(PERSON_COLUMNS)})")
    if src.carry or src.age_at or src.breakdowns:
        problems.append(f"{where}: carry, age_at and breakdowns do not apply (the justice run publishes its own tables)")
    if len(cfg.sources) < 2:
        problems.append("sources: name at least one department extract beside the justice persons")
    if cfg.model.link_type == "dedupe_only":
        problems.append("model.link_type: dedupe_only never links a department record to a justice person")
    if problems:
        raise ConfigError(str(loaded.path), problems)


# The age of criminal responsibility in England and Wales: no one in a justice extract was
# born less than this many years before the justice run. A later date of birth is another
# date keyed into the field (a hearing or an offence date).
MIN_AGE_YEARS = 10


def _most_common(col: str, where: str = "") -> str:
    """Per person: the most common value of ``col`` (ties: the smallest, so reruns agree)."""
    return (f"SELECT person_id, arg_min({col}, (-n, {col})) AS {col} FROM (SELECT person_id, {col}, count(*) AS n "
            f"FROM r WHERE {col} IS NOT NULL {where} GROUP BY ALL) GROUP BY ALL")


def latest_date_of_birth(run: JusticeRun) -> str:
    """The latest date of birth a justice person can have: ``MIN_AGE_YEARS`` before the
    justice run was made (its manifest's ``created_utc``; today for a run without one)."""
    made = str(run.manifest.get("created_utc") or "")[:10]
    try:
        day = date.fromisoformat(made)
    except ValueError:
        day = date.today()
    return (day.replace(day=28) if day.month == 2 and day.day == 29 else day).replace(
        year=day.year - MIN_AGE_YEARS).isoformat()


def justice_persons_sql(run: JusticeRun) -> str:
    """One row per justice person: the person's most common name (forename and surname of
    one record), middle names, date of birth, sex and postcode; every other name their
    records hold (``SURNAME, FORENAME``), every other date of birth and every other postcode
    (the person's address history) as ';' lists. The date of birth is the most common one
    the person could have (``latest_date_of_birth``): a person whose records hold only
    later ones has none (they stay among the aliases), rather than one that disagrees with
    every department record of theirs."""
    return f"""
    WITH r AS (
        SELECT x.person_id, s.* EXCLUDE (source_dataset, record_id)
        FROM read_parquet({lit(str(run.standardised))}) s
        JOIN read_parquet({lit(str(run.crosswalk))}) x USING (source_dataset, record_id)),
    name AS (
        SELECT person_id, arg_min(first_name, (-n, first_name, surname)) AS first_name,
               arg_min(surname, (-n, first_name, surname)) AS surname
        FROM (SELECT person_id, first_name, surname, count(*) AS n FROM r
              WHERE first_name IS NOT NULL OR surname IS NOT NULL GROUP BY ALL) GROUP BY ALL),
    middle AS ({_most_common("middle_names")}),
    dob AS ({_most_common("date_of_birth", f"AND date_of_birth <= DATE {lit(latest_date_of_birth(run))}")}),
    sex AS ({_most_common("sex")}),
    postcode AS ({_most_common("postcode")}),
    sets AS (
        SELECT person_id, list_distinct(flatten(list(coalesce(name_set, [])))) AS names,
               list_distinct(flatten(list(coalesce(dob_set, [])))) AS dobs,
               list_distinct(list(postcode) FILTER (WHERE postcode IS NOT NULL)) AS postcodes
        FROM r GROUP BY ALL),
    people AS (SELECT DISTINCT person_id FROM r)
    SELECT p.person_id, name.first_name, middle.middle_names, name.surname,
           nullif(array_to_string(list_sort(list_transform(
               list_filter(sets.names, lambda v: v IS DISTINCT FROM trim(concat_ws(' ', name.first_name, name.surname))
                                                AND position(' ' IN v) > 0),
               lambda v: substr(v, position(' ' IN v) + 1) || ', ' || substr(v, 1, position(' ' IN v) - 1))), ';'), '')
             AS aliases,
           strftime(dob.date_of_birth, '%Y-%m-%d') AS date_of_birth,
           nullif(array_to_string(list_sort(list_transform(
               list_filter(sets.dobs, lambda d: d IS DISTINCT FROM dob.date_of_birth),
               lambda d: strftime(d, '%Y-%m-%d'))), ';'), '') AS alias_dates_of_birth,
           sex.sex, postcode.postcode,
           nullif(array_to_string(list_sort(list_filter(sets.postcodes, lambda v: v IS DISTINCT FROM postcode.postcode)),
                                  ';'), '') AS alias_postcodes
    FROM people p LEFT JOIN name USING (person_id) LEFT JOIN middle USING (person_id)
    LEFT JOIN dob USING (person_id) LEFT JOIN sex USING (person_id) LEFT JOIN postcode USING (person_id)
    LEFT JOIN sets USING (person_id)
    ORDER BY p.person_id"""


def export_justice_persons(run: JusticeRun, folder: Path, source: str) -> tuple[Path, Path, int]:
    """Write the justice persons (``justice_persons.parquet``) and their person keys
    (``justice_keys.parquet``: source_dataset, record_id, person_key) into ``folder``, an
    owner-only folder; returns both paths and the number of persons."""
    persons, keys = folder / "justice_persons.parquet", folder / "justice_keys.parquet"
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({justice_persons_sql(run)}) TO {lit(str(persons))} (FORMAT parquet)")
        con.execute(
            f"COPY (SELECT DISTINCT {lit(source)} AS source_dataset, person_id AS record_id, person_key "
            f"FROM read_parquet({lit(str(run.crosswalk))}) ORDER BY record_id) TO {lit(str(keys))} (FORMAT parquet)")
        n, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT record_id) FROM read_parquet({lit(str(keys))})").fetchall()[0]
    finally:
        con.close()
    if n != distinct:  # one key per person id: a crosswalk that says otherwise is not a run's
        raise InputError(f"{run.crosswalk}: a person_id with two person keys; the justice run's crosswalk is damaged.")
    return persons, keys, int(n)


def _remove_stale_exports(out: Path) -> None:
    """Remove justice persons folders beside ``out`` left by killed runs (their process is gone)."""
    for folder in out.parent.glob(f".{out.name}.justice-*-*"):
        pid = folder.name.removeprefix(f".{out.name}.justice-").split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def run_crossgov(loaded: LoadedConfig, justice_run: Path, opts: RunOptions, justice_source: str = "justice",
                 stages: Stages | None = None) -> RunResult:
    """Run the cross-government job of ``loaded`` against the justice run at ``justice_run``."""
    stages = stages or Stages()
    check_config(loaded, justice_source)
    run = open_justice_run(justice_run)
    if opts.incremental:
        raise LinkageError("the cross-government job scores every record each run: --incremental does not apply")
    previous = _open_previous(opts.previous, justice_source) if opts.previous is not None else None
    out = (opts.out_dir or Path("runs") / loaded.config.job).resolve()
    if out == run.run_dir:
        raise LinkageError(f"--out {out} is the justice run itself; give the cross-government run its own folder")
    key = deidentify.resolve_key(loaded.config.outputs.key_file, loaded.path.parent)
    if not key.matches_fingerprint(run.manifest.get("pseudonym_key_fingerprint")):
        raise LinkageError(
            f"--justice-run {run.run_dir} was made with a different pseudonymisation key (fingerprint "
            f"{run.manifest.get('pseudonym_key_fingerprint')}, this job's {key.fingerprint}): the person ids would not "
            f"join the justice run's. Run with the justice run's key.")
    if previous is not None and not key.matches_fingerprint(previous.manifest.get("pseudonym_key_fingerprint")):
        raise LinkageError(f"--previous {previous.run_dir} was made with a different pseudonymisation key: its person "
                           "ids would not carry over. Run with the same key.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create the folder {out.parent} ({exc.strerror}).") from None
    _remove_stale_exports(out)
    # The persons file holds names and dates of birth: owner-only (mkdtemp: 0700), beside
    # --out, removed after the run (or by the next run if this one is killed).
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.justice-{os.getpid()}-", dir=out.parent))
    try:
        with stages.stage("justice persons"):
            persons, keys, n = export_justice_persons(run, folder, justice_source)
            stages.note(f"{n:,} justice persons from {run.run_dir}")
            if previous is not None:
                keys = carry_previous(keys, previous, justice_source, folder)
                stages.note(f"department persons' ids carried from {previous.run_dir}")
        src = loaded.config.sources[justice_source].model_copy(update={"path": str(persons), "format": "parquet"})
        cfg = loaded.config.model_copy(update={"sources": {**loaded.config.sources, justice_source: src}})
        job = LoadedConfig(cfg, loaded.path, loaded.text)
        extra = {"cross_government": {
            "justice_run": str(run.run_dir),
            "justice_manifest_sha256": file_sha256(run.run_dir / publishing.MANIFEST),
            "justice_config_sha256": run.manifest.get("config_sha256"),
            "justice_source": justice_source,
            "justice_persons": n,
            "note": "person_id of a record linked to a justice person is that person's person_id in the justice run; "
                    "inputs.justice and previous_ids name the justice persons file, written for the run and removed",
        }}
        fingerprint = run.manifest.get("pseudonym_key_fingerprint")
        generation = int(run.manifest.get("id_generation", 1))
        if previous is not None:  # a key freed by a split is never reissued
            generation = max(generation, int(previous.manifest.get("id_generation", 1)))
            extra["cross_government"]["previous_run"] = str(previous.run_dir)
        result = run_job(job, replace(opts, carry_ids=(keys, fingerprint, generation), manifest_extra=extra), stages)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    check_result(result.run_dir, justice_source)
    return result


def _open_previous(run_dir: Path, justice_source: str) -> JusticeRun:
    """The previous cross-government run (``--previous``): a finished run of this job."""
    run_dir = Path(run_dir).resolve()
    manifest = publishing.read_run_manifest(run_dir)
    info = manifest.get("cross_government")
    if not info:
        raise InputError(f"--previous {run_dir}: not a cross-government run (its manifest has no cross_government "
                         "entry); give the --out folder of last month's `linkage crossgov run`.")
    if info.get("justice_source") != justice_source:
        raise InputError(f"--previous {run_dir}: its justice source was {info.get('justice_source')!r}, "
                         f"this job's is {justice_source!r}.")
    run = JusticeRun(run_dir, manifest)
    if not run.crosswalk.is_file():
        raise InputError(f"--previous {run_dir}: restricted/crosswalk.parquet is missing.")
    return run


def carry_previous(justice_keys: Path, previous: JusticeRun, justice_source: str, folder: Path) -> Path:
    """The person keys a run carries: the justice persons' (priority 1: a justice person
    always keeps its justice run's key) and the previous cross-government run's department
    records' (priority 0: a department person keeps last month's id when its records are
    still together, and a record that now joins a justice person takes that person's)."""
    out = folder / "carry_keys.parquet"
    con = duckdb.connect()
    try:
        con.execute(
            f"""COPY (SELECT source_dataset, record_id, person_key, 1 AS priority
                      FROM read_parquet({lit(str(justice_keys))})
                      UNION ALL
                      SELECT source_dataset, record_id, person_key, 0
                      FROM read_parquet({lit(str(previous.crosswalk))})
                      WHERE source_dataset <> {lit(justice_source)})
                TO {lit(str(out))} (FORMAT parquet)""")
    finally:
        con.close()
    return out


def link_table_sql(run_dir: Path, justice_source: str) -> str:
    """SQL: each department record with the justice person it joined (NULL: none)."""
    xw = f"read_parquet({lit(str(run_dir / 'restricted' / 'crosswalk.parquet'))})"
    return f"""
    SELECT d.source_dataset, d.record_id, j.record_id AS justice_person_id
    FROM {xw} d LEFT JOIN (SELECT person_id, record_id FROM {xw} WHERE source_dataset = {lit(justice_source)}) j
      USING (person_id)
    WHERE d.source_dataset <> {lit(justice_source)}"""


def check_result(run_dir: Path, justice_source: str) -> None:
    """The contract, checked on the published run: every justice person is one person with
    its justice person id, and no person holds two justice persons."""
    xw = f"read_parquet({lit(str(run_dir / 'restricted' / 'crosswalk.parquet'))})"
    con = duckdb.connect()
    try:
        moved, shared = con.execute(
            f"""SELECT count(*) FILTER (WHERE record_id <> person_id),
                       (SELECT count(*) FROM (SELECT person_id FROM {xw} WHERE source_dataset = {lit(justice_source)}
                                              GROUP BY ALL HAVING count(*) > 1))
                FROM {xw} WHERE source_dataset = {lit(justice_source)}""").fetchall()[0]
    finally:
        con.close()
    if moved or shared:
        raise RuntimeError(f"cross-government contract broken: {moved} justice persons lost their person id, "
                           f"{shared} persons hold two justice persons")


# --- evaluation against synthetic truth -------------------------------------------------------


def evaluate_crossgov(run_dir: Path, truth_csv: Path | Sequence[Path]) -> dict[str, Any]:
    """Score the department-to-justice-person links of a cross-government run.

    ``truth_csv`` (``source_dataset, record_id, person_id``; one file or several, e.g.
    ``truth.csv`` and ``truth_departments.csv``) covers the justice run's records and the
    department records. Pairs are (department record, justice person); each record has at
    most one predicted pair, so precision is the share of links that are right and recall
    the share of due links made. Two views:

    - ``pairwise`` (this job's link, given the justice run): a link is right when the
      justice person holds a record of the department record's true person, and due when
      some justice person does;
    - ``end_to_end``: a justice person stands for the true person most of its records
      belong to (ties: the smallest id); a link is right when it joins a justice person
      standing for the record's true person, due when one exists. A justice run that
      merged two people makes the minority person's department links wrong here.
    """
    manifest = publishing.read_run_manifest(run_dir)
    info = manifest.get("cross_government")
    if not info:
        raise InputError(f"{run_dir}: not a cross-government run (its manifest has no cross_government entry).")
    justice = open_justice_run(Path(info["justice_run"]))
    source = info["justice_source"]
    con = duckdb.connect()
    try:
        files = [truth_csv] if isinstance(truth_csv, (str, Path)) else list(truth_csv)
        for i, path in enumerate(files):
            if not Path(path).is_file():
                raise InputError(f"{path}: truth file not found")
            try:
                con.execute(f"{'CREATE TABLE truth AS' if i == 0 else 'INSERT INTO truth'} "
                            f"SELECT trim(source_dataset) AS source_dataset, trim(record_id) AS record_id, "
                            f"trim(person_id) AS true_id FROM read_csv({lit(str(path))}, header = true, all_varchar = true)")
            except duckdb.Error as exc:
                raise InputError(f"{path}: cannot read the truth; it needs columns source_dataset, record_id, "
                                 f"person_id ({str(exc).splitlines()[0][:160]})") from None
        dups = con.execute("SELECT count(*) FROM (SELECT source_dataset, record_id FROM truth GROUP BY ALL "
                           "HAVING count(DISTINCT true_id) > 1)").fetchall()[0][0]
        if dups:
            raise InputError(f"{', '.join(map(str, files))}: {dups:,} records have two different true persons.")
        justice_truth = (f"SELECT x.person_id AS justice_person_id, t.true_id, count(*) AS n "
                         f"FROM read_parquet({lit(str(justice.crosswalk))}) x "
                         f"JOIN truth t USING (source_dataset, record_id) GROUP BY ALL")
        con.execute(f"CREATE TABLE holds AS SELECT justice_person_id, true_id FROM ({justice_truth})")
        con.execute(f"""CREATE TABLE stands AS SELECT justice_person_id, arg_min(true_id, (-n, true_id)) AS true_id
                        FROM ({justice_truth}) GROUP BY ALL""")
        unlabelled = con.execute(
            f"SELECT count(*) FROM ({link_table_sql(run_dir, source)}) l ANTI JOIN truth USING (source_dataset, record_id)"
        ).fetchall()[0][0]
        if unlabelled:
            raise InputError(f"{', '.join(map(str, files))}: {unlabelled:,} department records of the run have no truth row.")
        con.execute(f"""CREATE TABLE scored AS
            SELECT l.source_dataset, l.justice_person_id IS NOT NULL AS linked,
                   coalesce(s.true_id = t.true_id, false) AS right_end_to_end,
                   t.true_id IN (SELECT true_id FROM stands) AS due_end_to_end,
                   (l.justice_person_id, t.true_id) IN (SELECT (justice_person_id, true_id) FROM holds) AS right_given,
                   t.true_id IN (SELECT true_id FROM holds) AS due_given,
                   t.true_id LIKE 'N%' AS outside
            FROM ({link_table_sql(run_dir, source)}) l JOIN truth t USING (source_dataset, record_id)
            LEFT JOIN stands s USING (justice_person_id)""")

        def prf(where: str, view: str = "given") -> dict[str, Any]:
            linked, right, due, records = con.execute(
                f"SELECT count(*) FILTER (WHERE linked), count(*) FILTER (WHERE right_{view}), "
                f"count(*) FILTER (WHERE due_{view}), count(*) FROM scored WHERE {where}").fetchall()[0]
            p = right / linked if linked else 1.0
            rc = right / due if due else 1.0
            return {"precision": p, "recall": rc, "f1": 2 * p * rc / (p + rc) if p + rc else 0.0,
                    "records": records, "links": linked, "right": right, "due": due}

        def errors() -> dict[str, Any]:
            """End-to-end errors by cause: the justice run's (a person it merged or split)
            or this link's own (a person outside justice, another justice person, no link)."""
            row = con.execute(
                """SELECT count(*) FILTER (WHERE linked AND NOT right_end_to_end AND right_given),
                          count(*) FILTER (WHERE linked AND NOT right_given AND NOT due_given AND outside),
                          count(*) FILTER (WHERE linked AND NOT right_given AND NOT due_given AND NOT outside),
                          count(*) FILTER (WHERE linked AND NOT right_given AND due_given),
                          count(*) FILTER (WHERE due_end_to_end AND NOT linked),
                          count(*) FILTER (WHERE due_end_to_end AND linked AND NOT right_end_to_end AND right_given),
                          count(*) FILTER (WHERE due_end_to_end AND linked AND NOT right_given)
                   FROM scored""").fetchall()[0]
            keys = ["justice_run_merged_or_split", "person_outside_justice", "person_without_a_justice_person",
                    "another_justice_person"]
            return {"false_links": dict(zip(keys, map(int, row[:4]))),
                    "missed_links": {"not_linked": int(row[4]), "justice_run_merged_or_split": int(row[5]),
                                     "another_justice_person": int(row[6])}}

        sources = [s for (s,) in con.execute("SELECT DISTINCT source_dataset FROM scored ORDER BY 1").fetchall()]
        result = {"pairwise": prf("true"),
                  "by_source": {s: prf(f"source_dataset = {lit(s)}") for s in sources},
                  "end_to_end": prf("true", "end_to_end"),
                  "end_to_end_by_source": {s: prf(f"source_dataset = {lit(s)}", "end_to_end") for s in sources},
                  "end_to_end_errors": errors(),
                  "justice_run": str(justice.run_dir), "truth": [str(f) for f in files],
                  "definition": "pairs of (department record, justice person). pairwise: right when the justice "
                                "person holds a record of the department record's true person; end_to_end: right "
                                "when most of the justice person's records are the true person's. "
                                "end_to_end_errors: each end-to-end false link and miss by cause; "
                                "justice_run_merged_or_split: right given the justice run, wrong end to end (the "
                                "justice person merged two people, or the person's records are split over several "
                                "justice persons); the rest are this link's own"}
    finally:
        con.close()
    (run_dir / EVALUATION).write_text(json.dumps(result, indent=2) + "\n")
    return result


__all__ = ["run_crossgov", "evaluate_crossgov", "export_justice_persons", "justice_persons_sql", "open_justice_run",
           "PERSON_COLUMNS"]
