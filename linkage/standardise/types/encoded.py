"""``type: encoded``: a field a data owner encoded with ``linkage encode`` under a secret the
linkage team does not hold: a keyed hash (``encoding: hash``, compared for exact agreement,
usable in blocking rules) or a Bloom filter (``encoding: bloom``, compared by the Dice
coefficient of its bits, so that similar names, dates and postcodes still look alike).

The extract's cells are hexadecimal; cleaning turns a filter into a DuckDB ``BIT`` string,
so a level's Dice coefficient is ``2 * bit_count(a & b) / (bit_count(a) + bit_count(b))``
computed in the engine (a hash stays lower-case hexadecimal text). A cell that is not hexadecimal of the right length is missing
(reason ``malformed``). Key: ``<field>_ones`` (a Bloom filter's bits set, counted once per
value rather than once per pair).

``fingerprint`` is the one ``linkage encode`` wrote into the extract's metadata
(``<extract>.encoding.json``): it identifies the secret, the share and every encoding
setting without revealing the secret. A job refuses an extract whose metadata gives
another fingerprint, another encoding or another filter length than the field declares
(``encoding_problems``): encodings made with different secrets or settings never agree,
and comparing them would silently find no one. A run records what it compared in its
manifest's ``encodings`` (``encodings_manifest``): per source, each field's settings and
fingerprint, and the metadata file's hash.

DuckDB only: Spark has no bit strings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from linkage.standardise.sql import Step
from linkage.standardise.types.base import CleanContext, FieldType, Key

# A keyed hash is the first 128 bits of HMAC-SHA256.
HASH_BITS = 128
# The metadata file ``linkage encode`` writes beside each encoded extract.
METADATA_SUFFIX = ".encoding.json"
METADATA_FORMAT = "linkage-encoding"


def metadata_path(extract: Path) -> Path:
    return extract.with_name(extract.name + METADATA_SUFFIX)


def dice_sql(field: str, threshold: float) -> str:
    """SQL over a pair (``_l``, ``_r``): the Dice coefficient of two Bloom filters is at least ``threshold``."""
    f = field
    return (f'2 * bit_count("{f}_l" & "{f}_r") >= {threshold!r} * ("{f}_ones_l" + "{f}_ones_r")')


class EncodedType(FieldType):
    type: Literal["encoded"] = "encoded"
    encoding: Literal["bloom", "hash"]
    # From the extract's metadata (``linkage encode`` prints the job's fields block).
    fingerprint: str = Field(pattern=r"^[0-9a-f]{32}$")
    bits: int | None = Field(default=None, ge=8)  # bloom: the filter length, in bits
    # bloom: the Dice levels of the field's standard comparison, most similar first.
    dice: list[float] = Field(default=[0.9, 0.8, 0.7], min_length=1)

    @field_validator("dice")
    @classmethod
    def _dice(cls, v: list[float]) -> list[float]:
        if not all(0 < t < 1 for t in v) or v != sorted(v, reverse=True):
            raise ValueError("dice thresholds are between 0 and 1, most similar first (e.g. [0.9, 0.8, 0.7])")
        return v

    @model_validator(mode="after")
    def _bits(self) -> "EncodedType":
        if self.encoding == "bloom" and (self.bits is None or self.bits % 8):
            raise ValueError("a bloom encoding needs 'bits', the filter length (a multiple of 8; "
                             "linkage encode writes it into the extract's metadata)")
        if self.encoding == "hash" and self.bits is not None:
            raise ValueError("bits applies to encoding: bloom only")
        return self

    @property
    def value_type(self) -> str:  # type: ignore[override]
        # Filters as bit strings (AND and bit_count in the engine); hashes as text: DuckDB
        # compares two BIT values for equality about 30 times slower than two strings.
        return "BIT" if self.encoding == "bloom" else "VARCHAR"

    @property
    def width(self) -> int:
        return self.bits if self.encoding == "bloom" and self.bits else HASH_BITS

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        return [
            ("t_c", f"lower(regexp_replace({x}, '\\s', '', 'g'))"),
            ("why", f"CASE WHEN lk_nz({x}) IS NULL THEN NULL"
                    f" WHEN NOT regexp_full_match(t_c, '[0-9a-f]{{{self.width // 4}}}') THEN 'malformed' END"),
            ("v", "CASE WHEN why IS NULL THEN " + ("CAST(from_hex(t_c) AS BIT)" if self.encoding == "bloom" else "t_c") + " END"),
        ]

    def keys(self) -> list[Key]:
        if self.encoding == "bloom":
            return [Key("ones", "CAST(bit_count(v) AS INTEGER)", "INTEGER")]
        return []

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        if self.encoding == "hash":
            return [{"exact": field, "tf_adjustment": True}]
        # The same filter: Dice 1, written so (BIT equality is slow, see value_type).
        same = f'2 * bit_count("{field}_l" & "{field}_r") = "{field}_ones_l" + "{field}_ones_r"'
        return [{"sql": same, "label": "same filter"}] + [
            {"sql": dice_sql(field, t), "label": f"Dice {t:g} or more"} for t in self.dice
        ]

    default_identifying: ClassVar[bool] = True


def read_metadata(extract: Path) -> dict[str, Any]:
    """The encoding metadata beside ``extract``; ``ValueError`` saying why it cannot be used."""
    meta = metadata_path(extract)
    if not meta.is_file():
        raise ValueError(f"no encoding metadata: {meta.name} is not beside {extract.name} "
                         "(linkage encode writes it; copy it with the extract)")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{meta.name} is not valid JSON (it should be as linkage encode wrote it)") from None
    if not isinstance(data, dict) or data.get("format") != METADATA_FORMAT or not isinstance(data.get("encodings"), dict):
        raise ValueError(f"{meta.name} is not linkage encoding metadata")
    return data


def encoding_problems(fields: dict[str, Any], sources: dict[str, Any], headers: dict[str, tuple[Path, list[str]]]) -> list[str]:
    """Every source column a job compares as an encoded field, checked against the metadata
    its extract came with: same secret, share and settings (the fingerprint), same kind, same
    filter length. One line per problem; the fingerprints are not secret."""
    problems: list[str] = []
    for sname, src in sources.items():
        encoded = {f: col for f, col in src.columns.items() if isinstance(fields.get(f), EncodedType)}
        if not encoded or sname not in headers:
            continue
        path = headers[sname][0]
        try:
            meta = read_metadata(path)
        except ValueError as exc:
            problems.append(f"sources.{sname}: {path}: {exc}")
            continue
        for field, col in encoded.items():
            ftype: EncodedType = fields[field]
            where = f"sources.{sname}.columns.{field}"
            enc = meta["encodings"].get(col)
            if not isinstance(enc, dict):
                problems.append(f"{where}: column {col!r} of {path.name} is not an encoding its metadata lists")
                continue
            if enc.get("fingerprint") != ftype.fingerprint:
                problems.append(
                    f"{where}: {path.name} column {col!r} was encoded with a different secret or different "
                    f"settings than the job expects (its fingerprint {enc.get('fingerprint')}, the job expects "
                    f"{ftype.fingerprint} at fields.{field}.fingerprint). Encodings made with another secret or "
                    "settings are never compared: re-encode with the share's secret and settings, or fix the fingerprint."
                )
            elif enc.get("kind") != ftype.encoding:
                problems.append(f"{where}: {path.name} column {col!r} is a {enc.get('kind')} encoding; "
                                f"fields.{field} declares encoding: {ftype.encoding}")
            elif ftype.encoding == "bloom" and enc.get("filter_bits") != ftype.bits:
                problems.append(f"{where}: {path.name} column {col!r} holds {enc.get('filter_bits')}-bit filters; "
                                f"fields.{field} declares bits: {ftype.bits}")
    return problems


def encodings_manifest(fields: dict[str, Any], sources: dict[str, Any], paths: dict[str, Path]) -> dict[str, Any] | None:
    """For a run's manifest: per source, each encoded field's column and the settings its
    extract's metadata gives (share, kind, filter length, hardening, fingerprint; never the
    secret, which the metadata does not hold). None when the job compares no encoding."""
    out: dict[str, Any] = {}
    for sname, src in sources.items():
        encoded = {f: col for f, col in src.columns.items() if isinstance(fields.get(f), EncodedType)}
        if not encoded or sname not in paths:
            continue
        try:
            meta = read_metadata(Path(paths[sname]))
        except ValueError:  # the job's checks refused this before the run: nothing to record
            continue
        out[sname] = {
            "share": meta.get("share"),
            "metadata_sha256": hashlib.sha256(metadata_path(Path(paths[sname])).read_bytes()).hexdigest(),  # a small JSON file
            "fields": {f: {"column": col, **{k: v for k, v in meta["encodings"].get(col, {}).items()
                                             if k not in ("fields",)}} for f, col in encoded.items()},
        }
    return out or None
