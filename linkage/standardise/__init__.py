"""Standardisation: declared fields, one module per field type, and presets as data.

* :mod:`linkage.standardise.types` holds the field types (``name``, ``person_name``,
  ``date``, ``identifier``, ``postcode``, ``text``, ``number``, ``email``, ``category``,
  ``list``, ``set``), one module each, registered by name in ``TYPES``.
* :mod:`linkage.standardise.declared` runs a job's declared fields over its records: each
  distinct raw value is cleaned once.
* :mod:`linkage.standardise.presets` reads the presets (``linkage/presets/justice.yaml``:
  the justice person fields as declarations); :mod:`linkage.standardise.justice` runs them
  on one value or one table.
* :mod:`linkage.standardise.sql` holds the shared SQL (stage plans, ``lk_*`` macros).

The helpers evaluators and tests call (``canonical_pnc``, ``split_full_name``...) are
re-exported here.
"""

from linkage.standardise.justice import (
    INPUT_COLUMNS,
    INVALID_COLUMNS,
    OUTPUT_COLUMNS,
    StandardiseStats,
    canonical_crn,
    canonical_date_of_birth,
    canonical_forename,
    canonical_prison_number,
    canonical_sex,
    clean_name,
    clean_surname,
    date_of_birth_reason,
    field_value,
    split_full_name,
    standardise_table,
)
from linkage.standardise.sql import install_macros
from linkage.standardise.types.checks import (
    CHECK_ALPHABET,
    DUMMY_PNC_KEYS,
    canonical_cro,
    canonical_pnc,
    check_letter,
    cro_reason,
    parse_cro,
    parse_pnc,
    pnc_key,
    pnc_reason,
)
from linkage.standardise.types.date import DateParseCheck, date_parse_failure_keys, date_parse_failures
from linkage.standardise.types.name_cleaning import metaphone
from linkage.standardise.types.postcode import canonical_postcode, postcode_parts

__all__ = [
    "CHECK_ALPHABET", "DUMMY_PNC_KEYS", "INPUT_COLUMNS", "OUTPUT_COLUMNS", "INVALID_COLUMNS",
    "StandardiseStats", "DateParseCheck", "install_macros", "standardise_table", "field_value",
    "date_parse_failures", "date_parse_failure_keys", "check_letter", "parse_pnc", "parse_cro",
    "canonical_pnc", "pnc_key", "pnc_reason", "cro_reason", "postcode_parts",
    "date_of_birth_reason", "canonical_cro", "canonical_prison_number", "canonical_crn",
    "canonical_postcode", "canonical_sex", "canonical_date_of_birth", "clean_name",
    "clean_surname", "split_full_name", "canonical_forename", "metaphone",
]  # fmt: skip
