"""How much does standardisation buy? The same job on standardised and on raw fields.

Generates a realistic synthetic population, runs configs/justice.yaml on it twice, and
scores both runs against the truth:

- standardised: the job as shipped (linkage.standardise);
- raw: the same config, model and blocking, but every column filled straight from the
  extract with only trimming and upper case: names not cleaned or split (a court's
  single-string name stays whole in full_name), no nickname table, no phonetic keys (the
  name itself stands in), dates parsed with the configured format but default dates kept,
  reference numbers and sex codes as written.

    python benchmarks/bench_standardisation_gain.py --people 20000 --seed 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RawStats:
    rows: int = 0
    invalid: dict = field(default_factory=dict)


def raw_standardise_table(con, source_table, out_table, *, date_formats, list_separator=";", today=None):
    """The standardised table's columns from raw values: trim and upper case only."""
    fm = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in date_formats) + "]"
    sep = "'" + list_separator.replace("'", "''") + "'"
    u = "nullif(upper(trim({})), '')"
    first, surname = u.format("first_name"), u.format("surname")
    full = f"coalesce({u.format('full_name')}, nullif(concat_ws(' ', {first}, {surname}), ''))"
    aliases = f"list_transform(coalesce(string_split(aliases, {sep}), []), lambda x: upper(trim(x)))"
    dob = f"CAST(try_strptime(date_of_birth, {fm}) AS DATE)"
    alias_dobs = f"list_transform(coalesce(string_split(alias_dates_of_birth, {sep}), []), lambda x: CAST(try_strptime(trim(x), {fm}) AS DATE))"
    con.execute(
        f"""CREATE OR REPLACE TABLE {out_table} AS SELECT source_dataset, record_id,
            {first} AS first_name, {u.format('middle_names')} AS middle_names, {surname} AS surname,
            {first} AS forename_canonical, {first} AS first_name_metaphone, {surname} AS surname_metaphone,
            {full} AS full_name,
            nullif(list_filter(list_distinct(list_concat([{full}], {aliases})), lambda x: x IS NOT NULL), []) AS name_set,
            nullif(list_filter([{surname}], lambda x: x IS NOT NULL), []) AS surname_set,
            nullif(list_filter([{first}], lambda x: x IS NOT NULL), []) AS forename_set,
            {dob} AS date_of_birth,
            nullif(list_filter(list_distinct(list_concat([{dob}], {alias_dobs})), lambda x: x IS NOT NULL), []) AS dob_set,
            CAST(year({dob}) AS INTEGER) AS year_of_birth,
            {u.format('sex')} AS sex,
            {u.format('pnc_id')} AS pnc_id, {u.format('pnc_id')} AS pnc_key, {u.format('cro_number')} AS cro_number,
            {u.format('prison_number')} AS prison_number, {u.format('crn')} AS crn, {u.format('postcode')} AS postcode,
            {u.format('postcode')} AS postcode_district, {u.format('postcode')} AS postcode_area
        FROM {source_table}"""
    )
    con.execute(
        f"CREATE OR REPLACE TABLE {out_table}_invalid AS SELECT source_dataset, record_id, "
        f"'' AS field, '' AS reason, '' AS raw_value FROM {source_table} WHERE false"
    )
    return RawStats(rows=con.execute(f"SELECT count(*) FROM {out_table}").fetchall()[0][0])


def run(mode: str, data: Path, out: Path) -> dict:
    import linkage.job as job
    from linkage.config import load_config
    from linkage.evaluate import evaluate_run
    from linkage.progress import Stages

    if mode == "raw":
        job.standardise_table = raw_standardise_table
    started = time.perf_counter()
    result = job.run_job(
        load_config(ROOT / "configs" / "justice.yaml"),
        job.RunOptions(data_dir=data, out_dir=out, throwaway_key=True),
        Stages(quiet=True),
    )
    seconds = time.perf_counter() - started
    scores = evaluate_run(result.run_dir, data / "truth.csv")
    return {"mode": mode, "seconds": round(seconds, 1), "pairwise": scores["pairwise"], "cluster": scores["cluster"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--mode", choices=["standardised", "raw"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="std-gain-"))
    data = work / "data"
    if args.mode:  # one mode in this process: the raw run patches the job module
        print(json.dumps(run(args.mode, data, work / args.mode)))
        return
    from linkage.synthetic import generate

    generate(people=args.people, seed=args.seed, out=data, profile="realistic")
    import subprocess

    rows = []
    for mode in ("standardised", "raw"):
        res = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--workdir", str(work)],
            capture_output=True, text=True, check=True, env=os.environ,
        )
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"\n{args.people:,} people, realistic profile, seed {args.seed}\n")
    print("| fields | pairwise P | pairwise R | pairwise F1 | B-cubed P | B-cubed R | B-cubed F1 | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        p, c = r["pairwise"], r["cluster"]
        print(f"| {r['mode']} | {p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} | "
              f"{c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {r['seconds']} |")


if __name__ == "__main__":
    main()
