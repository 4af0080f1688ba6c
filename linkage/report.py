"""The quality report: one self-contained HTML page per run, readable offline.

``write_report(run_dir)`` reads only the run directory (manifest.json, restricted/,
analyst/, evaluation.json and restricted/review/review_estimates.json when present) and
writes ``run_dir/report.html``. Every number is aggregated in DuckDB over the Parquet
files, so the report costs a few scans whatever the size of the run.

The page shows counts, parameters and cluster keys only: never a name, a date of birth,
a reference number or a record id. Charts are Vega-Lite specs drawn by the vega,
vega-lite and vega-embed scripts that Splink ships, inlined once, so the page needs no
network. The model charts are Splink's own (``match_weights_chart``,
``m_u_parameters_chart``), built from ``restricted/model.json``.
"""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import duckdb

from linkage.sources import lit, q

REPORT = "report.html"
VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # a name, never fetched
LARGEST_CLUSTERS = 20
CONFLICT_CLUSTERS = 20
ERROR_CHART_MIN_RECORDS = 5
# Standardised columns that are keys of the table rather than fields of a person.
NOT_FIELDS = ("source_dataset", "record_id")


# --- page pieces -------------------------------------------------------------------------------


@dataclass
class Section:
    id: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *html_parts: str) -> "Section":
        self.parts.extend(html_parts)
        return self


class Charts:
    """Vega-Lite specs collected while the page is built, drawn by one script at the end."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}

    def add(self, chart_id: str, spec: dict[str, Any], caption: str = "") -> str:
        if chart_id in self.specs:
            raise ValueError(f"chart id {chart_id!r} used twice")
        spec = {"$schema": VEGA_LITE_SCHEMA, **spec}
        self.specs[chart_id] = _json_safe(spec)
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        return f'<figure class="chart"><div class="vis" id="{esc(chart_id)}" data-chart="{esc(chart_id)}"></div>{cap}</figure>'


# Twenty distinct colours (Tableau 10 and its light companions, alternated so that
# neighbours differ): enough for every invalid-value reason a job can give.
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a", "#d62728", "#c5b0d5", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f"]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json_safe(value: Any) -> Any:
    """Plain JSON: NaN and infinities become null, Decimals floats, tuples lists."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    try:
        return _json_safe(float(value))  # Decimal, numpy numbers
    except (TypeError, ValueError):
        return str(value)


def _json_for_script(value: Any) -> str:
    # Inside <script>, "</script>" or "<!--" in a string would end the element early.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else ("−∞" if value < 0 else "–")
    if digits == 0 and float(value).is_integer():
        return f"{int(value):,}"
    return f"{float(value):,.{digits or 2}f}"


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def table(headers: list[str] | None, rows: list[list[Any]], *, numeric_from: int = 1, cls: str = "") -> str:
    """An HTML table (no header row when ``headers`` is None); cells are escaped unless wrapped in ``Raw``."""
    head = "".join(f"<th{' class=num' if i >= numeric_from else ''}>{esc(h)}</th>" for i, h in enumerate(headers or []))
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            content = v.html if isinstance(v, Raw) else esc(v)
            cells.append(f"<td{' class=num' if i >= numeric_from else ''}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if headers else ""
    return f'<table class="{cls}">{thead}<tbody>{"".join(body)}</tbody></table>'


@dataclass(frozen=True)
class Raw:
    html: str


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def para(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def cards(items: list[tuple[str, str]]) -> str:
    inner = "".join(f'<div class="card"><div class="big">{esc(v)}</div><div>{esc(k)}</div></div>' for k, v in items)
    return f'<div class="cards">{inner}</div>'


# --- the run's files ---------------------------------------------------------------------------


@dataclass
class Run:
    dir: Path
    manifest: dict[str, Any]
    evaluation: dict[str, Any] | None
    review: dict[str, Any] | None
    con: duckdb.DuckDBPyConnection

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def has(self, *parts: str) -> bool:
        return self.path(*parts).is_file()

    def parquet(self, name: str) -> str:
        """``read_parquet('restricted/<name>.parquet')`` for a FROM clause."""
        return f"read_parquet({lit(str(self.path('restricted', name + '.parquet')))})"

    def sql(self, query: str) -> list[tuple]:
        return self.con.execute(query).fetchall()

    @property
    def threshold(self) -> float:
        return float(self.manifest.get("model", {}).get("threshold_match_probability", 0.5))

    @property
    def sources(self) -> list[str]:
        return list(self.manifest.get("inputs", {}))


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def weight_of(probability: float) -> float:
    """Splink's match weight for a match probability: log2 of the odds."""
    if probability >= 1:
        return math.inf
    if probability <= 0:
        return -math.inf
    return math.log2(probability / (1 - probability))


# --- sections ------------------------------------------------------------------------------------


def _overview(run: Run, charts: Charts) -> Section:
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


def _inputs(run: Run, charts: Charts) -> Section:
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


def _completeness(run: Run, charts: Charts) -> Section:
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
        f'<details><summary>the same as a table</summary>{table(["source", "records", *names], body)}</details>',
    )
    return sec


def _rejects(run: Run, charts: Charts) -> Section:
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


def _invalid_values(run: Run, charts: Charts) -> Section:
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
        "<details><summary>by source, field and reason</summary>"
        + table(["source", "field", "reason", "values"], [[s, f, r, num(n)] for s, f, r, n in rows], numeric_from=3)
        + "</details>",
    )
    return sec


