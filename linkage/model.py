"""The Fellegi-Sunter model: Splink settings from the config, training, predict.

This is the one module that talks to Splink's linker (clustering uses Splink's connected
components in ``linkage.cluster``), so the next Splink major touches little. The engine
seam is ``make_db_api``: DuckDB by default, Spark when the config says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import splink.comparison_level_library as cll
from splink import Linker, SettingsCreator, block_on
from splink.comparison_library import CustomComparison
from splink.internals.column_expression import ColumnExpression

from linkage.config import (
    BlockingRule,
    ComparisonConfig,
    JobConfig,
    KeyRule,
    LevelConfig,
    PrefixKey,
    SqlRule,
    key_column,
)
from linkage.errors import ConfigError, InputError, LinkageError
from linkage.sources import q

# Splink logs every SQL step at INFO and untrained levels at WARNING; our stages report
# progress, and the manifest lists every parameter (an untrained one has m or u null).
SPLINK_LOG_LEVEL = logging.ERROR



# --- settings ----------------------------------------------------------------------------


class _DuckDBLevel(cll.CustomLevel):
    """Custom SQL written in DuckDB's dialect. Splink translates it for another engine with
    sqlglot, which names Jaro-Winkler ``JAROWINKLER_SIMILARITY``, a function Spark lacks:
    the engine's own name (on Spark, Splink's Scala ``jaro_winkler``) is put back."""

    def __init__(self, sql: str, label: str) -> None:
        super().__init__(sql, label_for_charts=label, base_dialect_str="duckdb")

    def create_sql(self, sql_dialect: Any) -> str:
        sql = super().create_sql(sql_dialect)
        if sql_dialect.sql_dialect_str == "duckdb":
            return sql
        return re.sub(r"\bJAROWINKLER_SIMILARITY\s*\(", f"{sql_dialect.jaro_winkler_function_name}(", sql,
                      flags=re.IGNORECASE)


def _level(level: LevelConfig, date_columns: frozenset[str] = frozenset({"date_of_birth"})) -> Any:
    # The config model guarantees the kind's options are set (LevelConfig._one_kind).
    lv: Any = level
    out: Any
    kind = lv.kind
    if kind == "exact":
        out = cll.ExactMatchLevel(lv.exact, term_frequency_adjustments=lv.tf_adjustment)
    elif kind == "reversed":
        a, b = lv.reversed
        out = cll.ColumnsReversedLevel(a, b, symmetrical=True)
    elif kind == "overlap":
        out = cll.ArrayIntersectLevel(lv.overlap, min_intersection=1)
    elif kind == "jaro_winkler":
        out = cll.JaroWinklerLevel(lv.jaro_winkler, lv.threshold)
    elif kind in ("damerau_levenshtein", "levenshtein"):
        col = getattr(level, kind)
        expr = ColumnExpression(col).cast_to_string() if col in date_columns else col
        # Both engines have Damerau-Levenshtein (on Spark, Splink's Scala function).
        level_class = cll.LevenshteinLevel if kind == "levenshtein" else cll.DamerauLevenshteinLevel
        out = level_class(expr, lv.distance)
    elif kind == "date_swap":
        c = lv.date_swap
        out = cll.CustomLevel(
            f'year("{c}_l") = year("{c}_r") AND month("{c}_l") = day("{c}_r") '
            f'AND day("{c}_l") = month("{c}_r") AND month("{c}_l") <> day("{c}_l")',
            label_for_charts=f"{c} day and month swapped",
            base_dialect_str="duckdb",
        )
    elif kind == "date_within":
        out = cll.AbsoluteDateDifferenceLevel(
            lv.date_within, input_is_string=False, threshold=lv.days, metric="day"
        )
    else:  # sql
        # Custom SQL is written in DuckDB's dialect; Splink transpiles it for Spark.
        out = _DuckDBLevel(lv.sql, lv.label or "custom")
    if lv.unless_equal:
        c = lv.unless_equal
        out = cll.And(out, cll.CustomLevel(f'"{c}_l" IS DISTINCT FROM "{c}_r"', base_dialect_str="duckdb"))
    if lv.label:
        out = out.configure(label_for_charts=lv.label)
    return out


def _null_level(cols: list[str]) -> Any:
    # Standardisation writes NULL, never an empty list, for an array with nothing in it.
    levels = [cll.NullLevel(c) for c in cols]
    level = levels[0] if len(levels) == 1 else cll.Or(*levels)
    return level.configure(is_null_level=True, label_for_charts="missing")


def build_comparison(
    comp: ComparisonConfig,
    saved: dict | None = None,
    date_columns: frozenset[str] = frozenset({"date_of_birth"}),
) -> CustomComparison:
    """The comparison as configured: a null level, the configured levels, an else level.

    ``saved`` is this comparison in a saved model: its m and u values are applied level by level.
    ``date_columns`` are compared as text by the edit-distance levels.
    """
    levels = [
        _null_level(comp.null_columns),
        *(_level(lv, date_columns) for lv in comp.levels or []),
        cll.ElseLevel(),
    ]
    if saved is not None:
        for i, (level, params) in enumerate(zip(levels, saved["comparison_levels"])):
            if i > 0:  # the null level carries no parameters
                levels[i] = level.configure(
                    m_probability=params.get("m_probability"), u_probability=params.get("u_probability")
                )
    return CustomComparison(levels, output_column_name=comp.name)


# The pairs each link type allows, as a condition every blocking rule carries.
LINK_TYPE_CONDITION = {
    "link_and_dedupe": None,
    "link_only": "l.source_dataset <> r.source_dataset",
    "dedupe_only": "l.source_dataset = r.source_dataset",
}


def _key_sql(key: Any, side: str) -> str:
    col = f'{side}."{key_column(key)}"'
    return f"substr({col}, 1, {key.first})" if isinstance(key, PrefixKey) else col


def rule_sql(rule: BlockingRule) -> str:
    """The rule's join condition in DuckDB SQL over ``l`` and ``r``. A rule with
    ``max_records_per_key`` joins on the column ``add_key_caps`` adds in place of its key."""
    if isinstance(rule, SqlRule):
        return rule.sql
    if isinstance(rule, KeyRule):
        keys = capped_columns(rule, rule.block_on)
        sql = " AND ".join(f"l.{q(k)} = r.{q(k)}" for k in keys)
        return f"{sql} AND ({rule.where})" if rule.where else sql
    return " AND ".join(f"{_key_sql(k, 'l')} = {_key_sql(k, 'r')}" for k in rule)


def blocking_rule(rule: BlockingRule, link_type: str = "link_and_dedupe") -> Any:
    """The rule as Splink takes it, restricted to the pairs ``link_type`` allows."""
    from splink.blocking_rule_library import CustomRule

    condition = LINK_TYPE_CONDITION[link_type]
    explode = None
    if isinstance(rule, KeyRule) and rule.explode:
        explode = capped_columns(rule, rule.explode)
    if condition is None:
        if isinstance(rule, SqlRule):
            return CustomRule(rule.sql, sql_dialect="duckdb")
        if isinstance(rule, KeyRule) and rule.where is None and rule.max_records_per_key is None:
            return block_on(*rule.block_on, arrays_to_explode=explode)
        if isinstance(rule, list) and not any(isinstance(k, PrefixKey) for k in rule):
            return block_on(*[str(k) for k in rule])
        return CustomRule(rule_sql(rule), sql_dialect="duckdb", arrays_to_explode=explode)
    return CustomRule(f"({rule_sql(rule)}) AND {condition}", sql_dialect="duckdb", arrays_to_explode=explode)


# --- key-frequency caps --------------------------------------------------------------------------
# A rule with ``max_records_per_key: N`` joins on a copy of one of its key columns (the
# exploded one, else the first) added to the records, null where the rule's key value is
# shared by more than N records (for an exploded list: the elements so shared are left out).
# Such a key pairs nobody under that rule, so a common name costs at most N * (N - 1) / 2
# pairs there rather than a quadratic number; the other rules still pair those records.
# The copy is plain data, so the same rule SQL runs on every engine and in incremental runs.
# A rule's ``refine_capped_keys`` add rules on the key plus more columns (config.KeyRule
# .refinements) whose copy holds only the records of keys over the first rule's cap: a
# common name still pairs the records that share a postcode district with it, say.


def capped_key(rule: KeyRule) -> str | None:
    """The key column a capped rule replaces by its copy (None: the rule has no cap)."""
    if rule.max_records_per_key is None:
        return None
    return rule.explode[0] if rule.explode else rule.block_on[0]


def capped_columns(rule: KeyRule, columns: list[str]) -> list[str]:
    """``columns`` as the rule joins on them: its capped key replaced by the cap's column."""
    target = capped_key(rule)
    return [cap_column(rule) if c == target else c for c in columns]


