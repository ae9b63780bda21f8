"""An operator's "off" on an autopilot burst holds the autopilot until the next weekly reset.

Below both the burst service (drains/bursts.py, which calls it when an operator stops the
autopilot's burst) and the autopilot (drains/quota/autopilot.py, which reads the hold), so
neither imports the other's module for it.
"""

from __future__ import annotations

from datetime import datetime

from drains.clock import format_local
from drains.events import record_event
from drains.models import EventKind
from drains.quota.models import QuotaPolicy, QuotaWindow
from drains.quota.rate import WEEKLY


def hold_after_operator_off(*, quota_key: str, until: datetime, actor: str, drain: str) -> None:
    """An operator stopped an autopilot burst: no new one before the next weekly reset (the
    burst's deadline was that reset). Nothing when the autopilot itself is off by now."""
    if not quota_key:
        return
    weekly = QuotaWindow.objects.filter(quota_key=quota_key, window=WEEKLY).first()
    reset = weekly.resets_at if weekly and weekly.resets_at and weekly.resets_at > until else until
    held = QuotaPolicy.objects.filter(quota_key=quota_key, autopilot=True).update(
        autopilot_held_until=reset
    )
    if held:
        record_event(
            drain=drain, kind=EventKind.NOTE, actor=actor,
            message=f"autopilot of quota {quota_key} held until the weekly reset "
            f"{format_local(reset)}: {actor} stopped its burst",
            data={"quota_key": quota_key, "held_until": reset.isoformat()},
        )
