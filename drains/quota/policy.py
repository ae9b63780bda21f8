"""The quota's pure rules: a backoff in force or stale, a probe due, the plan by limit kind and
its bounded, jittered waits.

Like drains/rules.py, nothing here touches the database, reads settings or looks at a clock: the
caller reads the state and passes ``now`` in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeGuard, TypeVar, overload

from drains.quota.kinds import LimitKind
from drains.rules import burst_active


def backoff_active(backoff_until: datetime | None, *, now: datetime) -> TypeGuard[datetime]:
    """A backoff stops calls until its reset time (so, when it does, its reset is known)."""
    return backoff_until is not None and backoff_until > now


class BackoffFields(Protocol):
    """A backoff as a typed row says it (the snapshot's ``BackoffRow``)."""

    @property
    def name(self) -> str: ...
    @property
    def quota_key(self) -> str: ...
    @property
    def backoff_until(self) -> datetime | None: ...


Row = TypeVar("Row", bound=BackoffFields)  # a typed row comes back as itself


def _backoff_fields(row: Mapping[str, Any] | BackoffFields) -> tuple[str, str, datetime | None]:
    if isinstance(row, Mapping):
        return row["name"], row.get("quota_key") or "", row["backoff_until"]
    return row.name, row.quota_key, row.backoff_until


@overload
def blocking_backoff(*, drain: str, quota_key: str, controls: Iterable[Row], now: datetime,
                     ignore: Iterable[str] = ()) -> Row | None: ...


@overload  # the runner's and the supervisor's rows (``.values()`` dicts, ControlValues)
def blocking_backoff(*, drain: str, quota_key: str, controls: Iterable[Mapping[str, Any]],
                     now: datetime, ignore: Iterable[str] = ()) -> Mapping[str, Any] | None: ...


def blocking_backoff(
    *,
    drain: str,
    quota_key: str,
    controls: Iterable[Mapping[str, Any]] | Iterable[BackoffFields],
    now: datetime,
    ignore: Iterable[str] = (),
) -> Mapping[str, Any] | BackoffFields | None:
    """The control row whose backoff stops ``drain`` now, or None.

    A rate limit belongs to the quota, not to one drain: the drain's own backoff stops it, and
    so does the backoff of any drain on the same ``quota_key`` (none when the key is empty).
    ``controls`` are rows with ``name``, ``quota_key`` and ``backoff_until`` (mappings, or typed
    rows such as the snapshot's ``BackoffRow``); the latest reset wins. ``ignore`` names drains
    whose backoff is being cleared.
    """
    skipped = set(ignore)
    found: Mapping[str, Any] | BackoffFields | None = None
    latest: datetime | None = None
    for row in controls:
        name, key, until = _backoff_fields(row)
        if name in skipped or not backoff_active(until, now=now):
            continue
        if name == drain or (quota_key and key == quota_key):
            if latest is None or until > latest:
                found, latest = row, until
    return found


def backoff_stale_because(
    *,
    until: datetime,
    observed_at: datetime | None,
    last_progress: datetime | None,
    now: datetime,
) -> str | None:
    """Why a backoff no longer holds (its reset passed, or the quota has worked since it was
    observed), or None while it is fresh. ``last_progress`` is the latest checkpoint with items
    done after the backoff was observed, by any run on the quota but the one that hit the limit.
    """
    if until <= now:
        return f"its reset {until.isoformat()} has passed"
    if last_progress is not None:
        observed = observed_at.isoformat() if observed_at else "at an unknown time"
        return (
            f"observed {observed}, before the last successful checkpoint "
            f"{last_progress.isoformat()}"
        )
    return None


def probe_due(
    *, backoff_until: datetime | None, last_success_at: datetime | None, now: datetime
) -> bool:
    """A probe after a reset is due: the quota's latest backoff has expired and no call on the
    quota has succeeded since its reset (so the next run makes one call, alone, before it opens
    up to full concurrency).

    ``backoff_until`` is the reset of the latest backoff recorded on the quota (None: never
    limited); ``last_success_at`` the latest sign that a call on the quota worked (a probe that
    went through, or a checkpoint with items done). A backoff still in force is no probe yet:
    no call may start before its reset.
    """
    if backoff_until is None or backoff_until > now:
        return False
    return last_success_at is None or last_success_at < backoff_until


# --- the plan by limit kind ------------------------------------------------------------------


class LimitPlan(StrEnum):
    """What the runtime does about a limit, by its kind (docs/rate-limits.md)."""

    RETRY = "retry"  # overloaded (529): no limit at all; retry the call inside the run
    SLOW_DOWN = "slow_down"  # a per-minute API limit: fewer calls in flight, a short wait
    BACKOFF = "backoff"  # session, weekly, unknown: stop and back off until the reset
    OPERATOR = "operator"  # spend cap, extra usage: money; pause the drain and tell an operator


_PLANS: dict[str, LimitPlan] = {
    LimitKind.OVERLOADED: LimitPlan.RETRY,
    LimitKind.API_REQUESTS: LimitPlan.SLOW_DOWN,
    LimitKind.API_INPUT_TOKENS: LimitPlan.SLOW_DOWN,
    LimitKind.API_OUTPUT_TOKENS: LimitPlan.SLOW_DOWN,
    LimitKind.SPEND_CAP: LimitPlan.OPERATOR,
    LimitKind.EXTRA_USAGE: LimitPlan.OPERATOR,
}
WEEKLY_KINDS = frozenset({LimitKind.WEEKLY, LimitKind.WEEKLY_MODEL})


# A drain blocked by a host fault is probed again after this long, then after twice as long each
# time the probe meets the fault again, never less often than the cap: a mended login or network
# is noticed within the hour, and an outage of hours costs one call an hour.
HOST_PROBE_FIRST = timedelta(minutes=1)
HOST_PROBE_MAX = timedelta(minutes=60)


def host_probe_interval(previous: timedelta | None) -> timedelta:
    """How long a drain stays blocked by a host fault before its next probe call: the first
    interval, or twice the previous block (``previous``: the last block since a call worked)."""
    if previous is None or previous <= timedelta(0):
        return HOST_PROBE_FIRST
    return min(max(2 * previous, HOST_PROBE_FIRST), HOST_PROBE_MAX)


def limit_plan(kind: str) -> LimitPlan:
    """The plan for a limit of ``kind`` (a ``LimitKind`` value; anything else backs off)."""
    return _PLANS.get(kind, LimitPlan.BACKOFF)


def weekly_outlasts_burst(
    *, kind: str, reset_at: datetime | None, burst_until: datetime | None, now: datetime
) -> bool:
    """A weekly limit (all models or one model) whose reset is at or after the burst's deadline:
    the burst has nothing left to spend, so it ends now instead of backing off past its end."""
    return (
        kind in WEEKLY_KINDS
        and reset_at is not None
        and burst_until is not None
        and burst_active(burst_until, now=now)
        and reset_at >= burst_until
    )


def slow_down_wait(
    *, reset_at: datetime, now: datetime, max_wait: float, jitter: float
) -> float:
    """Seconds to wait after a per-minute limit: until its reset (at least 1 s, at most
    ``max_wait``), plus up to a quarter more (``jitter`` in [0, 1)) so that calls that were
    refused together do not come back together."""
    base = min(max((reset_at - now).total_seconds(), 1.0), max_wait)
    return base * (1 + 0.25 * jitter)


def slowed_limit(*, in_flight_limit: int) -> int:
    """Calls allowed in flight after a per-minute limit: half as many, at least one."""
    return max(1, in_flight_limit // 2)


def overload_retry_wait(*, retry: int, base: float, jitter: float) -> float:
    """Seconds before retry number ``retry`` (1, 2, ...) of an overloaded call: ``base``,
    doubled each time, plus up to a quarter more (``jitter`` in [0, 1))."""
    return base * 2.0 ** (retry - 1) * (1 + 0.25 * jitter)