def _blocking(run: Run, charts: Charts) -> Section:
    sec = Section("blocking", "Blocking rules")
    rules = run.manifest.get("blocking") or []
    if not rules:
        return sec.add(note("The manifest lists no blocking rules."))
    body, values = [], []
    for i, r in enumerate(rules, 1):
        largest = ", ".join(num(b[1] if isinstance(b, (list, tuple)) else b) for b in r.get("largest_blocks") or [])
        body.append([i, r["rule"], num(r["comparisons"]), largest or "–"])
        values.append({"rule": f"{i}. {r['rule']}", "comparisons": r["comparisons"]})
    total = sum(r["comparisons"] for r in rules)
    sec.add(
        para(f"Pairs each rule generates on its own, before rules overlap ({num(total)} in all at most), "
             f"and the sizes of its largest blocks: a block of n records costs n(n−1)/2 comparisons."),
        charts.add("chart-blocking", {
            "data": {"values": values},
            "mark": "bar", "width": 520, "height": {"step": 24},
            "encoding": {
                "y": {"field": "rule", "type": "nominal", "sort": None, "title": None, "axis": {"labelLimit": 360}},
                "x": {"field": "comparisons", "type": "quantitative", "title": "comparisons generated"},
                "tooltip": [{"field": "rule"}, {"field": "comparisons", "format": ","}],
            },
        }, "Comparisons generated by each blocking rule."),
        table(["#", "rule", "comparisons", "largest blocks (records)"], body, numeric_from=2),
    )
    return sec


def _splink_model_charts(run: Run) -> list[tuple[str, dict[str, Any], str]]:
    """Splink's own match-weight and m/u charts, from the saved model on an empty table."""
    from splink import DuckDBAPI, Linker

    settings = json.loads(run.path("restricted", "model.json").read_text())
    con = _connect()
    try:
        std = run.path("restricted", "standardised.parquet")
        if std.is_file():
            con.execute(f"CREATE TABLE model_input AS SELECT * FROM read_parquet({lit(str(std))}) LIMIT 0")
        else:
            con.execute("CREATE TABLE model_input (source_dataset VARCHAR, record_id VARCHAR)")
        db_api = DuckDBAPI(connection=con)
        linker = Linker(db_api.register("model_input", dataset_display_name="model_input"), settings, log_level=None)
        vis = linker.visualisations
        return [  # Splink's own specs; the width is ours (Splink's default leaves labels cramped)
            ("chart-match-weights", _widened(vis.match_weights_chart().chart_dict, 420),
             "Splink's match weights chart: the partial match weight of each comparison level "
             "(log2 of m/u) and the prior."),
            ("chart-m-u", _widened(vis.m_u_parameters_chart().chart_dict, 300),
             "Splink's m and u parameters chart: the share of matching (m) and non-matching (u) pairs "
             "in each level."),
        ]
    finally:
        con.close()


def _widened(spec: dict[str, Any], width: int) -> dict[str, Any]:
    spec.setdefault("config", {}).setdefault("view", {})["continuousWidth"] = width
    return spec


