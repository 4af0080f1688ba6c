"""Clerical decisions that stick: a store of reviewers' decisions, applied by every later run.

A decision names two records (``source_dataset_l, record_id_l, source_dataset_r,
record_id_r``) and says ``match``, ``not_match`` or ``unsure``. ``linkage review RUN_DIR
--import FILE`` checks the whole file first (a bad file imports nothing and names its
rows) and appends its decisions to ``RUN_DIR/restricted/decisions/decisions.parquet`` with
who, when and why: the file's ``reviewer``, ``notes``, ``reason`` and ``decided_at`` columns,
the import time, the file's name and row.

Every later run reads the store of its ``--previous`` run and of the run already at its
``--out`` (the union, each pair's latest decision winning), applies it after the
cluster-validity step, and writes the union into its own ``restricted/decisions/``: the
store travels from run to run. ``match`` is a must-link and ``not_match`` a cannot-link:
``resolve`` (a pure function of one group of clusters' links, below) decides the parts.
A chain of must-links across a cannot-link is a conflict: that group is left as the
model made it and the conflict is listed. Decisions naming records a run does not hold
are kept in the store and counted.

Outcomes, one row per decision in force, go to ``restricted/decision_outcomes.parquet``;
the manifest carries counts only (record ids never leave the restricted zone).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

import duckdb

from linkage.errors import InputError
from linkage.publish import csv_unsafe, make_private_dir, private_umask, restrict_tree
from linkage.sources import lit

# Standardised fields shown side by side (those the run has), as (column, shown as).
REVIEW_FIELDS = (
    ("first_name", "first_name"), ("middle_names", "middle_names"), ("surname", "surname"),
    ("name_set", "all_names"), ("date_of_birth", "date_of_birth"), ("dob_set", "all_dates_of_birth"),
    ("sex", "sex"), ("pnc_id", "pnc_id"), ("cro_number", "cro_number"), ("prison_number", "prison_number"),
    ("crn", "crn"), ("postcode", "postcode"),
)


STORE_DIR = Path("restricted") / "decisions"
STORE = "decisions.parquet"
OUTCOMES = Path("restricted") / "decision_outcomes.parquet"
PAIR_COLUMNS = ("source_dataset_l", "record_id_l", "source_dataset_r", "record_id_r")
REQUIRED = (*PAIR_COLUMNS, "decision")
# Kept with each decision: who, when, why.
KEPT = ("reviewer", "notes", "reason", "decided_at", "pair_id")
# Columns of the exported review sample: accepted in a file and not stored (they are the
# records' own values, already in the run).
SAMPLE_SHOWN = ("stratum", "sampling_weight", "match_probability", "match_weight")
DECISIONS = ("match", "not_match", "unsure")
KIND_MATCH = "clerical: match"
REASON_NOT_MATCH = "clerical decision: not a match"
MAX_PROBLEMS_SHOWN = 30

STORE_COLUMNS = (*PAIR_COLUMNS, "decision", *KEPT, "imported_utc", "import_file", "import_row")


def store_path(run_dir: Path) -> Path:
    return Path(run_dir) / STORE_DIR / STORE


def normalise_decision(text: str) -> str | None:
    """'match', 'not_match', 'unsure'; '' for a blank cell; None for anything else.

    >>> [normalise_decision(t) for t in ("Match", "non-match", "not match", " ", "maybe")]
    ['match', 'not_match', 'not_match', '', None]
    """
    d = "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())
    if d == "":
        return ""
    return {"match": "match", "not_match": "not_match", "non_match": "not_match", "nonmatch": "not_match",
            "no_match": "not_match", "unsure": "unsure"}.get(d)


def _sample_columns() -> set[str]:
    return {f"{shown}_{s}" for _, shown in REVIEW_FIELDS for s in ("l", "r")} | set(SAMPLE_SHOWN)


def canonical(a: tuple[str, str], b: tuple[str, str]) -> tuple[tuple[str, str], tuple[str, str]]:
    """A pair in one order whichever way round it was written."""
    return (a, b) if a <= b else (b, a)


# --- reading a decisions file ----------------------------------------------------------------------


def read_decision_file(
    path: Path, *, sources: Sequence[str], sample_pairs: dict[int, dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The decisions of ``path`` (blank decisions left out) and how many rows were blank.

    Every problem in the file is reported at once, by row (the header is row 1), and none
    names a cell's value. ``sample_pairs`` (pair_id -> the pair's four columns, from an
    exported review sample) fills in a row that names its pair by ``pair_id`` alone.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: decision file not found")
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    blank = 0
    seen: dict[tuple, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() if h else h for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            by_pair_id = sample_pairs is not None and "pair_id" in header
            needed = [c for c in REQUIRED if c not in header and not (by_pair_id and c in PAIR_COLUMNS)]
            if needed:
                raise InputError(
                    f"{path}: the decision file needs the columns {', '.join(REQUIRED)}; missing {', '.join(needed)}."
                )
            known = set(REQUIRED) | set(KEPT) | _sample_columns()
            unknown = [h or "(blank)" for h in header if h not in known]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if unknown or dupes:
                what = []
                if unknown:
                    what.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
                if dupes:
                    what.append(f"repeated column{'s' if len(dupes) > 1 else ''} {', '.join(dupes)}")
                raise InputError(
                    f"{path}: {'; '.join(what)}. A decision file has the columns {', '.join(REQUIRED)} "
                    f"and may have {', '.join(KEPT)}; rename or drop the others. Nothing was imported."
                )
            for line, raw in enumerate(reader, start=2):
                if None in raw:
                    problems.append(f"row {line}: more cells than the header has columns")
                    continue
                if any(v is None for v in raw.values()):
                    problems.append(f"row {line}: fewer cells than the header has columns")
                    continue
                row = {k: csv_unsafe(v.strip()) for k, v in raw.items()}
                decision = normalise_decision(row.get("decision", ""))
                if decision is None:
                    problems.append(f"row {line}: decision must be match, not_match or unsure (or empty)")
                    continue
                if by_pair_id and not all(row.get(c) for c in PAIR_COLUMNS):
                    pid = row.get("pair_id", "")
                    if sample_pairs is None or not pid.isdigit() or int(pid) not in sample_pairs:
                        problems.append(f"row {line}: pair_id is not a pair of this run's review sample")
                        continue
                    for c in PAIR_COLUMNS:
                        row[c] = row.get(c) or str(sample_pairs[int(pid)][c])
                empty = [c for c in PAIR_COLUMNS if not row.get(c)]
                if empty:
                    problems.append(f"row {line}: {', '.join(empty)} empty")
                    continue
                bad_source = [c for c in ("source_dataset_l", "source_dataset_r") if row[c] not in sources]
                if bad_source:
                    problems.append(
                        f"row {line}: {', '.join(bad_source)} is not one of this run's sources ({', '.join(sources)})"
                    )
                    continue
                left, right = (row["source_dataset_l"], row["record_id_l"]), (row["source_dataset_r"], row["record_id_r"])
                if left == right:
                    problems.append(f"row {line}: the two sides name the same record")
                    continue
                if decision == "":
                    blank += 1
                    continue
                key = canonical(left, right)
                if key in seen:
                    problems.append(f"row {line}: the same pair as row {seen[key]}")
                    continue
                seen[key] = line
                (sl, rl), (sr, rr) = key
                rows.append({
                    "source_dataset_l": sl, "record_id_l": rl, "source_dataset_r": sr, "record_id_r": rr,
                    "decision": decision, **{k: (row.get(k) or None) for k in KEPT}, "import_row": line,
                })
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text. Save the decision file as CSV UTF-8.") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc}). Nothing was imported.") from None
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise InputError(
            f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in the decision file; "
            f"nothing was imported\n  " + "\n  ".join(shown) + more
        )
    return rows, blank


# --- the store -------------------------------------------------------------------------------------


def _store_select(path: Path) -> str:
    """The rows of a store file, every column of ``STORE_COLUMNS`` (older files: missing ones NULL)."""
    con = duckdb.connect()
    have = {c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall()}
    con.close()
    cols = ", ".join(
        (f'"{c}"' if c in have else f"CAST(NULL AS {'BIGINT' if c == 'import_row' else 'VARCHAR'}) AS \"{c}\"")
        for c in STORE_COLUMNS
    )
    return f"SELECT {cols} FROM read_parquet({lit(str(path))})"


def add_to_store(run_dir: Path, rows: list[dict[str, Any]], import_file: Path) -> Path:
    """Append ``rows`` to the run's store (written whole, then swapped in); returns its path."""
    path = store_path(run_dir)
    make_private_dir(path.parent)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    import pandas as pd

    df = pd.DataFrame(
        [{**r, "imported_utc": now, "import_file": Path(import_file).name} for r in rows], columns=list(STORE_COLUMNS)
    ).astype({c: "object" for c in STORE_COLUMNS if c != "import_row"})
    con = duckdb.connect()
    tmp = path.with_name(path.name + ".tmp")
    try:
        con.register("_new", df)
        cast = ", ".join(f'CAST("{c}" AS {"BIGINT" if c == "import_row" else "VARCHAR"}) AS "{c}"' for c in STORE_COLUMNS)
        query = f"SELECT {cast} FROM _new"
        if path.is_file():
            query = f"{_store_select(path)} UNION ALL {query}"
        with private_umask():
            con.execute(f"COPY ({query}) TO {lit(str(tmp))} (FORMAT parquet)")
        os.replace(tmp, path)
    finally:
        con.close()
        if tmp.exists():
            tmp.unlink()
    restrict_tree(path.parent)
    return path


