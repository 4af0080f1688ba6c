"""Clerical review: a stratified sample of scored pairs around the threshold, and estimates from it.

``export_review_sample`` draws pairs from ``restricted/predictions.parquet`` in six
strata of match weight around the threshold's weight (three below, three above, each
two bits wide near the line: a factor of four in the odds), the same number from each,
so that the pairs near the line, where the decision is hard, are well covered. It writes
them side by side with their standardised fields to
``restricted/review/review_sample.csv`` with an empty ``decision`` column (match,
non-match or unsure; a free ``notes`` column beside it is ignored on import), and the
sample's design (strata, sizes, seed, the pairs drawn) to ``review_sample.json``.

``import_review_decisions`` reads the filled-in CSV back. Within stratum h, with N_h
scored pairs of which r_h were judged match or non-match and m_h match, the stratum holds
an estimated N_h * m_h / r_h true matches, so

- precision of the threshold decision = (estimated true matches above the threshold)
  / (pairs above the threshold);
- recall = (estimated true matches above) / (estimated true matches among all scored
  pairs kept). Pairs the blocking rules never compared, or that scored below the floor
  kept in predictions.parquet, are not counted, so this recall is an upper bound.

95% intervals: each stratum's match rate is drawn from its Jeffreys posterior
Beta(m_h + 1/2, r_h - m_h + 1/2) (a parametric bootstrap; unlike resampling, it keeps
some uncertainty for a stratum whose judgements all agree), precision and recall are
recomputed, and the 2.5% and 97.5% quantiles are kept. Each stratum's match rate also
gets a Wilson interval. "unsure" and blank decisions are left out.

Both files live in the restricted zone, owner-only (0700 folder, 0600 files): the CSV holds
names and dates of birth. Its text cells are escaped against formula injection (a leading
quote before ``= + - @``, tab or carriage return); the import accepts a cell escaped or not.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from linkage import decisions as store
from linkage.decisions import REASON_NOT_MATCH, REVIEW_FIELDS, UnionFind
from linkage.errors import InputError, UsageError
from linkage.publish import csv_safe_sql, csv_unsafe, make_private_dir, private_umask, restrict_tree
from linkage.sources import lit, q

REVIEW_DIR = Path("restricted") / "review"
SAMPLE_CSV = "review_sample.csv"
SAMPLE_META = "review_sample.json"
ESTIMATES = "review_estimates.json"
DECISIONS = ("match", "non-match", "unsure")
# Stratum edges in match weight relative to the threshold's weight.
STRATUM_EDGES = (-4.0, -2.0, 0.0, 2.0, 4.0)
STRATUM_NAMES = ("below_far", "below_mid", "below_near", "above_near", "above_mid", "above_far")
PAIR_COLUMNS = ("source_dataset_l", "record_id_l", "source_dataset_r", "record_id_r")
SIMULATIONS = 4000


def _weight(p: float) -> float:
    return math.log2(p / (1 - p))


def _probability(w: float) -> float:
    if w >= 0:
        return 1.0 / (1.0 + 2.0 ** -min(w, 1000.0))
    return 2.0 ** max(w, -1000.0) / (1.0 + 2.0 ** max(w, -1000.0))


@dataclass(frozen=True)
class Stratum:
    name: str
    weight_lo: float  # inclusive
    weight_hi: float  # exclusive
    above: bool
    threshold: float

    def sql(self) -> str:
        # The edge at the threshold is drawn on match_probability, as clustering draws it.
        w = _weight(self.threshold)
        parts = []
        if self.weight_lo == w:
            parts.append(f"match_probability >= {self.threshold!r}")
        elif math.isfinite(self.weight_lo):
            parts.append(f"match_weight >= {self.weight_lo!r}")
        if self.weight_hi == w:
            parts.append(f"match_probability < {self.threshold!r}")
        elif math.isfinite(self.weight_hi):
            parts.append(f"match_weight < {self.weight_hi!r}")
        return " AND ".join(parts)

    def describe(self) -> str:
        lo, hi = _probability(self.weight_lo), _probability(self.weight_hi)
        if not math.isfinite(self.weight_lo):
            return f"match probability < {hi:.4g}"
        if not math.isfinite(self.weight_hi):
            return f"match probability >= {lo:.4g}"
        return f"{lo:.4g} <= match probability < {hi:.4g}"


def strata_for(threshold: float) -> list[Stratum]:
    """Six strata of match weight around the threshold's; the threshold is an edge."""
    w = _weight(threshold)
    edges = [-math.inf, *(w + e for e in STRATUM_EDGES), math.inf]
    return [Stratum(name, edges[i], edges[i + 1], edges[i] >= w, threshold) for i, name in enumerate(STRATUM_NAMES)]