def _model(run: Run, charts: Charts) -> Section:
    sec = Section("model", "The model")
    model = run.manifest.get("model", {})
    prior = model.get("probability_two_random_records_match")
    sec.add(para(
        f"A Fellegi-Sunter model "
        f"({'trained in this run' if model.get('trained') else 'loaded from ' + str(model.get('loaded_from'))}). "
        f"Pairs are linked at match probability ≥ {run.threshold:g} (match weight ≥ "
        f"{num(weight_of(run.threshold), 2)}). Prior: two random records match with probability "
        f"{'–' if prior is None else f'{prior:.3g}'} (match weight {num(weight_of(prior), 2) if prior else '–'})."
    ))
    if run.has("restricted", "model.json"):
        for chart_id, spec, caption in _splink_model_charts(run):
            sec.add(charts.add(chart_id, spec, caption))
    else:
        sec.add(note("restricted/model.json is missing: Splink's charts cannot be drawn."))
    params = model.get("parameters") or []
    if params:
        untrained = _untrained_levels(run)
        body = []
        for p in params:
            m, u, w = p.get("m_probability"), p.get("u_probability"), p.get("match_weight")
            if (p["comparison"], p["level"]) in untrained:
                # The saved model has no m or u here: whatever the manifest holds is Splink's
                # starting value, not something the data taught.
                body.append([p["comparison"], p["level"], _prob(untrained[(p["comparison"], p["level"])][0]),
                             _prob(untrained[(p["comparison"], p["level"])][1]),
                             Raw('<span class="untrained">never trained</span>')])
            else:
                body.append([p["comparison"], p["level"], _prob(m), _prob(u),
                             num(w, 2) if w is not None else Raw('<span class="untrained">never trained</span>')])
        sec.add(
            "<h3>Parameters</h3>",
            note("Levels marked never trained have no m or u in the saved model (restricted/model.json): "
                 "no pair in training reached them, so they carry no learnt weight."),
            table(["comparison", "level", "m", "u", "match weight"], body, numeric_from=2),
        )
    return sec


