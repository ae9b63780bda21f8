"""One run's state, shared by the runner's parts: the loop (drains/runner/loop.py), the call gate
(pacing.py) and the probe claim (probe.py) each take the ``RunState`` and own nothing of it but
what they are named for. Counters and checkpoints change in the main thread only; workers read
the stop flags and the deadline, and the call gate has its own lock for what workers change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TextIO

from django.utils import timezone

from drains import selectors
from drains.clock import format_local
from drains.dbretry import DbRetry
from drains.events import record_event
from drains.failures import one_line
from drains.journal import Journal
from drains.locks import DrainLock, LockLost
from drains.models import DrainEvent, DrainRun, EventKind, RunMode, StopReason
from drains.progress import Progress
from drains.quota.backoff import backoff_in_force
from drains.quota.kinds import LimitKind
from drains.quota.resets import RateLimited
from drains.runner.plugin import AnyDrain
from drains.runs import Usage


class Outcome(StrEnum):
    """What became of one item a worker took."""

    DONE = "done"  # called, staged and promoted
    FAILED = "failed"  # the item failed (counted; its attempts grow)
    RATE_LIMITED = "rate_limited"  # the quota refused: the run stops with a backoff
    SLOWED = "slowed"  # a per-minute limit: the item goes again, later
    SKIPPED = "skipped"  # no call made: the run stopped before it
    SUPERSEDED = "superseded"  # paid for and staged, but the run was fenced: promote nothing more
    ERROR = "error"  # anything else: the run stops and fails


@dataclass
class ItemOutcome:
    kind: Outcome
    key: str
    usage: Any = None  # the call's usage (a mapping), when it was paid for
    error: Any = None  # the exception that ended it (RateLimited, SlowedDown, ItemFailed, ...)
    item: Any = None  # for SLOWED: the item goes back into the queue
    seconds: float = 0.0  # time the worker spent on it: the run's busy time (the projection)
    journaled: bool = False  # its paid result (or failed call) has an entry in the local journal
    fatal: BaseException | None = None  # done, but the run stops (the journal cannot be written)


logger = logging.getLogger(__name__)

SKIPPED = "skipped"


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
class RunState:
    drain: AnyDrain
    lock: DrainLock
    trigger: str
    max_items: int | None
    max_minutes: float | None
    concurrency: int
    chunk_size: int
    max_attempts: int
    progress_stream: TextIO | None = None
    tty: bool | None = None
    started: float = field(default_factory=lambda: time.monotonic())  # looked up per run: freezegun
    run_row: DrainRun | None = None
    mode: str = RunMode.NORMAL
    deadline: datetime | None = None
    quota_key: str = ""
    # (max_items, max_minutes) given on the command line: the autopilot keeps them in a burst
    explicit_caps: tuple[bool, bool] = (False, False)
    unpromotable: set[str] = field(default_factory=set)
    held_back: set[str] = field(default_factory=set)  # not this run: the probe skips them
    # the loop's queue: items selected and not yet dispatched
    buffer: deque[Any] = field(default_factory=deque)
    cursor: Any = None
    exhausted: bool = False
    dispatched: int = 0
    # counters (main thread), and the chunk not yet checkpointed
    done: int = 0
    failed: int = 0
    chunks: int = 0
    chunk_done: int = 0
    chunk_failed: int = 0
    chunk_usage: Usage = field(default_factory=Usage)
    chunk_busy: float = 0.0  # seconds workers spent on this chunk's items
    chunk_keys: list[str] = field(default_factory=list)  # done items with a journal entry
    journal: Journal | None = None  # opened at the run's start: a failure there is the run's
    # Transient database errors while staging, checkpointing, finishing: reconnect, retry.
    db: DbRetry = field(init=False)
    last_checkpoint: float = 0.0
    # how it ends
    stop_reason: str | None = None
    halted: bool = False  # a hard stop: no further call starts, even for queued items
    error: BaseException | None = None
    last_item_error: tuple[str, BaseException] | None = None  # (item key, its error)
    failure_reason: str = ""  # the breaker (loop.py): the last item failure's reason, digits aside
    same_failures: int = 0  # … and how many items in a row failed with it
    rate_limit: RateLimited | None = None
    # a probe after a reset: the first call runs alone
    probing: bool = False
    signalled: bool = False  # SIGTERM or SIGINT came: the item in hand is finished, then it stops
    progress: Progress | None = None
    _stop_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.last_checkpoint = self.started
        # After a reconnect, a run whose lock session ended is fenced (no call, no promotion).
        self.db = DbRetry(on_reconnect=self._check_lock_after_reconnect)
        self.explicit_caps = (self.max_items is not None, self.max_minutes is not None)

    def _check_lock_after_reconnect(self) -> None:
        self.lock_held(ask=True)  # its answer is not needed: a lost lock fences the run

    @property
    def name(self) -> str:
        return self.drain.name

    @property
    def actor(self) -> str:
        return f"runtime:{self.trigger}"

    def record_event(self, kind: str, message: str, data: dict[str, Any]) -> DrainEvent:
        """An event of this drain by the runtime, on the run's row once it has one."""
        return record_event(
            drain=self.name, run=self.run_row, kind=kind, message=message, actor=self.actor,
            data=data,
        )

    def stop(self, reason: str, *, hard: bool = True) -> None:
        """Stop dispatching; a hard stop (not a batch cap) also stops calls already queued."""
        with self._stop_lock:
            # A hard reason (deadline, signal, ...) replaces a batch cap reached just before it:
            # the queued items it skipped are why the run ended.
            if self.stop_reason is None or (hard and not self.halted):
                self.stop_reason = reason
            if hard:
                self.halted = True

    def skip(self, reason: str, message: str, **data: Any) -> RunResult:
        """Exit without a run and without any extractor call; say why once in the timeline."""
        logger.info(message)
        # Once per episode: cron retries every 15 minutes and the timeline must stay readable.
        last = selectors.latest_event(drain=self.name, kind=EventKind.SKIPPED)
        last_run = selectors.latest_run_start(drain=self.name)
        if last is None or last["message"] != message or (last_run and last["at"] < last_run):
            self.record_event(EventKind.SKIPPED, message, {"reason": reason, **data})
        return RunResult(drain=self.name, status=SKIPPED, reason=reason, message=message)

    def backoff_skip(self) -> RunResult | None:
        """No call while a backoff on the quota is in force: the run is skipped."""
        backoff = backoff_in_force(drain=self.name, quota_key=self.quota_key)
        if backoff is None:
            return None
        source = "" if backoff.drain == self.name else f" (observed by {backoff.drain})"
        if backoff.kind == LimitKind.HOST_FAULT:
            said = (f"{self.name}: blocked by a host fault until {format_local(backoff.until)}"
                    f"{source}, then one probe call: {one_line(backoff.reason)}")
        else:
            said = (f"{self.name}: quota {self.quota_key!r} backs off until "
                    f"{format_local(backoff.until)}{source}; no extractor call.")
        return self.skip(StopReason.BACKOFF, said, until=backoff.until.isoformat())

    def before_deadline(self) -> bool:
        if self.deadline is not None and timezone.now() >= self.deadline:
            self.stop(StopReason.DEADLINE)
            return False
        return True

    def lock_held(self, *, ask: bool = False) -> bool:
        """The drain lock is still ours; else the run stops (``lock_lost``). Before each call no
        round trip is made unless the server said something; ``ask`` (between chunks) asks."""
        try:
            if ask:
                self.lock.check()
            else:
                self.lock.check_if_told()
        except LockLost as exc:
            self.error = self.error or exc
            self.stop(StopReason.LOCK_LOST)
            return False
        return True

    def may_call(self) -> bool:
        """The last checks before money is spent: no stop, the deadline, the drain lock."""
        return not self.halted and self.before_deadline() and self.lock_held()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def row(self) -> DrainRun:
        """The run's row, once started (every caller runs after ``_start``)."""
        assert self.run_row is not None, "the run has not started"
        return self.run_row

    @property
    def shown(self) -> Progress:
        assert self.progress is not None, "the run has not started"
        return self.progress
