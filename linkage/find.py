"""Find one person: score one or a few records against a finished run with the run's model.

``linkage find RUN_DIR --record FILE [--source NAME]``: the records (CSV, or JSON: one
object or a list of them) are laid out like one of the job's sources (default: the first)
and standardised as the job does; Splink's ``predict_between`` scores them against the
run's standardised records (``restricted/standardised.parquet``) with the run's blocking
rules and model (``restricted/model.json``), term frequencies taken from the run's records.
Only the run's records some blocking rule pairs with a record looked up are read in full.
Each candidate person (the run's crosswalk) comes with its best pair's match weight and
probability and the comparisons that agreed (those whose level counts for a match: a
positive partial match weight, Splink's ``mw_``), best first. The answer goes to the console and to
``restricted/find/`` (owner-only): it names people and records.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from linkage.errors import InputError, UsageError
from linkage.publish import make_private_dir, private_umask, read_run_manifest, restrict_tree


def q(name: str) -> str:
    """A quoted identifier, as ``linkage.sources.q`` (imported here, it would import the config's
    and field types' models: a third of a warm find's CPU)."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """A string literal, as ``linkage.sources.lit``."""
    return "'" + value.replace("'", "''") + "'"


FIND_DIR = Path("restricted") / "find"
INDEX = FIND_DIR / "index.duckdb"
LINES, OFFSETS = "records.jsonl", "records.offsets"  # beside the index
PERSON = ("person_id", "person_key", "cluster_size")  # the crosswalk's columns a find shows
FIRST_FIND_ID = -1  # the records looked up take negative node ids: the run's are 1..n


@dataclass(frozen=True)
class FindResult:
    candidates: list[dict[str, Any]]  # one per (looked-up record, candidate person), best first
    records: int
    seconds: dict[str, float]
    out: Path


def _read_records(path: Path) -> tuple[list[str], list[dict[str, str | None]]]:
    """(columns, rows) of a CSV or JSON record file, every value text or None. Read without
    pandas: a warm find's time is mostly imports."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: record file not found")
    kind = "JSON" if path.suffix.lower() == ".json" else "CSV"
    try:
        if kind == "JSON":
            data = json.loads(path.read_text(encoding="utf-8"))
            objs = [data] if isinstance(data, dict) else data
            if not isinstance(objs, list) or not objs or not all(isinstance(r, dict) for r in objs):
                raise InputError(f"{path}: a JSON record file holds one object or a list of objects (column: value)")
            rows = [{str(k): (None if v is None else str(v)) for k, v in r.items()} for r in objs]
            columns = list(dict.fromkeys(k for r in rows for k in r))
        else:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                if not reader.fieldnames:
                    raise ValueError("no header")
                columns = list(reader.fieldnames)
            for i, r in enumerate(rows):
                if None in r:  # more cells than the header has columns
                    raise InputError(f"{path}: row {i + 2}: more values than the header has columns")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except (ValueError, csv.Error) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: not a readable {kind} file") from None
    if not rows:
        raise InputError(f"{path}: no records to find")
    return columns, [{c: r.get(c) for c in columns} for r in rows]


def _levels(saved: dict) -> dict[str, list[tuple[float, str]]]:
    """comparison -> (match weight, label) of each level with m and u, from Splink's model JSON:
    Splink's scored pairs carry each comparison's partial match weight (``mw_``), not its level."""
    out = {}
    for comp in saved["comparisons"]:
        out[comp["output_column_name"]] = [
            (math.log2(lv["m_probability"] / lv["u_probability"]), lv.get("label_for_charts", ""))
            for lv in comp["comparison_levels"]
            if not lv.get("is_null_level") and lv.get("m_probability") and lv.get("u_probability")]
    return out


def _label(levels: list[tuple[float, str]], mw: float) -> str:
    best = min(levels, key=lambda lv: abs(lv[0] - mw), default=None)
    return best[1] if best is not None and abs(best[0] - mw) < 1e-6 else "agrees"


INDEX_VERSION = 5  # what the index holds; an index of another version is built again (4: the records' lines, 5: key sizes)


def _explode_select(rule) -> tuple[str, str]:
    """An exploding rule's columns (its lists unnested) and its join condition."""
    cols = [str(c) for c in rule.block_on]
    sel = ", ".join(f"unnest({q(c)}) AS {q(c)}" if c in rule.explode else q(c) for c in cols)
    return sel, " AND ".join(f"l.{q(c)} = r.{q(c)}" for c in cols)


def _candidates_sql(cfg, records: str = "idx.records") -> str:
    """node ids of the run's records (``records``) that a blocking rule pairs with a record
    of ``find_nodes``: equality joins against the index's narrow tables sorted by each
    rule's columns (``idx.rule_<i>``: DuckDB skips the row groups the looked-up values
    cannot be in) or its unnested lists (``idx.explode_<i>``); a rule in SQL against
    every record."""
    from linkage import model
    from linkage.config import ExplodeRule, SqlRule

    parts = []
    for i, rule in enumerate(cfg.model.blocking_rules):
        if isinstance(rule, ExplodeRule):
            sel, on = _explode_select(rule)
            parts.append(f"SELECT r.node_id FROM idx.{q(f'explode_{i}')} r SEMI JOIN (SELECT {sel} FROM find_nodes) l ON {on}")
        elif isinstance(rule, SqlRule):
            parts.append(f"SELECT r.node_id FROM {records} r SEMI JOIN find_nodes l ON {rule.sql}")
        else:
            parts.append(f"SELECT r.node_id FROM idx.{q(f'rule_{i}')} r SEMI JOIN find_nodes l ON {model.rule_sql(rule)}")
    return " UNION ".join(parts)


