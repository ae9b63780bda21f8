"""A service's state in the operations snapshot and its one-line reason: running (its lock held,
with its progress), hung, failing, disabled, backing off or idle (and why). What a row means
(alive, hung, backoff in force) is asked of drains/rules.py and drains/quota/policy.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings

from drains import failures, rules
from drains.clock import short_time, span
from drains.models import DrainControl, DrainRun, RunStatus
from drains.quota import policy
from drains.quota.kinds import LimitKind, describe_kind
from drains.selectors.rows import Backlog, CurrentRun

FAILED_STATUSES = {RunStatus.FAILED, RunStatus.CRASHED, RunStatus.HUNG}


class State(StrEnum):
    """A drain's state on the page and in the snapshot (its value is what the API sends)."""

    IDLE = "idle"
    RUNNING = "running"
    HUNG = "hung"
    BACKING_OFF = "backing_off"
    BLOCKED = "blocked"  # a host fault: no call until a probe call works (drains/runner/plugin.py)
    DISABLED = "disabled"
    FAILING = "failing"


def _first_line(text: str, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _hung_after(control: DrainControl | None) -> timedelta:
    return rules.hung_after(
        override_seconds=control.hung_after_seconds if control else None,
        default_seconds=settings.DRAINS_HUNG_AFTER_SECONDS,
    )


def _running_state(run: DrainRun, hung_after: timedelta, now: datetime,
                   alive: bool | None) -> tuple[str, str]:
    where = f"run {run.pk} on {run.host} (pid {run.pid})"
    if alive is False:
        return State.FAILING, (
            f"{where} is marked running but no longer holds its lock: the process died; "
            "the supervisor will mark it crashed"
        )
    age = now - rules.last_sign_of_life(
        last_checkpoint_at=run.last_checkpoint_at, started_at=run.started_at
    )
    if rules.is_hung(
        last_checkpoint_at=run.last_checkpoint_at,
        started_at=run.started_at,
        threshold=hung_after,
        now=now,
    ):
        return State.HUNG, (
            f"no checkpoint for {span(age)} (limit {span(hung_after)}) from {where}"
        )
    of = f" of {run.backlog_at_start}" if run.backlog_at_start else ""
    return State.RUNNING, (
        f"lock held by {where}: {run.items_done}{of} done, "
        f"last checkpoint {span(age)} ago"
    )


def _failed_reason(run: DrainRun) -> str:
    error = failures.reason_line(error=run.error, error_kind=run.error_kind)
    when = short_time(run.finished_at or run.started_at)
    return f"last run {run.pk} {run.status} at {when}" + (f": {error}" if error else "")


def drain_state(*, control: DrainControl | None, disabled_by: str | None, burst,
                current: DrainRun | None, last: DrainRun | None, backlog: Backlog, next_fire,
                holder, now) -> tuple[str, str]:
    if current is not None:
        # Alive exactly when the run's session holds the drain's lock (any session, when the
        # run has not recorded its backend pid yet).
        alive = rules.holds_lock(backend_pid=current.backend_pid, holder=holder)
        return _running_state(current, _hung_after(control), now, alive)
    if holder is not None:
        return State.RUNNING, f"lock held by database session {holder}; its run is starting"
    if control is not None and not control.enabled:
        by = f" by {disabled_by}" if disabled_by else ""
        return State.DISABLED, f"disabled{by}: no run starts until it is enabled again"
    if control is not None and policy.backoff_active(control.backoff_until, now=now):
        if control.backoff_kind == LimitKind.HOST_FAULT:
            return State.BLOCKED, (
                f"blocked: {_first_line(control.backoff_reason, 600)}; next probe call "
                f"{short_time(control.backoff_until)} (or unblock it: retry now)"
            )
        reason = _first_line(control.backoff_reason) or "rate limited"
        which = describe_kind(control.backoff_kind, control.backoff_model)
        return State.BACKING_OFF, (
            f"backing off until {short_time(control.backoff_until)}"
            f"{' (' + which + ')' if which else ''}: {reason}"
        )
    if last is not None and last.status in FAILED_STATUSES:
        return State.FAILING, _failed_reason(last)
    if backlog.pending == 0:
        return State.IDLE, "backlog empty"
    if burst.active:
        return State.IDLE, (
            f"burst until {short_time(burst.burst_until)}: {backlog.pending} pending, "
            "waiting for the supervisor to start a run"
        )
    if next_fire is not None:
        return State.IDLE, f"{backlog.pending} pending; next run {short_time(next_fire)}"
    return State.IDLE, f"{backlog.pending} pending; not scheduled: only a burst starts it"


def job_state(*, current: CurrentRun | None, last: DrainRun | None, next_fire,
              now) -> tuple[str, str]:
    if current is not None:
        return _running_state(current.run, _hung_after(None), now, current.backend_alive)
    if last is not None and last.status in FAILED_STATUSES:
        return State.FAILING, _failed_reason(last)
    after = f"; next {short_time(next_fire)}" if next_fire else ""
    if last is None:
        return State.IDLE, f"never run{after}"
    when = short_time(last.finished_at or last.started_at)
    return State.IDLE, f"last run {last.status} at {when}{after}"