def cap_column(rule: KeyRule) -> str:
    """The added column's name: one per key and cap (rules differing only in ``where`` share it)."""
    sig = json.dumps([rule.block_on, rule.explode, rule.max_records_per_key]
                     + ([rule._refines] if rule._refines is not None else []))
    return "__lk_cap_" + hashlib.sha1(sig.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class KeyCap:
    column: str
    max_records_per_key: int
    keys_dropped: int  # key values shared by more records than the cap
    records_in_dropped_keys: int  # records holding one (an exploded list: record-elements)


def capped_rules(rules: list[BlockingRule]) -> list[KeyRule]:
    return [r for r in rules if isinstance(r, KeyRule) and r.max_records_per_key is not None]


def _keyed(rule: KeyRule, target: str, others: list[str], source: str) -> str:
    """``source``'s records by the rule's key: ``node_id``, ``__lk_key`` and the other columns."""
    rest = "".join(f", {q(c)}" for c in others)
    if rule.explode:
        # DISTINCT: a record whose list repeats a value holds that key once.
        return f"(SELECT DISTINCT node_id, unnest({q(target)}) AS __lk_key{rest} FROM {source})"
    return f"(SELECT node_id, {q(target)} AS __lk_key{rest} FROM {source})"


def add_key_caps(con: duckdb.DuckDBPyConnection, table: str, rules: list[BlockingRule],
                 counts_from: str | None = None) -> dict[str, KeyCap]:
    """Add to ``table`` (with ``node_id``) the column each capped rule joins on; returns, per
    added column, how many key values and records its cap left out (counts only). The
    columns go into restricted/standardised.parquet with the records, so the saved model
    runs there with Splink alone.

    ``counts_from``: count the keys' records in that table instead (``linkage find``: a
    record looked up keeps a key the run kept, and loses one the run left out)."""
    out: dict[str, KeyCap] = {}
    have = {c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()}
    for rule in capped_rules(rules):
        col = cap_column(rule)
        if col in out:
            continue
        cap, target = rule.max_records_per_key, capped_key(rule)
        assert cap is not None and target is not None
        others = [c for c in rule.block_on if c != target]
        present = " AND ".join(f"{q(c)} IS NOT NULL" for c in ["__lk_key", *others])
        group = ", ".join(q(c) for c in ["__lk_key", *others])
        keyed = partial(_keyed, rule, target, others)

        wanted = "" if counts_from is None else f" AND ({group}) IN (SELECT ({group}) FROM {keyed(table)})"
        if rule._refines is not None:
            # A finer key (refine_capped_keys): only within the keys its rule's cap left out.
            coarse = ["__lk_key", *[c for c in rule._refines if c != target]]
            coarse_group = ", ".join(q(c) for c in coarse)
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _lk_coarse_over AS SELECT {coarse_group}
                FROM {keyed(counts_from or table)} WHERE {" AND ".join(f"{q(c)} IS NOT NULL" for c in coarse)}
                GROUP BY ALL HAVING count(*) > {cap}"""
            )
            wanted += f" AND ({coarse_group}) IN (SELECT ({coarse_group}) FROM _lk_coarse_over)"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _lk_key_sizes AS
            SELECT {group}, count(*) AS n FROM {keyed(counts_from or table)} WHERE {present}{wanted} GROUP BY ALL"""
        )
        con.execute("DROP TABLE IF EXISTS _lk_coarse_over")
        dropped, records = con.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM _lk_key_sizes WHERE n > {cap}").fetchall()[0]
        if col in have:
            # Made again (an incremental run's unchanged records; find's records, which take
            # the index's columns): in place, so the table keeps its column order.
            con.execute(f"UPDATE {table} SET {q(col)} = NULL")
        else:
            dtype = con.execute(f"DESCRIBE SELECT {q(target)} FROM {table}").fetchall()[0][1]
            con.execute(f"ALTER TABLE {table} ADD COLUMN {q(col)} {dtype}")
        if rule.explode or wanted:
            # A list key, find's records, or a finer key (only the records in _lk_key_sizes
            # take a value): each record joined to its key's count.
            kept = f"SELECT k.node_id, {{}} AS v FROM {keyed(table)} k JOIN _lk_key_sizes s USING ({group}) WHERE s.n <= {cap}"
            kept = kept.format("list(k.__lk_key)") + " GROUP BY k.node_id" if rule.explode else kept.format("k.__lk_key")
            con.execute(f"UPDATE {table} SET {q(col)} = c.v FROM ({kept}) c WHERE {table}.node_id = c.node_id")
        else:
            # The same values without joining every record to its key's count: the key
            # where it is present, unless it is one of the few keys over the cap (at a
            # million records the join made this several times slower).
            over = " AND ".join(f"s.{q(c)} = {table}.{q(c)}" for c in [target, *others])
            con.execute(
                f"""UPDATE {table} SET {q(col)} = CASE WHEN {' AND '.join(f'{q(c)} IS NOT NULL' for c in [target, *others])}
                AND NOT EXISTS (SELECT 1 FROM (SELECT * RENAME (__lk_key AS {q(target)}) FROM _lk_key_sizes WHERE n > {cap}) s
                                WHERE {over}) THEN {q(target)} END""")
        con.execute("DROP TABLE _lk_key_sizes")
        out[col] = KeyCap(col, cap, int(dropped), int(records))
    return out


