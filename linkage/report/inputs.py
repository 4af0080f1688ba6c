"""Where every input record and value went: inputs read and linked, completeness of the
standardised fields, rejected rows, values made missing."""

from __future__ import annotations

from pathlib import Path

from linkage.report.elements import PALETTE, Charts, Section, details, note, num, para, pct, table
from linkage.report.run import Run
from linkage.sources import q

# Standardised columns that are keys of the table rather than fields of a person.
NOT_FIELDS = ("source_dataset", "record_id")


def inputs(run: Run, charts: Charts) -> Section:
    m = run.manifest
    rows = m.get("rows", {})
    body = []
    chart_rows = []
    for name, info in m.get("inputs", {}).items():
        r = rows.get(name, {})
        n = r.get("in_crosswalk", 0)
        body.append([
            name, Path(str(info.get("path", ""))).name, str(info.get("sha256", ""))[:12] + "…",
            num(r.get("read")), num(r.get("rejected")), num(n), num(r.get("linked")), num(r.get("unlinked")),
            pct(r.get("linked", 0) / n if n else None),
        ])
        for status in ("linked", "unlinked", "rejected"):
            chart_rows.append({"source": name, "status": status, "records": r.get(status, 0)})
    sec = Section("inputs", "Inputs")
    sec.add(
        para("Each extract as read: rows read, rejected (not linkable, with a reason below), and of the rest, "
             "linked to at least one other record or left alone."),
        table(["source", "file", "sha256", "read", "rejected", "in crosswalk", "linked", "unlinked", "linked share"],
              body, numeric_from=3),
        charts.add("chart-inputs", {
            "data": {"values": chart_rows},
            "mark": {"type": "bar"},
            "width": 520, "height": {"step": 28},
            "encoding": {
                "y": {"field": "source", "type": "nominal", "sort": list(m.get("inputs", {})), "title": None},
                "x": {"field": "records", "type": "quantitative", "stack": "zero", "title": "records"},
                "color": {"field": "status", "type": "nominal", "sort": ["linked", "unlinked", "rejected"],
                          "scale": {"domain": ["linked", "unlinked", "rejected"],
                                    "range": ["#2b7bba", "#a6cee3", "#e31a1c"]}},
                "tooltip": [{"field": "source"}, {"field": "status"}, {"field": "records", "format": ","}],
            },
        }, "Records per source: linked, unlinked and rejected."),
    )
    return sec


def completeness(run: Run, charts: Charts) -> Section:
    sec = Section("completeness", "Completeness of the standardised fields")
    if not run.has("restricted", "standardised.parquet"):
        return sec.add(note("restricted/standardised.parquet is missing: completeness cannot be measured."))
    src = run.parquet("standardised")
    described = run.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    fields = [(name, typ) for name, typ, *_ in described if name not in NOT_FIELDS]

    def present(name: str, typ: str) -> str:
        col = q(name)
        if typ.endswith("[]"):
            return f"count(*) FILTER (WHERE len({col}) > 0)"
        if typ == "VARCHAR":
            # Not blank: trimmed only when it starts with a space (rare), for speed.
            return f"count(*) FILTER (WHERE {col} <> '' AND (NOT starts_with({col}, ' ') OR trim({col}) <> ''))"
        return f"count({col})"

    selects = ", ".join(present(n, t) for n, t in fields)
    result = run.sql(f"SELECT source_dataset, count(*), {selects} FROM {src} GROUP BY ALL ORDER BY 1")
    order = run.sources or [r[0] for r in result]
    values, body = [], []
    for row in sorted(result, key=lambda r: order.index(r[0]) if r[0] in order else len(order)):
        source, total, counts = row[0], row[1], row[2:]
        shares = [c / total if total else 0.0 for c in counts]
        body.append([source, num(total), *(pct(s, 0) for s in shares)])
        values += [{"source": source, "field": f, "share": s, "present": c, "records": total}
                   for (f, _), s, c in zip(fields, shares, counts)]
    names = [f for f, _ in fields]
    sec.add(
        para("Share of records in each source with a usable value in each standardised field, after "
             "cleaning (placeholders, invalid reference numbers and impossible dates count as missing). "
             "A field at 0% is usually one the extract does not carry."),
        charts.add("chart-completeness", {
            "data": {"values": values},
            "width": {"step": 38}, "height": {"step": 30},
            "encoding": {
                "x": {"field": "field", "type": "nominal", "sort": names, "title": None,
                      "axis": {"labelAngle": -45}},
                "y": {"field": "source", "type": "nominal", "sort": order, "title": None},
            },
            "layer": [
                {"mark": "rect", "encoding": {
                    "color": {"field": "share", "type": "quantitative", "title": "non-missing",
                              "scale": {"domain": [0, 1], "scheme": "blues"}, "legend": {"format": ".0%"}},
                    "tooltip": [{"field": "source"}, {"field": "field"},
                                {"field": "share", "format": ".1%"}, {"field": "present", "format": ","},
                                {"field": "records", "format": ","}]}},
                {"mark": {"type": "text", "fontSize": 9}, "encoding": {
                    "text": {"field": "share", "type": "quantitative", "format": ".0%"},
                    "color": {"condition": {"test": "datum.share > 0.6", "value": "white"}, "value": "black"}}},
            ],
        }, "Share of non-missing values per source (rows) and standardised field (columns)."),
        details("the same as a table", table(["source", "records", *names], body)),
    )
    return sec


