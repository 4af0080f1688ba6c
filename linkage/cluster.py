"""Clusters: the links at the job's threshold plus deterministic links, checked.

1. Links: scored pairs at or above the threshold, and pairs agreeing on a deterministic
   rule (gated: ``unless_disagree``).
2. Duplicate-free sources (set-based): a link into a duplicate-free source is kept only
   when it is the best-scoring link of its record into that source.
3. Ambiguous weak links (set-based): a link below the fracture weight is dropped when one
   of its records scores about as well against another person told apart from the first
   (by date of birth, PNC ID or postcode);
   and (``person_evidence``) when one record's postcode, say, equals none of the other
   record's person's, if that evidence leaves it below the threshold.
4. Connected components.
5. Cluster validity, on the few suspicious clusters only (a link below the fracture
   weight in a cluster of three or more, two different valid PNC IDs or CRO numbers,
   two records of a duplicate-free source, or two forenames each on several records):
   ``split_cluster``, a pure function of one
   cluster's links. What it cuts is kept in ``cluster_splits`` for review.

Tables (in the job's DuckDB database):
- ``nodes(node_id, source_dataset, record_id, ...)``: every standardised record, numbered,
  with all its columns (the model scores this table: ``linkage.model.RUN_IDS``).
- ``links(node_id_l, node_id_r, match_weight, match_probability, kind)``: the edges kept.
- ``cluster_splits(node_id_l, node_id_r, match_weight, match_probability, kind, reason)``:
  links cut by clustering.
- ``clusters(node_id, source_dataset, record_id, cluster_id, cluster_size,
  cluster_min_match_weight, cluster_links, deterministic_links)``.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from linkage.config import ClusteringConfig, DeterministicLink
from linkage.sources import lit, q


@dataclass(frozen=True)
class ClusterStats:
    records: int
    clusters: int
    singletons: int
    largest: int
    model_links: int
    deterministic_links: int
    conflicting_pnc_clusters: int
    size_histogram: dict[int, int]
    # deterministic rule -> groups over its max_group_size (not linked on agreement alone)
    oversized_deterministic_groups: dict[str, dict[str, int]] = field(default_factory=dict)
    # deterministic rule -> pairs not linked on agreement alone because they disagree
    gated_deterministic_pairs: dict[str, int] = field(default_factory=dict)
    # reason -> links cut by clustering; clusters checked and clusters split
    cut_links: dict[str, int] = field(default_factory=dict)
    clusters_checked: int = 0
    clusters_split: int = 0


def build_nodes(con: duckdb.DuckDBPyConnection, records_view: str) -> None:
    """``nodes``: the records numbered 1..n in (source_dataset, record_id) order.

    Only the keys are sorted and the numbers joined back: sorting the whole wide rows
    cost three times as much at a million records.
    """
    con.execute(
        f"""CREATE OR REPLACE TABLE nodes AS
        SELECT k.node_id, r.* FROM {records_view} r
        JOIN (SELECT source_dataset, record_id,
                     row_number() OVER (ORDER BY source_dataset, record_id) AS node_id
              FROM {records_view}) k USING (source_dataset, record_id)"""
    )


def build_links(
    con: duckdb.DuckDBPyConnection,
    predictions: str,
    threshold: float,
    deterministic: list[DeterministicLink],
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Edges: scored pairs at or above the threshold, and the deterministic links.

    Returns, per deterministic rule, the groups too large to link on agreement alone and
    the pairs withheld because they disagree on a column of ``unless_disagree``.

    ``predictions`` has ``node_id_l, node_id_r, match_weight, match_probability``. A
    deterministic group (records agreeing on every column of a rule) is joined to its
    lowest node: n - 1 edges instead of n * (n - 1) / 2, with the same components. A
    gated rule (``unless_disagree``) needs every pair of the group, each checked; groups
    are small (``max_group_size``).
    """
    con.execute(
        f"""CREATE OR REPLACE TABLE links AS
        SELECT node_id_l, node_id_r, match_weight, match_probability, 'model' AS kind
        FROM {predictions} WHERE match_probability >= {threshold}"""
    )
    oversized: dict[str, dict[str, int]] = {}
    gated: dict[str, int] = {}
    for rule in deterministic:
        cols = ", ".join(q(c) for c in rule.columns)
        not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in rule.columns)
        kind = lit("deterministic: " + rule.name)
        small = f"SELECT * FROM nodes WHERE {not_null} QUALIFY count(*) OVER (PARTITION BY {cols}) <= {rule.max_group_size}"
        if not rule.unless_disagree:
            con.execute(
                f"""INSERT INTO links
                SELECT min(node_id) OVER (PARTITION BY {cols}) AS node_id_l, node_id AS node_id_r,
                       NULL, 1.0, {kind}
                FROM ({small}) QUALIFY node_id_l <> node_id_r"""
            )
        else:
            same = " AND ".join(f"l.{q(c)} = r.{q(c)}" for c in rule.columns)
            disagree = " OR ".join(
                f"(l.{q(c)} IS NOT NULL AND r.{q(c)} IS NOT NULL AND l.{q(c)} <> r.{q(c)})" for c in rule.unless_disagree
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _det_pairs AS
                WITH g AS ({small})
                SELECT l.node_id AS node_id_l, r.node_id AS node_id_r, ({disagree}) AS disagree
                FROM g l JOIN g r ON {same} AND l.node_id < r.node_id"""
            )
            con.execute(f"INSERT INTO links SELECT node_id_l, node_id_r, NULL, 1.0, {kind} FROM _det_pairs WHERE NOT disagree")
            gated[rule.name] = int(con.execute("SELECT count(*) FROM _det_pairs WHERE disagree").fetchall()[0][0])
            con.execute("DROP TABLE _det_pairs")
        groups, records = con.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM nodes WHERE {not_null} "
            f"GROUP BY {cols} HAVING n > {rule.max_group_size})"
        ).fetchall()[0]
        if groups:
            oversized[rule.name] = {"groups": int(groups), "records": int(records)}
    return oversized, gated


def connected_components(
    con: duckdb.DuckDBPyConnection, db_api=None, edges: str = "links", out: str = "cc", nodes: str = "nodes"
) -> None:
    """``out(node_id, cluster_id)`` over ``nodes`` (unique ids) and the ``edges(node_id_l,
    node_id_r)`` table; a component's id is its lowest node id, as Splink's connected
    components gives it (``db_api`` is no longer needed).

    Set-based, by hooking and contracting: each node hooks to its lowest neighbour below
    it, which makes a forest whose roots are the trees' lowest nodes; pointer jumping takes
    every node to its root; the edges between trees, renamed to their roots, are the next
    round's graph, until none is left. Each round at least the highest node of every
    component left hooks, and the edges shrink fast (people are small components). One
    edge table of two columns, where Splink's loop keeps a four-column neighbours table
    both ways round and splits its representatives every round.
    """
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cc_e AS
        SELECT least(node_id_l, node_id_r) AS a, greatest(node_id_l, node_id_r) AS b FROM {edges}
        WHERE node_id_l <> node_id_r"""
    )
    # every node hooked so far (not a root) with its root
    con.execute("CREATE OR REPLACE TEMP TABLE _cc_map (node_id BIGINT, root BIGINT)")
    while True:
        con.execute("CREATE OR REPLACE TEMP TABLE _cc_h AS SELECT b AS v, min(a) AS p FROM _cc_e GROUP BY b")
        if not con.execute("SELECT count(*) FROM _cc_h").fetchall()[0][0]:
            break
        moved = True
        while moved:  # pointer jumping: each node to its tree's root
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _cc_h2 AS SELECT h.v, coalesce(u.p, h.p) AS p, u.p IS NOT NULL AS moved
                FROM _cc_h h LEFT JOIN _cc_h u ON u.v = h.p"""
            )
            moved = bool(con.execute("SELECT count(*) FILTER (WHERE moved) FROM _cc_h2").fetchall()[0][0])
            con.execute("CREATE OR REPLACE TEMP TABLE _cc_h AS SELECT v, p FROM _cc_h2")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _cc_map AS
            SELECT m.node_id, coalesce(h.p, m.root) AS root FROM _cc_map m LEFT JOIN _cc_h h ON h.v = m.root
            UNION ALL SELECT v, p FROM _cc_h"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _cc_e AS
            SELECT DISTINCT least(ra, rb) AS a, greatest(ra, rb) AS b FROM (
                SELECT coalesce(ha.p, e.a) AS ra, coalesce(hb.p, e.b) AS rb
                FROM _cc_e e LEFT JOIN _cc_h ha ON ha.v = e.a LEFT JOIN _cc_h hb ON hb.v = e.b)
            WHERE ra <> rb"""
        )
    con.execute(
        f"""CREATE OR REPLACE TABLE {out} AS SELECT n.node_id, coalesce(m.root, n.node_id) AS cluster_id
        FROM {nodes} n LEFT JOIN _cc_map m USING (node_id)"""
    )
    for t in ("_cc_e", "_cc_h", "_cc_h2", "_cc_map"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def summarise_clusters(con: duckdb.DuckDBPyConnection) -> ClusterStats:
    """``clusters``: every node with its cluster and the cluster's evidence."""
    con.execute(
        """CREATE OR REPLACE TABLE clusters AS
        WITH sizes AS (SELECT cluster_id, count(*) AS cluster_size FROM cc GROUP BY ALL),
        edges AS (
            SELECT c.cluster_id, min(l.match_weight) AS cluster_min_match_weight,
                   count(*) FILTER (WHERE l.kind = 'model') AS cluster_links,
                   count(*) FILTER (WHERE l.kind <> 'model') AS deterministic_links
            FROM links l JOIN cc c ON c.node_id = l.node_id_l GROUP BY ALL
        )
        SELECT n.node_id, n.source_dataset, n.record_id, c.cluster_id, s.cluster_size,
               e.cluster_min_match_weight, coalesce(e.cluster_links, 0) AS cluster_links,
               coalesce(e.deterministic_links, 0) AS deterministic_links
        FROM nodes n JOIN cc c USING (node_id) JOIN sizes s USING (cluster_id)
        LEFT JOIN edges e USING (cluster_id)"""
    )
    return cluster_stats(con)


def cluster_stats(con: duckdb.DuckDBPyConnection) -> ClusterStats:
    """The counts of ``clusters`` (every node with its cluster and the cluster's evidence).
    The links are counted from the evidence (each link is in its cluster's): an incremental
    run's carried people have theirs from the previous run, not in ``links``."""
    records, clusters, singletons, largest = con.execute(
        "SELECT count(*), count(DISTINCT cluster_id), count(*) FILTER (WHERE cluster_size = 1), "
        "coalesce(max(cluster_size), 0) FROM clusters"
    ).fetchall()[0]
    model_links, det_links = (int(v) for v in con.execute(
        "SELECT coalesce(sum(cluster_links), 0), coalesce(sum(deterministic_links), 0) FROM "
        "(SELECT DISTINCT cluster_id, cluster_links, deterministic_links FROM clusters)"
    ).fetchall()[0])
    has_pnc = con.execute(
        "SELECT count(*) FROM (DESCRIBE nodes) WHERE column_name = 'pnc_key'").fetchall()[0][0]
    conflicts = con.execute(
        """SELECT count(*) FROM (
            SELECT c.cluster_id FROM clusters c JOIN nodes n USING (node_id)
            WHERE n.pnc_key IS NOT NULL GROUP BY ALL HAVING count(DISTINCT n.pnc_key) > 1)"""
    ).fetchall()[0][0] if has_pnc else 0
    hist = dict(
        con.execute(
            "SELECT cluster_size, count(*) FROM (SELECT DISTINCT cluster_id, cluster_size FROM clusters) "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()
    )
    return ClusterStats(records, clusters, singletons, largest, model_links, det_links, conflicts, hist)


# --- cluster validity: a pure decision on one cluster's links ------------------------------

# Two groups joined only by weak links stay one person when the links between them cover
# at least this share of their pairs of records: many weak links corroborate each other,
# one is a chain.
MIN_WEAK_LINK_DENSITY = 0.5
# Suspicious clusters read into Python at a time by ``check_clusters``.
CHECK_BATCH_CLUSTERS = 5_000

REASON_DUPLICATE_FREE = "duplicate-free source twice"
REASON_NOT_BEST = "duplicate-free source: not the best link"
REASON_WEAK = "weak link between groups"
REASON_AMBIGUOUS = "ambiguous weak link"
REASON_DATES = "different dates of birth"
REASON_PERSON = "differs from the person's other records"
REASON_NAMES = "different forenames"
CONFIRMED_SUFFIX = ", each held by more than one record"


@dataclass(frozen=True)
class Member:
    """A record of a cluster as the validity check sees it."""

    source_dataset: str
    # (identifier, value) pairs, e.g. ("pnc_key", ...): two different values of one
    # identifier in a person are a conflict.
    identifiers: tuple[tuple[str, str], ...] = ()
    # Dates of birth as YYYYMMDD (the record's and its alias dates): two groups whose dates
    # are all far apart (``dates_agree``) are a conflict.
    dates: tuple[str, ...] = ()
    # The record's forenames and surnames as words, "ETHAN|PRESGATE"
    # (``clustering.confirmed_forenames``), "" when it has no forename: two groups each
    # holding a value on ``confirmed_conflict_records`` records, whose names do not agree
    # (``names_agree``) and who share no identifier, are two people.
    names: str = ""


def _conflict_reason(column: str) -> str:
    return f"different {column} values"


def confirmed_values(members: dict[int, Member], records: int | None,
                     column_order: Sequence[str] = ()) -> dict[str, set[str]]:
    """Each identifier's values held by at least ``records`` members (none when None), the
    columns in ``column_order`` (the config's conflict columns) first, then by name."""
    if records is None:
        return {}
    counts = Counter(kv for m in members.values() for kv in set(m.identifiers))
    out: dict[str, set[str]] = {}
    for (column, value), n in counts.items():
        if n >= records:
            out.setdefault(column, set()).add(value)
    # The first column that conflicts names the cut: a fixed order (a set's would vary with
    # Python's string hashing from run to run).
    rank = {c: i for i, c in enumerate(column_order)}
    return {c: out[c] for c in sorted(out, key=lambda c: (rank.get(c, len(rank)), c))}


def confirmed_dates(members: dict[int, Member], records: int | None) -> set[str]:
    """The dates of birth (``Member.dates``) held by at least ``records`` members (none when None)."""
    if records is None:
        return set()
    counts = Counter(d for m in members.values() for d in set(m.dates))
    return {d for d, n in counts.items() if n >= records}


def _dates_confirmed_apart(a: set[str], b: set[str], confirmed: set[str]) -> bool:
    ca, cb = a & confirmed, b & confirmed
    return bool(ca) and bool(cb) and not dates_agree(ca, cb)


def confirmed_names(members: dict[int, Member], records: int | None) -> set[str]:
    """The forename values (``Member.names``) held by at least ``records`` members (none when None)."""
    if records is None:
        return set()
    counts = Counter(m.names for m in members.values() if m.names)
    return {v for v, n in counts.items() if n >= records}


def _words_near(x: str, y: str) -> bool:
    """Two name words one keying error apart: a character changed, added or dropped, or two
    adjacent characters swapped ("DARREN", "DARRREN")."""
    if len(x) == len(y):
        return _one_edit(x, y)
    if abs(len(x) - len(y)) != 1:
        return False
    short, long = (x, y) if len(x) < len(y) else (y, x)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def names_agree(a: Iterable[str], b: Iterable[str]) -> bool:
    """Could two sets of names ("FORENAMES|SURNAMES", each a record's words) be one
    person's? Yes when either holds no forename or some forename of one agrees with a
    forename of the other: equal, its beginning (an initial, a short form: "MO" and
    "MOHAMMED"), or (words of three letters or more) one keying error apart
    (``_words_near``); or when a forename of one is, or is one keying error from, a surname
    of the other that the first does not hold itself (forename and surname swapped). A
    surname both hold says nothing of their forenames: twins "JOHN JOHNSON" and "MARK
    JOHNSON" are two people.

    >>> names_agree({"MATTHEW PAUL|SMITH"}, {"MATTHEW|SMITH"}), names_agree({"ETHAN|PRESGATE"}, {"CHRISTOPHER JACK|PRESGATE"})
    (True, False)
    >>> names_agree({"DARREN|X"}, {"DARRREN|X"}), names_agree({"J|X"}, {"JACK|X"}), names_agree({"ALI|HUSSAIN"}, {"HUSSAIN|ALI"})
    (True, True, True)
    >>> names_agree({"JOHN|JOHNSON"}, {"MARK|JOHNSON"}), names_agree({"ROBERT|ROBERTS"}, {"PAUL|ROBERTS"})
    (False, False)
    """
    def split(values: Iterable[str]) -> tuple[set[str], set[str]]:
        fore: set[str] = set()
        sur: set[str] = set()
        for v in values:
            f, _, s = v.partition("|")
            fore.update(f.split())
            sur.update(s.split())
        return fore, sur

    (fa, sa), (fb, sb) = split(a), split(b)
    swapped_a, swapped_b = sb - sa, sa - sb  # the other's surnames that could be a swapped forename
    if not fa or not fb or fa & fb or fa & swapped_a or fb & swapped_b:
        return True

    def agree(x: str, y: str) -> bool:
        short, long = (x, y) if len(x) <= len(y) else (y, x)
        if long.startswith(short):  # an initial or a short form: "J", "MO" (MOHAMMED), "SAM"
            return True
        return len(short) >= 3 and _words_near(x, y)

    def swap_near(x: str, y: str) -> bool:  # a swapped forename keyed in error; not a prefix of a surname
        return min(len(x), len(y)) >= 3 and _words_near(x, y)

    return any(agree(x, y) for x in fa for y in fb) or any(swap_near(x, y) for x in fa for y in swapped_a) \
        or any(swap_near(x, y) for x in fb for y in swapped_b)


def _names_confirmed_apart(a: set[str], b: set[str], confirmed: set[str], ids_a: dict[str, set[str]],
                           ids_b: dict[str, set[str]], words: frozenset[str]) -> bool:
    """Two parts each holding a confirmed name value whose names do not agree (``names_agree``)
    and who share no identifier value (a PNC ID: one person known by two forenames)."""
    if a & b or not (a & confirmed and b & confirmed) or names_agree(a, b):
        return False
    return not any(values & ids_b.get(column, set()) for column, values in ids_a.items() if column not in words)


def _confirmed_conflict(ids_a: dict[str, set[str]], ids_b: dict[str, set[str]], confirmed: dict[str, set[str]],
                        one_edit: frozenset[str], words: frozenset[str] = frozenset()) -> str | None:
    """The column whose confirmed values in two parts say two people, if one does."""
    for column, values in confirmed.items():
        if identifiers_conflict(ids_a.get(column, set()) & values, ids_b.get(column, set()) & values,
                                column in one_edit, column in words):
            return column
    return None


def _one_edit(a: str, b: str) -> bool:
    """One substitution or one transposition of adjacent characters (equal lengths)."""
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) <= 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                               and a[diff[1]] == b[diff[0]])


