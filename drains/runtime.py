"""The drain runtime: the work loop around a paid extractor, and the ``Drain`` base class.

A drain class (registered in ``drains.registry``) says what its work is: which items are
pending, how to process one (call the extractor, return a JSON-able payload), how to promote a
payload into domain rows, how to mark an item failed. The runtime owns everything else
(DESIGN.md "Runtime"):

- one runner per drain (``drains.locks``; a second copy returns ``already_running`` at once),
  the schema gate at start, a DrainRun row, a committed checkpoint per chunk of items (or per
  minute of slow items, whichever comes first: the liveness signal);
- every response staged in its own transaction the moment it arrives, promoted in another, and
  leftover staged rows promoted before any new call (``drains.runs``);
- the stop conditions: backlog empty, the normal-mode batch cap, the burst deadline (no call
  starts after it), a rate limit (backoff on every drain of the quota), SIGTERM/SIGINT (finish
  the item, checkpoint, stop), the drain disabled or a backoff in force (no call at all), and any
  exception (run ``failed`` with the error recorded, then ``DrainRunFailed``).

It never reads the environment, never sleeps to wait out a limit (the supervisor restarts the
drain after the reset), and never calls an extractor while a backoff is in force or after the
deadline.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections, reset_queries
from django.db.models import Q
from django.utils import timezone

from drains import registry
from drains.bursts import ensure_control, get_drain_burst
from drains.events import record_event
from drains.locks import DrainLock, LockLost
from drains.models import DrainControl, DrainEvent, DrainRun, RunMode, RunStatus, Trigger
from drains.progress import Progress, format_duration
from drains.ratelimit import RateLimited
from drains.runs import (
    PromotionReport,
    Usage,
    backoff_in_force,
    error_text,
    finish_run,
    mark_dead_runs,
    promote_leftovers,
    promote_staged,
    record_backoff,
    record_checkpoint,
    set_quota_key,
    stage_result,
    start_run,
)
from drains.schema_gate import ensure_schema

logger = logging.getLogger(__name__)

ALREADY_RUNNING = "already_running"
# A checkpoint also comes at least this often while items complete, so that slow items (minutes
# each) never make a healthy run look hung for a whole chunk.
CHECKPOINT_EVERY_SECONDS = 60.0
SKIPPED = "skipped"

# Why a run ended (DrainRun.stop_reason) and the status each reason gives.
REASON_STATUS = {
    "backlog_empty": RunStatus.SUCCEEDED,
    "max_items": RunStatus.SUCCEEDED,
    "max_minutes": RunStatus.SUCCEEDED,
    "deadline": RunStatus.STOPPED,
    "burst_off": RunStatus.STOPPED,
    "disabled": RunStatus.STOPPED,
    "backoff": RunStatus.STOPPED,  # another drain on the same quota hit the limit
    "signal": RunStatus.STOPPED,
    "superseded": RunStatus.STOPPED,  # the supervisor marked this run hung/crashed
    "rate_limited": RunStatus.RATE_LIMITED,
    "lock_lost": RunStatus.FAILED,
    "error": RunStatus.FAILED,
}


class ItemFailed(Exception):
    """Processing one item failed for a reason other than a rate limit; the run goes on.

    A drain's ``process`` raises it (wrapping its extractor's error). ``raw`` and ``usage`` are
    set when the call was paid for but its reply was unusable: the runtime records both.
    """

    def __init__(self, message: str, *, raw: Any = None, usage: Mapping | None = None):
        super().__init__(message)
        self.message = message
        self.raw = raw
        self.usage = usage or {}


class DrainRunFailed(RuntimeError):
    """A run ended ``failed``; the DrainRun row holds the error. Exit non-zero."""

    def __init__(self, message: str, run_id: int | None):
        super().__init__(message)
        self.run_id = run_id


@dataclass
class Processed:
    """What ``Drain.process`` returns: a JSON-able payload to stage, and the call's usage."""

    payload: Any
    usage: Mapping | None = None


