"""``type: person_name``: a person's whole name, given in parts, as one string, or both, with
any aliases: the record's forename, middle names and surname, resolved across its columns.

``parts`` names the fields a source may map for it, each with its form:

* ``forenames``: ``ARTHUR JAMES``: the first word is the forename, the others go to the
  front of the middle names;
* ``middle_names``, ``surname``;
* ``full``: one string in any court style (``MORGAN, Arthur``, ``Mr Arthur MORGAN``), split
  by ``full_name_order`` (:mod:`linkage.standardise.types.name_cleaning`); it fills the
  parts the record's own ``forenames`` / ``surname`` leave empty (only when one of them is);
* ``aliases``: a list of other names, each one string as ``full``, split on ``separator``
  (default: the source's ``list_separator``).

Keys, each ``<field>_<key>`` unless ``key_names`` renames it: ``first``, ``middle``,
``surname``, ``full`` (``FIRST SURNAME``, missing unless both are known); with ``nicknames``
``first_canonical`` (``BILL`` -> ``WILLIAM``); with ``phonetic`` ``first_metaphone`` and
``surname_metaphone``; with an ``aliases`` part, sorted distinct arrays of the record's
name and its aliases' names: ``names`` (``FIRST SURNAME``), ``surnames``, ``firsts``. Cleaning
(titles, placeholders, organisation words...) is set by the options of the same names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
from anyascii import anyascii
from pydantic import Field, model_validator

from linkage.standardise.sql import VARIANTS_TABLE, Step, ident, q, staged, table_from_lists
from linkage.standardise.types import name_cleaning as nc
from linkage.standardise.types.base import CleanContext, FieldType, Key

PartForm = Literal["forenames", "middle_names", "surname", "full", "aliases"]


@dataclass(frozen=True)
class Built:
    """What a composite field made: a view ``table`` over the rows of the relation it was
    given, with every column of it and each of ``columns`` as ``column(name)``; SQL for its
    invalid rows and raw values, and its temporary tables."""

    table: str
    columns: list[str]
    invalid_sql: list[str]
    raw_sql: list[str]
    temp: list[str]
    prefix: str = ""

    def column(self, name: str) -> str:
        """The view's column holding the field's column ``name``."""
        return f"{self.prefix}__{name}"


class PersonNameType(FieldType):
    type: Literal["person_name"] = "person_name"
    parts: dict[str, PartForm] = Field(min_length=1)
    full_name_order: Literal["auto", "forenames_first", "surname_first"] = "auto"
    nicknames: bool = True
    phonetic: bool = True
    separator: str | None = Field(default=None, min_length=1)
    titles: list[str] = list(nc.TITLES)
    suffixes: list[str] = list(nc.NAME_SUFFIXES)
    placeholder_phrases: list[str] = list(nc.PLACEHOLDER_PHRASES)
    placeholder_words: list[str] = list(nc.PLACEHOLDER_WORDS)
    placeholders: list[str] = list(nc.PLACEHOLDER_VALUES)
    system_prefixes: list[str] = []
    organisation_words: list[str] = []

    @model_validator(mode="after")
    def _parts(self) -> "PersonNameType":
        twice = [f for f, n in Counter(self.parts.values()).items() if n > 1]
        if twice:
            raise ValueError(f"parts: each form names one field ({', '.join(twice)} is given twice)")
        if not {"forenames", "surname", "full"} & set(self.parts.values()):
            raise ValueError("parts: name a forenames, surname or full part")
        return self

    @property
    def lexicon(self) -> nc.Lexicon:
        def up(words: list[str]) -> tuple[str, ...]:
            return tuple(w.upper() for w in words)

        return nc.Lexicon(up(self.titles), up(self.suffixes), up(self.placeholder_phrases),
                          up(self.placeholder_words), up(self.placeholders), up(self.system_prefixes),
                          up(self.organisation_words), self.full_name_order)

    def inputs(self, field: str) -> list[str]:
        return list(self.parts)

    def part(self, form: str) -> str | None:
        return next((f for f, fm in self.parts.items() if fm == form), None)

    def keys(self) -> list[Key]:
        out = [Key(k, "", "VARCHAR") for k in ("first", "middle", "surname", "full")]
        if self.nicknames:
            out.append(Key("first_canonical", "", "VARCHAR"))
        if self.phonetic:
            out += [Key("first_metaphone", "", "VARCHAR"), Key("surname_metaphone", "", "VARCHAR")]
        if self.part("aliases"):
            out += [Key(k, "", "VARCHAR[]") for k in ("names", "surnames", "firsts")]
        return out

    def column_names(self, field: str) -> dict[str, str]:
        return {self.key_column(field, k.suffix): k.sql_type for k in self.made_keys()}

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        col = lambda k: self.key_column(field, k)  # noqa: E731
        levels: list[dict[str, Any]] = [
            {"exact": col("full"), "tf_adjustment": True},
            {"reversed": [col("first"), col("surname")], "label": "forename and surname swapped"},
        ]
        if self.part("aliases"):
            levels.append({"overlap": col("names"), "label": "an alias name matches"})
        levels += [{"jaro_winkler": col("full"), "threshold": 0.92}, {"jaro_winkler": col("full"), "threshold": 0.85}]
        return levels

    def clean(self, x: str, ctx: CleanContext) -> list[Step]:
        raise TypeError("person_name reads several columns: see build()")

    # -- standardising ---------------------------------------------------------------------

    def build(self, con: duckdb.DuckDBPyConnection, src: str, field: str, list_separator: str, prefix: str,
              rows: str | None = None) -> Built:
        """Standardise the parts of ``src`` (a table with ``source_dataset``, ``record_id`` and
        one text column per part) into the view ``{prefix}_out``: each row of ``rows`` (SQL
        over ``src``'s rows, with ``src``'s columns and its rowid as ``__lk_rid``; default:
        ``src`` itself) with the field's columns added (``Built.column``). The records'
        query then reads the names in the same pass as its other columns, not joined back to
        them by rowid (a join as large as the records)."""
        lx = self.lexicon
        con.execute(nc.lexicon_macros(lx))
        s = lx.suffix
        p = {form: self.part(form) for form in ("forenames", "middle_names", "surname", "full", "aliases")}
        temp: list[str] = []
        # Aliases: one row per non-blank element.
        al = f"{prefix}_al"
        if p["aliases"]:
            sep = q(self.separator or list_separator)
            col = ident(p["aliases"])
            con.execute(f"CREATE OR REPLACE TEMP TABLE {al} AS SELECT * FROM (SELECT rowid AS rid, source_dataset, "
                        f"record_id, unnest(string_split({col}, {sep})) AS x FROM {src} WHERE lk_nz({col}) IS NOT NULL) "
                        "WHERE lk_nz(x) IS NOT NULL")
            temp.append(al)
        name_reason = "CASE WHEN lk_nz(x) IS NOT NULL AND z IS NULL THEN lk_name_reason{s}(x, {org}) END"
        plans = [  # dictionary, its inputs (table, column, invalid label), steps, reason, outputs
            ("first", [(src, p["forenames"])], nc.forenames_steps, name_reason.format(s=s, org="false"),
             [("", f"lk__clean{s}(split_part(z, ' ', 1))"), ("_rest", f"lk__clean{s}(lk__rest(z))")]),
            ("middle", [(src, p["middle_names"])], nc.forenames_steps, name_reason.format(s=s, org="false"),
             [("", "z")]),
            ("surname", [(src, p["surname"])], nc.surname_steps, name_reason.format(s=s, org="true"), [("", "z")]),
            ("full", [(src, p["full"]), (al, p["aliases"] and "x")], nc.full_name_steps,
             f"CASE WHEN lk_nz(x) IS NOT NULL AND z.first IS NULL AND z.surname IS NULL THEN lk_name_reason{s}(x, true) END",
             [("_first", "z.first"), ("_middle", "z.middle"), ("_surname", "z.surname")]),
        ]
        invalid_sql, raw_sql, dicts = [], [], {}
        for name, maybe, steps, reason, outputs in plans:
            inputs = [(t, c) for t, c in maybe if c is not None]
            d = f"{prefix}_d_{name}"
            temp.append(d)
            dicts[name] = d
            flat = ", ".join(f"CAST({expr} AS VARCHAR) AS v{suffix}" for suffix, expr in outputs)
            if not inputs:
                empty = "".join(f", CAST(NULL AS VARCHAR) AS v{suffix}" for suffix, _ in outputs)
                con.execute(f"CREATE OR REPLACE TEMP TABLE {d} AS SELECT CAST(NULL AS VARCHAR) AS k{empty}, "
                            "CAST(NULL AS VARCHAR) AS why WHERE false")
                continue
            values = " UNION ALL ".join(f"SELECT {ident(c) if t == src else c} AS x FROM {t}" for t, c in inputs)
            distinct = f"SELECT DISTINCT x FROM ({values}) WHERE lk_nz(x) IS NOT NULL"
            registered = _register_transliterations(con, distinct, f"{prefix}_tr")
            base = (f"SELECT b.x AS __lk_raw, coalesce(CAST(t.t AS VARCHAR), b.x) AS x FROM ({distinct}) b "
                    f"LEFT JOIN {registered} t ON t.k = b.x") if registered else f"SELECT x AS __lk_raw, x FROM ({distinct})"
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {d} AS SELECT __lk_raw AS k, {flat}, {reason} AS why "
                            f"FROM ({staged(base, steps(lx, 'x', 'z'))})")
            finally:
                if registered:
                    con.execute(f"DROP TABLE IF EXISTS {ident(registered)}")
            raw_sql.append(f"SELECT {q(name)} AS field, k AS v FROM {d}")
            for t, c in inputs:
                label = str(p["aliases"]) if t == al else c
                col = "r.x" if t == al else f"r.{ident(c)}"
                invalid_sql.append(
                    f"SELECT r.source_dataset, r.record_id, {q(label)} AS field, d.why AS reason, {col} AS raw_value "
                    f"FROM {t} r JOIN (SELECT k, why FROM {d} WHERE why IS NOT NULL) d ON d.k = {col}")
        rows = rows or f"SELECT rowid AS __lk_rid, * FROM {src}"
        return self._combine(con, rows, field, dicts, p, al, prefix, temp, invalid_sql, raw_sql)

    def _combine(self, con, rows, field, d, p, al, prefix, temp, invalid_sql, raw_sql) -> Built:
        s = self.lexicon.suffix

        def join(name: str, part: str | None) -> str:
            return f"LEFT JOIN {d[name]} ON {d[name]}.k = __lk_s.{ident(part)}" if part else f"LEFT JOIN {d[name]} ON false"

        select = ", ".join([
            f"{d['first']}.v AS __lk_z_first", f"{d['first']}.v_rest AS __lk_z_first_rest",
            f"{d['middle']}.v AS __lk_z_middle", f"{d['surname']}.v AS __lk_z_surname",
            f"{d['full']}.v_first AS __lk_z_full_first", f"{d['full']}.v_middle AS __lk_z_full_middle",
            f"{d['full']}.v_surname AS __lk_z_full_surname"])
        combine: list[Step] = [
            ("__lk_z_full_ok", "__lk_z_first IS NULL OR __lk_z_surname IS NULL"),
            ("__lk_z_s_first", "coalesce(__lk_z_first, CASE WHEN __lk_z_full_ok THEN __lk_z_full_first END)"),
            ("__lk_z_s_middle", "CASE WHEN __lk_z_first IS NOT NULL THEN CASE WHEN __lk_z_first_rest IS NULL THEN __lk_z_middle"
                                " WHEN __lk_z_middle IS NULL THEN __lk_z_first_rest"
                                f" ELSE lk__clean{s}(__lk_z_first_rest || ' ' || __lk_z_middle) END"
                                " ELSE coalesce(__lk_z_middle, CASE WHEN __lk_z_full_ok THEN __lk_z_full_middle END) END"),
            ("__lk_z_s_surname", "coalesce(__lk_z_surname, CASE WHEN __lk_z_full_ok THEN __lk_z_full_surname END)"),
            ("__lk_z_s_full", "CASE WHEN __lk_z_s_first IS NOT NULL AND __lk_z_s_surname IS NOT NULL"
                              " THEN __lk_z_s_first || ' ' || __lk_z_s_surname END"),
        ]
        joins = " ".join([join("first", p["forenames"]), join("middle", p["middle_names"]),
                          join("surname", p["surname"]), join("full", p["full"])])
        combined = staged(f"SELECT __lk_s.*, {select} FROM ({rows}) AS __lk_s {joins}", combine)
        made = {k.suffix for k in self.made_keys()}
        built = Built(f"{prefix}_out", list(self.column_names(field)), invalid_sql, raw_sql, temp, prefix)
        col = lambda k: ident(built.column(self.key_column(field, k)))  # noqa: E731
        out_cols = [f"n.__lk_z_s_first AS {col('first')}", f"n.__lk_z_s_middle AS {col('middle')}",
                    f"n.__lk_z_s_surname AS {col('surname')}", f"n.__lk_z_s_full AS {col('full')}"]
        ctes, joins2 = [], []
        if {"first_canonical", "first_metaphone", "surname_metaphone"} & made:
            fp, sp = f"{prefix}_fph", f"{prefix}_sph"
            temp += [fp, sp]
            _phonetics(con, fp, f"SELECT v FROM {d['first']} UNION SELECT v_first FROM {d['full']}")
            _phonetics(con, sp, f"SELECT v FROM {d['surname']} UNION SELECT v_surname FROM {d['full']}")
            joins2 += [f"LEFT JOIN {fp} f ON f.name = n.__lk_z_s_first",
                       f"LEFT JOIN {sp} sp ON sp.name = n.__lk_z_s_surname"]
            out_cols += [f"f.canonical AS {col('first_canonical')}"] * ("first_canonical" in made)
            out_cols += [f"f.metaphone AS {col('first_metaphone')}"] * ("first_metaphone" in made)
            out_cols += [f"sp.metaphone AS {col('surname_metaphone')}"] * ("surname_metaphone" in made)
        if p["aliases"]:
            # Only the records with aliases: joined back by rowid, a join of those few rows.
            ctes.append(f"alias_names AS (SELECT a.rid, list(d.v_first || ' ' || d.v_surname) AS names, "
                        f"list(d.v_surname) AS surnames, list(d.v_first) AS firsts "
                        f"FROM {al} a JOIN {d['full']} d ON d.k = a.x GROUP BY a.rid)")
            joins2.append("LEFT JOIN alias_names an ON an.rid = n.__lk_rid")
            for key, one, many in (("names", "n.__lk_z_s_full", "an.names"),
                                   ("surnames", "n.__lk_z_s_surname", "an.surnames"),
                                   ("firsts", "n.__lk_z_s_first", "an.firsts")):
                if key in made:
                    out_cols.append(f"{one_or_set(one, many)} AS {col(key)}")
        with_sql = ("WITH " + ", ".join(ctes) + " ") if ctes else ""
        steps = ", ".join(c for c, _ in combine)
        inner = "__lk_z_first, __lk_z_first_rest, __lk_z_middle, __lk_z_surname, __lk_z_full_first, " \
                "__lk_z_full_middle, __lk_z_full_surname"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {built.table} AS {with_sql}SELECT n.* EXCLUDE ({inner}, {steps}), "
                    f"{', '.join(out_cols)} FROM ({combined}) n {' '.join(joins2)}")
        return built


def one_or_set(value: str, alias_values: str) -> str:
    """SQL: sorted distinct non-NULL array of a value and a row's alias values, NULL if empty."""
    return (
        f"CASE WHEN {alias_values} IS NULL THEN CASE WHEN {value} IS NOT NULL THEN [{value}] END"
        f" ELSE nullif(list_sort(list_distinct(list_concat([{value}], {alias_values}))), []) END"
    )


