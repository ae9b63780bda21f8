"""The ceiling: the pure rule that keeps a drain from being refused at a full window, and
keeps the owner's reserve.

Each window's ceiling is 1 minus its reserve: the session reserve for the 5-hour window, the
weekly reserve for the weekly ones (``seven_day``, ``seven_day_<model>``), released linearly to 0
over the last ``release_hours`` before the window's reset (never when that is 0), so the weekly
ceiling reaches 1.0 at the reset. A window at or over its ceiling, or extra usage being spent, is
a ``Breach``: the runner stops with the backoff a refusal of that window would have written.

The runner also keeps **one call's headroom**: given each window's expected step (what one call
moves it, ``call_step``, measured from the quota's own samples) it stops when the latest reading
plus the steps of the calls it would have in flight reaches the ceiling (``first_over_ceiling``
with ``steps``), so the owner's use between two of the drains' calls, seen only in the next
call's answer, does not turn that call into a refusal.

Plain data in, plain data out, ``now`` passed in: no database, no clock, no settings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from drains.quota.kinds import LimitKind, window_kind
from drains.quota.reserve import Reserves

# Utilization is reported in hundredths; a reading this close below the ceiling is at it.
EPSILON = 1e-9
SESSION_WINDOWS = ("five_hour",)

# One call's expected step on a window (``call_step``). Before the quota has measured it (fewer
# than MIN_STEP_PAIRS consecutive readings of one run), one hundredth: the unit the service
# reports utilization in, so the smallest step a reading can show, and about what a drain's call
# of a few KB moves a subscription's 5-hour window; a larger step is measured within the first
# chunk of calls and replaces it. Erring large only stops a drain one call early on a fresh
# quota; erring small is a refused call. Capped at MAX_CALL_STEP so that a weird measurement (the
# owner's heavy use between a run's calls, minutes apart) cannot stop the drains far below a
# ceiling: at worst they keep 5 % of a window for the owner.
DEFAULT_CALL_STEP = 0.01
MAX_CALL_STEP = 0.05
MIN_STEP_PAIRS = 3


class Reading(Protocol):
    # Read-only: a frozen WindowReading and a QuotaWindow row both are one.
    @property
    def window(self) -> str: ...
    @property
    def utilization(self) -> float: ...
    @property
    def resets_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Breach:
    """A window at or over its ceiling (or extra usage in use), as the backoff needs it."""

    window: str
    kind: str  # LimitKind: session, weekly, weekly_model, extra_usage
    model: str
    resets_at: datetime | None
    utilization: float
    ceiling: float
    reason: str
    headroom: float = 0.0  # the calls' expected steps the rule kept below the ceiling


def call_step(measured: float | None, pairs: int) -> float:
    """One call's expected step on a window: the mean step ``measured`` over ``pairs``
    consecutive readings of the drains' own calls, bounded to 0..MAX_CALL_STEP; the default
    before MIN_STEP_PAIRS are measured."""
    if measured is None or pairs < MIN_STEP_PAIRS or not math.isfinite(measured):
        return DEFAULT_CALL_STEP
    return min(MAX_CALL_STEP, max(0.0, measured))


def is_weekly(window: str) -> bool:
    return window == "seven_day" or window.startswith("seven_day_")


def weekly_reserve_now(
    *, reserves: Reserves, resets_at: datetime | None, now: datetime
) -> float:
    """The weekly reserve in force now: the full reserve until the last ``release_hours``
    before the reset, then linearly less, 0 at the reset (and after it)."""
    if reserves.release_hours <= 0 or resets_at is None:
        return reserves.weekly
    hours_left = (resets_at - now).total_seconds() / 3600
    if hours_left >= reserves.release_hours:
        return reserves.weekly
    if hours_left <= 0:
        return 0.0
    return reserves.weekly * hours_left / reserves.release_hours


def window_ceiling(
    *, window: str, reserves: Reserves, resets_at: datetime | None, now: datetime
) -> float:
    """The utilization at which no drain starts another call on ``window``."""
    if window in SESSION_WINDOWS:
        return 1.0 - reserves.session
    if is_weekly(window):
        return 1.0 - weekly_reserve_now(reserves=reserves, resets_at=resets_at, now=now)
    return 1.0  # a window this code does not know: only the plan's own limit


def first_over_ceiling(
    *,
    readings: Iterable[Reading],
    using_overage: bool,
    reserves: Reserves,
    now: datetime,
    steps: Mapping[str, float] | None = None,
    calls: int = 1,
) -> Breach | None:
    """The window that stops the drains now, or None.

    Without ``steps``: a window at or over its ceiling. With them (window -> one call's expected
    step, ``call_step``; a window not named takes DEFAULT_CALL_STEP): also a window whose reading
    plus ``calls`` steps (the call to start and those already in flight) is at or over it, the
    call that would run it into its ceiling.

    A reading whose reset has passed says nothing any more (the window reset; the probe rule
    applies). Of several windows over their ceilings, the one that resets last: the backoff must
    outlast them all. Extra usage in use stops the drains whatever the windows say.
    """
    breaches: list[Breach] = []
    latest_reset: datetime | None = None
    for reading in readings:
        resets_at = reading.resets_at
        if resets_at is not None and resets_at <= now:
            continue
        if resets_at is not None and (latest_reset is None or resets_at > latest_reset):
            latest_reset = resets_at
        ceiling = window_ceiling(
            window=reading.window, reserves=reserves, resets_at=resets_at, now=now
        )
        headroom = 0.0
        if steps is not None:
            headroom = max(1, calls) * steps.get(reading.window, DEFAULT_CALL_STEP)
        if reading.utilization + headroom + EPSILON < ceiling:
            continue
        breaches.append(_breach(reading, ceiling=ceiling, headroom=headroom, calls=calls))
    if using_overage:
        return Breach(
            window="overage", kind=LimitKind.EXTRA_USAGE, model="", resets_at=latest_reset,
            utilization=1.0, ceiling=1.0,
            reason="extra usage is being spent (isUsingOverage): the drains never spend it",
        )
    if not breaches:
        return None
    return max(breaches, key=lambda b: (b.resets_at is not None, b.resets_at or now))


def _breach(reading: Reading, *, ceiling: float, headroom: float, calls: int) -> Breach:
    """A window that stops the drains: at or over its ceiling, or within ``headroom`` of it."""
    kind = window_kind(reading.window)
    reserve = 1.0 - ceiling
    kept = f" (reserve {reserve:.0%} kept)" if reserve > EPSILON else ""
    if reading.utilization + EPSILON >= ceiling:
        reason = f"{reading.window} at {reading.utilization:.0%} is at or over its ceiling"
    else:
        what = "one call" if calls <= 1 else f"{calls} calls (with those in flight)"
        reason = (f"{reading.window} at {reading.utilization:.0%} is within {what} "
                  f"({headroom:.1%}) of its ceiling")
    return Breach(
        window=reading.window, kind=kind.kind, model=kind.model, resets_at=reading.resets_at,
        utilization=reading.utilization, ceiling=ceiling,
        reason=f"{reason} {ceiling:.0%}{kept}", headroom=headroom,
    )


def weekly_ceiling_rises_past(
    *, window: str, utilization: float, reserves: Reserves, resets_at: datetime | None,
    now: datetime,
) -> datetime | None:
    """When the weekly ceiling, rising as the reserve is released, passes ``utilization``: the
    end of the backoff at a weekly ceiling that the release will lift before the reset (so the
    drains spend the released reserve instead of waiting for the reset). None when it will not
    rise before the reset: no release, nothing left under 1.0, not a weekly window.

    The ceiling is 1 − weekly × (R − t) / release_hours in the last release hours, so it passes
    ``u`` when R − t = release_hours × (1 − u) / weekly (a hair later, to be strictly above)."""
    if (
        not is_weekly(window) or resets_at is None or reserves.release_hours <= 0
        or reserves.weekly <= 0 or utilization >= 1.0 - EPSILON
    ):
        return None
    above = min(1.0, utilization + 1e-6)
    hours_before = min(reserves.release_hours, reserves.release_hours * (1 - above) / reserves.weekly)
    at = resets_at - timedelta(hours=hours_before)
    return at if at < resets_at else None
