"""The supervisor's six steps for one drain: what to do, from the state read and ``now``.

Every rule it applies (liveness, burst active, backoff in force or stale) is asked of
drains/rules.py. It changes nothing: each decision carries the action that would carry it out
(drains/supervisor/actions.py), so a dry run prints the same plan without applying it.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from django.conf import settings

from drains import rules
from drains.clock import format_local
from drains.models import DrainRun, EventKind, RunStatus
from drains.quota import policy
from drains.quota.kinds import Kind, weekly_limit_message
from drains.selectors import ControlValues, DrainState
from drains.supervisor import actions
from drains.supervisor.decision import Decision


def plan_drain(
    state: DrainState,
    *,
    now: datetime,
    controls: Mapping[str, ControlValues],
    last_progress: datetime | None,
    cleared_backoffs: set[str],
    journaled: int = 0,
) -> list[Decision]:
    """The decisions of the six steps for one drain, in order (later steps assume the earlier
    decisions were applied). ``journaled``: paid results this host's journal still holds."""
    control = state.control
    decisions: list[Decision] = []
    burst_until = _expired_burst(state, now, decisions)  # step 1
    burst_until = _outlasted_burst(state, burst_until, now, decisions)  # step 1, weekly limit
    live = _crashed(state, decisions)  # step 2
    still_live = _hung(state, live, now, decisions)  # step 3
    backoff_until = control["backoff_until"] if control else None
    if control and backoff_until is not None:  # step 4
        decisions.append(
            _backoff(state.name, control, backoff_until, now, last_progress, cleared_backoffs)
        )
    # Runs found dead in this tick: their rows are corrected after this host's journal is
    # replayed, in step 5, or (nothing to promote) right after they are marked. A run stopped
    # as hung is corrected by the next runner (the lock was not free when this tick read it).
    dead = [d for d in decisions if d.action in (EventKind.CRASHED, EventKind.HUNG)]
    if (state.staged or journaled) and not still_live:  # step 5 (never while a live run works)
        decisions.append(_promote(state, journaled, [d.run_id for d in dead if d.run_id]))
    elif state.holder is None:  # the lock is free: no runner is starting either
        for decision in dead:
            if decision.run_id is not None:
                decision.apply = _then_correct(state.name, decision.apply, decision.run_id)
    # step 6 (a burst comes from the control row: both are there when one is on)
    if control is not None and burst_until is not None and rules.burst_active(burst_until, now=now):
        decisions.append(
            _start_or_hold(state, control, burst_until, still_live, controls, now, cleared_backoffs)
        )
    return decisions


def _expired_burst(state: DrainState, now: datetime, decisions: list[Decision]) -> datetime | None:
    """Step 1: a burst past its deadline is cleared. Returns the burst still on, if any."""
    burst_until = state.control["burst_until"] if state.control else None
    if burst_until is None or rules.burst_active(burst_until, now=now):
        return burst_until
    name = state.name
    decisions.append(
        Decision(
            name,
            EventKind.CLEAR_BURST,
            f"burst deadline {format_local(burst_until)} has passed",
            data={"until": burst_until.isoformat()},
            apply=lambda: actions.clear_burst(name),
        )
    )
    return None


def _outlasted_burst(
    state: DrainState, burst_until: datetime | None, now: datetime, decisions: list[Decision]
) -> datetime | None:
    """Step 1, too: a burst that a weekly limit outlasts (its reset at or after the deadline)
    has nothing left to spend and ends now. Returns the burst still on, if any."""
    control = state.control
    if control is None or burst_until is None or not policy.weekly_outlasts_burst(
        kind=control.get("backoff_kind") or "",
        reset_at=control["backoff_until"],
        burst_until=burst_until,
        now=now,
    ):
        return burst_until
    name, reset_at = state.name, control["backoff_until"]
    if reset_at is None:  # weekly_outlasts_burst said it is set; this narrows the type
        return burst_until
    kind = Kind(control["backoff_kind"], control.get("backoff_model") or "")
    decisions.append(
        Decision(
            name,
            EventKind.END_BURST,
            weekly_limit_message(kind=kind, reset_at=reset_at, burst_until=burst_until),
            data={"until": burst_until.isoformat(), "reset_at": reset_at.isoformat()},
            apply=lambda: actions.end_outlasted_burst(name, kind, reset_at),
        )
    )
    return None


def _crashed(state: DrainState, decisions: list[Decision]) -> list[DrainRun]:
    """Step 2: a run marked running whose lock is not held by its backend has died (a recorded
    backend that is not the holder's is a dead run too: never signal its possibly reused pid).
    Returns the runs that hold their lock."""
    live: list[DrainRun] = []
    for run in state.running:
        if rules.holds_lock(backend_pid=run.backend_pid, holder=state.holder):
            live.append(run)
            continue
        reason = (
            f"run {run.pk} (pid {run.pid} on {run.host}) is marked running but its drain lock "
            + (
                "is free"
                if state.holder is None
                else f"is held by backend {state.holder}, not by the run's backend {run.backend_pid}"
            )
        )
        decisions.append(
            Decision(
                state.name,
                EventKind.CRASHED,
                reason,
                run_id=run.pk,
                data={"pid": run.pid, "host": run.host},
                apply=actions.marker(run, RunStatus.CRASHED, reason),
            )
        )
    return live


