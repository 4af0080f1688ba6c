"""Synthetic extracts that look and fail like the real ones, with the truth to score against.

>>> from linkage.synthetic import generate, PROFILES
>>> PROFILES
('clean', 'realistic', 'hard')

``generate(people, seed, out, profile)`` writes pnc.csv, prison.csv, probation.csv,
libra.csv, crest.csv, truth.csv and corruptions.csv, a chunk of people at a time (reference
numbers unique and relationships reaching across chunks); ``measure_true_pair_agreement``
reports how often true pairs disagree, to compare with DOMAIN.md's targets.
"""

from linkage.synthetic.generator import SynthResult, generate
from linkage.synthetic.measure import REALISTIC_TARGETS, measure_true_pair_agreement
from linkage.synthetic.profiles import PROFILES

__all__ = ["PROFILES", "REALISTIC_TARGETS", "SynthResult", "generate", "measure_true_pair_agreement"]
