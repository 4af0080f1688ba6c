"""The justice preset's record schema, as constants for the code that needs it before a
config is read (the column lists of ``linkage synth``'s extracts, report fixtures).

The preset itself is data, ``linkage/presets/justice.yaml``: ``PERSON_FIELDS`` are its
fields' inputs (the names a source's ``columns:`` may map) and ``STANDARD_COLUMNS`` the
columns its standardisation derives, which blocking rules and comparisons may name.
``tests/test_open_model.py`` checks that these constants and the preset agree. A job that
declares its own ``fields:`` has its own schema (``JobConfig.person_fields``).
"""

from __future__ import annotations

# Fields a source may map (any may be absent in a source).
PERSON_FIELDS: tuple[str, ...] = (
    "first_name",
    "middle_names",
    "surname",
    "full_name",  # one string, court style: split into first/middle/surname
    "aliases",  # separated list of other names the record carries
    "date_of_birth",
    "alias_dates_of_birth",  # separated list of other dates of birth
    "sex",
    "pnc_id",
    "cro_number",
    "prison_number",
    "crn",
    "postcode",
)

# Fields that hold dates and so need the source's date formats.
DATE_FIELDS = ("date_of_birth", "alias_dates_of_birth")

# Columns of the standardised table (one row per input record).
STANDARD_COLUMNS: dict[str, str] = {
    "source_dataset": "VARCHAR",
    "record_id": "VARCHAR",
    "first_name": "VARCHAR",
    "middle_names": "VARCHAR",
    "surname": "VARCHAR",
    "forename_canonical": "VARCHAR",
    "first_name_metaphone": "VARCHAR",
    "surname_metaphone": "VARCHAR",
    "full_name": "VARCHAR",
    "name_set": "VARCHAR[]",
    "surname_set": "VARCHAR[]",
    "forename_set": "VARCHAR[]",
    "date_of_birth": "DATE",
    "year_of_birth": "INTEGER",
    "alias_dates_of_birth": "DATE[]",
    "dob_set": "DATE[]",
    "sex": "VARCHAR",
    "pnc_id": "VARCHAR",
    "pnc_key": "VARCHAR",
    "cro_number": "VARCHAR",
    "prison_number": "VARCHAR",
    "crn": "VARCHAR",
    "postcode": "VARCHAR",
    "postcode_district": "VARCHAR",
    "postcode_area": "VARCHAR",
}

