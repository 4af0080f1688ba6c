"""``linkage encode``: a data owner's extracts turned into keyed encodings, for linking
without clear identifiers.

The data owners of one share hold a secret the linkage team does not. Each owner cleans
its extract with the toolkit's own field types (the ``fields:`` of an encode config are
declared exactly as a job's, so a clear and an encoded run see the same values), then
writes, per encoding it declares:

* ``hash: [columns]``: a keyed hash (the first 128 bits of HMAC-SHA256) of the values,
  for exact agreement and blocking (a surname's phonetic code, a date of birth, a NINO);
* ``bloom: [columns]``: a Bloom filter (Schnell, Bachteler & Reiher 2009): each value's
  q-grams (padded with ``_``) set ``hash_functions`` bits each, chosen by HMAC-SHA256 under
  a key of the share, the encoding and the column ("random hashing": every position from
  the keyed hash itself, not the double-hashing scheme that Niedermeyer et al. 2014
  attacked). One column is a field-level filter; several are a record-level filter (a
  CLK, Schnell, Bachteler & Reiher 2011), in which each column keeps its own key.

Hardening (``bloom.hardening``): ``balance`` (Schnell, Borgs & Encarnação 2016: the filter
and its complement concatenated, then the bits shuffled by a keyed permutation, so every
filter has exactly half its bits set and the number of bits set tells nothing),
``xor_fold`` (Schnell, Borgs & Encarnação 2016: the two halves XORed, so no bit belongs to
one q-gram's positions alone) and per-encoding ``salt: column`` (Niedermeyer et al. 2014:
the filter's key also depends on that column's value, e.g. the year of birth, so equal
names of different years share no bit pattern a frequency attack can align; records
disagreeing on the salt can no longer look alike).

The encoded extract holds the record id and one hexadecimal column per encoding; beside
it ``<extract>.encoding.json`` records the share, every setting and a fingerprint per
encoding (HMAC of the settings under a PBKDF2 hash of the secret): a job refuses
encodings whose fingerprint is not the one it expects. The secret never leaves this
module: not in a message, the metadata or a log. A secret serves one share: the owner's
registry (``LINKAGE_ENCODE_REGISTRY``) records a slow hash of each secret used with its
share, and encoding another share with it is refused.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, cast

import duckdb
import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from linkage.config import JobConfig, LoadedConfig, SourceConfig, Strict, _pydantic_problems
from linkage.pseudonyms import KEY_ADVICE, MIN_KEY_BITS, MIN_KEY_LENGTH, key_entropy_bits
from linkage.errors import ConfigError, LinkageError
from linkage.sources import lit, q
from linkage.standardise.declared import standardise_fields
from linkage.standardise.types import AnyFieldType, CategoryType, FieldType, ListType, NumberType
from linkage.standardise.types.encoded import HASH_BITS, METADATA_FORMAT, metadata_path

KEY_ENV = "LINKAGE_ENCODE_KEY"
REGISTRY_ENV = "LINKAGE_ENCODE_REGISTRY"
DEFAULT_REGISTRY = Path("~/.local/share/linkage/encode-registry.json")
VERSION = 1
# The fingerprint's slow hash (as the pseudonym key's, in linkage.deidentify): testing one
# guessed secret against a published fingerprint costs 600,000 HMACs.
FINGERPRINT_SALT = b"linkage encode fingerprint v1"
FINGERPRINT_ITERATIONS = 600_000
# Derived columns that hold a few values only (a year, a postcode area): encoded alone, a
# frequency table reads them back.
_SHORT_SUFFIXES = ("_year", "_area", "_district")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# --- the encode config ---------------------------------------------------------------------


class Hardening(Strict):
    balance: bool = False
    xor_fold: bool = False


class BloomSettings(Strict):
    bits: int = 1024  # before hardening; a power of two, so every position is equally likely
    hash_functions: int = Field(default=20, ge=1, le=200)  # bits set per q-gram
    q: int = Field(default=2, ge=1, le=5)
    hardening: Hardening = Hardening()

    @field_validator("bits")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v < 64 or v > 16384 or v & (v - 1):
            raise ValueError("bits is a power of two from 64 to 16384 (e.g. 1024)")
        return v

    @property
    def filter_bits(self) -> int:
        """The length written: doubled by balancing, halved by folding."""
        n = self.bits * (2 if self.hardening.balance else 1)
        return n // 2 if self.hardening.xor_fold else n


class EncodingSpec(Strict):
    """One output column: ``hash: [columns]`` or ``bloom: [columns]``."""

    hash: list[str] | None = Field(default=None, min_length=1)
    bloom: list[str] | None = Field(default=None, min_length=1)
    hash_functions: int | None = Field(default=None, ge=1, le=200)  # bloom: this encoding's own k
    salt: str | None = None  # bloom: a column whose value keys the filter

    @model_validator(mode="after")
    def _one_kind(self) -> "EncodingSpec":
        if (self.hash is None) == (self.bloom is None):
            raise ValueError("an encoding is either 'hash: [columns]' or 'bloom: [columns]'")
        if self.hash is not None and (self.hash_functions is not None or self.salt is not None):
            raise ValueError("hash_functions and salt apply to bloom encodings only")
        return self

    @property
    def kind(self) -> Literal["hash", "bloom"]:
        return "hash" if self.hash is not None else "bloom"

    @property
    def columns(self) -> list[str]:
        return list(self.hash or self.bloom or [])


class EncodeConfig(Strict):
    # The exchange these encodings are for (e.g. moj-dwp-2026-11): every owner of the share
    # uses the same label, secret and settings; a secret serves one share only.
    share: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{2,63}$")
    description: str = ""
    fields: dict[str, AnyFieldType] = Field(min_length=1)
    sources: dict[str, SourceConfig] = Field(min_length=1)
    bloom: BloomSettings = BloomSettings()
    encodings: dict[str, EncodingSpec] = Field(min_length=1)
    # An encoding of one column with fewer distinct values than this in an extract is
    # warned about: a dictionary of its values reads it back.
    min_distinct: int = Field(default=1000, ge=1)

    # What linkage.sources reads of a job config (sources, person_fields, date_fields, fields).
    uses_justice_preset: bool = False

    @property
    def person_fields(self) -> tuple[str, ...]:
        return tuple(self.fields)

    def date_fields(self, source: str) -> list[tuple[str, list[str], str | None, str]]:
        return JobConfig.date_fields(cast(JobConfig, self), source)

    def field_columns(self) -> dict[str, tuple[str, FieldType]]:
        """Every column the declared fields produce -> (its field, the field's type)."""
        out: dict[str, tuple[str, FieldType]] = {}
        for name, ftype in self.fields.items():
            for col in ftype.column_names(name):
                out[col] = (name, ftype)
        return out

    def settings(self, name: str) -> dict[str, Any]:
        """Everything that decides the encoding ``name``'s values (what the fingerprint covers)."""
        spec = self.encodings[name]
        cols = self.field_columns()
        used = [*spec.columns, *([spec.salt] if spec.salt else [])]
        out: dict[str, Any] = {
            "version": VERSION, "share": self.share, "name": name, "kind": spec.kind, "columns": spec.columns,
            "fields": {cols[c][0]: cols[c][1].model_dump(mode="json") for c in used},
        }
        if spec.kind == "bloom":
            out.update({
                "bits": self.bloom.bits, "hash_functions": spec.hash_functions or self.bloom.hash_functions,
                "q": self.bloom.q, "hardening": self.bloom.hardening.model_dump(), "salt": spec.salt,
                "filter_bits": self.bloom.filter_bits,
            })
        else:
            out["hash_bits"] = HASH_BITS
        return out


def _config_problems(cfg: EncodeConfig) -> list[str]:
    problems = []
    cols = cfg.field_columns()
    known = ", ".join(sorted(cols))
    for name, spec in cfg.encodings.items():
        where = f"encodings.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: encoding names use lower-case letters, digits and '_'")
        for c in [*spec.columns, *([spec.salt] if spec.salt else [])]:
            if c not in cols:
                problems.append(f"{where}: {c!r} is not a column of the declared fields (columns: {known})")
            elif spec.kind == "hash" and isinstance(cols[c][1], ListType):
                problems.append(f"{where}: {c!r} is a list; a keyed hash takes single values (use bloom)")
        if len(set(spec.columns)) != len(spec.columns):
            problems.append(f"{where}: a column is named twice")
    for sname, src in cfg.sources.items():
        if not _NAME.match(sname):
            problems.append(f"sources.{sname}: source names use lower-case letters, digits and '_'")
        for field in src.columns:
            if field not in cfg.fields:
                problems.append(f"sources.{sname}.columns.{field}: not a declared field (declare it under fields:)")
        if src.carry or src.breakdowns or src.age_at:
            problems.append(f"sources.{sname}: carry, breakdowns and age_at are not used by encode "
                            "(the encoded extract holds the record id and the encodings only)")
        if src.record_id in cfg.encodings:
            problems.append(f"sources.{sname}.record_id: {src.record_id!r} is also an encoding's name")
    return problems


