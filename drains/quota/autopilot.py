"""The autopilot: spend what would lapse at the weekly reset, keeping the owner's reserve.

Opt-in per quota key (``QuotaPolicy.autopilot``). From the latest weekly reading (utilization
``u``, reset ``R``) and the spend rate ``s`` (drains/quota/rate.py), with ``room`` = the weekly
ceiling the week ends at (drains/quota/ceiling.py: 1.0 with the reserve release, 1 − reserve
without) − ``u``, it starts a burst on the quota's drains when

    R − now ≤ room / s × DRAINS_AUTOPILOT_SAFETY_MARGIN + one supervisor interval

and there is room under the ceiling in force now for more than one call (the runner keeps one
call's headroom below the ceiling, drains/quota/ceiling.py ``call_step``). The burst goes through the burst service
(drains/bursts.py) with actor ``autopilot``, deadline ``R`` (the burst week follows the observed
reset, so it can never pass it), and a note that gives ``u``, ``room``, ``s`` and the deadline.
It ends at the ceiling (the runner's ceiling stop, then the weekly-limit rule ends the burst),
when the backlog is empty, or at ``R``. It never starts over, shortens or lengthens a manual
burst. An operator's "off" on an autopilot burst holds it until the next weekly reset
(``QuotaPolicy.autopilot_held_until``).

``plan_start`` is the pure rule; ``forecast`` and ``autopilot_status`` read (a few queries);
``run_autopilot`` acts (the supervisor tick and the runner between chunks call it). It never calls
an extractor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypedDict

from django.conf import settings
from django.db import transaction

from drains import rules
from drains.clock import format_local
from drains.quota.ceiling import call_step, window_ceiling
from drains.quota.models import QuotaPolicy, QuotaWindow
from drains.quota.rate import WEEKLY, SpendRate, measure_spend_rate
from drains.quota.reserve import Reserves, reserves_from
from drains.quota.store import quota_state


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


logger = logging.getLogger(__name__)

ACTOR = "autopilot"


class AutopilotState(StrEnum):
    OFF = "off"  # not switched on for this quota key
    HELD = "held"  # an operator stopped an autopilot burst: none before the next weekly reset
    NO_SIGNAL = "no_signal"  # no weekly reading with a reset ahead (an API-key account)
    AT_CEILING = "at_ceiling"  # no room under the ceiling in force now
    WAITING = "waiting"  # the rule says start at ``planned_start``
    DUE = "due"  # the rule says start now (the next tick or chunk starts it)
    BURSTING = "bursting"  # an autopilot burst is on
    MANUAL = "manual"  # an operator's burst is on: the autopilot leaves it alone
    NO_DRAINS = "no_drains"  # no enabled drain has run on this quota key yet


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    """Where the week ends on the current pace, and how much of it would lapse."""

    quota_key: str
    utilization: float  # u now
    resets_at: datetime  # R
    pace_per_hour: float  # the week's pace so far: u over the hours since the week opened
    week_end_utilization: float  # u + pace × hours left, at most 1.0
    ceiling_at_reset: float  # the ceiling the week ends at (1.0 with the reserve release)
    lapse: float  # ceiling_at_reset − week_end_utilization, at least 0
    spend_rate: float  # the drains' rate s (drains/quota/rate.py), for the autopilot's start
    planned_start: datetime | None  # when the autopilot's rule starts a burst (enabled or not)


@dataclass(frozen=True)
class AutopilotStatus:
    quota_key: str
    enabled: bool
    state: AutopilotState
    reason: str
    planned_start: datetime | None = None
    held_until: datetime | None = None


@dataclass(frozen=True)
class _Inputs:
    policy: QuotaPolicy | None
    weekly: QuotaWindow | None
    reserves: Reserves


@dataclass(frozen=True)
class _Planned:
    """The plan for a week whose weekly reading has a reset ahead, with that reading."""

    plan: StartPlan
    rate: SpendRate
    utilization: float
    resets_at: datetime


class ControlRow(TypedDict):
    """A drain's control row as ``quota_drains`` reads it."""

    name: str
    enabled: bool
    burst_until: datetime | None
    burst_by: str


