"""Score a clustering against the truth: pairwise and B-cubed precision, recall and F1.

Plain Python, no database: the benchmarks score every method with these same functions.
A clustering is a mapping ``record -> cluster label`` and the truth a mapping
``record -> person``; a record is any hashable key, e.g. ``(source_dataset, record_id)``.

The records scored are the truth's. A truth record the clustering does not name is a
singleton (nobody linked it); a clustered record the truth does not name is left out (and
counted, so the caller can warn).

With ``n_ct`` the records of predicted cluster c that belong to true person t:

- pairwise: true positives = sum C(n_ct, 2); predicted pairs = sum C(n_c, 2);
  true pairs = sum C(n_t, 2). No predicted pairs: precision is 1 (nothing wrong was
  linked). No true pairs: recall is 1.
- B-cubed: for each record, precision = |its cluster and its person| / |its cluster|,
  recall = |its cluster and its person| / |its person|; both averaged over records, then
  F1 of the two averages.

The same definitions as ``linkage.evaluate`` (which counts in SQL over the run's tables).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass


def f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


@dataclass(frozen=True)
class Scores:
    records: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    true_positive_pairs: int
    predicted_pairs: int
    true_pairs: int
    clusters: int
    unknown_records: int = 0  # clustered records the truth does not name (not scored)

    def as_dict(self) -> dict:
        return asdict(self)


def score(predicted: Mapping[Hashable, Hashable], truth: Mapping[Hashable, Hashable]) -> Scores:
    """Pairwise and B-cubed scores of ``predicted`` (record -> cluster) against ``truth`` (record -> person)."""
    if not truth:
        raise ValueError("nothing to score: the truth is empty")
    cell: Counter = Counter()
    for record, person in truth.items():
        # Unclustered records are singletons: a label no other record can share.
        cluster = ("c", predicted[record]) if record in predicted else ("singleton", record)
        cell[(cluster, person)] += 1
    by_cluster: Counter = Counter()
    by_person: Counter = Counter()
    for (cluster, person), n in cell.items():
        by_cluster[cluster] += n
        by_person[person] += n

    tp = sum(_pairs(n) for n in cell.values())
    pred = sum(_pairs(n) for n in by_cluster.values())
    true = sum(_pairs(n) for n in by_person.values())
    p = tp / pred if pred else 1.0
    r = tp / true if true else 1.0

    n_records = len(truth)
    bp = sum(n * n / by_cluster[c] for (c, _), n in cell.items()) / n_records
    br = sum(n * n / by_person[t] for (_, t), n in cell.items()) / n_records
    unknown = sum(1 for record in predicted if record not in truth)
    return Scores(
        records=n_records,
        pairwise_precision=p, pairwise_recall=r, pairwise_f1=f1(p, r),
        bcubed_precision=bp, bcubed_recall=br, bcubed_f1=f1(bp, br),
        true_positive_pairs=tp, predicted_pairs=pred, true_pairs=true,
        clusters=len(by_cluster), unknown_records=unknown,
    )


def clusters_from_pairs(records, pairs) -> dict:
    """Connected components: ``record -> cluster label`` (the smallest record of its component) for ``records``
    linked by ``pairs`` of records. Used for tests and for small one-to-one link sets."""
    parent: dict = {r: r for r in records}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            parent[rb] = ra
    return {r: find(r) for r in parent}
