"""The end of a run: its status from its stop reason, its last checkpoint and line, and a
failure recorded on the run before it is raised (``DrainRunFailed``). ``RunEnd`` takes the run's
``RunState`` like the runner's other parts (drains/runner/run.py composes them).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connections
from django.utils import timezone

from drains.clock import format_local
from drains.dbretry import DatabaseUnavailable, describe
from drains.failures import ErrorKind, describe_failure, one_line
from drains.journal import JournalError
from drains.locks import LockLost
from drains.models import RunStatus, StopReason
from drains.progress import format_duration
from drains.quota.kinds import LimitKind, limit_verb
from drains.runner.loop import WorkLoop
from drains.runner.pacing import Pacing
from drains.runner.state import SKIPPED, RunResult, RunState

__all__ = ["SKIPPED", "DrainRunFailed", "RunEnd", "RunResult"]
from drains.runs import finish_run, start_run

logger = logging.getLogger(__name__)

# Why a run ended (DrainRun.stop_reason) and the status each reason gives.
REASON_STATUS: dict[str, str] = {
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
    StopReason.BLOCKED: RunStatus.STOPPED,  # a host fault or the breaker: the drain is blocked
    StopReason.LOCK_LOST: RunStatus.FAILED,
    StopReason.ERROR: RunStatus.FAILED,
}


class DrainRunFailed(RuntimeError):
    """A run ended ``failed``; the DrainRun row holds the error. Exit non-zero."""

    def __init__(self, message: str, run_id: int | None):
        super().__init__(message)
        self.run_id = run_id


class RunEnd:
    """How a run ends: ``finish`` after the loop, ``fail`` on any exception."""

    def __init__(self, state: RunState, *, loop: WorkLoop, pacing: Pacing) -> None:
        self.state = state
        self.loop = loop
        self.pacing = pacing

    def finish(self) -> RunResult:
        state = self.state
        self.loop.checkpoint(final=True)
        reason = state.stop_reason or StopReason.BACKLOG_EMPTY
        if state.error is not None:
            reason = StopReason.LOCK_LOST if isinstance(state.error, LockLost) else StopReason.ERROR
        elif state.rate_limit is not None:
            reason = (StopReason.BLOCKED if state.rate_limit.kind.kind == LimitKind.HOST_FAULT
                      else StopReason.RATE_LIMITED)
        status = REASON_STATUS[reason]
        failure: dict[str, str] = {}
        if state.error is not None:
            failure = describe_failure(state.error).fields()
        elif state.rate_limit is not None:
            failure = {"error": one_line(
                f"{limit_verb(state.rate_limit.kind.kind)} until "
                f"{format_local(state.rate_limit.reset_at)}: {state.rate_limit.message}")}
        elif state.failed and not state.done and status == RunStatus.SUCCEEDED:
            # Not one item went through: the run did not succeed at anything.
            status = RunStatus.FAILED
            failure = self._every_item_failed()
        if not state.db.call(
            f"recording the end of run {state.row.pk}",
            lambda: finish_run(run=state.row, status=status, stop_reason=reason, **failure),
        ):
            # The supervisor already ended this run (hung/crashed): report what the row says.
            state.row.refresh_from_db(fields=["status", "stop_reason"])
            status = state.row.status
        state.shown.close(done=state.done, failed=state.failed)
        elapsed = state.elapsed()
        message = (
            f"{state.name}: run {state.row.pk} {status} ({reason}): {state.done} done, "
            f"{state.failed} failed in {format_duration(elapsed)}{self.pacing.summary()}"
            f"{self._outcome_summary()}"
        )
        if status == RunStatus.FAILED:
            raise DrainRunFailed(f"{message}. {state.row.error}", state.row.pk)
        logger.debug(message)
        return RunResult(
            drain=state.name,
            status=status,
            reason=reason,
            message=message,
            run_id=state.row.pk,
            done=state.done,
            failed=state.failed,
            elapsed=elapsed,
        )

    def _outcome_summary(self) -> str:
        """What the run produced, in its drain's words (``Drain.product_names``), and what is
        left: ``; 12 <products> found, 5 left in the backlog``."""
        parts = []
        try:
            produced = self.state.drain.produced_between(self.state.row.started_at, timezone.now())
            if produced is not None:
                singular, plural_ = self.state.drain.product_names
                parts.append(f"{produced} {singular if produced == 1 else plural_} found")
            parts.append(f"{self.state.drain.pending_count()} left in the backlog")
        except DatabaseError as exc:  # the run is recorded; only the summary is missing
            logger.warning("%s: could not count what the run produced: %s", self.state.name, exc)
            return ""
        return "; " + ", ".join(parts)

    def _every_item_failed(self) -> dict[str, str]:
        """The failure of a run whose every item failed: the count and the last item's error."""
        items = f"{self.state.failed} item{'s' if self.state.failed != 1 else ''}"
        if self.state.last_item_error is None:
            return {"error": f"every item failed ({items})", "error_kind": ErrorKind.EXTRACTOR}
        key, exc = self.state.last_item_error
        described = describe_failure(exc)
        kind = described.error_kind
        return {
            "error": one_line(f"every item failed ({items}); the last, {key}: {exc}"),
            "error_kind": ErrorKind.EXTRACTOR if kind == ErrorKind.INTERNAL else kind,
            "error_traceback": described.error_traceback,
        }

    def fail(self, exc: BaseException) -> None:
        """Record the failure on the run (creating one if it had not started yet)."""
        state = self.state
        interrupted = isinstance(exc, KeyboardInterrupt)
        status = RunStatus.STOPPED if interrupted else RunStatus.FAILED
        reason = StopReason.SIGNAL if interrupted else StopReason.ERROR
        logger.error("%s: run failed: %s", state.name, describe(exc))
        try:
            if state.run_row is None:
                state.run_row = state.db.call("recording the failed run", lambda: start_run(
                    drain=state.name,
                    trigger=state.trigger,
                    mode=state.mode,
                    deadline=state.deadline,
                    backend_pid=state.lock.backend_pid,
                ))
            else:
                try:
                    # The final counts, the partial chunk included (retried like any checkpoint).
                    self.loop.checkpoint(final=True)
                except (DatabaseError, DatabaseUnavailable, JournalError) as db_exc:
                    # Its done items keep their journal entries: their replay counts them.
                    logger.error("%s: final checkpoint failed: %s", state.name, describe(db_exc))
                    connections["default"].close()
            row = state.row
            state.db.call(
                f"recording the end of run {row.pk}",
                lambda: finish_run(run=row, status=status, stop_reason=reason,
                                   **describe_failure(exc).fields()),
            )
        except (DatabaseError, DatabaseUnavailable) as db_exc:
            # The database itself is the problem: the failure goes to the log and the exit
            # status; the next runner (or the supervisor) marks the run crashed, and the replay
            # of this host's journal counts what it was paid for.
            logger.critical(
                "%s: could not record the failure in the database (%s)", state.name,
                describe(db_exc),
            )