def _inputs(quota_key: str) -> _Inputs:
    policy = QuotaPolicy.objects.filter(quota_key=quota_key).first()
    rows, _ = quota_state(quota_key)
    weekly = next((row for row in rows if row.window == WEEKLY), None)
    return _Inputs(policy, weekly, reserves_from(policy))


def _ceilings(reserves: Reserves, resets_at: datetime, now: datetime) -> tuple[float, float]:
    """(the weekly ceiling in force now, the one the week ends at)."""
    ceiling_now = window_ceiling(window=WEEKLY, reserves=reserves, resets_at=resets_at, now=now)
    just_before = resets_at - timedelta(microseconds=1)
    at_reset = window_ceiling(
        window=WEEKLY, reserves=reserves, resets_at=resets_at, now=max(now, just_before)
    )
    return ceiling_now, at_reset


def _plan(inputs: _Inputs, quota_key: str, now: datetime) -> _Planned | None:
    weekly = inputs.weekly
    if weekly is None or weekly.resets_at is None or weekly.resets_at <= now:
        return None
    ceiling_now, at_reset = _ceilings(inputs.reserves, weekly.resets_at, now)
    rate = measure_spend_rate(
        quota_key=quota_key, now=now, session_ceiling=1.0 - inputs.reserves.session,
        extractors=labels_in_use(quota_key),
    )
    plan = plan_start(
        utilization=weekly.utilization,
        resets_at=weekly.resets_at,
        ceiling_now=ceiling_now,
        ceiling_at_reset=at_reset,
        rate_per_hour=rate.per_hour,
        now=now,
        margin=float(settings.DRAINS_AUTOPILOT_SAFETY_MARGIN),
        interval=supervisor_interval(),
        headroom=call_step(weekly.step, weekly.step_pairs),
    )
    return _Planned(plan, rate, weekly.utilization, weekly.resets_at)


def supervisor_interval() -> timedelta:
    return timedelta(minutes=float(settings.DRAINS_SUPERVISOR_INTERVAL_MINUTES))


def week_pace(*, utilization: float, resets_at: datetime, now: datetime) -> float:
    """The week's pace so far (pure): ``u`` over the hours since it opened (R − the week)."""
    week = timedelta(hours=float(settings.DRAINS_QUOTA_WEEK_HOURS))
    elapsed = (now - (resets_at - week)).total_seconds() / 3600
    return utilization / elapsed if elapsed > 0 else 0.0


def forecast(*, quota_key: str, now: datetime) -> Forecast | None:
    """The week-end forecast of ``quota_key``; None without a weekly reading whose reset is
    ahead (an API-key account, or a reading older than its reset)."""
    inputs = _inputs(quota_key)
    planned = _plan(inputs, quota_key, now)
    if planned is None:
        return None
    plan, rate = planned.plan, planned.rate
    _, at_reset = _ceilings(inputs.reserves, planned.resets_at, now)
    pace = week_pace(utilization=planned.utilization, resets_at=planned.resets_at, now=now)
    hours_left = (planned.resets_at - now).total_seconds() / 3600
    end = min(1.0, planned.utilization + pace * hours_left)
    return Forecast(
        quota_key=quota_key,
        utilization=planned.utilization,
        resets_at=planned.resets_at,
        pace_per_hour=pace,
        week_end_utilization=end,
        ceiling_at_reset=at_reset,
        lapse=max(0.0, at_reset - end),
        spend_rate=rate.per_hour,
        planned_start=plan.planned_start,
    )


def labels_in_use(quota_key: str) -> list[str]:
    """The configurations (``Drain.extractor_label``) the drains on ``quota_key`` run now."""
    from drains import registry

    names = set(registry.names())
    return sorted({registry.get(d["name"]).extractor_label() for d in quota_drains(quota_key)
                   if d["name"] in names} - {""})


def quota_drains(quota_key: str) -> list[ControlRow]:
    """The drains that draw on ``quota_key`` (their control rows as dicts; one query)."""
    from drains.models import DrainControl

    return list(
        DrainControl.objects.filter(quota_key=quota_key).values(
            "name", "enabled", "burst_until", "burst_by"
        )
    )