def identifiers_conflict(a: set[str], b: set[str], one_edit: bool = False, words: bool = False) -> bool:
    """Do two parts' values of one identifier say two people? Yes when both hold values and
    they differ; with ``one_edit``, only when some value is not one keying error (one
    character, or two adjacent ones swapped) from any of the other part's: a National
    Insurance number, which has no check character, mistyped on one claim. With ``words``
    (middle names, given in full on one record and in part on another), only when no word
    of one part's values is a word of the other's (or, with ``one_edit``, one keying error
    from one, for words of three letters or more); a one-letter word is an initial, which
    agrees with every word it begins; values with no words say nothing.

    >>> identifiers_conflict({"AB123456"}, {"AB123465"}), identifiers_conflict({"AB123456"}, {"AB123465"}, True)
    (True, False)
    >>> identifiers_conflict({"AB123456"}, {"CD987654"}, True), identifiers_conflict(set(), {"CD987654"})
    (True, False)
    >>> identifiers_conflict({"ANN DONNA"}, {"DONNA"}, words=True), identifiers_conflict({"ANN"}, {"JANE"}, words=True)
    (False, True)
    >>> identifiers_conflict({"JAMES"}, {"J"}, True, True), identifiers_conflict({"J"}, {"K"}, True, True)
    (False, True)
    """
    if not a or not b or a == b:
        return False

    def near(x: str, ys: set[str]) -> bool:
        return any(x == y or (one_edit and len(x) == len(y) and _one_edit(x, y)) for y in ys)

    if words:
        wa, wb = ({w for v in values for w in v.split()} for values in (a, b))
        if not wa or not wb:
            return False

        def agree(x: str, y: str) -> bool:
            if len(x) == 1 or len(y) == 1:  # an initial
                return x[0] == y[0]
            return x == y or (one_edit and len(x) == len(y) >= 3 and _one_edit(x, y))

        return not any(agree(x, y) for x in wa for y in wb)
    if not one_edit:
        return True
    return not (all(near(x, b) for x in a) and all(near(y, a) for y in b))