def allocate(sizes: list[int], n: int) -> list[int]:
    """Equal allocation: the same number from each stratum, what a small one cannot use shared out."""
    take = [0] * len(sizes)
    left = n
    open_ = [i for i, s in enumerate(sizes) if s > 0]
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        for j, i in enumerate(open_):
            take[i] += min(share + (1 if j < extra else 0), sizes[i] - take[i])
        left = n - sum(take)
        open_ = [i for i in open_ if take[i] < sizes[i]]
    return take


def _write_review_csv(con: duckdb.DuckDBPyConnection, table: str, order_by: str, out: Path) -> None:
    """``table`` as an owner-only CSV a reviewer opens in a spreadsheet: no text cell may
    run as a formula (``csv_safe_sql``)."""
    cells = ", ".join(
        f"{csv_safe_sql(q(c))} AS {q(c)}" if t == "VARCHAR" else q(c)
        for c, t, *_ in con.execute(f"DESCRIBE {table}").fetchall()
    )
    with private_umask():
        con.execute(f"COPY (SELECT {cells} FROM {table} ORDER BY {order_by}) TO {lit(str(out))} (FORMAT csv, HEADER true)")


def _review_dir(run_dir: Path) -> Path:
    return Path(run_dir) / REVIEW_DIR


def _manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{run_dir}: not a linkage run directory (no manifest.json)")
    return json.loads(path.read_text())


# --- export ---------------------------------------------------------------------------------------


