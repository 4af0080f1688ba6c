"""Linkage bias: link rates by group, with disclosure control, and evaluation by group.

Linkage error is not spread evenly (people without a date of birth, with non-Anglicised
names, women whose surname changed link worse), and any statistic built on the links
inherits the difference. Two rates are reported per group of each breakdown:

- the share of records linked to another source (the record's person is found in two
  or more sources);
- the share of people found in two or more sources, among the people with a record in
  the group (a person with records in two groups counts in both).

Breakdowns: the record's source, sex, age band at the event (the source's first
``age_at`` column), the year of that event, whether a date of birth was present, and any
category a source declares under ``breakdowns`` (an ethnicity code). Records of a source
that does not carry a breakdown are the group ``not carried``; a blank value is
``missing``.

Each breakdown is a table of groups by (in, out) with row and column totals, published
as ``analyst/linkage_bias.parquet``. Counts from 1 to ``outputs.suppression_threshold - 1``
are suppressed, and more cells with them (:func:`protect`) until no suppressed cell can be
worked out from the published cells and the table's sums; with ``outputs.rounding_base``
the published counts are then rounded to that base (10 and 5: the ONS "10-5" rule).

The records' groups (with record ids) go to ``restricted/record_groups.parquet``, so that
``linkage evaluate`` can score precision and recall by the same groups
(:func:`evaluation_by_group`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from linkage.config import BUILT_IN_BREAKDOWNS, JobConfig
from linkage.source_rows import MAX_AGE, age_at, raw_date, source_join
from linkage.sources import lit, q

BIAS_TABLE = "linkage_bias"
NOT_CARRIED, MISSING, ALL = "not carried", "missing", "all"
# Age bands at the event: (lower bound, label); the last is open.
AGE_BANDS = [(0, "0-17"), (18, "18-20"), (21, "21-24"), (25, "25-29"), (30, "30-39"), (40, "40-49"),
             (50, "50-59"), (60, "60+")]


def available_breakdowns(cfg: JobConfig) -> list[str]:
    """The breakdowns this job publishes: those it asks for (default: all it can make)."""
    can = ["source"]
    if _is_field(cfg, "sex", "category"):
        can.append("sex")
    if _is_field(cfg, "date_of_birth", "date"):
        can.append("date_of_birth_present")
        if any(src.age_at and "date_of_birth" in src.columns for src in cfg.sources.values()):
            can += ["age_band", "event_year"]
    declared = [g for src in cfg.sources.values() for g in src.breakdowns]
    can += [g for g in dict.fromkeys(declared)]
    wanted = cfg.outputs.bias_breakdowns
    return can if wanted is None else [b for b in wanted if b in can]


def _is_field(cfg: JobConfig, name: str, type_: str) -> bool:
    """Whether the job links on a field ``name`` of type ``type_`` (the justice preset's
    ``sex`` and ``date_of_birth``, or the same fields declared by hand)."""
    field = cfg.fields.get(name)  # the preset's fields are written in when the config loads
    return field is not None and field.type == type_


def _age_band(age: str) -> str:
    cases = " ".join(f"WHEN {age} >= {lo} THEN {lit(label)}" for lo, label in reversed(AGE_BANDS))
    return f"CASE WHEN {age} IS NULL OR {age} < 0 OR {age} > {MAX_AGE} THEN {lit(MISSING)} {cases} END"


def group_columns(cfg: JobConfig, name: str) -> dict[str, str]:
    """SQL over ``source_join``'s ``raw``, ``x`` and ``s``: source ``name``'s group in each
    breakdown the job publishes."""
    src = cfg.sources[name]
    has_dob = _is_field(cfg, "date_of_birth", "date") and "date_of_birth" in src.columns
    event = raw_date(src, src.age_at[0]) if src.age_at and has_dob else None
    cols = {
        "source": lit(name),
        "sex": f"coalesce(CAST(s.sex AS VARCHAR), {lit(MISSING)})",
        "date_of_birth_present": "CASE WHEN s.date_of_birth IS NULL THEN 'no' ELSE 'yes' END",
        "age_band": _age_band(age_at(event)) if event
        else lit(NOT_CARRIED),
        "event_year": f"coalesce(CAST(year({event}) AS VARCHAR), {lit(MISSING)})" if event else lit(NOT_CARRIED),
    }
    for group, col in src.breakdowns.items():
        cols[group] = f"coalesce(nullif(trim(raw.{q(col)}), ''), {lit(MISSING)})"
    return {b: cols.get(b, lit(NOT_CARRIED)) for b in available_breakdowns(cfg)}


# The column of a source's joined rows that holds its group in breakdown i (``group_rows`` below).
GROUP_COLUMN = "__lk_breakdown_{}"


def build_record_groups(con: duckdb.DuckDBPyConnection, cfg: JobConfig, previous: Path | None = None,
                        group_rows: dict[str, str] | None = None) -> list[str]:
    """``record_groups(source_dataset, record_id, person_id, in_other_source, <breakdowns>)``:
    every linked record with its group in each breakdown; returns the breakdowns.

    ``previous`` (an incremental run: the previous run's restricted folder, with
    ``record_changes`` in ``con``): a record's groups depend on the record alone, so the
    unchanged records' are read from its ``record_groups.parquet`` and only the added and
    changed records' are made.

    ``group_rows``: per source, a table of its joined rows (every one) that already holds
    ``__lk_breakdown_record_id``, ``__lk_breakdown_person_id`` and the groups (``GROUP_COLUMN``, in the
    order of ``group_columns``): de-identification's, so the join is not made again."""
    breakdowns = available_breakdowns(cfg)
    parts = []
    if group_rows is not None and previous is None:
        for name in cfg.sources:
            picked = ", ".join(f"{GROUP_COLUMN.format(i)} AS {q(b)}" for i, b in enumerate(breakdowns))
            parts.append(f"SELECT {lit(name)} AS source_dataset, __lk_breakdown_record_id AS record_id, "
                         f"__lk_breakdown_person_id AS person_id, {picked} FROM {group_rows[name]}")
        _create_record_groups(con, parts)
        return breakdowns
    prev = previous / "record_groups.parquet" if previous is not None else None
    if prev is not None and prev.is_file():
        have = [c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(prev))})").fetchall()]
        if have == ["source_dataset", "record_id", *breakdowns]:
            parts.append(f"""SELECT x.source_dataset, x.record_id, x.person_id, p.* EXCLUDE (source_dataset, record_id)
                FROM read_parquet({lit(str(prev))}) p
                SEMI JOIN (SELECT * FROM record_changes WHERE status = 'same') c
                  ON c.source_dataset = p.source_dataset AND CAST(c.record_id AS VARCHAR) = CAST(p.record_id AS VARCHAR)
                JOIN crosswalk x ON x.source_dataset = p.source_dataset
                  AND CAST(x.record_id AS VARCHAR) = CAST(p.record_id AS VARCHAR)""")
    new_only = (" WHERE (x.source_dataset, x.record_id) IN (SELECT (source_dataset, record_id) FROM record_changes "
                "WHERE status IN ('added', 'changed'))") if parts else ""
    for name, src in cfg.sources.items():
        picked = ", ".join(f"{sql} AS {q(b)}" for b, sql in group_columns(cfg, name).items())
        parts.append(f"SELECT x.source_dataset, x.record_id, x.person_id, {picked} {source_join(name, src)}{new_only}")
    _create_record_groups(con, parts)
    return breakdowns


