"""Clustering: the validity decision on tiny hand-made graphs, and the DuckDB stage around it."""

from __future__ import annotations

import math
import random

import duckdb
import pytest

from linkage.cluster import (
    REASON_DATES,
    REASON_DUPLICATE_FREE,
    REASON_NOT_BEST,
    REASON_WEAK,
    Member,
    cluster,
    cut_reasons,
    dates_agree,
    names_agree,
    split_cluster,
    with_person_evidence,
)
from linkage.config import ClusteringConfig, ComparisonConfig, ConfirmedForenames, DeterministicLink
from linkage.identity import assign_person_keys
from linkage.model import make_db_api

SETTINGS = {"fracture_match_weight": 10.0, "conflict_match_weight": 20.0}


def _members(n: int, source: str = "s", **identifiers: dict[int, str]) -> dict[int, Member]:
    return {
        i: Member(source, tuple((col, values[i]) for col, values in identifiers.items() if i in values))
        for i in range(1, n + 1)
    }


# --- split_cluster: the pure decision -------------------------------------------------------


@pytest.mark.parametrize(
    "case, links, parts",
    [
        # Two people, each holding together strongly, chained through one weak link.
        ("chain through one weak link", [(1, 2, 20), (2, 3, 18), (4, 5, 22), (3, 4, 6)], [[1, 2, 3], [4, 5]]),
        # A strong triangle: valid.
        ("strong cluster", [(1, 2, 20), (2, 3, 18), (1, 3, 15)], [[1, 2, 3]]),
        # A weak link attaching one record (a Libra record without a date of birth): valid.
        ("weak link attaches one record", [(1, 2, 20), (2, 3, 18), (3, 4, 6)], [[1, 2, 3, 4]]),
        # Two groups joined by weak links covering most of their pairs corroborate each other.
        ("dense weak links", [(1, 2, 20), (3, 4, 20), (1, 3, 6), (1, 4, 6), (2, 3, 7)], [[1, 2, 3, 4]]),
        # A record weakly linked to two people joins the one it is closer to, not both.
        ("one record, two people", [(1, 2, 20), (4, 5, 20), (3, 2, 8), (3, 4, 6)], [[1, 2, 3], [4, 5]]),
        # A chain through a link at the fracture weight is not weak.
        ("link at the fracture weight", [(1, 2, 20), (3, 4, 20), (2, 3, 10)], [[1, 2, 3, 4]]),
    ],
)
def test_split_cluster_hand_made(case, links, parts):
    nodes = {n for a, b, _ in links for n in (a, b)}
    assert split_cluster(_members(max(nodes)), links, **SETTINGS) == parts, case


def test_weak_chain_cut_is_recorded_with_its_reason():
    members, links = _members(5), [(1, 2, 20), (2, 3, 18), (4, 5, 22), (3, 4, 6)]
    parts = split_cluster(members, links, **SETTINGS)
    assert cut_reasons(parts, members, links, conflict_match_weight=20) == [(3, 4, REASON_WEAK)]


def test_two_pnc_ids_need_strong_evidence():
    # 1, 2 hold PNC X; 3, 4 hold PNC Y.
    members = _members(4, pnc_key={1: "X", 2: "X", 3: "Y", 4: "Y"})
    weak = [(1, 2, 25), (3, 4, 25), (2, 3, 15)]
    assert split_cluster(members, weak, **SETTINGS) == [[1, 2], [3, 4]]
    assert cut_reasons([[1, 2], [3, 4]], members, weak, conflict_match_weight=20) == [
        (2, 3, "different pnc_key values")
    ]
    strong = [(1, 2, 25), (3, 4, 25), (2, 3, 30)]
    assert split_cluster(members, strong, **SETTINGS) == [[1, 2, 3, 4]]


def test_two_pnc_ids_each_on_several_records_are_two_people_whatever_links_them():
    """Two people of one name and date of birth, each with their own PNC ID on two records,
    joined by the deterministic name-and-date link (None): two people. One record keyed
    with another PNC ID (on no other record) is no such conflict."""
    members = _members(4, pnc_key={1: "X", 2: "X", 3: "Y", 4: "Y"})
    links = [(1, 2, None), (3, 4, None), (1, 3, None), (2, 4, None), (2, 3, 40.0)]
    assert split_cluster(members, links, **SETTINGS) == [[1, 2, 3, 4]]  # off by default
    parts = split_cluster(members, links, **SETTINGS, confirmed_conflict_records=2)
    assert parts == [[1, 2], [3, 4]]
    reason = "different pnc_key values, each held by more than one record"
    assert cut_reasons(parts, members, links, conflict_match_weight=20, confirmed_conflict_records=2) == [
        (1, 3, reason), (2, 4, reason), (2, 3, reason)]
    keyed_wrong = _members(4, pnc_key={1: "X", 2: "X", 3: "X", 4: "Y"})
    assert split_cluster(keyed_wrong, links, **SETTINGS, confirmed_conflict_records=2) == [[1, 2, 3, 4]]