def dates_agree(a: Iterable[str], b: Iterable[str]) -> bool:
    """Could two sets of dates of birth (YYYYMMDD) be one person's? Yes when either is empty,
    or some pair is one keying error apart (one digit or two adjacent digits swapped) or
    has day and month swapped; the corruptions a date of birth suffers, short of a wrong date.

    >>> dates_agree(["19850312"], ["19850321"]), dates_agree(["19850312"], ["19851203"])
    (True, True)
    >>> dates_agree(["19850312"], ["19600312"]), dates_agree([], ["19600312"])
    (False, True)
    """
    a, b = set(a), set(b)
    if not a or not b or a & b:
        return True
    return any(
        len(x) == len(y) == 8 and (_one_edit(x, y) or (x[:4] == y[:4] and x[4:6] == y[6:] and x[6:] == y[4:6]))
        for x in a for y in b
    )


class _Parts:
    """Union-find over one cluster's records, each part with its sources and identifiers."""

    def __init__(self, members: dict[int, Member], one_edit: frozenset[str] = frozenset(),
                 words: frozenset[str] = frozenset()):
        self.one_edit, self.words = one_edit, words
        self.parent = {n: n for n in members}
        self.nodes = {n: [n] for n in members}
        self.sources = {n: {m.source_dataset: 1} for n, m in members.items()}
        self.ids = {n: {k: {v} for k, v in m.identifiers} for n, m in members.items()}
        self.dates = {n: set(m.dates) for n, m in members.items()}
        self.names = {n: {m.names} if m.names else set() for n, m in members.items()}

    def find(self, n: int) -> int:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def clash(self, a: int, b: int, duplicate_free: frozenset[str]) -> str | None:
        """Why parts a and b (roots) cannot be one person whatever the evidence, if they cannot."""
        if any(s in self.sources[b] for s in self.sources[a] if s in duplicate_free):
            return REASON_DUPLICATE_FREE
        return None

    def conflict_columns(self, a: int, b: int) -> list[str]:
        """Every column whose values in parts ``a`` and ``b`` say two people."""
        return [column for column, values in self.ids[a].items()
                if identifiers_conflict(values, self.ids[b].get(column, set()), column in self.one_edit,
                                        column in self.words)]

    def conflict_column(self, a: int, b: int) -> str | None:
        return next(iter(self.conflict_columns(a, b)), None)

    def conflict(self, a: int, b: int) -> str | None:
        column = self.conflict_column(a, b)
        return None if column is None else _conflict_reason(column)

    def union(self, a: int, b: int) -> None:
        if len(self.nodes[a]) < len(self.nodes[b]):
            a, b = b, a
        self.parent[b] = a
        self.nodes[a] += self.nodes.pop(b)
        for s, k in self.sources.pop(b).items():
            self.sources[a][s] = self.sources[a].get(s, 0) + k
        for column, values in self.ids.pop(b).items():
            self.ids[a].setdefault(column, set()).update(values)
        self.dates[a] |= self.dates.pop(b)
        self.names[a] |= self.names.pop(b)


def _vouches(column: str, ids_a: dict[str, set[str]], ids_b: dict[str, set[str]], record_a: Member,
             record_b: Member, one_edit: frozenset[str], words: frozenset[str]) -> bool:
    """Does a gated deterministic link (``unless_disagree``) between ``record_a`` and
    ``record_b`` join two parts whose values of ``column`` conflict? Its rule checked its own
    two records only: yes when they hold the conflicting values themselves (one of them
    keyed in error: same name and date of birth, two PNC IDs) or the parts share a value;
    no when the conflict lies elsewhere in the parts (two people of one name and date of
    birth, their middle names apart, joined through a record without middle names). An
    ungated rule's group is joined through its lowest record (``build_links``), each link
    standing for the whole group: those links join whatever the parts hold."""
    if ids_a.get(column, set()) & ids_b.get(column, set()):
        return True
    own_a = {v for k, v in record_a.identifiers if k == column}
    own_b = {v for k, v in record_b.identifiers if k == column}
    return identifiers_conflict(own_a, own_b, column in one_edit, column in words)


def _weight(w: float | None) -> float:
    return math.inf if w is None else w  # a deterministic link: agreement alone


