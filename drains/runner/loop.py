"""The runner's work loop: dispatching items (inline or to worker threads), the paid call through
the call gate (drains/runner/pacing.py), applying each outcome, and the committed checkpoint per
chunk (or per ``CHECKPOINT_EVERY_SECONDS`` of slow items) with the control re-read between
chunks. Counters and checkpoints change in the main thread; workers only process.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from django.db import connections, reset_queries
from django.utils import timezone

from drains import items, selectors
from drains.bursts import get_drain_burst
from drains.dbretry import describe
from drains.failures import one_line
from drains.models import EventKind, RunMode, StopReason
from drains.quota import policy
from drains.quota.actions import act_on_limit
from drains.quota.backoff import record_backoff
from drains.quota.kinds import LimitKind
from drains.quota.resets import RateLimited
from drains.runner.pacing import Halted, Pacing, SlowedDown
from drains.runner.paid import journal_failure, keep_paid
from drains.runner.plugin import HostFault, ItemFailed
from drains.runner.probe import ProbeClaim
from drains.runner.spending import Autopilot, QuotaCeiling
from drains.runner.state import ItemOutcome, Outcome, RunState
from drains.runs import Usage, record_checkpoint

logger = logging.getLogger(__name__)

_DIGITS = re.compile(r"\d+")

# A checkpoint also comes at least this often while items complete, so that slow items (minutes
# each) never make a healthy run look hung for a whole chunk.
CHECKPOINT_EVERY_SECONDS = 60.0
# After an error, how long the calls in flight get to come back and reach the journal (a call
# cut short by the process ending is paid for and lost).
UNCLEAN_JOIN_SECONDS = 30.0

_SENTINEL = object()


class WorkLoop:
    def __init__(
        self,
        state: RunState,
        *,
        pacing: Pacing,
        probe: ProbeClaim,
        ceiling: QuotaCeiling,
        autopilot: Autopilot,
    ):
        self.state = state
        self.pacing = pacing
        self.probe = probe
        self.ceiling = ceiling
        self.autopilot = autopilot

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        if self.state.concurrency == 1:
            self._inline()
        else:
            self._threads()

    def _inline(self) -> None:
        pending: deque[Any] = deque()
        self._pump(
            submit=pending.append,
            next_outcome=lambda: self._work(pending.popleft()),
            capacity=1,
        )

    def _threads(self) -> None:
        state = self.state
        work_q: queue.Queue[Any] = queue.Queue()  # items, then one _SENTINEL per worker
        result_q: queue.Queue[ItemOutcome] = queue.Queue()
        workers = [
            threading.Thread(
                target=self._worker,
                args=(work_q, result_q),
                name=f"drain-{state.name}-{index}",
                daemon=True,  # a worker stuck in a call must not keep a stopping process alive
            )
            for index in range(state.concurrency)
        ]
        for worker in workers:
            worker.start()
        clean = False
        try:
            self._pump(submit=work_q.put, next_outcome=result_q.get, capacity=2 * state.concurrency)
            clean = True
        finally:
            if not clean:
                state.stop(StopReason.ERROR)
            for _ in workers:
                work_q.put(_SENTINEL)
            for worker in workers:
                # Clean exit: nothing is in flight. Otherwise give running calls a moment to
                # stage what they were paid for, but never wait forever on a stuck call.
                worker.join(None if clean else UNCLEAN_JOIN_SECONDS)

    def _worker(self, work_q: queue.Queue[Any], result_q: queue.Queue[ItemOutcome]) -> None:
        try:
            while True:
                item = work_q.get()
                if item is _SENTINEL:
                    return
                result_q.put(self._work(item))
        finally:
            connections.close_all()  # this thread's own connections

    def _pump(
        self,
        *,
        submit: Callable[[Any], None],
        next_outcome: Callable[[], ItemOutcome],
        capacity: int,
    ) -> None:
        state = self.state
        in_flight = 0
        while True:
            # A probe after a reset: the first call goes alone; the rest wait for its outcome.
            while in_flight < (1 if state.probing else capacity) and self._may_dispatch():
                item = self.next_item()
                if item is None:
                    state.stop(StopReason.BACKLOG_EMPTY, hard=False)
                    break
                submit(item)
                in_flight += 1
                state.dispatched += 1
            if in_flight == 0:
                return
            outcome = next_outcome()
            in_flight -= 1
            self._apply(outcome)

    def next_item(self) -> Any:
        state = self.state
        while not state.buffer:
            if state.exhausted:
                return None
            batch = state.drain.select_pending(
                after=state.cursor, limit=max(state.chunk_size, 2 * state.concurrency)
            )
            if not batch:
                state.exhausted = True
                return None
            state.cursor = state.drain.item_cursor(batch[-1])
            skipped = state.unpromotable | state.held_back
            state.buffer.extend(item for item in batch if state.drain.item_key(item) not in skipped)
        return state.buffer.popleft()

    def _may_dispatch(self) -> bool:
        state = self.state
        if state.stop_reason is not None:
            return False
        if state.max_items is not None and state.dispatched >= state.max_items:
            state.stop(StopReason.MAX_ITEMS if self._has_next() else StopReason.BACKLOG_EMPTY,
                       hard=False)
            return False
        if state.max_minutes is not None and state.elapsed() >= state.max_minutes * 60:
            state.stop(StopReason.MAX_MINUTES, hard=False)
            return False
        return state.before_deadline()

    def _has_next(self) -> bool:
        item = self.next_item()
        if item is None:
            return False
        self.state.buffer.appendleft(item)
        return True

    # --- one item (in a worker, or inline) ------------------------------------------------
    def _work(self, item: Any) -> ItemOutcome:
        started = time.monotonic()
        outcome = self._process_item(item)
        outcome.seconds = time.monotonic() - started
        return outcome

    def _process_item(self, item: Any) -> ItemOutcome:
        """Process one item: call, journal, stage, promote. Never raises."""
        state = self.state
        key = state.drain.item_key(item)
        try:
            # The call gate makes the last check before money is spent: no call starts after
            # a stop, the deadline, or the loss of the drain lock (a supervisor may have
            # started another runner).
            try:
                processed = self.pacing.call(item)
            except Halted:
                return ItemOutcome(Outcome.SKIPPED, key)
            except SlowedDown as exc:  # a per-minute limit: the item goes again, later
                return ItemOutcome(Outcome.SLOWED, key, error=exc, item=item)
            except RateLimited as exc:
                return ItemOutcome(Outcome.RATE_LIMITED, key, error=exc)
            except ItemFailed as exc:
                failure, spent = exc.message, exc.usage
                # A failed call is a call: on local disk first too, so that its run's row counts
                # it (and its usage) even when the run dies before its next checkpoint.
                journaled, journal_error = journal_failure(state, key, spent)
                state.db.call(
                    f"recording the failure of item {key}",
                    lambda: state.drain.mark_failed(key, failure, max_attempts=state.max_attempts),
                )
                return ItemOutcome(Outcome.FAILED, key, usage=exc.usage, error=exc,
                                   journaled=journaled, fatal=journal_error)
            # The version the call was made on goes with the result: a result for a version the
            # item no longer has (its text changed meanwhile) is never promoted onto the new one.
            processed.payload = items.stamped(type(state.drain), item, processed.payload)
            return keep_paid(state, key, processed)
        except Exception as exc:
            return ItemOutcome(Outcome.ERROR, key, error=exc)
        finally:
            reset_queries()  # DEBUG's query log must not grow with the backlog

    # --- its outcome (main thread) --------------------------------------------------------
    def _apply(self, outcome: ItemOutcome) -> None:
        state = self.state
        state.chunk_usage.add(outcome.usage)
        state.chunk_busy += outcome.seconds
        if outcome.kind == Outcome.RATE_LIMITED and self._items_own_host_fault(outcome):
            outcome = self._charge_host_fault(outcome)
        if outcome.kind == Outcome.SLOWED and not state.halted and not self.pacing.slow_down(outcome):
            # Per-minute limits that keep coming: a backoff like any other limit after all.
            outcome = ItemOutcome(Outcome.RATE_LIMITED, outcome.key,
                                  error=self.pacing.long_backoff(outcome.error))
        if state.probing and outcome.kind != Outcome.SLOWED:  # per-minute: the probe goes again
            self.probe.outcome(
                outcome, record_limit=lambda: self.limit_reached(outcome.error, item=outcome.key),
                # after the breaker's block, a probe that fails as well keeps the drain blocked
                reblock=lambda: self.limit_reached(_breaker_fault(
                    "the probe after the breaker's block failed too", str(outcome.error))),
                reopen=self._reopen,
            )
        if outcome.kind in (Outcome.DONE, Outcome.FAILED):
            self.pacing.gate.went_through()
        if outcome.kind == Outcome.DONE:
            state.done += 1
            state.same_failures = 0
            state.chunk_done += 1
            if outcome.journaled:
                state.chunk_keys.append(outcome.key)
            if outcome.fatal is not None:
                state.error = state.error or outcome.fatal
                logger.error("%s: %s", state.name, outcome.fatal)
                state.stop(StopReason.ERROR)
        elif outcome.kind == Outcome.FAILED:
            state.failed += 1
            state.chunk_failed += 1
            if outcome.journaled:
                state.chunk_keys.append(outcome.key)
            self._note_item_failure(outcome)
            if outcome.fatal is not None:
                state.error = state.error or outcome.fatal
                logger.error("%s: %s", state.name, outcome.fatal)
                state.stop(StopReason.ERROR)
        elif outcome.kind == Outcome.RATE_LIMITED:
            self.limit_reached(outcome.error, item=outcome.key)
        elif outcome.kind == Outcome.SUPERSEDED:
            # Fenced: paid for and staged, but this run may promote nothing more.
            state.stop(StopReason.SUPERSEDED)
        elif outcome.kind == Outcome.ERROR:
            if state.error is None:
                state.error = outcome.error
                logger.error("%s: item %s: %s", state.name, outcome.key, describe(outcome.error))
            state.stop(StopReason.ERROR)
        state.shown.item(done=state.done, failed=state.failed)
        if (
            state.chunk_done + state.chunk_failed >= state.chunk_size
            or time.monotonic() - state.last_checkpoint >= CHECKPOINT_EVERY_SECONDS
        ):
            self.checkpoint()

    def _reopen(self) -> None:
        """The probe went through: the item it held back (the one that met the host fault) is
        back in this run. The probe was the only call in flight, so reading the backlog again
        from its start repeats no call."""
        state = self.state
        if state.held_back:
            state.held_back.clear()
            state.cursor, state.exhausted = None, False
            state.buffer.clear()

    def _items_own_host_fault(self, outcome: ItemOutcome) -> bool:
        """A host fault on the item the last host-fault block met, after the quota worked since:
        the item's own after all (the probe after that block skipped it, and calls went through)."""
        exc = outcome.error
        if exc.kind.kind != LimitKind.HOST_FAULT or getattr(exc, "breaker", False):
            return False
        state = self.state
        return state.db.call(
            "reading the last host-fault block",
            lambda: selectors.host_fault_item_since_worked(drain=state.name,
                                                           quota_key=state.quota_key),
        ) == outcome.key

    def _charge_host_fault(self, outcome: ItemOutcome) -> ItemOutcome:
        """Charge the item one attempt for a host fault that only it meets; the run goes on."""
        state = self.state
        message = f"met the same fault again while other items went through: {outcome.error.fault}"
        state.db.call(
            f"recording the failure of item {outcome.key}",
            lambda: state.drain.mark_failed(outcome.key, message, max_attempts=state.max_attempts),
        )
        logger.warning("%s: item %s %s", state.name, outcome.key, message)
        return ItemOutcome(Outcome.FAILED, outcome.key, usage=outcome.usage,
                           error=ItemFailed(message), seconds=outcome.seconds)

    def limit_reached(self, exc: RateLimited, *, item: str = "") -> None:
        """The quota refused: stop first (no call starts while the refusal is recorded), then
        record the backoff once and act on it (a weekly limit past the burst, a spend cap)."""
        state = self.state
        host_fault = exc.kind.kind == LimitKind.HOST_FAULT
        state.stop(StopReason.BLOCKED if host_fault else StopReason.RATE_LIMITED)
        if state.rate_limit is not None:
            return
        if host_fault:  # blocked until the next probe: the interval doubles while the fault lasts
            previous = selectors.last_host_block(drain=state.name, quota_key=state.quota_key)
            exc.reset_at = timezone.now() + policy.host_probe_interval(previous)
        state.rate_limit = exc
        self.ceiling.lift(exc)  # a weekly ceiling the reserve's release lifts: back off until then
        names = record_backoff(
            drain=state.name,
            quota_key=state.quota_key,
            reset_at=exc.reset_at,
            reason=exc.message,
            run=state.run_row,
            actor=state.actor,
            kind=exc.kind,
            breaker=getattr(exc, "breaker", False),
            item=item if host_fault else "",
        )
        logger.warning(
            "%s: rate limited until %s; backing off %s", state.name, exc.reset_at, ", ".join(names)
        )
        for line in act_on_limit(
            drain=state.name, drains=names, kind=exc.kind, reset_at=exc.reset_at,
            reason=exc.message, actor=state.actor,
        ):
            logger.warning("%s: %s", state.name, line)

    def _note_item_failure(self, outcome: ItemOutcome) -> None:
        state = self.state
        exc = outcome.error
        state.last_item_error = (outcome.key, exc)
        logger.warning("%s: item %s failed: %s", state.name, outcome.key, exc)
        self._breaker(str(exc))
        raw = getattr(exc, "raw", None)
        if raw is not None:
            # A paid reply that could not be used: keep it where an operator can read it.
            state.record_event(
                EventKind.ITEM_FAILED,
                f"item {outcome.key}: {exc}",
                {
                    "item_key": outcome.key,
                    "raw": json.dumps(raw, ensure_ascii=False, default=str)[:20000],
                },
            )

    def _breaker(self, reason: str) -> None:
        """A breaker for the faults no backend classified: ``Drain.breaker_failures`` items in a
        row failing for the same reason (digits aside) are no longer each item's own fault. The
        run stops and the drain is blocked like a host fault; those items stay charged (their
        calls may have been paid for)."""
        state = self.state
        same = _DIGITS.sub("#", one_line(reason, 200))
        state.same_failures = state.same_failures + 1 if same == state.failure_reason else 1
        state.failure_reason = same
        limit = state.drain.breaker_failures
        if limit and state.same_failures >= limit and state.stop_reason is None:
            self.limit_reached(_breaker_fault(
                f"{state.same_failures} items in a row failed with the same error", reason))

    # --- checkpoints ----------------------------------------------------------------------
    def checkpoint(self, *, final: bool = False) -> None:
        state = self.state
        self.ceiling.record()  # the calls' quota signals
        counted = state.chunk_done + state.chunk_failed
        still_running = state.db.call(
            f"the checkpoint of run {state.row.pk}",
            lambda: record_checkpoint(
                run=state.row,
                done=state.chunk_done,
                failed=state.chunk_failed,
                usage=state.chunk_usage,
                chunks=1 if counted else 0,
                busy_seconds=state.chunk_busy,
            ),
        )
        counted_keys, state.chunk_keys = state.chunk_keys, []
        if counted:
            state.chunks += 1
        state.last_checkpoint = time.monotonic()
        state.chunk_done = state.chunk_failed = 0
        state.chunk_usage = Usage()
        state.chunk_busy = 0.0
        if still_running and state.journal is not None:
            # Counted in PostgreSQL now: their journal entries may go. (Not counted, because
            # the run was superseded: the entries stay, and their replay counts them.)
            state.journal.forget(state.name, counted_keys)
        if not still_running:
            state.stop(StopReason.SUPERSEDED)
        if not final:
            state.lock_held(ask=True)
            self.refresh_control()
            state.shown.chunk(done=state.done, failed=state.failed, chunks=state.chunks)
        reset_queries()

    def refresh_control(self) -> None:
        """Between chunks: the operator may have disabled the drain or changed the burst, and
        another drain on the same quota may have hit the limit."""
        state = self.state
        now = timezone.now()
        if state.mode == RunMode.BURST:
            burst = get_drain_burst(state.name)
            if not burst.active:
                state.stop(StopReason.DEADLINE if burst.burst_until else StopReason.BURST_OFF)
            elif burst.burst_until != state.deadline:
                logger.info("%s: burst deadline is now %s", state.name, burst.burst_until)
                state.deadline = state.shown.deadline = burst.burst_until
        self.ceiling.load()  # the quota's readings, other drains' calls too
        rows = selectors.controls_for_run(drain=state.name, quota_key=state.quota_key, now=now)
        if any(row["name"] == state.name and not row["enabled"] for row in rows):
            state.stop(StopReason.DISABLED)
        if state.rate_limit is None and policy.blocking_backoff(
            drain=state.name, quota_key=state.quota_key, controls=rows, now=now
        ):
            state.stop(StopReason.BACKOFF)
        self.autopilot.between_chunks()


def _breaker_fault(what: str, reason: str) -> HostFault:
    """The breaker's block: items keep failing the same way, whatever the cause."""
    fault = HostFault(
        f"{what}: {one_line(reason, 200)}",
        advice="look at the failed items (the page's failed list); when the cause is mended, "
        "unblock the drain (retry now) and retry them",
    )
    fault.breaker = True
    return fault
