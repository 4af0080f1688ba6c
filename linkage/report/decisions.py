"""Clerical decisions: how many a run applied and what they changed (``linkage.decisions``)."""

from __future__ import annotations

from linkage import decisions
from linkage.report.elements import Charts, Section, num, para, table
from linkage.report.run import Run


def clerical_decisions(run: Run, charts: Charts) -> Section | None:
    rows = decisions.summary(run.manifest)
    if rows is None:
        return None
    sec = Section("decisions", "Clerical decisions")
    sec.add(
        para("Reviewers' decisions imported with 'linkage review RUN --import FILE' and applied to this "
             "run: a match joins the two records' people, a not-match cuts the link between them."),
        table(["", "count"], [[label, num(n)] for label, n in rows], numeric_from=1),
    )
    return sec
