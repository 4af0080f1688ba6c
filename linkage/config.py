"""Job configs: YAML in, validated ``JobConfig`` out, every problem reported at once.

A config is checked in two passes. ``load_config`` checks the file alone (shape, unknown
keys, values, and that blocking rules and comparisons name columns standardisation
produces); ``check_against_data`` then checks it against the extracts' headers (every
column it names exists). Each pass raises one ``ConfigError`` listing all it found.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, TypeAdapter, ValidationError, field_validator, model_validator

from linkage.errors import ConfigError
from linkage.schema import DATE_FIELDS
from linkage.standardise.declared import declared_columns, input_fields
from linkage.standardise.presets import PRESETS, preset_field_specs, preset_fields
from linkage.standardise.types import TYPES, AnyFieldType, DateType, FieldType, ListType, PersonNameType, SetType
from linkage.standardise.types.encoded import encoding_problems

# A column of the records (a preset column, a declared field or one of its keys): checked
# against the job's own fields once the whole config is read (``_column_problems``).
Column = str

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sources ---------------------------------------------------------------------------

CarryTransform = Literal["keep", "year", "month", "postcode_area", "postcode_district"]
CarryType = Literal["integer", "number", "string", "boolean"]
# The link-rate breakdowns built in (``linkage.bias``); a source adds its own under ``breakdowns``.
BUILT_IN_BREAKDOWNS = ("source", "sex", "age_band", "event_year", "date_of_birth_present")


class CarryColumn(Strict):
    """A carried column with its type declared: ``{how: keep, type: integer, bad_values: null}``.

    ``type`` overrides the type read from the values (``how: keep`` only); a value that is
    not of that type is written as null and its rows counted (``bad_values: null``) or
    fails the run (``bad_values: fail``), the message naming rows, never values.
    """

    how: CarryTransform = "keep"
    type: CarryType | None = None
    bad_values: Literal["null", "fail"] = "null"

    @model_validator(mode="after")
    def _type_with_keep(self) -> "CarryColumn":
        if self.type is not None and self.how != "keep":
            raise ValueError(f"type applies to how: keep only (how: {self.how} sets its own type)")
        return self


CarrySpec = Annotated[
    Annotated[CarryTransform, Tag("transform")] | Annotated[CarryColumn, Tag("column")],
    Discriminator(lambda v: "column" if isinstance(v, (dict, CarryColumn)) else "transform"),
]


class SourceConfig(Strict):
    path: str
    format: Literal["csv", "parquet"] | None = None
    record_id: str
    # field -> the extract's column: the justice preset's person fields and/or the job's
    # declared fields (``fields:``).
    columns: dict[str, str] = Field(min_length=1)
    date_formats: list[str] = Field(default=["%Y-%m-%d"], min_length=1)
    list_separator: str = Field(default=";", min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    # CSV dialect (RFC 4180 by default), set here and never guessed per file: the quote
    # character, the character that escapes a quote inside a quoted field (default: the
    # quote itself, doubled), and the file's text encoding (any Python codec name).
    quote: str = Field(default='"', min_length=1, max_length=1)
    escape: str | None = Field(default=None, min_length=1, max_length=1)
    encoding: str = "utf-8"
    # Non-identifying columns for analysts: column -> how to coarsen it.
    # (or ``{how: keep, type: integer, bad_values: null | fail}``: ``CarryColumn``).
    carry: dict[str, CarrySpec] = {}
    # Link-rate breakdowns this source carries (``linkage.bias``): name -> the extract's
    # column, e.g. ``{ethnicity: ethnicity_code}``; never an identifying column.
    breakdowns: dict[str, str] = {}
    # Date columns at which to give the person's age (in whole years) instead of a date of birth.
    age_at: list[str] = []
    # The source holds at most one record per person: clustering keeps one record of it
    # per person, the one with the best-scoring link (linkage.cluster).
    duplicate_free: bool = False

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (for example utf-8, latin-1, cp1252, utf-16)") from None
        return v

    @model_validator(mode="after")
    def _dialect(self) -> "SourceConfig":
        if self.quote == self.delimiter:
            raise ValueError("quote and delimiter must be different characters")
        if self.escape is not None and self.escape == self.delimiter:
            raise ValueError("escape and delimiter must be different characters")
        return self

    @property
    def carry_columns(self) -> dict[str, CarryColumn]:
        """Every carried column as a ``CarryColumn`` (a bare transform is ``how`` alone)."""
        return {c: how if isinstance(how, CarryColumn) else CarryColumn(how=how) for c, how in self.carry.items()}

    @property
    def file_format(self) -> str:
        if self.format:
            return self.format
        return "parquet" if self.path.lower().endswith((".parquet", ".pq")) else "csv"


# --- model -----------------------------------------------------------------------------

LEVEL_KINDS = (
    "exact",
    "reversed",
    "overlap",
    "jaro_winkler",
    "levenshtein",
    "damerau_levenshtein",
    "date_swap",
    "date_within",
    "sql",
)


class LevelConfig(Strict):
    """One comparison level; exactly one of the kind keys is set."""

    exact: Column | None = None
    reversed: list[Column] | None = None
    overlap: Column | None = None
    jaro_winkler: Column | None = None
    levenshtein: Column | None = None
    damerau_levenshtein: Column | None = None
    date_swap: Column | None = None
    date_within: Column | None = None
    sql: str | None = None

    threshold: float | None = Field(default=None, gt=0, le=1)  # jaro_winkler
    distance: int | None = Field(default=None, ge=1)  # levenshtein, damerau_levenshtein
    days: int | None = Field(default=None, ge=1)  # date_within
    tf_adjustment: bool = False  # exact
    # The level applies only where this column differs (or is missing) on the two sides:
    # an alias level that must not re-count a plain match other comparisons already count.
    unless_equal: Column | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "LevelConfig":
        kinds = [k for k in LEVEL_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a level needs exactly one of {', '.join(LEVEL_KINDS)} (got {len(kinds)})")
        kind = kinds[0]
        needs = {"jaro_winkler": "threshold", "levenshtein": "distance", "damerau_levenshtein": "distance",
                 "date_within": "days"}
        if kind in needs and getattr(self, needs[kind]) is None:
            raise ValueError(f"a {kind} level needs '{needs[kind]}'")
        if kind == "reversed" and len(self.reversed or []) != 2:
            raise ValueError("a reversed level names exactly two columns")
        if self.tf_adjustment and kind != "exact":
            raise ValueError("tf_adjustment applies to exact levels only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in LEVEL_KINDS if getattr(self, k) is not None)

    @property
    def columns(self) -> list[str]:
        value = getattr(self, self.kind)
        if self.kind == "sql":
            return []
        return list(value) if isinstance(value, list) else [value]


class ComparisonConfig(Strict):
    """A comparison: its levels, or ``field:`` a declared field, whose type gives standard
    levels (``name``: exact, Jaro-Winkler 0.92 and 0.88, phonetic, 0.7; ``date``: exact,
    one character out, within a month, a year, ten years; ...). Resolved to levels when the
    config is read (``_resolve_comparisons``)."""

    name: str | None = None  # default: the field's name
    field: str | None = None
    levels: list[LevelConfig] | None = Field(default=None, min_length=1)
    # With ``field`` and no levels: term frequencies on the exact level (default: the type's).
    tf_adjustment: bool | None = None
    # The comparison is null (no evidence) when any of these is missing; default: the
    # first level's columns.
    null_when_missing: list[Column] | None = None

    @model_validator(mode="after")
    def _levels_or_field(self) -> "ComparisonConfig":
        if self.levels is None and self.field is None:
            raise ValueError("a comparison needs 'levels', or 'field' (a declared field: its type's standard levels)")
        if self.name is None and self.field is None:
            raise ValueError("a comparison with levels needs a 'name'")
        if self.tf_adjustment is not None and self.levels is not None:
            raise ValueError("tf_adjustment here applies to a field's standard levels; with levels, set it on a level")
        return self

    @property
    def label(self) -> str:
        return self.name or self.field or ""

    @property
    def null_columns(self) -> list[str]:
        if self.null_when_missing is not None:
            return list(self.null_when_missing)
        return self.levels[0].columns if self.levels else []


class SqlRule(Strict):
    """A blocking rule in the engine's SQL, e.g. ``l.surname = r.surname``; it must hold an
    equality, or it compares every pair of records."""

    sql: str

    @model_validator(mode="before")
    @classmethod
    def _no_key_cap(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_records_per_key" in data:
            raise ValueError(
                "max_records_per_key needs the rule's key columns: write the rule as "
                "{block_on: [columns], where: \"<the rest of the SQL>\", max_records_per_key: N}"
            )
        return data


class PrefixKey(Strict):
    """A blocking key on the first ``first`` characters of a column: ``{column: surname, first: 3}``."""

    column: Column
    first: int = Field(ge=1)


# One element of a rule: a column (equality), or a prefix of one.
RuleKey = Column | PrefixKey


def key_column(key: RuleKey) -> str:
    return key.column if isinstance(key, PrefixKey) else key


class KeyRule(Strict):
    """Equality on the ``block_on`` columns, with options: ``explode`` (pairs sharing any
    element of these array columns), ``where`` (a further condition in the engine's SQL over
    ``l`` and ``r``) and ``max_records_per_key`` (a key value shared by more records than
    this pairs none of them under this rule: a common name does not make quadratic pairs)."""

    block_on: list[Column] = Field(min_length=1)
    explode: list[Column] = []
    where: str | None = Field(default=None, min_length=1)
    max_records_per_key: int | None = Field(default=None, ge=2)
    # A key over the cap pairs its records on finer keys instead: the key plus each of these
    # column lists, under the same cap (ModelConfig adds one rule per list after this one).
    refine_capped_keys: list[Annotated[list[Column], Field(min_length=1)]] = []
    # Set on those added rules: the block_on of the rule whose keys over the cap they refine.
    _refines: list[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _exploded_in_block_on(self) -> "KeyRule":
        missing = [c for c in self.explode if c not in self.block_on]
        if missing:
            raise ValueError(f"every exploded column must also be in 'block_on' (missing: {', '.join(missing)})")
        if self.max_records_per_key is not None and len(self.explode) > 1:
            raise ValueError("max_records_per_key works with at most one exploded column")
        if self.refine_capped_keys and self.max_records_per_key is None:
            raise ValueError("refine_capped_keys needs max_records_per_key (it refines the keys over that cap)")
        for cols in self.refine_capped_keys:
            if set(cols) & set(self.block_on):
                raise ValueError(f"refine_capped_keys: {', '.join(sorted(set(cols) & set(self.block_on)))} "
                                 "is already in 'block_on'")
        return self

    def refinements(self) -> list["KeyRule"]:
        """The rules ``refine_capped_keys`` adds: the key plus each list, same cap and condition."""
        out = []
        for cols in self.refine_capped_keys:
            rule = KeyRule(block_on=[*self.block_on, *cols], explode=self.explode, where=self.where,
                           max_records_per_key=self.max_records_per_key)
            rule._refines = list(self.block_on)
            out.append(rule)
        return out


# The name the rest of the code knew this rule by (block_on rules first came to explode lists).
ExplodeRule = KeyRule


def _rule_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "rule:explode" if "explode" in value or "block_on" in value else "rule:sql"
    if isinstance(value, BaseModel):
        return "rule:explode" if isinstance(value, KeyRule) else "rule:sql"
    return "rule:columns"


# A rule is a list of columns (equality on all), {sql: ...} or {block_on: [...]} with options
# (explode, where, max_records_per_key).
BlockingRule = Annotated[
    Annotated[Annotated[list[RuleKey], Field(min_length=1)], Tag("rule:columns")]
    | Annotated[SqlRule, Tag("rule:sql")]
    | Annotated[KeyRule, Tag("rule:explode")],
    Discriminator(_rule_kind),
]


class PriorConfig(Strict):
    """The prior (the chance that two random records match), one of three ways: estimated
    from records agreeing on ``deterministic_rules`` (with their assumed ``recall``), or given
    as a ``probability``, or as ``matches_per_record`` (how many other records the average
    record matches: 1 for two duplicate-free files linked; records per person - 1 in a
    dedupe), turned into a probability on each run's own record count."""

    deterministic_rules: list[BlockingRule] | None = Field(default=None, min_length=1)
    recall: float = Field(default=0.7, gt=0, le=1)
    probability: float | None = Field(default=None, gt=0, lt=1)
    matches_per_record: float | None = Field(default=None, gt=0)
    # With a saved model: estimate the prior again on this run's data (it falls as 1/N: a
    # model trained on a million records overstates it tenfold at ten million), or keep it.
    with_saved_model: Literal["reestimate", "keep"] = "reestimate"

    @model_validator(mode="after")
    def _one_way(self) -> "PriorConfig":
        given = [k for k in ("deterministic_rules", "probability", "matches_per_record") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give the prior one way: deterministic_rules (with recall), probability or matches_per_record"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class TrainingConfig(Strict):
    seed: int = 42
    u_max_pairs: float = Field(default=5e6, gt=0)
    # Splink 5 samples u in chunks and stops a comparison early once each of its levels has
    # this many non-matching pairs (None: never). One chunk scores every sampled pair in one
    # pass: no early stop, but no per-chunk overhead either (on small data it halves u's cost).
    u_chunks: int = Field(default=10, ge=1)
    u_min_count_per_level: int | None = Field(default=100, ge=1)
    prior: PriorConfig
    em_blocking_rules: list[BlockingRule] = Field(min_length=1)
    em_max_pairs: float | None = Field(default=2e6, gt=0)
    # EM iterates over the counts of each comparison pattern (fast, and independent of the
    # pairs sampled) unless this asks it to apply term-frequency adjustments pair by pair
    # (every iteration a pass over every sampled pair). Predict applies them either way.
    em_term_frequencies: bool = False


class DeterministicLink(Strict):
    name: str
    columns: list[Column] = Field(min_length=1)
    # A value shared by more records than this is a placeholder, not a person: its group is
    # not linked on agreement alone (the model still scores its pairs) and is counted.
    max_group_size: int = Field(default=50, ge=2)
    # Two records sharing the value are not linked on agreement alone when every one of
    # these columns is present on both and differs (another person's PNC ID keyed on a
    # record): the model still scores the pair.
    unless_disagree: list[Column] = []


class ConfirmedForenames(Strict):
    """``clustering.confirmed_forenames``: the columns holding a record's forenames and surnames."""

    forenames: list[Column] = Field(min_length=1)
    surnames: list[Column] = []


class ClusteringConfig(Strict):
    """How clusters are checked after connected components (``linkage.cluster``)."""

    # A link below this match weight may attach one record to a group, but not join two
    # groups of records that hold together without it (a chain through one weak link).
    fracture_match_weight: float = 10.0
    # Two different valid PNC IDs (or CRO numbers) in one person need a link at least this
    # strong to join them; weaker joins are cut.
    conflict_match_weight: float = 20.0
    # The identifiers checked for that conflict: a person holds one value of each (the
    # cross-government job adds the National Insurance and learner numbers).
    conflict_columns: list[Column] = ["pnc_key", "cro_number"]
    # Of those, the ones without a check character (the National Insurance number): two
    # values one keying error apart (one character, or two adjacent ones swapped) are one
    # person's number mistyped, not a conflict.
    conflict_one_edit_columns: list[Column] = []
    # Of those, the ones a person may give in full or in part (middle names: "ANN DONNA" on
    # one record, "DONNA" on another): two parts conflict only when no word of one's values
    # is a word of the other's (or one keying error from one, if also a one-edit column).
    conflict_word_columns: list[Column] = []
    # A link below the fracture weight is dropped when either record has a scored pair
    # into another person (by the links at or above the fracture weight) within this
    # many bits of it: a name shared by two people is no evidence for either. None: off.
    ambiguity_margin: float | None = 3.0
    # Columns that vouch for a weak link against that rival: when the record shares a value
    # (its postcode) with another record of the person it is linked to and with no record of
    # the rival, the rival does not make the link ambiguous. Empty: every rival counts.
    ambiguity_vouch_columns: list[Column] = []
    # Two groups of records whose dates of birth are all far apart (not one keying error or
    # a day/month swap apart) need a link at least this strong to join. None: off.
    date_conflict_match_weight: float | None = None
    # Evidence a weak link (below the fracture weight) also weighs against the person it
    # would join, when its own pair had none (one record lacks the value): column -> the
    # weight in bits when the record's value equals none the person's other records hold
    # (None: the trained model's weight for the last level of the comparison whose first
    # level is exact on the column, "the values differ"). The link is dropped when that
    # leaves it below the threshold.
    person_evidence: dict[str, float | None] = {}
    # A record no link reaches may be attached by its best scored pair when that pair is
    # below the threshold but at or above this match weight; the pair is then a weak link,
    # checked like the others (ambiguity_margin, person_evidence). None: off.
    attach_match_weight: float | None = None
    # A value of a conflict column held by at least this many records of a cluster is
    # confirmed (not one record keyed in error): two parts holding different confirmed
    # values are two people, and no link joins them, a deterministic one included (two
    # people of one name and date of birth, each with their own PNC ID). With
    # date_conflict_match_weight set, dates of birth too: two parts holding confirmed dates
    # that do not agree (dates_agree) are two people. None: off.
    confirmed_conflict_records: int | None = Field(default=None, ge=2)
    # Forenames too, on confirmed values only (needs confirmed_conflict_records): a record's
    # words in the ``forenames`` columns (forename, its canonical form, middle names; a
    # list column's items too) are its forenames, and two parts each holding forenames that
    # confirmed_conflict_records records hold are two people when no word of one part's
    # forenames agrees with a word of the other's (equal, an initial, one keying error) nor
    # (equal, one keying error) with a word of its ``surnames`` that the first part does not
    # hold (forename and surname swapped), and the parts share
    # no value of a conflict column (a PNC ID: one person known by two forenames): twins,
    # one surname, date of birth and address, two forenames. None: off.
    confirmed_forenames: ConfirmedForenames | None = None

    @model_validator(mode="after")
    def _subsets_of_conflict_columns(self) -> ClusteringConfig:
        for name, columns in (("conflict_one_edit_columns", self.conflict_one_edit_columns),
                              ("conflict_word_columns", self.conflict_word_columns)):
            stray = [c for c in columns if c not in self.conflict_columns]
            if stray:
                raise ValueError(f"{name} {stray} must be among conflict_columns")
        if self.confirmed_forenames is not None and self.confirmed_conflict_records is None:
            raise ValueError("confirmed_forenames needs confirmed_conflict_records (how many records confirm a value)")
        return self


LinkType = Literal["link_and_dedupe", "link_only", "dedupe_only"]


class ModelConfig(Strict):
    # link_and_dedupe: any two records may be the same person; link_only: only records of
    # different sources (each source free of duplicates); dedupe_only: only records of one source.
    link_type: LinkType = "link_and_dedupe"
    blocking_rules: list[BlockingRule] = Field(min_length=1)
    comparisons: list[ComparisonConfig] = Field(min_length=1)
    training: TrainingConfig
    threshold: float = Field(default=0.95, gt=0, lt=1)
    deterministic_links: list[DeterministicLink] = []
    clustering: ClusteringConfig = ClusteringConfig()
    max_comparisons: float = Field(default=2e9, gt=0)

    @model_validator(mode="after")
    def _unique_link_names(self) -> "ModelConfig":
        """A deterministic link's name is its links' kind (``deterministic: NAME``), by which
        clustering tells a gated rule's links from the others: two rules may not share one."""
        names = [link.name for link in self.deterministic_links]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"deterministic_links: each rule needs a name of its own ({', '.join(map(repr, repeated))} repeats)")
        return self

    @model_validator(mode="after")
    def _add_refinements(self) -> "ModelConfig":
        """Each rule's ``refine_capped_keys`` become rules of their own, right after it."""
        t = self.training
        if any(isinstance(r, KeyRule) and r.refine_capped_keys
               for r in [*t.em_blocking_rules, *(t.prior.deterministic_rules or [])]):
            raise ValueError("refine_capped_keys is for model.blocking_rules only")
        if not any(isinstance(r, KeyRule) and r.refine_capped_keys for r in self.blocking_rules):
            return self
        rules = [x for r in self.blocking_rules for x in [r, *(r.refinements() if isinstance(r, KeyRule) else [])]]
        return self.model_copy(update={"blocking_rules": rules})