# The model as saved: a link_and_dedupe model over the standardised records, keyed by
# source_dataset and record_id, usable with Splink alone (restricted/standardised.parquet).
SAVED_IDS = {"link_type": "link_and_dedupe", "unique_id_column_name": "record_id",
             "source_dataset_column_name": "source_dataset"}
# The same model as the job runs it: one table of every record numbered by ``node_id``.
# The pairs, comparisons and parameters are the same; Splink then joins and compares
# integers rather than source_dataset || '-__-' || record_id strings, which made predict
# about 30% faster at a million records.
RUN_IDS: dict[str, Any] = {"link_type": "dedupe_only", "unique_id_column_name": "node_id"}


def build_settings(cfg: JobConfig, dialect: str = "duckdb", saved: dict | None = None) -> SettingsCreator:
    """Splink settings from the config, in the engine's SQL dialect; with ``saved`` (a model
    from ``load_model_settings``), its trained parameters, so no training is needed.

    Rebuilding from the config rather than loading the saved SQL is what lets a model
    trained on one engine score on another.
    """
    dates = frozenset(cfg.date_columns())
    comparisons: list[Any] = [
        build_comparison(c, saved["comparisons"][i] if saved else None, dates)
        for i, c in enumerate(cfg.model.comparisons)
    ]
    prior = {"probability_two_random_records_match": saved["probability_two_random_records_match"]} if saved else {}
    return SettingsCreator(
        **RUN_IDS,
        **prior,
        blocking_rules_to_generate_predictions=[blocking_rule(r, cfg.model.link_type) for r in cfg.model.blocking_rules],
        comparisons=comparisons,
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


# --- engine seam ---------------------------------------------------------------------------


def make_db_api(con: duckdb.DuckDBPyConnection) -> Any:
    from splink import DuckDBAPI

    return DuckDBAPI(connection=con)


def make_linker(nodes: Any, settings: SettingsCreator) -> Linker:
    """A linker over ``nodes`` (registered by the engine): every standardised record with
    its ``node_id`` (see RUN_IDS). ``settings`` come from ``build_settings``."""
    return Linker(nodes, settings, log_level=SPLINK_LOG_LEVEL)


# --- blocking guard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCount:
    rule: str
    comparisons: int
    largest_blocks: list[tuple[str, int]]  # (which key columns, block size): values never kept
    key_cap: dict[str, Any] | None = None  # a KeyCap: what max_records_per_key left out (counts only)


def describe_rule(rule: BlockingRule) -> str:
    if isinstance(rule, SqlRule):
        return rule.sql
    if isinstance(rule, KeyRule):
        return (" & ".join(rule.block_on) + (f" (exploding {', '.join(rule.explode)})" if rule.explode else "")
                + (f" where {rule.where}" if rule.where else "")
                + (f" (keys of at most {rule.max_records_per_key} records)" if rule.max_records_per_key else "")
                + (f" (only where {' & '.join(rule._refines)} is held by more)" if rule._refines is not None else ""))
    return " & ".join(f"first {k.first} of {k.column}" if isinstance(k, PrefixKey) else k for k in rule)


# Pairs in one block of n records, of which the sources hold n_s each (``ss`` = sum of n_s^2,
# ``sp`` = sum of n_s * (n_s - 1) / 2), for each link type.
_BLOCK_PAIRS = {
    "link_and_dedupe": "n * (n - 1) / 2",
    "link_only": "(n * n - ss) / 2",
    "dedupe_only": "sp",
}


def count_comparisons(
    con: duckdb.DuckDBPyConnection,
    records_view: str,
    rules: list[BlockingRule],
    db_api: Any = None,
    link_type: str = "link_and_dedupe",
    caps: dict[str, KeyCap] | None = None,
) -> list[RuleCount]:
    """Comparisons each rule generates on its own (before rules overlap), and its largest blocks.

    Column rules are counted exactly from block sizes (per source, for the link type). SQL
    rules and rules with a ``where`` are counted by Splink, on a sample when the records are
    many (an exact join made the guard several times slower at a million records). ``caps``
    (from ``add_key_caps``, whose columns ``records_view`` must hold) go with their rules.
    """
    caps = caps or {}
    out = []
    columns = {c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM {records_view}").fetchall()}
    for rule in rules:
        cap = caps.get(cap_column(rule)) if isinstance(rule, KeyRule) and rule.max_records_per_key else None
        if isinstance(rule, SqlRule) or (isinstance(rule, KeyRule) and rule.where):
            n = _count_sql_rule(con, records_view, rule, db_api, link_type)
            out.append(RuleCount(describe_rule(rule), n, [], asdict(cap) if cap else None))
            continue
        keys: list[Any]
        if isinstance(rule, KeyRule):
            keys = capped_columns(rule, rule.block_on)
            exploded = set(capped_columns(rule, rule.explode))
        else:
            keys, exploded = list(rule), set()
        not_null = " AND ".join(f"k{i} IS NOT NULL" for i in range(len(keys)))
        exprs = [
            (f"unnest({q(key_column(k))})" if key_column(k) in exploded
             else (f"substr({q(k.column)}, 1, {k.first})" if isinstance(k, PrefixKey) else q(k)))
            for k in keys
        ]
        # DISTINCT per record: a record whose array repeats a value is in a block once.
        distinct = "DISTINCT " if exploded else ""
        # A record by its number where the view has one: one integer to hash, not two strings.
        record = "node_id" if "node_id" in columns else "record_id"
        rows = (f"(SELECT {distinct}source_dataset, {record}, "
                + ", ".join(f"{e} AS k{i}" for i, e in enumerate(exprs)) + f" FROM {records_view})")
        group = ", ".join(f"k{i}" for i in range(len(keys)))
        # One pass per rule: the block sizes, their pairs and the largest few together.
        total, largest = con.execute(
            f"SELECT coalesce(sum({_BLOCK_PAIRS[link_type]}), 0)::HUGEINT, coalesce(max(n, 5), []) FROM "
            f"(SELECT sum(ns) AS n, sum(ns * ns) AS ss, sum(ns * (ns - 1) / 2) AS sp FROM "
            f"(SELECT {group}, source_dataset, count(*) AS ns FROM {rows} WHERE {not_null} GROUP BY ALL) GROUP BY {group})"
        ).fetchall()[0]
        out.append(RuleCount(describe_rule(rule), int(total), [(describe_rule(rule), int(n)) for n in largest],
                             asdict(cap) if cap else None))
    return out


def _count_sql_rule(con, records_view: str, rule: SqlRule | KeyRule, db_api: Any, link_type: str = "link_and_dedupe") -> int:
    """Splink's count of the pairs a SQL rule makes: exact up to 200,000 records, else
    estimated from a sample (Splink scales the sampled count up)."""
    import warnings

    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    records = con.execute(f"SELECT count(*) FROM {records_view}").fetchall()[0][0]
    proportion = 1.0 if records <= 200_000 else max(0.05, min(1.0, (200_000 / records)))
    view = f"__lk_guard_{abs(hash(rule_sql(rule))) % 10**8}"
    # Numbered by node_id where the records have it: Splink samples by a hash of the number,
    # so the estimate is then the same in every run (row_number() OVER () follows the
    # table's physical order, which a parallel build of the table does not fix).
    have = {c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM {records_view}").fetchall()}
    uid = "node_id" if "node_id" in have else "row_number() OVER ()"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {uid} AS __lk_uid, * FROM {records_view}")
    sdf = db_api.register(view, table_name=f"{view}_{abs(hash(records_view)) % 10**6}_{id(rule) % 10**6}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Splink warns that a sampled estimate may be unstable
        res = count_comparisons_from_blocking_rules(
            sdf,
            blocking_rules=[blocking_rule(rule, link_type)],
            link_type="dedupe_only",
            unique_id_column_name="__lk_uid",
            record_sample_proportion=proportion,
        )
    return int(res[0]["marginal_comparison_count"]) if res else 0


def guard_comparisons(counts: list[RuleCount], cap: float) -> int:
    total = sum(c.comparisons for c in counts)
    if total > cap:
        worst = max(counts, key=lambda c: c.comparisons)
        blocks = ", ".join(str(n) for _, n in worst.largest_blocks) or "unknown"
        raise LinkageError(
            f"the blocking rules would generate {total:,} comparisons, over model.max_comparisons "
            f"({cap:,.0f}). The largest is the rule on {worst.rule} with {worst.comparisons:,} "
            f"(largest blocks: {blocks} records). Make that rule stricter, or raise max_comparisons."
        )
    return total


# --- training and saved models -------------------------------------------------------------------


PRIOR_STEP = "prior: probability two random records match"


def candidate_pairs(source_counts: dict[str, int], link_type: str) -> float:
    """How many pairs of records the link type allows (the prior's denominator)."""
    n = sum(source_counts.values())
    squares = sum(c * c for c in source_counts.values())
    if link_type == "link_only":
        return (n * n - squares) / 2
    if link_type == "dedupe_only":
        return sum(c * (c - 1) for c in source_counts.values()) / 2
    return n * (n - 1) / 2


@dataclass(frozen=True)
class Prior:
    probability: float
    matches_per_record: float  # what the probability implies: the average record's matches
    how: str

    @property
    def plausible(self) -> bool:
        return PLAUSIBLE_MATCHES_PER_RECORD[0] <= self.matches_per_record <= PLAUSIBLE_MATCHES_PER_RECORD[1]

    def warning(self) -> str | None:
        if self.plausible:
            return None
        return (
            f"the prior ({self.how}) is {self.probability:.3g}: it implies {self.matches_per_record:.3g} matches per "
            f"record, outside {PLAUSIBLE_MATCHES_PER_RECORD[0]}-{PLAUSIBLE_MATCHES_PER_RECORD[1]}. Check "
            "model.training.prior (a deterministic rule that few true matches meet, or a wrong recall, misstates it), "
            "or give prior.matches_per_record"
        )


# Matches per record outside this range are worth a warning: a prior 10 times too low or
# high moves every match probability and the links at the threshold.
PLAUSIBLE_MATCHES_PER_RECORD = (0.1, 20.0)


def estimate_prior(linker: Linker, cfg: JobConfig, source_counts: dict[str, int]) -> Prior:
    """The prior as the config says (deterministic rules, a probability, or matches per
    record), over the pairs the link type allows; set on the linker."""
    prior = cfg.model.training.prior
    link_type = cfg.model.link_type
    pairs = candidate_pairs(source_counts, link_type)
    n = sum(source_counts.values())
    if prior.probability is not None:
        p, how = prior.probability, "given"
    elif prior.matches_per_record is not None:
        p, how = min(0.999, n * prior.matches_per_record / 2 / max(pairs, 1)), "from matches_per_record"
    else:
        linker.training.estimate_probability_two_random_records_match(
            [blocking_rule(r, link_type) for r in prior.deterministic_rules or []], recall=prior.recall
        )
        # Splink divides by every pair of the one table it sees; the job scores only the
        # pairs its link type allows.
        p = float(linker._settings_obj._probability_two_random_records_match) * (n * (n - 1) / 2) / max(pairs, 1)
        p, how = min(p, 0.999), "estimated from the deterministic rules"
    linker._settings_obj._probability_two_random_records_match = p  # Splink offers no setter
    return Prior(p, p * pairs * 2 / max(n, 1), how)


def check_trainable(con: duckdb.DuckDBPyConnection, cfg: JobConfig, records_view: str, invalid: dict) -> None:
    """Every comparison has values to learn from; else one error naming the comparison, its
    columns, the sources and what cleaning did to them (``invalid``: source -> field ->
    reason -> count)."""
    problems = []

    def emptied(cols: list[str]) -> list[str]:
        return [
            f"{source}.{field}: {', '.join(f'{r} {n:,}' for r, n in reasons.items())}"
            for source, by_field in invalid.items() for field, reasons in by_field.items()
            if field in cols or any(c.startswith(field + "_") for c in cols)
        ]

    for rule in cfg.model.training.em_blocking_rules:
        if isinstance(rule, SqlRule):
            continue
        [count] = count_comparisons(con, records_view, [rule], None, cfg.model.link_type)
        if count.comparisons == 0:
            cols = [key_column(k) for k in (rule.block_on if isinstance(rule, KeyRule) else rule)]
            why = emptied(cols)
            problems.append(
                f"EM blocking rule {describe_rule(rule)!r} pairs no records"
                + (f"; cleaning made values missing ({'; '.join(why)})" if why else "")
                + ". Fix the field's cleaning options, or block EM on other columns (model.training.em_blocking_rules)."
            )
    for comp in cfg.model.comparisons:
        cols = comp.null_columns
        if not cols:
            continue
        present = con.execute(
            f"SELECT count(*) FROM {records_view} WHERE " + " AND ".join(f"{q(c)} IS NOT NULL" for c in cols)
        ).fetchall()[0][0]
        if present >= 2:
            continue
        why = emptied(cols)
        problems.append(
            f"comparison {comp.name!r}: {', '.join(cols)} has a value in {present} record(s), so the model cannot "
            "learn from it"
            + (f"; cleaning made values missing ({'; '.join(why)})" if why else "; no source fills it")
            + ". Fix the field's cleaning options or the source's columns, or drop the comparison."
        )
    if problems:
        raise LinkageError("the model cannot be trained on this data:\n  " + "\n  ".join(problems))


def train(linker: Linker, cfg: JobConfig, step, source_counts: dict[str, int], warn=None) -> Prior:
    """Prior as configured, u by random sampling, m by EM over several rules."""
    t = cfg.model.training
    with step(PRIOR_STEP):
        prior = estimate_prior(linker, cfg, source_counts)
    with step(f"u by random sampling (max {t.u_max_pairs:,.0f} pairs)"):
        linker.training.estimate_u_using_random_sampling(
            max_pairs=t.u_max_pairs, seed=t.seed, num_chunks=t.u_chunks, min_count_per_level=t.u_min_count_per_level,
        )
    skipped: list[str] = []
    for rule in t.em_blocking_rules:
        with step(f"m by EM, blocking on {describe_rule(rule)}"):
            # A failure here that the data causes becomes a TrainingError naming this step
            # (linkage.errors.is_training_fault); check_trainable catches the common ones first.
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    blocking_rule(rule, cfg.model.link_type), max_pairs=t.em_max_pairs,
                    estimate_without_term_frequencies=not t.em_term_frequencies,
                )
            except ValueError as exc:
                # EM drove a level's m to zero (a level no matching pair of this rule's sample
                # takes: on a small extract, middle names that differ): Splink 5 refuses the
                # value. The session's estimates are dropped whole (Splink writes them back
                # only when it ends); the other rules' sessions still run.
                if "below the minimum allowed value" not in str(exc):
                    raise
                skipped.append(describe_rule(rule))
    if skipped and len(skipped) == len(t.em_blocking_rules):
        raise LinkageError("the model cannot be trained on this data: EM drove a level's m probability "
                           "to zero on every training rule (" + "; ".join(skipped) + ")")
    for rule_text in skipped if warn is not None else []:
        warn(f"training: EM blocking on {rule_text} was skipped (it drove a level's m probability to zero, "
             "which Splink refuses); the other training rules estimated the model")
    if warn is not None:
        for text in weaker_exact_levels(cfg, linker.misc.save_model_to_json()):
            warn(text)
    # EM's sampled pairs and comparison vectors would stay in the database through predict
    # (millions of rows at ten million records); predict rebuilds the little it needs.
    linker.table_management.invalidate_cache()
    return prior


# Levels that grade the same values' similarity: an exact agreement should weigh at least
# as much as any of them (unlike a swap, an alias or custom SQL, which are other evidence).
GRADED_KINDS = frozenset({"jaro_winkler", "levenshtein", "damerau_levenshtein", "date_within"})
WEAKER_EXACT_BITS = 1.0


def weaker_exact_levels(cfg: JobConfig, model: dict) -> list[str]:
    """A warning for each comparison whose exact level (its first) the trained model weighs
    more than ``WEAKER_EXACT_BITS`` below a later level grading the same values (a
    Jaro-Winkler, edit-distance or date-window level): evidence that EM's blocking rules
    picked matches that are not typical (on data where each duplicate carries one error,
    blocking EM on exact names leaves the matches whose error is in the date)."""
    out = []
    for comp, trained in zip(cfg.model.comparisons, model["comparisons"]):
        levels = list(comp.levels or [])
        params = trained["comparison_levels"][1:1 + len(levels)]  # after the null level
        if not levels or levels[0].kind != "exact" or len(params) != len(levels):
            continue

        def bits(p: dict) -> float | None:
            m, u = p.get("m_probability"), p.get("u_probability")
            return math.log2(m / u) if m and u else None

        exact = bits(params[0])
        graded = [(lv.label or p.get("label_for_charts") or lv.kind, w) for lv, p in zip(levels[1:], params[1:])
                  if lv.kind in GRADED_KINDS and (w := bits(p)) is not None]
        if exact is None or not graded:
            continue
        label, top = max(graded, key=lambda g: g[1])
        if top > exact + WEAKER_EXACT_BITS:
            out.append(
                f"training: comparison {comp.name!r} weighs an exact agreement at {exact:.1f} bits, below its "
                f"less similar level {label!r} at {top:.1f}: EM's blocking rules may have picked matches that are not "
                "typical (each rule leaves out the matches that disagree on its own columns); train EM on other "
                "rules (model.training.em_blocking_rules) or check the levels' order")
    return out


def save_model(linker: Linker, path: Path) -> None:
    """Splink's model JSON, in its portable form (SAVED_IDS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = linker.misc.save_model_to_json()
    settings.update(SAVED_IDS)
    path.write_text(json.dumps(settings, indent=4))


def load_model_settings(path: Path, cfg: JobConfig) -> dict:
    """A saved Splink model, checked to fit this job's comparisons level by level.

    Only its parameters are used (``build_settings(cfg, saved=...)``): the comparisons'
    SQL is rebuilt from the config for the engine, and the config's blocking rules apply
    (blocking is a run-time choice, not a parameter).
    """
    if not path.is_file():
        raise InputError(f"{path}: no saved model there. Train one with a run without --model.")
    try:
        settings = json.loads(path.read_text())
        shape = [(c["output_column_name"], len(c["comparison_levels"])) for c in settings["comparisons"]]
        float(settings["probability_two_random_records_match"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a Splink model JSON file.") from None
    want = [(c.name, len(c.levels or []) + 2) for c in cfg.model.comparisons]  # + null and else levels
    if shape != want:
        raise ConfigError(
            str(path),
            [f"the saved model's comparisons (name, levels) are {shape}, the config's model.comparisons "
             f"are {want}; retrain, or use the config the model was trained with"],
        )
    return settings


def model_parameters(linker: Linker) -> list[dict[str, Any]]:
    """Match weights and m/u of every level, for the manifest and the report."""
    rows = []
    for comp in linker._settings_obj.comparisons:  # Splink offers no public accessor
        for level in comp.comparison_levels:
            if level.is_null_level:
                continue
            m, u = level.m_probability, level.u_probability
            weight = math.log2(m / u) if m and u else None
            rows.append(
                {
                    "comparison": comp.output_column_name,
                    "level": level.label_for_charts,
                    "m_probability": m,
                    "u_probability": u,
                    "match_weight": weight,
                }
            )
    return rows


# --- predict ------------------------------------------------------------------------------


def predict(linker: Linker, threshold: float) -> Any:
    """Score every blocked pair; keep those that could matter for clustering and review.

    Pairs far below the threshold are dropped at the source: a link needs
    ``match_probability >= threshold`` and clerical review samples around it.
    """
    floor = min(0.01, threshold / 10)
    return linker.inference.predict(threshold_match_probability=floor)
