"""The burst service: the only code that reads or writes ``DrainControl.burst_until`` (G1, G2).

Admin, REST, the /operations page and the ``burst`` command all call these functions and show
their ``ValidationError`` messages as they are. A burst spends *leftover* weekly quota, so its
deadline may never pass the week boundary: the drain's quota's observed weekly reset when one is
known (the ``seven_day`` reading of the quota key the drain draws on, its reset still ahead), else
the upcoming Saturday 18:00 in the operator zone (``DRAINS_OPERATOR_TZ``, Asia/Jerusalem).
A burst whose deadline has passed is off everywhere, even before the supervisor clears it.
Who started a burst is kept (``burst_by``): an operator's stop of the autopilot's burst holds the
autopilot until the next weekly reset (drains/quota/autopilot.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from drains import registry, rules, validate
from drains.clock import format_local, operator_tz
from drains.events import record_event
from drains.models import DrainControl, EventKind
from drains.quota.hold import hold_after_operator_off

WEEK_BOUNDARY_WEEKDAY = 5  # Saturday (Monday is 0)
WEEK_BOUNDARY_TIME = time(18, 0)


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT_DEADLINE"


DEFAULT_DEADLINE = _Default()
"""Pass as ``until`` to start a burst until the upcoming week boundary."""

MSG_UNPARSEABLE = (
    "{value!r} is not a date and time. Use ISO 8601 with a UTC offset, "
    "e.g. 2026-12-05T18:00:00+02:00."
)
MSG_NAIVE = (
    "{value} has no time zone. Add a UTC offset (e.g. +02:00 for Israel in winter, +03:00 in "
    "summer) so the deadline is unambiguous."
)
MSG_NON_ASCII = (
    "{value!r} contains characters other than ASCII digits, letters and punctuation. Write the "
    "date and time with the digits 0-9, e.g. 2026-12-05T18:00:00+02:00."
)
MSG_OFFSET = (
    "{value} has the UTC offset {offset}, beyond the ±15:59 a time zone can have (PostgreSQL "
    "stores no more). Israel is +02:00 in winter and +03:00 in summer."
)
# PostgreSQL refuses a time zone displacement of 16 hours or more ("out of range").
MAX_UTC_OFFSET = validate.MAX_UTC_OFFSET
MSG_CALENDAR = (
    "{value} is at the edge of the calendar: shown in another zone it would leave the years "
    "1-9999. Pick a deadline this week, e.g. 2026-12-05T18:00:00+02:00."
)
MSG_PAST = "The deadline {value} is not in the future (now is {now}). Pick a later time."
MSG_BEYOND = (
    "The deadline {value} is after the week boundary {boundary}. A burst spends leftover weekly "
    "quota and must end by then; pick a time up to {boundary}."
)


MSG_DISABLED_BURST = "burst on, but the drain is disabled: nothing will run"
MSG_NO_BURST = "no burst to stop"
AUTOPILOT = "autopilot"  # the actor of the quota autopilot's bursts (drains/quota/autopilot.py)


@dataclass(frozen=True)
class BurstState:
    name: str
    burst_until: datetime | None  # as stored (may be in the past until cleared)
    active: bool
    enabled: bool = True  # the drain's switch: a burst on a disabled drain runs nothing
    changed: bool = True  # False: the request changed nothing (off with no burst on)

    @property
    def notice(self) -> str:
        """What an operator must know beside the deadline ("" when nothing)."""
        if not self.changed:
            return MSG_NO_BURST
        return MSG_DISABLED_BURST if self.active and not self.enabled else ""

    @property
    def effective_until(self) -> datetime | None:
        return self.burst_until if self.active else None


def upcoming_week_boundary(now: datetime | None = None) -> datetime:
    """The next Saturday 18:00 in the operator zone strictly after ``now`` (DST-aware).

    On Saturday before 18:00 that is today; at 18:00 or later it is a week later.
    """
    now = now or timezone.now()
    zone = operator_tz()
    local = now.astimezone(zone)
    days_ahead = (WEEK_BOUNDARY_WEEKDAY - local.weekday()) % 7
    boundary = datetime.combine(local.date() + timedelta(days=days_ahead), WEEK_BOUNDARY_TIME, zone)
    if boundary <= local:
        boundary = datetime.combine(
            local.date() + timedelta(days=days_ahead + 7), WEEK_BOUNDARY_TIME, zone
        )
    return boundary


def observed_weekly_reset(name: str, now: datetime) -> datetime | None:
    """The weekly reset last observed on drain ``name``'s quota, if it is still ahead."""
    from drains.quota.models import QuotaWindow

    key = DrainControl.objects.filter(name=name).values("quota_key")
    resets_at = (
        QuotaWindow.objects.filter(quota_key__in=key, window="seven_day", resets_at__gt=now)
        .exclude(quota_key="")
        .values_list("resets_at", flat=True)
        .first()
    )
    return resets_at


