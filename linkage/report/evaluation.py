"""Evaluation against the truth (scores, threshold curve, source pairs) and the error
analysis against the synthetic corruptions; both shown only once ``linkage evaluate`` ran."""

from __future__ import annotations

from typing import Any

from linkage.report.elements import Charts, Section, cards, num, para, pct, table
from linkage.report.run import Run

ERROR_CHART_MIN_RECORDS = 5


def evaluation(run: Run, charts: Charts) -> Section | None:
    ev = run.evaluation
    if not ev:
        return None
    sec = Section("evaluation", "Evaluation against the truth")
    truth = ev.get("truth", {})
    sec.add(para(
        f"Scored against {truth.get('file', 'the truth file')}: {num(truth.get('rows'))} truth rows, "
        f"{num(ev.get('records'))} run records scored"
        + (f", {num(truth.get('unlabelled_run_records'))} run records without a label (left out)"
           if truth.get("unlabelled_run_records") else "")
        + (f", {num(truth.get('truth_rows_not_in_run'))} truth rows the run never read"
           if truth.get("truth_rows_not_in_run") else "")
        + ". Pairwise counts pairs of records put in one person; cluster is B-cubed over records."
    ))
    rows, values = [], []
    entries = [("this run", "pairwise", ev["pairwise"]), ("this run", "cluster (B-cubed)", ev["cluster"])]
    base = ev.get("baseline")
    if base:
        entries += [("deterministic baseline", "pairwise", base["pairwise"]),
                    ("deterministic baseline", "cluster (B-cubed)", base["cluster"])]
    for who, kind, s in entries:
        rows.append([who, kind, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}"])
        values += [{"linkage": who, "measure": kind, "metric": k, "value": s[k]} for k in ("precision", "recall", "f1")]
    sec.add(table(["linkage", "measure", "precision", "recall", "F1"], rows, numeric_from=2))
    if base:
        gain = ev.get("gain_over_baseline", {})
        sec.add(para(f"Baseline: {base.get('description', 'deterministic rules')}. Gain in F1 over it: pairwise "
                     f"{gain.get('pairwise_f1', 0):+.4f}, cluster {gain.get('cluster_f1', 0):+.4f}."))
    sec.add(charts.add("chart-scores", {
        "data": {"values": values},
        "mark": "bar",
        "width": {"step": 26}, "height": 180,
        "encoding": {
            "column": {"field": "measure", "type": "nominal", "title": None},
            "x": {"field": "metric", "type": "nominal", "sort": ["precision", "recall", "f1"], "title": None,
                  "axis": {"labelAngle": 0}},
            "xOffset": {"field": "linkage", "type": "nominal"},
            "y": {"field": "value", "type": "quantitative", "scale": {"domain": [0, 1]}, "title": None},
            "color": {"field": "linkage", "type": "nominal", "legend": {"orient": "top"},
                      "scale": {"domain": ["this run", "deterministic baseline"], "range": ["#1f78b4", "#bdbdbd"]}},
            "tooltip": [{"field": "linkage"}, {"field": "measure"}, {"field": "metric"},
                        {"field": "value", "format": ".4f"}],
        },
    }, "Precision, recall and F1 of this run and of the deterministic baseline."))

    curve = ev.get("threshold_curve") or []
    if curve:
        points = []
        for c in curve:
            t = c["threshold_match_probability"]
            for kind in ("pairwise", "cluster"):
                s = c[kind]
                chosen = abs(t - run.threshold) < 1e-12
                points.append({"threshold": t, "measure": kind, "precision": s["precision"], "recall": s["recall"],
                               "f1": s["f1"], "chosen": chosen, "label": f"{t:g}",
                               "labelled": chosen or c is curve[0] or c is curve[-1]})
        sec.add(
            "<h3>Threshold curve</h3>",
            charts.add("chart-pr-curve", _pr_chart(points, base),
                       "Precision against recall as the threshold moves, for pairs (left) and B-cubed "
                       "clusters (right). Points are labelled by match probability threshold; the chosen one "
                       "is ringed in red; the grey square is the deterministic baseline."),
            charts.add("chart-f1-threshold", {
                "data": {"values": points},
                "width": 420, "height": 220,
                "mark": {"type": "line", "point": True},
                "encoding": {
                    "x": {"field": "label", "type": "ordinal", "sort": None, "title": "threshold (match probability)",
                          "axis": {"labelAngle": 0}},
                    "y": {"field": "f1", "type": "quantitative", "scale": {"zero": False}, "title": "F1"},
                    "color": {"field": "measure", "type": "nominal", "legend": {"orient": "top"}},
                    "tooltip": [{"field": "measure"}, {"field": "threshold"}, {"field": "f1", "format": ".4f"}],
                },
            }, "F1 at each threshold."),
            table(["threshold", "pairwise P", "pairwise R", "pairwise F1", "cluster P", "cluster R", "cluster F1"],
                  [[("→ " if abs(c["threshold_match_probability"] - run.threshold) < 1e-12 else "")
                    + f"{c['threshold_match_probability']:g}",
                    *(f"{c[k][m]:.4f}" for k in ("pairwise", "cluster") for m in ("precision", "recall", "f1"))]
                   for c in curve], numeric_from=1),
        )

    pairs = ev.get("by_source_pair") or []
    if pairs:
        sec.add(
            "<h3>By source pair</h3>",
            para("Pairwise scores for the pairs of records between two sources (or within one). "
                 "A pair of sources with no true pairs has recall 1 by convention; its precision is 0 "
                 "if the run linked any."),
            charts.add("chart-source-pairs", {
                "data": {"values": [dict(p, label=f"{p['f1']:.2f}") for p in pairs]},
                "width": {"step": 70}, "height": {"step": 34},
                "encoding": {
                    "x": {"field": "source_b", "type": "nominal", "title": None, "axis": {"orient": "top", "labelAngle": 0}},
                    "y": {"field": "source_a", "type": "nominal", "title": None},
                },
                "layer": [
                    {"mark": "rect", "encoding": {
                        "color": {"field": "f1", "type": "quantitative", "title": "pairwise F1",
                                  "scale": {"domain": [0, 1], "scheme": "redyellowgreen"}},
                        "tooltip": [{"field": "source_a"}, {"field": "source_b"},
                                    {"field": "precision", "format": ".4f"}, {"field": "recall", "format": ".4f"},
                                    {"field": "f1", "format": ".4f"}, {"field": "true_pairs", "format": ","},
                                    {"field": "predicted_pairs", "format": ","}]}},
                    {"mark": {"type": "text", "fontSize": 11}, "encoding": {"text": {"field": "label"}}},
                ],
            }, "Pairwise F1 for each pair of sources."),
            table(["source", "source", "precision", "recall", "F1", "true pairs", "predicted pairs"],
                  [[p["source_a"], p["source_b"], f"{p['precision']:.4f}", f"{p['recall']:.4f}", f"{p['f1']:.4f}",
                    num(p.get("true_pairs")), num(p.get("predicted_pairs"))] for p in pairs], numeric_from=2),
        )
    return sec


def _pr_chart(points: list[dict[str, Any]], base: dict[str, Any] | None) -> dict[str, Any]:
    """One precision-recall panel per measure, each with its own scales (the curves are close together)."""
    panels = []
    for kind, title in (("pairwise", "pairwise"), ("cluster", "cluster (B-cubed)")):
        mine = [p for p in points if p["measure"] == kind]
        layers = [
            {"data": {"values": mine}, "mark": {"type": "line", "point": True, "color": "#1f78b4"},
             "encoding": {
                 "x": {"field": "recall", "type": "quantitative", "scale": {"zero": False, "padding": 12}},
                 "y": {"field": "precision", "type": "quantitative", "scale": {"zero": False, "padding": 12}},
                 "order": {"field": "threshold", "type": "quantitative"},
                 "tooltip": [{"field": "threshold"}, {"field": "precision", "format": ".4f"},
                             {"field": "recall", "format": ".4f"}, {"field": "f1", "format": ".4f"}]}},
            {"data": {"values": [p for p in mine if p["chosen"]]},
             "mark": {"type": "point", "size": 260, "filled": False, "strokeWidth": 2, "color": "#e31a1c"},
             "encoding": {"x": {"field": "recall", "type": "quantitative"},
                          "y": {"field": "precision", "type": "quantitative"}}},
            {"data": {"values": [p for p in mine if p["labelled"]]},
             "mark": {"type": "text", "dx": 8, "dy": -8, "align": "left", "fontSize": 10},
             "encoding": {"x": {"field": "recall", "type": "quantitative"},
                          "y": {"field": "precision", "type": "quantitative"}, "text": {"field": "label"}}},
        ]
        if base and kind in base:
            b = base[kind]
            layers.append({
                "data": {"values": [{"recall": b["recall"], "precision": b["precision"], "f1": b["f1"],
                                     "what": "deterministic baseline"}]},
                "mark": {"type": "square", "size": 120, "color": "#888888"},
                "encoding": {"x": {"field": "recall", "type": "quantitative"},
                             "y": {"field": "precision", "type": "quantitative"},
                             "tooltip": [{"field": "what"}, {"field": "precision", "format": ".4f"},
                                         {"field": "recall", "format": ".4f"}, {"field": "f1", "format": ".4f"}]}})
        panels.append({"title": title, "width": 330, "height": 280, "layer": layers})
    return {"hconcat": panels}


def error_analysis(run: Run, charts: Charts) -> Section | None:
    ea = (run.evaluation or {}).get("error_analysis")
    if not ea:
        return None
    sec = Section("errors", "Error analysis against the synthetic corruptions")
    totals = ea.get("totals", {})
    sec.add(
        para("Which corruptions the wrongly linked and wrongly separated records carry. A record has a "
             "missed link when some record of its true person is in another cluster, and a false link when "
             "its cluster holds another person's record. Examples (record ids only) are in "
             "restricted/error_examples.parquet."),
        cards([
            ("missed pairs", num(totals.get("missed_pairs"))),
            ("false pairs", num(totals.get("false_pairs"))),
            ("records with a missed link", num(totals.get("records_with_missed_links"))),
            ("records with a false link", num(totals.get("records_with_false_links"))),
        ]),
    )
    by_c = ea.get("by_corruption") or []
    if by_c:
        # Rates on a handful of records are noise: the chart shows corruptions on at least
        # ERROR_CHART_MIN_RECORDS records, the table all of them.
        shown = [r for r in by_c if r["records"] >= ERROR_CHART_MIN_RECORDS] or by_c
        values = []
        for r in shown:
            name = f"{r['field']}: {r['corruption']}"
            values.append({"corruption": name, "kind": "missed link", "rate": r["missed_rate"], "records": r["records"]})
            values.append({"corruption": name, "kind": "false link", "rate": r["false_rate"], "records": r["records"]})
        clean = ea.get("uncorrupted") or {}
        layers = [{
            "data": {"values": values},
            "mark": "bar",
            "encoding": {
                "y": {"field": "corruption", "type": "nominal", "title": None,
                      "sort": {"field": "rate", "op": "max", "order": "descending"}},
                "x": {"field": "rate", "type": "quantitative", "axis": {"format": ".0%"},
                      "title": "share of the records carrying it", "scale": {"domain": [0, 1]}},
                "yOffset": {"field": "kind", "sort": ["missed link", "false link"]},
                "color": {"field": "kind", "type": "nominal", "legend": {"orient": "top", "title": None},
                          "scale": {"domain": ["missed link", "false link"], "range": ["#ff7f00", "#6a3d9a"]}},
                "tooltip": [{"field": "corruption"}, {"field": "kind"}, {"field": "rate", "format": ".1%"},
                            {"field": "records", "format": ","}],
            },
        }]
        if clean.get("records"):
            layers.append({
                "data": {"values": [{"kind": "missed link", "rate": clean["missed_rate"]},
                                    {"kind": "false link", "rate": clean["false_rate"]}]},
                "mark": {"type": "rule", "strokeDash": [4, 3], "strokeWidth": 1.5},
                "encoding": {"x": {"field": "rate", "type": "quantitative"},
                             "color": {"field": "kind", "type": "nominal"}},
            })
        sec.add(
            charts.add("chart-error-corruptions", {"width": 380, "height": {"step": 10}, "layer": layers},
                       f"Share of the records carrying each corruption (on at least {ERROR_CHART_MIN_RECORDS} "
                       f"records) that have a missed or a false link. Dashed lines: the same shares for records "
                       f"with no corruption"
                       + (f" ({pct(clean.get('missed_rate'))} missed, {pct(clean.get('false_rate'))} false)."
                          if clean.get("records") else ".")),
            table(["field", "corruption", "records", "with missed link", "missed rate", "with false link", "false rate"],
                  [[r["field"], r["corruption"], num(r["records"]), num(r["records_with_missed_links"]),
                    pct(r["missed_rate"]), num(r["records_with_false_links"]), pct(r["false_rate"])] for r in by_c],
                  numeric_from=2),
        )
    by_n = ea.get("by_corruption_count") or []
    if by_n:
        sec.add(table(["corruptions on the record", "records", "missed rate", "false rate"],
                      [[r["corruptions"], num(r["records"]), pct(r["missed_rate"]), pct(r["false_rate"])] for r in by_n]))
    by_s = ea.get("by_source_pair") or []
    if by_s:
        sec.add(
            "<h3>By source pair</h3>",
            table(["source", "source", "true pairs", "missed pairs", "predicted pairs", "false pairs"],
                  [[r["source_a"], r["source_b"], num(r["true_pairs"]), num(r["missed_pairs"]),
                    num(r["predicted_pairs"]), num(r["false_pairs"])] for r in by_s], numeric_from=2),
        )
    return sec
