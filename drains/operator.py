"""What an operator does from the page or the API, each through the service that owns the
change, each audited (a DrainEvent naming the user):

- ``run_now``: start the drain now through the supervisor's start path
  (``drains.supervisor.actions.spawn_drain``, ``--trigger manual``), refused with the reason
  when it is disabled, a backoff is in force, a run holds the lock, its scheduled run is about
  to start, or the backlog is empty;
- ``retry_now``: clear the backoff in force (``drains.quota.backoff.clear_backoff``); its event is the
  quota's latest reset, so the next run probes the quota with one call first (drains/rules.py
  ``probe_due``);
- ``stop_run``: SIGTERM to a running run's process on this host (the runner stops cleanly,
  ``stopped (signal)``); on another host, its lock session is terminated — the fence: a run that
  lost its lock makes no paid call and promotes nothing — and a note says so.

Each raises ``Refused`` (a message that says why and what to do) when it cannot apply; repeated,
an action that already took effect is refused the same way and changes nothing.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from drains import registry, schedule
from drains.clock import format_local
from drains.events import record_event
from drains.locks import drain_lock_holders
from drains.models import DrainControl, DrainRun, EventKind, RunStatus, Trigger
from drains.quota.backoff import backoff_in_force, clear_backoff

# A run now this close to the drain's scheduled start would only race it for the lock.
SCHEDULE_MARGIN = timedelta(minutes=2)


class Refused(Exception):
    """The action cannot apply now; the message says why."""


@dataclass(frozen=True)
class Done:
    message: str
    data: dict


def start_refusal(*, enabled: bool, backoff_until, backoff_drain: str, name: str,
                  holder: int | None, next_fire, pending: int, now) -> str | None:
    """Why "run now" cannot start ``name`` (None: it can), from what is known of it: whether it
    is enabled, the backoff that stops it (``backoff_until``, observed by ``backoff_drain``;
    None: none), the session holding its lock, its next scheduled start and its pending items.
    The one rule: the action (below) and the snapshot's ``why_not_run_now`` (the page's button,
    refreshed every 15 s) both ask it."""
    if not enabled:
        return "the drain is disabled: enable it first"
    if backoff_until is not None:
        source = "" if backoff_drain == name else f" (observed by {backoff_drain})"
        return (f"a backoff is in force until {format_local(backoff_until)}{source}: use "
                "\"retry now\" to clear it first")
    if holder is not None:
        return f"a run is going (database session {holder} holds the drain lock)"
    if next_fire is not None and next_fire - now <= SCHEDULE_MARGIN:
        return f"its scheduled run starts at {format_local(next_fire)}: wait for it"
    if not pending:
        return "the backlog is empty: nothing to run"
    return None


def _why_not_start(name: str, now) -> str | None:
    control = DrainControl.objects.filter(name=name).first()
    backoff = backoff_in_force(drain=name, now=now)
    fire = next((schedule.next_fire_times(job.expression, 1, now)[0]
                 for job in schedule.scheduled_jobs() if job.drain == name), None)
    return start_refusal(
        enabled=control is None or control.enabled,
        backoff_until=backoff.until if backoff else None,
        backoff_drain=backoff.drain if backoff else name, name=name,
        holder=drain_lock_holders([name])[name], next_fire=fire,
        pending=registry.get(name).pending_count(), now=now)


def why_not_run_now(name: str) -> str | None:
    """Why "run now" cannot apply to ``name`` now (None: it can). For the page's button."""
    registry.get(name)
    return _why_not_start(name, timezone.now())


def run_now(*, name: str, actor: str) -> Done:
    from drains.supervisor.actions import spawn_drain

    registry.get(name)
    why = _why_not_start(name, timezone.now())
    if why:
        raise Refused(f"{name}: not started: {why}.")
    pid, log_path = spawn_drain(name, trigger=Trigger.MANUAL)
    message = f"run now: started {' '.join(registry.get(name).command_line())} (pid {pid} on " \
              f"{socket.gethostname()}), output to {log_path}"
    record_event(drain=name, kind=EventKind.RUN_NOW, message=message, actor=actor,
                 data={"pid": pid, "host": socket.gethostname(), "log": log_path})
    return Done(message, {"pid": pid, "log": log_path})


def retry_now(*, name: str, actor: str) -> Done:
    registry.get(name)
    now = timezone.now()
    backoff = backoff_in_force(drain=name, now=now)
    if backoff is None:
        raise Refused(f"{name}: no backoff to clear.")
    if not clear_backoff(drain=backoff.drain, until=backoff.until, actor=actor, whole_quota=True):
        raise Refused(f"{name}: the backoff changed meanwhile; reload and look again.")
    message = (f"retry now: backoff until {format_local(backoff.until)} cleared"
               + ("" if backoff.drain == name else f" (observed by {backoff.drain})")
               + "; the next run probes the quota with one call first")
    record_event(drain=name, kind=EventKind.RETRY_NOW, message=message, actor=actor,
                 data={"until": now.isoformat(), "cleared_until": backoff.until.isoformat(),
                       "observed_by": backoff.drain})
    return Done(message, {"cleared_until": backoff.until.isoformat()})


def why_not_stop(run: DrainRun) -> str | None:
    if run.status != RunStatus.RUNNING:
        return f"run {run.pk} is not running (it {run.status})"
    return None


def stop_run(*, run_id: int, actor: str) -> Done:
    run = DrainRun.objects.filter(pk=run_id).first()
    if run is None:
        raise LookupError(f"No run {run_id}.")
    why = why_not_stop(run)
    if why:
        raise Refused(f"{why}: nothing to stop.")
    if run.host == socket.gethostname():
        try:
            os.kill(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            raise Refused(f"run {run.pk}'s process (pid {run.pid}) is gone: the supervisor "
                          "marks it crashed at its next tick.") from None
        how = f"SIGTERM sent to pid {run.pid} on {run.host}: it stops after the calls in flight"
    else:
        terminated = False
        if run.backend_pid is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [run.backend_pid])
                terminated = bool(cursor.fetchone()[0])
        how = (f"run on {run.host}, not this host: its lock session ({run.backend_pid}) was "
               f"{'terminated' if terminated else 'already gone'}, so it makes no further paid "
               "call and promotes nothing; its process ends at its next check")
    message = f"stop run {run.pk}: {how}"
    record_event(drain=run.drain, run=run, kind=EventKind.STOP_RUN, message=message, actor=actor,
                 data={"run": run.pk, "pid": run.pid, "host": run.host})
    return Done(message, {"run": run.pk})


