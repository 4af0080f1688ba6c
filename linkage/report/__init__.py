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

One module per part of the page:

- ``elements``: the pieces (``Section``, ``Charts``, ``table``, ``cards``, ``num``, ``pct``...);
- ``run``: the run directory (``Run``: manifest, evaluation, review, a DuckDB connection);
- the sections: ``overview``; ``inputs`` (inputs, completeness, rejected rows, invalid
  values); ``model`` (blocking rules, the model); ``weights``; ``clusters`` (clusters, link
  rates); ``bias``; ``timings``; ``evaluation`` (scores, threshold curve, error analysis);
  ``review`` (clerical review estimates);
- ``page``: the sections in order (``SECTIONS``), the page around them, ``write_report``.

To add a section, write ``def name(run: Run, charts: Charts) -> Section | None`` in the
module of its theme (or a new one): read what it needs from the run directory
(``run.has``, ``run.parquet``, ``run.sql``), return ``None`` when the run has nothing for
it, add charts with ``charts.add``; then list it in ``page.SECTIONS`` where it belongs on
the page. A section that raises is replaced by a one-line error; the others still show.
"""

from linkage.report.page import REPORT, SECTIONS, render, write_report
from linkage.report.run import Run

__all__ = ["REPORT", "SECTIONS", "Run", "render", "write_report"]