# --- engine and outputs ----------------------------------------------------------------


class EngineConfig(Strict):
    name: Literal["duckdb", "spark"] = "duckdb"
    memory_limit: str | None = None  # e.g. "8GB"; default: 60% of the machine's memory
    threads: int | None = Field(default=None, ge=1)
    temp_directory: str | None = None  # spill folder; default: the run's work folder
    # The most DuckDB may spill to temp_directory (default: the free space on its disk).
    max_temp_directory_size: str | None = None
    # Where the job's tables live: in memory, spilling past memory_limit (faster), or in
    # a DuckDB file in the run's work folder (compressed on disk; kept with --keep-work).
    database: Literal["memory", "file"] = "memory"
    spark_master: str | None = None  # engine spark: e.g. spark://host:7077; default local[threads]
    spark_shuffle_partitions: int = Field(default=16, ge=1)

    @field_validator("memory_limit", "max_temp_directory_size")
    @classmethod
    def _memory(cls, v: str | None, info) -> str | None:
        if v is not None and not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", v):
            raise ValueError(f"{info.field_name} looks like '8GB' or '512MiB'")
        return v


class OutputsConfig(Strict):
    suppression_threshold: int = Field(default=10, ge=1)
    # Counts in the link-rate (bias) tables rounded to this base after suppression: with
    # suppression_threshold 10, rounding_base 5 is the ONS "10-5" rule.
    rounding_base: Annotated[int, Field(strict=True, ge=1)] | None = None
    # Person ids at more thresholds than model.threshold: one pseudonym column each on the
    # analyst tables (``person_id_0_99`` for 0.99), for sensitivity analyses.
    person_id_thresholds: list[Annotated[float, Field(gt=0, lt=1)]] = []
    # The link-rate breakdowns to publish (default: every built-in one the job can make and
    # every one a source declares under ``breakdowns``).
    bias_breakdowns: list[str] | None = None
    key_file: str | None = None
    id_registry: str | None = None


