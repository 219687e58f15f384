"""Progress for long steps: a bar on a terminal, and a plain line every few seconds in a log or a pipe (where a
live bar would show nothing)."""
from __future__ import annotations

import time


class ProgressReport:
    """``with ProgressReport("evaluating", total) as advance: advance(n, "extra text")``.

    `listener`, when given, is called with ``{"stage", "done", "total", "rate", "eta_s"}`` at most every
    `listener_interval` seconds and at the end, whether or not anything is printed (the studio shows it live);
    an exception it raises stops the step.
    """

    def __init__(self, description: str, total: int, console=None, enabled: bool = True, interval: float = 10.0,
                 stats: bool = False, listener=None, listener_interval: float = 0.5):
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
        self.listener, self.listener_interval, self.last_heard = listener, listener_interval, 0.0

    def __enter__(self):
        self.progress.start()
        return self.advance

    def advance(self, n: int = 1, text: str = "") -> None:
        self.done += n
        self.progress.update(self.task, advance=n, stats=text)
        now = time.monotonic()
        rate = self.done / max(now - self.started, 1e-9)
        if self.listener and (now - self.last_heard >= self.listener_interval or self.done >= self.total):
            self.last_heard = now
            self.listener({"stage": self.description, "done": self.done, "total": self.total, "rate": rate,
                           "eta_s": max(self.total - self.done, 0) / rate if rate > 0 else None})
        if self.enabled and not self.live and (now - self.last_line >= self.interval or self.done >= self.total):
            self.last_line = now
            said = f" {text}" if text else ""
            self.console.print(f"{self.description}: {self.done}/{self.total} ({rate:.1f}/s){said}", highlight=False,
                               markup=False)

    def __exit__(self, *exc):
        self.progress.stop()