def export_review_sample(run_dir: Path, n: int = 200, seed: int = 1) -> Path:
    """Draw ``n`` scored pairs, stratified around the threshold; write the review CSV and its design.

    Returns the CSV's path (``RUN_DIR/restricted/review/review_sample.csv``). The same run,
    ``n`` and ``seed`` give the same sample.
    """
    run_dir = Path(run_dir)
    if n < 1:
        raise UsageError(f"--sample {n}: the sample needs at least one pair")
    manifest = _manifest(run_dir)
    threshold = float(manifest["model"]["threshold_match_probability"])
    if not 0 < threshold < 1:
        raise InputError(f"{run_dir}: the run's threshold ({threshold}) is not a probability strictly between 0 and 1")
    predictions = run_dir / "restricted" / "predictions.parquet"
    standardised = run_dir / "restricted" / "standardised.parquet"
    for path in (predictions, standardised):
        if not path.is_file():
            raise InputError(f"{path}: missing; a review sample needs the run's scored pairs and records")
    strata = strata_for(threshold)
    rng = np.random.default_rng(seed)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        case = " ".join(f"WHEN {s.sql()} THEN {i}" for i, s in enumerate(strata))
        con.execute(
            f"""CREATE TEMP TABLE scored AS
            SELECT {', '.join(PAIR_COLUMNS)}, match_weight, match_probability,
                   CASE {case} END AS stratum,
                   row_number() OVER (PARTITION BY CASE {case} END
                                      ORDER BY {', '.join(PAIR_COLUMNS)}) - 1 AS rn
            FROM read_parquet({lit(str(predictions))}) WHERE match_weight IS NOT NULL"""
        )
        sizes_by = dict(con.execute("SELECT stratum, count(*) FROM scored GROUP BY ALL").fetchall())
        sizes = [int(sizes_by.get(i, 0)) for i in range(len(strata))]
        if not sum(sizes):
            raise InputError(f"{predictions}: no scored pairs to review")
        take = allocate(sizes, n)
        chosen = [(i, int(r)) for i, k in enumerate(take) if k
                  for r in np.sort(rng.choice(sizes[i], size=k, replace=False))]
        # pair ids in random order, so that the strata are interleaved in the file
        order = rng.permutation(len(chosen)) + 1
        con.execute("CREATE TEMP TABLE chosen (stratum INTEGER, rn BIGINT, pair_id INTEGER)")
        con.executemany("INSERT INTO chosen VALUES (?, ?, ?)", [(i, r, int(p)) for (i, r), p in zip(chosen, order)])
        std_types = {c: t for (c, t, *_) in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({lit(str(standardised))})").fetchall()}
        side = []
        for c, shown in REVIEW_FIELDS:
            if c in std_types:
                for s in ("l", "r"):
                    side.append(f"{_as_text(f'{s}.{q(c)}', std_types[c])} AS {q(shown + '_' + s)}")
        con.execute("CREATE TEMP TABLE stratum_names (stratum INTEGER, name VARCHAR, weight DOUBLE)")
        con.executemany(
            "INSERT INTO stratum_names VALUES (?, ?, ?)",
            [(i, s.name, sizes[i] / take[i] if take[i] else None) for i, s in enumerate(strata)],
        )
        con.execute(
            f"""CREATE TEMP TABLE sample AS
            SELECT c.pair_id, sn.name AS stratum, round(sn.weight, 6) AS sampling_weight,
                   round(p.match_probability, 6) AS match_probability, round(p.match_weight, 3) AS match_weight,
                   {', '.join('p.' + c for c in PAIR_COLUMNS)}, {', '.join(side)},
                   '' AS decision, '' AS notes
            FROM chosen c JOIN scored p USING (stratum, rn) JOIN stratum_names sn USING (stratum)
            LEFT JOIN read_parquet({lit(str(standardised))}) l
                ON l.source_dataset = p.source_dataset_l AND l.record_id = p.record_id_l
            LEFT JOIN read_parquet({lit(str(standardised))}) r
                ON r.source_dataset = p.source_dataset_r AND r.record_id = p.record_id_r
            ORDER BY c.pair_id"""
        )
        out_dir = make_private_dir(_review_dir(run_dir))
        out = out_dir / SAMPLE_CSV
        _write_review_csv(con, "sample", "pair_id", out)
        pairs = con.execute(
            f"SELECT pair_id, stratum, {', '.join(PAIR_COLUMNS)} FROM sample ORDER BY pair_id").fetchall()
    finally:
        con.close()
    meta = {
        "run_dir": str(run_dir),
        "config_sha256": manifest.get("config_sha256"),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threshold_match_probability": threshold,
        "n_requested": n,
        "seed": seed,
        "design": "equal allocation over strata of match weight relative to the threshold's; "
                  "simple random sampling without replacement within each",
        "strata": [
            {"stratum": s.name, "above_threshold": s.above, "weight_lo": _finite(s.weight_lo),
             "weight_hi": _finite(s.weight_hi), "description": s.describe(), "pairs": sizes[i],
             "sampled": take[i], "sampling_weight": (sizes[i] / take[i]) if take[i] else None}
            for i, s in enumerate(strata)
        ],
        "pairs": [dict(zip(("pair_id", "stratum", *PAIR_COLUMNS), row)) for row in pairs],
    }
    with private_umask():
        (out_dir / SAMPLE_META).write_text(json.dumps(meta, indent=2) + "\n")
    restrict_tree(out_dir)
    return out


def _as_text(col: str, type_: str) -> str:
    """A cell as text: lists joined with '; ' (their missing items dropped)."""
    if type_.endswith("[]"):
        return f"array_to_string(list_transform(list_filter({col}, lambda x: x IS NOT NULL), lambda x: CAST(x AS VARCHAR)), '; ')"
    return f"CAST({col} AS VARCHAR)"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# --- import and estimate ------------------------------------------------------------------------------


def _normalise_decision(text: str) -> str | None:
    """'match', 'non-match', 'unsure', '' for blank; None if not a decision."""
    d = " ".join(text.strip().lower().replace("_", " ").replace("-", " ").split())
    if d == "":
        return ""
    return {"match": "match", "non match": "non-match", "nonmatch": "non-match", "not match": "non-match",
            "unsure": "unsure"}.get(d)


def read_decisions(run_dir: Path, csv_path: Path) -> tuple[dict[str, Any], dict[int, str]]:
    """The sample's design and the decisions by pair id; every problem in the file reported at once."""
    run_dir, csv_path = Path(run_dir), Path(csv_path)
    meta_path = _review_dir(run_dir) / SAMPLE_META
    if not meta_path.is_file():
        raise InputError(
            f"{run_dir}: no review sample was exported ({meta_path} is missing). "
            f"Export one first (linkage review RUN_DIR --sample N)."
        )
    meta = json.loads(meta_path.read_text())
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: decision file not found")
    pairs = {int(p["pair_id"]): p for p in meta["pairs"]}
    problems: list[str] = []
    decisions: dict[int, str] = {}
    seen_at: dict[int, int] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("pair_id", "decision") if c not in header]
        if missing:
            raise InputError(
                f"{csv_path}: the decision file needs columns pair_id and decision; missing {', '.join(missing)}. "
                f"Fill in the decision column of {SAMPLE_CSV} and import that file."
            )
        check_ids = [c for c in PAIR_COLUMNS if c in header]
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            raw_id = (row.get("pair_id") or "").strip()
            if not raw_id.isdigit() or int(raw_id) not in pairs:
                problems.append(f"row {line}: pair_id is not a pair of this run's review sample")
                continue
            pid = int(raw_id)
            if pid in seen_at:
                problems.append(f"row {line}: pair_id {pid} appears again (first on row {seen_at[pid]})")
                continue
            seen_at[pid] = line
            # a blank cell contradicts nothing: pair_id names the pair
            wrong = [c for c in check_ids
                     if (row.get(c) or "").strip() and not _same_cell(row.get(c) or "", str(pairs[pid][c]))]
            if wrong:
                problems.append(f"row {line}: pair_id {pid} does not name the sampled pair ({', '.join(wrong)} differ)")
                continue
            decision = _normalise_decision(row.get("decision") or "")
            if decision is None:
                problems.append(f"row {line}: pair_id {pid}: decision must be match, non-match or unsure (or empty)")
                continue
            decisions[pid] = decision
    if problems:
        shown = problems[:30]
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise InputError(
            f"{csv_path}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in the decision file\n  "
            + "\n  ".join(shown) + more
        )
    return meta, decisions