class ChecksConfig(Strict):
    # Warn (console and manifest) when cleaning empties more than this share of a field's
    # present values in one source: a cleaning rule that does not fit the data.
    emptied_share: float = Field(default=0.2, gt=0, le=1)


class JobConfig(Strict):
    job: str
    description: str = ""
    # The justice preset adds the justice person fields (names, aliases, dates of birth,
    # sex, PNC ID, CRO, prison number, CRN, postcode: linkage/presets/justice.yaml) to
    # ``fields`` when the config is read. Default: the preset when no ``fields`` are
    # declared, none otherwise.
    preset: Literal["justice", "none"] | None = None
    # The fields the job links on (the preset's included), each with a type: name,
    # person_name, date, identifier, postcode, text, number, email, category, list or set.
    fields: dict[str, AnyFieldType] = {}
    engine: EngineConfig = EngineConfig()
    sources: dict[str, SourceConfig] = Field(min_length=1)
    model: ModelConfig
    outputs: OutputsConfig = OutputsConfig()
    checks: ChecksConfig = ChecksConfig()

    @property
    def uses_justice_preset(self) -> bool:
        return self.preset == "justice" or (self.preset is None and not self.fields)

    @property
    def person_fields(self) -> tuple[str, ...]:
        """The fields a source may map: each declared field's inputs (the parts of a
        person_name), the preset's first."""
        return tuple(input_fields(dict(self.fields)))

    def record_columns(self) -> dict[str, str]:
        """Every column of the standardised records, with its DuckDB type."""
        cols = {"source_dataset": "VARCHAR", "record_id": "VARCHAR"}
        cols.update(declared_columns(dict(self.fields)))
        return cols

    def date_fields(self, source: str) -> list[tuple[str, list[str], str | None, str]]:
        """(field, formats, list separator or None, the key that sets the formats) of every
        date field the source maps: what the extract check reads its dates with."""
        src = self.sources[source]
        out: list[tuple[str, list[str], str | None, str]] = []
        for f, ftype in self.fields.items():
            element = ftype.of if isinstance(ftype, ListType) else ftype
            if f not in src.columns or not isinstance(element, DateType):
                continue
            formats = element.formats or list(src.date_formats)
            key = f"fields.{f}.formats" if element.formats else f"sources.{source}.date_formats"
            sep = (ftype.separator or src.list_separator) if isinstance(ftype, ListType) else None
            out.append((f, formats, sep, key))
        return out

    def date_columns(self) -> set[str]:
        return {c for c, t in self.record_columns().items() if t == "DATE"}

    @field_validator("job")
    @classmethod
    def _job_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("a job name uses letters, digits, '_', '.', '-'")
        return v