def split_cluster(
    members: dict[int, Member],
    links: Iterable[tuple[int, int, float | None]],
    *,
    fracture_match_weight: float,
    conflict_match_weight: float,
    duplicate_free: Iterable[str] = (),
    date_conflict_match_weight: float | None = None,
    one_edit_columns: Iterable[str] = (),
    confirmed_conflict_records: int | None = None,
    word_columns: Iterable[str] = (),
    column_order: Sequence[str] = (),
) -> list[list[int]]:
    """The parts one cluster falls into, largest first (one part: the cluster is valid).

    ``links`` are ``(node_a, node_b, match_weight)``, None for a deterministic link and
    ``math.inf`` for one of a gated rule (``unless_disagree``: every pair of its group is a
    link, each vouching for its own two records only; ``_vouches``). Links
    are taken strongest first (Kruskal's order) and a link joins its two parts unless:

    - the parts would hold two records of a ``duplicate_free`` source;
    - the parts hold different values of one identifier (two valid PNC IDs) and the link
      is below ``conflict_match_weight`` (for ``one_edit_columns``, values one keying error
      apart are one value: ``identifiers_conflict``), or is a gated deterministic link
      (``math.inf``) whose own two records neither hold the two values nor share one across
      the parts (``_vouches``: two people of one name and date of birth, their middle names
      apart, joined through a record without middle names);
      whatever the link (a deterministic
      one too), when each part holds a value that ``confirmed_conflict_records`` records
      of the cluster or more hold, and they differ (``confirmed_values``); and, when
      dates are checked, when each part holds such a date of birth and they do not agree;
      and when each part holds a forename value (``Member.names``) that many records hold
      and no word of one part's forenames agrees with a word of the other's
      (``names_agree``): twins, one surname, date of birth and address;
    - the parts' dates of birth are all far apart (``dates_agree``) and the link is below
      ``date_conflict_match_weight`` (None: dates are not checked): a father and son of
      one name, chained through a record without a date of birth;
    - the link is below ``fracture_match_weight``, both parts hold two records or more,
      and the links between them cover less than ``MIN_WEAK_LINK_DENSITY`` of their pairs:
      a weak link may attach one record to a person, not chain two people together.

    >>> m = {n: Member("s") for n in range(1, 6)}
    >>> split_cluster(m, [(1, 2, 20), (2, 3, 20), (4, 5, 20), (3, 4, 6)],
    ...               fracture_match_weight=10, conflict_match_weight=20)
    [[1, 2, 3], [4, 5]]
    """
    dup_free = frozenset(duplicate_free)
    parts = _Parts(members, frozenset(one_edit_columns), frozenset(word_columns))
    confirmed = confirmed_values(members, confirmed_conflict_records, column_order)
    confirmed_dob = confirmed_dates(members, confirmed_conflict_records) if date_conflict_match_weight is not None else set()
    confirmed_fn = confirmed_names(members, confirmed_conflict_records)
    ordered = sorted(links, key=lambda e: (-_weight(e[2]), e[0], e[1]))
    adjacency: dict[int, set[int]] = {n: set() for n in members}
    for a, b, _ in ordered:
        adjacency[a].add(b)
        adjacency[b].add(a)
    for a, b, w in ordered:
        ra, rb = parts.find(a), parts.find(b)
        if ra == rb or parts.clash(ra, rb, dup_free):
            continue
        if confirmed and _confirmed_conflict(parts.ids[ra], parts.ids[rb], confirmed, parts.one_edit, parts.words):
            continue
        if confirmed_dob and _dates_confirmed_apart(parts.dates[ra], parts.dates[rb], confirmed_dob):
            continue
        if confirmed_fn and _names_confirmed_apart(parts.names[ra], parts.names[rb], confirmed_fn, parts.ids[ra],
                                                   parts.ids[rb], parts.words):
            continue
        weight = _weight(w)
        if w == math.inf:  # a gated deterministic link: it joins only conflicts its own records hold
            if any(not _vouches(c, parts.ids[ra], parts.ids[rb], members[a], members[b], parts.one_edit, parts.words)
                   for c in parts.conflict_columns(ra, rb)):
                continue
        elif weight < conflict_match_weight and parts.conflict_column(ra, rb) is not None:
            continue
        if (date_conflict_match_weight is not None and weight < date_conflict_match_weight
                and not dates_agree(parts.dates[ra], parts.dates[rb])):
            continue
        if weight < fracture_match_weight:
            na, nb = len(parts.nodes[ra]), len(parts.nodes[rb])
            if min(na, nb) >= 2:
                small, big = (ra, rb) if na <= nb else (rb, ra)
                between = sum(1 for n in parts.nodes[small] for o in adjacency[n] if parts.find(o) == big)
                if between < MIN_WEAK_LINK_DENSITY * na * nb:
                    continue
        parts.union(ra, rb)
    out = [sorted(nodes) for nodes in parts.nodes.values()]
    return sorted(out, key=lambda p: (-len(p), p[0]))


def cut_reasons(
    parts: Sequence[Sequence[int]],
    members: dict[int, Member],
    links: Iterable[tuple[int, int, float | None]],
    *,
    conflict_match_weight: float,
    duplicate_free: Iterable[str] = (),
    date_conflict_match_weight: float | None = None,
    one_edit_columns: Iterable[str] = (),
    confirmed_conflict_records: int | None = None,
    word_columns: Iterable[str] = (),
    column_order: Sequence[str] = (),
) -> list[tuple[int, int, str]]:
    """Each link between two parts with why it was cut: the parts' clash, else their
    confirmed identifier values, dates of birth or forenames, else their identifier conflict (below
    ``conflict_match_weight``), else their dates of birth (below
    ``date_conflict_match_weight``), else a weak link between groups."""
    dup_free, one_edit, words = frozenset(duplicate_free), frozenset(one_edit_columns), frozenset(word_columns)
    part_of = {n: i for i, p in enumerate(parts) for n in p}
    sources = [{members[n].source_dataset for n in p} for p in parts]
    ids: list[dict[str, set[str]]] = []
    dates = [{d for n in p for d in members[n].dates} for p in parts]
    names = [{members[n].names for n in p if members[n].names} for p in parts]
    for p in parts:
        d: dict[str, set[str]] = {}
        for n in p:
            for k, v in members[n].identifiers:
                d.setdefault(k, set()).add(v)
        ids.append(d)
    confirmed = confirmed_values(members, confirmed_conflict_records, column_order)
    confirmed_dob = confirmed_dates(members, confirmed_conflict_records) if date_conflict_match_weight is not None else set()
    confirmed_fn = confirmed_names(members, confirmed_conflict_records)
    out = []
    for a, b, w in links:
        i, j = part_of[a], part_of[b]
        if i == j:
            continue
        held = _confirmed_conflict(ids[i], ids[j], confirmed, one_edit, words) if confirmed else None
        if sources[i] & sources[j] & dup_free:
            reason = REASON_DUPLICATE_FREE
        elif held:
            reason = _conflict_reason(held) + CONFIRMED_SUFFIX
        elif confirmed_dob and _dates_confirmed_apart(dates[i], dates[j], confirmed_dob):
            reason = REASON_DATES + CONFIRMED_SUFFIX
        elif confirmed_fn and _names_confirmed_apart(names[i], names[j], confirmed_fn, ids[i], ids[j], words):
            reason = REASON_NAMES + CONFIRMED_SUFFIX
        else:
            conflicts = [k for k, v in ids[i].items()
                         if identifiers_conflict(v, ids[j].get(k, set()), k in one_edit, k in words)]
            if w == math.inf:  # a gated deterministic link: the first conflict its own records do not hold
                conflict = next((k for k in conflicts
                                 if not _vouches(k, ids[i], ids[j], members[a], members[b], one_edit, words)), None)
            else:
                conflict = conflicts[0] if conflicts and _weight(w) < conflict_match_weight else None
            if conflict:
                reason = _conflict_reason(conflict)
            elif (date_conflict_match_weight is not None and _weight(w) < date_conflict_match_weight
                  and not dates_agree(dates[i], dates[j])):
                reason = REASON_DATES
            else:
                reason = REASON_WEAK
        out.append((a, b, reason))
    return out


# --- the clustering stage ---------------------------------------------------------------------


def _cut(con: duckdb.DuckDBPyConnection, cut_table: str) -> None:
    """Move the links named in ``cut_table(node_id_l, node_id_r, reason)`` to ``cluster_splits``."""
    con.execute(
        f"""INSERT INTO cluster_splits
        SELECT l.*, c.reason FROM links l JOIN {cut_table} c USING (node_id_l, node_id_r)"""
    )
    con.execute(f"DELETE FROM links WHERE (node_id_l, node_id_r) IN (SELECT (node_id_l, node_id_r) FROM {cut_table})")


