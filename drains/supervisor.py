"""The supervisor's service (DESIGN.md "Supervisor"): one tick over every drain, six steps each.

It owns the decisions the supervisor takes and the run state transitions it decides on
(``crashed``, ``hung``); every other write goes through the owning service (bursts.py for a
burst, runs.py for runs, staging and backoff). A tick reads the state of all drains in a fixed
number of queries (never per run of history), decides, and — unless it is a dry run — applies
each decision, printing one line "drain  action  reason" and writing a DrainEvent
(actor "supervisor") for each.

Liveness is a run's checkpoint (or its start when it has none yet) and its drain lock, never a
log file. This module must never import or call an extractor: it spends zero quota. Promotion
uses the drain class's ``promote`` (no extractor); a new run is started as a detached
``manage.py <drain command> --trigger supervisor`` process that the supervisor never waits for.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from drains import registry
from drains.bursts import clear_expired_burst
from drains.events import record_event
from drains.locks import drain_lock_holders
from drains.models import DrainControl, DrainEvent, DrainRun, RunStatus, StagedResult, Trigger
from drains.runs import finish_run, promote_leftovers

logger = logging.getLogger(__name__)

ACTOR = "supervisor"
# "SUPV" as an int4: the supervisor's own advisory lock namespace (key 1: the one supervisor).
SUPERVISOR_LOCK_NAMESPACE = 0x53555056
SUPERVISOR_LOCK_KEY = 1
_POLL_SECONDS = 0.05
ROOT = settings.BASE_DIR

# Actions that repeat every tick while their cause lasts: recorded once per episode (the last
# supervisor event of the drain says the same), printed every time.
QUIET_ACTIONS = frozenset({"keep_backoff", "hold"})


@dataclass
class Decision:
    drain: str
    action: str
    reason: str
    run_id: int | None = None
    data: dict = field(default_factory=dict)
    apply: Callable[[], str | None] | None = None  # returns what to add to the reason, or None
    followups: list[Decision] = field(default_factory=list)  # notes found while applying

    def line(self) -> str:
        return f"{self.drain}  {self.action}  {self.reason}"


@dataclass
class TickResult:
    decisions: list[Decision]
    failed: list[str]  # drains whose step raised


# --- the supervisor's own lock -----------------------------------------------------------------


class SupervisorLock:
    """``pg_try_advisory_lock`` on a dedicated connection; the session ending frees it."""

    def __init__(self):
        self._conn: psycopg.Connection | None = None

    def acquire(self) -> bool:
        params = dict(connection.get_connection_params())
        for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
            params.pop(key, None)
        params["application_name"] = f"supervisor host={socket.gethostname()} pid={os.getpid()}"
        conn = psycopg.connect(autocommit=True, **params)
        got = conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (SUPERVISOR_LOCK_NAMESPACE, SUPERVISOR_LOCK_KEY)
        ).fetchone()[0]
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def holder_pid(self) -> int | None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [SUPERVISOR_LOCK_NAMESPACE, SUPERVISOR_LOCK_KEY],
            )
            row = cursor.fetchone()
        return row[0] if row else None

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


# --- reading the state -------------------------------------------------------------------------


@dataclass
class DrainState:
    name: str
    control: dict | None
    running: list[DrainRun]
    holder: int | None
    staged: int


_LAST_PROGRESS_SQL = f"""
SELECT d.name, (
    SELECT max(r.last_checkpoint_at) FROM {DrainRun._meta.db_table} r
    WHERE r.drain = ANY(string_to_array(d.peers, E'\\n'))
      AND r.started_at >= d.observed AND r.last_checkpoint_at > d.observed
      AND r.items_done > 0 AND r.id IS DISTINCT FROM d.from_run
)
FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::bigint[])
    AS d(name, peers, observed, from_run)
