"""DuckDB's resources as the config sets them: a memory limit too low to spill within, a
spill folder that cannot be written or fills up. Each is exit 1 with a message naming the
setting to change, and the run already at --out is left as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import cli, config_variant, copy_of, fast_config


@pytest.fixture(scope="module")
def previous_run(justice_run, tmp_path_factory) -> tuple[Path, Path]:
    """A finished run at --out (a copy of the session's justice run), and the config that made it."""
    run, config = justice_run
    return config, copy_of(run, tmp_path_factory.mktemp("limits") / "run")


def _fingerprint(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def _rerun(previous_run, synth_dir, tmp_path, engine: dict) -> tuple[str, dict, dict]:
    config, out = previous_run
    before = _fingerprint(out)
    variant = config_variant(config, tmp_path / "limited.yaml", lambda raw: raw["engine"].update(engine))
    res = cli("run", str(variant), "--data", str(synth_dir), "--out", str(out))
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    return res.stderr, before, _fingerprint(out)


def test_unwritable_temp_directory_is_refused_before_any_work(previous_run, synth_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    stderr, before, after = _rerun(previous_run, synth_dir, tmp_path, {"temp_directory": str(blocker / "spill")})
    assert "engine.temp_directory" in stderr and "cannot write" in stderr
    assert "done read" not in stderr  # checked when the database opens, not at the first spill
    assert after == before


def test_memory_limit_below_what_the_job_can_spill_within(previous_run, synth_dir, tmp_path):
    stderr, before, after = _rerun(previous_run, synth_dir, tmp_path, {"memory_limit": "8MB"})
    assert "engine.memory_limit" in stderr and "Raise" in stderr
    assert after == before


def test_spill_space_that_fills_up(previous_run, synth_dir, tmp_path):
    stderr, before, after = _rerun(previous_run, synth_dir, tmp_path,
                                   {"memory_limit": "40MB", "max_temp_directory_size": "1KB"})
    assert "engine.max_temp_directory_size" in stderr and "engine.temp_directory" in stderr
    assert after == before


def test_spill_size_is_validated(tmp_path):
    config = config_variant(fast_config(tmp_path), tmp_path / "bad.yaml",
                            lambda raw: raw["engine"].update(max_temp_directory_size="plenty"))
    res = cli("validate", str(config))
    assert res.returncode == 1
    assert "max_temp_directory_size looks like" in res.stderr


def test_spill_disk_that_fills_mid_run(previous_run, synth_dir, tmp_path, key_env, monkeypatch, capsys):
    """The disk under the spill folder fills (DuckDB's own write fails, not its size cap)
    after the job has started: exit 1 naming engine.temp_directory, the run at --out as it
    was and no staging folder left."""
    import duckdb

    from linkage import cli as linkage_cli

    config, out = previous_run
    before = _fingerprint(out)

    def full(*args, **kwargs):
        raise duckdb.IOException('IO Error: Could not write file "/spill/duckdb_temp_block-1.block": '
                                 "No space left on device")

    monkeypatch.setattr("linkage.job._cluster_stage", full)
    code = linkage_cli.run_cli(["run", str(config), "--data", str(synth_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "no space left on the device" in err and "engine.temp_directory" in err
    assert _fingerprint(out) == before
    assert not list(out.parent.glob(f".{out.name}.staging-*"))
