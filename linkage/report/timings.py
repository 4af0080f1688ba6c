"""Time and memory: seconds per stage (sub-steps indented) and peak memory."""

from __future__ import annotations

from linkage.report.elements import Charts, Raw, Section, cards, esc, num, table
from linkage.report.run import Run

# Top-level stages in the order the job runs them; any other entry is a sub-step of the next one.
TOP_STAGES = ("read", "standardise", "blocking guard", "train", "predict", "cluster", "person ids",
              "write restricted", "de-identify", "audit", "report")


def timings(run: Run, charts: Charts) -> Section:
    sec = Section("timings", "Time and memory")
    m = run.manifest
    stages = m.get("stage_seconds") or {}
    after = m.get("peak_rss_bytes_after_stage") or {}

    def high_water(name: str) -> str:
        return f"{after[name] / 2**30:.2f}" if after.get(name) else "–"

    def substeps(steps: list) -> list:
        return [[Raw(f'<span class="substep">{esc(n)}</span>'), num(s, 1), high_water(n)] for n, s in steps]

    rows: list = []
    values: list = []
    pending: list = []
    for name, secs in stages.items():
        if name in TOP_STAGES:
            rows.append([name, num(secs, 1), high_water(name)])
            rows += substeps(pending)
            values.append({"stage": name, "seconds": secs})
            pending = []
        else:
            pending.append((name, secs))
    rows += substeps(pending)
    peak = m.get("peak_rss_bytes")
    sec.add(cards([
        ("total time", f"{num(m.get('total_seconds'), 1)} s"),
        ("peak memory (RSS)", f"{peak / 2**30:.2f} GiB" if peak else "–"),
        ("records", num(sum(r.get("read", 0) for r in (m.get("rows") or {}).values()))),
    ]))
    if values:
        sec.add(charts.add("chart-timings", {
            "data": {"values": values},
            "mark": "bar", "width": 520, "height": {"step": 22},
            "encoding": {
                "y": {"field": "stage", "type": "nominal", "sort": None, "title": None},
                "x": {"field": "seconds", "type": "quantitative"},
                "tooltip": [{"field": "stage"}, {"field": "seconds", "format": ".1f"}],
            },
        }, "Seconds per top-level stage"
           + (", the report included" if any(v["stage"] == "report" for v in values)
              else " (the report itself is written after this chart and is not included)")
           + "; sub-steps are in the table below."))
    if rows:
        # The high-water mark only grows: the stage where it reaches the peak set it.
        sec.add(table(["stage (sub-steps indented)", "seconds", "peak memory so far (GiB)"], rows))
    return sec
