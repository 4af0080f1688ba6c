"""Clerical review: the precision and recall estimated from a reviewed stratified sample.

The decisions a run applied have their own section (``linkage.report.decisions``).
"""

from __future__ import annotations

from linkage.report.elements import Charts, Section, note, num, para, pct, table
from linkage.report.run import Run


def review(run: Run, charts: Charts) -> Section | None:
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