def keep_best_links_into(con: duckdb.DuckDBPyConnection, duplicate_free: Sequence[str]) -> int:
    """Set-based: a link into a duplicate-free source is kept only when it is its record's
    best-scoring link into that source (deterministic links count as best), and two
    records of one duplicate-free source are never linked. Returns the links cut.

    Connected components can still chain two records of such a source through a third
    record: ``split_cluster`` resolves those clusters.
    """
    if not duplicate_free:
        return 0
    sources = ", ".join(lit(s) for s in duplicate_free)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dup_cut AS
        WITH e AS (
            SELECT node_id_l AS a, node_id_r AS b, node_id_l, node_id_r, coalesce(match_weight, 'inf'::DOUBLE) AS w
            FROM links
            UNION ALL
            SELECT node_id_r, node_id_l, node_id_l, node_id_r, coalesce(match_weight, 'inf'::DOUBLE) FROM links),
        ends AS (
            SELECT e.*, na.source_dataset AS sa, nb.source_dataset AS sb FROM e
            JOIN nodes na ON na.node_id = e.a JOIN nodes nb ON nb.node_id = e.b
            WHERE nb.source_dataset IN ({sources}))
        SELECT node_id_l, node_id_r,
               CASE WHEN bool_or(sa = sb) THEN {lit(REASON_DUPLICATE_FREE)} ELSE {lit(REASON_NOT_BEST)} END AS reason
        FROM (SELECT *, row_number() OVER (PARTITION BY a, sb ORDER BY w DESC, b) AS rank FROM ends)
        WHERE sa = sb OR rank > 1
        GROUP BY ALL"""
    )
    n = con.execute("SELECT count(*) FROM _dup_cut").fetchall()[0][0]
    _cut(con, "_dup_cut")
    con.execute("DROP TABLE _dup_cut")
    return int(n)


def strong_components(con: duckdb.DuckDBPyConnection, db_api, settings: ClusteringConfig) -> None:
    """``_core(node_id, cluster_id)``: the components of the strong links (at or above the
    fracture weight, and deterministic links), the people that weak links attach records to."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _strong AS SELECT node_id_l, node_id_r FROM links
        WHERE match_weight IS NULL OR match_weight >= {float(settings.fracture_match_weight)}"""
    )
    connected_components(con, db_api, edges="_strong", out="_core")
    con.execute("DROP TABLE _strong")


def components_from_core(con: duckdb.DuckDBPyConnection, db_api, settings: ClusteringConfig) -> None:
    """``cc(node_id, cluster_id)``: the components of ``links``, made from ``_core`` instead
    of from every link again. The strong links all lie inside the people of ``_core`` (the
    checks before this cut weak links only), so the components of ``links`` are those of the
    people joined by the weak links left: a small graph, the people as its nodes. Its ids
    are the lowest node ids, as ``connected_components`` gives them."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _bridges AS
        SELECT DISTINCT least(kl.cluster_id, kr.cluster_id) AS node_id_l, greatest(kl.cluster_id, kr.cluster_id) AS node_id_r
        FROM links l JOIN _core kl ON kl.node_id = l.node_id_l JOIN _core kr ON kr.node_id = l.node_id_r
        WHERE l.match_weight < {float(settings.fracture_match_weight)} AND kl.cluster_id <> kr.cluster_id"""
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _bridge_nodes AS "
                "SELECT node_id_l AS node_id FROM _bridges UNION SELECT node_id_r FROM _bridges")
    connected_components(con, db_api, edges="_bridges", out="_bridge_cc", nodes="_bridge_nodes")
    con.execute(
        """CREATE OR REPLACE TABLE cc AS SELECT k.node_id, coalesce(b.cluster_id, k.cluster_id) AS cluster_id
        FROM _core k LEFT JOIN _bridge_cc b ON b.node_id = k.cluster_id"""
    )
    for t in ("_bridges", "_bridge_nodes", "_bridge_cc"):
        con.execute(f"DROP TABLE {t}")


# Columns that tell two people apart when both hold values and share none. A postcode too:
# one person's records mostly give one address, and two groups of one name, neither with a
# date of birth, at addresses with nothing in common are as likely two people as one.
TELL_APART_COLUMNS = ("date_of_birth", "pnc_key", "postcode")


def _told_apart(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    """SQL (a join and a condition) over ``_rivals(py, pz)``, people of ``_core``, for
    "person z is told apart from person y": both hold a date of birth (or a valid PNC ID,
    or a postcode) and they share none. Builds ``_core_keys`` for the people of
    ``_rivals``. Without those columns every other person is apart."""
    have = {c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE nodes)").fetchall()}
    columns = [c for c in TELL_APART_COLUMNS if c in have]
    if not columns:
        return "", ""
    # list_distinct drops the NULLs
    lists = ", ".join(f"list_distinct(list({q(c)})) AS {q(c)}" for c in columns)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _core_keys AS
        SELECT k.cluster_id, {lists} FROM _core k JOIN nodes n USING (node_id)
        WHERE k.cluster_id IN (SELECT py FROM _rivals UNION SELECT pz FROM _rivals) GROUP BY ALL"""
    )
    apart = " OR ".join(
        f"(len(ky.{q(c)}) > 0 AND len(kz.{q(c)}) > 0 AND len(list_intersect(ky.{q(c)}, kz.{q(c)})) = 0)"
        for c in columns
    )
    return ("JOIN _core_keys ky ON ky.cluster_id = py JOIN _core_keys kz ON kz.cluster_id = pz", f"WHERE {apart}")


