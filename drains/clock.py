"""The one clock: the operator's time zone (``DRAINS_OPERATOR_TZ``, the one place it is read) and
every formatter of a time.

Times are stored in UTC. People read them in the operator's zone, always with the zone's
abbreviation, in one notation — weekday, the date when it is not within the week, the time on a
24-hour clock, the zone: ``Sat 2026-12-05 18:00 IST`` (``format_local``, commands, events'
messages, the admin, the digest) or ``Sat 18:00 IST`` (``short_time``, the page's cells and
reasons, for a moment within six days of now); a duration rounded as ``40 min`` or ``3 d 4 h``
(``span``: ages, limits, lead times). Machines (the API, metrics, JSON output) get ISO
8601 with the offset (``iso``). The log lines' timestamps are in the same zone (``LogFormatter``).
Read at call time, never at import, so a test's ``settings`` override applies.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

OPERATOR_FORMAT = "%a %Y-%m-%d %H:%M %Z"
SHORT_FORMAT = "%a %H:%M %Z"
NEAR = timedelta(days=6)  # within this of now, the weekday says which day


def operator_tz() -> ZoneInfo:
    return ZoneInfo(settings.DRAINS_OPERATOR_TZ)


def local(moment: datetime) -> datetime:
    return moment.astimezone(operator_tz())


def format_local(moment: datetime, fmt: str = OPERATOR_FORMAT) -> str:
    """``Sat 2026-12-05 18:00 IST``: how a time is said to an operator."""
    return local(moment).strftime(fmt)


def short_time(moment: datetime, now: datetime | None = None) -> str:
    """``Thu 14:20 IST`` within six days of now; the full ``format_local`` otherwise."""
    if abs(moment - (now or timezone.now())) > NEAR:
        return format_local(moment)
    return format_local(moment, SHORT_FORMAT)


def span(delta: timedelta) -> str:
    """A rounded duration: ``7 s``, ``40 min``, ``28 h``, ``3 d 4 h`` (seconds below 90 s, as the
    page's script says a checkpoint's age)."""
    seconds = max(0, delta.total_seconds())
    if seconds < 90:
        return f"{int(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = round(minutes / 60)
    if hours < 72:
        return f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def axis_time(moment: datetime) -> str:
    """``28 Nov 17:51``: a chart axis label (the chart's title names the zone)."""
    at = local(moment)
    return f"{at.day} {at:%b %H:%M}"


def iso(moment: datetime | None) -> str | None:
    """Machine-facing: ISO 8601 with the operator zone's offset (``2026-12-05T18:00:00+02:00``)."""
    return local(moment).isoformat() if moment is not None else None


def zone_abbreviations(year: int | None = None) -> dict[int, str]:
    """The zone's abbreviation per UTC offset in minutes over a year (``{120: "IST", 180: "IDT"}``),
    for the page's script, which cannot name a zone the way Python does."""
    zone = operator_tz()
    year = year or timezone.now().year
    out: dict[int, str] = {}
    for month in range(1, 13):
        at = datetime(year, month, 15, 12, tzinfo=UTC).astimezone(zone)
        offset, name = at.utcoffset(), at.tzname()
        if offset is not None and name is not None:  # always, in a ZoneInfo
            out[int(offset.total_seconds() // 60)] = name
    return out


class LogFormatter(logging.Formatter):
    """Log lines stamped in the operator's zone with its abbreviation, whatever the host's TZ."""

    def formatTime(  # noqa: N802 - logging's name
        self, record: logging.LogRecord, datefmt: str | None = None
    ) -> str:
        at = datetime.fromtimestamp(record.created, tz=operator_tz())
        return at.strftime(datefmt or "%Y-%m-%d %H:%M:%S %Z")

    converter = staticmethod(time.gmtime)  # unused by formatTime above; never the host's local time
