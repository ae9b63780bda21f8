"""The burn-down chart of a drain's backlog, as a small self-contained SVG (no script, no link).

Pure: numbers in, markup out. It draws the past backlog (solid), the projection (dashed), labelled
axes (items; times in Asia/Jerusalem), a "now" marker, the deadline and the weekly reset. The time
window is scaled to what matters: the history, then as far ahead as the history reaches back or
to the projected finish, whichever is later, but never past the deadline. A deadline beyond the
window is named at its right edge instead of squeezing the history into a sliver.
"""

from __future__ import annotations

import math
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


def burndown_svg(*, history: list[tuple[datetime, int]], projection: Projection | None,
                 now: datetime, week_reset: datetime, title: str, width: int = 360,
                 height: int = 170) -> str:
    left, right, top_pad, bottom = 40, 12, 16, 34
    t0, t1 = window(history, projection, now, week_reset)
    total = max((t1 - t0).total_seconds(), 1.0)
    peak = max([v for _, v in history] + [projection.pending if projection else 0, 1])
    top = nice_top(peak)
    plot_w, plot_h = width - left - right, height - top_pad - bottom

    def x(moment: datetime) -> float:
        seconds = min(max((moment - t0).total_seconds(), 0.0), total)
        return left + plot_w * seconds / total

    def y(value: float) -> float:
        return top_pad + plot_h * (1 - value / top)

    base = y(0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    # Y axis: 0, half and the top, with grid lines; the axis is titled.
    for value in (0, top / 2, top):
        label = f"{value:g}"
        parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - right}" '
                     f'y2="{y(value):.1f}" stroke="#eaeef2" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y(value) + 3:.1f}" {FONT} text-anchor="end" '
                     f'class="y-tick">{label}</text>')
    parts.append(f'<text x="4" y="{top_pad - 5}" {FONT} fill="#59636e" class="y-title">items</text>')
    parts.append(f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{base:.1f}" stroke="#8c959f"/>')
    parts.append(f'<line x1="{left}" y1="{base:.1f}" x2="{width - right}" y2="{base:.1f}" '
                 'stroke="#8c959f"/>')
    # X axis: the window's start and end; times in Asia/Jerusalem.
    parts.append(f'<text x="{left}" y="{height - 18}" {FONT} class="x-tick">'
                 f"{escape(axis_time(t0))}</text>")
    parts.append(f'<text x="{width - right}" y="{height - 18}" {FONT} text-anchor="end" '
                 f'class="x-tick">{escape(axis_time(t1))}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" {FONT} fill="#59636e" '
                 'text-anchor="middle" class="x-title">time (Asia/Jerusalem)</text>')

    # The weekly reset and the deadline (the same moment when no burst is on).
    def marker(moment: datetime, label: str, colour: str, css: str, row: int) -> None:
        if moment > t1:
            parts.append(f'<text x="{width - right}" y="{top_pad + 10 * row:.1f}" {FONT} '
                         f'text-anchor="end" fill="{colour}" class="{css}-beyond">'
                         f"{escape(label)} {local(moment):%a %H:%M} →</text>")
            return
        mx = x(moment)
        parts.append(f'<line x1="{mx:.1f}" y1="{top_pad}" x2="{mx:.1f}" y2="{base:.1f}" '
                     f'stroke="{colour}" stroke-width="1.5" class="{css}"/>')
        parts.append(f'<text x="{mx - 2:.1f}" y="{top_pad + 10 * row:.1f}" {FONT} '
                     f'text-anchor="end" fill="{colour}" class="{css}-label">{escape(label)}</text>')

    if projection is not None and projection.deadline_kind == "burst":
        marker(projection.deadline, "burst deadline", "#d1242f", "deadline", 1)
        if projection.deadline != week_reset:
            marker(week_reset, "weekly reset", "#8250df", "reset", 2)
    else:
        marker(week_reset, "weekly reset (deadline)", "#d1242f", "deadline", 1)

    # Now.
    nx = x(now)
    parts.append(f'<line x1="{nx:.1f}" y1="{top_pad}" x2="{nx:.1f}" y2="{base:.1f}" '
                 'stroke="#59636e" stroke-dasharray="2 2" class="now"/>')
    parts.append(f'<text x="{nx + 2:.1f}" y="{base - 3:.1f}" {FONT} fill="#59636e" '
                 'class="now-label">now</text>')

    if history:
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in history)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#1f6feb" '
                     'stroke-width="2" class="history"/>')
    if projection is not None and projection.pending > 0 and projection.rate_per_hour > 0:
        # The work resumes at ``begin`` (later than now while a backoff is in force).
        begin = projection.finish_at - timedelta(hours=projection.pending / projection.rate_per_hour)
        begin = min(max(begin, now), t1)
        end = min(projection.finish_at, t1)
        left_over = max(0.0, projection.pending - projection.rate_per_hour
                        * (end - begin).total_seconds() / 3600)
        points = [(now, projection.pending), (begin, projection.pending), (end, left_over)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1f6feb" stroke-width="2" '
                     'stroke-dasharray="4 3" class="projection"/>')
    parts.append("</svg>")
    return "".join(parts)