def _same_cell(cell: str, expected: str) -> bool:
    """A cell read back names ``expected``: as exported (formula-escaped) or as a spreadsheet saved it."""
    return expected in (cell, cell.strip(), csv_unsafe(cell), csv_unsafe(cell.strip()))


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (None when n = 0)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(strata: list[dict[str, Any]], seed: int = 1, simulations: int = SIMULATIONS) -> dict[str, Any]:
    """Precision, recall and F1 of the threshold decision from per-stratum counts.

    Each stratum: ``pairs`` (N_h), ``above_threshold``, ``matches`` (m_h), ``reviewed`` (r_h).
    Strata with no reviewed pair are left out (and named in ``caveats``).
    """
    used = [s for s in strata if s["reviewed"] > 0]
    if not any(s["above_threshold"] for s in used):
        raise InputError("no pair above the threshold has a match or non-match decision: precision cannot be estimated")
    N = np.array([s["pairs"] for s in used], dtype=float)
    m = np.array([s["matches"] for s in used], dtype=float)
    r = np.array([s["reviewed"] for s in used], dtype=float)
    above = np.array([s["above_threshold"] for s in used])

    def prf(rates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        true = N * rates  # estimated true matches per stratum (last axis)
        tp = (true * above).sum(axis=-1)
        all_true = true.sum(axis=-1)
        precision = tp / N[above].sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(all_true > 0, tp / all_true, 1.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        return precision, recall, f1

    p, rc, f = prf(m / r)
    rng = np.random.default_rng(seed)
    draws = rng.beta(m + 0.5, r - m + 0.5, size=(simulations, len(used)))
    ps, rs, fs = prf(draws)

    def interval(x: np.ndarray) -> list[float]:
        lo, hi = np.quantile(x, [0.025, 0.975])
        return [round(float(lo), 6), round(float(hi), 6)]

    caveats = [
        "Recall counts only the true matches among the scored pairs kept in predictions.parquet; "
        "pairs the blocking rules never compared or that scored below the floor are missing, so it is an upper bound.",
        "The estimates are for the pairwise threshold decision; clustering can add links between pairs below the threshold.",
    ]
    skipped = [s["stratum"] for s in strata if s["reviewed"] == 0 and s["pairs"] > 0]
    if skipped:
        caveats.append(
            "Strata with no match or non-match decision were left out of the estimates: " + ", ".join(skipped) + "."
        )
    return {
        "precision": {"estimate": round(float(p), 6), "ci95": interval(ps)},
        "recall": {"estimate": round(float(rc), 6), "ci95": interval(rs)},
        "f1": {"estimate": round(float(f), 6), "ci95": interval(fs)},
        "estimated_true_matches_above_threshold": round(float((N * m / r * above).sum()), 2),
        "estimated_true_matches_scored": round(float((N * m / r).sum()), 2),
        "interval_method": f"Jeffreys posterior per stratum, {simulations} simulations, 2.5% and 97.5% quantiles",
        "caveats": caveats,
    }


def import_review_decisions(run_dir: Path, csv_path: Path) -> dict[str, Any]:
    """Read reviewers' decisions; estimate precision and recall of the threshold decision with 95% intervals.

    Writes and returns ``RUN_DIR/restricted/review/review_estimates.json``.
    """
    run_dir = Path(run_dir)
    meta, decisions = read_decisions(run_dir, csv_path)
    by_stratum: dict[str, dict[str, int]] = {s["stratum"]: {d: 0 for d in (*DECISIONS, "")} for s in meta["strata"]}
    for p in meta["pairs"]:
        by_stratum[p["stratum"]][decisions.get(int(p["pair_id"]), "")] += 1
    strata = []
    for s in meta["strata"]:
        c = by_stratum[s["stratum"]]
        reviewed = c["match"] + c["non-match"]
        ci = wilson(c["match"], reviewed)
        strata.append({
            "stratum": s["stratum"], "description": s["description"], "above_threshold": s["above_threshold"],
            "pairs": s["pairs"], "sampled": s["sampled"], "reviewed": reviewed, "matches": c["match"],
            "non_matches": c["non-match"], "unsure": c["unsure"], "blank": c[""],
            "match_rate": round(c["match"] / reviewed, 6) if reviewed else None,
            "match_rate_wilson_ci95": [round(x, 6) for x in ci] if ci else None,
        })
    totals = {d: sum(s[k] for s in strata) for d, k in
              (("match", "matches"), ("non-match", "non_matches"), ("unsure", "unsure"), ("blank", "blank"))}
    result = {
        "threshold_match_probability": meta["threshold_match_probability"],
        "decision_file": str(csv_path),
        "sample_seed": meta["seed"],
        "decisions": {**totals, "reviewed": totals["match"] + totals["non-match"]},
        **estimate(strata, seed=int(meta["seed"])),
        "strata": strata,
    }
    out = _review_dir(run_dir) / ESTIMATES
    with private_umask():
        out.write_text(json.dumps(result, indent=2) + "\n")
    restrict_tree(out)
    return result


# --- decisions that stick -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    message: str
    estimates: dict[str, Any] | None  # when the file is the filled-in review sample
    estimate_note: str | None = None  # why no estimate was made from a review sample


def import_decisions(run_dir: Path, csv_path: Path) -> ImportResult:
    """Check a decision file whole, add its decisions to the run's store (``linkage.decisions``)
    and, when it is the filled-in review sample (it has ``pair_id``), estimate precision and
    recall from it as ``import_review_decisions`` does. A bad file imports nothing."""
    run_dir, csv_path = Path(run_dir), Path(csv_path)
    manifest = _manifest(run_dir)
    sample = sample_pairs(run_dir)
    rows, blank = store.read_decision_file(csv_path, sources=list(manifest.get("inputs", {})), sample_pairs=sample)
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    estimates, note = None, None
    if "pair_id" in header and sample is not None:
        read_decisions(run_dir, csv_path)  # the sample's own checks, before anything is written
        try:
            estimates = import_review_decisions(run_dir, csv_path)
        except InputError as exc:
            note = f"no precision estimate: {exc}"
    path = store.add_to_store(run_dir, rows, csv_path)
    message = store.describe_import(rows, blank, path, store.count_missing(run_dir, rows))
    return ImportResult(message, estimates, note)


# --- the review queue: clusters that need a person's eye ------------------------------------------

QUEUE_CSV = "review_clusters.csv"
QUEUE_META = "review_clusters.json"
REASON_SPLIT = "split or flagged by the validity step"
REASON_PNC = "more than one valid PNC ID"
REASON_DUP = "two records of a duplicate-free source"


def export_review_queue(run_dir: Path) -> tuple[Path, dict[str, int]]:
    """The clusters to check by eye, their records one under another, in
    ``restricted/review/review_clusters.csv`` (owner-only, escaped): those the validity step
    split or flagged (``cluster_splits.parquet``; clerical cuts left out, a person made
    them), those holding more than one valid PNC ID (``pnc_key``), and those holding two
    records of a duplicate-free source. A split cluster's parts form one item.

    Returns the CSV's path and the items by reason (an item may have several reasons).
    """
    run_dir = Path(run_dir)
    manifest = _manifest(run_dir)
    restricted = run_dir / "restricted"
    crosswalk, standardised = restricted / "crosswalk.parquet", restricted / "standardised.parquet"
    splits = restricted / "cluster_splits.parquet"
    for path in (crosswalk, standardised):
        if not path.is_file():
            raise InputError(f"{path}: missing; the review queue needs the run's crosswalk and records")
    dup_free = list(manifest.get("duplicate_free_sources") or [])
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        con.execute(
            f"""CREATE TEMP TABLE cw AS SELECT c.source_dataset, CAST(c.record_id AS VARCHAR) AS record_id,
                   c.person_id, c.person_key, s.* EXCLUDE (source_dataset, record_id)
            FROM read_parquet({lit(str(crosswalk))}) c
            JOIN read_parquet({lit(str(standardised))}) s
              ON s.source_dataset = c.source_dataset AND CAST(s.record_id AS VARCHAR) = CAST(c.record_id AS VARCHAR)"""
        )
        types = {c: t for (c, t, *_) in con.execute("DESCRIBE cw").fetchall()}
        flagged: list[tuple[str, str, str | None]] = []  # (person_key, reason, other person_key)
        if splits.is_file():
            flagged += con.execute(
                f"""SELECT l.person_key, {lit(REASON_SPLIT)} || ': ' || s.reason, r.person_key
                FROM read_parquet({lit(str(splits))}) s
                JOIN cw l ON l.source_dataset = s.source_dataset_l AND l.record_id = CAST(s.record_id_l AS VARCHAR)
                JOIN cw r ON r.source_dataset = s.source_dataset_r AND r.record_id = CAST(s.record_id_r AS VARCHAR)
                WHERE s.reason <> {lit(REASON_NOT_MATCH)}"""
            ).fetchall()
        if "pnc_key" in types:
            flagged += con.execute(
                f"SELECT person_key, {lit(REASON_PNC)}, NULL FROM cw WHERE pnc_key IS NOT NULL "
                f"GROUP BY ALL HAVING count(DISTINCT pnc_key) > 1"
            ).fetchall()
        if dup_free:
            flagged += con.execute(
                f"SELECT DISTINCT person_key, {lit(REASON_DUP)}, NULL FROM cw "
                f"WHERE source_dataset IN ({', '.join(lit(s) for s in dup_free)}) "
                f"GROUP BY person_key, source_dataset HAVING count(*) > 1"
            ).fetchall()
        items = UnionFind({k for a, _, b in flagged for k in (a, b) if k is not None})
        for a, _, b in flagged:
            if b is not None:
                items.union(a, b)
        groups = items.groups()
        item_of = {k: i + 1 for i, g in enumerate(groups) for k in g}
        reasons: dict[int, set[str]] = {}
        for a, why, _ in flagged:
            reasons.setdefault(item_of[a], set()).add(why)
        import pandas as pd

        con.register("_items_df", pd.DataFrame(
            [(k, i, "; ".join(sorted(reasons[i]))) for k, i in item_of.items()],
            columns=["person_key", "item_id", "reasons"]).astype({"person_key": "object", "reasons": "object"}))
        side = [f"{_as_text(q(c), types[c])} AS {q(shown)}" for c, shown in REVIEW_FIELDS if c in types]
        con.execute(
            f"""CREATE TEMP TABLE queue AS
            SELECT i.item_id, i.reasons, cw.person_id, cw.source_dataset, cw.record_id, {', '.join(side)},
                   '' AS notes
            FROM _items_df i JOIN cw USING (person_key)
            ORDER BY i.item_id, cw.person_id, cw.source_dataset, cw.record_id"""
        )
        con.unregister("_items_df")
        out_dir = make_private_dir(_review_dir(run_dir))
        out = out_dir / QUEUE_CSV
        _write_review_csv(con, "queue", "item_id, person_id, source_dataset, record_id", out)
        records = con.execute("SELECT count(*) FROM queue").fetchall()[0][0]
    finally:
        con.close()
    by_reason = {
        REASON_SPLIT: sum(1 for r in reasons.values() if any(x.startswith(REASON_SPLIT) for x in r)),
        REASON_PNC: sum(1 for r in reasons.values() if REASON_PNC in r),
        REASON_DUP: sum(1 for r in reasons.values() if REASON_DUP in r),
    }
    meta = {"created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "items": len(groups),
            "records": int(records), "items_by_reason": by_reason, "duplicate_free_sources": dup_free,
            "checked_pnc": "pnc_key" in types}
    with private_umask():
        (out_dir / QUEUE_META).write_text(json.dumps(meta, indent=2) + "\n")
    restrict_tree(out_dir)
    return out, {"items": len(groups), "records": int(records), **by_reason}


def sample_pairs(run_dir: Path) -> dict[int, dict[str, Any]] | None:
    """The exported review sample's pairs by pair_id, or None when no sample was exported."""
    meta = _review_dir(run_dir) / SAMPLE_META
    if not meta.is_file():
        return None
    return {int(p["pair_id"]): p for p in json.loads(meta.read_text())["pairs"]}