def load_encode_config(path: Path) -> EncodeConfig:
    import yaml

    if not path.is_file():
        raise ConfigError(str(path), ["no such config file"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(str(path), [f"not valid YAML at {where}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["the file must hold a mapping of keys (share, fields, sources, encodings)"])
    try:
        cfg = EncodeConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(str(path), _pydantic_problems(err)) from None
    problems = _config_problems(cfg)
    if problems:
        raise ConfigError(str(path), problems)
    return cfg


# --- the secret ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodeSecret:
    secret: bytes
    origin: str  # where it came from, for messages: never the secret itself

    def __repr__(self) -> str:  # never print the secret, even in a traceback's locals
        return f"EncodeSecret(origin={self.origin!r})"

    @cached_property
    def _slow(self) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", self.secret, FINGERPRINT_SALT, FINGERPRINT_ITERATIONS)

    def fingerprint(self, settings: dict[str, Any]) -> str:
        """Identifies secret and settings together, never revealing the secret."""
        return hmac.new(self._slow, _canonical(settings), hashlib.sha256).hexdigest()[:32]

    @property
    def registry_tag(self) -> str:
        return hmac.new(self._slow, b"registry", hashlib.sha256).hexdigest()[:32]

    def key(self, *parts: str) -> bytes:
        """A key derived for one purpose: (share, kind, encoding, column...)."""
        return hmac.new(self.secret, "\x1f".join(("linkage encode v1", *parts)).encode(), hashlib.sha256).digest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def resolve_secret(key_file: Path | None) -> EncodeSecret:
    """The share's secret: ``--key-file``, else ``LINKAGE_ENCODE_KEY``; checked for strength."""
    advice = (f"Use at least {MIN_KEY_BITS} bits of randomness: 32 or more random hex characters "
              f"(for example: {KEY_ADVICE}), made by the data owners and never given to the linkage team.")
    if key_file is not None:
        path = key_file.expanduser()
        if not path.is_file():
            raise LinkageError(f"--key-file: {path} does not exist. {advice}")
        try:
            text = path.read_bytes().decode("utf-8").strip()
        except UnicodeDecodeError:
            raise LinkageError(f"--key-file: {path} is not UTF-8 text. {advice}") from None
        origin = f"key file {path}"
    else:
        text = os.environ.get(KEY_ENV, "").strip()
        origin = f"environment variable {KEY_ENV}"
        if not text:
            raise LinkageError(f"no encoding secret: set {KEY_ENV} or give --key-file. {advice}")
    if len(text) < MIN_KEY_LENGTH:
        raise LinkageError(f"the encoding secret in {origin} is empty or shorter than {MIN_KEY_LENGTH} characters. {advice}")
    bits = key_entropy_bits(text)
    if bits < MIN_KEY_BITS:
        raise LinkageError(
            f"the encoding secret in {origin} is too predictable: about {int(bits)} bits of entropy, fewer "
            f"than the {MIN_KEY_BITS} needed. {advice}"
        )
    return EncodeSecret(text.encode(), origin)


def registry_path(given: Path | None) -> Path:
    if given is not None:
        return given.expanduser()
    env = os.environ.get(REGISTRY_ENV, "").strip()
    return Path(env).expanduser() if env else DEFAULT_REGISTRY.expanduser()


def check_share(secret: EncodeSecret, share: str, registry: Path) -> None:
    """Refuse a secret already used for another share; record it for this one.

    The registry holds a slow hash of each secret with its share and first use: never the
    secret. Kept owner-only."""
    entries: dict[str, Any] = {}
    if registry.is_file():
        try:
            entries = json.loads(registry.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LinkageError(f"the encode registry {registry} is not valid JSON; fix or move it "
                               f"(it records which share each secret served)") from None
        if not isinstance(entries, dict):
            raise LinkageError(f"the encode registry {registry} is not a mapping; fix or move it")
    seen = entries.get(secret.registry_tag)
    if isinstance(seen, dict) and seen.get("share") != share:
        raise LinkageError(
            f"the secret in {secret.origin} was used for share {seen.get('share')!r} (first on "
            f"{seen.get('first_used')}, recorded in {registry}); a secret serves one share only, or encodings "
            f"given to different recipients can be joined. Make a new secret for share {share!r}."
        )
    if seen is None:
        entries[secret.registry_tag] = {"share": share, "first_used": _dt.date.today().isoformat()}
        registry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(registry, json.dumps(entries, indent=2, sort_keys=True))


def _write_private(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- Bloom filters and keyed hashes (pure functions) ------------------------------------------


def qgrams(text: str, q: int) -> list[str]:
    """The padded q-grams of ``text`` (each space-separated word padded alone).

    >>> qgrams("ANN", 2)
    ['_A', 'AN', 'NN', 'N_']
    """
    out: list[str] = []
    for word in text.split():
        padded = "_" * (q - 1) + word + "_" * (q - 1) if q > 1 else word
        out += [padded[i : i + q] for i in range(len(padded) - q + 1)]
    return out


def positions(key: bytes, token: str, k: int, bits: int) -> list[int]:
    """The ``k`` bit positions of ``token``: 16-bit pieces of HMAC-SHA256 under ``key``
    (more blocks for k > 16). ``bits`` is a power of two up to 65536, so each position is
    uniform."""
    out: list[int] = []
    block = 0
    while len(out) < k:
        digest = hmac.new(key, token.encode() + b"\x00" + block.to_bytes(2, "big"), hashlib.sha256).digest()
        out += [int.from_bytes(digest[i : i + 2], "big") % bits for i in range(0, 32, 2)]
        block += 1
    return out[:k]


class BloomEncoder:
    """Bloom filters of one encoding; the bit pattern of each (key, q-gram) is computed once."""

    def __init__(self, secret: EncodeSecret, cfg: EncodeConfig, name: str):
        spec = cfg.encodings[name]
        self.settings = cfg.bloom
        self.k = spec.hash_functions or cfg.bloom.hash_functions
        self.keys = [secret.key(cfg.share, "bloom", name, c) for c in spec.columns]
        self._cache: dict[tuple[bytes, str], int] = {}
        self.perm: np.ndarray | None = None
        if cfg.bloom.hardening.balance:
            # A keyed permutation: positions sorted by their HMAC, the same on every machine
            # and Python version (random.shuffle's algorithm is not promised to stay).
            key = secret.key(cfg.share, "balance", name)
            order = sorted(range(2 * cfg.bloom.bits), key=lambda i: hmac.new(key, i.to_bytes(4, "big"), hashlib.sha256).digest())
            self.perm = np.array(order)

    def _mask(self, key: bytes, token: str) -> int:
        got = self._cache.get((key, token))
        if got is None:
            got = 0
            for p in positions(key, token, self.k, self.settings.bits):
                got |= 1 << p
            self._cache[(key, token)] = got
        return got

    def raw(self, values: Iterable[str | None], salt: str | None = None) -> int:
        """The unhardened filter of one record's values (one per column), as an integer."""
        f = 0
        for key, value in zip(self.keys, values):
            if value is None:
                continue
            if salt is not None:
                key = hmac.new(key, salt.encode(), hashlib.sha256).digest()
            for g in qgrams(value, self.settings.q):
                f |= self._mask(key, g)
        return f

    def hexes(self, filters: list[int]) -> list[str]:
        """The filters hardened as configured, in hexadecimal (most significant bit first)."""
        bits = self.settings.bits
        if self.perm is not None:
            full = (1 << bits) - 1
            width = 2 * bits
            raw = b"".join(((f << bits) | (~f & full)).to_bytes(width // 8, "big") for f in filters)
            unpacked = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(len(filters), width // 8), axis=1)
            packed = np.packbits(unpacked[:, self.perm], axis=1)
            filters = [int.from_bytes(row.tobytes(), "big") for row in packed]
            bits = width
        if self.settings.hardening.xor_fold:
            half = bits // 2
            filters = [(f >> half) ^ (f & ((1 << half) - 1)) for f in filters]
            bits = half
        return [format(f, f"0{bits // 4}x") for f in filters]


def keyed_hash(key: bytes, values: list[str]) -> str:
    return hmac.new(key, "\x1f".join(values).encode(), hashlib.sha256).hexdigest()[: HASH_BITS // 4]


# --- leaks -------------------------------------------------------------------------------------


def leak_warnings(cfg: EncodeConfig, distinct: dict[str, dict[str, tuple[int, int]]]) -> list[str]:
    """Encodings of a single short field (a category, a number, a year, a postcode area...),
    and any encoding with fewer than ``min_distinct`` distinct values in an extract (and fewer
    than one for every 20 records that have one: year and sex together, say). ``distinct``: encoding -> source ->
    (distinct values, records with a value). A frequency table of its few values reads such
    an encoding back, keyed or not."""
    cols = cfg.field_columns()
    out = []
    for name, spec in cfg.encodings.items():
        reasons = []
        if len(spec.columns) == 1:
            col = spec.columns[0]
            field, ftype = cols[col]
            element = ftype.of if isinstance(ftype, ListType) else ftype
            if col == field and isinstance(element, (CategoryType, NumberType)):
                reasons.append(f"a {element.type} field")
            elif col != field and col.endswith(_SHORT_SUFFIXES):
                reasons.append(f"a short key of field {field}")
        # Few values both absolutely and for the extract's size (a small extract has few of everything).
        few = {s: n for s, (n, present) in distinct.get(name, {}).items()
               if 0 < n < cfg.min_distinct and n * 20 <= present}
        if few:
            reasons.append("only " + ", ".join(f"{n:,} distinct values in {s}" for s, n in sorted(few.items())))
        if reasons:
            what = f"{spec.columns[0]} alone" if len(spec.columns) == 1 else " and ".join(spec.columns)
            out.append(
                f"encodings.{name}: encodes {what} ({'; '.join(reasons)}): a frequency table of its few "
                f"values reads the {spec.kind} encoding back. Encode it together with other fields "
                "(a record-level filter, or a hash of several columns), or leave it out."
            )
    return out


# --- encoding extracts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedSource:
    name: str
    path: Path  # the encoded extract
    rows_read: int
    rows_written: int
    rows_rejected: int
    invalid: dict[str, dict[str, int]]  # field -> reason -> values made missing


@dataclass(frozen=True)
class EncodeResult:
    sources: list[EncodedSource]
    fingerprints: dict[str, str]
    warnings: list[str]
    job_fields: str  # a ``fields:`` block for the job config


class _EncodeLoaded(LoadedConfig):
    """What ``linkage.sources.read_sources`` reads of a loaded config."""


def _value_sql(col: str, ctype: str) -> str:
    """A column of the standardised records (alias ``s``) as the text that is encoded."""
    if ctype.endswith("[]"):
        return f"array_to_string(s.{q(col)}, ' ')"
    return f"CAST(s.{q(col)} AS VARCHAR)"


def encode_extracts(
    cfg: EncodeConfig, config_path: Path, data_dir: Path | None, out_dir: Path, secret: EncodeSecret,
    registry: Path, fmt: Literal["parquet", "csv"] = "parquet",
) -> EncodeResult:
    """Read, clean and encode every source of ``cfg`` into ``out_dir``."""
    from linkage import sources

    check_share(secret, cfg.share, registry)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    loaded = _EncodeLoaded(cast(JobConfig, cfg), config_path, config_path.read_text(encoding="utf-8"))
    settings = {name: cfg.settings(name) for name in cfg.encodings}
    fingerprints = {name: secret.fingerprint(s) for name, s in settings.items()}
    col_types = {c: t for name, ft in cfg.fields.items() for c, t in ft.column_names(name).items()}
    con = duckdb.connect()
    try:
        reads = sources.read_sources(con, loaded, data_dir)
        results: list[EncodedSource] = []
        distinct: dict[str, dict[str, tuple[int, int]]] = {}
        for sname, src in cfg.sources.items():
            std = f"std_{sname}"
            fields_result = standardise_fields(
                con, q("mapped_" + sname), std, dict(cfg.fields),
                date_formats=list(src.date_formats), list_separator=src.list_separator,
            )  # fmt: skip
            selects, joins = [], []
            for name, spec in cfg.encodings.items():
                table = f"__lk_enc_{name}"
                cols = [*spec.columns, *([spec.salt] if spec.salt else [])]
                exprs = [_value_sql(c, col_types[c]) for c in cols]
                tuples = con.execute(f"SELECT DISTINCT {', '.join(exprs)} FROM {std} s").fetchall()
                n = len(spec.columns)
                joiner = " AND " if spec.kind == "hash" else " OR "
                has_value = joiner.join(f"{e} IS NOT NULL" for e in exprs[:n])
                present, values = con.execute(
                    f"SELECT count(*), count(DISTINCT ({', '.join(exprs[:n])})) FROM {std} s WHERE {has_value}"
                ).fetchall()[0]
                distinct.setdefault(name, {})[sname] = (values, present)
                if spec.kind == "hash":
                    key = secret.key(cfg.share, "hash", name)
                    codes = [None if any(v is None for v in t[:n]) else keyed_hash(key, list(t[:n])) for t in tuples]
                else:
                    enc = BloomEncoder(secret, cfg, name)
                    present = [i for i, t in enumerate(tuples)
                               if any(v is not None for v in t[:n]) and (not spec.salt or t[n] is not None)]
                    hexes = enc.hexes([enc.raw(tuples[i][:n], tuples[i][n] if spec.salt else None) for i in present])
                    codes = [None] * len(tuples)
                    for i, h in zip(present, hexes):
                        codes[i] = h
                frame = pd.DataFrame({f"c{i}": pd.Series([t[i] for t in tuples], dtype=object) for i in range(len(cols))})
                frame["code"] = pd.Series(codes, dtype=object)
                con.register("__lk_codes", frame)
                try:
                    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT "
                                + ", ".join(f"CAST(c{i} AS VARCHAR) AS c{i}" for i in range(len(cols)))
                                + ", CAST(code AS VARCHAR) AS code FROM __lk_codes")
                finally:
                    con.unregister("__lk_codes")
                on = " AND ".join(f"{table}.c{i} IS NOT DISTINCT FROM {e}" for i, e in enumerate(exprs))
                selects.append(f"{table}.code AS {q(name)}")
                joins.append(f"LEFT JOIN {table} ON {on}")
            path = out_dir / f"{sname}.{fmt}"
            tmp = path.with_name(".tmp-" + path.name)
            options = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT csv, HEADER true)"
            con.execute(
                f"COPY (SELECT s.record_id AS {q(src.record_id)}, {', '.join(selects)} FROM {std} s "
                f"JOIN {q('mapped_' + sname)} m USING (source_dataset, record_id) {' '.join(joins)} ORDER BY m._row) "
                f"TO {lit(str(tmp))} {options}"
            )
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            written = con.execute(f"SELECT count(*) FROM {std}").fetchall()[0][0]
            rejects = con.execute(f"SELECT _row, reason FROM rejects WHERE source_dataset = {lit(sname)} "
                                  "ORDER BY _row").fetchall()
            if rejects:
                pd.DataFrame(rejects, columns=["row", "reason"]).to_csv(out_dir / f"{sname}.rejects.csv", index=False)
                os.chmod(out_dir / f"{sname}.rejects.csv", 0o600)
            results.append(EncodedSource(sname, path, reads[sname].rows_read, written, len(rejects),
                                         fields_result.invalid))
        warnings = leak_warnings(cfg, distinct)
        for res in results:
            meta = {
                "format": METADATA_FORMAT, "version": VERSION, "share": cfg.share, "source": res.name,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "record_id": cfg.sources[res.name].record_id, "file": res.path.name,
                "rows": {"read": res.rows_read, "written": res.rows_written, "rejected": res.rows_rejected},
                "invalid": res.invalid,
                "encodings": {n: {**settings[n], "fingerprint": fingerprints[n]} for n in cfg.encodings},
                "warnings": warnings,
            }
            _write_private(metadata_path(res.path), json.dumps(meta, indent=2))
        return EncodeResult(results, fingerprints, warnings, job_fields(cfg, fingerprints))
    finally:
        con.close()


def job_fields(cfg: EncodeConfig, fingerprints: dict[str, str]) -> str:
    """The ``fields:`` block a job needs to compare these encodings (fingerprints are not secret)."""
    lines = ["fields:"]
    for name, spec in cfg.encodings.items():
        bits = f", bits: {cfg.bloom.filter_bits}" if spec.kind == "bloom" else ""
        lines.append(f"  {name}: {{type: encoded, encoding: {spec.kind}{bits}, fingerprint: {fingerprints[name]}}}")
    return "\n".join(lines) + "\n"


__all__ = [
    "EncodeConfig", "EncodeSecret", "BloomEncoder", "load_encode_config", "resolve_secret", "encode_extracts",
    "check_share", "registry_path", "leak_warnings", "qgrams", "positions", "keyed_hash", "KEY_ENV", "REGISTRY_ENV",
]