def load_stores(con: duckdb.DuckDBPyConnection, paths: Iterable[Path], table: str = "decision_store") -> int:
    """The union of the stores at ``paths`` (those that exist; a row in two stores once) as ``table``.

    Returns its rows (0: no table made)."""
    files = [p for p in dict.fromkeys(Path(p) for p in paths) if p.is_file()]
    if not files:
        return 0
    con.execute(f"CREATE OR REPLACE TABLE {table} AS " + " UNION ".join(_store_select(p) for p in files))
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def in_force(con: duckdb.DuckDBPyConnection, store: str = "decision_store", out: str = "decisions_in_force") -> None:
    """Each pair's latest decision (import time, then file row)."""
    con.execute(
        f"""CREATE OR REPLACE TABLE {out} AS SELECT {', '.join(PAIR_COLUMNS)}, decision FROM {store}
        QUALIFY row_number() OVER (PARTITION BY {', '.join(PAIR_COLUMNS)}
                                   ORDER BY imported_utc DESC, import_file DESC, import_row DESC) = 1"""
    )


# --- the decision: a pure function of one group's links ------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """The parts a group of records falls into, the links cut between them, and the conflicts
    (cannot-link pairs that a chain of must-links joins; then nothing was applied)."""

    parts: list[list[int]]
    cut: list[tuple[int, int]]
    conflicts: list[tuple[int, int]] = field(default_factory=list)


N = TypeVar("N")


class UnionFind(Generic[N]):
    """Disjoint sets of node ids (record node ids, or person keys in the review queue)."""

    def __init__(self, nodes: Iterable[N]):
        self.parent: dict[N, N] = {n: n for n in nodes}

    def find(self, n: N) -> N:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a: N, b: N) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))  # type: ignore[type-var]  # ids of one kind, ordered
            self.parent[hi] = lo

    def groups(self) -> list[list[N]]:
        out: dict[N, list[N]] = {}
        for n in self.parent:
            out.setdefault(self.find(n), []).append(n)
        return sorted((sorted(g) for g in out.values()), key=lambda g: (-len(g), g[0]))  # type: ignore[type-var]


def _strength(w: float | None) -> float:
    return float("inf") if w is None else w  # a deterministic link: agreement alone


def resolve(
    nodes: Iterable[int],
    links: Iterable[tuple[int, int, float | None]],
    must: Iterable[tuple[int, int]] = (),
    cannot: Iterable[tuple[int, int]] = (),
) -> Resolution:
    """Apply must-links and cannot-links to a group of records and its links.

    ``links`` are ``(node_a, node_b, match_weight)`` (None for a deterministic link). The
    must-links join their records first; then links are taken strongest first (ties by
    node ids) and each joins its two parts unless that would put the two records of a
    cannot-link in one part. So every must-link holds, every cannot-link is cut, and every
    link that does not reconnect a cannot-link pair is kept. If a chain of must-links joins
    a cannot-link pair, nothing is applied: the parts are the links' connected components
    (the group as the model made it) and the pairs are returned as conflicts.

    >>> resolve([1, 2, 3, 4], [(1, 2, 9.0), (2, 3, 5.0), (3, 4, 9.0)], cannot=[(1, 4)])
    Resolution(parts=[[1, 2], [3, 4]], cut=[(2, 3)], conflicts=[])
    >>> resolve([1, 2, 3], [(1, 2, 9.0)], must=[(1, 2), (2, 3)], cannot=[(1, 3)]).conflicts
    [(1, 3)]
    """
    nodes = list(nodes)
    links = [(a, b, w) for a, b, w in links]
    must = [(p[0], p[1]) for p in must]
    cannot = [(p[0], p[1]) for p in cannot]
    chains = UnionFind(nodes)
    for a, b in must:
        chains.union(a, b)
    conflicts = sorted((min(a, b), max(a, b)) for a, b in cannot if chains.find(a) == chains.find(b))
    if conflicts:
        model = UnionFind(nodes)
        for a, b, _ in links:
            model.union(a, b)
        return Resolution(model.groups(), [], conflicts)
    parts = chains
    for a, b, _ in sorted(links, key=lambda e: (-_strength(e[2]), min(e[0], e[1]), max(e[0], e[1]))):
        ra, rb = parts.find(a), parts.find(b)
        if ra == rb:
            continue
        if any({parts.find(x), parts.find(y)} == {ra, rb} for x, y in cannot):
            continue
        parts.union(a, b)
    cut = sorted((min(a, b), max(a, b)) for a, b, _ in links if parts.find(a) != parts.find(b))
    return Resolution(parts.groups(), cut, [])


# --- applying the store in a run (set-based: the affected clusters only) ---------------------------


@dataclass
class DecisionStats:
    in_store: int = 0
    in_force: int = 0
    by_decision: dict[str, int] = field(default_factory=dict)
    records_missing: int = 0  # decisions naming a record this run does not hold (kept in the store)
    merged: int = 0  # match decisions that joined two clusters
    already_together: int = 0
    separated: int = 0  # not_match decisions that cut a cluster
    already_apart: int = 0
    conflicts: int = 0  # cannot-links joined by a chain of must-links
    not_applied_in_conflict: int = 0  # decisions of groups left as the model made them
    clusters_changed: int = 0
    links_cut: int = 0
    must_links_added: int = 0

    def summary(self) -> str:
        return (
            f"{self.in_force:,} clerical decisions in force ({', '.join(f'{k} {v:,}' for k, v in self.by_decision.items())}): "
            f"{self.merged:,} joined two clusters, {self.separated:,} cut one, "
            f"{self.already_together + self.already_apart:,} already so; {self.links_cut:,} links cut, "
            f"{self.clusters_changed:,} clusters changed; {self.records_missing:,} name records this run does not hold; "
            f"{self.conflicts:,} conflicts"
        )


def apply_decisions(con: duckdb.DuckDBPyConnection, store: str = "decision_store") -> DecisionStats:
    """Apply the decisions in force to ``cc`` (node_id, cluster_id), ``links`` and ``cluster_splits``.

    Must-links are added to ``links`` (kind ``clerical: match``); cut links move to
    ``cluster_splits`` with the reason ``clerical decision: not a match``; parts take their
    lowest node id as cluster id. Leaves ``decision_outcomes`` (one row per decision in force).
    """
    stats = DecisionStats(in_store=int(con.execute(f"SELECT count(*) FROM {store}").fetchall()[0][0]))
    in_force(con, store)
    stats.in_force = int(con.execute("SELECT count(*) FROM decisions_in_force").fetchall()[0][0])
    stats.by_decision = dict(con.execute(
        "SELECT decision, count(*) FROM decisions_in_force GROUP BY ALL ORDER BY 1").fetchall())
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dec AS
        SELECT d.*, nl.node_id AS node_id_l, nr.node_id AS node_id_r,
               cl.cluster_id AS cluster_l, cr.cluster_id AS cluster_r
        FROM decisions_in_force d
        LEFT JOIN nodes nl ON nl.source_dataset = d.source_dataset_l AND CAST(nl.record_id AS VARCHAR) = d.record_id_l
        LEFT JOIN nodes nr ON nr.source_dataset = d.source_dataset_r AND CAST(nr.record_id AS VARCHAR) = d.record_id_r
        LEFT JOIN cc cl ON cl.node_id = nl.node_id LEFT JOIN cc cr ON cr.node_id = nr.node_id"""
    )
    rows = con.execute(
        "SELECT node_id_l, node_id_r, cluster_l, cluster_r, decision FROM _dec "
        "WHERE node_id_l IS NOT NULL AND node_id_r IS NOT NULL AND decision IN ('match', 'not_match')"
    ).fetchall()
    stats.records_missing = int(con.execute(
        "SELECT count(*) FROM _dec WHERE node_id_l IS NULL OR node_id_r IS NULL").fetchall()[0][0])

    # Groups: clusters joined by must-links (a cannot-link stays inside its ends' clusters).
    groups = UnionFind({c for r in rows for c in (r[2], r[3])})
    for _, _, cl, cr, d in rows:
        if d == "match":
            groups.union(cl, cr)
    group_of = {c: groups.find(c) for c in groups.parent}
    outcome: dict[tuple[int, int], str] = {}
    reassign: list[tuple[int, int]] = []
    cuts: list[tuple[int, int]] = []
    added: list[tuple[int, int]] = []
    if rows:
        import pandas as pd

        con.register("_aff_df", pd.DataFrame({"cluster_id": sorted(group_of), "grp": [group_of[c] for c in sorted(group_of)]}))
        con.execute("CREATE OR REPLACE TEMP TABLE _aff AS SELECT * FROM _aff_df")
        con.unregister("_aff_df")
        members = con.execute("SELECT a.grp, cc.node_id, cc.cluster_id FROM cc JOIN _aff a USING (cluster_id)").fetchall()
        link_rows = con.execute(
            "SELECT a.grp, l.node_id_l, l.node_id_r, l.match_weight FROM links l "
            "JOIN cc ON cc.node_id = l.node_id_l JOIN _aff a USING (cluster_id)"
        ).fetchall()
        con.execute("DROP TABLE _aff")
        nodes_by: dict[int, list[int]] = {}
        before: dict[int, int] = {}
        for g, n, c in members:
            nodes_by.setdefault(g, []).append(n)
            before[n] = c
        links_by: dict[int, list[tuple[int, int, float | None]]] = {}
        for g, a, b, w in link_rows:
            links_by.setdefault(g, []).append((a, b, w))
        must_by: dict[int, list[tuple[int, int]]] = {}
        cannot_by: dict[int, list[tuple[int, int]]] = {}
        for a, b, cl, cr, d in rows:
            g = group_of[cl]
            if d == "match":
                must_by.setdefault(g, []).append((a, b))
            elif group_of[cr] == g:
                cannot_by.setdefault(g, []).append((a, b))
        for g, nodes in nodes_by.items():
            res = resolve(nodes, links_by.get(g, []), must_by.get(g, []), cannot_by.get(g, []))
            if res.conflicts:
                stats.conflicts += len(res.conflicts)
                conflict_set = set(res.conflicts)
                for a, b in must_by.get(g, []) + cannot_by.get(g, []):
                    outcome[(a, b)] = "conflict" if tuple(sorted((a, b))) in conflict_set else "not applied: conflict"
                continue
            part_of = {n: i for i, p in enumerate(res.parts) for n in p}
            if len(res.parts) != len(set(before.values())) or any(
                    len({before[n] for n in p}) != 1 for p in res.parts):
                stats.clusters_changed += len({before[n] for n in nodes})
                reassign += [(n, p[0]) for p in res.parts for n in p]
            cuts += res.cut
            linked = {(min(a, b), max(a, b)) for a, b, _ in links_by.get(g, [])}
            for a, b in must_by.get(g, []):
                outcome[(a, b)] = "already together" if before[a] == before[b] else "merged"
                if (min(a, b), max(a, b)) not in linked:
                    added.append((min(a, b), max(a, b)))
            for a, b in cannot_by.get(g, []):
                outcome[(a, b)] = "separated" if before[a] == before[b] else "already apart"
                assert part_of[a] != part_of[b]
    for a, b, cl, cr, d in rows:
        if d == "not_match" and group_of[cl] != group_of[cr]:
            outcome[(a, b)] = "already apart"
    counts = {k: sum(1 for v in outcome.values() if v == k) for k in set(outcome.values())}
    stats.merged, stats.already_together = counts.get("merged", 0), counts.get("already together", 0)
    stats.separated, stats.already_apart = counts.get("separated", 0), counts.get("already apart", 0)
    stats.not_applied_in_conflict = counts.get("not applied: conflict", 0) + counts.get("conflict", 0)
    stats.must_links_added = len(set(added))
    stats.links_cut = _write_back(con, reassign, cuts, sorted(set(added)), outcome)
    return stats