# --- loading ---------------------------------------------------------------------------


class LoadedConfig:
    """A validated config with where it came from."""

    def __init__(self, config: JobConfig, path: Path, text: str):
        self.config = config
        self.path = path
        self.text = text

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def source_path(self, name: str, data_dir: Path | None) -> Path:
        raw = Path(self.config.sources[name].path).expanduser()
        if raw.is_absolute():
            return raw
        return (data_dir if data_dir is not None else self.path.parent) / raw


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "(top level)"


# pydantic puts union member names in error locations; they mean nothing to a user.
_UNION_TAGS = {"rule:columns", "rule:sql", "rule:explode", *TYPES}


def _literal_message(value: Any, expected: str) -> str:
    choices = re.findall(r"'([^']*)'", expected)
    close = difflib.get_close_matches(str(value), choices, n=1)
    if close:
        return f"{value!r} is not allowed here; did you mean {close[0]!r}?"
    if len(choices) > 8:
        return f"{value!r} is not allowed here (choose from: {', '.join(choices)})"
    return f"{value!r} is not one of {expected}"


def _pydantic_problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        tag = next((p for p in e["loc"] if isinstance(p, str) and p in TYPES), None)
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS)))
        where = _loc(loc)
        if e["type"] == "extra_forbidden" and tag and loc and loc[0] == "fields":
            problems.append(f"{where}: {loc[-1]!r} is not an option of type {tag} "
                            f"(its options: {', '.join(o for o in TYPES[tag].model_fields if o != 'type')})")
        elif e["type"] == "union_tag_invalid":
            problems.append(f"{where}: unknown type {e['input'].get('type')!r} (types: {', '.join(TYPES)})"
                            if isinstance(e.get("input"), dict) else f"{where}: {e['msg']}")
        elif e["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key")
        elif e["type"] == "missing":
            problems.append(f"{where}: required key is missing")
        elif e["type"] == "literal_error":
            problems.append(f"{where}: {_literal_message(e['input'], e.get('ctx', {}).get('expected', ''))}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
    # A union error reports once per member; keep each line once, in order.
    return list(dict.fromkeys(problems))


# --- columns named anywhere in the config ------------------------------------------------------


_FIELD_TYPE = TypeAdapter(AnyFieldType)


def _unknown(value: str, known: list[str], what: str) -> str:
    close = difflib.get_close_matches(str(value), known, n=1)
    if close:
        return f"{value!r} is not allowed here; did you mean {close[0]!r}?"
    return f"{value!r} is not {what}"


def _sql_columns(sql: str, side_prefix: bool) -> set[str]:
    """Columns a ``sql:`` rule (``l.col``) or level (``col_l``) names."""
    if side_prefix:
        return set(re.findall(r'\b[lr]\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?', sql))
    stripped = re.sub(r"'(?:[^']|'')*'", "''", sql)  # not inside string literals
    return {m for m in re.findall(r'"?\b([A-Za-z_][A-Za-z0-9_]*?)_[lr]\b"?', stripped)}


def _column_problems(raw: dict) -> list[str]:
    """Every column the config names, checked against the columns its records will have.

    Works on the raw mapping, so these problems are listed together with the shape
    problems pydantic finds (one message for everything)."""
    fields_raw: dict = raw["fields"] if isinstance(raw.get("fields"), dict) else {}
    columns: dict[str, str] = {"source_dataset": "VARCHAR", "record_id": "VARCHAR"}
    uses_preset = raw.get("preset") == "justice"
    typed: dict[str, FieldType] = {}
    person_fields: list[str] = []
    for name, spec in fields_raw.items():
        try:
            typed[name] = _FIELD_TYPE.validate_python(spec)
            columns.update(typed[name].column_names(str(name)))
            person_fields += typed[name].inputs(str(name))
        except ValidationError:
            columns[str(name)] = "?"  # its own errors come from the full validation
            person_fields.append(str(name))
    known = sorted(columns)
    problems: list[str] = []

    def check(value: Any, where: str) -> None:
        if isinstance(value, str) and value not in columns:
            problems.append(f"{where}: {_unknown(value, known, 'a column of the records (a field or a key it derives)')}")

    def check_rule(rule: Any, where: str) -> None:
        if isinstance(rule, list):
            for i, k in enumerate(rule):
                check(k.get("column") if isinstance(k, dict) else k, f"{where}[{i}]")
        elif isinstance(rule, dict) and isinstance(rule.get("sql"), str):
            for col in sorted(_sql_columns(rule["sql"], side_prefix=True) - set(columns)):
                problems.append(f"{where}.sql: names column {col!r}, which the records will not have")
        elif isinstance(rule, dict):
            for key in ("block_on", "explode"):
                for i, c in enumerate(rule.get(key) or []):
                    check(c, f"{where}.{key}[{i}]")
            for i, cols in enumerate(rule.get("refine_capped_keys") or []):
                for k, c in enumerate(cols if isinstance(cols, list) else []):
                    check(c, f"{where}.refine_capped_keys[{i}][{k}]")
            if isinstance(rule.get("where"), str):
                for col in sorted(_sql_columns(rule["where"], side_prefix=True) - set(columns)):
                    problems.append(f"{where}.where: names column {col!r}, which the records will not have")

    for sname, src in (raw.get("sources") or {}).items() if isinstance(raw.get("sources"), dict) else []:
        if isinstance(src, dict) and isinstance(src.get("columns"), dict):
            for field in src["columns"]:
                if field not in person_fields:
                    hint = ("a declared field (declare it under fields:)" if not uses_preset
                            else "a person field of the justice preset or a declared field")
                    problems.append(f"sources.{sname}.columns.{field}: {_unknown(field, person_fields, hint)}")
    model: dict = raw["model"] if isinstance(raw.get("model"), dict) else {}
    for i, comp in enumerate(model.get("comparisons") or []):
        if not isinstance(comp, dict):
            continue
        where = f"model.comparisons[{i}]"
        if comp.get("field") is not None and comp["field"] not in typed and comp["field"] not in fields_raw:
            problems.append(f"{where}.field: {_unknown(comp['field'], list(fields_raw), 'a declared field')}")
        for j, level in enumerate(comp.get("levels") or []):
            if not isinstance(level, dict):
                continue
            for kind in ("exact", "overlap", "jaro_winkler", "levenshtein", "damerau_levenshtein", "date_swap",
                         "date_within", "unless_equal"):
                check(level.get(kind), f"{where}.levels[{j}].{kind}")
            for k, c in enumerate(level.get("reversed") or [] if isinstance(level.get("reversed"), list) else []):
                check(c, f"{where}.levels[{j}].reversed[{k}]")
            if isinstance(level.get("sql"), str):
                for col in sorted(_sql_columns(level["sql"], side_prefix=False) - set(columns)):
                    if col + "_l" in level["sql"] or col + "_r" in level["sql"]:
                        problems.append(f"{where}.levels[{j}].sql: names column {col!r}, which the records will not have")
        for k, c in enumerate(comp.get("null_when_missing") or []):
            check(c, f"{where}.null_when_missing[{k}]")
    for i, rule in enumerate(model.get("blocking_rules") or []):
        check_rule(rule, f"model.blocking_rules[{i}]")
    training: dict = model["training"] if isinstance(model.get("training"), dict) else {}
    for i, rule in enumerate(training.get("em_blocking_rules") or []):
        check_rule(rule, f"model.training.em_blocking_rules[{i}]")
    prior: dict = training["prior"] if isinstance(training.get("prior"), dict) else {}
    for i, rule in enumerate(prior.get("deterministic_rules") or []):
        check_rule(rule, f"model.training.prior.deterministic_rules[{i}]")
    for i, link in enumerate(model.get("deterministic_links") or []):
        if isinstance(link, dict):
            for key in ("columns", "unless_disagree"):
                for k, c in enumerate(link.get(key) or []):
                    check(c, f"model.deterministic_links[{i}].{key}[{k}]")
    clustering: dict = model["clustering"] if isinstance(model.get("clustering"), dict) else {}
    for key in ("conflict_columns", "conflict_one_edit_columns", "conflict_word_columns", "ambiguity_vouch_columns"):
        for k, c in enumerate(clustering.get(key) or [] if isinstance(clustering.get(key), list) else []):
            check(c, f"model.clustering.{key}[{k}]")
    forenames = clustering.get("confirmed_forenames")
    for key in ("forenames", "surnames"):
        cols = forenames.get(key) if isinstance(forenames, dict) else None
        for k, c in enumerate(cols if isinstance(cols, list) else []):
            check(c, f"model.clustering.confirmed_forenames.{key}[{k}]")
    return problems


def _resolve_comparisons(cfg: JobConfig) -> JobConfig:
    """``{field: X}`` comparisons get their type's standard levels; every comparison a name."""
    out = []
    for comp in cfg.model.comparisons:
        update: dict[str, Any] = {"name": comp.label}
        if comp.levels is None and comp.field is not None:
            levels = cfg.fields[comp.field].default_levels(comp.field)
            if comp.tf_adjustment is not None:
                levels = [{**lv, "tf_adjustment": comp.tf_adjustment} if "exact" in lv and i == 0 else lv
                          for i, lv in enumerate(levels)]
            update["levels"] = [LevelConfig.model_validate(lv) for lv in levels]
        out.append(comp.model_copy(update=update))
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"comparisons": out})})


