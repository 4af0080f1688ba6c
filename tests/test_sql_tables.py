"""table_from_lists: Python lists into DuckDB, bound when small, through Arrow when large."""

import datetime as dt

import duckdb
import pytest

from linkage.standardise import sql


@pytest.mark.parametrize("bound_rows", [10_000, 0])  # bound parameters, then the Arrow path
def test_both_paths_make_the_same_typed_table(monkeypatch, bound_rows):
    monkeypatch.setattr(sql, "BOUND_ROWS", bound_rows)
    con = duckdb.connect()
    columns = {"k": ["a", None, "Ünïcode", ""], "d": [dt.date(2001, 2, 3), None, dt.date(1999, 12, 31), None],
               "n": [1, 2, 3, 4]}
    sql.table_from_lists(con, "t", columns, {"d": "DATE", "n": "BIGINT"})
    assert con.execute("SELECT * FROM t").fetchall() == list(zip(*columns.values(), strict=True))
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 't'").fetchall())
    assert types == {"k": "VARCHAR", "d": "DATE", "n": "BIGINT"}
    sql.table_from_lists(con, "t", {"k": []})  # replaced, and empty is allowed
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        sql.table_from_lists(duckdb.connect(), "t", {"a": [1], "b": [1, 2]})
