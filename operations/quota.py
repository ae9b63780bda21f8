"""The quota entries (drains/selectors/quota.py) said for people and shaped for the snapshot.

One place words the quota, so the page, the API's ``text`` fields, the digest and the admin
read the same: ``Week 30 % used · resets Fri 17:57 · seen 2 min ago ·
reserve 10 % (ceiling 90 %)`` per window, and one line per key for the forecast ("at this pace
the week ends at 72 %: 18 % would lapse; an autopilot burst would start Thu 09:00") or, for a
key whose calls report no windows, that no signal was seen. Times are the operator zone's.
Nothing here reads the database.
"""

from __future__ import annotations

from datetime import datetime

from drains.clock import short_time
from drains.selectors.quota import QuotaEntry, WindowState
from operations.projection import span

_LABELS = {"five_hour": "5 hours", "seven_day": "Week"}
NO_SIGNAL = ("no quota signal seen: no call on this key has reported a window (an API-key "
             "account reports none); the drains run as before, with no ceiling and no forecast")
NO_QUOTA = "no quota signal seen: no call has reported a quota window yet"


def pct(fraction: float) -> str:
    """``30 %``; a share under one percent that is not zero reads ``<1 %``."""
    value = round(fraction * 100)
    if value == 0 and fraction > 0:
        return "<1 %"
    return f"{value} %"


def window_label(window: str) -> str:
    """``Week``, ``5 hours``, ``Week (Opus)`` for seven_day_opus; an unknown name as it is."""
    if window in _LABELS:
        return _LABELS[window]
    if window.startswith("seven_day_"):
        return f"Week ({window.removeprefix('seven_day_').replace('_', ' ').title()})"
    return window


def seen_ago(observed_at: datetime, now: datetime) -> str:
    if (now - observed_at).total_seconds() < 60:
        return "seen just now"
    return f"seen {span(now - observed_at)} ago"


def window_text(w: WindowState, now: datetime) -> str:
    parts = [f"{window_label(w.window)} {pct(w.utilization)} used"]
    parts.append(f"resets {short_time(w.resets_at)}" if w.resets_at else "reset not said")
    parts.append(seen_ago(w.observed_at, now))
    released = ", being released" if w.releasing else ""
    if w.reserve > 0.0005:
        parts.append(f"reserve {pct(w.reserve)} (ceiling {pct(w.ceiling)}{released})")
    elif w.releasing:
        parts.append("reserve released (ceiling 100 %)")
    if w.utilization >= w.ceiling:
        parts.append("at the ceiling: no drain call starts")
    if w.status == "rejected":
        parts.append("refused")
    if w.stale:
        parts.append("stale (reset since)" if w.resets_at and w.resets_at <= now else "stale")
    return " · ".join(parts)


def autopilot_text(entry: QuotaEntry, now: datetime) -> str:
    """What the autopilot does about the week (drains/quota/autopilot.py's state, in words)."""
    a = entry.autopilot
    planned = a.planned_start if a is not None else None
    if a is None or not a.enabled:
        if planned is not None and planned > now:
            return f"the autopilot is off (on, it would start a burst {short_time(planned)})"
        return "the autopilot is off"
    if a.state == "waiting" and planned is not None and planned > now:
        return f"an autopilot burst would start {short_time(planned)}"
    if a.state == "due":
        return "an autopilot burst is due: the next supervisor tick starts it"
    return f"autopilot: {a.reason}" if a.reason else f"autopilot {a.state}"


def forecast_text(entry: QuotaEntry, now: datetime) -> str:
    """The key's one line: the forecast and the autopilot, or why there is none."""
    if not entry.signal_seen:
        return NO_SIGNAL
    lead = ("extra usage is being spent: no drain call starts (the drains never spend it); "
            if entry.using_overage else "")
    f = entry.forecast
    if f is None:
        return f"{lead}no forecast yet (no weekly reading to project from); {autopilot_text(entry, now)}"
    return (f"{lead}at this pace the week ends at {pct(f.week_end_utilization)}: "
            f"{pct(f.lapse)} would lapse; {autopilot_text(entry, now)}")


def quota_json(entry: QuotaEntry, now: datetime) -> dict:
    """One key as the snapshot's ``quotas`` lists it (datetimes left for ``as_json``)."""
    a, f = entry.autopilot, entry.forecast
    return {
        "key": entry.key,
        "signal_seen": entry.signal_seen,
        "using_overage": entry.using_overage,
        "drains": list(entry.drains),
        "windows": [
            {
                "window": w.window,
                "label": window_label(w.window),
                "utilization": round(w.utilization, 4),
                "resets_at": w.resets_at,
                "status": w.status,
                "observed_at": w.observed_at,
                "stale": w.stale,
                "ceiling": round(w.ceiling, 4),
                "reserve": round(w.reserve, 4),
                "releasing": w.releasing,
                "text": window_text(w, now),
            }
            for w in entry.windows
        ],
        "weekly_reserve": entry.weekly_reserve,
        "session_reserve": entry.session_reserve,
        "reserve_release_hours": entry.reserve_release_hours,
        "ceilings": {name: round(value, 4) for name, value in entry.ceilings.items()},
        "autopilot": None if a is None else {
            "enabled": a.enabled, "state": a.state, "reason": a.reason,
            "planned_start": a.planned_start,
        },
        "forecast": None if f is None else {
            "week_end_utilization": round(f.week_end_utilization, 4),
            "lapse": round(f.lapse, 4),
            "resets_at": f.resets_at,
        },
        "text": forecast_text(entry, now),
    }
