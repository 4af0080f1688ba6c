"""Publishing a run: owner-only modes, the lock, the swap and recovery from a kill, carrying
people's files across, and the formula escaping of CSVs a person opens."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from linkage import publish
from linkage.errors import InputError

RUN_MANIFEST = {"config_sha256": "abc", "inputs": {"pnc": {}}, "model": {"threshold_match_probability": 0.9}}


def fake_run(path: Path, marker: str) -> Path:
    """A folder shaped like a run, its manifest marked so that we can tell runs apart."""
    (path / "restricted").mkdir(parents=True)
    (path / "analyst").mkdir()
    (path / "manifest.json").write_text(json.dumps({**RUN_MANIFEST, "marker": marker}))
    (path / "restricted" / "crosswalk.parquet").write_text(marker)
    (path / "analyst" / "persons.parquet").write_text(marker)
    return path


def marker(path: Path) -> str:
    return json.loads((path / "manifest.json").read_text())["marker"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- CSV formula escaping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell, shown",
    [
        ("=1+1", "'=1+1"),
        ("+44 20 7946 0000", "'+44 20 7946 0000"),
        ("-3", "'-3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\rx", "'\rx"),
        ("SMITH", "SMITH"),
        ("O'SHEA", "O'SHEA"),
        ("'OSHEA", "'OSHEA"),
        ("a=b", "a=b"),
        ("", ""),
        (None, None),
    ],
)
def test_csv_safe(cell, shown):
    assert publish.csv_safe(cell) == shown
    # The SQL form used for DuckDB's COPY agrees with the Python form.
    assert duckdb.connect().execute(f"SELECT {publish.csv_safe_sql('x')} FROM (SELECT ?::VARCHAR AS x)", [cell]).fetchall()[0][0] == shown
    if cell is not None:
        assert publish.csv_unsafe(shown) == cell


# --- modes ----------------------------------------------------------------------------------------


def test_finalise_modes_restricted_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0o000)  # the loosest umask: everything would be world-writable
    try:
        run = fake_run(tmp_path / "run", "a")
        (run / "restricted" / "review").mkdir()
        (run / "restricted" / "review" / "review_sample.csv").write_text("x")
        (run / "work").mkdir()
        (run / "work" / "linkage.duckdb").write_text("every record")
        publish.finalise_modes(run, 0o022)
    finally:
        os.umask(old)
    assert mode(run / "restricted") == 0o700
    assert mode(run / "restricted" / "review") == 0o700
    assert mode(run / "restricted" / "crosswalk.parquet") == 0o600
    assert mode(run / "restricted" / "review" / "review_sample.csv") == 0o600
    assert mode(run / "work") == 0o700 and mode(run / "work" / "linkage.duckdb") == 0o600  # --keep-work's database
    # The rest as the user's umask makes it.
    assert mode(run) == 0o755 and mode(run / "analyst") == 0o755
    assert mode(run / "manifest.json") == 0o644


def test_private_umask_makes_new_files_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        with publish.private_umask():
            (tmp_path / "d").mkdir()
            (tmp_path / "d" / "f").write_text("x")
        (tmp_path / "after").write_text("x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "d") == 0o700 and mode(tmp_path / "d" / "f") == 0o600
    assert mode(tmp_path / "after") == 0o644  # the umask is given back


# --- what a run directory is ---------------------------------------------------------------------


def test_read_run_manifest_tells_a_synth_folder_from_a_run(tmp_path):
    synth = tmp_path / "data"
    synth.mkdir()
    (synth / "manifest.json").write_text(json.dumps({"people": 10, "profile": "realistic", "seed": 1, "rows": {}}))
    with pytest.raises(InputError, match=r"folder of synthetic extracts written by `linkage synth`, not a run directory"):
        publish.read_run_manifest(synth)
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"not the manifest of a `linkage run`"):
        publish.read_run_manifest(other)
    assert publish.read_run_manifest(fake_run(tmp_path / "run", "a"))["marker"] == "a"


def test_out_dir_that_is_someone_elses_folder_is_refused(tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds files and is not a linkage run directory"):
        publish.check_out_dir(folder)
    publish.check_out_dir(tmp_path / "new")
    publish.check_out_dir(fake_run(tmp_path / "run", "a"))


# --- the lock -------------------------------------------------------------------------------------


def test_second_taker_of_the_lock_is_told_busy(tmp_path):
    run = tmp_path / "run"
    with publish.lock_run_dir(run):
        code = (
            "import sys; from pathlib import Path; from linkage import publish\n"
            "try:\n    publish.lock_run_dir(Path(sys.argv[1])).__enter__()\n"
            "except publish.RunBusyError as e:\n    print(e); sys.exit(3)\n"
        )
        res = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
        assert res.returncode == 3, res.stderr
        assert f"busy, another linkage command (process {os.getpid()})" in res.stdout
    assert mode(publish.lock_path(run)) == 0o600
    with publish.lock_run_dir(run):  # released: taken again
        pass


# --- the swap and a kill in the middle of it ------------------------------------------------------


def test_publish_swaps_and_leaves_nothing(tmp_path):
    run = fake_run(tmp_path / "run", "old")
    staging = fake_run(publish.staging_dir(run), "new")
    publish.publish(staging, run)
    assert marker(run) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _die_during_publish(tmp_path: Path, run: Path, staging: Path, kill_at: str) -> None:
    """Publish in a child process that is killed (os._exit) at ``kill_at``."""
    code = f"""
