"""The ceiling: the pure rule that keeps a drain from being refused at a full window, and
keeps the owner's reserve.

Each window's ceiling is 1 minus its reserve: the session reserve for the 5-hour window, the
weekly reserve for the weekly ones (``seven_day``, ``seven_day_<model>``), released linearly to 0
over the last ``release_hours`` before the window's reset (never when that is 0), so the weekly
ceiling reaches 1.0 at the reset. A window at or over its ceiling, or extra usage being spent, is
a ``Breach``: the runner stops with the backoff a refusal of that window would have written.

Plain data in, plain data out, ``now`` passed in: no database, no clock, no settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from drains.quota.kinds import LimitKind, window_kind
from drains.quota.reserve import Reserves

# Utilization is reported in hundredths; a reading this close below the ceiling is at it.
EPSILON = 1e-9
SESSION_WINDOWS = ("five_hour",)


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
) -> Breach | None:
    """The window that stops the drains now, or None.

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
        if reading.utilization + EPSILON < ceiling:
            continue
        kind = window_kind(reading.window)
        reserve = 1.0 - ceiling
        reason = (
            f"{reading.window} at {reading.utilization:.0%} is at or over its ceiling "
            f"{ceiling:.0%}" + (f" (reserve {reserve:.0%} kept)" if reserve > EPSILON else "")
        )
        breaches.append(Breach(
            window=reading.window, kind=kind.kind, model=kind.model, resets_at=resets_at,
            utilization=reading.utilization, ceiling=ceiling, reason=reason,
        ))
    if using_overage:
        return Breach(
            window="overage", kind=LimitKind.EXTRA_USAGE, model="", resets_at=latest_reset,
            utilization=1.0, ceiling=1.0,
            reason="extra usage is being spent (isUsingOverage): the drains never spend it",
        )
    if not breaches:
        return None
    return max(breaches, key=lambda b: (b.resets_at is not None, b.resets_at or now))


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
