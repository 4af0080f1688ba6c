"""linkage: record linkage for justice administrative data."""

__version__ = "0.1.0"