def _capped(cfg) -> list[tuple[str, Any]]:
    """(column, rule) of each column a capped blocking rule joins on (rules differing only in
    ``where`` share one), as ``model.add_key_caps`` adds them."""
    from linkage import model

    out: dict[str, Any] = {}
    for rule in model.capped_rules(cfg.model.blocking_rules):
        out.setdefault(model.cap_column(rule), rule)
    return list(out.items())


def _keyed(rule, table: str) -> tuple[str, list[str]]:
    """``table``'s records by a capped rule's key (``model.add_key_caps``'s own subquery) and
    the columns the key's records are counted by."""
    from linkage import model

    target = model.capped_key(rule)
    assert target is not None
    others = [c for c in rule.block_on if c != target]
    return model._keyed(rule, target, others, table), ["__lk_key", *others]


def _key_sizes_sql(rule, table: str) -> str:
    """How many of ``table``'s records hold each key of a capped rule, as ``model.add_key_caps``
    counts them."""
    keyed, group = _keyed(rule, table)
    present = " AND ".join(f"{q(c)} IS NOT NULL" for c in group)
    return f"SELECT {', '.join(q(c) for c in group)}, count(*) AS n FROM {keyed} WHERE {present} GROUP BY ALL"


def add_key_caps(con: Any, cfg: Any, table: str = "find_nodes") -> None:
    """Set ``table``'s capped columns as ``model.add_key_caps(..., counts_from=<the run's
    records>)`` sets them: a record looked up keeps a key the run kept (held by at most the
    cap's records) and loses one the run left out. The run's counts come from the index's
    ``keys_<column>`` (sorted by key: a find reads the row group its keys are in), not from
    counting the run's records again at every find. ``table``'s capped columns are NULL."""
    for col, rule in _capped(cfg):
        keyed, group = _keyed(rule, table)
        on = " AND ".join(f"s.{q(c)} = k.{q(c)}" for c in group)
        kept = (f"SELECT k.node_id, {{}} AS v FROM {keyed} k JOIN idx.{q('keys_' + col)} s ON {on} "
                f"WHERE s.n <= {int(rule.max_records_per_key)}")
        kept = kept.format("list(k.__lk_key)") + " GROUP BY k.node_id" if rule.explode else kept.format("k.__lk_key")
        con.execute(f"UPDATE {table} SET {q(col)} = c.v FROM ({kept}) c WHERE {table}.node_id = c.node_id")


def _index_stamp(manifest: dict[str, Any]) -> str:
    return (f"{INDEX_VERSION}|{manifest.get('created_utc')}|{manifest.get('config_sha256')}|"
            f"{manifest.get('total_seconds')}")


def _attach_index(con: duckdb.DuckDBPyConnection, path: Path, stamp: str) -> bool:
    """Attach the lookup index as ``idx`` if it is this run's (its stamp); False (nothing
    attached) if it is missing, stale or broken."""
    if not path.is_file():
        return False
    try:
        con.execute(f"ATTACH {lit(str(path))} AS idx (READ_ONLY)")
    except duckdb.Error:
        return False
    try:
        if con.execute("SELECT stamp FROM idx.meta").fetchall() == [(stamp,)]:
            return True
    except duckdb.Error:
        pass
    con.execute("DETACH idx")
    return False


