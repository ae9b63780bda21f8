"""Wall clocks in limit messages ("resets 1pm (Europe/Lisbon)", "resets Oct 6, 1pm"): the zone a
message names, the time of day it says, and the next moment a zone shows it. The parser that
reads them out of a message is drains/quota/resets.py (the one reset-time parser); this module
only turns what it found into instants. Pure: no database, no settings but the operator's zone.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from drains.clock import operator_tz

MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}


def _instants(day: date, clock: time, tz: ZoneInfo) -> list[datetime]:
    """Every UTC instant at which ``tz`` shows ``day clock``.

    Two on a fall-back night (the hour is repeated), one normally. On a spring-forward night the
    wall time does not exist; it is read with the offset before the jump (fold=0), which lands
    just after the gap — the clock skipped ahead, so the reset did too.
    """
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    exists = first.astimezone(tz).replace(tzinfo=None) == naive
    if not exists:
        return [first]
    return sorted({first, second})


def next_wall_clock(
    now: datetime, tz: ZoneInfo, clock: time, *, month: int | None = None, day: int | None = None
) -> datetime | None:
    """The first moment strictly after ``now`` at which ``tz`` shows ``clock`` (on ``month/day``).

    Without a date: today, tomorrow or the day after in ``tz``. With a date (the year is never
    printed): that date in the current year or a following one.
    """
    local_today = now.astimezone(tz).date()
    if month is None or day is None:  # the signal gives a month only with its day
        days = [local_today + timedelta(days=offset) for offset in (-1, 0, 1, 2)]
    else:
        days = []
        for year in range(local_today.year - 1, local_today.year + 5):
            try:
                days.append(date(year, month, day))
            except ValueError:  # Feb 29 in a common year, or Apr 31: not a day that year
                continue
    later = [moment for d in days for moment in _instants(d, clock, tz) if moment > now]
    return min(later) if later else None


def zone_named(name: str | None) -> ZoneInfo:
    """The named zone, or the operator's (DRAINS_OPERATOR_TZ) when the message names none."""
    name = (name or "").strip()
    if not name:
        return operator_tz()
    if name.upper() in {"UTC", "GMT", "Z"}:
        name = "UTC"
    return ZoneInfo(name)


def clock_of(match: re.Match[str]) -> time | None:
    """The time of day a wall-clock match names (hour, minute, am/pm), or None: not one."""
    hour = int(match["hour"])
    minute = int(match["minute"] or 0)
    ampm = (match["ampm"] or "").replace(".", "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    elif match["minute"] is None:
        return None  # a bare number ("resets 5") is not a time
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)
