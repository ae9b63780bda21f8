"""The operator's time zone (``DRAINS_OPERATOR_TZ``): the one place it is read.

Times are stored in UTC; operators read them, and the week boundary is reckoned, in this zone.
Read at call time, never at import, so a test's ``settings`` override applies.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings

OPERATOR_FORMAT = "%a %Y-%m-%d %H:%M %Z"


def operator_tz() -> ZoneInfo:
    return ZoneInfo(settings.DRAINS_OPERATOR_TZ)


def local(moment: datetime) -> datetime:
    return moment.astimezone(operator_tz())


def format_local(moment: datetime, fmt: str = OPERATOR_FORMAT) -> str:
    """``Sat 2026-12-05 18:00 IST``: how a deadline is said to an operator."""
    return local(moment).strftime(fmt)