def prepare_index(run_dir: Path, manifest: dict[str, Any], cfg: Any) -> tuple[Path, bool]:
    """``restricted/find/index.duckdb``: the run's standardised records numbered (``records``),
    each blocking rule's columns (``rule_<i>``) or unnested lists
    (``explode_<i>``) with the node ids, sorted by their values, how many records hold each key of a
    capped rule (``keys_<column>``), their term-frequency tables (``tf_<column>``, as Splink names
    its columns) and the crosswalk, in DuckDB's own columnar storage; returns its path and whether it was
    built now. Built on the first find against a run (the cold call), then reused while
    the run at ``run_dir`` is the same one (its manifest's stamp).

    Beside it, ``records.jsonl`` (each record as one line of JSON, by node id: its columns
    keyed by position, then its person, ``p`` whether the crosswalk has it and ``p0``...) and
    ``records.offsets`` (where each line starts: little-endian 64-bit integers): a find reads
    its candidates' lines directly, where fetching a few hundred scattered records from
    DuckDB's columns decompressed a vector of every column for each (about a second at a
    million records)."""
    restricted = Path(run_dir) / "restricted"
    path = Path(run_dir) / INDEX
    stamp = _index_stamp(manifest)
    check = duckdb.connect()
    try:
        if _attach_index(check, path, stamp):
            return path, False
    finally:
        check.close()
    from linkage.incremental import tf_columns  # the cold call only: it reaches Splink

    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    lines, offsets = (p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (path.parent / LINES, path.parent / OFFSETS))
    from linkage.engines import configure_duckdb  # the cold call only

    with private_umask():
        con = duckdb.connect(str(tmp))
        try:
            # The job's memory limit and spill folder (by default beside the index, in the
            # restricted zone): at ten million records the build held 12.5 GiB without them.
            configure_duckdb(con, cfg.engine, path.parent)
            std = lit(str(restricted / "standardised.parquet"))
            con.execute(f"""CREATE TABLE records AS SELECT row_number() OVER (ORDER BY source_dataset, record_id) AS node_id, *
                            FROM read_parquet({std}) ORDER BY node_id""")
            con.execute(
                f"""CREATE TABLE crosswalk AS SELECT r.node_id, x.person_id, x.person_key, x.cluster_size
                FROM read_parquet({lit(str(restricted / 'crosswalk.parquet'))}) x
                JOIN records r ON r.source_dataset = x.source_dataset AND CAST(r.record_id AS VARCHAR) = CAST(x.record_id AS VARCHAR)
                ORDER BY r.node_id""")
            columns = [c for (c, *_) in con.execute("DESCRIBE records").fetchall()]
            keyed = ", ".join(f"r.{q(c)} AS {q(str(i))}" for i, c in enumerate(columns))
            person = ", ".join(f"x.{q(c)} AS {q(f'p{i}')}" for i, c in enumerate(PERSON))
            con.execute(f"COPY (SELECT {keyed}, x.node_id IS NOT NULL AS p, {person} FROM records r "
                        f"LEFT JOIN crosswalk x USING (node_id) ORDER BY r.node_id) TO {lit(str(lines))} (FORMAT json)")
            count = _write_offsets(lines, offsets)
            con.execute("CREATE TABLE lines AS SELECT ? AS bytes, ? AS records", [lines.stat().st_size, count])
            from linkage.config import ExplodeRule, SqlRule, key_column

            for i, rule in enumerate(cfg.model.blocking_rules):
                if isinstance(rule, ExplodeRule):
                    sel, _ = _explode_select(rule)
                    con.execute(f"CREATE TABLE {q(f'explode_{i}')} AS SELECT * FROM (SELECT DISTINCT {sel}, node_id "
                                f"FROM records) ORDER BY ALL")
                elif not isinstance(rule, SqlRule):
                    cols = [q(c) for c in dict.fromkeys(key_column(k) for k in rule)]
                    con.execute(f"CREATE TABLE {q(f'rule_{i}')} AS SELECT {', '.join(cols)}, node_id FROM records "
                                f"WHERE {' AND '.join(f'{c} IS NOT NULL' for c in cols)} ORDER BY ALL")
            for col, rule in _capped(cfg):
                con.execute(f"CREATE TABLE {q('keys_' + col)} AS SELECT * FROM ({_key_sizes_sql(rule, 'records')}) "
                            "ORDER BY ALL")
            for tf in tf_columns(cfg):
                con.execute(
                    f"""CREATE TABLE {q('tf_' + tf)} AS SELECT {q(tf)}, count(*)::DOUBLE / sum(count(*)) OVER () AS {q('tf_' + tf)}
                    FROM records WHERE {q(tf)} IS NOT NULL GROUP BY ALL""")
            con.execute("CREATE TABLE meta AS SELECT ? AS stamp", [stamp])
            con.execute("CHECKPOINT")
        except BaseException:  # a half-built index is no index: nothing of it is left behind
            con.close()
            for part in (tmp, tmp.with_name(tmp.name + ".wal"), lines, offsets):
                part.unlink(missing_ok=True)
            raise
        finally:
            con.close()
            if not cfg.engine.temp_directory:
                shutil.rmtree(path.parent / "spill", ignore_errors=True)
    os.replace(lines, path.parent / LINES)
    os.replace(offsets, path.parent / OFFSETS)
    os.replace(tmp, path)  # last: its stamp says the lines beside it are this run's
    restrict_tree(path.parent)
    return path, True


def _write_offsets(lines: Path, offsets: Path) -> int:
    """Write where each line of ``lines`` starts, and where the last ends; returns the lines.
    JSON escapes a newline within a value, so every newline ends a record. Read in blocks:
    at ten million records the lines are gigabytes."""
    import numpy as np  # the cold call only

    count = pos = 0
    with lines.open("rb") as fh, private_umask(), offsets.open("wb") as out:
        out.write(struct.pack("<Q", 0))
        while block := fh.read(1 << 26):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + (pos + 1)
            out.write(ends.astype("<u8").tobytes())
            count, pos = count + len(ends), pos + len(block)
    return count


