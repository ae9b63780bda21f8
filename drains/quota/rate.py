"""The spend rate: how fast this quota's drains use the weekly window, per hour of drain work.

Measured from the quota's own ``QuotaSample`` rows taken by the drains' calls (each sample names
its run): between two consecutive samples of one run, the weekly utilization it gained over the
time between them. Pairs across a reset (utilization dropped) and pairs further apart than
``DRAINS_QUOTA_RATE_MAX_GAP_SECONDS`` (the run waited, e.g. for a 5-hour reset, instead of
working) are left out, so the rate is per hour of *work*. The owner's use of the account during
those hours is in the figure too: it is what the week loses while the drains run.

The 5-hour window often binds first: a drain can only spend its session ceiling of the 5-hour
window every ``DRAINS_QUOTA_SESSION_HOURS``, and each percent of that window is some fraction of
a percent of the week (the ratio of the two windows' gains over the same pairs). The rate is
therefore bounded by ``weekly_per_session × session_ceiling / session_hours``.

Before enough is measured (fewer than ``MIN_PAIRS`` pairs that gained anything), the rate is
``DRAINS_QUOTA_DEFAULT_SPEND_RATE`` (default 0.01 = 1 % of the week per hour). Low on purpose:
the autopilot's start time is ``room / rate`` before the reset, so a rate that is too low only
starts the burst early, where the ceiling still keeps the owner's reserve and the burst ends when
the room is spent; a rate that is too high starts it late and lets quota lapse, which is what the
autopilot exists to prevent. The first hour of a burst measures the real rate.

Reads only; one query. Never calls an extractor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from drains.models import DrainRun
from drains.quota.models import QuotaSample

WEEKLY = "seven_day"
SESSION = "five_hour"
MIN_PAIRS = 3  # pairs that gained weekly utilization before a measurement is trusted
LOOKBACK_DAYS = 14  # samples older than this say little about today's prompts and model

_SAMPLE = QuotaSample._meta.db_table

# Consecutive samples of each run and window; the gains and the times between them, apart for
# the runs made with a configuration in use now (their extractor label) and the others.
_PAIRS = f"""
WITH s AS (
    SELECT q."window", q.run_id, q.utilization, q.observed_at,
           COALESCE(r.extractor = ANY(%s::text[]), false) AS current,
           q.utilization - lag(q.utilization) OVER w AS gain,
           EXTRACT(EPOCH FROM q.observed_at - lag(q.observed_at) OVER w) AS seconds
    FROM {_SAMPLE} q LEFT JOIN {DrainRun._meta.db_table} r ON r.id = q.run_id
    WHERE q.quota_key = %s AND q.run_id IS NOT NULL AND q."window" IN (%s, %s)
      AND q.observed_at >= %s AND q.observed_at <= %s
    WINDOW w AS (PARTITION BY q.run_id, q."window" ORDER BY q.observed_at, q.id)
)
SELECT "window", current,
       COALESCE(sum(gain), 0), COALESCE(sum(seconds), 0), count(*) FILTER (WHERE gain > 0)
FROM s
WHERE gain IS NOT NULL AND gain >= 0 AND seconds <= %s
GROUP BY "window", current
"""


@dataclass(frozen=True)
class SpendRate:
    """The rate the autopilot uses, and how it was arrived at (for the note and the docs)."""

    per_hour: float  # weekly utilization per hour of drain work, bounded: what the rule uses
    measured: float | None  # from the samples, unbounded (None: not enough measured)
    session_bound: float | None  # what the 5-hour window lets through (None: not measured)
    work_hours: float  # hours of drain work the measurement covers
    source: str  # "measured", "session bound" or "default"

    def describe(self) -> str:
        return f"{self.per_hour:.2%}/h ({self.source}, {self.work_hours:.1f} h of drain work)"


def default_rate() -> float:
    return float(settings.DRAINS_QUOTA_DEFAULT_SPEND_RATE)


def bounded_rate(
    *,
    weekly_gain: float,
    weekly_seconds: float,
    weekly_pairs: int,
    session_gain: float,
    session_ceiling: float,
    session_hours: float,
    default: float,
) -> SpendRate:
    """The pure rule: the measured rate, bounded by the 5-hour window, else the default."""
    hours = weekly_seconds / 3600
    if weekly_pairs < MIN_PAIRS or weekly_gain <= 0 or hours <= 0:
        return SpendRate(default, None, None, hours, "default")
    measured = weekly_gain / hours
    bound = None
    if session_gain > 0 and session_hours > 0:
        bound = (weekly_gain / session_gain) * max(session_ceiling, 0.0) / session_hours
    if bound is not None and bound < measured:
        return SpendRate(bound, measured, bound, hours, "session bound")
    return SpendRate(measured, measured, bound, hours, "measured")


def measure_spend_rate(*, quota_key: str, now: datetime, session_ceiling: float = 1.0,
                       extractors: Sequence[str] = ()) -> SpendRate:
    """The spend rate of ``quota_key`` measured up to ``now`` (one query). With ``extractors``
    (the labels of the configurations in use, ``Drain.extractor_label``), only the runs made
    with them count once they measured enough: a model or an effort just chosen is planned with
    its own spend (its evaluation's runs measured it), not the last one's."""
    since = now - timedelta(days=LOOKBACK_DAYS)
    gap = float(settings.DRAINS_QUOTA_RATE_MAX_GAP_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(_PAIRS, [list(extractors), quota_key, WEEKLY, SESSION, since, now, gap])
        found = cursor.fetchall()
    current_pairs = sum(pairs for window, current, _, _, pairs in found
                        if current and window == WEEKLY)
    only_current = current_pairs >= MIN_PAIRS
    rows: dict[str, tuple[float, float, int]] = {}
    for window, current, gain, seconds, pairs in found:
        if only_current and not current:
            continue
        before = rows.get(window, (0.0, 0.0, 0))
        rows[window] = (before[0] + float(gain), before[1] + float(seconds), before[2] + pairs)
    weekly_gain, weekly_seconds, weekly_pairs = rows.get(WEEKLY, (0.0, 0.0, 0))
    session_gain = rows.get(SESSION, (0.0, 0.0, 0))[0]
    return bounded_rate(
        weekly_gain=float(weekly_gain),
        weekly_seconds=float(weekly_seconds),
        weekly_pairs=int(weekly_pairs),
        session_gain=float(session_gain),
        session_ceiling=session_ceiling,
        session_hours=float(settings.DRAINS_QUOTA_SESSION_HOURS),
        default=default_rate(),
    )


def spend_rate(*, quota_key: str, now: datetime) -> float:
    """Weekly utilization per hour of drain work for ``quota_key`` (see the module's docstring)."""
    from drains.quota.reserve import reserves_for

    session_ceiling = 1.0 - reserves_for(quota_key).session
    return measure_spend_rate(
        quota_key=quota_key, now=now, session_ceiling=session_ceiling
    ).per_hour