def _expand_preset(raw: dict) -> tuple[dict, list[str]]:
    """The raw config with its preset's fields written into ``fields:`` (before the job's
    own) and ``preset`` resolved to ``justice`` or ``none``; and the job's fields that
    redefine a preset field differently."""
    fields_raw = raw.get("fields")
    preset = raw.get("preset")
    if preset is None:
        preset = "none" if fields_raw else "justice"
    if preset not in PRESETS:
        return {**raw, "preset": preset}, []
    own: dict = fields_raw if isinstance(fields_raw, dict) else {}
    specs = preset_field_specs(preset)
    problems = []
    for name, spec in own.items():
        if name not in specs:
            continue
        try:
            same = _FIELD_TYPE.validate_python(spec) == _FIELD_TYPE.validate_python(specs[name])
        except ValidationError:
            continue  # its own errors come from the full validation
        if not same:
            problems.append(
                f"fields.{name}: the {preset} preset declares {name!r} (type {specs[name]['type']}) differently; "
                f"declare it exactly as linkage/presets/{preset}.yaml does, rename it, "
                "or set preset: none and declare every field"
            )
    return {**raw, "preset": preset, "fields": {**specs, **own}}, problems


def _sql_keyword(column: str) -> bool:
    """Would Splink's SQL generator (sqlglot, DuckDB dialect) quote the column, as it does a
    reserved word (``by``, ``order``, ``from``)? Splink names term-frequency tables after
    the quoted name, which is then no SQL name at all."""
    import sqlglot.expressions as exp  # Splink's own dependency; only when validating

    return exp.to_identifier(column).sql(dialect="duckdb") != column


