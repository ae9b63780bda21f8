"""The finish-time projection and the burn-down chart: "will the backlog be done in time?"

Pure functions over data the selectors already read (pending items, the recent runs, the
deadline, a backoff in force); they never query the database and never change anything. The
deadline is the burst's when a burst is on, otherwise the week boundary (when the weekly quota
resets). The rate (``window_rate``) is measured over the last DRAINS_PROJECTION_WINDOW_MINUTES of
counted time: time spent backing off never counts; in a burst only working time counts, per call
slot, scaled to the concurrency the drain runs at. When a backoff is in force the projection
starts at its known reset. The past backlog is reconstructed from the hourly throughput, so the
chart is an estimate that ignores decisions imported in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from drains.bursts import upcoming_week_boundary
from drains.clock import short_time, span
from drains.models import RunStatus
from drains.selectors.rows import Backlog, RunSpan
from drains.wording import per_hour

# A session limit resets within five hours: the runs read for the rate reach back this far
# beyond the window, so a backoff inside the window still leaves a window's work to measure.
SESSION_BOUND = timedelta(hours=5)


@dataclass(frozen=True)
class Projection:
    pending: int
    rate_per_hour: float  # items per hour from now on (``window_rate``)
    deadline: datetime
    deadline_kind: str  # "burst" | "week"
    finish_at: datetime | None  # None: backlog empty, or no progress to project from
    fraction_by_deadline: float | None  # share of the pending backlog done by the deadline
    on_time: bool | None
    text: str
    measured: bool = True  # False: no run of the configured extractor in the window


def rate_text(p: Projection) -> str:
    """The measured rate for people: ``38 per hour`` (rounded), never ``1588809.68 per hour``."""
    if not p.measured:
        return "no measured rate yet"
    return f"{per_hour(p.rate_per_hour)}, measured"


def window_rate(runs: list[RunSpan], *, now: datetime, window: timedelta, burst: bool,
                concurrency: int | None = None) -> float:
    """Items per hour the drain will do, measured over the last ``window`` of counted time.

    Walks the runs newest first until ``window`` is counted. Time spent backing off (from a
    rate-limited run's end to the next run's start, or to now) never counts, so a limit in the
    history does not drag the rate down. In a burst the drain runs back to back (the supervisor
    restarts it), so only working time counts: items per second a call slot was busy (the time
    workers spent on items; a run's span times its concurrency where that is not recorded),
    scaled to ``concurrency``, the concurrency the drain will run at (default: the newest
    run's). A probe's lone call, worker start-up and a run's last in-flight calls leave slots
    idle: that is no slower work, and does not lower the rate. Without a burst, cron runs capped batches with pauses between them, so the
    pauses count too (backoffs still do not). A run's items are spread evenly over its span.
    """
    runs = sorted(runs, key=lambda r: r.start, reverse=True)
    budget = window.total_seconds()
    counted = items = slots = 0.0
    newer_start = now
    for run in runs:
        if not burst and run.status not in (RunStatus.RATE_LIMITED, RunStatus.RUNNING):
            counted += min(max(0.0, (newer_start - run.end).total_seconds()), budget - counted)
        if counted >= budget:
            break
        length = (run.end - run.start).total_seconds()
        take = min(length, budget - counted)
        share = take / length if length > 0 else 1.0
        items += run.items * share
        slots += run.slot_seconds() * share
        counted += take
        newer_start = run.start
    if burst:
        scale = concurrency or (runs[0].concurrency if runs else 1)
        return items / slots * 3600 * max(1, scale) if slots > 0 else 0.0
    return items / counted * 3600 if counted > 0 else 0.0


def drain_projection(*, backlog: Backlog, burst, done_per_hour: list[float], runs: list[RunSpan],
                     now: datetime, backoff_until: datetime | None,
                     window: timedelta, extractor: str | None = None,
                     next_fire: datetime | None = None, running: bool = False,
                     first_item_at: datetime | None = None,
                     ) -> tuple[Projection, list[tuple[datetime, int]]]:
    """A drain's projection and backlog history, from what the snapshot read.

    ``runs`` are ``drains.selectors.snapshot.recent_runs``'s; ``burst`` is its BurstState.
    Only runs of ``extractor`` (the label configured now; None: every run) measure the rate: a
    fast offline run says nothing about a paid backend. No item is done while a backoff is in
    force: the work resumes at its known reset. Outside a burst, with no run going, nothing is
    done before the drain's next scheduled run (``next_fire``). The history starts at the first
    item (``first_item_at``).
    """
    pending = backlog.pending + backlog.staged
    if burst.active:
        deadline, kind = burst.burst_until, "burst"
    else:
        deadline, kind = upcoming_week_boundary(now), "week"
    spans = [s for s in runs if extractor is None or s.extractor == extractor]
    rate = window_rate(spans, now=now, window=window, burst=burst.active)
    start = max(now, backoff_until) if backoff_until else now
    if not burst.active and not running and next_fire is not None and next_fire > start:
        start = next_fire
    p = project(pending=pending, rate_per_hour=round(rate, 2), now=start, deadline=deadline,
                deadline_kind=kind, window=window, measured=bool(spans))
    history = backlog_history(pending=pending, done_per_bucket=[round(d) for d in done_per_hour],
                              now=now, start=first_item_at)
    return p, history


def project(*, pending: int, rate_per_hour: float, now: datetime, deadline: datetime,
            deadline_kind: str, window: timedelta = timedelta(hours=1),
            measured: bool = True) -> Projection:
    """When will ``pending`` items be done at ``rate_per_hour`` from ``now`` (the reset, when a
    backoff is in force; the next scheduled run, outside a burst), measured against
    ``deadline``? ``window``: what the rate looked at; ``measured``: whether any run of the
    configured extractor was in it."""
    def result(finish_at, fraction, on_time, text):
        return Projection(pending, rate_per_hour, deadline, deadline_kind, finish_at, fraction,
                          on_time, text, measured)

    what = "the burst deadline" if deadline_kind == "burst" else "the weekly reset"
    if pending <= 0:
        return result(None, 1.0, True, "backlog empty")
    if not measured:
        return result(None, None, None,
                      f"no measured rate yet (no run of the configured extractor in the last "
                      f"{span(window)}): {pending} pending, {what} is {short_time(deadline)}")
    if rate_per_hour <= 0:
        return result(None, 0.0, False,
                      f"nothing done in the last {span(window)}, so no projection: {pending} pending, "
                      f"{what} is {short_time(deadline)}")
    finish_at = now + timedelta(hours=pending / rate_per_hour)
    if finish_at <= deadline:
        return result(finish_at, 1.0, True,
                      f"done by {short_time(finish_at)}, {span(deadline - finish_at)} before {what}")
    hours_left = max(0.0, (deadline - now).total_seconds() / 3600)
    fraction = min(1.0, rate_per_hour * hours_left / pending)
    return result(finish_at, fraction, False,
                  f"about {fraction:.0%} by {what} ({short_time(deadline)}); "
                  f"all done by {short_time(finish_at)}")


def backlog_history(*, pending: int, done_per_bucket: list[int], now: datetime,
                    bucket: timedelta = timedelta(hours=1),
                    start: datetime | None = None) -> list[tuple[datetime, int]]:
    """Backlog at each bucket boundary, oldest first, ending with ``(now, pending)``.

    ``done_per_bucket`` is oldest first; its last entry is the bucket that ends now. With
    ``start`` (the first item's arrival) no point is drawn from before the bucket it fell in:
    there was no backlog to draw.
    """
    points = [(now, pending)]
    backlog = pending
    for i, done in enumerate(reversed(done_per_bucket)):
        at = now - bucket * (i + 1)
        if start is not None and at < start - bucket:
            break
        backlog += done
        points.append((at, backlog))
    return list(reversed(points))


