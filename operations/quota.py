"""The quota entries (drains/selectors/quota.py) shaped for the snapshot's ``quotas``: the
numbers for machines beside the words for people, which are drains/quota/wording.py's (the same
words ``manage.py quota``, the digest and the admin say). Nothing here reads the database.
"""

from __future__ import annotations

from datetime import datetime

from drains.quota.wording import forecast_text, window_label, window_text
from drains.selectors.quota import QuotaEntry
from operations.snapshot_types import QuotaKeyEntry


def quota_json(entry: QuotaEntry, now: datetime) -> QuotaKeyEntry:
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