class Drain:
    """Base class of a drain: subclass, set ``name``, fill in the five hooks, register it.

    ``pending_queryset`` (items to do, in primary-key order), ``make_extractor``, ``process``
    (one extractor call → ``Processed``; raise ``ItemFailed`` for an item-level failure, let
    ``RateLimited`` through), ``promote`` (payload → domain rows, inside the caller's
    transaction; must be idempotent and must not need an extractor) and ``mark_failed``. The
    default item key is the primary key as text; override ``select_pending``/``item_key``/
    ``item_cursor`` for another order.
    """

    name: ClassVar[str] = ""
    command: ClassVar[str] = ""  # the management command that runs it; default drain_<name>

    def __init__(self):
        self._extractor = None

    @classmethod
    def command_name(cls) -> str:
        return cls.command or f"drain_{cls.name}"

    # --- the backlog ---------------------------------------------------------------------
    @classmethod
    def pending_queryset(cls):
        raise NotImplementedError(f"{cls.__name__}.pending_queryset()")

    @classmethod
    def pending_count(cls) -> int:
        return cls.pending_queryset().count()

    @classmethod
    def backlog_counts(cls) -> dict[str, int]:
        return {"pending": cls.pending_count()}

    def select_pending(self, *, after: Any, limit: int) -> list:
        """The next ``limit`` pending items after the cursor ``after`` (None: from the start)."""
        items = self.pending_queryset()
        if after is not None:
            items = items.filter(pk__gt=after)
        return list(items.order_by("pk")[:limit])

    def item_key(self, item) -> str:
        return str(item.pk)

    def item_cursor(self, item) -> Any:
        return item.pk

    # --- the paid part ---------------------------------------------------------------------
    def make_extractor(self):
        raise NotImplementedError(f"{type(self).__name__}.make_extractor()")

    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = self.make_extractor()
        return self._extractor

    def quota_key(self) -> str:
        """The quota the extractor draws on: a rate limit backs off every drain sharing it."""
        quota_key = getattr(self.extractor, "quota_key", None)
        return str(quota_key() if callable(quota_key) else self.extractor.__class__.__name__)

    def process(self, item) -> Processed:
        raise NotImplementedError(f"{type(self).__name__}.process()")

    # --- persistence (classmethods: no extractor needed) ----------------------------------
    @classmethod
    def promote(cls, item_key: str, payload: Any) -> bool:
        """Write ``payload`` as domain rows; False when the item needs nothing (already done)."""
        raise NotImplementedError(f"{cls.__name__}.promote()")

    @classmethod
    def mark_failed(cls, item_key: str, error: str, *, max_attempts: int) -> None:
        """Count a failed attempt; after ``max_attempts`` the item is failed for good."""
        raise NotImplementedError(f"{cls.__name__}.mark_failed()")


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


@dataclass
class _Outcome:
    kind: str  # done | failed | rate_limited | skipped | error
    key: str
    usage: Mapping | None = None
    error: BaseException | None = None


