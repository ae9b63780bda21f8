"""The drain rules: pure functions over plain data, the one place each rule is decided.

Run liveness (alive / dead / hung), a burst being active, a backoff being in force, a
backoff going stale and a quota window's reading going stale are asked here by every reader — the runtime, the supervisor, the
operations snapshot and the digest — instead of each re-deriving them from raw fields.

Nothing here touches the database, reads settings or looks at a clock: the caller reads the
state (drains/selectors/) and passes ``now`` in, so a rule is the same under a frozen test
clock, in a dry run and in production.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def reading_stale(*, observed_at: datetime, resets_at: datetime | None, now: datetime,
                  stale_after: timedelta) -> bool:
    """A quota window's reading says nothing any more once the window has reset since it was
    taken (its real utilization is lower now; the next call will say by how much), or once it
    is older than ``stale_after`` (``DRAINS_QUOTA_STALE_MINUTES``: the account's owner may have
    spent from the same windows meanwhile). It is still shown, marked so; what the ceiling does
    with it is drains/quota/ceiling.py's business."""
    if resets_at is not None and resets_at <= now:
        return True
    return now - observed_at > stale_after


def holds_lock(*, backend_pid: int | None, holder: int | None) -> bool:
    """A run is alive exactly when its recorded backend holds the drain lock.

    A run that has not recorded its backend pid (an older row) counts as alive while any
    session holds the lock. A recorded pid that differs from the holder's is a dead run whose
    lock another runner took since: its process is gone and its pid may have been reused.
    """
    return holder is not None and (backend_pid is None or backend_pid == holder)


def hung_after(*, override_seconds: int | None, default_seconds: float) -> timedelta:
    """The hung threshold: the drain's own override, else the settings default."""
    return timedelta(seconds=int(override_seconds or default_seconds))


def last_sign_of_life(*, last_checkpoint_at: datetime | None, started_at: datetime) -> datetime:
    """Liveness is the last committed checkpoint, or the start when there is none yet."""
    return last_checkpoint_at or started_at


def is_hung(
    *, last_checkpoint_at: datetime | None, started_at: datetime, threshold: timedelta, now: datetime
) -> bool:
    seen = last_sign_of_life(last_checkpoint_at=last_checkpoint_at, started_at=started_at)
    return now - seen > threshold


def burst_active(burst_until: datetime | None, *, now: datetime) -> bool:
    """A burst is on until its deadline; past it, it is off whether or not it was cleared."""
    return burst_until is not None and burst_until > now
