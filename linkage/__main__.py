"""``python -m linkage``: the same command line as the ``linkage`` script.

``linkage find`` with plain arguments (the run, ``--record`` and the other options each
once, with a value) takes a short way here, before the command-line library and its
console are imported: a find is a lookup a person waits for, and those imports were a
third of it. Anything else (help, a missing or repeated option, a bad value, another
command) goes to :mod:`linkage.cli`, which says what it always says; errors raised by the
find itself are reported by the CLI's own handler, so messages and exit codes are the same.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

_FIND_OPTIONS = {"--record": "record", "--source": "source", "--config": "config", "--top": "top"}


def find_arguments(argv: Sequence[str]) -> dict[str, str] | None:
    """``linkage find``'s arguments (``run_dir`` and the options given) if they are plain;
    None if the full command line should parse them."""
    if not argv or argv[0] != "find":
        return None
    args: dict[str, str] = {}
    tokens = iter(argv[1:])
    for token in tokens:
        if not token.startswith("-"):
            if "run_dir" in args:
                return None
            args["run_dir"] = token
            continue
        name, eq, value = token.partition("=")
        key = _FIND_OPTIONS.get(name)
        if key is None or key in args:
            return None
        if not eq:
            value = next(tokens, "")
            if value.startswith("-"):
                return None
        if not value:
            return None
        args[key] = value
    if "run_dir" not in args or "record" not in args:
        return None
    if "top" in args:
        try:
            int(args["top"])
        except ValueError:
            return None
    return args


def find(args: dict[str, str]) -> int:
    """``linkage find`` as :func:`linkage.cli.find` runs it (the run held against writers and
    repaired first, the same lines on stdout and stderr); returns the exit code."""
    import warnings

    warnings.simplefilter("ignore", category=FutureWarning)
    try:
        from linkage import publish
        from linkage.find import find_records, summary

        with publish.open_run(Path(args["run_dir"]), lambda line: print(line, file=sys.stderr)):
            result = find_records(Path(args["run_dir"]), Path(args["record"]), source=args.get("source"),
                                  config=Path(args["config"]) if "config" in args else None,
                                  top=int(args.get("top", 5)))
        print("\n".join(summary(result)))
        print(f"wrote {result.out} (owner-only); {result.records} records in {result.seconds['total']:.2f} s "
              f"(scoring {result.seconds['score']:.2f} s)", file=sys.stderr)
        return 0
    except BaseException as exc:  # noqa: BLE001 - handed to the CLI's one place for errors
        from linkage.cli import _fault

        return _fault(exc)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m linkage`` (and of the ``linkage`` script)."""
    args = find_arguments(list(sys.argv[1:] if argv is None else argv))
    if args is None:
        from linkage.cli import main as full

        full(argv)
        return
    code = find(args)
    # The answer is written, the run's lock released and the database closed: leave without
    # tearing down the interpreter's modules one by one (about a tenth of a second of a find).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