"""


def _load(names: list[str]) -> tuple[dict[str, DrainState], dict[str, dict]]:
    """Everything a tick decides on, in a fixed number of queries whatever the history."""
    controls = {row["name"]: row for row in DrainControl.objects.values()}
    # Runs before lock holders: a run seen running whose lock is then free has died (or has
    # just finished, and then the guarded state change below does nothing).
    running: dict[str, list[DrainRun]] = {name: [] for name in names}
    for run in DrainRun.objects.filter(status=RunStatus.RUNNING, drain__in=names).order_by("pk"):
        running[run.drain].append(run)
    holders = drain_lock_holders(names)
    staged = {
        row["drain"]: row["n"]
        for row in StagedResult.objects.filter(drain__in=names)
        .values("drain")
        .order_by()
        .annotate(n=Count("id"))
    }
    states = {
        name: DrainState(
            name=name,
            control=controls.get(name),
            running=running[name],
            holder=holders[name],
            staged=staged.get(name, 0),
        )
        for name in names
    }
    return states, controls


def _last_progress(
    states: dict[str, DrainState], controls: dict[str, dict]
) -> dict[str, datetime | None]:
    """Per drain with a backoff: the latest checkpoint with items done after the backoff was
    observed, by a run of this drain or of any drain on the same quota (the quota is what was
    limited) other than the run that hit the limit. One query for all of them."""

    def peers(control: dict) -> str:
        key = control.get("quota_key") or ""
        same = {c["name"] for c in controls.values() if key and c["quota_key"] == key}
        return "\n".join(sorted(same | {control["name"]}))

    rows = [
        s.control
        for s in states.values()
        if s.control and s.control["backoff_until"] and s.control["backoff_observed_at"]
    ]
    if not rows:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            _LAST_PROGRESS_SQL,
            [
                [r["name"] for r in rows],
                [peers(r) for r in rows],
                [r["backoff_observed_at"] for r in rows],
                [r["backoff_from_run_id"] for r in rows],
            ],
        )
        return dict(cursor.fetchall())


_RECENT_EVENTS_SQL = f"""
SELECT d.name, e.kind, e.message
FROM unnest(%s::text[]) AS d(name)
CROSS JOIN LATERAL (
    SELECT kind, message FROM {DrainEvent._meta.db_table}
    WHERE drain = d.name AND actor = %s
    ORDER BY at DESC, id DESC
    LIMIT %s
) AS e
"""
RECENT_EVENTS = 10


def _recent_supervisor_events(names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Each drain's latest supervisor events, newest first: one query, index probes only."""
    recent: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_EVENTS_SQL, [names, ACTOR, RECENT_EVENTS])
        for name, kind, message in cursor.fetchall():
            recent[name].append((kind, message))
    return recent


def _already_said(recent: list[tuple[str, str]], kind: str, message: str) -> bool:
    """True when this quiet decision was recorded in its current episode: no other (acting)
    supervisor event of the drain came after the same one."""
    for seen_kind, seen_message in recent:
        if (seen_kind, seen_message) == (kind, message):
            return True
        if seen_kind not in QUIET_ACTIONS:
            return False
    return False


# --- deciding ----------------------------------------------------------------------------------


def _hung_after(control: dict | None) -> int:
    if control and control.get("hung_after_seconds"):
        return int(control["hung_after_seconds"])
    return int(settings.DRAINS_HUNG_AFTER_SECONDS)


def _lock_alive(run: DrainRun, holder: int | None) -> bool:
    return holder is not None and (run.backend_pid is None or run.backend_pid == holder)