def burst_week_boundary(name: str | None = None, now: datetime | None = None) -> datetime:
    """The end of drain ``name``'s burst week: its quota's observed weekly reset when known
    (the account's own week), else the upcoming Saturday 18:00 (the fallback)."""
    now = now or timezone.now()
    if name is not None and (reset := observed_weekly_reset(name, now)) is not None:
        return reset
    return upcoming_week_boundary(now)


def parse_burst_until(value) -> datetime:
    """Parse what an operator typed into an aware datetime, or raise a clear ValidationError."""
    parsed: datetime | None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        # Python and Django read any Unicode digit ("٢٠٢٦-…") as a number; an operator's
        # deadline is written in ASCII, and anything else is a typo or a trick.
        if not value.isascii():
            raise ValidationError(MSG_NON_ASCII.format(value=value), code="non_ascii")
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValidationError(MSG_UNPARSEABLE.format(value=value), code="unparseable")
    else:
        raise ValidationError(MSG_UNPARSEABLE.format(value=value), code="unparseable")
    if timezone.is_naive(parsed):
        raise ValidationError(MSG_NAIVE.format(value=parsed.isoformat()), code="naive")
    offset = parsed.utcoffset() or timedelta(0)  # aware: never None
    if abs(offset) > MAX_UTC_OFFSET:
        sign = "-" if offset < timedelta(0) else "+"
        minutes = int(abs(offset).total_seconds() // 60)
        raise ValidationError(
            MSG_OFFSET.format(value=parsed.isoformat(), offset=f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"),
            code="offset_range",
        )
    if not validate.in_calendar(parsed):
        raise ValidationError(MSG_CALENDAR.format(value=parsed.isoformat()), code="calendar")
    return parsed


def validate_burst_until(
    until: datetime, now: datetime | None = None, *, boundary: datetime | None = None
) -> datetime:
    now = now or timezone.now()
    if timezone.is_naive(until):
        raise ValidationError(MSG_NAIVE.format(value=until.isoformat()), code="naive")
    if until <= now:
        raise ValidationError(MSG_PAST.format(value=format_local(until), now=format_local(now)), code="past")
    boundary = boundary or upcoming_week_boundary(now)
    if until > boundary:
        raise ValidationError(
            MSG_BEYOND.format(value=format_local(until), boundary=format_local(boundary)), code="beyond_week"
        )
    return until


def _state(name: str, burst_until: datetime | None, now: datetime, enabled: bool = True) -> BurstState:
    return BurstState(
        name=name, burst_until=burst_until, active=rules.burst_active(burst_until, now=now),
        enabled=enabled,
    )


def ensure_control(*, name: str) -> DrainControl:
    registry.get(name)  # raises UnknownDrain
    control, _ = DrainControl.objects.get_or_create(name=name)
    return control


def set_drain_burst(
    *, name: str, until: datetime | str | _Default | None, actor: str, note: str = ""
) -> BurstState:
    """Start (``until`` = a datetime or ``DEFAULT_DEADLINE``) or stop (``until=None``) a burst.

    The deadline may not pass the drain's burst week (``burst_week_boundary``). ``note`` is added
    to the event's message (the autopilot's reasons). Stopping the autopilot's burst (any actor
    but the autopilot) holds the autopilot until the weekly reset.
    Raises ``registry.UnknownDrain`` or ``ValidationError``. Writes a DrainEvent. Stopping
    when no burst is on changes nothing and writes nothing: the answer's ``changed`` is False
    and its notice says "no burst to stop" (an expired deadline is the supervisor's to clear).
    """
    registry.get(name)
    now = timezone.now()
    boundary = burst_week_boundary(name, now)
    deadline: datetime | None
    if until is DEFAULT_DEADLINE:
        deadline = boundary
    elif until is None:
        deadline = None
    else:
        deadline = validate_burst_until(parse_burst_until(until), now, boundary=boundary)
    with transaction.atomic():
        DrainControl.objects.get_or_create(name=name)
        control = DrainControl.objects.select_for_update().get(name=name)
        previous, previous_by = control.burst_until, control.burst_by
        if deadline is None and not rules.burst_active(previous, now=now):
            return replace(_state(name, previous, now, control.enabled), changed=False)
        _write_burst(control, deadline, by=actor if deadline is not None else "", actor=actor)
        _record_burst(control, deadline, previous, previous_by, actor=actor, note=note)
        if (
            deadline is None
            and previous is not None
            and previous_by == AUTOPILOT
            and actor != AUTOPILOT
            and rules.burst_active(previous, now=now)
        ):
            hold_after_operator_off(
                quota_key=control.quota_key, until=previous, actor=actor, drain=name
            )
    return _state(name, deadline, now, control.enabled)


def _write_burst(control: DrainControl, until: datetime | None, *, by: str, actor: str) -> None:
    """The one write of a burst's value (the caller holds the row's lock)."""
    control.burst_until = until
    control.burst_by = by
    control.updated_by = actor
    control.save(update_fields=["burst_until", "burst_by", "updated_by", "updated_at"])


def _record_burst(control: DrainControl, until: datetime | None, previous: datetime | None,
                  previous_by: str, *, actor: str, note: str) -> None:
    """The burst_on / burst_off event of an operator's (or the autopilot's) change."""
    if until is None:
        kind, message = EventKind.BURST_OFF, "burst stopped"
    else:
        kind, message = EventKind.BURST_ON, f"burst on until {format_local(until)}"
        if not control.enabled:
            message += f" ({MSG_DISABLED_BURST})"
    if note:
        message += f" ({note})"
    record_event(
        drain=control.name,
        kind=kind,
        message=message,
        actor=actor,
        data={
            "until": until.isoformat() if until else None,
            "previous": previous.isoformat() if previous else None,
            "by": actor,
            "previous_by": previous_by,
        },
    )


def get_drain_burst(name: str) -> BurstState:
    registry.get(name)
    burst_until, enabled = (
        DrainControl.objects.filter(name=name).values_list("burst_until", "enabled").first()
        or (None, True)
    )
    return _state(name, burst_until, timezone.now(), enabled)


def get_drain_bursts() -> dict[str, BurstState]:
    """Every registered drain's burst, in one query."""
    now = timezone.now()
    stored = {
        name: (until, enabled)
        for name, until, enabled in DrainControl.objects.filter(
            name__in=registry.names()).values_list("name", "burst_until", "enabled")
    }
    states = {}
    for name in registry.names():
        until, enabled = stored.get(name, (None, True))
        states[name] = _state(name, until, now, enabled)
    return states


def clear_expired_burst(*, name: str, actor: str) -> BurstState | None:
    """Clear a burst whose deadline has passed (the supervisor's step 1). None if nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        control = DrainControl.objects.select_for_update().filter(name=name).first()
        if control is None or control.burst_until is None or rules.burst_active(control.burst_until, now=now):
            return None
        expired = control.burst_until
        _write_burst(control, None, by="", actor=actor)
        record_event(
            drain=name,
            kind=EventKind.BURST_EXPIRED,
            message=f"burst reached its deadline {format_local(expired)} and was cleared",
            actor=actor,
            data={"until": expired.isoformat()},
        )
    return _state(name, None, now)


def end_burst_early(
    *, name: str, until: datetime, message: str, actor: str, data: dict | None = None
) -> bool:
    """End drain ``name``'s burst before its deadline ``until`` because the quota has nothing
    left to spend before then (a weekly limit, drains/quota/actions.py). Guarded: a burst an operator
    changed meanwhile is left alone. Writes a ``burst_ended`` event (shown as a note)."""
    with transaction.atomic():
        control = DrainControl.objects.select_for_update().filter(name=name).first()
        if control is None or control.burst_until != until:
            return False
        _write_burst(control, None, by="", actor=actor)
        record_event(
            drain=name,
            kind=EventKind.BURST_ENDED,
            message=message,
            actor=actor,
            data={"until": until.isoformat(), **(data or {})},
        )
    return True