def _semantic_problems(cfg: JobConfig) -> list[str]:
    problems = []
    for name in cfg.fields:
        if not _NAME.match(name):
            problems.append(f"fields.{name}: field names use lower-case letters, digits and '_'")
    seen: dict[str, str] = {}
    for name, ftype in cfg.fields.items():
        for col in [name] if isinstance(ftype, SetType) else ftype.column_names(name):
            if _sql_keyword(col):
                problems.append(
                    f"fields.{name}: its column {col!r} is an SQL keyword, which Splink cannot name its tables "
                    f"after; rename the field (a source's column can keep its name: columns: {{{col}_: {col}}})")
            if col in seen and seen[col] != name:
                problems.append(f"fields.{name}: its column {col!r} clashes with field {seen[col]!r}; rename one")
            seen.setdefault(col, name)
    inputs: dict[str, str] = {}
    for name, ftype in cfg.fields.items():
        for i in ftype.inputs(name):
            if not _NAME.match(i):
                problems.append(f"fields.{name}.parts.{i}: part names use lower-case letters, digits and '_'")
            if i in inputs and inputs[i] != name:
                problems.append(f"fields.{name}: its input {i!r} is also an input of field {inputs[i]!r}; rename one")
            inputs.setdefault(i, name)
        if isinstance(ftype, SetType):
            kinds = set()
            for k, of in enumerate(ftype.union):
                other = cfg.fields.get(of)
                if other is None or isinstance(other, (SetType, PersonNameType)):
                    problems.append(f"fields.{name}.union[{k}]: {of!r} is not a declared field with values "
                                    f"(declared: {', '.join(f for f, t in cfg.fields.items() if not isinstance(t, (SetType, PersonNameType)))})")
                else:
                    kinds.add(getattr(other, "of", other).value_type)
            if len(kinds) > 1:
                problems.append(f"fields.{name}.union: the fields of a set hold one kind of value (here: {', '.join(sorted(kinds))})")
    if cfg.model.link_type == "link_only" and len(cfg.sources) < 2:
        problems.append("model.link_type: link_only links records of different sources: it needs two sources or more")
    for name, src in cfg.sources.items():
        where = f"sources.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: source names use lower-case letters, digits and '_'")
        declared = set(src.columns) - set(input_fields(preset_fields("justice")))  # the job's own fields
        if cfg.uses_justice_preset and not declared and not ({"first_name", "surname", "full_name"} & set(src.columns)):
            problems.append(f"{where}.columns: map at least one of first_name, surname or full_name")
        mapped = set(src.columns.values()) | {src.record_id}
        for col, spec in src.carry_columns.items():
            if col in mapped and spec.how == "keep":
                field = next((f for f, c in src.columns.items() if c == col), "record_id")
                problems.append(
                    f"{where}.carry.{col}: this column is the source's {field}, an identifier; "
                    "analysts may not receive it (remove it, or coarsen it: year, postcode_area)"
                )
        for group, col in src.breakdowns.items():
            if not _NAME.match(group):
                problems.append(f"{where}.breakdowns.{group}: breakdown names use lower-case letters, digits and '_'")
            elif group in BUILT_IN_BREAKDOWNS:
                problems.append(f"{where}.breakdowns.{group}: {group!r} is a built-in breakdown; choose another name")
            if col in mapped:
                field = next((f for f, c in src.columns.items() if c == col), "record_id")
                problems.append(
                    f"{where}.breakdowns.{group}: the column {col!r} is the source's {field}, an identifier; "
                    "link rates may not be broken down by an identifier (name a category column such as an "
                    "ethnicity code)"
                )
        if src.age_at and not ("date_of_birth" in src.columns and isinstance(cfg.fields.get("date_of_birth"), DateType)):
            problems.append(f"{where}.age_at: needs columns.date_of_birth to compute an age")
        if len(src.date_formats) and not all("%" in f for f in src.date_formats):
            problems.append(f"{where}.date_formats: each format is a strptime pattern such as '%d/%m/%Y'")
    problems += _outputs_problems(cfg)
    names = [c.label for c in cfg.model.comparisons]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"model.comparisons: the name {dup!r} is used twice")
    encoded = [n for n, f in cfg.fields.items() if f.type == "encoded"]
    if cfg.engine.name == "spark" and encoded:
        problems.append(f"engine: encoded fields ({', '.join(encoded)}) are compared as DuckDB bit strings; use engine duckdb")
    if cfg.engine.name != "spark" and (cfg.engine.spark_master or "spark_shuffle_partitions" in cfg.engine.model_fields_set):
        problems.append("engine: spark_master and spark_shuffle_partitions apply to engine name spark only")
    return problems