def _create_record_groups(con: duckdb.DuckDBPyConnection, parts: list[str]) -> None:
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE record_groups AS
        WITH people AS (SELECT person_id, min(source_dataset) <> max(source_dataset) AS in_other_source
                        FROM crosswalk GROUP BY ALL)
        SELECT g.source_dataset, g.record_id, g.person_id, p.in_other_source, g.* EXCLUDE (source_dataset, record_id, person_id)
        FROM ({' UNION ALL '.join(parts)}) g JOIN people p USING (person_id)"""
    )


# --- disclosure control ---------------------------------------------------------------------


def _determined(constraints: np.ndarray, hidden: list[int]) -> list[int]:
    """The hidden cells whose value follows from the published cells and the constraints.

    Each constraint is a linear equation over the cells (a row or column sum). Fixing the
    published cells leaves equations over the hidden ones; a hidden cell is determined
    when every solution of them agrees on it: its coordinate is zero across their null space.
    """
    if not hidden:
        return []
    sub = constraints[:, hidden]
    sub = sub[np.any(sub != 0, axis=1)]
    if not len(sub):
        return []
    _, s, vt = np.linalg.svd(sub)
    rank = int(np.sum(s > 1e-9))
    null = vt[rank:]  # rows span the null space
    if not len(null):
        return list(hidden)
    return [cell for j, cell in enumerate(hidden) if np.all(np.abs(null[:, j]) < 1e-9)]


def protect(values: list[int], constraints: np.ndarray, threshold: int, protected: set[int] | frozenset = frozenset(),
            hidden: list[bool] | None = None) -> list[bool]:
    """Which cells to suppress: primary (0 < value < threshold) and secondary, so that no
    suppressed cell can be worked out exactly from the published cells and ``constraints``
    (rows: equations ``constraints @ values == 0``).

    Secondary cells are added one at a time, for a determined cell, from the published cells
    sharing an equation with it: the one that leaves fewest cells determined, then the
    smallest one (never a zero); cells in ``protected`` (the grand totals) last. ``hidden``: cells
    already chosen (primary ones are added).
    """
    hidden = [h or 0 < v < threshold for h, v in zip(hidden or [False] * len(values), values)]
    for _ in range(len(values)):
        determined = _determined(constraints, [i for i, h in enumerate(hidden) if h])
        if not determined:
            return hidden
        cell = determined[0]
        linked = {int(j) for row in constraints if row[cell] != 0 for j in np.nonzero(row)[0]}
        # A zero discloses nobody and, hidden, hides nothing (its sum pins it): never a partner.
        candidates = ([j for j in sorted(linked) if not hidden[j] and values[j]]
                      or [j for j in range(len(values)) if not hidden[j] and values[j]])
        if not candidates:
            return hidden

        def cost(j: int) -> tuple:
            trial = [i for i, h in enumerate(hidden) if h] + [j]
            return (j in protected, len(_determined(constraints, sorted(trial))), values[j], j)

        hidden[min(candidates, key=cost)] = True
    return hidden


def table_constraints(groups: int) -> np.ndarray:
    """The equations of a groups-by-(in, out) table with totals: cells are, per row
    (``groups`` rows, then the total row), in, out and total, row by row.

    Rows: in + out = total in each row; each column's groups sum to its total.
    """
    rows = groups + 1
    eqs = []
    for r in range(rows):
        e = np.zeros(rows * 3)
        e[[3 * r, 3 * r + 1]] = 1
        e[3 * r + 2] = -1
        eqs.append(e)
    for c in range(3):
        e = np.zeros(rows * 3)
        e[[3 * r + c for r in range(groups)]] = 1
        e[3 * groups + c] = -1
        eqs.append(e)
    return np.array(eqs)


def round_to(value: int | None, base: int | None) -> int | None:
    """``value`` to the nearest multiple of ``base`` (halves up); None and no base: as is.

    >>> round_to(12, 5), round_to(13, 5), round_to(0, 5), round_to(7, None)
    (10, 15, 0, 7)
    """
    if value is None or not base:
        return value
    return int(base * ((2 * value + base) // (2 * base)))


def _rows_and_columns(rows: list[tuple[int, ...]], threshold: int) -> list[list[bool]]:
    """Suppression of a groups-by-(in, out, total) table by rows and columns: primary cells,
    then, until nothing changes, a row with one hidden cell hides another (the other of in
    and out, or the total when that is zero), and a column with one hidden group hides the
    same column in the group with the smallest count there (a group already hiding cells
    first). The result is audited by :func:`protect`."""
    hidden = [[0 < v < threshold for v in r] for r in rows]
    for _ in range(4 * len(rows) + 4):
        changed = False
        for r, row in enumerate(rows):
            if sum(hidden[r]) == 1:
                c = hidden[r].index(True)
                if c == 2:
                    other = 0 if (row[0] and (row[0] <= row[1] or not row[1])) else 1
                else:
                    other = 1 - c if row[1 - c] else 2
                hidden[r][other] = changed = True
        for c in range(3):
            col = [r for r in range(len(rows)) if hidden[r][c]]
            if len(col) == 1:
                others = [r for r in range(len(rows)) if not hidden[r][c] and rows[r][c]]
                if others:
                    pick = min(others, key=lambda r: (not any(hidden[r]), rows[r][c], r))
                    hidden[pick][c] = changed = True
        if not changed:
            break
    return hidden


def controlled(cells: list[tuple[int, int]], threshold: int, base: int | None) -> list[tuple[int | None, ...]]:
    """Per group (and then the total row) the published (in, out, total) of a table whose
    groups have counts (in, out): suppressed cells None, the rest rounded to ``base``.

    The totals row is the groups' sum.
    """
    rows: list[tuple[int, ...]] = [(i, o, i + o) for i, o in cells]
    start = [h for r in _rows_and_columns(rows, threshold) for h in r] + [False] * 3
    rows.append(tuple(sum(r[c] for r in rows) for c in range(3)))
    values = [v for r in rows for v in r]
    hidden = protect(values, table_constraints(len(cells)), threshold,
                     protected={3 * len(cells) + c for c in range(3)}, hidden=start)
    return [tuple(None if hidden[3 * r + c] else round_to(values[3 * r + c], base) for c in range(3))
            for r in range(len(rows))]


def _share(n: int | None, d: int | None) -> float | None:
    return None if n is None or not d else round(n / d, 4)


def write_bias_tables(con: duckdb.DuckDBPyConnection, cfg: JobConfig, analyst_dir: Path,
                      restricted_dir: Path | None = None, previous: Path | None = None,
                      group_rows: dict[str, str] | None = None) -> dict[str, int]:
    """``analyst/linkage_bias.parquet`` (and ``restricted_dir/record_groups.parquet``);
    returns its rows. ``previous`` and ``group_rows``: as :func:`build_record_groups` takes them."""
    breakdowns = build_record_groups(con, cfg, previous, group_rows)
    if restricted_dir is not None:
        restricted_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * EXCLUDE (person_id, in_other_source) FROM record_groups ORDER BY ALL) "
                    f"TO {lit(str(restricted_dir / 'record_groups.parquet'))} (FORMAT parquet)")
    threshold, base = cfg.outputs.suppression_threshold, cfg.outputs.rounding_base
    out: dict[str, list] = {k: [] for k in (
        "breakdown", "group", "records", "records_linked", "records_not_linked", "share_records_linked",
        "people", "people_in_2plus_sources", "people_in_1_source", "share_people_in_2plus_sources", "suppressed")}
    # People in and out of other sources, all groups together: the same for every breakdown.
    people_all = con.execute(
        "SELECT count(*) FILTER (WHERE in_other_source), count(*) FILTER (WHERE NOT in_other_source) "
        "FROM (SELECT DISTINCT person_id, in_other_source FROM record_groups)"
    ).fetchall()[0]
    for b in breakdowns:
        # Each person's records per group first: the people in a group are then counted
        # rows, not distinct ids (a third faster at a million records).
        rows = con.execute(
            f"""SELECT {q(b)}, coalesce(sum(n) FILTER (WHERE i), 0), coalesce(sum(n) FILTER (WHERE NOT i), 0),
                       count(*) FILTER (WHERE i), count(*) FILTER (WHERE NOT i)
                FROM (SELECT {q(b)}, person_id, any_value(in_other_source) AS i, count(*) AS n
                      FROM record_groups GROUP BY ALL)
                GROUP BY ALL ORDER BY 1"""
        ).fetchall()
        if not rows:
            continue
        recs = controlled([(r[1], r[2]) for r in rows], threshold, base)
        # People overlap across groups: their total row is the count of people, not the
        # groups' sum; the groups are protected as if they added up (more cautious).
        ppl = controlled([(r[3], r[4]) for r in rows], threshold, base)
        ppl[-1] = tuple(None if v is None else round_to(n, base) for v, n in
                        zip(ppl[-1], (*people_all, sum(people_all))))
        labels = [str(r[0]) for r in rows] + [ALL]
        for label, (ri, ro, rt), (pi, po, pt) in zip(labels, recs, ppl):
            out["breakdown"].append(b)
            out["group"].append(label)
            out["records"].append(rt)
            out["records_linked"].append(ri)
            out["records_not_linked"].append(ro)
            out["share_records_linked"].append(_share(ri, rt))
            out["people"].append(pt)
            out["people_in_2plus_sources"].append(pi)
            out["people_in_1_source"].append(po)
            out["share_people_in_2plus_sources"].append(_share(pi, pt))
            out["suppressed"].append(None in (ri, ro, rt, pi, po, pt))
    schema = pa.schema([("breakdown", pa.string()), ("group", pa.string()),
                        *[(k, pa.int64()) for k in ("records", "records_linked", "records_not_linked")],
                        ("share_records_linked", pa.float64()),
                        *[(k, pa.int64()) for k in ("people", "people_in_2plus_sources", "people_in_1_source")],
                        ("share_people_in_2plus_sources", pa.float64()), ("suppressed", pa.bool_())])
    pq.write_table(pa.table(out, schema=schema), analyst_dir / f"{BIAS_TABLE}.parquet")
    return {BIAS_TABLE: len(out["breakdown"])}


BIAS_COLUMNS = {
    "breakdown": "What the records are grouped by: source, sex, age_band (age at the source's event date), "
                 "event_year, date_of_birth_present, or a category a source declares (such as ethnicity).",
    "group": f"The group within the breakdown; '{ALL}' is the whole table, '{MISSING}' a blank or impossible value, "
             f"'{NOT_CARRIED}' records of sources that do not hold the breakdown.",
    "records": "Linked records in the group.",
    "records_linked": "Records whose person is found in another source as well.",
    "records_not_linked": "Records whose person is found in their own source only.",
    "share_records_linked": "records_linked / records (from the published counts, rounded when they are).",
    "people": "People with a record in the group (a person with records in two groups counts in both).",
    "people_in_2plus_sources": "Of them, people found in two or more sources.",
    "people_in_1_source": "Of them, people found in one source only.",
    "share_people_in_2plus_sources": "people_in_2plus_sources / people (from the published counts, rounded when they are).",
    "suppressed": "Whether a count on this row is suppressed.",
}


# --- evaluation by group ----------------------------------------------------------------------


def evaluation_by_group(con: duckdb.DuckDBPyConnection, record_groups: Path, labelled: str = "labelled"
                        ) -> dict[str, list[dict[str, Any]]] | None:
    """Pairwise precision and recall per group of each breakdown, for ``linkage evaluate``.

    ``labelled(source_dataset, record_id, cluster, person)``. A pair is shared between its
    two records' groups, half each: per record, its true positive pairs (others in its
    cluster and true person), predicted pairs (others in its cluster) and true pairs (others
    of its person), halved and summed over the group. So over the groups of a breakdown
    the counts add up to the overall pair counts. Records the run rejected (not in
    ``record_groups``) are the group ``rejected``. None when the run has no groups file.
    """
    if not record_groups.is_file():
        return None
    path = lit(str(record_groups))
    names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()]
    breakdowns = [n for n in names if n not in ("source_dataset", "record_id")]
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _eval_records AS
        WITH ct AS (SELECT cluster, person, count(*) AS n FROM {labelled} GROUP BY ALL),
        c AS (SELECT cluster, sum(n) AS n FROM ct GROUP BY ALL),
        t AS (SELECT person, sum(n) AS n FROM ct GROUP BY ALL)
        SELECT l.source_dataset, l.record_id, ct.n - 1 AS tp, c.n - 1 AS pred, t.n - 1 AS true_
        FROM {labelled} l JOIN ct USING (cluster, person) JOIN c USING (cluster) JOIN t USING (person)"""
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for b in breakdowns:
        group = f"coalesce(g.{q(b)}, 'rejected')" if b != "source" else f"coalesce(g.{q(b)}, r.source_dataset)"
        rows = con.execute(
            f"""SELECT {group} AS grp, count(*), sum(r.tp) / 2, sum(r.pred) / 2, sum(r.true_) / 2
            FROM _eval_records r LEFT JOIN read_parquet({path}) g USING (source_dataset, record_id)
            GROUP BY ALL ORDER BY 1"""
        ).fetchall()
        out[b] = []
        for grp, n, tp, pred, true in rows:
            tp, pred, true = float(tp), float(pred), float(true)
            p = tp / pred if pred else 1.0
            r = tp / true if true else 1.0
            out[b].append({"group": grp, "records": int(n), "true_positive_pairs": tp, "predicted_pairs": pred,
                           "true_pairs": true, "precision": round(p, 6), "recall": round(r, 6),
                           "f1": round(0.0 if p + r == 0 else 2 * p * r / (p + r), 6)})
    con.execute("DROP TABLE _eval_records")
    return out


__all__ = ["BUILT_IN_BREAKDOWNS", "available_breakdowns", "build_record_groups", "protect", "controlled",
           "write_bias_tables", "evaluation_by_group", "round_to", "table_constraints"]
