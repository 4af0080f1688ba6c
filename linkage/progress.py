"""Say what each stage is doing and how long it took; show a live timer for long ones."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import psutil
from rich.console import Console


class Stages:
    """Records stage timings for the manifest and reports them on stderr."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        self._depth = 0
        self._process = psutil.Process()
        self.peak_rss = 0
        self._status = None

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(("  " * self._depth) + f"  {text}")

    def _track_memory(self) -> None:
        try:
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
        except psutil.Error:
            pass

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A top-level stage: timed and recorded under ``name``."""
        start = time.perf_counter()
        indent = "  " * self._depth
        self._depth += 1
        try:
            if self.quiet:
                yield
            elif self._status is not None:  # a sub-step: one live display at a time
                self._status.update(f"[bold]{name}[/] ...")
                yield
            else:
                with self.console.status(f"[bold]{name}[/] ...", spinner="dots") as status:
                    self._status = status
                    try:
                        yield
                    finally:
                        self._status = None
        finally:
            self._depth -= 1
            self._track_memory()
        seconds = time.perf_counter() - start
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
        if not self.quiet:
            self.console.print(f"{indent}[green]done[/] {name} [dim]({seconds:.1f} s)[/]")

    # A sub-step reads the same; its time is part of its stage's.
    step = stage
