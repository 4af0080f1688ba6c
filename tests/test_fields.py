"""Declared field types: each type's cleaning, keys and reasons, table-driven.

One DuckDB table of raw values in, through ``standardise_fields``, and the standardised
value, its reason and its keys out. The justice preset's own fields are tested in
test_standardise.py.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from pydantic import TypeAdapter, ValidationError

from linkage.standardise.declared import declared_columns, standardise_fields
from linkage.standardise.types import TYPES, AnyFieldType

FIELD = TypeAdapter(AnyFieldType)
TODAY = dt.date(2026, 6, 1)


def clean(spec: dict, values: list, date_formats=("%Y-%m-%d",), separator=";"):
    """[(value, reason, {key: value})] for each raw value, in order."""
    ftype = FIELD.validate_python(spec)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (source_dataset VARCHAR, record_id VARCHAR, f VARCHAR)")
    con.executemany("INSERT INTO t VALUES ('s', ?, ?)", [(str(i), v) for i, v in enumerate(values)])
    standardise_fields(con, "t", "o", {"f": ftype}, date_formats=list(date_formats), list_separator=separator, today=TODAY)
    cols = list(declared_columns({"f": ftype}))
    rows = {r[0]: r[1:] for r in con.execute(f"SELECT record_id, {', '.join(cols)} FROM o").fetchall()}
    reasons = dict(con.execute("SELECT record_id, reason FROM o_invalid").fetchall())
    out = []
    for i in range(len(values)):
        value, *keys = rows[str(i)]
        out.append((value, reasons.get(str(i)), dict(zip(cols[1:], keys))))
    return out


@pytest.mark.parametrize(
    "raw, value, reason",
    [
        ("Mitchell", "MITCHELL", None),
        ("  o'connor-smith ", "OCONNOR SMITH", None),
        ("Mr John", "JOHN", None),
        ("Mr", "MR", None),  # a title alone is a name (MR is also a surname)
        ("José", "JOSE", None),
        ("Владимир", "VLADIMIR", None),  # transliterated, not dropped
        ("王小明", "WANGXIAOMING", None),
        ("محمد", "MHMD", None),
        ("UNKNOWN", None, "placeholder"),
        ("1234", None, "no_letters"),
        ("--", None, "no_letters"),
    ],
)
def test_name(raw, value, reason):
    [(v, why, keys)] = clean({"type": "name"}, [raw])
    assert (v, why) == (value, reason)
    if value:
        assert keys["f_metaphone"]


def test_name_nicknames_give_a_canonical_key():
    [(_, _, bill), (_, _, william)] = clean({"type": "name", "nicknames": True}, ["Bill", "William"])
    assert bill["f_canonical"] == william["f_canonical"] == "WILLIAM"


@pytest.mark.parametrize(
    "spec, raw, value, reason, text",
    [
        ({"type": "date", "formats": ["%Y%m%d"]}, "19560409", dt.date(1956, 4, 9), None, "19560409"),
        ({"type": "date", "formats": ["%Y%m%d"]}, "18500101", dt.date(1850, 1, 1), None, "18500101"),  # no 1900 floor
        ({"type": "date", "formats": ["%Y%m%d"]}, "19561309", None, "unparseable", "19561309"),  # keeps its digits
        ({"type": "date", "formats": ["%Y%m%d"], "unparseable": "drop"}, "19561309", None, "unparseable", None),
        ({"type": "date"}, "1990-02-03 00:00:00", dt.date(1990, 2, 3), None, "19900203"),
        ({"type": "date"}, "2030-01-01", None, "after_latest", None),
        ({"type": "date", "latest": None}, "2030-01-01", dt.date(2030, 1, 1), None, "20300101"),
        ({"type": "date", "earliest": "1900-01-01"}, "1899-12-31", None, "before_earliest", None),
        ({"type": "date", "placeholder_dates": ["1900-01-01"]}, "1900-01-01", None, "placeholder_date", None),
        ({"type": "date"}, "N/A", None, "placeholder", None),
    ],
)
def test_date(spec, raw, value, reason, text):
    [(v, why, keys)] = clean(spec, [raw])
    assert (v, why, keys["f_text"]) == (value, reason, text)
    assert keys["f_year"] == (value.year if value else None)


def test_date_uses_the_source_formats_by_default():
    [(v, _, _)] = clean({"type": "date"}, ["03/02/1990"], date_formats=("%d/%m/%Y",))
    assert v == dt.date(1990, 2, 3)


@pytest.mark.parametrize(
    "spec, raw, value, reason",
    [
        ({"type": "identifier"}, " ab 12-34 ", "AB1234", None),
        ({"type": "identifier", "case": "keep", "keep_punctuation": True}, " ab 12-34 ", "ab 12-34", None),
        ({"type": "identifier", "pattern": "[A-CEGHJ-PR-TW-Z]{2}[0-9]{6}[A-D]"}, "AB 12 34 56 C", "AB123456C", None),
        ({"type": "identifier", "pattern": "[A-CEGHJ-PR-TW-Z]{2}[0-9]{6}[A-D]"}, "AB123456", None, "malformed"),
        ({"type": "identifier"}, "0000000", None, "placeholder"),
        ({"type": "identifier", "placeholders": ["TEMP"]}, "temp", None, "placeholder"),
        ({"type": "identifier", "check": "pnc"}, "03/11985x", "2003/0011985X", None),
        ({"type": "identifier", "check": "pnc"}, "03/11985A", None, "bad_check_letter"),
        ({"type": "identifier", "check": "cro"}, "65656/91H", "065656/91H", None),
        ({"type": "identifier", "check": "cro"}, "000000/00Z", None, "placeholder"),
        ({"type": "identifier", "check": "nino"}, "ab 12 34 56 c", "AB123456C", None),
        ({"type": "identifier", "check": "nino"}, "AB123456", "AB123456", None),  # suffix left off
        ({"type": "identifier", "check": "nino"}, "TN 01 01 70 M", None, "temporary"),
        ({"type": "identifier", "check": "nino"}, "QQ123456C", None, "not_issued"),  # Q never a first letter
        ({"type": "identifier", "check": "nino"}, "AO123456C", None, "not_issued"),  # O never a second
        ({"type": "identifier", "check": "nino"}, "GB123456A", None, "not_issued"),
        ({"type": "identifier", "check": "nino"}, "AB123456E", None, "malformed"),  # suffix A-D only
        ({"type": "identifier", "check": "nino"}, "AB12345C", None, "malformed"),
        ({"type": "identifier", "check": "nino"}, "AB000000A", None, "placeholder"),
        ({"type": "identifier", "check": "uln"}, "9276308686", "9276308686", None),  # the published example
        ({"type": "identifier", "check": "uln"}, "92763 08686", "9276308686", None),
        ({"type": "identifier", "check": "uln"}, "9276308687", None, "bad_check_digit"),
        ({"type": "identifier", "check": "uln"}, "0276308686", None, "malformed"),  # first digit not zero
        ({"type": "identifier", "check": "uln"}, "927630868", None, "malformed"),
    ],
)
def test_identifier(spec, raw, value, reason):
    [(v, why, _)] = clean(spec, [raw])
    assert (v, why) == (value, reason)


def test_nino_key_ignores_the_suffix():
    out = clean({"type": "identifier", "check": "nino"}, ["AB123456C", "ab 123456", "AB 12 34 56 D"])
    assert {keys["f_key"] for _, _, keys in out} == {"AB123456"}


def test_pnc_key_compares_whatever_the_written_form():
    out = clean({"type": "identifier", "check": "pnc"}, ["2003/0011985X", "20030011985X", "03/11985X"])
    assert {keys["f_key"] for _, _, keys in out} == {"030011985X"}


@pytest.mark.parametrize(
    "spec, raw, value, reason, district",
    [
        ({"type": "postcode"}, "sw1a1aa", "SW1A 1AA", None, "SW1A"),
        ({"type": "postcode"}, "NF1 1NF", None, "no_fixed_abode", None),
        ({"type": "postcode"}, "SW1A", None, "outward_only", "SW1A"),
        ({"type": "postcode"}, "2119", None, "malformed", None),
        ({"type": "postcode", "country": "other"}, " 2119 ", "2119", None, None),
        ({"type": "postcode", "country": "other"}, "1012  ab", "1012 AB", None, None),
    ],
)
def test_postcode(spec, raw, value, reason, district):
    [(v, why, keys)] = clean(spec, [raw])
    assert (v, why) == (value, reason)
    assert keys.get("f_district") == district


@pytest.mark.parametrize(
    "spec, raw, value, reason",
    [
        ({"type": "text"}, " Wallaby  Place, Flat 2 ", "WALLABY PLACE FLAT 2", None),
        ({"type": "text"}, "n/a", None, "placeholder"),
        ({"type": "number"}, " 1,200 ", 1200.0, None),
        ({"type": "number"}, "7a", None, "not_a_number"),
        ({"type": "email"}, " Jo.Bloggs@Example.ORG ", "jo.bloggs@example.org", None),
        ({"type": "email"}, "jo.bloggs", None, "malformed"),
        ({"type": "category"}, " nsw ", "NSW", None),
        ({"type": "category", "values": {"M": ["m", "male"], "F": ["f", "female"]}}, "Male", "M", None),
        ({"type": "category", "values": {"M": ["m", "male"], "F": ["f", "female"]}}, "q", None, "unrecognised"),
    ],
)
def test_other_types(spec, raw, value, reason):
    [(v, why, _)] = clean(spec, [raw])
    assert (v, why) == (value, reason)


def test_list_of_names_and_dates():
    [(names, _, _), (none, why, _)] = clean({"type": "list", "of": {"type": "name"}}, ["Bill Smith; 王小明 ;", "1234"])
    assert list(names) == ["BILL SMITH", "WANGXIAOMING"]
    assert none is None and why == "no_letters"
    [(dates, _, _)] = clean({"type": "list", "of": {"type": "date"}, "separator": "|"}, ["1990-01-02|bad|1990-01-02"])
    assert list(dates) == [dt.date(1990, 1, 2)]


def test_every_type_is_registered_and_has_default_levels():
    for name, cls in TYPES.items():
        spec = {"type": name} if name != "list" else {"type": "list", "of": {"type": "name"}}
        if name == "encoded":  # its options are required (the fingerprint a job expects); bloom: tests/test_encode.py
            spec = {"type": "encoded", "encoding": "hash", "fingerprint": "0" * 32}
        ftype = FIELD.validate_python(spec)
        assert isinstance(ftype, cls)
        columns = ftype.column_names("f")
        for level in ftype.default_levels("f"):
            kind = next(k for k in level if k not in ("label", "tf_adjustment", "threshold", "distance", "days"))
            assert level[kind] in columns, (name, level)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "date", "check": "pnc"}, "check"),
        ({"type": "identifier", "check": "pnc", "pattern": "[0-9]+"}, "a check scheme sets the value's form"),
        ({"type": "identifier", "pattern": "[0-9"}, "not a valid regular expression"),
        ({"type": "date", "formats": ["dd/mm/yyyy"]}, "strptime"),
        ({"type": "colour"}, "colour"),
    ],
)
def test_options_that_do_not_fit_the_type(spec, message):
    with pytest.raises(ValidationError, match=message):
        FIELD.validate_python(spec)