def _read_lines(folder: Path, ids: list[int], expected: tuple[int, int]) -> list[str] | None:
    """The JSON lines of records ``ids`` (node ids, 1..n), or None if the files beside the
    index are not the ones it was built with (their sizes): the caller reads the records from
    the index instead."""
    lines, offsets = folder / LINES, folder / OFFSETS
    size, count = expected
    try:
        if lines.stat().st_size != size or offsets.stat().st_size != 8 * (count + 1):
            return None
        out = []
        with offsets.open("rb") as fo, lines.open("rb") as fl:
            for i in ids:
                if not 1 <= i <= count:
                    return None
                fo.seek(8 * (i - 1))
                start, end = struct.unpack("<QQ", fo.read(16))
                fl.seek(start)
                out.append(fl.read(end - start).decode("utf-8"))
        return out
    except (OSError, struct.error, UnicodeDecodeError):
        return None


SCORING_SQL = FIND_DIR / "scoring_sql.json"
REPLAY_VERSION = 3  # what scoring_sql.json holds (2: key caps, candidates and levels too; 3: no reads)


def _effects(statements: list[str]) -> list[str]:
    """The statements that make or change tables: a replay skips the reads (Splink's look
    at ``information_schema``, ``DESCRIBE``, counts), whose answers only steered the SQL made."""
    return [s for s in statements if (s.split(None, 1) or [""])[0].upper() not in ("SELECT", "DESCRIBE")]


class _Recorder:
    """A connection that notes each statement it runs (a first find keeps them for later finds)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.statements = con, list[str]()

    def execute(self, sql: str, *args: Any) -> duckdb.DuckDBPyConnection:
        self.statements.append(sql)
        return self.con.execute(sql, *args)


def _tf_table(con: duckdb.DuckDBPyConnection, tf: str) -> None:
    """Term frequencies of all the run's records, as the run had them: the values here only."""
    con.execute(
        f"""CREATE TABLE {q('tf_table_' + tf)} AS SELECT * FROM idx.{q('tf_' + tf)}
        WHERE {q(tf)} IN (SELECT {q(tf)} FROM find_nodes UNION SELECT {q(tf)} FROM nodes)""")