def rejects(run: Run, charts: Charts) -> Section:
    sec = Section("rejects", "Rejected rows")
    if not run.has("restricted", "rejects.parquet"):
        return sec.add(note("restricted/rejects.parquet is missing."))
    rows = run.sql(f"SELECT source_dataset, reason, count(*) FROM {run.parquet('rejects')} GROUP BY ALL ORDER BY 1, 3 DESC")
    if not rows:
        return sec.add(para("No row was rejected: every row read is in the crosswalk."))
    sec.add(
        para("Rows that could not be linked at all, by reason. They are kept in restricted/rejects.parquet "
             "with their row numbers, and count as unlinked people in the evaluation."),
        table(["source", "reason", "rows"], [[s, r, num(n)] for s, r, n in rows], numeric_from=2),
        charts.add("chart-rejects", {
            "data": {"values": [{"source": s, "reason": r, "rows": n} for s, r, n in rows]},
            "mark": "bar", "width": 520, "height": {"step": 24},
            "encoding": {
                "y": {"field": "source", "type": "nominal", "title": None},
                "x": {"field": "rows", "type": "quantitative", "title": "rejected rows"},
                "color": {"field": "reason", "type": "nominal", "legend": {"orient": "bottom", "columns": 1}},
                "tooltip": [{"field": "source"}, {"field": "reason"}, {"field": "rows", "format": ","}],
            },
        }, "Rejected rows per source, by reason."),
    )
    return sec


def invalid_values(run: Run, charts: Charts) -> Section:
    sec = Section("invalid", "Invalid values")
    rows = []
    for source, by_field in (run.manifest.get("invalid_values") or {}).items():
        for fld, by_reason in (by_field or {}).items():
            for reason, n in (by_reason or {}).items():
                rows.append((source, fld, reason, int(n)))
    if not rows and run.has("restricted", "invalid_values.parquet"):
        # Older manifests: count from the restricted table (never reading raw_value).
        rows = [tuple(r) for r in run.sql(
            f"SELECT source_dataset, field, reason, count(*) FROM {run.parquet('invalid_values')} GROUP BY ALL")]
    if not rows:
        return sec.add(para("No value was made missing by standardisation."))
    rows.sort(key=lambda r: (r[1], -r[3]))
    totals: dict[tuple[str, str], int] = {}
    for _, fld, reason, n in rows:
        totals[(fld, reason)] = totals.get((fld, reason), 0) + n
    reasons = sorted({r for _, _, r, _ in rows})
    if len(reasons) > len(PALETTE):  # more reasons than distinct colours: the rarest share "other"
        kept = set(sorted(reasons, key=lambda r: -sum(n for _, _, x, n in rows if x == r))[: len(PALETTE) - 1])
        rows = [(s_, f, r if r in kept else "other", n) for s_, f, r, n in rows]
        reasons = sorted({r for _, _, r, _ in rows})
    sec.add(
        para("Values present in an extract but made missing by standardisation (placeholders, malformed "
             "reference numbers, default or impossible dates), by field and reason. The records stay in; "
             "only the value is dropped. The values themselves are in restricted/invalid_values.parquet."),
        charts.add("chart-invalid", {
            "data": {"values": [{"source": s, "field": f, "reason": r, "values": n} for s, f, r, n in rows]},
            "mark": "bar", "width": 520, "height": {"step": 22},
            "encoding": {
                "y": {"field": "field", "type": "nominal", "title": None},
                "x": {"field": "values", "type": "quantitative", "title": "values made missing"},
                "color": {"field": "reason", "type": "nominal", "legend": {"orient": "right"},
                          "scale": {"domain": reasons, "range": PALETTE[: len(reasons)]}},
                "tooltip": [{"field": "source"}, {"field": "field"}, {"field": "reason"},
                            {"field": "values", "format": ","}],
            },
        }, "Invalid values by field, coloured by reason (all sources)."),
        details("by source, field and reason",
                table(["source", "field", "reason", "values"], [[s, f, r, num(n)] for s, f, r, n in rows], numeric_from=3)),
    )
    return sec
