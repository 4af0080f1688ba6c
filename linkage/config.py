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
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from linkage.errors import ConfigError
from linkage.schema import DATE_FIELDS, PERSON_FIELDS, STANDARD_COLUMNS

PersonField = Literal[PERSON_FIELDS]  # type: ignore[valid-type]
StandardColumn = Literal[tuple(STANDARD_COLUMNS)]  # type: ignore[valid-type]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sources ---------------------------------------------------------------------------

CarryTransform = Literal["keep", "year", "month", "postcode_area", "postcode_district"]


class SourceConfig(Strict):
    path: str
    format: Literal["csv", "parquet"] | None = None
    record_id: str
    columns: dict[PersonField, str] = Field(min_length=1)
    date_formats: list[str] = Field(default=["%Y-%m-%d"], min_length=1)
    list_separator: str = Field(default=";", min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    # Non-identifying columns for analysts: column -> how to coarsen it.
    carry: dict[str, CarryTransform] = {}
    # Date columns at which to give the person's age (in whole years) instead of a date of birth.
    age_at: list[str] = []
    # The source holds at most one record per person: clustering keeps one record of it
    # per person, the one with the best-scoring link (linkage.cluster).
    duplicate_free: bool = False

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
    "damerau_levenshtein",
    "date_swap",
    "date_within",
    "sql",
)


class LevelConfig(Strict):
    """One comparison level; exactly one of the kind keys is set."""

    exact: StandardColumn | None = None
    reversed: list[StandardColumn] | None = None
    overlap: StandardColumn | None = None
    jaro_winkler: StandardColumn | None = None
    damerau_levenshtein: StandardColumn | None = None
    date_swap: StandardColumn | None = None
    date_within: StandardColumn | None = None
    sql: str | None = None

    threshold: float | None = Field(default=None, gt=0, le=1)  # jaro_winkler
    distance: int | None = Field(default=None, ge=1)  # damerau_levenshtein
    days: int | None = Field(default=None, ge=1)  # date_within
    tf_adjustment: bool = False  # exact
    # The level applies only where this column differs (or is missing) on the two sides:
    # an alias level that must not re-count a plain match other comparisons already count.
    unless_equal: StandardColumn | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "LevelConfig":
        kinds = [k for k in LEVEL_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a level needs exactly one of {', '.join(LEVEL_KINDS)} (got {len(kinds)})")
        kind = kinds[0]
        needs = {"jaro_winkler": "threshold", "damerau_levenshtein": "distance", "date_within": "days"}
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
    name: str
    levels: list[LevelConfig] = Field(min_length=1)
    # The comparison is null (no evidence) when any of these is missing; default: the
    # first level's columns.
    null_when_missing: list[StandardColumn] | None = None

    @property
    def null_columns(self) -> list[str]:
        if self.null_when_missing is not None:
            return list(self.null_when_missing)
        return self.levels[0].columns


class SqlRule(Strict):
    """A blocking rule in the engine's SQL, e.g. ``l.surname = r.surname``; it must hold an
    equality, or it compares every pair of records."""

    sql: str


class ExplodeRule(Strict):
    """Equality on ``on`` after exploding the named array columns: pairs sharing any element."""

    block_on: list[StandardColumn] = Field(min_length=1)
    explode: list[StandardColumn] = Field(min_length=1)

    @model_validator(mode="after")
    def _exploded_in_block_on(self) -> "ExplodeRule":
        missing = [c for c in self.explode if c not in self.block_on]
        if missing:
            raise ValueError(f"every exploded column must also be in 'block_on' (missing: {', '.join(missing)})")
        return self


def _rule_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "rule:explode" if "explode" in value or "block_on" in value else "rule:sql"
    if isinstance(value, BaseModel):
        return "rule:explode" if isinstance(value, ExplodeRule) else "rule:sql"
    return "rule:columns"


# A rule is a list of columns (equality on all), {sql: ...} or {block_on: [...], explode: [...]}.
BlockingRule = Annotated[
    Annotated[Annotated[list[StandardColumn], Field(min_length=1)], Tag("rule:columns")]
    | Annotated[SqlRule, Tag("rule:sql")]
    | Annotated[ExplodeRule, Tag("rule:explode")],
    Discriminator(_rule_kind),
]


class PriorConfig(Strict):
    deterministic_rules: list[BlockingRule] = Field(min_length=1)
    recall: float = Field(default=0.7, gt=0, le=1)
    # With a saved model: estimate the prior again on this run's data (it falls as 1/N: a
    # model trained on a million records overstates it tenfold at ten million), or keep it.
    with_saved_model: Literal["reestimate", "keep"] = "reestimate"


class TrainingConfig(Strict):
    seed: int = 42
    u_max_pairs: float = Field(default=5e6, gt=0)
    prior: PriorConfig
    em_blocking_rules: list[BlockingRule] = Field(min_length=1)
    em_max_pairs: float | None = Field(default=2e6, gt=0)


class DeterministicLink(Strict):
    name: str
    columns: list[StandardColumn] = Field(min_length=1)
    # A value shared by more records than this is a placeholder, not a person: its group is
    # not linked on agreement alone (the model still scores its pairs) and is counted.
    max_group_size: int = Field(default=50, ge=2)
    # Two records sharing the value are not linked on agreement alone when every one of
    # these columns is present on both and differs (another person's PNC ID keyed on a
    # record): the model still scores the pair.
    unless_disagree: list[StandardColumn] = []


class ClusteringConfig(Strict):
    """How clusters are checked after connected components (``linkage.cluster``)."""

    # A link below this match weight may attach one record to a group, but not join two
    # groups of records that hold together without it (a chain through one weak link).
    fracture_match_weight: float = 10.0
    # Two different valid PNC IDs (or CRO numbers) in one person need a link at least this
    # strong to join them; weaker joins are cut.
    conflict_match_weight: float = 20.0
    # A link below the fracture weight is dropped when either record has a scored pair
    # into another person (by the links at or above the fracture weight) within this
    # many bits of it: a name shared by two people is no evidence for either. None: off.
    ambiguity_margin: float | None = 3.0


class ModelConfig(Strict):
    blocking_rules: list[BlockingRule] = Field(min_length=1)
    comparisons: list[ComparisonConfig] = Field(min_length=1)
    training: TrainingConfig
    threshold: float = Field(default=0.95, gt=0, lt=1)
    deterministic_links: list[DeterministicLink] = []
    clustering: ClusteringConfig = ClusteringConfig()
    max_comparisons: float = Field(default=2e9, gt=0)


# --- engine and outputs ----------------------------------------------------------------


class EngineConfig(Strict):
    name: Literal["duckdb", "spark"] = "duckdb"
    memory_limit: str | None = None  # e.g. "8GB"; default: 60% of the machine's memory
    threads: int | None = Field(default=None, ge=1)
    temp_directory: str | None = None  # spill folder; default: the run's work folder
    # Where the job's tables live: in memory, spilling past memory_limit (faster), or in
    # a DuckDB file in the run's work folder (compressed on disk; kept with --keep-work).
    database: Literal["memory", "file"] = "memory"
    spark_master: str | None = None  # engine spark: e.g. spark://host:7077; default local[threads]
    spark_shuffle_partitions: int = Field(default=16, ge=1)

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", v):
            raise ValueError("memory_limit looks like '8GB' or '512MiB'")
        return v


class OutputsConfig(Strict):
    suppression_threshold: int = Field(default=10, ge=1)
    key_file: str | None = None
    id_registry: str | None = None


class JobConfig(Strict):
    job: str
    description: str = ""
    engine: EngineConfig = EngineConfig()
    sources: dict[str, SourceConfig] = Field(min_length=1)
    model: ModelConfig
    outputs: OutputsConfig = OutputsConfig()

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
_UNION_TAGS = {"rule:columns", "rule:sql", "rule:explode"}


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
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS)))
        where = _loc(loc)
        if e["type"] == "extra_forbidden":
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


