"""Synthetic extracts that look and fail like the real ones, with the truth to score against.

>>> from linkage.synthetic import generate, PROFILES
>>> PROFILES
('clean', 'realistic', 'hard')

``generate(people, seed, out, profile)`` writes pnc.csv, prison.csv, probation.csv,
libra.csv, crest.csv, truth.csv and corruptions.csv, a chunk of people at a time (reference
numbers unique and relationships reaching across chunks); ``measure_true_pair_agreement``
reports how often true pairs disagree, to compare with DOMAIN.md's targets.

``generate(..., departments=True)`` adds OASys, accredited programmes, DWP benefit claims,
HMRC employment spells and learner records about the same people (and people outside
justice), with ``truth_departments.csv``; ``measure_departments`` gives their calibration
figures.
"""

from linkage.synthetic.generator import SynthResult, generate
from linkage.synthetic.departments import DEPT_COLUMNS, DEPT_SOURCES
from linkage.synthetic.measure import REALISTIC_TARGETS, measure_true_pair_agreement
from linkage.synthetic.measure_departments import measure_departments
from linkage.synthetic.profiles import PROFILES

__all__ = [
    "DEPT_COLUMNS",
    "DEPT_SOURCES",
    "PROFILES",
    "REALISTIC_TARGETS",
    "SynthResult",
    "generate",
    "measure_departments",
    "measure_true_pair_agreement",
]