def plan_drain(
    state: DrainState,
    *,
    now: datetime,
    controls: dict[str, dict],
    last_progress: datetime | None,
    cleared_backoffs: set[str],
) -> list[Decision]:
    """The decisions of the six steps for one drain, in order (later steps assume the earlier
    decisions were applied)."""
    name, control = state.name, state.control
    decisions: list[Decision] = []

    # 1. a burst past its deadline is cleared.
    burst_until = control["burst_until"] if control else None
    if burst_until is not None and burst_until <= now:
        decisions.append(
            Decision(
                name,
                "clear_burst",
                f"burst deadline {burst_until.isoformat()} has passed",
                data={"until": burst_until.isoformat()},
                apply=lambda: _clear_burst(name),
            )
        )
        burst_until = None

    # 2. a run marked running whose lock is gone has died.
    live: list[DrainRun] = []
    for run in state.running:
        if _lock_alive(run, state.holder):
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
                name,
                "crashed",
                reason,
                run_id=run.pk,
                data={"pid": run.pid, "host": run.host},
                apply=_marker(run, RunStatus.CRASHED, reason),
            )
        )

    # 3. a live run without a checkpoint for longer than the threshold is stopped.
    threshold = _hung_after(control)
    still_live: list[DrainRun] = []
    for run in live:
        last = run.last_checkpoint_at or run.started_at
        if now - last <= timedelta(seconds=threshold):
            still_live.append(run)
            continue
        what = "last checkpoint" if run.last_checkpoint_at else "start (no checkpoint yet)"
        local = run.host == socket.gethostname()
        how = "SIGTERM then SIGKILL" if local else f"pg_terminate_backend({run.backend_pid})"
        reason = (
            f"run {run.pk} (pid {run.pid} on {run.host}): {what} {int((now - last).total_seconds())} s "
            f"ago, over the {threshold} s threshold; stopping it ({how})"
        )
        decisions.append(
            Decision(
                name,
                "hung",
                reason,
                run_id=run.pk,
                data={"pid": run.pid, "host": run.host, "threshold": threshold},
                apply=lambda run=run, reason=reason: _stop_hung(run, reason),
            )
        )

    # 4. a backoff: kept while fresh, cleared when stale or past its reset.
    if control and control["backoff_until"] is not None:
        until, observed = control["backoff_until"], control["backoff_observed_at"]
        stale_because = None
        if until <= now:
            stale_because = f"its reset {until.isoformat()} has passed"
        elif last_progress is not None:
            stale_because = (
                f"observed {observed.isoformat()}, before the last successful checkpoint "
                f"{last_progress.isoformat()}"
            )
        if stale_because:
            cleared_backoffs.add(name)
            decisions.append(
                Decision(
                    name,
                    "clear_backoff",
                    f"backoff until {until.isoformat()} is stale: {stale_because}",
                    data={"until": until.isoformat()},
                    apply=lambda: _clear_backoff(name, until),
                )
            )
        else:
            decisions.append(
                Decision(
                    name,
                    "keep_backoff",
                    f"backoff until {until.isoformat()} is fresh (no successful checkpoint since "
                    f"it was observed{' at ' + observed.isoformat() if observed else ''})",
                    data={"until": until.isoformat()},
                )
            )

    # 5. staged rows left by dead runs are promoted (never while a live run works on them).
    if state.staged and not still_live:
        promote = Decision(
            name,
            "promote",
            f"{state.staged} staged result(s) left by dead runs",
            data={"staged": state.staged},
        )
        promote.apply = lambda: _promote(name, promote.followups)
        decisions.append(promote)

    # 6. start the drain when a burst wants it running and nothing stops it.
    if burst_until is None or burst_until <= now:
        return decisions
    why_not = None
    if not control["enabled"]:
        why_not = "the drain is disabled"
    else:
        blocking = _backoff_in_force(name, controls, now, cleared_backoffs)
        if blocking:
            why_not = blocking
        elif still_live:
            run = still_live[0]
            why_not = f"run {run.pk} is live (pid {run.pid} on {run.host})"
    if why_not:
        decisions.append(Decision(name, "hold", f"burst active but not starting: {why_not}"))
        return decisions
    decisions.append(
        Decision(
            name,
            "start",
            f"burst active until {burst_until.isoformat()}, enabled, no backoff, no live run",
            data={"until": burst_until.isoformat()},
            apply=lambda: _start_if_backlog(name),
        )
    )
    return decisions


