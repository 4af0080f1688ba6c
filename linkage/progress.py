"""Say what each stage is doing and how long it took; show a live timer for long ones.

Everything is printed as plain text (``plain_console``): notes carry file, source and
column names, which are the user's words and may hold square brackets.
"""

from __future__ import annotations

from typing import Any

import resource
import time
from contextlib import contextmanager
from typing import Iterator

import psutil
from rich.console import Console
from rich.text import Text


def plain_console(stderr: bool = True) -> Console:
    """A console that prints text as given: no markup, emoji codes or highlighting, and no
    wrapping at 80 columns when the output is not a terminal (a suggested command stays on
    one line when piped or logged)."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


class Stages:
    """Records stage timings for the manifest and reports them on stderr."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or plain_console()
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        # CPU seconds of the whole process (every DuckDB thread) per stage: on a shared
        # machine, steadier than wall time for comparing two versions of the code.
        self.cpu_timings: dict[str, float] = {}
        self._depth = 0
        self._process = psutil.Process()
        self.peak_rss = 0
        # The process's high-water mark when each stage (or sub-step) ended: it only grows,
        # so the stage at which it reaches ``peak_rss`` is the one that set the peak.
        self.peak_rss_after: dict[str, int] = {}
        self._status: Any = None
        self._names: list[str] = []
        # The stages open when an exception first passed through (innermost last).
        self.failed_in: tuple[str, ...] | None = None

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(("  " * self._depth) + f"  {text}")

    def _track_memory(self) -> None:
        # The kernel's high-water mark (ru_maxrss, kilobytes on Linux) sees the peaks inside a
        # stage that sampling the resident size at a stage's edges misses (at 10M records:
        # 7.0 GiB sampled against 8.9 GiB measured from outside).
        try:
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss,
                                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        except psutil.Error:
            pass

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A top-level stage: timed and recorded under ``name``."""
        start, cpu_start = time.perf_counter(), time.process_time()
        indent = "  " * self._depth
        self._depth += 1
        self._names.append(name)
        try:
            if self.quiet:
                yield
            elif self._status is not None:  # a sub-step: one live display at a time
                self._status.update(Text.assemble((name, "bold"), " ..."))
                yield
            else:
                with self.console.status(Text.assemble((name, "bold"), " ..."), spinner="dots") as status:
                    self._status = status
                    try:
                        yield
                    finally:
                        self._status = None
        except BaseException:
            if self.failed_in is None:
                self.failed_in = tuple(self._names)
            raise
        finally:
            self._names.pop()
            self._depth -= 1
            self._track_memory()
        seconds = time.perf_counter() - start
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
        self.cpu_timings[name] = round(self.cpu_timings.get(name, 0.0) + time.process_time() - cpu_start, 3)
        self.peak_rss_after[name] = self.peak_rss
        if not self.quiet:
            self.console.print(Text.assemble(indent, ("done", "green"), f" {name} ", (f"({seconds:.1f} s)", "dim")))

    # A sub-step reads the same; its time is part of its stage's.
    step = stage