def test_middle_names_given_in_part_are_one_person_and_none_in_common_two():
    """Middle names as a conflict column with word semantics: "ANN DONNA" and "DONNA" (or
    "DONNS", one keying error out) are one person's; "VICTOR" and "COLIN GARY", joined by
    a link under the conflict weight (one name and date of birth, nothing else), are two."""
    words = {"one_edit_columns": ["middle_names"], "word_columns": ["middle_names"]}
    links = [(1, 2, 25.0), (3, 4, 25.0), (2, 3, 15.0)]
    in_part = _members(4, middle_names={1: "ANN DONNA", 2: "DONNA", 3: "DONNS", 4: "DONNS"})
    assert split_cluster(in_part, links, **SETTINGS, **words) == [[1, 2, 3, 4]]
    assert split_cluster(in_part, links, **SETTINGS) == [[1, 2], [3, 4]]  # as identifiers: split
    apart = _members(4, middle_names={1: "COLIN GARY", 2: "COLIN", 3: "VICTOR", 4: "VICTOR"})
    parts = split_cluster(apart, links, **SETTINGS, **words)
    assert parts == [[1, 2], [3, 4]]
    assert cut_reasons(parts, apart, links, conflict_match_weight=20, **words) == [
        (2, 3, "different middle_names values")]
    # A middle initial agrees with every name it begins; two different initials do not.
    initial = _members(4, middle_names={1: "JAMES ROBERT", 2: "JAMES", 3: "R", 4: "R"})
    assert split_cluster(initial, links, **SETTINGS, **words) == [[1, 2, 3, 4]]
    initials = _members(4, middle_names={1: "J", 2: "J", 3: "K", 4: "K"})
    assert split_cluster(initials, links, **SETTINGS, **words) == [[1, 2], [3, 4]]


def test_word_columns_must_be_conflict_columns():
    with pytest.raises(ValueError, match=r"conflict_word_columns \['middle_names'\] must be among conflict_columns"):
        ClusteringConfig(conflict_word_columns=["middle_names"])


def test_two_dates_of_birth_each_on_several_records_are_two_people_whatever_links_them():
    """Father and son of one name, each date on two records, joined by a strong link (30
    bits, over the date weight): two people once dates are confirmed. A date mistyped on
    one record (held by no other) is no such conflict."""
    dates = {1: "19600312", 2: "19600312", 3: "19850704", 4: "19850704"}
    members = {n: Member("s", (), (d,)) for n, d in dates.items()}
    links = [(1, 2, 25.0), (3, 4, 25.0), (2, 3, 30.0)]
    settings = {**SETTINGS, "date_conflict_match_weight": 12.0}
    assert split_cluster(members, links, **settings) == [[1, 2, 3, 4]]
    parts = split_cluster(members, links, **settings, confirmed_conflict_records=2)
    assert parts == [[1, 2], [3, 4]]
    assert cut_reasons(parts, members, links, conflict_match_weight=20, date_conflict_match_weight=12.0,
                       confirmed_conflict_records=2) == [(2, 3, "different dates of birth, each held by more than one record")]
    mistyped = {**members, 4: Member("s", (), ("19850705",))}
    assert split_cluster(mistyped, links, **settings, confirmed_conflict_records=2) == [[1, 2, 3, 4]]


def _named(names: dict[int, str], pnc: dict[int, str] | None = None) -> dict[int, Member]:
    return {n: Member("s", (("pnc_key", pnc[n]),) if pnc and n in pnc else (), (), v) for n, v in names.items()}


def test_twins_each_forename_on_several_records_are_two_people():
    """Twins: one surname, date of birth and address, scored 18 bits on those (twice the
    fracture weight). Each forename on two records: two people, once names are checked."""
    links = [(1, 2, 25.0), (3, 4, 25.0), (2, 3, 18.0), (1, 4, 18.0)]
    twins = _named({1: "ETHAN|PRESGATE", 2: "ETHAN|PRESGATE", 3: "JACK|PRESGATE", 4: "JACK|PRESGATE",
                    5: "CHRISTOPHER JACK|PRESGATE"})
    links = [*links, (4, 5, 25.0)]
    assert split_cluster(twins, links, **SETTINGS) == [[1, 2, 3, 4, 5]]  # off without confirmed records
    parts = split_cluster(twins, links, **SETTINGS, confirmed_conflict_records=2)
    assert parts == [[3, 4, 5], [1, 2]]
    assert cut_reasons(parts, twins, links, conflict_match_weight=20, confirmed_conflict_records=2) == [
        (2, 3, "different forenames, each held by more than one record"),
        (1, 4, "different forenames, each held by more than one record")]


@pytest.mark.parametrize("case, names, pnc", [
    ("a forename mistyped on one record", {1: "ETHAN|P", 2: "ETHAN|P", 3: "JACK|P", 4: "ETHAN|P"}, None),
    ("one keying error", {1: "DARREN|P", 2: "DARREN|P", 3: "DARRREN|P", 4: "DARRREN|P"}, None),
    ("a short form", {1: "MO|KHAN", 2: "MO|KHAN", 3: "MOHAMMED MUHAMMAD|KHAN", 4: "MOHAMMED MUHAMMAD|KHAN"}, None),
    ("the middle name as forename", {1: "MATTHEW PAUL|S", 2: "MATTHEW PAUL|S", 3: "MATTHEW|S", 4: "MATTHEW|S"}, None),
    ("forename and surname swapped", {1: "ALI|HUSSAIN", 2: "ALI|HUSSAIN", 3: "HUSSAIN|ALI", 4: "HUSSAIN|ALI"}, None),
    ("one PNC ID, two forenames", {1: "KANE|BIRD", 2: "KANE|BIRD", 3: "MICHAEL|BIRD", 4: "MICHAEL|BIRD"},
     {1: "X", 3: "X"}),
])
def test_one_person_known_by_two_forenames_is_not_parted(case, names, pnc):
    links = [(1, 2, 25.0), (3, 4, 25.0), (2, 3, 18.0)]
    assert split_cluster(_named(names, pnc), links, **SETTINGS, confirmed_conflict_records=2) == [[1, 2, 3, 4]], case


