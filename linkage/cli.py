"""The ``linkage`` command: synth, validate, run, evaluate, review, find, demo, crossgov.

Exit codes: 0 success; 1 a problem the user can fix (bad config, input or arguments, a
full disk, a folder that cannot be written or is busy), reported in one message without a
traceback; 130 interrupted (Ctrl-C); 2 an internal error (set ``LINKAGE_DEBUG=1`` for the
traceback). Every message is printed as plain text: file, column and folder names are the
user's words and are never read as markup.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import typer
from rich.table import Table
from typer.exceptions import Abort, TyperException
from rich.text import Text

import linkage
from linkage import errors
from linkage import publish as publishing
from linkage.errors import LinkageError
from linkage.progress import plain_console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Record linkage for justice administrative data.",
    pretty_exceptions_enable=False,
    # Plain help: no boxes, no markup read in help texts, no <bool> shown for flags.
    rich_markup_mode=None,
)
err = plain_console(stderr=True)
out = plain_console(stderr=False)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "justice.yaml"


def _version(value: bool) -> None:
    if value:
        out.print(f"linkage {linkage.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_version
    ),
) -> None:
    """Record linkage for justice administrative data."""


def _say(label: str, style: str, text: str) -> None:
    err.print(Text.assemble((label, style), " ", text))


@app.command()
def synth(
    people: int = typer.Option(..., "--people", help="How many people to generate."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the five extracts and truth.csv to."),
    seed: int = typer.Option(1, "--seed", help="Random seed: the same seed gives identical files."),
    profile: str = typer.Option("realistic", "--profile", help="clean, realistic or hard."),
    departments: bool = typer.Option(False, "--departments", help="Also write OASys, accredited programmes, DWP benefit claims, HMRC employment spells and learner records about the same people, and truth_departments.csv."),
    outside_ratio: Optional[float] = typer.Option(None, "--outside-ratio", help="With --departments: people outside justice per justice person (default 1.0)."),
    known_to: Optional[str] = typer.Option(None, "--known-to", help="With --departments: shares of justice people known to each, e.g. dwp=0.85,hmrc=0.65,learners=0.45,oasys=0.85,programmes=0.15."),
) -> None:
    """Generate synthetic PNC, prison, probation, Libra and CREST extracts with known truth."""
    from linkage.synthetic import generate
    from linkage.synthetic.profiles import department_rates

    rates = department_rates(profile, outside_ratio, known_to) if departments else None
    if not departments and (outside_ratio is not None or known_to is not None):
        raise errors.UsageError("--outside-ratio and --known-to need --departments")
    result = generate(people=people, seed=seed, out=out_dir, profile=profile, departments=departments, department_rates=rates)
    total = sum(result.rows.values())
    err.print(
        f"wrote {total:,} records for {people:,} people to {result.out} "
        f"({', '.join(f'{k} {v:,}' for k, v in result.rows.items())}); truth in truth.csv"
    )
    if departments:
        err.print(
            f"and {sum(result.department_rows.values()):,} department records "
            f"({', '.join(f'{k} {v:,}' for k, v in result.department_rows.items())}) about them and "
            f"{result.outside_people:,} people outside justice; truth in truth_departments.csv"
        )


@app.command()
def validate(config: Path = typer.Argument(..., help="The job config (YAML).")) -> None:
    """Check a job config alone: every problem is listed, nothing is read."""
    from linkage.config import load_config

    loaded = load_config(config)
    err.print(f"{config}: valid ({len(loaded.config.sources)} sources, {len(loaded.config.model.comparisons)} comparisons)")


@app.command()
def run(
    config: Path = typer.Argument(..., help="The job config (YAML)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder that relative source paths are resolved against (default: the config's folder)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="The run directory to write (default: runs/<job>)."),
    model_path: Optional[Path] = typer.Option(None, "--model", help="A saved model (restricted/model.json of an earlier run): skip training."),
    previous: Optional[Path] = typer.Option(None, "--previous", help="The previous run directory: people keep their person ids."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep the DuckDB work database in the run directory (work/), for debugging."),
    incremental: bool = typer.Option(False, "--incremental", help="With --previous: standardise and score only the records added or changed since that run (new-to-new and new-to-existing pairs), with its model."),
) -> None:
    """Run the whole job: read, standardise, train, predict, cluster, de-identify, publish."""
    from linkage.config import load_config
    from linkage.job import RunOptions, run_job

    loaded = load_config(config)
    result = run_job(loaded, RunOptions(data, out_dir, model_path, previous, keep_work=keep_work, incremental=incremental))
    _print_run(result)


def _print_run(result) -> None:
    rows = result.manifest["rows"]
    read = sum(r["read"] for r in rows.values())
    rejected = sum(r["rejected"] for r in rows.values())
    people = result.manifest["clusters"]["clusters"]
    _say(
        "published", "bold",
        f"{result.run_dir}: {read:,} records read, {rejected:,} rejected, "
        f"{people:,} people ({result.manifest['total_seconds']:.1f} s)",
    )


@contextmanager
def _open_run(run_dir: Path) -> Iterator[None]:
    """A finished run, held against concurrent writers, repaired if a publish was killed."""
    with publishing.open_run(run_dir, err.print):
        yield


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    truth: Path = typer.Option(..., "--truth", help="CSV with source_dataset, record_id, person_id."),
) -> None:
    """Score a finished run against the truth; writes RUN_DIR/evaluation.json."""
    from linkage.evaluate import evaluate_run

    with _open_run(run_dir):
        result = evaluate_run(run_dir, truth)
    _print_scores(result)


def _print_scores(result: dict) -> None:
    table = Table(title="Match quality against the truth")
    for col in ("", "precision", "recall", "F1"):
        table.add_column(col, justify="right" if col else "left")
    rows = [("pairwise", result["pairwise"]), ("cluster (B-cubed)", result["cluster"])]
    base = result.get("baseline")
    if base:
        rows += [("baseline pairwise", base["pairwise"]), ("baseline B-cubed", base["cluster"])]
    for name, s in rows:
        table.add_row(name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}")
    out.print(table)


@app.command()
def review(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    sample: int = typer.Option(200, "--sample", help="How many pairs to sample around the threshold."),
    seed: int = typer.Option(1, "--seed", help="Random seed for drawing the sample: the same seed gives the same pairs."),
    decisions: Optional[Path] = typer.Option(None, "--import", help="A decisions CSV (source_dataset_l, record_id_l, source_dataset_r, record_id_r, decision: match, not_match or unsure), or the filled-in review sample: kept, and applied by every later run; a review sample also gives precision and recall estimates."),
) -> None:
    """Clerical review: export pairs around the threshold and clusters to check, or import decisions."""
    from linkage import review as clerical

    with _open_run(run_dir):
        if decisions is None:
            path = clerical.export_review_sample(run_dir, n=sample, seed=seed)
            queue, counts = clerical.export_review_queue(run_dir)
            err.print(
                f"wrote {queue}: {counts['items']:,} clusters to check by eye ({counts['records']:,} records; "
                f"{counts[clerical.REASON_SPLIT]:,} {clerical.REASON_SPLIT}, {counts[clerical.REASON_PNC]:,} with "
                f"{clerical.REASON_PNC}, {counts[clerical.REASON_DUP]:,} with {clerical.REASON_DUP})"
            )
            err.print(
                f"wrote {path}: fill in the decision column (match, non-match or unsure), then "
                f"run: linkage review {run_dir} --import {path}"
            )
            return
        from linkage.report import write_report

        result = clerical.import_decisions(run_dir, decisions)
        if result.estimates is not None:
            write_report(run_dir)
    err.print(result.message)
    if result.estimate_note:
        err.print(result.estimate_note)
    if result.estimates is not None:
        _print_estimates(result.estimates, Path(run_dir) / clerical.REVIEW_DIR / clerical.ESTIMATES)


@app.command()
def find(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    record: Path = typer.Option(..., "--record", help="CSV or JSON file with one or a few records, laid out like a source of the job."),
    source: Optional[str] = typer.Option(None, "--source", help="The source the records are laid out like (default: the job's first)."),
    config: Optional[Path] = typer.Option(None, "--config", help="The run's config, if it is no longer where the manifest says."),
    top: int = typer.Option(5, "--top", help="How many candidate persons to list per record."),
) -> None:
    """Score one or a few records against a run and list the candidate persons (restricted)."""
    from linkage.find import find_records, summary

    with _open_run(run_dir):
        result = find_records(run_dir, record, source=source, config=config, top=top)
    for text in summary(result):
        out.print(text)
    err.print(
        f"wrote {result.out} (owner-only); {result.records} records in {result.seconds['total']:.2f} s "
        f"(scoring {result.seconds['score']:.2f} s)"
    )


@app.command()
def encode(
    config: Path = typer.Argument(..., help="The encode config (YAML): share, fields, sources, encodings."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the encoded extracts and their .encoding.json metadata."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder that relative source paths are resolved against (default: the config's folder)."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="File holding the share's secret (default: the LINKAGE_ENCODE_KEY environment variable)."),
    registry: Optional[Path] = typer.Option(None, "--registry", help="The record of which share each secret served (default: LINKAGE_ENCODE_REGISTRY, else ~/.local/share/linkage/encode-registry.json)."),
    file_format: str = typer.Option("parquet", "--format", help="parquet or csv."),
) -> None:
    """Encode extracts for linking without clear identifiers: keyed hashes and Bloom filters."""
    from linkage import encode as encoding

    if file_format not in ("parquet", "csv"):
        raise errors.UsageError(f"--format: {file_format!r} is not parquet or csv")
    cfg = encoding.load_encode_config(config)
    secret = encoding.resolve_secret(key_file)
    result = encoding.encode_extracts(cfg, config, data, out_dir, secret, encoding.registry_path(registry),
                                      "csv" if file_format == "csv" else "parquet")
    for warning in result.warnings:
        _say("warning", "bold yellow", f"{config}: {warning}")
    for s in result.sources:
        invalid = sum(n for reasons in s.invalid.values() for n in reasons.values())
        _say("encoded", "bold", f"{s.path}: {s.rows_written:,} of {s.rows_read:,} records, {s.rows_rejected:,} rejected"
             + (f" (reasons in {s.name}.rejects.csv)" if s.rows_rejected else "")
             + f", {invalid:,} values made missing by cleaning")
    (out_dir / "job_fields.yaml").write_text(result.job_fields, encoding="utf-8")
    err.print(f"the job's fields for these encodings are in {out_dir / 'job_fields.yaml'} (fingerprints only, no secret)")


def _print_estimates(est: dict, path: Path) -> None:
    table = Table(title="Match quality estimated from the clerical review")
    for col in ("", "estimate", "95% interval"):
        table.add_column(col, justify="right" if col else "left")
    for name, key in (("precision", "precision"), ("recall (upper bound)", "recall"), ("F1", "f1")):
        lo, hi = est[key]["ci95"]
        table.add_row(name, f"{est[key]['estimate']:.4f}", f"{lo:.4f} to {hi:.4f}")
    out.print(table)
    d = est["decisions"]
    out.print(
        f"{d['reviewed']:,} pairs judged ({d['match']:,} match, {d['non-match']:,} non-match); "
        f"{d['unsure']:,} unsure and {d['blank']:,} blank left out"
    )
    out.print(f"details (strata, intervals, caveats): {path}")


@app.command()
def demo(
    people: int = typer.Option(5000, "--people", help="How many synthetic people."),
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="The run directory to write."),
    seed: int = typer.Option(7, "--seed", help="Random seed for the synthetic people: the same seed gives the same data."),
) -> None:
    """Generate synthetic extracts, run the justice job on them and score it: the quick start."""
    from linkage.config import load_config
    from linkage.evaluate import evaluate_run
    from linkage.job import RunOptions, run_job
    from linkage.synthetic import generate

    data = out_dir.parent / f"{out_dir.name}-data"
    _say("1/3", "bold", f"generating {people:,} synthetic people into {data}")
    synth = generate(people=people, seed=seed, out=data, profile="realistic")
    _say("2/3", "bold", f"running {DEFAULT_CONFIG.name} on {sum(synth.rows.values()):,} records")
    loaded = load_config(DEFAULT_CONFIG)
    result = run_job(loaded, RunOptions(data_dir=data, out_dir=out_dir, throwaway_key=True))
    _print_run(result)
    _say("3/3", "bold", "scoring against the truth")
    with _open_run(result.run_dir):
        scores = evaluate_run(result.run_dir, data / "truth.csv")
    _print_scores(scores)
    err.print(f"report: {result.run_dir / 'report.html'}")



# --- the cross-government job (linkage.crossgov) ------------------------------------------------------

crossgov_app = typer.Typer(no_args_is_help=True, help="Link a justice run's persons to other departments' extracts.")
app.add_typer(crossgov_app, name="crossgov")


@crossgov_app.command("run")
def crossgov_run(
    config: Path = typer.Argument(..., help="The cross-government job config (configs/cross_government.yaml)."),
    justice_run: Path = typer.Option(..., "--justice-run", help="A finished justice run directory: its persons are the justice side."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder that relative source paths are resolved against (default: the config's folder)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="The run directory to write (default: runs/<job>)."),
    justice_source: str = typer.Option("justice", "--justice-source", help="The config's source that stands for the justice persons."),
    model_path: Optional[Path] = typer.Option(None, "--model", help="A saved model (restricted/model.json of an earlier cross-government run): skip training."),
    previous: Optional[Path] = typer.Option(None, "--previous", help="Last month's cross-government run: people outside justice keep its person ids (justice persons keep the justice run's)."),
) -> None:
    """Link the justice run's persons to department extracts; analyst person_id is the justice run's."""
    from linkage.config import load_config
    from linkage.crossgov import run_crossgov
    from linkage.job import RunOptions

    loaded = load_config(config)
    result = run_crossgov(loaded, justice_run, RunOptions(data, out_dir, model_path, previous=previous), justice_source)
    _print_run(result)


@crossgov_app.command("evaluate")
def crossgov_evaluate(
    run_dir: Path = typer.Argument(..., help="A finished cross-government run directory."),
    truth: list[Path] = typer.Option(..., "--truth", help="CSV (source_dataset, record_id, person_id) labelling the justice run's records and the department records; give it twice for two files (truth.csv, truth_departments.csv)."),
) -> None:
    """Score the department-to-justice-person links; writes RUN_DIR/crossgov_evaluation.json."""
    from linkage.crossgov import evaluate_crossgov

    with _open_run(run_dir):
        result = evaluate_crossgov(run_dir, truth)
    table = Table(title="Department records to justice persons")
    for col in ("", "precision", "recall", "F1", "links", "due"):
        table.add_column(col, justify="right" if col else "left")
    rows = [("all", result["pairwise"]), *result["by_source"].items(), ("all, end to end", result["end_to_end"])]
    for name, s in rows:
        table.add_row(name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", f"{s['links']:,}", f"{s['due']:,}")
    out.print(table)

# --- one place turns errors into exit codes ---------------------------------------------------------


class _SigintSeen:
    """Notes that Ctrl-C arrived, then raises KeyboardInterrupt as Python would.

    Libraries turn the KeyboardInterrupt into their own errors (DuckDB raises RuntimeError
    "Query interrupted", Splink wraps that in SplinkException): the note lets the CLI say
    "interrupted" whatever the exception looks like by the time it arrives.
    """

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True
        signal.default_int_handler(signum, frame)


_sigint = _SigintSeen()


@contextmanager
def _watch_sigint() -> Iterator[None]:
    # Only where Ctrl-C would raise KeyboardInterrupt anyway (not where SIGINT is ignored).
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _sigint.seen = False
    signal.signal(signal.SIGINT, _sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: sys.argv[1:]) and return the exit code."""
    warnings.simplefilter("ignore", category=FutureWarning)
    with _watch_sigint():
        return _run_cli(argv)


