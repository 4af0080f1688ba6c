"""The ``linkage`` command: synth, validate, run, evaluate, review, demo.

Exit codes: 0 success; 1 a problem the user can fix (bad config, bad input, bad
arguments), reported in one message without a traceback; 2 an internal error (set
``LINKAGE_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Optional

import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.table import Table

from linkage.errors import LinkageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Record linkage for justice administrative data.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "justice.yaml"


@app.command()
def synth(
    people: int = typer.Option(..., "--people", help="How many people to generate."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the five extracts and truth.csv to."),
    seed: int = typer.Option(1, "--seed", help="Random seed: the same seed gives identical files."),
    profile: str = typer.Option("realistic", "--profile", help="clean, realistic or hard."),
) -> None:
    """Generate synthetic PNC, prison, probation, Libra and CREST extracts with known truth."""
    from linkage.synthetic import generate

    result = generate(people=people, seed=seed, out=out_dir, profile=profile)
    total = sum(result.rows.values())
    err.print(
        f"wrote {total:,} records for {people:,} people to {result.out} "
        f"({', '.join(f'{k} {v:,}' for k, v in result.rows.items())}); truth in truth.csv"
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
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep the DuckDB work database in the run directory."),
) -> None:
    """Run the whole job: read, standardise, train, predict, cluster, de-identify, publish."""
    from linkage.config import load_config
    from linkage.job import RunOptions, run_job

    loaded = load_config(config)
    result = run_job(loaded, RunOptions(data, out_dir, model_path, previous, keep_work=keep_work))
    _print_run(result)


def _print_run(result) -> None:
    rows = result.manifest["rows"]
    read = sum(r["read"] for r in rows.values())
    rejected = sum(r["rejected"] for r in rows.values())
    people = result.manifest["clusters"]["clusters"]
    err.print(
        f"[bold]published[/] {result.run_dir}: {read:,} records read, {rejected:,} rejected, "
        f"{people:,} people ({result.manifest['total_seconds']:.1f} s)"
    )


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    truth: Path = typer.Option(..., "--truth", help="CSV with source_dataset, record_id, person_id."),
) -> None:
    """Score a finished run against the truth; writes RUN_DIR/evaluation.json."""
    from linkage.evaluate import evaluate_run

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
    seed: int = typer.Option(1, "--seed"),
    decisions: Optional[Path] = typer.Option(None, "--import", help="A filled-in review CSV: estimate precision and recall from it."),
) -> None:
    """Clerical review: export pairs around the threshold, or import the decisions."""
    from linkage import review as clerical

    if decisions is None:
        path = clerical.export_review_sample(run_dir, n=sample, seed=seed)
        err.print(f"wrote {path}: fill in the decision column (match, non-match or unsure), then "
                  f"run: linkage review {run_dir} --import {path}")
        return
    from linkage.report import write_report

    est = clerical.import_review_decisions(run_dir, decisions)
    write_report(run_dir)
    out.print_json(data=est)


@app.command()
def demo(
    people: int = typer.Option(5000, "--people", help="How many synthetic people."),
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="The run directory to write."),
    seed: int = typer.Option(7, "--seed"),
) -> None:
    """Generate synthetic extracts, run the justice job on them and score it: the quick start."""
    from linkage.config import load_config
    from linkage.evaluate import evaluate_run
    from linkage.job import RunOptions, run_job
    from linkage.synthetic import generate

    data = out_dir.parent / f"{out_dir.name}-data"
    err.print(f"[bold]1/3[/] generating {people:,} synthetic people into {data}")
    synth = generate(people=people, seed=seed, out=data, profile="realistic")
    err.print(f"[bold]2/3[/] running {DEFAULT_CONFIG.name} on {sum(synth.rows.values()):,} records")
    loaded = load_config(DEFAULT_CONFIG)
    result = run_job(loaded, RunOptions(data_dir=data, out_dir=out_dir, throwaway_key=True))
    _print_run(result)
    err.print("[bold]3/3[/] scoring against the truth")
    scores = evaluate_run(result.run_dir, data / "truth.csv")
    _print_scores(scores)
    err.print(f"report: {result.run_dir / 'report.html'}")


def main() -> None:
    """Entry point: one place turns errors into exit codes."""
    warnings.simplefilter("ignore", category=FutureWarning)
    try:
        app(standalone_mode=False)
    except LinkageError as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit):
            raise
        err.print("interrupted")
        sys.exit(130)
    except (TyperException, typer.Abort, typer.Exit) as exc:
        # Usage errors (unknown option, missing argument): typer's own message.
        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        if hasattr(exc, "show"):
            exc.show()
        sys.exit(getattr(exc, "exit_code", 1))
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if os.environ.get("LINKAGE_DEBUG"):
            traceback.print_exc()
        err.print(
            f"[red]internal error:[/] {type(exc).__name__}. This is a bug in linkage; "
            "rerun with LINKAGE_DEBUG=1 for the traceback and report it."
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
