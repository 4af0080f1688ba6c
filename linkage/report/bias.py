"""Linkage bias: link rates by group as published in the analyst zone, with precision and
recall by group when the run has been evaluated."""

from __future__ import annotations

from linkage.report.elements import Charts, Section, esc, num, para, pct, table
from linkage.report.run import Run
from linkage.sources import lit


def linkage_bias(run: Run, charts: Charts) -> Section | None:
    """Link rates by group (analyst/linkage_bias.parquet, suppressed and rounded as published),
    with precision and recall by the same groups when the run has been evaluated."""
    if not run.has("analyst", "linkage_bias.parquet"):
        return None
    sec = Section("linkage-bias", "Linkage bias: link rates by group")
    path = lit(str(run.path("analyst", "linkage_bias.parquet")))
    rows = run.sql(
        f"SELECT breakdown, \"group\", records, share_records_linked, people, share_people_in_2plus_sources "
        f"FROM read_parquet({path})"
    )
    by_group = (run.evaluation or {}).get("by_group") or {}
    threshold = run.manifest.get("suppression_threshold")
    base = run.manifest.get("rounding_base")
    sec.add(para(
        "Linkage error is rarely spread evenly: a group that links less often (people without a date of birth, "
        "with names spelt many ways, whose surname changed) is under-counted in any statistic built on the links. "
        "Per group: the share of records whose person is found in another source, and the share of people found "
        "in two or more sources. These are the published figures of analyst/linkage_bias.parquet: counts below "
        f"{esc(threshold)} are suppressed, with other cells so that none can be worked out from the totals"
        + (f", and counts are rounded to the nearest {esc(base)}" if base else "") + "."
        + (" Precision and recall by group come from the evaluation against the truth (pairs shared half to "
           "each record's group)." if by_group else "")))
    values = []
    for b in dict.fromkeys(r[0] for r in rows):
        scores = {g["group"]: g for g in by_group.get(b, [])}
        scores.setdefault("all", (run.evaluation or {}).get("pairwise"))
        body = []
        for _, group, records, share_rec, people, share_people in (r for r in rows if r[0] == b):
            s = scores.get(group)
            body.append([group, "suppressed" if records is None else num(records),
                         "suppressed" if share_rec is None else pct(share_rec),
                         "suppressed" if people is None else num(people),
                         "suppressed" if share_people is None else pct(share_people),
                         *([pct(s["precision"]) if s else "", pct(s["recall"]) if s else ""] if by_group else [])])
            if share_rec is not None and group != "all":
                values.append({"breakdown": b, "group": group, "share": share_rec})
        headers = ["group", "records", "records linked to another source", "people", "people in 2+ sources",
                   *(["pairwise precision", "pairwise recall"] if by_group else [])]
        sec.add(f"<h3>by {esc(b.replace('_', ' '))}</h3>", table(headers, body))
    if values:
        sec.add(charts.add("chart-linkage-bias", {
            "data": {"values": values},
            "facet": {"row": {"field": "breakdown", "type": "nominal", "title": None}},
            "resolve": {"scale": {"y": "independent"}},
            "spec": {"mark": "bar", "width": 360,
                     "encoding": {"y": {"field": "group", "type": "nominal", "title": None},
                                  "x": {"field": "share", "type": "quantitative", "title": "records linked to another source",
                                        "axis": {"format": ".0%"}, "scale": {"domain": [0, 1]}},
                                  "tooltip": [{"field": "breakdown"}, {"field": "group"},
                                              {"field": "share", "format": ".1%"}]}},
        }, "Share of records linked to another source, by group (suppressed groups left out)."))
    return sec
