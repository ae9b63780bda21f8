"""What ``manage.py quota`` prints: every quota key's windows, reserves and the ceilings in force
now, and (from drains/quota/autopilot.py, which owns them) the autopilot's state and forecast.

Plain functions over the store, the reserves and the pure ceiling; ``now`` passed in. Never
writes anything.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from drains.clock import format_local
from drains.quota.ceiling import call_step, first_over_ceiling, is_weekly, window_ceiling
from drains.quota.models import QuotaPolicy, QuotaWindow
from drains.quota.reserve import Reserves, reserves_from
from drains.quota.store import known_quota_keys, quota_state

NO_SIGNAL = (
    "no quota signal seen yet (an API-key account sends none): no ceiling applies; a "
    "refusal backs off as before"
)


def ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    if seconds < 36 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def quota_lines(*, now: datetime) -> list[str]:
    """Every known quota key, a block of lines each; one line when none is known."""
    keys = known_quota_keys()
    if not keys:
        return ["no quota key known yet: a drain records its key at its first run"]
    policies = {p.quota_key: p for p in QuotaPolicy.objects.filter(quota_key__in=keys)}
    lines: list[str] = []
    for key in keys:
        rows, _ = quota_state(key)  # the readings with their measured call steps
        lines += key_lines(key, rows, policies.get(key), now=now)
    return lines


def key_lines(
    key: str, rows: list[QuotaWindow], policy: QuotaPolicy | None, *, now: datetime
) -> list[str]:
    reserves = reserves_from(policy)
    lines = [f"quota {key}"]

    def source(field: str) -> str:
        return " (default)" if policy is None or getattr(policy, field) is None else ""

    release = (
        f"released over the last {reserves.release_hours:g} h before the weekly reset"
        if reserves.release_hours > 0 else "never released"
    )
    lines.append(
        f"  reserves: weekly {reserves.weekly:.0%}{source('weekly_reserve')}, {release}"
        f"{source('reserve_release_hours')}; session {reserves.session:.0%}"
        f"{source('session_reserve')}"
    )
    if not rows:
        lines.append(f"  {NO_SIGNAL}")
    for row in rows:
        ceiling = window_ceiling(
            window=row.window, reserves=reserves, resets_at=row.resets_at, now=now
        )
        reset = (
            "reset passed" if row.resets_at is not None and row.resets_at <= now
            else f"resets {format_local(row.resets_at)}" if row.resets_at else "reset unknown"
        )
        held = ""
        if is_weekly(row.window) and ceiling > 1 - reserves.weekly + 1e-9:
            held = " (reserve being released)"
        status = f", {row.status}" if row.status else ""
        lines.append(
            f"  {row.window}: {row.utilization:.0%} used · {reset} · ceiling now "
            f"{ceiling:.0%}{held} · seen {ago(row.observed_at, now)}{status}"
        )
    if rows:
        lines.append(f"  {_may_call(rows, reserves, now)}")
    lines += autopilot_lines(key, now=now)
    return lines


def _may_call(rows: list[QuotaWindow], reserves: Reserves, now: datetime) -> str:
    """The runner's rule, one call's headroom kept (drains/quota/ceiling.py ``call_step``)."""
    steps = {row.window: call_step(row.step, row.step_pairs) for row in rows}
    breach = first_over_ceiling(
        readings=rows, using_overage=any(row.using_overage for row in rows),
        reserves=reserves, now=now, steps=steps,
    )
    if breach is not None:
        return f"drains stopped: {breach.reason}"
    return "drains may call: every window is below its ceiling by more than one call"


def autopilot_lines(key: str, *, now: datetime) -> list[str]:
    """The autopilot's state and the forecast, from the functions drains/quota/autopilot.py
    owns. Its own ``report_lines(quota_key=, now=)`` wins when it provides one."""
    from drains.quota import autopilot  # imported late: it reads this module's neighbours

    own = getattr(autopilot, "report_lines", None)
    if own is not None:
        return list(own(quota_key=key, now=now))
    lines = []
    status = autopilot.autopilot_status(quota_key=key, now=now)
    if status.enabled:
        lines.append(f"  autopilot: on, {status.state}: {status.reason}")
    else:
        lines.append("  autopilot: off")
    forecast = autopilot.forecast(quota_key=key, now=now)
    if forecast is not None:
        line = (
            f"  forecast: at this pace the week ends at {forecast.week_end_utilization:.0%}: "
            f"{forecast.lapse:.0%} would lapse"
        )
        if forecast.planned_start is not None:
            line += f"; an autopilot burst would start {format_local(forecast.planned_start)}"
        lines.append(line)
    return lines


def settings_line() -> str:
    return (
        f"defaults: DRAINS_QUOTA_WEEKLY_RESERVE={settings.DRAINS_QUOTA_WEEKLY_RESERVE:g}, "
        f"DRAINS_QUOTA_SESSION_RESERVE={settings.DRAINS_QUOTA_SESSION_RESERVE:g}, "
        f"DRAINS_QUOTA_RESERVE_RELEASE_HOURS={settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS:g}"
    )