def _write_back(con, reassign, cuts, added, outcome) -> int:
    """Returns the links cut (a pair linked by the model and by a rule counts twice)."""
    import pandas as pd

    if reassign:
        con.register("_re_df", pd.DataFrame(reassign, columns=["node_id", "new_cluster_id"]))
        con.execute("UPDATE cc SET cluster_id = r.new_cluster_id FROM _re_df r WHERE cc.node_id = r.node_id")
        con.unregister("_re_df")
    if cuts:
        con.register("_cut_df", pd.DataFrame(cuts, columns=["a", "b"]))
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _dcut AS SELECT DISTINCT l.node_id_l, l.node_id_r FROM links l
            JOIN _cut_df c ON least(l.node_id_l, l.node_id_r) = c.a AND greatest(l.node_id_l, l.node_id_r) = c.b"""
        )
        con.unregister("_cut_df")
        con.execute(
            f"INSERT INTO cluster_splits SELECT l.*, {lit(REASON_NOT_MATCH)} FROM links l "
            f"JOIN _dcut USING (node_id_l, node_id_r)"
        )
        con.execute("DELETE FROM links WHERE (node_id_l, node_id_r) IN (SELECT (node_id_l, node_id_r) FROM _dcut)")
        con.execute("DROP TABLE _dcut")
        cut_rows = int(con.execute(
            f"SELECT count(*) FROM cluster_splits WHERE reason = {lit(REASON_NOT_MATCH)}").fetchall()[0][0])
    else:
        cut_rows = 0
    if added:
        con.register("_add_df", pd.DataFrame(added, columns=["node_id_l", "node_id_r"]))
        con.execute(f"INSERT INTO links SELECT node_id_l, node_id_r, NULL, 1.0, {lit(KIND_MATCH)} FROM _add_df")
        con.unregister("_add_df")
    out = [(a, b, v) for (a, b), v in outcome.items()]
    con.register("_out_df", pd.DataFrame(out, columns=["node_id_l", "node_id_r", "outcome"]).astype(
        {"node_id_l": "int64", "node_id_r": "int64", "outcome": "object"}))
    con.execute(
        """CREATE OR REPLACE TABLE decision_outcomes AS
        SELECT d.source_dataset_l, d.record_id_l, d.source_dataset_r, d.record_id_r, d.decision,
               coalesce(o.outcome, CASE WHEN d.node_id_l IS NULL OR d.node_id_r IS NULL
                                        THEN 'record not in this run' ELSE 'unsure: not applied' END) AS outcome
        FROM _dec d LEFT JOIN _out_df o USING (node_id_l, node_id_r)
        ORDER BY ALL"""
    )
    con.unregister("_out_df")
    con.execute("DROP TABLE _dec")
    return cut_rows


def write_store(con: duckdb.DuckDBPyConnection, restricted: Path, store: str = "decision_store") -> None:
    """The store this run applied, and its outcomes, into the run's restricted zone."""
    folder = make_private_dir(Path(restricted) / STORE_DIR.name)
    con.execute(f"COPY (SELECT * FROM {store} ORDER BY imported_utc, import_file, import_row) "
                f"TO {lit(str(folder / STORE))} (FORMAT parquet)")
    con.execute(f"COPY decision_outcomes TO {lit(str(Path(restricted) / OUTCOMES.name))} (FORMAT parquet)")


