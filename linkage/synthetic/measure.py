"""How often true matching pairs disagree, to compare a generated set with live data.

The targets are DOMAIN.md's figures from the production model (hmpps-person-match),
trained on live prison, probation and court records: among true pairs with both values
present, full name exact about 88%, close spelling (Jaro-Winkler >= 0.9) about 7%,
swapped about 0.2%; date of birth exact about 95%, one character out about 1.7%,
otherwise within five years about 1%; no shared postcode about 20%.

Pairs are sampled uniformly from all pairs of records with the same person id, within
and across sources (organisations left out). Values get a light normalisation first:
upper case, trimmed, runs of spaces collapsed, everything but letters, digits and
spaces dropped; Libra's one-string names are parsed into forename and surname; default
dates of birth (1900-01-01, 1970-01-01) count as missing, as the production cleaner
makes them; postcodes are compared without spaces.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import jellyfish

REALISTIC_TARGETS: dict[str, float] = {
    "name_exact": 0.88,
    "name_close": 0.07,
    "name_swapped": 0.002,
    "dob_exact": 0.95,
    "dob_one_char": 0.017,
    "dob_within_5y": 0.01,
    "postcode_none_shared": 0.20,
}

DEFAULT_DATES = {"1900-01-01", "1970-01-01"}
_TITLES = {"MR", "MRS", "MS", "MISS", "DR", "MX"}

# forename, surname, ISO date of birth, postcode, for each source
_FIELDS_SQL = {
    "pnc": "pnc_record_id, split_part(trim(forenames), ' ', 1), surname, date_of_birth, NULL",
    "prison": "booking_id, first_name, last_name, date_of_birth, NULL",
    "probation": "offender_id, first_name, surname, date_of_birth, postcode",
    "libra": "libra_case_id, defendant_name, NULL, defendant_dob, postcode",
    "crest": "crest_defendant_id, split_part(trim(forenames), ' ', 1), surname, date_of_birth, NULL",
}


def normalise(value: str | None) -> str:
    """Upper case, letters/digits/spaces only, single spaces, trimmed.

    >>> normalise(" O'Connor-Smith  jr. ")
    'OCONNORSMITH JR'
    """
    if not value:
        return ""
    kept = "".join(c for c in value.upper() if c.isalnum() or c == " ")
    return " ".join(kept.split())


def parse_single_string_name(value: str | None) -> tuple[str, str]:
    """(forename, surname) from a court-style name: ``Mr Arthur MORGAN``, ``MORGAN, Arthur
    James``, ``Arthur James Morgan``, ``MORGAN Arthur``, or a surname alone.

    >>> parse_single_string_name("MORGAN, Arthur James")
    ('Arthur', 'MORGAN')
    >>> parse_single_string_name("Mr Arthur MORGAN")
    ('Arthur', 'MORGAN')
    >>> parse_single_string_name("MORGAN Arthur")
    ('Arthur', 'MORGAN')
    >>> parse_single_string_name("Arthur James Morgan")
    ('Arthur', 'Morgan')
    >>> parse_single_string_name("MORGAN")
    ('', 'MORGAN')
    """
    if not value or not value.strip():
        return "", ""
    if "," in value:
        surname, _, given = value.partition(",")
        tokens = given.split()
        return (tokens[0] if tokens else ""), surname.strip()
    tokens = value.split()
    if tokens and tokens[0].rstrip(".").upper() in _TITLES:
        tokens = tokens[1:]
    if len(tokens) <= 1:
        return "", (tokens[0] if tokens else "")
    upper = [t.isupper() for t in tokens]
    if any(upper) and not all(upper):
        surnames = [t for t, u in zip(tokens, upper) if u]
        givens = [t for t, u in zip(tokens, upper) if not u]
        return givens[0], " ".join(surnames)
    return tokens[0], tokens[-1]


def _iso_dob(value: str | None) -> str:
    if not value:
        return ""
    if "/" in value:
        d, m, y = value.split("/")
        value = f"{y}-{m}-{d}"
    return "" if value in DEFAULT_DATES else value


def _days(iso: str) -> int:
    return dt.date.fromisoformat(iso).toordinal()


def tally_name_and_dob(counts: dict[str, int], f1: str, s1: str, d1: str, f2: str, s2: str, d2: str) -> tuple[bool, bool]:
    """Count one true pair's name agreement (``name_*``) and date-of-birth agreement
    (``dob_*``, ISO dates) in ``counts``; says whether each was comparable (both sides present)."""
    named = bool(f1 and s1 and f2 and s2)
    if named:
        full1, full2 = f"{f1} {s1}", f"{f2} {s2}"
        if full1 == full2:
            counts["name_exact"] += 1
        elif f1 == s2 and s1 == f2:
            counts["name_swapped"] += 1
        elif jellyfish.jaro_winkler_similarity(full1, full2) >= 0.9:
            counts["name_close"] += 1
        else:
            counts["name_other"] += 1
    dated = bool(d1 and d2)
    if dated:
        if d1 == d2:
            counts["dob_exact"] += 1
        elif jellyfish.damerau_levenshtein_distance(d1, d2) <= 1:
            counts["dob_one_char"] += 1
        elif abs(_days(d1) - _days(d2)) <= 5 * 365.25:
            counts["dob_within_5y"] += 1
        else:
            counts["dob_other"] += 1
    return named, dated


def _postcode(value: str | None) -> str:
    return re.sub(r"\s+", "", value or "").upper()


def measure_true_pair_agreement(
    out_dir: str | Path, sample_pairs: int = 20_000, seed: int = 0
) -> dict[str, float]:
    """Agreement rates among a seeded sample of true pairs in a generated folder.

    Returns rates (``name_exact``, ``name_close``, ``name_swapped``, ``name_other``,
    ``dob_exact``, ``dob_one_char``, ``dob_within_5y``, ``dob_other``,
    ``postcode_none_shared``) and the pair counts behind them (``pairs``,
    ``name_pairs``, ``dob_pairs``, ``postcode_pairs``).
    """
    out_dir = Path(out_dir)
    con = duckdb.connect()
    try:
        con.execute(
            "CREATE TABLE truth AS SELECT * FROM read_csv(?, all_varchar = true, header = true)",
            [str(out_dir / "truth.csv")],
        )
        # Uniform over pairs, repeatable: order by a hash of the pair and the seed.
        con.execute(
            """
            CREATE TABLE pairs AS
            SELECT l.source_dataset AS source_l, l.record_id AS record_l,
                   r.source_dataset AS source_r, r.record_id AS record_r
            FROM truth l JOIN truth r
              ON l.person_id = r.person_id
             AND (l.source_dataset < r.source_dataset
                  OR (l.source_dataset = r.source_dataset AND l.record_id < r.record_id))
            WHERE NOT starts_with(l.person_id, 'ORG')
            ORDER BY hash(l.source_dataset || l.record_id || '|' || r.source_dataset || r.record_id || ?)
            LIMIT ?
            """,
            [str(seed), int(sample_pairs)],
        )
        selects = []
        for source, fields in _FIELDS_SQL.items():
            path = str(out_dir / f"{source}.csv").replace("'", "''")
            selects.append(
                f"""SELECT '{source}' AS source, t.* FROM (
                      SELECT {fields} FROM read_csv('{path}', all_varchar = true, header = true)
                    ) t (record_id, forename, surname, dob, postcode)
                    WHERE (record_id) IN (
                      SELECT record_l FROM pairs WHERE source_l = '{source}'
                      UNION SELECT record_r FROM pairs WHERE source_r = '{source}')"""
            )
        rows = con.execute(" UNION ALL ".join(selects)).fetchall()
        pairs = con.execute("SELECT source_l, record_l, source_r, record_r FROM pairs").fetchall()
    finally:
        con.close()

    records = {}
    for source, record_id, forename, surname, dob, postcode in rows:
        if source == "libra":
            forename, surname = parse_single_string_name(forename)
        records[(source, record_id)] = (
            normalise(forename),
            normalise(surname),
            _iso_dob(dob),
            _postcode(postcode),
        )

    counts = dict.fromkeys(
        [
            "name_exact",
            "name_close",
            "name_swapped",
            "name_other",
            "dob_exact",
            "dob_one_char",
            "dob_within_5y",
            "dob_other",
            "postcode_none_shared",
        ],
        0,
    )
    name_pairs = dob_pairs = postcode_pairs = 0
    for source_l, record_l, source_r, record_r in pairs:
        f1, s1, d1, p1 = records[(source_l, record_l)]
        f2, s2, d2, p2 = records[(source_r, record_r)]
        named, dated = tally_name_and_dob(counts, f1, s1, d1, f2, s2, d2)
        name_pairs += named
        dob_pairs += dated
        if p1 and p2:
            postcode_pairs += 1
            counts["postcode_none_shared"] += p1 != p2

    def rate(key: str, total: int) -> float:
        return counts[key] / total if total else float("nan")

    result: dict[str, float] = {
        "pairs": len(pairs),
        "name_pairs": name_pairs,
        "dob_pairs": dob_pairs,
        "postcode_pairs": postcode_pairs,
    }
    for key in counts:
        total = (
            name_pairs if key.startswith("name") else dob_pairs if key.startswith("dob") else postcode_pairs
        )
        result[key] = rate(key, total)
    return result
