"""Pseudonymous person ids: the secret key, its strength and fingerprint, and the ids.

``person_id`` is HMAC-SHA256 of the internal person key under a secret held outside code,
config and data (``LINKAGE_PSEUDONYM_KEY`` or a key file); the manifest records the key's
fingerprint only. The analyst tables (``linkage.deidentify``) and the person ids at other
thresholds (``linkage.threshold_ids``) take their ids from here.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb

from linkage.errors import LinkageError
from linkage.sources import q

KEY_ENV = "LINKAGE_PSEUDONYM_KEY"
# A key must carry at least this much entropy (estimated conservatively from its
# characters, never its bytes): 32 random hex characters, or 22 random base64 characters.
MIN_KEY_BITS = 128
MIN_KEY_LENGTH = 16  # characters; shorter keys are refused before any estimate
PERSON_ID_HEX = 32  # 128 bits of the HMAC
# The key fingerprint: PBKDF2-HMAC-SHA256 of the key with this fixed salt and iteration
# count (documented in README; keep both, or manifests from earlier runs stop matching).
FINGERPRINT_SALT = b"linkage pseudonym key fingerprint v2"
FINGERPRINT_ITERATIONS = 600_000
KEY_ADVICE = 'python3 -c "import secrets; print(secrets.token_hex(32))"'

# Parts of keys that people type: each counts as a few characters' worth, not its length.
_COMMON_WORDS = (
    "password", "passwd", "secret", "linkage", "pseudonym", "letmein", "qwerty", "azerty", "admin",
    "welcome", "changeme", "default", "example", "test", "key", "pass", "login", "master", "dragon",
    "monkey", "football", "iloveyou", "sunshine", "princess", "justice", "prison", "probation",
    "police", "court", "crown", "london", "summer", "winter", "spring", "autumn", "hello",
)


def key_entropy_bits(key: str) -> float:
    """A conservative estimate of the entropy of ``key``, counted over characters.

    The alphabet is what the key's characters suggest (16 when all are hex digits, else
    the sum of the classes used: lower case, upper case, digits, ASCII punctuation and
    space, other characters). Only unpredictable characters count: from the fourth
    character of a run (``aaaa``, ``1234``, ``dcba``), the letters of a common word after
    its first, and the end of a stretch of four characters seen before count nothing; in a
    passphrase (words between spaces, hyphens, dots or underscores) a letter counts 2 bits.

    >>> key_entropy_bits("0f" * 16) < 32  # a repeated stretch counts once
    True
    >>> key_entropy_bits("7c1e4a09b2d85f36e0a7c94b1d2e8f53") >= 128
    True
    """
    if not key:
        return 0.0
    if all(c in "0123456789abcdef" for c in key) or all(c in "0123456789ABCDEF" for c in key):
        alphabet = 16
    else:
        alphabet = 0
        alphabet += 26 if any("a" <= c <= "z" for c in key) else 0
        alphabet += 26 if any("A" <= c <= "Z" for c in key) else 0
        alphabet += 10 if any(c.isdigit() and c.isascii() for c in key) else 0
        alphabet += 33 if any(c.isascii() and not c.isalnum() for c in key) else 0
        alphabet += 100 if any(not c.isascii() for c in key) else 0
    predictable = [False] * len(key)
    lower = key.lower()
    for word in _COMMON_WORDS:
        for m in re.finditer(re.escape(word), lower):
            for i in range(m.start() + 1, m.end()):  # the word's first character counts
                predictable[i] = True
    for i in range(3, len(key)):
        # the fourth character on of a run such as aaaa, 1234 or dcba (random keys rarely
        # hold one: shorter runs are left to chance)
        steps = {ord(key[j]) - ord(key[j - 1]) for j in range(i - 2, i + 1)}
        if len(steps) == 1 and abs(next(iter(steps))) <= 1:
            predictable[i] = True
    for i in range(4, len(key)):
        # a stretch of four or more characters seen before (period repeats, copied parts)
        if key[i - 3 : i + 1] in key[: i]:
            predictable[i] = True
    # A passphrase of words (most of the key in one-case letter pieces between spaces,
    # hyphens, dots or underscores): English words carry about 2 bits a letter, not 4.7.
    pieces = [m for m in re.finditer(r"[^\s._-]+", key) if re.fullmatch(r"[a-z]{3,}|[A-Z][a-z]{2,}|[A-Z]{3,}", m.group())]
    word_letters = {i for m in pieces for i in range(m.start(), m.end())}
    if len(re.split(r"[\s._-]+", key.strip())) >= 2 and len(word_letters) >= 0.6 * len(key):
        per_char = [0.0 if p else (2.0 if i in word_letters else math.log2(alphabet)) for i, p in enumerate(predictable)]
        return sum(per_char)
    unpredictable = sum(not p for p in predictable)
    return unpredictable * math.log2(alphabet)


def check_key_strength(secret: str, origin: str) -> None:
    """Refuse a key that is too short or too predictable; the message never holds the key."""
    advice = (
        f"Use at least {MIN_KEY_BITS} bits of randomness: 32 or more random hex characters, or 22 or "
        f"more random base64 characters (for example: {KEY_ADVICE})."
    )
    if len(secret) < MIN_KEY_LENGTH:
        raise LinkageError(
            f"the pseudonymisation key in {origin} is empty or shorter than {MIN_KEY_LENGTH} characters. {advice}"
        )
    bits = key_entropy_bits(secret)
    if bits < MIN_KEY_BITS:
        raise LinkageError(
            f"the pseudonymisation key in {origin} is too predictable: about {int(bits)} bits of entropy "
            f"(repeated characters, runs such as 1234, common words and repeated parts count for nothing), "
            f"fewer than the {MIN_KEY_BITS} needed. {advice}"
        )


@dataclass(frozen=True)
class PseudonymKey:
    secret: bytes
    origin: str  # where it came from, for messages: never the key itself

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the key without revealing it: releases with equal fingerprints can be joined.

        PBKDF2-HMAC-SHA256 with a fixed salt and 600,000 iterations, computed once per key:
        testing one guessed key against a fingerprint costs as much as 600,000 HMACs.
        """
        return hashlib.pbkdf2_hmac("sha256", self.secret, FINGERPRINT_SALT, FINGERPRINT_ITERATIONS).hex()[:16]

    def matches_fingerprint(self, fingerprint: str | None) -> bool:
        """Whether ``fingerprint`` (from a manifest) is this key's, today's or the one before (v1).

        Runs made before the fingerprint became PBKDF2 recorded a single HMAC; a run can
        still take its ids from them.
        """
        if not fingerprint:
            return False
        legacy = hmac.new(self.secret, b"linkage key fingerprint v1", hashlib.sha256).hexdigest()[:16]
        return hmac.compare_digest(fingerprint, self.fingerprint) or hmac.compare_digest(fingerprint, legacy)

    def pseudonym(self, person_key: str) -> str:
        return "P" + hmac.new(self.secret, person_key.encode(), hashlib.sha256).hexdigest()[:PERSON_ID_HEX]