def attach_unlinked(con: duckdb.DuckDBPyConnection, predictions: str, threshold: float,
                    settings: ClusteringConfig, only: str | None = None) -> int:
    """Set-based: a record no link reaches gets its best scored pair into a linked record
    as a link when that pair is below the threshold but at or above ``attach_match_weight``; returns the links
    added. They are weak links (below the fracture weight), so the checks that follow drop
    the ambiguous ones (a rival person within ``ambiguity_margin``) and those the person's
    other records speak against (``person_evidence``).

    A pair's probability counts every namesake in the population; a record whose name
    scores about as well against no other person in the data is the one person's
    (a Libra record without a date of birth, its name held by one person).

    ``only`` (a table of ``node_id``): only these records may be attached (an incremental
    run's records clustered again; the others are there to be read, not placed).
    """
    if settings.attach_match_weight is None:
        return 0
    at_threshold = math.log2(threshold / (1 - threshold))
    only_sql = f" AND x IN (SELECT node_id FROM {only})" if only is not None else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _attach AS
        WITH linked AS (SELECT node_id_l AS x FROM links UNION SELECT node_id_r FROM links),
        cand AS (
            SELECT node_id_l AS x, node_id_r AS y, node_id_l, node_id_r, match_weight, match_probability
            FROM {predictions}
            WHERE match_weight >= {float(settings.attach_match_weight)} AND match_weight < {at_threshold}
            UNION ALL
            SELECT node_id_r, node_id_l, node_id_l, node_id_r, match_weight, match_probability FROM {predictions}
            WHERE match_weight >= {float(settings.attach_match_weight)} AND match_weight < {at_threshold})
        -- onto a person (a record with links), never two lone records together
        SELECT node_id_l, node_id_r, match_weight, match_probability FROM cand
        WHERE x NOT IN (SELECT x FROM linked) AND y IN (SELECT x FROM linked){only_sql}
        QUALIFY row_number() OVER (PARTITION BY x ORDER BY match_weight DESC, node_id_l, node_id_r) = 1"""
    )
    n = con.execute("SELECT count(*) FROM _attach").fetchall()[0][0]
    con.execute("INSERT INTO links SELECT node_id_l, node_id_r, match_weight, match_probability, 'model' FROM _attach")
    con.execute("DROP TABLE _attach")
    return int(n)


def drop_ambiguous_weak_links(con: duckdb.DuckDBPyConnection, predictions: str, settings: ClusteringConfig) -> int:
    """Set-based: drop each weak link (below the fracture weight) whose records have a
    scored pair, within ``ambiguity_margin`` bits of it, into a third person; returns the
    links dropped.

    People here are the components of the strong links, ``_core`` (``strong_components``).
    A Libra record without a date of birth that scores about as well against two people of
    the same name belongs to neither on that evidence. The third person must be told apart
    from the linked one (``_told_apart``): a record scoring alike against two records of one
    name and one address, neither with a date of birth, is no ambiguity (they may well be
    one person).
    """
    if settings.ambiguity_margin is None:
        return 0
    fracture, margin = float(settings.fracture_match_weight), float(settings.ambiguity_margin)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _ends AS
        WITH weak AS (SELECT node_id_l, node_id_r, match_weight AS w FROM links
                      WHERE kind = 'model' AND match_weight < {fracture}
                      -- a pair also linked deterministically is not weak
                      AND (node_id_l, node_id_r) NOT IN (SELECT (node_id_l, node_id_r) FROM links
                                                         WHERE kind <> 'model'))
        SELECT node_id_l, node_id_r, w, node_id_l AS x, node_id_r AS y FROM weak
        UNION ALL SELECT node_id_l, node_id_r, w, node_id_r, node_id_l FROM weak"""
    )
    # One scan of the predictions: the pairs of a weak link's record scoring at least the
    # weakest link's weight less the margin (no other pair can be a rival), both ways round.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _scored AS
        SELECT node_id_l, node_id_r, match_weight FROM {predictions}
        WHERE match_weight >= (SELECT min(w) FROM _ends) - {margin}
          AND (node_id_l IN (SELECT x FROM _ends) OR node_id_r IN (SELECT x FROM _ends))"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rivals AS
        -- each scored pair's two people, looked up once for both directions
        WITH apart AS (
            SELECT kl.cluster_id AS cl, kr.cluster_id AS cr, s.node_id_l, s.node_id_r, s.match_weight AS w
            FROM _scored s JOIN _core kl ON kl.node_id = s.node_id_l JOIN _core kr ON kr.node_id = s.node_id_r
            WHERE kl.cluster_id <> kr.cluster_id),
        scored AS (
            SELECT node_id_l AS a, cr AS pz, w FROM apart UNION ALL SELECT node_id_r, cl, w FROM apart),
        -- each end's best score against each person other than its own
        best AS (SELECT a, pz, max(w) AS w FROM scored WHERE a IN (SELECT x FROM _ends) GROUP BY ALL)
        -- each weak link with the people it is weighed against (few), then told apart
        SELECT DISTINCT e.node_id_l, e.node_id_r, e.x, cy.cluster_id AS py, b.pz
        FROM _ends e JOIN best b ON b.a = e.x AND b.w >= e.w - {margin}
        JOIN _core cy ON cy.node_id = e.y WHERE b.pz <> cy.cluster_id"""
    )
    apart_join, apart_where = _told_apart(con)
    unvouched = _vouched_rivals(con, settings)
    where = " AND ".join(f"({w})" for w in (apart_where.removeprefix("WHERE "), unvouched) if w)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _amb AS SELECT DISTINCT node_id_l, node_id_r, {lit(REASON_AMBIGUOUS)} AS reason
        FROM _rivals {apart_join} {'WHERE ' + where if where else ''}"""
    )
    n = con.execute("SELECT count(*) FROM _amb").fetchall()[0][0]
    _cut(con, "_amb")
    for t in ("_ends", "_scored", "_rivals", "_amb", "_core_keys", "_vouched"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return int(n)


def _vouched_rivals(con: duckdb.DuckDBPyConnection, settings: ClusteringConfig) -> str:
    """A condition over ``_rivals(x, py, pz)``: false when the record ``x`` shares a value of an
    ``ambiguity_vouch_columns`` column (its postcode) with another record of the linked person
    ``py`` and with no record of the rival ``pz``. Builds ``_vouched(x, p)``. The pair's own
    weight cannot see that value when its other record lacks it (a Libra record against a PNC
    record): the person's address, not the name, then tells the two namesakes apart."""
    have = {c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE nodes)").fetchall()}
    columns = [c for c in settings.ambiguity_vouch_columns if c in have]
    if not columns:
        return ""
    same = " OR ".join(f"n.{q(c)} = nx.{q(c)}" for c in columns)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _vouched AS
        SELECT DISTINCT r.x, r.p FROM (SELECT x, py AS p FROM _rivals UNION SELECT x, pz FROM _rivals) r
        JOIN nodes nx ON nx.node_id = r.x JOIN _core k ON k.cluster_id = r.p JOIN nodes n ON n.node_id = k.node_id
        WHERE n.node_id <> r.x AND ({same})"""
    )
    return ("NOT (EXISTS (SELECT 1 FROM _vouched v WHERE v.x = _rivals.x AND v.p = _rivals.py) "
            "AND NOT EXISTS (SELECT 1 FROM _vouched v WHERE v.x = _rivals.x AND v.p = _rivals.pz))")


def drop_links_against_person(con: duckdb.DuckDBPyConnection, threshold: float, settings: ClusteringConfig) -> int:
    """Set-based: a weak model link (below the fracture weight) whose pair had nothing to
    compare on a ``person_evidence`` column (one record lacks it) is weighed against the
    person of the other record (``_core``) instead. When the record's value equals none of
    the values the person's other records hold, the link gets the column's weight (the
    model's for "the values differ") and is dropped if that leaves it below the threshold:
    a Libra record without a date of birth linked to a PNC record (no postcode) of a
    namesake whose court records all give another postcode. Returns the links dropped.
    """
    have = {c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE nodes)").fetchall()}
    evidence = {c: w for c, w in settings.person_evidence.items() if c in have and w is not None and w < 0}
    if not evidence:
        return 0
    at_threshold = math.log2(threshold / (1 - threshold)) if threshold < 1 else math.inf
    fracture = float(settings.fracture_match_weight)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _pe_ends AS
        WITH weak AS (SELECT node_id_l, node_id_r, match_weight AS w FROM links
                      WHERE kind = 'model' AND match_weight < {fracture}
                      AND (node_id_l, node_id_r) NOT IN (SELECT (node_id_l, node_id_r) FROM links
                                                         WHERE kind <> 'model'))
        SELECT node_id_l, node_id_r, w, node_id_l AS x, node_id_r AS y FROM weak
        UNION ALL SELECT node_id_l, node_id_r, w, node_id_r, node_id_l FROM weak"""
    )
    penalties = []
    for column, weight in evidence.items():
        c = q(column)
        # the person's other values: each value once per person
        penalties.append(
            f"""SELECT e.node_id_l, e.node_id_r, e.w, {lit(column)} AS col, {float(weight)} AS bits
            FROM _pe_ends e JOIN nodes nx ON nx.node_id = e.x JOIN nodes ny ON ny.node_id = e.y
            JOIN _core cy ON cy.node_id = e.y
            WHERE nx.{c} IS NOT NULL AND ny.{c} IS NULL
              AND EXISTS (SELECT 1 FROM _core k JOIN nodes n USING (node_id)
                          WHERE k.cluster_id = cy.cluster_id AND n.node_id <> e.x AND n.{c} IS NOT NULL)
              AND NOT EXISTS (SELECT 1 FROM _core k JOIN nodes n USING (node_id)
                              WHERE k.cluster_id = cy.cluster_id AND n.{c} = nx.{c})"""
        )
    union = " UNION ALL ".join(penalties)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _pe_cut AS
        SELECT node_id_l, node_id_r, {lit(REASON_PERSON)} AS reason FROM (
            -- one penalty per column and link, whichever direction found it
            SELECT node_id_l, node_id_r, any_value(w) AS w, sum(bits) AS bits FROM (
                SELECT DISTINCT ON (node_id_l, node_id_r, col) * FROM ({union})) GROUP BY node_id_l, node_id_r)
        WHERE w + bits < {at_threshold}"""
    )
    n = con.execute("SELECT count(*) FROM _pe_cut").fetchall()[0][0]
    _cut(con, "_pe_cut")
    for t in ("_pe_ends", "_pe_cut"):
        con.execute(f"DROP TABLE {t}")
    return int(n)


def with_person_evidence(settings: ClusteringConfig, comparisons: Sequence, model_settings: dict) -> ClusteringConfig:
    """``settings`` with each ``person_evidence`` weight left None taken from the trained
    model (Splink settings, ``model.json``): log2(m/u) of the last level of the comparison
    whose first level is exact on the column. A column no comparison matches that way is
    left out (no evidence)."""
    if not settings.person_evidence:
        return settings
    by_name = {c.get("output_column_name"): c for c in model_settings.get("comparisons", [])}
    resolved: dict[str, float | None] = {}
    for column, weight in settings.person_evidence.items():
        if weight is None:
            comp = next((c for c in comparisons if c.levels and c.levels[0].exact == column), None)
            levels = [lv for lv in (by_name.get(comp.label) or {}).get("comparison_levels", [])
                      if not lv.get("is_null_level")] if comp is not None else []
            m, u = (levels[-1].get("m_probability"), levels[-1].get("u_probability")) if levels else (None, None)
            weight = math.log2(m / u) if m and u else None
        if weight is not None:
            resolved[column] = float(weight)
    return settings.model_copy(update={"person_evidence": resolved})


def check_clusters(
    con: duckdb.DuckDBPyConnection,
    settings: ClusteringConfig,
    duplicate_free: Sequence[str] = (),
    conflict_columns: Sequence[str] | None = None,
    gated: Sequence[str] = (),
) -> tuple[int, int]:
    """Split the suspicious clusters of ``cc`` with ``split_cluster``; returns (checked, split).

    Suspicious (found set-based, the rest is never read into Python): a cluster whose weak
    links (below the fracture weight) join two strong groups of two records or more, or
    three strong groups or more (``_core``, ``strong_components``); two different values
    of a conflict column (default: ``settings.conflict_columns``); two records of a duplicate-free source; with
    ``date_conflict_match_weight`` set, three records or more with two dates of birth; or, with
    ``confirmed_forenames`` set, two name values each on ``confirmed_conflict_records`` records
    with no forename in common (twins).
    Parts keep the lowest node id as their cluster id; the cut links move to
    ``cluster_splits``. ``gated`` names the deterministic rules with ``unless_disagree``
    (their links reach ``split_cluster`` as ``math.inf``: ``_vouches``).
    """
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE nodes)").fetchall())
    have = set(types)
    columns = [c for c in (settings.conflict_columns if conflict_columns is None else conflict_columns) if c in have]
    date_weight = settings.date_conflict_match_weight if "date_of_birth" in have else None
    names_sql = _names_sql(settings, types)
    # Clusters with two name values each held by confirmed_conflict_records records and no
    # forename in common: only those may split_cluster part for their names (names_agree).
    con.execute("CREATE OR REPLACE TEMP TABLE _named (cluster_id BIGINT)")
    if names_sql != "''":
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _named_values AS
            SELECT cluster_id, v, list_filter(string_split(split_part(v, '|', 1), ' '), lambda w: w <> '') AS fw FROM (
                SELECT cc.cluster_id, {names_sql} AS v FROM cc JOIN nodes n USING (node_id))
            WHERE v <> '' GROUP BY cluster_id, v HAVING count(*) >= {int(settings.confirmed_conflict_records or 0)}"""
        )
        con.execute(
            """INSERT INTO _named SELECT DISTINCT a.cluster_id FROM _named_values a JOIN _named_values b
            ON a.cluster_id = b.cluster_id AND a.v < b.v AND NOT list_has_any(a.fw, b.fw)"""
        )
        con.execute("DROP TABLE _named_values")
    # min <> max: two values or more, without count(DISTINCT)'s hash table per column
    dated = "coalesce(min(n.date_of_birth) <> max(n.date_of_birth), false)" if date_weight is not None else "false"
    if date_weight is None:
        dates_sql = "[]::VARCHAR[]"
    elif "dob_set" in have:
        dates_sql = ("list_transform(list_distinct(list_append(coalesce(n.dob_set, []), n.date_of_birth)), "
                     "lambda d: strftime(d, '%Y%m%d'))")
    else:
        dates_sql = "list_transform([n.date_of_birth], lambda d: strftime(d, '%Y%m%d'))"
    dup = ", ".join(lit(s) for s in duplicate_free) or "NULL"
    conflicts = " OR ".join(f"coalesce(min(n.{q(c)}) <> max(n.{q(c)}), false)" for c in columns) or "false"
    dup_twice = (f"""count(*) FILTER (WHERE n.source_dataset IN ({dup}))
                     > count(DISTINCT n.source_dataset) FILTER (WHERE n.source_dataset IN ({dup}))"""
                 if duplicate_free else "false")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _suspect AS
        WITH c AS (
            SELECT cc.cluster_id, count(*) AS size, ({conflicts}) AS conflict, ({dated}) AS dated, ({dup_twice}) AS dup
            FROM cc JOIN nodes n USING (node_id) GROUP BY ALL),
        -- a person of _core lies in one cluster, the one its lowest node (its id) is in
        cores AS (SELECT c.cluster_id, count(*) AS cores, count(*) FILTER (WHERE k.n >= 2) AS groups
                  FROM (SELECT cluster_id AS core, count(*) AS n FROM _core GROUP BY ALL) k
                  JOIN cc c ON c.node_id = k.core GROUP BY ALL)
        SELECT cluster_id, NOT dup AND groups <= 1 AND NOT named AS whole, cores <= 2 AS few_cores
        FROM (SELECT *, cluster_id IN (SELECT cluster_id FROM _named) AS named FROM c) JOIN cores USING (cluster_id)
        WHERE size >= 2 AND (conflict OR dup OR named OR (size >= 3 AND (dated OR groups >= 2 OR cores >= 3)))"""
    )
    con.execute("DROP TABLE _named")
    checked = con.execute("SELECT count(*) FROM _suspect").fetchall()[0][0]
    gated_kinds = ", ".join(lit("deterministic: " + g) for g in gated) or "NULL"
    _drop_whole_clusters(con, columns, dates_sql, settings.conflict_match_weight, date_weight,
                         settings.confirmed_conflict_records, settings.conflict_one_edit_columns,
                         settings.conflict_word_columns, gated_kinds)
    ids = ", ".join(f"n.{q(c)}" for c in columns)
    # The suspicious clusters go to Python a batch at a time (their members and links, kept
    # in DuckDB, which spills, in between), so that Python holds one batch's objects, not
    # every suspicious cluster's (at ten million records, 1.5 GiB above DuckDB's limit).
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _suspect_batch AS
                    SELECT cluster_id, (row_number() OVER (ORDER BY cluster_id) - 1) // {CHECK_BATCH_CLUSTERS} AS batch
                    FROM _suspect""")
    con.execute("DROP TABLE _suspect")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _suspect_members AS
        SELECT b.batch, cc.cluster_id, n.node_id, n.source_dataset, list_filter({dates_sql}, lambda d: d IS NOT NULL),
               {names_sql} AS names{', ' + ids if ids else ''}
        FROM cc JOIN _suspect_batch b USING (cluster_id) JOIN nodes n USING (node_id) ORDER BY b.batch"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _suspect_links AS
        SELECT b.batch, cc.cluster_id, l.node_id_l, l.node_id_r,
               -- math.inf marks a gated link (``_vouches``): a scored weight of +inf (a model
               -- level with u = 0) is the strongest scored link, so it reaches Python finite
               CASE WHEN l.kind IN ({gated_kinds}) THEN 'inf'::DOUBLE ELSE least(l.match_weight, {sys.float_info.max!r})
               END
        FROM links l JOIN cc ON cc.node_id = l.node_id_l JOIN _suspect_batch b USING (cluster_id) ORDER BY b.batch"""
    )
    batches = con.execute("SELECT coalesce(max(batch) + 1, 0) FROM _suspect_batch").fetchall()[0][0]
    con.execute("DROP TABLE _suspect_batch")
    con.execute("CREATE OR REPLACE TEMP TABLE _reassign (node_id BIGINT, new_cluster_id BIGINT)")
    con.execute("CREATE OR REPLACE TEMP TABLE _cuts (node_id_l BIGINT, node_id_r BIGINT, reason VARCHAR)")
    split = 0
    for batch in range(batches):
        split += _split_batch(
            con, con.execute("SELECT * EXCLUDE (batch) FROM _suspect_members WHERE batch = ?", [batch]).fetchall(),
            con.execute("SELECT * EXCLUDE (batch) FROM _suspect_links WHERE batch = ?", [batch]).fetchall(),
            columns, settings, duplicate_free, date_weight)
    con.execute("DROP TABLE _suspect_members")
    con.execute("DROP TABLE _suspect_links")
    if split:
        con.execute("UPDATE cc SET cluster_id = r.new_cluster_id FROM _reassign r WHERE cc.node_id = r.node_id")
        _cut(con, "_cuts")
    con.execute("DROP TABLE _reassign")
    con.execute("DROP TABLE _cuts")
    return int(checked), split


def _names_sql(settings: ClusteringConfig, types: dict[str, str]) -> str:
    """SQL over ``nodes n``: a record's names (``confirmed_forenames``) as one string,
    "FORENAMES|SURNAMES", each side its columns' words (a list column's items too) in the
    config's order; '' when it has no forename or the check is off."""
    names = settings.confirmed_forenames
    if names is None or settings.confirmed_conflict_records is None:
        return "''"

    def words(cols: list[str]) -> str:
        parts = [f"array_to_string(n.{q(c)}, ' ')" if types[c].endswith("[]") else f"CAST(n.{q(c)} AS VARCHAR)"
                 for c in cols if c in types]
        return f"trim(concat_ws(' ', {', '.join(parts)}))" if parts else "''"

    fore = words(names.forenames)
    return f"CASE WHEN {fore} = '' THEN '' ELSE {fore} || '|' || {words(names.surnames)} END"