def held_until(policy: QuotaPolicy | None, now: datetime) -> datetime | None:
    if policy is None or policy.autopilot_held_until is None:
        return None
    return policy.autopilot_held_until if policy.autopilot_held_until > now else None


def autopilot_status(*, quota_key: str, now: datetime) -> AutopilotStatus:
    """What the autopilot of ``quota_key`` is doing now, and why (a few queries)."""
    inputs = _inputs(quota_key)
    return _status(quota_key, inputs, quota_drains(quota_key), now)[0]


def _status(
    quota_key: str, inputs: _Inputs, drains: list[ControlRow], now: datetime
) -> tuple[AutopilotStatus, _Planned | None]:
    enabled = bool(inputs.policy and inputs.policy.autopilot)
    planned = _plan(inputs, quota_key, now)
    plan = planned.plan if planned else None
    start = plan.planned_start if plan else None

    def status(
        state: AutopilotState, reason: str, **extra: Any
    ) -> tuple[AutopilotStatus, _Planned | None]:
        return AutopilotStatus(quota_key, enabled, state, reason, start, **extra), planned

    if not enabled:
        return status(AutopilotState.OFF, "the autopilot is off for this quota key")
    held = held_until(inputs.policy, now)
    if held is not None:
        return status(AutopilotState.HELD,
                      f"an operator stopped its burst; held until the weekly reset "
                      f"{format_local(held)}", held_until=held)
    active = [d for d in drains if rules.burst_active(d["burst_until"], now=now)]
    if any(d["burst_by"] == ACTOR for d in active):
        return status(AutopilotState.BURSTING, "an autopilot burst is on")
    if active:
        names = ", ".join(sorted(d["name"] for d in active))
        return status(AutopilotState.MANUAL, f"a manual burst is on ({names}): left alone")
    if plan is None:
        return status(AutopilotState.NO_SIGNAL,
                      "no weekly reading with a reset ahead (an API-key account sends none)")
    if not any(d["enabled"] for d in drains):
        return status(AutopilotState.NO_DRAINS, "no enabled drain draws on this quota key yet")
    if plan.start:
        return status(AutopilotState.DUE, plan.reason)
    if plan.needed is None or (plan.planned_start and plan.planned_start <= now):
        return status(AutopilotState.AT_CEILING, plan.reason)
    return status(AutopilotState.WAITING, plan.reason)


# --- acting -------------------------------------------------------------------------------


def enabled_quota_keys() -> list[str]:
    """The quota keys whose autopilot is on (one query)."""
    return list(
        QuotaPolicy.objects.filter(autopilot=True).order_by("quota_key")
        .values_list("quota_key", flat=True)
    )


def autopilot_enabled(quota_key: str) -> bool:
    return bool(quota_key) and QuotaPolicy.objects.filter(
        quota_key=quota_key, autopilot=True
    ).exists()


def run_autopilot(*, quota_key: str, now: datetime, dry_run: bool = False) -> list[str]:
    """Decide for ``quota_key`` and act: start the autopilot burst on its drains when the rule
    says so, end its burst on a drain whose backlog is empty. Returns one line per thing said
    or done. The supervisor tick and the runner (between chunks) call it; never an extractor."""
    from drains import registry
    from drains.bursts import end_burst_early

    inputs = _inputs(quota_key)
    drains = quota_drains(quota_key)
    status, planned = _status(quota_key, inputs, drains, now)
    lines: list[str] = []
    if status.state == AutopilotState.BURSTING:
        for d in drains:
            until = d["burst_until"]
            # An active burst has a deadline; ``until is None`` only narrows the type.
            if d["burst_by"] != ACTOR or until is None or not rules.burst_active(until, now=now):
                continue
            if d["name"] not in registry.names() or registry.get(d["name"]).pending_count():
                continue
            message = "autopilot burst ended: the backlog is empty"
            if dry_run:
                lines.append(f"{d['name']}: would end: {message}")
            elif end_burst_early(name=d["name"], until=until, message=message, actor=ACTOR):
                lines.append(f"{d['name']}: {message}")
        return lines
    if status.state != AutopilotState.DUE or planned is None:  # DUE always comes with a plan
        return [f"quota {quota_key}: autopilot {status.state}: {status.reason}"]
    deadline = planned.resets_at
    note = burst_note(utilization=planned.utilization, room=planned.plan.room, rate=planned.rate,
                      deadline=deadline)
    for d in drains:
        name = d["name"]
        if not d["enabled"] or name not in registry.names() or registry.get(name).on_demand:
            continue
        if not registry.get(name).pending_count():
            lines.append(f"{name}: autopilot due, but the backlog is empty")
            continue
        if _weekly_backoff_outlasts(name, quota_key, deadline, now):
            lines.append(f"{name}: autopilot due, but a weekly limit outlasts the week")
            continue
        if dry_run:
            lines.append(f"{name}: would start an autopilot burst ({note})")
        elif _start_burst(name=name, until=deadline, note=note, now=now):
            lines.append(f"{name}: {note}")
    return lines


