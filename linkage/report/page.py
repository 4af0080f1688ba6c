"""The page: the sections in order, assembled into one self-contained HTML file."""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from linkage.report import bias, clusters, decisions, evaluation, inputs, model, overview, review, timings, weights
from linkage.report.elements import Charts, Section, esc, json_for_script
from linkage.report.run import Run, connect, read_json

REPORT = "report.html"

# A section is a function of the run (and the page's charts) returning a Section, or None
# when the run has nothing for it; the page shows them in this order.
SectionMaker = Callable[[Run, Charts], Section | None]
SECTIONS: list[SectionMaker] = [
    overview.overview,
    inputs.inputs, inputs.completeness, inputs.rejects, inputs.invalid_values,
    model.blocking, model.model, weights.weight_distribution,
    clusters.clusters, clusters.link_rates,
    bias.linkage_bias,
    timings.timings,
    evaluation.evaluation, evaluation.error_analysis,
    review.review, decisions.clerical_decisions,
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
            name = make.__name__
            warnings.warn(f"report section {name} failed: {type(exc).__name__}", stacklevel=2)
            section = Section(name.replace("_", "-"), name.replace("_", " ").capitalize())
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
<script type="application/json" id="chart-specs">{json_for_script(charts.specs)}</script>
{_chart_libraries()}
<script>{DRAW}</script>
</body></html>
"""


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from the run directory's files; return its path."""
    run_dir = Path(run_dir)
    manifest = read_json(run_dir / "manifest.json")
    if manifest is None:
        from linkage.errors import InputError

        raise InputError(f"{run_dir}: not a linkage run directory (no manifest.json)")
    con = connect()
    try:
        run = Run(
            dir=run_dir,
            manifest=manifest,
            evaluation=read_json(run_dir / "evaluation.json"),
            review=read_json(run_dir / "restricted" / "review" / "review_estimates.json"),
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
