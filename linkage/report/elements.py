"""The pieces of the page: sections, charts, tables, cards and number formats.

Every piece returns HTML text with its values escaped; charts are Vega-Lite specs, kept in
a :class:`Charts` and drawn by one script at the end of the page.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # a name, never fetched


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


def json_for_script(value: Any) -> str:
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


def details(summary: str, inner_html: str) -> str:
    """``inner_html`` folded away under ``summary`` (a table that repeats a chart, say)."""
    return f"<details><summary>{esc(summary)}</summary>{inner_html}</details>"


def cards(items: list[tuple[str, str]]) -> str:
    inner = "".join(f'<div class="card"><div class="big">{esc(v)}</div><div>{esc(k)}</div></div>' for k, v in items)
    return f'<div class="cards">{inner}</div>'
