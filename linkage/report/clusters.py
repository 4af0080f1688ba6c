"""The people found: cluster sizes, the clusters to review first, and link rates between sources."""

from __future__ import annotations

from linkage.report.elements import Charts, Section, cards, details, note, num, para, pct, table
from linkage.report.run import Run
from linkage.sources import lit

LARGEST_CLUSTERS = 20
CONFLICT_CLUSTERS = 20


def clusters(run: Run, charts: Charts) -> Section:
    sec = Section("clusters", "Clusters")
    if not run.has("restricted", "crosswalk.parquet"):
        return sec.add(note("restricted/crosswalk.parquet is missing."))
    cw = run.parquet("crosswalk")
    stats = run.manifest.get("clusters", {})
    has_std = run.has("restricted", "standardised.parquet")
    # A job without PNC IDs (no pnc_key column) hears nothing of them.
    has_pnc = has_std and "pnc_key" in {
        r[0] for r in run.sql(f"SELECT column_name FROM (DESCRIBE SELECT * FROM {run.parquet('standardised')})")}
    hist = run.sql(f"SELECT cluster_size, count(*) // cluster_size FROM {cw} GROUP BY cluster_size ORDER BY 1")
    people = sum(n for _, n in hist)
    records = sum(s * n for s, n in hist)
    sec.add(cards([
        ("people (clusters)", num(people)),
        ("records", num(records)),
        ("people with one record", num(next((n for s, n in hist if s == 1), 0))),
        ("largest cluster", num(max((s for s, _ in hist), default=0))),
        ("model links", num(stats.get("model_links"))),
        ("deterministic links", num(stats.get("deterministic_links"))),
    ] + ([("clusters with conflicting PNC IDs", num(stats.get("conflicting_pnc_clusters")))] if has_pnc else [])))
    sec.add(charts.add("chart-cluster-sizes", {
        "data": {"values": [{"size": s, "clusters": n, "records": s * n} for s, n in hist]},
        "mark": "bar", "width": 640, "height": 220,
        "encoding": {
            "x": {"field": "size", "type": "ordinal", "title": "records in the cluster"},
            "y": {"field": "clusters", "type": "quantitative", "scale": {"type": "log", "domainMin": 0.8},
                  "stack": None, "title": "clusters (log scale)"},
            "y2": {"datum": 0.8},
            "tooltip": [{"field": "size"}, {"field": "clusters", "format": ","}, {"field": "records", "format": ","}],
        },
    }, "How many people have 1, 2, 3, … records (log scale)."))

    # Only the listed clusters are looked at in detail: the largest (those at least as large as
    # the LARGEST_CLUSTERS-th, read off the histogram) and those joining several PNC keys.
    cutoff, seen = 2, 0
    for size, n in sorted(hist, reverse=True):
        if size < 2:
            break
        cutoff, seen = size, seen + n
        if seen >= LARGEST_CLUSTERS:
            break
    with_pnc = (f"(SELECT source_dataset, record_id, pnc_key FROM {run.parquet('standardised')} "
                f"WHERE pnc_key IS NOT NULL)")
    if has_pnc:
        run.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE report_pnc_conflicts AS
            SELECT c.person_id, count(DISTINCT s.pnc_key) AS pncs
            FROM {with_pnc} s JOIN (SELECT source_dataset, record_id, person_id FROM {cw} WHERE cluster_size > 1) c
            USING (source_dataset, record_id) GROUP BY ALL HAVING count(DISTINCT s.pnc_key) > 1"""
        )
    else:
        run.con.execute("CREATE OR REPLACE TEMP TABLE report_pnc_conflicts (person_id VARCHAR, pncs BIGINT)")
    run.con.execute(
        f"""CREATE OR REPLACE TEMP TABLE report_listed AS
        SELECT * FROM {cw} WHERE person_id IN (
            (SELECT person_id FROM {cw} WHERE cluster_size >= {cutoff} AND cluster_size > 1
             GROUP BY person_id ORDER BY any_value(cluster_size) DESC, person_id LIMIT {LARGEST_CLUSTERS})
            UNION ALL
            (SELECT person_id FROM report_pnc_conflicts ORDER BY pncs DESC, person_id LIMIT {CONFLICT_CLUSTERS * 5}))"""
    )
    pnc_join = f"LEFT JOIN {with_pnc} s USING (source_dataset, record_id)" if has_pnc else ""
    run.con.execute(
        f"""CREATE OR REPLACE TEMP TABLE report_clusters AS
        WITH per_source AS (
            SELECT c.person_id, c.source_dataset, count(*) AS n, any_value(c.cluster_size) AS size,
                   min(c.cluster_min_match_weight) AS min_weight, any_value(c.cluster_links) AS links,
                   any_value(c.deterministic_links) AS det_links
            FROM report_listed c GROUP BY ALL),
        pncs AS (
            SELECT c.person_id, count(DISTINCT {'s.pnc_key' if has_pnc else 'NULL'}) AS pncs
            FROM report_listed c {pnc_join} GROUP BY ALL)
        SELECT person_id, any_value(size) AS size, min(min_weight) AS min_weight, any_value(links) AS links,
               any_value(det_links) AS det_links,
               string_agg(source_dataset || ' ' || n, ', ' ORDER BY source_dataset) AS sources, any_value(p.pncs) AS pncs
        FROM per_source JOIN pncs p USING (person_id) GROUP BY ALL"""
    )
    cols = "person_id, sources, size, links, det_links, min_weight, pncs"
    largest = run.sql(f"SELECT {cols} FROM report_clusters ORDER BY size DESC, person_id LIMIT {LARGEST_CLUSTERS}")
    conflicts_total, = run.sql("SELECT count(*) FROM report_pnc_conflicts")[0]
    conflicts = run.sql(
        f"SELECT {cols} FROM report_clusters WHERE pncs > 1 "
        f"ORDER BY pncs DESC, size DESC, person_id LIMIT {CONFLICT_CLUSTERS}"
    )
    headers = ["person_id", "records by source", "records", "model links", "deterministic links",
               "weakest link (weight)"] + (["distinct PNC IDs"] if has_pnc else [])

    def rows(found):
        return [[k, srcs, num(s), num(lk), num(dl), num(w, 2) if w is not None else "–"] + ([num(p)] if has_pnc else [])
                for k, srcs, s, lk, dl, w, p in found]

    sec.add(
        "<h3>Largest clusters: review these first</h3>",
        para("A cluster much larger than a person's usual number of records is the typical sign of a chain of "
             "false links. Look these up by person_id in restricted/crosswalk.parquet "
             "(the keyed pseudonym analysts see: not derived from any identifier without the key)."),
        table(headers, rows(largest), numeric_from=2) if largest else para("No cluster has more than one record."),
    )
    if has_pnc:
        sec.add(
            "<h3>Clusters holding more than one PNC ID</h3>",
            para(f"{num(conflicts_total)} clusters join records carrying different valid PNC IDs: either "
                 f"one person with two PNC records (a PNC duplicate) or a false link. "
                 + (f"The {len(conflicts)} with most PNC IDs:" if conflicts else "")),
        )
    if has_pnc and conflicts:
        sec.add(table(headers, rows(conflicts), numeric_from=2))
    return sec


def link_rates(run: Run, charts: Charts) -> Section:
    sec = Section("link-rates", "Link rates between sources")
    if not run.has("restricted", "crosswalk.parquet"):
        return sec.add(note("restricted/crosswalk.parquet is missing."))
    cw = run.parquet("crosswalk")
    present = [s for (s,) in run.sql(f"SELECT DISTINCT source_dataset FROM {cw}")]
    order = [s for s in run.sources if s in present] + sorted(set(present) - set(run.sources))
    # One pass: each person's set of sources as a bit mask, then people per mask.
    bit = "CASE source_dataset " + " ".join(f"WHEN {lit(s)} THEN {1 << i}" for i, s in enumerate(order)) + " END"
    masks = run.sql(
        f"SELECT mask, count(*) FROM (SELECT person_key, bit_or(CAST({bit} AS HUGEINT)) AS mask FROM {cw} "
        f"GROUP BY person_key) GROUP BY mask"
    )
    masks = [(int(m), n) for m, n in masks]
    if len(order) < 2:
        return sec.add(para("This job links one source: there are no link rates between sources to show."))
    per_source = {s: sum(n for m, n in masks if m >> i & 1) for i, s in enumerate(order)}
    values, body = [], []
    for i, a in enumerate(order):
        row = [a, num(per_source[a])]
        for j, b in enumerate(order):
            if a == b:
                row.append("–")
                continue
            n = sum(c for m, c in masks if m >> i & 1 and m >> j & 1)
            share = n / per_source[a] if per_source[a] else 0.0
            values.append({"from": a, "to": b, "share": share, "people": n, "people_in_from": per_source[a]})
            row.append(pct(share))
        body.append(row)
    by_k_counts: dict[int, int] = {}
    for m, n in masks:
        by_k_counts[bin(m).count("1")] = by_k_counts.get(bin(m).count("1"), 0) + n
    by_k = sorted(by_k_counts.items())
    sec.add(
        para("Of the people found in the source on the left, the share also found in the source on top. "
             "The matrix is not symmetric: most people of a small source may be in a large one while most "
             "of the large one's people never appear in the small one."),
        charts.add("chart-link-rates", {
            "data": {"values": values},
            "width": {"step": 70}, "height": {"step": 34},
            "encoding": {
                "x": {"field": "to", "type": "nominal", "sort": order, "title": "also found in",
                      "axis": {"orient": "top", "labelAngle": 0}},
                "y": {"field": "from", "type": "nominal", "sort": order, "title": "people in"},
            },
            "layer": [
                {"mark": "rect", "encoding": {
                    "color": {"field": "share", "type": "quantitative", "scale": {"domain": [0, 1], "scheme": "greens"},
                              "title": "share", "legend": {"format": ".0%"}},
                    "tooltip": [{"field": "from", "title": "people in"}, {"field": "to", "title": "also in"},
                                {"field": "share", "format": ".1%"}, {"field": "people", "format": ","},
                                {"field": "people_in_from", "format": ","}]}},
                {"mark": {"type": "text", "fontSize": 11}, "encoding": {
                    "text": {"field": "share", "type": "quantitative", "format": ".0%"},
                    "color": {"condition": {"test": "datum.share > 0.6", "value": "white"}, "value": "black"}}},
            ],
        }, "Share of each source's people also found in each other source."),
        details("the same as a table", table(["people in", "people", *order], body)),
        charts.add("chart-sources-per-person", {
            "data": {"values": [{"sources": k, "people": n} for k, n in by_k]},
            "mark": "bar", "width": 320, "height": 180,
            "encoding": {
                "x": {"field": "sources", "type": "ordinal", "title": "number of sources a person is found in",
                      "axis": {"labelAngle": 0}},
                "y": {"field": "people", "type": "quantitative"},
                "tooltip": [{"field": "sources"}, {"field": "people", "format": ","}],
            },
        }, "People by the number of sources they appear in."),
    )
    return sec
