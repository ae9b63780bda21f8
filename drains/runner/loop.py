"""The runner's work loop: dispatching items (inline or to worker threads), the last deadline
check before each paid call, applying each outcome, and the committed checkpoint per chunk
(or per ``CHECKPOINT_EVERY_SECONDS`` of slow items) with the control re-read between chunks.

``WorkLoop`` is the half of ``drains.runner.run._Runner`` that runs while items are processed;
counters and checkpoints live in the main thread, workers only process.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections, reset_queries
from django.utils import timezone

from drains import selectors
from drains.bursts import get_drain_burst
from drains.events import record_event
from drains.locks import LockLost
from drains.models import EventKind, RunMode, StopReason
from drains.quota import policy
from drains.quota.actions import act_on_limit
from drains.quota.backoff import record_backoff, record_probe
from drains.quota.resets import RateLimited
from drains.runner.pacing import Halted, SlowedDown
from drains.runner.plugin import ItemFailed
from drains.runs import RunSuperseded, Usage, promote_staged, record_checkpoint, stage_result

logger = logging.getLogger(__name__)

# A checkpoint also comes at least this often while items complete, so that slow items (minutes
# each) never make a healthy run look hung for a whole chunk.
CHECKPOINT_EVERY_SECONDS = 60.0


@dataclass
class _Outcome:
    kind: str  # done | failed | rate_limited | slowed | skipped | superseded | error
    key: str
    usage: Mapping | None = None
    error: BaseException | None = None
    item: Any = None  # for "slowed": the item goes back into the queue
    seconds: float = 0.0  # time the worker spent on it: the run's busy time (the projection)


_SENTINEL = object()


class WorkLoop:
    """The loop's methods; the state they use is set up by ``_Runner.__init__``."""

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
                self._stop(StopReason.ERROR)
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
            # A probe after a reset: the first call goes alone; the rest wait for its outcome.
            while in_flight < (1 if self.probing else capacity) and self._may_dispatch():
                item = self._next_item()
                if item is None:
                    self._stop(StopReason.BACKLOG_EMPTY, hard=False)
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
            self._stop(StopReason.MAX_ITEMS if self._has_next() else StopReason.BACKLOG_EMPTY, hard=False)
            return False
        if self.max_minutes is not None and self._elapsed() >= self.max_minutes * 60:
            self._stop(StopReason.MAX_MINUTES, hard=False)
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
            self._stop(StopReason.DEADLINE)
            return False
        return True

    def _lock_held(self) -> bool:
        try:
            self.lock.check_if_told()
        except LockLost as exc:
            self.error = self.error or exc
            self._stop(StopReason.LOCK_LOST)
            return False
        return True

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _work(self, item) -> _Outcome:
        started = time.monotonic()
        outcome = self._process_item(item)
        outcome.seconds = time.monotonic() - started
        return outcome

    def _process_item(self, item) -> _Outcome:
        """Process one item: call, stage, promote. Runs in a worker (or inline); never raises."""
        key = self.drain.item_key(item)
        try:
            # The call gate (drains/runner/pacing.py) makes the last check before money is
            # spent: no call starts after a stop, the deadline, or the loss of the drain lock
            # (a supervisor may have started another runner).
            try:
                processed = self._paced_call(item)  # drains/runner/pacing.py
            except Halted:
                return _Outcome("skipped", key)
            except SlowedDown as exc:  # a per-minute limit: the item goes again, later
                return _Outcome("slowed", key, error=exc, item=item)
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
                    run=self.run_row,
                )
            except RunSuperseded:
                return _Outcome("superseded", key, usage=processed.usage)
            except Exception as exc:
                return _Outcome("error", key, usage=processed.usage, error=exc)
            return _Outcome("done", key, usage=processed.usage)
        except Exception as exc:
            return _Outcome("error", key, error=exc)
        finally:
            reset_queries()  # DEBUG's query log must not grow with the backlog

    def _apply(self, outcome: _Outcome) -> None:
        self.chunk_usage.add(outcome.usage)
        self.chunk_busy += outcome.seconds
        if outcome.kind == "slowed" and not self.halted and not self._slow_down(outcome):
            # Per-minute limits that keep coming: a backoff like any other limit after all.
            outcome = _Outcome("rate_limited", outcome.key, error=self._long_backoff(outcome.error))
        if self.probing and outcome.kind != "slowed":  # a per-minute limit: the probe goes again
            self._probe_outcome(outcome)
        if outcome.kind in ("done", "failed"):
            self._call_went_through()
        if outcome.kind == "done":
            self.done += 1
            self.chunk_done += 1
        elif outcome.kind == "failed":
            self.failed += 1
            self.chunk_failed += 1
            self._note_item_failure(outcome)
        elif outcome.kind == "rate_limited":
            self._stop(StopReason.RATE_LIMITED)  # first: no call starts while it is recorded
            if self.rate_limit is None:
                self.rate_limit = outcome.error
                self._record_rate_limit(outcome.error)
        elif outcome.kind == "superseded":
            # Fenced: paid for and staged, but this run may promote nothing more.
            self._stop(StopReason.SUPERSEDED)
        elif outcome.kind == "error":
            if self.error is None:
                self.error = outcome.error
                logger.error("%s: item %s: %s", self.name, outcome.key, outcome.error)
            self._stop(StopReason.ERROR)
        self.progress.item(done=self.done, failed=self.failed)
        if (
            self.chunk_done + self.chunk_failed >= self.chunk_size
            or time.monotonic() - self.last_checkpoint >= CHECKPOINT_EVERY_SECONDS
        ):
            self._checkpoint()

    def _probe_outcome(self, outcome: _Outcome) -> None:
        """The probe's call came back: the quota answers (any reply it was paid for, even an
        item failure) and the run opens up, or it refused (the new backoff is written now and
        the run stops before any further call). No call made (a stop before it, an error
        before any reply): the probe is still due, for the next run."""
        answered = outcome.kind in ("done", "failed", "superseded") or (
            outcome.kind == "error" and outcome.usage is not None
        )
        if outcome.kind == "rate_limited" and getattr(outcome.error, "breach", None) is not None:
            pass  # the quota's ceiling stopped it before the call (ceiling.py): no probe made
        elif outcome.kind == "rate_limited":
            self._stop(StopReason.RATE_LIMITED)
            self.rate_limit = outcome.error
            self._record_rate_limit(outcome.error)
            record_probe(
                drain=self.name,
                quota_key=self.quota_key,
                run=self.run_row,
                ok=False,
                actor=self.actor,
                until=outcome.error.reset_at,
            )
        elif answered:
            record_probe(
                drain=self.name, quota_key=self.quota_key, run=self.run_row, ok=True,
                actor=self.actor,
            )
            logger.info("%s: probe after reset went through; full concurrency", self.name)
        self._release_probe()

    def _note_item_failure(self, outcome: _Outcome) -> None:
        exc = outcome.error
        logger.warning("%s: item %s failed: %s", self.name, outcome.key, exc)
        raw = getattr(exc, "raw", None)
        if raw is not None:
            # A paid reply that could not be used: keep it where an operator can read it.
            record_event(
                drain=self.name,
                run=self.run_row,
                kind=EventKind.ITEM_FAILED,
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
            kind=exc.kind,
        )
        logger.warning(
            "%s: rate limited until %s; backing off %s", self.name, exc.reset_at, ", ".join(names)
        )
        # A weekly limit past the burst's end, a spend cap: what follows the backoff, at once.
        for line in act_on_limit(
            drain=self.name, drains=names, kind=exc.kind, reset_at=exc.reset_at,
            reason=exc.message, actor=self.actor,
        ):
            logger.warning("%s: %s", self.name, line)

    def _checkpoint(self, *, final: bool = False) -> None:
        self._record_quota()  # the calls' quota signals (drains/runner/ceiling.py)
        counted = self.chunk_done + self.chunk_failed
        still_running = record_checkpoint(
            run=self.run_row,
            done=self.chunk_done,
            failed=self.chunk_failed,
            usage=self.chunk_usage,
            chunks=1 if counted else 0,
            busy_seconds=self.chunk_busy,
        )
        if counted:
            self.chunks += 1
        self.last_checkpoint = time.monotonic()
        self.chunk_done = self.chunk_failed = 0
        self.chunk_usage = Usage()
        self.chunk_busy = 0.0
        if not still_running:
            self._stop(StopReason.SUPERSEDED)
        if not final:
            try:
                self.lock.check()
            except LockLost as exc:
                self.error = self.error or exc
                self._stop(StopReason.LOCK_LOST)
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
                self._stop(StopReason.DEADLINE if burst.burst_until else StopReason.BURST_OFF)
            elif burst.burst_until != self.deadline:
                logger.info("%s: burst deadline is now %s", self.name, burst.burst_until)
                self.deadline = self.progress.deadline = burst.burst_until
        self._load_quota()  # the quota's readings, other drains' calls too (ceiling.py)
        rows = selectors.controls_for_run(drain=self.name, quota_key=self.quota_key, now=now)
        if any(row["name"] == self.name and not row["enabled"] for row in rows):
            self._stop(StopReason.DISABLED)
        if self.rate_limit is None and policy.blocking_backoff(
            drain=self.name, quota_key=self.quota_key, controls=rows, now=now
        ):
            self._stop(StopReason.BACKOFF)
        self._autopilot_between_chunks()  # drains/runner/quota_steps.py

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
        self._stop(StopReason.SIGNAL)
        logger.warning(
            "%s: %s received; finishing the current item, then stopping", self.name, name
        )
