"""The burn-down chart of a drain's backlog, as a small self-contained SVG (no script, no link).

Pure: numbers in, markup out. It draws the past backlog (solid), the projection (dashed), labelled
axes (items; times in Asia/Jerusalem), a "now" marker, the deadline and the weekly reset. The time
window is scaled to what matters: the history, then as far ahead as the history reaches back or
to the projected finish, whichever is later, but never past the deadline. A deadline beyond the
window is named at its right edge instead of squeezing the history into a sliver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from drains.clock import axis_time, local
from operations.projection import Projection

FONT = 'font-family="sans-serif" font-size="10"'


def nice_top(value: int) -> int:
    """The smallest 1/2/5 × 10^k at or above ``value`` (at least 1): round tick labels."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def window(history: list[tuple[datetime, int]], projection: Projection | None, now: datetime,
           week_reset: datetime) -> tuple[datetime, datetime]:
    start = history[0][0] if history else now - timedelta(hours=1)
    past = max(now - start, timedelta(hours=1))
    end = now + past
    if projection is not None and projection.finish_at is not None:
        end = max(end, projection.finish_at)
    deadline = projection.deadline if projection is not None else week_reset
    return start, min(end, max(deadline, now + timedelta(minutes=1)))


@dataclass(frozen=True)
class _Frame:
    """The chart's geometry: the plot area inside its margins, the time window ``t0``..``t1``
    across it and 0..``top`` items up it."""

    width: int
    height: int
    t0: datetime
    t1: datetime
    top: int
    left: int = 40
    right: int = 12
    top_pad: int = 16
    bottom: int = 34

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top_pad - self.bottom

    @property
    def total(self) -> float:
        return max((self.t1 - self.t0).total_seconds(), 1.0)

    @property
    def base(self) -> float:
        return self.y(0)

    def x(self, moment: datetime) -> float:
        seconds = min(max((moment - self.t0).total_seconds(), 0.0), self.total)
        return self.left + self.plot_w * seconds / self.total

    def y(self, value: float) -> float:
        return self.top_pad + self.plot_h * (1 - value / self.top)

    def line(self, points: list[tuple[datetime, float]]) -> str:
        return " ".join(f"{self.x(t):.1f},{self.y(v):.1f}" for t, v in points)


def _axes(f: _Frame) -> list[str]:
    """Y axis: 0, half and the top, with grid lines, titled; X axis: the window's start and end,
    times in Asia/Jerusalem."""
    parts = []
    for value in (0, f.top / 2, f.top):
        parts.append(f'<line x1="{f.left}" y1="{f.y(value):.1f}" x2="{f.width - f.right}" '
                     f'y2="{f.y(value):.1f}" stroke="#eaeef2" class="grid"/>')
        parts.append(f'<text x="{f.left - 4}" y="{f.y(value) + 3:.1f}" {FONT} text-anchor="end" '
                     f'class="y-tick">{value:g}</text>')
    parts.append(f'<text x="4" y="{f.top_pad - 5}" {FONT} fill="#59636e" class="y-title">items</text>')
    parts.append(f'<line x1="{f.left}" y1="{f.top_pad}" x2="{f.left}" y2="{f.base:.1f}" '
                 'stroke="#8c959f"/>')
    parts.append(f'<line x1="{f.left}" y1="{f.base:.1f}" x2="{f.width - f.right}" '
                 f'y2="{f.base:.1f}" stroke="#8c959f"/>')
    parts.append(f'<text x="{f.left}" y="{f.height - 18}" {FONT} class="x-tick">'
                 f"{escape(axis_time(f.t0))}</text>")
    parts.append(f'<text x="{f.width - f.right}" y="{f.height - 18}" {FONT} text-anchor="end" '
                 f'class="x-tick">{escape(axis_time(f.t1))}</text>')
    parts.append(f'<text x="{f.left + f.plot_w / 2:.1f}" y="{f.height - 4}" {FONT} '
                 'fill="#59636e" text-anchor="middle" class="x-title">time (Asia/Jerusalem)</text>')
    return parts