def test_names_agree():
    assert not names_agree({"ETHAN|PRESGATE"}, {"JACK|PRESGATE"})
    assert names_agree({"J|X"}, {"JACK|X"}) and names_agree(set(), {"JACK|X"}) and names_agree({"|X"}, {"JACK|X"})
    assert not names_agree({"LUKE|CARR"}, {"LUCAS|CARR"})  # two edits: no
    # A surname both twins hold says nothing of their forenames, whatever it begins with.
    assert not names_agree({"JOHN|JOHNSON"}, {"MARK|JOHNSON"}) and not names_agree({"ROBERT|ROBERTS"}, {"PAUL|ROBERTS"})
    assert names_agree({"ALI|HUSSAIN"}, {"HUSAIN|ALI"}) and names_agree({"ALII|HUSSAIN"}, {"HUSSAIN|ALI"})  # swapped


def test_stage_parts_twins_joined_by_strong_links():
    """Twins joined by links over the fracture weight make one strong group: only the
    names check sends the cluster to split_cluster."""
    recs = [(1, "s", "r1", "ETHAN", "PRESGATE", None, "P1"), (2, "s", "r2", "ETHAN", "PRESGATE", None, None),
            (3, "s", "r3", "JACK", "PRESGATE", None, None), (4, "s", "r4", "JACK", "PRESGATE", None, None)]
    preds = [(1, 2, 25.0), (3, 4, 25.0), (2, 3, 18.0), (1, 4, 18.0)]
    names = ConfirmedForenames(forenames=["first_name"], surnames=["surname"])
    _, stats, groups = _stage(recs, preds, settings=ClusteringConfig(**SETTINGS, confirmed_conflict_records=2))
    assert groups == [["r1", "r2", "r3", "r4"]]
    settings = ClusteringConfig(**SETTINGS, confirmed_conflict_records=2, confirmed_forenames=names)
    _, stats, groups = _stage(recs, preds, settings=settings)
    assert groups == [["r1", "r2"], ["r3", "r4"]]
    assert stats.cut_links == {"different forenames, each held by more than one record": 2}


def test_confirmed_forenames_needs_confirmed_records():
    with pytest.raises(ValueError, match="confirmed_forenames needs confirmed_conflict_records"):
        ClusteringConfig(confirmed_forenames={"forenames": ["first_name"]})


def test_a_gated_deterministic_link_vouches_only_for_its_own_records():
    """Two people of one name and date of birth, their middle names apart, joined by the
    gated name-and-date link (math.inf) through a record without middle names (3): the
    link does not join the two. Between the two middle names' own records it does (the
    rule's veto is the rule's to make), as it does when the parts share a value; an
    ungated rule's link (None) joins whatever the parts hold."""
    inf = float("inf")
    words = {"one_edit_columns": ["middle_names"], "word_columns": ["middle_names"]}
    members = _members(4, middle_names={1: "BRYAN", 2: "BRYAN", 4: "NICOLA"})
    through = [(1, 2, 25.0), (2, 3, inf), (3, 4, inf)]
    parts = split_cluster(members, through, **SETTINGS, **words)
    assert parts == [[1, 2, 3], [4]]
    assert cut_reasons(parts, members, through, conflict_match_weight=20, **words) == [
        (3, 4, "different middle_names values")]
    assert split_cluster(members, [(1, 2, 25.0), (2, 3, inf), (2, 4, inf)], **SETTINGS, **words) == [[1, 2, 3, 4]]
    assert split_cluster(members, [(1, 2, 25.0), (2, 3, None), (3, 4, None)], **SETTINGS, **words) == [[1, 2, 3, 4]]
    shared = _members(4, pnc_key={1: "X", 2: "X", 3: "X", 4: "Y"})
    assert split_cluster(shared, [(1, 2, 25.0), (3, 4, 25.0), (1, 3, inf)], **SETTINGS) == [[1, 2, 3, 4]]


def test_a_gated_link_vouches_for_every_conflict_or_none():
    """Its own records holding one conflict (two PNC IDs: one of them keyed in error) do not
    let a gated link carry another its records do not hold (middle names apart through a
    record without one): 2 and 3 share a PNC ID, 1 and 2 hold two, and 1 and 3 are two people.
    Adding the PNC IDs, more evidence of two people, must not join what was parted without them."""
    inf = float("inf")
    words = {"one_edit_columns": ["middle_names"], "word_columns": ["middle_names"]}
    chain = [(1, 2, inf), (2, 3, inf)]
    without = _members(3, middle_names={1: "NICOLA", 3: "BRYAN"})
    with_pnc = _members(3, pnc_key={1: "P1", 2: "P2", 3: "P2"}, middle_names={1: "NICOLA", 3: "BRYAN"})
    assert split_cluster(without, chain, **SETTINGS, **words) == [[1, 2], [3]]
    parts = split_cluster(with_pnc, chain, **SETTINGS, **words)
    assert parts == [[1, 2], [3]]
    assert cut_reasons(parts, with_pnc, chain, conflict_match_weight=20, **words) == [
        (2, 3, "different middle_names values")]


def test_stage_parts_two_people_joined_through_a_record_without_a_pnc_id():
    """At the stage, a gated rule (same surname, unless the forenames disagree): records 1
    and 2 hold one PNC ID, 4 another, 3 none; 1, 2 and 4 give different forenames, so the
    rule links 3 to each of them and no two of them. Its links hold the cluster together, so
    only a prefilter that does not take them as safe sends it to split_cluster."""
    recs = [(1, "s", "r1", "ANN", "B", None, PNC), (2, "s", "r2", "ANNE", "B", None, PNC),
            (3, "s", "r3", None, "B", None, None), (4, "s", "r4", "JO", "B", None, "2003/0000001L")]
    gated = [DeterministicLink(name="surname", columns=["surname"], unless_disagree=["first_name"])]
    _, stats, groups = _stage(recs, [(1, 2, 25.0)], gated)
    assert groups == [["r1", "r2", "r3"], ["r4"]]
    assert stats.cut_links == {"different pnc_key values": 1}
    ungated = [DeterministicLink(name="surname", columns=["surname"])]
    _, stats, groups = _stage(recs, [(1, 2, 25.0)], ungated)
    assert groups == [["r1", "r2", "r3", "r4"]]


