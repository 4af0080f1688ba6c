"""One error hierarchy; the CLI turns it into exit codes (1 for these, 2 for anything else).

Messages name files, keys, columns, row numbers and counts; never a record's value.
"""

from __future__ import annotations


class LinkageError(Exception):
    """A problem the user can fix: bad config, bad input, bad arguments. Exit code 1."""


class ConfigError(LinkageError):
    """The job config is invalid. ``problems`` lists every problem found, each one line."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = list(problems)
        n = len(self.problems)
        header = f"{path}: {n} problem{'s' if n != 1 else ''} in the config"
        super().__init__("\n".join([header, *("  " + p for p in self.problems)]))


class InputError(LinkageError):
    """An extract cannot be used as it stands (missing file or column, unreadable dates, ...)."""


class UsageError(LinkageError):
    """Nonsense command-line arguments (negative sizes, unknown profile, unwritable folder)."""


class LeakageError(LinkageError):
    """An identifier value was found in an analyst table: nothing is published."""