def _outputs_problems(cfg: JobConfig) -> list[str]:
    """Extra person-id thresholds and the link-rate breakdowns."""
    problems = []
    seen = [round(t, 6) for t in cfg.outputs.person_id_thresholds]
    for t in sorted({t for t in seen if seen.count(t) > 1}):
        problems.append(f"outputs.person_id_thresholds: {t} is listed twice")
    if round(cfg.model.threshold, 6) in seen:
        problems.append(f"outputs.person_id_thresholds: {cfg.model.threshold} is model.threshold, whose ids are person_id")
    if cfg.outputs.bias_breakdowns is not None:
        declared = {g for src in cfg.sources.values() for g in src.breakdowns}
        identifying = {i for n, f in cfg.fields.items() if f.is_identifying for i in [n, *f.inputs(n)]}
        identifying |= {c for src in cfg.sources.values() for c in [*src.columns.values(), src.record_id]}
        for b in cfg.outputs.bias_breakdowns:
            if b in identifying and b not in BUILT_IN_BREAKDOWNS and b not in declared:
                problems.append(
                    f"outputs.bias_breakdowns: {b!r} is an identifier; link rates may not be broken down by one "
                    f"(use {', '.join(BUILT_IN_BREAKDOWNS)} or a breakdown a source declares)"
                )
            elif b not in BUILT_IN_BREAKDOWNS and b not in declared:
                known = [*BUILT_IN_BREAKDOWNS, *sorted(declared)]
                problems.append(f"outputs.bias_breakdowns: {b!r} is not a breakdown (choose from: {', '.join(known)})")
    return problems


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, mark: Any):
        self.key, self.problem_mark = key, mark
        self.problem = f"the key {key!r} is given twice in one mapping (a field or source declared twice?)"