def _untrained_levels(run: Run) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(comparison, level) -> (m, u) of the levels whose m or u is null in restricted/model.json."""
    saved = _read_json(run.path("restricted", "model.json")) if run.has("restricted", "model.json") else None
    out = {}
    for comp in (saved or {}).get("comparisons", []):
        for level in comp.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            if m is None or u is None:
                out[(comp.get("output_column_name"), level.get("label_for_charts"))] = (m, u)
    return out


def _prob(value: float | None) -> str:
    if value is None:
        return "untrained"
    return f"{value:.4f}" if value >= 0.001 else f"{value:.2e}"


def _weight_distribution(run: Run, charts: Charts) -> Section:
    sec = Section("weights", "Match weights of scored pairs")
    if not run.has("restricted", "predictions.parquet"):
        return sec.add(note("restricted/predictions.parquet is missing."))
    src = run.parquet("predictions")
    t = run.threshold
    n, lo, hi, above, floor_p = run.sql(
        f"SELECT count(*), min(match_weight), max(match_weight), count(*) FILTER (WHERE match_probability >= {t}), "
        f"min(match_probability) FROM {src} WHERE isfinite(match_weight)"
    )[0]
    if not n:
        return sec.add(para("No pair was scored above the floor kept in predictions.parquet."))
    width = _bin_width(lo, hi)
    tw = weight_of(t)
    # Bins start at the threshold's weight, so that no bar straddles the line.
    origin = tw if math.isfinite(tw) else 0.0
    bins = run.sql(
        f"SELECT floor((match_weight - {origin!r}) / {width}) * {width} + {origin!r} AS b, count(*), "
        f"count(*) FILTER (WHERE match_probability >= {t}) "
        f"FROM {src} WHERE isfinite(match_weight) GROUP BY ALL ORDER BY 1"
    )
    values = []
    for b, count, linked in bins:
        if linked:
            values.append({"bin_start": b, "bin_end": b + width, "pairs": linked, "side": "at or above threshold"})
        if count - linked:
            values.append({"bin_start": b, "bin_end": b + width, "pairs": count - linked, "side": "below threshold"})
    sec.add(
        para(f"{num(n)} scored pairs were kept (the lowest at match probability {floor_p:.3g}: pairs far below "
             f"the threshold are not stored). {num(above)} are at or above the threshold and become links; "
             f"those just below it are the candidates for clerical review."),
        charts.add("chart-weights", {
            "width": 640, "height": 260, "padding": {"top": 24, "left": 5, "right": 5, "bottom": 5},
            "layer": [
                {"data": {"values": values}, "mark": {"type": "bar", "binSpacing": 0},
                 "encoding": {
                     "x": {"field": "bin_start", "type": "quantitative", "bin": {"binned": True, "step": width},
                           "title": "match weight"},
                     "x2": {"field": "bin_end"},
                     "y": {"field": "pairs", "type": "quantitative", "stack": "zero", "title": "pairs",
                           "scale": {"type": "sqrt"}},
                     "color": {"field": "side", "type": "nominal", "title": None,
                               "scale": {"domain": ["below threshold", "at or above threshold"],
                                         "range": ["#a6cee3", "#1f78b4"]},
                               "legend": {"orient": "top"}},
                     "tooltip": [{"field": "bin_start", "title": "from weight", "format": ".2f"},
                                 {"field": "bin_end", "title": "to weight", "format": ".2f"},
                                 {"field": "side"}, {"field": "pairs", "format": ","}]}},
                {"data": {"values": [{"w": tw, "label": f"threshold p = {t:g} (weight {tw:.2f})"}]},
                 "layer": [
                     {"mark": {"type": "rule", "color": "#e31a1c", "strokeWidth": 2, "strokeDash": [6, 3]},
                      "encoding": {"x": {"field": "w", "type": "quantitative"}}},
                     # Above the plot area (y in pixels, negative is above its top edge): the
                     # bars never reach it.
                     {"mark": {"type": "text", "color": "#e31a1c", "align": "left", "baseline": "bottom", "dx": 5,
                               "dy": -4, "fontWeight": "bold"},
                      "encoding": {"x": {"field": "w", "type": "quantitative"}, "y": {"value": 0},
                                   "text": {"field": "label"}}},
                 ]},
            ],
        }, "Distribution of match weights of scored pairs (square-root scale), with the threshold marked."),
    )
    return sec


def _bin_width(lo: float, hi: float) -> float:
    span = max(hi - lo, 1e-9)
    for w in (0.1, 0.25, 0.5, 1.0, 2.0, 5.0):
        if span / w <= 60:
            return w
    return 10.0


def _clusters(run: Run, charts: Charts) -> Section:
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


def _link_rates(run: Run, charts: Charts) -> Section:
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
        f'<details><summary>the same as a table</summary>{table(["people in", "people", *order], body)}</details>',
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


def _linkage_bias(run: Run, charts: Charts) -> Section | None:
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


# Top-level stages in the order the job runs them; any other entry is a sub-step of the next one.
TOP_STAGES = ("read", "standardise", "blocking guard", "train", "predict", "cluster", "person ids",
              "write restricted", "de-identify", "audit", "report")


def _timings(run: Run, charts: Charts) -> Section:
    sec = Section("timings", "Time and memory")
    m = run.manifest
    stages = m.get("stage_seconds") or {}
    rows: list = []
    values: list = []
    pending: list = []
    for name, secs in stages.items():
        if name in TOP_STAGES:
            rows.append([name, num(secs, 1)])
            rows += [[Raw(f'<span class="substep">{esc(n)}</span>'), num(s, 1)] for n, s in pending]
            values.append({"stage": name, "seconds": secs})
            pending = []
        else:
            pending.append((name, secs))
    rows += [[Raw(f'<span class="substep">{esc(n)}</span>'), num(s, 1)] for n, s in pending]
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
        sec.add(table(["stage (sub-steps indented)", "seconds"], rows))
    return sec


def _evaluation(run: Run, charts: Charts) -> Section | None:
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


def _error_analysis(run: Run, charts: Charts) -> Section | None:
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


def _review(run: Run, charts: Charts) -> Section | None:
    rv = run.review
    if not rv:
        return None
    sec = Section("review", "Clerical review estimates")
    p, r = rv.get("precision", {}), rv.get("recall", {})

    def ci(x):
        lo, hi = (x.get("ci95") or [None, None])
        return f"{x.get('estimate', 0):.3f} (95% interval {lo:.3f}–{hi:.3f})" if lo is not None else "–"


    sec.add(
        para(f"{num(rv.get('decisions', {}).get('reviewed'))} reviewed pairs from a stratified sample "
             f"around the threshold ({rv.get('threshold_match_probability')}), weighted by stratum."),
        table(["", "estimate"], [["precision of the threshold decision", ci(p)],
                                 ["recall among scored pairs", ci(r)],
                                 ["F1", ci(rv.get("f1", {}))]], numeric_from=1),
        table(["stratum", "match probability", "pairs", "sampled", "reviewed", "matches", "match rate"],
              [[s["stratum"], s.get("description", ""), num(s["pairs"]), num(s["sampled"]), num(s["reviewed"]),
                num(s["matches"]), pct(s.get("match_rate"))] for s in rv.get("strata", [])], numeric_from=2),
        *(note(c) for c in rv.get("caveats", [])),
    )
    return sec


SECTIONS: list[Callable[[Run, Charts], Section | None]] = [
    _overview, _inputs, _completeness, _rejects, _invalid_values, _blocking, _model, _weight_distribution,
    _clusters, _link_rates, _linkage_bias, _timings, _evaluation, _error_analysis, _review,
]


# --- the page ------------------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #222;
       margin: 0; background: #f6f7f9; }
header { background: #243447; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .sub { opacity: .8; }
nav { background: #fff; border-bottom: 1px solid #ddd; padding: 8px 32px; position: sticky; top: 0; z-index: 5;
      display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav a { color: #1f5fa8; text-decoration: none; white-space: nowrap; }
main { max-width: 1150px; margin: 0 auto; padding: 8px 32px 48px; box-sizing: border-box; }
section { overflow-x: auto; }
figure.chart, .vis { max-width: 100%; overflow-x: auto; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 12px 22px 18px; margin: 18px 0; }
h2 { font-size: 18px; margin: 6px 0 10px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts td:first-child { color: #555; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 12px; }
.card { border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px 14px; min-width: 130px; background: #fafbfc; }
.card .big { font-size: 20px; font-weight: 600; color: #243447; }
.note { color: #8a5a00; }
.error { color: #b00020; font-weight: 600; }
.substep { padding-left: 18px; color: #555; }
.untrained { color: #8a5a00; font-style: italic; }
figure.chart { margin: 10px 0 16px; }
figcaption { color: #555; font-size: 12px; margin-top: 2px; }
details summary { cursor: pointer; color: #1f5fa8; margin: 6px 0; }
footer { color: #777; font-size: 12px; text-align: center; padding: 16px; }
@media print { nav { display: none; } section { break-inside: avoid; } }
"""

