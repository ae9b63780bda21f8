"""The quota as the snapshot, the page, /metrics, the digest and ``manage.py quota`` show it: one
typed entry per quota key, with every window's latest reading, the reserves and ceilings in force
now, the autopilot's state and the week's forecast.

What the numbers mean is asked of their owners, never re-derived here: the reserves of a key
(drains/quota/reserve.py), a window's ceiling now (drains/quota/ceiling.py), whether a reading is
stale (drains/rules.py ``reading_stale``), the forecast and the autopilot's state
(drains/quota/autopilot.py). Queries: the windows, the policies and the drains' quota keys in
one round trip (``drains.selectors.snapshot.fetch``), plus what the autopilot reads per quota key
(its forecast and state) — a handful per quota key, never one per window, sample or run.
Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from drains import registry
from drains.models import DrainControl
from drains.quota import autopilot, ceiling, reserve
from drains.quota.models import QuotaPolicy, QuotaWindow
from drains.rules import reading_stale
from drains.selectors.snapshot import Statement, fetch

SESSION_WINDOW = "five_hour"
WEEK_WINDOW = "seven_day"


@dataclass(frozen=True)
class WindowState:
    """One window of one quota key: its latest reading and the ceiling in force on it now."""

    window: str  # the signal's name: five_hour, seven_day, seven_day_opus, ...
    utilization: float  # 0..1
    resets_at: datetime | None  # an estimate: the weekly reset drifts
    status: str  # allowed, allowed_warning, rejected, "" (not said)
    observed_at: datetime
    stale: bool  # reset since, or older than DRAINS_QUOTA_STALE_MINUTES
    ceiling: float  # 1 - the reserve in force on this window now
    releasing: bool = False  # a weekly window in its release hours: its reserve is shrinking

    @property
    def is_weekly(self) -> bool:
        return self.window.startswith(WEEK_WINDOW)

    @property
    def reserve(self) -> float:
        """The share held back for the owner now (the weekly one shrinks near the reset)."""
        return max(0.0, 1.0 - self.ceiling)


@dataclass(frozen=True)
class AutopilotState:
    enabled: bool
    state: str
    reason: str
    planned_start: datetime | None


@dataclass(frozen=True)
class ForecastState:
    week_end_utilization: float  # where the week ends on the current pace
    lapse: float  # what would be left unspent at the reset (the ceiling then minus that)
    resets_at: datetime | None


@dataclass(frozen=True)
class QuotaEntry:
    key: str
    windows: tuple[WindowState, ...]  # five_hour, seven_day, the model weeks, then the rest
    using_overage: bool
    weekly_reserve: float
    session_reserve: float
    reserve_release_hours: float
    autopilot: AutopilotState | None
    forecast: ForecastState | None
    drains: tuple[str, ...]  # the drains that draw on this key

    @property
    def signal_seen(self) -> bool:
        return bool(self.windows)

    @property
    def ceilings(self) -> dict[str, float]:
        return {w.window: w.ceiling for w in self.windows}

    def window(self, name: str) -> WindowState | None:
        return next((w for w in self.windows if w.window == name), None)


def _order(window: str) -> tuple[int, str]:
    if window == SESSION_WINDOW:
        return (0, window)
    if window == WEEK_WINDOW:
        return (1, window)
    return (2 if window.startswith(WEEK_WINDOW) else 3, window)


def stale_after() -> timedelta:
    return timedelta(minutes=settings.DRAINS_QUOTA_STALE_MINUTES)


def _rows(queryset) -> Statement:
    """A queryset's rows as model instances, as one statement of a batch (``fetch``)."""
    sql, params = queryset.query.sql_with_params()
    model = queryset.model
    attnames = [f.attname for f in model._meta.concrete_fields]
    return Statement(sql, list(params),
                     lambda rows: [model.from_db(connection.alias, attnames, r) for r in rows])


def _values(queryset) -> Statement:
    sql, params = queryset.query.sql_with_params()
    return Statement(sql, list(params), lambda rows: [tuple(r) for r in rows])


def quota_entries(*, now: datetime | None = None) -> list[QuotaEntry]:
    """Every known quota key, in key order: those a reading was stored for, those a drain
    draws on (``DrainControl.quota_key``; a key with drains but no reading is an account whose
    calls report no windows, e.g. an API key) and those an operator set a policy for."""
    now = now or timezone.now()
    windows, policies, keys = fetch([
        _rows(QuotaWindow.objects.all()),
        _rows(QuotaPolicy.objects.all()),
        _values(DrainControl.objects.filter(name__in=registry.names()).exclude(quota_key="")
                .values_list("name", "quota_key")),
    ])
    rows: dict[str, list[QuotaWindow]] = {}
    for row in windows:
        rows.setdefault(row.quota_key, []).append(row)
    policies = {p.quota_key: p for p in policies}
    drains: dict[str, list[str]] = {}
    for name, key in keys:
        drains.setdefault(key, []).append(name)

    entries = []
    for key in sorted(set(rows) | set(drains) | set(policies)):
        entries.append(_entry(key, rows.get(key, []), policies.get(key),
                              tuple(sorted(drains.get(key, []))), now))
    return entries


def _window(row: QuotaWindow, reserves: reserve.Reserves, now: datetime) -> WindowState:
    in_force = ceiling.window_ceiling(window=row.window, reserves=reserves,
                                      resets_at=row.resets_at, now=now)
    return WindowState(
        window=row.window,
        utilization=row.utilization,
        resets_at=row.resets_at,
        status=row.status,
        observed_at=row.observed_at,
        stale=reading_stale(observed_at=row.observed_at, resets_at=row.resets_at, now=now,
                            stale_after=stale_after()),
        ceiling=in_force,
        releasing=ceiling.is_weekly(row.window) and reserves.weekly > 0
        and in_force > 1.0 - reserves.weekly + ceiling.EPSILON,
    )


def _entry(key: str, rows: list[QuotaWindow], policy_row: QuotaPolicy | None,
           drains: tuple[str, ...], now: datetime) -> QuotaEntry:
    reserves = reserve.reserves_from(policy_row)
    windows = tuple(_window(row, reserves, now) for row in sorted(rows, key=lambda r: _order(r.window)))
    status = autopilot.autopilot_status(quota_key=key, now=now)
    forecast = autopilot.forecast(quota_key=key, now=now) if windows else None
    return QuotaEntry(
        key=key,
        windows=windows,
        using_overage=any(row.using_overage for row in rows),
        weekly_reserve=reserves.weekly,
        session_reserve=reserves.session,
        reserve_release_hours=reserves.release_hours,
        autopilot=None if status is None else AutopilotState(
            enabled=status.enabled, state=str(status.state), reason=status.reason,
            planned_start=status.planned_start),
        forecast=None if forecast is None else ForecastState(
            week_end_utilization=forecast.week_end_utilization, lapse=forecast.lapse,
            resets_at=forecast.resets_at),
        drains=drains,
    )