def _score_with_splink(con: duckdb.DuckDBPyConnection, cfg: Any, saved: dict) -> tuple[str, dict[str, Any]]:
    """Splink's ``predict_between`` of ``find_nodes`` against ``nodes``: the scored pairs'
    table, and every SQL statement Splink ran to make it (``statements``, with
    ``tf_columns``: the term-frequency tables it reads).

    Splink's SQL depends on the settings and the tables' columns only (the same for every
    find against a run: ``find_nodes`` takes the index's columns whatever the source), not
    on the records, and names its intermediate tables consistently within one call, so
    the statements made once give the same pairs for any records looked up later."""
    from splink import Linker

    from linkage import model

    settings = model.build_settings(cfg, "duckdb", saved)
    settings.retain_intermediate_calculation_columns = True
    db_api = model.make_db_api(con)
    statements: list[str] = []
    execute = db_api._execute_sql_against_backend

    def recorded(sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return execute(sql, *args, **kwargs)

    db_api._execute_sql_against_backend = recorded  # type: ignore[method-assign]
    run_sdf = db_api.register("nodes", dataset_display_name="records")
    find_sdf = db_api.register("find_nodes", dataset_display_name="lookup")
    # The run validated these settings against these records: Splink's check of every
    # column in every level's SQL took most of the linker's set-up.
    linker = Linker(run_sdf, settings, log_level=model.SPLINK_LOG_LEVEL, validate_settings=False)
    tfs = sorted({c.unquote().name for c in linker._settings_obj._term_frequency_columns})
    for tf in tfs:
        _tf_table(con, tf)
        linker.table_management.register_term_frequency_lookup(db_api.register(q('tf_table_' + tf)), tf)
    scored = linker.inference.predict_between(find_sdf, run_sdf, warning_mode="never")
    return scored.physical_name, {"tf_columns": tfs, "statements": statements, "predictions": scored.physical_name}


def _scoring_stamp(manifest: dict[str, Any]) -> str:
    """The run's stamp and the versions of Splink (which wrote the SQL) and DuckDB (which runs it)."""
    from importlib.metadata import version

    return f"{_index_stamp(manifest)}|{REPLAY_VERSION}|splink {version('splink')}|duckdb {duckdb.__version__}"


def _scoring_sql(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The scoring SQL a first find against this run kept, if it was this run's (its stamp)."""
    try:
        kept = json.loads((Path(run_dir) / SCORING_SQL).read_text())
    except (OSError, ValueError):
        return None
    return kept if isinstance(kept, dict) and kept.get("stamp") == _scoring_stamp(manifest) else None


def _keep_scoring_sql(run_dir: Path, manifest: dict[str, Any], replay: dict[str, Any]) -> None:
    path = Path(run_dir) / SCORING_SQL
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with private_umask():
        tmp.write_text(json.dumps({"stamp": _scoring_stamp(manifest), **replay}))
    os.replace(tmp, path)
    restrict_tree(path.parent)


STANDARDISE_PLAN = FIND_DIR / "standardise_plan.json"
PLAN_VERSION = 1  # what standardise_plan.json holds


def _metaphone(name: str | None) -> str | None:
    """``linkage.standardise.types.name_cleaning.metaphone`` (a test holds them equal; a plan is
    kept only if this gives the values the field types gave)."""
    import jellyfish

    return jellyfish.metaphone(name.replace(" ", "")) or None if name else None


# The Python-computed columns a standardisation plan may hold (the table a field type fills
# from the values it fetched: person names' phonetic keys, a name field's ``key_metaphone``),
# by column name: each is computed again from the values a replay fetches.
_PYTHON_COLUMNS = {"metaphone": _metaphone, "key_metaphone": _metaphone}
_UNNESTED = re.compile(r'unnest\(\$(\d+)::[^)]*\[\]\) AS "((?:[^"]|"")*)"')


class _Fetched:
    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows

    def fetchall(self) -> list[tuple]:
        return self.rows

    def fetchone(self) -> tuple | None:
        return self.rows[0] if self.rows else None


class _PlanRecorder:
    """A connection noting the standardisation's statements for a plan (:func:`_replay_plan`):
    a statement, a read (its rows feed the next table of Python-computed values) or a table
    made from Python lists (the records' own values, or columns of ``_PYTHON_COLUMNS`` over
    the values read before it). ``ok`` turns False at anything a replay could not repeat."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.steps, self.ok = con, list[dict[str, Any]](), True
        self._read: list[tuple] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        if params is None:
            result = self.con.execute(sql)
            if (sql.split(None, 1) or [""])[0].upper() in ("SELECT", "WITH", "DESCRIBE"):
                self._read = result.fetchall()
                self.steps.append({"sql": sql, "read": True})
                return _Fetched(self._read)
            self.steps.append({"sql": sql})
            return result
        result = self.con.execute(sql, params)
        if not self.steps:  # the records' own values (``standardise``'s first statement)
            self.steps.append({"sql": sql, "records": True})
            return result
        columns = {int(i) - 1: c.replace('""', '"') for i, c in _UNNESTED.findall(sql)}
        if sorted(columns) != list(range(len(params))) or not params:
            self.ok = False
            return result
        first = [r[0] for r in self._read]
        made = [None] + [columns[i] for i in range(1, len(params))]
        if list(params[0]) != first or any(
                c not in _PYTHON_COLUMNS or list(params[i]) != [_PYTHON_COLUMNS[c](v) for v in first]
                for i, c in enumerate(made) if c is not None):
            self.ok = False
        self.steps.append({"sql": sql, "python": made})
        return result


def _code_stamp() -> str:
    """The package's files (names, sizes, times): a plan made by other code is not replayed."""
    h = hashlib.sha256()
    root = Path(__file__).parent
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            st = os.stat(os.path.join(folder, f))
            h.update(f"{os.path.relpath(os.path.join(folder, f), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _plan_stamp(config_hash: str) -> str:
    """What a plan depends on: the config, today (the dates' cleaning), DuckDB and this code."""
    today = datetime.now().date().isoformat()  # noqa: DTZ005 - CleanContext's date.today()
    return f"{PLAN_VERSION}|{config_hash}|{today}|duckdb {duckdb.__version__}|{_code_stamp()}"


def _read_plans(run_dir: Path, stamp: str) -> dict[str, Any] | None:
    try:
        kept = json.loads((Path(run_dir) / STANDARDISE_PLAN).read_text())
    except (OSError, ValueError):
        return None
    return kept if isinstance(kept, dict) and kept.get("stamp") == stamp else None


def _keep_plan(run_dir: Path, stamp: str, sources: list[str], name: str, plan: dict[str, Any]) -> None:
    kept = _read_plans(run_dir, stamp) or {"stamp": stamp, "sources": sources, "plans": {}}
    kept["plans"][name] = plan
    path = Path(run_dir) / STANDARDISE_PLAN
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with private_umask():
        tmp.write_text(json.dumps(kept))
    os.replace(tmp, path)
    restrict_tree(path.parent)


def _plain(records: list[dict[str, str | None]], columns: list[str]) -> bool:
    """The records' values are ASCII: no transliteration (a branch of the cleaning) applies."""
    return all(v is None or v.isascii() for r in records for v in (r.get(c) for c in columns))


def _replay_plan(con: duckdb.DuckDBPyConnection, plan: dict[str, Any], records: list[dict[str, str | None]]) -> list[int]:
    """``standardise`` from a plan a full standardisation of ASCII records kept: the same
    statements, the records' values and the Python-computed columns made again."""
    read: list[tuple] = []
    for step in plan["steps"]:
        if step.get("records"):
            con.execute(step["sql"], [list(range(1, len(records) + 1)),
                                      *([r.get(c) for r in records] for c in plan["keep"])])
        elif step.get("read"):
            read = con.execute(step["sql"]).fetchall()
        elif "python" in step:
            first = [r[0] for r in read]
            con.execute(step["sql"], [first if c is None else [_PYTHON_COLUMNS[c](v) for v in first]
                                      for c in step["python"]])
        else:
            con.execute(step["sql"])
    return [r for (r,) in con.execute("SELECT _row FROM rejects ORDER BY 1").fetchall()]


def standardise(con: Any, cfg: Any, name: str, records: list[dict[str, str | None]],
                table: str) -> list[int]:
    """``table``: ``records`` (laid out like source ``name``, one dict a row) standardised as the
    run standardised that source (``linkage.job._standardise``: its mapping and declared fields,
    the same SQL), a view over the cleaned values; only the records (no invalid or raw values:
    a find reports neither). Returns the records (numbered from 1) with nothing to compare, not
    in ``table``."""
    from linkage.sources import map_source
    from linkage.standardise.declared import standardise_fields
    from linkage.standardise.sql import table_from_lists

    src = cfg.sources[name]
    keep_cols = _kept_columns(src)
    raw: dict[str, list] = {"_row": list(range(1, len(records) + 1)), **{c: [r.get(c) for r in records] for c in keep_cols}}
    table_from_lists(con, "raw_" + name, raw, {"_row": "BIGINT"})  # bound, not registered: no pandas
    if map_source(con, name, src, cfg.person_fields):
        return [r for (r,) in con.execute("SELECT _row FROM rejects ORDER BY 1").fetchall()]
    # The fields this source does not map are missing in every record: no cleaning to plan.
    unmapped = frozenset(f for f, t in cfg.fields.items() if t.inputs(f) and not set(t.inputs(f)) & set(src.columns))
    standardise_fields(con, q("mapped_" + name), table, dict(cfg.fields), date_formats=list(src.date_formats),
                       list_separator=src.list_separator, as_view=True, companions=False, unmapped=unmapped)
    return []


def _kept_columns(src: Any) -> list[str]:
    """The columns of a source a find reads from its records."""
    return list(dict.fromkeys([src.record_id, *src.columns.values()]))


def _load_config(config_path: Path, run_dir: Path, manifest: dict[str, Any]) -> Any:
    """The run's config, validated, if it is the one the run was made with."""
    from linkage.config import load_config

    loaded = load_config(config_path)
    if loaded.hash != manifest.get("config_sha256"):
        raise InputError(
            f"{config_path}: not the config run {run_dir} was made with (its hash differs from the manifest's "
            f"config_sha256); give that config with --config")
    return loaded.config


def find_records(
    run_dir: Path, record_file: Path, source: str | None = None, config: Path | None = None, top: int = 5
) -> FindResult:
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    manifest = read_run_manifest(run_dir)
    config_path = Path(config) if config else Path(manifest.get("config_path", ""))
    if not config_path.is_file():
        raise InputError(
            f"{run_dir}: the run's config ({config_path}) is not there; give it with --config CONFIG")
    # A warm find (the scoring SQL and the standardisation plan a first find kept, for this
    # config, code and day) neither reads the config nor imports its models and the field
    # types (a third of its CPU): the plan holds the source's columns and its cleaning's SQL.
    config_hash = hashlib.sha256(config_path.read_text(encoding="utf-8").encode()).hexdigest()
    same_config = config_hash == manifest.get("config_sha256")
    replay = _scoring_sql(run_dir, manifest)
    stamp = _plan_stamp(config_hash)
    plans = _read_plans(run_dir, stamp) if replay is not None and same_config else None
    plan = plans["plans"].get(source or plans["sources"][0]) if plans is not None else None
    cfg: Any = None
    if plan is None:
        cfg = _load_config(config_path, run_dir, manifest)
        names = list(cfg.sources)
    else:
        names = plans["sources"]  # type: ignore[index]
    name = source or names[0]
    if name not in names:
        raise UsageError(f"--source {name}: not a source of the job (sources: {', '.join(names)})")
    if top < 1:
        raise UsageError(f"--top {top}: give at least 1")
    src_columns: dict[str, str] = plan["columns"] if plan is not None else dict(cfg.sources[name].columns)
    record_id: str = plan["record_id"] if plan is not None else cfg.sources[name].record_id
    restricted = run_dir / "restricted"
    for p in (restricted / "standardised.parquet", restricted / "model.json", restricted / "crosswalk.parquet"):
        if not p.is_file():
            raise InputError(f"{p}: missing; finding a person needs the run's records, model and crosswalk")

    columns, records = _read_records(record_file)
    missing = [f"{col!r} ({field})" for field, col in src_columns.items() if col not in columns]
    if missing:
        raise InputError(
            f"{record_file}: column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing: the model compares "
            f"{'them' if len(missing) > 1 else 'it'} (records laid out like source {name!r}). Add "
            f"{'them' if len(missing) > 1 else 'it'}, with empty cells where unknown.")
    seen: set[str] = set()
    repeats = []
    for i, r in enumerate(records):
        rid = r.get(record_id)
        r[record_id] = rid = rid if rid not in (None, "") else f"record {i + 1}"
        if rid in seen:
            repeats.append(str(i + 2))
        seen.add(rid)
    if repeats:
        raise InputError(f"{record_file}: row{'s' if len(repeats) > 1 else ''} {', '.join(repeats)}: the record id ({record_id!r}) repeats")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        rejected = None
        if plan is not None and _plain(records, plan["keep"]):
            try:
                rejected = _replay_plan(con, plan, records)
            except duckdb.Error:  # not this code's statements after all: standardise in full
                con.close()
                con = duckdb.connect()
                con.execute("SET enable_progress_bar = false")
        if rejected is None:
            cfg = cfg or _load_config(config_path, run_dir, manifest)
            kept_columns = _kept_columns(cfg.sources[name])
            noted = _PlanRecorder(con) if same_config and _plain(records, kept_columns) else None
            rejected = standardise(noted or con, cfg, name, records, "std_0")
            if noted is not None and noted.ok and not rejected:
                _keep_plan(run_dir, stamp, names, name, {"record_id": record_id, "columns": src_columns,
                                                         "keep": kept_columns, "steps": noted.steps})
        if rejected:
            raise InputError(f"{record_file}: row{'s' if len(rejected) > 1 else ''} {', '.join(str(r + 1) for r in rejected)}: "
                             "nothing to compare (no name, date of birth or reference number)")
        table = "std_0"
        ti = time.perf_counter()
        built = not _attach_index(con, run_dir / INDEX, _index_stamp(manifest))
        if built:
            cfg = cfg or _load_config(config_path, run_dir, manifest)
            index, built = prepare_index(run_dir, manifest, cfg)
            con.execute(f"ATTACH {lit(str(index))} AS idx (READ_ONLY)")
        index_seconds = time.perf_counter() - ti
        types = con.execute("DESCRIBE idx.records").fetchall()
        have = {c for (c, *_) in con.execute(f"DESCRIBE {table}").fetchall()}
        cols = ", ".join(q(c) if c in have else f"CAST(NULL AS {t}) AS {q(c)}" for c, t, *_ in types if c != "node_id")
        con.execute(
            f"CREATE TABLE find_nodes AS SELECT {FIRST_FIND_ID} - row_number() OVER (ORDER BY record_id) + 1 AS node_id, "
            f"{cols} FROM {table}")
        # The SQL a first find against this run kept (key caps, candidates, Splink's scoring):
        # a warm find replays it and never imports Splink or builds its SQL again.
        if replay is None:
            cfg = cfg or _load_config(config_path, run_dir, manifest)
            recorder = _Recorder(con)
            # A capped rule's key, as the run had it: kept where the run kept it (the run's counts).
            add_key_caps(recorder, cfg)
            key_caps, candidates = recorder.statements, _candidates_sql(cfg)
        else:
            key_caps, candidates = replay["key_caps"], replay["candidates"]
            for sql in key_caps:
                con.execute(sql)
        t1 = time.perf_counter()
        # Only the run's records that some blocking rule pairs with a record looked up:
        # Splink then blocks and scores exactly as the run did, on a few thousand records.
        # The candidates' ids (narrow joins on the sorted rule tables), then their records and
        # persons from the lines beside the index, by position: reading a few hundred scattered
        # records from the index's columns took about a second at a million records.
        ids = [i for (i,) in con.execute(f"SELECT node_id FROM ({candidates}) ORDER BY node_id").fetchall()]
        bytes_, count = con.execute("SELECT bytes, records FROM idx.lines").fetchall()[0]
        fetched = _read_lines(run_dir / FIND_DIR, ids, (bytes_, count))
        if fetched is not None:
            person_types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                            "WHERE database_name = 'idx' AND table_name = 'crosswalk'").fetchall())
            structure = json.dumps({**{str(i): t for i, (_, t, *_) in enumerate(types)}, "p": "BOOLEAN",
                                    **{f"p{i}": person_types[c] for i, c in enumerate(PERSON)}})
            try:
                con.execute(f"CREATE TEMP TABLE fetched AS SELECT from_json(j, {lit(structure)}) AS s "
                            "FROM (SELECT unnest(?::VARCHAR[]) AS j)", [fetched])
                if [i for (i,) in con.execute(f"SELECT s.{q('0')} FROM fetched").fetchall()] != ids:
                    fetched = None  # not the lines of these records: read them from the index
            except duckdb.Error:  # not JSON of these columns
                fetched = None
        person_table, lines_read = "idx.crosswalk", fetched is not None
        if fetched is not None:
            con.execute("CREATE TABLE nodes AS SELECT " + ", ".join(f"s.{q(str(i))} AS {q(c)}" for i, (c, *_) in enumerate(types))
                        + " FROM fetched ORDER BY 1")
            person_table = "persons"
            con.execute(f"CREATE TABLE {person_table} AS SELECT s.{q('0')} AS node_id, "
                        + ", ".join(f"s.{q(f'p{i}')} AS {q(c)}" for i, c in enumerate(PERSON)) + " FROM fetched WHERE s.p")
        else:  # the lines are missing or not this index's: the records' columns, slower
            con.execute("CREATE TABLE nodes AS SELECT r.* FROM idx.records r "
                        "SEMI JOIN (SELECT unnest(?::BIGINT[]) AS node_id) c USING (node_id) ORDER BY r.node_id", [ids])
        t2 = time.perf_counter()
        if replay is None:  # the first find against this run: Splink scores, and its SQL is kept
            from linkage import model

            saved = model.load_model_settings(restricted / "model.json", cfg)
            predictions, replay = _score_with_splink(con, cfg, saved)
            replay.update(statements=_effects(replay["statements"]), key_caps=_effects(key_caps),
                          candidates=candidates, levels=_levels(saved))
            _keep_scoring_sql(run_dir, manifest, replay)
            t3 = time.perf_counter()
        else:
            # Splink's SQL for these settings and tables, as the first find ran it: the same
            # statements on the same tables, without building a linker and its SQL again.
            for tf in replay["tf_columns"]:
                _tf_table(con, tf)
            t3 = time.perf_counter()
            for sql in replay["statements"]:
                con.execute(sql)
            predictions = replay["predictions"]
        levels: dict[str, list[tuple[float, str]]] = replay["levels"]
        comparisons = list(levels)
        bf = ", ".join(f"p.{q('mw_' + c)} AS {q('mw_' + c)}" for c in comparisons)
        con.execute(
            f"""CREATE TABLE pairs AS
            SELECT f.source_dataset AS lookup_source, f.record_id AS lookup_record_id, r.node_id,
                   r.source_dataset, r.record_id, p.match_weight, p.match_probability, {bf}
            FROM {predictions} p
            JOIN find_nodes f ON f.node_id = CASE WHEN p.node_id_l < 0 THEN p.node_id_l ELSE p.node_id_r END
            JOIN nodes r ON r.node_id = CASE WHEN p.node_id_l < 0 THEN p.node_id_r ELSE p.node_id_l END"""
        )
        t4 = time.perf_counter()
        best = con.execute(
            f"""WITH c AS (
                SELECT p.* EXCLUDE (node_id), x.person_id, x.person_key, x.cluster_size AS person_records FROM pairs p
                JOIN {person_table} x USING (node_id)),
            per AS (SELECT *, count(*) OVER (PARTITION BY lookup_record_id, person_key) AS records_scored,
                           row_number() OVER (PARTITION BY lookup_record_id, person_key
                                              ORDER BY match_weight DESC, source_dataset, record_id) AS k FROM c)
            SELECT * EXCLUDE (k) FROM per WHERE k = 1
            QUALIFY row_number() OVER (PARTITION BY lookup_record_id
                                       ORDER BY match_weight DESC, person_key) <= {int(top)}
            ORDER BY lookup_record_id, match_weight DESC, person_key"""
        )
        names = [d[0] for d in best.description]
        found = [dict(zip(names, row, strict=True)) for row in best.fetchall()]
        t5 = time.perf_counter()
    finally:
        con.close()
    keep = {"lookup_source": "lookup_source", "lookup_record_id": "lookup_record_id", "rank": "rank",
            "person_id": "person_id", "person_key": "person_key", "person_records": "person_records",
            "match_weight": "match_weight", "match_probability": "match_probability",
            "source_dataset": "best_source_dataset", "record_id": "best_record_id",
            "records_scored": "records_scored", "agreed": "agreed"}
    persons: list[dict[str, Any]] = []
    previous, rank = None, 0
    for row in found:  # ordered by looked-up record, best first
        rank = rank + 1 if row["lookup_record_id"] == previous else 1
        previous = row["lookup_record_id"]
        row["rank"] = rank
        row["agreed"] = "; ".join(
            f"{c} ({_label(levels[c], float(row['mw_' + c]))}, {float(row['mw_' + c]):+.1f})" for c in comparisons
            if _positive(row["mw_" + c]))
        persons.append({out: row[col] for col, out in keep.items()})
    out_dir = make_private_dir(run_dir / FIND_DIR)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out = out_dir / f"find_{stamp}.csv"
    from linkage.publish import csv_safe

    with private_umask(), out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(keep.values())
        writer.writerows([csv_safe(v) if isinstance(v, str) else ("" if v is None else v) for v in c.values()]
                         for c in persons)
    restrict_tree(out_dir)
    seconds = {"index": round(index_seconds, 3), "index_built": float(built), "records_from_lines": float(lines_read),
               "standardise": round(t1 - t0 - index_seconds, 3), "block": round(t2 - t1, 3),
               "model_and_term_frequencies": round(t3 - t2, 3), "score": round(t4 - t3, 3),
               "candidates": round(t5 - t4, 3), "total": round(time.perf_counter() - t0, 3)}
    return FindResult(persons, len(records), seconds, out)


def _positive(w: Any) -> bool:
    return w is not None and not (isinstance(w, float) and math.isnan(w)) and float(w) > 0


def weight_text(w: float) -> str:
    return "n/a" if w is None or (isinstance(w, float) and math.isnan(w)) else f"{w:.2f}"


def summary(result: FindResult) -> list[str]:
    lines = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in result.candidates:
        groups.setdefault(c["lookup_record_id"], []).append(c)
    for rid, grp in groups.items():
        lines.append(f"record {rid}: {len(grp)} candidate person{'s' if len(grp) != 1 else ''}")
        for r in grp:
            lines.append(
                f"  {int(r['rank'])}. {r['person_id']} (match weight {weight_text(r['match_weight'])}, probability "
                f"{r['match_probability']:.4f}, {int(r['person_records'])} records) agreed: {r['agreed'] or 'nothing'}")
    lines.append(f"{result.records - len(groups)} of {result.records} records had no candidate")
    return lines
