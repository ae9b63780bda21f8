"""What ``manage.py quota`` prints: every quota key as the page shows it, each window and the
forecast with the autopilot in drains/quota/wording.py's words, plus what only the command says:
the reserves and which are defaults, the runner's may-call rule now, and the settings' defaults.

Plain functions over the quota entries (drains/selectors/quota.py), the readings with their
measured call steps (drains/quota/store.py) and the pure ceiling; ``now`` passed in. Never
writes anything.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from drains.quota.ceiling import call_step, first_over_ceiling
from drains.quota.models import QuotaPolicy
from drains.quota.reserve import Reserves, reserves_from
from drains.quota.store import quota_state
from drains.quota.wording import NO_QUOTA, forecast_text, pct, window_text
from drains.selectors.quota import QuotaEntry, quota_entries


def quota_lines(*, now: datetime) -> list[str]:
    """Every known quota key, a block of lines each; one line when none is known."""
    entries = quota_entries(now=now)
    if not entries:
        return [NO_QUOTA]
    keys = [entry.key for entry in entries]
    policies = {p.quota_key: p for p in QuotaPolicy.objects.filter(quota_key__in=keys)}
    lines: list[str] = []
    for entry in entries:
        lines += key_lines(entry, policies.get(entry.key), now=now)
    return lines


def key_lines(entry: QuotaEntry, policy: QuotaPolicy | None, *, now: datetime) -> list[str]:
    """``quota KEY``, its reserves, its windows, the may-call rule and the forecast line."""
    reserves = reserves_from(policy)
    lines = [f"quota {entry.key}", f"  {reserves_line(reserves, policy)}"]
    lines += [f"  {window_text(w, now)}" for w in entry.windows]
    if entry.signal_seen:
        lines.append(f"  {may_call(entry.key, reserves, now)}")
    lines.append(f"  {forecast_text(entry, now)}")
    return lines


def reserves_line(reserves: Reserves, policy: QuotaPolicy | None) -> str:
    """``reserves: weekly 10 % (default), released over the last 6 h before the weekly reset
    (default); session 0 % (default)``: "(default)" where the key's policy leaves the setting."""

    def source(field: str) -> str:
        return " (default)" if policy is None or getattr(policy, field) is None else ""

    release = (
        f"released over the last {reserves.release_hours:g} h before the weekly reset"
        if reserves.release_hours > 0 else "never released"
    )
    return (
        f"reserves: weekly {pct(reserves.weekly)}{source('weekly_reserve')}, {release}"
        f"{source('reserve_release_hours')}; session {pct(reserves.session)}"
        f"{source('session_reserve')}"
    )


def may_call(key: str, reserves: Reserves, now: datetime) -> str:
    """The runner's rule, one call's headroom kept (drains/quota/ceiling.py ``call_step``)."""
    rows, _ = quota_state(key)  # the readings with their measured call steps
    steps = {row.window: call_step(row.step, row.step_pairs) for row in rows}
    breach = first_over_ceiling(
        readings=rows, using_overage=any(row.using_overage for row in rows),
        reserves=reserves, now=now, steps=steps,
    )
    if breach is not None:
        return f"drains stopped: {breach.reason}"
    return "drains may call: every window is below its ceiling by more than one call"


def settings_line() -> str:
    return (
        f"defaults: DRAINS_QUOTA_WEEKLY_RESERVE={settings.DRAINS_QUOTA_WEEKLY_RESERVE:g}, "
        f"DRAINS_QUOTA_SESSION_RESERVE={settings.DRAINS_QUOTA_SESSION_RESERVE:g}, "
        f"DRAINS_QUOTA_RESERVE_RELEASE_HOURS={settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS:g}"
    )