def test_a_scored_link_of_infinite_weight_is_a_scored_link_not_a_gated_one():
    """A model level with u = 0 scores a pair at +inf. That is the strongest scored link, as
    a weight over ``conflict_match_weight`` is: it joins whatever the parts hold, and must
    not be read as a gated deterministic link (which vouches only for its own records'
    conflicts). 1 and 2 are linked by the gated rule; 2 and 3, another PNC ID on 3, by the
    model alone."""
    recs = [(1, "s", "r1", "ANN", "B", None, PNC), (2, "s", "r2", "ANN", "B", None, None),
            (3, "s", "r3", "JO", "C", None, "2003/0000001L")]
    gated = [DeterministicLink(name="surname", columns=["surname"], unless_disagree=["first_name"])]
    finite = _stage(recs, [(2, 3, 25.0)], gated)[2]
    assert finite == [["r1", "r2", "r3"]]
    assert _stage(recs, [(2, 3, math.inf)], gated)[2] == finite


def test_a_record_without_a_pnc_id_is_no_conflict():
    members = _members(3, pnc_key={1: "X", 2: "X"})
    assert split_cluster(members, [(1, 2, 25), (2, 3, 12)], **SETTINGS) == [[1, 2, 3]]


def test_duplicate_free_source_keeps_the_best_link():
    # 1 and 2 are records of the duplicate-free source "pnc"; 3 links to both.
    members = {1: Member("pnc"), 2: Member("pnc"), 3: Member("prison")}
    links = [(1, 3, 12), (2, 3, 16)]
    parts = split_cluster(members, links, **SETTINGS, duplicate_free=["pnc"])
    assert parts == [[2, 3], [1]]
    assert cut_reasons(parts, members, links, conflict_match_weight=20, duplicate_free=["pnc"]) == [
        (1, 3, REASON_DUPLICATE_FREE)
    ]
    # Not duplicate-free: one person.
    assert split_cluster(members, links, **SETTINGS) == [[1, 2, 3]]


@pytest.mark.parametrize("a, b, agree", [
    (["19850312"], ["19850312"], True),
    (["19850312"], ["19850313"], True),  # one digit
    (["19850312"], ["19580312"], True),  # two adjacent digits swapped
    (["19850312"], ["19851203"], True),  # day and month swapped
    (["19850312"], ["19600312"], False),  # a father and son
    (["19850312"], ["19860412"], False),  # two digits
    (["19850312", "19600101"], ["19600101"], True),  # an alias date in common
    ([], ["19600312"], True),  # no date: nothing disagrees
])
def test_dates_agree(a, b, agree):
    assert dates_agree(a, b) is agree and dates_agree(b, a) is agree


def test_father_and_son_chained_through_a_record_without_a_date_are_split():
    # 1, 2 born 1960; 4, 5 born 1985; 3 (a Libra record without a date of birth) links to both.
    dates = {1: ("19600312",), 2: ("19600312",), 4: ("19850907",), 5: ("19850907",)}
    members = {n: Member("s", (), dates.get(n, ())) for n in range(1, 6)}
    links = [(1, 2, 25), (4, 5, 25), (3, 2, 9), (3, 4, 9)]
    # Both links at the fracture weight or above: the weak-link rule lets the chain stand.
    settings = {"fracture_match_weight": 8.0, "conflict_match_weight": 20.0}
    assert split_cluster(members, links, **settings) == [[1, 2, 3, 4, 5]]
    parts = split_cluster(members, links, **settings, date_conflict_match_weight=12)
    assert parts == [[1, 2, 3], [4, 5]]
    assert cut_reasons(parts, members, links, conflict_match_weight=20, date_conflict_match_weight=12) == [
        (3, 4, REASON_DATES)
    ]
    # Links that strong join them whatever the dates say (a date keyed wrongly).
    strong = links[:2] + [(3, 2, 14), (3, 4, 14)]
    assert split_cluster(members, strong, **settings, date_conflict_match_weight=12) == [[1, 2, 3, 4, 5]]
    # Day and month swapped: one person.
    swapped = {**members, 4: Member("s", (), ("19601203",)), 5: Member("s", (), ("19601203",))}
    assert split_cluster(swapped, links, **settings, date_conflict_match_weight=12) == [[1, 2, 3, 4, 5]]


def _components(nodes, links):
    """Oracle: connected components by breadth-first search."""
    adjacency = {n: set() for n in nodes}
    for a, b, _ in links:
        adjacency[a].add(b)
        adjacency[b].add(a)
    seen, out = set(), []
    for n in sorted(nodes):
        if n in seen:
            continue
        part, todo = [], [n]
        seen.add(n)
        while todo:
            x = todo.pop()
            part.append(x)
            for y in adjacency[x] - seen:
                seen.add(y)
                todo.append(y)
        out.append(sorted(part))
    return sorted(out, key=lambda p: (-len(p), p[0]))


@pytest.mark.parametrize("seed", range(20))
def test_without_rules_split_cluster_is_connected_components(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 30)
    links = [(a, b, rng.uniform(0, 30)) for a in range(1, n + 1) for b in range(a + 1, n + 1) if rng.random() < 0.1]
    no_rules = {"fracture_match_weight": float("-inf"), "conflict_match_weight": float("-inf")}
    assert split_cluster(_members(n), links, **no_rules) == _components(range(1, n + 1), links)


