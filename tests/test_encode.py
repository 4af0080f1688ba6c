"""``linkage encode`` and jobs on encoded fields: through the CLI, with the pure pieces tested alone."""

from __future__ import annotations

import json
import secrets
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import cli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_encode import FIELDS, SOURCES, encoded_job  # noqa: E402

from linkage.config import parse_config  # noqa: E402
from linkage.encode import (  # noqa: E402
    KEY_ENV, BloomEncoder, EncodeConfig, EncodeSecret, keyed_hash, positions, qgrams, resolve_secret,
)
from linkage.errors import ConfigError, LinkageError  # noqa: E402


def _dice(a: str, b: str) -> float:
    x, y = int(a, 16), int(b, 16)
    return 2 * bin(x & y).count("1") / (bin(x).count("1") + bin(y).count("1"))


def _config(**bloom) -> EncodeConfig:
    return EncodeConfig.model_validate({
        "share": "unit-share", "fields": {"surname": {"type": "name"}},
        "sources": {"s": {"path": "s.csv", "record_id": "id", "columns": {"surname": "surname"}}},
        "bloom": bloom, "encodings": {"surname_bf": {"bloom": ["surname"]}},
    })


SECRET = EncodeSecret(secrets.token_hex(32).encode(), "test")


# --- pure pieces ---------------------------------------------------------------------------


def test_qgrams_are_padded_per_word():
    assert qgrams("ANN", 2) == ["_A", "AN", "NN", "N_"]
    assert qgrams("AL BO", 2) == ["_A", "AL", "L_", "_B", "BO", "O_"]
    assert qgrams("AB", 1) == ["A", "B"]


def test_positions_are_keyed_and_in_range():
    a = positions(b"k1", "AN", 40, 1024)
    assert len(a) == 40 and all(0 <= p < 1024 for p in a)
    assert a == positions(b"k1", "AN", 40, 1024)
    assert a != positions(b"k2", "AN", 40, 1024)


def test_bloom_filters_keep_similarity_and_hardening_changes_their_shape():
    enc = BloomEncoder(SECRET, _config(), "surname_bf")
    smith, smyth, jones = enc.hexes([enc.raw([v]) for v in ("SMITH", "SMYTH", "JONES")])
    assert len(smith) == 1024 // 4
    assert _dice(smith, smith) == 1
    assert _dice(smith, smyth) > 0.6 > _dice(smith, jones)
    folded = BloomEncoder(SECRET, _config(hardening={"xor_fold": True}), "surname_bf")
    assert len(folded.hexes([folded.raw(["SMITH"])])[0]) == 512 // 4
    balanced = BloomEncoder(SECRET, _config(hardening={"balance": True}), "surname_bf")
    for h in balanced.hexes([balanced.raw([v]) for v in ("SMITH", "O CONNOR-WILLIAMSON")]):
        assert len(h) == 2048 // 4 and bin(int(h, 16)).count("1") == 1024  # always half the bits


def test_salt_keys_the_filter():
    enc = BloomEncoder(SECRET, _config(), "surname_bf")
    assert enc.raw(["SMITH"], "1980") == enc.raw(["SMITH"], "1980") != enc.raw(["SMITH"], "1981")


def test_keyed_hash_depends_on_the_key_and_every_part():
    assert keyed_hash(b"a", ["X", "Y"]) != keyed_hash(b"b", ["X", "Y"])
    assert keyed_hash(b"a", ["XY", ""]) != keyed_hash(b"a", ["X", "Y"])
    assert len(keyed_hash(b"a", ["X"])) == 32


def test_fingerprint_covers_the_settings_and_not_the_secret():
    cfg, folded = _config(), _config(hardening={"xor_fold": True})
    fp = SECRET.fingerprint(cfg.settings("surname_bf"))
    assert fp == SECRET.fingerprint(cfg.settings("surname_bf"))
    assert fp != SECRET.fingerprint(folded.settings("surname_bf"))
    other = EncodeSecret(secrets.token_hex(32).encode(), "test")
    assert fp != other.fingerprint(cfg.settings("surname_bf"))
    assert SECRET.secret.decode() not in repr(SECRET)


# --- through the CLI -----------------------------------------------------------------------


