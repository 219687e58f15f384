"""Progress for long steps: a bar on a terminal, and a plain line every few seconds in a log or a pipe (where a
live bar would show nothing)."""
from __future__ import annotations

import time


class ProgressReport:
    """``with ProgressReport("evaluating", total) as advance: advance(n, "extra text")``."""

    def __init__(self, description: str, total: int, console=None, enabled: bool = True, interval: float = 10.0,
                 stats: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console or Console(stderr=True)
        self.description, self.total, self.interval = description, total, interval
        self.enabled = enabled and total > 0
        self.live = self.enabled and self.console.is_terminal
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        if stats:
            columns.append(TextColumn("{task.fields[stats]}"))
        self.progress = Progress(*columns, console=self.console, transient=True, disable=not self.live)
        self.task = self.progress.add_task(description, total=total, stats="")
        self.done, self.started, self.last_line = 0, time.monotonic(), time.monotonic()

    def __enter__(self):
        self.progress.start()
        return self.advance

    def advance(self, n: int = 1, text: str = "") -> None:
        self.done += n
        self.progress.update(self.task, advance=n, stats=text)
        now = time.monotonic()
        if self.enabled and not self.live and (now - self.last_line >= self.interval or self.done >= self.total):
            self.last_line = now
            rate = self.done / max(now - self.started, 1e-9)
            self.console.print(f"{self.description}: {self.done}/{self.total} ({rate:.1f}/s){' ' + text if text else ''}",
                               highlight=False, markup=False)

    def __exit__(self, *exc):
        self.progress.stop()