def _backoff_in_force(
    name: str, controls: dict[str, dict], now: datetime, cleared: set[str]
) -> str | None:
    own = controls.get(name) or {}
    key = own.get("quota_key") or ""
    for other in controls.values():
        if other["name"] in cleared or not other["backoff_until"] or other["backoff_until"] <= now:
            continue
        if other["name"] == name or (key and other["quota_key"] == key):
            source = "" if other["name"] == name else f" (observed by {other['name']})"
            return f"backoff in force until {other['backoff_until'].isoformat()}{source}"
    return None


# --- applying ----------------------------------------------------------------------------------


def _clear_burst(name: str) -> str | None:
    # The burst service records its own "burst_expired" event; ours records the decision.
    try:
        cleared = clear_expired_burst(name, actor=ACTOR)
    except Exception as exc:
        # Not swallowed: the snapshot shows notes, and the burst is off anyway (its deadline
        # has passed), so the other steps go on.
        logger.warning("supervisor: clearing the expired %s burst failed: %s", name, exc)
        raise _Noted(f"could not clear the expired burst: {type(exc).__name__}: {exc}") from exc
    if cleared is None:
        return "nothing to clear (already cleared or moved)"
    return None


class _Noted(Exception):
    """A step could not do its change; the decision becomes a visible note instead."""


def _marker(run: DrainRun, status: str, reason: str) -> Callable[[], str | None]:
    def apply() -> str | None:
        if not finish_run(run=run, status=status, stop_reason="dead", error=reason):
            return f"run {run.pk} had already ended"
        return None

    return apply


def _stop_hung(run: DrainRun, reason: str) -> str | None:
    # Marked first: the run's next checkpoint (if it ever wakes) sees it is superseded.
    marked = finish_run(run=run, status=RunStatus.HUNG, stop_reason="hung", error=reason)
    if run.host != socket.gethostname():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [run.backend_pid])
            terminated = cursor.fetchone()[0]
        return (
            None if marked else f"run {run.pk} had already ended; backend terminated={terminated}"
        )
    _signal(run.pid, signal.SIGTERM)
    if not _wait_lock_free(run, settings.DRAINS_HUNG_KILL_GRACE_SECONDS):
        _signal(run.pid, signal.SIGKILL)
        if not _wait_lock_free(run, 10.0):
            raise RuntimeError(
                f"run {run.pk} (pid {run.pid}) still holds its drain lock 10 s after SIGKILL"
            )
        return None if marked else f"run {run.pk} had already ended; killed with SIGKILL"
    return None if marked else f"run {run.pk} had already ended"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        logger.info("pid %s is already gone", pid)


def _wait_lock_free(run: DrainRun, seconds: float) -> bool:
    """Poll the drain's lock (not the clock: a frozen test clock must not hang this)."""
    for _ in range(max(1, int(seconds / _POLL_SECONDS))):
        if drain_lock_holders([run.drain])[run.drain] != run.backend_pid:
            return True
        time.sleep(_POLL_SECONDS)
    return drain_lock_holders([run.drain])[run.drain] != run.backend_pid


def _clear_backoff(name: str, until: datetime) -> str | None:
    updated = DrainControl.objects.filter(name=name, backoff_until=until).update(
        backoff_until=None,
        backoff_reason="",
        backoff_observed_at=None,
        backoff_from_run=None,
        updated_by=ACTOR,
        updated_at=timezone.now(),
    )
    return None if updated else "the backoff had changed; left as it is"


def _promote(name: str, notes: list[Decision]) -> str | None:
    report = promote_leftovers(name)
    for item_key, error in report.failed:
        message = (
            f"staged result for item {item_key} cannot be promoted (kept, not re-extracted): "
            f"{error}"
        )[:2000]
        notes.append(Decision(name, "note", message, data={"item_key": item_key, "error": error}))
    return (
        f"promoted {report.promoted}, {report.already_done} already done, "
        f"{len(report.failed)} cannot be promoted"
    )