def _semantic_problems(cfg: JobConfig) -> list[str]:
    problems = []
    for name, src in cfg.sources.items():
        where = f"sources.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: source names use lower-case letters, digits and '_'")
        if not ({"first_name", "surname", "full_name"} & set(src.columns)):
            problems.append(f"{where}.columns: map at least one of first_name, surname or full_name")
        mapped = set(src.columns.values()) | {src.record_id}
        for col, how in src.carry.items():
            if col in mapped and how == "keep":
                field = next((f for f, c in src.columns.items() if c == col), "record_id")
                problems.append(
                    f"{where}.carry.{col}: this column is the source's {field}, an identifier; "
                    "analysts may not receive it (remove it, or coarsen it: year, postcode_area)"
                )
        if src.age_at and "date_of_birth" not in src.columns:
            problems.append(f"{where}.age_at: needs columns.date_of_birth to compute an age")
        if len(src.date_formats) and not all("%" in f for f in src.date_formats):
            problems.append(f"{where}.date_formats: each format is a strptime pattern such as '%d/%m/%Y'")
    names = [c.name for c in cfg.model.comparisons]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"model.comparisons: the name {dup!r} is used twice")
    if cfg.engine.name != "spark" and (cfg.engine.spark_master or "spark_shuffle_partitions" in cfg.engine.model_fields_set):
        problems.append("engine: spark_master and spark_shuffle_partitions apply to engine name spark only")
    return problems


def parse_config(text: str, path: Path) -> JobConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(str(path), [f"not valid YAML at {where}: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["the file must hold a mapping of keys (job, sources, model, ...)"])
    try:
        cfg = JobConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(str(path), _pydantic_problems(err)) from None
    problems = _semantic_problems(cfg)
    if problems:
        raise ConfigError(str(path), problems)
    return cfg


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