def _split_batch(con: duckdb.DuckDBPyConnection, members_rows: list, link_rows: list, columns: Sequence[str],
                 settings: ClusteringConfig, duplicate_free: Sequence[str], date_weight: float | None) -> int:
    """``split_cluster`` over one batch of suspicious clusters (their members' and links' rows);
    the parts' new cluster ids go to ``_reassign`` and the cut links to ``_cuts``. Returns how
    many clusters split."""
    members: dict[int, dict[int, Member]] = {}
    for cid, node, source, dates, names, *values in members_rows:
        idents = tuple((c, str(v)) for c, v in zip(columns, values) if v is not None)
        members.setdefault(cid, {})[node] = Member(source, idents, tuple(dates), names)
    edges: dict[int, list[tuple[int, int, float | None]]] = {}
    for cid, a, b, w in link_rows:
        edges.setdefault(cid, []).append((a, b, w))
    checks: dict[str, Any] = {
        "conflict_match_weight": settings.conflict_match_weight, "duplicate_free": duplicate_free,
        "date_conflict_match_weight": date_weight, "one_edit_columns": settings.conflict_one_edit_columns,
        "confirmed_conflict_records": settings.confirmed_conflict_records, "word_columns": settings.conflict_word_columns,
        "column_order": columns,
    }
    reassign: list[tuple[int, int]] = []
    cuts: list[tuple[int, int, str]] = []
    split = 0
    for cid, m in members.items():
        parts = split_cluster(m, edges.get(cid, []), fracture_match_weight=settings.fracture_match_weight, **checks)
        if len(parts) > 1:
            split += 1
            reassign += [(n, p[0]) for p in parts for n in p]
            cuts += cut_reasons(parts, m, edges.get(cid, []), **checks)
    if reassign:
        import pandas as pd

        con.register("_reassign_df", pd.DataFrame(reassign, columns=["node_id", "new_cluster_id"]))
        con.execute("INSERT INTO _reassign SELECT * FROM _reassign_df")
        con.unregister("_reassign_df")
        con.register("_cuts_df", pd.DataFrame(cuts, columns=["node_id_l", "node_id_r", "reason"]))
        con.execute("INSERT INTO _cuts SELECT * FROM _cuts_df")
        con.unregister("_cuts_df")
    return split


def _unwhole_two_confirmed(con: duckdb.DuckDBPyConnection, rows: str, value: str, records: int) -> None:
    """Send to ``split_cluster`` the ``_suspect`` clusters holding two values of ``value`` (over
    ``rows``) each held by at least ``records`` of their records."""
    con.execute(
        f"""UPDATE _suspect SET whole = false WHERE whole AND cluster_id IN (
            SELECT cluster_id FROM (SELECT cluster_id, {value} AS v, count(*) AS n FROM {rows}
                                    WHERE {value} IS NOT NULL GROUP BY ALL HAVING n >= {int(records)})
            GROUP BY cluster_id HAVING count(*) >= 2)"""
    )


