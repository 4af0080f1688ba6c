"""The command line as a user and an attacker meet it: exit codes, plain-text messages,
Ctrl-C, locks, owner-only files, kills during publish, and people's files kept across runs."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import TEST_KEY, config_variant, fast_config
from linkage import cli, publish


def linkage(*args: str, env: dict | None = None, umask: int | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """The real entry point, ``python -m linkage``, with Ctrl-C at its default (as in a terminal)."""
    full_env = {**os.environ, "LINKAGE_PSEUDONYM_KEY": TEST_KEY, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    full_env.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, "-m", "linkage", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=600, preexec_fn=_child_setup(umask),
    )


def _child_setup(umask: int | None):
    def setup() -> None:
        # A shell runs background jobs with SIGINT ignored; a terminal user's Ctrl-C is not.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if umask is not None:
            os.umask(umask)
    return setup


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.fixture(scope="module")
def job(synth_dir, tmp_path_factory):
    """A finished run made under the usual umask 022, with an id registry; and its config."""
    work = tmp_path_factory.mktemp("cli")
    config = fast_config(work, outputs={"id_registry": "registry/ids.parquet"})
    out = work / "run"
    res = linkage("run", str(config), "--data", str(synth_dir), "--out", str(out), umask=0o022)
    assert res.returncode == 0, res.stderr
    return out, config


def copy_run(job, tmp_path: Path, name: str = "run") -> Path:
    out = tmp_path / name
    shutil.copytree(job[0], out)
    return out


# --- 2: the restricted zone is owner-only -----------------------------------------------------------


def test_restricted_zone_is_owner_only_under_umask_022(job):
    out, config = job
    restricted = modes(out / "restricted")
    assert restricted and all(m == (0o700 if (out / "restricted" / p).is_dir() else 0o600)
                              for p, m in restricted.items()), restricted
    # Analysts' side as the umask makes it.
    assert stat.S_IMODE((out / "analyst").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "manifest.json").stat().st_mode) == 0o644
    # The id registry holds record ids: owner-only too.
    registry = config.parent / "registry"
    assert stat.S_IMODE(registry.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in registry.iterdir()} == {
        "ids.parquet": 0o600, "ids.json": 0o600}
    # No copy of the run is left beside it.
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".run.")) == [".run.lock"]


def test_review_export_is_owner_only_and_its_command_stays_on_one_line(job, tmp_path):
    out = copy_run(job, tmp_path / ("a-long-folder-name-" * 4), "run")
    res = linkage("review", str(out), "--sample", "20", umask=0o022)
    assert res.returncode == 0, res.stderr
    review = out / "restricted" / "review"
    assert {p: m for p, m in modes(review).items()} == {".": 0o700, "review_sample.csv": 0o600,
                                                        "review_sample.json": 0o600, "review_clusters.csv": 0o600,
                                                        "review_clusters.json": 0o600}
    # 18: not wrapped at 80 columns when not a terminal: the suggested command is one line.
    csv_path = review / "review_sample.csv"
    assert f"run: linkage review {out} --import {csv_path}" in res.stderr.splitlines()[-1], res.stderr


# --- 19: review --import prints a summary; the JSON goes to a file ----------------------------------------


def test_review_import_prints_a_summary_table(job, tmp_path):
    out = copy_run(job, tmp_path)
    assert linkage("review", str(out), "--sample", "30").returncode == 0
    sample = out / "restricted" / "review" / "review_sample.csv"
    with sample.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["decision"] = "match" if float(row["match_probability"]) >= 0.5 else "non-match"
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = linkage("review", str(out), "--import", str(filled), umask=0o022)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) < 15, res.stdout
    assert "{" not in res.stdout
    assert re.search(r"precision\W+\d\.\d{4}\W+\d\.\d{4} to \d\.\d{4}", res.stdout), res.stdout
    estimates = out / "restricted" / "review" / "review_estimates.json"
    assert f"details (strata, intervals, caveats): {estimates}" in res.stdout
    assert json.loads(estimates.read_text())["decisions"]["reviewed"] == len(rows)
    assert stat.S_IMODE(estimates.stat().st_mode) == 0o600


# --- 10: Ctrl-C --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_2000(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("synth2000")
    res = linkage("synth", "--people", "2000", "--seed", "1", "--out", str(data))
    assert res.returncode == 0, res.stderr
    return data


@pytest.mark.parametrize("when", ["reading", "training"])
def test_ctrl_c_says_interrupted_exits_130_and_leaves_the_previous_run(job, data_2000, tmp_path, when):
    out = copy_run(job, tmp_path)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    env = {**os.environ, "LINKAGE_PSEUDONYM_KEY": TEST_KEY}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkage", "run", str(job[1]), "--data", str(data_2000), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_child_setup(None),
    )
    seen = []
    if when == "reading":
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.glob(".run.staging-*")):
            time.sleep(0.05)
        # 2: the staging folder is owner-only from the start.
        assert stat.S_IMODE(next(tmp_path.glob(".run.staging-*")).stat().st_mode) == 0o700
    else:  # inside Splink's DuckDB queries
        for line in proc.stderr:
            seen.append(line)
            if "done blocking guard" in line:
                break
        time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".run.staging-*")) and not list(tmp_path.glob(".run.retired-*"))


# --- 11: a kill during publish ----------------------------------------------------------------------


def test_reader_after_a_kill_between_the_renames_finds_the_whole_run(job, synth_dir, tmp_path):
    out = copy_run(job, tmp_path)
    manifest = (out / "manifest.json").read_bytes()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # What a publish killed between its two renames leaves: --out gone, the run parked beside it.
    os.replace(out, tmp_path / f".run.retired-{dead.pid}")
    res = linkage("evaluate", str(out), "--truth", str(synth_dir / "truth.csv"))
    assert res.returncode == 0, res.stderr
    assert "restored the previous run" in res.stderr
    assert (out / "manifest.json").read_bytes() == manifest
    assert (out / "evaluation.json").is_file()
    assert not list(tmp_path.glob(".run.retired-*"))


# --- 12: two runs into the same --out ----------------------------------------------------------------


def test_second_run_into_a_busy_folder_exits_1(job, synth_dir, tmp_path):
    out = copy_run(job, tmp_path)
    with publish.lock_run_dir(out):  # as a first run holds it
        for args in (("run", str(job[1]), "--data", str(synth_dir), "--out", str(out)),
                     ("evaluate", str(out), "--truth", str(synth_dir / "truth.csv")),
                     ("review", str(out))):
            res = linkage(*args)
            assert res.returncode == 1, res.stderr
            assert f"{out}: busy, another linkage command (process {os.getpid()}) is writing this run directory" in res.stderr
            assert "Traceback" not in res.stderr


# --- issue 14: a rerun keeps people's work --------------------------------------------------------


def test_rerun_into_the_same_out_keeps_review_files_and_evaluation(job, synth_dir, tmp_path):
    out = copy_run(job, tmp_path)
    assert linkage("evaluate", str(out), "--truth", str(synth_dir / "truth.csv")).returncode == 0
    evaluation = (out / "evaluation.json").read_bytes()
    review = out / "restricted" / "review"
    review.mkdir()
    (review / "decisions_week1.csv").write_text("pair_id,decision\n1,match\n")
    res = linkage("run", str(job[1]), "--data", str(synth_dir), "--out", str(out),
                  "--model", str(job[0] / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    assert (review / "decisions_week1.csv").read_text() == "pair_id,decision\n1,match\n"
    assert stat.S_IMODE((review / "decisions_week1.csv").stat().st_mode) == 0o600
    # The old scores are about the old run's people: kept, moved aside, and said so.
    assert (out / "previous" / "evaluation.json").read_bytes() == evaluation
    assert not (out / "evaluation.json").exists()
    assert (out / "restricted" / "previous" / "error_examples.parquet").is_file()
    kept = ["previous/evaluation.json", "restricted/previous/error_examples.parquet", "restricted/review/"]
    assert f"kept from the previous run: {', '.join(kept)}" in res.stderr, res.stderr[-1500:]
    assert json.loads((out / "manifest.json").read_text())["kept_from_previous_run"] == kept
    assert modes(out / "restricted" / "previous") == {".": 0o700, "error_examples.parquet": 0o600}


def test_out_that_is_not_a_run_is_never_replaced(job, synth_dir, tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    res = linkage("run", str(job[1]), "--data", str(synth_dir), "--out", str(folder))
    assert res.returncode == 1, res.stderr
    assert "holds files and is not a linkage run directory" in res.stderr
    assert (folder / "notes.txt").read_text() == "mine"


# --- 14: messages are plain text --------------------------------------------------------------------


def test_user_words_in_brackets_print_literally(job, synth_dir, tmp_path):
    data = tmp_path / "exports[/2024]"
    shutil.copytree(synth_dir, data)

    def brackets(raw):
        raw["sources"]["crest"]["columns"].update(surname="[red]surname")
        raw["sources"]["libra"]["columns"].update(date_of_birth="[/x]")

    # (Headers that are not configured are not listed, lest they be values: see test_sources.)
    config = config_variant(job[1], tmp_path / "job.yaml", brackets)
    res = linkage("run", str(config), "--data", str(data), "--out", str(tmp_path / "r"))
    assert res.returncode == 1, res.stderr
    assert "[red]surname" in res.stderr and "[/x]" in res.stderr
    assert "MarkupError" not in res.stderr and "Traceback" not in res.stderr
    res = linkage("run", str(config), "--data", str(tmp_path / "missing[/2024]"), "--out", str(tmp_path / "r"))
    assert res.returncode == 1 and "missing[/2024]" in res.stderr, res.stderr


def test_out_with_brackets_prints_literally_after_publishing(job, synth_dir, tmp_path):
    out = tmp_path / "run[/v2]"
    res = linkage("run", str(job[1]), "--data", str(synth_dir), "--out", str(out),
                  "--model", str(job[0] / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    assert f"published {out}:" in res.stderr


def test_install_hint_prints_as_is(job, synth_dir, tmp_path):
    blocker = tmp_path / "site" / "pyspark"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyspark is not installed (test)')\n")
    config = config_variant(job[1], tmp_path / "spark.yaml", lambda raw: raw.update(engine={"name": "spark"}))
    res = linkage("run", str(config), "--data", str(synth_dir), "--out", str(tmp_path / "r"),
                  env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])})
    assert res.returncode == 1, res.stderr
    assert "pip install -e '.[spark]'" in res.stderr


# --- 13: user-fixable faults exit 1 -----------------------------------------------------------------


def test_unwritable_out_exits_1(job, synth_dir, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere a mode allows: use a file system that refuses
        out = Path("/proc/linkage-test/run")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        out = locked / "run"
    res = linkage("run", str(job[1]), "--data", str(synth_dir), "--out", str(out))
    assert res.returncode == 1, res.stderr
    assert "Give an --out folder you can write to" in res.stderr
    assert "internal error" not in res.stderr


@pytest.mark.parametrize(
    "fault",
    [OSError(errno.ENOSPC, "No space left on device", "/data/run/.run.staging-1/restricted/x.parquet"),
     duckdb.IOException("IO Error: Could not write file \"/tmp/spill/x.block\": No space left on device")],
    ids=["OSError", "DuckDB"],
)
def test_full_disk_exits_1(job, synth_dir, tmp_path, monkeypatch, capsys, fault):
    def full(*args, **kwargs):
        raise RuntimeError("wrapped by a library") from fault

    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setattr("linkage.job._run", full)
    code = cli.run_cli(["run", str(job[1]), "--data", str(synth_dir), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "no space left on the device" in err and "--out" in err
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.staging-*"))


@pytest.mark.parametrize("command", ["evaluate", "review"])
def test_evaluate_or_review_of_a_synth_folder_exits_1(synth_dir, command):
    args = [command, str(synth_dir)] + (["--truth", str(synth_dir / "truth.csv")] if command == "evaluate" else [])
    res = linkage(*args)
    assert res.returncode == 1, res.stderr
    assert "a folder of synthetic extracts written by `linkage synth`, not a run directory" in res.stderr
    assert not list(synth_dir.parent.glob(f".{synth_dir.name}.lock"))


def test_previous_that_is_a_synth_folder_exits_1(job, synth_dir, tmp_path):
    res = linkage("run", str(job[1]), "--data", str(synth_dir), "--out", str(tmp_path / "r"), "--previous", str(synth_dir))
    assert res.returncode == 1, res.stderr
    assert f"{synth_dir}: this is a folder of synthetic extracts written by `linkage synth`" in res.stderr


def test_em_step_the_data_cannot_support_exits_1(job, synth_dir, tmp_path):
    config = config_variant(job[1], tmp_path / "em.yaml", lambda raw: raw["model"]["training"].update(
        em_blocking_rules=[{"sql": "l.surname = r.surname AND l.surname = 'NO-SUCH-SURNAME'"}]))
    res = linkage("run", str(config), "--data", str(synth_dir), "--out", str(tmp_path / "r"))
    assert res.returncode == 1, res.stderr
    assert "training stopped at 'm by EM, blocking on" in res.stderr
    assert "(EMTrainingException: Training rule `l.surname = r.surname AND l.surname = 'NO-SUCH-SURNAME'` " \
           "resulted in no record pairs). Give the model more to learn from" in res.stderr
    assert "internal error" not in res.stderr


# --- 16: arguments, version, help --------------------------------------------------------------------


@pytest.mark.parametrize("args", [["run", "--bogus"], ["run"], ["synth", "--people", "many", "--out", "x"], ["nonsense"]])
def test_bad_arguments_exit_1(args):
    res = linkage(*args)
    assert res.returncode == 1, res.stderr
    assert "Usage: linkage" in res.stderr and "Traceback" not in res.stderr


def test_version_and_python_dash_m():
    import linkage as package

    res = linkage("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"linkage {package.__version__}"


def test_help_has_no_bool_metavar_and_seeds_have_help():
    for command in ("synth", "validate", "run", "evaluate", "review", "demo"):
        res = linkage(command, "--help")
        assert res.returncode == 0, res.stderr
        assert "<bool>" not in res.stdout
    assert re.search(r"--keep-work\s+Keep the DuckDB work database", linkage("run", "--help").stdout)
    assert re.search(r"--seed <int>\s+Random seed for drawing the sample", linkage("review", "--help").stdout)
    assert re.search(r"--seed <int>\s+Random seed for the synthetic people", linkage("demo", "--help").stdout)
