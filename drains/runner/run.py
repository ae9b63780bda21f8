"""Running a drain once, as the one runner: the drain lock, the schema gate, the skip checks
(disabled, backoff in force), the DrainRun row, leftover promotion, the work loop
(drains/runner/loop.py) and the end of the run (status from its stop reason, failure recorded
before it is raised). See drains/runner/__init__.py for the runner's rules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from drains import registry, selectors
from drains.backoff import backoff_in_force, set_quota_key
from drains.bursts import ensure_control, get_drain_burst
from drains.clock import format_local
from drains.events import record_event
from drains.failures import ErrorKind, describe_failure, one_line
from drains.locks import DrainLock, LockLost
from drains.models import DrainRun, EventKind, RunMode, RunStatus, StopReason, Trigger
from drains.progress import Progress, format_duration
from drains.ratelimit import RateLimited
from drains.runner.loop import WorkLoop
from drains.runner.pacing import PacingSteps
from drains.runner.plugin import Drain
from drains.runner.probe import ProbeSteps
from drains.runs import (
    PromotionReport,
    Usage,
    finish_run,
    mark_dead_runs,
    promote_leftovers,
    start_run,
)
from drains.schema_gate import ensure_schema
from drains.wording import plural

logger = logging.getLogger(__name__)

ALREADY_RUNNING = "already_running"
SKIPPED = "skipped"

# Why a run ended (DrainRun.stop_reason) and the status each reason gives.
REASON_STATUS = {
    StopReason.BACKLOG_EMPTY: RunStatus.SUCCEEDED,
    StopReason.MAX_ITEMS: RunStatus.SUCCEEDED,
    StopReason.MAX_MINUTES: RunStatus.SUCCEEDED,
    StopReason.DEADLINE: RunStatus.STOPPED,
    StopReason.BURST_OFF: RunStatus.STOPPED,
    StopReason.DISABLED: RunStatus.STOPPED,
    StopReason.BACKOFF: RunStatus.STOPPED,  # another drain on the same quota hit the limit
    StopReason.SIGNAL: RunStatus.STOPPED,
    StopReason.SUPERSEDED: RunStatus.STOPPED,  # the supervisor marked this run hung/crashed
    StopReason.RATE_LIMITED: RunStatus.RATE_LIMITED,
    StopReason.LOCK_LOST: RunStatus.FAILED,
    StopReason.ERROR: RunStatus.FAILED,
}


class DrainRunFailed(RuntimeError):
    """A run ended ``failed``; the DrainRun row holds the error. Exit non-zero."""

    def __init__(self, message: str, run_id: int | None):
        super().__init__(message)
        self.run_id = run_id


@dataclass
class RunResult:
    drain: str
    status: str  # a RunStatus value, or ALREADY_RUNNING / SKIPPED
    reason: str
    message: str
    run_id: int | None = None
    done: int = 0
    failed: int = 0
    elapsed: float = 0.0


def run_drain(
    name: str,
    *,
    trigger: str = Trigger.CRON,
    max_items: int | None = None,
    max_minutes: float | None = None,
    concurrency: int = 1,
    chunk_size: int | None = None,
    progress_stream=None,
    tty: bool | None = None,
) -> RunResult:
    """Run the drain ``name`` once, as the one runner. See the module docstring.

    ``max_items``/``max_minutes`` cap a normal run (defaults DRAINS_DEFAULT_MAX_ITEMS /
    DRAINS_DEFAULT_MAX_MINUTES) and, when given, a burst run too. Raises ``DrainRunFailed``
    after recording a failed run; returns a ``RunResult`` otherwise.
    """
    drain_cls = registry.get(name)
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    ensure_schema()
    lock = DrainLock(name)
    if not lock.acquire():
        holder = lock.holder()
        who = (
            f"backend pid {holder.backend_pid}, {holder.application_name}"
            if holder
            else "another process"
        )
        message = f"{name}: already running ({who}); this copy exits."
        logger.info(message)
        return RunResult(drain=name, status=ALREADY_RUNNING, reason=StopReason.LOCKED, message=message)
    try:
        runner = _Runner(
            drain_cls(),
            lock,
            trigger=trigger,
            max_items=max_items,
            max_minutes=max_minutes,
            concurrency=concurrency,
            chunk_size=chunk_size or settings.DRAINS_CHUNK_SIZE,
            progress_stream=progress_stream,
            tty=tty,
        )
        return runner.run()
    finally:
        lock.release()


class _Runner(ProbeSteps, PacingSteps, WorkLoop):
    """One run's state. Counters and checkpoints live in the main thread; workers only process."""

    def __init__(
        self,
        drain: Drain,
        lock: DrainLock,
        *,
        trigger: str,
        max_items: int | None,
        max_minutes: float | None,
        concurrency: int,
        chunk_size: int,
        progress_stream,
        tty: bool | None,
    ):
        self.drain = drain
        self.name = drain.name
        self.lock = lock
        self.trigger = trigger
        self.actor = f"runtime:{trigger}"
        self.max_items = max_items
        self.max_minutes = max_minutes
        self.concurrency = concurrency
        self.chunk_size = chunk_size
        self.progress_stream = progress_stream
        self.tty = tty
        self.max_attempts = settings.DRAINS_MAX_ATTEMPTS
        self.started = time.monotonic()
        self.run_row: DrainRun | None = None
        self.mode = RunMode.NORMAL
        self.deadline: datetime | None = None
        self.quota_key = ""
        self.unpromotable: set[str] = set()
        # loop state
        self.buffer: deque = deque()
        self.cursor: Any = None
        self.exhausted = False
        self.dispatched = 0
        self.done = 0
        self.failed = 0
        self.chunks = 0
        self.chunk_done = 0
        self.chunk_failed = 0
        self.chunk_usage = Usage()
        self.chunk_busy = 0.0  # seconds workers spent on this chunk's items
        self.last_checkpoint = self.started
        self.stop_reason: str | None = None
        self.halted = False  # a hard stop: no further call starts, even for queued items
        self.error: BaseException | None = None
        self.last_item_error: tuple[str, BaseException] | None = None  # (item key, its error)
        self.rate_limit: RateLimited | None = None
        # A probe after a reset: the first call runs alone (drains/runner/loop.py)
        self.probing = False
        self.probe_claim: str | None = None
        self._init_pacing()  # per-minute limits and overloads (drains/runner/pacing.py)
        self._stop_lock = threading.Lock()
        self._signalled = False
        self._old_handlers: dict[int, Any] = {}
        self.progress: Progress | None = None

    # --- the run --------------------------------------------------------------------------
    def run(self) -> RunResult:
        try:
            control = ensure_control(name=self.name)
            if not control.enabled:
                return self._skip(
                    StopReason.DISABLED,
                    f"{self.name}: disabled (DrainControl.enabled is off); no extractor call.",
                )
            mark_dead_runs(
                drain=self.name,
                reason="its process is gone: a new runner got the drain lock it held",
                actor=self.actor,
            )
            self._promote_leftovers()
            self.quota_key = self.drain.quota_key()  # constructs the extractor; no call yet
            set_quota_key(drain=self.name, quota_key=self.quota_key)
            skipped = self._backoff_skip() or self._probe_or_hold()
            if skipped is not None:
                return skipped
            self._start()
            self._install_signals()
            try:
                if self.concurrency == 1:
                    self._loop_inline()
                else:
                    self._loop_threads()
            finally:
                self._restore_signals()
                self._release_probe()
            return self._finish()
        except DrainRunFailed:
            raise  # recorded by _finish
        except BaseException as exc:
            self._release_probe()
            self._fail(exc)
            raise DrainRunFailed(
                f"{self.name} run {self.run_row.pk if self.run_row else '?'} failed: "
                f"{type(exc).__name__}: {exc}",
                self.run_row.pk if self.run_row else None,
            ) from exc

    def _backoff_skip(self) -> RunResult | None:
        """No call while a backoff on the quota is in force: the run is skipped."""
        backoff = backoff_in_force(drain=self.name, quota_key=self.quota_key)
        if backoff is None:
            return None
        source = "" if backoff.drain == self.name else f" (observed by {backoff.drain})"
        return self._skip(
            StopReason.BACKOFF,
            f"{self.name}: quota {self.quota_key!r} backs off until "
            f"{format_local(backoff.until)}{source}; no extractor call.",
            until=backoff.until.isoformat(),
        )

    def _start(self) -> None:
        """Choose the mode (a burst runs until its deadline, a normal run is capped), record the
        run row with its backlog, and set up the progress display."""
        burst = get_drain_burst(self.name)
        if burst.active:
            self.mode, self.deadline = RunMode.BURST, burst.burst_until
        else:
            if self.max_items is None:
                self.max_items = settings.DRAINS_DEFAULT_MAX_ITEMS
            if self.max_minutes is None:
                self.max_minutes = settings.DRAINS_DEFAULT_MAX_MINUTES
        backlog = self.drain.pending_count()
        self.run_row = start_run(
            drain=self.name,
            trigger=self.trigger,
            mode=self.mode,
            deadline=self.deadline,
            backlog_at_start=backlog,
            backend_pid=self.lock.backend_pid,
            concurrency=self.concurrency,
            extractor=self.drain.extractor_label(),
        )
        total = min(backlog, self.max_items) if self.max_items else backlog
        self.progress = Progress(
            drain=self.name,
            total=total,
            deadline=self.deadline,
            stream=self.progress_stream,
            tty=self.tty,
            manual=self.trigger == Trigger.MANUAL,
        )
        self.progress.start(run_id=self.run_row.pk, backlog=backlog)
        logger.info(
            "%s: run %s started (%s mode, %s, backlog %d%s)",
            self.name,
            self.run_row.pk,
            self.mode,
            self.trigger,
            backlog,
            f", deadline {format_local(self.deadline)}" if self.deadline else "",
        )

    def _skip(self, reason: str, message: str, **data) -> RunResult:
        """Exit without a run and without any extractor call; say why once in the timeline."""
        logger.info(message)
        # Once per episode: cron retries every 15 minutes and the timeline must stay readable.
        last = selectors.latest_event(drain=self.name, kind=EventKind.SKIPPED)
        last_run = selectors.latest_run_start(drain=self.name)
        if last is None or last["message"] != message or (last_run and last["at"] < last_run):
            record_event(
                drain=self.name,
                kind=EventKind.SKIPPED,
                message=message,
                actor=self.actor,
                data={"reason": reason, **data},
            )
        return RunResult(drain=self.name, status=SKIPPED, reason=reason, message=message)

    def _promote_leftovers(self) -> None:
        report: PromotionReport = promote_leftovers(drain_name=self.name)
        if report.promoted or report.already_done:
            record_event(
                drain=self.name,
                kind=EventKind.LEFTOVERS_PROMOTED,
                message=f"promoted {plural(report.promoted, 'staged result')} left by an earlier run"
                + (f"; {report.already_done} were already done" if report.already_done else ""),
                actor=self.actor,
                data={"promoted": report.promoted, "already_done": report.already_done},
            )
        for item_key, error in report.failed:
            message = (
                f"staged result for item {item_key} cannot be promoted (kept, not "
                f"re-extracted): {error}"[:2000]
            )
            if not selectors.event_exists(drain=self.name, kind=EventKind.NOTE, message=message):
                record_event(
                    drain=self.name,
                    kind=EventKind.NOTE,
                    message=message,
                    actor=self.actor,
                    data={"item_key": item_key, "error": error},
                )
        # Never pay again for an item whose paid result is still waiting in staging.
        self.unpromotable = report.failed_keys

    # --- the end --------------------------------------------------------------------------
    def _finish(self) -> RunResult:
        self._checkpoint(final=True)
        reason = self.stop_reason or StopReason.BACKLOG_EMPTY
        if self.error is not None:
            reason = StopReason.LOCK_LOST if isinstance(self.error, LockLost) else StopReason.ERROR
        elif self.rate_limit is not None:
            reason = StopReason.RATE_LIMITED
        status = REASON_STATUS[reason]
        failure: dict[str, str] = {}
        if self.error is not None:
            failure = describe_failure(self.error).fields()
        elif self.rate_limit is not None:
            failure = {"error": one_line(
                f"rate limited until {format_local(self.rate_limit.reset_at)}: "
                f"{self.rate_limit.message}")}
        elif self.failed and not self.done and status == RunStatus.SUCCEEDED:
            # Not one item went through: the run did not succeed at anything.
            status = RunStatus.FAILED
            failure = self._every_item_failed()
        if not finish_run(run=self.run_row, status=status, stop_reason=reason, **failure):
            # The supervisor already ended this run (hung/crashed): report what the row says.
            self.run_row.refresh_from_db(fields=["status", "stop_reason"])
            status = self.run_row.status
        self.progress.close(done=self.done, failed=self.failed)
        elapsed = self._elapsed()
        message = (
            f"{self.name}: run {self.run_row.pk} {status} ({reason}): {self.done} done, "
            f"{self.failed} failed in {format_duration(elapsed)}{self._pacing_summary()}"
            f"{self._outcome_summary()}"
        )
        if status == RunStatus.FAILED:
            raise DrainRunFailed(f"{message}. {self.run_row.error}", self.run_row.pk)
        logger.debug(message)
        return RunResult(
            drain=self.name,
            status=status,
            reason=reason,
            message=message,
            run_id=self.run_row.pk,
            done=self.done,
            failed=self.failed,
            elapsed=elapsed,
        )

    def _outcome_summary(self) -> str:
        """What the run produced and what is left: ``; 12 halachot found, 5 left in the backlog``."""
        parts = []
        try:
            produced = self.drain.produced_between(self.run_row.started_at, timezone.now())
            if produced is not None:
                singular, plural_ = self.drain.product_names
                parts.append(f"{produced} {singular if produced == 1 else plural_} found")
            parts.append(f"{self.drain.pending_count()} left in the backlog")
        except DatabaseError as exc:  # the run is recorded; only the summary is missing
            logger.warning("%s: could not count what the run produced: %s", self.name, exc)
            return ""
        return "; " + ", ".join(parts)

    def _every_item_failed(self) -> dict[str, str]:
        """The failure of a run whose every item failed: the count and the last item's error."""
        items = f"{self.failed} item{'s' if self.failed != 1 else ''}"
        if self.last_item_error is None:
            return {"error": f"every item failed ({items})", "error_kind": ErrorKind.EXTRACTOR}
        key, exc = self.last_item_error
        described = describe_failure(exc)
        kind = described.error_kind
        return {
            "error": one_line(f"every item failed ({items}); the last, {key}: {exc}"),
            "error_kind": ErrorKind.EXTRACTOR if kind == ErrorKind.INTERNAL else kind,
            "error_traceback": described.error_traceback,
        }

    def _fail(self, exc: BaseException) -> None:
        """Record the failure on the run (creating one if it had not started yet)."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        status = RunStatus.STOPPED if interrupted else RunStatus.FAILED
        reason = StopReason.SIGNAL if interrupted else StopReason.ERROR
        logger.error("%s: run failed: %s: %s", self.name, type(exc).__name__, exc)
        try:
            if self.run_row is None:
                self.run_row = start_run(
                    drain=self.name,
                    trigger=self.trigger,
                    mode=self.mode,
                    deadline=self.deadline,
                    backend_pid=self.lock.backend_pid,
                )
            else:
                try:
                    self._checkpoint(final=True)
                except DatabaseError as db_exc:
                    logger.error("%s: final checkpoint failed: %s", self.name, db_exc)
                    connections["default"].close()
            finish_run(run=self.run_row, status=status, stop_reason=reason,
                       **describe_failure(exc).fields())
        except DatabaseError as db_exc:
            # The database itself is the problem: the failure goes to the log and the exit
            # status; the supervisor sees the run's lock gone and marks it crashed.
            logger.critical(
                "%s: could not record the failure in the database (%s); original error: %s",
                self.name,
                db_exc,
                exc,
            )
