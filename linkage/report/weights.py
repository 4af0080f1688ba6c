"""Match weights of the scored pairs, with the threshold marked."""

from __future__ import annotations

import math

from linkage.report.elements import Charts, Section, note, num, para
from linkage.report.run import Run, weight_of


def weight_distribution(run: Run, charts: Charts) -> Section:
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
