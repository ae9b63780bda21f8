"""Progress of a drain run, for the person or log file watching it.

On a terminal: one bar redrawn in place (items done / backlog, rate, ETA, time left to the
burst deadline), drawn at the start. Otherwise (cron, a log file): one log line per chunk, so a
log grows by a line per checkpoint, never per redraw — except for a run an operator started by
hand (``manual``), which also logs its start, its first item, and every item that comes
``SLOW_ITEM_SECONDS`` or more after the last line (slow items each get a line). This module only formats and writes: it never touches
the database and is never the liveness signal (that is the run's committed checkpoint).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from django.utils import timezone

logger = logging.getLogger("drains.progress")

BAR_WIDTH = 24
SLOW_ITEM_SECONDS = 5.0


def format_duration(seconds: float | None) -> str:
    """``2.5s``, ``45s``, ``3m05s``, ``2h07m``, ``3d04h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_rate(per_second: float) -> str:
    """Items per second, minute or hour, whichever reads best (``3.2/s``, ``12/min``, ``40/h``)."""
    if per_second <= 0:
        return "-"
    if per_second >= 1:
        return f"{per_second:.1f}/s"
    if per_second * 60 >= 1:
        return f"{per_second * 60:.1f}/min"
    return f"{per_second * 3600:.1f}/h"


def describe(
    *,
    done: int,
    failed: int,
    total: int | None,
    elapsed: float,
    deadline: datetime | None = None,
    now: datetime | None = None,
    bar: bool = False,
) -> str:
    """The status text shared by the bar and the log line."""
    handled = done + failed
    rate = handled / elapsed if elapsed > 0 else 0.0
    parts = []
    if total:
        if bar:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * handled / total))
            parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
        parts.append(f"{done}/{total} done")
    else:
        parts.append(f"{done} done")
    if failed:
        parts.append(f"{failed} failed")
    parts.append(format_rate(rate))
    if total:
        remaining = max(0, total - handled)
        parts.append("ETA " + (format_duration(remaining / rate) if rate > 0 else "?"))
    if deadline is not None:
        left = (deadline - (now or timezone.now())).total_seconds()
        parts.append(f"deadline in {format_duration(left)}" if left > 0 else "deadline reached")
    return " ".join(parts)


class Progress:
    """Reports a run's progress; ``tty`` defaults to whether ``stream`` is a terminal."""

    def __init__(
        self,
        *,
        drain: str,
        total: int | None,
        deadline: datetime | None = None,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.2,
        manual: bool = False,
    ):
        self.drain = drain
        self.total = total
        self.deadline = deadline
        self.stream = stream or sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.clock = clock
        self.started = clock()
        self.min_interval = min_interval
        self._last_draw: float | None = None
        self._drawn = False
        self.manual = manual
        self._last_line: float | None = None  # a manual run's last log line (not on a terminal)

    def _text(self, done: int, failed: int, *, bar: bool) -> str:
        return describe(
            done=done,
            failed=failed,
            total=self.total,
            elapsed=self.clock() - self.started,
            deadline=self.deadline,
            bar=bar,
        )

    def start(self, *, run_id: int, backlog: int) -> None:
        """Before the first call: the bar at zero, or (a manual run in a log) one line."""
        if self.tty:
            self.item(done=0, failed=0)
        elif self.manual:
            todo = f"{self.total} to do" if self.total is not None else "until the deadline"
            logger.info("%s run %d started: %s, %d pending", self.drain, run_id, todo, backlog)
            self._last_line = self.clock()

    def item(self, *, done: int, failed: int) -> None:
        """After each item: redraw the bar on a terminal (at most every ``min_interval``); a
        manual run in a log writes its first item and every slow one."""
        if not self.tty:
            now = self.clock()
            first = done + failed == 1
            slow = self._last_line is not None and now - self._last_line >= SLOW_ITEM_SECONDS
            if self.manual and (first or slow):
                self._last_line = now
                logger.info("%s: %s", self.drain, self._text(done, failed, bar=False))
            return
        now = self.clock()
        if self._last_draw is not None and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        self.stream.write(f"\r{self.drain} {self._text(done, failed, bar=True)}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def chunk(self, *, done: int, failed: int, chunks: int) -> None:
        """After each checkpoint: one log line when not on a terminal."""
        if self.tty:
            self.item(done=done, failed=failed)
            return
        self._last_line = self.clock()
        logger.info("%s chunk %d: %s", self.drain, chunks, self._text(done, failed, bar=False))

    def close(self, *, done: int, failed: int) -> None:
        if self.tty and self._drawn:
            self._last_draw = None
            self.item(done=done, failed=failed)
            self.stream.write("\n")
            self.stream.flush()
