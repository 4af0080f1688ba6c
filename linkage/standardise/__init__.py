"""Standardisation: one module per field type, and the justice preset's person record.

* :mod:`linkage.standardise.justice` standardises the justice preset's person fields
  (names, aliases, dates of birth, sex, PNC ID, CRO, prison number, CRN, postcode) into
  the columns listed in :data:`linkage.schema.STANDARD_COLUMNS`.
* :mod:`linkage.standardise.types` holds the declared field types (``name``, ``date``,
  ``identifier``, ``postcode``, ``text``, ``number``, ``email``, ``category``, ``list``),
  one module each, registered by name; :mod:`linkage.standardise.declared` runs a job's
  declared fields over its records.

The helpers evaluators call (``canonical_pnc``, ``canonical_cro``...) are re-exported here.
"""

from linkage.standardise.justice import *  # noqa: F403 - the public API of the justice preset
from linkage.standardise.justice import __all__ as _justice_all

__all__ = list(_justice_all)


def __getattr__(name: str):
    """The justice preset's reference data (``DUMMY_PNC_KEYS``, ``INPUT_COLUMNS``...) as before
    the package split: ``linkage.standardise.X`` still finds it."""
    from linkage.standardise import justice

    try:
        return getattr(justice, name)
    except AttributeError:
        raise AttributeError(f"module 'linkage.standardise' has no attribute {name!r}") from None
