"""What linking on encodings costs: the same link, clear and encoded, on the same synthetic data.

    python benchmarks/bench_encode.py [--people N] [--seed S] [--profile realistic|hard] [--workdir DIR]
        [--json FILE] [--variants plain,xor_fold,balance]

1. ``linkage synth`` makes the justice extracts; the benchmark links two of them, prison
   and probation (link and dedupe: a person may have several records in each), scored
   against the truth restricted to those two sources.
2. Clear: a job declaring first name, surname, date of birth, sex and PNC ID (``preset:
   none``), the toolkit's standard levels for each (Jaro-Winkler, phonetic codes, dates
   within a month or a year...).
3. Encoded, per variant: ``linkage encode`` of both extracts with a fresh secret (a new
   share per variant: the registry refuses a secret for a second share), then a job on the
   encodings alone: keyed hashes for exact agreement and blocking (name, phonetic code,
   date of birth, year of birth, sex, PNC key), Bloom filters of first name, surname and
   date of birth with Dice levels. The same blocking, prior and training as the clear job.
   Variants: ``plain`` (field-level filters, no hardening), ``xor_fold``, ``balance``
   (Dice thresholds raised to match: a balanced filter's Dice is 1 - Hamming / length).
4. Every run through the CLI, then ``linkage evaluate``; wall times per process.

Exit status 0, or 1 when a command failed (its stderr is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from linkage.standardise.types.encoded import dice_sql  # noqa: E402

SOURCES = {
    "prison": {"path": "prison.csv", "record_id": "booking_id",
               "columns": {"first_name": "first_name", "surname": "last_name", "date_of_birth": "date_of_birth",
                           "sex": "gender", "pnc_id": "pnc_number"}},
    "probation": {"path": "probation.csv", "record_id": "offender_id",
                  "columns": {"first_name": "first_name", "surname": "surname", "date_of_birth": "date_of_birth",
                              "sex": "gender", "pnc_id": "pnc"}},
}
FIELDS = {
    "first_name": {"type": "name"},
    "surname": {"type": "name"},
    "date_of_birth": {"type": "date", "earliest": "1900-01-01", "placeholder_dates": ["1900-01-01"]},
    "sex": {"type": "category", "values": {"M": ["M", "MALE"], "F": ["F", "FEMALE"]}},
    "pnc_id": {"type": "identifier", "check": "pnc"},
}
ENCODINGS = {
    "first_name_bf": {"bloom": ["first_name"]},
    "surname_bf": {"bloom": ["surname"]},
    "dob_bf": {"bloom": ["date_of_birth_text"]},
    "first_name_h": {"hash": ["first_name"]},
    "surname_h": {"hash": ["surname"]},
    "first_name_mp_h": {"hash": ["first_name_metaphone"]},
    "surname_mp_h": {"hash": ["surname_metaphone"]},
    "dob_h": {"hash": ["date_of_birth_text"]},
    "dob_year_h": {"hash": ["date_of_birth_year"]},
    "sex_h": {"hash": ["sex"]},
    "pnc_h": {"hash": ["pnc_id_key"]},
}


@dataclass(frozen=True)
class Dataset:
    """Two extracts linked clear and encoded: what differs between the data sets."""

    truth: str
    sources: dict
    fields: dict
    encodings: dict
    # (clear, encoded) blocking rules, prior rules, EM blocking rules
    blocking: tuple[list, list]
    prior: tuple[list, list]
    em: tuple[list, list]
    extra: str  # the field compared besides names, date of birth and sex: pnc_id or postcode


JUSTICE = Dataset(
    "truth.csv", SOURCES, FIELDS, ENCODINGS,
    ([["pnc_id_key"], ["date_of_birth_text"], ["surname_metaphone", "first_name_metaphone"], ["surname", "date_of_birth_year"]],
     [["pnc_h"], ["dob_h"], ["surname_mp_h", "first_name_mp_h"], ["surname_h", "dob_year_h"]]),
    ([["pnc_id_key"], ["first_name", "surname", "date_of_birth_text"]], [["pnc_h"], ["first_name_h", "surname_h", "dob_h"]]),
    ([["date_of_birth_text"], ["surname", "first_name"], ["pnc_id_key"]], [["dob_h"], ["surname_h", "first_name_h"], ["pnc_h"]]),
    "pnc_id",
)
# Benefit claims and learner records (``linkage synth --departments``): no identifier in
# common, so names, date of birth, sex and postcode carry the link.
DEPARTMENTS = Dataset(
    "truth_departments.csv",
    {"dwp_benefits": {"path": "dwp_benefits.csv", "record_id": "claim_id", "date_formats": ["%Y%m%d"],
                      "columns": {"first_name": "forenames", "surname": "surname", "date_of_birth": "date_of_birth",
                                  "sex": "sex", "postcode": "postcode"}},
     "learners": {"path": "learners.csv", "record_id": "learning_aim_id", "date_formats": ["%Y-%m-%d"],
                  "columns": {"first_name": "given_names", "surname": "family_name", "date_of_birth": "date_of_birth",
                              "sex": "sex", "postcode": "postcode_prior_to_enrolment"}}},
    {**{k: v for k, v in FIELDS.items() if k != "pnc_id"}, "postcode": {"type": "postcode"}},
    {**{k: v for k, v in ENCODINGS.items() if k != "pnc_h"},
     "postcode_bf": {"bloom": ["postcode"]}, "postcode_h": {"hash": ["postcode"]},
     "postcode_sector_h": {"hash": ["postcode_sector"]}, "postcode_district_h": {"hash": ["postcode_district"]}},
    ([["date_of_birth_text"], ["surname_metaphone", "first_name_metaphone"], ["surname", "date_of_birth_year"],
      ["postcode", "first_name_metaphone"]],
     [["dob_h"], ["surname_mp_h", "first_name_mp_h"], ["surname_h", "dob_year_h"], ["postcode_h", "first_name_mp_h"]]),
    ([["first_name", "surname", "date_of_birth_text"]], [["first_name_h", "surname_h", "dob_h"]]),
    ([["date_of_birth_text"], ["surname", "first_name"], ["postcode"]], [["dob_h"], ["surname_h", "first_name_h"], ["postcode_h"]]),
    "postcode",
)
DATASETS = {"justice": JUSTICE, "departments": DEPARTMENTS}
MODEL_COMMON = {
    "link_type": "link_and_dedupe",
    "threshold": 0.95,
    "clustering": {"fracture_match_weight": 8, "conflict_match_weight": 20, "ambiguity_margin": 2},
}
TRAINING_COMMON = {"seed": 42, "u_max_pairs": 2_000_000, "em_max_pairs": 2_000_000}
VARIANTS = {
    "plain": ({}, [0.9, 0.8, 0.7], [0.8, 0.6]),
    "xor_fold": ({"xor_fold": True}, [0.9, 0.8, 0.7], [0.8, 0.6]),
    "balance": ({"balance": True}, [0.975, 0.95, 0.925], [0.95, 0.9]),
}


def clear_job(workdir: Path, ds: Dataset = JUSTICE) -> Path:
    cfg = {
        "job": "clear", "preset": "none", "fields": ds.fields, "sources": ds.sources,
        "model": {
            **MODEL_COMMON,
            "blocking_rules": ds.blocking[0],
            "comparisons": [{"field": f} for f in ("first_name", "surname", "date_of_birth", "sex", ds.extra)],
            "training": {**TRAINING_COMMON, "prior": {"deterministic_rules": ds.prior[0], "recall": 0.8},
                         "em_blocking_rules": ds.em[0]},
        },
    }
    path = workdir / "clear.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def encode_config(workdir: Path, variant: str, ds: Dataset = JUSTICE) -> Path:
    hardening = VARIANTS[variant][0]
    cfg = {"share": f"bench-{variant}-{secrets.token_hex(4)}", "fields": ds.fields, "sources": ds.sources,
           "bloom": {"bits": 1024, "hash_functions": 20, "q": 2, "hardening": hardening}, "encodings": ds.encodings}
    path = workdir / f"encode_{variant}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def encoded_job(workdir: Path, variant: str, encoded_dir: Path, ds: Dataset = JUSTICE) -> Path:
    fields = yaml.safe_load((encoded_dir / "job_fields.yaml").read_text())["fields"]
    names, dob = VARIANTS[variant][1], VARIANTS[variant][2]

    def name_levels(f: str) -> list[dict]:
        bf = f"{f}_bf"
        return [
            {"exact": f"{f}_h", "tf_adjustment": True},
            {"sql": dice_sql(bf, names[0]), "label": f"Dice {names[0]}"},
            {"sql": dice_sql(bf, names[1]), "label": f"Dice {names[1]}"},
            {"exact": f"{f}_mp_h", "label": "sounds alike"},
            {"sql": dice_sql(bf, names[2]), "label": f"Dice {names[2]}"},
        ]

    extra: dict = {"name": "pnc_id", "levels": [{"exact": "pnc_h"}]}
    if ds.extra == "postcode":
        extra = {"name": "postcode", "null_when_missing": ["postcode_h"], "levels": [
            {"exact": "postcode_h", "tf_adjustment": True},
            {"sql": dice_sql("postcode_bf", names[1]), "label": "postcodes alike"},
            {"exact": "postcode_sector_h", "label": "same sector"},
            {"exact": "postcode_district_h", "label": "same district"},
        ]}
    sources = {s: {"path": f"{s}.parquet", "record_id": spec["record_id"],
                   "columns": {e: e for e in ds.encodings}} for s, spec in ds.sources.items()}
    cfg = {
        "job": f"encoded_{variant}", "preset": "none", "fields": fields, "sources": sources,
        "model": {
            **MODEL_COMMON,
            "blocking_rules": ds.blocking[1],
            "comparisons": [
                {"name": "first_name", "levels": name_levels("first_name"), "null_when_missing": ["first_name_h"]},
                {"name": "surname", "levels": name_levels("surname"), "null_when_missing": ["surname_h"]},
                {"name": "date_of_birth", "null_when_missing": ["dob_h"], "levels": [
                    {"exact": "dob_h"},
                    {"sql": dice_sql("dob_bf", dob[0]), "label": "dates alike"},
                    {"exact": "dob_year_h", "label": "same year"},
                    {"sql": dice_sql("dob_bf", dob[1]), "label": "dates somewhat alike"},
                ]},
                {"name": "sex", "levels": [{"exact": "sex_h"}]},
                extra,
            ],
            "training": {**TRAINING_COMMON, "prior": {"deterministic_rules": ds.prior[1], "recall": 0.8},
                         "em_blocking_rules": ds.em[1]},
        },
    }
    path = workdir / f"encoded_{variant}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def linkage(*args: str, env: dict | None = None) -> float:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "linkage", *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT)
    if res.returncode != 0:
        print(f"linkage {' '.join(args)} failed ({res.returncode}):\n{res.stderr}", file=sys.stderr)
        raise SystemExit(1)
    return time.perf_counter() - start


def run_and_score(config: Path, data: Path, run_dir: Path, truth: Path) -> tuple[dict, float]:
    seconds = linkage("run", str(config), "--data", str(data), "--out", str(run_dir))
    linkage("evaluate", str(run_dir), "--truth", str(truth))
    return json.loads((run_dir / "evaluation.json").read_text()), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--profile", default="realistic", help="the synthetic profile (linkage synth --profile)")
    ap.add_argument("--dataset", choices=list(DATASETS), default="justice")
    ap.add_argument("--data", type=Path, help="A folder of extracts made already (departments: linkage synth --departments)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_encode"))
    ap.add_argument("--variants", default="plain,xor_fold,balance")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ds = DATASETS[args.dataset]
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.profile == "realistic" else f"_{args.profile}"
    data = args.data or work / f"synth_{args.people}_{args.seed}{suffix}"
    if not (data / ds.truth).is_file():
        if args.data or args.dataset != "justice":
            raise SystemExit(f"{data / ds.truth} not found: make the extracts first (linkage synth --departments)")
        linkage("synth", "--people", str(args.people), "--seed", str(args.seed), "--profile", args.profile,
                "--out", str(data))
    truth = work / "truth_linked.csv"
    t = pd.read_csv(data / ds.truth, dtype=str)
    t = t[t.source_dataset.isin(list(ds.sources))]
    t.to_csv(truth, index=False)
    env = {"LINKAGE_PSEUDONYM_KEY": secrets.token_hex(32), "LINKAGE_ENCODE_REGISTRY": str(work / "registry.json")}
    os.environ.update(env)
    rows = []
    ev, secs = run_and_score(clear_job(work, ds), data, work / "run_clear", truth)
    rows.append({"variant": "clear", "encode_s": None, "run_s": secs, **_scores(ev)})
    for variant in args.variants.split(","):
        enc_dir = work / f"encoded_{variant}"
        key = secrets.token_hex(32)  # a fresh secret per share
        enc_s = linkage("encode", str(encode_config(work, variant, ds)), "--data", str(data), "--out", str(enc_dir),
                        env={"LINKAGE_ENCODE_KEY": key})
        ev, secs = run_and_score(encoded_job(work, variant, enc_dir, ds), enc_dir, work / f"run_{variant}", truth)
        rows.append({"variant": variant, "encode_s": enc_s, "run_s": secs, **_scores(ev)})
    print(f"\n{' + '.join(ds.sources)} ({args.dataset}), {args.people:,} people (seed {args.seed}, {args.profile} profile), "
          f"{len(t):,} records\n")
    print("| variant | pairwise P | pairwise R | pairwise F1 | B-cubed P | B-cubed R | B-cubed F1 | encode s | run s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        enc = f"{r['encode_s']:.1f}" if r["encode_s"] is not None else "-"
        print(f"| {r['variant']} | {r['pw_p']:.4f} | {r['pw_r']:.4f} | {r['pw_f1']:.4f} | {r['bc_p']:.4f} | "
              f"{r['bc_r']:.4f} | {r['bc_f1']:.4f} | {enc} | {r['run_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"dataset": args.dataset, "people": args.people, "seed": args.seed,
                                         "profile": args.profile,
                                         "records": len(t), "rows": rows}, indent=2))


def _scores(ev: dict) -> dict:
    pw, bc = ev["pairwise"], ev["cluster"]
    return {"pw_p": pw["precision"], "pw_r": pw["recall"], "pw_f1": pw["f1"],
            "bc_p": bc["precision"], "bc_r": bc["recall"], "bc_f1": bc["f1"]}


if __name__ == "__main__":
    main()