@pytest.mark.parametrize("seed", range(20))
def test_parts_never_join_what_links_do_not(seed):
    # Every part is connected by the links kept inside it, and the parts cover the cluster.
    rng = random.Random(seed)
    n = rng.randint(2, 25)
    pnc = {i: rng.choice("XYZ") for i in range(1, n + 1) if rng.random() < 0.3}
    links = [(a, b, rng.uniform(0, 30)) for a in range(1, n + 1) for b in range(a + 1, n + 1) if rng.random() < 0.15]
    parts = split_cluster(_members(n, pnc_key=pnc), links, **SETTINGS)
    assert sorted(x for p in parts for x in p) == list(range(1, n + 1))
    for p in parts:
        inside = [link for link in links if link[0] in p and link[1] in p]
        assert _components(p, inside) == [sorted(p)]
        assert len({pnc[i] for i in p if i in pnc}) <= 1 or any(w >= 20 for *_, w in inside)


# --- the DuckDB stage ---------------------------------------------------------------------------


def _stage(records, predictions, deterministic=(), duplicate_free=(), settings=None):
    """Run ``cluster`` over hand-made records (node_id, source, record_id, first, surname, dob, pnc)."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE nodes (node_id BIGINT, source_dataset VARCHAR, record_id VARCHAR, first_name VARCHAR, "
        "surname VARCHAR, date_of_birth DATE, pnc_key VARCHAR, cro_number VARCHAR)"
    )
    con.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, NULL)", records)
    con.execute(
        "CREATE TABLE predictions (node_id_l BIGINT, node_id_r BIGINT, match_weight DOUBLE, match_probability DOUBLE)"
    )
    if predictions:
        con.executemany(
            "INSERT INTO predictions VALUES (?, ?, ?, ?)",
            [(a, b, w, 1.0 if w == math.inf else 2.0 ** w / (1 + 2.0 ** w)) for a, b, w in predictions],
        )
    stats = cluster(con, make_db_api(con), "predictions", 0.95, list(deterministic),
                    settings or ClusteringConfig(**SETTINGS), list(duplicate_free))
    groups = con.execute(
        "SELECT list(record_id ORDER BY record_id) FROM clusters GROUP BY cluster_id ORDER BY 1"
    ).fetchall()
    return con, stats, sorted(g for (g,) in groups)


def test_stage_splits_a_weak_chain_and_records_it():
    recs = [(i, "s", f"r{i}", None, None, None, None) for i in range(1, 6)]
    con, stats, groups = _stage(recs, [(1, 2, 20), (2, 3, 18), (4, 5, 22), (3, 4, 6)])
    assert groups == [["r1", "r2", "r3"], ["r4", "r5"]]
    assert stats.clusters_split == 1 and stats.cut_links == {REASON_WEAK: 1}
    assert con.execute("SELECT node_id_l, node_id_r, reason FROM cluster_splits").fetchall() == [(3, 4, REASON_WEAK)]
    # The kept links are the clusters' links: none crosses two clusters.
    assert con.execute("SELECT count(*) FROM links").fetchall()[0][0] == 3


def test_valid_cluster_is_not_split():
    recs = [(i, "s", f"r{i}", None, None, None, None) for i in range(1, 5)]
    _, stats, groups = _stage(recs, [(1, 2, 20), (2, 3, 18), (3, 4, 6)])
    assert groups == [["r1", "r2", "r3", "r4"]] and stats.clusters_split == 0


PNC = "2002/0073319Z"


def test_another_persons_pnc_id_is_not_linked_on_the_pnc_alone():
    recs = [
        (1, "pnc", "p1", "ARTHUR", "MORGAN", "1980-02-03", PNC),
        (2, "prison", "b1", "ARTHUR", "MORGAN", "1980-02-03", PNC),
        (3, "libra", "l1", "ARTHUR", "MORGAN", None, PNC),  # no date of birth: nothing disagrees
        (4, "crest", "c1", "JOHN", "MARSTON", "1975-07-30", PNC),  # another person keyed the PNC
    ]
    rule = DeterministicLink(name="same valid PNC ID", columns=["pnc_key"],
                             unless_disagree=["first_name", "surname", "date_of_birth"])
    _, stats, groups = _stage(recs, [], deterministic=[rule])
    assert groups == [["b1", "l1", "p1"], ["c1"]]
    assert stats.gated_deterministic_pairs == {"same valid PNC ID": 3}
    # Ungated, the PNC links all four.
    ungated = DeterministicLink(name="same valid PNC ID", columns=["pnc_key"])
    _, _, groups = _stage(recs, [], deterministic=[ungated])
    assert groups == [["b1", "c1", "l1", "p1"]]


def test_two_pnc_ids_in_one_chain_are_split_in_the_stage():
    recs = [
        (1, "pnc", "p1", None, None, None, PNC),
        (2, "prison", "b1", None, None, None, None),
        (3, "pnc", "p2", None, None, None, "1981/0000034U"),
    ]
    _, stats, groups = _stage(recs, [(1, 2, 25), (2, 3, 15)])
    assert groups == [["b1", "p1"], ["p2"]]
    assert stats.cut_links == {"different pnc_key values": 1}


def test_two_people_of_one_name_and_date_with_their_own_pnc_ids_are_split_in_the_stage():
    other = "1981/0000034U"
    recs = [(1, "pnc", "p1", "ARTHUR", "MORGAN", "1980-02-03", PNC), (2, "prison", "b1", "ARTHUR", "MORGAN", "1980-02-03", PNC),
            (3, "pnc", "p2", "ARTHUR", "MORGAN", "1980-02-03", other), (4, "prison", "b2", "ARTHUR", "MORGAN", "1980-02-03", other)]
    rules = [DeterministicLink(name="same name and date of birth", columns=["first_name", "surname", "date_of_birth"]),
             DeterministicLink(name="same valid PNC ID", columns=["pnc_key"])]
    _, _, groups = _stage(recs, [], deterministic=rules)
    assert groups == [["b1", "b2", "p1", "p2"]]
    settings = ClusteringConfig(**SETTINGS, confirmed_conflict_records=2)
    _, stats, groups = _stage(recs, [], deterministic=rules, settings=settings)
    assert groups == [["b1", "p1"], ["b2", "p2"]]
    assert list(stats.cut_links) == ["different pnc_key values, each held by more than one record"]


def test_duplicate_free_source_at_most_one_record_per_person():
    recs = [
        (1, "pnc", "p1", None, None, None, None),
        (2, "pnc", "p2", None, None, None, None),
        (3, "prison", "b1", None, None, None, None),
        (4, "prison", "b2", None, None, None, None),
        (5, "pnc", "p3", None, None, None, None),
    ]
    # b1 links to p1 and p2 (p2 better); b2 links to p3 and to b1 strongly; p1-p2 linked directly.
    preds = [(1, 3, 12), (2, 3, 16), (4, 5, 14), (3, 4, 30), (1, 2, 20)]
    con, stats, groups = _stage(recs, preds, duplicate_free=["pnc"])
    for g in groups:
        assert sum(r.startswith("p") for r in g) <= 1, groups
    # Set-based: p1-b1 is not b1's best link into pnc, p1-p2 joins two pnc records. b1-b2
    # then chains p2 and p3: the stronger side keeps b2.
    assert groups == [["b1", "b2", "p2"], ["p1"], ["p3"]]
    reasons = dict(((a, b), r) for a, b, r in con.execute("SELECT node_id_l, node_id_r, reason FROM cluster_splits").fetchall())
    assert reasons[(1, 3)] == REASON_NOT_BEST and reasons[(1, 2)] == REASON_DUPLICATE_FREE
    assert reasons[(4, 5)] == REASON_DUPLICATE_FREE
    # Without the setting, one person.
    _, _, groups = _stage(recs, preds)
    assert groups == [["b1", "b2", "p1", "p2", "p3"]]


def test_person_ids_stay_stable_through_a_split():
    recs = [(i, "s", f"r{i}", None, None, None, None) for i in range(1, 6)]
    chain = [(1, 2, 20), (2, 3, 18), (4, 5, 22), (3, 4, 6)]
    # A first run that trusted the weak link: one person.
    con, _, groups = _stage(recs, chain, settings=ClusteringConfig(fracture_match_weight=0))
    assert groups == [["r1", "r2", "r3", "r4", "r5"]]
    assign_person_keys(con, None, 1)
    con.execute("CREATE TABLE prev AS SELECT c.source_dataset, c.record_id, k.person_key FROM clusters c "
                "JOIN person_keys k USING (cluster_id)")
    (first_key,) = {k for (k,) in con.execute("SELECT person_key FROM prev").fetchall()}
    # The next run splits it: the larger part keeps the person id.
    con2, _, groups = _stage(recs, chain)
    assert groups == [["r1", "r2", "r3"], ["r4", "r5"]]
    stats = _keys_after(con2, con.execute("SELECT * FROM prev").fetchall())
    assert stats["r1"] == stats["r2"] == stats["r3"] == first_key
    assert stats["r4"] == stats["r5"] != first_key


def _keys_after(con, previous_rows) -> dict[str, str]:
    con.execute("CREATE OR REPLACE TABLE prev (source_dataset VARCHAR, record_id VARCHAR, person_key VARCHAR)")
    con.executemany("INSERT INTO prev VALUES (?, ?, ?)", previous_rows)
    assign_person_keys(con, "prev", 2)
    return dict(con.execute(
        "SELECT c.record_id, k.person_key FROM clusters c JOIN person_keys k USING (cluster_id)"
    ).fetchall())


@pytest.mark.parametrize("rival_weight, rival_dob, groups", [
    # x (5) scores about as well against a second person (3, 4) as against the first (1, 2).
    (4.0, "1985-05-05", [["r1", "r2"], ["r3", "r4"], ["r5"]]),
    # The second person is far behind: x joins the first.
    (0.5, "1985-05-05", [["r1", "r2", "r5"], ["r3", "r4"]]),
    # Nothing tells the second person apart from the first (no date of birth, no PNC ID):
    # they may be one person, and scoring alike against both is no ambiguity.
    (4.0, None, [["r1", "r2", "r5"], ["r3", "r4"]]),
])
def test_ambiguous_weak_link_is_dropped(rival_weight, rival_dob, groups):
    dobs = {1: "1990-01-01", 2: "1990-01-01", 3: rival_dob, 4: rival_dob, 5: None}
    recs = [(i, "s", f"r{i}", None, None, dobs[i], None) for i in range(1, 6)]
    preds = [(1, 2, 25), (3, 4, 25), (5, 1, 6), (5, 3, rival_weight)]
    con, stats, got = _stage(recs, preds)
    assert got == groups
    if len(groups) == 3:
        assert stats.cut_links == {"ambiguous weak link": 1}
    else:
        assert stats.cut_links == {}
    # Off: the weak link stands.
    _, _, got = _stage(recs, preds, settings=ClusteringConfig(**SETTINGS, ambiguity_margin=None))
    assert got == [["r1", "r2", "r5"], ["r3", "r4"]]


def test_a_weak_link_also_made_deterministically_is_kept():
    recs = [
        (1, "pnc", "p1", "ANN", "LEE", "1990-01-01", None),
        (2, "pnc", "p2", "ANN", "LEE", None, None),
        (3, "libra", "l1", "ANN", "LEE", "1990-01-01", None),
        (4, "libra", "l2", "ANN", "LEE", "1990-01-01", None),
        (5, "crest", "c1", "ANN", "LEE", None, None),
    ]
    # 1, 3 and 4 agree on name and date of birth (deterministic links 1-3 and 1-4); 1-3 is
    # also a weak model link, and 3 scores about as well against 5, another person.
    preds = [(1, 2, 25), (1, 3, 5), (3, 5, 4)]
    rule = DeterministicLink(name="same name and date of birth", columns=["first_name", "surname", "date_of_birth"])
    con, _, groups = _stage(recs, preds, deterministic=[rule])
    assert con.execute("SELECT count(*) FROM cluster_splits").fetchall()[0][0] == 0
    assert groups == [["c1"], ["l1", "l2", "p1", "p2"]]


def test_father_and_son_are_split_in_the_stage():
    recs = [
        (1, "pnc", "p1", "JOHN", "SMITH", "1960-03-12", None),
        (2, "prison", "b1", "JOHN", "SMITH", "1960-03-12", None),
        (3, "libra", "l1", "JOHN", "SMITH", None, None),
        (4, "pnc", "p2", "JOHN", "SMITH", "1985-09-07", None),
        (5, "prison", "b2", "JOHN", "SMITH", "1985-09-07", None),
    ]
    preds = [(1, 2, 25), (4, 5, 25), (3, 2, 9), (3, 4, 9)]
    settings = {"fracture_match_weight": 8.0, "conflict_match_weight": 20.0, "ambiguity_margin": None}
    _, _, groups = _stage(recs, preds, settings=ClusteringConfig(**settings))
    assert groups == [["b1", "b2", "l1", "p1", "p2"]]
    _, stats, groups = _stage(recs, preds, settings=ClusteringConfig(**settings, date_conflict_match_weight=12))
    assert groups == [["b1", "l1", "p1"], ["b2", "p2"]]
    assert stats.cut_links == {REASON_DATES: 1}


@pytest.mark.parametrize("postcode, joins", [
    ("AB1 2CD", False),  # the person's court record gives another postcode
    ("XY9 8ZW", True),   # one of the person's records gives this postcode
    (None, True),        # nothing to compare
])
def test_a_weak_link_is_weighed_against_the_persons_postcodes(postcode, joins):
    """x (a court record, no date of birth) links weakly to p1, which has no postcode; p1's
    person (p1, c1) holds postcode XY9 8ZW. Another postcode costs the link the model's
    weight for postcodes that differ and leaves it below the threshold."""
    con = duckdb.connect()
    con.execute("CREATE TABLE nodes (node_id BIGINT, source_dataset VARCHAR, record_id VARCHAR, postcode VARCHAR)")
    con.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?)",
                    [(1, "pnc", "p1", None), (2, "court", "c1", "XY9 8ZW"), (3, "court", "x", postcode)])
    con.execute("CREATE TABLE predictions (node_id_l BIGINT, node_id_r BIGINT, match_weight DOUBLE, "
                "match_probability DOUBLE)")
    con.executemany("INSERT INTO predictions VALUES (?, ?, ?, pow(2, ?) / (1 + pow(2, ?)))",
                    [(a, b, w, w, w) for a, b, w in [(1, 2, 25), (1, 3, 5.5), (2, 3, 1)]])
    settings = ClusteringConfig(**SETTINGS, person_evidence={"postcode": -2.4})
    stats = cluster(con, make_db_api(con), "predictions", 0.95, [], settings)
    (n,) = con.execute("SELECT count(DISTINCT cluster_id) FROM clusters").fetchall()[0]
    assert n == (1 if joins else 2)
    assert stats.cut_links == ({} if joins else {"differs from the person's other records": 1})
    # The weight left to the model: from the comparison whose first level is exact on the column.
    model = {"comparisons": [{"output_column_name": "postcode", "comparison_levels": [
        {"is_null_level": True}, {"m_probability": 0.8, "u_probability": 1e-4},
        {"m_probability": 0.2, "u_probability": 0.8}]}]}
    comps = [ComparisonConfig(name="postcode", levels=[{"exact": "postcode"}])]
    resolved = with_person_evidence(ClusteringConfig(person_evidence={"postcode": None}), comps, model)
    assert resolved.person_evidence == {"postcode": -2.0}


@pytest.mark.parametrize("vouch, rival_postcode, joins", [
    ([], "AB1 2CD", False),                # a rival as good as the person: ambiguous
    (["postcode"], "AB1 2CD", True),       # x's address is the person's, not the rival's
    (["postcode"], "XY9 8ZW", False),      # the rival's records give that address too
])
def test_a_weak_link_the_persons_postcode_vouches_for_is_not_ambiguous(vouch, rival_postcode, joins):
    """x (a court record, no date of birth, postcode XY9 8ZW) links weakly to p1 (no
    postcode), whose person (p1, c1) holds XY9 8ZW; it scores about as well against p2, a
    namesake told apart by the date of birth (below the threshold), whose person (p2, c2)
    lives elsewhere."""
    con = duckdb.connect()
    con.execute("CREATE TABLE nodes (node_id BIGINT, source_dataset VARCHAR, record_id VARCHAR, "
                "date_of_birth DATE, postcode VARCHAR)")
    con.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?, ?)", [
        (1, "pnc", "p1", "1990-01-01", None), (2, "court", "c1", "1990-01-01", "XY9 8ZW"),
        (3, "pnc", "p2", "1970-06-06", None), (4, "court", "c2", "1970-06-06", rival_postcode),
        (5, "court", "x", None, "XY9 8ZW")])
    con.execute("CREATE TABLE predictions (node_id_l BIGINT, node_id_r BIGINT, match_weight DOUBLE, "
                "match_probability DOUBLE)")
    con.executemany("INSERT INTO predictions VALUES (?, ?, ?, pow(2, ?) / (1 + pow(2, ?)))",
                    [(a, b, w, w, w) for a, b, w in [(1, 2, 25), (3, 4, 25), (5, 1, 6), (5, 3, 4.1)]])
    settings = ClusteringConfig(**SETTINGS, ambiguity_margin=2, ambiguity_vouch_columns=vouch)
    stats = cluster(con, make_db_api(con), "predictions", 0.95, [], settings)
    groups = sorted(g for (g,) in con.execute(
        "SELECT list(record_id ORDER BY record_id) FROM clusters GROUP BY cluster_id").fetchall())
    assert (["c1", "p1", "x"] in groups) == joins
    assert stats.cut_links == ({} if joins else {"ambiguous weak link": 1})


@pytest.mark.parametrize("x_weight, rival_weight, joins", [
    (1.0, None, True),    # below the threshold (4.25 bits), above the attach weight: attached
    (1.0, 0.0, False),    # a second person, told apart by the date of birth, within 2 bits
    (1.0, -3.0, True),    # the second person is far behind
    (-3.0, None, False),  # below the attach weight
])
def test_a_lone_record_is_attached_below_the_threshold_when_unambiguous(x_weight, rival_weight, joins):
    """x (5, no date of birth) links to nothing at the threshold; its best pair is into
    person (1, 2). Another lone record (6) is never joined to x on a sub-threshold pair."""
    dobs = {1: "1990-01-01", 2: "1990-01-01", 3: "1985-05-05", 4: "1985-05-05", 5: None, 6: None}
    recs = [(i, "s", f"r{i}", None, None, dobs[i], None) for i in range(1, 7)]
    preds = [(1, 2, 25), (3, 4, 25), (5, 1, x_weight), (5, 6, 2.0)]
    if rival_weight is not None:
        preds.append((5, 3, rival_weight))
    settings = ClusteringConfig(**SETTINGS, attach_match_weight=-2)
    _, _, groups = _stage(recs, preds, settings=settings)
    assert (["r1", "r2", "r5"] in groups) == joins
    assert ["r6"] in groups
    # Off by default: x stays alone.
    _, _, groups = _stage(recs, preds)
    assert ["r5"] in groups


def _random_stage(seed: int, monkeypatch, prefilter: bool, batch: int | None = None, components: int = 1):
    """A random graph of small people with conflicting PNC IDs, near and far dates of birth,
    a duplicate-free source and weights either side of every check's threshold."""
    import linkage.cluster as clustering

    rnd = random.Random(seed)
    dobs = ["1980-01-02", "1980-02-01", "1980-01-03", "1981-01-02", "1965-07-30", None]
    records = [(i, rnd.choice(["a", "b", "free"]), f"r{i}", "X", "Y", rnd.choice(dobs),
                rnd.choice(["P1", "P2"] + [None] * (2 + seed % 6))) for i in range(1, 61)]
    size = 60 // components  # pairs only within each of ``components`` groups of records
    pairs = {(a, b) for a, b in (sorted(rnd.sample(range(g * size + 1, (g + 1) * size + 1), 2))
                                 for g in (rnd.randrange(components) for _ in range(140)))}
    predictions = [(a, b, rnd.choice([5.0, 9.0, 11.0, 15.0, 22.0, 30.0]) + rnd.random()) for a, b in sorted(pairs)]
    settings = ClusteringConfig(fracture_match_weight=10.0, conflict_match_weight=20.0,
                                date_conflict_match_weight=12.0 if seed % 4 else None,
                                confirmed_conflict_records=2 if seed % 3 == 0 else None)
    if not prefilter:  # every suspicious cluster through split_cluster
        monkeypatch.setattr(clustering, "_drop_whole_clusters", lambda con, *a: None)
    if batch is not None:  # suspicious clusters read into Python this many at a time
        monkeypatch.setattr(clustering, "CHECK_BATCH_CLUSTERS", batch)
    # every other seed (one component), records of one date of birth are linked on agreement
    # alone, by a rule gated on the PNC ID every other time
    deterministic = ([DeterministicLink(name="same date", columns=["date_of_birth"],
                                        unless_disagree=["pnc_key"] if seed % 4 == 1 else [])]
                     if seed % 2 and components == 1 else [])
    con, stats, groups = _stage(records, predictions, deterministic, duplicate_free=["free"], settings=settings)
    splits = con.execute("SELECT * FROM cluster_splits ORDER BY ALL").fetchall()
    clusters = con.execute("SELECT * FROM clusters ORDER BY ALL").fetchall()
    monkeypatch.undo()
    return stats, clusters, splits


@pytest.mark.parametrize("seed", range(12))
def test_clusters_left_out_of_the_python_check_are_those_it_keeps_whole(seed, monkeypatch):
    with_prefilter = _random_stage(seed, monkeypatch, prefilter=True)
    assert with_prefilter == _random_stage(seed, monkeypatch, prefilter=False)


@pytest.mark.parametrize("seed", range(0, 12, 3))
def test_suspicious_clusters_checked_in_batches_as_in_one(seed, monkeypatch):
    """Python holds one batch of suspicious clusters at a time; the clusters, the cuts and
    their reasons are those of checking all at once."""
    one_at_a_time = _random_stage(seed, monkeypatch, prefilter=False, batch=1, components=6)
    assert one_at_a_time == _random_stage(seed, monkeypatch, prefilter=False, components=6)
    stats = one_at_a_time[0]
    assert stats.clusters_checked >= 3 and stats.clusters_split >= 2, "too few batches to compare"

