"""Overview: the run at a glance (records, people, links, threshold, scores) and its provenance."""

from __future__ import annotations

from linkage.report.elements import Charts, Section, cards, num, pct, table
from linkage.report.run import Run


def overview(run: Run, charts: Charts) -> Section:
    m = run.manifest
    rows = m.get("rows", {})
    clusters = m.get("clusters", {})
    read = sum(r.get("read", 0) for r in rows.values())
    rejected = sum(r.get("rejected", 0) for r in rows.values())
    items = [
        ("records read", num(read)),
        ("rejected", num(rejected)),
        ("people (clusters)", num(clusters.get("clusters"))),
        ("records linked to another", pct(sum(r.get("linked", 0) for r in rows.values()) / read if read else None)),
        ("pairs scored and kept", num(m.get("comparisons_scored_kept"))),
        ("threshold (match probability)", f"{run.threshold:g}"),
    ]
    ev = run.evaluation
    if ev:
        items += [
            ("pairwise F1 vs truth", f"{ev['pairwise']['f1']:.3f}"),
            ("cluster (B-cubed) F1 vs truth", f"{ev['cluster']['f1']:.3f}"),
        ]
    versions = m.get("versions", {})
    model = m.get("model", {})
    facts = [
        ["job", m.get("job", "")],
        ["description", m.get("description") or ""],
        ["created (UTC)", m.get("created_utc", "")],
        ["config", f"{m.get('config_path', '')} (sha256 {str(m.get('config_sha256', ''))[:16]}…)"],
        ["model", "trained in this run" if model.get("trained") else f"loaded from {model.get('loaded_from')}"],
        ["person ids", f"generation {m.get('id_generation', '')}; key fingerprint {m.get('pseudonym_key_fingerprint', '')}"],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items())],
    ]
    return Section("overview", "Overview").add(cards(items), table(None, facts, numeric_from=9, cls="facts"))