def manifest_entry(stats: DecisionStats, sources: list[Path]) -> dict[str, Any]:
    """The manifest's ``clerical_decisions``: the counts, and what the decisions changed."""
    changed = {"clusters_changed": stats.clusters_changed, "merged": stats.merged, "separated": stats.separated,
               "links_cut": stats.links_cut, "must_links_added": stats.must_links_added,
               "conflicts": stats.conflicts}
    return {**asdict(stats), "what_changed": changed, "stores_read": [str(p) for p in sources],
            "outcomes": f"{OUTCOMES.as_posix()} (one row per decision in force)"}


def summary(manifest: dict[str, Any]) -> list[tuple[str, int]] | None:
    """What a report shows of a run's clerical decisions, from its manifest: (what, how
    many) rows, in reading order; None when the run applied none (no store).

    >>> summary({"clerical_decisions": None}) is None
    True
    >>> summary({"clerical_decisions": {"in_force": 2, "by_decision": {"match": 2}, "merged": 1,
    ...          "already_together": 1}})[:3]
    [('decisions in force', 2), ('match', 2), ('match: joined two people', 1)]
    """
    entry = manifest.get("clerical_decisions")
    if not entry:
        return None
    rows = [("decisions in force", int(entry.get("in_force", 0)))]
    rows += [(decision, int(n)) for decision, n in (entry.get("by_decision") or {}).items()]
    rows += [(label, int(entry.get(key, 0))) for label, key in (
        ("match: joined two people", "merged"),
        ("match: already together", "already_together"),
        ("not_match: cut a person", "separated"),
        ("not_match: already apart", "already_apart"),
        ("conflicts: a chain of matches across a not_match (left as the model made them)", "conflicts"),
        ("decisions not applied (in a conflict)", "not_applied_in_conflict"),
        ("naming a record this run does not hold (kept)", "records_missing"),
        ("people changed", "clusters_changed"),
        ("links cut", "links_cut"),
        ("links added (must-links)", "must_links_added"),
    )]
    return rows