def _encode_config(path: Path, share: str, encodings: dict | None = None, sources: dict | None = None) -> Path:
    from bench_encode import ENCODINGS

    path.write_text(yaml.safe_dump({"share": share, "fields": FIELDS, "sources": sources or SOURCES,
                                    "encodings": encodings or ENCODINGS}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic extracts, a secret, and both extracts encoded with it."""
    base = tmp_path_factory.mktemp("encode")
    data = base / "data"
    assert cli("synth", "--people", "300", "--seed", "5", "--out", str(data)).returncode == 0
    key = secrets.token_hex(32)
    env = {"LINKAGE_ENCODE_KEY": key, "LINKAGE_ENCODE_REGISTRY": str(base / "registry.json")}
    config = _encode_config(base / "encode.yaml", "test-share-a")
    res = cli("encode", str(config), "--data", str(data), "--out", str(base / "enc"), env=env)
    assert res.returncode == 0, res.stderr
    return {"base": base, "data": data, "key": key, "env": env, "enc": base / "enc", "stderr": res.stderr}


def test_encode_writes_encodings_and_metadata_without_the_secret(world):
    enc = world["enc"]
    frame = pd.read_parquet(enc / "prison.parquet")
    raw = pd.read_csv(world["data"] / "prison.csv", dtype=str)
    assert list(frame["booking_id"]) == list(raw["booking_id"])  # every record, in order
    assert frame["surname_bf"].str.fullmatch("[0-9a-f]{256}").all()
    assert frame["surname_h"].dropna().str.fullmatch("[0-9a-f]{32}").all()
    # No clear value anywhere in the encoded extract.
    assert not set(raw["last_name"].dropna()) & set(frame.astype(str).stack())
    meta = json.loads((enc / "prison.parquet.encoding.json").read_text())
    assert meta["share"] == "test-share-a" and meta["rows"]["read"] == len(raw)
    assert set(meta["encodings"]) == set(frame.columns) - {"booking_id"}
    for path in enc.iterdir():
        assert world["key"] not in path.read_text(errors="replace")
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0 or path.name == "job_fields.yaml"
    assert world["key"] not in world["stderr"]


def test_leaky_encodings_are_warned_by_name(world):
    assert "encodings.sex_h: encodes sex alone" in world["stderr"]
    assert "encodings.dob_year_h: encodes date_of_birth_year alone" in world["stderr"]
    assert "encodings.surname_bf" not in world["stderr"]


def test_an_encoded_job_links(world, tmp_path):
    """The benchmark's encoded job (benchmarks/bench_encode.py compares it with the clear one
    at scale), with training sized for a test."""
    truth = tmp_path / "truth.csv"
    t = pd.read_csv(world["data"] / "truth.csv", dtype=str)
    t[t.source_dataset.isin(list(SOURCES))].to_csv(truth, index=False)
    config = encoded_job(tmp_path, "plain", world["enc"])
    raw = yaml.safe_load(config.read_text())
    raw["model"]["training"].update(u_max_pairs=200_000, em_max_pairs=200_000, u_chunks=1)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    run = tmp_path / "run"
    res = cli("run", str(config), "--data", str(world["enc"]), "--out", str(run))
    assert res.returncode == 0, res.stderr
    assert cli("evaluate", str(run), "--truth", str(truth)).returncode == 0
    scores = json.loads((run / "evaluation.json").read_text())["pairwise"]
    assert scores["precision"] > 0.95 and scores["recall"] > 0.85, scores
    manifest = json.loads((run / "manifest.json").read_text())
    assert sum(r["read"] for r in manifest["rows"].values()) == len(t[t.source_dataset.isin(list(SOURCES))])
    # The manifest records each compared encoding's settings and fingerprint, never the secret.
    encodings = manifest["encodings"]
    assert set(encodings) == set(SOURCES)
    for sname, entry in encodings.items():
        meta = json.loads((world["enc"] / f"{sname}.parquet.encoding.json").read_text())
        assert entry["share"] == meta["share"]
        for field, enc in entry["fields"].items():
            assert enc["fingerprint"] == meta["encodings"][enc["column"]]["fingerprint"]
            assert enc["fingerprint"] == raw["fields"][field]["fingerprint"]
    assert world["key"] not in (run / "manifest.json").read_text()


def test_a_job_refuses_encodings_made_with_another_secret(world, tmp_path):
    other = tmp_path / "other"
    env = {"LINKAGE_ENCODE_KEY": secrets.token_hex(32), "LINKAGE_ENCODE_REGISTRY": str(tmp_path / "reg.json")}
    config = _encode_config(tmp_path / "encode.yaml", "test-share-a", sources={"probation": SOURCES["probation"]})
    assert cli("encode", str(config), "--data", str(world["data"]), "--out", str(other), env=env).returncode == 0
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("prison.parquet", "prison.parquet.encoding.json"):
        (mixed / name).write_bytes((world["enc"] / name).read_bytes())
    for name in ("probation.parquet", "probation.parquet.encoding.json"):
        (mixed / name).write_bytes((other / name).read_bytes())
    job = encoded_job(tmp_path, "plain", world["enc"])
    res = cli("run", str(job), "--data", str(mixed), "--out", str(tmp_path / "run"))
    assert res.returncode == 1, res.stderr
    assert "sources.probation.columns.surname_bf: probation.parquet column 'surname_bf' was encoded with a " \
           "different secret or different settings than the job expects" in res.stderr
    assert "sources.prison" not in res.stderr
    (mixed / "probation.parquet.encoding.json").unlink()
    res = cli("run", str(job), "--data", str(mixed), "--out", str(tmp_path / "run"))
    assert res.returncode == 1 and "no encoding metadata: probation.parquet.encoding.json" in res.stderr


def test_a_secret_serves_one_share(world, tmp_path):
    config = _encode_config(tmp_path / "encode.yaml", "test-share-b", sources={"prison": SOURCES["prison"]})
    res = cli("encode", str(config), "--data", str(world["data"]), "--out", str(tmp_path / "b"), env=world["env"])
    assert res.returncode == 1
    assert "was used for share 'test-share-a'" in res.stderr and "Make a new secret for share 'test-share-b'" in res.stderr
    assert world["key"] not in res.stderr


def test_a_missing_secret_is_refused(world, tmp_path):
    config = _encode_config(tmp_path / "encode.yaml", "test-share-c", sources={"prison": SOURCES["prison"]})
    env = {"LINKAGE_ENCODE_KEY": "", "LINKAGE_ENCODE_REGISTRY": str(tmp_path / "reg.json")}
    res = cli("encode", str(config), "--data", str(world["data"]), "--out", str(tmp_path / "o"), env=env)
    assert res.returncode == 1 and "no encoding secret: set LINKAGE_ENCODE_KEY or give --key-file" in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("key, message", [
    ("Zq9xW2", "shorter than 16 characters"),
    ("passwordpassword1234", "too predictable"),
    ("abababababababababababababababab", "too predictable"),
])
def test_weak_secrets_are_refused_without_showing_them(monkeypatch, key, message):
    monkeypatch.setenv(KEY_ENV, key)
    with pytest.raises(LinkageError, match=message) as info:
        resolve_secret(None)
    assert key not in str(info.value)


def test_bad_input_names_file_row_and_field(world, tmp_path):
    raw = pd.read_csv(world["data"] / "prison.csv", dtype=str)
    raw.loc[7, "booking_id"] = raw.loc[3, "booking_id"]
    data = tmp_path / "data"
    data.mkdir()
    raw.to_csv(data / "prison.csv", index=False)
    config = _encode_config(tmp_path / "encode.yaml", "test-share-d", sources={"prison": SOURCES["prison"]})
    env = {"LINKAGE_ENCODE_KEY": secrets.token_hex(32), "LINKAGE_ENCODE_REGISTRY": str(tmp_path / "reg.json")}
    res = cli("encode", str(config), "--data", str(data), "--out", str(tmp_path / "o"), env=env)
    assert res.returncode == 1
    assert "prison.csv: column 'booking_id' (the record id) repeats" in res.stderr and "rows 4, 8" in res.stderr
    assert raw.loc[3, "booking_id"] not in res.stderr
    # A date column no format reads: file, column, field and rows named.
    raw = pd.read_csv(world["data"] / "prison.csv", dtype=str)
    raw["date_of_birth"] = "31/12/1980"
    raw.to_csv(data / "prison.csv", index=False)
    res = cli("encode", str(config), "--data", str(data), "--out", str(tmp_path / "o"), env=env)
    assert res.returncode == 1
    assert "column 'date_of_birth' (date_of_birth) is unreadable" in res.stderr and "rows 1, 2, 3" in res.stderr
    # A config naming a column its fields do not produce.
    bad = _encode_config(tmp_path / "bad.yaml", "test-share-d", encodings={"x_h": {"hash": ["surname_soundex"]}},
                         sources={"prison": SOURCES["prison"]})
    res = cli("encode", str(bad), "--data", str(data), "--out", str(tmp_path / "o"), env=env)
    assert res.returncode == 1 and "encodings.x_h: 'surname_soundex' is not a column of the declared fields" in res.stderr


def test_rows_with_nothing_to_encode_are_accounted_for(world, tmp_path):
    raw = pd.read_csv(world["data"] / "prison.csv", dtype=str)
    for col in ("first_name", "last_name", "date_of_birth", "gender", "pnc_number"):
        raw.loc[2, col] = None
    data = tmp_path / "data"
    data.mkdir()
    raw.to_csv(data / "prison.csv", index=False)
    config = _encode_config(tmp_path / "encode.yaml", "test-share-e", sources={"prison": SOURCES["prison"]})
    env = {"LINKAGE_ENCODE_KEY": secrets.token_hex(32), "LINKAGE_ENCODE_REGISTRY": str(tmp_path / "reg.json")}
    res = cli("encode", str(config), "--data", str(data), "--out", str(tmp_path / "o"), "--format", "csv", env=env)
    assert res.returncode == 0, res.stderr
    written = pd.read_csv(tmp_path / "o" / "prison.csv", dtype=str)
    rejects = pd.read_csv(tmp_path / "o" / "prison.rejects.csv")
    assert len(written) + len(rejects) == len(raw)
    assert list(rejects["row"]) == [3] and "no value in any field" in rejects["reason"][0]


@pytest.mark.parametrize("spec, message", [
    ({"type": "encoded", "encoding": "bloom", "fingerprint": "0" * 32}, "a bloom encoding needs 'bits'"),
    ({"type": "encoded", "encoding": "hash", "fingerprint": "xyz"}, "fields.name_h.fingerprint"),
    ({"type": "encoded", "encoding": "hash", "bits": 64, "fingerprint": "0" * 32}, "bits applies to encoding: bloom only"),
    ({"type": "encoded", "encoding": "bloom", "bits": 64, "dice": [0.7, 0.9], "fingerprint": "0" * 32},
     "most similar first"),
])
def test_the_encoded_type_checks_its_options(tmp_path, spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(yaml.safe_dump({
            "job": "t", "fields": {"name_h": spec},
            "sources": {"a": {"path": "a.csv", "record_id": "id", "columns": {"name_h": "name_h"}}},
            "model": {"blocking_rules": [["name_h"]], "comparisons": [{"field": "name_h"}],
                      "training": {"prior": {"probability": 0.001}, "em_blocking_rules": [["name_h"]]}},
        }), tmp_path / "job.yaml")


def test_bloom_fields_get_dice_levels_the_config_accepts(tmp_path):
    cfg = parse_config(yaml.safe_dump({
        "job": "t", "fields": {"s_bf": {"type": "encoded", "encoding": "bloom", "bits": 64, "fingerprint": "0" * 32}},
        "sources": {"a": {"path": "a.csv", "record_id": "id", "columns": {"s_bf": "s_bf"}}},
        "model": {"blocking_rules": [["s_bf"]], "comparisons": [{"field": "s_bf"}],
                  "training": {"prior": {"probability": 0.001}, "em_blocking_rules": [["s_bf"]]}},
    }), tmp_path / "job.yaml")
    levels = cfg.model.comparisons[0].levels
    assert [lv.kind for lv in levels] == ["sql", "sql", "sql", "sql"]
    assert levels[0].label == "same filter"
    assert 'bit_count("s_bf_l" & "s_bf_r")' in levels[1].sql and "s_bf_ones_l" in levels[1].sql


def test_encoded_fields_need_the_duckdb_engine(tmp_path):
    with pytest.raises(ConfigError, match="compared as DuckDB bit strings; use engine duckdb"):
        parse_config(yaml.safe_dump({
            "job": "t", "engine": {"name": "spark"},
            "fields": {"s_h": {"type": "encoded", "encoding": "hash", "fingerprint": "0" * 32}},
            "sources": {"a": {"path": "a.csv", "record_id": "id", "columns": {"s_h": "s_h"}}},
            "model": {"blocking_rules": [["s_h"]], "comparisons": [{"field": "s_h"}],
                      "training": {"prior": {"probability": 0.001}, "em_blocking_rules": [["s_h"]]}},
        }), tmp_path / "job.yaml")


@pytest.mark.parametrize("spec, raw, value, reason, ones", [
    ({"encoding": "hash"}, "0123456789ABCDEF0123456789abcdef", "0123456789abcdef0123456789abcdef", None, None),
    ({"encoding": "hash"}, "0123456789abcdef", None, "malformed", None),  # too short
    ({"encoding": "hash"}, "g123456789abcdef0123456789abcdef", None, "malformed", None),
    ({"encoding": "bloom", "bits": 16}, "f00f", "1111000000001111", None, 8),
    ({"encoding": "bloom", "bits": 16}, " F0 0F ", "1111000000001111", None, 8),  # spaces, case
    ({"encoding": "bloom", "bits": 16}, "f00f0", None, "malformed", None),  # another length
    ({"encoding": "bloom", "bits": 16}, "", None, None, None),  # missing, no reason
])
def test_encoded_cells_are_checked_and_read(spec, raw, value, reason, ones):
    """Through the declared-field runner, as a job standardises them."""
    from test_fields import clean

    [(got, why, keys)] = clean({"type": "encoded", "fingerprint": "0" * 32, **spec}, [raw])
    assert (got, why) == (value, reason)
    if spec["encoding"] == "bloom":
        assert keys == {"f_ones": ones}
