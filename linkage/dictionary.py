"""The data dictionary of the analyst tables: analyst/README.md and analyst/datapackage.json.

Every analyst table (every Parquet file in the folder) with its meaning and rows; every
column with its type, meaning, source column, coarsening, suppression and the impossible
values written as null. Names and counts only, never a value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from linkage.bias import BIAS_COLUMNS
from linkage.config import JobConfig
from linkage.source_rows import MAX_AGE
from linkage.sources import lit


@dataclass(frozen=True)
class CarriedColumn:
    """One analyst column made from a carried column, and how it was made (for the dictionary)."""

    name: str
    expr: str  # SQL over raw_<source> (alias raw)
    source_column: str
    coarsening: str  # keep, year, month, postcode_district, postcode_area
    kind: str  # integer, number, string, boolean, year, month
    declared: str | None = None  # the type the config declares (``carry: {col: {type: ...}}``)
    bad: str | None = None  # SQL: the rows whose value is not of the declared type




def analyst_nulled_values(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """``table.column -> reason -> rows`` of impossible values written as null, for the manifest."""
    out: dict[str, dict[str, int]] = {}
    for tab, col, reason, n in con.execute("SELECT * FROM analyst_nulled ORDER BY ALL").fetchall():
        out.setdefault(f"{tab}.{col}", {})[reason] = int(n)
    return out



# --- the data dictionary --------------------------------------------------------------------------

_FRICTIONLESS = {"integer": "integer", "number": "number", "string": "string", "year": "year", "month": "date",
                 "boolean": "boolean", "date": "date"}


def _parquet_kind(duck_type: str) -> str:
    t = duck_type.upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"):
        return "integer"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "number"
    if t == "BOOLEAN":
        return "boolean"
    if t == "DATE":
        return "date"
    return "string"


def _describe_column(table: str, column: str, cfg: JobConfig, carried: dict[str, list[CarriedColumn]]) -> dict[str, Any]:
    """Meaning, source column, coarsening and suppression of one analyst column; no
    description when the column is unknown (a test fails on that)."""
    threshold = cfg.outputs.suppression_threshold
    if column == "person_id":
        return {"description": "Pseudonymous person id: HMAC-SHA256 of the internal person key under this "
                               "release's secret key. The same person has the same id in every table of the release.",
                "source_column": None, "coarsening": "pseudonym"}
    if column.startswith("person_id_"):
        t = column[len("person_id_"):].replace("_", ".", 1)
        return {"description": f"Pseudonymous person id at the stricter or looser match probability threshold {t} "
                               "(person_id is at model.threshold): the same rules, key and stability as person_id, "
                               "for rerunning an analysis under another linkage.",
                "source_column": None, "coarsening": "pseudonym"}
    for c in carried.get(table, []):
        if c.name != column:
            continue
        what = {
            "keep": f"as the extract holds it ({table}.{c.source_column})"
                    + (f", typed {c.declared} as declared in the config (a value of another type is written as null)"
                       if c.declared else ", typed as a number" if c.kind in ("integer", "number") else ""),
            "year": f"year of {table}.{c.source_column}",
            "month": f"month of {table}.{c.source_column}: the first day of the month stands for the month",
            "postcode_district": f"postcode district (outward code) of {table}.{c.source_column}",
            "postcode_area": f"postcode area (its leading letters) of {table}.{c.source_column}",
            "age": f"age in whole years at {table}.{c.source_column}, from the record's date of birth; null when "
                   f"impossible (date of birth after the event, or over {MAX_AGE})",
        }[c.coarsening]
        return {"description": what[0].upper() + what[1:] + ".", "source_column": f"{table}.{c.source_column}",
                "coarsening": {"keep": "none", "age": "age in years"}.get(c.coarsening, c.coarsening)}
    persons = {
        "sex": "Most common sex code over the person's records (M, F or U; ties: the first in order).",
        "year_of_birth": "Most common year of birth over the person's records (ties: the earlier); null when it "
                         "falls after the person's earliest event.",
        "sources": "The sources the person is found in, comma-separated.",
        "records": "Records of the person over all sources.",
        "link_weakest_weight_band": "Link confidence: the weakest match weight inside the person's cluster, as the "
                                    "lower bound of a band 5 wide (-5: below 0; 20: 20 or more); null for a person "
                                    "with one record or linked on agreement alone.",
        "link_any_deterministic": "Link confidence: whether any link inside the person's cluster was made on "
                                  "agreement alone (a deterministic rule such as the same valid PNC ID).",
        "cluster_size_band": "Link confidence: records in the person's cluster, banded: 1, 2, 3 (3-5), 6 (6-10), "
                             "11 (11-20), 21 (more than 20).",
    }
    if table == "persons":
        if column in persons:
            band = "band" if column.endswith("_band") else "none"
            return {"description": persons[column], "source_column": None,
                    "coarsening": "year" if column == "year_of_birth" else band}
        if column.startswith("records_") and column[len("records_"):] in cfg.sources:
            return {"description": f"Records of the person in {column[len('records_'):]}.", "source_column": None,
                    "coarsening": "none"}
    summary = {
        "table": "Which part of the summary: 'pair' (two sources) or 'people in k sources'.",
        "source_a": "First source of a pair.",
        "source_b": "Second source of a pair.",
        "people_in_a": "People found in source_a.",
        "people_in_b": "People found in source_b.",
        "people": "People found in both sources of the pair, or in exactly k sources.",
        "share_of_a_linked_to_b": "people / people_in_a.",
        "suppressed": "Whether a count on this row is suppressed.",
    }
    if table == "linkage_summary" and column in summary:
        suppression = (f"counts from 1 to {threshold - 1} are suppressed (null), with secondary suppression so "
                       "that no suppressed count can be recovered from the others") if column != "table" else None
        return {"description": summary[column], "source_column": None, "coarsening": "none",
                "suppression": suppression if column in ("people", "people_in_a", "people_in_b",
                                                         "share_of_a_linked_to_b") else None}
    if table == "linkage_bias" and column in BIAS_COLUMNS:
        counts = column not in ("breakdown", "group", "suppressed")
        base = cfg.outputs.rounding_base
        suppression = (f"counts from 1 to {threshold - 1} are suppressed (null), with secondary suppression so that "
                       "no suppressed count can be worked out from the others and the totals"
                       + (f"; the rest rounded to the nearest {base}" if base else "")) if counts else None
        return {"description": BIAS_COLUMNS[column], "source_column": None,
                "coarsening": f"rounded to base {base}" if counts and base else "none", "suppression": suppression}
    return {"description": None, "source_column": None, "coarsening": None}


_TABLE_MEANINGS = {
    "persons": "One row per person: the person's sources, record counts, most common sex and year of birth, "
               "and banded link confidence.",
    "linkage_bias": "Link rates by group (linkage bias): per breakdown and group, the records linked to another "
                    "source and the people found in two or more sources, with small counts suppressed.",
    "linkage_summary": "People found in each pair of sources and in 1, 2, ... sources, with small counts suppressed.",
}


def write_data_dictionary(
    con: duckdb.DuckDBPyConnection,
    cfg: JobConfig,
    analyst_dir: Path,
    rows: dict[str, int],
    carried: dict[str, list[CarriedColumn]],
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """analyst/datapackage.json (a Frictionless tabular data package) and analyst/README.md:
    every analyst table (every Parquet file in the folder) with its meaning and rows, every
    column with its type, meaning, source column, coarsening, suppression and the
    impossible values written as null. Names and counts only, never a value."""
    nulled = analyst_nulled_values(con)
    resources: list[dict[str, Any]] = []
    for path in sorted(analyst_dir.glob("*.parquet")):
        table = path.stem
        fields = []
        for column, duck_type, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(path))})").fetchall():
            kind = _parquet_kind(duck_type)
            about = _describe_column(table, column, cfg, carried)
            month = any(c.name == column and c.kind == "month" for c in carried.get(table, []))
            year = any(c.name == column and c.kind == "year" for c in carried.get(table, []))
            field = {"name": column, "type": "year" if year else _FRICTIONLESS[kind], "parquet_type": duck_type, **about}
            if month:
                field["format"] = "first day of the month: the month only"
            if f"{table}.{column}" in nulled:
                field["nulled_impossible"] = nulled[f"{table}.{column}"]
            fields.append(field)
        meaning = _TABLE_MEANINGS.get(table) or (
            f"One row per record of the source {table} that was linked, with its person's pseudonymous id and "
            "the columns the config carries." if table in cfg.sources else None)
        resources.append({"name": table, "path": path.name, "format": "parquet", "description": meaning,
                          "rows": rows.get(table), "schema": {"fields": fields}})
    package: dict[str, Any] = {
        "profile": "tabular-data-package",
        "name": re.sub(r"[^a-z0-9._-]+", "-", cfg.job.lower()) or "linkage",
        "title": f"Analyst tables of the linkage job {cfg.job}",
        "created": run_info.get("created_utc") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "linkage": {"job": cfg.job, **{k: v for k, v in run_info.items() if k != "created_utc"},
                    "suppression_threshold": cfg.outputs.suppression_threshold},
        "resources": resources,
    }
    (analyst_dir / "datapackage.json").write_text(json.dumps(package, indent=2) + "\n")
    lines = [f"# Analyst tables: {cfg.job}", "",
             f"Written {package['created']}" + "".join(f"; {k.replace('_', ' ')} {v}" for k, v in package["linkage"].items()
                                                       if k != "job") + ".", "",
             "Person ids are pseudonyms; no table holds a name, a date of birth, a reference number, a postcode "
             "finer than its district or a record id. The same description, machine-readable: datapackage.json.", ""]
    for r in resources:
        lines += [f"## {r['name']} ({r['path']}, {r['rows']} rows)", "", r["description"] or "(undocumented)", "",
                  "| column | type | meaning | source column | coarsening | suppression | nulled as impossible |",
                  "|---|---|---|---|---|---|---|"]
        for f in r["schema"]["fields"]:
            cells = [f["name"], f["type"] + (f" ({f['format']})" if "format" in f else ""), f["description"] or "(undocumented)",
                     f.get("source_column") or "", f.get("coarsening") or "", f.get("suppression") or "",
                     ", ".join(f"{reason}: {n}" for reason, n in f.get("nulled_impossible", {}).items())]
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        lines.append("")
    (analyst_dir / "README.md").write_text("\n".join(lines))
    return package