def describe_import(rows: list[dict[str, Any]], blank: int, path: Path, missing: int) -> str:
    counts = {d: sum(1 for r in rows if r["decision"] == d) for d in DECISIONS}
    text = (f"imported {len(rows):,} decisions ({', '.join(f'{k} {v:,}' for k, v in counts.items())}; "
            f"{blank:,} blank rows skipped) into {path}")
    if missing:
        text += f"; {missing:,} name records this run does not hold (kept: a later run may hold them)"
    return text + ". Every later run into this --out or with --previous this run applies them."


def count_missing(run_dir: Path, rows: list[dict[str, Any]]) -> int:
    """How many decisions name a record that the run's crosswalk does not hold."""
    crosswalk = Path(run_dir) / "restricted" / "crosswalk.parquet"
    if not rows or not crosswalk.is_file():
        return 0
    import pandas as pd

    con = duckdb.connect()
    try:
        con.register("_d", pd.DataFrame(rows)[list(PAIR_COLUMNS)])
        return int(con.execute(
            f"""WITH x AS (SELECT source_dataset, CAST(record_id AS VARCHAR) AS record_id
                          FROM read_parquet({lit(str(crosswalk))}))
            SELECT count(*) FROM _d
            WHERE NOT EXISTS (SELECT 1 FROM x WHERE x.source_dataset = _d.source_dataset_l AND x.record_id = _d.record_id_l)
               OR NOT EXISTS (SELECT 1 FROM x WHERE x.source_dataset = _d.source_dataset_r AND x.record_id = _d.record_id_r)"""
        ).fetchall()[0][0])
    finally:
        con.close()