def _marker(f: _Frame, moment: datetime, label: str, colour: str, css: str, row: int) -> list[str]:
    """A vertical line at ``moment``, or its name at the right edge when it is beyond it."""
    if moment > f.t1:
        return [f'<text x="{f.width - f.right}" y="{f.top_pad + 10 * row:.1f}" {FONT} '
                f'text-anchor="end" fill="{colour}" class="{css}-beyond">'
                f"{escape(label)} {local(moment):%a %H:%M} →</text>"]
    mx = f.x(moment)
    return [f'<line x1="{mx:.1f}" y1="{f.top_pad}" x2="{mx:.1f}" y2="{f.base:.1f}" '
            f'stroke="{colour}" stroke-width="1.5" class="{css}"/>',
            f'<text x="{mx - 2:.1f}" y="{f.top_pad + 10 * row:.1f}" {FONT} '
            f'text-anchor="end" fill="{colour}" class="{css}-label">{escape(label)}</text>']


def _deadlines(f: _Frame, projection: Projection | None, week_reset: datetime) -> list[str]:
    """The weekly reset and the deadline (the same moment when no burst is on)."""
    if projection is not None and projection.deadline_kind == "burst":
        parts = _marker(f, projection.deadline, "burst deadline", "#d1242f", "deadline", 1)
        if projection.deadline != week_reset:
            parts += _marker(f, week_reset, "weekly reset", "#8250df", "reset", 2)
        return parts
    return _marker(f, week_reset, "weekly reset (deadline)", "#d1242f", "deadline", 1)


def _now(f: _Frame, now: datetime) -> list[str]:
    nx = f.x(now)
    return [f'<line x1="{nx:.1f}" y1="{f.top_pad}" x2="{nx:.1f}" y2="{f.base:.1f}" '
            'stroke="#59636e" stroke-dasharray="2 2" class="now"/>',
            f'<text x="{nx + 2:.1f}" y="{f.base - 3:.1f}" {FONT} fill="#59636e" '
            'class="now-label">now</text>']


def _projection_line(f: _Frame, projection: Projection | None, now: datetime) -> list[str]:
    """The projected backlog (dashed): flat until the work resumes at ``begin`` (later than now
    while a backoff is in force), then down at the projected rate."""
    if (projection is None or projection.pending <= 0 or projection.rate_per_hour <= 0
            or projection.finish_at is None):
        return []
    begin = projection.finish_at - timedelta(hours=projection.pending / projection.rate_per_hour)
    begin = min(max(begin, now), f.t1)
    end = min(projection.finish_at, f.t1)
    left_over = max(0.0, projection.pending - projection.rate_per_hour
                    * (end - begin).total_seconds() / 3600)
    points: list[tuple[datetime, float]] = [
        (now, projection.pending), (begin, projection.pending), (end, left_over)]
    return [f'<polyline points="{f.line(points)}" fill="none" stroke="#1f6feb" stroke-width="2" '
            'stroke-dasharray="4 3" class="projection"/>']


def burndown_svg(*, history: list[tuple[datetime, int]], projection: Projection | None,
                 now: datetime, week_reset: datetime, title: str, width: int = 360,
                 height: int = 170) -> str:
    t0, t1 = window(history, projection, now, week_reset)
    peak = max([v for _, v in history] + [projection.pending if projection else 0, 1])
    f = _Frame(width=width, height=height, t0=t0, t1=t1, top=nice_top(peak))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
        *_axes(f),
        *_deadlines(f, projection, week_reset),
        *_now(f, now),
    ]
    if history:
        parts.append(f'<polyline points="{f.line([(t, v) for t, v in history])}" fill="none" '
                     'stroke="#1f6feb" stroke-width="2" class="history"/>')
    parts += _projection_line(f, projection, now)
    parts.append("</svg>")
    return "".join(parts)