_SENTINEL = object()


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
        return RunResult(drain=name, status=ALREADY_RUNNING, reason="locked", message=message)
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
        self.last_checkpoint = self.started
        self.stop_reason: str | None = None
        self.halted = False  # a hard stop: no further call starts, even for queued items
        self.error: BaseException | None = None
        self.rate_limit: RateLimited | None = None
        self._stop_lock = threading.Lock()
        self._signalled = False
        self._old_handlers: dict[int, Any] = {}
        self.progress: Progress | None = None

    # --- the run --------------------------------------------------------------------------
    def run(self) -> RunResult:
        try:
            control = ensure_control(self.name)
            if not control.enabled:
                return self._skip(
                    "disabled",
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
            backoff = backoff_in_force(self.name, quota_key=self.quota_key)
            if backoff is not None:
                source = "" if backoff.drain == self.name else f" (observed by {backoff.drain})"
                return self._skip(
                    "backoff",
                    f"{self.name}: quota {self.quota_key!r} backs off until "
                    f"{backoff.until.isoformat()}{source}; no extractor call.",
                    until=backoff.until.isoformat(),
                )
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
            )
            total = min(backlog, self.max_items) if self.max_items else backlog
            self.progress = Progress(
                drain=self.name,
                total=total,
                deadline=self.deadline,
                stream=self.progress_stream,
                tty=self.tty,
            )
            logger.info(
                "%s: run %s started (%s mode, %s, backlog %d%s)",
                self.name,
                self.run_row.pk,
                self.mode,
                self.trigger,
                backlog,
                f", deadline {self.deadline.isoformat()}" if self.deadline else "",
            )
            self._install_signals()
            try:
                if self.concurrency == 1:
                    self._loop_inline()
                else:
                    self._loop_threads()
            finally:
                self._restore_signals()
            return self._finish()
        except DrainRunFailed:
            raise  # recorded by _finish
        except BaseException as exc:
            self._fail(exc)
            raise DrainRunFailed(
                f"{self.name} run {self.run_row.pk if self.run_row else '?'} failed: "
                f"{type(exc).__name__}: {exc}",
                self.run_row.pk if self.run_row else None,
            ) from exc

    def _skip(self, reason: str, message: str, **data) -> RunResult:
        """Exit without a run and without any extractor call; say why once in the timeline."""
        logger.info(message)
        # Once per episode: cron retries every 15 minutes and the timeline must stay readable.
        last = (
            DrainEvent.objects.filter(drain=self.name, kind="skipped")
            .order_by("-at", "-id")
            .values("message", "at")
            .first()
        )
        last_run = (
            DrainRun.objects.filter(drain=self.name)
            .order_by("-started_at")
            .values_list("started_at", flat=True)
            .first()
        )
        if last is None or last["message"] != message or (last_run and last["at"] < last_run):
            record_event(
                drain=self.name,
                kind="skipped",
                message=message,
                actor=self.actor,
                data={"reason": reason, **data},
            )
        return RunResult(drain=self.name, status=SKIPPED, reason=reason, message=message)

    def _promote_leftovers(self) -> None:
        report: PromotionReport = promote_leftovers(self.name)
        if report.promoted or report.already_done:
            record_event(
                drain=self.name,
                kind="leftovers_promoted",
                message=f"promoted {report.promoted} staged result(s) left by an earlier run"
                + (f"; {report.already_done} were already done" if report.already_done else ""),
                actor=self.actor,
                data={"promoted": report.promoted, "already_done": report.already_done},
            )
        for item_key, error in report.failed:
            message = (
                f"staged result for item {item_key} cannot be promoted (kept, not "
                f"re-extracted): {error}"[:2000]
            )
            if not DrainEvent.objects.filter(
                drain=self.name, kind="note", message=message
            ).exists():
                record_event(
                    drain=self.name,
                    kind="note",
                    message=message,
                    actor=self.actor,
                    data={"item_key": item_key, "error": error},
                )
        # Never pay again for an item whose paid result is still waiting in staging.
        self.unpromotable = report.failed_keys

    # --- the loop -------------------------------------------------------------------------
    def _loop_inline(self) -> None:
        pending: deque = deque()
        self._pump(
            submit=pending.append,
            next_outcome=lambda: self._work(pending.popleft()),
            capacity=1,
        )

    def _loop_threads(self) -> None:
        work_q: queue.Queue = queue.Queue()
        result_q: queue.Queue = queue.Queue()
        workers = [
            threading.Thread(
                target=self._worker,
                args=(work_q, result_q),
                name=f"drain-{self.name}-{index}",
                daemon=True,  # a worker stuck in a call must not keep a stopping process alive
            )
            for index in range(self.concurrency)
        ]
        for worker in workers:
            worker.start()
        clean = False
        try:
            self._pump(submit=work_q.put, next_outcome=result_q.get, capacity=2 * self.concurrency)
            clean = True
        finally:
            if not clean:
                self._stop("error")
            for _ in workers:
                work_q.put(_SENTINEL)
            for worker in workers:
                # Clean exit: nothing is in flight. Otherwise give running calls a moment to
                # stage what they were paid for, but never wait forever on a stuck call.
                worker.join(None if clean else 5.0)

    def _worker(self, work_q: queue.Queue, result_q: queue.Queue) -> None:
        try:
            while True:
                item = work_q.get()
                if item is _SENTINEL:
                    return
                result_q.put(self._work(item))
        finally:
            connections.close_all()  # this thread's own connections

    def _pump(
        self, *, submit: Callable[[Any], None], next_outcome: Callable[[], _Outcome], capacity: int
    ) -> None:
        in_flight = 0
        while True:
            while in_flight < capacity and self._may_dispatch():
                item = self._next_item()
                if item is None:
                    self._stop("backlog_empty", hard=False)
                    break
                submit(item)
                in_flight += 1
                self.dispatched += 1
            if in_flight == 0:
                return
            outcome = next_outcome()
            in_flight -= 1
            self._apply(outcome)

    def _next_item(self):
        while not self.buffer:
            if self.exhausted:
                return None
            batch = self.drain.select_pending(
                after=self.cursor, limit=max(self.chunk_size, 2 * self.concurrency)
            )
            if not batch:
                self.exhausted = True
                return None
            self.cursor = self.drain.item_cursor(batch[-1])
            self.buffer.extend(
                item for item in batch if self.drain.item_key(item) not in self.unpromotable
            )
        return self.buffer.popleft()

    def _stop(self, reason: str, *, hard: bool = True) -> None:
        """Stop dispatching; a hard stop (not a batch cap) also stops calls already queued."""
        with self._stop_lock:
            # A hard reason (deadline, signal, ...) replaces a batch cap reached just before it:
            # the queued items it skipped are why the run ended.
            if self.stop_reason is None or (hard and not self.halted):
                self.stop_reason = reason
            if hard:
                self.halted = True

    def _may_dispatch(self) -> bool:
        if self.stop_reason is not None:
            return False
        if self.max_items is not None and self.dispatched >= self.max_items:
            self._stop("max_items" if self._has_next() else "backlog_empty", hard=False)
            return False
        if self.max_minutes is not None and self._elapsed() >= self.max_minutes * 60:
            self._stop("max_minutes", hard=False)
            return False
        return self._before_deadline()

    def _has_next(self) -> bool:
        item = self._next_item()
        if item is None:
            return False
        self.buffer.appendleft(item)
        return True

    def _before_deadline(self) -> bool:
        if self.deadline is not None and timezone.now() >= self.deadline:
            self._stop("deadline")
            return False
        return True

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _work(self, item) -> _Outcome:
        """Process one item: call, stage, promote. Runs in a worker (or inline); never raises."""
        key = self.drain.item_key(item)
        try:
            # The last check before money is spent: no call starts after a stop or the deadline.
            if self.halted or not self._before_deadline():
                return _Outcome("skipped", key)
            try:
                processed = self.drain.process(item)
            except RateLimited as exc:
                return _Outcome("rate_limited", key, error=exc)
            except ItemFailed as exc:
                self.drain.mark_failed(key, exc.message, max_attempts=self.max_attempts)
                return _Outcome("failed", key, usage=exc.usage, error=exc)
            try:
                inserted = stage_result(
                    drain=self.name, item_key=key, payload=processed.payload, run=self.run_row
                )
                # When an older staged row won, promote that one (it was paid for first).
                promote_staged(
                    drain=self.name,
                    item_key=key,
                    payload=processed.payload if inserted else None,
                )
            except Exception as exc:
                return _Outcome("error", key, usage=processed.usage, error=exc)
            return _Outcome("done", key, usage=processed.usage)
        except Exception as exc:
            return _Outcome("error", key, error=exc)
        finally:
            reset_queries()  # DEBUG's query log must not grow with the backlog

    def _apply(self, outcome: _Outcome) -> None:
        self.chunk_usage.add(outcome.usage)
        if outcome.kind == "done":
            self.done += 1
            self.chunk_done += 1
        elif outcome.kind == "failed":
            self.failed += 1
            self.chunk_failed += 1
            self._note_item_failure(outcome)
        elif outcome.kind == "rate_limited":
            if self.rate_limit is None:
                self.rate_limit = outcome.error
                self._record_rate_limit(outcome.error)
            self._stop("rate_limited")
        elif outcome.kind == "error":
            if self.error is None:
                self.error = outcome.error
                logger.error("%s: item %s: %s", self.name, outcome.key, outcome.error)
            self._stop("error")
        self.progress.item(done=self.done, failed=self.failed)
        if (
            self.chunk_done + self.chunk_failed >= self.chunk_size
            or time.monotonic() - self.last_checkpoint >= CHECKPOINT_EVERY_SECONDS
        ):
            self._checkpoint()

    def _note_item_failure(self, outcome: _Outcome) -> None:
        exc = outcome.error
        logger.warning("%s: item %s failed: %s", self.name, outcome.key, exc)
        raw = getattr(exc, "raw", None)
        if raw is not None:
            # A paid reply that could not be used: keep it where an operator can read it.
            record_event(
                drain=self.name,
                run=self.run_row,
                kind="item_failed",
                message=f"item {outcome.key}: {exc}"[:2000],
                actor=self.actor,
                data={
                    "item_key": outcome.key,
                    "raw": json.dumps(raw, ensure_ascii=False, default=str)[:20000],
                },
            )

    def _record_rate_limit(self, exc: RateLimited) -> None:
        names = record_backoff(
            drain=self.name,
            quota_key=self.quota_key,
            reset_at=exc.reset_at,
            reason=exc.message,
            run=self.run_row,
            actor=self.actor,
        )
        logger.warning(
            "%s: rate limited until %s; backing off %s", self.name, exc.reset_at, ", ".join(names)
        )

    def _checkpoint(self, *, final: bool = False) -> None:
        counted = self.chunk_done + self.chunk_failed
        still_running = record_checkpoint(
            run=self.run_row,
            done=self.chunk_done,
            failed=self.chunk_failed,
            usage=self.chunk_usage,
            chunks=1 if counted else 0,
        )
        if counted:
            self.chunks += 1
        self.last_checkpoint = time.monotonic()
        self.chunk_done = self.chunk_failed = 0
        self.chunk_usage = Usage()
        if not still_running:
            self._stop("superseded")
        if not final:
            try:
                self.lock.check()
            except LockLost as exc:
                self.error = self.error or exc
                self._stop("lock_lost")
            self._refresh_control()
            self.progress.chunk(done=self.done, failed=self.failed, chunks=self.chunks)
        reset_queries()

    def _refresh_control(self) -> None:
        """Between chunks: the operator may have disabled the drain or changed the burst, and
        another drain on the same quota may have hit the limit."""
        now = timezone.now()
        if self.mode == RunMode.BURST:
            burst = get_drain_burst(self.name)
            if not burst.active:
                self._stop("deadline" if burst.burst_until else "burst_off")
            elif burst.burst_until != self.deadline:
                logger.info("%s: burst deadline is now %s", self.name, burst.burst_until)
                self.deadline = self.progress.deadline = burst.burst_until
        rows = DrainControl.objects.filter(
            Q(name=self.name) | Q(quota_key=self.quota_key, backoff_until__gt=now)
        ).values("name", "enabled", "backoff_until")
        for row in rows:
            if row["name"] == self.name and not row["enabled"]:
                self._stop("disabled")
            if row["backoff_until"] and row["backoff_until"] > now and self.rate_limit is None:
                self._stop("backoff")

    # --- the end --------------------------------------------------------------------------
    def _finish(self) -> RunResult:
        self._checkpoint(final=True)
        reason = self.stop_reason or "backlog_empty"
        if self.error is not None:
            reason = "lock_lost" if isinstance(self.error, LockLost) else "error"
        elif self.rate_limit is not None:
            reason = "rate_limited"
        status = REASON_STATUS[reason]
        error = ""
        if self.error is not None:
            error = error_text(self.error)
        elif self.rate_limit is not None:
            error = f"rate limited until {self.rate_limit.reset_at.isoformat()}: {self.rate_limit.message}"
        if not finish_run(run=self.run_row, status=status, stop_reason=reason, error=error):
            # The supervisor already ended this run (hung/crashed): report what the row says.
            self.run_row.refresh_from_db(fields=["status", "stop_reason"])
            status = self.run_row.status
        self.progress.close(done=self.done, failed=self.failed)
        elapsed = self._elapsed()
        message = (
            f"{self.name}: run {self.run_row.pk} {status} ({reason}): {self.done} done, "
            f"{self.failed} failed in {format_duration(elapsed)}"
        )
        if status == RunStatus.FAILED:
            raise DrainRunFailed(
                f"{message}. {type(self.error).__name__}: {self.error}", self.run_row.pk
            )
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

    def _fail(self, exc: BaseException) -> None:
        """Record the failure on the run (creating one if it had not started yet)."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        status = RunStatus.STOPPED if interrupted else RunStatus.FAILED
        reason = "signal" if interrupted else "error"
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
            finish_run(run=self.run_row, status=status, stop_reason=reason, error=error_text(exc))
        except DatabaseError as db_exc:
            # The database itself is the problem: the failure goes to the log and the exit
            # status; the supervisor sees the run's lock gone and marks it crashed.
            logger.critical(
                "%s: could not record the failure in the database (%s); original error: %s",
                self.name,
                db_exc,
                exc,
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

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self._signalled:
            raise KeyboardInterrupt(f"{name} received twice: stopping without finishing the item")
        self._signalled = True
        self._stop("signal")
        logger.warning(
            "%s: %s received; finishing the current item, then stopping", self.name, name
        )


# --- the command shell every drain command uses ----------------------------------------------


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0")
    return number


class DrainCommand(BaseCommand):
    """``manage.py drain_<name>``: set ``drain_name`` and ``help`` in a subclass; nothing else."""

    drain_name = ""

    def add_arguments(self, parser):
        parser.add_argument(
            "--trigger",
            choices=Trigger.values,
            default=Trigger.CRON,
            help="Who started this run: cron (default), supervisor, or manual (an operator).",
        )
        parser.add_argument(
            "--max-items",
            type=_positive_int,
            help="Stop after this many items. Default in normal mode: DRAINS_DEFAULT_MAX_ITEMS; "
            "a burst has no item cap unless this is given.",
        )
        parser.add_argument(
            "--max-minutes",
            type=_positive_float,
            help="Start no item after this many minutes. Default in normal mode: "
            "DRAINS_DEFAULT_MAX_MINUTES; a burst runs until its deadline unless this is given.",
        )
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            default=1,
            help="Extractor calls in flight at once (threads). Default 1.",
        )

    def handle(self, *args, **options):
        try:
            result = run_drain(
                self.drain_name,
                trigger=options["trigger"],
                max_items=options["max_items"],
                max_minutes=options["max_minutes"],
                concurrency=options["concurrency"],
                progress_stream=sys.stderr,
            )
        except DrainRunFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.message)