def _drop_whole_clusters(con: duckdb.DuckDBPyConnection, columns: Sequence[str], dates_sql: str,
                         conflict_weight: float, date_weight: float | None,
                         confirmed_records: int | None = None, one_edit: Sequence[str] = (),
                         words: Sequence[str] = (), gated_kinds: str = "NULL") -> None:
    """Leave out of ``_suspect`` the clusters ``split_cluster`` certainly keeps whole, so that
    only the others are read into Python (at a million records, about half of them).

    ``whole`` (set by the caller) says no two records of the cluster are of one
    duplicate-free source and at most one strong group (``_core``) holds two records or
    more. Take the parts that links no check applies to make (``_lk_safe``: links at or
    above the conflict weight, and the date weight if dates are checked; deterministic
    links). When at most one of those parts holds values of each conflict column, and
    every two of them that hold dates of birth agree (``dates_agree``), no link is ever
    refused for an identifier conflict or the dates: any two parts Kruskal's order makes
    are unions of them. The strong links then rebuild the strong groups, and when each weak
    link between groups joins a single record to a group (two groups; or one group and
    single records no link joins to each other), the density rule refuses none."""
    # Three strong groups or more: whole only when no link joins two single records (a
    # star), for two of them joined would make a group that the density rule may refuse.
    con.execute(
        """UPDATE _suspect SET whole = false WHERE whole AND NOT few_cores AND cluster_id IN (
            SELECT cc.cluster_id FROM links l
            JOIN _core kl ON kl.node_id = l.node_id_l JOIN _core kr ON kr.node_id = l.node_id_r
            JOIN cc ON cc.node_id = l.node_id_l
            WHERE kl.cluster_id <> kr.cluster_id
              AND kl.cluster_id IN (SELECT cluster_id FROM _core GROUP BY ALL HAVING count(*) = 1)
              AND kr.cluster_id IN (SELECT cluster_id FROM _core GROUP BY ALL HAVING count(*) = 1))"""
    )
    safe = max(conflict_weight, date_weight) if date_weight is not None else conflict_weight
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _lk_whole_nodes AS
        SELECT cc.node_id, cc.cluster_id FROM cc JOIN _suspect s USING (cluster_id) WHERE s.whole"""
    )
    # A gated deterministic link (``gated_kinds``) is safe unless it may not vouch for a
    # conflict (``_vouches``): for each column with two values in its cluster, both its
    # records hold one (and, for a one-edit column outside the word columns, the same one).
    multi = ", ".join(f"coalesce(min(n.{q(c)}) <> max(n.{q(c)}), false) AS {q('multi_' + c)}" for c in columns)
    vouched = " AND ".join(
        f"(NOT m.{q('multi_' + c)} OR (nl.{q(c)} IS NOT NULL AND nr.{q(c)} IS NOT NULL"
        + (f" AND nl.{q(c)} = nr.{q(c)}" if c in one_edit and c not in words else "") + "))"
        for c in columns) or "true"
    ungated = "true" if gated_kinds == "NULL" else f"l.kind NOT IN ({gated_kinds})"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _lk_multi AS SELECT w.cluster_id{', ' + multi if multi else ''}
        FROM _lk_whole_nodes w JOIN nodes n USING (node_id) GROUP BY ALL"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _lk_safe_links AS
        SELECT l.node_id_l, l.node_id_r FROM links l JOIN _lk_whole_nodes w ON w.node_id = l.node_id_l
        JOIN _lk_multi m USING (cluster_id) JOIN nodes nl ON nl.node_id = l.node_id_l JOIN nodes nr ON nr.node_id = l.node_id_r
        WHERE (l.match_weight IS NULL AND ({ungated} OR {vouched})) OR l.match_weight >= {float(safe)}"""
    )
    con.execute("DROP TABLE _lk_multi")
    connected_components(con, edges="_lk_safe_links", out="_lk_safe", nodes="_lk_whole_nodes")
    # Each record's safe part, with its identifiers and dates of birth.
    ids = "".join(f", n.{q(c)}" for c in columns)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _lk_parts AS
        SELECT w.cluster_id, p.cluster_id AS part, {dates_sql} AS dates{ids}
        FROM _lk_whole_nodes w JOIN _lk_safe p USING (node_id) JOIN nodes n USING (node_id)"""
    )
    held = [f"count(DISTINCT part) FILTER (WHERE {q(c)} IS NOT NULL) > 1" for c in columns]
    if confirmed_records is not None:
        # two values of a column each held by enough records: even one safe part may split
        for c in columns:
            _unwhole_two_confirmed(con, "_lk_parts", q(c), confirmed_records)
    if held:
        con.execute(f"UPDATE _suspect SET whole = false WHERE whole AND cluster_id IN "
                    f"(SELECT cluster_id FROM _lk_parts GROUP BY ALL HAVING {' OR '.join(held)})")
    if confirmed_records is not None and date_weight is not None:
        # two dates of birth each held by enough records (agreeing or not): to split_cluster
        _unwhole_two_confirmed(con, "_lk_parts, unnest(dates) AS t(d)", "d", confirmed_records)
    if date_weight is not None:
        # Two parts with dates agree when some pair of their dates does.
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _lk_dated AS
            SELECT DISTINCT cluster_id, part, d FROM _lk_parts, unnest(dates) AS t(d) WHERE d IS NOT NULL"""
        )
        con.execute(
            """UPDATE _suspect SET whole = false WHERE whole AND cluster_id IN (
                SELECT cluster_id FROM (
                    SELECT a.cluster_id, a.part AS pa, b.part AS pb,
                           bool_or(a.d = b.d OR (length(a.d) = 8 AND length(b.d) = 8 AND (
                               damerau_levenshtein(a.d, b.d) <= 1
                               OR (a.d[1:4] = b.d[1:4] AND a.d[5:6] = b.d[7:8] AND a.d[7:8] = b.d[5:6])))) AS agree
                    FROM _lk_dated a JOIN _lk_dated b ON a.cluster_id = b.cluster_id AND a.part < b.part
                    GROUP BY ALL)
                WHERE NOT agree)"""
        )
        con.execute("DROP TABLE _lk_dated")
    for t in ("_lk_parts", "_lk_safe", "_lk_safe_links", "_lk_whole_nodes"):
        con.execute(f"DROP TABLE {t}")
    con.execute("DELETE FROM _suspect WHERE whole")


def cluster(
    con: duckdb.DuckDBPyConnection,
    db_api,
    predictions: str,
    threshold: float,
    deterministic: list[DeterministicLink],
    settings: ClusteringConfig | None = None,
    duplicate_free: Sequence[str] = (),
    after_validity: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> ClusterStats:
    """Links, duplicate-free sources, connected components, cluster validity; ``clusters``.

    ``after_validity(con)`` may change ``cc``, ``links`` and ``cluster_splits`` last
    (clerical decisions: ``linkage.decisions.apply_decisions``)."""
    made = make_clusters(con, db_api, predictions, threshold, deterministic, settings, duplicate_free, after_validity)
    return replace(summarise_clusters(con), **made)


def make_clusters(
    con: duckdb.DuckDBPyConnection,
    db_api,
    predictions: str,
    threshold: float,
    deterministic: list[DeterministicLink],
    settings: ClusteringConfig | None = None,
    duplicate_free: Sequence[str] = (),
    after_validity: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    attach_only: str | None = None,
) -> dict[str, Any]:
    """:func:`cluster` without ``clusters`` and its summary: ``cc``, ``links`` and
    ``cluster_splits``; returns what clustering itself counted (``ClusterStats``' fields
    from ``oversized_deterministic_groups`` on). An incremental run clusters some
    components so and summarises them with the people it carries; ``attach_only`` (a
    table of ``node_id``) are the only records ``attach_unlinked`` may place (the others
    are context: read as candidates and rivals, their own clusters discarded)."""
    settings = settings or ClusteringConfig()
    oversized, gated = build_links(con, predictions, threshold, deterministic)
    con.execute("CREATE OR REPLACE TABLE cluster_splits AS SELECT *, '' AS reason FROM links WHERE false")
    keep_best_links_into(con, list(duplicate_free))
    strong_components(con, db_api, settings)
    attach_unlinked(con, predictions, threshold, settings, only=attach_only)
    drop_ambiguous_weak_links(con, predictions, settings)
    drop_links_against_person(con, threshold, settings)
    components_from_core(con, db_api, settings)
    checked, split = check_clusters(con, settings, list(duplicate_free),
                                    gated=[d.name for d in deterministic if d.unless_disagree])
    con.execute("DROP TABLE _core")
    if after_validity is not None:
        after_validity(con)
    cut = dict(con.execute("SELECT reason, count(*) FROM cluster_splits GROUP BY ALL ORDER BY 1").fetchall())
    return {"oversized_deterministic_groups": oversized, "gated_deterministic_pairs": gated,
            "cut_links": {k: int(v) for k, v in cut.items()}, "clusters_checked": checked, "clusters_split": split}