DRAW = """
(function () {
  var specs = JSON.parse(document.getElementById('chart-specs').textContent);
  Object.keys(specs).forEach(function (id) {
    var el = document.getElementById(id);
    vegaEmbed(el, specs[id], {actions: false, renderer: 'svg'})
      .then(function () { el.setAttribute('data-rendered', 'true'); })
      .catch(function (err) {
        el.textContent = 'This chart could not be drawn: ' + (err.message || err);
        el.className += ' error';
      });
  });
})();
"""


def _chart_libraries() -> str:
    """vega, vega-lite and vega-embed as Splink ships them, inlined."""
    from splink.internals.html_utils import load_chart_libraries  # the files Splink bundles for offline charts

    return "\n".join(f"<script>/* {name} */\n{src}\n</script>" for name, src in load_chart_libraries().items())


def render(run: Run) -> str:
    charts = Charts()
    built: list[Section] = []
    for make in SECTIONS:
        try:
            section = make(run, charts)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            # The type only: a message from the engine could quote a value.
            warnings.warn(f"report section {make.__name__.lstrip('_')} failed: {type(exc).__name__}", stacklevel=2)
            section = Section(make.__name__.lstrip("_").replace("_", "-"), make.__name__.lstrip("_").replace("_", " ").capitalize())
            section.add(f'<p class="error section-error">This section could not be built ({esc(type(exc).__name__)}).</p>')
        if section is not None:
            built.append(section)
    m = run.manifest
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in built)
    body = "\n".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>' for s in built
    )
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Linkage report: {esc(m.get('job', ''))}</title>
<style>{CSS}</style>
</head><body>
<header><h1>Linkage quality report: {esc(m.get('job', ''))}</h1>
<div class="sub">{esc(m.get('description') or '')} · run of {esc(m.get('created_utc', ''))} · restricted: for the
linkage team. It shows counts, parameters and cluster keys only, no personal data.</div></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<footer>Written {esc(made)} by linkage {esc(m.get('versions', {}).get('linkage', ''))} from the files of this run directory.
Charts drawn offline with vega, vega-lite and vega-embed (as shipped by Splink).</footer>
<script type="application/json" id="chart-specs">{_json_for_script(charts.specs)}</script>
{_chart_libraries()}
<script>{DRAW}</script>
</body></html>
"""


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from the run directory's files; return its path."""
    run_dir = Path(run_dir)
    manifest = _read_json(run_dir / "manifest.json")
    if manifest is None:
        from linkage.errors import InputError

        raise InputError(f"{run_dir}: not a linkage run directory (no manifest.json)")
    con = _connect()
    try:
        run = Run(
            dir=run_dir,
            manifest=manifest,
            evaluation=_read_json(run_dir / "evaluation.json"),
            review=_read_json(run_dir / "restricted" / "review" / "review_estimates.json"),
            con=con,
        )
        page = render(run)
    finally:
        con.close()
    out = run_dir / REPORT
    tmp = out.with_name(f".{REPORT}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