def _hung(
    state: DrainState, live: list[DrainRun], now: datetime, decisions: list[Decision]
) -> list[DrainRun]:
    """Step 3: a live run without a checkpoint for longer than the threshold is stopped.
    Returns the runs still live."""
    control = state.control
    hung_after = rules.hung_after(
        override_seconds=control.get("hung_after_seconds") if control else None,
        default_seconds=settings.DRAINS_HUNG_AFTER_SECONDS,
    )
    threshold = int(hung_after.total_seconds())
    still_live: list[DrainRun] = []
    for run in live:
        if not rules.is_hung(
            last_checkpoint_at=run.last_checkpoint_at,
            started_at=run.started_at,
            threshold=hung_after,
            now=now,
        ):
            still_live.append(run)
            continue
        last = rules.last_sign_of_life(
            last_checkpoint_at=run.last_checkpoint_at, started_at=run.started_at
        )
        what = "last checkpoint" if run.last_checkpoint_at else "start (no checkpoint yet)"
        local = run.host == socket.gethostname()
        how = "SIGTERM then SIGKILL" if local else f"pg_terminate_backend({run.backend_pid})"
        reason = (
            f"run {run.pk} (pid {run.pid} on {run.host}): {what} {int((now - last).total_seconds())} s "
            f"ago, over the {threshold} s threshold; stopping it ({how})"
        )
        decisions.append(
            Decision(
                state.name,
                EventKind.HUNG,
                reason,
                run_id=run.pk,
                data={"pid": run.pid, "host": run.host, "threshold": threshold},
                apply=functools.partial(actions.stop_hung, run, reason),
            )
        )
    return still_live


def _backoff(
    name: str,
    control: ControlValues,
    until: datetime,
    now: datetime,
    last_progress: datetime | None,
    cleared_backoffs: set[str],
) -> Decision:
    """Step 4: a backoff (until ``until``, the row's) is kept while fresh, cleared when stale or
    past its reset."""
    observed = control["backoff_observed_at"]
    stale_because = policy.backoff_stale_because(
        until=until, observed_at=observed, last_progress=last_progress, now=now
    )
    if stale_because:
        cleared_backoffs.add(name)
        return Decision(
            name,
            EventKind.CLEAR_BACKOFF,
            f"backoff until {format_local(until)} is stale: {stale_because}",
            data={"until": until.isoformat()},
            apply=lambda: actions.clear_backoff_of(name, until),
        )
    return Decision(
        name,
        EventKind.KEEP_BACKOFF,
        f"backoff until {format_local(until)} is fresh (no successful checkpoint since "
        f"it was observed{' at ' + format_local(observed) if observed else ''})",
        data={"until": until.isoformat()},
    )


def _then_correct(
    name: str, apply: Callable[[], str | None] | None, run_id: int
) -> Callable[[], str | None]:
    def both() -> str | None:
        outcome = apply() if apply is not None else None
        corrected = actions.correct(name, run_id)
        return "; ".join(part for part in (outcome, corrected) if part) or None

    return both


def _promote(state: DrainState, journaled: int = 0, dead: Sequence[int] = ()) -> Decision:
    """Step 5: staged rows (and this host's journal entries) left by dead runs are promoted, and
    the rows of the runs found dead in this tick corrected from what they did."""
    name = state.name
    dead_runs = list(dead)
    promote = Decision(
        name,
        EventKind.PROMOTE,
        f"{state.staged} staged result(s) left by dead runs"
        + (f", {journaled} in this host's journal" if journaled else ""),
        data={"staged": state.staged, **({"journaled": journaled} if journaled else {}),
              **({"dead_runs": dead_runs} if dead_runs else {})},
    )
    promote.apply = lambda: actions.promote(name, promote.followups, dead_runs)
    return promote


def _start_or_hold(
    state: DrainState,
    control: ControlValues,
    burst_until: datetime,
    still_live: list[DrainRun],
    controls: Mapping[str, ControlValues],
    now: datetime,
    cleared_backoffs: set[str],
) -> Decision:
    """Step 6: start the drain when a burst wants it running and nothing stops it."""
    name = state.name
    why_not = None
    if not control["enabled"]:
        why_not = "the drain is disabled"
    else:
        blocking = policy.blocking_backoff(
            drain=name,
            quota_key=control.get("quota_key") or "",
            controls=controls.values(),
            now=now,
            ignore=cleared_backoffs,
        )
        if blocking:
            source = "" if blocking["name"] == name else f" (observed by {blocking['name']})"
            why_not = f"backoff in force until {format_local(blocking['backoff_until'])}{source}"
        elif still_live:
            run = still_live[0]
            why_not = f"run {run.pk} is live (pid {run.pid} on {run.host})"
    if why_not:
        return Decision(name, EventKind.HOLD, f"burst active but not starting: {why_not}")
    return Decision(
        name,
        EventKind.START,
        f"burst active until {format_local(burst_until)}, enabled, no backoff, no live run",
        data={"until": burst_until.isoformat()},
        apply=lambda: actions.start_if_backlog(name),
    )