def _phonetics(con: duckdb.DuckDBPyConnection, table: str, names_sql: str) -> None:
    """``table(name, metaphone, canonical)`` over the distinct names of ``names_sql``: Python
    over distinct names only."""
    names = [r[0] for r in con.execute(f"SELECT * FROM ({names_sql}) t(n) WHERE n IS NOT NULL").fetchall()]
    table_from_lists(con, "__lk_pn_frame", {"name": names, "metaphone": [nc.metaphone(n) for n in names]})
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT CAST(f.name AS VARCHAR) AS name, CAST(f.metaphone AS VARCHAR) AS metaphone,
                   coalesce(v.canonical, CAST(f.name AS VARCHAR)) AS canonical
            FROM __lk_pn_frame f LEFT JOIN {VARIANTS_TABLE} v ON v.name = f.name
        """)  # fmt: skip
    finally:
        con.execute("DROP TABLE IF EXISTS __lk_pn_frame")


def _needs_transliteration(text: str) -> bool:
    """A letter beyond the Latin blocks (Cyrillic, Greek, Arabic, CJK...): the SQL cleaning
    strips accents from Latin letters but would drop these."""
    return any(ord(ch) > 0x024F and ch.isalpha() for ch in text)


def _register_transliterations(con: duckdb.DuckDBPyConnection, distinct_sql: str, name: str) -> str | None:
    """Register ``(k raw, t transliterated)`` for the distinct values needing it; its name or None."""
    odd = [r[0] for r in con.execute(
        f"SELECT x FROM ({distinct_sql}) WHERE regexp_matches(x, '[^\\x00-\\x{{024F}}]')").fetchall()]
    odd = [v for v in odd if _needs_transliteration(v)]
    if not odd:
        return None
    table_from_lists(con, name, {"k": odd, "t": [anyascii(v) for v in odd]})
    return name
