"""Whether a stored window reading still says something: the one rule every reader asks.

A reading is *stale* when the window has reset since it was taken (its ``resets_at`` passed: the
window's real utilization is lower now, and the next call will say by how much), or when it is
older than ``DRAINS_QUOTA_STALE_MINUTES`` (the account's owner may have spent from the same
windows meanwhile, and no call of ours has looked). A stale reading is still shown, marked so;
what the ceiling does with it is drains/quota/ceiling.py's business. Pure: ``now`` is passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def reading_stale(*, observed_at: datetime, resets_at: datetime | None, now: datetime,
                  stale_after: timedelta) -> bool:
    if resets_at is not None and resets_at <= now:
        return True
    return now - observed_at > stale_after