def _start_if_backlog(name: str) -> str | None:
    drain_cls = registry.get(name)
    pending = drain_cls.pending_count()
    if not pending:
        raise _NotStarted("burst active but not starting: the backlog is empty")
    command = drain_cls.command_name()
    log_dir = settings.DRAINS_LOG_DIR
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, f"{name}-supervisor.log")
    # posix_spawn, not Popen: nothing in this process waits for (or tracks) the child; it runs
    # in its own session so the end of the supervisor (or of cron's job) never reaches it.
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, str(ROOT / "manage.py"), command, "--trigger", Trigger.SUPERVISOR],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    return f"started {command} (pid {pid}, backlog {pending}), output to {log_path}"


class _NotStarted(Exception):
    """Step 6's last precondition (a backlog) turned out false: a hold, not a failure."""


# --- the tick ----------------------------------------------------------------------------------


def supervise(*, names: list[str] | None = None, dry_run: bool = False, write=None) -> TickResult:
    """One tick over ``names`` (default: every registered drain). ``write(line)`` prints."""
    write = write or (lambda line: logger.info("%s", line))
    names = names or registry.names()
    now = timezone.now()
    states, controls = _load(names)
    progress = _last_progress(states, controls)
    last_events = {} if dry_run else _recent_supervisor_events(names)
    decisions: list[Decision] = []
    failed: list[str] = []
    cleared: set[str] = set()
    for name in names:
        state = states[name]
        if state.control is None:
            state.control = {
                "name": name,
                "enabled": True,
                "burst_until": None,
                "backoff_until": None,
                "hung_after_seconds": None,
                "quota_key": "",
            }
        try:
            planned = plan_drain(
                state,
                now=now,
                controls=controls,
                last_progress=progress.get(name),
                cleared_backoffs=cleared,
            )
            for decision in planned:
                if dry_run:
                    if decision.action == "start" and not registry.get(name).pending_count():
                        decision.action = "hold"
                        decision.reason = "burst active but not starting: the backlog is empty"
                        decision.apply = None
                    write(decision.line())
                    decisions.append(decision)
                    continue
                _apply(decision, write, last_events)
                decisions.append(decision)
                for note in decision.followups:
                    _apply(note, write, last_events, dedupe_kind="note")
                    decisions.append(note)
        except Exception as exc:
            failed.append(name)
            logger.exception("supervisor: %s failed", name)
            reason = f"the supervisor failed on this drain: {type(exc).__name__}: {exc}"[:2000]
            write(f"{name}  error  {reason}")
            try:
                record_event(drain=name, kind="supervisor_error", message=reason, actor=ACTOR)
            except Exception as db_exc:  # the database itself may be the failure
                logger.critical("supervisor: could not record the failure: %s", db_exc)
    return TickResult(decisions=decisions, failed=failed)


def _apply(decision: Decision, write, last_events, dedupe_kind: str | None = None) -> None:
    if decision.apply is not None:
        try:
            outcome = decision.apply()
        except _NotStarted as held:
            decision.action, decision.reason, decision.apply = "hold", str(held), None
        except _Noted as noted:
            decision.action, decision.reason = "note", f"{decision.reason}, but {noted}"
            dedupe_kind = "note"
        else:
            if outcome:
                decision.reason = f"{decision.reason}: {outcome}"
    decision.reason = decision.reason[:2000]
    write(decision.line())
    recent = last_events.setdefault(decision.drain, [])
    if decision.action in QUIET_ACTIONS and _already_said(recent, decision.action, decision.reason):
        return
    if (
        dedupe_kind
        and DrainEvent.objects.filter(
            drain=decision.drain, kind=dedupe_kind, message=decision.reason
        ).exists()
    ):
        return
    record_event(
        drain=decision.drain,
        kind=decision.action,
        message=decision.reason,
        actor=ACTOR,
        run=DrainRun(pk=decision.run_id) if decision.run_id else None,
        data={**decision.data, **({"run": decision.run_id} if decision.run_id else {})},
    )
    recent.insert(0, (decision.action, decision.reason))
