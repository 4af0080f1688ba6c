"""National Insurance numbers and unique learner numbers, valid and invalid, table-driven.

Each value goes through the standardiser's ``type: identifier`` with ``check: nino`` or
``check: uln`` (one DuckDB table in, the cleaned value and its reason out), and through the
generator's own classifier (``identifiers.nino_reason`` / ``uln_reason``), which the
department calibration figures use: the two must agree.

The rules: a NINO is two prefix letters, six digits and a suffix A-D (or none); D, F, I, Q,
U and V are never either prefix letter, O never the second, and BG, GB, KN, NK, NT, TN and
ZZ are never given (HMRC National Insurance Manual NIM39110); temporary numbers (``TN`` +
date of birth + M/F) are missing with their own reason, and so are the administrative
numbers that look like NINOs (OO, CR, FY, MW, NC, PP, PY, PZ: NIM39110) and dummies (the
digits 123456 of every published example, AB123456C and QQ123456C, or one digit six times). A ULN is ten digits, the first not
zero, whose digits weighted 10 down to 1 sum to 10 modulo 11 (HESA's ULN field notes, with
their example 9276308686); a nine-digit base whose weighted sum leaves remainder 0 has no
check digit; 9999999999 is the learner record's "no ULN yet".
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pytest
from pydantic import TypeAdapter

from linkage.standardise.declared import declared_columns, standardise_fields
from linkage.standardise.types import AnyFieldType
from linkage.synthetic.identifiers import (
    NINO_PREFIXES,
    NINO_SPACE,
    nino_reason,
    ninos,
    temporary_ninos,
    uln_reason,
    uln_remainders,
    ulns,
)

FIELD = TypeAdapter(AnyFieldType)


def standardise(check: str, values: list[str]) -> list[tuple[str | None, str | None]]:
    """(cleaned value, reason) for each raw value, by the standardiser."""
    ftype = FIELD.validate_python({"type": "identifier", "check": check})
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE t (source_dataset VARCHAR, record_id VARCHAR, f VARCHAR)")
        con.executemany("INSERT INTO t VALUES ('s', ?, ?)", [(str(i), v) for i, v in enumerate(values)])
        standardise_fields(
            con, "t", "o", {"f": ftype}, date_formats=["%Y-%m-%d"], list_separator=";", today=dt.date(2026, 6, 1)
        )
        cols = list(declared_columns({"f": ftype}))
        cleaned = dict(con.execute(f"SELECT record_id, {cols[0]} FROM o").fetchall())
        reasons = dict(con.execute("SELECT record_id, reason FROM o_invalid").fetchall())
    finally:
        con.close()
    return [(cleaned[str(i)], reasons.get(str(i))) for i in range(len(values))]


NINO_CASES = [
    # valid, in the forms seen in extracts
    ("AB123457C", "AB123457C", None),
    ("ab 12 34 57 c", "AB123457C", None),
    ("AB 123457 D", "AB123457D", None),
    ("  JY123457A ", "JY123457A", None),
    ("AB123457", "AB123457", None),  # suffix left off (or a space)
    ("AB-12-34-57-B", "AB123457B", None),
    ("OA123457B", "OA123457B", None),  # O may be the first letter
    ("ZY999998A", "ZY999998A", None),
    ("CE000001D", "CE000001D", None),
    ("HN654321A", "HN654321A", None),  # only the ascending 123456 is a dummy
    ("PA111112B", "PA111112B", None),  # one digit five times and another: a number
    ("CE123450A", "CE123450A", None),
    # temporary numbers: missing, with their own reason
    ("TN010185M", None, "temporary"),
    ("TN 31 12 99 F", None, "temporary"),
    ("tn311299m", None, "temporary"),
    # letters never used in a prefix, either place
    *[(f"{c}A123457A", None, "not_issued") for c in "DFIQUV"],
    *[(f"A{c}123457A", None, "not_issued") for c in "DFIOQUV"],
    # prefixes never given
    *[(f"{p}123457A", None, "not_issued") for p in ("BG", "GB", "KN", "NK", "NT", "ZZ")],
    # administrative numbers that look like NINOs (NIM39110), whatever their suffix
    *[(f"{p}123457A", None, "administrative") for p in ("OO", "CR", "FY", "MW", "NC", "PP", "PY", "PZ")],
    ("NC010185M", None, "administrative"),  # a stakeholder pension's dummy: date of birth, M/F
    ("pp 99 99 99 p", None, "administrative"),  # the pension schemes' PP999999P
    ("OO 12 34 57", None, "administrative"),  # tax credits, no NINO yet
    # dummies: the examples printed on forms and in manuals, one digit six times
    ("AB123456C", None, "placeholder"),  # HMRC's forms (P45, P60)
    ("ab 12 34 56 c", None, "placeholder"),
    ("AB123456", None, "placeholder"),
    ("QQ123456C", None, "placeholder"),  # NIM39110 and GOV.UK's example
    ("QQ 12 34 56 A", None, "placeholder"),
    ("JK123456D", None, "placeholder"),  # 123456 under any prefix
    ("AA999999A", None, "placeholder"),  # HMRC's manuals
    *[(f"AB{d * 6}A", None, "placeholder") for d in "0123456789"],
    ("AB000000A", None, "placeholder"),
    # malformed
    ("AB123457E", None, "malformed"),  # suffix A-D only
    ("AB123457X", None, "malformed"),
    ("AB12345C", None, "malformed"),  # five digits
    ("AB1234567C", None, "malformed"),  # seven digits
    ("AB12O457C", None, "malformed"),  # O keyed for a zero
    ("A1234567C", None, "malformed"),
    ("12345678A", None, "malformed"),
    ("ABC12345D", None, "malformed"),
    ("AB123457CD", None, "malformed"),
    ("OO12345", None, "malformed"),  # an administrative prefix on a malformed number
    ("AB123456E", None, "malformed"),  # the dummy digits with a bad suffix: malformed first
    # placeholders
    ("NONE", None, "placeholder"),
    ("N/A", None, "placeholder"),
    ("NK", None, "placeholder"),
]


@pytest.fixture(scope="module")
def nino_results() -> dict[str, tuple[str | None, str | None]]:
    """Every NINO case standardised at once (one DuckDB pass, not one per case)."""
    raws = [raw for raw, _, _ in NINO_CASES]
    return dict(zip(raws, standardise("nino", raws)))


@pytest.fixture(scope="module")
def uln_results() -> dict[str, tuple[str | None, str | None]]:
    raws = [raw for raw, _, _ in ULN_CASES]
    return dict(zip(raws, standardise("uln", raws)))


@pytest.mark.parametrize("raw, value, reason", NINO_CASES)
def test_nino_table(raw, value, reason, nino_results):
    assert nino_results[raw] == (value, reason)
    assert nino_reason(raw) == reason  # the generator's classifier agrees


ULN_CASES = [
    ("9276308686", "9276308686", None),  # HESA's worked example
    ("92763 08686", "9276308686", None),
    ("9276-308-686", "9276308686", None),
    (" 9276308686 ", "9276308686", None),
    ("9276308687", None, "bad_check_digit"),
    ("9276308668", None, "bad_check_digit"),  # last two digits swapped
    ("2976308686", None, "bad_check_digit"),  # first two digits swapped
    ("0276308686", None, "malformed"),  # the first digit is never zero
    ("927630868", None, "malformed"),  # nine digits
    ("92763086861", None, "malformed"),  # eleven
    ("927630868A", None, "malformed"),
    ("9999999999", None, "placeholder"),  # the learner record's "no ULN yet"
    ("1111111111", None, "placeholder"),
    ("NONE", None, "placeholder"),
]


@pytest.mark.parametrize("raw, value, reason", ULN_CASES)
def test_uln_table(raw, value, reason, uln_results):
    assert uln_results[raw] == (value, reason)
    assert uln_reason(raw) == reason


def test_exactly_one_check_digit_per_base_and_none_for_remainder_zero():
    rng = np.random.default_rng(3)
    bases = rng.integers(10**8, 10**9, 60)
    zero = bases[uln_remainders(bases) == 0]
    good = bases[uln_remainders(bases) != 0]
    assert len(zero) and len(good)
    values = [f"{b}{d}" for b in bases.tolist() for d in range(10)]
    results = standardise("uln", values)
    for i, b in enumerate(bases.tolist()):
        passing = [values[10 * i + d] for d in range(10) if results[10 * i + d][1] is None]
        if b in zero:
            assert passing == []
        else:
            assert passing == ulns(np.array([b])).tolist()
    assert [r for _, r in results] == [uln_reason(v) for v in values]


def test_generated_ninos_and_temporary_numbers_are_what_the_standardiser_says():
    rng = np.random.default_rng(5)
    codes = rng.choice(NINO_SPACE, 400, replace=False)
    # the serials next to the dummies, and the last number
    codes[:4] = [111109, 111110, 123454, NINO_SPACE - 1]
    written = ninos(codes, rng.integers(0, 4, 400)).tolist()
    assert len(set(NINO_PREFIXES.tolist())) == len(NINO_PREFIXES) == 20 * 19 - 7 - 6  # OO, FY: letters never used
    assert [w[2:8] for w in written[:3]] == ["111110", "111112", "123457"]
    assert written[3].startswith("ZY999998") and len(set(written)) == 400
    dob = np.array(["1985-01-01", "1999-12-31"], dtype="datetime64[D]")
    temporary = temporary_ninos(dob, np.array([0, 1])).tolist()
    assert temporary == ["TN010185M", "TN311299F"]
    results = standardise("nino", written + temporary)
    assert [r for _, r in results] == [None] * 400 + ["temporary", "temporary"]
    assert [v for v, _ in results[:400]] == written
