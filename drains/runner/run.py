"""Running a drain once, as the one runner: the drain lock, the schema gate, the skip checks
(disabled, backoff in force), the DrainRun row, leftover promotion, the work loop
(drains/runner/loop.py) and the end of the run (status from its stop reason, failure recorded
before it is raised). See drains/runner/__init__.py for the runner's rules.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any, TextIO

from django.conf import settings

from drains import registry, selectors
from drains.bursts import ensure_control, get_drain_burst
from drains.clock import format_local
from drains.dbretry import describe, ensure_session_timeouts
from drains.journal import open_journal
from drains.locks import DrainLock
from drains.models import EventKind, RunMode, StopReason, Trigger
from drains.progress import Progress
from drains.quota.backoff import set_quota_key
from drains.runner.ending import DrainRunFailed, RunEnd, RunResult
from drains.runner.loop import WorkLoop
from drains.runner.pacing import Pacing
from drains.runner.plugin import AnyDrain
from drains.runner.probe import ProbeClaim
from drains.runner.session_wait import SessionWait
from drains.runner.spending import Autopilot, QuotaCeiling
from drains.runner.state import RunState
from drains.runs import mark_dead_runs, start_run
from drains.schema import ensure_schema
from drains.staging import PromotionReport, settle_leftovers
from drains.wording import plural

logger = logging.getLogger(__name__)

ALREADY_RUNNING = "already_running"

def run_drain(
    name: str,
    *,
    trigger: str = Trigger.CRON,
    max_items: int | None = None,
    max_minutes: float | None = None,
    concurrency: int = 1,
    chunk_size: int | None = None,
    progress_stream: TextIO | None = None,
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


class _Runner:
    """One run: its state, and the parts that work on it, each given the state and the parts
    it drives (the quota ceiling and the autopilot, the call gate, the probe claim, the loop,
    the session wait, the end). This class owns the run's start, its order of skips and the
    signals."""

    def __init__(
        self,
        drain: AnyDrain,
        lock: DrainLock,
        *,
        trigger: str,
        max_items: int | None,
        max_minutes: float | None,
        concurrency: int,
        chunk_size: int,
        progress_stream: TextIO | None,
        tty: bool | None,
    ) -> None:
        self.state = RunState(
            drain=drain,
            lock=lock,
            trigger=trigger,
            max_items=max_items,
            max_minutes=max_minutes,
            concurrency=concurrency,
            chunk_size=chunk_size,
            max_attempts=drain.max_attempts or settings.DRAINS_MAX_ATTEMPTS,
            progress_stream=progress_stream,
            tty=tty,
        )
        state = self.state
        self.ceiling = QuotaCeiling(state)  # the quota's ceiling and readings
        self.pacing = Pacing(state, ceiling=self.ceiling)  # per-minute limits, overloads
        self.probe = ProbeClaim(state)
        self.loop = WorkLoop(state, pacing=self.pacing, probe=self.probe, ceiling=self.ceiling,
                             autopilot=Autopilot(state))
        self.session_wait = SessionWait(state, loop=self.loop, probe=self.probe)
        self.end = RunEnd(state, loop=self.loop, pacing=self.pacing)
        self._old_handlers: dict[int, Any] = {}

    # --- the run --------------------------------------------------------------------------
    def run(self) -> RunResult:
        state = self.state
        try:
            state.journal = open_journal()
            ensure_session_timeouts()
            control = ensure_control(name=state.name)
            if not control.enabled:
                return state.skip(
                    StopReason.DISABLED,
                    f"{state.name}: disabled (DrainControl.enabled is off); no extractor call.",
                )
            mark_dead_runs(
                drain=state.name,
                reason="its process is gone: a new runner got the drain lock it held",
                actor=state.actor,
            )
            self._promote_leftovers()
            state.quota_key = state.drain.quota_key()  # constructs the extractor; no call yet
            set_quota_key(drain=state.name, quota_key=state.quota_key)
            skipped = state.backoff_skip() or self._ceiling_skip() or self.probe.claim_or_hold()
            if skipped is not None:
                return skipped
            self._start()
            self._install_signals()
            try:
                while True:
                    self.loop.run()
                    # In a burst, a session limit is waited out, not a reason to end.
                    if not self.session_wait.wait_for_session_reset():
                        break
            finally:
                self._restore_signals()
                self.probe.release()
            return self.end.finish()
        except DrainRunFailed:
            raise  # recorded by RunEnd.finish
        except BaseException as exc:
            self.probe.release()
            self.end.fail(exc)
            run_id = state.run_row.pk if state.run_row else None
            which = f"run {run_id}" if run_id is not None else "run (before it started)"
            raise DrainRunFailed(f"{state.name} {which} failed: {describe(exc)}", run_id) from exc

    def _ceiling_skip(self) -> RunResult | None:
        """A window already at its ceiling: its backoff is recorded as its refusal's would have
        been, and the run is skipped before any call."""
        state = self.state
        limit = self.ceiling.reached_at_start()
        if limit is None:
            return None
        self.loop.limit_reached(limit)
        return state.skip(
            StopReason.BACKOFF,
            f"{state.name}: quota {state.quota_key!r}: {limit.breach.reason}; backing off until "
            f"{limit.reset_at.isoformat()}; no extractor call.",
            until=limit.reset_at.isoformat(),
            window=limit.breach.window,
        )

    def _start(self) -> None:
        """Choose the mode (a burst runs until its deadline, a normal run is capped), record the
        run row with its backlog, and set up the progress display."""
        state = self.state
        burst = get_drain_burst(state.name)
        if burst.active:
            state.mode, state.deadline = RunMode.BURST, burst.burst_until
        else:
            if state.max_items is None:
                state.max_items = settings.DRAINS_DEFAULT_MAX_ITEMS
            if state.max_minutes is None:
                state.max_minutes = settings.DRAINS_DEFAULT_MAX_MINUTES
        state.drain.sync()  # rows written without a save (bulk inserts) become items first
        backlog = state.drain.pending_count()
        state.run_row = start_run(
            drain=state.name,
            trigger=state.trigger,
            mode=state.mode,
            deadline=state.deadline,
            backlog_at_start=backlog,
            backend_pid=state.lock.backend_pid,
            concurrency=state.concurrency,
            extractor=state.drain.extractor_label(),
        )
        total = min(backlog, state.max_items) if state.max_items else backlog
        state.progress = Progress(
            drain=state.name,
            total=total,
            deadline=state.deadline,
            stream=state.progress_stream,
            tty=state.tty,
            manual=state.trigger == Trigger.MANUAL,
        )
        state.shown.start(run_id=state.row.pk, backlog=backlog)
        logger.info(
            "%s: run %s started (%s mode, %s, backlog %d%s)",
            state.name,
            state.run_row.pk,
            state.mode,
            state.trigger,
            backlog,
            f", deadline {format_local(state.deadline)}" if state.deadline else "",
        )

    def _promote_leftovers(self) -> None:
        state = self.state
        journal = state.journal
        # Paid results this host's journal still holds go to staging before any new call, the
        # staged rows are promoted, and a dead run's row is corrected from what it did.
        settled = state.db.call(
            "settling what earlier runs left",
            lambda: settle_leftovers(drain_name=state.name, journal=journal, actor=state.actor),
        )
        if settled.replayed:
            logger.info("%s: %d paid result(s) moved from the journal to staging",
                        state.name, settled.replayed)
        for line in settled.corrected:
            logger.warning("%s: %s", state.name, line)
        report: PromotionReport = settled.report
        if report.promoted or report.already_done:
            state.record_event(
                EventKind.LEFTOVERS_PROMOTED,
                f"promoted {plural(report.promoted, 'staged result')} left by an earlier run"
                + (f"; {report.already_done} were already done" if report.already_done else ""),
                {"promoted": report.promoted, "already_done": report.already_done},
            )
        for item_key, error in report.failed:
            message = (
                f"staged result for item {item_key} cannot be promoted (kept, not "
                f"re-extracted): {error}"[:2000]
            )
            if not selectors.event_exists(drain=state.name, kind=EventKind.NOTE, message=message):
                state.record_event(EventKind.NOTE, message, {"item_key": item_key, "error": error})
        # Never pay again for an item whose paid result is still waiting in staging (or, should
        # one be left, in the journal).
        state.unpromotable = report.failed_keys | (
            journal.keys(state.name) if journal is not None else set()
        )

    # --- signals --------------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.state.signalled:
            raise KeyboardInterrupt(f"{name} received twice: stopping without finishing the item")
        self.state.signalled = True
        self.state.stop(StopReason.SIGNAL)
        logger.warning(
            "%s: %s received; finishing the current item, then stopping", self.state.name, name
        )
