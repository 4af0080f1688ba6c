"""One error hierarchy; the CLI turns it into exit codes (1 for these, 2 for anything else).

Messages name files, keys, columns, row numbers and counts; never a record's value.
"""

from __future__ import annotations

import errno


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


class TrainingError(LinkageError):
    """Training stopped because the data cannot support a step (too few or no pairs for EM)."""

    def __init__(self, cause: BaseException, steps: tuple[str, ...] | None):
        step = (steps or ("train",))[-1]
        # Splink's EM message names the training blocking rule (config text, never a value).
        detail = str(cause).split("\n", 1)[0].split(".  ", 1)[0].strip() if _is_splink(cause, "EMTrainingException") else ""
        super().__init__(
            f"training stopped at '{step}': the data cannot support this step ({type(cause).__name__}"
            + (f": {detail}" if detail else "")
            + "). Give the model more to learn from (more records, or model.training.em_blocking_rules that "
            "pair more records), or skip training with --model and a saved model."
        )


# --- the CLI's map from exceptions to exit codes ----------------------------------------------------

INTERRUPTED = 130


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts, nearest first (libraries wrap the real error)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, None if e.__suppress_context__ else e.__context__]
    return seen


def _is_splink(exc: BaseException, name: str = "SplinkException") -> bool:
    return any(c.__name__ == name and c.__module__.startswith("splink") for c in type(exc).__mro__)


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, wherever it landed: Python's KeyboardInterrupt, DuckDB's InterruptException, or
    the RuntimeError("Query interrupted") DuckDB 2 raises when Ctrl-C lands inside a query."""
    return any(
        isinstance(e, KeyboardInterrupt)
        or type(e).__name__ == "InterruptException"
        or (type(e) is RuntimeError and str(e).strip() == "Query interrupted")
        for e in _chain(exc)
    )


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)
_DUCKDB_TEXTS = (
    ("no space left on device", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT),
    ("read-only file system", errno.EROFS),
    ("permission denied", errno.EACCES),
)


def os_fault(exc: BaseException) -> tuple[int, str | None] | None:
    """(errno, file name or None) when a full disk or a refused write is behind ``exc``."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (*_NO_SPACE, *_NOT_ALLOWED):
            return e.errno, e.filename if isinstance(e.filename, str) else None
        if type(e).__module__.startswith(("duckdb", "_duckdb")):
            text = str(e).lower()
            for needle, code in _DUCKDB_TEXTS:
                if needle in text:
                    return code, None
    return None


def describe_os_fault(code: int, filename: str | None) -> str:
    where = f"{filename}: " if filename else ""
    if code in _NO_SPACE:
        return (
            f"{where}no space left on the device (or the disk quota is used up). Free some space, or write "
            f"the run elsewhere with --out; DuckDB's spill files go to engine.temp_directory."
        )
    if code == errno.EROFS:
        return f"{where}the file system is read-only. Write to a folder on a writable disk (--out for a run)."
    return f"{where}permission denied. Write to a folder you can write to (--out for a run), or fix its permissions."


def is_out_of_memory(exc: BaseException) -> bool:
    """DuckDB ran out of memory (it spills past memory_limit, but not every operator can)."""
    return any(type(e).__name__ == "OutOfMemoryException" for e in _chain(exc))


def is_training_fault(exc: BaseException, steps: tuple[str, ...] | None) -> bool:
    """A Splink or DuckDB error raised while training: the data cannot support an EM step."""
    if not steps or "train" not in steps or is_interrupt(exc) or os_fault(exc):
        return False
    if isinstance(exc, LinkageError):
        return False
    chain = _chain(exc)
    # SQL that does not parse or bind is our bug, not the data's.
    if any(type(e).__name__ in _SQL_BUGS for e in chain):
        return False
    return any(_is_splink(e) or type(e).__module__.startswith(("duckdb", "_duckdb")) for e in chain)


_SQL_BUGS = {"ParserException", "BinderException", "CatalogException", "SyntaxException",
             "NotImplementedException", "InternalException", "ProgrammingError"}
