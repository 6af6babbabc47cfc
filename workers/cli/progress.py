"""Progress of a long command: a bar on a terminal, else a line every few seconds.

``jobtrail audit verify`` and ``jobtrail keys rewrap`` report (done, total) as they go; on
a terminal that is a bar on standard error, in a log (no terminal) a line such as
``verified 50,000 of 1,200,000 events`` every :data:`LINE_SECONDS` and at the end, and
with ``--json`` nothing at all (standard output is the report).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

LINE_SECONDS: Final = 5.0
"""Seconds between progress lines when standard error is not a terminal."""


class CountProgress:
    """Shows ``done`` of ``total`` things: ``doing`` names the work on the bar
    ("verifying"), ``did`` in the lines ("verified"), ``unit`` what is counted ("events")."""

    def __init__(self, err: Console, *, quiet: bool, doing: str, did: str, unit: str) -> None:
        self.err = err
        self.quiet = quiet
        self.doing, self.did, self.unit = doing, did, unit
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.next_line = time.monotonic() + LINE_SECONDS

    def __enter__(self) -> Callable[[int, int], None] | None:
        if self.quiet:
            return None
        if self.err.is_terminal:
            self.bar = Progress(
                TextColumn(self.doing),
                BarColumn(),
                TextColumn("{task.completed:,} / {task.total:,} " + self.unit),
                TimeRemainingColumn(),
                console=self.err,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.doing, total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``."""
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total)
        elif time.monotonic() >= self.next_line or done == total:
            self.next_line = time.monotonic() + LINE_SECONDS
            self.err.print(f"{self.did} {done:,} of {total:,} {self.unit}")

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.stop()