# libyaml's parser where PyYAML was built with it (a tenth of the pure-Python parser's time:
# ``linkage find`` reads the config at every lookup); the same safe constructor either way.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config(text: str, path: Path) -> JobConfig:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(str(path), [f"not valid YAML at {where}: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["the file must hold a mapping of keys (job, sources, model, ...)"])
    raw, problems = _expand_preset(raw)
    problems += _column_problems(raw)
    try:
        cfg = JobConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(str(path), list(dict.fromkeys(_pydantic_problems(err) + problems))) from None
    problems += _semantic_problems(cfg)
    if problems:
        raise ConfigError(str(path), problems)
    return _resolve_comparisons(cfg)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a job config; raise ``ConfigError`` listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["no such config file"])
    text = path.read_text(encoding="utf-8")
    return LoadedConfig(parse_config(text, path), path, text)


# --- the config against the data --------------------------------------------------------


def needed_columns(src: SourceConfig) -> list[tuple[str, str]]:
    """(key path, column) for every extract column the source config names."""
    out = [("record_id", src.record_id)]
    out += [(f"columns.{field}", col) for field, col in src.columns.items()]
    out += [(f"carry.{col}", col) for col in src.carry]
    out += [("age_at", col) for col in src.age_at]
    out += [(f"breakdowns.{group}", col) for group, col in src.breakdowns.items()]
    return out


def check_against_data(loaded: LoadedConfig, headers: dict[str, tuple[Path, list[str]]]) -> None:
    """Every column the config names exists in its extract; all misses reported together.

    ``headers`` maps source name -> (file, its column names).
    """
    problems = []
    for name, src in loaded.config.sources.items():
        file, cols = headers[name]
        have = set(cols)
        shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
        for key, col in needed_columns(src):
            if col not in have:
                problems.append(
                    f"sources.{name}.{key}: column {col!r} not found in {file.name} (has: {shown}). "
                    "Fix the column name in the config."
                )
    # Encoded fields: each extract's encoding metadata must match what the job expects.
    problems += encoding_problems(dict(loaded.config.fields), loaded.config.sources, headers)
    if problems:
        raise ConfigError(str(loaded.path), problems)


__all__ = [
    "JobConfig",
    "LoadedConfig",
    "SourceConfig",
    "ComparisonConfig",
    "LevelConfig",
    "load_config",
    "parse_config",
    "check_against_data",
    "needed_columns",
    "DATE_FIELDS",
]
