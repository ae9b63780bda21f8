"""The quota said for people, in one place: a window, a percent, when a window was seen, the
forecast and the autopilot, worded from the typed entries of drains/selectors/quota.py.

Every surface reads these words: the /operations page and the API's ``text`` fields
(operations/quota.py ``quota_json``), the digest, the admin, and ``manage.py quota``
(drains/quota/report.py, which adds only what the command alone shows: the reserves' sources,
the runner's may-call rule and the settings' defaults). Per window ``Week 30 % used · resets
Fri 17:57 IST · seen 2 min ago · reserve 10 % (ceiling 90 %)``; per key one line for the
forecast and the autopilot ("at this pace the week ends at 72 %: 18 % would lapse; an autopilot
burst would start Thu 09:00 IST") or, for a key whose calls report no windows, that no signal
was seen. Times are the operator zone's (drains/clock.py). Nothing here reads the database.
"""

from __future__ import annotations

from datetime import datetime

from drains.clock import short_time, span
from drains.selectors.quota import QuotaEntry, WindowState

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
    """``seen just now`` within the minute, else ``seen 2 min ago`` (``span``)."""
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
