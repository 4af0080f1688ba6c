"""The Fellegi-Sunter model: Splink settings from the config, training, predict.

This is the one module that talks to Splink's linker (clustering uses Splink's connected
components in ``linkage.cluster``), so the next Splink major touches little. The engine
seam is ``make_db_api``: DuckDB by default, Spark when the config says so.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
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
    ExplodeRule,
    JobConfig,
    LevelConfig,
    SqlRule,
)
from linkage.errors import ConfigError, InputError, LinkageError
from linkage.sources import q

# Splink logs every SQL step at INFO and untrained levels at WARNING; our stages report
# progress, and the manifest lists every parameter (an untrained one has m or u null).
SPLINK_LOG_LEVEL = logging.ERROR

DATE_COLUMNS = {"date_of_birth"}


# --- settings ----------------------------------------------------------------------------


def _level(level: LevelConfig, dialect: str) -> Any:
    kind = level.kind
    if kind == "exact":
        out = cll.ExactMatchLevel(level.exact, term_frequency_adjustments=level.tf_adjustment)
    elif kind == "reversed":
        a, b = level.reversed
        out = cll.ColumnsReversedLevel(a, b, symmetrical=True)
    elif kind == "overlap":
        out = cll.ArrayIntersectLevel(level.overlap, min_intersection=1)
    elif kind == "jaro_winkler":
        out = cll.JaroWinklerLevel(level.jaro_winkler, level.threshold)
    elif kind == "damerau_levenshtein":
        col = level.damerau_levenshtein
        expr = ColumnExpression(col).cast_to_string() if col in DATE_COLUMNS else col
        # Spark has no Damerau-Levenshtein; Levenshtein differs only on transpositions.
        level_class = cll.LevenshteinLevel if dialect == "spark" else cll.DamerauLevenshteinLevel
        out = level_class(expr, level.distance)
    elif kind == "date_swap":
        c = level.date_swap
        out = cll.CustomLevel(
            f'year("{c}_l") = year("{c}_r") AND month("{c}_l") = day("{c}_r") '
            f'AND day("{c}_l") = month("{c}_r") AND month("{c}_l") <> day("{c}_l")',
            label_for_charts=f"{c} day and month swapped",
            base_dialect_str="duckdb",
        )
    elif kind == "date_within":
        out = cll.AbsoluteDateDifferenceLevel(
            level.date_within, input_is_string=False, threshold=level.days, metric="day"
        )
    else:  # sql
        # Custom SQL is written in DuckDB's dialect; Splink transpiles it for Spark.
        out = cll.CustomLevel(level.sql, label_for_charts=level.label or "custom", base_dialect_str="duckdb")
    if level.unless_equal:
        c = level.unless_equal
        out = cll.And(out, cll.CustomLevel(f'"{c}_l" IS DISTINCT FROM "{c}_r"', base_dialect_str="duckdb"))
    if level.label:
        out = out.configure(label_for_charts=level.label)
    return out


def _null_level(cols: list[str]) -> Any:
    # Standardisation writes NULL, never an empty list, for an array with nothing in it.
    levels = [cll.NullLevel(c) for c in cols]
    level = levels[0] if len(levels) == 1 else cll.Or(*levels)
    return level.configure(is_null_level=True, label_for_charts="missing")


def build_comparison(comp: ComparisonConfig, dialect: str = "duckdb", saved: dict | None = None) -> CustomComparison:
    """The comparison as configured: a null level, the configured levels, an else level.

    ``saved`` is this comparison in a saved model: its m and u values are applied level by level.
    """
    levels = [_null_level(comp.null_columns), *(_level(lv, dialect) for lv in comp.levels), cll.ElseLevel()]
    if saved is not None:
        for i, (level, params) in enumerate(zip(levels, saved["comparison_levels"])):
            if i > 0:  # the null level carries no parameters
                levels[i] = level.configure(
                    m_probability=params.get("m_probability"), u_probability=params.get("u_probability")
                )
    return CustomComparison(levels, output_column_name=comp.name)


def blocking_rule(rule: BlockingRule) -> Any:
    if isinstance(rule, SqlRule):
        return rule.sql
    if isinstance(rule, ExplodeRule):
        return block_on(*rule.block_on, arrays_to_explode=list(rule.explode))
    return block_on(*rule)


# The model as saved: a link_and_dedupe model over the standardised records, keyed by
# source_dataset and record_id, usable with Splink alone (restricted/standardised.parquet).
SAVED_IDS = {"link_type": "link_and_dedupe", "unique_id_column_name": "record_id",
             "source_dataset_column_name": "source_dataset"}
# The same model as the job runs it: one table of every record numbered by ``node_id``.
# The pairs, comparisons and parameters are the same; Splink then joins and compares
# integers rather than source_dataset || '-__-' || record_id strings, which made predict
# about 30% faster at a million records.
RUN_IDS = {"link_type": "dedupe_only", "unique_id_column_name": "node_id"}


def build_settings(cfg: JobConfig, dialect: str = "duckdb", saved: dict | None = None) -> SettingsCreator:
    """Splink settings from the config, in the engine's SQL dialect; with ``saved`` (a model
    from ``load_model_settings``), its trained parameters, so no training is needed.

    Rebuilding from the config rather than loading the saved SQL is what lets a model
    trained on one engine score on another.
    """
    comparisons = [
        build_comparison(c, dialect, saved["comparisons"][i] if saved else None)
        for i, c in enumerate(cfg.model.comparisons)
    ]
    prior = {"probability_two_random_records_match": saved["probability_two_random_records_match"]} if saved else {}
    return SettingsCreator(
        **RUN_IDS,
        **prior,
        blocking_rules_to_generate_predictions=[blocking_rule(r) for r in cfg.model.blocking_rules],
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


def describe_rule(rule: BlockingRule) -> str:
    if isinstance(rule, SqlRule):
        return rule.sql
    if isinstance(rule, ExplodeRule):
        return " & ".join(rule.block_on) + f" (exploding {', '.join(rule.explode)})"
    return " & ".join(rule)


def count_comparisons(
    con: duckdb.DuckDBPyConnection, records_view: str, rules: list[BlockingRule], db_api: Any = None
) -> list[RuleCount]:
    """Comparisons each rule generates on its own (before rules overlap), and its largest blocks.

    Column rules are counted exactly from block sizes: n * (n - 1) / 2 per block, which is
    what a link_and_dedupe job scores. SQL rules are counted by Splink on a sample.
    """
    out = []
    for rule in rules:
        if isinstance(rule, SqlRule):
            out.append(RuleCount(describe_rule(rule), _count_sql_rule(con, records_view, rule, db_api), []))
            continue
        cols = list(rule.block_on if isinstance(rule, ExplodeRule) else rule)
        exploded = set(rule.explode) if isinstance(rule, ExplodeRule) else set()
        not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in cols)
        if exploded:
            # DISTINCT per record: a record whose array repeats a value is in a block once.
            keys = [f"unnest({q(c)}) AS {q(c)}" if c in exploded else q(c) for c in cols]
            rows = f"(SELECT DISTINCT source_dataset, record_id, {', '.join(keys)} FROM {records_view})"
        else:
            rows = records_view  # one row per record already
        # One pass per rule: the block sizes, their pairs and the largest few together.
        total, largest = con.execute(
            f"SELECT coalesce(sum(n * (n - 1) / 2), 0)::HUGEINT, coalesce(max(n, 5), []) FROM "
            f"(SELECT count(*) AS n FROM {rows} WHERE {not_null} GROUP BY {', '.join(q(c) for c in cols)})"
        ).fetchall()[0]
        out.append(RuleCount(describe_rule(rule), int(total), [(describe_rule(rule), int(n)) for n in largest]))
    return out


def _count_sql_rule(con, records_view: str, rule: SqlRule, db_api: Any) -> int:
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    proportion = 0.05
    sdf = db_api.register(records_view, table_name=f"__guard_{abs(hash(rule.sql)) % 10**8}")
    res = count_comparisons_from_blocking_rules(
        sdf,
        blocking_rules=[rule.sql],
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        source_dataset_column_name="source_dataset",
        record_sample_proportion=proportion,
    )
    return int(res[0].row_count / proportion**2) if res else 0


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


def estimate_prior(linker: Linker, cfg: JobConfig) -> float:
    """The prior from the records agreeing on the deterministic rules, set on the linker."""
    prior = cfg.model.training.prior
    linker.training.estimate_probability_two_random_records_match(
        [blocking_rule(r) for r in prior.deterministic_rules], recall=prior.recall
    )
    return float(linker._settings_obj._probability_two_random_records_match)


def train(linker: Linker, cfg: JobConfig, step) -> None:
    """Prior from deterministic rules, u by random sampling, m by EM over several rules."""
    t = cfg.model.training
    with step(PRIOR_STEP):
        estimate_prior(linker, cfg)
    with step(f"u by random sampling (max {t.u_max_pairs:,.0f} pairs)"):
        linker.training.estimate_u_using_random_sampling(max_pairs=t.u_max_pairs, seed=t.seed)
    for rule in t.em_blocking_rules:
        with step(f"m by EM, blocking on {describe_rule(rule)}"):
            linker.training.estimate_parameters_using_expectation_maximisation(
                blocking_rule(rule), max_pairs=t.em_max_pairs
            )
    # EM's sampled pairs and comparison vectors would stay in the database through predict
    # (millions of rows at ten million records); predict rebuilds the little it needs.
    linker.table_management.invalidate_cache()


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
    want = [(c.name, len(c.levels) + 2) for c in cfg.model.comparisons]  # + null and else levels
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