def resolve_key(key_file: str | None, config_dir: Path, *, throwaway: bool = False) -> PseudonymKey:
    """The pseudonymisation secret: the config's key file, else ``LINKAGE_PSEUDONYM_KEY``.

    The key is checked as text (characters, not bytes) for length and entropy.
    """
    if throwaway:
        return PseudonymKey(os.urandom(32), "a throwaway key (demo only)")
    if key_file:
        path = Path(key_file).expanduser()
        path = path if path.is_absolute() else config_dir / path
        if not path.is_file():
            raise LinkageError(
                f"outputs.key_file: {path} does not exist. Create it with a long random secret "
                f"(for example: {KEY_ADVICE} > {path})."
            )
        try:
            text = path.read_bytes().decode("utf-8").strip()
        except UnicodeDecodeError:
            raise LinkageError(
                f"outputs.key_file: {path} is not UTF-8 text. Write the key as text (for example: {KEY_ADVICE} > {path})."
            ) from None
        origin = f"key file {path}"
    else:
        text = os.environ.get(KEY_ENV, "").strip()
        origin = f"environment variable {KEY_ENV}"
        if not text:
            raise LinkageError(
                f"no pseudonymisation key: set {KEY_ENV} to a long random secret (for example: "
                f"export {KEY_ENV}=$({KEY_ADVICE})), "
                "or name a key file under outputs.key_file. Keep it out of the config and the data."
            )
    check_key_strength(text, origin)
    return PseudonymKey(text.encode(), origin)


def _hmac_pads(secret: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer padded keys (RFC 2104), for HMAC-SHA256 built from plain SHA-256."""
    block = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    block = block.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def add_pseudonyms(con: duckdb.DuckDBPyConnection, table: str, key: PseudonymKey, out: str) -> None:
    """``out``: ``table`` plus ``person_id``, the pseudonym of its ``person_key`` column.

    Equal to ``PseudonymKey.pseudonym`` (HMAC-SHA256, tested), computed by DuckDB:
    SHA-256(outer || SHA-256(inner || key)). The padded keys are bound parameters, so the
    secret is in no SQL text, view or table.
    """
    inner, outer = _hmac_pads(key.secret)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {q(out)} AS SELECT *, "
        f"'P' || left(sha256($outer || unhex(sha256($inner || encode(person_key)))), {PERSON_ID_HEX}) AS person_id "
        f"FROM {q(table)}",
        {"inner": inner, "outer": outer},
    )
