"""The SQL every field type builds on: literals, stage plans, the ``lk_*`` macros.

All cleaning is DuckDB SQL. A type's logic is a *stage plan*: a list of steps
``(column, SQL over earlier columns)`` that :func:`staged` nests into projections, so each
intermediate value is computed once per row. Shared pieces are ``lk_*`` temp macros: each
type module registers its own (:func:`register_macros`) and :func:`install_macros` creates
them all on a connection.

Every macro obeys one rule, because DuckDB expands a macro by copying its argument
expression into each place the parameter appears: a macro that uses a parameter more than
once is only ever called with a *column* (a previous stage's output), never with a computed
expression; without it nested macros grow exponentially. Casts inside CASE branches are
TRY_CASTs: the optimizer may evaluate a branch for rows it does not select.

The Python helpers of the type modules (``canonical_pnc``, ``clean_name``...) run the same
plans on one cached in-memory connection (:func:`evaluate`), so a Python answer always
equals the pipeline's.
"""

from __future__ import annotations

import functools
import re
import threading
from importlib import resources
from typing import Any

import duckdb

Step = tuple[str, str]

# Identifier-like values (squashed to A-Z0-9) that mean "none" rather than a mistyped value:
# what ``lk_is_placeholder`` recognises, beside text without a letter or a digit 1-9.
PLACEHOLDER_CODES = (
    "NONE", "NA", "NK", "NULL", "NIL", "NAN", "UNKNOWN", "UNK", "NOTKNOWN", "NOTENTERED",
    "NOTAPPLICABLE", "NOTRECORDED", "NOTGIVEN", "NOTSTATED", "NOTSPECIFIED", "NOTAVAILABLE",
    "TBC", "TBA", "X", "XX", "XXX", "N", "U", "NO", "REDACTED", "WITHHELD", "ANON", "NONEGIVEN",
)  # fmt: skip

VARIANTS_TABLE = "__lk_forename_variants"


def q(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def qlist(values) -> str:
    """A parenthesised list of SQL string literals."""
    return "(" + ", ".join(q(v) for v in values) + ")"


def alt(words) -> str:
    """A regular-expression alternation of literal words."""
    return "|".join(re.escape(w) for w in words)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


# Up to this many rows, Python values reach DuckDB as bound list parameters; beyond it, as an
# Arrow table (about four times faster per row). Registering any Python object makes DuckDB
# import pandas, a second of a warm ``linkage find``, which binds its few values instead.
BOUND_ROWS = 20_000


def table_from_lists(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, list],
                     types: dict[str, str] | None = None) -> None:
    """``CREATE OR REPLACE TEMP TABLE table`` from equal-length Python lists, one per column,
    typed by ``types`` (SQL type per column; VARCHAR where not given)."""
    types = types or {}
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"{table}: columns of different lengths {sorted(lengths)}")
    if next(iter(lengths), 0) <= BOUND_ROWS:
        cols = ", ".join(f"unnest(${i + 1}::{types.get(c, 'VARCHAR')}[]) AS {ident(c)}" for i, c in enumerate(columns))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(table)} AS SELECT {cols}", list(columns.values()))
        return
    import pyarrow as pa

    view = f"__lk_arrow_{table}"
    con.register(view, pa.table({c: pa.array(v) for c, v in columns.items()}))
    try:
        cols = ", ".join(f"CAST({ident(c)} AS {types.get(c, 'VARCHAR')}) AS {ident(c)}" for c in columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(table)} AS SELECT {cols} FROM {ident(view)}")
    finally:
        con.unregister(view)


def staged(source_sql: str, steps: list[Step]) -> str:
    """Nest ``SELECT *, step AS column`` projections so each step runs after its inputs.

    A step's level is one more than the deepest earlier step it names; steps of one level
    share a projection. Every column a step reads is thus materialised once per row.
    """
    level: dict[str, int] = {}
    for column, expr in steps:
        deps = [lv for col, lv in level.items() if re.search(rf"\b{re.escape(col)}\b", expr)]
        level[column] = 1 + max(deps, default=0)
    sql = source_sql
    for k in range(1, max(level.values(), default=0) + 1):
        cols = ", ".join(f"{expr} AS {col}" for col, expr in steps if level[col] == k)
        sql = f"SELECT *, {cols} FROM ({sql})"
    return sql