import os, sys
from pathlib import Path
from linkage import publish
run, staging = Path(sys.argv[1]), Path(sys.argv[2])
if {kill_at!r} == "between the two renames":
    def no_exchange(a, b):
        raise OSError(22, "Invalid argument")
    publish._exchange = no_exchange
    real, calls = os.replace, []
    def replace(a, b):
        calls.append(a)
        if len(calls) == 2:
            os._exit(9)
        real(a, b)
    os.replace = replace
else:  # after the exchange, before the old run is deleted
    publish.remove_leftover = lambda path: os._exit(9)
publish.publish(staging, run)
"""
    proc = subprocess.run([sys.executable, "-c", code, str(run), str(staging)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr


def test_killed_between_the_two_renames_the_next_reader_restores_the_run(tmp_path):
    run = fake_run(tmp_path / "run", "old")
    staging = fake_run(tmp_path / ".run.staging-999999", "new")
    _die_during_publish(tmp_path, run, staging, "between the two renames")
    assert not run.exists()  # the window the fallback has: the parked run is beside it
    [retired] = tmp_path.glob(".run.retired-*")
    assert marker(retired) == "old" and mode(retired) == 0o700  # parked owner-only
    with publish.lock_run_dir(run):
        notes = publish.recover(run)
    assert marker(run) == "old"  # a whole run again
    assert any("restored the previous run" in n for n in notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]


def test_killed_after_the_exchange_the_new_run_is_whole_and_the_old_copy_is_cleaned(tmp_path):
    run = fake_run(tmp_path / "run", "old")
    staging = fake_run(tmp_path / ".run.staging-999999", "new")
    _die_during_publish(tmp_path, run, staging, "after the exchange")
    assert marker(run) == "new"  # the reader already sees the whole new run
    assert marker(staging) == "old"  # the old run, restricted data, left behind ...
    with publish.lock_run_dir(run):
        notes = publish.recover(run)
    assert not staging.exists()  # ... and removed by the next taker of the lock
    assert notes == [f"removed {staging.name}, left by an interrupted run"]


def test_a_failed_second_rename_puts_the_old_run_back(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run", "old")
    staging = fake_run(publish.staging_dir(run), "new")

    def no_exchange(a, b):
        raise OSError(errno.EINVAL, "Invalid argument")

    real, calls = os.replace, []

    def replace(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(a, b)

    monkeypatch.setattr(publish, "_exchange", no_exchange)
    monkeypatch.setattr(publish.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        publish.publish(staging, run)
    assert marker(run) == "old"
    assert not list(tmp_path.glob(".run.retired-*"))


def test_leftovers_of_a_live_process_are_left_alone(tmp_path):
    run = fake_run(tmp_path / "run", "old")
    live = fake_run(tmp_path / f".run.staging-{os.getppid()}", "someone else's")
    assert publish.recover(run) == []
    assert live.exists()


# --- carrying people's work across ----------------------------------------------------------------


def test_carry_over_keeps_what_the_new_run_did_not_produce(tmp_path):
    old = fake_run(tmp_path / "run", "old")
    (old / "restricted" / "review").mkdir()
    (old / "restricted" / "review" / "review_sample.csv").write_text("decisions")
    (old / "restricted" / "decisions.parquet").write_text("store")
    (old / "evaluation.json").write_text("{}")
    (old / "notes.txt").write_text("mine")
    (old / "analyst" / "dropped_source.parquet").write_text("stale")  # the run's own: not carried
    (old / "work").mkdir()
    (old / "work" / "linkage.duckdb").write_text("db")
    new = fake_run(tmp_path / "staging", "new")
    carried = publish.carry_over(old, new)
    assert sorted(carried) == ["notes.txt", "previous/evaluation.json", "restricted/decisions.parquet",
                               "restricted/review/"]
    assert (new / "restricted" / "review" / "review_sample.csv").read_text() == "decisions"
    assert (new / "restricted" / "crosswalk.parquet").read_text() == "new"  # the new run's own wins
    assert not (new / "analyst" / "dropped_source.parquet").exists()
    assert not (new / "work").exists()
    assert (old / "restricted" / "review" / "review_sample.csv").exists()  # the old run is whole until the swap
