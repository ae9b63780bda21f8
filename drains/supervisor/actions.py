"""Carrying out one supervisor decision, each through the service that owns the change:
bursts.py clears a burst, runs.py ends a run and promotes staged rows, backoff.py clears a
backoff. Stopping a hung run signals its process (on this host) or terminates its backend; a
start is a detached ``manage.py <drain command> --trigger supervisor`` the supervisor never
waits for. Nothing here calls an extractor.

Each action returns what to add to the decision's reason (or None), or raises ``Noted`` /
``NotStarted`` to turn the decision into a note / a hold.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection

from drains import registry
from drains.bursts import clear_expired_burst
from drains.journal import open_journal
from drains.locks import drain_lock_holders
from drains.models import DrainRun, EventKind, RunStatus, StopReason, Trigger
from drains.quota.actions import end_outlasted_bursts
from drains.quota.backoff import clear_backoff
from drains.quota.kinds import Kind
from drains.runs import finish_run
from drains.staging import settle_leftovers
from drains.supervisor.decision import ACTOR, Decision, Noted, NotStarted
from drains.trigger import trigger_args

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.05


def clear_burst(name: str) -> str | None:
    # The burst service records its own "burst_expired" event; ours records the decision.
    try:
        cleared = clear_expired_burst(name=name, actor=ACTOR)
    except Exception as exc:
        # Not swallowed: the snapshot shows notes, and the burst is off anyway (its deadline
        # has passed), so the other steps go on.
        logger.warning("supervisor: clearing the expired %s burst failed: %s", name, exc)
        raise Noted(f"could not clear the expired burst: {type(exc).__name__}: {exc}") from exc
    if cleared is None:
        return "nothing to clear (already cleared or moved)"
    return None


def end_outlasted_burst(name: str, kind: Kind, reset_at: datetime) -> str | None:
    # drains/quota/actions.py ends it and records the "burst_ended" note; ours records the decision.
    if not end_outlasted_bursts(drains=[name], kind=kind, reset_at=reset_at, actor=ACTOR):
        return "nothing to end (the burst changed meanwhile)"
    return None


def marker(run: DrainRun, status: str, reason: str) -> Callable[[], str | None]:
    def apply() -> str | None:
        if not finish_run(run=run, status=status, stop_reason=StopReason.DEAD, error=reason):
            return f"run {run.pk} had already ended"
        return None

    return apply


def stop_hung(run: DrainRun, reason: str) -> str | None:
    # Marked first: the run's next checkpoint (if it ever wakes) sees it is superseded.
    marked = finish_run(run=run, status=RunStatus.HUNG, stop_reason=StopReason.HUNG, error=reason)
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


def clear_backoff_of(name: str, until: datetime) -> str | None:
    cleared = clear_backoff(drain=name, until=until, actor=ACTOR)
    return None if cleared else "the backoff had changed; left as it is"


def promote(name: str, notes: list[Decision], dead_runs: Sequence[int] = ()) -> str | None:
    """Step 5: this host's journal replayed, the staged rows promoted, and the rows of the runs
    this tick found dead corrected from what they did (drains/staging.py ``settle_leftovers``)."""
    settled = settle_leftovers(drain_name=name, journal=open_journal(), actor=ACTOR,
                               run_ids=list(dead_runs))
    replayed, report = settled.replayed, settled.report
    for item_key, error in report.failed:
        message = (
            f"staged result for item {item_key} cannot be promoted (kept, not re-extracted): "
            f"{error}"
        )[:2000]
        notes.append(
            Decision(name, EventKind.NOTE, message, data={"item_key": item_key, "error": error})
        )
    return (
        (f"{replayed} from this host's journal; " if replayed else "")
        + f"promoted {report.promoted}, {report.already_done} already done, "
        f"{len(report.failed)} cannot be promoted"
        + "".join(f"; {line}" for line in settled.corrected)  # each has its run_corrected event
    )


def correct(name: str, run_id: int) -> str | None:
    """A run found dead with nothing staged: its row corrected from what it did (this host's
    journal replayed first: its failed calls)."""
    settled = settle_leftovers(drain_name=name, journal=open_journal(), actor=ACTOR,
                               run_ids=[run_id])
    return "; ".join(settled.corrected) or None


def start_if_backlog(name: str) -> str | None:
    drain_cls = registry.get(name)
    drain_cls.sync()  # rows written without a save count too
    pending = drain_cls.pending_count()
    if not pending:
        raise NotStarted("burst active but not starting: the backlog is empty")
    pid, log_path = spawn_drain(name, trigger=Trigger.SUPERVISOR)
    return (f"started {' '.join(drain_cls.command_line())} (pid {pid}, backlog {pending}), "
            f"output to {log_path}")


def spawn_drain(name: str, *, trigger: Trigger) -> tuple[int, str]:
    """Start the drain's command (``Drain.command_line``) with ``--trigger <trigger>`` detached
    (its own session, output appended to ``DRAINS_LOG_DIR/<name>-<trigger>.log``); returns (pid,
    log path). The one start path: the supervisor's burst start and an operator's "run now"
    (drains/operator.py)."""
    command = registry.get(name).command_line()
    log_dir = settings.DRAINS_LOG_DIR
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, f"{name}-{trigger}.log")
    manage_py = settings.BASE_DIR / "manage.py"
    # posix_spawn, not Popen: nothing in this process waits for (or tracks) the child; it runs
    # in its own session so the end of the supervisor (or of cron's job) never reaches it.
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, str(manage_py), *command, *trigger_args(trigger)],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    return pid, log_path
