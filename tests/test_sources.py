"""Reading extracts: standard CSV read as written, bad rows rejected with their row and
reason, whole-extract problems refused with one message that never shows a value."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import cli, config_variant, fast_config, synth_extracts
from linkage import sources
from linkage.config import SourceConfig
from linkage.errors import InputError


@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> Path:
    return synth_extracts(tmp_path_factory, 300)


@pytest.fixture
def data(extracts, tmp_path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(extracts, folder)
    return folder


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(lines).encode(encoding))


def _run(config: Path, data: Path, out: Path):
    res = cli("run", str(config), "--data", str(data), "--out", str(out))
    assert "Traceback" not in res.stderr, res.stderr
    return res


def _refused(res, out: Path) -> str:
    assert res.returncode == 1, res.stderr
    assert not out.exists()
    return res.stderr.replace("\n", " ")


# --- item 7, 8, 15: one run through the CLI with every kind of bad row ----------------------------


def test_standard_csv_is_read_as_written_and_bad_rows_are_rejected_with_their_row(data, tmp_path):
    crest = data / "crest.csv"
    lines = _lines(crest)
    header = lines[0].split(",")
    # FEBRL-style header: names with spaces around them.
    lines[0] = ", ".join(header[:3]) + " ," + ",".join(header[3:])
    f = [line.rstrip("\n").split(",") for line in lines[1:8]]
    # Row 1: a record id holding a doubled quote; row 2: a surname beginning with an
    # apostrophe (synth --seed 4545 writes one); row 3: a quoted line break.
    f[0][0] = '"CR""0001"'
    f[1][2] = "'OSHEA"
    f[2][3] = '"JOHN\nPAUL"'
    lines[1:4] = [",".join(x) + "\n" for x in f[:3]]
    # Row 4: an extra unquoted field; row 5: a field missing; row 6: a quote never closed
    # at the end of its field; row 7: a 3 MB field.
    lines[4] = ",".join(f[3][:3] + ["EXTRA"] + f[3][3:]) + "\n"
    lines[5] = ",".join(f[4][:-1]) + "\n"
    lines[6] = ",".join(f[5][:2] + ['"BROKEN" X'] + f[5][3:]) + "\n"
    lines[7] = ",".join(f[6][:-1] + ["x" * 3_000_000]) + "\n"
    # A blank line between rows 9 and 10 is not a row; the rows after it keep their numbers.
    lines.insert(10, "\n")
    lines[11] = ",".join(lines[11].rstrip("\n").split(",") + ["MORE"]) + "\n"  # row 11
    _write(crest, lines)
    # Libra exported from Windows: cp1252, with a curly apostrophe in a name.
    libra = data / "libra.csv"
    with libra.open(newline="") as fh:
        table = list(csv.reader(fh))
    table[1][1] = "O’BRIEN, Sean"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table)
    libra.write_bytes(buffer.getvalue().encode("cp1252"))

    config = fast_config(tmp_path)
    out = tmp_path / "run"
    # Without the encoding in the config: refused, saying why and how to fix it.
    stderr = _refused(_run(config, data, out), out)
    assert "libra.csv" in stderr and "not UTF-8" in stderr and "sources.libra.encoding" in stderr
    assert "O’" not in stderr

    config = config_variant(config, tmp_path / "cp1252.yaml",
                            lambda raw: raw["sources"]["libra"].update(encoding="cp1252"))
    res = _run(config, data, out)
    assert res.returncode == 0, res.stderr

    crosswalk = duckdb.sql(f"SELECT * FROM '{out}/restricted/crosswalk.parquet'").df()
    rejects = duckdb.sql(f"SELECT * FROM '{out}/restricted/rejects.parquet' WHERE source_dataset = 'crest'").df()
    crest_ids = set(crosswalk.loc[crosswalk.source_dataset == "crest", "record_id"])
    assert 'CR"0001' in crest_ids and f[1][0] in crest_ids and f[2][0] in crest_ids
    reasons = dict(zip(rejects.row_number, rejects.reason))
    assert sorted(reasons) == [4, 5, 6, 7, 11]
    assert "more fields than the header" in reasons[4] and "more fields" in reasons[11]
    assert "fewer fields than the header" in reasons[5]
    assert "not closed properly" in reasons[6]
    assert "too long" in reasons[7]
    manifest = json.loads((out / "manifest.json").read_text())
    for source, counts in manifest["rows"].items():
        n_cross = int((crosswalk.source_dataset == source).sum())
        n_rej = duckdb.sql(f"SELECT count(*) FROM '{out}/restricted/rejects.parquet' "
                           f"WHERE source_dataset = '{source}'").fetchall()[0][0]
        assert n_cross + n_rej == counts["read"], source
    # crest: every line but the header and the blank one is a row (row 3 spans two lines).
    assert manifest["rows"]["crest"]["read"] == len(lines) - 2
    assert table[1][0] in set(crosswalk.loc[crosswalk.source_dataset == "libra", "record_id"])


# --- item 3: a missing header line never prints the record it holds -------------------------------


def test_missing_header_says_the_header_looks_like_data_and_prints_no_value(data, tmp_path):
    crest = data / "crest.csv"
    lines = _lines(crest)
    first_values = [v for v in lines[1].rstrip("\n").split(",") if len(v) >= 4 and not v.isdigit()]
    _write(crest, lines[1:])
    out = tmp_path / "run"
    stderr = _refused(_run(fast_config(tmp_path), data, out), out)
    assert "sources.crest: the first line of crest.csv" in stderr
    assert "header line looks like data or is missing" in stderr
    assert stderr.count("crest.csv") == 1  # one message, not one per column
    for value in first_values:
        assert value not in stderr


def test_column_not_found_lists_only_names_that_look_like_identifiers(data, tmp_path):
    crest = data / "crest.csv"
    lines = _lines(crest)
    # A header whose last name looks like a date (as a value would): never shown.
    lines[0] = lines[0].replace("surname", "family_name").replace("sentence_type", "01/02/1990")
    _write(crest, lines)
    out = tmp_path / "run"
    stderr = _refused(_run(fast_config(tmp_path), data, out), out)
    assert "sources.crest.columns.surname: column 'surname' not found in crest.csv" in stderr
    assert "family_name" in stderr and "1 other name not shown" in stderr
    assert "01/02/1990" not in stderr


# --- item 8: repeated header names, nested Parquet columns ----------------------------------------


def test_repeated_header_name_is_refused_naming_column_and_file(data, tmp_path):
    prison = data / "prison.csv"
    lines = _lines(prison)
    lines[0] = lines[0].replace("middle_names", "first_name")
    _write(prison, lines)
    out = tmp_path / "run"
    stderr = _refused(_run(fast_config(tmp_path), data, out), out)
    assert "column 'first_name' appears 2 times in the header of prison.csv (fields 3, 4;" in stderr


def test_nested_parquet_columns_named_by_the_config_are_refused(data, tmp_path):
    rows = duckdb.sql(f"SELECT * FROM read_csv('{data}/crest.csv', all_varchar=true)").arrow()
    if hasattr(rows, "read_all"):
        rows = rows.read_all()
    n = rows.num_rows
    nested = rows.set_column(
        rows.schema.get_field_index("surname"), "surname",
        pa.array([{"text": s} for s in rows.column("surname").to_pylist()]),
    ).append_column("notes", pa.array([[1, 2]] * n)).append_column("scan", pa.array([b"\x00"] * n))
    pq.write_table(nested, data / "crest.parquet")

    def to_parquet(raw):
        raw["sources"]["crest"]["path"] = "crest.parquet"
        raw["sources"]["crest"]["carry"]["scan"] = "keep"

    config = config_variant(fast_config(tmp_path), tmp_path / "pq.yaml", to_parquet)
    out = tmp_path / "run"
    stderr = _refused(_run(config, data, out), out)
    assert "sources.crest.columns.surname: column 'surname' in crest.parquet is a STRUCT column" in stderr
    assert "sources.crest.carry.scan: column 'scan' in crest.parquet is a BLOB column" in stderr
    assert "'notes'" not in stderr  # not named by the config: ignored


def test_list_and_map_parquet_columns_are_refused(tmp_path):
    path = tmp_path / "x.parquet"
    duckdb.sql(f"COPY (SELECT '1' AS id, ['a'] AS surname, MAP {{'k': 'v'}} AS dob, 'x' AS other) TO '{path}'")
    src = SourceConfig(path=str(path), record_id="id", columns={"surname": "surname", "date_of_birth": "dob"})
    types = dict(duckdb.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{path}')").fetchall())
    problems, missing = sources._header_problems("x", src, path, list(types), types)
    assert missing == []
    assert [p.split(":")[0] for p in problems] == ["sources.x.columns.surname", "sources.x.columns.date_of_birth"]
    assert "a LIST column" in problems[0] and "a MAP column" in problems[1]


# --- item 9: record ids that differ only by surrounding spaces ------------------------------------


def test_record_ids_differing_only_by_spaces_are_duplicates(data, tmp_path):
    pnc = data / "pnc.csv"
    lines = _lines(pnc)
    first_id = lines[1].split(",", 1)[0]
    lines[2] = f'" {first_id} ",' + lines[2].split(",", 1)[1]
    _write(pnc, lines)
    out = tmp_path / "run"
    stderr = _refused(_run(fast_config(tmp_path), data, out), out)
    assert "column 'pnc_record_id' (the record id) repeats: 2 rows share an id with another row (rows 1, 2" in stderr
    assert first_id not in stderr


# --- item 15: messages that keep the reason ---------------------------------------------------------


def test_empty_file_is_reported_once_as_empty(data, tmp_path):
    (data / "crest.csv").write_bytes(b"")
    out = tmp_path / "run"
    stderr = _refused(_run(fast_config(tmp_path), data, out), out)
    assert "crest.csv: the file is empty" in stderr
    assert stderr.count("crest.csv") == 1 and "not found" not in stderr


def test_unreadable_dates_are_reported_for_every_source_at_once(data, tmp_path):
    for name in ("prison", "probation"):
        path = data / f"{name}.csv"
        path.write_text(re.sub(r"(\d{4})-(\d{2})-(\d{2})", r"\3.\2.\1", path.read_text()))
    out = tmp_path / "run"
    stderr = _refused(_run(fast_config(tmp_path), data, out), out)
    assert "2 extracts cannot be used" in stderr
    assert "prison.csv: column 'date_of_birth' (date_of_birth) is unreadable" in stderr
    assert "probation.csv: column 'date_of_birth' (date_of_birth) is unreadable" in stderr


def test_latin1_file_reads_with_encoding_latin1(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("id,name\n1,Zoë\n2,Renée\n".encode("latin-1"))
    con = duckdb.connect()
    src = SourceConfig(path=str(path), record_id="id", columns={"surname": "name"})
    with pytest.raises(InputError, match=r"2 row\(s\) are not valid text \(rows 1, 2\): the file is not UTF-8.*"
                                         r"sources.x.encoding: latin-1"):
        sources.load_source(con, "x", src, path)
    sources.load_source(con, "x", src.model_copy(update={"encoding": "latin-1"}), path)
    assert con.execute("SELECT _row, name FROM raw_x ORDER BY _row").fetchall() == [(1, "Zoë"), (2, "Renée")]


# --- reading, table-driven ---------------------------------------------------------------------------

CASES = [
    # (file text, source options, rows read as (_row, id, name), rejected row numbers)
    ('id,name\n1,"CR""0001"\n2,"a\nb"\n', {}, [(1, "1", 'CR"0001'), (2, "2", "a\nb")], []),
    ("id,name\n1,'OSHEA\n2,x\n", {}, [(1, "1", "'OSHEA"), (2, "2", "x")], []),
    ("id,name\n1,a,b\n2,c\n3\n4,d\n", {}, [(2, "2", "c"), (4, "4", "d")], [1, 3]),
    ('id,name\n1,"open\n2,b\n', {}, [], [1]),
    ("id,name\n1,a\n\n2,b,c\n\n\n3,d\n4,\"x\n\ny\"\n\n", {}, [(1, "1", "a"), (6, "3", "d"), (7, "4", "x\n\ny")], [3]),
    ("id\n1\n\n2\n", {}, [(1, "1"), (3, "2")], []),
    ('id,name\r\n1,"a\r\n\r\nb"\r\n2,c\r\n', {}, [(1, "1", "a\r\n\r\nb"), (2, "2", "c")], []),
    ("id;name\n1;'O''Brien'\n2;'a;b'\n", {"delimiter": ";", "quote": "'"}, [(1, "1", "O'Brien"), (2, "2", "a;b")], []),
    ('id,name\n1,"say \\"hi\\""\n', {"escape": "\\"}, [(1, "1", 'say "hi"')], []),
    ("\ufeff id , name \n1, mitchell\n", {}, [(1, "1", " mitchell")], []),
    ("id,name\n1,a\n2," + "x" * 2_100_000 + "\n3,b\n", {}, [(1, "1", "a"), (3, "3", "b")], [2]),
]


@pytest.mark.parametrize("text, options, rows, rejected", CASES)
def test_csv_rows_and_rejects(tmp_path, text, options, rows, rejected):
    path = tmp_path / "x.csv"
    path.write_bytes(text.encode("utf-8"))
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    names = [n.strip() for n in first.split(options.get("delimiter", ","))]
    columns = {"surname": names[1]} if len(names) > 1 else {"surname": names[0]}
    src = SourceConfig(path=str(path), record_id="id", columns=columns, **options)
    con = duckdb.connect()
    loaded = sources.load_source(con, "x", src, path)
    assert con.execute(f"SELECT _row, {', '.join(names)} FROM raw_x ORDER BY _row").fetchall() == rows
    assert [r[0] for r in con.execute("SELECT _row FROM rejects ORDER BY 1").fetchall()] == rejected
    assert loaded.parse_rejected == len(rejected)


def test_rows_are_numbered_around_rejects_in_a_large_file(tmp_path):
    """Good rows keep their row numbers around rejected rows, quoted line breaks and blank
    lines, also when the file is read in parallel chunks."""
    path = tmp_path / "big.csv"
    expected_bad = []
    with path.open("w") as f:
        f.write("id,name\n")
        for i in range(1, 200_001):
            if i % 9973 == 0:
                f.write(f"{i},a,b\n")
                expected_bad.append(i)
            elif i % 7919 == 0:
                f.write(f'{i},"line\nbreak"\n')
            elif i % 30011 == 0:
                f.write(f"{i},x\n\n")  # the blank line is not a row but takes a number
            else:
                f.write(f"{i},{'y' * (i % 37)}\n")
    # Each blank line takes a number: shift the expected ids after it.
    src = SourceConfig(path=str(path), record_id="id", columns={"surname": "name"})
    con = duckdb.connect()
    sources.load_source(con, "big", src, path)
    blanks_before = "((CAST(id AS BIGINT) - 1) // 30011)"
    wrong = con.execute(f"SELECT count(*) FILTER (WHERE _row <> CAST(id AS BIGINT) + {blanks_before}), count(*) "
                        "FROM raw_big").fetchall()[0]
    assert wrong == (0, 200_000 - len(expected_bad))
    bad = [r[0] for r in con.execute("SELECT _row FROM rejects ORDER BY 1").fetchall()]
    assert bad == [i + (i - 1) // 30011 for i in expected_bad]


def test_source_config_refuses_unknown_encoding_and_clashing_dialect():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown encoding 'latin-9000'"):
        SourceConfig(path="x.csv", record_id="id", columns={"surname": "s"}, encoding="latin-9000")
    with pytest.raises(ValidationError, match="quote and delimiter must be different"):
        SourceConfig(path="x.csv", record_id="id", columns={"surname": "s"}, quote=",")


def test_utf16_file_with_blank_lines_keeps_row_numbers(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,name\n1,Zoë\n\n2,a,b\n3,\"x\n\ny\"\n", encoding="utf-16")
    src = SourceConfig(path=str(path), record_id="id", columns={"surname": "name"}, encoding="utf-16")
    con = duckdb.connect()
    assert sources.load_source(con, "x", src, path).parse_rejected == 1
    assert con.execute("SELECT _row, id, name FROM raw_x ORDER BY _row").fetchall() == [
        (1, "1", "Zoë"), (4, "3", "x\n\ny")]
    assert con.execute("SELECT _row, reason FROM rejects").fetchall()[0][0] == 3


def test_a_column_named_row_is_refused(tmp_path):
    path = tmp_path / "x.csv"
    src = SourceConfig(path=str(path), record_id="id", columns={"surname": "name"})
    problems, _ = sources._header_problems("x", src, path, ["id", "name", "_row"], {})
    assert problems == ["sources.x: x.csv has a column named '_row', a name linkage keeps for row numbers. "
                        "Rename it in the export."]


@pytest.mark.parametrize("block, at", [
    (b"a\n\nb", 1), (b"a\n\r\nb", 1), (b"a\nb\n", -1), (b"a\r\nb\r\n", -1), (b"\n\n", 0), (b"ab\nc\n\n", 4),
    (b"", -1), (b"a\nb\r\n\r\nc", 4), (b"a\n\rb\n", -1),
])
def test_first_blank_line(block, at):
    assert sources._first_blank_line(block) == at


def test_blank_line_across_read_blocks_is_found(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"id\n" + b"1" * ((1 << 20) - 4) + b"\n\n2\n")  # the blank line straddles 1 MiB
    assert sources._scan_file(path).blank_inside
    path.write_bytes(b"id\n1\n2\n\n\n")
    assert not sources._scan_file(path).blank_inside  # blank lines at the end only


def test_parquet_columns_the_config_does_not_name_are_ignored(tmp_path):
    path = tmp_path / "x.parquet"
    duckdb.sql(f"COPY (SELECT '1' AS id, 'SMITH' AS surname, {{'a': 1}} AS extra, [1, 2] AS more, "
               f"'\\x00'::BLOB AS scan, 7 AS n) TO '{path}'")
    src = SourceConfig(path=str(path), record_id="id", columns={"surname": "surname"})
    con = duckdb.connect()
    sources.load_source(con, "x", src, path)
    assert con.execute("SELECT * FROM raw_x").fetchall() == [(1, "1", "SMITH", "7")]
