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
        ({"type": "date", "formats": ["%Y%m%d"]}, "19561309", None, "impossible_date", "19561309"),  # keeps its digits
        ({"type": "date", "formats": ["%Y%m%d"], "unparseable": "drop"}, "19561309", None, "impossible_date", None),
        ({"type": "date", "formats": ["%Y%m%d"]}, "1956-0409", None, "unparseable", "19560409"),
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
        ({"type": "identifier", "check": "nino"}, "ab 12 34 57 c", "AB123457C", None),
        ({"type": "identifier", "check": "nino"}, "AB123457", "AB123457", None),  # suffix left off
        ({"type": "identifier", "check": "nino"}, "TN 01 01 70 M", None, "temporary"),
        ({"type": "identifier", "check": "nino"}, "QA123457C", None, "not_issued"),  # Q never a first letter
        ({"type": "identifier", "check": "nino"}, "AB123456C", None, "placeholder"),  # the example on forms
        ({"type": "identifier", "check": "nino"}, "OO123457A", None, "administrative"),  # tax credits, no NINO yet
        ({"type": "identifier", "check": "nino"}, "AO123457C", None, "not_issued"),  # O never a second
        ({"type": "identifier", "check": "nino"}, "GB123457A", None, "not_issued"),
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
    out = clean({"type": "identifier", "check": "nino"}, ["AB123457C", "ab 123457", "AB 12 34 57 D"])
    assert {keys["f_key"] for _, _, keys in out} == {"AB123457"}


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
        spec = {"list": {"type": "list", "of": {"type": "name"}}, "set": {"type": "set", "union": ["a", "b"]},
                "person_name": {"type": "person_name", "parts": {"a": "full"}}}.get(name, {"type": name})
        if name == "encoded":  # its options are required (the fingerprint a job expects); bloom: tests/test_encode.py
            spec = {"type": "encoded", "encoding": "hash", "fingerprint": "0" * 32}
        ftype = FIELD.validate_python(spec)
        assert isinstance(ftype, cls)
        columns = ftype.column_names("f")
        for level in ftype.default_levels("f"):
            kind = next(k for k in level if k not in ("label", "tf_adjustment", "threshold", "distance", "days"))
            assert all(c in columns for c in (level[kind] if kind == "reversed" else [level[kind]])), (name, level)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "date", "check": "pnc"}, "check"),
        ({"type": "identifier", "check": "pnc", "pattern": "[0-9]+"}, "a check scheme sets the value's form"),
        ({"type": "identifier", "pattern": "[0-9"}, "not a valid regular expression"),
        ({"type": "date", "formats": ["dd/mm/yyyy"]}, "strptime"),
        ({"type": "colour"}, "colour"),
        ({"type": "person_name", "parts": {"a": "full", "b": "full"}}, "full is given twice"),
        ({"type": "person_name", "parts": {"a": "middle_names"}}, "name a forenames, surname or full part"),
        ({"type": "set", "union": ["a"]}, "at least 2"),
        ({"type": "date", "parts": {"y": "year", "m": "month"}}, "one each for year, month and day"),
        ({"type": "date", "parts": {"y": "year", "m": "month", "d": "month"}}, "one each for year, month and day"),
        ({"type": "date", "parts": {"y": "year", "m": "month", "d": "day"}, "formats": ["%Y"]}, "give no formats"),
        ({"type": "list", "of": {"type": "date", "parts": {"y": "year", "m": "month", "d": "day"}}}, "a field of its own"),
    ],
)
def test_options_that_do_not_fit_the_type(spec, message):
    with pytest.raises(ValidationError, match=message):
        FIELD.validate_python(spec)


def _person(spec: dict, rows: list[dict], separator=";") -> list[dict]:
    """Each row (part -> raw value) through a person_name field ``n``: its columns by key."""
    ftype = FIELD.validate_python({"type": "person_name", **spec})
    parts = list(ftype.parts)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t (source_dataset VARCHAR, record_id VARCHAR, {', '.join(p + ' VARCHAR' for p in parts)})")
    con.executemany(f"INSERT INTO t VALUES ('s', ?, {', '.join('?' for _ in parts)})",
                    [[str(i), *(r.get(p) for p in parts)] for i, r in enumerate(rows)])
    standardise_fields(con, "t", "o", {"n": ftype}, date_formats=["%Y-%m-%d"], list_separator=separator, today=TODAY)
    cols = list(declared_columns({"n": ftype}))
    out = {r[0]: dict(zip(cols, r[1:])) for r in con.execute(f"SELECT record_id, {', '.join(cols)} FROM o").fetchall()}
    return [{k.removeprefix("n_"): v for k, v in out[str(i)].items()} for i in range(len(rows))]


def test_person_name_resolves_parts_across_columns():
    spec = {"parts": {"fore": "forenames", "mid": "middle_names", "sur": "surname", "whole": "full", "aka": "aliases"}}
    a, b, c = _person(spec, [
        {"fore": "Arthur James", "mid": "Ann", "sur": "Morgan", "aka": "MORGAN, Art;John SMITH;NOT ENTERED"},
        {"whole": "Mr Arthur MORGAN"},  # the parts come from the single string
        {"sur": "Morgan", "whole": "SMITH, John"},  # the full name fills the missing forename
    ])
    assert (a["first"], a["middle"], a["surname"], a["full"]) == ("ARTHUR", "JAMES ANN", "MORGAN", "ARTHUR MORGAN")
    assert a["names"] == ["ART MORGAN", "ARTHUR MORGAN", "JOHN SMITH"] and a["surnames"] == ["MORGAN", "SMITH"]
    assert a["first_metaphone"] and a["first_canonical"] == "ARTHUR"
    assert (b["first"], b["surname"], b["names"]) == ("ARTHUR", "MORGAN", ["ARTHUR MORGAN"])
    assert (c["first"], c["surname"]) == ("JOHN", "MORGAN")