# --------------------------------------------------------------------------------------
# Macros: (name, parameters, body), registered by the modules that use them
# --------------------------------------------------------------------------------------

_MACROS: dict[str, tuple[str, str]] = {}


def register_macros(templates: list[tuple[str, str, str]]) -> None:
    """Add ``(name, params, body)`` macros to those :func:`install_macros` creates."""
    for name, params, body in templates:
        _MACROS[name] = (params, body)


register_macros([
    ("lk_nz", "x", r"CASE WHEN regexp_matches(x, '[^\s\x{00A0}\x{FEFF}]') THEN x END"),
    ("lk__compact", "x", "regexp_replace(upper(x), '[^A-Z0-9]', '', 'g')"),
    ("lk_is_placeholder", "x",
     f"(regexp_replace(upper(x), '[^A-Z0-9]', '', 'g') IN {qlist(('',) + PLACEHOLDER_CODES)}"
     r" OR regexp_matches(x, '^[^A-Za-z1-9]*$'))"),
    ("lk_is_date_like", "x", r"regexp_matches(trim(x), '^\d{1,4}[-/. ]\d{1,2}[-/. ]\d{1,4}')"),
    # a date's text without a time part
    ("lk__date_clean", "x",
     r"trim(regexp_replace(x, '[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$', ''))"),
])  # fmt: skip


def macro_sql() -> str:
    import linkage.standardise.types  # noqa: F401 - every type module registers its macros

    return ";\n".join(f"CREATE OR REPLACE TEMP MACRO {name}({params}) AS {body}"
                      for name, (params, body) in _MACROS.items())


def _variants_csv_sql() -> str:
    path = resources.files("linkage").joinpath("data/forename_variants.csv")
    return (
        f"CREATE OR REPLACE TEMP TABLE {VARIANTS_TABLE} AS SELECT name, canonical FROM "
        f"read_csv({q(str(path))}, header = true, "
        "columns = {'name': 'VARCHAR', 'canonical': 'VARCHAR', 'source': 'VARCHAR'})"
    )


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``lk_*`` temp macros and the forename variant table on ``con`` (idempotent).

    The variant table (``linkage/data/forename_variants.csv``: ``name,canonical,source``)
    maps a forename to its canonical form: nicknames from the ``nicknames`` package
    (Apache-2.0, see ``forename_variants_NOTICE.txt``) where a nickname points to one formal
    name, and British, South Asian/Arabic and Eastern European variants added by hand.
    """
    con.execute(macro_sql())
    con.execute(_variants_csv_sql())


# --------------------------------------------------------------------------------------
# Python helpers: a stage plan on one cached in-memory connection
# --------------------------------------------------------------------------------------

_helper_lock = threading.Lock()
_helper_con: duckdb.DuckDBPyConnection | None = None
_installed: set[str] = set()


def run(sql: str, params: list, setup: str | None = None) -> Any:
    """The first value of ``sql`` on the helper connection (``setup`` SQL run once first)."""
    global _helper_con
    with _helper_lock:
        if _helper_con is None:
            con = duckdb.connect(":memory:")
            install_macros(con)
            _helper_con = con
        if setup and setup not in _installed:
            _helper_con.execute(setup)
            _installed.add(setup)
        return _helper_con.execute(sql, params).fetchall()[0][0]


@functools.lru_cache(maxsize=256)
def _helper_sql(steps: tuple[Step, ...], out_expr: str) -> str:
    return f"SELECT {out_expr} FROM ({staged('SELECT CAST(? AS VARCHAR) AS x', list(steps))})"


def evaluate(steps: list[Step], out_expr: str, text, setup: str | None = None) -> Any:
    """``out_expr`` of the stage plan ``steps`` over one raw value ``text`` (column ``x``)."""
    value = None if text is None else str(text)
    return run(_helper_sql(tuple(steps), out_expr), [value], setup)