def autopilot_tick(
    *, now: datetime, dry_run: bool = False, write: Callable[[str], object] | None = None
) -> list[str]:
    """The supervisor's autopilot step, before its six steps (so step 6 starts what it began):
    ``run_autopilot`` for every quota key whose autopilot is on. A key that fails is recorded
    as a ``supervisor_error`` event and the others go on."""
    from drains.events import record_event
    from drains.models import EventKind

    write = write or (lambda line: logger.info("%s", line))
    lines: list[str] = []
    for key in enabled_quota_keys():
        try:
            said = run_autopilot(quota_key=key, now=now, dry_run=dry_run)
        except Exception as exc:
            logger.exception("autopilot: quota %s failed", key)
            said = [f"quota {key}: the autopilot failed: {type(exc).__name__}: {exc}"[:2000]]
            if not dry_run:
                record_event(drain="", kind=EventKind.SUPERVISOR_ERROR, message=said[0],
                             actor=ACTOR, data={"quota_key": key})
        for line in said:
            write(f"autopilot  {line}")
        lines += said
    return lines


def _weekly_backoff_outlasts(name: str, quota_key: str, deadline: datetime, now: datetime) -> bool:
    from drains.quota import policy
    from drains.quota.backoff import backoff_in_force

    backoff = backoff_in_force(drain=name, quota_key=quota_key, now=now)
    return backoff is not None and policy.weekly_outlasts_burst(
        kind=backoff.kind, reset_at=backoff.until, burst_until=deadline, now=now
    )


def _start_burst(*, name: str, until: datetime, note: str, now: datetime) -> bool:
    """Start the autopilot's burst on ``name`` unless a burst is already on (never touch a
    manual one): the row is locked, so a supervisor and a runner deciding at once start one."""
    from drains.bursts import set_drain_burst
    from drains.events import record_event
    from drains.models import DrainControl, EventKind

    with transaction.atomic():
        control = DrainControl.objects.select_for_update().filter(name=name).first()
        if control is None or rules.burst_active(control.burst_until, now=now):
            return False
        set_drain_burst(name=name, until=until, actor=ACTOR, note=note)
        record_event(drain=name, kind=EventKind.NOTE, message=note, actor=ACTOR,
                     data={"until": until.isoformat(), "quota_key": control.quota_key})
    logger.info("%s: %s", name, note)
    return True


def on_autopilot_turned_off(*, quota_key: str, actor: str) -> list[str]:
    """The autopilot was switched off (drains/quota/controls.py ``set_quota_policy``, in its
    transaction): its bursts on the quota's drains end now; an operator's own bursts stay."""
    from django.utils import timezone

    from drains.bursts import set_drain_burst

    now = timezone.now()
    ended = []
    for d in quota_drains(quota_key):
        if d["burst_by"] == ACTOR and rules.burst_active(d["burst_until"], now=now):
            set_drain_burst(name=d["name"], until=None, actor=actor,
                            note="the autopilot was switched off")
            ended.append(d["name"])
    return ended