def _run_cli(argv: Sequence[str] | None) -> int:
    try:
        code = app(args=list(argv) if argv is not None else None, prog_name="linkage", standalone_mode=False)
    except Abort:  # end of input at a prompt
        err.print("aborted")
        return 1
    except TyperException as exc:  # bad arguments: the library's own message
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err.print(f"error: {exc}")
        return 1
    except BaseException as exc:  # noqa: BLE001 - the one place that catches everything
        return _fault(exc)
    # The library returns (not raises) its exit code: 130 when Ctrl-C reached it directly.
    if code == errors.INTERRUPTED:
        return _interrupted()
    return code if isinstance(code, int) else 0


def _interrupted() -> int:
    err.print("interrupted")
    return errors.INTERRUPTED


def _fault(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        raise exc
    if _sigint.seen or errors.is_interrupt(exc):
        return _interrupted()
    if isinstance(exc, LinkageError):  # our own message says most
        _say("error:", "red", str(exc))
        return 1
    fault = errors.os_fault(exc)  # a full disk or a refused write, however deep it is wrapped
    if fault is not None:
        _say("error:", "red", errors.describe_os_fault(*fault))
        return 1
    if errors.is_out_of_memory(exc):
        from linkage.engines import describe_out_of_memory

        _say("error:", "red", describe_out_of_memory(" ".join(str(e) for e in errors._chain(exc))))
        return 1
    if os.environ.get("LINKAGE_DEBUG"):
        traceback.print_exception(exc)
    _say("internal error:", "red", f"{type(exc).__name__}. This is a bug in linkage; "
         "rerun with LINKAGE_DEBUG=1 for the traceback and report it.")
    return 2


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``linkage`` script and ``python -m linkage``."""
    sys.exit(run_cli(argv))


if __name__ == "__main__":
    main()