@pytest.mark.parametrize(
    "order, raw, first, surname",
    [
        ("auto", "MORGAN, Arthur", "ARTHUR", "MORGAN"),
        ("auto", "Arthur MORGAN", "ARTHUR", "MORGAN"),
        ("forenames_first", "Arthur Morgan", "ARTHUR", "MORGAN"),
        ("surname_first", "Wang Xiaoming", "XIAOMING", "WANG"),
    ],
)
def test_person_name_full_name_order(order, raw, first, surname):
    [row] = _person({"parts": {"whole": "full"}, "full_name_order": order}, [{"whole": raw}])
    assert (row["first"], row["surname"]) == (first, surname)


def test_person_name_word_lists_are_options():
    spec = {"parts": {"whole": "full"}, "system_prefixes": ["MIG_ERROR_"], "organisation_words": ["LTD"]}
    plain, org, prefixed = _person(spec, [{"whole": "Zoe Smith"}, {"whole": "Acme Ltd"}, {"whole": "MIG_ERROR_Zoe Smith"}])
    assert plain["full"] == prefixed["full"] == "ZOE SMITH" and org["full"] is None
    [kept] = _person({"parts": {"whole": "full"}}, [{"whole": "Acme Ltd"}])  # no organisation words: a name
    assert kept["surname"] == "LTD"


def test_two_person_name_fields_each_clean_their_own_parts():
    fields = {n: FIELD.validate_python({"type": "person_name", "parts": {f"{n}_whole": "full"}, "phonetic": False})
              for n in ("n", "m")}
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('s', '1', 'MORGAN, Arthur', 'Mr John SMITH'),"
                " ('s', '2', NULL, 'Zoe Jones')) v(source_dataset, record_id, n_whole, m_whole)")
    standardise_fields(con, "t", "o", fields, date_formats=["%Y-%m-%d"], today=TODAY)
    got = con.execute("SELECT record_id, n_full, m_full, m_first_canonical FROM o ORDER BY 1").fetchall()
    assert got == [("1", "ARTHUR MORGAN", "JOHN SMITH", "JOHN"), ("2", None, "ZOE JONES", "ZOE")]


def test_set_is_the_union_of_fields():
    fields = {"dob": FIELD.validate_python({"type": "date"}),
              "alias_dobs": FIELD.validate_python({"type": "list", "of": {"type": "date"}}),
              "dobs": FIELD.validate_python({"type": "set", "union": ["dob", "alias_dobs"]})}
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('s', '1', '1990-01-02', '1991-02-03;1990-01-02'),"
                " ('s', '2', NULL, NULL), ('s', '3', 'bad', '1980-05-05'), ('s', '4', '1990-01-02', NULL))"
                " v(source_dataset, record_id, dob, alias_dobs)")
    standardise_fields(con, "t", "o", fields, date_formats=["%Y-%m-%d"], today=TODAY)
    got = dict(con.execute("SELECT record_id, dobs FROM o").fetchall())
    assert got == {"1": [dt.date(1990, 1, 2), dt.date(1991, 2, 3)], "2": None, "3": [dt.date(1980, 5, 5)],
                   "4": [dt.date(1990, 1, 2)]}
    assert declared_columns(fields)["dobs"] == "DATE[]"


def test_key_names_rename_or_drop_keys():
    spec = {"type": "date", "key_names": {"year": "year_of_birth", "text": None}}
    assert declared_columns({"dob": FIELD.validate_python(spec)}) == {"dob": "DATE", "year_of_birth": "INTEGER"}
    with pytest.raises(ValidationError, match="'decade' is not a key of this type"):
        FIELD.validate_python({"type": "date", "key_names": {"decade": "d"}})


def test_a_date_in_three_columns_is_one_date():
    """RLdata's birth year, month and day (``by, bm, bd``): one date field with parts, its
    keys and levels a date's; a date missing a part is missing with its reason, a part that
    makes no date is an impossible date, not a wrong one."""
    ftype = FIELD.validate_python({"type": "date", "parts": {"by": "year", "bm": "month", "bd": "day"}})
    assert ftype.inputs("dob") == ["by", "bm", "bd"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (source_dataset VARCHAR, record_id VARCHAR, \"by\" VARCHAR, bm VARCHAR, bd VARCHAR)")
    rows = [("1967", "9", "27"), (" 1967", "09 ", "7"), ("1967", None, "27"), (None, None, None), ("1967", "13", "1"),
            ("1967", "2", "30")]
    con.executemany("INSERT INTO t VALUES ('s', ?, ?, ?, ?)", [(str(i), *r) for i, r in enumerate(rows)])
    standardise_fields(con, "t", "o", {"dob": ftype}, date_formats=["%d/%m/%Y"], list_separator=";", today=TODAY)
    got = con.execute("SELECT dob, dob_text, dob_year FROM o ORDER BY CAST(record_id AS INT)").fetchall()
    assert got[:2] == [(dt.date(1967, 9, 27), "19670927", 1967), (dt.date(1967, 9, 7), "19670907", 1967)]
    assert got[2:4] == [(None, None, None)] * 2
    reasons = dict(con.execute("SELECT record_id, reason FROM o_invalid").fetchall())
    assert reasons == {"2": "incomplete_date", "4": "impossible_date", "5": "impossible_date"}
    assert got[4][1] == "1967131"  # an impossible date keeps its digits for the string comparison
