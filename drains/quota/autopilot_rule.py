"""The autopilot's start rule (pure): start a burst when the time left to the weekly reset is
no more than the time the room under the ceiling takes at the spend rate, with the safety
margin, plus one supervisor interval; and the note such a burst starts with. What reads the
quota and acts on the rule is drains/quota/autopilot.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from drains.clock import format_local
from drains.quota.rate import SpendRate


@dataclass(frozen=True)
class StartPlan:
    """What the rule says for one quota now."""

    start: bool
    room: float  # the week-end ceiling minus u
    room_now: float  # the ceiling in force now minus u
    needed: timedelta | None  # room / s x margin + interval (None: no room)
    planned_start: datetime | None  # R − needed (None: no room)
    reason: str


def plan_start(
    *,
    utilization: float,
    resets_at: datetime,
    ceiling_now: float,
    ceiling_at_reset: float,
    rate_per_hour: float,
    now: datetime,
    margin: float,
    interval: timedelta,
    headroom: float = 0.0,
) -> StartPlan:
    """The autopilot's rule (pure): start when the time left to the reset is no more than the
    time the room takes at rate ``s``, with the safety margin, plus one supervisor interval, and
    the ceiling in force now leaves more than ``headroom`` (one call's step, which the runner
    keeps below the ceiling) to spend."""
    room = ceiling_at_reset - utilization
    room_now = ceiling_now - utilization
    if room <= headroom + 1e-9:  # nothing the drains may spend is left before the reset
        at = "at" if room <= 1e-9 else f"within one call ({headroom:.1%}) of"
        return StartPlan(False, room, room_now, None, None,
                         f"the week is at {utilization:.0%}, {at} its ceiling "
                         f"{ceiling_at_reset:.0%}")
    needed = timedelta(hours=room / max(rate_per_hour, 1e-9) * margin) + interval
    planned = resets_at - needed
    left = resets_at - now
    if left > needed:
        return StartPlan(False, room, room_now, needed, planned,
                         f"{_hours(left)} left to the reset, more than the {_hours(needed)} the "
                         f"room {room:.0%} takes at {rate_per_hour:.2%}/h with the margin")
    if room_now <= headroom + 1e-9:
        at = "at" if room_now <= 1e-9 else f"within one call ({headroom:.1%}) of"
        return StartPlan(False, room, room_now, needed, planned,
                         f"due, but the week at {utilization:.0%} is {at} the ceiling in force "
                         f"now ({ceiling_now:.0%}); it rises as the reserve is released")
    return StartPlan(True, room, room_now, needed, planned,
                     f"{_hours(left)} left to the reset, no more than the {_hours(needed)} the "
                     f"room {room:.0%} takes at {rate_per_hour:.2%}/h with the margin")


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"


def burst_note(*, utilization: float, room: float, rate: SpendRate, deadline: datetime) -> str:
    """The note an autopilot burst starts with: u, room, s and the deadline."""
    return (
        f"autopilot: week at {utilization:.0%}, room {room:.0%}, spend rate "
        f"{rate.describe()}; burst until the weekly reset {format_local(deadline)}"
    )
